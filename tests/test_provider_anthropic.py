"""The Anthropic provider: OpenAI requests -> exact Messages API requests, answers and streams back.

Oracles: every request built validates against the anthropic SDK's ``MessageCreateParams`` types
(unknown keys rejected), every response parses with openai's models without losing a field.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import orjson
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types import message_create_params as anthropic_params
from conftest import FIXTURES, fixture_bytes, fixture_json
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types import Completion
from openai.types.chat import ChatCompletion
from pydantic import ConfigDict, TypeAdapter
from streams import assert_chunks_valid, choices, drive, finishing_choices, frames
from streams import deltas as chunk_deltas

from transforms.config import ModelOptions, Route
from transforms.errors import GatewayError
from transforms.pipeline import prepare, translate_response
from transforms.providers import anthropic
from transforms.registry import SPECS
from transforms.stream import SSEParser
from transforms.types import (
    STOP_SEQUENCE_KEY,
    WEB_SEARCH_KEY,
    WEB_SEARCH_REQUIRED,
    CallContext,
    Inbound,
)

SPEC = SPECS["anthropic"]
CHAT = SPEC.routes["llm/v1/chat"]
COMPLETIONS = SPEC.routes["llm/v1/completions"]
CREATED = 1767225600
MODEL = "claude-sonnet-4-5"


def make_ctx(
    route_type: str = "llm/v1/chat",
    *,
    stream: bool = False,
    include_usage: bool = False,
    version: str = "2023-06-01",
    model: str = MODEL,
) -> CallContext:
    return CallContext(
        route_name="claude",
        route_type=route_type,
        provider="anthropic",
        model=model,
        options=ModelOptions(anthropic_version=version),
        stream=stream,
        request_id="req-123",
        created=CREATED,
        include_usage=include_usage,
    )


# --- oracles -------------------------------------------------------------------------------------


# The installed SDK (2.x) no longer types temperature/top_p/top_k, which the Messages API reference
# still documents (float, float, int) for the models that accept them; they are added back here.
class _NonStreaming(anthropic_params.MessageCreateParamsNonStreaming, total=False):
    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    temperature: float
    top_p: float
    top_k: int


class _Streaming(anthropic_params.MessageCreateParamsStreaming, total=False):
    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    temperature: float
    top_p: float
    top_k: int


_REQUEST_TYPES = {False: TypeAdapter(_NonStreaming), True: TypeAdapter(_Streaming)}


def _materialize(value: Any) -> Any:
    # pydantic validates Iterable[...] fields lazily: walking them is what runs the validation.
    if isinstance(value, dict):
        return {k: _materialize(v) for k, v in value.items()}
    if isinstance(value, list | tuple) or type(value).__name__ == "ValidatorIterator":
        return [_materialize(v) for v in value]
    return value


def assert_valid_anthropic(body: dict[str, Any]) -> None:
    stream = body.get("stream") is True
    _materialize(_REQUEST_TYPES[stream].validate_python(body))


def assert_chat_completion(out: dict[str, Any]) -> None:
    parsed = ChatCompletion.model_validate(out)
    dumped = parsed.model_dump(exclude_unset=True)
    assert dumped == out  # nothing lost, nothing added


def assert_completion(out: dict[str, Any]) -> None:
    assert Completion.model_validate(out).model_dump(exclude_unset=True) == out


def build(body: dict[str, Any], **ctx_args: Any) -> dict[str, Any]:
    req = CHAT.build_request(copy.deepcopy(body), make_ctx(**ctx_args))
    assert req.path == "/v1/messages"
    assert req.method == "POST"
    assert_valid_anthropic(req.body)
    return req.body


def chat(messages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": messages, **fields}


USER = [{"role": "user", "content": "Hi"}]


def refused(body: dict[str, Any], route: Any = CHAT, route_type: str = "llm/v1/chat") -> str:
    with pytest.raises(GatewayError) as err:
        route.build_request(copy.deepcopy(body), make_ctx(route_type))
    assert err.value.status == 400
    assert "anthropic" in err.value.message or "reserved" in err.value.message
    return err.value.message


# --- fixtures as tables --------------------------------------------------------------------------

CHAT_CASES = [
    "chat",
    "tools",
    "tool_results",
    "thinking",
    "cache",
    "images",
    "json_schema",
    "stop_sequence",
    "web_search",
    "max_tokens",
]


@pytest.mark.parametrize("case", CHAT_CASES)
def test_chat_request_fixture(case: str) -> None:
    assert build(fixture_json(f"anthropic/{case}/client.json")) == fixture_json(
        f"anthropic/{case}/request.json"
    )


@pytest.mark.parametrize("case", CHAT_CASES)
def test_chat_response_fixture(case: str) -> None:
    raw = fixture_json(f"anthropic/{case}/response.json")
    Message.model_validate(raw)  # the fixture is a real Messages API answer
    out = CHAT.parse_response(raw, make_ctx())
    assert out == fixture_json(f"anthropic/{case}/expected.json")
    assert_chat_completion(out)


def test_completions_fixture() -> None:
    req = COMPLETIONS.build_request(
        fixture_json("anthropic/completions/client.json"), make_ctx("llm/v1/completions")
    )
    assert req.path == "/v1/messages"
    assert req.body == fixture_json("anthropic/completions/request.json")
    assert_valid_anthropic(req.body)
    raw = fixture_json("anthropic/completions/response.json")
    Message.model_validate(raw)
    out = COMPLETIONS.parse_response(raw, make_ctx("llm/v1/completions"))
    assert out == fixture_json("anthropic/completions/expected.json")
    assert out["object"] == "text_completion"
    assert out["choices"][0]["text"].startswith("Grey waves")
    assert_completion(out)


# --- request: the call itself --------------------------------------------------------------------


def test_version_header_comes_from_options() -> None:
    req = CHAT.build_request(chat(USER), make_ctx(version="2024-01-01"))
    assert req.headers == {"anthropic-version": "2024-01-01"}
    assert req.query == []


def test_stream_flag_follows_the_call() -> None:
    assert build(chat(USER), stream=True)["stream"] is True
    assert "stream" not in build(chat(USER, stream=False))


def test_model_is_the_resolved_one() -> None:
    assert build(chat(USER, model="something-else"))["model"] == MODEL


# --- request: system and turns -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("system_messages", "expected"),
    [
        ([{"role": "system", "content": "Be brief."}], "Be brief."),
        ([{"role": "developer", "content": "Be brief."}], "Be brief."),
        (
            [{"role": "system", "content": "Be brief."}, {"role": "developer", "content": "Use French."}],
            [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use French."}],
        ),
        (
            [{"role": "system", "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]}],
            [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
        ),
        ([{"role": "system", "content": [{"type": "text", "text": "A"}]}], [{"type": "text", "text": "A"}]),
    ],
)
def test_system_and_developer_messages_become_top_level_system(system_messages, expected) -> None:
    body = build(chat([*system_messages, *USER]))
    assert body["system"] == expected
    assert body["messages"] == [{"role": "user", "content": "Hi"}]


def test_system_message_later_in_the_conversation_is_moved_too() -> None:
    body = build(
        chat(
            [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "system", "content": "From now on, answer in French."},
                {"role": "user", "content": "How are you?"},
            ]
        )
    )
    assert body["system"] == "From now on, answer in French."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


def test_system_with_an_image_is_refused() -> None:
    part = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    message = refused(chat([{"role": "system", "content": [part]}, *USER]))
    assert (
        message == "'messages[0].content[0]' of type 'image_url' is not supported by the anthropic provider"
    )


def test_no_system_means_no_system_field() -> None:
    assert "system" not in build(chat(USER))


def test_consecutive_same_role_turns_are_merged() -> None:
    body = build(
        chat(
            [
                {"role": "user", "content": "First question."},
                {"role": "user", "content": [{"type": "text", "text": "Second question."}]},
                {"role": "assistant", "content": "Answer one."},
                {"role": "assistant", "content": "Answer two."},
                {"role": "user", "content": "Thanks."},
            ]
        )
    )
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "First question."},
                {"type": "text", "text": "Second question."},
            ],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "Answer one."}, {"type": "text", "text": "Answer two."}],
        },
        {"role": "user", "content": "Thanks."},
    ]


def test_empty_text_is_not_sent() -> None:
    body = build(
        chat([{"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "x"}]}])
    )
    assert body["messages"] == [{"role": "user", "content": "x"}]


def test_cache_control_on_parts_is_kept() -> None:
    part = {"type": "text", "text": "long context", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    body = build(chat([{"role": "user", "content": [part]}]))
    assert body["messages"][0]["content"] == [part]


# --- request: parameters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, 4096),
        ({"max_tokens": 100}, 100),
        ({"max_completion_tokens": 200}, 200),
        ({"max_completion_tokens": 200, "max_tokens": 100}, 200),
    ],
)
def test_max_tokens(fields, expected) -> None:
    assert build(chat(USER, **fields))["max_tokens"] == expected


@pytest.mark.parametrize(
    ("stop", "expected"),
    [("END", ["END"]), (["END", "###"], ["END", "###"]), ([], None), (None, None)],
)
def test_stop_becomes_stop_sequences(stop, expected) -> None:
    assert build(chat(USER, stop=stop)).get("stop_sequences") == expected


def test_whitespace_stop_is_refused() -> None:
    message = refused(chat(USER, stop=["\n"]))
    assert message == "'stop' made only of whitespace is not supported by the anthropic provider"


OLDER = "claude-sonnet-4-20250514"  # takes temperature and top_p together


def test_sampling_parameters() -> None:
    body = build(chat(USER, temperature=0.0, top_p=0.5, top_k=20, model=OLDER), model=OLDER)
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0.0, 0.5, 20)


@pytest.mark.parametrize("model", [MODEL, "claude-opus-4-1-20250805", "claude-haiku-4-5"])
def test_newer_claude_gets_temperature_only_when_both_are_asked(model) -> None:
    # 400 "`temperature` and `top_p` cannot both be specified for this model" otherwise.
    body = build(chat(USER, temperature=0.0, top_p=0.5, top_k=20, model=model), model=model)
    assert (body["temperature"], body["top_k"]) == (0.0, 20)
    assert "top_p" not in body
    assert build(chat(USER, top_p=0.5, model=model), model=model)["top_p"] == 0.5
    req = COMPLETIONS.build_request(
        {"prompt": "Hi", "temperature": 0.1, "top_p": 0.5}, make_ctx("llm/v1/completions", model=model)
    )
    assert_valid_anthropic(req.body)
    assert (req.body["temperature"], "top_p" in req.body) == (0.1, False)
    assert list(req.notes) == ["claude_temperature_top_p"]


@pytest.mark.parametrize(
    ("client", "defaults"),
    [
        ({"temperature": 0.2, "top_p": 0.9}, {}),  # both from the client
        ({}, {"temperature": 0.2, "top_p": 0.9}),  # both from the route's defaults
        ({"temperature": 0.2}, {"top_p": 0.9}),  # one each
        ({"top_p": 0.9}, {"temperature": 0.2}),
    ],
)
def test_pipeline_sends_temperature_only_to_newer_claude(client, defaults) -> None:
    inbound = Inbound("POST", "gw", "/v1/chat/completions", [], {}, orjson.dumps(chat(USER, **client)))
    prep = prepare(anthropic_route(**defaults), inbound, request_id="r", now=CREATED)
    sent = orjson.loads(prep.upstream.body)
    assert_valid_anthropic(sent)
    assert (sent["temperature"], "top_p" in sent) == (0.2, False)
    assert prep.notes == {
        "claude_temperature_top_p": f"model '{MODEL}' takes temperature or top_p, not both: "
        "sending temperature only (top_p dropped)"
    }
    older = orjson.dumps(chat(USER, model=OLDER, **client))
    prep = prepare(
        anthropic_route(**defaults), Inbound("POST", "gw", "/", [], {}, older), request_id="r", now=CREATED
    )
    assert (orjson.loads(prep.upstream.body)["top_p"], prep.notes) == (0.9, {})


def test_temperature_above_one_is_refused() -> None:
    assert refused(chat(USER, temperature=1.5)) == (
        "'temperature' above 1 is not supported by the anthropic provider"
    )


def test_user_becomes_metadata_user_id() -> None:
    assert build(chat(USER, user="u-42"))["metadata"] == {"user_id": "u-42"}
    assert build(chat(USER, safety_identifier="hash-1"))["metadata"] == {"user_id": "hash-1"}
    assert "metadata" not in build(chat(USER))


def test_harmless_openai_fields_are_ignored() -> None:
    body = build(
        chat(
            USER,
            seed=7,
            store=False,
            metadata={"k": "v"},
            n=1,
            logprobs=False,
            presence_penalty=0,
            stream_options={"include_usage": True},
        )
    )
    assert set(body) == {"model", "max_tokens", "messages"}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"n": 2}, "'n' above 1 is not supported by the anthropic provider"),
        ({"logprobs": True}, "'logprobs' is not supported by the anthropic provider"),
        ({"top_logprobs": 3}, "'top_logprobs' is not supported by the anthropic provider"),
        ({"presence_penalty": 0.5}, "'presence_penalty' is not supported by the anthropic provider"),
        ({"frequency_penalty": -1}, "'frequency_penalty' is not supported by the anthropic provider"),
        ({"logit_bias": {"50256": -100}}, "'logit_bias' is not supported by the anthropic provider"),
        ({"audio": {"voice": "alloy"}}, "'audio' is not supported by the anthropic provider"),
        (
            {"modalities": ["text", "audio"]},
            "'modalities' other than ['text'] is not supported by the anthropic provider",
        ),
        ({"functions": [{"name": "f"}]}, "'functions' is not supported by the anthropic provider"),
        ({"some_future_field": 1}, "'some_future_field' is not supported by the anthropic provider"),
    ],
)
def test_meaning_changing_fields_are_refused(fields, message) -> None:
    assert refused(chat(USER, **fields)) == message


@pytest.mark.parametrize(
    ("part", "message"),
    [
        (
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
            "'messages[0].content[1]' of type 'input_audio' is not supported by the anthropic provider",
        ),
        (
            {"type": "file", "file": {"file_id": "file-abc"}},
            "'messages[0].content[1].file' other than an inline PDF (file_data) is not supported by the anthropic provider",
        ),
        (
            {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}},
            "'messages[0].content[1].image_url' of type 'image/bmp' is not supported by the anthropic provider",
        ),
    ],
)
def test_unknown_content_parts_are_refused(part, message) -> None:
    content = [{"type": "text", "text": "Listen:"}, part]
    assert refused(chat([{"role": "user", "content": content}])) == message


def test_function_role_is_refused() -> None:
    message = refused(chat([*USER, {"role": "function", "name": "f", "content": "x"}]))
    assert message == "'messages[1].role' 'function' is not supported by the anthropic provider"


# --- request: images and documents ----------------------------------------------------------------


def test_images_by_data_url_and_by_url() -> None:
    body = build(fixture_json("anthropic/images/client.json"))
    blocks = body["messages"][0]["content"]
    assert blocks[1]["source"]["type"] == "base64"
    assert blocks[1]["source"]["media_type"] == "image/png"
    assert blocks[2]["source"] == {
        "type": "url",
        "url": "https://upload.wikimedia.org/wikipedia/commons/a/a7/Camponotus_flavomarginatus_ant.jpg",
    }


def test_image_url_as_plain_string_and_http() -> None:
    body = build(
        chat([{"role": "user", "content": [{"type": "image_url", "image_url": "http://x.test/a.jpg"}]}])
    )
    assert body["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "url", "url": "http://x.test/a.jpg"}}
    ]


def test_pdf_file_part_becomes_a_document() -> None:
    part = {
        "type": "file",
        "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0xLjQK"},
    }
    body = build(chat([{"role": "user", "content": [part]}]))
    assert body["messages"][0]["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"},
        }
    ]


# --- request: tools ------------------------------------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_tools_become_input_schema_tools() -> None:
    no_params = {"type": "function", "function": {"name": "now"}}
    strict = {"type": "function", "function": {"name": "s", "parameters": {"properties": {}}, "strict": True}}
    body = build(chat(USER, tools=[WEATHER, no_params, strict]))
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather in a city.",
            "input_schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
        {"name": "s", "input_schema": {"type": "object", "properties": {}}, "strict": True},
    ]
    assert "tool_choice" not in body


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        ("auto", False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            False,
            {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        ("auto", True, {"type": "auto"}),
    ],
)
def test_tool_choice_and_parallel_tool_calls(choice, parallel, expected) -> None:
    body = build(chat(USER, tools=[WEATHER], tool_choice=choice, parallel_tool_calls=parallel))
    assert body["tool_choice"] == expected


def test_assistant_tool_calls_become_tool_use_blocks() -> None:
    messages = [
        *USER,
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                },
                {"id": "toolu_2", "type": "function", "function": {"name": "now", "arguments": ""}},
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "-3 C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": ""},
    ]
    body = build(chat(messages, tools=[WEATHER]))
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
        ],
    }
    assert body["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "-3 C"},
            {"type": "tool_result", "tool_use_id": "toolu_2"},
        ],
    }


def test_several_tool_results_then_user_text_share_one_user_turn() -> None:
    body = build(fixture_json("anthropic/tool_results/client.json"))
    last = body["messages"][-1]
    assert last["role"] == "user"
    assert [b["type"] for b in last["content"]] == ["tool_result", "tool_result", "tool_result", "text"]
    assert len(body["messages"]) == 3


def test_tool_results_come_first_in_a_merged_user_turn() -> None:
    messages = [
        *USER,
        {
            "role": "assistant",
            "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "now", "arguments": "{}"}}],
        },
        {"role": "user", "content": "(a note before the result)"},
        {"role": "tool", "tool_call_id": "t1", "content": "12:00"},
    ]
    turn = build(chat(messages))["messages"][2]
    assert [b["type"] for b in turn["content"]] == ["tool_result", "text"]


def test_bad_tool_arguments_are_a_400() -> None:
    call = {"id": "t1", "type": "function", "function": {"name": "now", "arguments": "{not json"}}
    with pytest.raises(GatewayError) as err:
        build(chat([*USER, {"role": "assistant", "tool_calls": [call]}]))
    assert err.value.status == 400
    assert "not valid JSON" in err.value.message


def test_tool_message_without_id_is_a_400() -> None:
    with pytest.raises(GatewayError) as err:
        build(chat([*USER, {"role": "tool", "content": "x"}]))
    assert err.value.message == "messages[1]: a tool message needs a tool_call_id"


# --- request: response_format --------------------------------------------------------------------

ANSWER_TOOL = anthropic.RESPONSE_TOOL


def test_json_schema_becomes_a_forced_answer_tool() -> None:
    body = build(fixture_json("anthropic/json_schema/client.json"))
    assert body["tool_choice"] == {"type": "tool", "name": ANSWER_TOOL}
    assert (
        body["tools"][0]["input_schema"]
        == fixture_json("anthropic/json_schema/client.json")["response_format"]["json_schema"]["schema"]
    )


def test_json_object_becomes_an_any_object_answer_tool() -> None:
    body = build(chat(USER, response_format={"type": "json_object"}))
    assert body["tools"] == [
        {
            "name": ANSWER_TOOL,
            "description": anthropic._RESPONSE_TOOL_DESCRIPTION,
            "input_schema": {"type": "object"},
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": ANSWER_TOOL}


def test_response_format_text_changes_nothing() -> None:
    assert set(build(chat(USER, response_format={"type": "text"}))) == {"model", "max_tokens", "messages"}


@pytest.mark.parametrize(
    ("choice", "tool_names", "expected"),
    [
        (None, ["get_weather", ANSWER_TOOL], {"type": "any"}),
        ("auto", ["get_weather", ANSWER_TOOL], {"type": "any"}),
        ("none", ["get_weather", ANSWER_TOOL], {"type": "tool", "name": ANSWER_TOOL}),
        ("required", ["get_weather"], {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            ["get_weather"],
            {"type": "tool", "name": "get_weather"},
        ),
    ],
)
def test_response_format_with_client_tools(choice, tool_names, expected) -> None:
    body = build(chat(USER, tools=[WEATHER], tool_choice=choice, response_format={"type": "json_object"}))
    assert [t["name"] for t in body["tools"]] == tool_names
    assert body["tool_choice"] == expected


def test_non_object_schema_is_refused() -> None:
    rf = {"type": "json_schema", "json_schema": {"name": "l", "schema": {"type": "array"}}}
    assert refused(chat(USER, response_format=rf)) == (
        "'response_format.json_schema.schema' other than an object is not supported by the anthropic provider"
    )


def test_client_tool_with_the_reserved_name_is_refused() -> None:
    tool = {"type": "function", "function": {"name": ANSWER_TOOL}}
    assert "reserved" in refused(chat(USER, tools=[tool]))


# --- completions request -------------------------------------------------------------------------


def test_completions_prompt_as_single_item_list() -> None:
    req = COMPLETIONS.build_request({"prompt": ["Say hi"]}, make_ctx("llm/v1/completions", stream=True))
    assert req.body == {
        "model": MODEL,
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "Say hi"}],
        "stream": True,
    }
    assert_valid_anthropic(req.body)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"prompt": ["a", "b"]},
            "'prompt' other than one text prompt is not supported by the anthropic provider",
        ),
        (
            {"prompt": [1, 2, 3]},
            "'prompt' other than one text prompt is not supported by the anthropic provider",
        ),
        ({"prompt": "a", "echo": True}, "'echo' is not supported by the anthropic provider"),
        ({"prompt": "a", "suffix": "end"}, "'suffix' is not supported by the anthropic provider"),
        ({"prompt": "a", "best_of": 3}, "'best_of' above 1 is not supported by the anthropic provider"),
        ({"prompt": "a", "logprobs": 0}, "'logprobs' is not supported by the anthropic provider"),
        ({"prompt": "a", "n": 2}, "'n' above 1 is not supported by the anthropic provider"),
    ],
)
def test_completions_refusals(fields, message) -> None:
    assert refused(fields, COMPLETIONS, "llm/v1/completions") == message


def test_embeddings_route_has_no_transform_so_the_pipeline_answers_400() -> None:
    assert set(SPEC.routes) == {"llm/v1/chat", "llm/v1/completions"}
    route = Route.model_validate(
        {
            "name": "emb",
            "route_type": "llm/v1/embeddings",
            "model": {"provider": "anthropic", "name": MODEL, "options": {"anthropic_version": "2023-06-01"}},
        }
    )
    inbound = Inbound("POST", "gw", "/v1/embeddings", [], {}, b'{"input": "hi"}')
    with pytest.raises(GatewayError) as err:
        prepare(route, inbound, request_id="r", now=CREATED)
    assert err.value.status == 400
    assert err.value.message == "anthropic does not support the llm/v1/embeddings route type"


# --- pipeline: url, auth, headers ----------------------------------------------------------------


def anthropic_route(**options: Any) -> Route:
    return Route.model_validate(
        {
            "name": "claude",
            "route_type": "llm/v1/chat",
            "auth": {"header_name": "x-api-key", "header_value": "sk-ant-secret-123"},
            "model": {"provider": "anthropic", "options": {"anthropic_version": "2023-06-01", **options}},
        }
    )


def test_pipeline_target_headers_and_body() -> None:
    inbound = Inbound(
        "POST", "gw", "/v1/chat/completions", [], {"authorization": "Bearer client"}, orjson.dumps(chat(USER))
    )
    prep = prepare(anthropic_route(max_tokens=321), inbound, request_id="r", now=CREATED)
    up = prep.upstream
    assert up.url == "https://api.anthropic.com/v1/messages"
    assert up.set_headers["x-api-key"] == "sk-ant-secret-123"
    assert up.set_headers["anthropic-version"] == "2023-06-01"
    assert "authorization" in up.remove_headers
    assert orjson.loads(up.body) == {
        "model": MODEL,
        "max_tokens": 321,
        "messages": [{"role": "user", "content": "Hi"}],
    }


def test_pipeline_upstream_url_without_path_gets_the_messages_path() -> None:
    inbound = Inbound("POST", "gw", "/v1/chat/completions", [], {}, orjson.dumps(chat(USER)))
    prep = prepare(
        anthropic_route(upstream_url="http://127.0.0.1:9999"), inbound, request_id="r", now=CREATED
    )
    assert prep.upstream.url == "http://127.0.0.1:9999/v1/messages"


def test_pipeline_translates_an_upstream_error() -> None:
    inbound = Inbound("POST", "gw", "/v1/chat/completions", [], {}, orjson.dumps(chat(USER)))
    prep = prepare(anthropic_route(), inbound, request_id="r", now=CREATED)
    answer = translate_response(prep, 401, fixture_bytes("anthropic/errors/401.json"))
    assert orjson.loads(answer.body) == {
        "error": {
            "message": "invalid x-api-key",
            "type": "authentication_error",
            "param": None,
            "code": "authentication_error",
        }
    }


def test_pipeline_statistics_of_a_cached_answer() -> None:
    inbound = Inbound("POST", "gw", "/v1/chat/completions", [], {}, orjson.dumps(chat(USER)))
    prep = prepare(anthropic_route(), inbound, request_id="r", now=CREATED)
    answer = translate_response(prep, 200, fixture_bytes("anthropic/cache/response.json"))
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.cached_tokens, answer.usage.completion_tokens) == (
        2183,
        1850,
        17,
    )
    assert answer.response_model == "claude-sonnet-4-5-20250929"


# --- response ------------------------------------------------------------------------------------


def message_body(content: list[dict[str, Any]], stop_reason: str | None = "end_turn", **usage: int) -> dict:
    return {
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5, **usage},
    }


TEXT = [{"type": "text", "text": "Hello"}]
TOOL = [{"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "Oslo"}}]


@pytest.mark.parametrize(
    ("stop_reason", "content", "finish"),
    [
        ("end_turn", TEXT, "stop"),
        ("stop_sequence", TEXT, "stop"),
        ("max_tokens", TEXT, "length"),
        ("tool_use", TOOL, "tool_calls"),
        ("refusal", TEXT, "content_filter"),
        ("pause_turn", TEXT, "stop"),
        ("model_context_window_exceeded", TEXT, "length"),
        (None, TEXT, "stop"),
    ],
)
def test_stop_reasons(stop_reason, content, finish) -> None:
    out = CHAT.parse_response(message_body(content, stop_reason), make_ctx())
    assert out["choices"][0]["finish_reason"] == finish
    assert_chat_completion(out)


def test_text_blocks_are_joined_and_identity_fields_set() -> None:
    out = CHAT.parse_response(
        message_body([{"type": "text", "text": "Hello, "}, {"type": "text", "text": "world."}]), make_ctx()
    )
    assert out["id"] == "msg_013Zva2CMHLNnXjNJJKqJ2EF"
    assert out["created"] == CREATED
    assert out["model"] == "claude-sonnet-4-5-20250929"
    assert out["object"] == "chat.completion"
    assert out["choices"][0]["message"]["content"] == "Hello, world."


def test_only_tool_calls_means_null_content() -> None:
    out = CHAT.parse_response(message_body(TOOL, "tool_use"), make_ctx())
    message = out["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {
            "id": "toolu_9",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
        }
    ]
    assert_chat_completion(out)


def test_empty_tool_input_gives_parseable_arguments() -> None:
    out = CHAT.parse_response(message_body([{**TOOL[0], "input": {}}], "tool_use"), make_ctx())
    assert out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == "{}"


def test_thinking_goes_to_reasoning_content_and_the_signed_block_to_thinking_blocks() -> None:
    out = CHAT.parse_response(fixture_json("anthropic/thinking/response.json"), make_ctx())
    message = out["choices"][0]["message"]
    assert message["reasoning_content"].startswith("1001 = 7 \u00d7 143")
    assert "EqQBCgIYAhIM" not in message["reasoning_content"] + message["content"]
    assert [b["signature"][:12] for b in message["thinking_blocks"]] == ["EqQBCgIYAhIM"]
    assert out["usage"]["completion_tokens_details"] == {"reasoning_tokens": 71}


def test_redacted_thinking_is_kept_for_the_next_turn_only() -> None:
    out = CHAT.parse_response(
        message_body([{"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"}, *TEXT]), make_ctx()
    )
    assert out["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Hello",
        "refusal": None,
        "thinking_blocks": [{"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"}],
    }


def test_usage_counts_cache_reads_and_writes_as_prompt_tokens() -> None:
    out = CHAT.parse_response(
        message_body(TEXT, cache_read_input_tokens=100, cache_creation_input_tokens=20), make_ctx()
    )
    assert out["usage"] == {
        "prompt_tokens": 130,
        "completion_tokens": 5,
        "total_tokens": 135,
        "prompt_tokens_details": {"cached_tokens": 100},
    }


def test_null_cache_counts_are_zero() -> None:
    out = CHAT.parse_response(
        message_body(TEXT, cache_read_input_tokens=None, cache_creation_input_tokens=None), make_ctx()
    )
    assert out["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


def test_answer_tool_becomes_content_and_a_client_tool_is_never_confused_with_it() -> None:
    answer = {"type": "tool_use", "id": "toolu_a", "name": ANSWER_TOOL, "input": {"ok": True}}
    json_named = {"type": "tool_use", "id": "toolu_b", "name": "json", "input": {"ok": True}}
    out = CHAT.parse_response(message_body([answer], "tool_use"), make_ctx())
    assert out["choices"][0]["message"]["content"] == '{"ok":true}'
    assert out["choices"][0]["finish_reason"] == "stop"
    assert "tool_calls" not in out["choices"][0]["message"]
    out = CHAT.parse_response(message_body([json_named], "tool_use"), make_ctx())
    assert out["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "json"
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    # A client tool and the answer tool in one turn: the call stays a call.
    out = CHAT.parse_response(message_body([json_named, answer], "tool_use"), make_ctx())
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert [c["id"] for c in out["choices"][0]["message"]["tool_calls"]] == ["toolu_b"]


@pytest.mark.parametrize("body", [{}, {"type": "message"}, [], {"content": "text"}])
def test_untranslatable_body_raises(body) -> None:
    with pytest.raises(ValueError):
        CHAT.parse_response(body, make_ctx())


def test_native_usage() -> None:
    usage = SPEC.native_usage(fixture_json("anthropic/cache/response.json"))
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens, usage.cached_tokens) == (
        2183,
        17,
        2200,
        1850,
    )
    assert SPEC.native_usage({"type": "error"}) is None


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "status", "message", "openai_type", "code"),
    [
        ("401.json", 401, "invalid x-api-key", "authentication_error", "authentication_error"),
        ("429.json", 429, "This request would exceed the rate limit", "rate_limit_error", "rate_limit_error"),
        ("529.json", 529, "Overloaded", "api_error", "overloaded_error"),
    ],
)
def test_errors(fixture, status, message, openai_type, code) -> None:
    info = SPEC.parse_error(status, fixture_json(f"anthropic/errors/{fixture}"))
    assert info.message.startswith(message)
    assert (info.type, info.code) == (openai_type, code)


def test_error_of_another_shape_is_left_to_the_pipeline() -> None:
    assert SPEC.parse_error(502, {"message": "bad gateway"}) is None
    assert SPEC.parse_error(400, {"error": "text"}) is None
    info = SPEC.parse_error(402, {"type": "error", "error": {"type": "billing_error", "message": "Top up"}})
    assert (info.message, info.type, info.code) == ("Top up", "insufficient_quota", "billing_error")


# --- streams -------------------------------------------------------------------------------------


def run_stream(raw: bytes, pieces: list[bytes] | None = None, **ctx_args: Any):
    ctx_args.setdefault("stream", True)
    translator = CHAT.new_stream(make_ctx(**ctx_args)) if "route_type" not in ctx_args else None
    if translator is None:
        translator = COMPLETIONS.new_stream(make_ctx(**ctx_args))
    return drive(translator, pieces if pieces is not None else [raw]), translator


STREAMS = [
    "chat/stream.sse",
    "stream_tools/stream.sse",
    "stream_thinking/stream.sse",
    "stream_error/stream.sse",
    "web_search/stream.sse",
]


@pytest.mark.parametrize("name", STREAMS)
def test_stream_fixtures_are_real_anthropic_events(name: str) -> None:
    parser = SSEParser()
    for event in parser.feed(fixture_bytes(f"anthropic/{name}")) + parser.finish():
        data = orjson.loads(event.data)
        assert data["type"] == event.event
        if event.event not in ("ping", "error"):
            TypeAdapter(RawMessageStreamEvent).validate_python(data)


def test_plain_text_stream() -> None:
    raw, translator = run_stream(fixture_bytes("anthropic/chat/stream.sse"))
    out = frames(raw)
    assert_chunks_valid(out)
    assert chunk_deltas(out) == [
        {"role": "assistant", "content": ""},
        {"content": "The capital of Australia"},
        {"content": " is Canberra —"},
        {"content": " not Sydney."},
        {},
    ]
    assert out[-2]["choices"][0]["finish_reason"] == "stop"
    assert {c["id"] for c in out[:-1]} == {"msg_01XFDUDYJgAACzvnptvVoYEL"}
    assert {c["model"] for c in out[:-1]} == {"claude-sonnet-4-5-20250929"}
    assert {c["created"] for c in out[:-1]} == {CREATED}
    assert not any("usage" in c for c in out[:-1])  # the client did not ask for usage
    assert translator.usage.prompt_tokens == 27 and translator.usage.completion_tokens == 13
    assert translator.response_model == "claude-sonnet-4-5-20250929"
    assert translator.text == "The capital of Australia is Canberra — not Sydney."


def test_usage_chunk_only_when_asked() -> None:
    out = frames(run_stream(fixture_bytes("anthropic/chat/stream.sse"), include_usage=True)[0])
    assert_chunks_valid(out)
    assert out[-2] == {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "claude-sonnet-4-5-20250929",
        "choices": [],
        "usage": {"prompt_tokens": 27, "completion_tokens": 13, "total_tokens": 40},
    }


def test_parallel_tool_call_stream() -> None:
    raw, translator = run_stream(fixture_bytes("anthropic/stream_tools/stream.sse"))
    out = frames(raw)
    assert_chunks_valid(out)
    calls = [d["tool_calls"][0] for d in chunk_deltas(out) if "tool_calls" in d]
    assert calls == [
        {
            "index": 0,
            "id": "toolu_01A09q90qw90lq917835lq9",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        },
        {"index": 0, "function": {"arguments": '{"location": "Paris,'}},
        {"index": 0, "function": {"arguments": ' France", "unit": "cel'}},
        {"index": 0, "function": {"arguments": 'sius"}'}},
        {
            "index": 1,
            "id": "toolu_01BmZx8RKoVqTNEjiSuUc1Wp",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        },
        {"index": 1, "function": {"arguments": '{"location": "Tokyo, Japan"'}},
        {"index": 1, "function": {"arguments": ', "unit": "celsius"}'}},
        {
            "index": 2,
            "id": "toolu_01Tq6Fh4NcVJbPq9rDq2xW3e",
            "type": "function",
            "function": {"name": "get_current_time", "arguments": ""},
        },
        {"index": 2, "function": {"arguments": "{}"}},
    ]
    assert out[-2]["choices"][0]["finish_reason"] == "tool_calls"
    text = "".join(d.get("content") or "" for d in chunk_deltas(out))
    assert text == "I'll look up the weather in both cities and the current time."
    assert translator.usage.completion_tokens == 161


def test_thinking_stream_sends_the_signed_block_once_it_is_complete() -> None:
    raw, _ = run_stream(fixture_bytes("anthropic/stream_thinking/stream.sse"), include_usage=True)
    out = frames(raw)
    assert_chunks_valid(out)
    deltas = chunk_deltas(out)
    assert [d.get("reasoning_content") for d in deltas if "reasoning_content" in d] == [
        "1001 = 7 \u00d7 143, and 143 = 11 \u00d7 13.",
        " So 1001 is composite.",
    ]
    signed = [d["thinking_blocks"] for d in deltas if "thinking_blocks" in d]
    assert len(signed) == 1 and signed[0][0]["type"] == "thinking"
    assert signed[0][0]["thinking"] == "1001 = 7 \u00d7 143, and 143 = 11 \u00d7 13. So 1001 is composite."
    assert signed[0][0]["signature"].startswith("EqQBCgIYAhIM")
    assert [d["content"] for d in deltas if d.get("content")] == ["No. 1,001 = 7 \u00d7 11 \u00d7 13."]
    assert out[-2]["usage"] == {
        "prompt_tokens": 1042,
        "completion_tokens": 96,
        "total_tokens": 1138,
        "prompt_tokens_details": {"cached_tokens": 1024},
    }


def test_error_event_becomes_an_openai_error_frame() -> None:
    raw, translator = run_stream(fixture_bytes("anthropic/stream_error/stream.sse"))
    out = frames(raw)
    assert out[-1] == "[DONE]"
    assert out[-2] == {
        "error": {"message": "Overloaded", "type": "api_error", "param": None, "code": "overloaded_error"}
    }
    assert chunk_deltas(out)[-1] == {"content": "The capital of"}
    assert translator.usage.prompt_tokens == 27  # statistics still know the prompt


def test_stream_cut_short_ends_with_an_error_frame() -> None:
    raw = fixture_bytes("anthropic/chat/stream.sse")
    cut = raw[: raw.index(b"event: message_delta")]
    out = frames(run_stream(cut)[0])
    assert out[-1] == "[DONE]"
    assert out[-2]["error"]["message"] == "the anthropic stream ended before the response was complete"


# --- web search (chat web_search_options -> the server web search tool) ---------------------------

WEB_SEARCH_TOOL = {"type": "web_search_20250305", "name": "web_search"}
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}


def extension_ctx(**ctx_args: Any) -> CallContext:
    """The context of a call an ingress adapter reads (the gateway's chat extensions on)."""
    return dataclasses.replace(make_ctx(**ctx_args), extensions=True)


def test_web_search_options_offer_the_server_tool() -> None:
    assert build(chat(USER, web_search_options={}))["tools"] == [WEB_SEARCH_TOOL]
    # An ingress client that requires the search: the tool is forced (Anthropic's own tool_choice).
    body = build(chat(USER, tools=[WEATHER_TOOL], web_search_options={WEB_SEARCH_REQUIRED: True}))
    assert [t["name"] for t in body["tools"]] == ["get_weather", "web_search"]
    assert body["tool_choice"] == {"type": "tool", "name": "web_search"}
    # A client tool_choice naming a function wins over the mark; "none" offers nothing usable.
    named = {"type": "function", "function": {"name": "get_weather"}}
    body = build(
        chat(USER, tools=[WEATHER_TOOL], tool_choice=named, web_search_options={WEB_SEARCH_REQUIRED: True})
    )
    assert body["tool_choice"] == {"type": "tool", "name": "get_weather"}


def test_a_client_tool_named_web_search_is_refused_beside_the_search() -> None:
    tool = {"type": "function", "function": {"name": "web_search", "parameters": {"type": "object"}}}
    with pytest.raises(GatewayError) as err:
        build(chat(USER, tools=[tool], web_search_options={}))
    assert err.value.status == 400 and "'web_search' is Anthropic's web search tool's" in err.value.message


def test_web_search_answer_keeps_its_searches_for_ingress_clients_only() -> None:
    raw = fixture_json("anthropic/web_search/response.json")
    plain = CHAT.parse_response(raw, make_ctx())
    assert WEB_SEARCH_KEY not in plain["choices"][0]["message"]
    message = CHAT.parse_response(raw, extension_ctx())["choices"][0]["message"]
    assert message[WEB_SEARCH_KEY] == [
        {
            "id": "srvtoolu_01WYG3ziw53XMcoyKL4XcZmE",
            "queries": ["latest Python release"],
            "sources": [
                {"url": "https://www.python.org/downloads/", "title": "Download Python | Python.org"},
                {"url": "https://docs.python.org/3/whatsnew/3.14.html", "title": "What's new in Python 3.14"},
            ],
            "error": None,
        }
    ]
    cited = message["content"][65:106]
    assert cited == "Python 3.14.0, released on 7 October 2025"


def test_a_failed_search_keeps_its_error_code() -> None:
    raw = fixture_json("anthropic/web_search/response.json")
    raw["content"][2]["content"] = {"type": "web_search_tool_result_error", "error_code": "max_uses_exceeded"}
    Message.model_validate(raw)
    [search] = CHAT.parse_response(raw, extension_ctx())["choices"][0]["message"][WEB_SEARCH_KEY]
    assert (search["sources"], search["error"]) == ([], "max_uses_exceeded")


def test_web_search_stream_gives_citations_and_searches() -> None:
    raw = fixture_bytes("anthropic/web_search/stream.sse")
    out = frames(run_stream(raw, include_usage=True)[0])
    assert_chunks_valid(out)
    found = chunk_deltas(out)
    text = "".join(d.get("content") or "" for d in found)
    assert (
        text
        == "I'll check the weather in New York City. Today in New York City: mostly sunny, with a high of 24 °C."
    )
    [annotations] = [d["annotations"] for d in found if "annotations" in d]
    assert annotations == [
        {
            "type": "url_citation",
            "url_citation": {
                "start_index": 65,
                "end_index": 99,
                "url": "https://weather.example.com/ny",
                "title": "New York, NY Weather Forecast",
            },
        }
    ]
    assert text[65:99] == "mostly sunny, with a high of 24 °C"
    assert not any(WEB_SEARCH_KEY in d for d in found)  # an OpenAI client sees no searches
    translator = CHAT.new_stream(extension_ctx(stream=True))
    found = chunk_deltas(frames(drive(translator, [raw])))
    [searches] = [d[WEB_SEARCH_KEY] for d in found if WEB_SEARCH_KEY in d]
    assert searches == [
        {
            "id": "srvtoolu_014hJH82Qum7Td6UV8gDXThB",
            "queries": ["weather NYC today"],
            "sources": [
                {"url": "https://weather.example.com/ny", "title": "New York, NY Weather Forecast"},
                {"url": "https://news.example.org/nyc-weather", "title": "NYC weather today"},
            ],
            "error": None,
        }
    ]
    # The search comes between the text before it and the text after it, as Anthropic sent them.
    kinds = [next(iter(d)) for d in found if set(d) & {"content", WEB_SEARCH_KEY} and d.get("content") != ""]
    assert kinds.index(WEB_SEARCH_KEY) == 2


# --- stop sequences (for ingress clients: which one ended the text) ---------------------------------


def test_the_matched_stop_sequence_reaches_ingress_clients_only() -> None:
    raw = fixture_json("anthropic/stop_sequence/response.json")
    assert STOP_SEQUENCE_KEY not in CHAT.parse_response(raw, make_ctx())["choices"][0]
    assert CHAT.parse_response(raw, extension_ctx())["choices"][0][STOP_SEQUENCE_KEY] == "END"
    ended = fixture_json("anthropic/chat/response.json")
    assert STOP_SEQUENCE_KEY not in CHAT.parse_response(ended, extension_ctx())["choices"][0]


def test_the_matched_stop_sequence_in_a_stream() -> None:
    raw = fixture_bytes("anthropic/chat/stream.sse").replace(
        b'"stop_reason":"end_turn","stop_sequence":null',
        b'"stop_reason":"stop_sequence","stop_sequence":"\\n\\nQ:"',
    )
    out = frames(drive(CHAT.new_stream(extension_ctx(stream=True)), [raw]))
    [finish] = finishing_choices(out)
    assert (finish["finish_reason"], finish[STOP_SEQUENCE_KEY]) == ("stop", "\n\nQ:")
    plain = frames(run_stream(raw)[0])
    assert not any(STOP_SEQUENCE_KEY in c for c in choices(plain))


def test_answer_tool_streams_as_content() -> None:
    events = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-x",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 5, "output_tokens": 1},
            },
        },
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": ANSWER_TOOL, "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": '{"ok": '},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": "true}"},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 9},
        },
        {"type": "message_stop"},
    ]
    raw = b"".join(b"event: %s\ndata: %s\n\n" % (e["type"].encode(), orjson.dumps(e)) for e in events)
    out = frames(run_stream(raw)[0])
    assert_chunks_valid(out)
    assert chunk_deltas(out) == [
        {"role": "assistant", "content": ""},
        {"content": '{"ok": '},
        {"content": "true}"},
        {},
    ]
    assert out[-2]["choices"][0]["finish_reason"] == "stop"


