"""Hostile clients on real Envoy 1.40 (docs/reliability.md): bytes no well-behaved GitLab would
send. Each gets a clear error or a correct answer; nothing reaches a model when the request is
refused (the fakes record everything); no wasm VM crashes (Envoy's `wasm.*.vm_reload*` and
`runtime.v8.created` stats stay put, no `panicked at` in its log); Envoy keeps serving.

Envoy's own limits answer first where they apply (60 KB of headers, 100 headers, body buffer):
those are Envoy's plain-text replies (431/413/400), which a GitLab client shows as an HTTP error."""

from __future__ import annotations

import json
import socket
import time

from duo_e2e import Answer, scenario
from duo_e2e.client import request
from duo_e2e.hostile import RawConn, VmWatch, request_bytes

VLLM = "vllm_codestral"
MODEL_FAKES = ("vllm_codestral", "bedrock_us_east_1", "azure_eastus")


def _completion(stream: bool = False, above: str = "def add(a, b):\n") -> dict:
    return {"current_file": {"file_name": "a.py", "language_identifier": "python",
                             "content_above_cursor": above, "content_below_cursor": ""},
            "model_provider": "litellm", "model_name": "codestral", "prompt_version": 2, "stream": stream,
            "model_endpoint": "http://vllm.internal:8000/v1", "model_api_key": "sk-e2e-hostile",
            "model_identifier": "custom_openai/Codestral-22B-v0.1"}


def _nothing_reached_a_model(st) -> None:
    for name in MODEL_FAKES:
        st.fake(name).assert_nothing_received()


def _still_serving(st, watch: VmWatch) -> None:
    """No VM crashed, and a normal request right after is answered by the model."""
    watch.check()
    before = len(st.fake(VLLM).received())
    r = st.post("/v2/code/completions", json_body=_completion(), headers=st.gitlab.headers())
    assert r.status == 200 and r.json()["choices"][0]["text"], f"Envoy stopped serving: {r}"
    assert len(st.fake(VLLM).received()) == before + 1
    watch.check()


def _header_list(st, **extra: str) -> list[tuple[str, str]]:
    return list(st.gitlab.headers(**extra).items())


def _records(st, user_agent: str, count: int) -> list[dict]:
    """The access-log records of this scenario's requests sent with `user_agent` (Envoy flushes
    its access log about once a second, so records of earlier scenarios can still arrive)."""
    deadline = time.monotonic() + 10
    while True:
        recs = [x for x in st.access_log() if isinstance(x, dict) and x.get("user_agent") == user_agent]
        if len(recs) >= count or time.monotonic() > deadline:
            return recs
        time.sleep(0.1)


def _gitlab_error(r, status: int) -> None:
    assert r.status == status, r
    assert (r.header("content-type") or "").startswith("application/json"), r.header_list
    assert isinstance(r.json(), dict), r.body


def test_hostile_non_utf8_header_values(e2e):
    st = e2e.stack("self_hosted")
    watch = VmWatch(st)
    gl = st.gitlab
    # Informational headers with Latin-1 / broken UTF-8: answered, logged lossily, never a crash.
    headers = {**gl.headers(), "User-Agent": b"caf\xe9-client/1 \xff\xfe", "X-Gitlab-Host-Name": b"h\xc3\x28st",
               "X-Request-Id": b"req-\x80\x81"}
    r = request(st.port, "POST", "/v2/code/completions", headers=headers, body=json.dumps(_completion()),
                timeout_s=20)
    assert r.status == 200 and r.json()["choices"][0]["text"], r
    recs = _records(st, "caf\ufffd-client/1 \ufffd\ufffd", 1)
    assert recs[0]["status_code"] == 200 and recs[0]["gitlab_host_name"] == "h\ufffd(st", recs
    # Headers that carry identity or credentials: a clear 401, nothing reaches a model.
    st.fake(VLLM).reset()
    for name, value in (("Authorization", b"Bearer \xff\xfe\xfd.\x80.\x81"), ("X-Gitlab-Realm", b"self-managed\xff"),
                        ("X-Gitlab-Instance-Id", b"\xc3\x28"), ("X-Gitlab-Authentication-Type", b"oidc\xa0")):
        r = request(st.port, "POST", "/v2/code/completions", headers={**gl.headers(), name: value},
                    body=json.dumps(_completion()), timeout_s=20)
        _gitlab_error(r, 401)
    _nothing_reached_a_model(st)
    _still_serving(st, watch)


