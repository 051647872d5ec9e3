"""The Gemini provider (AI Studio and Vertex AI): OpenAI requests -> exact generateContent /
embedding requests, answers and streams back.

Oracles: every request built loads into the google-genai SDK's own types (camelCase REST JSON,
unknown keys rejected, bytes checked as base64), every fixture response parses as the SDK's
GenerateContentResponse, and every OpenAI answer parses with openai's models without losing a field.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import FIXTURES, fixture_bytes, fixture_json
from google.genai import types as genai
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion
from streams import assert_chunks_valid, deltas, drive, frames

from transforms.config import ModelOptions, Route
from transforms.errors import GatewayError
from transforms.pipeline import prepare, translate_response
from transforms.providers import gemini
from transforms.registry import SPECS
from transforms.stream import SSEParser
from transforms.types import WEB_SEARCH_KEY, WEB_SEARCH_REQUIRED, CallContext, Inbound
from transforms.usage import request_text

SPEC = SPECS["gemini"]
CHAT = SPEC.routes["llm/v1/chat"]
COMPLETIONS = SPEC.routes["llm/v1/completions"]
EMBEDDINGS = SPEC.routes["llm/v1/embeddings"]
CREATED = 1767225600
REQUEST_ID = "9f2c4e"
MODEL = "gemini-2.5-flash"
VERTEX = {
    "api_endpoint": "us-central1-aiplatform.googleapis.com",
    "project_id": "my-project",
    "location_id": "us-central1",
}
VERTEX_PREFIX = "/v1/projects/my-project/locations/us-central1/publishers/google/models"
SIGNATURE = fixture_json("gemini/tools/response.json")["candidates"][0]["content"]["parts"][0][
    "thoughtSignature"
]


def make_ctx(
    route_type: str = "llm/v1/chat",
    *,
    stream: bool = False,
    include_usage: bool = False,
    model: str = MODEL,
    vertex: bool = False,
    prompt_text: str = "",
) -> CallContext:
    options = ModelOptions(gemini=VERTEX) if vertex else ModelOptions()
    return CallContext(
        route_name="gemini",
        route_type=route_type,
        provider="gemini",
        model=model,
        options=options,
        stream=stream,
        request_id=REQUEST_ID,
        created=CREATED,
        include_usage=include_usage,
        prompt_text=prompt_text,
    )


# --- oracles -------------------------------------------------------------------------------------

_GENERATE_KEYS = {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig"}


# Values under these keys are the client's own data (argument names, property names...).
_FREE_KEYS = {"args", "response", "default", "example"}


def assert_camel_case(value: Any) -> None:
    """The REST JSON names fields in camelCase (the SDK's models would accept snake_case too)."""
    if isinstance(value, list):
        for item in value:
            assert_camel_case(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            assert "_" not in key, f"{key} is not camelCase"
            if key == "properties":
                for schema in item.values():
                    assert_camel_case(schema)
            elif key not in _FREE_KEYS:
                assert_camel_case(item)


def _load(model: type, value: Any) -> None:
    # JSON mode: camelCase aliases, extra keys forbidden, bytes fields checked as base64; the SDK
    # only warns about an unknown enum value, which the oracle treats as the error it is upstream.
    assert_camel_case(value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.model_validate_json(orjson.dumps(value))


def assert_valid_generate(body: dict[str, Any]) -> None:
    assert set(body) <= _GENERATE_KEYS, set(body) - _GENERATE_KEYS
    assert body["contents"], "Gemini needs at least one content"
    for content in body["contents"]:
        assert content["role"] in ("user", "model")
        assert content["parts"], "Gemini rejects a content without parts"
        _load(genai.Content, content)
    if "systemInstruction" in body:
        _load(genai.Content, body["systemInstruction"])
    for tool in body.get("tools", ()):
        _load(genai.Tool, tool)
    if "toolConfig" in body:
        _load(genai.ToolConfig, body["toolConfig"])
    if "generationConfig" in body:
        _load(genai.GenerationConfig, body["generationConfig"])


def assert_valid_embed(body: dict[str, Any], path: str) -> None:
    if path.endswith(":embedContent"):
        assert set(body) <= {"content", "outputDimensionality"}
        _load(genai.Content, body["content"])
    elif path.endswith(":batchEmbedContents"):
        assert set(body) == {"requests"}
        for request in body["requests"]:
            assert set(request) <= {"model", "content", "outputDimensionality"}
            assert request["model"].startswith("models/")
            _load(genai.Content, request["content"])
    else:
        assert path.endswith(":predict")
        assert set(body) <= {"instances", "parameters"}
        assert all(set(i) == {"content"} and isinstance(i["content"], str) for i in body["instances"])
        assert set(body.get("parameters", {})) <= {"outputDimensionality"}


def assert_chat_completion(out: dict[str, Any]) -> None:
    assert ChatCompletion.model_validate(out).model_dump(exclude_unset=True) == out


def assert_completion(out: dict[str, Any]) -> None:
    assert Completion.model_validate(out).model_dump(exclude_unset=True) == out


def assert_embeddings(out: dict[str, Any]) -> None:
    assert CreateEmbeddingResponse.model_validate(out).model_dump(exclude_unset=True) == out


def build(body: dict[str, Any], **ctx_args: Any) -> dict[str, Any]:
    req = CHAT.build_request(copy.deepcopy(body), make_ctx(**ctx_args))
    assert req.method == "POST"
    assert_valid_generate(req.body)
    return req.body


def chat(messages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": messages, **fields}


USER = [{"role": "user", "content": "Hi"}]
USER_CONTENT = {"role": "user", "parts": [{"text": "Hi"}]}


def refused(body: dict[str, Any], route: Any = CHAT, route_type: str = "llm/v1/chat", **ctx_args: Any) -> str:
    with pytest.raises(GatewayError) as err:
        route.build_request(copy.deepcopy(body), make_ctx(route_type, **ctx_args))
    assert err.value.status == 400
    return err.value.message


# --- fixtures as tables --------------------------------------------------------------------------

CHAT_CASES = [
    "chat",
    "tools",
    "tool_results",
    "images",
    "json_schema",
    "thinking",
    "safety",
    "blocked",
    "max_tokens",
    "candidates",
    "grounding",
]


@pytest.mark.parametrize("case", CHAT_CASES)
def test_chat_request_fixture(case: str) -> None:
    client = fixture_json(f"gemini/{case}/client.json")
    req = CHAT.build_request(client, make_ctx(model=client["model"]))
    assert req.path == f"/v1beta/models/{client['model']}:generateContent"
    assert req.query == [] and req.headers == {}
    assert req.body == fixture_json(f"gemini/{case}/request.json")
    assert_valid_generate(req.body)


@pytest.mark.parametrize("case", [*CHAT_CASES, "completions", "vertex_chat"])
def test_response_fixtures_are_real_gemini_answers(case: str) -> None:
    genai.GenerateContentResponse.model_validate_json(fixture_bytes(f"gemini/{case}/response.json"))


@pytest.mark.parametrize("case", CHAT_CASES)
def test_chat_response_fixture(case: str) -> None:
    out = CHAT.parse_response(fixture_json(f"gemini/{case}/response.json"), make_ctx())
    assert out == fixture_json(f"gemini/{case}/expected.json")
    assert_chat_completion(out)


def test_vertex_chat_fixture() -> None:
    client = fixture_json("gemini/vertex_chat/client.json")
    ctx = make_ctx(model="gemini-2.5-pro", vertex=True)
    req = CHAT.build_request(client, ctx)
    assert req.path == f"{VERTEX_PREFIX}/gemini-2.5-pro:generateContent"
    assert req.body == fixture_json("gemini/vertex_chat/request.json")
    assert_valid_generate(req.body)
    out = CHAT.parse_response(fixture_json("gemini/vertex_chat/response.json"), ctx)
    assert out == fixture_json("gemini/vertex_chat/expected.json")
    assert out["usage"] == {
        "prompt_tokens": 13,
        "completion_tokens": 108,  # 8 answer + 100 thinking tokens
        "total_tokens": 121,
        "completion_tokens_details": {"reasoning_tokens": 100},
    }
    assert_chat_completion(out)


def test_completions_fixture() -> None:
    ctx = make_ctx("llm/v1/completions")
    req = COMPLETIONS.build_request(fixture_json("gemini/completions/client.json"), ctx)
    assert req.path == f"/v1beta/models/{MODEL}:generateContent"
    assert req.body == fixture_json("gemini/completions/request.json")
    assert_valid_generate(req.body)
    out = COMPLETIONS.parse_response(fixture_json("gemini/completions/response.json"), ctx)
    assert out == fixture_json("gemini/completions/expected.json")
    assert out["choices"][0]["text"] == "This is a test."
    assert_completion(out)


@pytest.mark.parametrize(
    ("case", "vertex", "path"),
    [
        ("embed", False, "/v1beta/models/gemini-embedding-001:embedContent"),
        ("batch_embed", False, "/v1beta/models/gemini-embedding-001:batchEmbedContents"),
        ("vertex_embed", True, f"{VERTEX_PREFIX}/text-embedding-005:predict"),
    ],
)
def test_embeddings_fixtures(case: str, vertex: bool, path: str) -> None:
    client = fixture_json(f"gemini/{case}/client.json")
    ctx = make_ctx(
        "llm/v1/embeddings", model=client["model"], vertex=vertex, prompt_text=request_text(client)
    )
    req = EMBEDDINGS.build_request(copy.deepcopy(client), ctx)
    assert req.path == path
    assert req.body == fixture_json(f"gemini/{case}/request.json")
    assert_valid_embed(req.body, req.path)
    raw = fixture_json(f"gemini/{case}/response.json")
    for vector in raw.get("embeddings") or [raw.get("embedding")] if not vertex else []:
        _load(genai.ContentEmbedding, vector)
    out = EMBEDDINGS.parse_response(raw, ctx)
    # AI Studio tells no token count: the estimate is marked for statistics (the pipeline strips it).
    assert out["usage"].pop("_ai_proxy_estimated", False) is not vertex
    assert out == fixture_json(f"gemini/{case}/expected.json")
    assert_embeddings(out)


def test_embedding_token_counts() -> None:
    # Vertex tells the tokens per text; AI Studio tells none, so they are estimated from the text.
    vertex = fixture_json("gemini/vertex_embed/expected.json")
    assert vertex["usage"] == {"prompt_tokens": 11, "total_tokens": 11}
    single = fixture_json("gemini/embed/expected.json")
    assert single["usage"] == {"prompt_tokens": 5, "total_tokens": 5}  # ceil(19 characters / 4)
    reported = {"embedding": {"values": [0.5]}, "usageMetadata": {"promptTokenCount": 3}}
    out = EMBEDDINGS.parse_response(reported, make_ctx("llm/v1/embeddings", prompt_text="x" * 40))
    assert out["usage"] == {"prompt_tokens": 3, "total_tokens": 3}  # reported: not an estimate


# --- request: where it goes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "vertex", "stream", "path", "query"),
    [
        (MODEL, False, False, f"/v1beta/models/{MODEL}:generateContent", []),
        (MODEL, False, True, f"/v1beta/models/{MODEL}:streamGenerateContent", [("alt", "sse")]),
        ("models/gemini-2.5-pro", False, False, "/v1beta/models/gemini-2.5-pro:generateContent", []),
        ("gemini-2.5-pro", True, False, f"{VERTEX_PREFIX}/gemini-2.5-pro:generateContent", []),
        (
            "gemini-2.5-pro",
            True,
            True,
            f"{VERTEX_PREFIX}/gemini-2.5-pro:streamGenerateContent",
            [("alt", "sse")],
        ),
        ("tuned/../x y", False, False, "/v1beta/models/tuned%2F..%2Fx%20y:generateContent", []),
    ],
)
def test_paths(model: str, vertex: bool, stream: bool, path: str, query: list) -> None:
    req = CHAT.build_request(chat(USER), make_ctx(model=model, vertex=vertex, stream=stream))
    assert (req.path, req.query) == (path, query)


def test_base_urls() -> None:
    assert gemini._base_url(ModelOptions(), MODEL, {}) == "https://generativelanguage.googleapis.com"
    assert gemini._base_url(ModelOptions(gemini=VERTEX), MODEL, {}) == (
        "https://us-central1-aiplatform.googleapis.com"
    )
    local = {**VERTEX, "api_endpoint": "http://127.0.0.1:8080"}
    assert gemini._base_url(ModelOptions(gemini=local), MODEL, {}) == "http://127.0.0.1:8080"


def test_one_text_in_a_list_uses_embed_content() -> None:
    req = EMBEDDINGS.build_request(
        {"input": ["solo"]}, make_ctx("llm/v1/embeddings", model="models/text-embedding-004")
    )
    assert req.path == "/v1beta/models/text-embedding-004:embedContent"
    assert req.body == {"content": {"parts": [{"text": "solo"}]}}


def test_batch_embedding_with_dimensions() -> None:
    req = EMBEDDINGS.build_request(
        {"input": ["a", "b"], "dimensions": 256, "encoding_format": "base64", "user": "u-1"},
        make_ctx("llm/v1/embeddings", model="gemini-embedding-001"),
    )
    assert req.body == {
        "requests": [
            {
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": "a"}]},
                "outputDimensionality": 256,
            },
            {
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": "b"}]},
                "outputDimensionality": 256,
            },
        ]
    }
    assert_valid_embed(req.body, req.path)


# --- request: generation config ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "config"),
    [
        ({}, None),
        ({"max_tokens": 100}, {"maxOutputTokens": 100}),
        ({"max_tokens": 100, "max_completion_tokens": 50}, {"maxOutputTokens": 50}),
        ({"temperature": 0}, {"temperature": 0}),
        ({"temperature": 1.5, "top_p": 0.5, "top_k": 40}, {"temperature": 1.5, "topP": 0.5, "topK": 40}),
        ({"stop": "END"}, {"stopSequences": ["END"]}),
        ({"stop": ["a", "b"]}, {"stopSequences": ["a", "b"]}),
        ({"stop": []}, None),
        ({"n": 1}, None),
        ({"n": 3}, {"candidateCount": 3}),
        ({"seed": 42}, {"seed": 42}),
        ({"presence_penalty": 0, "frequency_penalty": 0}, None),  # some models reject any penalty
        (
            {"presence_penalty": -0.5, "frequency_penalty": 1.2},
            {"presencePenalty": -0.5, "frequencyPenalty": 1.2},
        ),
        ({"response_format": {"type": "text"}}, None),
        ({"response_format": {"type": "json_object"}}, {"responseMimeType": "application/json"}),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            {"responseMimeType": "application/json"},
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "object"}},
                }
            },
            {"responseMimeType": "application/json"},  # "any object": Gemini refuses an empty OBJECT
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "n", "schema": {"type": "integer"}},
                }
            },
            {"responseMimeType": "application/json", "responseSchema": {"type": "INTEGER"}},
        ),
        # Neutral values of fields Gemini cannot express change nothing.
        ({"logprobs": False, "top_logprobs": 0, "logit_bias": {}, "parallel_tool_calls": True}, None),
        ({"user": "u-1", "store": False, "metadata": {"a": "b"}, "service_tier": "auto"}, None),
        ({"parallel_tool_calls": False}, None),  # without tools it means nothing
    ],
)
def test_generation_config(fields: dict[str, Any], config: dict[str, Any] | None) -> None:
    body = build(chat(USER, **fields))
    assert body.get("generationConfig") == config


