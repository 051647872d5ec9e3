"""CPU per flow of mitmdump's addon chain with and without the ai-proxy addon, in one process.

    python -m bench.flowcost [--flows 2000] [--rounds 7] [--cell 1k-json] [--cell 32k-stream]

No sockets: a DumpMaster is built as mitmdump builds it (default addons, the dumper, ``-q``,
``flow_detail=0``, reverse mode) and each flow's hooks are triggered through its real AddonManager
(requestheaders, request, responseheaders, the stream hook chunk by chunk, response; each followed
by mitmproxy's ``update``), with the benchmark's bodies and the static upstream's answers. What is
left out (sockets, HTTP parsing) is the same with and without the addon, so the difference of the
two is the addon's own cost per flow, hook dispatch included; CPU time (process_time) of a single
thread is far steadier than req/s on a shared machine. Rounds alternate the two masters.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from mitmproxy import http, options
from mitmproxy.hooks import RunningHook
from mitmproxy.proxy.layers.http import (
    HttpRequestHeadersHook,
    HttpRequestHook,
    HttpResponseHeadersHook,
    HttpResponseHook,
)
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import tflow
from mitmproxy.tools.dump import DumpMaster

from bench.payloads import BODY_SIZES, anthropic_response, anthropic_stream, chat_request
from bench.targets import ADDON, CLIENT_PATHS, UPSTREAM_PATHS, routes_for

PORT = 9  # never connected to: no flow leaves the process
CELLS = ("1k-json", "1k-stream", "32k-json", "32k-stream")
STREAM_CHUNK = 16 * 1024  # network chunks the stream hook is fed in


class _Upstream:
    name = "static"
    port = PORT


async def _master(addon: bool, run: Path) -> DumpMaster:
    opts = options.Options()
    master = DumpMaster(opts, loop=asyncio.get_running_loop())
    updates: dict[str, object] = {
        "mode": [f"reverse:http://127.0.0.1:{PORT}"],
        "flow_detail": 0,
        "termlog_verbosity": "error",
        "confdir": str(run / "confdir"),  # a fresh CA, not the user's
    }
    if addon:
        config = run / "routes.json"
        config.write_bytes(orjson.dumps(routes_for("anthropic", _Upstream())))  # type: ignore[arg-type]
        updates["scripts"] = [str(ADDON)]
        # Set before the script defines them, as mitmdump's --set does. No relay: its loopback hop
        # needs sockets (measure it with the bench's addon-anthropic against -norelay), and flows
        # re-pointed at it would wait for it here, kept alive, for the collector to walk.
        opts.update_defer(
            ai_proxy_config=str(config),
            ai_proxy_stats_file=str(run / "stats.jsonl"),
            ai_proxy_relay="balanced",
        )
    opts.update(**updates)
    await asyncio.sleep(0.1)  # mitmproxy loads scripts from a task
    master.addons.trigger(RunningHook())
    if addon and master.addons.get("aiproxy") is None:
        raise SystemExit(f"the addon did not load: {list(master.addons.lookup)}")
    return master


def _flow(body: bytes, path: str, mode: ProxyMode) -> http.HTTPFlow:
    req = http.Request.make(
        "POST",
        f"http://127.0.0.1:{PORT}{path}",
        body,
        {"content-type": "application/json", "authorization": "Bearer bench-client-key"},
    )
    req.headers["host"] = f"127.0.0.1:{PORT}"
    flow = tflow.tflow(req=req)
    flow.client_conn.proxy_mode = mode
    return flow


async def _one(
    master: DumpMaster, flow: http.HTTPFlow, answer: bytes, stream: bool, translated: bool
) -> None:
    addons = master.addons
    await addons.handle_lifecycle(HttpRequestHeadersHook(flow))
    await addons.handle_lifecycle(HttpRequestHook(flow))
    if flow.response is not None:
        raise SystemExit(f"answered locally: {flow.response.status_code} {flow.response.content!r}")
    ctype = "text/event-stream" if stream else "application/json"
    headers = {"content-type": ctype}
    if not stream:
        headers["content-length"] = str(len(answer))
    flow.response = http.Response.make(200, b"", headers)
    flow.response.content = None
    await addons.handle_lifecycle(HttpResponseHeadersHook(flow))
    out = 0
    if callable(flow.response.stream):
        for i in range(0, len(answer), STREAM_CHUNK):
            out += sum(map(len, flow.response.stream(answer[i : i + STREAM_CHUNK])))
        out += sum(map(len, flow.response.stream(b"")))
        flow.response.content = b""
    else:
        flow.response.content = answer
    await addons.handle_lifecycle(HttpResponseHook(flow))
    if flow.response.status_code != 200:
        raise SystemExit(f"failed: {flow.response.status_code} {flow.response.content!r}")
    if translated and "x-ai-proxy-overhead-ms" not in flow.response.headers:
        raise SystemExit("the addon did not translate the flow")


async def _cell_cost(master: DumpMaster, cell: str, flows: int, addon: bool) -> float:
    body_size, _, variant = cell.partition("-")
    stream = variant == "stream"
    body = chat_request(BODY_SIZES[body_size], stream)
    path = CLIENT_PATHS[variant]
    answer = anthropic_stream() if stream else anthropic_response()
    mode = ProxyMode.parse(f"reverse:http://127.0.0.1:{PORT}")
    if not addon:  # plain mitmdump passes the upstream's answer; its size barely matters here
        path = UPSTREAM_PATHS["anthropic"][variant]
    made = [_flow(body, path, mode) for _ in range(flows)]
    start = time.process_time()
    made.reverse()
    while made:  # each flow is freed once done, as mitmdump frees them
        await _one(master, made.pop(), answer, stream, addon)
    return (time.process_time() - start) / flows * 1e6


async def _serve(addon: bool) -> None:
    """A worker: one master; each stdin line ``CELL FLOWS`` is answered with the µs per flow."""
    with tempfile.TemporaryDirectory() as tmp:
        master = await _master(addon, Path(tmp))
        for line in sys.stdin:
            cell, flows = line.split()
            print(f"{await _cell_cost(master, cell, int(flows), addon):.3f}", flush=True)


def _measure(args: argparse.Namespace) -> None:
    cells = tuple(args.cell or ("1k-json", "32k-stream"))
    cmd = [sys.executable, "-m", "bench.flowcost", "--worker"]
    workers = {
        addon: subprocess.Popen(
            [*cmd, "addon" if addon else "plain"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for addon in (False, True)
    }

    def ask(addon: bool, cell: str, flows: int) -> float:
        worker = workers[addon]
        assert worker.stdin is not None and worker.stdout is not None
        worker.stdin.write(f"{cell} {flows}\n")
        worker.stdin.flush()
        return float(worker.stdout.readline())

    costs: dict[tuple[str, bool], list[float]] = {(c, a): [] for c in cells for a in (False, True)}
    try:
        for cell in cells:  # warm-up
            for addon in (False, True):
                ask(addon, cell, 200)
        for _ in range(args.rounds):
            for cell in cells:
                for addon in (False, True):
                    costs[(cell, addon)].append(ask(addon, cell, args.flows))
    finally:
        for worker in workers.values():
            assert worker.stdin is not None
            worker.stdin.close()
            worker.wait()
    # Other processes only ever add time: the least of the rounds is the steadiest figure.
    print(
        "| cell | plain µs/flow (min, median) | addon µs/flow (min, median) | added µs/flow (of the mins) |"
    )
    print("|---|---|---|---|")
    for cell in cells:
        p, a = costs[(cell, False)], costs[(cell, True)]
        print(
            f"| {cell} | {min(p):.1f}, {statistics.median(p):.1f} | "
            f"{min(a):.1f}, {statistics.median(a):.1f} | {min(a) - min(p):.1f} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flowcost", description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--cell", choices=CELLS, action="append")
    parser.add_argument("--worker", choices=("plain", "addon"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        asyncio.run(_serve(args.worker == "addon"))
    else:
        _measure(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
