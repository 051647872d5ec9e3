"""The Bedrock provider: OpenAI requests -> exact Converse / InvokeModel requests, answers, streams
and SigV4 signatures.

Oracles, all from botocore's ``bedrock-runtime`` service model:
* every Converse request validates with botocore's ParamValidator (blobs turned back into bytes
  first, enums and ranges checked too), and botocore's own serializer turns those parameters into
  exactly the path and JSON body built here;
* every fixture answer and stream event matches the service model's output shapes strictly (no
  unknown field, required fields present), and botocore's EventStream parser reads the binary
  stream fixtures;
* signatures equal botocore's ``SigV4Auth.add_auth`` at the same instant;
* every OpenAI answer parses with openai's models without losing a field.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import importlib.util
import logging
from datetime import UTC, datetime
from typing import Any

import botocore.auth
import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStream
from botocore.exceptions import EventStreamError
from botocore.parsers import EventStreamJSONParser
from botocore.serialize import create_serializer
from botocore.session import get_session
from botocore.validate import ParamValidator
from conftest import FIXTURES, fixture_bytes, fixture_json
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from streams import choices, drive, finishing_choices, frames

from addon.emulator import split_stream
from transforms.config import Auth, ModelOptions, Route
from transforms.errors import GatewayError
from transforms.pipeline import prepare, translate_response
from transforms.providers import bedrock
from transforms.registry import SPECS
from transforms.sigv4 import AwsCredentials, credentials_from, signing_request
from transforms.types import STOP_SEQUENCE_KEY, TOOL_ERROR_MARK, CallContext, Inbound, Upstream

SPEC = SPECS["bedrock"]
CHAT = SPEC.routes["llm/v1/chat"]
COMPLETIONS = SPEC.routes["llm/v1/completions"]
EMBEDDINGS = SPEC.routes["llm/v1/embeddings"]
CREATED = 1767225600  # 2026-01-01T00:00:00Z
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
ENCODED = "anthropic.claude-3-5-sonnet-20240620-v1%3A0"
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "FwoGZXIvYXdzEJr//////////wEaDExampleSessionToken"

_SERVICE = get_session().get_service_model("bedrock-runtime")
_OPS = {name: _SERVICE.operation_model(name) for name in ("Converse", "ConverseStream", "InvokeModel")}
_STREAM_SHAPE = _OPS["ConverseStream"].output_shape.members["stream"]
_GENERATOR_SPEC = importlib.util.spec_from_file_location(
    "make_streams", FIXTURES / "bedrock" / "make_streams.py"
)
assert _GENERATOR_SPEC is not None and _GENERATOR_SPEC.loader is not None
make_streams = importlib.util.module_from_spec(_GENERATOR_SPEC)
_GENERATOR_SPEC.loader.exec_module(make_streams)


def make_ctx(
    route_type: str = "llm/v1/chat",
    *,
    model: str = MODEL,
    stream: bool = False,
    include_usage: bool = False,
    options: ModelOptions | None = None,
    prompt_text: str = "",
) -> CallContext:
    return CallContext(
        route_name="bedrock",
        route_type=route_type,
        provider="bedrock",
        model=model,
        options=options or ModelOptions(),
        stream=stream,
        request_id="req-123",
        created=CREATED,
        include_usage=include_usage,
        prompt_text=prompt_text,
    )


# --- oracles -------------------------------------------------------------------------------------


def _wire_to_params(value: Any, shape: Any, where: str) -> Any:
    """The Python-API form of a wire JSON value: base64 blobs become bytes. Checks what
    ParamValidator leaves out: enum values and numeric ranges."""
    kind = shape.type_name
    if kind == "structure" and shape.metadata.get("document"):
        return value
    if kind == "structure" and isinstance(value, dict):
        return {
            k: _wire_to_params(v, shape.members[k], f"{where}.{k}") if k in shape.members else v
            for k, v in value.items()
        }
    if kind == "list" and isinstance(value, list):
        return [_wire_to_params(v, shape.member, f"{where}[{i}]") for i, v in enumerate(value)]
    if kind == "blob":
        assert isinstance(value, str), f"{where}: a blob is base64 text on the wire"
        return base64.b64decode(value, validate=True)
    if kind == "string" and shape.enum:
        assert value in shape.enum, f"{where}: {value!r} not in {shape.enum}"
    if kind in ("integer", "long", "float", "double") and isinstance(value, int | float):
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        assert low is None or value >= low, f"{where}: {value} < {low}"
        assert high is None or value <= high, f"{where}: {value} > {high}"
    return value


def assert_valid_converse(body: dict[str, Any], model: str, stream: bool, path: str) -> None:
    """ParamValidator accepts the request, and botocore serializes it to the same path and body."""
    op = _OPS["ConverseStream" if stream else "Converse"]
    params = {"modelId": model, **_wire_to_params(body, op.input_shape, "body")}
    report = ParamValidator().validate(params, op.input_shape)
    assert not report.has_errors(), report.generate_report()
    wire = create_serializer("rest-json").serialize_to_request(params, op)
    assert wire["url_path"] == path
    assert orjson.loads(wire["body"]) == body


def assert_valid_invoke(body: dict[str, Any], model: str, path: str) -> None:
    params = {"modelId": model, "body": orjson.dumps(body), "contentType": "application/json"}
    report = ParamValidator().validate(params, _OPS["InvokeModel"].input_shape)
    assert not report.has_errors(), report.generate_report()
    assert (
        create_serializer("rest-json").serialize_to_request(params, _OPS["InvokeModel"])["url_path"] == path
    )


def assert_shape(value: Any, shape: Any, where: str = "body", extra: frozenset[str] = frozenset()) -> None:
    """A wire JSON value matches a service-model shape exactly (``extra``: keys Bedrock sends that
    the model does not declare, such as the stream events' ``p`` padding)."""
    kind = shape.type_name
    if kind == "structure":
        if shape.metadata.get("document"):
            return
        assert isinstance(value, dict), f"{where}: not an object"
        unknown = set(value) - set(shape.members) - extra
        assert not unknown, f"{where}: unknown fields {sorted(unknown)}"
        missing = set(shape.required_members) - set(value)
        assert not missing, f"{where}: missing {sorted(missing)}"
        if shape.is_tagged_union:
            assert len(value) == 1, f"{where}: a union holds exactly one member"
        for k, v in value.items():
            if k in shape.members:
                assert_shape(v, shape.members[k], f"{where}.{k}")
    elif kind == "list":
        assert isinstance(value, list), f"{where}: not a list"
        for i, v in enumerate(value):
            assert_shape(v, shape.member, f"{where}[{i}]")
    elif kind == "map":
        assert isinstance(value, dict), f"{where}: not a map"
        for k, v in value.items():
            assert_shape(v, shape.value, f"{where}.{k}")
    elif kind == "string":
        assert isinstance(value, str), f"{where}: not a string"
        assert not shape.enum or value in shape.enum, f"{where}: {value!r} not in {shape.enum}"
    elif kind in ("integer", "long"):
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: not an integer"
    elif kind in ("float", "double"):
        assert isinstance(value, int | float), f"{where}: not a number"
    elif kind == "boolean":
        assert isinstance(value, bool), f"{where}: not a boolean"
    elif kind == "blob":
        base64.b64decode(value, validate=True)


def assert_chat_completion(out: dict[str, Any]) -> None:
    assert ChatCompletion.model_validate(out).model_dump(exclude_unset=True) == out


def assert_completion(out: dict[str, Any]) -> None:
    assert Completion.model_validate(out).model_dump(exclude_unset=True) == out


def build(body: dict[str, Any], **ctx_args: Any) -> dict[str, Any]:
    ctx = make_ctx(**ctx_args)
    req = CHAT.build_request(copy.deepcopy(body), ctx)
    operation = "converse-stream" if ctx.stream else "converse"
    expected_path = f"/model/{bedrock.quote(ctx.model, safe='-_.~')}/{operation}"
    assert (req.path, req.method, req.query, req.headers) == (expected_path, "POST", [], {})
    assert_valid_converse(req.body, ctx.model, ctx.stream, req.path)
    return req.body


def chat(messages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": messages, **fields}


USER = [{"role": "user", "content": "Hi"}]
USER_BLOCKS = [{"role": "user", "content": [{"text": "Hi"}]}]


def refused(body: dict[str, Any], route: Any = CHAT, **ctx_args: Any) -> str:
    with pytest.raises(GatewayError) as err:
        route.build_request(copy.deepcopy(body), make_ctx(**ctx_args))
    assert err.value.status == 400
    return err.value.message


# --- fixtures as tables --------------------------------------------------------------------------

CHAT_CASES = ["chat", "tools", "tool_results", "images", "guardrail", "cache", "reasoning", "json_schema"]


@pytest.mark.parametrize("case", CHAT_CASES)
def test_chat_request_fixture(case: str) -> None:
    client = fixture_json(f"bedrock/{case}/client.json")
    assert build(client, model=client["model"]) == fixture_json(f"bedrock/{case}/request.json")


@pytest.mark.parametrize("case", CHAT_CASES)
def test_chat_request_fixture_streamed_is_the_same_body(case: str) -> None:
    client = fixture_json(f"bedrock/{case}/client.json")
    body = build({**client, "stream": True}, model=client["model"], stream=True)
    assert body == fixture_json(f"bedrock/{case}/request.json")


@pytest.mark.parametrize("case", CHAT_CASES)
def test_chat_response_fixture(case: str) -> None:
    raw = fixture_json(f"bedrock/{case}/response.json")
    assert_shape(raw, _OPS["Converse"].output_shape)
    model = fixture_json(f"bedrock/{case}/client.json")["model"]
    out = CHAT.parse_response(raw, make_ctx(model=model))
    assert out == fixture_json(f"bedrock/{case}/expected.json")
    assert_chat_completion(out)


def test_completions_fixture() -> None:
    client = fixture_json("bedrock/completions/client.json")
    ctx = make_ctx("llm/v1/completions", model=client["model"])
    req = COMPLETIONS.build_request(client, ctx)
    assert req.path == "/model/meta.llama3-1-70b-instruct-v1%3A0/converse"
    assert req.body == fixture_json("bedrock/completions/request.json")
    assert_valid_converse(req.body, ctx.model, False, req.path)
    raw = fixture_json("bedrock/completions/response.json")
    assert_shape(raw, _OPS["Converse"].output_shape)
    out = COMPLETIONS.parse_response(raw, ctx)
    assert out == fixture_json("bedrock/completions/expected.json")
    assert_completion(out)


@pytest.mark.parametrize(
    ("case", "path"),
    [
        ("embed_titan", "/model/amazon.titan-embed-text-v2%3A0/invoke"),
        ("embed_cohere", "/model/cohere.embed-english-v3/invoke"),
    ],
)
def test_embeddings_fixture(case: str, path: str) -> None:
    client = fixture_json(f"bedrock/{case}/client.json")
    ctx = make_ctx("llm/v1/embeddings", model=client["model"], prompt_text=_prompt_text(client))
    req = EMBEDDINGS.build_request(copy.deepcopy(client), ctx)
    assert (req.path, req.method) == (path, "POST")
    assert req.body == fixture_json(f"bedrock/{case}/request.json")
    assert_valid_invoke(req.body, ctx.model, req.path)
    out = EMBEDDINGS.parse_response(fixture_json(f"bedrock/{case}/response.json"), ctx)
    # Cohere on Bedrock gives no token count: the estimate is marked for statistics (the pipeline
    # strips the mark before the client sees the body).
    assert out["usage"].pop("_ai_proxy_estimated", False) is (case == "embed_cohere")
    assert out == fixture_json(f"bedrock/{case}/expected.json")
    assert CreateEmbeddingResponse.model_validate(out).model_dump(exclude_unset=True) == out


def _prompt_text(client: dict[str, Any]) -> str:
    from transforms.usage import request_text

    return request_text(client)


def test_cohere_embedding_usage_is_the_estimate_of_the_input() -> None:
    # 'Canberra is the capital of Australia. Tokyo is the capital of Japan.' is 68 characters.
    client = fixture_json("bedrock/embed_cohere/client.json")
    assert len(_prompt_text(client)) == 68
    out = fixture_json("bedrock/embed_cohere/expected.json")
    assert out["usage"] == {"prompt_tokens": 17, "total_tokens": 17}


# --- request: model ids and paths -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "path"),
    [
        (MODEL, f"/model/{ENCODED}/converse"),
        (
            "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
            "/model/us.anthropic.claude-3-5-sonnet-20241022-v2%3A0/converse",
        ),
        (
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A%3Afoundation-model%2Fanthropic.claude-3-haiku-20240307-v1%3A0/converse",
        ),
        (
            "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/a1b2c3d4e5f6",
            "/model/arn%3Aaws%3Abedrock%3Aeu-west-1%3A123456789012%3Aapplication-inference-profile%2Fa1b2c3d4e5f6/converse",
        ),
    ],
)
def test_model_id_is_one_encoded_path_segment(model: str, path: str) -> None:
    req = CHAT.build_request(chat(USER), make_ctx(model=model))
    assert req.path == path
    assert_valid_converse(req.body, model, False, path)  # botocore encodes the label the same way
    streamed = CHAT.build_request(chat(USER, stream=True), make_ctx(model=model, stream=True))
    assert streamed.path == path.replace("/converse", "/converse-stream")


@pytest.mark.parametrize(
    ("model", "family"),
    [
        (MODEL, "anthropic"),
        ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", "anthropic"),
        ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic"),
        ("eu.amazon.nova-pro-v1:0", "amazon"),
        ("arn:aws:bedrock:us-east-1::foundation-model/cohere.command-r-plus-v1:0", "cohere"),
        ("meta.llama3-1-70b-instruct-v1:0", "meta"),
        ("my-custom-model", "my-custom-model"),
    ],
)
def test_model_family(model: str, family: str) -> None:
    assert bedrock.model_family(model) == family


# --- request: messages --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "system", "expected"),
    [
        # system and developer messages become the top-level system, in order
        (
            [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "developer", "content": [{"type": "text", "text": "Use English."}]},
            ],
            [{"text": "Be brief."}, {"text": "Use English."}],
            USER_BLOCKS,
        ),
        # empty text is dropped; a turn left empty disappears
        (
            [
                {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "Hi"}]},
                {"role": "assistant", "content": ""},
                {"role": "user", "content": "again"},
            ],
            [],
            [{"role": "user", "content": [{"text": "Hi"}, {"text": "again"}]}],
        ),
        # an assistant's earlier refusal is replayed as text
        (
            [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]},
            ],
            [],
            [*USER_BLOCKS, {"role": "assistant", "content": [{"text": "I can't."}]}],
        ),
        # a tool result that is a JSON array or not JSON at all stays text; user text after tool
        # results in the same turn comes after them
        (
            [
                {"role": "user", "content": "Hi"},
                {
                    "role": "assistant",
                    "content": "Let me look.",
                    "tool_calls": [
                        {"id": "tooluse_a", "type": "function", "function": {"name": "f", "arguments": ""}}
                    ],
                },
                {"role": "user", "content": "hurry"},
                {"role": "tool", "tool_call_id": "tooluse_a", "content": "[1, 2]"},
            ],
            [],
            [
                *USER_BLOCKS,
                {
                    "role": "assistant",
                    "content": [
                        {"text": "Let me look."},
                        {"toolUse": {"toolUseId": "tooluse_a", "name": "f", "input": {}}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"toolResult": {"toolUseId": "tooluse_a", "content": [{"text": "[1, 2]"}]}},
                        {"text": "hurry"},
                    ],
                },
            ],
        ),
        # a cache_control marker on a user part adds a cache point after it
        (
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Long doc", "cache_control": {"type": "ephemeral"}},
                        {"type": "text", "text": "Q?"},
                    ],
                }
            ],
            [],
            [
                {
                    "role": "user",
                    "content": [{"text": "Long doc"}, {"cachePoint": {"type": "default"}}, {"text": "Q?"}],
                }
            ],
        ),
    ],
)
def test_message_shapes(messages, system, expected) -> None:
    body = build(chat(messages))
    assert body["messages"] == expected
    assert body.get("system", []) == system