def test_stream_flag_does_not_enter_the_body() -> None:
    assert build(chat(USER, stream=True, stream_options={"include_usage": True}), stream=True) == {
        "contents": [USER_CONTENT]
    }


# --- request: refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"logprobs": True}, "'logprobs' is not supported by the gemini provider"),
        ({"top_logprobs": 3}, "'top_logprobs' is not supported by the gemini provider"),
        ({"logit_bias": {"50256": -100}}, "'logit_bias' is not supported by the gemini provider"),
        (
            {"parallel_tool_calls": False, "tools": [{"type": "function", "function": {"name": "f"}}]},
            "'parallel_tool_calls' set to false is not supported by the gemini provider",
        ),
        ({"audio": {"voice": "alloy"}}, "'audio' is not supported by the gemini provider"),
        (
            {"modalities": ["text", "audio"]},
            "'modalities' other than ['text'] is not supported by the gemini provider",
        ),
        ({"functions": [{"name": "f"}]}, "'functions' is not supported by the gemini provider"),
        (
            {"prediction": {"type": "content", "content": "x"}},
            "'prediction' is not supported by the gemini provider",
        ),
    ],
)
def test_chat_refusals(fields: dict[str, Any], message: str) -> None:
    assert refused(chat(USER, **fields)) == message


