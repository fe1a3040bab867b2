"""The common part of every fake upstream: a threaded HTTP/1.1 server on 127.0.0.1 that records
every request it receives, checks it (each fake's `check`), and answers either from a queue of
scripted replies or with its own default answer.

A request a fake refuses (wrong path, bad body, bad key, bad signature...) is answered in the
provider's own error format *and* recorded in `fake.refusals`; the runner fails a scenario that
leaves an unexpected refusal behind (take it with `fake.take_refusals()` when the refusal is the
point of the scenario).
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, urlsplit

MAX_BODY = 32 * 1024 * 1024


@dataclass
class Request:
    """One request as the fake received it."""

    method: str
    target: str  # the raw request target, e.g. /v1/chat/completions?x=1
    path: str  # the raw (still percent-encoded) path
    query: dict[str, list[str]]
    header_list: list[tuple[str, str]]  # in wire order, names lower-cased
    body: bytes
    chunked: bool
    received_at: float
    fake: str = ""
    status: int | None = None  # what the fake answered
    refused: str | None = None  # why the fake refused it, None when accepted
    notes: list[str] = field(default_factory=list)  # what the real service would only warn about

    @property
    def headers(self) -> dict[str, str]:
        """Lower-cased header names; repeated headers joined with ',' (as HTTP allows)."""
        out: dict[str, str] = {}
        for k, v in self.header_list:
            out[k] = f"{out[k]},{v}" if k in out else v
        return out

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self) -> str:  # short: never prints bodies or header values (secrets)
        return f"<{self.fake} {self.method} {self.path} -> {self.status}{' refused: ' + self.refused if self.refused else ''}>"


@dataclass
class Reply:
    """An answer. `chunks` streams the body (each item written and flushed on its own, with
    `delay_s` before each); `abort_after` closes the connection after that many chunks without
    finishing the response (a stream that breaks)."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    chunks: list[bytes] | None = None
    delay_s: float = 0.0
    first_delay_s: float = 0.0
    abort_after: int | None = None

    @staticmethod
    def json(obj: Any, status: int = 200, headers: Iterable[tuple[str, str]] = ()) -> "Reply":
        return Reply(status, [("content-type", "application/json"), *headers], json.dumps(obj).encode())


@dataclass
class Answer:
    """Model output for a fake model platform to render in its own wire format, streamed when
    the request asked for a stream. `pieces` are the stream deltas (default: `text` split after
    spaces); `abort_after` breaks the stream after that many pieces; `delay_s` waits before each."""

    text: str = "Hello from the fake model."
    pieces: list[str] | None = None
    finish_reason: str = "stop"
    input_tokens: int | None = None
    output_tokens: int | None = None
    delay_s: float = 0.0
    first_delay_s: float = 0.0
    abort_after: int | None = None
    # Tool calls the model makes: (id, name, input object). The platform's stop reason becomes
    # its "tool calls" one.
    tool_calls: list[tuple[str, str, dict[str, Any]]] | None = None

    def split(self) -> list[str]:
        if self.pieces is not None:
            return list(self.pieces)
        out = re.findall(r"\S+\s*|\s+", self.text)
        return out or [""]


def count_tokens(text: str) -> int:
    """The fakes' deterministic token count: whitespace-separated words (at least 1 for non-empty text)."""
    return len(text.split()) or (1 if text else 0)


def carries_jwt(value: str | None) -> bool:
    """True when a header value carries a JWT (three base64url parts whose header names a `typ`/`alg`):
    a model platform must never receive GitLab's token."""
    if not value:
        return False
    token = value.split(" ", 1)[-1].strip()
    parts = token.split(".")
    if len(parts) != 3 or not parts[0]:
        return False
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(header, dict) and "alg" in header


class Refuse(Exception):
    """Raised by a fake's checks: the request is not what the real service accepts."""

    def __init__(self, reason: str, reply: Reply):
        super().__init__(reason)
        self.reason = reason
        self.reply = reply


