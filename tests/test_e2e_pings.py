"""End to end: Anthropic-format clients get ``ping`` events while a slow provider is silent (the
upstream relay's keep-alive marks, transforms/keepalive.py), and nothing else changes: the answer,
the statistics, a binary Bedrock stream, OpenAI-format clients.

The slow calls run side by side (each pauses longer than the ping interval once), so the module
costs one pause."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
import httpx
import orjson
import pytest
from conftest import fixture_bytes, route

from transforms.keepalive import PING_INTERVAL
from transforms.stream import SSEParser

PAUSE_MS = int((PING_INTERVAL + 1.5) * 1000)  # one ping in it, not two
OPENAI = "gpt-4o-mini"
BEDROCK = "anthropic.claude-3-5-sonnet-20240620-v1:0"
BEDROCK_AUTH = {"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE", "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG"}
BEDROCK_OPTIONS = {"bedrock": {"aws_region": "us-east-1"}}
OPENAI_AUTH = {"header_name": "Authorization", "header_value": "Bearer sk-openai-configured-0123456789"}
HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def gw(gateway, emulator):
    stats = {"log_statistics": True, "log_payloads": False}
    return gateway(
        [
            route("claude-on-openai", "/co/*", "llm/v1/chat", "openai", emulator.url, model=OPENAI,
                  auth=OPENAI_AUTH, llm_format="anthropic", logging=stats),
            route("claude-on-bedrock", "/cb/*", "llm/v1/chat", "bedrock", emulator.url, model=BEDROCK,
                  auth=BEDROCK_AUTH, options=BEDROCK_OPTIONS, llm_format="anthropic", logging=stats),
            route("openai", "/o/*", "llm/v1/chat", "openai", emulator.url, model=OPENAI, auth=OPENAI_AUTH,
                  logging=stats),
            route("openai-on-bedrock", "/ob/*", "llm/v1/chat", "bedrock", emulator.url, model=BEDROCK,
                  auth=BEDROCK_AUTH, options=BEDROCK_OPTIONS, logging=stats),
        ]
    )  # fmt: skip


def messages(gw, prefix: str, model: str, pause: str | None) -> bytes:
    """A streamed Messages call's raw SSE; ``pause``: the emulator's ``N:MS`` pause."""
    headers = {"anthropic-version": "2023-06-01", "x-api-key": "sk-ant-client"}
    if pause:
        headers["x-emulator-pause"] = pause
    body = {"model": model, "max_tokens": 100, "messages": HI, "stream": True}
    with httpx.stream("POST", f"{gw.url}/{prefix}/v1/messages", json=body, headers=headers, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        return r.read()


def chat(gw, prefix: str, model: str, pause: str | None) -> bytes:
    headers = {"x-emulator-pause": pause} if pause else {}
    body = {"model": model, "messages": HI, "stream": True, "stream_options": {"include_usage": True}}
    url = f"{gw.url}/{prefix}/v1/chat/completions"
    with httpx.stream("POST", url, json=body, headers=headers, timeout=30) as r:
        assert r.status_code == 200
        return r.read()


def sdk_message(gw, pause: str) -> anthropic.types.Message:
    c = anthropic.Anthropic(
        base_url=f"{gw.url}/co",
        api_key="sk-ant-client",
        default_headers={"x-emulator-pause": pause},
        max_retries=0,
    )
    with c.messages.stream(model=OPENAI, max_tokens=100, messages=HI) as stream:
        return stream.get_final_message()


def events(raw: bytes) -> list[tuple[str | None, Any]]:
    parser = SSEParser()
    out = []
    for e in [*parser.feed(raw), *parser.finish()]:
        data = orjson.loads(e.data)
        if e.event == "message_start":
            data["message"]["id"] = "-"  # Bedrock gives none: the gateway's, per request
        out.append((e.event, data))
    return out


def without_pings(evs: list[tuple[str | None, Any]]) -> list[tuple[str | None, Any]]:
    return [e for e in evs if e[0] != "ping"]


def records_by_route(gw, count: int) -> dict[str, list[dict[str, Any]]]:
    by: dict[str, list[dict[str, Any]]] = {}
    for rec in gw.wait_records(count, timeout=15):
        by.setdefault(rec["ai"]["proxy"]["meta"]["route"], []).append(rec["ai"]["proxy"]["usage"])
    return by


def test_slow_providers_get_pings_and_nothing_else_changes(gw) -> None:
    # Baselines: the same calls with no pause (and no pings: a provider that is not slow).
    quick = {
        "co": messages(gw, "co", OPENAI, None),
        "cb": messages(gw, "cb", BEDROCK, None),
        "o": chat(gw, "o", OPENAI, None),
        "ob": chat(gw, "ob", BEDROCK, None),
    }
    assert [e[0] for e in events(quick["co"])].count("ping") == 0
    assert [e[0] for e in events(quick["cb"])].count("ping") == 0
    baseline = records_by_route(gw, 4)
    gw.clear_records()

    pause = f"3:{PAUSE_MS}"  # before the provider's 4th event: mid-stream, after the first text
    with ThreadPoolExecutor(6) as pool:
        slow = {
            "co": pool.submit(messages, gw, "co", OPENAI, pause),
            "cb": pool.submit(messages, gw, "cb", BEDROCK, pause),
            "o": pool.submit(chat, gw, "o", OPENAI, pause),
            "ob": pool.submit(chat, gw, "ob", BEDROCK, pause),
            "sdk": pool.submit(sdk_message, gw, pause),
            "first": pool.submit(messages, gw, "co", OPENAI, f"0:{PAUSE_MS}"),  # silent from the head on
        }
        results = {name: future.result() for name, future in slow.items()}

    for prefix in ("co", "cb"):  # Anthropic-format clients: one ping in the pause, between events
        evs = events(results[prefix])
        kinds = [e[0] for e in evs]
        assert kinds.count("ping") == 1, kinds
        at = kinds.index("ping")
        assert 0 < at < len(kinds) - 1 and kinds[0] == "message_start"
        assert kinds[at - 1] == "content_block_delta" and kinds[at + 1] in (
            "content_block_delta",
            "content_block_stop",
        )
        assert evs[at][1] == {"type": "ping"}
        assert without_pings(evs) == events(quick[prefix])  # the answer, event for event
    # Silent before its first chunk: the message starts early (the request's model), then the ping.
    first, plain = events(results["first"]), events(quick["co"])
    assert [e[0] for e in first][:3] == ["message_start", "ping", "content_block_start"]
    assert (
        first[0][1]["message"]["model"] == OPENAI
        and plain[0][1]["message"]["model"] == "gpt-4o-mini-2024-07-18"
    )
    assert without_pings(first)[1:] == plain[1:]
    text = "".join(d["delta"]["text"] for k, d in events(results["cb"]) if k == "content_block_delta")
    assert text == "The capital of Australia is Canberra."  # the binary event stream, whole

    # OpenAI-format clients: nothing new; a passthrough stream is the provider's bytes exactly.
    assert results["o"] == quick["o"] == fixture_bytes("openai/chat/stream.sse")
    assert results["ob"].count(b"data: ") == quick["ob"].count(b"data: ")
    assert {line[:6] for line in results["ob"].split(b"\n") if line} == {b"data: "}

    final = results["sdk"]  # the SDK skips pings: its message is exact
    assert [(b.type, b.text) for b in final.content] == [("text", "1 + 1 = 2.")]  # type: ignore[union-attr]
    assert (final.model, final.stop_reason) == ("gpt-4o-mini-2024-07-18", "end_turn")
    assert (final.usage.input_tokens, final.usage.output_tokens) == (25, 7)

    # Statistics as without the pause (timings aside); the first token came before the pause.
    slow_records = records_by_route(gw, 6)
    for name in ("claude-on-openai", "claude-on-bedrock", "openai", "openai-on-bedrock"):
        [before] = baseline[name]
        for usage in slow_records[name]:
            assert untimed(usage) == untimed(before)
            if name != "claude-on-openai":
                assert usage["time_to_first_token"] < PING_INTERVAL * 1000
    assert len(slow_records["claude-on-openai"]) == 3
    # The first token is the provider's, not a ping's: before the mid-stream pause, after the early one.
    ttfts = sorted(usage["time_to_first_token"] for usage in slow_records["claude-on-openai"])
    assert ttfts[1] < PING_INTERVAL * 1000 < PAUSE_MS <= ttfts[2]


def untimed(usage: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in usage.items() if k not in ("time_per_token", "time_to_first_token")}