def test_several_candidates_cannot_stream() -> None:
    message = refused(chat(USER, n=2, stream=True), stream=True)
    assert message == "'n' above 1 is not supported when streaming by the gemini provider"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"prompt": ["a", "b"]},
            "'prompt' other than one text prompt is not supported by the gemini provider",
        ),
        ({"prompt": [1, 2]}, "'prompt' other than one text prompt is not supported by the gemini provider"),
        ({"prompt": "x", "echo": True}, "'echo' is not supported by the gemini provider"),
        ({"prompt": "x", "best_of": 2}, "'best_of' above 1 is not supported by the gemini provider"),
        ({"prompt": "x", "suffix": "end"}, "'suffix' is not supported by the gemini provider"),
        ({"prompt": "x", "logprobs": 2}, "'logprobs' is not supported by the gemini provider"),
        ({"prompt": "x", "tools": []}, "'tools' is not supported by the gemini provider"),
    ],
)
def test_completions_refusals(fields: dict[str, Any], message: str) -> None:
    assert refused(fields, COMPLETIONS, "llm/v1/completions") == message


def test_completions_prompt_as_single_item_list() -> None:
    req = COMPLETIONS.build_request(
        {"prompt": ["Once"], "best_of": 1, "echo": False}, make_ctx("llm/v1/completions")
    )
    assert req.body == {"contents": [{"role": "user", "parts": [{"text": "Once"}]}]}


@pytest.mark.parametrize("value", [[1, 2, 3], [[1, 2], [3]]])
def test_embedding_token_ids_are_refused(value: Any) -> None:
    message = refused({"input": value}, EMBEDDINGS, "llm/v1/embeddings")
    assert message == "'input' as token ids is not supported by the gemini provider"


# --- request: messages ---------------------------------------------------------------------------


def test_system_and_developer_messages_become_the_system_instruction() -> None:
    body = build(
        chat(
            [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {
                    "role": "developer",
                    "content": [{"type": "text", "text": "Use French."}, {"type": "text", "text": ""}],
                },
            ]
        )
    )
    assert body == {
        "contents": [USER_CONTENT],
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Use French."}]},
    }


def test_consecutive_turns_of_one_role_are_merged_and_empty_ones_dropped() -> None:
    body = build(
        chat(
            [
                {"role": "user", "content": "One"},
                {"role": "user", "content": [{"type": "text", "text": "Two"}]},
                {"role": "assistant", "content": ""},
                {"role": "assistant", "content": "Three"},
                {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]},
                {"role": "user", "content": "Four"},
            ]
        )
    )
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "One"}, {"text": "Two"}]},
        {"role": "model", "parts": [{"text": "Three"}, {"text": "I can't."}]},
        {"role": "user", "parts": [{"text": "Four"}]},
    ]


def assistant_calls(*calls: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": i, "type": "function", "function": {"name": n, "arguments": a}} for i, n, a in calls
        ],
    }


def test_every_tool_call_is_sent_and_results_carry_the_function_name() -> None:
    body = build(
        chat(
            [
                *USER,
                assistant_calls(
                    ("call_a", "lookup", '{"q": "x"}'), ("call_b", "clock", ""), ("call_c", "lookup", "{}")
                ),
                {"role": "tool", "tool_call_id": "call_c", "content": "[1, 2]"},
                {"role": "tool", "tool_call_id": "call_a", "content": '{"hits": 3}'},
                {"role": "tool", "tool_call_id": "call_b", "content": "12:00"},
                {"role": "user", "content": "Thanks"},
            ]
        )
    )
    assert body["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {"functionCall": {"name": "lookup", "args": {"q": "x"}}},
                {"functionCall": {"name": "clock", "args": {}}},
                {"functionCall": {"name": "lookup", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "lookup", "response": {"result": "[1, 2]"}}},
                {"functionResponse": {"name": "lookup", "response": {"hits": 3}}},
                {"functionResponse": {"name": "clock", "response": {"result": "12:00"}}},
                {"text": "Thanks"},
            ],
        },
    ]


def test_thought_signature_rides_in_the_tool_call_id_and_comes_back() -> None:
    call_id = gemini.tool_call_id("r1", 0, SIGNATURE)
    assert call_id == f"call_r1_0__thought__{SIGNATURE}"
    assert gemini.tool_call_id("r1", 1, None) == "call_r1_1"
    assert gemini.tool_call_id("r1", 2, "") == "call_r1_2"
    body = build(chat([*USER, assistant_calls((call_id, "f", "{}"), ("call_r1_1__thought__", "f", "{}"))]))
    assert body["contents"][1]["parts"] == [
        {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": SIGNATURE},
        {"functionCall": {"name": "f", "args": {}}},
    ]


def test_legacy_function_message_names_its_function() -> None:
    body = build(chat([*USER, {"role": "function", "name": "clock", "content": "noon"}]))
    assert body["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "Hi"},
                {"functionResponse": {"name": "clock", "response": {"result": "noon"}}},
            ],
        }
    ]


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        (
            [*USER, {"role": "tool", "tool_call_id": "call_x", "content": "1"}],
            "messages[1]: tool_call_id 'call_x' matches no tool call of an earlier assistant message",
        ),
        ([*USER, {"role": "tool", "content": "1"}], "messages[1]: tool_call_id None matches no tool call"),
        ([*USER, {"role": "function", "content": "1"}], "messages[1]: a function message needs a name"),
        (
            [*USER, assistant_calls(("c", "f", "not json"))],
            "messages[1].tool_calls[0]: function arguments are not valid JSON",
        ),
        (
            [*USER, assistant_calls(("c", "f", "[1]"))],
            "messages[1].tool_calls[0]: function arguments must be a JSON object",
        ),
        (
            [*USER, {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}],
            "'messages[1].function_call' (legacy functions) is not supported by the gemini provider",
        ),
        (
            [{"role": "user", "content": [{"type": "video_url", "video_url": "x"}]}],
            "'messages[0].content[0]' of type 'video_url' is not supported by the gemini provider",
        ),
        (
            [
                {
                    "role": "system",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}],
                },
                *USER,
            ],
            "'messages[0].content[0]' of type 'image_url' is not supported by the gemini provider",
        ),
        (
            [{"role": "critic", "content": "x"}],
            "'messages[0].role' 'critic' is not supported by the gemini provider",
        ),
    ],
)
def test_message_errors(messages: list[dict[str, Any]], message: str) -> None:
    assert refused(chat(messages)).startswith(message)


# --- request: images, audio, files ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "part"),
    [
        ("data:image/webp;base64,UklGRg==", {"inlineData": {"mimeType": "image/webp", "data": "UklGRg=="}}),
        (
            "https://x.test/a/b.PNG",
            {"fileData": {"mimeType": "image/png", "fileUri": "https://x.test/a/b.PNG"}},
        ),
        (
            "http://x.test/p.jpeg#frag",
            {"fileData": {"mimeType": "image/jpeg", "fileUri": "http://x.test/p.jpeg#frag"}},
        ),
        (
            "gs://bucket/scan.heic",
            {"fileData": {"mimeType": "image/heic", "fileUri": "gs://bucket/scan.heic"}},
        ),
        (
            "https://x.test/i.webp?v=2",
            {"fileData": {"mimeType": "image/webp", "fileUri": "https://x.test/i.webp?v=2"}},
        ),
    ],
)
def test_images(url: str, part: dict[str, Any]) -> None:
    for image_url in (url, {"url": url}):
        content = [{"type": "image_url", "image_url": image_url}]
        assert build(chat([{"role": "user", "content": content}]))["contents"][0]["parts"] == [part]


