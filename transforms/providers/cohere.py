"""Cohere's v2 API behind OpenAI's chat, completions and embeddings formats, streams included.

Chat and completions go to ``/v2/chat``, embeddings to ``/v2/embed``. Messages keep OpenAI's roles
(developer becomes system); text and image parts, tool calls and tool results have the same shape
in both APIs apart from names. Sampling fields are renamed (top_p -> p, top_k -> k, stop ->
stop_sequences), a JSON ``response_format`` becomes Cohere's ``json_object`` with an optional
``json_schema``, and a client's top-level ``documents`` pass through for grounded answers.
What Cohere cannot express (several choices, log probabilities, a named tool_choice...) is refused.
Field names follow the ``cohere`` SDK's v2 types.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from transforms.chunks import SSEEvent, StreamTranslatorBase
from transforms.common import (
    check_fields,
    content_parts,
    embedding_list,
    embedding_texts,
    fixed_base_url,
    image_url_of,
    matched_stop,
    parse_data_url,
    refuse,
    tool_arguments,
)
from transforms.config import ModelOptions
from transforms.errors import GatewayError, bad_request
from transforms.reasoning import REASONING_FIELDS, reasoning_of
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
from transforms.usage import estimate_usage

PROVIDER = "cohere"
BASE_URL = "https://api.cohere.com"
CHAT_PATH = "/v2/chat"
EMBED_PATH = "/v2/embed"
DEFAULT_INPUT_TYPE = "search_document"
# Cohere's nucleus sampling accepts 0.01..0.99; OpenAI's top_p is 0..1.
_P_RANGE = (0.01, 0.99)

# --- which client fields are translated, harmless, or refused --------------------------------------

# Fields that only change how OpenAI stores, bills or traces a call, never the answer itself.
_IGNORED = frozenset(
    {"model", "stream", "stream_options", "user", "store", "metadata", "service_tier", "safety_identifier"}
)
# Fields whose neutral value is fine and any other value is refused: name -> (is_neutral, why).
_NEUTRAL: Mapping[str, tuple[Callable[[Any], bool], str]] = {
    "n": (lambda v: v == 1, "above 1 is not supported"),
    "best_of": (lambda v: v == 1, "above 1 is not supported"),
    "logprobs": (lambda v: v is False, "is not supported"),
    "top_logprobs": (lambda v: v == 0, "is not supported"),
    "logit_bias": (lambda v: v == {}, "is not supported"),
    "parallel_tool_calls": (lambda v: v is True, "set to false is not supported"),
    "modalities": (lambda v: v == ["text"], "other than ['text'] is not supported"),
    "echo": (lambda v: v is False, "is not supported"),
    "suffix": (lambda v: v == "", "is not supported"),
}
_COMMON_FIELDS = frozenset(
    {
        "max_tokens",
        "stop",
        "temperature",
        "top_p",
        "top_k",
        "seed",
        "frequency_penalty",
        "presence_penalty",
    }
)
_CHAT_FIELDS = (
    _COMMON_FIELDS
    | {
        "messages",
        "max_completion_tokens",
        "tools",
        "tool_choice",
        "response_format",
        "documents",
    }
    | REASONING_FIELDS
)
_COMPLETIONS_FIELDS = _COMMON_FIELDS | {"prompt"}
_EMBEDDINGS_FIELDS = frozenset({"input", "dimensions", "encoding_format"})


def _check_fields(body: Mapping[str, Any], translated: frozenset[str]) -> None:
    check_fields(PROVIDER, body, translated, _IGNORED, _NEUTRAL)


# --- request: parameters ------------------------------------------------------------------------


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        if body.get(name) is not None:
            return body[name]
    return None


def _penalty(body: Mapping[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is not None and not 0 <= value <= 1:
        raise refuse(PROVIDER, name, "outside 0..1 is not supported")
    return value


def _sampling(body: Mapping[str, Any], out: dict[str, Any]) -> None:
    """Sampling and length fields under their Cohere names."""
    fields: dict[str, Any] = {
        "max_tokens": _max_tokens(body),
        "temperature": body.get("temperature"),
        "k": body.get("top_k"),
        "seed": body.get("seed"),
        "frequency_penalty": _penalty(body, "frequency_penalty"),
        "presence_penalty": _penalty(body, "presence_penalty"),
    }
    top_p = body.get("top_p")
    if top_p is not None:
        # The nearest value Cohere accepts: 1.0 (no nucleus cut) is 0.99 there.
        fields["p"] = min(max(top_p, _P_RANGE[0]), _P_RANGE[1])
    stop = body.get("stop")
    if stop:
        fields["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    out.update((k, v) for k, v in fields.items() if v is not None)


# --- request: messages --------------------------------------------------------------------------


def _text_part(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    text = part.get("text")
    if not isinstance(text, str):
        raise bad_request(f"{where}: message part type is 'text' but is missing .text")
    return {"type": "text", "text": text}


def _refusal_part(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    """An assistant's earlier refusal, replayed as the text it was."""
    return _text_part({"text": part.get("refusal")}, where)


