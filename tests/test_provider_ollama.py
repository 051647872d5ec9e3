"""Ollama's native API (provider ollama; mistral and llama2 with format ollama): exact bodies both ways.

Oracles: every request we build validates against the ``ollama`` Python client's request types and
uses only field names of Ollama's Go API (api/types.go: ``Message.tool_call_id``, ``ToolCall.id``
are newer than the Python client); every response and chunk we return parses with the openai SDK's
types without losing a field.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from conftest import fixture_bytes, fixture_json
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from streams import drive as run
from streams import frames as frames_to_events
from streams import splits

from transforms.config import ModelOptions, Route
from transforms.errors import GatewayError
from transforms.pipeline import prepare, translate_error, translate_response
from transforms.providers import ollama
from transforms.registry import spec_for
from transforms.types import CallContext, ErrorInfo, Inbound, Usage

ollama_types = pytest.importorskip("ollama._types")

CHAT, COMPLETIONS, EMBEDDINGS = "llm/v1/chat", "llm/v1/completions", "llm/v1/embeddings"
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def ctx(
    route_type: str = CHAT,
    *,
    stream: bool = False,
    provider: str = "ollama",
    model: str = "llama3.2",
    include_usage: bool = False,
) -> CallContext:
    return CallContext(
        "r", route_type, provider, model, ModelOptions(), stream, "req1", 1700000000, (), include_usage
    )


# --- request oracle ------------------------------------------------------------------------------

_GO_ONLY_MESSAGE_FIELDS = {"tool_call_id"}
_GO_ONLY_TOOL_CALL_FIELDS = {"id"}


def check_ollama_request(route_type: str, body: dict[str, Any]) -> None:
    """The body validates with the ollama client's types and uses no unknown field name."""
    model = {
        CHAT: ollama_types.ChatRequest,
        COMPLETIONS: ollama_types.GenerateRequest,
        EMBEDDINGS: ollama_types.EmbedRequest,
    }[route_type]
    model.model_validate(body)
    assert set(body) <= set(model.model_fields), set(body) - set(model.model_fields)
    assert set(body.get("options") or {}) <= set(ollama_types.Options.model_fields)
    for message in body.get("messages") or ():
        images = [ollama_types.Image(value=image) for image in message.get("images") or ()]
        assert [image.model_dump() for image in images] == message.get("images", [])  # the client's wire form
        ollama_types.Message.model_validate({**message, "images": images or None})
        assert set(message) <= set(ollama_types.Message.model_fields) | _GO_ONLY_MESSAGE_FIELDS
        for call in message.get("tool_calls") or ():
            allowed = set(ollama_types.Message.ToolCall.model_fields) | _GO_ONLY_TOOL_CALL_FIELDS
            assert set(call) <= allowed
            assert set(call["function"]) == {"name", "arguments"}
            assert isinstance(call["function"]["arguments"], dict)
    for tool in body.get("tools") or ():
        ollama_types.Tool.model_validate(tool)
        assert set(tool["function"]) <= set(ollama_types.Tool.Function.model_fields)


# --- requests ------------------------------------------------------------------------------------

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
        "strict": True,
    },
}
WEATHER_TOOL_OLLAMA = {
    "type": "function",
    "function": {k: v for k, v in WEATHER_TOOL["function"].items() if k != "strict"},
}

