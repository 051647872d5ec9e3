"""Record and replay (issue 10), end to end: record every provider through the gateway against the
emulator, then replay with the upstream unreachable and `ai_proxy_record_mode=none`.

The recording gateway's routes point at the emulator; the replaying gateway's identical routes point
at a closed loopback port, so an answer can only come from a cassette.
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import anthropic
import boto3
import httpx
import openai
import orjson
import pytest
from botocore.config import Config
from conftest import Gateway, route
from google import genai
from google.genai import types as genai_types

from transforms.config import Provider

ANTHROPIC_KEY = "sk-ant-cassette-secret-0001"
OPENAI_KEY = "sk-openai-cassette-secret-0002"
GEMINI_KEY = "AIza-cassette-secret-0003"
COHERE_KEY = "cohere-cassette-secret-0004"
HF_KEY = "hf_cassette_secret_0005"
AZURE_KEY = "azure-cassette-secret-0006"
MISTRAL_KEY = "mistral-cassette-secret-0007"
AWS_ACCESS_KEY = "AKIACASSETTEEXAMPLE8"
AWS_SECRET_KEY = "cassette/Secret/Access/Key/EXAMPLE0009"
SECRETS = (
    ANTHROPIC_KEY,
    OPENAI_KEY,
    GEMINI_KEY,
    COHERE_KEY,
    HF_KEY,
    AZURE_KEY,
    MISTRAL_KEY,
    AWS_ACCESS_KEY,
    AWS_SECRET_KEY,
)
BEDROCK_MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
QUESTION = [{"role": "user", "content": "What is 1 + 1?"}]


def bearer(key: str) -> dict[str, str]:
    return {"header_name": "Authorization", "header_value": f"Bearer {key}"}


def routes(upstream: str) -> list[dict[str, Any]]:
    """One OpenAI-format chat route per provider, and native routes for three providers' SDKs."""
    aws = {"aws_access_key_id": AWS_ACCESS_KEY, "aws_secret_access_key": AWS_SECRET_KEY}
    anthropic_options = {"anthropic_version": "2023-06-01", "max_tokens": 256}
    return [
        route(
            "openai",
            "/openai/v1/chat/completions",
            "llm/v1/chat",
            "openai",
            upstream,
            auth=bearer(OPENAI_KEY),
        ),
        route(
            "azure",
            "/azure/v1/chat/completions",
            "llm/v1/chat",
            "azure",
            upstream,
            model="gpt-4o",
            auth={"header_name": "api-key", "header_value": AZURE_KEY},
            options={
                "azure_instance": "demo",
                "azure_deployment_id": "gpt-4o",
                "azure_api_version": "2024-10-21",
            },
        ),
        route(
            "anthropic",
            "/anthropic/v1/chat/completions",
            "llm/v1/chat",
            "anthropic",
            upstream,
            model="claude-sonnet-4-5",
            auth={"header_name": "x-api-key", "header_value": ANTHROPIC_KEY},
            options=anthropic_options,
        ),
        route(
            "cohere",
            "/cohere/v1/chat/completions",
            "llm/v1/chat",
            "cohere",
            upstream,
            model="command-a-03-2025",
            auth=bearer(COHERE_KEY),
        ),
        route(
            "mistral",
            "/mistral/v1/chat/completions",
            "llm/v1/chat",
            "mistral",
            upstream,
            model="mistral-large-latest",
            auth=bearer(MISTRAL_KEY),
            options={"mistral_format": "openai"},
        ),
        route(
            "llama2",
            "/llama2/v1/chat/completions",
            "llm/v1/chat",
            "llama2",
            upstream,
            model="llama2",
            options={"llama2_format": "ollama"},
        ),
        route(
            "gemini",
            "/gemini/v1/chat/completions",
            "llm/v1/chat",
            "gemini",
            upstream,
            model="gemini-2.5-flash",
            auth={"param_name": "key", "param_value": GEMINI_KEY, "param_location": "query"},
        ),
        route(
            "bedrock",
            "/bedrock/v1/chat/completions",
            "llm/v1/chat",
            "bedrock",
            upstream,
            model=BEDROCK_MODEL,
            auth=aws,
            options={"bedrock": {"aws_region": "us-east-1"}},
        ),
        route(
            "huggingface",
            "/huggingface/v1/chat/completions",
            "llm/v1/chat",
            "huggingface",
            upstream,
            model="meta-llama/Llama-3.1-8B-Instruct",
            auth=bearer(HF_KEY),
        ),
        route("ollama", "/ollama/v1/chat/completions", "llm/v1/chat", "ollama", upstream, model="llama3.2"),
        {
            **route(
                "anthropic-native",
                "/anthropic-native/*",
                "llm/v1/chat",
                "anthropic",
                upstream,
                auth={"header_name": "x-api-key", "header_value": ANTHROPIC_KEY},
                options=anthropic_options,
            ),
            "llm_format": "anthropic",
        },
        {
            **route(
                "gemini-native",
                "/gemini-native/*",
                "llm/v1/chat",
                "gemini",
                upstream,
                auth={"header_name": "x-goog-api-key", "header_value": GEMINI_KEY},
            ),
            "llm_format": "gemini",
        },
        {
            **route(
                "bedrock-native",
                "/bedrock-native/*",
                "llm/v1/chat",
                "bedrock",
                upstream,
                auth=aws,
                options={"bedrock": {"aws_region": "us-east-1"}},
            ),
            "llm_format": "bedrock",
        },
    ]


