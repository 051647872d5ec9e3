"""Google Cloud service-account tokens (addon/gcp_auth.py) against a local OAuth2 token endpoint.

The endpoint is a real HTTP server in this process: it checks the JWT-bearer grant exactly as
Google's does in substance (RS256 signature against the service account's public key, key id,
issuer, scope, audience, one-hour lifetime) and answers with a token, or with a scripted error.
The RSA key pair is generated for the test run; nothing here is a real credential.
"""

from __future__ import annotations

import asyncio
import base64
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import orjson
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from addon import gcp_auth
from addon.gateway import AIProxy
from addon.gcp_auth import GcpTokenSource
from transforms.config import Route
from transforms.errors import GatewayError

NOW = 1767225600.0


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


class TokenEndpoint:
    """A local OAuth2 token endpoint for the JWT-bearer grant of known service accounts."""

    def __init__(self) -> None:
        self.accounts: dict[str, tuple[rsa.RSAPublicKey, str]] = {}  # email -> (public key, key id)
        self.grants: list[dict[str, Any]] = []  # verified JWT claims, one per token issued
        self.scripted: list[tuple[int, bytes]] = []
        self.delay = 0.0
        self.issued = 0
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/token"

    def register(self, email: str, key: rsa.RSAPrivateKey, key_id: str) -> str:
        """A service-account key file (JSON) whose token_uri is this endpoint."""
        self.accounts[email] = (key.public_key(), key_id)
        return orjson.dumps(
            {
                "type": "service_account",
                "project_id": "my-project",
                "private_key_id": key_id,
                "private_key": pem(key),
                "client_email": email,
                "client_id": "104729318472914738291",
                "token_uri": self.url,
            }
        ).decode()

    def script(self, status: int, body: dict[str, Any]) -> None:
        self.scripted.append((status, orjson.dumps(body)))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, form: dict[str, list[str]]) -> tuple[int, bytes]:
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            if self.scripted:
                return self.scripted.pop(0)
        if form.get("grant_type") != [gcp_auth.GRANT_TYPE] or len(form.get("assertion", ())) != 1:
            return 400, b'{"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}'
        claims = self.verify(form["assertion"][0])
        if claims is None:
            return 400, b'{"error": "invalid_grant", "error_description": "Invalid JWT Signature."}'
        with self._lock:
            self.grants.append(claims)
            self.issued += 1
            token = f"ya29.c.test-token-{self.issued}"
        return 200, orjson.dumps({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def verify(self, assertion: str) -> dict[str, Any] | None:
        header_b64, claims_b64, signature_b64 = assertion.split(".")
        header, claims = orjson.loads(_b64url(header_b64)), orjson.loads(_b64url(claims_b64))
        known = self.accounts.get(claims.get("iss"))
        if known is None or header != {"typ": "JWT", "alg": "RS256", "kid": known[1]}:
            return None
        try:
            known[0].verify(
                _b64url(signature_b64),
                f"{header_b64}.{claims_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            return None
        good = (
            claims.get("scope") == "https://www.googleapis.com/auth/cloud-platform"
            and claims.get("aud") == self.url
            and claims.get("exp") == claims.get("iat", 0) + 3600
        )
        return claims if good else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                ok_type = self.headers.get("content-type") == "application/x-www-form-urlencoded"
                status, answer = endpoint.answer(parse_qs(body.decode()) if ok_type else {})
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        return Handler


@pytest.fixture(scope="module")
def keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    return new_key(), new_key()


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    server = TokenEndpoint()
    yield server
    server.stop()


@pytest.fixture
def account(endpoint: TokenEndpoint, keys: Any) -> str:
    return endpoint.register("gateway@my-project.iam.gserviceaccount.com", keys[0], "a1b2c3d4e5f6")


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_mints_a_token_with_a_verified_jwt(endpoint: TokenEndpoint, account: str) -> None:
    source = GcpTokenSource(clock=Clock())
    assert await source.token(account) == "ya29.c.test-token-1"
    assert endpoint.grants == [
        {
            "iss": "gateway@my-project.iam.gserviceaccount.com",
            "scope": "https://www.googleapis.com/auth/cloud-platform",
            "aud": endpoint.url,
            "iat": int(NOW),
            "exp": int(NOW) + 3600,
        }
    ]


async def test_token_is_cached_until_five_minutes_before_expiry(
    endpoint: TokenEndpoint, account: str
) -> None:
    clock = Clock()
    source = GcpTokenSource(clock=clock)
    assert await source.token(account) == "ya29.c.test-token-1"
    clock.now = NOW + 3599 - 301  # still more than five minutes left
    assert await source.token(account) == "ya29.c.test-token-1"
    assert endpoint.issued == 1
    clock.now = NOW + 3599 - 300  # five minutes left: replaced
    assert await source.token(account) == "ya29.c.test-token-2"
    assert endpoint.issued == 2
    assert endpoint.grants[1]["iat"] == int(NOW) + 3299


async def test_concurrent_requests_mint_once(endpoint: TokenEndpoint, account: str) -> None:
    endpoint.delay = 0.2
    source = GcpTokenSource(clock=Clock())
    tokens = await asyncio.gather(*(source.token(account) for _ in range(8)))
    assert tokens == ["ya29.c.test-token-1"] * 8
    assert endpoint.issued == 1 and source.mints == 1


async def test_minting_does_not_block_the_event_loop(endpoint: TokenEndpoint, account: str) -> None:
    endpoint.delay = 0.5
    source = GcpTokenSource(clock=Clock())
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        for _ in range(10):
            await asyncio.sleep(0.02)
            ticks += 1

    await asyncio.gather(source.token(account), tick())
    assert ticks == 10  # the loop kept running while the token endpoint took half a second


async def test_each_service_account_has_its_own_token(
    endpoint: TokenEndpoint, account: str, keys: Any
) -> None:
    other = endpoint.register("batch@my-project.iam.gserviceaccount.com", keys[1], "f6e5d4c3b2a1")
    source = GcpTokenSource(clock=Clock())
    first, second = await source.token(account), await source.token(other)
    assert (first, second) == ("ya29.c.test-token-1", "ya29.c.test-token-2")
    assert await source.token(account) == first and await source.token(other) == second
    assert [g["iss"] for g in endpoint.grants] == [
        "gateway@my-project.iam.gserviceaccount.com",
        "batch@my-project.iam.gserviceaccount.com",
    ]


async def test_the_endpoint_really_checks_the_signature(endpoint: TokenEndpoint, keys: Any) -> None:
    # A key file whose private key is not the one the account is registered with.
    good = orjson.loads(endpoint.register("gateway@my-project.iam.gserviceaccount.com", keys[0], "k1"))
    forged = orjson.dumps({**good, "private_key": pem(keys[1])}).decode()
    with pytest.raises(GatewayError) as err:
        await GcpTokenSource(clock=Clock()).token(forged)
    assert err.value.status == 502
    assert err.value.code == "gcp_auth_failed"
    assert err.value.message == (
        "could not obtain a Google Cloud access token: "
        "the token endpoint answered HTTP 400: invalid_grant: Invalid JWT Signature."
    )
    assert endpoint.issued == 0


def _key_file(account: str, **changes: Any) -> str:
    info = orjson.loads(account)
    info.update(changes)
    return orjson.dumps({k: v for k, v in info.items() if v is not None}).decode()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda a: None, "no service account key (set auth.gcp_service_account_json or GCP_SERVICE_ACCOUNT)"),
        (lambda a: "", "no service account key (set auth.gcp_service_account_json or GCP_SERVICE_ACCOUNT)"),
        (lambda a: a[:40], "the service account key is not valid JSON"),
        (lambda a: "[1, 2]", "the service account key is not a JSON object"),
        (lambda a: _key_file(a, private_key=None), "the service account key has no private_key"),
        (
            lambda a: _key_file(a, client_email="", private_key=None),
            "the service account key has no client_email or private_key",
        ),
        (
            lambda a: _key_file(
                a, private_key="-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWJ5dGVz\n-----END PRIVATE KEY-----\n"
            ),
            "the service account's private_key is not a PEM RSA private key",
        ),
        (
            lambda a: _key_file(a, token_uri="file:///etc/passwd"),
            "the service account key's token_uri is not an http(s) URL",
        ),
    ],
)
async def test_bad_key_files(account: str, change: Any, reason: str) -> None:
    with pytest.raises(GatewayError) as err:
        await GcpTokenSource(clock=Clock()).token(change(account))
    assert (err.value.status, err.value.code) == (502, "gcp_auth_failed")
    assert err.value.message == f"could not obtain a Google Cloud access token: {reason}"
    assert "c2VjcmV0" not in err.value.message and "PRIVATE KEY" not in err.value.message


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (
            400,
            {"error": "invalid_grant", "error_description": "Invalid grant: account not found"},
            "the token endpoint answered HTTP 400: invalid_grant: Invalid grant: account not found",
        ),
        (503, {"oops": 1}, "the token endpoint answered HTTP 503"),
        (200, {"token_type": "Bearer"}, "the token endpoint's answer has no access_token"),
    ],
)
async def test_token_endpoint_refusals(
    endpoint: TokenEndpoint, account: str, status: int, body: dict, reason: str
) -> None:
    endpoint.script(status, body)
    with pytest.raises(GatewayError) as err:
        await GcpTokenSource(clock=Clock()).token(account)
    assert err.value.message == f"could not obtain a Google Cloud access token: {reason}"


