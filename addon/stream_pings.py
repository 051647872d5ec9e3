"""Keep-alive pings for Anthropic-format clients while the provider is silent (transforms/keepalive.py
says when and where): the relay's timer that writes a mark into the body it passes to mitmproxy,
and the stream hook that cuts the marks out again and writes the client's ``ping`` in their place.

The hook wraps every other stream hook of the flow (the relay is listed after the cassettes), so
the translator, the cassettes' recording and the statistics see the provider's bytes only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from mitmproxy import http

from addon.flows import FlowState
from addon.upstream_client import chunk
from transforms.ingress import IngressStream
from transforms.keepalive import PING_INTERVAL, PingMarks, ping_in


class Pinger:
    """While one streamed answer is relayed: a mark (in its own HTTP chunk) after every
    ``PING_INTERVAL`` seconds with no provider bytes. One timer, re-armed only when it fires, so a
    provider chunk costs a clock read."""

    __slots__ = ("_handle", "_last", "_loop", "_marks", "_writer")

    def __init__(self, writer: asyncio.StreamWriter, marks: PingMarks) -> None:
        self._writer = writer
        self._marks = marks
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        self._handle = self._loop.call_later(PING_INTERVAL, self._due)

    def forwarded(self, size: int) -> None:
        """``size`` bytes of the provider's body were just written."""
        self._marks.forwarded(size)
        self._last = self._loop.time()

    def _due(self) -> None:
        now = self._loop.time()
        wait = ping_in(self._last, now)
        if wait == 0:
            # Only once the stream hook that cuts marks out is in place (mitmproxy's responseheaders).
            if self._marks.hooked and not self._writer.is_closing():
                self._writer.write(chunk(self._marks.mark()))
            self._last = now
            wait = PING_INTERVAL
        self._handle = self._loop.call_later(wait, self._due)

    def stop(self) -> None:
        self._handle.cancel()


def hook_pings(flow: http.HTTPFlow, state: FlowState) -> None:
    """Wrap the flow's stream hook (responseheaders, after the gateway's and the cassettes'): the
    relay may write marks from now on."""
    marks = state.pings
    response = flow.response
    translator = state.translator
    if marks is None or response is None or not callable(response.stream):
        return
    if not isinstance(translator, IngressStream):
        return
    response.stream = with_pings(marks, response.stream, translator.keepalive)
    marks.hooked = True


def with_pings(
    marks: PingMarks, inner: Callable[[bytes], Any], keepalive: Callable[[], list[bytes]]
) -> Callable[[bytes], list[bytes]]:
    def on_chunk(data: bytes) -> Any:
        pieces = marks.split(data) if data else None
        if pieces is None:
            return inner(data)
        out: list[bytes] = []
        for piece in pieces:
            if piece is None:
                out += keepalive()  # after the events of the bytes before it: between two events
            else:
                out += inner(piece)
        return [b"".join(out)] if out else []

    return on_chunk
