"""The Anthropic Messages ingress adapter, pure: requests, answers, stream events and errors, checked
against the anthropic SDK's own types (and the openai SDK's for the chat side)."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest
from anthropic.types import ErrorResponse, Message, MessageCreateParams, RawMessageStreamEvent
from conftest import fixture_bytes
from openai.types.chat import ChatCompletion
from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming
from pydantic import TypeAdapter
from streams import drive, splits

from transforms.config import ModelOptions, Route
from transforms.errors import GatewayError
from transforms.ingress import IngressStream, client_error, ingress_for, local_answer
from transforms.ingress.anthropic import MessagesEvents, echo, error_body, from_chat, notes, to_chat
from transforms.pipeline import prepare, translate_response
from transforms.providers.gemini import SPECS as GEMINI_SPECS
from transforms.stream import OpenAIStream, SSEParser
from transforms.types import (
    STOP_SEQUENCE_KEY,
    WEB_SEARCH_KEY,
    WEB_SEARCH_REQUIRED,
    CallContext,
    Inbound,
    Usage,
)

EVENT = TypeAdapter(RawMessageStreamEvent)
CTX = CallContext("r", "llm/v1/chat", "openai", "gpt-4o-mini", ModelOptions(), True, "abc", 1700000000)
PDF = "JVBERi0xLjQK"
PNG = "iVBORw0KGgo="

REQUEST: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 512,
    "system": [
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Be kind."},
    ],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look:"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
                {
                    "type": "document",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
                },
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Here:"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "21C"}],
                },
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "no clock", "is_error": True},
            ],
        },
    ],
    "tools": [
        {
            "name": "get_weather",
            "description": "Weather",
            "input_schema": {"type": "object", "properties": {}},
        },
        {"name": "get_time", "input_schema": {"type": "object"}, "defer_loading": True},
        {"type": "web_search_20250305", "name": "web_search"},
    ],
    "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
    "stop_sequences": ["END"],
    "temperature": 0.5,
    "top_p": 0.9,
    "top_k": 40,
    "metadata": {"user_id": "user-7"},
    "thinking": {"type": "enabled", "budget_tokens": 2048},
    "stream": True,
}

CHAT: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "messages": [
        {"role": "system", "content": "Be brief.\n\nBe kind."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look:"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
                {
                    "type": "file",
                    "file": {"filename": "document.pdf", "file_data": f"data:application/pdf;base64,{PDF}"},
                },
            ],
        },
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {"id": "toolu_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            ],
            # The signed thinking rides along; the provider puts it back in front of the calls.
            "thinking_blocks": [{"type": "thinking", "thinking": "hmm", "signature": "sig"}],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "21C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "no clock", "_ai_proxy_tool_error": True},
        {"role": "user", "content": "Here:"},
    ],
    "max_tokens": 512,
    "stop": ["END"],
    "temperature": 0.5,
    "top_p": 0.9,
    "top_k": 40,
    "user": "user-7",
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather",
                "parameters": {"type": "object", "properties": {}},
            },
        },
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
    ],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "parallel_tool_calls": False,
    "stream": True,
    "thinking": {"type": "enabled", "budget_tokens": 2048},
}


def test_request_to_chat():
    TypeAdapter(MessageCreateParams).validate_python(REQUEST)  # the input is a real Messages request
    out = to_chat(REQUEST)
    assert out == CHAT
    TypeAdapter(CompletionCreateParamsNonStreaming).validate_python({**out, "stream": False})


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        (
            {"type": "auto", "disable_parallel_tool_use": True},
            {"tool_choice": "auto", "parallel_tool_calls": False},
        ),
    ],
)
def test_tool_choice(choice, expected):
    out = to_chat({"messages": [], "tools": REQUEST["tools"][:1], "tool_choice": choice})
    assert {k: out[k] for k in ("tool_choice", "parallel_tool_calls") if k in out} == expected


def test_plain_requests_and_system_turns():
    out = to_chat(
        {
            "model": "m",
            "max_tokens": 5,
            "system": "sys",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "system", "content": [{"type": "text", "text": "reminder"}]},
                {"role": "assistant", "content": "hello"},
            ],
        }
    )
    assert out == {
        "model": "m",
        "max_tokens": 5,
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "reminder"},
            {"role": "assistant", "content": "hello"},
        ],
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "messages: Field required"),
        (
            {"messages": [{"role": "bot", "content": "x"}]},
            "messages[0].role: 'bot' is not one of user, assistant",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "video"}]}]},
            "messages[0].content[0].type: 'video' is not supported in a user turn",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
            "messages[0].content[0].tool_use_id: required",
        ),
        (
            {"messages": [], "tools": [{"name": "t"}], "tool_choice": {"type": "maybe"}},
            "tool_choice.type: 'maybe' is not one of auto, any, tool, none",
        ),
    ],
)
def test_bad_requests_are_400s(body, message):
    with pytest.raises(GatewayError) as err:
        to_chat(body)
    assert (err.value.status, err.value.message) == (400, message)


# --- answers --------------------------------------------------------------------------------------


def chat_answer(message: dict[str, Any], finish: str) -> dict[str, Any]:
    out = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", **message},
                "finish_reason": finish,
                "logprobs": None,
            }
        ],
    }
    ChatCompletion.model_validate(out)
    return out


def test_answer_with_thinking_text_and_tools():
    chat = chat_answer(
        {
            "content": "Let me look.",
            "reasoning_content": "The user wants weather.",
            "tool_calls": [
                {
                    "id": "call_9",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        "tool_calls",
    )
    usage = Usage(prompt_tokens=100, completion_tokens=20, total_tokens=120, cached_tokens=60)
    out = from_chat(chat, usage, CTX)
    assert out == {
        "id": "msg_chatcmpl-1",
        "type": "message",
        "role": "assistant",
        "model": "gpt-4o-mini-2024-07-18",
        "content": [
            {"type": "thinking", "thinking": "The user wants weather.", "signature": ""},
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "call_9", "name": "get_weather", "input": {"city": "Oslo"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 40,
            "output_tokens": 20,
            "cache_read_input_tokens": 60,
            "cache_creation_input_tokens": 0,
        },
    }
    assert Message.model_validate(out).model_dump(exclude_unset=True) == out  # nothing lost


@pytest.mark.parametrize(
    ("finish", "reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
        ("tool_calls", "end_turn"),
    ],
)
def test_stop_reasons(finish, reason):
    out = from_chat(chat_answer({"content": "x"}, finish), None, CTX)
    assert out["stop_reason"] == reason  # tool_calls without a call is no tool_use
    Message.model_validate(out)


# --- streams --------------------------------------------------------------------------------------


def events(raw: bytes) -> list[dict[str, Any]]:
    """Our Anthropic SSE output as parsed events; each is ``event: <type>`` + one data line and
    parses as the SDK's RawMessageStreamEvent (error events as ErrorResponse)."""
    out = []
    parser = SSEParser()
    for event in [*parser.feed(raw), *parser.finish()]:
        data = orjson.loads(event.data)
        assert event.event == data["type"]
        if data["type"] == "error":
            ErrorResponse.model_validate(data)
        elif data["type"] == "ping":  # not among the SDK's event types: its stream skips pings
            assert data == {"type": "ping"}
        else:
            assert EVENT.validate_python(data).model_dump(exclude_unset=True) == data
        out.append(data)
    return out


