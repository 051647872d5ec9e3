"""The usage summary: statistics records totalled per provider and model, with bounded memory.

Pure state (no I/O, no mitmproxy): ``addon/summary.py`` feeds it records and shows the result.
Groups are keyed by a tuple of record dimensions (``GROUP_BY``); calls made with a gateway key are
also totalled per consumer (``meta.consumer``, the key's name).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

GROUP_BY: tuple[str, ...] = ("provider", "model")
HEADER = ("provider", "model", "calls", "errors", "prompt", "completion", "cost $", "p50 ms", "p95 ms")
LATENCY_SAMPLES = 2048  # per group: exact percentiles up to this many calls, a uniform sample beyond


@dataclass(slots=True)
class Totals:
    calls: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latencies: list[int] = field(default_factory=list)
    _rng: random.Random = field(default_factory=lambda: random.Random(0), repr=False)

    def add(self, status: int, prompt: int, completion: int, cost: float, latency_ms: int) -> None:
        self.calls += 1
        self.errors += status >= 400
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.cost += cost
        if len(self.latencies) < LATENCY_SAMPLES:
            self.latencies.append(latency_ms)
        else:  # reservoir sampling: every call has the same chance to be in the sample
            slot = self._rng.randrange(self.calls)
            if slot < LATENCY_SAMPLES:
                self.latencies[slot] = latency_ms

    def as_json(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        return {
            "calls": self.calls,
            "errors": self.errors,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": round(self.cost, 9),
            "latency_p50_ms": percentile(ordered, 50),
            "latency_p95_ms": percentile(ordered, 95),
        }


def percentile(ordered: list[int], pct: int) -> int | None:
    """Nearest-rank percentile of sorted values."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil(n * pct / 100)
    return ordered[rank - 1]


def dimensions(record: dict[str, Any]) -> dict[str, str]:
    meta = record["ai"]["proxy"]["meta"]
    return {"provider": meta["provider_name"], "model": meta.get("response_model") or meta["request_model"]}


class UsageTally:
    def __init__(self) -> None:
        self.groups: dict[tuple[str, ...], Totals] = {}
        self.consumers: dict[str, Totals] = {}

    def add(self, record: dict[str, Any]) -> None:
        proxy = record["ai"]["proxy"]
        meta, usage = proxy["meta"], proxy["usage"]
        dims = dimensions(record)
        key = tuple(dims[name] for name in GROUP_BY)
        totals = self.groups.get(key)
        if totals is None:
            totals = self.groups[key] = Totals()
        prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
        facts = (meta["status"], prompt, completion, usage["cost"], meta["llm_latency"])
        totals.add(*facts)
        consumer = meta.get("consumer")
        if consumer is not None:
            self.consumers.setdefault(consumer, Totals()).add(*facts)

    def reset(self) -> None:
        self.groups.clear()
        self.consumers.clear()

    def as_json(self) -> dict[str, Any]:
        rows = [
            {**dict(zip(GROUP_BY, key, strict=True)), **totals.as_json()}
            for key, totals in sorted(self.groups.items())
        ]
        total = {
            name: sum(row[name] for row in rows)
            for name in ("calls", "errors", "prompt_tokens", "completion_tokens")
        }
        total["cost"] = round(sum(row["cost"] for row in rows), 9)
        consumers = [
            {"consumer": name, **totals.as_json()} for name, totals in sorted(self.consumers.items())
        ]
        return {"group_by": list(GROUP_BY), "groups": rows, "total": total, "consumers": consumers}

    def table(self) -> str:
        data = self.as_json()
        lines = [HEADER]
        lines.extend(_line(row["provider"], row["model"], row) for row in data["groups"])
        lines.append(_line("total", "", {**data["total"], "latency_p50_ms": "", "latency_p95_ms": ""}))
        # Calls made with a gateway key, per key name.
        lines.extend(_line("consumer", row["consumer"], row) for row in data["consumers"])
        widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
        # Names left-aligned, numbers right-aligned.
        text = [
            "  ".join(
                cell.ljust(width) if i < 2 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(line, widths, strict=True))
            )
            for line in lines
        ]
        return "\n".join(t.rstrip() for t in text)


def _line(first: str, second: str, row: dict[str, Any]) -> tuple[str, ...]:
    return (
        first,
        second,
        str(row["calls"]),
        str(row["errors"]),
        str(row["prompt_tokens"]),
        str(row["completion_tokens"]),
        f"{row['cost']:.6f}",
        _ms(row["latency_p50_ms"]),
        _ms(row["latency_p95_ms"]),
    )


def _ms(value: int | str | None) -> str:
    return "-" if value is None else str(value)
