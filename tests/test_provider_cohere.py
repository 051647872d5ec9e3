"""The Cohere provider: OpenAI requests -> exact v2 chat/embed requests, answers and streams back.

Oracles: every request built validates against a model made from the cohere SDK's own v2 method
signatures (``RawV2Client.chat`` / ``embed``: unknown keys rejected, nested SDK models checked for
unknown fields too); every fixture answer parses with the SDK's response types; every OpenAI answer
parses with openai's models without losing a field.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import inspect
import struct
import typing
from pathlib import Path
from typing import Any

import orjson
import pytest
from cohere import EmbedByTypeResponse, NonStreamedChatResponse
from cohere.v2.raw_client import RawV2Client
from cohere.v2.types import V2ChatResponse, V2ChatStreamResponse
from conftest import FIXTURES, fixture_bytes, fixture_json
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion
from pydantic import BaseModel, ConfigDict, TypeAdapter, create_model
from streams import assert_chunks_valid, choices, deltas, drive, finishing_choices, frames

from transforms.config import ModelOptions, Route
from transforms.errors import GatewayError
from transforms.pipeline import prepare, translate_response
from transforms.registry import SPECS
from transforms.stream import SSEParser
from transforms.types import STOP_SEQUENCE_KEY, CallContext, Inbound
from transforms.usage import cost

SPEC = SPECS["cohere"]
CHAT = SPEC.routes["llm/v1/chat"]
COMPLETIONS = SPEC.routes["llm/v1/completions"]
EMBEDDINGS = SPEC.routes["llm/v1/embeddings"]
CREATED = 1767225600
MODEL = "command-a-03-2025"


def make_ctx(
    route_type: str = "llm/v1/chat",
    *,
    model: str = MODEL,
    stream: bool = False,
    include_usage: bool = False,
    options: ModelOptions | None = None,
) -> CallContext:
    return CallContext(
        route_name="cohere",
        route_type=route_type,
        provider="cohere",
        model=model,
        options=options or ModelOptions(),
        stream=stream,
        request_id="req-123",
        created=CREATED,
        include_usage=include_usage,
    )


# --- oracles -------------------------------------------------------------------------------------


def _request_model(method: Any, name: str, extra: dict[str, Any]) -> type[BaseModel]:
    """A strict pydantic model of a request body, from the SDK method's keyword parameters."""
    hints = typing.get_type_hints(method)
    params = inspect.signature(method).parameters
    fields: dict[str, Any] = {}
    for key, hint in hints.items():
        if key in ("return", "request_options"):
            continue
        required = params[key].default is inspect.Parameter.empty
        fields[key] = (hint, ...) if required else (hint, None)
    fields.update(extra)
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)


_CHAT_REQUEST = _request_model(RawV2Client.chat, "V2ChatRequest", {"stream": (bool, None)})
_EMBED_REQUEST = _request_model(RawV2Client.embed, "V2EmbedRequest", {})


def _no_unknown_fields(value: Any, where: str = "body", allowed: frozenset[str] = frozenset()) -> None:
    """The SDK's models accept unknown keys; a field name the SDK does not know is a bug here
    (``allowed``: 'where.key' paths the wire has and the SDK does not declare)."""
    if isinstance(value, BaseModel):
        unknown = {k for k in value.model_extra or () if f"{where}.{k}" not in allowed}
        assert not unknown, f"{where}: unknown fields {sorted(unknown)}"
        for name in type(value).model_fields:
            _no_unknown_fields(getattr(value, name), f"{where}.{name}", allowed)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _no_unknown_fields(item, f"{where}[{i}]", allowed)


def assert_valid_cohere_chat(body: dict[str, Any]) -> None:
    parsed = _CHAT_REQUEST.model_validate(body)
    for name in _CHAT_REQUEST.model_fields:
        _no_unknown_fields(getattr(parsed, name), name)
    # The SDK types these as Literal[...] | Any; the API takes only the listed values.
    assert body.get("tool_choice", "REQUIRED") in ("REQUIRED", "NONE")


def assert_valid_cohere_embed(body: dict[str, Any]) -> None:
    _EMBED_REQUEST.model_validate(body)
    assert body["input_type"] in ("search_document", "search_query", "classification", "clustering", "image")


def assert_real_chat_response(raw: dict[str, Any]) -> None:
    _no_unknown_fields(V2ChatResponse.model_validate(raw))


def assert_chat_completion(out: dict[str, Any]) -> None:
    assert ChatCompletion.model_validate(out).model_dump(exclude_unset=True) == out


def assert_completion(out: dict[str, Any]) -> None:
    assert Completion.model_validate(out).model_dump(exclude_unset=True) == out


def build(body: dict[str, Any], **ctx_args: Any) -> dict[str, Any]:
    req = CHAT.build_request(copy.deepcopy(body), make_ctx(**ctx_args))
    assert (req.path, req.method, req.query, req.headers) == ("/v2/chat", "POST", [], {})
    assert_valid_cohere_chat(req.body)
    return req.body


