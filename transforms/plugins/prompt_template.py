"""AI Prompt Template: a request that names ``{template://NAME}`` is replaced by that template.

A template is the JSON text of the request body it produces, with ``{{placeholder}}`` slots filled
from the request's ``properties``. Each value goes in JSON-escaped, and the config load checks
that every slot lies inside a JSON string, so no property can add or close structure.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from transforms.errors import bad_request

# Kong's slot syntax: letters, digits and underscores between double braces.
_SLOT = re.compile(r"\{\{([A-Za-z0-9_]+)\}\}")
_REFERENCE_HEAD, _REFERENCE_TAIL = "{template://", "}"
_JSON_TYPES = {bool: "boolean", int: "number", float: "number", dict: "object", list: "array"}

# A parsed template: literal text and slot names alternate, starting and ending with text.
Parts = tuple[str, ...]


def parse_template(name: str, text: str) -> Parts:
    """The template split at its slots, checked once at load: filled with any values it must be a
    JSON object, so every slot has to sit inside a JSON string."""
    parts = tuple(_SLOT.split(text))
    probe = "".join(part if i % 2 == 0 else "x" for i, part in enumerate(parts))
    try:
        body = orjson.loads(probe)
    except orjson.JSONDecodeError as e:
        raise ValueError(
            f"template '{name}' must be the JSON text of a request body with every {{{{placeholder}}}} "
            f"inside a JSON string: {e}"
        ) from None
    if not isinstance(body, dict):
        raise ValueError(f"template '{name}' must be the JSON text of a request body (a JSON object)")
    return parts


def template_name(reference: Any) -> str | None:
    """NAME when ``reference`` is ``{template://NAME}``, else None."""
    if isinstance(reference, str) and reference.startswith(_REFERENCE_HEAD) and reference.endswith("}"):
        return reference[len(_REFERENCE_HEAD) : -len(_REFERENCE_TAIL)]
    return None


def render(parts: Parts, properties: Any) -> dict[str, Any]:
    """The body a template produces with these properties (Kong's errors, 400)."""
    if not isinstance(properties, dict):
        raise bad_request("properties must be an object")
    escaped: dict[str, str] = {}
    for value in properties.values():
        if not isinstance(value, str):
            kind = "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)
            raise bad_request(f"property values must be a string, got {kind}")
    missing = []
    for slot in parts[1::2]:
        if slot in escaped or slot in missing:
            continue
        if slot not in properties:
            missing.append(slot)
            continue
        try:
            escaped[slot] = orjson.dumps(properties[slot]).decode()[1:-1]  # without the quotes
        except orjson.JSONEncodeError:
            raise bad_request(f"property '{slot}' is not valid text") from None
    if missing:
        raise bad_request("missing template parameters: " + ", ".join(f"[{m}]" for m in missing))
    text = "".join(part if i % 2 == 0 else escaped[part] for i, part in enumerate(parts))
    return orjson.loads(text)  # valid by construction: checked at load, values escaped


def apply(block: Any, body: dict[str, Any]) -> dict[str, Any] | None:
    """``block`` is a route's ``prompt_template``. The templated body, or None when the request
    names no template and untemplated requests are allowed."""
    messages, prompt = body.get("messages"), body.get("prompt")
    if messages is not None and prompt is not None:
        raise bad_request("cannot run 'messages' and 'prompt' templates at the same time")
    reference = messages if messages is not None else prompt
    if reference is None:
        raise bad_request("only 'llm/v1/chat' and 'llm/v1/completions' formats are supported for templating")
    name = template_name(reference)
    if name is None:
        if block.allow_untemplated_requests:
            return None
        raise bad_request("this LLM route only supports templated requests")
    parts = block.parsed(name)
    if parts is None:
        raise bad_request(f"could not find template name [{name}]")
    return render(parts, body.get("properties", {}))
