"""Pure helpers of the benchmark driver (no processes, no I/O): statistics over rounds, the
targets of issue 9 with their verdicts, the ablation and callback-timing summaries, and the
Markdown rendering of the report.
tests/bench/test_benchlib.py checks them."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence


def percentile(values: Iterable[float], p: float) -> float:
    """The p-th percentile (0..100) with linear interpolation between closest ranks
    (numpy's default). Raises ValueError on no values."""
    xs = sorted(values)
    if not xs:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} outside 0..100")
    pos = (len(xs) - 1) * p / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def median(values: Iterable[float]) -> float:
    return percentile(values, 50)


@dataclass(frozen=True)
class Spread:
    """Median of the per-round values and their range."""

    median: float
    lo: float
    hi: float
    n: int

    @staticmethod
    def of(values: Sequence[float]) -> "Spread | None":
        vals = [v for v in values if v is not None and not math.isnan(v)]
        if not vals:
            return None
        return Spread(median(vals), min(vals), max(vals), len(vals))

    def fmt(self, unit: str = "µs", digits: int = 0) -> str:
        f = f"{{:.{digits}f}}"
        return f"{f.format(self.median)} {unit} ({f.format(self.lo)}…{f.format(self.hi)}, n={self.n})"

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.lo, "max": self.hi, "rounds": self.n}


def paired_differences(a: Sequence[float | None], b: Sequence[float | None]) -> list[float]:
    """Per-round a[i] - b[i] over the rounds where both were measured."""
    return [x - y for x, y in zip(a, b) if x is not None and y is not None]


def paired_ratios(a: Sequence[float | None], b: Sequence[float | None]) -> list[float]:
    """Per-round a[i] / b[i] over the rounds where both were measured and b[i] > 0."""
    return [x / y for x, y in zip(a, b) if x is not None and y is not None and y > 0]


@dataclass(frozen=True)
class Verdict:
    """One target of the issue: `measured` against `limit` (`at_least` flips the comparison).
    `measured` None: could not be measured (shown as `?`, never as a pass). `floor`: the same
    figure for the floor chain in this run, printed when the target is missed (how much is ours)."""

    name: str
    measured: float | None
    limit: float
    unit: str
    at_least: bool = False
    note: str = ""
    floor: str = ""

    @property
    def ok(self) -> bool | None:
        if self.measured is None:
            return None
        return self.measured >= self.limit if self.at_least else self.measured <= self.limit

    @property
    def mark(self) -> str:
        return {True: "✓", False: "✗", None: "?"}[self.ok]

    def line(self) -> str:
        cmp = "≥" if self.at_least else "≤"
        got = "not measured" if self.measured is None else f"{_num(self.measured)} {self.unit}"
        note = f" — {self.note}" if self.note else ""
        floor = f" — floor in this run: {self.floor}" if self.floor and self.ok is False else ""
        return f"{self.mark} {self.name}: {got} (target {cmp} {_num(self.limit)} {self.unit}){note}{floor}"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "measured": self.measured, "limit": self.limit, "unit": self.unit,
                "at_least": self.at_least, "ok": self.ok, "note": self.note, "floor": self.floor}


def _num(x: float) -> str:
    if abs(x) >= 100 or x == int(x):
        return f"{x:.0f}"
    return f"{x:.2f}" if abs(x) < 10 else f"{x:.1f}"


def mib(n_bytes: float) -> float:
    return n_bytes / (1024 * 1024)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join("" if c is None else str(c) for c in r) + " |")
    return "\n".join(out)


# ---- ablation (tests/bench/ablate.py) ---------------------------------------------------------

