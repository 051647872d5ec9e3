"""Reasoning across providers: what a client asked for, Claude's thinking rules, and the thinking
blocks that must survive a client that keeps only what OpenAI's format has a place for.

Asking: OpenAI clients send ``reasoning_effort`` (none ... max); Anthropic-minded clients (LiteLLM,
``extra_body``) send Anthropic's ``thinking`` object (``enabled`` with ``budget_tokens``,
``adaptive``, ``disabled``), which wins when both are given. ``reasoning_of`` reads either into one
``Reasoning``; each provider transform maps it to its own setting (Claude's here, shared by the
anthropic and bedrock transforms, the others in their own modules).

Carrying: Claude signs every thinking block and wants it back, unchanged and in front of the
tool_use blocks of its turn, when that turn called tools. An OpenAI client keeps the tool-call ids
it was given, so the blocks ride in the id of the tool call they precede, after
``SIGNATURE_MARKER`` (Gemini's thought signatures ride there the same way), and also in a
``thinking_blocks`` field of the assistant message (Anthropic's block shapes) for clients that keep
unknown fields. On the way up the provider transform takes them out of the ids again.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from transforms.common import refuse
from transforms.errors import bad_request
from transforms.limits import MAX_CARRIED_THINKING_CHARS, StreamLimitExceeded
from transforms.model_rules import claude_adaptive_thinking

# Separates a tool-call id from what it carries: a Gemini thought signature, or packed thinking
# blocks (``pack_blocks``) for Claude on Anthropic and Bedrock.
SIGNATURE_MARKER = "__thought__"
# The chat fields that ask for reasoning: providers with a reasoning setting translate both.
REASONING_FIELDS = frozenset({"reasoning_effort", "thinking"})
# reasoning_effort values as the openai SDK types them (ReasoningEffort).
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
# Thinking tokens per effort, where a provider takes a budget (Claude before adaptive thinking,
# Gemini 2.5, Cohere). 24576 is the largest budget every Gemini 2.5 model accepts.
BUDGETS: Mapping[str, int] = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 24576,
    "max": 24576,
}
# Tokens left for the answer itself when the gateway sets max_tokens for a thinking request.
ANSWER_TOKENS = 4096
CLAUDE_MIN_BUDGET = 1024
# Claude's effort levels (output_config.effort) for an OpenAI effort.
_CLAUDE_EFFORT = {
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "xhigh",
    "max": "max",
}
# What the thinking rules may leave of a sampling field (Anthropic: temperature 1 only, top_p from
# 0.95 to 1, no top_k).
_CLAUDE_TOP_P_FROM = 0.95


@dataclass(frozen=True, slots=True)
class Reasoning:
    """A client's reasoning request."""

    effort: str | None  # one of EFFORTS; None: only a budget or "adaptive" was given
    budget: int | None = None  # thinking tokens the client named (thinking.budget_tokens)
    adaptive: bool = False  # thinking {"type": "adaptive"}: the model decides how much
    display: str | None = None  # thinking.display, passed where the provider takes it

    @property
    def off(self) -> bool:
        return self.effort == "none"

    @property
    def tokens(self) -> int:
        """The thinking budget: the client's own, else the one its effort stands for."""
        if self.budget is not None:
            return self.budget
        return BUDGETS.get(self.effort or "high", BUDGETS["high"])


def effort_for_budget(budget: int) -> str:
    """The effort level a thinking budget stands for, for providers that take levels."""
    for effort in ("minimal", "low", "medium", "high"):
        if budget <= BUDGETS[effort]:
            return effort
    return "xhigh"


def reasoning_of(body: Mapping[str, Any]) -> Reasoning | None:
    """The reasoning a chat body asks for (``thinking`` wins over ``reasoning_effort``); None when
    it asks for none. A malformed value is the client's 400."""
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in EFFORTS:
        raise bad_request(f"'reasoning_effort' must be one of {', '.join(EFFORTS)}", "invalid_value")
    thinking = body.get("thinking")
    if thinking is None:
        return Reasoning(effort) if effort is not None else None
    if not isinstance(thinking, dict):
        raise bad_request("'thinking' must be an object", "invalid_value")
    display = thinking.get("display") if isinstance(thinking.get("display"), str) else None
    kind = thinking.get("type")
    if kind == "disabled":
        return Reasoning("none")
    if kind == "adaptive":
        return Reasoning(effort, adaptive=True, display=display)
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
            raise bad_request("'thinking.budget_tokens' must be a positive integer", "invalid_value")
        return Reasoning(effort_for_budget(budget), budget=budget, display=display)
    raise bad_request("'thinking.type' must be 'enabled', 'adaptive' or 'disabled'", "invalid_value")


