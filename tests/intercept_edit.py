"""Test-only mitmproxy script: intercepts every flow in ``request`` (as mitmweb's intercept filter
does), then, 0.3 s later, edits it (``x-edited``) and resumes it: what the provider receives must be
the edited request."""

from __future__ import annotations

import asyncio

from mitmproxy import http

HOLD_SECONDS = 0.3


class InterceptEdit:
    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return
        flow.intercept()
        asyncio.get_running_loop().call_later(HOLD_SECONDS, self._resume, flow)

    @staticmethod
    def _resume(flow: http.HTTPFlow) -> None:
        flow.request.headers["x-edited"] = "after-resume"
        flow.resume()


addons = [InterceptEdit()]
