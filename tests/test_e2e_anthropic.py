"""End to end: the real openai SDK -> mitmdump + addon (provider anthropic) -> the local emulator."""

from __future__ import annotations

import time

import openai
import orjson
import pytest
from conftest import fixture_json, route

ANTHROPIC_KEY = "sk-ant-api03-configured-key-0123456789"
VERSION = "2023-06-01"
MODEL = "claude-sonnet-4-5"
RESPONSE_MODEL = "claude-sonnet-4-5-20250929"


@pytest.fixture
def gw(gateway, emulator):
    auth = {"header_name": "x-api-key", "header_value": ANTHROPIC_KEY}
    options = {"anthropic_version": VERSION, "input_cost": 3.0, "output_cost": 15.0}
    routes = [
        route(
            "claude-chat",
            "/v1/chat/completions",
            "llm/v1/chat",
            "anthropic",
            emulator.url,
            auth=auth,
            options=options,
            logging={"log_statistics": True, "log_payloads": True},
        ),
        route(
            "claude-completions",
            "/v1/completions",
            "llm/v1/completions",
            "anthropic",
            emulator.url,
            auth=auth,
            options=options,
        ),
        route(
            "claude-defaults",
            "/defaults/v1/chat/completions",
            "llm/v1/chat",
            "anthropic",
            emulator.url,
            auth=auth,
            options={**options, "temperature": 0.4, "top_p": 0.9},
        ),
        route(
            "claude-embeddings",
            "/v1/embeddings",
            "llm/v1/embeddings",
            "anthropic",
            emulator.url,
            auth=auth,
            options=options,
        ),
    ]
    return gateway(routes)


def client(gw, **headers: str) -> openai.OpenAI:
    c = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="sk-client-own-key", max_retries=0, timeout=10)
    return c.with_options(default_headers=headers) if headers else c


def test_chat_round_trip_and_statistics(gw, emulator):
    asked = fixture_json("anthropic/chat/client.json")
    reply = client(gw).chat.completions.create(**asked)
    assert reply.id == "msg_01XFDUDYJgAACzvnptvVoYEL"
    assert reply.model == RESPONSE_MODEL
    assert reply.choices[0].message.content == "The capital of Australia is Canberra — not Sydney."
    assert reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (
        27,
        13,
        40,
    )
    sent = emulator.last
    assert sent.method == "POST"
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == ANTHROPIC_KEY  # the client's own key never goes up
    assert sent.headers["anthropic-version"] == VERSION
    assert "authorization" not in sent.headers
    assert sent.json() == fixture_json("anthropic/chat/request.json")
    (record,) = gw.wait_records(1)
    proxy = record["ai"]["proxy"]
    assert proxy["meta"]["route"] == "claude-chat"
    assert proxy["meta"]["provider_name"] == "anthropic"
    assert proxy["meta"]["request_model"] == MODEL
    assert proxy["meta"]["response_model"] == RESPONSE_MODEL
    assert proxy["meta"]["request_mode"] == "oneshot"
    assert (proxy["usage"]["prompt_tokens"], proxy["usage"]["completion_tokens"]) == (27, 13)
    assert proxy["usage"]["total_tokens"] == 40
    assert proxy["usage"]["cost"] == pytest.approx((27 * 3.0 + 13 * 15.0) / 1e6)
    assert "estimated" not in proxy["usage"]
    assert ANTHROPIC_KEY not in proxy["payload"]["request"]


def test_newer_claude_gets_temperature_only_and_the_log_says_so_once(gw, emulator):
    c = openai.OpenAI(base_url=f"{gw.url}/defaults/v1", api_key="sk-client", max_retries=0, timeout=10)
    for _ in range(2):  # the route's defaults give both
        reply = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
        assert reply.choices[0].message.content
        sent = emulator.last.json()
        assert (sent["temperature"], "top_p" in sent) == (0.4, False)
    reply = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], top_p=0.5)
    assert "top_p" not in emulator.last.json()
    gw.wait_records(3)
    note = (
        f"ai_proxy route=claude-defaults: model '{MODEL}' takes temperature or top_p, not both: "
        "sending temperature only (top_p dropped) (said once per route)"
    )
    assert gw.log.count(note) == 1, gw.log[-2000:]