PROVIDERS = list(get_args(Provider))  # every provider, each with a chat route above
# The emulator has no Azure stream fixture: it is told which one to send.
EXTRA_HEADERS = {("azure", True): {"x-emulator-fixture": "openai/chat/stream.sse"}}


def openai_client(gw: Gateway, provider: str, retries: int = 0, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{gw.url}/{provider}/v1", api_key="client-key", max_retries=retries, timeout=10, **kwargs
    )


def ask(gw: Gateway, provider: str, stream: bool) -> tuple[str, httpx.Headers]:
    """The answer's text (streams joined from their deltas) and the response headers."""
    client = openai_client(gw, provider)
    headers = EXTRA_HEADERS.get((provider, stream), {})
    model = "gpt-4o-mini" if provider == "openai" else None
    kwargs: dict[str, Any] = {"messages": QUESTION, "extra_headers": headers}
    if model:
        kwargs["model"] = model
    else:
        kwargs["model"] = "unused"
        kwargs["extra_body"] = {"model": None}
    if not stream:
        raw = client.chat.completions.with_raw_response.create(**kwargs)
        return raw.parse().choices[0].message.content, raw.headers
    with client.chat.completions.with_streaming_response.create(stream=True, **kwargs) as response:
        text = "".join(chunk.choices[0].delta.content or "" for chunk in response.parse() if chunk.choices)
        return text, response.headers


def ask_anthropic(gw: Gateway, stream: bool) -> str:
    client = anthropic.Anthropic(base_url=f"{gw.url}/anthropic-native", api_key="client-key", max_retries=0)
    if stream:
        with client.messages.stream(model="claude-sonnet-4-5", max_tokens=256, messages=QUESTION) as s:
            return "".join(s.text_stream)
    message = client.messages.create(model="claude-sonnet-4-5", max_tokens=256, messages=QUESTION)
    return message.content[0].text


def ask_gemini(gw: Gateway, stream: bool) -> str:
    client = genai.Client(
        api_key="client-key",
        http_options=genai_types.HttpOptions(base_url=f"{gw.url}/gemini-native", api_version="v1beta"),
    )
    if stream:
        return "".join(
            c.text or ""
            for c in client.models.generate_content_stream(
                model="gemini-2.5-flash", contents="What is 1 + 1?"
            )
        )
    return client.models.generate_content(model="gemini-2.5-flash", contents="What is 1 + 1?").text


def ask_bedrock(gw: Gateway, stream: bool) -> str:
    client = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=f"{gw.url}/bedrock-native",
        aws_access_key_id="client-id",
        aws_secret_access_key="client-secret",
        config=Config(retries={"max_attempts": 1}),
    )
    messages = [{"role": "user", "content": [{"text": "What is 1 + 1?"}]}]
    if stream:
        out = client.converse_stream(modelId=BEDROCK_MODEL, messages=messages)
        return "".join(
            e["contentBlockDelta"]["delta"].get("text", "") for e in out["stream"] if "contentBlockDelta" in e
        )
    out = client.converse(modelId=BEDROCK_MODEL, messages=messages)
    return out["output"]["message"]["content"][0]["text"]


NATIVE = {"anthropic-native": ask_anthropic, "gemini-native": ask_gemini, "bedrock-native": ask_bedrock}