@pytest.mark.parametrize(
    ("media_type", "image_format"),
    [("image/png", "png"), ("image/jpeg", "jpeg"), ("image/gif", "gif"), ("image/webp", "webp")],
)
def test_inline_image_formats(media_type: str, image_format: str) -> None:
    data = base64.b64encode(b"\x00\x01image-bytes").decode()
    part = {"type": "image_url", "image_url": f"data:{media_type};base64,{data}"}
    body = build(chat([{"role": "user", "content": [part]}]))
    assert body["messages"][0]["content"] == [{"image": {"format": image_format, "source": {"bytes": data}}}]


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}],
                }
            ],
            "messages[0].content[0].image_url: Bedrock needs inline images (data:image/...;base64,...); "
            "image URLs are not supported by the bedrock provider",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}],
                }
            ],
            "'messages[0].content[0].image_url' of type 'image/bmp' is not supported by the bedrock provider",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}],
                }
            ],
            "'messages[0].content[0]' of type 'input_audio' is not supported by the bedrock provider",
        ),
        (
            [
                {
                    "role": "system",
                    "content": [{"type": "image_url", "image_url": "data:image/png;base64,AAAA"}],
                }
            ],
            "'messages[0].content[0]' of type 'image_url' is not supported by the bedrock provider",
        ),
        (
            [{"role": "function", "name": "f", "content": "x"}],
            "'messages[0].role' 'function' is not supported by the bedrock provider",
        ),
        (
            [{"role": "tool", "content": "x"}],
            "messages[0]: a tool message needs a tool_call_id",
        ),
        (
            [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "t", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
                    ],
                }
            ],
            "messages[0].tool_calls[0]: function arguments must be a JSON object",
        ),
    ],
)
def test_message_refusals(messages, message) -> None:
    assert refused(chat(messages)) == message


