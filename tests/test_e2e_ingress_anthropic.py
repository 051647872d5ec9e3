"""End to end: the real anthropic SDK -> mitmdump + addon (llm_format: anthropic on other providers)
-> the local emulator speaking openai, gemini, bedrock and ollama."""

from __future__ import annotations

import os
import subprocess

import anthropic
import httpx
import orjson
import pytest
from anthropic.types import Message
from conftest import fixture_bytes, npm_cli, route

MODELS = {
    "openai": "gpt-4o-mini",
    "gemini": "gemini-2.5-flash",
    "bedrock": "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "ollama": "llama3.2",
    "cohere": "command-a-03-2025",
    "huggingface": "meta-llama/Llama-3.1-8B-Instruct",
    "azure": "gpt-4o",
}
AUTH = {
    "openai": {"header_name": "Authorization", "header_value": "Bearer sk-openai-configured-0123456789"},
    "gemini": {"header_name": "x-goog-api-key", "header_value": "AIzaSyHeaderKey-0123456789abcdefghijklm"},
    "bedrock": {
        "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
        "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG",
    },
    "ollama": None,
    "cohere": {"header_name": "Authorization", "header_value": "Bearer cohere-configured-key-0123"},
    "huggingface": {"header_name": "Authorization", "header_value": "Bearer hf_configuredtoken0123456789"},
    "azure": {"header_name": "api-key", "header_value": "azure-configured-key-0123456789"},
}
OPTIONS = {
    "bedrock": {"bedrock": {"aws_region": "us-east-1"}},
    "azure": {"azure_instance": "inst", "azure_deployment_id": "gpt-4o", "azure_api_version": "2024-10-21"},
}
# The emulator's fixtures: (text, input tokens, output tokens) of each provider's plain answer.
ANSWERS = {
    "openai": ("1 + 1 = 2.", 25, 12),
    "gemini": ("1 + 1 = 2.", 14, 7),
    "bedrock": ("The capital of Australia is Canberra.", 27, 10),
    "ollama": ("1 + 1 = 2.", 38, 9),
    "cohere": (
        "Mount Logan, in Yukon's Saint Elias Mountains, is Canada's tallest peak at 5,959 metres.",
        23,
        24,
    ),
    "huggingface": ("The capital of Canada is Ottawa, in the province of Ontario.", 46, 15),
    "azure": ("1 + 1 equals 2.", 22, 8),
}
STREAMING = [p for p in MODELS if p != "azure"]  # the emulator has no Azure stream
HI = [{"role": "user", "content": "Hi"}]
CLIENT_KEY = "sk-ant-client-key-not-for-upstream"


@pytest.fixture
def gw(gateway, emulator):
    routes = [
        route(
            f"claude-on-{provider}",
            f"/{provider}/*",
            "llm/v1/chat",
            provider,
            emulator.url,
            model=model,
            auth=AUTH[provider],
            options=OPTIONS.get(provider),
            llm_format="anthropic",
            logging={"log_statistics": True, "log_payloads": False},
        )
        for provider, model in MODELS.items()
    ]
    return gateway(routes)


def client(gw, provider: str, **headers: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=f"{gw.url}/{provider}", api_key=CLIENT_KEY, default_headers=headers, max_retries=0
    )


@pytest.mark.parametrize("provider", list(MODELS))
def test_messages_create(gw, emulator, provider):
    text, input_tokens, output_tokens = ANSWERS[provider]
    message = client(gw, provider).messages.create(
        model=MODELS[provider],
        max_tokens=100,
        system="Be brief.",
        messages=HI,
        extra_body={"temperature": 0.2},
    )
    assert isinstance(message, Message)
    assert [(b.type, b.text) for b in message.content] == [("text", text)]  # type: ignore[union-attr]
    assert (message.role, message.stop_reason, message.stop_sequence) == ("assistant", "end_turn", None)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (input_tokens, output_tokens)
    assert message.id.startswith("msg_")
    sent = emulator.last
    if AUTH[provider] is not None:  # the route's credential replaced the client's
        assert CLIENT_KEY not in orjson.dumps(sent.headers).decode()
    assert "anthropic-version" not in sent.headers
    [record] = gw.wait_records(1)
    meta = record["ai"]["proxy"]["meta"]
    assert (meta["route"], meta["provider_name"], meta["request_model"]) == (
        f"claude-on-{provider}",
        provider,
        MODELS[provider],
    )
    usage = record["ai"]["proxy"]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (input_tokens, output_tokens)


