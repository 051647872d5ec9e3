"""Native formats (llm_format): provider-format clients pass through untouched and are still accounted."""

from __future__ import annotations

import anthropic
import httpx
import pytest
from conftest import fixture_bytes, route


@pytest.fixture
def gw(gateway, emulator):
    return gateway(
        [
            {
                **route(
                    "claude-native",
                    "/anthropic-native/*",
                    "llm/v1/chat",
                    "anthropic",
                    emulator.url,
                    auth={"header_name": "x-api-key", "header_value": "sk-ant-gateway"},
                    options={"anthropic_version": "2023-06-01", "input_cost": 3.0, "output_cost": 15.0},
                ),
                "llm_format": "anthropic",
            },
            {
                **route(
                    "gemini-native",
                    "/gemini-native/*",
                    "llm/v1/chat",
                    "gemini",
                    emulator.url,
                    auth={"header_name": "x-goog-api-key", "header_value": "AIza-gateway"},
                ),
                "llm_format": "gemini",
            },
        ]
    )


def test_anthropic_sdk_through_a_native_route(gw, emulator):
    client = anthropic.Anthropic(base_url=f"{gw.url}/anthropic-native", api_key="client-key", max_retries=0)
    message = client.messages.create(
        model="claude-sonnet-4-5", max_tokens=100, messages=[{"role": "user", "content": "What is 1 + 1?"}]
    )
    assert message.usage.output_tokens == 13
    assert emulator.last.path == "/v1/messages"
    assert emulator.last.headers["x-api-key"] == "sk-ant-gateway"
    assert "authorization" not in emulator.last.headers
    assert emulator.last.json()["messages"] == [{"role": "user", "content": "What is 1 + 1?"}]  # untouched
    (record,) = gw.wait_records(1)
    usage = record["ai"]["proxy"]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (27, 13)
    assert record["ai"]["proxy"]["meta"]["response_model"] == "claude-sonnet-4-5-20250929"


def test_native_anthropic_stream_is_untouched_and_accounted(gw):
    client = anthropic.Anthropic(base_url=f"{gw.url}/anthropic-native", api_key="k", max_retries=0)
    with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=100, messages=[{"role": "user", "content": "What is 1 + 1?"}]
    ) as stream:
        text = "".join(stream.text_stream)
    assert text
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["meta"]["request_mode"] == "stream"
    assert record["ai"]["proxy"]["usage"]["completion_tokens"] == 13
    assert "estimated" not in record["ai"]["proxy"]["usage"]


def test_native_gemini_stream_bytes_pass_through(gw, emulator):
    r = httpx.post(
        f"{gw.url}/gemini-native/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        json={"contents": [{"role": "user", "parts": [{"text": "What is 1 + 1?"}]}]},
    )
    assert r.status_code == 200
    assert r.content == fixture_bytes("gemini/chat/stream.sse")  # byte for byte
    assert emulator.last.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert emulator.last.headers["x-goog-api-key"] == "AIza-gateway"
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["usage"]["prompt_tokens"] == 14
    assert record["ai"]["proxy"]["usage"]["completion_tokens"] == 7
    assert record["ai"]["proxy"]["meta"]["request_model"] == "gemini-2.5-flash"
