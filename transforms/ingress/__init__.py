"""Ingress adapters: client formats other than OpenAI chat, served on every provider.

An adapter turns its client's request into a chat request, and the chat answer (whole, streamed,
or an error) back into its client's format. The pipeline runs the route's provider transform and
stream translator between the two, unchanged, so every provider serves every client format with
no per-provider code. A route asks for one with ``llm_format`` (``anthropic`` on a provider other
than anthropic), or with its route type (``llm/v1/responses`` on a provider other than OpenAI and
Azure, which serve the Responses API themselves and are forwarded to).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from transforms.config import Route
from transforms.errors import GatewayError
from transforms.ingress import anthropic, responses
from transforms.models_endpoint import parse_models_path
from transforms.registry import spec_for
from transforms.stream import ObservedStream, SSEParser
from transforms.types import CallContext, StreamTranslator, Usage
from transforms.usage import estimate_usage

CREATE = "create"
# Counting a request's prompt tokens: by the provider's own counting API where it has one (the
# request goes upstream like CREATE's), else estimated by the gateway (``local_answer``).
COUNT = "count_tokens"
RESPONSES = "llm/v1/responses"
LocalAnswer = Callable[
    [str, str | None, str | None, bytes, list[str], int], tuple[int, bytes, dict[str, str]]
]


class ClientEvents(Protocol):
    """Writes one answer's events in the client's format from chat completion chunks."""

    def chunk(self, chunk: Mapping[str, Any]) -> list[bytes]: ...

    def end(self, usage: Usage | None) -> list[bytes]: ...

    def error(self, status: int, message: str) -> list[bytes]: ...

    def keepalive(self) -> list[bytes]: ...


@dataclass(frozen=True, slots=True)
class Ingress:
    """The pure functions of one client format."""

    name: str
    # The client paths (after the route's prefix) this format answers: path suffix -> operation;
    # CREATE is the one call that goes to the provider through the chat form.
    operations: Mapping[str, str]
    # (the client's body, the route's provider, the built-in tools its transform maps) -> chat body.
    to_chat: Callable[[Mapping[str, Any], str, frozenset[str]], dict[str, Any]]
    from_chat: Callable[[Mapping[str, Any], Usage | None, CallContext], dict[str, Any]]
    new_events: Callable[[CallContext], ClientEvents]
    error_body: Callable[[int, str], bytes]
    # A prompt's token count (COUNT) in the client's shape.
    count_body: Callable[[int], bytes] | None = None
    # Chat fields the adapter sets that a provider may lack: dropped (and noted), never refused.
    optional_fields: frozenset[str] = frozenset()
    # Client fields the chat form cannot carry: accepted and ignored (said once per route).
    ignored_fields: frozenset[str] = frozenset()
    # What the gateway answers itself (token counts, the models list): (method, operation, model
    # id of a models request, body, the route's model names, created) -> (status, body, headers).
    local_answer: LocalAnswer | None = None
    # The request fields the client's answer repeats or needs (the Responses API echoes its
    # instructions, tools, metadata...; Anthropic's stop_sequence is one of the stop_sequences):
    # computed once from the client's body, handed to from_chat and the events writer as
    # ``CallContext.client``.
    echo: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    # The client's errors are OpenAI's own: the gateway's error bodies go out unchanged (with their
    # code and param) instead of through error_body.
    openai_errors: bool = False
    # Event-log notes on what a request offered that the chat form leaves out (built-in tools):
    # rule -> text, said once per route.
    notes: Callable[[Mapping[str, Any], str, frozenset[str]], dict[str, str]] | None = None
    # The client's streams have a keep-alive frame (``ClientEvents.keepalive``) the gateway writes
    # while the provider is silent (transforms/keepalive.py).
    pings: bool = False

    def operation(self, path: str) -> str | None:
        for suffix, operation in self.operations.items():
            if path.endswith(suffix):
                return operation
        return None


ADAPTERS: Mapping[str, Ingress] = {
    "anthropic": Ingress(
        name="anthropic",
        operations={"/v1/messages": CREATE, "/v1/messages/count_tokens": COUNT},
        to_chat=anthropic.to_chat,
        from_chat=anthropic.from_chat,
        new_events=anthropic.MessagesEvents,
        error_body=anthropic.error_body,
        count_body=anthropic.count_body,
        optional_fields=anthropic.OPTIONAL_CHAT_FIELDS,
        ignored_fields=anthropic.IGNORED_FIELDS,
        local_answer=anthropic.local_answer,
        echo=anthropic.echo,
        notes=anthropic.notes,
        pings=True,
    ),
    # Keyed by route type: the Responses API is a route type of its own, with the OpenAI format.
    RESPONSES: Ingress(
        name="responses",
        operations={"/responses": CREATE},
        to_chat=responses.to_chat,
        from_chat=responses.from_chat,
        new_events=responses.ResponsesEvents,
        error_body=responses.error_body,
        optional_fields=responses.OPTIONAL_CHAT_FIELDS,
        ignored_fields=responses.IGNORED_FIELDS,
        echo=responses.echo,
        openai_errors=True,
        notes=responses.notes,
    ),
}
# Providers that serve the Responses API themselves: their routes forward it (transforms/pipeline).
RESPONSES_NATIVE = frozenset({"openai", "azure"})


def ingress_for(route: Route) -> Ingress | None:
    """The adapter a route's clients need: a client format other than OpenAI's on a provider that
    does not speak it natively (provider anthropic with llm_format anthropic is a passthrough;
    Responses routes on OpenAI and Azure are forwarded)."""
    if route.route_type == RESPONSES:
        return None if route.provider in RESPONSES_NATIVE else ADAPTERS[RESPONSES]
    if route.llm_format == "openai" or route.llm_format == route.provider:
        return None
    return ADAPTERS.get(route.llm_format)


def client_error(route: Route | None, status: int, openai_body: bytes) -> bytes:
    """An OpenAI-shaped error body (the gateway's own or a translated upstream one) in the format
    of the route's clients; unchanged for OpenAI clients."""
    ingress = ingress_for(route) if route is not None else None
    if ingress is None or ingress.openai_errors:
        return openai_body
    try:
        parsed = orjson.loads(openai_body)
        message = parsed["error"]["message"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        message = f"upstream returned HTTP {status}"
    return ingress.error_body(status, str(message))


def provider_counts(route: Route, ingress: Ingress) -> bool:
    """True when the route's provider counts tokens itself: the client's COUNT request then goes
    upstream (pipeline.prepare builds it), not to the gateway's estimate."""
    spec = spec_for(route)
    return ingress.count_body is not None and spec is not None and spec.count_tokens is not None


def local_answer(
    route: Route, method: str, path: str, body: bytes, created: int
) -> tuple[int, bytes, dict[str, str]] | None:
    """The answer the gateway gives itself to a client-format request that needs no provider
    call (Anthropic's count_tokens and models list), or None: the request goes to the pipeline."""
    ingress = ingress_for(route)
    if ingress is None or ingress.local_answer is None:
        return None
    operation = ingress.operation(path)
    models = parse_models_path(method, path)
    if operation == CREATE or (operation is None and models is None):
        return None
    if operation == COUNT and method == "POST" and provider_counts(route, ingress):
        return None
    limit = route.max_request_body_size
    if limit and len(body) > limit:
        message = f"request body of {len(body)} bytes exceeds max_request_body_size ({limit})"
        return 413, ingress.error_body(413, message), {"content-type": "application/json"}
    names = [route.model.name] if route.model.name else []
    try:
        return ingress.local_answer(
            method, operation, models.model_id if models else None, body, names, created
        )
    except GatewayError as e:
        return e.status, ingress.error_body(e.status, e.message), {"content-type": "application/json"}


class IngressStream(ObservedStream):
    """Chained after the provider's stream translator: its OpenAI chunks become the client's
    events as they come out of it, one network chunk at a time. Usage, the response model and the
    transcript are the provider translator's (read through ObservedStream)."""

    def __init__(self, inner: StreamTranslator, events: ClientEvents, prompt_text: str) -> None:
        super().__init__(inner)
        self._inner = inner
        self._events = events
        self.events = events  # the client's writer: what it wrote, for addons that keep answers
        self._prompt_text = prompt_text
        self._sse = SSEParser()
        self._ended = False

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._ended:
            return []
        return self._translate(self._sse.feed(b"".join(self._inner.feed(chunk))))

    def finish(self) -> list[bytes]:
        if self._ended:
            return []
        out = self._translate(self._sse.feed(b"".join(self._inner.finish())))
        if not self._ended:
            out += self._translate(self._sse.finish())
        if not self._ended:  # the provider's translator said nothing more: end the answer cleanly
            out += self._end()
        return out

    def keepalive(self) -> list[bytes]:
        """The client's keep-alive frame(s) while the provider is silent: nothing once ended."""
        return [] if self._ended else self._events.keepalive()

    def _end(self) -> list[bytes]:
        self._ended = True
        usage = self._inner.usage or estimate_usage(self._prompt_text, self._inner.text_chars)
        return self._events.end(usage)

    def _translate(self, events: list[Any]) -> list[bytes]:
        out: list[bytes] = []
        for event in events:
            if self._ended:
                break
            if event.data == "[DONE]":
                out += self._end()
                continue
            try:
                data = orjson.loads(event.data) if event.data else None
            except orjson.JSONDecodeError:
                continue
            if not isinstance(data, dict):
                continue
            error = data.get("error")
            if error is not None:
                message = error.get("message") if isinstance(error, dict) else str(error)
                self._ended = True
                out += self._events.error(500, str(message or "the upstream stream failed"))
                continue
            out += self._events.chunk(data)
        return out


__all__ = [
    "ADAPTERS",
    "COUNT",
    "CREATE",
    "RESPONSES",
    "RESPONSES_NATIVE",
    "Ingress",
    "IngressStream",
    "client_error",
    "ingress_for",
    "local_answer",
    "provider_counts",
]
