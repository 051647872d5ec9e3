"""OpenAI and the OpenAI-compatible family: Azure OpenAI, Mistral and Llama2 (openai format).

These speak OpenAI's own format, so the body passes through with the model enforced and the
configured defaults applied; only the URL, auth and a few unsupported fields change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from transforms.common import fixed_base_url, requires_upstream_url
from transforms.config import ModelOptions
from transforms.errors import error_body
from transforms.limits import StreamLimitExceeded
from transforms.model_rules import openai_reasoning_request
from transforms.reasoning import thinking_as_effort
from transforms.stream import DONE, OpenAIStream, SSEEvent, sse_frame
from transforms.types import CallContext, ErrorInfo, Json, ProviderRequest, ProviderSpec, RouteTransform

PATHS = {
    "llm/v1/chat": "/v1/chat/completions",
    "llm/v1/completions": "/v1/completions",
    "llm/v1/embeddings": "/v1/embeddings",
}
RESULT_KEYS = {"llm/v1/chat": "choices", "llm/v1/completions": "choices", "llm/v1/embeddings": "data"}


def _request(path: str, drop: tuple[str, ...] = (), ask_usage: bool = False, reasoning: bool = False):
    """``reasoning``: OpenAI's own chat models (OpenAI, Azure), where the reasoning-model rules apply."""
    chat = path.endswith("/chat/completions")

    def build(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
        out = {k: v for k, v in body.items() if k not in drop}
        out["model"] = ctx.model
        if chat:
            thinking_as_effort(out)
        if reasoning:
            # Azure names deployments freely: the model, else the deployment may tell.
            openai_reasoning_request(out, ctx.model, ctx.options.azure_deployment_id)
        if ctx.stream:
            out["stream"] = True
            if ask_usage and not ctx.include_usage:
                # Statistics need the token counts, which OpenAI streams only when asked.
                out["stream_options"] = {**(out.get("stream_options") or {}), "include_usage": True}
        return ProviderRequest(out, path)

    return build


def _stream(asks_usage: bool):
    def new_stream(ctx: CallContext) -> OpenAIStream:
        return OpenAIStream(hide_usage_chunk=asks_usage and not ctx.include_usage)

    return new_stream


def _response(route_type: str):
    key = RESULT_KEYS[route_type]

    def parse(body: Json, ctx: CallContext) -> Json:
        if not isinstance(body, dict) or key not in body:
            raise ValueError(f"'{key}' not in {route_type} response")
        return body

    return parse


# --- Mistral's reasoning: content as typed chunks -----------------------------------------------------


def mistral_content(holder: dict[str, Any]) -> bool:
    """Mistral's reasoning models (Magistral, and others with ``reasoning_effort``) give a message's
    or delta's content as typed chunks; the thinking chunks become ``reasoning_content`` and the text
    chunks the content string, as OpenAI clients read them. Whether anything changed."""
    content = holder.get("content")
    if not isinstance(content, list):
        return False
    text: list[str] = []
    thinking: list[str] = []
    for chunk in content:
        kind = chunk.get("type") if isinstance(chunk, dict) else None
        if kind == "text":
            text.append(chunk.get("text") or "")
        elif kind == "thinking":
            parts = chunk.get("thinking") if isinstance(chunk.get("thinking"), list) else ()
            thinking.extend(p.get("text") or "" for p in parts if isinstance(p, dict))
    holder["content"] = "".join(text)
    if thinking:
        holder["reasoning_content"] = "".join(thinking)
    return True


def _mistral_chat(body: Json, ctx: CallContext) -> Json:
    if not isinstance(body, dict) or "choices" not in body:
        raise ValueError("'choices' not in llm/v1/chat response")
    for choice in body["choices"] or ():
        if isinstance(choice, dict) and isinstance(choice.get("message"), dict):
            mistral_content(choice["message"])
    return body


class MistralStream(OpenAIStream):
    """Mistral's OpenAI-format stream, re-framed where a delta's content comes as typed chunks
    (thinking as ``reasoning_content``); other events go through as they came."""

    def feed(self, chunk: bytes) -> list[bytes]:
        if not chunk or self.error is not None:
            return []
        try:
            events = self._parser.feed(chunk)
        except StreamLimitExceeded as e:
            return self._cut(str(e), StreamLimitExceeded.code)
        return [frame for event in events if (frame := self._frame(event))]

    def finish(self) -> list[bytes]:
        if self.error is not None:
            return []
        out = [frame for event in self._parser.finish() if (frame := self._frame(event))]
        if not self._done:  # the upstream stopped without [DONE]: say so
            message = "the upstream stream ended before the response was complete"
            out += [sse_frame(error_body(message, "api_error", "stream_error")), DONE]
        return out

    def _frame(self, event: SSEEvent) -> bytes | None:
        if '"content":[' in event.data or '"content": [' in event.data:
            data = orjson.loads(event.data)
            changed = [
                mistral_content(c["delta"])
                for c in data.get("choices") or ()
                if isinstance(c, dict) and isinstance(c.get("delta"), dict)
            ]
            if any(changed):
                event = SSEEvent(event.event, orjson.dumps(data).decode())
        self._observe(event)
        return sse_frame(event.data.encode()) if event.data else None


def _mistral_stream(ctx: CallContext) -> OpenAIStream:
    return MistralStream()


def _mistral_routes() -> dict[str, RouteTransform]:
    routes = _routes(("top_k",), PATHS)
    chat = routes["llm/v1/chat"]
    routes["llm/v1/chat"] = RouteTransform(chat.build_request, _mistral_chat, _mistral_stream)
    return routes


def parse_error(status: int, body: Json) -> ErrorInfo | None:
    """OpenAI's ``{"error": {...}}``; also Mistral's and vLLM's flat ``{"message", "type"}``."""
    if not isinstance(body, dict):
        return None
    err = body.get("error")
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        code = err.get("code")
        return ErrorInfo(
            err["message"],
            err.get("type") if isinstance(err.get("type"), str) else None,
            str(code) if code is not None else None,
            err.get("param") if isinstance(err.get("param"), str) else None,
        )
    if isinstance(body.get("message"), str):
        code = body.get("code")
        return ErrorInfo(body["message"], None, str(code) if code is not None else None)
    return None


def _routes(
    drop: tuple[str, ...], paths: dict[str, str], ask_usage: bool = False, reasoning: bool = False
) -> dict[str, RouteTransform]:
    return {
        route_type: RouteTransform(
            _request(path, drop, ask_usage, reasoning and route_type == "llm/v1/chat"),
            _response(route_type),
            _stream(ask_usage) if route_type != "llm/v1/embeddings" else None,
        )
        for route_type, path in paths.items()
    }


def _azure_base(options: ModelOptions, model: str, env: Mapping[str, str]) -> str:
    return f"https://{options.azure_instance}.openai.azure.com"


def _azure_routes() -> dict[str, RouteTransform]:
    routes = {}
    for route_type, path in PATHS.items():
        inner = _request(path.removeprefix("/v1"), ("top_k",), reasoning=route_type == "llm/v1/chat")

        def build(body: dict[str, Any], ctx: CallContext, inner=inner) -> ProviderRequest:
            req = inner(body, ctx)
            req.path = f"/openai/deployments/{ctx.options.azure_deployment_id}{req.path}"
            # A client's own ?api-version= wins over the configured one (as in Kong).
            client = dict(ctx.client_query).get("api-version")
            req.query.append(("api-version", client or ctx.options.azure_api_version or "2023-05-15"))
            return req

        stream = _stream(False) if route_type != "llm/v1/embeddings" else None
        routes[route_type] = RouteTransform(build, _response(route_type), stream)
    return routes


SPECS = (
    # OpenAI has no top_k; self-hosted OpenAI-compatible servers (vLLM, TGI...) often do.
    # Only OpenAI itself is asked for stream usage: older Azure API versions and some
    # compatible servers reject an unknown stream_options field.
    ProviderSpec(
        "openai",
        fixed_base_url("https://api.openai.com"),
        _routes(("top_k",), PATHS, ask_usage=True, reasoning=True),
        parse_error,
    ),
    ProviderSpec("azure", _azure_base, _azure_routes(), parse_error),
    ProviderSpec("mistral", fixed_base_url("https://api.mistral.ai"), _mistral_routes(), parse_error),
    ProviderSpec("llama2", requires_upstream_url("the llama2 provider"), _routes((), PATHS), parse_error),
)
