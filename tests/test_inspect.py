"""Recognising provider traffic (pure), the inspector addon on test flows, and the usage summary."""

from __future__ import annotations

import gzip
import logging
import re

import orjson
import pytest
from conftest import fixture_bytes
from mitmproxy import exceptions
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow, tutils

from addon.gateway import AIProxy
from addon.inspection import Inspector
from addon.stats import StatsSink
from addon.summary import UsageSummary
from transforms.recognize import UNMETERED, Recognized, inspect_route, parse_inspect_hosts, recognize
from transforms.redact import client_secrets
from transforms.summary import HEADER, LATENCY_SAMPLES, UsageTally, percentile

# --- recognition -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "method", "path", "expected"),
    [
        ("api.openai.com", "POST", "/v1/chat/completions", Recognized("openai", "chat")),
        ("api.openai.com", "POST", "/v1/completions", Recognized("openai", "completions")),
        ("api.openai.com", "POST", "/v1/embeddings", Recognized("openai", "embeddings")),
        ("api.openai.com", "POST", "/v1/responses", Recognized("openai", "responses")),
        ("api.openai.com", "POST", "/v1/responses/input_tokens", Recognized("openai", UNMETERED)),
        ("api.openai.com", "POST", "/v1/batches", Recognized("openai", UNMETERED)),
        ("api.openai.com", "POST", "/v1/files", Recognized("openai", UNMETERED)),
        ("api.openai.com", "GET", "/v1/models", None),
        ("api.openai.com", "POST", "/v1/moderations", None),
        ("API.OpenAI.com", "POST", "/v1/chat/completions", Recognized("openai", "chat")),
        (
            "myres.openai.azure.com",
            "POST",
            "/openai/deployments/gpt-4o%20prod/chat/completions",
            Recognized("azure", "chat", "gpt-4o prod"),
        ),
        ("api.anthropic.com", "POST", "/v1/messages", Recognized("anthropic", "messages")),
        ("api.anthropic.com", "POST", "/v1/messages/count_tokens", Recognized("anthropic", UNMETERED)),
        ("api.anthropic.com", "POST", "/v1/messages/batches", Recognized("anthropic", UNMETERED)),
        (
            "generativelanguage.googleapis.com",
            "POST",
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
            Recognized("gemini", "streamGenerateContent", "gemini-2.5-flash"),
        ),
        (
            "generativelanguage.googleapis.com",
            "POST",
            "/v1beta/models/text-embedding-004:batchEmbedContents",
            Recognized("gemini", "batchEmbedContents", "text-embedding-004"),
        ),
        (
            "generativelanguage.googleapis.com",
            "POST",
            "/v1beta/models/gemini-2.5-flash:countTokens",
            Recognized("gemini", UNMETERED, "gemini-2.5-flash"),
        ),
        (
            "generativelanguage.googleapis.com",
            "POST",
            "/v1beta/tunedModels/my-tune:generateContent",
            Recognized("gemini", "generateContent", "my-tune"),
        ),
        (
            "us-central1-aiplatform.googleapis.com",
            "POST",
            "/v1/projects/p/locations/us-central1/publishers/google/models/text-embedding-005:predict",
            Recognized("gemini", "predict", "text-embedding-005"),
        ),
        (
            "aiplatform.googleapis.com",
            "POST",
            "/v1/projects/p/locations/global/publishers/google/models/veo-3:predictLongRunning",
            Recognized("gemini", UNMETERED, "veo-3"),
        ),
        (
            "bedrock-runtime.eu-west-1.amazonaws.com",
            "POST",
            "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke-with-response-stream",
            Recognized("bedrock", "invoke-with-response-stream", "anthropic.claude-3-haiku-20240307-v1:0"),
        ),
        (
            "bedrock-runtime.us-east-1.amazonaws.com",
            "POST",
            "/async-invoke",
            Recognized("bedrock", UNMETERED),
        ),
        (
            "bedrock-agent-runtime.us-east-1.amazonaws.com",
            "POST",
            "/rerank",
            Recognized("bedrock", UNMETERED),
        ),
        ("bedrock-runtime.us-east-1.amazonaws.com", "GET", "/async-invoke", None),
        ("api.cohere.com", "POST", "/v1/chat", Recognized("cohere", "chat_v1")),
        ("api.cohere.ai", "POST", "/v2/rerank", Recognized("cohere", "rerank")),
        ("api.mistral.ai", "POST", "/v1/fim/completions", Recognized("mistral", "completions")),
        (
            "router.huggingface.co",
            "POST",
            "/hf-inference/models/meta-llama/Llama-3.1-8B-Instruct/v1/chat/completions",
            Recognized("huggingface", "chat", "meta-llama/Llama-3.1-8B-Instruct"),
        ),
        ("api-inference.huggingface.co", "POST", "/generate_stream", Recognized("huggingface", "generate")),
        ("example.com", "POST", "/v1/chat/completions", None),
        ("api.openai.com.evil.example", "POST", "/v1/chat/completions", None),
        ("bedrock-runtime.amazonaws.com.evil.example", "POST", "/model/m/invoke", None),
    ],
)
def test_recognize(host, method, path, expected):
    assert recognize(host, 443, method, path) == expected


