"""The mitmproxy addon: matches flows to routes and hands them to the pure transforms.

Hooks stay thin: they adapt a flow to plain data (``Inbound``), call ``transforms.pipeline`` and
write the result back. Every hook of a matched flow fails closed: an unexpected error answers the
client with a 500 instead of letting an untranslated request (with its credential) go upstream.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import traverse
from mitmproxy.net.http import url
from mitmproxy.proxy.mode_specs import ReverseMode

from addon.config_loader import ConfigError, load_config
from addon.gcp_auth import GcpTokenSource
from addon.stats import (
    CONSUMER_METADATA,
    MAX_PAYLOAD,
    ORIGINAL_REQUEST_METADATA,
    PLUGINS_METADATA,
    CallFacts,
    StatsSink,
    build_record,
)
from transforms.config import GatewayConfig, Route
from transforms.errors import GatewayError, error_body
from transforms.ingress import IngressStream, client_error
from transforms.limits import header_value
from transforms.masking import CLIENT_REQUEST_BODY_LIMIT, client_request
from transforms.native import decoded, usage_reader
from transforms.pipeline import Answer, Prepared, prepare, translate_response
from transforms.redact import redact_text
from transforms.stream import ObservedStream, OpenAIStream
from transforms.transcript import assembled
from transforms.types import Inbound, StreamTranslator, Upstream, Usage
from transforms.usage import estimate_usage

logger = logging.getLogger("ai_proxy")

UNMATCHED_CHOICES = ("auto", "pass", "reject")
CONFIG_POLL_SECONDS = 1.0
OVERHEAD_HEADER = "x-ai-proxy-overhead-ms"
MODEL_HEADER = "x-ai-proxy-model"
OPENAI_FORMATS = frozenset({"openai", "azure", "mistral", "llama2"})
# Upstream content types that are streams even when the request did not say so (passthrough routes).
STREAM_TYPES = ("text/event-stream", "application/vnd.amazon.eventstream", "application/x-ndjson")


class UnmatchedInspector(Protocol):
    """What the gateway asks about flows no configured route matches (addon/inspection.py)."""

    def claim(self, flow: http.HTTPFlow) -> Prepared | None:
        """The flow's accounting (``inspected`` set) if it calls a known LLM API; the flow is not changed."""
        ...

    def passes(self, flow: http.HTTPFlow) -> bool:
        """True when the flow goes to a known provider: passed on even where unmatched flows are rejected."""
        ...


class PromptPlugins(Protocol):
    """The AI plugins of routes that configure them (addon/prompt_plugins.py)."""

    async def before_prepare(self, flow: http.HTTPFlow, route: Route, inbound: Inbound) -> Inbound:
        """The request as the provider call must see it (template, decorator, guard, request
        transformer); raises GatewayError to answer the client instead."""
        ...

    async def after_answer(self, flow: http.HTTPFlow, route: Route) -> None:
        """Rewrites ``flow.response`` (the translated answer) with the response transformer."""
        ...


@dataclass(slots=True)
class FlowState:
    """Per-flow working state; lives from the request hook to the response or error hook."""

    route: Route
    prep: Prepared | None = None
    sent_at: float = 0.0  # when the request left for the upstream
    overhead: float = 0.0  # seconds spent in our hooks
    translator: StreamTranslator | None = None
    streamed: list[bytes] = field(default_factory=list)  # client-bound bytes, kept for payload logs
    streamed_size: int = 0  # kept only up to the payload log's MAX_PAYLOAD
    first_token_at: float | None = None
    broken: bool = False  # a hook failed after the request went out: answer 500 when the body is in
    error: str | None = None  # inspected traffic whose answer could not be read (recorded, never failed)
    # The provider's own answer before translation, for addons that keep it (cassettes): headers as
    # mitmproxy's immutable field tuple, body only for answers read whole.
    upstream_status: int = 0
    upstream_headers: tuple[tuple[bytes, bytes], ...] = ()
    upstream_body: bytes | None = None
    replayed: bool = False  # answered from a cassette: the statistics record says so


