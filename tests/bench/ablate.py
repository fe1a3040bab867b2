#!/usr/bin/env python3
"""Where the filter chain's time goes: the same request through cumulative filter chains.

`.venv/bin/python tests/bench/ablate.py` starts one Envoy worker per chain, all against the bench's
fake upstream, and measures each chain's Envoy CPU time per request and p50 latency over
alternating rounds (docs/bench.md, "Profiling"). `./build.sh bench` runs the cumulative ones
(plain, floor, jwt_logger, jwt_log_auth, full) as its "Ablation" section (BENCH_ABLATE).

  plain        no HTTP filter but Envoy's router (the limit)
  noop1        one do-nothing wasm filter (tests/bench/noop): the price of being a wasm filter
  noop1_100_reads  the same reading one request header 100 times: the price of a host call
  noop1_100_pairs, noop1_100_setpairs, noop1_100_replace, noop1_100_remove  the same reading the
               whole request-header map, writing it back whole, setting one header, removing
               one absent header, 100 times each: the prices duo_kit's header writes are chosen by
  jwt_noop1, jwt_100_claims, jwt_100_payloads  jwt_authn and one do-nothing filter reading
               nothing, one payload claim 100 times, the whole payload map 100 times
  jwt          + envoy.filters.http.jwt_authn (fresh token per request)
  floor        jwt_authn + three do-nothing wasm filters: our chain's shape without our work
  jwt_logger   + duo_logger
  jwt_log_auth + duo_auth
  full         + duo_router (the shipped self_hosted chain)
  no_logger    the full chain without duo_logger

The difference between neighbours is one filter's cost. Environment: ABLATE_ROUNDS (3),
ABLATE_DURATION_S (3), ABLATE_KB (1), ABLATE_ONLY (comma-separated chain names; plain always
runs), ABLATE_NOOP_WASM (the do-nothing module; built when missing), ABLATE_PERF=1 (after the
rounds, `perf record -e cpu-clock` each chain's Envoy during one more run and print where its CPU
went: kernel, Envoy's own code, V8's generated code, other libraries). Writes
target/bench/ablate-<time>/ablate.{json,md}."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import benchlib  # noqa: E402
import run as bench  # noqa: E402
from chains import CHAINS, NOOP_WASM, chain  # noqa: E402
from run import ANSWER_TEXT, Load, Stacks, commit_body, headers_for, openai_answer  # noqa: E402

PATH = "/v1/prompts/generate_commit_message"


class AblationError(RuntimeError):
    pass


def ensure_noop() -> None:
    if not NOOP_WASM.exists():
        subprocess.run(["cargo", "build", "--quiet", "--release", "--target", "wasm32-wasip1", "-p", "duo_bench_noop"],
                       cwd=bench.ROOT, check=True, timeout=1800)


def perf_split(wrk: str, run_dir: Path, name: str, pid: int, port: int, load: Load, duration_s: int) -> str:
    """Share of the Envoy process's CPU samples per place: the kernel, Envoy's binary, anonymous
    executable memory (V8's generated code: our filters' wasm once compiled), other objects."""
    data = run_dir / f"{name}.perf.data"
    rec = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "4999", "-p", str(pid), "-o", str(data)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    bench.wrk_run(wrk, port, load, duration_s)
    rec.terminate()
    rec.wait(timeout=30)
    out = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--sort", "dso", "-q"], capture_output=True,
                         text=True, timeout=120).stdout
    rows = [line.split(None, 1) for line in out.splitlines() if line.strip().endswith(("]", ")")) or "%" in line]
    return "; ".join(f"{dso.strip()} {pct}" for pct, dso in rows[:6] if pct.endswith("%"))


def start_chains(st: Stacks, names: list[str], loads: dict[str, Load], token: str) -> dict[str, bench.BenchEnvoy]:
    """Every chain started and answering 200 with the expected body, or AblationError."""
    stacks = st.start_all({n: chain(*CHAINS[n]) for n in names})
    out: dict[str, bench.BenchEnvoy] = {}
    for n in names:
        e = stacks[n]
        if e is None:
            raise AblationError(f"{n}: Envoy refused the chain: {st.failed.get(n, '')[-300:]}")
        expect = ANSWER_TEXT if "duo_router" in CHAINS[n][0] else openai_answer()
        load = loads[n]
        why = bench.wait_ready(e.port, PATH, {**load.headers, "Authorization": f"Bearer {token}"}, load.body, expect)
        if why:
            raise AblationError(f"{n}: not answering as expected: {why}")
        out[n] = e
    return out


def measure(st: Stacks, wrk: str, run_dir: Path, names: list[str], rounds: int, duration_s: int, kb: int,
            tokens: int = 400, perf: bool = False) -> dict[str, Any]:
    """`rounds` alternating wrk runs of each chain (1 KB × `kb`, a fresh token per request); the raw
    per-round figures, for `benchlib.summarize_ablation`. Raises AblationError."""
    names = ["plain"] + [n for n in names if n != "plain"]
    gl = st.gitlab
    fresh = [gl.mint() for _ in range(tokens)]
    h, body = headers_for(gl, fresh[0]), commit_body(kb * 1024)
    loads = {n: Load(run_dir, f"ablate_{n}", PATH, h, body, fresh) for n in names}
    stacks = start_chains(st, names, loads, fresh[0])
    for n in names:
        bench.wrk_run(wrk, stacks[n].port, loads[n], 1)
    raw: dict[str, Any] = {"kb": kb, "rounds": rounds, "duration_s": duration_s, "order": names,
                           "chains": {n: {"cpu_us": [], "p50_us": []} for n in names}}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in (order if r % 2 == 0 else order[::-1]):
            e = stacks[n]
            assert e.proc is not None
            res = bench.wrk_run(wrk, e.port, loads[n], duration_s, pid=e.proc.pid)
            if res.get("failed"):
                raise AblationError(f"{n}: {res['failed']}")
            raw["chains"][n]["cpu_us"].append(res["cpu_us"])
            raw["chains"][n]["p50_us"].append(res["p50"])
        bench.say(f"ablation round {r + 1}/{rounds} done")
    if perf:
        raw["perf"] = {n: perf_split(wrk, run_dir, n, stacks[n].proc.pid, stacks[n].port, loads[n], duration_s)  # type: ignore[union-attr]
                       for n in names}
    return raw


def main() -> int:
    bench.procs.install_handlers()
    only = [c for c in os.environ.get("ABLATE_ONLY", "").split(",") if c]
    unknown = [c for c in only if c not in CHAINS]
    if unknown:
        print(f"ablate: unknown chain(s) {', '.join(unknown)}; known: {', '.join(CHAINS)}")
        return 2
    names = [n for n in CHAINS if not only or n in only or n == "plain"]
    run_dir = bench.ROOT / "target" / "bench" / ("ablate-" + time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
    run_dir.mkdir(parents=True, exist_ok=True)
    wrk = bench.ensure_wrk()
    ensure_noop()
    st = Stacks(run_dir)
    try:
        raw = measure(st, wrk, run_dir, names, int(os.environ.get("ABLATE_ROUNDS", "3")),
                      int(os.environ.get("ABLATE_DURATION_S", "3")), int(os.environ.get("ABLATE_KB", "1")),
                      perf=os.environ.get("ABLATE_PERF") == "1")
    except AblationError as e:
        print(f"ablate: {e}")
        return 1
    finally:
        st.stop()
        bench.procs.stop_all()
    summary = benchlib.summarize_ablation(raw)
    table = benchlib.ablation_table(summary)
    for n, split in raw.get("perf", {}).items():
        table += f"\n{n}: {split}"
    print(table)
    (run_dir / "ablate.json").write_text(json.dumps({"raw": raw, "summary": summary}, indent=2))
    (run_dir / "ablate.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
