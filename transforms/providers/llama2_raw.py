"""Llama-2 behind a raw text-generation endpoint (Hugging Face TGI style): llama2 with llama2_format: raw.

The endpoint takes one prompt string, so the conversation is rendered with Llama-2's chat template,
as Meta's reference code does::

    <s>[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n{user} [/INST] {assistant} </s><s>[INST] {user} [/INST]

Choices where a conversation does not fit that shape:

* system (or developer) messages before the first user turn are joined into the ``<<SYS>>`` block of
  the first ``[INST]``; a system message later in the conversation has no place of its own in
  Llama-2, so it becomes part of the next user instruction;
* consecutive user (or assistant) messages are joined with a blank line: turns must alternate;
* a conversation opening with an assistant message gets an empty first instruction;
* a conversation ending with an assistant message is left open (no ``</s>``), so the model
  continues that message;
* texts are stripped of surrounding whitespace, as in Meta's reference.

A completions prompt is the single user instruction: ``<s>[INST] {prompt} [/INST]``.
Tools, images and response_format have no equivalent and are refused. Temperature 0 means greedy
decoding, which TGI gets by receiving no sampling parameter at all (it rejects temperature 0).
"""

from __future__ import annotations

from typing import Any

import orjson

from transforms.chunks import SSEEvent, StreamTranslatorBase
from transforms.common import content_parts, matched_stop, refuse, requires_upstream_url
from transforms.reasoning import reasoning_of
from transforms.types import (
    STOP_SEQUENCE_KEY,
    CallContext,
    ErrorInfo,
    Json,
    ProviderRequest,
    ProviderSpec,
    RouteTransform,
    Usage,
)
from transforms.usage import estimate_tokens

PATH = "/generate"
STREAM_PATH = "/generate_stream"
LABEL = "llama2 (llama2_format: raw)"

B_INST, E_INST = "[INST]", "[/INST]"
B_SYS, E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"
BOS, EOS = "<s>", "</s>"

# TGI's details.finish_reason -> OpenAI's finish_reason.
_FINISH = {"length": "length", "eos_token": "stop", "stop_sequence": "stop"}


# --- prompt --------------------------------------------------------------------------------------


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content.strip()
    texts = []
    for j, part in enumerate(content_parts(content)):
        if part.get("type") != "text":
            raise refuse(LABEL, f"{where}.content[{j}]", f"of type '{part.get('type')}' is not supported")
        texts.append(part.get("text", ""))
    return "\n".join(texts).strip()