def _image_part(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    url = image_url_of(part)
    if parse_data_url(url) is None and not url.startswith(("https://", "http://")):
        raise bad_request(f"{where}.image_url: only data: and http(s) URLs are supported")
    image: dict[str, Any] = {"url": url}
    value = part.get("image_url")
    if isinstance(value, dict) and value.get("detail") is not None:
        image["detail"] = value["detail"]
    return {"type": "image_url", "image_url": image}


_PartBuilder = Callable[[Mapping[str, Any], str], dict[str, Any]]
_USER_PARTS: Mapping[str, _PartBuilder] = {"text": _text_part, "image_url": _image_part}
_TEXT_PARTS: Mapping[str, _PartBuilder] = {"text": _text_part}
_ASSISTANT_PARTS: Mapping[str, _PartBuilder] = {"text": _text_part, "refusal": _refusal_part}


def _content(content: Any, where: str, allowed: Mapping[str, _PartBuilder]) -> str | list[dict[str, Any]]:
    """OpenAI content as Cohere content: a string stays a string, parts become Cohere parts."""
    if isinstance(content, str):
        return content
    parts = []
    for j, part in enumerate(content_parts(content)):
        kind = part.get("type")
        build = allowed.get(kind) if isinstance(kind, str) else None
        if build is None:
            raise refuse(PROVIDER, f"{where}.content[{j}]", f"of type '{kind}' is not supported")
        parts.append(build(part, f"{where}.content[{j}]"))
    return parts


def _plain_text(content: Any, where: str) -> str:
    """Text parts joined, for fields that take a string only (tool_plan)."""
    parts = _content(content, where, _ASSISTANT_PARTS)
    return parts if isinstance(parts, str) else "".join(p["text"] for p in parts)


def _tool_call(call: Mapping[str, Any], where: str) -> dict[str, Any]:
    if call.get("type", "function") != "function":
        raise refuse(PROVIDER, f"{where}.type", f"'{call.get('type')}' is not supported")
    function = call["function"]
    arguments = function.get("arguments")
    tool_arguments(arguments, where)  # a malformed call is the client's error, said here
    return {
        "id": call["id"],
        "type": "function",
        "function": {"name": function["name"], "arguments": arguments or "{}"},
    }


def _assistant(message: Mapping[str, Any], where: str) -> dict[str, Any]:
    if message.get("function_call") is not None:
        raise refuse(PROVIDER, f"{where}.function_call", "(legacy functions) is not supported")
    out: dict[str, Any] = {"role": "assistant"}
    calls = message.get("tool_calls") or ()
    content = message.get("content")
    if calls:
        out["tool_calls"] = [_tool_call(c, f"{where}.tool_calls[{k}]") for k, c in enumerate(calls)]
        # Text written before tool calls is what Cohere calls the tool plan.
        plan = _plain_text(content, where) if content is not None else ""
        if plan:
            out["tool_plan"] = plan
    elif content is not None:
        out["content"] = _content(content, where, _ASSISTANT_PARTS)
    return out


def _tool_result(message: Mapping[str, Any], where: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise bad_request(f"{where}: a tool message needs a tool_call_id")
    content = message.get("content")
    return {
        "role": "tool",
        "tool_call_id": call_id,
        "content": _content(content if content is not None else "", where, _TEXT_PARTS),
    }


def _message(message: Mapping[str, Any], where: str) -> dict[str, Any]:
    role = message["role"]
    if role in ("system", "developer"):
        return {"role": "system", "content": _content(message.get("content") or "", where, _TEXT_PARTS)}
    if role == "user":
        return {"role": "user", "content": _content(message.get("content") or "", where, _USER_PARTS)}
    if role == "assistant":
        return _assistant(message, where)
    if role == "tool":
        return _tool_result(message, where)
    raise refuse(PROVIDER, f"{where}.role", f"'{role}' is not supported")


def convert_messages(messages: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [_message(m, f"messages[{i}]") for i, m in enumerate(messages)]


# --- request: tools, response_format, documents ---------------------------------------------------


def _tool(tool: Mapping[str, Any], where: str) -> dict[str, Any]:
    function = tool["function"]
    out: dict[str, Any] = {
        "name": function["name"],
        "parameters": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        out["description"] = function["description"]
    return {"type": "function", "function": out}


def _tool_choice(choice: Any) -> str | None:
    if choice == "required":
        return "REQUIRED"
    if choice == "none":
        return "NONE"
    if choice == "auto":
        return None  # Cohere's default: the model decides
    raise refuse(PROVIDER, "tool_choice", "naming a function is not supported")


def _response_format(response_format: Any) -> dict[str, Any] | None:
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind in (None, "text"):
        return None
    out: dict[str, Any] = {"type": "json_object"}
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if schema:
            out["json_schema"] = schema
    return out


def _tools(body: Mapping[str, Any], out: dict[str, Any]) -> None:
    """tools (strict when any tool asks for it), tool_choice and response_format."""
    tools = body.get("tools") or ()
    if tools:
        out["tools"] = [_tool(t, f"tools[{k}]") for k, t in enumerate(tools)]
        if any(t["function"].get("strict") is True for t in tools):
            out["strict_tools"] = True
    if body.get("tool_choice") is not None:
        choice = _tool_choice(body["tool_choice"])
        if choice is not None:
            out["tool_choice"] = choice
    response_format = _response_format(body.get("response_format"))
    if response_format is not None:
        out["response_format"] = response_format


def _documents(body: Mapping[str, Any], out: dict[str, Any]) -> None:
    """Cohere's grounding documents, given by a client that knows it talks to Cohere."""
    documents = body.get("documents")
    if documents is None:
        return
    if not isinstance(documents, list) or not all(isinstance(d, str | dict) for d in documents):
        raise bad_request("'documents' must be a list of strings or objects for the cohere provider")
    out["documents"] = documents


# --- request: builders --------------------------------------------------------------------------


def _chat_body(body: Mapping[str, Any], ctx: CallContext, messages: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"model": ctx.model, "messages": messages}
    _sampling(body, out)
    if ctx.stream:
        out["stream"] = True
    return out


def build_chat(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    _check_fields(body, _CHAT_FIELDS)
    out = _chat_body(body, ctx, convert_messages(body["messages"]))
    _tools(body, out)
    _documents(body, out)
    reasoning = reasoning_of(body)
    if reasoning is not None:
        # Cohere's reasoning models (command-a-reasoning) take a token budget, or thinking off.
        out["thinking"] = (
            {"type": "disabled"} if reasoning.off else {"type": "enabled", "token_budget": reasoning.tokens}
        )
    return ProviderRequest(out, CHAT_PATH)


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise refuse(PROVIDER, "prompt", "other than one text prompt is not supported")
    return prompt


def build_completions(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    _check_fields(body, _COMPLETIONS_FIELDS)
    messages = [{"role": "user", "content": _prompt_text(body.get("prompt"))}]
    return ProviderRequest(_chat_body(body, ctx, messages), CHAT_PATH)


def _input_type(options: ModelOptions) -> str:
    cohere = options.cohere
    return cohere.embedding_input_type if cohere is not None else DEFAULT_INPUT_TYPE


def build_embeddings(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    _check_fields(body, _EMBEDDINGS_FIELDS)
    out: dict[str, Any] = {
        "model": ctx.model,
        "texts": embedding_texts(body["input"], PROVIDER),
        "input_type": _input_type(ctx.options),
        "embedding_types": ["float"],
    }
    if body.get("dimensions") is not None:
        out["output_dimension"] = body["dimensions"]
    return ProviderRequest(out, EMBED_PATH)


# --- response -----------------------------------------------------------------------------------

STOP_SEQUENCE = "STOP_SEQUENCE"
_FINISH = {
    "COMPLETE": "stop",
    STOP_SEQUENCE: "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}
# Finish reasons that mean the generation failed: (HTTP status for a whole answer, description).
_FAILED = {"ERROR": (502, "failed"), "TIMEOUT": (504, "timed out")}


def finish_reason(reason: Any, completions: bool = False) -> str:
    mapped = _FINISH.get(reason, "stop") if isinstance(reason, str) else "stop"
    return "stop" if completions and mapped == "tool_calls" else mapped


def failure_message(reason: Any, error: Any = None) -> str | None:
    """The message for a generation Cohere reports as failed, or None when it did not fail."""
    if isinstance(error, str) and error:
        return error
    if reason in _FAILED:
        return f"the cohere generation {_FAILED[reason][1]} (finish_reason {reason})"
    return None


def _count(value: Any) -> int:
    # The SDK types counts as floats; the API sends whole numbers.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value)


def usage_of(usage: Any, prompt_only: bool = False) -> Usage | None:
    """Counts from Cohere's usage object (v2 ``usage``, or v1 and v2-embed ``meta``): what Cohere bills
    (``billed_units``), as Kong and the invoice count, and the real ``tokens`` for any count it does
    not bill. ``cached_tokens`` counts real tokens, so it is reported only beside a real prompt count
    (a billed count is in other units: cached could exceed it). None when a count is missing from
    both (``prompt_only``: embeddings, which have no output count): the caller estimates."""
    if not isinstance(usage, dict):
        return None
    billed = usage.get("billed_units") if isinstance(usage.get("billed_units"), dict) else {}
    tokens = usage.get("tokens") if isinstance(usage.get("tokens"), dict) else {}
    prompt, prompt_billed = _first_count(billed, tokens, "input_tokens")
    completion, _ = _first_count(billed, tokens, "output_tokens")
    if prompt is None or (completion is None and not prompt_only):
        return None
    completion = completion or 0
    cached = 0 if prompt_billed else min(_count(usage.get("cached_tokens")), prompt)
    return Usage(prompt, completion, prompt + completion, cached_tokens=cached)


def _first_count(billed: dict[str, Any], tokens: dict[str, Any], key: str) -> tuple[int | None, bool]:
    """(count, whether it is billed units) from the billed units, else the real tokens."""
    for counts, is_billed in ((billed, True), (tokens, False)):
        value = counts.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value), is_billed
    return None, False


def body_usage(body: Any, prompt_only: bool = False) -> Usage | None:
    """Usage of a whole answer: v2 chat carries ``usage``, v1 chat and the embed endpoints ``meta``."""
    if not isinstance(body, dict):
        return None
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else body.get("meta")
    return usage_of(usage, prompt_only)


def native_usage(body: Any) -> Usage | None:
    """Usage of a native answer (untranslated llm_format traffic), v2 or v1."""
    return body_usage(body)


def _chat_response(body: Json) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("message"), dict):
        raise ValueError("'message' not in cohere chat response")
    failed = failure_message(body.get("finish_reason"))
    if failed is not None:
        status = _FAILED[body["finish_reason"]][0]
        raise GatewayError(status, failed, "upstream_error")
    return body


def _read_content(items: Any) -> tuple[str, str]:
    """(text, thinking) of an assistant message's content items."""
    text: list[str] = []
    thinking: list[str] = []
    for item in items or ():
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text":
            text.append(item.get("text") or "")
        elif kind == "thinking":
            thinking.append(item.get("thinking") or "")
    return "".join(text), "".join(thinking)


def _read_tool_calls(calls: Any) -> list[dict[str, Any]]:
    out = []
    for call in calls or ():
        function = call.get("function") or {}
        arguments = function.get("arguments") or "{}"
        out.append(
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": function["name"], "arguments": arguments},
            }
        )
    return out


def _envelope(body: dict[str, Any], ctx: CallContext, obj: str, choice: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": body.get("id") or None,
        "object": obj,
        "created": ctx.created,
        "model": ctx.model,  # Cohere's answer names no model
        "choices": [choice],
    }
    usage = body_usage(body)
    if usage is not None:
        out["usage"] = usage.as_openai()
    return out


def parse_chat(body: Json, ctx: CallContext) -> Json:
    reply = _chat_response(body)
    message = reply["message"]
    text, thinking = _read_content(message.get("content"))
    calls = _read_tool_calls(message.get("tool_calls"))
    # tool_plan (the model's note before calling tools) is not part of the answer.
    out_message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not calls else None,
        "refusal": None,
    }
    if calls:
        out_message["tool_calls"] = calls
    if thinking:
        out_message["reasoning_content"] = thinking
    choice = {
        "index": 0,
        "message": out_message,
        "logprobs": None,
        "finish_reason": finish_reason(reply.get("finish_reason")),
    }
    stop_sequence = matched_stop(ctx, reply.get("finish_reason") == STOP_SEQUENCE)  # not said which
    if stop_sequence is not None:
        choice[STOP_SEQUENCE_KEY] = stop_sequence
    return _envelope(reply, ctx, "chat.completion", choice)


def parse_completions(body: Json, ctx: CallContext) -> Json:
    reply = _chat_response(body)
    text, _ = _read_content(reply["message"].get("content"))
    choice = {
        "text": text,
        "index": 0,
        "logprobs": None,
        "finish_reason": finish_reason(reply.get("finish_reason"), completions=True),
    }
    return _envelope(reply, ctx, "text_completion", choice)


def parse_embeddings(body: Json, ctx: CallContext) -> Json:
    if not isinstance(body, dict) or not isinstance(body.get("embeddings"), dict):
        raise ValueError("'embeddings' not in cohere embed response")
    vectors = body["embeddings"].get("float")
    if not isinstance(vectors, list):
        raise ValueError("'embeddings.float' not in cohere embed response")
    # No billed count: an estimate from the input, marked as one, never a 0.
    return embedding_list(
        vectors, ctx.model, body_usage(body, prompt_only=True) or estimate_usage(ctx.prompt_text, 0)
    )


# --- errors -------------------------------------------------------------------------------------


def parse_error(status: int, body: Json) -> ErrorInfo | None:
    """``{"message": "..."}``, sometimes with an ``id``."""
    if isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"]:
        return ErrorInfo(body["message"])
    return None


# --- stream -------------------------------------------------------------------------------------


class CohereStream(StreamTranslatorBase):
    """v2 chat server-sent events -> OpenAI chunks.

    Text and thinking come as content blocks, each tool call as its own indexed block; the tool
    plan and citations are not part of the answer. ``message-end`` carries the finish reason and
    the usage.
    """

    provider = PROVIDER

    def __init__(self, ctx: CallContext) -> None:
        super().__init__(ctx)
        self.blocks: dict[Any, str] = {}  # content index -> "text" / "thinking"
        self.filled: set[Any] = set()  # tool calls that received argument text

    def on_event(self, event: SSEEvent) -> list[bytes]:
        if not event.data or event.data == "[DONE]":
            return []
        data = orjson.loads(event.data)
        if not isinstance(data, dict):
            return []
        handler = self._handlers.get(data.get("type") or event.event or "")
        return handler(self, data) if handler is not None else []

    @staticmethod
    def _message(data: dict[str, Any]) -> dict[str, Any]:
        delta = data.get("delta") or {}
        return delta.get("message") or {}

    def _message_start(self, data: dict[str, Any]) -> list[bytes]:
        if isinstance(data.get("id"), str) and data["id"]:
            self.out.id = data["id"]
        return self.out.start()

    def _text_or_thinking(self, index: Any, content: dict[str, Any]) -> list[bytes]:
        if content.get("thinking") is not None or self.blocks.get(index) == "thinking":
            return self.out.reasoning(content.get("thinking") or "")
        return self.content(content.get("text") or "")

    def _content_start(self, data: dict[str, Any]) -> list[bytes]:
        content = self._message(data).get("content") or {}
        index = data.get("index")
        self.blocks[index] = "thinking" if content.get("type") == "thinking" else "text"
        return [*self.out.start(), *self._text_or_thinking(index, content)]

    def _content_delta(self, data: dict[str, Any]) -> list[bytes]:
        content = self._message(data).get("content") or {}
        return self._text_or_thinking(data.get("index"), content)

    def _tool_call_start(self, data: dict[str, Any]) -> list[bytes]:
        call = self._message(data).get("tool_calls") or {}
        function = call.get("function") or {}
        index = data.get("index")
        arguments = function.get("arguments") or ""
        if arguments:
            self.filled.add(index)
        return self.out.tool_call_start(index, call["id"], function["name"], arguments)

    def _tool_call_delta(self, data: dict[str, Any]) -> list[bytes]:
        call = self._message(data).get("tool_calls") or {}
        fragment = (call.get("function") or {}).get("arguments") or ""
        index = data.get("index")
        if fragment:
            self.filled.add(index)
        return self.out.tool_call_arguments(index, fragment)

    def _tool_call_end(self, data: dict[str, Any]) -> list[bytes]:
        # A call without arguments streams no fragment; clients expect parseable arguments.
        index = data.get("index")
        return [] if index in self.filled else self.out.tool_call_arguments(index, "{}")

    def _message_end(self, data: dict[str, Any]) -> list[bytes]:
        delta = data.get("delta") or {}
        usage = usage_of(delta.get("usage"))
        if usage is not None:
            self.usage = usage
        reason = delta.get("finish_reason")
        failed = failure_message(reason, delta.get("error"))
        if failed is not None:
            return self.fail(failed)
        stopped_by = matched_stop(self.ctx, reason == STOP_SEQUENCE)
        return self.end(finish_reason(reason, completions=self.out.completions), stopped_by)

    _handlers: Mapping[str, Callable[[CohereStream, dict[str, Any]], list[bytes]]] = {
        "message-start": _message_start,
        "content-start": _content_start,
        "content-delta": _content_delta,
        "tool-call-start": _tool_call_start,
        "tool-call-delta": _tool_call_delta,
        "tool-call-end": _tool_call_end,
        "message-end": _message_end,
        # content-end, tool-plan-delta, citation-start/-end and debug carry nothing to translate.
    }


# --- spec ---------------------------------------------------------------------------------------


SPECS = (
    ProviderSpec(
        PROVIDER,
        fixed_base_url(BASE_URL),
        {
            "llm/v1/chat": RouteTransform(build_chat, parse_chat, CohereStream),
            "llm/v1/completions": RouteTransform(build_completions, parse_completions, CohereStream),
            "llm/v1/embeddings": RouteTransform(build_embeddings, parse_embeddings),
        },
        parse_error,
        native_usage=native_usage,
    ),
)
