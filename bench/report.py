"""The Markdown report (bench/results.md): tables with medians and spreads, and issue 6's targets."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bench.data import Cell, Results
from bench.load import percentile

# Which addon configuration the targets are judged on: the translating one when it ran.
ADDONS = ("addon-anthropic", "addon-openai")
PLAIN = "mitmdump"
PLAIN_STREAM = "mitmdump-stream"  # plain mitmdump streaming every body: the stream cells' fairer baseline
PORTKEY = "portkey"
DIRECT = "direct"


@dataclass(frozen=True, slots=True)
class CellStats:
    rps: float
    rps_min: float
    rps_max: float
    p50: float
    p99: float
    errors: int
    requests: int
    cpu: float | None


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def cell_stats(results: Results, target: str, cell: Cell) -> CellStats | None:
    runs = results.loads.get((target, cell))
    if not runs:
        return None
    cpu = results.cpu.get((target, cell))
    return CellStats(
        rps=median(r.rps for r in runs),
        rps_min=min(r.rps for r in runs),
        rps_max=max(r.rps for r in runs),
        p50=median(r.p50_ms for r in runs),
        p99=median(r.p99_ms for r in runs),
        errors=sum(r.errors for r in runs),
        requests=sum(r.requests for r in runs),
        cpu=median(cpu) if cpu else None,
    )


def _fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    return f"{value:.{digits}f}{suffix}"


def _signed(value: float | None, digits: int = 2) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:+.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _cell_label(cell: Cell) -> list[str]:
    body, stream, connections = cell
    return [body, "stream" if stream else "json", str(connections)]


# --- sections ----------------------------------------------------------------------------------------


def _header(results: Results) -> list[str]:
    s = results.settings
    per_cell = f"{s.get('smoke_requests')} requests" if s.get("smoke") == "True" else f"{s.get('seconds')} s"
    lines = [
        "# Benchmark results (issue 6)",
        "",
        f"Written by `python -m bench` (`make bench`) on {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{os.cpu_count()} CPU cores shared by the client, the proxies and the upstream (loopback only). "
        f"Mode: {'smoke' if s.get('smoke') == 'True' else 'full'}; {s.get('rounds')} interleaved rounds "
        f"(round-robin over the configurations, order rotated each round); {per_cell} per load "
        f"cell; wall time {s.get('wall time', '?')}.",
        "",
    ]
    lines += [f"- {name}: {text}" for name, text in results.tools.items()]
    lines += ["", "Configurations:", ""]
    lines += [f"- **{name}**: {text}" for name, text in results.targets.items()]
    lines += [f"- **{name}**: skipped — {why}" for name, why in results.skipped.items()]
    return [*lines, ""]


def _per_cpu(st: CellStats) -> float | None:
    """Requests per CPU-second of the proxy: less sensitive than req/s to other jobs taking the CPU."""
    return st.rps / st.cpu if st.cpu else None


def _cpu_ratio(results: Results, cell: Cell, a: str, b: str) -> float | None:
    sa, sb = cell_stats(results, a, cell), cell_stats(results, b, cell)
    pa, pb = (_per_cpu(sa) if sa else None), (_per_cpu(sb) if sb else None)
    return pa / pb if pa and pb else None


def _ratio(results: Results, cell: Cell, a: str, b: str) -> float | None:
    sa, sb = cell_stats(results, a, cell), cell_stats(results, b, cell)
    return sa.rps / sb.rps if sa and sb and sb.rps else None


def _paired_ratio(results: Results, cell: Cell, a: str, b: str) -> float | None:
    """The median of the rounds' own ratios: each round measures both configurations minutes apart
    at most, so a machine that is slower for a while slows both, and their ratio keeps."""
    ra, rb = results.loads.get((a, cell)), results.loads.get((b, cell))
    if not ra or not rb or len(ra) != len(rb):
        return None
    ratios = [x.rps / y.rps for x, y in zip(ra, rb, strict=True) if y.rps]
    return median(ratios) if ratios else None


def _baseline(results: Results, cell: Cell) -> str:
    """The stream cells' fair baseline is a plain mitmdump that streams too, when it ran."""
    return PLAIN_STREAM if cell[1] and results.loads.get((PLAIN_STREAM, cell)) else PLAIN


