"""The benchmark run: start everything, check it answers right, measure interleaved, write the report.

python -m bench                 # the real run (make bench): nginx, wrk, Portkey, ~15 min
python -m bench --smoke --out /tmp/r.md   # a few hundred requests with Python stand-ins
python -m bench --routes-only             # only the route-count cells: the addon with 10 and 2,000 routes
python -m bench --cells 1k-json-16,32k-stream-16 --targets mitmdump,mitmdump-stream,addon-anthropic
                                          # only these load cells and configurations (no soak, no long stream)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson
from mitmproxy.version import VERSION

from bench import micro, probe, report
from bench.data import BigStream, Cell, Memory, Results
from bench.load import LoadResult, LoadSpec, run_python, run_wrk
from bench.payloads import BODY_SIZES, chat_request
from bench.procs import PeakRss, Service, StartError, cpu_seconds, rss_mb
from bench.targets import (
    CLIENT_PATHS,
    Target,
    addon_mitmdump,
    available_providers,
    direct,
    plain_mitmdump,
    portkey,
    route_count_provider,
    variant,
)
from bench.tools import ROOT, SCRATCH, find_nginx, find_portkey, find_wrk
from bench.upstream import start_nginx, start_python_upstream

DEFAULT_OUT = ROOT / "bench" / "results.md"
ROUTES_OUT = SCRATCH / "routes.md"  # a partial run must not replace the full report
# Route tables the addon is measured with to show that finding a route does not grow with their size.
ROUTE_COUNTS = (10, 2000)
ROUTE_CELLS: tuple[Cell, ...] = (("1k", False, 1), ("1k", False, 16))
Loader = Callable[[LoadSpec], LoadResult]
Requests = dict[tuple[str, bool], bytes]


@dataclass(frozen=True)
class Settings:
    smoke: bool
    rounds: int
    seconds: float
    connections: tuple[int, ...]
    bodies: tuple[str, ...]
    probes: int  # first-chunk probes per (target, body, mode) and round
    rss_requests: int
    smoke_requests: int  # smoke mode: answers per load cell
    big_stream_mb: float  # size of the very long stream (RSS over one huge answer)
    out: Path
    portkey: bool
    micro: bool
    routes_only: bool  # only the route-count cells
    cells: tuple[Cell, ...] | None = None  # only these load cells: skips the soak, long stream and routes
    targets: tuple[str, ...] | None = None  # only these configurations


def parse_args(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run with Python stand-ins (tests)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3, smoke 1)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per load cell (default 3)")
    parser.add_argument("--probes", type=int, help="first-chunk probes per round (default 40, smoke 3)")
    parser.add_argument("--rss-requests", type=int, help="requests before the final RSS (default 50000)")
    parser.add_argument("--big-stream-mb", type=float, help="long-stream size in MB (default 100, smoke 1)")
    parser.add_argument(
        "--out", type=Path, help=f"Markdown report path (default {DEFAULT_OUT}; --routes-only: {ROUTES_OUT})"
    )
    parser.add_argument("--no-portkey", action="store_true", help="skip the Portkey gateway")
    parser.add_argument("--no-micro", action="store_true", help="skip the transforms micro-benchmark")
    parser.add_argument(
        "--routes-only", action="store_true", help="only the addon with 10 and with 2,000 routes"
    )
    parser.add_argument(
        "--cells",
        type=_parse_cells,
        help="only these load cells, BODY-MODE-C comma-separated (e.g. 1k-json-16,32k-stream-16); "
        "skips the soak, the long stream and the route-count cells",
    )
    parser.add_argument(
        "--targets",
        type=lambda text: tuple(text.split(",")),
        help=f"only these configurations ({', '.join(TARGETS)})",
    )
    args = parser.parse_args(argv)
    smoke = bool(args.smoke)
    return Settings(
        smoke=smoke,
        rounds=args.rounds or (1 if smoke else 3),
        seconds=args.seconds,
        connections=(1, 16),
        bodies=tuple(BODY_SIZES),
        probes=args.probes if args.probes is not None else (3 if smoke else 40),
        rss_requests=args.rss_requests if args.rss_requests is not None else (200 if smoke else 50_000),
        smoke_requests=25,
        big_stream_mb=args.big_stream_mb or (1.0 if smoke else 100.0),
        out=args.out or (ROUTES_OUT if args.routes_only else DEFAULT_OUT),
        portkey=not args.no_portkey and not smoke and not args.routes_only,
        micro=not args.no_micro and not args.routes_only,
        routes_only=bool(args.routes_only),
        cells=args.cells,
        targets=args.targets,
    )


ON_REQUEST = ("addon-openai-norelay", "addon-openai-targets", "addon-anthropic-norelay")
TARGETS = (
    "direct",
    "mitmdump",
    "mitmdump-stream",
    "addon-openai",
    "addon-openai-norelay",
    "addon-openai-targets",
    "addon-anthropic",
    "addon-anthropic-norelay",
    "portkey",
)


def _parse_cells(text: str) -> tuple[Cell, ...]:
    cells = []
    for item in text.split(","):
        body, mode, connections = item.split("-")
        if body not in BODY_SIZES or mode not in ("json", "stream") or not connections.isdigit():
            raise argparse.ArgumentTypeError(f"not a cell: {item} (BODY-MODE-C, e.g. 1k-json-16)")
        cells.append((body, mode == "stream", int(connections)))
    return tuple(cells)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    results = Results(settings={k: str(v) for k, v in asdict(settings).items()})
    if settings.cells is not None:
        results.notes.append(
            "A focused run (--cells/--targets): only the load cells and configurations shown; no soak, long "
            "stream, route-count cells or micro-benchmark (see an earlier full run in git history)."
        )
    started = time.monotonic()
    with (
        _run_dir(settings.smoke) as run,
        contextlib.ExitStack() as stack,
        ThreadPoolExecutor(len(ROUTE_COUNTS)) as pool,
    ):
        upstream = _start_upstream(settings, run, results, stack)
        loader = _loader(settings, run, results)
        requests = _requests(settings)
        route_counts = _start_route_counts(settings, upstream, run, pool) if settings.cells is None else {}
        targets: list[Target] = []
        if not settings.routes_only:
            targets = _start_targets(settings, upstream, run, results, stack, requests)
            served = _measure(settings, targets, loader, requests, results)
            if settings.cells is None:
                _soak(settings, targets, loader, served, results)
                _big_streams(settings, targets, requests, results)
        if settings.cells is None:
            _route_counts(settings, route_counts, targets, loader, requests, results)
        (run / "results.json").write_bytes(orjson.dumps(results.as_json(), option=orjson.OPT_INDENT_2))
    if settings.micro and settings.cells is None:
        log("micro-benchmark of the pure transforms")
        results.micro, notes = micro.run(quick=settings.smoke)
        results.notes += notes
    results.settings["wall time"] = f"{time.monotonic() - started:.0f} s"
    settings.out.parent.mkdir(parents=True, exist_ok=True)
    settings.out.write_text(report.render(results))
    log(f"wrote {settings.out}")
    return 0


@contextlib.contextmanager
def _run_dir(smoke: bool) -> Iterator[Path]:
    """Logs, configs and scripts of this run: a temporary folder for smoke runs, bench/.scratch/run else."""
    if smoke:
        with tempfile.TemporaryDirectory(prefix="bench-smoke-") as folder:
            yield Path(folder)
        return
    run = SCRATCH / "run"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    yield run


# --- setup -------------------------------------------------------------------------------------------


def _start_upstream(settings: Settings, run: Path, results: Results, stack: contextlib.ExitStack) -> Service:
    upstream: Service | None = None
    if not settings.smoke:
        nginx = find_nginx()
        if nginx.ok:
            try:
                upstream = start_nginx(nginx, run, _big_size(settings))
                results.tools["upstream"] = f"{nginx.version} ({nginx.note})"
            except StartError as e:
                results.notes.append(f"nginx did not start, using the Python upstream: {e}")
        else:
            results.notes.append(f"nginx unavailable ({nginx.note}): using the Python upstream instead")
    if upstream is None:
        upstream = start_python_upstream(run, _big_size(settings))
        results.tools["upstream"] = "bench/pyupstream.py (asyncio static server, Python stand-in for nginx)"
    stack.callback(upstream.stop)
    log(f"upstream: {results.tools['upstream']} on port {upstream.port}")
    return upstream


def _big_size(settings: Settings) -> int:
    return int(settings.big_stream_mb * 1024 * 1024)


def _loader(settings: Settings, run: Path, results: Results) -> Loader:
    if not settings.smoke:
        wrk = find_wrk()
        if wrk.ok:
            results.tools["load client"] = f"{wrk.version.split(' Copyright')[0]} ({wrk.note}), 1 thread"
            return functools.partial(run_wrk, wrk, folder=run / "wrk")
        results.notes.append(f"wrk unavailable ({wrk.note}): the Python client generates the load")
    results.tools["load client"] = "bench/load.py, an asyncio closed-loop client (it shares the CPU)"
    return run_python


def _requests(settings: Settings) -> Requests:
    return {
        (body, stream): chat_request(BODY_SIZES[body], stream)
        for body in settings.bodies
        for stream in (False, True)
    }


def _start_targets(
    settings: Settings,
    upstream: Service,
    run: Path,
    results: Results,
    stack: contextlib.ExitStack,
    requests: Requests,
) -> list[Target]:
    providers, import_error = available_providers()
    starters: list[tuple[str, Callable[[], Target] | str]] = [
        ("direct", lambda: direct(upstream)),
        ("mitmdump", lambda: plain_mitmdump(upstream, run)),
        ("mitmdump-stream", lambda: plain_mitmdump(upstream, run, stream=True)),
        ("addon-openai", lambda: addon_mitmdump("openai", upstream, run)),
        ("addon-openai-norelay", lambda: addon_mitmdump("openai", upstream, run, variant="norelay")),
        ("addon-openai-targets", lambda: addon_mitmdump("openai", upstream, run, variant="targets")),
        ("addon-anthropic", _anthropic_starter(providers, import_error, upstream, run)),
        ("addon-anthropic-norelay", _anthropic_starter(providers, import_error, upstream, run, "norelay")),
    ]
    results.tools["mitmproxy"] = f"mitmdump {VERSION} on Python {platform.python_version()}"
    results.tools["project"] = _project_version()
    if settings.targets is not None:
        starters = [(name, starter) for name, starter in starters if name in settings.targets]
    else:  # the relay's cost (issue 14) is measured when asked for by name
        starters = [(name, starter) for name, starter in starters if name not in ON_REQUEST]
    targets = [t for name, starter in starters if (t := _start_one(name, starter, results, stack, requests))]
    if settings.targets is not None and "portkey" not in settings.targets:
        return _described(targets, results)
    portkey_target = _start_portkey(settings, upstream, run, results, stack, requests)
    if portkey_target is not None:
        targets.append(portkey_target)
    return _described(targets, results)


def _described(targets: list[Target], results: Results) -> list[Target]:
    for target in targets:
        results.targets[target.name] = target.description
    return targets


def _project_version() -> str:
    """The commit measured, and whether the work tree differed from it (it is what runs)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
    )
    commit = head.stdout.strip() or "unknown commit"
    changed = len(dirty.stdout.splitlines())
    return f"commit {commit}" + (f" plus uncommitted changes in {changed} file(s)" if changed else "")


