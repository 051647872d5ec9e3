"""Access control: who may spend the configured provider keys (the decisions: transforms/access.py).

Runs before the gateway (``addons`` order in ai_proxy.py), so a refused request is answered here
and never prepared or sent upstream. It asks the gateway which route a flow matches; traffic no
route claims (inspection, the client's own credentials) is not its business.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from mitmproxy import ctx, http
from mitmproxy.proxy.mode_specs import LocalMode, OsProxyMode, ProxyMode

from addon.stats import CONSUMER_METADATA, StatsSink
from transforms.access import (
    OPEN_ACCESS_OPTION,
    Admission,
    Meter,
    Refusal,
    admit,
    attaches_credentials,
    count_usage,
    decide,
    is_loopback,
    limit_refusal,
    listens_beyond_loopback,
)
from transforms.config import GatewayConfig, Route
from transforms.errors import GatewayError
from transforms.ingress import client_error
from transforms.limits import MAX_REMEMBERED_PEERS

logger = logging.getLogger("ai_proxy")

# Modes whose clients are processes of this machine, whatever source address they use.
_LOCAL_MODES = (LocalMode, OsProxyMode)


class RouteSource(Protocol):
    """What access control needs of the gateway (addon/gateway.py's AIProxy)."""

    config: GatewayConfig
    stats: StatsSink

    def route_for(self, flow: http.HTTPFlow) -> Route | None: ...


class AccessControl:
    def __init__(self, gateway: RouteSource, clock: Callable[[], float] = time.time) -> None:
        self.gateway = gateway
        self.clock = clock  # Unix seconds; tests pass their own
        self.open_access = False
        self._meters: dict[str, Meter] = {}  # per gateway key name, in memory on this process
        self._loopback: dict[str, bool] = {}  # peer address -> is_loopback: parsing it costs per request
        self._checked: set[str] = set()  # flows decided from their headers (check_headers)
        gateway.stats.subscribe(self._count_usage)

    def load(self, loader: Any) -> None:
        loader.add_option(
            OPEN_ACCESS_OPTION,
            bool,
            False,
            "Without gateway_keys, let clients beyond loopback use routes that attach provider "
            "credentials (anyone who can reach the proxy can then spend those keys).",
        )

    def configure(self, updated: set[str]) -> None:
        if OPEN_ACCESS_OPTION in updated:
            self.open_access = bool(getattr(ctx.options, OPEN_ACCESS_OPTION))

    def running(self) -> None:
        """One warning when the proxy listens beyond loopback and its routes spend keys keylessly."""
        config = self.gateway.config
        exposed = _exposed_listen_hosts()
        routes = [r.name for r in config.routes if attaches_credentials(r)]
        if config.gateway_keys or not exposed or not routes:
            return
        where = ", ".join(host or "all interfaces" for host in exposed)
        if self.open_access:
            consequence = "anyone who can reach it can spend the provider credentials of"
        else:
            consequence = "clients not on loopback are refused (403) on"
        logger.warning(
            f"ai_proxy: listening on {where} without gateway_keys: {consequence} routes "
            f"{', '.join(routes)}. Configure gateway_keys (README: Keys and access)."
        )

    def request(self, flow: http.HTTPFlow) -> None:
        if self._checked and flow.id in self._checked:
            self._checked.discard(flow.id)
            return
        if flow.response or flow.error or not flow.live:
            return
        route = self.gateway.route_for(flow)
        if route is not None:
            self._guarded_check(flow, route)

    def check_headers(self, flow: http.HTTPFlow, route: Route) -> None:
        """For a flow whose body streams upstream as it arrives (addon/streamed_uploads.py): decided
        from its headers, before anything is sent; the request hook then leaves it alone."""
        self._checked.add(flow.id)
        self._guarded_check(flow, route)

    def error(self, flow: http.HTTPFlow) -> None:
        self._checked.discard(flow.id)

    def _guarded_check(self, flow: http.HTTPFlow, route: Route) -> None:
        try:
            self._check(flow, route)
        except Exception:
            # Fail closed: a hook that raises would let the flow on to the gateway, which would
            # attach the provider credential to a request nobody admitted.
            logger.exception("ai_proxy: internal error in access control")
            message = "internal error in the AI gateway (access control); the request was not forwarded"
            error = GatewayError(500, message, "gateway_error")
            flow.response = http.Response.make(500, error.body(), {"content-type": "application/json"})

    def _check(self, flow: http.HTTPFlow, route: Route) -> None:
        decision = decide(
            self.gateway.config,
            route,
            flow.request.headers,
            client_is_local=self._client_is_local(flow.client_conn),
            open_access=self.open_access,
        )
        if isinstance(decision, Admission) and decision.key is not None:
            key = decision.key
            hit = admit(self._meters.setdefault(key.name, Meter()), key.limits, self.clock())
            if hit is None:
                flow.metadata[CONSUMER_METADATA] = key.name
            else:
                decision = limit_refusal(key, hit)
        # The gateway key never goes upstream (the route's credential replaces it) nor stays in the flow.
        for name in decision.strip_headers:
            flow.request.headers.pop(name, None)
        if isinstance(decision, Refusal):
            error = decision.error
            logger.info(f"ai_proxy route={route.name} refused the request ({error.status}): {error.message}")
            headers = {"content-type": "application/json", **decision.headers}
            flow.response = http.Response.make(
                error.status, client_error(route, error.status, error.body()), headers
            )

    def _client_is_local(self, client: Any) -> bool:
        if isinstance(client.proxy_mode, _LOCAL_MODES):
            return True
        host = client.peername[0] if client.peername else None
        if host is None:
            return False
        local = self._loopback.get(host)
        if local is None:
            if len(self._loopback) >= MAX_REMEMBERED_PEERS:
                self._loopback.clear()
            local = self._loopback[host] = is_loopback(host)
        return local

    def _count_usage(self, record: dict[str, Any]) -> None:
        """Tokens and cost of a finished call (streams included), from its statistics record."""
        proxy = record["ai"]["proxy"]
        name = proxy["meta"].get("consumer")
        if name is None:
            return
        usage = proxy["usage"]
        meter = self._meters.setdefault(name, Meter())
        count_usage(meter, int(usage.get("total_tokens") or 0), float(usage.get("cost") or 0.0), self.clock())


def _exposed_listen_hosts() -> list[str]:
    """The hosts the proxy's listeners bind beyond loopback ("" is every interface)."""
    hosts = []
    for spec in ctx.options.mode:
        mode = ProxyMode.parse(spec)
        if mode.listen_port() is None:
            continue  # local capture modes bind no socket
        host = mode.listen_host(ctx.options.listen_host)
        if listens_beyond_loopback(host) and host not in hosts:
            hosts.append(host)
    return hosts
