"""Attaching the provider credential on the caller's behalf (Kong's auth block)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from transforms.config import Auth

# Headers through which clients and SDKs send LLM credentials.
CREDENTIAL_HEADERS = ("authorization", "x-api-key", "api-key", "x-goog-api-key")


def client_token(headers: Mapping[str, str]) -> str | None:
    """The bare credential a client sent, whichever header its SDK uses. An ``Authorization`` that
    is not a bearer token (an AWS SigV4 signature from boto3) is not a key: the other headers count."""
    for name in CREDENTIAL_HEADERS:
        value = headers.get(name)
        if value:
            if name != "authorization":
                return value
            scheme, _, rest = value.partition(" ")
            if scheme.lower() == "bearer" and rest.strip():
                return rest.strip()
    return None


@dataclass(slots=True)
class AuthResult:
    set_headers: dict[str, str] = field(default_factory=dict)
    remove_headers: list[str] = field(default_factory=list)
    query: dict[str, str] = field(default_factory=dict)
    body_params: dict[str, str] = field(default_factory=dict)


def _as_header_value(configured: str, token: str) -> str:
    # Keep the configured form ("Bearer <key>" or "<key>") for a client's own key.
    scheme, sep, _ = configured.partition(" ")
    return f"{scheme} {token}" if sep and scheme.lower() == "bearer" else token


def apply_auth(
    auth: Auth,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    body: Mapping[str, Any] | None,
    credentials: Mapping[str, str] | None = None,
) -> AuthResult:
    """Decide which credential goes upstream.

    With ``allow_override: false`` the configured credential replaces whatever the client sent, and
    no client credential is forwarded. With ``true`` a client's own credential wins, delivered the
    way the provider expects (an OpenAI SDK's ``Authorization: Bearer`` becomes ``x-api-key`` for
    Anthropic, for example).
    """
    result = AuthResult()
    configured = bool(
        auth.header_name or auth.param_name or auth.aws_access_key_id or auth.gcp_use_service_account
    )
    if not configured:
        return result  # nothing to attach: the client's own credentials go through untouched
    own = client_token(headers) if auth.allow_override else None
    keep = {auth.header_name.lower()} if auth.header_name else set()
    if auth.header_name and auth.header_value:
        name = auth.header_name.lower()
        if auth.allow_override and headers.get(name):
            pass  # the client sent exactly this header: keep it
        elif own:
            result.set_headers[name] = _as_header_value(auth.header_value, own)
        else:
            result.set_headers[name] = auth.header_value
    if auth.param_name and auth.param_value:
        client_value = None
        if auth.allow_override:
            source = query if auth.param_location == "query" else (body or {})
            client_value = source.get(auth.param_name) or own
        value = client_value if isinstance(client_value, str) and client_value else auth.param_value
        if auth.param_location == "query":
            result.query[auth.param_name] = value
        else:
            result.body_params[auth.param_name] = value
    token = (credentials or {}).get("gcp_access_token")
    if auth.gcp_use_service_account and token:
        result.set_headers["authorization"] = f"Bearer {token}"
        keep.add("authorization")
    result.remove_headers = [h for h in CREDENTIAL_HEADERS if h not in keep]
    return result