def _anthropic_starter(
    providers: list[str], import_error: str, upstream: Service, run: Path, variant: str = ""
) -> Callable[[], Target] | str:
    if import_error:
        return f"the provider registry does not import: {import_error}"
    if "anthropic" not in providers:
        return "no anthropic provider in transforms.registry.SPECS yet"
    return lambda: addon_mitmdump("anthropic", upstream, run, variant=variant)


def _start_portkey(
    settings: Settings,
    upstream: Service,
    run: Path,
    results: Results,
    stack: contextlib.ExitStack,
    requests: Requests,
) -> Target | None:
    """Portkey as installed; if only its streams fail, again with the fetch shim (and a note)."""
    if not settings.portkey:
        return _skip("portkey", "not run in smoke mode" if settings.smoke else "--no-portkey", results)
    log("installing/locating the Portkey gateway (npm)")
    tool = find_portkey()
    if not tool.ok:
        return _skip("portkey", tool.note, results)
    stock = lambda: portkey(tool, upstream, run)  # noqa: E731
    target, problems = _start_checked("portkey", stock, results, stack, requests)
    if target is not None and set(problems) == {"stream"}:
        results.notes.append(
            f"Portkey ({tool.version}) as installed fails every stream ({problems['stream'][:160]}): its "
            "numbers were measured with bench/portkey_fetch_shim.mjs preloaded (see that file for why)."
        )
        _stop(target)
        target, problems = _start_checked(
            "portkey", lambda: portkey(tool, upstream, run, shim=True), results, stack, requests
        )
    return _accept("portkey", target, problems, results)


