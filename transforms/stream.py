"""Incremental stream framing: server-sent events, split anywhere across network chunks.

Memory is bounded by the largest single event, never by the stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from transforms.types import Usage
from transforms.usage import usage_from_openai

DONE = b"data: [DONE]\n\n"


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    data: str


class SSEParser:
    """Feeds bytes, yields complete events (``event:`` name and joined ``data:`` lines)."""

    __slots__ = ("_data", "_event", "_partial")

    def __init__(self) -> None:
        self._partial = b""
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            return []
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        events: list[SSEEvent] = []
        for raw in lines:
            self._line(raw.rstrip(b"\r"), events)
        return events

    def finish(self) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        if self._partial:
            self._line(self._partial.rstrip(b"\r"), events)
            self._partial = b""
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[SSEEvent]) -> None:
        if not line:
            if self._data or self._event is not None:
                events.append(SSEEvent(self._event, "\n".join(self._data)))
            self._event, self._data = None, []
            return
        if line[:1] == b":":
            return  # comment / keep-alive
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")


def sse_frame(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


class OpenAIStreamObserver:
    """For upstreams that already speak OpenAI SSE: the bytes go through untouched, while the
    events are read on the side for usage, the response model and the generated text."""

    def __init__(self) -> None:
        self._parser = SSEParser()
        self.usage: Usage | None = None
        self.response_model: str | None = None
        self.text_parts: list[str] = []
        self.first_token_at_chunk: int | None = None
        self._chunks = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        if not chunk:
            return []
        self._chunks += 1
        for event in self._parser.feed(chunk):
            self._observe(event)
        return [chunk]

    def finish(self) -> list[bytes]:
        for event in self._parser.finish():
            self._observe(event)
        return []

    def _observe(self, event: SSEEvent) -> None:
        if not event.data or event.data == "[DONE]":
            return
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(data, dict):
            return
        if isinstance(data.get("model"), str):
            self.response_model = data["model"]
        usage = usage_from_openai(data)
        if usage is not None:
            self.usage = usage
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content") if isinstance(delta, dict) else None
            if not isinstance(text, str):
                text = choice.get("text")
            if isinstance(text, str) and text:
                self.text_parts.append(text)

    @property
    def text(self) -> str:
        return "".join(self.text_parts)
