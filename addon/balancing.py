"""AI Proxy Advanced's bookkeeping: one balancer pool per route with ``targets:`` or ``balancer:``,
the call each flow of such a route is making, and what a finished call teaches the balancer.

The gateway asks ``choose`` (its ``balancing`` hook point) which route a request is prepared for;
``addon/upstream_relay.py`` performs the tries and asks ``next_target`` after a failure. Every
decision is ``transforms/balancer.py``'s; this file holds the state and reads the flows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from mitmproxy import http

from addon.flows import ai_metadata
from transforms import balancer
from transforms.config import Balancer, Route
from transforms.errors import GatewayError
from transforms.types import Inbound

logger = logging.getLogger("ai_proxy")


@dataclass(slots=True)
class Call:
    """One request of a balanced route, across its tries."""

    route: Route  # the configured route (its targets, its balancer)
    pool: balancer.Pool
    candidates: list[int]
    index: int  # the target of the current try
    inbound: Inbound  # the client's request as the pipeline reads it (after the prompt plugins)
    hash_key: str | None
    tried: set[int] = field(default_factory=set)
    try_started: float = 0.0  # monotonic
    answered: bool = False  # a try got an answer the client receives
    settled: bool = False  # the balancer has been told how the call ended

    @property
    def config(self) -> Balancer:
        return self.pool.config

    def target_route(self, index: int) -> Route:
        return self.route.target_routes[index] if self.route.targets else self.route

    def target_facts(self, model: str) -> dict[str, Any]:
        """``meta.target``: the provider, model and description of the target that answered."""
        route = self.target_route(self.index)
        description = self.route.targets[self.index].description if self.route.targets else None
        return {"provider": route.provider, "model": model, "description": description}


class Balancing:
    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway
        self.pools: dict[str, tuple[Route, balancer.Pool]] = {}
        self.calls: dict[str, Call] = {}
        gateway.balancing = self

    # --- the gateway's hook point ---------------------------------------------------------------------

    def choose(self, flow: http.HTTPFlow, route: Route, inbound: Inbound) -> Route:
        """The route the request is prepared for: the target the balancer picks (or the route
        itself on a single-model route with a balancer). Raises GatewayError for an unknown model
        on a route with aliases, and when every target is resting."""
        pool = self.pool(route)
        asked = _asked_model(inbound) if route.aliases else None
        candidates = balancer.candidates_for(route, asked)
        header = pool.config.hash_on_header.lower()
        hash_key = inbound.headers.get(header) if pool.config.algorithm == "consistent-hashing" else None
        index = balancer.pick(pool, time.monotonic(), candidates, (), hash_key)
        if index is None:
            raise GatewayError(
                503,
                f"no target of route '{route.name}' is available now (open circuit or Retry-After)",
                "no_target_available",
            )
        call = Call(route, pool, candidates, index, inbound, hash_key)
        self.calls[flow.id] = call
        return call.target_route(index)

    def pool(self, route: Route) -> balancer.Pool:
        """A route's pool, kept while the route is the same object (a config reload starts afresh)."""
        kept = self.pools.get(route.name)
        if kept is not None and kept[0] is route:
            return kept[1]
        pool = balancer.pool_for(route)
        self.pools[route.name] = (route, pool)
        return pool

    def call(self, flow: http.HTTPFlow) -> Call | None:
        return self.calls.get(flow.id)

    def next_target(self, call: Call, tries_done: int, kind: str, retry_after: float | None) -> int | None:
        """After a try failed on ``kind``: tells the balancer, and names the next target (None: the
        last answer stands)."""
        now = time.monotonic()
        balancer.failed(call.pool, call.index, now, retry_after)
        if tries_done > call.config.retries or not balancer.fails_over(call.pool, kind):
            call.settled = True
            return None
        nxt = balancer.pick(call.pool, now, call.candidates, call.tried, call.hash_key)
        if nxt is None:
            call.settled = True
        return nxt

    def health(self) -> list[dict[str, Any]]:
        """Per target of every balanced route: circuit, EWMA latency, in flight (``aiproxy.stats``)."""
        now = time.monotonic()
        out = []
        for name, (route, pool) in sorted(self.pools.items()):
            routes = route.target_routes or (route,)
            for index, health in enumerate(balancer.health_report(pool, now)):
                target = route.targets[index] if route.targets else None
                out.append(
                    {
                        "route": name,
                        "target": index,
                        "provider": routes[index].provider,
                        "model": routes[index].model.name,
                        "description": target.description if target else None,
                        **health,
                    }
                )
        return out

    # --- mitmproxy hooks (after the gateway: its statistics record is on the flow) -------------------

    def response(self, flow: http.HTTPFlow) -> None:
        call = self.calls.pop(flow.id, None) if self.calls else None
        if call is None or call.settled:
            return
        call.settled = True
        response = flow.response
        if not call.answered or response is None or not 200 <= response.status_code < 400:
            balancer.released(call.pool, call.index)
            return
        e2e_ms = (time.monotonic() - call.try_started) * 1000
        usage = ai_metadata(flow).get("ai", {}).get("proxy", {}).get("usage") or {}
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        sample = balancer.latency_sample(call.pool, e2e_ms, completion)
        amount = balancer.usage_amount(call.pool, prompt, completion, float(usage.get("cost") or 0))
        balancer.succeeded(call.pool, call.index, time.monotonic(), sample, amount)

    def error(self, flow: http.HTTPFlow) -> None:
        call = self.calls.pop(flow.id, None) if self.calls else None
        if call is not None and not call.settled:
            call.settled = True
            balancer.released(call.pool, call.index)


def _asked_model(inbound: Inbound) -> object:
    """The model a client named (read only on routes with aliases)."""
    try:
        body = orjson.loads(inbound.body)
    except orjson.JSONDecodeError:
        return None  # the pipeline answers the bad body
    return body.get("model") if isinstance(body, dict) else None
