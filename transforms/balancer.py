"""AI Proxy Advanced's decisions: which target a request goes to, whether a failed try goes on and
where, the circuit breaker and the peak-EWMA latency. Kong's names (``balancer:`` in the config).

Pure: the caller passes the clock (``now``, seconds) and owns the ``Pool`` (one per route, built at
load); randomness comes from the pool's seeded generator, so a seeded pool decides the same way
every time. The addon that performs the tries is ``addon/upstream_relay.py``.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from transforms.config import Balancer, Route
from transforms.errors import GatewayError

# Peak-EWMA decay time: a latency observation weighs half after about 7 s (as nginx/Kong's 10 s tau).
EWMA_TAU_SECONDS = 10.0
# Why a try failed, as failover_criteria names it.
ERROR = "error"
TIMEOUT = "timeout"

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


@dataclass(slots=True)
class TargetHealth:
    """What the balancer knows about one target, updated after every try."""

    fails: int = 0  # consecutive failed tries (the circuit breaker counts these)
    opened_at: float | None = None  # when the circuit opened; None: closed
    probing: bool = False  # the one half-open try is in flight
    blocked_until: float = 0.0  # a Retry-After it returned: not tried before then
    ewma_ms: float | None = None  # peak-EWMA of latency (e2e ms or ms per output token)
    ewma_at: float = 0.0
    active: int = 0  # tries in flight (least-connections)
    usage: float = 0.0  # tokens or cost served (lowest-usage)


@dataclass(slots=True)
class Pool:
    """One route's targets as the balancer sees them."""

    weights: tuple[int, ...]
    config: Balancer
    health: list[TargetHealth] = field(default_factory=list)
    current: list[int] = field(default_factory=list)  # smooth weighted round-robin counters
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def __post_init__(self) -> None:
        if not self.health:
            self.health = [TargetHealth() for _ in self.weights]
        if not self.current:
            self.current = [0 for _ in self.weights]


def pool_for(route: Route, seed: int | None = None) -> Pool:
    """The pool of a route with targets (or a single-model route: one target)."""
    weights = tuple(t.weight for t in route.targets) if route.targets else (100,)
    return Pool(weights, route.balancer or Balancer(), rng=random.Random(seed))


# --- which targets a request may use -------------------------------------------------------------


def candidates_for(route: Route, asked_model: object) -> list[int]:
    """The targets a request may go to: those whose ``model_alias`` it names when the route has
    aliases (no model: all of them), every target otherwise. An unknown model is a 400."""
    targets = route.targets or ()
    aliases = route.aliases
    if not aliases or asked_model is None or asked_model == "":
        return list(range(len(targets) or 1))
    chosen = [i for i, t in enumerate(targets) if t.model.model_alias == asked_model]
    if not chosen:
        accepted = ", ".join(aliases)
        raise GatewayError(
            400, f"model '{asked_model}' is not served by this route; accepted: {accepted}", "model_not_found"
        )
    return chosen


# --- circuit breaker ----------------------------------------------------------------------------


def circuit(pool: Pool, index: int, now: float) -> str:
    """closed (tried freely), open (skipped), half-open (fail_timeout has passed: one try decides)."""
    health = pool.health[index]
    if health.opened_at is None:
        return CLOSED
    if (now - health.opened_at) * 1000 >= pool.config.fail_timeout:
        return HALF_OPEN
    return OPEN


def available(pool: Pool, index: int, now: float) -> bool:
    health = pool.health[index]
    if health.blocked_until > now:
        return False
    state = circuit(pool, index, now)
    return state == CLOSED or (state == HALF_OPEN and not health.probing)


# --- choosing ------------------------------------------------------------------------------------


def pick(
    pool: Pool,
    now: float,
    candidates: Sequence[int],
    tried: Collection[int] = (),
    hash_key: str | None = None,
) -> int | None:
    """The target of the next try, or None when every candidate is resting (open circuit or
    Retry-After). Targets not yet tried for this request come first, so a failure falls to another
    target while there is one (within the highest priority group first)."""
    usable = [i for i in candidates if available(pool, i, now)]
    fresh = [i for i in usable if i not in tried]
    choice = _choose(pool, fresh or usable, hash_key)
    if choice is not None and circuit(pool, choice, now) == HALF_OPEN:
        pool.health[choice].probing = True
    return choice


def _choose(pool: Pool, usable: list[int], hash_key: str | None) -> int | None:
    if not usable:
        return None
    if len(usable) == 1:
        return usable[0]
    algorithm = pool.config.algorithm
    weights = pool.weights
    if algorithm == "priority":
        top = max(weights[i] for i in usable)
        return _round_robin(pool, [i for i in usable if weights[i] == top])
    if algorithm == "round-robin":
        return _round_robin(pool, usable)
    if algorithm == "consistent-hashing":
        if hash_key is None:
            return _weighted_random(pool, usable)
        return max(usable, key=lambda i: _rendezvous(hash_key, i, weights[i]))
    health = pool.health
    if algorithm == "least-connections":
        return _lowest(pool, usable, lambda i: (health[i].active + 1) / weights[i])
    if algorithm == "lowest-latency":
        unmeasured = [i for i in usable if health[i].ewma_ms is None]
        if unmeasured:  # measure every target once before comparing
            return _weighted_random(pool, unmeasured)
        return _lowest(pool, usable, lambda i: health[i].ewma_ms or 0.0)
    return _lowest(pool, usable, lambda i: health[i].usage / weights[i])  # lowest-usage