def test_completions_stream() -> None:
    raw, _ = run_stream(
        fixture_bytes("anthropic/completions/stream.sse"), route_type="llm/v1/completions", include_usage=True
    )
    out = frames(raw)
    assert out[-1] == "[DONE]"
    for chunk in out[:-1]:
        # OpenAI streams completions with finish_reason null until the end, which its
        # (non-stream) Completion model does not allow: validate the rest of the chunk.
        probe = copy.deepcopy(chunk)
        for choice in probe["choices"]:
            choice["finish_reason"] = choice["finish_reason"] or "stop"
        assert Completion.model_validate(probe).model_dump(exclude_unset=True) == probe
        assert chunk["object"] == "text_completion"
    assert "".join(c["choices"][0]["text"] for c in out[:-2]) == (
        "Grey waves fold and break\nsalt wind carries gull voices\nthe tide keeps its time"
    )
    assert out[-3]["choices"][0]["finish_reason"] == "stop"
    assert out[-2]["usage"] == {"prompt_tokens": 14, "completion_tokens": 22, "total_tokens": 36}


# Splitting a stream anywhere must not change the output.

ALL_STREAMS = [*STREAMS, "completions/stream.sse"]


def _reference(name: str) -> bytes:
    route = {"route_type": "llm/v1/completions"} if name.startswith("completions") else {}
    return run_stream(fixture_bytes(f"anthropic/{name}"), include_usage=True, **route)[0]


