"""Native usage readers: one per (wire format, operation), whole answers and streams, with the SDKs'
own types as oracles of the wire shapes where the SDK has them."""

from __future__ import annotations

import zlib

import cohere
import orjson
import pytest
from conftest import fixture_bytes, fixture_json
from openai.types.responses import Response
from streams import bedrock_invoke_stream

from transforms.config import Route
from transforms.native import decoded, read_usage, response_model, usage_reader
from transforms.pipeline import Origin, prepare, prepare_inspected, translate_response
from transforms.recognize import UNMETERED, Recognized
from transforms.types import Inbound, Usage

RESPONSES_BODY = fixture_json("openai/responses/response.json")


def test_openai_responses_usage_with_cached_and_reasoning_tokens():
    Response.model_validate(RESPONSES_BODY)  # the SDK accepts the shape read here
    assert read_usage("openai", "responses", RESPONSES_BODY, {}) == Usage(36, 87, 123, 12, 64)
    assert response_model(RESPONSES_BODY) == "gpt-5-mini-2025-08-07"


def test_openai_responses_stream_reads_the_completed_event():
    reader = usage_reader("openai", "responses")
    assert reader is not None
    created = {
        "type": "response.created",
        "response": {**RESPONSES_BODY, "usage": None, "status": "in_progress"},
    }
    delta = {"type": "response.output_text.delta", "delta": "Hi", "item_id": "m", "output_index": 0}
    done = {"type": "response.completed", "response": RESPONSES_BODY}
    raw = b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n"
        for e in (created, delta, done)
    )
    for i in range(0, len(raw), 7):  # split anywhere
        assert reader.feed(raw[i : i + 7]) == []
    reader.finish()
    assert reader.usage == Usage(36, 87, 123, 12, 64)
    assert reader.response_model == "gpt-5-mini-2025-08-07"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # Anthropic on Bedrock
        (
            {"usage": {"input_tokens": 9, "output_tokens": 4, "cache_read_input_tokens": 2}},
            Usage(11, 4, 15, 2),
        ),
        # Amazon Nova
        ({"output": {}, "usage": {"inputTokens": 5, "outputTokens": 6, "totalTokens": 11}}, Usage(5, 6, 11)),
        # Meta Llama
        ({"generation": "2", "prompt_token_count": 12, "generation_token_count": 3}, Usage(12, 3, 15)),
        # Amazon Titan text and embeddings
        ({"inputTextTokenCount": 4, "results": [{"tokenCount": 8, "outputText": "x"}]}, Usage(4, 8, 12)),
        ({"embedding": [0.1], "inputTextTokenCount": 6}, Usage(6, 0, 6)),
        # Mistral: no usage in the body
        ({"outputs": [{"text": "2"}]}, None),
    ],
)
def test_bedrock_invoke_body_per_model_family(body, expected):
    assert read_usage("bedrock", "invoke", body, {}) == expected


def test_bedrock_invoke_headers_win_over_the_body():
    headers = {"x-amzn-bedrock-input-token-count": "21", "x-amzn-bedrock-output-token-count": "5"}
    body = {"prompt_token_count": 1, "generation_token_count": 1}
    assert read_usage("bedrock", "invoke", body, headers) == Usage(21, 5, 26)
    assert read_usage("bedrock", "invoke", None, {"x-amzn-bedrock-input-token-count": "x"}) is None


def test_bedrock_invoke_stream_reads_the_invocation_metrics():
    raw = bedrock_invoke_stream(fixture_json("bedrock/invoke_stream/chunks.json"))
    reader = usage_reader("bedrock", "invoke-with-response-stream")
    assert reader is not None
    for i in range(0, len(raw), 11):
        reader.feed(raw[i : i + 11])
    reader.finish()
    assert reader.usage == Usage(9, 4, 13)
    assert reader.response_model == "claude-3-haiku-20240307"


def test_corrupt_invoke_stream_raises_for_the_glue_to_record():
    reader = usage_reader("bedrock", "invoke-with-response-stream")
    assert reader is not None
    with pytest.raises(ValueError, match="corrupt"):
        reader.feed(b"\x00\x00\x00\x10" + b"\xff" * 20)


