"""End to end: Claude on Vertex AI through mitmdump and the addon, to a local fake of Vertex's
``publishers/anthropic`` endpoints that is as strict as Vertex about what differs from Anthropic's
API: the model is named by the URL only, ``anthropic_version`` is in the body, a bearer token is
required, and ``:streamRawPredict`` is the streamed call.

Clients: the ``openai`` SDK on a translated route (JSON, streamed, the Claude sampling rule, an
agent loop with thinking and tools), the ``anthropic`` SDK on a native route (``llm_format:
anthropic``), and the ``anthropic`` SDK's ``AnthropicVertex`` client on that native route and through
the inspecting reverse proxy in front of a Vertex host (no route), accounted from the Anthropic
answer. Routes name the real Vertex host; tests/remap_upstream.py sends every flow to the emulator
with its Host header kept, so the tests see the URL a real call would use.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import orjson
import pytest
import thinking_fakes
from conftest import ROOT, Gateway, fixture_json
from test_e2e_reasoning import TOOLS
from test_gcp_auth import TokenEndpoint, new_key

from addon.emulator import Recorded, Scripted
from transforms.reasoning import split_call_id

MODEL = "claude-sonnet-4-5@20250929"
HOST = "us-east5-aiplatform.googleapis.com"
VERTEX = {"api_endpoint": HOST, "project_id": "my-project", "location_id": "us-east5"}
OPTIONS = {"anthropic_version": "vertex-2023-10-16", "gemini": VERTEX, "input_cost": 3.0, "output_cost": 15.0}
VERTEX_PATH = "/v1/projects/my-project/locations/us-east5/publishers/anthropic/models"
HEADER_TOKEN = "ya29.vertex-header-token-0123456789"
RESPONSE_MODEL = "claude-sonnet-4-5-20250929"  # what the fixture answer names
REMAP = str(ROOT / "tests" / "remap_upstream.py")
_CALL = re.compile(r"^/v1/projects/[^/]+/locations/[^/]+/publishers/anthropic/models/([^/:]+):(\w+)$")


def _error(status: int, message: str) -> Scripted:
    return Scripted(
        status,
        orjson.dumps({"type": "error", "error": {"type": "invalid_request_error", "message": message}}),
    )


def fake_vertex(rec: Recorded) -> Scripted | None:
    """Vertex's rules on a Claude call; a valid call with thinking goes to the strict thinking fake
    (as the Anthropic body it stands for), any other valid one to the fixtures (emulator.json)."""
    found = _CALL.match(rec.path.split("?", 1)[0])
    if found is None:
        return None
    model, method = found.groups()
    body = rec.json()
    if not rec.headers.get("authorization", "").startswith("Bearer "):
        return _error(401, "Request had invalid authentication credentials.")
    if method not in ("rawPredict", "streamRawPredict"):
        return _error(404, f"method {method} not found")
    if model == "count-tokens":
        if not isinstance(body.get("model"), str):
            return _error(400, "model: Field required")
        return Scripted(200, orjson.dumps({"input_tokens": 14}))
    if "model" in body:
        return _error(400, "model: Extra inputs are not permitted")
    if not isinstance(body.get("anthropic_version"), str):
        return _error(400, "anthropic_version: Field required")
    if (method == "streamRawPredict") != (body.get("stream") is True):
        return _error(400, f"stream must be {method == 'streamRawPredict'} on :{method}")
    if "thinking" in body:
        messages_body = {k: v for k, v in body.items() if k != "anthropic_version"} | {"model": model}
        return thinking_fakes.anthropic(
            Recorded(rec.method, "/v1/messages", rec.headers, orjson.dumps(messages_body))
        )
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def token_endpoint() -> Iterator[TokenEndpoint]:
    server = TokenEndpoint()
    yield server
    server.stop()


def _route(name: str, path: str, auth: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "match": {"path": path},
        "route_type": "llm/v1/chat",
        "auth": auth,
        "model": {"provider": "anthropic", "name": MODEL, "options": OPTIONS},
        "logging": {"log_statistics": True, "log_payloads": False},
        **extra,
    }


@pytest.fixture(scope="module")
def stack(emulator, token_endpoint, tmp_path_factory) -> Iterator[tuple[Gateway, str]]:
    """One mitmdump: the routes (reverse mode to nowhere: every route names its upstream), and the
    inspecting reverse proxy in front of the Vertex host, on its own port."""
    account = token_endpoint.register("gateway@my-project.iam.gserviceaccount.com", new_key(), "0f1e2d3c4b5a")
    header = {"header_name": "Authorization", "header_value": f"Bearer {HEADER_TOKEN}"}
    routes = [
        _route(
            "claude-vertex",
            "/vertex/v1/chat/completions",
            {"gcp_use_service_account": True, "gcp_service_account_json": account},
        ),
        _route("claude-vertex-header", "/header/v1/chat/completions", header),
        _route("claude-vertex-native", "/native/*", header, llm_format="anthropic"),
    ]
    folder = tmp_path_factory.mktemp("vertex-claude")
    config = folder / "routes.json"
    config.write_bytes(orjson.dumps({"routes": routes}))
    port = free_port()
    env = {"AI_PROXY_TEST_UPSTREAM": emulator.url, "AI_PROXY_TEST_DELAY_MS": "0"}
    # remap_upstream re-points flows after the addon has prepared them; the upstream relay (on by
    # default) would have sent them to the real Vertex host, so these routes leave it to mitmproxy.
    extra = ["-s", REMAP, "--mode", f"reverse:https://{HOST}@{port}", "--set", "ai_proxy_relay=balanced"]
    gw = Gateway(config, folder / "stats.jsonl", env, extra)
    deadline = time.monotonic() + 10
    while gw.log.count("listening at") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "cannot load" not in gw.log, gw.log
    yield gw, f"http://127.0.0.1:{port}"
    gw.stop()


@pytest.fixture
def gw(stack, emulator) -> Gateway:
    emulator.responder = fake_vertex
    stack[0].clear_records()
    return stack[0]


def client(gw: Gateway, prefix: str = "vertex") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/{prefix}/v1", api_key="client-key", max_retries=0)


def vertex_body(anthropic_body: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """An Anthropic Messages body as Vertex takes it."""
    return {
        **{k: v for k, v in anthropic_body.items() if k != "model"},
        **fields,
        "anthropic_version": "vertex-2023-10-16",
    }


# --- the openai SDK on a translated route ---------------------------------------------------------


def test_openai_chat_reaches_claude_on_vertex_with_a_minted_token(gw, emulator):
    asked = fixture_json("anthropic/chat/client.json") | {"model": MODEL}
    reply = client(gw).chat.completions.create(**asked)
    assert reply.choices[0].message.content == "The capital of Australia is Canberra — not Sydney."
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (
        27,
        13,
        40,
    )
    sent = emulator.last
    assert (sent.headers["host"], sent.path) == (HOST, f"{VERTEX_PATH}/{MODEL}:rawPredict")
    assert sent.headers["authorization"].startswith("Bearer ya29.c.test-token-")
    assert "anthropic-version" not in sent.headers
    assert sent.json() == vertex_body(fixture_json("anthropic/chat/request.json"))
    (record,) = gw.wait_records(1)
    proxy = record["ai"]["proxy"]
    meta = proxy["meta"]
    assert (meta["route"], meta["provider_name"], meta["request_model"], meta["response_model"]) == (
        "claude-vertex",
        "anthropic",
        MODEL,
        RESPONSE_MODEL,
    )
    assert (
        proxy["usage"]["prompt_tokens"],
        proxy["usage"]["completion_tokens"],
        proxy["usage"]["total_tokens"],
    ) == (
        27,
        13,
        40,
    )
    assert proxy["usage"]["cost"] == pytest.approx((27 * 3.0 + 13 * 15.0) / 1e6)
    assert "estimated" not in proxy["usage"]
    assert "ya29" not in orjson.dumps(record).decode()


def test_openai_stream_uses_stream_raw_predict(gw, emulator):
    stream = client(gw, "header").chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the capital of Australia?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The capital of Australia is Canberra — not Sydney."
    assert chunks[-1].usage.prompt_tokens == 27
    sent = emulator.last
    assert sent.path == f"{VERTEX_PATH}/{MODEL}:streamRawPredict"
    assert sent.headers["authorization"] == f"Bearer {HEADER_TOKEN}"
    assert sent.json() == {
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "What is the capital of Australia?"}],
        "stream": True,
        "anthropic_version": "vertex-2023-10-16",
    }
    (record,) = gw.wait_records(1)
    proxy = record["ai"]["proxy"]
    assert (
        proxy["meta"]["request_mode"],
        proxy["usage"]["prompt_tokens"],
        proxy["usage"]["completion_tokens"],
    ) == (
        "stream",
        27,
        chunks[-1].usage.completion_tokens,
    )
    assert chunks[-1].usage.completion_tokens > 0


def test_newer_claude_on_vertex_gets_temperature_only_and_the_log_says_so_once(gw, emulator):
    for _ in range(2):
        client(gw, "header").chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], temperature=0.4, top_p=0.9
        )
        sent = emulator.last.json()
        assert (sent["temperature"], "top_p" in sent) == (0.4, False)
    gw.wait_records(2)
    note = (
        "ai_proxy route=claude-vertex-header: model 'claude-sonnet-4-5@20250929' takes temperature or top_p, "
        "not both: sending temperature only (top_p dropped) (said once per route)"
    )
    assert gw.log.count(note) == 1


def test_agent_loop_with_thinking_and_tools_on_vertex(gw, emulator):
    api = client(gw, "header")
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris and Lyon?"}]
    answers = []
    for _ in range(3):
        reply = api.chat.completions.create(
            model=MODEL, messages=messages, tools=TOOLS, reasoning_effort="low"
        )
        message = reply.choices[0].message
        answers.append(message)
        messages.append(
            {
                "role": "assistant",
                "content": message.content,
                "tool_calls": [call.model_dump(exclude_unset=True) for call in message.tool_calls or ()]
                or None,
            }
        )
        for call in message.tool_calls or ():
            messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"})
    assert [r.path for r in emulator.requests] == [f"{VERTEX_PATH}/{MODEL}:rawPredict"] * 3
    assert all(
        "model" not in r.json() and r.json()["thinking"]["type"] == "enabled" for r in emulator.requests
    )
    assert [len(m.tool_calls or ()) for m in answers] == [1, 1, 0]
    assert answers[-1].content == "Sunny in Paris and Lyon."
    assert [m.reasoning_content for m in answers] == [thinking_fakes.thought(t) for t in (1, 2, 3)]  # type: ignore[attr-defined]
    _, carried = split_call_id(answers[0].tool_calls[0].id)
    assert carried == [
        {
            "type": "thinking",
            "thinking": thinking_fakes.thought(1),
            "signature": thinking_fakes.sign(thinking_fakes.thought(1)),
        }
    ]
    records = [r["ai"]["proxy"] for r in gw.wait_records(3)]
    assert [(r["meta"]["status"], r["usage"]["completion_tokens_details"]) for r in records] == [
        (200, {"reasoning_tokens": 12})
    ] * 3


# --- Anthropic clients on a native route ----------------------------------------------------------


def test_anthropic_client_on_a_native_route_reaches_vertex(gw, emulator):
    api = anthropic.Anthropic(base_url=f"{gw.url}/native", api_key="sk-ant-client-key", max_retries=0)
    message = api.messages.create(
        model="claude-sonnet-4-5-20250929", max_tokens=100, messages=[{"role": "user", "content": "Hi"}]
    )
    assert message.content[0].text == "The capital of Australia is Canberra — not Sydney."  # type: ignore[union-attr]
    sent = emulator.last
    assert sent.path == f"{VERTEX_PATH}/{MODEL}:rawPredict"  # the route's model: Vertex's id
    assert sent.json() == vertex_body({"max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]})
    assert sent.headers["authorization"] == f"Bearer {HEADER_TOKEN}"
    assert "x-api-key" not in sent.headers
    count = api.messages.count_tokens(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "Hi"}])
    assert count.input_tokens == 14
    assert emulator.last.path == f"{VERTEX_PATH}/count-tokens:rawPredict"
    assert emulator.last.json()["model"] == MODEL
    records = gw.wait_records(2)
    assert [
        (r["ai"]["proxy"]["meta"]["route"], r["ai"]["proxy"]["usage"]["total_tokens"]) for r in records
    ] == [
        ("claude-vertex-native", 40),
        ("claude-vertex-native", 0),
    ]


def vertex_client(base_url: str, region: str, project: str, token: str) -> anthropic.AnthropicVertex:
    return anthropic.AnthropicVertex(
        region=region, project_id=project, access_token=token, base_url=base_url, max_retries=0
    )


def ask(api: anthropic.AnthropicVertex, model: str, stream: bool) -> str:
    """The answer's text, from one messages call, streamed or not."""
    asked: dict[str, Any] = {
        "model": model,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    if stream:
        with api.messages.stream(**asked) as events:
            return events.get_final_text()
    return api.messages.create(**asked).content[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_anthropic_vertex_client_on_a_native_route_is_retargeted_and_accounted(gw, emulator, stream):
    # The client's own project, region and token: the route's replace them.
    api = vertex_client(f"{gw.url}/native/v1", "europe-west1", "client-project", "client-own-token")
    assert (
        ask(api, "claude-opus-4-1@20250805", stream) == "The capital of Australia is Canberra — not Sydney."
    )
    sent = emulator.last
    method = "streamRawPredict" if stream else "rawPredict"
    assert sent.path == f"{VERTEX_PATH}/{MODEL}:{method}"  # the route's project, location and model
    assert sent.headers["authorization"] == f"Bearer {HEADER_TOKEN}"  # the client's own token replaced
    assert "model" not in sent.json()
    (record,) = gw.wait_records(1)
    proxy = record["ai"]["proxy"]
    assert (proxy["meta"]["route"], proxy["meta"]["request_model"], proxy["meta"]["response_model"]) == (
        "claude-vertex-native",
        MODEL,
        RESPONSE_MODEL,
    )
    assert (proxy["usage"]["prompt_tokens"], proxy["usage"]["completion_tokens"] > 0) == (27, True)
    assert "client-own-token" not in orjson.dumps(record).decode()


# --- AnthropicVertex through the inspecting reverse proxy (no route) -------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_anthropic_vertex_client_is_inspected_and_accounted(stack, gw, emulator, stream):
    api = vertex_client(f"{stack[1]}/v1", "us-east5", "my-project", "client-token-123456")
    assert ask(api, MODEL, stream) == "The capital of Australia is Canberra — not Sydney."
    sent = emulator.last
    method = "streamRawPredict" if stream else "rawPredict"
    assert (sent.headers["host"], sent.path) == (HOST, f"{VERTEX_PATH}/{MODEL}:{method}")
    assert sent.headers["authorization"] == "Bearer client-token-123456"  # untouched: no route
    (record,) = gw.wait_records(1)
    proxy = record["ai"]["proxy"]
    assert (proxy["meta"]["route"], proxy["meta"]["provider_name"], proxy["meta"]["request_model"]) == (
        "inspect",
        "anthropic",
        MODEL,
    )
    assert proxy["meta"]["response_model"] == RESPONSE_MODEL
    assert (proxy["usage"]["prompt_tokens"], proxy["usage"]["completion_tokens"] > 0) == (27, True)
    assert "estimated" not in proxy["usage"]
    assert "client-token-123456" not in orjson.dumps(record).decode()
