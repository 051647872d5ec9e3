"""The offline demo of `make run`: every demo route answers through the built-in emulator."""

from __future__ import annotations

import re
import subprocess
import threading

import httpx
import pytest
from conftest import MITMDUMP, ROOT

from addon.config_loader import load_config


@pytest.fixture(scope="module")
def demo():
    proc = subprocess.Popen(
        [
            MITMDUMP,
            "-s",
            str(ROOT / "addon" / "ai_proxy.py"),
            "--mode",
            "reverse:http://127.0.0.1:1",
            "--listen-host",
            "127.0.0.1",
            "-p",
            "0",
            "--set",
            "flow_detail=0",
        ],
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
    yield f"http://127.0.0.1:{port[0]}", lines
    proc.terminate()
    proc.wait(5)


DEMO_ROUTES = load_config(
    ROOT / "addon" / "demo_routes.yaml", {"AI_PROXY_EMULATOR_URL": "http://127.0.0.1:9"}
).routes


@pytest.mark.parametrize(
    "route", [r for r in DEMO_ROUTES if r.route_type == "llm/v1/chat"], ids=lambda r: r.name
)
def test_every_demo_chat_route_answers_offline(demo, route):
    url, log = demo
    body = {"messages": [{"role": "user", "content": "What is 1 + 1?"}]}
    if route.model.name is None:
        body["model"] = "gpt-4o-mini"
    r = httpx.post(url + route.match.path, json=body, timeout=10)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"]  # the fixture's answer, translated
    assert answer["usage"]["total_tokens"] > 0
    assert r.headers["x-ai-proxy-model"].startswith(route.provider + "/")
    assert any(f"route={route.name} provider={route.provider}" in line for line in log)