def summarize_ablation(raw: dict[str, Any]) -> dict[str, Any]:
    """Per chain: median and range over rounds of Envoy CPU / request and p50, *added* over plain
    and *step* over the previous chain of `raw["order"]` (paired per round): the step is what the
    filter that chain adds costs."""
    chains = raw["chains"]
    order = raw["order"]
    out: dict[str, Any] = {k: raw[k] for k in ("kb", "rounds", "duration_s", "order")}
    out["chains"] = {}
    for i, n in enumerate(order):
        row: dict[str, Any] = {}
        for key in ("cpu_us", "p50_us"):
            row[key] = _spread(chains[n][key])
            row[f"added_{key}"] = _spread(paired_differences(chains[n][key], chains["plain"][key])) if n != "plain" else None
            row[f"step_{key}"] = _spread(paired_differences(chains[n][key], chains[order[i - 1]][key])) if i else None
        out["chains"][n] = row
    return out


def _spread(values: Sequence[float]) -> dict[str, float] | None:
    sp = Spread.of(values)
    return sp.as_dict() if sp else None


def ablation_table(summary: dict[str, Any]) -> str:
    rows = []
    for n in summary["order"]:
        c = summary["chains"][n]
        rows.append([n, _s(c["cpu_us"]), _signed(c["added_cpu_us"]), _signed(c["step_cpu_us"]), _s(c["p50_us"]),
                     _signed(c["added_p50_us"]), _signed(c["step_p50_us"])])
    return table([f"chain ({summary['kb']} KB, fresh token)", "Envoy CPU / request", "added CPU", "step CPU", "p50",
                  "added p50", "step p50"], rows)


def _signed(sp: dict[str, float] | None) -> str:
    return "" if sp is None else f"{sp['median']:+.0f} µs"


# ---- gRPC (the Agent Platform listener, tests/bench/grpcbench.py) -------------------------------

GRPC_TARGETS = ("direct_inproc", "direct", "plain", "floor", "duo")


def summarize_grpc(raw: dict[str, Any]) -> dict[str, Any]:
    """Per target (`direct_inproc`: the fake on the client's own event loop; `direct`: the fake in
    its own process, no Envoy; `plain`: plain Envoy's HTTP/2 hop; `floor`: jwt_authn + three
    do-nothing wasm filters; `duo`: the shipped chain) the
    median and range over rounds of: unary p50 / p99 and proxy CPU per call; per stream exchange
    (one message each way) the mean time (total / exchanges), the median, and the proxy CPU per
    message. Paired per round: `duo` minus `plain` (the filters' added cost: per call, and per
    message = per exchange / 2), `floor` minus `plain` (the chain's shape alone), `duo` minus
    `floor` (our filters' own work) and `plain` minus `direct` (Envoy's own hop). A target with a
    failed round is reported failed, not summarized."""
    out: dict[str, Any] = {k: raw[k] for k in ("rounds", "calls", "messages") if k in raw}
    per: dict[str, dict[str, list[float | None]]] = {}
    out["targets"] = {}
    for name, t in raw["targets"].items():
        bad = [r["failed"] for r in t["rounds"] if r.get("failed")]
        if bad:
            out["targets"][name] = {"failed": bad[0]}
            continue
        f: dict[str, list[float | None]] = {k: [] for k in ("unary_p50", "unary_p99", "unary_cpu", "rt_mean", "rt_p50", "msg_cpu")}
        for r in t["rounds"]:
            u, st = r["unary"], r["stream"]
            f["unary_p50"].append(median(u["latencies_us"]))
            f["unary_p99"].append(percentile(u["latencies_us"], 99))
            f["unary_cpu"].append(u.get("cpu_us_per_call"))
            f["rt_mean"].append(st["total_us"] / st["messages"])
            f["rt_p50"].append(median(st["rt_us"]))
            f["msg_cpu"].append(st["cpu_us"] / (2 * st["messages"]) if "cpu_us" in st else None)
        per[name] = f
        out["targets"][name] = {k: _spread([x for x in v if x is not None]) for k, v in f.items()}

    def added(a: str, b: str, key: str, scale: float = 1.0) -> dict[str, float] | None:
        if a not in per or b not in per:
            return None
        return _spread([d * scale for d in paired_differences(per[a][key], per[b][key])])

    out["added"] = {  # the filters: duo over plain
        "unary_p50_us": added("duo", "plain", "unary_p50"),
        "unary_p99_us": added("duo", "plain", "unary_p99"),
        "unary_cpu_us": added("duo", "plain", "unary_cpu"),
        "per_message_us": added("duo", "plain", "rt_mean", 0.5),
        "per_message_p50_us": added("duo", "plain", "rt_p50", 0.5),
        "per_message_cpu_us": added("duo", "plain", "msg_cpu"),
    }
    for key, a, b in (("floor", "floor", "plain"), ("over_floor", "duo", "floor")):
        out[key] = {
            "unary_p50_us": added(a, b, "unary_p50"),
            "unary_cpu_us": added(a, b, "unary_cpu"),
            "per_message_us": added(a, b, "rt_mean", 0.5),
            "per_message_cpu_us": added(a, b, "msg_cpu"),
        }
    out["hop"] = {  # Envoy's own HTTP/2 hop: plain over the fake reached directly
        "unary_p50_us": added("plain", "direct", "unary_p50"),
        "per_message_us": added("plain", "direct", "rt_mean", 0.5),
    }
    return out


