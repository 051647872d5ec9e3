"""Answers ``GET <prefix>/v1/models[/{id}]`` from the gateway's routes (transforms/models_endpoint.py).

Listed in addon/ai_proxy.py before the gateway, so its answer stands and the gateway's request hook
sees a flow that already has a response.
"""

from __future__ import annotations

import time

from mitmproxy import http

from addon.gateway import AIProxy
from transforms.config import GatewayConfig
from transforms.models_endpoint import MODELS, models_answer


class ModelsEndpoint:
    def __init__(self, gateway: AIProxy) -> None:
        self.gateway = gateway
        self._config: GatewayConfig | None = None
        self._loaded_at = 0  # when the gateway's current routes were loaded: the models' "created"

    def request(self, flow: http.HTTPFlow) -> None:
        req = flow.request
        # Cheap refusals first: this hook runs for every flow.
        if req.method != "GET" or flow.response is not None or MODELS not in req.path:
            return
        config = self.gateway.config
        if config is not self._config:
            self._config, self._loaded_at = config, int(time.time())
        host = req.pretty_host if config.matches_hosts else ""
        answer = models_answer(config, req.method, host, req.path.partition("?")[0], self._loaded_at)
        if answer is not None:
            status, body = answer
            flow.response = http.Response.make(status, body, {"content-type": "application/json"})
