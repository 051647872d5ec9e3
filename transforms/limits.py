"""Every fixed bound on the work and memory one request or one response stream may cost.

mitmproxy runs every hook on one event loop: a step whose work grows faster than its input stalls
every client of the gateway. What cannot be made linear in the input is bounded here, in one
place, and refused past the bound with a clear error (a 400 for requests, an error frame for
streams). The README's "Limits on work and memory" section lists each bound and where it is enforced.
"""

from __future__ import annotations

from transforms.errors import GatewayError

# --- request: JSON Schema rewriting (Gemini / Vertex inline local $refs) -------------------------

# Nodes one converted schema (a tool's parameters, a response_format schema) may hold, counted as
# they are built, with every $ref target counted each time it is inlined. Real tool schemas hold
# tens to hundreds; a schema whose $refs double at each level reaches any number.
MAX_SCHEMA_NODES = 10_000
# Nesting levels of one converted schema, counting every step: properties, items, anyOf branches,
# allOf and $ref hops (a pydantic model nested in another takes about four).
MAX_SCHEMA_DEPTH = 100
# JSON bytes of $ref targets inlined across all schemas of one request (each inlining counted):
# bounds the size of the rewritten body, and the work, when many tools each expand a little.
MAX_SCHEMA_INLINED_BYTES = 1024 * 1024

# --- response streams ----------------------------------------------------------------------------

# One stream element before its delimiter arrives: an SSE line or event, an NDJSON line, a
# JSON-array element, an AWS event-stream frame (botocore itself allows 24 MiB payloads).
MAX_STREAM_EVENT_BYTES = 16 * 1024 * 1024
# Argument characters of one streamed tool call.
MAX_TOOL_ARGUMENTS_CHARS = 8 * 1024 * 1024
# Tool calls in one streamed answer (each keeps a little state until the stream ends).
MAX_STREAM_TOOL_CALLS = 4096
# Characters of one streamed thinking block, kept whole until its signature arrives so that it can
# ride in the next tool call's id (thinking budgets stop far below).
MAX_CARRIED_THINKING_CHARS = 4 * 1024 * 1024
# Input JSON characters of one streamed server web search (its query), and the characters of a
# grounded stream's text kept to place the provider's citations (Gemini counts them in bytes).
MAX_SEARCH_INPUT_CHARS = 64 * 1024
MAX_GROUNDED_TEXT_CHARS = 4 * 1024 * 1024

# --- what the gateway shows of client- or upstream-chosen names ---------------------------------

# Characters of a model name in the event-log statistics line and the X-AI-Proxy-Model header (the
# JSON statistics record keeps it whole).
MAX_SHOWN_MODEL_CHARS = 200
# Characters of a stream's error message kept in its statistics record (an upstream writes it).
MAX_RECORDED_ERROR_CHARS = 1000


class SchemaTooLarge(GatewayError):
    """A schema over its node, depth or inlining budget: the client's 400."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message, "schema_too_large")


class StreamLimitExceeded(ValueError):
    """An upstream stream element or tool call past its cap; the translator ends the stream with an
    error frame."""

    code = "stream_limit_exceeded"


def element_too_large(what: str) -> StreamLimitExceeded:
    return StreamLimitExceeded(
        f"the upstream sent {what} over the gateway's limit of {MAX_STREAM_EVENT_BYTES} bytes"
    )


def header_value(text: str) -> str:
    """Client- or upstream-chosen text for a response header: clipped, and every control character
    (a CR LF would end the header and start another) replaced by '?'."""
    clipped = text[:MAX_SHOWN_MODEL_CHARS]
    return clipped if clipped.isprintable() else "".join(c if c.isprintable() else "?" for c in clipped)


# Client addresses access control remembers as loopback or not (parsing one costs per request);
# forgotten all at once when full.
MAX_REMEMBERED_PEERS = 4096