def grpc_section(g: dict[str, Any] | None) -> list[str]:
    if not g:
        return []
    head = ["", "## Agent Platform (gRPC, HTTP/2 listener)", ""]
    if g.get("failed"):
        return head + [f"FAILED: {g['failed']}"]
    labels = {"direct_inproc": "fake on the client's event loop, no Envoy", "direct": "fake in its own process, no Envoy",
              "plain": "plain Envoy HTTP/2 hop", "floor": "jwt_authn + 3 do-nothing wasm filters",
              "duo": "jwt_authn + duo_logger + duo_auth + duo_router (shipped)"}
    rows = []
    for name in GRPC_TARGETS:
        t = g["targets"].get(name)
        if t is None:
            continue
        if t.get("failed"):
            rows.append([name, labels[name], "FAILED", t["failed"], "", "", "", ""])
            continue
        rows.append([name, labels[name], _s(t["unary_p50"]), _s(t["unary_p99"]), _s(t["unary_cpu"]), _s(t["rt_mean"]),
                     _s(t["rt_p50"]), _s(t["msg_cpu"], "µs", 1)])
    a, h = g.get("added", {}), g.get("hop", {})
    lines = head + [
        f"A real grpcio client (grpc.aio) against the bench's fake Duo Workflow Service (tests/bench/grpcbench.py); "
        f"per round and target {g.get('calls')} sequential `ListTools` calls on one channel, one fresh GitLab token "
        f"each (*call setup*: a new HTTP/2 stream, headers, auth, routing), then one `ExecuteWorkflow` stream of "
        f"{g.get('messages')} timed exchanges in lock step (one `actionResponse` up, one `Action` down). Targets in "
        "rotating order within each round; *added* is paired per round.", "",
        table(["target", "what", "unary p50", "unary p99", "proxy CPU / call", "exchange (mean)", "exchange (p50)",
               "proxy CPU / message"], rows), "",
        f"- Added by the filters (duo − plain): per call p50 {_s(a.get('unary_p50_us'))}, p99 {_s(a.get('unary_p99_us'))}, "
        f"Envoy CPU per call {_s(a.get('unary_cpu_us'))}; per message (half an exchange) {_s(a.get('per_message_us'), 'µs', 1)} "
        f"from the mean, {_s(a.get('per_message_p50_us'), 'µs', 1)} from the median, Envoy CPU per message "
        f"{_s(a.get('per_message_cpu_us'), 'µs', 1)}.",
        f"- Envoy's own hop (plain − direct): per call {_s(h.get('unary_p50_us'))}, per message {_s(h.get('per_message_us'), 'µs', 1)}.",
    ]
    for key, what in (("floor", "The floor over plain (the chain's shape: jwt_authn + three do-nothing wasm filters)"),
                      ("over_floor", "Ours over the floor (duo − floor: our filters' own work)")):
        f = g.get(key) or {}
        if any(f.values()):
            lines.append(f"- {what}: per call p50 {_s(f.get('unary_p50_us'))}, Envoy CPU per call {_s(f.get('unary_cpu_us'))}; "
                         f"per message {_s(f.get('per_message_us'), 'µs', 1)}, Envoy CPU per message "
                         f"{_s(f.get('per_message_cpu_us'), 'µs', 1)}.")
    lines += [f"- {w}" for w in grpc_dominant(g)]
    return lines


