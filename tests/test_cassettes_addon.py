"""The cassette addon's glue (addon/cassettes.py) with mitmproxy's test helpers: options, loading,
a local miss answer, and the gateway's default without a routes file."""

from __future__ import annotations

import logging

import orjson
import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons, tflow, tutils
from test_addon import ROUTES, chat_flow

from addon.cassettes import Cassettes
from addon.gateway import AIProxy
from transforms.cassette import ExchangeRequest, build_cassette, dump_cassette


@pytest.fixture
def routes_file(tmp_path):
    path = tmp_path / "routes.json"
    path.write_bytes(orjson.dumps(ROUTES))
    return path


def good_cassette() -> bytes:
    req = ExchangeRequest(
        provider="openai",
        model="gpt-4o-mini",
        stream=False,
        method="POST",
        url="http://127.0.0.1:9/v1/chat/completions",
        headers={"content-type": "application/json"},
        body=orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
    )
    answer = {
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}
        ]
    }
    return dump_cassette(
        build_cassette(req, 200, [("content-type", "application/json")], orjson.dumps(answer), None), ()
    )


def test_none_mode_needs_an_existing_directory(tmp_path):
    gateway = AIProxy()
    cassettes = Cassettes(gateway)
    with taddons.context(gateway, cassettes) as tctx:
        with pytest.raises(exceptions.OptionsError, match="is not a directory"):
            tctx.configure(
                cassettes, ai_proxy_cassettes=str(tmp_path / "missing"), ai_proxy_record_mode="none"
            )
        with pytest.raises(exceptions.OptionsError, match="ai_proxy_record_mode must be one of"):
            tctx.configure(cassettes, ai_proxy_cassettes=str(tmp_path), ai_proxy_record_mode="once")
        cassettes.done()


def test_a_broken_cassette_is_a_warning_naming_it_and_the_rest_still_load(tmp_path, caplog):
    (tmp_path / "openai").mkdir()
    (tmp_path / "openai" / "good.json").write_bytes(good_cassette())
    (tmp_path / "openai" / "broken.json").write_bytes(b'{"ai_proxy_cassette": 1, "match": ')
    gateway = AIProxy()
    cassettes = Cassettes(gateway)
    with caplog.at_level(logging.INFO), taddons.context(gateway, cassettes) as tctx:
        tctx.configure(cassettes, ai_proxy_cassettes=str(tmp_path), ai_proxy_record_mode="none")
        assert list(cassettes.by_name) == ["openai/good.json"]
        cassettes.done()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "skipping cassette openai/broken.json: not JSON" in warnings[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # mitmdump would stop at start


async def test_a_hit_points_the_prepared_flow_at_the_replay_server_and_a_miss_is_answered_here(
    tmp_path, routes_file
):
    (tmp_path / "openai").mkdir()
    (tmp_path / "openai" / "good.json").write_bytes(good_cassette())
    gateway = AIProxy()
    cassettes = Cassettes(gateway)
    with taddons.context(gateway, cassettes) as tctx:
        tctx.configure(gateway, ai_proxy_config=str(routes_file))
        tctx.configure(cassettes, ai_proxy_cassettes=str(tmp_path), ai_proxy_record_mode="none")
        hit = chat_flow()
        await gateway.request(hit)
        cassettes.request(hit)
        assert hit.response is None
        assert (hit.request.host, hit.request.port) == ("127.0.0.1", cassettes._server.port)
        assert hit.request.headers["x-ai-proxy-replay"] == "openai/good.json"
        assert gateway.flow_state(hit).replayed is True

        miss = tflow.tflow(
            req=tutils.treq(
                method=b"POST",
                path=b"/v1/chat/completions",
                content=orjson.dumps(
                    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "bye"}]}
                ),
            )
        )
        await gateway.request(miss)
        cassettes.request(miss)
        assert miss.response.status_code == 400
        error = orjson.loads(miss.response.content)["error"]
        assert error["code"] == "cassette_miss"
        assert "closest is openai/good.json, which differs in body.messages[0].content" in error["message"]
        assert gateway.flow_state(miss) is None  # the gateway will not translate or record it
        cassettes.done()
        gateway.done()


def test_without_a_routes_file_there_are_no_routes_and_nothing_is_answered(caplog):
    gateway = AIProxy()
    with caplog.at_level(logging.INFO), taddons.context(gateway) as tctx:
        tctx.configure(gateway, ai_proxy_config=None)
        assert gateway.config.routes == []
        gateway.done()
    assert "ai_proxy: no routes (ai_proxy_config is not set)" in caplog.text


async def test_an_internal_error_in_none_mode_fails_closed(tmp_path, routes_file, monkeypatch):
    from addon import cassettes as cassettes_module

    def broken(_request):
        raise RuntimeError("bug")

    monkeypatch.setattr(cassettes_module, "match_of", broken)
    gateway = AIProxy()
    cassettes = Cassettes(gateway)
    with taddons.context(gateway, cassettes) as tctx:
        tctx.configure(gateway, ai_proxy_config=str(routes_file))
        tctx.configure(cassettes, ai_proxy_cassettes=str(tmp_path), ai_proxy_record_mode="none")
        flow = chat_flow()
        await gateway.request(flow)
        cassettes.request(flow)
        assert flow.response.status_code == 500  # answered here: nothing reaches the upstream
        assert orjson.loads(flow.response.content)["error"]["code"] == "gateway_error"
        cassettes.done()
        gateway.done()
