"""Any client body gets a translation or a clear 4xx, never an internal error, for every provider."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transforms.config import Route
from transforms.errors import GatewayError
from transforms.pipeline import prepare
from transforms.types import Inbound

LOCAL = "http://127.0.0.1:9"
PROVIDERS: dict[str, dict[str, Any]] = {
    "openai": {},
    "azure": {"azure_instance": "i", "azure_deployment_id": "d"},
    "mistral": {"mistral_format": "openai"},
    "anthropic": {"anthropic_version": "2023-06-01"},
    "cohere": {},
    "gemini": {},
    "bedrock": {"bedrock": {"aws_region": "us-east-1"}},
    "huggingface": {},
    "ollama": {"upstream_url": LOCAL},
    "llama2": {"llama2_format": "raw", "upstream_url": LOCAL},
}
AUTH = {"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "secret-0123456789"}

text = st.sampled_from(
    ["", "hi", "data:image/png;base64,iVBORw0KGgo=", "https://x.test/a.png", "{}", '{"a": 1}', "x" * 40]
)
scalar = st.one_of(st.none(), st.booleans(), st.integers(-2, 3), st.floats(0, 2, allow_nan=False), text)
part = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": text}),
    st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": text})}),
    st.fixed_dictionaries({"type": st.sampled_from(["input_audio", "file", "refusal", "weird"])}),
)
tool_call = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["call_1", "call_2"]),
        "type": st.just("function"),
        "function": st.fixed_dictionaries({"name": st.sampled_from(["f", "g"]), "arguments": text}),
    }
)
message = st.one_of(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "developer", "user", "assistant"]),
            "content": st.one_of(text, st.lists(part, max_size=3)),
        }
    ),
    st.fixed_dictionaries(
        {
            "role": st.just("assistant"),
            "content": st.none(),
            "tool_calls": st.lists(tool_call, min_size=1, max_size=2),
        }
    ),
    st.fixed_dictionaries(
        {"role": st.just("tool"), "tool_call_id": st.sampled_from(["call_1", "call_3"]), "content": text}
    ),
)
tool = st.fixed_dictionaries(
    {
        "type": st.just("function"),
        "function": st.fixed_dictionaries(
            {"name": st.sampled_from(["f", "g"])},
            optional={
                "parameters": st.sampled_from(
                    [
                        {},
                        {
                            "type": "object",
                            "properties": {"a": {"type": "string"}},
                            "additionalProperties": False,
                        },
                    ]
                )
            },
        ),
    }
)
chat = st.fixed_dictionaries(
    {"messages": st.lists(message, min_size=1, max_size=5)},
    optional={
        "model": st.just("m"),
        "max_tokens": st.integers(1, 50),
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0, 1),
        "stop": st.one_of(text, st.lists(text, max_size=2)),
        "stream": st.booleans(),
        "n": st.integers(1, 2),
        "tools": st.lists(tool, max_size=2),
        "tool_choice": st.sampled_from(
            ["auto", "none", "required", {"type": "function", "function": {"name": "f"}}]
        ),
        "response_format": st.sampled_from(
            [
                {"type": "json_object"},
                {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}}},
            ]
        ),
        "logprobs": st.booleans(),
        "seed": st.integers(0, 9),
        "user": text,
        "unknown_field": scalar,
    },
)


def route_for(provider: str) -> Route:
    return Route.model_validate(
        {
            "name": "r",
            "route_type": "llm/v1/chat",
            "auth": AUTH if provider == "bedrock" else {},
            "model": {"provider": provider, "name": "m", "options": PROVIDERS[provider]},
        }
    )


ROUTES = {p: route_for(p) for p in PROVIDERS}


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
@given(body=chat)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_chat_body_is_translated_or_refused_with_a_4xx(provider, body):
    inbound = Inbound("POST", "h", "/v1/chat/completions", [], {}, orjson.dumps(body))
    try:
        prep = prepare(ROUTES[provider], inbound, request_id="r", now=1)
    except GatewayError as e:
        assert 400 <= e.status < 500, e.message
        assert e.message
        return
    assert isinstance(prep.upstream.body, bytes)