def _skip(name: str, why: str, results: Results) -> None:
    results.skipped[name] = why
    log(f"skip {name}: {why}")


def _stop(target: Target) -> None:
    if target.service is not None:
        target.service.stop()


def _start_checked(
    name: str,
    starter: Callable[[], Target],
    results: Results,
    stack: contextlib.ExitStack,
    requests: Requests,
) -> tuple[Target | None, dict[str, str]]:
    """Start a configuration and check its answers per mode; (None, {}) if it did not start."""
    try:
        target = starter()
    except StartError as e:
        _skip(name, f"did not start: {e}", results)
        return None, {}
    if target.service is not None:
        stack.callback(target.service.stop)
    return target, probe.verify(target, requests)


def _accept(name: str, target: Target | None, problems: dict[str, str], results: Results) -> Target | None:
    if target is None:
        return None
    if problems:
        _stop(target)
        return _skip(name, "wrong answers, not measured: " + "; ".join(problems.values()), results)
    log(f"ready: {name} on port {target.port} ({target.description})")
    return target


def _start_one(
    name: str,
    starter: Callable[[], Target] | str,
    results: Results,
    stack: contextlib.ExitStack,
    requests: Requests,
) -> Target | None:
    """Start a configuration and check its answers; on any failure it is skipped with the reason."""
    if isinstance(starter, str):
        return _skip(name, starter, results)
    target, problems = _start_checked(name, starter, results, stack, requests)
    return _accept(name, target, problems, results)


