"""The usage summary: every statistics record totalled per provider and model; a table in the
event log when mitmdump stops, and the commands ``aiproxy.stats`` (JSON) and ``aiproxy.stats.reset``."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from mitmproxy import command

from addon.stats import StatsSink
from transforms.summary import UsageTally

logger = logging.getLogger("ai_proxy")


class UsageSummary:
    def __init__(self, stats: StatsSink) -> None:
        self.tally = UsageTally()
        stats.subscribe(self.add)

    def add(self, record: dict[str, Any]) -> None:
        self.tally.add(record)

    def done(self) -> None:
        if self.tally.groups:
            logger.info("ai_proxy usage summary:\n" + self.tally.table())

    @command.command("aiproxy.stats")
    def stats(self) -> str:
        """Calls, errors, tokens, cost and latency p50/p95 per provider and model, as JSON."""
        return orjson.dumps(self.tally.as_json()).decode()

    @command.command("aiproxy.stats.reset")
    def reset(self) -> None:
        """Zero the usage summary."""
        self.tally.reset()
        logger.info("ai_proxy: usage summary reset")
