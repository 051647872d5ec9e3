"""From a client's standard-format request to the provider call, and from the provider's answer back.

Pure: the caller passes the request, the route, an id and the clock; nothing here does I/O. The
untranslated paths (preserve, native, Responses API, inspected traffic) are in ``transforms.passthrough``;
the shared ``Prepared``, ``Answer`` and ``Origin`` in ``transforms.prepared`` (both re-exported here).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from transforms.api_route_types import OPENAI_API_ROUTE_TYPES
from transforms.auth import apply_auth
from transforms.config import REALTIME, ModelOptions, Route
from transforms.errors import GatewayError, bad_request, body_too_large, error_body, error_type_for
from transforms.image_fields import IMAGE_EDITS, IMAGE_GENERATIONS
from transforms.images import prepare_images
from transforms.ingress import COUNT, CREATE, RESPONSES, Ingress, ingress_for, provider_counts
from transforms.openai_apis import prepare_openai_api
from transforms.passthrough import (
    _native_answer,
    _passthrough_answer,
    _prepare_passthrough,
    _prepare_responses,
    prepare_inspected,
)
from transforms.prepared import (
    _BODY_HEADERS,
    Answer,
    Origin,
    Prepared,
    _encode,
    _resolve_model,
    _resolve_stream,
    _target,
    _too_deep,
    forwarded_path,
    signed_call,
)
from transforms.realtime import prepare_realtime
from transforms.redact import redact_text
from transforms.registry import spec_for
from transforms.types import (
    ESTIMATED_MARK,
    TOOL_ERROR_MARK,
    TOOL_ERROR_TEXT,
    CallContext,
    ErrorInfo,
    Inbound,
    ProviderRequest,
    ProviderSpec,
    Upstream,
    Usage,
)
from transforms.usage import estimate_usage, request_text, response_text, usage_from_openai
from transforms.validation import check_prompt_shape, parse_json_object, validate

__all__ = [
    "Answer",
    "Origin",
    "Prepared",
    "encode_embeddings",
    "forwarded_path",
    "generic_error",
    "normalize",
    "prepare",
    "prepare_inspected",
    "translate_error",
    "translate_response",
]

_RESPONSE_OBJECTS = {
    "llm/v1/chat": ("chat.completion", "chatcmpl-"),
    "llm/v1/completions": ("text_completion", "cmpl-"),
    "llm/v1/embeddings": ("list", None),
}
# Route types served by their own request path: (route, spec, inbound, env, credentials, now,
# request id) -> Prepared.
_OWN_PATHS: Mapping[str, Callable[..., Prepared]] = {
    IMAGE_GENERATIONS: prepare_images,
    IMAGE_EDITS: prepare_images,
    REALTIME: prepare_realtime,
    **dict.fromkeys(OPENAI_API_ROUTE_TYPES, prepare_openai_api),  # files, batches, assistants, audio
}
# Headers of a client format that mean nothing to the provider its request is translated for.
_CLIENT_FORMAT_HEADERS = ("anthropic-version", "anthropic-beta")


# --- request -------------------------------------------------------------------------------------


def prepare(
    route: Route,
    inbound: Inbound,
    *,
    request_id: str,
    now: int,
    env: Mapping[str, str] | None = None,
    credentials: Mapping[str, str] | None = None,
) -> Prepared:
    """``env`` is the process environment (AWS region and keys); ``credentials`` holds tokens the
    glue obtained for this call (``gcp_access_token``)."""
    env = env or {}
    credentials = credentials or {}
    limit = route.max_request_body_size
    if limit and len(inbound.body) > limit:
        raise body_too_large(limit, len(inbound.body))
    spec = spec_for(route)
    if spec is None:
        raise bad_request(f"no transformer for {route.provider}://{route.route_type}", "unsupported_provider")
    own_path = _OWN_PATHS.get(route.route_type)
    if own_path is not None:  # route types that are no chat call (images, realtime, OpenAI's own APIs)
        return own_path(route, spec, inbound, env, credentials, now, request_id)
    ingress = ingress_for(route)
    if route.route_type == "preserve" or (route.llm_format != "openai" and ingress is None):
        return _prepare_passthrough(route, spec, inbound, env, credentials, now)
    if route.route_type == RESPONSES and ingress is None:  # OpenAI and Azure serve it themselves
        return _prepare_responses(route, spec, inbound, env, credentials, now)

    ignored: dict[str, str] = {}
    counts_tokens = False
    client: dict[str, Any] = {}
    if ingress is not None:
        body, ignored, counts_tokens, client = _client_to_chat(ingress, route, spec, inbound)
        if not spec.tool_error_flag:
            _tool_errors_as_text(body)
    else:
        body = parse_json_object(inbound.body)
    # Client formats are translated to the chat form, and the provider is called as on a chat route.
    route_type = "llm/v1/chat" if ingress is not None else route.route_type
    check_prompt_shape(route_type, body)
    validate(route_type, body)
    model = _resolve_model(route, body)
    stream = False if counts_tokens else _resolve_stream(route, body)
    transform = spec.routes.get(route_type)
    if transform is None:
        raise bad_request(
            f"{route.provider} does not support the {route_type} route type", "unsupported_route"
        )
    _apply_defaults(route_type, body, route.model.options)
    stream_options = body.get("stream_options")
    ctx = CallContext(
        route_name=route.name,
        route_type=route_type,
        provider=route.provider,
        model=model,
        options=route.model.options,
        stream=stream,
        request_id=request_id,
        created=now,
        client_query=tuple(inbound.query),
        include_usage=isinstance(stream_options, dict) and stream_options.get("include_usage") is True,
        prompt_text=request_text(body),
        client=client,
        extensions=ingress is not None,
    )
    auth = apply_auth(route.auth, inbound.headers, dict(inbound.query), body, credentials)
    build = transform.build_request
    if counts_tokens and spec.count_tokens is not None:
        build = spec.count_tokens.build_request
    try:
        preq = _build_request(build, body, ctx, ingress)
    except orjson.JSONEncodeError as e:  # a client value a provider wants as JSON text
        raise _too_deep(e) from None
    if auth.body_params:
        if not isinstance(preq.body, dict):
            raise bad_request(f"{route.provider} requests cannot carry a body auth parameter")
        preq.body.update(auth.body_params)
    scheme, host, port, path, query = _target(spec, route, model, preq.path, env)
    query.extend(preq.query)
    query.extend(auth.query.items())
    headers = {"content-type": "application/json", **preq.headers, **auth.set_headers}
    if stream:
        headers["accept-encoding"] = "identity"  # chunks must arrive as the provider wrote them
    payload = preq.body if isinstance(preq.body, bytes) else _encode(preq.body)
    remove = (*auth.remove_headers, *_BODY_HEADERS, *(_CLIENT_FORMAT_HEADERS if ingress else ()))
    upstream = Upstream(preq.method, scheme, host, port, path, query, headers, remove, payload)
    return signed_call(
        route,
        spec,
        auth,
        upstream,
        env,
        now,
        request_model=model,
        stream=stream,
        passthrough=False,
        ctx=ctx,
        prompt_text=ctx.prompt_text,
        embeddings_base64=route_type == "llm/v1/embeddings" and body.get("encoding_format") == "base64",
        notes={**preq.notes, **ignored},
        ingress=ingress,
        counts_tokens=counts_tokens,
    )


def _client_to_chat(
    ingress: Ingress, route: Route, spec: ProviderSpec, inbound: Inbound
) -> tuple[dict[str, Any], dict[str, str], bool, dict[str, Any]]:
    """The client's request in the chat form, on the paths that go to the provider (its format's
    create call, and its token count where the provider counts), a note naming the fields it sent
    that the chat form cannot carry (for the event log), whether it is a token count, and what its
    answer repeats of it."""
    operation = ingress.operation(inbound.path) if inbound.method == "POST" else None
    counts_tokens = operation == COUNT and provider_counts(route, ingress)
    if operation != CREATE and not counts_tokens:
        where = next(suffix for suffix, operation in ingress.operations.items() if operation == CREATE)
        raise GatewayError(
            404, f"{inbound.method} {inbound.path} is not served: {ingress.name} clients POST to ...{where}"
        )
    body = parse_json_object(inbound.body)
    ignored = sorted(name for name in body if name in ingress.ignored_fields)
    note = f"{ingress.name} clients' {', '.join(ignored)} ignored: no counterpart in the chat form"
    try:
        chat = ingress.to_chat(body, route.provider, spec.builtin_tools)
    except orjson.JSONEncodeError as e:  # tool inputs become JSON text: nested past what orjson writes
        raise _too_deep(e) from None
    if counts_tokens:
        chat.pop("stream", None)  # a count is one JSON answer, whatever the client's body says
    notes = {f"ingress-ignored-{'-'.join(ignored)}": note} if ignored else {}
    if ingress.notes is not None:
        notes.update(ingress.notes(body, route.provider, spec.builtin_tools))
    return chat, notes, counts_tokens, (ingress.echo(body) if ingress.echo is not None else {})


def _tool_errors_as_text(body: dict[str, Any]) -> None:
    """For providers whose tool results have no error flag: the ingress adapter's mark on a failed
    tool's result becomes text the model reads, and leaves the request."""
    for message in body.get("messages") or ():
        if isinstance(message, dict) and message.pop(TOOL_ERROR_MARK, False):
            content = message.get("content")
            message["content"] = TOOL_ERROR_TEXT + (content if isinstance(content, str) else "")


