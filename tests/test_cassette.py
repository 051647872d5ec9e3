"""Cassette decisions (transforms/cassette.py): the key by meaning, the file format, scrubbing, misses."""

from __future__ import annotations

import json
import random

import orjson
import pytest
from conftest import fixture_bytes, fixture_json
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.cassette import (
    CASSETTE_HEADER,
    CassetteError,
    ExchangeRequest,
    build_cassette,
    cassette_name,
    dump_cassette,
    exchange_secrets,
    frame_stream,
    key_of,
    load_cassette,
    match_of,
    miss_answer,
    miss_message,
    operation,
    render_events,
    replay_of,
)
from transforms.providers.bedrock import EventStreamDecoder
from transforms.stream import SSEParser

SECRET = "sk-ant-api03-very-secret-key"


def exchange(payload: dict, **overrides) -> ExchangeRequest:
    fields = {
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "stream": False,
        "method": "POST",
        "url": "https://api.anthropic.com/v1/messages",
        "headers": {
            "x-api-key": SECRET,
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
        },
        "body": orjson.dumps(payload),
    }
    fields.update(overrides)
    return ExchangeRequest(**fields)


def key(req: ExchangeRequest) -> str:
    return key_of(match_of(req))


# --- the key: a property test ------------------------------------------------------------------

texts = st.text(min_size=1, max_size=40)
bodies = st.fixed_dictionaries(
    {
        "model": st.just("claude-sonnet-4-5"),
        "max_tokens": st.integers(1, 4096),
        "messages": st.lists(
            st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": texts}),
            min_size=1,
            max_size=4,
        ),
    },
    optional={
        "temperature": st.floats(0, 1, allow_nan=False),
        "top_p": st.floats(0, 1, allow_nan=False),
        "top_k": st.integers(1, 500),
        "system": texts,
        "stop_sequences": st.lists(texts, max_size=3),
        "tools": st.lists(
            st.fixed_dictionaries({"name": texts, "input_schema": st.just({"type": "object"})})
        ),
    },
)
volatile = st.fixed_dictionaries(
    {},
    optional={
        "metadata": st.fixed_dictionaries({"user_id": texts}),
        "user": texts,
        "stream_options": st.just({"include_usage": True}),
        "service_tier": st.sampled_from(["auto", "standard_only"]),
    },
)


def shuffled(body: dict, seed: int) -> dict:
    items = list(body.items())
    random.Random(seed).shuffle(items)
    return dict(items)


@settings(max_examples=150, deadline=None)
@given(
    body=bodies, noise=volatile, seed=st.integers(0, 1000), indent=st.booleans(), host=st.integers(1, 65535)
)
def test_volatile_fields_keys_order_whitespace_credentials_and_upstream_do_not_change_the_key(
    body, noise, seed, indent, host
):
    base = exchange(body)
    noisy_body = shuffled({**body, **noise}, seed)
    raw = json.dumps(noisy_body, indent=2 if indent else None).encode()
    noisy = exchange(
        body,
        body=raw,
        url=f"http://127.0.0.1:{host}/v1/messages",
        headers={
            "anthropic-version": "2023-06-01",
            "x-api-key": f"another-key-{seed}",
            "user-agent": f"sdk/{seed}",
            "x-request-id": str(seed),
        },
    )
    assert key(noisy) == key(base)


meaningful = st.sampled_from(
    ["message", "max_tokens", "temperature", "model", "stream", "version", "system", "tool", "operation"]
)


@settings(max_examples=150, deadline=None)
@given(body=bodies, change=meaningful)
def test_a_meaningful_change_is_another_key(body, change):
    base = exchange(body)
    changed = dict(body)
    overrides: dict = {}
    if change == "message":
        changed["messages"] = [*body["messages"], {"role": "user", "content": "and?"}]
    elif change == "max_tokens":
        changed["max_tokens"] = body["max_tokens"] + 1
    elif change == "temperature":
        changed["temperature"] = body.get("temperature", 0.5) + 1
    elif change == "model":
        overrides["model"] = "claude-opus-4-1"
    elif change == "stream":
        overrides["stream"] = True
    elif change == "version":
        overrides["headers"] = {"anthropic-version": "2024-01-01"}
    elif change == "system":
        changed["system"] = body.get("system", "") + "!"
    elif change == "tool":
        changed["tools"] = [*body.get("tools", []), {"name": "t", "input_schema": {"type": "object"}}]
    elif change == "operation":
        overrides["url"] = "https://api.anthropic.com/v1/messages/count_tokens"
    assert key(exchange(changed, **overrides)) != key(base)


