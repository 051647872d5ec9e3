"""Usage of native provider answers: one reader per (wire format, operation).

For traffic that is passed through untouched (``llm_format`` routes and recognised traffic): the
body is read for statistics only. Bedrock ``invoke`` also reports its counts in response headers,
so readers get the headers too. Pure: data in, data out.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from transforms.image_fields import usage_of as image_usage
from transforms.providers import anthropic, bedrock, cohere, gemini, ollama
from transforms.recognize import UNMETERED
from transforms.stream import SSEParser
from transforms.types import Usage
from transforms.usage import usage_from_openai

# The operation of a forwarded images call (openai, azure): its stream is read for usage.
IMAGES = "images"

Headers = Mapping[str, str]  # lower-case names
MAX_LINE = 1 << 22  # an NDJSON line kept while it arrives: memory stays bounded on a hostile stream
Reader = Callable[[Any, Headers], Usage | None]


def _int(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _usage(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> Usage:
    return Usage(prompt, completion, prompt + completion, cached_tokens=cached, reasoning_tokens=reasoning)


def _openai(body: Any, headers: Headers) -> Usage | None:
    return usage_from_openai(body)


def responses_usage(usage: Any) -> Usage | None:
    """The Responses API's ``usage``: input/output tokens with cached and reasoning details."""
    if not isinstance(usage, dict):
        return None
    cached = usage.get("input_tokens_details")
    reasoning = usage.get("output_tokens_details")
    return _usage(
        _int(usage.get("input_tokens")),
        _int(usage.get("output_tokens")),
        _int(cached.get("cached_tokens")) if isinstance(cached, dict) else 0,
        _int(reasoning.get("reasoning_tokens")) if isinstance(reasoning, dict) else 0,
    )


def _responses(body: Any, headers: Headers) -> Usage | None:
    return responses_usage(body.get("usage")) if isinstance(body, dict) else None


def audio_usage(usage: Any) -> Usage | None:
    """The audio APIs' token ``usage`` (transcriptions of gpt-4o-transcribe, speech events); a
    ``duration`` usage (whisper-1: seconds of audio) carries no tokens and gives None."""
    if not isinstance(usage, dict) or usage.get("type", "tokens") != "tokens" or "input_tokens" not in usage:
        return None
    return _usage(_int(usage.get("input_tokens")), _int(usage.get("output_tokens")))


def _audio(body: Any, headers: Headers) -> Usage | None:
    return audio_usage(body.get("usage")) if isinstance(body, dict) else None


def _anthropic(body: Any, headers: Headers) -> Usage | None:
    return anthropic.usage_of(body)


def _gemini(body: Any, headers: Headers) -> Usage | None:
    if isinstance(body, list):  # streamGenerateContent without alt=sse, read whole: usage is cumulative
        found = [item for item in body if isinstance(item, dict) and "usageMetadata" in item]
        body = found[-1] if found else None
    return gemini.native_usage(body)


def _gemini_embed(body: Any, headers: Headers) -> Usage | None:
    if not isinstance(body, dict):
        return None
    meta = body.get("usageMetadata")
    if isinstance(meta, dict):
        return _usage(_int(meta.get("promptTokenCount")), 0)
    if isinstance(body.get("predictions"), list):  # Vertex predict: per-instance statistics
        total = 0
        for prediction in body["predictions"]:
            embeddings = prediction.get("embeddings") if isinstance(prediction, dict) else None
            stats = embeddings.get("statistics") if isinstance(embeddings, dict) else None
            total += _int(stats.get("token_count")) if isinstance(stats, dict) else 0
        return _usage(total, 0)
    return None


def bedrock_header_usage(headers: Headers) -> Usage | None:
    prompt = headers.get("x-amzn-bedrock-input-token-count")
    completion = headers.get("x-amzn-bedrock-output-token-count")
    if prompt is None and completion is None:
        return None
    try:
        return _usage(int(prompt or 0), int(completion or 0))
    except ValueError:
        return None


