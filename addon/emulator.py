"""A local emulation of the provider APIs that serves the project's fixtures.

It is the upstream of the end-to-end tests, and of the recording of the offline demo's cassettes
(``tests/record_demo.py``; ``make run`` itself replays those and contacts nothing). Each provider's
fixture folder has an ``emulator.json`` listing the requests it answers::

    [{"method": "POST", "path": "^/v1/messages$", "dir": "anthropic/chat"}]

A matched request gets ``<dir>/response.json`` (or ``<dir>/stream.*`` when it asks to stream).
Headers steer it in tests: ``x-emulator-fixture: <path under fixtures/>``, ``x-emulator-status``,
``x-emulator-delay-ms`` (pause between stream events), ``x-emulator-pause: N:MS`` (a pause of MS
milliseconds before stream event N only: a provider slow mid-stream), ``x-emulator-cut-after: N`` (drop the
connection after N stream events). Every request is recorded in ``requests``. A test may set a
``responder``: a function of each request that answers it (a fake with rules, such as a provider's
checks on thinking), or returns None to let the fixtures answer.

Run alone: ``python addon/emulator.py --port 9000``.
"""

from __future__ import annotations

import argparse
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

CONTENT_TYPES = {
    ".json": "application/json",
    ".sse": "text/event-stream",
    ".ndjson": "application/x-ndjson",
    ".eventstream": "application/vnd.amazon.eventstream",
    ".html": "text/html; charset=utf-8",
    ".txt": "text/plain",
}
STREAM_SUFFIXES = {CONTENT_TYPES[s]: s for s in (".sse", ".ndjson", ".eventstream")}


@dataclass(slots=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass(slots=True)
class Scripted:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    events: bool = False  # a stream sent event by event (x-emulator-delay-ms apart), not as one body


def load_routes(root: Path) -> list[tuple[str, re.Pattern[str], str]]:
    routes = []
    for spec in sorted(root.glob("*/emulator.json")):
        for entry in orjson.loads(spec.read_bytes()):
            routes.append((entry.get("method", "POST"), re.compile(entry["path"]), entry["dir"]))
    return routes


def split_stream(data: bytes, suffix: str) -> list[bytes]:
    """Stream fixtures go out event by event, so clients see them arrive over time."""
    if suffix == ".sse":
        parts = data.split(b"\n\n")
        return [p + b"\n\n" for p in parts if p.strip()]
    if suffix == ".ndjson":
        return [line + b"\n" for line in data.split(b"\n") if line.strip()]
    if suffix == ".eventstream":
        return _eventstream_messages(data)
    return [data]


def _eventstream_messages(data: bytes) -> list[bytes]:
    """AWS event-stream messages, each one whole: the first 4 bytes give a message's total length."""
    messages = []
    start = 0
    while start + 4 <= len(data):
        length = int.from_bytes(data[start : start + 4], "big")
        if length <= 0:
            break
        messages.append(data[start : start + length])
        start += length
    if start < len(data):
        messages.append(data[start:])  # a truncated fixture goes out as it is
    return messages


class Emulator:
    """Runs the emulator on a loopback port in a daemon thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, root: Path = FIXTURES) -> None:
        self.root = root
        self.routes = load_routes(root)
        self.requests: list[Recorded] = []
        self.scripted: list[Scripted] = []
        self.responder: Callable[[Recorded], Scripted | None] | None = None
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer((host, port), _handler_for(self))
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Emulator:
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="ai-proxy-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def script(
        self,
        status: int,
        body: bytes | dict | list,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        events: bool = False,
    ) -> None:
        """The next request gets this answer (with these extra headers) instead of a fixture; ``events``
        sends a stream body (SSE, NDJSON or AWS event stream) one event at a time, as stream fixtures are."""
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        with self._lock:
            self.scripted.append(Scripted(status, raw, content_type, headers or {}, events=events))

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.scripted.clear()
            self.responder = None

    @property
    def last(self) -> Recorded:
        return self.requests[-1]

    def _record(self, rec: Recorded) -> Scripted | None:
        with self._lock:
            self.requests.append(rec)
            if self.scripted:
                return self.scripted.pop(0)
            responder = self.responder
        return responder(rec) if responder is not None else None

    def resolve(self, method: str, path: str) -> str | None:
        for want, pattern, folder in self.routes:
            if want == method and pattern.search(path):
                return folder
        return None


def _handler_for(emulator: Emulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: mitmproxy's own log shows the traffic

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_DELETE(self) -> None:
            self._serve()

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            scripted = emulator._record(Recorded(self.command, self.path, headers, body))
            fixture = headers.get("x-emulator-fixture")
            status = int(headers.get("x-emulator-status") or 200)
            delay = int(headers.get("x-emulator-delay-ms") or 0) / 1000
            cut_after = int(headers["x-emulator-cut-after"]) if "x-emulator-cut-after" in headers else None
            at, _, ms = (headers.get("x-emulator-pause") or "").partition(":")
            pause = (int(at), int(ms) / 1000) if ms else None
            if scripted is not None:
                suffix = STREAM_SUFFIXES.get(scripted.content_type)
                if suffix and scripted.events and scripted.status == 200:
                    events = split_stream(scripted.body, suffix)
                    return self._stream(events, scripted.content_type, delay, cut_after, pause)
                return self._send(scripted.status, scripted.body, scripted.content_type, scripted.headers)
            if fixture is None:
                folder = emulator.resolve(self.command, self.path.split("?", 1)[0])
                if folder is None:
                    msg = {"error": {"message": f"emulator: no fixture for {self.command} {self.path}"}}
                    return self._send(404, orjson.dumps(msg), "application/json")
                fixture = f"{folder}/{self._pick(folder, body)}"
            path = (emulator.root / fixture).resolve()
            if emulator.root not in path.parents or not path.is_file():
                return self._send(
                    404, b'{"error": {"message": "emulator: unknown fixture"}}', "application/json"
                )
            ctype = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
            data = path.read_bytes()
            if path.name.startswith("stream") and status == 200:
                return self._stream(split_stream(data, path.suffix), ctype, delay, cut_after, pause)
            return self._send(status, data, ctype)

        def _pick(self, folder: str, body: bytes) -> str:
            wants_stream = b'"stream"' in body and _asks_stream(body)
            wants_stream = wants_stream or "stream" in self.path.lower().split("?")[0].rsplit("/", 1)[-1]
            if wants_stream:
                for candidate in sorted((emulator.root / folder).glob("stream.*")):
                    return candidate.name
            return "response.json"

        def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("content-type", ctype)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _stream(
            self,
            events: list[bytes],
            ctype: str,
            delay: float,
            cut_after: int | None,
            pause: tuple[int, float] | None = None,
        ) -> None:
            self.send_response(200)
            self.send_header("content-type", ctype)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for i, event in enumerate(events):
                if i == cut_after:
                    self.close_connection = True
                    return  # no terminating chunk: the connection just drops
                if delay and i:
                    time.sleep(delay)
                if pause is not None and i == pause[0]:
                    time.sleep(pause[1])
                self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    return Handler


def _asks_stream(body: bytes) -> bool:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(parsed, dict) and parsed.get("stream") is True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    emulator = Emulator(args.host, args.port)
    print(f"emulator listening at {emulator.url}", flush=True)
    emulator.server.serve_forever()


if __name__ == "__main__":
    main()
