"""End to end: a Realtime API session over WebSocket through mitmdump, against a local fake realtime
server (``websockets``): the upgrade gets the route's auth, URL and model, messages pass both ways
byte for byte, each ``response.done`` gives one statistics record and the session's close one more
with its totals. Driven by the openai SDK's realtime clients (OpenAI and Azure) and by a raw
``websockets`` client for exact bytes."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import openai
import orjson
import pytest
from conftest import route
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

SESSION_CREATED = (
    '{"type": "session.created", "event_id": "ev_1", "session": {"id": "sess_1", "model": "gpt-realtime"}}'
)
AUDIO_DELTA = orjson.dumps(
    {
        "type": "response.output_audio.delta",
        "event_id": "ev_2",
        "response_id": "resp_1",
        "item_id": "it_1",
        "output_index": 0,
        "content_index": 0,
        "delta": "UklGRg==" * 2000,
    }
).decode()


def response_done(n: int, status: str = "completed") -> str:
    usage = {
        "total_tokens": 100 * n + 50,
        "input_tokens": 100 * n,
        "output_tokens": 50,
        "input_token_details": {
            "cached_tokens": 10 * n,
            "text_tokens": 60 * n,
            "audio_tokens": 40 * n,
            "cached_tokens_details": {"text_tokens": 10 * n, "audio_tokens": 0},
        },
        "output_token_details": {"text_tokens": 20, "audio_tokens": 30},
    }
    response: dict[str, Any] = {
        "id": f"resp_{n}",
        "object": "realtime.response",
        "status": status,
        "output": [],
        "usage": usage,
    }
    if status != "completed":
        response["status_details"] = {"type": status, "reason": "turn_detected"}
    # Spacing as a server might write it: the client must get these exact bytes.
    body = orjson.dumps(response).decode()
    return f'{{"type":  "response.done", "event_id": "ev_{n + 10}",  "response": {body}}}'


class FakeRealtime:
    """A realtime server: session.created on connect, and for each response.create an audio delta
    and a response.done (the n-th one's usage scales with n). Records what it received."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.received: list[str | bytes] = []
        self.sent: list[str] = []
        self.statuses: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(5)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            async with serve(self._handle, "127.0.0.1", 0, max_size=None) as server:
                self.port = server.sockets[0].getsockname()[1]
                ready.set()
                await asyncio.Future()

        self.loop.run_until_complete(main())

    async def _handle(self, ws: ServerConnection) -> None:
        self.requests.append((ws.request.path, {k.lower(): v for k, v in ws.request.headers.raw_items()}))
        await self._send(ws, SESSION_CREATED)
        n = 0
        async for message in ws:
            self.received.append(message)
            if isinstance(message, str) and '"response.create"' in message:
                n += 1
                await self._send(ws, AUDIO_DELTA)
                status = self.statuses.pop(0) if self.statuses else "completed"
                await self._send(ws, response_done(n, status))

    async def _send(self, ws: ServerConnection, text: str) -> None:
        self.sent.append(text)
        await ws.send(text)

    def reset(self) -> None:
        self.requests.clear()
        self.received.clear()
        self.sent.clear()
        self.statuses.clear()


@pytest.fixture(scope="module")
def fake() -> FakeRealtime:
    return FakeRealtime()


@pytest.fixture
def gw(gateway, fake):
    fake.reset()
    openai_auth = {"header_name": "Authorization", "header_value": "Bearer sk-route-key"}
    azure_options = {
        "azure_instance": "unused",
        "azure_deployment_id": "rt-deployment",
        "azure_api_version": "2024-10-01-preview",
        "input_cost": 4.0,
        "output_cost": 16.0,
    }
    routes = [
        route(
            "rt",
            "/rt/v1/realtime",
            "realtime/v1/realtime",
            "openai",
            f"ws://127.0.0.1:{fake.port}",
            model="gpt-realtime",
            auth=openai_auth,
        ),
        route(
            "rt-az",
            "/az/openai/realtime",
            "realtime/v1/realtime",
            "azure",
            f"http://127.0.0.1:{fake.port}",
            auth={"header_name": "api-key", "header_value": "az-route-key"},
            options=azure_options,
        ),
    ]
    return gateway(routes)


def realtime_records(gw, count: int) -> list[dict[str, Any]]:
    records = gw.wait_records(count)
    assert len(records) == count, records
    return [r["ai"]["proxy"] for r in records]


def test_sdk_session_through_the_gateway(gw, fake):
    client = openai.OpenAI(base_url=f"{gw.url}/rt/v1", api_key="sk-client-own-key", max_retries=0)
    with client.realtime.connect(model="gpt-realtime") as conn:
        created = conn.recv()
        assert created.type == "session.created"
        conn.send({"type": "response.create"})
        assert conn.recv().type == "response.output_audio.delta"
        done = conn.recv()
        assert done.type == "response.done"
        assert done.response.usage.input_token_details.audio_tokens == 40
        conn.send({"type": "response.create", "response": {"instructions": "again"}})
        conn.recv()
        assert conn.recv().response.usage.input_tokens == 200
    path, headers = fake.requests[0]
    assert path == "/v1/realtime?model=gpt-realtime"
    assert headers["authorization"] == "Bearer sk-route-key"
    assert "openai-beta" not in headers  # the GA client sends none, and none is added
    assert [orjson.loads(m) for m in fake.received] == [
        {"type": "response.create"},
        {"type": "response.create", "response": {"instructions": "again"}},
    ]
    first, second, session = realtime_records(gw, 3)
    assert first["meta"]["request_mode"] == "realtime"
    assert first["meta"]["route"] == "rt"
    assert first["meta"]["request_model"] == "gpt-realtime"
    assert first["meta"]["realtime"] == {"event": "response.done", "response_id": "resp_1"}
    assert first["usage"]["prompt_tokens"] == 100
    assert first["usage"]["completion_tokens"] == 50
    assert first["usage"]["total_tokens"] == 150
    assert first["usage"]["prompt_tokens_details"] == {
        "cached_tokens": 10,
        "text_tokens": 60,
        "audio_tokens": 40,
    }
    assert first["usage"]["completion_tokens_details"] == {"text_tokens": 20, "audio_tokens": 30}
    assert second["usage"]["prompt_tokens"] == 200
    assert second["meta"]["realtime"]["response_id"] == "resp_2"
    assert session["meta"]["realtime"]["event"] == "session.closed"
    assert session["meta"]["realtime"]["responses"] == 2
    assert session["usage"]["prompt_tokens"] == 300
    assert session["usage"]["completion_tokens"] == 100
    assert session["usage"]["total_tokens"] == 400
    assert session["usage"]["prompt_tokens_details"] == {
        "cached_tokens": 30,
        "text_tokens": 180,
        "audio_tokens": 120,
    }
    assert session["usage"]["completion_tokens_details"] == {"text_tokens": 40, "audio_tokens": 60}
    assert "sk-route-key" not in gw.stats_path.read_text()


def test_messages_pass_byte_for_byte_and_beta_header_is_kept(gw, fake):
    fake.statuses.append("cancelled")
    sent_text = '{"type":"response.create",   "response": {"modalities": ["text"], "note": "\\u00e9 é"}}'
    sent_binary = bytes(range(256)) * 3
    with connect(
        f"ws://127.0.0.1:{gw.port}/rt/v1/realtime",
        additional_headers={"Authorization": "Bearer sk-client-own-key", "OpenAI-Beta": "realtime=v1"},
        max_size=None,
    ) as ws:
        got = [ws.recv()]
        ws.send(sent_binary)
        ws.send(sent_text)
        got += [ws.recv(), ws.recv()]
    assert got == fake.sent  # the server's exact text, spacing and all
    assert fake.received == [sent_binary, sent_text]
    path, headers = fake.requests[0]
    assert path == "/v1/realtime?model=gpt-realtime"  # the route's model, none asked
    assert headers["openai-beta"] == "realtime=v1"
    assert headers["authorization"] == "Bearer sk-route-key"
    done, session = realtime_records(gw, 2)
    assert done["meta"]["error"] == "response cancelled: turn_detected"
    assert session["meta"]["realtime"]["responses"] == 1
    assert session["usage"]["total_tokens"] == 150


def test_azure_sdk_session_on_the_deployment(gw, fake):
    # The SDK makes Azure's realtime URL wss://; a plain-ws gateway is named by websocket_base_url.
    client = openai.AzureOpenAI(
        azure_endpoint=f"{gw.url}/az",
        websocket_base_url=f"ws://127.0.0.1:{gw.port}/az/openai",
        api_version="2024-10-01-preview",
        api_key="client-key",
        max_retries=0,
    )
    with client.realtime.connect(model="rt-deployment") as conn:
        assert conn.recv().type == "session.created"
        conn.send({"type": "response.create"})
        conn.recv()
        assert conn.recv().type == "response.done"
    path, headers = fake.requests[0]
    assert path == "/openai/realtime?api-version=2024-10-01-preview&deployment=rt-deployment"
    assert headers["api-key"] == "az-route-key"
    done, session = realtime_records(gw, 2)
    assert done["meta"]["provider_name"] == "azure"
    assert done["meta"]["azure_deployment_id"] == "rt-deployment"
    assert done["usage"]["cost"] == pytest.approx((100 * 4.0 + 50 * 16.0) / 1_000_000)
    assert session["usage"]["cost"] == pytest.approx(done["usage"]["cost"])


def test_another_model_is_refused_before_the_upgrade(gw, fake):
    client = openai.OpenAI(base_url=f"{gw.url}/rt/v1", api_key="k", max_retries=0)
    with pytest.raises(Exception) as caught, client.realtime.connect(model="gpt-4o-realtime-preview"):
        pass
    assert "400" in str(caught.value)
    assert fake.requests == []


def test_a_plain_get_is_told_to_use_websocket(gw, fake):
    import httpx

    answer = httpx.get(f"{gw.url}/rt/v1/realtime?model=gpt-realtime", timeout=5)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "websocket_required"
    assert "WebRTC is not supported" in error["message"]
    assert fake.requests == []


def test_cassettes_in_none_mode_never_open_a_realtime_session(gateway, fake, tmp_path_factory):
    fake.reset()
    folder = tmp_path_factory.mktemp("cassettes")
    routes = [route("rt", "/rt/v1/realtime", "realtime/v1/realtime", "openai", f"ws://127.0.0.1:{fake.port}")]
    gw = gateway(
        routes, extra=["--set", f"ai_proxy_cassettes={folder}", "--set", "ai_proxy_record_mode=none"]
    )
    with pytest.raises(InvalidStatus) as caught:
        connect(f"ws://127.0.0.1:{gw.port}/rt/v1/realtime?model=gpt-realtime")
    assert caught.value.response.status_code == 501
    assert orjson.loads(caught.value.response.body)["error"]["code"] == "cassette_miss"
    assert fake.requests == []