def _round_robin(pool: Pool, usable: list[int]) -> int:
    """Smooth weighted round-robin (nginx's): weights 5,1,1 give a a b a c a a, never a burst."""
    total = 0
    best = usable[0]
    for i in usable:
        pool.current[i] += pool.weights[i]
        total += pool.weights[i]
        if pool.current[i] > pool.current[best]:
            best = i
    pool.current[best] -= total
    return best


def _weighted_random(pool: Pool, usable: list[int]) -> int:
    return pool.rng.choices(usable, weights=[pool.weights[i] for i in usable])[0]


def _lowest(pool: Pool, usable: list[int], score: object) -> int:
    scores = {i: score(i) for i in usable}  # type: ignore[operator]
    low = min(scores.values())
    return _weighted_random(pool, [i for i in usable if scores[i] == low])


def _rendezvous(key: str, index: int, weight: int) -> float:
    """Weighted rendezvous hashing: a key keeps its target while the set of targets allows."""
    digest = hashlib.blake2b(f"{index}:{key}".encode(), digest_size=8).digest()
    unit = (int.from_bytes(digest, "big") + 1) / (2**64 + 1)  # in (0, 1)
    return -weight / math.log(unit)


# --- after a try ---------------------------------------------------------------------------------


def failure_kind(status: int | None, timed_out: bool = False) -> str:
    """A failed try as failover_criteria names it: timeout, error, or http_<status>."""
    if timed_out:
        return TIMEOUT
    return ERROR if status is None else f"http_{status}"


def fails_over(pool: Pool, kind: str) -> bool:
    return kind in pool.config.failover_criteria


def started(pool: Pool, index: int) -> None:
    pool.health[index].active += 1


def succeeded(pool: Pool, index: int, now: float, latency_ms: float, usage: float = 0.0) -> None:
    """A try that answered: the circuit closes, the latency joins the EWMA, usage is counted."""
    health = pool.health[index]
    health.active = max(0, health.active - 1)
    health.fails = 0
    health.opened_at = None
    health.probing = False
    health.ewma_ms = peak_ewma(health.ewma_ms, health.ewma_at, latency_ms, now)
    health.ewma_at = now
    health.usage += usage


def failed(pool: Pool, index: int, now: float, retry_after: float | None = None) -> None:
    """A try that failed on a failover criterion: counted by the circuit breaker (max_fails in a
    row opens it; a failed half-open try opens it again), and rested for a Retry-After."""
    health = pool.health[index]
    health.active = max(0, health.active - 1)
    health.fails += 1
    was_probing, health.probing = health.probing, False
    max_fails = pool.config.max_fails
    if max_fails and (health.fails >= max_fails or was_probing):
        health.opened_at = now
    if retry_after is not None and retry_after > 0:
        health.blocked_until = max(health.blocked_until, now + retry_after)


def released(pool: Pool, index: int) -> None:
    """A try that ended without a verdict on the target (a client error, the client gone)."""
    health = pool.health[index]
    health.active = max(0, health.active - 1)
    health.probing = False


def peak_ewma(old: float | None, old_at: float, value: float, now: float) -> float:
    """Peak-EWMA: a slower answer counts at once, faster ones pull the average down over time."""
    if old is None or value >= old:
        return value
    weight = math.exp(-max(0.0, now - old_at) / EWMA_TAU_SECONDS)
    return old * weight + value * (1 - weight)


def latency_sample(pool: Pool, e2e_ms: float, completion_tokens: int) -> float:
    """What lowest-latency compares: end to end ms (e2e) or ms per output token (tpot)."""
    if pool.config.latency_strategy == "tpot" and completion_tokens > 0:
        return e2e_ms / completion_tokens
    return e2e_ms


def usage_amount(pool: Pool, prompt: int, completion: int, cost: float) -> float:
    strategy = pool.config.tokens_count_strategy
    if strategy == "prompt-tokens":
        return prompt
    if strategy == "completion-tokens":
        return completion
    if strategy == "cost":
        return cost
    return prompt + completion


def retry_after_seconds(value: str | None, now_epoch: float) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date; None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now_epoch)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def health_report(pool: Pool, now: float) -> list[dict[str, object]]:
    """Per-target health for ``aiproxy.stats``: circuit state, EWMA latency, in flight, resting."""
    out: list[dict[str, object]] = []
    for index, health in enumerate(pool.health):
        out.append(
            {
                "circuit": circuit(pool, index, now),
                "fails": health.fails,
                "ewma_ms": None if health.ewma_ms is None else round(health.ewma_ms, 1),
                "active": health.active,
                "retry_after_s": round(health.blocked_until - now, 1) if health.blocked_until > now else 0,
            }
        )
    return out