# --- request: parameters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"max_tokens": 10}, {"inferenceConfig": {"maxTokens": 10}}),
        ({"max_tokens": 10, "max_completion_tokens": 20}, {"inferenceConfig": {"maxTokens": 20}}),
        ({"temperature": 0, "top_p": 1}, {"inferenceConfig": {"temperature": 0, "topP": 1}}),
        ({"stop": ["END", "STOP"]}, {"inferenceConfig": {"stopSequences": ["END", "STOP"]}}),
        ({"stop": []}, {}),
        # harmless fields, and neutral values of refused ones, change nothing
        (
            {
                "n": 1,
                "logprobs": False,
                "presence_penalty": 0,
                "seed": 7,
                "user": "u",
                "parallel_tool_calls": True,
            },
            {},
        ),
        ({"top_k": 5}, {"additionalModelRequestFields": {"top_k": 5}}),
        (
            {"top_k": 5, "additionalModelRequestFields": {"top_k": 9, "anthropic_beta": ["x"]}},
            {"additionalModelRequestFields": {"top_k": 9, "anthropic_beta": ["x"]}},
        ),
        (
            {"guardrailConfig": {"guardrailIdentifier": "abc123", "guardrailVersion": "DRAFT"}},
            {"guardrailConfig": {"guardrailIdentifier": "abc123", "guardrailVersion": "DRAFT"}},
        ),
    ],
)
def test_parameters(fields, expected) -> None:
    body = build(chat(USER, **fields))
    assert body == {"messages": USER_BLOCKS, **expected}


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("anthropic.claude-3-haiku-20240307-v1:0", {"top_k": 40}),
        ("us.anthropic.claude-3-5-haiku-20241022-v1:0", {"top_k": 40}),
        ("mistral.mistral-7b-instruct-v0:2", {"top_k": 40}),
        ("cohere.command-r-plus-v1:0", {"k": 40}),
        ("amazon.nova-micro-v1:0", {"inferenceConfig": {"topK": 40}}),
        ("us.amazon.nova-pro-v1:0", {"inferenceConfig": {"topK": 40}}),
        ("some-imported-model", {"top_k": 40}),
    ],
)
def test_top_k_per_model_family(model: str, expected: dict[str, Any]) -> None:
    body = build(chat(USER, top_k=40), model=model)
    assert body["additionalModelRequestFields"] == expected


def test_top_k_merges_with_nested_native_fields() -> None:
    native = {"inferenceConfig": {"reasoningConfig": {"type": "enabled"}}}
    body = build(chat(USER, top_k=3, additionalModelRequestFields=native), model="amazon.nova-2-lite-v1:0")
    assert body["additionalModelRequestFields"] == {
        "inferenceConfig": {"topK": 3, "reasoningConfig": {"type": "enabled"}}
    }


@pytest.mark.parametrize(
    "model", ["meta.llama3-1-70b-instruct-v1:0", "amazon.titan-text-express-v1", "ai21.jamba-1-5-large-v1:0"]
)
def test_top_k_refused_where_the_model_has_none(model: str) -> None:
    assert refused(chat(USER, top_k=5), model=model) == (
        f"'top_k' is not supported for model '{model}' by the bedrock provider"
    )


def test_guardrail_from_extra_body_for_a_stream_with_processing_mode() -> None:
    guard = {"guardrailIdentifier": "abc123", "guardrailVersion": "2", "streamProcessingMode": "async"}
    body = build(chat(USER, stream=True, extra_body={"guardrailConfig": guard}), stream=True)
    assert body["guardrailConfig"] == guard


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"n": 2}, "'n' above 1 is not supported by the bedrock provider"),
        ({"logprobs": True}, "'logprobs' is not supported by the bedrock provider"),
        ({"top_logprobs": 3}, "'top_logprobs' is not supported by the bedrock provider"),
        ({"presence_penalty": 0.5}, "'presence_penalty' is not supported by the bedrock provider"),
        ({"frequency_penalty": 0.1}, "'frequency_penalty' is not supported by the bedrock provider"),
        ({"logit_bias": {"50256": -100}}, "'logit_bias' is not supported by the bedrock provider"),
        ({"temperature": 1.5}, "'temperature' above 1 is not supported by the bedrock provider"),
        ({"stop": ["ok", ""]}, "'stop' with an empty sequence is not supported by the bedrock provider"),
        ({"audio": {"voice": "alloy"}}, "'audio' is not supported by the bedrock provider"),
        (
            {"parallel_tool_calls": False},
            "'parallel_tool_calls' set to false is not supported by the bedrock provider",
        ),
        (
            {"response_format": {"type": "json_object"}},
            "'response_format' of type 'json_object' is not supported (use json_schema) by the bedrock provider",
        ),
        (
            {"extra_body": {"performanceConfig": {"latency": "optimized"}}},
            "'extra_body.performanceConfig' is not supported by the bedrock provider",
        ),
        ({"extra_body": "x"}, "'extra_body' must be an object"),
        ({"guardrailConfig": "gr"}, "'guardrailConfig' must be an object"),
        (
            {
                "guardrailConfig": {"guardrailIdentifier": "a"},
                "extra_body": {"guardrailConfig": {"guardrailIdentifier": "b"}},
            },
            "'guardrailConfig' is given both at the top level and in 'extra_body'",
        ),
        ({"tool_choice": "required"}, "'tool_choice' requires 'tools'"),
    ],
)
def test_refused_parameters(fields, message) -> None:
    assert refused(chat(USER, **fields)) == message


# --- request: tools and response_format ---------------------------------------------------------

TOOL = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
TOOL_SPEC = {"toolSpec": {"name": "get_time", "inputSchema": {"json": {"type": "object", "properties": {}}}}}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, {"tools": [TOOL_SPEC]}),
        ("auto", {"tools": [TOOL_SPEC], "toolChoice": {"auto": {}}}),
        ("required", {"tools": [TOOL_SPEC], "toolChoice": {"any": {}}}),
        (
            {"type": "function", "function": {"name": "get_time"}},
            {"tools": [TOOL_SPEC], "toolChoice": {"tool": {"name": "get_time"}}},
        ),
    ],
)
def test_tool_choice(choice, expected) -> None:
    fields = {"tools": [TOOL]} if choice is None else {"tools": [TOOL], "tool_choice": choice}
    assert build(chat(USER, **fields))["toolConfig"] == expected