@pytest.mark.parametrize(
    "url", ["https://x.test/photo", "https://x.test/image.php?id=3", "https://x.test/a.gif"]
)
def test_image_url_of_unknown_type_is_refused(url: str) -> None:
    content = [{"type": "image_url", "image_url": {"url": url}}]
    message = refused(chat([{"role": "user", "content": content}]))
    assert message.startswith("'messages[0].content[0].image_url' with a URL whose image type cannot be told")
    assert "(send the image as a data: URL) by the gemini provider" in message


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "ftp://x.test/a.png",
            "messages[0].content[0].image_url: only data:, http(s) and gs:// URLs are supported",
        ),
        ("data:image/png,abc", "image data URLs must be base64-encoded (data:<mime>;base64,...)"),
        ("data:image/png;base64,***", "image data URL does not hold valid base64"),
    ],
)
def test_bad_image_urls(url: str, message: str) -> None:
    content = [{"type": "image_url", "image_url": {"url": url}}]
    assert refused(chat([{"role": "user", "content": content}])) == message


def test_audio_and_inline_files() -> None:
    content = [
        {"type": "input_audio", "input_audio": {"data": "UklGRiQAAABXQVZF", "format": "wav"}},
        {"type": "input_audio", "input_audio": {"data": "SUQzBAAAAAAA", "format": "mp3"}},
        {"type": "file", "file": {"file_data": "data:text/csv;base64,YSxiCjEsMgo="}},
    ]
    assert build(chat([{"role": "user", "content": content}]))["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRiQAAABXQVZF"}},
        {"inlineData": {"mimeType": "audio/mp3", "data": "SUQzBAAAAAAA"}},
        {"inlineData": {"mimeType": "text/csv", "data": "YSxiCjEsMgo="}},
    ]
    by_id = [{"type": "file", "file": {"file_id": "file-abc"}}]
    assert refused(chat([{"role": "user", "content": by_id}])) == (
        "'messages[0].content[0].file' other than inline data (file_data) is not supported by the gemini provider"
    )


# --- request: tools ------------------------------------------------------------------------------


def function_tool(name: str = "f", parameters: Any = None, **extra: Any) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name, **extra}
    if parameters is not None:
        function["parameters"] = parameters
    return {"type": "function", "function": function}


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        ({"type": "function", "function": {"name": "f"}}, {"mode": "ANY", "allowedFunctionNames": ["f"]}),
    ],
)
def test_tool_choice(choice: Any, config: dict[str, Any]) -> None:
    body = build(chat(USER, tools=[function_tool()], tool_choice=choice))
    assert body["toolConfig"] == {"functionCallingConfig": config}
    assert body["tools"] == [{"functionDeclarations": [{"name": "f"}]}]


@pytest.mark.parametrize(
    "parameters",
    [
        None,
        {},
        {"type": "object"},
        {"type": "object", "properties": {}, "additionalProperties": False},
        {"properties": {}},
    ],
)
def test_parameterless_functions_get_no_parameters(parameters: Any) -> None:
    body = build(chat(USER, tools=[function_tool(parameters=parameters, description="Now.", strict=True)]))
    assert body["tools"] == [{"functionDeclarations": [{"name": "f", "description": "Now."}]}]


def test_parameters_without_type_are_an_object() -> None:
    body = build(chat(USER, tools=[function_tool(parameters={"properties": {"q": {"type": "string"}}})]))
    assert body["tools"][0]["functionDeclarations"][0]["parameters"] == {
        "type": "OBJECT",
        "properties": {"q": {"type": "STRING"}},
    }


# --- request: JSON Schema reduction --------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string"}, {"type": "STRING"}),
        ({"type": ["string", "null"]}, {"type": "STRING", "nullable": True}),
        ({"type": "null"}, {"type": "NULL"}),
        (
            {"anyOf": [{"type": "integer"}, {"type": "null"}], "description": "n"},
            {"type": "INTEGER", "description": "n", "nullable": True},
        ),
        (
            {"oneOf": [{"type": "integer"}, {"type": "string"}]},
            {"anyOf": [{"type": "INTEGER"}, {"type": "STRING"}]},
        ),
        (
            {"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]},
            {"anyOf": [{"type": "INTEGER"}, {"type": "STRING"}], "nullable": True},
        ),
        ({"const": "fixed"}, {"type": "STRING", "enum": ["fixed"]}),
        ({"type": "integer", "enum": [1, 2]}, {"type": "INTEGER", "enum": ["1", "2"]}),
        ({"enum": ["a", None]}, {"type": "STRING", "enum": ["a"], "nullable": True}),
        ({"type": "string", "format": "email"}, {"type": "STRING"}),
        ({"type": "string", "format": "date-time"}, {"type": "STRING", "format": "date-time"}),
        ({"type": "integer", "format": "int64"}, {"type": "INTEGER", "format": "int64"}),
        (
            {"type": "number", "format": "double", "exclusiveMinimum": 0, "multipleOf": 2},
            {"type": "NUMBER", "format": "double"},
        ),
        (
            {"type": "array", "items": {"type": "string"}, "uniqueItems": True, "maxItems": 3},
            {"type": "ARRAY", "items": {"type": "STRING"}, "maxItems": 3},
        ),
        ({"items": {"type": "number"}}, {"type": "ARRAY", "items": {"type": "NUMBER"}}),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "required": ["a", "ghost"],
                "additionalProperties": {"type": "string"},
            },
            {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}, "required": ["a"]},
        ),
        (
            # A property named like a keyword is a property, not a keyword.
            {"type": "object", "properties": {"default": {"type": "string"}, "$ref": {"type": "integer"}}},
            {"type": "OBJECT", "properties": {"default": {"type": "STRING"}, "$ref": {"type": "INTEGER"}}},
        ),
        (
            {"allOf": [{"$ref": "#/$defs/A"}], "description": "wrapped", "$defs": {"A": {"type": "boolean"}}},
            {"type": "BOOLEAN", "description": "wrapped"},
        ),
        (
            {
                "$ref": "#/definitions/A",
                "definitions": {"A": {"type": "string", "description": "old"}},
                "description": "new",
            },
            {"type": "STRING", "description": "new"},
        ),
        (
            {
                "type": "object",
                "properties": {"x": {"$ref": "#/$defs/P"}, "y": {"$ref": "#/$defs/P"}},
                "$defs": {"P": {"type": "number"}},
            },
            {"type": "OBJECT", "properties": {"x": {"type": "NUMBER"}, "y": {"type": "NUMBER"}}},
        ),
        (
            {
                "title": "T",
                "description": "d",
                "pattern": "^a",
                "minLength": 1,
                "maxLength": 3,
                "default": "a",
                "example": "ab",
                "type": "string",
                "$schema": "x",
                "$id": "y",
                "examples": ["a"],
                "readOnly": True,
            },
            {
                "title": "T",
                "description": "d",
                "pattern": "^a",
                "minLength": 1,
                "maxLength": 3,
                "default": "a",
                "example": "ab",
                "type": "STRING",
            },
        ),
        ({}, {}),
        (
            {"type": "object", "nullable": True, "properties": {"a": True}},
            {"type": "OBJECT", "nullable": True, "properties": {"a": {}}},
        ),
    ],
)
def test_schema_reduction(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    assert gemini.gemini_schema(schema, "s") == expected
    _load(genai.Schema, expected)


def test_response_schemas_keep_the_property_order() -> None:
    schema = {
        "type": "object",
        "properties": {
            "z": {"type": "string"},
            "a": {"type": "object", "properties": {"q": {"type": "string"}, "b": {"type": "string"}}},
        },
    }
    assert gemini.gemini_schema(schema, "s", ordered=True) == {
        "type": "OBJECT",
        "properties": {
            "z": {"type": "STRING"},
            "a": {
                "type": "OBJECT",
                "properties": {"q": {"type": "STRING"}, "b": {"type": "STRING"}},
                "propertyOrdering": ["q", "b"],
            },
        },
        "propertyOrdering": ["z", "a"],
    }
    assert "propertyOrdering" not in gemini.gemini_schema(schema, "s")


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            {
                "$ref": "#/$defs/Node",
                "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
            },
            "'tools[0].function.parameters' with the recursive $ref '#/$defs/Node' is not supported by the gemini provider",
        ),
        (
            {"type": "object", "properties": {"a": {"$ref": "https://example.com/a.json"}}},
            "'tools[0].function.parameters' with the $ref 'https://example.com/a.json' is not supported by the gemini provider",
        ),
        (
            {"type": "object", "properties": {"a": {"$ref": "#/$defs/Missing"}}},
            "'tools[0].function.parameters' with the $ref '#/$defs/Missing' is not supported by the gemini provider",
        ),
        (
            {"allOf": [{"type": "object"}, {"required": ["a"]}]},
            "'tools[0].function.parameters' with 'allOf' of several schemas is not supported by the gemini provider",
        ),
        (
            {"type": "object", "properties": {"a": {"type": ["string", "integer"]}}},
            "'tools[0].function.parameters' with several types ['string', 'integer'] is not supported by the gemini provider",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "date"}}},
            "'tools[0].function.parameters' with the type 'date' is not supported by the gemini provider",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "array", "items": [{"type": "string"}]}}},
            "'tools[0].function.parameters' with tuple 'items' is not supported by the gemini provider",
        ),
        (
            {"type": "object", "properties": {"a": "string"}},
            "tools[0].function.parameters: every schema in it must be an object",
        ),
        (
            {"type": "object", "properties": {"a": {"anyOf": []}}},
            "tools[0].function.parameters: 'anyOf' / 'oneOf' must be a non-empty list",
        ),
    ],
)
def test_schemas_gemini_cannot_take_are_refused(schema: dict[str, Any], message: str) -> None:
    assert refused(chat(USER, tools=[function_tool(parameters=schema)])) == message


