"""The access-control glue (addon/access.py) in front of the gateway: taddons, a clock the test moves."""

from __future__ import annotations

import hashlib
import logging
import subprocess

import orjson
import pytest
from conftest import ROOT
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow, tutils

from addon.access import AccessControl
from addon.gateway import AIProxy
from transforms.access import DAY

ALICE = "alice-gw-key-31c0"
BOB = "bob-gw-key-88e1"
CAROL = "carol-gw-key-17ab"
T0 = 1_700_006_400.0  # midnight UTC

PROVIDER = {"header_name": "Authorization", "header_value": "Bearer sk-configured-1"}
CHAT = {
    "name": "chat",
    "match": {"path": "/v1/chat/completions"},
    "route_type": "llm/v1/chat",
    "auth": PROVIDER,
    "model": {"provider": "openai", "options": {"upstream_url": "http://127.0.0.1:9"}},
}
# A route with no auth block at all: nothing of the operator's is attached.
SELF_HOSTED = {
    "name": "local-llama",
    "match": {"path": "/llama/v1/chat/completions"},
    "route_type": "llm/v1/chat",
    "model": {
        "provider": "llama2",
        "options": {"llama2_format": "openai", "upstream_url": "http://127.0.0.1:9"},
    },
}
KEYS = [
    {"name": "alice", "key": ALICE},
    {
        "name": "bob",
        "key_sha256": hashlib.sha256(BOB.encode()).hexdigest(),
        "limits": {"requests_per_minute": 2},
    },
    {"name": "carol", "key": CAROL, "limits": {"tokens_per_day": 30}},
]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def chat_flow(
    headers: list[tuple[bytes, bytes]],
    path: bytes = b"/v1/chat/completions",
    peer: str = "127.0.0.1",
    mode: str = "reverse:http://127.0.0.1:1",
) -> tflow.HTTPFlow:
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    req = tutils.treq(method=b"POST", path=path, content=body, headers=headers)
    flow = tflow.tflow(req=req)
    flow.client_conn.proxy_mode = ProxyMode.parse(mode)
    flow.client_conn.peername = (peer, 50123)
    return flow


class Rig:
    """AccessControl and AIProxy, in the order ai_proxy.py lists them."""

    def __init__(self, tctx: taddons.context, gateway: AIProxy, access: AccessControl) -> None:
        self.tctx, self.gateway, self.access = tctx, gateway, access

    async def send(self, flow: tflow.HTTPFlow) -> tflow.HTTPFlow:
        self.access.request(flow)
        await self.gateway.request(flow)
        return flow

    def answer(self, flow: tflow.HTTPFlow, fixture: str = "fixtures/openai/chat/response.json") -> None:
        flow.response = tutils.tresp(
            content=(ROOT / fixture).read_bytes(), headers=[(b"content-type", b"application/json")]
        )
        self.gateway.responseheaders(flow)
        self.gateway.response(flow)


@pytest.fixture
def rig_for(tmp_path):
    contexts = []

    def make(config: dict, clock: Clock | None = None, **options) -> Rig:
        path = tmp_path / "routes.json"
        path.write_bytes(orjson.dumps(config))
        gateway = AIProxy()
        access = AccessControl(gateway, clock or Clock(T0))
        tctx = taddons.context(access, gateway)
        contexts.append((tctx, gateway))
        tctx.__enter__()
        tctx.configure(gateway, ai_proxy_config=str(path), **options)
        return Rig(tctx, gateway, access)

    yield make
    for tctx, gateway in contexts:
        gateway.done()
        tctx.__exit__(None, None, None)


def error(flow: tflow.HTTPFlow) -> tuple[int, str, str]:
    body = orjson.loads(flow.response.content)["error"]
    return flow.response.status_code, body["code"], body["message"]


async def test_a_known_key_goes_on_with_the_provider_credential_only(rig_for, caplog):
    rig = rig_for({"gateway_keys": KEYS, "routes": [CHAT, SELF_HOSTED]})
    flow = await rig.send(chat_flow([(b"authorization", f"Bearer {ALICE}".encode())]))
    assert flow.response is None
    assert flow.request.url == "http://127.0.0.1:9/v1/chat/completions"
    assert flow.request.headers.get_all("authorization") == ["Bearer sk-configured-1"]
    assert flow.metadata["ai_proxy_consumer"] == "alice"
    with caplog.at_level(logging.INFO, logger="ai_proxy"):
        rig.answer(flow)
    meta = flow.metadata["ai_proxy"]["ai"]["proxy"]["meta"]
    assert (meta["route"], meta["consumer"]) == ("chat", "alice")
    assert "ai_proxy route=chat consumer=alice provider=openai model=gpt-4o-mini" in caplog.text
    assert ALICE not in caplog.text


