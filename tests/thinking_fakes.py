"""Local fakes of three providers' thinking, as strict as the real APIs, for the emulator's
``responder``: each checks a request the way the provider does and answers a weather agent loop
(a tool call on the first two turns, the final answer on the third).

Rules checked (each a 400 in the provider's own error shape, with the provider's wording):

* Anthropic Messages: ``thinking.budget_tokens`` >= 1024 and < ``max_tokens``; ``temperature`` only
  1, no ``top_k``; no forced ``tool_choice``; an assistant turn holding ``tool_use`` must start
  with a ``thinking`` / ``redacted_thinking`` block whose signature this fake issued for exactly
  that text ("Expected `thinking` or `redacted_thinking`, but found `tool_use`").
* Bedrock Converse (Claude): the same rules on ``additionalModelRequestFields.thinking`` and
  ``inferenceConfig``, with ``reasoningContent`` blocks.
* Gemini 2.5: ``thinkingConfig.thinkingBudget`` within 0..24576 with ``includeThoughts``, and every
  ``functionCall`` part of an earlier model turn carrying the ``thoughtSignature`` issued with it.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

import orjson

from addon.emulator import Recorded, Scripted
from transforms.eventstream import encode_message

SECRET = b"fake-provider-signing-key"
CITIES = ["Paris", "Lyon"]


def sign(text: str) -> str:
    return base64.b64encode(hashlib.sha256(SECRET + text.encode()).digest()).decode()


def thought(turn: int) -> str:
    return f"Turn {turn}: I should check the weather before answering."


def _json(status: int, body: Any) -> Scripted:
    return Scripted(status, orjson.dumps(body))


# --- Anthropic ----------------------------------------------------------------------------------


def _anthropic_error(message: str) -> Scripted:
    return _json(400, {"type": "error", "error": {"type": "invalid_request_error", "message": message}})


def _anthropic_rules(body: dict[str, Any]) -> str | None:
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return "this fake serves thinking requests only"
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or budget < 1024:
        return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
    if budget >= body["max_tokens"]:
        return "`max_tokens` must be greater than `thinking.budget_tokens`"
    if body.get("temperature", 1) != 1:
        return "`temperature` may only be set to 1 when thinking is enabled."
    if "top_k" in body:
        return "`top_k` is not supported when thinking is enabled."
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        return "Thinking may not be enabled when tool_choice forces tool use."
    for i, message in enumerate(body["messages"]):
        blocks = message["content"] if isinstance(message["content"], list) else []
        if message["role"] != "assistant" or not any(b["type"] == "tool_use" for b in blocks):
            continue
        first = blocks[0]
        if first["type"] not in ("thinking", "redacted_thinking"):
            return (
                f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
                f"`{first['type']}`. When `thinking` is enabled, a final `assistant` message must start "
                "with a thinking block."
            )
        if first["type"] == "thinking" and first.get("signature") != sign(first["thinking"]):
            return f"messages.{i}.content.0: Invalid `signature` in `thinking` block"
    return None


def _turn(messages: list[dict[str, Any]], role: str) -> int:
    return sum(1 for m in messages if m["role"] == role) + 1


def anthropic_blocks(turn: int) -> list[dict[str, Any]]:
    text = thought(turn)
    blocks: list[dict[str, Any]] = [{"type": "thinking", "thinking": text, "signature": sign(text)}]
    if turn <= len(CITIES):
        call = {
            "type": "tool_use",
            "id": f"toolu_0{turn}",
            "name": "get_weather",
            "input": {"city": CITIES[turn - 1]},
        }
        return [*blocks, call]
    return [*blocks, {"type": "text", "text": "Sunny in Paris and Lyon."}]


def anthropic(rec: Recorded) -> Scripted | None:
    if not rec.path.startswith("/v1/messages"):
        return None
    body = rec.json()
    problem = _anthropic_rules(body)
    if problem is not None:
        return _anthropic_error(problem)
    turn = _turn(body["messages"], "assistant")
    blocks = anthropic_blocks(turn)
    stop = "tool_use" if blocks[-1]["type"] == "tool_use" else "end_turn"
    message = {
        "id": f"msg_{turn}",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 50, "output_tokens": 30, "output_tokens_details": {"thinking_tokens": 12}},
    }
    if not body.get("stream"):
        return _json(200, message)
    return Scripted(200, _anthropic_stream(message), "text/event-stream", events=True)


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {orjson.dumps({'type': name, **data}).decode()}\n\n".encode()


def _anthropic_stream(message: dict[str, Any]) -> bytes:
    start = {**message, "content": [], "stop_reason": None, "usage": {"input_tokens": 50, "output_tokens": 1}}
    out = [_sse("message_start", {"message": start})]
    for index, block in enumerate(message["content"]):
        if block["type"] == "thinking":
            out.append(
                _sse(
                    "content_block_start",
                    {"index": index, "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
                )
            )
            half = len(block["thinking"]) // 2
            for piece in (block["thinking"][:half], block["thinking"][half:]):
                out.append(
                    _sse(
                        "content_block_delta",
                        {"index": index, "delta": {"type": "thinking_delta", "thinking": piece}},
                    )
                )
            out.append(
                _sse(
                    "content_block_delta",
                    {"index": index, "delta": {"type": "signature_delta", "signature": block["signature"]}},
                )
            )
        elif block["type"] == "tool_use":
            out.append(_sse("content_block_start", {"index": index, "content_block": {**block, "input": {}}}))
            out.append(
                _sse(
                    "content_block_delta",
                    {
                        "index": index,
                        "delta": {
                            "type": "input_json_delta",
                            "partial_json": orjson.dumps(block["input"]).decode(),
                        },
                    },
                )
            )
        else:
            out.append(
                _sse("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}})
            )
            out.append(
                _sse(
                    "content_block_delta",
                    {"index": index, "delta": {"type": "text_delta", "text": block["text"]}},
                )
            )
        out.append(_sse("content_block_stop", {"index": index}))
    out.append(
        _sse(
            "message_delta",
            {
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": 30},
            },
        )
    )
    out.append(_sse("message_stop", {}))
    return b"".join(out)  # fmt: skip


# --- Bedrock Converse (Claude) --------------------------------------------------------------------


def _bedrock_error(message: str) -> Scripted:
    return Scripted(
        400, orjson.dumps({"message": message}), headers={"x-amzn-errortype": "ValidationException"}
    )


def _bedrock_rules(body: dict[str, Any]) -> str | None:
    thinking = (body.get("additionalModelRequestFields") or {}).get("thinking") or {}
    if thinking.get("type") != "enabled":
        return "this fake serves thinking requests only"
    budget, limit = thinking.get("budget_tokens"), (body.get("inferenceConfig") or {}).get("maxTokens")
    if not isinstance(budget, int) or budget < 1024:
        return "The model returned the following errors: thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
    if limit is None or budget >= limit:
        return "The model returned the following errors: `max_tokens` must be greater than `thinking.budget_tokens`"
    if (body.get("inferenceConfig") or {}).get("temperature", 1) != 1:
        return "The model returned the following errors: `temperature` may only be set to 1 when thinking is enabled."
    for i, message in enumerate(body["messages"]):
        blocks = message["content"]
        if message["role"] != "assistant" or not any("toolUse" in b for b in blocks):
            continue
        reasoning = blocks[0].get("reasoningContent") or {}
        text = reasoning.get("reasoningText")
        if not text and "redactedContent" not in reasoning:
            return (
                f"The model returned the following errors: messages.{i}.content.0.type: Expected `thinking` or "
                "`redacted_thinking`, but found `tool_use`. When `thinking` is enabled, a final `assistant` "
                "message must start with a thinking block."
            )
        if text and text.get("signature") != sign(text["text"]):
            return f"The model returned the following errors: messages.{i}.content.0: Invalid `signature`"
    return None


def bedrock(rec: Recorded) -> Scripted | None:
    if not rec.path.startswith("/model/") or not rec.path.endswith(("/converse", "/converse-stream")):
        return None
    body = rec.json()
    problem = _bedrock_rules(body)
    if problem is not None:
        return _bedrock_error(problem)
    turn = _turn(body["messages"], "assistant")
    text = thought(turn)
    content: list[dict[str, Any]] = [
        {"reasoningContent": {"reasoningText": {"text": text, "signature": sign(text)}}}
    ]
    if turn <= len(CITIES):
        content.append(
            {
                "toolUse": {
                    "toolUseId": f"tooluse_{turn}",
                    "name": "get_weather",
                    "input": {"city": CITIES[turn - 1]},
                }
            }
        )
        stop = "tool_use"
    else:
        content.append({"text": "Sunny in Paris and Lyon."})
        stop = "end_turn"
    usage = {"inputTokens": 50, "outputTokens": 30, "totalTokens": 80}
    if rec.path.endswith("/converse-stream"):
        return Scripted(
            200, _converse_stream(content, stop, usage), "application/vnd.amazon.eventstream", events=True
        )
    return _json(
        200,
        {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop,
            "usage": usage,
            "metrics": {"latencyMs": 5},
        },
    )


def _converse_stream(content: list[dict[str, Any]], stop: str, usage: dict[str, int]) -> bytes:
    """ConverseStream events for ``content``, as AWS event-stream frames."""
    events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    for index, block in enumerate(content):
        if "reasoningContent" in block:
            text = block["reasoningContent"]["reasoningText"]
            events.append(
                (
                    "contentBlockDelta",
                    {"contentBlockIndex": index, "delta": {"reasoningContent": {"text": text["text"]}}},
                )
            )
            events.append(
                (
                    "contentBlockDelta",
                    {
                        "contentBlockIndex": index,
                        "delta": {"reasoningContent": {"signature": text["signature"]}},
                    },
                )
            )
        elif "toolUse" in block:
            use = block["toolUse"]
            events.append(
                (
                    "contentBlockStart",
                    {
                        "contentBlockIndex": index,
                        "start": {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}},
                    },
                )
            )
            events.append(
                (
                    "contentBlockDelta",
                    {
                        "contentBlockIndex": index,
                        "delta": {"toolUse": {"input": orjson.dumps(use["input"]).decode()}},
                    },
                )
            )
        else:
            events.append(
                ("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": block["text"]}})
            )
        events.append(("contentBlockStop", {"contentBlockIndex": index}))
    events.append(("messageStop", {"stopReason": stop}))
    events.append(("metadata", {"usage": usage, "metrics": {"latencyMs": 5}}))
    headers = {":content-type": "application/json", ":message-type": "event"}
    return b"".join(encode_message({":event-type": name, **headers}, orjson.dumps(data)) for name, data in events)  # fmt: skip


# --- Gemini 2.5 -------------------------------------------------------------------------------------


def _gemini_error(message: str) -> Scripted:
    return _json(400, {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}})


def _gemini_rules(body: dict[str, Any]) -> str | None:
    config = (body.get("generationConfig") or {}).get("thinkingConfig") or {}
    budget = config.get("thinkingBudget")
    if not isinstance(budget, int) or not 0 <= budget <= 24576:
        return "The thinking budget is invalid. This model only supports thinking budgets in the range [0, 24576]."
    if config.get("includeThoughts") is not True:
        return "this fake serves requests that include thoughts only"
    for i, content in enumerate(body["contents"]):
        for j, part in enumerate(content["parts"]):
            call = part.get("functionCall")
            if call and part.get("thoughtSignature") != sign(orjson.dumps(call["args"]).decode()):
                return f"Function call is missing a thought_signature in functionCall parts (contents[{i}].parts[{j}])."
    return None


def gemini(rec: Recorded) -> Scripted | None:
    if ":generateContent" not in rec.path:
        return None
    body = rec.json()
    problem = _gemini_rules(body)
    if problem is not None:
        return _gemini_error(problem)
    turn = _turn(body["contents"], "model")
    parts: list[dict[str, Any]] = [{"text": thought(turn), "thought": True}]
    if turn <= len(CITIES):
        args = {"city": CITIES[turn - 1]}
        parts.append(
            {
                "functionCall": {"name": "get_weather", "args": args},
                "thoughtSignature": sign(orjson.dumps(args).decode()),
            }
        )
    else:
        parts.append({"text": "Sunny in Paris and Lyon."})
    candidate = {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
    usage = {
        "promptTokenCount": 50,
        "candidatesTokenCount": 18,
        "thoughtsTokenCount": 12,
        "totalTokenCount": 80,
    }
    return _json(200, {"candidates": [candidate], "usageMetadata": usage, "modelVersion": "gemini-2.5-flash"})


FAKES: dict[str, Callable[[Recorded], Scripted | None]] = {
    "anthropic": anthropic,
    "bedrock": bedrock,
    "gemini": gemini,
}


def all_fakes(rec: Recorded) -> Scripted | None:
    for fake in FAKES.values():
        answer = fake(rec)
        if answer is not None:
            return answer
    return None
