"""Reasoning on every provider: reasoning_effort / thinking mapped to each provider's own setting,
Claude's rules applied, and signed thinking carried through an OpenAI client and rebuilt.

Oracles: the providers' SDK types (anthropic's MessageCreateParams and ThinkingConfigParam,
botocore's Converse model, google-genai's GenerationConfig, cohere's and ollama's request types)
and openai's ChatCompletion / ChatCompletionMessageParam for what a client receives and sends back.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from anthropic.types import Message, ThinkingConfigParam
from conftest import fixture_bytes
from openai.types.chat import ChatCompletion, ChatCompletionAssistantMessageParam
from pydantic import TypeAdapter
from streams import assert_chunks_valid, drive, frames
from streams import deltas as chunk_deltas
from test_provider_anthropic import assert_valid_anthropic
from test_provider_bedrock import assert_shape, assert_valid_converse, make_streams
from test_provider_bedrock import make_ctx as bedrock_ctx
from test_provider_cohere import assert_valid_cohere_chat
from test_provider_gemini import assert_valid_generate
from test_provider_ollama import check_ollama_request

from transforms.config import ModelOptions
from transforms.errors import GatewayError
from transforms.reasoning import (
    BUDGETS,
    SIGNATURE_MARKER,
    Reasoning,
    carried,
    pack_blocks,
    reasoning_of,
    split_call_id,
)
from transforms.registry import SPECS
from transforms.types import CallContext

THINKING_CONFIG = TypeAdapter(ThinkingConfigParam)
ASSISTANT_PARAM = TypeAdapter(ChatCompletionAssistantMessageParam)
SIGNATURE = "EqQBCgIYAhIMsignature+/="
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
USER = [{"role": "user", "content": "Weather in Paris?"}]


def ctx(provider: str, model: str, *, stream: bool = False, route_type: str = "llm/v1/chat") -> CallContext:
    return CallContext(
        route_name="r",
        route_type=route_type,
        provider=provider,
        model=model,
        options=ModelOptions(),
        stream=stream,
        request_id="req-1",
        created=1767225600,
    )


def build(provider: str, model: str, body: dict[str, Any], **kw: Any) -> Any:
    return (
        SPECS[provider].routes["llm/v1/chat"].build_request(copy.deepcopy(body), ctx(provider, model, **kw))
    )


def refused(provider: str, model: str, body: dict[str, Any]) -> GatewayError:
    with pytest.raises(GatewayError) as err:
        build(provider, model, body)
    assert err.value.status == 400
    return err.value


def assert_client_message(message: dict[str, Any]) -> dict[str, Any]:
    """What an openai SDK client sends back as the assistant turn: the message as the SDK parsed it
    (extra fields kept, as ``model_dump`` keeps them), valid as a request message."""
    out = (
        ChatCompletion.model_validate(
            {
                "id": "x",
                "object": "chat.completion",
                "created": 1,
                "model": "m",
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
            }
        )
        .choices[0]
        .message.model_dump(exclude_unset=True)
    )
    ASSISTANT_PARAM.validate_python(out)
    return out


# --- what a client asks for ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, None),
        ({"reasoning_effort": "low"}, Reasoning("low")),
        ({"reasoning_effort": "none"}, Reasoning("none")),
        ({"thinking": {"type": "enabled", "budget_tokens": 3000}}, Reasoning("medium", budget=3000)),
        ({"thinking": {"type": "adaptive"}, "reasoning_effort": "high"}, Reasoning("high", adaptive=True)),
        ({"thinking": {"type": "disabled"}, "reasoning_effort": "high"}, Reasoning("none")),
    ],
)
def test_reasoning_of(body: dict[str, Any], expected: Reasoning | None) -> None:
    assert reasoning_of(body) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"reasoning_effort": "extreme"}, "'reasoning_effort' must be one of none, minimal"),
        ({"thinking": "on"}, "'thinking' must be an object"),
        ({"thinking": {"type": "enabled"}}, "'thinking.budget_tokens' must be a positive integer"),
        ({"thinking": {"type": "sometimes"}}, "'thinking.type' must be 'enabled', 'adaptive' or 'disabled'"),
    ],
)
def test_malformed_reasoning_is_the_clients_400(body: dict[str, Any], message: str) -> None:
    with pytest.raises(GatewayError) as err:
        reasoning_of(body)
    assert (err.value.status, err.value.message.startswith(message)) == (400, True)


# --- Anthropic --------------------------------------------------------------------------------------

CLAUDE = "claude-sonnet-4-5-20250929"


def anthropic_body(body: dict[str, Any], model: str = CLAUDE, **kw: Any) -> dict[str, Any]:
    req = build("anthropic", model, {"model": model, **body}, **kw)
    assert_valid_anthropic(req.body)
    if "thinking" in req.body:
        THINKING_CONFIG.validate_python(req.body["thinking"])
    return req.body


@pytest.mark.parametrize("effort", ["minimal", "low", "medium", "high", "xhigh", "max"])
def test_effort_becomes_a_budget_below_a_raised_max_tokens(effort: str) -> None:
    out = anthropic_body({"messages": USER, "reasoning_effort": effort})
    assert out["thinking"] == {"type": "enabled", "budget_tokens": BUDGETS[effort]}
    assert out["max_tokens"] == BUDGETS[effort] + 4096


def test_a_clients_max_tokens_is_kept_and_the_budget_fits_below_it() -> None:
    out = anthropic_body({"messages": USER, "reasoning_effort": "high", "max_tokens": 5000})
    assert (out["max_tokens"], out["thinking"]) == (5000, {"type": "enabled", "budget_tokens": 4999})
    out = anthropic_body({"messages": USER, "thinking": {"type": "enabled", "budget_tokens": 100}})
    assert out["thinking"]["budget_tokens"] == 1024  # Anthropic's least
    err = refused("anthropic", CLAUDE, {"messages": USER, "reasoning_effort": "low", "max_tokens": 1024})
    assert err.param == "max_tokens" and "anthropic" in err.message


def test_thinking_rules_drop_sampling_fields_and_refuse_a_forced_tool() -> None:
    req = build(
        "anthropic",
        CLAUDE,
        {"messages": USER, "reasoning_effort": "low", "temperature": 0.2, "top_k": 5, "top_p": 0.5},
    )
    assert not {"temperature", "top_k", "top_p"} & set(req.body)
    assert "temperature, top_p, top_k dropped" in req.notes["claude_thinking_sampling"]
    assert anthropic_body({"messages": USER, "reasoning_effort": "low", "temperature": 1})["temperature"] == 1
    assert anthropic_body({"messages": USER, "reasoning_effort": "low", "top_p": 0.96})["top_p"] == 0.96
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        err = refused(
            "anthropic",
            CLAUDE,
            {"messages": USER, "reasoning_effort": "low", "tools": TOOLS, "tool_choice": choice},
        )
        assert (err.param, "reasoning" in err.message, "anthropic" in err.message) == (
            "tool_choice",
            True,
            True,
        )


def test_response_format_with_thinking_offers_the_answer_tool_without_forcing_it() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
    out = anthropic_body({"messages": USER, "reasoning_effort": "low", "response_format": fmt})
    assert out["tool_choice"] == {"type": "auto"}
    assert [t["name"] for t in out["tools"]] == ["ai_proxy_json_response"]


@pytest.mark.parametrize(
    ("model", "effort", "expected_effort"),
    [
        ("claude-sonnet-4-6", "minimal", "low"),
        ("claude-opus-4-6", "medium", "medium"),
        ("claude-opus-4-7", "max", "max"),
        ("claude-fable-5-1", "high", "high"),
    ],
)
def test_claude_4_6_and_later_think_adaptively(model: str, effort: str, expected_effort: str) -> None:
    out = anthropic_body({"messages": USER, "reasoning_effort": effort}, model)
    assert (out["thinking"], out["output_config"]) == ({"type": "adaptive"}, {"effort": expected_effort})
    assert out["max_tokens"] == BUDGETS[effort] + 4096
    # A budget from a thinking object becomes the effort it stands for.
    out = anthropic_body({"messages": USER, "thinking": {"type": "enabled", "budget_tokens": 2000}}, model)
    assert (out["thinking"], out["output_config"]) == ({"type": "adaptive"}, {"effort": "low"})


def test_thinking_object_is_honoured_and_none_turns_nothing_on() -> None:
    out = anthropic_body(
        {"messages": USER, "thinking": {"type": "enabled", "budget_tokens": 3000, "display": "omitted"}}
    )
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 3000, "display": "omitted"}
    out = anthropic_body({"messages": USER, "reasoning_effort": "none"})
    assert "thinking" not in out and out["max_tokens"] == 4096


def claude_answer(content: list[dict[str, Any]], stop: str = "tool_use") -> dict[str, Any]:
    raw = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": CLAUDE,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 20},
    }
    Message.model_validate(raw)
    return raw


THINK = {"type": "thinking", "thinking": "Paris: call the tool.", "signature": SIGNATURE}
REDACTED = {"type": "redacted_thinking", "data": "RWRhY3RlZA=="}
USE_1 = {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}
USE_2 = {"type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {"city": "Lyon"}}


def follow_up(message: dict[str, Any], results: list[str]) -> dict[str, Any]:
    """The next request an openai SDK agent loop sends: the assistant message it got, then results."""
    tools = [{"role": "tool", "tool_call_id": call_id, "content": "sunny"} for call_id in results]
    return {"messages": [*USER, message, *tools], "reasoning_effort": "low", "tools": TOOLS}


def test_signed_thinking_survives_a_client_that_keeps_only_tool_call_ids() -> None:
    answer = (
        SPECS["anthropic"]
        .routes["llm/v1/chat"]
        .parse_response(
            claude_answer([THINK, REDACTED, {"type": "text", "text": "Checking."}, USE_1]),
            ctx("anthropic", CLAUDE),
        )
    )
    ChatCompletion.model_validate(answer)
    message = answer["choices"][0]["message"]
    assert message["thinking_blocks"] == [THINK, REDACTED]
    call_id = message["tool_calls"][0]["id"]
    assert call_id.startswith("toolu_01" + SIGNATURE_MARKER)
    assert split_call_id(call_id) == ("toolu_01", [THINK, REDACTED])
    # A client that rebuilds the message from content and tool_calls only.
    bare = {"role": "assistant", "content": message["content"], "tool_calls": message["tool_calls"]}
    out = anthropic_body(follow_up(bare, [call_id]))
    assert out["messages"][1] == {
        "role": "assistant",
        "content": [THINK, REDACTED, {"type": "text", "text": "Checking."}, {**USE_1}],
    }
    assert out["messages"][2]["content"][0]["tool_use_id"] == "toolu_01"
    # A client that sends the SDK's message back whole (thinking_blocks kept) gets the same.
    assert anthropic_body(follow_up(assert_client_message(message), [call_id]))["messages"] == out["messages"]


def test_thinking_blocks_alone_are_put_first_and_interleaved_blocks_keep_their_place() -> None:
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "toolu_01", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
        ],
        "thinking_blocks": [THINK],
    }
    out = anthropic_body(follow_up(message, ["toolu_01"]))
    assert [b["type"] for b in out["messages"][1]["content"]] == ["thinking", "tool_use"]
    later = {**THINK, "thinking": "Now Lyon.", "signature": "c2Vjb25k"}
    answer = (
        SPECS["anthropic"]
        .routes["llm/v1/chat"]
        .parse_response(claude_answer([THINK, USE_1, later, USE_2]), ctx("anthropic", CLAUDE))
    )
    calls = answer["choices"][0]["message"]["tool_calls"]
    assert [split_call_id(c["id"])[1] for c in calls] == [[THINK], [later]]
    bare = {"role": "assistant", "content": None, "tool_calls": calls}
    out = anthropic_body(follow_up(bare, [c["id"] for c in calls]))
    assert [b.get("thinking", b.get("id")) for b in out["messages"][1]["content"]] == [
        THINK["thinking"],
        "toolu_01",
        "Now Lyon.",
        "toolu_02",
    ]


def test_anthropic_stream_carries_the_signed_block_in_the_tool_call_id() -> None:
    events = [
        ("message_start", {"type": "message_start", "message": {**claude_answer([]), "content": [], "stop_reason": None}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Paris: "}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "call the tool."}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": SIGNATURE}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {**USE_1, "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"city": "Paris"}'}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 20}}),
        ("message_stop", {"type": "message_stop"}),
    ]  # fmt: skip
    raw = b"".join(
        f"event: {name}\ndata: {orjson.dumps(data).decode()}\n\n".encode() for name, data in events
    )
    translator = SPECS["anthropic"].routes["llm/v1/chat"].new_stream(ctx("anthropic", CLAUDE, stream=True))
    out = frames(drive(translator, [raw[i : i + 7] for i in range(0, len(raw), 7)]))
    assert_chunks_valid(out)
    deltas = chunk_deltas(out)
    assert "".join(d.get("reasoning_content", "") for d in deltas) == THINK["thinking"]
    assert [d["thinking_blocks"] for d in deltas if "thinking_blocks" in d] == [[THINK]]
    call_id = next(
        d["tool_calls"][0]["id"] for d in deltas if "tool_calls" in d and "id" in d["tool_calls"][0]
    )
    assert split_call_id(call_id) == ("toolu_01", [THINK])


# --- Bedrock (Claude through Converse) ----------------------------------------------------------------

BEDROCK_CLAUDE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


def converse_body(body: dict[str, Any], model: str = BEDROCK_CLAUDE) -> dict[str, Any]:
    req = build("bedrock", model, {"model": model, **body})
    assert_valid_converse(req.body, model, False, req.path)
    fields = req.body.get("additionalModelRequestFields") or {}
    if "thinking" in fields:
        THINKING_CONFIG.validate_python(fields["thinking"])
    return req.body


def test_bedrock_claude_thinks_through_additional_model_request_fields() -> None:
    out = converse_body({"messages": USER, "reasoning_effort": "medium", "temperature": 0.3, "top_k": 4})
    assert out["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 8192}}
    assert out["inferenceConfig"] == {"maxTokens": 8192 + 4096}
    out = converse_body({"messages": USER, "reasoning_effort": "high"}, "anthropic.claude-opus-4-7")
    assert out["additionalModelRequestFields"] == {
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "high"},
    }
    err = refused("bedrock", "meta.llama3-70b-instruct-v1:0", {"messages": USER, "reasoning_effort": "low"})
    assert (err.param, "bedrock" in err.message) == ("reasoning_effort", True)


def test_bedrock_reasoning_blocks_are_carried_and_rebuilt_before_tool_use() -> None:
    reasoning = {
        "reasoningContent": {"reasoningText": {"text": "Paris: call the tool.", "signature": SIGNATURE}}
    }
    redacted = {"reasoningContent": {"redactedContent": "RWRhY3RlZA=="}}
    use = {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}
    raw = {
        "output": {"message": {"role": "assistant", "content": [reasoning, redacted, use]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 5, "outputTokens": 3, "totalTokens": 8},
        "metrics": {"latencyMs": 1},
    }
    from test_provider_bedrock import _OPS

    assert_shape(raw, _OPS["Converse"].output_shape)
    answer = SPECS["bedrock"].routes["llm/v1/chat"].parse_response(raw, bedrock_ctx(model=BEDROCK_CLAUDE))
    message = answer["choices"][0]["message"]
    assert message["thinking_blocks"] == [THINK, REDACTED]
    call_id = message["tool_calls"][0]["id"]
    bare = {"role": "assistant", "content": None, "tool_calls": message["tool_calls"]}
    out = converse_body(follow_up(bare, [call_id]))
    assert out["messages"][1]["content"] == [reasoning, redacted, use]
    assert out["messages"][2]["content"][0]["toolResult"]["toolUseId"] == "tooluse_1"


def test_bedrock_stream_carries_the_signed_reasoning() -> None:
    events = [
        {"event": "messageStart", "payload": {"role": "assistant"}},
        {"event": "contentBlockDelta", "payload": {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Paris: call the tool."}}}},
        {"event": "contentBlockDelta", "payload": {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": SIGNATURE}}}},
        {"event": "contentBlockStop", "payload": {"contentBlockIndex": 0}},
        {"event": "contentBlockStart", "payload": {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather"}}}},
        {"event": "contentBlockDelta", "payload": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{}"}}}},
        {"event": "contentBlockStop", "payload": {"contentBlockIndex": 1}},
        {"event": "messageStop", "payload": {"stopReason": "tool_use"}},
        {"event": "metadata", "payload": {"usage": {"inputTokens": 5, "outputTokens": 3, "totalTokens": 8}, "metrics": {"latencyMs": 1}}},
    ]  # fmt: skip
    translator = (
        SPECS["bedrock"].routes["llm/v1/chat"].new_stream(bedrock_ctx(model=BEDROCK_CLAUDE, stream=True))
    )
    out = frames(drive(translator, [make_streams.encode_events(events)]))
    deltas = chunk_deltas(out)
    assert [d["thinking_blocks"] for d in deltas if "thinking_blocks" in d] == [[THINK]]
    call_id = next(
        d["tool_calls"][0]["id"] for d in deltas if "tool_calls" in d and "id" in d["tool_calls"][0]
    )
    assert split_call_id(call_id) == ("tooluse_1", [THINK])


# --- Gemini, Cohere, Ollama, the OpenAI family, and providers without reasoning ----------------------


@pytest.mark.parametrize(
    ("model", "body", "config"),
    [
        ("gemini-2.5-flash", {"reasoning_effort": "low"}, {"thinkingBudget": 2048, "includeThoughts": True}),
        ("gemini-2.5-flash", {"reasoning_effort": "max"}, {"thinkingBudget": 24576, "includeThoughts": True}),
        ("gemini-2.5-flash", {"reasoning_effort": "none"}, {"thinkingBudget": 0}),
        ("gemini-2.5-pro", {"reasoning_effort": "none"}, None),  # Pro cannot stop thinking
        (
            "gemini-2.5-pro",
            {"thinking": {"type": "enabled", "budget_tokens": 5000}},
            {"thinkingBudget": 5000, "includeThoughts": True},
        ),
        (
            "gemini-2.5-pro",
            {"thinking": {"type": "adaptive"}},
            {"thinkingBudget": -1, "includeThoughts": True},
        ),
        (
            "gemini-3-pro-preview",
            {"reasoning_effort": "minimal"},
            {"thinkingLevel": "low", "includeThoughts": True},
        ),
        (
            "gemini-3-pro-preview",
            {"reasoning_effort": "medium"},
            {"thinkingLevel": "high", "includeThoughts": True},
        ),
        (
            "gemini-3-flash",
            {"reasoning_effort": "medium"},
            {"thinkingLevel": "medium", "includeThoughts": True},
        ),
        ("gemini-3-flash", {"reasoning_effort": "none"}, {"thinkingLevel": "minimal"}),
    ],
)
def test_gemini_thinking_config(model: str, body: dict[str, Any], config: dict[str, Any] | None) -> None:
    req = build("gemini", model, {"model": model, "messages": USER, **body})
    assert_valid_generate(req.body)
    assert (req.body.get("generationConfig") or {}).get("thinkingConfig") == config


def test_cohere_takes_a_token_budget() -> None:
    model = "command-a-reasoning-08-2025"
    req = build("cohere", model, {"model": model, "messages": USER, "reasoning_effort": "medium"})
    assert_valid_cohere_chat(req.body)
    assert req.body["thinking"] == {"type": "enabled", "token_budget": 8192}
    req = build("cohere", model, {"model": model, "messages": USER, "reasoning_effort": "none"})
    assert req.body["thinking"] == {"type": "disabled"}


@pytest.mark.parametrize(
    ("model", "effort", "think"),
    [
        ("qwen3:8b", "high", True),
        ("gpt-oss:20b", "minimal", "low"),
        ("gpt-oss:20b", "xhigh", "high"),
        ("qwen3:8b", "none", False),
    ],
)
def test_ollama_think(model: str, effort: str, think: bool | str) -> None:
    req = build("ollama", model, {"model": model, "messages": USER, "reasoning_effort": effort})
    check_ollama_request("llm/v1/chat", req.body)
    assert req.body["think"] == think


def test_openai_family_passes_reasoning_effort_and_turns_a_thinking_object_into_it() -> None:
    assert (
        build("openai", "gpt-5", {"messages": USER, "reasoning_effort": "high"}).body["reasoning_effort"]
        == "high"
    )
    body = build(
        "openai", "gpt-5", {"messages": USER, "thinking": {"type": "enabled", "budget_tokens": 3000}}
    ).body
    assert ("thinking" not in body, body["reasoning_effort"]) == (True, "medium")
    # Mistral and self-hosted OpenAI-compatible servers take what the client sent.
    body = build("mistral", "mistral-small-latest", {"messages": USER, "reasoning_effort": "high"}).body
    assert body["reasoning_effort"] == "high"


def test_a_provider_without_reasoning_refuses_it_by_name() -> None:
    # The raw llama2 format (a text-generation endpoint) is the one chat format with no reasoning.
    err = refused("llama2_raw", "llama-2", {"messages": USER, "reasoning_effort": "low"})
    assert err.param == "reasoning_effort"
    assert err.message == "'reasoning_effort' is not supported by the llama2 (llama2_format: raw) provider"
    err = refused("llama2_raw", "llama-2", {"messages": USER, "thinking": {"type": "adaptive"}})
    assert err.param == "thinking"
    build("llama2_raw", "llama-2", {"messages": USER, "reasoning_effort": "none"})  # asks for nothing


def test_carried_and_gemini_signatures_share_the_marker() -> None:
    blocks = [THINK]
    assert carried("toolu_1") == ("toolu_1", None)
    payload = pack_blocks(blocks)
    assert set(payload) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert split_call_id(f"toolu_1{SIGNATURE_MARKER}{payload}") == ("toolu_1", blocks)
    assert split_call_id(f"call_1{SIGNATURE_MARKER}{SIGNATURE}") == ("call_1", [])  # a Gemini signature
    for junk in (
        "!!!",
        pack_blocks([{"type": "thinking", "thinking": "x"}]),
        "W10",
        "e30",
    ):  # damaged, unsigned, [], {}
        assert split_call_id(f"toolu_1{SIGNATURE_MARKER}{junk}") == ("toolu_1", [])
    assert fixture_bytes("anthropic/thinking/response.json")  # the recorded answer the unit tests use


# --- ingress adapters: Anthropic Messages and Responses clients ----------------------------------------


def ingress_ctx(client: dict[str, Any] | None = None) -> CallContext:
    return CallContext(
        "r", "llm/v1/chat", "bedrock", BEDROCK_CLAUDE, ModelOptions(), True, "abc", 1700000000, client=client or {}
    )  # fmt: skip


def chat_stream(*deltas: dict[str, Any]) -> bytes:
    chunks = [
        {"id": "c1", "model": "m", "choices": [{"index": 0, "delta": d, "finish_reason": None}]}
        for d in deltas
    ]
    chunks.append(
        {"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
    )
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


CARRIED_ID = f"toolu_01{SIGNATURE_MARKER}{pack_blocks([THINK])}"
SIGNED_STREAM = chat_stream(
    {"role": "assistant", "reasoning_content": "Paris: "},
    {"reasoning_content": "call the tool."},
    {"thinking_blocks": [THINK]},
    {"tool_calls": [{"index": 0, "id": CARRIED_ID, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
)  # fmt: skip


def test_anthropic_clients_thinking_maps_to_the_chat_form_and_back() -> None:
    from transforms.ingress import anthropic as messages

    body = {
        "model": "m",
        "max_tokens": 4000,
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "medium"},
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [THINK, REDACTED, {**USE_1}]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "sunny"}],
            },
        ],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
    }
    chat = messages.to_chat(body)
    assert (chat["thinking"], chat["reasoning_effort"]) == ({"type": "adaptive"}, "medium")
    assert chat["messages"][1]["thinking_blocks"] == [THINK, REDACTED]
    # Bare tool ids (history from elsewhere): the blocks still go back first, in Converse's shape.
    out = converse_body({k: v for k, v in chat.items() if k != "model"})
    assert [next(iter(b)) for b in out["messages"][1]["content"]] == [
        "reasoningContent",
        "reasoningContent",
        "toolUse",
    ]
    # The answer: signed blocks as they came, the carried id kept for the next turn.
    answer = {
        "id": "x",
        "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None, "reasoning_content": THINK["thinking"], "thinking_blocks": [THINK],
            "tool_calls": [{"id": CARRIED_ID, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}],
        }}],
    }  # fmt: skip
    message = Message.model_validate(messages.from_chat(answer, None, ingress_ctx()))
    assert [b.model_dump() for b in message.content][:1] == [THINK]
    assert message.content[1].id == CARRIED_ID


def test_anthropic_clients_stream_gets_thinking_then_its_signature() -> None:
    from test_ingress_anthropic import events

    from transforms.ingress import IngressStream
    from transforms.ingress.anthropic import MessagesEvents
    from transforms.stream import OpenAIStream

    stream = IngressStream(OpenAIStream(), MessagesEvents(ingress_ctx()), "")
    raw = b"".join(stream.feed(SIGNED_STREAM)) + b"".join(stream.finish())
    kinds = [
        (e["type"], e.get("index"), (e.get("delta") or e.get("content_block") or {}).get("type"))
        for e in events(raw)
    ]
    assert kinds[1:8] == [
        ("content_block_start", 0, "thinking"),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "signature_delta"),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, "tool_use"),
        ("content_block_delta", 1, "input_json_delta"),
    ]
    signature = next(
        e["delta"]["signature"]
        for e in events(raw)
        if (e.get("delta") or {}).get("type") == "signature_delta"
    )
    assert signature == SIGNATURE


def test_responses_reasoning_items_carry_and_restore_signed_thinking() -> None:
    from openai.types.responses import Response

    from transforms.ingress import responses

    asked = {
        "input": "Weather?",
        "reasoning": {"effort": "high", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
    }
    assert responses.to_chat(asked)["reasoning_effort"] == "high"
    answer = {
        "id": "x",
        "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None, "reasoning_content": THINK["thinking"], "thinking_blocks": [THINK],
            "tool_calls": [{"id": "tooluse_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}],
        }}],
    }  # fmt: skip
    out = responses.from_chat(answer, None, ingress_ctx(responses.echo(asked)))
    Response.model_validate(out)
    assert "_reasoning_encrypted" not in out
    item = out["output"][0]
    assert (item["summary"][0]["text"], item["encrypted_content"]) == (
        THINK["thinking"],
        pack_blocks([THINK]),
    )
    # Not asked for: no encrypted content.
    plain = responses.from_chat(answer, None, ingress_ctx(responses.echo({"input": "Weather?"})))
    assert "encrypted_content" not in plain["output"][0]
    # Sent back as input (the call id bare): the signed thinking goes back in front of the call.
    follow = {
        "input": [
            {"role": "user", "content": "Weather?"},
            item,
            {"type": "function_call", "call_id": "tooluse_1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "tooluse_1", "output": "sunny"},
        ],
        "reasoning": {"effort": "low"},
    }
    chat = responses.to_chat(follow)
    assert chat["messages"][1]["thinking_blocks"] == [THINK]
    sent = converse_body({"messages": chat["messages"], "reasoning_effort": "low"})
    assert sent["messages"][1]["content"][0] == {
        "reasoningContent": {"reasoningText": {"text": THINK["thinking"], "signature": SIGNATURE}}
    }


def test_responses_stream_reasoning_item_gets_encrypted_content() -> None:
    from test_ingress_responses import events

    from transforms.ingress import IngressStream
    from transforms.ingress.responses import ResponsesEvents, echo
    from transforms.stream import OpenAIStream

    c = ingress_ctx(echo({"input": "x", "include": ["reasoning.encrypted_content"]}))
    stream = IngressStream(OpenAIStream(), ResponsesEvents(c), "")
    out = events(b"".join(stream.feed(SIGNED_STREAM)) + b"".join(stream.finish()))
    done = [e["item"] for e in out if e["type"] == "response.output_item.done"]
    assert done[0]["type"] == "reasoning"
    assert (done[0]["summary"][0]["text"], done[0]["encrypted_content"]) == (
        THINK["thinking"],
        pack_blocks([THINK]),
    )
    assert done[1]["call_id"] == CARRIED_ID


# --- Mistral: reasoning models answer content as typed chunks ------------------------------------------

MISTRAL_CONTENT = [
    {
        "type": "thinking",
        "thinking": [{"type": "text", "text": "Two and two "}, {"type": "text", "text": "make four."}],
    },
    {"type": "text", "text": "4"},
]


def test_mistral_thinking_chunks_become_reasoning_content() -> None:
    raw = {
        "id": "m1",
        "object": "chat.completion",
        "created": 1,
        "model": "magistral-medium-2509",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": MISTRAL_CONTENT},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14},
    }
    out = SPECS["mistral"].routes["llm/v1/chat"].parse_response(raw, ctx("mistral", "magistral-medium-2509"))
    message = ChatCompletion.model_validate(out).choices[0].message
    assert (message.content, message.reasoning_content) == ("4", "Two and two make four.")  # type: ignore[attr-defined]


def test_mistral_stream_reframes_only_chunked_content() -> None:
    def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {"id": "m1", "object": "chat.completion.chunk", "created": 1, "model": "magistral", "choices": [
            {"index": 0, "delta": delta, "finish_reason": finish}
        ]}  # fmt: skip
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    plain = event({"content": "4"})
    raw = (
        event({"role": "assistant", "content": MISTRAL_CONTENT[:1]})
        + plain
        + event({}, "stop")
        + b"data: [DONE]\n\n"
    )
    translator = SPECS["mistral"].routes["llm/v1/chat"].new_stream(ctx("mistral", "magistral", stream=True))
    out = drive(translator, [raw[i : i + 11] for i in range(0, len(raw), 11)])
    assert plain in out  # an ordinary chunk goes through byte for byte
    parsed = frames(out)
    assert_chunks_valid(parsed)
    deltas = chunk_deltas(parsed)
    assert deltas[0] == {"role": "assistant", "content": "", "reasoning_content": "Two and two make four."}
    assert [d.get("content") for d in deltas[1:2]] == ["4"]
    assert translator.text == "4"
