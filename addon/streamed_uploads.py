"""File uploads that stream to the provider as they arrive (``llm/v1/files`` on openai and azure).

mitmproxy streams a request body only when ``flow.request.stream`` is set in the ``requestheaders``
hook, before the body is read: so an upload is admitted (access control), checked against the
route's ``max_request_body_size`` by its declared length, and prepared from its headers alone here;
the gateway then takes it on (``AIProxy.adopt``) and handles the answer as any other. The body goes on
byte for byte through ``transforms.uploads.UploadWatch``, which counts it (a body of undeclared length
that passes the limit is cut there and answered 413) and reads the multipart form on the side, so the
models a batch input file names are known once it is uploaded (``listeners``: addon/batch_inputs.py).

A refused upload (401/403/429, 413 by its declared length) streams to a loopback sink that discards
it and then answers the refusal (addon/refusal_sink.py): an answer set before the body is read would make
mitmproxy hold the whole body in memory first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from mitmproxy import ctx, http

from addon.access import AccessControl
from addon.flows import FlowState, answer_error, apply_upstream, inbound_from, set_headers
from addon.gateway import AIProxy
from addon.refusal_sink import TOKEN_HEADER, Held, RefusalSink
from transforms.api_route_types import FILES
from transforms.config import GatewayConfig, Route
from transforms.errors import GatewayError, body_too_large
from transforms.multipart import boundary_of
from transforms.openai_apis import prepare_openai_api, streams_request_body
from transforms.registry import spec_for
from transforms.uploads import UploadWatch

logger = logging.getLogger("ai_proxy")

UploadListener = Callable[[http.HTTPFlow, UploadWatch], None]


class StreamedUploads:
    def __init__(self, gateway: AIProxy, access: AccessControl) -> None:
        self.gateway = gateway
        self.access = access
        self.uploads: dict[str, tuple[UploadWatch, Route]] = {}
        # Told of every upload that streamed through and was answered (the answer is in flow.response).
        self.listeners: list[UploadListener] = []
        self.sink = RefusalSink()
        self._starting: asyncio.Task[None] | None = None
        self.refused: dict[str, str] = {}  # flow id -> the token of its answer held by the sink
        self._config: GatewayConfig | None = None
        self._any_files_route = False  # of self._config: most configs have none, and pay nothing

    def _serves_uploads(self) -> bool:
        config = self.gateway.config
        if config is not self._config:
            self._config = config
            self._any_files_route = any(route.route_type == FILES for route in config.routes)
        return self._any_files_route

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        req = flow.request
        if req.method != "POST" or not self._serves_uploads() or flow.response or flow.error or not flow.live:
            return
        route = self.gateway.route_for(flow)
        if route is None:
            return
        content_type = req.headers.get("content-type", "")
        if not streams_request_body(route, req.method, req.path.partition("?")[0], content_type):
            return
        if _replaying_only():
            return  # nothing may reach the upstream: the gateway reads it whole, the cassettes refuse it
        try:
            self.access.check_headers(flow, route)
            if flow.response is not None:
                self._divert(flow, route)  # refused
                return
            limit = route.max_request_body_size
            declared = req.headers.get("content-length", "")
            if limit and declared.isdigit() and int(declared) > limit:
                raise body_too_large(limit, int(declared))
            spec = spec_for(route)
            assert spec is not None  # openai and azure, checked when the routes loaded
            inbound = inbound_from(flow, req.pretty_host)
            prep = prepare_openai_api(
                route, spec, inbound, self.gateway.env, {}, int(time.time()), streamed=True
            )
            apply_upstream(req, prep.upstream, with_body=False)
            watch = UploadWatch(limit, boundary_of(content_type))
            req.stream = _sent(watch, self.gateway.adopt(flow, route, prep))
            self.uploads[flow.id] = (watch, route)
        except GatewayError as e:
            logger.info(f"ai_proxy route={route.name} rejected the upload ({e.status}): {e.message}")
            answer_error(flow, e, route)
            self._divert(flow, route)
        except Exception:
            logger.exception(f"ai_proxy route={route.name}: internal error in the requestheaders hook")
            message = "internal error in the AI gateway (upload); the request was not forwarded"
            answer_error(flow, GatewayError(500, message, "gateway_error"), route)

    def _divert(self, flow: http.HTTPFlow, route: Route) -> None:
        """The refusal set on the flow is answered by the sink once the body has streamed there and been
        discarded (without the sink running: once mitmproxy has read the body, as for any refusal)."""
        answer = flow.response
        if answer is None or not self.sink.running:
            return
        req = flow.request
        token = self.sink.hold(Held(answer.status_code, answer.headers.fields, answer.content or b""))
        flow.response = None
        set_headers(req, {"host": None, TOKEN_HEADER: token})
        req.data.scheme, req.data.host, req.data.port = b"http", "127.0.0.1", self.sink.port
        req.host_header = f"127.0.0.1:{self.sink.port}"
        req.stream = True
        self.gateway.adopt(flow, route)  # the gateway leaves it alone: nothing of it is the provider's
        self.refused[flow.id] = token

    def running(self) -> None:
        # Started on the side: an awaited running hook would hold up the other addons' (client replays
        # starting before mitmproxy's TLS setup is done). Until it listens, refusals are answered whole.
        if not self.sink.running and self._starting is None:
            self._starting = asyncio.get_running_loop().create_task(self.sink.start())

    def done(self) -> None:
        if self._starting is not None:
            self._starting.cancel()
            self._starting = None
        self.sink.close()

    def response(self, flow: http.HTTPFlow) -> None:
        if self.refused:
            self.refused.pop(flow.id, None)
        if not self.uploads:
            return
        found = self.uploads.pop(flow.id, None)
        if found is None or flow.response is None:
            return
        watch, route = found
        if watch.over_limit:
            logger.info(f"ai_proxy: an upload passed max_request_body_size ({watch.limit}) and was cut")
            answer_error(flow, body_too_large(watch.limit), route)
            return
        for listener in self.listeners:
            listener(flow, watch)

    def error(self, flow: http.HTTPFlow) -> None:
        self.uploads.pop(flow.id, None)
        token = self.refused.pop(flow.id, None)
        if token is not None:
            self.sink.drop(token)


def _replaying_only() -> bool:
    options = ctx.options
    return (
        "ai_proxy_cassettes" in options
        and bool(options.ai_proxy_cassettes)
        and (options.ai_proxy_record_mode == "none")
    )


def _sent(watch: UploadWatch, state: FlowState) -> Callable[[bytes], list[bytes]]:
    """The request's stream: the watch passes the bytes; the call is timed from the body's end."""

    def on_chunk(data: bytes) -> list[bytes]:
        out = watch(data)
        if not data:
            state.sent_at = time.time()
        return out

    return on_chunk
