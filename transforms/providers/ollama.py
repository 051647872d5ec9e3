"""Ollama's native API: /api/chat, /api/generate and /api/embed (also mistral and llama2 with format ollama).

Ollama streams NDJSON by default, so ``stream`` is always sent explicitly. Tool-call arguments travel
as JSON objects (OpenAI's are JSON strings), images as bare base64 on the message, and token counts
as ``prompt_eval_count`` / ``eval_count``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from transforms.chunks import StreamTranslatorBase
from transforms.common import (
    content_parts,
    dumps_arguments,
    image_url_of,
    parse_data_url,
    refuse,
    requires_upstream_url,
    tool_arguments,
)
from transforms.errors import bad_request
from transforms.reasoning import Reasoning, reasoning_of
from transforms.types import (
    CallContext,
    ErrorInfo,
    Json,
    ProviderRequest,
    ProviderSpec,
    RouteTransform,
    Usage,
)
from transforms.usage import estimate_usage, token_count

CHAT_PATH = "/api/chat"
GENERATE_PATH = "/api/generate"
EMBED_PATH = "/api/embed"

# OpenAI sampling fields that keep their name inside Ollama's ``options``.
_SAME_NAME_OPTIONS = ("temperature", "top_p", "top_k", "seed", "presence_penalty", "frequency_penalty")
# Ollama's done_reason -> OpenAI's finish_reason ("load"/"unload" only answer empty requests).
_FINISH = {"stop": "stop", "length": "length", "load": "stop", "unload": "stop"}


def provider_label(ctx: CallContext) -> str:
    """How refusals name the provider: mistral and llama2 reach Ollama through a format option."""
    if ctx.provider == "ollama":
        return "ollama"
    return f"{ctx.provider} ({ctx.provider}_format: ollama)"


# --- request -------------------------------------------------------------------------------------


def _options(body: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        options["num_predict"] = max_tokens
    for name in _SAME_NAME_OPTIONS:
        if body.get(name) is not None:
            options[name] = body[name]
    stop = body.get("stop")
    if stop is not None:
        options["stop"] = [stop] if isinstance(stop, str) else list(stop)
    return options


def _refuse_common(body: dict[str, Any], label: str) -> None:
    """OpenAI fields Ollama has no way to honour; each would change the answer if dropped."""
    if (body.get("n") or 1) > 1:
        raise refuse(label, "n", "greater than 1 is not supported")
    logprobs = body.get("logprobs")  # chat: a boolean; completions: a count, where 0 still asks
    if logprobs is not None and logprobs is not False:
        raise refuse(label, "logprobs")
    if body.get("top_logprobs") is not None:
        raise refuse(label, "top_logprobs")
    if body.get("logit_bias"):
        raise refuse(label, "logit_bias")


def _base(body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
    out: dict[str, Any] = {"model": ctx.model, "stream": ctx.stream}
    options = _options(body)
    if options:
        out["options"] = options
    reasoning = reasoning_of(body)
    if reasoning is not None:
        out["think"] = think(reasoning, ctx.model)
    return out


# gpt-oss takes a thinking level instead of on/off.
_THINK_LEVELS = {"minimal": "low", "low": "low", "medium": "medium"}


def think(reasoning: Reasoning, model: str) -> bool | str:
    """Ollama's ``think``: off for effort none, a level for gpt-oss models, else on."""
    if reasoning.off:
        return False
    if "gpt-oss" in model.lower():
        return _THINK_LEVELS.get(reasoning.effort or "medium", "high")
    return True


def _image(part: dict[str, Any], where: str, label: str) -> str:
    url = image_url_of(part)
    parsed = parse_data_url(url)
    if parsed is None:
        raise bad_request(
            f"'{where}': the {label} provider needs inline images (data:<mime>;base64,... URLs), "
            "not links to fetch"
        )
    return parsed[1]


def _user_content(content: Any, where: str, label: str) -> tuple[str, list[str]]:
    """Text (parts joined by a newline) and the base64 images of a message."""
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    images: list[str] = []
    for j, part in enumerate(content_parts(content)):
        kind = part.get("type")
        if kind == "text":
            texts.append(part.get("text", ""))
        elif kind == "image_url":
            images.append(_image(part, f"{where}.content[{j}]", label))
        else:
            raise refuse(label, f"{where}.content[{j}].type", f"'{kind}' is not supported")
    return "\n".join(texts), images