# --- measuring ---------------------------------------------------------------------------------------


def _cells(settings: Settings) -> list[Cell]:
    if settings.cells is not None:
        return list(settings.cells)
    modes = (False, True)
    return [(body, stream, c) for body in settings.bodies for stream in modes for c in settings.connections]


def _spec(settings: Settings, target: Target, requests: Requests, cell: Cell, seconds: float) -> LoadSpec:
    body, stream, connections = cell
    return LoadSpec(
        port=target.port,
        path=target.paths[variant(stream)],
        headers=target.headers[variant(stream)],
        body=requests[(body, stream)],
        connections=connections,
        seconds=seconds if not settings.smoke else 5.0,
        max_requests=settings.smoke_requests if settings.smoke else None,
    )


def _load(loader: Loader, target: Target, spec: LoadSpec) -> tuple[LoadResult, float | None]:
    """One load run, with the server's CPU share (1.0 = one core busy) over it."""
    pid = target.cpu_pid
    cpu_before = cpu_seconds(pid) if pid else 0.0
    result = loader(spec)
    share = (cpu_seconds(pid) - cpu_before) / result.seconds if pid and result.seconds else None
    return result, share


def _measure(
    settings: Settings, targets: list[Target], loader: Loader, requests: Requests, results: Results
) -> dict[str, int]:
    """Warm up, note RSS, then the interleaved rounds; returns the requests each target served."""
    served = dict.fromkeys((t.name for t in targets), 0)
    for target in targets:
        for stream in (False, True):
            result, _ = _load(loader, target, _spec(settings, target, requests, ("1k", stream, 16), 1.0))
            served[target.name] += result.requests
    for target in targets:
        if target.service is not None:
            rss, count = target.service.rss_mb(), served[target.name]
            results.memory[target.name] = Memory(rss, served_before=count, samples=[(count, rss)])
    cells = _cells(settings)
    for round_no in range(settings.rounds):
        order = targets[round_no % len(targets) :] + targets[: round_no % len(targets)]
        log(f"round {round_no + 1}/{settings.rounds}: {len(cells)} load cells x {len(order)} targets")
        for cell in cells:
            for target in order:
                spec = _spec(settings, target, requests, cell, settings.seconds)
                result, share = _load(loader, target, spec)
                served[target.name] += result.requests
                results.add_load(target.name, cell, result, share)
        samples = probe.probe_round(order, requests, settings.probes)
        for (name, _body, _stream), values in samples.items():
            served[name] += len(values)
        results.add_probes(samples)
        _note_rss(targets, served, results)
    return served


def _note_rss(targets: list[Target], served: dict[str, int], results: Results) -> None:
    for target in targets:
        if target.service is not None:
            results.note_rss(target.name, served[target.name], target.service.rss_mb())


def _soak(
    settings: Settings, targets: list[Target], loader: Loader, served: dict[str, int], results: Results
) -> None:
    """Top every mitmdump up to ``rss_requests`` served, then read every proxy's RSS."""
    for target in targets:
        if target.is_mitmdump and served[target.name] < settings.rss_requests:
            log(f"soak {target.name}: {settings.rss_requests - served[target.name]} more requests for RSS")
            _soak_one(settings, target, loader, served, results)
    for target in targets:
        memory = results.memory.get(target.name)
        if memory is not None and target.service is not None:
            memory.after_mb = target.service.rss_mb()
            memory.served_after = served[target.name]


