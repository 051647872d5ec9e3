"""Stream framing and the OpenAI chunk writer, at every split of the input."""

from __future__ import annotations

import orjson
from conftest import fixture_bytes
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionChunk
from streams import splits

from transforms.chunks import ChunkWriter, StreamTranslatorBase
from transforms.config import ModelOptions
from transforms.stream import DONE, OpenAIStream, SSEParser
from transforms.types import CallContext, Usage

STREAM = fixture_bytes("openai/chat/stream.sse")


def ctx(route_type: str = "llm/v1/chat", include_usage: bool = False) -> CallContext:
    return CallContext(
        "r", route_type, "p", "model-x", ModelOptions(), True, "req1", 1700000000, (), include_usage
    )


def parse_all(pieces: list[bytes]) -> list[tuple[str | None, str]]:
    parser = SSEParser()
    events = [e for p in pieces for e in parser.feed(p)] + parser.finish()
    return [(e.event, e.data) for e in events]


def test_sse_parser_fields_comments_and_crlf():
    raw = b': keep-alive\r\nevent: message_start\r\ndata: {"a":1}\r\n\r\ndata: x\ndata: y\n\ndata: [DONE]\n\n'
    assert parse_all([raw]) == [("message_start", '{"a":1}'), (None, "x\ny"), (None, "[DONE]")]


def test_sse_parser_at_every_byte_split():
    whole = parse_all([STREAM])
    assert len(whole) == 10
    for cut in range(1, len(STREAM)):
        assert parse_all([STREAM[:cut], STREAM[cut:]]) == whole


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=40))
@settings(max_examples=200, deadline=None)
def test_sse_parser_random_splits(cuts):
    assert parse_all(splits(STREAM, cuts)) == parse_all([STREAM])


def run_stream(translator, pieces: list[bytes]) -> bytes:
    out = [frame for piece in pieces for frame in translator.feed(piece)]
    return b"".join(out + translator.finish())


def test_openai_passthrough_keeps_bytes_and_reads_usage():
    translator = OpenAIStream()
    assert run_stream(translator, [STREAM[:100], STREAM[100:]]) == STREAM
    assert translator.usage == Usage(25, 7, 32)
    assert translator.response_model == "gpt-4o-mini-2024-07-18"
    assert translator.text == "1 + 1 = 2."


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=30))
@settings(max_examples=100, deadline=None)
def test_hidden_usage_chunk_at_any_split(cuts):
    translator = OpenAIStream(hide_usage_chunk=True)
    out = run_stream(translator, splits(STREAM, cuts))
    events = parse_all([out])
    assert events[-1] == (None, "[DONE]")
    chunks = [orjson.loads(data) for _, data in events[:-1]]
    assert len(chunks) == 8 and all(c["choices"] for c in chunks)
    assert translator.usage.total_tokens == 32


def test_stream_without_done_ends_with_an_error_frame():
    cut = STREAM.index(b"data: [DONE]")
    translator = OpenAIStream(hide_usage_chunk=True)
    events = parse_all([run_stream(translator, [STREAM[:cut]])])
    assert events[-1] == (None, "[DONE]")
    assert orjson.loads(events[-2][1])["error"]["code"] == "stream_error"


def test_chunk_writer_shapes_validate_with_the_openai_sdk():
    out = ChunkWriter(ctx(include_usage=True))
    frames = [
        *out.content("Hel"),
        *out.content("lo"),
        *out.tool_call_start("a", "call_1", "get_weather"),
        *out.tool_call_arguments("a", '{"city":'),
        *out.tool_call_start("b", "call_2", "get_time"),
        *out.tool_call_arguments("a", '"Paris"}'),
        *out.finish("tool_calls"),
        *out.usage(Usage(10, 5, 15, cached_tokens=4)),
    ]
    chunks = [ChatCompletionChunk.model_validate(orjson.loads(f[6:])) for f in frames]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.role) == 1
    assert {c.id for c in chunks} == {"chatcmpl-req1"} and {c.model for c in chunks} == {"model-x"}
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert [(tc.index, tc.id, tc.function.name, tc.function.arguments) for tc in calls] == [
        (0, "call_1", "get_weather", ""),
        (0, None, None, '{"city":'),
        (1, "call_2", "get_time", ""),
        (0, None, None, '"Paris"}'),
    ]
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens_details.cached_tokens == 4


