"""AWS Signature Version 4 over the final upstream request, computed by botocore at a given time.

botocore is the reference implementation of SigV4, so the gateway uses it rather than re-deriving
the canonical request by hand. It is an optional dependency (``pip install .[aws]``), imported only
when a request is signed.

botocore's ``SigV4Auth.add_auth`` reads the wall clock and logs the signature at DEBUG level; the
gateway needs a deterministic time (``now`` from the caller) and never logs a signature, so
``sign`` runs the same steps as ``add_auth`` with the given timestamp and no logging. A unit test
checks the result against botocore's own ``add_auth`` at the same instant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from transforms.config import Auth
from transforms.errors import GatewayError
from transforms.types import Upstream

# botocore's SIGV4_TIMESTAMP: basic ISO 8601, UTC.
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
# Headers covered by the signature besides host: the body's type, the date and the session token.
# Other client headers (user-agent, x-stainless-*...) may change on the way and are left unsigned.
SIGNED_HEADERS = ("content-type",)
# Request headers that belong to a signature; a client's own copies must not reach the provider.
SIGNATURE_HEADERS = ("authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256")


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    access_key: str
    secret_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def credentials_from(auth: Auth, env: Mapping[str, str]) -> AwsCredentials:
    """The route's keys, else the standard AWS environment variables (never a mix of both)."""
    if auth.aws_access_key_id and auth.aws_secret_access_key:
        return AwsCredentials(auth.aws_access_key_id, auth.aws_secret_access_key, auth.aws_session_token)
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        return AwsCredentials(key, secret, env.get("AWS_SESSION_TOKEN") or None)
    raise GatewayError(
        500,
        "AWS credentials not found: set auth.aws_access_key_id and auth.aws_secret_access_key, "
        "or the AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY environment variables",
        "config_error",
    )


def timestamp(now: int) -> str:
    return datetime.fromtimestamp(now, UTC).strftime(TIMESTAMP_FORMAT)


def _botocore() -> tuple[Any, Any, Any]:
    try:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
    except ImportError:
        raise GatewayError(
            500, "AWS SigV4 signing needs botocore: install it with `pip install .[aws]`", "config_error"
        ) from None
    return SigV4Auth, AWSRequest, Credentials


def signing_request(upstream: Upstream) -> Any:
    """The botocore request that describes exactly what goes on the wire: method, URL (path and
    query as sent), host as mitmproxy writes it (with the port only when not the default), the
    signed headers and the body."""
    _, aws_request, _ = _botocore()
    headers = {"host": urlsplit(upstream.url).netloc}
    for name in SIGNED_HEADERS:
        if name in upstream.set_headers:
            headers[name] = upstream.set_headers[name]
    return aws_request(method=upstream.method, url=upstream.url, headers=headers, data=upstream.body)


def sign(upstream: Upstream, credentials: AwsCredentials, service: str, region: str, now: int) -> None:
    """Adds ``authorization``, ``x-amz-date`` (and ``x-amz-security-token``) to the upstream request."""
    sigv4_auth, _, botocore_credentials = _botocore()
    signer = sigv4_auth(
        botocore_credentials(credentials.access_key, credentials.secret_key, credentials.session_token),
        service,
        region,
    )
    request = signing_request(upstream)
    request.context["timestamp"] = timestamp(now)
    # add_auth's own steps, with our clock instead of botocore's and without its debug logging.
    signer._modify_request_before_signing(request)
    canonical = signer.canonical_request(request)
    signature = signer.signature(signer.string_to_sign(request, canonical), request)
    signer._inject_signature_to_request(request, signature)

    upstream.remove_headers = (*upstream.remove_headers, *SIGNATURE_HEADERS)
    upstream.set_headers["x-amz-date"] = request.headers["X-Amz-Date"]
    if credentials.session_token:
        upstream.set_headers["x-amz-security-token"] = credentials.session_token
    upstream.set_headers["authorization"] = request.headers["Authorization"]
