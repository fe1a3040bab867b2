#!/usr/bin/env python3
"""Where the filter chain's time goes: the same request through cumulative filter chains.

`./build.sh bench ablate` (or `.venv/bin/python tests/bench/ablate.py`) starts one Envoy worker per
chain, all against the bench's fake upstream, and measures each chain's Envoy CPU time per request
and p50 latency over alternating rounds (docs/bench.md, "Profiling"):

  plain        no HTTP filter but Envoy's router (the limit)
  noop1        one do-nothing wasm filter (tests/bench/noop): the price of being a wasm filter
  noop1_100_reads  the same reading one request header 100 times: the price of a host call
  jwt_noop1, jwt_100_claims, jwt_100_payloads  jwt_authn and one do-nothing filter reading
               nothing, one payload claim 100 times, the whole payload map 100 times
  jwt          + envoy.filters.http.jwt_authn (fresh token per request)
  floor        jwt_authn + three do-nothing wasm filters: our chain's shape without our work
  jwt_logger   + duo_logger
  jwt_log_auth + duo_auth
  full         + duo_router (the shipped self_hosted chain)
  no_logger    the full chain without duo_logger

The difference between neighbours is one filter's cost. Environment: ABLATE_ROUNDS (3),
ABLATE_DURATION_S (3), ABLATE_KB (1), ABLATE_ONLY (comma-separated chain names), ABLATE_PERF=1
(after the rounds, `perf record -e cpu-clock` each chain's Envoy during one more run and print where
its CPU went: kernel, Envoy's own code, V8's generated code, other libraries)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402
from run import ANSWER_TEXT, Load, Stacks, bootstrap, commit_body, duo_boot, headers_for, openai_answer  # noqa: E402

ROUNDS = int(os.environ.get("ABLATE_ROUNDS", "3"))
DURATION_S = int(os.environ.get("ABLATE_DURATION_S", "3"))
KB = int(os.environ.get("ABLATE_KB", "1"))


NOOP_WASM = Path(os.environ.get("ABLATE_NOOP_WASM", bench.ROOT / "target" / "wasm32-wasip1" / "release" / "duo_bench_noop.wasm"))


def noop_filter(i: int, reads: str = "") -> dict[str, Any]:
    """A do-nothing wasm filter in its own VM, configured like ours (optionally reading one
    request header, a jwt_authn claim or the whole payload per request: see tests/bench/noop)."""
    return {"name": f"noop{i}", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": f"noop{i}", "root_id": f"noop{i}", "failure_policy": "FAIL_RELOAD",
                   "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": reads},
                   "allow_on_headers_stop_iteration": True,
                   "vm_config": {"vm_id": f"noop{i}", "runtime": "envoy.wasm.runtime.v8",
                                 "code": {"local": {"filename": str(NOOP_WASM)}}}}}}


def chain(keep: set[str], static_route: bool, noops: int = 0, reads: str = "") -> dict[str, Any]:
    """The shipped self_hosted chain with only the filters in `keep` (plus Envoy's router) and
    `noops` do-nothing wasm filters; without duo_router the catch-all route goes straight to the
    vLLM cluster."""
    boot = duo_boot("codestral", "envoy_jwt_authn")
    for hcm in bootstrap.hcms(boot):
        kept = [f for f in hcm["http_filters"] if f["name"] in keep]
        hcm["http_filters"] = kept + [noop_filter(i, reads) for i in range(noops)] + [
            f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.router"]
        if static_route:
            for vh in hcm["route_config"]["virtual_hosts"]:
                for r in vh["routes"]:
                    if "route" in r:
                        r["route"] = {"cluster": "vllm_codestral", "timeout": "120s"}
    return boot


JWT = "envoy.filters.http.jwt_authn"
CHAINS: dict[str, tuple[Any, ...]] = {
    "plain": (set(), True),
    "noop1": (set(), True, 1),
    "noop1_100_reads": (set(), True, 1, "100"),
    "jwt_noop1": ({JWT}, True, 1),
    "jwt_100_claims": ({JWT}, True, 1, "meta:100"),
    "jwt_100_payloads": ({JWT}, True, 1, "payload:100"),
    "jwt": ({JWT}, True),
    "floor": ({JWT}, True, 3),
    "jwt_logger": ({JWT, "duo_logger"}, True),
    "jwt_log_auth": ({JWT, "duo_logger", "duo_auth"}, True),
    "full": ({JWT, "duo_logger", "duo_auth", "duo_router"}, False),
    "no_logger": ({JWT, "duo_auth", "duo_router"}, False),
}


def perf_split(wrk: str, run_dir: Path, name: str, pid: int, port: int, load: Load) -> str:
    """Share of the Envoy process's CPU samples per place: the kernel, Envoy's binary, anonymous
    executable memory (V8's generated code: our filters' wasm once compiled), other objects."""
    data = run_dir / f"{name}.perf.data"
    rec = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "4999", "-p", str(pid), "-o", str(data)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    bench.wrk_run(wrk, port, load, DURATION_S)
    rec.terminate()
    rec.wait(timeout=30)
    out = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--sort", "dso", "-q"], capture_output=True,
                         text=True, timeout=120).stdout
    rows = [line.split(None, 1) for line in out.splitlines() if line.strip().endswith(("]", ")")) or "%" in line]
    return "; ".join(f"{dso.strip()} {pct}" for pct, dso in rows[:6] if pct.endswith("%"))


def main() -> int:
    bench.procs.install_handlers()
    only = [c for c in os.environ.get("ABLATE_ONLY", "").split(",") if c]
    names = [n for n in CHAINS if not only or n in only or n == "plain"]
    run_dir = bench.ROOT / "target" / "bench" / ("ablate-" + time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
    run_dir.mkdir(parents=True, exist_ok=True)
    wrk = bench.ensure_wrk()
    if not NOOP_WASM.exists():
        subprocess.run(["cargo", "build", "--quiet", "--release", "--target", "wasm32-wasip1", "-p", "duo_bench_noop"],
                       cwd=bench.ROOT, check=True)
    st = Stacks(run_dir)
    results: dict[str, dict[str, list[float]]] = {n: {"cpu_us": [], "p50_us": []} for n in names}
    try:
        stacks = st.start_all({n: chain(*CHAINS[n]) for n in names})
        gl = st.gitlab
        cached = gl.mint()
        fresh = [gl.mint() for _ in range(400)]
        h = headers_for(gl, cached)
        body = commit_body(KB * 1024)
        path = "/v1/prompts/generate_commit_message"
        loads = {n: Load(run_dir, n, path, h, body, fresh) for n in names}
        for n in names:
            e = stacks[n]
            if e is None:
                print(f"{n}: Envoy refused the chain: {st.failed.get(n, '')[-300:]}")
                return 1
            expect = ANSWER_TEXT if "duo_router" in CHAINS[n][0] else openai_answer()
            why = bench.wait_ready(e.port, path, {**h, "Authorization": f"Bearer {fresh[0]}"}, body, expect)
            if why:
                print(f"{n}: not answering as expected: {why}")
                return 1
            bench.wrk_run(wrk, e.port, loads[n], 1)
        for r in range(ROUNDS):
            order = names[r % len(names):] + names[:r % len(names)]
            for n in order:
                e = stacks[n]
                assert e is not None and e.proc is not None
                res = bench.wrk_run(wrk, e.port, loads[n], DURATION_S, pid=e.proc.pid)
                if res.get("failed"):
                    print(f"{n}: {res['failed']}")
                    return 1
                results[n]["cpu_us"].append(res["cpu_us"])
                results[n]["p50_us"].append(res["p50"])
            bench.say(f"round {r + 1}/{ROUNDS} done")
        if os.environ.get("ABLATE_PERF") == "1":
            for n in names:
                e = stacks[n]
                assert e is not None and e.proc is not None
                print(f"{n}: {perf_split(wrk, run_dir, n, e.proc.pid, e.port, loads[n])}")
    finally:
        st.stop()
        bench.procs.stop_all()
    base_cpu = statistics.median(results["plain"]["cpu_us"])
    base_p50 = statistics.median(results["plain"]["p50_us"])
    lines = [f"| chain ({KB} KB, fresh token) | Envoy CPU / request | added CPU | p50 | added p50 |", "| --- | --- | --- | --- | --- |"]
    for n in names:
        cpu = statistics.median(results[n]["cpu_us"])
        p50 = statistics.median(results[n]["p50_us"])
        lines.append(f"| {n} | {cpu:.0f} µs | {cpu - base_cpu:+.0f} µs | {p50:.0f} µs | {p50 - base_p50:+.0f} µs |")
    table = "\n".join(lines)
    print(table)
    (run_dir / "ablate.json").write_text(json.dumps(results, indent=2))
    (run_dir / "ablate.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
