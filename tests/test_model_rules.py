"""Model rules as pure functions over real model ids (transforms/model_rules.py), with the openai SDK's
own model list and request types as oracles."""

from __future__ import annotations

import copy
import typing
from typing import Any

import pytest
from openai.types import ChatModel
from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming
from pydantic import TypeAdapter

from transforms.config import ModelOptions
from transforms.errors import GatewayError
from transforms.model_rules import (
    CLAUDE_SAMPLING_NOTE,
    claude_sampling,
    claude_takes_one_sampling_parameter,
    claude_version,
    openai_reasoning_model,
)
from transforms.registry import SPECS
from transforms.types import CallContext

# --- Claude: temperature or top_p ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "version", "one_only"),
    [
        # Anthropic API ids and aliases
        ("claude-sonnet-4-5", ("sonnet", 4, 5), True),
        ("claude-sonnet-4-5-20250929", ("sonnet", 4, 5), True),
        ("claude-haiku-4-5-20251001", ("haiku", 4, 5), True),
        ("claude-opus-4-1-20250805", ("opus", 4, 1), True),
        ("claude-opus-4-1", ("opus", 4, 1), True),
        ("claude-opus-4-5-20251101", ("opus", 4, 5), True),
        ("claude-sonnet-5", ("sonnet", 5, 0), True),
        ("claude-opus-4-20250514", ("opus", 4, 0), False),
        ("claude-opus-4-0", ("opus", 4, 0), False),
        ("claude-sonnet-4-20250514", ("sonnet", 4, 0), False),
        ("claude-sonnet-4-0", ("sonnet", 4, 0), False),
        ("claude-3-7-sonnet-20250219", None, False),
        ("claude-3-5-haiku-latest", None, False),
        ("claude-3-opus-20240229", None, False),
        # Bedrock: foundation models, inference profiles, ARNs
        ("anthropic.claude-sonnet-4-5-20250929-v1:0", ("sonnet", 4, 5), True),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", ("sonnet", 4, 5), True),
        ("global.anthropic.claude-haiku-4-5-20251001-v1:0", ("haiku", 4, 5), True),
        ("eu.anthropic.claude-opus-4-1-20250805-v1:0", ("opus", 4, 1), True),
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            ("sonnet", 4, 5),
            True,
        ),
        ("anthropic.claude-sonnet-4-20250514-v1:0", ("sonnet", 4, 0), False),
        ("anthropic.claude-3-5-sonnet-20240620-v1:0", None, False),
        ("anthropic.claude-v2:1", None, False),
        ("anthropic.claude-instant-v1", None, False),
        # Vertex AI ids (not a route this project can express: see the README)
        ("claude-sonnet-4-5@20250929", ("sonnet", 4, 5), True),
        ("claude-opus-4@20250514", ("opus", 4, 0), False),
        ("claude-3-5-sonnet-v2@20241022", None, False),
        # not Claude
        ("amazon.nova-pro-v1:0", None, False),
        ("gpt-4o", None, False),
    ],
)
def test_claude_model_family_table(model, version, one_only):
    assert claude_version(model) == version
    assert claude_takes_one_sampling_parameter(model) is one_only


def test_claude_sampling_drops_top_p_only_when_both_are_set():
    body: dict[str, Any] = {"temperature": 0.2, "top_p": 0.9}
    note = claude_sampling(body, "claude-sonnet-4-5")
    assert body == {"temperature": 0.2}
    assert note == {
        CLAUDE_SAMPLING_NOTE: "model 'claude-sonnet-4-5' takes temperature or top_p, not both: "
        "sending temperature only (top_p dropped)"
    }
    for alone in ({"top_p": 0.9}, {"temperature": 0.2}, {"temperature": None, "top_p": 0.5}):
        body = dict(alone)
        assert claude_sampling(body, "claude-sonnet-4-5") == {}
        assert body == alone
    older = {"temperature": 0.2, "top_p": 0.9}
    assert claude_sampling(older, "claude-sonnet-4-20250514") == {}
    assert older == {"temperature": 0.2, "top_p": 0.9}


# --- OpenAI reasoning models -----------------------------------------------------------------------

SDK_MODELS = typing.get_args(ChatModel)


def test_reasoning_models_among_the_sdk_model_ids():
    reasoning = {m for m in SDK_MODELS if openai_reasoning_model(m)}
    expected = {m for m in SDK_MODELS if m.startswith(("o1", "o3", "o4", "gpt-5", "gpt-6", "codex-mini"))}
    assert reasoning == expected
    assert {"o1", "o3", "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5.1", "codex-mini-latest"} <= reasoning
    assert not reasoning & {"gpt-4o", "gpt-4.1", "gpt-4o-mini", "chatgpt-4o-latest", "gpt-3.5-turbo"}


@pytest.mark.parametrize(
    ("model", "refuses", "unless_none"),
    [
        ("o1", True, False),
        ("o3-mini-2025-01-31", True, False),
        ("o4-mini", True, False),
        ("ft:o4-mini-2025-04-16:acme::abc123", True, False),
        ("gpt-5", True, False),
        ("gpt-5-nano-2025-08-07", True, False),
        ("gpt-5.1", True, True),
        ("gpt-5.2-pro", True, True),
        ("gpt-6-sol", True, True),
        ("gpt-5-chat-latest", False, False),  # not a reasoning model: keeps its sampling fields
        ("gpt-5.1-chat-latest", False, True),
    ],
)
def test_reasoning_model_table(model, refuses, unless_none):
    found = openai_reasoning_model(model)
    assert found is not None
    assert (found.refuses_sampling, found.samples_without_reasoning) == (refuses, unless_none)


