"""Token accounting: reading usage, estimating it when a provider gives none, and pricing it."""

from __future__ import annotations

import math
from typing import Any

from transforms.config import ModelOptions
from transforms.types import ESTIMATED_MARK, Usage


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def usage_from_openai(body: Any) -> Usage | None:
    """Usage of an OpenAI-shaped response (chat, completions, embeddings, or a stream chunk)."""
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt = _int(usage.get("prompt_tokens"))
    completion = _int(usage.get("completion_tokens"))
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


def estimate_tokens(text: str) -> int:
    """A provider-neutral estimate: about four characters per token, as OpenAI's guidance says."""
    return math.ceil(len(text) / 4) if text else 0


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_text_of(p.get("text") if isinstance(p, dict) else p) for p in content)
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


def estimate_usage(prompt_text: str, completion_text: str) -> Usage:
    prompt = estimate_tokens(prompt_text)
    completion = estimate_tokens(completion_text)
    return Usage(prompt, completion, prompt + completion, estimated=True)


def cost(usage: Usage, options: ModelOptions) -> float:
    """USD, from per-million-token prices; 0 unless both prices are configured (Kong's rule)."""
    if options.input_cost is None or options.output_cost is None:
        return 0.0
    return (usage.prompt_tokens * options.input_cost + usage.completion_tokens * options.output_cost) / 1e6
