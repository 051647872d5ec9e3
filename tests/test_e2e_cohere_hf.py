"""End to end: the real openai SDK -> mitmdump + addon (providers cohere and huggingface) -> the emulator."""

from __future__ import annotations

import time

import openai
import orjson
import pytest
from conftest import fixture_json, route

COHERE_KEY = "co-configured-key-0123456789"
HF_TOKEN = "hf_configuredToken0123456789"
COHERE_MODEL = "command-a-03-2025"
HF_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
HF_CHAT_PATH = f"/models/{HF_MODEL}/v1/chat/completions"


@pytest.fixture
def gw(gateway, emulator):
    cohere_auth = {"header_name": "Authorization", "header_value": f"Bearer {COHERE_KEY}"}
    hf_auth = {"header_name": "Authorization", "header_value": f"Bearer {HF_TOKEN}"}
    hf_options = {
        "huggingface": {"use_cache": False, "wait_for_model": True},
        "input_cost": 0.2,
        "output_cost": 0.4,
    }
    payloads = {"log_statistics": True, "log_payloads": True}
    routes = [
        route(
            "cohere-chat",
            "/cohere/v1/chat/completions",
            "llm/v1/chat",
            "cohere",
            emulator.url,
            auth=cohere_auth,
            options={"input_cost": 2.5, "output_cost": 10.0},
            logging=payloads,
        ),
        route(
            "cohere-completions",
            "/cohere/v1/completions",
            "llm/v1/completions",
            "cohere",
            emulator.url,
            auth=cohere_auth,
        ),
        route(
            "cohere-embeddings",
            "/cohere/v1/embeddings",
            "llm/v1/embeddings",
            "cohere",
            emulator.url,
            auth=cohere_auth,
            options={"cohere": {"embedding_input_type": "search_query"}},
        ),
        route(
            "hf-chat",
            "/hf/v1/chat/completions",
            "llm/v1/chat",
            "huggingface",
            emulator.url,
            auth=hf_auth,
            options=hf_options,
            logging=payloads,
        ),
        route(
            "hf-completions",
            "/hf/v1/completions",
            "llm/v1/completions",
            "huggingface",
            emulator.url,
            auth=hf_auth,
        ),
        route(
            "hf-embeddings",
            "/hf/v1/embeddings",
            "llm/v1/embeddings",
            "huggingface",
            emulator.url,
            auth=hf_auth,
        ),
    ]
    return gateway(routes)


def client(gw, prefix: str, **headers: str) -> openai.OpenAI:
    c = openai.OpenAI(base_url=f"{gw.url}{prefix}/v1", api_key="sk-client-own-key", max_retries=0, timeout=10)
    return c.with_options(default_headers=headers) if headers else c


def cohere(gw, **headers: str) -> openai.OpenAI:
    return client(gw, "/cohere", **headers)


def hf(gw, **headers: str) -> openai.OpenAI:
    return client(gw, "/hf", **headers)


HI = [{"role": "user", "content": "Hi"}]
# Fields the openai SDK has no parameter for travel in extra_body, as a client would send them.
_EXTRA_BODY = ("top_k", "documents")


def sdk_args(asked: dict) -> dict:
    args = {k: v for k, v in asked.items() if k not in _EXTRA_BODY}
    extra = {k: asked[k] for k in _EXTRA_BODY if k in asked}
    return {**args, "extra_body": extra} if extra else args


def stream_pieces(stream) -> tuple[object, float, list, float]:
    started = time.monotonic()
    first = next(iter(stream))
    first_at = time.monotonic() - started
    rest = list(stream)
    return first, first_at, rest, time.monotonic() - started


# --- Cohere --------------------------------------------------------------------------------------