def test_extra_hosts_are_parsed_once_and_matched_by_port():
    hosts = parse_inspect_hosts(["localhost:11434=ollama", "*.vllm.internal=openai", "api.openai.com=azure"])
    assert recognize("localhost", 11434, "POST", "/api/generate", hosts) == Recognized("ollama", "generate")
    assert recognize("localhost", 8080, "POST", "/api/generate", hosts) is None
    assert recognize("gpu1.vllm.internal", 80, "POST", "/v1/completions", hosts) == Recognized(
        "openai", "completions"
    )
    # Ollama's OpenAI-compatible endpoints speak openai.
    assert recognize("localhost", 11434, "POST", "/v1/chat/completions", hosts) == Recognized(
        "openai", "chat"
    )
    # An entry overrides the built-in table.
    assert recognize("api.openai.com", 443, "POST", "/v1/chat/completions", hosts).format == "azure"


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("localhost:11434", "expected HOST"),
        ("localhost=llama", "FORMAT must be one of"),
        ("localhost:99999=ollama", "PORT must be"),
        ("bad host=openai", "HOST must be"),
    ],
)
def test_bad_extra_host_entries_are_named(entry, problem):
    with pytest.raises(ValueError, match=problem) as info:
        parse_inspect_hosts(["ok.example=openai", entry])
    assert repr(entry) in str(info.value)


def test_azure_route_reports_instance_deployment_and_version():
    route = inspect_route(
        Recognized("azure", "chat", "prod"), "myres.openai.azure.com", [("api-version", "2024-10-21")]
    )
    opts = route.model.options
    assert (route.name, opts.azure_instance, opts.azure_deployment_id, opts.azure_api_version) == (
        "inspect",
        "myres",
        "prod",
        "2024-10-21",
    )
    assert route.auth.secrets() == ()


def test_client_secrets_cover_keys_tokens_and_sigv4():
    sigv4 = (
        "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE123/20250101/us-east-1/bedrock/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=abcdef0123456789"
    )
    found = client_secrets(
        {
            "authorization": sigv4,
            "x-api-key": "sk-ant-1234",
            "api-key": "azure-5678",
            "x-goog-api-key": "AIza-9999",
            "x-amz-security-token": "session-token-1",
            "content-type": "application/json",
        },
        [("key", "AIza-query-key"), ("alt", "sse")],
    )
    for secret in (sigv4, "AKIAEXAMPLE123", "abcdef0123456789", "sk-ant-1234", "azure-5678", "AIza-9999"):
        assert secret in found
    assert "session-token-1" in found and "AIza-query-key" in found
    assert "sse" not in found and "application/json" not in found
    bearer = client_secrets({"authorization": "Bearer ya29.gcp-token"}, [])
    assert bearer == ("Bearer ya29.gcp-token", "ya29.gcp-token")


# --- the inspector on test flows -------------------------------------------------------------------


