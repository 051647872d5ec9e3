"""Keeps configured secrets out of everything the gateway writes or answers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

REDACTED = "[REDACTED]"


def redact_text(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_bytes(data: bytes, secrets: tuple[str, ...]) -> bytes:
    for secret in secrets:
        raw = secret.encode()
        if raw in data:
            data = data.replace(raw, REDACTED.encode())
    return data


# Request headers and query parameters that carry a client's own credential.
_SECRET_HEADERS = ("authorization", "x-api-key", "api-key", "x-goog-api-key", "x-amz-security-token")
_SECRET_PARAMS = frozenset({"key", "api_key", "x-amz-signature", "x-amz-credential", "x-amz-security-token"})


def client_secrets(headers: Mapping[str, str], query: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """The credentials a client sent itself (API keys, bearer and GCP tokens, SigV4 parts), so that
    nothing written about a passed-through call can leak them."""
    found: list[str] = []
    for name in _SECRET_HEADERS:
        value = headers.get(name)
        if not value:
            continue
        found.append(value)
        scheme, _, rest = value.partition(" ")
        if rest:
            found.append(rest.strip())  # "Bearer <token>": the bare token too
        if scheme.startswith("AWS4-"):
            # SigV4: Credential=<key id>/<date>/..., Signature=<hex>
            for part in rest.split(","):
                key, _, val = part.strip().partition("=")
                if key in ("Credential", "Signature") and val:
                    found.append(val.split("/", 1)[0] if key == "Credential" else val)
    found.extend(value for name, value in query if name.lower() in _SECRET_PARAMS and value)
    # Longest first, so a whole header value is replaced before its parts.
    return tuple(sorted({s for s in found if len(s) >= 4}, key=len, reverse=True))
