"""The "LLM Conversation" content view: LLM traffic of every format as a conversation.

In mitmproxy, mitmweb and ``mitmdump --flow-detail 3``. On the request tab of a flow it shows the
whole exchange: what the client sent, what went to the provider, what came back and what the
client received, including a streamed answer mitmproxy did not store (the gateway's transcript).
The rendering is pure (``transforms/conversation.py``); this class only plugs it into mitmproxy.
"""

from __future__ import annotations

from mitmproxy import contentviews, http

from transforms.conversation import conversation
from transforms.multipart import is_text_type

_MARKERS = (
    b'"messages"',
    b'"choices"',
    b'"contents"',
    b'"candidates"',
    b'"content"',
    b'"output"',
    b'"prompt"',
    b'"input"',
    b'"inputs"',
    b'"message"',
    b'"generated_text"',
    b'"embeddings"',
    b'"inputText"',
)
_STREAMS = ("event-stream", "ndjson", "amazon.eventstream")


class LLMConversationContentview(contentviews.Contentview):
    name = "LLM Conversation"
    syntax_highlight = "yaml"

    def prettify(self, data: bytes, metadata: contentviews.Metadata) -> str:
        flow = metadata.flow
        ai = flow.metadata.get("ai_proxy") if flow is not None else None
        side = "request"
        request_line = ""
        response = None
        if isinstance(flow, http.HTTPFlow):
            side = "response" if metadata.http_message is flow.response else "request"
            request_line = f"{flow.request.method} {flow.request.pretty_url}"
            if flow.response is not None:
                resp = flow.response
                response = (
                    resp.status_code,
                    resp.get_content(strict=False),
                    resp.headers.get("content-type", ""),
                )
        lines = conversation(side, data, metadata.content_type or "", ai, request_line, response)
        if not lines:
            raise ValueError("not an LLM body")
        return "\n".join(lines)

    def render_priority(self, data: bytes, metadata: contentviews.Metadata) -> float:
        if not is_text_type(metadata.content_type or ""):
            return -1  # multipart uploads, audio, file contents: no conversation, never decoded
        flow = metadata.flow
        ai = flow.metadata.get("ai_proxy") if flow is not None else None
        gateway_flow = isinstance(ai, dict) and isinstance(flow, http.HTTPFlow)
        if gateway_flow and (metadata.http_message is flow.request or "provider_response" in ai):
            return 2  # the whole exchange, or the provider's answer beside the client's
        ctype = metadata.content_type or ""
        if data and any(kind in ctype for kind in _STREAMS):
            return 2
        if "json" in ctype and any(marker in data[:4096] for marker in _MARKERS):
            return 2  # above mitmproxy's JSON view (1)
        return -1
