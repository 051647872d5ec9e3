"""Usage statistics: one record per LLM call, in Kong's layout, to the event log and a JSONL file."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import orjson
from mitmproxy.log import ALERT, LegacyLogEvents

from transforms.limits import MAX_RECORDED_ERROR_CHARS, MAX_SHOWN_MODEL_CHARS
from transforms.redact import redact_bytes, redact_text
from transforms.types import Usage
from transforms.usage import cost

logger = logging.getLogger("ai_proxy")

MAX_PAYLOAD = 1 << 20  # payload logs keep at most 1 MiB per side
# flow.metadata key under which access control names the gateway key a flow was admitted with.
CONSUMER_METADATA = "ai_proxy_consumer"
# flow.metadata key under which the prompt plugins list the ones that acted on a flow (meta.plugins).
PLUGINS_METADATA = "ai_proxy_plugins"
# flow.metadata key of the client's body before templating (prompt_template.log_original_request).
ORIGINAL_REQUEST_METADATA = "ai_proxy_original_request"


@dataclass(slots=True)
class CallFacts:
    """What the glue observed about one call, in plain values."""

    route: Any  # transforms.config.Route
    request_model: str
    response_model: str | None
    usage: Usage | None
    llm_latency_ms: int
    stream: bool
    status: int
    time_to_first_token_ms: int | None = None
    request_payload: bytes | None = None
    response_payload: bytes | None = None
    secrets: tuple[str, ...] = ()
    consumer: str | None = None  # the gateway key's name, never the key
    error: str | None = None  # why the call could not be served or accounted for fully
    replayed: bool = False  # answered from a cassette
    plugins: tuple[str, ...] = ()  # the AI plugins that acted on the call, in order
    original_request: str | None = None  # the client's body before the prompt template, when asked
    request_mode: str | None = None  # instead of oneshot/stream (realtime sessions)
    extra_meta: dict[str, Any] | None = None  # more facts for meta (a realtime record's event)
    target: dict[str, Any] | None = None  # routes with targets or a balancer: the target that answered
    retries: int = 0
    fallbacks: int = 0


def build_record(facts: CallFacts) -> dict[str, Any]:
    route = facts.route
    usage = facts.usage or Usage()
    meta: dict[str, Any] = {
        "route": route.name,
        "provider_name": route.provider,
        "request_model": facts.request_model,
        "response_model": facts.response_model or facts.request_model,
        "llm_latency": facts.llm_latency_ms,
        "request_mode": facts.request_mode or ("stream" if facts.stream else "oneshot"),
        "status": facts.status,
    }
    if facts.consumer is not None:
        meta["consumer"] = facts.consumer
    if facts.plugins:
        meta["plugins"] = list(facts.plugins)
    if facts.error:
        meta["error"] = redact_text(facts.error, facts.secrets)[:MAX_RECORDED_ERROR_CHARS]
    if facts.replayed:
        meta["replayed"] = True
    if facts.extra_meta:
        meta.update(facts.extra_meta)
    if facts.target is not None:
        meta["target"] = facts.target
        meta["retries"] = facts.retries
        meta["fallbacks"] = facts.fallbacks
    opts = route.model.options
    if route.provider == "azure":
        meta["azure_instance_id"] = opts.azure_instance
        meta["azure_deployment_id"] = opts.azure_deployment_id
        meta["azure_api_version"] = opts.azure_api_version
    usage_out: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "time_per_token": (facts.llm_latency_ms / usage.completion_tokens if usage.completion_tokens else 0),
        "cost": cost(usage, opts),
    }
    prompt_details = {
        "cached_tokens": usage.cached_tokens,
        "text_tokens": usage.prompt_text_tokens,
        "audio_tokens": usage.prompt_audio_tokens,
    }
    completion_details = {
        "reasoning_tokens": usage.reasoning_tokens,
        "text_tokens": usage.completion_text_tokens,
        "audio_tokens": usage.completion_audio_tokens,
    }
    if any(prompt_details.values()):
        usage_out["prompt_tokens_details"] = {k: v for k, v in prompt_details.items() if v}
    if any(completion_details.values()):
        usage_out["completion_tokens_details"] = {k: v for k, v in completion_details.items() if v}
    if usage.search_units:
        usage_out["search_units"] = usage.search_units
    if usage.estimated:
        usage_out["estimated"] = True
    if facts.time_to_first_token_ms is not None:
        usage_out["time_to_first_token"] = facts.time_to_first_token_ms
    proxy: dict[str, Any] = {"meta": meta, "usage": usage_out}
    if route.logging.log_payloads:
        proxy["payload"] = {
            "request": _payload(facts.request_payload, facts.secrets),
            "response": _payload(facts.response_payload, facts.secrets),
        }
    if facts.original_request is not None:
        original = _payload(facts.original_request.encode(), facts.secrets)
        proxy.setdefault("payload", {})["original_request"] = original
    return {"ai": {"proxy": proxy}}


def _payload(data: bytes | None, secrets: tuple[str, ...]) -> str | None:
    if data is None:
        return None
    return redact_bytes(data[:MAX_PAYLOAD], secrets).decode("utf-8", "replace")


def summary_line(record: dict[str, Any]) -> str:
    proxy = record["ai"]["proxy"]
    meta, usage = proxy["meta"], proxy["usage"]
    models = _loggable(meta["request_model"])
    if meta["response_model"] != meta["request_model"]:
        models += f" -> {_loggable(meta['response_model'])}"
    estimated = " (estimated)" if usage.get("estimated") else ""
    consumer = f" consumer={meta['consumer']}" if "consumer" in meta else ""
    error = f" error={_loggable(meta['error'])}" if "error" in meta else ""
    return (
        f"ai_proxy route={meta['route']}{consumer} provider={meta['provider_name']} model={models} "
        f"status={meta['status']} mode={meta['request_mode']} "
        f"tokens={usage['prompt_tokens']}+{usage['completion_tokens']}={usage['total_tokens']}{estimated} "
        f"cost=${usage['cost']:.6f} latency={meta['llm_latency']}ms{error}"
    )


def line_is_heard(log: logging.Logger, add_log_hooks: bool) -> bool:
    """Whether an ALERT record of ``log`` reaches a handler that shows or keeps it: mitmdump's
    terminal (unless ``-q`` or a higher ``termlog_verbosity``), mitmweb's and the console's event log,
    any handler a script or test added. mitmproxy's bridge to the deprecated ``add_log`` hook counts
    only when some addon defines ``add_log``: otherwise it dispatches the record to every addon for
    nothing (a hook call per addon per LLM call)."""
    if not log.isEnabledFor(ALERT):
        return False
    current: logging.Logger | None = log
    while current is not None:
        for handler in current.handlers:
            if handler.level <= ALERT and (add_log_hooks or not isinstance(handler, LegacyLogEvents)):
                return True
        current = current.parent if current.propagate else None
    return False


def _loggable(text: str) -> str:
    """Client- or upstream-chosen text in the one-line summary: clipped, and quoted when it holds
    spaces or control characters, so it can neither flood the log nor forge another line."""
    clipped = text[:MAX_SHOWN_MODEL_CHARS] + ("…" if len(text) > MAX_SHOWN_MODEL_CHARS else "")
    return clipped if clipped.isprintable() and " " not in clipped else repr(clipped)


class StatsSink:
    """Writes records; the file is opened once per option change and closed on shutdown/reload."""

    def __init__(self) -> None:
        self._file: IO[bytes] | None = None
        self.path: str | None = None
        self._subscribers: list[Callable[[dict[str, Any]], None]] = []
        # Some addon defines the deprecated add_log hook (the gateway sets this when mitmproxy runs).
        self.add_log_hooks = True

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call ``callback(record)`` for every record emitted (per-key limits, usage summaries)."""
        self._subscribers.append(callback)

    def open(self, path: str | None) -> None:
        self.close()
        self.path = path
        if path:
            # Unbuffered append: each record is one write(2), so lines never interleave or tear.
            self._file = open(path, "ab", buffering=0)  # noqa: SIM115

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def emit(self, record: dict[str, Any], counted: bool = True) -> None:
        """``counted=False``: a record that repeats what earlier records counted (a realtime
        session's totals) is written and logged, but not handed to subscribers (limits, summary)."""
        # The line costs a log record, and mitmproxy a hook dispatch to every addon: only when heard.
        if line_is_heard(logger, self.add_log_hooks):
            logger.log(ALERT, summary_line(record))
        # Subscribers before the file: once a record is on disk, every subscriber has seen it.
        for callback in self._subscribers if counted else ():
            try:
                callback(record)
            except Exception:
                logger.exception("ai_proxy: a statistics subscriber failed")
        if self._file is not None:
            self._file.write(orjson.dumps(record) + b"\n")
