#!/usr/bin/env python3
"""The soak of ./build.sh soak (docs/reliability.md): SOAK_REQUESTS (default 1,000,000) mixed
GitLab requests through the full chain on real Envoy 1.40 (jwt_authn, duo_logger, duo_auth,
duo_router, router), at steady load from wrk, then the fault-injection scenarios (faults.py).

    ./build.sh soak                                   # 1M requests, then the faults
    SOAK_REQUESTS=200000 ./build.sh soak              # shorter
    SOAK_BUDGET_S=3600 ./build.sh soak                # stop after the round that would overrun an hour
    .venv/bin/python tests/soak/run.py --faults-only  # (after ./build.sh build)

Mix: code completions (vLLM), generate_commit_message (Azure), streamed explain_code (vLLM SSE),
streamed code generations (Bedrock ConverseStream), 401 (tampered token), 403 (disabled
feature). The model upstreams are a second Envoy answering each platform path with a fixed body
that the strict Python fakes produced for the same request in a calibration pass (Python fakes
would be the bottleneck at soak rates; the e2e layer checks every request strictly).

Checks, per round of SOAK_REQUESTS/10 (the first round is the warm-up): Envoy's RSS after each
round (growth after warm-up <= 5 %), zero 5xx in the access log, zero wasm VM reloads or new VMs
(Envoy's wasm stats), access-log records == Envoy's downstream_rq_total (one record per request).
With SOAK_BUDGET_S, no round starts that would end after the budget (judged by the rounds so far):
the report then says how many requests were actually sent (`stopped_by_budget`).
Report: target/soak/report.json and a table on stdout; exit status non-zero when a check fails."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from duo_e2e import bootstrap  # noqa: E402
from duo_e2e.envoy import ENVOY, Envoy  # noqa: E402
from duo_e2e.fakes.base import FakeServer  # noqa: E402
from duo_e2e.hostile import vm_stats  # noqa: E402
from duo_e2e.runner import E2E  # noqa: E402

MODEL_CLUSTERS = ("vllm_codestral", "bedrock_us_east_1", "azure_eastus")
AZURE_KEY = "azure-test-key"


def completion(stream: bool = False) -> dict:
    return {"current_file": {"file_name": "a.py", "language_identifier": "python",
                             "content_above_cursor": "def add(a, b):\n", "content_below_cursor": "\nprint(add(1, 2))\n"},
            "model_provider": "litellm", "model_name": "codestral", "prompt_version": 2, "stream": stream,
            "model_endpoint": "http://vllm.internal:8000/v1", "model_api_key": "sk-soak",
            "model_identifier": "custom_openai/Codestral-22B-v0.1"}


def explain() -> dict:
    meta = {"provider": "openai", "name": "codestral", "endpoint": "http://vllm.internal:8000/v1",
            "api_key": "sk-soak", "identifier": "custom_openai/Codestral-22B-v0.1"}
    return {"inputs": {"input": "explain this", "selected_text": "x = sorted(y)[::-1]", "file_content": "",
                       "language_info": ""}, "stream": True, "model_metadata": meta}


def commit_message() -> dict:
    meta = {"provider": "openai", "name": "gpt", "identifier": "azure/gpt-4o-deploy",
            "endpoint": "https://myres.openai.azure.com/", "api_key": AZURE_KEY}
    return {"inputs": {"diff": "diff --git a/x b/x\n+y\n"}, "stream": False, "model_metadata": meta}


def generation() -> dict:
    return {"current_file": {"file_name": "main.go", "content_above_cursor": "package main\n\n// reverse a string\n",
                             "content_below_cursor": ""},
            "stream": True, "model_provider": "litellm", "prompt_version": 2, "prompt_id": "code_suggestions/generations",
            "prompt": "reverse a string", "model_name": "claude_3",
            "model_identifier": "bedrock/us.anthropic.claude-3-5-sonnet-20240620-v1:0"}


# (name, weight, path, body, expected status, model cluster or None)
MIX = [
    ("completion", 40, "/v2/code/completions", completion(), 200, "vllm_codestral"),
    ("commit_message", 15, "/v1/prompts/generate_commit_message", commit_message(), 200, "azure_eastus"),
    ("chat_stream", 15, "/v1/prompts/chat/explain_code", explain(), 200, "vllm_codestral"),
    ("generation_stream", 10, "/v2/code/generations", generation(), 200, "bedrock_us_east_1"),
    ("unauthenticated", 10, "/v2/code/completions", completion(), 401, None),
    ("forbidden", 10, "/v1/prompts/summarize_review", {"inputs": {"draft_notes_content": "x"}}, 403, None),
]


class StaticUpstream(FakeServer):
    """Stands in for a fake in the Stack: the cluster points at the model Envoy's port."""

    kind = "static"

    def __init__(self, name: str, port: int):
        super().__init__(name)
        self._port = port
        self._server = object()  # never started by the Stack

    @property
    def port(self) -> int:
        return self._port

    def stop(self) -> None:
        pass