class AIProxy:
    def __init__(self) -> None:
        self.config = GatewayConfig()
        self._match_hosts = False
        self._find = self.config.finder  # self.config.find, kept with the config it belongs to
        self.stats = StatsSink()
        self._live: dict[str, FlowState] = {}
        self._config_path: str | None = None
        self._config_mtime: float | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(6)  # ids unique across restarts, cheap per request
        self.env: dict[str, str] = dict(os.environ)  # read once: AWS region/keys, GCP_SERVICE_ACCOUNT
        self._noted: set[tuple[str, str]] = set()  # (route, model rule) already told in the event log
        self.gcp_tokens = GcpTokenSource()
        # Hook point: asked in order about a flow no configured route matches; the first to claim
        # it has it accounted like a native route, the flow unchanged. addon/inspection.py registers here.
        self.inspectors: list[UnmatchedInspector] = []
        # Hook point: the AI plugins of routes that configure some (addon/prompt_plugins.py registers).
        self.plugins: PromptPlugins | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def load(self, loader: Any) -> None:
        loader.add_option(
            "ai_proxy_config",
            str | None,
            None,
            "Routes file (YAML or JSON). Unset: no routes (traffic is only inspected).",
        )
        loader.add_option(
            "ai_proxy_stats_file",
            str | None,
            None,
            "Append one JSON statistics record per LLM call to this file (JSON Lines).",
        )
        loader.add_option(
            "ai_proxy_unmatched",
            str,
            "auto",
            "Requests no route matches: pass them on, reject them with a 404, or auto "
            "(reject in reverse mode, where there is nowhere to pass them, unless the destination "
            "is a recognised LLM provider; pass otherwise).",
            choices=UNMATCHED_CHOICES,
        )

    def configure(self, updated: set[str]) -> None:
        if "ai_proxy_unmatched" in updated and ctx.options.ai_proxy_unmatched not in UNMATCHED_CHOICES:
            raise exceptions.OptionsError(
                f"ai_proxy_unmatched must be one of {', '.join(UNMATCHED_CHOICES)}, "
                f"not {ctx.options.ai_proxy_unmatched!r}"
            )
        if "ai_proxy_stats_file" in updated:
            try:
                self.stats.open(ctx.options.ai_proxy_stats_file)
            except OSError as e:
                raise exceptions.OptionsError(f"cannot open ai_proxy_stats_file: {e}") from None
        self.stats.add_log_hooks = _add_log_hooks()  # scripts (re)loaded since
        if "ai_proxy_config" in updated:
            self.env = dict(os.environ)
            self._load_routes()
        if "connection_strategy" in ctx.options and ctx.options.connection_strategy != "lazy":
            # Connect only once a route has chosen the destination: a gateway's reverse target is a
            # placeholder, and an intercepted api.openai.com may be answered by another provider.
            logger.info("ai_proxy: setting connection_strategy=lazy (routes choose the upstream)")
            ctx.options.update(connection_strategy="lazy")

    def running(self) -> None:
        self.stats.add_log_hooks = _add_log_hooks()
        if self._watcher is None and self._config_path:
            self._watcher = asyncio.get_running_loop().create_task(self._watch_config())

    def done(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        self.stats.close()
        self.gcp_tokens.clear()

    # --- routes ----------------------------------------------------------------------------------

    def _load_routes(self) -> None:
        path = ctx.options.ai_proxy_config
        self._config_path = path or None
        if not path:
            # No routes file, no routes: nothing is answered locally or rerouted (the offline demo
            # is asked for explicitly: `make run` names addon/demo_routes.yaml).
            self.config = GatewayConfig()
            self._match_hosts = False
            logger.info("ai_proxy: no routes (ai_proxy_config is not set)")
            return
        try:
            self._config_mtime = Path(path).stat().st_mtime
            config = load_config(path, dict(os.environ))
        except (ConfigError, OSError) as e:
            kept = f"keeping the previous {len(self.config.routes)} route(s)"
            logger.warning(f"ai_proxy: cannot load {path}, {kept}:\n{e}")
            return
        self.config = config
        self._match_hosts = config.matches_hosts
        self._find = config.finder
        self._noted.clear()
        names = ", ".join(r.name for r in config.routes) or "none"
        logger.info(f"ai_proxy: loaded {len(config.routes)} route(s) from {path}: {names}")

    async def _watch_config(self) -> None:
        while True:
            await asyncio.sleep(CONFIG_POLL_SECONDS)
            path = self._config_path
            if not path:
                continue
            try:
                mtime = Path(path).stat().st_mtime
            except OSError:
                continue
            if mtime != self._config_mtime:
                self._load_routes()

    def route_for(self, flow: http.HTTPFlow) -> Route | None:
        """The route a flow matches; None for traffic no route claims. Other addons ask here."""
        host = flow.request.pretty_host if self._match_hosts else ""
        return self._find(host, flow.request.path.partition("?")[0])

    # --- hooks -----------------------------------------------------------------------------------

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        if flow.is_replay == "request" and "masked" in flow.metadata.get("ai_proxy", {}):
            return  # a provider request the gateway made, replayed as stored (FlowMasking re-attached)
        started = time.perf_counter()
        # pretty_host costs more than the rest of matching: only routes that match on host need it.
        host = flow.request.pretty_host if self._match_hosts else ""
        route = self._find(host, flow.request.path.partition("?")[0])
        if route is None:
            if ctx.options.ai_proxy_unmatched != "reject" and self._claim_unmatched(flow):
                return
            if self._reject_unmatched(flow):
                path = flow.request.path.split("?", 1)[0]
                _answer_error(
                    flow, GatewayError(404, f"no route for {flow.request.method} {path}", "unknown_route")
                )
            return
        state = FlowState(route)
        try:
            credentials = await self.cloud_credentials(route)
            inbound = inbound_from(flow, host)
            sent = inbound
            if route.plugins:
                asked = time.perf_counter()
                sent = await self._prompt_plugins().before_prepare(flow, route, inbound)
                if route.request_transformer is not None:  # its LLM call is recorded apart, not overhead
                    started += time.perf_counter() - asked
            prep = prepare(
                route,
                sent,
                request_id=self._next_id(),
                now=int(time.time()),
                env=self.env,
                credentials=credentials,
            )
            state.prep = prep
            if not prep.passthrough or prep.mask:  # the provider sees another request than the client sent
                ai_metadata(flow)["client_request"] = client_request(inbound)
            if prep.notes:
                self._note(route, prep.notes)
            apply_upstream(flow.request, prep.upstream)
            self._live[flow.id] = state
        except GatewayError as e:
            logger.info(f"ai_proxy route={route.name} rejected the request ({e.status}): {e.message}")
            _answer_error(flow, e, route)
        except Exception:
            self._fail_closed(flow, route, "request")
        finally:
            state.overhead += time.perf_counter() - started
            state.sent_at = time.time()

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        state = self._live.get(flow.id)
        if state is None or state.prep is None or flow.response is None:
            if flow.response is not None and not flow.response.stream and _is_stream(flow.response):
                flow.response.stream = True  # never buffer someone's event stream, even unmatched
            return
        state.upstream_status = flow.response.status_code
        state.upstream_headers = flow.response.headers.fields
        if state.prep.inspected:
            self._observe_inspected(flow, state)
            return
        started = time.perf_counter()
        try:
            # An error answer to a stream request is read whole and translated as JSON.
            streaming = state.prep.stream or (state.prep.passthrough and _is_stream(flow.response))
            if streaming and 200 <= flow.response.status_code < 300:
                self._start_stream(flow, state)
        except Exception:
            # Replacing the response here would be overwritten by the upstream body; fail in `response`.
            logger.exception(f"ai_proxy route={state.route.name}: internal error in the responseheaders hook")
            state.broken = True
        finally:
            state.overhead += time.perf_counter() - started

    def response(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        state = self._live.pop(flow.id, None)
        if state is None or state.prep is None or flow.response is None:
            return
        if state.prep.inspected:
            self._account_inspected(flow, state)
            return
        started = time.perf_counter()
        if state.broken:
            self._fail_closed(flow, state.route, "responseheaders")
            return
        try:
            if state.translator is not None:
                self._finish_stream(flow, state)
                return
            answer = self._translate_whole(flow, state, started)
            if state.route.response_transformer is not None and 200 <= answer.status < 300:
                return self._transform_answer(flow, state, answer)  # mitmproxy awaits it
            self._record_answer(flow, state, answer)
        except Exception:
            self._fail_closed(flow, state.route, "response")
        return None

    async def _transform_answer(self, flow: http.HTTPFlow, state: FlowState, answer: Answer) -> None:
        """Only routes with a response transformer pay for an awaited response hook."""
        try:
            await self._prompt_plugins().after_answer(flow, state.route)
        except GatewayError as e:
            state.error = f"response_transformer: {e.message}"  # the provider call is recorded still
            _answer_error(flow, e, state.route)
        except Exception:
            self._fail_closed(flow, state.route, "response")
        self._record_answer(flow, state, answer)

    def _prompt_plugins(self) -> PromptPlugins:
        if self.plugins is None:  # a route's guard must never be skipped silently: fail closed
            raise RuntimeError("a route configures AI plugins but no PromptPlugins addon is registered")
        return self.plugins

    def error(self, flow: http.HTTPFlow) -> None:
        state = self._live.pop(flow.id, None)
        if state is None or flow.error is None:
            return
        logger.warning(f"ai_proxy route={state.route.name}: upstream failed: {flow.error.msg}")
        if state.prep is not None and state.prep.inspected:
            if state.translator is not None and flow.response is not None:
                self._account_inspected(flow, state)  # a stream cut mid-way: what was sent
            return
        if state.translator is not None and flow.response is not None:
            # A stream cut mid-way: the client sees an incomplete response; account for what was sent.
            self._finish_stream(flow, state)

    # --- helpers ---------------------------------------------------------------------------------

    def _note(self, route: Route, notes: Mapping[str, str]) -> None:
        """What a model rule changed in a request, told once per route and rule (see model_rules)."""
        for rule, text in notes.items():
            if (route.name, rule) not in self._noted:
                self._noted.add((route.name, rule))
                logger.info(f"ai_proxy route={route.name}: {text} (said once per route)")

    def _next_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):x}"

    def prepared(self, flow: http.HTTPFlow) -> Prepared | None:
        """The gateway's plan for a flow in flight (FlowMasking reads what was attached)."""
        state = self._live.get(flow.id)
        return state.prep if state is not None else None

    async def cloud_credentials(self, route: Route) -> dict[str, str]:
        """Tokens that must be obtained over the network (GCP service accounts), off the event loop."""
        if not route.auth.gcp_use_service_account:
            return {}
        key = route.auth.gcp_service_account_json or self.env.get("GCP_SERVICE_ACCOUNT")
        return {"gcp_access_token": await self.gcp_tokens.token(key)}

    def _claim_unmatched(self, flow: http.HTTPFlow) -> bool:
        for inspector in self.inspectors:
            try:
                prep = inspector.claim(flow)
            except Exception:  # inspection must never cost a client its call: pass the flow on
                logger.exception("ai_proxy: internal error while recognising an unmatched flow")
                continue
            if prep is not None:
                self._live[flow.id] = FlowState(prep.route, prep, sent_at=time.time())
                return True
        return False

    # --- recognised traffic: read on the side, never changed, never failed -------------------------

    def _observe_inspected(self, flow: http.HTTPFlow, state: FlowState) -> None:
        prep, resp = state.prep, flow.response
        assert prep is not None and resp is not None
        if not (prep.stream or _is_stream(resp)) or not 200 <= resp.status_code < 300:
            if not resp.stream and _is_stream(resp):
                resp.stream = True
            return
        try:
            translator = decoded(stream_translator(prep), resp.headers.get("content-encoding", ""))
        except Exception as e:
            state.error = f"cannot read the provider's stream: {e}"
            resp.stream = True  # passed on unread; recorded without usage
            return
        state.translator = translator

        def observe(data: bytes) -> list[bytes] | bytes:
            if state.first_token_at is None and data:
                state.first_token_at = time.time()
            if state.error is None:
                try:
                    translator.feed(data) if data else translator.finish()
                except Exception as e:
                    state.error = f"cannot read the provider's stream: {type(e).__name__}"
            return data  # the client gets the provider's bytes, as they arrive

        resp.stream = observe

    def _account_inspected(self, flow: http.HTTPFlow, state: FlowState) -> None:
        prep, resp = state.prep, flow.response
        assert prep is not None and resp is not None
        try:
            if state.translator is not None:
                usage = state.translator.usage
                model = state.translator.response_model
                state.error = state.error or getattr(state.translator, "error", None)
                transcript = assembled(state.translator, usage)
                if transcript is not None:  # the view shows it: mitmproxy keeps no streamed body
                    ai_metadata(flow)["assembled"] = transcript
            elif state.error is not None:
                usage, model = None, None
            else:
                headers = {k.lower(): v for k, v in resp.headers.items()}
                raw = resp.get_content(strict=False) or b""
                state.upstream_body = raw
                answer = translate_response(prep, resp.status_code, raw, headers)
                usage, model = answer.usage, answer.response_model
                state.error = state.error or answer.error
        except Exception as e:
            usage, model = None, None
            state.error = f"cannot read the provider's answer: {type(e).__name__}"
        self._record(flow, state, usage, model, resp.status_code, None)

    def _reject_unmatched(self, flow: http.HTTPFlow) -> bool:
        policy = ctx.options.ai_proxy_unmatched
        if policy == "auto":
            reverse = isinstance(flow.client_conn.proxy_mode, ReverseMode)
            return reverse and not any(inspector.passes(flow) for inspector in self.inspectors)
        return policy == "reject"

    def _translate_whole(self, flow: http.HTTPFlow, state: FlowState, started: float) -> Answer:
        prep = state.prep
        assert prep is not None and flow.response is not None
        raw = flow.response.get_content(strict=False) or b""
        state.upstream_body = raw
        if not prep.passthrough:  # the client gets a translation: keep what the provider said
            ai_metadata(flow)["provider_response"] = {
                "status": flow.response.status_code,
                "content_type": flow.response.headers.get("content-type", ""),
                "body": redact_text(raw[:CLIENT_REQUEST_BODY_LIMIT].decode("utf-8", "replace"), prep.secrets),
                "body_size": len(raw),
            }
        try:
            answer = translate_response(prep, flow.response.status_code, raw)
        except GatewayError as e:
            logger.warning(f"ai_proxy route={state.route.name}: {e.message}")
            answer = Answer(e.status, client_error(state.route, e.status, e.body()), None, None, False)
        resp = flow.response
        changes: dict[str, str | None] = {}
        if not prep.passthrough:
            resp.status_code = answer.status
            changes["content-encoding"] = None
            changes["content-type"] = "application/json"
            resp.raw_content = answer.body
            if "transfer-encoding" not in resp.headers:  # as Message.set_content: chunked has no length
                changes["content-length"] = str(len(answer.body))
        model = answer.response_model or prep.request_model
        if state.route.model_name_header and 200 <= answer.status < 300:
            changes[MODEL_HEADER] = header_value(f"{state.route.provider}/{model}")
        state.overhead += time.perf_counter() - started
        changes[OVERHEAD_HEADER] = f"{state.overhead * 1000:.3f}"
        set_headers(resp, changes)
        return answer

    def _record_answer(self, flow: http.HTTPFlow, state: FlowState, answer: Answer) -> None:
        self._record(flow, state, answer.usage, answer.response_model, answer.status, answer.body)

    def _start_stream(self, flow: http.HTTPFlow, state: FlowState) -> None:
        prep = state.prep
        assert prep is not None and flow.response is not None
        translator = stream_translator(prep)
        state.translator = translator
        changes: dict[str, str | None] = {"content-length": None}
        if not prep.passthrough:
            changes["content-type"] = "text/event-stream"
        if flow.request.http_version.startswith("HTTP/1"):
            changes["transfer-encoding"] = "chunked"
        if state.route.model_name_header:
            changes[MODEL_HEADER] = header_value(f"{state.route.provider}/{prep.request_model}")
        changes[OVERHEAD_HEADER] = f"{state.overhead * 1000:.3f}"
        set_headers(flow.response, changes)
        keep_payload = state.route.logging.log_payloads
        route_name = state.route.name

        def on_chunk(data: bytes) -> list[bytes]:
            try:
                out = translator.feed(data) if data else translator.finish()
            except Exception:
                logger.exception(f"ai_proxy route={route_name}: stream translation failed")
                out = _stream_error_frames(prep, "the gateway failed to translate the upstream stream")
                translator.feed = lambda _data: []  # type: ignore[method-assign]
                translator.finish = lambda: []  # type: ignore[method-assign]
            if out and state.first_token_at is None:
                state.first_token_at = time.time()
            if len(out) > 1:
                # One write to the client per network chunk: mitmproxy sends every item of the list
                # as its own HTTP message event and socket write, which cost more than translating.
                out = [b"".join(out)]
            if keep_payload and state.streamed_size < MAX_PAYLOAD:
                state.streamed.extend(out)
                state.streamed_size += sum(map(len, out))
            return out

        flow.response.stream = on_chunk

    def _finish_stream(self, flow: http.HTTPFlow, state: FlowState) -> None:
        translator = state.translator
        assert translator is not None and state.prep is not None and flow.response is not None
        usage = translator.usage
        if usage is None:
            usage = estimate_usage(state.prep.prompt_text, translator.text_chars)
        body = b"".join(state.streamed) if state.streamed else None
        transcript = assembled(translator, usage)
        if transcript is not None:  # mitmproxy keeps no streamed body by default: the view shows this
            ai_metadata(flow)["assembled"] = transcript
        self._record(
            flow, state, usage, translator.response_model, flow.response.status_code, body, translator.error
        )

    def _record(
        self,
        flow: http.HTTPFlow,
        state: FlowState,
        usage: Usage | None,
        response_model: str | None,
        status: int,
        response_body: bytes | None,
        error: str | None = None,
    ) -> None:
        route, prep = state.route, state.prep
        if prep is None or not prep.metered or not route.logging.log_statistics:
            return
        resp = flow.response
        latency = int(max(0.0, (resp.timestamp_start - state.sent_at)) * 1000) if resp else 0
        ttft = None
        if state.first_token_at is not None:
            ttft = int(max(0.0, state.first_token_at - state.sent_at) * 1000)
        facts = CallFacts(
            route=route,
            request_model=prep.request_model,
            response_model=response_model,
            usage=usage,
            llm_latency_ms=latency,
            stream=state.translator is not None,
            status=status,
            time_to_first_token_ms=ttft,
            request_payload=prep.upstream.body,
            response_payload=response_body,
            secrets=prep.secrets,
            consumer=flow.metadata.get(CONSUMER_METADATA),
            error="; ".join(e for e in (prep.error, state.error, error) if e) or None,
            replayed=state.replayed,
            plugins=tuple(flow.metadata.get(PLUGINS_METADATA, ())),
            original_request=flow.metadata.get(ORIGINAL_REQUEST_METADATA),
        )
        record = build_record(facts)
        ai_metadata(flow).update(record)
        self.stats.emit(record)

    # --- hook points for other addons (cassettes) --------------------------------------------------

    def flow_state(self, flow: http.HTTPFlow) -> FlowState | None:
        """The gateway's state of a flow it prepared, between its request and response hooks."""
        return self._live.get(flow.id)

    def answer_locally(self, flow: http.HTTPFlow, status: int, headers: dict[str, str], body: bytes) -> None:
        """Answer a prepared flow without going upstream and without translating the answer (it is
        already in the client's format); no statistics record, as for a request the gateway refuses."""
        self._live.pop(flow.id, None)
        flow.response = http.Response.make(status, body, headers)

    def _fail_closed(self, flow: http.HTTPFlow, route: Route, hook: str) -> None:
        if hook != "responseheaders":  # that one was logged when it happened
            logger.exception(f"ai_proxy route={route.name}: internal error in the {hook} hook")
        self._live.pop(flow.id, None)
        message = f"internal error in the AI gateway ({hook}); the request was not forwarded"
        if hook != "request":
            message = f"internal error in the AI gateway ({hook})"
        _answer_error(flow, GatewayError(500, message, "gateway_error"), route)


