"""Everything one benchmark run measured, in plain data, for the report (and a JSON dump)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from bench.load import LoadResult
from bench.micro import MicroRow
from bench.probe import ProbeSample

# (body name, stream, connections)
Cell = tuple[str, bool, int]


@dataclass
class Memory:
    before_mb: float
    after_mb: float = 0.0
    served_before: int = 0
    served_after: int = 0
    samples: list[tuple[int, float]] = field(default_factory=list)  # (requests served, RSS MB) over time

    def at(self, served: int) -> tuple[int, float]:
        """The sample taken nearest to ``served`` requests."""
        return min(self.samples, key=lambda s: abs(s[0] - served))


@dataclass
class BigStream:
    """One very long stream through a configuration, and the proxy's memory meanwhile."""

    seconds: float
    received_bytes: int
    complete: bool  # the client got the whole stream, ending with data: [DONE]
    rss_before_mb: float | None
    rss_peak_mb: float | None


@dataclass
class Results:
    settings: dict[str, Any]
    tools: dict[str, str] = field(default_factory=dict)  # name -> version and provenance
    targets: dict[str, str] = field(default_factory=dict)  # name -> description, in run order
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why
    notes: list[str] = field(default_factory=list)
    loads: dict[tuple[str, Cell], list[LoadResult]] = field(default_factory=dict)
    cpu: dict[tuple[str, Cell], list[float]] = field(default_factory=dict)  # proxy CPU share 0..1
    probes: dict[tuple[str, str, bool], list[ProbeSample]] = field(default_factory=dict)
    memory: dict[str, Memory] = field(default_factory=dict)
    big: dict[str, BigStream] = field(default_factory=dict)
    micro: list[MicroRow] = field(default_factory=list)
    # The addon with N routes in its table: N -> description, and (N, cell) -> one result per round.
    targets_routes: dict[int, str] = field(default_factory=dict)
    route_loads: dict[tuple[int, Cell], list[LoadResult]] = field(default_factory=dict)
    route_lookup_us: dict[int, float] = field(default_factory=dict)  # N -> µs per route lookup, in-process

    def add_load(self, target: str, cell: Cell, result: LoadResult, cpu_share: float | None) -> None:
        self.loads.setdefault((target, cell), []).append(result)
        if cpu_share is not None:
            self.cpu.setdefault((target, cell), []).append(cpu_share)

    def add_route_load(self, routes: int, cell: Cell, result: LoadResult) -> None:
        self.route_loads.setdefault((routes, cell), []).append(result)

    def note_rss(self, target: str, served: int, rss_mb: float) -> None:
        if target in self.memory:
            self.memory[target].samples.append((served, rss_mb))

    def add_probes(self, samples: dict[tuple[str, str, bool], list[ProbeSample]]) -> None:
        for key, values in samples.items():
            self.probes.setdefault(key, []).extend(values)

    def cells(self) -> list[Cell]:
        seen: dict[Cell, None] = {}
        for _target, cell in self.loads:
            seen.setdefault(cell, None)
        return list(seen)

    def as_json(self) -> dict[str, Any]:
        def key(k: Any) -> str:
            return "|".join(str(p) for p in (k if isinstance(k, tuple) else (k,)))

        def flat(k: Any) -> str:
            return key(tuple(p if not isinstance(p, tuple) else key(p) for p in k))

        return {
            "settings": self.settings,
            "tools": self.tools,
            "targets": self.targets,
            "skipped": self.skipped,
            "notes": self.notes,
            "loads": {flat(k): [dataclasses.asdict(r) for r in v] for k, v in self.loads.items()},
            "cpu": {flat(k): v for k, v in self.cpu.items()},
            "probes": {flat(k): [dataclasses.asdict(s) for s in v] for k, v in self.probes.items()},
            "memory": {k: dataclasses.asdict(v) for k, v in self.memory.items()},
            "big": {k: dataclasses.asdict(v) for k, v in self.big.items()},
            "micro": [dataclasses.asdict(r) for r in self.micro],
            "targets_routes": {str(k): v for k, v in self.targets_routes.items()},
            "route_loads": {flat(k): [dataclasses.asdict(r) for r in v] for k, v in self.route_loads.items()},
            "route_lookup_us": {str(k): v for k, v in self.route_lookup_us.items()},
        }
