"""Hostile input: no request and no upstream stream may cost unbounded time or memory.

mitmproxy runs every hook on one event loop, so a step whose work grows faster than its input
stalls every client of the gateway. Each case here asserts an answer (a translation, a 400, or an
error frame) within a time bound, memory growth within a bound (tracemalloc, on the pure
transforms), and, end to end, that another client is served meanwhile. Time bounds are generous:
several test runs share two cores; the unbounded cases these guard against never finish at all.
"""

from __future__ import annotations

import gc
import itertools
import struct
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import openai
import orjson
import pytest
from conftest import fixture_bytes, route
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_gcp_auth import TokenEndpoint, new_key

from addon.stats import CallFacts, build_record, summary_line
from transforms.config import ModelOptions, Route
from transforms.errors import GatewayError
from transforms.limits import (
    MAX_RECORDED_ERROR_CHARS,
    MAX_SCHEMA_DEPTH,
    MAX_SCHEMA_INLINED_BYTES,
    MAX_SCHEMA_NODES,
    MAX_SHOWN_MODEL_CHARS,
    MAX_STREAM_EVENT_BYTES,
    MAX_STREAM_TOOL_CALLS,
    MAX_TOOL_ARGUMENTS_CHARS,
    header_value,
)
from transforms.pipeline import prepare
from transforms.providers import gemini
from transforms.registry import SPECS
from transforms.stream import ObservedStream, OpenAIStream
from transforms.types import CallContext, Inbound, Usage

SECONDS = 1.0  # every hostile case answers well within this, even on a loaded machine
MiB = 1 << 20
VERTEX = {"api_endpoint": "us-central1-aiplatform.googleapis.com", "project_id": "p", "location_id": "l"}
HI = [{"role": "user", "content": "Hi"}]


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """fn's result (or the exception it raised) and the CPU seconds this thread spent on it: the
    work itself, not how busy the machine is. The garbage collector is paused meanwhile (its cost
    is the test process's heap, not the input's)."""
    gc.disable()
    start = time.thread_time()
    try:
        result = fn()
    except Exception as e:
        result = e
    finally:
        seconds = time.thread_time() - start
        gc.enable()
    return result, seconds


def peak_memory(fn: Callable[[], Any]) -> int:
    """Bytes allocated at the peak while fn runs, above what was allocated before."""
    tracemalloc.start()
    try:
        fn()
    except Exception:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


# --- request: schema bombs -----------------------------------------------------------------------


def doubling_schema(levels: int, fanout: int = 2, padding: int = 0) -> dict[str, Any]:
    """``levels`` definitions whose properties each $ref the next level ``fanout`` times: the
    expansion holds fanout**levels copies of the last one (3 KB of JSON at 30 levels)."""
    defs: dict[str, Any] = {
        f"L{i}": {
            "type": "object",
            "properties": {f"p{k}": {"$ref": f"#/$defs/L{i + 1}"} for k in range(fanout)},
        }
        for i in range(levels)
    }
    defs[f"L{levels}"] = {"type": "string", "description": "x" * padding}
    return {"type": "object", "properties": {"root": {"$ref": "#/$defs/L0"}}, "$defs": defs}


BOMB = doubling_schema(30)


def chat_with_tool(parameters: dict[str, Any], name: str = "lookup", tools: int = 1) -> bytes:
    tool = {"type": "function", "function": {"name": name, "parameters": parameters}}
    return orjson.dumps({"model": "m", "messages": HI, "tools": [tool] * tools})


def chat_route(provider: str, options: dict[str, Any] | None = None, **extra: Any) -> Route:
    return Route.model_validate(
        {
            "name": provider,
            "route_type": "llm/v1/chat",
            "model": {"provider": provider, "name": "m", "options": options or {}},
            **extra,
        }
    )


GEMINI_ROUTES = {
    "gemini": chat_route("gemini"),
    "vertex": chat_route("gemini", {"gemini": VERTEX}, auth={"gcp_use_service_account": True}),
}


def prepare_chat(route_: Route, body: bytes) -> Any:
    inbound = Inbound("POST", "h", "/v1/chat/completions", [], {}, body)
    return prepare(route_, inbound, request_id="r", now=1, credentials={"gcp_access_token": "ya29.t"})