class FakeServer:
    """Base class. Subclasses implement `handle(req) -> Reply` (raise `Refuse` to refuse)."""

    kind = "fake"
    # The path the real service answers health checks on (Envoy's active health checker, user
    # agent `Envoy/HC`); those checks are counted in `health_checks`, never recorded as requests.
    health_path: str | None = None

    def __init__(self, name: str):
        self.name = name
        self.health_checks = 0
        self.tls_errors: list[str] = []  # failed TLS handshakes (a client that refused our certificate)
        self.requests: list[Request] = []
        self.refusals: list[Request] = []
        self.history: list[Request] = []  # every request since start; `reset()` keeps it
        self._script: deque[Callable[[Request], Reply] | Reply] = deque()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()  # open client connections (drop_connections)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self, port: int = 0, tls: ssl.SSLContext | None = None) -> "FakeServer":
        """Serve on 127.0.0.1 (`port` 0: a free one); with `tls`, HTTPS with that server context."""
        fake = self

        class Handler(_Handler):
            owner = fake

        self._server = _Server(("127.0.0.1", port), Handler)
        self._server.owner = self
        if tls is not None:
            # Handshake in the connection's own thread (on first read), not in the accept loop.
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True, do_handshake_on_connect=False)
        self.tls = tls is not None
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"fake-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def drop_connections(self) -> int:
        """Close every connection still open to this fake (`stop()` only closes the listening
        socket: a client's pooled keep-alive connections would go on being served). With `stop()`
        first, the client's next connection attempt is refused. Returns how many were closed."""
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return len(conns)

    @property
    def port(self) -> int:
        assert self._server is not None, f"fake {self.name} is not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"{'https' if getattr(self, 'tls', False) else 'http'}://127.0.0.1:{self.port}"

    # ---- scripting and inspection ----------------------------------------------------------
    def reset(self) -> None:
        """Forget recorded requests and scripted replies (the runner does this before each scenario)."""
        with self._lock:
            self.requests.clear()
            self.refusals.clear()
            self._script.clear()

    def enqueue(self, *replies: Reply | Callable[[Request], Reply]) -> None:
        """The next requests that pass the checks get these answers, in order (then the default)."""
        with self._lock:
            self._script.extend(replies)

    def take_refusals(self) -> list[Request]:
        with self._lock:
            out = list(self.refusals)
            self.refusals.clear()
            return out

    def received(self, path: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def last(self) -> Request:
        with self._lock:
            assert self.requests, f"fake {self.name} received no request"
            return self.requests[-1]

    def wait_for(self, count: int = 1, timeout_s: float = 5.0) -> list[Request]:
        """Bounded wait until at least `count` requests arrived."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.02)
        raise AssertionError(f"fake {self.name}: {len(self.requests)} request(s) after {timeout_s}s, wanted {count}")

    def assert_nothing_received(self) -> None:
        with self._lock:
            assert not self.requests, f"fake {self.name} should have received nothing, got {self.requests}"

    # ---- to implement ----------------------------------------------------------------------
    def handle(self, req: Request) -> Reply:  # pragma: no cover - abstract
        raise NotImplementedError

    def next_scripted(self, req: Request) -> Reply | None:
        with self._lock:
            if not self._script:
                return None
            item = self._script.popleft()
        return item(req) if callable(item) else item

    def _dispatch(self, req: Request) -> Reply:
        req.fake = self.name
        try:
            check_encoding(req)
            reply = self.handle(req)
        except Refuse as r:
            req.refused = r.reason
            reply = r.reply
        except Exception as e:  # noqa: BLE001 - a crashing fake must fail the scenario, loudly
            req.refused = f"fake crashed: {type(e).__name__}: {e}"
            reply = Reply.json({"fake_error": req.refused}, 500)
        req.status = reply.status
        with self._lock:
            self.requests.append(req)
            self.history.append(req)
            if req.refused:
                self.refusals.append(req)
        return reply


def check_encoding(req: Request) -> None:
    """A body must be what its `content-encoding` says, as every real HTTP server requires: a
    gzip label on plain bytes cannot be decoded (400)."""
    encoding = (req.header("content-encoding") or "identity").strip().lower()
    if encoding == "identity":
        return
    try:
        if encoding != "gzip":
            raise ValueError(f"unsupported content-encoding {encoding!r}")
        gzip.decompress(req.body)
    except (OSError, ValueError, EOFError) as e:
        raise Refuse(f"content-encoding {encoding!r} does not match the body: {e}",
                     Reply.json({"error": f"cannot decode the {encoding} body"}, 400)) from None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: FakeServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        err = sys.exc_info()[1]
        if isinstance(err, (ssl.SSLError, ConnectionError)):
            # A client that refuses our certificate aborts the handshake: note it, quietly.
            self.owner.tls_errors.append(f"{type(err).__name__}: {err}")
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    owner: FakeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep quiet
        pass

    def setup(self) -> None:
        super().setup()
        with self.owner._lock:
            self.owner._conns.add(self.connection)

    def finish(self) -> None:
        with self.owner._lock:
            self.owner._conns.discard(self.connection)
        super().finish()

    def _read_body(self) -> tuple[bytes, bool]:
        te = (self.headers.get("transfer-encoding") or "").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out), True
                if len(out) + size > MAX_BODY:
                    raise ValueError("body too large")
                out += self.rfile.read(size)
                self.rfile.readline(8)
        n = int(self.headers.get("content-length") or 0)
        if n > MAX_BODY:
            raise ValueError("body too large")
        return (self.rfile.read(n) if n else b""), False

    def _handle(self) -> None:
        body, chunked = self._read_body()
        split = urlsplit(self.path)
        req = Request(
            method=self.command,
            target=self.path,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            header_list=[(k.lower(), v) for k, v in self.headers.items()],
            body=body,
            chunked=chunked,
            received_at=time.time(),
        )
        owner = self.owner
        if (owner.health_path and req.method == "GET" and req.path == owner.health_path
                and req.header("user-agent") == "Envoy/HC"):
            owner.health_checks += 1
            self._send(Reply(200))
            return
        reply = owner._dispatch(req)
        try:
            self._send(reply)
        except (BrokenPipeError, ConnectionResetError):
            # Envoy closed the upstream stream mid-answer (the client left): recorded, not an error.
            req.notes.append("connection closed by Envoy while answering")
            self.close_connection = True

    def _send(self, reply: Reply) -> None:
        self.send_response_only(reply.status)
        names = {k.lower() for k, _ in reply.headers}
        for k, v in reply.headers:
            self.send_header(k, v)
        if "date" not in names:
            self.send_header("date", self.date_time_string())
        if reply.chunks is None:
            self.send_header("content-length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
            self.wfile.flush()
            return
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        for i, chunk in enumerate(reply.chunks):
            if reply.abort_after is not None and i >= reply.abort_after:
                self._abort()
                return
            delay = reply.first_delay_s if i == 0 else reply.delay_s
            if delay:
                time.sleep(delay)
            if chunk:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
        if reply.abort_after is not None and reply.abort_after <= len(reply.chunks):
            self._abort()
            return
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _abort(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle  # type: ignore[assignment]
