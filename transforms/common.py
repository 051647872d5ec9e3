"""Small helpers shared by provider transforms: content parts, images, tool arguments."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import orjson

from transforms.config import GeminiOptions, ModelOptions
from transforms.errors import GatewayError, bad_request
from transforms.types import CallContext, Usage


def content_parts(content: Any) -> list[dict[str, Any]]:
    """OpenAI message content as a list of parts (a string is one text part)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return [p for p in content if isinstance(p, dict)]


def image_url_of(part: dict[str, Any]) -> str:
    value = part.get("image_url")
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise bad_request("message part type is 'image_url' but is missing .image_url.url")
    return url


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``data:<mime>;base64,<data>`` -> (mime, base64 data); None for any other URL."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    if not sep or ";base64" not in header:
        raise bad_request("image data URLs must be base64-encoded (data:<mime>;base64,...)")
    mime = header.split(";", 1)[0] or "application/octet-stream"
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request("image data URL does not hold valid base64") from None
    return mime, data


def tool_arguments(arguments: Any, where: str = "tool_calls") -> dict[str, Any]:
    """An assistant tool call's JSON-string arguments as an object ('' or null is {})."""
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, dict):
        return arguments
    try:
        value = orjson.loads(arguments)
    except (orjson.JSONDecodeError, TypeError):
        raise bad_request(f"{where}: function arguments are not valid JSON") from None
    if not isinstance(value, dict):
        raise bad_request(f"{where}: function arguments must be a JSON object")
    return value


def dumps_arguments(value: Any) -> str:
    """Tool-call arguments the OpenAI way: a JSON string, '{}' when empty."""
    return orjson.dumps(value if value is not None else {}).decode()


def fixed_base_url(url: str) -> Callable[[ModelOptions, str, Mapping[str, str]], str]:
    """The base_url of a provider with one public endpoint."""

    def base_url(options: ModelOptions, model: str, env: Mapping[str, str]) -> str:
        return url

    return base_url


def vertex_origin(vertex: GeminiOptions) -> str:
    """A Vertex AI ``api_endpoint`` as a base URL (``https://`` unless the endpoint names a scheme)."""
    endpoint = vertex.api_endpoint or ""
    return endpoint if endpoint.startswith(("https://", "http://")) else f"https://{endpoint}"


def vertex_model_path(vertex: GeminiOptions, publisher: str, model: str, method: str) -> str:
    """``/v1/projects/{p}/locations/{l}/publishers/{publisher}/models/{model}:{method}``."""
    project, location = quote(vertex.project_id or "", safe=""), quote(vertex.location_id or "", safe="")
    name = quote(model, safe="-._~@")
    return f"/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{name}:{method}"


def requires_upstream_url(what: str) -> Callable[[ModelOptions, str, Mapping[str, str]], str]:
    """The base_url of a self-hosted format: there is no public default to fall back on."""

    def base_url(options: ModelOptions, model: str, env: Mapping[str, str]) -> str:
        raise ValueError(f"{what} needs model.options.upstream_url")

    return base_url


def embedding_texts(value: Any, provider: str) -> list[str]:
    """OpenAI's ``input`` as a list of texts; token ids have no meaning to another tokenizer."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise refuse(provider, "input", "as token ids is not supported")


def embedding_list(vectors: list[Any], model: str, usage: Usage) -> dict[str, Any]:
    """An OpenAI embedding list of float vectors (the pipeline encodes them when asked for base64)."""
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "model": model,
        "usage": {k: v for k, v in usage.as_openai().items() if k != "completion_tokens"},
    }


# Fields a provider accepts only at their neutral value: name -> (is_neutral(value), why not).
NeutralOnly = Mapping[str, tuple[Callable[[Any], bool], str]]


def check_fields(
    provider: str,
    body: Mapping[str, Any],
    translated: frozenset[str],
    ignored: frozenset[str],
    neutral_only: NeutralOnly,
) -> None:
    """Refuse every field that would change the answer and that the provider cannot express:
    fields are translated, harmless (``ignored``), or accepted only at their neutral value."""
    for name, value in body.items():
        if value is None or name in translated or name in ignored:
            continue
        neutral = neutral_only.get(name)
        if neutral is None:
            raise refuse(provider, name)
        is_neutral, why = neutral
        if not is_neutral(value):
            raise refuse(provider, name, why)


def merge_turns(
    turns: list[tuple[str, list[dict[str, Any]]]], is_tool_result: Callable[[dict[str, Any]], bool]
) -> list[tuple[str, list[dict[str, Any]]]]:
    """Consecutive turns of one role become one (providers that require alternation), and in a user
    turn the tool results come first (as Claude requires); empty turns are dropped."""
    merged: list[tuple[str, list[dict[str, Any]]]] = []
    for role, blocks in turns:
        if not blocks:
            continue
        if merged and merged[-1][0] == role:
            merged[-1][1].extend(blocks)
        else:
            merged.append((role, list(blocks)))
    for role, blocks in merged:
        if role == "user" and len(blocks) > 1:
            blocks.sort(key=lambda b: not is_tool_result(b))  # stable: order kept otherwise
    return merged


def refuse(provider: str, field: str, why: str = "is not supported") -> Exception:
    """A 400 naming the field and the provider, for what a provider cannot express."""
    return GatewayError(
        400, f"'{field}' {why} by the {provider} provider", "unsupported_parameter", param=field
    )


def matched_stop(ctx: CallContext, stopped_by_sequence: bool, value: Any = None) -> str | None:
    """STOP_SEQUENCE_KEY's value for an answer a stop sequence ended: the sequence where the provider
    said which, else "" (the ingress adapter may still tell it from the request and the text).
    None when no stop sequence ended it, or when no ingress adapter reads the extension."""
    if not ctx.extensions or not stopped_by_sequence:
        return None
    return value if isinstance(value, str) else ""
