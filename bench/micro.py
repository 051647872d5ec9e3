"""Micro-benchmark of the pure transforms, per provider, against the orjson floor.

For every provider spec in ``transforms.registry.SPECS`` with a chat route, it times, on the project's
fixtures (the OpenAI chat request, the provider's chat response and stream, found the way the
emulator finds them):

- floor: ``orjson.loads`` + ``orjson.dumps`` of the request and of the response: the least any
  JSON-rewriting gateway must do;
- transform: the same loads/dumps plus the provider's ``build_request`` and ``parse_response``;
- pipeline: ``prepare`` + ``translate_response``, everything the addon runs per call outside mitmproxy
  (validation, defaults, auth, URL, usage);
- stream: a translator fed the stream fixture event by event, against loads+dumps of each event.

"large" grows the request to 32 KB with more turns and the response's longest text to 32 KB.
"""

from __future__ import annotations

import copy
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.payloads import grow_chat
from bench.tools import ROOT

FIXTURES = ROOT / "fixtures"
LARGE = 32 * 1024
LOCAL = "http://127.0.0.1:9"
DEFAULT_AUTH = {"header_name": "Authorization", "header_value": "Bearer bench-key-0123456789"}
# What a route needs per wire format (config.Route's rules), and a model the provider knows.
ROUTE_SETUP: dict[str, dict[str, Any]] = {
    "openai": {"provider": "openai"},
    "azure": {"provider": "azure", "options": {"azure_instance": "bench", "azure_deployment_id": "gpt-4o"}},
    "mistral": {"provider": "mistral", "options": {"mistral_format": "openai"}},
    "llama2": {"provider": "llama2", "options": {"llama2_format": "openai", "upstream_url": LOCAL}},
    "llama2_raw": {"provider": "llama2", "options": {"llama2_format": "raw", "upstream_url": LOCAL}},
    "ollama": {"provider": "ollama", "options": {"upstream_url": LOCAL}, "model": "llama3.1"},
    "anthropic": {
        "provider": "anthropic",
        "options": {"anthropic_version": "2023-06-01"},
        "auth": {"header_name": "x-api-key", "header_value": "bench-key-0123456789"},
        "model": "claude-3-5-haiku-20241022",
    },
    "cohere": {"provider": "cohere", "model": "command-r-plus-08-2024"},
    "gemini": {
        "provider": "gemini",
        "auth": {"param_name": "key", "param_value": "bench-key-0123456789", "param_location": "query"},
        "model": "gemini-2.0-flash",
    },
    "bedrock": {
        "provider": "bedrock",
        "options": {"bedrock": {"aws_region": "us-east-1"}},
        "auth": {"aws_access_key_id": "AKIDBENCHEXAMPLE", "aws_secret_access_key": "bench-secret-0123456789"},
        "model": "anthropic.claude-3-5-haiku-20241022-v1:0",
    },
    "huggingface": {"provider": "huggingface", "model": "meta-llama/Llama-3.1-8B-Instruct"},
}


@dataclass(frozen=True, slots=True)
class MicroRow:
    provider: str
    body: str  # "typical" or "large"
    request_bytes: int
    response_bytes: int
    floor_us: float
    transform_us: float | None = None
    pipeline_us: float | None = None
    stream_floor_us: float | None = None
    stream_us: float | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Timer:
    quick: bool

    def per_call_us(self, fn: Callable[[], object]) -> float:
        """Best of a few repeats, per call: the least disturbed estimate on a shared machine."""
        if self.quick:
            return min(timeit.repeat(fn, number=3, repeat=1)) / 3 * 1e6
        number, _ = timeit.Timer(fn).autorange()
        return min(timeit.repeat(fn, number=number, repeat=3)) / number * 1e6


def run(quick: bool = False) -> tuple[list[MicroRow], list[str]]:
    """Rows per (provider, body size) and notes for providers that could not be measured."""
    try:
        from transforms.registry import SPECS
    except Exception as e:  # a provider module being written right now must not stop the bench
        return [], [f"micro-benchmark skipped: transforms.registry does not import ({e!r})"]
    timer = Timer(quick)
    rows: list[MicroRow] = []
    notes: list[str] = []
    for name, spec in sorted(SPECS.items()):
        if "llm/v1/chat" not in spec.routes:
            continue
        try:
            rows += _provider_rows(name, timer)
        except Exception as e:
            notes.append(f"micro-benchmark: {name} skipped ({type(e).__name__}: {str(e)[:160]})")
    return rows, notes


def _route(spec_name: str) -> Any:
    from transforms.config import Route

    setup = ROUTE_SETUP.get(spec_name, {"provider": spec_name})
    return Route.model_validate(
        {
            "name": f"micro-{spec_name}",
            "route_type": "llm/v1/chat",
            "auth": setup.get("auth", DEFAULT_AUTH),
            "model": {"provider": setup["provider"], "options": setup.get("options", {})},
        }
    )


def _requests(spec_name: str) -> dict[str, dict[str, Any]]:
    typical = orjson.loads((FIXTURES / "openai" / "chat" / "request.json").read_bytes())
    typical["model"] = ROUTE_SETUP.get(spec_name, {}).get("model", typical["model"])
    large = copy.deepcopy(typical)
    grow_chat(large, LARGE)
    return {"typical": typical, "large": large}


