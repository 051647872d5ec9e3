"""The walk over a chat completion chunk that every client format's stream writer shares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ChatChunkWriter:
    """Reads each choice's delta (reasoning, text, tool calls) and finish reason from one chat
    chunk and hands the pieces to the subclass, which writes them in its client's events."""

    _finish: str | None

    def start(self, chunk: Mapping[str, Any] | None) -> list[bytes]:
        raise NotImplementedError

    def _reasoning(self, text: str) -> list[bytes]:
        raise NotImplementedError

    def _output_text(self, text: str) -> list[bytes]:
        raise NotImplementedError

    def _tool_call(self, call: Mapping[str, Any]) -> list[bytes]:
        raise NotImplementedError

    def _thinking_block(self, block: Mapping[str, Any]) -> list[bytes]:
        """A complete signed thinking block (its text came as reasoning before): formats that send
        signatures back write it; others have nothing to write."""
        return []

    def chunk(self, chunk: Mapping[str, Any]) -> list[bytes]:
        out = self.start(chunk)
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
            reasoning = delta.get("reasoning_content")
            if isinstance(reasoning, str) and reasoning:
                out += self._reasoning(reasoning)
            for block in delta.get("thinking_blocks") or ():
                if isinstance(block, dict):
                    out += self._thinking_block(block)
            text = delta.get("content")
            if isinstance(text, str) and text:
                out += self._output_text(text)
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    out += self._tool_call(call)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return out