REQUESTS = [
    pytest.param(
        CHAT,
        {
            "model": "llama3.2",
            "messages": [
                {"role": "system", "content": "You are a terse assistant."},
                {"role": "user", "content": "What is 1 + 1?"},
            ],
            "temperature": 0.2,
            "max_tokens": 64,
        },
        False,
        "/api/chat",
        fixture_json("ollama/chat/request.json"),
        id="chat-fixture",
    ),
    pytest.param(
        CHAT,
        {
            "messages": [
                {"role": "developer", "content": "Answer in French."},
                {"role": "user", "content": "Hi"},
            ],
            "max_tokens": 10,
            "max_completion_tokens": 20,
            "top_p": 0.9,
            "top_k": 40,
            "seed": 7,
            "presence_penalty": 0.5,
            "frequency_penalty": -0.5,
            "stop": "END",
            "stream": True,
            "stream_options": {"include_usage": True},
            "user": "user-1234",
            "n": 1,
            "response_format": {"type": "text"},
            "tool_choice": "auto",
        },
        True,
        "/api/chat",
        {
            "model": "llama3.2",
            "stream": True,
            "options": {
                "num_predict": 20,
                "top_p": 0.9,
                "top_k": 40,
                "seed": 7,
                "presence_penalty": 0.5,
                "frequency_penalty": -0.5,
                "stop": ["END"],
            },
            "messages": [
                {"role": "system", "content": "Answer in French."},
                {"role": "user", "content": "Hi"},
            ],
        },
        id="all-options-stream",
    ),
    pytest.param(
        CHAT,
        {
            "messages": [
                {"role": "user", "content": "What is the weather in Toronto and Paris?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_a1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Toronto"}'},
                        },
                        {
                            "id": "call_b2",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "call_a1", "content": "11 degrees celsius"},
                {
                    "role": "tool",
                    "tool_call_id": "call_unknown",
                    "content": [{"type": "text", "text": "n/a"}],
                },
                {"role": "function", "name": "get_time", "content": "09:00"},
            ],
            "tools": [WEATHER_TOOL],
        },
        False,
        "/api/chat",
        {
            "model": "llama3.2",
            "stream": False,
            "messages": [
                {"role": "user", "content": "What is the weather in Toronto and Paris?"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "id": "call_a1",
                            "function": {"name": "get_weather", "arguments": {"city": "Toronto"}},
                        },
                        {"id": "call_b2", "function": {"name": "get_weather", "arguments": {}}},
                    ],
                },
                {
                    "role": "tool",
                    "content": "11 degrees celsius",
                    "tool_name": "get_weather",
                    "tool_call_id": "call_a1",
                },
                {"role": "tool", "content": "n/a", "tool_call_id": "call_unknown"},
                {"role": "tool", "content": "09:00", "tool_name": "get_time"},
            ],
            "tools": [WEATHER_TOOL_OLLAMA],
        },
        id="tools-and-history",
    ),
    pytest.param(
        CHAT,
        {
            "messages": [{"role": "user", "content": "Hi"}],
            "tools": [WEATHER_TOOL],
            "tool_choice": "none",
        },
        False,
        "/api/chat",
        {"model": "llama3.2", "stream": False, "messages": [{"role": "user", "content": "Hi"}]},
        id="tool-choice-none-hides-tools",
    ),
    pytest.param(
        CHAT,
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in this image?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": f"data:image/png;base64,{PIXEL}", "detail": "low"},
                        },
                        {"type": "text", "text": "Answer in one word."},
                        {"type": "image_url", "image_url": f"data:image/jpeg;base64,{PIXEL}"},
                    ],
                }
            ],
        },
        False,
        "/api/chat",
        {
            "model": "llama3.2",
            "stream": False,
            "messages": [
                {
                    "role": "user",
                    "content": "What is in this image?\nAnswer in one word.",
                    "images": [PIXEL, PIXEL],
                }
            ],
        },
        id="inline-images",
    ),
    pytest.param(
        CHAT,
        {
            "messages": [{"role": "user", "content": "List two colors as JSON."}],
            "response_format": {"type": "json_object"},
        },
        False,
        "/api/chat",
        {
            "model": "llama3.2",
            "stream": False,
            "messages": [{"role": "user", "content": "List two colors as JSON."}],
            "format": "json",
        },
        id="json-mode",
    ),
    pytest.param(
        CHAT,
        {
            "messages": [{"role": "user", "content": "Ollama is 22 years old."}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "person",
                    "strict": True,
                    "schema": {
                        "type": "object",
                        "properties": {"age": {"type": "integer"}},
                        "required": ["age"],
                    },
                },
            },
        },
        False,
        "/api/chat",
        {
            "model": "llama3.2",
            "stream": False,
            "messages": [{"role": "user", "content": "Ollama is 22 years old."}],
            "format": {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]},
        },
        id="json-schema",
    ),
    pytest.param(
        COMPLETIONS,
        {"model": "llama3.2", "prompt": "Say this is a test", "max_tokens": 16, "stop": ["\n\n"]},
        False,
        "/api/generate",
        fixture_json("ollama/generate/request.json"),
        id="generate-fixture",
    ),
    pytest.param(
        COMPLETIONS,
        {
            "prompt": ["def gcd(a, b):"],
            "suffix": "    return result",
            "temperature": 0,
            "stream": True,
            "echo": False,
        },
        True,
        "/api/generate",
        {
            "model": "llama3.2",
            "stream": True,
            "options": {"temperature": 0},
            "prompt": "def gcd(a, b):",
            "suffix": "    return result",
        },
        id="generate-suffix-single-item-list",
    ),
    pytest.param(
        EMBEDDINGS,
        {
            "model": "nomic-embed-text",
            "input": ["Why is the sky blue?", "Why is the grass green?"],
            "encoding_format": "base64",
        },
        False,
        "/api/embed",
        fixture_json("ollama/embed/request.json"),
        id="embed-fixture",
    ),
    pytest.param(
        EMBEDDINGS,
        {"input": "hello", "dimensions": 256, "user": "u1"},
        False,
        "/api/embed",
        {"model": "llama3.2", "input": "hello", "dimensions": 256},
        id="embed-dimensions",
    ),
]