def _add_log_hooks() -> bool:
    """Whether a loaded addon defines the deprecated ``add_log`` hook (see stats.line_is_heard)."""
    return any(callable(getattr(addon, "add_log", None)) for addon in traverse(ctx.master.addons.chain))


def ai_metadata(flow: http.HTTPFlow) -> dict[str, Any]:
    """``flow.metadata["ai_proxy"]``: the statistics record, the client's request, the assembled
    stream, the credential mask. Plain JSON-able values only: flows are saved with ``-w``."""
    return flow.metadata.setdefault("ai_proxy", {})


def stream_translator(prep: Prepared) -> StreamTranslator:
    """Translated routes get their provider's translator; passthrough bytes are only observed, by the
    provider's own reader where it has one (native formats), else as OpenAI SSE."""
    native = prep.native
    reader = usage_reader(native.format, native.operation) if native is not None else None
    if reader is not None:  # native operations the chat translator does not read
        return ObservedStream(reader)
    route_type = "llm/v1/chat" if prep.passthrough or prep.ctx is None else prep.ctx.route_type
    chat = prep.spec.routes.get(route_type)
    reader = chat.new_stream(prep.ctx) if chat and chat.new_stream and prep.ctx else None
    if not prep.passthrough and reader is not None:
        if prep.ingress is not None and prep.ctx is not None:  # chat chunks -> the client's events
            return IngressStream(reader, prep.ingress.new_events(prep.ctx), prep.prompt_text)
        return reader
    if reader is None or prep.spec.name in OPENAI_FORMATS:
        return OpenAIStream()
    return ObservedStream(reader)