def _load_table(results: Results) -> list[str]:
    header = ["body", "mode", "c", "config", "req/s", "req/s min-max", "p50 ms", "p99 ms"]
    header += ["+p50 vs direct", "+p99 vs direct", "server CPU", "req/CPU-s", "addon/mitmdump"]
    header += ["addon/mitmdump-stream", "addon/Portkey", "addon/baseline paired", "errors"]
    rows = []
    for cell in results.cells():
        base = cell_stats(results, DIRECT, cell)
        for target in results.targets:
            st = cell_stats(results, target, cell)
            if st is None:
                continue
            is_addon = target in ADDONS
            rows.append(
                [
                    *_cell_label(cell),
                    target,
                    _fmt(st.rps, 0),
                    f"{st.rps_min:.0f}-{st.rps_max:.0f}",
                    _fmt(st.p50),
                    _fmt(st.p99),
                    _signed(st.p50 - base.p50) if base and target != DIRECT else "-",
                    _signed(st.p99 - base.p99) if base and target != DIRECT else "-",
                    _fmt(st.cpu * 100 if st.cpu is not None else None, 0, " %"),
                    _fmt(_per_cpu(st), 0),
                    _fmt(_ratio(results, cell, target, PLAIN), 2, "x") if is_addon else "-",
                    _fmt(_ratio(results, cell, target, PLAIN_STREAM), 2, "x")
                    if is_addon and cell[1]
                    else "-",
                    _fmt(_ratio(results, cell, target, PORTKEY), 2, "x") if is_addon else "-",
                    _fmt(_paired_ratio(results, cell, target, _baseline(results, cell)), 2, "x")
                    if is_addon
                    else "-",
                    str(st.errors),
                ]
            )
    intro = [
        "## Throughput and latency",
        "",
        "Closed loop: c connections each send the next request when the last answer ended. req/s is the "
        "median of the rounds (min-max beside it); p50/p99 are medians of the rounds' percentiles. "
        "`+p50 vs direct` is the latency the proxy adds; `addon/mitmdump` and `addon/Portkey` are the "
        "addon's req/s divided by plain mitmdump's and Portkey's in the same cell; `addon/mitmdump-stream` "
        "(stream cells) divides by a plain mitmdump that streams too (`stream_large_bodies=1`), as the addon "
        "streams event streams while plain mitmdump buffers them. `addon/baseline paired`: the median of "
        "each round's own ratio to that baseline (mitmdump-stream in stream cells when it ran, else "
        "mitmdump), steadier than the ratio of medians when the machine's speed drifts between rounds. "
        "req/CPU-s: req/s over the proxy's CPU "
        "share, which other jobs on the machine disturb less than req/s. server CPU: the "
        "proxy's (for direct: the upstream's) CPU time over the run, 100 % = one core busy.",
        "",
    ]
    return [*intro, *_table(header, rows), ""]


