"""Explicit-proxy use: programs keep their provider URLs (HTTPS) and trust mitmproxy's CA."""

from __future__ import annotations

import shutil
import subprocess

import httpx
import openai
import orjson
import pytest
from conftest import Gateway, fixture_bytes, route


@pytest.fixture(scope="module")
def explicit_proxy(emulator, tmp_path_factory):
    folder = tmp_path_factory.mktemp("explicit")
    routes = [
        {
            **route(
                "openai-intercepted",
                "/v1/chat/completions",
                "llm/v1/chat",
                "openai",
                emulator.url,
                auth={"header_name": "Authorization", "header_value": "Bearer sk-from-the-gateway"},
            ),
            "match": {"host": "api.openai.com", "path": "/v1/chat/completions"},
        }
    ]
    config = folder / "routes.json"
    config.write_bytes(orjson.dumps({"routes": routes}))
    gw = Gateway(config, folder / "stats.jsonl", {}, ["--set", f"confdir={folder}"], mode="regular")
    yield gw, folder / "mitmproxy-ca-cert.pem"
    gw.stop()


def test_https_call_through_the_explicit_proxy_is_translated(explicit_proxy, emulator):
    gw, ca = explicit_proxy
    http_client = httpx.Client(proxy=gw.url, verify=str(ca))
    client = openai.OpenAI(
        api_key="sk-client", http_client=http_client, max_retries=0
    )  # real api.openai.com URL
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "1 + 1 = 2."
    assert emulator.last.headers["authorization"] == "Bearer sk-from-the-gateway"
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["meta"]["route"] == "openai-intercepted"


def test_unmatched_traffic_passes_untouched(explicit_proxy, emulator):
    gw, _ = explicit_proxy
    gw.clear_records()
    r = httpx.post(
        f"{emulator.url}/v1/chat/completions",
        content=b"not even json",
        headers={"authorization": "Bearer client-own"},
        proxy=gw.url,
    )
    assert r.status_code == 200  # the emulator answered; nothing was validated or rewritten
    assert emulator.last.body == b"not even json"
    assert emulator.last.headers["authorization"] == "Bearer client-own"
    assert gw.records() == []


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl for an HTTP/2 client")
def test_streams_reach_an_http2_client_intact(emulator, tmp_path):
    # An HTTP/2 client over TLS (an https placeholder lets mitmproxy offer h2): no HTTP/1 chunked
    # framing may be added to its stream.
    config = tmp_path / "routes.json"
    config.write_bytes(
        orjson.dumps(
            {"routes": [route("chat", "/v1/chat/completions", "llm/v1/chat", "openai", emulator.url)]}
        )
    )
    body = orjson.dumps(
        {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    )
    with Gateway(config, tmp_path / "stats.jsonl", {}, [], mode="reverse:https://127.0.0.1:1") as gw:
        out = subprocess.run(
            [
                "curl",
                "-sSk",
                "--http2",
                "-N",
                "-D",
                "-",
                "--data-binary",
                body,
                f"https://127.0.0.1:{gw.port}/v1/chat/completions",
            ],
            capture_output=True,
            timeout=30,
        )
        records = gw.wait_records(1)
    assert out.returncode == 0, out.stderr
    head, _, payload = out.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/2 200")
    assert b"transfer-encoding" not in head.lower()  # not allowed in HTTP/2
    events = [line[6:] for line in payload.decode().split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert (
        "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"])
        == "1 + 1 = 2."
    )
    assert len(records) == 1


def test_unmatched_event_streams_are_not_buffered(explicit_proxy, emulator):
    import time

    gw, _ = explicit_proxy
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    started = time.monotonic()
    with (
        httpx.Client(proxy=gw.url) as http,
        http.stream(
            "POST", f"{emulator.url}/v1/chat/completions", json=body, headers={"x-emulator-delay-ms": "300"}
        ) as response,
    ):
        chunks = response.iter_raw()
        first = next(chunks)
        first_at = time.monotonic() - started
        rest = b"".join(chunks)
    assert first.startswith(b"data: ")
    assert first_at < 1.0  # the whole stream takes 9 x 300 ms
    assert (first + rest) == fixture_bytes("openai/chat/stream.sse")
