"""Access decisions (transforms/access.py) and the gateway_keys config: pure, with a clock the test sets."""

from __future__ import annotations

import hashlib
import hmac

import orjson
import pytest

from addon.config_loader import ConfigError, parse_config
from transforms.access import (
    DAY,
    Admission,
    Meter,
    Refusal,
    admit,
    attaches_credentials,
    count_usage,
    decide,
    find_key,
    is_loopback,
    limit_refusal,
    listens_beyond_loopback,
)
from transforms.auth import CREDENTIAL_HEADERS
from transforms.config import GatewayConfig, KeyLimits

ALICE = "alice-key-9f2c1e"
BOB = "bob-key-77aa01"
CAROL = "carol-key-5d5d5d"
# Midnight UTC, so minute and day windows start here.
T0 = 1_700_006_400.0
assert T0 % DAY == 0


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def chat_route(name: str = "chat", **extra) -> dict:
    return {
        "name": name,
        "match": {"path": f"/{name}"},
        "route_type": "llm/v1/chat",
        "auth": {"header_name": "Authorization", "header_value": "Bearer sk-provider"},
        "model": {"provider": "openai"},
        **extra,
    }


def keyed_config(**route_extra) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "gateway_keys": [
                {"name": "alice", "key": ALICE},
                {"name": "bob", "key_sha256": sha(BOB).upper()},  # hex case does not matter
                {"name": "carol", "key_sha256": sha(CAROL)},
            ],
            "routes": [chat_route(), chat_route("narrow", allow_keys=["alice", "bob"], **route_extra)],
        }
    )


def error_of(decision) -> dict:
    assert isinstance(decision, Refusal)
    return {"status": decision.error.status, **orjson.loads(decision.error.body())["error"]}


# --- which key --------------------------------------------------------------------------------------


def test_plain_and_hashed_keys_are_found_alike():
    keys = keyed_config().gateway_keys
    assert find_key(keys, ALICE).name == "alice"
    assert find_key(keys, BOB).name == "bob"
    assert find_key(keys, CAROL).name == "carol"
    assert find_key(keys, "not-a-key") is None
    assert find_key(keys, sha(BOB)) is None  # the digest itself is not the key
    assert find_key(keys, "") is None
    assert find_key(keys, None) is None


def test_every_key_is_compared_in_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    keys = keyed_config().gateway_keys
    assert find_key(keys, ALICE).name == "alice"  # the first key matches...
    assert calls == [(32, 32)] * 3  # ...and still every key is compared, digest to digest


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": f"Bearer {ALICE}"},
        {"authorization": f"bearer {ALICE}"},
        {"x-api-key": ALICE},
        {"api-key": ALICE},
        {"x-goog-api-key": ALICE},
        {
            "authorization": "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/bedrock/aws4_request",
            "x-api-key": ALICE,
        },
    ],
)
def test_the_key_is_read_from_every_sdk_header(headers):
    decision = decide(
        keyed_config(), keyed_config().routes[0], headers, client_is_local=True, open_access=False
    )
    assert decision == Admission(keyed_config().gateway_keys[0], CREDENTIAL_HEADERS)


def test_missing_and_unknown_keys_get_401():
    config = keyed_config()
    route = config.routes[0]
    for headers in ({}, {"authorization": "Bearer "}, {"authorization": f"Basic {ALICE}"}):
        assert error_of(decide(config, route, headers, client_is_local=True, open_access=True)) == {
            "status": 401,
            "message": "missing API key: send your gateway key as Authorization: Bearer <key>, x-api-key, "
            "api-key or x-goog-api-key",
            "type": "authentication_error",
            "param": None,
            "code": "invalid_api_key",
        }
        assert decide(config, route, headers, client_is_local=True, open_access=True).strip_headers == (
            CREDENTIAL_HEADERS
        )
    wrong = decide(config, route, {"x-api-key": "sk-guess"}, client_is_local=True, open_access=True)
    assert wrong.strip_headers == CREDENTIAL_HEADERS
    assert error_of(wrong) == {
        "status": 401,
        "message": "invalid API key: not a key of this gateway",
        "type": "authentication_error",
        "param": None,
        "code": "invalid_api_key",
    }


