"""multipart/form-data bodies (RFC 7578), read and extended as bytes: parts are sliced out of the
body, never decoded as text unless they are plain form fields, and an added field leaves every
byte of the client's parts as it was.

Pure: data in, data out.
"""

from __future__ import annotations

from dataclasses import dataclass

from transforms.errors import bad_request


@dataclass(frozen=True, slots=True)
class Part:
    name: str
    data: bytes
    filename: str | None = None  # set for file parts
    content_type: str | None = None


def boundary_of(content_type: str) -> str | None:
    """The boundary of a ``multipart/form-data`` content type; None for any other type."""
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        return None
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "boundary" and value.strip():
            return value.strip().strip('"')
    raise bad_request("multipart/form-data body without a boundary parameter", "invalid_body")


def _disposition(value: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in value.split(";")[1:]:
        key, sep, raw = item.strip().partition("=")
        if sep:
            params[key.strip().lower()] = raw.strip().strip('"')
    return params


def parse(content_type: str, body: bytes) -> list[Part]:
    """The parts of a multipart/form-data body, in order. A malformed body is a 400."""
    boundary = boundary_of(content_type)
    if boundary is None:
        raise bad_request(
            f"expected a multipart/form-data body, not {content_type or 'none'}", "invalid_body"
        )
    delimiter = b"--" + boundary.encode("latin-1")
    start = body.find(delimiter)
    if start < 0:
        raise bad_request("multipart body does not contain its boundary", "invalid_body")
    parts: list[Part] = []
    at = start + len(delimiter)
    while True:
        if body.startswith(b"--", at):  # the closing delimiter
            return parts
        if not body.startswith(b"\r\n", at):
            raise bad_request("malformed multipart body (no CRLF after a boundary)", "invalid_body")
        head_end = body.find(b"\r\n\r\n", at + 2)
        if head_end < 0:
            raise bad_request("malformed multipart body (part headers never end)", "invalid_body")
        end = body.find(b"\r\n" + delimiter, head_end + 4)
        if end < 0:
            raise bad_request("malformed multipart body (no closing boundary)", "invalid_body")
        headers: dict[str, str] = {}
        for line in body[at + 2 : head_end].split(b"\r\n"):
            name, _, value = line.decode("utf-8", "replace").partition(":")
            headers[name.strip().lower()] = value.strip()
        disposition = _disposition(headers.get("content-disposition", ""))
        if "name" not in disposition:
            raise bad_request("multipart part without a form field name", "invalid_body")
        parts.append(
            Part(
                disposition["name"],
                body[head_end + 4 : end],
                disposition.get("filename"),
                headers.get("content-type"),
            )
        )
        at = end + 2 + len(delimiter)


def with_field(content_type: str, body: bytes, name: str, value: str) -> bytes:
    """The body with one more text field before its closing delimiter; the rest unchanged."""
    boundary = boundary_of(content_type)
    if boundary is None:
        raise bad_request("expected a multipart/form-data body", "invalid_body")
    closing = b"--" + boundary.encode("latin-1") + b"--"
    at = body.rfind(closing)
    if at < 0:
        raise bad_request("multipart body has no closing boundary", "invalid_body")
    field = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + value.encode()
        + b"\r\n"
    )
    return body[:at] + field + body[at:]
