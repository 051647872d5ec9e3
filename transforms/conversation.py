"""LLM traffic as a readable conversation, for the "LLM Conversation" content view.

Pure functions over bodies and flow metadata: any provider's request or response body (OpenAI
chat, completions, embeddings and responses; Anthropic messages; Gemini and Vertex; Bedrock
converse and invoke; Cohere v1 and v2; Hugging Face TGI; Ollama), any stream (SSE, NDJSON, JSON
arrays, Bedrock's binary event stream) assembled, and the gateway's own record of a flow: the
client's request beside the provider's, and the transcript it kept of a stream mitmproxy did not
store. Credentials never reach here: headers are not rendered, and stored flows are masked.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from transforms.stream import SSEParser
from transforms.transcript import Transcript

MAX_TEXT = 2000  # characters of one message shown; the raw view has the rest
RULE = "──"


def clip(text: str) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + f"… (+{len(text) - MAX_TEXT} chars)"


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def text_of(content: Any) -> str:
    """Text of any provider's content: a string, or a list of parts or blocks."""
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
            out.append(_part(part))
    return " ".join(p for p in out if p)


def _part(part: dict[str, Any]) -> str:
    kind = part.get("type")
    if isinstance(part.get("text"), str):
        return ("[thinking] " if part.get("thought") is True else "") + part["text"]
    if kind in ("thinking", "reasoning") or "reasoningContent" in part:
        inner = (
            part.get("reasoningContent", {}).get("reasoningText", {}) if "reasoningContent" in part else part
        )
        return f"[thinking] {inner.get('thinking') or inner.get('text') or ''}"
    if kind in ("image_url", "image", "input_image") or "inlineData" in part or "image" in part:
        return "[image]"
    if "functionCall" in part:
        call = part["functionCall"]
        return f"[call {call.get('name')}({_json(call.get('args', {}))})]"
    if "toolUse" in part:
        return f"[call {part['toolUse'].get('name')}({_json(part['toolUse'].get('input', {}))})]"
    if kind in ("tool_use", "function_call"):
        args = part.get("input") if kind == "tool_use" else part.get("arguments")
        return f"[call {part.get('name')}({args if isinstance(args, str) else _json(args or {})})]"
    if kind in ("tool_result", "function_call_output") or "toolResult" in part or "functionResponse" in part:
        return "[tool result]"
    if kind == "document" or "document" in part:
        return "[document]"
    return ""


def _tool_calls(calls: Any) -> str:
    out = []
    for call in calls or ():
        if isinstance(call, dict):
            fn = call.get("function") if isinstance(call.get("function"), dict) else call
            args = fn.get("arguments", fn.get("parameters", ""))
            out.append(f" [call {fn.get('name')}({args if isinstance(args, str) else _json(args)})]")
    return "".join(out)


def _message(message: dict[str, Any], default_role: str = "?") -> str:
    role = message.get("role", default_role)
    content = message.get("content", message.get("parts", message.get("message")))
    text = text_of(content) + _tool_calls(message.get("tool_calls"))
    if isinstance(message.get("thinking"), str) and message["thinking"]:
        text = f"[thinking] {message['thinking']} {text}"
    return f"{str(role).lower()}: {clip(text)}"


def _vectors(items: Any, key: str | None = None) -> str | None:
    if isinstance(items, dict):  # Cohere v2: {"float": [[...], ...]}
        items = next((v for v in items.values() if isinstance(v, list)), None)
    if not isinstance(items, list) or not items:
        return None
    first = items[0].get(key) if key and isinstance(items[0], dict) else items[0]
    if isinstance(first, dict):
        first = first.get("values", first.get("embedding"))
    dims = f" of {len(first)} dimensions" if isinstance(first, list) else ""
    return f"embeddings: {len(items)} vector(s){dims}"