def test_cohere_v1_chat_embed_and_rerank():
    chat_v1 = {
        "text": "2",
        "meta": {
            "billed_units": {"input_tokens": 3, "output_tokens": 1},
            "tokens": {"input_tokens": 70, "output_tokens": 1},
        },
    }
    cohere.NonStreamedChatResponse.model_validate(chat_v1)
    # Billed units when present (what the bill and Kong count), not the raw tokens.
    assert read_usage("cohere", "chat_v1", chat_v1, {}) == Usage(3, 1, 4)
    embed = {"id": "e", "embeddings": [[0.1]], "texts": ["a"], "meta": {"billed_units": {"input_tokens": 2}}}
    assert read_usage("cohere", "embed", embed, {}) == Usage(2, 0, 2)
    rerank = {
        "id": "r",
        "results": [{"index": 0, "relevance_score": 0.5}],
        "meta": {"billed_units": {"search_units": 2}},
    }
    cohere.v2.V2RerankResponse.model_validate(rerank)
    assert read_usage("cohere", "rerank", rerank, {}) == Usage(search_units=2)


def test_cohere_v1_chat_stream_reads_stream_end():
    events = [
        {"is_finished": False, "event_type": "stream-start", "generation_id": "g"},
        {"is_finished": False, "event_type": "text-generation", "text": "2"},
        {
            "is_finished": True,
            "event_type": "stream-end",
            "finish_reason": "COMPLETE",
            "response": {"text": "2", "meta": {"tokens": {"input_tokens": 8, "output_tokens": 1}}},
        },
    ]
    raw = b"\n".join(orjson.dumps(e) for e in events)  # no newline after the last object
    reader = usage_reader("cohere", "chat_v1")
    assert reader is not None
    reader.feed(raw[:20])
    reader.feed(raw[20:])
    reader.finish()
    assert reader.usage == Usage(8, 1, 9)


