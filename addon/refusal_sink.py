"""Where a refused upload's body goes: a loopback server that reads and discards it, then answers the
refusal the gateway decided (401, 403, 429, 413...).

An answer an addon sets before the body is read makes mitmproxy read the whole body into memory first,
and a client sending a body only reads the answer once it has sent it all; so a refused upload is
streamed here instead, at no memory cost, and its answer comes back through mitmproxy unchanged.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from dataclasses import dataclass

TOKEN_HEADER = "x-ai-proxy-refusal"  # names the held answer on the hop to the sink
MAX_HEAD = 64 * 1024
HEAD_SECONDS = 30  # mitmproxy sends the head at once: a connection that does not is dropped


@dataclass(frozen=True, slots=True)
class Held:
    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


class RefusalSink:
    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._held: dict[str, Held] = {}
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(8)  # a client cannot name another flow's answer

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=MAX_HEAD)
        self.port = self._server.sockets[0].getsockname()[1]

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self._held.clear()

    @property
    def running(self) -> bool:
        return self._server is not None

    def hold(self, answer: Held) -> str:
        token = f"{self._prefix}{next(self._ids):x}"
        self._held[token] = answer
        return token

    def drop(self, token: str) -> None:
        self._held.pop(token, None)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_SECONDS)
            headers = {}
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            held = self._held.pop(headers.get(TOKEN_HEADER.encode(), b"").decode("latin-1"), None)
            if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                await _discard_chunked(reader)
            else:
                await _discard(reader, int(headers.get(b"content-length", b"0") or 0))
            if held is None:
                held = Held(404, ((b"content-type", b"text/plain"),), b"no refusal held")
            lines = [f"HTTP/1.1 {held.status} Refused".encode()]
            lines += [name + b": " + value for name, value in held.headers if name.lower() not in _FRAMING]
            lines += [b"content-length: " + str(len(held.body)).encode(), b"connection: close"]
            writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + held.body)
            await writer.drain()
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
            ValueError,
            TimeoutError,
        ):
            pass  # the client went away, or sent what is not HTTP: nothing to answer
        finally:
            writer.close()


_FRAMING = (b"content-length", b"transfer-encoding", b"connection")


async def _discard(reader: asyncio.StreamReader, size: int) -> None:
    while size > 0:
        data = await reader.read(min(size, 1 << 16))
        if not data:
            raise asyncio.IncompleteReadError(b"", size)
        size -= len(data)


async def _discard_chunked(reader: asyncio.StreamReader) -> None:
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers, then the blank line
                pass
            return
        await _discard(reader, size)
        await reader.readexactly(2)
