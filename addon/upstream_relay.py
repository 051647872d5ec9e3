"""The upstream relay: the gateway owns the exchange with the provider, so that a dead, reset or slow
upstream is answered in the client's format, and a route's balancer can retry and fall back.

Why a relay: mitmproxy answers an upstream it cannot reach (or that breaks off) with its own HTML
502 page, which no hook can replace, and cannot retry within a flow; an answer an addon sets is sent
whole, so it cannot carry a stream. So, as the cassettes' replay server does, this addon re-points
every prepared flow at a loopback server of its own (in mitmproxy's event loop), naming the flow in
``x-ai-proxy-relay``. The relay performs the tries (``addon/upstream_client.py``), each target's
request prepared afresh by the pipeline; before the answer's head goes back it writes the request as
sent to the target that answered onto the flow, so mitmproxy's flow list shows the real provider
call. Whole answers are read before they go back (a failure mid-body can still fail over); streams
go back chunk by chunk as they arrive, and once their first byte is on its way no other target is
tried: a stream the upstream breaks off ends with an error event in the client's format. While a
streamed provider is silent, Anthropic-format clients get ``ping`` events (addon/stream_pings.py).
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

logger = logging.getLogger("ai_proxy")

RELAY_HEADER = "x-ai-proxy-relay"
_RELAY_HEADER = RELAY_HEADER.encode()
# Headers of one hop: never copied from the provider's answer to mitmproxy's.
_HOP_HEADERS = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"proxy-connection", b"upgrade"}
)
_ERROR_CODES = {CONNECT: "upstream_connect_failed", TIMEOUT: "upstream_timeout"}
RELAY_CHOICES = ("all", "balanced")
MAX_TICKETS = 100_000  # flows re-pointed and not yet served (a killed flow never comes)


class Ticket:
    __slots__ = ("call", "flow", "state")

    def __init__(self, flow: http.HTTPFlow, state: FlowState, call: Call | None) -> None:
        self.flow = flow
        self.state = state
        self.call = call


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

    async def _start(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_server(self._serve, sock=sock)

    def done(self) -> None:
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
        self.tickets[flow.id] = Ticket(flow, state, call)
        if call is not None:
            state.target = call.target_facts(state.prep.request_model)
        point_at_loopback(flow.request, self.port, RELAY_HEADER, flow.id)

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
        """One connection from mitmproxy: requests in turn (keep-alive), each one flow's tries."""
        try:
            while True:
                try:
                    data = await read_head(reader)
                except asyncio.IncompleteReadError:
                    return  # mitmproxy closed the connection between requests
                _method, _target, _version, headers = parse_head(data)
                length = framing(headers) or 0  # a request without a length has no body
                if length > 0:
                    body = await reader.readexactly(length)
                elif length < 0:
                    body = b"".join([part async for part in body_parts(reader, length)])
                else:
                    body = b""
                ticket = self.tickets.pop((header(headers, _RELAY_HEADER) or b"").decode(), None)
                if ticket is None:
                    await _answer(writer, 502, b'{"error":{"message":"unknown relay ticket"}}')
                else:
                    await Exchange(self, ticket, writer, headers, body).run()
                if b"close" in (header(headers, b"connection") or b"").lower():
                    return
        except (ConnectionError, ValueError, asyncio.IncompleteReadError):
            return  # mitmproxy dropped the connection (its client went away)
        except Exception:
            logger.exception("ai_proxy: internal error in the upstream relay")
        finally:
            writer.close()


