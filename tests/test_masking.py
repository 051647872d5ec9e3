"""Which request parts are credentials, the markers that replace them, and the FlowMasking addon."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
from mitmproxy import http
from mitmproxy.test import taddons, tflow, tutils

from addon.flow_masking import FlowMasking
from addon.gateway import AIProxy
from transforms.auth import AuthResult
from transforms.masking import (
    CLIENT_MARKER,
    CredentialMask,
    attached_credentials,
    client_credentials,
    client_request,
    mask_body,
    replay_credentials,
)
from transforms.transcript import TEXT_CAP, Transcript
from transforms.types import Inbound, Upstream


def upstream(**headers: str) -> Upstream:
    return Upstream("POST", "https", "h", 443, "/p", [], dict(headers), (), b"{}")


def test_attached_credentials_name_every_kind():
    auth = AuthResult(set_headers={"x-api-key": "k"}, query={"key": "q"}, body_params={"api_key": "b"})
    mask = attached_credentials("r1", auth, upstream(**{"x-api-key": "k", "anthropic-version": "1"}))
    assert mask == CredentialMask("[ai-proxy: r1 credential]", ("x-api-key",), ("key",), ("api_key",))
    signed = upstream(
        authorization="AWS4-HMAC-SHA256 ...", **{"x-amz-security-token": "t", "x-amz-date": "d"}
    )
    assert attached_credentials("bedrock", AuthResult(), signed).headers == (
        "authorization",
        "x-amz-security-token",
    )
    assert not attached_credentials("none", AuthResult(), upstream(**{"content-type": "application/json"}))


def test_client_credentials_and_the_kept_client_request():
    mask = client_credentials(["Authorization", "Content-Type", "x-goog-api-key"], ["key", "alt"])
    assert (mask.marker, mask.headers, mask.query) == (
        CLIENT_MARKER,
        ("authorization", "x-goog-api-key"),
        ("key",),
    )
    body = b'{"messages": []}' + b" " * 100
    inbound = Inbound(
        "POST", "", "/v1/chat", [("key", "secret-q"), ("alt", "sse")], {"authorization": "Bearer sk-x"}, body
    )
    kept = client_request(inbound, limit=20)
    assert kept == {
        "method": "POST",
        "host": "",
        "path": "/v1/chat?key=%5Bai-proxy%3A+client+credential%5D&alt=sse",
        "headers": [["authorization", CLIENT_MARKER]],
        "body": body[:20].decode(),
        "body_size": len(body),
        "truncated": True,
    }
    assert orjson.loads(orjson.dumps(kept)) == kept  # JSON-able: flows are saved with -w


def test_mask_body_replaces_only_top_level_fields():
    mask = CredentialMask("M", body=("api_key",))
    assert orjson.loads(mask_body(b'{"api_key": "s", "x": 1}', mask)) == {"api_key": "M", "x": 1}
    assert mask_body(b"not json", mask) == b"not json"


def test_replay_credentials_say_why_not():
    attached = AuthResult(set_headers={"x-api-key": "k"})
    masked = {"headers": ["x-api-key"], "query": [], "body": []}
    assert replay_credentials("r", masked, attached, signs=False) == ({"x-api-key": "k"}, {}, {})
    assert replay_credentials("r", {**masked, "query": ["key"]}, attached, signs=False) == (
        "route r no longer attaches the key query parameter"
    )
    signed = {"headers": ["authorization", "x-amz-security-token"], "query": [], "body": []}
    assert replay_credentials("b", signed, AuthResult(), signs=True) == ({}, {}, {})


def test_transcript_is_bounded():
    t = Transcript()
    t.reasoning("r" * (TEXT_CAP + 10))
    for i in range(40):
        t.tool_start(i, f"f{i}", "{")
        t.tool_arguments(i, "x" * 2000)
    out = t.as_dict("t" * (TEXT_CAP + 1), TEXT_CAP + 1, None, "m", "stop")
    assert len(out["text"]) == TEXT_CAP and len(out["reasoning"]) == TEXT_CAP
    assert len(out["tool_calls"]) == 32 and out["tool_calls_seen"] == 40
    assert len(out["tool_calls"][0]["arguments"]) == 1024
    assert (out["finish_reason"], out["model"], out["truncated"]) == ("stop", "m", True)


def inspected_flow() -> http.HTTPFlow:
    return tflow.tflow(
        req=tutils.treq(
            path=b"/v1beta/models/g:generateContent?key=client-secret",
            headers=http.Headers([(b"x-goog-api-key", b"client-secret"), (b"accept", b"*/*")]),
        ),
        resp=True,
    )


def test_client_credentials_stay_unless_the_option_says_otherwise():
    gateway = AIProxy()
    masking = FlowMasking(gateway)
    with taddons.context(masking) as tctx:
        flow = inspected_flow()
        masking.responseheaders(flow)
        assert flow.request.headers["x-goog-api-key"] == "client-secret"
        tctx.configure(masking, ai_proxy_mask_client_credentials=True)
        masking.responseheaders(flow)
        assert flow.request.headers["x-goog-api-key"] == CLIENT_MARKER
        assert flow.request.query["key"] == CLIENT_MARKER
        assert flow.request.headers["accept"] == "*/*"


async def test_a_replay_carrying_a_client_marker_is_refused():
    masking = FlowMasking(AIProxy())
    with taddons.context(masking) as tctx:
        tctx.configure(masking, ai_proxy_mask_client_credentials=True)
        flow = inspected_flow()
        masking.error(flow)
        flow.response = None
        flow.is_replay = "request"
        await masking.request(flow)
        assert flow.response is not None and flow.response.status_code == 400
        assert flow.response.json()["error"]["message"] == (
            "cannot replay this flow: its credentials were masked when it was stored and no route can put them back"
        )


class OneFlowGateway:
    """What FlowMasking asks the gateway: the plan of a flow in flight."""

    def __init__(self, prep: Any) -> None:
        self.prep = prep

    def prepared(self, flow: http.HTTPFlow) -> Any:
        return self.prep


async def test_flows_still_in_flight_at_shutdown_are_masked_before_save_writes_them():
    route = SimpleNamespace(name="anthropic-chat")
    prep = SimpleNamespace(
        route=route, mask=CredentialMask("[ai-proxy: anthropic-chat credential]", ("x-api-key",))
    )
    masking = FlowMasking(OneFlowGateway(prep))  # type: ignore[arg-type]
    with taddons.context(masking):
        flow = tflow.tflow(req=tutils.treq(headers=http.Headers([(b"x-api-key", b"sk-ant-real")])))
        await masking.request(flow)
        assert flow.request.headers["x-api-key"] == "sk-ant-real"  # in flight: the real value goes out
        masking.done()
        assert flow.request.headers["x-api-key"] == "[ai-proxy: anthropic-chat credential]"
        assert flow.metadata["ai_proxy"]["masked"]["headers"] == ["x-api-key"]
