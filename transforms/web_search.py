"""The chat form of a provider's own web search, shared by the transforms that map it.

A chat request asks for a web search with OpenAI's ``web_search_options``; a provider with a search
tool of its own (Anthropic's server web search, Gemini's Google Search grounding) maps it in its chat
transform. Its answer comes back as OpenAI's ``url_citation`` annotations on the message, and, for
ingress adapters only (CallContext.extensions), the searches themselves under WEB_SEARCH_KEY.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transforms.errors import bad_request
from transforms.types import WEB_SEARCH_REQUIRED

# The builtin_tools name (ProviderSpec) of a provider that maps web_search_options.
WEB_SEARCH = "web_search"
_LOCATION_FIELDS = ("city", "region", "country", "timezone")


def search_options(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The request's ``web_search_options``, or None when it asks for no search."""
    options = body.get("web_search_options")
    if options is None:
        return None
    if not isinstance(options, dict):
        raise bad_request("web_search_options: expected an object")
    return options


def required(options: Mapping[str, Any]) -> bool:
    """The client requires a search (an ingress adapter's mark; OpenAI's chat has no such field)."""
    return options.get(WEB_SEARCH_REQUIRED) is True


def user_location(options: Mapping[str, Any]) -> dict[str, str]:
    """``user_location.approximate`` (city, region, country, timezone), the fields given."""
    location = options.get("user_location")
    approximate = location.get("approximate") if isinstance(location, dict) else None
    if not isinstance(approximate, dict):
        return {}
    return {k: approximate[k] for k in _LOCATION_FIELDS if isinstance(approximate.get(k), str)}


def url_citation(url: str, title: Any, start: int, end: int) -> dict[str, Any]:
    """OpenAI's chat annotation; indices count characters of the message content."""
    citation = {
        "start_index": start,
        "end_index": end,
        "url": url,
        "title": title if isinstance(title, str) else "",
    }
    return {"type": "url_citation", "url_citation": citation}


def search_call(
    call_id: str, queries: list[str], sources: list[dict[str, str]], error: str | None = None
) -> dict[str, Any]:
    """One search the provider ran (WEB_SEARCH_KEY): its queries, the pages found, or its error."""
    return {"id": call_id, "queries": queries, "sources": sources, "error": error}


def source(url: Any, title: Any) -> dict[str, str] | None:
    if not isinstance(url, str) or not url:
        return None
    return {"url": url, "title": title if isinstance(title, str) else ""}


def char_index(data: bytes, byte_index: int) -> int:
    """A UTF-8 byte offset (Gemini's segments) as a character offset into the same text."""
    return len(data[: max(byte_index, 0)].decode("utf-8", "ignore"))


__all__ = [
    "WEB_SEARCH",
    "char_index",
    "required",
    "search_call",
    "search_options",
    "source",
    "url_citation",
    "user_location",
]
