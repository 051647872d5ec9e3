"""AI Prompt Guard: allow and deny patterns over the prompt, before anything goes upstream.

As Kong's code: the user messages are checked (every role with ``match_all_roles``), newest first,
joined by spaces; ``allow_all_conversation_history`` lets the history through unchecked, so only
the newest such message is. Any refusal is Kong's deliberately vague 400 "bad request".
"""

from __future__ import annotations

from typing import Any

from transforms.errors import bad_request

REFUSAL = "bad request"  # Kong's: a client is not told that a guard is in use


class _Unreadable(Exception):
    """A prompt whose text the guard cannot read: refused like a match."""


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: every text part is checked
        texts = []
        for part in content:
            if not isinstance(part, dict):
                raise _Unreadable
            if part.get("type") == "text":
                if not isinstance(part.get("text"), str):
                    raise _Unreadable
                texts.append(part["text"])
        return " ".join(texts)
    raise _Unreadable


def checked_text(block: Any, body: dict[str, Any]) -> str:
    """The text the patterns run on (``_Unreadable`` when the request has none it can read)."""
    messages = body.get("messages")
    if isinstance(messages, list):
        texts = []
        for message in reversed(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if not isinstance(role, str):
                raise _Unreadable
            if role == "user" or block.match_all_roles:
                texts.append(_text(message.get("content")))
                if block.allow_all_conversation_history:
                    break
        return " ".join(texts)
    if isinstance(body.get("prompt"), str):
        return body["prompt"]
    raise _Unreadable


def allows(block: Any, body: dict[str, Any]) -> bool:
    try:
        text = checked_text(block, body)
    except _Unreadable:
        return False
    if any(p.search(text) for p in block.compiled_deny):
        return False
    return not block.compiled_allow or any(p.search(text) for p in block.compiled_allow)


def apply(block: Any, body: dict[str, Any]) -> None:
    """``block`` is a route's ``prompt_guard``; raises the 400 when the prompt is refused."""
    if not allows(block, body):
        raise bad_request(REFUSAL, "bad_request")