def test_tool_without_parameters_gets_an_empty_object_schema() -> None:
    tool = {"type": "function", "function": {"name": "ping", "description": ""}}
    body = build(chat(USER, tools=[tool]))
    assert body["toolConfig"] == {
        "tools": [
            {"toolSpec": {"name": "ping", "inputSchema": {"json": {"type": "object", "properties": {}}}}}
        ]
    }


def test_tool_choice_none_leaves_the_tools_out() -> None:
    body = build(chat(USER, tools=[TOOL], tool_choice="none"))
    assert "toolConfig" not in body


def test_tool_choice_none_with_tool_history_is_refused() -> None:
    messages = [
        *USER,
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "12:00"},
    ]
    assert refused(chat(messages, tools=[TOOL], tool_choice="none")) == (
        "'tool_choice' 'none' with tool calls in the conversation is not supported by the bedrock provider"
    )


def test_json_schema_without_name_or_description() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = build(chat(USER, response_format={"type": "json_schema", "json_schema": {"schema": schema}}))
    assert body["outputConfig"] == {
        "textFormat": {
            "type": "json_schema",
            "structure": {
                "jsonSchema": {"schema": '{"type":"object","properties":{"a":{"type":"integer"}}}'}
            },
        }
    }
    assert "outputConfig" not in build(chat(USER, response_format={"type": "text"}))


# --- request: completions and embeddings --------------------------------------------------------


def test_completions_prompt_list_stream_and_refusals() -> None:
    ctx = make_ctx("llm/v1/completions", stream=True, model="amazon.nova-micro-v1:0")
    req = COMPLETIONS.build_request({"prompt": ["Say hi"], "stream": True, "echo": False, "top_k": 4}, ctx)
    assert req.path == "/model/amazon.nova-micro-v1%3A0/converse-stream"
    assert req.body == {
        "messages": [{"role": "user", "content": [{"text": "Say hi"}]}],
        "additionalModelRequestFields": {"inferenceConfig": {"topK": 4}},
    }
    assert_valid_converse(req.body, ctx.model, True, req.path)
    route = {"route": COMPLETIONS, "route_type": "llm/v1/completions"}
    assert refused({"prompt": ["a", "b"]}, **route) == (
        "'prompt' other than one text prompt is not supported by the bedrock provider"
    )
    assert (
        refused({"prompt": "a", "best_of": 2}, **route)
        == "'best_of' above 1 is not supported by the bedrock provider"
    )
    assert (
        refused({"prompt": "a", "logprobs": 2}, **route)
        == "'logprobs' is not supported by the bedrock provider"
    )
    assert (
        refused({"prompt": "a", "suffix": "z"}, **route)
        == "'suffix' is not supported by the bedrock provider"
    )
    assert refused({"prompt": ""}, **route) == "'prompt' must not be empty"


@pytest.mark.parametrize(
    ("model", "fields", "expected"),
    [
        ("amazon.titan-embed-text-v1", {"input": ["one"]}, {"inputText": "one"}),
        ("amazon.titan-embed-text-v2:0", {"input": "x", "encoding_format": "base64"}, {"inputText": "x"}),
        (
            "cohere.embed-multilingual-v3",
            {"input": "x", "user": "u"},
            {"texts": ["x"], "input_type": "search_query"},
        ),
        (
            "us.cohere.embed-v4:0",
            {"input": ["x", "y"], "dimensions": 512},
            {"texts": ["x", "y"], "input_type": "search_query", "output_dimension": 512},
        ),
    ],
)
def test_embedding_requests(model, fields, expected) -> None:
    options = ModelOptions.model_validate({"cohere": {"embedding_input_type": "search_query"}})
    req = EMBEDDINGS.build_request(fields, make_ctx("llm/v1/embeddings", model=model, options=options))
    assert req.body == expected
    assert_valid_invoke(req.body, model, req.path)


@pytest.mark.parametrize(
    ("model", "fields", "message"),
    [
        (
            "amazon.titan-embed-text-v2:0",
            {"input": ["a", "b"]},
            "'input' with more than one text is not supported for 'amazon.titan-embed-text-v2:0' (one text per call) by the bedrock provider",
        ),
        (
            "amazon.titan-embed-text-v2:0",
            {"input": [1, 2, 3]},
            "'input' as token ids is not supported by the bedrock provider",
        ),
        (
            "amazon.titan-embed-text-v1",
            {"input": "a", "dimensions": 256},
            "'dimensions' is not supported for model 'amazon.titan-embed-text-v1' by the bedrock provider",
        ),
        (
            "cohere.embed-english-v3",
            {"input": "a", "dimensions": 256},
            "'dimensions' is not supported for model 'cohere.embed-english-v3' by the bedrock provider",
        ),
        (
            "amazon.nova-2-multimodal-embeddings-v1:0",
            {"input": "a"},
            "'model' 'amazon.nova-2-multimodal-embeddings-v1:0' is not supported for embeddings (use amazon.titan-embed-* or cohere.embed-*) by the bedrock provider",
        ),
    ],
)
def test_embedding_refusals(model, fields, message) -> None:
    assert refused(fields, EMBEDDINGS, route_type="llm/v1/embeddings", model=model) == message


@pytest.mark.parametrize(
    ("model", "body"),
    [
        ("amazon.titan-embed-text-v2:0", {"inputTextTokenCount": 3}),
        ("cohere.embed-english-v3", {"id": "x", "embeddings": None}),
        ("cohere.embed-english-v3", {"embeddings": []}),
        ("cohere.embed-english-v3", []),
    ],
)
def test_untranslatable_embedding_bodies_raise(model, body) -> None:
    with pytest.raises(ValueError):
        EMBEDDINGS.parse_response(body, make_ctx("llm/v1/embeddings", model=model))


def test_cohere_embeddings_by_type() -> None:
    ctx = make_ctx("llm/v1/embeddings", model="cohere.embed-v4:0", prompt_text="abcdefgh")
    out = EMBEDDINGS.parse_response(
        {"embeddings": {"float": [[0.5, -0.25]]}, "response_type": "embeddings_by_type"}, ctx
    )
    assert out["data"] == [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]}]
    assert out["usage"] == {"prompt_tokens": 2, "total_tokens": 2, "_ai_proxy_estimated": True}


# --- response -----------------------------------------------------------------------------------


def reply(content: list[dict[str, Any]], stop: str = "end_turn", **usage: int) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": {"inputTokens": 5, "outputTokens": 3, "totalTokens": 8, **usage},
        "metrics": {"latencyMs": 100},
    }


@pytest.mark.parametrize(
    ("stop", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("some_future_reason", "stop"),
    ],
)
def test_finish_reasons(stop: str, expected: str) -> None:
    out = CHAT.parse_response(reply([{"text": "x"}], stop), make_ctx())
    assert out["choices"][0]["finish_reason"] == expected
    done = COMPLETIONS.parse_response(reply([{"text": "x"}], stop), make_ctx("llm/v1/completions"))
    assert done["choices"][0]["finish_reason"] == ("stop" if expected == "tool_calls" else expected)


@pytest.mark.parametrize("stop", ["malformed_model_output", "malformed_tool_use"])
def test_malformed_output_is_an_error_not_an_answer(stop: str) -> None:
    with pytest.raises(GatewayError) as err:
        CHAT.parse_response(reply([{"text": "{"}], stop), make_ctx())
    assert err.value.status == 502
    assert err.value.message == f"the bedrock model returned malformed output (stopReason {stop})"


def test_text_blocks_are_joined_and_tool_only_reply_has_null_content() -> None:
    out = CHAT.parse_response(reply([{"text": "a"}, {"text": "b"}]), make_ctx())
    assert out["choices"][0]["message"]["content"] == "ab"
    use = {"toolUse": {"toolUseId": "tooluse_1", "name": "noop", "input": {}}}
    out = CHAT.parse_response(reply([use], "tool_use"), make_ctx())
    message = out["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {"id": "tooluse_1", "type": "function", "function": {"name": "noop", "arguments": "{}"}}
    ]
    assert_chat_completion(out)