@pytest.mark.parametrize("name", sorted(GEMINI_ROUTES))
def test_schema_bomb_is_a_quick_400_naming_the_tool_and_the_limit(name: str) -> None:
    body = chat_with_tool(BOMB)
    assert len(body) < 4096
    error, seconds = timed(lambda: prepare_chat(GEMINI_ROUTES[name], body))
    assert isinstance(error, GatewayError), error
    assert seconds < SECONDS
    assert orjson.loads(error.body()) == {
        "error": {
            "message": "the parameters of tool 'lookup' (tools[0].function.parameters) exceeds the schema "
            f"limit of {MAX_SCHEMA_NODES} nodes ($refs inlined)",
            "type": "invalid_request_error",
            "param": None,
            "code": "schema_too_large",
        }
    }
    assert error.status == 400
    # The same route translates a schema that doubles only a few times, to AI Studio or Vertex.
    small = prepare_chat(GEMINI_ROUTES[name], chat_with_tool(doubling_schema(4)))
    host = {"gemini": "generativelanguage.googleapis.com", "vertex": "us-central1-aiplatform.googleapis.com"}
    assert small.upstream.host == host[name]
    declaration = orjson.loads(small.upstream.body)["tools"][0]["functionDeclarations"][0]
    assert (
        declaration["parameters"]["properties"]["root"]["properties"]["p1"]["properties"]["p0"]["type"]
        == "OBJECT"
    )
    # Work proportional to the budget: a few MB at most, where the expansion needs terabytes.
    assert peak_memory(lambda: prepare_chat(GEMINI_ROUTES[name], body)) < 8 * MiB


def test_response_format_schema_bomb_names_the_response_format() -> None:
    body = orjson.dumps(
        {
            "model": "m",
            "messages": HI,
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": BOMB}},
        }
    )
    error, seconds = timed(lambda: prepare_chat(GEMINI_ROUTES["gemini"], body))
    assert isinstance(error, GatewayError) and seconds < SECONDS
    assert error.message == (
        f"'response_format.json_schema.schema' exceeds the schema limit of {MAX_SCHEMA_NODES} nodes ($refs inlined)"
    )


def test_cyclic_refs_keep_their_400() -> None:
    schema = {
        "$ref": "#/$defs/N",
        "$defs": {"N": {"type": "object", "properties": {"n": {"$ref": "#/$defs/N"}}}},
    }
    error, _ = timed(lambda: prepare_chat(GEMINI_ROUTES["gemini"], chat_with_tool(schema)))
    assert isinstance(error, GatewayError) and error.status == 400
    assert error.message == (
        "'tools[0].function.parameters' with the recursive $ref '#/$defs/N' is not supported by the gemini provider"
    )


def test_many_tools_share_one_inlining_budget() -> None:
    # Each tool expands to ~2,000 nodes, under the per-schema budget; together they would be 800,000.
    body = chat_with_tool(doubling_schema(10), tools=400)
    error, seconds = timed(lambda: prepare_chat(GEMINI_ROUTES["gemini"], body))
    assert isinstance(error, GatewayError) and error.status == 400
    assert error.message.endswith(
        f"exceeds the limit of {MAX_SCHEMA_INLINED_BYTES} bytes of $ref definitions inlined per request"
    )
    assert error.message.startswith("the parameters of tool 'lookup' (tools[")
    assert seconds < SECONDS
    assert peak_memory(lambda: prepare_chat(GEMINI_ROUTES["gemini"], body)) < 32 * MiB  # 1 MiB inlined


def test_copied_text_counts_against_the_inlining_budget() -> None:
    # 2**8 copies of a 100 KB description: few nodes, but a 25 MB body for Gemini.
    error, seconds = timed(lambda: gemini.gemini_schema(doubling_schema(8, padding=100_000), "s"))
    assert isinstance(error, GatewayError) and seconds < SECONDS
    assert error.code == "schema_too_large" and "bytes of $ref definitions" in error.message
    assert peak_memory(lambda: gemini.gemini_schema(doubling_schema(8, padding=100_000), "s")) < 8 * MiB


def test_ref_alias_chains_are_paid_for_in_inlined_bytes() -> None:
    # Each property hops through 60 aliases: no node of its own, but work; bytes bound the hops.
    defs: dict[str, Any] = {f"A{i}": {"$ref": f"#/$defs/A{i + 1}"} for i in range(60)}
    defs["A60"] = {"type": "string"}
    schema = {
        "type": "object",
        "properties": {f"p{k}": {"$ref": "#/$defs/A0"} for k in range(5000)},
        "$defs": defs,
    }
    error, seconds = timed(lambda: gemini.gemini_schema(schema, "s"))
    assert isinstance(error, GatewayError) and seconds < SECONDS
    assert (
        error.message
        == f"'s' exceeds the limit of {MAX_SCHEMA_INLINED_BYTES} bytes of $ref definitions inlined per request"
    )


NESTING = {  # (opening, closing) of one level of each way to nest schemas
    "properties": (b'{"type": "object", "properties": {"a": ', b"}}"),
    "anyOf": (b'{"anyOf": [{"type": "integer"}, ', b"]}"),
    "items": (b'{"type": "array", "items": ', b"}"),
    "allOf": (b'{"allOf": [', b"]}"),
}


