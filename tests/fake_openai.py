"""A fake OpenAI (and Azure OpenAI) upstream for the files, batches, assistants and audio APIs.

Runs in a thread on 127.0.0.1. Request bodies are read in pieces and hashed as they arrive (kept
whole only when small), so a test can upload hundreds of megabytes; ``/files/big-*/content``
answers a generated download of the size named in the id, in pieces. Every request is recorded
(method, path with query, headers, body size, SHA-256, small bodies) for the tests to assert on.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import itertools
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

KEEP_BODY = 8 << 20  # bodies up to this size are kept whole
PIECE = 1 << 16
AUDIO = bytes(range(256)) * 64  # 16 KiB of "audio": every byte value, never valid UTF-8 text


def pattern(size: int) -> bytes:
    """The deterministic bytes of a generated download (the client checks them)."""
    block = hashlib.sha256(b"block").digest() * (PIECE // 32)
    return (block * (size // PIECE + 1))[:size]


def pattern_chunks(size: int):
    block = hashlib.sha256(b"block").digest() * (PIECE // 32)
    sent = 0
    while sent < size:
        piece = block[: min(PIECE, size - sent)]
        sent += len(piece)
        yield piece


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    size: int
    sha256: str
    body: bytes | None

    def json(self) -> Any:
        return orjson.loads(self.body or b"")

    def form(self) -> dict[str, Any]:
        """The multipart form: text fields as str, file parts as (filename, content type, bytes)."""
        raw = b"content-type: " + self.headers["content-type"].encode() + b"\r\n\r\n" + (self.body or b"")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
        out: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            data = part.get_payload(decode=True)
            filename = part.get_filename()
            out[name] = (filename, part.get_content_type(), data) if filename else data.decode()
        return out


@dataclass
class FakeOpenAI:
    seen: list[Seen] = field(default_factory=list)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    contents: dict[str, bytes] = field(default_factory=dict)
    transcription: dict[str, Any] = field(default_factory=dict)  # overrides of the transcription answer
    ids: Any = field(default_factory=lambda: itertools.count(1))
    server: ThreadingHTTPServer | None = None

    def start(self) -> FakeOpenAI:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def reset(self) -> None:
        self.seen.clear()
        self.files.clear()
        self.contents.clear()
        self.transcription.clear()
        self.ids = itertools.count(1)

    def last(self) -> Seen:
        return self.seen[-1]

    # --- answers -------------------------------------------------------------------------------

    def answer(self, seen: Seen) -> tuple[int, str, Any]:
        """(status, content type, body: bytes, a JSON-able value, or an iterator of pieces)."""
        path = seen.path.partition("?")[0]
        query = dict(p.split("=", 1) for p in seen.path.partition("?")[2].split("&") if "=" in p)
        parts = [p for p in path.split("/") if p]
        for marker in ("files", "batches", "assistants", "threads", "audio"):
            if marker in parts:
                parts = parts[parts.index(marker) :]
                break
        else:
            return 404, "application/json", {"error": {"message": f"no {path}", "type": "not_found"}}
        head, rest, method = parts[0], parts[1:], seen.method
        if head == "files":
            return self._files(method, rest, seen, query)
        if head == "batches":
            return self._batches(method, rest, seen)
        if head == "audio":
            return self._audio(rest[0], seen)
        return self._assistants(head, method, rest, seen)

    def _files(self, method: str, rest: list[str], seen: Seen, query: dict[str, str]) -> tuple[int, str, Any]:
        if method == "POST" and not rest:
            if seen.body is None:  # a big upload: described by its size and hash
                file_id = f"file-{next(self.ids):04d}"
                obj = {"id": file_id, "bytes": seen.size, "filename": "big.bin", "purpose": "batch"}
            else:
                form = seen.form()
                filename, _, data = form["file"]
                file_id = f"file-{next(self.ids):04d}"
                obj = {"id": file_id, "bytes": len(data), "filename": filename, "purpose": form["purpose"]}
                self.contents[file_id] = data
            obj.update(object="file", created_at=1700000000, status="processed")
            self.files[file_id] = obj
            return 200, "application/json", obj
        if method == "GET" and not rest:
            items = sorted(self.files.values(), key=lambda f: f["id"])
            if "after" in query:
                items = [f for f in items if f["id"] > query["after"]]
            limit = int(query.get("limit", "10000"))
            page = items[:limit]
            return (
                200,
                "application/json",
                {
                    "object": "list",
                    "data": page,
                    "first_id": page[0]["id"] if page else None,
                    "last_id": page[-1]["id"] if page else None,
                    "has_more": len(items) > limit,
                },
            )
        file_id = rest[0]
        if method == "GET" and rest[1:] == ["content"]:
            if file_id.startswith("big-"):
                return 200, "application/octet-stream", pattern_chunks(int(file_id[4:]))
            if file_id in self.contents:
                return 200, "application/octet-stream", self.contents[file_id]
        if file_id not in self.files:
            return 404, "application/json", {"error": {"message": f"No such File object: {file_id}"}}
        if method == "GET" and len(rest) == 1:
            return 200, "application/json", self.files[file_id]
        if method == "DELETE" and len(rest) == 1:
            del self.files[file_id]
            return 200, "application/json", {"id": file_id, "object": "file", "deleted": True}
        return 404, "application/json", {"error": {"message": "unknown files call"}}

    def _batches(self, method: str, rest: list[str], seen: Seen) -> tuple[int, str, Any]:
        def batch(batch_id: str, status: str, input_file_id: str = "file-1") -> dict[str, Any]:
            return {
                "id": batch_id,
                "object": "batch",
                "endpoint": "/v1/chat/completions",
                "input_file_id": input_file_id,
                "completion_window": "24h",
                "status": status,
                "created_at": 1700000000,
            }

        if method == "POST" and not rest:
            return 200, "application/json", batch("batch_1", "validating", seen.json()["input_file_id"])
        if method == "GET" and not rest:
            data = [batch("batch_1", "completed"), batch("batch_2", "in_progress")]
            return 200, "application/json", {"object": "list", "data": data, "has_more": False}
        if method == "GET" and len(rest) == 1:
            return 200, "application/json", batch(rest[0], "completed")
        if method == "POST" and rest[1:] == ["cancel"]:
            return 200, "application/json", batch(rest[0], "cancelling")
        return 404, "application/json", {"error": {"message": "unknown batches call"}}

    def _assistants(self, head: str, method: str, rest: list[str], seen: Seen) -> tuple[int, str, Any]:
        if head == "assistants":
            body = seen.json() if method == "POST" else {}
            return (
                200,
                "application/json",
                {
                    "id": rest[0] if rest else "asst_1",
                    "object": "assistant",
                    "created_at": 1700000000,
                    "model": body.get("model", "gpt-4o"),
                    "name": body.get("name"),
                    "instructions": body.get("instructions"),
                    "tools": [],
                },
            )
        if not rest:  # create a thread
            return 200, "application/json", {"id": "thread_1", "object": "thread", "created_at": 1700000000}
        if rest[1:] == ["messages"] and method == "POST":
            return 200, "application/json", _message("msg_1", "user", seen.json()["content"])
        if rest[1:] == ["messages"]:
            data = [_message("msg_2", "assistant", "hi there"), _message("msg_1", "user", "hello")]
            return 200, "application/json", {"object": "list", "data": data, "has_more": False}
        if rest[1:] == ["runs"] and method == "POST":
            run = {
                "id": "run_1",
                "object": "thread.run",
                "created_at": 1700000000,
                "thread_id": rest[0],
                "assistant_id": seen.json()["assistant_id"],
                "status": "completed",
                "model": "gpt-4o",
                "instructions": "",
                "tools": [],
                "parallel_tool_calls": True,
            }
            if not seen.json().get("stream"):
                return 200, "application/json", run
            events = [
                ("thread.run.created", {**run, "status": "queued"}),
                (
                    "thread.message.delta",
                    {
                        "id": "msg_2",
                        "object": "thread.message.delta",
                        "delta": {"content": [{"index": 0, "type": "text", "text": {"value": "hi there"}}]},
                    },
                ),
                ("thread.run.completed", run),
            ]
            frames = [f"event: {n}\ndata: {orjson.dumps(d).decode()}\n\n".encode() for n, d in events]
            return 200, "text/event-stream", iter([*frames, b"event: done\ndata: [DONE]\n\n"])
        return 404, "application/json", {"error": {"message": "unknown threads call"}}

    def _audio(self, kind: str, seen: Seen) -> tuple[int, str, Any]:
        if kind == "speech":
            body = seen.json()
            if body.get("stream_format") == "sse":
                done = {
                    "type": "speech.audio.done",
                    "usage": {"input_tokens": 7, "output_tokens": 50, "total_tokens": 57},
                }
                frames = [
                    b'data: {"type":"speech.audio.delta","audio":"AAEC"}\n\n',
                    b"data: " + orjson.dumps(done) + b"\n\n",
                ]
                return 200, "text/event-stream", iter(frames)
            return 200, "audio/mpeg", _paced([AUDIO[i : i + 4096] for i in range(0, len(AUDIO), 4096)])
        form = seen.form()
        fmt = form.get("response_format", "json")
        text = "hello from the audio"
        if fmt == "text":
            return 200, "text/plain; charset=utf-8", (text + "\n").encode()
        if fmt == "srt":
            return 200, "text/plain; charset=utf-8", f"1\n00:00:00,000 --> 00:00:01,000\n{text}\n\n".encode()
        if fmt == "vtt":
            return (
                200,
                "text/vtt; charset=utf-8",
                f"WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n{text}\n\n".encode(),
            )
        if form.get("stream") == "true":
            done = {
                "type": "transcript.text.done",
                "text": text,
                "usage": {"type": "tokens", "input_tokens": 14, "output_tokens": 5, "total_tokens": 19},
            }
            frames = [
                b'data: {"type":"transcript.text.delta","delta":"hello"}\n\n',
                b"data: " + orjson.dumps(done) + b"\n\n",
            ]
            return 200, "text/event-stream", iter(frames)
        answer: dict[str, Any] = {"text": text}
        if fmt == "verbose_json":
            answer.update(
                task=kind[:-1] if kind.endswith("s") else kind,
                language="english",
                duration=1.0,
                segments=[],
                usage={"type": "duration", "seconds": 1},
            )
        elif kind == "transcriptions":
            answer["usage"] = {
                "type": "tokens",
                "input_tokens": 14,
                "output_tokens": 5,
                "total_tokens": 19,
                "input_token_details": {"text_tokens": 0, "audio_tokens": 14},
            }
        answer.update(self.transcription)
        return 200, "application/json", answer


def _message(message_id: str, role: str, text: str) -> dict[str, Any]:
    return {
        "id": message_id,
        "object": "thread.message",
        "created_at": 1700000000,
        "thread_id": "thread_1",
        "role": role,
        "status": "completed",
        "content": [{"type": "text", "text": {"value": text, "annotations": []}}],
        "attachments": [],
        "metadata": {},
    }


def _paced(pieces: list[bytes]):
    for piece in pieces:
        yield piece
        time.sleep(0.1)  # far apart enough that a loaded machine still delivers them apart


def _handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _read_body(self) -> tuple[int, str, bytes | None]:
            digest = hashlib.sha256()
            kept = bytearray()
            size = 0

            def take(data: bytes) -> None:
                nonlocal size
                size += len(data)
                digest.update(data)
                if size <= KEEP_BODY:
                    kept.extend(data)

            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    length = int(self.rfile.readline().split(b";")[0], 16)
                    if length == 0:
                        self.rfile.readline()
                        break
                    while length:
                        data = self.rfile.read(min(length, 1 << 20))
                        take(data)
                        length -= len(data)
                    self.rfile.readline()
            else:
                remaining = int(self.headers.get("content-length") or 0)
                while remaining:
                    data = self.rfile.read(min(remaining, 1 << 20))
                    if not data:
                        break
                    take(data)
                    remaining -= len(data)
            return size, digest.hexdigest(), bytes(kept) if size <= KEEP_BODY else None

        def _serve(self) -> None:
            size, sha, body = self._read_body()
            headers = {k.lower(): v for k, v in self.headers.items()}
            seen = Seen(self.command, self.path, headers, size, sha, body)
            fake.seen.append(seen)
            try:
                status, ctype, answer = fake.answer(seen)
            except (KeyError, ValueError, TypeError) as e:  # a body the real API would refuse
                status, ctype, answer = 400, "application/json", {"error": {"message": f"bad request: {e!r}"}}
            self.send_response(status)
            self.send_header("content-type", ctype)
            if isinstance(answer, bytes) or not hasattr(answer, "__next__"):
                data = answer if isinstance(answer, bytes) else orjson.dumps(answer)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if ctype == "application/octet-stream" and "big-" in self.path:
                self.send_header("content-length", self.path.rsplit("big-", 1)[1].split("/")[0])
                self.end_headers()
                for piece in answer:
                    self.wfile.write(piece)
                return
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for piece in answer:
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")

        do_GET = do_POST = do_DELETE = _serve

    return Handler
