"""Anthropic's Messages API behind OpenAI's chat and completions formats, both ways, streams too.

Requests become a new ``/v1/messages`` body: system and developer messages move to the top-level
``system``, tool calls and tool results become ``tool_use`` / ``tool_result`` blocks, consecutive
turns of one role are merged, and ``response_format`` is honoured through a forced tool whose input
is the JSON answer. Anything that would change the answer and has no Anthropic equivalent is
refused with a 400 naming the field. Field names follow the ``anthropic`` SDK's parameter types.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import Any

import orjson

from transforms.chunks import SSEEvent, StreamTranslatorBase
from transforms.common import (
    check_fields,
    content_parts,
    dumps_arguments,
    fixed_base_url,
    image_url_of,
    matched_stop,
    merge_turns,
    parse_data_url,
    refuse,
    tool_arguments,
)
from transforms.errors import bad_request
from transforms.limits import MAX_SEARCH_INPUT_CHARS, MAX_STREAM_TOOL_CALLS
from transforms.model_rules import claude_sampling
from transforms.reasoning import (
    REASONING_FIELDS,
    ThinkingCarrier,
    ThinkingText,
    claude_thinking,
    reasoning_of,
    replayed_turn,
    split_call_id,
)
from transforms.types import (
    STOP_SEQUENCE_KEY,
    WEB_SEARCH_KEY,
    CallContext,
    ErrorInfo,
    Json,
    ProviderRequest,
    ProviderSpec,
    RouteTransform,
    Usage,
)
from transforms.web_search import (
    WEB_SEARCH,
    required,
    search_call,
    search_options,
    source,
    url_citation,
    user_location,
)

PROVIDER = "anthropic"
BASE_URL = "https://api.anthropic.com"
MESSAGES_PATH = "/v1/messages"
DEFAULT_VERSION = "2023-06-01"
# Anthropic requires max_tokens; this is used when neither the client nor the route gives one.
DEFAULT_MAX_TOKENS = 4096
# The forced tool that carries a response_format answer. The name is reserved: a client tool of
# that name is refused, so a tool_use block with it can only be the JSON answer.
RESPONSE_TOOL = "ai_proxy_json_response"
_RESPONSE_TOOL_DESCRIPTION = (
    "Give your final answer by calling this tool: its input is the answer, as a JSON object "
    "that follows the input schema."
)
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
# Anthropic's server web search tool, offered for a chat request's web_search_options: it searches
# at Anthropic and answers with server_tool_use / web_search_tool_result blocks and cited text.
WEB_SEARCH_TOOL = "web_search_20250305"
WEB_SEARCH_NAME = "web_search"

# --- which client fields are translated, harmless, or refused --------------------------------------

# Fields that only change how OpenAI stores, bills or caches a call, never the answer itself.
# (OpenAI's own ``seed`` is best effort; Anthropic sampling cannot be seeded at all.)
_IGNORED = frozenset(
    {
        "model",
        "stream",
        "stream_options",
        "seed",
        "store",
        "metadata",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
    }
)
# Fields whose neutral value is fine and any other value is refused: name -> (is_neutral, why).
_NEUTRAL: Mapping[str, tuple[Callable[[Any], bool], str]] = {
    "n": (lambda v: v == 1, "above 1 is not supported"),
    "best_of": (lambda v: v == 1, "above 1 is not supported"),
    "logprobs": (lambda v: v is False, "is not supported"),
    "top_logprobs": (lambda v: v == 0, "is not supported"),
    "presence_penalty": (lambda v: v == 0, "is not supported"),
    "frequency_penalty": (lambda v: v == 0, "is not supported"),
    "logit_bias": (lambda v: v == {}, "is not supported"),
    "modalities": (lambda v: v == ["text"], "other than ['text'] is not supported"),
    "echo": (lambda v: v is False, "is not supported"),
    "suffix": (lambda v: v == "", "is not supported"),
}
_COMMON_FIELDS = frozenset(
    {"max_tokens", "stop", "temperature", "top_p", "top_k", "user", "safety_identifier"}
)
_CHAT_FIELDS = (
    _COMMON_FIELDS
    | {
        "messages",
        "max_completion_tokens",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "web_search_options",
    }
    | REASONING_FIELDS
)
_COMPLETIONS_FIELDS = _COMMON_FIELDS | {"prompt"}


def _check_fields(body: Mapping[str, Any], translated: frozenset[str]) -> None:
    check_fields(PROVIDER, body, translated, _IGNORED, _NEUTRAL)


# --- request: parameters ------------------------------------------------------------------------


def _max_tokens(body: Mapping[str, Any]) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is not None:
            return value
    return DEFAULT_MAX_TOKENS


def _stop_sequences(stop: Any) -> list[str]:
    sequences = [stop] if isinstance(stop, str) else list(stop or ())
    if any(not s.strip() for s in sequences):
        raise refuse(PROVIDER, "stop", "made only of whitespace is not supported")
    return sequences


def _sampling(body: Mapping[str, Any], out: dict[str, Any]) -> None:
    """stop, temperature, top_p, top_k and the end-user id."""
    stop = _stop_sequences(body.get("stop"))
    if stop:
        out["stop_sequences"] = stop
    temperature = body.get("temperature")
    if temperature is not None:
        if temperature > 1:
            raise refuse(PROVIDER, "temperature", "above 1 is not supported")
        out["temperature"] = temperature
    for name in ("top_p", "top_k"):
        if body.get(name) is not None:
            out[name] = body[name]
    user = body.get("user") or body.get("safety_identifier")
    if user:
        out["metadata"] = {"user_id": user}


def _headers(ctx: CallContext) -> dict[str, str]:
    return {"anthropic-version": ctx.options.anthropic_version or DEFAULT_VERSION}


# --- request: content blocks --------------------------------------------------------------------


def _cache_control(part: Mapping[str, Any], block: dict[str, Any]) -> dict[str, Any]:
    # Prompt caching markers some OpenAI clients put on parts; Anthropic reads them per block.
    marker = part.get("cache_control")
    if isinstance(marker, dict):
        block["cache_control"] = marker
    return block


def _text_block(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    text = part.get("text")
    if not isinstance(text, str):
        raise bad_request(f"{where}: message part type is 'text' but is missing .text")
    return _cache_control(part, {"type": "text", "text": text})


def _refusal_block(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    """An assistant's earlier refusal, replayed as the text it was."""
    return _text_block({"text": part.get("refusal")}, where)