def test_response_schema_errors_name_the_response_format() -> None:
    rf = {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": {"type": "object", "properties": {"a": {"$ref": "#/x"}}}},
    }
    message = refused(chat(USER, response_format=rf))
    assert (
        message
        == "'response_format.json_schema.schema' with the $ref '#/x' is not supported by the gemini provider"
    )


# --- pipeline: url, auth, errors, statistics -----------------------------------------------------


def gemini_route(
    route_type: str = "llm/v1/chat", auth: dict[str, Any] | None = None, **options: Any
) -> Route:
    return Route.model_validate(
        {
            "name": "gemini",
            "route_type": route_type,
            "auth": auth
            if auth is not None
            else {"header_name": "x-goog-api-key", "header_value": "AIza-secret-123"},
            "model": {"provider": "gemini", "options": options},
        }
    )


def inbound(
    body: dict[str, Any], path: str = "/v1/chat/completions", headers: dict[str, str] | None = None
) -> Inbound:
    return Inbound("POST", "gw", path, [], headers or {"authorization": "Bearer client"}, orjson.dumps(body))


def test_pipeline_ai_studio_with_a_header_key() -> None:
    prep = prepare(gemini_route(max_tokens=99, top_k=20), inbound(chat(USER)), request_id="r", now=CREATED)
    up = prep.upstream
    assert up.url == f"https://generativelanguage.googleapis.com/v1beta/models/{MODEL}:generateContent"
    assert up.set_headers["x-goog-api-key"] == "AIza-secret-123"
    assert "authorization" in up.remove_headers
    assert orjson.loads(up.body) == {
        "contents": [USER_CONTENT],
        "generationConfig": {"maxOutputTokens": 99, "topK": 20},
    }


def test_pipeline_stream_with_the_key_in_the_query() -> None:
    auth = {"param_name": "key", "param_value": "AIza-query-456", "param_location": "query"}
    prep = prepare(gemini_route(auth=auth), inbound(chat(USER, stream=True)), request_id="r", now=CREATED)
    assert prep.upstream.url == (
        f"https://generativelanguage.googleapis.com/v1beta/models/{MODEL}:streamGenerateContent?alt=sse&key=AIza-query-456"
    )
    assert prep.upstream.set_headers["accept-encoding"] == "identity"


def test_pipeline_vertex_with_a_service_account_token() -> None:
    route = gemini_route(
        auth={"gcp_use_service_account": True, "gcp_service_account_json": "{}"}, gemini=VERTEX
    )
    prep = prepare(
        route, inbound(chat(USER)), request_id="r", now=CREATED, credentials={"gcp_access_token": "ya29.tok"}
    )
    assert (
        prep.upstream.url
        == f"https://us-central1-aiplatform.googleapis.com{VERTEX_PREFIX}/{MODEL}:generateContent"
    )
    assert prep.upstream.set_headers["authorization"] == "Bearer ya29.tok"


def test_pipeline_upstream_url_with_and_without_a_path() -> None:
    plain = prepare(
        gemini_route(upstream_url="http://127.0.0.1:9"), inbound(chat(USER)), request_id="r", now=CREATED
    )
    assert plain.upstream.url == f"http://127.0.0.1:9/v1beta/models/{MODEL}:generateContent"
    fixed = gemini_route(upstream_url="http://127.0.0.1:9/custom/generate")
    streamed = prepare(fixed, inbound(chat(USER, stream=True)), request_id="r", now=CREATED)
    assert streamed.upstream.url == "http://127.0.0.1:9/custom/generate?alt=sse"


@pytest.mark.parametrize(
    ("fixture", "status", "message", "openai_type", "code"),
    [
        (
            "errors/400.json",
            400,
            "API key not valid. Please pass a valid API key.",
            "invalid_request_error",
            "INVALID_ARGUMENT",
        ),
        (
            "errors/429.json",
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            "rate_limit_error",
            "RESOURCE_EXHAUSTED",
        ),
        (
            "errors/403_vertex.json",
            403,
            "Permission 'aiplatform.endpoints.predict' denied on resource",
            "permission_error",
            "PERMISSION_DENIED",
        ),
        (
            "errors/503.json",
            503,
            "The model is overloaded. Please try again later.",
            "api_error",
            "UNAVAILABLE",
        ),
    ],
)
def test_errors_through_the_pipeline(
    fixture: str, status: int, message: str, openai_type: str, code: str
) -> None:
    prep = prepare(gemini_route(), inbound(chat(USER)), request_id="r", now=CREATED)
    answer = translate_response(prep, status, fixture_bytes(f"gemini/{fixture}"))
    error = orjson.loads(answer.body)["error"]
    assert error["message"].startswith(message)
    assert (error["type"], error["code"], error["param"]) == (openai_type, code, None)
    assert answer.status == status


@pytest.mark.parametrize("body", [{"message": "flat"}, {"error": "text"}, [], "oops", {"error": {"code": 5}}])
def test_error_of_another_shape_is_left_to_the_pipeline(body: Any) -> None:
    assert gemini.parse_error(500, body) is None


def test_pipeline_statistics_and_blocked_prompt_is_not_a_502() -> None:
    prep = prepare(gemini_route(), inbound(chat(USER)), request_id="r", now=CREATED)
    answer = translate_response(prep, 200, fixture_bytes("gemini/thinking/response.json"))
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.cached_tokens, answer.usage.completion_tokens) == (
        2060,
        2048,
        255,
    )
    assert answer.usage.reasoning_tokens == 244
    assert answer.response_model == "gemini-2.5-pro"
    blocked = translate_response(prep, 200, fixture_bytes("gemini/blocked/response.json"))
    assert blocked.status == 200
    assert orjson.loads(blocked.body)["choices"][0]["finish_reason"] == "content_filter"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"modelVersion": MODEL}, "no candidates in the gemini response"),
        ({"candidates": []}, "no candidates in the gemini response"),
        ({"candidates": {"a": 1}}, "'candidates' in the gemini response is not a list"),
        ([{"candidates": []}], "the gemini response is not a JSON object"),
    ],
)
def test_untranslatable_answers_are_a_502(body: Any, message: str) -> None:
    prep = prepare(gemini_route(), inbound(chat(USER)), request_id="r", now=CREATED)
    with pytest.raises(GatewayError) as err:
        translate_response(prep, 200, orjson.dumps(body))
    assert err.value.status == 502
    assert err.value.message == f"failed to translate the gemini://llm/v1/chat response: {message}"


def test_native_usage() -> None:
    usage = SPEC.native_usage(fixture_json("gemini/tools/response.json"))
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens, usage.reasoning_tokens) == (
        118,
        112,
        230,
        72,
    )
    assert SPEC.native_usage({"candidates": []}) is None
    assert SPEC.native_usage([1]) is None


# --- response ------------------------------------------------------------------------------------


