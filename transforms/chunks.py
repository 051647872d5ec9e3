"""Writing OpenAI streaming chunks, and the base class of every provider stream translator.

A translator subclass only reads its provider's events and calls the writer; framing, stable ids,
the first chunk's role, per-index tool-call state, the usage chunk, error frames and ``[DONE]``
are handled here once for all providers.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import orjson

from transforms.errors import error_body
from transforms.limits import MAX_STREAM_TOOL_CALLS, MAX_TOOL_ARGUMENTS_CHARS, StreamLimitExceeded
from transforms.stream import DONE, LineBuffer, SSEEvent, SSEParser, sse_frame
from transforms.transcript import Transcript
from transforms.types import STOP_SEQUENCE_KEY, WEB_SEARCH_KEY, CallContext, Usage
from transforms.usage import TextTally, estimate_usage

# Stands for a content chunk's text while its frame is made (see ChunkWriter.content).
_CONTENT_MARK = "\ue000ai-proxy content\ue000"
_DUMPED_MARK = orjson.dumps(_CONTENT_MARK)


class ChunkWriter:
    """Builds ``chat.completion.chunk`` (or ``text_completion``) SSE frames for one response."""

    def __init__(self, ctx: CallContext) -> None:
        self.completions = ctx.route_type == "llm/v1/completions"
        prefix = "cmpl-" if self.completions else "chatcmpl-"
        self.id = prefix + ctx.request_id
        self.created = ctx.created
        self.model = ctx.model
        self.include_usage = ctx.include_usage
        self.extensions = ctx.extensions  # the gateway's chat extensions are read (an ingress adapter)
        self._role_sent = False
        self._tools: dict[Hashable, int] = {}
        self.transcript = Transcript()  # what was said, bounded, for the conversation view
        self._argument_chars: list[int] = []  # per tool call index, against MAX_TOOL_ARGUMENTS_CHARS
        # A content chunk's frame around its text, for the id, model and time it was made with.
        self._content_frame: tuple[tuple[str, str, int], bytes, bytes] | None = None

    def _frame(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "text_completion" if self.completions else "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if usage is not None:
            chunk["usage"] = usage
        return sse_frame(orjson.dumps(chunk))

    def _delta(
        self, delta: dict[str, Any], finish_reason: str | None = None, stop_sequence: str | None = None
    ) -> bytes:
        if self.completions:
            choice = {
                "index": 0,
                "text": delta.get("content", ""),
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        else:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            if stop_sequence is not None and self.extensions:
                choice[STOP_SEQUENCE_KEY] = stop_sequence
        return self._frame([choice])

    def start(self) -> list[bytes]:
        """The first chunk carries the role (chat only); sent at most once."""
        if self._role_sent or self.completions:
            self._role_sent = True
            return []
        self._role_sent = True
        return [self._delta({"role": "assistant", "content": ""})]

    def content(self, text: str) -> list[bytes]:
        if not text:
            return []
        if not self._role_sent or self.completions:
            return [*self.start(), self._delta({"content": text})]
        # Most chunks of a stream are text: the frame is the same bytes around each text's JSON.
        frame = self._content_frame
        if frame is None or frame[0] != (self.id, self.model, self.created):
            frame = self._content_frame = self._frame_around_content()
        if not frame[1]:  # an upstream id or model that holds the mark itself
            return [self._delta({"content": text})]
        return [frame[1] + orjson.dumps(text) + frame[2]]

    def _frame_around_content(self) -> tuple[tuple[str, str, int], bytes, bytes]:
        made_for = (self.id, self.model, self.created)
        whole = self._delta({"content": _CONTENT_MARK})
        before, found, after = whole.partition(_DUMPED_MARK)
        if not found or _DUMPED_MARK in after:
            return made_for, b"", b""
        return made_for, before, after

    def reasoning(self, text: str) -> list[bytes]:
        if not text or self.completions:
            return []
        self.transcript.reasoning(text)
        return [*self.start(), self._delta({"reasoning_content": text})]

    def thinking_block(self, block: dict[str, Any]) -> list[bytes]:
        """A complete signed thinking block (Anthropic's shape), for clients that keep
        ``thinking_blocks`` and send them back; its text already went out as reasoning."""
        if self.completions:
            return []
        return [*self.start(), self._delta({"thinking_blocks": [block]})]

    def tool_call_start(self, key: Hashable, call_id: str, name: str, arguments: str = "") -> list[bytes]:
        """Opens tool call ``key`` (any provider-side identity): index, id and name come first."""
        index = self._tools.get(key)
        if index is None:
            if len(self._tools) >= MAX_STREAM_TOOL_CALLS:
                limit = MAX_STREAM_TOOL_CALLS
                raise StreamLimitExceeded(
                    f"the upstream streamed more tool calls than the gateway's limit of {limit}"
                )
            index = self._tools[key] = len(self._tools)
            self._argument_chars.append(0)
        self._count_arguments(index, arguments)
        self.transcript.tool_start(key, name, arguments)
        call = {
            "index": index,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        return [*self.start(), self._delta({"tool_calls": [call]})]

    def tool_call_arguments(self, key: Hashable, fragment: str) -> list[bytes]:
        if not fragment or key not in self._tools:
            return []
        index = self._tools[key]
        self._count_arguments(index, fragment)
        self.transcript.tool_arguments(key, fragment)
        call = {"index": index, "function": {"arguments": fragment}}
        return [self._delta({"tool_calls": [call]})]

    def _count_arguments(self, index: int, fragment: str) -> None:
        """Fragments are passed on (the transcript keeps a bounded start), but a client assembles
        them: one call's arguments may not grow without end."""
        self._argument_chars[index] += len(fragment)
        if self._argument_chars[index] > MAX_TOOL_ARGUMENTS_CHARS:
            raise StreamLimitExceeded(
                f"the upstream streamed tool call arguments over the gateway's limit of "
                f"{MAX_TOOL_ARGUMENTS_CHARS} characters"
            )

    def annotations(self, annotations: list[dict[str, Any]]) -> list[bytes]:
        """URL citations of the text so far (OpenAI's ``url_citation`` annotations; indices count
        characters of the whole content)."""
        if not annotations or self.completions:
            return []
        return [*self.start(), self._delta({"annotations": annotations})]

    def web_search(self, calls: list[dict[str, Any]]) -> list[bytes]:
        """The provider's own web searches (WEB_SEARCH_KEY), for ingress adapters only."""
        if not calls or self.completions or not self.extensions:
            return []
        return [*self.start(), self._delta({WEB_SEARCH_KEY: calls})]

    def has_tool_calls(self) -> bool:
        return bool(self._tools)

    def finish(self, reason: str, stop_sequence: str | None = None) -> list[bytes]:
        """``stop_sequence``: which stop sequence ended the text ("" when the provider did not say)."""
        self.transcript.finish_reason = reason
        return [*self.start(), self._delta({}, reason, stop_sequence)]

    def usage(self, usage: Usage | None) -> list[bytes]:
        """OpenAI's final usage chunk (``choices: []``), only when the client asked for it."""
        if not self.include_usage or usage is None:
            return []
        return [self._frame([], usage.as_openai(mark_estimate=False))]

    @staticmethod
    def error(message: str, error_type: str = "api_error", code: str | None = "stream_error") -> bytes:
        return sse_frame(error_body(message, error_type, code))


class StreamTranslatorBase:
    """Reads a provider stream event by event and writes OpenAI chunks.

    Subclasses implement ``on_event`` and call ``self.end(reason)`` when the provider says the
    answer is complete. Framing is SSE by default; set ``framing = "ndjson"`` for line-delimited
    JSON, or override ``split`` for anything else (JSON arrays, binary event streams).
    """

    framing = "sse"
    provider = "upstream"

    def __init__(self, ctx: CallContext) -> None:
        self.ctx = ctx
        self.out = ChunkWriter(ctx)
        self.usage: Usage | None = None
        self.response_model: str | None = None
        self.tally = TextTally()
        self.finish_reason: str | None = None
        self._ended = False
        self.error: str | None = None  # the error frame's message, when one ended the stream
        self._sse = SSEParser()
        self._lines = LineBuffer()

    @property
    def text(self) -> str:
        """The start of the generated text (see TextTally); ``text_chars`` counts all of it."""
        return str(self.tally)

    @property
    def text_chars(self) -> int:
        return self.tally.chars

    def assembled(self, usage: Usage | None = None) -> dict[str, Any]:
        """The bounded transcript of what the stream said (text, reasoning, tool calls, finish)."""
        return self.out.transcript.as_dict(
            self.text, self.text_chars, usage or self.usage, self.response_model, self.finish_reason
        )

    # framing ---------------------------------------------------------------------------------

    def split(self, chunk: bytes) -> list[Any]:
        if self.framing == "ndjson":
            return [orjson.loads(line) for line in self._lines.feed(chunk) if line.strip()]
        return self._sse.feed(chunk)

    def split_rest(self) -> list[Any]:
        if self.framing == "ndjson":
            rest = self._lines.rest()
            return [orjson.loads(rest)] if rest.strip() else []
        return self._sse.finish()

    # translation -----------------------------------------------------------------------------

    def on_event(self, event: Any) -> list[bytes]:
        raise NotImplementedError

    def feed(self, chunk: bytes) -> list[bytes]:
        frames: list[bytes] = []
        if self._ended:
            return frames
        try:
            for event in self.split(chunk):
                frames.extend(self.on_event(event))
                if self._ended:
                    break
        except StreamLimitExceeded as e:
            # Past a cap nothing more is read or kept: the client gets an error frame and the end.
            frames.extend(self.fail(str(e), "api_error", StreamLimitExceeded.code))
        return frames

    def finish(self) -> list[bytes]:
        frames: list[bytes] = []
        if not self._ended:
            try:
                for event in self.split_rest():
                    frames.extend(self.on_event(event))
                    if self._ended:
                        return frames
            except StreamLimitExceeded as e:
                return [*frames, *self.fail(str(e), "api_error", StreamLimitExceeded.code)]
        if not self._ended:
            message = f"the {self.provider} stream ended before the response was complete"
            frames.extend(self.fail(message, "api_error", "stream_error"))
        return frames

    def content(self, text: str) -> list[bytes]:
        if text:
            self.tally.add(text)
        return self.out.content(text)

    def end(self, finish_reason: str, stop_sequence: str | None = None) -> list[bytes]:
        """Finish chunk, then the usage chunk when asked for, then ``[DONE]``."""
        if self._ended:
            return []
        self._ended = True
        self.finish_reason = finish_reason
        return [*self.out.finish(finish_reason, stop_sequence), *self.final_usage(), DONE]

    def final_usage(self) -> list[bytes]:
        """The usage chunk for clients that asked. A provider that sent no token counts (or not all
        of them) gets an estimate, marked as one in statistics: never zeros."""
        if self.usage is None:
            self.usage = estimate_usage(self.ctx.prompt_text, self.tally.chars)
        return self.out.usage(self.usage)

    def fail(
        self, message: str, error_type: str = "api_error", code: str | None = "upstream_error"
    ) -> list[bytes]:
        """An upstream error event mid-stream: one OpenAI-shaped error frame, then the end."""
        if self._ended:
            return []
        self._ended = True
        self.error = message
        return [self.out.error(message, error_type, code), DONE]


__all__ = ["ChunkWriter", "SSEEvent", "StreamTranslatorBase"]