def test_citations_content_counts_as_text_and_redacted_reasoning_is_kept_aside() -> None:
    blocks = [
        {"reasoningContent": {"redactedContent": "c2VjcmV0"}},
        {"citationsContent": {"content": [{"text": "Cited answer."}], "citations": []}},
    ]
    raw = reply(blocks)
    assert_shape(raw, _OPS["Converse"].output_shape)
    message = CHAT.parse_response(raw, make_ctx())["choices"][0]["message"]
    assert message == {
        "role": "assistant",
        "content": "Cited answer.",
        "refusal": None,
        "thinking_blocks": [{"type": "redacted_thinking", "data": "c2VjcmV0"}],
    }


def test_usage_with_cache_tokens_and_without_usage() -> None:
    out = CHAT.parse_response(
        reply([{"text": "x"}], cacheReadInputTokens=100, cacheWriteInputTokens=20), make_ctx()
    )
    assert out["usage"] == {
        "prompt_tokens": 125,
        "completion_tokens": 3,
        "total_tokens": 128,
        "prompt_tokens_details": {"cached_tokens": 100},
    }
    raw = reply([{"text": "x"}])
    del raw["usage"]
    assert "usage" not in CHAT.parse_response(raw, make_ctx())


@pytest.mark.parametrize(
    "body",
    [{}, {"output": {}}, {"output": {"message": {"role": "assistant"}}}, [], {"message": "oops"}],
)
def test_untranslatable_chat_body_raises(body) -> None:
    with pytest.raises(ValueError):
        CHAT.parse_response(body, make_ctx())


def test_native_usage() -> None:
    usage = SPEC.native_usage(fixture_json("bedrock/cache/response.json"))
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens, usage.cached_tokens) == (
        1160,
        11,
        1171,
        1024,
    )
    assert SPEC.native_usage({"output": {}}) is None
    assert SPEC.native_usage([]) is None


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("400.json", "The provided model identifier is invalid."),
        ("403.json", "The security token included in the request is invalid."),
        (
            "403_iam.json",
            "User: arn:aws:iam::123456789012:user/gateway is not authorized to perform: bedrock:InvokeModel",
        ),
        ("429.json", "Too many requests, please wait before trying again."),
    ],
)
def test_errors(fixture: str, message: str) -> None:
    info = SPEC.parse_error(400, fixture_json(f"bedrock/errors/{fixture}"))
    assert info is not None and info.message.startswith(message)


@pytest.mark.parametrize("body", [{"error": "x"}, {"message": ""}, [], "text"])
def test_error_of_another_shape_is_left_to_the_pipeline(body) -> None:
    assert SPEC.parse_error(500, body) is None


def test_error_fixtures_match_the_exception_shapes() -> None:
    for name, shape in [
        ("400.json", "ValidationException"),
        ("403.json", "AccessDeniedException"),
        ("429.json", "ThrottlingException"),
    ]:
        assert_shape(fixture_json(f"bedrock/errors/{name}"), _SERVICE.shape_for(shape))


# --- region, credentials and the pipeline ----------------------------------------------------------


def bedrock_route(
    route_type: str = "llm/v1/chat", auth: dict[str, Any] | None = None, **options: Any
) -> Route:
    options.setdefault("bedrock", {"aws_region": "us-east-1"})
    return Route.model_validate(
        {
            "name": "bedrock",
            "route_type": route_type,
            "auth": {"aws_access_key_id": ACCESS_KEY, "aws_secret_access_key": SECRET_KEY}
            if auth is None
            else auth,
            "model": {"provider": "bedrock", "options": options},
        }
    )


def inbound(body: dict[str, Any], path: str = "/v1/chat/completions") -> Inbound:
    return Inbound("POST", "gw", path, [], {"authorization": "Bearer client-key"}, orjson.dumps(body))