def _build_request(
    build: Any, body: dict[str, Any], ctx: CallContext, ingress: Ingress | None
) -> ProviderRequest:
    """The provider's request. A field the ingress adapter set only to narrow or tune the answer
    (parallel_tool_calls, top_k...) that the provider cannot express is left out, and noted."""
    dropped: list[str] = []
    while True:
        try:
            preq = build(body, ctx)
            break
        except GatewayError as e:
            if ingress is None or e.param not in ingress.optional_fields or e.param not in body:
                raise
            dropped.append(e.param)
            body = {k: v for k, v in body.items() if k != e.param}
    if dropped:
        text = f"{ingress.name} clients' {', '.join(dropped)} left out: {ctx.provider} cannot express it"  # type: ignore[union-attr]
        preq.notes = {**preq.notes, f"ingress-dropped-{'-'.join(dropped)}": text}
    return preq


def _apply_defaults(route_type: str, body: dict[str, Any], options: ModelOptions) -> None:
    """Configured tuning values are defaults: a client's own value wins."""
    if route_type == "llm/v1/embeddings":
        return
    if (
        options.max_tokens is not None
        and body.get("max_tokens") is None
        and body.get("max_completion_tokens") is None
    ):
        body["max_tokens"] = options.max_tokens
    for name in ("temperature", "top_p", "top_k"):
        value = getattr(options, name)
        if value is not None and body.get(name) is None:
            body[name] = value