@pytest.mark.parametrize(
    ("path", "model", "base", "expected"),
    [
        ("/v1/messages", "claude-sonnet-4-5", "", "POST /v1/messages"),
        (
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
            "gemini-2.5-flash",
            "",
            "POST /v1beta/models/{model}:streamGenerateContent",
        ),
        (
            "/v1/projects/my-proj/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent",
            "gemini-2.5-flash",
            "",
            "POST /v1/projects/*/locations/*/publishers/google/models/{model}:generateContent",
        ),
        (
            "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse",
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "",
            "POST /model/{model}/converse",
        ),
        (
            "/openai/deployments/gpt-4o/chat/completions",
            "gpt-4o-2024",
            "",
            "POST /openai/deployments/*/chat/completions",
        ),
        (
            "/hf-inference/models/meta-llama/Llama-3.1-8B-Instruct/v1/chat/completions",
            "meta-llama/Llama-3.1-8B-Instruct",
            "/hf-inference",
            "POST /models/{model}/v1/chat/completions",
        ),
    ],
)
def test_operation_is_the_path_without_ids(path, model, base, expected):
    assert operation("post", path, model, base) == expected


def test_credential_query_parameters_are_not_part_of_the_key():
    body = {"contents": [{"parts": [{"text": "hi"}]}]}
    a = exchange(
        body, provider="gemini", url="https://g.example/v1beta/models/m:generateContent?key=AIza-one&alt=sse"
    )
    b = exchange(
        body, provider="gemini", url="http://127.0.0.1:1/v1beta/models/m:generateContent?alt=sse&key=AIza-two"
    )
    c = exchange(body, provider="gemini", url="http://127.0.0.1:1/v1beta/models/m:generateContent")
    assert key(a) == key(b) != key(c)
    assert match_of(a)["query"] == {"alt": "sse"}


# --- the file: scrubbing and format -----------------------------------------------------------


def test_a_cassette_holds_no_secret_and_replays_its_answer():
    aws_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": f"echo {aws_secret}"}],
    }
    req = exchange(
        body,
        url="https://api.anthropic.com/v1/messages?key=AIza-query-secret&beta=true",
        headers={
            "x-api-key": SECRET,
            "authorization": "Bearer ya29.minted-gcp-token-value",
            "x-amz-security-token": "FwoGZXIvYXdzSessionToken",
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
        },
    )
    answer = {"id": "msg_1", "content": [{"type": "text", "text": f"you said {aws_secret} and {SECRET}"}]}
    data = build_cassette(
        req, 200, [("Content-Type", "application/json"), ("x-request-id", "r1")], orjson.dumps(answer), None
    )
    raw = dump_cassette(data, exchange_secrets(req, [aws_secret]))
    for secret in (
        SECRET,
        aws_secret,
        "AIza-query-secret",
        "ya29.minted-gcp-token-value",
        "FwoGZXIvYXdzSessionToken",
    ):
        assert secret.encode() not in raw
    assert b"[REDACTED]" in raw
    text = raw.decode()
    assert text.startswith('{\n  "ai_proxy_cassette": 1,')  # pretty-printed for review
    cassette = load_cassette("anthropic/x.json", raw)
    assert cassette.data["request"]["url"] == "https://api.anthropic.com/v1/messages?beta=true"
    assert cassette.data["request"]["headers"] == {
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
    }
    assert cassette.data["response"]["headers"] == {"content-type": "application/json"}
    replay = replay_of(cassette, 20)
    assert replay.status == 200 and replay.events is None
    assert orjson.loads(replay.body)["id"] == "msg_1"
    assert (CASSETTE_HEADER, "anthropic/x.json") in replay.headers


def test_the_key_of_a_loaded_cassette_is_the_key_of_the_live_request():
    req = exchange(
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi"}],
            "metadata": {"user_id": "u"},
        }
    )
    raw = dump_cassette(build_cassette(req, 200, [], b"{}", None), ())
    assert load_cassette("a.json", raw).key == key(req)


def test_names_group_by_provider_and_model_with_a_short_hash():
    match = {"provider": "huggingface", "model": "meta-llama/Llama-3.1-8B-Instruct", "stream": True}
    assert (
        cassette_name(match, "0123456789abcdef")
        == "huggingface/meta-llama_Llama-3.1-8B-Instruct-stream-0123456789.json"
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[]", "not an ai-proxy cassette"),
        (b'{"ai_proxy_cassette": 1, "match": {}, "request": {}, "response": {}}', "match lacks provider"),
        (
            b'{"ai_proxy_cassette": 1, "match": {"provider": "a", "operation": "o", "model": "m", "stream": false, "query": {}, "headers": {}}, "request": {}, "response": {"status": "200"}}',
            "response.status must be an integer",
        ),
    ],
)
def test_a_broken_cassette_says_what_is_wrong(raw, message):
    with pytest.raises(CassetteError, match=message):
        load_cassette("broken.json", raw)


# --- streams: events with timing, rendered back in the provider's framing -------------------------