def test_cache_tokens_reach_client_and_statistics(gw):
    c = client(gw, **{"x-emulator-fixture": "anthropic/cache/response.json"})
    reply = c.chat.completions.create(**fixture_json("anthropic/cache/client.json"))
    assert reply.usage.prompt_tokens == 21 + 1850 + 312
    assert reply.usage.prompt_tokens_details.cached_tokens == 1850
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["usage"]["prompt_tokens"] == 2183
    assert record["ai"]["proxy"]["usage"]["prompt_tokens_details"] == {"cached_tokens": 1850}


def test_tools_round_trip(gw, emulator):
    asked = fixture_json("anthropic/tools/client.json")
    first = client(gw, **{"x-emulator-fixture": "anthropic/tools/response.json"}).chat.completions.create(
        **asked
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_weather", "get_current_time"]
    assert [orjson.loads(c.function.arguments) for c in calls] == [
        {"location": "Paris, France", "unit": "celsius"},
        {"location": "Tokyo, Japan", "unit": "celsius"},
        {},
    ]
    assert emulator.last.json()["tools"] == fixture_json("anthropic/tools/request.json")["tools"]

    results = ['{"temperature": 18}', '{"temperature": 24}', "2026-01-01T09:30:00Z"]
    messages = [
        *asked["messages"],
        choice.message.model_dump(exclude_none=True, exclude={"annotations"}),
        *({"role": "tool", "tool_call_id": c.id, "content": r} for c, r in zip(calls, results, strict=True)),
        {"role": "user", "content": "Keep it short, please."},
    ]
    second = client(
        gw, **{"x-emulator-fixture": "anthropic/tool_results/response.json"}
    ).chat.completions.create(model=MODEL, messages=messages, tools=asked["tools"])
    assert (
        second.choices[0].message.content == "Paris: 18 °C, light rain. Tokyo: 24 °C, clear. It is 09:30 UTC."
    )
    sent = emulator.last.json()["messages"]
    assert sent[1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "I'll look up the weather in both cities and the current time."},
            *(
                {
                    "type": "tool_use",
                    "id": c.id,
                    "name": c.function.name,
                    "input": orjson.loads(c.function.arguments),
                }
                for c in calls
            ),
        ],
    }
    assert sent[2] == {
        "role": "user",
        "content": [
            *(
                {"type": "tool_result", "tool_use_id": c.id, "content": r}
                for c, r in zip(calls, results, strict=True)
            ),
            {"type": "text", "text": "Keep it short, please."},
        ],
    }


def test_completions(gw, emulator):
    c = client(gw, **{"x-emulator-fixture": "anthropic/completions/response.json"})
    done = c.completions.create(**fixture_json("anthropic/completions/client.json"))
    assert done.object == "text_completion"
    assert (
        done.choices[0].text
        == "Grey waves fold and break\nsalt wind carries gull voices\nthe tide keeps its time"
    )
    assert done.choices[0].finish_reason == "stop"
    assert done.usage.total_tokens == 36
    assert emulator.last.path == "/v1/messages"
    assert emulator.last.json() == fixture_json("anthropic/completions/request.json")


def test_completions_stream(gw, emulator):
    c = client(gw, **{"x-emulator-fixture": "anthropic/completions/stream.sse"})
    chunks = list(c.completions.create(model=MODEL, prompt="Write a haiku about the sea.", stream=True))
    assert {ch.object for ch in chunks} == {"text_completion"}
    assert "".join(ch.choices[0].text for ch in chunks) == (
        "Grey waves fold and break\nsalt wind carries gull voices\nthe tide keeps its time"
    )
    assert emulator.last.json()["stream"] is True
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["usage"]["total_tokens"] == 36