def logged(gw: Gateway, text: str, timeout: float = 5.0) -> bool:
    """mitmdump's output is read by a thread: wait for a line to arrive."""
    deadline = time.monotonic() + timeout
    while text not in gw.log and time.monotonic() < deadline:
        time.sleep(0.02)
    return text in gw.log


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(folder: Path, upstream: str, mode: str, name: str) -> Gateway:
    config = folder / f"{name}.json"
    config.write_bytes(orjson.dumps({"routes": routes(upstream)}))
    extra = ["--set", f"ai_proxy_cassettes={folder / 'cassettes'}", "--set", f"ai_proxy_record_mode={mode}"]
    return Gateway(config, folder / f"{name}.jsonl", {}, extra)


@pytest.fixture(scope="module")
def tape(tmp_path_factory: pytest.TempPathFactory, emulator) -> Iterator[dict[str, Any]]:
    """Records every case once against the emulator, then serves replays from an unreachable upstream."""
    folder = tmp_path_factory.mktemp("cassettes")
    answers: dict[tuple[str, bool], str] = {}
    with start(folder, emulator.url, "new_episodes", "record") as recorder:
        for provider in PROVIDERS:
            for stream in (False, True):
                answers[provider, stream] = ask(recorder, provider, stream)[0]
        for name, call in NATIVE.items():
            for stream in (False, True):
                answers[name, stream] = call(recorder, stream)
        recorder.wait_records(len(answers))
        # new_episodes replays a call recorded earlier in the same run: the upstream sees it once.
        before = len(emulator.requests)
        again, again_headers = ask(recorder, "openai", False)
        repeat = {
            "text": again,
            "cassette": again_headers.get("x-ai-proxy-cassette"),
            "upstream": len(emulator.requests) - before,
        }
        recorded_log = recorder.log
    files = {p: p.stat().st_mtime_ns for p in (folder / "cassettes").rglob("*")}
    replayer = start(folder, f"http://127.0.0.1:{closed_port()}", "none", "replay")
    yield {
        "gw": replayer,
        "answers": answers,
        "dir": folder / "cassettes",
        "recorded_log": recorded_log,
        "repeat": repeat,
        "files": files,
        "folder": folder,
    }
    replayer.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_provider_replays_with_the_upstream_unreachable(tape, emulator, provider, stream):
    gw = tape["gw"]
    gw.clear_records()
    text, headers = ask(gw, provider, stream)
    assert text == tape["answers"][provider, stream]
    assert text  # the recorded answer, not an empty one
    cassette = headers["x-ai-proxy-cassette"]
    assert cassette.startswith(f"{provider}/") and cassette.endswith(".json")
    assert (tape["dir"] / cassette).is_file()
    (record,) = gw.wait_records(1)
    meta = record["ai"]["proxy"]["meta"]
    assert meta["replayed"] is True
    assert meta["route"] == provider
    assert meta["request_mode"] == ("stream" if stream else "oneshot")
    assert record["ai"]["proxy"]["usage"]["total_tokens"] > 0
    assert emulator.requests == []  # nothing reached the upstream


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("name", list(NATIVE))
def test_native_sdks_replay(tape, emulator, name, stream):
    gw = tape["gw"]
    gw.clear_records()
    assert NATIVE[name](gw, stream) == tape["answers"][name, stream]
    (record,) = gw.wait_records(1)
    assert record["ai"]["proxy"]["meta"]["replayed"] is True
    assert record["ai"]["proxy"]["meta"]["route"] == name
    assert emulator.requests == []


def test_new_episodes_replays_a_call_recorded_earlier_in_the_same_run(tape):
    repeat = tape["repeat"]
    assert repeat["upstream"] == 0
    assert repeat["text"] == tape["answers"]["openai", False]
    assert repeat["cassette"].startswith("openai/gpt-4o-mini-")


def test_one_anthropic_cassette_serves_an_openai_client_and_a_native_anthropic_client(tape, emulator):
    """The OpenAI-format route and the native route send Anthropic the same request (same body, same
    anthropic-version), so the cassette recorded through one replays through the other. The native
    client must send the route's anthropic-version: the version header is part of the key."""
    gw = tape["gw"]
    text, headers = ask(gw, "anthropic", False)
    native = anthropic.Anthropic(
        base_url=f"{gw.url}/anthropic-native",
        api_key="client-key",
        max_retries=0,
        default_headers={"anthropic-version": "2023-06-01"},
    )
    raw = native.messages.with_raw_response.create(
        model="claude-sonnet-4-5", max_tokens=256, messages=QUESTION
    )
    assert raw.headers["x-ai-proxy-cassette"] == headers["x-ai-proxy-cassette"]
    assert raw.parse().content[0].text == text  # the same recorded answer, in Anthropic's own shape
    assert raw.parse().model == "claude-sonnet-4-5-20250929"
    assert emulator.requests == []


