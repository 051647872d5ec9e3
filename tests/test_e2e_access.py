"""Gateway keys through a real mitmdump: the openai SDK (Bearer) on an OpenAI route, the anthropic SDK
(x-api-key) on a native Anthropic route; the upstream (emulator) sees the provider credential only."""

from __future__ import annotations

import hashlib

import anthropic
import openai
import pytest
from conftest import route

ALICE = "gw-alice-Zq8PpX2v0WmT4rYk"  # plain, from the environment
BOB = "gw-bob-Hn3sLd7Qe1UcVb9J"  # hashed in the file
CAROL = "gw-carol-Rt5Gy6Ka2Ws8Xp0M"  # hashed, not allowed on the Anthropic route
DAVE = "gw-dave-Mm1Nn2Bb3Vv4Cc5X"  # hashed, one token a day
GATEWAY_KEYS = (ALICE, BOB, CAROL, DAVE)
OPENAI_KEY = "sk-upstream-openai-0001"
ANTHROPIC_KEY = "sk-ant-upstream-0002"
CREDENTIAL_HEADERS = ("authorization", "x-api-key", "api-key", "x-goog-api-key")
MESSAGES = [{"role": "user", "content": "What is 1 + 1?"}]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def gw(gateway, emulator):
    routes = [
        route(
            "gpt",
            "/v1/chat/completions",
            "llm/v1/chat",
            "openai",
            emulator.url,
            auth={"header_name": "Authorization", "header_value": f"Bearer {OPENAI_KEY}"},
            options={"input_cost": 0.15, "output_cost": 0.6},
            logging={"log_statistics": True, "log_payloads": True},
        ),
        route(
            "claude",
            "/anthropic/*",
            "llm/v1/chat",
            "anthropic",
            emulator.url,
            auth={"header_name": "x-api-key", "header_value": ANTHROPIC_KEY},
            options={"anthropic_version": "2023-06-01"},
            logging={"log_statistics": True, "log_payloads": True},
            llm_format="anthropic",
            allow_keys=["alice", "bob", "dave"],
        ),
    ]
    keys = [
        {"name": "alice", "key": "${ALICE_GATEWAY_KEY}"},
        {"name": "bob", "key_sha256": sha(BOB)},
        {"name": "carol", "key_sha256": sha(CAROL)},
        {"name": "dave", "key_sha256": sha(DAVE), "limits": {"tokens_per_day": 1}},
    ]
    # flow_detail=3: mitmdump prints every request and response in full, so the grep sees it all.
    return gateway(
        routes, env={"ALICE_GATEWAY_KEY": ALICE}, extra=["--set", "flow_detail=3"], gateway_keys=keys
    )


def openai_client(gw, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)


def anthropic_client(gw, key: str | None, **extra) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"{gw.url}/anthropic", api_key=key, max_retries=0, **extra)


def ask_claude(client: anthropic.Anthropic) -> anthropic.types.Message:
    return client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES)


def assert_no_gateway_key_anywhere(gw, emulator) -> None:
    """Every output of mitmdump, the statistics file and everything the upstream received."""
    stats = gw.stats_path.read_bytes().decode() if gw.stats_path.exists() else ""
    upstream = "\n".join(f"{r.method} {r.path} {r.headers} {r.body!r}" for r in emulator.requests)
    for key in GATEWAY_KEYS:
        for where, text in (("mitmdump output", gw.log), ("stats file", stats), ("upstream", upstream)):
            assert key not in text, f"a gateway key appears in the {where}"
            assert sha(key) not in text, f"a gateway key's hash appears in the {where}"