def test_allow_keys_narrows_a_route():
    config = keyed_config()
    narrow = config.routes[1]
    assert (
        decide(config, narrow, {"x-api-key": BOB}, client_is_local=True, open_access=False).key.name == "bob"
    )
    refused = decide(config, narrow, {"x-api-key": CAROL}, client_is_local=True, open_access=False)
    assert refused.strip_headers == CREDENTIAL_HEADERS
    assert error_of(refused) == {
        "status": 403,
        "message": "the key 'carol' is not allowed on route 'narrow'",
        "type": "permission_error",
        "param": None,
        "code": "key_not_allowed",
    }
    # Every route without allow_keys takes every key.
    assert decide(
        config, config.routes[0], {"x-api-key": CAROL}, client_is_local=False, open_access=False
    ).key


# --- no open relay -----------------------------------------------------------------------------------


def keyless(*routes: dict) -> GatewayConfig:
    return GatewayConfig.model_validate({"routes": list(routes)})


def test_without_keys_credential_routes_serve_only_local_clients():
    config = keyless(chat_route())
    route = config.routes[0]
    assert decide(config, route, {}, client_is_local=True, open_access=False) == Admission()
    # Without gateway keys a client's own credential is its business (allow_override may use it).
    assert (
        decide(config, route, {"x-api-key": "own"}, client_is_local=False, open_access=True).strip_headers
        == ()
    )
    assert decide(config, route, {}, client_is_local=False, open_access=True) == Admission()
    assert error_of(decide(config, route, {}, client_is_local=False, open_access=False)) == {
        "status": 403,
        "message": "route 'chat' attaches the gateway's provider credentials and serves only clients on this "
        "machine: configure gateway_keys, or set --set ai_proxy_open_access=true",
        "type": "permission_error",
        "param": None,
        "code": "loopback_only",
    }


def test_which_routes_attach_credentials():
    config = keyless(
        chat_route("header"),
        {**chat_route("none"), "auth": {}},
        {**chat_route("query"), "auth": {"param_name": "key", "param_value": "k", "param_location": "query"}},
        {"name": "bedrock", "route_type": "llm/v1/chat", "model": {"provider": "bedrock"}},  # AWS_* env
        {
            "name": "ollama",
            "route_type": "llm/v1/chat",
            "model": {"provider": "ollama", "options": {"upstream_url": "http://127.0.0.1:11434"}},
        },
    )
    found = {r.name: attaches_credentials(r) for r in config.routes}
    assert found == {"header": True, "none": False, "query": True, "bedrock": True, "ollama": False}
    ollama = config.routes[-1]
    assert decide(config, ollama, {}, client_is_local=False, open_access=False) == Admission()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("203.0.113.7", False),
        ("::ffff:10.0.0.1", False),
        ("fe80::1%eth0", False),
        ("", False),
        (None, False),
        ("localhost", False),  # a client address is never a name
    ],
)
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("host", "beyond"),
    [
        ("", True),
        ("0.0.0.0", True),
        ("::", True),
        ("192.168.1.20", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("localhost", False),
        ("LOCALHOST", False),
    ],
)
def test_listen_hosts_beyond_loopback(host, beyond):
    assert listens_beyond_loopback(host) is beyond


# --- limits ------------------------------------------------------------------------------------------


def test_requests_per_minute_in_epoch_aligned_minutes():
    meter, limits = Meter(), KeyLimits(requests_per_minute=2)
    assert admit(meter, limits, T0 + 10) is None
    assert admit(meter, limits, T0 + 20) is None
    hit = admit(meter, limits, T0 + 30)
    assert (hit.reached, hit.retry_after) == (("requests_per_minute (2)",), 30)
    assert admit(meter, limits, T0 + 59.2).retry_after == 1  # rounded up, never 0
    assert meter.minute_requests == 2  # refused requests are not counted
    assert admit(meter, limits, T0 + 60) is None  # a new minute
    assert admit(meter, limits, T0 + 61) is None
    assert admit(meter, limits, T0 + 62).retry_after == 58