def chunk_frames(deltas: list[tuple[dict[str, Any], str | None]], usage: dict[str, int] | None) -> bytes:
    frames = []
    for delta, finish in deltas:
        chunk = {
            "id": "chatcmpl-s",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-x",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        frames.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
    if usage is not None:
        chunk = {
            "id": "chatcmpl-s",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-x",
            "choices": [],
            "usage": usage,
        }
        frames.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
    return b"".join(frames) + b"data: [DONE]\n\n"


MIXED = chunk_frames(
    [
        ({"role": "assistant", "content": ""}, None),
        ({"reasoning_content": "Think"}, None),
        ({"reasoning_content": "ing."}, None),
        ({"content": "Hello"}, None),
        ({"content": " there"}, None),
        (
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "f", "arguments": ""},
                    }
                ]
            },
            None,
        ),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '{"x":'}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": " 1}"}}]}, None),
        (
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "g", "arguments": "{}"},
                    }
                ]
            },
            None,
        ),
        ({}, "tool_calls"),
    ],
    {
        "prompt_tokens": 30,
        "completion_tokens": 12,
        "total_tokens": 42,
        "prompt_tokens_details": {"cached_tokens": 10},
    },
)


def ingress_stream() -> IngressStream:
    return IngressStream(OpenAIStream(), MessagesEvents(CTX), "prompt")