def ctx(model: str, provider: str = "openai", **options: Any) -> CallContext:
    return CallContext("r", "llm/v1/chat", provider, model, ModelOptions(**options), False, "id", 0)


_OPENAI_REQUEST = TypeAdapter(CompletionCreateParamsNonStreaming)


def build(body: dict[str, Any], model: str, provider: str = "openai", **options: Any) -> dict[str, Any]:
    req = (
        SPECS[provider]
        .routes["llm/v1/chat"]
        .build_request(copy.deepcopy(body), ctx(model, provider, **options))
    )
    _OPENAI_REQUEST.validate_python(req.body)
    return req.body


USER = [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize("model", ["o4-mini", "gpt-5", "o1-2024-12-17"])
def test_max_tokens_goes_as_max_completion_tokens(model):
    body = build({"model": model, "messages": USER, "max_tokens": 300}, model)
    assert body == {"model": model, "messages": USER, "max_completion_tokens": 300}
    both = build({"model": model, "messages": USER, "max_tokens": 300, "max_completion_tokens": 50}, model)
    assert both == {"model": model, "messages": USER, "max_completion_tokens": 50}


def test_other_models_keep_max_tokens_and_sampling():
    body = {"model": "gpt-4o", "messages": USER, "max_tokens": 300, "temperature": 0.2, "top_p": 0.5}
    assert build(body, "gpt-4o") == body


@pytest.mark.parametrize(
    ("field", "value", "what"),
    [
        ("temperature", 0.2, "other than 1"),
        ("top_p", 0.9, "other than 1"),
        ("presence_penalty", 0.5, "other than 0"),
        ("frequency_penalty", -0.5, "other than 0"),
        ("logprobs", True, "true"),
        ("top_logprobs", 3, "other than 0"),
    ],
)
@pytest.mark.parametrize("model", ["o3", "gpt-5-mini"])
def test_refused_sampling_fields_are_a_400_naming_field_and_model(field, value, what, model):
    with pytest.raises(GatewayError) as err:
        build({"model": model, "messages": USER, field: value}, model)
    assert (err.value.status, err.value.code, err.value.param) == (400, "unsupported_parameter", field)
    assert err.value.message == f"'{field}' {what} is not supported by the reasoning model '{model}'"


def test_neutral_sampling_values_pass():
    body = {
        "model": "o3",
        "messages": USER,
        "temperature": 1,
        "top_p": 1.0,
        "presence_penalty": 0,
        "frequency_penalty": 0.0,
        "logprobs": False,
    }
    assert build(body, "o3") == body


def test_gpt_5_1_samples_when_reasoning_effort_is_none():
    body = {"model": "gpt-5.1", "messages": USER, "temperature": 0.2, "reasoning_effort": "none"}
    assert build(body, "gpt-5.1") == body
    with pytest.raises(GatewayError) as err:
        build({**body, "reasoning_effort": "low"}, "gpt-5.1")
    assert err.value.message == (
        "'temperature' other than 1 is not supported by the reasoning model 'gpt-5.1' "
        "unless reasoning_effort is 'none'"
    )


def test_chat_variant_keeps_sampling_but_not_max_tokens():
    body = build(
        {"model": "gpt-5-chat-latest", "messages": USER, "temperature": 0.3, "max_tokens": 9},
        "gpt-5-chat-latest",
    )
    assert body == {
        "model": "gpt-5-chat-latest",
        "messages": USER,
        "temperature": 0.3,
        "max_completion_tokens": 9,
    }


def test_azure_knows_the_model_by_name_or_deployment():
    azure = {"azure_instance": "acme", "azure_deployment_id": "prod-o4-mini"}
    assert (
        build({"messages": USER, "max_tokens": 9}, "prod-o4-mini", "azure", **azure)["max_completion_tokens"]
        == 9
    )
    named = {"azure_instance": "acme", "azure_deployment_id": "prod-reasoner"}
    with pytest.raises(GatewayError) as err:
        build({"messages": USER, "top_p": 0.5}, "gpt-5", "azure", **named)
    assert err.value.message == "'top_p' other than 1 is not supported by the reasoning model 'gpt-5'"
    unknown = build({"messages": USER, "max_tokens": 9}, "prod-reasoner", "azure", **named)
    assert unknown["max_tokens"] == 9  # a deployment name that says nothing: as sent


@pytest.mark.parametrize(
    ("name", "anywhere", "found"),
    [
        ("prod-o4-mini", True, True),
        ("team_gpt-5", True, True),
        ("gpt-5.1-eastus", True, True),
        ("prod-o4-mini", False, False),  # a model id starts with the name
        ("gpt-4o-prod", True, False),
        ("proto3", True, False),
        ("demo1", True, False),
    ],
)
def test_reasoning_names_inside_deployment_names(name, anywhere, found):
    assert (openai_reasoning_model(name, anywhere) is not None) is found


def test_rules_do_not_touch_openai_compatible_providers():
    body = {"model": "o3", "messages": USER, "max_tokens": 9, "temperature": 0.2}
    assert build(body, "o3", "llama2", llama2_format="openai") == body