class Exchange:
    """One flow's tries, and the answer that goes back to mitmproxy."""

    def __init__(
        self,
        relay: UpstreamRelay,
        ticket: Ticket,
        writer: asyncio.StreamWriter,
        headers: Headers,
        body: bytes,
    ) -> None:
        self.relay = relay
        self.flow = ticket.flow
        self.state = ticket.state
        self.call = ticket.call
        self.writer = writer
        prep = ticket.state.prep
        assert prep is not None
        self.prep: Prepared = prep
        # The first try sends what mitmproxy sent, to the provider instead of to the relay.
        up = prep.upstream
        self.fields = [(k, v) for k, v in headers if k not in (b"host", _RELAY_HEADER)]
        self.fields.append((b"host", head_host(up.scheme, up.host, up.port)))
        self.body = body
        config: Balancer = self.call.config if self.call is not None else NO_RETRIES
        self.timeouts = Timeouts(
            config.connect_timeout / 1000, config.read_timeout / 1000, config.write_timeout / 1000
        )

    async def run(self) -> None:
        tries = 0
        while True:
            tries += 1
            response, kind, failure, whole = await self._try()
            if kind is None:
                await self._forward(response, whole)  # type: ignore[arg-type]
                return
            retry_after = None
            if response is not None:
                retry_after = balancer.retry_after_seconds(response.header(b"retry-after"), time.time())
            nxt = None
            if self.call is not None:
                nxt = self.relay.balancing.next_target(self.call, tries, kind, retry_after)
            if nxt is None:
                if response is not None:  # the provider's own error stands: the gateway translates it
                    await self._forward_error(response)
                else:
                    await self._fail(failure)  # type: ignore[arg-type]
                return
            if response is not None:
                response.close()
            if not await self._move_to(nxt):
                return

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

    async def _move_to(self, index: int) -> bool:
        """The next try's request, prepared afresh for its target; False when it cannot be."""
        call = self.call
        assert call is not None
        if index == call.index:
            self.state.retries += 1
            return True
        self.state.fallbacks += 1
        route = call.target_route(index)
        try:
            prep = await self.relay.gateway.prepare_again(route, call.inbound)
        except GatewayError as e:  # this target cannot take the request: the client is told why
            call.settled = True
            self.state.failure = e.message
            await self._answer(e.status, client_error(self.state.route, e.status, e.body()))
            return False
        call.index = index
        self.prep = self.state.prep = prep
        self.state.route = route
        self.state.target = call.target_facts(prep.request_model)
        self.fields = upstream_header_fields(call.inbound.headers, prep.upstream)
        self.body = prep.upstream.body
        return True

    async def _forward(self, response: UpstreamResponse, whole: bytes | None) -> None:
        """The answer the client gets: whole, or streamed chunk by chunk as it arrives."""
        if self.call is not None:
            self.call.answered = True
        show_upstream(self.flow.request, self.fields, self.prep.upstream)
        headers = [(k, v) for k, v in response.headers if k not in _HOP_HEADERS]
        start = b"HTTP/1.1 %d %b" % (response.status, response.reason)
        if whole is not None:  # one write: head and body
            headers = [(k, v) for k, v in headers if k != b"content-length"]
            headers.append((b"content-length", str(len(whole)).encode()))
            self.writer.write(write_head(start, headers) + whole)
            await self.writer.drain()
            return
        chunked = response.length is None or response.length < 0  # else its content-length stands
        if chunked:
            headers.append((b"transfer-encoding", b"chunked"))
        # Keep-alive pings while the provider is silent: a body of promised length takes no mark.
        marks = PingMarks() if chunked and wants_pings(self.prep) else None
        self.state.pings = marks  # before the head: mitmproxy's responseheaders hook finds it
        self.writer.write(write_head(start, headers))
        pinger = Pinger(self.writer, marks) if marks is not None else None
        try:
            async for part in response.chunks():
                self.writer.write(chunk(part) if chunked else part)
                if pinger is not None:
                    pinger.forwarded(len(part))
                await self.writer.drain()
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
            self.writer.write(LAST_CHUNK)
            await self.writer.drain()

    async def _forward_error(self, response: UpstreamResponse) -> None:
        try:
            body = await response.read()
        except UpstreamFailure as failure:
            await self._fail(failure)
            return
        await self._forward(response, body)

    async def _fail(self, failure: UpstreamFailure) -> None:
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
        show_upstream(self.flow.request, self.fields, self.prep.upstream)
        await self._answer(
            status, client_error(self.state.route, status, GatewayError(status, message, code).body())
        )

    async def _answer(self, status: int, body: bytes) -> None:
        await _answer(self.writer, status, body)


def head_host(scheme: str, host: str, port: int) -> bytes:
    default = 443 if scheme == "https" else 80
    return (host if port == default else f"{host}:{port}").encode()


async def _answer(writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    start = f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()
    writer.write(write_head(start, headers) + body)  # one write
    await writer.drain()
