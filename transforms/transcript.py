"""A bounded transcript of a stream, kept while it is read for statistics.

mitmproxy keeps no streamed body unless told to (``store_streamed_bodies``), so the conversation
view would have nothing to show for a streamed answer. Every stream reader already sees each text,
reasoning and tool-call delta; recording them here costs one call per delta and at most a few
tens of KiB per flow, however long the stream runs.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from transforms.types import Usage

TEXT_CAP = 16 * 1024  # characters of text (and of reasoning) kept
TOOLS_CAP = 32  # tool calls kept
ARGUMENTS_CAP = 1024  # characters of one tool call's arguments kept


class Transcript:
    """Reasoning, tool calls and the finish reason of one stream (its text is in the reader's
    TextTally). Counts everything, keeps the first caps' worth."""

    __slots__ = ("_reasoning", "_tools", "finish_reason", "reasoning_chars", "tools_seen")

    def __init__(self) -> None:
        self._reasoning: list[str] = []
        self.reasoning_chars = 0
        self._tools: dict[Hashable, list[str]] = {}  # key -> [name, arguments so far]
        self.tools_seen = 0
        self.finish_reason: str | None = None

    def reasoning(self, text: str) -> None:
        if self.reasoning_chars < TEXT_CAP:
            self._reasoning.append(text[: TEXT_CAP - self.reasoning_chars])
        self.reasoning_chars += len(text)

    def tool_start(self, key: Hashable, name: str, arguments: str = "") -> None:
        self.tools_seen += 1
        if len(self._tools) < TOOLS_CAP and key not in self._tools:
            self._tools[key] = [name or "", arguments[:ARGUMENTS_CAP]]

    def tool_arguments(self, key: Hashable, fragment: str) -> None:
        call = self._tools.get(key)
        if call is not None and len(call[1]) < ARGUMENTS_CAP:
            call[1] = (call[1] + fragment)[:ARGUMENTS_CAP]

    def openai_delta(self, choice: dict[str, Any]) -> None:
        """One OpenAI ``choices[i]`` of a stream chunk: reasoning, tool calls, finish reason."""
        delta = choice.get("delta")
        if isinstance(delta, dict):
            for key in ("reasoning_content", "reasoning"):
                if isinstance(delta.get(key), str) and delta[key]:
                    self.reasoning(delta[key])
            for call in delta.get("tool_calls") or ():
                if not isinstance(call, dict):
                    continue
                index = call.get("index", 0)
                fn = call.get("function") if isinstance(call.get("function"), dict) else {}
                arguments = fn.get("arguments") if isinstance(fn.get("arguments"), str) else ""
                if index not in self._tools and isinstance(fn.get("name"), str):
                    self.tool_start(index, fn["name"], arguments)
                else:
                    self.tool_arguments(index, arguments)
        if isinstance(choice.get("finish_reason"), str):
            self.finish_reason = choice["finish_reason"]

    def as_dict(
        self, text: str, text_chars: int, usage: Usage | None, model: str | None, finish_reason: str | None
    ) -> dict[str, Any]:
        """Plain JSON-able data for flow metadata."""
        out: dict[str, Any] = {"text": text[:TEXT_CAP], "text_chars": text_chars}
        if self._reasoning:
            out["reasoning"] = "".join(self._reasoning)
            out["reasoning_chars"] = self.reasoning_chars
        if self._tools:
            out["tool_calls"] = [{"name": name, "arguments": args} for name, args in self._tools.values()]
            out["tool_calls_seen"] = self.tools_seen
        out["finish_reason"] = finish_reason or self.finish_reason
        if model:
            out["model"] = model
        if usage is not None:
            out["usage"] = usage.as_openai(mark_estimate=False) | (
                {"estimated": True} if usage.estimated else {}
            )
        out["truncated"] = (
            text_chars > TEXT_CAP
            or self.reasoning_chars > TEXT_CAP
            or self.tools_seen > len(self._tools)
            or any(len(args) >= ARGUMENTS_CAP for _, args in self._tools.values())
        )
        return out


def assembled(reader: Any, usage: Usage | None = None) -> dict[str, Any] | None:
    """The transcript of any stream reader that keeps one (every provider's, through the shared
    base classes), or None."""
    method = getattr(reader, "assembled", None)
    return method(usage) if callable(method) else None
