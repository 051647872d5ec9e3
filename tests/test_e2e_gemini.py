"""End to end: the real openai SDK -> mitmdump + addon (provider gemini) -> the local emulator.

AI Studio routes carry the API key in the x-goog-api-key header or the ``key`` query parameter;
Vertex AI routes get a bearer token the gateway mints from a service-account key at a local token
endpoint (test_gcp_auth.TokenEndpoint, which verifies the JWT's signature).
"""

from __future__ import annotations

import time
from typing import Any

import openai
import orjson
import pytest
from conftest import fixture_json, route
from test_gcp_auth import TokenEndpoint, new_key

HEADER_KEY = "AIzaSyHeaderKey-0123456789abcdefghijklm"
QUERY_KEY = "AIzaSyQueryKey-0123456789abcdefghijklmn"
MODEL = "gemini-2.5-flash"
VERTEX_MODEL = "gemini-2.5-pro"
VERTEX = {
    "api_endpoint": "us-central1-aiplatform.googleapis.com",
    "project_id": "my-project",
    "location_id": "us-central1",
}
VERTEX_PATH = "/v1/projects/my-project/locations/us-central1/publishers/google/models"
HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def token_endpoint():
    server = TokenEndpoint()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def accounts(token_endpoint: TokenEndpoint) -> dict[str, str]:
    key = new_key()
    return {
        "good": token_endpoint.register("gateway@my-project.iam.gserviceaccount.com", key, "0f1e2d3c4b5a"),
        "env": token_endpoint.register("env@my-project.iam.gserviceaccount.com", key, "5a4b3c2d1e0f"),
        "rogue": _rogue(token_endpoint, key),
    }


def _rogue(endpoint: TokenEndpoint, key: Any) -> str:
    """A key file for an account the token endpoint does not know: its grants are refused."""
    key_file = endpoint.register("rogue@my-project.iam.gserviceaccount.com", key, "bad")
    del endpoint.accounts["rogue@my-project.iam.gserviceaccount.com"]
    return key_file


@pytest.fixture
def gw(gateway, emulator, accounts):
    header = {"header_name": "x-goog-api-key", "header_value": HEADER_KEY}
    costs = {"input_cost": 0.3, "output_cost": 2.5}
    vertex_auth = {"gcp_use_service_account": True, "gcp_service_account_json": accounts["good"]}
    routes = [
        route(
            "gemini-chat",
            "/gemini/v1/chat/completions",
            "llm/v1/chat",
            "gemini",
            emulator.url,
            auth=header,
            options=costs,
            logging={"log_statistics": True, "log_payloads": True},
        ),
        route(
            "gemini-query",
            "/query/v1/chat/completions",
            "llm/v1/chat",
            "gemini",
            emulator.url,
            auth={"param_name": "key", "param_value": QUERY_KEY, "param_location": "query"},
        ),
        route(
            "gemini-completions",
            "/gemini/v1/completions",
            "llm/v1/completions",
            "gemini",
            emulator.url,
            auth=header,
        ),
        route(
            "gemini-embeddings",
            "/gemini/v1/embeddings",
            "llm/v1/embeddings",
            "gemini",
            emulator.url,
            auth=header,
        ),
        route(
            "query-embeddings",
            "/query/v1/embeddings",
            "llm/v1/embeddings",
            "gemini",
            emulator.url,
            auth={"param_name": "key", "param_value": QUERY_KEY, "param_location": "query"},
        ),
        route(
            "vertex-chat",
            "/vertex/v1/chat/completions",
            "llm/v1/chat",
            "gemini",
            emulator.url,
            model=VERTEX_MODEL,
            auth=vertex_auth,
            options={"gemini": VERTEX},
        ),
        route(
            "vertex-embeddings",
            "/vertex/v1/embeddings",
            "llm/v1/embeddings",
            "gemini",
            emulator.url,
            auth=vertex_auth,
            options={"gemini": VERTEX},
        ),
        route(
            "vertex-rogue",
            "/rogue/v1/chat/completions",
            "llm/v1/chat",
            "gemini",
            emulator.url,
            auth={"gcp_use_service_account": True, "gcp_service_account_json": accounts["rogue"]},
            options={"gemini": VERTEX},
        ),
    ]
    return gateway(routes)


def client(gw, prefix: str = "/gemini", **headers: str) -> openai.OpenAI:
    c = openai.OpenAI(base_url=f"{gw.url}{prefix}/v1", api_key="sk-client-own-key", max_retries=0, timeout=10)
    return c.with_options(default_headers=headers) if headers else c


