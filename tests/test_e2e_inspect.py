"""Inspecting provider traffic no route matches: each provider's own SDK goes through mitmdump in
regular mode over HTTPS, trusting mitmproxy's CA, to its real host name; ``tests/remap_upstream.py``
then points the flow at the local emulator. Nothing in the flow may change, and every LLM call gets
exactly one statistics record with the provider's own token counts.
"""

from __future__ import annotations

import time
from pathlib import Path

import anthropic
import boto3
import cohere
import httpx
import httpx2
import ollama
import openai
import orjson
import pytest
from botocore.config import Config
from conftest import ROOT, Gateway, fixture_bytes, fixture_json
from google import genai
from google.genai import types as genai_types
from huggingface_hub import InferenceClient
from streams import bedrock_invoke_stream

REMAP = str(ROOT / "tests" / "remap_upstream.py")

DELAY_MS = 100
# Every credential a client sends in this module: none may appear in anything the addon writes.
SECRETS = {
    "openai": "sk-openai-client-secret-0001",
    "anthropic": "sk-ant-client-secret-0002",
    "gemini": "AIza-gemini-client-secret-0003",
    "aws_key_id": "AKIAINSPECTCLIENT0004",
    "aws_secret": "aws-secret-client-0005",
    "cohere": "cohere-client-secret-0006",
    "hf": "hf_client_secret_0007",
    "ollama": "ollama-bearer-secret-0008",
    "raw": "raw-x-api-key-secret-0009",
    "gemini_query": "AIza-query-key-secret-0010",
    "azure": "azure-api-key-secret-0011",
    "vertex": "AQ.vertex-express-secret-0012",
}


@pytest.fixture(scope="module")
def proxy(emulator, tmp_path_factory):
    folder = tmp_path_factory.mktemp("inspect")
    # No routes file at all: `mitmdump -s addon/ai_proxy.py` with no ai_proxy options is a pure
    # inspector (no demo routes, nothing answered locally).
    config = None
    extra = [
        "-s",
        REMAP,
        "--set",
        f"confdir={folder}",
        "--set",
        "ai_proxy_inspect_hosts=ollama.test:11434=ollama",
    ]
    env = {"AI_PROXY_TEST_UPSTREAM": emulator.url, "AI_PROXY_TEST_DELAY_MS": str(DELAY_MS)}
    gw = Gateway(config, folder / "stats.jsonl", env, extra, mode="regular")
    yield gw, folder / "mitmproxy-ca-cert.pem"
    gw.stop()


@pytest.fixture
def gw(proxy):
    gateway, _ = proxy
    gateway.clear_records()
    return gateway


@pytest.fixture
def ca(proxy) -> str:
    return str(proxy[1])


def one_record(gw: Gateway) -> dict:
    (record,) = gw.wait_records(1)
    time.sleep(0.1)
    assert len(gw.records()) == 1  # exactly one per call
    return record["ai"]["proxy"]


def tokens(proxy_record: dict) -> tuple[int, int]:
    usage = proxy_record["usage"]
    return usage["prompt_tokens"], usage["completion_tokens"]


def assert_not_buffered(arrivals: list[float], events: int) -> None:
    """The emulator waits DELAY_MS between events: a buffered stream would arrive all at once."""
    assert len(arrivals) >= 2
    assert arrivals[-1] - arrivals[0] >= (events - 1) * DELAY_MS / 1000 * 0.6


def test_openai_sdk_call_is_untouched_and_accounted(gw, ca, emulator):
    client = openai.OpenAI(
        api_key=SECRETS["openai"], http_client=httpx.Client(proxy=gw.url, verify=ca), max_retries=0
    )
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "What is 1 + 1?"}]
    )
    assert raw.http_response.content == fixture_bytes("openai/chat/response.json")  # the provider's bytes
    assert not [h for h in raw.http_response.headers if h.startswith("x-ai-proxy")]
    assert emulator.last.path == "/v1/chat/completions"
    assert emulator.last.headers["host"] == "api.openai.com"
    assert emulator.last.headers["authorization"] == f"Bearer {SECRETS['openai']}"
    assert emulator.last.json() == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "What is 1 + 1?"}],
    }
    record = one_record(gw)
    assert record["meta"]["route"] == "inspect"
    assert record["meta"]["provider_name"] == "openai"
    assert record["meta"]["request_model"] == "gpt-4o-mini"
    assert record["meta"]["response_model"] == "gpt-4o-mini-2024-07-18"
    assert tokens(record) == (25, 12)
    # The proxy was started without a routes file: no demo, no emulator, only inspection.
    assert "ai_proxy: no routes (ai_proxy_config is not set)" in gw.log


