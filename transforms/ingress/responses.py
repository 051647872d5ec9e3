"""OpenAI's Responses API as a client format, to and from the chat form every provider serves.

Pure codecs, field names from the ``openai`` SDK's types (``ResponseCreateParams``, ``Response``,
``ResponseStreamEvent``):

- ``to_chat``: a Responses request -> an OpenAI chat request;
- ``echo``: the request fields a ``Response`` repeats (instructions, metadata, tools...);
- ``from_chat``: a chat completion -> a ``Response``;
- ``ResponsesEvents``: chat completion chunks -> Responses server-sent events, one chunk at a time;
- ``error_body``: OpenAI's ``{"error": {...}}``.

OpenAI and Azure serve the Responses API themselves: their routes forward it (transforms/pipeline).
Providers without state cannot continue a stored response: ``previous_response_id``,
``conversation`` and ``item_reference`` items are refused with a 400 naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from transforms.errors import GatewayError, error_type_for
from transforms.errors import error_body as openai_error_body
from transforms.ingress.chat_chunks import ChatChunkWriter
from transforms.reasoning import pack_blocks, thinking_blocks, unpack_blocks
from transforms.types import WEB_SEARCH_KEY, WEB_SEARCH_REQUIRED, CallContext, Usage
from transforms.web_search import WEB_SEARCH

# The Responses API's web search tools (the openai SDK's WebSearchToolParam and
# WebSearchPreviewToolParam types): the provider's own search where it has one, else left out.
WEB_SEARCH_TOOLS = frozenset(
    {"web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11"}
)
# Built-in tools that need OpenAI's own stores: refused with a 400 naming the provider.
_STORE_TOOLS = {"file_search": "searches OpenAI vector stores (vector_store_ids)"}

# Fields of a Responses request with no counterpart in the chat form: accepted, ignored. Agents
# such as the Codex CLI send several of them.
IGNORED_FIELDS = frozenset(
    {
        "include",
        "prompt_cache_key",
        "prompt_cache_retention",
        "client_metadata",
        "store",
        "truncation",
        "service_tier",
        "safety_identifier",
        "stream_options",
        "max_tool_calls",
        "top_logprobs",
        "prompt",
    }
)
# Chat fields the adapter sets that only narrow or tune the answer: left out where a provider
# cannot express them (the pipeline retries without), rather than the client failing.
OPTIONAL_CHAT_FIELDS = frozenset({"parallel_tool_calls", "user"})
# Request fields a Response repeats as they were asked.
_ECHOED = ("instructions", "metadata", "temperature", "top_p", "max_output_tokens", "user", "reasoning")
# Set in the echo (never sent: ``_response`` leaves it out) when the client asked for
# ``include: ["reasoning.encrypted_content"]``: reasoning items then carry the signed thinking.
_ENCRYPTED = "_reasoning_encrypted"

# --- request ------------------------------------------------------------------------------------


def _bad(message: str, param: str | None = None) -> GatewayError:
    """A 400 naming the request field at fault, as OpenAI's errors do."""
    return GatewayError(400, message, "invalid_request", param=param)


def _stateful(body: Mapping[str, Any], provider: str = "") -> None:
    """What only a provider that keeps responses can do."""
    # previous_response_id reaches here only when the gateway keeps no responses (the store addon
    # otherwise replaces it with the stored context).
    reasons = {
        "previous_response_id": "the gateway keeps no responses (ai_proxy_responses_store is 0)",
        "conversation": "conversations live at OpenAI only",
    }
    for name, reason in reasons.items():
        if body.get(name):
            raise GatewayError(
                400,
                f"{name}: {reason}; send the whole conversation in 'input'",
                "unsupported_parameter",
                param=name,
            )
    if body.get("background") is True:
        raise GatewayError(
            400,
            f"background: {_on(provider)} runs nothing in the background (only OpenAI and Azure do)",
            "unsupported_parameter",
            param="background",
        )


def _on(provider: str) -> str:
    return f"the {provider} provider" if provider else "this route's provider"


