"""Per-flow hooks switched off where they have nothing to do (addon/dispatch.py): mitmproxy skips
them, and they come back as soon as an option, the routes or a flow in flight needs them."""

from __future__ import annotations

import orjson
from mitmproxy.test import taddons, tflow, tutils

from addon.cassettes import Cassettes
from addon.dispatch import hooks_on
from addon.gateway import AIProxy
from addon.ingress_endpoints import IngressEndpoints
from addon.responses_store import ResponseKeeper, ResponseStore, StoredResponses

CHAT = {
    "name": "chat",
    "match": {"path": "/v1/chat/completions"},
    "route_type": "llm/v1/chat",
    "model": {"provider": "openai", "options": {"upstream_url": "http://127.0.0.1:9"}},
}
RESPONSES = {
    "name": "responses",
    "match": {"path": "/v1/responses"},
    "route_type": "llm/v1/responses",
    "model": {
        "provider": "anthropic",
        "options": {"upstream_url": "http://127.0.0.1:9", "anthropic_version": "2023-06-01"},
    },
}
MESSAGES = {**RESPONSES, "name": "messages", "match": {"path": "/v1/messages"}, "route_type": "llm/v1/chat"}
MESSAGES["llm_format"] = "anthropic"


def routes(tmp_path, *defined):
    """A routes file of its own for each set: reconfiguring with another path reloads."""
    path = tmp_path / f"routes-{'-'.join(r['name'] for r in defined)}.json"
    path.write_bytes(orjson.dumps({"routes": list(defined)}))
    return str(path)


def test_cassette_hooks_are_off_without_a_directory(tmp_path):
    gateway = AIProxy()
    cassettes = Cassettes(gateway)
    hooks = ("request", "responseheaders", "response", "error")
    with taddons.context(gateway, cassettes) as tctx:
        tctx.configure(cassettes, ai_proxy_cassettes=None)
        assert [hooks_on(cassettes, h) for h in hooks] == [False] * 4
        tctx.configure(cassettes, ai_proxy_cassettes=str(tmp_path))
        assert [hooks_on(cassettes, h) for h in hooks] == [True] * 4
        tctx.configure(cassettes, ai_proxy_cassettes=None)
        assert [hooks_on(cassettes, h) for h in hooks] == [False] * 4
        cassettes.done()


def test_ingress_endpoints_listen_only_on_routes_of_another_client_format(tmp_path):
    gateway = AIProxy()
    endpoints = IngressEndpoints(gateway)
    with taddons.context(gateway, endpoints) as tctx:
        assert not hooks_on(endpoints, "request")  # no routes yet
        tctx.configure(gateway, ai_proxy_config=routes(tmp_path, CHAT))
        assert not hooks_on(endpoints, "request")
        tctx.configure(gateway, ai_proxy_config=routes(tmp_path, CHAT, MESSAGES))
        assert hooks_on(endpoints, "request")
        tctx.configure(gateway, ai_proxy_config=None)
        assert not hooks_on(endpoints, "request")
        gateway.done()


def test_stored_responses_listen_with_an_adapted_route_and_a_store(tmp_path):
    gateway = AIProxy()
    stored = StoredResponses(gateway, ResponseStore())
    with taddons.context(gateway, stored) as tctx:
        tctx.configure(gateway, ai_proxy_config=routes(tmp_path, CHAT))
        assert not hooks_on(stored, "request")
        tctx.configure(gateway, ai_proxy_config=routes(tmp_path, CHAT, RESPONSES))
        assert hooks_on(stored, "request")
        tctx.configure(stored, ai_proxy_responses_store=0)
        assert not hooks_on(stored, "request")
        tctx.configure(stored, ai_proxy_responses_store=5)
        assert hooks_on(stored, "request")
        gateway.done()


def test_the_keeper_listens_while_a_flow_waits_for_its_answer_to_be_kept(tmp_path):
    gateway = AIProxy()
    store = ResponseStore()
    stored, keeper = StoredResponses(gateway, store), ResponseKeeper(gateway, store)
    hooks = ("responseheaders", "response", "error")
    with taddons.context(gateway, stored, keeper) as tctx:
        tctx.configure(gateway, ai_proxy_config=routes(tmp_path, RESPONSES))
        assert [hooks_on(keeper, h) for h in hooks] == [False] * 3
        body = orjson.dumps({"model": "claude-x", "input": "Hi"})
        flows = [
            tflow.tflow(req=tutils.treq(method=b"POST", path=b"/v1/responses", content=body)) for _ in "ab"
        ]
        for flow in flows:
            stored.request(flow)
        assert list(store.pending) == [flows[0].id, flows[1].id]
        assert [hooks_on(keeper, h) for h in hooks] == [True] * 3
        keeper.error(flows[0])
        assert [hooks_on(keeper, h) for h in hooks] == [True] * 3  # the other one still waits
        flows[1].response = tutils.tresp(content=orjson.dumps({"id": "resp_1", "output": []}))
        keeper.response(flows[1])
        assert store.get("resp_1") is not None
        assert [hooks_on(keeper, h) for h in hooks] == [False] * 3
        gateway.done()


async def test_routes_unset_are_no_longer_matched(tmp_path):
    gateway = AIProxy()
    with taddons.context(gateway) as tctx:
        tctx.configure(gateway, ai_proxy_config=routes(tmp_path, CHAT))
        flow = tflow.tflow(req=tutils.treq(method=b"POST", path=b"/v1/chat/completions"))
        assert gateway.route_for(flow).name == "chat"
        tctx.configure(gateway, ai_proxy_config=None)
        assert gateway.route_for(flow) is None
        gateway.done()