@pytest.mark.parametrize("provider", STREAMING)
def test_messages_stream(gw, provider):
    with client(gw, provider).messages.stream(model=MODELS[provider], max_tokens=100, messages=HI) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert "content_block_start" in kinds and "content_block_stop" in kinds
    assert final.stop_reason == "end_turn"
    assert final.content[0].type == "text" and final.content[0].text  # type: ignore[union-attr]
    assert final.usage.output_tokens > 0
    [record] = gw.wait_records(1)
    assert record["ai"]["proxy"]["meta"]["request_model"] == MODELS[provider]
    usage = record["ai"]["proxy"]["usage"]
    # The final message_delta carries the provider's counts, input tokens included.
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (
        final.usage.input_tokens,
        final.usage.output_tokens,
    )


def test_stop_sequence_said_by_cohere_is_the_one_asked(gw, emulator):
    c = client(gw, "cohere", **{"x-emulator-fixture": "cohere/stop_sequence/response.json"})
    message = c.messages.create(
        model=MODELS["cohere"],
        max_tokens=100,
        stop_sequences=["END"],
        messages=[{"role": "user", "content": "Count from 1 to 10, one per line, then write END."}],
    )
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "END")
    assert emulator.last.json()["stop_sequences"] == ["END"]
    assert message.content[0].text == "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n"  # type: ignore[union-attr]
    gw.wait_records(1)


WEB_SEARCH_TOOL = {"type": "web_search_20250305", "name": "web_search", "max_uses": 8}


def test_claude_code_s_web_search_on_gemini_is_google_search(gw, emulator):
    """Claude Code's WebSearch asks with the server web search tool only: on Gemini that is Google
    Search grounding, answered with server_tool_use / web_search_tool_result blocks and citations."""
    c = client(gw, "gemini", **{"x-emulator-fixture": "gemini/grounding/response.json"})
    message = c.messages.create(
        model=MODELS["gemini"],
        max_tokens=100,
        messages=[{"role": "user", "content": "Who won Euro 2024?"}],
        tools=[WEB_SEARCH_TOOL],
    )
    assert emulator.last.json()["tools"] == [{"googleSearch": {}}]
    assert [b.type for b in message.content] == [
        "server_tool_use",
        "web_search_tool_result",
        "text",
        "text",
        "text",
    ]
    assert message.content[0].input == {"query": "Euro 2024 winner"}  # type: ignore[union-attr]
    assert [r.title for r in message.content[1].content] == ["uefa.com", "aljazeera.com"]  # type: ignore[union-attr]
    cited = message.content[2]
    assert cited.text == "Spain won Euro 2024, beating England 2\u20131 in the final in Berlin."  # type: ignore[union-attr]
    assert [c.title for c in cited.citations] == ["uefa.com", "aljazeera.com"]  # type: ignore[union-attr]
    assert message.content[3].text == " " and message.content[3].citations is None  # type: ignore[union-attr]
    with client(gw, "gemini", **{"x-emulator-fixture": "gemini/grounding/stream.sse"}).messages.stream(
        model=MODELS["gemini"],
        max_tokens=100,
        messages=[{"role": "user", "content": "Who won?"}],
        tools=[WEB_SEARCH_TOOL],
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["text", "server_tool_use", "web_search_tool_result"]
    assert len(final.content[0].citations) == 3  # type: ignore[union-attr, arg-type]
    gw.wait_records(2)


def test_upstream_error_on_a_stream_request(gw):
    c = client(gw, "gemini", **{"x-emulator-fixture": "gemini/errors/429.json", "x-emulator-status": "429"})
    with (
        pytest.raises(anthropic.RateLimitError) as err,
        c.messages.stream(model=MODELS["gemini"], max_tokens=10, messages=HI) as stream,
    ):
        list(stream)
    assert err.value.body["type"] == "error" and err.value.body["error"]["type"] == "rate_limit_error"


TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]
PARIS_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
}
OPENAI_TOOL_ANSWER = {
    "id": "chatcmpl-tools",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [PARIS_CALL],
            },
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 50, "completion_tokens": 8, "total_tokens": 58},
}


