"""End to end: the real openai SDK -> mitmdump + addon -> the local provider emulator."""

from __future__ import annotations

import httpx
import openai
import pytest
from conftest import fixture_bytes, fixture_json, route

OPENAI_KEY = "sk-configured-0123456789"


@pytest.fixture
def gw(gateway, emulator):
    routes = [
        route(
            "chat",
            "/v1/chat/completions",
            "llm/v1/chat",
            "openai",
            emulator.url,
            auth={"header_name": "Authorization", "header_value": f"Bearer {OPENAI_KEY}"},
            options={"input_cost": 10.0, "output_cost": 10.0, "max_tokens": 256, "temperature": 0.5},
            logging={"log_statistics": True, "log_payloads": True},
        ),
        route(
            "completions",
            "/v1/completions",
            "llm/v1/completions",
            "openai",
            emulator.url,
            auth={"header_name": "Authorization", "header_value": f"Bearer {OPENAI_KEY}"},
        ),
        route(
            "embeddings",
            "/v1/embeddings",
            "llm/v1/embeddings",
            "openai",
            emulator.url,
            auth={"header_name": "Authorization", "header_value": f"Bearer {OPENAI_KEY}"},
        ),
        route(
            "fixed-model",
            "/fixed/v1/chat/completions",
            "llm/v1/chat",
            "openai",
            emulator.url,
            model="gpt-4o-mini",
            auth={"header_name": "Authorization", "header_value": f"Bearer {OPENAI_KEY}"},
            max_request_body_size=2048,
            response_streaming="deny",
        ),
        route(
            "override",
            "/override/v1/chat/completions",
            "llm/v1/chat",
            "openai",
            emulator.url,
            auth={
                "header_name": "Authorization",
                "header_value": f"Bearer {OPENAI_KEY}",
                "allow_override": True,
            },
        ),
        route(
            "query-auth",
            "/query/v1/chat/completions",
            "llm/v1/chat",
            "openai",
            emulator.url,
            auth={"param_name": "key", "param_value": "query-secret-123", "param_location": "query"},
        ),
        route(
            "body-auth",
            "/body/v1/chat/completions",
            "llm/v1/chat",
            "openai",
            emulator.url,
            auth={"param_name": "api_key", "param_value": "body-secret-456", "param_location": "body"},
            logging={"log_statistics": True, "log_payloads": True},
        ),
        route(
            "azure",
            "/azure/v1/chat/completions",
            "llm/v1/chat",
            "azure",
            emulator.url,
            model="gpt-4o",
            auth={"header_name": "api-key", "header_value": "azure-secret-789"},
            options={
                "azure_instance": "demo",
                "azure_deployment_id": "prod-4o",
                "azure_api_version": "2024-10-21",
            },
        ),
    ]
    return gateway(routes)


def client(gw, prefix: str = "", key: str = "sk-client-own-key") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}{prefix}/v1", api_key=key, max_retries=0, timeout=10)


MESSAGES = [{"role": "user", "content": "What is 1 + 1?"}]


def test_chat_round_trip_and_statistics(gw, emulator):
    reply = client(gw).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.choices[0].message.content == "1 + 1 = 2."
    assert reply.usage.total_tokens == 37
    sent = emulator.last
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"  # the client's key never goes up
    body = sent.json()
    assert body["model"] == "gpt-4o-mini"
    assert body["max_tokens"] == 256 and body["temperature"] == 0.5  # configured defaults applied
    (record,) = gw.wait_records(1)
    proxy = record["ai"]["proxy"]
    assert proxy["meta"]["route"] == "chat"
    assert proxy["meta"]["provider_name"] == "openai"
    assert proxy["meta"]["request_model"] == "gpt-4o-mini"
    assert proxy["meta"]["response_model"] == "gpt-4o-mini-2024-07-18"
    assert isinstance(proxy["meta"]["llm_latency"], int)
    assert proxy["usage"]["prompt_tokens"] == 25
    assert proxy["usage"]["completion_tokens"] == 12
    assert proxy["usage"]["total_tokens"] == 37
    assert proxy["usage"]["cost"] == pytest.approx(0.00037)
    assert OPENAI_KEY not in proxy["payload"]["request"]
    assert '"max_tokens":256' in proxy["payload"]["request"]
    assert "1 + 1 = 2." in proxy["payload"]["response"]
    assert "route=chat provider=openai" in gw.log


