"""A small HTTP/1.1 client for scenarios: exact headers, raw bodies, and streamed bodies read
chunk by chunk with arrival times (to check that streams really stream and really end)."""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Response:
    status: int
    header_list: list[tuple[str, str]]
    body: bytes
    chunks: list[tuple[float, bytes]] = field(default_factory=list)  # (seconds since request, data)
    complete: bool = True  # False when the stream broke (reset, truncated chunked encoding)

    @property
    def headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for k, v in self.header_list:
            out[k] = f"{out[k]},{v}" if k in out else v
        return out

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:200]!r}{'' if self.complete else ' (incomplete)'}>"


def request(port: int, method: str, path: str, headers: dict[str, str] | None = None,
            body: bytes | str | None = None, json_body: Any = None, timeout_s: float = 30.0,
            host: str = "127.0.0.1") -> Response:
    if json_body is not None:
        body = json.dumps(json_body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
    if isinstance(body, str):
        body = body.encode()
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    start = time.monotonic()
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        chunks: list[tuple[float, bytes]] = []
        complete = True
        deadline = start + timeout_s
        try:
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{method} {path}: body not finished after {timeout_s}s")
                data = resp.read1(65536)
                if not data:
                    break
                chunks.append((time.monotonic() - start, data))
        except (http.client.IncompleteRead, ConnectionResetError, http.client.RemoteDisconnected):
            complete = False
        return Response(
            status=resp.status,
            header_list=[(k.lower(), v) for k, v in resp.getheaders()],
            body=b"".join(c for _, c in chunks),
            chunks=chunks,
            complete=complete,
        )
    finally:
        conn.close()