@pytest.mark.parametrize(("route_type", "body", "stream", "path", "expected"), REQUESTS)
def test_build_request(route_type, body, stream, path, expected):
    model = expected["model"]
    request = (
        ollama.SPECS[0].routes[route_type].build_request(body, ctx(route_type, stream=stream, model=model))
    )
    assert request.path == path
    assert request.method == "POST"
    assert request.query == [] and request.headers == {}
    assert request.body == expected
    check_ollama_request(route_type, request.body)


def test_tool_call_arguments_become_objects_in_order():
    body = REQUESTS[2].values[1]
    sent = ollama.build_chat(body, ctx()).body
    assert (
        orjson.dumps(sent["messages"][1]["tool_calls"][0]["function"]["arguments"]) == b'{"city":"Toronto"}'
    )


REFUSALS = [
    (CHAT, {"n": 2}, "'n' greater than 1 is not supported by the ollama provider"),
    (CHAT, {"logprobs": True}, "'logprobs' is not supported by the ollama provider"),
    (CHAT, {"top_logprobs": 2}, "'top_logprobs' is not supported by the ollama provider"),
    (CHAT, {"logit_bias": {"50256": -100}}, "'logit_bias' is not supported by the ollama provider"),
    (
        CHAT,
        {"tools": [WEATHER_TOOL], "tool_choice": "required"},
        "'tool_choice' 'required' is not supported by the ollama provider",
    ),
    (
        CHAT,
        {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        "'tool_choice' 'function' is not supported by the ollama provider",
    ),
    (
        CHAT,
        {"tools": [WEATHER_TOOL], "parallel_tool_calls": False},
        "'parallel_tool_calls' set to false is not supported by the ollama provider",
    ),
    (
        CHAT,
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}],
                }
            ]
        },
        "'messages[0].content[0]': the ollama provider needs inline images (data:<mime>;base64,... URLs), not links to fetch",
    ),
    (
        CHAT,
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}],
                }
            ]
        },
        "'messages[0].content[0].type' 'input_audio' is not supported by the ollama provider",
    ),
    (
        CHAT,
        {
            "messages": [
                {
                    "role": "system",
                    "content": [
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}
                    ],
                }
            ]
        },
        "'messages[0].content' with images is not supported for this role by the ollama provider",
    ),
    (
        CHAT,
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}],
                }
            ]
        },
        "image data URLs must be base64-encoded (data:<mime>;base64,...)",
    ),
    (
        CHAT,
        {
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}],
                }
            ]
        },
        "messages[0].tool_calls[0]: function arguments must be a JSON object",
    ),
    (
        CHAT,
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
        "'response_format.json_schema.schema' is required for type json_schema",
    ),
    (COMPLETIONS, {"prompt": "a", "echo": True}, "'echo' is not supported by the ollama provider"),
    (
        COMPLETIONS,
        {"prompt": "a", "best_of": 3},
        "'best_of' greater than 1 is not supported by the ollama provider",
    ),
    (COMPLETIONS, {"prompt": "a", "logprobs": 0}, "'logprobs' is not supported by the ollama provider"),
    (
        COMPLETIONS,
        {"prompt": ["a", "b"]},
        "'prompt' as a list of several prompts is not supported by the ollama provider",
    ),
    (COMPLETIONS, {"prompt": [1, 2, 3]}, "'prompt' as token ids is not supported by the ollama provider"),
    (EMBEDDINGS, {"input": [[1, 2], [3]]}, "'input' as token ids is not supported by the ollama provider"),
]