def _provider_rows(spec_name: str, timer: Timer) -> list[MicroRow]:
    route = _route(spec_name)
    rows = []
    for body_name, request in _requests(spec_name).items():
        raw_request = orjson.dumps(request)
        prep = _prepare(route, raw_request)
        folder = _fixture_folder(prep.upstream.path)
        if folder is None:
            raise LookupError(f"no emulator fixture serves {prep.upstream.path}")
        response = (folder / "response.json").read_bytes()
        if body_name == "large":
            response = _grow_longest_text(response, LARGE)
        rows.append(_measure(spec_name, body_name, route, raw_request, response, timer))
    return rows


def _measure(
    spec_name: str, body_name: str, route: Any, raw_request: bytes, response: bytes, timer: Timer
) -> MicroRow:
    from transforms.pipeline import translate_response

    prep = _prepare(route, raw_request)
    transform = prep.spec.routes["llm/v1/chat"]
    ctx = prep.ctx

    def floor() -> None:
        orjson.dumps(orjson.loads(raw_request))
        orjson.dumps(orjson.loads(response))

    def transform_only() -> None:
        orjson.dumps(transform.build_request(orjson.loads(raw_request), ctx).body)
        orjson.dumps(transform.parse_response(orjson.loads(response), ctx))

    def pipeline() -> None:
        translate_response(_prepare(route, raw_request), 200, response)

    stream_floor, stream = (None, None)
    if body_name == "typical":
        stream_floor, stream = _stream_times(route, raw_request, timer)
    return MicroRow(
        provider=spec_name,
        body=body_name,
        request_bytes=len(raw_request),
        response_bytes=len(response),
        floor_us=timer.per_call_us(floor),
        transform_us=timer.per_call_us(transform_only),
        pipeline_us=timer.per_call_us(pipeline),
        stream_floor_us=stream_floor,
        stream_us=stream,
    )


def _stream_times(route: Any, raw_request: bytes, timer: Timer) -> tuple[float | None, float | None]:
    from addon.emulator import split_stream

    body = orjson.loads(raw_request)
    body["stream"] = True
    prep = _prepare(route, orjson.dumps(body))
    folder = _fixture_folder(prep.upstream.path)
    streams = sorted(folder.glob("stream.*")) if folder else []
    new_stream = prep.spec.routes["llm/v1/chat"].new_stream
    if not streams or new_stream is None or prep.ctx is None:
        return None, None
    events = split_stream(streams[0].read_bytes(), streams[0].suffix)
    ctx = prep.ctx

    def translate() -> None:
        translator = new_stream(ctx)
        for chunk in events:
            translator.feed(chunk)
        translator.finish()

    payloads = _event_payloads(events, streams[0].suffix)
    floor = None
    if payloads:

        def floor_fn() -> None:
            for data in payloads:
                orjson.dumps(orjson.loads(data))

        floor = timer.per_call_us(floor_fn)
    return floor, timer.per_call_us(translate)


def _event_payloads(events: list[bytes], suffix: str) -> list[bytes]:
    """The JSON documents inside SSE or NDJSON events (none for binary framings)."""
    if suffix == ".ndjson":
        return [e.strip() for e in events if e.strip()]
    if suffix != ".sse":
        return []
    out = []
    for event in events:
        for line in event.split(b"\n"):
            if line.startswith(b"data:") and line[5:].strip() not in (b"", b"[DONE]"):
                out.append(line[5:].strip())
    return out


def _prepare(route: Any, raw_request: bytes) -> Any:
    from transforms.pipeline import prepare
    from transforms.types import Inbound

    inbound = Inbound(
        method="POST",
        host="127.0.0.1",
        path="/v1/chat/completions",
        query=[],
        headers={"content-type": "application/json"},
        body=raw_request,
    )
    return prepare(route, inbound, request_id="benchrequest0001", now=1741570283, env={}, credentials={})


def _fixture_folder(upstream_path: str) -> Path | None:
    """The folder the emulator would answer this provider path from."""
    from addon.emulator import load_routes

    for method, pattern, folder in load_routes(FIXTURES):
        if method == "POST" and pattern.search(upstream_path):
            return FIXTURES / folder
    return None


def _grow_longest_text(response: bytes, size: int) -> bytes:
    """The same response with its longest string (the answer text) repeated up to ``size`` bytes."""
    data = orjson.loads(response)
    holder, key, text = _longest_string(data)
    if holder is None or not text:
        return response
    holder[key] = (text + " ") * (size // (len(text) + 1) + 1)
    return orjson.dumps(data)


def _longest_string(node: Any) -> tuple[Any, Any, str]:
    best: tuple[Any, Any, str] = (None, None, "")
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        found = (node, key, value) if isinstance(value, str) else _longest_string(value)
        if len(found[2]) > len(best[2]):
            best = found
    return best


def route_lookup_us(counts: list[int], quick: bool = False) -> dict[int, float]:
    """Microseconds per route lookup (``GatewayConfig.find``) in the route-count tables of the
    benchmark, for the path matched behind every filler route."""
    from bench.targets import CLIENT_PATHS, routes_for
    from transforms.config import GatewayConfig

    class Upstream:  # routes_for only reads the port
        port = 9

    out = {}
    path = CLIENT_PATHS["json"]
    for count in counts:
        config = GatewayConfig.model_validate(routes_for("openai", Upstream(), count))  # type: ignore[arg-type]
        # Best of many short repeats: a lookup takes microseconds, a shared machine's hiccups longer.
        number, repeat = (200, 3) if quick else (2000, 15)
        best = min(timeit.repeat(lambda config=config: config.find("", path), number=number, repeat=repeat))
        out[count] = best / number * 1e6
    return out
