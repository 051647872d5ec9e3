"""Hugging Face: Inference Providers' OpenAI-compatible chat (TGI and the router) and feature extraction.

The default upstream is the router's ``hf-inference`` provider, where Kong's paths still hold:
``/models/{model}/v1/chat/completions`` for chat (and completions, sent as one user message) and
``/models/{model}/pipeline/feature-extraction`` for embeddings. A self-hosted TGI or the router's
provider-agnostic endpoint is reached with an ``upstream_url`` that has the path.

Chat bodies are OpenAI's, with the few names TGI lacks translated (max_completion_tokens, a string
stop). Answers are OpenAI-shaped already and only normalised: TGI's empty ids, its finish reasons
(``eos_token``...), its ``reasoning`` field, a usage attached to the last chunk instead of a chunk
of its own. ``model.options.huggingface`` becomes the ``x-use-cache`` / ``x-wait-for-model`` headers.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson

from transforms.chunks import SSEEvent, StreamTranslatorBase
from transforms.common import embedding_list, embedding_texts, fixed_base_url, matched_stop, refuse
from transforms.config import ModelOptions
from transforms.reasoning import thinking_as_effort
from transforms.stream import DONE, sse_frame
from transforms.types import (
    STOP_SEQUENCE_KEY,
    CallContext,
    ErrorInfo,
    Json,
    ProviderRequest,
    ProviderSpec,
    RouteTransform,
    Usage,
)
from transforms.usage import estimate_tokens, usage_from_openai

PROVIDER = "huggingface"
BASE_URL = "https://router.huggingface.co/hf-inference"

# TGI's finish reasons and OpenAI's own -> OpenAI's.
STOP_SEQUENCE = "stop_sequence"  # TGI's finish reason when a stop sequence ended the text
_FINISH = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "function_call": "function_call",
    "eos_token": "stop",
    STOP_SEQUENCE: "stop",
}
# OpenAI bookkeeping (storage, billing, tracing) that never changes the answer and that TGI's
# request type does not have: not sent.
_BOOKKEEPING = frozenset(
    {
        "store",
        "metadata",
        "service_tier",
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
    }
)
# Completions fields with no chat equivalent: name -> (is_neutral, why).
_COMPLETIONS_ONLY = {
    "echo": (lambda v: v is False, "is not supported"),
    "suffix": (lambda v: v == "", "is not supported"),
    "best_of": (lambda v: v == 1, "above 1 is not supported"),
    "logprobs": (lambda v: v is False, "is not supported"),
    "n": (lambda v: v == 1, "above 1 is not supported"),
}


def _model_path(model: str, rest: str) -> str:
    return f"/models/{quote(model, safe='/')}{rest}"


def _headers(options: ModelOptions) -> dict[str, str]:
    """The Inference API's cache and cold-start switches, only when configured."""
    hf = options.huggingface
    headers: dict[str, str] = {}
    if hf is not None and hf.use_cache is not None:
        headers["x-use-cache"] = "true" if hf.use_cache else "false"
    if hf is not None and hf.wait_for_model is not None:
        headers["x-wait-for-model"] = "true" if hf.wait_for_model else "false"
    return headers


# --- request -------------------------------------------------------------------------------------


def _tgi_names(out: dict[str, Any]) -> None:
    """OpenAI names TGI does not read, under the names it does."""
    limit = out.pop("max_completion_tokens", None)
    if limit is not None:
        out["max_tokens"] = limit
    if isinstance(out.get("stop"), str):
        out["stop"] = [out["stop"]]


def _stream_fields(out: dict[str, Any], ctx: CallContext) -> None:
    if not ctx.stream:
        out.pop("stream", None)
        out.pop("stream_options", None)
        return
    out["stream"] = True
    # Statistics need the token counts, which the server streams only when asked.
    out["stream_options"] = {**(out.get("stream_options") or {}), "include_usage": True}


