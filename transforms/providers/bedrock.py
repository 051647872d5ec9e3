"""Amazon Bedrock behind OpenAI's chat, completions and embeddings formats, streams included.

Chat and completions use the Converse API (``/model/{modelId}/converse``, streamed through
``/converse-stream`` as binary ``application/vnd.amazon.eventstream`` frames); embeddings use
InvokeModel (``/model/{modelId}/invoke``) with the native body of Amazon Titan or Cohere Embed,
chosen by the model id. Every request is signed with AWS SigV4 (service ``bedrock``).

Field names follow botocore's ``bedrock-runtime`` service model (the wire JSON of Converse);
the unit tests validate every request built here with botocore's own parameter validator.

Choices that Converse leaves open:

* ``top_k`` has no Converse field; it goes in ``additionalModelRequestFields`` under the name the
  model family reads: ``top_k`` for Anthropic Claude and Mistral (and any unknown family),
  ``k`` for Cohere Command, ``inferenceConfig.topK`` for Amazon Nova. Families with no top-k
  sampling (Meta Llama, AI21, Amazon Titan text) refuse it.
* ``tool_choice: "none"`` has no Converse value: the tools are left out of the request, so the model
  cannot call any. When the conversation already holds tool calls Bedrock needs the tool
  definitions, so that combination is refused.
* ``response_format`` ``json_schema`` becomes ``outputConfig.textFormat`` (structured outputs);
  ``json_object`` has no schema to give and is refused rather than silently ignored.
* Bedrock-native ``guardrailConfig`` and ``additionalModelRequestFields`` are taken from the request's
  top level (what the openai SDK's ``extra_body`` produces) or from a literal ``extra_body`` object.
* Images must be inline (data URLs): Converse takes image bytes, and the gateway does not fetch URLs.
* A part's ``cache_control`` marker becomes a ``cachePoint`` block after it (prompt caching).
* Embeddings: Titan takes one text per call, so several inputs are refused; Cohere on Bedrock
  reports no token count in the body, so its usage is an estimate (marked as one in statistics).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from transforms.chunks import StreamTranslatorBase
from transforms.common import (
    check_fields,
    content_parts,
    dumps_arguments,
    embedding_list,
    embedding_texts,
    image_url_of,
    matched_stop,
    merge_turns,
    parse_data_url,
    refuse,
    tool_arguments,
)
from transforms.config import Auth, ModelOptions
from transforms.errors import GatewayError, bad_request
from transforms.limits import MAX_STREAM_EVENT_BYTES, element_too_large
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
from transforms.sigv4 import credentials_from, sign
from transforms.types import (
    STOP_SEQUENCE_KEY,
    TOOL_ERROR_MARK,
    CallContext,
    ErrorInfo,
    Json,
    ProviderRequest,
    ProviderSpec,
    RouteTransform,
    TokenCounter,
    Upstream,
    Usage,
)
from transforms.usage import estimate_tokens, estimate_usage, token_count

PROVIDER = "bedrock"
SIGNING_SERVICE = "bedrock"
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}
DEFAULT_COHERE_INPUT_TYPE = "search_document"
# Cross-region inference profile ids put a geography before the model id: us.anthropic.claude-...
_GEO_PREFIXES = frozenset({"us", "eu", "apac", "us-gov", "global", "jp", "au", "ca"})
# botocore's percent_encode: a URI label keeps only these unreserved characters (':' -> %3A).
_LABEL_SAFE = "-_.~"

# --- region and model ids -----------------------------------------------------------------------


def aws_region(options: ModelOptions, env: Mapping[str, str]) -> str:
    configured = options.bedrock.aws_region if options.bedrock is not None else None
    region = configured or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not region:
        raise GatewayError(
            500,
            "AWS region not specified: set model.options.bedrock.aws_region or AWS_REGION",
            "config_error",
        )
    return region


def base_url(options: ModelOptions, model: str, env: Mapping[str, str]) -> str:
    return f"https://bedrock-runtime.{aws_region(options, env)}.amazonaws.com"


def model_path(model: str, operation: str) -> str:
    """``/model/{modelId}/{operation}`` with the id encoded as one path segment, as botocore does."""
    return f"/model/{quote(model, safe=_LABEL_SAFE)}/{operation}"


def base_model(model: str) -> str:
    """The foundation-model id inside an ARN or a cross-region inference profile id:
    ``arn:...:foundation-model/anthropic.claude-...`` and ``us.anthropic.claude-...`` are
    ``anthropic.claude-...``."""
    name = model.rsplit("/", 1)[-1]
    head, _, rest = name.partition(".")
    return rest if head in _GEO_PREFIXES and rest else name


def model_family(model: str) -> str:
    """The provider part of a model id: ``anthropic``, ``amazon``, ``cohere``, ``meta``..."""
    return base_model(model).partition(".")[0]


def sign_request(
    upstream: Upstream, auth: Auth, env: Mapping[str, str], now: int, options: ModelOptions
) -> None:
    region = aws_region(options, env)
    sign(upstream, credentials_from(auth, env), SIGNING_SERVICE, region, now)


# --- which client fields are translated, harmless, or refused --------------------------------------

# Fields that only change how OpenAI stores, bills or traces a call, never the answer itself.
# (OpenAI's own ``seed`` is best effort; Converse sampling cannot be seeded.)
_IGNORED = frozenset(
    {
        "model",
        "stream",
        "stream_options",
        "user",
        "seed",
        "store",
        "metadata",
        "service_tier",
        "safety_identifier",
        "prompt_cache_key",
    }
)
# Fields whose neutral value is fine and any other value is refused: name -> (is_neutral, why).
_NEUTRAL: Mapping[str, tuple[Callable[[Any], bool], str]] = {
    "n": (lambda v: v == 1, "above 1 is not supported"),
    "best_of": (lambda v: v == 1, "above 1 is not supported"),
    "logprobs": (lambda v: not v, "is not supported"),
    "top_logprobs": (lambda v: v == 0, "is not supported"),
    "presence_penalty": (lambda v: v == 0, "is not supported"),
    "frequency_penalty": (lambda v: v == 0, "is not supported"),
    "logit_bias": (lambda v: v == {}, "is not supported"),
    "parallel_tool_calls": (lambda v: v is True, "set to false is not supported"),
    "modalities": (lambda v: v == ["text"], "other than ['text'] is not supported"),
    "echo": (lambda v: v is False, "is not supported"),
    "suffix": (lambda v: v == "", "is not supported"),
}
# Bedrock-native request fields a client may pass (top level or inside ``extra_body``).
NATIVE_FIELDS = ("guardrailConfig", "additionalModelRequestFields")
_COMMON_FIELDS = frozenset(
    {"max_tokens", "stop", "temperature", "top_p", "top_k", "extra_body", *NATIVE_FIELDS}
)
_CHAT_FIELDS = (
    _COMMON_FIELDS
    | {
        "messages",
        "max_completion_tokens",
        "tools",
        "tool_choice",
        "response_format",
    }
    | REASONING_FIELDS
)
_COMPLETIONS_FIELDS = _COMMON_FIELDS | {"prompt"}
_EMBEDDINGS_FIELDS = frozenset({"input", "dimensions", "encoding_format"})


def _check_fields(body: Mapping[str, Any], translated: frozenset[str]) -> None:
    check_fields(PROVIDER, body, translated, _IGNORED, _NEUTRAL)


# --- request: parameters ------------------------------------------------------------------------


def _stop_sequences(stop: Any) -> list[str]:
    sequences = [stop] if isinstance(stop, str) else list(stop or ())
    if any(not s for s in sequences):
        raise refuse(PROVIDER, "stop", "with an empty sequence is not supported")
    return sequences


def _inference_config(body: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        out["maxTokens"] = max_tokens
    temperature = body.get("temperature")
    if temperature is not None:
        if temperature > 1:
            raise refuse(PROVIDER, "temperature", "above 1 is not supported")
        out["temperature"] = temperature
    if body.get("top_p") is not None:
        out["topP"] = body["top_p"]
    stop = _stop_sequences(body.get("stop"))
    if stop:
        out["stopSequences"] = stop
    return out


def _top_k_fields(top_k: int, model: str) -> dict[str, Any]:
    """top_k in the model family's own request field (see the module docstring)."""
    family = model_family(model)
    if family == "amazon":
        if not base_model(model).startswith("amazon.nova"):
            raise refuse(PROVIDER, "top_k", f"is not supported for model '{model}'")
        return {"inferenceConfig": {"topK": top_k}}
    if family == "cohere":
        return {"k": top_k}
    if family in ("meta", "ai21"):
        raise refuse(PROVIDER, "top_k", f"is not supported for model '{model}'")
    return {"top_k": top_k}


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, nested objects merged key by key (the client's explicit value wins)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def native_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """Bedrock-native fields from the top level or a literal ``extra_body`` object."""
    extra = body.get("extra_body")
    if extra is None:
        extra = {}
    if not isinstance(extra, dict):
        raise bad_request("'extra_body' must be an object")
    for key in extra:
        if key not in NATIVE_FIELDS:
            raise refuse(PROVIDER, f"extra_body.{key}")
    found: dict[str, Any] = {}
    for name in NATIVE_FIELDS:
        top, nested = body.get(name), extra.get(name)
        if top is not None and nested is not None:
            raise bad_request(f"'{name}' is given both at the top level and in 'extra_body'")
        value = top if top is not None else nested
        if value is None:
            continue
        if not isinstance(value, dict):
            raise bad_request(f"'{name}' must be an object")
        found[name] = value
    return found


def _additional_fields(body: Mapping[str, Any], model: str, native: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if body.get("top_k") is not None:
        fields = _top_k_fields(body["top_k"], model)
    return _merge(fields, native.get("additionalModelRequestFields") or {})


# --- request: content blocks --------------------------------------------------------------------


def _text_of_part(part: Mapping[str, Any], where: str, key: str = "text") -> str:
    text = part.get(key)
    if not isinstance(text, str):
        raise bad_request(f"{where}: message part type is '{part.get('type')}' but is missing .{key}")
    return text


def _image_block(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    url = image_url_of(part)
    inline = parse_data_url(url)
    if inline is None:
        raise bad_request(
            f"{where}.image_url: Bedrock needs inline images (data:image/...;base64,...); "
            "image URLs are not supported by the bedrock provider"
        )
    media_type, data = inline
    image_format = IMAGE_FORMATS.get(media_type)
    if image_format is None:
        raise refuse(PROVIDER, f"{where}.image_url", f"of type '{media_type}' is not supported")
    # On the wire a blob is base64 text: the data URL's payload as it is.
    return {"image": {"format": image_format, "source": {"bytes": data}}}


def _part_block(part: Mapping[str, Any], kind: str, where: str) -> dict[str, Any] | None:
    if kind == "image_url":
        return _image_block(part, where)
    text = _text_of_part(part, where, "refusal" if kind == "refusal" else "text")
    return {"text": text} if text else None


def _blocks(content: Any, where: str, allowed: frozenset[str]) -> list[dict[str, Any]]:
    """OpenAI content (a string or parts) as Converse content blocks. Empty text is dropped
    (Bedrock rejects blank text blocks); a part's prompt-caching marker (``cache_control``, as
    Anthropic-minded clients send it) becomes a cache point right after the part's block."""
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content_parts(content)):
        kind = part.get("type")
        part_where = f"{where}.content[{j}]"
        if kind not in allowed:
            raise refuse(PROVIDER, part_where, f"of type '{kind}' is not supported")
        block = _part_block(part, kind, part_where)
        if block is not None:
            blocks.append(block)
            if isinstance(part.get("cache_control"), dict):
                blocks.append({"cachePoint": {"type": "default"}})
    return blocks


_USER_PARTS = frozenset({"text", "image_url"})
_ASSISTANT_PARTS = frozenset({"text", "refusal"})
_TEXT_PARTS = frozenset({"text"})


def _tool_use(call: Mapping[str, Any], where: str) -> dict[str, Any]:
    if call.get("type", "function") != "function":
        raise refuse(PROVIDER, f"{where}.type", f"'{call.get('type')}' is not supported")
    function = call["function"]
    return {
        "toolUse": {
            "toolUseId": split_call_id(call["id"])[0],  # without the thinking blocks it carried
            "name": function["name"],
            "input": tool_arguments(function.get("arguments"), where),
        }
    }


def _tool_result(message: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A tool message: a JSON object result stays structured, anything else is text."""
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise bad_request(f"{where}: a tool message needs a tool_call_id")
    content = message.get("content")
    if isinstance(content, str):
        text = content
    else:
        text = "".join(block.get("text", "") for block in _blocks(content, where, _TEXT_PARTS))
    result: dict[str, Any] = {"text": text}
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        result = {"json": parsed}
    block: dict[str, Any] = {"toolUseId": split_call_id(call_id)[0], "content": [result]}
    if message.get(TOOL_ERROR_MARK) is True:  # a failed tool (Anthropic clients' is_error)
        block["status"] = "error"
    return {"toolResult": block}


def _turn(message: Mapping[str, Any], where: str) -> tuple[str, list[dict[str, Any]]]:
    """One OpenAI message as (Converse role, blocks)."""
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
        # Claude's signed reasoning goes back in front of the turn's tool uses, as it requires.
        return "assistant", replayed_turn(message, blocks, uses, reasoning_block)
    raise refuse(PROVIDER, f"{where}.role", f"'{role}' is not supported")


def reasoning_block(block: dict[str, Any]) -> dict[str, Any]:
    """A thinking block (Anthropic's shape, as carried) as a Converse reasoningContent block."""
    if block["type"] == "redacted_thinking":
        return {"reasoningContent": {"redactedContent": block["data"]}}  # a blob: base64 on the wire
    text: dict[str, Any] = {"text": block["thinking"]}
    if block["signature"]:
        text["signature"] = block["signature"]
    return {"reasoningContent": {"reasoningText": text}}


def thinking_of(reasoning: Mapping[str, Any]) -> dict[str, Any] | None:
    """A Converse reasoningContent block as a thinking block (Anthropic's shape); None for reasoning
    with nothing to send back (no signature: models other than Claude)."""
    if isinstance(reasoning.get("redactedContent"), str):
        return {"type": "redacted_thinking", "data": reasoning["redactedContent"]}
    text = reasoning.get("reasoningText")
    if isinstance(text, dict) and isinstance(text.get("signature"), str) and text["signature"]:
        return {"type": "thinking", "thinking": text.get("text") or "", "signature": text["signature"]}
    return None


def _merge_turns(turns: list[tuple[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Consecutive turns of one role become one (Converse requires alternation); in a user turn the
    tool results come first, as the models behind Converse (Claude) require."""
    merged = merge_turns(turns, lambda block: "toolResult" in block)
    return [{"role": role, "content": blocks} for role, blocks in merged]


def convert_messages(messages: list[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, Converse messages) from OpenAI chat messages."""
    system: list[dict[str, Any]] = []
    turns = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if message["role"] in ("system", "developer"):
            system += _blocks(message.get("content"), where, _TEXT_PARTS)
        else:
            turns.append(_turn(message, where))
    return system, _merge_turns(turns)


# --- request: tools and response_format ---------------------------------------------------------


def _tool_spec(tool: Mapping[str, Any]) -> dict[str, Any]:
    function = tool["function"]
    schema = function.get("parameters") or {"type": "object", "properties": {}}
    spec: dict[str, Any] = {"name": function["name"], "inputSchema": {"json": schema}}
    if function.get("description"):
        spec["description"] = function["description"]
    if function.get("strict") is True:
        spec["strict"] = True
    return {"toolSpec": spec}


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice == "auto":
        return {"auto": {}}
    if choice == "required":
        return {"any": {}}
    return {"tool": {"name": choice["function"]["name"]}}


def _has_tool_blocks(messages: list[dict[str, Any]]) -> bool:
    return any("toolUse" in b or "toolResult" in b for m in messages for b in m["content"])


def _tool_config(body: Mapping[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    tools = [_tool_spec(t) for t in body.get("tools") or ()]
    choice = body.get("tool_choice")
    if choice == "none":
        if tools and _has_tool_blocks(messages):
            raise refuse(
                PROVIDER, "tool_choice", "'none' with tool calls in the conversation is not supported"
            )
        return None  # no tools offered: the model cannot call any
    if not tools:
        if choice not in (None, "auto"):
            raise bad_request("'tool_choice' requires 'tools'")
        return None
    config: dict[str, Any] = {"tools": tools}
    converse_choice = _tool_choice(choice)
    if converse_choice is not None:
        config["toolChoice"] = converse_choice
    return config


def _output_config(response_format: Any) -> dict[str, Any] | None:
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind in (None, "text"):
        return None
    if kind != "json_schema":
        raise refuse(PROVIDER, "response_format", f"of type '{kind}' is not supported (use json_schema)")
    spec = response_format.get("json_schema") or {}
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise bad_request("response_format.json_schema.schema must be a JSON schema object")
    # Converse takes the schema as JSON text.
    definition: dict[str, Any] = {"schema": orjson.dumps(schema).decode()}
    if isinstance(spec.get("name"), str):
        definition["name"] = spec["name"]
    if isinstance(spec.get("description"), str):
        definition["description"] = spec["description"]
    return {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": definition}}}


# --- request: builders --------------------------------------------------------------------------


def _converse_path(ctx: CallContext) -> str:
    return model_path(ctx.model, "converse-stream" if ctx.stream else "converse")


def _converse_body(
    body: Mapping[str, Any], ctx: CallContext, messages: list[dict[str, Any]], system: list[dict[str, Any]]
) -> dict[str, Any]:
    native = native_fields(body)
    out: dict[str, Any] = {"messages": messages}
    if system:
        out["system"] = system
    inference = _inference_config(body)
    if inference:
        out["inferenceConfig"] = inference
    additional = _additional_fields(body, ctx.model, native)
    if additional:
        out["additionalModelRequestFields"] = additional
    if "guardrailConfig" in native:
        out["guardrailConfig"] = native["guardrailConfig"]
    return out


def _reasoning(body: dict[str, Any], ctx: CallContext, notes: dict[str, str]) -> dict[str, Any]:
    """Claude's thinking fields for ``additionalModelRequestFields`` (the body made to follow
    Claude's thinking rules); other model families take no reasoning setting here."""
    reasoning = reasoning_of(body)
    if reasoning is None or reasoning.off:
        return {}
    if model_family(ctx.model) != "anthropic":
        field = "thinking" if body.get("thinking") is not None else "reasoning_effort"
        raise refuse(PROVIDER, field, f"is not supported for model '{ctx.model}' (only for Claude)")
    thinking = claude_thinking(body, reasoning, ctx.model, PROVIDER, notes)
    if thinking is None:
        return {}
    body["max_tokens"] = thinking.max_tokens
    body.pop("max_completion_tokens", None)
    fields: dict[str, Any] = {"thinking": thinking.thinking}
    if thinking.effort is not None:
        fields["output_config"] = {"effort": thinking.effort}
    return fields


def build_chat(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    _check_fields(body, _CHAT_FIELDS)
    notes: dict[str, str] = {}
    thinking = _reasoning(body, ctx, notes)
    notes.update(claude_sampling(body, ctx.model))
    system, messages = convert_messages(body["messages"])
    out = _converse_body(body, ctx, messages, system)
    if thinking:  # the client's own additionalModelRequestFields win
        out["additionalModelRequestFields"] = _merge(thinking, out.get("additionalModelRequestFields") or {})
    tool_config = _tool_config(body, messages)
    if tool_config is not None:
        out["toolConfig"] = tool_config
    output_config = _output_config(body.get("response_format"))
    if output_config is not None:
        out["outputConfig"] = output_config
    if ctx.extensions and "anthropic." in ctx.model and out.get("inferenceConfig", {}).get("stopSequences"):
        # Claude on Bedrock says which stop sequence ended the text when asked (an ingress
        # client's stop_sequence); Converse returns it in additionalModelResponseFields.
        out["additionalModelResponseFieldPaths"] = [STOP_SEQUENCE_PATH]
    return ProviderRequest(out, _converse_path(ctx), notes=notes)


# What CountTokens reads of a Converse request (ConverseTokensRequest).
_COUNTED = ("messages", "system", "toolConfig", "additionalModelRequestFields")


def build_count_tokens(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    """``POST /model/{modelId}/count-tokens`` with ``{"input": {"converse": ...}}``: the Converse
    request the chat transform builds, cut to what CountTokens reads. It counts for a foundation
    model, so an inference profile (``us.anthropic...``) is counted by its model."""
    converse = build_chat(body, ctx).body
    counted = {name: converse[name] for name in _COUNTED if name in converse}
    return ProviderRequest(
        {"input": {"converse": counted}}, model_path(base_model(ctx.model), "count-tokens")
    )


def parse_count_tokens(body: Json) -> int:
    """``CountTokensResponse.inputTokens``."""
    tokens = token_count(body.get("inputTokens")) if isinstance(body, dict) else None
    if tokens is None:
        raise ValueError("CountTokens answered without inputTokens")
    return tokens


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise refuse(PROVIDER, "prompt", "other than one text prompt is not supported")
    return prompt


def build_completions(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    _check_fields(body, _COMPLETIONS_FIELDS)
    notes = claude_sampling(body, ctx.model)
    text = _prompt_text(body.get("prompt"))
    messages = [{"role": "user", "content": [{"text": text}]}] if text else []
    if not messages:
        raise bad_request("'prompt' must not be empty")
    return ProviderRequest(_converse_body(body, ctx, messages, []), _converse_path(ctx), notes=notes)


# --- request: embeddings ------------------------------------------------------------------------


def _embedding_kind(model: str) -> str:
    base = base_model(model)
    if base.startswith("amazon.titan-embed"):
        return "titan"
    if base.startswith("cohere.embed"):
        return "cohere"
    raise refuse(
        PROVIDER,
        "model",
        f"'{model}' is not supported for embeddings (use amazon.titan-embed-* or cohere.embed-*)",
    )


def _titan_body(texts: list[str], body: Mapping[str, Any], model: str) -> dict[str, Any]:
    if len(texts) != 1:
        raise refuse(
            PROVIDER, "input", f"with more than one text is not supported for '{model}' (one text per call)"
        )
    out: dict[str, Any] = {"inputText": texts[0]}
    if body.get("dimensions") is not None:
        if not base_model(model).startswith("amazon.titan-embed-text-v2"):
            raise refuse(PROVIDER, "dimensions", f"is not supported for model '{model}'")
        out["dimensions"] = body["dimensions"]
    return out


def _cohere_body(texts: list[str], body: Mapping[str, Any], ctx: CallContext) -> dict[str, Any]:
    cohere = ctx.options.cohere
    input_type = cohere.embedding_input_type if cohere is not None else DEFAULT_COHERE_INPUT_TYPE
    out: dict[str, Any] = {"texts": texts, "input_type": input_type}
    if body.get("dimensions") is not None:
        if not base_model(ctx.model).startswith("cohere.embed-v4"):
            raise refuse(PROVIDER, "dimensions", f"is not supported for model '{ctx.model}'")
        out["output_dimension"] = body["dimensions"]
    return out


def build_embeddings(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    _check_fields(body, _EMBEDDINGS_FIELDS)
    texts = embedding_texts(body["input"], PROVIDER)
    if _embedding_kind(ctx.model) == "titan":
        out = _titan_body(texts, body, ctx.model)
    else:
        out = _cohere_body(texts, body, ctx)
    return ProviderRequest(out, model_path(ctx.model, "invoke"))


# --- response -----------------------------------------------------------------------------------

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
# The model produced output Bedrock could not use: an error, not an answer.
_FAILED = frozenset({"malformed_model_output", "malformed_tool_use"})


def _failure_message(stop_reason: str) -> str:
    return f"the bedrock model returned malformed output (stopReason {stop_reason})"


def finish_reason(stop_reason: Any, completions: bool = False) -> str:
    reason = _FINISH.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    return "stop" if completions and reason == "tool_calls" else reason


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def usage_from_tokens(usage: Any) -> Usage | None:
    """Converse ``usage``; prompt tokens include cache reads and writes, cached are the reads."""
    if not isinstance(usage, dict) or token_count(usage.get("inputTokens")) is None:
        return None
    if token_count(usage.get("outputTokens")) is None:
        return None
    cache_read = _count(usage.get("cacheReadInputTokens"))
    prompt = _count(usage.get("inputTokens")) + cache_read + _count(usage.get("cacheWriteInputTokens"))
    completion = _count(usage.get("outputTokens"))
    return Usage(prompt, completion, prompt + completion, cached_tokens=cache_read)


def usage_of(body: Any) -> Usage | None:
    """Usage of a native Converse response (also for untranslated llm_format traffic)."""
    return usage_from_tokens(body.get("usage")) if isinstance(body, dict) else None


def _output_content(body: Json) -> list[Any]:
    output = body.get("output") if isinstance(body, dict) else None
    message = output.get("message") if isinstance(output, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        raise ValueError("'output.message.content' not in bedrock converse response")
    return content


@dataclass(slots=True)
class _Reply:
    text: str
    reasoning: str
    calls: list[dict[str, Any]]
    thinking: list[dict[str, Any]]  # signed reasoning blocks, in Anthropic's shapes


def _read_blocks(blocks: list[Any]) -> _Reply:
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    carrier = ThinkingCarrier()
    for block in blocks:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            text.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            function = {"name": use["name"], "arguments": dumps_arguments(use.get("input"))}
            calls.append({"id": carrier.call_id(use["toolUseId"]), "type": "function", "function": function})
        elif isinstance(block.get("reasoningContent"), dict):
            # The text is shown; the signed block rides in the next tool call's id.
            reasoning_text = block["reasoningContent"].get("reasoningText") or {}
            reasoning.append(reasoning_text.get("text") or "")
            signed = thinking_of(block["reasoningContent"])
            if signed is not None:
                carrier.add(signed)
        elif isinstance(block.get("citationsContent"), dict):
            generated = block["citationsContent"].get("content") or ()
            text.extend(part["text"] for part in generated if isinstance(part.get("text"), str))
    return _Reply("".join(text), "".join(reasoning), calls, carrier.blocks)


STOP_SEQUENCE_PATH = "/stop_sequence"


def _matched_stop(data: Mapping[str, Any], ctx: CallContext) -> str | None:
    """The stop sequence that ended the text (STOP_SEQUENCE_KEY): Claude's, where it was asked for."""
    fields = data.get("additionalModelResponseFields")
    value = fields.get("stop_sequence") if isinstance(fields, dict) else None
    return matched_stop(ctx, data.get("stopReason") == "stop_sequence", value)


def _stop_reason(body: Mapping[str, Any]) -> Any:
    reason = body.get("stopReason")
    if reason in _FAILED:
        raise GatewayError(502, _failure_message(reason), "bad_upstream_response")
    return reason


def _envelope(body: Mapping[str, Any], ctx: CallContext, obj: str, prefix: str, choice: dict) -> dict:
    out: dict[str, Any] = {
        "id": prefix + ctx.request_id,
        "object": obj,
        "created": ctx.created,
        "model": ctx.model,
        "choices": [choice],
    }
    usage = usage_of(body)
    if usage is not None:
        out["usage"] = usage.as_openai()
    return out


def parse_chat(body: Json, ctx: CallContext) -> Json:
    reply = _read_blocks(_output_content(body))
    reason = finish_reason(_stop_reason(body))
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.text if reply.text or not reply.calls else None,
        "refusal": None,
    }
    if reply.calls:
        message["tool_calls"] = reply.calls
    if reply.reasoning:
        message["reasoning_content"] = reply.reasoning
    if reply.thinking:
        message["thinking_blocks"] = reply.thinking  # for clients that send them back
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": reason}
    stop_sequence = _matched_stop(body, ctx)
    if stop_sequence is not None:
        choice[STOP_SEQUENCE_KEY] = stop_sequence
    return _envelope(body, ctx, "chat.completion", "chatcmpl-", choice)


def parse_completions(body: Json, ctx: CallContext) -> Json:
    reply = _read_blocks(_output_content(body))
    reason = finish_reason(_stop_reason(body), completions=True)
    choice = {"text": reply.text, "index": 0, "logprobs": None, "finish_reason": reason}
    return _envelope(body, ctx, "text_completion", "cmpl-", choice)


def _vectors(vectors: Any) -> list[list[Any]]:
    if not isinstance(vectors, list) or not vectors or not all(isinstance(v, list) for v in vectors):
        raise ValueError("no embedding vectors in the bedrock response")
    return vectors


def parse_embeddings(body: Json, ctx: CallContext) -> Json:
    if not isinstance(body, dict):
        raise ValueError("the bedrock embeddings response is not an object")
    if _embedding_kind(ctx.model) == "titan":
        if "embedding" not in body:
            raise ValueError("'embedding' not in bedrock titan response")
        tokens = token_count(body.get("inputTextTokenCount"))
        if tokens is None:  # estimated, never 0
            return embedding_list(
                _vectors([body["embedding"]]), ctx.model, estimate_usage(ctx.prompt_text, 0)
            )
        return embedding_list(_vectors([body["embedding"]]), ctx.model, Usage(tokens, 0, tokens))
    embeddings = body.get("embeddings")
    if isinstance(embeddings, dict):  # response_type embeddings_by_type
        embeddings = embeddings.get("float")
    if not isinstance(embeddings, list):
        raise ValueError("'embeddings' not in bedrock cohere response")
    # Cohere on Bedrock reports token counts only in response headers: the count is estimated.
    tokens = estimate_tokens(ctx.prompt_text)
    return embedding_list(_vectors(embeddings), ctx.model, Usage(tokens, 0, tokens, estimated=True))


# --- errors -------------------------------------------------------------------------------------


def parse_error(status: int, body: Json) -> ErrorInfo | None:
    """Bedrock's ``{"message": "..."}`` (some services spell it ``Message``)."""
    if not isinstance(body, dict):
        return None
    for key in ("message", "Message"):
        if isinstance(body.get(key), str) and body[key]:
            return ErrorInfo(body[key])
    return None


# --- stream -------------------------------------------------------------------------------------

# Converse stream exception events, as OpenAI error types.
_EXCEPTION_TYPES = {
    "validationException": "invalid_request_error",
    "throttlingException": "rate_limit_error",
    "serviceUnavailableException": "api_error",
    "internalServerException": "api_error",
    "modelStreamErrorException": "api_error",
}


# total length, headers length, prelude CRC (big-endian), as the event-stream format lays them out
_PRELUDE = struct.Struct(">III")
_MIN_FRAME = _PRELUDE.size + 4  # a prelude, no headers, no payload, the message CRC


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded event-stream message."""

    headers: Mapping[str, Any]
    payload: bytes


@dataclass(frozen=True, slots=True)
class CorruptFrame:
    reason: str


class EventStreamDecoder:
    """Binary ``application/vnd.amazon.eventstream`` frames, fed in any pieces, CRCs checked.

    Frames are cut here from the prelude's total length, in one growing buffer (botocore's own
    buffer copies everything it holds on every chunk); botocore's ``EventStreamBuffer`` decodes each
    complete frame. A prelude is checked (its CRC, then its length against
    ``MAX_STREAM_EVENT_BYTES``) before the rest of its frame is waited for, so a frame announcing a
    huge length is refused at once instead of buffered.
    """

    def __init__(self) -> None:
        from botocore.eventstream import EventStreamBuffer, ParserError

        self._decoder = EventStreamBuffer()
        self._errors: tuple[type[Exception], ...] = (ParserError,)
        self._data = bytearray()
        self.pending = 0  # bytes received and not yet part of a complete frame

    def feed(self, chunk: bytes) -> list[Frame | CorruptFrame]:
        data = self._data
        data += chunk
        frames: list[Frame | CorruptFrame] = []
        at = 0
        while len(data) - at >= _PRELUDE.size:
            total, headers_length, crc = _PRELUDE.unpack_from(data, at)
            corrupt = None
            if zlib.crc32(data[at : at + 8]) != crc:
                corrupt = "the event-stream prelude's checksum does not match"
            elif total < _MIN_FRAME or headers_length > total - _MIN_FRAME:
                corrupt = f"the event-stream prelude announces impossible lengths ({total}, {headers_length})"
            if corrupt is not None:
                frames.append(CorruptFrame(corrupt))
                at = len(data)  # nothing after a corrupt prelude can be framed
                break
            if total > MAX_STREAM_EVENT_BYTES:
                del data[:]
                raise element_too_large(f"an event-stream frame announcing {total} bytes")
            if len(data) - at < total:
                break
            self._decoder.add_data(bytes(data[at : at + total]))
            at += total
            try:
                message = next(self._decoder)
            except self._errors as e:
                frames.append(CorruptFrame(str(e) or type(e).__name__))
                at = len(data)
                break
            frames.append(Frame(message.headers, message.payload))
        del data[:at]
        self.pending = len(data)
        return frames


class BedrockStream(StreamTranslatorBase):
    """ConverseStream events -> OpenAI chunks.

    Content blocks are tracked by ``contentBlockIndex``: each toolUse block is one OpenAI tool call
    (parallel calls keep their own state), text and reasoning deltas stream as they come. The
    finish chunk waits for the ``metadata`` event so the usage chunk can follow it.
    """

    provider = PROVIDER

    def __init__(self, ctx: CallContext) -> None:
        super().__init__(ctx)
        self._decoder = EventStreamDecoder()
        self.tool_blocks: set[int] = set()
        self.filled: set[int] = set()  # tool blocks that received argument text
        self.stop_reason: str | None = None
        self.reasoning: dict[int, dict[str, Any]] = {}  # open reasoning blocks by index
        self.reasoning_text: dict[int, ThinkingText] = {}
        self.carrier = ThinkingCarrier()
        self.stop_sequence: str | None = None

    def split(self, chunk: bytes) -> list[Any]:
        return self._decoder.feed(chunk) if chunk else []

    def split_rest(self) -> list[Any]:
        return []  # an incomplete frame is an incomplete stream: the base class reports it

    def finish(self) -> list[bytes]:
        # Bedrock always ends with metadata; a stream that stopped cleanly right after messageStop
        # is still a complete answer, only without token counts.
        if not self._ended and self.stop_reason is not None and self._decoder.pending == 0:
            return self.end(self._finish_reason(), self.stop_sequence)
        return super().finish()

    def on_event(self, event: Frame | CorruptFrame) -> list[bytes]:
        if isinstance(event, CorruptFrame):
            return self.fail(f"the bedrock event stream is corrupt: {event.reason}", code="stream_error")
        kind = event.headers.get(":message-type")
        if kind == "exception":
            return self._exception(event)
        if kind == "error":
            message = event.headers.get(":error-message") or "the bedrock stream reported an error"
            return self.fail(message, code=event.headers.get(":error-code") or "upstream_error")
        handler = self._handlers.get(event.headers.get(":event-type") or "")
        if handler is None:
            return []
        data = orjson.loads(event.payload) if event.payload else {}
        return handler(self, data) if isinstance(data, dict) else []

    def _exception(self, event: Frame) -> list[bytes]:
        name = event.headers.get(":exception-type") or "exception"
        try:
            data = orjson.loads(event.payload)
        except orjson.JSONDecodeError:
            data = None
        info = parse_error(0, data) or ErrorInfo(f"the bedrock stream reported {name}")
        return self.fail(info.message, _EXCEPTION_TYPES.get(name, "api_error"), name)

    def _finish_reason(self) -> str:
        return finish_reason(self.stop_reason, completions=self.out.completions)

    def _message_start(self, data: dict[str, Any]) -> list[bytes]:
        return self.out.start()

    def _block_start(self, data: dict[str, Any]) -> list[bytes]:
        use = (data.get("start") or {}).get("toolUse")
        if not isinstance(use, dict) or self.out.completions:
            return []
        index = data["contentBlockIndex"]
        self.tool_blocks.add(index)
        return self.out.tool_call_start(index, self.carrier.call_id(use["toolUseId"]), use["name"])

    def _block_delta(self, data: dict[str, Any]) -> list[bytes]:
        index, delta = data["contentBlockIndex"], data.get("delta") or {}
        if isinstance(delta.get("text"), str):
            return self.content(delta["text"])
        if isinstance(delta.get("toolUse"), dict):
            fragment = delta["toolUse"].get("input") or ""
            if fragment and index in self.tool_blocks:
                self.filled.add(index)
            return self.out.tool_call_arguments(index, fragment)
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict):
            return self._reasoning_delta(index, reasoning)
        return []  # citations: nothing for OpenAI clients

    def _reasoning_delta(self, index: int, reasoning: dict[str, Any]) -> list[bytes]:
        """Text streams as reasoning; the text, signature and redacted content are kept until the
        block ends, to ride in the next tool call's id."""
        if isinstance(reasoning.get("redactedContent"), str):
            self.reasoning[index] = {"redactedContent": reasoning["redactedContent"]}
            return []
        kept = self.reasoning.setdefault(index, {})
        if isinstance(reasoning.get("signature"), str):
            kept["signature"] = reasoning["signature"]
        if isinstance(reasoning.get("text"), str):
            self.reasoning_text.setdefault(index, ThinkingText()).add(reasoning["text"])
            return self.out.reasoning(reasoning["text"])
        return []

    def _block_stop(self, data: dict[str, Any]) -> list[bytes]:
        index = data["contentBlockIndex"]
        kept = self.reasoning.pop(index, None)
        if kept is not None:
            text = self.reasoning_text.pop(index, None)
            if "redactedContent" not in kept:
                kept = {"reasoningText": {"text": str(text or ""), "signature": kept.get("signature")}}
            signed = thinking_of(kept)
            if signed is None:
                return []
            self.carrier.add(signed)
            return self.out.thinking_block(signed)
        # A call without input streams no fragment; clients expect parseable arguments.
        if index in self.tool_blocks and index not in self.filled:
            self.filled.add(index)
            return self.out.tool_call_arguments(index, "{}")
        return []

    def _message_stop(self, data: dict[str, Any]) -> list[bytes]:
        reason = data.get("stopReason")
        if reason in _FAILED:
            return self.fail(_failure_message(reason), code="bad_upstream_response")
        self.stop_reason = reason if isinstance(reason, str) else "end_turn"
        self.stop_sequence = _matched_stop(data, self.ctx)
        return []

    def _metadata(self, data: dict[str, Any]) -> list[bytes]:
        usage = usage_from_tokens(data.get("usage"))
        if usage is not None:
            self.usage = usage
        return self.end(self._finish_reason(), self.stop_sequence)

    _handlers: Mapping[str, Callable[[BedrockStream, dict[str, Any]], list[bytes]]] = {
        "messageStart": _message_start,
        "contentBlockStart": _block_start,
        "contentBlockDelta": _block_delta,
        "contentBlockStop": _block_stop,
        "messageStop": _message_stop,
        "metadata": _metadata,
    }


# --- spec ---------------------------------------------------------------------------------------

SPECS = (
    ProviderSpec(
        PROVIDER,
        base_url,
        {
            "llm/v1/chat": RouteTransform(build_chat, parse_chat, BedrockStream),
            "llm/v1/completions": RouteTransform(build_completions, parse_completions, BedrockStream),
            "llm/v1/embeddings": RouteTransform(build_embeddings, parse_embeddings),
        },
        parse_error,
        native_usage=usage_of,
        sign=sign_request,
        count_tokens=TokenCounter(build_count_tokens, parse_count_tokens),
        tool_error_flag=True,
    ),
)
