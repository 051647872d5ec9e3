"""The bodies the benchmark sends and the fixed answers its static upstream serves.

Both providers answer the same text with the same token counts, so translated and untranslated
configurations move the same amount of content. Shapes follow the providers' SDK types
(``openai.types.chat.ChatCompletion[Chunk]``, ``anthropic.types.Message`` / ``RawMessage*Event``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-3-5-haiku-20241022"
ANSWER = (
    "A reverse proxy accepts a client's request, forwards it to an upstream server and relays the "
    "answer back. For an AI gateway the interesting part is the translation in between: the request "
    "body is rewritten into the provider's own format, credentials are attached, and the response, "
    "streamed or not, is turned back into the OpenAI shape the client expects, while token usage is "
    "recorded for statistics. Done well, this costs far less than the model's own latency."
)
DELTA_CHARS = 24  # about one delta per token group, as providers stream them
PROMPT_TOKENS = 250
COMPLETION_TOKENS = 96
OPENAI_ID = "chatcmpl-BenchBp6yJq3kQ2vXo1Zc9Lm4Rt7Wa"
ANTHROPIC_ID = "msg_01BenchXq7uT5mN3rK8vW2yZ4"
CREATED = 1741570283

# The request sizes the issue asks for.
BODY_SIZES = {"1k": 1024, "32k": 32 * 1024}


def answer_deltas() -> list[str]:
    return [ANSWER[i : i + DELTA_CHARS] for i in range(0, len(ANSWER), DELTA_CHARS)]


# --- client requests -------------------------------------------------------------------------------


def chat_request(size: int, stream: bool) -> bytes:
    """An OpenAI chat request of about ``size`` bytes: a system prompt and alternating turns."""
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "system", "content": "You are a concise assistant for network engineers."}],
        "max_tokens": 256,
        "temperature": 0.2,
    }
    if stream:
        body["stream"] = True
    body["messages"].append({"role": "user", "content": "Explain what a reverse proxy does, briefly."})
    grow_chat(body, size)
    return orjson.dumps(body)


def grow_chat(body: dict[str, Any], size: int) -> None:
    """Insert alternating user/assistant turns before the last message until the body has ``size`` bytes."""
    messages: list[dict[str, Any]] = body["messages"]
    last = messages.pop() if messages and messages[-1].get("role") == "user" else None
    turn = 0
    extra = len(orjson.dumps(last)) if last else 0
    while len(orjson.dumps(body)) + extra < size:
        role = "user" if turn % 2 == 0 else "assistant"
        messages.append({"role": role, "content": _filler(turn, 180)})
        turn += 1
    if last is not None:
        messages.append(last)


def _filler(seed: int, length: int) -> str:
    words = ("latency", "throughput", "upstream", "header", "stream", "token", "gateway", "route")
    out: list[str] = []
    i = seed
    while sum(len(w) + 1 for w in out) < length:
        out.append(words[i % len(words)])
        i += 3
    return " ".join(out)


# --- upstream answers --------------------------------------------------------------------------------


def openai_response() -> bytes:
    return orjson.dumps(
        {
            "id": OPENAI_ID,
            "object": "chat.completion",
            "created": CREATED,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": ANSWER, "refusal": None, "annotations": []},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _openai_usage(),
            "service_tier": "default",
            "system_fingerprint": "fp_06737a9306",
        }
    )


def _openai_usage() -> dict[str, int]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    }


def _openai_chunk(delta: dict[str, Any], finish: str | None, usage: dict[str, int] | None) -> bytes:
    chunk = {
        "id": OPENAI_ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_06737a9306",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if delta else [],
        "usage": usage,
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def openai_stream() -> bytes:
    """Role chunk, content deltas, finish chunk, the usage chunk (asked by the gateway), [DONE]."""
    return b"".join(_openai_stream_parts(1))


def _openai_stream_parts(repeat: int) -> Iterator[bytes]:
    yield _openai_chunk({"role": "assistant", "content": ""}, None, None)
    deltas = [_openai_chunk({"content": text}, None, None) for text in answer_deltas()]
    for _ in range(repeat):
        yield from deltas
    yield _openai_chunk({"content": ""}, "stop", None)
    yield _openai_chunk({}, None, _openai_usage())
    yield b"data: [DONE]\n\n"


def anthropic_response() -> bytes:
    return orjson.dumps(
        {
            "id": ANTHROPIC_ID,
            "type": "message",
            "role": "assistant",
            "model": ANTHROPIC_MODEL,
            "content": [{"type": "text", "text": ANSWER}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": PROMPT_TOKENS,
                "output_tokens": COMPLETION_TOKENS,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }
    )


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def anthropic_stream() -> bytes:
    return b"".join(_anthropic_stream_parts(1))


def _anthropic_stream_parts(repeat: int) -> Iterator[bytes]:
    start = {
        "id": ANTHROPIC_ID,
        "type": "message",
        "role": "assistant",
        "model": ANTHROPIC_MODEL,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": 1},
    }
    yield _sse("message_start", {"type": "message_start", "message": start})
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    yield _sse("content_block_start", block)
    yield _sse("ping", {"type": "ping"})
    deltas = [
        _sse(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
        )
        for text in answer_deltas()
    ]
    for _ in range(repeat):
        yield from deltas
    yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
    end = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": COMPLETION_TOKENS * repeat},
    }
    yield _sse("message_delta", end)
    yield _sse("message_stop", {"type": "message_stop"})


# Upstream documents by URL path: nginx and the Python stand-in serve exactly these.
def upstream_documents() -> dict[str, tuple[str, bytes]]:
    json_type, sse_type = "application/json", "text/event-stream"
    return {
        "/openai/chat": (json_type, openai_response()),
        "/openai/chat-stream": (sse_type, openai_stream()),
        "/anthropic/messages": (json_type, anthropic_response()),
        "/anthropic/stream/messages": (sse_type, anthropic_stream()),
    }


# Very long streams (memory over a 100 MB answer): the answer's deltas repeated, served from a file.
BIG_STREAMS = {"/openai/big-stream": "openai", "/anthropic/big/messages": "anthropic"}


def big_stream(provider: str, size: int) -> Iterator[bytes]:
    """A stream of about ``size`` bytes: the normal one with its content deltas repeated."""
    parts = _openai_stream_parts if provider == "openai" else _anthropic_stream_parts
    once = len(b"".join(parts(1)))
    per_repeat = len(b"".join(parts(2))) - once
    return parts(max(1, (size - once) // per_repeat + 1))