def build_chat(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    out = {k: v for k, v in body.items() if v is not None and k not in _BOOKKEEPING}
    out["model"] = ctx.model
    thinking_as_effort(out)
    _tgi_names(out)
    _stream_fields(out, ctx)
    return ProviderRequest(out, _model_path(ctx.model, "/v1/chat/completions"), headers=_headers(ctx.options))


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise refuse(PROVIDER, "prompt", "other than one text prompt is not supported")
    return prompt


def build_completions(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    """A completion is asked as one user message; the answer's text is the completion."""
    out: dict[str, Any] = {}
    for name, value in body.items():
        if value is None or name == "prompt" or name in _BOOKKEEPING:
            continue
        neutral = _COMPLETIONS_ONLY.get(name)
        if neutral is None:
            out[name] = value
        elif not neutral[0](value):
            raise refuse(PROVIDER, name, neutral[1])
    out["model"] = ctx.model
    out["messages"] = [{"role": "user", "content": _prompt_text(body.get("prompt"))}]
    _tgi_names(out)
    _stream_fields(out, ctx)
    return ProviderRequest(out, _model_path(ctx.model, "/v1/chat/completions"), headers=_headers(ctx.options))


def build_embeddings(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    if body.get("dimensions") is not None:
        raise refuse(PROVIDER, "dimensions")
    texts = embedding_texts(body["input"], PROVIDER)
    return ProviderRequest(
        {"inputs": texts},
        _model_path(ctx.model, "/pipeline/feature-extraction"),
        headers=_headers(ctx.options),
    )


# --- response: shared normalisation ---------------------------------------------------------------


def finish_reason(reason: Any, has_tool_calls: bool = False) -> str | None:
    """OpenAI's finish reason; TGI reports a tool-calling turn as an ordinary stop."""
    if reason is None:
        return None
    mapped = _FINISH.get(reason, "stop") if isinstance(reason, str) else "stop"
    return "tool_calls" if mapped == "stop" and has_tool_calls else mapped


def _tool_call(call: dict[str, Any]) -> dict[str, Any]:
    """TGI adds ``description: null`` to a call, and older versions send arguments as an object."""
    call = dict(call)
    function = call.get("function")
    if isinstance(function, dict):
        function = {k: v for k, v in function.items() if not (k == "description" and v is None)}
        if isinstance(function.get("arguments"), dict):
            function["arguments"] = orjson.dumps(function["arguments"]).decode()
        call["function"] = function
    return call


def _message(message: dict[str, Any], stream: bool = False) -> dict[str, Any]:
    """A message or delta in OpenAI's names: ``reasoning`` is ``reasoning_content``, nulls TGI adds
    for fields OpenAI does not have are dropped."""
    out = {k: v for k, v in message.items() if not (k == "tool_call_id" and v is None)}
    if "reasoning" in out:
        reasoning = out.pop("reasoning")
        if reasoning is not None:
            out["reasoning_content"] = reasoning
    if isinstance(out.get("tool_calls"), list):
        out["tool_calls"] = [_tool_call(c) if isinstance(c, dict) else c for c in out["tool_calls"]]
    if not stream:
        out.setdefault("content", None)
    return out


def _choices(body: Json, route_type: str) -> list[Any]:
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
        raise ValueError(f"'choices' not in huggingface {route_type} response")
    return body["choices"]


def _created(body: dict[str, Any], ctx: CallContext) -> int:
    created = body.get("created")
    return (
        created if isinstance(created, int) and not isinstance(created, bool) and created > 0 else ctx.created
    )


# --- response ------------------------------------------------------------------------------------


def parse_chat(body: Json, ctx: CallContext) -> Json:
    choices = []
    for choice in _choices(body, "chat"):
        message = _message(choice.get("message") or {"role": "assistant"})
        reason = finish_reason(choice.get("finish_reason"), bool(message.get("tool_calls"))) or "stop"
        out = {**choice, "message": message, "finish_reason": reason}
        stop_sequence = matched_stop(ctx, choice.get("finish_reason") == STOP_SEQUENCE)  # not said which
        if stop_sequence is not None:
            out[STOP_SEQUENCE_KEY] = stop_sequence
        choices.append(out)
    return {
        **body,
        "object": "chat.completion",
        "id": body.get("id") or f"chatcmpl-{ctx.request_id}",
        "created": _created(body, ctx),
        "model": body.get("model") or ctx.model,
        "choices": choices,
    }


def parse_completions(body: Json, ctx: CallContext) -> Json:
    choices = []
    for i, choice in enumerate(_choices(body, "completions")):
        message = choice.get("message") or {}
        reason = finish_reason(choice.get("finish_reason")) or "stop"
        choices.append(
            {
                "text": message.get("content") or "",
                "index": choice.get("index", i),
                "logprobs": None,
                "finish_reason": "stop" if reason == "tool_calls" else reason,
            }
        )
    out: dict[str, Any] = {
        "id": body.get("id") or f"cmpl-{ctx.request_id}",
        "object": "text_completion",
        "created": _created(body, ctx),
        "model": body.get("model") or ctx.model,
        "choices": choices,
    }
    if isinstance(body.get("usage"), dict):
        out["usage"] = body["usage"]
    return out


def _vectors(body: Json) -> list[list[float]]:
    """Feature extraction answers one vector per input; a single flat vector is one input's."""
    if not isinstance(body, list) or not body:
        raise ValueError("feature-extraction response is not a list of vectors")
    if all(isinstance(v, int | float) for v in body):
        return [body]
    if all(isinstance(v, list) and all(isinstance(x, int | float) for x in v) for v in body):
        return body
    raise ValueError(
        "feature-extraction returned token-level vectors (no pooling): use a sentence-embedding model"
    )


def parse_embeddings(body: Json, ctx: CallContext) -> Json:
    # The pipeline reports no token count: the prompt's size is estimated.
    tokens = estimate_tokens(ctx.prompt_text)
    return embedding_list(_vectors(body), ctx.model, Usage(tokens, 0, tokens, estimated=True))


def native_usage(body: Any) -> Usage | None:
    return usage_from_openai(body)


# --- errors -------------------------------------------------------------------------------------


def _error_message(error: Any) -> str | None:
    if isinstance(error, str) and error:
        return error
    if isinstance(error, list) and error and all(isinstance(e, str) for e in error):
        return "; ".join(error)
    return None


def parse_error(status: int, body: Json) -> ErrorInfo | None:
    """``{"error": "..."}`` (a list of messages for some validation errors), with ``error_type``
    from TGI or ``estimated_time`` while a model loads; the router's OpenAI-shaped errors too."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        code = error.get("code")
        kind = error.get("type")
        param = error.get("param")
        return ErrorInfo(
            error["message"],
            kind if isinstance(kind, str) else None,
            str(code) if code is not None else None,
            param if isinstance(param, str) else None,
        )
    message = _error_message(error) or _error_message(body.get("message"))
    if message is None:
        return None
    code = body.get("error_type") if isinstance(body.get("error_type"), str) else None
    wait = body.get("estimated_time")
    if isinstance(wait, int | float) and not isinstance(wait, bool):
        message = f"{message} (estimated time {wait:g} s)"
        code = code or "model_loading"
    return ErrorInfo(message, None, code)


# --- stream -------------------------------------------------------------------------------------


class HuggingFaceStream(StreamTranslatorBase):
    """TGI / router OpenAI SSE, normalised.

    Every chunk gets one id, one model and one creation time (TGI sends empty ids); usage, which TGI
    may attach to the last choice chunk, always travels in a chunk of its own, sent only to clients
    that asked for it. Completions turn each delta's content into a text chunk.
    """

    provider = PROVIDER

    def __init__(self, ctx: CallContext) -> None:
        super().__init__(ctx)
        self._identified = False
        self._finish: str | None = None
        self._tool_calls = False

    def on_event(self, event: SSEEvent) -> list[bytes]:
        if event.data == "[DONE]":
            return self._done()
        if not event.data:
            return []
        data = orjson.loads(event.data)
        if not isinstance(data, dict):
            return []
        if data.get("error") is not None and not data.get("choices"):
            info = parse_error(500, data) or ErrorInfo("the huggingface stream reported an error")
            return self.fail(info.message, info.type or "api_error", info.code or "upstream_error")
        self._identify(data)
        usage = usage_from_openai(data)
        if usage is not None:
            self.usage = usage
        choices = [c for c in data.get("choices") or () if isinstance(c, dict)]
        if not choices:
            return []  # a usage-only chunk: re-sent at the end to clients that asked
        if self.out.completions:
            return self._as_text(choices[0])
        return self._passthrough(data, choices)

    def _identify(self, data: dict[str, Any]) -> None:
        """The first chunk names the response for all of them."""
        if self._identified:
            return
        self._identified = True
        if isinstance(data.get("id"), str) and data["id"]:
            self.out.id = data["id"]
        if isinstance(data.get("model"), str) and data["model"]:
            self.out.model = self.response_model = data["model"]
        self.out.created = _created(data, self.ctx)

    def _passthrough(self, data: dict[str, Any], choices: list[dict[str, Any]]) -> list[bytes]:
        out_choices = []
        for choice in choices:
            delta = _message(choice.get("delta") or {}, stream=True)
            self._tool_calls = self._tool_calls or bool(delta.get("tool_calls"))
            if isinstance(delta.get("content"), str) and delta["content"]:
                self.tally.add(delta["content"])
            self.out.transcript.openai_delta({"delta": delta})
            reason = finish_reason(choice.get("finish_reason"), self._tool_calls)
            if reason is not None:
                self._finish = reason
            out_choice = {**choice, "delta": delta, "finish_reason": reason}
            stop_sequence = matched_stop(self.ctx, choice.get("finish_reason") == STOP_SEQUENCE)
            if stop_sequence is not None:
                out_choice[STOP_SEQUENCE_KEY] = stop_sequence
            out_choices.append(out_choice)
        chunk = {k: v for k, v in data.items() if k != "usage"}
        chunk.update(
            id=self.out.id,
            object="chat.completion.chunk",
            created=self.out.created,
            model=self.out.model,
            choices=out_choices,
        )
        return [sse_frame(orjson.dumps(chunk))]

    def _as_text(self, choice: dict[str, Any]) -> list[bytes]:
        delta = choice.get("delta") or {}
        reason = finish_reason(choice.get("finish_reason"))
        if reason is not None:
            self._finish = "stop" if reason == "tool_calls" else reason
        text = delta.get("content")
        return self.content(text) if isinstance(text, str) else []

    def _done(self) -> list[bytes]:
        if self.out.completions:
            return self.end(self._finish or "stop")
        # Chat chunks already carried the finish reason: only the usage chunk and the end remain.
        self._ended = True
        self.finish_reason = self._finish
        return [*self.final_usage(), DONE]


# --- spec ---------------------------------------------------------------------------------------


SPECS = (
    ProviderSpec(
        PROVIDER,
        fixed_base_url(BASE_URL),
        {
            "llm/v1/chat": RouteTransform(build_chat, parse_chat, HuggingFaceStream),
            "llm/v1/completions": RouteTransform(build_completions, parse_completions, HuggingFaceStream),
            "llm/v1/embeddings": RouteTransform(build_embeddings, parse_embeddings),
        },
        parse_error,
        native_usage=native_usage,
    ),
)