def test_tools_round_trip_on_openai(gw, emulator):
    c = client(gw, "openai")
    emulator.script(200, OPENAI_TOOL_ANSWER)
    first = c.messages.create(
        model=MODELS["openai"],
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=TOOLS,
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    )
    assert first.stop_reason == "tool_use"
    [call] = first.content
    assert (call.type, call.id, call.name, call.input) == (
        "tool_use",
        "call_1",
        "get_weather",
        {"city": "Paris"},
    )  # type: ignore[union-attr]
    sent = emulator.last.json()
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": TOOLS[0]["input_schema"],
            },
        }
    ]
    assert (sent["tool_choice"], sent["parallel_tool_calls"]) == ("required", False)
    second = c.messages.create(
        model=MODELS["openai"],
        max_tokens=100,
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": first.content},  # type: ignore[typeddict-item]
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "no data", "is_error": True},
                    {"type": "text", "text": "Then guess."},
                ],
            },
        ],
        tools=TOOLS,
    )
    assert second.content[0].text == "1 + 1 = 2."  # type: ignore[union-attr]
    assert emulator.last.json()["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [PARIS_CALL],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "[tool error] no data"},
        {"role": "user", "content": "Then guess."},
    ]
    gw.wait_records(2)


@pytest.mark.parametrize(
    ("provider", "fixture", "calls"),
    [
        (
            "gemini",
            "gemini/tools/response.json",
            [("get_weather", {"city": "Paris", "unit": "celsius", "days": 1})],
        ),
        (
            "bedrock",
            "bedrock/tools/response.json",
            [("get_weather", {"location": "Paris, France", "unit": "celsius"})],
        ),
        (
            "ollama",
            "ollama/chat_tools/response.json",
            [("get_weather", {"city": "Tokyo", "unit": "celsius"})],
        ),
    ],
)
def test_tool_use_from_other_providers(gw, provider, fixture, calls):
    message = client(gw, provider, **{"x-emulator-fixture": fixture}).messages.create(
        model=MODELS[provider], max_tokens=100, messages=HI, tools=TOOLS
    )
    uses = [(b.name, b.input) for b in message.content if b.type == "tool_use"]
    assert uses[: len(calls)] == calls
    assert message.stop_reason == "tool_use"
    gw.wait_records(1)


@pytest.mark.parametrize(
    ("provider", "fixture", "stream_fixture"),
    [
        ("gemini", "gemini/tools/response.json", "gemini/stream_tools/stream.sse"),
        ("bedrock", "bedrock/tools/response.json", "bedrock/stream_tools/stream.eventstream"),
    ],
)
def test_streamed_tool_use(gw, provider, fixture, stream_fixture):
    whole = client(gw, provider, **{"x-emulator-fixture": fixture}).messages.create(
        model=MODELS[provider], max_tokens=100, messages=HI, tools=TOOLS
    )
    c = client(gw, provider, **{"x-emulator-fixture": stream_fixture})
    with c.messages.stream(model=MODELS[provider], max_tokens=100, messages=HI, tools=TOOLS) as stream:
        deltas = [e.delta.type for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()
    assert "input_json_delta" in deltas
    assert final.stop_reason == "tool_use"
    streamed = [(b.name, b.input) for b in final.content if b.type == "tool_use"]
    # The stream fixture's model also calls get_time (no arguments) after the whole answer's calls.
    assert streamed == [*((b.name, b.input) for b in whole.content if b.type == "tool_use"), ("get_time", {})]
    gw.wait_records(2)


@pytest.mark.parametrize(
    ("provider", "fixture", "status", "exc", "kind"),
    [
        ("openai", None, 401, anthropic.AuthenticationError, "authentication_error"),
        ("gemini", "gemini/errors/429.json", 429, anthropic.RateLimitError, "rate_limit_error"),
        ("bedrock", "bedrock/errors/400.json", 400, anthropic.BadRequestError, "invalid_request_error"),
        ("gemini", "gemini/errors/503.json", 503, anthropic.InternalServerError, "api_error"),
    ],
)
def test_upstream_errors_are_anthropic_shaped(gw, emulator, provider, fixture, status, exc, kind):
    if fixture is None:
        emulator.script(
            status, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}
        )
        c = client(gw, provider)
    else:
        c = client(gw, provider, **{"x-emulator-fixture": fixture, "x-emulator-status": str(status)})
    with pytest.raises(exc) as err:
        c.messages.create(model=MODELS[provider], max_tokens=10, messages=HI)
    assert err.value.status_code == status
    body = err.value.body
    assert body["type"] == "error" and body["error"]["type"] == kind
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if fixture is None:
        assert body["error"]["message"] == "Incorrect API key provided"


def test_gateway_refusals_are_anthropic_shaped(gw, emulator):
    with pytest.raises(anthropic.BadRequestError) as err:
        client(gw, "openai").messages.create(model="another-model", max_tokens=10, messages=HI)
    assert err.value.body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "cannot use own model - must be: gpt-4o-mini"},
    }
    answer = httpx.post(f"{gw.url}/openai/v1/complete", json={"model": "gpt-4o-mini", "prompt": "hi"})
    assert answer.status_code == 404
    assert answer.json() == {
        "type": "error",
        "error": {
            "type": "not_found_error",
            "message": "POST /openai/v1/complete is not served: anthropic clients POST to .../v1/messages",
        },
    }
    assert emulator.requests == []