def _content_parts(content: Any, where: str, provider: str = "") -> str | list[dict[str, Any]]:
    """A message's content as chat content: plain text stays a string, images and files make parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(f"{where}: expected a string or a list of content parts", param=where)
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        at = f"{where}[{i}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text", "summary_text"):
            parts.append({"type": "text", "text": str(part.get("text") or "")})
        elif kind == "refusal":
            parts.append({"type": "text", "text": str(part.get("refusal") or "")})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str) or not url:
                raise _bad(f"{at}.image_url: required (file_id needs OpenAI's file store)", param=at)
            image: dict[str, Any] = {"url": url}
            if part.get("detail") in ("low", "high", "auto"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "input_file":
            data = part.get("file_data")
            if not isinstance(data, str) or not data:
                raise _bad(f"{at}.file_data: required (file_id needs OpenAI's file store)", param=at)
            parts.append(
                {"type": "file", "file": {"filename": part.get("filename") or "file", "file_data": data}}
            )
        else:  # input_audio among them: the Responses API has no audio input
            raise _bad(f"{at}.type: '{kind}' is not supported on {_on(provider)}", param=at)
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


def _messages(items: Any, provider: str = "") -> list[dict[str, Any]]:
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list):
        raise _bad("input: expected a string or a list of items", param="input")
    chat: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []  # signed thinking of reasoning items, for the next assistant turn
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise _bad(f"{where}: expected an object", param=where)
        kind = item.get("type", "message")
        if kind == "message":
            role = _ROLES.get(item.get("role"))  # type: ignore[arg-type]
            if role is None:
                raise _bad(
                    f"{where}.role: '{item.get('role')}' is not one of user, assistant, system, developer"
                )
            content = _content_parts(item.get("content"), f"{where}.content", provider)
            if role == "assistant" and not isinstance(content, str):
                content = "".join(p.get("text", "") for p in content)
            chat.append({"role": role, "content": content})
        elif kind == "function_call":
            if not isinstance(item.get("call_id"), str) or not isinstance(item.get("name"), str):
                raise _bad(f"{where}: function_call items need a call_id and a name", param=where)
            arguments = item.get("arguments")
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {
                    "name": item["name"],
                    "arguments": arguments if isinstance(arguments, str) else "{}",
                },
            }
            last = chat[-1] if chat else None
            if last is not None and last["role"] == "assistant":  # one assistant turn, several calls
                last.setdefault("tool_calls", []).append(call)
            else:
                chat.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str):
                raise _bad(f"{where}.call_id: required", param=where)
            output = item.get("output")
            text = output if isinstance(output, str) else _content_parts(output, f"{where}.output", provider)
            if not isinstance(text, str):
                text = "".join(p.get("text", "") for p in text)
            chat.append({"role": "tool", "tool_call_id": item["call_id"], "content": text})
        elif kind == "reasoning":
            # Its encrypted_content (when the client asked for it) is the signed thinking to restore.
            thinking.extend(unpack_blocks(item.get("encrypted_content")))
        elif kind == "web_search_call":
            continue  # the chat form has no place for past searches (what they found is in the text)
        elif kind == "item_reference":
            raise _bad(
                f"{where}: item_reference needs stored responses, which this route's provider does not keep",
                param=where,
            )
        else:
            raise _bad(f"{where}.type: '{kind}' is not supported on {_on(provider)}", param=where)
        if thinking and kind in ("message", "function_call") and chat[-1]["role"] == "assistant":
            # The thinking goes with the assistant turn that follows it: the provider puts it back
            # in front of that turn's tool calls.
            chat[-1].setdefault("thinking_blocks", []).extend(thinking)
            thinking = []
    return chat


def _search_options(tool: Mapping[str, Any]) -> dict[str, Any]:
    """A Responses web search tool as chat ``web_search_options`` (the provider's transform maps
    them to its own search). ``filters`` and ``external_web_access`` have no chat counterpart."""
    options: dict[str, Any] = {}
    if tool.get("search_context_size") in ("low", "medium", "high"):
        options["search_context_size"] = tool["search_context_size"]
    location = tool.get("user_location")
    if isinstance(location, dict):
        fields = {
            k: location[k]
            for k in ("city", "country", "region", "timezone")
            if isinstance(location.get(k), str)
        }
        options["user_location"] = {"type": "approximate", "approximate": fields}
    return options


def _tools(
    tools: Any, provider: str, builtins: frozenset[str]
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Function tools, and the web search options where the provider has a search of its own.
    Other built-in tools the client merely offers are left out (``notes`` says so); file_search
    needs OpenAI's vector stores and is refused."""
    if not isinstance(tools, list):
        raise _bad("tools: expected a list", param="tools")
    out = []
    search: dict[str, Any] | None = None
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise _bad(f"tools[{i}]: expected an object", param="tools")
        kind = tool.get("type")
        if kind in WEB_SEARCH_TOOLS and WEB_SEARCH in builtins and search is None:
            search = _search_options(tool)
        if kind in _STORE_TOOLS:
            raise GatewayError(
                400,
                f"tools[{i}]: {kind} {_STORE_TOOLS[kind]}, which {_on(provider)} does not have",
                "unsupported_parameter",
                param="tools",
            )
        if kind != "function":
            continue
        if not isinstance(tool.get("name"), str):
            raise _bad(f"tools[{i}].name: required", param="tools")
        function: dict[str, Any] = {"name": tool["name"]}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        schema = tool.get("parameters")
        function["parameters"] = schema if isinstance(schema, dict) else {"type": "object", "properties": {}}
        if isinstance(tool.get("strict"), bool):
            function["strict"] = tool["strict"]
        out.append({"type": "function", "function": function})
    return out, search