def thinking_as_effort(out: dict[str, Any]) -> None:
    """OpenAI's format has no ``thinking`` object (Anthropic's shape, as LiteLLM-minded clients and
    the Anthropic ingress send it): its budget becomes the nearest ``reasoning_effort``; an adaptive
    or disabled one leaves the model's default."""
    if out.get("thinking") is None:
        return
    reasoning = reasoning_of({"thinking": out.pop("thinking")})
    if out.get("reasoning_effort") is None and reasoning is not None and reasoning.budget is not None:
        out["reasoning_effort"] = reasoning.effort


# --- Claude (Anthropic, Bedrock) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClaudeThinking:
    """Claude's request fields for a reasoning request."""

    thinking: dict[str, Any]  # {"type": "enabled", "budget_tokens": n} or {"type": "adaptive"}
    effort: str | None  # output_config.effort (adaptive thinking), None: the model's default
    max_tokens: int  # the max_tokens to send


def claude_thinking(
    body: dict[str, Any], reasoning: Reasoning, model: str, provider: str, notes: dict[str, str]
) -> ClaudeThinking | None:
    """Claude's thinking for ``reasoning``, with Claude's rules applied to the body instead of
    failing upstream: temperature only 1, top_p from 0.95, no top_k (each dropped, and noted), no
    forced tool choice (a 400), a budget of at least 1024 below max_tokens (max_tokens raised when
    the client left it unset). Opus/Sonnet 4.6 and later think adaptively, with an effort level."""
    if reasoning.off:
        return None
    asked_max = body.get("max_completion_tokens")
    if asked_max is None:
        asked_max = body.get("max_tokens")
    _claude_sampling_rules(body, model, notes)
    choice = body.get("tool_choice")
    if choice == "required" or isinstance(choice, dict):
        raise refuse(
            provider, "tool_choice", "forcing a tool call is not supported with reasoning (auto or none)"
        )
    display = {"display": reasoning.display} if reasoning.display else {}
    if claude_adaptive_thinking(model):
        room = reasoning.tokens + ANSWER_TOKENS
        return ClaudeThinking(
            {"type": "adaptive", **display},
            _CLAUDE_EFFORT.get(reasoning.effort) if reasoning.effort else None,
            asked_max if asked_max is not None else room,
        )
    budget = max(reasoning.tokens, CLAUDE_MIN_BUDGET)
    if reasoning.budget is not None and reasoning.budget < CLAUDE_MIN_BUDGET:
        notes["claude_thinking_budget"] = f"thinking budget raised to {CLAUDE_MIN_BUDGET}, {provider}'s least"
    if asked_max is None:
        max_tokens = budget + ANSWER_TOKENS
    else:
        if asked_max <= CLAUDE_MIN_BUDGET:
            raise refuse(
                provider,
                "max_tokens",
                f"of {CLAUDE_MIN_BUDGET} or less is not supported with reasoning (the thinking budget "
                f"is at least {CLAUDE_MIN_BUDGET} tokens and below max_tokens)",
            )
        max_tokens = asked_max
        if budget >= asked_max:
            budget = asked_max - 1
            notes["claude_thinking_budget"] = "thinking budget lowered below max_tokens"
    return ClaudeThinking({"type": "enabled", "budget_tokens": budget, **display}, None, max_tokens)


def _claude_sampling_rules(body: dict[str, Any], model: str, notes: dict[str, str]) -> None:
    dropped = []
    if body.get("temperature") is not None and body["temperature"] != 1:
        dropped.append("temperature")
    if body.get("top_p") is not None and body["top_p"] < _CLAUDE_TOP_P_FROM:
        dropped.append("top_p")
    if body.get("top_k") is not None:
        dropped.append("top_k")
    for name in dropped:
        del body[name]
    if dropped:
        notes["claude_thinking_sampling"] = (
            f"model '{model}' thinks with its own sampling: {', '.join(dropped)} dropped "
            "(thinking takes temperature 1, top_p from 0.95, no top_k)"
        )


# --- thinking blocks carried in tool-call ids --------------------------------------------------------


def carry(call_id: str, payload: str | None) -> str:
    """A tool-call id with ``payload`` (a signature or packed blocks) riding after the marker."""
    return f"{call_id}{SIGNATURE_MARKER}{payload}" if payload else call_id


