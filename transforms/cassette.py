"""Record and replay decisions: which cassette a provider call matches, and what a cassette file holds.

Pure: the addon (``addon/cassettes.py``) reads and writes the files and serves the replays.

A cassette is one provider exchange in a pretty-printed JSON file a person can review::

    {"ai_proxy_cassette": 1,
     "match": {"provider", "operation", "model", "stream", "query", "headers"},
     "request": {"method", "url", "headers", "body"},          # as sent upstream, scrubbed
     "response": {"status", "headers", "body" | "text" | "events"}}

Matching is by meaning: the key is the ``match`` block plus the request body without the fields that
never change an answer (``VOLATILE_FIELDS``), as canonical JSON (key order and whitespace ignored).
Credentials, the upstream's host and port, and every header other than the provider's version header
are never part of it, so a cassette recorded against one upstream replays for the same route pointed
elsewhere, with other keys, or from another SDK.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import orjson

from transforms.eventstream import encode_message
from transforms.redact import redact_bytes
from transforms.stream import SSEParser

FORMAT_VERSION = 1
RECORD_MODES = ("new_episodes", "none", "all")
CASSETTE_HEADER = "x-ai-proxy-cassette"  # response header naming the replayed file
MISS_CODE = "cassette_miss"
MISS_STATUS = 400  # a 4xx no SDK retries (not 408, 409 or 429)

# Body fields that identify, trace or bill a call but never change its answer.
VOLATILE_FIELDS = frozenset(
    {
        "user",  # OpenAI and compatibles
        "metadata",  # OpenAI stored completions, Anthropic (user_id)
        "stream_options",
        "stream",  # part of the key as the `stream` flag, whatever the provider calls it
        "store",
        "prompt_cache_key",
        "safety_identifier",
        "service_tier",
        "request_id",
        "requestMetadata",  # Bedrock
        "labels",  # Vertex AI billing labels
    }
)
# Request headers that change an answer: the provider's API version and opted-in behaviour.
VERSION_HEADERS = ("anthropic-version", "anthropic-beta", "openai-beta")
# Query parameters that carry credentials (Gemini's API key) and never reach the key or the disk.
CREDENTIAL_PARAMS = frozenset({"key", "api_key", "api-key", "access_token"})
# Request headers a cassette keeps for readers besides the version headers (never credentials).
_KEPT_REQUEST_HEADERS = ("content-type",)
# Response headers replayed: the body's type and usage that Bedrock reports in headers.
_KEPT_RESPONSE_HEADERS = (
    "content-type",
    "x-amzn-bedrock-input-token-count",
    "x-amzn-bedrock-output-token-count",
    "x-amzn-bedrock-invocation-latency",
)
# Deterministic answers worth recording: successes and errors caused by the request itself.
# Auth failures (401/403), rate limits (429), timeouts and server errors are not replayed.
RECORDED_STATUSES = frozenset({*range(200, 300), 400, 404, 413, 422})
_ID_SEGMENTS = re.compile(r"/(projects|locations|deployments|endpoints)/[^/:]+")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
SSE_TYPE = "text/event-stream"
NDJSON_TYPE = "application/x-ndjson"
EVENTSTREAM_TYPE = "application/vnd.amazon.eventstream"


class CassetteError(Exception):
    """A cassette file that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class ExchangeRequest:
    """A provider request as it goes upstream, with what the gateway knows about it."""

    provider: str
    model: str
    stream: bool
    method: str
    url: str  # scheme://host[:port]/path?query, as sent
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    base_path: str = ""  # the provider's default base path (e.g. /hf-inference), not part of the key
    credential_params: frozenset[str] = frozenset()  # configured query/body auth parameter names


@dataclass(frozen=True, slots=True)
class Cassette:
    name: str  # file path relative to the cassette directory, with forward slashes
    key: str
    match: dict[str, Any]  # the key's fields, the canonical body included (for miss messages)
    data: dict[str, Any]  # the whole file


