"""``GET <prefix>/v1/models`` and ``GET <prefix>/v1/models/{id}``: which models a client sees.

Clients that discover models first (Open WebUI, LibreChat, the ``llm`` CLI, IDE plugins) ask their
base URL's ``/models``. The gateway answers from its routes, in OpenAI's list shape:

- Listed: the OpenAI-format routes (``llm/v1/*`` route types, ``llm_format: openai``) a client with
  the base URL ``<prefix>/v1`` can reach: an exact ``match.path`` under ``<prefix>/v1/``, a ``/*``
  prefix that covers it or lies under it, or no path at all; a ``match.host`` must be the host asked.
- Each route contributes its ``model.name`` once (the first route naming a model wins), with
  ``owned_by`` = its provider (``anthropic``, ``bedrock``...); a route with targets, its targets'
  ``model_alias`` names, or without aliases their ``model.name``s. A route without ``model.name``
  accepts whatever model the client names, so it contributes nothing: there is no honest id to list.
- ``created`` is when the routes were loaded (the gateway does not know the models' own dates).
- Not answered here: other methods, base URLs no OpenAI-format route lies under (a program's own
  ``api.openai.com/v1/models`` call through the proxy reaches OpenAI), and paths whose first matching
  route passes traffic to a provider untouched (``preserve`` or a native ``llm_format``): that
  provider's own list answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson

from transforms.config import GatewayConfig, Route
from transforms.errors import GatewayError

MODELS = "/v1/models"


@dataclass(frozen=True, slots=True)
class ModelsQuery:
    prefix: str  # the client's base URL path without /v1 ("" or "/anthropic")
    model_id: str | None  # None: the list


def parse_models_path(method: str, path: str) -> ModelsQuery | None:
    """A models request (path without its query), or None for any other request."""
    if method != "GET":
        return None
    at = path.find(MODELS)
    if at == -1:
        return None
    prefix, rest = path[:at], path[at + len(MODELS) :]
    if rest in ("", "/"):
        return ModelsQuery(prefix, None)
    if rest.startswith("/") and len(rest) > 1:
        return ModelsQuery(prefix, unquote(rest[1:]))  # ids may hold "/" (encoded or not)
    return None


def _reachable(route: Route, host: str, base: str) -> bool:
    """Whether some request under ``base`` (``<prefix>/v1/``) reaches this route."""
    if route.match.host is not None and host.lower() != route.match.host:
        return False
    pattern = route.match.path
    if pattern is None:
        return True
    if pattern.endswith("/*"):
        covered = pattern[:-1]
        return covered.startswith(base) or base.startswith(covered)
    return pattern.startswith(base)


def _serving(config: GatewayConfig, host: str, prefix: str) -> list[Route]:
    """The OpenAI-format routes a client with base URL ``<prefix>/v1`` can reach, in route order."""
    base = prefix + "/v1/"
    return [
        route
        for route in config.routes
        if route.route_type != "preserve" and route.llm_format == "openai" and _reachable(route, host, base)
    ]


def list_models(config: GatewayConfig, host: str, prefix: str, created: int) -> list[dict[str, Any]]:
    """The models a client with base URL ``<prefix>/v1`` can call, in route order."""
    seen: dict[str, dict[str, Any]] = {}
    for route in _serving(config, host, prefix):
        for name, provider in _offered(route):
            if name not in seen:
                seen[name] = {"id": name, "object": "model", "created": created, "owned_by": provider}
    return list(seen.values())


def _offered(route: Route) -> list[tuple[str, str]]:
    """(model id, provider) a route lists: its model.name; on a route with targets, their aliases
    (the names a client picks a target by), or without aliases the targets' names (the balancer
    picks: any of them reaches the route)."""
    if route.targets is None:
        return [(route.model.name, route.provider)] if route.model.name else []
    aliased = [(t.model.model_alias, t.model.provider) for t in route.targets if t.model.model_alias]
    if aliased:
        return aliased
    return [(t.model.name, t.model.provider) for t in route.targets if t.model.name]


def models_answer(
    config: GatewayConfig, method: str, host: str, path: str, created: int
) -> tuple[int, bytes] | None:
    """(status, JSON body) for a models request the gateway answers, or None to leave the request
    to the routes."""
    query = parse_models_path(method, path)
    if query is None:
        return None
    route = config.find(host, path)
    if route is not None and (route.route_type == "preserve" or route.llm_format != "openai"):
        return None  # the provider behind a passthrough route answers for itself
    if not _serving(config, host, query.prefix):
        return None  # no route of ours under this base URL: not the gateway's question (inspected traffic)
    models = list_models(config, host, query.prefix, created)
    if query.model_id is None:
        return 200, orjson.dumps({"object": "list", "data": models})
    found = next((m for m in models if m["id"] == query.model_id), None)
    if found is None:
        error = GatewayError(
            404, f"The model '{query.model_id}' does not exist", "model_not_found", param="model"
        )
        return 404, error.body()
    return 200, orjson.dumps(found)