def notes(
    body: Mapping[str, Any], provider: str = "", builtins: frozenset[str] = frozenset()
) -> dict[str, str]:
    """The built-in tools a request offered that the provider has no counterpart of, left out of
    its offer (for the event log)."""
    tools = body.get("tools")
    kinds = sorted(
        {
            str(t.get("type"))
            for t in tools
            if isinstance(t, dict)
            and t.get("type") != "function"
            and not (t.get("type") in WEB_SEARCH_TOOLS and WEB_SEARCH in builtins)
        }
        if isinstance(tools, list)
        else ()
    )
    if not kinds:
        return {}
    where = f"the {provider} provider has no counterpart" if provider else "they run at OpenAI only"
    text = f"responses clients' built-in tools {', '.join(kinds)} left out of the offer: {where}"
    return {f"responses-builtin-{'-'.join(kinds)}": text}


def _tool_choice(choice: Any, provider: str, search: dict[str, Any] | None) -> Any:
    """The chat tool_choice; None when the client requires the provider's web search (marked on
    its options instead: the chat form cannot name a built-in tool)."""
    if choice in ("auto", "none", "required"):
        return choice
    if not isinstance(choice, dict):
        raise _bad(f"tool_choice: '{choice}' is not one of auto, none, required", param="tool_choice")
    kind = choice.get("type")
    if kind == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    if kind == "allowed_tools":
        return "required" if choice.get("mode") == "required" else "auto"
    if kind in WEB_SEARCH_TOOLS and search is not None:
        search[WEB_SEARCH_REQUIRED] = True
        return None
    raise GatewayError(
        400,
        f"tool_choice: the built-in tool '{kind}' is required but not available on {_on(provider)}",
        "unsupported_parameter",
        param="tool_choice",
    )


def _response_format(text: Any) -> dict[str, Any] | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    if fmt["type"] == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    raise _bad(f"text.format.type: '{fmt['type']}' is not one of text, json_schema, json_object")


