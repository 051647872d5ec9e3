"""The relay's HTTP/1.1 on both of its sides: the client to providers (keep-alive connections pooled
per origin, a timeout on connecting, on each write and on each read) and the reading and writing of
messages with mitmproxy. asyncio streams and a small codec of its own: the relay passes every
request and answer twice, and with h11 (installed with mitmproxy) on both sides it halved the
gateway's throughput in the benchmark (see README, Performance).

Failures are ``UpstreamFailure`` with the case named (connect, reset, timeout), so the relay can
tell the balancer which failover criterion a try met and the client which error it got.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import certifi

READ_SIZE = 65536
MAX_HEAD = 1 << 20  # a response or request head larger than this is a broken exchange
IDLE_PER_ORIGIN = 32  # keep-alive connections kept per (scheme, host, port)

CONNECT, RESET, TIMEOUT = "connect", "reset", "timeout"
Headers = list[tuple[bytes, bytes]]


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
    __slots__ = ("origin", "reader", "received", "writer")

    def __init__(self, origin: Origin, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.origin = origin
        self.reader = reader
        self.writer = writer
        self.received = False  # bytes of the current answer have arrived

    def close(self) -> None:
        self.writer.close()


# --- the codec --------------------------------------------------------------------------------------


def parse_head(data: bytes) -> tuple[bytes, bytes, bytes, Headers]:
    """A message head (up to and with its blank line): the start line's three parts and the
    headers, names lower-cased. Raises ValueError when it is no HTTP/1 head."""
    lines = data[:-4].split(b"\r\n")
    first, second, third = [*lines[0].split(b" ", 2), b"", b""][:3]
    headers: Headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise ValueError(f"bad header line {line[:80]!r}")
        headers.append((name.lower(), value.strip()))
    return first, second, third, headers


def header(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def framing(headers: Headers) -> int | None:
    """The body's length; -1: chunked; None: until the connection closes."""
    encoding = header(headers, b"transfer-encoding")
    if encoding is not None and b"chunked" in encoding.lower():
        return -1
    length = header(headers, b"content-length")
    if length is not None:
        if not length.isdigit():
            raise ValueError(f"bad content-length {length[:40]!r}")
        return int(length)
    return None


def write_head(start: bytes, headers: Headers) -> bytes:
    return start + b"\r\n" + b"".join(name + b": " + value + b"\r\n" for name, value in headers) + b"\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """A head; IncompleteReadError at a clean end (``partial`` says whether it was clean)."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise ValueError("message head too large") from None


