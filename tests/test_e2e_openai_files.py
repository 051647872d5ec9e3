"""End to end: llm/v1/files on openai and azure through a real mitmdump, with the openai SDK (and raw
httpx where the exact bytes matter), against a local fake OpenAI (tests/fake_openai.py).

Uploads stream to the provider as they arrive and downloads stream back: a 200 MB upload and a
200 MB download leave the proxy's resident memory flat (measured from /proc).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest
from fake_openai import FakeOpenAI, pattern, pattern_chunks

KEY = "sk-files-secret-1234"
BIG = 200 * 1024 * 1024


@pytest.fixture
def fake(fake_openai: FakeOpenAI) -> FakeOpenAI:
    return fake_openai


def files_routes(fake: FakeOpenAI, limit: int = 300 << 20) -> list[dict]:
    auth = {"header_name": "Authorization", "header_value": f"Bearer {KEY}"}
    azure = {
        "azure_instance": "res",
        "azure_deployment_id": "dep",
        "azure_api_version": "2024-10-21",
        "upstream_url": fake.url,
    }
    return [
        {
            "name": "files-openai",
            "match": {"path": "/openai/v1/files"},
            "route_type": "llm/v1/files",
            "auth": auth,
            "model": {"provider": "openai", "options": {"upstream_url": fake.url}},
            "max_request_body_size": limit,
            "logging": {"log_statistics": True, "log_payloads": True},
        },
        {
            "name": "files-azure",
            "match": {"path": "/azure/v1/files"},
            "route_type": "llm/v1/files",
            "auth": {"header_name": "api-key", "header_value": KEY},
            "model": {"provider": "azure", "options": azure},
            "max_request_body_size": limit,
        },
        {
            "name": "files-small",
            "match": {"path": "/small/v1/files"},
            "route_type": "llm/v1/files",
            "auth": auth,
            "model": {"provider": "openai", "options": {"upstream_url": fake.url}},
            "max_request_body_size": 4096,
        },
    ]


UPSTREAM = {
    "openai": ("/openai/v1", "/v1/files", ""),
    "azure": ("/azure/v1", "/openai/files", "?api-version=2024-10-21"),
}


@pytest.mark.parametrize("provider", ["openai", "azure"])
def test_files_crud_with_the_sdk(gateway, fake: FakeOpenAI, provider: str) -> None:
    gw = gateway(files_routes(fake))
    prefix, collection, version = UPSTREAM[provider]
    client = openai.OpenAI(base_url=gw.url + prefix, api_key="client-key", max_retries=0)
    lines = b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini"}}\n'
    created = [client.files.create(file=(f"in{i}.jsonl", lines * (i + 1)), purpose="batch") for i in range(3)]

    upload = fake.seen[0]
    assert upload.method == "POST"
    assert upload.path == collection + version
    form = upload.form()
    assert form["purpose"] == "batch"
    assert form["file"] == ("in0.jsonl", "application/octet-stream", lines)
    if provider == "openai":
        assert upload.headers["authorization"] == f"Bearer {KEY}"
    else:
        assert upload.headers["api-key"] == KEY
        assert "authorization" not in upload.headers
    assert [f.bytes for f in created] == [len(lines), 2 * len(lines), 3 * len(lines)]

    listed = list(client.files.list(limit=2))  # two pages, the second asked with after=
    assert [f.id for f in listed] == [f.id for f in created]
    assert fake.seen[3].path == f"{collection}{version or '?'}{'&' if version else ''}limit=2"
    assert fake.seen[4].path.endswith(f"limit=2&after={created[1].id}")

    got = client.files.retrieve(created[1].id)
    assert (got.id, got.filename, got.purpose) == (created[1].id, "in1.jsonl", "batch")
    assert fake.last().path == f"{collection}/{created[1].id}{version}"

    assert client.files.content(created[2].id).content == lines * 3
    assert fake.last().path == f"{collection}/{created[2].id}/content{version}"

    deleted = client.files.delete(created[0].id)
    assert (deleted.id, deleted.deleted) == (created[0].id, True)
    assert fake.last().method == "DELETE"
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created[0].id)
    assert gw.records() == []  # files calls are not LLM calls: no statistics (seed 002)


def test_multipart_and_binary_bytes_arrive_exactly(gateway, fake: FakeOpenAI) -> None:
    gw = gateway(files_routes(fake))
    data = bytes(range(256)) * 40 + b"\r\n--notthebound\r\n" + b"\xff\xfe\x00" * 1000
    boundary = "b0undary-XyZ"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    answer = httpx.post(
        gw.url + "/openai/v1/files",
        content=body,
        headers={"content-type": f"multipart/form-data; boundary={boundary}", "authorization": "Bearer c"},
    )
    assert answer.status_code == 200, answer.text
    seen = fake.last()
    assert (seen.size, seen.sha256, seen.body) == (len(body), hashlib.sha256(body).hexdigest(), body)
    assert seen.headers["content-type"] == f"multipart/form-data; boundary={boundary}"
    assert client_download(gw, answer.json()["id"]) == data


def client_download(gw, file_id: str) -> bytes:
    answer = httpx.get(f"{gw.url}/openai/v1/files/{file_id}/content")
    assert answer.status_code == 200
    return answer.content


class Resident:
    """The proxy's resident memory, sampled every 20 ms while a transfer runs."""

    def __init__(self, pid: int) -> None:
        self.status = Path(f"/proc/{pid}/status")
        self.peak = self.baseline = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def now(self) -> int:
        for line in self.status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> Resident:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