def test_tokens_per_minute_count_finished_calls():
    meter, limits = Meter(), KeyLimits(tokens_per_minute=100)
    assert admit(meter, limits, T0 + 1) is None
    count_usage(meter, 60, 0.0, T0 + 2)
    assert admit(meter, limits, T0 + 3) is None  # 60 < 100: the next call may still run
    count_usage(meter, 50, 0.0, T0 + 4)  # that call crosses the limit; it completed
    hit = admit(meter, limits, T0 + 5)
    assert (hit.reached, hit.retry_after) == (("tokens_per_minute (100)",), 55)
    assert admit(meter, limits, T0 + 60) is None


def test_day_limits_last_until_midnight_utc():
    meter, limits = Meter(), KeyLimits(tokens_per_day=1000, cost_per_day=0.5)
    count_usage(meter, 999, 0.25, T0 + 100)
    assert admit(meter, limits, T0 + 200) is None
    count_usage(meter, 1, 0.0, T0 + 300)
    hit = admit(meter, limits, T0 + 3600)
    assert (hit.reached, hit.retry_after) == (("tokens_per_day (1000)",), DAY - 3600)
    count_usage(meter, 0, 0.25, T0 + 3601)
    assert admit(meter, limits, T0 + 3602).reached == ("tokens_per_day (1000)", "cost_per_day (0.5)")
    assert admit(meter, limits, T0 + DAY - 1).retry_after == 1
    assert admit(meter, limits, T0 + DAY) is None  # the next day starts from zero
    assert (meter.day_tokens, meter.day_cost) == (0, 0.0)


def test_the_longest_window_decides_retry_after():
    meter, limits = Meter(), KeyLimits(requests_per_minute=1, tokens_per_day=10)
    assert admit(meter, limits, T0 + 30) is None
    count_usage(meter, 10, 0.0, T0 + 31)
    hit = admit(meter, limits, T0 + 40)
    assert hit.reached == ("requests_per_minute (1)", "tokens_per_day (10)")
    assert hit.retry_after == DAY - 40


def test_no_limits_never_refuse():
    meter = Meter()
    for second in range(200):
        count_usage(meter, 10_000, 5.0, T0 + second)
        assert admit(meter, KeyLimits(), T0 + second) is None


def test_limit_refusal_is_a_429_with_retry_after():
    key = keyed_config().gateway_keys[0]
    meter = Meter()
    admit(meter, KeyLimits(requests_per_minute=1), T0)
    refusal = limit_refusal(key, admit(meter, KeyLimits(requests_per_minute=1), T0 + 15))
    assert refusal.headers == {"retry-after": "45"}
    assert refusal.strip_headers == CREDENTIAL_HEADERS
    assert error_of(refusal) == {
        "status": 429,
        "message": "the key 'alice' reached its limit: requests_per_minute (1); retry after 45 s",
        "type": "rate_limit_error",
        "param": None,
        "code": "rate_limit_exceeded",
    }


# --- config ------------------------------------------------------------------------------------------

ROUTE_YAML = """
  - name: chat
    route_type: llm/v1/chat
    auth: {header_name: Authorization, header_value: Bearer sk-provider}
    model: {provider: openai}
"""


def config_errors(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "routes.yaml", env or {})
    return str(info.value).splitlines()


