"""End to end in mitmweb: what a person debugging a gateway flow sees, read through mitmweb's HTTP API.

mitmweb runs the addon with a route to the emulator; a translated call and a streamed one (without
``store_streamed_bodies``) go through it. ``/flows`` shows the provider request with the route's
credential masked, and the "LLM Conversation" view shows both sides: what the client sent, what
went to the provider, what came back, and the streamed answer the gateway assembled; a native Ollama
stream (NDJSON) is assembled the same way.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest
from conftest import MITMDUMP, Gateway, route

KEY = "sk-ant-api03-mitmweb-test-key-0123456789"
CLIENT_KEY = "sk-client-own-key-mitmweb"
PASSWORD = "mitmweb-test-password"
MITMWEB = str(Path(MITMDUMP).with_name("mitmweb"))
MARKER = "[ai-proxy: anthropic-chat credential]"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mitmweb(Gateway):
    """The gateway in mitmweb, with its HTTP API on a free port behind a fixed password."""

    def __init__(self, folder: Path) -> None:
        self.web_port = free_port()
        web = ["--set", "web_open_browser=false", "--set", "web_host=127.0.0.1"]
        web += ["--set", f"web_port={self.web_port}", "--set", f"web_password={PASSWORD}"]
        super().__init__(folder / "routes.json", folder / "stats.jsonl", {}, web, program=MITMWEB)
        self.api = httpx.Client(
            base_url=f"http://127.0.0.1:{self.web_port}", headers={"authorization": f"Bearer {PASSWORD}"}
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the web server starts a moment after the proxy
            try:
                if self.api.get("/flows").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)

    def view(self, flow_id: str, side: str) -> dict:
        answer = self.api.get(f"/flows/{flow_id}/{side}/content/auto.json")
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture(scope="module")
def web(emulator, tmp_path_factory) -> Iterator[Mitmweb]:
    folder = tmp_path_factory.mktemp("mitmweb")
    routes = [
        route(
            "anthropic-chat",
            "/anthropic/v1/chat/completions",
            "llm/v1/chat",
            "anthropic",
            emulator.url,
            auth={"header_name": "x-api-key", "header_value": KEY},
            options={"anthropic_version": "2023-06-01"},
        ),
        route("ollama-native", "/ollama/*", "preserve", "ollama", emulator.url),
    ]
    (folder / "routes.json").write_bytes(orjson.dumps({"routes": routes}))
    server = Mitmweb(folder)
    yield server
    server.stop()


def test_mitmweb_shows_masked_credentials_and_both_sides(web, emulator):
    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{web.port}/anthropic/v1",
        api_key=CLIENT_KEY,
        max_retries=0,
        timeout=10,
    )
    hi = [{"role": "user", "content": "What is the capital of Australia?"}]
    reply = client.chat.completions.create(model="claude-sonnet-4-5", messages=hi)
    assert emulator.last.headers["x-api-key"] == KEY  # the provider got the real key
    stream = client.chat.completions.create(model="claude-sonnet-4-5", messages=hi, stream=True)
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert (
        streamed == reply.choices[0].message.content == "The capital of Australia is Canberra — not Sydney."
    )

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the streamed flow completes just after its last byte
        listed = web.api.get("/flows").json()
        flows = [f for f in listed if f.get("response") and f["request"]["path"] == "/v1/messages"]
        if len(flows) == 2:
            break
        time.sleep(0.05)
    assert len(flows) == 2
    plain, live = flows
    for flow in flows:
        headers = dict(flow["request"]["headers"])
        assert (flow["request"]["path"], headers["x-api-key"]) == ("/v1/messages", MARKER)
    assert live["response"]["contentLength"] is None  # mitmproxy kept no streamed body

    request_view = web.view(plain["id"], "request")
    assert request_view["view_name"] == "LLM Conversation"
    text = request_view["text"].splitlines()
    assert text[:3] == [
        "── the client sent: POST /anthropic/v1/chat/completions",
        "model: claude-sonnet-4-5",
        "user: What is the capital of Australia?",
    ]
    assert f"── sent to the provider: POST {emulator.url}/v1/messages" in text
    assert "── the provider answered: HTTP 200" in text
    assert "assistant: The capital of Australia is Canberra — not Sydney.  [stop: end_turn]" in text
    assert "── the client received: HTTP 200" in text
    assert "assistant: The capital of Australia is Canberra — not Sydney.  [finish: stop]" in text

    live_view = web.view(live["id"], "request")["text"].splitlines()
    start = live_view.index("── streamed answer, as the gateway read it (mitmproxy stored no streamed body)")
    assert live_view[start + 1 : start + 3] == [
        "assistant (streamed): The capital of Australia is Canberra — not Sydney.",
        "finish: stop",
    ]
    assert live_view[start + 3].startswith('usage: {"prompt_tokens":')

    # No secret anywhere mitmweb serves: flow list, views, and the raw request.
    served = web.api.get("/flows").text + request_view["text"] + "\n".join(live_view)
    served += web.api.get(f"/flows/{plain['id']}/request/content.data").text
    for secret in (KEY, CLIENT_KEY):
        assert secret not in served


def test_a_native_stream_mitmproxy_did_not_store_is_readable_in_mitmweb(web):
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "What is 1 + 1?"}], "stream": True}
    with httpx.stream("POST", f"{web.url}/ollama/api/chat", json=body, timeout=10) as answer:
        lines = [orjson.loads(line) for line in answer.iter_lines() if line]
    assert "".join(line["message"]["content"] for line in lines) == "1 + 1 = 2."
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        native = [
            f
            for f in web.api.get("/flows").json()
            if f["request"]["path"] == "/api/chat" and f.get("response")
        ]
        if native:
            break
        time.sleep(0.05)
    (flow,) = native
    assert flow["response"]["contentLength"] is None
    view = web.view(flow["id"], "request")
    assert view["view_name"] == "LLM Conversation"
    assert view["text"].splitlines() == [
        "model: llama3.2, stream: True",
        "user: What is 1 + 1?",
        "── streamed answer, as the gateway read it (mitmproxy stored no streamed body)",
        "assistant (streamed): 1 + 1 = 2.",
        "finish: stop",
        'usage: {"prompt_tokens":38,"completion_tokens":9,"total_tokens":47}',
    ]
