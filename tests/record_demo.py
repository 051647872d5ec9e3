"""Records the offline demo's cassettes (``fixtures/demo_cassettes/``) that ``make run`` replays.

Each demo call goes through a real mitmdump with the addon, the demo routes (``addon/demo_routes.yaml``)
and ``ai_proxy_record_mode=all``, with mitmproxy's ``map_remote`` sending the provider calls to the
test emulator; the emulator
answers in each provider's own format (streams event by event, 40 ms apart) with the answer the
README's questions deserve. Run from the repository root after changing the demo or the file format::

    .venv/bin/python tests/record_demo.py

``tests/test_demo.py`` replays every call below through ``make run``'s command line.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import ROOT, Gateway

from addon.config_loader import load_config
from addon.emulator import Emulator

DEMO_ROUTES = ROOT / "addon" / "demo_routes.yaml"
DEMO_CASSETTES = ROOT / "fixtures" / "demo_cassettes"
QUESTION = "What is 1 + 1?"
ANSWER = ["1 + 1", " = ", "2."]  # streamed in these pieces
PROMPT_TOKENS, ANSWER_TOKENS = 14, 8
SSE, NDJSON = "text/event-stream", "application/x-ndjson"


def chat_body(route_name: str, stream: bool) -> dict[str, Any]:
    """The README's request for a demo chat route (the OpenAI route needs a model in the body)."""
    body: dict[str, Any] = {"messages": [{"role": "user", "content": QUESTION}]}
    if route_name == "openai-chat":
        body = {"model": "gpt-4o-mini", **body}
    if stream:
        body["stream"] = True
    return body


def chat_routes() -> list[Any]:
    routes = load_config(DEMO_ROUTES, {}).routes
    return [r for r in routes if r.route_type == "llm/v1/chat"]


# Other demo calls, answered by the emulator's own fixtures: (path, body).
OTHER_CALLS = [
    ("/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "This is a test"}),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": QUESTION}),
]


def _sse(events: list[tuple[str | None, Any]]) -> bytes:
    out = b""
    for name, data in events:
        head = f"event: {name}\n".encode() if name else b""
        payload = data if isinstance(data, bytes) else orjson.dumps(data)
        out += head + b"data: " + payload + b"\n\n"
    return out


