"""A minimal HTTP/1.1 keep-alive client on asyncio streams, with timestamps.

Just enough HTTP for the benchmark: one request at a time per connection, Content-Length or chunked
answers. It notes when the headers and the first body bytes arrived, which a general client hides.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass


@dataclass(slots=True)
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes  # de-chunked; empty when the body was not kept
    size: int  # body bytes received
    tail: bytes  # the last bytes of the body
    sent_at: float  # perf_counter when the request was written
    headers_at: float
    first_body_at: float  # when the first body bytes (or the first chunk) arrived
    done_at: float

    @property
    def first_chunk_ms(self) -> float:
        return (self.first_body_at - self.sent_at) * 1000

    @property
    def latency_ms(self) -> float:
        return (self.done_at - self.sent_at) * 1000


class _Body:
    """Collects (or only counts) body bytes and notes when the first ones came."""

    TAIL = 64
    PIECE = 1 << 20

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self.parts: list[bytes] = []
        self.size = 0
        self.tail = b""
        self.first_at = 0.0

    def mark_first(self) -> None:
        if not self.first_at:
            self.first_at = time.perf_counter()

    def add(self, data: bytes) -> None:
        self.mark_first()
        self.size += len(data)
        if self.keep:
            self.parts.append(data)
        else:
            self.tail = (self.tail + data)[-self.TAIL :]

    async def read_exactly(self, reader: asyncio.StreamReader, length: int) -> None:
        while length > 0:
            data = await reader.read(min(length, self.PIECE))
            if not data:
                raise asyncio.IncompleteReadError(b"", length)
            self.add(data)
            length -= len(data)


def build_request(host: str, port: int, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Connection:
    """One keep-alive connection; reconnects by itself when the server closed it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def exchange(self, raw_request: bytes, keep_body: bool = True) -> Reply:
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port, limit=1 << 22)
        assert self._reader is not None
        sent_at = time.perf_counter()
        self._writer.write(raw_request)
        try:
            return await self._read_reply(self._reader, sent_at, _Body(keep_body))
        except (asyncio.IncompleteReadError, ConnectionError):
            self.close()
            raise

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    async def _read_reply(self, reader: asyncio.StreamReader, sent_at: float, body: _Body) -> Reply:
        head = await reader.readuntil(b"\r\n\r\n")
        headers_at = time.perf_counter()
        status, headers = _parse_head(head)
        if headers.get("transfer-encoding", "").lower() == "chunked":
            await _read_chunked(reader, body)
        elif "content-length" in headers:
            await body.read_exactly(reader, int(headers["content-length"]))
        else:
            while data := await reader.read(body.PIECE):
                body.add(data)
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        done_at = time.perf_counter()
        return Reply(
            status,
            headers,
            b"".join(body.parts),
            body.size,
            body.tail if not body.keep else b"".join(body.parts)[-body.TAIL :],
            sent_at,
            headers_at,
            body.first_at or done_at,
            done_at,
        )


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in header_lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return int(status_line.split(" ", 2)[1]), headers


async def _read_chunked(reader: asyncio.StreamReader, body: _Body) -> None:
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        body.mark_first()
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers
            return
        await body.read_exactly(reader, size)
        await reader.readexactly(2)  # the CRLF after the chunk
