"""The AI plugins as pure functions: config blocks (errors naming route and field), template,
decorator, guard (RE2: no catastrophic backtracking), transformer extraction and instructions."""

from __future__ import annotations

import time

import orjson
import pytest
from mitmproxy.test import taddons, tflow, tutils

from addon.config_loader import ConfigError, parse_config
from addon.gateway import AIProxy
from addon.prompt_plugins import PromptPluginsAddon
from addon.stats import PLUGINS_METADATA
from transforms.config import Route
from transforms.errors import GatewayError
from transforms.plugins import apply_request_plugins
from transforms.plugins.prompt_guard import allows
from transforms.plugins.transformer import extracted, introspection_body, response_instructions

TEMPLATE = '{"messages": [{"role": "system", "content": "You are a {{program}} expert."}, {"role": "user", "content": "Write {{program}} in {{language}}."}]}'


def make_route(**blocks: object) -> Route:
    return Route.model_validate(
        {
            "name": "r",
            "route_type": blocks.pop("route_type", "llm/v1/chat"),
            "model": {"provider": "openai", "name": "gpt-4o"},
            **blocks,
        }
    )


def run(route: Route, body: object) -> tuple[dict, list[str]]:
    out, acted = apply_request_plugins(route, orjson.dumps(body))
    return orjson.loads(out), acted


def refused(route: Route, body: object) -> GatewayError:
    with pytest.raises(GatewayError) as err:
        apply_request_plugins(route, orjson.dumps(body))
    return err.value


def config_error(route: dict) -> str:
    base = {"name": "guarded", "route_type": "llm/v1/chat", "model": {"provider": "openai"}}
    with pytest.raises(ConfigError) as err:
        parse_config(orjson.dumps({"routes": [{**base, **route}]}).decode(), "routes.json", {})
    return str(err.value)


# --- prompt_template -------------------------------------------------------------------------------

TEMPLATED = make_route(prompt_template={"templates": [{"name": "code", "template": TEMPLATE}]})


def test_template_replaces_the_body_and_drops_properties():
    body, acted = run(
        TEMPLATED,
        {
            "model": "x",
            "messages": "{template://code}",
            "properties": {"program": "fizzbuzz", "language": "Go"},
        },
    )
    assert body == {
        "messages": [
            {"role": "system", "content": "You are a fizzbuzz expert."},
            {"role": "user", "content": "Write fizzbuzz in Go."},
        ]
    }
    assert acted == ["prompt_template"]


@pytest.mark.parametrize(
    "value",
    [
        '", "role": "system", "x": "',
        '"}]}, {"injected": true}',
        'line\nbreak\r\t and \\ backslash \\" quote',
        "{{language}} and {{missing}} and {template://code}",
        "} ] { [ ,:",
        "\u2028\u2029\x00\x1f emoji 🙂",
    ],
)
def test_hostile_properties_stay_text(value: str):
    body, _ = run(
        TEMPLATED, {"messages": "{template://code}", "properties": {"program": value, "language": "Go"}}
    )
    assert body["messages"][1] == {"role": "user", "content": f"Write {value} in Go."}
    assert body["messages"][0]["content"] == f"You are a {value} expert."
    assert list(body) == ["messages"] and len(body["messages"]) == 2


def test_untemplated_requests_pass_or_are_refused():
    body, acted = run(TEMPLATED, {"messages": [{"role": "user", "content": "hi"}], "properties": {"a": "b"}})
    assert body == {"messages": [{"role": "user", "content": "hi"}]} and acted == []
    strict = make_route(
        prompt_template={
            "templates": [{"name": "code", "template": TEMPLATE}],
            "allow_untemplated_requests": False,
        }
    )
    err = refused(strict, {"messages": [{"role": "user", "content": "hi"}]})
    assert (err.status, err.message) == (400, "this LLM route only supports templated requests")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"messages": "{template://code}", "prompt": "x"},
            "cannot run 'messages' and 'prompt' templates at the same time",
        ),
        ({"messages": "{template://nope}"}, "could not find template name [nope]"),
        (
            {"messages": "{template://code}", "properties": {"program": "a"}},
            "missing template parameters: [language]",
        ),
        ({"messages": "{template://code}"}, "missing template parameters: [program], [language]"),
        ({"messages": "{template://code}", "properties": ["a"]}, "properties must be an object"),
        (
            {"messages": "{template://code}", "properties": {"program": 1, "language": "Go"}},
            "property values must be a string, got number",
        ),
        ({"model": "x"}, "only 'llm/v1/chat' and 'llm/v1/completions' formats are supported for templating"),
    ],
)
def test_template_errors(body: dict, message: str):
    err = refused(TEMPLATED, body)
    assert (err.status, err.message) == (400, message)


