"""GET <prefix>/v1/models and /v1/models/{id}: the pure decision (transforms/models_endpoint.py) and the
answer through the real openai SDK (models.list(), models.retrieve()) against mitmdump with routes."""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest
from conftest import route
from openai.types import Model

from transforms.config import GatewayConfig
from transforms.models_endpoint import list_models, models_answer, parse_models_path

CREATED = 1767225600


def config(*routes: dict[str, Any]) -> GatewayConfig:
    return GatewayConfig.model_validate({"routes": list(routes)})


def r(name: str, path: str | None, provider: str = "openai", model: str | None = None, **extra: Any) -> dict:
    options = {"anthropic": {"anthropic_version": "2023-06-01"}}.get(provider, {})
    return {
        "name": name,
        "match": {"path": path} if path else {},
        "route_type": extra.pop("route_type", "llm/v1/chat"),
        "model": {"provider": provider, "options": options, **({"name": model} if model else {})},
        **extra,
    }


ROUTES = config(
    r("claude", "/anthropic/v1/chat/completions", "anthropic", "claude-sonnet-4-5"),
    r(
        "claude-text",
        "/anthropic/v1/completions",
        "anthropic",
        "claude-sonnet-4-5",
        route_type="llm/v1/completions",
    ),
    r("claude-haiku", "/anthropic/v1/*", "anthropic", "claude-haiku-4-5"),
    r("any-openai", "/v1/chat/completions"),  # no model.name: accepts any model, lists nothing
    r("embed", "/v1/embeddings", "openai", "text-embedding-3-small", route_type="llm/v1/embeddings"),
    r("llama", "/hf/v1/chat/completions", "huggingface", "meta-llama/Llama-3.1-8B-Instruct"),
    r("native", "/gemini-native/*", "gemini", "gemini-2.5-flash", llm_format="gemini"),
    r("raw", "/openai/*", "openai", "gpt-4o", route_type="preserve"),
)


def ids(models: list[dict[str, Any]]) -> list[str]:
    return [m["id"] for m in models]


def test_models_under_each_prefix():
    assert ids(list_models(ROUTES, "", "/anthropic", CREATED)) == ["claude-sonnet-4-5", "claude-haiku-4-5"]
    assert ids(list_models(ROUTES, "", "", CREATED)) == ["text-embedding-3-small"]
    assert ids(list_models(ROUTES, "", "/hf", CREATED)) == ["meta-llama/Llama-3.1-8B-Instruct"]
    # passthrough routes (preserve, native formats) are not OpenAI-format: the provider lists its own
    assert list_models(ROUTES, "", "/openai", CREATED) == []
    assert list_models(ROUTES, "", "/gemini-native", CREATED) == []
    (item,) = list_models(ROUTES, "", "/hf", CREATED)
    assert item == {
        "id": "meta-llama/Llama-3.1-8B-Instruct",
        "object": "model",
        "created": CREATED,
        "owned_by": "huggingface",
    }
    Model.model_validate(item)


def test_host_bound_routes_list_only_for_their_host():
    tenant = config(
        {
            "name": "tenant",
            "match": {"path": "/v1/chat/completions", "host": "t.example"},
            "route_type": "llm/v1/chat",
            "model": {
                "provider": "mistral",
                "name": "mistral-large-latest",
                "options": {"mistral_format": "openai"},
            },
        },
        r("catch-all", None, "openai", "gpt-4o-mini"),
    )
    assert ids(list_models(tenant, "T.Example", "", CREATED)) == ["mistral-large-latest", "gpt-4o-mini"]
    assert ids(list_models(tenant, "other.example", "/any/prefix", CREATED)) == ["gpt-4o-mini"]


@pytest.mark.parametrize(
    ("method", "path", "parsed"),
    [
        ("GET", "/v1/models", ("", None)),
        ("GET", "/anthropic/v1/models/", ("/anthropic", None)),
        ("GET", "/v1/models/gpt-4o", ("", "gpt-4o")),
        (
            "GET",
            "/hf/v1/models/meta-llama/Llama-3.1-8B-Instruct",
            ("/hf", "meta-llama/Llama-3.1-8B-Instruct"),
        ),
        (
            "GET",
            "/hf/v1/models/meta-llama%2FLlama-3.1-8B-Instruct",
            ("/hf", "meta-llama/Llama-3.1-8B-Instruct"),
        ),
        ("POST", "/v1/models", None),
        ("GET", "/v1/modelsx", None),
        ("GET", "/v1/chat/completions", None),
    ],
)
def test_parse_models_path(method, path, parsed):
    query = parse_models_path(method, path)
    assert (None if query is None else (query.prefix, query.model_id)) == parsed