# --- AI Studio -----------------------------------------------------------------------------------


def test_chat_round_trip_and_statistics(gw, emulator):
    sent = fixture_json("gemini/chat/client.json")
    reply = client(gw).chat.completions.create(**sent)
    assert reply.id == "Zk1haPX3CMWf1dkPw7Pl-Ag"
    assert reply.choices[0].message.content == "1 + 1 = 2."
    assert reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (14, 7, 21)
    upstream = emulator.last
    assert upstream.path == f"/v1beta/models/{MODEL}:generateContent"
    assert upstream.headers["x-goog-api-key"] == HEADER_KEY
    assert "authorization" not in upstream.headers  # the client's own key never goes up
    assert upstream.json() == fixture_json("gemini/chat/request.json")
    (record,) = gw.wait_records(1)
    proxy = record["ai"]["proxy"]
    assert proxy["meta"]["provider_name"] == "gemini"
    assert proxy["meta"]["request_model"] == MODEL
    assert proxy["meta"]["response_model"] == MODEL
    assert (proxy["usage"]["prompt_tokens"], proxy["usage"]["completion_tokens"]) == (14, 7)
    assert proxy["usage"]["cost"] == pytest.approx((14 * 0.3 + 7 * 2.5) / 1_000_000)
    assert HEADER_KEY not in proxy["payload"]["request"]
    assert '"systemInstruction"' in proxy["payload"]["request"]
    assert "1 + 1 = 2." in proxy["payload"]["response"]


def test_web_search_options_are_google_search_grounding(gw, emulator):
    """An OpenAI chat client's web_search_options: Google Search, its citations as the SDK's
    url_citation annotations (characters, where Gemini counts bytes)."""
    c = client(gw, **{"x-emulator-fixture": "gemini/grounding/response.json"})
    reply = c.chat.completions.create(
        model="gemini-2.5-flash",
        messages=[{"role": "user", "content": "Who won Euro 2024?"}],
        web_search_options={"search_context_size": "low"},
    )
    assert emulator.last.json()["tools"] == [{"googleSearch": {}}]
    message = reply.choices[0].message
    assert message.annotations is not None
    spans = [
        (a.url_citation.start_index, a.url_citation.end_index, a.url_citation.title)
        for a in message.annotations
    ]
    assert spans == [(0, 64, "uefa.com"), (0, 64, "aljazeera.com"), (65, 99, "aljazeera.com")]
    assert message.content is not None and message.content[65:99] == "Mikel Oyarzabal scored the winner."
    assert "_ai_proxy" not in reply.model_dump_json()  # the gateway's extensions are for ingress clients
    gw.wait_records(1)


def test_key_in_the_query(gw, emulator):
    reply = client(gw, "/query").chat.completions.create(model=MODEL, messages=HI)
    assert reply.choices[0].message.content == "1 + 1 = 2."
    assert emulator.last.path == f"/v1beta/models/{MODEL}:generateContent?key={QUERY_KEY}"
    assert "x-goog-api-key" not in emulator.last.headers and "authorization" not in emulator.last.headers


def test_reasoning_and_cached_tokens_reach_the_client(gw):
    c = client(gw, **{"x-emulator-fixture": "gemini/thinking/response.json"})
    reply = c.chat.completions.create(
        model="gemini-2.5-pro", messages=[{"role": "user", "content": "Is 221 prime?"}]
    )
    assert reply.choices[0].message.content == "No. 221 = 13 \u00d7 17."
    assert reply.choices[0].message.reasoning_content.startswith("**Checking small factors**")
    assert reply.usage.prompt_tokens_details.cached_tokens == 2048
    assert reply.usage.completion_tokens_details.reasoning_tokens == 244
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["usage"]["completion_tokens"] == 255