def test_cohere_chat_round_trip_and_statistics(gw, emulator):
    reply = cohere(gw).chat.completions.create(**sdk_args(fixture_json("cohere/chat/client.json")))
    assert reply.id == "c14c80c3-18eb-4519-9460-6c92edd8cfb4"
    assert reply.model == COHERE_MODEL
    assert reply.choices[0].message.content == (
        "Mount Logan, in Yukon's Saint Elias Mountains, is Canada's tallest peak at 5,959 metres."
    )
    assert reply.choices[0].finish_reason == "stop"
    # Cohere's billed units (23 + 24), not its real token counts (518 + 24).
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (
        23,
        24,
        47,
    )
    sent = emulator.last
    assert (sent.method, sent.path) == ("POST", "/v2/chat")
    assert sent.headers["authorization"] == f"Bearer {COHERE_KEY}"  # the client's own key never goes up
    assert sent.json() == fixture_json("cohere/chat/request.json")
    (record,) = gw.wait_records(1)
    proxy = record["ai"]["proxy"]
    assert proxy["meta"]["route"] == "cohere-chat"
    assert proxy["meta"]["provider_name"] == "cohere"
    assert proxy["meta"]["request_model"] == COHERE_MODEL
    assert proxy["meta"]["response_model"] == COHERE_MODEL
    assert proxy["meta"]["request_mode"] == "oneshot"
    assert (proxy["usage"]["prompt_tokens"], proxy["usage"]["completion_tokens"]) == (23, 24)
    assert proxy["usage"]["cost"] == pytest.approx((23 * 2.5 + 24 * 10.0) / 1e6)
    assert "estimated" not in proxy["usage"]
    assert COHERE_KEY not in proxy["payload"]["request"]
    assert '"stop_sequences"' in proxy["payload"]["request"]


