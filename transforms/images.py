"""The images route types (``image/v1/images/generations`` and ``.../edits``): a request to the
provider call, and the provider's answer back in OpenAI's ImagesResponse shape.

OpenAI and Azure serve the API themselves: the client's body (JSON, or multipart with the image
and mask) is forwarded byte for byte, with the route's auth, URL and model (a model missing from
an OpenAI request is added). Other providers translate it through their ``RouteTransform`` for
the route type (transforms/providers/gemini_images.py, bedrock_images.py).

Pure: the caller passes the request, the route and the clock; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from transforms import multipart
from transforms.auth import apply_auth
from transforms.config import Route
from transforms.errors import GatewayError, bad_request
from transforms.image_fields import IMAGE_EDITS, IMAGE_GENERATIONS, ImageFile, sniff_mime, usage_of
from transforms.native import IMAGES
from transforms.prepared import _BODY_HEADERS, Answer, Prepared, _encode, _resolve_model, _target, signed_call
from transforms.recognize import Recognized
from transforms.redact import redact_text
from transforms.types import CallContext, Inbound, ProviderSpec, Upstream
from transforms.validation import parse_json_object

FORWARDED = frozenset({"openai", "azure"})
_OPERATION = {IMAGE_GENERATIONS: "generations", IMAGE_EDITS: "edits"}
# Multipart text fields OpenAI reads as numbers or booleans.
_INTEGERS = frozenset({"n", "output_compression", "partial_images"})
_BOOLEANS = frozenset({"stream"})
_FILES = frozenset({"image", "image[]", "mask"})


def prepare_images(
    route: Route,
    spec: ProviderSpec,
    inbound: Inbound,
    env: Mapping[str, str],
    credentials: Mapping[str, str],
    now: int,
    request_id: str,
) -> Prepared:
    if inbound.method != "POST":
        raise GatewayError(
            405, f"{inbound.method} is not served on {route.route_type}: POST", "method_not_allowed"
        )
    if spec.name in FORWARDED:
        return _forward(route, spec, inbound, env, credentials, now)
    transform = spec.routes.get(route.route_type)
    if transform is None:
        raise bad_request(
            f"{route.provider} does not support the {route.route_type} route type", "unsupported_route"
        )
    body = request_fields(route.route_type, inbound)
    model = _resolve_model(route, body)
    prompt = body.get("prompt") if isinstance(body.get("prompt"), str) else ""
    ctx = CallContext(
        route_name=route.name,
        route_type=route.route_type,
        provider=route.provider,
        model=model,
        options=route.model.options,
        stream=False,
        request_id=request_id,
        created=now,
        client_query=tuple(inbound.query),
        prompt_text=prompt,
    )
    auth = apply_auth(route.auth, inbound.headers, dict(inbound.query), {}, credentials)
    preq = transform.build_request(body, ctx)
    if auth.body_params and isinstance(preq.body, dict):
        preq.body.update(auth.body_params)
    scheme, host, port, path, query = _target(spec, route, model, preq.path, env)
    query = [*query, *preq.query, *auth.query.items()]
    headers = {"content-type": "application/json", **preq.headers, **auth.set_headers}
    remove = (*auth.remove_headers, *_BODY_HEADERS)
    payload = preq.body if isinstance(preq.body, bytes) else _encode(preq.body)
    upstream = Upstream(preq.method, scheme, host, port, path, query, headers, remove, payload)
    return signed_call(
        route,
        spec,
        auth,
        upstream,
        env,
        now,
        request_model=model,
        stream=False,
        passthrough=False,
        ctx=ctx,
        prompt_text=prompt,
        notes=preq.notes,
        answer=translated_answer,
    )


def request_fields(route_type: str, inbound: Inbound) -> dict[str, Any]:
    """The client's request as fields: the JSON body of a generation; an edit's multipart form with
    its numbers and booleans read as OpenAI reads them, and ``image`` / ``mask`` as lists of
    ImageFile (``image[]``, the SDK's name for several images, is ``image``)."""
    if route_type == IMAGE_GENERATIONS:
        return parse_json_object(inbound.body)
    fields: dict[str, Any] = {}
    for part in multipart.parse(inbound.headers.get("content-type", ""), inbound.body):
        if part.name in _FILES or part.filename is not None:
            name = "image" if part.name == "image[]" else part.name
            fields.setdefault(name, []).append(
                ImageFile(part.data, sniff_mime(part.data, part.content_type), part.filename)
            )
            continue
        text = part.data.decode("utf-8", "replace")
        fields[part.name] = _typed(part.name, text)
    return fields


def _typed(name: str, text: str) -> Any:
    if name in _INTEGERS:
        try:
            return int(text)
        except ValueError:
            raise GatewayError(400, f"'{name}' must be an integer", "invalid_request", param=name) from None
    if name in _BOOLEANS:
        if text not in ("true", "false"):
            raise GatewayError(400, f"'{name}' must be true or false", "invalid_request", param=name)
        return text == "true"
    return text


def translated_answer(prep: Prepared, status: int, raw: bytes) -> Answer:
    """The provider's answer as an ImagesResponse (errors in OpenAI's shape)."""
    from transforms.pipeline import translate_error  # pipeline imports this module

    if not 200 <= status < 300:
        return Answer(status, translate_error(prep, status, raw), None, None, False)
    ctx = prep.ctx
    assert ctx is not None
    try:
        out = prep.spec.routes[ctx.route_type].parse_response(orjson.loads(raw), ctx)
    except GatewayError:
        raise
    except Exception as e:  # an upstream body we cannot read is the upstream's fault: 502
        detail = redact_text(str(e) or type(e).__name__, prep.secrets)
        where = f"{prep.spec.name}://{ctx.route_type}"
        raise GatewayError(
            502, f"failed to translate the {where} response: {detail}", "bad_upstream_response"
        ) from None
    return Answer(status, orjson.dumps(out), usage_of(out), ctx.model, True)


def forwarded_answer(prep: Prepared, status: int, raw: bytes) -> Answer:
    """OpenAI's and Azure's own answer, passed back as it came; its ``usage`` read when present."""
    usage = None
    if 200 <= status < 300 and raw[:1] == b"{":
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
        usage = usage_of(parsed) if isinstance(parsed, dict) else None
    return Answer(status, raw, usage, prep.request_model, False)


# --- OpenAI and Azure: forwarded --------------------------------------------------------------------


def _forward(
    route: Route,
    spec: ProviderSpec,
    inbound: Inbound,
    env: Mapping[str, str],
    credentials: Mapping[str, str],
    now: int,
) -> Prepared:
    payload = inbound.body
    content_type = inbound.headers.get("content-type", "")
    if route.route_type == IMAGE_GENERATIONS:
        body = parse_json_object(inbound.body)
        asked = body.get("model")
        stream = body.get("stream") is True
    else:
        fields = {
            p.name: p.data
            for p in multipart.parse(content_type, inbound.body)
            if p.filename is None and p.name in ("model", "stream", "prompt")
        }
        asked = fields["model"].decode("utf-8", "replace") if "model" in fields else None
        stream = fields.get("stream") == b"true"
        body = {"prompt": fields.get("prompt", b"").decode("utf-8", "replace")}
    opts = route.model.options
    if route.provider == "azure" and not asked and not route.model.name:
        model = opts.azure_deployment_id or "UNSPECIFIED"  # the deployment names the model
    else:
        model = _resolve_model(route, {"model": asked})
    auth = apply_auth(route.auth, inbound.headers, dict(inbound.query), {}, credentials)
    added = dict(auth.body_params)  # a body auth parameter, and the route's model where missing
    if route.provider == "openai" and asked != model:  # Azure's model is the deployment in the URL
        added["model"] = model
    if added and route.route_type == IMAGE_GENERATIONS:
        payload = _encode({**body, **added})
    for name, value in added.items() if route.route_type == IMAGE_EDITS else ():
        payload = multipart.with_field(content_type, payload, name, value)
    operation = _OPERATION[route.route_type]
    extra: list[tuple[str, str]] = []
    if route.provider == "azure":
        path = f"/openai/deployments/{opts.azure_deployment_id}/images/{operation}"
        client_version = dict(inbound.query).get("api-version")
        extra.append(("api-version", client_version or opts.azure_api_version or ""))
    else:
        path = f"/v1/images/{operation}"
    scheme, host, port, path, query = _target(spec, route, model, path, env)
    dropped = {route.auth.param_name, "api-version"}
    query = [*query, *((k, v) for k, v in inbound.query if k not in dropped), *extra, *auth.query.items()]
    headers = {**auth.set_headers, **({"accept-encoding": "identity"} if stream else {})}
    remove = (*auth.remove_headers, *_BODY_HEADERS[:2])
    upstream = Upstream("POST", scheme, host, port, path, query, headers, remove, payload)
    prompt = body.get("prompt") if isinstance(body.get("prompt"), str) else ""
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
        ctx=CallContext(route.name, route.route_type, route.provider, model, opts, stream, "images", now),
        prompt_text=prompt,
        native=Recognized(route.provider, IMAGES),  # a streamed answer's usage is read on the side
        answer=forwarded_answer,
        binary_request=route.route_type == IMAGE_EDITS,  # multipart: not logged or recorded as text
    )
