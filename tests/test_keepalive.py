"""Keep-alive pings for Anthropic-format clients: which streams get them, the marks the relay writes
cut out by offset however mitmproxy re-chunks the body, and the pings in their place."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from conftest import ROOT
from streams import splits
from test_ingress_anthropic import CTX, _route, chunk_frames

from addon.stream_pings import with_pings
from transforms.ingress import IngressStream
from transforms.ingress.anthropic import MessagesEvents
from transforms.keepalive import MARK, PING_INTERVAL, PingMarks, ping_in, wants_pings
from transforms.pipeline import prepare
from transforms.stream import OpenAIStream, SSEParser
from transforms.types import Inbound

DONE = b"data: [DONE]\n\n"


def chunk(delta: dict[str, Any]) -> bytes:
    return chunk_frames([(delta, None)], None).removesuffix(DONE)


START = chunk({"role": "assistant", "content": ""})
HELLO = chunk({"content": "Hello"})
THERE = chunk({"content": " there"})
END = chunk_frames([({}, "stop")], None)


def wire(parts: list[bytes | None]) -> tuple[PingMarks, bytes]:
    """What the relay writes: the provider's parts, a mark where a part is None."""
    marks = PingMarks()
    out = b""
    for part in parts:
        if part is None:
            out += marks.mark()
        else:
            marks.forwarded(len(part))
            out += part
    return marks, out


def event_types(raw: bytes) -> list[str]:
    parser = SSEParser()
    return [e.event for e in [*parser.feed(raw), *parser.finish()]]


def relay(parts: list[bytes | None], pieces: list[int]) -> tuple[bytes, bytes]:
    """(the provider bytes the inner hook saw, the client's bytes) with mitmproxy cutting the body
    at ``pieces``."""
    marks, body = wire(parts)
    seen: list[bytes] = []
    translator = IngressStream(OpenAIStream(), MessagesEvents(CTX), "prompt")

    def inner(data: bytes) -> list[bytes]:
        seen.append(data)
        return translator.feed(data) if data else translator.finish()

    hook = with_pings(marks, inner, translator.keepalive)
    client = [frame for piece in [*splits(body, pieces), b""] for frame in hook(piece)]
    return b"".join(seen), b"".join(client)


def test_marks_are_cut_out_however_the_body_is_chunked() -> None:
    parts = [START, HELLO[:7], None, HELLO[7:], None, None, THERE, None, END]
    provider = b"".join(p for p in parts if p is not None)
    _, body = wire(parts)
    for a in range(len(body)):
        for b in (a + 1, a + 5, len(body) - 1):
            seen, client = relay(parts, [a, b])
            assert seen == provider
            assert event_types(client).count("ping") == 4


def test_pings_sit_between_events_after_message_start() -> None:
    _, plain = relay([START, HELLO, THERE, END], [])
    seen, client = relay([START, HELLO[:9], None, HELLO[9:], THERE, None, END], [30, 200])
    assert seen == START + HELLO + THERE + END
    assert [t for t in event_types(client) if t != "ping"] == event_types(plain)
    assert event_types(client) == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "ping",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert client.replace(b'event: ping\ndata: {"type":"ping"}\n\n', b"") == plain


def test_silence_before_the_first_chunk_starts_the_message() -> None:
    _, client = relay([None, START, HELLO, END], [])
    assert event_types(client)[:3] == ["message_start", "ping", "content_block_start"]
    assert event_types(client).count("message_start") == 1


def test_binary_body_passes_untouched() -> None:
    frames = bytes(range(256)) * 3  # any byte, the mark's own included
    parts: list[bytes | None] = [frames[:100], None, frames[100:101], None, frames[101:]]
    marks, body = wire(parts)
    assert body.count(MARK) == frames.count(MARK) + 2
    seen: list[bytes] = []
    hook = with_pings(marks, lambda d: seen.append(d) or [], lambda: [b"<ping>"])
    out = [f for piece in splits(body, [50, 101, 102, 103, 500]) for f in hook(piece)]
    assert b"".join(seen) == frames
    assert out == [b"<ping>", b"<ping>"]


def test_the_ping_hook_wraps_every_other_stream_hook() -> None:
    """The relay's responseheaders runs after the gateway's and the cassettes': its hook is outermost,
    so the cassettes record the provider's bytes, marks cut out."""
    order = (ROOT / "addon" / "ai_proxy.py").read_text()
    order = order[order.index("addons = [") :]
    assert (
        order.index("\n    gateway,\n")
        < order.index("Cassettes(gateway)")
        < order.index("UpstreamRelay(gateway")
    )


def test_no_mark_no_copy() -> None:
    marks = PingMarks()
    marks.forwarded(10)
    assert marks.split(b"0123456789") is None  # the hot path: data handed on as it came


def test_ping_due_after_the_interval() -> None:
    assert ping_in(100.0, 100.0) == PING_INTERVAL
    assert ping_in(100.0, 103.0) == PING_INTERVAL - 3
    assert ping_in(100.0, 100.0 + PING_INTERVAL) == 0
    assert ping_in(100.0, 200.0) == 0


@pytest.mark.parametrize(
    ("provider", "llm_format", "path", "stream", "expected"),
    [
        ("openai", "anthropic", "/x/v1/messages", True, True),
        ("bedrock", "anthropic", "/x/v1/messages", True, True),
        ("openai", "anthropic", "/x/v1/messages", False, False),  # a whole answer
        ("anthropic", "anthropic", "/x/v1/messages", True, False),  # Anthropic pings itself
        ("openai", "openai", "/x/v1/chat/completions", True, False),  # OpenAI clients: nothing new
    ],
)
def test_which_streams_get_pings(
    provider: str, llm_format: str, path: str, stream: bool, expected: bool
) -> None:
    extra: dict[str, Any] = {"llm_format": llm_format}
    if provider == "bedrock":
        extra["model"] = {
            "provider": "bedrock",
            "name": "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "options": {"upstream_url": "http://127.0.0.1:9", "bedrock": {"aws_region": "us-east-1"}},
        }
        extra["auth"] = {"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE", "aws_secret_access_key": "secret"}
    route = _route(provider, **extra)
    model = route.model.name or "m"
    if path.endswith("/messages"):
        body = {
            "model": model,
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "Hi"}],
            "stream": stream,
        }
    else:
        body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "stream": stream}
    headers = {"anthropic-version": "2023-06-01"}
    prep = prepare(route, Inbound("POST", "", path, [], headers, orjson.dumps(body)), request_id="1", now=1)
    assert wants_pings(prep) is expected
