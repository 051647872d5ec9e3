"""The AI plugins of a route that work on the client's request before the provider call, in Kong's
order: template, decorator, guard. (The request transformer comes next, in the glue: it calls an
LLM.) Pure: a request body in, the body to send on out, or a GatewayError with Kong's message.
"""

from __future__ import annotations

from typing import Any

import orjson

from transforms.errors import bad_request
from transforms.plugins import prompt_decorator, prompt_guard, prompt_template

# The names statistics list in meta.plugins, in the order they act.
PROMPT_TEMPLATE = "prompt_template"
PROMPT_DECORATOR = "prompt_decorator"
PROMPT_GUARD = "prompt_guard"
REQUEST_TRANSFORMER = "request_transformer"
RESPONSE_TRANSFORMER = "response_transformer"


def apply_request_plugins(route: Any, raw: bytes) -> tuple[bytes, list[str]]:
    """The body after the route's template, decorator and guard, and the plugins that acted. The
    client's bytes come back unchanged when no plugin rewrote them."""
    if route.prompt_template is None and route.prompt_decorator is None and route.prompt_guard is None:
        return raw, []
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        raise bad_request("this LLM route only supports application/json requests", "invalid_body")
    acted: list[str] = []
    changed = False
    if route.prompt_template is not None:
        templated = prompt_template.apply(route.prompt_template, body)
        if templated is not None:
            body, changed = templated, True
            acted.append(PROMPT_TEMPLATE)
        elif "properties" in body:  # template properties never go upstream
            body = {k: v for k, v in body.items() if k != "properties"}
            changed = True
    if route.prompt_decorator is not None:
        body, changed = prompt_decorator.apply(route.prompt_decorator, body), True
        acted.append(PROMPT_DECORATOR)
    if route.prompt_guard is not None:
        prompt_guard.apply(route.prompt_guard, body)
        acted.append(PROMPT_GUARD)
    return (orjson.dumps(body) if changed else raw), acted