def carried(call_id: str) -> tuple[str, str | None]:
    """(the provider's own id, what rides after the marker or None)."""
    base, marker, payload = call_id.partition(SIGNATURE_MARKER)
    return (base, payload) if marker and payload else (call_id, None)


def pack_blocks(blocks: list[dict[str, Any]]) -> str:
    """Thinking blocks as id-safe text (base64url of their JSON, unpadded)."""
    return base64.urlsafe_b64encode(orjson.dumps(blocks)).rstrip(b"=").decode()


def unpack_blocks(payload: str | None) -> list[dict[str, Any]]:
    """Blocks ``pack_blocks`` wrote; [] for anything else (a Gemini signature, a damaged id)."""
    if not payload:
        return []
    try:
        blocks = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return []
    return thinking_blocks(blocks)


def thinking_blocks(value: Any) -> list[dict[str, Any]]:
    """The signed thinking and the redacted_thinking blocks of a list (a ``thinking_blocks`` field),
    as Anthropic's shapes; anything else in it (an unsigned block says nothing a provider checks)
    is left out."""
    if not isinstance(value, list):
        return []
    out = []
    for block in value:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if (
            kind == "thinking"
            and isinstance(block.get("thinking"), str)
            and isinstance(block.get("signature"), str)
            and block["signature"]
        ):
            out.append({"type": "thinking", "thinking": block["thinking"], "signature": block["signature"]})
        elif kind == "redacted_thinking" and isinstance(block.get("data"), str):
            out.append({"type": "redacted_thinking", "data": block["data"]})
    return out


def split_call_id(call_id: str) -> tuple[str, list[dict[str, Any]]]:
    """(the provider's own tool-call id, the thinking blocks its id carried)."""
    base, payload = carried(call_id)
    return base, unpack_blocks(payload)


def replayed_turn(
    message: Mapping[str, Any],
    content: list[Any],
    uses: list[tuple[str, Any]],
    shape: Callable[[dict[str, Any]], Any] | None = None,
) -> list[Any]:
    """An assistant turn's blocks with its thinking put back: ``uses`` are (tool-call id as the
    client sent it, the provider's tool-use block built with the bare id); ``shape`` turns a thinking
    block (Anthropic's shape) into the provider's own. Blocks carried by the
    first call's id (else the message's ``thinking_blocks``) open the turn, as Claude requires;
    blocks carried by a later call's id go right before its tool use (interleaved thinking)."""
    lead: list[Any] = []
    tail: list[Any] = []
    any_carried = False
    for k, (call_id, block) in enumerate(uses):
        _, blocks = split_call_id(call_id)
        any_carried = any_carried or bool(blocks)
        (lead if k == 0 else tail).extend(map(shape, blocks) if shape else blocks)
        tail.append(block)
    if not any_carried:
        blocks = thinking_blocks(message.get("thinking_blocks"))
        lead = [shape(b) for b in blocks] if shape else blocks
    return [*lead, *content, *tail] if lead or any_carried else [*content, *tail]


class ThinkingCarrier:
    """The signed thinking blocks of one answer, in order, handed to the tool-call ids that follow
    them (each id carries the blocks since the previous call)."""

    __slots__ = ("blocks", "pending")

    def __init__(self) -> None:
        self.blocks: list[dict[str, Any]] = []
        self.pending: list[dict[str, Any]] = []

    def add(self, block: dict[str, Any]) -> None:
        self.blocks.append(block)
        self.pending.append(block)

    def call_id(self, call_id: str) -> str:
        if not self.pending:
            return call_id
        out = carry(call_id, pack_blocks(self.pending))
        self.pending = []
        return out


class ThinkingText:
    """A streamed thinking block's text, kept whole (its signature covers every character) and
    bounded by MAX_CARRIED_THINKING_CHARS."""

    __slots__ = ("chars", "parts")

    def __init__(self, text: str = "") -> None:
        self.parts = [text] if text else []
        self.chars = len(text)

    def add(self, text: str) -> None:
        self.chars += len(text)
        if self.chars > MAX_CARRIED_THINKING_CHARS:
            raise StreamLimitExceeded(
                f"the upstream streamed a thinking block over the gateway's limit of "
                f"{MAX_CARRIED_THINKING_CHARS} characters"
            )
        self.parts.append(text)

    def __str__(self) -> str:
        return "".join(self.parts)
