"""Keep-alive pings on streams whose provider is slow: when they are due, and where they sit.

Anthropic's own streams carry ``event: ping`` frames; Claude Code and the anthropic SDK skip them,
and they keep idle connections and client read timeouts alive. On an ``llm_format: anthropic``
route to another provider the gateway writes them itself while the provider is silent.

mitmproxy writes to a streamed response only when upstream bytes arrive, so the upstream relay
(``addon/upstream_relay.py``), which owns the exchange, writes one ``MARK`` byte into the body
it passes to mitmproxy when the provider has been silent for ``PING_INTERVAL`` seconds, and records
the byte's offset in the body here. The stream hook splits what mitmproxy hands it at the recorded
offsets (so mitmproxy's re-chunking does not matter, and no byte of the provider's stream, SSE,
binary event stream or JSON array, can be mistaken for a mark), feeds the provider's bytes to the
translator and writes the client's keep-alive frame where a mark was.
"""

from __future__ import annotations

from collections import deque

from transforms.prepared import Prepared

PING_INTERVAL = 5.0  # seconds of provider silence before each ping
MARK = b"\n"  # never reaches the client or the translator: it is cut out by its offset


def wants_pings(prep: Prepared) -> bool:
    """A translated stream whose client format has a keep-alive frame (Anthropic's ``ping``).
    OpenAI-format clients get nothing: chat completion streams define no keep-alive."""
    ingress = prep.ingress
    return prep.stream and not prep.passthrough and ingress is not None and ingress.pings


def ping_in(last_activity: float, now: float) -> float:
    """Seconds until a ping is due after the last byte written at ``last_activity`` (0: now)."""
    return max(0.0, last_activity + PING_INTERVAL - now)


class PingMarks:
    """The offsets of the marks in one response body: ``mark`` on the relay's side as it writes,
    ``split`` on the stream hook's as the body arrives. ``hooked``: the stream hook that cuts the
    marks out is in place, so marks may be written."""

    __slots__ = ("_read", "hooked", "offsets", "written")

    def __init__(self) -> None:
        self.offsets: deque[int] = deque()
        self.written = 0  # body bytes the relay has written, marks included
        self._read = 0  # body bytes the stream hook has seen
        self.hooked = False

    def forwarded(self, size: int) -> None:
        self.written += size

    def mark(self) -> bytes:
        """The bytes to write for one ping, recorded at the current offset."""
        self.offsets.append(self.written)
        self.written += len(MARK)
        return MARK

    def split(self, data: bytes) -> list[bytes | None] | None:
        """``data`` (the body's next bytes) in pieces, None where a mark was; None when it holds no
        mark (the common case: the caller passes ``data`` on as it is)."""
        start = self._read
        end = start + len(data)
        self._read = end
        offsets = self.offsets
        if not offsets or offsets[0] >= end:
            return None
        pieces: list[bytes | None] = []
        position = 0
        while offsets and offsets[0] < end:
            at = offsets.popleft() - start
            if at > position:
                pieces.append(data[position:at])
            pieces.append(None)
            position = at + len(MARK)
        if position < len(data):
            pieces.append(data[position:])
        return pieces
