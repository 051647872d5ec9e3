"""The LLM Conversation content view: readable requests, responses and streams."""

from __future__ import annotations

import orjson
from conftest import fixture_bytes
from mitmproxy import contentviews

from addon.conversation_view import LLMConversationContentview, render, render_stream


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
    assert lines[0] == "assistant (streamed, 10 events): 1 + 1 = 2."
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
