"""Fault injection under load (part of ./build.sh soak; docs/reliability.md). While client threads
keep sending code completions through the shipped self_hosted config on real Envoy, each fault is
applied to the strict Python fakes: GitLab's JWKS endpoint failing or answering garbage, the
model upstream refusing connections, resetting before and after the first byte, trickling,
answering 10 MB, or sending malformed SSE. For each: what GitLab received (statuses), whether
every refusal was a GitLab-shaped JSON error or a reset stream, and that no wasm VM crashed and
Envoy served normally afterwards. Results: target/soak/faults.json and a table on stdout."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from pathlib import Path

from duo_e2e import Answer
from duo_e2e.client import request
from duo_e2e.fakes.base import Reply
from duo_e2e.hostile import VmWatch
from duo_e2e.runner import E2E

VLLM = "vllm_codestral"


def completion(stream: bool = False) -> dict:
    return {"current_file": {"file_name": "a.py", "language_identifier": "python",
                             "content_above_cursor": "def add(a, b):\n", "content_below_cursor": ""},
            "model_provider": "litellm", "model_name": "codestral", "prompt_version": 2, "stream": stream,
            "model_endpoint": "http://vllm.internal:8000/v1", "model_api_key": "sk-fault",
            "model_identifier": "custom_openai/Codestral-22B-v0.1"}


class Load:
    """`threads` clients sending completions until stopped; counts what GitLab would see."""

    def __init__(self, st, headers: dict[str, str], threads: int = 4, stream: bool = False):
        self.st, self.headers, self.stream = st, headers, stream
        self.statuses: Counter[str] = Counter()
        self.bad_errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        body = json.dumps(completion(self.stream))
        while not self._stop.is_set():
            try:
                r = request(self.st.port, "POST", "/v2/code/completions", headers=self.headers, body=body, timeout_s=60)
            except OSError as e:
                self.statuses[f"client:{type(e).__name__}"] += 1
                continue
            key = str(r.status) if r.complete else f"{r.status}-reset"
            self.statuses[key] += 1
            if r.status >= 400:
                try:
                    ok = isinstance(r.json(), dict)
                except ValueError:
                    ok = False
                if not ok:
                    self.bad_errors.append(f"{r.status} {r.body[:80]!r}")

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=90)


def _script(fake, make, seconds: float) -> None:
    """Every model request during `seconds` gets `make()`."""
    deadline = time.monotonic() + seconds
    fake.enqueue(*[make() for _ in range(2000)])
    while time.monotonic() < deadline:
        time.sleep(0.1)
    fake.reset()


def faults(st, gl, seconds: float):
    vllm = st.fake(VLLM)
    big = "x " * (5 * 1024 * 1024)  # ~10 MB of answer text
    yield "jwks_down", "GitLab's JWKS endpoint answers 503 (keys cached)", lambda: (gl.fail_next(10_000, 503), time.sleep(seconds), gl.fail_next(0))
    yield "jwks_garbage", "GitLab's JWKS endpoint answers garbage JSON", lambda: _garbage_jwks(gl, seconds)
    yield "model_refuses", "vLLM refuses connections (stopped)", lambda: _stopped(vllm, seconds)
    yield "reset_before_first_byte", "vLLM closes before answering", lambda: _script(vllm, lambda: Reply(200, [("content-type", "application/json")], chunks=[b"{}"], abort_after=0), seconds)
    yield "reset_after_first_byte", "vLLM closes after the first bytes", lambda: _script(vllm, lambda: Reply(200, [("content-type", "application/json")], chunks=[b'{"id":', b'"x"}'], abort_after=1), seconds)
    yield "trickling", "vLLM answers one piece every 0.5 s", lambda: _script(vllm, lambda: Answer(text="a b c d", delay_s=0.5), seconds)
    yield "answer_10mb", "vLLM answers 10 MB", lambda: _script(vllm, lambda: Answer(text=big), seconds)
    # Issue 18's first defect: an answer without a body (a 200 with Content-Length: 0, a load
    # balancer's empty 503) must become a GitLab answer, never a VM crash.
    yield "empty_200", "vLLM answers 200 with an empty body", lambda: _script(vllm, lambda: Reply(200, [("content-type", "application/json")], b""), seconds)
    yield "empty_503", "vLLM answers an empty 503", lambda: _script(vllm, lambda: Reply(503, [], b""), seconds)
    yield "malformed_sse", "vLLM streams malformed SSE", lambda: _script(vllm, lambda: Reply(200, [("content-type", "text/event-stream")], chunks=[b"data: {not json\n\n", b"data: [DONE]\n\n"]), seconds)


def _garbage_jwks(gl, seconds: float) -> None:
    original = gl.jwks
    gl.jwks = lambda: {"keys": "garbage", "x": [1, 2]}
    try:
        time.sleep(seconds)
    finally:
        gl.jwks = original


def _stopped(fake, seconds: float) -> None:
    port = fake.port
    fake.stop()
    try:
        time.sleep(seconds)
    finally:
        fake.start(port)


def run_all(run_dir: Path, seconds: float = 8.0) -> bool:
    e2e = E2E(run_dir)
    results = []
    ok = True
    try:
        st = e2e.stack("self_hosted", name="faults")
        gl = st.gitlab
        headers = {**gl.headers(token=gl.mint(exp=int(time.time()) + 3600)), "Content-Type": "application/json"}
        print(f"\nfaults: {'fault':<26} {'GitLab saw':<44} {'VM':<6} after", flush=True)
        only = [f for f in os.environ.get("FAULTS", "").split(",") if f]
        for name, what, apply in faults(st, gl, seconds):
            if only and name not in only:
                continue
            stream = name == "malformed_sse"
            watch = VmWatch(st)
            with Load(st, headers, stream=stream) as load:
                apply()
            st.fake(VLLM).take_refusals()
            try:
                watch.check()
                vm = "ok"
            except AssertionError as e:
                vm, ok = "CRASH", False
                print(f"    {e}", flush=True)
            after = request(st.port, "POST", "/v2/code/completions", headers=headers, body=json.dumps(completion()), timeout_s=30)
            served = after.status == 200
            ok = ok and served and not load.bad_errors
            saw = ", ".join(f"{k}: {v}" for k, v in sorted(load.statuses.items()))
            print(f"faults: {name:<26} {saw:<44} {vm:<6} {after.status}"
                  f"{'  non-JSON errors: ' + str(load.bad_errors[:2]) if load.bad_errors else ''}", flush=True)
            results.append({"fault": name, "what": what, "statuses": dict(load.statuses), "vm": vm,
                            "served_after": after.status, "non_json_errors": load.bad_errors[:5]})
            st.mark()
    finally:
        e2e.close()
    out = run_dir.parent / "faults.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"faults: {'PASS' if ok else 'FAIL'} ({out})", flush=True)
    return ok
