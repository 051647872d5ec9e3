"""The route configuration: the public contract of the gateway, validated with pydantic.

Field names follow Kong's AI Proxy plugin (``auth``, ``model.options``, ``logging``...), so a Kong
configuration translates one to one. Messages use Kong's wording where Kong has one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from functools import cached_property
from typing import Annotated, Any, Literal, Self
from urllib.parse import parse_qsl, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from transforms.api_route_types import OPENAI_API_COLLECTIONS, OpenAIApiRouteType, openai_api_route_problem
from transforms.plugins.prompt_template import parse_template
from transforms.plugins.regex import compile_pattern

Provider = Literal[
    "openai",
    "azure",
    "anthropic",
    "cohere",
    "mistral",
    "llama2",
    "gemini",
    "bedrock",
    "huggingface",
    "ollama",
]
RouteType = (
    Literal[
        "llm/v1/chat",
        "llm/v1/completions",
        "llm/v1/embeddings",
        "llm/v1/responses",
        "preserve",
        "image/v1/images/generations",
        "image/v1/images/edits",
        "realtime/v1/realtime",
    ]
    | OpenAIApiRouteType
)
REALTIME = "realtime/v1/realtime"
# REST route types: ``match.path`` names the collection, and the route serves what lies below it too
# (``<path>/{id}``, ``<path>/{id}/cancel``...).
REST_ROUTE_TYPES = frozenset({"llm/v1/responses", *OPENAI_API_COLLECTIONS})
LlmFormat = Literal["openai", "anthropic", "gemini", "bedrock", "cohere", "huggingface"]
# llm_format values any provider serves, translated to and from the chat form (transforms/ingress).
CLIENT_FORMATS = frozenset({"anthropic"})


class _Strict(BaseModel):
    """Unknown keys are errors: a typo in a config must not silently do nothing.

    Frozen: what requests need of a route that never changes is computed on first use and kept on
    it (``cached_property``), so that no request pays for it again."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Self:
        # A copy with other values must not keep what was computed from the original's.
        copied = super().model_copy(update=update, deep=deep)
        for name in _cached_names(type(self)):
            copied.__dict__.pop(name, None)
        return copied


def _cached_names(cls: type) -> tuple[str, ...]:
    return tuple(name for name in dir(cls) if isinstance(getattr(cls, name, None), cached_property))


UrlParts = tuple[str, str, int, str, tuple[tuple[str, str], ...]]


def split_origin(url: str) -> UrlParts:
    """(scheme, host, port, path, query) of an absolute URL."""
    parts = urlsplit(url)
    # A WebSocket URL (realtime routes) is reached by its HTTP upgrade request.
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, parts.hostname or "", port, parts.path, tuple(parse_qsl(parts.query))


def _all_or_none(model: BaseModel, *fields: str, prefix: str) -> None:
    given = [getattr(model, f) is not None for f in fields]
    if any(given) and not all(given):
        names = ", ".join(f"'{prefix}.{f}'" for f in fields)
        raise ValueError(f"all or none of these fields must be set: {names}")


