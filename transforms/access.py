"""Who may spend the configured keys: gateway keys, per-key limits, and the loopback rule.

Pure decisions: the glue (``addon/access.py``) passes the config, the request's headers, whether
the client is on this machine, and the clock; nothing here does I/O.

Limits use fixed windows aligned to the Unix epoch (UTC), like Kong's rate limiting: a minute
window starts at every whole minute, a day window at 00:00 UTC. A request is refused while the
count already used in the current window has reached the limit; tokens and cost are known only
once a call has finished, so the call that crosses a token or cost limit completes and the next
one is refused. ``Retry-After`` is the number of seconds until the window that refused ends.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from transforms.auth import CREDENTIAL_HEADERS, client_token
from transforms.config import GatewayConfig, GatewayKey, KeyLimits, Route
from transforms.errors import GatewayError

MINUTE = 60
DAY = 86400
OPEN_ACCESS_OPTION = "ai_proxy_open_access"


@dataclass(frozen=True, slots=True)
class Refusal:
    """The gateway answers the request itself with this error; nothing goes upstream. The headers in
    ``strip_headers`` are dropped from the stored request all the same: a key refused on one route
    may be valid on another, and must not sit in flow dumps."""

    error: GatewayError
    retry_after: int | None = None  # seconds, for 429s
    strip_headers: tuple[str, ...] = ()

    @property
    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after)} if self.retry_after is not None else {}


@dataclass(frozen=True, slots=True)
class Admission:
    """A request may go on: as ``key`` (None when no gateway keys are configured), without the
    client credential headers in ``strip_headers`` (the gateway key must never go upstream)."""

    key: GatewayKey | None = None
    strip_headers: tuple[str, ...] = ()


def find_key(keys: Sequence[GatewayKey], token: str | None) -> GatewayKey | None:
    """The gateway key a client presented, compared in constant time as SHA-256 digests (so plain
    and hashed keys compare alike); every key is compared, a match does not end the loop early."""
    if not token:
        return None
    presented = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
    found = None
    for key in keys:
        if hmac.compare_digest(presented, key.digest):
            found = key
    return found


def attaches_credentials(route: Route) -> bool:
    """Whether the route sends a credential of the operator's (Bedrock always signs, with the
    route's keys or the AWS_* environment)."""
    auth = route.auth
    configured = auth.header_value or auth.param_value or auth.aws_access_key_id
    return bool(configured or auth.gcp_use_service_account or route.provider == "bedrock")


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8, ::1 and their IPv4-mapped forms; anything unparseable is not loopback."""
    if not host:
        return False
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def listens_beyond_loopback(listen_host: str) -> bool:
    """A listen address other clients can reach ("" means every interface)."""
    return listen_host.lower() != "localhost" and not is_loopback(listen_host)


def decide(
    config: GatewayConfig,
    route: Route,
    headers: Mapping[str, str],
    *,
    client_is_local: bool,
    open_access: bool,
) -> Admission | Refusal:
    """May this request use ``route``? With gateway keys: only with a key the route allows. Without:
    a route that attaches credentials serves only local clients, unless open access is set."""
    if config.gateway_keys:
        return _check_key(config.gateway_keys, route, headers)
    if client_is_local or open_access or not attaches_credentials(route):
        return Admission()
    return Refusal(
        GatewayError(
            403,
            f"route '{route.name}' attaches the gateway's provider credentials and serves only clients "
            "on this machine: configure gateway_keys, or set --set ai_proxy_open_access=true",
            "loopback_only",
        )
    )


def _check_key(keys: Sequence[GatewayKey], route: Route, headers: Mapping[str, str]) -> Admission | Refusal:
    # With gateway keys, whatever credential the client sent is (meant as) its gateway key.
    token = client_token(headers)
    if not token:
        message = (
            "missing API key: send your gateway key as Authorization: Bearer <key>, x-api-key, "
            "api-key or x-goog-api-key"
        )
        return Refusal(GatewayError(401, message, "invalid_api_key"), strip_headers=CREDENTIAL_HEADERS)
    key = find_key(keys, token)
    if key is None:
        message = "invalid API key: not a key of this gateway"
        return Refusal(GatewayError(401, message, "invalid_api_key"), strip_headers=CREDENTIAL_HEADERS)
    if route.allow_keys is not None and key.name not in route.allow_keys:
        message = f"the key '{key.name}' is not allowed on route '{route.name}'"
        return Refusal(GatewayError(403, message, "key_not_allowed"), strip_headers=CREDENTIAL_HEADERS)
    return Admission(key, CREDENTIAL_HEADERS)


# --- limits --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Meter:
    """One key's counts in the current minute and day windows (indexes of epoch-aligned windows)."""

    minute: int = -1
    minute_requests: int = 0
    minute_tokens: int = 0
    day: int = -1
    day_tokens: int = 0
    day_cost: float = 0.0

    def roll(self, now: float) -> None:
        """Start new windows when ``now`` has left the current ones."""
        minute, day = int(now // MINUTE), int(now // DAY)
        if minute != self.minute:
            self.minute, self.minute_requests, self.minute_tokens = minute, 0, 0
        if day != self.day:
            self.day, self.day_tokens, self.day_cost = day, 0, 0.0


@dataclass(frozen=True, slots=True)
class LimitHit:
    reached: tuple[str, ...]  # "requests_per_minute (10)", ...
    retry_after: int  # seconds until the latest window among the reached limits ends


def admit(meter: Meter, limits: KeyLimits, now: float) -> LimitHit | None:
    """Count a request and return None when no limit is reached; else what was reached (and the
    request is not counted). ``now``: Unix seconds."""
    meter.roll(now)
    reached = [
        (f"{name} ({limit:g})", window)
        for name, limit, used, window in (
            ("requests_per_minute", limits.requests_per_minute, meter.minute_requests, MINUTE),
            ("tokens_per_minute", limits.tokens_per_minute, meter.minute_tokens, MINUTE),
            ("tokens_per_day", limits.tokens_per_day, meter.day_tokens, DAY),
            ("cost_per_day", limits.cost_per_day, meter.day_cost, DAY),
        )
        if limit is not None and used >= limit
    ]
    if not reached:
        meter.minute_requests += 1
        return None
    window = max(w for _, w in reached)
    retry_after = max(1, math.ceil((now // window + 1) * window - now))
    return LimitHit(tuple(label for label, _ in reached), retry_after)


def count_usage(meter: Meter, tokens: int, cost: float, now: float) -> None:
    """Add a finished call's tokens and cost to the windows it finished in."""
    meter.roll(now)
    meter.minute_tokens += tokens
    meter.day_tokens += tokens
    meter.day_cost += cost


def limit_refusal(key: GatewayKey, hit: LimitHit) -> Refusal:
    message = (
        f"the key '{key.name}' reached its limit: {', '.join(hit.reached)}; retry after {hit.retry_after} s"
    )
    return Refusal(GatewayError(429, message, "rate_limit_exceeded"), hit.retry_after, CREDENTIAL_HEADERS)