def inbound_from(flow: http.HTTPFlow, host: str) -> Inbound:
    """The flow's request as plain data. Reads mitmproxy's raw header fields: its Mapping views
    cost tens of microseconds per request."""
    req = flow.request
    path, _, query = req.path.partition("?")
    headers = {
        name.decode("latin-1").lower(): value.decode("utf-8", "surrogateescape")
        for name, value in req.headers.fields
    }
    return Inbound(
        method=req.method,
        host=host,
        path=path,
        query=parse_qsl(query, keep_blank_values=True) if query else [],
        headers=headers,
        body=req.get_content(strict=False) or b"",
    )


def apply_upstream(req: http.Request, up: Upstream) -> None:
    """Point the request at the provider, in one pass over the headers (the Host header and the
    body's length included) instead of one mitmproxy header operation per change."""
    body = up.body
    changes: dict[str, str | None] = dict.fromkeys((*up.remove_headers, "host"))
    changes.update(up.set_headers)
    changes["content-length"] = str(len(body))
    set_headers(req, changes)
    req.method = up.method
    req.data.scheme = up.scheme.encode()
    req.data.host = up.host
    req.data.port = up.port
    req.data.path = up.target.encode()
    req.host_header = url.hostport(up.scheme, up.host, up.port)  # Host (HTTP/1) or :authority (HTTP/2)
    req.raw_content = body


