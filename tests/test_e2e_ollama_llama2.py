"""End to end: the real openai SDK -> mitmdump + addon -> the local emulator, for Ollama's native API
(provider ollama; mistral and llama2 with format ollama) and Llama-2 raw text generation."""

from __future__ import annotations

import time

import openai
import orjson
import pytest
from conftest import fixture_json, route

HF_TOKEN = "hf_configured_token_0123456789"
LLAMA2 = "meta-llama/Llama-2-7b-chat-hf"
MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "What is 1 + 1?"},
]
TYPOGRAPHY = [
    {"role": "system", "content": "You are a helpful typography assistant."},
    {"role": "user", "content": "Name one well known font."},
    {"role": "assistant", "content": "Helvetica."},
    {"role": "user", "content": "Why is it well known?"},
]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
        "strict": True,
    },
}


@pytest.fixture
def gw(gateway, emulator):
    costs = {"input_cost": 1.0, "output_cost": 2.0}
    llama2_raw = {"llama2_format": "raw", **costs}
    hf_auth = {"header_name": "Authorization", "header_value": f"Bearer {HF_TOKEN}"}
    routes = [
        route(
            "ollama-chat",
            "/v1/chat/completions",
            "llm/v1/chat",
            "ollama",
            emulator.url,
            options=costs,
            logging={"log_statistics": True, "log_payloads": True},
        ),
        route("ollama-completions", "/v1/completions", "llm/v1/completions", "ollama", emulator.url),
        route("ollama-embeddings", "/v1/embeddings", "llm/v1/embeddings", "ollama", emulator.url),
        route(
            "mistral-ollama",
            "/mistral/v1/chat/completions",
            "llm/v1/chat",
            "mistral",
            emulator.url,
            model="mistral:7b-instruct",
            options={"mistral_format": "ollama", "max_tokens": 128},
        ),
        route(
            "llama2-ollama",
            "/llama2-ollama/v1/chat/completions",
            "llm/v1/chat",
            "llama2",
            emulator.url,
            options={"llama2_format": "ollama"},
        ),
        route(
            "llama2-raw",
            "/llama2/v1/chat/completions",
            "llm/v1/chat",
            "llama2",
            emulator.url,
            model=LLAMA2,
            auth=hf_auth,
            options=llama2_raw,
            logging={"log_statistics": True, "log_payloads": True},
        ),
        route(
            "llama2-raw-completions",
            "/llama2/v1/completions",
            "llm/v1/completions",
            "llama2",
            emulator.url,
            model=LLAMA2,
            auth=hf_auth,
            options=llama2_raw,
        ),
    ]
    return gateway(routes)


def client(gw, prefix: str = "", **headers: str) -> openai.OpenAI:
    c = openai.OpenAI(base_url=f"{gw.url}{prefix}/v1", api_key="sk-client-own-key", max_retries=0, timeout=10)
    return c.with_options(default_headers=headers) if headers else c


def text_of(chunks) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# --- Ollama --------------------------------------------------------------------------------------


def test_ollama_chat_round_trip_and_statistics(gw, emulator):
    reply = client(gw).chat.completions.create(
        model="llama3.2", messages=MESSAGES, temperature=0.2, max_tokens=64
    )
    assert reply.id.startswith("chatcmpl-")
    assert reply.object == "chat.completion"
    assert reply.created == 1751984467
    assert reply.model == "llama3.2"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == "1 + 1 = 2."
    assert reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (38, 9, 47)
    sent = emulator.last
    assert sent.method == "POST"
    assert sent.path == "/api/chat"
    assert sent.json() == fixture_json("ollama/chat/request.json")
    (record,) = gw.wait_records(1)
    proxy = record["ai"]["proxy"]
    assert proxy["meta"]["route"] == "ollama-chat"
    assert proxy["meta"]["provider_name"] == "ollama"
    assert proxy["meta"]["request_model"] == "llama3.2"
    assert proxy["meta"]["response_model"] == "llama3.2"
    assert proxy["meta"]["request_mode"] == "oneshot"
    assert (proxy["usage"]["prompt_tokens"], proxy["usage"]["completion_tokens"]) == (38, 9)
    assert proxy["usage"]["total_tokens"] == 47
    assert proxy["usage"]["cost"] == pytest.approx((38 * 1.0 + 9 * 2.0) / 1e6)
    assert "estimated" not in proxy["usage"]
    assert orjson.loads(proxy["payload"]["request"]) == fixture_json("ollama/chat/request.json")