@pytest.mark.parametrize(("route_type", "extra", "message"), REFUSALS)
def test_refusals_name_the_field_and_provider(route_type, extra, message):
    base = {CHAT: {"messages": [{"role": "user", "content": "Hi"}]}, COMPLETIONS: {}, EMBEDDINGS: {}}[
        route_type
    ]
    with pytest.raises(GatewayError) as err:
        ollama.SPECS[0].routes[route_type].build_request({**base, **extra}, ctx(route_type))
    assert err.value.status == 400
    assert err.value.message == message


def test_refusals_name_mistral_and_llama2_by_their_format_option():
    body = {"messages": [{"role": "user", "content": "Hi"}], "n": 3}
    with pytest.raises(GatewayError) as err:
        ollama.build_chat(body, ctx(provider="mistral"))
    assert (
        err.value.message
        == "'n' greater than 1 is not supported by the mistral (mistral_format: ollama) provider"
    )
    with pytest.raises(GatewayError) as err:
        ollama.build_chat(body, ctx(provider="llama2"))
    assert (
        err.value.message
        == "'n' greater than 1 is not supported by the llama2 (llama2_format: ollama) provider"
    )


# --- responses -----------------------------------------------------------------------------------


def check_openai(route_type: str, out: dict[str, Any]) -> None:
    """Parses with the openai SDK's type, and nothing we returned is lost on the way."""
    model = {CHAT: ChatCompletion, COMPLETIONS: Completion, EMBEDDINGS: CreateEmbeddingResponse}[route_type]
    parsed = model.model_validate(out)
    assert parsed.model_dump(mode="json", exclude_unset=True) == orjson.loads(orjson.dumps(out))