def test_stream_every_event_type():
    out = events(drive(ingress_stream(), [MIXED]))
    assert [
        (e["type"], e.get("index"), (e.get("delta") or e.get("content_block") or {}).get("type")) for e in out
    ] == [
        ("message_start", None, None),
        ("content_block_start", 0, "thinking"),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, "text"),
        ("content_block_delta", 1, "text_delta"),
        ("content_block_delta", 1, "text_delta"),
        ("content_block_stop", 1, None),
        ("content_block_start", 2, "tool_use"),
        ("content_block_delta", 2, "input_json_delta"),
        ("content_block_delta", 2, "input_json_delta"),
        ("content_block_stop", 2, None),
        ("content_block_start", 3, "tool_use"),
        ("content_block_delta", 3, "input_json_delta"),
        ("content_block_stop", 3, None),
        ("message_delta", None, None),
        ("message_stop", None, None),
    ]
    assert out[0]["message"]["id"] == "msg_chatcmpl-s" and out[0]["message"]["model"] == "gpt-x"
    assert out[9]["content_block"] == {"type": "tool_use", "id": "call_a", "name": "f", "input": {}}
    assert [e["delta"]["partial_json"] for e in out[10:12]] == ['{"x":', " 1}"]
    assert out[-2]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert out[-2]["usage"] == {
        "input_tokens": 20,
        "output_tokens": 12,
        "cache_read_input_tokens": 10,
        "cache_creation_input_tokens": 0,
    }


def test_stream_at_every_byte_split():
    whole = drive(ingress_stream(), [MIXED])
    for cut in range(1, len(MIXED)):
        assert drive(ingress_stream(), splits(MIXED, [cut])) == whole, cut


def test_a_provider_stream_chained_at_every_split():
    """Gemini's own translator first, then the ingress: the usage arrives in message_delta."""
    raw = fixture_bytes("gemini/stream_tools/stream.sse")
    ctx = CallContext("r", "llm/v1/chat", "gemini", "gemini-2.5-flash", ModelOptions(), True, "g1", 1)
    spec = GEMINI_SPECS[0].routes["llm/v1/chat"]

    def run(pieces: list[bytes]) -> bytes:
        return drive(IngressStream(spec.new_stream(ctx), MessagesEvents(ctx), ""), pieces)

    whole = run([raw])
    out = events(whole)
    blocks = [e["content_block"] for e in out if e["type"] == "content_block_start"]
    assert [b.get("name", b["type"]) for b in blocks] == ["text", "get_weather", "get_weather", "get_time"]
    assert out[-2]["delta"]["stop_reason"] == "tool_use" and out[-1]["type"] == "message_stop"
    assert out[-2]["usage"]["output_tokens"] > 0
    for cut in range(1, len(raw), 7):
        assert run(splits(raw, [cut])) == whole, cut


def test_stream_cut_short_and_error_frames():
    cut = chunk_frames([({"content": "Hi"}, None)], None).removesuffix(b"data: [DONE]\n\n")
    out = events(drive(ingress_stream(), [cut]))
    assert [e["type"] for e in out] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "error",
    ]
    assert out[-1]["error"]["type"] == "api_error"
    failing = cut + b'data: {"error": {"message": "overloaded", "type": "api_error"}}\n\n'
    out = events(drive(ingress_stream(), [failing]))
    assert out[-1] == {"type": "error", "error": {"type": "api_error", "message": "overloaded"}}


def test_keepalive_is_a_ping_after_message_start():
    stream = ingress_stream()
    first = stream.feed(MIXED[: MIXED.index(b"\n\n") + 2])  # the role chunk: message_start
    assert [e["type"] for e in events(b"".join(first))] == ["message_start"]
    assert events(b"".join(stream.keepalive())) == [{"type": "ping"}]
    rest = drive(stream, [MIXED[MIXED.index(b"\n\n") + 2 :]])
    assert stream.keepalive() == []  # the message ended: nothing more
    assert [e["type"] for e in events(rest)][-1] == "message_stop"


def test_keepalive_before_the_first_chunk_starts_the_message():
    stream = ingress_stream()
    out = events(b"".join(stream.keepalive() + stream.keepalive()))
    assert [e["type"] for e in out] == ["message_start", "ping", "ping"]
    assert out[0]["message"]["id"] == "msg_abc" and out[0]["message"]["model"] == "gpt-4o-mini"
    later = events(drive(stream, [MIXED]))  # the provider's chunks do not start it again
    assert [e["type"] for e in later].count("message_start") == 0
    assert later[-1] == {"type": "message_stop"}


# --- errors and routes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (529, "overloaded_error"),
    ],
)
def test_error_bodies(status, kind):
    body = orjson.loads(error_body(status, "no"))
    assert body == {"type": "error", "error": {"type": kind, "message": "no"}}
    ErrorResponse.model_validate(body)


def test_413_is_request_too_large():
    assert orjson.loads(error_body(413, "big")) == {
        "type": "error",
        "error": {"type": "request_too_large", "message": "big"},
    }