def test_tools_round_trip_with_the_thought_signature(gw, emulator):
    ask = fixture_json("gemini/tools/client.json")
    first = client(gw, **{"x-emulator-fixture": "gemini/tools/response.json"}).chat.completions.create(**ask)
    assert emulator.last.json() == fixture_json("gemini/tools/request.json")
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    assert message.content is None
    signature = fixture_json("gemini/tools/response.json")["candidates"][0]["content"]["parts"][0][
        "thoughtSignature"
    ]
    assert [c.id for c in message.tool_calls][1].startswith("call_")
    assert message.tool_calls[0].id.endswith(f"_0__thought__{signature}")
    assert [orjson.loads(c.function.arguments) for c in message.tool_calls] == [
        {"city": "Paris", "unit": "celsius", "days": 1},
        {"city": "Berlin", "unit": "celsius", "days": 1},
    ]
    history = [
        *ask["messages"],
        message.model_dump(exclude_none=True),
        {
            "role": "tool",
            "tool_call_id": message.tool_calls[0].id,
            "content": '{"temperature": 18, "sky": "cloudy"}',
        },
        {"role": "tool", "tool_call_id": message.tool_calls[1].id, "content": "21 degrees, sunny"},
    ]
    second = client(
        gw, **{"x-emulator-fixture": "gemini/tool_results/response.json"}
    ).chat.completions.create(model=MODEL, messages=history, tools=ask["tools"])
    assert second.choices[0].message.content.startswith("Paris is cloudy")
    contents = emulator.last.json()["contents"]
    assert contents[1]["parts"][0] == {
        "functionCall": {"name": "get_weather", "args": {"city": "Paris", "unit": "celsius", "days": 1}},
        "thoughtSignature": signature,
    }
    assert "thoughtSignature" not in contents[1]["parts"][1]
    assert contents[2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"temperature": 18, "sky": "cloudy"}}},
            {"functionResponse": {"name": "get_weather", "response": {"result": "21 degrees, sunny"}}},
        ],
    }


def test_blocked_prompt_is_a_filtered_answer(gw):
    c = client(gw, **{"x-emulator-fixture": "gemini/blocked/response.json"})
    reply = c.chat.completions.create(model=MODEL, messages=HI)
    assert reply.choices[0].finish_reason == "content_filter"
    assert reply.choices[0].message.content is None


def test_completions(gw, emulator):
    c = client(gw, **{"x-emulator-fixture": "gemini/completions/response.json"})
    done = c.completions.create(model=MODEL, prompt="Say this is a test", max_tokens=16, temperature=0)
    assert done.choices[0].text == "This is a test."
    assert done.object == "text_completion"
    assert emulator.last.json() == fixture_json("gemini/completions/request.json")
    stream = client(gw, **{"x-emulator-fixture": "gemini/completions/stream.sse"}).completions.create(
        model=MODEL, prompt="Say this is a test", stream=True
    )
    assert "".join(chunk.choices[0].text for chunk in stream) == "This is a test."
    assert emulator.last.path == f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"
    records = gw.wait_records(2)
    assert [r["ai"]["proxy"]["usage"]["total_tokens"] for r in records] == [10, 10]


def test_embeddings_one_and_several(gw, emulator):
    one = client(gw).embeddings.create(
        model="gemini-embedding-001", input="The quick brown fox", dimensions=8
    )
    assert emulator.last.path == "/v1beta/models/gemini-embedding-001:embedContent"
    assert emulator.last.json() == fixture_json("gemini/embed/request.json")
    expected = fixture_json("gemini/embed/response.json")["embedding"]["values"]
    assert one.data[0].embedding == pytest.approx(expected, rel=1e-6)  # base64 float32 round trip
    several = client(gw, "/query").embeddings.create(
        model="gemini-embedding-001",
        input=["The quick brown fox", "jumps over the lazy dog"],
        encoding_format="float",
    )
    assert emulator.last.path == f"/v1beta/models/gemini-embedding-001:batchEmbedContents?key={QUERY_KEY}"
    assert emulator.last.json() == fixture_json("gemini/batch_embed/request.json")
    assert [d.embedding for d in several.data] == [
        e["values"] for e in fixture_json("gemini/batch_embed/response.json")["embeddings"]
    ]
    assert [d.index for d in several.data] == [0, 1]
    assert several.usage.model_dump() == {"prompt_tokens": 11, "total_tokens": 11}  # no internal mark
    records = gw.wait_records(2)
    # AI Studio reports no token count for embeddings: the statistics say the count is an estimate.
    assert [
        (r["ai"]["proxy"]["usage"]["prompt_tokens"], r["ai"]["proxy"]["usage"].get("estimated"))
        for r in records
    ] == [
        (5, True),
        (11, True),
    ]


# --- AI Studio streams ---------------------------------------------------------------------------


