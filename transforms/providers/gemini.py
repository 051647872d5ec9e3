"""Google Gemini (AI Studio) and Vertex AI behind OpenAI's chat, completions and embeddings formats.

Requests become ``generateContent`` bodies (camelCase REST JSON, field names checked against the
``google-genai`` SDK's types): system and developer messages move to ``systemInstruction``, roles
become user/model, images become ``inlineData`` / ``fileData`` parts, tool calls and results become
``functionCall`` / ``functionResponse`` parts, consecutive turns of one role are merged, and tool
and response schemas are reduced to the OpenAPI subset Gemini's ``Schema`` accepts. Streams are
asked for as SSE (``alt=sse``); a JSON-array stream (Gemini's default framing) is read as well.

Gemini has no tool-call ids, so ids are made up (``call_<request id>_<n>``). A call's thought
signature, which Gemini 3 needs back with the call in the next turn, rides in the id after
``SIGNATURE_MARKER`` and is put back on the ``functionCall`` part when the client replays the call.

Routes go to AI Studio (``/v1beta/models/{model}:...``) unless ``model.options.gemini`` names a
Vertex AI endpoint, project and location. Anything that would change the answer and has no Gemini
equivalent is refused with a 400 naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from itertools import count
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from transforms.chunks import StreamTranslatorBase
from transforms.common import (
    check_fields,
    content_parts,
    dumps_arguments,
    embedding_list,
    embedding_texts,
    image_url_of,
    parse_data_url,
    refuse,
    tool_arguments,
    vertex_model_path,
    vertex_origin,
)
from transforms.config import ModelOptions
from transforms.errors import bad_request
from transforms.limits import (
    MAX_GROUNDED_TEXT_CHARS,
    MAX_SCHEMA_DEPTH,
    MAX_SCHEMA_INLINED_BYTES,
    MAX_SCHEMA_NODES,
    MAX_STREAM_EVENT_BYTES,
    SchemaTooLarge,
    element_too_large,
)
from transforms.reasoning import BUDGETS, REASONING_FIELDS, Reasoning, carried, carry, reasoning_of
from transforms.types import (
    WEB_SEARCH_KEY,
    CallContext,
    ErrorInfo,
    Json,
    ProviderRequest,
    ProviderSpec,
    RouteTransform,
    TokenCounter,
    Usage,
)
from transforms.usage import estimate_tokens, token_count
from transforms.web_search import (
    WEB_SEARCH,
    char_index,
    required,
    search_call,
    search_options,
    source,
    url_citation,
)

PROVIDER = "gemini"
AI_STUDIO_BASE = "https://generativelanguage.googleapis.com"
JSON_MIME = "application/json"

# --- which client fields are translated, harmless, or refused --------------------------------------

# Fields that only change how OpenAI stores, bills or identifies a call, never the answer itself.
_IGNORED = frozenset(
    {
        "model",
        "stream",
        "stream_options",
        "user",
        "safety_identifier",
        "store",
        "metadata",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "encoding_format",  # embeddings: the pipeline encodes base64 itself
    }
)
# Fields whose neutral value is fine and any other value is refused: name -> (is_neutral, why).
_NEUTRAL: Mapping[str, tuple[Callable[[Any], bool], str]] = {
    "logprobs": (lambda v: v is False, "is not supported"),
    "top_logprobs": (lambda v: v == 0, "is not supported"),
    "logit_bias": (lambda v: v == {}, "is not supported"),
    "parallel_tool_calls": (lambda v: v is True, "set to false is not supported"),
    "modalities": (lambda v: v == ["text"], "other than ['text'] is not supported"),
    "best_of": (lambda v: v == 1, "above 1 is not supported"),
    "echo": (lambda v: v is False, "is not supported"),
    "suffix": (lambda v: v == "", "is not supported"),
}
_SAMPLING = frozenset(
    {
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop",
        "n",
        "seed",
        "presence_penalty",
        "frequency_penalty",
    }
)
_CHAT_FIELDS = (
    _SAMPLING
    | {
        "messages",
        "max_completion_tokens",
        "tools",
        "tool_choice",
        "response_format",
        "web_search_options",
    }
    | REASONING_FIELDS
)
_COMPLETIONS_FIELDS = _SAMPLING | {"prompt"}
_EMBEDDINGS_FIELDS = frozenset({"input", "dimensions"})


def _check_fields(body: Mapping[str, Any], translated: frozenset[str]) -> None:
    check_fields(PROVIDER, body, translated, _IGNORED, _NEUTRAL)


# --- where requests go ---------------------------------------------------------------------------


def _base_url(options: ModelOptions, model: str, env: Mapping[str, str]) -> str:
    vertex = options.gemini
    if vertex is None or not vertex.is_vertex:
        return AI_STUDIO_BASE
    return vertex_origin(vertex)


def model_path(ctx: CallContext, method: str) -> str:
    """``.../models/{model}:{method}`` on AI Studio or on the configured Vertex AI project."""
    model = ctx.model.removeprefix("models/")
    vertex = ctx.options.gemini
    if vertex is None or not vertex.is_vertex:
        return f"/v1beta/models/{quote(model, safe='-._~@')}:{method}"
    return vertex_model_path(vertex, "google", model, method)


def _is_vertex(ctx: CallContext) -> bool:
    return ctx.options.gemini is not None and ctx.options.gemini.is_vertex


def _generate_request(out: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    if ctx.stream:
        return ProviderRequest(out, model_path(ctx, "streamGenerateContent"), query=[("alt", "sse")])
    return ProviderRequest(out, model_path(ctx, "generateContent"))


# --- request: generation config ------------------------------------------------------------------


def _stop_sequences(stop: Any) -> list[str]:
    return [stop] if isinstance(stop, str) else list(stop or ())


def _generation_config(body: Mapping[str, Any], ctx: CallContext) -> dict[str, Any]:
    config: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    for openai_name, gemini_name in (("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK")):
        if body.get(openai_name) is not None:
            config[gemini_name] = body[openai_name]
    stop = _stop_sequences(body.get("stop"))
    if stop:
        config["stopSequences"] = stop
    n = body.get("n")
    if n is not None and n > 1:
        if ctx.stream:
            raise refuse(PROVIDER, "n", "above 1 is not supported when streaming")
        config["candidateCount"] = n
    if body.get("seed") is not None:
        config["seed"] = body["seed"]
    # Some Gemini models reject penalties outright: a neutral 0 is not sent at all.
    for openai_name, gemini_name in (
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if body.get(openai_name):
            config[gemini_name] = body[openai_name]
    return config


# Gemini 3 and later think by level, Gemini 2.5 by a token budget; Pro models cannot stop thinking.
_GEMINI_VERSION = re.compile(r"gemini-(\d+)(?:\.(\d+))?")
# The largest thinking budget of Gemini 2.5 Flash and Flash-Lite (Pro takes up to 32768).
_FLASH_MAX_BUDGET = 24576
_PRO = re.compile(r"(?:^|[-_/])pro(?:$|[-_@.])")
_PRO_LEVELS = {"minimal": "low", "low": "low"}  # Gemini 3 Pro: low or high
_LEVELS = {"minimal": "minimal", "low": "low", "medium": "medium", "high": "high"}


def thinking_config(reasoning: Reasoning, model: str) -> dict[str, Any] | None:
    """``generationConfig.thinkingConfig`` for a reasoning request (thoughts included in the answer,
    so that they come back as ``reasoning_content``); None: leave the model's default."""
    name = model.lower()
    found = _GEMINI_VERSION.search(name)
    pro = _PRO.search(name) is not None
    if found is not None and int(found.group(1)) >= 3:
        effort = reasoning.effort or "high"
        if reasoning.off:
            return {"thinkingLevel": "low" if pro else "minimal"}
        level = _PRO_LEVELS.get(effort, "high") if pro else _LEVELS.get(effort, "high")
        return {"thinkingLevel": level, "includeThoughts": True}
    if reasoning.off:
        return None if pro else {"thinkingBudget": 0}
    if reasoning.adaptive:
        return {"thinkingBudget": -1, "includeThoughts": True}  # dynamic: the model decides
    budget = reasoning.budget if reasoning.budget is not None else BUDGETS.get(reasoning.effort or "high")
    return {"thinkingBudget": min(budget or BUDGETS["high"], _FLASH_MAX_BUDGET), "includeThoughts": True}