RESPONSES = [
    pytest.param(
        CHAT,
        fixture_json("ollama/chat/response.json"),
        {
            "id": "chatcmpl-req1",
            "object": "chat.completion",
            "created": 1751984467,
            "model": "llama3.2",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "1 + 1 = 2."},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 38, "completion_tokens": 9, "total_tokens": 47},
        },
        id="chat",
    ),
    pytest.param(
        CHAT,
        fixture_json("ollama/chat_tools/response.json"),
        {
            "id": "chatcmpl-req1",
            "object": "chat.completion",
            "created": 1751920373,
            "model": "llama3.1:8b",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "call_req1_0",
                                "type": "function",
                                "function": {
                                    "name": "get_weather",
                                    "arguments": '{"city":"Tokyo","unit":"celsius"}',
                                },
                            },
                            {
                                "id": "call_req1_1",
                                "type": "function",
                                "function": {"name": "get_time", "arguments": '{"timezone":"Asia/Tokyo"}'},
                            },
                        ],
                    },
                    "logprobs": None,
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": 212, "completion_tokens": 41, "total_tokens": 253},
        },
        id="chat-tool-calls-get-ids",
    ),
    pytest.param(
        CHAT,
        {
            "model": "qwen3:8b",
            "created_at": "2025-09-30T11:14:02.431870+02:00",
            "message": {
                "role": "assistant",
                "content": "Let me check.",
                "thinking": "Weather needs a tool.",
                "tool_calls": [
                    {"id": "call_k3x9q2mw", "function": {"index": 0, "name": "get_weather", "arguments": {}}}
                ],
            },
            "done": True,
            "done_reason": "length",
            "eval_count": 12,
        },
        {
            "id": "chatcmpl-req1",
            "object": "chat.completion",
            "created": 1759223642,
            "model": "qwen3:8b",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "Let me check.",
                        "tool_calls": [
                            {
                                "id": "call_k3x9q2mw",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": "{}"},
                            }
                        ],
                        "reasoning_content": "Weather needs a tool.",
                    },
                    "logprobs": None,
                    "finish_reason": "length",
                }
            ],
            # No prompt_eval_count (a cached prompt): no usage here; the pipeline estimates it.
        },
        id="chat-thinking-ids-length-offset-time",
    ),
    pytest.param(
        CHAT,
        {
            "model": "llama3.2",
            "created_at": "0001-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "load",
        },
        {
            "id": "chatcmpl-req1",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "llama3.2",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
        },
        id="chat-no-counts-zero-time",
    ),
    pytest.param(
        COMPLETIONS,
        fixture_json("ollama/generate/response.json"),
        {
            "id": "cmpl-req1",
            "object": "text_completion",
            "created": 1751984741,
            "model": "llama3.2",
            "choices": [{"index": 0, "text": "This is a test.", "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 29, "completion_tokens": 6, "total_tokens": 35},
        },
        id="generate",
    ),
    pytest.param(
        EMBEDDINGS,
        fixture_json("ollama/embed/response.json"),
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": vector}
                for i, vector in enumerate(fixture_json("ollama/embed/response.json")["embeddings"])
            ],
            "model": "nomic-embed-text",
            "usage": {"prompt_tokens": 16, "total_tokens": 16},
        },
        id="embed",
    ),
]


@pytest.mark.parametrize(("route_type", "upstream", "expected"), RESPONSES)
def test_parse_response(route_type, upstream, expected):
    out = ollama.SPECS[0].routes[route_type].parse_response(upstream, ctx(route_type))
    assert out == expected
    check_openai(route_type, out)


@pytest.mark.parametrize(
    ("route_type", "upstream", "error"),
    [
        (CHAT, {"model": "llama3.2", "done": True}, "'message' not in the ollama response"),
        (CHAT, [], "the ollama response is not a JSON object"),
        (CHAT, {"message": "hi"}, "'message' in the ollama response is not an object"),
        (CHAT, {"error": "model is loading"}, "model is loading"),
        (COMPLETIONS, {"model": "llama3.2"}, "'response' not in the ollama response"),
        (EMBEDDINGS, {"model": "x", "embedding": [0.1]}, "'embeddings' not in the ollama response"),
    ],
)
def test_untranslatable_responses_raise(route_type, upstream, error):
    with pytest.raises(ValueError, match="^" + error.replace("(", r"\(").replace(")", r"\)") + "$"):
        ollama.SPECS[0].routes[route_type].parse_response(upstream, ctx(route_type))


def test_errors_and_native_usage():
    assert ollama.parse_error(404, fixture_json("ollama/errors/404.json")) == ErrorInfo(
        "model 'llama3.3:70b' not found"
    )
    assert ollama.parse_error(
        400, {"error": {"message": "bad", "type": "invalid_request_error"}}
    ) == ErrorInfo("bad")
    assert ollama.parse_error(500, {"detail": "x"}) is None
    assert ollama.parse_error(500, "oops") is None
    assert ollama.usage_of(fixture_json("ollama/chat/response.json")) == Usage(38, 9, 47)
    assert ollama.usage_of({"model": "x"}) is None
    assert ollama.SPECS[0].native_usage is ollama.usage_of


