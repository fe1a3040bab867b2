"""Fault injection under load (part of ./build.sh soak; docs/reliability.md). While client threads
keep sending code completions through the shipped self_hosted config on real Envoy, each fault is
applied to the strict Python fakes: GitLab's JWKS endpoint failing, answering garbage, answering
slowly, or rotating its keys; the model upstream refusing connections, resetting before and after
the first byte, trickling, answering 10 MB, answering an empty body, or sending malformed SSE.
Then, on their own stacks: a wasm VM crash under FAIL_RELOAD (how long until requests are served
again) and duo_router's configuration changed through ECDS while traffic flows. For each: what
GitLab received (statuses), whether every refusal was a GitLab-shaped JSON error or a reset
stream, and that no duo wasm VM crashed and Envoy served normally afterwards.
Results: target/soak/faults.json and a table on stdout. `FAULTS=a,b` runs only the named faults."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from duo_e2e import Answer, bootstrap, probe
from duo_e2e.client import request
from duo_e2e.fakes.base import Reply
from duo_e2e.hostile import VmWatch, vm_stats
from duo_e2e.runner import E2E

VLLM = "vllm_codestral"


def completion(stream: bool = False) -> dict:
    return {"current_file": {"file_name": "a.py", "language_identifier": "python",
                             "content_above_cursor": "def add(a, b):\n", "content_below_cursor": ""},
            "model_provider": "litellm", "model_name": "codestral", "prompt_version": 2, "stream": stream,
            "model_endpoint": "http://vllm.internal:8000/v1", "model_api_key": "sk-fault",
            "model_identifier": "custom_openai/Codestral-22B-v0.1"}


@dataclass
class Hit:
    """One request of a Load: when it was sent and answered (monotonic seconds), what GitLab got."""

    t0: float
    t1: float
    status: str
    reason: str = ""  # x-duo-auth-reason of a refusal


class Load:
    """`threads` clients sending completions until stopped; counts what GitLab would see and keeps
    every request's timing (`hits`) for the faults that measure when things changed."""

    def __init__(self, st, headers: dict[str, str], threads: int = 4, stream: bool = False):
        self.st, self.headers, self.stream = st, headers, stream
        self.statuses: Counter[str] = Counter()
        self.bad_errors: list[str] = []
        self.hits: list[Hit] = []
        self.samples: dict[str, str] = {}  # the first error body of each status (for the report)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        body = json.dumps(completion(self.stream))
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                r = request(self.st.port, "POST", "/v2/code/completions", headers=self.headers, body=body, timeout_s=60)
            except OSError as e:
                key = f"client:{type(e).__name__}"
                self.statuses[key] += 1
                with self._lock:
                    self.hits.append(Hit(t0, time.monotonic(), key))
                continue
            key = str(r.status) if r.complete else f"{r.status}-reset"
            self.statuses[key] += 1
            with self._lock:
                self.hits.append(Hit(t0, time.monotonic(), key, r.header("x-duo-auth-reason") or ""))
            if r.status >= 400:
                self.samples.setdefault(key, r.text[:160])
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

    def between(self, start: float, end: float) -> Counter[str]:
        """Statuses (with the auth reason of a refusal) of the requests sent in [start, end)."""
        with self._lock:
            hits = [h for h in self.hits if start <= h.t0 < end]
        return Counter(f"{h.status} {h.reason}".strip() for h in hits)

    def latency_ms(self, start: float = 0.0, end: float = float("inf")) -> dict[str, float]:
        with self._lock:
            ms = sorted((h.t1 - h.t0) * 1000 for h in self.hits if start <= h.t0 < end)
        if not ms:
            return {}
        return {"p50": round(ms[len(ms) // 2], 1), "max": round(ms[-1], 1)}


def counts(c: Counter[str]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(c.items())) or "-"


def _script(fake, make, seconds: float) -> None:
    """Every model request during `seconds` gets `make()`."""
    deadline = time.monotonic() + seconds
    fake.enqueue(*[make() for _ in range(2000)])
    while time.monotonic() < deadline:
        time.sleep(0.1)
    fake.reset()


Fault = Callable[[Load], "dict[str, Any] | None"]


def faults(st, gl, headers: dict[str, str], seconds: float):
    """(name, what, apply): `apply(load)` runs while the completion load is on and may return
    figures of its own (`ok: False` in them fails the run)."""
    vllm = st.fake(VLLM)
    big = "x " * (5 * 1024 * 1024)  # ~10 MB of answer text
    yield "jwks_down", "GitLab's JWKS endpoint answers 503 (keys cached)", lambda _l: (gl.fail_next(10_000, 503), time.sleep(seconds), gl.fail_next(0)) and None
    yield "jwks_garbage", "GitLab's JWKS endpoint answers garbage JSON", lambda _l: _garbage_jwks(gl, seconds)
    yield "jwks_slow", "GitLab's JWKS endpoint answers after 3 s, a new key published", lambda load: _jwks_slow(st, gl, load, 3.0, seconds)
    yield "jwks_too_slow", "GitLab's JWKS endpoint answers after 12 s (beyond every fetch timeout), a new key published", lambda load: _jwks_slow(st, gl, load, 12.0, seconds)
    yield "jwks_rotation", "GitLab rotates its signing key, then retires the old one", lambda load: _rotation(st, gl, load, seconds)
    yield "model_refuses", "vLLM refuses connections (stopped, its open connections closed)", lambda load: _refused(st, vllm, load, headers, seconds)
    yield "reset_before_first_byte", "vLLM closes before answering", lambda _l: _script(vllm, lambda: Reply(200, [("content-type", "application/json")], chunks=[b"{}"], abort_after=0), seconds)
    yield "reset_after_first_byte", "vLLM closes after the first bytes", lambda _l: _script(vllm, lambda: Reply(200, [("content-type", "application/json")], chunks=[b'{"id":', b'"x"}'], abort_after=1), seconds)
    yield "trickling", "vLLM answers one piece every 0.5 s", lambda _l: _script(vllm, lambda: Answer(text="a b c d", delay_s=0.5), seconds)
    yield "answer_10mb", "vLLM answers 10 MB", lambda _l: _script(vllm, lambda: Answer(text=big), seconds)
    # Issue 18's first defect: an answer without a body (a 200 with Content-Length: 0, a load
    # balancer's empty 503) must become a GitLab answer, never a VM crash.
    yield "empty_200", "vLLM answers 200 with an empty body", lambda _l: _script(vllm, lambda: Reply(200, [("content-type", "application/json")], b""), seconds)
    yield "empty_503", "vLLM answers an empty 503", lambda _l: _script(vllm, lambda: Reply(503, [], b""), seconds)
    yield "malformed_sse", "vLLM streams malformed SSE", lambda _l: _script(vllm, lambda: Reply(200, [("content-type", "text/event-stream")], chunks=[b"data: {not json\n\n", b"data: [DONE]\n\n"]), seconds)


def _garbage_jwks(gl, seconds: float) -> None:
    original = gl.jwks
    gl.jwks = lambda: {"keys": "garbage", "x": [1, 2]}
    try:
        time.sleep(seconds)
    finally:
        gl.jwks = original


def _key_load(st, gl, key, threads: int = 2) -> Load:
    h = {**gl.headers(token=gl.mint(key=key, exp=int(time.time()) + 3600)), "Content-Type": "application/json"}
    return Load(st, h, threads=threads)


def _jwks_slow(st, gl, load: Load, delay_s: float, seconds: float) -> dict[str, Any]:
    """Every discovery/JWKS answer takes `delay_s`; a new key is published and two clients use it
    (its kid is unknown to jwt_authn's cached set, so duo_auth refetches: the slow path). The load's
    tokens (old key) must be served as before; the figures say what the new key's requests got."""
    original, old = gl.handle, gl.current

    def slow(req):
        time.sleep(delay_s)
        return original(req)

    gl.handle = slow
    new = gl.rotate()
    try:
        t0 = time.monotonic()
        with _key_load(st, gl, new) as fresh:
            time.sleep(max(seconds, delay_s + 4))
        first_ok = min((h.t1 - t0 for h in fresh.hits if h.status == "200"), default=None)
        return {"new_key": counts(fresh.between(0, float("inf"))), "new_key_first_200_s": round(first_ok, 2) if first_ok is not None else None,
                "new_key_latency_ms": fresh.latency_ms(), "old_key_latency_ms": load.latency_ms(t0),
                "ok": not fresh.bad_errors and all(k.startswith(("200", "401")) for k in fresh.statuses)}
    finally:
        gl.handle = original
        gl.current = old  # later faults mint with the key the stack started with


def _rotation(st, gl, load: Load, seconds: float) -> dict[str, Any]:
    """GitLab's rotation under load: a new key is published beside the old one and signs from then
    on (two clients with new-key tokens start at once), then the old key is retired. The shipped
    config promises new-key tokens are accepted at once (duo_auth's kid-miss refetch, docs/auth.md)
    and old-key tokens while their key is published."""
    old = gl.current
    phase = max(seconds / 2, 4.0)
    time.sleep(1.0)
    t_rotate = time.monotonic()
    new = gl.rotate()
    with _key_load(st, gl, new) as fresh:
        time.sleep(phase)
        t_retire = time.monotonic()
        gl.retire(old)
        time.sleep(phase)
    t_end = time.monotonic()
    gl.publish([old, new])  # later faults use old-key tokens again
    gl.current = old
    refetches = [r for r in gl.history if r.received_at >= time.time() - (t_end - t_rotate) - 1]
    new_all = fresh.between(0, float("inf"))
    with fresh._lock:
        refused = [h for h in fresh.hits if h.status != "200"]
    return {
        # When the new key's refusals happened, seconds after the rotation (first sent, last answered).
        "new_key_refused_between_s": [round(min(h.t0 for h in refused) - t_rotate, 3), round(max(h.t1 for h in refused) - t_rotate, 3)] if refused else None,
        "old_key_before_rotation": counts(load.between(0, t_rotate)),
        "old_key_both_published": counts(load.between(t_rotate, t_retire)),
        "old_key_after_retirement": counts(load.between(t_retire, t_end)),
        "new_key_both_published": counts(fresh.between(t_rotate, t_retire)),
        "new_key_after_retirement": counts(fresh.between(t_retire, t_end)),
        "key_fetches_during_rotation": len(refetches),
        # What the docs promise: the new key from its first request on, the old one while published.
        "ok": set(new_all) <= {"200"} and set(load.between(0, t_retire)) <= {"200"},
    }


def _refused(st, fake, load: Load, headers: dict[str, str], seconds: float) -> dict[str, Any]:
    """The model server goes away: its listening socket closed and every open (pooled keep-alive)
    connection closed too, so Envoy's next connect is refused. Then it comes back on the same port:
    how long until GitLab's requests are served again."""
    port = fake.port
    fake.stop()
    t_down = time.monotonic()
    dropped = 0
    while time.monotonic() < t_down + 0.5:  # also a connection accepted just before the stop
        dropped += fake.drop_connections()
        time.sleep(0.05)
    time.sleep(seconds)
    fake.start(port)
    t_up = time.monotonic()
    recovered = None
    while time.monotonic() < t_up + 60:
        ok = [h.t1 for h in load.hits if h.status == "200" and h.t0 >= t_up]
        if ok:
            recovered = min(ok) - t_up
            break
        time.sleep(0.1)
    refused = st.envoy.counter(f"cluster.{VLLM}.upstream_cx_connect_fail") or 0
    return {"while_down": counts(load.between(t_down, t_up)), "open_connections_closed": dropped,
            "envoy_upstream_cx_connect_fail": refused,
            "served_again_after_restart_s": round(recovered, 2) if recovered is not None else None,
            "ok": recovered is not None and "200" not in load.between(t_down + 0.5, t_up)}


# ---- faults on stacks of their own --------------------------------------------------------------

PROBE_CRASH = {"x-probe-crash": "1"}


def _with_crash_probe(boot: dict[str, Any]) -> None:
    """The shipped chain plus the test-only probe filter (tests/e2e/probe) right after jwt_authn,
    with the shipped FAIL_RELOAD: `x-probe-crash: 1` traps its VM (what a filter panic becomes).
    The duo filters have no known crash left, so the probe stands in for one."""
    wasm = probe.build()
    for hcm in bootstrap.hcms(boot):
        chain = hcm["http_filters"]
        at = next(i for i, f in enumerate(chain) if f["name"] == "envoy.filters.http.jwt_authn") + 1
        chain.insert(at, {"name": "e2e_probe", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {"name": "e2e_probe", "root_id": "e2e_probe",
                       "vm_config": {"vm_id": "e2e_probe", "runtime": "envoy.wasm.runtime.v8",
                                     "code": {"local": {"filename": str(wasm)}}},
                       "failure_policy": "FAIL_RELOAD", "allow_on_headers_stop_iteration": True}}})
        break  # the HTTP listener; the Agent Platform's gRPC listener is not under load here


def vm_crash(e2e: E2E, seconds: float) -> dict[str, Any]:
    """Three VM crashes, 4 s apart, while 4 clients send completions through the full chain on 2
    workers: per crash, how many other requests failed and when the last of them ended (the time
    until requests are served again), and that the duo filters' own VMs never reloaded."""
    st = e2e.stack("self_hosted", name="faults_crash", fresh=True, patch=_with_crash_probe)
    gl = st.gitlab
    headers = {**gl.headers(token=gl.mint(exp=int(time.time()) + 3600)), "Content-Type": "application/json"}
    duo_before = {k: v for k, v in vm_stats(st.envoy).items() if k.startswith("wasm.duo_")}
    crashes = []
    with Load(st, headers) as load:
        time.sleep(2.0)
        for _ in range(3):
            t = time.monotonic()
            r = request(st.port, "POST", "/v2/code/completions", headers={**headers, **PROBE_CRASH},
                        body=json.dumps(completion()), timeout_s=30)
            crashes.append((t, time.monotonic(), r.status))
            time.sleep(4.0)
    out: list[dict[str, Any]] = []
    with load._lock:
        hits = list(load.hits)
    for i, (t, t_answer, status) in enumerate(crashes):
        # This crash's window: from 1 s before it (requests already in flight on the worker) to
        # 1 s before the next one.
        end = crashes[i + 1][0] - 1.0 if i + 1 < len(crashes) else float("inf")
        window = [h for h in hits if t - 1.0 <= h.t0 < end]
        failed = [h for h in window if h.status != "200"]
        in_flight = [h for h in failed if h.t0 < t]  # sent before the crash, failed with it
        later = [h for h in failed if h.t0 >= t]  # sent after it: the worker not serving yet
        served_again = max((h.t1 for h in later), default=t_answer) - t
        out.append({"crash_answer": status, "window": counts(Counter(h.status for h in window)),
                    "failed_in_flight": len(in_flight), "failed_after": len(later),
                    "failure_offsets_s": [[round(h.t0 - t, 3), round(h.t1 - t, 3)] for h in failed],
                    "served_again_after_s": round(served_again, 3)})
    duo_after = {k: v for k, v in vm_stats(st.envoy).items() if k.startswith("wasm.duo_")}
    reloads = {k: v for k, v in vm_stats(st.envoy).items() if "e2e_probe" in k or "v8.created" in k}
    probe_stats = st.envoy.admin("/stats?filter=^wasm\\.e2e_probe\\.").strip().replace("\n", "; ")
    st.stop()
    return {"crashes": out, "probe_vm_stats": probe_stats, "v8": reloads, "duo_vms_untouched": duo_before == duo_after,
            "non_json_errors": load.bad_errors[:5], "total": counts(load.statuses),
            "ok": duo_before == duo_after and not load.bad_errors and all(c["served_again_after_s"] < 10 for c in out)}


WASM = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
TYPED_EXT = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"


def _router_over_ecds(path: Path) -> Callable[[dict[str, Any]], None]:
    """duo_router's filter delivered through ECDS from a file (docs/istio.md: how Istio delivers the
    Wasm filters, with a file instead of ADS), so its configuration can change while Envoy runs."""

    def patch(boot: dict[str, Any]) -> None:
        boot["node"] = {"id": "duo-gateway-faults", "cluster": "duo-gateway"}
        hcm = next(bootstrap.hcms(boot))
        i, f = next((i, f) for i, f in enumerate(hcm["http_filters"]) if f["name"] == "duo_router")
        _write_ecds(path, f["typed_config"])
        hcm["http_filters"][i] = {"name": "duo_router", "config_discovery": {
            "config_source": {"path_config_source": {"path": str(path)}, "initial_fetch_timeout": "10s"},
            "type_urls": [WASM]}}
    return patch


def _write_ecds(path: Path, typed_config: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"resources": [{"@type": TYPED_EXT, "name": "duo_router", "typed_config": typed_config}]}))
    os.replace(tmp, path)  # Envoy reloads the file when it is moved into place


