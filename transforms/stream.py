"""Incremental stream framing: server-sent events, split anywhere across network chunks.

Memory is bounded by the largest single event, never by the stream, and that event by
``MAX_STREAM_EVENT_BYTES``: each byte is copied once however the chunks cut it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from transforms.errors import error_body
from transforms.limits import MAX_STREAM_EVENT_BYTES, StreamLimitExceeded, element_too_large
from transforms.transcript import Transcript, assembled
from transforms.types import Usage
from transforms.usage import TextTally, usage_from_openai

DONE = b"data: [DONE]\n\n"


class LineBuffer:
    """Splits bytes into lines (``\n`` removed) wherever the chunks cut them. An unfinished line is
    kept as pieces, joined once when its end arrives, so a line spread over many chunks costs its
    length, not its length times the number of chunks; past ``MAX_STREAM_EVENT_BYTES`` it raises."""

    __slots__ = ("_pieces", "_size")

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        newline = chunk.find(b"\n")
        if newline < 0:
            if chunk:
                self._keep(chunk)
            return []
        if self._pieces:
            self._pieces.append(chunk[:newline])
            lines = [self.rest(), *chunk[newline + 1 :].split(b"\n")]
        else:
            lines = chunk.split(b"\n")
        rest = lines.pop()
        if rest:
            self._keep(rest)
        return lines

    def rest(self) -> bytes:
        """The unfinished line, taken out of the buffer."""
        line = self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)
        self._pieces = []
        self._size = 0
        return line

    def _keep(self, piece: bytes) -> None:
        self._size += len(piece)
        if self._size > MAX_STREAM_EVENT_BYTES:
            self._pieces, self._size = [], 0
            raise element_too_large("a line")
        self._pieces.append(piece)


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    data: str


class SSEParser:
    """Feeds bytes, yields complete events (``event:`` name and joined ``data:`` lines)."""

    __slots__ = ("_data", "_event", "_lines")

    def __init__(self) -> None:
        self._lines = LineBuffer()
        self._event: str | None = None
        self._data: bytes | bytearray | None = None  # the event's data lines, joined by newlines

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            return []
        events: list[SSEEvent] = []
        for raw in self._lines.feed(chunk):
            line = raw.rstrip(b"\r")
            # The three lines of nearly every event are read here: a method call per line costs more.
            if not line:
                if self._data is not None or self._event is not None:
                    data = self._data.decode("utf-8", "replace") if self._data is not None else ""
                    events.append(SSEEvent(self._event, data))
                    self._event, self._data = None, None
            elif line.startswith(b"data: ") and self._data is None:
                self._data = line[6:]
            elif line.startswith(b"event: "):
                self._event = line[7:].decode("utf-8", "replace")
            else:
                self._line(line, events)
        return events

    def finish(self) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        rest = self._lines.rest()
        if rest:
            self._line(rest.rstrip(b"\r"), events)
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[SSEEvent]) -> None:
        if not line:
            if self._data is not None or self._event is not None:
                data = self._data.decode("utf-8", "replace") if self._data is not None else ""
                events.append(SSEEvent(self._event, data))
            self._event, self._data = None, None
            return
        if line[:1] == b":":
            return  # comment / keep-alive
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            if self._data is None:
                self._data = value
            else:
                # An event's data lines add up until a blank line: bounded like a single line.
                if len(self._data) + len(value) >= MAX_STREAM_EVENT_BYTES:
                    self._data = None
                    raise element_too_large("an event")
                if isinstance(self._data, bytes):
                    self._data = bytearray(self._data)  # appended to in place from now on
                self._data += b"\n"
                self._data += value
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")


def sse_frame(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


class ObservedStream:
    """Bytes go through untouched while ``reader`` (any translator) reads them on the side: native
    provider streams keep their format and are still accounted for."""

    def __init__(self, reader: Any) -> None:
        self._reader = reader

    @property
    def usage(self) -> Usage | None:
        return self._reader.usage

    @property
    def response_model(self) -> str | None:
        return self._reader.response_model

    @property
    def text(self) -> str:
        return getattr(self._reader, "text", "")

    @property
    def text_chars(self) -> int:
        return getattr(self._reader, "text_chars", 0)

    def assembled(self, usage: Usage | None = None) -> dict[str, Any] | None:
        return assembled(self._reader, usage)

    @property
    def error(self) -> str | None:
        """Why the reader stopped early (the bytes still went through untouched), for statistics."""
        return getattr(self._reader, "error", None)

    def feed(self, chunk: bytes) -> list[bytes]:
        if not chunk:
            return []
        self._reader.feed(chunk)
        return [chunk]

    def finish(self) -> list[bytes]:
        self._reader.finish()
        return []


class OpenAIStream:
    """An upstream that already speaks OpenAI SSE.

    By default the bytes go through untouched while the events are read on the side for usage,
    the response model and the generated text. With ``hide_usage_chunk`` (the gateway asked the
    upstream for usage the client did not ask for) events are re-framed one by one and that final
    usage-only chunk is kept from the client.
    """

    def __init__(self, hide_usage_chunk: bool = False) -> None:
        self._parser = SSEParser()
        self._hide = hide_usage_chunk
        self._done = False
        self.error: str | None = None  # why the stream was cut short, for statistics
        self.usage: Usage | None = None
        self.response_model: str | None = None
        self.tally = TextTally()
        self.transcript = Transcript()

    @property
    def text(self) -> str:
        return str(self.tally)

    @property
    def text_chars(self) -> int:
        return self.tally.chars

    def assembled(self, usage: Usage | None = None) -> dict[str, Any]:
        usage = usage or self.usage
        return self.transcript.as_dict(self.text, self.text_chars, usage, self.response_model, None)

    def feed(self, chunk: bytes) -> list[bytes]:
        if not chunk or self.error is not None:
            return []
        try:
            events = self._parser.feed(chunk)
        except StreamLimitExceeded as e:
            return self._cut(str(e), StreamLimitExceeded.code)
        if not self._hide:
            for event in events:
                self._observe(event)
            return [chunk]
        return [frame for event in events if (frame := self._reframe(event))]

    def finish(self) -> list[bytes]:
        if self.error is not None:
            return []
        out = [frame for event in self._parser.finish() if (frame := self._reframe(event))]
        if not self._hide:
            out = []  # the raw bytes already went out
        if not self._done:
            # The upstream stopped without [DONE]: say so instead of ending silently.
            error = error_body(
                "the upstream stream ended before the response was complete", "api_error", "stream_error"
            )
            out += [b"\n\n" if not self._hide else b"", sse_frame(error), DONE]
            out = [frame for frame in out if frame]
        return out

    def _cut(self, message: str, code: str) -> list[bytes]:
        """Ends the client's stream with an error frame; what follows upstream is dropped."""
        self.error = message
        # Passed-through bytes may have ended mid-line: the blank line closes that event first.
        closing = [] if self._hide else [b"\n\n"]
        return [*closing, sse_frame(error_body(message, "api_error", code)), DONE]

    def _reframe(self, event: SSEEvent) -> bytes | None:
        data = self._observe(event)
        if data is None:
            return sse_frame(event.data.encode()) if event.data else None
        if self._hide and not data.get("choices") and data.get("usage"):
            return None
        return sse_frame(event.data.encode())

    def _observe(self, event: SSEEvent) -> dict | None:
        if event.data == "[DONE]":
            self._done = True
            return None
        if not event.data:
            return None
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(data, dict):
            return None
        if isinstance(data.get("model"), str) and data["model"]:
            self.response_model = data["model"]
        usage = usage_from_openai(data)
        if usage is not None:
            self.usage = usage
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else None
            if not isinstance(text, str):
                text = choice.get("text")
            if isinstance(text, str) and text:
                self.tally.add(text)
            self.transcript.openai_delta(choice)
        return data


class PassedBytes:
    """A binary answer (audio, a file's content): every chunk goes on as it came, never read."""

    usage: Usage | None = None
    response_model: str | None = None
    error: str | None = None
    text_chars = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        return [chunk] if chunk else []

    def finish(self) -> list[bytes]:
        return []