def _image_block(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    url = image_url_of(part)
    inline = parse_data_url(url)
    if inline is not None:
        media_type, data = inline
        if media_type not in IMAGE_TYPES:
            raise refuse(PROVIDER, f"{where}.image_url", f"of type '{media_type}' is not supported")
        source: dict[str, Any] = {"type": "base64", "media_type": media_type, "data": data}
    elif url.startswith(("https://", "http://")):
        source = {"type": "url", "url": url}
    else:
        raise bad_request(f"{where}.image_url: only data: and http(s) URLs are supported")
    return _cache_control(part, {"type": "image", "source": source})


def _document_block(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    """An OpenAI ``file`` part carrying a PDF inline; file ids mean nothing to Anthropic."""
    file = part.get("file") if isinstance(part.get("file"), dict) else {}
    inline = parse_data_url(file["file_data"]) if isinstance(file.get("file_data"), str) else None
    if inline is None or inline[0] != "application/pdf":
        raise refuse(PROVIDER, f"{where}.file", "other than an inline PDF (file_data) is not supported")
    source = {"type": "base64", "media_type": "application/pdf", "data": inline[1]}
    return _cache_control(part, {"type": "document", "source": source})


_USER_PARTS = {"text": _text_block, "image_url": _image_block, "file": _document_block}
_ASSISTANT_PARTS = {"text": _text_block, "refusal": _refusal_block}


def _blocks(content: Any, where: str, allowed: Mapping[str, Callable[..., dict[str, Any]]]) -> list[dict]:
    """OpenAI content (a string or parts) as Anthropic blocks; empty text is dropped (Anthropic
    rejects empty text blocks)."""
    if isinstance(content, str):  # the common case, without the per-part machinery
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for j, part in enumerate(content_parts(content)):
        kind = part.get("type")
        build = allowed.get(kind) if isinstance(kind, str) else None
        if build is None:
            raise refuse(PROVIDER, f"{where}.content[{j}]", f"of type '{kind}' is not supported")
        block = build(part, f"{where}.content[{j}]")
        if block["type"] != "text" or block["text"]:
            blocks.append(block)
    return blocks


def _tool_use(call: Mapping[str, Any], where: str) -> dict[str, Any]:
    if call.get("type", "function") != "function":
        raise refuse(PROVIDER, f"{where}.type", f"'{call.get('type')}' is not supported")
    function = call["function"]
    if function["name"] == RESPONSE_TOOL:
        raise bad_request(f"{where}: the tool name '{RESPONSE_TOOL}' is reserved by the gateway")
    return {
        "type": "tool_use",
        "id": split_call_id(call["id"])[0],  # without the thinking blocks the id carried
        "name": function["name"],
        "input": tool_arguments(function.get("arguments"), where),
    }


def _tool_result(message: Mapping[str, Any], where: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise bad_request(f"{where}: a tool message needs a tool_call_id")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": split_call_id(call_id)[0]}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    else:
        parts = _blocks(content, where, {"text": _text_block})
        if parts:
            block["content"] = parts
    return block


# --- request: messages --------------------------------------------------------------------------


def _system_blocks(message: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    return _blocks(message.get("content"), where, {"text": _text_block})


def _turn(message: Mapping[str, Any], where: str) -> tuple[str, list[dict[str, Any]]]:
    """One OpenAI message as (Anthropic role, blocks)."""
    role = message["role"]
    if role == "user":
        return "user", _blocks(message.get("content"), where, _USER_PARTS)
    if role == "tool":
        return "user", [_tool_result(message, where)]
    if role == "assistant":
        if message.get("function_call") is not None:
            raise refuse(PROVIDER, f"{where}.function_call", "(legacy functions) is not supported")
        blocks = _blocks(message.get("content"), where, _ASSISTANT_PARTS)
        calls = message.get("tool_calls") or ()
        uses = [(call["id"], _tool_use(call, f"{where}.tool_calls[{k}]")) for k, call in enumerate(calls)]
        # The turn's signed thinking goes back in front of its tool uses, as Claude requires.
        return "assistant", replayed_turn(message, blocks, uses)
    raise refuse(PROVIDER, f"{where}.role", f"'{role}' is not supported")


def _merge_turns(turns: list[tuple[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Consecutive turns of one role become one, as Anthropic's alternation requires; in a user
    turn the tool results come first, as Anthropic requires."""
    merged = merge_turns(turns, lambda block: block["type"] == "tool_result")
    return [{"role": role, "content": _compact(blocks)} for role, blocks in merged]


def _compact(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A lone plain text block is sent as the equivalent string."""
    if len(blocks) == 1 and blocks[0]["type"] == "text" and "cache_control" not in blocks[0]:
        return blocks[0]["text"]
    return blocks


def convert_messages(messages: list[Mapping[str, Any]]) -> tuple[str | list[dict[str, Any]] | None, list]:
    """(top-level system, Anthropic messages) from OpenAI chat messages."""
    plain = _plain_conversation(messages)
    return plain if plain is not None else _convert_any(messages)


def _plain_conversation(
    messages: list[Mapping[str, Any]],
) -> tuple[str | list[dict[str, Any]] | None, list] | None:
    """The common case, converted in one pass with one dict per message: text-only system messages
    and user/assistant turns of non-empty text that alternate, which _convert_any would turn into the
    same. None for anything else (parts, tools, empty or consecutive turns): _convert_any does it."""
    system: list[dict[str, Any]] = []
    system_count = 0
    out: list[dict[str, Any]] = []
    last = ""
    for message in messages:
        role = message["role"]
        content = message.get("content")
        if not isinstance(content, str):
            return None
        if role in ("system", "developer"):
            system_count += 1
            if content:
                system.append({"type": "text", "text": content})
            continue
        if role == last or not content:
            return None
        if role == "assistant":
            if message.get("tool_calls") or message.get("function_call") is not None:
                return None
        elif role != "user":
            return None
        out.append({"role": role, "content": content})
        last = role
    if not system:
        return None, out
    return (system[0]["text"] if system_count == 1 else system), out


def _convert_any(messages: list[Mapping[str, Any]]) -> tuple[str | list[dict[str, Any]] | None, list]:
    system: list[dict[str, Any]] = []
    system_messages: list[Mapping[str, Any]] = []
    turns = []
    for i, message in enumerate(messages):
        role = message["role"]
        content = message.get("content")
        if role in ("system", "developer"):
            system_messages.append(message)
            system += _system_blocks(message, f"messages[{i}]")
        elif isinstance(content, str) and (
            role == "user"
            or (
                role == "assistant" and not message.get("tool_calls") and message.get("function_call") is None
            )
        ):  # the common case, as _turn would convert it, without its per-message machinery
            turns.append((role, [{"type": "text", "text": content}] if content else []))
        else:
            turns.append(_turn(message, f"messages[{i}]"))
    if not system:
        return None, _merge_turns(turns)
    # One plain-string system message stays a string; several, or parts, become text blocks.
    single = len(system_messages) == 1 and isinstance(system_messages[0].get("content"), str)
    return (system[0]["text"] if single else system), _merge_turns(turns)


# --- request: tools and response_format ---------------------------------------------------------


def _tool(tool: Mapping[str, Any], where: str) -> dict[str, Any]:
    function = tool["function"]
    name = function["name"]
    if name == RESPONSE_TOOL:
        raise bad_request(f"{where}: the tool name '{RESPONSE_TOOL}' is reserved by the gateway")
    schema = function.get("parameters") or {"type": "object", "properties": {}}
    if "type" not in schema:
        schema = {"type": "object", **schema}
    out: dict[str, Any] = {"name": name, "input_schema": schema}
    if function.get("description"):
        out["description"] = function["description"]
    if function.get("strict") is True:
        out["strict"] = True
    return out


def _response_tool(response_format: Any) -> dict[str, Any] | None:
    """The forced tool that emulates ``response_format`` json_schema / json_object, or None."""
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind in (None, "text"):
        return None
    schema: Any = {"type": "object"}
    description = _RESPONSE_TOOL_DESCRIPTION
    strict = False
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") or schema
        if not isinstance(schema, dict) or schema.get("type", "object") != "object":
            raise refuse(
                PROVIDER, "response_format.json_schema.schema", "other than an object is not supported"
            )
        if spec.get("description"):
            description += " " + spec["description"]
        strict = spec.get("strict") is True
    tool = {"name": RESPONSE_TOOL, "description": description, "input_schema": schema}
    if strict:
        tool["strict"] = True  # schema adherence guaranteed, as OpenAI's strict promises
    return tool


def _tool_choice(choice: Any) -> dict[str, Any]:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        return {"type": "any"}
    return {"type": "tool", "name": choice["function"]["name"]}


def _web_search_tool(options: Mapping[str, Any], tools: list[dict[str, Any]]) -> dict[str, Any]:
    """``web_search_options`` as the server web search tool (search_context_size has no
    counterpart: it only guides how much of the results the model reads)."""
    if any(t["name"] == WEB_SEARCH_NAME for t in tools):
        raise bad_request(
            f"tools: the name '{WEB_SEARCH_NAME}' is Anthropic's web search tool's (web_search_options)"
        )
    tool: dict[str, Any] = {"type": WEB_SEARCH_TOOL, "name": WEB_SEARCH_NAME}
    location = user_location(options)
    if location:
        tool["user_location"] = {"type": "approximate", **location}
    return tool


def _tools(body: Mapping[str, Any], out: dict[str, Any], thinking: bool = False) -> None:
    """tools, tool_choice, parallel_tool_calls, response_format and web_search_options. With
    thinking on, Claude takes no forced tool choice: the answer tool is then offered, not forced."""
    tools = [_tool(t, f"tools[{k}]") for k, t in enumerate(body.get("tools") or ())]
    choice_asked = body.get("tool_choice")
    answer_tool = _response_tool(body.get("response_format"))
    choice: dict[str, Any] | None = _tool_choice(choice_asked) if choice_asked is not None else None
    search = search_options(body)
    if search is not None:
        tools.append(_web_search_tool(search, tools))
        # Forced, unless thinking is on: Claude then takes no forced tool choice.
        if required(search) and not thinking and choice_asked in (None, "auto", "required"):
            choice = {"type": "tool", "name": WEB_SEARCH_NAME}
    # When the model must call a client tool (required / named) there is no text answer to shape.
    if answer_tool is not None and choice_asked in (None, "auto", "none"):
        if thinking:
            choice = {"type": "auto"}
        elif tools and choice_asked != "none":
            choice = {"type": "any"}  # a client tool, or the answer through the answer tool
        else:
            choice = {"type": "tool", "name": RESPONSE_TOOL}
        tools.append(answer_tool)
    if body.get("parallel_tool_calls") is False and tools:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    if tools:
        out["tools"] = tools
    if choice is not None:
        out["tool_choice"] = choice


# --- request: builders --------------------------------------------------------------------------


def _base(body: Mapping[str, Any], ctx: CallContext, messages: list) -> dict[str, Any]:
    out: dict[str, Any] = {"model": ctx.model, "max_tokens": _max_tokens(body), "messages": messages}
    _sampling(body, out)
    if ctx.stream:
        out["stream"] = True
    return out


def build_chat(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    _check_fields(body, _CHAT_FIELDS)
    notes: dict[str, str] = {}
    reasoning = reasoning_of(body)
    thinking = claude_thinking(body, reasoning, ctx.model, PROVIDER, notes) if reasoning else None
    notes.update(claude_sampling(body, ctx.model))
    system, messages = convert_messages(body["messages"])
    out = _base(body, ctx, messages)
    if system is not None:
        out["system"] = system
    _tools(body, out, thinking is not None)
    if thinking is not None:
        out["thinking"] = thinking.thinking
        out["max_tokens"] = thinking.max_tokens
        if thinking.effort is not None:
            out["output_config"] = {"effort": thinking.effort}
    return ProviderRequest(out, MESSAGES_PATH, headers=_headers(ctx), notes=notes)


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise refuse(PROVIDER, "prompt", "other than one text prompt is not supported")
    return prompt


def build_completions(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    _check_fields(body, _COMPLETIONS_FIELDS)
    notes = claude_sampling(body, ctx.model)
    messages = [{"role": "user", "content": _prompt_text(body.get("prompt"))}]
    return ProviderRequest(_base(body, ctx, messages), MESSAGES_PATH, headers=_headers(ctx), notes=notes)


# --- response -----------------------------------------------------------------------------------

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: Any, called_client_tools: bool) -> str:
    reason = _FINISH.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    # The answer tool is the reply itself, not a call for the client to run.
    return "stop" if reason == "tool_calls" and not called_client_tools else reason


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class TokenCounts:
    """Anthropic usage, cumulative over a stream; prompt tokens include cache reads and writes."""

    __slots__ = ("cache_read", "cache_write", "input", "output", "seen", "thinking")

    def __init__(self) -> None:
        self.input = self.cache_read = self.cache_write = self.output = self.thinking = 0
        self.seen: set[str] = set()  # the counts the answer reported

    def update(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        for attr, key in (
            ("input", "input_tokens"),
            ("cache_read", "cache_read_input_tokens"),
            ("cache_write", "cache_creation_input_tokens"),
            ("output", "output_tokens"),
        ):
            if usage.get(key) is not None:
                setattr(self, attr, _count(usage[key]))
                self.seen.add(attr)
        details = usage.get("output_tokens_details")
        if isinstance(details, dict) and details.get("thinking_tokens") is not None:
            self.thinking = _count(details["thinking_tokens"])

    def usage(self) -> Usage | None:
        """None until both input and output counts were reported: the caller then estimates."""
        if not {"input", "output"} <= self.seen:
            return None
        prompt = self.input + self.cache_read + self.cache_write
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=self.output,
            total_tokens=prompt + self.output,
            cached_tokens=self.cache_read,
            reasoning_tokens=self.thinking,
        )


def usage_of(body: Any) -> Usage | None:
    """Usage of a native Messages response (also used for untranslated llm_format traffic)."""
    if not isinstance(body, dict) or not isinstance(body.get("usage"), dict):
        return None
    counts = TokenCounts()
    counts.update(body["usage"])
    return counts.usage()


def _message_body(body: Json) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("content"), list):
        raise ValueError("'content' not in anthropic message response")
    return body


class _Read:
    """What a Messages answer's content blocks say, in the chat form."""

    __slots__ = ("annotations", "calls", "carrier", "reasoning", "searches", "text")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.calls: list[dict[str, Any]] = []
        self.carrier = ThinkingCarrier()  # signed thinking, carried by the next tool call's id
        self.annotations: list[dict[str, Any]] = []  # url citations, by character of the content
        self.searches: dict[str, dict[str, Any]] = {}  # server web searches by tool use id

    @property
    def content(self) -> str:
        return "".join(self.text)


def _citations(block: Mapping[str, Any], start: int, end: int) -> list[dict[str, Any]]:
    """A text block's web search citations as url_citation annotations over its whole text."""
    out = []
    for citation in block.get("citations") or ():
        kind = citation.get("type") if isinstance(citation, dict) else None
        if kind == "web_search_result_location" and isinstance(citation.get("url"), str):
            out.append(url_citation(citation["url"], citation.get("title"), start, end))
    return out


def _search_query(value: Any) -> list[str]:
    query = value.get("query") if isinstance(value, dict) else None
    return [query] if isinstance(query, str) and query else []


def _search_result(search: dict[str, Any], content: Any) -> None:
    """A web_search_tool_result's pages (or its error) onto the search it answers."""
    if isinstance(content, list):
        found = (source(r.get("url"), r.get("title")) for r in content if isinstance(r, dict))
        search["sources"] = [s for s in found if s is not None]
    elif isinstance(content, dict):
        search["error"] = str(content.get("error_code") or "unavailable")


def _read_blocks(blocks: list[Any]) -> _Read:
    """Content text, reasoning text, OpenAI tool calls (each id carrying the signed thinking
    blocks before it), citations and web searches; the answer tool's input is content."""
    read = _Read()
    chars = 0
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            read.text.append(block["text"])
            start, chars = chars, chars + len(block["text"])
            if block.get("citations"):
                read.annotations += _citations(block, start, chars)
        elif kind == "thinking":
            read.reasoning.append(block["thinking"])
            read.carrier.add(
                {"type": "thinking", "thinking": block["thinking"], "signature": block.get("signature") or ""}
            )
        elif kind == "redacted_thinking" and isinstance(block.get("data"), str):
            read.carrier.add({"type": "redacted_thinking", "data": block["data"]})
        elif kind == "tool_use" and block["name"] == RESPONSE_TOOL:
            read.text.append(dumps_arguments(block.get("input")))
            chars += len(read.text[-1])
        elif kind == "tool_use":
            function = {"name": block["name"], "arguments": dumps_arguments(block.get("input"))}
            call_id = read.carrier.call_id(block["id"])
            read.calls.append({"id": call_id, "type": "function", "function": function})
        elif kind == "server_tool_use" and block.get("name") == WEB_SEARCH_NAME:
            search_id = str(block.get("id") or "")
            read.searches[search_id] = search_call(search_id, _search_query(block.get("input")), [])
        elif kind == "web_search_tool_result" and block.get("tool_use_id") in read.searches:
            _search_result(read.searches[block["tool_use_id"]], block.get("content"))
        # other server tool blocks carry nothing an OpenAI client can read.
    return read


def _stop_sequence(body: Mapping[str, Any], ctx: CallContext) -> str | None:
    """The stop sequence that ended the text, for ingress clients (STOP_SEQUENCE_KEY)."""
    return matched_stop(ctx, body.get("stop_reason") == "stop_sequence", body.get("stop_sequence"))


def _envelope(body: dict[str, Any], ctx: CallContext, obj: str, choice: dict[str, Any]) -> dict[str, Any]:
    usage = usage_of(body)
    out = {
        "id": body.get("id") or None,
        "object": obj,
        "created": ctx.created,
        "model": body.get("model") or ctx.model,
        "choices": [choice],
    }
    if usage is not None:
        out["usage"] = usage.as_openai()
    return out


def parse_chat(body: Json, ctx: CallContext) -> Json:
    message_body = _message_body(body)
    read = _read_blocks(message_body["content"])
    text, calls, thinking = read.content, read.calls, read.carrier.blocks
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not calls else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    if read.reasoning:
        message["reasoning_content"] = "".join(read.reasoning)
    if thinking:
        message["thinking_blocks"] = thinking  # Anthropic's shapes, for clients that send them back
    if read.annotations:
        message["annotations"] = read.annotations
    if read.searches and ctx.extensions:
        message[WEB_SEARCH_KEY] = list(read.searches.values())
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": finish_reason(message_body.get("stop_reason"), bool(calls)),
    }
    stop_sequence = _stop_sequence(message_body, ctx)
    if stop_sequence is not None:
        choice[STOP_SEQUENCE_KEY] = stop_sequence
    return _envelope(message_body, ctx, "chat.completion", choice)


def parse_completions(body: Json, ctx: CallContext) -> Json:
    message_body = _message_body(body)
    read = _read_blocks(message_body["content"])
    text, calls = read.content, read.calls
    reason = finish_reason(message_body.get("stop_reason"), bool(calls))
    choice = {
        "text": text,
        "index": 0,
        "logprobs": None,
        "finish_reason": "stop" if reason == "tool_calls" else reason,
    }
    return _envelope(message_body, ctx, "text_completion", choice)


# --- errors -------------------------------------------------------------------------------------

# Anthropic's error types as OpenAI's, where OpenAI has a counterpart.
_ERROR_TYPES = {
    "invalid_request_error": "invalid_request_error",
    "request_too_large": "invalid_request_error",
    "authentication_error": "authentication_error",
    "permission_error": "permission_error",
    "not_found_error": "not_found_error",
    "rate_limit_error": "rate_limit_error",
    "billing_error": "insufficient_quota",
    "api_error": "api_error",
    "overloaded_error": "api_error",
    "timeout_error": "api_error",
}


def _error_info(error: Any) -> ErrorInfo | None:
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return None
    kind = error.get("type") if isinstance(error.get("type"), str) else None
    return ErrorInfo(error["message"], _ERROR_TYPES.get(kind or ""), kind)


def parse_error(status: int, body: Json) -> ErrorInfo | None:
    """``{"type": "error", "error": {"type": "authentication_error", "message": ...}}``."""
    return _error_info(body.get("error")) if isinstance(body, dict) else None


# --- stream -------------------------------------------------------------------------------------


class AnthropicStream(StreamTranslatorBase):
    """Messages API server-sent events -> OpenAI chunks.

    Content blocks are tracked by their ``index``: each tool_use block is one OpenAI tool call
    (parallel calls keep their own state), the answer tool's JSON streams as content.
    """

    provider = PROVIDER

    def __init__(self, ctx: CallContext) -> None:
        super().__init__(ctx)
        self.counts = TokenCounts()
        self.blocks: dict[int, str] = {}  # index -> text / thinking / tool / answer / other
        self.filled: set[int] = set()  # tool blocks that received argument text
        self.stop_reason: str | None = None
        self.stop_sequence: str | None = None
        self.called_client_tools = False
        self.thinking: dict[int, dict[str, Any]] = {}  # open thinking blocks by index
        self.thinking_text: dict[int, ThinkingText] = {}
        self.carrier = ThinkingCarrier()
        # Web search: the server_tool_use blocks' ids and input JSON by block index, the searches
        # by tool use id, and each cited text block's start (in content characters) and citations.
        self._search_input: dict[int, tuple[str, list[str]]] = {}
        self._search_chars: dict[int, int] = {}  # input characters kept, by block index
        self._queries: dict[str, list[str]] = {}
        self._cited: dict[int, tuple[int, list[dict[str, Any]]]] = {}

    def on_event(self, event: SSEEvent) -> list[bytes]:
        if not event.data:
            return []
        data = orjson.loads(event.data)
        if not isinstance(data, dict):
            return []
        handler = self._handlers.get(data.get("type") or event.event or "")
        return handler(self, data) if handler is not None else []

    def _set_usage(self, usage: Any) -> None:
        self.counts.update(usage)
        self.usage = self.counts.usage()

    def _message_start(self, data: dict[str, Any]) -> list[bytes]:
        message = data.get("message") or {}
        if isinstance(message.get("id"), str) and message["id"]:
            self.out.id = message["id"]
        if isinstance(message.get("model"), str) and message["model"]:
            self.out.model = self.response_model = message["model"]
        self._set_usage(message.get("usage"))
        return self.out.start()

    def _block_start(self, data: dict[str, Any]) -> list[bytes]:
        index, block = data["index"], data.get("content_block") or {}
        kind = block.get("type")
        if kind == "text":
            self.blocks[index] = "text"
            self._cited[index] = (self.tally.chars, [])
            return self.content(block.get("text") or "")
        if kind == "thinking":
            self.blocks[index] = "thinking"
            text = block.get("thinking") or ""
            self.thinking[index] = {
                "type": "thinking",
                "thinking": "",
                "signature": block.get("signature") or "",
            }
            self.thinking_text[index] = ThinkingText(text)
            return self.out.reasoning(text)
        if kind == "redacted_thinking" and isinstance(block.get("data"), str):
            self.blocks[index] = "thinking"
            self.thinking[index] = {"type": "redacted_thinking", "data": block["data"]}
            return []
        if kind == "tool_use" and block.get("name") == RESPONSE_TOOL:
            self.blocks[index] = "answer"
            return []
        if kind == "tool_use":
            self.blocks[index] = "tool"
            self.called_client_tools = True
            return self.out.tool_call_start(index, self.carrier.call_id(block["id"]), block["name"])
        if kind == "server_tool_use" and block.get("name") == WEB_SEARCH_NAME:
            self.blocks[index] = "search"
            self._search_input[index] = (str(block.get("id") or ""), [])
            self._queries[self._search_input[index][0]] = _search_query(block.get("input"))
            return []
        self.blocks[index] = "other"
        if kind == "web_search_tool_result" and block.get("tool_use_id") in self._queries:
            call_id = block["tool_use_id"]
            search = search_call(call_id, self._queries.pop(call_id), [])
            _search_result(search, block.get("content"))
            return self.out.web_search([search])
        return []

    def _block_delta(self, data: dict[str, Any]) -> list[bytes]:
        index, delta = data["index"], data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            return self.content(delta.get("text") or "")
        if kind == "thinking_delta":
            text = delta.get("thinking") or ""
            if index in self.thinking_text:
                self.thinking_text[index].add(text)
            return self.out.reasoning(text)
        if kind == "signature_delta" and index in self.thinking:
            self.thinking[index]["signature"] = delta.get("signature") or ""
            return []
        if kind == "input_json_delta":
            fragment = delta.get("partial_json") or ""
            if fragment:
                self.filled.add(index)
            if self.blocks.get(index) == "answer":
                return self.content(fragment)
            if self.blocks.get(index) == "search":
                self._search_fragment(index, fragment)
                return []
            return self.out.tool_call_arguments(index, fragment)
        if kind == "citations_delta" and index in self._cited:
            found = self._cited[index][1]
            if len(found) < MAX_STREAM_TOOL_CALLS:  # one per citation; bounded like tool calls
                found.append(delta.get("citation"))
        return []

    def _search_fragment(self, index: int, fragment: str) -> None:
        """A search's query arrives as input JSON, read when its block stops (bounded: a query is
        short, and past the bound it is left out)."""
        fragments = self._search_input[index][1]
        kept = self._search_chars.get(index, 0) + len(fragment)
        if kept <= MAX_SEARCH_INPUT_CHARS:
            fragments.append(fragment)
            self._search_chars[index] = kept

    def _block_stop(self, data: dict[str, Any]) -> list[bytes]:
        index = data["index"]
        block = self.thinking.pop(index, None)
        if block is not None:  # complete with its signature: carried by the next tool call's id
            if index in self.thinking_text:
                block["thinking"] = str(self.thinking_text.pop(index))
            self.carrier.add(block)
            return self.out.thinking_block(block)
        search = self._search_input.pop(index, None)
        self._search_chars.pop(index, None)
        if search is not None and search[1]:
            with suppress(orjson.JSONDecodeError):
                self._queries[search[0]] = _search_query(orjson.loads("".join(search[1])))
        cited = self._cited.pop(index, None)
        if cited is not None and cited[1]:
            return self.out.annotations(_citations({"citations": cited[1]}, cited[0], self.tally.chars))
        if index in self.filled:
            return []
        # A call without input streams no fragment at all; clients expect parseable arguments.
        if self.blocks.get(index) == "tool":
            return self.out.tool_call_arguments(index, "{}")
        if self.blocks.get(index) == "answer":
            return self.content("{}")
        return []

    def _message_delta(self, data: dict[str, Any]) -> list[bytes]:
        delta = data.get("delta") or {}
        if delta.get("stop_reason"):
            self.stop_reason = delta["stop_reason"]
            self.stop_sequence = _stop_sequence(delta, self.ctx)
        self._set_usage(data.get("usage"))
        return []

    def _message_stop(self, data: dict[str, Any]) -> list[bytes]:
        reason = finish_reason(self.stop_reason, self.called_client_tools)
        if self.out.completions and reason == "tool_calls":
            reason = "stop"
        return self.end(reason, self.stop_sequence)

    def _error(self, data: dict[str, Any]) -> list[bytes]:
        info = _error_info(data.get("error")) or ErrorInfo("the anthropic stream reported an error")
        return self.fail(info.message, info.type or "api_error", info.code or "upstream_error")

    _handlers: Mapping[str, Callable[[AnthropicStream, dict[str, Any]], list[bytes]]] = {
        "message_start": _message_start,
        "content_block_start": _block_start,
        "content_block_delta": _block_delta,
        "content_block_stop": _block_stop,
        "message_delta": _message_delta,
        "message_stop": _message_stop,
        "error": _error,
    }


# --- spec ---------------------------------------------------------------------------------------


SPECS = (
    ProviderSpec(
        PROVIDER,
        fixed_base_url(BASE_URL),
        {
            "llm/v1/chat": RouteTransform(build_chat, parse_chat, AnthropicStream),
            "llm/v1/completions": RouteTransform(build_completions, parse_completions, AnthropicStream),
            # Anthropic has no embeddings API: no transform, so the pipeline answers 400.
        },
        parse_error,
        native_usage=usage_of,
        builtin_tools=frozenset({WEB_SEARCH}),
    ),
)