def test_hostile_60kb_url_and_200_headers(e2e):
    st = e2e.stack("self_hosted")
    watch = VmWatch(st)
    body = json.dumps(_completion())
    # 60 KB of URL: over Envoy's 60 KiB header limit, refused by Envoy (431) before any filter.
    r = request(st.port, "POST", "/v2/code/completions?q=" + "a" * 60 * 1024, headers=st.gitlab.headers(),
                body=body, timeout_s=20)
    assert r.status == 431, r
    # Just under the limit: served, and the logged path is bounded.
    r = request(st.port, "POST", "/v2/code/completions?q=" + "a" * 50 * 1024,
                headers={**st.gitlab.headers(), "User-Agent": "hostile-long-url"}, body=body, timeout_s=20)
    assert r.status == 200, r
    (rec,) = _records(st, "hostile-long-url", 1)
    assert rec["path"].startswith("/v2/code/completions?q=aaa") and len(rec["path"]) <= 2048, len(rec["path"])
    # 200 headers: over Envoy's 100-header limit (431); 80 junk headers are fine.
    many = {f"X-Junk-{i}": "v" * 20 for i in range(200)}
    r = request(st.port, "POST", "/v2/code/completions", headers={**st.gitlab.headers(), **many}, body=body, timeout_s=20)
    assert r.status == 431, r
    some = {f"X-Junk-{i}": "v" * 20 for i in range(80)}
    r = request(st.port, "POST", "/v2/code/completions", headers={**st.gitlab.headers(), **some}, body=body, timeout_s=20)
    assert r.status == 200, r
    assert len(st.fake(VLLM).received()) == 2, "only the two accepted requests reach vLLM"
    _still_serving(st, watch)


def test_hostile_deep_json_nesting(e2e):
    st = e2e.stack("self_hosted")
    watch = VmWatch(st)
    deep = "[" * 100_000 + "]" * 100_000
    bodies = {
        "/v2/code/completions": '{"current_file": ' + deep + "}",
        "/v2/chat/agent": '{"prompt": "hi", "messages": [{"role": "user", "content": "x", "additional_context": ' + deep + "}]}",
        "/v1/prompts/generate_commit_message": '{"inputs": {"diff": ' + deep + "}}",
        "/v2/code/generations": '{"x": ' + "{\"a\":" * 50_000 + "1" + "}" * 50_000 + "}",
    }
    for path, body in bodies.items():
        r = st.request("POST", path, headers={**st.gitlab.headers(), "Content-Type": "application/json"}, body=body, timeout_s=30)
        assert 400 <= r.status < 500, f"{path}: {r}"
        assert isinstance(r.json(), dict), f"{path}: {r.body[:200]!r}"
    _nothing_reached_a_model(st)
    _still_serving(st, watch)


@scenario(timeout_s=120)
def test_hostile_huge_and_slow_bodies(e2e):
    st = e2e.stack("self_hosted")
    watch = VmWatch(st)
    # Larger than the listener's 4 MiB buffer: refused whole (413), never half-forwarded.
    big = json.dumps(_completion(above="x" * (6 * 1024 * 1024))).encode()
    whole = request_bytes("POST", "/v2/code/completions", _header_list(st) + [("Content-Type", "application/json")], big)
    conn = RawConn(st.port, timeout_s=30)
    try:
        for i in range(0, len(whole), 256 * 1024):
            try:
                conn.send(whole[i:i + 256 * 1024])
            except (BrokenPipeError, ConnectionResetError):
                break  # Envoy answered and closed while the body was still coming: expected
        resp = conn.response()
    finally:
        conn.close()
    assert resp is not None and resp.status == 413, resp
    _nothing_reached_a_model(st)
    # A body trickled in 12 pieces over ~3 s: the filters wait for all of it and answer correctly.
    body = json.dumps(_completion()).encode()
    conn = RawConn(st.port, timeout_s=30)
    try:
        whole = request_bytes("POST", "/v2/code/completions", _header_list(st) + [("Content-Type", "application/json")], body)
        conn.send(whole[: -len(body)])
        step = len(body) // 12 + 1
        for i in range(0, len(body), step):
            time.sleep(0.25)
            conn.send(body[i:i + step])
        resp = conn.response()
    finally:
        conn.close()
    assert resp is not None and resp.status == 200, resp
    assert json.loads(resp.body)["choices"][0]["text"]
    sent = st.fake(VLLM).last()
    assert "def add(a, b):" in sent.json()["prompt"], "the model got the whole trickled body"
    _still_serving(st, watch)


def test_hostile_two_authorization_headers(e2e):
    st = e2e.stack("self_hosted")
    watch = VmWatch(st)
    gl = st.gitlab
    good = gl.headers()
    others = [(k, v) for k, v in good.items() if k != "Authorization"]
    body = json.dumps(_completion()).encode()
    for pair in ([good["Authorization"], "Bearer not.a.token"], ["Bearer not.a.token", good["Authorization"]],
                 [good["Authorization"], "Bearer " + gl.mint_expired()]):
        conn = RawConn(st.port)
        try:
            conn.send(request_bytes("POST", "/v2/code/completions",
                                    [("Authorization", pair[0]), ("Authorization", pair[1]), *others,
                                     ("Content-Type", "application/json")], body))
            resp = conn.response()
        finally:
            conn.close()
        assert resp is not None and resp.status == 401, resp
        assert json.loads(resp.body) == {"error": "Forbidden by auth provider"} or "detail" in json.loads(resp.body), resp.body
    _nothing_reached_a_model(st)
    _still_serving(st, watch)