def _response_format(response_format: Any, config: dict[str, Any], budget: SchemaBudget) -> None:
    """json_object -> JSON mime type; json_schema -> JSON mime type and the reduced schema."""
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind in (None, "text"):
        return
    config["responseMimeType"] = JSON_MIME
    if kind != "json_schema":
        return
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if schema is None:
        return
    converted = gemini_schema(schema, "response_format.json_schema.schema", ordered=True, budget=budget)
    # Gemini refuses an OBJECT schema without properties; "any JSON object" is the mime type alone.
    if not (converted.get("type") == "OBJECT" and not converted.get("properties")):
        config["responseSchema"] = converted


# --- request: JSON Schema -> Gemini Schema -------------------------------------------------------

_TYPES = {
    "string": "STRING",
    "number": "NUMBER",
    "integer": "INTEGER",
    "boolean": "BOOLEAN",
    "array": "ARRAY",
    "object": "OBJECT",
    "null": "NULL",
}
# Formats the Gemini API accepts per type; any other format is dropped (the description stays).
_FORMATS = {
    "STRING": frozenset({"enum", "date-time"}),
    "INTEGER": frozenset({"int32", "int64"}),
    "NUMBER": frozenset({"float", "double"}),
}
# Keywords copied unchanged. Everything not handled (additionalProperties, strict, $schema, $id,
# examples, multipleOf, exclusiveMinimum, uniqueItems, patternProperties, not, ...) is dropped:
# Gemini's Schema has no such field and rejects the request that carries one.
_COPIED = (
    "title",
    "description",
    "pattern",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minProperties",
    "maxProperties",
    "default",
    "example",
    "propertyOrdering",
)
_REF_PREFIXES = ("#/$defs/", "#/definitions/")


class SchemaBudget:
    """What all schemas of one request may still inline (``MAX_SCHEMA_INLINED_BYTES``); nodes and
    depth are budgeted per schema."""

    __slots__ = ("inlined_bytes",)

    def __init__(self) -> None:
        self.inlined_bytes = MAX_SCHEMA_INLINED_BYTES


def gemini_schema(
    schema: Any, where: str, *, ordered: bool = False, label: str = "", budget: SchemaBudget | None = None
) -> dict[str, Any]:
    """A JSON Schema as Gemini's OpenAPI-subset ``Schema``: local ``$ref``s inlined (recursive ones
    refused), type lists and null branches folded into ``nullable``, ``oneOf`` read as ``anyOf``,
    ``const`` as a one-value ``enum``. With ``ordered`` objects keep their property order.

    Inlining is bounded (transforms/limits.py): nodes are counted as they are built, so a schema
    whose $refs double at every level is refused after ``MAX_SCHEMA_NODES`` nodes of work, never
    expanded. ``label`` names the schema (its tool) in that refusal."""
    if not isinstance(schema, dict):
        raise bad_request(f"{where}: a JSON schema must be an object")
    defs: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        if isinstance(schema.get(key), dict):
            defs.update(schema[key])
    reducer = _SchemaReducer(defs, where, ordered, label or f"'{where}'", budget or SchemaBudget())
    return reducer.reduce(schema, (), 0)


