"""Checks that a standard-format (OpenAI-shaped) request is well formed, before any translation."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import orjson
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match

from transforms.errors import GatewayError, bad_request
from transforms.schema_check import Check, compile_schema

_SCHEMA_FILES = {
    "llm/v1/chat": "chat.json",
    "llm/v1/completions": "completions.json",
    "llm/v1/embeddings": "embeddings.json",
}


@cache
def schema_for(route_type: str) -> dict[str, Any]:
    text = resources.files("transforms.schemas").joinpath(_SCHEMA_FILES[route_type]).read_bytes()
    return orjson.loads(text)


@cache
def validator_for(route_type: str) -> Draft202012Validator:
    """The reference validator; it explains what is wrong.

    Its ``items`` keyword reports only an array's first invalid item, found with the fast check:
    jsonschema collects every error of every ``anyOf`` branch, which for 30,000 bad content parts
    takes seconds; this way explaining costs the fast check's time plus one item's explanation."""
    root = schema_for(route_type)
    checks = _items_checks(root)

    def first_invalid_item(validator: Any, items: Any, instance: Any, schema: Any) -> Any:
        if not validator.is_type(instance, "array"):
            return
        check = checks[id(items)]
        for index, item in enumerate(instance):
            if not check(item):
                yield from validator.descend(item, items, path=index)
                return

    return validators.extend(Draft202012Validator, {"items": first_invalid_item})(root)


def _items_checks(root: dict[str, Any]) -> dict[int, Check]:
    """A fast check for every ``items`` subschema of a schema, by identity (the schema is loaded once
    and never changes)."""
    found: dict[int, Check] = {}
    pending: list[Any] = [root]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if isinstance(node.get("items"), dict):
                found[id(node["items"])] = compile_schema(node["items"], root)
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found


@cache
def fast_check_for(route_type: str) -> Check:
    """Compiled once per process: the per-request yes/no answer."""
    return compile_schema(schema_for(route_type))


def parse_json_object(raw: bytes) -> dict[str, Any]:
    if not raw or raw.isspace():  # not raw.strip(): that copies the whole body
        raise bad_request("request body is empty; expected a JSON object", "invalid_body")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise bad_request(f"request body is not valid JSON: {e}", "invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object", "invalid_body")
    return body


def check_prompt_shape(route_type: str, body: dict[str, Any]) -> None:
    """Kong's format checks, with Kong's messages, before the detailed schema check."""
    has_messages = "messages" in body
    has_prompt = "prompt" in body
    if route_type == "llm/v1/embeddings":
        if has_messages or has_prompt:
            kind = "llm/v1/chat" if has_messages else "llm/v1/completions"
            raise bad_request(
                f"[{kind}] message format is not compatible with [llm/v1/embeddings] route type",
                "incompatible_format",
            )
        if "input" not in body:
            raise bad_request("request body doesn't contain valid input", "invalid_input")
        return
    if has_messages and has_prompt:
        raise bad_request("request matches multiple LLM request formats", "incompatible_format")
    if not has_messages and not has_prompt:
        raise bad_request("request body doesn't contain valid prompts", "invalid_prompts")
    kind = "llm/v1/chat" if has_messages else "llm/v1/completions"
    if kind != route_type:
        raise bad_request(
            f"[{kind}] message format is not compatible with [{route_type}] route type",
            "incompatible_format",
        )


def _where(error: ValidationError) -> str:
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def validate(route_type: str, body: dict[str, Any]) -> None:
    if fast_check_for(route_type)(body):
        return
    error = best_match(validator_for(route_type).iter_errors(body))
    if error is not None:
        raise GatewayError(
            400, f"invalid request: '{_where(error)}': {error.message}", "invalid_request_body"
        )
