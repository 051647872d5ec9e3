"""End to end: flows mitmdump saves (``save_stream_file``) carry no credential the gateway attached.

Calls on every credential kind (a header, a query parameter, a body parameter, SigV4 with a
session token, a GCP token minted from a service-account key) plus a stream and a failed upstream
are saved by mitmdump; the file holds every flow, each with a marker where the credential was, the
client's request beside the provider's, and none of the secrets or minted tokens. The provider
received the real values. Replaying the file (``client_replay``) puts the route's credential back
(a fresh signature, a fresh token) and refuses, in the client's format, a flow whose route is gone.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from conftest import MITMDUMP, ROOT, Gateway, route
from mitmproxy import http, io
from test_e2e_bedrock import assert_signed
from test_gcp_auth import TokenEndpoint, new_key

ANTHROPIC_KEY = "sk-ant-api03-masking-test-key-0123456789"
QUERY_KEY = "AIzaSyMaskingQueryKey-0123456789abcdef"
BODY_KEY = "body-param-secret-0123456789abcdef"
ACCESS_KEY = "AKIAMASKINGEXAMPLE01"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiMaskingKEY"
SESSION_TOKEN = "FwoGZXIvYXdzEMaskingSessionTokenExample0123"
CLIENT_KEY = "sk-client-own-key-masking"
HI = [{"role": "user", "content": "Hi"}]
ANTHROPIC = {"anthropic_version": "2023-06-01"}
VERTEX = {
    "api_endpoint": "us-central1-aiplatform.googleapis.com",
    "project_id": "p",
    "location_id": "us-central1",
}


def marker(name: str) -> str:
    return f"[ai-proxy: {name} credential]"


@pytest.fixture(scope="module")
def token_endpoint() -> Iterator[TokenEndpoint]:
    server = TokenEndpoint()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def account(token_endpoint: TokenEndpoint) -> str:
    return token_endpoint.register("masking@p.iam.gserviceaccount.com", new_key(), "9a8b7c")


def routes(emulator_url: str, account: str) -> list[dict[str, Any]]:
    aws = {
        "aws_access_key_id": ACCESS_KEY,
        "aws_secret_access_key": SECRET_KEY,
        "aws_session_token": SESSION_TOKEN,
    }
    return [
        route(
            "anthropic-chat",
            "/anthropic/v1/chat/completions",
            "llm/v1/chat",
            "anthropic",
            emulator_url,
            auth={"header_name": "x-api-key", "header_value": ANTHROPIC_KEY},
            options=ANTHROPIC,
        ),
        route(
            "gemini-query",
            "/query/v1/chat/completions",
            "llm/v1/chat",
            "gemini",
            emulator_url,
            auth={"param_name": "key", "param_value": QUERY_KEY, "param_location": "query"},
        ),
        route(
            "openai-body",
            "/body/v1/chat/completions",
            "llm/v1/chat",
            "openai",
            emulator_url,
            auth={"param_name": "api_key", "param_value": BODY_KEY, "param_location": "body"},
        ),
        route(
            "bedrock-chat",
            "/bedrock/v1/chat/completions",
            "llm/v1/chat",
            "bedrock",
            emulator_url,
            auth=aws,
            options={"bedrock": {"aws_region": "us-east-1"}},
        ),
        route(
            "vertex-chat",
            "/vertex/v1/chat/completions",
            "llm/v1/chat",
            "gemini",
            emulator_url,
            model="gemini-2.5-pro",
            auth={"gcp_use_service_account": True, "gcp_service_account_json": account},
            options={"gemini": VERTEX},
        ),
        route(
            "dead-upstream",
            "/dead/v1/chat/completions",
            "llm/v1/chat",
            "anthropic",
            "http://127.0.0.1:1",
            auth={"header_name": "x-api-key", "header_value": ANTHROPIC_KEY},
            options=ANTHROPIC,
        ),
    ]


def start(folder: Path, name: str, config: list[dict[str, Any]], extra: list[str]) -> Gateway:
    path = folder / f"{name}.json"
    path.write_bytes(orjson.dumps({"routes": config}))
    return Gateway(path, folder / f"{name}-stats.jsonl", {}, extra)


def client(gw: Gateway, prefix: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/{prefix}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10)


def read_flows(path: Path) -> list[http.HTTPFlow]:
    with path.open("rb") as f:
        return [flow for flow in io.FlowReader(f).stream() if isinstance(flow, http.HTTPFlow)]


def by_route(flows: list[http.HTTPFlow]) -> dict[str, list[http.HTTPFlow]]:
    out: dict[str, list[http.HTTPFlow]] = {}
    for flow in flows:
        out.setdefault(flow.metadata["ai_proxy"]["masked"]["route"], []).append(flow)
    return out


@pytest.fixture(scope="module")
def saved(emulator, account, token_endpoint, tmp_path_factory) -> dict[str, Any]:
    """One mitmdump that saved the flows of a call on every credential kind, and what the
    emulator received meanwhile."""
    folder = tmp_path_factory.mktemp("masking")
    flows_file = folder / "flows.mitm"
    emulator.reset()
    gw = start(folder, "gateway", routes(emulator.url, account), ["--set", f"save_stream_file={flows_file}"])
    received: dict[str, Any] = {}
    try:
        answers = {}
        answers["anthropic"] = client(gw, "anthropic").chat.completions.create(
            model="claude-3-5-haiku", messages=HI
        )
        received["anthropic"] = emulator.last
        stream = client(gw, "anthropic").chat.completions.create(
            model="claude-3-5-haiku", messages=HI, stream=True
        )
        answers["stream"] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        answers["gemini"] = client(gw, "query").chat.completions.create(model="gemini-2.5-flash", messages=HI)
        received["gemini"] = emulator.last
        answers["openai"] = client(gw, "body").chat.completions.create(model="gpt-4o-mini", messages=HI)
        received["openai"] = emulator.last
        answers["bedrock"] = client(gw, "bedrock").chat.completions.create(
            model="anthropic.claude-3-5-sonnet-20240620-v1:0", messages=HI
        )
        received["bedrock"] = emulator.last
        answers["vertex"] = client(gw, "vertex").chat.completions.create(model="gemini-2.5-pro", messages=HI)
        received["vertex"] = emulator.last
        with pytest.raises(openai.APIStatusError) as dead:
            client(gw, "dead").chat.completions.create(model="claude-3-5-haiku", messages=HI)
        answers["dead"] = dead.value.status_code
    finally:
        gw.stop()  # Save writes and closes the file on shutdown
    minted = [f"ya29.c.test-token-{n}" for n in range(1, token_endpoint.issued + 1)]
    return {"file": flows_file, "answers": answers, "received": received, "minted": minted, "folder": folder}


def secrets(saved: dict[str, Any], account: str) -> list[str]:
    key = orjson.loads(account)["private_key"]
    pem_line = key.splitlines()[5]  # any line of the private key
    return [
        ANTHROPIC_KEY,
        QUERY_KEY,
        BODY_KEY,
        ACCESS_KEY,
        SECRET_KEY,
        SESSION_TOKEN,
        CLIENT_KEY,
        pem_line,
        *saved["minted"],
    ]


def test_the_provider_received_the_real_credentials(saved, account):
    received = saved["received"]
    assert received["anthropic"].headers["x-api-key"] == ANTHROPIC_KEY
    assert received["gemini"].path.endswith(f"?key={QUERY_KEY}")
    assert received["openai"].json()["api_key"] == BODY_KEY
    assert received["bedrock"].headers["x-amz-security-token"] == SESSION_TOKEN
    assert_signed(
        received["bedrock"], SECRET_KEY, ACCESS_KEY, "us-east-1", received["bedrock"].headers["host"]
    )
    assert saved["minted"] == ["ya29.c.test-token-1"]
    assert received["vertex"].headers["authorization"] == "Bearer ya29.c.test-token-1"
    assert saved["answers"]["stream"] and saved["answers"]["dead"] == 502


def test_the_flow_file_holds_every_flow_and_no_secret(saved, account):
    data = saved["file"].read_bytes()
    flows = by_route(read_flows(saved["file"]))
    assert {name: len(f) for name, f in flows.items()} == {
        "anthropic-chat": 2,
        "gemini-query": 1,
        "openai-body": 1,
        "bedrock-chat": 1,
        "vertex-chat": 1,
        "dead-upstream": 1,
    }
    for secret in secrets(saved, account):
        assert secret.encode() not in data, secret
    assert marker("anthropic-chat").encode() in data


def test_each_credential_is_replaced_by_a_marker_naming_the_route(saved):
    flows = by_route(read_flows(saved["file"]))
    for flow in flows["anthropic-chat"]:
        assert flow.request.headers["x-api-key"] == marker("anthropic-chat")
        assert flow.metadata["ai_proxy"]["masked"] == {
            "route": "anthropic-chat",
            "headers": ["x-api-key"],
            "query": [],
            "body": [],
        }
    (gemini,) = flows["gemini-query"]
    assert gemini.request.query["key"] == marker("gemini-query")
    (body,) = flows["openai-body"]
    assert body.request.json()["api_key"] == marker("openai-body")
    assert body.request.headers["content-length"] == str(len(body.request.raw_content))
    (bedrock,) = flows["bedrock-chat"]
    assert bedrock.request.headers["authorization"] == marker("bedrock-chat")
    assert bedrock.request.headers["x-amz-security-token"] == marker("bedrock-chat")
    (vertex,) = flows["vertex-chat"]
    assert vertex.request.headers["authorization"] == marker("vertex-chat")
    (dead,) = flows["dead-upstream"]
    # The gateway answers a dead upstream itself (addon/upstream_relay.py): masked all the same.
    assert dead.response is not None and dead.response.status_code == 502
    assert dead.request.headers["x-api-key"] == marker("dead-upstream")


def test_the_client_request_is_kept_beside_the_provider_request(saved):
    flows = by_route(read_flows(saved["file"]))
    plain, streamed = flows["anthropic-chat"]
    kept = plain.metadata["ai_proxy"]["client_request"]
    assert (kept["method"], kept["path"]) == ("POST", "/anthropic/v1/chat/completions")
    assert orjson.loads(kept["body"]) == {"model": "claude-3-5-haiku", "messages": HI}
    assert kept["body_size"] == len(kept["body"]) and kept["truncated"] is False
    headers = dict(kept["headers"])
    assert headers["authorization"] == "[ai-proxy: client credential]"
    assert plain.request.path == "/v1/messages"
    assert orjson.loads(plain.metadata["ai_proxy"]["provider_response"]["body"])["type"] == "message"
    assert plain.metadata["ai_proxy"]["ai"]["proxy"]["meta"]["route"] == "anthropic-chat"
    # The streamed answer was not stored by mitmproxy; the transcript the gateway kept was.
    assert streamed.response.raw_content is None
    assembled = streamed.metadata["ai_proxy"]["assembled"]
    assert assembled["text"] == saved["answers"]["stream"]
    assert assembled["finish_reason"] == "stop" and assembled["truncated"] is False


def replay(folder: Path, name: str, config: list[dict[str, Any]], source: Path) -> list[http.HTTPFlow]:
    """mitmdump replays every flow of ``source`` (``client_replay``) and exits; the replayed flows
    are saved to a new file."""
    out = folder / f"{name}.mitm"
    config_path = folder / f"{name}.json"
    config_path.write_bytes(orjson.dumps({"routes": config}))
    cmd = [
        MITMDUMP, "-s", str(ROOT / "addon" / "ai_proxy.py"), "--mode", "reverse:http://127.0.0.1:1",
        "--listen-host", "127.0.0.1", "-p", "0", "--set", f"ai_proxy_config={config_path}",
        "--set", f"client_replay={source}", "--set", f"save_stream_file={out}", "--set", "flow_detail=0",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/")
    assert done.returncode == 0, done.stdout + done.stderr
    return read_flows(out)


def test_replaying_puts_the_route_credentials_back(saved, emulator, account, token_endpoint):
    emulator.reset()
    issued = token_endpoint.issued
    config = [r for r in routes(emulator.url, account) if r["name"] != "gemini-query"]
    flows = by_route(replay(saved["folder"], "replayed", config, saved["file"]))
    sent = {r.path.split("?")[0]: r for r in emulator.requests}
    # Header, body parameter, a fresh signature and a freshly minted token: all real again upstream.
    assert [f.response.status_code for f in flows["anthropic-chat"]] == [200, 200]
    assert sent["/v1/messages"].headers["x-api-key"] == ANTHROPIC_KEY
    assert flows["openai-body"][0].response.status_code == 200
    assert sent["/v1/chat/completions"].json()["api_key"] == BODY_KEY
    bedrock = next(r for r in emulator.requests if "/converse" in r.path)
    assert flows["bedrock-chat"][0].response.status_code == 200
    assert_signed(bedrock, SECRET_KEY, ACCESS_KEY, "us-east-1", bedrock.headers["host"])
    assert bedrock.headers["x-amz-security-token"] == SESSION_TOKEN
    vertex = next(r for r in emulator.requests if "/publishers/google/" in r.path)
    assert token_endpoint.issued == issued + 1
    assert vertex.headers["authorization"] == f"Bearer ya29.c.test-token-{issued + 1}"
    assert flows["vertex-chat"][0].response.status_code == 200
    # A flow whose route is gone is refused in the client's format; no marker went upstream.
    (gone,) = flows["gemini-query"]
    assert gone.response.status_code == 400
    assert gone.response.json()["error"]["message"] == (
        "cannot replay this flow: route gemini-query no longer exists, so its credential is unknown"
    )
    assert not any("ai-proxy" in repr(r.headers) + r.path + r.body.decode() for r in emulator.requests)
    # The replayed flows are masked again when saved.
    data = (saved["folder"] / "replayed.mitm").read_bytes()
    for secret in [*secrets(saved, account), f"ya29.c.test-token-{issued + 1}"]:
        assert secret.encode() not in data, secret


def test_a_request_in_flight_at_shutdown_is_saved_masked(emulator, tmp_path):
    """mitmproxy's Save addon writes flows still waiting for an answer when it shuts down."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    received = bytearray()
    held: list[socket.socket] = []  # the upstream connection stays open: the request waits for an answer

    def swallow() -> None:
        conn, _ = silent.accept()
        held.append(conn)
        while b"\r\n\r\n" not in received:
            received.extend(conn.recv(65536))

    reader = threading.Thread(target=swallow, daemon=True)
    reader.start()
    config = [
        route(
            "silent",
            "/silent/v1/chat/completions",
            "llm/v1/chat",
            "anthropic",
            f"http://127.0.0.1:{silent.getsockname()[1]}",
            auth={"header_name": "x-api-key", "header_value": ANTHROPIC_KEY},
            options=ANTHROPIC,
        )
    ]
    flows_file = tmp_path / "flows.mitm"
    gw = start(tmp_path, "silent", config, ["--set", f"save_stream_file={flows_file}"])
    try:
        body = {"model": "claude-3-5-haiku", "messages": HI}

        def ask() -> None:
            with contextlib.suppress(httpx.HTTPError):  # mitmdump stops before an answer comes
                httpx.post(f"{gw.url}/silent/v1/chat/completions", json=body, timeout=5)

        asking = threading.Thread(target=ask, daemon=True)
        asking.start()
        reader.join(5)
        assert f"x-api-key: {ANTHROPIC_KEY}".encode() in bytes(received)  # the real key went out
        assert gw.proc.poll() is None and asking.is_alive()  # still waiting when mitmdump stops
    finally:
        gw.stop()
        for conn in held:
            conn.close()
        silent.close()
    (flow,) = read_flows(flows_file)
    assert flow.response is None and flow.request.headers["x-api-key"] == marker("silent")
    assert ANTHROPIC_KEY.encode() not in flows_file.read_bytes()
