"""End to end: the openai SDK runs an agent loop with tools and reasoning on, through mitmdump and
the addon, against local fakes of Anthropic, Bedrock (Claude) and Gemini 2.5 that enforce their
thinking rules as the real APIs do (tests/thinking_fakes.py): three turns, no upstream 400.

The client keeps what an OpenAI client keeps: either the SDK's message object as it came (its
unknown fields, ``thinking_blocks`` among them, kept) or only content and tool_calls (the ids).
"""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest
import thinking_fakes
from conftest import route

from transforms.reasoning import SIGNATURE_MARKER, split_call_id, unpack_blocks

ANTHROPIC_KEY = "sk-ant-api03-reasoning-test-key"
GEMINI_KEY = "AIzaSyReasoning-0123456789abcdefghijklm"
AWS = {
    "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
    "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
}
MODELS = {
    "anthropic": "claude-sonnet-4-5-20250929",
    "bedrock": "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    "gemini": "gemini-2.5-flash",
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


@pytest.fixture
def gw(gateway, emulator):
    log = {"log_statistics": True, "log_payloads": False}
    routes = [
        route(
            "claude",
            "/claude/v1/chat/completions",
            "llm/v1/chat",
            "anthropic",
            emulator.url,
            model=MODELS["anthropic"],
            auth={"header_name": "x-api-key", "header_value": ANTHROPIC_KEY},
            options={"anthropic_version": "2023-06-01"},
            logging=log,
        ),
        route(
            "bedrock",
            "/bedrock/v1/chat/completions",
            "llm/v1/chat",
            "bedrock",
            emulator.url,
            model=MODELS["bedrock"],
            auth=AWS,
            options={"bedrock": {"aws_region": "us-east-1"}},
            logging=log,
        ),
        route(
            "gemini",
            "/gemini/v1/chat/completions",
            "llm/v1/chat",
            "gemini",
            emulator.url,
            model=MODELS["gemini"],
            auth={"header_name": "x-goog-api-key", "header_value": GEMINI_KEY},
            logging=log,
        ),
        route(
            "raw",
            "/raw/v1/chat/completions",
            "llm/v1/chat",
            "llama2",
            emulator.url,
            model="llama-2-7b",
            options={"llama2_format": "raw"},
        ),
    ]
    # Client formats on Claude (Bedrock) and Gemini: the ingress adapters carry reasoning too.
    for provider in ("bedrock", "gemini"):
        auth = AWS if provider == "bedrock" else {"header_name": "x-goog-api-key", "header_value": GEMINI_KEY}
        options = {"bedrock": {"aws_region": "us-east-1"}} if provider == "bedrock" else None
        routes.append(
            route(
                f"messages-on-{provider}",
                f"/messages-{provider}/*",
                "llm/v1/chat",
                provider,
                emulator.url,
                model=MODELS[provider],
                auth=auth,
                options=options,
                llm_format="anthropic",
            )
        )
        routes.append(
            route(
                f"responses-on-{provider}",
                f"/responses-{provider}/v1/responses",
                "llm/v1/responses",
                provider,
                emulator.url,
                model=MODELS[provider],
                auth=auth,
                options=options,
            )
        )
    emulator.responder = thinking_fakes.all_fakes
    gw = gateway(routes)
    assert "cannot load" not in gw.log, gw.log
    return gw


def client(gw, provider: str) -> openai.OpenAI:
    prefix = {"anthropic": "claude"}.get(provider, provider)
    return openai.OpenAI(base_url=f"{gw.url}/{prefix}/v1", api_key="unused", max_retries=0)


def keep(message: Any, whole: bool) -> Any:
    """What the client appends to its history: the SDK's message as it came, or only the fields
    OpenAI's format has."""
    if whole:
        return message
    out: dict[str, Any] = {"role": "assistant", "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [call.model_dump(exclude_unset=True) for call in message.tool_calls]
    return out


@pytest.mark.parametrize("whole", [True, False], ids=["whole-message", "ids-only"])
@pytest.mark.parametrize("provider", ["anthropic", "bedrock", "gemini"])
def test_agent_loop_with_tools_and_thinking(gw, emulator, provider: str, whole: bool) -> None:
    api = client(gw, provider)
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris and Lyon?"}]
    answers = []
    for _ in range(3):
        reply = api.chat.completions.create(
            model=MODELS[provider], messages=messages, tools=TOOLS, reasoning_effort="low"
        )
        message = reply.choices[0].message
        answers.append(message)
        messages.append(keep(message, whole))
        for call in message.tool_calls or ():
            messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"})
    assert len(emulator.requests) == 3
    assert [len(m.tool_calls or ()) for m in answers] == [1, 1, 0]
    assert answers[-1].content == "Sunny in Paris and Lyon."
    assert [m.reasoning_content for m in answers] == [thinking_fakes.thought(t) for t in (1, 2, 3)]  # type: ignore[attr-defined]
    first_call = answers[0].tool_calls[0]
    assert SIGNATURE_MARKER in first_call.id
    if provider != "gemini":  # Claude's signed block rides in the id and in thinking_blocks
        base, blocks = split_call_id(first_call.id)
        assert base in ("toolu_01", "tooluse_1")
        assert blocks == [signed(1)]
        assert answers[0].thinking_blocks == [signed(1)]  # type: ignore[attr-defined]
    records = [r["ai"]["proxy"] for r in gw.wait_records(3)]
    # Converse reports no reasoning token count; Anthropic and Gemini do.
    details = None if provider == "bedrock" else {"reasoning_tokens": 12}
    assert [(r["meta"]["status"], r["usage"].get("completion_tokens_details")) for r in records] == [
        (200, details)
    ] * 3
    if details is not None:
        assert reply.usage.completion_tokens_details.reasoning_tokens == 12


def test_without_the_thinking_block_the_fake_refuses_like_anthropic(gw, emulator) -> None:
    """The fake is as strict as the API: a follow-up that lost the thinking block is its 400."""
    api = client(gw, "anthropic")
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    message = (
        api.chat.completions.create(
            model=MODELS["anthropic"], messages=messages, tools=TOOLS, reasoning_effort="low"
        )
        .choices[0]
        .message
    )
    call = message.tool_calls[0]
    bare_id = split_call_id(call.id)[0]
    messages.append(
        {"role": "assistant", "content": None, "tool_calls": [{**call.model_dump(), "id": bare_id}]}
    )
    messages.append({"role": "tool", "tool_call_id": bare_id, "content": "sunny"})
    with pytest.raises(openai.BadRequestError) as err:
        api.chat.completions.create(
            model=MODELS["anthropic"], messages=messages, tools=TOOLS, reasoning_effort="low"
        )
    assert "Expected `thinking` or `redacted_thinking`, but found `tool_use`" in err.value.message


def test_streamed_thinking_carries_the_signature_into_the_next_turn(gw, emulator) -> None:
    api = client(gw, "anthropic")
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris and Lyon?"}]
    for turn in (1, 2, 3):
        reasoning, content, calls = "", "", {}
        stream = api.chat.completions.create(
            model=MODELS["anthropic"], messages=messages, tools=TOOLS, reasoning_effort="low", stream=True
        )
        for chunk in stream:
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            reasoning += getattr(delta, "reasoning_content", None) or ""
            content += delta.content or ""
            for call in delta.tool_calls or ():
                entry = calls.setdefault(
                    call.index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
                )
                entry["id"] += call.id or ""
                entry["function"]["name"] += (call.function.name or "") if call.function else ""
                entry["function"]["arguments"] += (call.function.arguments or "") if call.function else ""
        assert reasoning == thinking_fakes.thought(turn)
        messages.append(
            {
                "role": "assistant",
                "content": content or None,
                **({"tool_calls": list(calls.values())} if calls else {}),
            }
        )
        for call in calls.values():
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": "sunny"})
    assert content == "Sunny in Paris and Lyon."
    assert len(emulator.requests) == 3
    gw.wait_records(3)


def test_a_provider_without_reasoning_answers_400_naming_it(gw, emulator) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client(gw, "raw").chat.completions.create(
            model="llama-2-7b", messages=[{"role": "user", "content": "hi"}], reasoning_effort="high"
        )
    assert err.value.status_code == 400
    assert err.value.body == {
        "message": "'reasoning_effort' is not supported by the llama2 (llama2_format: raw) provider",
        "type": "invalid_request_error",
        "param": "reasoning_effort",
        "code": "unsupported_parameter",
    }
    assert emulator.requests == []  # nothing went upstream


# --- client formats: Anthropic Messages and the Responses API ---------------------------------------

ANTHROPIC_TOOLS = [
    {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]


def signed(turn: int) -> dict[str, str]:
    text = thinking_fakes.thought(turn)
    return {"type": "thinking", "thinking": text, "signature": thinking_fakes.sign(text)}


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_anthropic_client_thinks_across_tool_turns_on_bedrock_claude(gw, emulator, stream: bool) -> None:
    """Claude Code's pattern on a Bedrock route: thinking on, the assistant content sent back as it
    came (thinking blocks with their signatures), tool results; the strict fake checks each turn."""
    api = anthropic.Anthropic(base_url=f"{gw.url}/messages-bedrock", api_key="unused", max_retries=0)
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris and Lyon?"}]
    asked = {
        "model": MODELS["bedrock"],
        "max_tokens": 8000,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "tools": ANTHROPIC_TOOLS,
    }
    for turn in (1, 2, 3):
        if stream:
            with api.messages.stream(messages=messages, **asked) as events:
                kinds = [event.type for event in events]
                message = events.get_final_message()
            assert "signature" in kinds and "thinking" in kinds  # signature_delta and thinking_delta arrived
        else:
            message = api.messages.create(messages=messages, **asked)
        assert message.content[0].model_dump() == signed(turn)
        messages.append({"role": "assistant", "content": message.content})
        uses = [block for block in message.content if block.type == "tool_use"]
        if uses:
            results = [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"} for use in uses]
            messages.append({"role": "user", "content": results})
    assert (message.stop_reason, message.content[-1].text) == ("end_turn", "Sunny in Paris and Lyon.")
    sent = emulator.requests[1].json()
    assert sent["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 2048}}
    assert sent["messages"][1]["content"][0] == {
        "reasoningContent": {
            "reasoningText": {"text": signed(1)["thinking"], "signature": signed(1)["signature"]}
        }
    }


def test_anthropic_client_thinking_reaches_gemini_as_a_budget(gw, emulator) -> None:
    api = anthropic.Anthropic(base_url=f"{gw.url}/messages-gemini", api_key="unused", max_retries=0)
    message = api.messages.create(
        model=MODELS["gemini"],
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 3000},
        tools=ANTHROPIC_TOOLS,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    config = emulator.requests[0].json()["generationConfig"]["thinkingConfig"]
    assert config == {"thinkingBudget": 3000, "includeThoughts": True}
    assert [block.type for block in message.content] == ["thinking", "tool_use"]
    assert message.content[0].thinking == thinking_fakes.thought(1)


def test_responses_client_reasoning_with_encrypted_content_on_bedrock_claude(gw, emulator) -> None:
    api = openai.OpenAI(base_url=f"{gw.url}/responses-bedrock/v1", api_key="unused", max_retries=0)
    tools = [{"type": "function", **TOOLS[0]["function"]}]
    items: list[Any] = [{"role": "user", "content": "Weather in Paris and Lyon?"}]
    for turn in (1, 2, 3):
        response = api.responses.create(
            model=MODELS["bedrock"],
            input=items,
            tools=tools,
            reasoning={"effort": "low", "summary": "auto"},
            include=["reasoning.encrypted_content"],
            store=False,
        )
        reasoning = response.output[0]
        assert reasoning.type == "reasoning"
        assert [part.text for part in reasoning.summary] == [thinking_fakes.thought(turn)]
        assert unpack_blocks(reasoning.encrypted_content) == [signed(turn)]
        items += response.output
        items += [
            {"type": "function_call_output", "call_id": item.call_id, "output": "sunny"}
            for item in response.output
            if item.type == "function_call"
        ]
    assert response.output_text == "Sunny in Paris and Lyon."
    assert emulator.requests[0].json()["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 2048}
    }