def _text_only(content: Any, where: str, label: str) -> str:
    text, images = _user_content(content, where, label)
    if images:
        raise refuse(label, f"{where}.content", "with images is not supported for this role")
    return text


def _assistant_tool_calls(calls: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    out = []
    for k, call in enumerate(calls):
        function = call.get("function") or {}
        out.append(
            {
                "id": call["id"],
                "function": {
                    "name": function.get("name"),
                    "arguments": tool_arguments(function.get("arguments"), f"{where}.tool_calls[{k}]"),
                },
            }
        )
    return out


def _message(message: dict[str, Any], where: str, tool_names: dict[str, str], label: str) -> dict[str, Any]:
    role = message["role"]
    content = message.get("content")
    if role in ("system", "developer"):
        return {"role": "system", "content": _text_only(content, where, label)}
    if role == "user":
        text, images = _user_content(content, where, label)
        out: dict[str, Any] = {"role": "user", "content": text}
        if images:
            out["images"] = images
        return out
    if role == "assistant":
        out = {"role": "assistant", "content": _text_only(content, where, label)}
        calls = message.get("tool_calls")
        if calls:
            out["tool_calls"] = _assistant_tool_calls(calls, where)
            for call in calls:
                tool_names[call["id"]] = (call.get("function") or {}).get("name", "")
        return out
    if role == "tool":
        out = {"role": "tool", "content": _text_only(content, where, label)}
        call_id = message.get("tool_call_id")
        if call_id and tool_names.get(call_id):
            out["tool_name"] = tool_names[call_id]
        if call_id:
            out["tool_call_id"] = call_id
        return out
    # Legacy OpenAI function results carry the function's name themselves.
    out = {"role": "tool", "content": _text_only(content, where, label)}
    if message.get("name"):
        out["tool_name"] = message["name"]
    return out


def _format(response_format: Any) -> Any:
    """OpenAI's response_format as Ollama's ``format`` ("json" or a JSON schema); None for text."""
    if not isinstance(response_format, dict) or response_format.get("type") in (None, "text"):
        return None
    if response_format["type"] == "json_object":
        return "json"
    schema = (response_format.get("json_schema") or {}).get("schema")
    if not isinstance(schema, dict):
        raise bad_request("'response_format.json_schema.schema' is required for type json_schema")
    return schema


def _tools(body: dict[str, Any], label: str) -> list[dict[str, Any]] | None:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if choice == "required" or isinstance(choice, dict):
        named = choice if isinstance(choice, str) else "function"
        raise refuse(label, "tool_choice", f"'{named}' is not supported")
    if body.get("parallel_tool_calls") is False and tools:
        raise refuse(label, "parallel_tool_calls", "set to false is not supported")
    if not tools or choice == "none":
        return None  # with tool_choice "none" the model must not see the tools at all
    out = []
    for tool in tools:
        function = {k: v for k, v in tool["function"].items() if k != "strict"}
        out.append({"type": "function", "function": function})
    return out


def build_chat(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    label = provider_label(ctx)
    _refuse_common(body, label)
    tool_names: dict[str, str] = {}
    messages = [
        _message(message, f"messages[{i}]", tool_names, label) for i, message in enumerate(body["messages"])
    ]
    out = _base(body, ctx)
    out["messages"] = messages
    tools = _tools(body, label)
    if tools:
        out["tools"] = tools
    fmt = _format(body.get("response_format"))
    if fmt is not None:
        out["format"] = fmt
    return ProviderRequest(out, CHAT_PATH)


def _single_prompt(prompt: Any, label: str) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        return prompt[0]
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        raise refuse(label, "prompt", "as a list of several prompts is not supported")
    raise refuse(label, "prompt", "as token ids is not supported")


def build_generate(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    label = provider_label(ctx)
    _refuse_common(body, label)
    if body.get("echo"):
        raise refuse(label, "echo")
    if (body.get("best_of") or 1) > 1:
        raise refuse(label, "best_of", "greater than 1 is not supported")
    out = _base(body, ctx)
    out["prompt"] = _single_prompt(body["prompt"], label)
    if body.get("suffix"):
        out["suffix"] = body["suffix"]
    return ProviderRequest(out, GENERATE_PATH)


def build_embed(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    label = provider_label(ctx)
    value = body["input"]
    if not isinstance(value, str) and not all(isinstance(v, str) for v in value):
        raise refuse(label, "input", "as token ids is not supported")
    out: dict[str, Any] = {"model": ctx.model, "input": value}
    if body.get("dimensions") is not None:
        out["dimensions"] = body["dimensions"]
    return ProviderRequest(out, EMBED_PATH)


# --- response ------------------------------------------------------------------------------------


def unix_time(created_at: Any, fallback: int) -> int:
    """Ollama's RFC 3339 ``created_at`` (nanosecond precision) as unix seconds."""
    if not isinstance(created_at, str) or not created_at:
        return fallback
    try:
        seconds = int(datetime.fromisoformat(created_at).timestamp())
    except ValueError:
        return fallback
    return seconds if seconds > 0 else fallback  # Go's zero time means "not set"


def _count(body: dict[str, Any], key: str) -> int:
    value = body.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def usage_of(body: Any) -> Usage | None:
    """Token counts of a final Ollama object; None (estimated by the caller) unless it reports both:
    Ollama leaves ``prompt_eval_count`` out when the prompt came from its cache."""
    if not isinstance(body, dict) or token_count(body.get("prompt_eval_count")) is None:
        return None
    if token_count(body.get("eval_count")) is None:
        return None
    prompt = _count(body, "prompt_eval_count")
    completion = _count(body, "eval_count")
    return Usage(prompt, completion, prompt + completion)


def finish_reason(done_reason: Any, has_tool_calls: bool) -> str:
    reason = _FINISH.get(done_reason, "stop") if isinstance(done_reason, str) else "stop"
    return "tool_calls" if reason == "stop" and has_tool_calls else reason


def tool_call_id(call: dict[str, Any], ctx: CallContext, index: int) -> str:
    given = call.get("id")
    return given if isinstance(given, str) and given else f"call_{ctx.request_id}_{index}"


def openai_tool_calls(calls: Any, ctx: CallContext, first_index: int = 0) -> list[dict[str, Any]]:
    out = []
    for i, call in enumerate(calls or ()):
        function = call["function"]
        out.append(
            {
                "id": tool_call_id(call, ctx, first_index + i),
                "type": "function",
                "function": {
                    "name": function["name"],
                    "arguments": dumps_arguments(function.get("arguments")),
                },
            }
        )
    return out


def _checked(body: Json, key: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValueError("the ollama response is not a JSON object")
    if isinstance(body.get("error"), str):
        raise ValueError(body["error"])
    if key not in body:
        raise ValueError(f"'{key}' not in the ollama response")
    return body


def _envelope(body: dict[str, Any], ctx: CallContext, obj: str, prefix: str) -> dict[str, Any]:
    return {
        "id": prefix + ctx.request_id,
        "object": obj,
        "created": unix_time(body.get("created_at"), ctx.created),
        "model": body.get("model") or ctx.model,
    }


def parse_chat(body: Json, ctx: CallContext) -> Json:
    body = _checked(body, "message")
    message = body["message"]
    if not isinstance(message, dict):
        raise ValueError("'message' in the ollama response is not an object")
    calls = openai_tool_calls(message.get("tool_calls"), ctx)
    content = message.get("content") or ""
    out_message: dict[str, Any] = {"role": "assistant", "content": content if content or not calls else None}
    if calls:
        out_message["tool_calls"] = calls
    if message.get("thinking"):
        out_message["reasoning_content"] = message["thinking"]
    out = _envelope(body, ctx, "chat.completion", "chatcmpl-")
    out["choices"] = [
        {
            "index": 0,
            "message": out_message,
            "logprobs": None,
            "finish_reason": finish_reason(body.get("done_reason"), bool(calls)),
        }
    ]
    usage = usage_of(body)
    if usage is not None:
        out["usage"] = usage.as_openai()
    return out


def parse_generate(body: Json, ctx: CallContext) -> Json:
    body = _checked(body, "response")
    out = _envelope(body, ctx, "text_completion", "cmpl-")
    out["choices"] = [
        {
            "index": 0,
            "text": body["response"] or "",
            "logprobs": None,
            "finish_reason": finish_reason(body.get("done_reason"), False),
        }
    ]
    usage = usage_of(body)
    if usage is not None:
        out["usage"] = usage.as_openai()
    return out


def parse_embed(body: Json, ctx: CallContext) -> Json:
    # Vectors stay floats: a base64 request (the openai SDK's default) decodes float lists as well.
    body = _checked(body, "embeddings")
    data = [
        {"object": "embedding", "index": i, "embedding": vector}
        for i, vector in enumerate(body["embeddings"])
    ]
    prompt = token_count(body.get("prompt_eval_count"))
    usage = Usage(prompt, 0, prompt) if prompt is not None else estimate_usage(ctx.prompt_text, 0)
    return {
        "object": "list",
        "data": data,
        "model": body.get("model") or ctx.model,
        "usage": {k: v for k, v in usage.as_openai().items() if k != "completion_tokens"},
    }


# --- stream --------------------------------------------------------------------------------------


class OllamaStream(StreamTranslatorBase):
    """NDJSON objects -> OpenAI chunks; the ``done: true`` object carries the reason and counts."""

    framing = "ndjson"
    provider = "ollama"

    def __init__(self, ctx: CallContext) -> None:
        super().__init__(ctx)
        self._started = False
        self._tool_calls = 0

    def _first(self, event: dict[str, Any]) -> None:
        # Chunks carry the model and time the upstream reported, as the non-streamed answer does.
        self._started = True
        if isinstance(event.get("model"), str) and event["model"]:
            self.response_model = self.out.model = event["model"]
        self.out.created = unix_time(event.get("created_at"), self.ctx.created)

    def on_event(self, event: Any) -> list[bytes]:
        if not isinstance(event, dict):
            return self.fail("the ollama stream sent something other than a JSON object")
        if "error" in event:
            error = event["error"]
            return self.fail(error if isinstance(error, str) and error else "the ollama stream failed")
        if not self._started:
            self._first(event)
        frames: list[bytes] = []
        message = event.get("message")
        if isinstance(message, dict):
            if isinstance(message.get("thinking"), str):
                frames += self.out.reasoning(message["thinking"])
            if isinstance(message.get("content"), str):
                frames += self.content(message["content"])
            frames += self._tool_call_frames(message.get("tool_calls"))
        elif isinstance(event.get("response"), str):
            frames += self.content(event["response"])
        if event.get("done") is True:
            self.usage = usage_of(event)
            frames += self.end(finish_reason(event.get("done_reason"), self.out.has_tool_calls()))
        return frames

    def _tool_call_frames(self, calls: Any) -> list[bytes]:
        # Ollama sends each call whole, arguments included, so one chunk opens and fills it.
        frames: list[bytes] = []
        for call in openai_tool_calls(calls, self.ctx, self._tool_calls):
            key = self._tool_calls
            self._tool_calls += 1
            function = call["function"]
            frames += self.out.tool_call_start(key, call["id"], function["name"], function["arguments"])
        return frames


def new_stream(ctx: CallContext) -> OllamaStream:
    return OllamaStream(ctx)


# --- errors, url, spec ---------------------------------------------------------------------------


def parse_error(status: int, body: Json) -> ErrorInfo | None:
    """Ollama answers ``{"error": "<message>"}``; its OpenAI-compatible layer nests an object."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, str) and error:
        return ErrorInfo(error)
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return ErrorInfo(error["message"])
    return None


SPECS = (
    ProviderSpec(
        "ollama",
        requires_upstream_url("the ollama format"),
        {
            "llm/v1/chat": RouteTransform(build_chat, parse_chat, new_stream),
            "llm/v1/completions": RouteTransform(build_generate, parse_generate, new_stream),
            "llm/v1/embeddings": RouteTransform(build_embed, parse_embed),
        },
        parse_error,
        native_usage=usage_of,
    ),
)