def to_chat(
    body: Mapping[str, Any], provider: str = "", builtins: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """A Responses request as a chat request for a route's provider, with the built-in tools its
    chat transform maps (ProviderSpec.builtin_tools)."""
    _stateful(body, provider)
    if "input" not in body:
        raise _bad("input: Field required", param="input")
    out: dict[str, Any] = {}
    if isinstance(body.get("model"), str):
        out["model"] = body["model"]
    chat = _messages(body["input"], provider)
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        chat.insert(0, {"role": "system", "content": instructions})
    out["messages"] = chat
    if body.get("max_output_tokens") is not None:
        out["max_tokens"] = body["max_output_tokens"]
    for name in ("temperature", "top_p", "parallel_tool_calls", "user"):
        if body.get(name) is not None:
            out[name] = body[name]
    search: dict[str, Any] | None = None
    if body.get("tools"):
        tools, search = _tools(body["tools"], provider, builtins)
        if tools:
            out["tools"] = tools
    if body.get("tool_choice") is not None:
        choice = _tool_choice(body["tool_choice"], provider, search)
        if choice == "none":
            search = None  # no tool at all, the provider's search included
        if choice is None:
            pass  # the provider's search is required (marked on its options)
        elif "tools" in out:
            out["tool_choice"] = choice
        elif choice == "required" and search is not None:
            search[WEB_SEARCH_REQUIRED] = True
        elif choice not in ("auto", "none"):
            raise _bad("tool_choice: a tool is required but no function tool is offered", param="tool_choice")
    if search is not None:
        out["web_search_options"] = search
    response_format = _response_format(body.get("text"))
    if response_format is not None:
        out["response_format"] = response_format
    if body.get("stream") is True:
        out["stream"] = True
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort") is not None:
        out["reasoning_effort"] = reasoning["effort"]  # each provider maps it (transforms/reasoning.py)
    return out


def echo(body: Mapping[str, Any]) -> dict[str, Any]:
    """What a Response repeats of its request, as OpenAI's does."""
    out = {name: body.get(name) for name in _ECHOED}
    out["tools"] = body.get("tools") if isinstance(body.get("tools"), list) else []
    out["tool_choice"] = body.get("tool_choice") if body.get("tool_choice") is not None else "auto"
    out["parallel_tool_calls"] = body.get("parallel_tool_calls") is not False
    text = body.get("text")
    out["text"] = text if isinstance(text, dict) and "format" in text else {"format": {"type": "text"}}
    out["store"] = body.get("store") is not False  # kept by the gateway (addon/responses_store.py)
    include = body.get("include")
    if isinstance(include, list) and "reasoning.encrypted_content" in include:
        out[_ENCRYPTED] = True
    return out


# --- answer -------------------------------------------------------------------------------------

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_usage(usage: Usage | None) -> dict[str, Any]:
    usage = usage or Usage()
    return {
        "input_tokens": usage.prompt_tokens,
        # cache_write_tokens: the chat form does not count cache writes apart (the SDK requires the field).
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def response_id(ctx: CallContext) -> str:
    """The gateway's own request id, not the provider's answer id: unique per gateway, as the ids
    the stored responses are found by must be."""
    return f"resp_{ctx.request_id}"


def _response(
    rid: str, model: str, ctx: CallContext, status: str, output: list[Any], usage: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": rid,
        "object": "response",
        "created_at": ctx.created,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "model": model,
        "output": output,
        **ctx.client,
        "usage": usage,
    }
    out.pop(_ENCRYPTED, None)
    return out


def _finish(out: dict[str, Any], finish_reason: Any) -> None:
    reason = _INCOMPLETE.get(finish_reason) if isinstance(finish_reason, str) else None
    if reason is not None:
        out["status"] = "incomplete"
        out["incomplete_details"] = {"reason": reason}


def _message_item(
    item_id: str, text: str, status: str, annotations: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": annotations or [], "logprobs": []}]
    return {"type": "message", "id": item_id, "role": "assistant", "status": status, "content": content}


def _citation(
    annotation: Mapping[str, Any], offset: int = 0, length: int | None = None
) -> dict[str, Any] | None:
    """A chat ``url_citation`` annotation as the Responses one, its indices made relative to the
    message item's text (which starts ``offset`` characters into the chat content); None when it
    lies outside that text."""
    citation = annotation.get("url_citation") if annotation.get("type") == "url_citation" else None
    if not isinstance(citation, dict) or not isinstance(citation.get("url"), str):
        return None
    start, end = citation.get("start_index"), citation.get("end_index")
    if not isinstance(start, int) or not isinstance(end, int):
        return None
    start, end = start - offset, end - offset
    if start < 0 or (length is not None and end > length):
        return None
    title = citation.get("title") if isinstance(citation.get("title"), str) else ""
    return {
        "type": "url_citation",
        "start_index": start,
        "end_index": end,
        "url": citation["url"],
        "title": title,
    }


def _search_item(item_id: str, search: Mapping[str, Any], status: str | None = None) -> dict[str, Any]:
    """One of the provider's web searches as a ``web_search_call`` item."""
    queries = [q for q in search.get("queries") or () if isinstance(q, str)]
    action: dict[str, Any] = {"type": "search", "query": queries[0] if queries else ""}
    if len(queries) > 1:
        action["queries"] = queries
    sources = [
        {"type": "url", "url": s["url"]}
        for s in search.get("sources") or ()
        if isinstance(s, dict) and isinstance(s.get("url"), str)
    ]
    if sources:
        action["sources"] = sources
    done = "failed" if search.get("error") else "completed"
    return {"type": "web_search_call", "id": item_id, "status": status or done, "action": action}


def _reasoning_item(item_id: str, text: str, blocks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A reasoning item: the thinking text as its summary, and with ``blocks`` (signed thinking,
    when the client asked for encrypted content) the blocks packed as ``encrypted_content``."""
    summary = [{"type": "summary_text", "text": text}] if text else []
    item: dict[str, Any] = {"type": "reasoning", "id": item_id, "summary": summary}
    if blocks:
        item["encrypted_content"] = pack_blocks(blocks)
    return item


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def from_chat(chat: Mapping[str, Any], usage: Usage | None, ctx: CallContext) -> dict[str, Any]:
    """A chat completion (already normalised by the pipeline) as a ``Response``."""
    choices = chat.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    rid = response_id(ctx)
    output: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content")
    signed = thinking_blocks(message.get("thinking_blocks")) if ctx.client.get(_ENCRYPTED) else []
    if (isinstance(reasoning, str) and reasoning) or signed:
        output.append(_reasoning_item(f"rs_{rid}", reasoning if isinstance(reasoning, str) else "", signed))
    for n, search in enumerate(message.get(WEB_SEARCH_KEY) or ()):
        if isinstance(search, dict):
            output.append(_search_item(f"ws_{rid}_{n}", search))
    text = message.get("content")
    if isinstance(text, str) and text:
        found = (_citation(a, 0, len(text)) for a in message.get("annotations") or () if isinstance(a, dict))
        output.append(_message_item(f"msg_{rid}", text, "completed", [a for a in found if a is not None]))
    for n, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments if arguments is not None else {}).decode()
        call_id = call.get("id") or f"call_{rid}_{n}"
        output.append(
            _call_item(f"fc_{rid}_{n}", call_id, function.get("name") or "", arguments, "completed")
        )
    out = _response(rid, chat.get("model") or ctx.model, ctx, "completed", output, response_usage(usage))
    _finish(out, choice.get("finish_reason"))
    return out


# --- stored responses (the state kept by addon/responses_store.py) ----------------------------------

_ITEM_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}


def input_items(body: Mapping[str, Any], response_id: str) -> list[dict[str, Any]]:
    """A request's ``input`` as items with ids, as ``input_items`` lists them and as a later
    request's ``previous_response_id`` continues them."""
    given = body.get("input")
    items: list[Any] = [{"role": "user", "content": given}] if isinstance(given, str) else list(given or [])
    out = []
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        item = {"type": "message", **item} if "type" not in item else dict(item)
        if item["type"] == "message" and isinstance(item.get("content"), str):
            kind = "output_text" if item.get("role") == "assistant" else "input_text"
            item["content"] = [{"type": kind, "text": item["content"]}]
        if item["type"] == "message":
            item.setdefault("status", "completed")
        item.setdefault("id", f"{_ITEM_PREFIXES.get(item['type'], 'item')}_{response_id}_in{n}")
        out.append(item)
    return out


def continued(body: Mapping[str, Any], context: list[dict[str, Any]]) -> dict[str, Any]:
    """A request that names ``previous_response_id`` as the stateless request it stands for: the
    earlier context (its inputs and outputs) first, then its own input."""
    out = {k: v for k, v in body.items() if k != "previous_response_id"}
    given = body.get("input")
    own = [{"role": "user", "content": given}] if isinstance(given, str) else list(given or [])
    out["input"] = [*context, *own]
    return out


def item_page(items: list[dict[str, Any]], query: Mapping[str, str]) -> dict[str, Any]:
    """``GET /responses/{id}/input_items``: newest first unless ``order=asc``; ``after`` and
    ``limit`` (1-100, default 20) page through them."""
    ordered = items if query.get("order") == "asc" else items[::-1]
    after = query.get("after")
    if after:
        ids = [item.get("id") for item in ordered]
        ordered = ordered[ids.index(after) + 1 :] if after in ids else []
    try:
        limit = min(max(int(query.get("limit") or 20), 1), 100)
    except ValueError:
        limit = 20
    page = ordered[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0].get("id") if page else None,
        "last_id": page[-1].get("id") if page else None,
        "has_more": len(ordered) > limit,
    }


def not_found(response_id: str, param: str | None = None) -> GatewayError:
    if param == "previous_response_id":
        return GatewayError(
            404,
            f"Previous response with id '{response_id}' not found.",
            "previous_response_not_found",
            param=param,
        )
    return GatewayError(404, f"No response found with id '{response_id}'.", "not_found")


# --- errors -------------------------------------------------------------------------------------


def error_body(status: int, message: str) -> bytes:
    return openai_error_body(message, error_type_for(status))


# --- stream -------------------------------------------------------------------------------------


class ResponsesEvents(ChatChunkWriter):
    """Chat completion chunks (parsed) -> Responses events. One output item is open at a time:
    reasoning opens a reasoning item, text a message, each tool call a function_call item; a change
    of kind closes the open item first, as OpenAI's own streams do."""

    def __init__(self, ctx: CallContext) -> None:
        self.ctx = ctx
        self._seq = 0
        self._id = response_id(ctx)
        self._model = ctx.model
        self._started = False
        self._output: list[dict[str, Any]] = []  # items done, and the open one last
        self._open: tuple[str, Any] | None = None  # (kind, chat tool index) of the open item
        self._text = ""  # the open message's or reasoning item's text so far
        self._signed: list[dict[str, Any]] = []  # the open reasoning item's signed thinking blocks
        self._annotations: list[dict[str, Any]] = []  # the open message's citations
        self._chars = 0  # characters of chat content so far (chat citations count in them)
        self._item_start = 0  # where in the chat content the open message item began
        self._calls: dict[Any, int] = {}  # chat tool-call index -> output index
        self._finish: str | None = None
        self._ended = False
        self.final: dict[str, Any] | None = None  # the whole Response, once the stream has ended

    def _event(self, kind: str, data: dict[str, Any]) -> bytes:
        data = {"type": kind, **data, "sequence_number": self._seq}
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def _snapshot(self, status: str, usage: Any) -> dict[str, Any]:
        return _response(self._id, self._model, self.ctx, status, list(self._output), usage)

    def start(self, chunk: Mapping[str, Any] | None) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        chunk = chunk or {}
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            self._model = chunk["model"]
        created = self._snapshot("in_progress", None)
        return [
            self._event("response.created", {"response": created}),
            self._event("response.in_progress", {"response": created}),
        ]

    @property
    def _index(self) -> int:
        return len(self._output) - 1

    def _close(self) -> list[bytes]:
        if self._open is None:
            return []
        kind, _ = self._open
        self._open = None
        item, at = self._output[-1], self._index
        out: list[bytes] = []
        if kind == "message":
            part = {
                "type": "output_text",
                "text": self._text,
                "annotations": self._annotations,
                "logprobs": [],
            }
            where = {"item_id": item["id"], "output_index": at, "content_index": 0}
            out.append(
                self._event("response.output_text.done", {**where, "text": self._text, "logprobs": []})
            )
            out.append(self._event("response.content_part.done", {**where, "part": part}))
            item = _message_item(item["id"], self._text, "completed", self._annotations)
        elif kind == "reasoning":
            part = {"type": "summary_text", "text": self._text}
            where = {"item_id": item["id"], "output_index": at, "summary_index": 0}
            if self._text:
                out.append(self._event("response.reasoning_summary_text.done", {**where, "text": self._text}))
                out.append(self._event("response.reasoning_summary_part.done", {**where, "part": part}))
            item = _reasoning_item(item["id"], self._text, self._signed)
            self._signed = []
        else:
            where = {"item_id": item["id"], "output_index": at}
            done = {**where, "name": item["name"], "arguments": item["arguments"]}
            out.append(self._event("response.function_call_arguments.done", done))
            item = {**item, "status": "completed"}
        self._output[-1] = item
        out.append(self._event("response.output_item.done", {"output_index": at, "item": item}))
        return out

    def _open_item(self, kind: str, key: Any, item: dict[str, Any]) -> list[bytes]:
        out = self._close()
        self._open = (kind, key)
        self._text = ""
        self._annotations = []
        self._item_start = self._chars
        self._output.append(item)
        out.append(self._event("response.output_item.added", {"output_index": self._index, "item": item}))
        return out

    def _reasoning(self, text: str) -> list[bytes]:
        out: list[bytes] = []
        if self._open != ("reasoning", None):
            item_id = f"rs_{self._id}_{len(self._output)}"
            out += self._open_item("reasoning", None, {"type": "reasoning", "id": item_id, "summary": []})
            part = {"type": "summary_text", "text": ""}
            where = {"item_id": item_id, "output_index": self._index, "summary_index": 0}
            out.append(self._event("response.reasoning_summary_part.added", {**where, "part": part}))
        self._text += text
        where = {"item_id": self._output[-1]["id"], "output_index": self._index, "summary_index": 0}
        out.append(self._event("response.reasoning_summary_text.delta", {**where, "delta": text}))
        return out

    def _thinking_block(self, block: Mapping[str, Any]) -> list[bytes]:
        """A signed block: kept for the reasoning item's encrypted_content, when the client asked."""
        if not self.ctx.client.get(_ENCRYPTED):
            return []
        out: list[bytes] = []
        if self._open != ("reasoning", None):  # thinking with no text shown
            item_id = f"rs_{self._id}_{len(self._output)}"
            out += self._open_item("reasoning", None, {"type": "reasoning", "id": item_id, "summary": []})
        self._signed.extend(thinking_blocks([block]))
        return out

    def _output_text(self, text: str) -> list[bytes]:
        out: list[bytes] = []
        if self._open != ("message", None):
            item_id = f"msg_{self._id}_{len(self._output)}"
            item = {
                "type": "message",
                "id": item_id,
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            }
            out += self._open_item("message", None, item)
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            where = {"item_id": item_id, "output_index": self._index, "content_index": 0}
            out.append(self._event("response.content_part.added", {**where, "part": part}))
        self._text += text
        self._chars += len(text)
        where = {"item_id": self._output[-1]["id"], "output_index": self._index, "content_index": 0}
        out.append(self._event("response.output_text.delta", {**where, "delta": text, "logprobs": []}))
        return out

    def _citations(self, annotations: list[Mapping[str, Any]]) -> list[bytes]:
        """Citations of the open message's text (a citation of an earlier, closed item is lost)."""
        if self._open != ("message", None):
            return []
        out: list[bytes] = []
        where = {"item_id": self._output[-1]["id"], "output_index": self._index, "content_index": 0}
        for annotation in annotations:
            citation = _citation(annotation, self._item_start, len(self._text))
            if citation is None:
                continue
            self._annotations.append(citation)
            added = {**where, "annotation_index": len(self._annotations) - 1, "annotation": citation}
            out.append(self._event("response.output_text.annotation.added", added))
        return out

    def _web_search(self, search: Mapping[str, Any]) -> list[bytes]:
        """A search the provider ran: a web_search_call item, whole (it arrives done)."""
        out = self._close()
        at = len(self._output)
        item = _search_item(f"ws_{self._id}_{at}", search)
        self._output.append(item)
        where = {"item_id": item["id"], "output_index": at}
        out.append(
            self._event(
                "response.output_item.added", {"output_index": at, "item": {**item, "status": "in_progress"}}
            )
        )
        out.append(self._event("response.web_search_call.in_progress", where))
        out.append(self._event("response.web_search_call.searching", where))
        if item["status"] == "completed":
            out.append(self._event("response.web_search_call.completed", where))
        out.append(self._event("response.output_item.done", {"output_index": at, "item": item}))
        return out

    def _tool_call(self, call: Mapping[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        key = call.get("index", 0)
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        if key not in self._calls:
            n = len(self._output)
            item = _call_item(
                f"fc_{self._id}_{n}",
                call.get("id") or f"call_{self._id}_{n}",
                function.get("name") or "",
                "",
                "in_progress",
            )
            out += self._open_item("function_call", key, item)
            self._calls[key] = self._index
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            at = self._calls[key]
            item = self._output[at]
            self._output[at] = {**item, "arguments": item["arguments"] + arguments}
            delta = {"item_id": item["id"], "output_index": at, "delta": arguments}
            out.append(self._event("response.function_call_arguments.delta", delta))
        return out

    def end(self, usage: Usage | None) -> list[bytes]:
        """After the provider's last chunk: the open item closes, then ``response.completed`` (or
        ``response.incomplete`` for a truncated answer) with the whole response and its usage."""
        if self._ended:
            return []
        self._ended = True
        out = [*self.start(None), *self._close()]
        final = self._snapshot("completed", response_usage(usage))
        _finish(final, self._finish)
        self.final = final
        kind = "response.completed" if final["status"] == "completed" else "response.incomplete"
        out.append(self._event(kind, {"response": final}))
        return out

    def error(self, status: int, message: str) -> list[bytes]:
        """A stream that failed after it began: OpenAI's ``error`` event ends it."""
        if self._ended:
            return []
        self._ended = True
        return [self._event("error", {"code": error_type_for(status), "message": message, "param": None})]


__all__ = [
    "IGNORED_FIELDS",
    "OPTIONAL_CHAT_FIELDS",
    "ResponsesEvents",
    "echo",
    "error_body",
    "from_chat",
    "to_chat",
]
