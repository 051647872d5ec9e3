"""The route config contract: field names, Kong's validation messages, ${VAR} substitution."""

from __future__ import annotations

import pytest
from conftest import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

from addon.config_loader import ConfigError, load_config, parse_config
from transforms.config import REST_ROUTE_TYPES, GatewayConfig, Route

ANTHROPIC = """
routes:
  - name: claude
    match: {path: /anthropic/v1/chat/completions, host: api.openai.com}
    route_type: llm/v1/chat
    auth:
      header_name: x-api-key
      header_value: ${ANTHROPIC_API_KEY}
    model:
      provider: anthropic
      name: claude-sonnet-4-5
      options:
        anthropic_version: 2023-06-01
        max_tokens: 1024
        upstream_url: http://127.0.0.1:9000
        input_cost: 3.0
        output_cost: 15.0
    logging: {log_statistics: true, log_payloads: false}
    response_streaming: allow
    max_request_body_size: 1048576
    model_name_header: true
    llm_format: openai
"""


def errors_of(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "routes.yaml", env or {})
    return str(err.value)


def test_full_example_loads_with_every_field():
    config = parse_config(ANTHROPIC, "routes.yaml", {"ANTHROPIC_API_KEY": "sk-ant-123"})
    (route,) = config.routes
    assert route.name == "claude"
    assert route.auth.header_value == "sk-ant-123"
    assert route.model.options.anthropic_version == "2023-06-01"  # an unquoted YAML date stays text
    assert route.model.options.max_tokens == 1024
    assert route.match.host == "api.openai.com"
    assert config.find("api.openai.com", "/anthropic/v1/chat/completions") is route
    assert config.find("example.com", "/anthropic/v1/chat/completions") is None


def test_secrets_are_not_in_the_repr():
    config = parse_config(ANTHROPIC, "routes.yaml", {"ANTHROPIC_API_KEY": "sk-ant-123"})
    assert "sk-ant-123" not in repr(config)


def test_missing_environment_variable_is_a_clear_error():
    assert errors_of(ANTHROPIC) == (
        "route 'claude': environment variable 'ANTHROPIC_API_KEY' is not set (used in auth.header_value)"
    )


def test_variable_default():
    text = ANTHROPIC.replace("${ANTHROPIC_API_KEY}", "${ANTHROPIC_API_KEY:-fallback}")
    assert parse_config(text, "r.yaml", {}).routes[0].auth.header_value == "fallback"


def _route(**overrides: object) -> dict:
    base: dict = {"name": "r", "route_type": "llm/v1/chat", "model": {"provider": "openai"}}
    base.update(overrides)
    return base


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (
            _route(model={"provider": "anthropic"}),
            "route 'r': must set 'model.options.anthropic_version' for anthropic provider",
        ),
        (
            _route(model={"provider": "azure", "options": {"azure_deployment_id": "d"}}),
            "route 'r': must set 'model.options.azure_instance' for azure provider",
        ),
        (
            _route(model={"provider": "llama2", "options": {"llama2_format": "raw"}}),
            "route 'r': must set 'model.options.upstream_url' for self-hosted providers/models",
        ),
        (
            _route(model={"provider": "mistral", "options": {"mistral_format": "ollama"}}),
            "route 'r': must set 'model.options.upstream_url' for self-hosted providers/models",
        ),
        (
            _route(model={"provider": "mistral"}),
            "route 'r': must set 'model.options.mistral_format' for mistral provider",
        ),
        (
            _route(auth={"header_name": "x-api-key"}),
            "route 'r': all or none of these fields must be set: 'auth.header_name', 'auth.header_value'",
        ),
        (
            _route(auth={"param_name": "key", "param_value": "v"}),
            "route 'r': all or none of these fields must be set: "
            "'auth.param_name', 'auth.param_value', 'auth.param_location'",
        ),
        (
            _route(model={"provider": "gemini"}, auth={"allow_override": True}),
            "route 'r': bedrock and gemini only support auth.allow_override = false",
        ),
        (
            _route(model={"provider": "gemini", "options": {"gemini": {"project_id": "p"}}}),
            "route 'r': all or none of these fields must be set: "
            "'model.options.gemini.api_endpoint', 'model.options.gemini.project_id', "
            "'model.options.gemini.location_id'",
        ),
        (
            _route(llm_format="gemini", model={"provider": "bedrock"}),
            "route 'r': native llm_format 'gemini' can only be used with the 'gemini' model.provider",
        ),
        (
            _route(llm_format="bedrock", route_type="llm/v1/completions", model={"provider": "bedrock"}),
            "route 'r': native provider options in llm_format can only be used with the 'llm/v1/chat' route_type",
        ),
        (_route(route_type="llm/v9/chat"), "route 'r': route_type: Input should be 'llm/v1/chat', "),
        (
            _route(model={"provider": "openai", "options": {"temprature": 1}}),
            "route 'r': model.options.temprature: unknown field",
        ),
        (
            _route(model={"provider": "openai", "options": {"temperature": 9}}),
            "route 'r': model.options.temperature: Input should be less than or equal to 5",
        ),
        (
            _route(model={"provider": "openai", "options": {"upstream_url": "ftp://x"}}),
            "route 'r': model.options.upstream_url: must be an absolute http(s) URL",
        ),
        (_route(match={"path": "v1/chat"}), "route 'r': match.path: must start with '/'"),
        (
            _route(response_streaming="sometimes"),
            "route 'r': response_streaming: Input should be 'allow', 'deny' or 'always'",
        ),
    ],
)
def test_validation_messages_name_route_and_field(route, message):
    import orjson

    text = orjson.dumps({"routes": [route]}).decode()
    assert errors_of(text).startswith(message)