def chat(messages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": messages, **fields}


USER = [{"role": "user", "content": "Hi"}]


def refused(body: dict[str, Any], route: Any = CHAT, route_type: str = "llm/v1/chat") -> str:
    with pytest.raises(GatewayError) as err:
        route.build_request(copy.deepcopy(body), make_ctx(route_type))
    assert err.value.status == 400
    return err.value.message


# --- fixtures as tables --------------------------------------------------------------------------

CHAT_CASES = [
    "chat",
    "tools",
    "tool_results",
    "json_schema",
    "documents",
    "images",
    "thinking",
    "max_tokens",
    "stop_sequence",
]


@pytest.mark.parametrize("case", CHAT_CASES)
def test_chat_request_fixture(case: str) -> None:
    client = fixture_json(f"cohere/{case}/client.json")
    assert build(client, model=client["model"]) == fixture_json(f"cohere/{case}/request.json")


@pytest.mark.parametrize("case", CHAT_CASES)
def test_chat_response_fixture(case: str) -> None:
    raw = fixture_json(f"cohere/{case}/response.json")
    assert_real_chat_response(raw)
    model = fixture_json(f"cohere/{case}/client.json")["model"]
    out = CHAT.parse_response(raw, make_ctx(model=model))
    assert out == fixture_json(f"cohere/{case}/expected.json")
    assert_chat_completion(out)


def test_completions_fixture() -> None:
    ctx = make_ctx("llm/v1/completions", model="command-r7b-12-2024")
    req = COMPLETIONS.build_request(fixture_json("cohere/completions/client.json"), ctx)
    assert req.path == "/v2/chat"
    assert req.body == fixture_json("cohere/completions/request.json")
    assert_valid_cohere_chat(req.body)
    raw = fixture_json("cohere/completions/response.json")
    assert_real_chat_response(raw)
    out = COMPLETIONS.parse_response(raw, ctx)
    assert out == fixture_json("cohere/completions/expected.json")
    assert_completion(out)


def test_embeddings_fixture() -> None:
    ctx = make_ctx("llm/v1/embeddings", model="embed-v4.0")
    req = EMBEDDINGS.build_request(fixture_json("cohere/embed/client.json"), ctx)
    assert (req.path, req.method) == ("/v2/embed", "POST")
    assert req.body == fixture_json("cohere/embed/request.json")
    assert_valid_cohere_embed(req.body)
    raw = fixture_json("cohere/embed/response.json")
    _no_unknown_fields(EmbedByTypeResponse.model_validate(raw))
    out = EMBEDDINGS.parse_response(raw, ctx)
    assert out == fixture_json("cohere/embed/expected.json")
    assert CreateEmbeddingResponse.model_validate(out).model_dump(exclude_unset=True) == out


# --- request: messages ---------------------------------------------------------------------------


def test_model_and_stream_flag() -> None:
    assert build(chat(USER, model="other"))["model"] == MODEL
    assert build(chat(USER), stream=True)["stream"] is True
    assert "stream" not in build(chat(USER, stream=False))


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"role": "system", "content": "Be brief."}, {"role": "system", "content": "Be brief."}),
        ({"role": "developer", "content": "Be brief."}, {"role": "system", "content": "Be brief."}),
        (
            {"role": "system", "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]},
            {"role": "system", "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]},
        ),
        ({"role": "user", "content": "Hi", "name": "ada"}, {"role": "user", "content": "Hi"}),
        ({"role": "assistant", "content": "Hello!"}, {"role": "assistant", "content": "Hello!"}),
        (
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't help with that."}]},
            {"role": "assistant", "content": [{"type": "text", "text": "I can't help with that."}]},
        ),
        (
            {"role": "tool", "tool_call_id": "t1", "content": "ok"},
            {"role": "tool", "tool_call_id": "t1", "content": "ok"},
        ),
    ],
)
def test_message_shapes(message, expected) -> None:
    assert build(chat([message]))["messages"] == [expected]


def test_system_messages_keep_their_place() -> None:
    messages = [
        *USER,
        {"role": "assistant", "content": "Hello!"},
        {"role": "system", "content": "From now on, answer in French."},
        {"role": "user", "content": "How are you?"},
    ]
    assert [m["role"] for m in build(chat(messages))["messages"]] == ["user", "assistant", "system", "user"]


def test_assistant_text_with_tool_calls_becomes_the_tool_plan() -> None:
    call = {"id": "now_1", "type": "function", "function": {"name": "now", "arguments": ""}}
    messages = [
        *USER,
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "Let me check "}, {"type": "text", "text": "the time."}],
            "tool_calls": [call],
        },
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "assistant", "content": "", "tool_calls": [call]},
    ]
    sent = build(chat(messages))["messages"]
    expected_call = {"id": "now_1", "type": "function", "function": {"name": "now", "arguments": "{}"}}
    assert sent[1] == {
        "role": "assistant",
        "tool_calls": [expected_call],
        "tool_plan": "Let me check the time.",
    }
    assert sent[2] == {"role": "assistant", "tool_calls": [expected_call]}
    assert sent[3] == {"role": "assistant", "tool_calls": [expected_call]}


