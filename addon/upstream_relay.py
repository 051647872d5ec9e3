"""The upstream relay: the gateway owns the exchange with the provider, so that a dead, reset or slow
upstream is answered in the client's format, and a route's balancer can retry and fall back.

Why: mitmproxy answers an upstream it cannot reach (or that breaks off) with its own HTML 502 page,
which no hook can replace, and cannot retry within a flow; an answer an addon sets is sent whole,
so it cannot carry a stream. So this addon takes every prepared flow the cassettes do not replay,
and an addon it adds last to mitmproxy's chain (``InHookExchange``) makes the flow's tries in
mitmproxy's ``request`` hook (``addon/upstream_client.py``), each target's request prepared afresh
by the pipeline. A whole answer is handed to mitmproxy as the flow's response. A stream cannot be:
the flow is re-pointed at a loopback server of the relay's own in mitmproxy's event loop (as the
cassettes' replay server), naming it in ``x-ai-proxy-relay``, and the relay passes the stream on
chunk by chunk as it arrives. Once a stream's first byte is on its way no other target is tried: a
stream the upstream breaks off ends with an error event in the client's format. While a streamed
provider is silent, Anthropic-format clients get ``ping`` events (addon/stream_pings.py).

Whole answers are read before they go back (a failure mid-body can still fail over). The request
as sent to the target that answered is written onto the flow, so mitmproxy's flow list shows the
real provider call.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from http import HTTPStatus
from typing import Any

from mitmproxy import ctx, http

from addon.balancing import Balancing, Call
from addon.flows import (
    STREAM_TYPES,
    FlowState,
    point_at_loopback,
    show_upstream,
    upstream_header_fields,
)
from addon.stream_pings import Pinger, hook_pings
from addon.upstream_client import (
    CONNECT,
    LAST_CHUNK,
    TIMEOUT,
    Headers,
    Timeouts,
    UpstreamClient,
    UpstreamFailure,
    UpstreamResponse,
    body_parts,
    chunk,
    framing,
    header,
    parse_head,
    read_head,
    write_head,
)
from transforms import balancer
from transforms.config import NO_RETRIES, Balancer
from transforms.errors import GatewayError
from transforms.ingress import client_error
from transforms.keepalive import PingMarks, wants_pings
from transforms.pipeline import Prepared
from transforms.types import Upstream

logger = logging.getLogger("ai_proxy")

RELAY_HEADER = "x-ai-proxy-relay"
_RELAY_HEADER = RELAY_HEADER.encode()
# Headers of one hop: never copied from the provider's answer to mitmproxy's.
_HOP_HEADERS = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"proxy-connection", b"upgrade"}
)
_ERROR_CODES = {CONNECT: "upstream_connect_failed", TIMEOUT: "upstream_timeout"}
RELAY_CHOICES = ("all", "balanced")
MAX_TICKETS = 100_000  # flows waiting for their tries or for the relay (a killed flow never comes)


class Ticket:
    __slots__ = ("call", "exchange", "flow", "state")

    def __init__(self, flow: http.HTTPFlow, state: FlowState, call: Call | None) -> None:
        self.flow = flow
        self.state = state
        self.call = call
        # The tries made in the request hook, once their answer is a stream: mitmproxy dials the
        # relay, which passes it on.
        self.exchange: Exchange | None = None


class Whole:
    """An answer that goes back in one piece: the provider's, or the gateway's own error."""

    __slots__ = ("body", "headers", "reason", "status")

    def __init__(self, status: int, reason: bytes, headers: Headers, body: bytes) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers  # without hop headers; content-length is the body's
        self.body = body


class UpstreamRelay:
    """Listed after the cassettes: a replayed flow is theirs, every other prepared flow is relayed."""

    def __init__(self, gateway: Any, balancing: Balancing) -> None:
        self.gateway = gateway
        self.balancing = balancing
        self.tickets: dict[str, Ticket] = {}
        self.client = UpstreamClient()
        self.port: int | None = None
        self._server: asyncio.Server | None = None
        self._starting: asyncio.Task[None] | None = None
        self.only_balanced = False  # ai_proxy_relay=balanced
        # mitmproxy's upstream: mode sends flows through another proxy, which the relay's own
        # connections would bypass: plain routes are then left to mitmproxy.
        self.behind_proxy = False
        self.hook_exchange = InHookExchange(self)

    def load(self, loader: Any) -> None:
        loader.add_option(
            "ai_proxy_relay",
            str,
            "all",
            "Which routes' upstream exchange the gateway performs itself: all (dead, reset or slow "
            "upstreams answered in the client's format on every route), balanced (only routes with "
            "targets or a balancer: plain routes skip the relay hop, a dead upstream gets "
            "mitmproxy's HTML 502, and Anthropic-format clients of a slow provider get no pings).",
            choices=RELAY_CHOICES,
        )

    def configure(self, updated: set[str]) -> None:
        if "ai_proxy_relay" in updated:
            self.only_balanced = ctx.options.ai_proxy_relay == "balanced"
        if "mode" in updated:
            self.behind_proxy = any(mode.startswith("upstream:") for mode in ctx.options.mode)
            if self.behind_proxy:
                logger.warning(
                    "ai_proxy: upstream proxy mode: plain routes go through it; routes with targets "
                    "or a balancer reach their providers directly (the upstream relay)"
                )
        if updated & {"ssl_insecure", "ssl_verify_upstream_trusted_ca"}:
            options = ctx.options
            self.client.tls_settings(not options.ssl_insecure, options.ssl_verify_upstream_trusted_ca)

    def running(self) -> None:
        # Not awaited here: an async `running` would let mitmproxy start (client replays...) before
        # its own addons are ready. The socket is bound now, so the port is known; connections
        # wait in its backlog until the server accepts them, a moment later.
        # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say so, and without it
        # Nagle holds a body behind its head for mitmproxy's delayed ACK (40 ms a request).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        sock.listen(512)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._starting = asyncio.get_running_loop().create_task(self._start(sock))
        addons = ctx.master.addons
        if self.hook_exchange not in addons.chain:
            addons.add(self.hook_exchange)  # last in mitmproxy's chain: after every other request hook

    async def _start(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_server(self._serve, sock=sock)

    def done(self) -> None:
        addons = ctx.master.addons
        if self.hook_exchange in addons.chain:  # a reloaded script brings its own
            addons.remove(self.hook_exchange)
        if self._starting is not None:
            self._starting.cancel()
            self._starting = None
        if self._server is not None:
            self._server.close()
            self._server = None
            self.port = None
        self.client.close()

    # --- mitmproxy hooks -------------------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> None:
        if self.port is None or flow.response is not None:
            return
        state = self.gateway.flow_state(flow)
        if state is None or state.prep is None or state.prep.inspected or state.replayed:
            return
        call = self.balancing.call(flow)
        if not self.relays(call):
            return
        if "upgrade" in flow.request.headers:  # WebSockets keep mitmproxy's own upstream connection
            return
        if flow.request.stream:  # a streamed upload's body has already gone upstream on mitmproxy's own
            return
        if len(self.tickets) >= MAX_TICKETS:
            self.tickets.pop(next(iter(self.tickets)))
        # The tries are made by InHookExchange, once every other addon has seen the request.
        self.tickets[flow.id] = Ticket(flow, state, call)
        if call is not None:
            state.target = call.target_facts(state.prep.request_model)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        state = self.gateway.flow_state(flow)
        if state is not None and state.pings is not None:
            hook_pings(flow, state)

    def error(self, flow: http.HTTPFlow) -> None:
        self.tickets.pop(flow.id, None)

    def relays(self, call: Call | None) -> bool:
        """Whether a prepared flow's exchange is the relay's: always for a balanced route."""
        return call is not None or not (self.only_balanced or self.behind_proxy)

    # --- the loopback server ---------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection from mitmproxy: requests in turn (keep-alive), each for a parked stream."""
        try:
            while True:
                try:
                    data = await read_head(reader)
                except asyncio.IncompleteReadError:
                    return  # mitmproxy closed the connection between requests
                _method, _target, _version, headers = parse_head(data)
                # The request went upstream from the request hook: its body here (none, unless
                # another addon added one) is read past.
                length = framing(headers) or 0
                if length > 0:
                    await reader.readexactly(length)
                elif length < 0:
                    async for _part in body_parts(reader, length):
                        pass
                ticket = self.tickets.pop((header(headers, _RELAY_HEADER) or b"").decode(), None)
                if ticket is None or ticket.exchange is None:
                    await write_whole(
                        writer, json_whole(502, b'{"error":{"message":"unknown relay ticket"}}')
                    )
                else:  # a stream parked by the request hook
                    await ticket.exchange.stream_to(writer)
                if b"close" in (header(headers, b"connection") or b"").lower():
                    return
        except (ConnectionError, ValueError, asyncio.IncompleteReadError):
            return  # mitmproxy dropped the connection (its client went away)
        except Exception:
            logger.exception("ai_proxy: internal error in the upstream relay")
        finally:
            writer.close()


