"""AI Prompt Decorator: configured messages before and after the client's chat."""

from __future__ import annotations

from typing import Any

from transforms.errors import bad_request


def apply(block: Any, body: dict[str, Any]) -> dict[str, Any]:
    """``block`` is a route's ``prompt_decorator``; the client's body is not changed in place."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("this LLM route only supports llm/chat type requests")
    prompts = block.prompts
    before = [{"role": p.role, "content": p.content} for p in prompts.prepend]
    after = [{"role": p.role, "content": p.content} for p in prompts.append]
    return {**body, "messages": [*before, *messages, *after]}