def _route_count_table(results: Results) -> list[str]:
    if not results.route_loads:
        return []
    counts = sorted(results.targets_routes)
    cells = list(dict.fromkeys(cell for _count, cell in results.route_loads))
    rows = []
    for cell in cells:
        fewest = results.route_loads.get((counts[0], cell)) if counts else None
        base = median(r.rps for r in fewest) if fewest else None
        for count in counts:
            runs = results.route_loads.get((count, cell))
            if not runs:
                continue
            rps = median(r.rps for r in runs)
            rows.append(
                [
                    *_cell_label(cell),
                    f"{count:,}",
                    _fmt(rps, 0),
                    f"{min(r.rps for r in runs):.0f}-{max(r.rps for r in runs):.0f}",
                    _fmt(median(r.p50_ms for r in runs)),
                    _fmt(median(r.p99_ms for r in runs)),
                    _fmt(rps / base if base else None, 2, "x"),
                    _fmt(results.route_lookup_us.get(count), 2),
                    str(sum(r.errors for r in runs)),
                ]
            )
    header = ["body", "mode", "c", "routes", "req/s", "req/s min-max", "p50 ms", "p99 ms"]
    header += [f"vs {counts[0]:,} routes" if counts else "vs fewest", "lookup µs", "errors"]
    intro = [
        "## Route count",
        "",
        "The addon (" + "; ".join(f"{n:,}: {d}" for n, d in results.targets_routes.items()) + ") with "
        "its benchmark routes placed behind filler routes (exact paths, `/*` prefixes and host-bound "
        "routes in turn), so every request is matched after all of them: a lookup whose cost grew with "
        "the table would show here. Interleaved rounds, medians as above. lookup µs: one "
        "`GatewayConfig.find` for that request, timed in the harness's own process (best of 15 repeats).",
        "",
    ]
    return [*intro, *_table(header, rows), ""]


def _probe_stats(results: Results, target: str, body: str, stream: bool) -> tuple[float, float] | None:
    samples = results.probes.get((target, body, stream))
    if not samples:
        return None
    firsts = [s.first_chunk_ms for s in samples]
    return median(firsts), percentile(firsts, 99)


def _first_chunk_table(results: Results) -> list[str]:
    bodies = sorted({body for (_t, body, _s) in results.probes})
    rows = []
    for body in bodies:
        base = _probe_stats(results, DIRECT, body, True)
        plain = _probe_stats(results, PLAIN, body, True)
        for target in results.targets:
            st = _probe_stats(results, target, body, True)
            if st is None:
                continue
            count = len(results.probes[(target, body, True)])
            rows.append(
                [
                    body,
                    target,
                    _fmt(st[0]),
                    _fmt(st[1]),
                    _signed(st[0] - base[0]) if base and target != DIRECT else "-",
                    _signed(st[0] - plain[0]) if plain and target not in (DIRECT, PLAIN) else "-",
                    str(count),
                ]
            )
    header = ["body", "config", "first chunk p50 ms", "p99 ms", "+ vs direct", "+ vs mitmdump", "probes"]
    intro = [
        "## Stream first chunk (c=1)",
        "",
        "A small asyncio client sends one streaming request at a time on a warm keep-alive connection and "
        "times the first body chunk of the answer. The upstream sends its whole stream at once, so this is "
        "the time the proxy needs to pass (or translate) the first events.",
        "",
    ]
    return [*intro, *_table(header, rows), ""]


def _overhead_table(results: Results) -> list[str]:
    rows = []
    for (target, body, stream), samples in sorted(results.probes.items()):
        values = [s.overhead_ms for s in samples if s.overhead_ms is not None]
        if values:
            mode = "stream" if stream else "json"
            rows.append([target, body, mode, _fmt(median(values), 3), _fmt(percentile(values, 99), 3)])
    if not rows:
        return []
    intro = [
        "## The addon's own time (x-ai-proxy-overhead-ms, c=1)",
        "",
        "What the addon reports for its hooks (for streams: until the response headers are sent).",
        "",
    ]
    return [*intro, *_table(["config", "body", "mode", "p50 ms", "p99 ms"], rows), ""]


