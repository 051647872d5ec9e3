"""A provider stand-in that fails on cue, for the balancer's end-to-end tests.

``FakeUpstream(name)`` listens on 127.0.0.1; ``cue(*actions)`` queues what its next requests get
(then "ok" again): ``ok``, ``stream``, ``stream_cut`` (one event, then a reset), ``reset`` (a reset
in the middle of the response head), ``status:<code>[:<retry-after>]``, ``slow:<seconds>`` (the
head only after that long). OpenAI-shaped answers, Anthropic-shaped on ``/v1/messages``.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import socketserver
import ssl
import struct
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def refused_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chat(name: str) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": f"{name}-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"hello from {name}"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        }
    )


def _message(name: str) -> bytes:
    return orjson.dumps(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": f"{name}-model",
            "content": [{"type": "text", "text": f"hello from {name}"}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 3, "output_tokens": 4},
        }
    )


def _event(text: str | None) -> bytes:
    delta = {"content": text} if text is not None else {}
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None if text is not None else "stop"}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files (the certificate is its own CA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class FakeUpstream:
    def __init__(self, name: str, tls: tuple[Path, Path] | None = None) -> None:
        """``tls``: (certificate, key) PEM files: the upstream speaks HTTPS."""
        self.name = name
        self.tls = tls is not None
        self.actions: deque[str] = deque()
        self.requests: list[dict[str, Any]] = []
        owner = self

        context = None
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock = self.request
                if context is not None:
                    try:
                        sock = context.wrap_socket(sock, server_side=True)
                    except (ssl.SSLError, OSError):
                        return  # a client that refused our certificate
                owner._handle(sock)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def cue(self, *actions: str) -> None:
        self.actions.extend(actions)

    def reset(self) -> None:
        self.actions.clear()
        self.requests.clear()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, sock: socket.socket) -> None:
        reader = sock.makefile("rb")
        while True:
            line = reader.readline()
            if not line:
                return
            method, path, _ = line.decode().split(" ", 2)
            headers: dict[str, str] = {}
            while (header := reader.readline()) not in (b"\r\n", b"\n", b""):
                key, _, value = header.decode().partition(":")
                headers[key.strip().lower()] = value.strip()
            body = reader.read(int(headers.get("content-length") or 0))
            self.requests.append(
                {"method": method, "path": path, "headers": headers, "body": orjson.loads(body or b"{}")}
            )
            action = self.actions.popleft() if self.actions else "ok"
            if not self._act(sock, action, path):
                reader.close()  # the socket closes only once its file object is closed too
                sock.close()
                return

    def _act(self, sock: socket.socket, action: str, path: str) -> bool:
        kind, _, arg = action.partition(":")
        if kind == "slow":
            time.sleep(float(arg))
            kind = "ok"
        if kind == "ok":
            body = _message(self.name) if path.endswith("/v1/messages") else _chat(self.name)
            sock.sendall(
                _head(200, [("content-type", "application/json"), ("content-length", str(len(body)))]) + body
            )
            return True
        if kind == "status":
            code, _, retry_after = arg.partition(":")
            body = orjson.dumps({"error": {"message": f"{self.name} says {code}", "type": "server_error"}})
            extra = [("retry-after", retry_after)] if retry_after else []
            head = _head(
                int(code), [("content-type", "application/json"), ("content-length", str(len(body))), *extra]
            )
            sock.sendall(head + body)
            return True
        if kind == "reset":
            sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-ty")
            _reset(sock)
            return False
        if kind in ("stream", "stream_cut"):
            sock.sendall(
                _head(200, [("content-type", "text/event-stream"), ("transfer-encoding", "chunked")])
            )
            events = [_event("hello "), _event(f"from {self.name}"), _event(None), b"data: [DONE]\n\n"]
            for event in events[:1] if kind == "stream_cut" else events:
                sock.sendall(b"%x\r\n%s\r\n" % (len(event), event))
                time.sleep(0.05)
            if kind == "stream_cut":
                _reset(sock)
                return False
            sock.sendall(b"0\r\n\r\n")
            return True
        raise ValueError(f"unknown action {action}")


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _reset(sock: socket.socket) -> None:
    """The coming close sends a TCP reset, not a clean end."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