@pytest.mark.parametrize("shape", sorted(NESTING))
def test_deep_literal_nesting_is_a_400_not_a_recursion_error(shape: str) -> None:
    opening, closing = NESTING[shape]
    schema = opening * 450 + b'{"type": "string"}' + closing * 450  # orjson reads up to 1024 levels
    tool = b'{"type": "function", "function": {"name": "deep", "parameters": ' + schema + b"}}"
    body = b'{"model": "m", "messages": [{"role": "user", "content": "Hi"}], "tools": [' + tool + b"]}"
    error, seconds = timed(lambda: prepare_chat(GEMINI_ROUTES["gemini"], body))
    assert isinstance(error, GatewayError) and seconds < SECONDS, error
    assert (error.status, error.code) == (400, "schema_too_large")
    assert error.message == (
        "the parameters of tool 'deep' (tools[0].function.parameters) exceeds the schema limit of "
        f"{MAX_SCHEMA_DEPTH} nesting levels ($refs inlined)"
    )


def reference_totals(schema: dict[str, Any]) -> tuple[int, int, int, int]:
    """(steps, nodes of the result, deepest level, inlined bytes) of the full expansion of a schema
    made of properties, items and $refs, where a step is a node or a $ref hop; computed once per
    definition, so a bomb's totals are huge integers, not work."""
    defs = schema.get("$defs", {})
    memo: dict[str, tuple[int, int, int, int]] = {}

    def walk(node: dict[str, Any]) -> tuple[int, int, int, int]:
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[1]
            if name not in memo:
                memo[name] = walk(defs[name])
            steps, nodes, depth, inlined = memo[name]
            return 1 + steps, nodes, 1 + depth, len(orjson.dumps(defs[name])) + inlined
        children = [*node.get("properties", {}).values(), *([node["items"]] if "items" in node else [])]
        totals = [walk(c) for c in children]
        return (
            1 + sum(t[0] for t in totals),
            1 + sum(t[1] for t in totals),
            1 + max((t[2] for t in totals), default=-1),
            sum(t[3] for t in totals),
        )

    return walk(schema)


@st.composite
def adversarial_schemas(draw: st.DrawFn) -> dict[str, Any]:
    """Deep chains, wide objects, doubling (or tripling...) $refs, long copied text, mixed."""
    levels = draw(st.integers(1, 40))
    fanout = draw(st.integers(1, 4))
    width = draw(st.integers(1, 300))
    padding = draw(st.sampled_from([0, 10, 3000]))
    defs: dict[str, Any] = {}
    for i in range(levels):
        child = {"$ref": f"#/$defs/L{i + 1}"}
        if draw(st.booleans()):
            child = {"type": "array", "items": child}
        props = {f"p{k}": child for k in range(fanout)}
        if i == 0:
            props.update({f"w{k}": {"type": "integer"} for k in range(width)})
        defs[f"L{i}"] = {"type": "object", "properties": props}
    defs[f"L{levels}"] = {"type": "string", "description": "d" * padding}
    return {"type": "object", "properties": {"root": {"$ref": "#/$defs/L0"}}, "$defs": defs}


def count_nodes(out: dict[str, Any]) -> int:
    children = [*out.get("properties", {}).values(), *([out["items"]] if "items" in out else [])]
    return 1 + sum(count_nodes(c) for c in children)


@given(schema=adversarial_schemas())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_adversarial_schemas_are_converted_or_refused_within_the_budget(schema: dict[str, Any]) -> None:
    _, nodes, depth, inlined = reference_totals(schema)
    within = nodes <= MAX_SCHEMA_NODES and depth <= MAX_SCHEMA_DEPTH and inlined <= MAX_SCHEMA_INLINED_BYTES
    out, seconds = timed(lambda: gemini.gemini_schema(schema, "s"))
    assert seconds < SECONDS
    if within:
        assert isinstance(out, dict), out
        assert count_nodes(out) == nodes  # every node the expansion holds, and no more
    else:
        assert isinstance(out, GatewayError) and (out.status, out.code) == (400, "schema_too_large")


