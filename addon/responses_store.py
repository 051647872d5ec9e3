"""Stored responses for Responses API routes on providers that keep none (every provider but openai
and azure, which keep their own and are forwarded to).

The gateway keeps the responses it produced, bounded in memory (option ``ai_proxy_responses_store``:
how many; 0 keeps none), unless the request said ``store: false``. With them, ``previous_response_id``
continues a conversation (the stored inputs and outputs go first in the provider's call), and
``GET``/``DELETE <path>/{id}``, ``GET <path>/{id}/input_items`` and ``POST <path>/{id}/cancel`` are
answered here. The shapes are pure (``transforms.ingress.responses``); the memory is this module's.

Two addons share one store: ``StoredResponses`` is listed before the gateway (it answers from the
store and rewrites a continued request before the gateway prepares it), ``ResponseKeeper`` after it
(it keeps the translated answer, whole or streamed).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from mitmproxy import ctx, http

from addon.dispatch import switch_hooks
from addon.gateway import AIProxy
from addon.stats import CONSUMER_METADATA
from transforms.config import GatewayConfig, Route
from transforms.errors import GatewayError
from transforms.ingress import ADAPTERS, RESPONSES, ingress_for
from transforms.ingress.responses import continued, input_items, item_page, not_found
from transforms.recognize import responses_operation

DEFAULT_SIZE = 1000
_JSON = {"content-type": "application/json"}


@dataclass(slots=True)
class Stored:
    response: dict[str, Any]
    inputs: list[dict[str, Any]]  # every input item the response answered, earlier context included
    owner: str | None = None  # the gateway key that created it: only that key's clients see it


@dataclass(slots=True)
class ResponseStore:
    """The responses kept, oldest evicted first past ``size``; and what each flow in flight will
    store once answered (its input items, by flow id)."""

    size: int = DEFAULT_SIZE
    kept: OrderedDict[str, Stored] = field(default_factory=OrderedDict)
    pending: dict[str, tuple[list[dict[str, Any]], str | None, Any]] = field(default_factory=dict)
    # Told when the first flow starts waiting and when the last is done (ResponseKeeper's hooks).
    on_waiting: Callable[[bool], None] | None = None

    def get(self, response_id: str, owner: str | None = None) -> Stored | None:
        found = self.kept.get(response_id)
        return found if found is not None and found.owner == owner else None

    def wait(self, flow_id: str, inputs: list[dict[str, Any]], owner: str | None) -> None:
        """A flow whose answer will be kept once it has it."""
        self.pending[flow_id] = (inputs, owner, None)
        if len(self.pending) == 1 and self.on_waiting is not None:
            self.on_waiting(True)

    def done(self, flow_id: str) -> tuple[list[dict[str, Any]], str | None, Any] | None:
        found = self.pending.pop(flow_id, None)
        if found is not None and not self.pending and self.on_waiting is not None:
            self.on_waiting(False)
        return found

    def put(self, response_id: str, stored: Stored) -> None:
        self.kept[response_id] = stored
        self.kept.move_to_end(response_id)
        while len(self.kept) > self.size:
            self.kept.popitem(last=False)


def _adapted(route: Route | None) -> bool:
    return route is not None and ingress_for(route) is ADAPTERS[RESPONSES]


def _answer(flow: http.HTTPFlow, status: int, body: bytes) -> None:
    flow.response = http.Response.make(status, body, _JSON)


def _error(flow: http.HTTPFlow, error: GatewayError) -> None:
    _answer(flow, error.status, error.body())


class StoredResponses:
    """Before the gateway: answers from the store, continues ``previous_response_id``."""

    def __init__(self, gateway: AIProxy, store: ResponseStore) -> None:
        self.gateway = gateway
        self.store = store
        self._adapting = False  # some route adapts the Responses API
        gateway.on_routes(self._routes)

    def _routes(self, config: GatewayConfig) -> None:
        self._adapting = any(_adapted(route) for route in config.routes)
        self._switch()

    def _switch(self) -> None:
        """Only routes that adapt the Responses API, with a store, have anything to answer here."""
        switch_hooks(self, ("request",), on=self._adapting and self.store.size > 0)

    def load(self, loader: Any) -> None:
        loader.add_option(
            "ai_proxy_responses_store",
            int,
            DEFAULT_SIZE,
            "How many Responses API answers the gateway keeps in memory for providers that keep none "
            "(previous_response_id, retrieve, input_items, delete); 0 keeps none.",
        )

    def configure(self, updated: set[str]) -> None:
        if "ai_proxy_responses_store" in updated:
            self.store.size = max(0, ctx.options.ai_proxy_responses_store)
            while len(self.store.kept) > self.store.size:
                self.store.kept.popitem(last=False)
            self._switch()

    def request(self, flow: http.HTTPFlow) -> None:
        req = flow.request
        # Cheap refusals first: this hook runs for every flow.
        if flow.response is not None or self.store.size == 0 or "/responses" not in req.path:
            return
        path, _, query = req.path.partition("?")
        found = responses_operation(path)
        route = self.gateway.route_for(flow) if found is not None else None
        if found is None or not _adapted(route):
            return
        rest, create = found
        owner = flow.metadata.get(CONSUMER_METADATA)  # named by AccessControl, which runs first
        if create:
            if req.method == "POST":
                self._create(flow, owner)
            return
        parts = rest.strip("/").split("/")
        stored = self.store.get(parts[0], owner)
        if len(parts) > 2 or (len(parts) == 2 and parts[1] not in ("input_items", "cancel")):
            return  # not a Responses path: the gateway answers it
        if stored is None:
            _error(flow, not_found(parts[0]))
        elif len(parts) == 1 and req.method == "GET":
            _answer(flow, 200, orjson.dumps(stored.response))
        elif len(parts) == 1 and req.method == "DELETE":
            del self.store.kept[parts[0]]
            _answer(flow, 200, orjson.dumps({"id": parts[0], "object": "response", "deleted": True}))
        elif parts[-1] == "input_items" and req.method == "GET":
            _answer(flow, 200, orjson.dumps(item_page(stored.inputs, dict(parse_qsl(query)))))
        elif parts[-1] == "cancel" and req.method == "POST":
            message = "Only responses created with background set to true can be cancelled."
            _error(flow, GatewayError(400, message, "invalid_request"))

    def _create(self, flow: http.HTTPFlow, owner: str | None) -> None:
        try:
            body = orjson.loads(flow.request.get_content(strict=False) or b"")
        except orjson.JSONDecodeError:
            return  # the gateway says what is wrong with it
        if not isinstance(body, dict):
            return
        previous = body.get("previous_response_id")
        context: list[dict[str, Any]] = []
        if isinstance(previous, str) and previous:
            stored = self.store.get(previous, owner)
            if stored is None:
                _error(flow, not_found(previous, "previous_response_id"))
                return
            context = [*stored.inputs, *stored.response.get("output", ())]
            body = continued(body, context)
            flow.request.content = orjson.dumps(body)
        if body.get("store") is not False:
            own = input_items({**body, "input": body["input"][len(context) :]} if context else body, flow.id)
            self.store.wait(flow.id, [*context, *own], owner)


class ResponseKeeper:
    """After the gateway: keeps the Response a flow was answered with, whole or streamed."""

    def __init__(self, gateway: AIProxy, store: ResponseStore) -> None:
        self.gateway = gateway
        self.store = store
        # Hooks on only while some flow waits for its answer to be kept.
        store.on_waiting = self._switch
        self._switch(bool(store.pending))

    def _switch(self, waiting: bool) -> None:
        switch_hooks(self, ("responseheaders", "response", "error"), on=waiting)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        pending = self.store.pending.get(flow.id)
        state = self.gateway.flow_state(flow) if pending is not None else None
        if pending is not None and state is not None and state.translator is not None:
            inputs, owner, _ = pending  # the stream's writer holds the Response once it has ended
            self.store.pending[flow.id] = (inputs, owner, getattr(state.translator, "events", None))

    def response(self, flow: http.HTTPFlow) -> None:
        pending = self.store.done(flow.id)
        if pending is None or flow.response is None or not 200 <= flow.response.status_code < 300:
            return
        inputs, owner, events = pending
        if events is not None:
            response = getattr(events, "final", None)
        else:
            try:
                response = orjson.loads(flow.response.get_content(strict=False) or b"")
            except orjson.JSONDecodeError:
                return
        if isinstance(response, dict) and isinstance(response.get("id"), str):
            self.store.put(response["id"], Stored(response, inputs, owner))

    def error(self, flow: http.HTTPFlow) -> None:
        self.store.done(flow.id)
