"""AI Proxy Advanced's pure decisions (transforms/balancer.py) and its config: seeded, exact."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from pydantic import ValidationError

from transforms import balancer as b
from transforms.config import Route
from transforms.errors import GatewayError


def targets_route(
    algorithm: str, weights: list[int], aliases: list[str | None] | None = None, **balancer: Any
) -> Route:
    targets = []
    for i, weight in enumerate(weights):
        model: dict[str, Any] = {"provider": "openai", "name": f"m{i}"}
        if aliases and aliases[i]:
            model["model_alias"] = aliases[i]
        targets.append(
            {"route_type": "llm/v1/chat", "model": model, "weight": weight, "description": f"t{i}"}
        )
    return Route.model_validate(
        {"name": "adv", "targets": targets, "balancer": {"algorithm": algorithm, **balancer}}
    )


def picks(pool: b.Pool, n: int, candidates: list[int], **kw: Any) -> list[int]:
    return [b.pick(pool, 0.0, candidates, **kw) for _ in range(n)]  # type: ignore[misc]


# --- config ----------------------------------------------------------------------------------------


def test_targets_route_defaults_and_target_routes() -> None:
    route = targets_route("round-robin", [100, 7])
    assert route.balancer is not None
    bal = route.balancer
    assert (bal.retries, bal.failover_criteria, bal.max_fails, bal.fail_timeout) == (
        5,
        ["error", "timeout"],
        0,
        10000,
    )
    assert (bal.connect_timeout, bal.read_timeout, bal.write_timeout) == (60000, 60000, 60000)
    assert bal.hash_on_header == "X-Kong-LLM-Request-ID"
    assert [r.model.name for r in route.target_routes] == ["m0", "m1"]
    assert all(r.name == "adv" and r.replaces_model for r in route.target_routes)
    assert not route.replaces_model
    assert route.targets is not None and route.targets[1].weight == 7


def test_target_defaults_weight_100() -> None:
    route = Route.model_validate(
        {"name": "a", "targets": [{"route_type": "llm/v1/chat", "model": {"provider": "openai"}}]}
    )
    assert route.targets is not None and route.targets[0].weight == 100
    assert route.balancer is None


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"model": {"provider": "openai"}},
            "a route with targets has no route-level 'route_type', 'auth', 'model' or 'logging'",
        ),
        ({"targets": []}, "'targets' must list at least one target"),
        (
            {"targets": [{"route_type": "llm/v1/chat", "model": {"provider": "openai"}, "weight": 65536}]},
            "less than or equal to 65535",
        ),
        (
            {
                "targets": [
                    {"route_type": "llm/v1/chat", "model": {"provider": "openai"}},
                    {"route_type": "llm/v1/chat", "model": {"provider": "anthropic"}},
                ]
            },
            "targets[1]: must set 'model.options.anthropic_version' for anthropic provider",
        ),
        (
            {
                "targets": [
                    {"route_type": "llm/v1/chat", "model": {"provider": "openai"}},
                    {"route_type": "llm/v1/embeddings", "model": {"provider": "openai"}},
                ]
            },
            "every target must have the same route_type",
        ),
        (
            {"route_type": "llm/v1/chat", "model": {"provider": "openai", "model_alias": "x"}},
            "'model.model_alias' is only used on targets",
        ),
        (
            {"route_type": "llm/v1/chat", "model": {"provider": "openai"}, "balancer": {"retries": -1}},
            "greater than or equal to 0",
        ),
        (
            {
                "route_type": "llm/v1/chat",
                "model": {"provider": "openai"},
                "balancer": {"failover_criteria": ["http_400"]},
            },
            "Input should be 'error', 'timeout'",
        ),
    ],
)
def test_config_errors(config: dict[str, Any], message: str) -> None:
    config = {
        "name": "adv",
        **(
            {"targets": [{"route_type": "llm/v1/chat", "model": {"provider": "openai"}}]}
            if "model" in config and "targets" not in config and "route_type" not in config
            else {}
        ),
        **config,
    }
    with pytest.raises(ValidationError) as err:
        Route.model_validate(config)
    assert message in str(err.value)


def test_single_model_route_with_balancer() -> None:
    route = Route.model_validate(
        {
            "name": "s",
            "route_type": "llm/v1/chat",
            "model": {"provider": "openai"},
            "balancer": {"retries": 2},
        }
    )
    assert route.balancer is not None and route.balancer.retries == 2
    assert route.target_routes == ()
    assert b.candidates_for(route, "anything") == [0]


# --- aliases ---------------------------------------------------------------------------------------


def test_aliases_pick_targets_and_unknown_model_is_400() -> None:
    route = targets_route("round-robin", [100, 100, 100], aliases=["fast", "smart", "fast"])
    assert route.aliases == ("fast", "smart")
    assert b.candidates_for(route, "fast") == [0, 2]
    assert b.candidates_for(route, "smart") == [1]
    assert b.candidates_for(route, None) == [0, 1, 2]
    with pytest.raises(GatewayError) as err:
        b.candidates_for(route, "gpt-4o")
    assert (err.value.status, err.value.message) == (
        400,
        "model 'gpt-4o' is not served by this route; accepted: fast, smart",
    )


def test_no_aliases_every_target_whatever_the_model() -> None:
    assert b.candidates_for(targets_route("round-robin", [1, 1]), "gpt-4o") == [0, 1]


# --- algorithms (seeded) ----------------------------------------------------------------------------


def test_round_robin_is_smooth_and_weighted() -> None:
    pool = b.pool_for(targets_route("round-robin", [5, 1, 1]), seed=1)
    assert "".join("abc"[i] for i in picks(pool, 14, [0, 1, 2])) == "aabacaa" * 2


def test_round_robin_equal_weights_rotates() -> None:
    pool = b.pool_for(targets_route("round-robin", [100, 100, 100]), seed=1)
    assert picks(pool, 6, [0, 1, 2]) == [0, 1, 2, 0, 1, 2]


def test_consistent_hashing_keeps_a_key_on_its_target() -> None:
    pool = b.pool_for(targets_route("consistent-hashing", [100, 100, 100]), seed=1)
    first = [b.pick(pool, 0.0, [0, 1, 2], hash_key=f"user{i}") for i in range(10)]
    again = [b.pick(pool, 0.0, [0, 1, 2], hash_key=f"user{i}") for i in range(10)]
    assert first == again == [0, 2, 0, 1, 1, 0, 0, 1, 2, 0]
    spread = Counter(b.pick(pool, 0.0, [0, 1, 2], hash_key=f"k{i}") for i in range(3000))
    assert all(900 < spread[i] < 1100 for i in range(3))
    # Removing target 2 moves only its own keys.
    moved = [
        i for i in range(10) if first[i] != 2 and b.pick(pool, 0.0, [0, 1], hash_key=f"user{i}") != first[i]
    ]
    assert moved == []


def test_least_connections_prefers_idle_targets() -> None:
    pool = b.pool_for(targets_route("least-connections", [100, 100]), seed=1)
    seq = []
    for _ in range(4):
        chosen = b.pick(pool, 0.0, [0, 1])
        assert chosen is not None
        b.started(pool, chosen)
        seq.append(chosen)
    assert seq == [0, 1, 1, 0]
    assert [h.active for h in pool.health] == [2, 2]
    b.succeeded(pool, 1, 1.0, 100.0)
    assert b.pick(pool, 0.0, [0, 1]) == 1


def test_lowest_latency_measures_then_prefers_fastest() -> None:
    pool = b.pool_for(targets_route("lowest-latency", [100, 100, 100], latency_strategy="e2e"), seed=3)
    seen = []
    for latency in (300.0, 100.0, 200.0):
        chosen = b.pick(pool, 0.0, [0, 1, 2])
        assert chosen is not None and chosen not in seen
        seen.append(chosen)
        b.started(pool, chosen)
        b.succeeded(pool, chosen, 0.0, latency)
    fastest = seen[1]
    assert picks(pool, 5, [0, 1, 2]) == [fastest] * 5


def test_lowest_latency_tpot_divides_by_output_tokens() -> None:
    pool = b.pool_for(targets_route("lowest-latency", [1]))
    assert b.latency_sample(pool, 1000.0, 50) == 20.0
    assert b.latency_sample(pool, 1000.0, 0) == 1000.0
    e2e = b.pool_for(targets_route("lowest-latency", [1], latency_strategy="e2e"))
    assert b.latency_sample(e2e, 1000.0, 50) == 1000.0


def test_lowest_usage_balances_tokens() -> None:
    pool = b.pool_for(
        targets_route("lowest-usage", [100, 100], tokens_count_strategy="completion-tokens"), seed=2
    )
    b.succeeded(pool, 0, 0.0, 1.0, b.usage_amount(pool, 1000, 10, 0.5))
    assert pool.health[0].usage == 10
    assert picks(pool, 3, [0, 1]) == [1, 1, 1]
    b.succeeded(pool, 1, 0.0, 1.0, 11)
    assert b.pick(pool, 0.0, [0, 1]) == 0
    assert b.usage_amount(b.pool_for(targets_route("lowest-usage", [1])), 3, 4, 0.1) == 7
    assert (
        b.usage_amount(
            b.pool_for(targets_route("lowest-usage", [1], tokens_count_strategy="cost")), 3, 4, 0.1
        )
        == 0.1
    )


def test_priority_uses_highest_group_then_falls_within_it_first() -> None:
    pool = b.pool_for(targets_route("priority", [10, 10, 1]), seed=1)
    assert picks(pool, 4, [0, 1, 2]) == [0, 1, 0, 1]
    # 0 fails: its group's other member first, then the lower group.
    assert b.pick(pool, 0.0, [0, 1, 2], tried={0}) == 1
    assert b.pick(pool, 0.0, [0, 1, 2], tried={0, 1}) == 2


def test_seeded_random_choices_repeat() -> None:
    def run(seed: int) -> list[int]:
        pool = b.pool_for(targets_route("consistent-hashing", [300, 100]), seed=seed)
        return picks(pool, 40, [0, 1])

    assert run(7) == run(7)
    counts = Counter(run(7) + run(8) + run(9))
    assert counts[0] > counts[1] * 2


# --- failures, Retry-After, the circuit breaker ------------------------------------------------------


def test_failure_kinds_and_criteria() -> None:
    pool = b.pool_for(targets_route("round-robin", [1], failover_criteria=["error", "http_429"]))
    assert b.failure_kind(None) == "error"
    assert b.failure_kind(None, timed_out=True) == "timeout"
    assert b.failure_kind(503) == "http_503"
    assert b.fails_over(pool, "http_429") and b.fails_over(pool, "error")
    assert not b.fails_over(pool, "timeout") and not b.fails_over(pool, "http_400")


def test_next_try_moves_on_and_single_target_retries_itself() -> None:
    pool = b.pool_for(targets_route("round-robin", [100, 100]))
    assert b.pick(pool, 0.0, [0, 1], tried={0}) == 1
    assert b.pick(pool, 0.0, [0, 1], tried={0, 1}) in (0, 1)
    single = b.pool_for(targets_route("round-robin", [100]))
    assert b.pick(single, 0.0, [0], tried={0}) == 0


def test_retry_after_rests_a_target() -> None:
    pool = b.pool_for(targets_route("round-robin", [100, 100]))
    b.started(pool, 0)
    b.failed(pool, 0, 100.0, retry_after=30)
    assert [b.pick(pool, 110.0, [0, 1]) for _ in range(3)] == [1, 1, 1]
    assert b.pick(pool, 110.0, [0]) is None
    assert b.pick(pool, 130.0, [0]) == 0
    assert b.health_report(pool, 110.0)[0]["retry_after_s"] == 20.0


def test_retry_after_header_forms() -> None:
    assert b.retry_after_seconds("7", 0.0) == 7.0
    assert b.retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", 1445412480.0) == 10.0
    assert b.retry_after_seconds("soon", 0.0) is None
    assert b.retry_after_seconds(None, 0.0) is None


def test_circuit_breaker_open_half_open_closed() -> None:
    pool = b.pool_for(targets_route("round-robin", [100, 100], max_fails=2, fail_timeout=5000))
    b.failed(pool, 0, 10.0)
    assert b.circuit(pool, 0, 10.0) == b.CLOSED  # one failure of two
    b.failed(pool, 0, 11.0)
    assert b.circuit(pool, 0, 11.0) == b.OPEN
    assert [b.pick(pool, 12.0, [0, 1]) for _ in range(3)] == [1, 1, 1]
    assert b.circuit(pool, 0, 15.999) == b.OPEN
    assert b.circuit(pool, 0, 16.0) == b.HALF_OPEN
    assert b.pick(pool, 16.0, [0]) == 0  # the one probe
    assert b.pick(pool, 16.0, [0]) is None  # no second try while it is in flight
    b.failed(pool, 0, 16.5)  # the probe fails: open again, from now
    assert b.circuit(pool, 0, 21.0) == b.OPEN
    assert b.circuit(pool, 0, 21.5) == b.HALF_OPEN
    assert b.pick(pool, 21.5, [0]) == 0
    b.succeeded(pool, 0, 21.6, 50.0)
    assert b.circuit(pool, 0, 21.6) == b.CLOSED
    assert pool.health[0].fails == 0
    assert b.health_report(pool, 21.6)[0] == {
        "circuit": "closed",
        "fails": 0,
        "ewma_ms": 50.0,
        "active": 0,
        "retry_after_s": 0,
    }


def test_circuit_breaker_off_by_default() -> None:
    pool = b.pool_for(targets_route("round-robin", [100]))
    for t in range(50):
        b.failed(pool, 0, float(t))
    assert b.circuit(pool, 0, 50.0) == b.CLOSED


def test_peak_ewma() -> None:
    assert b.peak_ewma(None, 0.0, 120.0, 0.0) == 120.0
    assert b.peak_ewma(100.0, 0.0, 300.0, 0.0) == 300.0  # a peak counts at once
    assert b.peak_ewma(300.0, 0.0, 100.0, 0.0) == 300.0  # no time passed: no decay
    decayed = b.peak_ewma(300.0, 0.0, 100.0, 10.0)
    assert decayed == pytest.approx(100.0 + 200.0 / 2.718281828459045)
