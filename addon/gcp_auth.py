"""Google Cloud access tokens for Vertex AI routes, minted from a service-account key.

The OAuth 2.0 JWT-bearer grant (RFC 7523), as Google's service-account keys use it: an RS256 JWT
asserting the account (``iss`` = client_email, ``scope`` = cloud-platform, ``aud`` = the key's
token_uri, ``iat``, ``exp`` = iat + 1 h) is POSTed to the key's ``token_uri``, which answers with
an access token. Tokens are cached per service account until five minutes before they expire.
Minting runs in a worker thread, never on mitmproxy's event loop, one mint at a time per account.

Signing uses google-auth (the optional ``gcp`` extra), imported only when a route needs a token.
Failures become a 502 whose message names the cause and never a secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

from transforms.errors import GatewayError

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
ASSERTION_LIFETIME = 3600  # seconds; Google accepts at most one hour
REFRESH_MARGIN = 300  # a cached token is replaced this long before it expires
TIMEOUT = 10.0  # seconds for the token endpoint to answer
_REASON_LIMIT = 300

# (url, form body, timeout) -> (HTTP status, response body); replaced in tests.
Poster = Callable[[str, bytes, float], tuple[int, bytes]]


class TokenError(Exception):
    """Why no token could be had, in words that are safe to show (no key, no token)."""


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    client_email: str
    private_key: str = field(repr=False)
    private_key_id: str | None
    token_uri: str

    @classmethod
    def parse(cls, text: str) -> ServiceAccount:
        try:
            info = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise TokenError("the service account key is not valid JSON") from None
        if not isinstance(info, dict):
            raise TokenError("the service account key is not a JSON object")
        missing = [
            k for k in ("client_email", "private_key") if not isinstance(info.get(k), str) or not info[k]
        ]
        if missing:
            raise TokenError(f"the service account key has no {' or '.join(missing)}")
        token_uri = info.get("token_uri") or DEFAULT_TOKEN_URI
        if not isinstance(token_uri, str) or urlsplit(token_uri).scheme not in ("https", "http"):
            raise TokenError("the service account key's token_uri is not an http(s) URL")
        key_id = info.get("private_key_id")
        return cls(
            info["client_email"], info["private_key"], key_id if isinstance(key_id, str) else None, token_uri
        )


@dataclass(slots=True)
class CachedToken:
    value: str = field(repr=False)
    expires_at: float


def _google_auth() -> tuple[Any, Any]:
    """google-auth's ``crypt`` and ``jwt`` modules, imported only when a token is needed."""
    try:
        from google.auth import crypt, jwt
    except ImportError:
        raise TokenError("google-auth is not installed: install the gcp extra (pip install .[gcp])") from None
    return crypt, jwt


def signed_assertion(account: ServiceAccount, now: int) -> str:
    """The RS256 JWT that asserts the service account to its token endpoint."""
    crypt, jwt = _google_auth()
    try:
        signer = crypt.RSASigner.from_service_account_info(
            {"private_key": account.private_key, "private_key_id": account.private_key_id}
        )
    except Exception:  # the parser's message may quote the key: say only what is wrong
        raise TokenError("the service account's private_key is not a PEM RSA private key") from None
    claims = {
        "iss": account.client_email,
        "scope": SCOPE,
        "aud": account.token_uri,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME,
    }
    return jwt.encode(signer, claims).decode()


def post_form(url: str, body: bytes, timeout: float) -> tuple[int, bytes]:
    """POST a form; an HTTP error status is an answer too (its body says why)."""
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _REASON_LIMIT else text[:_REASON_LIMIT] + "..."


def _refusal(status: int, body: bytes) -> TokenError:
    """The token endpoint's own reason (``{"error": ..., "error_description": ...}``)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    words = []
    if isinstance(parsed, dict):
        words = [parsed[k] for k in ("error", "error_description") if isinstance(parsed.get(k), str)]
    detail = f": {_short(': '.join(words))}" if words else ""
    return TokenError(f"the token endpoint answered HTTP {status}{detail}")


def mint(account: ServiceAccount, now: float, post: Poster = post_form) -> CachedToken:
    """One JWT-bearer grant: a fresh access token and when it expires."""
    form = urlencode({"grant_type": GRANT_TYPE, "assertion": signed_assertion(account, int(now))}).encode()
    try:
        status, body = post(account.token_uri, form, TIMEOUT)
    except (OSError, ValueError) as e:  # URLError, timeouts, refused connections
        reason = getattr(e, "reason", None) or e
        raise TokenError(
            f"cannot reach the token endpoint {account.token_uri}: {_short(str(reason))}"
        ) from None
    if status != 200:
        raise _refusal(status, body)
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        answer = None
    token = answer.get("access_token") if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token:
        raise TokenError("the token endpoint's answer has no access_token")
    lifetime = answer.get("expires_in")
    if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
        lifetime = ASSERTION_LIFETIME
    return CachedToken(token, now + lifetime)


class GcpTokenSource:
    """Access tokens per service account, cached, minted off the event loop one at a time."""

    def __init__(self, clock: Callable[[], float] = time.time, post: Poster = post_form) -> None:
        self._clock = clock
        self._post = post
        self._tokens: dict[str, CachedToken] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.mints = 0  # how many tokens were minted (statistics and tests)

    async def token(self, service_account_json: str | None) -> str:
        """A valid access token for the account, or a 502 GatewayError saying why not."""
        if not service_account_json:
            raise _failure(
                TokenError(
                    "no service account key (set auth.gcp_service_account_json or GCP_SERVICE_ACCOUNT)"
                )
            )
        key = hashlib.sha256(service_account_json.encode()).hexdigest()
        fresh = self._fresh(key)
        if fresh is not None:
            return fresh
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            fresh = self._fresh(key)  # another request may have minted while this one waited
            if fresh is not None:
                return fresh
            try:
                token = await asyncio.to_thread(self._mint, service_account_json)
            except TokenError as e:
                raise _failure(e) from None
            except Exception as e:  # whatever else broke, the message must not quote key material
                raise _failure(TokenError(f"unexpected {type(e).__name__} while minting")) from None
            self._tokens[key] = token
            return token.value

    def _fresh(self, key: str) -> str | None:
        cached = self._tokens.get(key)
        if cached is not None and self._clock() < cached.expires_at - REFRESH_MARGIN:
            return cached.value
        return None

    def _mint(self, service_account_json: str) -> CachedToken:
        account = ServiceAccount.parse(service_account_json)
        self.mints += 1
        return mint(account, self._clock(), self._post)

    def clear(self) -> None:
        self._tokens.clear()
        self._locks.clear()


def _failure(error: TokenError) -> GatewayError:
    return GatewayError(502, f"could not obtain a Google Cloud access token: {error}", "gcp_auth_failed")
