"""Answers what client formats ask that needs no provider call, on routes with an ingress adapter
(``llm_format: anthropic`` on another provider): ``POST <prefix>/v1/messages/count_tokens`` where
the provider cannot count (an estimate, marked by a header; Gemini and Bedrock count themselves, so
there the gateway sends the count upstream like any call) and ``GET <prefix>/v1/models[/{id}]`` in
Anthropic's shape. The decision and the bodies are pure (``transforms.ingress.local_answer``).

Listed in addon/ai_proxy.py after access control and before the gateway, so its answer stands.
"""

from __future__ import annotations

import time

from mitmproxy import http

from addon.dispatch import switch_hooks
from addon.gateway import AIProxy
from transforms.config import GatewayConfig
from transforms.ingress import local_answer

# Paths this addon may answer: anything else is left alone after one substring test.
_MARKERS = ("/v1/messages/count_tokens", "/v1/models")


class IngressEndpoints:
    def __init__(self, gateway: AIProxy) -> None:
        self.gateway = gateway
        gateway.on_routes(self._routes)

    def _routes(self, config: GatewayConfig) -> None:
        """Only routes whose clients speak another format than OpenAI's have anything to answer here."""
        switch_hooks(self, ("request",), on=any(r.llm_format != "openai" for r in config.routes))

    def request(self, flow: http.HTTPFlow) -> None:
        req = flow.request
        if flow.response is not None or req.method not in ("GET", "POST"):
            return
        path = req.path.partition("?")[0]
        if not any(marker in path for marker in _MARKERS):
            return
        route = self.gateway.route_for(flow)
        if route is None or route.llm_format == "openai":
            return
        body = req.get_content(strict=False) or b""
        answer = local_answer(route, req.method, path, body, int(time.time()))
        if answer is not None:
            status, content, headers = answer
            flow.response = http.Response.make(status, content, headers)
