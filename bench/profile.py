"""Where mitmdump + addon spends its CPU under load: py-spy samples, summed per function.

    python -m bench.profile [--provider anthropic] [--seconds 20]     (make bench-profile)
    python -m bench.profile --cell 1k-json [--plain buffer|stream]   one cell; --plain: the baseline

Starts the static upstream and one addon configuration, loads it with c=16 (non-streaming and
streaming, 1 KB and 32 KB bodies in turn) while ``py-spy record`` samples the mitmdump process, then
writes bench/.scratch/profile.md: the top functions by own time, the project's functions by inclusive
time, and the project's lines that the time is spent under.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.load import LoadSpec, run_python, run_wrk
from bench.payloads import BODY_SIZES, chat_request
from bench.probe import verify
from bench.procs import Service
from bench.targets import Target, addon_mitmdump, plain_mitmdump, variant
from bench.tools import SCRATCH, find_nginx, find_wrk
from bench.upstream import start_nginx, start_python_upstream

OURS = ("addon/", "transforms/")
_LINE = re.compile(r":\d+\)$")


@dataclass
class Profile:
    samples: int
    own: Counter[str]  # function -> samples where it was the running frame
    inclusive: Counter[str]  # function -> samples where it was on the stack
    our_lines: Counter[str]  # the deepest project frame (with its line) of each sample


def parse_raw(text: str) -> Profile:
    """py-spy's raw (collapsed stack) output: ``frame;frame;...;frame count`` per line."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    our_lines: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        own[_function(frames[-1])] += n
        for name in {_function(f) for f in frames}:
            inclusive[name] += n
        ours = [f for f in frames if any(f"({p}" in f for p in OURS)]
        if ours:
            our_lines[ours[-1]] += n
    return Profile(total, own, inclusive, our_lines)


def _function(frame: str) -> str:
    return _LINE.sub(")", frame)


def render(profile: Profile, title: str, top: int = 25) -> str:
    def pct(n: int) -> str:
        return f"{100 * n / profile.samples:.1f} %" if profile.samples else "-"

    def table(header: str, counter: Counter[str], keep: bool = True) -> list[str]:
        rows = [f"| {name} | {pct(n)} |" for name, n in counter.most_common() if keep or _is_ours(name)]
        return [f"| {header} | share of samples |", "|---|---|", *rows[:top], ""]

    in_hooks = sum(n for name, n in profile.inclusive.items() if name.startswith("AIProxy."))
    lines = [
        f"# Profile: {title}",
        "",
        f"{profile.samples} samples of the mitmdump process while it was busy (idle excluded); "
        f"{pct(in_hooks)} of them inside the addon's hooks (AIProxy.*).",
        "",
        "## Own time (the running function)",
        "",
        *table("function (file)", profile.own),
        "## The project's functions, inclusive (with everything they call)",
        "",
        *table("function (file)", profile.inclusive, keep=False),
        "## The project's lines under which the samples fell (deepest project frame)",
        "",
        *table("function (file:line)", profile.our_lines),
    ]
    return "\n".join(lines)


def _is_ours(name: str) -> bool:
    return any(f"({p}" in name for p in OURS)


def _py_spy() -> str:
    local = Path(sys.executable).with_name("py-spy")
    found = str(local) if local.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy (make bench-profile does)")
    return found


CELLS = tuple(f"{body}-{variant(stream)}" for body in BODY_SIZES for stream in (False, True))


def _load_mix(target: Target, seconds: float, cells: tuple[str, ...], served: list[int]) -> None:
    """c=16, the time split equally between the cells (default: 1 KB / 32 KB bodies, non-streaming /
    streaming)."""
    wrk = find_wrk()
    part = max(1.0, seconds / len(cells))
    for cell in cells:
        body, _, name = cell.partition("-")
        stream = name == "stream"
        spec = LoadSpec(
            target.port,
            target.paths[name],
            target.headers[name],
            chat_request(BODY_SIZES[body], stream),
            16,
            part,
        )
        result = run_wrk(wrk, spec, SCRATCH / "profile") if wrk.ok else run_python(spec)
        served.append(result.requests)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default="anthropic", choices=("anthropic", "openai"))
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=SCRATCH / "profile.md")
    parser.add_argument("--cell", choices=CELLS, action="append", help="profile only these load cells")
    parser.add_argument(
        "--plain",
        choices=("buffer", "stream"),
        help="profile plain mitmdump instead (stream: with stream_large_bodies=1), the baseline",
    )
    args = parser.parse_args(argv)
    cells = tuple(args.cell or CELLS)
    run = SCRATCH / "profile"
    run.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        upstream = _upstream(run)
        stack.callback(upstream.stop)
        if args.plain:
            target = plain_mitmdump(upstream, run, stream=args.plain == "stream")
        else:
            target = addon_mitmdump(args.provider, upstream, run)
        assert target.service is not None
        stack.callback(target.service.stop)
        requests = {(b, s): chat_request(BODY_SIZES[b], s) for b in BODY_SIZES for s in (False, True)}
        problems = verify(target, requests)
        if problems:
            raise SystemExit(f"{target.name} answers wrongly: {problems}")
        served: list[int] = []
        raw = _record(target, args.seconds, run / "py-spy.raw", cells, served)
    title = f"{target.description}, c=16, {', '.join(cells)}, {args.seconds:g} s, {sum(served)} requests"
    args.out.write_text(render(parse_raw(raw), title))
    print(args.out.read_text())
    return 0


def _upstream(run: Path) -> Service:
    nginx = find_nginx()
    return start_nginx(nginx, run, 1 << 20) if nginx.ok else start_python_upstream(run, 1 << 20)


def _record(target: Target, seconds: float, out: Path, cells: tuple[str, ...], served: list[int]) -> str:
    assert target.service is not None
    cmd = [_py_spy(), "record", "--pid", str(target.service.pid), "--duration", str(round(seconds))]
    cmd += ["--rate", "250", "--format", "raw", "--output", str(out)]
    spy = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    loader = threading.Thread(target=_load_mix, args=(target, seconds, cells, served))
    loader.start()
    spy_log, _ = spy.communicate(timeout=seconds + 60)
    loader.join()
    if spy.returncode != 0 or not out.exists():
        raise SystemExit(f"py-spy failed ({spy.returncode}): {spy_log[-500:]}")
    return out.read_text()


if __name__ == "__main__":
    sys.exit(main())