def test_stream_arrives_incrementally_with_usage(gw, emulator):
    c = client(gw, **{"x-emulator-delay-ms": "300"})
    started = time.monotonic()
    stream = c.chat.completions.create(
        model=MODEL, messages=HI, stream=True, stream_options={"include_usage": True}
    )
    first = next(iter(stream))
    first_at = time.monotonic() - started
    rest = list(stream)
    total = time.monotonic() - started
    assert first.choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in rest if c.choices) == "1 + 1 = 2."
    assert rest[-2].choices[0].finish_reason == "stop"
    assert rest[-1].usage.total_tokens == 21 and rest[-1].choices == []
    # 5 events 300 ms apart: the whole stream takes >= 1.2 s, the first chunk must not wait for it.
    assert total >= 1.2
    assert first_at < 0.9
    assert emulator.last.path == f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"
    assert emulator.last.headers["accept-encoding"] == "identity"
    (record,) = gw.wait_records(1)
    proxy = record["ai"]["proxy"]
    assert proxy["meta"]["request_mode"] == "stream"
    assert (proxy["usage"]["prompt_tokens"], proxy["usage"]["completion_tokens"]) == (14, 7)
    assert "estimated" not in proxy["usage"]


def test_stream_tool_calls(gw):
    c = client(gw, **{"x-emulator-fixture": "gemini/stream_tools/stream.sse"})
    chunks = list(c.chat.completions.create(model=MODEL, messages=HI, stream=True))
    calls = [tc for ch in chunks if ch.choices for tc in ch.choices[0].delta.tool_calls or ()]
    assert [(tc.index, tc.function.name, orjson.loads(tc.function.arguments)) for tc in calls] == [
        (0, "get_weather", {"city": "Paris", "unit": "celsius", "days": 1}),
        (1, "get_weather", {"city": "Berlin", "unit": "celsius", "days": 1}),
        (2, "get_time", {}),
    ]
    assert calls[0].id.split("__thought__")[0].startswith("call_") and calls[2].id.endswith("_2")
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["usage"]["completion_tokens"] == 117


def test_json_array_stream(gw):
    c = client(gw, **{"x-emulator-fixture": "gemini/stream_array/stream.json"})
    chunks = list(c.chat.completions.create(model=MODEL, messages=HI, stream=True))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == 'JSON looks like {"a": [1, 2]}, a lone } or \\ is text, and so is "\u00e9 \U0001f600".'
    assert chunks[-1].choices[0].finish_reason == "stop"
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["usage"]["total_tokens"] == 32


def test_stream_error_event_reaches_the_client(gw):
    c = client(gw, **{"x-emulator-fixture": "gemini/stream_error/stream.sse"})
    stream = c.chat.completions.create(model=MODEL, messages=HI, stream=True)
    received = []
    with pytest.raises(openai.APIError) as err:
        for chunk in stream:
            received.append(chunk)
    assert err.value.message == "The model is overloaded. Please try again later."
    assert "".join(ch.choices[0].delta.content or "" for ch in received) == "Once upon"
    assert len(gw.wait_records(1)) == 1


def test_stream_cut_by_the_upstream_is_an_error(gw):
    c = client(gw, **{"x-emulator-cut-after": "2"})
    stream = c.chat.completions.create(model=MODEL, messages=HI, stream=True)
    with pytest.raises(openai.APIError):
        list(stream)
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["usage"]["prompt_tokens"] == 14  # the last usage Gemini sent


# --- Vertex AI with a service account ------------------------------------------------------------


def test_vertex_chat_with_a_minted_token(gw, emulator, token_endpoint):
    c = client(gw, "/vertex")
    reply = c.chat.completions.create(
        model=VERTEX_MODEL, messages=fixture_json("gemini/vertex_chat/client.json")["messages"]
    )
    assert reply.choices[0].message.content == "1 + 1 equals 2."
    assert reply.usage.completion_tokens_details.reasoning_tokens == 100
    upstream = emulator.last
    assert upstream.path == f"{VERTEX_PATH}/{VERTEX_MODEL}:generateContent"
    token = upstream.headers["authorization"]
    assert token.startswith("Bearer ya29.c.test-token-")
    assert upstream.json() == fixture_json("gemini/vertex_chat/request.json")
    issued = token_endpoint.issued
    c.chat.completions.create(model=VERTEX_MODEL, messages=HI)
    assert emulator.last.headers["authorization"] == token  # cached: no second mint
    assert token_endpoint.issued == issued
    assert token_endpoint.grants[-1]["iss"] == "gateway@my-project.iam.gserviceaccount.com"
    records = gw.wait_records(2)
    assert records[0]["ai"]["proxy"]["meta"]["response_model"] == VERTEX_MODEL
    assert "ya29" not in orjson.dumps(records).decode()