def _turns(messages: list[dict[str, Any]]) -> tuple[list[str], list[tuple[list[str], list[str]]]]:
    """The leading system texts, and (user texts, assistant texts) pairs in order."""
    system: list[str] = []
    turns: list[tuple[list[str], list[str]]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message["role"]
        if role in ("tool", "function"):
            raise refuse(LABEL, f"{where}.role", f"'{role}' is not supported")
        if message.get("tool_calls"):
            raise refuse(LABEL, f"{where}.tool_calls")
        text = _text(message.get("content"), where)
        if role in ("system", "developer") and not turns:
            system.append(text)
        elif role == "assistant":
            if not turns:
                turns.append(([], []))
            turns[-1][1].append(text)
        else:  # user, or a system message inside the conversation
            if not turns or turns[-1][1]:
                turns.append(([], []))
            turns[-1][0].append(text)
    return system, turns


def chat_prompt(messages: list[dict[str, Any]]) -> str:
    system, turns = _turns(messages)
    if not turns:
        turns = [([], [])]
    out = []
    for index, (users, assistants) in enumerate(turns):
        instruction = "\n\n".join(t for t in users if t)
        if index == 0 and system:
            instruction = B_SYS + "\n\n".join(system) + E_SYS + instruction
        segment = f"{BOS}{B_INST} {instruction} {E_INST}"
        answer = "\n\n".join(t for t in assistants if t)
        if answer:
            segment += " " + answer
        if assistants and index < len(turns) - 1:
            segment += f" {EOS}"
        out.append(segment)
    return "".join(out)


def completion_prompt(prompt: Any) -> str:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise refuse(LABEL, "prompt", "other than a single string is not supported")
    return f"{BOS}{B_INST} {prompt.strip()} {E_INST}"


# --- request -------------------------------------------------------------------------------------


def _refuse_unsupported(body: dict[str, Any]) -> None:
    """What a raw text-generation endpoint cannot do; dropping any of these would change the answer."""
    if body.get("tools"):
        raise refuse(LABEL, "tools")
    reasoning = reasoning_of(body)
    if reasoning is not None and not reasoning.off:  # a raw text-generation endpoint cannot think
        raise refuse(LABEL, "thinking" if body.get("thinking") is not None else "reasoning_effort")
    choice = body.get("tool_choice")
    if choice == "required" or isinstance(choice, dict):
        raise refuse(LABEL, "tool_choice")
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") not in (None, "text"):
        raise refuse(LABEL, "response_format")
    if (body.get("n") or 1) > 1:
        raise refuse(LABEL, "n", "greater than 1 is not supported")
    logprobs = body.get("logprobs")
    if logprobs is not None and logprobs is not False:
        raise refuse(LABEL, "logprobs")
    for field in ("top_logprobs", "suffix"):
        if body.get(field) is not None:
            raise refuse(LABEL, field)
    if body.get("echo"):
        raise refuse(LABEL, "echo")
    if (body.get("best_of") or 1) > 1:
        raise refuse(LABEL, "best_of", "greater than 1 is not supported")
    if body.get("logit_bias"):
        raise refuse(LABEL, "logit_bias")
    if body.get("presence_penalty"):
        raise refuse(LABEL, "presence_penalty")


def _sampling(body: dict[str, Any]) -> dict[str, Any]:
    """OpenAI sampling values in TGI's ranges: temperature > 0, 0 < top_p < 1, top_k > 0."""
    temperature = body.get("temperature")
    if temperature == 0:
        return {}  # greedy: any sampling parameter would switch TGI to sampling
    out: dict[str, Any] = {}
    if temperature is not None:
        out["temperature"] = temperature
    top_p = body.get("top_p")
    if top_p is not None and 0 < top_p < 1:
        out["top_p"] = top_p
    elif top_p == 0:
        return {}  # only the most likely token: greedy
    top_k = body.get("top_k")
    if top_k:
        out["top_k"] = top_k
    return out


def _parameters(body: dict[str, Any]) -> dict[str, Any]:
    # details: TGI then reports the finish reason and token counts; return_full_text: the Hugging
    # Face Inference API otherwise echoes the prompt.
    params: dict[str, Any] = {"return_full_text": False, "details": True}
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        params["max_new_tokens"] = max_tokens
    params.update(_sampling(body))
    stop = body.get("stop")
    if stop:
        params["stop"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("seed") is not None:
        params["seed"] = body["seed"]
    if body.get("frequency_penalty"):
        params["frequency_penalty"] = body["frequency_penalty"]
    return params


def _request(inputs: str, body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    out: dict[str, Any] = {"inputs": inputs, "parameters": _parameters(body)}
    if ctx.stream:
        out["stream"] = True  # for endpoints that serve both modes on one path
    return ProviderRequest(out, STREAM_PATH if ctx.stream else PATH)


def build_chat(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    _refuse_unsupported(body)
    return _request(chat_prompt(body["messages"]), body, ctx)


def build_completion(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    _refuse_unsupported(body)
    return _request(completion_prompt(body["prompt"]), body, ctx)


# --- response ------------------------------------------------------------------------------------


def strip_echo(text: str) -> str:
    """The generated text alone, when an endpoint echoed the prompt before it."""
    if text.startswith((BOS + B_INST, B_INST)) and E_INST in text:
        return text.rsplit(E_INST, 1)[1]
    return text


def _generation(body: Json) -> dict[str, Any]:
    """TGI answers an object; the Hugging Face Inference API a list holding one; Kong's mocks and
    some self-hosted wrappers put that list under ``data``."""
    if isinstance(body, dict) and isinstance(body.get("data"), list) and "generated_text" not in body:
        body = body["data"]
    if isinstance(body, list):
        if not body:
            raise ValueError("the llama2 endpoint returned an empty list")
        body = body[0]
    if not isinstance(body, dict):
        raise ValueError("the llama2 response is not a JSON object")
    if isinstance(body.get("error"), str):
        raise ValueError(body["error"])
    if not isinstance(body.get("generated_text"), str):
        raise ValueError("'generated_text' not in the llama2 response")
    return body


def usage_of(details: Any, prompt_text: str, completion_text: str | int, stream: bool = False) -> Usage:
    """Counts the endpoint reported (TGI details), estimates for the rest."""
    details = details if isinstance(details, dict) else {}
    generated = details.get("generated_tokens")
    prompt = details.get("input_length") if stream else len(details.get("prefill") or ())
    estimated = False
    if not isinstance(generated, int):
        generated, estimated = estimate_tokens(completion_text), True
    if not isinstance(prompt, int) or not prompt:
        prompt, estimated = estimate_tokens(prompt_text), True
    return Usage(prompt, generated, prompt + generated, estimated=estimated)


def finish_reason(details: Any) -> str:
    reason = details.get("finish_reason") if isinstance(details, dict) else None
    return _FINISH.get(reason, "stop") if isinstance(reason, str) else "stop"


def _matched_stop(details: Any, ctx: CallContext) -> str | None:
    """TGI says a stop sequence ended the text, not which (STOP_SEQUENCE_KEY)."""
    reason = details.get("finish_reason") if isinstance(details, dict) else None
    return matched_stop(ctx, reason == "stop_sequence")


def parse_response(body: Json, ctx: CallContext) -> Json:
    generation = _generation(body)
    text = strip_echo(generation["generated_text"]).lstrip()
    details = generation.get("details")
    usage = usage_of(details, ctx.prompt_text, text)
    completions = ctx.route_type == "llm/v1/completions"
    choice: dict[str, Any] = {"index": 0}
    if completions:
        choice["text"] = text
    else:
        choice["message"] = {"role": "assistant", "content": text}
    choice["logprobs"] = None
    choice["finish_reason"] = finish_reason(details)
    stop_sequence = None if completions else _matched_stop(details, ctx)
    if stop_sequence is not None:
        choice[STOP_SEQUENCE_KEY] = stop_sequence
    return {
        "id": ("cmpl-" if completions else "chatcmpl-") + ctx.request_id,
        "object": "text_completion" if completions else "chat.completion",
        "created": ctx.created,
        "model": ctx.model,
        "choices": [choice],
        "usage": usage.as_openai(),
    }


# --- stream --------------------------------------------------------------------------------------


class Llama2RawStream(StreamTranslatorBase):
    """TGI's SSE: one ``token`` per event; the last event also has ``generated_text`` and ``details``."""

    provider = "llama2"

    def __init__(self, ctx: CallContext) -> None:
        super().__init__(ctx)
        self._leading = True  # Llama-2 answers start with a space, dropped as in the non-streamed answer

    def on_event(self, event: SSEEvent) -> list[bytes]:
        data = event.data.strip()
        if not data:
            return []
        if data == "[DONE]":
            return self._end(None)
        payload = orjson.loads(data)
        if not isinstance(payload, dict):
            return self.fail("the llama2 stream sent something other than a JSON object")
        if "error" in payload:
            error = payload["error"]
            return self.fail(error if isinstance(error, str) and error else "the llama2 stream failed")
        frames = self._token(payload.get("token"))
        if payload.get("details") is not None or payload.get("generated_text") is not None:
            frames += self._end(payload.get("details"))
        return frames

    def _token(self, token: Any) -> list[bytes]:
        if not isinstance(token, dict) or token.get("special") or not isinstance(token.get("text"), str):
            return []  # special tokens (</s>) are markup, not text
        text = token["text"]
        if self._leading:
            text = text.lstrip()
            self._leading = not text
        return self.content(text)

    def _end(self, details: Any) -> list[bytes]:
        self.usage = usage_of(details, self.ctx.prompt_text, self.text_chars, stream=True)
        return self.end(finish_reason(details), _matched_stop(details, self.ctx))


def new_stream(ctx: CallContext) -> Llama2RawStream:
    return Llama2RawStream(ctx)


# --- errors, url, spec ---------------------------------------------------------------------------


def parse_error(status: int, body: Json) -> ErrorInfo | None:
    """TGI: ``{"error": "...", "error_type": "validation"}``; Hugging Face may list several errors."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, list):
        error = "; ".join(str(e) for e in error if e)
    if isinstance(error, str) and error:
        kind = body.get("error_type")
        return ErrorInfo(error, code=kind if isinstance(kind, str) else None)
    if isinstance(body.get("message"), str):
        return ErrorInfo(body["message"])
    return None


SPECS = (
    ProviderSpec(
        "llama2_raw",
        requires_upstream_url("the llama2 raw format"),
        {
            "llm/v1/chat": RouteTransform(build_chat, parse_response, new_stream),
            "llm/v1/completions": RouteTransform(build_completion, parse_response, new_stream),
        },
        parse_error,
    ),
)