def test_image_parts() -> None:
    parts = [
        {"type": "image_url", "image_url": "https://example.com/a.jpg"},
        {"type": "image_url", "image_url": {"url": "http://example.com/b.png", "detail": "high"}},
    ]
    assert build(chat([{"role": "user", "content": parts}]))["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
        {"type": "image_url", "image_url": {"url": "http://example.com/b.png", "detail": "high"}},
    ]


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}],
                }
            ],
            "'messages[0].content[0]' of type 'input_audio' is not supported by the cohere provider",
        ),
        (
            [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}],
            "'messages[0].content[0]' of type 'file' is not supported by the cohere provider",
        ),
        (
            [{"role": "system", "content": [{"type": "image_url", "image_url": "https://x.test/a.png"}]}],
            "'messages[0].content[0]' of type 'image_url' is not supported by the cohere provider",
        ),
        (
            [
                *USER,
                {
                    "role": "tool",
                    "tool_call_id": "t",
                    "content": [{"type": "image_url", "image_url": "https://x.test/a.png"}],
                },
            ],
            "'messages[1].content[0]' of type 'image_url' is not supported by the cohere provider",
        ),
        (
            [*USER, {"role": "function", "name": "f", "content": "x"}],
            "'messages[1].role' 'function' is not supported by the cohere provider",
        ),
        (
            [*USER, {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}],
            "'messages[1].function_call' (legacy functions) is not supported by the cohere provider",
        ),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": "ftp://x.test/a.png"}]}],
            "messages[0].content[0].image_url: only data: and http(s) URLs are supported",
        ),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": "data:image/png,abc"}]}],
            "image data URLs must be base64-encoded (data:<mime>;base64,...)",
        ),
        ([*USER, {"role": "tool", "content": "x"}], "messages[1]: a tool message needs a tool_call_id"),
        (
            [
                *USER,
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
                    ],
                },
            ],
            "messages[1].tool_calls[0]: function arguments are not valid JSON",
        ),
    ],
)
def test_message_refusals(messages, message) -> None:
    assert refused(chat(messages)) == message


# --- request: parameters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"max_tokens": 100}, {"max_tokens": 100}),
        ({"max_completion_tokens": 200, "max_tokens": 100}, {"max_tokens": 200}),
        ({"temperature": 0}, {"temperature": 0}),
        ({"top_p": 0.5}, {"p": 0.5}),
        ({"top_p": 1}, {"p": 0.99}),
        ({"top_p": 0}, {"p": 0.01}),
        ({"top_k": 0}, {"k": 0}),
        ({"stop": "END"}, {"stop_sequences": ["END"]}),
        ({"stop": ["A", "B"]}, {"stop_sequences": ["A", "B"]}),
        ({"stop": []}, {}),
        ({"seed": 7}, {"seed": 7}),
        ({"frequency_penalty": 1, "presence_penalty": 0}, {"frequency_penalty": 1, "presence_penalty": 0}),
        ({"n": 1, "logprobs": False, "top_logprobs": 0, "logit_bias": {}, "parallel_tool_calls": True}, {}),
        (
            {
                "user": "u-1",
                "store": False,
                "metadata": {"k": "v"},
                "stream_options": {"include_usage": True},
            },
            {},
        ),
    ],
)
def test_parameters(fields, expected) -> None:
    body = build(chat(USER, **fields))
    assert {k: v for k, v in body.items() if k not in ("model", "messages")} == expected


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"n": 2}, "'n' above 1 is not supported by the cohere provider"),
        ({"logprobs": True}, "'logprobs' is not supported by the cohere provider"),
        ({"top_logprobs": 2}, "'top_logprobs' is not supported by the cohere provider"),
        ({"logit_bias": {"50256": -100}}, "'logit_bias' is not supported by the cohere provider"),
        (
            {"frequency_penalty": -0.5},
            "'frequency_penalty' outside 0..1 is not supported by the cohere provider",
        ),
        (
            {"presence_penalty": 1.5},
            "'presence_penalty' outside 0..1 is not supported by the cohere provider",
        ),
        (
            {"parallel_tool_calls": False},
            "'parallel_tool_calls' set to false is not supported by the cohere provider",
        ),
        (
            {"modalities": ["text", "audio"]},
            "'modalities' other than ['text'] is not supported by the cohere provider",
        ),
        ({"audio": {"voice": "alloy"}}, "'audio' is not supported by the cohere provider"),
        ({"functions": [{"name": "f"}]}, "'functions' is not supported by the cohere provider"),
        ({"some_future_field": 1}, "'some_future_field' is not supported by the cohere provider"),
        (
            {"documents": "not a list"},
            "'documents' must be a list of strings or objects for the cohere provider",
        ),
    ],
)
def test_refused_parameters(fields, message) -> None:
    assert refused(chat(USER, **fields)) == message


def test_documents_as_strings_pass_through() -> None:
    assert build(chat(USER, documents=["Canberra is the capital.", {"data": {"t": "x"}}]))["documents"] == [
        "Canberra is the capital.",
        {"data": {"t": "x"}},
    ]


# --- request: tools and response_format ----------------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("required", "REQUIRED"), ("none", "NONE"), ("auto", None), (None, None)],
)
def test_tool_choice(choice, expected) -> None:
    assert build(chat(USER, tools=[WEATHER], tool_choice=choice)).get("tool_choice") == expected


def test_named_tool_choice_is_refused() -> None:
    choice = {"type": "function", "function": {"name": "get_weather"}}
    assert refused(chat(USER, tools=[WEATHER], tool_choice=choice)) == (
        "'tool_choice' naming a function is not supported by the cohere provider"
    )


