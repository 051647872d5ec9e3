"""The AI plugins of a route: prompt template, decorator and guard (pure, transforms/plugins/),
and the request and response transformers, which ask an LLM of their own.

This addon registers itself as the gateway's ``plugins`` hook point; the gateway calls it only for
routes that configure a plugin. A transformer's call goes through the same provider transforms as
any route (``prepare`` / ``translate_response`` on its ``llm`` block, a route named
``<route>:request_transformer``), is sent from a worker thread with the standard library's HTTP
client (the event loop never waits on it), and gets a statistics record of its own.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection, HTTPException, HTTPSConnection

import orjson
from mitmproxy import http

from addon.gateway import AIProxy
from addon.stats import (
    CONSUMER_METADATA,
    MAX_PAYLOAD,
    ORIGINAL_REQUEST_METADATA,
    PLUGINS_METADATA,
    CallFacts,
    build_record,
)
from transforms.config import RequestTransformer, Route
from transforms.errors import GatewayError, bad_request
from transforms.pipeline import prepare, translate_response
from transforms.plugins import REQUEST_TRANSFORMER, RESPONSE_TRANSFORMER, apply_request_plugins
from transforms.plugins.transformer import extracted, failed_call, introspection_body, response_instructions
from transforms.redact import redact_text
from transforms.types import Inbound, Upstream

logger = logging.getLogger("ai_proxy")

_UNVERIFIED = ssl._create_unverified_context()  # https_verify: false (a deliberate operator choice)
_VERIFIED = ssl.create_default_context()
# Transformer calls wait on the network for up to http_timeout each: their own threads, so that
# they neither queue behind nor hold up asyncio's small default pool (GCP token minting uses it).
MAX_CONCURRENT_CALLS = 64


def send(upstream: Upstream, timeout: float, verify: bool) -> tuple[int, bytes]:
    """One blocking HTTP exchange (run in a worker thread). No proxy from the environment and no
    redirects: the request goes exactly where the route says."""
    if upstream.scheme == "https":
        conn: HTTPConnection = HTTPSConnection(
            upstream.host, upstream.port, timeout=timeout, context=_VERIFIED if verify else _UNVERIFIED
        )
    else:
        conn = HTTPConnection(upstream.host, upstream.port, timeout=timeout)
    try:
        headers = {**upstream.set_headers, "accept-encoding": "identity"}
        conn.request(upstream.method, upstream.target, body=upstream.body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class PromptPluginsAddon:
    """The gateway's ``plugins`` hook point. Defines no per-flow mitmproxy hook: the gateway awaits
    it only on routes that configure a plugin."""

    def __init__(self, gateway: AIProxy) -> None:
        self.gateway = gateway
        self._pool: ThreadPoolExecutor | None = None
        gateway.plugins = self

    def done(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _threads(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(MAX_CONCURRENT_CALLS, thread_name_prefix="ai-proxy-transformer")
        return self._pool

    async def before_prepare(self, flow: http.HTTPFlow, route: Route, inbound: Inbound) -> Inbound:
        template = route.prompt_template
        if template is not None and template.log_original_request:
            original = inbound.body[:MAX_PAYLOAD].decode("utf-8", "replace")
            flow.metadata[ORIGINAL_REQUEST_METADATA] = original
        body, acted = apply_request_plugins(route, inbound.body)
        block = route.request_transformer
        if block is not None:
            body = (await self._ask(flow, block, body)).encode()
            acted.append(REQUEST_TRANSFORMER)
        if route.response_transformer is not None and _asks_stream(body):
            raise bad_request("response streaming is not enabled for this LLM", "streaming_disabled")
        flow.metadata[PLUGINS_METADATA] = acted
        if body is inbound.body:
            return inbound
        return Inbound(inbound.method, inbound.host, inbound.path, inbound.query, inbound.headers, body)

    async def after_answer(self, flow: http.HTTPFlow, route: Route) -> None:
        block = route.response_transformer
        resp = flow.response
        assert block is not None and resp is not None
        text = await self._ask(flow, block, resp.get_content(strict=False) or b"")
        if block.parse_llm_response_json_instructions:
            status, headers, body = response_instructions(text)
            resp.status_code = status
            for name, value in headers.items():
                resp.headers[name] = value
        else:
            body = text.encode()
        resp.headers.pop("content-encoding", None)
        resp.content = body
        flow.metadata.setdefault(PLUGINS_METADATA, []).append(RESPONSE_TRANSFORMER)

    async def _ask(self, flow: http.HTTPFlow, block: RequestTransformer, content: bytes) -> str:
        """The transformer's LLM answer to ``content``, as the text that replaces it."""
        gateway = self.gateway
        route = block.llm_route
        credentials = await gateway.cloud_credentials(route)
        question = Inbound("POST", "", "/", [], {}, introspection_body(block.prompt, content))
        prep = prepare(
            route,
            question,
            request_id=gateway._next_id(),
            now=int(time.time()),
            env=gateway.env,
            credentials=credentials,
        )
        timeout = block.http_timeout / 1000
        sent = time.time()
        status, raw, error = 0, b"", None
        try:
            call = asyncio.get_running_loop().run_in_executor(
                self._threads(), send, prep.upstream, timeout, block.https_verify
            )
            status, raw = await asyncio.wait_for(call, timeout)
        except TimeoutError:
            error = "request to ai service failed: timeout"
        except (OSError, HTTPException) as e:
            error = f"request to ai service failed: {type(e).__name__}: {e}"
        facts = CallFacts(
            route=route,
            request_model=prep.request_model,
            response_model=None,
            usage=None,
            llm_latency_ms=int((time.time() - sent) * 1000),
            stream=False,
            status=502,
            request_payload=prep.upstream.body,
            secrets=prep.secrets,
            consumer=flow.metadata.get(CONSUMER_METADATA),
        )
        try:
            if error is not None:
                raise failed_call(redact_text(error, prep.secrets))
            try:
                answer = translate_response(prep, status, raw)
            except GatewayError as e:  # an answer the provider transform cannot read
                facts.status, facts.response_payload = e.status, raw
                raise failed_call(e.message) from None
            facts.status, facts.response_payload = answer.status, answer.body
            facts.usage, facts.response_model = answer.usage, answer.response_model
            return extracted(block, answer.status, answer.body)
        except GatewayError as e:
            facts.error = e.message
            raise
        finally:
            if route.logging.log_statistics:
                self.gateway.stats.emit(build_record(facts))


def _asks_stream(body: bytes) -> bool:
    if b'"stream"' not in body:
        return False
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(parsed, dict) and parsed.get("stream") is True
