"""Recognised traffic no route matches, as the gateway handles it: claimed by an inspector
(addon/inspection.py registers one with the gateway's ``inspectors`` hook point), read on the side,
never changed, never failed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Protocol

from mitmproxy import http

from addon.flows import FlowState, ai_metadata, is_stream, stream_translator
from transforms.native import decoded
from transforms.pipeline import Prepared, translate_response
from transforms.transcript import assembled
from transforms.types import Usage

logger = logging.getLogger("ai_proxy")


class UnmatchedInspector(Protocol):
    """What the gateway asks about flows no configured route matches (addon/inspection.py)."""

    def claim(self, flow: http.HTTPFlow) -> Prepared | None:
        """The flow's accounting (``inspected`` set) if it calls a known LLM API; the flow is not changed."""
        ...

    def passes(self, flow: http.HTTPFlow) -> bool:
        """True when the flow goes to a known provider: passed on even where unmatched flows are rejected."""
        ...


def claim_unmatched(inspectors: Sequence[UnmatchedInspector], flow: http.HTTPFlow) -> FlowState | None:
    """The state of a flow no route matches that an inspector claims (the first to claim it), or None."""
    for inspector in inspectors:
        try:
            prep = inspector.claim(flow)
        except Exception:  # inspection must never cost a client its call: pass the flow on
            logger.exception("ai_proxy: internal error while recognising an unmatched flow")
            continue
        if prep is not None:
            return FlowState(prep.route, prep, sent_at=time.time())
    return None


def observe_inspected(flow: http.HTTPFlow, state: FlowState) -> None:
    """At the answer's headers: a stream is read on the side as its bytes pass on unchanged."""
    prep, resp = state.prep, flow.response
    assert prep is not None and resp is not None
    if not (prep.stream or is_stream(resp)) or not 200 <= resp.status_code < 300:
        if not resp.stream and is_stream(resp):
            resp.stream = True
        return
    try:
        translator = decoded(stream_translator(prep), resp.headers.get("content-encoding", ""))
    except Exception as e:
        state.error = f"cannot read the provider's stream: {e}"
        resp.stream = True  # passed on unread; recorded without usage
        return
    state.translator = translator

    def observe(data: bytes) -> list[bytes] | bytes:
        if state.first_token_at is None and data:
            state.first_token_at = time.time()
        if state.error is None:
            try:
                translator.feed(data) if data else translator.finish()
            except Exception as e:
                state.error = f"cannot read the provider's stream: {type(e).__name__}"
        return data  # the client gets the provider's bytes, as they arrive

    resp.stream = observe


def read_inspected(flow: http.HTTPFlow, state: FlowState) -> tuple[Usage | None, str | None]:
    """At the end of the answer: its usage and model, for the statistics record; a failure to read
    them is noted in ``state.error``, never raised."""
    prep, resp = state.prep, flow.response
    assert prep is not None and resp is not None
    try:
        if state.translator is not None:
            usage = state.translator.usage
            model = state.translator.response_model
            state.error = state.error or getattr(state.translator, "error", None)
            transcript = assembled(state.translator, usage)
            if transcript is not None:  # the view shows it: mitmproxy keeps no streamed body
                ai_metadata(flow)["assembled"] = transcript
        elif state.error is not None:
            usage, model = None, None
        else:
            headers = {k.lower(): v for k, v in resp.headers.items()}
            raw = resp.get_content(strict=False) or b""
            state.upstream_body = raw
            answer = translate_response(prep, resp.status_code, raw, headers)
            usage, model = answer.usage, answer.response_model
            state.error = state.error or answer.error
    except Exception as e:
        usage, model = None, None
        state.error = f"cannot read the provider's answer: {type(e).__name__}"
    return usage, model