def test_strict_tools() -> None:
    strict = {"type": "function", "function": {**WEATHER["function"], "strict": True}}
    assert build(chat(USER, tools=[WEATHER, strict]))["strict_tools"] is True
    assert "strict_tools" not in build(chat(USER, tools=[WEATHER]))


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        ({"type": "text"}, None),
        ({"type": "json_object"}, {"type": "json_object"}),
        ({"type": "json_schema", "json_schema": {"name": "x"}}, {"type": "json_object"}),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array"}}},
            {"type": "json_object", "json_schema": {"type": "array"}},
        ),
    ],
)
def test_response_format(response_format, expected) -> None:
    assert build(chat(USER, response_format=response_format)).get("response_format") == expected


# --- request: completions and embeddings ---------------------------------------------------------


def test_completions_prompt_as_single_item_list_and_stream() -> None:
    req = COMPLETIONS.build_request(
        {"prompt": ["Say hi"], "stop": "."}, make_ctx("llm/v1/completions", stream=True)
    )
    assert req.body == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hi"}],
        "stop_sequences": ["."],
        "stream": True,
    }
    assert_valid_cohere_chat(req.body)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"prompt": ["a", "b"]},
            "'prompt' other than one text prompt is not supported by the cohere provider",
        ),
        ({"prompt": [1, 2]}, "'prompt' other than one text prompt is not supported by the cohere provider"),
        ({"prompt": "a", "echo": True}, "'echo' is not supported by the cohere provider"),
        ({"prompt": "a", "suffix": "x"}, "'suffix' is not supported by the cohere provider"),
        ({"prompt": "a", "best_of": 2}, "'best_of' above 1 is not supported by the cohere provider"),
        ({"prompt": "a", "logprobs": 1}, "'logprobs' is not supported by the cohere provider"),
        ({"prompt": "a", "tools": [WEATHER]}, "'tools' is not supported by the cohere provider"),
    ],
)
def test_completions_refusals(fields, message) -> None:
    assert refused(fields, COMPLETIONS, "llm/v1/completions") == message


@pytest.mark.parametrize(
    ("options", "input_type"),
    [
        (ModelOptions(), "search_document"),
        (ModelOptions.model_validate({"cohere": {}}), "search_document"),
        (ModelOptions.model_validate({"cohere": {"embedding_input_type": "search_query"}}), "search_query"),
        (ModelOptions.model_validate({"cohere": {"embedding_input_type": "clustering"}}), "clustering"),
    ],
)
def test_embedding_input_type_comes_from_options(options, input_type) -> None:
    req = EMBEDDINGS.build_request({"input": "hello"}, make_ctx("llm/v1/embeddings", options=options))
    assert req.body == {
        "model": MODEL,
        "texts": ["hello"],
        "input_type": input_type,
        "embedding_types": ["float"],
    }
    assert_valid_cohere_embed(req.body)


def test_embeddings_base64_request_asks_cohere_for_floats() -> None:
    # The pipeline encodes the float vectors when the client asked for base64.
    req = EMBEDDINGS.build_request(
        {"input": ["a"], "encoding_format": "base64", "user": "u"}, make_ctx("llm/v1/embeddings")
    )
    assert req.body["embedding_types"] == ["float"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"input": [1, 2, 3]}, "'input' as token ids is not supported by the cohere provider"),
        ({"input": [[1, 2]]}, "'input' as token ids is not supported by the cohere provider"),
        ({"input": "a", "truncate": "END"}, "'truncate' is not supported by the cohere provider"),
    ],
)
def test_embeddings_refusals(fields, message) -> None:
    assert refused(fields, EMBEDDINGS, "llm/v1/embeddings") == message


@pytest.mark.parametrize(
    "body", [{}, {"embeddings": [[0.1]]}, {"embeddings": {"int8": [[1]]}}, {"message": "x"}]
)
def test_untranslatable_embed_body_raises(body) -> None:
    with pytest.raises(ValueError):
        EMBEDDINGS.parse_response(body, make_ctx("llm/v1/embeddings"))


# --- pipeline ------------------------------------------------------------------------------------


def cohere_route(route_type: str = "llm/v1/chat", **options: Any) -> Route:
    return Route.model_validate(
        {
            "name": "cohere",
            "route_type": route_type,
            "auth": {"header_name": "Authorization", "header_value": "Bearer co-secret-key-123"},
            "model": {"provider": "cohere", "options": options},
        }
    )


def test_pipeline_target_and_auth() -> None:
    inbound = Inbound(
        "POST", "gw", "/v1/chat/completions", [], {"authorization": "Bearer client"}, orjson.dumps(chat(USER))
    )
    prep = prepare(
        cohere_route(max_tokens=64, temperature=0.4, top_p=1), inbound, request_id="r", now=CREATED
    )
    assert prep.upstream.url == "https://api.cohere.com/v2/chat"
    assert prep.upstream.set_headers["authorization"] == "Bearer co-secret-key-123"
    assert orjson.loads(prep.upstream.body) == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 64,
        "temperature": 0.4,
        "p": 0.99,
    }


def test_pipeline_embeddings_upstream_url_without_path() -> None:
    inbound = Inbound("POST", "gw", "/v1/embeddings", [], {}, b'{"model": "embed-v4.0", "input": "x"}')
    route = cohere_route("llm/v1/embeddings", upstream_url="http://127.0.0.1:9999")
    prep = prepare(route, inbound, request_id="r", now=CREATED)
    assert prep.upstream.url == "http://127.0.0.1:9999/v2/embed"


