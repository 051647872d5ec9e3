"""Unit tests of the realtime route type: the upgrade request (transforms/realtime.py), the usage of
``response.done`` events, and the RealtimeSessions addon's records on mitmproxy WebSocket flows."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from mitmproxy.test import tflow
from mitmproxy.websocket import WebSocketMessage
from wsproto.frame_protocol import Opcode

from addon.realtime import RealtimeSessions
from addon.stats import StatsSink
from transforms.config import GatewayConfig
from transforms.errors import GatewayError
from transforms.pipeline import prepare
from transforms.realtime import REALTIME_METADATA, response_usage
from transforms.summary import UsageTally
from transforms.types import Inbound

UPGRADE = {"upgrade": "websocket", "connection": "Upgrade", "sec-websocket-version": "13"}


def config(**model: Any) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "routes": [
                {
                    "name": "rt",
                    "match": {"path": "/v1/realtime"},
                    "route_type": "realtime/v1/realtime",
                    "auth": {"param_name": "key", "param_value": "route-key", "param_location": "query"},
                    "model": model,
                }
            ]
        }
    )


def upgrade(
    query: list[tuple[str, str]], headers: dict[str, str] | None = None, method: str = "GET"
) -> Inbound:
    return Inbound(method, "", "/v1/realtime", query, headers if headers is not None else UPGRADE, b"")


def prepared(cfg: GatewayConfig, inbound: Inbound):
    return prepare(cfg.routes[0], inbound, request_id="1", now=1700000000)


def test_azure_preview_uses_the_v1_path_with_the_deployment_as_model():
    cfg = config(
        provider="azure",
        options={"azure_instance": "inst", "azure_deployment_id": "dep", "azure_api_version": "preview"},
    )
    prep = prepared(cfg, upgrade([("deployment", "other"), ("key", "client-key"), ("intent", "x")]))
    assert (
        prep.upstream.url
        == "https://inst.openai.azure.com/openai/v1/realtime?model=dep&intent=x&key=route-key"
    )
    assert prep.metered is False
    assert prep.flow_metadata == {REALTIME_METADATA: {"route": "rt", "model": "dep"}}


def test_a_wss_upstream_url_with_a_path_is_used_as_is():
    cfg = config(
        provider="openai", name="gpt-realtime", options={"upstream_url": "wss://rt.example:8443/custom/ws"}
    )
    prep = prepared(cfg, upgrade([]))
    assert prep.upstream.url == "https://rt.example:8443/custom/ws?model=gpt-realtime&key=route-key"
    assert prep.upstream.method == "GET" and prep.upstream.body == b""


@pytest.mark.parametrize(
    ("inbound", "provider", "code"),
    [
        (upgrade([("model", "m")], headers={}), "openai", "websocket_required"),
        (upgrade([("model", "m")], method="POST"), "openai", "websocket_required"),
        (upgrade([("model", "m")]), "gemini", "unsupported_route"),
        (upgrade([]), "openai", "model_not_found"),
    ],
)
def test_refused_upgrades(inbound, provider, code):
    with pytest.raises(GatewayError) as caught:
        prepared(config(provider=provider), inbound)
    assert (caught.value.status, caught.value.code) == (400, code)


def test_only_response_done_events_with_usage_count():
    assert response_usage({"type": "response.output_audio.delta", "delta": "x"}) is None
    assert response_usage({"type": "response.done", "response": {"id": "r"}}) is None
    usage, rid, error = response_usage(
        {
            "type": "response.done",
            "response": {
                "id": "r1",
                "status": "failed",
                "status_details": {"type": "failed", "error": {"message": "server overloaded"}},
                "usage": {"input_tokens": 5, "output_tokens": 0},
            },
        }
    )
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (5, 0, 5)
    assert (rid, error) == ("r1", "response failed: server overloaded")


class StubGateway:
    def __init__(self, cfg: GatewayConfig, sink: StatsSink) -> None:
        self.config = cfg
        self.stats = sink


def message(flow, from_client: bool, content: bytes, at: float) -> None:
    flow.websocket.messages.append(WebSocketMessage(Opcode.TEXT, from_client, content, at))


def test_sessions_give_a_record_per_response_and_one_for_the_totals_counted_once(tmp_path):
    sink = StatsSink()
    sink.open(str(tmp_path / "stats.jsonl"))
    tally = UsageTally()
    sink.subscribe(tally.add)
    addon = RealtimeSessions(StubGateway(config(provider="openai", name="gpt-realtime"), sink))
    other = tflow.twebsocketflow()  # a WebSocket flow that is no realtime session: ignored
    addon.websocket_start(other)
    message(other, False, b'{"type": "response.done", "response": {"usage": {"input_tokens": 1}}}', 1.0)
    addon.websocket_message(other)
    addon.websocket_end(other)

    flow = tflow.twebsocketflow(messages=False)
    flow.metadata["ai_proxy"] = {REALTIME_METADATA: {"route": "rt", "model": "gpt-realtime"}}
    addon.websocket_start(flow)
    for n in (1, 2):
        message(flow, True, b'{"type": "response.create"}', 10.0 * n)
        addon.websocket_message(flow)
        done = {
            "type": "response.done",
            "response": {"id": f"r{n}", "usage": {"input_tokens": n, "output_tokens": 2}},
        }
        message(flow, False, orjson.dumps(done), 10.0 * n + 0.25)
        addon.websocket_message(flow)
    addon.websocket_end(flow)
    sink.close()

    records = [
        orjson.loads(line)["ai"]["proxy"] for line in (tmp_path / "stats.jsonl").read_bytes().splitlines()
    ]
    assert [r["meta"]["realtime"]["event"] for r in records] == [
        "response.done",
        "response.done",
        "session.closed",
    ]
    assert [r["meta"]["llm_latency"] for r in records[:2]] == [250, 250]
    assert [r["usage"]["total_tokens"] for r in records] == [3, 4, 7]
    assert records[2]["meta"]["realtime"]["responses"] == 2
    assert flow.metadata["ai_proxy"]["ai"]["proxy"]["usage"]["total_tokens"] == 7
    # The summary saw the two responses, not the totals again.
    total = tally.as_json()["total"]
    assert (total["calls"], total["prompt_tokens"], total["completion_tokens"]) == (2, 3, 4)
