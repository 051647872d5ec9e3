"""A small, fast static HTTP/1.1 upstream: the stand-in for nginx when nginx cannot be had.

    python -m bench.pyupstream PORT [BIG_STREAM_BYTES]

Answers every request for a known path with the fixed document of ``bench.payloads`` (keep-alive,
Content-Length framing); anything else gets a 404. Request bodies must carry a Content-Length.
"""

from __future__ import annotations

import asyncio
import sys

from bench.payloads import BIG_STREAMS, big_stream, upstream_documents

_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
_BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def _answer(content_type: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def prebuilt_answers(big_size: int) -> dict[bytes, bytes]:
    answers = {path.encode(): _answer(*document) for path, document in upstream_documents().items()}
    for path, provider in BIG_STREAMS.items():
        answers[path.encode()] = _answer("text/event-stream", b"".join(big_stream(provider, big_size)))
    return answers


class StaticProtocol(asyncio.Protocol):
    """Parses pipelined requests out of the byte stream and answers each one from ``answers``."""

    def __init__(self, answers: dict[bytes, bytes]) -> None:
        self.answers = answers
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self._answer_one():
            pass

    def _answer_one(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.transport is None:
            return False
        head = self.buffer[:end]
        length = _content_length(head)
        if length is None:
            self.transport.write(_BAD)
            self.transport.close()
            self.buffer = b""
            return False
        total = end + 4 + length
        if len(self.buffer) < total:
            return False
        path = head.split(b" ", 2)[1].split(b"?", 1)[0]
        self.transport.write(self.answers.get(path, _NOT_FOUND))
        self.buffer = self.buffer[total:]
        return True


def _content_length(head: bytes) -> int | None:
    """The request's body length: 0 without a body, None for a chunked body (not supported)."""
    lower = head.lower()
    if b"\r\ntransfer-encoding:" in lower:
        return None
    at = lower.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    line_end = lower.find(b"\r\n", at + 2)
    value = lower[at + 17 : line_end if line_end > 0 else None]
    return int(value.strip())


async def serve(port: int, answers: dict[bytes, bytes]) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: StaticProtocol(answers), "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    big = int(sys.argv[2]) if len(sys.argv) > 2 else 1 << 20
    asyncio.run(serve(int(sys.argv[1]), prebuilt_answers(big)))
