"""End to end: targets, retries and fallback through the upstream relay, against local upstreams
that fail on cue (tests/fake_upstream.py), and the gateway's own errors for dead upstreams."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest
from conftest import route
from fake_upstream import FakeUpstream, refused_port, self_signed

ALL_CRITERIA = [
    "error",
    "timeout",
    "http_403",
    "http_404",
    "http_429",
    "http_500",
    "http_502",
    "http_503",
    "http_504",
]
DEAD = refused_port()
ANTHROPIC_OPTIONS = {"anthropic_version": "2023-06-01"}


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeUpstream]]:
    made = {name: FakeUpstream(name) for name in ("a", "b", "c")}
    yield made
    for fake in made.values():
        fake.stop()


def target(provider: str, url: str, name: str, weight: int, **model: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"upstream_url": url}
    if provider == "anthropic":
        options.update(ANTHROPIC_OPTIONS)
    return {
        "route_type": "llm/v1/chat",
        "auth": {"header_name": "Authorization", "header_value": f"Bearer key-{name}"},
        "model": {"provider": provider, "name": name, "options": options, **model},
        "weight": weight,
        "description": f"target {name}",
    }


def advanced(name: str, targets: list[dict[str, Any]], **balancer: Any) -> dict[str, Any]:
    return {
        "name": name,
        "match": {"path": f"/{name}/v1/chat/completions"},
        "targets": targets,
        "balancer": balancer,
    }


def first_then(first_url: str, name: str, then: dict[str, Any], **balancer: Any) -> dict[str, Any]:
    """A priority route: ``gpt-a`` (or a dead one) at ``first_url`` first, ``then`` when it fails."""
    model = "gpt-dead" if str(DEAD) in first_url else "gpt-a"
    return advanced(name, [target("openai", first_url, model, 10), then], algorithm="priority", **balancer)


@pytest.fixture
def gw(gateway, fakes):
    a, b, c = fakes["a"].url, fakes["b"].url, fakes["c"].url
    for fake in fakes.values():
        fake.reset()
    fast = {"read_timeout": 500, "retries": 2, "failover_criteria": ALL_CRITERIA}
    routes = [
        # Priority: a (weight 10) first, b when it fails; a cross-format fallback to anthropic on c.
        first_then(a, "fo", target("openai", b, "gpt-b", 1), **fast),
        first_then(a, "cross", target("anthropic", c, "claude-c", 1), **fast),
        first_then(f"http://127.0.0.1:{DEAD}", "refused", target("openai", b, "gpt-b", 1), **fast),
        first_then(a, "rested", target("openai", b, "gpt-b", 1), **fast),
        advanced(
            "aliases",
            [
                target("openai", a, "gpt-a", 100, model_alias="fast"),
                target("openai", b, "gpt-b", 100, model_alias="smart"),
            ],
        ),
        advanced(
            "default-criteria",
            [target("openai", a, "gpt-a", 10), target("openai", b, "gpt-b", 1)],
            algorithm="priority",
        ),
        route(
            "single-dead",
            "/single-dead/v1/chat/completions",
            "llm/v1/chat",
            "openai",
            f"http://127.0.0.1:{DEAD}",
            model="gpt-4o",
        ),
        route(
            "single-reset", "/single-reset/v1/chat/completions", "llm/v1/chat", "openai", a, model="gpt-4o"
        ),
        route(
            "single-slow",
            "/single-slow/v1/chat/completions",
            "llm/v1/chat",
            "openai",
            a,
            model="gpt-4o",
            balancer={"read_timeout": 300, "retries": 0},
        ),
        advanced(
            "breaker",
            [target("openai", a, "gpt-a", 10), target("openai", b, "gpt-b", 1)],
            algorithm="priority",
            max_fails=1,
            fail_timeout=400,
        ),
        route(
            "anth-dead",
            "/anth-dead/*",
            "llm/v1/chat",
            "openai",
            f"http://127.0.0.1:{DEAD}",
            model="gpt-4o",
            llm_format="anthropic",
        ),
        route(
            "single-retry",
            "/single-retry/v1/chat/completions",
            "llm/v1/chat",
            "openai",
            a,
            model="gpt-4o",
            balancer={"retries": 2, "failover_criteria": ["error", "http_500"]},
        ),
    ]
    return gateway(routes, extra=["--set", "flow_detail=1"])


def chat(gw, name: str, model: str = "anything", **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    return httpx.post(f"{gw.url}/{name}/v1/chat/completions", json=body, timeout=10)


def last_record(gw, count: int = 1) -> dict[str, Any]:
    return gw.wait_records(count)[-1]["ai"]["proxy"]


def text_of(resp: httpx.Response) -> str:
    return resp.json()["choices"][0]["message"]["content"]


# --- failover on each criterion ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "action",
    [
        "status:500",
        "status:502",
        "status:503",
        "status:504",
        "status:403",
        "status:404",
        "status:429",
        "reset",
        "slow:1.5",
    ],
)
def test_fails_over_to_the_next_target(gw, fakes, action) -> None:
    fakes["a"].cue(action)
    resp = chat(gw, "fo")
    assert resp.status_code == 200, resp.text
    assert text_of(resp) == "hello from b"
    assert [r["body"]["model"] for r in fakes["a"].requests] == ["gpt-a"]
    assert [r["body"]["model"] for r in fakes["b"].requests] == [
        "gpt-b"
    ]  # the balancer's model, not the client's
    assert fakes["b"].requests[0]["headers"]["authorization"] == "Bearer key-gpt-b"
    meta = last_record(gw)["meta"]
    assert meta["target"] == {"provider": "openai", "model": "gpt-b", "description": "target gpt-b"}
    assert (meta["retries"], meta["fallbacks"]) == (0, 1)
    # mitmproxy's flow list shows the request as sent to the target that answered.
    deadline = time.monotonic() + 3
    while f"POST {fakes['b'].url}/v1/chat/completions" not in gw.log and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"POST {fakes['b'].url}/v1/chat/completions" in gw.log


def test_refused_connection_fails_over(gw, fakes) -> None:
    resp = chat(gw, "refused")
    assert resp.status_code == 200
    assert text_of(resp) == "hello from b"
    assert last_record(gw)["meta"]["target"]["model"] == "gpt-b"


def test_fallback_across_formats_translates_afresh(gw, fakes) -> None:
    fakes["a"].cue("status:502")
    resp = chat(gw, "cross")
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "hello from c"
    sent = fakes["c"].requests[0]
    assert sent["path"] == "/v1/messages"
    assert sent["body"]["model"] == "claude-c"
    assert sent["body"]["messages"] == [{"role": "user", "content": "hi"}]
    assert sent["headers"]["authorization"] == "Bearer key-claude-c"
    meta = last_record(gw)["meta"]
    assert (meta["provider_name"], meta["target"]["provider"], meta["fallbacks"]) == (
        "anthropic",
        "anthropic",
        1,
    )


def test_no_failover_on_a_client_error(gw, fakes) -> None:
    fakes["a"].cue("status:400")
    resp = chat(gw, "fo")
    assert resp.status_code == 400
    assert resp.json()["error"]["message"] == "a says 400"
    assert fakes["b"].requests == []


def test_failover_only_on_listed_criteria(gw, fakes) -> None:
    fakes["a"].cue("status:500")
    resp = chat(gw, "default-criteria")  # [error, timeout]: a 500 is the answer
    assert resp.status_code == 500
    assert fakes["b"].requests == []
    fakes["a"].cue("reset")
    assert text_of(chat(gw, "default-criteria")) == "hello from b"


def test_retry_after_rests_the_target(gw, fakes) -> None:
    fakes["a"].cue("status:429:30")
    assert text_of(chat(gw, "rested")) == "hello from b"
    # a is the first choice (higher priority) but rests for 30 s: b answers without a being asked.
    assert text_of(chat(gw, "rested")) == "hello from b"
    assert len(fakes["a"].requests) == 1
    assert len(fakes["b"].requests) == 2


def test_single_target_retries_itself(gw, fakes) -> None:
    fakes["a"].cue("status:500", "reset")
    resp = chat(gw, "single-retry", "gpt-4o")
    assert resp.status_code == 200
    assert len(fakes["a"].requests) == 3
    meta = last_record(gw)["meta"]
    assert (meta["retries"], meta["fallbacks"], meta["target"]["model"]) == (2, 0, "gpt-4o")


def test_retries_run_out_and_the_last_answer_stands(gw, fakes) -> None:
    fakes["a"].cue("status:500", "status:500", "status:500")
    resp = chat(gw, "single-retry", "gpt-4o")
    assert resp.status_code == 500
    assert resp.json()["error"]["message"] == "a says 500"
    assert len(fakes["a"].requests) == 3


def test_circuit_breaker_rests_a_failing_target_then_probes_it(gw, fakes) -> None:
    fakes["a"].cue("reset")
    assert text_of(chat(gw, "breaker")) == "hello from b"  # a failed once: its circuit opens
    assert text_of(chat(gw, "breaker")) == "hello from b"  # open: a is not asked
    assert len(fakes["a"].requests) == 1
    time.sleep(0.5)  # past fail_timeout: half-open, one try
    assert text_of(chat(gw, "breaker")) == "hello from a"
    assert text_of(chat(gw, "breaker")) == "hello from a"  # closed again
    assert len(fakes["a"].requests) == 3


# --- aliases ----------------------------------------------------------------------------------------


def test_alias_picks_its_target(gw, fakes) -> None:
    assert text_of(chat(gw, "aliases", "smart")) == "hello from b"
    assert text_of(chat(gw, "aliases", "fast")) == "hello from a"
    assert fakes["b"].requests[0]["body"]["model"] == "gpt-b"


def test_unknown_model_on_aliased_route_is_400(gw, fakes) -> None:
    resp = chat(gw, "aliases", "gpt-4o")
    assert resp.status_code == 400
    assert resp.json()["error"] == {
        "message": "model 'gpt-4o' is not served by this route; accepted: fast, smart",
        "type": "invalid_request_error",
        "param": None,
        "code": "model_not_found",
    }


# --- streams -----------------------------------------------------------------------------------------


def stream_text(resp: httpx.Response) -> tuple[str, list[dict[str, Any]]]:
    text, errors = "", []
    for line in resp.text.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = orjson.loads(line[6:])
        if "error" in event:
            errors.append(event["error"])
        for choice in event.get("choices") or ():
            text += choice["delta"].get("content") or ""
    return text, errors


def test_stream_falls_back_before_its_first_byte(gw, fakes) -> None:
    fakes["a"].cue("reset")
    fakes["b"].cue("stream")
    resp = chat(gw, "fo", stream=True)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert stream_text(resp) == ("hello from b", [])
    assert last_record(gw)["meta"]["fallbacks"] == 1


def test_stream_cut_after_its_first_byte_ends_with_an_error_event(gw, fakes) -> None:
    fakes["a"].cue("stream_cut")
    resp = chat(gw, "fo", stream=True)
    assert resp.status_code == 200
    text, errors = stream_text(resp)
    assert text == "hello "  # a's first event, and nothing of b's
    assert fakes["b"].requests == []
    assert len(errors) == 1
    assert errors[0]["code"] == "upstream_stream_cut"
    assert errors[0]["message"].startswith("openai (gpt-a) broke off the stream")
    meta = last_record(gw)["meta"]
    assert "broke off the stream" in meta["error"]
    assert (meta["fallbacks"], meta["target"]["model"]) == (0, "gpt-a")


# --- the gateway's own errors for dead upstreams, with the openai SDK as client ------------------------


def sdk(gw, name: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/{name}/v1", api_key="sk-client", max_retries=0, timeout=10)


def test_unreachable_upstream_is_a_502_the_sdk_reads(gw) -> None:
    with pytest.raises(openai.InternalServerError) as err:
        sdk(gw, "single-dead").chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
    assert err.value.status_code == 502
    body = err.value.body
    assert isinstance(body, dict)
    assert body["code"] == "upstream_connect_failed"
    assert body["type"] == "api_error"
    assert body["message"].startswith(
        f"the openai upstream for model gpt-4o cannot be reached (127.0.0.1:{DEAD}:"
    )
    meta = last_record(gw)["meta"]
    assert (meta["status"], meta["error"]) == (502, body["message"])


def test_reset_upstream_is_a_502(gw, fakes) -> None:
    fakes["a"].cue("reset")
    with pytest.raises(openai.InternalServerError) as err:
        sdk(gw, "single-reset").chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
    assert err.value.status_code == 502
    assert isinstance(err.value.body, dict)
    assert err.value.body["code"] == "upstream_reset"
    assert err.value.body["message"].startswith("the openai upstream for model gpt-4o reset the connection (")


def test_timed_out_upstream_is_a_504(gw, fakes) -> None:
    fakes["a"].cue("slow:1")
    with pytest.raises(openai.InternalServerError) as err:
        sdk(gw, "single-slow").chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
    assert err.value.status_code == 504
    assert isinstance(err.value.body, dict)
    assert err.value.body["code"] == "upstream_timeout"
    assert err.value.body["message"] == "the openai upstream for model gpt-4o timed out (no data for 0.3 s)"


def test_dead_upstream_in_the_anthropic_clients_format(gw) -> None:
    client = anthropic.Anthropic(base_url=f"{gw.url}/anth-dead", api_key="k", max_retries=0, timeout=10)
    with pytest.raises(anthropic.InternalServerError) as err:
        client.messages.create(model="gpt-4o", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 502
    assert isinstance(err.value.body, dict)
    assert err.value.body["type"] == "error"
    assert err.value.body["error"]["type"] == "api_error"
    assert err.value.body["error"]["message"].startswith(
        "the openai upstream for model gpt-4o cannot be reached"
    )


def test_dead_upstream_of_a_stream_is_a_json_error(gw) -> None:
    with pytest.raises(openai.InternalServerError) as err:
        sdk(gw, "single-dead").chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    assert err.value.status_code == 502
    assert isinstance(err.value.body, dict) and err.value.body["code"] == "upstream_connect_failed"


def test_relay_balanced_only_leaves_plain_routes_to_mitmproxy(gateway, fakes) -> None:
    routes = [
        route(
            "plain",
            "/plain/v1/chat/completions",
            "llm/v1/chat",
            "openai",
            f"http://127.0.0.1:{DEAD}",
            model="m",
        ),
        advanced(
            "fo",
            [
                target("openai", f"http://127.0.0.1:{DEAD}", "gpt-dead", 10),
                target("openai", fakes["b"].url, "gpt-b", 1),
            ],
            algorithm="priority",
        ),
    ]
    gw = gateway(routes, extra=["--set", "ai_proxy_relay=balanced"])
    plain = chat(gw, "plain", "m")
    assert plain.status_code == 502
    assert plain.headers["content-type"].startswith("text/html")  # mitmproxy's own page: no relay hop
    assert text_of(chat(gw, "fo")) == "hello from b"  # balanced routes are relayed still


def test_cassettes_do_not_record_a_call_that_fell_back(gateway, fakes, tmp_path_factory) -> None:
    folder = tmp_path_factory.mktemp("fellback-cassettes")
    for fake in fakes.values():
        fake.reset()
    routes = [
        advanced(
            "fo",
            [target("openai", fakes["a"].url, "gpt-a", 10), target("openai", fakes["b"].url, "gpt-b", 1)],
            algorithm="priority",
            failover_criteria=["error", "http_500"],
        )
    ]
    gw = gateway(routes, extra=["--set", f"ai_proxy_cassettes={folder}"])
    fakes["a"].cue("status:500")
    assert text_of(chat(gw, "fo", "first")) == "hello from b"
    assert text_of(chat(gw, "fo", "second")) == "hello from a"
    deadline = time.monotonic() + 5
    while not list(folder.rglob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    recorded = [orjson.loads(p.read_bytes()) for p in folder.rglob("*.json")]
    assert len(recorded) == 1
    assert "gpt-a" in orjson.dumps(recorded[0]).decode()
    assert "not recording" in gw.log and "fell back to another target" in gw.log


def test_https_upstream_verified_against_the_trusted_ca(gateway, tmp_path_factory) -> None:
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    secure = FakeUpstream("secure", tls=(cert, key))
    try:
        routes = [route("tls", "/tls/v1/chat/completions", "llm/v1/chat", "openai", secure.url, model="m")]
        untrusted = chat(gateway(routes), "tls", "m")
        assert untrusted.status_code == 502
        assert untrusted.json()["error"]["code"] == "upstream_connect_failed"
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted.json()["error"]["message"]
        trusted = gateway(routes, extra=["--set", f"ssl_verify_upstream_trusted_ca={cert}"])
        assert text_of(chat(trusted, "tls", "m")) == "hello from secure"
        insecure = gateway(routes, extra=["--set", "ssl_insecure=true"])
        assert text_of(chat(insecure, "tls", "m")) == "hello from secure"
    finally:
        secure.stop()
