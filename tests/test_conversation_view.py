"""The LLM Conversation content view: readable requests, responses and streams."""

from __future__ import annotations

import orjson
import pytest
from conftest import fixture_bytes
from mitmproxy import contentviews, http
from mitmproxy.test import taddons, tflow, tutils

from addon.conversation_view import LLMConversationContentview
from transforms.conversation import render_body as render
from transforms.conversation import render_stream


def test_openai_request_and_response():
    assert render(orjson.loads(fixture_bytes("openai/chat/request.json"))) == [
        "model: gpt-4o-mini, max_tokens: 64, temperature: 0.2",
        "system: You are a terse assistant.",
        "user: What is 1 + 1?",
    ]
    lines = render(orjson.loads(fixture_bytes("openai/chat/response.json")))
    assert lines[0] == "model: gpt-4o-mini-2024-07-18"
    assert lines[1] == "assistant: 1 + 1 = 2.  [finish: stop]"
    assert lines[2].startswith('usage: {"prompt_tokens":25,"completion_tokens":12,"total_tokens":37')


def test_anthropic_and_tool_calls():
    body = {
        "model": "claude",
        "system": "be brief",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "weather?"}, {"type": "image", "source": {}}],
            },
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "name": "get_weather", "input": {"city": "Paris"}}],
            },
        ],
    }
    assert render(body) == [
        "model: claude",
        "system: be brief",
        "user: weather? [image]",
        'assistant: [call get_weather({"city":"Paris"})]',
    ]


def test_stream_is_assembled():
    lines = render_stream(fixture_bytes("openai/chat/stream.sse"))
    assert lines[0] == "assistant (streamed, 9 events): 1 + 1 = 2."
    assert lines[1] == "finish: stop"
    assert lines[2].startswith('usage: {"prompt_tokens":25')


def test_view_is_chosen_for_llm_bodies_only():
    view = LLMConversationContentview()
    meta = contentviews.Metadata(content_type="application/json")
    assert view.render_priority(fixture_bytes("openai/chat/response.json"), meta) == 2
    assert view.render_priority(b'{"hello": "world"}', meta) == -1
    assert view.render_priority(b"<html>", contentviews.Metadata(content_type="text/html")) == -1
    text = view.prettify(fixture_bytes("openai/chat/response.json"), meta)
    assert "assistant: 1 + 1 = 2." in text


# --- every native format, requests, responses and streams -------------------------------------------

ANSWER_AU = "The capital of Australia is Canberra — not Sydney."
ANSWER_CA = "Mount Logan, in Yukon's Saint Elias Mountains, is Canada's tallest peak at 5,959 metres."
ANSWER_OTTAWA = "The capital of Canada is Ottawa, in the province of Ontario."
STREAM_TYPES = {
    "sse": "text/event-stream",
    "ndjson": "application/x-ndjson",
    "eventstream": "application/vnd.amazon.eventstream",
}


@pytest.mark.parametrize(
    ("folder", "asked", "answer", "stream"),
    [
        ("openai/chat", "user: What is 1 + 1?", "1 + 1 = 2.", "sse"),
        ("anthropic/chat", "user: What is the capital of Australia?", ANSWER_AU, "sse"),
        ("gemini/chat", "user: What is 1 + 1?", "1 + 1 = 2.", "sse"),
        ("bedrock/chat", "user: What is the capital of Australia?", "The capital of Australia is Canberra.", "eventstream"),
        ("cohere/chat", "user: What is the tallest mountain in Canada?", ANSWER_CA, "sse"),
        ("huggingface/chat", "user: What is the capital of Canada?", ANSWER_OTTAWA, "sse"),
        ("ollama/chat", "user: What is 1 + 1?", "1 + 1 = 2.", "ndjson"),
        ("ollama/generate", "prompt: Say this is a test", "This is a test.", "ndjson"),
    ],
)  # fmt: skip
def test_native_formats_render_and_streams_assemble(folder, asked, answer, stream):
    assert asked in render(orjson.loads(fixture_bytes(f"{folder}/request.json")))
    answered = render(orjson.loads(fixture_bytes(f"{folder}/response.json")))
    assert any(line.split(": ", 1)[1].startswith(answer + "  [") for line in answered if ": " in line), (
        answered
    )
    data = fixture_bytes(f"{folder}/stream.{stream}")
    assembled = render_stream(data, STREAM_TYPES[stream])
    assert assembled[0].endswith(f" events): {answer}")