@pytest.mark.parametrize(
    ("option", "env", "region"),
    [
        ("eu-west-3", {"AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "ap-south-1"}, "eu-west-3"),
        (None, {"AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "ap-south-1"}, "us-west-2"),
        (None, {"AWS_DEFAULT_REGION": "ap-south-1"}, "ap-south-1"),
    ],
)
def test_region_sources(option, env, region) -> None:
    options = ModelOptions.model_validate({"bedrock": {"aws_region": option}})
    assert bedrock.aws_region(options, env) == region
    assert SPEC.base_url(options, MODEL, env) == f"https://bedrock-runtime.{region}.amazonaws.com"


def test_missing_region_is_a_config_error() -> None:
    route = bedrock_route(bedrock=None)
    with pytest.raises(GatewayError) as err:
        prepare(route, inbound(chat(USER)), request_id="r", now=CREATED, env={})
    assert (err.value.status, err.value.code) == (500, "config_error")
    assert err.value.message == "AWS region not specified: set model.options.bedrock.aws_region or AWS_REGION"
    # with upstream_url the base URL is not needed, but the signature still is
    route = bedrock_route(bedrock=None, upstream_url="http://127.0.0.1:9999")
    with pytest.raises(GatewayError):
        prepare(route, inbound(chat(USER)), request_id="r", now=CREATED, env={})


def test_credentials_sources() -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "AKIAENV",
        "AWS_SECRET_ACCESS_KEY": "env-secret",
        "AWS_SESSION_TOKEN": "env-token",
    }
    auth = Auth(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, aws_session_token=SESSION_TOKEN
    )
    assert credentials_from(auth, env) == AwsCredentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)
    assert credentials_from(Auth(), env) == AwsCredentials("AKIAENV", "env-secret", "env-token")
    assert (
        credentials_from(Auth(), {k: v for k, v in env.items() if k != "AWS_SESSION_TOKEN"}).session_token
        is None
    )
    assert SECRET_KEY not in repr(credentials_from(auth, env))
    with pytest.raises(GatewayError) as err:
        credentials_from(Auth(), {"AWS_ACCESS_KEY_ID": "AKIAENV"})
    assert (err.value.status, err.value.code) == (500, "config_error")
    assert err.value.message.startswith("AWS credentials not found: set auth.aws_access_key_id")


def botocore_reference_auth(
    upstream: Upstream, credentials: Credentials, region: str, now: int, monkeypatch
) -> AWSRequest:
    """botocore's own add_auth over the same request, with its clock set to ``now``."""
    monkeypatch.setattr(
        botocore.auth,
        "get_current_datetime",
        lambda *a, **k: datetime.fromtimestamp(now, UTC).replace(tzinfo=None),
    )
    headers = {"Content-Type": upstream.set_headers["content-type"]}
    request = AWSRequest(method=upstream.method, url=upstream.url, headers=headers, data=upstream.body)
    SigV4Auth(credentials, "bedrock", region).add_auth(request)
    return request


@pytest.mark.parametrize(
    ("model", "top_p_sent"),
    [
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", False),
        ("anthropic.claude-opus-4-1-20250805-v1:0", False),
        ("global.anthropic.claude-haiku-4-5-20251001-v1:0", False),
        ("anthropic.claude-sonnet-4-20250514-v1:0", True),
        (MODEL, True),  # Claude 3.5
        ("amazon.nova-pro-v1:0", True),
    ],
)
def test_newer_claude_on_bedrock_gets_temperature_only(model, top_p_sent) -> None:
    route = bedrock_route(temperature=0.3)  # one from the route's defaults, one from the client
    prep = prepare(route, inbound(chat(USER, model=model, top_p=0.8)), request_id="r", now=CREATED, env={})
    sent = orjson.loads(prep.upstream.body)
    assert_valid_converse(sent, model, False, prep.upstream.path)
    expected = {"temperature": 0.3, "topP": 0.8} if top_p_sent else {"temperature": 0.3}
    assert sent["inferenceConfig"] == expected
    assert bool(prep.notes) is not top_p_sent


def test_pipeline_target_signature_and_body(monkeypatch) -> None:
    prep = prepare(bedrock_route(max_tokens=64), inbound(chat(USER)), request_id="r", now=CREATED, env={})
    up = prep.upstream
    assert up.url == f"https://bedrock-runtime.us-east-1.amazonaws.com/model/{ENCODED}/converse"
    assert orjson.loads(up.body) == {"messages": USER_BLOCKS, "inferenceConfig": {"maxTokens": 64}}
    assert up.set_headers["x-amz-date"] == "20260101T000000Z"
    assert up.set_headers["authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20260101/us-east-1/bedrock/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date, Signature="
    )
    assert "x-amz-security-token" not in up.set_headers
    # the client's own credentials never go up; stale signing headers are removed
    assert {"authorization", "x-api-key", "x-amz-security-token", "x-amz-date"} <= set(up.remove_headers)
    reference = botocore_reference_auth(
        up, Credentials(ACCESS_KEY, SECRET_KEY), "us-east-1", CREATED, monkeypatch
    )
    assert up.set_headers["authorization"] == reference.headers["Authorization"]
    assert up.set_headers["x-amz-date"] == reference.headers["X-Amz-Date"]


def test_signature_with_session_token_port_and_env_credentials(monkeypatch) -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "AKIAENVEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "env-secret-key",
        "AWS_SESSION_TOKEN": SESSION_TOKEN,
        "AWS_REGION": "eu-central-1",
    }
    route = bedrock_route(auth={}, bedrock=None, upstream_url="http://127.0.0.1:9999")
    prep = prepare(route, inbound(chat(USER, stream=True)), request_id="r", now=CREATED + 3725, env=env)
    up = prep.upstream
    assert up.url == f"http://127.0.0.1:9999/model/{ENCODED}/converse-stream"
    assert up.set_headers["x-amz-security-token"] == SESSION_TOKEN
    assert up.set_headers["x-amz-date"] == "20260101T010205Z"
    assert (
        "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token," in up.set_headers["authorization"]
    )
    assert "/20260101/eu-central-1/bedrock/aws4_request" in up.set_headers["authorization"]
    credentials = Credentials("AKIAENVEXAMPLE", "env-secret-key", SESSION_TOKEN)
    reference = botocore_reference_auth(up, credentials, "eu-central-1", CREATED + 3725, monkeypatch)
    assert up.set_headers["authorization"] == reference.headers["Authorization"]
    # the host as sent (mitmproxy writes the port when it is not the default) is what was signed
    assert signing_request(up).headers["host"] == "127.0.0.1:9999"


def test_signature_covers_a_query_and_changes_with_the_body(monkeypatch) -> None:
    route = bedrock_route(upstream_url="https://proxy.internal:8443/model/custom/converse?tenant=a%20b&x=1")
    first = prepare(route, inbound(chat(USER)), request_id="r", now=CREATED, env={}).upstream
    assert first.url == "https://proxy.internal:8443/model/custom/converse?tenant=a+b&x=1"
    reference = botocore_reference_auth(
        first, Credentials(ACCESS_KEY, SECRET_KEY), "us-east-1", CREATED, monkeypatch
    )
    assert first.set_headers["authorization"] == reference.headers["Authorization"]
    second = prepare(
        route, inbound(chat([{"role": "user", "content": "Hi!"}])), request_id="r", now=CREATED, env={}
    ).upstream
    assert first.set_headers["authorization"] != second.set_headers["authorization"]


def test_signature_and_secret_are_never_logged(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    prep = prepare(bedrock_route(), inbound(chat(USER)), request_id="r", now=CREATED, env={})
    signature = prep.upstream.set_headers["authorization"].rsplit("Signature=", 1)[1]
    assert signature not in caplog.text
    assert SECRET_KEY not in caplog.text
    assert SECRET_KEY in prep.secrets  # and the pipeline redacts it from anything it reports


def test_missing_botocore_is_a_clear_config_error(monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "botocore.auth", None)
    with pytest.raises(GatewayError) as err:
        prepare(bedrock_route(), inbound(chat(USER)), request_id="r", now=CREATED, env={})
    assert (err.value.status, err.value.code) == (500, "config_error")
    assert err.value.message == "AWS SigV4 signing needs botocore: install it with `pip install .[aws]`"


def test_passthrough_is_signed_too(monkeypatch) -> None:
    route = Route.model_validate(
        {
            "name": "native",
            "route_type": "llm/v1/chat",
            "llm_format": "bedrock",
            "auth": {"aws_access_key_id": ACCESS_KEY, "aws_secret_access_key": SECRET_KEY},
            "model": {"provider": "bedrock", "options": {"bedrock": {"aws_region": "us-west-2"}}},
        }
    )
    native = {"messages": USER_BLOCKS}
    request = Inbound(
        "POST",
        "gw",
        f"/model/{ENCODED}/converse",
        [],
        {"content-type": "application/json"},
        orjson.dumps(native),
    )
    prep = prepare(route, request, request_id="r", now=CREATED, env={})
    assert prep.upstream.url == f"https://bedrock-runtime.us-west-2.amazonaws.com/model/{ENCODED}/converse"
    assert prep.request_model == MODEL
    assert (
        "/us-west-2/bedrock/aws4_request, SignedHeaders=host;x-amz-date,"
        in prep.upstream.set_headers["authorization"]
    )
    answer = translate_response(prep, 200, fixture_bytes("bedrock/cache/response.json"))
    assert (answer.usage.prompt_tokens, answer.usage.cached_tokens) == (1160, 1024)


def test_pipeline_translates_errors_and_statistics() -> None:
    prep = prepare(bedrock_route(), inbound(chat(USER)), request_id="r", now=CREATED, env={})
    answer = translate_response(prep, 403, fixture_bytes("bedrock/errors/403.json"))
    assert orjson.loads(answer.body) == {
        "error": {
            "message": "The security token included in the request is invalid.",
            "type": "permission_error",
            "param": None,
            "code": None,
        }
    }
    ok = translate_response(prep, 200, fixture_bytes("bedrock/tools/response.json"))
    assert (ok.usage.prompt_tokens, ok.usage.completion_tokens) == (412, 118)
    assert ok.response_model == MODEL


def test_pipeline_embeddings_with_base64() -> None:
    body = {"model": "amazon.titan-embed-text-v2:0", "input": "x", "encoding_format": "base64"}
    prep = prepare(
        bedrock_route("llm/v1/embeddings"),
        inbound(body, "/v1/embeddings"),
        request_id="r",
        now=CREATED,
        env={},
    )
    assert (
        prep.upstream.url
        == "https://bedrock-runtime.us-east-1.amazonaws.com/model/amazon.titan-embed-text-v2%3A0/invoke"
    )
    answer = translate_response(prep, 200, orjson.dumps({"embedding": [0.5, -1.0], "inputTextTokenCount": 1}))
    data = orjson.loads(answer.body)["data"][0]
    assert data["embedding"] == base64.b64encode(b"\x00\x00\x00\x3f\x00\x00\x80\xbf").decode()


# --- stream -------------------------------------------------------------------------------------

STREAMS = ["chat", "completions", "stream_tools", "stream_reasoning", "stream_error"]


def stream_bytes(name: str) -> bytes:
    return fixture_bytes(f"bedrock/{name}/stream.eventstream")


def run_stream(raw: bytes, pieces: list[bytes] | None = None, **ctx_args: Any) -> tuple[bytes, Any]:
    ctx_args.setdefault("stream", True)
    ctx = make_ctx(**ctx_args)
    translator = CHAT.new_stream(ctx) if ctx.route_type == "llm/v1/chat" else COMPLETIONS.new_stream(ctx)
    return drive(translator, pieces if pieces is not None else [raw]), translator


def deltas(raw: bytes) -> list[tuple[dict[str, Any], str | None]]:
    out = []
    for frame in frames(raw):
        if isinstance(frame, dict) and frame.get("choices"):
            ChatCompletionChunk.model_validate(frame)
            assert (frame["id"], frame["created"], frame["object"]) == (
                "chatcmpl-req-123",
                CREATED,
                "chat.completion.chunk",
            )
            choice = frame["choices"][0]
            out.append((choice["delta"], choice["finish_reason"]))
    return out


@pytest.mark.parametrize("name", STREAMS)
def test_stream_fixtures_are_what_the_generator_makes(name: str) -> None:
    assert stream_bytes(name) == make_streams.build(FIXTURES / "bedrock" / name)


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self):
        yield self._data


@pytest.mark.parametrize("name", STREAMS)
def test_stream_fixtures_are_real_converse_streams(name: str) -> None:
    """botocore's ConverseStream parser reads every frame, and every payload matches its event shape."""
    parsed = []
    with pytest.raises(EventStreamError) if name == "stream_error" else _no_error():
        for event in EventStream(
            _Body(stream_bytes(name)), _STREAM_SHAPE, EventStreamJSONParser(), "ConverseStream"
        ):
            parsed.append(event)
    assert parsed
    for entry in fixture_json(f"bedrock/{name}/events.json"):
        member = entry.get("event") or entry["exception"]
        assert_shape(entry["payload"], _STREAM_SHAPE.members[member], member, extra=frozenset({"p"}))


class _no_error:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


def test_plain_text_stream() -> None:
    raw, translator = run_stream(stream_bytes("chat"), include_usage=True)
    assert deltas(raw) == [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "The capital"}, None),
        ({"content": " of Australia"}, None),
        ({"content": " is Canberra."}, None),
        ({}, "stop"),
    ]
    out = frames(raw)
    assert out[-2]["choices"] == [] and out[-2]["usage"] == {
        "prompt_tokens": 27,
        "completion_tokens": 10,
        "total_tokens": 37,
    }
    assert out[-1] == "[DONE]"
    assert translator.text == "The capital of Australia is Canberra."
    assert translator.usage.total_tokens == 37


