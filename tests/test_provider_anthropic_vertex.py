"""Claude on Vertex AI (transforms/providers/anthropic_vertex.py), with the anthropic SDK's own
``AnthropicVertex`` request preparation (anthropic.lib.vertex) as the oracle of the URL and body
Vertex takes, and its Messages types as the oracle of the body itself."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from anthropic import AnthropicVertex
from anthropic._models import FinalRequestOptions
from anthropic.lib.vertex._client import _prepare_options
from conftest import fixture_json
from pydantic import ValidationError
from test_provider_anthropic import CHAT_CASES, assert_chat_completion, assert_valid_anthropic

from transforms.config import ModelOptions, Route
from transforms.errors import GatewayError
from transforms.pipeline import prepare, translate_response
from transforms.providers import anthropic_vertex
from transforms.recognize import UNMETERED, Recognized, operation_of, recognize
from transforms.registry import SPECS, spec_for
from transforms.types import CallContext, Inbound

SPEC = SPECS["anthropic_vertex"]
CHAT = SPEC.routes["llm/v1/chat"]
MODEL = "claude-sonnet-4-5@20250929"
VERTEX = {
    "api_endpoint": "us-east5-aiplatform.googleapis.com",
    "project_id": "my-project",
    "location_id": "us-east5",
}
GLOBAL = {"api_endpoint": "aiplatform.googleapis.com", "project_id": "my-project", "location_id": "global"}
VERSION = "vertex-2023-10-16"


def options(vertex: dict[str, str] = VERTEX) -> ModelOptions:
    return ModelOptions.model_validate({"anthropic_version": VERSION, "gemini": vertex})


def make_ctx(*, stream: bool = False, model: str = MODEL, vertex: dict[str, str] = VERTEX) -> CallContext:
    return CallContext(
        "claude-vertex", "llm/v1/chat", "anthropic", model, options(vertex), stream, "req-1", 1
    )


def vertex_route(**extra: Any) -> Route:
    return Route.model_validate(
        {
            "name": "claude-vertex",
            "route_type": "llm/v1/chat",
            "auth": {"header_name": "Authorization", "header_value": "Bearer ya29.header-token"},
            "model": {
                "provider": "anthropic",
                "name": MODEL,
                "options": options().model_dump(exclude_none=True),
            },
            **extra,
        }
    )


def sdk_request(body: dict[str, Any], url: str = "/v1/messages", region: str = "us-east5") -> tuple[str, Any]:
    """What ``AnthropicVertex`` sends for an Anthropic Messages body: (path under the host, body)."""
    options = FinalRequestOptions.construct(method="post", url=url, json_data=copy.deepcopy(body))
    prepared = _prepare_options(options, project_id="my-project", region=region)
    return "/v1" + prepared.url, prepared.json_data


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
# The images case sends an image URL, which Vertex refuses (test_image_urls_are_refused...).
@pytest.mark.parametrize("case", [case for case in CHAT_CASES if case != "images"])
def test_chat_request_is_the_anthropic_body_as_anthropic_vertex_sends_it(case: str, stream: bool) -> None:
    client = fixture_json(f"anthropic/{case}/client.json")
    req = CHAT.build_request(copy.deepcopy(client), make_ctx(stream=stream, model=client["model"]))
    anthropic_body = fixture_json(f"anthropic/{case}/request.json")
    if stream:
        anthropic_body["stream"] = True
    # The SDK keeps a body's own anthropic_version: given Vertex's, the rest is its own doing.
    path, body = sdk_request({**anthropic_body, "anthropic_version": VERSION})
    assert (req.path, req.body) == (path, body)
    assert "model" not in req.body
    assert req.body["anthropic_version"] == VERSION
    assert path.endswith(":streamRawPredict" if stream else ":rawPredict")
    assert "anthropic-version" not in req.headers  # Vertex reads the version from the body
    assert_valid_anthropic(
        {**{k: v for k, v in req.body.items() if k != "anthropic_version"}, "model": MODEL}
    )


def test_global_location_uses_the_global_host_as_anthropic_vertex_does() -> None:
    prep = prepare(
        vertex_route().model_copy(
            update={"model": vertex_route().model.model_copy(update={"options": options(GLOBAL)})}
        ),
        Inbound(
            "POST",
            "gw",
            "/v1/chat/completions",
            [],
            {},
            orjson.dumps({"messages": [{"role": "user", "content": "Hi"}]}),
        ),
        request_id="r",
        now=1,
    )
    sdk = AnthropicVertex(region="global", project_id="my-project", access_token="t")
    path, _ = sdk_request({"model": MODEL, "max_tokens": 1, "messages": []}, region="global")
    assert prep.upstream.url == str(sdk.base_url).rstrip("/").removesuffix("/v1") + path
    assert prep.upstream.url == (
        "https://aiplatform.googleapis.com/v1/projects/my-project/locations/global/publishers/anthropic/models/"
        "claude-sonnet-4-5@20250929:rawPredict"
    )
    assert prep.upstream.set_headers["authorization"] == "Bearer ya29.header-token"


def test_answers_are_read_as_anthropic_answers() -> None:
    raw = {**fixture_json("anthropic/chat/response.json"), "id": "msg_vrtx_0162rhgehxa9rvJM5BSVLZ9j"}
    out = CHAT.parse_response(raw, make_ctx())
    assert_chat_completion(out)
    assert out["id"] == "msg_vrtx_0162rhgehxa9rvJM5BSVLZ9j"
    assert out["choices"][0]["message"]["content"] == "The capital of Australia is Canberra — not Sydney."
    assert out["usage"] == {"prompt_tokens": 27, "completion_tokens": 13, "total_tokens": 40}


def test_spec_key_selects_vertex_only_with_vertex_options() -> None:
    assert spec_for(vertex_route()) is SPEC
    direct = Route.model_validate(
        {
            "name": "d",
            "route_type": "llm/v1/chat",
            "model": {"provider": "anthropic", "options": {"anthropic_version": "2023-06-01"}},
        }
    )
    assert spec_for(direct) is SPECS["anthropic"]


def test_a_non_vertex_anthropic_version_is_a_config_error() -> None:
    with pytest.raises(ValidationError) as err:
        Route.model_validate(
            {
                "name": "v",
                "route_type": "llm/v1/chat",
                "model": {
                    "provider": "anthropic",
                    "options": {"anthropic_version": "2023-06-01", "gemini": VERTEX},
                },
            }
        )
    assert (
        "Claude on Vertex AI (anthropic with model.options.gemini) takes a Vertex 'model.options.anthropic_version' "
        "such as 'vertex-2023-10-16', not '2023-06-01'"
    ) in str(err.value)


# --- model rules and reasoning, as on Anthropic ---------------------------------------------------


def test_newer_claude_gets_temperature_only() -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "temperature": 0.5, "top_p": 0.9}
    req = CHAT.build_request(copy.deepcopy(body), make_ctx())
    assert (req.body.get("temperature"), "top_p" in req.body) == (0.5, False)
    assert req.notes == {
        "claude_temperature_top_p": (
            "model 'claude-sonnet-4-5@20250929' takes temperature or top_p, not both: "
            "sending temperature only (top_p dropped)"
        )
    }
    older = "claude-3-5-sonnet-v2@20241022"
    req = CHAT.build_request({**body, "model": older}, make_ctx(model=older))
    assert (req.body["temperature"], req.body["top_p"], req.notes) == (0.5, 0.9, {})
    assert req.path.endswith(f"/models/{older}:rawPredict")


def test_reasoning_effort_turns_thinking_on() -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "reasoning_effort": "low"}
    req = CHAT.build_request(body, make_ctx())
    direct = (
        SPECS["anthropic"]
        .routes["llm/v1/chat"]
        .build_request(
            copy.deepcopy(body),
            CallContext("c", "llm/v1/chat", "anthropic", MODEL, ModelOptions(), False, "r", 1),
        )
    )
    assert req.body["thinking"] == direct.body["thinking"]
    assert req.body["thinking"]["type"] == "enabled"
    assert req.body["thinking"]["budget_tokens"] < req.body["max_tokens"] == direct.body["max_tokens"]
    assert "model" not in req.body


def test_image_urls_are_refused_inline_images_go() -> None:
    image = "https://example.com/cat.png"
    parts = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": image}}]
    body = {"model": MODEL, "messages": [{"role": "user", "content": parts}]}
    with pytest.raises(GatewayError) as err:
        CHAT.build_request(copy.deepcopy(body), make_ctx())
    assert (err.value.status, err.value.code, err.value.param, err.value.message) == (
        400,
        "unsupported_parameter",
        "messages[0].content[1].image_url",
        "'messages[0].content[1].image_url': Claude on Vertex AI takes images inline only: send a data: URL",
    )
    parts[1] = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    req = CHAT.build_request(copy.deepcopy(body), make_ctx())
    source = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    assert req.body["messages"][0]["content"][1] == {"type": "image", "source": source}


def test_a_google_shaped_error_keeps_its_message() -> None:
    body = {
        "error": {
            "code": 401,
            "message": "Request had invalid authentication credentials.",
            "status": "UNAUTHENTICATED",
        }
    }
    info = SPEC.parse_error(401, body)
    assert info is not None and info.message == "Request had invalid authentication credentials."


# --- native Anthropic clients ---------------------------------------------------------------------


def native(
    path: str, body: dict[str, Any], configured: str | None = MODEL
) -> tuple[str, dict[str, Any], str] | None:
    return anthropic_vertex.native_request(path, body, configured, options())


def test_native_messages_call_goes_to_the_routes_model_on_vertex() -> None:
    body = {"model": "claude-sonnet-4-5-20250929", "max_tokens": 10, "messages": [], "stream": True}
    path, out, model = native("/v1/messages", body)  # type: ignore[misc]
    assert (path, out) == sdk_request({**body, "model": MODEL, "anthropic_version": VERSION})
    assert model == MODEL
    path, out, model = native("/v1/messages", {**body, "stream": False}, configured=None)  # type: ignore[misc]
    assert path.endswith("/models/claude-sonnet-4-5-20250929:rawPredict")


def test_native_count_tokens_goes_to_vertex_count_tokens() -> None:
    body = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hi"}]}
    path, out, _ = native("/v1/messages/count_tokens", body)  # type: ignore[misc]
    assert (path, out) == sdk_request(
        {**body, "model": MODEL, "anthropic_version": VERSION}, "/v1/messages/count_tokens"
    )
    assert operation_of("anthropic", path) == Recognized("anthropic", UNMETERED)


def test_anthropic_vertex_paths_are_retargeted_to_the_routes_project() -> None:
    client_path = "/v1/projects/their-project/locations/europe-west1/publishers/anthropic/models/claude-x@1:streamRawPredict"
    body = {"max_tokens": 5, "messages": [], "stream": True, "anthropic_version": "2026-10-21"}
    path, out, _ = native(client_path, body)  # type: ignore[misc]
    assert (
        path
        == f"/v1/projects/my-project/locations/us-east5/publishers/anthropic/models/{MODEL}:streamRawPredict"
    )
    assert out == body  # the client's own anthropic_version is kept
    assert native(client_path, body, configured=None)[2] == "claude-x@1"  # type: ignore[index]
    assert native("/v1/models", {}) is None  # anything else goes as it came


def test_native_messages_call_without_any_model_is_a_400() -> None:
    with pytest.raises(GatewayError) as err:
        native("/v1/messages", {"messages": []}, configured=None)
    assert (err.value.status, err.value.code) == (400, "model_not_found")


def test_native_route_prepares_the_vertex_call_and_reads_its_usage() -> None:
    route = vertex_route(llm_format="anthropic")
    body = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}
    prep = prepare(
        route,
        Inbound("POST", "gw", "/v1/messages", [], {"x-api-key": "sk-ant-client"}, orjson.dumps(body)),
        request_id="r",
        now=1,
    )
    assert prep.upstream.url == (
        f"https://us-east5-aiplatform.googleapis.com/v1/projects/my-project/locations/us-east5/publishers/anthropic/models/{MODEL}:rawPredict"
    )
    assert orjson.loads(prep.upstream.body) == {
        **{k: v for k, v in body.items() if k != "model"},
        "anthropic_version": VERSION,
    }
    assert "x-api-key" in prep.upstream.remove_headers
    assert prep.native == Recognized("anthropic", "messages", MODEL)
    answer = translate_response(prep, 200, orjson.dumps(fixture_json("anthropic/chat/response.json")))
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (27, 13)  # type: ignore[union-attr]


# --- recognition of Vertex Claude traffic ---------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "path", "expected"),
    [
        (
            "us-east5-aiplatform.googleapis.com",
            f"/v1/projects/p/locations/us-east5/publishers/anthropic/models/{MODEL}:rawPredict",
            Recognized("anthropic", "messages", MODEL),
        ),
        (
            "aiplatform.googleapis.com",
            "/v1/projects/p/locations/global/publishers/anthropic/models/claude-opus-4-1%4020250805:streamRawPredict",
            Recognized("anthropic", "messages", "claude-opus-4-1@20250805"),
        ),
        (
            "aiplatform.googleapis.com",
            "/v1/projects/p/locations/global/publishers/anthropic/models/count-tokens:rawPredict",
            Recognized("anthropic", UNMETERED),
        ),
        (
            "us-east5-aiplatform.googleapis.com",
            "/v1/projects/p/locations/l/publishers/anthropic/models/m:predict",
            None,
        ),
        (
            "us-central1-aiplatform.googleapis.com",
            "/v1/projects/p/locations/l/publishers/google/models/gemini-2.5-pro:generateContent",
            Recognized("gemini", "generateContent", "gemini-2.5-pro"),
        ),
    ],
)
def test_vertex_claude_calls_are_recognised(host: str, path: str, expected: Recognized | None) -> None:
    assert recognize(host, 443, "POST", path) == expected
