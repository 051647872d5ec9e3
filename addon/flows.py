"""Flow helpers the gateway and the addons around it share: the per-flow state, the flow's request
as plain data, writing an upstream request or headers back in one pass, the stream translator a
prepared flow is read with and the stream hook that runs it, the facts of a call's statistics
record, and the gateway's own error answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from mitmproxy import http
from mitmproxy.net.http import url

from addon.stats import (
    CONSUMER_METADATA,
    MAX_PAYLOAD,
    ORIGINAL_REQUEST_METADATA,
    PLUGINS_METADATA,
    CallFacts,
)
from transforms.config import Route
from transforms.errors import GatewayError, error_body
from transforms.ingress import IngressStream, client_error
from transforms.keepalive import PingMarks
from transforms.multipart import is_text_type
from transforms.native import usage_reader
from transforms.pipeline import Prepared
from transforms.stream import ObservedStream, OpenAIStream, PassedBytes
from transforms.types import Inbound, StreamTranslator, Upstream, Usage

logger = logging.getLogger("ai_proxy")

OPENAI_FORMATS = frozenset({"openai", "azure", "mistral", "llama2"})
# Upstream content types that are streams even when the request did not say so (passthrough routes).
STREAM_TYPES = ("text/event-stream", "application/vnd.amazon.eventstream", "application/x-ndjson")


@dataclass(slots=True)
class FlowState:
    """Per-flow working state; lives from the request hook to the response or error hook."""

    route: Route
    prep: Prepared | None = None
    sent_at: float = 0.0  # when the request left for the upstream
    overhead: float = 0.0  # seconds spent in our hooks
    translator: StreamTranslator | None = None
    streamed: list[bytes] = field(default_factory=list)  # client-bound bytes, kept for payload logs
    streamed_size: int = 0  # kept only up to the payload log's MAX_PAYLOAD
    first_token_at: float | None = None
    broken: bool = False  # a hook failed after the request went out: answer 500 when the body is in
    error: str | None = None  # inspected traffic whose answer could not be read (recorded, never failed)
    # The provider's own answer before translation, for addons that keep it (cassettes): headers as
    # mitmproxy's immutable field tuple, body only for answers read whole.
    upstream_status: int = 0
    upstream_headers: tuple[tuple[bytes, bytes], ...] = ()
    upstream_body: bytes | None = None
    replayed: bool = False  # answered from a cassette: the statistics record says so
    # AI Proxy Advanced (addon/upstream_relay.py): the target that answered ({provider, model,
    # description}; None on a plain route), further tries of one target, switches to another.
    target: dict[str, Any] | None = None
    retries: int = 0
    fallbacks: int = 0
    # No provider answered (unreachable, reset, timed out): the relay's answer is the gateway's own,
    # already in the client's format, and this says why.
    failure: str | None = None
    # The upstream broke off a stream the client was already reading: it ends with an error event.
    cut: str | None = None
    # Keep-alive marks the relay writes into a slow provider's stream (addon/stream_pings.py).
    pings: PingMarks | None = None


def ai_metadata(flow: http.HTTPFlow) -> dict[str, Any]:
    """``flow.metadata["ai_proxy"]``: the statistics record, the client's request, the assembled
    stream, the credential mask. Plain JSON-able values only: flows are saved with ``-w``."""
    return flow.metadata.setdefault("ai_proxy", {})


def stream_translator(prep: Prepared) -> StreamTranslator:
    """Translated routes get their provider's translator; passthrough bytes are only observed, by the
    provider's own reader where it has one (native formats), else as OpenAI SSE."""
    if prep.binary_response:
        return PassedBytes()
    native = prep.native
    reader = usage_reader(native.format, native.operation) if native is not None else None
    if reader is not None:  # native operations the chat translator does not read
        return ObservedStream(reader)
    route_type = "llm/v1/chat" if prep.passthrough or prep.ctx is None else prep.ctx.route_type
    chat = prep.spec.routes.get(route_type)
    reader = chat.new_stream(prep.ctx) if chat and chat.new_stream and prep.ctx else None
    if not prep.passthrough and reader is not None:
        if prep.ingress is not None and prep.ctx is not None:  # chat chunks -> the client's events
            return IngressStream(reader, prep.ingress.new_events(prep.ctx), prep.prompt_text)
        return reader
    if reader is None or prep.spec.name in OPENAI_FORMATS:
        return OpenAIStream()
    return ObservedStream(reader)


