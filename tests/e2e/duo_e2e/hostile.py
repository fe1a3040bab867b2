"""Tools for hostile-client and fault scenarios: raw HTTP/1.1 bytes on a socket (framing no
well-behaved client library would send), and Envoy's own evidence that no wasm VM crashed
(`wasm.<filter>.vm_reload*`, `wasm.envoy.wasm.runtime.v8.created`, `panicked at` in its log)."""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass

# Envoy's wasm stats that move when a VM trapped (FAIL_RELOAD reloads it) or was created anew.
VM_STATS = re.compile(r"^wasm\.(duo_[a-z]+\.vm_reload[a-z_]*|envoy\.wasm\.runtime\.v8\.created)$")


def vm_stats(envoy) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in envoy.admin("/stats?filter=^wasm\\.").splitlines():
        name, _, value = line.partition(": ")
        if VM_STATS.match(name) and value.strip().isdigit():
            out[name] = int(value)
    return out


class VmWatch:
    """Remembers the VM stats and the Envoy log size; `check()` fails if any VM crashed since."""

    def __init__(self, st):
        self.st = st
        self.stats = vm_stats(st.envoy)
        self.log_at = len(st.envoy.log())

    def check(self) -> None:
        now = vm_stats(self.st.envoy)
        moved = {k: (self.stats.get(k), v) for k, v in now.items() if self.stats.get(k) != v}
        assert not moved, f"wasm VM crashed or was recreated: {moved}"
        panics = [l for l in self.st.envoy.log()[self.log_at:].splitlines() if "panicked at" in l or "wasm trap" in l.lower()]
        assert not panics, f"filter panicked: {panics[:3]}"


@dataclass
class RawResponse:
    status: int
    head: bytes
    body: bytes

    def header(self, name: str) -> str | None:
        for line in self.head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == name.lower().encode():
                return v.strip().decode("latin-1")
        return None


class RawConn:
    """One TCP connection to Envoy's listener; exact bytes out, responses parsed as they come."""

    def __init__(self, port: int, timeout_s: float = 10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.buf = b""
        self.timeout_s = timeout_s

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self, deadline: float) -> bool:
        if time.monotonic() > deadline:
            raise TimeoutError("no complete response in time")
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            return False
        self.buf += data
        return bool(data)

    def response(self) -> RawResponse | None:
        """The next response, or None when the connection closed before one arrived."""
        deadline = time.monotonic() + self.timeout_s
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(deadline):
                return None
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = int(head.split(b" ", 2)[1])
        resp = RawResponse(status, head, b"")
        length = resp.header("content-length")
        if length is not None:
            while len(self.buf) < int(length):
                if not self._fill(deadline):
                    break
            resp.body, self.buf = self.buf[: int(length)], self.buf[int(length):]
        elif (resp.header("transfer-encoding") or "").lower() == "chunked":
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    if not self._fill(deadline):
                        resp.body = body
                        return resp
                size_line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    if not self._fill(deadline):
                        resp.body = body + self.buf
                        return resp
                body, self.buf = body + self.buf[:size], self.buf[size + 2:]
                if size == 0:
                    break
            resp.body = body
        return resp

    def closed_by_peer(self, wait_s: float = 2.0) -> bool:
        """True when Envoy closed the connection (after answering what it had to)."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                self.sock.settimeout(max(0.05, deadline - time.monotonic()))
                data = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, OSError):
                return True
            if not data:
                return True
            self.buf += data
        return False


def request_bytes(method: str, path: str, headers: list[tuple[str, str | bytes]], body: bytes = b"",
                  content_length: bool = True) -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: gateway.test"]
    for k, v in headers:
        lines.append(k.encode() + b": " + (v if isinstance(v, bytes) else v.encode("latin-1")))
    if content_length:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