# --- response ------------------------------------------------------------------------------------


def translate_response(
    prep: Prepared, status: int, raw: bytes, headers: Mapping[str, str] | None = None
) -> Answer:
    """The client's answer for a complete (non-streamed) upstream response. ``headers`` (lower-case
    names) are the upstream's, read for usage where a provider reports it there (Bedrock invoke)."""
    if prep.answer is not None:  # a route type with its own answer shape (images)
        return prep.answer(prep, status, raw)
    if prep.passthrough:
        if prep.native is not None:
            return _native_answer(prep, status, raw, headers or {})
        return _passthrough_answer(prep, status, raw)
    if not 200 <= status < 300:
        body = translate_error(prep, status, raw)
        if prep.ingress is not None and not prep.ingress.openai_errors:
            body = prep.ingress.error_body(status, orjson.loads(body)["error"]["message"])
        return Answer(status, body, None, None, False)
    ctx = prep.ctx
    assert ctx is not None
    transform = prep.spec.routes[ctx.route_type]
    where = f"{prep.spec.name}://{ctx.route_type}"
    try:
        if prep.counts_tokens:
            return _count_answer(prep, status, raw)
        out = transform.parse_response(orjson.loads(raw), ctx)
        normalize(out, ctx)
        if prep.embeddings_base64:
            encode_embeddings(out)
        usage = usage_from_openai(out)
        if usage is None:  # none, or without the counts it should have: estimated, never 0
            usage = estimate_usage(prep.prompt_text, response_text(out))
            out["usage"] = usage.as_openai(mark_estimate=False)
            if ctx.route_type == "llm/v1/embeddings":
                del out["usage"]["completion_tokens"]
        elif usage.estimated:
            out["usage"].pop(ESTIMATED_MARK)
        body = orjson.dumps(prep.ingress.from_chat(out, usage, ctx) if prep.ingress else out)
    except GatewayError:
        raise
    except Exception as e:  # an upstream body we cannot read is the upstream's fault: 502
        detail = redact_text(str(e) or type(e).__name__, prep.secrets)
        raise GatewayError(
            502, f"failed to translate the {where} response: {detail}", "bad_upstream_response"
        ) from None
    return Answer(status, body, usage, out.get("model") or ctx.model, True)