def test_client_value_wins_over_configured_default(gw, emulator):
    client(gw).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=9, temperature=0)
    body = emulator.last.json()
    assert body["max_tokens"] == 9
    assert body["temperature"] == 0


def test_completions_and_embeddings(gw, emulator):
    done = client(gw).completions.create(model="gpt-3.5-turbo-instruct", prompt="Say this is a test")
    assert done.choices[0].text == "\n\nThis is indeed a test"
    assert done.object == "text_completion"
    emb = client(gw).embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    expected = fixture_json("openai/embeddings/response.json")
    # The SDK asks for base64 (float32) by default, so values round-trip at float32 precision.
    assert [d.embedding for d in emb.data] == [
        pytest.approx(d["embedding"], rel=1e-6) for d in expected["data"]
    ]
    assert isinstance(emulator.last.json()["encoding_format"], str)
    assert emulator.last.path == "/v1/embeddings"
    records = gw.wait_records(2)
    assert [r["ai"]["proxy"]["usage"]["total_tokens"] for r in records] == [12, 13]


def test_model_enforcement(gw, emulator):
    with pytest.raises(openai.BadRequestError) as err:
        client(gw, "/fixed").chat.completions.create(model="gpt-5", messages=MESSAGES)
    assert err.value.status_code == 400
    assert err.value.body["message"] == "cannot use own model - must be: gpt-4o-mini"
    assert emulator.requests == []
    ok = httpx.post(f"{gw.url}/fixed/v1/chat/completions", json={"messages": MESSAGES})
    assert ok.status_code == 200
    assert emulator.last.json()["model"] == "gpt-4o-mini"


def test_no_model_anywhere(gw):
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"messages": MESSAGES})
    assert r.status_code == 400
    assert (
        r.json()["error"]["message"] == "model parameter not found in request, nor in gateway configuration"
    )


def test_auth_is_replaced_and_client_key_never_forwarded(gw, emulator):
    httpx.post(
        f"{gw.url}/v1/chat/completions",
        json={"model": "m", "messages": MESSAGES},
        headers={"authorization": "Bearer sk-client", "x-api-key": "client-x", "api-key": "client-az"},
    )
    headers = emulator.last.headers
    assert headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert "x-api-key" not in headers and "api-key" not in headers


def test_allow_override_keeps_client_key(gw, emulator):
    client(gw, "/override", key="sk-client-own").chat.completions.create(model="m", messages=MESSAGES)
    assert emulator.last.headers["authorization"] == "Bearer sk-client-own"
    httpx.post(f"{gw.url}/override/v1/chat/completions", json={"model": "m", "messages": MESSAGES})
    assert emulator.last.headers["authorization"] == f"Bearer {OPENAI_KEY}"


def test_query_and_body_param_auth(gw, emulator):
    client(gw, "/query").chat.completions.create(model="m", messages=MESSAGES)
    assert emulator.last.path == "/v1/chat/completions?key=query-secret-123"
    assert "authorization" not in emulator.last.headers
    client(gw, "/body").chat.completions.create(model="m", messages=MESSAGES)
    assert emulator.last.json()["api_key"] == "body-secret-456"
    (record,) = gw.wait_records(2)[-1:]
    assert "body-secret-456" not in record["ai"]["proxy"]["payload"]["request"]
    assert "[REDACTED]" in record["ai"]["proxy"]["payload"]["request"]


