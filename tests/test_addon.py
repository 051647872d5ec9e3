"""The mitmproxy glue: options, config reloads, fail-closed hooks, unmatched flows, script loading."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time

import orjson
import pytest
from conftest import ROOT, Gateway
from mitmproxy import exceptions
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow, tutils

from addon import gateway as gateway_module
from addon.gateway import AIProxy

ROUTES = {
    "routes": [
        {
            "name": "chat",
            "match": {"path": "/v1/chat/completions"},
            "route_type": "llm/v1/chat",
            "auth": {"header_name": "Authorization", "header_value": "Bearer sk-configured-1"},
            "model": {"provider": "openai", "options": {"upstream_url": "http://127.0.0.1:9"}},
        }
    ]
}


def chat_flow(mode: str = "regular", path: bytes = b"/v1/chat/completions") -> tflow.HTTPFlow:
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    req = tutils.treq(method=b"POST", path=path, content=body, headers=[(b"authorization", b"Bearer client")])
    flow = tflow.tflow(req=req)
    flow.client_conn.proxy_mode = ProxyMode.parse(mode)
    return flow


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "routes.json"
    path.write_bytes(orjson.dumps(ROUTES))
    return path


async def test_routes_load_and_translate(config_file):
    addon = AIProxy()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, ai_proxy_config=str(config_file))
        assert [r.name for r in addon.config.routes] == ["chat"]
        flow = chat_flow()
        await addon.request(flow)
        assert flow.response is None
        assert flow.request.url == "http://127.0.0.1:9/v1/chat/completions"
        assert flow.request.headers["authorization"] == "Bearer sk-configured-1"
        addon.done()


async def test_bad_config_keeps_the_last_good_routes(config_file, caplog):
    addon = AIProxy()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, ai_proxy_config=str(config_file))
        bad = config_file.with_name("bad.yaml")
        bad.write_text(
            "routes:\n  - name: x\n    route_type: llm/v1/chat\n    model: {provider: anthropic}\n"
        )
        with caplog.at_level(logging.WARNING, logger="ai_proxy"):
            tctx.configure(addon, ai_proxy_config=str(bad))
        assert [r.name for r in addon.config.routes] == ["chat"]
        assert "keeping the previous 1 route(s)" in caplog.text
        assert "route 'x': must set 'model.options.anthropic_version' for anthropic provider" in caplog.text
        addon.done()


async def test_bad_config_on_first_load_means_no_routes(tmp_path):
    addon = AIProxy()
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes: [")
    with taddons.context(addon) as tctx:
        tctx.configure(addon, ai_proxy_config=str(bad))
        assert addon.config.routes == []
        addon.done()


def test_unmatched_option_is_validated():
    addon = AIProxy()
    with taddons.context(addon) as tctx, pytest.raises(exceptions.OptionsError, match="ai_proxy_unmatched"):
        tctx.configure(addon, ai_proxy_unmatched="sometimes")


async def test_connections_are_made_lazy():
    addon = AIProxy()
    with taddons.context(Proxyserver(), addon) as tctx:
        tctx.configure(addon, mode=["reverse:http://127.0.0.1:1"])
        assert tctx.options.connection_strategy == "lazy"
        tctx.options.update(connection_strategy="eager")
        assert tctx.options.connection_strategy == "lazy"
        addon.done()


async def test_unmatched_flows(config_file):
    addon = AIProxy()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, ai_proxy_config=str(config_file))
        regular = chat_flow("regular", b"/other")
        await addon.request(regular)
        assert regular.response is None  # passes untouched
        reverse = chat_flow("reverse:http://127.0.0.1:1", b"/other")
        await addon.request(reverse)
        assert reverse.response.status_code == 404
        assert orjson.loads(reverse.response.content)["error"]["message"] == "no route for POST /other"
        tctx.configure(addon, ai_proxy_unmatched="reject")
        rejected = chat_flow("regular", b"/other")
        await addon.request(rejected)
        assert rejected.response.status_code == 404
        addon.done()


async def test_a_failing_hook_fails_closed(config_file, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(gateway_module, "prepare", explode)
    addon = AIProxy()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, ai_proxy_config=str(config_file))
        flow = chat_flow()
        await addon.request(flow)
        assert flow.response.status_code == 500
        error = orjson.loads(flow.response.content)["error"]
        assert error["code"] == "gateway_error"
        assert "not forwarded" in error["message"]
        addon.done()


async def test_a_failing_response_hook_answers_500(config_file, monkeypatch):
    addon = AIProxy()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, ai_proxy_config=str(config_file))
        flow = chat_flow()
        await addon.request(flow)
        monkeypatch.setattr(gateway_module, "translate_response", lambda *a: 1 / 0)
        flow.response = tutils.tresp(content=b"{}")
        addon.response(flow)
        assert flow.response.status_code == 500
        addon.done()


def test_stats_file_that_cannot_be_opened(tmp_path):
    addon = AIProxy()
    with taddons.context(addon) as tctx, pytest.raises(exceptions.OptionsError, match="ai_proxy_stats_file"):
        tctx.configure(addon, ai_proxy_stats_file=str(tmp_path / "missing-dir" / "s.jsonl"))


def test_script_loads_our_packages_even_when_foreign_ones_exist(tmp_path):
    foreign = tmp_path / "site"
    for name in ("transforms", "addon"):
        (foreign / name).mkdir(parents=True)
        (foreign / name / "__init__.py").write_text("FOREIGN = True\n")
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(foreign)!r})
        import transforms, addon
        assert transforms.FOREIGN and addon.FOREIGN
        from mitmproxy.addons.script import load_script
        mod = load_script({str(ROOT / "addon" / "ai_proxy.py")!r})
        import transforms.registry
        assert sys.modules["transforms"].__file__.startswith({str(ROOT)!r}), sys.modules["transforms"].__file__
        assert "openai" in transforms.registry.SPECS
        print(" ".join(type(a).__name__ for a in mod.addons))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        "AccessControl ModelsEndpoint IngressEndpoints StoredResponses FlowMasking BatchInputs AIProxy "
        "StreamedUploads ResponseKeeper Inspector PromptPluginsAddon Cassettes RealtimeSessions UpstreamRelay "
        "Balancing UsageSummary"
    )


def test_script_reload_gives_fresh_modules_and_addons(tmp_path):
    code = textwrap.dedent(
        f"""
        from mitmproxy.addons.script import load_script
        import sys
        path = {str(ROOT / "addon" / "ai_proxy.py")!r}
        first = load_script(path)
        old_pipeline = sys.modules["transforms.pipeline"]
        second = load_script(path)
        assert sys.modules["transforms.pipeline"] is not old_pipeline
        names = [type(a).__name__ for a in second.addons]
        assert names == [
            "AccessControl",
            "ModelsEndpoint",
            "IngressEndpoints",
            "StoredResponses",
            "FlowMasking",
            "BatchInputs",
            "AIProxy",
            "StreamedUploads",
            "ResponseKeeper",
            "Inspector",
            "PromptPluginsAddon",
            "Cassettes",
            "RealtimeSessions",
            "UpstreamRelay",
            "Balancing",
            "UsageSummary",
        ], names
        assert not set(map(id, second.addons)) & set(map(id, first.addons))
        assert second.addons[1].gateway is second.addons[6]
        assert second.addons[8].gateway is second.addons[6]
        assert second.addons[6].plugins is second.addons[10]
        assert second.addons[11].gateway is second.addons[6]
        assert second.addons[12].gateway is second.addons[6]
        assert second.addons[3].store is second.addons[8].store
        assert second.addons[7].access is second.addons[0]
        assert second.addons[5].gateway is second.addons[7].gateway is second.addons[6]
        assert sys.path.count({str(ROOT)!r}) == 1
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_config_file_edits_are_picked_up(tmp_path, emulator):
    routes = orjson.loads(orjson.dumps(ROUTES))
    routes["routes"][0]["model"]["options"]["upstream_url"] = emulator.url
    config = tmp_path / "routes.json"
    config.write_bytes(orjson.dumps(routes))
    gw = Gateway(config, tmp_path / "stats.jsonl", {}, [])
    try:
        import httpx

        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        assert httpx.post(f"{gw.url}/v1/chat/completions", json=body).status_code == 200
        assert httpx.post(f"{gw.url}/v2/chat/completions", json=body).status_code == 404
        routes["routes"][0]["match"]["path"] = "/v2/chat/completions"
        time.sleep(1.1)  # mtime granularity
        config.write_bytes(orjson.dumps(routes))
        deadline = time.monotonic() + 10
        status = 404
        while time.monotonic() < deadline and status != 200:
            time.sleep(0.2)
            status = httpx.post(f"{gw.url}/v2/chat/completions", json=body).status_code
        assert status == 200
        assert "loaded 1 route(s)" in gw.log
    finally:
        gw.stop()