async def test_a_route_without_auth_never_forwards_the_gateway_key(rig_for):
    rig = rig_for({"gateway_keys": KEYS, "routes": [CHAT, SELF_HOSTED]})
    headers = [
        (b"x-api-key", ALICE.encode()),
        (b"api-key", ALICE.encode()),
        (b"x-goog-api-key", ALICE.encode()),
    ]
    flow = await rig.send(chat_flow(headers, b"/llama/v1/chat/completions"))
    assert flow.response is None
    assert flow.request.url == "http://127.0.0.1:9/v1/chat/completions"
    for name in ("authorization", "x-api-key", "api-key", "x-goog-api-key"):
        assert name not in flow.request.headers
    assert ALICE.encode() not in bytes(flow.request.content) + repr(flow.request.headers.fields).encode()


async def test_missing_wrong_and_not_allowed_keys_are_answered_locally(rig_for):
    narrow = {
        **CHAT,
        "name": "narrow",
        "match": {"path": "/narrow/v1/chat/completions"},
        "allow_keys": ["alice"],
    }
    rig = rig_for({"gateway_keys": KEYS, "routes": [CHAT, narrow]})
    missing = await rig.send(chat_flow([]))
    assert error(missing)[:2] == (401, "invalid_api_key")
    wrong = await rig.send(chat_flow([(b"authorization", b"Bearer sk-guess")]))
    assert error(wrong) == (401, "invalid_api_key", "invalid API key: not a key of this gateway")
    assert wrong.request.url == "http://address:22/v1/chat/completions"  # neither prepared nor re-pointed
    assert "authorization" not in wrong.request.headers  # no key, right or wrong, stays in a stored flow
    refused = await rig.send(chat_flow([(b"x-api-key", CAROL.encode())], b"/narrow/v1/chat/completions"))
    assert error(refused) == (403, "key_not_allowed", "the key 'carol' is not allowed on route 'narrow'")
    assert "x-api-key" not in refused.request.headers  # carol's key is valid elsewhere: not kept either
    assert rig.gateway._live == {}  # the gateway holds no state for refused flows
    allowed = await rig.send(chat_flow([(b"x-api-key", ALICE.encode())], b"/narrow/v1/chat/completions"))
    assert allowed.response is None


async def test_requests_per_minute_with_a_clock_the_test_moves(rig_for):
    clock = Clock(T0 + 10)
    rig = rig_for({"gateway_keys": KEYS, "routes": [CHAT]}, clock)
    bob = [(b"authorization", f"Bearer {BOB}".encode())]
    assert (await rig.send(chat_flow(bob))).response is None
    assert (await rig.send(chat_flow(bob))).response is None
    clock.now = T0 + 25
    third = await rig.send(chat_flow(bob))
    assert error(third) == (
        429,
        "rate_limit_exceeded",
        "the key 'bob' reached its limit: requests_per_minute (2); retry after 35 s",
    )
    assert third.response.headers["retry-after"] == "35"
    assert "authorization" not in third.request.headers
    assert (await rig.send(chat_flow([(b"x-api-key", ALICE.encode())]))).response is None  # alice is not bob
    clock.now = T0 + 60
    assert (await rig.send(chat_flow(bob))).response is None


async def test_tokens_per_day_are_counted_from_statistics(rig_for):
    clock = Clock(T0 + 3600)
    rig = rig_for({"gateway_keys": KEYS, "routes": [CHAT]}, clock)
    carol = [(b"x-api-key", CAROL.encode())]
    first = await rig.send(chat_flow(carol))
    assert first.response is None
    rig.answer(first)  # 37 tokens, over carol's 30 per day
    assert first.metadata["ai_proxy"]["ai"]["proxy"]["usage"]["total_tokens"] == 37
    clock.now = T0 + 7200
    second = await rig.send(chat_flow(carol))
    assert error(second)[:2] == (429, "rate_limit_exceeded")
    assert second.response.headers["retry-after"] == str(DAY - 7200)
    clock.now = T0 + DAY
    assert (await rig.send(chat_flow(carol))).response is None


async def test_a_stream_counts_too(rig_for):
    clock = Clock(T0)
    rig = rig_for({"gateway_keys": KEYS, "routes": [CHAT]}, clock)
    carol = [(b"x-api-key", CAROL.encode())]
    flow = chat_flow(carol)
    flow.request.content = orjson.dumps(
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    )
    await rig.send(flow)
    flow.response = tutils.tresp(content=b"", headers=[(b"content-type", b"text/event-stream")])
    rig.gateway.responseheaders(flow)
    translate = flow.response.stream
    translate((ROOT / "fixtures/openai/chat/stream.sse").read_bytes())
    translate(b"")
    rig.gateway.response(flow)
    usage = flow.metadata["ai_proxy"]["ai"]["proxy"]["usage"]
    assert (usage["total_tokens"], flow.metadata["ai_proxy"]["ai"]["proxy"]["meta"]["request_mode"]) == (
        32,
        "stream",
    )
    assert error(await rig.send(chat_flow(carol)))[:2] == (429, "rate_limit_exceeded")


