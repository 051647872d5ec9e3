"""The Responses API adapter against the openai SDK's types: requests, answers, every stream event,
every byte split, errors."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.types.responses import Response, ResponseCreateParams, ResponseStreamEvent
from pydantic import TypeAdapter
from streams import splits

from transforms.config import ModelOptions, Route
from transforms.errors import GatewayError
from transforms.ingress import ADAPTERS, RESPONSES, IngressStream, client_error, ingress_for
from transforms.ingress.responses import ResponsesEvents, echo, from_chat, notes, to_chat
from transforms.pipeline import prepare
from transforms.recognize import UNMETERED
from transforms.stream import OpenAIStream
from transforms.types import WEB_SEARCH_KEY, WEB_SEARCH_REQUIRED, CallContext, Inbound, Usage

PARAMS = TypeAdapter(ResponseCreateParams)
EVENT = TypeAdapter(ResponseStreamEvent)
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}


def ctx(body: dict[str, Any] | None = None, stream: bool = False) -> CallContext:
    return CallContext(
        "r", "llm/v1/chat", "gemini", "gemini-2.5-flash", ModelOptions(), stream, "abc", 1700000000,
        client=echo(body or {"input": "hi"}),
    )  # fmt: skip


def valid_request(body: dict[str, Any]) -> dict[str, Any]:
    PARAMS.validate_python(body)  # the example is a request the SDK could send
    return to_chat(body)


def test_string_input_with_instructions_and_tuning():
    body = {
        "model": "m",
        "input": "What is 1 + 1?",
        "instructions": "Be brief.",
        "max_output_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "u-1",
        "parallel_tool_calls": False,
        "stream": True,
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "reasoning": {"effort": "low", "summary": "auto"},
        "prompt_cache_key": "k",
    }
    assert valid_request(body) == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is 1 + 1?"},
        ],
        "max_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "parallel_tool_calls": False,
        "user": "u-1",
        "stream": True,
        "reasoning_effort": "low",  # each provider maps it to its own thinking setting
    }


def test_items_tools_round_trip_and_images():
    body = {
        "model": "m",
        "input": [
            {"role": "developer", "content": "Use tools."},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Weather here? "},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"},
                ],
            },
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city":"Oslo"}',
            },
            {
                "type": "function_call",
                "call_id": "call_2",
                "name": "get_weather",
                "arguments": '{"city":"Rome"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "cold"},
            {"type": "function_call_output", "call_id": "call_2", "output": "warm"},
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Cold and warm.", "annotations": []}],
            },
        ],
        "tools": [WEATHER, {"type": "web_search"}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "text": {
            "format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": True}
        },
    }
    chat = valid_request(body)
    assert chat["messages"] == [
        {"role": "system", "content": "Use tools."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather here? "},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "cold"},
        {"role": "tool", "tool_call_id": "call_2", "content": "warm"},
        {"role": "assistant", "content": "Cold and warm."},
    ]
    # The built-in web_search is left out of the offer; the function tool goes flat -> nested.
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": WEATHER["parameters"],
                "strict": True,
            },
        }
    ]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": True},
    }


def test_json_object_and_tool_choice_words():
    chat = valid_request(
        {
            "input": "x",
            "text": {"format": {"type": "json_object"}},
            "tools": [WEATHER],
            "tool_choice": "required",
        }
    )
    assert (chat["response_format"], chat["tool_choice"]) == ({"type": "json_object"}, "required")
    assert "response_format" not in valid_request({"input": "x", "text": {"format": {"type": "text"}}})


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"input": "x", "previous_response_id": "resp_1"}, "previous_response_id", "keeps no responses"),
        ({"input": "x", "conversation": "conv_1"}, "conversation", "OpenAI only"),
        ({"input": "x", "background": True}, "background", "background"),
        (
            {"input": "x", "tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}},
            "tool_choice",
            "web_search",
        ),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]", "item_reference"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].content[0]",
            "file_id",
        ),
        ({"model": "m"}, "input", "input: Field required"),
        ({"input": 3}, "input", "expected a string"),
    ],
)
def test_refusals_name_the_field(body, param, words):
    with pytest.raises(GatewayError) as e:
        to_chat(body)
    assert (e.value.status, e.value.param) == (400, param)
    assert words in e.value.message


def _validated(response: dict[str, Any]) -> Response:
    parsed = Response.model_validate(response)
    # Every field we send is one the SDK knows, with the value we meant (no field lost).
    assert parsed.model_dump(mode="json", exclude_unset=True) == orjson.loads(orjson.dumps(response))
    return parsed


def test_answer_with_reasoning_text_and_tool_calls():
    body = {
        "input": "hi",
        "instructions": "Be brief.",
        "metadata": {"a": "1"},
        "tools": [WEATHER],
        "temperature": 0.5,
    }
    chat = {
        "id": "chatcmpl-9",
        "model": "gemini-2.5-flash-001",
        "choices": [
            {
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "reasoning_content": "Think.",
                    "content": "Checking.",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                        }
                    ],
                },
            }
        ],
    }
    usage = Usage(30, 12, 42, cached_tokens=5, reasoning_tokens=4)
    out = from_chat(chat, usage, ctx(body))
    parsed = _validated(out)
    assert (parsed.id, parsed.object, parsed.status, parsed.model, parsed.created_at) == (
        "resp_abc", "response", "completed", "gemini-2.5-flash-001", 1700000000,
    )  # fmt: skip
    assert [item.type for item in parsed.output] == ["reasoning", "message", "function_call"]
    assert parsed.output[0].summary[0].text == "Think."  # type: ignore[union-attr]
    assert parsed.output_text == "Checking."
    call = parsed.output[2]
    assert (call.call_id, call.name, call.arguments) == ("call_1", "get_weather", '{"city":"Oslo"}')  # type: ignore[union-attr]
    assert (parsed.instructions, parsed.metadata, parsed.temperature) == ("Be brief.", {"a": "1"}, 0.5)
    assert parsed.tools[0].name == "get_weather"  # type: ignore[union-attr]
    assert parsed.usage is not None
    assert parsed.usage.model_dump(exclude_unset=True) == {
        "input_tokens": 30,
        "input_tokens_details": {"cached_tokens": 5, "cache_write_tokens": 0},
        "output_tokens": 12,
        "output_tokens_details": {"reasoning_tokens": 4},
        "total_tokens": 42,
    }


@pytest.mark.parametrize(
    ("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")]
)
def test_truncated_answers_are_incomplete(finish, reason):
    chat = {"id": "c", "model": "m", "choices": [{"finish_reason": finish, "message": {"content": "Half"}}]}
    parsed = _validated(from_chat(chat, Usage(1, 2, 3), ctx()))
    assert (parsed.status, parsed.incomplete_details.reason) == ("incomplete", reason)  # type: ignore[union-attr]


# --- stream ---------------------------------------------------------------------------------------


def sse(*chunks: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "c1",
        "model": "m-1",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


STREAM = sse(
    chunk({"role": "assistant", "reasoning_content": "Hm"}),
    chunk({"reasoning_content": "m."}),
    chunk({"content": "Hel"}),
    chunk({"content": "lo"}),
    chunk(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        }
    ),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
    chunk({}, "tool_calls"),
    {
        "id": "c1",
        "model": "m-1",
        "choices": [],
        "usage": {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16},
    },
)


def events(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for block in raw.strip().split(b"\n\n"):
        name, data = block.split(b"\n")
        parsed = orjson.loads(data.removeprefix(b"data: "))
        assert name == b"event: " + parsed["type"].encode()
        out.append(parsed)
    return out


def run(pieces: list[bytes], body: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    c = ctx(body, stream=True)
    stream = IngressStream(OpenAIStream(), ResponsesEvents(c), "")
    raw = b"".join(frame for piece in pieces for frame in stream.feed(piece)) + b"".join(stream.finish())
    return events(raw)


def test_every_stream_event_is_the_sdks_in_order():
    out = run([STREAM], {"input": "hi", "tools": [WEATHER]})
    for event in out:
        parsed = EVENT.validate_python(event)
        assert parsed.model_dump(mode="json", exclude_unset=True) == event
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    assert [e["type"] for e in out] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = Response.model_validate(out[-1]["response"])
    assert final.output_text == "Hello"
    assert final.output[0].summary[0].text == "Hmm."  # type: ignore[union-attr]
    assert final.output[2].arguments == '{"city":"Oslo"}'  # type: ignore[union-attr]
    assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens) == (9, 7)
    assert (final.id, final.model, final.status) == ("resp_abc", "m-1", "completed")
    assert out[-1]["response"]["tools"] == [WEATHER]
    assert [e["output_index"] for e in out if e["type"] == "response.output_item.done"] == [0, 1, 2]


def test_every_byte_split_gives_the_same_events():
    whole = run([STREAM])
    for cut in range(1, len(STREAM)):
        assert run(splits(STREAM, [cut])) == whole, cut


def test_a_truncated_stream_ends_incomplete():
    out = run([sse(chunk({"content": "Half"}), chunk({}, "length"))])
    assert out[-1]["type"] == "response.incomplete"
    assert out[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    EVENT.validate_python(out[-1])


def test_an_upstream_error_mid_stream_is_an_error_event():
    raw = b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"a"}}]}\n\ndata: {"error":{"message":"boom"}}\n\n'
    out = run([raw])
    assert out[-1] == {
        "type": "error",
        "code": "api_error",
        "message": "boom",
        "param": None,
        "sequence_number": len(out) - 1,
    }
    EVENT.validate_python(out[-1])


# --- routes and errors ------------------------------------------------------------------------------


def route(provider: str, **options: Any) -> Route:
    return Route.model_validate(
        {
            "name": "r",
            "route_type": "llm/v1/responses",
            "match": {"path": "/x/v1/responses"},
            "model": {"provider": provider, "options": options},
        }
    )


def test_openai_and_azure_are_forwarded_every_other_provider_is_adapted():
    assert ingress_for(route("openai")) is None
    assert ingress_for(route("azure", azure_instance="i", azure_deployment_id="d")) is None
    assert ingress_for(route("gemini")) is ADAPTERS[RESPONSES]
    assert ingress_for(route("ollama", upstream_url="http://127.0.0.1:1")) is ADAPTERS[RESPONSES]


def test_gateway_errors_keep_openais_shape_with_code_and_param():
    body = GatewayError(400, "bad", "unsupported_parameter", param="background").body()
    assert client_error(route("gemini"), 400, body) == body


def test_built_in_tools_left_out_are_noted_for_the_event_log():
    assert notes({"tools": [WEATHER, {"type": "web_search"}, {"type": "custom", "name": "apply_patch"}]}) == {
        "responses-builtin-custom-web_search": "responses clients' built-in tools custom, web_search left out of "
        "the offer: they run at OpenAI only"
    }
    assert notes({"tools": [WEATHER]}) == {}


# --- built-in tools: the provider's own web search, refusals -------------------------------------

SEARCHES = frozenset({"web_search"})  # what anthropic's and gemini's transforms map (builtin_tools)
CODEX_SEARCH = {"type": "web_search", "external_web_access": False}  # what the Codex CLI offers
LOCATED_SEARCH = {
    "type": "web_search_preview",
    "search_context_size": "high",
    "user_location": {"type": "approximate", "city": "Oslo", "country": "NO", "timezone": "Europe/Oslo"},
}


def test_web_search_goes_to_the_providers_own_search_where_it_has_one():
    body = {"input": "News?", "tools": [WEATHER, LOCATED_SEARCH]}
    PARAMS.validate_python(body)
    out = to_chat(body, "anthropic", SEARCHES)
    assert out["web_search_options"] == {
        "search_context_size": "high",
        "user_location": {
            "type": "approximate",
            "approximate": {"city": "Oslo", "country": "NO", "timezone": "Europe/Oslo"},
        },
    }
    assert [t["function"]["name"] for t in out["tools"]] == ["get_weather"]
    assert notes(body, "anthropic", SEARCHES) == {}  # mapped, not left out
    # A provider without a search of its own: left out of the offer, and the event log says so.
    out = to_chat({"input": "News?", "tools": [WEATHER, CODEX_SEARCH]}, "ollama", frozenset())
    assert "web_search_options" not in out and len(out["tools"]) == 1
    offered = {"input": "x", "tools": [CODEX_SEARCH, {"type": "image_generation"}]}
    assert notes(offered, "ollama", frozenset()) == {
        "responses-builtin-image_generation-web_search": "responses clients' built-in tools image_generation, "
        "web_search left out of the offer: the ollama provider has no counterpart"
    }


def test_a_tool_choice_requiring_the_search_marks_it_required():
    body = {"input": "x", "tools": [LOCATED_SEARCH], "tool_choice": {"type": "web_search_preview"}}
    PARAMS.validate_python(body)
    out = to_chat(body, "anthropic", SEARCHES)
    assert out["web_search_options"][WEB_SEARCH_REQUIRED] is True and "tool_choice" not in out
    # "required" with the search as the only tool requires the search
    out = to_chat({"input": "x", "tools": [CODEX_SEARCH], "tool_choice": "required"}, "gemini", SEARCHES)
    assert out["web_search_options"] == {WEB_SEARCH_REQUIRED: True}
    # "none": no tool at all, the search included
    out = to_chat({"input": "x", "tools": [WEATHER, CODEX_SEARCH], "tool_choice": "none"}, "gemini", SEARCHES)
    assert "web_search_options" not in out and out["tool_choice"] == "none"


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        (
            {"input": "x", "tools": [CODEX_SEARCH], "tool_choice": {"type": "web_search_preview"}},
            "tool_choice",
            "tool_choice: the built-in tool 'web_search_preview' is required but not available on the "
            "cohere provider",
        ),
        (
            {"input": "x", "tools": [WEATHER], "tool_choice": {"type": "code_interpreter"}},
            "tool_choice",
            "tool_choice: the built-in tool 'code_interpreter' is required but not available on the "
            "cohere provider",
        ),
        (
            {"input": "x", "background": True},
            "background",
            "background: the cohere provider runs nothing in the background (only OpenAI and Azure do)",
        ),
        (
            {"input": "x", "tools": [WEATHER, {"type": "file_search", "vector_store_ids": ["vs_1"]}]},
            "tools",
            "tools[1]: file_search searches OpenAI vector stores (vector_store_ids), which the cohere "
            "provider does not have",
        ),
    ],
)
def test_what_the_provider_cannot_express_is_refused_naming_it(body, param, message):
    PARAMS.validate_python(body)
    with pytest.raises(GatewayError) as e:
        to_chat(body, "cohere", frozenset())
    assert (e.value.status, e.value.param, e.value.message) == (400, param, message)
    assert orjson.loads(e.value.body())["error"]["code"] == "unsupported_parameter"


def test_past_searches_are_skipped_and_audio_is_refused_naming_the_provider():
    body = {
        "input": [
            {"role": "user", "content": "News?"},
            {
                "type": "web_search_call",
                "id": "ws_1",
                "status": "completed",
                "action": {"type": "search", "query": "news"},
            },
            {"role": "assistant", "content": "Here they are."},
        ]
    }
    PARAMS.validate_python(body)
    assert to_chat(body, "gemini", SEARCHES)["messages"] == [
        {"role": "user", "content": "News?"},
        {"role": "assistant", "content": "Here they are."},
    ]
    # The Responses API has no audio input (the SDK's message content is text, image, file).
    audio = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    with pytest.raises(GatewayError) as e:
        to_chat({"input": [{"role": "user", "content": [audio]}]}, "bedrock", frozenset())
    assert (e.value.status, e.value.param) == (400, "input[0].content[0]")
    assert (
        e.value.message == "input[0].content[0].type: 'input_audio' is not supported on the bedrock provider"
    )


A_SEARCH = {
    "id": "srvtoolu_1",
    "queries": ["weather Oslo"],
    "sources": [{"url": "https://yr.no/oslo", "title": "Yr"}, {"url": "https://met.no", "title": ""}],
    "error": None,
}
CITATION = {
    "type": "url_citation",
    "url_citation": {"start_index": 11, "end_index": 21, "url": "https://yr.no/oslo", "title": "Yr"},
}


def test_searches_and_citations_in_the_answer():
    failed = {**A_SEARCH, "id": "s2", "sources": [], "error": "max_uses_exceeded"}
    message = {
        "content": "In Oslo it is 18 C now.",
        "annotations": [CITATION],
        WEB_SEARCH_KEY: [A_SEARCH, failed],
    }
    chat = {
        "id": "c",
        "model": "claude-sonnet-4-5",
        "choices": [{"finish_reason": "stop", "message": message}],
    }
    parsed = _validated(from_chat(chat, Usage(1, 2, 3), ctx()))
    cited = {
        "type": "url_citation",
        "start_index": 11,
        "end_index": 21,
        "url": "https://yr.no/oslo",
        "title": "Yr",
    }
    sources = [{"type": "url", "url": "https://yr.no/oslo"}, {"type": "url", "url": "https://met.no"}]
    assert [item.model_dump(exclude_unset=True) for item in parsed.output] == [
        {
            "type": "web_search_call",
            "id": "ws_resp_abc_0",
            "status": "completed",
            "action": {"type": "search", "query": "weather Oslo", "sources": sources},
        },
        {
            "type": "web_search_call",
            "id": "ws_resp_abc_1",
            "status": "failed",
            "action": {"type": "search", "query": "weather Oslo"},
        },
        {
            "type": "message",
            "id": "msg_resp_abc",
            "role": "assistant",
            "status": "completed",
            "content": [
                {
                    "type": "output_text",
                    "text": "In Oslo it is 18 C now.",
                    "annotations": [cited],
                    "logprobs": [],
                }
            ],
        },
    ]
    assert parsed.output_text[11:21] == "is 18 C no"


def _cited(start: int, end: int) -> dict[str, Any]:
    return {**CITATION, "url_citation": {**CITATION["url_citation"], "start_index": start, "end_index": end}}


SEARCH_STREAM = sse(
    chunk({"role": "assistant", "content": "Let me look."}),
    chunk({WEB_SEARCH_KEY: [A_SEARCH]}),
    chunk({"content": " In Oslo "}),
    chunk({"content": "it is 18 C."}),
    # A citation of "it is 18 C." (chat indices count the whole content, the first message's 12
    # characters included: 9..20 of the second message).
    chunk({"annotations": [_cited(21, 32)]}),
    # One that points into the first message, closed by now: lost, not misplaced.
    chunk({"annotations": [_cited(0, 3)]}),
    chunk({}, "stop"),
)


def test_searches_and_citations_in_the_stream():
    out = run([SEARCH_STREAM])
    for event in out:
        assert EVENT.validate_python(event).model_dump(mode="json", exclude_unset=True) == event
    assert [e["type"] for e in out] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.web_search_call.in_progress",
        "response.web_search_call.searching",
        "response.web_search_call.completed",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.annotation.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    added = next(e for e in out if e["type"] == "response.output_text.annotation.added")
    cited = {
        "type": "url_citation",
        "start_index": 9,
        "end_index": 20,
        "url": "https://yr.no/oslo",
        "title": "Yr",
    }
    assert added == {
        "type": "response.output_text.annotation.added",
        "item_id": "msg_resp_abc_2",
        "output_index": 2,
        "content_index": 0,
        "annotation_index": 0,
        "annotation": cited,
        "sequence_number": 17,
    }
    final = Response.model_validate(out[-1]["response"])
    assert [item.type for item in final.output] == ["message", "web_search_call", "message"]
    assert final.output[1].model_dump(exclude_unset=True)["action"]["query"] == "weather Oslo"
    assert final.output[2].content[0].annotations[0].model_dump() == cited  # type: ignore[union-attr]
    assert final.output[2].content[0].text[9:20] == "it is 18 C."  # type: ignore[union-attr]
    done = [e for e in out if e["type"] == "response.content_part.done"]
    assert [d["part"]["annotations"] for d in done] == [[], [cited]]


def test_every_byte_split_of_a_search_stream_gives_the_same_events():
    whole = run([SEARCH_STREAM])
    for cut in range(1, len(SEARCH_STREAM)):
        assert run(splits(SEARCH_STREAM, [cut])) == whole, cut


# --- forwarded: the URL rules of openai and azure (pure prepare) ------------------------------------


def forwarded(provider: str, method: str = "POST", path: str = "/x/v1/responses", query=(), **options: Any):
    route = Route.model_validate(
        {
            "name": "r",
            "route_type": "llm/v1/responses",
            "match": {"path": "/x/v1/responses"},
            "auth": {"header_name": "api-key", "header_value": "configured-key-0123"},
            "model": {"provider": provider, "name": "gpt-5-mini", "options": options},
        }
    )
    body = orjson.dumps({"model": "gpt-5-mini", "input": "hi"}) if method == "POST" else b""
    inbound = Inbound(method, "gw", path, list(query), {"api-key": "client"}, body)
    return prepare(route, inbound, request_id="abc", now=1700000000)


AZURE = {"azure_instance": "inst", "azure_deployment_id": "dep"}


@pytest.mark.parametrize(
    ("provider", "options", "method", "path", "query", "url"),
    [
        ("openai", {}, "POST", "/x/v1/responses", (), "https://api.openai.com/v1/responses"),
        ("openai", {}, "GET", "/x/v1/responses/resp_1/input_items", [("limit", "2")], "https://api.openai.com/v1/responses/resp_1/input_items?limit=2"),
        ("openai", {"upstream_url": "http://h:1/base/responses"}, "DELETE", "/x/v1/responses/resp_1", (), "http://h:1/base/responses/resp_1"),
        ("openai", {"upstream_url": "http://h:1"}, "POST", "/x/v1/responses/resp_1/cancel", (), "http://h:1/v1/responses/resp_1/cancel"),
        ("azure", {**AZURE, "azure_api_version": "preview"}, "POST", "/x/v1/responses", (), "https://inst.openai.azure.com/openai/v1/responses?api-version=preview"),
        ("azure", {**AZURE, "azure_api_version": "2025-04-01-preview"}, "GET", "/x/v1/responses/r", (), "https://inst.openai.azure.com/openai/responses/r?api-version=2025-04-01-preview"),
        ("azure", {**AZURE, "azure_api_version": "preview"}, "POST", "/x/v1/responses", [("api-version", "2025-05-01")], "https://inst.openai.azure.com/openai/v1/responses?api-version=2025-05-01"),
    ],
)  # fmt: skip
def test_forwarded_urls(provider, options, method, path, query, url):
    prep = forwarded(provider, method, path, query, **options)
    assert prep.upstream.url == url
    assert prep.upstream.method == method
    assert prep.upstream.set_headers["api-key"] == "configured-key-0123"
    assert prep.metered is (method == "POST" and path == "/x/v1/responses")
    assert prep.native is not None and prep.native.operation == ("responses" if prep.metered else UNMETERED)


def test_forwarded_create_enforces_the_model_and_azure_names_its_deployment():
    assert orjson.loads(forwarded("azure", **AZURE).upstream.body)["model"] == "dep"
    route = Route.model_validate(
        {
            "name": "r",
            "route_type": "llm/v1/responses",
            "model": {"provider": "openai", "name": "gpt-5-mini", "options": {"max_tokens": 64}},
        }
    )
    with pytest.raises(GatewayError) as e:
        prepare(
            route,
            Inbound("POST", "gw", "/v1/responses", [], {}, b'{"model":"gpt-4o","input":"x"}'),
            request_id="a",
            now=1,
        )
    assert (e.value.status, e.value.code) == (400, "model_not_allowed")
    prep = prepare(
        route, Inbound("POST", "gw", "/v1/responses", [], {}, b'{"input":"x"}'), request_id="a", now=1
    )
    assert orjson.loads(prep.upstream.body) == {"input": "x", "model": "gpt-5-mini", "max_output_tokens": 64}


@pytest.mark.parametrize("provider", ["gemini", "openai"])
def test_streaming_policy_and_body_limit_hold_on_responses_routes(provider):
    def route(**extra: Any) -> Route:
        return Route.model_validate(
            {
                "name": "r",
                "route_type": "llm/v1/responses",
                "model": {"provider": provider, "name": "m"},
                **extra,
            }
        )

    body = b'{"model":"m","input":"hi","stream":true}'
    with pytest.raises(GatewayError) as e:
        prepare(
            route(response_streaming="deny"),
            Inbound("POST", "gw", "/v1/responses", [], {}, body),
            request_id="a",
            now=1,
        )
    assert (e.value.status, e.value.code) == (400, "streaming_disabled")
    with pytest.raises(GatewayError) as e:
        prepare(
            route(max_request_body_size=10),
            Inbound("POST", "gw", "/v1/responses", [], {}, body),
            request_id="a",
            now=1,
        )
    assert e.value.status == 413
    prep = prepare(
        route(response_streaming="always"),
        Inbound("POST", "gw", "/v1/responses", [], {}, body[:-15] + b"}"),
        request_id="a",
        now=1,
    )
    assert prep.stream is True
