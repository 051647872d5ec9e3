"""Standard-format validation: the compiled fast check agrees with jsonschema on every input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.errors import GatewayError
from transforms.schema_check import compile_schema
from transforms.validation import fast_check_for, validate, validator_for

ROUTE_TYPES = ("llm/v1/chat", "llm/v1/completions", "llm/v1/embeddings")

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=5),
    st.floats(min_value=-2, max_value=3, allow_nan=False),
    st.sampled_from(
        [
            "",
            "x",
            "user",
            "assistant",
            "system",
            "tool",
            "function",
            "auto",
            "none",
            "required",
            "text",
            "json_schema",
            "float",
            "image_url",
        ]
    ),
)
KEYS = [
    "model",
    "messages",
    "prompt",
    "input",
    "role",
    "content",
    "type",
    "text",
    "image_url",
    "url",
    "tools",
    "function",
    "name",
    "parameters",
    "tool_choice",
    "tool_calls",
    "id",
    "arguments",
    "temperature",
    "top_p",
    "n",
    "max_tokens",
    "stream",
    "stream_options",
    "include_usage",
    "stop",
    "response_format",
    "encoding_format",
    "dimensions",
    "logprobs",
    "seed",
]
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.sampled_from(KEYS), children, max_size=5)
    ),
    max_leaves=20,
)
bodies = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6)


@pytest.mark.parametrize("route_type", ROUTE_TYPES)
@given(body=bodies)
@settings(max_examples=400, deadline=None)
def test_fast_check_agrees_with_jsonschema(route_type, body):
    assert fast_check_for(route_type)(body) == validator_for(route_type).is_valid(body)


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:x"}}]}]},
        {
            "messages": [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                    ],
                }
            ]
        },
        {
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
        },
        {"messages": [{"role": "user", "content": "x"}], "max_tokens": 10.0},
    ],
)
def test_realistic_valid_bodies(body):
    assert fast_check_for("llm/v1/chat")(body)
    validate("llm/v1/chat", body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"messages": [{"role": "user", "content": "x"}], "max_tokens": True},
            "invalid request: 'max_tokens': True is not of type 'integer', 'null'",
        ),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": ""}}],
            },
            "invalid request: 'tools[0].function.name': '' should be non-empty",
        ),
        ({"messages": [{"content": "x"}]}, "invalid request: 'messages[0]': 'role' is a required property"),
        ({"messages": []}, "invalid request: 'messages': [] should be non-empty"),
    ],
)
def test_error_messages_name_the_field(body, message):
    with pytest.raises(GatewayError) as err:
        validate("llm/v1/chat", body)
    assert err.value.status == 400
    assert err.value.message == message


def test_unknown_keywords_are_refused_at_load():
    with pytest.raises(ValueError, match="not supported by the fast check"):
        compile_schema({"type": "object", "patternProperties": {}})
    with pytest.raises(ValueError, match="unsupported \\$ref"):
        compile_schema({"$ref": "http://example.com/schema"})