def config_change(e2e: E2E, seconds: float) -> dict[str, Any]:
    """duo_router's configuration changed twice under load (codestral's max_tokens 512 -> 256 ->
    512, through ECDS): zero failed requests, and the model receives the new value from when on."""
    path = e2e.run_dir / "ecds-duo_router.json"
    st = e2e.stack("self_hosted", name="faults_config", fresh=True, patch=_router_over_ecds(path))
    gl, vllm = st.gitlab, st.fake(VLLM)
    headers = {**gl.headers(token=gl.mint(exp=int(time.time()) + 3600)), "Content-Type": "application/json"}
    shipped = json.loads(json.dumps(bootstrap.wasm_filter(st.shipped_boot, "duo_router")))
    watch = VmWatch(st)

    def with_max_tokens(n: int) -> dict[str, Any]:
        cfg = json.loads(json.dumps(shipped))
        doc = json.loads(cfg["configuration"]["value"])
        doc["models"]["codestral"]["params"]["max_tokens"] = n
        cfg["configuration"]["value"] = json.dumps(doc)
        return {"@type": WASM, "config": cfg}

    changes = []
    with Load(st, headers) as load:
        for n in (256, 512):
            time.sleep(max(seconds / 3, 3.0))
            changes.append((time.time(), time.monotonic(), n))
            _write_ecds(path, with_max_tokens(n))
        time.sleep(max(seconds / 3, 3.0))
    seen = [(r.received_at, (r.json() or {}).get("max_tokens")) for r in vllm.history if r.path.endswith("/completions") and r.body]
    applied = []
    for i, (wall, _mono, n) in enumerate(changes):
        until = changes[i + 1][0] if i + 1 < len(changes) else float("inf")
        after = [(t, v) for t, v in seen if wall <= t < until]
        first_new = min((t for t, v in after if v == n), default=None)
        stale = [t for t, v in after if v != n and first_new is not None and t > first_new]
        applied.append({"max_tokens": n, "in_effect_after_s": round(first_new - wall, 3) if first_new else None,
                        "old_value_after_switch": len(stale)})
    # A new plugin configuration gets new VMs (v8.created moves); a crash would move vm_reload*.
    after = vm_stats(st.envoy)
    reloads = {k: (watch.stats.get(k), v) for k, v in after.items() if "vm_reload" in k and watch.stats.get(k) != v}
    panics = [l for l in st.envoy.log()[watch.log_at:].splitlines() if "panicked at" in l or "wasm trap" in l.lower()]
    created = after.get("wasm.envoy.wasm.runtime.v8.created", 0) - watch.stats.get("wasm.envoy.wasm.runtime.v8.created", 0)
    st.stop()
    failed = {k: v for k, v in load.statuses.items() if k != "200"}
    return {"changes": applied, "statuses": counts(load.statuses), "failed": failed, "vm_reloads": reloads,
            "panics": panics[:3], "v8_vms_created": created,
            "ok": not failed and not reloads and not panics
            and all(a["in_effect_after_s"] is not None and a["old_value_after_switch"] == 0 for a in applied)}