def _count_answer(prep: Prepared, status: int, raw: bytes) -> Answer:
    """The provider's token count in the client's shape. Counting is not billed: the call is
    recorded with no tokens."""
    counter, ingress = prep.spec.count_tokens, prep.ingress
    assert counter is not None and ingress is not None and ingress.count_body is not None
    tokens = counter.parse_response(orjson.loads(raw))
    return Answer(status, ingress.count_body(tokens), Usage(), prep.request_model, True)


def normalize(out: dict[str, Any], ctx: CallContext) -> None:
    """Every translated response carries OpenAI's identifying fields."""
    obj, prefix = _RESPONSE_OBJECTS[ctx.route_type]
    out.setdefault("object", obj)
    if prefix:
        if not out.get("id"):
            out["id"] = prefix + ctx.request_id
        if not out.get("created"):
            out["created"] = ctx.created
    if not out.get("model"):
        out["model"] = ctx.model


def encode_embeddings(out: dict[str, Any]) -> None:
    """OpenAI's base64 form: the vector's float32 values, little-endian, base64-encoded."""
    for item in out.get("data") or ():
        vector = item.get("embedding") if isinstance(item, dict) else None
        if isinstance(vector, list):
            item["embedding"] = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def translate_error(prep: Prepared, status: int, raw: bytes) -> bytes:
    """An upstream error in OpenAI's shape, carrying the provider's own message."""
    try:
        parsed = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        parsed = None
    info = prep.spec.parse_error(status, parsed) if parsed is not None else None
    if info is None:
        info = generic_error(status, parsed, raw)
    message = redact_text(info.message, prep.secrets)
    return error_body(message, info.type or error_type_for(status), info.code, info.param)


def generic_error(status: int, parsed: Any, raw: bytes) -> ErrorInfo:
    message = _find_message(parsed) if parsed is not None else None
    if not message:
        text = raw.decode("utf-8", "replace").strip()
        if text.startswith("<"):
            text = ""  # an HTML error page says nothing useful to an API client
        message = f"upstream returned HTTP {status}" + (f": {text[:500]}" if text else "")
    return ErrorInfo(message)


def _find_message(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, list):
        return _find_message(value[0]) if value else None
    if isinstance(value, dict):
        for key in ("error", "message", "detail", "msg", "errors"):
            if key in value:
                found = _find_message(value[key])
                if found:
                    return found
    return None
