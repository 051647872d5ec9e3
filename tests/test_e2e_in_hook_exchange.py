"""End to end: whole answers are fetched in mitmproxy's request hook, last in its chain
(addon/upstream_relay.py, InHookExchange); streams go through the relay's loopback hop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, route
from fake_upstream import FakeUpstream
from mitmproxy import options
from mitmproxy.hooks import DoneHook, RunningHook
from mitmproxy.tools.dump import DumpMaster
from test_e2e_masking import read_flows


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    made = FakeUpstream("a")
    yield made
    made.stop()


def chat_route(fake: FakeUpstream) -> dict:
    return route("plain", "/plain/v1/chat/completions", "llm/v1/chat", "openai", fake.url, model="gpt-4o")


def ask(gw, stream: bool = False) -> httpx.Response:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return httpx.post(f"{gw.url}/plain/v1/chat/completions", json=body, timeout=10)


def test_a_whole_answer_skips_the_relay_hop_and_a_stream_takes_it(gateway, fake, tmp_path: Path) -> None:
    fake.reset()
    saved = tmp_path / "flows.mitm"
    gw = gateway([chat_route(fake)], extra=["--set", f"save_stream_file={saved}"])
    whole = ask(gw)
    assert whole.status_code == 200, whole.text
    assert whole.json()["choices"][0]["message"]["content"] == "hello from a"
    fake.cue("stream")
    streamed = ask(gw, stream=True)
    assert streamed.status_code == 200
    assert "from a" in streamed.text and streamed.text.rstrip().endswith("data: [DONE]")
    gw.stop()  # Save writes the flows as mitmdump ends
    flows = read_flows(saved)
    assert [f.request.url for f in flows] == [f"{fake.url}/v1/chat/completions"] * 2  # the provider call
    in_hook, relayed = flows
    # mitmproxy never connected for the whole answer: the gateway's own client fetched it.
    assert in_hook.server_conn.timestamp_start is None and in_hook.server_conn.peername is None
    # The stream reached mitmproxy through the relay, a loopback server that is not the provider.
    assert relayed.server_conn.peername is not None
    assert relayed.server_conn.peername[0] == "127.0.0.1" and relayed.server_conn.peername[1] != fake.port
    assert [r["body"]["stream"] for r in fake.requests] == [False, True]


@pytest.mark.parametrize("stream", [False, True])
def test_an_intercepted_flow_goes_upstream_as_edited_once_resumed(gateway, fake, stream: bool) -> None:
    fake.reset()
    edit = ["-s", str(ROOT / "tests" / "intercept_edit.py")]
    gw = gateway([chat_route(fake)], extra=edit)
    if stream:
        fake.cue("stream")
    started = time.monotonic()
    resp = ask(gw, stream)
    assert resp.status_code == 200, resp.text
    assert ("from a" in resp.text) and (resp.text.rstrip().endswith("[DONE]") is stream)
    assert time.monotonic() - started >= 0.3  # held while intercepted
    (sent,) = fake.requests
    assert sent["headers"]["x-edited"] == "after-resume"  # the edit made while it was held went out


def test_a_stream_answering_a_whole_request_is_passed_on_by_the_relay(gateway, fake) -> None:
    fake.reset()
    kept = route("keep", "/keep/*", "preserve", "openai", fake.url)
    gw = gateway([chat_route(fake), kept])
    fake.cue("stream")
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    # The client asked for one JSON answer; the provider streams anyway, and the relay passes it on.
    resp = httpx.post(f"{gw.url}/keep/v1/chat/completions", json=body, timeout=10)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.text.count("data: ") == 4 and '"from a"' in resp.text
    assert ask(gw).json()["choices"][0]["message"]["content"] == "hello from a"  # the next one is whole
    assert [r["path"] for r in fake.requests] == ["/v1/chat/completions"] * 2


async def test_the_in_hook_exchange_is_last_in_mitmproxys_chain_and_replaced_on_reload(
    tmp_path: Path,
) -> None:
    master = DumpMaster(options.Options(), loop=asyncio.get_running_loop())
    master.options.update(scripts=[str(ROOT / "addon" / "ai_proxy.py")], confdir=str(tmp_path))
    await asyncio.sleep(0.1)  # mitmproxy loads scripts from a task
    master.addons.trigger(RunningHook())

    def exchanges() -> list[object]:
        return [a for a in master.addons.chain if type(a).__name__ == "InHookExchange"]

    relay = master.addons.get("upstreamrelay")
    assert exchanges() == [relay.hook_exchange] and master.addons.chain[-1] is relay.hook_exchange
    (script,) = master.addons.get("scriptloader").addons
    script.loadscript()  # what mitmproxy does when the script file changes
    fresh = master.addons.get("upstreamrelay")
    assert fresh is not relay and relay.hook_exchange not in master.addons.chain
    assert exchanges() == [fresh.hook_exchange] and master.addons.chain[-1] is fresh.hook_exchange
    master.addons.trigger(DoneHook())
    assert exchanges() == []
