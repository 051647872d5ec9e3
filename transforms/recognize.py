"""Which provider API a request is calling, from its destination and path alone.

Used for traffic no route matches (the inspector accounts for it without changing it) and for the
native operation of ``llm_format`` routes. Pure: the extra host table is parsed once at configure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from transforms.config import Route

# The wire formats a host can be declared to speak (``ai_proxy_inspect_hosts``).
FORMATS = ("openai", "azure", "anthropic", "gemini", "bedrock", "cohere", "mistral", "huggingface", "ollama")
# An operation the provider bills but whose answer carries no usage: recorded with zero tokens.
UNMETERED = "unmetered"


@dataclass(frozen=True, slots=True)
class Recognized:
    format: str  # one of FORMATS
    operation: str  # e.g. "chat", "messages", "generateContent", "invoke", or UNMETERED
    model: str | None = None  # the model named by the path (Gemini, Vertex, Bedrock, Azure deployment)


@dataclass(frozen=True, slots=True)
class InspectHost:
    """One ``HOST[:PORT]=FORMAT`` entry; ``host`` may start with ``*.`` or contain one ``*``."""

    pattern: re.Pattern[str]
    port: int | None
    format: str


def _host_pattern(glob: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(glob.lower()).replace(r"\*", "[a-z0-9.-]*") + "$")


BUILTIN_HOSTS: tuple[InspectHost, ...] = tuple(
    InspectHost(_host_pattern(glob), None, fmt)
    for glob, fmt in (
        ("api.openai.com", "openai"),
        ("*.openai.azure.com", "azure"),
        ("api.anthropic.com", "anthropic"),
        ("generativelanguage.googleapis.com", "gemini"),
        ("aiplatform.googleapis.com", "gemini"),
        ("*-aiplatform.googleapis.com", "gemini"),
        ("bedrock-runtime.*.amazonaws.com", "bedrock"),
        ("bedrock-runtime-fips.*.amazonaws.com", "bedrock"),
        ("bedrock-agent-runtime.*.amazonaws.com", "bedrock"),
        ("api.cohere.com", "cohere"),
        ("api.cohere.ai", "cohere"),
        ("api.mistral.ai", "mistral"),
        ("router.huggingface.co", "huggingface"),
        ("api-inference.huggingface.co", "huggingface"),
    )
)


def parse_inspect_hosts(entries: Iterable[str]) -> tuple[InspectHost, ...]:
    """``HOST[:PORT]=FORMAT`` entries; ValueError names the first bad one."""
    out = []
    for entry in entries:
        target, sep, fmt = entry.partition("=")
        target, fmt = target.strip().lower(), fmt.strip().lower()
        host, _, port_text = target.rpartition(":") if ":" in target else (target, "", "")
        problem = None
        if not sep or not host:
            problem = "expected HOST[:PORT]=FORMAT"
        elif fmt not in FORMATS:
            problem = f"FORMAT must be one of {', '.join(FORMATS)}"
        elif port_text and not (port_text.isdigit() and 0 < int(port_text) < 65536):
            problem = "PORT must be a number from 1 to 65535"
        elif not re.fullmatch(r"[a-z0-9*][a-z0-9.*-]*", host):
            problem = "HOST must be a host name or address, '*' allowed"
        if problem:
            raise ValueError(f"bad ai_proxy_inspect_hosts entry {entry!r}: {problem}")
        out.append(InspectHost(_host_pattern(host), int(port_text) if port_text else None, fmt))
    return tuple(out)


def format_of_host(host: str, port: int, extra: tuple[InspectHost, ...] = ()) -> str | None:
    """The configured entries first (they may override a built-in host), then the built-in table."""
    host = host.lower()
    for entry in extra:
        if (entry.port is None or entry.port == port) and entry.pattern.match(host):
            return entry.format
    for entry in BUILTIN_HOSTS:
        if entry.pattern.match(host):
            return entry.format
    return None


def recognize(
    host: str, port: int, method: str, path: str, extra: tuple[InspectHost, ...] = ()
) -> Recognized | None:
    """The provider call a request makes, or None (unknown host, or not an LLM call: e.g. GET /v1/models)."""
    fmt = format_of_host(host, port, extra)
    if fmt is None or method != "POST":
        return None
    return operation_of(fmt, path)


# --- per-format path rules -------------------------------------------------------------------------

_OPENAI_OPS: Mapping[str, str] = {
    "/chat/completions": "chat",
    "/completions": "completions",
    "/embeddings": "embeddings",
    "/responses": "responses",
}
_OPENAI_UNMETERED = re.compile(r"/(batches|files|uploads)(/|$)|/input_tokens$")
_AZURE_DEPLOYMENT = re.compile(r"/openai/deployments/([^/]+)/")
# Base and tuned models, and Vertex endpoints serving tuned models.
_GEMINI_CALL = re.compile(r"/(?:models|tunedModels|endpoints)/([^/:]+):([A-Za-z]+)$")
_GEMINI_OPS = frozenset(
    {"generateContent", "streamGenerateContent", "embedContent", "batchEmbedContents", "predict"}
)
_GEMINI_UNMETERED = frozenset(
    {
        "countTokens",
        "computeTokens",
        "predictLongRunning",
        "batchGenerateContent",
        "asyncBatchEmbedContent",
        "rank",
    }
)
# Claude on Vertex AI: Anthropic's Messages API at Vertex's publishers/anthropic models.
_VERTEX_ANTHROPIC = re.compile(r"/publishers/anthropic/models/([^/:]+):([A-Za-z]+)$")
_BEDROCK_CALL = re.compile(r"^/model/([^/]+)/([a-z-]+)$")
_BEDROCK_OPS = frozenset({"converse", "converse-stream", "invoke", "invoke-with-response-stream"})
_BEDROCK_UNMETERED = ("/async-invoke", "/rerank", "/retrieveAndGenerate", "/model-invocation")
_COHERE_OPS: Mapping[str, str] = {
    "/v1/chat": "chat_v1",
    "/v2/chat": "chat",
    "/v1/embed": "embed",
    "/v2/embed": "embed",
    "/v1/rerank": "rerank",
    "/v2/rerank": "rerank",
}
_OLLAMA_OPS: Mapping[str, str] = {
    "/api/chat": "chat",
    "/api/generate": "generate",
    "/api/embed": "embed",
    "/api/embeddings": "embed",
}


def _openai_operation(path: str) -> str | None:
    if _OPENAI_UNMETERED.search(path):
        return UNMETERED
    for suffix, op in _OPENAI_OPS.items():
        if path.endswith(suffix):
            return op
    return None


def responses_operation(path: str) -> tuple[str, bool] | None:
    """A Responses API path: see ``collection_operation``."""
    return collection_operation(path, "responses")


def collection_operation(path: str, collection: str) -> tuple[str, bool] | None:
    """A path in a REST collection of OpenAI's (``responses``, ``files``, ``threads``...): (what
    follows the collection, e.g. ``/{id}/cancel``; True when that is nothing, the collection itself),
    or None when the path has no such collection."""
    found = re.search(rf"/{re.escape(collection)}(?=/|$)", path)
    if found is None:
        return None
    rest = path[found.end() :]
    return rest, rest in ("", "/")


def operation_of(fmt: str, path: str) -> Recognized | None:
    """The operation a path names in one wire format (without the query string)."""
    if fmt in ("openai", "azure", "mistral"):
        if path.endswith("/fim/completions"):
            return Recognized(fmt, "completions")
        op = _openai_operation(path)
        if op is None:
            return None
        deployment = _AZURE_DEPLOYMENT.search(path) if fmt == "azure" else None
        return Recognized(fmt, op, unquote(deployment.group(1)) if deployment else None)
    if fmt == "anthropic":
        if path == "/v1/messages":
            return Recognized(fmt, "messages")
        if path.startswith(("/v1/messages/", "/v1/files")):  # count_tokens, batches
            return Recognized(fmt, UNMETERED)
        return _vertex_anthropic(path)
    if fmt == "gemini":
        if "/publishers/anthropic/" in path:  # Claude on a Vertex AI host
            return _vertex_anthropic(path)
        found = _GEMINI_CALL.search(path)
        if found is None:
            tail = path.rsplit(":", 1)[-1] if ":" in path else ""
            if tail in _GEMINI_UNMETERED or "/files" in path:
                return Recognized(fmt, UNMETERED)
            return None
        model, op = unquote(found.group(1)), found.group(2)
        if op in _GEMINI_OPS:
            return Recognized(fmt, op, model)
        return Recognized(fmt, UNMETERED, model) if op in _GEMINI_UNMETERED else None
    if fmt == "bedrock":
        found = _BEDROCK_CALL.match(path)
        if found is not None:
            model, op = unquote(found.group(1)), found.group(2)
            if op in _BEDROCK_OPS:
                return Recognized(fmt, op, model)
            return Recognized(fmt, UNMETERED, model) if op == "count-tokens" else None
        return Recognized(fmt, UNMETERED) if path.startswith(_BEDROCK_UNMETERED) else None
    if fmt == "cohere":
        op = _COHERE_OPS.get(path)
        return Recognized(fmt, op) if op else None
    if fmt == "huggingface":
        if path.endswith(("/generate", "/generate_stream")):
            return Recognized(fmt, "generate", _hf_model(path))
        op = _openai_operation(path)
        return Recognized(fmt, op, _hf_model(path)) if op and op != "responses" else None
    if fmt == "ollama":
        op = _OLLAMA_OPS.get(path)
        if op:
            return Recognized(fmt, op)
        op = _openai_operation(path)  # Ollama's OpenAI-compatible /v1 endpoints
        return Recognized("openai", op) if op else None
    return None


def _vertex_anthropic(path: str) -> Recognized | None:
    """``.../publishers/anthropic/models/{model}:rawPredict`` (or ``:streamRawPredict``) is a
    Messages call; ``.../models/count-tokens:rawPredict`` counts tokens, unbilled."""
    found = _VERTEX_ANTHROPIC.search(path)
    if found is None:
        return None
    model, op = unquote(found.group(1)), found.group(2)
    if model == "count-tokens" and op == "rawPredict":
        return Recognized("anthropic", UNMETERED)
    if op in ("rawPredict", "streamRawPredict"):
        return Recognized("anthropic", "messages", model)
    return None


def _hf_model(path: str) -> str | None:
    # router.huggingface.co/hf-inference/models/<org>/<name>/v1/chat/completions
    if "/models/" not in path:
        return None
    rest = path.split("/models/", 1)[1]
    for marker in ("/v1/", "/generate", "/pipeline/"):
        if marker in rest:
            rest = rest.split(marker, 1)[0]
    return unquote(rest) or None


# --- the synthetic route recognised traffic is accounted under ---------------------------------------

INSPECT_ROUTE = "inspect"
_NATIVE = frozenset({"anthropic", "gemini", "bedrock", "cohere", "huggingface"})
_PROVIDER_OPTIONS: Mapping[str, dict[str, object]] = {
    "anthropic": {"anthropic_version": "2023-06-01"},
    "azure": {"azure_instance": "inspect", "azure_deployment_id": "inspect"},
    "mistral": {"mistral_format": "openai"},
    "ollama": {"upstream_url": "http://127.0.0.1:11434"},
}


def _template(fmt: str) -> Route:
    native = fmt in _NATIVE
    return Route.model_validate(
        {
            "name": INSPECT_ROUTE,
            "route_type": "llm/v1/chat" if native else "preserve",
            "llm_format": fmt if native else "openai",
            "model": {"provider": fmt, "options": _PROVIDER_OPTIONS.get(fmt, {})},
            "model_name_header": False,
        }
    )


INSPECT_ROUTES: Mapping[str, Route] = {fmt: _template(fmt) for fmt in FORMATS}


def inspect_route(found: Recognized, host: str, query: Iterable[tuple[str, str]]) -> Route:
    """The route recognised traffic is accounted under: no auth, no match, the provider's format.
    Azure's instance, deployment and API version come from the request (statistics report them)."""
    route = INSPECT_ROUTES[found.format]
    if found.format != "azure":
        return route
    version = next((v for k, v in query if k == "api-version"), None)
    options = route.model.options.model_copy(
        update={
            "azure_instance": host.split(".", 1)[0],
            "azure_deployment_id": found.model,
            "azure_api_version": version,
        }
    )
    return route.model_copy(update={"model": route.model.model_copy(update={"options": options})})