def test_claude_code_extras_do_not_fail_the_call(gw, emulator):
    """What Claude Code 2.x sends beside the basics: ?beta=true, system turns, cache_control,
    context_management, output_config, thinking, defer_loading tools, metadata.user_id."""
    body = {
        "model": MODELS["openai"],
        "max_tokens": 1000,
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}],
            },
            {"role": "system", "content": "<reminder>be nice</reminder>"},
        ],
        "tools": [{**TOOLS[0], "defer_loading": True}, {"type": "web_search_20250305", "name": "web_search"}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "context_management": {"edits": []},
        "output_config": {"effort": "high"},
        "metadata": {"user_id": "user_abc"},
        "stream": False,
    }
    answer = httpx.post(
        f"{gw.url}/openai/v1/messages?beta=true",
        json=body,
        headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01", "anthropic-beta": "x"},
    )
    assert answer.status_code == 200, answer.text
    Message.model_validate(answer.json())
    sent = emulator.last.json()
    assert sent["messages"] == [
        {"role": "system", "content": "You are Claude Code."},
        {"role": "user", "content": "hi"},
        {"role": "system", "content": "<reminder>be nice</reminder>"},
    ]
    assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather"]
    assert sent["user"] == "user_abc" and sent["max_tokens"] == 1000
    assert "thinking" not in sent and "context_management" not in sent
    # Thinking reaches OpenAI as its own setting: output_config.effort, else the budget's effort.
    assert sent["reasoning_effort"] == "high"
    gw.wait_records(1)
    note = "anthropic clients' context_management, output_config ignored: no counterpart in the chat form"
    assert note in gw.log


# --- Claude Code itself ---------------------------------------------------------------------------

# `make claude-code` installs the CLI into tests/.node (git-ignored); CI has no npm and skips these tests.
CLAUDE = npm_cli("claude", "AI_PROXY_CLAUDE_BIN")


@pytest.mark.skipif(
    CLAUDE is None,
    reason="the Claude Code CLI is not installed: `make claude-code` (npm), or set AI_PROXY_CLAUDE_BIN",
)
@pytest.mark.parametrize("provider", ["openai", "gemini", "bedrock", "ollama"])
def test_claude_code_runs_on_other_providers(gw, emulator, tmp_path, provider):
    """``claude -p`` (non-interactive) with ANTHROPIC_BASE_URL at a non-Anthropic route: its calls
    (a short one, then the main one with Claude Code's own tools) are translated and accounted."""
    model = MODELS[provider]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "ANTHROPIC_BASE_URL": f"{gw.url}/{provider}",
        "ANTHROPIC_API_KEY": CLIENT_KEY,
        "ANTHROPIC_MODEL": model,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": model,
        "ANTHROPIC_DEFAULT_SONNET_MODEL": model,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    done = subprocess.run(
        [CLAUDE or "claude", "-p", "What is 1 + 1?", "--output-format", "json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    assert orjson.loads(done.stdout)["result"] == ANSWERS[provider][0]
    assert emulator.requests and len(emulator.requests[-1].body) > 20_000  # the call with Claude Code's tools
    records = gw.wait_records(len(emulator.requests))
    assert {r["ai"]["proxy"]["meta"]["route"] for r in records} == {f"claude-on-{provider}"}
    assert {r["ai"]["proxy"]["meta"]["request_model"] for r in records} == {model}


def test_count_tokens_and_models(gw, emulator):
    """Where the provider cannot count (OpenAI), count_tokens is the gateway's estimate, answered
    without a provider call, as the models list is."""
    raw = client(gw, "openai").messages.with_raw_response.count_tokens(
        model=MODELS["openai"], messages=[{"role": "user", "content": "a" * 400}], system="b" * 40
    )
    counted = raw.parse()
    assert counted.input_tokens == 111  # 441 characters (two texts and a newline), four per token
    assert raw.headers["x-ai-proxy-estimated"] == "true"
    c = client(gw, "gemini")
    page = c.models.list()
    assert [(m.id, m.type, m.display_name) for m in page.data] == [
        (MODELS["gemini"],) * 1 + ("model", MODELS["gemini"])
    ]
    assert c.models.retrieve(MODELS["gemini"]).id == MODELS["gemini"]
    with pytest.raises(anthropic.NotFoundError) as err:
        c.models.retrieve("claude-opus-4")
    assert err.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "model: claude-opus-4"},
    }
    assert emulator.requests == []
    assert gw.records() == []  # no LLM call: nothing accounted