def answer(parts: list[dict[str, Any]] | None, finish: str | None = "STOP", **extra: Any) -> dict[str, Any]:
    candidate: dict[str, Any] = {}
    if parts is not None:
        candidate["content"] = {"role": "model", "parts": parts}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], **extra}


@pytest.mark.parametrize(
    ("finish", "parts", "reason", "content"),
    [
        ("STOP", [{"text": "ok"}], "stop", "ok"),
        ("MAX_TOKENS", [{"text": "o"}], "length", "o"),
        ("SAFETY", None, "content_filter", None),
        ("RECITATION", [{"text": "partial"}], "content_filter", "partial"),
        ("BLOCKLIST", None, "content_filter", None),
        ("PROHIBITED_CONTENT", None, "content_filter", None),
        ("SPII", None, "content_filter", None),
        ("OTHER", [{"text": ""}], "stop", ""),
        ("MALFORMED_FUNCTION_CALL", None, "stop", ""),
        ("FINISH_REASON_UNSPECIFIED", [{"text": "x"}], "stop", "x"),
        (None, [{"text": "x"}], "stop", "x"),
        ("STOP", [{"functionCall": {"name": "f"}}], "tool_calls", None),
        ("MAX_TOKENS", [{"functionCall": {"name": "f", "args": {}}}], "length", None),
    ],
)
def test_finish_reasons(finish: str | None, parts: Any, reason: str, content: Any) -> None:
    out = CHAT.parse_response(answer(parts, finish), make_ctx())
    assert out["choices"][0]["finish_reason"] == reason
    assert out["choices"][0]["message"]["content"] == content
    assert_chat_completion(out)


def test_identity_fields_fall_back_to_the_call() -> None:
    out = CHAT.parse_response(answer([{"text": "a"}, {"text": "b"}]), make_ctx())
    assert (out["id"], out["model"], out["created"]) == (f"chatcmpl-{REQUEST_ID}", MODEL, CREATED)
    assert out["choices"][0]["message"]["content"] == "ab"
    assert "usage" not in out  # the pipeline estimates it
    done = COMPLETIONS.parse_response(answer([{"text": "a"}]), make_ctx("llm/v1/completions"))
    assert done["id"] == f"cmpl-{REQUEST_ID}"


def test_tool_call_arguments_and_ids_across_candidates() -> None:
    body = {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": "Sure."}, {"functionCall": {"name": "a"}}]},
                "finishReason": "STOP",
            },
            {
                "index": 1,
                "content": {
                    "role": "model",
                    "parts": [{"functionCall": {"name": "b", "args": {"x": [1, "é"]}}}],
                },
                "finishReason": "STOP",
            },
        ]
    }
    out = CHAT.parse_response(body, make_ctx())
    first, second = (c["message"] for c in out["choices"])
    assert first["content"] == "Sure."
    assert first["tool_calls"] == [
        {"id": f"call_{REQUEST_ID}_0", "type": "function", "function": {"name": "a", "arguments": "{}"}}
    ]
    assert second["tool_calls"] == [
        {
            "id": f"call_{REQUEST_ID}_1",
            "type": "function",
            "function": {"name": "b", "arguments": '{"x":[1,"é"]}'},
        }
    ]
    assert [c["index"] for c in out["choices"]] == [0, 1]
    assert_chat_completion(out)


def test_other_parts_carry_nothing() -> None:
    parts = [
        {"executableCode": {"language": "PYTHON", "code": "print(1)"}},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"text": "done"},
    ]
    out = CHAT.parse_response(answer(parts), make_ctx())
    assert out["choices"][0]["message"] == {"role": "assistant", "content": "done", "refusal": None}


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        (None, None),
        ({}, None),  # no counts at all: the caller estimates, never zeros
        ({"candidatesTokenCount": 5}, None),
        ({"promptTokenCount": 10}, (10, 0, 10, 0, 0)),  # Gemini leaves zero counts out
        ({"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15}, (10, 5, 15, 0, 0)),
        ({"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 7}, (10, 12, 22, 0, 7)),
        (
            {"promptTokenCount": 100, "cachedContentTokenCount": 80, "candidatesTokenCount": 1},
            (100, 1, 101, 80, 0),
        ),
        (
            {"promptTokenCount": 10, "toolUsePromptTokenCount": 30, "candidatesTokenCount": 2},
            (40, 2, 42, 0, 0),
        ),
    ],
)
def test_usage(meta: Any, expected: tuple[int, ...] | None) -> None:
    usage = gemini.usage_of(meta)
    got = (
        None
        if usage is None
        else (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens,
            usage.cached_tokens,
            usage.reasoning_tokens,
        )
    )
    assert got == expected


def test_completions_with_several_candidates_and_a_blocked_prompt() -> None:
    ctx = make_ctx("llm/v1/completions")
    out = COMPLETIONS.parse_response(fixture_json("gemini/candidates/response.json"), ctx)
    assert [(c["index"], c["text"]) for c in out["choices"]] == [(0, "Blue."), (1, "Green.")]
    assert_completion(out)
    blocked = COMPLETIONS.parse_response(fixture_json("gemini/blocked/response.json"), ctx)
    assert blocked["choices"] == [
        {"text": "", "index": 0, "logprobs": None, "finish_reason": "content_filter"}
    ]
    assert_completion(blocked)


@pytest.mark.parametrize(
    "body",
    [{"embeddings": [{"values": "x"}]}, {"nothing": 1}, {"predictions": [{"other": 1}]}, ["x"]],
)
def test_untranslatable_embeddings(body: Any) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        EMBEDDINGS.parse_response(body, make_ctx("llm/v1/embeddings"))


# --- streams -------------------------------------------------------------------------------------


def run_stream(
    raw: bytes, pieces: list[bytes] | None = None, route_type: str = "llm/v1/chat", **ctx_args: Any
):
    route = COMPLETIONS if route_type == "llm/v1/completions" else CHAT
    translator = route.new_stream(make_ctx(route_type, stream=True, **ctx_args))
    return drive(translator, pieces if pieces is not None else [raw]), translator


SSE_STREAMS = [
    "chat/stream.sse",
    "vertex_chat/stream.sse",
    "completions/stream.sse",
    "stream_tools/stream.sse",
    "stream_thinking/stream.sse",
    "stream_error/stream.sse",
    "stream_blocked/stream.sse",
    "grounding/stream.sse",
]


@pytest.mark.parametrize("name", SSE_STREAMS)
def test_stream_fixtures_are_real_gemini_events(name: str) -> None:
    parser = SSEParser()
    for event in parser.feed(fixture_bytes(f"gemini/{name}")) + parser.finish():
        data = orjson.loads(event.data)
        if "error" not in data:
            genai.GenerateContentResponse.model_validate_json(event.data)
    for element in orjson.loads(fixture_bytes("gemini/stream_array/stream.json")):
        genai.GenerateContentResponse.model_validate(element)


def chunk(
    delta: dict[str, Any], finish: str | None = None, chunk_id: str = "Zk1haPX3CMWf1dkPw7Pl-Ag"
) -> dict:
    return {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def test_plain_text_stream() -> None:
    raw, translator = run_stream(fixture_bytes("gemini/chat/stream.sse"))
    out = frames(raw)
    assert out == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "1"}),
        chunk({"content": " +"}),
        chunk({"content": " 1"}),
        chunk({"content": " ="}),
        chunk({"content": " 2."}),
        chunk({}, "stop"),
        "[DONE]",
    ]
    assert_chunks_valid(out)
    assert (
        translator.usage.prompt_tokens,
        translator.usage.completion_tokens,
        translator.usage.total_tokens,
    ) == (14, 7, 21)
    assert translator.response_model == MODEL
    assert translator.text == "1 + 1 = 2."


def test_usage_chunk_only_when_asked_and_last_value_wins() -> None:
    out = frames(run_stream(fixture_bytes("gemini/chat/stream.sse"), include_usage=True)[0])
    assert_chunks_valid(out)
    assert out[-3:] == [
        chunk({}, "stop"),
        {
            "id": "Zk1haPX3CMWf1dkPw7Pl-Ag",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": MODEL,
            "choices": [],
            "usage": {"prompt_tokens": 14, "completion_tokens": 7, "total_tokens": 21},
        },
        "[DONE]",
    ]