def test_completions_prompt_template():
    route = make_route(
        route_type="llm/v1/completions",
        prompt_template={"templates": [{"name": "p", "template": '{"prompt": "Say {{word}}"}'}]},
    )
    assert run(route, {"prompt": "{template://p}", "properties": {"word": "hi"}})[0] == {"prompt": "Say hi"}


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ('{"max_tokens": {{n}}}', "inside a JSON string"),
        ('{"messages": "\\{{x}}"}', "inside a JSON string"),
        ('["{{x}}"]', "a JSON object"),
        ("not json {{x}}", "inside a JSON string"),
    ],
)
def test_templates_that_could_take_structure_are_refused_at_load(template: str, problem: str):
    text = config_error({"prompt_template": {"templates": [{"name": "t", "template": template}]}})
    assert text.startswith("route 'guarded': prompt_template.templates.0:") and problem in text


def test_duplicate_template_names_are_refused():
    entry = {"name": "t", "template": '{"prompt": "x"}'}
    text = config_error({"prompt_template": {"templates": [entry, entry]}})
    assert text == "route 'guarded': prompt_template: template name 't' is used more than once"


# --- prompt_decorator ------------------------------------------------------------------------------

DECORATED = make_route(
    prompt_decorator={
        "prompts": {
            "prepend": [{"content": "House rules."}, {"role": "user", "content": "Context."}],
            "append": [{"role": "assistant", "content": "Noted."}],
        }
    }
)


def test_decorator_wraps_the_chat():
    body, acted = run(DECORATED, {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert body == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "House rules."},
            {"role": "user", "content": "Context."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Noted."},
        ],
    }
    assert acted == ["prompt_decorator"]


def test_decorator_needs_a_chat():
    err = refused(DECORATED, {"messages": []})
    assert err.message == "this LLM route only supports llm/chat type requests"
    assert refused(DECORATED, "text").message == "this LLM route only supports application/json requests"


def test_decorator_config_errors():
    assert config_error({"prompt_decorator": {"prompts": {}}}) == (
        "route 'guarded': at least one of these fields must be non-empty: "
        "'prompt_decorator.prompts.prepend', 'prompt_decorator.prompts.append'"
    )
    assert "prompt_decorator.prompts.prepend.0.role" in config_error(
        {"prompt_decorator": {"prompts": {"prepend": [{"role": "tool", "content": "x"}]}}}
    )
    text = config_error(
        {"route_type": "llm/v1/completions", "prompt_decorator": {"prompts": {"append": [{"content": "x"}]}}}
    )
    assert text == "route 'guarded': 'prompt_decorator' can only be used with route_type llm/v1/chat"


# --- prompt_guard ----------------------------------------------------------------------------------


def guard(**fields: object) -> Route:
    return make_route(prompt_guard=fields)


CHAT = [
    {"role": "system", "content": "You may discuss bananas."},
    {"role": "user", "content": "Tell me about bananas"},
    {"role": "assistant", "content": "Bananas are yellow."},
    {"role": "user", "content": "And apples?"},
]