@pytest.mark.parametrize(
    ("provider", "path", "tokens"),
    [
        ("gemini", f"/v1beta/models/{MODELS['gemini']}:countTokens", 31),
        ("bedrock", "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/count-tokens", 19),
    ],
)
def test_count_tokens_by_the_provider(gw, emulator, provider, path, tokens):
    """Gemini and Bedrock count themselves: the count goes upstream as the flow's request, with the
    route's credential (signed for Bedrock), and comes back in Anthropic's shape, not estimated."""
    raw = client(gw, provider).messages.with_raw_response.count_tokens(
        model=MODELS[provider], messages=[{"role": "user", "content": "Hi"}], system="Be brief.", tools=TOOLS
    )
    assert raw.parse().input_tokens == tokens
    assert "x-ai-proxy-estimated" not in raw.headers
    [sent] = emulator.requests
    assert sent.path == path
    assert CLIENT_KEY not in orjson.dumps(sent.headers).decode()
    if provider == "gemini":
        assert sent.headers["x-goog-api-key"] == AUTH["gemini"]["header_value"]
        counted = sent.json()["generateContentRequest"]
        assert counted["model"] == f"models/{MODELS['gemini']}"
        assert counted["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
        assert [d["name"] for d in counted["tools"][0]["functionDeclarations"]] == ["get_weather"]
    else:
        assert sent.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/")
        counted = sent.json()["input"]["converse"]
        assert counted["system"] == [{"text": "Be brief."}]
        assert [t["toolSpec"]["name"] for t in counted["toolConfig"]["tools"]] == ["get_weather"]
    [record] = gw.wait_records(1)
    meta, usage = record["ai"]["proxy"]["meta"], record["ai"]["proxy"]["usage"]
    assert (meta["route"], meta["request_model"]) == (f"claude-on-{provider}", MODELS[provider])
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["cost"]) == (0, 0, 0)  # not billed


def test_count_tokens_provider_error_is_anthropic_shaped(gw, emulator):
    emulator.script(429, orjson.loads(fixture_bytes("gemini/errors/429.json")))
    with pytest.raises(anthropic.RateLimitError) as err:
        client(gw, "gemini").messages.count_tokens(model=MODELS["gemini"], messages=HI)
    assert err.value.body["type"] == "error"  # type: ignore[index]
    assert err.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


def test_a_failed_tool_on_bedrock_is_status_error(gw, emulator):
    client(gw, "bedrock").messages.create(
        model=MODELS["bedrock"],
        max_tokens=100,
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "no data", "is_error": True}
                ],
            },
        ],
        tools=TOOLS,
    )
    assert emulator.last.json()["messages"][2]["content"] == [
        {"toolResult": {"toolUseId": "t1", "content": [{"text": "no data"}], "status": "error"}}
    ]
    gw.wait_records(1)


def test_gateway_keys_on_an_ingress_route(gateway, emulator):
    """Claude Code's x-api-key is the gateway key; a refusal is Anthropic-shaped, and the key
    never reaches the provider (the route's credential does)."""
    key = "aip-gateway-key-for-claude-code-0001"
    routes = [
        route(
            "claude-on-openai-keyed",
            "/keyed/*",
            "llm/v1/chat",
            "openai",
            emulator.url,
            model=MODELS["openai"],
            auth=AUTH["openai"],
            llm_format="anthropic",
        )
    ]
    gw = gateway(routes, gateway_keys=[{"name": "claude-code", "key": key}])
    base = f"{gw.url}/keyed"
    with pytest.raises(anthropic.AuthenticationError) as err:
        anthropic.Anthropic(base_url=base, api_key="wrong-key", max_retries=0).messages.create(
            model=MODELS["openai"], max_tokens=10, messages=HI
        )
    assert err.value.body["type"] == "error" and err.value.body["error"]["type"] == "authentication_error"
    assert emulator.requests == []
    message = anthropic.Anthropic(base_url=base, api_key=key, max_retries=0).messages.create(
        model=MODELS["openai"], max_tokens=10, messages=HI
    )
    assert message.content[0].text == "1 + 1 = 2."  # type: ignore[union-attr]
    assert key not in orjson.dumps(emulator.last.headers).decode()
    [record] = gw.wait_records(1)
    assert record["ai"]["proxy"]["meta"]["consumer"] == "claude-code"