async def test_a_failing_responseheaders_hook_answers_500_once_the_body_is_in(config_file, monkeypatch):
    addon = AIProxy()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, ai_proxy_config=str(config_file))
        flow = chat_flow()
        await addon.request(flow)
        flow.response = tutils.tresp(content=b"{}")
        monkeypatch.setattr(addon, "_start_stream", lambda *a: 1 / 0)
        addon._live[flow.id].prep.stream = True
        addon.responseheaders(flow)
        assert flow.response.status_code == 200  # nothing replaced yet: mitmproxy would overwrite it
        addon.response(flow)
        assert flow.response.status_code == 500
        assert orjson.loads(flow.response.content)["error"]["code"] == "gateway_error"
        addon.done()


async def test_full_cycle_sets_metadata_headers_and_event_log(config_file, caplog):
    addon = AIProxy()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, ai_proxy_config=str(config_file))
        flow = chat_flow()
        await addon.request(flow)
        flow.response = tutils.tresp(
            content=(ROOT / "fixtures/openai/chat/response.json").read_bytes(),
            headers=[(b"content-type", b"application/json")],
        )
        with caplog.at_level(logging.INFO, logger="ai_proxy"):
            addon.responseheaders(flow)
            addon.response(flow)
        record = flow.metadata["ai_proxy"]
        assert record["ai"]["proxy"]["usage"]["total_tokens"] == 37
        assert record["ai"]["proxy"]["meta"]["route"] == "chat"
        assert flow.response.headers["x-ai-proxy-model"] == "openai/gpt-4o-mini-2024-07-18"
        assert float(flow.response.headers["x-ai-proxy-overhead-ms"]) > 0
        assert "ai_proxy route=chat provider=openai" in caplog.text
        assert "sk-configured-1" not in caplog.text
        addon.done()
