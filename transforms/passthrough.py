"""The untranslated paths: requests forwarded in their own format (preserve routes, native
``llm_format``, the Responses API on OpenAI and Azure, recognised traffic no route matches), and their
answers, passed back as they came with their usage read on the side.

Pure: the caller passes the request, the route and the clock; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from transforms.auth import apply_auth
from transforms.config import Route
from transforms.errors import GatewayError
from transforms.multipart import is_text_type
from transforms.native import read_usage, response_model
from transforms.prepared import (
    _BODY_HEADERS,
    Answer,
    Origin,
    Prepared,
    _encode,
    _resolve_model,
    _resolve_stream,
    _split_origin,
    _upstream_origin,
    forwarded_path,
    signed_call,
)
from transforms.recognize import UNMETERED, Recognized, inspect_route, operation_of, responses_operation
from transforms.redact import client_secrets
from transforms.registry import spec_for
from transforms.types import CallContext, Inbound, ProviderSpec, Upstream, Usage
from transforms.usage import estimate_usage, request_text, response_text, usage_from_openai
from transforms.validation import parse_json_object


def _prepare_passthrough(
    route: Route,
    spec: ProviderSpec,
    inbound: Inbound,
    env: Mapping[str, str],
    credentials: Mapping[str, str],
    now: int,
) -> Prepared:
    body: Any = None
    if inbound.body:
        try:
            body = orjson.loads(inbound.body)
        except orjson.JSONDecodeError:
            body = None  # not JSON: forwarded as is, counted as nothing
    parsed = body if isinstance(body, dict) else {}
    model = parsed.get("model") if isinstance(parsed.get("model"), str) else None
    model = model or route.model.name or _model_from_path(inbound.path) or "UNSPECIFIED"
    auth = apply_auth(route.auth, inbound.headers, dict(inbound.query), parsed, credentials)
    payload = inbound.body
    client_path = forwarded_path(route, inbound.path)
    rewritten = None
    if spec.native_request is not None and route.llm_format != "openai" and isinstance(body, dict):
        rewritten = spec.native_request(client_path, body, route.model.name, route.model.options)
    if rewritten is not None:  # the format served at the provider's own paths (Claude on Vertex)
        client_path, body, model = rewritten
        payload = _encode({**body, **auth.body_params})
    elif auth.body_params and isinstance(body, dict):
        payload = _encode({**body, **auth.body_params})
    upstream_url = route.model.options.upstream_url
    if upstream_url:
        scheme, host, port, path, query = _upstream_origin(route.model.options)
        if not path or path == "/":
            path = client_path
    else:
        scheme, host, port, _, query = _split_origin(spec.base_url(route.model.options, model, env))
        path = client_path
    dropped = {route.auth.param_name} if route.auth.param_name else set()
    query = [*query, *((k, v) for k, v in inbound.query if k not in dropped), *auth.query.items()]
    stream = _native_stream(parsed, inbound.path)
    remove = (*auth.remove_headers, *_BODY_HEADERS[:2])
    upstream = Upstream(
        inbound.method, scheme, host, port, path, query, dict(auth.set_headers), remove, payload
    )
    return signed_call(
        route,
        spec,
        auth,
        upstream,
        env,
        now,
        request_model=model,
        stream=stream,
        passthrough=True,
        ctx=_native_context(route, model, stream, now),
        prompt_text=request_text(parsed),
        native=operation_of(route.llm_format, path) if route.llm_format != "openai" else None,
        binary_request=not is_text_type(inbound.headers.get("content-type", "")),
    )


def _prepare_responses(
    route: Route,
    spec: ProviderSpec,
    inbound: Inbound,
    env: Mapping[str, str],
    credentials: Mapping[str, str],
    now: int,
) -> Prepared:
    """A Responses API call on OpenAI or Azure, forwarded with the route's auth and URL rules. The
    create call has its model enforced (Azure's is the deployment) and its usage read from the
    answer or the ``response.completed`` event; retrieve, delete, cancel and input_items go as they
    came and are not accounted."""
    found = responses_operation(inbound.path)
    if found is None:
        raise GatewayError(
            404, f"{inbound.method} {inbound.path} is not a Responses API path", "unknown_route"
        )
    rest, create = found
    create = create and inbound.method == "POST"
    payload = inbound.body
    body: dict[str, Any] = {}
    stream = False
    model = route.model.name or "UNSPECIFIED"
    if create:
        body = parse_json_object(inbound.body)
        model = _resolve_model(route, body)
        stream = _resolve_stream(route, body)
        opts = route.model.options
        body["model"] = opts.azure_deployment_id if route.provider == "azure" else model
        if opts.max_tokens is not None and body.get("max_output_tokens") is None:
            body["max_output_tokens"] = opts.max_tokens
        for name in ("temperature", "top_p"):
            if getattr(opts, name) is not None and body.get(name) is None:
                body[name] = getattr(opts, name)
    elif inbound.method not in ("GET", "DELETE", "POST"):
        raise GatewayError(405, f"{inbound.method} is not a Responses API method", "method_not_allowed")
    auth = apply_auth(route.auth, inbound.headers, dict(inbound.query), body, credentials)
    if create:
        payload = _encode({**body, **auth.body_params})
    client_query = dict(inbound.query)
    scheme, host, port, path, query = collection_target(
        spec, route, model, "responses", rest.rstrip("/"), env, client_query.get("api-version")
    )
    dropped = {route.auth.param_name, "api-version"} if route.auth.param_name else {"api-version"}
    query = [*query, *((k, v) for k, v in inbound.query if k not in dropped), *auth.query.items()]
    remove = (*auth.remove_headers, *_BODY_HEADERS[:2])
    headers = {**auth.set_headers, **({"accept-encoding": "identity"} if stream else {})}
    upstream = Upstream(inbound.method, scheme, host, port, path, query, headers, remove, payload)
    return signed_call(
        route,
        spec,
        auth,
        upstream,
        env,
        now,
        request_model=model,
        stream=stream,
        passthrough=True,
        ctx=_native_context(route, model, stream, now),
        prompt_text=request_text({"input": body.get("input")}) if create else "",
        native=Recognized(route.provider, "responses" if create else UNMETERED),
        metered=create,
    )


def collection_target(
    spec: ProviderSpec,
    route: Route,
    model: str,
    collection: str,
    rest: str,
    env: Mapping[str, str],
    client_version: str | None,
    deployment_scoped: bool = False,
) -> tuple[str, str, int, str, list[tuple[str, str]]]:
    """Where a call to one of OpenAI's own APIs goes (``collection``: ``responses``, ``files``,
    ``audio/speech``...; ``rest``: what follows it, ``/{id}/cancel``). OpenAI: ``/v1/<collection>``.
    Azure: ``azure_api_version: preview`` gives the v1 path ``/openai/v1/<collection>``; a dated
    version ``/openai/<collection>`` (``/openai/deployments/{deployment}/<collection>`` for the
    ``deployment_scoped`` ones, audio), with the version in ``api-version`` (a client's own wins)."""
    opts = route.model.options
    query: list[tuple[str, str]] = []
    if route.provider == "azure":
        version = opts.azure_api_version or "preview"
        if version == "preview":
            path = f"/openai/v1/{collection}"
        elif deployment_scoped:
            path = f"/openai/deployments/{opts.azure_deployment_id}/{collection}"
        else:
            path = f"/openai/{collection}"
        query.append(("api-version", client_version or version))
    else:
        path = f"/v1/{collection}"
    if opts.upstream_url:
        scheme, host, port, url_path, extra = _upstream_origin(opts)
        if url_path and url_path != "/":  # Kong's rule: a URL with a path names the collection itself
            path = url_path.rstrip("/")
    else:
        scheme, host, port, prefix, extra = _split_origin(spec.base_url(opts, model, env))
        path = prefix.rstrip("/") + path
    return scheme, host, port, path + rest, [*extra, *query]


def _native_context(route: Route, model: str, stream: bool, now: int) -> CallContext:
    # Native streams are read with the provider's own translator, for statistics only.
    options = route.model.options
    return CallContext(route.name, "llm/v1/chat", route.provider, model, options, stream, "native", now)


def _native_stream(parsed: Mapping[str, Any], path: str) -> bool:
    return parsed.get("stream") is True or path.endswith(
        (
            ":streamGenerateContent",
            ":streamRawPredict",
            "/converse-stream",
            "/invoke-with-response-stream",
            "/generate_stream",
        )
    )


def prepare_inspected(found: Recognized, origin: Origin, inbound: Inbound, now: int) -> Prepared:
    """Recognised traffic under the synthetic ``inspect`` route: the request is described (its
    model, whether it streams, the client's own credentials to keep out of records) but never
    changed; ``upstream`` is the client's own request. A body that is not JSON is no reason to fail
    the call: it is noted in ``error``."""
    route = inspect_route(found, origin.host, inbound.query)
    spec = spec_for(route)
    assert spec is not None  # every recognisable format has a spec
    parsed: Any = {}
    error = None
    if inbound.body:
        try:
            parsed = orjson.loads(inbound.body)
        except orjson.JSONDecodeError:
            # File uploads (multipart) are not JSON and need not be: only metered calls must be.
            error = "the request body is not JSON" if found.operation != UNMETERED else None
    if not isinstance(parsed, dict):
        parsed = {}
    asked = parsed.get("model")
    model = (asked if isinstance(asked, str) and asked else None) or found.model or "UNSPECIFIED"
    stream = _native_stream(parsed, inbound.path)
    upstream = Upstream(
        inbound.method,
        origin.scheme,
        origin.host,
        origin.port,
        inbound.path,
        list(inbound.query),
        {},
        (),
        inbound.body,
    )
    return Prepared(
        route=route,
        spec=spec,
        upstream=upstream,
        request_model=model,
        stream=stream,
        passthrough=True,
        ctx=_native_context(route, model, stream, now),
        prompt_text="",
        secrets=client_secrets(inbound.headers, inbound.query),
        native=found,
        inspected=True,
        binary_request=not is_text_type(inbound.headers.get("content-type", "")),
        error=error,
    )


def _model_from_path(path: str) -> str | None:
    # Native Gemini (/models/<m>:<op>) and Bedrock (/model/<m>/<op>) carry the model in the path.
    for marker in ("/models/", "/model/"):
        if marker in path:
            rest = path.split(marker, 1)[1]
            name = rest.split(":", 1)[0] if marker == "/models/" else rest.split("/", 1)[0]
            if name:
                from urllib.parse import unquote

                return unquote(name)
    return None


def _passthrough_answer(prep: Prepared, status: int, raw: bytes) -> Answer:
    usage = None
    model = None
    if 200 <= status < 300 and raw[:1] in (b"{", b"["):
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
        if prep.spec.native_usage is not None and prep.route.llm_format != "openai":
            usage = prep.spec.native_usage(parsed)
        else:
            usage = usage_from_openai(parsed)
        if isinstance(parsed, dict):
            found = parsed.get("model") or parsed.get("modelVersion")
            model = found if isinstance(found, str) else None
            if usage is None:  # an answer without its token counts: estimated (OpenAI-shaped text only)
                usage = estimate_usage(prep.prompt_text, response_text(parsed))
    return Answer(status, raw, usage, model or prep.request_model, False)


def _native_answer(prep: Prepared, status: int, raw: bytes, headers: Mapping[str, str]) -> Answer:
    """Native traffic goes back as it came; its usage is read by the (format, operation) reader."""
    found = prep.native
    assert found is not None
    if not 200 <= status < 300:
        return Answer(status, raw, None, prep.request_model, False)
    if found.operation == UNMETERED:  # billed without token counts in the answer: nothing to read
        return Answer(status, raw, Usage(), prep.request_model, False)
    parsed: Any = None
    error = None
    if raw:
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            error = "the provider's answer is not JSON"
    try:
        usage = read_usage(found.format, found.operation, parsed, headers)
    except Exception as e:  # a reader must never fail a passed-through call
        usage, error = None, f"cannot read usage: {type(e).__name__}"
    return Answer(status, raw, usage, response_model(parsed) or prep.request_model, False, error)
