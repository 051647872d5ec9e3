"""The configurations under test, each a URL a client can load, and how to start them.

Every configuration answers the same OpenAI chat request with the same OpenAI-shaped answer:
``direct`` reads the upstream's OpenAI document itself, the others go through a proxy.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path

import orjson

from bench.procs import Service, free_port, start_service
from bench.tools import ROOT, Tool, node_binary

MITMDUMP = str(Path(sys.executable).with_name("mitmdump"))
ADDON = ROOT / "addon" / "ai_proxy.py"
# Request variants: a normal answer, a normal stream, and a very long stream (memory check).
VARIANTS = ("json", "stream", "big")
CLIENT_PATHS = {"json": "/openai/chat", "stream": "/openai/chat-stream", "big": "/openai/big-stream"}
UPSTREAM_PATHS = {
    "openai": CLIENT_PATHS,
    "anthropic": {
        "json": "/anthropic/messages",
        "stream": "/anthropic/stream/messages",
        "big": "/anthropic/big/messages",
    },
}
BASE_HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer bench-client-key"}
ANTHROPIC_VERSION = "2023-06-01"
PORTKEY_SHIM = Path(__file__).resolve().parent / "portkey_fetch_shim.mjs"


@dataclass
class Target:
    name: str
    description: str
    port: int
    _: KW_ONLY
    service: Service | None = None  # the proxy process (None for direct)
    cpu_pid: int | None = None  # whose CPU a load cell samples: the proxy, or for direct the upstream
    paths: dict[str, str] = field(default_factory=lambda: dict(CLIENT_PATHS))
    headers: dict[str, dict[str, str]] = field(
        default_factory=lambda: {variant: dict(BASE_HEADERS) for variant in VARIANTS}
    )

    def __post_init__(self) -> None:
        if self.cpu_pid is None and self.service is not None:
            self.cpu_pid = self.service.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_mitmdump(self) -> bool:
        return self.name.startswith(("mitmdump", "addon"))


def variant(stream: bool) -> str:
    return "stream" if stream else "json"


def direct(upstream: Service) -> Target:
    return Target("direct", f"{upstream.name} itself (no proxy)", upstream.port, cpu_pid=upstream.pid)


def _mitmdump_cmd(upstream: Service, port: int) -> list[str]:
    return [
        MITMDUMP,
        "--mode",
        f"reverse:http://127.0.0.1:{upstream.port}",
        "--listen-host",
        "127.0.0.1",
        "-p",
        str(port),
        "-q",
        "--set",
        "flow_detail=0",
    ]


def plain_mitmdump(upstream: Service, run: Path, stream: bool = False) -> Target:
    """``stream``: with ``stream_large_bodies=1``, so that it streams every body as the addon streams
    event streams (the fairer baseline for the stream cells); otherwise it buffers whole answers."""
    port = free_port()
    if stream:
        cmd = [*_mitmdump_cmd(upstream, port), "--set", "stream_large_bodies=1"]
        service = start_service("mitmdump-stream", cmd, port, run)
        description = "mitmdump reverse proxy, no addon, streaming every body (stream_large_bodies=1)"
        return Target("mitmdump-stream", description, port, service=service)
    service = start_service("mitmdump", _mitmdump_cmd(upstream, port), port, run)
    return Target("mitmdump", "mitmdump reverse proxy, no addon", port, service=service)


def filler_routes(count: int, upstream: Service) -> list[dict[str, object]]:
    """Routes that never match the benchmark's paths, as a large gateway would have ahead of them:
    exact paths, ``/*`` prefixes and host-bound routes in turn."""
    routes: list[dict[str, object]] = []
    for i in range(count):
        kind = i % 3
        match: dict[str, str] = {
            0: {"path": f"/team-{i}/v1/chat/completions"},
            1: {"path": f"/team-{i}/*"},
            2: {"path": "/v1/chat/completions", "host": f"tenant-{i}.example.com"},
        }[kind]
        routes.append(
            {
                "name": f"filler-{i}",
                "match": match,
                "route_type": "llm/v1/chat",
                "model": {
                    "provider": "openai",
                    "name": f"model-{i}",
                    "options": {"upstream_url": f"http://127.0.0.1:{upstream.port}/openai/chat"},
                },
            }
        )
    return routes


def routes_for(
    provider: str, upstream: Service, total: int | None = None, targets: bool = False
) -> dict[str, object]:
    """A chat route per request variant, from its client path to the matching upstream document.
    ``total``: fill the table up to this many routes with filler routes placed first, so that every
    request is matched behind all of them (the worst case of a scan in order)."""
    routes = filler_routes(max(0, total - len(CLIENT_PATHS)), upstream) if total else []
    for name, client_path in CLIENT_PATHS.items():
        options: dict[str, object] = {
            "upstream_url": f"http://127.0.0.1:{upstream.port}{UPSTREAM_PATHS[provider][name]}",
            "input_cost": 0.15,
            "output_cost": 0.6,
        }
        auth = {"header_name": "Authorization", "header_value": "Bearer bench-upstream-key"}
        if provider == "anthropic":
            options["anthropic_version"] = ANTHROPIC_VERSION
            auth = {"header_name": "x-api-key", "header_value": "bench-upstream-key"}
        block = {
            "route_type": "llm/v1/chat",
            "auth": auth,
            "model": {"provider": provider, "options": options},
        }
        if targets:  # AI Proxy Advanced: two targets (the same upstream), round-robin, Kong's defaults
            routes.append(
                {
                    "name": f"bench-{provider}-{name}",
                    "match": {"path": client_path},
                    "targets": [{**block, "description": "one"}, {**block, "description": "two"}],
                    "balancer": {},
                }
            )
            continue
        routes.append({"name": f"bench-{provider}-{name}", "match": {"path": client_path}, **block})
    return {"routes": routes}


def addon_mitmdump(
    provider: str, upstream: Service, run: Path, routes: int | None = None, variant: str = ""
) -> Target:
    """The addon with the benchmark's routes; ``routes``: that many routes in all (see routes_for).
    ``variant``: ``targets`` (each route has two targets and a balancer) or ``norelay`` (plain
    routes, ai_proxy_relay=balanced: mitmproxy's own upstream connection, no relay hop)."""
    name = f"addon-{provider}" + (f"-{routes}-routes" if routes else "") + (f"-{variant}" if variant else "")
    config = run / f"{name}-routes.json"
    table_json = routes_for(provider, upstream, routes, targets=variant == "targets")
    config.write_bytes(orjson.dumps(table_json, option=orjson.OPT_INDENT_2))
    port = free_port()
    cmd = [
        *_mitmdump_cmd(upstream, port),
        "-s",
        str(ADDON),
        "--set",
        f"ai_proxy_config={config}",
        "--set",
        f"ai_proxy_stats_file={run / f'{name}-stats.jsonl'}",
        *(("--set", "ai_proxy_relay=balanced") if variant == "norelay" else ()),
    ]
    service = start_service(name, cmd, port, run)
    action = "passing OpenAI through" if provider == "openai" else f"translating OpenAI->{provider}"
    table = f", {routes} routes" if routes else ""
    table += {"targets": ", two targets per route", "norelay": ", no relay (ai_proxy_relay=balanced)"}.get(
        variant, ""
    )
    return Target(name, f"mitmdump + ai-proxy addon {action}{table}", port, service=service)


def portkey(tool: Tool, upstream: Service, run: Path, shim: bool = False) -> Target:
    """Portkey translating OpenAI->Anthropic; x-portkey-custom-host replaces its Anthropic base URL
    (it appends /messages), x-portkey-provider picks the provider. ``shim``: see portkey_fetch_shim.mjs."""
    assert tool.path is not None
    port = free_port()
    preload = ["--import", str(PORTKEY_SHIM)] if shim else []
    cmd = [node_binary(), *preload, str(tool.path), f"--port={port}", "--headless"]
    service = start_service("portkey", cmd, port, run, cwd=tool.path.parent)
    headers = {}
    for name, upstream_path in UPSTREAM_PATHS["anthropic"].items():
        custom_host = f"http://127.0.0.1:{upstream.port}{upstream_path.removesuffix('/messages')}"
        headers[name] = {
            **BASE_HEADERS,
            "x-portkey-provider": "anthropic",
            "x-portkey-custom-host": custom_host,
        }
    paths = dict.fromkeys(VARIANTS, "/v1/chat/completions")
    description = f"Portkey gateway translating OpenAI->Anthropic ({tool.version})"
    if shim:
        description += ", with bench/portkey_fetch_shim.mjs"
    return Target("portkey", description, port, service=service, paths=paths, headers=headers)


def route_count_provider() -> str:
    """The route-count cells translate to Anthropic when that provider exists, as the main cells do."""
    providers, _error = available_providers()
    return "anthropic" if "anthropic" in providers else "openai"


def available_providers() -> tuple[list[str], str]:
    """The provider specs the addon would load, asked in a fresh interpreter (a half-written
    provider module must not break the harness); returns (names, error text)."""
    code = "import orjson; from transforms.registry import SPECS; print(orjson.dumps(sorted(SPECS)).decode())"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        return [], done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "import failed"
    return orjson.loads(done.stdout), ""