def test_openai_stream_is_not_buffered(gw, ca):
    client = openai.OpenAI(
        api_key=SECRETS["openai"], http_client=httpx.Client(proxy=gw.url, verify=ca), max_retries=0
    )
    arrivals = []
    text = ""
    for chunk in client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    ):
        arrivals.append(time.monotonic())
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
    assert text == "1 + 1 = 2."
    assert_not_buffered(arrivals, 9)
    record = one_record(gw)
    assert record["meta"]["request_mode"] == "stream"
    assert tokens(record) == (25, 7)
    assert record["usage"]["time_to_first_token"] >= 0


def test_anthropic_sdk_call_and_stream(gw, ca, emulator):
    client = anthropic.Anthropic(
        api_key=SECRETS["anthropic"], http_client=httpx2.Client(proxy=gw.url, verify=ca), max_retries=0
    )
    raw = client.messages.with_raw_response.create(
        model="claude-sonnet-4-5", max_tokens=100, messages=[{"role": "user", "content": "What is 1 + 1?"}]
    )
    assert raw.http_response.content == fixture_bytes("anthropic/chat/response.json")
    assert emulator.last.headers["authorization"] == f"Bearer {SECRETS['anthropic']}"
    record = one_record(gw)
    assert (record["meta"]["provider_name"], record["meta"]["response_model"]) == (
        "anthropic",
        "claude-sonnet-4-5-20250929",
    )
    assert tokens(record) == (27, 13)

    gw.clear_records()
    arrivals = []
    with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        for _ in stream:
            arrivals.append(time.monotonic())
    assert_not_buffered(arrivals, 9)
    record = one_record(gw)
    assert record["meta"]["request_mode"] == "stream"
    assert tokens(record) == (27, 13)


def _genai(gw: Gateway, ca: str) -> genai.Client:
    options = genai_types.HttpOptions(api_version="v1beta", client_args={"proxy": gw.url, "verify": ca})
    return genai.Client(api_key=SECRETS["gemini"], http_options=options)


def test_gemini_sdk_call_and_stream(gw, ca, emulator):
    client = _genai(gw, ca)
    reply = client.models.generate_content(model="gemini-2.5-flash", contents="What is 1 + 1?")
    assert (
        reply.text
        == fixture_json("gemini/chat/response.json")["candidates"][0]["content"]["parts"][0]["text"]
    )
    assert emulator.last.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert emulator.last.headers["x-goog-api-key"] == SECRETS["gemini"]
    record = one_record(gw)
    assert record["meta"]["provider_name"] == "gemini"
    assert record["meta"]["request_model"] == "gemini-2.5-flash"  # from the path
    assert tokens(record) == (14, 7)

    gw.clear_records()
    arrivals = [
        time.monotonic()
        for _ in client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi")
    ]
    assert "alt=sse" in emulator.last.path
    assert_not_buffered(arrivals, 5)
    record = one_record(gw)
    assert record["meta"]["request_mode"] == "stream"
    assert record["usage"]["total_tokens"] > 0


def _bedrock(gw: Gateway, ca: str):
    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id=SECRETS["aws_key_id"],
        aws_secret_access_key=SECRETS["aws_secret"],
        config=Config(proxies={"https": gw.url}, retries={"max_attempts": 0}),
        verify=ca,
    )


def test_bedrock_converse_and_stream(gw, ca, emulator):
    client = _bedrock(gw, ca)
    model = "anthropic.claude-3-haiku-20240307-v1:0"
    reply = client.converse(
        modelId=model, messages=[{"role": "user", "content": [{"text": "What is 1 + 1?"}]}]
    )
    assert reply["usage"]["outputTokens"] == 10
    assert emulator.last.headers["authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={SECRETS['aws_key_id']}/"
    )
    record = one_record(gw)
    assert (record["meta"]["provider_name"], record["meta"]["request_model"]) == ("bedrock", model)
    assert tokens(record) == (27, 10)

    gw.clear_records()
    stream = client.converse_stream(modelId=model, messages=[{"role": "user", "content": [{"text": "hi"}]}])
    arrivals = [time.monotonic() for _ in stream["stream"]]
    assert_not_buffered(arrivals, len(fixture_json("bedrock/chat/events.json")))
    record = one_record(gw)
    assert record["meta"]["request_mode"] == "stream"
    assert tokens(record) == (27, 10)


