"""The loopback sink that discards a refused upload's body and then answers the refusal."""

from __future__ import annotations

import asyncio

from addon.refusal_sink import TOKEN_HEADER, Held, RefusalSink


async def exchange(sink: RefusalSink, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", sink.port)
    writer.write(raw)
    await writer.drain()
    writer.write_eof()  # sent it all: a request the sink cannot read then ends instead of waiting
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


def test_the_sink_discards_bodies_and_answers_what_it_holds() -> None:
    async def scenario() -> None:
        sink = RefusalSink()
        await sink.start()
        try:
            held = Held(401, ((b"content-type", b"application/json"), (b"content-length", b"99")), b'{"e":1}')
            token = sink.hold(held)
            chunked = (
                f"POST /v1/files HTTP/1.1\r\n{TOKEN_HEADER}: {token}\r\ntransfer-encoding: chunked\r\n\r\n"
            ).encode() + b"5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\n\r\n"
            answer = await exchange(sink, chunked)
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.split(b"\r\n") == [
                b"HTTP/1.1 401 Refused",
                b"content-type: application/json",
                b"content-length: 7",
                b"connection: close",
            ]
            assert body == b'{"e":1}'
            # The answer is given once: the same token again (or none) is unknown.
            sized = f"POST / HTTP/1.1\r\n{TOKEN_HEADER}: {token}\r\ncontent-length: 70000\r\n\r\n".encode()
            answer = await exchange(sink, sized + b"z" * 70000)
            assert answer.startswith(b"HTTP/1.1 404 ") and answer.endswith(b"no refusal held")
            sink.drop(sink.hold(held))
            assert await exchange(sink, b"garbage without an end") == b""  # not HTTP: closed
        finally:
            sink.close()
        assert not sink.running

    asyncio.run(scenario())