def split_randomly(data: bytes, seed: int) -> list[tuple[float, bytes]]:
    rng = random.Random(seed)
    chunks, at, i = [], 0.0, 0
    while i < len(data):
        size = rng.randint(1, 60)
        chunks.append((at, data[i : i + size]))
        at += 0.01
        i += size
    return chunks


def sse_events(data: bytes) -> list[tuple[str | None, object]]:
    parser = SSEParser()
    events = parser.feed(data) + parser.finish()
    return [(e.event, orjson.loads(e.data) if e.data.startswith("{") else e.data) for e in events]


@pytest.mark.parametrize(
    "fixture",
    [
        "anthropic/chat/stream.sse",
        "openai/chat/stream.sse",
        "cohere/chat/stream.sse",
        "gemini/chat/stream.sse",
    ],
)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sse_streams_survive_framing_and_rendering(fixture, seed):
    original = fixture_bytes(fixture)
    events = frame_stream("text/event-stream; charset=utf-8", split_randomly(original, seed))
    rendered = render_events("text/event-stream", events)
    assert sse_events(b"".join(data for _, data in rendered)) == sse_events(original)
    assert [ms for ms, _ in rendered] == sorted(ms for ms, _ in rendered)
    assert all(data.endswith(b"\n\n") for _, data in rendered)  # one event per write


def test_ndjson_streams_survive_framing_and_rendering():
    original = fixture_bytes("ollama/chat/stream.ndjson")
    events = frame_stream("application/x-ndjson", split_randomly(original, 7))
    rendered = b"".join(data for _, data in render_events("application/x-ndjson", events))
    assert [orjson.loads(line) for line in rendered.splitlines()] == [
        orjson.loads(line) for line in original.splitlines()
    ]


def test_bedrock_event_streams_survive_framing_and_rendering():
    original = fixture_bytes("bedrock/chat/stream.eventstream")
    events = frame_stream("application/vnd.amazon.eventstream", split_randomly(original, 5))
    assert [e["headers"][":event-type"] for e in events] == [
        e["event"] for e in fixture_json("bedrock/chat/events.json")
    ]
    rendered = b"".join(data for _, data in render_events("application/vnd.amazon.eventstream", events))
    decoded = EventStreamDecoder().feed(rendered)
    want = EventStreamDecoder().feed(original)
    assert [(dict(f.headers), orjson.loads(f.payload)) for f in decoded] == [
        (dict(f.headers), orjson.loads(f.payload)) for f in want
    ]


def test_replayed_streams_start_at_once_and_keep_short_pauses():
    req = exchange({"model": "m", "messages": []}, stream=True)
    chunks = [(0.0, b'data: {"a": 1}\n\n'), (0.005, b'data: {"a": 2}\n\n'), (2.0, b'data: {"a": 3}\n\n')]
    raw = dump_cassette(build_cassette(req, 200, [("content-type", "text/event-stream")], None, chunks), ())
    replay = replay_of(load_cassette("s.json", raw), 20)
    assert [gap for gap, _ in replay.events] == [0, 5, 20]
    assert replay.events[0][1] == b'data: {"a":1}\n\n'


# --- misses --------------------------------------------------------------------------------------


def test_a_miss_names_the_closest_cassette_and_the_fields_that_differ():
    recorded = exchange(
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "What is 1 + 1?"}],
        }
    )
    other = exchange({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": []}, stream=True)
    cassettes = [
        load_cassette(name, dump_cassette(build_cassette(r, 200, [], b"{}", None), ()))
        for name, r in (("anthropic/one.json", recorded), ("anthropic/other.json", other))
    ]
    asked = exchange(
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 20,
            "messages": [{"role": "user", "content": "What is 2 + 2?"}],
        }
    )
    message = miss_message(match_of(asked), cassettes, "/ci/cassettes")
    assert message.startswith("cassette_miss: no cassette in /ci/cassettes matches POST /v1/messages")
    assert (
        "closest is anthropic/one.json, which differs in body.max_tokens, body.messages[0].content."
        in message
    )
    assert miss_message(match_of(asked), [], "d").endswith("the directory has none")


@pytest.mark.parametrize(
    ("wire", "path"),
    [
        ("openai", ("error", "message")),
        ("anthropic", ("error", "message")),
        ("gemini", ("error", "message")),
        ("bedrock", ("message",)),
        ("cohere", ("message",)),
        ("huggingface", ("error",)),
    ],
)
def test_a_miss_is_a_400_in_the_clients_own_error_shape(wire, path):
    status, headers, body = miss_answer(wire, "cassette_miss: nothing")
    assert status == 400
    value = orjson.loads(body)
    for step in path:
        value = value[step]
    assert value == "cassette_miss: nothing"
    if wire == "openai":
        assert orjson.loads(body)["error"]["code"] == "cassette_miss"
    if wire == "anthropic":
        assert orjson.loads(body)["type"] == "error"
    if wire == "bedrock":
        assert headers["x-amzn-errortype"] == "ValidationException"