def calibrate(e2e: E2E) -> tuple[dict[str, tuple[str, bytes]], dict[str, dict[str, str]], FakeServer]:
    """One request of each kind through the shipped config with the strict Python fakes: what the
    router sent each platform (path) and what the fake answered (content type, body); the headers
    each kind is sent with (tokens minted for the whole soak)."""
    st = e2e.stack("self_hosted", name="calibration")
    gl = st.gitlab
    valid_s = 12 * 3600
    headers: dict[str, dict[str, str]] = {}
    answers: dict[str, tuple[str, bytes]] = {}
    for name, _w, path, body, status, cluster in MIX:
        h = gl.headers(token=gl.mint(exp=int(time.time()) + valid_s))
        if name == "unauthenticated":
            h = gl.headers(token=gl.mint_bad_signature(exp=int(time.time()) + valid_s))
        h["Content-Type"] = "application/json"
        h["User-Agent"] = f"duo-soak/{name}"
        headers[name] = h
        r = st.post(path, json_body=body, headers=h, timeout_s=30)
        assert r.status == status, f"calibration {name}: {r}"
        if cluster is None:
            continue
        fake = st.fake(cluster)
        sent = fake.last()
        assert not sent.refused, f"calibration {name}: {cluster} refused {sent}"
        reply = fake.handle(sent)
        ctype = dict((k.lower(), v) for k, v in reply.headers).get("content-type", "application/json")
        data = b"".join(reply.chunks) if reply.chunks is not None else reply.body
        answers[sent.path] = (ctype, data)
    return answers, headers, gl


def model_envoy(run_dir: Path, answers: dict[str, tuple[str, bytes]]) -> Envoy:
    routes = []
    for i, (path, (ctype, data)) in enumerate(sorted(answers.items())):
        f = run_dir / f"answer-{i}.bin"
        f.write_bytes(data)
        routes.append({"match": {"path": path}, "direct_response": {"status": 200, "body": {"filename": str(f)}},
                       "response_headers_to_add": [{"header": {"key": "content-type", "value": ctype}}]})
    routes.append({"match": {"prefix": "/"}, "direct_response": {"status": 404, "body": {"inline_string": "no such path"}}})
    boot = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": [{
            "name": "models", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "models",
                "route_config": {"max_direct_response_body_size_bytes": 1 << 20,
                                 "virtual_hosts": [{"name": "m", "domains": ["*"], "routes": routes}]},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}]},
    }
    cfg = bootstrap.dump(boot, run_dir / "models.yaml")
    return Envoy(cfg, run_dir, name="models", concurrency=1).start()


def wrk_script(run_dir: Path, headers: dict[str, dict[str, str]]) -> Path:
    def lua(s: str) -> str:
        return "'" + s.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"

    reqs = []
    for name, weight, path, body, _status, _cluster in MIX:
        hs = "{" + ", ".join(f"[{lua(k)}] = {lua(v)}" for k, v in headers[name].items()) + "}"
        reqs.extend([f"wrk.format('POST', {lua(path)}, {hs}, {lua(json.dumps(body))})"] * weight)
    script = f"""
local quota = tonumber(os.getenv("SOAK_QUOTA"))
local requests = {{}}
local i, done_count = 0, 0
counts = {{}}  -- global: done() reads it with thread:get
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args)
  requests = {{ {", ".join(reqs)} }}
  -- each thread starts at a different place in the mix
  i = math.random(#requests)
end
function request()
  i = i % #requests + 1
  return requests[i]
end
function response(status, headers, body)
  done_count = done_count + 1
  local key = "s" .. status
  counts[key] = (counts[key] or 0) + 1
  if done_count == quota then
    -- wrk ends only on its duration or SIGINT: tell the runner this thread is through.
    wrk.thread:stop()
    io.open(os.getenv("SOAK_OUT") .. ".stop." .. tostring({{}}):sub(8), "w"):close()
  end
end
function done(summary, latency, requests)
  local total = {{}}
  for _, t in ipairs(threads) do
    for _, code in ipairs({{200, 401, 403, 404, 413, 422, 500, 502, 503, 504}}) do
      local n = t:get("counts")["s" .. code]
      if n then total[code] = (total[code] or 0) + n end
    end
  end
  local f = io.open(os.getenv("SOAK_OUT"), "w")
  f:write("{{")
  local first = true
  for code, n in pairs(total) do
    if not first then f:write(",") end
    f:write('"' .. code .. '":' .. n)
    first = false
  end
  f:write(string.format('}}\\n%d %d %d\\n', summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write, summary.errors.timeout))
  f:write(string.format('%.1f %.1f %.1f\\n', latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
  f:close()
end
"""
    path = run_dir / "soak.lua"
    path.write_text(script)
    return path