def test_duplicate_names_and_unnamed_routes():
    import orjson

    text = orjson.dumps({"routes": [_route(), _route()]}).decode()
    assert "route name 'r' is used more than once" in errors_of(text)
    unnamed = orjson.dumps(
        {"routes": [{"route_type": "llm/v1/chat", "model": {"provider": "openai"}}]}
    ).decode()
    assert errors_of(unnamed) == "route #1: name: Field required"


def test_not_yaml_and_not_a_mapping():
    assert "is not valid YAML/JSON" in errors_of("routes: [unclosed")
    assert "the top level must be a mapping" in errors_of("- a\n- b\n")


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", {})


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_config_is_valid(example):
    env = {
        name: "placeholder-value"
        for name in (
            "OPENAI_API_KEY",
            "AZURE_OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "COHERE_API_KEY",
            "MISTRAL_API_KEY",
            "GEMINI_API_KEY",
            "GCP_SERVICE_ACCOUNT",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "HF_TOKEN",
            "TEAM_GATEWAY_KEY",
        )
    }
    config = load_config(example, env)
    assert config.routes


def test_demo_routes_are_valid():
    config = load_config(ROOT / "addon" / "demo_routes.yaml", {})
    assert {"openai-chat", "openai-completions", "openai-embeddings"} <= {r.name for r in config.routes}


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("/v1/chat/completions", "/v1/chat/completions", True),
        ("/v1/chat/completions", "/v1/chat/completions/x", False),
        ("/anthropic/*", "/anthropic/v1/messages", True),
        ("/anthropic/*", "/anthropic", True),
        ("/anthropic/*", "/anthropics/v1", False),
    ],
)
def test_path_matching(pattern, path, matches):
    route = Route.model_validate(_route(match={"path": pattern}))
    assert route.match.matches("h", path) is matches


@pytest.mark.parametrize(
    ("path", "found"),
    [
        ("/x/v1/responses", "responses"),
        ("/x/v1/responses/resp_1", "responses"),
        ("/x/v1/responses/resp_1/input_items", "responses"),
        ("/x/v1/responsesX", None),
        ("/x/v1/chat/completions/x", None),
        ("/x/v1/chat/completions", "chat"),
    ],
)
def test_a_responses_route_serves_its_collection_and_what_lies_below(path, found):
    config = GatewayConfig.model_validate(
        {
            "routes": [
                _route(name="responses", route_type="llm/v1/responses", match={"path": "/x/v1/responses"}),
                _route(name="chat", match={"path": "/x/v1/chat/completions"}),
            ]
        }
    )
    route = config.find("h", path)
    assert (route.name if route else None) == found


