"""Closed-loop load: ``c`` connections, each sending the next request as soon as the last answer ended.

wrk (one thread) does the real runs; a Python client on the same model is the fallback and the
smoke mode's client. Both report the same ``LoadResult``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.httpclient import Connection, build_request
from bench.tools import Tool


@dataclass(frozen=True, slots=True)
class LoadSpec:
    port: int
    path: str
    headers: dict[str, str]
    body: bytes
    connections: int
    seconds: float
    max_requests: int | None = None  # Python client only: stop after this many answers


@dataclass(frozen=True, slots=True)
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers, timeouts, broken connections

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


# --- wrk -----------------------------------------------------------------------------------------

WRK_SCRIPT = """\
local f = assert(io.open({body_path}, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wrk_script(spec: LoadSpec, folder: Path) -> Path:
    """A Lua script per (body, headers): wrk reads the body from a file next to it."""
    key = hashlib.sha1(spec.body + orjson.dumps(spec.headers, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]
    body_path = folder / f"body-{key}.json"
    script = folder / f"wrk-{key}.lua"
    if not script.exists():
        folder.mkdir(parents=True, exist_ok=True)
        body_path.write_bytes(spec.body)
        headers = "\n".join(
            f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in spec.headers.items()
        )
        script.write_text(WRK_SCRIPT.format(body_path=_lua_string(str(body_path)), headers=headers))
    return script


def run_wrk(wrk: Tool, spec: LoadSpec, folder: Path) -> LoadResult:
    assert wrk.path is not None
    seconds = max(1, round(spec.seconds))
    cmd = [
        str(wrk.path),
        "-t1",
        f"-c{spec.connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(wrk_script(spec, folder)),
        f"http://127.0.0.1:{spec.port}{spec.path}",
    ]
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=seconds + 60, env={**os.environ, **wrk.env}, check=False
    )
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            data = orjson.loads(line.removeprefix("BENCH_JSON "))
            return LoadResult(
                requests=data["requests"],
                seconds=data["duration_us"] / 1e6,
                p50_ms=data["p50_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                errors=data["errors"],
            )
    raise RuntimeError(f"wrk gave no result (exit {done.returncode}): {done.stderr.strip()[-500:]}")


# --- Python client ----------------------------------------------------------------------------------


def run_python(spec: LoadSpec) -> LoadResult:
    return asyncio.run(_python_load(spec))


async def _python_load(spec: LoadSpec) -> LoadResult:
    raw = build_request("127.0.0.1", spec.port, spec.path, spec.headers, spec.body)
    latencies: list[float] = []
    errors = [0]
    started = time.perf_counter()
    deadline = started + spec.seconds
    budget = spec.max_requests
    workers = [_worker(spec.port, raw, deadline, budget, latencies, errors) for _ in range(spec.connections)]
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - started
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    return LoadResult(len(latencies), elapsed, p50, p99, errors[0])


async def _worker(
    port: int, raw: bytes, deadline: float, budget: int | None, latencies: list[float], errors: list[int]
) -> None:
    conn = Connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline and (budget is None or len(latencies) + errors[0] < budget):
            try:
                reply = await asyncio.wait_for(conn.exchange(raw), 10)
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                errors[0] += 1
                conn.close()
                continue
            if 200 <= reply.status < 300:
                latencies.append(reply.latency_ms)
            else:
                errors[0] += 1
    finally:
        conn.close()


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1] if pct < 100 else max(values)