def test_azure_url_and_key(gw, emulator):
    reply = client(gw, "/azure").chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert reply.choices[0].message.content == "1 + 1 equals 2."
    assert emulator.last.path == "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21"
    assert emulator.last.headers["api-key"] == "azure-secret-789"
    assert "authorization" not in emulator.last.headers
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["meta"]["azure_deployment_id"] == "prod-4o"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"not json", 400, "request body is not valid JSON"),
        (b'{"model": "m"}', 400, "request body doesn't contain valid prompts"),
        (
            b'{"model": "m", "prompt": "hi"}',
            400,
            "[llm/v1/completions] message format is not compatible with [llm/v1/chat] route type",
        ),
        (
            b'{"model": "m", "messages": [], "prompt": "x"}',
            400,
            "request matches multiple LLM request formats",
        ),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}',
            400,
            "invalid request: 'temperature': 'hot' is not of type 'number', 'null'",
        ),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": 5}]}',
            400,
            "invalid request: 'messages[0].content'",
        ),
    ],
)
def test_bad_requests(gw, emulator, body, status, message):
    r = httpx.post(
        f"{gw.url}/v1/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == status
    error = r.json()["error"]
    assert error["message"].startswith(message)
    assert error["type"] == "invalid_request_error"
    assert emulator.requests == []


def test_chat_body_on_completions_route(gw):
    r = httpx.post(f"{gw.url}/v1/completions", json={"model": "m", "messages": MESSAGES})
    assert r.status_code == 400
    assert (
        r.json()["error"]["message"]
        == "[llm/v1/chat] message format is not compatible with [llm/v1/completions] route type"
    )


def test_body_too_large(gw, emulator):
    big = {"messages": [{"role": "user", "content": "x" * 4000}]}
    r = httpx.post(f"{gw.url}/fixed/v1/chat/completions", json=big)
    assert r.status_code == 413
    assert "exceeds max_request_body_size (2048)" in r.json()["error"]["message"]
    assert emulator.requests == []


def test_streaming_denied(gw):
    r = httpx.post(f"{gw.url}/fixed/v1/chat/completions", json={"messages": MESSAGES, "stream": True})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "response streaming is not enabled for this LLM"


def test_unknown_path_in_gateway_mode(gw):
    r = httpx.post(f"{gw.url}/v2/whatever", json={})
    assert r.status_code == 404
    assert r.json()["error"]["message"] == "no route for POST /v2/whatever"


@pytest.mark.parametrize(
    ("fixture", "status", "exc", "message"),
    [
        ("openai/errors/401.json", 401, openai.AuthenticationError, "Incorrect API key provided"),
        ("openai/errors/429.json", 429, openai.RateLimitError, "Rate limit reached for gpt-4o-mini"),
        ("openai/errors/500.html", 500, openai.InternalServerError, "upstream returned HTTP 500"),
    ],
)
def test_upstream_errors_are_openai_shaped(gw, fixture, status, exc, message):
    c = client(gw).with_options(
        default_headers={"x-emulator-fixture": fixture, "x-emulator-status": str(status)}
    )
    with pytest.raises(exc) as err:
        c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert err.value.status_code == status
    assert err.value.body["message"].startswith(message)


def test_untranslatable_upstream_body_is_502(gw):
    c = client(gw).with_options(default_headers={"x-emulator-fixture": "openai/errors/bad_response.json"})
    with pytest.raises(openai.InternalServerError) as err:
        c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert err.value.status_code == 502
    assert err.value.body["message"] == (
        "failed to translate the openai://llm/v1/chat response: 'choices' not in llm/v1/chat response"
    )


def test_stream_passthrough_with_usage(gw, emulator):
    stream = client(gw).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "1 + 1 = 2."
    assert chunks[-1].usage.total_tokens == 32
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["meta"]["request_mode"] == "stream"
    assert record["ai"]["proxy"]["usage"]["completion_tokens"] == 7


def test_stream_usage_is_asked_for_but_hidden_from_a_client_that_did_not_ask(gw, emulator):
    chunks = list(client(gw).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert emulator.last.json()["stream_options"] == {"include_usage": True}
    assert all(c.choices for c in chunks)  # no usage-only chunk reached the client
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "1 + 1 = 2."
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["usage"]["total_tokens"] == 32
    assert "estimated" not in record["ai"]["proxy"]["usage"]


def test_stream_arrives_incrementally(gw):
    import time

    c = client(gw).with_options(default_headers={"x-emulator-delay-ms": "300"})
    started = time.monotonic()
    stream = c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    first = next(iter(stream))
    first_at = time.monotonic() - started
    rest = list(stream)
    total = time.monotonic() - started
    assert first.choices[0].delta.role == "assistant"
    assert len(rest) == 7
    # 9 events 300 ms apart: the whole stream takes >= 2.4 s, the first chunk must not wait for it.
    assert total >= 2.4
    assert first_at < 1.0
    assert len(gw.wait_records(1)) == 1  # a stream's record lands after its last byte: wait for it


def test_stream_cut_by_the_upstream_is_an_error_not_a_silent_end(gw):
    c = client(gw).with_options(default_headers={"x-emulator-cut-after": "3"})
    stream = c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    received = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            received.append(chunk)
    assert "".join(c.choices[0].delta.content or "" for c in received) == "1 +"
    (record,) = gw.wait_records(1)
    usage = record["ai"]["proxy"]["usage"]
    assert usage["estimated"] is True and usage["completion_tokens"] == 1


@pytest.fixture
def compat_gw(gateway, emulator):
    routes = [
        route(
            "mistral",
            "/mistral/v1/chat/completions",
            "llm/v1/chat",
            "mistral",
            emulator.url,
            model="mistral-large-latest",
            auth={"header_name": "Authorization", "header_value": "Bearer mistral-secret"},
            options={"mistral_format": "openai", "top_k": 40},
        ),
        route(
            "vllm",
            "/vllm/v1/chat/completions",
            "llm/v1/chat",
            "llama2",
            emulator.url,
            options={"llama2_format": "openai", "top_k": 40},
        ),
        route(
            "preserve",
            "/openai/*",
            "preserve",
            "openai",
            emulator.url,
            auth={"header_name": "Authorization", "header_value": "Bearer preserve-secret"},
        ),
    ]
    return gateway(routes)


def test_mistral_and_self_hosted_openai_compatible(compat_gw, emulator):
    client(compat_gw, "/mistral").chat.completions.create(model="mistral-large-latest", messages=MESSAGES)
    assert emulator.last.path == "/v1/chat/completions"
    assert "top_k" not in emulator.last.json()  # Mistral's API has no top_k
    assert emulator.last.headers["authorization"] == "Bearer mistral-secret"
    client(compat_gw, "/vllm", key="client-key").chat.completions.create(
        model="llama-3.1-8b", messages=MESSAGES
    )
    assert emulator.last.json()["top_k"] == 40  # vLLM and TGI take top_k
    assert emulator.last.json()["model"] == "llama-3.1-8b"
    assert (
        emulator.last.headers["authorization"] == "Bearer client-key"
    )  # no auth configured: the client's own
    records = compat_gw.wait_records(2)
    assert [r["ai"]["proxy"]["meta"]["provider_name"] for r in records] == ["mistral", "llama2"]


def test_preserve_passes_bodies_through_and_still_accounts(compat_gw, emulator):
    body = b'{"model": "text-embedding-3-small", "input": "x", "unknown_field": [1, 2]}'
    r = httpx.post(
        f"{compat_gw.url}/openai/v1/embeddings?trace=1", content=body, headers={"authorization": "Bearer c"}
    )
    assert r.status_code == 200
    assert r.content == fixture_bytes("openai/embeddings/response.json")  # byte for byte
    assert emulator.last.path == "/v1/embeddings?trace=1"
    assert emulator.last.body == body
    assert emulator.last.headers["authorization"] == "Bearer preserve-secret"
    (record,) = compat_gw.wait_records(1)
    assert record["ai"]["proxy"]["usage"]["prompt_tokens"] == 13
    assert record["ai"]["proxy"]["meta"]["request_model"] == "text-embedding-3-small"


def test_reasoning_model_rules_through_the_sdk(gw, emulator):
    c = client(gw, "/override")
    reply = c.chat.completions.create(
        model="o4-mini", messages=[{"role": "user", "content": "Hi"}], max_tokens=64
    )
    assert reply.choices[0].message.content
    sent = emulator.last.json()
    assert (sent["model"], sent["max_completion_tokens"], "max_tokens" in sent) == ("o4-mini", 64, False)
    with pytest.raises(openai.BadRequestError) as err:
        c.chat.completions.create(
            model="gpt-5", messages=[{"role": "user", "content": "Hi"}], temperature=0.2
        )
    assert err.value.status_code == 400
    assert err.value.param == "temperature"
    assert err.value.code == "unsupported_parameter"
    assert (
        err.value.body["message"]
        == "'temperature' other than 1 is not supported by the reasoning model 'gpt-5'"
    )
    # The route's configured temperature (0.5) is refused the same way: a 400, never a silent drop.
    with pytest.raises(openai.BadRequestError) as err:
        client(gw).chat.completions.create(model="o3", messages=[{"role": "user", "content": "Hi"}])
    assert (
        err.value.body["message"] == "'temperature' other than 1 is not supported by the reasoning model 'o3'"
    )