async def test_non_loopback_clients_without_gateway_keys(rig_for):
    rig = rig_for({"routes": [CHAT, SELF_HOSTED]})
    outside = await rig.send(chat_flow([], peer="203.0.113.7"))
    assert error(outside) == (
        403,
        "loopback_only",
        "route 'chat' attaches the gateway's provider credentials and serves only clients on this machine: "
        "configure gateway_keys, or set --set ai_proxy_open_access=true",
    )
    for peer in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        assert (await rig.send(chat_flow([], peer=peer))).response is None
    # A route that attaches nothing of the operator's serves anyone.
    assert (await rig.send(chat_flow([], b"/llama/v1/chat/completions", peer="203.0.113.7"))).response is None
    # Traffic no route claims (inspection, the client's own credentials) is not affected.
    unmatched = await rig.send(chat_flow([], b"/elsewhere", peer="203.0.113.7", mode="regular"))
    assert unmatched.response is None and unmatched.request.path == "/elsewhere"
    rig.tctx.configure(rig.access, ai_proxy_open_access=True)
    opened = await rig.send(chat_flow([], peer="203.0.113.7"))
    assert opened.response is None
    assert opened.request.headers["authorization"] == "Bearer sk-configured-1"


async def test_gateway_keys_apply_to_loopback_clients_too(rig_for):
    rig = rig_for({"gateway_keys": KEYS, "routes": [CHAT]}, ai_proxy_open_access=True)
    assert error(await rig.send(chat_flow([], peer="127.0.0.1")))[:2] == (401, "invalid_api_key")
    assert (await rig.send(chat_flow([(b"x-api-key", ALICE.encode())], peer="198.51.100.2"))).response is None


async def test_a_bad_key_config_keeps_the_last_good_one(rig_for, tmp_path, caplog):
    rig = rig_for({"gateway_keys": KEYS, "routes": [CHAT]})
    bad = tmp_path / "bad.json"
    bad.write_bytes(orjson.dumps({"gateway_keys": [*KEYS, {"name": "alice", "key": "x"}], "routes": [CHAT]}))
    with caplog.at_level(logging.WARNING, logger="ai_proxy"):
        rig.tctx.configure(rig.gateway, ai_proxy_config=str(bad))
    assert "gateway key 'alice': the name is used more than once" in caplog.text
    assert [k.name for k in rig.gateway.config.gateway_keys] == ["alice", "bob", "carol"]
    assert error(await rig.send(chat_flow([(b"x-api-key", b"x")])))[:2] == (401, "invalid_api_key")


@pytest.mark.parametrize(
    ("config", "options", "warned"),
    [
        ({"routes": [CHAT]}, {"listen_host": ""}, "listening on all interfaces"),
        ({"routes": [CHAT]}, {"listen_host": "0.0.0.0"}, "listening on 0.0.0.0"),
        ({"routes": [CHAT]}, {"listen_host": "127.0.0.1"}, None),
        (
            {"routes": [CHAT]},
            {"listen_host": "", "mode": ["reverse:http://127.0.0.1:1@127.0.0.1:8080"]},
            None,
        ),
        ({"routes": [CHAT]}, {"listen_host": "127.0.0.1", "mode": ["regular@0.0.0.0:8080"]}, "on 0.0.0.0"),
        ({"routes": [SELF_HOSTED]}, {"listen_host": ""}, None),  # nothing of the operator's to spend
        ({"gateway_keys": KEYS, "routes": [CHAT]}, {"listen_host": ""}, None),
    ],
)
def test_one_warning_at_start_when_listening_beyond_loopback(rig_for, caplog, config, options, warned):
    rig = rig_for(config, **options)
    with caplog.at_level(logging.WARNING, logger="ai_proxy"):
        rig.access.running()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if warned is None:
        assert warnings == []
    else:
        assert len(warnings) == 1
        assert warned in warnings[0]
        assert "clients not on loopback are refused (403) on routes chat" in warnings[0]
        assert "Configure gateway_keys" in warnings[0]


def test_the_warning_with_open_access_says_anyone_can_spend(rig_for, caplog):
    rig = rig_for({"routes": [CHAT]}, listen_host="", ai_proxy_open_access=True)
    with caplog.at_level(logging.WARNING, logger="ai_proxy"):
        rig.access.running()
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "anyone who can reach it can spend the provider credentials of routes chat" in record.getMessage()


async def test_access_control_fails_closed(rig_for, monkeypatch, caplog):
    rig = rig_for({"gateway_keys": KEYS, "routes": [CHAT]})
    monkeypatch.setattr("addon.access.decide", lambda *a, **k: 1 / 0)
    flow = await rig.send(chat_flow([(b"x-api-key", ALICE.encode())]))
    assert error(flow) == (
        500,
        "gateway_error",
        "internal error in the AI gateway (access control); the request was not forwarded",
    )
    assert flow.request.url == "http://address:22/v1/chat/completions"  # the gateway left it alone
    assert "internal error in access control" in caplog.text


def test_make_run_listens_on_loopback():
    out = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "--listen-host 127.0.0.1" in out