def set_headers(message: http.Message, changes: Mapping[str, str | None]) -> None:
    """Set headers (None: remove them) in one pass over mitmproxy's raw header fields: each of its
    Headers operations scans and rebuilds them, which costs more than the rest of a hook."""
    if not changes:
        return
    dropped = {name.lower().encode() for name in changes}
    fields = [(name, value) for name, value in message.headers.fields if name.lower() not in dropped]
    fields.extend(
        (name.encode(), value.encode("utf-8", "surrogateescape"))
        for name, value in changes.items()
        if value is not None
    )
    message.headers.fields = tuple(fields)


def _is_stream(response: http.Response) -> bool:
    return response.headers.get("content-type", "").startswith(STREAM_TYPES)


def _answer_error(flow: http.HTTPFlow, error: GatewayError, route: Route | None = None) -> None:
    """The gateway's own error, in the format of the route's clients."""
    body = client_error(route, error.status, error.body())
    flow.response = http.Response.make(error.status, body, {"content-type": "application/json"})


def _stream_error_frames(prep: Prepared, message: str) -> list[bytes]:
    """The error that ends a stream the gateway failed to translate, in the client's format."""
    if prep.ingress is not None and prep.ctx is not None:
        return prep.ingress.new_events(prep.ctx).error(500, message)
    return [b"data: " + error_body(message, "api_error", "stream_error") + b"\n\n"]