def test_vertex_stream_and_embeddings(gw, emulator):
    chunks = list(client(gw, "/vertex").chat.completions.create(model=VERTEX_MODEL, messages=HI, stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "1 + 1 equals 2."
    assert emulator.last.path == f"{VERTEX_PATH}/{VERTEX_MODEL}:streamGenerateContent?alt=sse"
    assert emulator.last.headers["authorization"].startswith("Bearer ya29.c.test-token-")
    emb = client(gw, "/vertex").embeddings.create(
        model="text-embedding-005", input=["The quick brown fox", "jumps over the lazy dog"], dimensions=4
    )
    assert emulator.last.path == f"{VERTEX_PATH}/text-embedding-005:predict"
    assert emulator.last.json() == fixture_json("gemini/vertex_embed/request.json")
    assert emulator.last.headers["authorization"].startswith("Bearer ya29.c.test-token-")
    assert emb.usage.prompt_tokens == 11
    assert len(emb.data) == 2
    records = gw.wait_records(2)
    assert [r["ai"]["proxy"]["usage"]["prompt_tokens"] for r in records] == [13, 11]
    assert "estimated" not in records[1]["ai"]["proxy"]["usage"]  # Vertex counts the tokens


def test_token_failure_is_a_502_and_nothing_goes_upstream(gw, emulator):
    with pytest.raises(openai.APIStatusError) as err:
        client(gw, "/rogue").chat.completions.create(model=VERTEX_MODEL, messages=HI)
    assert err.value.status_code == 502
    assert err.value.body["message"] == (
        "could not obtain a Google Cloud access token: "
        "the token endpoint answered HTTP 400: invalid_grant: Invalid JWT Signature."
    )
    assert err.value.body["code"] == "gcp_auth_failed"
    assert emulator.requests == []
    assert "PRIVATE KEY" not in gw.log


def test_service_account_from_the_environment(gateway, emulator, accounts, token_endpoint):
    routes = [
        route(
            "vertex-env",
            "/v1/chat/completions",
            "llm/v1/chat",
            "gemini",
            emulator.url,
            model=VERTEX_MODEL,
            auth={"gcp_use_service_account": True},
            options={"gemini": VERTEX},
        )
    ]
    gw = gateway(routes, env={"GCP_SERVICE_ACCOUNT": accounts["env"]})
    reply = client(gw, "").chat.completions.create(model=VERTEX_MODEL, messages=HI)
    assert reply.choices[0].message.content == "1 + 1 equals 2."
    assert emulator.last.headers["authorization"].startswith("Bearer ya29.c.test-token-")
    assert token_endpoint.grants[-1]["iss"] == "env@my-project.iam.gserviceaccount.com"


# --- errors and refusals -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "status", "exc", "message", "code"),
    [
        ("errors/400.json", 400, openai.BadRequestError, "API key not valid.", "INVALID_ARGUMENT"),
        (
            "errors/429.json",
            429,
            openai.RateLimitError,
            "You exceeded your current quota",
            "RESOURCE_EXHAUSTED",
        ),
        (
            "errors/403_vertex.json",
            403,
            openai.PermissionDeniedError,
            "Permission 'aiplatform.endpoints.predict'",
            "PERMISSION_DENIED",
        ),
        ("errors/503.json", 503, openai.InternalServerError, "The model is overloaded.", "UNAVAILABLE"),
    ],
)
def test_upstream_errors_are_openai_shaped(gw, fixture, status, exc, message, code):
    c = client(gw, **{"x-emulator-fixture": f"gemini/{fixture}", "x-emulator-status": str(status)})
    with pytest.raises(exc) as err:
        c.chat.completions.create(model=MODEL, messages=HI)
    assert err.value.status_code == status
    assert err.value.body["message"].startswith(message)
    assert err.value.body["code"] == code


def test_upstream_error_on_a_stream_request(gw):
    c = client(gw, **{"x-emulator-fixture": "gemini/errors/429.json", "x-emulator-status": "429"})
    with pytest.raises(openai.RateLimitError) as err:
        c.chat.completions.create(model=MODEL, messages=HI, stream=True)
    assert err.value.body["code"] == "RESOURCE_EXHAUSTED"


def test_refused_field_never_reaches_gemini(gw, emulator):
    with pytest.raises(openai.BadRequestError) as err:
        client(gw).chat.completions.create(model=MODEL, messages=HI, logprobs=True)
    assert err.value.body["message"] == "'logprobs' is not supported by the gemini provider"
    with pytest.raises(openai.BadRequestError) as err:
        client(gw).embeddings.create(model="gemini-embedding-001", input=[[1, 2, 3]])
    assert err.value.body["message"] == "'input' as token ids is not supported by the gemini provider"
    assert emulator.requests == []