# --- through the pipeline: spec selection, URLs, errors ------------------------------------------


def make_route(
    provider: str, route_type: str = CHAT, upstream_url: str = "http://ollama.internal:11434", **options: Any
) -> Route:
    return Route.model_validate(
        {
            "name": "r",
            "route_type": route_type,
            "model": {
                "provider": provider,
                "name": "llama3.2",
                "options": {"upstream_url": upstream_url, **options},
            },
        }
    )


def inbound(body: dict[str, Any]) -> Inbound:
    return Inbound("POST", "gw", "/v1/chat/completions", [], {}, orjson.dumps(body))


@pytest.mark.parametrize(
    ("provider", "options"),
    [("ollama", {}), ("mistral", {"mistral_format": "ollama"}), ("llama2", {"llama2_format": "ollama"})],
)
def test_every_ollama_route_uses_this_spec(provider, options):
    route = make_route(provider, **options)
    assert spec_for(route) is ollama.SPECS[0]
    prep = prepare(
        route, inbound({"messages": [{"role": "user", "content": "Hi"}]}), request_id="abc", now=1700000000
    )
    assert prep.upstream.url == "http://ollama.internal:11434/api/chat"
    assert orjson.loads(prep.upstream.body) == {
        "model": "llama3.2",
        "stream": False,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    assert prep.ctx.prompt_text == "Hi"


@pytest.mark.parametrize(
    ("upstream_url", "url"),
    [
        ("http://10.0.0.5:11434", "http://10.0.0.5:11434/api/generate"),
        ("http://10.0.0.5:11434/", "http://10.0.0.5:11434/api/generate"),
        ("https://gpu.example.com/ollama/api/generate", "https://gpu.example.com/ollama/api/generate"),
    ],
)
def test_upstream_url_rule(upstream_url, url):
    route = make_route("ollama", COMPLETIONS, upstream_url, max_tokens=32, temperature=0.7, top_k=20)
    body = {"prompt": "Hi", "stream": True}
    prep = prepare(
        route, Inbound("POST", "gw", "/v1/completions", [], {}, orjson.dumps(body)), request_id="a", now=1
    )
    assert prep.upstream.url == url
    assert orjson.loads(prep.upstream.body) == {
        "model": "llama3.2",
        "stream": True,
        "options": {"num_predict": 32, "temperature": 0.7, "top_k": 20},
        "prompt": "Hi",
    }


def test_mistral_without_upstream_url_is_refused_at_load():
    with pytest.raises(ValueError, match=r"must set 'model\.options\.upstream_url' for self-hosted"):
        Route.model_validate(
            {
                "name": "m",
                "route_type": CHAT,
                "model": {"provider": "mistral", "options": {"mistral_format": "ollama"}},
            }
        )


def test_upstream_error_keeps_ollamas_message():
    prep = prepare(
        make_route("ollama"),
        inbound({"messages": [{"role": "user", "content": "Hi"}]}),
        request_id="a",
        now=1,
    )
    body = orjson.loads(translate_error(prep, 404, fixture_bytes("ollama/errors/404.json")))
    assert body == {
        "error": {
            "message": "model 'llama3.3:70b' not found",
            "type": "not_found_error",
            "param": None,
            "code": None,
        }
    }
    answer = translate_response(prep, 200, fixture_bytes("ollama/chat/response.json"))
    assert answer.usage == Usage(38, 9, 47)
    assert answer.response_model == "llama3.2"


# --- streams -------------------------------------------------------------------------------------


def chunk(
    model: str, created: int, delta: dict[str, Any], finish: str | None = None, prefix: str = "chatcmpl-"
) -> dict:
    return {
        "id": f"{prefix}req1",
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


CHAT_STREAM = fixture_bytes("ollama/chat/stream.ndjson")
TOOLS_STREAM = fixture_bytes("ollama/chat_tools/stream.ndjson")
GENERATE_STREAM = fixture_bytes("ollama/generate/stream.ndjson")

CHAT_EXPECTED = [
    chunk("llama3.2", 1751984467, {"role": "assistant", "content": ""}),
    *(
        chunk("llama3.2", 1751984467, {"content": piece})
        for piece in ["1", " +", " ", "1", " =", " ", "2", "."]
    ),
    chunk("llama3.2", 1751984467, {}, "stop"),
    {
        "id": "chatcmpl-req1",
        "object": "chat.completion.chunk",
        "created": 1751984467,
        "model": "llama3.2",
        "choices": [],
        "usage": {"prompt_tokens": 38, "completion_tokens": 9, "total_tokens": 47},
    },
    "[DONE]",
]
TOOLS_EXPECTED = [
    chunk("qwen3:8b", 1759223642, {"role": "assistant", "content": ""}),
    chunk("qwen3:8b", 1759223642, {"reasoning_content": "The user wants the weather in Tokyo."}),
    chunk(
        "qwen3:8b",
        1759223642,
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_k3x9q2mw",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Tokyo","unit":"celsius"}'},
                }
            ]
        },
    ),
    chunk("qwen3:8b", 1759223642, {}, "tool_calls"),
    "[DONE]",
]
GENERATE_EXPECTED = [
    *(
        {
            "id": "cmpl-req1",
            "object": "text_completion",
            "created": 1751984741,
            "model": "llama3.2",
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
        }
        for text, finish in [
            ("This", None),
            (" is", None),
            (" a", None),
            (" test", None),
            (".", None),
            ("", "length"),
        ]
    ),
    "[DONE]",
]