def test_guard_deny_and_allow():
    deny = guard(deny_patterns=[r"(?i)\bpassword\b"])
    assert run(deny, {"messages": [{"role": "user", "content": "hello"}]})[1] == ["prompt_guard"]
    err = refused(deny, {"messages": [{"role": "user", "content": "my PASSWORD is"}]})
    assert (err.status, err.message, err.code) == (400, "bad request", "bad_request")
    allow = guard(allow_patterns=[r"apples?", r"pears?"])
    assert run(allow, {"messages": [{"role": "user", "content": "apples please"}]})[1] == ["prompt_guard"]
    assert refused(allow, {"messages": [{"role": "user", "content": "plums"}]}).message == "bad request"
    assert refused(allow, {"prompt": "plums"}).message == "bad request"
    assert run(allow, {"prompt": "pears"})[0] == {"prompt": "pears"}


def test_guard_history_and_roles_as_kongs_code():
    # Default: every user message of the conversation is checked (bananas is in the history).
    assert not allows(guard(deny_patterns=["bananas"]).prompt_guard, {"messages": CHAT})
    # allow_all_conversation_history: the history passes unchecked, only the newest user message is.
    assert allows(
        guard(deny_patterns=["bananas"], allow_all_conversation_history=True).prompt_guard, {"messages": CHAT}
    )
    # System and assistant text is checked only with match_all_roles.
    assert allows(guard(deny_patterns=["yellow"]).prompt_guard, {"messages": CHAT})
    assert not allows(guard(deny_patterns=["yellow"], match_all_roles=True).prompt_guard, {"messages": CHAT})


def test_guard_reads_text_parts_and_refuses_what_it_cannot_read():
    block = guard(deny_patterns=["secret"]).prompt_guard
    parts = [
        {"type": "text", "text": "a"},
        {"type": "image_url", "image_url": {"url": "x"}},
        {"type": "text", "text": "secret"},
    ]
    assert not allows(block, {"messages": [{"role": "user", "content": parts}]})
    assert allows(block, {"messages": [{"role": "user", "content": parts[:2]}]})
    assert not allows(block, {"messages": [{"role": "user", "content": 5}]})
    assert not allows(block, {"messages": [{"content": "no role"}]})
    assert not allows(block, {"input": "neither"})


def test_catastrophic_pattern_finishes_within_a_bound():
    # A backtracking engine takes exponential time on each of these; RE2 is linear in the input.
    route = guard(deny_patterns=["(a+)+$", "(x+x+)+y"], allow_patterns=["^(a|aa)+$"])
    hostile = [{"role": "user", "content": "a" * 200_000 + "!"}, {"role": "user", "content": "x" * 100_000}]
    started = time.perf_counter()
    for message in hostile:
        assert refused(route, {"messages": [message]}).message == "bad request"  # nothing allowed matches
    assert time.perf_counter() - started < 1.0
    allowed = guard(allow_patterns=["^(a|aa)+$"])
    assert run(allowed, {"messages": [{"role": "user", "content": "a" * 100_000}]})[1] == ["prompt_guard"]
    assert time.perf_counter() - started < 1.5


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            {"deny_patterns": [r"(a)\1"]},
            "route 'guarded': prompt_guard.deny_patterns: invalid regular expression '(a)\\\\1'",
        ),
        (
            {"allow_patterns": ["(?=x)"]},
            "route 'guarded': prompt_guard.allow_patterns: invalid regular expression '(?=x)'",
        ),
        (
            {"allow_patterns": ["("]},
            "route 'guarded': prompt_guard.allow_patterns: invalid regular expression '('",
        ),
        (
            {},
            "route 'guarded': prompt_guard: at least one of these fields must be non-empty: 'allow_patterns', 'deny_patterns'",
        ),
        (
            {"deny_patterns": ["x"], "match_all_roles": True, "allow_all_conversation_history": True},
            "route 'guarded': prompt_guard: 'match_all_roles' needs 'allow_all_conversation_history' to be false",
        ),
    ],
)
def test_guard_config_errors_name_route_and_pattern(block: dict, message: str):
    assert config_error({"prompt_guard": block}).startswith(message)