def render_body(body: Any) -> list[str]:
    """Conversation lines for one request or response body of any supported format."""
    if isinstance(body, list):  # TGI's [{generated_text}], Gemini's streamGenerateContent as a JSON array
        if body and isinstance(body[0], dict) and "generated_text" in body[0]:
            return [line for item in body for line in render_body(item)]
        return render_events([b for b in body if isinstance(b, dict)]) if body else []
    if not isinstance(body, dict):
        return []
    lines: list[str] = []
    head = [
        f"{k}: {body[k]}"
        for k in ("model", "modelVersion", "stream", "max_tokens", "temperature")
        if k in body and not isinstance(body[k], dict | list)
    ]
    if head:
        lines.append(", ".join(head))
    lines += _request_lines(body)
    lines += _response_lines(body)
    error = body.get("error")
    if isinstance(error, dict | str) and error:  # an error answer of any provider, or of the gateway
        message = error.get("message") if isinstance(error, dict) else error
        lines.append(f"error: {clip(str(message or _json(error)))}")
    usage = body.get("usage") or body.get("usageMetadata") or (body.get("meta") or {}).get("billed_units")
    if usage:
        lines.append(f"usage: {_json(usage)}")
    for key in ("prompt_eval_count", "eval_count"):  # Ollama
        if isinstance(body.get(key), int):
            lines.append(f"{key}: {body[key]}")
    return lines