FLAT = 48 << 20  # a quarter of the 200 MB transferred: a body held in memory would pass it


def test_a_large_upload_streams_through_with_flat_memory(gateway, fake: FakeOpenAI) -> None:
    gw = gateway(files_routes(fake))
    boundary = "big-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    digest = hashlib.sha256(head)
    for piece in pattern_chunks(BIG):
        digest.update(piece)
    digest.update(tail)

    def body() -> Iterator[bytes]:
        yield head
        yield from pattern_chunks(BIG)
        yield tail

    httpx.get(gw.url + "/openai/v1/files", timeout=10)  # warm the proxy up before the baseline
    with Resident(gw.proc.pid) as rss:
        answer = httpx.post(
            gw.url + "/openai/v1/files",
            content=body(),
            headers={
                "content-type": f"multipart/form-data; boundary={boundary}",
                "content-length": str(len(head) + BIG + len(tail)),
            },
            timeout=120,
        )
    assert answer.status_code == 200, answer.text
    seen = fake.last()
    assert (seen.size, seen.sha256) == (len(head) + BIG + len(tail), digest.hexdigest())
    assert rss.growth < FLAT, f"the proxy grew by {rss.growth >> 20} MiB during a {BIG >> 20} MB upload"


def test_a_large_download_streams_with_flat_memory(gateway, fake: FakeOpenAI) -> None:
    gw = gateway(files_routes(fake))
    client = openai.OpenAI(base_url=gw.url + "/openai/v1", api_key="client-key", max_retries=0, timeout=120)
    expected = hashlib.sha256()
    for piece in pattern_chunks(BIG):
        expected.update(piece)
    client.files.list()  # warm the proxy up before the baseline
    got = hashlib.sha256()
    size = 0
    with Resident(gw.proc.pid) as rss, client.files.with_streaming_response.content(f"big-{BIG}") as answer:
        assert answer.headers["content-length"] == str(BIG)
        for piece in answer.iter_bytes(1 << 16):
            got.update(piece)
            size += len(piece)
    assert (size, got.hexdigest()) == (BIG, expected.hexdigest())
    assert rss.growth < FLAT, f"the proxy grew by {rss.growth >> 20} MiB during a {BIG >> 20} MB download"