def _soak_one(
    settings: Settings, target: Target, loader: Loader, served: dict[str, int], results: Results
) -> None:
    """c=16, 1 KB bodies, non-streaming and streaming in turns, until the count is reached."""
    stream = False
    while served[target.name] < settings.rss_requests:
        remaining = settings.rss_requests - served[target.name]
        spec = LoadSpec(
            port=target.port,
            path=target.paths[variant(stream)],
            headers=target.headers[variant(stream)],
            body=chat_request(BODY_SIZES["1k"], stream),
            connections=16,
            seconds=min(20.0, max(2.0, remaining / 300)),
            max_requests=remaining if settings.smoke else None,
        )
        result = loader(spec)
        if result.requests == 0:
            results.notes.append(f"soak of {target.name} stopped: no answers")
            return
        served[target.name] += result.requests
        _note_rss([target], served, results)
        stream = not stream


def _big_streams(settings: Settings, targets: list[Target], requests: Requests, results: Results) -> None:
    """One very long stream per configuration, sampling the proxy's RSS all along."""
    log(f"one {settings.big_stream_mb:g} MB stream through each configuration")
    body = requests[("1k", True)]
    for target in targets:
        pid = target.service.pid if target.service else None
        before = rss_mb(pid) if pid else None
        try:
            with PeakRss(pid) as peak:
                reply = probe.fetch_big(target, body, timeout=600)
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as e:
            results.notes.append(f"long stream through {target.name} failed: {e!r}")
            continue
        results.big[target.name] = BigStream(
            seconds=reply.latency_ms / 1000,
            received_bytes=reply.size,
            complete=reply.status == 200 and reply.tail.endswith(b"data: [DONE]\n\n"),
            rss_before_mb=before,
            rss_peak_mb=peak.peak_mb if pid else None,
        )


def _start_route_counts(
    settings: Settings, upstream: Service, run: Path, pool: ThreadPoolExecutor
) -> dict[int, tuple[str, Future[Target]]]:
    """Start the addon with each of ROUTE_COUNTS routes (its own routes behind filler ones) in the
    background: their start-up overlaps the other configurations' instead of adding to it. The smoke
    run starts only the largest table and sets it beside the main addon configuration (see
    _route_counts): one process start less keeps it short."""
    provider = route_count_provider()
    counts = ROUTE_COUNTS[-1:] if settings.smoke and not settings.routes_only else ROUTE_COUNTS
    start = functools.partial(addon_mitmdump, provider, upstream, run)
    return {count: (f"addon-{provider}-{count}-routes", pool.submit(start, count)) for count in counts}


def _route_counts(
    settings: Settings,
    starting: dict[int, tuple[str, Future[Target]]],
    main_targets: list[Target],
    loader: Loader,
    requests: Requests,
    results: Results,
) -> None:
    """The route-count configurations, checked, then interleaved over ROUTE_CELLS; stopped afterwards
    so they do not idle beside the others."""
    started: list[tuple[int, Target]] = []
    if len(starting) < len(ROUTE_COUNTS):
        provider = route_count_provider()
        main = next((t for t in main_targets if t.name == f"addon-{provider}"), None)
        if main is not None:
            results.targets_routes[len(CLIENT_PATHS)] = main.description + f", {len(CLIENT_PATHS)} routes"
            started.append((len(CLIENT_PATHS), main))
    counts = [*(n for n, _target in started), *starting]
    log(f"route count: the addon with {' and '.join(map(str, counts))} routes")
    results.route_lookup_us.update(micro.route_lookup_us(counts, quick=settings.smoke))
    with contextlib.ExitStack() as stack:
        # Checked on what is measured: the 1 KB JSON request.
        measured = {key: body for key, body in requests.items() if key == ("1k", False)}
        for count, (name, future) in starting.items():
            target = _start_one(name, future.result, results, stack, measured)
            if target is not None:
                results.targets_routes[count] = target.description
                started.append((count, target))
        if not settings.smoke:  # the smoke run only checks that the section works: no warm-up, one cell
            for _count, target in started:
                _load(loader, target, _spec(settings, target, requests, ("1k", False, 16), 1.0))
        cells = ROUTE_CELLS[-1:] if settings.smoke else ROUTE_CELLS
        for round_no in range(settings.rounds if started else 0):
            order = started[round_no % len(started) :] + started[: round_no % len(started)]
            for cell in cells:
                for count, target in order:
                    spec = _spec(settings, target, requests, cell, settings.seconds)
                    result, _share = _load(loader, target, spec)
                    results.add_route_load(count, cell, result)
