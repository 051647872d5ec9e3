"""The mitmproxy addon: matches flows to routes and hands them to the pure transforms.

Hooks stay thin: they adapt a flow to plain data (``Inbound``), call ``transforms.pipeline`` and
write the result back. Every hook of a matched flow fails closed: an unexpected error answers the
client with a 500 instead of letting an untranslated request (with its credential) go upstream.
The flow helpers are in ``addon/flows.py``; recognised traffic no route matches is handled by
``addon/inspected_flows.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import traverse
from mitmproxy.proxy.mode_specs import ReverseMode

from addon.config_loader import ConfigError, load_config
from addon.flows import (
    FlowState,
    ai_metadata,
    answer_error,
    apply_upstream,
    call_facts,
    header_values,
    inbound_from,
    is_stream,
    set_headers,
    stream_translator,
    translated_stream,
)
from addon.gcp_auth import GcpTokenSource
from addon.inspected_flows import UnmatchedInspector, claim_unmatched, observe_inspected, read_inspected
from addon.stats import StatsSink, build_record
from transforms.config import GatewayConfig, Route
from transforms.errors import GatewayError
from transforms.ingress import client_error
from transforms.limits import header_value
from transforms.masking import CLIENT_REQUEST_BODY_LIMIT, client_request
from transforms.pipeline import Answer, Prepared, prepare, translate_response
from transforms.redact import redact_text
from transforms.transcript import assembled
from transforms.types import Inbound, Usage
from transforms.usage import estimate_usage

logger = logging.getLogger("ai_proxy")

UNMATCHED_CHOICES = ("auto", "pass", "reject")
CONFIG_POLL_SECONDS = 1.0
OVERHEAD_HEADER = "x-ai-proxy-overhead-ms"
MODEL_HEADER = "x-ai-proxy-model"


class PromptPlugins(Protocol):
    """The AI plugins of routes that configure them (addon/prompt_plugins.py)."""

    async def before_prepare(self, flow: http.HTTPFlow, route: Route, inbound: Inbound) -> Inbound:
        """The request as the provider call must see it (template, decorator, guard, request
        transformer); raises GatewayError to answer the client instead."""
        ...

    async def after_answer(self, flow: http.HTTPFlow, route: Route) -> None:
        """Rewrites ``flow.response`` (the translated answer) with the response transformer."""
        ...


class TargetChooser(Protocol):
    """Routes with targets or a balancer (addon/balancing.py)."""

    def choose(self, flow: http.HTTPFlow, route: Route, inbound: Inbound) -> Route:
        """The route (a target of ``route``, or itself) the request is prepared for."""
        ...


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
        # Hook point: picks the target of routes with targets or a balancer (addon/balancing.py).
        self.balancing: TargetChooser | None = None
        # Hook point: told every routes config in force (on_routes), so that an addon with work on
        # some routes only can switch its per-flow hooks off where there is none (addon/dispatch.py).
        self._routes_watchers: list[Callable[[GatewayConfig], None]] = []

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
            self._use(GatewayConfig())
            logger.info("ai_proxy: no routes (ai_proxy_config is not set)")
            return
        try:
            self._config_mtime = Path(path).stat().st_mtime
            config = load_config(path, dict(os.environ))
        except (ConfigError, OSError) as e:
            kept = f"keeping the previous {len(self.config.routes)} route(s)"
            logger.warning(f"ai_proxy: cannot load {path}, {kept}:\n{e}")
            return
        self._use(config)
        names = ", ".join(r.name for r in config.routes) or "none"
        logger.info(f"ai_proxy: loaded {len(config.routes)} route(s) from {path}: {names}")

    def _use(self, config: GatewayConfig) -> None:
        self.config = config
        self._match_hosts = config.matches_hosts
        self._find = config.finder
        self._noted.clear()
        for callback in self._routes_watchers:
            callback(config)

    def on_routes(self, callback: Callable[[GatewayConfig], None]) -> None:
        """Hook point: ``callback(config)`` now and whenever other routes are loaded."""
        self._routes_watchers.append(callback)
        callback(self.config)

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
        if flow.id in self._live:
            return  # prepared from its headers, its body already streamed upstream (adopt)
        started = time.perf_counter()
        # pretty_host costs more than the rest of matching: only routes that match on host need it.
        host = flow.request.pretty_host if self._match_hosts else ""
        route = self._find(host, flow.request.path.partition("?")[0])
        if route is None:
            policy = ctx.options.ai_proxy_unmatched
            if policy != "reject" and (claimed := claim_unmatched(self.inspectors, flow)) is not None:
                self._live[flow.id] = claimed
                return
            if self._reject_unmatched(flow):
                path = flow.request.path.split("?", 1)[0]
                answer_error(
                    flow, GatewayError(404, f"no route for {flow.request.method} {path}", "unknown_route")
                )
            return
        state = FlowState(route)
        try:
            inbound = inbound_from(flow, host)
            sent = inbound
            if route.plugins:
                asked = time.perf_counter()
                sent = await self._prompt_plugins().before_prepare(flow, route, inbound)
                if route.request_transformer is not None:  # its LLM call is recorded apart, not overhead
                    started += time.perf_counter() - asked
            target = route
            if self.balancing is not None and (route.targets or route.balancer):
                state.route = target = self.balancing.choose(flow, route, sent)
            credentials = await self.cloud_credentials(target) if target.auth.gcp_use_service_account else {}
            prep = prepare(
                target,
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
            if prep.flow_metadata:  # for addons acting on the flow later (addon/realtime.py)
                ai_metadata(flow).update(prep.flow_metadata)
            apply_upstream(flow.request, prep.upstream)
            self._live[flow.id] = state
        except GatewayError as e:
            logger.info(f"ai_proxy route={route.name} rejected the request ({e.status}): {e.message}")
            answer_error(flow, e, route)
        except Exception:
            self._fail_closed(flow, route, "request")
        finally:
            state.overhead += time.perf_counter() - started
            state.sent_at = time.time()

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        state = self._live.get(flow.id)
        if state is None or state.prep is None or flow.response is None:
            if flow.response is not None and not flow.response.stream and is_stream(flow.response):
                flow.response.stream = True  # never buffer someone's event stream, even unmatched
            return
        state.upstream_status = flow.response.status_code
        state.upstream_headers = flow.response.headers.fields
        if state.prep.inspected:
            observe_inspected(flow, state)
            return
        started = time.perf_counter()
        try:
            # An error answer to a stream request is read whole and translated as JSON.
            streaming = state.prep.stream or (state.prep.passthrough and is_stream(flow.response))
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
        if state.failure is not None:  # no provider answered: the relay's answer is the gateway's own
            self._record(flow, state, None, None, flow.response.status_code, None)
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
            answer_error(flow, e, state.route)
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

    async def prepare_again(self, route: Route, inbound: Inbound) -> Prepared:
        """The client's request prepared afresh for another target (addon/upstream_relay.py)."""
        credentials = await self.cloud_credentials(route)
        now = int(time.time())
        return prepare(
            route, inbound, request_id=self._next_id(), now=now, env=self.env, credentials=credentials
        )

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

    def _account_inspected(self, flow: http.HTTPFlow, state: FlowState) -> None:
        assert flow.response is not None
        usage, model = read_inspected(flow, state)
        self._record(flow, state, usage, model, flow.response.status_code, None)

    def _reject_unmatched(self, flow: http.HTTPFlow) -> bool:
        policy = ctx.options.ai_proxy_unmatched
        if policy == "auto":
            reverse = isinstance(flow.client_conn.proxy_mode, ReverseMode)
            return reverse and not any(inspector.passes(flow) for inspector in self.inspectors)
        return policy == "reject"

    def _translate_whole(self, flow: http.HTTPFlow, state: FlowState, started: float) -> Answer:
        prep, resp = state.prep, flow.response
        assert prep is not None and resp is not None
        found = header_values(resp, b"content-type", b"content-encoding", b"transfer-encoding")
        # get_content looks the encoding up in mitmproxy's headers again: only an encoded body needs it.
        raw = (resp.get_content(strict=False) if found.get(b"content-encoding") else resp.raw_content) or b""
        state.upstream_body = raw
        if not prep.passthrough:  # the client gets a translation: keep what the provider said
            ai_metadata(flow)["provider_response"] = {
                "status": resp.status_code,
                "content_type": found.get(b"content-type", ""),
                "body": redact_text(raw[:CLIENT_REQUEST_BODY_LIMIT].decode("utf-8", "replace"), prep.secrets),
                "body_size": len(raw),
            }
        try:
            answer = translate_response(prep, resp.status_code, raw)
        except GatewayError as e:
            logger.warning(f"ai_proxy route={state.route.name}: {e.message}")
            answer = Answer(e.status, client_error(state.route, e.status, e.body()), None, None, False)
        changes: dict[str, str | None] = {}
        if not prep.passthrough:
            resp.status_code = answer.status
            changes["content-encoding"] = None
            changes["content-type"] = "application/json"
            resp.raw_content = answer.body
            if b"transfer-encoding" not in found:  # as Message.set_content: chunked has no length
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
        changes: dict[str, str | None] = {}
        if not prep.binary_response:  # a binary answer keeps its bytes, so its length holds
            changes["content-length"] = None
            if flow.request.http_version.startswith("HTTP/1"):
                changes["transfer-encoding"] = "chunked"
        if not prep.passthrough:
            changes["content-type"] = "text/event-stream"
        if state.route.model_name_header:
            changes[MODEL_HEADER] = header_value(f"{state.route.provider}/{prep.request_model}")
        changes[OVERHEAD_HEADER] = f"{state.overhead * 1000:.3f}"
        set_headers(flow.response, changes)
        flow.response.stream = translated_stream(state, translator)

    def _finish_stream(self, flow: http.HTTPFlow, state: FlowState) -> None:
        translator = state.translator
        assert translator is not None and state.prep is not None and flow.response is not None
        usage = translator.usage
        if usage is None and not state.prep.usage_only:
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
        if prep.usage_only and (usage is None or not usage.total_tokens):
            return  # audio: recorded only where the provider reports usage
        record = build_record(call_facts(flow, state, usage, response_model, status, response_body, error))
        ai_metadata(flow).update(record)
        self.stats.emit(record)

    # --- hook points for other addons (cassettes) --------------------------------------------------

    def flow_state(self, flow: http.HTTPFlow) -> FlowState | None:
        """The gateway's state of a flow it prepared, between its request and response hooks."""
        return self._live.get(flow.id)

    def adopt(self, flow: http.HTTPFlow, route: Route, prep: Prepared | None = None) -> FlowState:
        """Take on a flow another addon prepared from its headers alone, whose body streams upstream
        as it arrives (addon/streamed_uploads.py): the request hook leaves it alone, the answer is
        handled as any prepared flow's. Without ``prep`` (a refused upload sent to be discarded) the
        flow is left alone throughout."""
        state = FlowState(route, prep, sent_at=time.time())
        self._live[flow.id] = state
        return state

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
        answer_error(flow, GatewayError(500, message, "gateway_error"), route)


def _add_log_hooks() -> bool:
    """Whether a loaded addon defines the deprecated ``add_log`` hook (see stats.line_is_heard)."""
    return any(callable(getattr(addon, "add_log", None)) for addon in traverse(ctx.master.addons.chain))