def provider_flow(
    host: str, path: str, body: bytes, mode: str = "regular", method: bytes = b"POST"
) -> tflow.HTTPFlow:
    req = tutils.treq(
        method=method,
        scheme=b"https",
        host=host,
        port=443,
        authority=b"",
        path=path.encode(),
        content=body,
        headers=[
            (b"host", host.encode()),
            (b"x-api-key", b"sk-ant-client-key"),
            (b"content-type", b"application/json"),
        ],
    )
    flow = tflow.tflow(req=req)
    flow.client_conn.proxy_mode = ProxyMode.parse(mode)
    return flow


def addons() -> tuple[AIProxy, Inspector, UsageSummary]:
    gateway = AIProxy()
    return gateway, Inspector(gateway), UsageSummary(gateway.stats)


async def test_recognised_flow_is_not_changed_and_is_accounted(tmp_path):
    gateway, inspector, summary = addons()
    config = tmp_path / "routes.json"
    config.write_bytes(b'{"routes": []}')
    with taddons.context(gateway, inspector, summary) as tctx:
        tctx.configure(gateway, ai_proxy_config=str(config))
        body = b'{"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": []}'
        flow = provider_flow("api.anthropic.com", "/v1/messages", body)
        before = flow.request.get_state()
        await gateway.request(flow)
        assert flow.request.get_state() == before  # nothing about the request changed
        assert flow.response is None
        answer = fixture_bytes("anthropic/chat/response.json")
        flow.response = tutils.tresp(content=answer, headers=[(b"content-type", b"application/json")])
        response_before = flow.response.get_state()
        gateway.responseheaders(flow)
        gateway.response(flow)
        assert flow.response.get_state() == response_before
        record = flow.metadata["ai_proxy"]["ai"]["proxy"]
        assert record["meta"]["route"] == "inspect"
        assert record["usage"]["prompt_tokens"] == 27
        stats = orjson.loads(tctx.master.commands.execute("aiproxy.stats"))
        assert stats["groups"][0]["provider"] == "anthropic"
        assert stats["groups"][0]["calls"] == 1


async def test_inspection_can_be_turned_off_and_bad_hosts_are_refused(tmp_path):
    gateway, inspector, summary = addons()
    config = tmp_path / "routes.json"
    config.write_bytes(b'{"routes": []}')
    with taddons.context(gateway, inspector, summary) as tctx:
        tctx.configure(gateway, ai_proxy_config=str(config))
        tctx.configure(inspector, ai_proxy_inspect=False)
        flow = provider_flow("api.anthropic.com", "/v1/messages", b"{}")
        await gateway.request(flow)
        assert flow.id not in gateway._live
        with pytest.raises(exceptions.OptionsError, match="'nope'"):
            tctx.configure(inspector, ai_proxy_inspect_hosts=["nope"])


@pytest.mark.parametrize(
    ("host", "path", "method", "rejected"),
    [
        ("api.anthropic.com", "/v1/messages", b"POST", False),  # recognised: accounted
        ("api.anthropic.com", "/v1/models", b"GET", False),  # a provider's other API: passed on
        ("upstream.example", "/v1/messages", b"POST", True),  # unknown destination: rejected
    ],
)
async def test_auto_rejects_in_reverse_mode_only_unknown_destinations(tmp_path, host, path, method, rejected):
    gateway, inspector, summary = addons()
    config = tmp_path / "routes.json"
    config.write_bytes(b'{"routes": []}')
    with taddons.context(gateway, inspector, summary) as tctx:
        tctx.configure(gateway, ai_proxy_config=str(config))
        flow = provider_flow(host, path, b"{}", mode=f"reverse:https://{host}", method=method)
        await gateway.request(flow)
        assert (flow.response is not None and flow.response.status_code == 404) is rejected


