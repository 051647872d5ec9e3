"""The offline demo: `make run`'s own command line, replaying the bundled cassettes (no network)."""

from __future__ import annotations

import re
import shlex
import subprocess
import threading
import time

import httpx
import openai
import orjson
import pytest
from conftest import ROOT
from record_demo import ANSWER, OTHER_CALLS, chat_body, chat_routes, record


def eventually(log: list[str], text: str, timeout: float = 5.0) -> bool:
    """mitmdump's output is read by a thread: wait for a line to arrive."""
    deadline = time.monotonic() + timeout
    while not any(text in line for line in log) and time.monotonic() < deadline:
        time.sleep(0.02)
    return any(text in line for line in log)


def make_run_command() -> list[str]:
    """The mitmdump command `make run` would start, on a free port."""
    out = subprocess.run(
        ["make", "-s", "-n", "run", "PORT=0", "RUN_STAMP=Makefile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(line for line in out.replace("\\\n", " ").splitlines() if "mitmdump" in line)
    return shlex.split(line)


@pytest.fixture(scope="module")
def demo():
    command = make_run_command()
    assert "ai_proxy_record_mode=none" in command
    proc = subprocess.Popen(
        [str(ROOT / command[0]), *command[1:]],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    port: list[int] = []
    lines: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        for line in proc.stdout:
            lines.append(line)
            if m := re.search(r"listening at 127\.0\.0\.1:(\d+)", line):
                port.append(int(m.group(1)))
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    ready.wait(30)
    assert port, "".join(lines)
    yield f"http://127.0.0.1:{port[0]}", lines
    proc.terminate()
    proc.wait(5)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("route", chat_routes(), ids=lambda r: r.name)
def test_every_demo_chat_route_answers_the_readme_question_offline(demo, route, stream):
    url, log = demo
    client = openai.OpenAI(
        base_url=url + route.match.path.removesuffix("/chat/completions"), api_key="x", max_retries=0
    )
    body = chat_body(route.name, stream)
    body.setdefault("model", "unused")
    if route.model.name is not None:
        body["model"] = route.model.name
    if not stream:
        raw = client.chat.completions.with_raw_response.create(**body)
        answer = raw.parse()
        assert answer.choices[0].message.content == "1 + 1 = 2."
        assert answer.usage.total_tokens == 22
        headers = raw.headers
    else:
        pieces: list[str] = []
        started = time.monotonic()
        with client.chat.completions.with_streaming_response.create(**body) as response:
            for chunk in response.parse():
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces.append(chunk.choices[0].delta.content)
            headers = response.headers
        assert pieces == ANSWER  # event by event, as recorded
        # Recorded 40 ms apart, replayed 20 ms apart: the pacing is kept. (A lower bound on the whole
        # call, as under load mitmproxy may hand over several events at once; the SDK may stop at the
        # answer's last chunk, before the provider's closing event.)
        cassette = orjson.loads(
            (ROOT / "fixtures" / "demo_cassettes" / headers["x-ai-proxy-cassette"]).read_bytes()
        )
        assert time.monotonic() - started >= 0.02 * (len(cassette["response"]["events"]) - 2)
    assert headers["x-ai-proxy-cassette"].startswith(f"{route.provider}/")
    assert headers["x-ai-proxy-model"].startswith(route.provider + "/")
    assert eventually(log, f"route={route.name} provider={route.provider}")


@pytest.mark.parametrize(("path", "body"), OTHER_CALLS, ids=["completions", "embeddings"])
def test_demo_completions_and_embeddings_replay(demo, path, body):
    url, _ = demo
    r = httpx.post(url + path, json=body, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["x-ai-proxy-cassette"].startswith("openai/")


def test_a_question_the_demo_has_no_cassette_for_says_so(demo):
    url, log = demo
    client = openai.OpenAI(base_url=url + "/anthropic/v1", api_key="x", max_retries=2)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": "Tell me a joke"}]
        )
    error = e.value.body
    assert error["code"] == "cassette_miss"
    assert "closest is anthropic/claude-sonnet-4-5-" in error["message"]
    assert "messages[0].content" in error["message"]
    assert eventually(log, "route=anthropic-chat: cassette_miss:")


def test_the_bundled_cassettes_are_what_the_recorder_makes(tmp_path):
    """Regenerating gives the same files, apart from the measured event timings."""
    record(tmp_path / "demo")
    bundled = sorted(
        p.relative_to(ROOT / "fixtures" / "demo_cassettes")
        for p in (ROOT / "fixtures" / "demo_cassettes").rglob("*.json")
    )
    fresh = sorted(p.relative_to(tmp_path / "demo") for p in (tmp_path / "demo").rglob("*.json"))
    assert fresh == bundled

    def untimed(text: str) -> str:
        text = re.sub(r'"ms": \d+', '"ms": 0', text)
        return re.sub(r"http://127\.0\.0\.1:\d+", "http://emulator", text)

    for name in bundled:
        assert untimed((tmp_path / "demo" / name).read_text()) == untimed(
            (ROOT / "fixtures" / "demo_cassettes" / name).read_text()
        ), name
