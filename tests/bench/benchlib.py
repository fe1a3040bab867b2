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
        "(setup 1) in the same round with the same headers and body size.",
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
    lines += _ablation_section(report.get("ablation"))
    lines += _timing_section(report.get("timing"))
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