def test_tool_calls_and_reasoning_of_native_streams_are_assembled():
    bedrock = render_stream(
        fixture_bytes("bedrock/stream_tools/stream.eventstream"), STREAM_TYPES["eventstream"]
    )
    assert bedrock[1:5] == [
        'tool call 0: get_weather({"location": "Paris, France", "unit": "celsius"})',
        'tool call 1: get_weather({"location": "Berlin, Germany", "unit": "celsius"})',
        "tool call 2: get_time()",
        "finish: tool_use",
    ]
    cohere = render_stream(fixture_bytes("cohere/stream_tools/stream.sse"))
    assert cohere[1] == 'tool call 0: get_weather({"location":"Toronto, Canada","unit":"celsius"})'
    thinking = render_stream(fixture_bytes("anthropic/stream_thinking/stream.sse"))
    assert thinking[:2] == [
        "assistant (streamed, 11 events): No. 1,001 = 7 \u00d7 11 \u00d7 13.",
        "reasoning: 1001 = 7 \u00d7 143, and 143 = 11 \u00d7 13. So 1001 is composite.",
    ]


def test_other_native_bodies():
    assert render({"inputs": "Hello", "parameters": {"max_new_tokens": 5}}) == ["inputs: Hello"]
    assert render([{"generated_text": "Hi there"}]) == ["assistant: Hi there  [finish: None]"]
    assert render({"generated_text": "Hi", "details": {"finish_reason": "eos_token"}}) == [
        "assistant: Hi  [finish: eos_token]"
    ]
    assert render({"message": "Hi", "chat_history": [{"role": "USER", "message": "Hello"}]}) == [
        "user: Hello",
        "user: Hi",
    ]
    assert render({"text": "Hey", "generation_id": "g", "finish_reason": "COMPLETE"}) == [
        "assistant: Hey  [finish: COMPLETE]"
    ]
    responses = {
        "model": "gpt-5",
        "status": "completed",
        "output": [
            {"type": "reasoning", "summary": []},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Done."}]},
            {"type": "function_call", "name": "f", "arguments": "{}"},
        ],
    }
    assert render(responses)[1] == "assistant: [thinking]  Done. [call f({})]  [status: completed]"
    assert render({"input": "Hi", "instructions": "Be kind"}) == ["system: Be kind", "input: Hi"]
    assert render({"results": [{"outputText": "Yes", "completionReason": "FINISH"}]}) == [
        "assistant: Yes  [finish: FINISH]"
    ]
    assert render({"generation": "Yo", "stop_reason": "stop"}) == ["assistant: Yo  [finish: stop]"]
    assert render({"error": {"message": "invalid x-api-key", "type": "authentication_error"}}) == [
        "error: invalid x-api-key"
    ]
    assert render({"embeddings": {"float": [[0.1, 0.2], [0.3, 0.4]]}}) == [
        "embeddings: 2 vector(s) of 2 dimensions"
    ]
    gemini_array = b'[{"candidates":[{"content":{"parts":[{"text":"1 + "}]}}]},' \
        b'{"candidates":[{"content":{"parts":[{"text":"1 = 2."}]},"finishReason":"STOP"}]}]'  # fmt: skip
    assert render(orjson.loads(gemini_array))[:2] == [
        "assistant (streamed, 2 events): 1 + 1 = 2.",
        "finish: STOP",
    ]


# --- a whole gateway flow: both sides, the assembled stream, no secret ------------------------------