def test_pipeline_translates_errors_and_statistics() -> None:
    inbound = Inbound("POST", "gw", "/v1/chat/completions", [], {}, orjson.dumps(chat(USER)))
    prep = prepare(cohere_route(), inbound, request_id="r", now=CREATED)
    answer = translate_response(prep, 401, fixture_bytes("cohere/errors/401.json"))
    assert orjson.loads(answer.body) == {
        "error": {"message": "invalid api token", "type": "authentication_error", "param": None, "code": None}
    }
    ok = translate_response(prep, 200, fixture_bytes("cohere/tool_results/response.json"))
    assert ok.usage is not None
    # Billed units (118 + 19), not the real tokens (1661 + 41); cached tokens are real tokens: not beside them.
    assert (ok.usage.prompt_tokens, ok.usage.completion_tokens, ok.usage.cached_tokens) == (118, 19, 0)
    assert ok.response_model == MODEL


def test_pipeline_embeddings_in_base64() -> None:
    body = b'{"model": "embed-v4.0", "input": ["a", "b"], "encoding_format": "base64"}'
    prep = prepare(
        cohere_route("llm/v1/embeddings"),
        Inbound("POST", "gw", "/v1/embeddings", [], {}, body),
        request_id="r",
        now=CREATED,
    )
    answer = translate_response(prep, 200, fixture_bytes("cohere/embed/response.json"))
    data = orjson.loads(answer.body)["data"]
    floats = fixture_json("cohere/embed/response.json")["embeddings"]["float"]
    decoded = [
        list(struct.unpack(f"<{len(v)}f", base64.b64decode(d["embedding"])))
        for d, v in zip(data, floats, strict=True)
    ]
    assert decoded == [pytest.approx(v, rel=1e-6) for v in floats]
    assert answer.usage is not None and answer.usage.prompt_tokens == 19


@pytest.mark.parametrize(("reason", "status"), [("ERROR", 502), ("TIMEOUT", 504)])
def test_failed_generation_is_an_error_not_an_answer(reason, status) -> None:
    inbound = Inbound("POST", "gw", "/v1/chat/completions", [], {}, orjson.dumps(chat(USER)))
    prep = prepare(cohere_route(), inbound, request_id="r", now=CREATED)
    raw = fixture_json("cohere/chat/response.json")
    raw["finish_reason"] = reason
    with pytest.raises(GatewayError) as err:
        translate_response(prep, 200, orjson.dumps(raw))
    assert err.value.status == status
    assert err.value.message.startswith("the cohere generation ")
    assert err.value.message.endswith(f"(finish_reason {reason})")


# --- response ------------------------------------------------------------------------------------


def reply(content: list[dict[str, Any]] | None = None, finish: str = "COMPLETE", **message: Any) -> dict:
    msg: dict[str, Any] = {"role": "assistant", **message}
    if content is not None:
        msg["content"] = content
    return {
        "id": "5f2c-1",
        "message": msg,
        "finish_reason": finish,
        "usage": {
            "billed_units": {"input_tokens": 3, "output_tokens": 2},
            "tokens": {"input_tokens": 30, "output_tokens": 2},
        },
    }


@pytest.mark.parametrize(
    ("finish", "expected"),
    [
        ("COMPLETE", "stop"),
        ("STOP_SEQUENCE", "stop"),
        ("MAX_TOKENS", "length"),
        ("TOOL_CALL", "tool_calls"),
        ("NEW", "stop"),
    ],
)
def test_finish_reasons(finish, expected) -> None:
    out = CHAT.parse_response(reply([{"type": "text", "text": "x"}], finish), make_ctx())
    assert out["choices"][0]["finish_reason"] == expected
    assert_chat_completion(out)


def test_text_parts_are_joined_and_tool_plan_is_kept_out() -> None:
    call = {"id": "now_1", "type": "function", "function": {"name": "now"}}
    out = CHAT.parse_response(
        reply(
            [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "world."}],
            "TOOL_CALL",
            tool_plan="I will call now.",
            tool_calls=[call],
        ),
        make_ctx(),
    )
    message = out["choices"][0]["message"]
    assert message["content"] == "Hello, world."
    assert message["tool_calls"] == [
        {"id": "now_1", "type": "function", "function": {"name": "now", "arguments": "{}"}}
    ]
    assert "I will call now." not in orjson.dumps(out).decode()
    assert_chat_completion(out)


# Usage follows the bill (Kong's rule): usage.billed_units (v2; meta.billed_units on v1 and the embed
# endpoints) when present, else usage.tokens, count by count. Each body is first read by the SDK's type.
@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (  # both: the billed units win, real cached tokens are not set beside them
            {
                "billed_units": {"input_tokens": 7.0, "output_tokens": 3.0},
                "tokens": {"input_tokens": 70, "output_tokens": 4},
                "cached_tokens": 64,
            },
            {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        ),
        (  # only real tokens: they are used, with their cached tokens
            {"tokens": {"input_tokens": 70, "output_tokens": 4}, "cached_tokens": 64},
            {
                "prompt_tokens": 70,
                "completion_tokens": 4,
                "total_tokens": 74,
                "prompt_tokens_details": {"cached_tokens": 64},
            },
        ),
        (  # billed input only: output falls back to the real count
            {"billed_units": {"input_tokens": 7}, "tokens": {"input_tokens": 70, "output_tokens": 4}},
            {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11},
        ),
    ],
)
def test_v2_usage_comes_from_billed_units(usage, expected) -> None:
    body = reply([{"type": "text", "text": "x"}])
    body["usage"] = usage
    V2ChatResponse.model_validate(body)
    assert CHAT.parse_response(body, make_ctx())["usage"] == expected