class InHookExchange:
    """Makes a relayed flow's tries in mitmproxy's ``request`` hook, and hands mitmproxy a whole
    answer as the flow's response: no loopback hop (the relay's costs about a fifth of the gateway's
    throughput in the benchmark). It is added last to mitmproxy's chain, so every other addon has
    seen the request first, as it would before mitmproxy sends it: the flow list shows it in flight,
    Save keeps it, an intercept is waited out (and its edits sent), and a flow another addon
    re-pointed (say, map_remote) is left to mitmproxy. A streamed answer is parked on the ticket and
    the flow re-pointed at the relay, which passes it on chunk by chunk."""

    def __init__(self, relay: UpstreamRelay) -> None:
        self.relay = relay

    async def request(self, flow: http.HTTPFlow) -> None:
        relay = self.relay
        ticket = relay.tickets.get(flow.id)
        if ticket is None or ticket.exchange is not None:
            return  # not the gateway's, or parked for the relay already
        prep = ticket.state.prep
        assert prep is not None
        del relay.tickets[flow.id]
        if flow.intercepted:
            await flow.wait_for_resume()
        req, up = flow.request, prep.upstream
        if flow.response is not None or flow.error is not None or relay.port is None:
            return  # answered or killed meanwhile
        if req.host != up.host or req.port != up.port or req.scheme != up.scheme:
            return  # sent elsewhere by another addon: mitmproxy's own exchange
        started = time.time()
        fields = first_fields(req, up)
        exchange = Exchange(relay, ticket, fields, req.raw_content or b"", shown=True)
        try:
            whole = await exchange.run()
        except Exception:
            logger.exception("ai_proxy: internal error in the upstream exchange")
            whole = json_whole(502, b'{"error":{"message":"internal error in the upstream exchange"}}')
        if whole is None:  # a stream: mitmproxy dials the relay, which passes it on
            ticket.exchange = exchange
            relay.tickets[flow.id] = ticket
            point_at_loopback(req, relay.port, RELAY_HEADER, flow.id)
            req.content = b""  # already sent: mitmproxy asks the relay for the answer only
            return
        flow.response = http.Response(
            b"HTTP/1.1",
            whole.status,
            whole.reason,
            http.Headers(whole.headers),
            whole.body,
            None,
            started,
            time.time(),
        )