async def test_unreachable_endpoint(account: str) -> None:
    closed = _key_file(account, token_uri="http://127.0.0.1:1/token")
    with pytest.raises(GatewayError) as err:
        await GcpTokenSource(clock=Clock()).token(closed)
    assert err.value.message.startswith(
        "could not obtain a Google Cloud access token: cannot reach the token endpoint http://127.0.0.1:1/token: "
    )


async def test_a_failure_is_not_cached(endpoint: TokenEndpoint, account: str) -> None:
    source = GcpTokenSource(clock=Clock())
    endpoint.script(500, {"error": "internal_failure"})
    with pytest.raises(GatewayError):
        await source.token(account)
    assert await source.token(account) == "ya29.c.test-token-1"


async def test_token_lifetime_defaults_to_an_hour_when_not_given(
    endpoint: TokenEndpoint, account: str
) -> None:
    clock = Clock()
    source = GcpTokenSource(clock=clock)
    endpoint.script(200, {"access_token": "ya29.no-expiry"})
    assert await source.token(account) == "ya29.no-expiry"
    clock.now = NOW + 3299
    assert await source.token(account) == "ya29.no-expiry"
    clock.now = NOW + 3300
    assert await source.token(account) == "ya29.c.test-token-1"


async def test_missing_google_auth_names_the_extra(account: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "google.auth", None)  # import google.auth now fails
    with pytest.raises(GatewayError) as err:
        await GcpTokenSource(clock=Clock()).token(account)
    assert err.value.message == (
        "could not obtain a Google Cloud access token: "
        "google-auth is not installed: install the gcp extra (pip install .[gcp])"
    )