def test_openai_sdk_with_bearer_keys(gw, emulator):
    with pytest.raises(openai.AuthenticationError) as missing:
        # The SDK insists on a key; it can be told not to send it.
        openai_client(gw, "unsent").chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"Authorization": openai.Omit()}
        )
    assert missing.value.status_code == 401
    assert missing.value.body["code"] == "invalid_api_key"
    assert missing.value.body["message"].startswith("missing API key")
    with pytest.raises(openai.AuthenticationError) as wrong:
        openai_client(gw, "sk-not-a-gateway-key").chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
    assert wrong.value.body == {
        "message": "invalid API key: not a key of this gateway",
        "type": "authentication_error",
        "param": None,
        "code": "invalid_api_key",
    }
    assert emulator.requests == []  # nothing went upstream

    for key in (ALICE, BOB, CAROL):  # a plain key and hashed ones; the route allows every key
        reply = openai_client(gw, key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert reply.usage.total_tokens == 37
    assert len(emulator.requests) == 3
    for sent in emulator.requests:
        credentials = {name: sent.headers[name] for name in CREDENTIAL_HEADERS if name in sent.headers}
        assert credentials == {"authorization": f"Bearer {OPENAI_KEY}"}
    records = gw.wait_records(3)
    assert [r["ai"]["proxy"]["meta"]["consumer"] for r in records] == ["alice", "bob", "carol"]
    assert_no_gateway_key_anywhere(gw, emulator)


def test_anthropic_sdk_with_x_api_key_on_a_native_route(gw, emulator):
    with pytest.raises(anthropic.AuthenticationError) as missing:
        ask_claude(anthropic_client(gw, None, default_headers={"Authorization": anthropic.Omit()}))
    assert missing.value.status_code == 401
    assert missing.value.body["error"]["code"] == "invalid_api_key"
    assert missing.value.body["error"]["message"].startswith("missing API key")
    with pytest.raises(anthropic.AuthenticationError) as wrong:
        ask_claude(anthropic_client(gw, "sk-ant-guess"))
    assert wrong.value.body["error"]["message"] == "invalid API key: not a key of this gateway"
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        ask_claude(anthropic_client(gw, CAROL))
    assert refused.value.status_code == 403
    assert refused.value.body["error"] == {
        "message": "the key 'carol' is not allowed on route 'claude'",
        "type": "permission_error",
        "param": None,
        "code": "key_not_allowed",
    }
    assert emulator.requests == []

    for key in (ALICE, BOB):
        message = ask_claude(anthropic_client(gw, key))
        assert message.usage.output_tokens == 13
    assert [r.path for r in emulator.requests] == ["/v1/messages", "/v1/messages"]
    for sent in emulator.requests:
        credentials = {name: sent.headers[name] for name in CREDENTIAL_HEADERS if name in sent.headers}
        assert credentials == {"x-api-key": ANTHROPIC_KEY}
    records = gw.wait_records(2)
    assert [(r["ai"]["proxy"]["meta"]["route"], r["ai"]["proxy"]["meta"]["consumer"]) for r in records] == [
        ("claude", "alice"),
        ("claude", "bob"),
    ]
    assert_no_gateway_key_anywhere(gw, emulator)


def test_a_daily_token_limit_counts_streams_and_answers_429(gw, emulator):
    stream = openai_client(gw, DAVE).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[-1].usage.total_tokens > 1
    (record,) = gw.wait_records(1)
    assert (record["ai"]["proxy"]["meta"]["consumer"], record["ai"]["proxy"]["meta"]["request_mode"]) == (
        "dave",
        "stream",
    )
    with pytest.raises(openai.RateLimitError) as limited:
        openai_client(gw, DAVE).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert limited.value.body["code"] == "rate_limit_exceeded"
    retry_after = int(limited.value.response.headers["retry-after"])
    assert 0 < retry_after <= 86400
    assert limited.value.body["message"] == (
        f"the key 'dave' reached its limit: tokens_per_day (1); retry after {retry_after} s"
    )
    # The limit is the key's, on every route it may use.
    with pytest.raises(anthropic.RateLimitError):
        ask_claude(anthropic_client(gw, DAVE))
    assert len(emulator.requests) == 1
    # Other keys are not affected.
    assert openai_client(gw, ALICE).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).usage
    gw.wait_records(2)
    assert_no_gateway_key_anywhere(gw, emulator)