@dataclass(frozen=True, slots=True)
class Replay:
    """A cassette's answer, ready to send: ``events`` are (delay in ms, bytes) for streams."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    events: list[tuple[int, bytes]] | None


# --- the key ------------------------------------------------------------------------------------


def operation(method: str, path: str, model: str, base_path: str = "") -> str:
    """``POST /v1beta/models/{model}:generateContent``: the path without ids, model or base prefix."""
    path = unquote(path)
    if base_path and path.startswith(base_path + "/"):
        path = path[len(base_path) :]
    if model:
        path = path.replace(model, "{model}")
    path = _ID_SEGMENTS.sub(lambda m: f"/{m.group(1)}/*", path)
    return f"{method.upper()} {path}"


def canonical_body(body: Any, drop: Iterable[str] = ()) -> Any:
    """The body's meaning: top-level volatile fields (and body credentials) removed."""
    if not isinstance(body, dict):
        return body
    dropped = VOLATILE_FIELDS.union(drop)
    return {k: v for k, v in body.items() if k not in dropped}


def parse_json_body(raw: bytes) -> tuple[str, Any]:
    """``("body", json)`` when the bytes are JSON, else ``("text", str)`` or ``("base64", str)``."""
    if not raw:
        return "text", ""
    if raw[:1] in b"{[":
        try:
            return "body", orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    try:
        return "text", raw.decode("utf-8")
    except UnicodeDecodeError:
        return "base64", base64.b64encode(raw).decode()


def match_of(req: ExchangeRequest) -> dict[str, Any]:
    """The key's fields of a live request (credentials and the upstream's origin left out)."""
    parts = urlsplit(req.url)
    drop = CREDENTIAL_PARAMS | req.credential_params
    query = {k: v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in drop}
    kind, body = parse_json_body(req.body)
    return {
        "provider": req.provider,
        "operation": operation(req.method, parts.path, req.model, req.base_path),
        "model": req.model,
        "stream": req.stream,
        "query": dict(sorted(query.items())),
        "headers": {h: req.headers[h] for h in VERSION_HEADERS if h in req.headers},
        "body": canonical_body(body, req.credential_params) if kind == "body" else {kind: body},
    }


