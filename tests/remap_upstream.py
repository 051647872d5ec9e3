"""Test-only mitmproxy script: sends every flow to the local fake upstream in AI_PROXY_TEST_UPSTREAM.

Loaded with a second ``-s`` after addon/ai_proxy.py, so the addon recognises the real provider host
before the flow is pointed at loopback (nothing leaves the machine). Only the destination changes:
the Host header stays the client's. ``x-emulator-delay-ms`` paces the emulator's streams, so tests
can tell a streamed answer from a buffered one.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from mitmproxy import http

TARGET = urlsplit(os.environ["AI_PROXY_TEST_UPSTREAM"])
STREAM_DELAY_MS = os.environ.get("AI_PROXY_TEST_DELAY_MS", "100")


class RemapUpstream:
    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return
        req = flow.request
        req.data.scheme = (TARGET.scheme or "http").encode()
        req.data.host = TARGET.hostname or "127.0.0.1"
        req.data.port = TARGET.port or 80
        req.headers["x-emulator-delay-ms"] = STREAM_DELAY_MS


addons = [RemapUpstream()]
