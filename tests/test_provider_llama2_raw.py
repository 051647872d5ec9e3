"""Llama-2 on a raw text-generation endpoint (llama2 with llama2_format: raw): exact bodies both ways.

Oracles: requests validate against huggingface_hub's TGI types (``TextGenerationInput``) with no
unknown field; fixtures parse as ``TextGenerationOutput`` / ``TextGenerationStreamOutput``; what we
return parses with the openai SDK's types without losing a field.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest
from conftest import fixture_bytes, fixture_json
from huggingface_hub.inference._generated.types import text_generation as tgi
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import TypeAdapter
from streams import drive as run
from streams import finishing_choices, splits
from streams import frames as frames_to_events

from transforms.config import ModelOptions, Route
from transforms.errors import GatewayError
from transforms.pipeline import prepare, translate_error, translate_response
from transforms.providers import llama2_raw
from transforms.registry import spec_for
from transforms.stream import SSEParser
from transforms.types import ESTIMATED_MARK, STOP_SEQUENCE_KEY, CallContext, ErrorInfo, Inbound, Usage

CHAT, COMPLETIONS = "llm/v1/chat", "llm/v1/completions"
SPEC = llama2_raw.SPECS[0]
MODEL = "meta-llama/Llama-2-7b-chat-hf"


def ctx(
    route_type: str = CHAT, *, stream: bool = False, include_usage: bool = False, prompt_text: str = ""
) -> CallContext:
    return CallContext(
        "r",
        route_type,
        "llama2",
        MODEL,
        ModelOptions(),
        stream,
        "req1",
        1700000000,
        (),
        include_usage,
        prompt_text,
    )


# --- oracles -------------------------------------------------------------------------------------

_INPUT = TypeAdapter(tgi.TextGenerationInput)
_OUTPUT = TypeAdapter(tgi.TextGenerationOutput)
_STREAM_OUTPUT = TypeAdapter(tgi.TextGenerationStreamOutput)


def field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def check_tgi_request(body: dict[str, Any]) -> None:
    _INPUT.validate_python(body)
    assert set(body) <= field_names(tgi.TextGenerationInput)
    assert set(body["parameters"]) <= field_names(tgi.TextGenerationInputGenerateParameters)


def test_fixtures_are_tgi_shaped():
    _OUTPUT.validate_python(fixture_json("llama2_raw/chat/response.json"))
    for item in fixture_json("llama2_raw/completions/response.json"):
        _OUTPUT.validate_python(item)
    for name in ("chat/stream.sse", "completions/stream.sse"):
        parser = SSEParser()
        events = parser.feed(fixture_bytes(f"llama2_raw/{name}")) + parser.finish()
        assert events
        for event in events:
            _STREAM_OUTPUT.validate_python(orjson.loads(event.data))
    for name in ("chat/request.json", "completions/request.json"):
        check_tgi_request(fixture_json(f"llama2_raw/{name}"))


# --- the Llama-2 prompt --------------------------------------------------------------------------

SYS_OPEN, SYS_CLOSE = "<<SYS>>\n", "\n<</SYS>>\n\n"

PROMPTS = [
    pytest.param([{"role": "user", "content": "Hi"}], "<s>[INST] Hi [/INST]", id="one-user-turn"),
    pytest.param(
        [
            {"role": "system", "content": "You are a helpful typography assistant."},
            {"role": "user", "content": "Name one well known font."},
            {"role": "assistant", "content": "Helvetica."},
            {"role": "user", "content": "Why is it well known?"},
        ],
        fixture_json("llama2_raw/chat/request.json")["inputs"],
        id="multi-turn-fixture",
    ),
    pytest.param(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
            {"role": "user", "content": "  Hello  "},
        ],
        f"<s>[INST] {SYS_OPEN}Be brief.\n\nAnswer in English.{SYS_CLOSE}Hello [/INST]",
        id="leading-system-messages-join",
    ),
    pytest.param(
        [
            {"role": "user", "content": "First question."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Part one."}, {"type": "text", "text": "Part two."}],
            },
            {"role": "assistant", "content": "A1"},
            {"role": "assistant", "content": "A2"},
            {"role": "system", "content": "From now on, answer in French."},
            {"role": "user", "content": "Second question."},
        ],
        "<s>[INST] First question.\n\nPart one.\nPart two. [/INST] A1\n\nA2 </s>"
        "<s>[INST] From now on, answer in French.\n\nSecond question. [/INST]",
        id="consecutive-roles-join-late-system-joins-next-instruction",
    ),
    pytest.param(
        [
            {"role": "system", "content": "S"},
            {"role": "assistant", "content": "How can I help?"},
            {"role": "user", "content": "Tell me a joke."},
            {"role": "assistant", "content": "Why did the"},
        ],
        f"<s>[INST] {SYS_OPEN}S{SYS_CLOSE} [/INST] How can I help? </s><s>[INST] Tell me a joke. [/INST] Why did the",
        id="assistant-first-and-open-last-answer",
    ),
    pytest.param(
        [{"role": "system", "content": "Only a system prompt."}],
        f"<s>[INST] {SYS_OPEN}Only a system prompt.{SYS_CLOSE} [/INST]",
        id="system-only",
    ),
    pytest.param(
        [
            {"role": "user", "content": "Q"},
            {"role": "assistant", "content": None},
            {"role": "user", "content": "Q2"},
        ],
        "<s>[INST] Q [/INST] </s><s>[INST] Q2 [/INST]",
        id="empty-assistant-turn",
    ),
]


@pytest.mark.parametrize(("messages", "expected"), PROMPTS)
def test_chat_prompt(messages, expected):
    assert llama2_raw.chat_prompt(messages) == expected


# --- requests ------------------------------------------------------------------------------------

REQUESTS = [
    pytest.param(
        CHAT,
        {
            "model": MODEL,
            "messages": PROMPTS[1].values[0],
            "max_tokens": 48,
            "temperature": 0.6,
            "top_p": 0.9,
        },
        False,
        "/generate",
        fixture_json("llama2_raw/chat/request.json"),
        id="chat-fixture",
    ),
    pytest.param(
        CHAT,
        {
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 10,
            "max_completion_tokens": 20,
            "temperature": 1.2,
            "top_p": 1,
            "top_k": 0,
            "stop": "User:",
            "seed": 42,
            "frequency_penalty": 0.4,
            "presence_penalty": 0,
            "stream": True,
            "user": "u-1",
            "response_format": {"type": "text"},
            "tool_choice": "none",
        },
        True,
        "/generate_stream",
        {
            "inputs": "<s>[INST] Hi [/INST]",
            "parameters": {
                "return_full_text": False,
                "details": True,
                "max_new_tokens": 20,
                "temperature": 1.2,
                "stop": ["User:"],
                "seed": 42,
                "frequency_penalty": 0.4,
            },
            "stream": True,
        },
        id="options-in-tgi-ranges-stream",
    ),
    pytest.param(
        CHAT,
        {"messages": [{"role": "user", "content": "Hi"}], "temperature": 0, "top_p": 0.5, "top_k": 40},
        False,
        "/generate",
        {"inputs": "<s>[INST] Hi [/INST]", "parameters": {"return_full_text": False, "details": True}},
        id="temperature-zero-is-greedy",
    ),
    pytest.param(
        CHAT,
        {"messages": [{"role": "user", "content": "Hi"}], "temperature": 0.8, "top_p": 0, "top_k": 40},
        False,
        "/generate",
        {"inputs": "<s>[INST] Hi [/INST]", "parameters": {"return_full_text": False, "details": True}},
        id="top-p-zero-is-greedy",
    ),
    pytest.param(
        COMPLETIONS,
        {"model": MODEL, "prompt": "Complete: The quick brown fox", "max_tokens": 16},
        False,
        "/generate",
        fixture_json("llama2_raw/completions/request.json"),
        id="completions-fixture",
    ),
    pytest.param(
        COMPLETIONS,
        {
            "prompt": [" Once upon a time "],
            "top_k": 50,
            "stop": ["\n", "."],
            "stream": True,
            "echo": False,
            "best_of": 1,
        },
        True,
        "/generate_stream",
        {
            "inputs": "<s>[INST] Once upon a time [/INST]",
            "parameters": {"return_full_text": False, "details": True, "top_k": 50, "stop": ["\n", "."]},
            "stream": True,
        },
        id="completions-single-item-list-stream",
    ),
]


@pytest.mark.parametrize(("route_type", "body", "stream", "path", "expected"), REQUESTS)
def test_build_request(route_type, body, stream, path, expected):
    request = SPEC.routes[route_type].build_request(body, ctx(route_type, stream=stream))
    assert request.path == path
    assert request.method == "POST" and request.query == [] and request.headers == {}
    assert request.body == expected
    check_tgi_request(request.body)


LABEL = "the llama2 (llama2_format: raw) provider"
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
REFUSALS = [
    (CHAT, {"tools": [TOOL]}, f"'tools' is not supported by {LABEL}"),
    (CHAT, {"tool_choice": "required"}, f"'tool_choice' is not supported by {LABEL}"),
    (
        CHAT,
        {"tool_choice": {"type": "function", "function": {"name": "f"}}},
        f"'tool_choice' is not supported by {LABEL}",
    ),
    (CHAT, {"response_format": {"type": "json_object"}}, f"'response_format' is not supported by {LABEL}"),
    (
        CHAT,
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}},
        f"'response_format' is not supported by {LABEL}",
    ),
    (CHAT, {"n": 2}, f"'n' greater than 1 is not supported by {LABEL}"),
    (CHAT, {"logprobs": True}, f"'logprobs' is not supported by {LABEL}"),
    (CHAT, {"top_logprobs": 3}, f"'top_logprobs' is not supported by {LABEL}"),
    (CHAT, {"logit_bias": {"1": 5}}, f"'logit_bias' is not supported by {LABEL}"),
    (CHAT, {"presence_penalty": 0.5}, f"'presence_penalty' is not supported by {LABEL}"),
    (
        CHAT,
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "x"},
                        {"type": "image_url", "image_url": {"url": "https://e.com/a.png"}},
                    ],
                }
            ]
        },
        f"'messages[0].content[1]' of type 'image_url' is not supported by {LABEL}",
    ),
    (
        CHAT,
        {
            "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f"}}]},
            ]
        },
        f"'messages[1].tool_calls' is not supported by {LABEL}",
    ),
    (
        CHAT,
        {"messages": [{"role": "tool", "tool_call_id": "c", "content": "1"}]},
        f"'messages[0].role' 'tool' is not supported by {LABEL}",
    ),
    (
        CHAT,
        {"messages": [{"role": "function", "name": "f", "content": "1"}]},
        f"'messages[0].role' 'function' is not supported by {LABEL}",
    ),
    (COMPLETIONS, {"prompt": "a", "suffix": "b"}, f"'suffix' is not supported by {LABEL}"),
    (COMPLETIONS, {"prompt": "a", "echo": True}, f"'echo' is not supported by {LABEL}"),
    (COMPLETIONS, {"prompt": "a", "best_of": 2}, f"'best_of' greater than 1 is not supported by {LABEL}"),
    (COMPLETIONS, {"prompt": "a", "logprobs": 0}, f"'logprobs' is not supported by {LABEL}"),
    (COMPLETIONS, {"prompt": ["a", "b"]}, f"'prompt' other than a single string is not supported by {LABEL}"),
    (COMPLETIONS, {"prompt": [1, 2]}, f"'prompt' other than a single string is not supported by {LABEL}"),
]


@pytest.mark.parametrize(("route_type", "extra", "message"), REFUSALS)
def test_refusals_name_the_field_and_provider(route_type, extra, message):
    base = {"messages": [{"role": "user", "content": "Hi"}]} if route_type == CHAT else {}
    with pytest.raises(GatewayError) as err:
        SPEC.routes[route_type].build_request({**base, **extra}, ctx(route_type))
    assert err.value.status == 400
    assert err.value.message == message


def test_embeddings_are_not_a_route_of_the_raw_format():
    assert set(SPEC.routes) == {CHAT, COMPLETIONS}


# --- responses -----------------------------------------------------------------------------------


def check_openai(route_type: str, out: dict[str, Any]) -> None:
    model = ChatCompletion if route_type == CHAT else Completion
    parsed = model.model_validate(out)
    assert parsed.model_dump(mode="json", exclude_unset=True) == out


def chat_completion(content: str, finish: str, usage: tuple[int, int]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-req1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
    }


PROMPT_TEXT = "You are a helpful typography assistant. Name one well known font. Helvetica. Why is it well known?"  # 98 chars

RESPONSES = [
    pytest.param(
        CHAT,
        fixture_json("llama2_raw/chat/response.json"),
        chat_completion("Helvetica is a clean, neutral sans-serif typeface.", "stop", (25, 17)),
        id="tgi-object-details-prompt-estimated",
    ),
    pytest.param(
        CHAT,
        {
            "generated_text": " Sure",
            "details": {
                "finish_reason": "length",
                "generated_tokens": 1,
                "prefill": [
                    {"id": 1, "text": "<s>", "logprob": None},
                    {"id": 518, "text": "[", "logprob": -9.1},
                ],
                "tokens": [],
            },
        },
        chat_completion("Sure", "length", (2, 1)),
        id="prefill-counts-length",
    ),
    pytest.param(
        CHAT,
        [
            {
                "generated_text": "<s>[INST] Hi [/INST] Hello there",
                "details": {
                    "finish_reason": "stop_sequence",
                    "generated_tokens": 3,
                    "prefill": [],
                    "tokens": [],
                },
            }
        ],
        chat_completion("Hello there", "stop", (25, 3)),
        id="list-echoed-prompt-stop-sequence",
    ),
    pytest.param(
        CHAT,
        {"generated_text": "Plain answer [/INST] with brackets"},
        chat_completion("Plain answer [/INST] with brackets", "stop", (25, 9)),
        id="no-details-estimates-and-keeps-unechoed-text",
    ),
    pytest.param(
        CHAT,
        {"data": [{"generated_text": " Hello there"}]},
        chat_completion("Hello there", "stop", (25, 3)),
        id="kong-data-wrapper",
    ),
    pytest.param(
        COMPLETIONS,
        fixture_json("llama2_raw/completions/response.json"),
        {
            "id": "cmpl-req1",
            "object": "text_completion",
            "created": 1700000000,
            "model": MODEL,
            "choices": [
                {"index": 0, "text": "jumps over the lazy dog.", "logprobs": None, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 25, "completion_tokens": 6, "total_tokens": 31},
        },
        id="completions-hf-list-echo",
    ),
]


@pytest.mark.parametrize(("route_type", "upstream", "expected"), RESPONSES)
def test_parse_response(route_type, upstream, expected):
    out = SPEC.routes[route_type].parse_response(upstream, ctx(route_type, prompt_text=PROMPT_TEXT))
    # Counts the endpoint did not report are estimated, and marked so for statistics.
    details = upstream[0].get("details") if isinstance(upstream, list) else upstream.get("details")
    reported = isinstance(details, dict) and details.get("generated_tokens") and details.get("prefill")
    assert out["usage"].pop(ESTIMATED_MARK, False) is (not reported)
    assert out == expected
    check_openai(route_type, out)


def test_data_wrapper_holds_tgi_outputs():
    # Kong's mocks wrap the Inference API's list of TGI outputs in {"data": [...]}.
    details = {"finish_reason": "length", "generated_tokens": 1, "prefill": [], "tokens": []}
    wrapped = {"data": [{"generated_text": " Hi", "details": details}]}
    _OUTPUT.validate_python(wrapped["data"][0])
    out = llama2_raw.parse_response(wrapped, ctx(CHAT, prompt_text=PROMPT_TEXT))
    assert out["choices"][0]["message"]["content"] == "Hi"
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 1


@pytest.mark.parametrize(
    ("upstream", "error"),
    [
        ([], "the llama2 endpoint returned an empty list"),
        ({"data": []}, "the llama2 endpoint returned an empty list"),
        ({"data": "x"}, "'generated_text' not in the llama2 response"),
        ("text", "the llama2 response is not a JSON object"),
        ({"outputs": "x"}, "'generated_text' not in the llama2 response"),
        ({"error": "Model is overloaded"}, "Model is overloaded"),
    ],
)
def test_untranslatable_responses_raise(upstream, error):
    with pytest.raises(ValueError) as err:
        llama2_raw.parse_response(upstream, ctx())
    assert str(err.value) == error


def test_parse_error():
    assert llama2_raw.parse_error(422, fixture_json("llama2_raw/errors/422.json")) == ErrorInfo(
        "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4090 `inputs` tokens and 48 `max_new_tokens`",
        code="validation",
    )
    assert llama2_raw.parse_error(503, fixture_json("llama2_raw/errors/503.json")) == ErrorInfo(
        "Model meta-llama/Llama-2-7b-chat-hf is currently loading"
    )
    assert llama2_raw.parse_error(
        400, {"error": ["Error in `parameters.top_p`: ensure this value is less than 1.0", "bad"]}
    ) == ErrorInfo("Error in `parameters.top_p`: ensure this value is less than 1.0; bad")
    assert llama2_raw.parse_error(400, {"message": "flat"}) == ErrorInfo("flat")
    assert llama2_raw.parse_error(500, {"detail": "x"}) is None
    assert llama2_raw.parse_error(500, ["x"]) is None


# --- through the pipeline ------------------------------------------------------------------------


def make_route(
    route_type: str = CHAT, upstream_url: str = "http://tgi.internal:8080", **options: Any
) -> Route:
    return Route.model_validate(
        {
            "name": "raw",
            "route_type": route_type,
            "auth": {"header_name": "Authorization", "header_value": "Bearer hf_secret_token_123"},
            "model": {
                "provider": "llama2",
                "name": MODEL,
                "options": {"llama2_format": "raw", "upstream_url": upstream_url, **options},
            },
        }
    )


def inbound(body: dict[str, Any], path: str = "/v1/chat/completions") -> Inbound:
    return Inbound("POST", "gw", path, [], {}, orjson.dumps(body))


@pytest.mark.parametrize(
    ("upstream_url", "stream", "url"),
    [
        ("http://tgi.internal:8080", False, "http://tgi.internal:8080/generate"),
        ("http://tgi.internal:8080/", True, "http://tgi.internal:8080/generate_stream"),
        (
            "https://api-inference.huggingface.co/models/meta-llama/Llama-2-7b-chat-hf",
            True,
            "https://api-inference.huggingface.co/models/meta-llama/Llama-2-7b-chat-hf",
        ),
    ],
)
def test_route_selection_and_upstream_url(upstream_url, stream, url):
    route = make_route(upstream_url=upstream_url, max_tokens=100, top_k=10)
    assert spec_for(route) is SPEC
    body = {"messages": [{"role": "user", "content": "Hello"}], "stream": stream}
    prep = prepare(route, inbound(body), request_id="abc", now=1700000000)
    assert prep.upstream.url == url
    assert prep.upstream.set_headers["authorization"] == "Bearer hf_secret_token_123"
    sent = orjson.loads(prep.upstream.body)
    assert sent["inputs"] == "<s>[INST] Hello [/INST]"
    assert sent["parameters"] == {
        "return_full_text": False,
        "details": True,
        "max_new_tokens": 100,
        "top_k": 10,
    }
    assert sent.get("stream", False) is stream


def test_pipeline_answer_usage_and_errors():
    prep = prepare(
        make_route(), inbound({"messages": PROMPTS[1].values[0]}), request_id="abc", now=1700000000
    )
    assert prep.ctx.prompt_text == PROMPT_TEXT
    answer = translate_response(prep, 200, fixture_bytes("llama2_raw/chat/response.json"))
    assert answer.usage == Usage(25, 17, 42, estimated=True)  # no prefill: the prompt count is estimated
    assert "_ai_proxy_estimated" not in orjson.loads(answer.body)["usage"]
    assert answer.response_model == MODEL
    assert (
        orjson.loads(answer.body)["choices"][0]["message"]["content"]
        == "Helvetica is a clean, neutral sans-serif typeface."
    )
    error = orjson.loads(translate_error(prep, 401, fixture_bytes("llama2_raw/errors/401.json")))
    assert error == {
        "error": {
            "message": "Model requires a Pro subscription; check out hf.co/pricing to learn more. Make sure to include your HF token in your query.",
            "type": "authentication_error",
            "param": None,
            "code": None,
        }
    }


def test_completions_through_the_pipeline():
    route = make_route(COMPLETIONS)
    prep = prepare(
        route,
        inbound({"prompt": "Complete: The quick brown fox", "max_tokens": 16}, "/v1/completions"),
        request_id="a",
        now=1,
    )
    assert orjson.loads(prep.upstream.body) == fixture_json("llama2_raw/completions/request.json")
    answer = translate_response(prep, 200, fixture_bytes("llama2_raw/completions/response.json"))
    assert orjson.loads(answer.body)["choices"][0]["text"] == "jumps over the lazy dog."
    assert answer.usage == Usage(8, 6, 14, estimated=True)  # 29 prompt characters, 24 answer characters


# --- streams -------------------------------------------------------------------------------------

CHAT_STREAM = fixture_bytes("llama2_raw/chat/stream.sse")
COMPLETIONS_STREAM = fixture_bytes("llama2_raw/completions/stream.sse")


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-req1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


CHAT_PIECES = [
    "Hel",
    "vet",
    "ica",
    " is",
    " a",
    " clean",
    ",",
    " neutral",
    " s",
    "ans",
    "-",
    "ser",
    "if",
    " type",
    "face",
    ".",
]
CHAT_EXPECTED = [
    chunk({"role": "assistant", "content": ""}),
    *(chunk({"content": piece}) for piece in CHAT_PIECES),
    chunk({}, "stop"),
    {
        "id": "chatcmpl-req1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": MODEL,
        "choices": [],
        "usage": {"prompt_tokens": 52, "completion_tokens": 17, "total_tokens": 69},
    },
    "[DONE]",
]
COMPLETIONS_EXPECTED = [
    *(
        {
            "id": "cmpl-req1",
            "object": "text_completion",
            "created": 1700000000,
            "model": MODEL,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
        }
        for text, finish in [("j", None), ("umps", None), (" over", None), (" the", None), ("", "length")]
    ),
    "[DONE]",
]
STREAMS = [
    pytest.param(CHAT, CHAT_STREAM, True, CHAT_EXPECTED, Usage(52, 17, 69), "".join(CHAT_PIECES), id="chat"),
    pytest.param(
        COMPLETIONS,
        COMPLETIONS_STREAM,
        False,
        COMPLETIONS_EXPECTED,
        Usage(19, 4, 23),
        "jumps over the",
        id="completions",
    ),
]


def check_chunks(route_type: str, events: list[Any]) -> None:
    for event in events[:-1]:
        if route_type == CHAT:
            assert (
                ChatCompletionChunk.model_validate(event).model_dump(mode="json", exclude_unset=True) == event
            )
        else:
            # Completion.finish_reason is required in the SDK type; mid-stream chunks carry null as OpenAI's do.
            choices = [{**c, "finish_reason": c["finish_reason"] or "stop"} for c in event["choices"]]
            assert Completion.model_validate({**event, "choices": choices}).model_dump(
                mode="json", exclude_unset=True
            ) == {
                **event,
                "choices": choices,
            }


@pytest.mark.parametrize(("route_type", "data", "include_usage", "expected", "usage", "text"), STREAMS)
def test_stream_translation(route_type, data, include_usage, expected, usage, text):
    translator = SPEC.routes[route_type].new_stream(ctx(route_type, stream=True, include_usage=include_usage))
    events = frames_to_events(run(translator, [data]))
    assert events == expected
    check_chunks(route_type, events)
    assert translator.usage == usage
    assert translator.text == text


@pytest.mark.parametrize(("route_type", "data", "include_usage"), [p.values[:3] for p in STREAMS])
def test_stream_at_every_byte_split(route_type, data, include_usage):
    def fresh():
        return SPEC.routes[route_type].new_stream(ctx(route_type, stream=True, include_usage=include_usage))

    whole = run(fresh(), [data])
    for cut in range(1, len(data)):
        assert run(fresh(), [data[:cut], data[cut:]]) == whole


@given(st.lists(st.integers(min_value=1, max_value=len(CHAT_STREAM) - 1), max_size=50))
@settings(max_examples=150, deadline=None)
def test_stream_random_splits(cuts):
    whole = run(llama2_raw.new_stream(ctx(stream=True, include_usage=True)), [CHAT_STREAM])
    assert (
        run(llama2_raw.new_stream(ctx(stream=True, include_usage=True)), splits(CHAT_STREAM, cuts)) == whole
    )


def test_stream_error_event():
    translator = llama2_raw.new_stream(ctx(stream=True))
    events = frames_to_events(run(translator, [fixture_bytes("llama2_raw/errors/stream_error.sse")]))
    assert events == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        {
            "error": {
                "message": "Request failed during generation: Server error: CUDA out of memory. Tried to allocate 64.00 MiB",
                "type": "api_error",
                "param": None,
                "code": "upstream_error",
            }
        },
        "[DONE]",
    ]


def test_truncated_stream_says_so():
    data = CHAT_STREAM[: CHAT_STREAM.rindex(b"data:")]
    events = frames_to_events(run(llama2_raw.new_stream(ctx(stream=True)), [data]))
    assert events[-2]["error"]["message"] == "the llama2 stream ended before the response was complete"
    assert events[-1] == "[DONE]"


def test_stream_without_details_estimates_and_done_marker_ends():
    tokens = [" ", "  Hi", " there", "</s>"]
    events = b"".join(
        b"data: "
        + orjson.dumps(
            {
                "token": {"id": i, "text": t, "logprob": -0.1, "special": t == "</s>"},
                "generated_text": None,
                "details": None,
            }
        )
        + b"\n\n"
        for i, t in enumerate(tokens)
    )
    translator = llama2_raw.new_stream(ctx(stream=True, prompt_text="Say hi to me please"))
    out = frames_to_events(run(translator, [events + b"data: [DONE]\n\n"]))
    assert [e["choices"][0]["delta"] for e in out[:-1]] == [
        {"role": "assistant", "content": ""},
        {"content": "Hi"},
        {"content": " there"},
        {},
    ]
    assert out[-2]["choices"][0]["finish_reason"] == "stop"
    assert translator.usage == Usage(5, 2, 7, estimated=True)


def test_stream_stop_sequence_and_final_event_without_details():
    data = (
        b'data:{"index":1,"token":{"id":9,"text":" Yes","logprob":-0.1,"special":false},"generated_text":null,"details":null}\n\n'
        b'data:{"index":2,"token":{"id":10,"text":".","logprob":-0.1,"special":false},"generated_text":" Yes.","details":null}\n\n'
    )
    translator = llama2_raw.new_stream(ctx(stream=True, prompt_text="12345678"))
    out = frames_to_events(run(translator, [data]))
    assert [e["choices"][0]["delta"] for e in out[:-1]] == [
        {"role": "assistant", "content": ""},
        {"content": "Yes"},
        {"content": "."},
        {},
    ]
    assert translator.usage == Usage(2, 1, 3, estimated=True)


def test_a_stop_sequence_stop_is_said_to_ingress_clients_only():
    answer = fixture_json("llama2_raw/chat/response.json")
    answer["details"]["finish_reason"] = "stop_sequence"
    ingress = dataclasses.replace(ctx(), extensions=True)
    assert SPEC.routes[CHAT].parse_response(answer, ingress)["choices"][0][STOP_SEQUENCE_KEY] == ""
    assert STOP_SEQUENCE_KEY not in SPEC.routes[CHAT].parse_response(answer, ctx())["choices"][0]
    raw = fixture_bytes("llama2_raw/chat/stream.sse").replace(
        b'"finish_reason":"eos_token"', b'"finish_reason":"stop_sequence"'
    )
    stream = SPEC.routes[CHAT].new_stream(dataclasses.replace(ctx(stream=True), extensions=True))
    finish = finishing_choices(frames_to_events(run(stream, [raw])))
    assert [(f["finish_reason"], f[STOP_SEQUENCE_KEY]) for f in finish] == [("stop", "")]