def _route(provider: str, **extra: Any) -> Route:
    options = {"upstream_url": "http://127.0.0.1:9"} | (
        {"anthropic_version": "2023-06-01"} if provider == "anthropic" else {}
    )
    return Route.model_validate(
        {
            "name": "r",
            "route_type": "llm/v1/chat",
            "model": {"provider": provider, "options": options},
            **extra,
        }
    )


def test_which_routes_translate():
    assert ingress_for(_route("openai", llm_format="anthropic")) is not None
    assert ingress_for(_route("anthropic", llm_format="anthropic")) is None  # native passthrough
    assert ingress_for(_route("openai")) is None
    openai_error = GatewayError(400, "bad").body()
    assert client_error(_route("openai"), 400, openai_error) == openai_error
    assert orjson.loads(client_error(_route("gemini", llm_format="anthropic"), 400, openai_error)) == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "bad"},
    }


def test_pipeline_leaves_out_what_the_provider_cannot_narrow():
    """Gemini refuses parallel_tool_calls=false from OpenAI clients; from Anthropic clients it is
    left out (it only narrows what the model may do) and noted once."""
    route = _route(
        "gemini", llm_format="anthropic", auth={"header_name": "x-goog-api-key", "header_value": "k"}
    )
    body = {
        "model": "gemini-2.5-flash",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": REQUEST["tools"][:1],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    }
    inbound = Inbound(
        "POST",
        "",
        "/x/v1/messages",
        [("beta", "true")],
        {"anthropic-version": "2023-06-01"},
        orjson.dumps(body),
    )
    prep = prepare(route, inbound, request_id="1", now=1)
    assert prep.ingress is not None and not prep.passthrough
    assert list(prep.notes.values()) == [
        "anthropic clients' parallel_tool_calls left out: gemini cannot express it"
    ]
    sent = orjson.loads(prep.upstream.body)
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    assert "anthropic-version" in prep.upstream.remove_headers
    answer = translate_response(prep, 200, fixture_bytes("gemini/chat/response.json"))
    message = Message.model_validate_json(answer.body)
    assert (message.content[0].text, message.usage.input_tokens, message.usage.output_tokens) == (
        "1 + 1 = 2.",
        14,
        7,
    )  # type: ignore[union-attr]
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (14, 7)  # type: ignore[union-attr]
    failed = translate_response(prep, 429, fixture_bytes("gemini/errors/429.json"))
    assert orjson.loads(failed.body)["error"]["type"] == "rate_limit_error"


def test_hostile_tool_input_is_a_400():
    """A tool_use input nested deeper than JSON text can be written (orjson reads 1024 levels and
    writes 255) is the client's error, not the gateway's."""
    deep = b'{"a":' * 400 + b"{}" + b"}" * 400
    block = b'{"type": "tool_use", "id": "t", "name": "f", "input": ' + deep + b"}"
    raw = b'{"model": "m", "max_tokens": 5, "messages": [{"role": "assistant", "content": [' + block + b"]}]}"
    inbound = Inbound("POST", "", "/x/v1/messages", [], {}, raw)
    with pytest.raises(GatewayError) as err:
        prepare(_route("openai", llm_format="anthropic"), inbound, request_id="1", now=1)
    assert err.value.status == 400 and "nested too deeply" in err.value.message


def test_other_paths_and_methods_are_404s_before_the_body_is_read():
    route = _route("openai", llm_format="anthropic")
    for method, path in (("GET", "/x/v1/messages"), ("POST", "/x/v1/chat/completions")):
        with pytest.raises(GatewayError) as err:
            prepare(route, Inbound(method, "", path, [], {}, b""), request_id="1", now=1)
        assert err.value.status == 404
        assert (
            err.value.message == f"{method} {path} is not served: anthropic clients POST to .../v1/messages"
        )


# --- a failed tool's result, per provider ---------------------------------------------------------

FAILED_TOOL = {
    "model": "m",
    "max_tokens": 50,
    "messages": [
        {"role": "user", "content": "Weather and time?"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "21C"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "no clock", "is_error": True},
            ],
        },
    ],
}
BEDROCK_AUTH = {"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE", "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG"}
BEDROCK_OPTIONS = {"bedrock": {"aws_region": "us-east-1"}}


def _ingress_route(
    provider: str,
    name: str | None = None,
    auth: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    **route: Any,
) -> Route:
    options = {"upstream_url": "http://127.0.0.1:9"} if options is None else options
    return Route.model_validate(
        {
            "name": "r",
            "route_type": "llm/v1/chat",
            "llm_format": "anthropic",
            "model": {"provider": provider, "name": name, "options": options},
            **({"auth": auth} if auth else {}),
            **route,
        }
    )


