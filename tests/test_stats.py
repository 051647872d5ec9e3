"""Statistics records: Kong's layout, cost, payload redaction, the event-log line."""

from __future__ import annotations

import logging

import orjson
import pytest
from mitmproxy.log import LegacyLogEvents

from addon.stats import CallFacts, StatsSink, build_record, line_is_heard, summary_line
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


class _Bridge(LegacyLogEvents):
    """mitmproxy's bridge to the deprecated add_log hook, without a master behind it."""

    def __init__(self) -> None:
        super(LegacyLogEvents, self).__init__()  # MitmLogHandler's: no master to trigger hooks on
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage())


class _Kept(logging.Handler):
    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage())


@pytest.fixture
def isolated_logger() -> logging.Logger:
    """A logger outside the logging tree (pytest adds its capture handlers there): which handlers
    hear the line is up to the test."""
    return logging.Logger("ai_proxy.test_heard", logging.DEBUG)


def test_the_line_is_heard_by_a_handler_that_shows_alerts(isolated_logger):
    isolated_logger.addHandler(_Kept(logging.ERROR))  # mitmdump -q: the terminal shows errors only
    assert not line_is_heard(isolated_logger, add_log_hooks=False)
    isolated_logger.addHandler(_Kept(logging.INFO))  # the terminal's default, mitmweb's event log
    assert line_is_heard(isolated_logger, add_log_hooks=False)


def test_the_add_log_bridge_hears_the_line_only_for_addons_with_add_log(isolated_logger):
    isolated_logger.addHandler(_Bridge())
    assert not line_is_heard(isolated_logger, add_log_hooks=False)
    assert line_is_heard(isolated_logger, add_log_hooks=True)
    dropping = logging.Logger("ai_proxy.test_dropping", logging.ERROR)  # drops ALERT: nobody hears it
    dropping.addHandler(_Kept(logging.INFO))
    assert not line_is_heard(dropping, add_log_hooks=True)


def test_an_unheard_line_is_skipped_and_the_record_still_goes_everywhere_else(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="ai_proxy")
    bridge, quiet = _Bridge(), _Kept(logging.ERROR)
    log = logging.getLogger("ai_proxy")
    monkeypatch.setattr(log, "propagate", False)
    monkeypatch.setattr(log, "handlers", [bridge, quiet])
    sink, seen = StatsSink(), []
    sink.subscribe(seen.append)
    sink.open(str(tmp_path / "stats.jsonl"))
    sink.add_log_hooks = False
    record = build_record(facts(make_route()))
    sink.emit(record)
    assert (bridge.seen, quiet.seen) == ([], [])
    sink.add_log_hooks = True  # a script defines add_log: the bridge hears the line
    sink.emit(record)
    sink.close()
    assert bridge.seen == [summary_line(record)]
    assert seen == [record, record]
    assert (tmp_path / "stats.jsonl").read_bytes().count(b"\n") == 2
