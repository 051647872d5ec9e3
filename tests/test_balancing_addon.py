"""The balancing bookkeeping (addon/balancing.py), the relay's header rebuild, and per-target health
in ``aiproxy.stats``."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from mitmproxy.test import taddons, tflow

from addon.balancing import Balancing
from addon.flows import upstream_header_fields
from addon.stats import StatsSink
from addon.summary import UsageSummary
from addon.upstream_relay import UpstreamRelay
from transforms import balancer
from transforms.config import Route
from transforms.errors import GatewayError
from transforms.types import Inbound, Upstream


class FakeGateway:
    balancing: Any = None


def targets_route(**balancer_config: Any) -> Route:
    targets = [
        {
            "route_type": "llm/v1/chat",
            "model": {"provider": "openai", "name": name},
            "weight": weight,
            "description": f"the {name} target",
        }
        for name, weight in (("gpt-a", 10), ("gpt-b", 1))
    ]
    return Route.model_validate(
        {"name": "adv", "targets": targets, "balancer": {"algorithm": "priority", **balancer_config}}
    )


def inbound(model: str = "x") -> Inbound:
    body = orjson.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]})
    return Inbound("POST", "", "/v1/chat/completions", [], {"content-type": "application/json"}, body)


def test_choose_registers_and_answers_teach_the_pool() -> None:
    gateway = FakeGateway()
    balancing = Balancing(gateway)
    assert gateway.balancing is balancing
    route = targets_route(latency_strategy="e2e")
    flow = tflow.tflow(resp=True)
    chosen = balancing.choose(flow, route, inbound())
    assert chosen is route.target_routes[0] and chosen.model.name == "gpt-a"
    call = balancing.call(flow)
    assert call is not None and call.candidates == [0, 1] and call.index == 0
    assert call.target_facts("gpt-a") == {
        "provider": "openai",
        "model": "gpt-a",
        "description": "the gpt-a target",
    }
    call.answered = True
    call.try_started = time.monotonic() - 0.25  # the try began 250 ms ago
    flow.metadata["ai_proxy"] = {"ai": {"proxy": {"usage": {"prompt_tokens": 5, "completion_tokens": 7}}}}
    balancing.response(flow)
    assert balancing.call(flow) is None
    health = balancer.health_report(balancing.pool(route), 0.0)
    assert health[0]["circuit"] == "closed" and 250 <= health[0]["ewma_ms"] < 400  # type: ignore[operator]
    assert balancing.pool(route).health[0].usage == 12
    assert health[1]["ewma_ms"] is None


def test_an_error_releases_without_teaching() -> None:
    balancing = Balancing(FakeGateway())
    route = targets_route()
    flow = tflow.tflow()
    balancing.choose(flow, route, inbound())
    pool = balancing.pool(route)
    balancer.started(pool, 0)
    balancing.error(flow)
    assert pool.health[0].active == 0 and pool.health[0].ewma_ms is None and pool.health[0].fails == 0


def test_next_target_falls_then_stops_when_retries_run_out() -> None:
    balancing = Balancing(FakeGateway())
    route = targets_route(retries=1, failover_criteria=["error", "http_500"])
    flow = tflow.tflow()
    balancing.choose(flow, route, inbound())
    call = balancing.call(flow)
    assert call is not None
    call.tried.add(0)
    assert balancing.next_target(call, 1, "http_500", None) == 1
    assert balancing.next_target(call, 2, "http_500", None) is None  # 1 + retries tries done
    assert call.settled


def test_next_target_does_not_fail_over_on_other_answers() -> None:
    balancing = Balancing(FakeGateway())
    route = targets_route()
    flow = tflow.tflow()
    balancing.choose(flow, route, inbound())
    call = balancing.call(flow)
    assert call is not None
    assert balancing.next_target(call, 1, "http_500", None) is None  # default criteria: error, timeout


def test_every_target_resting_is_a_503() -> None:
    balancing = Balancing(FakeGateway())
    route = targets_route(max_fails=1)
    pool = balancing.pool(route)
    balancer.failed(pool, 0, 1e12)
    balancer.failed(pool, 1, 1e12)
    with pytest.raises(GatewayError) as err:
        balancing.choose(tflow.tflow(), route, inbound())
    assert (err.value.status, err.value.code) == (503, "no_target_available")


def test_a_reloaded_route_gets_a_fresh_pool() -> None:
    balancing = Balancing(FakeGateway())
    first = balancing.pool(targets_route())
    assert balancing.pool(targets_route()) is not first


def test_aiproxy_stats_shows_target_health() -> None:
    balancing = Balancing(FakeGateway())
    route = targets_route(max_fails=1)
    pool = balancing.pool(route)
    balancer.failed(pool, 1, 1e12)  # opened far in the future's past: still open now
    summary = UsageSummary(StatsSink(), balancing.health)
    data = orjson.loads(summary.stats())
    assert data["targets"] == [
        {
            "route": "adv",
            "target": 0,
            "provider": "openai",
            "model": "gpt-a",
            "description": "the gpt-a target",
            "circuit": "closed",
            "fails": 0,
            "ewma_ms": None,
            "active": 0,
            "retry_after_s": 0,
        },
        {
            "route": "adv",
            "target": 1,
            "provider": "openai",
            "model": "gpt-b",
            "description": "the gpt-b target",
            "circuit": "open",
            "fails": 1,
            "ewma_ms": None,
            "active": 0,
            "retry_after_s": 0,
        },
    ]
    assert "targets" not in orjson.loads(UsageSummary(StatsSink(), Balancing(FakeGateway()).health).stats())


def test_upstream_header_fields_for_another_target() -> None:
    up = Upstream(
        "POST",
        "https",
        "api.anthropic.com",
        443,
        "/v1/messages",
        [],
        {"x-api-key": "k", "anthropic-version": "2023-06-01"},
        ("authorization", "content-length"),
        b"{}",
    )
    client = {"authorization": "Bearer client", "user-agent": "sdk", "host": "gw", "content-length": "99"}
    assert upstream_header_fields(client, up) == [
        (b"user-agent", b"sdk"),
        (b"content-length", b"2"),
        (b"x-api-key", b"k"),
        (b"anthropic-version", b"2023-06-01"),
        (b"host", b"api.anthropic.com"),
    ]


@pytest.mark.parametrize(
    ("options", "plain_relayed"),
    [
        ({}, True),
        ({"ai_proxy_relay": "balanced"}, False),
        ({"mode": ["upstream:http://127.0.0.1:3128"]}, False),  # the relay would bypass that proxy
        ({"mode": ["regular", "reverse:http://127.0.0.1:1@8081"]}, True),
    ],
)
def test_which_flows_the_relay_takes(options: dict[str, Any], plain_relayed: bool) -> None:
    gateway = FakeGateway()
    relay = UpstreamRelay(gateway, Balancing(gateway))
    with taddons.context(relay) as tctx:
        tctx.configure(relay, **options)
        assert relay.relays(None) is plain_relayed
        assert relay.relays(object()) is True  # type: ignore[arg-type]  # a balanced route's call