def _sent(route: Route, body: dict[str, Any], path: str = "/x/v1/messages") -> dict[str, Any]:
    prep = prepare(route, Inbound("POST", "", path, [], {}, orjson.dumps(body)), request_id="1", now=1)
    assert b"_ai_proxy" not in prep.upstream.body  # the gateway's own marks never reach a provider
    return orjson.loads(prep.upstream.body)


def test_a_failed_tool_is_bedrock_s_status_error():
    route = _ingress_route("bedrock", auth=BEDROCK_AUTH, options=BEDROCK_OPTIONS)
    user = _sent(route, FAILED_TOOL)["messages"][2]
    assert user["content"] == [
        {"toolResult": {"toolUseId": "toolu_1", "content": [{"text": "21C"}]}},
        {"toolResult": {"toolUseId": "toolu_2", "content": [{"text": "no clock"}], "status": "error"}},
    ]


@pytest.mark.parametrize("provider", ["openai", "ollama", "cohere", "huggingface"])
def test_a_failed_tool_is_marked_text_where_there_is_no_flag(provider):
    messages = _sent(_ingress_route(provider, name="m"), FAILED_TOOL)["messages"]
    tools = [m for m in messages if m["role"] == "tool"]
    assert [(m.get("tool_call_id"), m["content"]) for m in tools] == [
        ("toolu_1", "21C"),
        ("toolu_2", "[tool error] no clock"),
    ]


def test_a_failed_tool_is_marked_text_on_gemini():
    route = _ingress_route("gemini", auth={"header_name": "x-goog-api-key", "header_value": "k"})
    parts = _sent(route, FAILED_TOOL)["contents"][2]["parts"]
    assert [p["functionResponse"] for p in parts] == [
        {"name": "get_weather", "response": {"result": "21C"}},
        {"name": "get_time", "response": {"result": "[tool error] no clock"}},
    ]


# --- count_tokens by the provider's own counting API ---------------------------------------------

COUNT_PATH = "/x/v1/messages/count_tokens"
COUNT = {
    "system": "Be brief.",
    "messages": [{"role": "user", "content": "Hi"}],
    "stream": True,  # meaningless for a count: never makes the count a stream
}


def test_count_tokens_goes_to_gemini_s_count_tokens():
    route = _ingress_route(
        "gemini",
        name="gemini-2.5-flash",
        auth={"header_name": "x-goog-api-key", "header_value": "k"},
        response_streaming="always",
    )
    assert local_answer(route, "POST", COUNT_PATH, orjson.dumps(COUNT), 1) is None  # not estimated
    inbound = Inbound("POST", "", COUNT_PATH, [("beta", "true")], {}, orjson.dumps(COUNT))
    prep = prepare(route, inbound, request_id="1", now=1)
    assert prep.counts_tokens and not prep.stream
    up = prep.upstream
    assert (up.method, up.path, up.query) == ("POST", "/v1beta/models/gemini-2.5-flash:countTokens", [])
    assert up.set_headers["x-goog-api-key"] == "k"
    assert orjson.loads(up.body) == {
        "generateContentRequest": {
            "model": "models/gemini-2.5-flash",
            "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
        }
    }
    answer = translate_response(prep, 200, fixture_bytes("gemini/count_tokens/response.json"))
    assert orjson.loads(answer.body) == {"input_tokens": 31}
    assert answer.usage == Usage()  # counting is not billed
    with pytest.raises(GatewayError) as err:
        translate_response(prep, 200, b'{"tokens": 3}')
    assert err.value.status == 502 and "totalTokens" in err.value.message
    failed = translate_response(prep, 429, fixture_bytes("gemini/errors/429.json"))
    assert orjson.loads(failed.body)["error"]["type"] == "rate_limit_error"


def test_count_tokens_goes_to_bedrock_s_count_tokens_signed():
    route = _ingress_route(
        "bedrock", name="us.anthropic.claude-sonnet-4-v1:0", auth=BEDROCK_AUTH, options=BEDROCK_OPTIONS
    )
    assert local_answer(route, "POST", COUNT_PATH, b"{}", 1) is None
    prep = prepare(route, Inbound("POST", "", COUNT_PATH, [], {}, orjson.dumps(COUNT)), request_id="1", now=1)
    up = prep.upstream
    assert (up.host, up.path) == (
        "bedrock-runtime.us-east-1.amazonaws.com",
        "/model/anthropic.claude-sonnet-4-v1%3A0/count-tokens",
    )
    assert up.set_headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/")
    assert orjson.loads(up.body) == {
        "input": {
            "converse": {
                "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
                "system": [{"text": "Be brief."}],
            }
        }
    }
    answer = translate_response(prep, 200, fixture_bytes("bedrock/count_tokens/response.json"))
    assert orjson.loads(answer.body) == {"input_tokens": 19}


