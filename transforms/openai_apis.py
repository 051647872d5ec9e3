"""OpenAI's own REST and audio APIs on openai and azure: files, batches, assistants (and threads),
speech, transcriptions and translations, forwarded with the route's credential and URL rules.

Bodies pass as the client sent them, byte for byte (multipart uploads, audio, file contents are never
decoded as text), except a JSON body whose ``model`` the route enforces or fills. A file upload's body
may stream upstream as it arrives (``streamed``: the request is prepared from its headers alone).
Files, batches and assistants calls are not accounted (seed 002); audio calls are recorded only when
the answer reports usage (transcriptions of gpt-4o-transcribe, speech as events). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from transforms.api_route_types import (
    ASSISTANTS,
    BATCHES,
    FILES,
    SPEECH,
    TRANSCRIPTIONS,
    TRANSLATIONS,
)
from transforms.auth import apply_auth
from transforms.config import Route
from transforms.errors import GatewayError, bad_request
from transforms.multipart import boundary_of, parse
from transforms.passthrough import _native_context, collection_target
from transforms.prepared import _BODY_HEADERS, Prepared, _encode, _resolve_model, signed_call
from transforms.recognize import UNMETERED, Recognized, collection_operation
from transforms.types import Inbound, ProviderSpec, Upstream
from transforms.validation import parse_json_object

ASSISTANTS_BETA = "assistants=v2"  # sent on every assistants and threads call, whatever the client sent
_AUDIO_PATHS = {
    SPEECH: "audio/speech",
    TRANSCRIPTIONS: "audio/transcriptions",
    TRANSLATIONS: "audio/translations",
}


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One call to these APIs: where it goes below the provider's base and what its bodies are."""

    collection: str  # files, batches, assistants, threads, audio/speech...
    rest: str  # what follows the collection: /{id}, /{id}/content...
    operation: str  # upload, list, retrieve, content, delete, create, cancel, call, speech, transcription
    binary_request: bool = False
    binary_response: bool = False


def api_call(route: Route, method: str, path: str, content_type: str) -> ApiCall:
    """The call a request makes on a route of one of these route types; GatewayError (404, 405,
    400) for what the API does not serve."""
    route_type = route.route_type
    if route_type in _AUDIO_PATHS:
        if method != "POST":
            raise _not_allowed(method, route_type)
        if route_type == SPEECH:
            return ApiCall(_AUDIO_PATHS[route_type], "", "speech", binary_response=True)
        _multipart(content_type, route_type)
        return ApiCall(_AUDIO_PATHS[route_type], "", "transcription", binary_request=True)
    collection = _collection_name(route, path)
    rest = _rest(route, path, collection)
    parts = [p for p in rest.split("/") if p]
    if route_type == FILES:
        operation = {
            (0, "POST"): "upload",
            (0, "GET"): "list",
            (1, "GET"): "retrieve",
            (1, "DELETE"): "delete",
            (2, "GET"): "content" if parts[-1:] == ["content"] else "",
        }.get((len(parts), method), "")
        if operation == "upload":
            _multipart(content_type, route_type)
        call = ApiCall(collection, rest, operation, operation == "upload", operation == "content")
    elif route_type == BATCHES:
        operation = {
            (0, "POST"): "create",
            (0, "GET"): "list",
            (1, "GET"): "retrieve",
            (2, "POST"): "cancel" if parts[-1:] == ["cancel"] else "",
        }.get((len(parts), method), "")
        call = ApiCall(collection, rest, operation)
    else:  # assistants and threads: every call below the collection is forwarded
        operation = "call" if method in ("GET", "POST", "DELETE") else ""
        call = ApiCall(collection, rest, operation)
    if not call.operation:
        if method not in ("GET", "POST", "DELETE"):
            raise _not_allowed(method, route_type)
        raise GatewayError(404, f"{method} {path} is not a {route_type} call", "unknown_route")
    return call


def streams_request_body(route: Route, method: str, path: str, content_type: str) -> bool:
    """Whether a request's body goes upstream as it arrives (a file upload): decided from its headers."""
    if route.route_type != FILES or method != "POST":
        return False
    try:
        return api_call(route, method, path, content_type).operation == "upload"
    except GatewayError:
        return False  # answered with its error once the body is in