@pytest.mark.parametrize("provider", ["anthropic", "bedrock", "cohere", "ollama", "openai", "huggingface"])
def test_other_providers_pass_schemas_through_in_linear_time(provider: str) -> None:
    options = {
        "anthropic": {"anthropic_version": "2023-06-01"},
        "bedrock": {"bedrock": {"aws_region": "us-east-1"}},
        "ollama": {"upstream_url": "http://127.0.0.1:9"},
    }.get(provider, {})
    auth = {"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "s"} if provider == "bedrock" else {}
    prep, seconds = timed(
        lambda: prepare_chat(chat_route(provider, options, auth=auth), chat_with_tool(BOMB))
    )
    assert seconds < SECONDS
    assert orjson.dumps(BOMB["$defs"]["L29"]) in prep.upstream.body  # untouched, not expanded
    assert len(prep.upstream.body) < 8192


# --- request: the rest of the per-request steps --------------------------------------------------

PROVIDER_OPTIONS: dict[str, dict[str, Any]] = {
    "openai": {},
    "anthropic": {"anthropic_version": "2023-06-01"},
    "cohere": {},
    "gemini": {},
    "bedrock": {"bedrock": {"aws_region": "us-east-1"}},
    "huggingface": {},
    "ollama": {"upstream_url": "http://127.0.0.1:9"},
    "llama2": {"llama2_format": "raw", "upstream_url": "http://127.0.0.1:9"},
}
IMAGE = "data:image/png;base64," + "iVBORw0KGgo" * 8_000  # ~88 KB


def hostile_bodies() -> dict[str, bytes]:
    """Near the 1 MiB default body limit, each stressing one step."""
    same_role = [{"role": "user", "content": "x"} for _ in range(20_000)]  # merged into one turn
    alternating = [{"role": ("user", "assistant")[i % 2], "content": "y"} for i in range(20_000)]
    images = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": IMAGE}}] * 10}]
    return {
        "merging": orjson.dumps({"model": "m", "messages": same_role}),
        "turns": orjson.dumps({"model": "m", "messages": alternating}),
        "huge string": orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "é" * 450_000}]}),
        "images": orjson.dumps({"model": "m", "messages": images}),
        "deep nesting": b'{"model": "m", "messages": [{"role": "user", "content": '
        + b"[" * 1000
        + b"]" * 1000
        + b"}]}",
        "many invalid parts": orjson.dumps(
            {"model": "m", "messages": [{"role": "user", "content": [{"type": 1}] * 30_000}]}
        ),
    }


