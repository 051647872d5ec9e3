"""Which parts of a request are credentials, and what replaces them in what mitmproxy keeps.

mitmproxy stores every flow as it went on the wire: in mitmweb, the console, ``-w`` flow files and
for any addon that reads flows later. Once a request has gone upstream, the credentials the gateway
attached on the user's behalf are replaced there by a marker naming the route. The decisions live
here, as plain data; ``addon/flow_masking.py`` applies them to flows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson

from transforms.auth import CREDENTIAL_HEADERS, AuthResult
from transforms.multipart import is_text_type
from transforms.types import Inbound, Upstream

CLIENT_MARKER = "[ai-proxy: client credential]"
# Headers a signature adds that are credentials (x-amz-date and the body hash are not).
SIGNATURE_CREDENTIALS = ("authorization", "x-amz-security-token")
# Headers and query parameters through which clients send their own credentials.
CLIENT_HEADERS = (*CREDENTIAL_HEADERS, "x-amz-security-token")
CLIENT_QUERY = ("key", "api_key", "x-amz-credential", "x-amz-signature", "x-amz-security-token")
MARKER_PREFIX = "[ai-proxy: "
CLIENT_REQUEST_BODY_LIMIT = 64 * 1024  # bytes of the client's body kept with the flow


def route_marker(route_name: str) -> str:
    return f"[ai-proxy: {route_name} credential]"


@dataclass(frozen=True, slots=True)
class CredentialMask:
    """Names of the request parts that carry credentials, and the marker that replaces them.

    Names only: a mask is safe to keep in flow metadata and to save with the flow."""

    marker: str
    headers: tuple[str, ...] = ()  # lower-case header names
    query: tuple[str, ...] = ()  # query parameter names
    body: tuple[str, ...] = ()  # top-level JSON body fields

    def __bool__(self) -> bool:
        return bool(self.headers or self.query or self.body)

    def as_metadata(self, route: str | None) -> dict[str, Any]:
        return {
            "route": route,
            "headers": list(self.headers),
            "query": list(self.query),
            "body": list(self.body),
        }


NO_MASK = CredentialMask(CLIENT_MARKER)


def attached_credentials(route_name: str, auth: AuthResult, upstream: Upstream) -> CredentialMask:
    """What the gateway attached to ``upstream``: the auth block's header, query or body parameter
    (a configured key, a client's own key moved to where the provider wants it, a GCP access token)
    and a signature's credential headers (SigV4 ``Authorization``, ``x-amz-security-token``)."""
    headers = dict.fromkeys(auth.set_headers)
    headers.update(dict.fromkeys(h for h in SIGNATURE_CREDENTIALS if h in upstream.set_headers))
    if not (headers or auth.query or auth.body_params):
        return NO_MASK
    return CredentialMask(
        route_marker(route_name), tuple(headers), tuple(auth.query), tuple(auth.body_params)
    )


def client_credentials(header_names: Iterable[str], query_names: Iterable[str]) -> CredentialMask:
    """The credentials a client itself sent (its SDK's key header, a ``key=`` parameter, SigV4)."""
    headers = tuple(dict.fromkeys(n.lower() for n in header_names if n.lower() in CLIENT_HEADERS))
    query = tuple(dict.fromkeys(n for n in query_names if n.lower() in CLIENT_QUERY))
    return CredentialMask(CLIENT_MARKER, headers, query)


def mask_query(query: Sequence[tuple[str, str]], mask: CredentialMask) -> list[tuple[str, str]]:
    names = set(mask.query)
    return [(k, mask.marker if k in names else v) for k, v in query]


def mask_body(body: bytes, mask: CredentialMask) -> bytes:
    """The JSON body with the masked top-level fields replaced; other bodies are returned as is."""
    if not mask.body or not body:
        return body
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(parsed, dict) or not any(name in parsed for name in mask.body):
        return body
    for name in mask.body:
        if name in parsed:
            parsed[name] = mask.marker
    return orjson.dumps(parsed)


def has_marker(text: str) -> bool:
    return MARKER_PREFIX in text


def client_request(inbound: Inbound, limit: int = CLIENT_REQUEST_BODY_LIMIT) -> dict[str, Any]:
    """The request as the client sent it, for flow metadata: credentials masked, body bounded,
    plain JSON-able values only (flows are saved with ``-w`` and read back)."""
    mask = client_credentials(inbound.headers, (k for k, _ in inbound.query))
    masked_headers = set(mask.headers)
    query = mask_query(inbound.query, mask)
    body = inbound.body
    if not is_text_type(inbound.headers.get("content-type", "")):
        body = b""  # multipart and binary bodies are never decoded as text (body_size says how big)
    return {
        "method": inbound.method,
        "host": inbound.host,
        "path": inbound.path + (f"?{urlencode(query)}" if query else ""),
        "headers": [[k, mask.marker if k in masked_headers else v] for k, v in inbound.headers.items()],
        "body": body[:limit].decode("utf-8", "replace"),
        "body_size": len(inbound.body),
        "truncated": len(body) > limit,
    }


def replay_credentials(
    route_name: str, mask: Mapping[str, Any], attached: AuthResult, signs: bool
) -> tuple[dict[str, str], dict[str, str], dict[str, str]] | str:
    """What to put back where a replayed flow carries the route's markers, as (headers, query
    parameters, body fields), or why that cannot be done. ``attached`` is the route's auth applied
    anew (its configured keys, a fresh GCP token). On a route that ``signs`` (SigV4) the signature
    headers are left to a new signature over the final request."""
    headers: dict[str, str] = {}
    query: dict[str, str] = {}
    body: dict[str, str] = {}
    for name in mask.get("headers") or ():
        if signs and name in SIGNATURE_CREDENTIALS:
            continue
        if name not in attached.set_headers:
            return f"route {route_name} no longer attaches the {name} header"
        headers[name] = attached.set_headers[name]
    for name in mask.get("query") or ():
        if name not in attached.query:
            return f"route {route_name} no longer attaches the {name} query parameter"
        query[name] = attached.query[name]
    for name in mask.get("body") or ():
        if name not in attached.body_params:
            return f"route {route_name} no longer attaches the {name} body parameter"
        body[name] = attached.body_params[name]
    return headers, query, body


def set_body_fields(body: bytes, fields: Mapping[str, str]) -> bytes:
    """The JSON body with top-level ``fields`` set (a replay's body parameters put back)."""
    parsed = orjson.loads(body) if body else {}
    if not isinstance(parsed, dict):
        raise ValueError("the body is not a JSON object")
    parsed.update(fields)
    return orjson.dumps(parsed)