def _memory_table(results: Results) -> list[str]:
    rows = []
    for target, mem in results.memory.items():
        if mem.served_after <= mem.served_before:
            continue  # no soak (--cells): nothing to compare
        half_served, half_mb = mem.at((mem.served_before + mem.served_after) // 2)
        rows.append(
            [
                target,
                f"{mem.before_mb:.1f} ({mem.served_before})",
                f"{half_mb:.1f} ({half_served})",
                f"{mem.after_mb:.1f} ({mem.served_after})",
                _signed(mem.after_mb - mem.before_mb, 1),
                _signed(mem.after_mb - half_mb, 1),
            ]
        )
    intro = [
        "## Memory (RSS)",
        "",
        "RSS in MB (requests served so far in brackets) after the warm-up, half-way and at the end, when "
        f"every mitmdump had served at least {results.settings.get('rss_requests')} requests (Portkey: what "
        "it served in the rounds). Growth that stops in the second half is warm-up (allocator, caches); "
        "growth that goes on is a leak.",
        "",
    ]
    header = ["config", "after warm-up", "half-way", "at end", "Δ total MB", "Δ second half MB"]
    return [*intro, *_table(header, rows), ""]


def _big_table(results: Results) -> list[str]:
    if not results.big:
        return []
    rows = []
    for target, big in results.big.items():
        grew = big.rss_peak_mb - big.rss_before_mb if big.rss_peak_mb and big.rss_before_mb else None
        rows.append(
            [
                target,
                _fmt(big.received_bytes / 1e6, 1),
                _fmt(big.seconds, 2),
                _fmt(big.received_bytes / 1e6 / big.seconds if big.seconds else None, 1),
                _fmt(big.rss_before_mb, 1),
                _fmt(big.rss_peak_mb, 1),
                _signed(grew, 1),
                "yes" if big.complete else "NO",
            ]
        )
    intro = [
        f"## One long stream ({results.settings.get('big_stream_mb')} MB from the upstream)",
        "",
        "One streaming request whose answer is the normal stream with its deltas repeated; the proxy's RSS "
        "is sampled every 20 ms. Plain mitmdump does not stream (no addon sets `flow.response.stream`), "
        "so it holds the whole answer.",
        "",
    ]
    header = ["config", "MB to client", "seconds", "MB/s", "RSS before MB", "RSS peak MB", "Δ MB", "complete"]
    return [*intro, *_table(header, rows), ""]


def _capacity(results: Results, target: str, cell: Cell) -> float | None:
    """Requests per CPU-second of the server: its speed even when the client limits the run."""
    st = cell_stats(results, target, cell)
    return st.rps / st.cpu if st and st.cpu else None


def _headroom(results: Results) -> list[str]:
    ratios: dict[int, list[tuple[Cell, float]]] = {}
    for cell in results.cells():
        upstream, proxy = _capacity(results, DIRECT, cell), _capacity(results, PLAIN, cell)
        if upstream and proxy:
            ratios.setdefault(cell[2], []).append((cell, upstream / proxy))
    if not ratios:
        return []
    busiest = max(ratios)
    parts = []
    for connections, values in sorted(ratios.items()):
        worst_cell, worst = min(values, key=lambda item: item[1])
        parts.append(
            f"c={connections}: worst {worst:.0f}x ({' '.join(_cell_label(worst_cell)[:2])}), "
            f"median {median(r for _c, r in values):.0f}x"
        )
    worst_busy = min(r for _c, r in ratios[busiest])
    verdict = "yes" if worst_busy >= 50 else "NO: the upstream's own cost shows in the proxied numbers"
    return [
        "## Upstream headroom",
        "",
        "Requests per CPU-second of the upstream (direct runs) over those of plain mitmdump: raw direct "
        "req/s are limited by the load client and the loopback and would understate the upstream. "
        f"{'; '.join(parts)}. At c=1 nothing is batched, so every request pays the upstream's wake-up; "
        f"capacity shows at c={busiest}. At least 50x the proxy's capacity (c={busiest}): {verdict}.",
        "",
    ]


def _micro_table(results: Results) -> list[str]:
    if not results.micro:
        return []

    def ratio(value: float | None, floor: float | None) -> str:
        return _fmt(value / floor, 2, "x") if value is not None and floor else "-"

    rows = [
        [
            r.provider,
            r.body,
            str(r.request_bytes),
            str(r.response_bytes),
            _fmt(r.floor_us, 1),
            _fmt(r.transform_us, 1),
            ratio(r.transform_us, r.floor_us),
            _fmt(r.pipeline_us, 1),
            ratio(r.pipeline_us, r.floor_us),
            _fmt(r.stream_floor_us, 1),
            _fmt(r.stream_us, 1),
            ratio(r.stream_us, r.stream_floor_us),
        ]
        for r in results.micro
    ]
    header = ["provider", "body", "request B", "response B", "orjson floor µs", "transform µs", "xfloor"]
    header += ["pipeline µs", "xfloor", "stream floor µs", "stream µs", "xfloor"]
    intro = [
        "## Pure transforms (micro-benchmark)",
        "",
        "Per call, best of 3 timeit repeats. floor = orjson loads+dumps of the request and of the "
        "response; transform = the same plus the provider's build_request and parse_response; pipeline = "
        "prepare() + translate_response(), all the addon does per call outside mitmproxy (validation, "
        "defaults, auth, URL, usage). stream = a translator fed the stream fixture event by event, floor = "
        "loads+dumps of each event. typical = fixtures/openai/chat/request.json and the provider's "
        "response fixture; large = both grown to 32 KB.",
        "",
    ]
    return [*intro, *_table(header, rows), ""]


# --- issue 6 targets -----------------------------------------------------------------------------


def _addon(results: Results) -> str | None:
    return next((name for name in ADDONS if name in results.targets), None)


def _worst_median(values: list[float], worst: Callable[[list[float]], float]) -> str:
    return f"worst {worst(values):.2f}, median {median(values):.2f}"


def _verdict(values: list[float], ok: Callable[[float], bool]) -> str:
    if not values:
        return "not measured"
    if all(ok(v) for v in values):
        return "yes"
    return "in the median only" if ok(median(values)) else "no"


def _targets_table(results: Results) -> list[str]:
    addon = _addon(results)
    if addon is None:
        return ["## Targets of issue 6", "", "No addon configuration ran.", ""]
    cells = results.cells()
    vs_plain = [r for c in cells if (r := _ratio(results, c, addon, PLAIN)) is not None]
    vs_portkey = [r for c in cells if (r := _ratio(results, c, addon, PORTKEY)) is not None]
    streams = [c for c in cells if c[1]]
    vs_streaming = [r for c in streams if (r := _ratio(results, c, addon, PLAIN_STREAM)) is not None]
    cpu_plain = [r for c in cells if (r := _cpu_ratio(results, c, addon, PLAIN)) is not None]
    cpu_streaming = [r for c in streams if (r := _cpu_ratio(results, c, addon, PLAIN_STREAM)) is not None]
    paired_json = [
        r for c in cells if not c[1] and (r := _paired_ratio(results, c, addon, PLAIN)) is not None
    ]
    paired_streaming = [
        r for c in streams if (r := _paired_ratio(results, c, addon, PLAIN_STREAM)) is not None
    ]
    added = _added_p50_c1(results, addon)
    first = _added_first_chunk(results, addon)
    micro = [r.transform_us / r.floor_us for r in results.micro if r.transform_us and r.floor_us]
    rows = [
        _target_row("addon req/s >= 0.90x plain mitmdump", vs_plain, min, lambda v: v >= 0.9),
        _target_row("stream req/s >= 0.90x streaming mitmdump", vs_streaming, min, lambda v: v >= 0.9),
        _target_row("the same, per CPU-second: addon / mitmdump", cpu_plain, min, lambda v: v >= 0.9),
        _target_row(
            "the same, per CPU-second: stream / streaming mitmdump", cpu_streaming, min, lambda v: v >= 0.9
        ),
        _target_row("the same, paired per round: JSON / mitmdump", paired_json, min, lambda v: v >= 0.9),
        _target_row(
            "the same, paired per round: stream / streaming mitmdump",
            paired_streaming,
            min,
            lambda v: v >= 0.9,
        ),
        _target_row("addon req/s >= 1.0x Portkey", vs_portkey, min, lambda v: v >= 1.0),
        _target_row("added p50 <= 1 ms over mitmdump at c=1 (ms)", added, max, lambda v: v <= 1),
        _target_row("stream first chunk <= 2 ms over mitmdump (ms)", first, max, lambda v: v <= 2),
        _rss_row(results, addon),
        _big_row(results, addon),
        _target_row("pure translation <= 2x orjson floor (transform)", micro, max, lambda v: v <= 2),
    ]
    intro = [
        "## Targets of issue 6",
        "",
        f"Judged on **{addon}**, per load cell (or per provider for the micro-benchmark): `yes` = every "
        "cell meets it, `in the median only` = the median does, `no` = not even the median.",
        "",
    ]
    return [*intro, *_table(["target", "measured", "met"], rows), ""]


def _target_row(
    label: str,
    values: list[float],
    worst: Callable[[list[float]], float],
    ok: Callable[[float], bool],
) -> list[str]:
    return [label, _summary(values, worst), _verdict(values, ok)]


def _summary(values: list[float], worst: Callable[[list[float]], float]) -> str:
    return _worst_median(values, worst) if values else "-"


def _added_p50_c1(results: Results, addon: str) -> list[float]:
    out = []
    for cell in results.cells():
        a, p = cell_stats(results, addon, cell), cell_stats(results, PLAIN, cell)
        if cell[2] == 1 and a and p:
            out.append(a.p50 - p.p50)
    return out


def _added_first_chunk(results: Results, addon: str) -> list[float]:
    out = []
    for body in sorted({body for (_t, body, _s) in results.probes}):
        a, p = _probe_stats(results, addon, body, True), _probe_stats(results, PLAIN, body, True)
        if a and p:
            out.append(a[0] - p[0])
    return out


def _rss_row(results: Results, addon: str) -> list[str]:
    mem = results.memory.get(addon)
    label = "RSS flat (±10 MB) over the requests served"
    if mem is None or mem.served_after <= mem.served_before:  # no soak (--cells)
        return [label, "-", "not measured"]
    delta = mem.after_mb - mem.before_mb
    _half_served, half_mb = mem.at((mem.served_before + mem.served_after) // 2)
    measured = f"{delta:+.1f} MB over {mem.served_after - mem.served_before} requests"
    measured += f" ({mem.after_mb - half_mb:+.1f} MB in the second half)"
    return [label, measured, "yes" if abs(delta) <= 10 else "no"]


def _big_row(results: Results, addon: str) -> list[str]:
    big = results.big.get(addon)
    label = f"RSS flat (±10 MB) over a {results.settings.get('big_stream_mb')} MB stream"
    if big is None or big.rss_peak_mb is None or big.rss_before_mb is None:
        return [label, "-", "not measured"]
    grew = big.rss_peak_mb - big.rss_before_mb
    ok = big.complete and abs(grew) <= 10
    measured = f"peak {grew:+.1f} MB" + ("" if big.complete else " (stream incomplete)")
    return [label, measured, "yes" if ok else "no"]


def render(results: Results) -> str:
    lines = _header(results)
    sections = (
        _targets_table,
        _load_table,
        _route_count_table,
        _first_chunk_table,
        _overhead_table,
        _memory_table,
        _big_table,
        _headroom,
        _micro_table,
    )
    if not results.loads:  # --routes-only: the other sections have nothing to show
        sections = (_route_count_table,)
    for section in sections:
        lines += section(results)
    if results.notes:
        lines += ["## Notes", "", *[f"- {note}" for note in results.notes], ""]
    return "\n".join(lines)