def run_wrk(threads: int, connections: int, script: Path, port: int, env: dict[str, str], out: Path) -> None:
    """wrk until every thread has its quota of answers (it then SIGINTs cleanly: done() runs)."""
    proc = subprocess.Popen(["wrk", f"-t{threads}", f"-c{connections}", "-d", "24h", "--timeout", "30s",
                             "-s", str(script), f"http://127.0.0.1:{port}"], env=env, stdout=subprocess.DEVNULL)
    try:
        while len(list(out.parent.glob(out.name + ".stop.*"))) < threads:
            if proc.poll() is not None:
                raise RuntimeError(f"wrk exited early with {proc.returncode}")
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process used so far (/proc/PID/stat, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=int(os.environ.get("SOAK_REQUESTS", 1_000_000)))
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=int(os.environ.get("SOAK_CONNECTIONS", 8)))
    ap.add_argument("--threads", type=int, default=int(os.environ.get("SOAK_THREADS", 1)))
    ap.add_argument("--budget-s", type=float, default=float(os.environ.get("SOAK_BUDGET_S", 0)) or None)
    ap.add_argument("--faults-only", action="store_true")
    ap.add_argument("--no-faults", action="store_true")
    args = ap.parse_args(argv)

    run_dir = ROOT / "target" / "soak" / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"soak: run directory {run_dir.relative_to(ROOT)}, Envoy {ENVOY}", flush=True)
    ok = True
    if not args.faults_only:
        ok = soak(args, run_dir) and ok
    if not args.no_faults:
        import faults  # noqa: PLC0415 - beside this file

        ok = faults.run_all(run_dir) and ok
    print("soak: " + ("PASS" if ok else "FAIL"), flush=True)
    return 0 if ok else 1