def test_bedrock_invoke_usage_from_the_token_count_headers(gw, ca, emulator):
    body = {"outputText": "2", "note": "a model family whose body carries no usage"}
    emulator.script(
        200,
        body,
        headers={"x-amzn-bedrock-input-token-count": "11", "x-amzn-bedrock-output-token-count": "3"},
    )
    reply = _bedrock(gw, ca).invoke_model(
        modelId="amazon.nova-lite-v1:0", body=b'{"inputText": "1 + 1?"}', contentType="application/json"
    )
    assert reply["body"].read() == orjson.dumps(body)
    assert reply["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-input-token-count"] == "11"
    assert emulator.last.body == b'{"inputText": "1 + 1?"}'
    record = one_record(gw)
    assert record["meta"]["request_model"] == "amazon.nova-lite-v1:0"
    assert tokens(record) == (11, 3)


def test_bedrock_invoke_stream_usage_from_the_invocation_metrics(gw, ca, emulator):
    chunks = fixture_json("bedrock/invoke_stream/chunks.json")  # Anthropic chunks, metrics last
    emulator.script(200, bedrock_invoke_stream(chunks), "application/vnd.amazon.eventstream")
    reply = _bedrock(gw, ca).invoke_model_with_response_stream(
        modelId="anthropic.claude-3-haiku-20240307-v1:0", body=b'{"messages": []}'
    )
    got = [orjson.loads(event["chunk"]["bytes"]) for event in reply["body"]]
    assert got == chunks
    record = one_record(gw)
    assert record["meta"]["request_mode"] == "stream"
    assert record["meta"]["response_model"] == "claude-3-haiku-20240307"
    assert tokens(record) == (9, 4)


def test_openai_responses_api(gw, ca, emulator):
    body = fixture_json("openai/responses/response.json")
    emulator.script(200, body)
    client = openai.OpenAI(
        api_key=SECRETS["openai"], http_client=httpx.Client(proxy=gw.url, verify=ca), max_retries=0
    )
    reply = client.responses.create(model="gpt-5-mini", input="hi")
    assert reply.usage is not None and reply.usage.total_tokens == 123
    assert emulator.last.path == "/v1/responses"
    record = one_record(gw)
    assert tokens(record) == (36, 87)
    assert record["usage"]["prompt_tokens_details"] == {"cached_tokens": 12}
    assert record["usage"]["completion_tokens_details"] == {"reasoning_tokens": 64}


def test_gemini_json_array_stream_with_a_key_in_the_query(gw, ca, emulator):
    url = (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent"
        f"?key={SECRETS['gemini_query']}"
    )
    with httpx.Client(proxy=gw.url, verify=ca) as http:
        r = http.post(
            url,
            json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
            headers={"x-emulator-fixture": "gemini/stream_array/stream.json"},
        )
    assert r.content == fixture_bytes("gemini/stream_array/stream.json")
    last = [item for item in orjson.loads(r.content) if "usageMetadata" in item][-1]["usageMetadata"]
    record = one_record(gw)
    assert record["meta"]["request_mode"] == "stream"
    assert tokens(record) == (
        last["promptTokenCount"],
        last["candidatesTokenCount"] + last.get("thoughtsTokenCount", 0),
    )


def test_cohere_sdk_chat_and_rerank_search_units(gw, ca, emulator):
    client = cohere.ClientV2(api_key=SECRETS["cohere"], httpx_client=httpx.Client(proxy=gw.url, verify=ca))
    client.chat(model="command-a-03-2025", messages=[{"role": "user", "content": "What is 1 + 1?"}])
    assert emulator.last.headers["authorization"] == f"Bearer {SECRETS['cohere']}"
    record = one_record(gw)
    assert (record["meta"]["provider_name"], record["meta"]["request_model"]) == (
        "cohere",
        "command-a-03-2025",
    )
    assert tokens(record) == (23, 24)  # billed units, as Kong and the invoice count (issue 16)

    gw.clear_records()
    emulator.script(
        200,
        {
            "id": "r1",
            "results": [{"index": 0, "relevance_score": 0.9}],
            "meta": {"billed_units": {"search_units": 1}},
        },
    )
    reply = client.rerank(model="rerank-v3.5", query="q", documents=["a", "b"])
    assert reply.results[0].relevance_score == 0.9
    record = one_record(gw)
    assert record["usage"]["search_units"] == 1
    assert tokens(record) == (0, 0)