def grpc_dominant(g: dict[str, Any]) -> list[str]:
    """One sentence: what an exchange's time is made of (client + fake, Envoy's hop, the filters)."""
    t = g.get("targets", {})
    d, ip, duo = t.get("direct") or {}, t.get("direct_inproc") or {}, t.get("duo") or {}
    hop, add = (g.get("hop") or {}).get("per_message_us"), (g.get("added") or {}).get("per_message_us")
    if d.get("failed") or not d.get("rt_mean") or hop is None or add is None:
        return []
    parts = [("the Python client and fake", d["rt_mean"]["median"]), ("plain Envoy's hop", 2 * hop["median"]),
             ("the filters", 2 * add["median"])]
    top = max(parts, key=lambda p: p[1])[0]
    total = f", {duo['rt_mean']['median']:.0f} µs through the chain" if duo.get("rt_mean") else ""
    inproc = f"; {ip['rt_mean']['median']:.0f} µs with the fake on the client's own event loop" if ip.get("rt_mean") else ""
    return [f"What an exchange (one message each way{total}) is made of: the Python client and fake "
            f"{parts[0][1]:.0f} µs (fake in its own process{inproc}), plain Envoy's hop {parts[1][1]:+.0f} µs, the filters "
            f"{parts[2][1]:+.0f} µs: {top} {'dominates' if top == 'plain Envoy' + chr(39) + 's hop' else 'dominate'}. The paired design cancels the "
            "client's and the fake's cost, not their noise: the Envoy CPU figures are the steadier ones."]


# ---- callback timing (filters/kit/src/timing.rs, the `callback-timing` builds) -----------------

TIMING_LINE = re.compile(r"duo_timing (\w+): requests=(\d+)((?: \w+=-?[\d.]+us)+)")
CALLBACKS = ("request_headers", "request_body", "request_trailers", "response_headers", "response_body",
             "response_trailers", "log", "done", "http_call_response", "total")


def parse_timing(log: str) -> dict[str, list[dict[str, float]]]:
    """Every `duo_timing <filter>: requests=N cb=X.Xus ...` line of an Envoy log, per filter, in
    order: {filter: [{callback: µs per request, "requests": N}, ...]}."""
    out: dict[str, list[dict[str, float]]] = {}
    for m in TIMING_LINE.finditer(log):
        entry: dict[str, float] = {"requests": float(m.group(2))}
        for k, v in re.findall(r"(\w+)=(-?[\d.]+)us", m.group(3)):
            entry[k] = float(v)
        out.setdefault(m.group(1), []).append(entry)
    return out