class _SchemaReducer:
    __slots__ = ("budget", "defs", "label", "nodes", "ordered", "sizes", "where")

    def __init__(
        self, defs: dict[str, Any], where: str, ordered: bool, label: str, budget: SchemaBudget
    ) -> None:
        self.defs = defs
        self.where = where
        self.ordered = ordered
        self.label = label
        self.budget = budget
        self.nodes = 0
        self.sizes: dict[str, int] = {}  # JSON size of each definition, measured once

    def reduce(self, node: Any, refs: tuple[str, ...], depth: int) -> dict[str, Any]:
        # Budgets are checked before any work, so the work done is bounded by them, never by what
        # the $refs expand to: every call is a level deeper ($ref hops too, which are also paid for
        # in inlined bytes), and every node of the result counts.
        if depth > MAX_SCHEMA_DEPTH:
            raise SchemaTooLarge(
                f"{self.label} exceeds the schema limit of {MAX_SCHEMA_DEPTH} nesting levels ($refs inlined)"
            )
        if node is True:
            node = {}
        if not isinstance(node, dict):
            raise bad_request(f"{self.where}: every schema in it must be an object")
        depth += 1
        if "$ref" in node:
            return self._ref(node, refs, depth)
        if "allOf" in node:
            return self._all_of(node, refs, depth)
        branches = node.get("anyOf", node.get("oneOf"))
        if branches is not None:
            return self._any_of(node, branches, refs, depth)
        self.nodes += 1
        if self.nodes > MAX_SCHEMA_NODES:
            raise SchemaTooLarge(
                f"{self.label} exceeds the schema limit of {MAX_SCHEMA_NODES} nodes ($refs inlined)"
            )
        if not node:
            return {}
        out: dict[str, Any] = {}
        self._type(node, out)
        self._enum(node, out)
        if isinstance(node.get("properties"), dict) and node["properties"]:
            out["properties"] = {
                name: self.reduce(sub, refs, depth) for name, sub in node["properties"].items()
            }
        items = node.get("items")
        if isinstance(items, list):
            raise refuse(PROVIDER, self.where, "with tuple 'items' is not supported")
        if items is not None:
            out["items"] = self.reduce(items, refs, depth)
        self._copy(node, out)
        return out

    def _ref(self, node: dict[str, Any], refs: tuple[str, ...], depth: int) -> dict[str, Any]:
        ref = node["$ref"]
        name = (
            ref[ref.index("/", 2) + 1 :] if isinstance(ref, str) and ref.startswith(_REF_PREFIXES) else None
        )
        if name is None or name not in self.defs:
            raise refuse(PROVIDER, self.where, f"with the $ref '{ref}' is not supported")
        if name in refs:
            raise refuse(PROVIDER, self.where, f"with the recursive $ref '{ref}' is not supported")
        target = self.defs[name]
        self._charge(name, target)
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        merged = {**target, **siblings} if isinstance(target, dict) else target
        return self.reduce(merged, (*refs, name), depth)

    def _charge(self, name: str, target: Any) -> None:
        """An inlined definition costs its JSON size, each time: what it copies (descriptions,
        defaults, enums) is bounded along with the nodes."""
        size = self.sizes.get(name)
        if size is None:
            try:
                size = self.sizes[name] = len(orjson.dumps(target))
            except orjson.JSONEncodeError:  # nested past orjson's limit: deeper than any budget
                size = self.sizes[name] = MAX_SCHEMA_INLINED_BYTES + 1
        self.budget.inlined_bytes -= size
        if self.budget.inlined_bytes < 0:
            raise SchemaTooLarge(
                f"{self.label} exceeds the limit of {MAX_SCHEMA_INLINED_BYTES} bytes of $ref "
                "definitions inlined per request"
            )

    def _all_of(self, node: dict[str, Any], refs: tuple[str, ...], depth: int) -> dict[str, Any]:
        parts = node["allOf"]
        if not isinstance(parts, list) or len(parts) != 1 or not isinstance(parts[0], dict):
            raise refuse(PROVIDER, self.where, "with 'allOf' of several schemas is not supported")
        rest = {k: v for k, v in node.items() if k != "allOf"}
        return self.reduce({**parts[0], **rest}, refs, depth)

    def _any_of(
        self, node: dict[str, Any], branches: Any, refs: tuple[str, ...], depth: int
    ) -> dict[str, Any]:
        if not isinstance(branches, list) or not branches:
            raise bad_request(f"{self.where}: 'anyOf' / 'oneOf' must be a non-empty list")
        rest = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}
        kept = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null" and len(b) == 1)]
        nullable = len(kept) < len(branches)
        if len(kept) == 1 and isinstance(kept[0], dict):
            # Optional[X] as pydantic writes it: X itself, nullable.
            out = self.reduce({**kept[0], **rest}, refs, depth)
        elif not kept:
            out = self.reduce({"type": "null", **rest}, refs, depth)
        else:
            out = self.reduce(rest, refs, depth)
            out["anyOf"] = [self.reduce(b, refs, depth) for b in kept]
        if nullable:
            out["nullable"] = True
        return out

    def _type(self, node: dict[str, Any], out: dict[str, Any]) -> None:
        declared = node.get("type")
        names = declared if isinstance(declared, list) else [declared] if declared is not None else []
        if any(n not in _TYPES for n in names):
            raise refuse(PROVIDER, self.where, f"with the type {declared!r} is not supported")
        if "null" in names and len(names) > 1:
            out["nullable"] = True
            names = [n for n in names if n != "null"]
        if len(names) > 1:
            raise refuse(PROVIDER, self.where, f"with several types {declared!r} is not supported")
        if names:
            out["type"] = _TYPES[names[0]]
        elif isinstance(node.get("properties"), dict):
            out["type"] = "OBJECT"
        elif "items" in node:
            out["type"] = "ARRAY"
        elif "enum" in node or "const" in node:
            out["type"] = "STRING"

    def _enum(self, node: dict[str, Any], out: dict[str, Any]) -> None:
        values = [node["const"]] if "const" in node else node.get("enum")
        if not isinstance(values, list):
            return
        if None in values:
            out["nullable"] = True
        # Gemini enums are strings, also for INTEGER (as its reference shows: enum ["101", "201"]).
        out["enum"] = [v if isinstance(v, str) else orjson.dumps(v).decode() for v in values if v is not None]

    def _copy(self, node: dict[str, Any], out: dict[str, Any]) -> None:
        for key in _COPIED:
            if key in node:
                out[key] = node[key]
        if isinstance(node.get("nullable"), bool):
            out["nullable"] = out.get("nullable", False) or node["nullable"]
        fmt = node.get("format")
        if isinstance(fmt, str) and fmt in _FORMATS.get(out.get("type", ""), ()):
            out["format"] = fmt
        properties = out.get("properties") or {}
        required = node.get("required")
        if isinstance(required, list):
            kept = [name for name in required if name in properties]
            if kept:
                out["required"] = kept
        if self.ordered and len(properties) > 1 and "propertyOrdering" not in out:
            out["propertyOrdering"] = list(properties)


# --- request: tools ------------------------------------------------------------------------------


def _function_declaration(tool: Mapping[str, Any], where: str, budget: SchemaBudget) -> dict[str, Any]:
    if tool.get("type", "function") != "function":
        raise refuse(PROVIDER, f"{where}.type", f"'{tool.get('type')}' is not supported")
    function = tool["function"]
    out: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        out["description"] = function["description"]
    parameters = function.get("parameters")
    if parameters:
        path = f"{where}.function.parameters"
        label = f"the parameters of tool {function['name']!r} ({path})"
        schema = gemini_schema(parameters, path, label=label, budget=budget)
        schema.setdefault("type", "OBJECT")
        # Gemini refuses an OBJECT without properties: a function without parameters has none.
        if schema["type"] != "OBJECT" or schema.get("properties"):
            out["parameters"] = schema
    return out