def soak(args: argparse.Namespace, run_dir: Path) -> bool:
    e2e = E2E(run_dir)
    models = None
    try:
        answers, headers, gitlab = calibrate(e2e)
        models = model_envoy(run_dir, answers)
        # The same fake GitLab (its signing key minted the soak's tokens) serves the soak's JWKS.
        fakes = {"gitlab": gitlab, **{c: StaticUpstream(c, models.port) for c in MODEL_CLUSTERS}}
        st = e2e.stack("self_hosted", name="soak", fakes=fakes)
        script = wrk_script(run_dir, headers)
        per_round = max(1, args.requests // args.rounds)
        vm_before = vm_stats(st.envoy)
        rows = []
        print(f"soak: {args.requests} requests in {args.rounds} rounds of {per_round}, wrk -t{args.threads} "
              f"-c{args.connections} (round 1 is the warm-up)", flush=True)
        print(f"{'round':>5} {'requests':>9} {'seconds':>8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'records':>8} "
              f"{'5xx':>4} {'RSS MiB':>8} {'cpu ms':>6} statuses", flush=True)
        started = time.monotonic()
        stopped_by_budget = False
        for rnd in range(1, args.rounds + 1):
            if args.budget_s and rows:
                spent = time.monotonic() - started
                if spent + spent / len(rows) > args.budget_s:
                    stopped_by_budget = True
                    print(f"soak: stopping after {len(rows)} rounds: round {rnd} would end after the {args.budget_s:.0f} s budget", flush=True)
                    break
            out = run_dir / f"wrk-{rnd}.txt"
            rq_before = st.envoy.counter("http.duo_gateway.downstream_rq_total") or 0
            log_at = st.access_log_path.stat().st_size
            env = {**os.environ, "SOAK_QUOTA": str(max(1, per_round // args.threads)), "SOAK_OUT": str(out)}
            t0 = time.monotonic()
            cpu0 = (cpu_s(st.envoy.proc.pid), cpu_s(models.proc.pid))
            run_wrk(args.threads, args.connections, script, st.port, env, out)
            secs = time.monotonic() - t0
            cpu1 = (cpu_s(st.envoy.proc.pid), cpu_s(models.proc.pid))
            time.sleep(1.0)  # the last records of the round reach the file (flush interval 50 ms)
            rq = (st.envoy.counter("http.duo_gateway.downstream_rq_total") or 0) - rq_before
            with open(st.access_log_path, "rb") as f:
                f.seek(log_at)
                lines = f.read().splitlines()
            records, fivexx, bad = 0, 0, 0
            for line in lines:
                try:
                    rec = json.loads(line)
                except ValueError:
                    bad += 1
                    continue
                records += 1
                if int(rec.get("status_code") or 0) >= 500:
                    fivexx += 1
            statuses_line, totals_line, lat_line = out.read_text().splitlines()[:3]
            statuses = json.loads(statuses_line)
            done = int(totals_line.split()[0])
            p50, p99, _mx = (float(x) for x in lat_line.split())
            rss = rss_kb(st.envoy.proc.pid) / 1024
            row = {"round": rnd, "requests": done, "envoy_requests": rq, "seconds": round(secs, 1),
                   "records": records, "unparsable_records": bad, "fivexx": fivexx, "rss_mib": round(rss, 1),
                   "statuses": statuses, "p50_ms": p50, "p99_ms": p99,
                   "memory_allocated_mib": round((st.envoy.counter("server.memory_allocated") or 0) / 2**20, 1),
                   # CPU per request: what bounds the rate on a given box (gateway, model stand-in).
                   "gateway_cpu_ms_per_request": round((cpu1[0] - cpu0[0]) * 1000 / max(done, 1), 3),
                   "models_cpu_ms_per_request": round((cpu1[1] - cpu0[1]) * 1000 / max(done, 1), 3)}
            rows.append(row)
            with open(run_dir / "rounds.jsonl", "a") as f:  # kept even when the run is cut short
                f.write(json.dumps(row) + "\n")
            print(f"{rnd:>5} {done:>9} {secs:>8.1f} {done / secs:>7.0f} {p50:>7.1f} {p99:>7.1f} {records:>8} "
                  f"{fivexx:>4} {rss:>8.1f} {row['gateway_cpu_ms_per_request']:>6.2f} {statuses}", flush=True)
            # The next round starts on an empty file (1M records would be ~1 GB).
            with open(st.access_log_path, "r+b") as f:
                f.truncate(0)
        vm_after = vm_stats(st.envoy)
    finally:
        e2e.close()
        if models is not None:
            models.stop()

    warm = rows[0]["rss_mib"]
    peak = max(r["rss_mib"] for r in rows[1:]) if len(rows) > 1 else warm
    growth = (peak - warm) / warm * 100 if warm else 0.0
    total = sum(r["requests"] for r in rows)
    report = {
        "requests_completed": total,
        "envoy_requests": sum(r["envoy_requests"] for r in rows),
        "records": sum(r["records"] for r in rows),
        "fivexx": sum(r["fivexx"] for r in rows),
        "rss_after_warmup_mib": warm, "rss_peak_after_warmup_mib": peak, "rss_growth_pct": round(growth, 2),
        "requests_planned": args.requests, "stopped_by_budget": stopped_by_budget,
        "vm_stats_before": vm_before, "vm_stats_after": vm_after, "rounds": rows,
        "wrk": {"threads": args.threads, "connections": args.connections},
    }
    (ROOT / "target" / "soak").mkdir(exist_ok=True)
    (ROOT / "target" / "soak" / "report.json").write_text(json.dumps(report, indent=2))
    checks = {
        "memory growth after warm-up <= 5 %": growth <= 5.0,
        "zero 5xx": report["fivexx"] == 0,
        "zero wasm VM reloads or new VMs": vm_before == vm_after,
        "one access-log record per request": report["records"] == report["envoy_requests"]
        and all(r["unparsable_records"] == 0 for r in rows),
        "every answer expected (200/401/403)": all(set(r["statuses"]) <= {"200", "401", "403"} for r in rows),
    }
    print(f"soak: {total} requests completed ({report['envoy_requests']} seen by Envoy), {report['records']} records, "
          f"RSS {warm} -> peak {peak} MiB ({growth:+.2f} %)", flush=True)
    for name, passed in checks.items():
        print(f"  {'PASS' if passed else 'FAIL'} {name}", flush=True)
    return all(checks.values())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