def test_usage_chunk_only_when_asked() -> None:
    raw, translator = run_stream(stream_bytes("chat"))
    assert all(isinstance(f, str) or f["choices"] for f in frames(raw))
    assert translator.usage.prompt_tokens == 27  # statistics get it anyway


def test_parallel_tool_call_stream() -> None:
    raw, _ = run_stream(stream_bytes("stream_tools"))
    assert deltas(raw) == [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "I'll check both cities."}, None),
        (
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "tooluse_8xQbI2mRS0yXq1Zr3bJvWg",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            },
            None,
        ),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '{"location": "Pa'}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": 'ris, France", "unit": "celsius"}'}}]}, None),
        (
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "tooluse_Kd0Fz7tNQ9-6vO2W1aLc3A",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            },
            None,
        ),
        ({"tool_calls": [{"index": 1, "function": {"arguments": '{"location": "Berlin, Germany"'}}]}, None),
        ({"tool_calls": [{"index": 1, "function": {"arguments": ', "unit": "celsius"}'}}]}, None),
        (
            {
                "tool_calls": [
                    {
                        "index": 2,
                        "id": "tooluse_2Qd7HkT0SGm1bX4vYpNw8e",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": ""},
                    }
                ]
            },
            None,
        ),
        ({"tool_calls": [{"index": 2, "function": {"arguments": "{}"}}]}, None),  # no input streamed
        ({}, "tool_calls"),
    ]


SIGNED_REASONING = {
    "type": "thinking",
    "thinking": "1001 = 7 × 143, and 143 = 11 × 13.",  # noqa: RUF001
    "signature": "EqoBCkgIARABGAIiQKg2oqHD3zJlJm0ZHTNFTR9xCFlPGX+4zq0tDngR1mP7QK8zK8nM2yTnCqz4IhXc",
}


def test_reasoning_stream() -> None:
    raw, translator = run_stream(stream_bytes("stream_reasoning"))
    assert deltas(raw) == [
        ({"role": "assistant", "content": ""}, None),
        ({"reasoning_content": "1001 = 7 × 143, "}, None),  # noqa: RUF001
        ({"reasoning_content": "and 143 = 11 × 13."}, None),  # noqa: RUF001
        ({"thinking_blocks": [SIGNED_REASONING]}, None),  # whole, once its signature came
        ({"content": "No. 1001 = 7 × 11 × 13,"}, None),  # noqa: RUF001
        ({"content": " so it is not prime."}, None),
        ({}, "stop"),
    ]
    assert translator.usage.completion_tokens == 96


def test_exception_event_becomes_an_error_frame() -> None:
    raw, translator = run_stream(stream_bytes("stream_error"))
    out = frames(raw)
    assert deltas(raw) == [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "The theory of relativity"}, None),
    ]
    assert out[-2] == {
        "error": {
            "message": "Model stream ended unexpectedly: the model encountered an internal error.",
            "type": "api_error",
            "param": None,
            "code": "modelStreamErrorException",
        }
    }
    assert out[-1] == "[DONE]"
    assert translator.usage is None  # the gateway estimates it


