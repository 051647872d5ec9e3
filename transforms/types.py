"""Plain data passed between the mitmproxy glue and the pure transforms."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

from transforms.config import Auth, ModelOptions

Json = Any  # what orjson.loads returns
# Marks a usage object in a translated body as estimated (for statistics; never sent to clients).
ESTIMATED_MARK = "_ai_proxy_estimated"
# Marks a chat ``tool`` message as a failed tool's result (an ingress client said so: Anthropic's
# ``is_error``). Read by providers with an error flag (ProviderSpec.tool_error_flag); for every
# other provider the pipeline turns it into TOOL_ERROR_TEXT before the provider transform runs.
TOOL_ERROR_MARK = "_ai_proxy_tool_error"
TOOL_ERROR_TEXT = "[tool error] "
# The gateway's own chat extensions: what an ingress client format reads from the chat form that
# OpenAI's chat has no field for. Provider transforms write them only when an ingress adapter reads
# the answer (CallContext.extensions), so OpenAI-format clients never see them.
# On a choice (and on a stream chunk's finishing choice): the stop sequence that ended the text,
# or "" when the provider says a stop sequence did but not which.
STOP_SEQUENCE_KEY = "_ai_proxy_stop_sequence"
# On a message (and a stream chunk's delta): the provider's own web searches, as a list of
# {"id", "queries": [str], "sources": [{"url", "title"}], "error": str | None}.
WEB_SEARCH_KEY = "_ai_proxy_web_search"
# In a chat request's ``web_search_options``: the client requires a web search (Responses
# ``tool_choice`` naming the built-in tool), for providers that can force one (Anthropic).
WEB_SEARCH_REQUIRED = "_ai_proxy_required"


@dataclass(slots=True)
class Inbound:
    """The client's request as the gateway received it."""

    method: str
    host: str
    path: str  # without the query string
    query: list[tuple[str, str]]
    headers: Mapping[str, str]  # lower-case names
    body: bytes


@dataclass(slots=True)
class Upstream:
    """The request to send to the provider, replacing the client's."""

    method: str
    scheme: str
    host: str
    port: int
    path: str
    query: list[tuple[str, str]]
    set_headers: dict[str, str]
    remove_headers: tuple[str, ...]
    body: bytes

    @property
    def target(self) -> str:
        """Path and query exactly as they go on the wire."""
        return f"{self.path}?{urlencode(self.query)}" if self.query else self.path

    @property
    def url(self) -> str:
        default = 443 if self.scheme == "https" else 80
        netloc = self.host if self.port == default else f"{self.host}:{self.port}"
        return f"{self.scheme}://{netloc}{self.target}"


@dataclass(frozen=True, slots=True)
class CallContext:
    """What a provider transform may know about the call; nothing else reaches it."""

    route_name: str
    route_type: str
    provider: str
    model: str
    options: ModelOptions
    stream: bool
    request_id: str  # used for ids the provider does not give
    created: int  # unix seconds, for responses that carry no timestamp
    client_query: tuple[tuple[str, str], ...] = ()
    include_usage: bool = False  # the client asked stream_options.include_usage
    # All prompt text of the client's request, for providers that report no prompt token count.
    prompt_text: str = ""
    # What an ingress client format's answer repeats of its request (transforms/ingress: echo).
    client: Mapping[str, Any] = field(default_factory=dict)
    # The chat answer goes to an ingress adapter, which reads the gateway's chat extensions
    # (STOP_SEQUENCE_KEY, WEB_SEARCH_KEY).
    extensions: bool = False


@dataclass(slots=True)
class ProviderRequest:
    """A provider transform's answer: the body and where it goes (relative to the provider base)."""

    body: Json
    path: str
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    # What the transform changed for the model's sake, for the event log (once per route): rule -> text.
    notes: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False
    search_units: int = 0  # billed by rerank APIs instead of tokens (Cohere)
    # Text and audio parts of the counts, where the provider says (Realtime API).
    prompt_text_tokens: int = 0
    prompt_audio_tokens: int = 0
    completion_text_tokens: int = 0
    completion_audio_tokens: int = 0

    def as_openai(self, mark_estimate: bool = True) -> dict[str, Any]:
        """OpenAI's usage object. An estimate carries ESTIMATED_MARK, which the pipeline reads into
        statistics and strips before the body reaches the client."""
        out: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.cached_tokens:
            out["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        if self.reasoning_tokens:
            out["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        if self.estimated and mark_estimate:
            out[ESTIMATED_MARK] = True
        return out


class StreamTranslator(Protocol):
    """Turns a provider's response stream into OpenAI SSE, one network chunk at a time."""

    usage: Usage | None
    response_model: str | None
    error: str | None  # the message of an error frame that ended the stream, for statistics

    @property
    def text_chars(self) -> int:
        """Characters of generated text so far, for estimates when the provider reports none."""
        ...

    def feed(self, chunk: bytes) -> list[bytes]: ...

    def finish(self) -> list[bytes]: ...


@dataclass(frozen=True, slots=True)
class RouteTransform:
    """The pure functions that serve one (provider, route type) pair."""

    build_request: Callable[[Json, CallContext], ProviderRequest]
    parse_response: Callable[[Json, CallContext], Json]
    new_stream: Callable[[CallContext], StreamTranslator] | None = None


@dataclass(frozen=True, slots=True)
class TokenCounter:
    """A provider's own token counting API: the request that counts a chat request's prompt, and
    the count read from its answer."""

    build_request: Callable[[Json, CallContext], ProviderRequest]
    parse_response: Callable[[Json], int]


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    message: str
    type: str | None = None
    code: str | None = None
    param: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """Everything the gateway knows about one wire format."""

    name: str
    # (options, model, environment) -> scheme://host[:port][/prefix]
    base_url: Callable[[ModelOptions, str, Mapping[str, str]], str]
    routes: Mapping[str, RouteTransform]
    parse_error: Callable[[int, Json], ErrorInfo | None]
    # Usage of a native (llm_format) response body, for statistics of untranslated traffic.
    native_usage: Callable[[Json], Usage | None] | None = None
    # Signs the final request in place (AWS SigV4): (upstream, auth, environment, unix time, the
    # route's model options: the signing region may be configured there).
    sign: Callable[[Upstream, Auth, Mapping[str, str], int, ModelOptions], None] | None = None
    # The provider's own token counting (Gemini countTokens, Bedrock CountTokens), for clients that
    # ask for a count (Anthropic's count_tokens); None: the gateway estimates.
    count_tokens: TokenCounter | None = None
    # The provider's tool results carry an error flag (Bedrock's toolResult.status): its chat
    # transform reads TOOL_ERROR_MARK; other providers get the failure as marked text.
    tool_error_flag: bool = False
    # Rewrites a native (llm_format) request for a provider that serves the format at paths of its
    # own (Claude on Vertex AI): (client path, body, the route's model, options) -> (path, body,
    # model), or None to forward the request as it came.
    native_request: (
        Callable[[str, dict[str, Any], str | None, ModelOptions], tuple[str, dict[str, Any], str] | None]
        | None
    ) = None
    # Built-in tools of ingress clients its chat transform maps to its own (``web_search``: the
    # chat request's ``web_search_options``, answered with annotations and WEB_SEARCH_KEY).
    builtin_tools: frozenset[str] = frozenset()