def test_count_tokens_is_estimated_where_the_provider_cannot_count():
    route = _ingress_route("openai", name="gpt-4o-mini")
    status, body, headers = local_answer(route, "POST", COUNT_PATH, orjson.dumps(COUNT), 1)  # type: ignore[misc]
    assert (status, orjson.loads(body), headers["x-ai-proxy-estimated"]) == (200, {"input_tokens": 3}, "true")
    with pytest.raises(GatewayError) as err:  # nor does it go upstream
        prepare(route, Inbound("POST", "", COUNT_PATH, [], {}, orjson.dumps(COUNT)), request_id="1", now=1)
    assert err.value.status == 404


# --- stop_sequence: which stop sequence ended the text ---------------------------------------------


def _asked(*sequences: str) -> CallContext:
    return dataclasses.replace(CTX, client=echo({"stop_sequences": list(sequences)}), extensions=True)


@pytest.mark.parametrize(
    ("said", "text", "asked", "sequence"),
    [
        ("END", "1 2 3", ("END", "###"), "END"),  # the provider said which (Anthropic, Claude on Bedrock)
        ("", "1 2 3", ("END",), "END"),  # said only that one did (Cohere, TGI): the one asked
        ("", "1 2 3 ###", ("END", "###"), "###"),  # ...the one the text ends with (TGI keeps it)
        ("", "1 2 3", ("END", "###"), None),  # ...several asked, none in the text: unknown
    ],
)
def test_stop_sequence_as_the_provider_said_or_as_the_text_tells(said, text, asked, sequence):
    chat = chat_answer({"content": text}, "stop")
    chat["choices"][0][STOP_SEQUENCE_KEY] = said
    out = from_chat(chat, None, _asked(*asked))
    assert (out["stop_reason"], out["stop_sequence"]) == ("stop_sequence", sequence)
    assert Message.model_validate(out).model_dump(exclude_unset=True) == out


def test_a_plain_stop_is_end_turn_with_no_sequence():
    out = from_chat(chat_answer({"content": "1 2 3"}, "stop"), None, _asked("END"))
    assert (out["stop_reason"], out["stop_sequence"]) == ("end_turn", None)


def test_stop_sequence_in_the_stream():
    def run(said: str, *asked: str) -> dict[str, Any]:
        raw = chunk_frames(
            [({"content": "1 2 "}, None), ({"content": "3 ##"}, None), ({"content": "#"}, None)], None
        )
        finish = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
        finish["choices"] = [{"index": 0, "delta": {}, "finish_reason": "stop", STOP_SEQUENCE_KEY: said}]
        raw = raw.replace(b"data: [DONE]", b"data: " + orjson.dumps(finish) + b"\n\ndata: [DONE]")
        out = events(drive(IngressStream(OpenAIStream(), MessagesEvents(_asked(*asked)), ""), [raw]))
        return out[-2]["delta"]

    assert run("END", "END", "###") == {"stop_reason": "stop_sequence", "stop_sequence": "END"}
    assert run("", "END", "###") == {"stop_reason": "stop_sequence", "stop_sequence": "###"}
    assert run("", "END") == {"stop_reason": "stop_sequence", "stop_sequence": "END"}
    assert run("", "END", "STOP") == {"stop_reason": "stop_sequence", "stop_sequence": None}


CLAUDE_ON_BEDROCK = "anthropic.claude-3-5-sonnet-20240620-v1:0"
HI = [{"role": "user", "content": "Count to 3."}]


def test_claude_on_bedrock_is_asked_which_stop_sequence_ended_the_text():
    route = _ingress_route("bedrock", name=CLAUDE_ON_BEDROCK, auth=BEDROCK_AUTH, options=BEDROCK_OPTIONS)
    body = {"model": CLAUDE_ON_BEDROCK, "max_tokens": 50, "stop_sequences": ["END", "###"], "messages": HI}
    prep = prepare(
        route, Inbound("POST", "", "/x/v1/messages", [], {}, orjson.dumps(body)), request_id="1", now=1
    )
    sent = orjson.loads(prep.upstream.body)
    assert sent["inferenceConfig"]["stopSequences"] == ["END", "###"]
    assert sent["additionalModelResponseFieldPaths"] == ["/stop_sequence"]
    answer = {
        "output": {"message": {"role": "assistant", "content": [{"text": "1 2 3"}]}},
        "stopReason": "stop_sequence",
        "additionalModelResponseFields": {"stop_sequence": "###"},
        "usage": {"inputTokens": 12, "outputTokens": 5, "totalTokens": 17},
        "metrics": {"latencyMs": 300},
    }
    out = orjson.loads(translate_response(prep, 200, orjson.dumps(answer)).body)
    assert (out["stop_reason"], out["stop_sequence"]) == ("stop_sequence", "###")
    # Without stop sequences (or for a model that is not Claude) nothing more is asked.
    plain = {k: v for k, v in body.items() if k != "stop_sequences"}
    assert "additionalModelResponseFieldPaths" not in _sent(route, plain)
    llama = _ingress_route(
        "bedrock", name="meta.llama3-70b-instruct-v1:0", auth=BEDROCK_AUTH, options=BEDROCK_OPTIONS
    )
    assert "additionalModelResponseFieldPaths" not in _sent(
        llama, {**body, "model": "meta.llama3-70b-instruct-v1:0"}
    )