def test_v2_cost_is_computed_from_billed_units() -> None:
    inbound = Inbound("POST", "gw", "/v1/chat/completions", [], {}, orjson.dumps(chat(USER)))
    route = cohere_route(input_cost=2.5, output_cost=10.0)
    prep = prepare(route, inbound, request_id="r", now=CREATED)
    answer = translate_response(prep, 200, fixture_bytes("cohere/chat/response.json"))
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.estimated) == (
        23,
        24,
        False,
    )
    assert cost(answer.usage, route.model.options) == pytest.approx((23 * 2.5 + 24 * 10.0) / 1e6)


def test_v1_usage_comes_from_meta_billed_units() -> None:
    v1 = {
        "response_id": "r1",
        "text": "Hi.",
        "generation_id": "g1",
        "finish_reason": "COMPLETE",
        "meta": {
            "api_version": {"version": "1"},
            "billed_units": {"input_tokens": 5, "output_tokens": 2},
            "tokens": {"input_tokens": 66, "output_tokens": 2},
        },
    }
    NonStreamedChatResponse.model_validate(v1)
    usage = SPEC.native_usage(v1)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (5, 2, 7)
    v1["meta"] = {"tokens": {"input_tokens": 66, "output_tokens": 2}}
    usage = SPEC.native_usage(v1)
    assert (usage.prompt_tokens, usage.completion_tokens) == (66, 2)


def test_stream_usage_comes_from_billed_units() -> None:
    raw = fixture_bytes("cohere/chat/stream.sse")
    end = next(e for e in raw.split(b"\n\n") if b"message-end" in e)
    _STREAM_EVENT.validate_python(orjson.loads(end.split(b"data: ", 1)[1]))
    only_tokens = raw.replace(b'"billed_units":{"input_tokens":23,"output_tokens":24},', b"")
    assert only_tokens != raw
    _, translator = run_stream(only_tokens)
    assert (translator.usage.prompt_tokens, translator.usage.completion_tokens) == (518, 24)
    _, translator = run_stream(raw)
    assert (translator.usage.prompt_tokens, translator.usage.completion_tokens) == (23, 24)


def test_answer_without_token_counts_is_estimated_not_zero() -> None:
    inbound = Inbound("POST", "gw", "/v1/chat/completions", [], {}, orjson.dumps(chat(USER)))
    prep = prepare(cohere_route(), inbound, request_id="r", now=CREATED)
    for usage in (None, {}, {"billed_units": {"search_units": 1}}, {"tokens": {}}):
        body = reply([{"type": "text", "text": "Hello there"}])
        if usage is None:
            del body["usage"]
        else:
            body["usage"] = usage
        answer = translate_response(prep, 200, orjson.dumps(body))
        assert answer.usage.estimated is True, usage
        assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (1, 3), usage
        # The client gets the estimate too (unmarked): OpenAI clients expect a usage object.
        assert orjson.loads(answer.body)["usage"] == {
            "prompt_tokens": 1,
            "completion_tokens": 3,
            "total_tokens": 4,
        }


def test_completions_never_report_tool_calls() -> None:
    out = COMPLETIONS.parse_response(
        reply([{"type": "text", "text": "x"}], "TOOL_CALL"), make_ctx("llm/v1/completions")
    )
    assert out["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("body", [{}, [], {"message": "text"}, {"text": "v1 style"}])
def test_untranslatable_chat_body_raises(body) -> None:
    with pytest.raises(ValueError):
        CHAT.parse_response(body, make_ctx())


def test_native_usage() -> None:
    usage = SPEC.native_usage(fixture_json("cohere/tool_results/response.json"))
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens, usage.cached_tokens) == (
        118,
        19,
        137,
        0,
    )
    assert SPEC.native_usage({"message": "x"}) is None


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("401.json", "invalid api token"),
        ("429.json", "You are using a Trial key, which is limited to 20 API calls / minute."),
        ("400.json", "invalid request: messages must contain at least one user message"),
        ("500.json", "internal server error, this has been reported to our developers."),
    ],
)
def test_errors(fixture, message) -> None:
    info = SPEC.parse_error(400, fixture_json(f"cohere/errors/{fixture}"))
    assert info.message.startswith(message)
    assert (info.type, info.code, info.param) == (None, None, None)


@pytest.mark.parametrize("body", [{"error": "x"}, {"message": ""}, {"message": 5}, ["x"]])
def test_error_of_another_shape_is_left_to_the_pipeline(body) -> None:
    assert SPEC.parse_error(500, body) is None


# --- streams -------------------------------------------------------------------------------------


def run_stream(
    raw: bytes, pieces: list[bytes] | None = None, *, route_type: str = "llm/v1/chat", **ctx_args: Any
):
    route = CHAT if route_type == "llm/v1/chat" else COMPLETIONS
    translator = route.new_stream(make_ctx(route_type, stream=True, **ctx_args))
    return drive(translator, pieces if pieces is not None else [raw]), translator