def test_vertex_stream_reports_thinking_tokens() -> None:
    raw, translator = run_stream(
        fixture_bytes("gemini/vertex_chat/stream.sse"), include_usage=True, vertex=True
    )
    out = frames(raw)
    assert_chunks_valid(out)
    assert "".join(d.get("content", "") for d in deltas(out)) == "1 + 1 equals 2."
    assert out[-2]["usage"] == {
        "prompt_tokens": 13,
        "completion_tokens": 108,
        "total_tokens": 121,
        "completion_tokens_details": {"reasoning_tokens": 100},
    }
    assert {c["model"] for c in out[:-1]} == {"gemini-2.5-pro"}
    assert translator.response_model == "gemini-2.5-pro"


def test_tool_call_stream() -> None:
    raw, translator = run_stream(fixture_bytes("gemini/stream_tools/stream.sse"))
    out = frames(raw)
    assert_chunks_valid(out)
    assert deltas(out) == [
        {"role": "assistant", "content": ""},
        {"content": "Checking both cities."},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": f"call_{REQUEST_ID}_0__thought__{SIGNATURE}",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": '{"city":"Paris","unit":"celsius","days":1}',
                    },
                }
            ]
        },
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": f"call_{REQUEST_ID}_1",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": '{"city":"Berlin","unit":"celsius","days":1}',
                    },
                }
            ]
        },
        {
            "tool_calls": [
                {
                    "index": 2,
                    "id": f"call_{REQUEST_ID}_2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"},
                }
            ]
        },
        {},
    ]
    assert out[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert (
        translator.usage.prompt_tokens,
        translator.usage.completion_tokens,
        translator.usage.reasoning_tokens,
    ) == (118, 117, 72)


def test_streamed_tool_call_id_replays_its_signature() -> None:
    out = frames(run_stream(fixture_bytes("gemini/stream_tools/stream.sse"))[0])
    calls = [d["tool_calls"][0] for d in deltas(out) if "tool_calls" in d]
    replay = [{"id": c["id"], "type": "function", "function": c["function"]} for c in calls]
    body = build(chat([*USER, {"role": "assistant", "content": None, "tool_calls": replay}]))
    assert body["contents"][1]["parts"][0]["thoughtSignature"] == SIGNATURE
    assert "thoughtSignature" not in body["contents"][1]["parts"][1]


def test_thinking_stream() -> None:
    raw, translator = run_stream(
        fixture_bytes("gemini/stream_thinking/stream.sse"), include_usage=True, model="gemini-2.5-pro"
    )
    out = frames(raw)
    assert_chunks_valid(out)
    assert deltas(out)[:3] == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "**Checking small factors**\n\n221 = 13 \u00d7 17."},
        {"content": "No. 221 = 13 \u00d7 17."},
    ]
    assert out[-2]["usage"] == {
        "prompt_tokens": 2060,
        "completion_tokens": 255,
        "total_tokens": 2315,
        "prompt_tokens_details": {"cached_tokens": 2048},
        "completion_tokens_details": {"reasoning_tokens": 244},
    }
    assert translator.text == "No. 221 = 13 \u00d7 17."


def test_error_event_becomes_an_openai_error_frame() -> None:
    raw, translator = run_stream(fixture_bytes("gemini/stream_error/stream.sse"))
    out = frames(raw)
    assert deltas(out) == [{"role": "assistant", "content": ""}, {"content": "Once upon"}]
    assert out[-2] == {
        "error": {
            "message": "The model is overloaded. Please try again later.",
            "type": "api_error",
            "param": None,
            "code": "UNAVAILABLE",
        }
    }
    assert out[-1] == "[DONE]"
    assert translator.usage.prompt_tokens == 9


def test_blocked_prompt_stream_ends_with_content_filter() -> None:
    out = frames(run_stream(fixture_bytes("gemini/stream_blocked/stream.sse"))[0])
    assert_chunks_valid(out)
    assert out == [
        chunk({"role": "assistant", "content": ""}, chunk_id="FL9haL_8MLeE1dkP3JmcQQ"),
        chunk({}, "content_filter", chunk_id="FL9haL_8MLeE1dkP3JmcQQ"),
        "[DONE]",
    ]


@pytest.mark.parametrize("name", ["chat/stream.sse", "stream_array/stream.json"])
def test_stream_cut_short_ends_with_an_error_frame(name: str) -> None:
    raw = fixture_bytes(f"gemini/{name}")
    cut = raw[: raw.rindex(b"STOP") - 40]  # before the event with the finish reason
    out = frames(run_stream(cut)[0])
    assert out[-2]["error"]["message"] == "the gemini stream ended before the response was complete"
    assert out[-1] == "[DONE]"
    finished = [c for c in out[:-2] if c["choices"][0]["finish_reason"] is not None]
    assert finished == []  # an incomplete answer never claims to be complete


def test_empty_stream_is_an_error() -> None:
    out = frames(run_stream(b"")[0])
    assert out[-2]["error"]["message"] == "the gemini stream ended before the response was complete"


def test_json_array_stream() -> None:
    raw, _ = run_stream(fixture_bytes("gemini/stream_array/stream.json"), include_usage=True)
    out = frames(raw)
    assert_chunks_valid(out)
    assert "".join(d.get("content", "") for d in deltas(out)) == (
        'JSON looks like {"a": [1, 2]}, a lone } or \\ is text, and so is "é 😀".'
    )
    assert out[-2]["usage"] == {"prompt_tokens": 11, "completion_tokens": 21, "total_tokens": 32}
    assert out[-3]["choices"][0]["finish_reason"] == "stop"
    assert {c["id"] for c in out[:-1]} == {"Lr9haPy1O4yA1dkPwO2xkQ4"}


def test_crlf_sse_and_leading_whitespace_read_the_same() -> None:
    raw = fixture_bytes("gemini/chat/stream.sse")
    expected = run_stream(raw)[0]
    assert run_stream(b"\r\n" + raw.replace(b"\n", b"\r\n"))[0] == expected
    array = fixture_bytes("gemini/stream_array/stream.json")
    assert run_stream(b" \n" + array)[0] == run_stream(array)[0]


def test_completions_stream() -> None:
    raw, translator = run_stream(
        fixture_bytes("gemini/completions/stream.sse"), route_type="llm/v1/completions"
    )
    out = frames(raw)
    assert [c["choices"][0]["text"] for c in out[:-1]] == ["This is", " a test.", ""]
    assert [c["choices"][0]["finish_reason"] for c in out[:-1]] == [None, None, "stop"]
    assert {c["object"] for c in out[:-1]} == {"text_completion"}
    Completion.model_validate(out[-2])  # openai's type accepts no null finish_reason: the last chunk
    assert translator.text == "This is a test."
    tools = run_stream(fixture_bytes("gemini/stream_tools/stream.sse"), route_type="llm/v1/completions")[0]
    assert frames(tools)[-2]["choices"][0]["finish_reason"] == "stop"  # no tool calls for completions


def test_json_array_splitter() -> None:
    splitter = gemini.JsonArraySplitter()
    assert (
        splitter.feed(
            b'[{"a": "}{\\"',
        )
        == []
    )
    assert splitter.pending()
    assert splitter.feed(b'", "b": {"c": [1, {"d": 2}]}}\n,\r\n{"e": "\\\\"}') == [
        {"a": '}{"', "b": {"c": [1, {"d": 2}]}},
        {"e": "\\"},
    ]
    assert not splitter.pending()
    assert splitter.feed(b"]") == []
    with pytest.raises(ValueError, match="not a JSON array of objects"):
        gemini.JsonArraySplitter().feed(b'[{"a": 1}, oops]')


# Splitting a stream anywhere must not change the output.

ALL_STREAMS = [*SSE_STREAMS, "stream_array/stream.json"]


def _route_type(name: str) -> str:
    return "llm/v1/completions" if name.startswith("completions") else "llm/v1/chat"


def _reference(name: str) -> bytes:
    return run_stream(fixture_bytes(f"gemini/{name}"), include_usage=True, route_type=_route_type(name))[0]