STREAMS = [
    pytest.param(
        CHAT, CHAT_STREAM, True, CHAT_EXPECTED, Usage(38, 9, 47), "1 + 1 = 2.", "llama3.2", id="chat"
    ),
    pytest.param(CHAT, TOOLS_STREAM, False, TOOLS_EXPECTED, Usage(187, 36, 223), "", "qwen3:8b", id="tools"),
    pytest.param(
        COMPLETIONS,
        GENERATE_STREAM,
        False,
        GENERATE_EXPECTED,
        Usage(29, 5, 34),
        "This is a test.",
        "llama3.2",
        id="generate",
    ),
]


def check_chunks(route_type: str, events: list[Any]) -> None:
    for event in events[:-1]:
        if route_type == CHAT:
            parsed = ChatCompletionChunk.model_validate(event)
            assert parsed.model_dump(mode="json", exclude_unset=True) == event
        else:
            # The SDK types Completion.finish_reason as required; mid-stream chunks carry null as
            # OpenAI's own stream does (the SDK builds stream chunks without validating).
            choices = [{**c, "finish_reason": c["finish_reason"] or "stop"} for c in event["choices"]]
            parsed = Completion.model_validate({**event, "choices": choices})
            assert parsed.model_dump(mode="json", exclude_unset=True) == {**event, "choices": choices}


@pytest.mark.parametrize(
    ("route_type", "data", "include_usage", "expected", "usage", "text", "model"), STREAMS
)
def test_stream_translation(route_type, data, include_usage, expected, usage, text, model):
    translator = (
        ollama.SPECS[0]
        .routes[route_type]
        .new_stream(ctx(route_type, stream=True, include_usage=include_usage))
    )
    events = frames_to_events(run(translator, [data]))
    assert events == expected
    check_chunks(route_type, events)
    assert translator.usage == usage
    assert translator.text == text
    assert translator.response_model == model