def test_throttling_exception_and_error_messages() -> None:
    start = make_streams.encode_events([{"event": "messageStart", "payload": {"role": "assistant"}}])
    throttled = make_streams.encode_message(
        {
            ":exception-type": "throttlingException",
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        b'{"message":"Too many tokens, please wait before trying again."}',
    )
    out = frames(run_stream(start + throttled)[0])
    assert out[-2]["error"] == {
        "message": "Too many tokens, please wait before trying again.",
        "type": "rate_limit_error",
        "param": None,
        "code": "throttlingException",
    }
    error = make_streams.encode_message(
        {":message-type": "error", ":error-code": "InternalFailure", ":error-message": "boom"}, b""
    )
    out = frames(run_stream(start + error)[0])
    assert out[-2]["error"]["message"] == "boom" and out[-2]["error"]["code"] == "InternalFailure"


def test_corrupt_frame_is_an_error_not_a_crash() -> None:
    raw = bytearray(stream_bytes("chat"))
    second = int.from_bytes(raw[:4], "big")
    raw[second + 20] ^= 0xFF  # inside the second message's headers: its CRC no longer matches
    out = frames(run_stream(bytes(raw))[0])
    assert out[-2]["error"]["message"].startswith("the bedrock event stream is corrupt: ")
    assert out[-2]["error"]["code"] == "stream_error"
    assert out[-1] == "[DONE]"


def test_stream_cut_short_ends_with_an_error_frame() -> None:
    raw = stream_bytes("chat")
    out = frames(run_stream(raw[:-30])[0])  # inside the metadata message
    assert out[-2]["error"]["message"] == "the bedrock stream ended before the response was complete"
    assert out[-1] == "[DONE]"


def test_stream_that_stops_cleanly_without_metadata_is_complete() -> None:
    raw = stream_bytes("chat")
    last = len(make_streams.encode_events(fixture_json("bedrock/chat/events.json")[-1:]))
    raw_out, translator = run_stream(raw[:-last])
    assert deltas(raw_out)[-1] == ({}, "stop")
    assert frames(raw_out)[-1] == "[DONE]"
    # No metadata event, so no token counts: an estimate, marked as one (never zeros).
    assert translator.usage.estimated is True and translator.usage.completion_tokens > 0


def test_malformed_stop_reason_in_a_stream_is_an_error() -> None:
    events = [
        {"event": "messageStart", "payload": {"role": "assistant"}},
        {"event": "messageStop", "payload": {"stopReason": "malformed_tool_use"}},
    ]
    out = frames(run_stream(make_streams.encode_events(events))[0])
    assert (
        out[-2]["error"]["message"]
        == "the bedrock model returned malformed output (stopReason malformed_tool_use)"
    )


def test_completions_stream() -> None:
    raw, _ = run_stream(stream_bytes("completions"), route_type="llm/v1/completions", include_usage=True)
    out = [f for f in frames(raw) if isinstance(f, dict)]
    for frame in out:
        assert frame["object"] == "text_completion" and frame["id"] == "cmpl-req-123"
    assert "".join(f["choices"][0]["text"] for f in out if f["choices"]) == (
        "Waves fold into foam,\nsalt wind carries gull voices,\nthe tide keeps its time."
    )
    assert out[-2]["choices"][0]["finish_reason"] == "stop"
    assert out[-1]["usage"]["total_tokens"] == 41


def test_completions_stream_of_tool_calls_finishes_with_stop() -> None:
    raw, _ = run_stream(stream_bytes("stream_tools"), route_type="llm/v1/completions")
    out = [f for f in frames(raw) if isinstance(f, dict)]
    assert "tool_calls" not in raw.decode()
    assert out[-1]["choices"][0]["finish_reason"] == "stop"


def _reference(name: str) -> bytes:
    route_type = "llm/v1/completions" if name == "completions" else "llm/v1/chat"
    return run_stream(stream_bytes(name), route_type=route_type, include_usage=True)[0]


@pytest.mark.parametrize("name", STREAMS)
def test_every_byte_split_gives_the_same_output(name: str) -> None:
    raw = stream_bytes(name)
    expected = _reference(name)
    route_type = "llm/v1/completions" if name == "completions" else "llm/v1/chat"
    for cut in range(1, len(raw)):
        got = run_stream(raw, [raw[:cut], raw[cut:]], route_type=route_type, include_usage=True)[0]
        assert got == expected, f"split at byte {cut}"
    one_by_one = [raw[i : i + 1] for i in range(len(raw))]
    assert run_stream(raw, one_by_one, route_type=route_type, include_usage=True)[0] == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_splits_give_the_same_output(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(STREAMS))
    raw = stream_bytes(name)
    cuts = sorted(data.draw(st.sets(st.integers(1, len(raw) - 1), max_size=40)))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    route_type = "llm/v1/completions" if name == "completions" else "llm/v1/chat"
    assert run_stream(raw, pieces, route_type=route_type, include_usage=True)[0] == _reference(name)


def test_decoder_keeps_at_most_one_partial_frame() -> None:
    decoder = bedrock.EventStreamDecoder()
    raw = stream_bytes("stream_tools")
    first = int.from_bytes(raw[:4], "big")
    assert decoder.feed(raw[: first + 10]) and decoder.pending == 10
    assert len(decoder._data) == 10  # the completed frame was released


def test_emulator_sends_eventstream_fixtures_message_by_message() -> None:
    raw = stream_bytes("stream_tools")
    parts = split_stream(raw, ".eventstream")
    assert len(parts) == len(fixture_json("bedrock/stream_tools/events.json"))
    assert b"".join(parts) == raw
    for part in parts:
        assert int.from_bytes(part[:4], "big") == len(part)


# --- token counting and failed tools (Anthropic clients: transforms/ingress) ----------------------


def test_count_tokens_request_is_botocore_s() -> None:
    """CountTokens counts the Converse request the chat transform builds, cut to what
    ConverseTokensRequest holds; botocore's validator and serializer agree on path and body, and an
    inference profile is counted by its foundation model."""
    client = fixture_json("bedrock/tool_results/client.json")
    system = {"role": "system", "content": "Answer in one word."}
    body = {**client, "messages": [system, *client["messages"]], "max_tokens": 99, "temperature": 0.5}
    preq = bedrock.build_count_tokens(body, make_ctx(model=f"us.{MODEL}"))
    converse = CHAT.build_request(body, make_ctx()).body
    assert preq.method == "POST" and preq.path == f"/model/{ENCODED}/count-tokens"
    assert preq.body == {
        "input": {
            "converse": {
                "messages": converse["messages"],
                "system": [{"text": "Answer in one word."}],
                "toolConfig": converse["toolConfig"],
            }
        }
    }
    assert "inferenceConfig" in converse  # what CountTokens does not take was left out
    op = _SERVICE.operation_model("CountTokens")
    params = {"modelId": MODEL, **_wire_to_params(preq.body, op.input_shape, "body")}
    report = ParamValidator().validate(params, op.input_shape)
    assert not report.has_errors(), report.generate_report()
    wire = create_serializer("rest-json").serialize_to_request(params, op)
    assert wire["url_path"] == preq.path
    assert orjson.loads(wire["body"]) == preq.body


def test_count_tokens_answer() -> None:
    counter = SPEC.count_tokens
    assert counter is not None
    answer = fixture_json("bedrock/count_tokens/response.json")
    op = _SERVICE.operation_model("CountTokens")
    assert not ParamValidator().validate(answer, op.output_shape).has_errors()
    assert counter.parse_response(answer) == 19
    for bad in ({}, {"inputTokens": "19"}, [19]):
        with pytest.raises(ValueError, match="inputTokens"):
            counter.parse_response(bad)


def test_a_failed_tool_s_result_has_status_error() -> None:
    """The ingress adapter's mark (Anthropic's is_error) is Converse's toolResult.status; a result
    without it has no status."""
    client = fixture_json("bedrock/tool_results/client.json")
    messages = [dict(m) for m in client["messages"]]
    messages[2] = {**messages[2], TOOL_ERROR_MARK: True}
    out = CHAT.build_request({**client, "messages": messages}, make_ctx()).body
    results = [b["toolResult"] for m in out["messages"] for b in m["content"] if "toolResult" in b]
    assert [r.get("status") for r in results] == ["error", None]
    assert results[0]["content"] == [{"json": {"temperature": 18, "conditions": "sunny"}}]
    assert_valid_converse(out, MODEL, False, f"/model/{ENCODED}/converse")


# --- housekeeping -------------------------------------------------------------------------------


def test_fixture_folders_are_all_covered() -> None:
    folders = {p.name for p in (FIXTURES / "bedrock").iterdir() if p.is_dir()}
    # invoke_stream: native InvokeModelWithResponseStream chunks, read by tests/test_native.py
    covered = {
        *CHAT_CASES,
        *STREAMS,
        "embed_titan",
        "embed_cohere",
        "errors",
        "invoke_stream",
        "count_tokens",
    }
    assert folders == covered


def test_the_request_oracle_rejects_wrong_names() -> None:
    good = {"messages": USER_BLOCKS}
    path = f"/model/{ENCODED}/converse"
    assert_valid_converse(good, MODEL, False, path)
    for bad in (
        {"messages": [{"role": "user", "content": [{"txt": "Hi"}]}]},
        {"messages": [{"role": "human", "content": [{"text": "Hi"}]}]},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"text": "Hi", "image": {"format": "png", "source": {"bytes": "AAAA"}}}],
                }
            ]
        },
        {
            "messages": [
                {"role": "user", "content": [{"image": {"format": "bmp", "source": {"bytes": "AAAA"}}}]}
            ]
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"image": {"format": "png", "source": {"bytes": "not base64!"}}}],
                }
            ]
        },
        {**good, "inferenceConfig": {"max_tokens": 5}},
        {**good, "inferenceConfig": {"temperature": 1.5}},
        {
            **good,
            "toolConfig": {
                "tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {}}}}],
                "toolChoice": {"none": {}},
            },
        },
        {**good, "system": "Be brief."},
    ):
        with pytest.raises((AssertionError, ValueError)):
            assert_valid_converse(bad, MODEL, False, path)


def test_claude_s_matched_stop_sequence_in_a_stream_reaches_ingress_clients() -> None:
    """ConverseStream's messageStop carries the additionalModelResponseFields that were asked for."""
    events = [
        {"event": "messageStart", "payload": {"role": "assistant"}},
        {"event": "contentBlockDelta", "payload": {"contentBlockIndex": 0, "delta": {"text": "1 2 3"}}},
        {"event": "contentBlockStop", "payload": {"contentBlockIndex": 0}},
        {
            "event": "messageStop",
            "payload": {
                "stopReason": "stop_sequence",
                "additionalModelResponseFields": {"stop_sequence": "###"},
            },
        },
        {
            "event": "metadata",
            "payload": {
                "usage": {"inputTokens": 9, "outputTokens": 5, "totalTokens": 14},
                "metrics": {"latencyMs": 80},
            },
        },
    ]
    raw = make_streams.encode_events(events)
    ingress = dataclasses.replace(make_ctx(stream=True), extensions=True)
    out = frames(drive(CHAT.new_stream(ingress), [raw]))
    [finish] = finishing_choices(out)
    assert (finish["finish_reason"], finish[STOP_SEQUENCE_KEY]) == ("stop", "###")
    plain = frames(run_stream(raw)[0])
    assert not any(STOP_SEQUENCE_KEY in c for c in choices(plain))
