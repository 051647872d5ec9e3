"""Recognises provider traffic no route matches, so that it is accounted for without being changed.

The recognition is pure (``transforms.recognize``); this addon owns its options and registers
``claim`` with the gateway's hook point for unmatched flows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from mitmproxy import ctx, exceptions, http

from addon.flows import inbound_from
from addon.gateway import AIProxy
from transforms.pipeline import Origin, Prepared, prepare_inspected
from transforms.recognize import InspectHost, format_of_host, parse_inspect_hosts, recognize


class Inspector:
    def __init__(self, gateway: AIProxy) -> None:
        self.enabled = True
        self.hosts: tuple[InspectHost, ...] = ()
        gateway.inspectors.append(self)

    def load(self, loader: Any) -> None:
        loader.add_option(
            "ai_proxy_inspect",
            bool,
            True,
            "Account for calls to known LLM provider hosts that no route matches, changing nothing.",
        )
        loader.add_option(
            "ai_proxy_inspect_hosts",
            Sequence[str],
            [],
            "More hosts to inspect, as HOST[:PORT]=FORMAT (FORMAT: openai, azure, anthropic, gemini, "
            "bedrock, cohere, mistral, huggingface, ollama), e.g. localhost:11434=ollama.",
        )

    def configure(self, updated: set[str]) -> None:
        if "ai_proxy_inspect" in updated:
            self.enabled = ctx.options.ai_proxy_inspect
        if "ai_proxy_inspect_hosts" in updated:
            try:
                self.hosts = parse_inspect_hosts(ctx.options.ai_proxy_inspect_hosts)
            except ValueError as e:
                raise exceptions.OptionsError(str(e)) from None

    def claim(self, flow: http.HTTPFlow) -> Prepared | None:
        """The flow's accounting, if it calls a known provider API; None leaves it to the gateway."""
        if not self.enabled:
            return None
        req = flow.request
        host = req.pretty_host  # the name the client asked for (transparent mode: not the address)
        found = recognize(host, req.port, req.method, req.path.partition("?")[0], self.hosts)
        if found is None:
            return None
        origin = Origin(req.scheme, host, req.port)
        return prepare_inspected(found, origin, inbound_from(flow, host), int(time.time()))

    def passes(self, flow: http.HTTPFlow) -> bool:
        """A known provider's other endpoints (e.g. GET /v1/models) pass even in reverse mode."""
        req = flow.request
        return self.enabled and format_of_host(req.pretty_host, req.port, self.hosts) is not None