def _request_lines(body: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    system = (
        body.get("system")
        or body.get("systemInstruction")
        or body.get("preamble")
        or body.get("instructions")
    )
    if system:
        lines.append(f"system: {clip(text_of(system.get('parts') if isinstance(system, dict) else system))}")
    for message in body.get("chat_history") or ():  # Cohere v1
        if isinstance(message, dict):
            lines.append(_message(message))
    messages = body.get("messages") or body.get("contents")
    if isinstance(messages, list):
        lines += [_message(m) for m in messages if isinstance(m, dict)]
    if isinstance(body.get("message"), str):  # Cohere v1
        lines.append(f"user: {clip(body['message'])}")
    for key in ("prompt", "inputs", "inputText", "query"):  # completions, TGI, Titan, rerank
        if isinstance(body.get(key), str):
            lines.append(f"{key}: {clip(body[key])}")
    given = body.get("input")
    if isinstance(given, str):
        lines.append(f"input: {clip(given)}")
    elif isinstance(given, list):  # OpenAI responses items, or embedding inputs
        if all(isinstance(i, dict) for i in given):
            lines += [
                _message(i, "user") if "role" in i or "content" in i else f"item: {_part(i)}" for i in given
            ]
        else:
            lines.append(f"input: {len(given)} item(s)")
    for key in ("texts", "documents", "instances", "requests"):  # embeddings, rerank, predict
        if isinstance(body.get(key), list):
            lines.append(f"{key}: {len(body[key])} item(s)")
    if isinstance(body.get("content"), dict) and "parts" in body["content"]:  # Gemini embedContent
        lines.append(f"content: {clip(text_of(body['content']['parts']))}")
    if body.get("tools"):
        lines.append(f"tools: {len(body['tools'])}")
    return lines


def _response_lines(body: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for choice in body.get("choices") or ():  # OpenAI chat and completions
        if isinstance(choice, dict):
            message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
            text = choice["text"] if isinstance(choice.get("text"), str) else text_of(message.get("content"))
            if isinstance(message.get("reasoning_content"), str):
                text = f"[thinking] {message['reasoning_content']} {text}"
            text += _tool_calls(message.get("tool_calls"))
            lines.append(f"assistant: {clip(text)}  [finish: {choice.get('finish_reason')}]")
    for candidate in body.get("candidates") or ():  # Gemini
        if isinstance(candidate, dict):
            parts = (candidate.get("content") or {}).get("parts")
            lines.append(f"model: {clip(text_of(parts))}  [finish: {candidate.get('finishReason')}]")
    if body.get("type") == "message" and body.get("role") == "assistant":  # Anthropic
        lines.append(f"assistant: {clip(text_of(body.get('content')))}  [stop: {body.get('stop_reason')}]")
    output = body.get("output")
    if isinstance(output, dict) and isinstance(output.get("message"), dict):  # Bedrock converse
        lines.append(
            f"assistant: {clip(text_of(output['message'].get('content')))}  [stop: {body.get('stopReason')}]"
        )
    if isinstance(output, list):  # OpenAI responses
        text = " ".join(
            _part(i) if i.get("type") != "message" else text_of(i.get("content"))
            for i in output
            if isinstance(i, dict)
        )
        lines.append(f"assistant: {clip(text)}  [status: {body.get('status')}]")
    message = body.get("message")
    if isinstance(message, dict) and "role" in message:  # Ollama chat, Cohere v2
        reason = body.get("done_reason") or body.get("finish_reason")
        lines.append(f"{_message(message, 'assistant')}  [finish: {reason}]")
    for key, reason in (
        ("response", "done_reason"),
        ("generated_text", None),
        ("generation", "stop_reason"),
        ("completion", "stop_reason"),
    ):
        if isinstance(body.get(key), str):  # Ollama generate, TGI, Llama on Bedrock, Claude v2
            details = body.get("details") if isinstance(body.get("details"), dict) else {}
            finish = body.get(reason) if reason else details.get("finish_reason")
            lines.append(f"assistant: {clip(body[key])}  [finish: {finish}]")
    if isinstance(body.get("text"), str) and (
        "generation_id" in body or "finish_reason" in body
    ):  # Cohere v1
        lines.append(
            f"assistant: {clip(body['text'])}{_tool_calls(body.get('tool_calls'))}"
            f"  [finish: {body.get('finish_reason')}]"
        )
    for result in body.get("results") or ():  # Titan text
        if isinstance(result, dict) and isinstance(result.get("outputText"), str):
            lines.append(
                f"assistant: {clip(result['outputText'])}  [finish: {result.get('completionReason')}]"
            )
    for item in body.get("outputs") or body.get("generations") or ():  # Mistral / Cohere on Bedrock
        if isinstance(item, dict) and isinstance(item.get("text"), str):
            lines.append(
                f"assistant: {clip(item['text'])}"
                f"  [finish: {item.get('stop_reason') or item.get('finish_reason')}]"
            )
    vectors = (
        _vectors(body.get("data"), "embedding")
        or _vectors(body.get("embeddings"))
        or _vectors([body["embedding"]] if isinstance(body.get("embedding"), dict | list) else None)
        or _vectors(body.get("predictions"), "embeddings")
    )
    if vectors:
        lines.append(vectors)
    if isinstance(body.get("results"), list) and body["results"] and "relevance_score" in body["results"][0]:
        lines.append(f"rerank: {len(body['results'])} result(s)")
    return lines


# --- streams ---------------------------------------------------------------------------------------


class _Assembler:
    """Reads stream events of any format into one transcript."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.transcript = Transcript()
        self.usage: Any = None
        self.events = 0

    def event(self, chunk: dict[str, Any]) -> None:
        self.events += 1
        t = self.transcript
        kind = chunk.get("type") or chunk.get("event_type")
        usage = (
            chunk.get("usage") or chunk.get("usageMetadata") or chunk.get("amazon-bedrock-invocationMetrics")
        )
        if usage:
            self.usage = usage
        for choice in chunk.get("choices") or ():  # OpenAI
            if isinstance(choice, dict):
                delta = choice.get("delta") or {}
                self.add(delta.get("content") if isinstance(delta, dict) else None)
                self.add(choice.get("text"))
                t.openai_delta(choice)
        delta = chunk.get("delta")
        if kind == "response.output_text.delta":  # OpenAI responses
            self.add(delta)
        elif kind == "response.completed" and isinstance(chunk.get("response"), dict):
            self.usage = chunk["response"].get("usage") or self.usage
            t.finish_reason = chunk["response"].get("status")
        elif isinstance(delta, dict):
            self._delta(kind, chunk, delta)
        if kind == "content_block_start" and isinstance(chunk.get("content_block"), dict):  # Anthropic
            block = chunk["content_block"]
            if block.get("type") == "tool_use":
                t.tool_start(chunk.get("index"), block.get("name") or "")
        if isinstance(chunk.get("message"), dict) and kind != "message_start":  # Ollama chat
            self.add(chunk["message"].get("content"))
            if chunk["message"].get("thinking"):
                t.reasoning(chunk["message"]["thinking"])
            for i, call in enumerate(chunk["message"].get("tool_calls") or ()):
                fn = call.get("function") or {}
                t.tool_start(("ollama", self.events, i), fn.get("name") or "", _json(fn.get("arguments", {})))
        for candidate in chunk.get("candidates") or ():  # Gemini
            for i, part in enumerate((candidate.get("content") or {}).get("parts") or ()):
                if isinstance(part.get("text"), str):
                    (t.reasoning if part.get("thought") is True else self.add)(part["text"])
                elif "functionCall" in part:
                    call = part["functionCall"]
                    t.tool_start(
                        ("gemini", self.events, i), call.get("name") or "", _json(call.get("args", {}))
                    )
            t.finish_reason = candidate.get("finishReason") or t.finish_reason
        if kind == "text-generation" or kind == "stream-end":  # Cohere v1
            self.add(chunk.get("text"))
            t.finish_reason = chunk.get("finish_reason") or t.finish_reason
        token = chunk.get("token")
        if isinstance(token, dict) and not token.get("special"):  # TGI
            self.add(token.get("text"))
        details = chunk.get("details")
        if isinstance(details, dict) and details.get("finish_reason"):
            t.finish_reason = details["finish_reason"]
        for key in ("response", "outputText", "generation", "completion"):  # Ollama generate, Bedrock invoke
            if isinstance(chunk.get(key), str):
                self.add(chunk[key])
        for item in chunk.get("outputs") or chunk.get("generations") or ():  # Mistral / Cohere on Bedrock
            if isinstance(item, dict):
                self.add(item.get("text"))
        for key in ("done_reason", "stop_reason", "stopReason", "completionReason", "finish_reason"):
            if isinstance(chunk.get(key), str):
                t.finish_reason = chunk[key]
        if "start" in chunk and isinstance(chunk["start"], dict) and "toolUse" in chunk["start"]:  # converse
            t.tool_start(chunk.get("contentBlockIndex"), chunk["start"]["toolUse"].get("name") or "")

    def _delta(self, kind: Any, chunk: dict[str, Any], delta: dict[str, Any]) -> None:
        t = self.transcript
        index = chunk.get("index", chunk.get("contentBlockIndex"))
        self.add(delta.get("text"))  # Anthropic text_delta, Bedrock converse
        if isinstance(delta.get("thinking"), str):
            t.reasoning(delta["thinking"])
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict) and isinstance(reasoning.get("text"), str):
            t.reasoning(reasoning["text"])
        if isinstance(delta.get("partial_json"), str):
            t.tool_arguments(index, delta["partial_json"])
        tool = delta.get("toolUse")
        if isinstance(tool, dict) and isinstance(tool.get("input"), str):
            t.tool_arguments(index, tool["input"])
        t.finish_reason = delta.get("stop_reason") or delta.get("finish_reason") or t.finish_reason
        message = delta.get("message")  # Cohere v2
        if isinstance(message, dict):
            content = message.get("content")
            if isinstance(content, dict):
                self.add(content.get("text"))
                if content.get("thinking"):
                    t.reasoning(content["thinking"])
            calls = message.get("tool_calls")
            if isinstance(calls, dict):
                fn = calls.get("function") or {}
                if kind == "tool-call-start":
                    t.tool_start(index, fn.get("name") or "", fn.get("arguments") or "")
                else:
                    t.tool_arguments(index, fn.get("arguments") or "")
        if isinstance(delta.get("usage"), dict):
            self.usage = delta["usage"]

    def add(self, text: Any) -> None:
        if isinstance(text, str) and text:
            self.text.append(text)

    def lines(self, label: str) -> list[str]:
        text = "".join(self.text)
        data = self.transcript.as_dict(text, len(text), None, None, None)
        data["usage"] = self.usage
        return render_assembled(data, f"{label}, {self.events} events")


def render_events(events: list[dict[str, Any]], label: str = "assistant (streamed") -> list[str]:
    assembler = _Assembler()
    for event in events:
        assembler.event(event)
    return assembler.lines(label)


def _bedrock_payloads(data: bytes) -> list[dict[str, Any]]:
    from transforms.providers.bedrock import EventStreamDecoder, Frame

    out = []
    for frame in EventStreamDecoder().feed(data):
        if not isinstance(frame, Frame):
            continue
        try:
            payload = orjson.loads(frame.payload)
        except orjson.JSONDecodeError:
            continue
        if isinstance(payload, dict) and isinstance(payload.get("bytes"), str):  # invoke-with-response-stream
            try:
                payload = orjson.loads(base64.b64decode(payload["bytes"]))
            except (ValueError, orjson.JSONDecodeError):
                continue
        if isinstance(payload, dict):
            out.append(payload)
    return out


def stream_events(data: bytes, content_type: str) -> list[dict[str, Any]]:
    """The JSON events of a stored stream body, whatever its framing."""
    if "amazon.eventstream" in content_type:
        return _bedrock_payloads(data)
    if "ndjson" in content_type or data[:1] == b"{":
        raw = [line for line in data.split(b"\n") if line.strip()]
    elif data[:1] == b"[":
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            parsed = []
        return [e for e in parsed if isinstance(e, dict)] if isinstance(parsed, list) else []
    else:
        parser = SSEParser()
        raw = [e.data.encode() for e in parser.feed(data) + parser.finish() if e.data and e.data != "[DONE]"]
    out = []
    for item in raw:
        try:
            event = orjson.loads(item)
        except orjson.JSONDecodeError:
            continue
        if isinstance(event, dict):
            out.append(event)
    return out


def render_stream(data: bytes, content_type: str = "text/event-stream") -> list[str]:
    return render_events(stream_events(data, content_type))


def render_assembled(data: dict[str, Any], label: str = "assistant (streamed") -> list[str]:
    """The transcript the gateway kept of a stream (``flow.metadata["ai_proxy"]["assembled"]``)."""
    lines = [f"{label}): {clip(str(data.get('text') or ''))}"]
    if data.get("reasoning"):
        lines.append(f"reasoning: {clip(data['reasoning'])}")
    for i, call in enumerate(data.get("tool_calls") or ()):
        lines.append(f"tool call {i}: {call.get('name')}({call.get('arguments')})")
    lines.append(f"finish: {data.get('finish_reason')}")
    if data.get("usage"):
        lines.append(f"usage: {_json(data['usage'])}")
    if data.get("truncated"):
        lines.append("(transcript truncated: the gateway keeps the start of long streams)")
    return lines


# --- a whole flow ------------------------------------------------------------------------------------


def body_lines(data: bytes, content_type: str) -> list[str]:
    """One stored body of any format, a stream or a JSON document."""
    if not data:
        return []
    if any(s in content_type for s in ("event-stream", "ndjson", "amazon.eventstream")):
        return render_stream(data, content_type)
    try:
        return render_body(orjson.loads(data))
    except orjson.JSONDecodeError:
        return []


def conversation(
    side: str,
    data: bytes,
    content_type: str,
    ai: dict[str, Any] | None,
    request_line: str,
    response: tuple[int, bytes | None, str] | None,
) -> list[str]:
    """The view of one side (``request`` or ``response``) of a flow. On the request side, the whole
    exchange: what the client sent, what went to the provider, what came back, what the client
    received. ``ai`` is the gateway's ``flow.metadata["ai_proxy"]``; ``response`` is the flow's
    (status, stored body or None, content type)."""
    ai = ai or {}
    client = ai.get("client_request")
    provider = ai.get("provider_response")
    assembled = ai.get("assembled")
    lines: list[str] = []
    if side == "request":
        if isinstance(client, dict):
            lines.append(f"{RULE} the client sent: {client.get('method')} {client.get('path')}")
            lines += body_lines(str(client.get("body") or "").encode(), "application/json") or ["(no body)"]
            if client.get("truncated"):
                lines.append(
                    f"(body cut at {len(client.get('body') or '')} of {client.get('body_size')} bytes)"
                )
            lines.append(f"{RULE} sent to the provider: {request_line}")
        lines += body_lines(data, content_type)
        if not isinstance(client, dict) and not response and not assembled:
            return lines
    if isinstance(provider, dict):
        lines.append(f"{RULE} the provider answered: HTTP {provider.get('status')}")
        lines += body_lines(str(provider.get("body") or "").encode(), provider.get("content_type") or "") or [
            "(no body)"
        ]
    stored = data if side == "response" else (response[1] if response else None)
    kind = content_type if side == "response" else (response[2] if response else "")
    if stored:
        label = (
            "the client received" if isinstance(client, dict) or isinstance(provider, dict) else "the answer"
        )
        if side == "request" or isinstance(provider, dict):
            lines.append(f"{RULE} {label}: HTTP {response[0] if response else '?'}")
        lines += body_lines(stored, kind)
    elif isinstance(assembled, dict):
        lines.append(f"{RULE} streamed answer, as the gateway read it (mitmproxy stored no streamed body)")
        lines += render_assembled(assembled)
    return lines