async def body_parts(reader: asyncio.StreamReader, length: int | None) -> AsyncIterator[bytes]:
    """The body as it arrives, framed by ``length`` (see ``framing``). IncompleteReadError when
    the connection ends before the body does."""
    if length is None:
        while data := await reader.read(READ_SIZE):
            yield data
        return
    if length >= 0:
        async for data in _sized(reader, length):
            yield data
        return
    while True:
        line = await reader.readuntil(b"\r\n")
        size = int(line.split(b";", 1)[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers: dropped
                pass
            return
        async for data in _sized(reader, size):
            yield data
        await reader.readexactly(2)


async def _sized(reader: asyncio.StreamReader, size: int) -> AsyncIterator[bytes]:
    """``size`` bytes, in the pieces they arrive in."""
    while size:
        data = await reader.read(min(size, READ_SIZE))
        if not data:
            raise asyncio.IncompleteReadError(b"", size)
        size -= len(data)
        yield data


# --- the client -------------------------------------------------------------------------------------


class UpstreamResponse:
    """An answer whose head has arrived; its body is read with ``chunks()`` or ``read()``."""

    def __init__(
        self,
        client: UpstreamClient,
        connection: _Connection,
        status: int,
        reason: bytes,
        headers: Headers,
        length: int | None,
        read_timeout: float,
        reusable: bool,
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers  # names lower-case
        self.length = length  # see framing()
        self._client = client
        self._connection: _Connection | None = connection
        self._read_timeout = read_timeout
        self._reusable = reusable

    def header(self, name: bytes) -> str | None:
        value = header(self.headers, name)
        return None if value is None else value.decode("latin-1")

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; the connection goes back to the pool once it is complete."""
        connection = self._connection
        assert connection is not None
        parts = body_parts(connection.reader, self.length).__aiter__()
        try:
            while True:
                try:
                    async with asyncio.timeout(self._read_timeout):
                        data = await parts.__anext__()
                except StopAsyncIteration:
                    break
                yield data
        except TimeoutError:
            self.close()
            raise UpstreamFailure(TIMEOUT, f"no data for {self._read_timeout:g} s") from None
        except (asyncio.IncompleteReadError, OSError, ValueError) as e:
            self.close()
            raise UpstreamFailure(RESET, _broken(e)) from None
        except BaseException:
            self.close()
            raise
        self._connection = None
        if self._reusable:
            self._client._release(connection)
        else:
            connection.close()

    async def read(self) -> bytes:
        return b"".join([part async for part in self.chunks()])

    def close(self) -> None:
        """Drop the answer unread: its connection cannot carry another request."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class UpstreamClient:
    def __init__(self) -> None:
        self._idle: dict[Origin, list[_Connection]] = {}
        self._tls: ssl.SSLContext | None = None
        self.verify = True
        self.ca_file: str | None = None  # certifi's CAs unless set

    def tls_settings(self, verify: bool, ca_file: str | None) -> None:
        """mitmproxy's ssl_insecure and ssl_verify_upstream_trusted_ca, for the next connections."""
        self.verify, self.ca_file, self._tls = verify, ca_file, None

    async def send(
        self,
        scheme: str,
        host: str,
        port: int,
        method: str,
        target: str,
        headers: Headers,
        body: bytes,
        timeouts: Timeouts,
    ) -> UpstreamResponse:
        """Send a request and wait for its answer's head. A kept-alive connection the provider has
        closed meanwhile is replaced once, silently: that is no failure of the provider."""
        origin = (scheme, host, port)
        request = write_head(f"{method} {target} HTTP/1.1".encode(), headers) + body
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if connection.reader.at_eof():
                connection.close()
                continue
            try:
                return await self._exchange(connection, request, method, timeouts)
            except UpstreamFailure as failure:
                if failure.case != RESET or connection.received:  # the provider did answer, badly
                    raise
        connection = await self._connect(origin, timeouts.connect)
        return await self._exchange(connection, request, method, timeouts)

    async def _connect(self, origin: Origin, timeout: float) -> _Connection:
        scheme, host, port = origin
        tls = self._tls_context() if scheme == "https" else None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls else None, limit=MAX_HEAD
                )
        except TimeoutError:
            raise UpstreamFailure(TIMEOUT, f"no connection to {host}:{port} within {timeout:g} s") from None
        except (OSError, ssl.SSLError) as e:
            raise UpstreamFailure(CONNECT, f"{host}:{port}: {e}") from None
        return _Connection(origin, reader, writer)

    async def _exchange(
        self, connection: _Connection, request: bytes, method: str, timeouts: Timeouts
    ) -> UpstreamResponse:
        connection.received = False
        try:
            connection.writer.write(request)
            try:
                async with asyncio.timeout(timeouts.write):
                    await connection.writer.drain()
            except TimeoutError:
                raise UpstreamFailure(
                    TIMEOUT, f"sending the request took over {timeouts.write:g} s"
                ) from None
            # Sent: from now on a failure is the provider's, except a clean end before any byte
            # (a kept-alive connection it had closed meanwhile).
            connection.received = True
            while True:
                try:
                    async with asyncio.timeout(timeouts.read):
                        data = await read_head(connection.reader)
                except asyncio.IncompleteReadError as e:
                    connection.received = bool(e.partial)
                    raise UpstreamFailure(RESET, _broken(e)) from None
                version, code, reason, headers = parse_head(data)
                if not version.startswith(b"HTTP/1.") or not code.isdigit():
                    raise ValueError(f"not an HTTP/1 answer: {data[:80]!r}")
                status = int(code)
                if status >= 200:
                    break
                # 100 Continue and other interim answers: wait for the real one
            length = framing(headers)
            if method == "HEAD" or status in (204, 304):
                length = 0
            connection_header = (header(headers, b"connection") or b"").lower()
            reusable = length is not None and version == b"HTTP/1.1" and b"close" not in connection_header
            return UpstreamResponse(
                self, connection, status, reason, headers, length, timeouts.read, reusable
            )
        except TimeoutError:
            connection.close()
            raise UpstreamFailure(TIMEOUT, f"no data for {timeouts.read:g} s") from None
        except (OSError, ValueError) as e:
            connection.close()
            raise UpstreamFailure(RESET, _broken(e)) from None
        except BaseException:
            connection.close()
            raise

    def _release(self, connection: _Connection) -> None:
        idle = self._idle.setdefault(connection.origin, [])
        if len(idle) < IDLE_PER_ORIGIN:
            idle.append(connection)
        else:
            connection.close()

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            context = ssl.create_default_context(cafile=self.ca_file or certifi.where())
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


def _broken(error: BaseException) -> str:
    if isinstance(error, asyncio.IncompleteReadError):
        return "the connection was closed" + (" in the middle of the answer" if error.partial else "")
    if isinstance(error, ValueError):
        return f"the HTTP exchange broke off: {error}"
    return str(error) or type(error).__name__
