"""The benchmark harness must keep working: a smoke run (Python stand-ins, a few hundred requests)
has to produce the report with numbers for every configuration it could run."""

from __future__ import annotations

import subprocess
import sys

import anthropic.types
import openai.types.chat
import orjson
import pytest
from conftest import ROOT

from bench import payloads
from bench.profile import parse_raw
from bench.pyupstream import _content_length
from bench.targets import CLIENT_PATHS, available_providers, route_count_provider, routes_for
from transforms.config import GatewayConfig


def table(markdown: str, heading: str) -> list[dict[str, str]]:
    """The rows of the first table after ``## heading``, as dicts keyed by the header cells."""
    lines = markdown.split(f"## {heading}", 1)[1].splitlines()
    end = next((i for i, line in enumerate(lines) if line.startswith("## ")), len(lines))
    rows = [line for line in lines[:end] if line.startswith("|")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    return [
        dict(zip(header, (c.strip() for c in row.strip("|").split("|")), strict=True)) for row in rows[2:]
    ]


def number(text: str) -> float:
    return float(text.removesuffix("x").removesuffix(" %"))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("bench") / "results.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out.read_text()


def expected_configurations() -> list[str]:
    providers, _error = available_providers()
    expected = ["direct", "mitmdump", "mitmdump-stream", "addon-openai"]
    return [*expected, "addon-anthropic"] if "anthropic" in providers else expected


def test_smoke_report_has_load_numbers_for_every_configuration(report: str) -> None:
    rows = table(report, "Throughput and latency")
    for config in expected_configurations():
        mine = [r for r in rows if r["config"] == config]
        # 2 bodies x 2 modes x 2 concurrencies
        assert len(mine) == 8, (config, mine)
        for row in mine:
            assert number(row["req/s"]) > 0 and number(row["p50 ms"]) > 0, row
            assert row["errors"] == "0", row
    addon_rows = [r for r in rows if r["config"] == "addon-openai"]
    assert all(number(r["addon/mitmdump"]) > 0 for r in addon_rows)
    # Stream cells are also set against a plain mitmdump that streams (stream_large_bodies=1).
    for row in addon_rows:
        streamed = row["addon/mitmdump-stream"]
        assert number(streamed) > 0 if row["mode"] == "stream" else streamed == "-", row
        # One round: each round's own ratio is the ratio of the medians, to the cell's baseline.
        baseline = streamed if row["mode"] == "stream" else row["addon/mitmdump"]
        assert row["addon/baseline paired"] == baseline, row


def test_smoke_report_has_first_chunk_memory_and_targets(report: str) -> None:
    first = table(report, "Stream first chunk (c=1)")
    assert {r["config"] for r in first} == set(expected_configurations())
    assert all(number(r["first chunk p50 ms"]) > 0 for r in first)
    memory = {r["config"]: r for r in table(report, "Memory (RSS)")}
    assert set(memory) == set(expected_configurations()) - {"direct"}
    assert all(number(r["at end"].split(" (")[0]) > 20 for r in memory.values())
    long_stream = {r["config"]: r for r in table(report, "One long stream (1.0 MB from the upstream)")}
    assert all(r["complete"] == "yes" for r in long_stream.values()), long_stream
    targets = table(report, "Targets of issue 6")
    assert len(targets) == 12 and all(r["met"] for r in targets)


def test_smoke_report_has_the_route_count_cells(report: str) -> None:
    # The smoke run sets the 2,000-route table beside the main addon configuration (3 routes).
    rows = table(report, "Route count")
    assert [(r["c"], r["routes"]) for r in rows] == [("16", "3"), ("16", "2,000")]
    for row in rows:
        assert number(row["req/s"]) > 0 and row["errors"] == "0", row
        assert 0 < number(row["lookup µs"]) < 100, row  # a linear scan of 2,000 routes takes ~400 µs
    assert rows[0]["vs 3 routes"] == "1.00x"
    assert (
        f"2,000: mitmdump + ai-proxy addon translating OpenAI->{route_count_provider()}, 2000 routes"
        in report
    )


def test_route_count_tables_put_the_benchmark_routes_behind_all_others() -> None:
    class Upstream:
        port = 9

    config = GatewayConfig.model_validate(routes_for("anthropic", Upstream(), 2000))  # type: ignore[arg-type]
    assert len(config.routes) == 2000
    hosts = {r.match.host for r in config.routes[:-3]}
    assert len(hosts) > 600 and {r.match.path.endswith("/*") for r in config.routes[:-3]} == {True, False}
    for position, path in enumerate(CLIENT_PATHS.values(), start=1997):
        for host in ("", "tenant-2.example.com"):
            assert config.find(host, path) is config.routes[position]
    assert config.find("tenant-2.example.com", "/v1/chat/completions").name == "filler-2"


def test_smoke_report_has_the_micro_benchmark(report: str) -> None:
    rows = table(report, "Pure transforms (micro-benchmark)")
    openai_rows = {r["body"]: r for r in rows if r["provider"] == "openai"}
    assert set(openai_rows) == {"typical", "large"}
    for row in openai_rows.values():
        assert number(row["orjson floor µs"]) > 0 and number(row["pipeline µs"]) > 0, row
    assert int(openai_rows["large"]["request B"]) > 32 * 1024


def test_upstream_answers_are_valid_provider_bodies() -> None:
    openai.types.chat.ChatCompletion.model_validate(orjson.loads(payloads.openai_response()))
    anthropic.types.Message.model_validate(orjson.loads(payloads.anthropic_response()))
    chunks = [e[6:] for e in payloads.openai_stream().split(b"\n\n") if e.startswith(b"data: {")]
    for chunk in chunks:
        openai.types.chat.ChatCompletionChunk.model_validate(orjson.loads(chunk))
    text = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in map(orjson.loads, chunks) if c["choices"]
    )
    assert text == payloads.ANSWER


def test_request_bodies_have_the_asked_sizes() -> None:
    for size in payloads.BODY_SIZES.values():
        body = payloads.chat_request(size, stream=True)
        assert size <= len(body) <= size + 300
        assert orjson.loads(body)["messages"][-1]["role"] == "user"


def test_python_upstream_reads_content_length() -> None:
    assert _content_length(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12") == 12
    assert _content_length(b"GET / HTTP/1.1\r\nHost: x") == 0
    assert _content_length(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked") is None


def test_profile_parser_sums_own_inclusive_and_project_lines() -> None:
    raw = (
        "main (m.py:1);AIProxy.request (addon/gateway.py:10);prepare (transforms/pipeline.py:5);loads (j.py:3) 3\n"
        "main (m.py:1);write (asyncio/x.py:9) 1\n"
    )
    profile = parse_raw(raw)
    assert profile.samples == 4
    assert profile.own["loads (j.py)"] == 3 and profile.own["write (asyncio/x.py)"] == 1
    assert profile.inclusive["AIProxy.request (addon/gateway.py)"] == 3
    assert profile.our_lines == {"prepare (transforms/pipeline.py:5)": 3}
