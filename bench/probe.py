"""Single requests at c=1: the correctness check before measuring, and the first-chunk probes.

A probe times one request on a warm keep-alive connection: when the first body bytes of the answer
arrived (for streams: the first chunk), when it ended, and the addon's own ``x-ai-proxy-overhead-ms``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import orjson

from bench.httpclient import Connection, Reply, build_request
from bench.payloads import ANSWER
from bench.targets import Target, variant

OVERHEAD_HEADER = "x-ai-proxy-overhead-ms"


@dataclass(frozen=True, slots=True)
class ProbeSample:
    first_chunk_ms: float
    latency_ms: float
    overhead_ms: float | None  # what the addon says it spent (addon targets only)


def raw_request(target: Target, stream: bool, body: bytes, name: str | None = None) -> bytes:
    name = name or variant(stream)
    return build_request("127.0.0.1", target.port, target.paths[name], target.headers[name], body)


def fetch_big(target: Target, body: bytes, timeout: float) -> Reply:
    """The very long stream, counted but not kept."""

    async def fetch() -> Reply:
        conn = Connection("127.0.0.1", target.port)
        try:
            raw = raw_request(target, True, body, "big")
            return await asyncio.wait_for(conn.exchange(raw, keep_body=False), timeout)
        finally:
            conn.close()

    return asyncio.run(fetch())


def answer_problem(reply: Reply, stream: bool) -> str | None:
    """Why a reply is not the expected OpenAI answer, or None when it is."""
    if reply.status != 200:
        return f"HTTP {reply.status}: {reply.body[:300]!r}"
    try:
        text = _streamed_text(reply.body) if stream else _json_text(reply.body)
    except (ValueError, KeyError, IndexError, TypeError) as e:
        return f"not an OpenAI {'stream' if stream else 'response'} ({e!r}): {reply.body[:300]!r}"
    if text != ANSWER:
        return f"content differs from the upstream's answer: {text[:120]!r}"
    return None


def _json_text(body: bytes) -> str:
    return orjson.loads(body)["choices"][0]["message"]["content"]


def _streamed_text(body: bytes) -> str:
    events = [line[5:].strip() for line in body.split(b"\n") if line.startswith(b"data:")]
    if not events or events[-1] != b"[DONE]":
        raise ValueError("the stream does not end with data: [DONE]")
    pieces = []
    for data in events[:-1]:
        for choice in orjson.loads(data).get("choices") or []:
            pieces.append(choice.get("delta", {}).get("content") or "")
    return "".join(pieces)


def verify(target: Target, requests: dict[tuple[str, bool], bytes]) -> dict[str, str]:
    """One request per (body, stream mode); the first problem per mode ("json", "stream"), if any."""
    return asyncio.run(_verify(target, requests))


async def _verify(target: Target, requests: dict[tuple[str, bool], bytes]) -> dict[str, str]:
    problems: dict[str, str] = {}
    conn = Connection("127.0.0.1", target.port)
    try:
        for (body_name, stream), body in requests.items():
            mode = variant(stream)
            if mode in problems:
                continue
            try:
                reply = await asyncio.wait_for(conn.exchange(raw_request(target, stream, body)), 30)
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as e:
                problems[mode] = f"{body_name} {mode}: no answer ({e!r})"
                conn.close()
                continue
            problem = answer_problem(reply, stream)
            if problem:
                problems[mode] = f"{body_name} {mode}: {problem}"
    finally:
        conn.close()
    return problems


def probe_round(
    targets: list[Target], requests: dict[tuple[str, bool], bytes], count: int
) -> dict[tuple[str, str, bool], list[ProbeSample]]:
    """``count`` probes per (target, body, stream), interleaved request by request across targets."""
    return asyncio.run(_probe_round(targets, requests, count))


async def _probe_round(
    targets: list[Target], requests: dict[tuple[str, bool], bytes], count: int
) -> dict[tuple[str, str, bool], list[ProbeSample]]:
    conns = {t.name: Connection("127.0.0.1", t.port) for t in targets}
    samples: dict[tuple[str, str, bool], list[ProbeSample]] = {}
    try:
        for _ in range(count):
            for target in targets:
                for (body_name, stream), body in requests.items():
                    sample = await _probe(conns[target.name], raw_request(target, stream, body))
                    if sample is not None:
                        samples.setdefault((target.name, body_name, stream), []).append(sample)
    finally:
        for conn in conns.values():
            conn.close()
    return samples


async def _probe(conn: Connection, raw: bytes) -> ProbeSample | None:
    try:
        reply = await asyncio.wait_for(conn.exchange(raw), 30)
    except (OSError, asyncio.IncompleteReadError, TimeoutError):
        conn.close()
        return None
    if reply.status != 200:
        return None
    overhead = reply.headers.get(OVERHEAD_HEADER)
    return ProbeSample(reply.first_chunk_ms, reply.latency_ms, float(overhead) if overhead else None)