@pytest.mark.parametrize("name", ALL_STREAMS)
def test_every_byte_split_gives_the_same_output(name: str) -> None:
    raw = fixture_bytes(f"gemini/{name}")
    expected = _reference(name)
    route_type = _route_type(name)
    for cut in range(1, len(raw)):
        got = run_stream(raw, [raw[:cut], raw[cut:]], include_usage=True, route_type=route_type)[0]
        assert got == expected, f"split at byte {cut}"
    one_by_one = [raw[i : i + 1] for i in range(len(raw))]
    assert run_stream(raw, one_by_one, include_usage=True, route_type=route_type)[0] == expected


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_splits_give_the_same_output(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(ALL_STREAMS))
    raw = fixture_bytes(f"gemini/{name}")
    cuts = sorted(data.draw(st.sets(st.integers(1, len(raw) - 1), max_size=40)))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    assert run_stream(raw, pieces, include_usage=True, route_type=_route_type(name))[0] == _reference(name)


# --- token counting (Anthropic clients' count_tokens: transforms/ingress) ---------------------------


def test_count_tokens_request() -> None:
    """AI Studio counts a whole generateContent request (system instruction and tools too) only
    inside generateContentRequest, which names the model; Vertex takes those fields beside
    contents, and not toolConfig."""
    body = {**fixture_json("gemini/tool_results/client.json"), "max_tokens": 50}
    generate = CHAT.build_request(copy.deepcopy(body), make_ctx()).body
    assert {"systemInstruction", "tools", "toolConfig", "generationConfig"} <= set(generate)
    studio = gemini.build_count_tokens(copy.deepcopy(body), make_ctx(stream=True))
    assert (studio.method, studio.path, studio.query) == ("POST", f"/v1beta/models/{MODEL}:countTokens", [])
    assert studio.body == {"generateContentRequest": {"model": f"models/{MODEL}", **generate}}
    assert_camel_case(studio.body)
    vertex = gemini.build_count_tokens(copy.deepcopy(body), make_ctx(vertex=True))
    assert vertex.path == f"{VERTEX_PREFIX}/{MODEL}:countTokens"
    assert vertex.body == {
        k: generate[k] for k in ("contents", "systemInstruction", "tools", "generationConfig")
    }


def test_count_tokens_answer() -> None:
    answer = fixture_json("gemini/count_tokens/response.json")
    counter = SPEC.count_tokens
    assert counter is not None and counter.parse_response(answer) == 31
    assert counter.parse_response({"totalTokens": 12, "totalBillableCharacters": 40}) == 12  # Vertex
    for bad in ({}, {"totalTokens": None}, "31"):
        with pytest.raises(ValueError, match="totalTokens"):
            counter.parse_response(bad)


def test_fixture_folders_are_all_covered() -> None:
    folders = {p.name for p in (FIXTURES / "gemini").iterdir() if p.is_dir()}
    covered = {*CHAT_CASES, "completions", "embed", "batch_embed", "vertex_embed", "vertex_chat", "errors"}
    covered.add("count_tokens")  # read by test_count_tokens_request and the ingress e2e tests
    covered |= {Path(s).parent.name for s in ALL_STREAMS}
    assert folders == covered


def test_the_request_oracle_rejects_wrong_names() -> None:
    good = {"contents": [USER_CONTENT]}
    assert_valid_generate(good)
    for bad in (
        {**good, "system_instruction": {"parts": [{"text": "x"}]}},
        {**good, "generationConfig": {"max_output_tokens": 5}},
        {
            "contents": [
                {"role": "user", "parts": [{"inline_data": {"mimeType": "image/png", "data": "AAAA"}}]}
            ]
        },
        {**good, "generationConfig": {"max_tokens": 5}},
        {**good, "tools": [{"function_declarations": [{"name": "f"}], "x": 1}]},
        {**good, "toolConfig": {"functionCallingConfig": {"mode": "REQUIRED"}}},
        {"contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": "***"}}]}]},
        {"contents": [{"role": "user", "parts": [{"image_url": "x"}]}]},
        {"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]},
    ):
        with pytest.raises((ValueError, AssertionError, UserWarning)):
            assert_valid_generate(bad)


# --- Google Search grounding (chat web_search_options) --------------------------------------------

GROUNDED_TEXT = (
    "Spain won Euro 2024, beating England 2\u20131 in the final in Berlin. Mikel Oyarzabal scored the winner."
)
GROUNDED_SEARCH = {
    "id": f"search_{REQUEST_ID}_0",
    "queries": ["Euro 2024 winner", "Euro 2024 final score"],
    "sources": [
        {
            "url": "https://vertexaisearch.cloud.google.com/grounding-api-redirect/AUZIYQG1yLr3w9ZkVb0p4sTq8EuXhJcN2aD7oFmKiR5nWlBg",
            "title": "uefa.com",
        },
        {
            "url": "https://vertexaisearch.cloud.google.com/grounding-api-redirect/AUZIYQHc4VtX8pLq2sMw7nRj0kYdE3aFzB9gTuO1iN6hWeCr",
            "title": "aljazeera.com",
        },
    ],
    "error": None,
}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def test_grounding_citations_count_characters_where_gemini_counts_bytes() -> None:
    message = CHAT.parse_response(fixture_json("gemini/grounding/response.json"), make_ctx())["choices"][0][
        "message"
    ]
    spans = [
        (a["url_citation"]["start_index"], a["url_citation"]["end_index"]) for a in message["annotations"]
    ]
    # The en dash is 3 bytes: Gemini's second segment starts at byte 67, which is character 65.
    assert spans == [(0, 64), (0, 64), (65, 99)]
    assert [message["content"][a:b] for a, b in spans[1:]] == [
        "Spain won Euro 2024, beating England 2\u20131 in the final in Berlin.",
        "Mikel Oyarzabal scored the winner.",
    ]
    assert WEB_SEARCH_KEY not in message  # an OpenAI client sees no searches
    ingress = dataclasses.replace(make_ctx(), extensions=True)
    message = CHAT.parse_response(fixture_json("gemini/grounding/response.json"), ingress)["choices"][0][
        "message"
    ]
    assert message[WEB_SEARCH_KEY] == [GROUNDED_SEARCH]


def test_a_segment_naming_its_part_counts_from_that_part() -> None:
    meta = {
        "groundingChunks": [{"web": {"uri": "https://example.com/a", "title": "a"}}],
        "groundingSupports": [
            {"segment": {"partIndex": 1, "startIndex": 2, "endIndex": 6}, "groundingChunkIndices": [0]}
        ],
    }
    # Part 0 is a thought (no content characters), part 1 starts the content, part 2 follows it.
    parts = ["", "\u00e9t\u00e9 ok", " more"]
    [annotation] = gemini.grounding_citations(meta, "".join(parts), parts)
    assert (annotation["url_citation"]["start_index"], annotation["url_citation"]["end_index"]) == (1, 4)


def test_grounded_stream_ends_with_citations_then_the_searches() -> None:
    raw = fixture_bytes("gemini/grounding/stream.sse")
    out = frames(run_stream(raw, include_usage=True)[0])
    assert_chunks_valid(out)
    found = deltas(out)
    assert "".join(d.get("content") or "" for d in found) == GROUNDED_TEXT
    [annotations] = [d["annotations"] for d in found if "annotations" in d]
    spans = [(a["url_citation"]["start_index"], a["url_citation"]["end_index"]) for a in annotations]
    assert spans == [(0, 64), (0, 64), (65, 99)]
    assert not any(WEB_SEARCH_KEY in d for d in found)
    translator = CHAT.new_stream(dataclasses.replace(make_ctx(stream=True), extensions=True))
    found = deltas(frames(drive(translator, [raw])))
    assert [d[WEB_SEARCH_KEY] for d in found if WEB_SEARCH_KEY in d] == [[GROUNDED_SEARCH]]


def test_google_search_is_left_out_beside_function_tools() -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [WEATHER],
        "web_search_options": {},
    }
    req = CHAT.build_request(copy.deepcopy(body), make_ctx())
    assert req.body["tools"] == [{"functionDeclarations": [{"name": "get_weather"}]}]
    assert req.notes == {"gemini-search-with-functions": gemini.SEARCH_WITH_FUNCTIONS_NOTE}
    with pytest.raises(GatewayError) as err:
        CHAT.build_request({**body, "web_search_options": {WEB_SEARCH_REQUIRED: True}}, make_ctx())
    assert err.value.status == 400 and err.value.param == "web_search_options"
    assert "gemini" in err.value.message
