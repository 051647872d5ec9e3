"""The usage summary: every statistics record totalled per provider and model; a table in the
event log when mitmdump stops, and the commands ``aiproxy.stats`` (JSON) and ``aiproxy.stats.reset``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from mitmproxy import command

from addon.stats import StatsSink
from transforms.summary import UsageTally

logger = logging.getLogger("ai_proxy")


class UsageSummary:
    def __init__(self, stats: StatsSink, health: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        self.tally = UsageTally()
        self.health = health  # per target of balanced routes (addon/balancing.py)
        stats.subscribe(self.add)

    def add(self, record: dict[str, Any]) -> None:
        self.tally.add(record)

    def done(self) -> None:
        if self.tally.groups:
            logger.info("ai_proxy usage summary:\n" + self.tally.table())

    @command.command("aiproxy.stats")
    def stats(self) -> str:
        """Calls, errors, tokens, cost and latency p50/p95 per provider and model, and the health of
        every target of routes with targets or a balancer (circuit, EWMA latency), as JSON."""
        data = self.tally.as_json()
        targets = self.health() if self.health is not None else []
        if targets:
            data["targets"] = targets
        return orjson.dumps(data).decode()

    @command.command("aiproxy.stats.reset")
    def reset(self) -> None:
        """Zero the usage summary."""
        self.tally.reset()
        logger.info("ai_proxy: usage summary reset")