# --- route lookup: the index finds what a first-match scan in order finds ------------------------

_SEGMENTS = st.sampled_from(["v1", "chat", "completions", "a", "anthropic", "", "x*"])
_PATHS = st.lists(_SEGMENTS, max_size=4).map(lambda parts: "/" + "/".join(parts))
_PATTERNS = st.one_of(
    st.none(),
    _PATHS,
    _PATHS.map(lambda p: p.rstrip("/") + "/*"),
)
_HOSTS = st.sampled_from([None, "api.openai.com", "Example.COM", ""])


def _scan(config: GatewayConfig, host: str, path: str) -> Route | None:
    return next(
        (r for r in config.routes if r.match.matches(host, path, r.route_type in REST_ROUTE_TYPES)), None
    )


@settings(max_examples=400, deadline=None)
@given(
    matches=st.lists(
        st.tuples(_PATTERNS, _HOSTS, st.sampled_from(["llm/v1/chat", "llm/v1/responses"])), max_size=12
    ),
    requests=st.lists(
        st.tuples(
            st.sampled_from(["api.openai.com", "API.OpenAI.com", "example.com", "other.org", ""]),
            st.one_of(_PATHS, _PATHS.map(lambda p: p + "/"), st.sampled_from(["", "v1", "/v1/chat/*"])),
        ),
        min_size=1,
        max_size=8,
    ),
)
def test_route_index_finds_the_first_match_of_a_linear_scan(matches, requests):
    routes = [
        _route(
            name=f"r{i}",
            route_type=route_type,
            match={k: v for k, v in (("path", path), ("host", host)) if v is not None},
        )
        for i, (path, host, route_type) in enumerate(matches)
    ]
    config = GatewayConfig.model_validate({"routes": routes})
    for host, path in requests:
        assert config.find(host, path) is _scan(config, host, path), (host, path)


def test_route_index_keeps_order_across_kinds_and_hosts():
    config = GatewayConfig.model_validate(
        {
            "routes": [
                _route(name="host-prefix", match={"path": "/v1/*", "host": "api.openai.com"}),
                _route(name="exact", match={"path": "/v1/chat/completions"}),
                _route(name="prefix", match={"path": "/v1/*"}),
                _route(name="anything"),
            ]
        }
    )
    name = lambda host, path: config.find(host, path).name  # noqa: E731
    assert name("API.OPENAI.COM", "/v1/chat/completions") == "host-prefix"
    assert name("example.com", "/v1/chat/completions") == "exact"
    assert name("example.com", "/v1") == "prefix"
    assert name("example.com", "/v2") == "anything"
    assert GatewayConfig().find("h", "/v1") is None


def test_what_a_route_computes_once_follows_its_values_and_not_a_copys_original():
    route = Route.model_validate(
        {
            "name": "r",
            "route_type": "llm/v1/chat",
            "auth": {"header_name": "Authorization", "header_value": "Bearer sk-abcdef"},
            "model": {"provider": "openai", "options": {"upstream_url": "https://h.example:8443/v1/x?a=1"}},
        }
    )
    options = route.model.options
    assert options.upstream_origin == ("https", "h.example", 8443, "/v1/x", (("a", "1"),))
    assert route.auth.secrets() == ("Bearer sk-abcdef", "sk-abcdef")
    assert route.plugins == ()
    moved = options.model_copy(update={"upstream_url": "http://other.example/"})
    assert moved.upstream_origin == ("http", "other.example", 80, "/", ())
    assert options.upstream_origin == ("https", "h.example", 8443, "/v1/x", (("a", "1"),))
    rekeyed = route.auth.model_copy(update={"header_value": "Bearer sk-123456"})
    assert rekeyed.secrets() == ("Bearer sk-123456", "sk-123456")
    assert route.model_dump()["model"]["options"]["upstream_url"] == "https://h.example:8443/v1/x?a=1"
    assert "upstream_origin" not in route.model_dump()["model"]["options"]
