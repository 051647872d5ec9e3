"""The Hugging Face provider: OpenAI requests -> TGI / router chat and feature-extraction requests,
answers and streams back.

Oracles: chat requests validate against a strict model made from huggingface_hub's generated TGI
types (``ChatCompletionInput``: unknown top-level keys rejected, ``top_k`` being the one extension
TGI-compatible servers read), embeddings requests against ``FeatureExtractionInput``; fixture answers
parse with huggingface_hub's output types; every OpenAI answer parses with openai's models without
losing a field.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import FIXTURES, fixture_bytes, fixture_json
from huggingface_hub.inference._generated.types.chat_completion import (
    ChatCompletionInput,
    ChatCompletionOutput,
    ChatCompletionStreamOutput,
)
from huggingface_hub.inference._generated.types.feature_extraction import FeatureExtractionInput
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel, ConfigDict, TypeAdapter, create_model
from streams import assert_chunks_valid, deltas, drive, finishing_choices, frames

from transforms.config import ModelOptions, Route
from transforms.errors import GatewayError
from transforms.pipeline import prepare, translate_response
from transforms.registry import SPECS
from transforms.stream import SSEParser
from transforms.types import STOP_SEQUENCE_KEY, CallContext, Inbound
from transforms.usage import request_text

SPEC = SPECS["huggingface"]
CHAT = SPEC.routes["llm/v1/chat"]
COMPLETIONS = SPEC.routes["llm/v1/completions"]
EMBEDDINGS = SPEC.routes["llm/v1/embeddings"]
CREATED = 1767225600
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
CHAT_PATH = f"/models/{MODEL}/v1/chat/completions"


def make_ctx(
    route_type: str = "llm/v1/chat",
    *,
    model: str = MODEL,
    stream: bool = False,
    include_usage: bool = False,
    options: ModelOptions | None = None,
    body: Any = None,
) -> CallContext:
    return CallContext(
        route_name="hf",
        route_type=route_type,
        provider="huggingface",
        model=model,
        options=options or ModelOptions(),
        stream=stream,
        request_id="req-123",
        created=CREATED,
        include_usage=include_usage,
        prompt_text=request_text(body),
    )


# --- oracles -------------------------------------------------------------------------------------


def _strict_model(cls: type, name: str, required: set[str], extra: dict[str, Any]) -> type[BaseModel]:
    hints = typing.get_type_hints(cls)
    fields = {k: (v, ... if k in required else None) for k, v in hints.items()}
    fields.update(extra)
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)


# TGI-compatible servers (and the router's providers) also read top_k, which the spec omits.
_CHAT_REQUEST = _strict_model(ChatCompletionInput, "HFChatRequest", {"messages"}, {"top_k": (int, None)})
_EMBED_REQUEST = _strict_model(FeatureExtractionInput, "HFFeatureExtraction", {"inputs"}, {})
_CHAT_OUTPUT = TypeAdapter(ChatCompletionOutput)
_STREAM_OUTPUT = TypeAdapter(ChatCompletionStreamOutput)


def assert_valid_hf_chat(body: dict[str, Any]) -> None:
    _CHAT_REQUEST.model_validate(body)


def assert_chat_completion(out: dict[str, Any]) -> None:
    assert ChatCompletion.model_validate(out).model_dump(exclude_unset=True) == out


def assert_completion(out: dict[str, Any]) -> None:
    assert Completion.model_validate(out).model_dump(exclude_unset=True) == out


def build(body: dict[str, Any], **ctx_args: Any) -> dict[str, Any]:
    ctx = make_ctx(**ctx_args)
    req = CHAT.build_request(copy.deepcopy(body), ctx)
    assert (req.path, req.method, req.query) == (f"/models/{ctx.model}/v1/chat/completions", "POST", [])
    assert_valid_hf_chat(req.body)
    return req.body


def chat(messages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": messages, **fields}


USER = [{"role": "user", "content": "Hi"}]


def refused(body: dict[str, Any], route: Any, route_type: str) -> str:
    with pytest.raises(GatewayError) as err:
        route.build_request(copy.deepcopy(body), make_ctx(route_type))
    assert err.value.status == 400
    return err.value.message


# --- fixtures as tables --------------------------------------------------------------------------

CHAT_CASES = ["chat", "tools"]


@pytest.mark.parametrize("case", CHAT_CASES)
def test_chat_request_fixture(case: str) -> None:
    client = fixture_json(f"huggingface/{case}/client.json")
    assert build(client, model=client["model"]) == fixture_json(f"huggingface/{case}/request.json")


@pytest.mark.parametrize("case", CHAT_CASES)
def test_chat_response_fixture(case: str) -> None:
    raw = fixture_json(f"huggingface/{case}/response.json")
    _CHAT_OUTPUT.validate_python(raw)
    out = CHAT.parse_response(raw, make_ctx(model=fixture_json(f"huggingface/{case}/client.json")["model"]))
    assert out == fixture_json(f"huggingface/{case}/expected.json")
    assert_chat_completion(out)


def test_completions_fixture() -> None:
    client = fixture_json("huggingface/completions/client.json")
    ctx = make_ctx("llm/v1/completions", model=client["model"])
    req = COMPLETIONS.build_request(copy.deepcopy(client), ctx)
    assert req.path == "/models/mistralai/Mistral-7B-Instruct-v0.3/v1/chat/completions"
    assert req.body == fixture_json("huggingface/completions/request.json")
    assert_valid_hf_chat(req.body)
    raw = fixture_json("huggingface/completions/response.json")
    _CHAT_OUTPUT.validate_python(raw)
    out = COMPLETIONS.parse_response(raw, ctx)
    assert out == fixture_json("huggingface/completions/expected.json")
    assert_completion(out)


def test_embeddings_fixture() -> None:
    client = fixture_json("huggingface/embeddings/client.json")
    ctx = make_ctx("llm/v1/embeddings", model=client["model"], body=client)
    req = EMBEDDINGS.build_request(copy.deepcopy(client), ctx)
    assert (req.path, req.method) == (
        "/models/sentence-transformers/all-MiniLM-L6-v2/pipeline/feature-extraction",
        "POST",
    )
    assert req.body == fixture_json("huggingface/embeddings/request.json")
    _EMBED_REQUEST.model_validate(req.body)
    out = EMBEDDINGS.parse_response(fixture_json("huggingface/embeddings/response.json"), ctx)
    assert out["usage"].pop("_ai_proxy_estimated") is True  # marked for statistics, stripped by the pipeline
    assert out == fixture_json("huggingface/embeddings/expected.json")
    # 68 characters of input, about four per token: 17 (the pipeline reports no count).
    assert out["usage"] == {"prompt_tokens": 17, "total_tokens": 17}
    assert CreateEmbeddingResponse.model_validate(out).model_dump(exclude_unset=True) == out


# --- request -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "headers"),
    [
        ({}, {}),
        ({"huggingface": {}}, {}),
        ({"huggingface": {"use_cache": False}}, {"x-use-cache": "false"}),
        ({"huggingface": {"wait_for_model": True}}, {"x-wait-for-model": "true"}),
        (
            {"huggingface": {"use_cache": True, "wait_for_model": False}},
            {"x-use-cache": "true", "x-wait-for-model": "false"},
        ),
    ],
)
def test_options_become_inference_api_headers(options, headers) -> None:
    opts = ModelOptions.model_validate(options)
    for route, route_type, body in (
        (CHAT, "llm/v1/chat", chat(USER)),
        (COMPLETIONS, "llm/v1/completions", {"prompt": "Hi"}),
        (EMBEDDINGS, "llm/v1/embeddings", {"input": "Hi"}),
    ):
        assert route.build_request(body, make_ctx(route_type, options=opts)).headers == headers


def test_model_in_path_and_body() -> None:
    body = build(chat(USER, model="something-else"))
    assert body["model"] == MODEL
    req = CHAT.build_request(chat(USER), make_ctx(model="org/model name+v1"))
    assert req.path == "/models/org/model%20name%2Bv1/v1/chat/completions"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"max_completion_tokens": 50}, {"max_tokens": 50}),
        ({"max_completion_tokens": 50, "max_tokens": 10}, {"max_tokens": 50}),
        ({"max_tokens": 10}, {"max_tokens": 10}),
        ({"stop": "END"}, {"stop": ["END"]}),
        ({"stop": ["a", "b"]}, {"stop": ["a", "b"]}),
        ({"top_k": 40, "top_p": 0.9, "temperature": 1.5}, {"top_k": 40, "top_p": 0.9, "temperature": 1.5}),
        ({"n": 2, "logprobs": True, "top_logprobs": 3}, {"n": 2, "logprobs": True, "top_logprobs": 3}),
        (
            {"seed": 1, "presence_penalty": -1, "frequency_penalty": 2},
            {"seed": 1, "presence_penalty": -1, "frequency_penalty": 2},
        ),
        ({"response_format": {"type": "json_object"}}, {"response_format": {"type": "json_object"}}),
        ({"temperature": None, "stream": False, "stream_options": {"include_usage": True}}, {}),
        ({"user": "u-1", "store": True, "metadata": {"k": "v"}, "service_tier": "auto"}, {}),
    ],
)
def test_openai_fields_pass_under_tgi_names(fields, expected) -> None:
    body = build(chat(USER, **fields))
    assert {k: v for k, v in body.items() if k not in ("model", "messages")} == expected


def test_other_openai_fields_reach_the_routers_providers_unchanged() -> None:
    # Not in TGI's request type, but meaningful to the OpenAI-compatible providers behind the router.
    body = chat(USER, parallel_tool_calls=False, reasoning_effort="low")
    sent = CHAT.build_request(copy.deepcopy(body), make_ctx()).body
    assert (sent["parallel_tool_calls"], sent["reasoning_effort"]) == (False, "low")


def test_messages_pass_through_unchanged() -> None:
    messages = fixture_json("huggingface/chat/client.json")["messages"] + [
        {"role": "assistant", "content": "Ottawa."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "And this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/parliament.jpg"}},
            ],
        },
    ]
    assert build(chat(messages))["messages"] == messages


def test_stream_asks_for_usage() -> None:
    assert build(chat(USER), stream=True)["stream_options"] == {"include_usage": True}
    kept = build(chat(USER, stream_options={"include_usage": False}), stream=True)
    assert kept["stream"] is True and kept["stream_options"] == {"include_usage": True}


def test_completions_request_and_refusals() -> None:
    req = COMPLETIONS.build_request(
        {"prompt": ["Say hi"], "stop": ".", "n": 1, "echo": False, "best_of": 1},
        make_ctx("llm/v1/completions", stream=True),
    )
    assert req.body == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hi"}],
        "stop": ["."],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert_valid_hf_chat(req.body)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"prompt": ["a", "b"]},
            "'prompt' other than one text prompt is not supported by the huggingface provider",
        ),
        (
            {"prompt": [1, 2]},
            "'prompt' other than one text prompt is not supported by the huggingface provider",
        ),
        ({"prompt": "a", "echo": True}, "'echo' is not supported by the huggingface provider"),
        ({"prompt": "a", "suffix": "x"}, "'suffix' is not supported by the huggingface provider"),
        ({"prompt": "a", "best_of": 2}, "'best_of' above 1 is not supported by the huggingface provider"),
        ({"prompt": "a", "logprobs": 0}, "'logprobs' is not supported by the huggingface provider"),
        ({"prompt": "a", "n": 3}, "'n' above 1 is not supported by the huggingface provider"),
    ],
)
def test_completions_refusals(fields, message) -> None:
    assert refused(fields, COMPLETIONS, "llm/v1/completions") == message


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"input": [1, 2]}, "'input' as token ids is not supported by the huggingface provider"),
        ({"input": "a", "dimensions": 64}, "'dimensions' is not supported by the huggingface provider"),
    ],
)
def test_embeddings_refusals(fields, message) -> None:
    assert refused(fields, EMBEDDINGS, "llm/v1/embeddings") == message


def test_single_embedding_input_is_still_a_list() -> None:
    req = EMBEDDINGS.build_request(
        {"input": "hello", "encoding_format": "base64"}, make_ctx("llm/v1/embeddings")
    )
    assert req.body == {"inputs": ["hello"]}
    _EMBED_REQUEST.model_validate(req.body)


# --- pipeline ------------------------------------------------------------------------------------


def hf_route(route_type: str = "llm/v1/chat", **options: Any) -> Route:
    return Route.model_validate(
        {
            "name": "hf",
            "route_type": route_type,
            "auth": {"header_name": "Authorization", "header_value": "Bearer hf_configuredToken123"},
            "model": {"provider": "huggingface", "name": MODEL, "options": options},
        }
    )


def test_pipeline_default_urls() -> None:
    inbound = Inbound("POST", "gw", "/v1/chat/completions", [], {}, orjson.dumps(chat(USER)))
    prep = prepare(hf_route(top_k=20), inbound, request_id="r", now=CREATED)
    assert prep.upstream.url == f"https://router.huggingface.co/hf-inference{CHAT_PATH}"
    assert prep.upstream.set_headers["authorization"] == "Bearer hf_configuredToken123"
    assert orjson.loads(prep.upstream.body)["top_k"] == 20
    emb = Inbound("POST", "gw", "/v1/embeddings", [], {}, b'{"input": "x"}')
    prep = prepare(hf_route("llm/v1/embeddings"), emb, request_id="r", now=CREATED)
    assert prep.upstream.url == (
        f"https://router.huggingface.co/hf-inference/models/{MODEL}/pipeline/feature-extraction"
    )


def test_pipeline_upstream_url_with_and_without_path() -> None:
    inbound = Inbound("POST", "gw", "/v1/chat/completions", [], {}, orjson.dumps(chat(USER)))
    tgi = prepare(
        hf_route(upstream_url="http://tgi.internal:8080/v1/chat/completions"),
        inbound,
        request_id="r",
        now=CREATED,
    )
    assert tgi.upstream.url == "http://tgi.internal:8080/v1/chat/completions"
    bare = prepare(hf_route(upstream_url="http://127.0.0.1:9999"), inbound, request_id="r", now=CREATED)
    assert bare.upstream.url == f"http://127.0.0.1:9999{CHAT_PATH}"


def test_pipeline_errors_and_statistics() -> None:
    inbound = Inbound("POST", "gw", "/v1/chat/completions", [], {}, orjson.dumps(chat(USER)))
    prep = prepare(hf_route(), inbound, request_id="r", now=CREATED)
    answer = translate_response(prep, 503, fixture_bytes("huggingface/errors/503.json"))
    assert orjson.loads(answer.body) == {
        "error": {
            "message": f"Model {MODEL} is currently loading (estimated time 20 s)",
            "type": "api_error",
            "param": None,
            "code": "model_loading",
        }
    }
    ok = translate_response(prep, 200, fixture_bytes("huggingface/chat/response.json"))
    assert ok.usage is not None and (ok.usage.prompt_tokens, ok.usage.completion_tokens) == (46, 15)
    assert ok.response_model == MODEL
    assert orjson.loads(ok.body)["id"] == "chatcmpl-r"


def test_pipeline_embeddings_usage_is_an_estimate_of_the_input() -> None:
    inbound = Inbound("POST", "gw", "/v1/embeddings", [], {}, b'{"input": ["abcdefgh", "ijkl"]}')
    prep = prepare(hf_route("llm/v1/embeddings"), inbound, request_id="r", now=CREATED)
    answer = translate_response(prep, 200, b"[[0.5, 0.25], [0.125, 1.0]]")
    body = orjson.loads(answer.body)
    assert [d["embedding"] for d in body["data"]] == [[0.5, 0.25], [0.125, 1.0]]
    assert body["usage"] == {"prompt_tokens": 4, "total_tokens": 4}  # "abcdefgh ijkl": 13 chars


# --- response ------------------------------------------------------------------------------------


def tgi_reply(message: dict[str, Any], finish: str | None = "stop", **extra: Any) -> dict[str, Any]:
    return {
        "object": "chat.completion",
        "id": "",
        "created": 1767225601,
        "model": MODEL,
        "system_fingerprint": "3.3.4-sha-9f38d93",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        **extra,
    }


@pytest.mark.parametrize(
    ("finish", "expected"),
    [
        ("stop", "stop"),
        ("eos_token", "stop"),
        ("stop_sequence", "stop"),
        ("length", "length"),
        ("content_filter", "content_filter"),
        ("something_new", "stop"),
        (None, "stop"),
    ],
)
def test_finish_reasons(finish, expected) -> None:
    out = CHAT.parse_response(tgi_reply({"role": "assistant", "content": "x"}, finish), make_ctx())
    assert out["choices"][0]["finish_reason"] == expected
    assert_chat_completion(out)


@pytest.mark.parametrize("finish", ["stop", "eos_token", "tool_calls"])
def test_a_tool_calling_turn_finishes_with_tool_calls(finish) -> None:
    call = {
        "id": "0",
        "type": "function",
        "function": {"name": "f", "arguments": {"a": 1}, "description": None},
    }
    out = CHAT.parse_response(tgi_reply({"role": "assistant", "tool_calls": [call]}, finish), make_ctx())
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"] == [
        {"id": "0", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
    ]
    assert_chat_completion(out)


def test_reasoning_and_null_tool_call_id_are_normalised() -> None:
    message = {"role": "assistant", "content": "42", "reasoning": "6 x 7", "tool_call_id": None}
    out = CHAT.parse_response(tgi_reply(message), make_ctx())
    assert out["choices"][0]["message"] == {
        "role": "assistant",
        "content": "42",
        "reasoning_content": "6 x 7",
    }
    assert_chat_completion(out)


def test_upstream_id_and_model_are_kept() -> None:
    out = CHAT.parse_response(
        tgi_reply({"role": "assistant", "content": "x"}, id="chatcmpl-abc", model="tgi"), make_ctx()
    )
    assert (out["id"], out["model"], out["created"]) == ("chatcmpl-abc", "tgi", 1767225601)
    out = CHAT.parse_response(
        tgi_reply({"role": "assistant", "content": "x"}, model="", created=0), make_ctx()
    )
    assert (out["model"], out["created"]) == (MODEL, CREATED)


def test_completions_with_several_choices_and_tool_calls() -> None:
    body = tgi_reply({"role": "assistant", "content": "a"}, "eos_token")
    body["choices"].append(
        {"index": 1, "message": {"role": "assistant", "content": None}, "finish_reason": "tool_calls"}
    )
    out = COMPLETIONS.parse_response(body, make_ctx("llm/v1/completions"))
    assert [(c["index"], c["text"], c["finish_reason"]) for c in out["choices"]] == [
        (0, "a", "stop"),
        (1, "", "stop"),
    ]
    assert_completion(out)


@pytest.mark.parametrize("body", [{}, [], {"choices": "x"}, [{"generated_text": "legacy"}]])
def test_untranslatable_chat_body_raises(body) -> None:
    with pytest.raises(ValueError):
        CHAT.parse_response(body, make_ctx())


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ([0.5, 0.25], [[0.5, 0.25]]),
        ([[1, 2], [3, 4]], [[1, 2], [3, 4]]),
    ],
)
def test_vector_shapes(body, expected) -> None:
    out = EMBEDDINGS.parse_response(body, make_ctx("llm/v1/embeddings"))
    assert [d["embedding"] for d in out["data"]] == expected
    assert [d["index"] for d in out["data"]] == list(range(len(expected)))


@pytest.mark.parametrize("body", [[], {}, [[[0.1, 0.2], [0.3, 0.4]]], ["x"], {"error": "x"}])
def test_untranslatable_vectors_raise(body) -> None:
    with pytest.raises(ValueError):
        EMBEDDINGS.parse_response(body, make_ctx("llm/v1/embeddings"))


def test_native_usage() -> None:
    usage = SPEC.native_usage(fixture_json("huggingface/chat/response.json"))
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (46, 15, 61)


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "message", "openai_type", "code", "param"),
    [
        ("401.json", "Invalid credentials in Authorization header", None, None, None),
        (
            "503.json",
            f"Model {MODEL} is currently loading (estimated time 20 s)",
            None,
            "model_loading",
            None,
        ),
        (
            "422.json",
            "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 8192. Given: 8100 `inputs` tokens and 200 `max_new_tokens`",
            None,
            "validation",
            None,
        ),
        (
            "400.json",
            "Error in `parameters.top_k`: ensure this value is greater than or equal to 1",
            None,
            None,
            None,
        ),
        (
            "404.json",
            "The requested model 'meta-llama/Llama-3.1-8B-Instruct:novita' does not exist",
            "invalid_request_error",
            "model_not_found",
            "model",
        ),
    ],
)
def test_errors(fixture, message, openai_type, code, param) -> None:
    info = SPEC.parse_error(400, fixture_json(f"huggingface/errors/{fixture}"))
    assert (info.message, info.type, info.code, info.param) == (message, openai_type, code, param)


@pytest.mark.parametrize("body", [{"detail": "x"}, {"error": ""}, {"error": [1]}, ["x"], "text"])
def test_error_of_another_shape_is_left_to_the_pipeline(body) -> None:
    assert SPEC.parse_error(500, body) is None


# --- streams -------------------------------------------------------------------------------------


def run_stream(
    raw: bytes, pieces: list[bytes] | None = None, *, route_type: str = "llm/v1/chat", **ctx_args: Any
):
    route = CHAT if route_type == "llm/v1/chat" else COMPLETIONS
    translator = route.new_stream(make_ctx(route_type, stream=True, **ctx_args))
    return drive(translator, pieces if pieces is not None else [raw]), translator


def test_stream_fixtures_are_real_server_events() -> None:
    parser = SSEParser()
    tgi = fixture_bytes("huggingface/chat/stream.sse") + fixture_bytes("huggingface/stream_error/stream.sse")
    for event in parser.feed(tgi) + parser.finish():
        data = orjson.loads(event.data) if event.data != "[DONE]" else None
        if data is not None and "error" not in data:
            _STREAM_OUTPUT.validate_python(data)  # TGI's own chunk type
    parser = SSEParser()
    for event in parser.feed(fixture_bytes("huggingface/stream_tools/stream.sse")) + parser.finish():
        if event.data != "[DONE]":
            ChatCompletionChunk.model_validate_json(event.data)  # a router provider's OpenAI chunks


def test_plain_text_stream_gets_one_id_and_hides_usage() -> None:
    raw, translator = run_stream(fixture_bytes("huggingface/chat/stream.sse"))
    out = frames(raw)
    assert_chunks_valid(out)
    assert [d.get("content") for d in deltas(out)] == [
        "The",
        " capital",
        " of Canada",
        " is Ottawa,",
        " in the province",
        " of Ontario.",
        "",
    ]
    assert {c["id"] for c in out[:-1]} == {"chatcmpl-req-123"}
    assert {c["model"] for c in out[:-1]} == {MODEL}
    assert {c["created"] for c in out[:-1]} == {1767225601}
    assert not any("usage" in c for c in out[:-1])
    assert out[-2]["choices"][0]["finish_reason"] == "stop"
    assert out[-2]["system_fingerprint"] == "3.3.4-sha-9f38d93"
    assert (translator.usage.prompt_tokens, translator.usage.completion_tokens) == (46, 15)
    assert translator.response_model == MODEL
    assert translator.text == "The capital of Canada is Ottawa, in the province of Ontario."


def test_usage_attached_to_the_last_chunk_becomes_a_chunk_of_its_own() -> None:
    out = frames(run_stream(fixture_bytes("huggingface/chat/stream.sse"), include_usage=True)[0])
    assert_chunks_valid(out)
    assert out[-3]["choices"][0]["finish_reason"] == "stop"
    assert "usage" not in out[-3]
    assert out[-2] == {
        "id": "chatcmpl-req-123",
        "object": "chat.completion.chunk",
        "created": 1767225601,
        "model": MODEL,
        "choices": [],
        "usage": {"prompt_tokens": 46, "completion_tokens": 15, "total_tokens": 61},
    }


def test_router_tool_call_stream_passes_through() -> None:
    raw, translator = run_stream(
        fixture_bytes("huggingface/stream_tools/stream.sse"),
        model="Qwen/Qwen2.5-7B-Instruct",
        include_usage=True,
    )
    out = frames(raw)
    assert_chunks_valid(out)
    calls = [d["tool_calls"][0] for d in deltas(out) if "tool_calls" in d]
    assert calls == [
        {
            "index": 0,
            "id": "call_9f2b61d4c8e1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        },
        {"index": 0, "function": {"arguments": '{"location":'}},
        {"index": 0, "function": {"arguments": ' "Ottawa, Canada",'}},
        {"index": 0, "function": {"arguments": ' "unit": "celsius"}'}},
        {
            "index": 1,
            "id": "call_47ab0e93f5d2",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        },
        {"index": 1, "function": {"arguments": '{"location": "Montreal, Canada"}'}},
    ]
    assert {c["id"] for c in out[:-1]} == {"chatcmpl-b3f1c9e2a7d44e6f"}
    assert out[-3]["choices"][0]["finish_reason"] == "tool_calls"
    assert out[-2]["usage"] == {"prompt_tokens": 221, "completion_tokens": 52, "total_tokens": 273}
    assert translator.usage.total_tokens == 273


def test_tgi_tool_turn_ending_with_stop_finishes_with_tool_calls() -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        body = {
            "object": "chat.completion.chunk",
            "id": "",
            "created": 1767225601,
            "model": MODEL,
            "system_fingerprint": "3.3.4-sha-9f38d93",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        return b"data: " + orjson.dumps(body) + b"\n\n"

    call = {"index": 0, "id": "0", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    raw = (
        chunk({"role": "assistant", "tool_calls": [call]})
        + chunk({"role": "assistant"}, "eos_token")
        + b"data: [DONE]\n\n"
    )
    out = frames(run_stream(raw)[0])
    assert out[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_error_event_becomes_an_error_frame() -> None:
    raw, translator = run_stream(fixture_bytes("huggingface/stream_error/stream.sse"))
    out = frames(raw)
    assert out[-1] == "[DONE]"
    assert out[-2] == {
        "error": {
            "message": "Request failed during generation: Server error: Out of available cache blocks: asked 1024, only 172 free blocks",
            "type": "api_error",
            "param": None,
            "code": "generation",
        }
    }
    assert deltas(out) == [{"role": "assistant", "content": "The capital"}]
    assert translator.usage is None  # the gateway estimates from the text


def test_stream_cut_short_ends_with_an_error_frame() -> None:
    raw = fixture_bytes("huggingface/chat/stream.sse")
    out = frames(run_stream(raw[: raw.index(b"data: [DONE]")])[0])
    assert out[-1] == "[DONE]"
    assert out[-2]["error"]["message"] == "the huggingface stream ended before the response was complete"


def test_completions_stream() -> None:
    raw, translator = run_stream(
        fixture_bytes("huggingface/chat/stream.sse"), route_type="llm/v1/completions", include_usage=True
    )
    out = frames(raw)
    assert out[-1] == "[DONE]"
    for chunk in out[:-1]:
        probe = copy.deepcopy(chunk)
        for choice in probe["choices"]:
            choice["finish_reason"] = choice["finish_reason"] or "stop"
        assert Completion.model_validate(probe).model_dump(exclude_unset=True) == probe
        assert chunk["id"] == "cmpl-req-123" and chunk["model"] == MODEL
    assert (
        "".join(c["choices"][0]["text"] for c in out[:-2])
        == "The capital of Canada is Ottawa, in the province of Ontario."
    )
    assert out[-3]["choices"][0]["finish_reason"] == "stop"
    assert out[-2]["usage"] == {"prompt_tokens": 46, "completion_tokens": 15, "total_tokens": 61}
    assert translator.text == "The capital of Canada is Ottawa, in the province of Ontario."


STREAMS = ["chat/stream.sse", "stream_tools/stream.sse", "stream_error/stream.sse"]
CASES = [(name, "llm/v1/chat") for name in STREAMS] + [("chat/stream.sse", "llm/v1/completions")]


@pytest.mark.parametrize(("name", "route_type"), CASES)
def test_every_byte_split_gives_the_same_output(name: str, route_type: str) -> None:
    raw = fixture_bytes(f"huggingface/{name}")
    expected = run_stream(raw, route_type=route_type, include_usage=True)[0]
    for cut in range(1, len(raw)):
        got = run_stream(raw, [raw[:cut], raw[cut:]], route_type=route_type, include_usage=True)[0]
        assert got == expected, f"split at byte {cut}"
    one_by_one = [raw[i : i + 1] for i in range(len(raw))]
    assert run_stream(raw, one_by_one, route_type=route_type, include_usage=True)[0] == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_splits_give_the_same_output(data: st.DataObject) -> None:
    name, route_type = data.draw(st.sampled_from(CASES))
    raw = fixture_bytes(f"huggingface/{name}")
    cuts = sorted(data.draw(st.sets(st.integers(1, len(raw) - 1), max_size=40)))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    expected = run_stream(raw, route_type=route_type, include_usage=True)[0]
    assert run_stream(raw, pieces, route_type=route_type, include_usage=True)[0] == expected


def test_fixture_folders_are_all_covered() -> None:
    folders = {p.name for p in (FIXTURES / "huggingface").iterdir() if p.is_dir()}
    covered = {*CHAT_CASES, "completions", "embeddings", "errors"} | {Path(s).parent.name for s in STREAMS}
    assert folders == covered


def test_the_request_oracle_rejects_wrong_names() -> None:
    good = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}
    assert_valid_hf_chat(good)
    for bad in (
        {**good, "max_completion_tokens": 5},
        {**good, "stop": "x"},
        {**good, "max_new_tokens": 5},
        {**good, "messages": [{"role": "user", "content": [{"type": "image", "url": "x"}]}]},
    ):
        with pytest.raises(ValueError):
            assert_valid_hf_chat(bad)


def test_a_stop_sequence_stop_is_said_to_ingress_clients_only() -> None:
    """TGI says a stop sequence ended the text, not which: "" under STOP_SEQUENCE_KEY, for an
    ingress adapter to tell from the request; OpenAI clients get a plain stop."""
    answer = fixture_json("huggingface/chat/response.json")
    answer["choices"][0]["finish_reason"] = "stop_sequence"
    ingress = dataclasses.replace(make_ctx(), extensions=True)
    assert CHAT.parse_response(answer, ingress)["choices"][0][STOP_SEQUENCE_KEY] == ""
    plain = CHAT.parse_response(answer, make_ctx())["choices"][0]
    assert plain["finish_reason"] == "stop" and STOP_SEQUENCE_KEY not in plain
    raw = fixture_bytes("huggingface/chat/stream.sse").replace(
        b'"finish_reason":"stop"', b'"finish_reason":"stop_sequence"'
    )
    out = frames(drive(CHAT.new_stream(dataclasses.replace(make_ctx(stream=True), extensions=True)), [raw]))
    [finish] = finishing_choices(out)
    assert (finish["finish_reason"], finish[STOP_SEQUENCE_KEY]) == ("stop", "")
