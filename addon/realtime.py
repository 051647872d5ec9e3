"""RealtimeSessions: the statistics of realtime/v1/realtime WebSocket sessions.

The gateway prepares the upgrade request (auth, URL, model: transforms/realtime.py) and names the
session's route and model in ``flow.metadata["ai_proxy"]["realtime"]``. Messages then pass both ways
unchanged; this addon only reads the server's ``response.done`` events: each one's
``response.usage`` is one statistics record, and the session's totals are one more record when it
closes (written and logged, but not counted again by the per-key limits or the usage summary).

Every hook an addon defines is dispatched for every flow: ``websocket_message`` costs one dict
lookup for WebSocket flows that are no realtime session, and nothing else is hooked.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from mitmproxy import http

from addon.flows import ai_metadata
from addon.stats import CONSUMER_METADATA, CallFacts, StatsSink, build_record
from transforms.config import GatewayConfig, Route
from transforms.realtime import REALTIME_METADATA, add_usage, response_usage
from transforms.types import Usage

logger = logging.getLogger("ai_proxy")

REALTIME_MODE = "realtime"


class Gateway(Protocol):
    config: GatewayConfig
    stats: StatsSink


@dataclass(slots=True)
class Session:
    route: Route
    model: str
    consumer: str | None
    started: float
    last_client_at: float  # when the client last spoke: a response's latency runs from there
    responses: int = 0
    totals: Usage = field(default_factory=Usage)


class RealtimeSessions:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._sessions: dict[str, Session] = {}

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        facts = flow.metadata.get("ai_proxy", {}).get(REALTIME_METADATA)
        if not isinstance(facts, dict):
            return
        route = next((r for r in self.gateway.config.routes if r.name == facts.get("route")), None)
        if route is None or not route.logging.log_statistics:
            return
        now = time.time()
        consumer = flow.metadata.get(CONSUMER_METADATA)
        self._sessions[flow.id] = Session(route, str(facts.get("model") or ""), consumer, now, now)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        session = self._sessions.get(flow.id)
        if session is None or flow.websocket is None:
            return
        message = flow.websocket.messages[-1]
        if message.from_client:
            session.last_client_at = message.timestamp
            return
        content = message.content
        if b'"response.done"' not in content:  # audio deltas and the rest are never parsed
            return
        try:
            found = response_usage(orjson.loads(content))
        except orjson.JSONDecodeError:
            return
        if found is None:
            return
        usage, response_id, error = found
        session.responses += 1
        session.totals = add_usage(session.totals, usage)
        latency = int(max(0.0, message.timestamp - session.last_client_at) * 1000)
        meta = {"realtime": {"event": "response.done", "response_id": response_id}}
        self._emit(flow, session, usage, latency, meta, error)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        session = self._sessions.pop(flow.id, None)
        if session is None:
            return
        ws = flow.websocket
        duration = int(max(0.0, time.time() - session.started) * 1000)
        meta = {
            "realtime": {
                "event": "session.closed",
                "responses": session.responses,
                "duration_ms": duration,
                "close_code": ws.close_code if ws is not None else None,
            }
        }
        record = self._emit(flow, session, session.totals, duration, meta, None, counted=False)
        ai_metadata(flow).update(record)

    def _emit(
        self,
        flow: http.HTTPFlow,
        session: Session,
        usage: Usage,
        latency_ms: int,
        meta: dict[str, Any],
        error: str | None,
        counted: bool = True,
    ) -> dict[str, Any]:
        facts = CallFacts(
            route=session.route,
            request_model=session.model,
            response_model=session.model,
            usage=usage,
            llm_latency_ms=latency_ms,
            stream=False,
            status=101,
            secrets=session.route.auth.secrets(),
            consumer=session.consumer,
            error=error,
            request_mode=REALTIME_MODE,
            extra_meta=meta,
        )
        record = build_record(facts)
        self.gateway.stats.emit(record, counted=counted)
        return record