def test_huggingface_client_chat(gw, ca, emulator, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", gw.url)
    monkeypatch.setenv("SSL_CERT_FILE", ca)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca)
    # A full base URL: the client asks huggingface.co for no provider mapping first.
    base = "https://api-inference.huggingface.co/models/meta-llama/Llama-3.1-8B-Instruct"
    client = InferenceClient(base_url=base, api_key=SECRETS["hf"])
    reply = client.chat_completion(messages=[{"role": "user", "content": "What is 1 + 1?"}])
    assert reply.usage.completion_tokens == 15
    assert emulator.last.headers["host"] == "api-inference.huggingface.co"
    record = one_record(gw)
    assert record["meta"]["provider_name"] == "huggingface"
    assert tokens(record) == (46, 15)


def test_ollama_client_through_an_inspect_hosts_entry(gw, emulator):
    client = ollama.Client(
        host="http://ollama.test:11434",
        proxy=gw.url,
        headers={"authorization": f"Bearer {SECRETS['ollama']}"},
    )
    reply = client.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}], stream=False)
    assert reply.message.content
    record = one_record(gw)
    assert (record["meta"]["provider_name"], record["meta"]["request_model"]) == ("ollama", "llama3.2")
    assert tokens(record) == (38, 9)

    gw.clear_records()
    arrivals = [time.monotonic() for _ in client.chat(model="llama3.2", messages=[], stream=True)]
    events = len(fixture_bytes("ollama/chat/stream.ndjson").strip().splitlines())
    assert_not_buffered(arrivals, events)
    record = one_record(gw)
    assert record["meta"]["request_mode"] == "stream"
    assert tokens(record) == (38, 9)


def test_azure_openai_sdk(gw, ca, emulator):
    client = openai.AzureOpenAI(
        azure_endpoint="https://myres.openai.azure.com",
        api_key=SECRETS["azure"],
        api_version="2024-10-21",
        http_client=httpx.Client(proxy=gw.url, verify=ca),
        max_retries=0,
    )
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-prod", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.http_response.content == fixture_bytes("azure/chat/response.json")
    assert emulator.last.path == "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
    assert emulator.last.headers["api-key"] == SECRETS["azure"]
    record = one_record(gw)
    meta = record["meta"]
    assert (meta["provider_name"], meta["azure_instance_id"], meta["azure_deployment_id"]) == (
        "azure",
        "myres",
        "gpt-4o-prod",
    )
    assert meta["azure_api_version"] == "2024-10-21"
    assert meta["response_model"] == "gpt-4o-2024-08-06"
    assert tokens(record) == (22, 8)


def test_vertex_ai_express_mode(gw, ca, emulator):
    emulator.script(200, fixture_json("gemini/chat/response.json"))
    options = genai_types.HttpOptions(client_args={"proxy": gw.url, "verify": ca})
    client = genai.Client(vertexai=True, api_key=SECRETS["vertex"], http_options=options)
    reply = client.models.generate_content(model="gemini-2.5-flash", contents="What is 1 + 1?")
    assert reply.usage_metadata is not None and reply.usage_metadata.total_token_count == 21
    assert emulator.last.headers["host"] == "aiplatform.googleapis.com"
    assert emulator.last.path.endswith("/models/gemini-2.5-flash:generateContent")
    record = one_record(gw)
    assert (record["meta"]["provider_name"], record["meta"]["request_model"]) == (
        "gemini",
        "gemini-2.5-flash",
    )
    assert tokens(record) == (14, 7)


def test_non_llm_traffic_to_a_provider_gets_no_record(gw, ca):
    with httpx.Client(proxy=gw.url, verify=ca) as http:
        http.get("https://api.openai.com/v1/models", headers={"authorization": f"Bearer {SECRETS['openai']}"})
    time.sleep(0.3)
    assert gw.records() == []


def test_a_body_that_is_not_json_passes_untouched_and_is_recorded_with_an_error(gw, ca, emulator):
    emulator.script(200, b"not json either", "text/plain")
    with httpx.Client(proxy=gw.url, verify=ca) as http:
        r = http.post(
            "https://api.anthropic.com/v1/messages?beta=true",
            content=b"\x00not json",
            headers={"x-api-key": SECRETS["raw"], "content-type": "application/json"},
        )
    assert (r.status_code, r.content) == (200, b"not json either")
    assert emulator.last.body == b"\x00not json"
    assert emulator.last.path == "/v1/messages?beta=true"
    record = one_record(gw)
    assert record["meta"]["error"] == "the request body is not JSON; the provider's answer is not JSON"
    assert record["meta"]["status"] == 200


def test_no_client_secret_in_anything_the_addon_wrote(proxy):
    gw, _ = proxy
    written = gw.log + Path(gw.stats_path).read_text()
    assert "route=inspect" in written
    leaked = [name for name, secret in SECRETS.items() if secret in written]
    assert leaked == []