def test_cohere_tools_round_trip(gw, emulator):
    asked = fixture_json("cohere/tools/client.json")
    first = cohere(gw, **{"x-emulator-fixture": "cohere/tools/response.json"}).chat.completions.create(
        **asked
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert [(c.id, orjson.loads(c.function.arguments)) for c in calls] == [
        ("get_weather_6k3y0tpw2a8d", {"location": "Toronto, Canada", "unit": "celsius"}),
        ("get_weather_q1n7m4c9zr5e", {"location": "Vancouver, Canada", "unit": "celsius"}),
    ]
    assert emulator.last.json() == fixture_json("cohere/tools/request.json")

    results = ['{"temperature": -4, "conditions": "light snow"}', '{"temperature": 6, "conditions": "rain"}']
    messages = [
        *asked["messages"],
        choice.message.model_dump(exclude_none=True, exclude={"annotations"}),
        *({"role": "tool", "tool_call_id": c.id, "content": r} for c, r in zip(calls, results, strict=True)),
    ]
    second = cohere(
        gw, **{"x-emulator-fixture": "cohere/tool_results/response.json"}
    ).chat.completions.create(model=COHERE_MODEL, messages=messages, tools=asked["tools"])
    assert second.choices[0].message.content == "Toronto: -4 °C with light snow. Vancouver: 6 °C and rain."
    # Billed units; Cohere's cached count (1408) is in real tokens, so it is not set beside them.
    assert (second.usage.prompt_tokens, second.usage.completion_tokens) == (118, 19)
    assert second.usage.prompt_tokens_details is None
    sent = emulator.last.json()["messages"]
    assert sent[1] == {"role": "assistant", "tool_calls": [c.model_dump() for c in calls]}
    assert sent[2:] == [
        {"role": "tool", "tool_call_id": c.id, "content": r} for c, r in zip(calls, results, strict=True)
    ]


def test_cohere_completions(gw, emulator):
    c = client(gw, "/cohere", **{"x-emulator-fixture": "cohere/completions/response.json"})
    done = c.completions.create(**fixture_json("cohere/completions/client.json"))
    assert done.object == "text_completion"
    assert (
        done.choices[0].text
        == "Granite shoulders rise\nsnow holds the old silence close\nthe river keeps time"
    )
    assert done.choices[0].finish_reason == "stop"
    assert done.usage.total_tokens == 26  # billed units: 9 + 17
    assert emulator.last.path == "/v2/chat"
    assert emulator.last.json() == fixture_json("cohere/completions/request.json")


def test_cohere_embeddings_with_the_sdk_default_encoding(gw, emulator):
    # The openai SDK asks for base64 when no encoding is given: the float32 values come back.
    emb = cohere(gw).embeddings.create(
        model="embed-v4.0",
        input=["Mount Logan is the highest mountain in Canada.", "Kluane National Park is in the Yukon."],
    )
    expected = fixture_json("cohere/embed/response.json")["embeddings"]["float"]
    assert [d.embedding for d in emb.data] == [pytest.approx(v, rel=1e-6) for v in expected]
    assert (emb.usage.prompt_tokens, emb.usage.total_tokens) == (19, 19)
    assert emulator.last.path == "/v2/embed"
    assert emulator.last.json() == {
        "model": "embed-v4.0",
        "texts": ["Mount Logan is the highest mountain in Canada.", "Kluane National Park is in the Yukon."],
        "input_type": "search_query",
        "embedding_types": ["float"],
    }
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["usage"]["prompt_tokens"] == 19


def test_cohere_stream_with_usage(gw, emulator):
    stream = cohere(gw).chat.completions.create(
        **sdk_args(fixture_json("cohere/chat/client.json")),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Mount Logan, in Yukon's Saint Elias Mountains, is Canada's tallest peak at 5,959 metres."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (23, 24)
    assert {c.id for c in chunks} == {"c14c80c3-18eb-4519-9460-6c92edd8cfb4"}
    assert emulator.last.json()["stream"] is True
    (record,) = gw.wait_records(1)
    proxy = record["ai"]["proxy"]
    assert proxy["meta"]["request_mode"] == "stream"
    assert (proxy["usage"]["prompt_tokens"], proxy["usage"]["completion_tokens"]) == (23, 24)
    assert proxy["usage"]["cost"] == pytest.approx((23 * 2.5 + 24 * 10.0) / 1e6)


def test_cohere_stream_arrives_incrementally(gw):
    stream = cohere(gw, **{"x-emulator-delay-ms": "300"}).chat.completions.create(
        model=COHERE_MODEL, messages=HI, stream=True
    )
    first, first_at, rest, total = stream_pieces(stream)
    assert first.choices[0].delta.role == "assistant"
    assert len(rest) == 5  # four text chunks and the finish chunk
    # message-end is the 8th event, 300 ms apart: the answer takes 2.1 s from the first event, a
    # little less from when the client's clock starts (after the head); the first chunk must not wait.
    assert total >= 2.0
    assert first_at < 1.0
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["usage"]["total_tokens"] == 47


def test_cohere_stream_tool_calls(gw):
    c = cohere(gw, **{"x-emulator-fixture": "cohere/stream_tools/stream.sse"})
    chunks = list(c.chat.completions.create(**fixture_json("cohere/tools/client.json"), stream=True))
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for call in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += call.id or ""
            entry["name"] += call.function.name or ""
            entry["arguments"] += call.function.arguments or ""
    assert [(e["id"], e["name"], orjson.loads(e["arguments"])) for e in calls.values()] == [
        ("get_weather_6k3y0tpw2a8d", "get_weather", {"location": "Toronto, Canada", "unit": "celsius"}),
        ("get_weather_q1n7m4c9zr5e", "get_weather", {"location": "Vancouver, Canada", "unit": "celsius"}),
        ("get_local_time_8w2j5r0x7n1c", "get_local_time", {}),
    ]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    gw.wait_records(1)  # a stream's record lands after its last byte: not in the next test


def test_cohere_stream_error_reaches_the_client(gw):
    c = cohere(gw, **{"x-emulator-fixture": "cohere/stream_error/stream.sse"})
    stream = c.chat.completions.create(model=COHERE_MODEL, messages=HI, stream=True)
    received = []
    with pytest.raises(openai.APIError) as err:
        for chunk in stream:
            received.append(chunk)
    assert err.value.message == "internal server error, this has been reported to our developers"
    assert "".join(c.choices[0].delta.content or "" for c in received) == "Mount Logan is"
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["usage"]["prompt_tokens"] == 23


@pytest.mark.parametrize(
    ("fixture", "status", "exc", "message"),
    [
        ("cohere/errors/401.json", 401, openai.AuthenticationError, "invalid api token"),
        ("cohere/errors/429.json", 429, openai.RateLimitError, "You are using a Trial key"),
        ("cohere/errors/400.json", 400, openai.BadRequestError, "invalid request: messages must contain"),
        ("cohere/errors/500.json", 500, openai.InternalServerError, "internal server error"),
    ],
)
def test_cohere_upstream_errors_are_openai_shaped(gw, fixture, status, exc, message):
    c = cohere(gw, **{"x-emulator-fixture": fixture, "x-emulator-status": str(status)})
    with pytest.raises(exc) as err:
        c.chat.completions.create(model=COHERE_MODEL, messages=HI)
    assert err.value.status_code == status
    assert err.value.body["message"].startswith(message)
    with pytest.raises(exc) as err:
        c.chat.completions.create(model=COHERE_MODEL, messages=HI, stream=True)
    assert err.value.body["message"].startswith(message)


def test_cohere_refusals_never_reach_the_upstream(gw, emulator):
    with pytest.raises(openai.BadRequestError) as err:
        cohere(gw).chat.completions.create(model=COHERE_MODEL, messages=HI, n=2)
    assert err.value.body["message"] == "'n' above 1 is not supported by the cohere provider"
    with pytest.raises(openai.BadRequestError) as err:
        cohere(gw).chat.completions.create(
            model=COHERE_MODEL,
            messages=HI,
            tools=fixture_json("cohere/tools/client.json")["tools"],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        )
    assert (
        err.value.body["message"] == "'tool_choice' naming a function is not supported by the cohere provider"
    )
    assert emulator.requests == []


def test_cohere_documents_pass_through(gw, emulator):
    asked = fixture_json("cohere/documents/client.json")
    c = cohere(gw, **{"x-emulator-fixture": "cohere/documents/response.json"})
    reply = c.chat.completions.create(
        model=asked["model"], messages=asked["messages"], extra_body={"documents": asked["documents"]}
    )
    assert reply.choices[0].message.content.startswith("Kluane National Park was established in 1972")
    assert emulator.last.json() == fixture_json("cohere/documents/request.json")


# --- Hugging Face --------------------------------------------------------------------------------


def test_hf_chat_round_trip_and_statistics(gw, emulator):
    reply = hf(gw).chat.completions.create(**fixture_json("huggingface/chat/client.json"))
    assert reply.id.startswith("chatcmpl-") and len(reply.id) > len("chatcmpl-")  # TGI's id is empty
    assert reply.model == HF_MODEL
    assert reply.choices[0].message.content == "The capital of Canada is Ottawa, in the province of Ontario."
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.total_tokens == 61
    sent = emulator.last
    assert (sent.method, sent.path) == ("POST", HF_CHAT_PATH)
    assert sent.headers["authorization"] == f"Bearer {HF_TOKEN}"
    assert sent.headers["x-use-cache"] == "false"
    assert sent.headers["x-wait-for-model"] == "true"
    assert sent.json() == fixture_json("huggingface/chat/request.json")
    (record,) = gw.wait_records(1)
    proxy = record["ai"]["proxy"]
    assert proxy["meta"]["provider_name"] == "huggingface"
    assert proxy["meta"]["response_model"] == HF_MODEL
    assert (proxy["usage"]["prompt_tokens"], proxy["usage"]["completion_tokens"]) == (46, 15)
    assert proxy["usage"]["cost"] == pytest.approx((46 * 0.2 + 15 * 0.4) / 1e6)
    assert HF_TOKEN not in proxy["payload"]["request"]


def test_hf_tools(gw, emulator):
    c = hf(gw, **{"x-emulator-fixture": "huggingface/tools/response.json"})
    reply = c.chat.completions.create(**fixture_json("huggingface/tools/client.json"))
    assert reply.choices[0].finish_reason == "tool_calls"
    call = reply.choices[0].message.tool_calls[0]
    assert (call.id, call.function.name, orjson.loads(call.function.arguments)) == (
        "0",
        "get_weather",
        {"location": "Ottawa, Canada", "unit": "celsius"},
    )
    assert emulator.last.path == "/models/Qwen/Qwen2.5-7B-Instruct/v1/chat/completions"
    assert emulator.last.json() == fixture_json("huggingface/tools/request.json")


def test_hf_completions(gw, emulator):
    c = client(gw, "/hf", **{"x-emulator-fixture": "huggingface/completions/response.json"})
    done = c.completions.create(**sdk_args(fixture_json("huggingface/completions/client.json")))
    assert done.object == "text_completion"
    assert done.choices[0].text == "Turquoise water sleeps\nbeneath the Victoria glacier\nmorning mist"
    assert done.choices[0].finish_reason == "length"
    assert done.usage.total_tokens == 34
    assert emulator.last.path == "/models/mistralai/Mistral-7B-Instruct-v0.3/v1/chat/completions"
    assert emulator.last.json() == fixture_json("huggingface/completions/request.json")
    assert "x-use-cache" not in emulator.last.headers  # not configured on this route


def test_hf_completions_stream(gw, emulator):
    c = client(gw, "/hf", **{"x-emulator-fixture": "huggingface/chat/stream.sse"})
    chunks = list(c.completions.create(model=HF_MODEL, prompt="What is the capital of Canada?", stream=True))
    assert {ch.object for ch in chunks} == {"text_completion"}
    assert (
        "".join(ch.choices[0].text for ch in chunks)
        == "The capital of Canada is Ottawa, in the province of Ontario."
    )
    assert emulator.last.json()["stream_options"] == {"include_usage": True}
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["usage"]["total_tokens"] == 61


def test_hf_embeddings(gw, emulator):
    asked = fixture_json("huggingface/embeddings/client.json")
    emb = hf(gw).embeddings.create(model=asked["model"], input=asked["input"])  # the SDK asks for base64
    expected = fixture_json("huggingface/embeddings/response.json")
    assert [d.embedding for d in emb.data] == [pytest.approx(v, rel=1e-6) for v in expected]
    assert emb.usage.prompt_tokens == 17  # estimated: the pipeline reports no count
    assert emulator.last.path == "/models/sentence-transformers/all-MiniLM-L6-v2/pipeline/feature-extraction"
    assert emulator.last.json() == fixture_json("huggingface/embeddings/request.json")
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["usage"]["prompt_tokens"] == 17
    assert record["ai"]["proxy"]["usage"]["estimated"] is True


def test_hf_stream_usage_is_asked_for_and_shown_only_when_asked(gw, emulator):
    chunks = list(hf(gw).chat.completions.create(model=HF_MODEL, messages=HI, stream=True))
    assert emulator.last.json()["stream_options"] == {"include_usage": True}
    assert all(c.choices for c in chunks)  # no usage-only chunk for a client that did not ask
    assert all(c.usage is None for c in chunks)
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].id.startswith("chatcmpl-")
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["usage"]["total_tokens"] == 61
    assert "estimated" not in record["ai"]["proxy"]["usage"]

    chunks = list(
        hf(gw).chat.completions.create(
            model=HF_MODEL, messages=HI, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (46, 15)
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert len(gw.wait_records(2)) == 2


def test_hf_stream_arrives_incrementally(gw):
    stream = hf(gw, **{"x-emulator-delay-ms": "300"}).chat.completions.create(
        model=HF_MODEL, messages=HI, stream=True
    )
    first, first_at, rest, total = stream_pieces(stream)
    assert first.choices[0].delta.content == "The"
    assert len(rest) == 6
    # 8 events 300 ms apart: 2.1 s from the first event, a little less from when the client's clock
    # starts (after the head); the first chunk must not wait for it.
    assert total >= 2.0
    assert first_at < 1.0
    assert len(gw.wait_records(1)) == 1


def test_hf_stream_error_reaches_the_client(gw):
    c = hf(gw, **{"x-emulator-fixture": "huggingface/stream_error/stream.sse"})
    with pytest.raises(openai.APIError) as err:
        list(c.chat.completions.create(model=HF_MODEL, messages=HI, stream=True))
    assert err.value.message.startswith(
        "Request failed during generation: Server error: Out of available cache"
    )
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["usage"]["estimated"] is True


@pytest.mark.parametrize(
    ("fixture", "status", "exc", "message"),
    [
        (
            "huggingface/errors/401.json",
            401,
            openai.AuthenticationError,
            "Invalid credentials in Authorization header",
        ),
        (
            "huggingface/errors/503.json",
            503,
            openai.InternalServerError,
            f"Model {HF_MODEL} is currently loading (estimated time 20 s)",
        ),
        (
            "huggingface/errors/422.json",
            422,
            openai.UnprocessableEntityError,
            "Input validation error: `inputs` tokens",
        ),
    ],
)
def test_hf_upstream_errors_are_openai_shaped(gw, fixture, status, exc, message):
    c = hf(gw, **{"x-emulator-fixture": fixture, "x-emulator-status": str(status)})
    with pytest.raises(exc) as err:
        c.chat.completions.create(model=HF_MODEL, messages=HI)
    assert err.value.status_code == status
    assert err.value.body["message"].startswith(message)
    with pytest.raises(exc) as err:
        c.chat.completions.create(model=HF_MODEL, messages=HI, stream=True)
    assert err.value.body["message"].startswith(message)


def test_hf_embeddings_loading_error(gw):
    c = hf(gw, **{"x-emulator-fixture": "huggingface/errors/503.json", "x-emulator-status": "503"})
    with pytest.raises(openai.InternalServerError) as err:
        c.embeddings.create(model="sentence-transformers/all-MiniLM-L6-v2", input="x")
    assert err.value.body["code"] == "model_loading"
