"""The realtime route type (``realtime/v1/realtime``): OpenAI's Realtime API over WebSocket, on
openai and azure. The upgrade request gets the route's auth, URL and model; the messages then pass
both ways unchanged (addon/realtime.py watches them), and each server ``response.done`` event's
``response.usage`` is one call's usage.

Pure: the caller passes the request, the route and the clock; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transforms.auth import apply_auth
from transforms.config import REALTIME, Route
from transforms.errors import GatewayError, bad_request
from transforms.prepared import Answer, Prepared, _resolve_model, _target, signed_call
from transforms.types import CallContext, Inbound, ProviderSpec, Upstream, Usage

SERVED = frozenset({"openai", "azure"})
# flow.metadata["ai_proxy"] key naming a realtime upgrade's route and model, for addon/realtime.py.
REALTIME_METADATA = "realtime"
# What the gateway sets in the upstream query itself (a client's own api-version wins on azure).
_SET_BY_GATEWAY = frozenset({"model", "deployment", "api-version"})


def prepare_realtime(
    route: Route,
    spec: ProviderSpec,
    inbound: Inbound,
    env: Mapping[str, str],
    credentials: Mapping[str, str],
    now: int,
    request_id: str,
) -> Prepared:
    if route.provider not in SERVED:
        raise bad_request(f"{route.provider} does not support the {REALTIME} route type", "unsupported_route")
    if inbound.method != "GET" or inbound.headers.get("upgrade", "").lower() != "websocket":
        raise GatewayError(
            400,
            f"{REALTIME} is served over WebSocket only: send a GET with Upgrade: websocket (WebRTC is not "
            "supported)",
            "websocket_required",
        )
    client_query = dict(inbound.query)
    opts = route.model.options
    if route.provider == "azure":
        # The deployment is the model: the route's, whatever ?deployment= or ?model= the client sent.
        deployment = opts.azure_deployment_id or ""
        model = route.model.name or deployment
        version = client_query.get("api-version") or opts.azure_api_version or "preview"
        if version == "preview":  # the v1 API: /openai/v1/realtime?model=<deployment>
            path, query = "/openai/v1/realtime", [("model", deployment)]
        else:
            path, query = "/openai/realtime", [("api-version", version), ("deployment", deployment)]
    else:
        model = _resolve_model(route, {"model": client_query.get("model")})
        path, query = "/v1/realtime", [("model", model)]
    scheme, host, port, path, extra = _target(spec, route, model, path, env)
    auth = apply_auth(route.auth, inbound.headers, client_query, {}, credentials)
    dropped = _SET_BY_GATEWAY | ({route.auth.param_name} if route.auth.param_name else set())
    query = [*extra, *query, *((k, v) for k, v in inbound.query if k not in dropped), *auth.query.items()]
    # The WebSocket handshake headers (and the client's OpenAI-Beta, which picks the beta or the GA
    # protocol the client speaks) go as they came.
    upstream = Upstream(
        "GET", scheme, host, port, path, query, dict(auth.set_headers), tuple(auth.remove_headers), b""
    )
    return signed_call(
        route,
        spec,
        auth,
        upstream,
        env,
        now,
        request_model=model,
        stream=False,
        passthrough=True,
        ctx=CallContext(route.name, REALTIME, route.provider, model, opts, False, request_id, now),
        prompt_text="",
        metered=False,  # the upgrade is no call: each response.done is (addon/realtime.py)
        answer=_upgrade_answer,
        flow_metadata={REALTIME_METADATA: {"route": route.name, "model": model}},
    )


def _upgrade_answer(prep: Prepared, status: int, raw: bytes) -> Answer:
    """The upgrade's answer (101, or the provider's refusal) goes back as it came."""
    return Answer(status, raw, None, prep.request_model, False)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def response_usage(event: Any) -> tuple[Usage, str | None, str | None] | None:
    """A server ``response.done`` event's usage, response id and, for a response that did not
    complete, why; None for any other event or a response without usage."""
    if not isinstance(event, dict) or event.get("type") != "response.done":
        return None
    response = event.get("response")
    usage = response.get("usage") if isinstance(response, dict) else None
    if not isinstance(usage, dict):
        return None
    assert isinstance(response, dict)
    inputs = usage.get("input_token_details")
    outputs = usage.get("output_token_details")
    inputs = inputs if isinstance(inputs, dict) else {}
    outputs = outputs if isinstance(outputs, dict) else {}
    prompt, completion = _count(usage.get("input_tokens")), _count(usage.get("output_tokens"))
    found = Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=_count(usage.get("total_tokens")) or prompt + completion,
        cached_tokens=_count(inputs.get("cached_tokens")),
        prompt_text_tokens=_count(inputs.get("text_tokens")),
        prompt_audio_tokens=_count(inputs.get("audio_tokens")),
        completion_text_tokens=_count(outputs.get("text_tokens")),
        completion_audio_tokens=_count(outputs.get("audio_tokens")),
    )
    status = response.get("status")
    error = None
    if isinstance(status, str) and status != "completed":
        details = response.get("status_details")
        reason = None
        if isinstance(details, dict):
            inner = details.get("error")
            reason = inner.get("message") if isinstance(inner, dict) else details.get("reason")
        error = f"response {status}" + (f": {reason}" if isinstance(reason, str) and reason else "")
    response_id = response.get("id")
    return found, response_id if isinstance(response_id, str) else None, error


def add_usage(total: Usage, more: Usage) -> Usage:
    """The sum of two usages (a session's totals)."""
    return Usage(
        prompt_tokens=total.prompt_tokens + more.prompt_tokens,
        completion_tokens=total.completion_tokens + more.completion_tokens,
        total_tokens=total.total_tokens + more.total_tokens,
        cached_tokens=total.cached_tokens + more.cached_tokens,
        prompt_text_tokens=total.prompt_text_tokens + more.prompt_text_tokens,
        prompt_audio_tokens=total.prompt_audio_tokens + more.prompt_audio_tokens,
        completion_text_tokens=total.completion_text_tokens + more.completion_text_tokens,
        completion_audio_tokens=total.completion_audio_tokens + more.completion_audio_tokens,
    )
