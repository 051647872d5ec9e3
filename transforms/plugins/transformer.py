"""AI Request / Response Transformer, the pure parts: the question put to the transformer's LLM,
and what its answer becomes. The call itself is made by the glue (addon/prompt_plugins.py) with
the same provider transforms as any route.
"""

from __future__ import annotations

from typing import Any

import orjson

from transforms.errors import GatewayError, bad_request

INTROSPECT_FAILED = "failed to introspect request with AI service: "
# Headers an instructed answer may not set: the gateway frames the body itself.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "content-encoding", "connection"})


def introspection_body(prompt: str, content: bytes) -> bytes:
    """Kong's question: the configured prompt as the system message, the body as the user's."""
    return orjson.dumps(
        {
            "messages": [
                {"role": "system", "content": prompt},
                {"role": "user", "content": content.decode("utf-8", "replace")},
            ],
            "stream": False,
        }
    )


def failed_call(reason: str) -> GatewayError:
    return bad_request(INTROSPECT_FAILED + reason, "transformer_failed")


def extracted(block: Any, status: int, answer: bytes) -> str:
    """The text that replaces the body: the LLM's first choice, cut to the first match of
    ``transformation_extract_pattern`` when one is set (Kong's errors, 400)."""
    if not 200 <= status < 300:
        raise failed_call(f"status code {status}")
    try:
        parsed = orjson.loads(answer)
    except orjson.JSONDecodeError:
        parsed = None
    choices = parsed.get("choices") if isinstance(parsed, dict) else None
    first = choices[0] if isinstance(choices, list) and choices else None
    message = first.get("message") if isinstance(first, dict) else None
    text = message.get("content") if isinstance(message, dict) else None
    if not isinstance(text, str) or not text:
        raise bad_request("no 'choices' in upstream AI service response", "transformer_failed")
    pattern = block.compiled_extract
    if pattern is None:
        return text
    found = pattern.search(text)
    if found is None:
        raise bad_request("AI response did not match specified regular expression", "transformer_failed")
    return found.group(0)


def response_instructions(text: str) -> tuple[int, dict[str, str], bytes]:
    """``parse_llm_response_json_instructions``: the LLM's ``{status, headers, body}`` (Kong: a
    missing body means the whole object is the body; a missing status is 200)."""

    def refused(reason: str) -> GatewayError:
        return GatewayError(
            500, f"failed to parse JSON response instructions from AI backend: {reason}", "transformer_failed"
        )

    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise refused(str(e)) from None
    if not isinstance(parsed, dict):
        raise refused("input not table or string")
    status = parsed.get("status", 200)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise refused("'status' must be an HTTP status code")
    headers = parsed.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(v, str | int | float) for v in headers.values()):
        raise refused("'headers' must be an object of header values")
    body = parsed.get("body", parsed)
    raw = body.encode() if isinstance(body, str) else orjson.dumps(body)
    kept = {str(k).lower(): str(v) for k, v in headers.items() if str(k).lower() not in _FRAMING_HEADERS}
    return status, kept, raw