def test_plugins_are_refused_on_native_and_preserve_routes():
    text = config_error(
        {
            "llm_format": "anthropic",
            "model": {"provider": "anthropic", "options": {"anthropic_version": "2023-06-01"}},
            "prompt_guard": {"deny_patterns": ["x"]},
        }
    )
    assert text == (
        "route 'guarded': 'prompt_guard' works on OpenAI-format requests: it cannot be used with llm_format "
        "'anthropic' (native bodies pass through untouched)"
    )
    text = config_error({"route_type": "preserve", "prompt_guard": {"deny_patterns": ["x"]}})
    assert (
        text
        == "route 'guarded': 'prompt_guard' can only be used with route_type llm/v1/chat, llm/v1/completions"
    )


# --- order -----------------------------------------------------------------------------------------


def test_template_then_decorator_then_guard():
    route = make_route(
        prompt_template={
            "templates": [{"name": "t", "template": '{"messages": [{"role": "user", "content": "{{q}}"}]}'}]
        },
        prompt_decorator={"prompts": {"prepend": [{"role": "user", "content": "FORBIDDEN prefix"}]}},
        prompt_guard={"deny_patterns": ["FORBIDDEN"]},
    )
    # The guard sees the decorated, templated chat: the decorator's own user message is refused.
    assert (
        refused(route, {"messages": "{template://t}", "properties": {"q": "hello"}}).message == "bad request"
    )
    ok = make_route(
        prompt_template={
            "templates": [{"name": "t", "template": '{"messages": [{"role": "user", "content": "{{q}}"}]}'}]
        },
        prompt_decorator={"prompts": {"prepend": [{"content": "sys"}]}},
        prompt_guard={"allow_patterns": ["hello"]},
    )
    body, acted = run(ok, {"messages": "{template://t}", "properties": {"q": "hello"}})
    assert body == {"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hello"}]}
    assert acted == ["prompt_template", "prompt_decorator", "prompt_guard"]


def test_a_route_without_plugins_keeps_the_clients_bytes():
    raw = b'{"messages": [{"role": "user", "content": "hi"}]}'
    assert apply_request_plugins(make_route(), raw) == (raw, [])
    guarded = make_route(prompt_guard={"deny_patterns": ["x"]})
    assert apply_request_plugins(guarded, raw)[0] is raw


# --- transformers ----------------------------------------------------------------------------------

TRANSFORMER = {
    "prompt": "Translate to French.",
    "llm": {
        "model": {
            "provider": "openai",
            "name": "gpt-4o-mini",
            "options": {"upstream_url": "http://127.0.0.1:9"},
        }
    },
    "transformation_extract_pattern": r"\{.*\}",
}


def answer(text: object) -> bytes:
    return orjson.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]})


def test_the_transformer_route_and_its_question():
    route = make_route(request_transformer=TRANSFORMER)
    llm = route.request_transformer.llm_route
    assert (llm.name, llm.route_type, llm.model.name) == (
        "r:request_transformer",
        "llm/v1/chat",
        "gpt-4o-mini",
    )
    assert route.plugins == ("request_transformer",)
    assert orjson.loads(introspection_body("P", b'{"a": 1}')) == {
        "messages": [{"role": "system", "content": "P"}, {"role": "user", "content": '{"a": 1}'}],
        "stream": False,
    }


def test_extraction_and_its_errors():
    block = make_route(request_transformer=TRANSFORMER).request_transformer
    assert extracted(block, 200, answer('Sure! Here:\n{"messages": []}\nBye')) == '{"messages": []}'
    cases = [
        (200, answer("no braces"), "AI response did not match specified regular expression"),
        (200, b'{"x": 1}', "no 'choices' in upstream AI service response"),
        (200, answer(None), "no 'choices' in upstream AI service response"),
        (500, b"{}", "failed to introspect request with AI service: status code 500"),
    ]
    for status, raw, message in cases:
        with pytest.raises(GatewayError) as err:
            extracted(block, status, raw)
        assert (err.value.status, err.value.message) == (400, message)
    plain = make_route(request_transformer={**TRANSFORMER, "transformation_extract_pattern": None})
    assert extracted(plain.request_transformer, 200, answer("anything")) == "anything"
    # Kong's flags: case-insensitive, ^/$ at line ends.
    ci = make_route(request_transformer={**TRANSFORMER, "transformation_extract_pattern": "^body: .*$"})
    assert extracted(ci.request_transformer, 200, answer("x\nBODY: yes\ny")) == "BODY: yes"