def test_hostile_path_tricks(e2e):
    st = e2e.stack("self_hosted")
    watch = VmWatch(st)
    body = json.dumps(_completion())
    tricks = ["//v2/code/completions", "/v2/code/../code/completions", "/v2/code/./completions",
              "/v2/code%2Fcompletions", "/v2%2Fcode%2Fcompletions", "/V2/CODE/COMPLETIONS", "/v2/code/completions%00",
              "/monitoring/healthz/../../v2/code/completions", "/monitoring/healthz%2F..%2F..%2Fv2%2Fcode%2Fcompletions",
              "/v1/prompts/..%2F..%2Fv2%2Fcode%2Fcompletions", "/v2/code/completions;x=1"]
    for path in tricks:
        # Without a token: never served, never reaches a model.
        r = st.request("POST", path, headers={"Content-Type": "application/json"}, body=body, timeout_s=20)
        assert r.status in (400, 401, 404), f"{path} without a token: {r}"
        # With a token: GitLab's 404 for what is not an endpoint, never a model call.
        r = st.request("POST", path, headers={**st.gitlab.headers(), "Content-Type": "application/json"}, body=body,
                       timeout_s=20)
        assert r.status in (400, 404), f"{path}: {r}"
    _nothing_reached_a_model(st)
    _still_serving(st, watch)


def test_hostile_smuggling_shaped_framing(e2e):
    st = e2e.stack("self_hosted")
    watch = VmWatch(st)
    auth = _header_list(st) + [("Content-Type", "application/json")]
    body = json.dumps(_completion()).encode()
    hidden = request_bytes("POST", "/v2/code/completions", [("Content-Type", "application/json")], body)
    cases = {
        # Content-Length and Transfer-Encoding together: refused (RFC 9112 6.1), never guessed.
        "cl+te": request_bytes("POST", "/v2/code/completions", auth + [("Transfer-Encoding", "chunked")],
                               b"0\r\n\r\n" + hidden, content_length=False).replace(
                                   b"\r\n\r\n", b"\r\nContent-Length: 5\r\n\r\n", 1),
        "two-cl": request_bytes("POST", "/v2/code/completions", auth + [("Content-Length", "3")], body),
        "te-obfuscated": request_bytes("POST", "/v2/code/completions", auth + [("Transfer-Encoding", "xchunked")],
                                       body, content_length=False),
        "te-list": request_bytes("POST", "/v2/code/completions", auth + [("Transfer-Encoding", "chunked, identity")],
                                 b"0\r\n\r\n", content_length=False),
        "bad-chunk-size": request_bytes("POST", "/v2/code/completions", auth + [("Transfer-Encoding", "chunked")],
                                        b"fffffffffffffffff\r\nx\r\n0\r\n\r\n", content_length=False),
    }
    for name, data in cases.items():
        conn = RawConn(st.port)
        try:
            conn.send(data)
            first = conn.response()
            assert first is not None and first.status in (400, 501), f"{name}: {first}"
            # Nothing after a framing error is parsed as a request: Envoy closes the connection.
            assert conn.response() is None, f"{name}: a second response came back"
        finally:
            conn.close()
    _nothing_reached_a_model(st)
    # A well-framed pipelined pair: the second request (no token) is judged on its own.
    conn = RawConn(st.port)
    try:
        conn.send(request_bytes("POST", "/v2/code/completions", auth, body) + hidden)
        first, second = conn.response(), conn.response()
    finally:
        conn.close()
    assert first is not None and first.status == 200, first
    assert second is not None and second.status == 401, second
    assert len(st.fake(VLLM).received()) == 1
    _still_serving(st, watch)


@scenario(timeout_s=120)
def test_hostile_client_disconnects(e2e):
    st = e2e.stack("self_hosted")
    watch = VmWatch(st)
    auth = _header_list(st, User_Agent="hostile-disconnect") + [("Content-Type", "application/json")]
    body = json.dumps(_completion()).encode()
    # Mid-request: headers and half the body, then the client is gone. Nothing reaches a model.
    for cut in (0, len(body) // 2):
        conn = RawConn(st.port)
        whole = request_bytes("POST", "/v2/code/completions", auth, body)
        conn.send(whole[: len(whole) - len(body) + cut])
        time.sleep(0.3)
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
        conn.close()
    time.sleep(0.5)
    _nothing_reached_a_model(st)
    # Mid-stream: the model trickles a streamed answer; the client reads the first bytes and leaves.
    st.fake(VLLM).enqueue(Answer(text="one two three four five six seven eight", delay_s=0.4))
    conn = RawConn(st.port, timeout_s=20)
    conn.send(request_bytes("POST", "/v2/code/completions", auth, json.dumps(_completion(stream=True)).encode()))
    deadline = time.monotonic() + 15
    while b"\r\n\r\n" not in conn.buf and time.monotonic() < deadline:
        conn.buf += conn.sock.recv(65536)
    assert conn.buf.startswith(b"HTTP/1.1 200"), conn.buf[:200]
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    conn.close()
    # Exactly one record per abandoned request, written when Envoy tears the stream down.
    recs = _records(st, "hostile-disconnect", 3)
    time.sleep(1.5)
    recs = _records(st, "hostile-disconnect", 3)
    assert len(recs) == 3, recs
    assert all(r.get("response_code_details") == "downstream_remote_disconnect" for r in recs), recs
    _still_serving(st, watch)
