"""AWS event-stream (`application/vnd.amazon.eventstream`) encoder for the fake Bedrock
(AWS event-stream encoding (docs/streaming.md)). Our own small encoder; `decode()` uses botocore's decoder, which the smoke
scenario runs over our frames to prove they are what AWS SDKs accept."""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

# Header value types (AWS event-stream encoding (docs/streaming.md)).
_TRUE, _FALSE, _INT32, _BYTES, _STRING = 0, 1, 4, 6, 7


def _header(name: str, value: Any) -> bytes:
    raw = name.encode("ascii")
    out = struct.pack(">B", len(raw)) + raw
    if value is True:
        return out + struct.pack(">B", _TRUE)
    if value is False:
        return out + struct.pack(">B", _FALSE)
    if isinstance(value, int):
        return out + struct.pack(">Bi", _INT32, value)
    if isinstance(value, bytes):
        return out + struct.pack(">BH", _BYTES, len(value)) + value
    data = str(value).encode("utf-8")
    return out + struct.pack(">BH", _STRING, len(data)) + data


def frame(headers: list[tuple[str, Any]], payload: bytes, corrupt_crc: bool = False) -> bytes:
    """One message: prelude (total length, headers length, prelude CRC), headers, payload, message CRC."""
    hdr = b"".join(_header(k, v) for k, v in headers)
    total = 12 + len(hdr) + len(payload) + 4
    prelude = struct.pack(">II", total, len(hdr))
    msg = prelude + struct.pack(">I", zlib.crc32(prelude)) + hdr + payload
    crc = zlib.crc32(msg) ^ (0xFFFFFFFF if corrupt_crc else 0)
    return msg + struct.pack(">I", crc)


def event(event_type: str, payload: dict[str, Any]) -> bytes:
    """An event as Bedrock sends it (header order as on the wire)."""
    return frame(
        [(":event-type", event_type), (":content-type", "application/json"), (":message-type", "event")],
        json.dumps(payload, separators=(",", ":")).encode(),
    )


def exception(exception_type: str, message: str) -> bytes:
    """A modeled exception inside a stream (e.g. `throttlingException`) after HTTP 200."""
    return frame(
        [(":exception-type", exception_type), (":content-type", "application/json"), (":message-type", "exception")],
        json.dumps({"message": message}).encode(),
    )


def decode(data: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """(headers, payload) of every message, decoded by botocore (raises on bad CRCs or lengths)."""
    from botocore.eventstream import EventStreamBuffer

    buf = EventStreamBuffer()
    buf.add_data(data)
    return [(dict(m.headers), m.payload) for m in buf]
