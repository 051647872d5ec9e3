"""A mitmproxy content view that shows LLM traffic as a conversation.

OpenAI, Anthropic, Gemini and Bedrock bodies (and SSE streams, when mitmproxy stored them) become
``role: text`` lines with tool calls, finish reasons and usage, in mitmproxy, mitmweb and
``mitmdump --flow-detail 3``. Rendering is plain functions over parsed JSON; the class only plugs
them into mitmproxy.
"""

from __future__ import annotations

from typing import Any

import orjson
from mitmproxy import contentviews

from transforms.stream import SSEParser

MAX_TEXT = 2000  # characters of one message shown; the raw view has the rest

_MARKERS = (
    b'"messages"',
    b'"choices"',
    b'"contents"',
    b'"candidates"',
    b'"content"',
    b'"output"',
    b'"prompt"',
)


def _clip(text: str) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + f"… (+{len(text) - MAX_TEXT} chars)"


def _text(content: Any) -> str:
    """Text of any provider's content: a string, or a list of parts/blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, list):
        return ""
    out = []
    for part in content:
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, dict):
            if isinstance(part.get("text"), str):
                out.append(part["text"])
            elif part.get("type") in ("image_url", "image") or "inlineData" in part or "image" in part:
                out.append("[image]")
            elif "functionCall" in part:
                call = part["functionCall"]
                out.append(f"[call {call.get('name')}({orjson.dumps(call.get('args', {})).decode()})]")
            elif "toolUse" in part:
                out.append(f"[call {part['toolUse'].get('name')}]")
            elif part.get("type") == "tool_use":
                out.append(f"[call {part.get('name')}({orjson.dumps(part.get('input', {})).decode()})]")
            elif part.get("type") == "tool_result" or "toolResult" in part or "functionResponse" in part:
                out.append("[tool result]")
    return " ".join(out)


def render(body: Any) -> list[str]:
    """Conversation lines for one request or response body of any supported provider."""
    if not isinstance(body, dict):
        return []
    lines: list[str] = []
    header = [
        f"{k}: {body[k]}"
        for k in ("model", "modelVersion", "stream", "max_tokens", "temperature")
        if k in body
    ]
    if header:
        lines.append(", ".join(header))
    system = body.get("system") or body.get("systemInstruction")
    if system:
        lines.append(f"system: {_clip(_text(system.get('parts') if isinstance(system, dict) else system))}")
    for message in body.get("messages") or body.get("contents") or ():
        if not isinstance(message, dict):
            continue
        role = message.get("role", "?")
        text = _text(message.get("content", message.get("parts")))
        for call in message.get("tool_calls") or ():
            fn = call.get("function", {}) if isinstance(call, dict) else {}
            text += f" [call {fn.get('name')}({fn.get('arguments', '')})]"
        lines.append(f"{role}: {_clip(text)}")
    if isinstance(body.get("prompt"), str):
        lines.append(f"prompt: {_clip(body['prompt'])}")
    if body.get("tools"):
        lines.append(f"tools: {len(body['tools'])}")
    for choice in body.get("choices") or ():
        if isinstance(choice, dict):
            lines.extend(_choice(choice))
    for candidate in body.get("candidates") or ():
        if isinstance(candidate, dict):
            parts = (candidate.get("content") or {}).get("parts")
            lines.append(f"model: {_clip(_text(parts))}  [finish: {candidate.get('finishReason')}]")
    if body.get("type") == "message" and body.get("role") == "assistant":
        lines.append(f"assistant: {_clip(_text(body.get('content')))}  [stop: {body.get('stop_reason')}]")
    output = body.get("output")
    if isinstance(output, dict) and isinstance(output.get("message"), dict):
        message = output["message"]
        lines.append(f"assistant: {_clip(_text(message.get('content')))}  [stop: {body.get('stopReason')}]")
    usage = body.get("usage") or body.get("usageMetadata")
    if usage:
        lines.append(f"usage: {orjson.dumps(usage).decode()}")
    return lines


def _choice(choice: dict[str, Any]) -> list[str]:
    message = choice.get("message") or {}
    text = _text(message.get("content")) if isinstance(message, dict) else ""
    if isinstance(choice.get("text"), str):
        text = choice["text"]
    for call in (message.get("tool_calls") if isinstance(message, dict) else None) or ():
        fn = call.get("function", {})
        text += f" [call {fn.get('name')}({fn.get('arguments', '')})]"
    return [f"assistant: {_clip(text)}  [finish: {choice.get('finish_reason')}]"]


def render_stream(data: bytes) -> list[str]:
    """An SSE stream of OpenAI chunks, Anthropic events or Gemini responses, assembled."""
    parser = SSEParser()
    events = parser.feed(data) + parser.finish()
    text: list[str] = []
    tools: dict[int, list[str]] = {}
    finish = None
    usage = None
    for event in events:
        if not event.data or event.data == "[DONE]":
            continue
        try:
            chunk = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(chunk, dict):
            continue
        usage = chunk.get("usage") or chunk.get("usageMetadata") or usage
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            text.append(delta.get("content") or choice.get("text") or "")
            for call in delta.get("tool_calls") or ():
                fn = call.get("function") or {}
                tools.setdefault(call.get("index", 0), []).append(
                    (fn.get("name") or "") + (fn.get("arguments") or "")
                )
            finish = choice.get("finish_reason") or finish
        delta = chunk.get("delta")
        if isinstance(delta, dict):  # Anthropic content_block_delta / message_delta
            text.append(delta.get("text") or "")
            finish = delta.get("stop_reason") or finish
        for candidate in chunk.get("candidates") or ():
            text.append(_text((candidate.get("content") or {}).get("parts")))
            finish = candidate.get("finishReason") or finish
    lines = [f"assistant (streamed, {len(events)} events): {_clip(''.join(text))}"]
    lines += [f"tool call {i}: {''.join(parts)}" for i, parts in sorted(tools.items())]
    lines.append(f"finish: {finish}")
    if usage:
        lines.append(f"usage: {orjson.dumps(usage).decode()}")
    return lines


class LLMConversationContentview(contentviews.Contentview):
    name = "LLM Conversation"
    syntax_highlight = "yaml"

    def prettify(self, data: bytes, metadata: contentviews.Metadata) -> str:
        if "event-stream" in (metadata.content_type or ""):
            return "\n".join(render_stream(data))
        lines = render(orjson.loads(data))
        if not lines:
            raise ValueError("not an LLM body")
        return "\n".join(lines)

    def render_priority(self, data: bytes, metadata: contentviews.Metadata) -> float:
        ctype = metadata.content_type or ""
        if "event-stream" in ctype and data:
            return 2
        if "json" in ctype and any(marker in data[:4096] for marker in _MARKERS):
            return 2  # above mitmproxy's JSON view (1)
        return -1
