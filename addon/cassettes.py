"""Record and replay provider calls (``ai_proxy_cassettes``, ``ai_proxy_record_mode``).

Runs after the gateway, on flows it prepared: the decisions (key, file format, scrubbing, miss
messages) are ``transforms/cassette.py``; this file reads and writes the files and serves replays.

A replay is served by a small HTTP server on 127.0.0.1 that this addon runs: a hit re-points the
prepared flow at it, so the recorded provider answer comes back through mitmproxy like a live one,
is translated by the gateway's normal response path, and streams as a stream.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions, http

from addon.dispatch import switch_hooks
from addon.flows import FlowState, point_at_loopback
from addon.gateway import AIProxy
from transforms.cassette import (
    RECORD_MODES,
    RECORDED_STATUSES,
    Cassette,
    CassetteError,
    ExchangeRequest,
    build_cassette,
    cassette_name,
    dump_cassette,
    exchange_secrets,
    key_of,
    load_cassette,
    match_of,
    miss_answer,
    miss_message,
    replay_of,
)
from transforms.config import REALTIME
from transforms.errors import error_body
from transforms.pipeline import Prepared
from transforms.redact import redact_bytes

logger = logging.getLogger("ai_proxy")

REPLAY_HEADER = "x-ai-proxy-replay"  # names the cassette on the hop to the local replay server
MAX_RECORDED_STREAM = 16 << 20  # a longer stream is passed on but not recorded
REPLAY_GAP_MS = 20  # recorded pauses between stream events are kept up to this long
FLOW_HOOKS = ("request", "responseheaders", "response", "error")  # off while no directory is set


@dataclass(slots=True)
class Recording:
    """A call on its way upstream whose answer will become a cassette."""

    request: ExchangeRequest
    name: str
    secrets: tuple[str, ...]
    state: FlowState
    chunks: list[tuple[float, bytes]] | None = None  # streams: (seconds since the first, bytes)
    started: float = 0.0
    size: int = 0
    too_long: bool = False


class Cassettes:
    def __init__(self, gateway: AIProxy) -> None:
        self.gateway = gateway
        self.directory: Path | None = None
        self.mode = "new_episodes"
        self.by_key: dict[str, Cassette] = {}
        self.by_name: dict[str, Cassette] = {}  # read by the replay server's threads
        self._recording: dict[str, Recording] = {}
        self._server: ReplayServer | None = None

    def load(self, loader: Any) -> None:
        loader.add_option(
            "ai_proxy_cassettes",
            str | None,
            None,
            "Record LLM calls to and replay them from this directory (one JSON file per call).",
        )
        loader.add_option(
            "ai_proxy_record_mode",
            str,
            "new_episodes",
            "new_episodes: replay what matches, record the rest; none: replay only, never contact "
            "the upstream or write (CI); all: always go upstream and re-record.",
            choices=RECORD_MODES,
        )

    def configure(self, updated: set[str]) -> None:
        if not updated & {"ai_proxy_cassettes", "ai_proxy_record_mode"}:
            return
        mode = ctx.options.ai_proxy_record_mode
        if mode not in RECORD_MODES:
            raise exceptions.OptionsError(
                f"ai_proxy_record_mode must be one of {', '.join(RECORD_MODES)}, not {mode!r}"
            )
        self.mode = mode
        folder = ctx.options.ai_proxy_cassettes
        if not folder:
            self.directory = None
            self._set_index([])
            self._recording.clear()  # nothing is written while off
            switch_hooks(self, FLOW_HOOKS, on=False)
            self.done()  # no replay server while off
            return
        directory = Path(folder).expanduser().resolve()
        if mode == "none" and not directory.is_dir():
            raise exceptions.OptionsError(
                f"ai_proxy_cassettes: {folder} is not a directory (ai_proxy_record_mode=none only replays)"
            )
        self.directory = directory
        self._set_index(read_cassettes(directory))
        switch_hooks(self, FLOW_HOOKS, on=True)
        if self._server is None:
            self._server = ReplayServer(self)
        logger.info(f"ai_proxy: {len(self.by_key)} cassette(s) in {directory}, record mode {mode}")

    def done(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def _set_index(self, cassettes: list[Cassette]) -> None:
        by_key: dict[str, Cassette] = {}
        for cassette in cassettes:
            first = by_key.setdefault(cassette.key, cassette)
            if first is not cassette:
                logger.warning(f"ai_proxy: cassette {cassette.name} repeats {first.name}; using {first.name}")
        self.by_key = by_key
        self.by_name = {c.name: c for c in by_key.values()}

    # --- hooks -----------------------------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> None:
        if self.directory is None or flow.response is not None:
            return
        state = self.gateway.flow_state(flow)
        if state is None or state.prep is None:
            return
        if state.route.route_type == REALTIME:
            # A WebSocket session is neither recorded nor replayed: it goes live, except in `none`.
            if self.mode == "none":
                body = error_body(
                    "realtime sessions are not replayed from cassettes", "api_error", "cassette_miss"
                )
                self.gateway.answer_locally(flow, 501, {"content-type": "application/json"}, body)
            return
        if state.prep.binary_request or state.prep.binary_response:
            self._not_recorded(flow, state.prep)
            return
        try:
            self._replay_or_record(flow, state)
        except Exception:
            # Fail closed in `none` (nothing may reach the upstream); otherwise the call goes live.
            logger.exception(
                f"ai_proxy route={state.route.name}: internal error in the cassettes request hook"
            )
            self._recording.pop(flow.id, None)
            if self.mode == "none":
                body = error_body(
                    "internal error in the AI gateway (cassettes)", "api_error", "gateway_error"
                )
                self.gateway.answer_locally(flow, 500, {"content-type": "application/json"}, body)

    def _not_recorded(self, flow: http.HTTPFlow, prep: Prepared) -> None:
        """Multipart uploads and binary answers (files, audio) are not recorded: they go live, or
        in ``none`` (where nothing may reach the upstream) get the miss answer saying so. In ``none``
        an upload is not streamed (addon/streamed_uploads.py), so it has not gone anywhere yet."""
        if self.mode != "none":
            return
        message = "cassettes do not record multipart uploads or binary answers (files, audio): not replayed"
        logger.warning(f"ai_proxy route={prep.route.name}: {message}")
        status, headers, body = miss_answer(client_format(prep), message)
        self.gateway.answer_locally(flow, status, headers, body)

    def _replay_or_record(self, flow: http.HTTPFlow, state: FlowState) -> None:
        prep = state.prep
        assert prep is not None
        secrets = configured_secrets(prep, self.gateway.env)
        request = exchange_request(flow, prep, self.gateway.env, secrets)
        match = match_of(request)
        key = key_of(match)
        if self.mode != "all":
            hit = self.by_key.get(key)
            if hit is not None and self._server is not None:
                state.replayed = True
                self._server.point(flow, hit)
                return
        if self.mode == "none":
            message = miss_message(match, self.by_key.values(), str(self.directory))
            logger.warning(f"ai_proxy route={prep.route.name}: {message}")
            status, headers, body = miss_answer(client_format(prep), message)
            self.gateway.answer_locally(flow, status, headers, body)
            return
        every_secret = exchange_secrets(request, secrets)
        self._recording[flow.id] = Recording(request, cassette_name(match, key), every_secret, state)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        rec = self._recording.get(flow.id)
        if rec is None or flow.response is None or not callable(flow.response.stream):
            return
        rec.chunks = []
        translate = flow.response.stream

        def capture(data: bytes) -> Any:
            if data and not rec.too_long:
                now = time.monotonic()
                if not rec.chunks:
                    rec.started = now
                rec.size += len(data)
                if rec.size > MAX_RECORDED_STREAM:
                    rec.too_long = True
                    rec.chunks = []
                else:
                    rec.chunks.append((now - rec.started, data))  # type: ignore[union-attr]
            return translate(data)

        flow.response.stream = capture

    def response(self, flow: http.HTTPFlow) -> None:
        rec = self._recording.pop(flow.id, None)
        if rec is None or self.directory is None:
            return
        state = rec.state
        streamed = rec.chunks is not None
        if state.broken or state.upstream_status not in RECORDED_STATUSES:
            return
        if state.fallbacks:  # another target answered than the one the cassette's key was made for
            logger.info(f"ai_proxy: not recording {rec.name}: the call fell back to another target")
            return
        if rec.too_long:
            logger.warning(f"ai_proxy: not recording {rec.name}: stream over {MAX_RECORDED_STREAM} bytes")
            return
        if not streamed and state.upstream_body is None:
            return
        headers = [(k.decode("latin-1"), v.decode("utf-8", "replace")) for k, v in state.upstream_headers]
        try:
            status, body = state.upstream_status, state.upstream_body
            data = build_cassette(rec.request, status, headers, body, rec.chunks)
            raw = dump_cassette(data, rec.secrets)
            cassette = load_cassette(rec.name, raw)
        except CassetteError as e:
            logger.warning(f"ai_proxy: not recording {rec.name}: {e}")
            return
        except Exception:  # the client has its answer; only the recording is lost
            logger.exception(f"ai_proxy: not recording {rec.name}: internal error")
            return
        # Indexed now, so the same call later in this run replays; written off the event loop.
        stale = self.by_key.get(cassette.key)
        if stale is not None:
            self.by_name.pop(stale.name, None)
        self.by_key[cassette.key] = cassette
        self.by_name[cassette.name] = cassette
        path = self.directory / cassette.name
        asyncio.get_running_loop().run_in_executor(None, write_cassette, path, raw)
        logger.info(f"ai_proxy: recorded {cassette.name}")

    def error(self, flow: http.HTTPFlow) -> None:
        self._recording.pop(flow.id, None)  # a call that failed or was cut is not a recording


# --- plain helpers ---------------------------------------------------------------------------------


def exchange_request(
    flow: http.HTTPFlow, prep: Prepared, env: dict[str, str], secrets: tuple[str, ...]
) -> ExchangeRequest:
    """The request as it leaves for the provider (the gateway has rewritten the flow by now; traffic
    recognised without a route is sent as the client wrote it)."""
    req = flow.request
    headers = {k.decode("latin-1").lower(): v.decode("utf-8", "replace") for k, v in req.headers.fields}
    auth = prep.route.auth
    return ExchangeRequest(
        provider=prep.route.provider,
        model=prep.request_model,
        stream=prep.stream,
        method=req.method,
        url=req.url,
        headers=headers,
        body=redact_bytes(req.get_content(strict=False) or b"", secrets),
        base_path=base_path(prep, env),
        credential_params=frozenset({auth.param_name}) if auth.param_name else frozenset(),
    )


def base_path(prep: Prepared, env: dict[str, str]) -> str:
    """The provider's default base path (Hugging Face's /hf-inference): not part of the operation, so
    a route recorded with its own upstream_url replays with the provider's (and the reverse)."""
    if prep.route.model.options.upstream_url:
        return ""
    try:
        url = prep.spec.base_url(prep.route.model.options, prep.request_model, env)
    except Exception:
        return ""
    path = url.split("://", 1)[-1].partition("/")[2]
    return "/" + path.rstrip("/") if path.strip("/") else ""