class Exchange:
    """One flow's tries: ``run`` makes them and returns the answer when it is whole; a streamed one
    goes back with ``stream_to``."""

    def __init__(
        self, relay: UpstreamRelay, ticket: Ticket, fields: Headers, body: bytes, shown: bool = False
    ) -> None:
        self.relay = relay
        self.flow = ticket.flow
        self.state = ticket.state
        self.call = ticket.call
        prep = ticket.state.prep
        assert prep is not None
        self.prep: Prepared = prep
        self.fields = fields  # the first try sends what mitmproxy would have sent, to the provider
        self.body = body
        self.streaming: UpstreamResponse | None = None
        # The flow's request already is the call sent (in the request hook, until a fallback).
        self.shown = shown
        config: Balancer = self.call.config if self.call is not None else NO_RETRIES
        self.timeouts = Timeouts(
            config.connect_timeout / 1000, config.read_timeout / 1000, config.write_timeout / 1000
        )

    async def run(self) -> Whole | None:
        tries = 0
        while True:
            tries += 1
            response, kind, failure, whole = await self._try()
            if kind is None:
                return self._answered(response, whole)  # type: ignore[arg-type]
            retry_after = None
            if response is not None:
                retry_after = balancer.retry_after_seconds(response.header(b"retry-after"), time.time())
            nxt = None
            if self.call is not None:
                nxt = self.relay.balancing.next_target(self.call, tries, kind, retry_after)
            if nxt is None:
                if response is not None:  # the provider's own error stands: the gateway translates it
                    return await self._provider_error(response)
                return self._failed(failure)  # type: ignore[arg-type]
            if response is not None:
                response.close()
            refused = await self._move_to(nxt)
            if refused is not None:
                return refused

    async def _try(self) -> tuple[UpstreamResponse | None, str | None, UpstreamFailure | None, bytes | None]:
        """One try: (answer, failover criterion it met or None, failure, whole body if read)."""
        up = self.prep.upstream
        call = self.call
        if call is not None:
            balancer.started(call.pool, call.index)
            call.tried.add(call.index)
            call.try_started = time.monotonic()
        try:
            response = await self.relay.client.send(
                up.scheme, up.host, up.port, up.method, up.target, self.fields, self.body, self.timeouts
            )
        except UpstreamFailure as failure:
            return None, balancer.failure_kind(None, failure.case == TIMEOUT), failure, None
        if response.status >= 400:
            kind = balancer.failure_kind(response.status)
            if call is not None and balancer.fails_over(call.pool, kind):
                return response, kind, None, None
            return response, None, None, None  # not a failover criterion: the client gets it
        if self._streams(response):
            return response, None, None, None
        try:  # a whole answer is read before the client sees a byte: a failure here can fail over
            return response, None, None, await response.read()
        except UpstreamFailure as failure:
            return None, balancer.failure_kind(None, failure.case == TIMEOUT), failure, None

    def _streams(self, response: UpstreamResponse) -> bool:
        return self.prep.stream or (response.header(b"content-type") or "").startswith(STREAM_TYPES)

    async def _move_to(self, index: int) -> Whole | None:
        """The next try's request, prepared afresh for its target; the client's error when it
        cannot be."""
        call = self.call
        assert call is not None
        if index == call.index:
            self.state.retries += 1
            return None
        self.state.fallbacks += 1
        self.shown = False
        route = call.target_route(index)
        try:
            prep = await self.relay.gateway.prepare_again(route, call.inbound)
        except GatewayError as e:  # this target cannot take the request: the client is told why
            call.settled = True
            self.state.failure = e.message
            return json_whole(e.status, client_error(self.state.route, e.status, e.body()))
        call.index = index
        self.prep = self.state.prep = prep
        self.state.route = route
        self.state.target = call.target_facts(prep.request_model)
        self.fields = upstream_header_fields(call.inbound.headers, prep.upstream)
        self.body = prep.upstream.body
        return None

    def _answered(self, response: UpstreamResponse, whole: bytes | None) -> Whole | None:
        if self.call is not None:
            self.call.answered = True
        if whole is None:
            self.streaming = response
            return None
        self._show()
        headers = [(k, v) for k, v in response.headers if k not in _HOP_HEADERS and k != b"content-length"]
        headers.append((b"content-length", str(len(whole)).encode()))
        return Whole(response.status, response.reason, headers, whole)

    def _show(self) -> None:
        """The flow's request as sent to the target that answered: mitmproxy's flow list shows it."""
        if not self.shown:
            show_upstream(self.flow.request, self.fields, self.prep.upstream)
            self.shown = True

    async def stream_to(self, writer: asyncio.StreamWriter) -> None:
        """The streamed answer, chunk by chunk as it arrives."""
        response = self.streaming
        assert response is not None
        # Shown only now: the parked flow had to reach the relay first.
        show_upstream(self.flow.request, self.fields, self.prep.upstream)
        headers = [(k, v) for k, v in response.headers if k not in _HOP_HEADERS]
        start = b"HTTP/1.1 %d %b" % (response.status, response.reason)
        chunked = response.length is None or response.length < 0  # else its content-length stands
        if chunked:
            headers.append((b"transfer-encoding", b"chunked"))
        # Keep-alive pings while the provider is silent: a body of promised length takes no mark.
        marks = PingMarks() if chunked and wants_pings(self.prep) else None
        self.state.pings = marks  # before the head: mitmproxy's responseheaders hook finds it
        writer.write(write_head(start, headers))
        pinger = Pinger(writer, marks) if marks is not None else None
        try:
            async for part in response.chunks():
                writer.write(chunk(part) if chunked else part)
                if pinger is not None:
                    pinger.forwarded(len(part))
                await writer.drain()
        except UpstreamFailure as failure:
            # Too late for another target: the client's stream ends with an error event.
            model = self.prep.request_model
            self.state.cut = f"{self.prep.route.provider} ({model}) broke off the stream: {failure.detail}"
            if self.call is not None:
                self.call.settled = True
                balancer.failed(self.call.pool, self.call.index, time.monotonic())
            if not chunked:  # a length was promised: mitmproxy must see the answer end early
                raise ConnectionResetError("upstream stream cut") from None
        except BaseException:
            response.close()
            raise
        finally:
            if pinger is not None:
                pinger.stop()
        if chunked:
            writer.write(LAST_CHUNK)
            await writer.drain()

    async def _provider_error(self, response: UpstreamResponse) -> Whole:
        try:
            body = await response.read()
        except UpstreamFailure as failure:
            return self._failed(failure)
        whole = self._answered(response, body)
        assert whole is not None
        return whole

    def _failed(self, failure: UpstreamFailure) -> Whole:
        """No provider answered: the gateway's own error, in the client's format."""
        status = 504 if failure.case == TIMEOUT else 502
        code = _ERROR_CODES.get(failure.case, "upstream_reset")
        route = self.prep.route
        what = {
            CONNECT: "cannot be reached",
            TIMEOUT: "timed out",
        }.get(failure.case, "reset the connection")
        message = (
            f"the {route.provider} upstream for model {self.prep.request_model} {what} ({failure.detail})"
        )
        self.state.failure = message
        logger.warning(f"ai_proxy route={route.name}: {message}")
        self._show()
        return json_whole(
            status, client_error(self.state.route, status, GatewayError(status, message, code).body())
        )


def first_fields(req: http.Request, up: Upstream) -> Headers:
    """The first try's header fields: the flow's request as every other addon left it (names
    lower-case), with the provider's Host."""
    fields = [(k, v) for name, v in req.headers.fields if (k := name.lower()) not in (b"host", _RELAY_HEADER)]
    fields.append((b"host", head_host(up.scheme, up.host, up.port)))
    return fields


def head_host(scheme: str, host: str, port: int) -> bytes:
    default = 443 if scheme == "https" else 80
    return (host if port == default else f"{host}:{port}").encode()


def json_whole(status: int, body: bytes) -> Whole:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return Whole(status, HTTPStatus(status).phrase.encode(), headers, body)


async def write_whole(writer: asyncio.StreamWriter, whole: Whole) -> None:
    start = b"HTTP/1.1 %d %b" % (whole.status, whole.reason)
    writer.write(write_head(start, whole.headers) + whole.body)  # one write: head and body
    await writer.drain()