def run_all(run_dir: Path, seconds: float = 8.0) -> bool:
    e2e = E2E(run_dir)
    results = []
    ok = True
    only = [f for f in os.environ.get("FAULTS", "").split(",") if f]
    try:
        st = e2e.stack("self_hosted", name="faults")
        gl = st.gitlab
        headers = {**gl.headers(token=gl.mint(exp=int(time.time()) + 3600)), "Content-Type": "application/json"}
        print(f"\nfaults: {'fault':<26} {'GitLab saw':<44} {'VM':<6} after", flush=True)
        for name, what, apply in faults(st, gl, headers, seconds):
            if only and name not in only:
                continue
            stream = name == "malformed_sse"
            watch = VmWatch(st)
            with Load(st, headers, stream=stream) as load:
                extra = apply(load) or {}
            st.fake(VLLM).take_refusals()
            try:
                watch.check()
                vm = "ok"
            except AssertionError as e:
                vm, ok = "CRASH", False
                print(f"    {e}", flush=True)
            after = request(st.port, "POST", "/v2/code/completions", headers=headers, body=json.dumps(completion()), timeout_s=30)
            served = after.status == 200
            ok = ok and served and not load.bad_errors and extra.get("ok", True)
            print(f"faults: {name:<26} {counts(load.statuses):<44} {vm:<6} {after.status}"
                  f"{'  non-JSON errors: ' + str(load.bad_errors[:2]) if load.bad_errors else ''}", flush=True)
            if extra or load.samples:
                print(f"        {json.dumps({**extra, 'error_samples': load.samples})}", flush=True)
            results.append({"fault": name, "what": what, "statuses": dict(load.statuses), "vm": vm,
                            "served_after": after.status, "non_json_errors": load.bad_errors[:5],
                            "latency_ms": load.latency_ms(), "error_samples": load.samples, **extra})
            st.mark()
        for name, what, run in (("vm_crash", "a wasm VM traps under FAIL_RELOAD, 3 times", vm_crash),
                                ("config_change", "duo_router's configuration changed through ECDS, twice", config_change)):
            if only and name not in only:
                continue
            extra = run(e2e, seconds)
            ok = ok and extra.get("ok", False)
            print(f"faults: {name:<26} {'PASS' if extra.get('ok') else 'FAIL'}\n        {json.dumps(extra)}", flush=True)
            results.append({"fault": name, "what": what, **extra})
    finally:
        e2e.close()
    out = run_dir.parent / "faults.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"faults: {'PASS' if ok else 'FAIL'} ({out})", flush=True)
    return ok