def configured_secrets(prep: Prepared, env: dict[str, str]) -> tuple[str, ...]:
    auth = prep.route.auth
    extra = [auth.aws_access_key_id]
    if prep.route.provider == "bedrock":
        extra += [env.get(f"AWS_{name}") for name in ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN")]
    return (*prep.secrets, *(s for s in extra if s and len(s) >= 4))


def client_format(prep: Prepared) -> str:
    """The wire format the client speaks: the native format on llm_format and preserve routes."""
    route = prep.route
    if route.llm_format != "openai":
        return route.llm_format
    return route.format if route.route_type == "preserve" else "openai"


def read_cassettes(directory: Path) -> list[Cassette]:
    """Every cassette under the directory; a broken one is a warning naming it, and skipped."""
    found = []
    for path in sorted(directory.rglob("*.json")):
        name = path.relative_to(directory).as_posix()
        try:
            found.append(load_cassette(name, path.read_bytes()))
        except (CassetteError, OSError) as e:
            logger.warning(f"ai_proxy: skipping cassette {name}: {e}")
    return found


def write_cassette(path: Path, raw: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".json.tmp")
        partial.write_bytes(raw)
        os.replace(partial, path)  # readers never see half a file
    except OSError as e:
        logger.warning(f"ai_proxy: cannot write cassette {path}: {e}")


class ReplayServer:
    """Serves recorded provider answers on a loopback port, in daemon threads (streams keep their
    pacing there without holding mitmproxy's event loop)."""

    def __init__(self, owner: Cassettes) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _replay_handler(owner))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, name="ai-proxy-replay", daemon=True).start()

    def point(self, flow: http.HTTPFlow, cassette: Cassette) -> None:
        point_at_loopback(flow.request, self.port, REPLAY_HEADER, cassette.name)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _replay_handler(owner: Cassettes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def send_response(self, code: int, message: str | None = None) -> None:
            self.send_response_only(code, message)  # no Server/Date headers of its own: the recorded ones

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            cassette = owner.by_name.get(self.headers.get(REPLAY_HEADER) or "")
            if cassette is None:
                self._send(404, [("content-type", "application/json")], b'{"error": "no such cassette"}')
                return
            replay = replay_of(cassette, REPLAY_GAP_MS)
            if replay.events is None:
                self._send(replay.status, replay.headers, replay.body)
                return
            self.send_response(replay.status)
            for name, value in replay.headers:
                self.send_header(name, value)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for gap, data in replay.events:
                if gap:
                    time.sleep(gap / 1000)
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        do_GET = do_POST
        do_PUT = do_POST
        do_DELETE = do_POST

        def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