def invocation_metrics(body: Any) -> Usage | None:
    metrics = body.get("amazon-bedrock-invocationMetrics") if isinstance(body, dict) else None
    if not isinstance(metrics, dict):
        return None
    return _usage(_int(metrics.get("inputTokenCount")), _int(metrics.get("outputTokenCount")))


def invoke_body_usage(body: Any) -> Usage | None:
    """InvokeModel bodies per model family: Anthropic, Nova, Titan, Llama, Cohere embed."""
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("usage"), dict):
        usage = body["usage"]
        if "inputTokens" in usage or "outputTokens" in usage:  # Amazon Nova
            return bedrock.usage_from_tokens(usage)
        return anthropic.usage_of(body)
    if "prompt_token_count" in body or "generation_token_count" in body:  # Meta Llama
        return _usage(_int(body.get("prompt_token_count")), _int(body.get("generation_token_count")))
    if "inputTextTokenCount" in body:  # Amazon Titan text and embeddings
        results = body.get("results")
        results = results if isinstance(results, list) else []
        out = sum(_int(r.get("tokenCount")) for r in results if isinstance(r, dict))
        return _usage(_int(body["inputTextTokenCount"]), out)
    return invocation_metrics(body)


def _bedrock_invoke(body: Any, headers: Headers) -> Usage | None:
    return bedrock_header_usage(headers) or invoke_body_usage(body)


def _bedrock_converse(body: Any, headers: Headers) -> Usage | None:
    return bedrock.usage_of(body)


def _cohere_chat(body: Any, headers: Headers) -> Usage | None:
    # v2 carries ``usage``, v1 ``meta``: billed units first, as Kong and the invoice count.
    return cohere.body_usage(body)


def _cohere_embed(body: Any, headers: Headers) -> Usage | None:
    return cohere.body_usage(body, prompt_only=True)


def _cohere_rerank(body: Any, headers: Headers) -> Usage | None:
    meta = body.get("meta") if isinstance(body, dict) else None
    billed = meta.get("billed_units") if isinstance(meta, dict) else None
    if not isinstance(billed, dict):
        return None
    return Usage(search_units=_int(billed.get("search_units")))


def _tgi_generate(body: Any, headers: Headers) -> Usage | None:
    if isinstance(body, list) and body:  # the Inference API answers a list of generations
        body = body[0]
    details = body.get("details") if isinstance(body, dict) else None
    if not isinstance(details, dict):
        return None
    prefill = details.get("prefill")
    return _usage(len(prefill) if isinstance(prefill, list) else 0, _int(details.get("generated_tokens")))


def _ollama(body: Any, headers: Headers) -> Usage | None:
    return ollama.usage_of(body)


def _ollama_embed(body: Any, headers: Headers) -> Usage | None:
    # /api/embed reports only the prompt: there is no eval_count to wait for.
    prompt = body.get("prompt_eval_count") if isinstance(body, dict) else None
    return _usage(prompt, 0) if isinstance(prompt, int) and not isinstance(prompt, bool) else None


def _unmetered(body: Any, headers: Headers) -> Usage | None:
    return Usage()