def test_uploads_over_the_limit_get_413(gateway, fake: FakeOpenAI) -> None:
    gw = gateway(files_routes(fake))
    client = openai.OpenAI(base_url=gw.url + "/small/v1", api_key="client-key", max_retries=0)
    with pytest.raises(openai.APIStatusError) as refused:
        client.files.create(file=("big.jsonl", b"x" * 5000), purpose="batch")
    assert refused.value.status_code == 413
    error = refused.value.body
    assert isinstance(error, dict)
    declared = int(refused.value.request.headers["content-length"])
    assert declared > 5000
    assert error == {
        "message": f"request body of {declared} bytes exceeds max_request_body_size (4096)",
        "type": "invalid_request_error",
        "param": None,
        "code": "request_too_large",
    }
    assert fake.seen == []  # declared too long: never sent

    def chunked() -> Iterator[bytes]:  # no declared length: cut once past the limit
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n'
        for _ in range(10):
            yield b"y" * 1000
        yield b"\r\n--b--\r\n"

    answer = httpx.post(
        gw.url + "/small/v1/files",
        content=chunked(),
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert answer.status_code == 413
    assert answer.json()["error"] == {
        "message": "request body exceeds max_request_body_size (4096)",
        "type": "invalid_request_error",
        "param": None,
        "code": "request_too_large",
    }
    assert fake.last().size <= 4096


def test_pattern_helper_matches_its_chunks() -> None:
    assert pattern(200_000) == b"".join(pattern_chunks(200_000))


def test_cassettes_skip_uploads_and_downloads(gateway, fake: FakeOpenAI, tmp_path: Path) -> None:
    """Multipart uploads and binary answers are not recorded; with record mode none they are refused
    before anything reaches the provider."""
    recording = gateway(files_routes(fake), extra=["--set", f"ai_proxy_cassettes={tmp_path}"])
    client = openai.OpenAI(base_url=recording.url + "/openai/v1", api_key="k", max_retries=0)
    created = client.files.create(file=("a.jsonl", b"{}\n"), purpose="batch")
    assert client.files.content(created.id).content == b"{}\n"
    assert client.files.retrieve(created.id).id == created.id
    deadline = time.monotonic() + 5
    while not list(tmp_path.rglob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    recorded = [orjson.loads(p.read_bytes()) for p in tmp_path.rglob("*.json")]
    assert [(c["request"]["method"], c["request"]["url"]) for c in recorded] == [
        ("GET", f"{fake.url}/v1/files/{created.id}")
    ]

    replaying = gateway(
        files_routes(fake),
        extra=["--set", f"ai_proxy_cassettes={tmp_path}", "--set", "ai_proxy_record_mode=none"],
    )
    fake.reset()
    client = openai.OpenAI(base_url=replaying.url + "/openai/v1", api_key="k", max_retries=0)
    assert client.files.retrieve(created.id).id == created.id  # replayed
    with pytest.raises(openai.BadRequestError, match="cassettes do not record multipart uploads"):
        client.files.create(file=("a.jsonl", b"{}\n"), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="cassettes do not record multipart uploads"):
        client.files.content(created.id)
    assert fake.seen == []


LIMITED = [
    ("llm/v1/chat", "/c/v1/chat/completions", "application/json"),
    ("llm/v1/completions", "/c/v1/completions", "application/json"),
    ("llm/v1/embeddings", "/c/v1/embeddings", "application/json"),
    ("llm/v1/responses", "/c/v1/responses", "application/json"),
    ("llm/v1/files", "/c/v1/files", "multipart/form-data; boundary=b"),
    ("llm/v1/batches", "/c/v1/batches", "application/json"),
    ("llm/v1/assistants", "/c/v1/assistants", "application/json"),
    ("llm/v1/assistants", "/c/x/v1/threads", "application/json"),
    ("audio/v1/audio/speech", "/c/v1/audio/speech", "application/json"),
    ("audio/v1/audio/transcriptions", "/c/v1/audio/transcriptions", "multipart/form-data; boundary=b"),
    ("audio/v1/audio/translations", "/c/v1/audio/translations", "multipart/form-data; boundary=b"),
    ("preserve", "/c/preserve/*", "multipart/form-data; boundary=b"),
]


SMALL = {
    "llm/v1/chat": b'{"messages": [{"role": "user", "content": "x"}]}',
    "llm/v1/completions": b'{"prompt": "x"}',
    "audio/v1/audio/speech": b'{"input": "x", "voice": "alloy"}',
}


@pytest.mark.parametrize(("route_type", "path", "ctype"), LIMITED)
def test_every_route_type_answers_413_past_its_limit(
    gateway, fake: FakeOpenAI, route_type: str, path: str, ctype: str
) -> None:
    """``max_request_body_size`` holds on every route type, multipart included: a 413 in OpenAI's shape
    and nothing sent upstream; a body within the limit goes on."""
    gw = gateway(
        [
            {
                "name": f"limited-{i}",
                "match": {"path": p},
                "route_type": t,
                "max_request_body_size": 300,
                "model": {"provider": "openai", "name": "gpt-4o", "options": {"upstream_url": fake.url}},
            }
            for i, (t, p, _) in enumerate(LIMITED)
        ]
    )
    if ctype.startswith("multipart"):
        body = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n' + b"\x00\xff" * 200
        body += b"\r\n--b--\r\n"
    else:
        body = b'{"model": "gpt-4o", "input": "' + b"x" * 400 + b'"}'
    url = gw.url + path.replace("/*", "/v1/images/edits")
    answer = httpx.post(url, content=body, headers={"content-type": ctype})
    assert answer.status_code == 413, answer.text
    assert answer.json() == {
        "error": {
            "message": f"request body of {len(body)} bytes exceeds max_request_body_size (300)",
            "type": "invalid_request_error",
            "param": None,
            "code": "request_too_large",
        }
    }
    assert fake.seen == []
    small = SMALL.get(route_type, b'{"model": "gpt-4o", "input": "x"}')
    if ctype.startswith("multipart"):
        small = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nxy\r\n--b--\r\n'
    httpx.post(url, content=small, headers={"content-type": ctype})
    assert len(fake.seen) == 1  # within the limit: forwarded (whatever the fake makes of it)


def test_payload_logs_never_hold_binary_bodies(gateway, fake: FakeOpenAI) -> None:
    """A preserve route passing a multipart upload and its binary answer records no payload text."""
    gw = gateway(
        [
            {
                "name": "raw",
                "match": {"path": "/raw/*"},
                "route_type": "preserve",
                "logging": {"log_statistics": True, "log_payloads": True},
                "model": {"provider": "openai", "name": "gpt-4o", "options": {"upstream_url": fake.url}},
            }
        ]
    )
    client = openai.OpenAI(base_url=gw.url + "/raw/v1", api_key="k", max_retries=0)
    created = client.files.create(file=("a.bin", b"\x00\xff" * 100), purpose="batch")
    assert client.files.content(created.id).content == b"\x00\xff" * 100
    upload, download = (r["ai"]["proxy"]["payload"] for r in gw.wait_records(2))
    assert upload["request"] is None  # the multipart upload
    assert orjson.loads(upload["response"])["id"] == created.id  # its JSON answer is text
    assert download == {"request": "", "response": None}  # the file's bytes are not


def test_uploads_are_admitted_from_their_headers_once(gateway, fake: FakeOpenAI) -> None:
    """Gateway keys hold on streamed uploads: decided before any byte goes upstream, counted once,
    the gateway key never forwarded."""
    keys = [{"name": "team", "key": "gw-team-key-1", "limits": {"requests_per_minute": 2}}]
    gw = gateway(files_routes(fake), gateway_keys=keys)
    anonymous = openai.OpenAI(base_url=gw.url + "/openai/v1", api_key="not-a-gateway-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        anonymous.files.create(file=("a.jsonl", b"{}\n"), purpose="batch")
    chunked = httpx.post(  # a body of undeclared length is discarded all the same
        gw.url + "/openai/v1/files",
        content=iter([b"--b\r\n", b"x" * 100_000, b"\r\n--b--\r\n"]),
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert (chunked.status_code, chunked.json()["error"]["code"]) == (401, "invalid_api_key")
    assert fake.seen == []
    team = openai.OpenAI(base_url=gw.url + "/openai/v1", api_key="gw-team-key-1", max_retries=0)
    for _ in range(2):
        team.files.create(file=("a.jsonl", b"{}\n"), purpose="batch")
    assert [s.headers["authorization"] for s in fake.seen] == [f"Bearer {KEY}"] * 2
    with pytest.raises(openai.RateLimitError):  # two admitted: the third in the minute is refused
        team.files.create(file=("a.jsonl", b"{}\n"), purpose="batch")
    assert len(fake.seen) == 2


def test_a_refused_large_upload_is_discarded_with_flat_memory(gateway, fake: FakeOpenAI) -> None:
    """An upload refused from its headers (here: its declared length) is read and thrown away on the
    side, not held in memory, and the client gets the refusal once it has sent its body."""
    gw = gateway(files_routes(fake))
    size = 100 * 1024 * 1024
    httpx.get(gw.url + "/openai/v1/files", timeout=10)  # warm the proxy up before the baseline
    with Resident(gw.proc.pid) as rss:
        answer = httpx.post(
            gw.url + "/small/v1/files",
            content=pattern_chunks(size),
            headers={"content-type": "multipart/form-data; boundary=b", "content-length": str(size)},
            timeout=120,
        )
    assert answer.status_code == 413
    assert (
        answer.json()["error"]["message"]
        == f"request body of {size} bytes exceeds max_request_body_size (4096)"
    )
    assert [s.method for s in fake.seen] == ["GET"]  # the warm-up only
    assert rss.growth < FLAT, f"the proxy grew by {rss.growth >> 20} MiB refusing a {size >> 20} MB upload"


def test_inspected_uploads_pass_untouched_and_are_not_recorded(fake: FakeOpenAI, tmp_path: Path) -> None:
    """No route: an upload to a recognised OpenAI host is inspected (not changed) and, being
    multipart, kept out of cassettes."""
    from conftest import Gateway

    port = fake.url.rsplit(":", 1)[1]
    cassettes = tmp_path / "cassettes"
    cassettes.mkdir()
    extra = [
        "--set",
        f"confdir={tmp_path}",
        "--set",
        f"ai_proxy_inspect_hosts=127.0.0.1:{port}=openai",
        "--set",
        f"ai_proxy_cassettes={cassettes}",
    ]
    with Gateway(None, tmp_path / "stats.jsonl", {}, extra, mode="regular") as gw:
        body = b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        body += b'--b\r\nContent-Disposition: form-data; name="file"; filename="f.bin"\r\n\r\n'
        body += bytes(range(256)) * 4 + b"\r\n--b--\r\n"
        with httpx.Client(proxy=gw.url) as http:
            answer = http.post(
                f"{fake.url}/v1/files",
                content=body,
                headers={"content-type": "multipart/form-data; boundary=b"},
            )
            assert answer.status_code == 200
            assert (
                http.get(f"{fake.url}/v1/files/{answer.json()['id']}/content").content
                == bytes(range(256)) * 4
            )
        assert (fake.seen[0].size, fake.seen[0].body) == (len(body), body)
        time.sleep(0.3)
    assert list(cassettes.rglob("*.json")) == []