STREAMS = [
    "chat/stream.sse",
    "stream_tools/stream.sse",
    "stream_thinking/stream.sse",
    "stream_error/stream.sse",
]
_STREAM_EVENT = TypeAdapter(V2ChatStreamResponse)
# message-start announces the empty message on the wire; the SDK's type declares only its role.
_MESSAGE_START_WIRE = frozenset(
    f"body.delta.message.{k}" for k in ("content", "tool_plan", "tool_calls", "citations")
)


@pytest.mark.parametrize("name", [*STREAMS, "completions/stream.sse"])
def test_stream_fixtures_are_real_cohere_events(name: str) -> None:
    parser = SSEParser()
    events = parser.feed(fixture_bytes(f"cohere/{name}")) + parser.finish()
    assert events[-1].data == "[DONE]"
    for event in events[:-1]:
        data = orjson.loads(event.data)
        assert data["type"] == event.event
        _no_unknown_fields(_STREAM_EVENT.validate_python(data), allowed=_MESSAGE_START_WIRE)


def test_plain_text_stream() -> None:
    raw, translator = run_stream(fixture_bytes("cohere/chat/stream.sse"))
    out = frames(raw)
    assert_chunks_valid(out)
    assert deltas(out) == [
        {"role": "assistant", "content": ""},
        {"content": "Mount Logan, in Yukon's"},
        {"content": " Saint Elias Mountains,"},
        {"content": " is Canada's tallest peak"},
        {"content": " at 5,959 metres."},
        {},
    ]
    assert out[-2]["choices"][0]["finish_reason"] == "stop"
    assert {c["id"] for c in out[:-1]} == {"c14c80c3-18eb-4519-9460-6c92edd8cfb4"}
    assert {c["model"] for c in out[:-1]} == {MODEL}
    assert {c["created"] for c in out[:-1]} == {CREATED}
    assert not any("usage" in c for c in out[:-1])
    assert (translator.usage.prompt_tokens, translator.usage.completion_tokens) == (23, 24)
    assert (
        translator.text
        == "Mount Logan, in Yukon's Saint Elias Mountains, is Canada's tallest peak at 5,959 metres."
    )


def test_usage_chunk_only_when_asked() -> None:
    out = frames(run_stream(fixture_bytes("cohere/chat/stream.sse"), include_usage=True)[0])
    assert_chunks_valid(out)
    assert out[-2] == {
        "id": "c14c80c3-18eb-4519-9460-6c92edd8cfb4",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "choices": [],
        "usage": {"prompt_tokens": 23, "completion_tokens": 24, "total_tokens": 47},
    }


def test_parallel_tool_call_stream() -> None:
    raw, translator = run_stream(fixture_bytes("cohere/stream_tools/stream.sse"))
    out = frames(raw)
    assert_chunks_valid(out)
    calls = [d["tool_calls"][0] for d in deltas(out) if "tool_calls" in d]
    assert calls == [
        {
            "index": 0,
            "id": "get_weather_6k3y0tpw2a8d",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        },
        {"index": 0, "function": {"arguments": '{"location":'}},
        {"index": 0, "function": {"arguments": '"Toronto, Canada",'}},
        {"index": 0, "function": {"arguments": '"unit":"celsius"}'}},
        {
            "index": 1,
            "id": "get_weather_q1n7m4c9zr5e",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        },
        {"index": 1, "function": {"arguments": '{"location":"Vancouver, Canada",'}},
        {"index": 1, "function": {"arguments": '"unit":"celsius"}'}},
        {
            "index": 2,
            "id": "get_local_time_8w2j5r0x7n1c",
            "type": "function",
            "function": {"name": "get_local_time", "arguments": ""},
        },
        {"index": 2, "function": {"arguments": "{}"}},
    ]
    assert out[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert "look up" not in raw.decode()  # the tool plan is not content
    assert translator.text == ""
    assert translator.usage.completion_tokens == 71  # billed, not the 104 real tokens


def test_thinking_stream() -> None:
    raw, _ = run_stream(fixture_bytes("cohere/stream_thinking/stream.sse"), include_usage=True)
    out = frames(raw)
    assert_chunks_valid(out)
    assert deltas(out) == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "1001 = 7 \u00d7 143, and 143 = 11 \u00d7 13."},
        {"reasoning_content": " So 1001 is composite."},
        {"content": "No. 1001 = 7 \u00d7 11 \u00d7 13,"},
        {"content": " so it is not prime."},
        {},
    ]
    assert out[-2]["usage"] == {"prompt_tokens": 9, "completion_tokens": 21, "total_tokens": 30}


def test_error_at_message_end_becomes_an_error_frame() -> None:
    raw, translator = run_stream(fixture_bytes("cohere/stream_error/stream.sse"))
    out = frames(raw)
    assert out[-1] == "[DONE]"
    assert out[-2] == {
        "error": {
            "message": "internal server error, this has been reported to our developers",
            "type": "api_error",
            "param": None,
            "code": "upstream_error",
        }
    }
    assert deltas(out)[-1] == {"content": "Mount Logan is"}
    assert translator.usage.prompt_tokens == 23


