"""Helpers shared by the stream tests: drive a translator, split input anywhere, read its output."""

from __future__ import annotations

import base64
import importlib.util
import itertools
from pathlib import Path
from typing import Any

import orjson
from openai.types.chat import ChatCompletionChunk

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def drive(translator: Any, pieces: list[bytes]) -> bytes:
    """Everything a translator writes for these network chunks, then for the end of the stream."""
    out = [frame for piece in pieces for frame in translator.feed(piece)]
    return b"".join(out + translator.finish())


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (out-of-range and repeated cuts ignored)."""
    cuts = sorted({c for c in cuts if 0 < c < len(data)})
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def frames(raw: bytes) -> list[Any]:
    """Our SSE output as its JSON payloads ('[DONE]' kept as is); every frame must be exactly
    ``data: <payload>\\n\\n``."""
    assert raw.endswith(b"\n\n"), raw[-40:]
    out: list[Any] = []
    for block in raw[:-2].split(b"\n\n"):
        assert block.startswith(b"data: ") and b"\n" not in block, block[:80]
        data = block[6:]
        out.append("[DONE]" if data == b"[DONE]" else orjson.loads(data))
    return out


def deltas(out: list[Any]) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in out if isinstance(c, dict) and c.get("choices")]


def assert_chunks_valid(out: list[Any]) -> None:
    """Ends with [DONE]; every chunk but an error frame parses as OpenAI's ChatCompletionChunk with
    no field lost."""
    assert out[-1] == "[DONE]"
    for chunk in out[:-1]:
        if "error" in chunk:
            continue
        assert ChatCompletionChunk.model_validate(chunk).model_dump(exclude_unset=True) == chunk


def _load_make_streams() -> Any:
    spec = importlib.util.spec_from_file_location("make_streams", FIXTURES / "bedrock" / "make_streams.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_streams = _load_make_streams()  # the Bedrock event-stream encoder of the fixtures


def bedrock_invoke_stream(chunks: list[dict[str, Any]]) -> bytes:
    """An InvokeModelWithResponseStream answer: each model chunk base64-encoded in a ``chunk`` event."""
    headers = {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}
    return b"".join(
        make_streams.encode_message(
            headers, orjson.dumps({"bytes": base64.b64encode(orjson.dumps(c)).decode()})
        )
        for c in chunks
    )


def finishing_choices(out: list[Any]) -> list[dict[str, Any]]:
    """The choices of the chunks that carry a finish reason."""
    return [
        c["choices"][0]
        for c in out
        if isinstance(c, dict) and c.get("choices") and c["choices"][0].get("finish_reason")
    ]


def choices(out: list[Any]) -> list[dict[str, Any]]:
    """Every chunk's first choice."""
    return [c["choices"][0] for c in out if isinstance(c, dict) and c.get("choices")]