@pytest.mark.parametrize("provider", sorted(PROVIDER_OPTIONS))
def test_large_and_odd_requests_are_answered_in_bounded_time(provider: str) -> None:
    auth = {"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "s"} if provider == "bedrock" else {}
    route_ = chat_route(provider, PROVIDER_OPTIONS[provider], auth=auth)
    for what, body in hostile_bodies().items():
        assert len(body) <= route_.max_request_body_size, what
        result, seconds = timed(lambda body=body: prepare_chat(route_, body))
        assert seconds < SECONDS, (what, seconds)
        if isinstance(result, GatewayError):
            assert 400 <= result.status < 500, (what, result.message)
        else:
            assert not isinstance(result, Exception), (what, result)
            assert len(result.upstream.body) < 3 * len(body), what  # linear: no copy per turn


PASSTHROUGH_ROUTES = {
    "anthropic native": chat_route(
        "anthropic", {"anthropic_version": "2023-06-01"}, llm_format="anthropic", match={"path": "/v1/*"}
    ),
    "openai preserve": Route.model_validate(
        {"name": "p", "route_type": "preserve", "match": {"path": "/v1/*"}, "model": {"provider": "openai"}}
    ),
}
ALL_ROUTES = {
    **PASSTHROUGH_ROUTES,
    **{
        provider: chat_route(
            provider,
            options,
            auth={"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "s"}
            if provider == "bedrock"
            else {},
        )
        for provider, options in PROVIDER_OPTIONS.items()
    },
}


@st.composite
def nested_bodies(draw: st.DrawFn) -> bytes:
    """A chat body with one field nested up to the JSON parser's limit, around a huge string."""
    field = draw(
        st.sampled_from(["content", "tools", "tool_calls", "response_format", "stop", "user", "extra"])
    )
    depth = draw(st.sampled_from([0, 1, 300, 1000]) | st.integers(0, 1000))
    kinds = draw(st.lists(st.sampled_from([b"list", b"dict"]), min_size=1, max_size=3))
    size = draw(st.sampled_from([0, 10, 300_000]))
    unit = draw(st.sampled_from([b"s", "\u00e9".encode(), b"\\udcff"]))  # a lone surrogate, escaped
    core = b'"' + unit * size + b'"'
    opening = b"".join(b"[" if kinds[i % len(kinds)] == b"list" else b'{"a": ' for i in range(depth))
    closing = b"".join(b"]" if kinds[i % len(kinds)] == b"list" else b"}" for i in reversed(range(depth)))
    value = opening + core + closing
    message = b'{"role": "user", "content": ' + (value if field == "content" else b'"hi"') + b"}"
    if field == "tool_calls":
        message = b'{"role": "assistant", "tool_calls": ' + value + b"}"
    extra = b"" if field in ("content", "tool_calls") else b', "' + field.encode() + b'": ' + value
    return b'{"model": "m", "messages": [' + message + b"]" + extra + b"}"


@pytest.mark.parametrize("name", sorted(ALL_ROUTES))
@given(body=nested_bodies())
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_nested_and_huge_bodies_are_answered_in_bounded_time(name: str, body: bytes) -> None:
    route_ = ALL_ROUTES[name]
    result, seconds = timed(lambda: prepare_chat(route_, body))
    assert seconds < SECONDS
    if isinstance(result, GatewayError):
        assert 400 <= result.status < 500, result.message
    else:
        assert not isinstance(result, Exception), repr(result)[:300]
        assert len(result.upstream.body) < 2 * len(body) + 10_000


@pytest.mark.parametrize("name", ["openai", "huggingface", "anthropic native"])
def test_json_deeper_than_orjson_writes_is_a_400(name: str) -> None:
    # Forwarded as is: read at 300 levels (orjson reads 1024), but orjson writes only 255.
    body = (
        b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "extra": '
        + b"[" * 300
        + b"]" * 300
        + b"}"
    )
    route_ = ALL_ROUTES[name]
    if name == "anthropic native":  # re-encoded only to add a body credential
        route_ = route_.model_copy(
            update={
                "auth": route_.auth.model_copy(
                    update={"param_name": "k", "param_value": "v", "param_location": "body"}
                )
            }
        )
    error, _ = timed(lambda: prepare_chat(route_, body))
    assert isinstance(error, GatewayError), error
    assert (error.status, error.code) == (400, "invalid_body")
    assert (
        error.message == "request body cannot be re-encoded: Recursion limit reached (JSON nested too deeply)"
    )


def test_body_over_the_route_limit_is_a_413_before_parsing() -> None:
    route_ = chat_route("gemini", max_request_body_size=1000)
    error, seconds = timed(lambda: prepare_chat(route_, b"[" * 10_000_000))
    assert isinstance(error, GatewayError) and error.status == 413 and seconds < 0.1


def test_statistics_line_clips_and_quotes_hostile_model_names() -> None:
    route_ = chat_route("openai")
    model = "gpt\nai_proxy route=forged status=200 " + "m" * MiB
    record = build_record(
        CallFacts(
            route_,
            model,
            "up\rstream",
            Usage(1, 2, 3),
            5,
            True,
            200,
            error="cut: sk-secret",
            secrets=("sk-secret",),
        )
    )
    line, seconds = timed(lambda: summary_line(record))
    assert seconds < 0.1 and "\n" not in line and "\r" not in line
    assert len(line) < 2 * MAX_SHOWN_MODEL_CHARS + 300
    assert f"model={model[:MAX_SHOWN_MODEL_CHARS] + '…'!r} -> 'up\\rstream' " in line
    assert line.endswith(" error='cut: [REDACTED]'")
    assert record["ai"]["proxy"]["meta"]["request_model"] == model  # the record keeps it whole
    assert record["ai"]["proxy"]["meta"]["error"] == "cut: [REDACTED]"
    long_error = CallFacts(route_, "m", None, None, 5, True, 200, error="e" * MiB)
    assert build_record(long_error)["ai"]["proxy"]["meta"]["error"] == "e" * MAX_RECORDED_ERROR_CHARS


def test_model_header_cannot_be_injected_into_or_flooded() -> None:
    model = "m\r\nSet-Cookie: session=stolen" + "m" * MiB
    value, seconds = timed(lambda: header_value(f"openai/{model}"))
    assert value == ("openai/m??Set-Cookie: session=stolen" + "m" * MiB)[:MAX_SHOWN_MODEL_CHARS]
    assert seconds < 0.1
    assert header_value("gemini/gemini-2.5-flash") == "gemini/gemini-2.5-flash"


# --- response streams ----------------------------------------------------------------------------


def ctx(provider: str, route_type: str = "llm/v1/chat") -> CallContext:
    return CallContext("r", route_type, provider, "m", ModelOptions(), True, "req", 1)


def translator(fmt: str) -> Any:
    if fmt == "openai":
        return OpenAIStream()
    return SPECS[fmt].routes["llm/v1/chat"].new_stream(ctx(fmt))


def eventstream_prelude(total: int) -> bytes:
    prelude = struct.pack(">II", total, 0)
    return prelude + struct.pack(">I", zlib.crc32(prelude))


# Each format's beginning of one element that never ends: MAX_STREAM_EVENT_BYTES of it follow.
ENDLESS: dict[str, tuple[str, bytes, bytes]] = {
    "openai sse line": ("openai", b'data: {"choices": [{"delta": {"content": "', b"x"),
    "anthropic sse line": ("anthropic", b'event: content_block_delta\ndata: {"text": "', b"x"),
    "cohere sse event of many lines": ("cohere", b"", b"data: " + b"x" * 1000 + b"\n"),
    "huggingface sse line": ("huggingface", b'data: {"x": "', b"x"),
    "llama2 tgi sse line": ("llama2_raw", b'data: {"token": {"text": "', b"x"),
    "gemini sse line": ("gemini", b'data: {"candidates": "', b"x"),
    "gemini json array element": ("gemini", b'[{"candidates": [{"x": "', b"x"),
    "ollama ndjson line": ("ollama", b'{"message": {"content": "', b"x"),
    "bedrock frame": ("bedrock", eventstream_prelude(MAX_STREAM_EVENT_BYTES + 1), b"\0"),
}


@pytest.mark.parametrize("case", sorted(ENDLESS))
def test_endless_stream_element_ends_with_an_error_frame(case: str) -> None:
    fmt, head, unit = ENDLESS[case]
    body = head + unit * (MAX_STREAM_EVENT_BYTES * 5 // 4 // len(unit))  # a quarter over, framing included
    pieces = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    stream = translator(fmt)

    def run() -> list[bytes]:
        out: list[bytes] = []
        for piece in pieces:
            out = stream.feed(piece) or out
        return out

    out, seconds = timed(run)
    assert seconds < SECONDS
    assert out[-1] == b"data: [DONE]\n\n"
    error = orjson.loads(out[-2].removeprefix(b"\n\n").removeprefix(b"data: "))["error"]
    assert error["code"] == "stream_limit_exceeded" and str(MAX_STREAM_EVENT_BYTES) in error["message"]
    assert stream.error == error["message"]  # for the statistics record
    assert stream.feed(b"more") == [] and stream.finish() == []
    # Memory: at most the one element being read, never the stream.
    again = translator(fmt)
    assert peak_memory(lambda: [again.feed(p) for p in pieces]) < MAX_STREAM_EVENT_BYTES + 4 * MiB


def test_event_stream_prelude_announcing_a_huge_frame_is_refused_at_once() -> None:
    stream = translator("bedrock")
    out = stream.feed(eventstream_prelude(0xFFFFFFF0))
    assert orjson.loads(out[0][6:])["error"]["code"] == "stream_limit_exceeded"
    assert stream._decoder.pending == 0


@pytest.mark.parametrize(("total", "headers"), [(0, 0), (12, 0), (15, 0), (100, 90)])
def test_event_stream_prelude_with_impossible_lengths_is_a_corrupt_stream(total: int, headers: int) -> None:
    prelude = struct.pack(">II", total, headers)
    stream = translator("bedrock")
    out = stream.feed(prelude + struct.pack(">I", zlib.crc32(prelude)) + b"\0" * 200)
    assert out[-1] == b"data: [DONE]\n\n"
    assert orjson.loads(out[0][6:])["error"]["message"].endswith(
        f"the event-stream prelude announces impossible lengths ({total}, {headers})"
    )


def test_native_stream_passes_on_untouched_while_its_capped_reader_stops() -> None:
    reader = ObservedStream(translator("anthropic"))
    endless = b"data: " + b"n" * (MAX_STREAM_EVENT_BYTES + 1)
    pieces = [endless[i : i + MiB] for i in range(0, len(endless), MiB)]
    assert [reader.feed(p) for p in pieces] == [[p] for p in pieces]  # the client's bytes, as they came
    assert reader.error is not None and reader.error.endswith(f"limit of {MAX_STREAM_EVENT_BYTES} bytes")
    assert peak_memory(lambda: reader.feed(b"m" * MiB)) < 2 * MiB  # nothing more is read or kept


FIXTURE_STREAMS = {
    "openai": "openai/chat/stream.sse",
    "anthropic": "anthropic/stream_tools/stream.sse",
    "cohere": "cohere/stream_tools/stream.sse",
    "huggingface": "huggingface/stream_tools/stream.sse",
    "llama2_raw": "llama2_raw/chat/stream.sse",
    "gemini": "gemini/stream_tools/stream.sse",
    "gemini array": "gemini/stream_array/stream.json",
    "ollama": "ollama/chat_tools/stream.ndjson",
    "bedrock": "bedrock/stream_tools/stream.eventstream",
}


def fmt_of(name: str) -> str:
    return name.split()[0]


@pytest.mark.parametrize("name", sorted(FIXTURE_STREAMS))
@given(data=st.data())
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_chunking_of_every_stream_format_gives_the_same_answer(name: str, data: st.DataObject) -> None:
    raw = fixture_bytes(FIXTURE_STREAMS[name])
    whole = translator(fmt_of(name))
    expected = b"".join([*whole.feed(raw), *whole.finish()])
    cuts = data.draw(st.lists(st.integers(1, len(raw) - 1), max_size=40) | st.just(list(range(1, len(raw)))))
    bounds = [0, *sorted(set(cuts)), len(raw)]
    cut = translator(fmt_of(name))
    got = b"".join([*(f for a, b in itertools.pairwise(bounds) for f in cut.feed(raw[a:b])), *cut.finish()])
    assert expected.endswith(b"data: [DONE]\n\n") and b'"error"' not in expected
    assert got == expected


LONG_ELEMENT = {
    "openai": b'data: {"choices": [{"index": 0, "delta": {"content": "' + b"y" * MiB + b'"}}]}\n\n',
    "gemini array": b'[{"candidates": [{"content": {"parts": [{"text": "' + b"y" * MiB + b'"}]}}]}]',
    "ollama": b'{"message": {"role": "assistant", "content": "' + b"y" * MiB + b'"}, "done": false}\n',
    "anthropic": b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, '
    b'"delta": {"type": "text_delta", "text": "' + b"y" * MiB + b'"}}\n\n',
}


@pytest.mark.parametrize("name", sorted(LONG_ELEMENT))
def test_a_long_element_in_tiny_chunks_costs_linear_time(name: str) -> None:
    # 16,000 chunks of 64 bytes: re-joining the partial element per chunk would copy 8 GB.
    raw = LONG_ELEMENT[name]
    pieces = [raw[i : i + 64] for i in range(0, len(raw), 64)]
    stream = translator(fmt_of(name))
    out, seconds = timed(lambda: [f for p in pieces for f in stream.feed(p)])
    assert seconds < SECONDS
    assert not isinstance(out, Exception), out
    assert sum(f.count(b"y") for f in out) == MiB


def anthropic_event(kind: str, **payload: Any) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **payload}) + b"\n\n"


START = anthropic_event(
    "message_start", message={"id": "msg", "model": "c", "role": "assistant", "content": [], "usage": {}}
)


def tool_start(index: int) -> bytes:
    block = {"type": "tool_use", "id": f"toolu_{index}", "name": "f", "input": {}}
    return anthropic_event("content_block_start", index=index, content_block=block)


def last_frames(stream: Any, events: Any) -> tuple[list[bytes], int]:
    """Feeds events one by one, keeping only the last frames (nothing accumulates in the test)."""
    out: list[bytes] = []
    fed = 0
    for event in events:
        fed += 1
        out = stream.feed(event)
        if stream.error is not None:
            break
    return out, fed


def test_endless_tool_argument_deltas_end_with_an_error_frame() -> None:
    fragment = "1" * 65536
    delta = anthropic_event(
        "content_block_delta", index=0, delta={"type": "input_json_delta", "partial_json": fragment}
    )
    stream = translator("anthropic")
    stream.feed(START + tool_start(0))

    def endless() -> Any:
        while True:
            yield delta

    (out, fed), seconds = timed(lambda: last_frames(stream, endless()))
    assert seconds < SECONDS
    assert fed == MAX_TOOL_ARGUMENTS_CHARS // len(fragment) + 1
    assert orjson.loads(out[0][6:])["error"] == {
        "message": f"the upstream streamed tool call arguments over the gateway's limit of {MAX_TOOL_ARGUMENTS_CHARS} characters",
        "type": "api_error",
        "param": None,
        "code": "stream_limit_exceeded",
    }
    assert out[1] == b"data: [DONE]\n\n"


def test_endless_tool_calls_end_with_an_error_frame() -> None:
    stream = translator("anthropic")
    stream.feed(START)
    (out, fed), seconds = timed(
        lambda: last_frames(stream, (tool_start(i) for i in range(10 * MAX_STREAM_TOOL_CALLS)))
    )
    assert seconds < SECONDS and fed == MAX_STREAM_TOOL_CALLS + 1
    assert orjson.loads(out[0][6:])["error"]["message"] == (
        f"the upstream streamed more tool calls than the gateway's limit of {MAX_STREAM_TOOL_CALLS}"
    )


# --- end to end: a hostile client does not hold up the others ------------------------------------


@pytest.fixture(scope="module")
def key_file():
    """A Vertex service-account key whose tokens a local token endpoint grants."""
    tokens = TokenEndpoint()
    yield tokens.register("hostile@p.iam.gserviceaccount.com", new_key(), "0a1b2c3d")
    tokens.stop()


@pytest.fixture
def gw(gateway, emulator, key_file):
    header = {"header_name": "x-goog-api-key", "header_value": "AIzaSyHostile-0123456789abcdefghijklmn"}
    return gateway(
        [
            route(
                "gemini", "/gemini/v1/chat/completions", "llm/v1/chat", "gemini", emulator.url, auth=header
            ),
            route(
                "vertex",
                "/vertex/v1/chat/completions",
                "llm/v1/chat",
                "gemini",
                emulator.url,
                model="gemini-2.5-pro",
                auth={"gcp_use_service_account": True, "gcp_service_account_json": key_file},
                options={"gemini": VERTEX},
            ),
            route("openai", "/v1/chat/completions", "llm/v1/chat", "openai", emulator.url),
        ]
    )


def sdk(gw: Any, prefix: str = "") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}{prefix}/v1", api_key="sk-client", max_retries=0, timeout=10)