def prepare_openai_api(
    route: Route,
    spec: ProviderSpec,
    inbound: Inbound,
    env: Mapping[str, str],
    credentials: Mapping[str, str],
    now: int,
    request_id: str = "",
    *,
    streamed: bool = False,
) -> Prepared:
    """The pipeline's own-path signature (``request_id`` is unused: nothing is made up here).
    ``streamed``: the body is not in ``inbound`` but streams upstream after the headers (the client's
    length and encoding headers are kept)."""
    content_type = inbound.headers.get("content-type", "")
    call = api_call(route, inbound.method, inbound.path, content_type)
    opts = route.model.options
    model = route.model.name or (opts.azure_deployment_id if route.provider == "azure" else None)
    payload = inbound.body
    stream = call.binary_response  # a file's content streams back as it arrives
    operation = UNMETERED
    headers: dict[str, str] = {}
    if call.operation == "speech":
        body = parse_json_object(inbound.body)
        model = _model(route, body)
        operation = "speech"
        stream = True
        if body.get("stream_format") == "sse":  # events with usage instead of audio bytes
            call = ApiCall(call.collection, call.rest, call.operation)
        payload = _encode(body)
    elif call.operation == "transcription":
        fields = _form(inbound.body, content_type)
        asked = fields.get("model") or None
        if route.model.name and asked and asked != route.model.name:
            raise bad_request(f"cannot use own model - must be: {route.model.name}", "model_not_allowed")
        model = asked or model
        operation = "transcription"
        stream = _streams(route, fields.get("stream", "").lower() == "true")
    elif route.route_type == ASSISTANTS and inbound.method == "POST" and inbound.body:
        body = parse_json_object(inbound.body)
        creates = call.collection == "assistants" and not call.rest.strip("/")
        if creates or "model" in body:
            model = _model(route, body)
            payload = _encode(body)
        stream = _streams(route, body.get("stream") is True)
    if route.route_type == ASSISTANTS:
        headers["openai-beta"] = ASSISTANTS_BETA
    if stream and not call.binary_response:
        headers["accept-encoding"] = "identity"  # events arrive as the provider wrote them
    auth = apply_auth(route.auth, inbound.headers, dict(inbound.query), {}, credentials)
    headers.update(auth.set_headers)
    scheme, host, port, path, query = collection_target(
        spec,
        route,
        model or "UNSPECIFIED",
        call.collection,
        call.rest.rstrip("/"),
        env,
        dict(inbound.query).get("api-version"),
        deployment_scoped=call.collection.startswith("audio/"),
    )
    dropped = {route.auth.param_name, "api-version"} if route.auth.param_name else {"api-version"}
    query = [*query, *((k, v) for k, v in inbound.query if k not in dropped), *auth.query.items()]
    remove = auth.remove_headers if streamed else (*auth.remove_headers, *_BODY_HEADERS[:2])
    upstream = Upstream(inbound.method, scheme, host, port, path, query, headers, remove, payload)
    audio = operation != UNMETERED
    return signed_call(
        route,
        spec,
        auth,
        upstream,
        env,
        now,
        request_model=model or "UNSPECIFIED",
        stream=stream,
        passthrough=True,
        ctx=_native_context(route, model or "UNSPECIFIED", stream, now),
        prompt_text="",
        native=Recognized(route.provider, operation),
        metered=audio,
        usage_only=audio,
        binary_request=call.binary_request,
        binary_response=call.binary_response,
    )


def _model(route: Route, body: dict[str, Any]) -> str:
    """The route's model enforced on a JSON body (or filled in); Azure is sent its deployment."""
    opts = route.model.options
    if route.provider == "azure" and not route.model.name and not isinstance(body.get("model"), str):
        model = opts.azure_deployment_id or "UNSPECIFIED"
    else:
        model = _resolve_model(route, body)
    body["model"] = opts.azure_deployment_id if route.provider == "azure" else model
    return model


def _streams(route: Route, asked: bool) -> bool:
    """A client's ``stream: true`` (runs, transcriptions), refused where the route denies streaming."""
    if asked and route.response_streaming == "deny":
        raise bad_request("response streaming is not enabled for this LLM", "streaming_disabled")
    return asked


def _form(body: bytes, content_type: str) -> dict[str, str]:
    """The text fields of a multipart body (a malformed one is a 400)."""
    return {
        p.name: p.data.decode("utf-8", "replace") for p in parse(content_type, body) if p.filename is None
    }


def _multipart(content_type: str, route_type: str) -> None:
    if boundary_of(content_type) is None:  # a multipart type without its boundary is a 400 there
        raise bad_request(f"{route_type} uploads must be multipart/form-data with a boundary", "invalid_body")


def _collection_name(route: Route, path: str) -> str:
    if route.route_type == FILES:
        return "files"
    if route.route_type == BATCHES:
        return "batches"
    pattern = (route.match.path or "").removesuffix("/*").rstrip("/")
    if pattern and not route.match.path.endswith("/*"):  # type: ignore[union-attr]
        return "threads" if pattern.endswith("/threads") else "assistants"
    return "threads" if collection_operation(path, "threads") is not None else "assistants"


def _rest(route: Route, path: str, collection: str) -> str:
    """What follows the collection: an exact ``match.path`` names it; a prefix route (or none) is
    read by the collection's name in the path."""
    pattern = route.match.path
    if pattern and not pattern.endswith("/*"):
        return path[len(pattern.rstrip("/")) :]
    found = collection_operation(path, collection)
    if found is None:
        raise GatewayError(404, f"{path} is not in a /{collection} collection", "unknown_route")
    return found[0]


def _not_allowed(method: str, route_type: str) -> GatewayError:
    return GatewayError(405, f"{method} is not a {route_type} method", "method_not_allowed")
