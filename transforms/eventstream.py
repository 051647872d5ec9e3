"""Writing AWS event-stream messages (``application/vnd.amazon.eventstream``), as Bedrock sends them.

Each message is::

    total length (uint32 BE) | headers length (uint32 BE) | prelude CRC32 (of the 8 bytes before)
    headers | payload | message CRC32 (of everything before it, prelude included)

and each header is ``name length (uint8) | name | type (uint8, 7 = string) | value length (uint16 BE)
| value``. CRC32 is the IEEE polynomial (zlib's). Reading is botocore's job
(``transforms.providers.bedrock.EventStreamDecoder``).
"""

from __future__ import annotations

import binascii
import struct
from collections.abc import Mapping

_STRING = 7  # header value type: UTF-8 string with a 2-byte length


def encode_headers(headers: Mapping[str, str]) -> bytes:
    out = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        out += bytes([len(raw_name)]) + raw_name + bytes([_STRING])
        out += struct.pack(">H", len(raw_value)) + raw_value
    return bytes(out)


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    encoded_headers = encode_headers(headers)
    total = 12 + len(encoded_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded_headers))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + encoded_headers + payload
    return message + struct.pack(">I", binascii.crc32(message))
