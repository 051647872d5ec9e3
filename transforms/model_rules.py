"""Request rules that depend on the model a request names: pure functions over real model ids.

Each rule has its table here, so that a new model generation is one line to add:

- Claude (Anthropic, and Claude on Bedrock): from the versions in ``CLAUDE_ONE_SAMPLING_PARAMETER_FROM``
  on, the API answers 400 "`temperature` and `top_p` cannot both be specified for this model". When
  both would be sent, only ``temperature`` is.
- Claude thinking: Opus and Sonnet from 4.6 on (and the Fable and Mythos families) think adaptively
  (``CLAUDE_ADAPTIVE_THINKING_FROM``); older Claude models take a fixed ``budget_tokens``.
- OpenAI reasoning models (o-series, gpt-5 and later; ``OPENAI_REASONING``): ``max_tokens`` is
  refused in favour of ``max_completion_tokens``, and the sampling fields in
  ``REASONING_REFUSED`` are refused unless at their neutral value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from transforms.errors import GatewayError

# --- Claude: temperature or top_p ------------------------------------------------------------------

# Family -> the first (major, minor) version that takes temperature or top_p but not both.
CLAUDE_ONE_SAMPLING_PARAMETER_FROM: Mapping[str, tuple[int, int]] = {
    "opus": (4, 1),
    "sonnet": (4, 5),
    "haiku": (4, 5),
}
# The naming from Claude 4 on: claude-<family>-<major>[-<minor>], then a date (-20250929, @20250929
# on Vertex), a Bedrock suffix (-v1:0) or nothing. Found inside Bedrock ids (anthropic.claude-...,
# us.anthropic.claude-..., ARNs). A minor version has one or two digits; a date has eight.
_CLAUDE_ID = re.compile(r"claude-(opus|sonnet|haiku)-(\d+)(?:[-.](\d{1,2}))?(?!\d)")


def claude_version(model: str) -> tuple[str, int, int] | None:
    """(family, major, minor) of a Claude model id in the Claude 4 naming; None for other ids,
    Claude 3 ids (``claude-3-5-sonnet-...``) included."""
    found = _CLAUDE_ID.search(model.lower())
    if found is None:
        return None
    family, major, minor = found.groups()
    return family, int(major), int(minor or 0)


def claude_takes_one_sampling_parameter(model: str) -> bool:
    """Whether the model refuses ``temperature`` together with ``top_p``."""
    version = claude_version(model)
    if version is None:
        return False
    family, major, minor = version
    return (major, minor) >= CLAUDE_ONE_SAMPLING_PARAMETER_FROM[family]


# Claude thinks adaptively (thinking {"type": "adaptive"} with output_config.effort) from these
# versions on; Opus 4.7 and the families below refuse a fixed budget_tokens altogether.
CLAUDE_ADAPTIVE_THINKING_FROM: Mapping[str, tuple[int, int]] = {"opus": (4, 6), "sonnet": (4, 6)}
CLAUDE_ADAPTIVE_ONLY_FAMILIES = re.compile(r"claude-(?:fable|mythos)(?![a-z])")


def claude_adaptive_thinking(model: str) -> bool:
    """Whether the model takes adaptive thinking (and budget_tokens no more, or only deprecated)."""
    if CLAUDE_ADAPTIVE_ONLY_FAMILIES.search(model.lower()):
        return True
    version = claude_version(model)
    if version is None:
        return False
    family, major, minor = version
    start = CLAUDE_ADAPTIVE_THINKING_FROM.get(family)
    return start is not None and (major, minor) >= start


CLAUDE_SAMPLING_NOTE = "claude_temperature_top_p"


def claude_sampling(body: dict[str, Any], model: str) -> dict[str, str]:
    """Drop ``top_p`` from a standard-format body when the model takes only one of the two and both
    are set (by the client, the route's defaults, or one each); the note says so, for the event log."""
    if body.get("temperature") is None or body.get("top_p") is None:
        return {}
    if not claude_takes_one_sampling_parameter(model):
        return {}
    del body["top_p"]
    return {
        CLAUDE_SAMPLING_NOTE: f"model '{model}' takes temperature or top_p, not both: "
        "sending temperature only (top_p dropped)"
    }


# --- OpenAI reasoning models -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReasoningModel:
    """What the gateway knows of an OpenAI reasoning model from its id."""

    name: str
    # gpt-5.1 and later take the sampling fields when reasoning_effort is "none".
    samples_without_reasoning: bool
    # The -chat variants (gpt-5-chat-latest) are not reasoning models: they keep their sampling fields.
    refuses_sampling: bool


# o1, o3, o4-mini... (also o1-preview, o3-pro, dated ids) and codex-mini; gpt-5, gpt-5.1, gpt-6...
# with any suffix. Model ids start with the name; Azure deployment names may carry it anywhere
# between separators ("prod-o4-mini", "team_gpt-5").
_REASONING_ID = re.compile(r"(?:^|(?<=[-_./:]))(?:(o\d+|codex-mini)|gpt-(\d+)(?:\.(\d+))?)(?=-|_|$)")
OPENAI_REASONING_FROM_GPT = 5


def openai_reasoning_model(model: str, anywhere: bool = False) -> ReasoningModel | None:
    """The reasoning model an id names, or None. Fine-tuned ids (``ft:o4-mini-...:org::id``) and
    ids with a vendor prefix (``openai/gpt-5``) count as their base model; ``anywhere``: find the
    name inside a free-form name (an Azure deployment)."""
    name = model.lower().removeprefix("ft:").rsplit("/", 1)[-1]
    found = _REASONING_ID.search(name) if anywhere else _REASONING_ID.match(name)
    if found is None:
        return None
    chat_variant = "-chat" in name[found.start() :]
    o_series, major, minor = found.groups()
    if o_series is None and int(major) < OPENAI_REASONING_FROM_GPT:
        return None
    newer = o_series is None and (int(major), int(minor or 0)) >= (5, 1)
    return ReasoningModel(model, samples_without_reasoning=newer, refuses_sampling=not chat_variant)


def _reasoning_model_of(names: Iterable[tuple[str | None, bool]]) -> ReasoningModel | None:
    for name, anywhere in names:
        found = openai_reasoning_model(name, anywhere) if name else None
        if found is not None:
            return found
    return None


# Field -> (is it at its neutral value, which is accepted, how to say what is).
REASONING_REFUSED: Mapping[str, tuple[Callable[[Any], bool], str]] = {
    "temperature": (lambda v: v == 1, "other than 1"),
    "top_p": (lambda v: v == 1, "other than 1"),
    "presence_penalty": (lambda v: v == 0, "other than 0"),
    "frequency_penalty": (lambda v: v == 0, "other than 0"),
    "logprobs": (lambda v: v is False, "true"),
    "top_logprobs": (lambda v: v == 0, "other than 0"),
}


def openai_reasoning_request(body: dict[str, Any], model: str, deployment: str | None = None) -> None:
    """Adapt a chat body for an OpenAI reasoning model, if the model (or for Azure, the deployment's
    name) is one: ``max_tokens`` goes as ``max_completion_tokens``, and a sampling field the model
    refuses is a 400 naming it and the model, not a silent drop."""
    reasoning = _reasoning_model_of(((model, False), (deployment, True)))
    if reasoning is None:
        return
    if body.get("max_tokens") is not None:
        value = body.pop("max_tokens")
        if body.get("max_completion_tokens") is None:
            body["max_completion_tokens"] = value
    else:
        body.pop("max_tokens", None)
    if not reasoning.refuses_sampling:
        return
    if reasoning.samples_without_reasoning and body.get("reasoning_effort") == "none":
        return
    for field, (neutral, what) in REASONING_REFUSED.items():
        value = body.get(field)
        if value is None or neutral(value):
            continue
        unless = " unless reasoning_effort is 'none'" if reasoning.samples_without_reasoning else ""
        raise GatewayError(
            400,
            f"'{field}' {what} is not supported by the reasoning model '{reasoning.name}'{unless}",
            "unsupported_parameter",
            param=field,
        )
