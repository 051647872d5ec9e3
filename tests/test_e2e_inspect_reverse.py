"""The inspecting reverse proxy with no routes: in front of a recognised provider host, in front of a
host declared with ``ai_proxy_inspect_hosts``, and in front of an unknown host (unmatched flows are
rejected there). One mitmdump listens in all three modes; the last test stops it and reads the
usage summary it logs on exit."""

from __future__ import annotations

import re
import socket
import time

import anthropic
import httpx
import openai
import pytest
from conftest import ROOT, Gateway, fixture_bytes

from transforms.summary import HEADER

REMAP = str(ROOT / "tests" / "remap_upstream.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def reverse(emulator, tmp_path_factory):
    folder = tmp_path_factory.mktemp("inspect-reverse")
    config = folder / "routes.json"
    config.write_bytes(b'{"routes": []}')
    ports = {"anthropic": free_port(), "declared": free_port(), "unknown": free_port()}
    emulator_port = int(emulator.url.rsplit(":", 1)[1])
    extra = [
        "-s",
        REMAP,
        "--mode",
        f"reverse:{emulator.url}@{ports['declared']}",
        "--mode",
        f"reverse:http://upstream.example@{ports['unknown']}",
        "--set",
        f"ai_proxy_inspect_hosts=127.0.0.1:{emulator_port}=openai",
    ]
    env = {"AI_PROXY_TEST_UPSTREAM": emulator.url}
    gw = Gateway(
        config,
        folder / "stats.jsonl",
        env,
        extra,
        mode=f"reverse:https://api.anthropic.com@{ports['anthropic']}",
    )
    deadline = time.monotonic() + 10
    while gw.log.count("listening at") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    yield gw, {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    gw.stop()


def test_in_front_of_anthropic_with_no_routes(reverse, emulator):
    gw, urls = reverse
    gw.clear_records()
    client = anthropic.Anthropic(base_url=urls["anthropic"], api_key="sk-ant-reverse-secret", max_retries=0)
    raw = client.messages.with_raw_response.create(
        model="claude-sonnet-4-5", max_tokens=100, messages=[{"role": "user", "content": "What is 1 + 1?"}]
    )
    assert raw.http_response.content == fixture_bytes("anthropic/chat/response.json")
    assert emulator.last.headers["host"] == "api.anthropic.com"
    (record,) = gw.wait_records(1)
    meta = record["ai"]["proxy"]["meta"]
    assert (meta["route"], meta["provider_name"], meta["response_model"]) == (
        "inspect",
        "anthropic",
        "claude-sonnet-4-5-20250929",
    )
    assert record["ai"]["proxy"]["usage"]["total_tokens"] == 40


def test_a_recognised_providers_other_endpoints_pass(reverse, emulator):
    gw, urls = reverse
    gw.clear_records()
    r = httpx.get(f"{urls['anthropic']}/v1/models")
    # The emulator answered (it has no models list): the proxy passed the call on, without a record.
    assert r.json() == {"error": {"message": "emulator: no fixture for GET /v1/models"}}
    time.sleep(0.2)
    assert gw.records() == []


def test_in_front_of_a_declared_host(reverse):
    gw, urls = reverse
    gw.clear_records()
    client = openai.OpenAI(base_url=f"{urls['declared']}/v1", api_key="sk-declared-secret", max_retries=0)
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert reply.usage is not None and reply.usage.total_tokens == 37
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["meta"]["provider_name"] == "openai"
    assert record["ai"]["proxy"]["usage"]["prompt_tokens"] == 25


def test_an_unknown_destination_is_rejected(reverse, emulator):
    _, urls = reverse
    emulator.reset()
    r = httpx.post(f"{urls['unknown']}/v1/chat/completions", json={"model": "m", "messages": []})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "unknown_route"
    assert emulator.requests == []


def test_the_exit_summary_lists_every_call(reverse):
    gw, _ = reverse
    gw.stop()
    deadline = time.monotonic() + 5
    while "usage summary" not in gw.log and time.monotonic() < deadline:
        time.sleep(0.05)
    table = gw.log.split("ai_proxy usage summary:", 1)[1].splitlines()[1:5]
    assert re.split(r"\s+", table[0].strip()) == " ".join(HEADER).split()
    rows = [re.split(r"\s+", line.strip()) for line in table[1:]]
    assert [row[:7] for row in rows] == [
        ["anthropic", "claude-sonnet-4-5-20250929", "1", "0", "27", "13", "0.000000"],
        ["openai", "gpt-4o-mini-2024-07-18", "1", "0", "25", "12", "0.000000"],
        ["total", "2", "0", "52", "25", "0.000000"],
    ]
    written = gw.log + gw.stats_path.read_text()
    assert "sk-ant-reverse-secret" not in written and "sk-declared-secret" not in written