def test_a_miss_in_none_mode_is_a_400_the_openai_sdk_does_not_retry(tape, emulator):
    gw = tape["gw"]
    attempts: list[httpx.Request] = []
    client = openai_client(
        gw, "anthropic", retries=3, http_client=httpx.Client(event_hooks={"request": [attempts.append]})
    )
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": "What is 2 + 2?"}]
        )
    assert e.value.status_code == 400
    assert e.value.code == "cassette_miss"
    message = e.value.body["message"]
    assert message.startswith("cassette_miss: no cassette in ")
    assert (
        "closest is anthropic/claude-sonnet-4-5-" in message
        and "differs in body.messages[0].content" in message
    )
    assert len(attempts) == 1  # not retried
    assert emulator.requests == []  # nothing went upstream
    assert logged(gw, "route=anthropic: cassette_miss:")


def test_a_miss_reaches_native_sdks_in_their_own_error_shape(tape, emulator):
    gw = tape["gw"]
    client = anthropic.Anthropic(base_url=f"{gw.url}/anthropic-native", api_key="k", max_retries=3)
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(
            model="claude-sonnet-4-5", max_tokens=256, messages=[{"role": "user", "content": "Hi?"}]
        )
    assert e.value.body["error"]["message"].startswith("cassette_miss: ")
    gemini = genai.Client(
        api_key="k",
        http_options=genai_types.HttpOptions(base_url=f"{gw.url}/gemini-native", api_version="v1beta"),
    )
    with pytest.raises(genai.errors.ClientError) as g:
        gemini.models.generate_content(model="gemini-2.5-flash", contents="Hi?")
    assert g.value.code == 400 and g.value.message.startswith("cassette_miss: ")
    bedrock = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=f"{gw.url}/bedrock-native",
        aws_access_key_id="id",
        aws_secret_access_key="secret",
    )
    with pytest.raises(bedrock.exceptions.ValidationException) as b:
        bedrock.converse(modelId=BEDROCK_MODEL, messages=[{"role": "user", "content": [{"text": "Hi?"}]}])
    assert b.value.response["Error"]["Message"].startswith("cassette_miss: ")
    assert b.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert emulator.requests == []


def test_no_configured_secret_reaches_the_cassettes(tape):
    files = list(tape["dir"].rglob("*.json"))
    # Native Gemini and Bedrock calls asked what the translated routes asked: they share cassettes.
    assert len(files) == 22
    assert {p.parent.name for p in files} == set(PROVIDERS)
    for path in files:
        data = path.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in data, (secret, path)
    # The Gemini route's key went upstream as ?key=; the cassette keeps the URL without it.
    gemini = next(
        p for p in files if p.parent.name == "gemini" and "stream" not in p.name and "native" not in p.name
    )
    assert "key=" not in orjson.loads(gemini.read_bytes())["request"]["url"]


def test_a_broken_cassette_is_skipped_with_a_warning_and_the_rest_replay(tape, tmp_path):
    shutil.copytree(tape["dir"], tmp_path / "cassettes")
    (tmp_path / "cassettes" / "openai" / "hand-edited.json").write_text('{"ai_proxy_cassette": 1, "match": {')
    with start(tmp_path, f"http://127.0.0.1:{closed_port()}", "none", "broken") as gw:
        text, _ = ask(gw, "openai", False)
        assert text == tape["answers"]["openai", False]
        assert gw.proc.poll() is None
        log = gw.log
    assert "skipping cassette openai/hand-edited.json: not JSON" in log
    assert "ai_proxy: 22 cassette(s) in" in log