def inbound_from(flow: http.HTTPFlow, host: str) -> Inbound:
    """The flow's request as plain data. Reads mitmproxy's raw header fields: its Mapping views
    cost tens of microseconds per request."""
    req = flow.request
    path, _, query = req.path.partition("?")
    headers = {
        name.decode("latin-1").lower(): value.decode("utf-8", "surrogateescape")
        for name, value in req.headers.fields
    }
    # get_content looks the encoding up in mitmproxy's headers again: only an encoded body needs it.
    body = req.get_content(strict=False) if "content-encoding" in headers else req.raw_content
    return Inbound(
        method=req.method,
        host=host,
        path=path,
        query=parse_qsl(query, keep_blank_values=True) if query else [],
        headers=headers,
        body=body or b"",
    )


def apply_upstream(req: http.Request, up: Upstream, with_body: bool = True) -> None:
    """Point the request at the provider, in one pass over the headers (the Host header and the
    body's length included) instead of one mitmproxy header operation per change. Without
    ``with_body`` the client's body streams on as it arrives, with its own length headers."""
    body = up.body
    changes: dict[str, str | None] = dict.fromkeys((*up.remove_headers, "host"))
    changes.update(up.set_headers)
    if with_body:
        changes["content-length"] = str(len(body))
    host = url.hostport(up.scheme, up.host, up.port)
    if req.is_http2 or req.is_http3:
        req.authority = host  # its Host header, if any, is dropped above: :authority says it
    else:
        changes["Host"] = host  # last, as Request.host_header would add it
    set_headers(req, changes)
    req.method = up.method
    req.data.scheme = up.scheme.encode()
    req.data.host = up.host
    req.data.port = up.port
    req.data.path = up.target.encode()
    if with_body:
        req.raw_content = body


def point_at_loopback(req: http.Request, port: int, header: str, ticket: str) -> None:
    """Send a prepared request to one of the gateway's own loopback servers (the cassettes' replay
    server, the upstream relay), which finds what to do by the ``ticket`` in ``header``."""
    req.data.scheme = b"http"
    req.data.host = "127.0.0.1"
    req.data.port = port
    req.host_header = f"127.0.0.1:{port}"
    req.headers[header] = ticket


def upstream_header_fields(client: Mapping[str, str], up: Upstream) -> list[tuple[bytes, bytes]]:
    """The header fields ``apply_upstream`` would send for ``up`` on a request whose client headers
    were ``client`` (lower-case names): the relay's tries after the first, each for its own target."""
    changes: dict[str, str | None] = dict.fromkeys((*up.remove_headers, "host"))
    changes.update(up.set_headers)
    changes["content-length"] = str(len(up.body))
    fields = [
        (k.encode(), v.encode("utf-8", "surrogateescape")) for k, v in client.items() if k not in changes
    ]
    fields.extend(
        (k.encode(), v.encode("utf-8", "surrogateescape")) for k, v in changes.items() if v is not None
    )
    fields.append((b"host", url.hostport(up.scheme, up.host, up.port).encode()))
    return fields


def show_upstream(req: http.Request, fields: list[tuple[bytes, bytes]], up: Upstream) -> None:
    """The flow's request as it went to the target that answered (mitmproxy's flow list shows it),
    after the relay sent it there."""
    req.headers.fields = tuple(fields)
    req.method = up.method
    req.data.scheme = up.scheme.encode()
    req.data.host = up.host
    req.data.port = up.port
    req.data.path = up.target.encode()
    req.raw_content = up.body


def set_headers(message: http.Message, changes: Mapping[str, str | None]) -> None:
    """Set headers (None: remove them) in one pass over mitmproxy's raw header fields: each of its
    Headers operations scans and rebuilds them, which costs more than the rest of a hook."""
    if not changes:
        return
    dropped = _lowered(tuple(changes))
    fields = [field for field in message.headers.fields if field[0].lower() not in dropped]
    fields.extend(
        (name.encode(), value.encode("utf-8", "surrogateescape"))
        for name, value in changes.items()
        if value is not None
    )
    message.headers.fields = tuple(fields)


@lru_cache(maxsize=256)
def _lowered(names: tuple[str, ...]) -> frozenset[bytes]:
    """The header names a change touches, as raw lower-case bytes: a flow's hooks make the same few
    sets of changes, and this costs more than the rest of set_headers."""
    return frozenset(name.lower().encode() for name in names)


