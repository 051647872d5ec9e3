"""Token accounting: reading usage, estimating it when a provider gives none, and pricing it."""

from __future__ import annotations

import math
from typing import Any

from transforms.config import ModelOptions
from transforms.types import ESTIMATED_MARK, Usage


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def token_count(value: Any) -> int | None:
    """A token count as a provider sent it (some send whole floats); None when it is missing or not a
    number: the caller then estimates the usage, and never records a missing count as 0."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def usage_from_openai(body: Any) -> Usage | None:
    """Usage of an OpenAI-shaped response (chat, completions, embeddings, or a stream chunk); None
    when it has none or lacks a count it should have (embeddings have no completion count)."""
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt = token_count(usage.get("prompt_tokens"))
    completion = token_count(usage.get("completion_tokens"))
    embeddings = body.get("object") == "list"
    if prompt is None or (completion is None and not embeddings):
        return None
    completion = completion or 0
    total = _int(usage.get("total_tokens")) or prompt + completion
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return Usage(
        estimated=usage.get(ESTIMATED_MARK) is True,
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total,
        cached_tokens=_int(prompt_details.get("cached_tokens")) if isinstance(prompt_details, dict) else 0,
        reasoning_tokens=_int(completion_details.get("reasoning_tokens"))
        if isinstance(completion_details, dict)
        else 0,
    )


def estimate_tokens(text: str | int) -> int:
    """A provider-neutral estimate from a text or its length: about four characters per token, as
    OpenAI's guidance says."""
    chars = text if isinstance(text, int) else len(text)
    return math.ceil(chars / 4)


def _text_of(content: Any) -> str:
    """A message's text: a string, or the text of its parts (one level: no recursion into whatever
    nesting an unvalidated passthrough body holds)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = (p.get("text") if isinstance(p, dict) else p for p in content)
        return " ".join(t for t in texts if isinstance(t, str))
    return ""


def request_text(body: Any) -> str:
    """All prompt text of a standard-format request, for estimates."""
    if not isinstance(body, dict):
        return ""
    if isinstance(body.get("messages"), list):
        return " ".join(_text_of(m.get("content")) for m in body["messages"] if isinstance(m, dict))
    for key in ("prompt", "input"):
        if key in body:
            return _text_of(body[key])
    return ""


def response_text(body: Any) -> str:
    """All generated text of an OpenAI-shaped response, for estimates."""
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
        return ""
    parts = []
    for choice in body["choices"]:
        if not isinstance(choice, dict):
            continue
        message = choice.get("message") or {}
        parts.append(_text_of(message.get("content")) if isinstance(message, dict) else "")
        if isinstance(choice.get("text"), str):
            parts.append(choice["text"])
    return "".join(parts)


def estimate_usage(prompt_text: str, completion_text: str | int) -> Usage:
    prompt = estimate_tokens(prompt_text)
    completion = estimate_tokens(completion_text)
    return Usage(prompt, completion, prompt + completion, estimated=True)


class TextTally:
    """The generated text of a stream, for estimates: every character is counted, but only the first
    ``KEPT`` are kept, so memory stays bounded however long the stream runs."""

    KEPT = 1 << 16

    __slots__ = ("_head", "_kept", "chars")

    def __init__(self) -> None:
        self.chars = 0
        self._head: list[str] = []
        self._kept = 0

    def add(self, text: str) -> None:
        self.chars += len(text)
        if self._kept < self.KEPT:
            piece = text[: self.KEPT - self._kept]
            self._head.append(piece)
            self._kept += len(piece)

    def __str__(self) -> str:
        return "".join(self._head)


def cost(usage: Usage, options: ModelOptions) -> float:
    """USD, from per-million-token prices; 0 unless both prices are configured (Kong's rule)."""
    if options.input_cost is None or options.output_cost is None:
        return 0.0
    return (usage.prompt_tokens * options.input_cost + usage.completion_tokens * options.output_cost) / 1e6
