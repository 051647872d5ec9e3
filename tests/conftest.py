"""Shared test rig: the provider emulator in-process, and mitmdump with the addon as a subprocess.

``gateway(routes)`` starts (or reuses, for an identical config) a real ``mitmdump -s
addon/ai_proxy.py`` in gateway mode on a free loopback port, pointed at routes whose
``upstream_url`` is usually ``emulator.url``.

A streamed call's statistics record is written after its last byte reached the client, so a test
that streams must ``gw.wait_records(n)`` before it ends, or the record lands in the next test.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
sys.path.insert(0, str(ROOT))

from addon.emulator import Emulator  # noqa: E402

MITMDUMP = str(Path(sys.executable).with_name("mitmdump"))


def fixture_bytes(relative: str) -> bytes:
    return (FIXTURES / relative).read_bytes()


def fixture_json(relative: str) -> Any:
    return orjson.loads(fixture_bytes(relative))


class Gateway:
    """A running mitmdump with the addon; ``records()`` reads the statistics it wrote."""

    def __init__(
        self,
        config: Path | None,
        stats: Path,
        env: dict[str, str],
        extra: list[str],
        mode: str = "reverse:http://127.0.0.1:1",
        program: str = MITMDUMP,  # or mitmweb, next to it
    ) -> None:
        self.stats_path = stats
        self.lines: list[str] = []
        self._ready = threading.Event()
        detail = [] if any(a.startswith("flow_detail=") for a in extra) else ["--set", "flow_detail=0"]
        cmd = [
            program,
            "-s",
            str(ROOT / "addon" / "ai_proxy.py"),
            "--mode",
            mode,
            "--listen-host",
            "127.0.0.1",
            "-p",
            "0",
            *(("--set", f"ai_proxy_config={config}") if config else ()),
            "--set",
            f"ai_proxy_stats_file={stats}",
            *detail,
            *extra,
        ]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **env},
            cwd="/",  # the script must load from any working directory
        )
        self.port = 0
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._ready.wait(30) or not self.port:
            self.stop()
            raise RuntimeError("mitmdump did not start:\n" + "\n".join(self.lines))

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            m = re.search(r"listening at \*?:?(?:127\.0\.0\.1:)?(\d+)", line)
            if m:
                self.port = int(m.group(1))
                self._ready.set()
        self._ready.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def records(self) -> list[dict[str, Any]]:
        if not self.stats_path.exists():
            return []
        data = self.stats_path.read_bytes()
        # A record being written may be read half-way: only newline-terminated lines are complete.
        complete = data[: data.rfind(b"\n") + 1]
        return [orjson.loads(line) for line in complete.splitlines() if line]

    def wait_records(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Statistics are written when the response completes; wait for them to land."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            recs = self.records()
            if len(recs) >= count:
                return recs
            time.sleep(0.02)
        return self.records()

    def clear_records(self) -> None:
        if self.stats_path.exists():
            self.stats_path.write_bytes(b"")

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    emu = Emulator().start()
    yield emu
    emu.stop()


@pytest.fixture(autouse=True)
def _fresh_emulator(request: pytest.FixtureRequest) -> None:
    if "emulator" in request.fixturenames:
        request.getfixturevalue("emulator").reset()


@pytest.fixture(scope="session")
def _fake_openai() -> Iterator[Any]:
    from fake_openai import FakeOpenAI

    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def fake_openai(_fake_openai: Any) -> Any:
    """A fake OpenAI upstream for the files, batches, assistants and audio APIs (tests/fake_openai.py),
    emptied for each test."""
    _fake_openai.reset()
    return _fake_openai


@pytest.fixture(scope="session")
def _gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Gateway]]:
    running: dict[str, Gateway] = {}
    yield running
    for gw in running.values():
        gw.stop()


@pytest.fixture
def gateway(
    _gateways: dict[str, Gateway], tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., Gateway]:
    """``gateway(routes, env={}, extra=[], gateway_keys=None)`` -> a running Gateway (reused for
    identical configs)."""

    def start(
        routes: list[dict[str, Any]],
        env: dict[str, str] | None = None,
        extra: list[str] | None = None,
        gateway_keys: list[dict[str, Any]] | None = None,
    ) -> Gateway:
        env = env or {}
        extra = extra or []
        document: dict[str, Any] = {"routes": routes}
        if gateway_keys is not None:
            document["gateway_keys"] = gateway_keys
        config = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
        key = hashlib.sha256(config + orjson.dumps([env, extra], option=orjson.OPT_SORT_KEYS)).hexdigest()[
            :16
        ]
        gw = _gateways.get(key)
        if gw is None or gw.proc.poll() is not None:
            folder = tmp_path_factory.mktemp(f"gw-{key}")
            path = folder / "routes.json"
            path.write_bytes(config)
            gw = Gateway(path, folder / "stats.jsonl", env, extra)
            _gateways[key] = gw
        gw.clear_records()
        return gw

    return start


def npm_cli(name: str, env_var: str) -> str | None:
    """An npm CLI the end-to-end tests drive (claude, codex): the one ``env_var`` names, else the
    project-local install in tests/.node (``make claude-code`` / ``make codex``; git-ignored), else
    ``name`` on PATH. None: not installed (CI has no npm; those tests are skipped)."""
    named = os.environ.get(env_var)
    if named:
        return named if Path(named).is_file() else None
    local = ROOT / "tests" / ".node" / "node_modules" / ".bin" / name
    if local.is_file():
        return str(local)
    return shutil.which(name)


def route(
    name: str,
    path: str,
    route_type: str,
    provider: str,
    upstream_url: str | None,
    *,
    model: str | None = None,
    auth: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A route dict for tests, with the upstream pointed at the emulator."""
    opts = dict(options or {})
    if upstream_url is not None:
        opts["upstream_url"] = upstream_url
    model_block: dict[str, Any] = {"provider": provider, "options": opts}
    if model:
        model_block["name"] = model
    out: dict[str, Any] = {
        "name": name,
        "match": {"path": path},
        "route_type": route_type,
        "model": model_block,
    }
    if auth is not None:
        out["auth"] = auth
    out.update(extra)
    return out
