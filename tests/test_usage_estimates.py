"""An answer whose usage lacks the token counts it should carry is recorded as an estimate (marked
``estimated``), never as zeros: every provider's parse_response through the pipeline, and every
provider stream that reports usage."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from conftest import fixture_bytes, fixture_json
from openai.types.chat import ChatCompletion
from test_robustness import ROUTES

from transforms.config import ModelOptions
from transforms.pipeline import prepare, translate_response
from transforms.registry import spec_for
from transforms.types import CallContext, Inbound
from transforms.usage import estimate_tokens

QUESTION = "What is the tallest mountain in Canada, and where is it?"
BODY = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": QUESTION}]})
USAGE_KEYS = {"usage", "usageMetadata", "prompt_eval_count", "eval_count", "details"}


def without_counts(value: Any) -> Any:
    """The value with every usage object (and Ollama's and TGI's counts) removed, at any depth."""
    if isinstance(value, dict):
        return {k: without_counts(v) for k, v in value.items() if k not in USAGE_KEYS}
    if isinstance(value, list):
        return [without_counts(v) for v in value]
    return value


# provider -> (response fixture, the usage object left in it: present, but without the counts)
ANSWERS = {
    "openai": ("openai/chat/response.json", {"usage": {"total_tokens": 7}}),
    "azure": ("azure/chat/response.json", {"usage": {}}),
    "mistral": ("openai/chat/response.json", {"usage": {"prompt_tokens": 5}}),
    "anthropic": ("anthropic/chat/response.json", {"usage": {"cache_read_input_tokens": 0}}),
    "cohere": ("cohere/chat/response.json", {"usage": {"billed_units": {"search_units": 1}}}),
    "gemini": ("gemini/chat/response.json", {"usageMetadata": {"totalTokenCount": 9}}),
    "bedrock": ("bedrock/chat/response.json", {"usage": {"totalTokens": 9}}),
    "huggingface": ("huggingface/chat/response.json", {"usage": {"completion_tokens": 3}}),
    "ollama": ("ollama/chat/response.json", {"eval_count": 4}),
    "llama2": ("llama2_raw/chat/response.json", {"details": {"finish_reason": "eos_token"}}),
}


@pytest.mark.parametrize("provider", sorted(ANSWERS))
def test_answer_without_token_counts_is_an_estimate(provider):
    fixture, partial = ANSWERS[provider]
    prep = prepare(ROUTES[provider], Inbound("POST", "gw", "/", [], {}, BODY), request_id="r", now=1, env={})
    upstream = {**without_counts(fixture_json(fixture)), **partial}
    answer = translate_response(prep, 200, orjson.dumps(upstream))
    assert answer.status == 200
    out = orjson.loads(answer.body)
    text = out["choices"][0]["message"]["content"]
    assert text, out
    usage = answer.usage
    assert usage is not None and usage.estimated is True
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        estimate_tokens(QUESTION),
        estimate_tokens(text),
    )
    assert usage.completion_tokens > 0
    # The client gets the same estimate (unmarked) in a valid OpenAI answer.
    assert out["usage"] == {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    ChatCompletion.model_validate(out)


# provider -> its chat stream fixture (SSE or NDJSON lines of JSON)
STREAMS = {
    "anthropic": "anthropic/chat/stream.sse",
    "cohere": "cohere/chat/stream.sse",
    "gemini": "gemini/chat/stream.sse",
    "huggingface": "huggingface/chat/stream.sse",
    "ollama": "ollama/chat/stream.ndjson",
    "llama2": "llama2_raw/chat/stream.sse",
}


def stream_without_counts(raw: bytes) -> bytes:
    lines = []
    for line in raw.split(b"\n"):
        prefix = b"data:" if line.startswith(b"data:") else b""
        data = line[len(prefix) :]
        if not data.strip().startswith(b"{"):
            lines.append(line)
            continue
        lines.append(prefix + orjson.dumps(without_counts(orjson.loads(data))))
    return b"\n".join(lines)


@pytest.mark.parametrize("provider", sorted(STREAMS))
def test_stream_without_token_counts_is_an_estimate(provider):
    raw = fixture_bytes(STREAMS[provider])
    stripped = stream_without_counts(raw)
    assert stripped != raw
    spec = spec_for(ROUTES[provider])
    ctx = CallContext(
        "r",
        "llm/v1/chat",
        provider,
        "m",
        ModelOptions(),
        True,
        "id",
        1,
        include_usage=True,
        prompt_text=QUESTION,
    )
    translator = spec.routes["llm/v1/chat"].new_stream(ctx)
    frames = translator.feed(stripped) + translator.finish()
    usage = translator.usage
    assert usage is not None and usage.estimated is True, provider
    assert usage.prompt_tokens == estimate_tokens(QUESTION)
    assert usage.completion_tokens == estimate_tokens(translator.text_chars) > 0
    # The client that asked for usage gets the estimate in the final usage chunk.
    chunks = [orjson.loads(f[6:]) for f in frames if f.startswith(b"data: {")]
    assert chunks[-1]["usage"]["completion_tokens"] == usage.completion_tokens
