"""Anthropic's Messages API as a client format, to and from the chat form every provider serves.

Pure codecs, field names from the ``anthropic`` SDK's types (``MessageCreateParams``, ``Message``,
``RawMessageStreamEvent``, ``ErrorResponse``):

- ``to_chat``: a Messages request -> an OpenAI chat request;
- ``from_chat``: a chat completion -> a ``Message``;
- ``MessagesEvents``: chat completion chunks -> Messages server-sent events, one chunk at a time;
- ``error_body``: any error -> ``{"type": "error", "error": {"type", "message"}}``.

What has no chat counterpart is ignored (listed in ``IGNORED_FIELDS``). ``thinking`` goes to the
chat form as it is (every provider transform reads it, transforms/reasoning.py), with
``output_config.effort`` as ``reasoning_effort``; signed thinking blocks travel as the chat
message's ``thinking_blocks`` both ways, and streamed as thinking_delta then signature_delta.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from transforms.common import dumps_arguments, tool_arguments
from transforms.errors import bad_request
from transforms.ingress.chat_chunks import ChatChunkWriter
from transforms.limits import MAX_GROUNDED_TEXT_CHARS
from transforms.reasoning import EFFORTS, split_call_id, thinking_blocks
from transforms.types import (
    STOP_SEQUENCE_KEY,
    TOOL_ERROR_MARK,
    WEB_SEARCH_KEY,
    WEB_SEARCH_REQUIRED,
    CallContext,
    Usage,
)
from transforms.usage import estimate_tokens, request_text
from transforms.web_search import WEB_SEARCH

# Fields of a Messages request with no counterpart in the chat form: accepted, ignored. Claude Code
# sends several of them (context_management, output_config, betas through the query string).
IGNORED_FIELDS = frozenset(
    {
        "context_management",
        "output_config",
        "service_tier",
        "container",
        "mcp_servers",
        "betas",
        "inference_geo",
        "cache_control",  # prompt caching is the provider's own affair
        "diagnostics",
        "speed",
        "user_profile_id",
        "workspace_id",
    }
)
# Chat fields the adapter sets that only narrow or tune the answer: a provider that cannot express
# one is asked without it (the pipeline retries), rather than the Anthropic client failing.
OPTIONAL_CHAT_FIELDS = frozenset({"parallel_tool_calls", "top_k", "user", "stop", "tool_choice"})

# --- request ------------------------------------------------------------------------------------


def _text_of(content: Any, where: str) -> str:
    """System prompts and tool results: a string or text blocks, joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise bad_request(f"{where}: expected a string or a list of content blocks")
    texts = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
    return "\n\n".join(texts)