_OPENAI_READERS: Mapping[str, Reader] = {
    "chat": _openai,
    "completions": _openai,
    "embeddings": _openai,
    "responses": _responses,
    "transcription": _audio,
    "speech": _audio,
}
READERS: Mapping[tuple[str, str], Reader] = {
    **{(fmt, op): reader for fmt in ("openai", "azure", "mistral") for op, reader in _OPENAI_READERS.items()},
    ("huggingface", "chat"): _openai,
    ("huggingface", "completions"): _openai,
    ("huggingface", "embeddings"): _openai,
    ("huggingface", "generate"): _tgi_generate,
    ("anthropic", "messages"): _anthropic,
    ("gemini", "generateContent"): _gemini,
    ("gemini", "streamGenerateContent"): _gemini,
    ("gemini", "embedContent"): _gemini_embed,
    ("gemini", "batchEmbedContents"): _gemini_embed,
    ("gemini", "predict"): _gemini_embed,
    ("bedrock", "converse"): _bedrock_converse,
    ("bedrock", "converse-stream"): _bedrock_converse,
    ("bedrock", "invoke"): _bedrock_invoke,
    ("bedrock", "invoke-with-response-stream"): _bedrock_invoke,
    ("cohere", "chat"): _cohere_chat,
    ("cohere", "chat_v1"): _cohere_chat,
    ("cohere", "embed"): _cohere_embed,
    ("cohere", "rerank"): _cohere_rerank,
    ("ollama", "chat"): _ollama,
    ("ollama", "generate"): _ollama,
    ("ollama", "embed"): _ollama_embed,
}


def read_usage(fmt: str, operation: str, body: Any, headers: Headers) -> Usage | None:
    """Usage of a complete native answer; zero for operations billed without usage in the answer."""
    if operation == UNMETERED:
        return Usage()
    reader = READERS.get((fmt, operation))
    return reader(body, headers) if reader is not None else None


def response_model(body: Any) -> str | None:
    if isinstance(body, list) and body:
        body = body[-1]
    if not isinstance(body, dict):
        return None
    found = body.get("model") or body.get("modelVersion")
    return found if isinstance(found, str) and found else None


# --- streams the provider translators do not read ---------------------------------------------------


class UsageReader:
    """Reads a native stream on the side for its usage and model; sends nothing itself."""

    def __init__(self, framing: str, on_event: Callable[[UsageReader, Any], None]) -> None:
        self._framing = framing  # "sse", "ndjson" or "eventstream"
        self._on_event = on_event
        self._sse = SSEParser()
        self._partial = b""
        self._frames = bedrock.EventStreamDecoder() if framing == "eventstream" else None
        self.usage: Usage | None = None
        self.response_model: str | None = None
        self.text_chars = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        for event in self._split(chunk):
            self._on_event(self, event)
        return []

    def finish(self) -> list[bytes]:
        if self._framing == "sse":
            for event in self._sse.finish():
                if event.data and event.data != "[DONE]":
                    self._on_event(self, orjson.loads(event.data))
        elif self._framing == "ndjson" and self._partial.strip():
            self._on_event(self, orjson.loads(self._partial))
        return []

    def _split(self, chunk: bytes) -> list[Any]:
        if self._frames is not None:
            out = []
            for frame in self._frames.feed(chunk):
                if isinstance(frame, bedrock.CorruptFrame):
                    raise ValueError(f"corrupt event stream: {frame.reason}")
                if frame.headers.get(":event-type") == "chunk" and frame.payload:
                    wrapper = orjson.loads(frame.payload)
                    out.append(orjson.loads(base64.b64decode(wrapper.get("bytes") or b"")))
            return out
        if self._framing == "ndjson":
            lines = (self._partial + chunk).split(b"\n")
            self._partial = lines.pop()
            if len(self._partial) > MAX_LINE:
                raise ValueError(f"a stream line longer than {MAX_LINE} bytes")
            return [orjson.loads(line) for line in lines if line.strip()]
        return [orjson.loads(e.data) for e in self._sse.feed(chunk) if e.data and e.data != "[DONE]"]


def _on_responses_event(reader: UsageReader, event: Any) -> None:
    response = event.get("response") if isinstance(event, dict) else None
    if not isinstance(response, dict):
        return
    reader.response_model = response_model(response) or reader.response_model
    usage = responses_usage(response.get("usage"))
    if usage is not None:
        reader.usage = usage


