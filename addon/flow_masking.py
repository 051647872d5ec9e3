"""Credentials out of what mitmproxy keeps: the flow in mitmweb, the console and ``-w`` files.

Once a request has gone upstream (``responseheaders``; ``error`` for flows that failed), every
credential the gateway attached is replaced in the stored flow by a marker naming the route
(``x-api-key: [ai-proxy: anthropic-chat credential]``); the provider received the real value.
With ``ai_proxy_mask_client_credentials`` the client's own credentials are masked too, on flows
the gateway attached nothing to. Replaying a masked flow (``replay.client``) puts the route's
credential back (re-signed, or with a fresh GCP token) or answers with a clear error: a marker is
never sent upstream. The decisions are in ``transforms/masking.py``; this class only edits flows.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import Any

from mitmproxy import ctx, http

from addon.flows import ai_metadata, set_headers
from addon.gateway import AIProxy
from transforms.auth import apply_auth
from transforms.errors import GatewayError
from transforms.masking import (
    MARKER_PREFIX,
    CredentialMask,
    client_credentials,
    has_marker,
    mask_body,
    mask_query,
    replay_credentials,
    route_marker,
    set_body_fields,
)
from transforms.registry import spec_for
from transforms.types import Upstream

logger = logging.getLogger("ai_proxy")


class FlowMasking:
    def __init__(self, gateway: AIProxy) -> None:
        self.gateway = gateway
        self._replays: dict[str, CredentialMask] = {}  # replayed flows whose credentials were put back
        # Flows not masked yet: at shutdown mitmproxy's Save addon writes the ones still in flight.
        self._in_flight: weakref.WeakValueDictionary[str, http.HTTPFlow] = weakref.WeakValueDictionary()

    def load(self, loader: Any) -> None:
        loader.add_option(
            "ai_proxy_mask_client_credentials",
            bool,
            False,
            "Also mask the credentials clients send themselves (API key headers, key= parameters, "
            "SigV4) in stored flows the gateway attached no credential to, such as inspected traffic.",
        )

    # --- masking once the request has gone upstream ----------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self._mask(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._mask(flow)

    def done(self) -> None:
        # Script addons run before Save in mitmproxy's chain: its `done` writes these masked.
        for flow in list(self._in_flight.values()):
            self._mask(flow)

    def _mask(self, flow: http.HTTPFlow) -> None:
        self._in_flight.pop(flow.id, None)
        replayed = self._replays.pop(flow.id, None)
        if replayed is not None:
            apply_mask(flow.request, replayed)
            return
        prep = self.gateway.prepared(flow)
        if prep is not None:
            ai_metadata(flow)["masked"] = prep.mask.as_metadata(prep.route.name)
            if prep.mask:
                apply_mask(flow.request, prep.mask)
                return
        if ctx.options.ai_proxy_mask_client_credentials:
            req = flow.request
            mask = client_credentials(req.headers.keys(), req.query.keys())
            if mask:
                apply_mask(req, mask)

    # --- replay ----------------------------------------------------------------------------------

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return
        self._in_flight[flow.id] = flow
        if flow.is_replay != "request":
            return
        masked = flow.metadata.get("ai_proxy", {}).get("masked")
        try:
            if masked and masked.get("route"):
                await self._reattach(flow, masked)
            if _carries_marker(flow.request):
                raise _cannot("its credentials were masked when it was stored and no route can put them back")
        except GatewayError as e:
            logger.info(f"ai_proxy: replay refused: {e.message}")
            flow.response = http.Response.make(e.status, e.body(), {"content-type": "application/json"})
        except Exception:  # never let a half-restored request (with a marker) go upstream
            logger.exception("ai_proxy: internal error while putting a replayed flow's credentials back")
            error = _cannot("internal error while putting the route's credential back")
            flow.response = http.Response.make(500, error.body(), {"content-type": "application/json"})

    async def _reattach(self, flow: http.HTTPFlow, masked: dict[str, Any]) -> None:
        if not (masked.get("headers") or masked.get("query") or masked.get("body")):
            return  # the gateway attached nothing (inspected traffic): the flow goes out as stored
        name = masked["route"]
        route = next((r for r in self.gateway.config.routes if r.name == name), None)
        if route is None:
            raise _cannot(f"route {name} no longer exists, so its credential is unknown")
        spec = spec_for(route)
        signs = spec is not None and spec.sign is not None
        attached = apply_auth(route.auth, {}, {}, None, await self.gateway.cloud_credentials(route))
        fresh = replay_credentials(name, masked, attached, signs)
        if isinstance(fresh, str):
            raise _cannot(fresh)
        headers, params, fields = fresh
        req = flow.request
        for header, value in headers.items():
            req.headers[header] = value
        query = [(k, params.get(k, v)) for k, v in req.query.items(multi=True)]
        if params:
            req.query = query
        if fields:
            try:
                req.content = set_body_fields(req.raw_content or b"", fields)
            except ValueError as e:
                raise _cannot(str(e)) from None
        if signs:
            assert spec is not None and spec.sign is not None
            path = req.path.partition("?")[0]
            upstream = Upstream(
                req.method, req.scheme, req.host, req.port, path, query, {}, (), req.raw_content or b""
            )
            spec.sign(upstream, route.auth, self.gateway.env, int(time.time()), route.model.options)
            for header, value in upstream.set_headers.items():
                req.headers[header] = value
            req.data.path = upstream.target.encode()  # exactly what was signed
        self._replays[flow.id] = CredentialMask(
            route_marker(name),
            tuple(masked.get("headers") or ()),
            tuple(masked.get("query") or ()),
            tuple(masked.get("body") or ()),
        )
        logger.info(f"ai_proxy: replaying a flow of route {name} with the route's credential put back")


def _cannot(reason: str) -> GatewayError:
    return GatewayError(400, f"cannot replay this flow: {reason}", "masked_credentials")


def apply_mask(req: http.Request, mask: CredentialMask) -> None:
    """Replace the masked headers, query parameters and body fields by the mask's marker."""
    if mask.headers:
        present = {name.lower() for name, _value in req.headers.fields}
        set_headers(req, {name: mask.marker for name in mask.headers if name.lower().encode() in present})
    if mask.query:
        query = list(req.query.items(multi=True))
        if any(k in mask.query for k, _ in query):
            req.query = mask_query(query, mask)
    if mask.body and req.raw_content:
        masked = mask_body(req.raw_content, mask)
        if masked is not req.raw_content:
            req.content = masked


def _carries_marker(req: http.Request) -> bool:
    if any(has_marker(v) for v in req.headers.values()) or has_marker(req.path):
        return True
    return bool(req.raw_content) and MARKER_PREFIX.encode() in req.raw_content
