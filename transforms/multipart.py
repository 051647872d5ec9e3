"""multipart/form-data bodies (RFC 7578), read and extended as bytes: parts are sliced out of the
body, never decoded as text unless they are plain form fields, and an added field leaves every
byte of the client's parts as it was.

``parse`` reads a whole body; ``MultipartReader`` is fed one as it streams, chunk by chunk, and
reports form fields (their values kept up to ``MAX_FIELD_BYTES``) and the pieces of each file part as
slices of the chunks it was given: memory stays bounded by the part headers and one delimiter's
length, whatever the size of the files. ``is_text_type`` tells text bodies from binary ones.

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


def _part_headers(raw: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in raw.split(b"\r\n"):
        name, _, value = line.decode("utf-8", "replace").partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


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
        headers = _part_headers(body[at + 2 : head_end])
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


# --- bodies read as they stream ---------------------------------------------------------------------

MAX_FIELD_BYTES = 64 * 1024  # a form field's value kept (purpose, model, response_format...)
MAX_PART_HEADER_BYTES = 16 * 1024  # one part's headers

# Content types whose bodies are text a person (or the conversation view) may read.
_TEXT_TYPES = ("application/json", "application/x-ndjson", "application/jsonl", "text/", "+json")


def is_text_type(content_type: str) -> bool:
    """Bodies of other types (multipart, audio, images, octet-stream) are never decoded as text,
    logged as payload or recorded."""
    kind = content_type.split(";", 1)[0].strip().lower()
    return not kind or any(marker in kind for marker in _TEXT_TYPES)


@dataclass(slots=True)
class PartHead:
    """One part's headers: its form name, the file name (file parts) and content type."""

    name: str
    filename: str | None
    content_type: str


@dataclass(slots=True)
class Field:
    name: str
    value: str
    truncated: bool = False


@dataclass(slots=True)
class FileStart:
    part: PartHead


@dataclass(slots=True)
class FileData:
    data: bytes


@dataclass(slots=True)
class FileEnd:
    part: PartHead


Event = Field | FileStart | FileData | FileEnd


class MultipartError(ValueError):
    pass


class MultipartReader:
    """Events of a multipart body, fed in chunks of any size. ``feed`` returns the events the chunk
    completes; ``finish`` raises ``MultipartError`` when the body ended before its closing delimiter."""

    __slots__ = ("_buf", "_delimiter", "_field", "_part", "_state", "done")

    def __init__(self, boundary: str) -> None:
        self._delimiter = b"\r\n--" + boundary.encode("latin-1")
        # The body starts with the delimiter minus its CRLF: a leading CRLF makes it the same search.
        self._buf = b"\r\n"
        self._state = "preamble"  # preamble, after (the delimiter), headers, body, epilogue
        self._part: PartHead | None = None
        self._field = bytearray()
        self.done = False

    def feed(self, chunk: bytes) -> list[Event]:
        if self._state == "epilogue":
            return []
        buf = self._buf + chunk if self._buf else chunk
        events: list[Event] = []
        at = 0
        while True:
            if self._state in ("preamble", "body"):
                found = buf.find(self._delimiter, at)
                if found == -1:
                    keep = max(at, len(buf) - len(self._delimiter) + 1)
                    self._data(buf[at:keep], events)
                    at = keep
                    break
                self._data(buf[at:found], events)
                self._end_part(events)
                at = found + len(self._delimiter)
                self._state = "after"
            elif self._state == "after":
                if len(buf) - at < 2:
                    break
                if buf[at : at + 2] == b"--":
                    self._state = "epilogue"
                    self.done = True
                    at = len(buf)
                    break
                end = buf.find(b"\r\n", at)
                if end == -1:
                    if len(buf) - at > 256:
                        raise MultipartError("malformed multipart delimiter line")
                    break
                at = end + 2  # transport padding (whitespace) after the delimiter is ignored
                self._state = "headers"
            elif self._state == "headers":
                end = buf.find(b"\r\n\r\n", at)
                if end == -1:
                    if len(buf) - at > MAX_PART_HEADER_BYTES:
                        raise MultipartError(f"a part's headers exceed {MAX_PART_HEADER_BYTES} bytes")
                    break
                self._part = _parse_part(buf[at:end])
                if self._part.filename is not None:
                    events.append(FileStart(self._part))
                at = end + 4
                self._state = "body"
            else:  # epilogue
                at = len(buf)
                break
        self._buf = buf[at:]
        return events

    def finish(self) -> list[Event]:
        if not self.done:
            raise MultipartError("the multipart body ended before its closing delimiter")
        return []

    def _data(self, data: bytes, events: list[Event]) -> None:
        part = self._part
        if not data or part is None or self._state == "preamble":
            return
        if part.filename is not None:
            events.append(FileData(data))
        elif len(self._field) <= MAX_FIELD_BYTES:
            self._field += data[: MAX_FIELD_BYTES + 1 - len(self._field)]

    def _end_part(self, events: list[Event]) -> None:
        part = self._part
        if part is None or self._state == "preamble":
            return
        if part.filename is not None:
            events.append(FileEnd(part))
        else:
            truncated = len(self._field) > MAX_FIELD_BYTES
            value = bytes(self._field[:MAX_FIELD_BYTES]).decode("utf-8", "replace")
            events.append(Field(part.name, value, truncated))
        self._field.clear()
        self._part = None


def _parse_part(raw: bytes) -> PartHead:
    headers = _part_headers(raw)
    disposition = _disposition(headers.get("content-disposition", ""))
    return PartHead(disposition.get("name", ""), disposition.get("filename"), headers.get("content-type", ""))