def test_no_usage_chunk_unless_asked():
    assert ChunkWriter(ctx(include_usage=False)).usage(Usage(1, 1, 2)) == []


def test_completions_chunks_are_text_completions():
    out = ChunkWriter(ctx("llm/v1/completions"))
    (frame,) = out.content("hi")
    chunk = orjson.loads(frame[6:])
    assert chunk["object"] == "text_completion" and chunk["id"] == "cmpl-req1"
    assert chunk["choices"] == [{"index": 0, "text": "hi", "logprobs": None, "finish_reason": None}]


class _Echo(StreamTranslatorBase):
    provider = "echo"
    framing = "ndjson"

    def on_event(self, event):
        if event.get("done"):
            self.usage = Usage(1, 2, 3)
            return self.end("stop")
        if "error" in event:
            return self.fail(event["error"])
        return self.content(event["text"])


def test_translator_base_end_fail_and_truncation():
    t = _Echo(ctx(include_usage=True))
    body = run_stream(t, [b'{"text": "a"}\n{"te', b'xt": "b"}\n{"done": true}\n'])
    events = parse_all([body])
    assert events[-1] == (None, "[DONE]")
    assert orjson.loads(events[-2][1])["usage"]["total_tokens"] == 3
    assert t.text == "ab" and t.finish_reason == "stop"

    failing = _Echo(ctx())
    events = parse_all([run_stream(failing, [b'{"text": "a"}\n{"error": "overloaded"}\n{"text": "late"}\n'])])
    assert orjson.loads(events[-2][1])["error"]["message"] == "overloaded"
    assert all("late" not in data for _, data in events)

    cut = _Echo(ctx())
    events = parse_all([run_stream(cut, [b'{"text": "a"}\n'])])
    assert "ended before the response was complete" in orjson.loads(events[-2][1])["error"]["message"]
    assert DONE.endswith(b"\n\n")


def test_stream_text_is_counted_but_only_its_start_is_kept():
    from transforms.usage import TextTally

    tally = TextTally()
    for _ in range(100_000):
        tally.add("0123456789")
    assert tally.chars == 1_000_000
    assert len(str(tally)) == TextTally.KEPT  # memory bounded however long the stream runs
    t = _Echo(ctx())
    t.feed(b'{"text": "' + b"x" * 200_000 + b'"}\n')
    assert t.text_chars == 200_000 and len(t.text) == TextTally.KEPT


def test_sse_parser_fields_with_and_without_the_space_and_more_colons():
    raw = b"event:a:b\ndata:x\ndata: y: z\n\nevent: c: d\ndata: 1\ndata:2\n\ndata: \n\nid: 7\nretry: 5\n\n"
    assert parse_all([raw]) == [("a:b", "x\ny: z"), ("c: d", "1\n2"), (None, "")]


def test_content_chunks_are_the_bytes_of_the_whole_chunk_written_out():
    out = ChunkWriter(ctx())

    def written_out(writer: ChunkWriter, text: str) -> bytes:
        return writer._delta({"content": text})

    first = out.content("Hi")  # the role chunk comes first
    assert first == [out._delta({"role": "assistant", "content": ""}), written_out(out, "Hi")]
    for text in ("Hello", 'quote " and \\ and \n', "é ✓ \ue000", "x" * 5000):
        assert out.content(text) == [written_out(out, text)]
    out.id, out.model = "msg_other", "claude-other"  # a provider's own id and model, once known
    assert out.content("again") == [written_out(out, "again")]
    assert b'"id":"msg_other"' in out.content("again")[0]
    out.created = 1700000123  # a provider's own time (Hugging Face, Ollama)
    assert out.content("later") == [written_out(out, "later")]
    assert b'"created":1700000123' in out.content("later")[0]
    out.id = "msg_\ue000ai-proxy content\ue000"  # the frame's own mark: written out in full
    assert out.content("safe") == [written_out(out, "safe")]
    assert orjson.loads(out.content("safe")[0][len(b"data: ") :])["id"] == out.id