def test_ollama_tools_round_trip(gw, emulator):
    c = client(gw, **{"x-emulator-fixture": "ollama/chat_tools/response.json"})
    history = [
        {"role": "user", "content": "Weather in Toronto, then Tokyo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_t0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Toronto"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_t0", "content": "11 degrees celsius"},
    ]
    reply = c.chat.completions.create(model="llama3.1:8b", messages=history, tools=[WEATHER_TOOL])
    message = reply.choices[0].message
    assert reply.choices[0].finish_reason == "tool_calls"
    assert message.content is None
    assert [(t.type, t.function.name, orjson.loads(t.function.arguments)) for t in message.tool_calls] == [
        ("function", "get_weather", {"city": "Tokyo", "unit": "celsius"}),
        ("function", "get_time", {"timezone": "Asia/Tokyo"}),
    ]
    request_id = reply.id.removeprefix("chatcmpl-")
    assert [t.id for t in message.tool_calls] == [f"call_{request_id}_0", f"call_{request_id}_1"]
    sent = emulator.last.json()
    assert sent["messages"][1]["tool_calls"] == [
        {"id": "call_t0", "function": {"name": "get_weather", "arguments": {"city": "Toronto"}}}
    ]
    assert sent["messages"][2] == {
        "role": "tool",
        "content": "11 degrees celsius",
        "tool_name": "get_weather",
        "tool_call_id": "call_t0",
    }
    assert sent["tools"] == [
        {"type": "function", "function": {k: v for k, v in WEATHER_TOOL["function"].items() if k != "strict"}}
    ]


def test_ollama_stream_with_usage(gw, emulator):
    stream = client(gw).chat.completions.create(
        model="llama3.2", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert text_of(chunks) == "1 + 1 = 2."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (38, 9)
    assert len({c.id for c in chunks}) == 1
    assert {c.model for c in chunks} == {"llama3.2"}
    assert emulator.last.json()["stream"] is True
    (record,) = gw.wait_records(1)
    proxy = record["ai"]["proxy"]
    assert proxy["meta"]["request_mode"] == "stream"
    assert proxy["meta"]["response_model"] == "llama3.2"
    assert (proxy["usage"]["prompt_tokens"], proxy["usage"]["completion_tokens"]) == (38, 9)
    assert proxy["usage"]["cost"] == pytest.approx((38 * 1.0 + 9 * 2.0) / 1e6)


def test_ollama_stream_without_usage_still_counts(gw, emulator):
    chunks = list(client(gw).chat.completions.create(model="llama3.2", messages=MESSAGES, stream=True))
    assert all(c.choices for c in chunks)  # no usage-only chunk for a client that did not ask
    assert text_of(chunks) == "1 + 1 = 2."
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["usage"]["total_tokens"] == 47


def test_ollama_stream_arrives_incrementally(gw):
    c = client(gw, **{"x-emulator-delay-ms": "300"})
    started = time.monotonic()
    stream = c.chat.completions.create(model="llama3.2", messages=MESSAGES, stream=True)
    first = next(iter(stream))
    first_at = time.monotonic() - started
    rest = list(stream)
    total = time.monotonic() - started
    assert first.choices[0].delta.role == "assistant"
    assert len(rest) == 9  # eight text chunks and the finish chunk
    # 9 NDJSON lines 300 ms apart: the whole stream takes >= 2.4 s, the first chunk must not wait for it.
    assert total >= 2.4
    assert first_at < 1.0
    assert gw.wait_records(1)[0]["ai"]["proxy"]["usage"]["total_tokens"] == 47  # this stream's own record


def test_ollama_stream_tool_call_and_thinking(gw):
    c = client(gw, **{"x-emulator-fixture": "ollama/chat_tools/stream.ndjson"})
    chunks = list(
        c.chat.completions.create(model="qwen3:8b", messages=MESSAGES, tools=[WEATHER_TOOL], stream=True)
    )
    assert chunks[1].choices[0].delta.model_extra == {
        "reasoning_content": "The user wants the weather in Tokyo."
    }
    (call,) = chunks[2].choices[0].delta.tool_calls
    assert (call.index, call.id, call.function.name) == (0, "call_k3x9q2mw", "get_weather")
    assert orjson.loads(call.function.arguments) == {"city": "Tokyo", "unit": "celsius"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["usage"]["total_tokens"] == 223


def test_ollama_stream_error_line_reaches_the_client(gw):
    c = client(gw, **{"x-emulator-fixture": "ollama/errors/stream_error.ndjson"})
    stream = c.chat.completions.create(model="llama3.2", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError) as err:
        list(stream)
    assert err.value.message == "an error was encountered while running the model: unexpected EOF"
    # Counted from what was sent, once the stream is over: estimated, as Ollama reported no counts.
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["usage"]["completion_tokens"] == 3  # "The answer"
    assert record["ai"]["proxy"]["usage"]["estimated"] is True


def test_ollama_completions(gw, emulator):
    done = client(gw).completions.create(
        model="llama3.2", prompt="Say this is a test", max_tokens=16, stop=["\n\n"]
    )
    assert done.object == "text_completion"
    assert done.choices[0].text == "This is a test."
    assert done.choices[0].finish_reason == "stop"
    assert done.usage.total_tokens == 35
    assert emulator.last.path == "/api/generate"
    assert emulator.last.json() == fixture_json("ollama/generate/request.json")
    chunks = list(client(gw).completions.create(model="llama3.2", prompt="Say this is a test", stream=True))
    assert {c.object for c in chunks} == {"text_completion"}
    assert "".join(c.choices[0].text for c in chunks) == "This is a test."
    assert chunks[-1].choices[0].finish_reason == "length"
    records = gw.wait_records(2)
    assert [r["ai"]["proxy"]["usage"]["total_tokens"] for r in records] == [35, 34]


def test_ollama_embeddings(gw, emulator):
    emb = client(gw).embeddings.create(
        model="nomic-embed-text", input=["Why is the sky blue?", "Why is the grass green?"]
    )
    expected = fixture_json("ollama/embed/response.json")["embeddings"]
    # The SDK asks for base64 (float32) by default, so values round-trip at float32 precision.
    assert [d.embedding for d in emb.data] == [pytest.approx(v, rel=1e-6) for v in expected]
    assert [d.index for d in emb.data] == [0, 1]
    assert emb.model == "nomic-embed-text"
    assert (emb.usage.prompt_tokens, emb.usage.total_tokens) == (16, 16)
    assert emulator.last.path == "/api/embed"
    assert emulator.last.json() == fixture_json("ollama/embed/request.json")
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["usage"]["prompt_tokens"] == 16


@pytest.mark.parametrize(
    ("fixture", "status", "exc", "message"),
    [
        ("ollama/errors/404.json", 404, openai.NotFoundError, "model 'llama3.3:70b' not found"),
        (
            "ollama/errors/400.json",
            400,
            openai.BadRequestError,
            "registry.ollama.ai/library/gemma:2b does not support tools",
        ),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_ollama_upstream_errors_are_openai_shaped(gw, fixture, status, exc, message, stream):
    c = client(gw, **{"x-emulator-fixture": fixture, "x-emulator-status": str(status)})
    with pytest.raises(exc) as err:
        c.chat.completions.create(model="llama3.3:70b", messages=MESSAGES, stream=stream)
    assert err.value.status_code == status
    assert err.value.body["message"] == message


def test_ollama_refuses_linked_images_before_sending(gw, emulator):
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    with pytest.raises(openai.BadRequestError) as err:
        client(gw).chat.completions.create(
            model="llava",
            messages=[{"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]}],
        )
    assert err.value.body["message"] == (
        "'messages[0].content[1]': the ollama provider needs inline images (data:<mime>;base64,... URLs), "
        "not links to fetch"
    )
    assert emulator.requests == []


def test_mistral_with_ollama_format(gw, emulator):
    reply = client(gw, "/mistral").chat.completions.create(model="mistral:7b-instruct", messages=MESSAGES)
    assert reply.choices[0].message.content == "1 + 1 = 2."
    assert emulator.last.path == "/api/chat"
    assert emulator.last.json() == {
        "model": "mistral:7b-instruct",
        "stream": False,
        "options": {"num_predict": 128},
        "messages": MESSAGES,
    }
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["meta"]["provider_name"] == "mistral"
    assert record["ai"]["proxy"]["meta"]["request_model"] == "mistral:7b-instruct"
    assert record["ai"]["proxy"]["usage"]["total_tokens"] == 47
    with pytest.raises(openai.BadRequestError) as err:
        client(gw, "/mistral").chat.completions.create(model="mistral:7b-instruct", messages=MESSAGES, n=2)
    assert (
        err.value.body["message"]
        == "'n' greater than 1 is not supported by the mistral (mistral_format: ollama) provider"
    )


def test_llama2_with_ollama_format_streams(gw, emulator):
    chunks = list(
        client(gw, "/llama2-ollama").chat.completions.create(
            model="llama2:13b-chat", messages=MESSAGES, stream=True
        )
    )
    assert text_of(chunks) == "1 + 1 = 2."
    assert emulator.last.path == "/api/chat"
    assert emulator.last.json()["model"] == "llama2:13b-chat"
    # The stream's statistics land after the client has read it: waited for here, or under load
    # they land in the next test's records.
    assert len(gw.wait_records(1)) == 1


# --- Llama-2 raw ---------------------------------------------------------------------------------


def test_llama2_raw_chat_round_trip_and_statistics(gw, emulator):
    reply = client(gw, "/llama2").chat.completions.create(
        model=LLAMA2, messages=TYPOGRAPHY, max_tokens=48, temperature=0.6, top_p=0.9
    )
    assert reply.object == "chat.completion"
    assert reply.model == LLAMA2
    assert reply.choices[0].message.content == "Helvetica is a clean, neutral sans-serif typeface."
    assert reply.choices[0].finish_reason == "stop"
    # 17 generated tokens reported by TGI; the prompt count is estimated from its 98 characters.
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (
        25,
        17,
        42,
    )
    sent = emulator.last
    assert sent.path == "/generate"
    assert sent.headers["authorization"] == f"Bearer {HF_TOKEN}"
    assert sent.json() == fixture_json("llama2_raw/chat/request.json")
    (record,) = gw.wait_records(1)
    proxy = record["ai"]["proxy"]
    assert proxy["meta"]["provider_name"] == "llama2"
    assert proxy["meta"]["response_model"] == LLAMA2
    assert (proxy["usage"]["prompt_tokens"], proxy["usage"]["completion_tokens"]) == (25, 17)
    assert proxy["usage"]["cost"] == pytest.approx((25 * 1.0 + 17 * 2.0) / 1e6)
    assert HF_TOKEN not in proxy["payload"]["request"]
    assert "[INST]" in proxy["payload"]["request"]


def test_llama2_raw_stream_with_usage(gw, emulator):
    stream = client(gw, "/llama2").chat.completions.create(
        model=LLAMA2, messages=TYPOGRAPHY, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert text_of(chunks) == "Helvetica is a clean, neutral sans-serif typeface."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (52, 17)
    assert emulator.last.path == "/generate_stream"
    assert emulator.last.json()["stream"] is True
    (record,) = gw.wait_records(1)
    proxy = record["ai"]["proxy"]
    assert proxy["meta"]["request_mode"] == "stream"
    assert (proxy["usage"]["prompt_tokens"], proxy["usage"]["completion_tokens"]) == (52, 17)
    assert "estimated" not in proxy["usage"]


def test_llama2_raw_stream_arrives_incrementally(gw):
    c = client(gw, "/llama2", **{"x-emulator-delay-ms": "300"})
    started = time.monotonic()
    stream = c.chat.completions.create(model=LLAMA2, messages=TYPOGRAPHY, stream=True)
    first = next(iter(stream))
    first_at = time.monotonic() - started
    rest = list(stream)
    total = time.monotonic() - started
    assert first.choices[0].delta.role == "assistant"
    assert len(rest) == 17  # sixteen text chunks and the finish chunk
    # 17 events 300 ms apart: the whole stream takes >= 4.8 s, the first chunk must not wait for it.
    assert total >= 4.8
    assert first_at < 1.0
    assert gw.wait_records(1)[0]["ai"]["proxy"]["usage"]["total_tokens"] == 69  # this stream's own record


def test_llama2_raw_completions(gw, emulator):
    c = client(gw, "/llama2", **{"x-emulator-fixture": "llama2_raw/completions/response.json"})
    done = c.completions.create(model=LLAMA2, prompt="Complete: The quick brown fox", max_tokens=16)
    assert done.choices[0].text == "jumps over the lazy dog."  # the echoed prompt is removed
    assert emulator.last.json() == fixture_json("llama2_raw/completions/request.json")
    c = client(gw, "/llama2", **{"x-emulator-fixture": "llama2_raw/completions/stream.sse"})
    chunks = list(c.completions.create(model=LLAMA2, prompt="Complete: The quick brown fox", stream=True))
    assert "".join(ch.choices[0].text for ch in chunks) == "jumps over the"
    assert chunks[-1].choices[0].finish_reason == "length"
    records = gw.wait_records(2)
    assert [r["ai"]["proxy"]["usage"]["total_tokens"] for r in records] == [14, 23]


@pytest.mark.parametrize(
    ("fixture", "status", "exc", "message"),
    [
        (
            "llama2_raw/errors/422.json",
            422,
            openai.UnprocessableEntityError,
            "Input validation error: `inputs` tokens",
        ),
        ("llama2_raw/errors/401.json", 401, openai.AuthenticationError, "Model requires a Pro subscription"),
        (
            "llama2_raw/errors/503.json",
            503,
            openai.InternalServerError,
            "Model meta-llama/Llama-2-7b-chat-hf is currently loading",
        ),
    ],
)
def test_llama2_raw_upstream_errors(gw, fixture, status, exc, message):
    c = client(gw, "/llama2", **{"x-emulator-fixture": fixture, "x-emulator-status": str(status)})
    with pytest.raises(exc) as err:
        c.chat.completions.create(model=LLAMA2, messages=TYPOGRAPHY)
    assert err.value.status_code == status
    assert err.value.body["message"].startswith(message)
    assert HF_TOKEN not in err.value.body["message"]


def test_llama2_raw_stream_error_event(gw):
    c = client(gw, "/llama2", **{"x-emulator-fixture": "llama2_raw/errors/stream_error.sse"})
    with pytest.raises(openai.APIError) as err:
        list(c.chat.completions.create(model=LLAMA2, messages=TYPOGRAPHY, stream=True))
    assert err.value.message.startswith("Request failed during generation: Server error: CUDA out of memory")
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["usage"]["completion_tokens"] == 1  # "Hel"


def test_llama2_raw_refuses_tools(gw, emulator):
    with pytest.raises(openai.BadRequestError) as err:
        client(gw, "/llama2").chat.completions.create(model=LLAMA2, messages=TYPOGRAPHY, tools=[WEATHER_TOOL])
    assert err.value.body["message"] == "'tools' is not supported by the llama2 (llama2_format: raw) provider"
    assert emulator.requests == []