def test_cohere_says_a_stop_sequence_ended_the_text_but_not_which():
    route = _ingress_route("cohere", name="command-a-03-2025", options={})
    body = {"model": "command-a-03-2025", "max_tokens": 50, "stop_sequences": ["END"], "messages": HI}
    prep = prepare(
        route, Inbound("POST", "", "/x/v1/messages", [], {}, orjson.dumps(body)), request_id="1", now=1
    )
    answer = {
        "id": "c1",
        "finish_reason": "STOP_SEQUENCE",
        "message": {"role": "assistant", "content": [{"type": "text", "text": "1 2 3"}]},
        "usage": {
            "billed_units": {"input_tokens": 5, "output_tokens": 3},
            "tokens": {"input_tokens": 9, "output_tokens": 3},
        },
    }
    out = orjson.loads(translate_response(prep, 200, orjson.dumps(answer)).body)
    assert (out["stop_reason"], out["stop_sequence"]) == ("stop_sequence", "END")


def test_a_tool_choice_the_provider_lacks_is_left_out_and_noted():
    """Ollama has no tool_choice: it only narrows what the model may do, so an Anthropic client's
    is left out (an OpenAI client's 'required' is refused there)."""
    route = _ingress_route("ollama", name="llama3.2")
    body = {
        "model": "llama3.2",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": REQUEST["tools"][:1],
        "tool_choice": {"type": "any"},
    }
    prep = prepare(
        route, Inbound("POST", "", "/x/v1/messages", [], {}, orjson.dumps(body)), request_id="1", now=1
    )
    assert prep.notes == {
        "ingress-dropped-tool_choice": "anthropic clients' tool_choice left out: ollama cannot express it"
    }
    sent = orjson.loads(prep.upstream.body)
    assert "tool_choice" not in sent and [t["function"]["name"] for t in sent["tools"]] == ["get_weather"]


# --- the server web search: the provider's own search where it has one ------------------------------

WEB_SEARCH_TOOL = {
    "type": "web_search_20250305",
    "name": "web_search",
    "max_uses": 5,
    "user_location": {"type": "approximate", "city": "Oslo", "country": "NO"},
}
SEARCHES = frozenset({"web_search"})


def test_the_server_web_search_becomes_the_providers_search():
    body = {"model": "m", "max_tokens": 5, "messages": HI, "tools": [REQUEST["tools"][0], WEB_SEARCH_TOOL]}
    TypeAdapter(MessageCreateParams).validate_python(body)  # the request is one the SDK can send
    out = to_chat(body, "gemini", SEARCHES)
    assert out["web_search_options"] == {
        "user_location": {"type": "approximate", "approximate": {"city": "Oslo", "country": "NO"}}
    }
    assert [t["function"]["name"] for t in out["tools"]] == ["get_weather"]
    assert notes(body, "gemini", SEARCHES) == {}
    # Required by name: marked (the chat form cannot name it); "none" offers no search at all.
    forced = to_chat({**body, "tool_choice": {"type": "tool", "name": "web_search"}}, "gemini", SEARCHES)
    assert forced["web_search_options"][WEB_SEARCH_REQUIRED] is True and "tool_choice" not in forced
    assert "web_search_options" not in to_chat({**body, "tool_choice": {"type": "none"}}, "gemini", SEARCHES)
    # A provider without a search: left out, said once; a choice naming it is dropped (it narrows).
    bash = {"type": "bash_20250124", "name": "bash"}
    plain = to_chat(
        {**body, "tools": [*body["tools"], bash], "tool_choice": {"type": "tool", "name": "web_search"}},
        "ollama",
    )
    assert "web_search_options" not in plain and "tool_choice" not in plain
    assert notes({**body, "tools": [*body["tools"], bash]}, "ollama", frozenset()) == {
        "anthropic-server-tools-bash_20250124-web_search_20250305": "anthropic clients' server tools "
        "bash_20250124, web_search_20250305 left out of the offer: the ollama provider has no counterpart"
    }