def _image_part(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise bad_request(f"{where}.source: required")
    if source.get("type") == "base64" and isinstance(source.get("data"), str):
        url = f"data:{source.get('media_type') or 'image/png'};base64,{source['data']}"
    elif source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise bad_request(f"{where}.source: only base64 and url image sources are supported")
    return {"type": "image_url", "image_url": {"url": url}}


def _document_part(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A base64 PDF becomes a chat ``file`` part (providers that take PDFs read it); plain-text
    documents become text."""
    source = block.get("source")
    if not isinstance(source, dict):
        raise bad_request(f"{where}.source: required")
    kind = source.get("type")
    if kind == "text" and isinstance(source.get("data"), str):
        return {"type": "text", "text": source["data"]}
    if kind == "base64" and isinstance(source.get("data"), str):
        media_type = source.get("media_type") or "application/pdf"
        name = block.get("title") if isinstance(block.get("title"), str) else "document.pdf"
        file = {"filename": name, "file_data": f"data:{media_type};base64,{source['data']}"}
        return {"type": "file", "file": file}
    raise bad_request(f"{where}.source: only base64 and text document sources are supported")


def _tool_images(block: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    """The images a tool returned (a screenshot...): a chat tool message carries text only, so they
    go to the model in the user message that follows the tool results, named by their call."""
    content = block.get("content")
    images = [
        _image_part(part, f"{where}.content[{i}]")
        for i, part in enumerate(content if isinstance(content, list) else ())
        if isinstance(part, dict) and part.get("type") == "image"
    ]
    if not images:
        return []
    return [{"type": "text", "text": f"[images returned by tool call {block.get('tool_use_id')}]"}, *images]


def _tool_message(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise bad_request(f"{where}.tool_use_id: required")
    text = _text_of(block.get("content"), f"{where}.content")
    message: dict[str, Any] = {"role": "tool", "tool_call_id": call_id, "content": text}
    if block.get("is_error") is True:
        # The chat form has no error flag: an internal mark the pipeline turns into the provider's
        # flag (Bedrock) or marked text (every other provider), never sent as is.
        message[TOOL_ERROR_MARK] = True
    return message


def _user_messages(content: Any, where: str) -> list[dict[str, Any]]:
    """One Anthropic user turn: its tool results become ``tool`` messages (first, as the chat form
    wants them right after the assistant's calls), the rest one user message."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not isinstance(content, list):
        raise bad_request(f"{where}.content: expected a string or a list of content blocks")
    tools: list[dict[str, Any]] = []
    returned: list[dict[str, Any]] = []  # images inside tool results, first in the user message
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        at = f"{where}.content[{i}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            if block.get("text"):
                parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            parts.append(_image_part(block, at))
        elif kind == "document":
            parts.append(_document_part(block, at))
        elif kind == "tool_result":
            tools.append(_tool_message(block, at))
            returned.extend(_tool_images(block, at))
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise bad_request(f"{at}.type: '{kind}' is not supported in a user turn")
    out = list(tools)
    parts = returned + parts
    if parts:
        plain = all(p["type"] == "text" for p in parts)
        text = "\n\n".join(p["text"] for p in parts) if plain else None
        out.append({"role": "user", "content": text if plain else parts})
    return out


def _assistant_message(content: Any, where: str) -> dict[str, Any] | None:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise bad_request(f"{where}.content: expected a string or a list of content blocks")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    thinking: list[Any] = []
    for i, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind in ("thinking", "redacted_thinking"):
            thinking.append(block)
        elif kind == "tool_use":
            at = f"{where}.content[{i}]"
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise bad_request(f"{at}: tool_use blocks need an id and a name")
            arguments = dumps_arguments(tool_arguments(block.get("input"), at))
            calls.append(
                {
                    "id": block["id"],
                    "type": "function",
                    "function": {"name": block["name"], "arguments": arguments},
                }
            )
    text = "".join(texts)
    if not text and not calls:
        return None
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    signed = thinking_blocks(thinking)  # the provider puts them back in front of the tool calls
    if signed:
        message["thinking_blocks"] = signed
    return message


def _is_web_search(tool: Any) -> bool:
    """Anthropic's server web search tool (``web_search_20250305`` and later versions)."""
    kind = tool.get("type") if isinstance(tool, dict) else None
    return isinstance(kind, str) and kind.startswith("web_search_")


def _search_options(tool: Mapping[str, Any]) -> dict[str, Any]:
    """The server web search tool as chat ``web_search_options`` (for the provider's own search).
    ``max_uses``, ``allowed_domains`` and ``blocked_domains`` have no chat counterpart."""
    location = tool.get("user_location")
    if not isinstance(location, dict):
        return {}
    fields = {
        k: location[k] for k in ("city", "region", "country", "timezone") if isinstance(location.get(k), str)
    }
    return {"user_location": {"type": "approximate", "approximate": fields}}


def _tools(
    tools: Any, builtins: frozenset[str] = frozenset()
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Client tools (custom, or no type), and the web search options where the provider has a
    search of its own; other server tools (bash, code execution...) run at Anthropic only and are
    left out of the offer (``notes`` says so)."""
    if not isinstance(tools, list):
        raise bad_request("tools: expected a list")
    out = []
    search: dict[str, Any] | None = None
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise bad_request(f"tools[{i}]: expected an object")
        if _is_web_search(tool) and WEB_SEARCH in builtins and search is None:
            search = _search_options(tool)
        if tool.get("type") not in (None, "custom"):
            continue
        if not isinstance(tool.get("name"), str):
            raise bad_request(f"tools[{i}].name: required")
        function: dict[str, Any] = {"name": tool["name"]}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        schema = tool.get("input_schema")
        function["parameters"] = schema if isinstance(schema, dict) else {"type": "object", "properties": {}}
        out.append({"type": "function", "function": function})
    return out, search


def notes(
    body: Mapping[str, Any], provider: str = "", builtins: frozenset[str] = frozenset()
) -> dict[str, str]:
    """The server tools a request offered that the provider has no counterpart of (event log)."""
    tools = body.get("tools")
    kinds = sorted(
        {
            str(t.get("type"))
            for t in tools
            if isinstance(t, dict)
            and t.get("type") not in (None, "custom")
            and not (_is_web_search(t) and WEB_SEARCH in builtins)
        }
        if isinstance(tools, list)
        else ()
    )
    if not kinds:
        return {}
    where = f"the {provider} provider has no counterpart"
    text = f"anthropic clients' server tools {', '.join(kinds)} left out of the offer: {where}"
    return {f"anthropic-server-tools-{'-'.join(kinds)}": text}


def _tool_choice(choice: Any, out: dict[str, Any]) -> None:
    if not isinstance(choice, dict):
        raise bad_request("tool_choice: expected an object")
    kind = choice.get("type")
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool" and isinstance(choice.get("name"), str):
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise bad_request(f"tool_choice.type: '{kind}' is not one of auto, any, tool, none")
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        out["parallel_tool_calls"] = False


def to_chat(
    body: Mapping[str, Any], provider: str = "", builtins: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """A Messages request as a chat request. Unknown fields are ignored, as Anthropic's own
    betas would be by a provider that has none of them. ``builtins`` are the client built-in tools
    the route's provider maps (ProviderSpec.builtin_tools): the server web search becomes the
    provider's own search where it has one."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise bad_request("messages: Field required")
    out: dict[str, Any] = {}
    if isinstance(body.get("model"), str):
        out["model"] = body["model"]
    chat: list[dict[str, Any]] = []
    system = _text_of(body.get("system"), "system")
    if system:
        chat.append({"role": "system", "content": system})
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad_request(f"{where}: expected an object")
        role = message.get("role")
        content = message.get("content")
        if role == "user":
            chat.extend(_user_messages(content, where))
        elif role == "assistant":
            turn = _assistant_message(content, where)
            if turn is not None:
                chat.append(turn)
        elif role == "system":  # Claude Code puts reminders here
            text = _text_of(content, f"{where}.content")
            if text:
                chat.append({"role": "system", "content": text})
        else:
            raise bad_request(f"{where}.role: '{role}' is not one of user, assistant")
    out["messages"] = chat
    if body.get("max_tokens") is not None:
        out["max_tokens"] = body["max_tokens"]
    if body.get("stop_sequences"):
        out["stop"] = body["stop_sequences"]
    for name in ("temperature", "top_p", "top_k"):
        if body.get(name) is not None:
            out[name] = body[name]
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str) and metadata["user_id"]:
        out["user"] = metadata["user_id"]
    search: dict[str, Any] | None = None
    if body.get("tools"):
        tools, search = _tools(body["tools"], builtins)
        if tools:
            out["tools"] = tools
    choice = body.get("tool_choice")
    if search is not None and isinstance(choice, dict):
        if choice.get("type") == "none":
            search = None  # no tool at all, the provider's search included
        elif (choice.get("type") == "tool" and choice.get("name") == WEB_SEARCH) or (
            choice.get("type") == "any" and "tools" not in out
        ):
            search[WEB_SEARCH_REQUIRED] = True  # the chat form cannot name a built-in tool
            choice = None
    if isinstance(choice, dict) and choice.get("type") == "tool":
        names = {t["function"]["name"] for t in out.get("tools", ())}
        if choice.get("name") not in names:
            choice = None  # a server tool the provider lacks: the choice only narrowed the answer
    if choice is not None and "tools" in out:
        _tool_choice(choice, out)
    if search is not None:
        out["web_search_options"] = search
    if body.get("stream") is True:
        out["stream"] = True
    _reasoning(body, out)
    return out


def _reasoning(body: Mapping[str, Any], out: dict[str, Any]) -> None:
    """``thinking`` as it is (the chat form's providers read Anthropic's shape) and, beside it,
    ``output_config.effort`` as ``reasoning_effort``."""
    thinking = body.get("thinking")
    if thinking is None:
        return
    out["thinking"] = thinking
    config = body.get("output_config")
    effort = config.get("effort") if isinstance(config, dict) else None
    if effort in EFFORTS:
        out["reasoning_effort"] = effort


# --- answer -------------------------------------------------------------------------------------

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def stop_reason(finish_reason: Any) -> str:
    return _STOP_REASONS.get(finish_reason, "end_turn") if isinstance(finish_reason, str) else "end_turn"


def echo(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the answer needs of its request: the stop sequences, to tell which one ended the text
    where the provider says only that one did; whether a web search was offered (the stream then
    keeps the open text block's text, to quote what a citation covers)."""
    out: dict[str, Any] = {}
    sequences = body.get("stop_sequences")
    if isinstance(sequences, list):
        out["stop_sequences"] = [s for s in sequences if isinstance(s, str) and s]
    tools = body.get("tools")
    if isinstance(tools, list) and any(_is_web_search(t) for t in tools):
        out["web_search"] = True
    return out


def matched_stop_sequence(said: Any, text: str, ctx: CallContext) -> str | None:
    """The stop sequence that ended the text. ``said`` is the chat extension (STOP_SEQUENCE_KEY): the
    sequence, or "" when the provider said only that one did; then it is the asked sequence the
    text ends with (providers that keep it in the text), or the only one asked. None if unknown."""
    if isinstance(said, str) and said:
        return said
    asked = ctx.client.get("stop_sequences") or []
    ending = [s for s in asked if text.endswith(s)]
    if ending:
        return max(ending, key=len)
    return asked[0] if len(asked) == 1 else None


def _stop(finish_reason: Any, said: Any, text: str, ctx: CallContext) -> tuple[str, str | None]:
    """``stop_reason`` and ``stop_sequence`` of a Message."""
    if isinstance(said, str):  # the provider says a stop sequence ended the text
        return "stop_sequence", matched_stop_sequence(said, text, ctx)
    return stop_reason(finish_reason), None


def message_usage(usage: Usage | None) -> dict[str, int]:
    """Anthropic counts cache reads apart from the input tokens; OpenAI's prompt tokens hold them."""
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0}
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    return {
        "input_tokens": usage.prompt_tokens - cached,
        "output_tokens": usage.completion_tokens,
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    }


def message_id(chat_id: Any, ctx: CallContext) -> str:
    return f"msg_{ctx.request_id}" if not isinstance(chat_id, str) or not chat_id else f"msg_{chat_id}"


def search_blocks(search: Mapping[str, Any], n: int) -> list[dict[str, Any]]:
    """One of the provider's web searches as Anthropic's ``server_tool_use`` and
    ``web_search_tool_result`` blocks. Providers other than Anthropic give no encrypted content or
    page age: those are empty."""
    tool_id = f"srvtoolu_{search.get('id') or n}"
    queries = [q for q in search.get("queries") or () if isinstance(q, str)]
    use = {
        "type": "server_tool_use",
        "id": tool_id,
        "name": WEB_SEARCH,
        "input": {"query": queries[0] if queries else ""},
    }
    content: Any
    if search.get("error"):
        content = {"type": "web_search_tool_result_error", "error_code": str(search["error"])}
    else:
        content = [
            {
                "type": "web_search_result",
                "url": s["url"],
                "title": s.get("title") or "",
                "encrypted_content": "",
                "page_age": None,
            }
            for s in search.get("sources") or ()
            if isinstance(s, dict) and isinstance(s.get("url"), str)
        ]
    return [use, {"type": "web_search_tool_result", "tool_use_id": tool_id, "content": content}]


def _citation(annotation: Mapping[str, Any], cited: str) -> dict[str, Any]:
    """A chat url_citation as Anthropic's web search citation; the provider gives no source text or
    encrypted index, so ``cited_text`` is the answer's text it covers."""
    citation = annotation["url_citation"]
    title = citation.get("title") if isinstance(citation.get("title"), str) else None
    return {
        "type": "web_search_result_location",
        "url": citation["url"],
        "title": title,
        "cited_text": cited,
        "encrypted_index": "",
    }


def _spans(annotations: Any, length: int) -> list[tuple[int, int, list[Mapping[str, Any]]]]:
    """The chat citations grouped by the text they cover, in order; overlapping spans after the
    first are dropped (an Anthropic text block has one set of citations)."""
    spans: dict[tuple[int, int], list[Mapping[str, Any]]] = {}
    for annotation in annotations or ():
        citation = annotation.get("url_citation") if isinstance(annotation, dict) else None
        if not isinstance(citation, dict) or not isinstance(citation.get("url"), str):
            continue
        start, end = citation.get("start_index"), citation.get("end_index")
        if isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= length:
            spans.setdefault((start, end), []).append(annotation)
    out: list[tuple[int, int, list[Mapping[str, Any]]]] = []
    for (start, end), found in sorted(spans.items()):
        if not out or start >= out[-1][1]:
            out.append((start, end, found))
    return out


def text_blocks(text: str, annotations: Any) -> list[dict[str, Any]]:
    """The answer's text as text blocks, a cited stretch in a block of its own with its citations."""
    blocks: list[dict[str, Any]] = []
    at = 0
    for start, end, found in _spans(annotations, len(text)):
        if start > at:
            blocks.append({"type": "text", "text": text[at:start]})
        cited = text[start:end]
        blocks.append({"type": "text", "text": cited, "citations": [_citation(a, cited) for a in found]})
        at = end
    if at < len(text):
        blocks.append({"type": "text", "text": text[at:]})
    return blocks


def from_chat(chat: Mapping[str, Any], usage: Usage | None, ctx: CallContext) -> dict[str, Any]:
    """A chat completion (already normalised by the pipeline) as a ``Message``."""
    choices = chat.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content: list[dict[str, Any]] = []
    calls = [c for c in message.get("tool_calls") or () if isinstance(c, dict)]
    # Signed blocks as they came (those a later tool call carries go right before it); else the
    # reasoning text as one unsigned block.
    later = [split_call_id(c.get("id") or "")[1] for c in calls[1:]]
    carried_later = [b for blocks in later for b in blocks]
    signed = [b for b in thinking_blocks(message.get("thinking_blocks")) if b not in carried_later]
    reasoning = message.get("reasoning_content")
    if signed:
        content.extend(signed)
    elif isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    for n, search in enumerate(message.get(WEB_SEARCH_KEY) or ()):
        if isinstance(search, dict):
            content += search_blocks(search, n)
    text = message.get("content")
    if isinstance(text, str) and text:
        content += text_blocks(text, message.get("annotations"))
    for n, call in enumerate(calls):
        function = call.get("function")
        if not isinstance(function, dict):
            continue
        if n > 0:
            content.extend(later[n - 1])
        try:
            arguments = tool_arguments(function.get("arguments"))
        except Exception:  # a model's malformed arguments: kept as text rather than lost
            arguments = {"arguments": function.get("arguments")}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or "",
                "name": function.get("name") or "",
                "input": arguments,
            }
        )
    said = choice.get(STOP_SEQUENCE_KEY)
    reason, sequence = _stop(choice.get("finish_reason"), said, text if isinstance(text, str) else "", ctx)
    if reason == "tool_use" and not any(b["type"] == "tool_use" for b in content):
        reason = "end_turn"
    return {
        "id": message_id(chat.get("id"), ctx),
        "type": "message",
        "role": "assistant",
        "model": chat.get("model") or ctx.model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": message_usage(usage),
    }


# --- answered by the gateway itself ----------------------------------------------------------------

# Marks a count_tokens answer as the gateway's estimate; the provider's own count has no such mark.
ESTIMATE_HEADER = "x-ai-proxy-estimated"


def count_body(input_tokens: int) -> bytes:
    """Anthropic's ``MessageTokensCount``."""
    return orjson.dumps({"input_tokens": input_tokens})


def count_tokens(body: Mapping[str, Any]) -> bytes:
    """``POST /v1/messages/count_tokens`` on a provider that cannot count: an estimate from the
    prompt's text (tools included)."""
    chat = to_chat(body)
    text = request_text(chat)
    if chat.get("tools"):
        text += orjson.dumps(chat["tools"]).decode()
    return count_body(estimate_tokens(text))


def models_page(names: list[str], created: int) -> bytes:
    """``GET /v1/models``: the route's model in Anthropic's ``ModelInfo`` page shape."""
    created_at = datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    data = [{"type": "model", "id": n, "display_name": n, "created_at": created_at} for n in names]
    return orjson.dumps(
        {
            "data": data,
            "has_more": False,
            "first_id": names[0] if names else None,
            "last_id": names[-1] if names else None,
        }
    )


def local_answer(
    method: str, operation: str | None, model_id: str | None, body: bytes, names: list[str], created: int
) -> tuple[int, bytes, dict[str, str]]:
    """The answers the gateway gives itself: count_tokens and the models list (or one model)."""
    json = {"content-type": "application/json"}
    if operation == "count_tokens" and method == "POST":
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return 400, error_body(400, "the request body is not valid JSON"), json
        if not isinstance(parsed, dict):
            return 400, error_body(400, "the request body must be a JSON object"), json
        return 200, count_tokens(parsed), {**json, ESTIMATE_HEADER: "true"}
    if model_id is None:
        return 200, models_page(names, created), json
    if model_id in names:
        return 200, orjson.dumps(orjson.loads(models_page([model_id], created))["data"][0]), json
    return 404, error_body(404, f"model: {model_id}"), json


# --- errors -------------------------------------------------------------------------------------

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def error_body(status: int, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": error_type(status), "message": message}})


# --- stream -------------------------------------------------------------------------------------


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class MessagesEvents(ChatChunkWriter):
    """Chat completion chunks (parsed) -> Messages events. One content block is open at a time:
    reasoning opens a thinking block, text a text block, each tool call a tool_use block; a
    change of kind closes the open block first, as Anthropic's own streams do."""

    def __init__(self, ctx: CallContext) -> None:
        self.ctx = ctx
        self._started = False
        self._open: tuple[str, Any] | None = None  # (kind, tool index) of the open block
        self._index = -1  # the open block's index
        self._tool_blocks: dict[Any, int] = {}  # chat tool-call index -> block index
        self._finish: str | None = None
        self._ended = False
        # The end of the text, as long as the longest stop sequence asked: which one ended it.
        self._tail_chars = max(map(len, ctx.client.get("stop_sequences") or ()), default=0)
        self._tail = ""
        # With a web search offered: the open text block's text (citations quote what they cover),
        # and where in the chat content it began.
        self._quotes = bool(ctx.client.get("web_search"))
        self._block_text: list[str] = []
        self._block_start = 0
        self._chars = 0
        self._searches = 0

    def start(self, chunk: Mapping[str, Any] | None) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        chunk = chunk or {}
        message = {
            "id": message_id(chunk.get("id"), self.ctx),
            "type": "message",
            "role": "assistant",
            "model": chunk.get("model") or self.ctx.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [_event("message_start", {"type": "message_start", "message": message})]

    def _close(self) -> list[bytes]:
        if self._open is None:
            return []
        self._open = None
        return [_event("content_block_stop", {"type": "content_block_stop", "index": self._index})]

    def _open_block(self, kind: str, key: Any, block: dict[str, Any]) -> list[bytes]:
        out = self._close()
        self._index += 1
        self._open = (kind, key)
        start = {"type": "content_block_start", "index": self._index, "content_block": block}
        return [*out, _event("content_block_start", start)]

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})

    def _reasoning(self, text: str) -> list[bytes]:
        out: list[bytes] = []
        if self._open != ("thinking", None):
            out += self._open_block("thinking", None, {"type": "thinking", "thinking": "", "signature": ""})
        out.append(self._delta(self._index, {"type": "thinking_delta", "thinking": text}))
        return out

    def _thinking_block(self, block: Mapping[str, Any]) -> list[bytes]:
        """A signed block complete: its signature ends the open thinking block (opened empty when
        the provider showed no text); redacted thinking is a block of its own."""
        out: list[bytes] = []
        if block.get("type") == "redacted_thinking":
            out += self._open_block(
                "redacted", None, {"type": "redacted_thinking", "data": block.get("data") or ""}
            )
            return [*out, *self._close()]
        if self._open != ("thinking", None):
            out += self._open_block("thinking", None, {"type": "thinking", "thinking": "", "signature": ""})
        out.append(
            self._delta(self._index, {"type": "signature_delta", "signature": block.get("signature") or ""})
        )
        return [*out, *self._close()]

    def _output_text(self, text: str) -> list[bytes]:
        out: list[bytes] = []
        if self._tail_chars:
            self._tail = (self._tail + text)[-self._tail_chars :]
        if self._open != ("text", None):
            out += self._open_block("text", None, {"type": "text", "text": ""})
            self._block_text, self._block_start = [], self._chars
        self._chars += len(text)
        if self._quotes and self._chars - self._block_start <= MAX_GROUNDED_TEXT_CHARS:
            self._block_text.append(text)
        out.append(self._delta(self._index, {"type": "text_delta", "text": text}))
        return out

    def _web_search(self, search: Mapping[str, Any]) -> list[bytes]:
        """A search the provider ran: its server_tool_use and web_search_tool_result blocks."""
        use, result = search_blocks(search, self._searches)
        self._searches += 1
        query = orjson.dumps(use["input"]).decode()
        out = self._open_block("search", None, {**use, "input": {}})
        out.append(self._delta(self._index, {"type": "input_json_delta", "partial_json": query}))
        out += self._open_block("search_result", None, result)
        return [*out, *self._close()]

    def _citations(self, annotations: list[Mapping[str, Any]]) -> list[bytes]:
        """Citations of the open text block's text, as citations_delta (Anthropic's citations cover
        their whole block; a citation of text in a block already closed is lost)."""
        if self._open != ("text", None) or not self._quotes:
            return []
        text = "".join(self._block_text)
        shifted = []
        for annotation in annotations:
            citation = annotation.get("url_citation")
            if (
                isinstance(citation, dict)
                and isinstance(citation.get("start_index"), int)
                and isinstance(citation.get("end_index"), int)
            ):
                moved = {
                    **citation,
                    "start_index": citation["start_index"] - self._block_start,
                    "end_index": citation["end_index"] - self._block_start,
                }
                shifted.append({"type": "url_citation", "url_citation": moved})
        return [
            self._delta(self._index, {"type": "citations_delta", "citation": _citation(a, text[start:end])})
            for start, end, found in _spans(shifted, len(text))
            for a in found
        ]

    def _tool_call(self, call: Mapping[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        key = call.get("index", 0)
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        if key not in self._tool_blocks:
            block = {
                "type": "tool_use",
                "id": call.get("id") or "",
                "name": function.get("name") or "",
                "input": {},
            }
            out += self._open_block("tool", key, block)
            self._tool_blocks[key] = self._index
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            out.append(self._delta(self._tool_blocks[key], delta))
        return out

    def end(self, usage: Usage | None) -> list[bytes]:
        """After the provider's last chunk: the open block closes, then ``message_delta`` with the
        stop reason and the usage as the provider reported it, then ``message_stop``."""
        if self._ended:
            return []
        self._ended = True
        reason, sequence = _stop(self._finish, self._stop_sequence, self._tail, self.ctx)
        if reason == "tool_use" and not self._tool_blocks:
            reason = "end_turn"
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": sequence},
            "usage": message_usage(usage),
        }
        return [
            *self.start(None),
            *self._close(),
            _event("message_delta", delta),
            _event("message_stop", {"type": "message_stop"}),
        ]

    def error(self, status: int, message: str) -> list[bytes]:
        """A stream that failed after it began: Anthropic's ``error`` event ends it."""
        if self._ended:
            return []
        self._ended = True
        return [_event("error", orjson.loads(error_body(status, message)))]

    def keepalive(self) -> list[bytes]:
        """A ``ping`` while the provider is silent, after ``message_start`` as in Anthropic's own
        streams: a provider silent before its first chunk starts the message (id and model then
        come from the request, as on a stream with no chunks)."""
        if self._ended:
            return []
        return [*self.start(None), PING]


PING = _event("ping", {"type": "ping"})


__all__ = ["IGNORED_FIELDS", "OPTIONAL_CHAT_FIELDS", "MessagesEvents", "error_body", "from_chat", "to_chat"]
