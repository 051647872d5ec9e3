"""What the pipeline's request paths produce and share: the prepared request (``Prepared``), the
client's answer (``Answer``), where inspected traffic goes (``Origin``), and the small helpers both the
translated paths (``transforms.pipeline``) and the untranslated ones (``transforms.passthrough``) use.

Pure: nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from transforms.auth import AuthResult
from transforms.config import ModelOptions, Route, split_origin
from transforms.errors import GatewayError, bad_request
from transforms.ingress import Ingress
from transforms.masking import NO_MASK, CredentialMask, attached_credentials
from transforms.recognize import Recognized
from transforms.types import CallContext, ProviderSpec, Upstream, Usage

# Hop-by-hop or length headers that must not survive a body rewrite.
_BODY_HEADERS = ("content-length", "content-encoding", "transfer-encoding")


@dataclass(slots=True)
class Prepared:
    """A request ready to go upstream, and what is needed to translate its answer."""

    route: Route
    spec: ProviderSpec
    upstream: Upstream
    request_model: str
    stream: bool
    passthrough: bool  # preserve or native llm_format: bodies are not translated
    ctx: CallContext | None
    prompt_text: str
    secrets: tuple[str, ...]
    # The client asked for base64 embeddings; providers other than OpenAI answer with floats.
    embeddings_base64: bool = False
    # The credentials this request carries on the user's behalf, to mask once it has gone upstream.
    mask: CredentialMask = NO_MASK
    # Native traffic: the (wire format, operation) its usage is read by (transforms.native).
    native: Recognized | None = None
    # Recognised traffic no route matched: accounted for, never changed (no upstream rewrite).
    inspected: bool = False
    error: str | None = None  # why the request could not be read (recorded; the call still goes out)
    # Model rules applied to this request (rule -> text), for the event log: see ProviderRequest.notes.
    notes: Mapping[str, str] = field(default_factory=dict)
    # The client's format when it is not OpenAI chat (transforms/ingress): its answers are written back.
    ingress: Ingress | None = None
    # The client asked for a token count (ingress COUNT) that the provider's counting API answers.
    counts_tokens: bool = False
    # False for calls that are no LLM call to account for (a Responses retrieve, delete, cancel or
    # input_items list, forwarded as is): no statistics record.
    metered: bool = True
    # Route types whose answers are not chat-shaped (images): the client's answer is made by this
    # instead of the chat path of ``translate_response``.
    answer: Callable[[Prepared, int, bytes], Answer] | None = None
    # Plain JSON-able facts the gateway puts in flow.metadata["ai_proxy"] for the addons that act
    # on the flow later (a realtime session's route and model: addon/realtime.py).
    flow_metadata: Mapping[str, Any] = field(default_factory=dict)
    # Recorded only when the answer reports usage (audio: seed 002 gives it no statistics otherwise).
    usage_only: bool = False
    # Bodies that are not text (multipart uploads, audio, file contents): never decoded, logged as
    # payload or recorded; a binary answer streams as it arrives, its bytes and length untouched.
    binary_request: bool = False
    binary_response: bool = False


@dataclass(slots=True)
class Origin:
    """Where the client's own request goes."""

    scheme: str
    host: str
    port: int


@dataclass(slots=True)
class Answer:
    status: int
    body: bytes
    usage: Usage | None
    response_model: str | None
    translated: bool  # False when the body is an error or passed through
    error: str | None = None  # a passed-through answer whose usage could not be read


def _encode(body: Any) -> bytes:
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError as e:
        raise _too_deep(e) from None


def _too_deep(error: orjson.JSONEncodeError) -> GatewayError:
    """orjson reads 1024 levels of nesting but writes only 255: deeper client JSON is a 400, not a
    500."""
    return bad_request(f"request body cannot be re-encoded: {error} (JSON nested too deeply)", "invalid_body")


def _sign(spec: ProviderSpec, route: Route, upstream: Upstream, env: Mapping[str, str], now: int) -> None:
    """Signatures (AWS SigV4) cover the final request, so they come last."""
    if spec.sign is not None:
        spec.sign(upstream, route.auth, env, now, route.model.options)


def signed_call(
    route: Route,
    spec: ProviderSpec,
    auth: AuthResult,
    upstream: Upstream,
    env: Mapping[str, str],
    now: int,
    **fields: Any,
) -> Prepared:
    """A prepared call as every path makes it: the request signed where the provider wants it, the
    route's secrets and the credentials the call carries (for masking stored flows) attached."""
    _sign(spec, route, upstream, env, now)
    return Prepared(
        route=route,
        spec=spec,
        upstream=upstream,
        secrets=route.auth.secrets(),
        mask=attached_credentials(route.name, auth, upstream),
        **fields,
    )


def _resolve_model(route: Route, body: dict[str, Any]) -> str:
    configured = route.model.name
    asked = body.get("model")
    if configured:
        if isinstance(asked, str) and asked and asked != configured and not route.replaces_model:
            raise bad_request(f"cannot use own model - must be: {configured}", "model_not_allowed")
        return configured
    if isinstance(asked, str) and asked:
        return asked
    raise bad_request("model parameter not found in request, nor in gateway configuration", "model_not_found")


def _resolve_stream(route: Route, body: dict[str, Any]) -> bool:
    if route.route_type == "llm/v1/embeddings":
        return False
    asked = body.get("stream") is True
    if asked and route.response_streaming == "deny":
        raise bad_request("response streaming is not enabled for this LLM", "streaming_disabled")
    if route.response_streaming == "always":
        body["stream"] = True
        return True
    return asked


def _split_origin(url: str) -> tuple[str, str, int, str, list[tuple[str, str]]]:
    scheme, host, port, path, query = split_origin(url)
    return scheme, host, port, path, list(query)


def _upstream_origin(opts: ModelOptions) -> tuple[str, str, int, str, list[tuple[str, str]]]:
    """The route's ``upstream_url`` (set), split when the config was loaded."""
    origin = opts.upstream_origin
    assert origin is not None
    scheme, host, port, path, query = origin
    return scheme, host, port, path, list(query)


def forwarded_path(route: Route, path: str) -> str:
    """The client path for passthrough routes, without the prefix its route matched on."""
    pattern = route.match.path
    if pattern and pattern.endswith("/*"):
        rest = path[len(pattern) - 2 :]
        return rest if rest.startswith("/") else "/" + rest
    return path


def _target(
    spec: ProviderSpec, route: Route, model: str, provider_path: str, env: Mapping[str, str]
) -> tuple[str, str, int, str, list[tuple[str, str]]]:
    """Kong's rule: an upstream_url with a path is used as is; without one, the standard path is
    appended to it; with no upstream_url, the provider's own base URL is used."""
    upstream_url = route.model.options.upstream_url
    if upstream_url:
        scheme, host, port, path, query = _upstream_origin(route.model.options)
        if path and path != "/":
            return scheme, host, port, path, query
        return scheme, host, port, provider_path, query
    scheme, host, port, prefix, query = _split_origin(spec.base_url(route.model.options, model, env))
    return scheme, host, port, prefix.rstrip("/") + provider_path, query