async def test_an_unreadable_stream_passes_byte_for_byte_and_is_recorded_with_an_error(tmp_path):
    gateway, inspector, summary = addons()
    config = tmp_path / "routes.json"
    config.write_bytes(b'{"routes": []}')
    with taddons.context(gateway, inspector, summary) as tctx:
        tctx.configure(gateway, ai_proxy_config=str(config))
        body = b'{"model": "claude-sonnet-4-5", "stream": true, "messages": []}'
        flow = provider_flow("api.anthropic.com", "/v1/messages", body)
        await gateway.request(flow)
        flow.response = tutils.tresp(content=None, headers=[(b"content-type", b"text/event-stream")])
        headers_before = flow.response.headers.fields
        gateway.responseheaders(flow)
        assert flow.response.headers.fields == headers_before
        chunks = [b"event: message_start\ndata: {not json\n\n", b"data: more\n\n", b""]
        assert [flow.response.stream(c) for c in chunks] == chunks
        gateway.response(flow)
        meta = flow.metadata["ai_proxy"]["ai"]["proxy"]["meta"]
        assert meta["error"] == "cannot read the provider's stream: JSONDecodeError"
        assert meta["request_mode"] == "stream"


@pytest.mark.parametrize("encoding", ["", "gzip"])
async def test_a_recognised_stream_keeps_its_transcript_for_the_view(tmp_path, encoding):
    """mitmproxy stores no streamed body: the view shows what the gateway assembled while counting,
    for recognised traffic too, and through a gzip-encoded stream."""
    gateway, inspector, summary = addons()
    config = tmp_path / "routes.json"
    config.write_bytes(b'{"routes": []}')
    with taddons.context(gateway, inspector, summary) as tctx:
        tctx.configure(gateway, ai_proxy_config=str(config))
        body = b'{"model": "claude-sonnet-4-5", "stream": true, "messages": []}'
        flow = provider_flow("api.anthropic.com", "/v1/messages", body)
        await gateway.request(flow)
        headers = [(b"content-type", b"text/event-stream")]
        raw = fixture_bytes("anthropic/chat/stream.sse")
        if encoding:
            headers.append((b"content-encoding", encoding.encode()))
            raw = gzip.compress(raw)
        flow.response = tutils.tresp(content=None, headers=headers)
        gateway.responseheaders(flow)
        chunks = [raw[i : i + 7] for i in range(0, len(raw), 7)] + [b""]
        assert [flow.response.stream(c) for c in chunks] == chunks  # the provider's bytes, as they came
        gateway.response(flow)
        kept = flow.metadata["ai_proxy"]
        assert kept["assembled"]["text"] == "The capital of Australia is Canberra — not Sydney."
        assert kept["ai"]["proxy"]["usage"]["completion_tokens"] == 13
        assert "error" not in kept["ai"]["proxy"]["meta"]


async def test_an_explicit_reject_policy_wins_over_inspection(tmp_path):
    gateway, inspector, summary = addons()
    config = tmp_path / "routes.json"
    config.write_bytes(b'{"routes": []}')
    with taddons.context(gateway, inspector, summary) as tctx:
        tctx.configure(gateway, ai_proxy_config=str(config), ai_proxy_unmatched="reject")
        flow = provider_flow("api.anthropic.com", "/v1/messages", b"{}")
        await gateway.request(flow)
        assert flow.response is not None and flow.response.status_code == 404


# --- the usage summary -----------------------------------------------------------------------------


def record(
    provider: str, model: str, prompt: int, completion: int, latency: int, status: int = 200, cost=0.0
) -> dict:
    meta = {
        "route": "inspect",
        "provider_name": provider,
        "request_model": model,
        "response_model": model,
        "llm_latency": latency,
        "status": status,
        "request_mode": "oneshot",
    }
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cost": cost,
    }
    return {"ai": {"proxy": {"meta": meta, "usage": usage}}}


def test_tally_per_provider_and_model_with_percentiles():
    tally = UsageTally()
    for latency in range(1, 101):
        tally.add(record("openai", "gpt-4o", 10, 2, latency, cost=0.5))
    tally.add(record("anthropic", "claude", 5, 1, 7, status=429))
    data = tally.as_json()
    assert data["group_by"] == ["provider", "model"]
    assert data["groups"] == [
        {
            "provider": "anthropic",
            "model": "claude",
            "calls": 1,
            "errors": 1,
            "prompt_tokens": 5,
            "completion_tokens": 1,
            "cost": 0.0,
            "latency_p50_ms": 7,
            "latency_p95_ms": 7,
        },
        {
            "provider": "openai",
            "model": "gpt-4o",
            "calls": 100,
            "errors": 0,
            "prompt_tokens": 1000,
            "completion_tokens": 200,
            "cost": 50.0,
            "latency_p50_ms": 50,
            "latency_p95_ms": 95,
        },
    ]
    assert data["total"] == {
        "calls": 101,
        "errors": 1,
        "prompt_tokens": 1005,
        "completion_tokens": 201,
        "cost": 50.0,
    }
    lines = tally.table().splitlines()
    assert lines[0].split() == " ".join(HEADER).split()
    assert lines[2].split() == ["openai", "gpt-4o", "100", "0", "1000", "200", "50.000000", "50", "95"]
    assert lines[3].split() == ["total", "101", "1", "1005", "201", "50.000000"]