def header_values(message: http.Message, *names: bytes) -> dict[bytes, str]:
    """Some headers (lower-case names), folded as mitmproxy folds repeated ones, in one pass over its
    raw fields instead of one per lookup."""
    found: dict[bytes, list[bytes]] = {}
    for name, value in message.headers.fields:
        lower = name.lower()
        if lower in names:
            found.setdefault(lower, []).append(value)
    return {name: b", ".join(values).decode("utf-8", "surrogateescape") for name, values in found.items()}


def is_stream(response: http.Response) -> bool:
    return response.headers.get("content-type", "").startswith(STREAM_TYPES)


def answer_error(flow: http.HTTPFlow, error: GatewayError, route: Route | None = None) -> None:
    """The gateway's own error, in the format of the route's clients."""
    body = client_error(route, error.status, error.body())
    flow.response = http.Response.make(error.status, body, {"content-type": "application/json"})


def stream_error_frames(prep: Prepared, message: str, code: str = "stream_error") -> list[bytes]:
    """The error that ends a stream the gateway failed to translate (or the upstream broke off),
    in the client's format."""
    if prep.ingress is not None and prep.ctx is not None:
        return prep.ingress.new_events(prep.ctx).error(500 if code == "stream_error" else 502, message)
    return [b"data: " + error_body(message, "api_error", code) + b"\n\n"]


def call_facts(
    flow: http.HTTPFlow,
    state: FlowState,
    usage: Usage | None,
    response_model: str | None,
    status: int,
    response_body: bytes | None,
    error: str | None = None,
) -> CallFacts:
    """What the statistics record of a flow's provider call is built from."""
    route, prep = state.route, state.prep
    assert prep is not None
    resp = flow.response
    latency = int(max(0.0, (resp.timestamp_start - state.sent_at)) * 1000) if resp else 0
    ttft = None
    if state.first_token_at is not None:
        ttft = int(max(0.0, state.first_token_at - state.sent_at) * 1000)
    return CallFacts(
        route=route,
        request_model=prep.request_model,
        response_model=response_model,
        usage=usage,
        llm_latency_ms=latency,
        stream=state.translator is not None,
        status=status,
        time_to_first_token_ms=ttft,
        request_payload=prep.upstream.body if logs_text(route, prep.binary_request, flow.request) else None,
        response_payload=response_body if logs_text(route, prep.binary_response, resp) else None,
        secrets=prep.secrets,
        consumer=flow.metadata.get(CONSUMER_METADATA),
        error="; ".join(e for e in (prep.error, state.error, state.failure, state.cut, error) if e) or None,
        replayed=state.replayed,
        plugins=tuple(flow.metadata.get(PLUGINS_METADATA, ())),
        original_request=flow.metadata.get(ORIGINAL_REQUEST_METADATA),
        target=state.target,
        retries=state.retries,
        fallbacks=state.fallbacks,
    )


def logs_text(route: Route, binary: bool, message: http.Message | None) -> bool:
    """Whether a body goes into the payload log: only text (a multipart upload or audio passed
    through any route, preserve included, is never decoded as text)."""
    if not route.logging.log_payloads or binary or message is None:
        return False
    return is_text_type(message.headers.get("content-type", ""))


def translated_stream(state: FlowState, translator: StreamTranslator) -> Callable[[bytes], list[bytes]]:
    """The response's stream hook on a prepared flow: each network chunk through the translator, in
    one write to the client; a translator that fails ends the stream with an error event."""
    prep = state.prep
    assert prep is not None
    keep_payload = state.route.logging.log_payloads and not prep.binary_response
    route_name = state.route.name

    def on_chunk(data: bytes) -> list[bytes]:
        try:
            out = translator.feed(data) if data else translator.finish()
            if not data and state.cut is not None:  # the upstream broke off: the relay's reason, not the
                out = stream_error_frames(prep, state.cut, "upstream_stream_cut")  # translator's guess
        except Exception:
            logger.exception(f"ai_proxy route={route_name}: stream translation failed")
            out = stream_error_frames(prep, "the gateway failed to translate the upstream stream")
            translator.feed = lambda _data: []  # type: ignore[method-assign]
            translator.finish = lambda: []  # type: ignore[method-assign]
        if out and state.first_token_at is None:
            state.first_token_at = time.time()
        if len(out) > 1:
            # One write to the client per network chunk: mitmproxy sends every item of the list
            # as its own HTTP message event and socket write, which cost more than translating.
            out = [b"".join(out)]
        if keep_payload and state.streamed_size < MAX_PAYLOAD:
            state.streamed.extend(out)
            state.streamed_size += sum(map(len, out))
        return out

    return on_chunk