def key_of(match: Mapping[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(match, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]


def cassette_name(match: Mapping[str, Any], key: str) -> str:
    """``<provider>/<model>-<short hash>.json``: one small file per exchange, grouped by provider."""
    model = _UNSAFE_NAME.sub("_", str(match.get("model") or "model")).strip("._-")[:60] or "model"
    provider = _UNSAFE_NAME.sub("_", str(match.get("provider") or "provider"))
    stream = "-stream" if match.get("stream") else ""
    return f"{provider}/{model}{stream}-{key[:10]}.json"


# --- writing ------------------------------------------------------------------------------------


def scrub_url(url: str, credential_params: frozenset[str] = frozenset()) -> str:
    parts = urlsplit(url)
    drop = CREDENTIAL_PARAMS | credential_params
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in drop]
    target = parts.path + (f"?{urlencode(query)}" if query else "")
    return f"{parts.scheme}://{parts.netloc}{target}"


def exchange_secrets(req: ExchangeRequest, configured: Iterable[str]) -> tuple[str, ...]:
    """Every credential value of this exchange: the configured ones, and whatever the request carries
    in its auth headers and credential parameters (minted GCP tokens, SigV4 signatures, a client's
    own key)."""
    found = [s for s in configured if s]
    for name in ("authorization", "x-api-key", "api-key", "x-goog-api-key", "x-amz-security-token"):
        value = req.headers.get(name)
        if value:
            found.append(value)
            if " " in value:
                found.extend(p.rstrip(",") for p in value.split(" ")[1:] if len(p) >= 8)
    drop = CREDENTIAL_PARAMS | req.credential_params
    for k, v in parse_qsl(urlsplit(req.url).query, keep_blank_values=True):
        if k in drop and v:
            found.append(v)
    # Longest first, so a "Bearer <token>" is replaced whole before its token alone.
    return tuple(sorted({s for s in found if len(s) >= 4}, key=len, reverse=True))


def build_cassette(
    req: ExchangeRequest,
    status: int,
    response_headers: Iterable[tuple[str, str]],
    response_body: bytes | None,
    chunks: list[tuple[float, bytes]] | None,
) -> dict[str, Any]:
    """A cassette for one exchange. ``chunks`` (seconds since the first one, raw bytes) for streams."""
    match = match_of(req)
    match.pop("body")
    headers = {k.lower(): v for k, v in response_headers}
    content_type = headers.get("content-type", "")
    kept_request = {h: req.headers[h] for h in (*_KEPT_REQUEST_HEADERS, *VERSION_HEADERS) if h in req.headers}
    kind, body = parse_json_body(req.body)
    response: dict[str, Any] = {
        "status": status,
        "headers": {h: headers[h] for h in _KEPT_RESPONSE_HEADERS if h in headers},
    }
    if chunks is not None:
        response["events"] = frame_stream(content_type, chunks)
    else:
        rkind, rbody = parse_json_body(response_body or b"")
        response[rkind] = rbody
    return {
        "ai_proxy_cassette": FORMAT_VERSION,
        "match": match,
        "request": {
            "method": req.method,
            "url": scrub_url(req.url, req.credential_params),
            "headers": kept_request,
            kind: body,
        },
        "response": response,
    }


def dump_cassette(data: Mapping[str, Any], secrets: tuple[str, ...]) -> bytes:
    """Pretty-printed, keys in a stable order, and every secret replaced wherever it appears."""
    raw = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    return redact_bytes(raw, secrets)


# --- reading ------------------------------------------------------------------------------------


def load_cassette(name: str, raw: bytes) -> Cassette:
    """Parses and checks one file; raises CassetteError naming what is wrong."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise CassetteError(f"not JSON: {e}") from None
    if not isinstance(data, dict) or data.get("ai_proxy_cassette") != FORMAT_VERSION:
        raise CassetteError(f'not an ai-proxy cassette (no "ai_proxy_cassette": {FORMAT_VERSION})')
    match, request, response = data.get("match"), data.get("request"), data.get("response")
    if not isinstance(match, dict) or not isinstance(request, dict) or not isinstance(response, dict):
        raise CassetteError('needs "match", "request" and "response" objects')
    missing = [f for f in ("provider", "operation", "model", "stream", "query", "headers") if f not in match]
    if missing:
        raise CassetteError(f"match lacks {', '.join(missing)}")
    if not isinstance(response.get("status"), int):
        raise CassetteError("response.status must be an integer")
    if "events" in response and not _valid_events(response["events"]):
        raise CassetteError('response.events must be a list of objects with "ms"')
    full = dict(match)
    if "body" in request:
        full["body"] = canonical_body(request["body"])
    elif "text" in request or "base64" in request:
        kind = "text" if "text" in request else "base64"
        full["body"] = {kind: request[kind]}
    else:
        full["body"] = {"text": ""}
    return Cassette(name, key_of(full), full, data)


def _valid_events(events: Any) -> bool:
    if not isinstance(events, list):
        return False
    return all(isinstance(e, dict) and isinstance(e.get("ms"), int) for e in events)


def replay_of(cassette: Cassette, compress_ms: int) -> Replay:
    """The recorded answer; gaps between stream events are capped at ``compress_ms`` and the first
    event goes out at once."""
    response = cassette.data["response"]
    headers = [(k, str(v)) for k, v in (response.get("headers") or {}).items()]
    headers.append((CASSETTE_HEADER, cassette.name))
    if "events" in response:
        content_type = (response.get("headers") or {}).get("content-type", "")
        rendered = render_events(content_type, response["events"])
        paced: list[tuple[int, bytes]] = []
        previous = None
        for ms, data in rendered:
            gap = 0 if previous is None else max(0, min(ms - previous, compress_ms))
            paced.append((gap, data))
            previous = ms
        return Replay(response["status"], headers, b"", paced)
    if "body" in response:
        body = orjson.dumps(response["body"])
    elif "base64" in response:
        body = base64.b64decode(response["base64"])
    else:
        body = str(response.get("text", "")).encode()
    return Replay(response["status"], headers, body, None)


# --- streams: events with relative timing, in the provider's framing ------------------------------


def frame_stream(content_type: str, chunks: list[tuple[float, bytes]]) -> list[dict[str, Any]]:
    """Network chunks -> events, each stamped with the ms (since the first chunk) it completed at."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    events: list[dict[str, Any]] = []
    if ctype == SSE_TYPE:
        parser = SSEParser()
        for at, data in chunks:
            events.extend(_sse_event(e.event, e.data, at) for e in parser.feed(data))
        events.extend(_sse_event(e.event, e.data, chunks[-1][0] if chunks else 0) for e in parser.finish())
    elif ctype == NDJSON_TYPE:
        pending = b""
        for at, data in chunks:
            lines = (pending + data).split(b"\n")
            pending = lines.pop()
            events.extend(_json_line(line, at) for line in lines if line.strip())
        if pending.strip():
            events.append(_json_line(pending, chunks[-1][0]))
    elif ctype == EVENTSTREAM_TYPE:
        events = _eventstream_events(chunks)
    else:  # anything else (Gemini's JSON-array stream): the chunks as they came
        for at, data in chunks:
            kind, value = _text_or_base64(data)
            events.append({"ms": _ms(at), kind: value})
    return events


def render_events(content_type: str, events: list[dict[str, Any]]) -> list[tuple[int, bytes]]:
    """Events -> (ms, bytes) in the provider's framing, the inverse of ``frame_stream``."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    out = []
    for event in events:
        if "raw" in event:
            data = str(event["raw"]).encode()
        elif "base64" in event:
            data = base64.b64decode(event["base64"])
        elif ctype == SSE_TYPE:
            name = f"event: {event['event']}\n" if event.get("event") is not None else ""
            payload = orjson.dumps(event["data"]).decode() if "data" in event else str(event.get("text", ""))
            data = (name + "".join(f"data: {line}\n" for line in payload.split("\n")) + "\n").encode()
        elif ctype == NDJSON_TYPE:
            data = orjson.dumps(event.get("data")) + b"\n"
        elif ctype == EVENTSTREAM_TYPE:
            payload = orjson.dumps(event["data"]) if "data" in event else str(event.get("text", "")).encode()
            data = encode_message(event.get("headers") or {}, payload)
        else:
            data = str(event.get("text", "")).encode()
        out.append((int(event["ms"]), data))
    return out


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _sse_event(name: str | None, data: str, at: float) -> dict[str, Any]:
    event: dict[str, Any] = {"ms": _ms(at)}
    if name is not None:
        event["event"] = name
    if data[:1] in ("{", "["):
        try:
            event["data"] = orjson.loads(data)
            return event
        except orjson.JSONDecodeError:
            pass
    event["text"] = data
    return event


def _json_line(line: bytes, at: float) -> dict[str, Any]:
    try:
        return {"ms": _ms(at), "data": orjson.loads(line)}
    except orjson.JSONDecodeError:
        return {"ms": _ms(at), "raw": line.decode("utf-8", "replace") + "\n"}


def _text_or_base64(data: bytes) -> tuple[str, str]:
    try:
        return "text", data.decode("utf-8")
    except UnicodeDecodeError:
        return "base64", base64.b64encode(data).decode()


def _eventstream_events(chunks: list[tuple[float, bytes]]) -> list[dict[str, Any]]:
    from transforms.providers.bedrock import CorruptFrame, EventStreamDecoder  # needs botocore

    decoder = EventStreamDecoder()
    events: list[dict[str, Any]] = []
    for at, data in chunks:
        for frame in decoder.feed(data):
            if isinstance(frame, CorruptFrame):
                raise CassetteError(f"corrupt event stream: {frame.reason}")
            headers = dict(frame.headers)
            if not all(isinstance(v, str) for v in headers.values()):
                raise CassetteError("event-stream headers other than strings are not recorded")
            event: dict[str, Any] = {"ms": _ms(at), "headers": headers}
            try:
                event["data"] = orjson.loads(frame.payload)
            except orjson.JSONDecodeError:
                event["text"] = frame.payload.decode("utf-8", "replace")
            events.append(event)
    return events


# --- misses -------------------------------------------------------------------------------------


def differences(want: Any, have: Any, path: str = "", limit: int = 6) -> list[str]:
    """Dotted paths where two key values differ, the first ``limit`` of them."""
    out: list[str] = []
    _diff(want, have, path, out, limit)
    return out


def _diff(want: Any, have: Any, path: str, out: list[str], limit: int) -> None:
    if len(out) >= limit or want == have:
        return
    if isinstance(want, dict) and isinstance(have, dict):
        for k in sorted(set(want) | set(have), key=str):
            _diff(want.get(k), have.get(k), f"{path}.{k}" if path else str(k), out, limit)
        return
    if isinstance(want, list) and isinstance(have, list) and len(want) == len(have):
        for i, (a, b) in enumerate(zip(want, have, strict=True)):
            _diff(a, b, f"{path}[{i}]", out, limit)
        return
    out.append(path or "(value)")


def closest(match: Mapping[str, Any], candidates: Iterable[Cassette]) -> tuple[Cassette, list[str]] | None:
    """The cassette whose key differs from ``match`` in the fewest places (same provider first)."""
    best: tuple[tuple[int, int], Cassette, list[str]] | None = None
    for cassette in candidates:
        diffs = differences(match, cassette.match, limit=50)
        rank = (0 if cassette.match.get("provider") == match.get("provider") else 1, len(diffs))
        if best is None or rank < best[0]:
            best = (rank, cassette, diffs)
    return (best[1], best[2][:6]) if best else None


def miss_message(match: Mapping[str, Any], candidates: Iterable[Cassette], directory: str) -> str:
    stream = "true" if match["stream"] else "false"
    what = f"{match['operation']} ({match['provider']}, model {match['model']}, stream={stream})"
    found = closest(match, candidates)
    if found is None:
        return f"{MISS_CODE}: no cassette in {directory} matches {what}; the directory has none"
    cassette, diffs = found
    return (
        f"{MISS_CODE}: no cassette in {directory} matches {what}; closest is {cassette.name}, "
        f"which differs in {', '.join(diffs)}. Record it with ai_proxy_record_mode=new_episodes."
    )


def miss_answer(wire_format: str, message: str) -> tuple[int, dict[str, str], bytes]:
    """The miss in the client's format: OpenAI's shape for OpenAI-format clients, the provider's
    own error shape for native clients (whose SDKs then raise their usual 400 error)."""
    status = MISS_STATUS
    headers = {"content-type": "application/json"}
    if wire_format == "anthropic":
        body: Any = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    elif wire_format == "gemini":
        body = {"error": {"code": status, "message": message, "status": "INVALID_ARGUMENT"}}
    elif wire_format == "bedrock":
        headers["x-amzn-errortype"] = "ValidationException"
        body = {"message": message}
    elif wire_format == "cohere":
        body = {"message": message}
    elif wire_format in ("huggingface", "ollama"):
        body = {"error": message, "error_type": MISS_CODE}
    else:
        error = {"message": message, "type": "invalid_request_error", "param": None, "code": MISS_CODE}
        body = {"error": error}
    return status, headers, orjson.dumps(body)