@pytest.mark.parametrize(("route_type", "data", "include_usage", "expected"), [p.values[:4] for p in STREAMS])
def test_stream_at_every_byte_split(route_type, data, include_usage, expected):
    whole = run(
        ollama.SPECS[0]
        .routes[route_type]
        .new_stream(ctx(route_type, stream=True, include_usage=include_usage)),
        [data],
    )
    for cut in range(1, len(data)):
        translator = (
            ollama.SPECS[0]
            .routes[route_type]
            .new_stream(ctx(route_type, stream=True, include_usage=include_usage))
        )
        assert run(translator, [data[:cut], data[cut:]]) == whole


@given(
    st.sampled_from([CHAT_STREAM, TOOLS_STREAM]),
    st.lists(st.integers(min_value=1, max_value=2000), max_size=40),
)
@settings(max_examples=150, deadline=None)
def test_stream_random_splits(data, cuts):
    whole = run(ollama.new_stream(ctx(stream=True, include_usage=True)), [data])
    assert run(ollama.new_stream(ctx(stream=True, include_usage=True)), splits(data, cuts)) == whole


def test_stream_bytes_split_inside_a_multibyte_character():
    line = '{"model":"llama3.2","created_at":"2025-07-08T14:21:07Z","message":{"role":"assistant","content":"très ✓"},"done":false}\n'
    done = '{"model":"llama3.2","created_at":"2025-07-08T14:21:07Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop"}\n'
    data = (line + done).encode()
    cut = data.index("✓".encode()) + 1
    translator = ollama.new_stream(ctx(stream=True))
    events = frames_to_events(run(translator, [data[:cut], data[cut:]]))
    assert events[1]["choices"][0]["delta"] == {"content": "très ✓"}
    assert translator.usage.estimated is True  # no counts reported: estimated, never zeros


def test_stream_error_line_ends_the_stream_with_an_openai_error():
    translator = ollama.new_stream(ctx(stream=True))
    events = frames_to_events(run(translator, [fixture_bytes("ollama/errors/stream_error.ndjson")]))
    assert [e["choices"][0]["delta"] for e in events[:3]] == [
        {"role": "assistant", "content": ""},
        {"content": "The"},
        {"content": " answer"},
    ]
    assert events[3] == {
        "error": {
            "message": "an error was encountered while running the model: unexpected EOF",
            "type": "api_error",
            "param": None,
            "code": "upstream_error",
        }
    }
    assert events[4:] == ["[DONE]"]


def test_truncated_stream_says_so():
    data = CHAT_STREAM[: CHAT_STREAM.rindex(b'{"model"')]  # everything but the done line
    events = frames_to_events(run(ollama.new_stream(ctx(stream=True)), [data]))
    assert events[-2]["error"]["message"] == "the ollama stream ended before the response was complete"
    assert events[-1] == "[DONE]"
    assert all("finish_reason" not in e or e["choices"][0]["finish_reason"] is None for e in events[:-2])


def test_stream_content_in_the_done_line_and_several_tool_lines():
    lines = [
        {
            "model": "m",
            "created_at": "2025-01-01T00:00:00Z",
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "a", "arguments": {"x": 1}}}],
            },
            "done": False,
        },
        {
            "model": "m",
            "created_at": "2025-01-01T00:00:01Z",
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "b", "arguments": {}}}],
            },
            "done": False,
        },
        {
            "model": "m",
            "created_at": "2025-01-01T00:00:02Z",
            "message": {"role": "assistant", "content": "!"},
            "done": True,
        },
    ]
    data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    events = frames_to_events(run(ollama.new_stream(ctx(stream=True)), [data]))
    deltas = [e["choices"][0]["delta"] for e in events[:-1]]
    assert deltas[1:] == [
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_req1_0",
                    "type": "function",
                    "function": {"name": "a", "arguments": '{"x":1}'},
                }
            ]
        },
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_req1_1",
                    "type": "function",
                    "function": {"name": "b", "arguments": "{}"},
                }
            ]
        },
        {"content": "!"},
        {},
    ]
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert events[0]["created"] == 1735689600