def test_keys_from_the_environment_and_from_hashes():
    text = f"gateway_keys:\n  - {{name: a, key: '${{A_KEY}}'}}\n  - {{name: b, key_sha256: '{sha(BOB)}'}}\n"
    config = parse_config(text + "routes:" + ROUTE_YAML, "routes.yaml", {"A_KEY": ALICE})
    assert [k.name for k in config.gateway_keys] == ["a", "b"]
    assert config.gateway_keys[0].digest == bytes.fromhex(sha(ALICE))
    assert ALICE not in repr(config)  # the plain key never shows in a repr


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ("- {key: abc}", "gateway key #1: name: Field required"),
        ("- {name: a}", "gateway key 'a': must set exactly one of 'key' or 'key_sha256'"),
        (
            f"- {{name: a, key: abc, key_sha256: '{sha('abc')}'}}",
            "gateway key 'a': must set exactly one of 'key' or 'key_sha256'",
        ),
        (
            "- {name: a, key_sha256: 'abc123'}",
            "gateway key 'a': key_sha256: must be 64 hexadecimal characters (the key's SHA-256 digest), "
            "quoted in YAML",
        ),
        (
            "- {name: a, key_sha256: " + "1" * 64 + "}",  # YAML reads it as a number
            "gateway key 'a': key_sha256: must be 64 hexadecimal characters (the key's SHA-256 digest), "
            "quoted in YAML",
        ),
        ("- {name: a, key: ''}", "gateway key 'a': key: String should have at least 1 character"),
        (
            "- {name: a, key: abc, limits: {requests_per_minute: 0}}",
            "gateway key 'a': limits.requests_per_minute: Input should be greater than 0",
        ),
        ("- {name: a, key: abc, limits: {per_hour: 3}}", "gateway key 'a': limits.per_hour: unknown field"),
        (
            "- {name: a, key: abc}\n  - {name: a, key: def}",
            "gateway key 'a': the name is used more than once",
        ),
    ],
)
def test_bad_gateway_key_entries_name_the_entry(entries, expected):
    assert config_errors(f"gateway_keys:\n  {entries}\nroutes:{ROUTE_YAML}") == [expected]


def test_a_missing_key_variable_names_the_entry():
    assert config_errors("gateway_keys:\n  - {name: a, key: '${NOPE}'}\nroutes:" + ROUTE_YAML) == [
        "gateway key 'a': environment variable 'NOPE' is not set (used in key)"
    ]


def test_route_rules_name_the_route():
    text = (
        "gateway_keys:\n  - {name: a, key: abc, limits: {tokens_per_day: 10}}\n  - {name: b, key: def}\n"
        "routes:\n"
        "  - {name: r1, route_type: llm/v1/chat, model: {provider: openai}, allow_keys: [a, zed]}\n"
        "  - name: r2\n    route_type: llm/v1/chat\n    model: {provider: openai}\n"
        "    auth: {header_name: x-api-key, header_value: k, allow_override: true}\n"
        "  - name: r3\n    route_type: llm/v1/chat\n    model: {provider: openai}\n"
        "    logging: {log_statistics: false}\n"
        "  - {name: r4, route_type: llm/v1/chat, model: {provider: openai}, allow_keys: [b],"
        " logging: {log_statistics: false}}\n"
        "  - {name: r5, route_type: llm/v1/chat, model: {provider: openai}, allow_keys: []}\n"
    )
    assert config_errors(text) == [
        "route 'r5': allow_keys: List should have at least 1 item after validation, not 0"
    ]
    assert config_errors(text.rsplit("  - {name: r5", 1)[0]) == [
        "route 'r1': allow_keys names unknown gateway key 'zed'",
        "route 'r2': auth.allow_override cannot be true when gateway_keys are defined (the client's key is "
        "then its gateway key, not a provider key)",
        "route 'r3': logging.log_statistics must be true: the token and cost limits of 'a' are counted from "
        "statistics",
    ]  # r4 admits only b, which has no token or cost limit


def test_allow_keys_without_gateway_keys_is_an_error():
    text = "routes:\n  - {name: r1, route_type: llm/v1/chat, model: {provider: openai}, allow_keys: [a]}\n"
    assert config_errors(text) == ["route 'r1': allow_keys names unknown gateway key 'a'"]


def test_allow_override_stays_legal_without_gateway_keys():
    text = (
        "routes:\n  - name: r\n    route_type: llm/v1/chat\n    model: {provider: openai}\n"
        "    auth: {header_name: Authorization, header_value: Bearer k, allow_override: true}\n"
    )
    assert parse_config(text, "routes.yaml", {}).routes[0].auth.allow_override is True


def test_errors_never_echo_a_key():
    text = f"gateway_keys:\n  - {{name: a, key: {ALICE}, limits: {{cost_per_day: -1}}}}\nroutes:{ROUTE_YAML}"
    errors = config_errors(text)
    assert errors == ["gateway key 'a': limits.cost_per_day: Input should be greater than 0"]
    assert ALICE not in "\n".join(errors)
