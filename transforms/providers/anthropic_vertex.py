"""Claude on Vertex AI: Anthropic's Messages API served at Vertex's ``publishers/anthropic`` models.

A route of provider ``anthropic`` with Vertex AI options (``model.options.gemini``: api_endpoint,
project_id, location_id) speaks this format (``transforms.registry.spec_key``). Bodies are
Anthropic's, built and read by ``transforms.providers.anthropic`` (sampling rules, thinking and its
signatures included), with Vertex's differences applied: no ``model`` in the body (the URL names
it), ``anthropic_version`` in the body (``vertex-2023-10-16``) rather than a header, and
``:rawPredict`` for a JSON answer or ``:streamRawPredict`` for server-sent events, and images inline
only (Vertex refuses URL sources). Vertex takes a Google OAuth bearer token
(``auth.gcp_use_service_account`` mints one, or a configured header).

Anthropic clients on a native route (``llm_format: anthropic``) reach the same endpoints through
``native_request``: the Messages API's paths are rewritten to the route's Vertex project and
location, and ``AnthropicVertex`` clients' own Vertex paths are re-targeted there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

from transforms.common import image_url_of, vertex_model_path, vertex_origin
from transforms.config import GeminiOptions, ModelOptions
from transforms.errors import GatewayError, bad_request
from transforms.providers import anthropic
from transforms.types import CallContext, ProviderRequest, ProviderSpec, RouteTransform

PROVIDER = "anthropic_vertex"
PUBLISHER = "anthropic"
VERTEX_VERSION = "vertex-2023-10-16"
# Vertex's token counting endpoint: a model named count-tokens, the counted model in the body.
COUNT_TOKENS = "count-tokens"
_VERTEX_CALL = re.compile(r"/publishers/anthropic/models/([^/:]+):(rawPredict|streamRawPredict)$")


def _vertex(options: ModelOptions) -> GeminiOptions:
    vertex = options.gemini
    if vertex is None or not vertex.is_vertex:  # spec_key selects this format only with them
        raise ValueError("Claude on Vertex AI needs model.options.gemini")
    return vertex


def _base_url(options: ModelOptions, model: str, env: Mapping[str, str]) -> str:
    return vertex_origin(_vertex(options))


def version(options: ModelOptions) -> str:
    """The body's ``anthropic_version``: the route's (config checks it is a Vertex one), else Vertex's."""
    return options.anthropic_version or VERTEX_VERSION


def to_vertex(preq: ProviderRequest, ctx: CallContext) -> ProviderRequest:
    """An Anthropic Messages request as Vertex takes it."""
    body = preq.body
    model = body.pop("model", None) or ctx.model
    body["anthropic_version"] = version(ctx.options)
    method = "streamRawPredict" if body.get("stream") else "rawPredict"
    preq.path = vertex_model_path(_vertex(ctx.options), PUBLISHER, model, method)
    preq.headers = {k: v for k, v in preq.headers.items() if k != "anthropic-version"}
    return preq


Builder = Callable[[dict[str, Any], CallContext], ProviderRequest]


def _inline_images_only(body: Mapping[str, Any]) -> None:
    """Vertex refuses Anthropic's URL image sources ("URL sources are not supported"); the gateway
    fetches nothing on a client's behalf, so an image URL is a 400 naming the part."""
    for i, message in enumerate(body.get("messages") or ()):
        content = message.get("content") if isinstance(message, dict) else None
        for j, part in enumerate(content if isinstance(content, list) else ()):
            if isinstance(part, dict) and part.get("type") == "image_url":
                url = image_url_of(part)
                if not url.startswith("data:"):
                    field = f"messages[{i}].content[{j}].image_url"
                    raise GatewayError(
                        400,
                        f"'{field}': Claude on Vertex AI takes images inline only: send a data: URL",
                        "unsupported_parameter",
                        param=field,
                    )


def _on_vertex(build: Builder) -> Builder:
    def build_on_vertex(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
        _inline_images_only(body)
        return to_vertex(build(body, ctx), ctx)

    return build_on_vertex


def native_request(
    path: str, body: dict[str, Any], configured_model: str | None, options: ModelOptions
) -> tuple[str, dict[str, Any], str] | None:
    """An Anthropic client's request for the route's Vertex project: (path, body, model), or None for
    paths forwarded as they came. The route's model, when configured, names the Vertex model (an
    Anthropic API id such as ``claude-sonnet-4-5-20250929`` means nothing to Vertex, which wants
    ``claude-sonnet-4-5@20250929``); else the client's. A body's own ``anthropic_version`` (the
    ``AnthropicVertex`` client sends one) is kept."""
    vertex = _vertex(options)
    asked = body.get("model") if isinstance(body.get("model"), str) else None
    out = {**body}
    out.setdefault("anthropic_version", version(options))
    if path.endswith(("/v1/messages/count_tokens", f"/models/{COUNT_TOKENS}:rawPredict")):
        model = configured_model or asked
        if model:  # Vertex counts for the model the body names
            out["model"] = model
        return vertex_model_path(vertex, PUBLISHER, COUNT_TOKENS, "rawPredict"), out, model or "UNSPECIFIED"
    found = _VERTEX_CALL.search(path)
    if found is not None:
        model = configured_model or unquote(found.group(1))
        return vertex_model_path(vertex, PUBLISHER, model, found.group(2)), out, model
    if path.endswith("/v1/messages"):
        model = configured_model or asked
        if not model:
            raise bad_request(
                "model parameter not found in request, nor in gateway configuration", "model_not_found"
            )
        out.pop("model", None)
        method = "streamRawPredict" if body.get("stream") is True else "rawPredict"
        return vertex_model_path(vertex, PUBLISHER, model, method), out, model
    return None


SPECS = (
    ProviderSpec(
        PROVIDER,
        _base_url,
        {
            "llm/v1/chat": RouteTransform(
                _on_vertex(anthropic.build_chat), anthropic.parse_chat, anthropic.AnthropicStream
            ),
            "llm/v1/completions": RouteTransform(
                _on_vertex(anthropic.build_completions),
                anthropic.parse_completions,
                anthropic.AnthropicStream,
            ),
        },
        anthropic.parse_error,
        native_usage=anthropic.usage_of,
        native_request=native_request,
    ),
)
