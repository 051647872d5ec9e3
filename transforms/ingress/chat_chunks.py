"""The walk over a chat completion chunk that every client format's stream writer shares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transforms.types import STOP_SEQUENCE_KEY, WEB_SEARCH_KEY


class ChatChunkWriter:
    """Reads each choice's delta (reasoning, text, tool calls, citations, the provider's web
    searches) and finish reason (with the stop sequence that ended the text, where the provider
    said) from one chat chunk and hands the pieces to the subclass, which writes them in its
    client's events."""

    _finish: str | None
    _stop_sequence: str | None = None

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

    def _citations(self, annotations: list[Mapping[str, Any]]) -> list[bytes]:
        return []  # a client format without citations

    def _web_search(self, search: Mapping[str, Any]) -> list[bytes]:
        return []  # a client format that shows no provider searches

    def keepalive(self) -> list[bytes]:
        return []  # a client format without a keep-alive frame

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
            for search in delta.get(WEB_SEARCH_KEY) or ():
                if isinstance(search, dict):
                    out += self._web_search(search)
            annotations = delta.get("annotations")
            if isinstance(annotations, list) and annotations:
                out += self._citations([a for a in annotations if isinstance(a, dict)])
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
                stop = choice.get(STOP_SEQUENCE_KEY)
                self._stop_sequence = stop if isinstance(stop, str) else None
        return out