@pytest.mark.parametrize("name", ALL_STREAMS)
def test_every_byte_split_gives_the_same_output(name: str) -> None:
    raw = fixture_bytes(f"anthropic/{name}")
    expected = _reference(name)
    route = {"route_type": "llm/v1/completions"} if name.startswith("completions") else {}
    for cut in range(1, len(raw)):
        got = run_stream(raw, [raw[:cut], raw[cut:]], include_usage=True, **route)[0]
        assert got == expected, f"split at byte {cut}"
    one_by_one = [raw[i : i + 1] for i in range(len(raw))]
    assert run_stream(raw, one_by_one, include_usage=True, **route)[0] == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_splits_give_the_same_output(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(ALL_STREAMS))
    raw = fixture_bytes(f"anthropic/{name}")
    cuts = sorted(data.draw(st.sets(st.integers(1, len(raw) - 1), max_size=40)))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    route = {"route_type": "llm/v1/completions"} if name.startswith("completions") else {}
    assert run_stream(raw, pieces, include_usage=True, **route)[0] == _reference(name)


def test_fixture_folders_are_all_covered() -> None:
    folders = {p.name for p in (FIXTURES / "anthropic").iterdir() if p.is_dir()}
    covered = {*CHAT_CASES, "completions", "errors"} | {Path(s).parent.name for s in STREAMS}
    assert folders == covered


