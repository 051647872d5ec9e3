"""End to end: the real openai SDK -> mitmdump + addon (provider bedrock) -> the local emulator.

Every request the emulator receives is checked against a SigV4 signature recomputed with botocore
from what arrived (method, path, the signed headers, body, x-amz-date): the gateway signed exactly
the request that went on the wire.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import botocore.auth
import httpx
import openai
import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from conftest import fixture_bytes, fixture_json, route

from addon.emulator import Recorded

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ENV_ACCESS_KEY = "AKIAI44QH8DHBEXAMPLE"
ENV_SECRET_KEY = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"
ENV_SESSION_TOKEN = "FwoGZXIvYXdzEJr//////////wEaDEnvSessionTokenExample"
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
CONVERSE = "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
SECRETS = (SECRET_KEY, ENV_SECRET_KEY, ENV_SESSION_TOKEN)


@pytest.fixture
def gw(gateway, emulator):
    auth = {"aws_access_key_id": ACCESS_KEY, "aws_secret_access_key": SECRET_KEY}
    options = {"bedrock": {"aws_region": "us-east-1"}, "input_cost": 3.0, "output_cost": 15.0}
    routes = [
        route(
            "bedrock-chat",
            "/v1/chat/completions",
            "llm/v1/chat",
            "bedrock",
            emulator.url,
            auth=auth,
            options=options,
            logging={"log_statistics": True, "log_payloads": True},
        ),
        route(
            "bedrock-completions",
            "/v1/completions",
            "llm/v1/completions",
            "bedrock",
            emulator.url,
            auth=auth,
            options=options,
        ),
        route(
            "bedrock-embeddings",
            "/v1/embeddings",
            "llm/v1/embeddings",
            "bedrock",
            emulator.url,
            auth=auth,
            options=options,
        ),
        # Native Converse bodies through untouched, still signed and accounted for.
        route(
            "bedrock-native",
            "/bedrock/*",
            "llm/v1/chat",
            "bedrock",
            emulator.url,
            auth=auth,
            options=options,
            llm_format="bedrock",
        ),
        # Region and credentials from the environment (with a session token).
        route("bedrock-env", "/env/v1/chat/completions", "llm/v1/chat", "bedrock", emulator.url, model=MODEL),
    ]
    env = {
        "AWS_ACCESS_KEY_ID": ENV_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": ENV_SECRET_KEY,
        "AWS_SESSION_TOKEN": ENV_SESSION_TOKEN,
        "AWS_REGION": "eu-west-1",
    }
    return gateway(routes, env=env)


def client(gw, prefix: str = "", **headers: str) -> openai.OpenAI:
    c = openai.OpenAI(base_url=f"{gw.url}{prefix}/v1", api_key="sk-client-own-key", max_retries=0, timeout=10)
    return c.with_options(default_headers=headers) if headers else c


def sdk_args(name: str) -> dict:
    """A fixture's client request as openai SDK arguments: fields the SDK has no parameter for
    (top_k) travel in ``extra_body``, which the SDK merges into the top level of the JSON."""
    asked = fixture_json(f"bedrock/{name}/client.json")
    extra = asked.pop("extra_body", {})
    if "top_k" in asked:
        extra["top_k"] = asked.pop("top_k")
    return {**asked, "extra_body": extra} if extra else asked


def assert_signed(sent: Recorded, secret: str, access_key: str, region: str, emulator_url: str) -> None:
    """Recompute the signature with botocore from what the emulator received; it must match."""
    authorization = sent.headers["authorization"]
    scheme, _, fields = authorization.partition(" ")
    parts = dict(p.strip().split("=", 1) for p in fields.split(","))
    assert scheme == "AWS4-HMAC-SHA256"
    amz_date = sent.headers["x-amz-date"]
    assert parts["Credential"] == f"{access_key}/{amz_date[:8]}/{region}/bedrock/aws4_request"
    signed = parts["SignedHeaders"].split(";")
    assert sent.headers["host"] == emulator_url.removeprefix("http://")
    headers = {name: sent.headers[name] for name in signed}
    request = AWSRequest(
        method=sent.method, url=f"http://{sent.headers['host']}{sent.path}", headers=headers, data=sent.body
    )
    when = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
    token = sent.headers.get("x-amz-security-token")
    original = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda *a, **k: when
    try:
        SigV4Auth(Credentials(access_key, secret, token), "bedrock", region).add_auth(request)
    finally:
        botocore.auth.get_current_datetime = original
    assert request.headers["Authorization"] == authorization
    # x-amz-date is the gateway's clock at signing time (UTC)
    assert abs((datetime.now(UTC).replace(tzinfo=None) - when).total_seconds()) < 600


def assert_no_secrets(gw) -> None:
    stats = gw.stats_path.read_text() if gw.stats_path.exists() else ""
    for secret in SECRETS:
        assert secret not in stats
        assert secret not in gw.log


def test_chat_round_trip_signature_and_statistics(gw, emulator):
    asked = fixture_json("bedrock/chat/client.json")
    reply = client(gw).chat.completions.create(**asked)
    assert reply.object == "chat.completion"
    assert reply.model == MODEL
    assert reply.id.startswith("chatcmpl-")
    assert reply.choices[0].message.content == "The capital of Australia is Canberra."
    assert reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (
        27,
        10,
        37,
    )
    sent = emulator.last
    assert (sent.method, sent.path) == ("POST", CONVERSE)
    assert sent.json() == fixture_json("bedrock/chat/request.json")
    assert sent.headers["content-type"] == "application/json"
    assert "x-amz-security-token" not in sent.headers
    assert "sk-client-own-key" not in str(sent.headers)  # the client's own key never goes up
    assert_signed(sent, SECRET_KEY, ACCESS_KEY, "us-east-1", emulator.url)
    (record,) = gw.wait_records(1)
    proxy = record["ai"]["proxy"]
    assert proxy["meta"]["route"] == "bedrock-chat"
    assert proxy["meta"]["provider_name"] == "bedrock"
    assert proxy["meta"]["request_model"] == MODEL
    assert proxy["meta"]["request_mode"] == "oneshot"
    assert (proxy["usage"]["prompt_tokens"], proxy["usage"]["completion_tokens"]) == (27, 10)
    assert proxy["usage"]["cost"] == pytest.approx((27 * 3.0 + 10 * 15.0) / 1e6)
    assert "estimated" not in proxy["usage"]
    assert orjson.loads(proxy["payload"]["request"]) == fixture_json("bedrock/chat/request.json")
    signature = sent.headers["authorization"].rsplit("Signature=", 1)[1]
    assert signature not in gw.log and signature not in gw.stats_path.read_text()
    assert_no_secrets(gw)


def test_environment_credentials_region_and_session_token(gw, emulator):
    reply = client(gw, "/env").chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}]
    )
    assert reply.choices[0].message.content == "The capital of Australia is Canberra."
    sent = emulator.last
    assert sent.path == CONVERSE
    assert sent.headers["x-amz-security-token"] == ENV_SESSION_TOKEN
    assert "x-amz-security-token" in sent.headers["authorization"]
    assert_signed(sent, ENV_SECRET_KEY, ENV_ACCESS_KEY, "eu-west-1", emulator.url)
    gw.wait_records(1)
    assert_no_secrets(gw)


def test_guardrail_through_the_sdk_extra_body(gw, emulator):
    asked = sdk_args("guardrail")
    c = client(gw, **{"x-emulator-fixture": "bedrock/guardrail/response.json"})
    reply = c.chat.completions.create(**asked)  # the SDK merges extra_body into the top level
    assert reply.choices[0].finish_reason == "content_filter"
    sent = emulator.last
    assert sent.path == "/model/amazon.nova-pro-v1%3A0/converse"
    assert sent.json() == fixture_json("bedrock/guardrail/request.json")
    assert_signed(sent, SECRET_KEY, ACCESS_KEY, "us-east-1", emulator.url)


def test_tools_round_trip(gw, emulator):
    asked = sdk_args("tools")
    first = client(gw, **{"x-emulator-fixture": "bedrock/tools/response.json"}).chat.completions.create(
        **asked
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "I'll check the current weather in both cities."
    assert [
        (c.id, c.function.name, orjson.loads(c.function.arguments)) for c in choice.message.tool_calls
    ] == [
        ("tooluse_8xQbI2mRS0yXq1Zr3bJvWg", "get_weather", {"location": "Paris, France", "unit": "celsius"}),
        ("tooluse_Kd0Fz7tNQ9-6vO2W1aLc3A", "get_weather", {"location": "Berlin, Germany", "unit": "celsius"}),
    ]
    assert emulator.last.json() == fixture_json("bedrock/tools/request.json")
    # The answer goes back as tool results, in one user turn.
    follow = fixture_json("bedrock/tool_results/client.json")
    c = client(gw, **{"x-emulator-fixture": "bedrock/tool_results/response.json"})
    second = c.chat.completions.create(**follow)
    assert second.choices[0].message.content.startswith("Paris is warmer")
    assert emulator.last.json() == fixture_json("bedrock/tool_results/request.json")


def test_stream_arrives_incrementally_with_usage(gw, emulator):
    c = client(gw, **{"x-emulator-delay-ms": "300"})
    started = time.monotonic()
    stream = c.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the capital of Australia?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = iter(stream)
    first = next(chunks)
    first_at = time.monotonic() - started
    rest = list(chunks)
    total = time.monotonic() - started
    assert first.choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in rest if ch.choices)
    assert text == "The capital of Australia is Canberra."
    assert [ch.choices[0].finish_reason for ch in rest if ch.choices][-1] == "stop"
    assert rest[-1].usage.total_tokens == 37
    # 7 event-stream messages 300 ms apart: >= 1.8 s in all, the first chunk must not wait for them.
    assert total >= 1.8
    assert first_at < 1.0
    sent = emulator.last
    assert sent.path == CONVERSE + "-stream"
    assert sent.headers["accept-encoding"] == "identity"
    assert_signed(sent, SECRET_KEY, ACCESS_KEY, "us-east-1", emulator.url)
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["meta"]["request_mode"] == "stream"
    assert record["ai"]["proxy"]["usage"]["total_tokens"] == 37
    assert "estimated" not in record["ai"]["proxy"]["usage"]
    assert_no_secrets(gw)


def test_stream_parallel_tool_calls(gw):
    c = client(gw, **{"x-emulator-fixture": "bedrock/stream_tools/stream.eventstream"})
    stream = c.chat.completions.create(**sdk_args("tools"), stream=True)
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for call in choice.delta.tool_calls or ():
            entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] = call.id or entry["id"]
            entry["name"] = (call.function.name or "") or entry["name"]
            entry["arguments"] += call.function.arguments or ""
    assert finish == "tool_calls"
    assert [(v["id"], v["name"], orjson.loads(v["arguments"])) for _, v in sorted(calls.items())] == [
        ("tooluse_8xQbI2mRS0yXq1Zr3bJvWg", "get_weather", {"location": "Paris, France", "unit": "celsius"}),
        ("tooluse_Kd0Fz7tNQ9-6vO2W1aLc3A", "get_weather", {"location": "Berlin, Germany", "unit": "celsius"}),
        ("tooluse_2Qd7HkT0SGm1bX4vYpNw8e", "get_time", {}),
    ]
    assert gw.wait_records(1)[0]["ai"]["proxy"]["usage"]["completion_tokens"] == 131


def test_stream_exception_event_reaches_the_client(gw):
    c = client(gw, **{"x-emulator-fixture": "bedrock/stream_error/stream.eventstream"})
    stream = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True)
    received = []
    with pytest.raises(openai.APIError) as err:
        for chunk in stream:
            received.append(chunk)
    assert "Model stream ended unexpectedly" in str(err.value)
    assert "".join(ch.choices[0].delta.content or "" for ch in received) == "The theory of relativity"
    usage = gw.wait_records(1)[0]["ai"]["proxy"]["usage"]
    assert usage["estimated"] is True


def test_completions_oneshot_and_stream(gw, emulator):
    asked = fixture_json("bedrock/completions/client.json")
    done = client(gw, **{"x-emulator-fixture": "bedrock/completions/response.json"}).completions.create(
        **asked
    )
    assert done.object == "text_completion"
    assert done.choices[0].text.startswith("Waves fold into foam,")
    assert emulator.last.path == "/model/meta.llama3-1-70b-instruct-v1%3A0/converse"
    assert emulator.last.json() == fixture_json("bedrock/completions/request.json")
    c = client(gw, **{"x-emulator-fixture": "bedrock/completions/stream.eventstream"})
    stream = c.completions.create(**asked, stream=True)
    text = "".join(ch.choices[0].text for ch in stream if ch.choices)
    assert text == "Waves fold into foam,\nsalt wind carries gull voices,\nthe tide keeps its time."
    assert emulator.last.path == "/model/meta.llama3-1-70b-instruct-v1%3A0/converse-stream"
    assert_signed(emulator.last, SECRET_KEY, ACCESS_KEY, "us-east-1", emulator.url)
    assert len(gw.wait_records(2)) == 2


def test_embeddings_titan_and_cohere(gw, emulator):
    titan = fixture_json("bedrock/embed_titan/response.json")
    emb = client(gw).embeddings.create(
        model="amazon.titan-embed-text-v2:0",
        input="The quick brown fox jumps over the lazy dog.",
        dimensions=256,
    )
    # The SDK asks for base64 (float32), so values round-trip at float32 precision.
    assert emb.data[0].embedding == pytest.approx(titan["embedding"], rel=1e-6)
    assert emb.usage.prompt_tokens == 11
    sent = emulator.last
    assert sent.path == "/model/amazon.titan-embed-text-v2%3A0/invoke"
    assert sent.json() == {"inputText": "The quick brown fox jumps over the lazy dog.", "dimensions": 256}
    assert_signed(sent, SECRET_KEY, ACCESS_KEY, "us-east-1", emulator.url)
    cohere = fixture_json("bedrock/embed_cohere/response.json")
    c = client(gw, **{"x-emulator-fixture": "bedrock/embed_cohere/response.json"})
    emb = c.embeddings.create(
        model="cohere.embed-english-v3",
        input=fixture_json("bedrock/embed_cohere/client.json")["input"],
        encoding_format="float",
    )
    assert [d.embedding for d in emb.data] == cohere["embeddings"]
    assert emulator.last.json() == fixture_json("bedrock/embed_cohere/request.json")
    assert emb.usage.prompt_tokens == 17
    assert "_ai_proxy_estimated" not in emb.usage.model_dump()
    records = gw.wait_records(2)
    assert [r["ai"]["proxy"]["usage"]["prompt_tokens"] for r in records] == [11, 17]
    # Cohere on Bedrock reports no count in the body: an estimate, and the statistics say so.
    assert [r["ai"]["proxy"]["usage"].get("estimated", False) for r in records] == [False, True]


@pytest.mark.parametrize(
    ("fixture", "status", "exc", "message"),
    [
        ("bedrock/errors/400.json", 400, openai.BadRequestError, "The provided model identifier is invalid."),
        (
            "bedrock/errors/403.json",
            403,
            openai.PermissionDeniedError,
            "The security token included in the request is invalid.",
        ),
        (
            "bedrock/errors/403_iam.json",
            403,
            openai.PermissionDeniedError,
            "User: arn:aws:iam::123456789012:user/gateway",
        ),
        (
            "bedrock/errors/429.json",
            429,
            openai.RateLimitError,
            "Too many requests, please wait before trying again.",
        ),
    ],
)
def test_upstream_errors_are_openai_shaped(gw, fixture, status, exc, message):
    c = client(gw, **{"x-emulator-fixture": fixture, "x-emulator-status": str(status)})
    with pytest.raises(exc) as err:
        c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert err.value.status_code == status
    assert err.value.body["message"].startswith(message)


def test_upstream_error_on_a_stream_request(gw):
    c = client(gw, **{"x-emulator-fixture": "bedrock/errors/429.json", "x-emulator-status": "429"})
    with pytest.raises(openai.RateLimitError) as err:
        list(
            c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True)
        )
    assert err.value.body["message"] == "Too many requests, please wait before trying again."


def test_refusals_never_reach_bedrock(gw, emulator):
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    with pytest.raises(openai.BadRequestError) as err:
        client(gw).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [image]}])
    assert "Bedrock needs inline images" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError) as err:
        client(gw).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], n=2)
    assert err.value.body["message"] == "'n' above 1 is not supported by the bedrock provider"
    with pytest.raises(openai.BadRequestError) as err:
        client(gw).embeddings.create(model="amazon.titan-embed-text-v2:0", input=["a", "b"])
    assert "one text per call" in err.value.body["message"]
    assert emulator.requests == []


def test_native_converse_passes_through_signed_and_counted(gw, emulator):
    body = fixture_json("bedrock/chat/request.json")
    oneshot = httpx.post(f"{gw.url}/bedrock{CONVERSE}", json=body, timeout=10)
    assert oneshot.status_code == 200
    assert oneshot.json() == fixture_json("bedrock/chat/response.json")
    assert emulator.last.path == CONVERSE
    assert_signed(emulator.last, SECRET_KEY, ACCESS_KEY, "us-east-1", emulator.url)
    with httpx.stream("POST", f"{gw.url}/bedrock{CONVERSE}-stream", json=body, timeout=10) as streamed:
        raw = b"".join(streamed.iter_bytes())
        assert streamed.headers["content-type"] == "application/vnd.amazon.eventstream"
    assert raw == fixture_bytes("bedrock/chat/stream.eventstream")  # the bytes are not touched
    assert emulator.last.path == CONVERSE + "-stream"
    assert_signed(emulator.last, SECRET_KEY, ACCESS_KEY, "us-east-1", emulator.url)
    records = gw.wait_records(2)
    assert [r["ai"]["proxy"]["usage"]["total_tokens"] for r in records] == [37, 37]
    assert [r["ai"]["proxy"]["meta"]["request_model"] for r in records] == [MODEL, MODEL]
    assert "estimated" not in records[1]["ai"]["proxy"]["usage"]  # read from the event stream