GROUNDED = (
    "Spain won Euro 2024, beating England 2\u20131 in the final in Berlin. Mikel Oyarzabal scored the winner."
)


def test_searches_and_citations_as_server_tool_blocks():
    search = {
        "id": "search_1",
        "queries": ["Euro 2024 winner"],
        "sources": [{"url": "https://a.example/1", "title": "uefa.com"}],
        "error": None,
    }
    annotation = {
        "type": "url_citation",
        "url_citation": {
            "start_index": 65,
            "end_index": 99,
            "url": "https://a.example/1",
            "title": "uefa.com",
        },
    }
    chat = chat_answer({"content": GROUNDED, "annotations": [annotation]}, "stop")
    chat["choices"][0]["message"][WEB_SEARCH_KEY] = [search]
    out = from_chat(chat, None, CTX)
    assert Message.model_validate(out).model_dump(exclude_unset=True) == out
    assert out["content"] == [
        {
            "type": "server_tool_use",
            "id": "srvtoolu_search_1",
            "name": "web_search",
            "input": {"query": "Euro 2024 winner"},
        },
        {
            "type": "web_search_tool_result",
            "tool_use_id": "srvtoolu_search_1",
            "content": [
                {
                    "type": "web_search_result",
                    "url": "https://a.example/1",
                    "title": "uefa.com",
                    "encrypted_content": "",
                    "page_age": None,
                }
            ],
        },
        {"type": "text", "text": GROUNDED[:65]},
        {
            "type": "text",
            "text": "Mikel Oyarzabal scored the winner.",
            "citations": [
                {
                    "type": "web_search_result_location",
                    "url": "https://a.example/1",
                    "title": "uefa.com",
                    "cited_text": "Mikel Oyarzabal scored the winner.",
                    "encrypted_index": "",
                }
            ],
        },
    ]
    # The next turn sends these blocks back: the chat form keeps the text, drops the search blocks.
    back = to_chat({"messages": [*HI, {"role": "assistant", "content": out["content"]}]})
    assert back["messages"][-1] == {"role": "assistant", "content": GROUNDED}


def test_a_grounded_gemini_stream_as_server_tool_events():
    raw = fixture_bytes("gemini/grounding/stream.sse")
    ctx = CallContext(
        "r", "llm/v1/chat", "gemini", "gemini-2.5-flash", ModelOptions(), True, "g1", 1,
        client=echo({"tools": [WEB_SEARCH_TOOL]}), extensions=True,
    )  # fmt: skip
    spec = GEMINI_SPECS[0].routes["llm/v1/chat"]
    out = events(drive(IngressStream(spec.new_stream(ctx), MessagesEvents(ctx), ""), [raw]))
    kinds = [(e["type"], (e.get("content_block") or e.get("delta") or {}).get("type")) for e in out]
    assert kinds == [
        ("message_start", None),
        ("content_block_start", "text"),
        ("content_block_delta", "text_delta"),
        ("content_block_delta", "text_delta"),
        ("content_block_delta", "text_delta"),
        ("content_block_delta", "citations_delta"),
        ("content_block_delta", "citations_delta"),
        ("content_block_delta", "citations_delta"),
        ("content_block_stop", None),
        ("content_block_start", "server_tool_use"),
        ("content_block_delta", "input_json_delta"),
        ("content_block_stop", None),
        ("content_block_start", "web_search_tool_result"),
        ("content_block_stop", None),
        ("message_delta", None),
        ("message_stop", None),
    ]
    cited = [
        e["delta"]["citation"]["cited_text"]
        for e in out
        if (e.get("delta") or {}).get("type") == "citations_delta"
    ]
    assert cited == [GROUNDED[:64], GROUNDED[:64], "Mikel Oyarzabal scored the winner."]
    assert out[10]["delta"]["partial_json"] == '{"query":"Euro 2024 winner"}'
    assert [r["title"] for r in out[12]["content_block"]["content"]] == ["uefa.com", "aljazeera.com"]


def test_images_inside_a_tool_result_follow_it_in_a_user_message():
    screenshot = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [
            {"role": "user", "content": "Take a screenshot."},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_9", "name": "shot", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_9",
                        "content": [{"type": "text", "text": "done"}, screenshot],
                    },
                    {"type": "text", "text": "What do you see?"},
                ],
            },
        ],
    }
    TypeAdapter(MessageCreateParams).validate_python(body)
    messages = to_chat(body)["messages"]
    assert messages[2:] == [
        {"role": "tool", "tool_call_id": "toolu_9", "content": "done"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "[images returned by tool call toolu_9]"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "text", "text": "What do you see?"},
            ],
        },
    ]