def test_timeout_without_error_text() -> None:
    raw = (
        b'event: message-start\ndata: {"id":"x1","type":"message-start","delta":{"message":{"role":"assistant"}}}\n\n'
        b'event: message-end\ndata: {"type":"message-end","delta":{"finish_reason":"TIMEOUT"}}\n\n'
    )
    out = frames(run_stream(raw)[0])
    assert out[-2]["error"]["message"] == "the cohere generation timed out (finish_reason TIMEOUT)"


def test_stream_cut_short_ends_with_an_error_frame() -> None:
    raw = fixture_bytes("cohere/chat/stream.sse")
    out = frames(run_stream(raw[: raw.index(b"event: message-end")])[0])
    assert out[-1] == "[DONE]"
    assert out[-2]["error"]["message"] == "the cohere stream ended before the response was complete"


def test_completions_stream() -> None:
    raw, _ = run_stream(
        fixture_bytes("cohere/completions/stream.sse"),
        route_type="llm/v1/completions",
        model="command-r7b-12-2024",
        include_usage=True,
    )
    out = frames(raw)
    assert out[-1] == "[DONE]"
    for chunk in out[:-1]:
        probe = copy.deepcopy(chunk)
        for choice in probe["choices"]:
            choice["finish_reason"] = choice["finish_reason"] or "stop"
        assert Completion.model_validate(probe).model_dump(exclude_unset=True) == probe
    assert "".join(c["choices"][0]["text"] for c in out[:-2]) == (
        "Granite shoulders rise\nsnow holds the old silence close\nthe river keeps time"
    )
    assert out[-3]["choices"][0]["finish_reason"] == "stop"
    assert out[-2]["usage"] == {"prompt_tokens": 9, "completion_tokens": 17, "total_tokens": 26}


def test_completions_stream_of_tool_calls_finishes_with_stop() -> None:
    out = frames(
        run_stream(fixture_bytes("cohere/stream_tools/stream.sse"), route_type="llm/v1/completions")[0]
    )
    assert out[-2]["choices"][0]["finish_reason"] == "stop"


ALL_STREAMS = [*STREAMS, "completions/stream.sse"]


def _reference(name: str) -> bytes:
    route_type = "llm/v1/completions" if name.startswith("completions") else "llm/v1/chat"
    return run_stream(fixture_bytes(f"cohere/{name}"), route_type=route_type, include_usage=True)[0]


@pytest.mark.parametrize("name", ALL_STREAMS)
def test_every_byte_split_gives_the_same_output(name: str) -> None:
    raw = fixture_bytes(f"cohere/{name}")
    expected = _reference(name)
    route_type = "llm/v1/completions" if name.startswith("completions") else "llm/v1/chat"
    for cut in range(1, len(raw)):
        got = run_stream(raw, [raw[:cut], raw[cut:]], route_type=route_type, include_usage=True)[0]
        assert got == expected, f"split at byte {cut}"
    one_by_one = [raw[i : i + 1] for i in range(len(raw))]
    assert run_stream(raw, one_by_one, route_type=route_type, include_usage=True)[0] == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_splits_give_the_same_output(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(ALL_STREAMS))
    raw = fixture_bytes(f"cohere/{name}")
    cuts = sorted(data.draw(st.sets(st.integers(1, len(raw) - 1), max_size=40)))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    route_type = "llm/v1/completions" if name.startswith("completions") else "llm/v1/chat"
    assert run_stream(raw, pieces, route_type=route_type, include_usage=True)[0] == _reference(name)


def test_fixture_folders_are_all_covered() -> None:
    folders = {p.name for p in (FIXTURES / "cohere").iterdir() if p.is_dir()}
    covered = {*CHAT_CASES, "completions", "embed", "errors"} | {Path(s).parent.name for s in STREAMS}
    assert folders == covered


def test_the_request_oracle_rejects_wrong_names() -> None:
    good = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}
    assert_valid_cohere_chat(good)
    for bad in (
        {**good, "top_p": 0.5},
        {**good, "stop": ["x"]},
        {**good, "tool_choice": "required"},
        {
            **good,
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                    ],
                    "tool_plans": "x",
                }
            ],
        },
        {**good, "messages": [{"role": "user", "content": [{"type": "image", "url": "x"}]}]},
        {**good, "tools": [{"type": "function", "function": {"name": "f"}}]},
        {**good, "response_format": {"type": "json_schema", "json_schema": {}}},
    ):
        with pytest.raises((ValueError, AssertionError)):
            assert_valid_cohere_chat(bad)


def test_a_stop_sequence_stop_is_said_to_ingress_clients_only() -> None:
    answer = fixture_json("cohere/stop_sequence/response.json")
    ingress = dataclasses.replace(make_ctx(), extensions=True)
    assert CHAT.parse_response(answer, ingress)["choices"][0][STOP_SEQUENCE_KEY] == ""
    raw = fixture_bytes("cohere/chat/stream.sse").replace(
        b'"finish_reason":"COMPLETE"', b'"finish_reason":"STOP_SEQUENCE"'
    )
    out = frames(drive(CHAT.new_stream(dataclasses.replace(make_ctx(stream=True), extensions=True)), [raw]))
    [finish] = finishing_choices(out)
    assert (finish["finish_reason"], finish[STOP_SEQUENCE_KEY]) == ("stop", "")
    plain = frames(drive(CHAT.new_stream(make_ctx(stream=True)), [raw]))
    assert not any(STOP_SEQUENCE_KEY in c for c in choices(plain))