class Match(_Strict):
    path: str | None = None
    host: str | None = None

    @field_validator("path")
    @classmethod
    def _path_is_absolute(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("/"):
            raise ValueError("must start with '/'")
        return v

    @field_validator("host")
    @classmethod
    def _host_lower(cls, v: str | None) -> str | None:
        return v.lower() if v else v

    def matches(self, host: str, path: str, collection: bool = False) -> bool:
        """``collection``: the route is of a REST route type, and serves the paths below its own."""
        if self.host is not None and host.lower() != self.host:
            return False
        if self.path is None:
            return True
        if self.path.endswith("/*"):
            prefix = self.path[:-1]
            return path.startswith(prefix) or path == prefix[:-1]
        if path == self.path:
            return True
        base = self.path.rstrip("/")
        return collection and (path == base or path.startswith(base + "/"))


class Auth(_Strict):
    header_name: str | None = None
    header_value: str | None = Field(default=None, repr=False)
    param_name: str | None = None
    param_value: str | None = Field(default=None, repr=False)
    param_location: Literal["query", "body"] | None = None
    allow_override: bool = False
    aws_access_key_id: str | None = Field(default=None, repr=False)
    aws_secret_access_key: str | None = Field(default=None, repr=False)
    aws_session_token: str | None = Field(default=None, repr=False)
    gcp_use_service_account: bool = False
    gcp_service_account_json: str | None = Field(default=None, repr=False)

    @model_validator(mode="after")
    def _pairs(self) -> Auth:
        _all_or_none(self, "header_name", "header_value", prefix="auth")
        _all_or_none(self, "param_name", "param_value", "param_location", prefix="auth")
        _all_or_none(self, "aws_access_key_id", "aws_secret_access_key", prefix="auth")
        return self

    def secrets(self) -> tuple[str, ...]:
        """Every configured secret value, so that logs and errors can be scrubbed of them."""
        return self.secret_values

    @cached_property
    def secret_values(self) -> tuple[str, ...]:
        values = (
            self.header_value,
            self.param_value,
            self.aws_secret_access_key,
            self.aws_session_token,
            self.gcp_service_account_json,
        )
        out = [v for v in values if v]
        if self.header_value and " " in self.header_value:
            # "Bearer sk-..." : the bare token is the secret too.
            out.append(self.header_value.split(" ", 1)[1])
        return tuple(s for s in out if len(s) >= 4)


class GeminiOptions(_Strict):
    api_endpoint: str | None = None
    project_id: str | None = None
    location_id: str | None = None

    @model_validator(mode="after")
    def _vertex_all_or_none(self) -> GeminiOptions:
        _all_or_none(self, "api_endpoint", "project_id", "location_id", prefix="model.options.gemini")
        return self

    @property
    def is_vertex(self) -> bool:
        return self.api_endpoint is not None


class BedrockOptions(_Strict):
    aws_region: str | None = None


class HuggingFaceOptions(_Strict):
    use_cache: bool | None = None
    wait_for_model: bool | None = None


class CohereOptions(_Strict):
    embedding_input_type: Literal[
        "search_document", "search_query", "classification", "clustering", "image"
    ] = "search_document"


class ModelOptions(_Strict):
    max_tokens: Annotated[int, Field(gt=0)] | None = None
    temperature: Annotated[float, Field(ge=0, le=5)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0, le=500)] | None = None
    anthropic_version: str | None = None
    azure_instance: str | None = None
    azure_deployment_id: str | None = None
    azure_api_version: str | None = "2023-05-15"
    mistral_format: Literal["openai", "ollama"] | None = None
    llama2_format: Literal["openai", "ollama", "raw"] | None = None
    upstream_url: str | None = None
    input_cost: Annotated[float, Field(gt=0)] | None = None
    output_cost: Annotated[float, Field(gt=0)] | None = None
    gemini: GeminiOptions | None = None
    bedrock: BedrockOptions | None = None
    huggingface: HuggingFaceOptions | None = None
    cohere: CohereOptions | None = None

    @field_validator("anthropic_version", "azure_api_version", mode="before")
    @classmethod
    def _date_as_text(cls, v: Any) -> Any:
        # YAML reads an unquoted 2023-06-01 as a date; the API wants the text.
        return v.isoformat() if hasattr(v, "isoformat") else v

    @field_validator("upstream_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        # ws(s) only for realtime routes (checked by Route): the WebSocket upgrade is an HTTP request.
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            raise ValueError("must be an absolute http(s) URL")
        return v

    @cached_property
    def upstream_origin(self) -> UrlParts | None:
        """``upstream_url`` split, once per route rather than per request."""
        return split_origin(self.upstream_url) if self.upstream_url else None


class ModelConfig(_Strict):
    provider: Provider
    name: str | None = None
    # On a target: the name clients ask for to reach it (Kong 3.14); ``name`` is what goes upstream.
    model_alias: Annotated[str, Field(min_length=1)] | None = None
    options: ModelOptions = ModelOptions()


class Logging(_Strict):
    log_statistics: bool = True
    log_payloads: bool = False


# --- AI Proxy Advanced: several targets behind one route (transforms/balancer.py decides) --------

FailoverCriterion = Literal[
    "error", "timeout", "http_403", "http_404", "http_429", "http_500", "http_502", "http_503", "http_504"
]
Milliseconds = Annotated[int, Field(ge=1, le=2147483646)]


class Balancer(_Strict):
    """Kong's ``balancer`` block, its names and defaults."""

    algorithm: Literal[
        "round-robin", "consistent-hashing", "least-connections", "lowest-latency", "lowest-usage", "priority"
    ] = "round-robin"
    hash_on_header: Annotated[str, Field(min_length=1)] = "X-Kong-LLM-Request-ID"
    latency_strategy: Literal["tpot", "e2e"] = "tpot"
    tokens_count_strategy: Literal["total-tokens", "prompt-tokens", "completion-tokens", "cost"] = (
        "total-tokens"
    )
    retries: Annotated[int, Field(ge=0, le=32767)] = 5  # tries after the first
    failover_criteria: list[FailoverCriterion] = Field(default_factory=lambda: ["error", "timeout"])
    connect_timeout: Milliseconds = 60000
    read_timeout: Milliseconds = 60000
    write_timeout: Milliseconds = 60000
    slots: Annotated[int, Field(ge=10, le=65536)] = 10000
    max_fails: Annotated[int, Field(ge=0, le=32767)] = 0  # circuit breaker off
    fail_timeout: Milliseconds = 10000


# One try, Kong's timeouts: what a route without ``balancer:`` gets.
NO_RETRIES = Balancer(retries=0)


class Target(_Strict):
    """One model behind a route with targets: a whole route_type/auth/model/logging block."""

    route_type: RouteType
    auth: Auth = Auth()
    model: ModelConfig
    logging: Logging = Logging()
    weight: Annotated[int, Field(ge=1, le=65535)] = 100
    description: str | None = None


# Route fields a route with targets takes from each target instead.
_TARGET_FIELDS = ("route_type", "auth", "model", "logging")


# --- the AI plugins of a route (Kong's field names; transforms/plugins/ applies them) ------------


class PromptTemplateEntry(_Strict):
    name: Annotated[str, Field(min_length=1)]
    template: Annotated[str, Field(min_length=1)]
    _parts: tuple[str, ...] = PrivateAttr(())

    @model_validator(mode="after")
    def _parse(self) -> PromptTemplateEntry:
        self._parts = parse_template(self.name, self.template)
        return self


class PromptTemplate(_Strict):
    templates: Annotated[list[PromptTemplateEntry], Field(min_length=1)]
    allow_untemplated_requests: bool = True
    log_original_request: bool = False  # the client's body, before templating, in the statistics
    _by_name: dict[str, tuple[str, ...]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _unique(self) -> PromptTemplate:
        for entry in self.templates:
            if entry.name in self._by_name:
                raise ValueError(f"template name '{entry.name}' is used more than once")
            self._by_name[entry.name] = entry._parts
        return self

    def parsed(self, name: str) -> tuple[str, ...] | None:
        return self._by_name.get(name)


class DecoratorPrompt(_Strict):
    role: Literal["system", "assistant", "user"] = "system"
    content: Annotated[str, Field(min_length=1, max_length=100000)]


class DecoratorPrompts(_Strict):
    prepend: Annotated[list[DecoratorPrompt], Field(max_length=15)] = Field(default_factory=list)
    append: Annotated[list[DecoratorPrompt], Field(max_length=15)] = Field(default_factory=list)


class PromptDecorator(_Strict):
    prompts: DecoratorPrompts

    @model_validator(mode="after")
    def _some(self) -> PromptDecorator:
        if not self.prompts.prepend and not self.prompts.append:
            raise ValueError(
                "at least one of these fields must be non-empty: 'prompt_decorator.prompts.prepend', "
                "'prompt_decorator.prompts.append'"
            )
        return self


GuardPattern = Annotated[str, Field(min_length=1, max_length=500)]


class PromptGuard(_Strict):
    allow_patterns: Annotated[list[GuardPattern], Field(max_length=10)] | None = None
    deny_patterns: Annotated[list[GuardPattern], Field(max_length=10)] | None = None
    allow_all_conversation_history: bool = False
    match_all_roles: bool = False
    _allow: tuple[Any, ...] = PrivateAttr(())
    _deny: tuple[Any, ...] = PrivateAttr(())

    @field_validator("allow_patterns", "deny_patterns")
    @classmethod
    def _compiles(cls, v: list[str] | None) -> list[str] | None:
        for pattern in v or ():
            compile_pattern(pattern)  # the ValueError names the pattern
        return v

    @model_validator(mode="after")
    def _rules(self) -> PromptGuard:
        if not self.allow_patterns and not self.deny_patterns:
            raise ValueError(
                "at least one of these fields must be non-empty: 'allow_patterns', 'deny_patterns'"
            )
        if self.match_all_roles and self.allow_all_conversation_history:
            raise ValueError("'match_all_roles' needs 'allow_all_conversation_history' to be false")
        self._allow = tuple(compile_pattern(p) for p in self.allow_patterns or ())
        self._deny = tuple(compile_pattern(p) for p in self.deny_patterns or ())
        return self

    @property
    def compiled_allow(self) -> tuple[Any, ...]:
        return self._allow

    @property
    def compiled_deny(self) -> tuple[Any, ...]:
        return self._deny


class TransformerLLM(_Strict):
    """Kong's ``llm`` block: the target the transformer asks (a chat route of its own)."""

    route_type: Literal["llm/v1/chat"] = "llm/v1/chat"
    auth: Auth = Auth()
    model: ModelConfig
    logging: Logging = Logging()

    @model_validator(mode="after")
    def _named_model(self) -> TransformerLLM:
        if not self.model.name:
            raise ValueError("must set model.name (the transformer's own request names no model)")
        return self


class RequestTransformer(_Strict):
    prompt: Annotated[str, Field(min_length=1)]
    llm: TransformerLLM
    transformation_extract_pattern: Annotated[str, Field(min_length=1)] | None = None
    http_timeout: Annotated[int, Field(gt=0)] = 60000  # milliseconds
    https_verify: bool = True
    _extract: Any = PrivateAttr(None)
    _route: Any = PrivateAttr(None)

    @field_validator("transformation_extract_pattern")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            compile_pattern(v, "im")
        return v

    @model_validator(mode="after")
    def _compile(self) -> RequestTransformer:
        pattern = self.transformation_extract_pattern
        # Kong matches case-insensitively, ^ and $ at line ends.
        self._extract = compile_pattern(pattern, "im") if pattern else None
        return self

    @property
    def compiled_extract(self) -> Any:
        return self._extract

    @property
    def llm_route(self) -> Route:
        """The ``llm`` block as a route named ``<route>:<plugin>``, built once at load."""
        return self._route

    def bind(self, route_name: str, plugin: str) -> None:
        llm = self.llm
        self._route = Route(
            name=f"{route_name}:{plugin}",
            route_type=llm.route_type,
            auth=llm.auth,
            model=llm.model,
            logging=llm.logging,
        )


class ResponseTransformer(RequestTransformer):
    parse_llm_response_json_instructions: bool = False


# Which route types each plugin serves (all of them need an OpenAI-format route).
_PLUGIN_ROUTE_TYPES = {
    "prompt_template": ("llm/v1/chat", "llm/v1/completions"),
    "prompt_decorator": ("llm/v1/chat",),
    "prompt_guard": ("llm/v1/chat", "llm/v1/completions"),
    "request_transformer": ("llm/v1/chat", "llm/v1/completions", "llm/v1/embeddings"),
    "response_transformer": ("llm/v1/chat", "llm/v1/completions", "llm/v1/embeddings"),
}


class Route(_Strict):
    name: Annotated[str, Field(min_length=1)]
    match: Match = Match()
    route_type: RouteType
    auth: Auth = Auth()
    model: ModelConfig
    logging: Logging = Logging()
    # AI Proxy Advanced: several targets instead of route_type/auth/model/logging (the route-level
    # ones are then the first target's, for the code that asks a route what it serves).
    targets: Annotated[list[Target], Field(min_length=1)] | None = None
    balancer: Balancer | None = None
    response_streaming: Literal["allow", "deny", "always"] = "allow"
    max_request_body_size: Annotated[int, Field(ge=0)] = 1048576
    model_name_header: bool = True
    llm_format: LlmFormat = "openai"
    # Names of the gateway keys this route accepts; unset: any gateway key (when keys are defined).
    allow_keys: Annotated[list[str], Field(min_length=1)] | None = None
    # Kong's companion AI plugins, applied in this order around the provider call.
    prompt_template: PromptTemplate | None = None
    prompt_decorator: PromptDecorator | None = None
    prompt_guard: PromptGuard | None = None
    request_transformer: RequestTransformer | None = None
    response_transformer: ResponseTransformer | None = None
    _target_routes: tuple[Route, ...] = PrivateAttr(())
    _is_target: bool = PrivateAttr(False)

    @model_validator(mode="before")
    @classmethod
    def _targets_replace_model(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("targets") is None:
            return data
        given = [name for name in _TARGET_FIELDS if name in data]
        if given:
            raise ValueError(
                "a route with targets has no route-level 'route_type', 'auth', 'model' or 'logging' "
                f"(set them on each target): found {', '.join(repr(n) for n in given)}"
            )
        if not isinstance(data["targets"], list):
            return data  # the field's own validation says what it must be
        if not data["targets"]:
            raise ValueError("'targets' must list at least one target")
        first = data["targets"][0]
        get = (
            first.get if isinstance(first, dict) else lambda name, default=None: getattr(first, name, default)
        )
        return {**data, **{name: get(name) for name in _TARGET_FIELDS if get(name) is not None}}

    @model_validator(mode="after")
    def _provider_rules(self) -> Route:
        if self.targets is not None:  # each target is checked as a route of its own, named by index
            self._check_plugins()
            self._bind_targets(self.targets)
            return self
        provider, opts = self.model.provider, self.model.options
        required = {
            "anthropic": ("anthropic_version",),
            "azure": ("azure_instance", "azure_deployment_id", "azure_api_version"),
            "llama2": ("llama2_format",),
            "mistral": ("mistral_format",),
        }
        for field in required.get(provider, ()):
            if getattr(opts, field) is None:
                raise ValueError(f"must set 'model.options.{field}' for {provider} provider")
        on_vertex = opts.gemini is not None and opts.gemini.is_vertex
        version = opts.anthropic_version or ""
        if provider == "anthropic" and on_vertex and not version.startswith("vertex-"):
            raise ValueError(
                "Claude on Vertex AI (anthropic with model.options.gemini) takes a Vertex "
                f"'model.options.anthropic_version' such as 'vertex-2023-10-16', not '{version}'"
            )
        self_hosted = provider in ("llama2", "ollama") or (
            provider == "mistral" and opts.mistral_format == "ollama"
        )
        if self_hosted and opts.upstream_url is None:
            raise ValueError("must set 'model.options.upstream_url' for self-hosted providers/models")
        if (opts.upstream_url or "").startswith(("ws:", "wss:")) and self.route_type != REALTIME:
            raise ValueError(
                "'model.options.upstream_url' can be ws(s):// only on realtime/v1/realtime routes"
            )
        problem = openai_api_route_problem(self.route_type, provider, self.auth.param_location)
        if problem:
            raise ValueError(problem)
        if provider in ("bedrock", "gemini") and self.auth.allow_override:
            raise ValueError("bedrock and gemini only support auth.allow_override = false")
        if self.llm_format != "openai":
            if self.route_type != "llm/v1/chat":
                raise ValueError(
                    "native provider options in llm_format can only be used with the 'llm/v1/chat' route_type"
                )
            # Client formats with an ingress adapter (transforms/ingress) serve any provider.
            if self.llm_format != provider and self.llm_format not in CLIENT_FORMATS:
                raise ValueError(
                    f"native llm_format '{self.llm_format}' can only be used with the "
                    f"'{self.llm_format}' model.provider"
                )
        self._check_plugins()
        if self.model.model_alias is not None:
            raise ValueError(
                "'model.model_alias' is only used on targets (it picks one of a route's targets)"
            )
        return self

    def _bind_targets(self, targets: list[Target]) -> None:
        """Each target as a route of its own, validated and built once at load: the pipeline
        prepares a request for it like for any single-model route."""
        kinds = {t.route_type for t in targets}
        if len(kinds) > 1:
            raise ValueError(f"every target must have the same route_type, not {', '.join(sorted(kinds))}")
        shared = {
            name: getattr(self, name)
            for name in type(self).model_fields
            if name not in (*_TARGET_FIELDS, "targets")
        }
        built = []
        for index, target in enumerate(targets):
            fields = {name: getattr(target, name) for name in _TARGET_FIELDS}
            try:
                route = Route.model_validate(
                    {**shared, **fields, "model": fields["model"].model_copy(update={"model_alias": None})}
                )
            except ValidationError as e:
                problems = "; ".join(str(err["msg"]).removeprefix("Value error, ") for err in e.errors())
                raise ValueError(f"targets[{index}]: {problems}") from None
            route._is_target = True
            built.append(route)
        self._target_routes = tuple(built)

    @property
    def target_routes(self) -> tuple[Route, ...]:
        """The targets as routes (same name and match as this one), in the order configured."""
        return self._target_routes

    @property
    def replaces_model(self) -> bool:
        """A target's model.name replaces the client's: the balancer chose it, not the client."""
        return self._is_target

    @property
    def aliases(self) -> tuple[str, ...]:
        return tuple(sorted({t.model.model_alias for t in self.targets or () if t.model.model_alias}))

    def _check_plugins(self) -> None:
        configured = tuple(name for name in _PLUGIN_ROUTE_TYPES if getattr(self, name) is not None)
        for name in configured:
            if self.llm_format != "openai":
                raise ValueError(
                    f"'{name}' works on OpenAI-format requests: it cannot be used with llm_format "
                    f"'{self.llm_format}' (native bodies pass through untouched)"
                )
            if self.route_type not in _PLUGIN_ROUTE_TYPES[name]:
                allowed = ", ".join(_PLUGIN_ROUTE_TYPES[name])
                raise ValueError(f"'{name}' can only be used with route_type {allowed}")
        if self.response_transformer is not None and self.response_streaming == "always":
            raise ValueError(
                "'response_transformer' rewrites whole answers: response_streaming cannot be 'always'"
            )
        for name in ("request_transformer", "response_transformer"):
            block = getattr(self, name)
            if block is not None:
                block.bind(self.name, name)

    @cached_property
    def plugins(self) -> tuple[str, ...]:
        """The AI plugin blocks this route configures, in the order they act."""
        return tuple(name for name in _PLUGIN_ROUTE_TYPES if getattr(self, name) is not None)

    @property
    def provider(self) -> str:
        return self.model.provider

    @property
    def format(self) -> str:
        """The wire format of the provider: mistral/llama2 speak openai, ollama or raw."""
        opts = self.model.options
        if self.model.provider == "mistral":
            return opts.mistral_format or "openai"
        if self.model.provider == "llama2":
            return opts.llama2_format or "openai"
        return self.model.provider


_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


class KeyLimits(_Strict):
    """Per-key limits, counted in memory by one process (windows: transforms/access.py)."""

    requests_per_minute: Annotated[int, Field(gt=0)] | None = None
    tokens_per_minute: Annotated[int, Field(gt=0)] | None = None
    tokens_per_day: Annotated[int, Field(gt=0)] | None = None
    cost_per_day: Annotated[float, Field(gt=0)] | None = None

    @property
    def counts_usage(self) -> bool:
        """Limits that need the statistics of finished calls (tokens, cost)."""
        return any(v is not None for v in (self.tokens_per_minute, self.tokens_per_day, self.cost_per_day))


class GatewayKey(_Strict):
    """A key of the gateway's own, which clients present instead of a provider key."""

    name: Annotated[str, Field(min_length=1)]
    key: Annotated[str, Field(min_length=1)] | None = Field(default=None, repr=False)
    key_sha256: str | None = None
    limits: KeyLimits = KeyLimits()
    _digest: bytes = PrivateAttr(b"")

    @field_validator("key_sha256", mode="before")
    @classmethod
    def _hex_digest(cls, v: Any) -> Any:
        if v is not None and not (isinstance(v, str) and _SHA256_HEX.fullmatch(v)):
            # YAML reads an unquoted all-digit digest as a number: say so rather than "not a string".
            raise ValueError("must be 64 hexadecimal characters (the key's SHA-256 digest), quoted in YAML")
        return v.lower() if v else v

    @model_validator(mode="after")
    def _one_key(self) -> GatewayKey:
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError("must set exactly one of 'key' or 'key_sha256'")
        # Keys are compared as digests: plain and hashed keys alike, computed once per load.
        self._digest = bytes.fromhex(self.key_sha256) if self.key_sha256 else _sha256(self.key or "")
        return self

    @property
    def digest(self) -> bytes:
        return self._digest


def _sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


class RouteIndex:
    """First-match route lookup whose cost does not grow with the number of routes.

    Built once per config load. Every route lands in one table by the shape of its ``match``: exact
    path, prefix (``/x/*``, keyed by ``/x/``) or any path, each under its host (or ``None`` for
    routes without one). A table keeps, per key, the position of the first route with that key.
    A lookup gathers the candidates of the request's host and of no host (one exact key, one prefix
    key per ``/`` of the path, one catch-all) and takes the earliest position: the same route the
    linear scan in ``Match.matches`` order would find, in time bounded by the path's depth.
    """

    __slots__ = ("_any", "_exact", "_hosts", "_prefix", "_routes")

    def __init__(self, routes: list[Route]) -> None:
        self._routes = routes
        self._exact: dict[tuple[str | None, str], int] = {}
        self._prefix: dict[tuple[str | None, str], int] = {}
        self._any: dict[str | None, int] = {}
        for position, route in enumerate(routes):
            host, pattern = route.match.host, route.match.path
            if pattern is None:
                self._any.setdefault(host, position)
            elif pattern.endswith("/*"):
                self._prefix.setdefault((host, pattern[:-1]), position)
            else:
                self._exact.setdefault((host, pattern), position)
                if route.route_type in REST_ROUTE_TYPES:  # the collection and what lies below it
                    self._prefix.setdefault((host, pattern.rstrip("/") + "/"), position)
        # Hosts some route names: a request for any other host only needs the host-less tables.
        self._hosts = frozenset(r.match.host for r in routes if r.match.host is not None)

    def find(self, host: str, path: str) -> Route | None:
        host_key = host.lower() if self._hosts else None
        keys: tuple[str | None, ...] = (None, host_key) if host_key in self._hosts else (None,)
        best = len(self._routes)
        exact, prefix, catch_all = self._exact, self._prefix, self._any
        heads: list[str] = []
        if prefix:
            # Prefix keys end in "/": every "/"-terminated head of the path, and the path plus "/"
            # ("/x/*" also matches "/x" itself).
            at = path.find("/")
            while at != -1:
                heads.append(path[: at + 1])
                at = path.find("/", at + 1)
            heads.append(path + "/")
        for key in keys:
            found = exact.get((key, path))
            if found is not None and found < best:
                best = found
            found = catch_all.get(key)
            if found is not None and found < best:
                best = found
            for head in heads:
                found = prefix.get((key, head))
                if found is not None and found < best:
                    best = found
        return self._routes[best] if best < len(self._routes) else None


class GatewayConfig(_Strict):
    routes: list[Route] = Field(default_factory=list)
    gateway_keys: list[GatewayKey] = Field(default_factory=list)
    _index: RouteIndex = PrivateAttr()

    @model_validator(mode="after")
    def _unique_names(self) -> GatewayConfig:
        seen: set[str] = set()
        for route in self.routes:
            if route.name in seen:
                raise ValueError(f"route name '{route.name}' is used more than once")
            seen.add(route.name)
        return self

    @model_validator(mode="after")
    def _key_rules(self) -> GatewayConfig:
        problems: list[str] = []
        names: set[str] = set()
        for key in self.gateway_keys:
            if key.name in names:
                problems.append(f"gateway key '{key.name}': the name is used more than once")
            names.add(key.name)
        metered = {k.name for k in self.gateway_keys if k.limits.counts_usage}
        for route in self.routes:
            for name in route.allow_keys or ():
                if name not in names:
                    problems.append(f"route '{route.name}': allow_keys names unknown gateway key '{name}'")
            if names and route.auth.allow_override:
                problems.append(
                    f"route '{route.name}': auth.allow_override cannot be true when gateway_keys are "
                    "defined (the client's key is then its gateway key, not a provider key)"
                )
            counted = metered.intersection(route.allow_keys or names)
            if counted and not route.logging.log_statistics:
                problems.append(
                    f"route '{route.name}': logging.log_statistics must be true: the token and cost limits "
                    f"of {', '.join(repr(n) for n in sorted(counted))} are counted from statistics"
                )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def model_post_init(self, context: Any, /) -> None:
        self._index = RouteIndex(self.routes)

    @property
    def matches_hosts(self) -> bool:
        return any(route.match.host is not None for route in self.routes)

    def find(self, host: str, path: str) -> Route | None:
        """The first route whose ``match`` fits, as a scan in order would find it (see RouteIndex)."""
        return self._index.find(host, path)

    @property
    def finder(self) -> Callable[[str, str], Route | None]:
        """``find`` without pydantic's private-attribute lookup (a microsecond) on every call: for
        callers that keep it beside this config."""
        return self._index.find