def test_schema_bomb_is_refused_while_other_clients_are_served(gw):
    served: list[float] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def other_client() -> None:
        client = sdk(gw, "/gemini")
        while not stop.is_set():
            started = time.perf_counter()
            try:
                answer = client.chat.completions.create(model="gemini-2.5-flash", messages=HI)
                assert answer.choices[0].message.content
            except BaseException as e:
                failures.append(e)
                return
            served.append(time.perf_counter() - started)

    sdk(gw, "/gemini").chat.completions.create(model="gemini-2.5-flash", messages=HI)  # warm up
    sdk(gw, "/vertex").chat.completions.create(model="gemini-2.5-pro", messages=HI)  # token minted
    worker = threading.Thread(target=other_client)
    worker.start()
    tool = {"type": "function", "function": {"name": "lookup", "parameters": BOMB}}
    refusals: list[float] = []
    try:
        for prefix, model in [("/gemini", "gemini-2.5-flash"), ("/vertex", "gemini-2.5-pro")] * 2:
            started = time.perf_counter()
            with pytest.raises(openai.BadRequestError) as refused:
                sdk(gw, prefix).chat.completions.create(model=model, messages=HI, tools=[tool])
            refusals.append(time.perf_counter() - started)
            assert refused.value.code == "schema_too_large"
            assert (
                "tool 'lookup'" in refused.value.message
                and f"{MAX_SCHEMA_NODES} nodes" in refused.value.message
            )
    finally:
        stop.set()
        worker.join(10)
    assert not failures, failures
    assert max(refusals) < SECONDS, refusals
    assert len(served) >= 3 and max(served) < 2 * SECONDS, served