def gateway_flow(streamed: bool) -> http.HTTPFlow:
    client_body = b'{"model":"claude","messages":[{"role":"user","content":"Capital of Australia?"}]}'
    provider_body = orjson.loads(fixture_bytes("anthropic/chat/request.json"))
    flow = tflow.tflow(
        req=tutils.treq(
            method=b"POST",
            host="api.anthropic.com",
            port=443,
            scheme=b"https",
            path=b"/v1/messages",
            headers=http.Headers(
                [
                    (b"x-api-key", b"[ai-proxy: anthropic-chat credential]"),
                    (b"content-type", b"application/json"),
                ]
            ),
            content=orjson.dumps(provider_body),
        ),
        resp=True,
    )
    meta = {
        "client_request": {
            "method": "POST",
            "host": "",
            "path": "/anthropic/v1/chat/completions",
            "headers": [["authorization", "[ai-proxy: client credential]"]],
            "body": client_body.decode(),
            "body_size": len(client_body),
            "truncated": False,
        },
        "masked": {"route": "anthropic-chat", "headers": ["x-api-key"], "query": [], "body": []},
    }
    if streamed:
        flow.response.headers["content-type"] = "text/event-stream"
        flow.response.raw_content = None  # mitmproxy stores no streamed body by default
        meta["assembled"] = {
            "text": "Canberra.",
            "text_chars": 9,
            "finish_reason": "stop",
            "usage": {"prompt_tokens": 27, "completion_tokens": 3, "total_tokens": 30},
            "truncated": False,
        }
    else:
        flow.response.headers["content-type"] = "application/json"
        flow.response.content = fixture_bytes("anthropic/chat/expected.json")
        meta["provider_response"] = {
            "status": 200,
            "content_type": "application/json",
            "body": fixture_bytes("anthropic/chat/response.json").decode(),
            "body_size": 1,
        }
    flow.metadata["ai_proxy"] = meta
    return flow


def view_of(flow: http.HTTPFlow, side: str) -> contentviews.ContentviewResult:
    contentviews.add(LLMConversationContentview)  # as addon/ai_proxy.py does
    with taddons.context():
        return contentviews.prettify_message(getattr(flow, side), flow, "auto")


def test_the_request_tab_shows_both_sides_of_a_translated_flow():
    result = view_of(gateway_flow(streamed=False), "request")
    assert result.view_name == "LLM Conversation"
    text = result.text.splitlines()
    assert text[:3] == [
        "── the client sent: POST /anthropic/v1/chat/completions",
        "model: claude",
        "user: Capital of Australia?",
    ]
    assert "── sent to the provider: POST https://api.anthropic.com/v1/messages" in text
    assert "user: What is the capital of Australia?" in text
    assert "── the provider answered: HTTP 200" in text
    assert "assistant: The capital of Australia is Canberra — not Sydney.  [stop: end_turn]" in text
    received = text.index("── the client received: HTTP 200")
    assert text[received + 2].startswith("assistant: ")
    assert "ai-proxy: anthropic-chat credential" not in result.text  # headers are not rendered at all


def test_a_streamed_answer_mitmproxy_did_not_store_is_shown_from_the_transcript():
    flow = gateway_flow(streamed=True)
    text = view_of(flow, "request").text.splitlines()
    start = text.index("── streamed answer, as the gateway read it (mitmproxy stored no streamed body)")
    assert text[start + 1 :] == [
        "assistant (streamed): Canberra.",
        "finish: stop",
        'usage: {"prompt_tokens":27,"completion_tokens":3,"total_tokens":30}',
    ]
    assert view_of(flow, "response").text == "Content is missing."  # mitmproxy's own answer, no body


def test_the_response_tab_shows_the_provider_answer_and_the_translation():
    text = view_of(gateway_flow(streamed=False), "response").text.splitlines()
    assert text[0] == "── the provider answered: HTTP 200"
    assert "── the client received: HTTP 200" in text


def test_a_gateway_flow_response_that_is_not_llm_content_keeps_its_own_view():
    flow = gateway_flow(streamed=False)
    del flow.metadata["ai_proxy"]["provider_response"]  # a passthrough flow: the body is the provider's own
    flow.response.headers["content-type"] = "text/html"
    flow.response.content = b"<html><body>Bad gateway</body></html>"
    assert view_of(flow, "response").view_name != "LLM Conversation"
    assert view_of(flow, "request").view_name == "LLM Conversation"
