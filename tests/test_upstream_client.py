"""The relay's HTTP/1.1 codec and client (addon/upstream_client.py) against local servers."""

from __future__ import annotations

import asyncio

import pytest
from fake_upstream import FakeUpstream, refused_port

from addon.upstream_client import (
    CONNECT,
    RESET,
    TIMEOUT,
    Timeouts,
    UpstreamClient,
    UpstreamFailure,
    body_parts,
    chunk,
    framing,
    parse_head,
    write_head,
)

FAST = Timeouts(2, 0.5, 2)


def test_parse_head_and_framing() -> None:
    head = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: 12\r\n\r\n"
    version, code, reason, headers = parse_head(head)
    assert (version, code, reason) == (b"HTTP/1.1", b"429", b"Too Many Requests")
    assert headers == [(b"retry-after", b"3"), (b"content-length", b"12")]
    assert framing(headers) == 12
    assert framing([(b"transfer-encoding", b"chunked"), (b"content-length", b"3")]) == -1
    assert framing([]) is None
    with pytest.raises(ValueError):
        framing([(b"content-length", b"-1")])
    with pytest.raises(ValueError):
        parse_head(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n")


def test_write_head_and_chunk() -> None:
    assert write_head(b"POST /x HTTP/1.1", [(b"a", b"1")]) == b"POST /x HTTP/1.1\r\na: 1\r\n\r\n"
    assert chunk(b"hello world, 16b") == b"10\r\nhello world, 16b\r\n"


def read_parts(data: bytes, length: int | None) -> list[bytes]:
    async def run() -> list[bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return [part async for part in body_parts(reader, length)]

    return asyncio.run(run())


def test_body_parts_by_framing() -> None:
    assert (
        b"".join(read_parts(b"5\r\nhello\r\n6;x=1\r\n world\r\n0\r\nT: 1\r\n\r\nNEXT", -1)) == b"hello world"
    )
    assert read_parts(b"abcdef", 3) == [b"abc"]
    assert b"".join(read_parts(b"until close", None)) == b"until close"
    with pytest.raises(asyncio.IncompleteReadError):
        read_parts(b"ab", 5)


async def send(client: UpstreamClient, port: int, timeouts: Timeouts = FAST) -> tuple[int, bytes]:
    body = b'{"model": "m", "messages": []}'
    headers = [(b"host", b"x"), (b"content-length", str(len(body)).encode())]
    response = await client.send(
        "http", "127.0.0.1", port, "POST", "/v1/chat/completions", headers, body, timeouts
    )
    return response.status, await response.read()


async def failure_of(client: UpstreamClient, port: int) -> UpstreamFailure:
    with pytest.raises(UpstreamFailure) as err:
        await send(client, port)
    return err.value


@pytest.fixture(scope="module")
def fake():
    upstream = FakeUpstream("u")
    yield upstream
    upstream.stop()


def test_client_reads_answers_and_names_failures(fake) -> None:
    fake.reset()

    async def run() -> None:
        client = UpstreamClient()
        status, body = await send(client, fake.port)
        assert status == 200 and b"hello from u" in body
        fake.cue("status:503:7")
        assert (await send(client, fake.port))[0] == 503  # on the kept-alive connection
        fake.cue("reset")
        assert (await failure_of(client, fake.port)).case == RESET  # a real reset is not retried
        fake.cue("slow:1")
        failure = await failure_of(client, fake.port)
        assert (failure.case, failure.detail) == (TIMEOUT, "no data for 0.5 s")
        assert (await failure_of(client, refused_port())).case == CONNECT
        client.close()

    asyncio.run(run())
    assert len(fake.requests) == 4  # one request a try: nothing was sent twice