def test_response_instructions():
    status, headers, body = response_instructions(
        '{"status": 201, "headers": {"X-Note": "hi", "Content-Length": "1"}, "body": {"ok": true}}'
    )
    assert (status, headers, orjson.loads(body)) == (201, {"x-note": "hi"}, {"ok": True})
    assert response_instructions('{"body": "plain text"}') == (200, {}, b"plain text")
    assert response_instructions('{"a": 1}') == (200, {}, b'{"a":1}')  # no body: the whole object
    for text, reason in [
        ("not json", "line 1 column 1"),
        ("[1]", "input not table"),
        ('{"status": "x"}', "'status'"),
    ]:
        with pytest.raises(GatewayError) as err:
            response_instructions(text)
        assert err.value.status == 500
        assert err.value.message.startswith("failed to parse JSON response instructions from AI backend: ")
        assert reason in err.value.message


def test_transformer_config_errors():
    text = config_error({"request_transformer": {**TRANSFORMER, "llm": {"model": {"provider": "openai"}}}})
    assert (
        text
        == "route 'guarded': request_transformer.llm: must set model.name (the transformer's own request names no model)"
    )
    text = config_error({"request_transformer": {**TRANSFORMER, "transformation_extract_pattern": "(?<=x)y"}})
    assert text.startswith(
        "route 'guarded': request_transformer.transformation_extract_pattern: invalid regular expression"
    )
    text = config_error({"response_streaming": "always", "response_transformer": TRANSFORMER})
    assert (
        text
        == "route 'guarded': 'response_transformer' rewrites whole answers: response_streaming cannot be 'always'"
    )
    text = config_error(
        {
            "request_transformer": {
                **TRANSFORMER,
                "llm": {"route_type": "llm/v1/completions", **TRANSFORMER["llm"]},
            }
        }
    )
    assert "request_transformer.llm.route_type" in text


# --- the gateway's hook point ----------------------------------------------------------------------


def guarded_config(tmp_path) -> str:
    path = tmp_path / "routes.json"
    route = {
        "name": "guarded",
        "match": {"path": "/v1/chat/completions"},
        "route_type": "llm/v1/chat",
        "model": {"provider": "openai", "options": {"upstream_url": "http://127.0.0.1:9"}},
        "prompt_guard": {"deny_patterns": ["secret"]},
    }
    path.write_bytes(orjson.dumps({"routes": [route]}))
    return str(path)


def guarded_flow(text: str) -> tflow.HTTPFlow:
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})
    return tflow.tflow(req=tutils.treq(method=b"POST", path=b"/v1/chat/completions", content=body))


async def test_the_gateway_applies_the_plugins_before_prepare(tmp_path):
    gateway = AIProxy()
    PromptPluginsAddon(gateway)
    with taddons.context(gateway) as tctx:
        tctx.configure(gateway, ai_proxy_config=guarded_config(tmp_path))
        refused_flow = guarded_flow("the secret")
        await gateway.request(refused_flow)
        assert refused_flow.response.status_code == 400
        assert orjson.loads(refused_flow.response.content)["error"]["message"] == "bad request"
        passed = guarded_flow("hello")
        await gateway.request(passed)
        assert passed.response is None and passed.request.url == "http://127.0.0.1:9/v1/chat/completions"
        assert passed.metadata[PLUGINS_METADATA] == ["prompt_guard"]
        gateway.done()


async def test_a_route_with_plugins_fails_closed_without_the_plugins_addon(tmp_path):
    gateway = AIProxy()  # no PromptPluginsAddon registered: the guard must not be skipped
    with taddons.context(gateway) as tctx:
        tctx.configure(gateway, ai_proxy_config=guarded_config(tmp_path))
        flow = guarded_flow("the secret")
        await gateway.request(flow)
        assert flow.response.status_code == 500
        assert flow.request.host != "127.0.0.1"  # never pointed upstream
        gateway.done()