def test_the_request_oracle_rejects_wrong_names() -> None:
    good = {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]}
    assert_valid_anthropic(good)
    for bad in (
        {**good, "stop": ["x"]},
        {**good, "tool_choice": {"type": "required"}},
        {**good, "tools": [{"name": "f", "parameters": {"type": "object"}}]},
        {**good, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]},
        {**good, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_call_id": "t"}]}]},
    ):
        with pytest.raises(ValueError):
            assert_valid_anthropic(bad)


def test_assistant_refusal_part_is_sent_as_text() -> None:
    refusal = {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't help with that."}]}
    body = build(chat([*USER, refusal, {"role": "user", "content": "OK"}]))
    assert body["messages"][1] == {"role": "assistant", "content": "I can't help with that."}


def test_completions_never_report_tool_calls() -> None:
    # The completions route sends no tools; should a tool_use come anyway, text_completion has no
    # 'tool_calls' finish reason.
    body = message_body([*TEXT, *TOOL], "tool_use")
    out = COMPLETIONS.parse_response(body, make_ctx("llm/v1/completions"))
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["choices"][0]["text"] == "Hello"
    raw = fixture_bytes("anthropic/stream_tools/stream.sse")
    chunks = frames(run_stream(raw, route_type="llm/v1/completions")[0])
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_json_schema_strict_is_carried_to_the_answer_tool_only_when_asked() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    tool = build(chat(USER, response_format=rf))["tools"][0]
    assert "strict" not in tool
    rf["json_schema"]["strict"] = True
    assert build(chat(USER, response_format=rf))["tools"][0]["strict"] is True


_plain_messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "developer", "user", "assistant", "tool"]),
            "content": st.one_of(st.sampled_from(["", "hi", "there"]), st.none()),
        },
        optional={"tool_calls": st.just([]), "function_call": st.none()},
    ),
    max_size=8,
)


@given(_plain_messages)
@settings(max_examples=300, deadline=None)
def test_plain_conversations_convert_as_the_general_path_does(messages):
    """The one-pass conversion of plain text conversations gives what the general one gives (or
    leaves the conversation to it), including its errors."""
    try:
        expected = anthropic._convert_any(copy.deepcopy(messages))
    except GatewayError as e:
        with pytest.raises(GatewayError) as raised:
            anthropic.convert_messages(messages)
        assert raised.value.body() == e.body()
        return
    assert anthropic.convert_messages(messages) == expected
    plain = anthropic._plain_conversation(messages)
    assert plain is None or plain == expected