def summarize_timing(lines: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Median µs per request of each callback over each filter's reports after the first (the first
    covers the warm-up: V8 tiering, first-request setup)."""
    out: dict[str, Any] = {}
    for f, reports in lines.items():
        kept = reports[1:]
        if not kept:
            continue
        names = [c for c in CALLBACKS if any(c in r for r in kept)]
        out[f] = {"reports": len(kept), "callbacks": {c: median([r[c] for r in kept if c in r]) for c in names}}
    return out


def timing_table(timing: dict[str, Any]) -> str:
    cbs = [c for c in CALLBACKS if any(c in t["callbacks"] for t in timing.values())]
    rows = [[f, *(_us(t["callbacks"].get(c)) for c in cbs), t["reports"]] for f, t in timing.items()]
    rows.append(["all three", *(_us(sum(t["callbacks"].get(c, 0.0) for t in timing.values())) for c in cbs), ""])
    return table(["filter", *cbs, "reports"], rows)


def _us(x: float | None) -> str:
    return "" if x is None else f"{x:.1f}"


def render_markdown(report: dict[str, Any]) -> str:
    """The human report. `report` is the JSON document run.py writes (see docs/bench.md)."""
    m = report["meta"]
    lines = [
        "# Benchmark report",
        "",
        f"{m['when']} · mode `{m['mode']}` · {m['rounds']} rounds × {m['duration_s']} s per load run · "
        f"`wrk -t1 -c1` (throughput: `-c{m['throughput_connections']}`) · Envoy `--concurrency 1` · "
        f"load average at start {m['loadavg_start']}, at end {m.get('loadavg_end', '?')} on {m['cpus']} CPUs",
        "",
        "Medians over rounds, range in parentheses. *Added* = the setup's latency minus plain Envoy's "
        "(setup 1) in the same round with the same headers and body size (for the model ingress, setup 7: plain "
        "Envoy forwarding the same OpenAI request with the same key).",
        "",
        "## Targets",
        "",
    ]
    lines += [f"- {v['line']}" for v in report["verdicts"]]
    lines += ["", "## Latency (wrk, one connection)", ""]
    rows = []
    for name, v in report["variants"].items():
        if v.get("failed"):
            rows.append([name, v["description"], "FAILED", v["failed"], "", "", "", "", ""])
            continue
        rows.append([name, v["description"], _s(v.get("p50_us")), _s(v.get("p99_us")), _s(v.get("added_p50_us")),
                     _s(v.get("added_p99_us")), _s(v.get("rps"), "req/s"), _s(v.get("cpu_us")), _s(v.get("added_cpu_us"))])
    lines.append(table(["variant", "what", "p50", "p99", "added p50", "added p99", "req/s", "proxy CPU / request",
                        "added CPU / request"], rows))
    lines += ["", "*Proxy CPU / request*: user + system CPU time of the proxy process under test (Envoy, or "
              "LiteLLM's process) during the run divided by the requests answered (`/proc/<pid>/stat`, 10 ms ticks): "
              "unlike wall-clock latency it does not grow when other processes take the CPU."]
    lines += _floor_section(report)
    if report.get("throughput"):
        lines += ["", f"## Throughput (`wrk -t1 -c{m['throughput_connections']}`, one Envoy worker)", ""]
        rows = []
        for name, v in report["throughput"].items():
            if v.get("failed"):
                rows.append([name, "FAILED", v["failed"]])
            else:
                rows.append([name, _s(v.get("rps"), "req/s"), _s(v.get("ratio_to_plain"), "×", 2)])
        lines.append(table(["variant", "req/s", "ratio to plain"], rows))
    s = report.get("streaming")
    if s:
        lines += ["", "## Streaming (200-chunk SSE answer, one connection)", ""]
        if s.get("failed"):
            lines.append(f"FAILED: {s['failed']}")
        else:
            lines.append(table(["", "time to first chunk", "time to last byte"], [
                ["plain Envoy", _s(s["plain"]["ttfb_p50_us"]), _s(s["plain"]["total_p50_us"])],
                ["duo filters", _s(s["duo"]["ttfb_p50_us"]), _s(s["duo"]["total_p50_us"])],
                ["added", _s(s.get("added_ttfb_us")), _s(s.get("added_total_us"))],
            ]))
            lines += ["", f"Added per chunk: {_s(s.get('added_per_chunk_us'), 'µs', 2)} "
                      f"(added total minus added first chunk, over {s['chunks']} chunks)."]
    mem = report.get("memory")
    if mem:
        lines += ["", f"## Memory ({mem['requests']} requests per stack)", ""]
        rows = []
        for name, v in mem["stacks"].items():
            if v.get("failed"):
                rows.append([name, "FAILED", v["failed"], "", "", "", ""])
                continue
            rows.append([name, f"{mib(v['rss_before']):.1f} MiB", f"{mib(v['rss_after']):.1f} MiB",
                         f"{mib(v['rss_after'] - v['rss_before']):+.1f} MiB",
                         f"{mib(v['heap_allocated_before']):.1f} → {mib(v['heap_allocated_after']):.1f} MiB"
                         if v.get("heap_allocated_before") is not None else "",
                         v.get("vms_active", ""), v.get("non_2xx", "")])
        lines.append(table(["stack", "RSS before", "RSS after", "growth", "Envoy heap allocated (/memory)", "V8 VMs", "non-2xx"], rows))
        lines += ["", mem["vm_note"]]
    lines += grpc_section(report.get("grpc"))
    lines += _ablation_section(report.get("ablation"))
    lines += _timing_section(report.get("timing"))
    lines += _timing_baseline_section(report.get("timing_baseline"))
    if report.get("wasm"):
        lines += ["", "## .wasm sizes", ""]
        lines.append(table(["file", "bytes", "MiB"], [[k, v, f"{mib(v):.2f}"] for k, v in report["wasm"].items()]))
    if report.get("micro"):
        lines += ["", "## Micro-benchmarks (criterion, native, median)", ""]
        rows = [[k, _ns(v["median_ns"]), _ns(v.get("per_element_ns")) if v.get("per_element_ns") else ""]
                for k, v in report["micro"].items()]
        lines.append(table(["benchmark", "time", "per element"], rows))
    if report.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def _floor_section(report: dict[str, Any]) -> list[str]:
    rows = [[n, _s(v.get("added_p50_us")), _s(v.get("added_over_floor_p50_us")), _s(v.get("added_cpu_us")),
             _s(v.get("added_over_floor_cpu_us"))]
            for n, v in report["variants"].items() if "added_over_floor_p50_us" in v or "added_over_floor_cpu_us" in v]
    if not rows:
        return []
    return ["", "## Our cost over the floor", "",
            "The floor: jwt_authn + three do-nothing wasm filters (tests/bench/noop), static route to the vLLM fake: "
            "the chain's shape with none of our work. *Over floor* = the variant minus the floor's variant of the "
            "same body size (fresh token), paired per round.", "",
            table(["variant", "added p50 (over plain)", "over floor", "added CPU / request (over plain)", "over floor"], rows)]


def _ablation_section(ab: dict[str, Any] | None) -> list[str]:
    if not ab:
        return []
    head = ["", "## Ablation: cumulative chains", ""]
    if ab.get("failed"):
        return head + [f"FAILED: {ab['failed']}"]
    return head + [f"{ab['rounds']} rounds × {ab['duration_s']} s, one connection, fresh tokens. *added* = over plain, "
                   "*step* = over the row above: the cost of what that row adds. floor = jwt_authn + three do-nothing "
                   "wasm filters; jwt_logger = jwt_authn + duo_logger (its step: duo_logger minus the three "
                   "do-nothing filters); then + duo_auth, + duo_router (full).", "",
                   ablation_table(ab)]


def _timing_section(t: dict[str, Any] | None) -> list[str]:
    if not t:
        return []
    head = ["", "## Time inside each filter per request (µs), by callback", ""]
    if t.get("failed"):
        return head + [f"Not measured: {t['failed']}"]
    return head + [f"Callback-timing builds (`--features duo-kit/callback-timing`, never the measured stacks), jwt_authn "
                   f"chain, {t['requests']} requests (1 KB, fresh tokens); each VM logs its mean per request every "
                   "1000 requests; median over the reports after the first. Host calls made inside a callback count; "
                   "Envoy's own work between callbacks does not.", "", timing_table(t["filters"])]


def _timing_baseline_section(t: dict[str, Any] | None) -> list[str]:
    if not t:
        return []
    head = ["", f"### The same, baseline modules ({t.get('modules', '?')}), measured alternately in this run", ""]
    if t.get("failed"):
        return head + [f"Not measured: {t['failed']}"]
    return head + [f"{t['requests']} requests, the same load and configuration; compare with the table above "
                   "(both saw the same state of the box).", "", timing_table(t["filters"])]


def _s(sp: Any, unit: str = "µs", digits: int = 0) -> str:
    if sp is None:
        return ""
    if isinstance(sp, dict):
        return Spread(sp["median"], sp["min"], sp["max"], sp["rounds"]).fmt(unit, digits)
    return f"{sp:.{digits}f} {unit}"


def _ns(ns: float | None) -> str:
    if ns is None:
        return ""
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"
