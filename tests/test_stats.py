"""Statistics records: Kong's layout, cost, payload redaction, the event-log line."""

from __future__ import annotations

import orjson
import pytest

from addon.stats import CallFacts, StatsSink, build_record, summary_line
from transforms.config import Route
from transforms.types import Usage


def make_route(log_payloads: bool = False, costs: bool = True) -> Route:
    options = {"input_cost": 3.0, "output_cost": 15.0} if costs else {}
    return Route.model_validate(
        {
            "name": "claude",
            "route_type": "llm/v1/chat",
            "auth": {"header_name": "x-api-key", "header_value": "sk-ant-secret-1"},
            "model": {"provider": "openai", "name": "m", "options": options},
            "logging": {"log_statistics": True, "log_payloads": log_payloads},
        }
    )


def facts(route: Route, usage: Usage | None = None, **kw) -> CallFacts:
    defaults = dict(
        route=route,
        request_model="m",
        response_model="m-2025",
        usage=usage or Usage(1000, 200, 1200),
        llm_latency_ms=400,
        stream=False,
        status=200,
        request_payload=b'{"x-api-key": "sk-ant-secret-1"}',
        response_payload=b'{"ok": true}',
        secrets=route.auth.secrets(),
    )
    defaults.update(kw)
    return CallFacts(**defaults)


def test_record_layout_and_cost():
    record = build_record(facts(make_route()))
    assert record == {
        "ai": {
            "proxy": {
                "meta": {
                    "route": "claude",
                    "provider_name": "openai",
                    "request_model": "m",
                    "response_model": "m-2025",
                    "llm_latency": 400,
                    "request_mode": "oneshot",
                    "status": 200,
                },
                "usage": {
                    "prompt_tokens": 1000,
                    "completion_tokens": 200,
                    "total_tokens": 1200,
                    "time_per_token": 2.0,
                    "cost": pytest.approx((1000 * 3.0 + 200 * 15.0) / 1e6),
                },
            }
        }
    }


def test_cost_needs_both_prices_and_no_tokens_no_time_per_token():
    record = build_record(facts(make_route(costs=False), Usage(10, 0, 10)))
    assert record["ai"]["proxy"]["usage"]["cost"] == 0
    assert record["ai"]["proxy"]["usage"]["time_per_token"] == 0


def test_payloads_are_redacted_and_only_when_asked():
    record = build_record(facts(make_route(log_payloads=True)))
    payload = record["ai"]["proxy"]["payload"]
    assert payload == {"request": '{"x-api-key": "[REDACTED]"}', "response": '{"ok": true}'}
    assert "payload" not in build_record(facts(make_route()))["ai"]["proxy"]


def test_estimates_details_and_streams_are_marked():
    usage = Usage(10, 20, 30, cached_tokens=5, reasoning_tokens=7, estimated=True)
    record = build_record(facts(make_route(), usage, stream=True, time_to_first_token_ms=120))
    u = record["ai"]["proxy"]["usage"]
    assert u["estimated"] is True
    assert u["prompt_tokens_details"] == {"cached_tokens": 5}
    assert u["completion_tokens_details"] == {"reasoning_tokens": 7}
    assert u["time_to_first_token"] == 120
    assert record["ai"]["proxy"]["meta"]["request_mode"] == "stream"
    assert "(estimated)" in summary_line(record)


def test_summary_line():
    line = summary_line(build_record(facts(make_route())))
    assert line == (
        "ai_proxy route=claude provider=openai model=m -> m-2025 status=200 mode=oneshot "
        "tokens=1000+200=1200 cost=$0.006000 latency=400ms"
    )


def test_sink_appends_json_lines(tmp_path):
    sink = StatsSink()
    path = tmp_path / "stats.jsonl"
    sink.open(str(path))
    sink.emit(build_record(facts(make_route())))
    sink.emit(build_record(facts(make_route())))
    sink.close()
    lines = path.read_bytes().splitlines()
    assert len(lines) == 2
    assert orjson.loads(lines[0])["ai"]["proxy"]["meta"]["route"] == "claude"
    assert b"sk-ant-secret-1" not in path.read_bytes()


def test_records_name_the_consumer_by_its_key_name():
    record = build_record(facts(make_route(), consumer="team"))
    assert record["ai"]["proxy"]["meta"]["consumer"] == "team"
    assert summary_line(record).startswith("ai_proxy route=claude consumer=team provider=openai ")
    assert "consumer" not in build_record(facts(make_route()))["ai"]["proxy"]["meta"]


def test_subscribers_see_every_record_before_it_is_written(tmp_path, caplog):
    sink = StatsSink()
    path = tmp_path / "stats.jsonl"
    sink.open(str(path))
    seen: list[tuple[str, int]] = []

    def failing(record):
        raise RuntimeError("a broken subscriber")

    sink.subscribe(
        lambda record: seen.append((record["ai"]["proxy"]["meta"]["consumer"], len(path.read_bytes())))
    )
    sink.subscribe(failing)
    sink.emit(build_record(facts(make_route(), consumer="a")))
    sink.emit(build_record(facts(make_route(), consumer="b")))
    sink.close()
    first_line = len(path.read_bytes().splitlines()[0]) + 1
    assert seen == [("a", 0), ("b", first_line)]  # each record seen before its own line is written
    assert len(path.read_bytes().splitlines()) == 2  # a failing subscriber stops nothing
    assert caplog.text.count("a statistics subscriber failed") == 2