def _on_image_event(reader: UsageReader, event: Any) -> None:
    """A streamed images answer: the ``image_generation.completed`` / ``image_edit.completed``
    event carries the usage (partial images carry none)."""
    if isinstance(event, dict) and str(event.get("type", "")).endswith(".completed"):
        reader.usage = image_usage(event) or reader.usage


_AUDIO_OPERATIONS = ("transcription", "speech")


def _on_audio_event(reader: UsageReader, event: Any) -> None:
    # transcript.text.done and speech.audio.done carry the usage of a streamed audio call.
    if isinstance(event, dict) and str(event.get("type", "")).endswith(".done"):
        usage = audio_usage(event.get("usage"))
        if usage is not None:
            reader.usage = usage


def _on_invoke_chunk(reader: UsageReader, event: Any) -> None:
    if not isinstance(event, dict):
        return
    usage = invocation_metrics(event)  # the last chunk carries the invocation metrics
    if usage is not None:
        reader.usage = usage
        return
    message = event.get("message")  # Anthropic's message_start names the model
    if isinstance(message, dict) and isinstance(message.get("model"), str):
        reader.response_model = message["model"]


def _on_cohere_v1_event(reader: UsageReader, event: Any) -> None:
    if isinstance(event, dict) and event.get("event_type") == "stream-end":
        response = event.get("response")
        usage = cohere.body_usage(response)
        if usage is not None:
            reader.usage = usage


def _on_tgi_event(reader: UsageReader, event: Any) -> None:
    if isinstance(event, dict) and isinstance(event.get("details"), dict):
        reader.usage = _tgi_generate(event, {})


STREAM_READERS: Mapping[tuple[str, str], tuple[str, Callable[[UsageReader, Any], None]]] = {
    **{(fmt, "responses"): ("sse", _on_responses_event) for fmt in ("openai", "azure", "mistral")},
    **{(fmt, IMAGES): ("sse", _on_image_event) for fmt in ("openai", "azure")},
    **{(fmt, op): ("sse", _on_audio_event) for fmt in ("openai", "azure") for op in _AUDIO_OPERATIONS},
    ("bedrock", "invoke-with-response-stream"): ("eventstream", _on_invoke_chunk),
    ("cohere", "chat_v1"): ("ndjson", _on_cohere_v1_event),
    ("huggingface", "generate"): ("sse", _on_tgi_event),
}


def usage_reader(fmt: str, operation: str) -> UsageReader | None:
    """A stream reader for operations the provider's chat translator does not read."""
    found = STREAM_READERS.get((fmt, operation))
    return UsageReader(*found) if found is not None else None


class DecodedStream:
    """Feeds a reader the decompressed bytes of a gzip or deflate stream (clients of inspected traffic
    may ask for compression); at most ``PIECE`` bytes are inflated at a time, so memory stays bounded
    however far the data expands."""

    PIECE = 1 << 16

    def __init__(self, reader: Any, encoding: str) -> None:
        self._reader = reader
        self._inflate = zlib.decompressobj(wbits=47 if encoding in ("gzip", "x-gzip") else 15)

    def __getattr__(self, name: str) -> Any:
        # usage, response_model, error, text_chars, assembled: whatever the wrapped reader keeps.
        return getattr(self._reader, name)

    def feed(self, chunk: bytes) -> list[bytes]:
        data = self._inflate.decompress(chunk, self.PIECE)
        while data:
            self._reader.feed(data)
            tail = self._inflate.unconsumed_tail
            data = self._inflate.decompress(tail, self.PIECE) if tail else b""
        return []

    def finish(self) -> list[bytes]:
        return self._reader.finish()


def decoded(reader: Any, content_encoding: str) -> Any:
    """``reader`` reading the plain bytes of a stream sent with this Content-Encoding; ValueError for
    encodings it cannot read (br, zstd)."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return reader
    if encoding in ("gzip", "x-gzip", "deflate"):
        return DecodedStream(reader, encoding)
    raise ValueError(f"a {encoding}-encoded stream is not read")