def test_gemini_embeddings_predict_and_json_array_streams():
    assert read_usage("gemini", "embedContent", {"embedding": {"values": [0.1]}}, {}) is None
    body = {"embeddings": [{"values": [0.1]}], "usageMetadata": {"promptTokenCount": 7}}
    assert read_usage("gemini", "batchEmbedContents", body, {}) == Usage(7, 0, 7)
    predict = orjson.loads(fixture_bytes("gemini/vertex_embed/response.json"))
    tokens = sum(p["embeddings"]["statistics"]["token_count"] for p in predict["predictions"])
    assert read_usage("gemini", "predict", predict, {}) == Usage(int(tokens), 0, int(tokens))
    array = [
        {"candidates": [], "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 1}},
        {
            "candidates": [],
            "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 6, "thoughtsTokenCount": 2},
        },
        {"candidates": [], "modelVersion": "gemini-2.5-pro"},
    ]
    assert read_usage("gemini", "streamGenerateContent", array, {}) == Usage(4, 8, 12, reasoning_tokens=2)
    assert response_model(array) == "gemini-2.5-pro"


def test_tgi_generate_and_generate_stream():
    body = {
        "generated_text": "2",
        "details": {"finish_reason": "eos_token", "generated_tokens": 3, "prefill": [{"id": 1}, {"id": 2}]},
    }
    assert read_usage("huggingface", "generate", body, {}) == Usage(2, 3, 5)
    assert read_usage("huggingface", "generate", [body], {}) == Usage(2, 3, 5)
    reader = usage_reader("huggingface", "generate")
    assert reader is not None
    reader.feed(b'data:{"token":{"id":1,"text":"2"},"details":null}\n\n')
    reader.feed(
        b'data:{"token":{"id":2,"text":""},"generated_text":"2","details":{"generated_tokens":2}}\n\n'
    )
    reader.finish()
    assert reader.usage == Usage(0, 2, 2)


def test_ollama_generate_and_embed():
    generate = orjson.loads(fixture_bytes("ollama/generate/response.json"))
    expected = Usage(
        generate["prompt_eval_count"],
        generate["eval_count"],
        generate["prompt_eval_count"] + generate["eval_count"],
    )
    assert read_usage("ollama", "generate", generate, {}) == expected
    assert read_usage("ollama", "embed", {"embeddings": [[0.1]], "prompt_eval_count": 5}, {}) == Usage(
        5, 0, 5
    )


def test_unmetered_operations_record_zero_and_unknown_ones_nothing():
    assert read_usage("anthropic", UNMETERED, {"input_tokens": 99}, {}) == Usage()
    assert read_usage("anthropic", "no-such-operation", {}, {}) is None


def _bedrock_native_route() -> Route:
    return Route.model_validate(
        {
            "name": "bedrock-native",
            "match": {"path": "/bedrock/*"},
            "route_type": "llm/v1/chat",
            "llm_format": "bedrock",
            "auth": {"aws_access_key_id": "AKIAROUTE", "aws_secret_access_key": "route-secret"},
            "model": {"provider": "bedrock", "options": {"bedrock": {"aws_region": "us-east-1"}}},
        }
    )


def test_llm_format_routes_read_usage_per_operation_too():
    inbound = Inbound(
        "POST", "", "/bedrock/model/meta.llama3-8b-instruct-v1%3A0/invoke", [], {}, b'{"prompt": "hi"}'
    )
    prep = prepare(_bedrock_native_route(), inbound, request_id="1", now=1_700_000_000)
    assert prep.native == Recognized("bedrock", "invoke", "meta.llama3-8b-instruct-v1:0")
    assert prep.request_model == "meta.llama3-8b-instruct-v1:0"
    body = b'{"generation": "hello", "prompt_token_count": 3, "generation_token_count": 2}'
    answer = translate_response(
        prep, 200, body, {"x-amzn-bedrock-input-token-count": "3", "x-amzn-bedrock-output-token-count": "2"}
    )
    assert answer.body == body and not answer.translated
    assert answer.usage == Usage(3, 2, 5)
    broken = translate_response(prep, 200, b"<html>", {})
    assert (broken.body, broken.usage, broken.error) == (b"<html>", None, "the provider's answer is not JSON")


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_streams_are_read_in_bounded_pieces(encoding):
    events = [{"type": "response.completed", "response": RESPONSES_BODY}]
    padding = b": " + b"x" * 300_000 + b"\n\n"  # a comment that inflates far beyond one piece
    plain = padding + b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events)
    packer = zlib.compressobj(wbits=31 if encoding == "gzip" else 15)
    packed = packer.compress(plain) + packer.flush()
    inner = usage_reader("openai", "responses")
    reader = decoded(inner, encoding.upper())
    for i in range(0, len(packed), 50):
        assert reader.feed(packed[i : i + 50]) == []
    reader.finish()
    assert reader.usage == Usage(36, 87, 123, 12, 64)
    assert decoded(inner, "identity") is inner
    with pytest.raises(ValueError, match="br-encoded"):
        decoded(inner, "br")


def test_unmetered_calls_need_no_json_either_way():
    found = Recognized("openai", UNMETERED)
    origin = Origin("https", "api.openai.com", 443)
    upload = Inbound(
        "POST", "api.openai.com", "/v1/files", [], {"authorization": "Bearer sk-up-1234"}, b"--b\r\n"
    )
    prep = prepare_inspected(found, origin, upload, 1_700_000_000)
    assert prep.error is None and prep.inspected and prep.upstream.url == "https://api.openai.com/v1/files"
    assert prep.secrets == ("Bearer sk-up-1234", "sk-up-1234")
    answer = translate_response(prep, 200, b"not json", {})
    assert (answer.usage, answer.error, answer.body) == (Usage(), None, b"not json")
    chat = prepare_inspected(
        Recognized("openai", "chat"), origin, Inbound("POST", "", "/v1/chat/completions", [], {}, b"{"), 0
    )
    assert chat.error == "the request body is not JSON"
    assert chat.request_model == "UNSPECIFIED"


def test_an_endless_ndjson_line_is_refused_not_kept():
    reader = usage_reader("cohere", "chat_v1")
    assert reader is not None
    with pytest.raises(ValueError, match="longer than"):
        for _ in range(100):
            reader.feed(b"x" * (1 << 20))