def test_endless_upstream_stream_element_is_an_error_frame_and_recorded(gw, emulator):
    emulator.script(200, b"data: " + b"z" * (MAX_STREAM_EVENT_BYTES + 1), "text/event-stream")
    client = sdk(gw)
    with pytest.raises(openai.APIError) as cut:
        for _ in client.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True):
            pass
    assert f"limit of {MAX_STREAM_EVENT_BYTES} bytes" in cut.value.message
    record = gw.wait_records(1)[0]["ai"]["proxy"]["meta"]
    assert (record["route"], record["status"]) == ("openai", 200)
    assert record["error"] == cut.value.message
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=HI)  # still serving
    assert answer.choices[0].message.content


# --- the glue: what a long stream leaves behind --------------------------------------------------


async def test_stream_payload_log_is_bounded_and_the_error_recorded(tmp_path):
    from mitmproxy.test import taddons, tflow, tutils

    from addon.gateway import AIProxy
    from addon.stats import MAX_PAYLOAD

    routes = tmp_path / "routes.json"
    chat = route("chat", "/v1/chat/completions", "llm/v1/chat", "openai", "http://127.0.0.1:9")
    chat["logging"] = {"log_statistics": True, "log_payloads": True}
    routes.write_bytes(orjson.dumps({"routes": [chat]}))
    addon = AIProxy()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, ai_proxy_config=str(routes))
        body = orjson.dumps({"model": "m", "messages": HI, "stream": True})
        flow = tflow.tflow(req=tutils.treq(method=b"POST", path=b"/v1/chat/completions", content=body))
        await addon.request(flow)
        flow.response = tutils.tresp(content=None, headers=[(b"content-type", b"text/event-stream")])
        addon.responseheaders(flow)
        event = b'data: {"choices": [{"index": 0, "delta": {"content": "' + b"w" * 60_000 + b'"}}]}\n\n'
        for _ in range(100):  # 6 MB of answer
            assert flow.response.stream(event) == [event]
        state = addon._live[flow.id]
        assert MAX_PAYLOAD <= state.streamed_size < MAX_PAYLOAD + len(event)  # kept: 1 MiB, not 6 MB
        (sent,) = flow.response.stream(b"data: " + b"v" * (MAX_STREAM_EVENT_BYTES + 1))  # one write
        frames = sent.split(b"\n\n")
        assert frames[-2:] == [b"data: [DONE]", b""]
        assert orjson.loads(frames[-3][6:])["error"]["code"] == "stream_limit_exceeded"
        assert flow.response.stream(b"more\n\n") == []
        flow.response.stream(b"")
        addon.response(flow)
        meta = flow.metadata["ai_proxy"]["ai"]["proxy"]["meta"]
        assert meta["error"].endswith(f"over the gateway's limit of {MAX_STREAM_EVENT_BYTES} bytes")
        assert len(flow.metadata["ai_proxy"]["ai"]["proxy"]["payload"]["response"]) == MAX_PAYLOAD
        addon.done()