def test_secrets_stay_out_of_reprs(account: str) -> None:
    parsed = gcp_auth.ServiceAccount.parse(account)
    assert "PRIVATE KEY" not in repr(parsed)
    assert "ya29" not in repr(gcp_auth.CachedToken("ya29.secret", 1.0))


# --- the gateway's hook --------------------------------------------------------------------------


def vertex_route(auth: dict[str, Any]) -> Route:
    return Route.model_validate(
        {
            "name": "vertex",
            "route_type": "llm/v1/chat",
            "auth": auth,
            "model": {
                "provider": "gemini",
                "options": {
                    "gemini": {
                        "api_endpoint": "us-central1-aiplatform.googleapis.com",
                        "project_id": "my-project",
                        "location_id": "us-central1",
                    }
                },
            },
        }
    )


async def test_gateway_credentials_from_the_route_or_the_environment(
    endpoint: TokenEndpoint, account: str, keys: Any
) -> None:
    proxy = AIProxy()
    proxy.gcp_tokens = GcpTokenSource(clock=Clock())
    other = endpoint.register("env@my-project.iam.gserviceaccount.com", keys[1], "e1")
    proxy.env = {"GCP_SERVICE_ACCOUNT": other}
    assert (
        await proxy.cloud_credentials(vertex_route({"header_name": "x-goog-api-key", "header_value": "k"}))
        == {}
    )
    configured = vertex_route({"gcp_use_service_account": True, "gcp_service_account_json": account})
    assert await proxy.cloud_credentials(configured) == {"gcp_access_token": "ya29.c.test-token-1"}
    from_env = vertex_route({"gcp_use_service_account": True})
    assert await proxy.cloud_credentials(from_env) == {"gcp_access_token": "ya29.c.test-token-2"}
    assert [g["iss"] for g in endpoint.grants] == [
        "gateway@my-project.iam.gserviceaccount.com",
        "env@my-project.iam.gserviceaccount.com",
    ]
    proxy.env = {}
    with pytest.raises(GatewayError) as err:
        await proxy.cloud_credentials(from_env)
    assert err.value.status == 502