def test_tally_totals_per_consumer():
    tally = UsageTally()
    for consumer, prompt in (("team-a", 10), ("team-b", 4), ("team-a", 6), (None, 100)):
        rec = record("openai", "gpt-4o", prompt, 1, 5, cost=0.25)
        if consumer is not None:
            rec["ai"]["proxy"]["meta"]["consumer"] = consumer
        tally.add(rec)
    consumers = tally.as_json()["consumers"]
    assert [
        (c["consumer"], c["calls"], c["prompt_tokens"], c["completion_tokens"], c["cost"]) for c in consumers
    ] == [
        ("team-a", 2, 16, 2, 0.5),
        ("team-b", 1, 4, 1, 0.25),
    ]
    assert tally.as_json()["total"]["calls"] == 4  # calls without a key still count in the groups
    lines = tally.table().splitlines()
    assert lines[-2].split() == ["consumer", "team-a", "2", "0", "16", "2", "0.500000", "5", "5"]
    assert lines[-1].split() == ["consumer", "team-b", "1", "0", "4", "1", "0.250000", "5", "5"]
    tally.reset()
    assert tally.as_json()["consumers"] == []


def test_latencies_stay_bounded():
    tally = UsageTally()
    for latency in range(LATENCY_SAMPLES * 3):
        tally.add(record("openai", "m", 0, 0, latency))
    totals = tally.groups[("openai", "m")]
    assert totals.calls == LATENCY_SAMPLES * 3
    assert len(totals.latencies) == LATENCY_SAMPLES
    p50 = tally.as_json()["groups"][0]["latency_p50_ms"]
    assert LATENCY_SAMPLES * 3 * 0.4 < p50 < LATENCY_SAMPLES * 3 * 0.6  # a uniform sample's median


def test_percentile_nearest_rank():
    assert percentile([], 50) is None
    assert percentile([3], 95) == 3
    assert percentile([1, 2, 3, 4], 50) == 2
    assert percentile([1, 2, 3, 4], 95) == 4


def test_stats_commands_and_exit_table(caplog):
    sink = StatsSink()
    summary = UsageSummary(sink)
    with taddons.context(summary) as tctx:
        ours = sorted(name for name in tctx.master.commands.commands if name.startswith("aiproxy"))
        assert ours == ["aiproxy.stats", "aiproxy.stats.reset"]
        assert all(re.fullmatch(r"[a-z.]+", name) for name in ours)  # what mitmweb's command bar runs
        sink.emit(record("openai", "gpt-4o", 10, 2, 40))
        sink.emit(record("openai", "gpt-4o", 20, 4, 60))
        stats = orjson.loads(tctx.master.commands.call("aiproxy.stats"))
        assert stats["groups"][0]["calls"] == 2
        assert stats["groups"][0]["prompt_tokens"] == 30
        assert stats["groups"][0]["latency_p95_ms"] == 60
        with caplog.at_level(logging.INFO, logger="ai_proxy"):
            summary.done()
        table = [r.getMessage() for r in caplog.records if "usage summary" in r.getMessage()]
        assert len(table) == 1
        assert table[0].splitlines()[2].split() == [
            "openai",
            "gpt-4o",
            "2",
            "0",
            "30",
            "6",
            "0.000000",
            "40",
            "60",
        ]
        tctx.master.commands.execute("aiproxy.stats.reset")
        assert orjson.loads(tctx.master.commands.execute("aiproxy.stats"))["groups"] == []