def _tool_config(choice: Any) -> dict[str, Any]:
    if choice == "auto":
        mode: dict[str, Any] = {"mode": "AUTO"}
    elif choice == "none":
        mode = {"mode": "NONE"}
    elif choice == "required":
        mode = {"mode": "ANY"}
    else:
        mode = {"mode": "ANY", "allowedFunctionNames": [choice["function"]["name"]]}
    return {"functionCallingConfig": mode}


SEARCH_WITH_FUNCTIONS_NOTE = (
    "web_search_options left out where function tools are offered: Gemini combines Google Search "
    "with function calling only with server-side tool invocations, which the chat form cannot carry"
)


def _google_search(body: Mapping[str, Any], out: dict[str, Any]) -> dict[str, str]:
    """``web_search_options`` as Google Search grounding (the REST name of the SDK's google_search).
    Gemini has no user location or context size for it, and cannot be made to search (the model
    decides). Next to function declarations it is left out (a note says so), or refused when the
    client requires the search."""
    options = search_options(body)
    if options is None:
        return {}
    if out.get("tools"):
        if required(options):
            raise refuse(PROVIDER, "web_search_options", "required next to function tools is not supported")
        return {"gemini-search-with-functions": SEARCH_WITH_FUNCTIONS_NOTE}
    out["tools"] = [{"googleSearch": {}}]
    return {}


def _tools(body: Mapping[str, Any], out: dict[str, Any], budget: SchemaBudget) -> None:
    tools = body.get("tools") or ()
    declarations = [_function_declaration(t, f"tools[{k}]", budget) for k, t in enumerate(tools)]
    if declarations:
        out["tools"] = [{"functionDeclarations": declarations}]
    if body.get("tool_choice") is not None:
        out["toolConfig"] = _tool_config(body["tool_choice"])


# --- request: content parts ----------------------------------------------------------------------

# Image types Gemini reads, by URL extension: a URL is sent as fileData, which needs the type.
IMAGE_TYPES_BY_EXTENSION = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".heic": "image/heic",
    ".heif": "image/heif",
}
_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3"}


