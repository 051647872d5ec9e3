"""The relay's HTTP/1.1 client to providers: asyncio streams and h11 (both come with mitmproxy),
keep-alive connections pooled per origin, a timeout on connecting, on each write and on each read.

Failures are ``UpstreamFailure`` with the case named (connect, reset, timeout), so the relay can
tell the balancer which failover criterion a try met and the client which error it got.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import certifi
import h11

READ_SIZE = 65536
IDLE_PER_ORIGIN = 32  # keep-alive connections kept per (scheme, host, port)

CONNECT, RESET, TIMEOUT = "connect", "reset", "timeout"


class UpstreamFailure(Exception):
    """A try that got no complete answer: ``case`` is connect, reset or timeout."""

    def __init__(self, case: str, detail: str) -> None:
        super().__init__(detail)
        self.case = case
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds, as the balancer's connect/read/write_timeout (ms) say."""

    connect: float
    read: float
    write: float


Origin = tuple[str, str, int]


class _Connection:
    __slots__ = ("conn", "origin", "reader", "received", "writer")

    def __init__(self, origin: Origin, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.origin = origin
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.CLIENT)
        self.received = False  # bytes of the current answer have arrived

    def close(self) -> None:
        self.writer.close()


class UpstreamResponse:
    """An answer whose head has arrived; its body is read with ``chunks()`` or ``read()``."""

    def __init__(
        self, client: UpstreamClient, connection: _Connection, head: h11.Response, read_timeout: float
    ):
        self.status = head.status_code
        self.reason = head.reason
        self.headers = head.headers  # h11 gives lower-case names
        self._client = client
        self._connection: _Connection | None = connection
        self._read_timeout = read_timeout

    def header(self, name: bytes) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; the connection goes back to the pool once it is complete."""
        connection = self._connection
        assert connection is not None
        try:
            while True:
                event = await _next_event(connection, self._read_timeout)
                if isinstance(event, h11.Data):
                    yield bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    self._connection = None
                    self._client._release(connection)
                    return
        except BaseException:
            self.close()
            raise

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    def close(self) -> None:
        """Drop the answer unread: its connection cannot carry another request."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class UpstreamClient:
    def __init__(self, verify: bool = True) -> None:
        self._idle: dict[Origin, list[_Connection]] = {}
        self._tls: ssl.SSLContext | None = None
        self.verify = verify

    async def send(
        self,
        scheme: str,
        host: str,
        port: int,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeouts: Timeouts,
    ) -> UpstreamResponse:
        """Send a request and wait for its answer's head. A kept-alive connection the provider has
        closed meanwhile is replaced once, silently: that is no failure of the provider."""
        origin = (scheme, host, port)
        request = h11.Request(method=method, target=target, headers=headers)
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if connection.reader.at_eof():
                connection.close()
                continue
            try:
                return await self._exchange(connection, request, body, timeouts)
            except UpstreamFailure as failure:
                if failure.case != RESET or connection.received:  # the provider did answer, badly
                    raise
        connection = await self._connect(origin, timeouts.connect)
        return await self._exchange(connection, request, body, timeouts)

    async def _connect(self, origin: Origin, timeout: float) -> _Connection:
        scheme, host, port = origin
        tls = self._tls_context() if scheme == "https" else None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls else None, limit=READ_SIZE
                )
        except TimeoutError:
            raise UpstreamFailure(TIMEOUT, f"no connection to {host}:{port} within {timeout:g} s") from None
        except (OSError, ssl.SSLError) as e:
            raise UpstreamFailure(CONNECT, f"{host}:{port}: {e}") from None
        return _Connection(origin, reader, writer)

    async def _exchange(
        self, connection: _Connection, request: h11.Request, body: bytes, timeouts: Timeouts
    ) -> UpstreamResponse:
        conn = connection.conn
        connection.received = False
        try:
            data = conn.send(request) or b""
            if body:
                data += conn.send(h11.Data(data=body)) or b""
            data += conn.send(h11.EndOfMessage()) or b""
            connection.writer.write(data)
            try:
                async with asyncio.timeout(timeouts.write):
                    await connection.writer.drain()
            except TimeoutError:
                raise UpstreamFailure(
                    TIMEOUT, f"sending the request took over {timeouts.write:g} s"
                ) from None
            while True:
                event = await _next_event(connection, timeouts.read)
                if isinstance(event, h11.Response):
                    return UpstreamResponse(self, connection, event, timeouts.read)
                # h11.InformationalResponse (100 Continue...): wait for the real answer
        except BaseException:
            connection.close()
            raise

    def _release(self, connection: _Connection) -> None:
        conn = connection.conn
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            idle = self._idle.setdefault(connection.origin, [])
            if len(idle) < IDLE_PER_ORIGIN:
                idle.append(connection)
                return
        connection.close()

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            context = ssl.create_default_context(cafile=certifi.where())
            if not self.verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            context.set_alpn_protocols(["http/1.1"])
            self._tls = context
        return self._tls

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


async def _next_event(connection: _Connection, read_timeout: float) -> object:
    conn = connection.conn
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as e:
            raise UpstreamFailure(RESET, f"the HTTP exchange broke off: {e}") from None
        if event is not h11.NEED_DATA:
            if isinstance(event, h11.ConnectionClosed):
                raise UpstreamFailure(RESET, "the connection was closed")
            return event
        try:
            async with asyncio.timeout(read_timeout):
                data = await connection.reader.read(READ_SIZE)
        except TimeoutError:
            raise UpstreamFailure(TIMEOUT, f"no data for {read_timeout:g} s") from None
        except OSError as e:
            raise UpstreamFailure(RESET, str(e) or type(e).__name__) from None
        connection.received = connection.received or bool(data)
        conn.receive_data(data)  # b"": the peer closed; h11 says whether that was allowed
