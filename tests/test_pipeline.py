"""The pure request/response pipeline, without mitmproxy."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from conftest import fixture_bytes

from transforms.auth import apply_auth, client_token
from transforms.config import Auth, Route
from transforms.errors import GatewayError
from transforms.pipeline import forwarded_path, prepare, translate_response
from transforms.types import Inbound


def make_route(**overrides: Any) -> Route:
    data: dict[str, Any] = {
        "name": "r",
        "match": {"path": "/v1/chat/completions"},
        "route_type": "llm/v1/chat",
        "model": {"provider": "openai", "options": {}},
    }
    for key, value in overrides.items():
        if key == "options":
            data["model"]["options"] = value
        elif key == "model_name":
            data["model"]["name"] = value
        elif key == "provider":
            data["model"]["provider"] = value
        else:
            data[key] = value
    return Route.model_validate(data)


def inbound(
    body: Any, path: str = "/v1/chat/completions", headers: dict[str, str] | None = None, query=()
) -> Inbound:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return Inbound("POST", "gw.local", path, list(query), headers or {}, raw)


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def run(route: Route, body: Any = CHAT, **kw: Any):
    return prepare(route, inbound(body, **kw), request_id="abc", now=1700000000)


def test_openai_target_and_body():
    prep = run(make_route())
    up = prep.upstream
    assert up.url == "https://api.openai.com/v1/chat/completions"
    assert orjson.loads(up.body) == {**CHAT}
    assert up.set_headers["content-type"] == "application/json"
    assert prep.request_model == "gpt-4o-mini"
    assert not prep.stream


@pytest.mark.parametrize(
    ("upstream_url", "expected"),
    [
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000/v1/chat/completions"),
        ("http://127.0.0.1:9000/", "http://127.0.0.1:9000/v1/chat/completions"),
        ("https://proxy.example/custom/path?x=1", "https://proxy.example/custom/path?x=1"),
        ("https://api.example:443", "https://api.example/v1/chat/completions"),
    ],
)
def test_upstream_url_semantics(upstream_url, expected):
    assert run(make_route(options={"upstream_url": upstream_url})).upstream.url == expected


def test_azure_url_and_client_api_version_wins():
    route = make_route(
        provider="azure",
        model_name="gpt-4o",
        options={"azure_instance": "inst", "azure_deployment_id": "dep", "azure_api_version": "2024-10-21"},
    )
    body = {"messages": CHAT["messages"]}
    assert run(route, body).upstream.url == (
        "https://inst.openai.azure.com/openai/deployments/dep/chat/completions?api-version=2024-10-21"
    )
    with_query = run(route, body, query=[("api-version", "2025-01-01-preview")])
    assert with_query.upstream.url.endswith("?api-version=2025-01-01-preview")


def test_mistral_default_base_and_top_k_dropped():
    route = make_route(provider="mistral", options={"mistral_format": "openai", "top_k": 5})
    prep = run(route)
    assert prep.upstream.url == "https://api.mistral.ai/v1/chat/completions"
    assert "top_k" not in orjson.loads(prep.upstream.body)


def test_llama2_openai_format_keeps_top_k():
    route = make_route(
        provider="llama2", options={"llama2_format": "openai", "upstream_url": "http://h:1", "top_k": 5}
    )
    assert orjson.loads(run(route).upstream.body)["top_k"] == 5


def test_defaults_do_not_override_client_values():
    route = make_route(options={"max_tokens": 100, "temperature": 0.7, "top_p": 0.9})
    body = orjson.loads(run(route, {**CHAT, "temperature": 0, "max_completion_tokens": 5}).upstream.body)
    assert body["temperature"] == 0
    assert body["top_p"] == 0.9
    assert "max_tokens" not in body  # the client's max_completion_tokens already bounds it
    assert body["max_completion_tokens"] == 5


def test_streaming_modes():
    assert run(make_route(), {**CHAT, "stream": True}).stream
    always = run(make_route(response_streaming="always"))
    assert always.stream and orjson.loads(always.upstream.body)["stream"] is True
    assert always.upstream.set_headers["accept-encoding"] == "identity"
    with pytest.raises(GatewayError, match="response streaming is not enabled for this LLM"):
        run(make_route(response_streaming="deny"), {**CHAT, "stream": True})


def test_stream_usage_is_requested_from_openai():
    body = orjson.loads(run(make_route(), {**CHAT, "stream": True}).upstream.body)
    assert body["stream_options"] == {"include_usage": True}


def test_body_size_limit():
    with pytest.raises(GatewayError) as err:
        run(make_route(max_request_body_size=10))
    assert err.value.status == 413
    assert run(make_route(max_request_body_size=0)).upstream  # 0 means unlimited


def test_preserve_forwards_path_without_the_match_prefix():
    route = make_route(route_type="preserve", match={"path": "/openai/*"})
    prep = run(
        route,
        {"input": "x", "model": "text-embedding-3-small"},
        path="/openai/v1/embeddings",
        query=[("a", "1")],
    )
    assert prep.passthrough
    assert prep.upstream.url == "https://api.openai.com/v1/embeddings?a=1"
    assert prep.request_model == "text-embedding-3-small"
    assert forwarded_path(route, "/openai") == "/"


def test_preserve_answers_are_passed_through_with_usage():
    route = make_route(route_type="preserve", match={"path": "/openai/*"})
    prep = run(route, b"not json at all", path="/openai/v1/files")
    raw = fixture_bytes("openai/embeddings/response.json")
    answer = translate_response(prep, 200, raw)
    assert answer.body == raw
    assert answer.usage.total_tokens == 13
    assert answer.response_model == "text-embedding-3-small"


def test_response_normalization_fills_missing_fields():
    prep = run(make_route())
    answer = translate_response(
        prep,
        200,
        orjson.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "hello world"}}]}),
    )
    out = orjson.loads(answer.body)
    assert out["id"] == "chatcmpl-abc"
    assert out["created"] == 1700000000
    assert out["object"] == "chat.completion"
    assert out["model"] == "gpt-4o-mini"
    assert answer.usage.estimated  # no usage from upstream: estimated for statistics
    assert answer.usage.completion_tokens == 3  # ceil(11 / 4)


@pytest.mark.parametrize(
    ("status", "body", "message", "type_", "code"),
    [
        (
            401,
            b'{"error": {"message": "bad key sk-configured-9999", "type": "invalid_request_error", "code": "invalid_api_key"}}',
            "bad key [REDACTED]",
            "invalid_request_error",
            "invalid_api_key",
        ),
        (
            400,
            b'{"object": "error", "message": "vLLM says no", "type": "BadRequestError", "code": 400}',
            "vLLM says no",
            "invalid_request_error",
            "400",
        ),
        (503, b'{"detail": "overloaded"}', "overloaded", "api_error", None),
        (500, b"<html><body>oops</body></html>", "upstream returned HTTP 500", "api_error", None),
        (502, b"plain text failure", "upstream returned HTTP 502: plain text failure", "api_error", None),
        (429, b"", "upstream returned HTTP 429", "rate_limit_error", None),
    ],
)
def test_upstream_errors(status, body, message, type_, code):
    route = make_route(auth={"header_name": "Authorization", "header_value": "Bearer sk-configured-9999"})
    prep = run(route)
    answer = translate_response(prep, status, body)
    assert answer.status == status
    err = orjson.loads(answer.body)["error"]
    assert err == {"message": message, "type": type_, "param": None, "code": code}


def test_untranslatable_body_is_502_and_redacted():
    prep = run(make_route())
    with pytest.raises(GatewayError) as err:
        translate_response(prep, 200, b"[1, 2]")
    assert err.value.status == 502
    assert err.value.message.startswith("failed to translate the openai://llm/v1/chat response")


def test_native_format_passes_body_and_reads_model_from_path():
    route = make_route(
        provider="gemini",
        llm_format="gemini",
        match={"path": "/g/*"},
        auth={"header_name": "x-goog-api-key", "header_value": "AIza-secret"},
    )
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    prep = run(
        route, body, path="/g/v1beta/models/gemini-2.0-flash:streamGenerateContent", query=[("alt", "sse")]
    )
    assert prep.passthrough and prep.stream
    assert prep.request_model == "gemini-2.0-flash"
    assert prep.upstream.body == orjson.dumps(body)
    assert prep.upstream.path == "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    assert prep.upstream.set_headers["x-goog-api-key"] == "AIza-secret"


# --- auth ---------------------------------------------------------------------------------------


def test_client_token_forms():
    assert client_token({"authorization": "Bearer abc"}) == "abc"
    assert client_token({"authorization": "Basic abc"}) is None
    # boto3 signs (SigV4): that is no key, but a key it adds as x-api-key is.
    assert client_token({"authorization": "AWS4-HMAC-SHA256 Credential=AKID/...", "x-api-key": "k"}) == "k"
    assert client_token({"x-api-key": "k"}) == "k"
    assert client_token({}) is None


def test_override_moves_an_sdk_bearer_into_the_provider_header():
    auth = Auth(header_name="x-api-key", header_value="configured", allow_override=True)
    result = apply_auth(auth, {"authorization": "Bearer client-own"}, {}, {})
    assert result.set_headers == {"x-api-key": "client-own"}
    assert "authorization" in result.remove_headers


def test_override_keeps_the_bearer_form():
    auth = Auth(header_name="Authorization", header_value="Bearer configured", allow_override=True)
    assert apply_auth(auth, {"x-api-key": "own"}, {}, {}).set_headers == {"authorization": "Bearer own"}


def test_no_override_replaces_everything():
    auth = Auth(header_name="x-api-key", header_value="configured")
    result = apply_auth(auth, {"x-api-key": "client", "authorization": "Bearer c"}, {}, {})
    assert result.set_headers == {"x-api-key": "configured"}
    assert set(result.remove_headers) == {"authorization", "api-key", "x-goog-api-key"}


def test_no_auth_configured_leaves_client_credentials():
    result = apply_auth(Auth(), {"authorization": "Bearer c"}, {}, {})
    assert result.set_headers == {} and result.remove_headers == []


def test_param_auth_with_override():
    auth = Auth(param_name="key", param_value="conf", param_location="query", allow_override=True)
    assert apply_auth(auth, {}, {"key": "mine"}, {}).query == {"key": "mine"}
    assert apply_auth(auth, {}, {}, {}).query == {"key": "conf"}
    body_auth = Auth(param_name="api_key", param_value="conf", param_location="body")
    assert apply_auth(body_auth, {}, {}, {"api_key": "mine"}).body_params == {"api_key": "conf"}


def test_gcp_token_becomes_bearer():
    auth = Auth(gcp_use_service_account=True)
    result = apply_auth(auth, {"authorization": "Bearer client"}, {}, {}, {"gcp_access_token": "ya29.tok"})
    assert result.set_headers == {"authorization": "Bearer ya29.tok"}


def test_float_embeddings_are_encoded_when_the_client_asked_for_base64():
    import base64
    import struct

    route = make_route(route_type="llm/v1/embeddings", match={"path": "/v1/embeddings"})
    prep = run(route, {"model": "e", "input": "x", "encoding_format": "base64"}, path="/v1/embeddings")
    answer = translate_response(
        prep, 200, orjson.dumps({"object": "list", "data": [{"index": 0, "embedding": [0.5, -1.25]}]})
    )
    encoded = orjson.loads(answer.body)["data"][0]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(encoded)) == (0.5, -1.25)
    plain = run(route, {"model": "e", "input": "x"}, path="/v1/embeddings")
    assert orjson.loads(translate_response(plain, 200, orjson.dumps({"data": [{"embedding": [0.5]}]})).body)[
        "data"
    ][0]["embedding"] == [0.5]