def test_all_mode_goes_upstream_and_re_records_the_matching_cassette(tape, emulator, tmp_path):
    shutil.copytree(tape["dir"], tmp_path / "cassettes")
    before = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "cassettes").rglob("*.json")}
    with start(tmp_path, emulator.url, "all", "all") as gw:
        text, headers = ask(gw, "openai", False)
        assert text == tape["answers"]["openai", False]
        assert "x-ai-proxy-cassette" not in headers  # a live answer
        assert len(emulator.requests) == 1
        assert logged(gw, "ai_proxy: recorded openai/gpt-4o-mini-")
        (record,) = gw.wait_records(1)
        assert "replayed" not in record["ai"]["proxy"]["meta"]
    after = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "cassettes").rglob("*.json")}
    assert after.keys() == before.keys()  # the same file, replaced, nothing added
    changed = [name for name in before if before[name] != after[name]]
    assert len(changed) <= 1 and all(name.parts[1] == "openai" for name in changed)


def test_a_program_keeping_its_provider_url_replays_through_the_explicit_proxy(tape, emulator, tmp_path):
    """HTTPS_PROXY use in CI: the Anthropic SDK calls https://api.anthropic.com through the proxy (trusting
    mitmproxy's CA); a route matching that host, without upstream_url, replays the cassette recorded
    on the native route of the recording run (the same provider request)."""
    native = {
        **route(
            "anthropic-intercepted",
            "/v1/messages",
            "llm/v1/chat",
            "anthropic",
            None,
            auth={"header_name": "x-api-key", "header_value": ANTHROPIC_KEY},
            options={"anthropic_version": "2023-06-01"},
        ),
        "match": {"host": "api.anthropic.com", "path": "/v1/messages"},
        "llm_format": "anthropic",
    }
    config = tmp_path / "routes.json"
    config.write_bytes(orjson.dumps({"routes": [native]}))
    extra = [
        *("--set", f"confdir={tmp_path}", "--set", f"ai_proxy_cassettes={tape['dir']}"),
        *("--set", "ai_proxy_record_mode=none"),
    ]
    with Gateway(config, tmp_path / "stats.jsonl", {}, extra, mode="regular") as gw:
        ca = str(tmp_path / "mitmproxy-ca-cert.pem")
        http_client = anthropic.DefaultHttpxClient(proxy=gw.url, verify=ca)
        client = anthropic.Anthropic(api_key="none", http_client=http_client, max_retries=0)  # the real URL
        raw = client.messages.with_raw_response.create(
            model="claude-sonnet-4-5", max_tokens=256, messages=QUESTION
        )
        assert raw.parse().content[0].text == tape["answers"]["anthropic-native", False]
        assert raw.headers["x-ai-proxy-cassette"].startswith("anthropic/claude-sonnet-4-5-")
        (record,) = gw.wait_records(1)
        assert record["ai"]["proxy"]["meta"]["replayed"] is True
    assert emulator.requests == []


def test_traffic_recognised_without_a_route_replays_too(tape, emulator, tmp_path):
    """No routes file at all: the Anthropic SDK's own call to https://api.anthropic.com, recognised by
    the inspector, replays the cassette recorded on the native route (the same provider request)."""
    extra = [
        *("--set", f"confdir={tmp_path}", "--set", f"ai_proxy_cassettes={tape['dir']}"),
        *("--set", "ai_proxy_record_mode=none"),
    ]
    with Gateway(None, tmp_path / "stats.jsonl", {}, extra, mode="regular") as gw:
        ca = str(tmp_path / "mitmproxy-ca-cert.pem")
        http_client = anthropic.DefaultHttpxClient(proxy=gw.url, verify=ca)
        client = anthropic.Anthropic(api_key="sk-ant-client-own", http_client=http_client, max_retries=0)
        raw = client.messages.with_raw_response.create(
            model="claude-sonnet-4-5", max_tokens=256, messages=QUESTION
        )
        assert raw.parse().content[0].text == tape["answers"]["anthropic-native", False]
        assert raw.headers["x-ai-proxy-cassette"].startswith("anthropic/claude-sonnet-4-5-")
        (record,) = gw.wait_records(1)
        assert record["ai"]["proxy"]["meta"]["route"] == "inspect"
        assert record["ai"]["proxy"]["meta"]["replayed"] is True
        with pytest.raises(anthropic.BadRequestError) as e:  # a miss: the provider's own error shape
            client.messages.create(
                model="claude-sonnet-4-5", max_tokens=256, messages=[{"role": "user", "content": "?"}]
            )
        assert e.value.body["error"]["message"].startswith("cassette_miss: ")
    assert emulator.requests == []


def test_none_mode_never_writes_the_directory(tape):
    """Runs after the replays and misses above: the directory is exactly as the recording left it."""
    now = {p: p.stat().st_mtime_ns for p in tape["dir"].rglob("*")}
    assert now == tape["files"]