def _openai(model: str, stream: bool) -> tuple[bytes, str]:
    usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": ANSWER_TOKENS, "total_tokens": 22}
    base = {"id": "chatcmpl-demo", "created": 1764633600, "model": model}
    if not stream:
        message = {"role": "assistant", "content": "".join(ANSWER)}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return orjson.dumps({**base, "object": "chat.completion", "choices": [choice], "usage": usage}), (
            "application/json"
        )
    chunk = {**base, "object": "chat.completion.chunk"}
    deltas = [{"role": "assistant", "content": ""}] + [{"content": piece} for piece in ANSWER]
    events: list[tuple[str | None, Any]] = [
        (None, {**chunk, "choices": [{"index": 0, "delta": d, "finish_reason": None}]}) for d in deltas
    ]
    events.append((None, {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    events.append((None, {**chunk, "choices": [], "usage": usage}))
    events.append((None, b"[DONE]"))
    return _sse(events), SSE


def _anthropic(model: str, stream: bool) -> tuple[bytes, str]:
    usage = {"input_tokens": PROMPT_TOKENS, "output_tokens": ANSWER_TOKENS}
    message = {"id": "msg_demo", "type": "message", "role": "assistant", "model": model}
    if not stream:
        content = [{"type": "text", "text": "".join(ANSWER)}]
        body = {
            **message,
            "content": content,
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
        return orjson.dumps(body), "application/json"
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    events: list[tuple[str | None, Any]] = [
        ("message_start", {"type": "message_start", "message": start}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
    ]
    for piece in ANSWER:
        delta = {"type": "text_delta", "text": piece}
        events.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": ANSWER_TOKENS},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return _sse(events), SSE


def _cohere(model: str, stream: bool) -> tuple[bytes, str]:
    tokens = {"input_tokens": PROMPT_TOKENS, "output_tokens": ANSWER_TOKENS}
    usage = {"billed_units": tokens, "tokens": tokens}
    if not stream:
        message = {"role": "assistant", "content": [{"type": "text", "text": "".join(ANSWER)}]}
        return orjson.dumps(
            {"id": "demo", "finish_reason": "COMPLETE", "message": message, "usage": usage}
        ), ("application/json")
    events: list[tuple[str | None, Any]] = [
        (
            "message-start",
            {"id": "demo", "type": "message-start", "delta": {"message": {"role": "assistant"}}},
        ),
        (
            "content-start",
            {
                "type": "content-start",
                "index": 0,
                "delta": {"message": {"content": {"type": "text", "text": ""}}},
            },
        ),
    ]
    for piece in ANSWER:
        events.append(
            (
                "content-delta",
                {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": piece}}}},
            )
        )
    events += [
        ("content-end", {"type": "content-end", "index": 0}),
        ("message-end", {"type": "message-end", "delta": {"finish_reason": "COMPLETE", "usage": usage}}),
        (None, b"[DONE]"),
    ]
    return _sse(events), SSE


def _gemini(model: str, stream: bool) -> tuple[bytes, str]:
    usage = {"promptTokenCount": PROMPT_TOKENS, "candidatesTokenCount": ANSWER_TOKENS, "totalTokenCount": 22}

    def candidate(text: str, last: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
        if last:
            out["finishReason"] = "STOP"
        return out

    if not stream:
        body = {
            "candidates": [candidate("".join(ANSWER), True)],
            "usageMetadata": usage,
            "modelVersion": model,
        }
        return orjson.dumps(body), "application/json"
    events: list[tuple[str | None, Any]] = []
    for i, piece in enumerate(ANSWER):
        last = i == len(ANSWER) - 1
        data: dict[str, Any] = {"candidates": [candidate(piece, last)], "modelVersion": model}
        if last:
            data["usageMetadata"] = usage
        events.append((None, data))
    return _sse(events), SSE


def _ollama(model: str, stream: bool) -> tuple[bytes, str]:
    done = {
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": PROMPT_TOKENS,
        "eval_count": ANSWER_TOKENS,
    }
    base = {"model": model, "created_at": "2025-12-02T00:00:00Z"}
    if not stream:
        return orjson.dumps({**base, "message": {"role": "assistant", "content": "".join(ANSWER)}, **done}), (
            "application/json"
        )
    lines = [{**base, "message": {"role": "assistant", "content": piece}, "done": False} for piece in ANSWER]
    lines.append({**base, "message": {"role": "assistant", "content": ""}, **done})
    return b"".join(orjson.dumps(line) + b"\n" for line in lines), NDJSON


ANSWERS = {
    "openai": ("gpt-4o-mini-2024-07-18", _openai),
    "azure": ("gpt-4o-2024-08-06", _openai),
    "huggingface": ("meta-llama/Llama-3.1-8B-Instruct", _openai),
    "anthropic": ("claude-sonnet-4-5-20250929", _anthropic),
    "cohere": ("command-a-03-2025", _cohere),
    "gemini": ("gemini-2.5-flash", _gemini),
    "ollama": ("llama3.2", _ollama),
}


def record(target: Path = DEMO_CASSETTES) -> list[str]:
    """Records every demo call into ``target`` (emptied first); returns the gateway's log."""
    emulator = Emulator().start()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        if target.exists():
            shutil.rmtree(target)
        # The demo routes as they are (provider URLs); mitmproxy's map_remote, which acts after the
        # addon has recorded the request, sends every provider call to the emulator instead.
        to_emulator = f"|^https?://[^/]+(/hf-inference)?|{emulator.url}"
        extra = [
            *("--set", f"ai_proxy_config={DEMO_ROUTES}", "--set", f"map_remote={to_emulator}"),
            *("--set", f"ai_proxy_cassettes={target}", "--set", "ai_proxy_record_mode=all"),
        ]
        with Gateway(None, folder / "stats.jsonl", {}, extra) as gw:
            calls = 0
            for route in chat_routes():
                model, answer = ANSWERS[route.provider]
                for stream in (False, True):
                    body, content_type = answer(model, stream)
                    emulator.script(200, body, content_type, events=stream)
                    r = httpx.post(
                        gw.url + (route.match.path or ""),
                        json=chat_body(route.name, stream),
                        headers={"x-emulator-delay-ms": "40"},
                        timeout=10,
                    )
                    r.raise_for_status()
                    calls += 1
            for path, body in OTHER_CALLS:
                httpx.post(gw.url + path, json=body, timeout=10).raise_for_status()
                calls += 1
            gw.wait_records(calls)
            log = gw.lines
    emulator.stop()
    return log


if __name__ == "__main__":
    for line in record():
        if "recorded" in line:
            print(line)
    print(f"cassettes in {DEMO_CASSETTES.relative_to(ROOT)}: {len(list(DEMO_CASSETTES.rglob('*.json')))}")