def test_stream_with_usage(gw, emulator):
    stream = client(gw).chat.completions.create(
        **fixture_json("anthropic/chat/client.json"), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The capital of Australia is Canberra — not Sydney."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (27, 13)
    assert {c.id for c in chunks} == {"msg_01XFDUDYJgAACzvnptvVoYEL"}
    assert emulator.last.json()["stream"] is True
    (record,) = gw.wait_records(1)
    proxy = record["ai"]["proxy"]
    assert proxy["meta"]["request_mode"] == "stream"
    assert proxy["meta"]["response_model"] == RESPONSE_MODEL
    assert (proxy["usage"]["prompt_tokens"], proxy["usage"]["completion_tokens"]) == (27, 13)
    assert proxy["usage"]["cost"] == pytest.approx((27 * 3.0 + 13 * 15.0) / 1e6)


def test_stream_without_usage_still_counts(gw):
    chunks = list(
        client(gw).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True
        )
    )
    assert all(c.choices for c in chunks)  # no usage-only chunk for a client that did not ask
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["usage"]["total_tokens"] == 40


def test_stream_parallel_tool_calls(gw):
    c = client(gw, **{"x-emulator-fixture": "anthropic/stream_tools/stream.sse"})
    chunks = list(c.chat.completions.create(**fixture_json("anthropic/tools/client.json"), stream=True))
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += call.id or ""
            entry["name"] += call.function.name or ""
            entry["arguments"] += call.function.arguments or ""
    assert [(e["id"], e["name"], orjson.loads(e["arguments"])) for e in calls.values()] == [
        ("toolu_01A09q90qw90lq917835lq9", "get_weather", {"location": "Paris, France", "unit": "celsius"}),
        ("toolu_01BmZx8RKoVqTNEjiSuUc1Wp", "get_weather", {"location": "Tokyo, Japan", "unit": "celsius"}),
        ("toolu_01Tq6Fh4NcVJbPq9rDq2xW3e", "get_current_time", {}),
    ]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_stream_error_event_reaches_the_client(gw):
    c = client(gw, **{"x-emulator-fixture": "anthropic/stream_error/stream.sse"})
    stream = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True)
    with pytest.raises(openai.APIError) as err:
        list(stream)
    assert err.value.message == "Overloaded"


def test_stream_arrives_incrementally(gw):
    c = client(gw, **{"x-emulator-delay-ms": "300"})
    started = time.monotonic()
    stream = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True)
    first = next(iter(stream))
    first_at = time.monotonic() - started
    rest = list(stream)
    total = time.monotonic() - started
    assert first.choices[0].delta.role == "assistant"
    assert len(rest) == 4  # three text chunks and the finish chunk
    # 9 events 300 ms apart: the whole stream takes >= 2.4 s, the first chunk must not wait for it.
    assert total >= 2.4
    assert first_at < 1.0


@pytest.mark.parametrize(
    ("fixture", "status", "exc", "message", "code"),
    [
        (
            "anthropic/errors/401.json",
            401,
            openai.AuthenticationError,
            "invalid x-api-key",
            "authentication_error",
        ),
        (
            "anthropic/errors/429.json",
            429,
            openai.RateLimitError,
            "This request would exceed the rate limit",
            "rate_limit_error",
        ),
        ("anthropic/errors/529.json", 529, openai.InternalServerError, "Overloaded", "overloaded_error"),
    ],
)
def test_upstream_errors_are_openai_shaped(gw, fixture, status, exc, message, code):
    c = client(gw, **{"x-emulator-fixture": fixture, "x-emulator-status": str(status)})
    with pytest.raises(exc) as err:
        c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert err.value.status_code == status
    assert err.value.body["message"].startswith(message)
    assert err.value.body["code"] == code


def test_upstream_error_on_a_stream_request(gw):
    c = client(gw, **{"x-emulator-fixture": "anthropic/errors/401.json", "x-emulator-status": "401"})
    with pytest.raises(openai.AuthenticationError) as err:
        c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True)
    assert err.value.body["message"] == "invalid x-api-key"


def test_refused_field_never_reaches_anthropic(gw, emulator):
    with pytest.raises(openai.BadRequestError) as err:
        client(gw).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], n=2)
    assert err.value.body["message"] == "'n' above 1 is not supported by the anthropic provider"
    assert emulator.requests == []


def test_embeddings_route_is_a_400(gw, emulator):
    with pytest.raises(openai.BadRequestError) as err:
        client(gw).embeddings.create(model=MODEL, input="hello")
    assert err.value.status_code == 400
    assert err.value.body["message"] == "anthropic does not support the llm/v1/embeddings route type"
    assert emulator.requests == []