def _text_part(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    text = part.get("text")
    if not isinstance(text, str):
        raise bad_request(f"{where}: message part type is 'text' but is missing .text")
    return {"text": text}


def _refusal_part(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    """An assistant's earlier refusal, replayed as the text it was."""
    return _text_part({"text": part.get("refusal")}, where)


def image_type_of_url(url: str) -> str | None:
    path = urlsplit(url).path.lower()
    dot = path.rfind(".")
    return IMAGE_TYPES_BY_EXTENSION.get(path[dot:]) if dot >= 0 else None


def _image_part(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    url = image_url_of(part)
    inline = parse_data_url(url)
    if inline is not None:
        mime, data = inline
        return {"inlineData": {"mimeType": mime, "data": data}}
    if not url.startswith(("https://", "http://", "gs://")):
        raise bad_request(f"{where}.image_url: only data:, http(s) and gs:// URLs are supported")
    mime = image_type_of_url(url)
    if mime is None:
        known = ", ".join(IMAGE_TYPES_BY_EXTENSION)
        raise refuse(
            PROVIDER,
            f"{where}.image_url",
            f"with a URL whose image type cannot be told from its extension ({known}) is not "
            "supported (send the image as a data: URL)",
        )
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _audio_part(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    audio = part.get("input_audio") if isinstance(part.get("input_audio"), dict) else {}
    mime = _AUDIO_TYPES.get(audio.get("format"))
    if mime is None or not isinstance(audio.get("data"), str):
        raise bad_request(
            f"{where}: message part type is 'input_audio' but is missing .input_audio.data/format"
        )
    return {"inlineData": {"mimeType": mime, "data": audio["data"]}}


def _file_part(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    """An OpenAI ``file`` part carrying its bytes inline (a PDF, say); file ids mean nothing here."""
    file = part.get("file") if isinstance(part.get("file"), dict) else {}
    inline = parse_data_url(file["file_data"]) if isinstance(file.get("file_data"), str) else None
    if inline is None:
        raise refuse(PROVIDER, f"{where}.file", "other than inline data (file_data) is not supported")
    return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}


_USER_PARTS = {"text": _text_part, "image_url": _image_part, "input_audio": _audio_part, "file": _file_part}
_ASSISTANT_PARTS = {"text": _text_part, "refusal": _refusal_part}
_TEXT_ONLY = {"text": _text_part}


def _parts(content: Any, where: str, allowed: Mapping[str, Callable[..., dict[str, Any]]]) -> list[dict]:
    """OpenAI content (a string or parts) as Gemini parts; empty text is dropped (Gemini rejects
    empty parts)."""
    parts = []
    for j, part in enumerate(content_parts(content)):
        kind = part.get("type")
        build = allowed.get(kind) if isinstance(kind, str) else None
        if build is None:
            raise refuse(PROVIDER, f"{where}.content[{j}]", f"of type '{kind}' is not supported")
        built = build(part, f"{where}.content[{j}]")
        if built.get("text") != "":
            parts.append(built)
    return parts


# --- request: tool calls and results -------------------------------------------------------------


def tool_call_id(request_id: str, n: int, signature: Any = None) -> str:
    """The id of a Gemini function call: made up, with the call's thought signature appended."""
    return carry(f"call_{request_id}_{n}", signature if isinstance(signature, str) else None)


def _function_call_part(call: Mapping[str, Any], where: str) -> dict[str, Any]:
    if call.get("type", "function") != "function":
        raise refuse(PROVIDER, f"{where}.type", f"'{call.get('type')}' is not supported")
    function = call["function"]
    part: dict[str, Any] = {
        "functionCall": {"name": function["name"], "args": tool_arguments(function.get("arguments"), where)}
    }
    _, signature = carried(call["id"])
    if signature:
        part["thoughtSignature"] = signature
    return part


def _function_response(name: str, content: Any, where: str) -> dict[str, Any]:
    """A tool result: a JSON object answer as is, anything else as ``{"result": <text>}``."""
    text = (
        content
        if isinstance(content, str)
        else "".join(p["text"] for p in _parts(content, where, _TEXT_ONLY))
    )
    response: Any = None
    if text.lstrip().startswith("{"):
        try:
            response = orjson.loads(text)
        except orjson.JSONDecodeError:
            response = None
    if not isinstance(response, dict):
        response = {"result": text}
    return {"functionResponse": {"name": name, "response": response}}


# --- request: messages ---------------------------------------------------------------------------


def _turn(message: Mapping[str, Any], where: str, call_names: dict[str, str]) -> tuple[str, list[dict]]:
    """One OpenAI message as (Gemini role, parts); assistant tool calls are remembered by id, so
    that a later tool message can name its function."""
    role = message["role"]
    if role == "user":
        return "user", _parts(message.get("content"), where, _USER_PARTS)
    if role == "assistant":
        if message.get("function_call") is not None:
            raise refuse(PROVIDER, f"{where}.function_call", "(legacy functions) is not supported")
        parts = _parts(message.get("content"), where, _ASSISTANT_PARTS)
        for k, call in enumerate(message.get("tool_calls") or ()):
            parts.append(_function_call_part(call, f"{where}.tool_calls[{k}]"))
            call_names[call["id"]] = call["function"]["name"]
        return "model", parts
    if role == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str) or call_id not in call_names:
            raise bad_request(
                f"{where}: tool_call_id {call_id!r} matches no tool call of an earlier assistant message"
            )
        return "user", [_function_response(call_names[call_id], message.get("content"), where)]
    if role == "function":  # OpenAI's legacy function result names the function itself
        name = message.get("name")
        if not isinstance(name, str) or not name:
            raise bad_request(f"{where}: a function message needs a name")
        return "user", [_function_response(name, message.get("content"), where)]
    raise refuse(PROVIDER, f"{where}.role", f"'{role}' is not supported")


def _merge_turns(turns: list[tuple[str, list[dict]]]) -> list[dict[str, Any]]:
    """Consecutive turns of one role become one content (all results of parallel calls together)."""
    merged: list[dict[str, Any]] = []
    for role, parts in turns:
        if not parts:
            continue
        if merged and merged[-1]["role"] == role:
            merged[-1]["parts"].extend(parts)
        else:
            merged.append({"role": role, "parts": list(parts)})
    return merged


def convert_messages(messages: list[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system instruction parts, Gemini contents) from OpenAI chat messages."""
    system: list[dict[str, Any]] = []
    turns: list[tuple[str, list[dict]]] = []
    call_names: dict[str, str] = {}
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if message["role"] in ("system", "developer"):
            system += _parts(message.get("content"), where, _TEXT_ONLY)
        else:
            turns.append(_turn(message, where, call_names))
    return system, _merge_turns(turns)


# --- request: builders ---------------------------------------------------------------------------


def _with_config(out: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    if config:
        out["generationConfig"] = config
    return out


def build_chat(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    # Without tools, parallel_tool_calls means nothing; with them Gemini cannot honour false.
    _check_fields(
        {k: v for k, v in body.items() if k != "parallel_tool_calls" or body.get("tools")}, _CHAT_FIELDS
    )
    system, contents = convert_messages(body["messages"])
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    budget = SchemaBudget()  # one inlining budget for all schemas of the request
    _tools(body, out, budget)
    notes = _google_search(body, out)
    config = _generation_config(body, ctx)
    _response_format(body.get("response_format"), config, budget)
    reasoning = reasoning_of(body)
    thinking = thinking_config(reasoning, ctx.model) if reasoning is not None else None
    if thinking is not None:
        config["thinkingConfig"] = thinking
    request = _generate_request(_with_config(out, config), ctx)
    request.notes = notes
    return request


# Vertex's countTokens takes these generateContent fields at its top level (CountTokensRequest).
_VERTEX_COUNTED = ("contents", "systemInstruction", "tools", "generationConfig")


def build_count_tokens(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    """``models/{m}:countTokens`` for the prompt of a chat request, built by the chat transform so
    the count covers what generateContent would be sent. AI Studio counts a whole request only
    inside ``generateContentRequest`` (its top level takes ``contents`` alone); Vertex takes the
    system instruction, tools and generation config beside ``contents``."""
    generate = build_chat(body, ctx).body
    if _is_vertex(ctx):
        out = {name: generate[name] for name in _VERTEX_COUNTED if name in generate}
    else:
        out = {"generateContentRequest": {"model": f"models/{ctx.model.removeprefix('models/')}", **generate}}
    return ProviderRequest(out, model_path(ctx, "countTokens"))


def parse_count_tokens(body: Json) -> int:
    """``CountTokensResponse.totalTokens``: the whole prompt's count (cached content included)."""
    total = token_count(body.get("totalTokens")) if isinstance(body, dict) else None
    if total is None:
        raise ValueError("countTokens answered without totalTokens")
    return total


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise refuse(PROVIDER, "prompt", "other than one text prompt is not supported")
    return prompt


def build_completions(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    _check_fields(body, _COMPLETIONS_FIELDS)
    out = {"contents": [{"role": "user", "parts": [{"text": _prompt_text(body.get("prompt"))}]}]}
    return _generate_request(_with_config(out, _generation_config(body, ctx)), ctx)


def build_embeddings(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    """Vertex: ``:predict`` with one instance per text. AI Studio: ``:embedContent`` for one text,
    ``:batchEmbedContents`` for several."""
    _check_fields(body, _EMBEDDINGS_FIELDS)
    texts = embedding_texts(body["input"], PROVIDER)
    dimensions = body.get("dimensions")
    if _is_vertex(ctx):
        out: dict[str, Any] = {"instances": [{"content": text} for text in texts]}
        if dimensions is not None:
            out["parameters"] = {"outputDimensionality": dimensions}
        return ProviderRequest(out, model_path(ctx, "predict"))
    extra = {"outputDimensionality": dimensions} if dimensions is not None else {}
    if len(texts) == 1:
        return ProviderRequest(
            {"content": {"parts": [{"text": texts[0]}]}, **extra}, model_path(ctx, "embedContent")
        )
    model = "models/" + ctx.model.removeprefix("models/")
    requests = [{"model": model, "content": {"parts": [{"text": text}]}, **extra} for text in texts]
    return ProviderRequest({"requests": requests}, model_path(ctx, "batchEmbedContents"))


# --- response ------------------------------------------------------------------------------------

_FILTERED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "LANGUAGE",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)


def finish_reason(reason: Any, called_tools: bool) -> str:
    """Gemini's finishReason as OpenAI's; a stop with function calls is ``tool_calls``."""
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    return "tool_calls" if called_tools else "stop"


def _count(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)  # Vertex predict statistics are protobuf Values: numbers may be floats
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def usage_of(meta: Any) -> Usage | None:
    """``usageMetadata`` as OpenAI usage: thoughts count as completion (and reasoning) tokens,
    tool-use prompt tokens as prompt tokens; cached tokens are part of the prompt count."""
    # Gemini leaves zero counts out (proto3 JSON): a missing candidatesTokenCount is 0, but an answer
    # always has a prompt, so usage without promptTokenCount is no usage (estimated by the caller).
    if not isinstance(meta, dict) or token_count(meta.get("promptTokenCount")) is None:
        return None
    prompt = _count(meta.get("promptTokenCount")) + _count(meta.get("toolUsePromptTokenCount"))
    thoughts = _count(meta.get("thoughtsTokenCount"))
    completion = _count(meta.get("candidatesTokenCount")) + thoughts
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        cached_tokens=_count(meta.get("cachedContentTokenCount")),
        reasoning_tokens=thoughts,
    )


def native_usage(body: Any) -> Usage | None:
    """Usage of a native generateContent answer (llm_format: gemini traffic)."""
    return usage_of(body.get("usageMetadata")) if isinstance(body, dict) else None


def _response_body(body: Json) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValueError("the gemini response is not a JSON object")
    if not isinstance(body.get("candidates") or [], list):
        raise ValueError("'candidates' in the gemini response is not a list")
    return body


def block_reason(body: Mapping[str, Any]) -> str | None:
    feedback = body.get("promptFeedback")
    reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
    return reason if isinstance(reason, str) and reason else None


def parts_of(candidate: Any) -> list[dict[str, Any]]:
    content = candidate.get("content") if isinstance(candidate, dict) else None
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def _read_parts(
    parts: list[dict[str, Any]], ctx: CallContext, ids: Iterator[int]
) -> tuple[str, str, list[dict[str, Any]]]:
    """(content text, reasoning text, OpenAI tool calls) of one candidate."""
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in parts:
        call = part.get("functionCall")
        if isinstance(call, dict):
            function = {"name": call["name"], "arguments": dumps_arguments(call.get("args"))}
            call_id = tool_call_id(ctx.request_id, next(ids), part.get("thoughtSignature"))
            calls.append({"id": call_id, "type": "function", "function": function})
        elif isinstance(part.get("text"), str):
            (reasoning if part.get("thought") is True else text).append(part["text"])
        # inlineData, executableCode and other parts carry nothing an OpenAI chat client reads.
    return "".join(text), "".join(reasoning), calls


def grounding_citations(meta: Any, content: str, parts: list[str] | None = None) -> list[dict[str, Any]]:
    """``groundingMetadata.groundingSupports`` as url_citation annotations over the content.
    Segments count UTF-8 bytes of the part they name (``parts``: each part's content text, "" for
    the others), or of the whole text when they name none (streams: every event has its own parts)."""
    if not isinstance(meta, dict):
        return []
    chunks = meta.get("groundingChunks") if isinstance(meta.get("groundingChunks"), list) else []
    encoded: dict[int, tuple[bytes, int]] = {}  # part index (-1: the whole text) -> (bytes, chars before)
    out: list[dict[str, Any]] = []
    for support in meta.get("groundingSupports") or ():
        segment = support.get("segment") if isinstance(support, dict) else None
        if not isinstance(segment, dict):
            continue
        part = segment.get("partIndex")
        key = part if isinstance(part, int) and parts is not None and 0 <= part < len(parts) else -1
        if key not in encoded:
            before = sum(len(p) for p in parts[:key]) if key >= 0 and parts is not None else 0
            encoded[key] = ((parts[key] if key >= 0 and parts is not None else content).encode(), before)
        data, before = encoded[key]
        start = before + char_index(data, _count(segment.get("startIndex")))
        end = before + char_index(data, _count(segment.get("endIndex")) or len(data))
        for i in support.get("groundingChunkIndices") or ():
            chunk = chunks[i] if isinstance(i, int) and 0 <= i < len(chunks) else None
            web = chunk.get("web") if isinstance(chunk, dict) else None
            if isinstance(web, dict) and isinstance(web.get("uri"), str):
                out.append(url_citation(web["uri"], web.get("title"), start, end))
    return out


def grounding_searches(meta: Any, call_id: str) -> list[dict[str, Any]]:
    """The searches behind a grounded answer (WEB_SEARCH_KEY): its queries and the pages found."""
    if not isinstance(meta, dict):
        return []
    queries = [q for q in meta.get("webSearchQueries") or () if isinstance(q, str) and q]
    sources = []
    for chunk in meta.get("groundingChunks") or ():
        web = chunk.get("web") if isinstance(chunk, dict) else None
        found = source(web.get("uri"), web.get("title")) if isinstance(web, dict) else None
        if found is not None:
            sources.append(found)
    return [search_call(call_id, queries, sources)] if queries or sources else []


def _content_texts(parts: list[dict[str, Any]]) -> list[str]:
    """Each part's share of the content text (what groundingSupports segments count in)."""
    return [
        p["text"] if isinstance(p.get("text"), str) and p.get("thought") is not True else "" for p in parts
    ]


def _chat_choice(candidate: dict[str, Any], index: int, ctx: CallContext, ids: Iterator[int]) -> dict:
    parts = parts_of(candidate)
    text, reasoning, calls = _read_parts(parts, ctx, ids)
    filtered = candidate.get("finishReason") in _FILTERED
    # No text: null beside tool calls or for a filtered answer, as OpenAI does; else "".
    content = text if text or not (calls or filtered) else None
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = reasoning
    meta = candidate.get("groundingMetadata")
    if meta is not None:
        annotations = grounding_citations(meta, text, _content_texts(parts))
        if annotations:
            message["annotations"] = annotations
        searches = grounding_searches(meta, f"search_{ctx.request_id}_{index}") if ctx.extensions else []
        if searches:
            message[WEB_SEARCH_KEY] = searches
    return {
        "index": index,
        "message": message,
        "logprobs": None,
        "finish_reason": finish_reason(candidate.get("finishReason"), bool(calls)),
    }


def _envelope(body: dict[str, Any], ctx: CallContext, obj: str, choices: list[dict]) -> dict[str, Any]:
    response_id = body.get("responseId")
    model = body.get("modelVersion")
    prefix = "chatcmpl-" if obj == "chat.completion" else "cmpl-"
    out: dict[str, Any] = {
        "id": response_id if isinstance(response_id, str) and response_id else prefix + ctx.request_id,
        "object": obj,
        "created": ctx.created,
        "model": model if isinstance(model, str) and model else ctx.model,
        "choices": choices,
    }
    usage = usage_of(body.get("usageMetadata"))
    if usage is not None:
        out["usage"] = usage.as_openai()
    return out


def _candidates(body: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """(index, candidate) pairs; Gemini omits ``index`` when it is 0."""
    found = body.get("candidates") or []
    return [(c.get("index", i), c) for i, c in enumerate(found) if isinstance(c, dict)]


def _no_candidates(body: dict[str, Any]) -> None:
    if block_reason(body) is None:
        raise ValueError("no candidates in the gemini response")


def parse_chat(body: Json, ctx: CallContext) -> Json:
    body = _response_body(body)
    candidates = _candidates(body)
    if not candidates:
        _no_candidates(body)  # a blocked prompt is an answer: filtered, not an upstream failure
        blocked = {"role": "assistant", "content": None, "refusal": None}
        choices = [{"index": 0, "message": blocked, "logprobs": None, "finish_reason": "content_filter"}]
    else:
        ids = count()
        choices = [_chat_choice(c, i, ctx, ids) for i, c in candidates]
    return _envelope(body, ctx, "chat.completion", choices)


def parse_completions(body: Json, ctx: CallContext) -> Json:
    body = _response_body(body)
    candidates = _candidates(body)
    if not candidates:
        _no_candidates(body)
        choices = [{"text": "", "index": 0, "logprobs": None, "finish_reason": "content_filter"}]
    else:
        choices = []
        for i, candidate in candidates:
            text, _, _ = _read_parts(parts_of(candidate), ctx, count())
            reason = finish_reason(candidate.get("finishReason"), False)
            choices.append({"text": text, "index": i, "logprobs": None, "finish_reason": reason})
    return _envelope(body, ctx, "text_completion", choices)


def _vectors(body: dict[str, Any]) -> tuple[list[Any], int | None]:
    """(vectors, prompt tokens when the answer tells them) of any of the three embedding answers."""
    meta = body.get("usageMetadata")
    tokens = token_count(meta.get("promptTokenCount")) if isinstance(meta, dict) else None
    if isinstance(body.get("embedding"), dict):  # embedContent
        return [body["embedding"]["values"]], tokens
    if isinstance(body.get("embeddings"), list):  # batchEmbedContents
        return [e["values"] for e in body["embeddings"]], tokens
    if isinstance(body.get("predictions"), list):  # Vertex predict
        vectors, counts = [], []
        for prediction in body["predictions"]:
            embeddings = prediction["embeddings"]
            vectors.append(embeddings["values"])
            statistics = embeddings.get("statistics")
            counts.append(
                token_count(statistics.get("token_count")) if isinstance(statistics, dict) else None
            )
        # Vertex numbers are protobuf Values (whole floats); one missing count makes the whole an estimate.
        return vectors, None if None in counts else sum(c for c in counts if c is not None)
    raise ValueError("no embeddings in the gemini response")


def parse_embeddings(body: Json, ctx: CallContext) -> Json:
    if not isinstance(body, dict):
        raise ValueError("the gemini response is not a JSON object")
    vectors, tokens = _vectors(body)
    if any(not isinstance(v, list) for v in vectors):
        raise ValueError("an embedding in the gemini response is not a list of numbers")
    if tokens is None:  # AI Studio reports no token count for embeddings: estimated, and marked so
        estimate = estimate_tokens(ctx.prompt_text)
        return embedding_list(vectors, ctx.model, Usage(estimate, 0, estimate, estimated=True))
    return embedding_list(vectors, ctx.model, Usage(tokens, 0, tokens))


# --- errors --------------------------------------------------------------------------------------


def _error_info(error: Any) -> ErrorInfo | None:
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return None
    status = error.get("status")
    return ErrorInfo(error["message"], None, status if isinstance(status, str) and status else None)


def parse_error(status: int, body: Json) -> ErrorInfo | None:
    """``{"error": {"code": 400, "message": ..., "status": "INVALID_ARGUMENT"}}``, also wrapped in a
    list as Vertex AI and streamed requests answer."""
    if isinstance(body, list) and body:
        body = body[0]
    return _error_info(body.get("error")) if isinstance(body, dict) else None


# --- stream --------------------------------------------------------------------------------------


class JsonArraySplitter:
    """Yields the objects of a JSON array (``[{...},\\n{...}]``) as its bytes arrive, split anywhere.

    Each byte is looked at once; only the object being read is kept, so memory is bounded by the
    largest element, not by the stream, and that element by ``MAX_STREAM_EVENT_BYTES``.
    """

    __slots__ = ("_buffer", "_depth", "_escaped", "_in_string")
    _OUTSIDE = re.compile(rb'[{}"]')
    _INSIDE_STRING = re.compile(rb'[\\"]')
    _BETWEEN = frozenset(b" \t\r\n[,]")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._depth = 0
        self._in_string = False
        self._escaped = False

    def feed(self, chunk: bytes) -> list[Any]:
        found: list[Any] = []
        i, end = 0, len(chunk)
        while i < end:
            if self._depth == 0:
                i = self._between(chunk, i)
            elif self._escaped:
                self._escaped = False
                self._buffer += chunk[i : i + 1]
                i += 1
            elif self._in_string:
                i = self._string(chunk, i)
            else:
                i = self._structure(chunk, i, found)
        if len(self._buffer) > MAX_STREAM_EVENT_BYTES:
            self._buffer = bytearray()
            raise element_too_large("a JSON array element")
        return found

    def pending(self) -> bool:
        return self._depth > 0

    def _between(self, chunk: bytes, i: int) -> int:
        """Between elements only whitespace, brackets and commas may appear."""
        start = chunk.find(b"{", i)
        stop = len(chunk) if start < 0 else start
        if any(byte not in self._BETWEEN for byte in chunk[i:stop]):
            raise ValueError("the gemini stream is not a JSON array of objects")
        if start < 0:
            return stop
        self._depth = 1
        self._buffer = bytearray(b"{")
        return start + 1

    def _string(self, chunk: bytes, i: int) -> int:
        match = self._INSIDE_STRING.search(chunk, i)
        if match is None:
            self._buffer += chunk[i:]
            return len(chunk)
        k = match.start()
        self._buffer += chunk[i : k + 1]
        if chunk[k] == 0x5C:  # backslash: the next byte is escaped, wherever it arrives
            self._escaped = True
        else:
            self._in_string = False
        return k + 1

    def _structure(self, chunk: bytes, i: int, found: list[Any]) -> int:
        match = self._OUTSIDE.search(chunk, i)
        if match is None:
            self._buffer += chunk[i:]
            return len(chunk)
        k = match.start()
        self._buffer += chunk[i : k + 1]
        byte = chunk[k]
        if byte == 0x22:  # "
            self._in_string = True
        elif byte == 0x7B:  # {
            self._depth += 1
        else:
            self._depth -= 1
            if self._depth == 0:
                found.append(orjson.loads(self._buffer))
                self._buffer = bytearray()
        return k + 1


class GeminiStream(StreamTranslatorBase):
    """``streamGenerateContent`` answers -> OpenAI chunks.

    Every event is a whole GenerateContentResponse: text parts stream as content (thought parts as
    reasoning), each functionCall part is one complete tool call, usage is cumulative (the last
    value wins). The finish reason arrives with the last event and is sent when the stream ends,
    after any later usage. SSE (``alt=sse``) and the JSON-array framing are told apart by the
    first byte.
    """

    provider = PROVIDER

    def __init__(self, ctx: CallContext) -> None:
        super().__init__(ctx)
        self._framing: str | None = None  # "sse" or "array", from the first non-space byte
        self._array = JsonArraySplitter()
        self._first = True
        self._calls = 0
        self._gemini_reason: str | None = None
        self._blocked = False
        self._grounding: Any = None  # the last groundingMetadata: citations and searches at the end
        self._text: list[str] = []  # the content text, kept (bounded) to place grounding citations
        self._text_chars = 0

    # framing ---------------------------------------------------------------------------------

    def split(self, chunk: bytes) -> list[Any]:
        if self._framing is None:
            chunk = chunk.lstrip()
            if not chunk:
                return []
            self._framing = "array" if chunk[:1] in (b"[", b"{") else "sse"
        if self._framing == "array":
            return self._array.feed(chunk)
        return [orjson.loads(e.data) for e in self._sse.feed(chunk) if e.data]

    def split_rest(self) -> list[Any]:
        events = []
        if self._framing == "sse":
            for event in self._sse.finish():
                # A last event cut mid-way is dropped: the stream is incomplete, which finish() reports.
                with suppress(orjson.JSONDecodeError):
                    events.append(orjson.loads(event.data))
        return events  # an unfinished array element is reported the same way

    # translation -----------------------------------------------------------------------------

    def on_event(self, event: Any) -> list[bytes]:
        if not isinstance(event, dict):
            return self.fail("the gemini stream sent something other than a JSON object")
        if "error" in event:
            info = _error_info(event["error"]) or ErrorInfo("the gemini stream reported an error")
            return self.fail(info.message, "api_error", info.code or "upstream_error")
        if self._first:
            self._first = False
            self._identify(event)
        usage = usage_of(event.get("usageMetadata"))
        if usage is not None:
            self.usage = usage
        candidate = next((c for i, c in _candidates(event) if i == 0), None)
        if candidate is None:
            self._blocked = self._blocked or block_reason(event) is not None
            return []
        frames: list[bytes] = []
        for part in parts_of(candidate):
            frames.extend(self._part(part))
        if isinstance(candidate.get("finishReason"), str):
            self._gemini_reason = candidate["finishReason"]
        if isinstance(candidate.get("groundingMetadata"), dict):
            self._grounding = candidate["groundingMetadata"]
        return frames

    def _identify(self, event: dict[str, Any]) -> None:
        model, response_id = event.get("modelVersion"), event.get("responseId")
        if isinstance(model, str) and model:
            self.response_model = self.out.model = model
        if isinstance(response_id, str) and response_id:
            self.out.id = response_id

    def _part(self, part: dict[str, Any]) -> list[bytes]:
        call = part.get("functionCall")
        if isinstance(call, dict):
            if self.out.completions:
                return []  # a completions client asked for text and has no tools
            call_id = tool_call_id(self.ctx.request_id, self._calls, part.get("thoughtSignature"))
            key, self._calls = self._calls, self._calls + 1
            return self.out.tool_call_start(key, call_id, call["name"], dumps_arguments(call.get("args")))
        text = part.get("text")
        if not isinstance(text, str):
            return []
        if part.get("thought") is True:
            return self.out.reasoning(text)
        if self._text_chars < MAX_GROUNDED_TEXT_CHARS:
            self._text.append(text)
            self._text_chars += len(text)
        return self.content(text)

    def _grounded(self) -> list[bytes]:
        """A grounded answer's citations and searches, once its whole text is known."""
        if self._grounding is None:
            return []
        text = "".join(self._text)
        search_id = f"search_{self.ctx.request_id}_0"
        return [
            *self.out.annotations(grounding_citations(self._grounding, text)),
            *self.out.web_search(grounding_searches(self._grounding, search_id)),
        ]

    def _reason(self) -> str:
        if self._blocked and self._gemini_reason is None:
            return "content_filter"
        reason = finish_reason(self._gemini_reason, self.out.has_tool_calls())
        return "stop" if self.out.completions and reason == "tool_calls" else reason

    def finish(self) -> list[bytes]:
        frames: list[bytes] = []
        if not self._ended:
            for event in self.split_rest():
                frames.extend(self.on_event(event))
                if self._ended:
                    return frames
        if not self._ended and (self._gemini_reason is not None or self._blocked):
            frames.extend(self._grounded())
            frames.extend(self.end(self._reason()))
        return frames + super().finish()


# --- spec ----------------------------------------------------------------------------------------

SPECS = (
    ProviderSpec(
        PROVIDER,
        _base_url,
        {
            "llm/v1/chat": RouteTransform(build_chat, parse_chat, GeminiStream),
            "llm/v1/completions": RouteTransform(build_completions, parse_completions, GeminiStream),
            "llm/v1/embeddings": RouteTransform(build_embeddings, parse_embeddings),
        },
        parse_error,
        native_usage=native_usage,
        count_tokens=TokenCounter(build_count_tokens, parse_count_tokens),
        builtin_tools=frozenset({WEB_SEARCH}),
    ),
)