def test_answers():
    status, body = models_answer(ROUTES, "GET", "", "/anthropic/v1/models", CREATED)
    assert status == 200
    page = orjson.loads(body)
    assert page["object"] == "list" and ids(page["data"]) == ["claude-sonnet-4-5", "claude-haiku-4-5"]
    status, body = models_answer(ROUTES, "GET", "", "/anthropic/v1/models/claude-haiku-4-5", CREATED)
    assert (status, orjson.loads(body)["owned_by"]) == (200, "anthropic")
    status, body = models_answer(ROUTES, "GET", "", "/anthropic/v1/models/gpt-4o", CREATED)
    assert (status, orjson.loads(body)) == (
        404,
        {
            "error": {
                "message": "The model 'gpt-4o' does not exist",
                "type": "not_found_error",
                "param": "model",
                "code": "model_not_found",
            }
        },
    )
    # A passthrough route that matches the path: its provider answers, not the gateway.
    assert models_answer(ROUTES, "GET", "", "/openai/v1/models", CREATED) is None
    assert models_answer(ROUTES, "POST", "", "/v1/models", CREATED) is None
    # No route of ours under this base URL: the request is not the gateway's to answer (a program's
    # own api.openai.com/v1/models call through the proxy must reach OpenAI).
    assert models_answer(ROUTES, "GET", "", "/elsewhere/v1/models", CREATED) is None
    assert models_answer(GatewayConfig(), "GET", "api.openai.com", "/v1/models", CREATED) is None


# --- end to end: the openai SDK against mitmdump -----------------------------------------------------


@pytest.fixture
def gw(gateway, emulator):
    auth = {"header_name": "x-api-key", "header_value": "sk-ant-configured-0123"}
    options = {"anthropic_version": "2023-06-01"}
    routes = [
        route(
            "claude",
            "/anthropic/v1/chat/completions",
            "llm/v1/chat",
            "anthropic",
            emulator.url,
            model="claude-sonnet-4-5",
            auth=auth,
            options=options,
        ),
        route(
            "claude-any",
            "/anthropic/v1/completions",
            "llm/v1/completions",
            "anthropic",
            emulator.url,
            auth=auth,
            options=options,
        ),
        route(
            "llama",
            "/hf/v1/chat/completions",
            "llm/v1/chat",
            "huggingface",
            emulator.url,
            model="meta-llama/Llama-3.1-8B-Instruct",
        ),
        route("raw", "/raw/*", "preserve", "openai", emulator.url),
    ]
    return gateway(routes)


def sdk(gw, prefix: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}{prefix}/v1", api_key="sk-client", max_retries=0, timeout=10)


def test_sdk_lists_and_retrieves_models(gw, emulator):
    page = sdk(gw, "/anthropic").models.list()
    assert [(m.id, m.object, m.owned_by) for m in page.data] == [("claude-sonnet-4-5", "model", "anthropic")]
    assert page.data[0].created > 1_700_000_000
    model = sdk(gw, "/anthropic").models.retrieve("claude-sonnet-4-5")
    assert (model.id, model.owned_by) == ("claude-sonnet-4-5", "anthropic")
    llama = sdk(gw, "/hf").models.retrieve("meta-llama/Llama-3.1-8B-Instruct")
    assert (llama.id, llama.owned_by) == ("meta-llama/Llama-3.1-8B-Instruct", "huggingface")
    with pytest.raises(openai.NotFoundError) as err:
        sdk(gw, "/anthropic").models.retrieve("gpt-4o")
    assert err.value.body["message"] == "The model 'gpt-4o' does not exist"
    assert err.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError) as err:  # no route under that base URL: the usual 404
        sdk(gw, "/nothing-here").models.list()
    assert err.value.code == "unknown_route"
    assert emulator.requests == []  # answered by the gateway
    assert gw.records() == []  # not LLM calls: no statistics


def test_models_path_of_a_passthrough_route_goes_to_its_provider(gw, emulator):
    with pytest.raises(openai.APIStatusError):
        sdk(gw, "/raw").models.list()
    assert (emulator.last.method, emulator.last.path) == ("GET", "/v1/models")


def test_routes_with_targets_list_their_aliases_or_names() -> None:
    def target(provider: str, name: str, alias: str | None = None) -> dict[str, Any]:
        options = {"anthropic": {"anthropic_version": "2023-06-01"}}.get(provider, {})
        model = {"provider": provider, "name": name, "options": options}
        return {"route_type": "llm/v1/chat", "model": {**model, **({"model_alias": alias} if alias else {})}}

    aliased = {
        "name": "smart",
        "match": {"path": "/v1/chat/completions"},
        "targets": [target("openai", "gpt-4o", "smart"), target("anthropic", "claude-sonnet-4-5", "smart")],
    }
    plain = {
        "name": "pool",
        "match": {"path": "/pool/v1/chat/completions"},
        "targets": [target("openai", "gpt-4o")],
    }
    models = list_models(config(aliased), "", "", CREATED)
    assert models == [{"id": "smart", "object": "model", "created": CREATED, "owned_by": "openai"}]
    assert [m["id"] for m in list_models(config(plain), "", "/pool", CREATED)] == ["gpt-4o"]
