"""Checks of the bench driver's pure helpers (quick; not part of ./build.sh test):
    .venv/bin/python tests/bench/test_benchlib.py"""

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (Spread, Verdict, ablation_table, grpc_section, median, paired_differences, paired_ratios,  # noqa: E402
                      parse_timing, percentile, render_markdown, summarize_ablation, summarize_grpc, summarize_timing,
                      timing_table)


def test_percentile_interpolates_like_numpy():
    xs = [10, 20, 30, 40]
    assert percentile(xs, 0) == 10 and percentile(xs, 100) == 40
    assert percentile(xs, 50) == 25
    assert math.isclose(percentile(xs, 99), 39.7)
    assert percentile([7], 99) == 7
    assert median([3, 1, 2]) == 2
    for bad in ([], ):
        try:
            percentile(bad, 50)
        except ValueError:
            pass
        else:
            raise AssertionError("no values must raise")
    try:
        percentile([1], 101)
    except ValueError:
        pass
    else:
        raise AssertionError("p > 100 must raise")


def test_spread_and_pairs():
    s = Spread.of([5.0, 1.0, 3.0])
    assert s == Spread(3.0, 1.0, 5.0, 3)
    assert Spread.of([]) is None
    assert s.fmt() == "3 µs (1…5, n=3)"
    assert paired_differences([10, None, 30], [1, 2, None]) == [9]
    assert paired_ratios([10, 20, 5], [5, 0, None]) == [2.0]


def test_verdicts():
    assert Verdict("p50", 90, 100, "µs").ok is True
    assert Verdict("p50", 101, 100, "µs").mark == "✗"
    assert Verdict("ratio", 60, 50, "×", at_least=True).ok is True
    assert Verdict("ratio", 40, 50, "×", at_least=True).ok is False
    v = Verdict("vm", None, 4, "MiB", note="not exposed")
    assert v.ok is None and v.line() == "? vm: not measured (target ≤ 4 MiB) — not exposed"
    assert Verdict("x", 123.4, 150, "µs").line() == "✓ x: 123 µs (target ≤ 150 µs)"


def test_render_shows_failures_and_numbers():
    sp = {"median": 120.0, "min": 100.0, "max": 140.0, "rounds": 3}
    report = {
        "meta": {"when": "now", "mode": "quick", "rounds": 3, "duration_s": 2, "throughput_connections": 8,
                 "loadavg_start": "1 1 1", "loadavg_end": "1 1 1", "cpus": 2},
        "verdicts": [dict(Verdict("a", 1, 2, "µs").as_dict(), line=Verdict("a", 1, 2, "µs").line())],
        "variants": {"plain_1k": {"description": "plain", "p50_us": sp, "p99_us": sp, "rps": sp},
                     "duo_x": {"description": "duo", "failed": "HTTP 500: boom"}},
        "throughput": {}, "notes": ["n1"], "wasm": {"duo_auth.wasm": 2 * 1024 * 1024},
    }
    md = render_markdown(report)
    assert "| plain_1k | plain | 120 µs (100…140, n=3) |" in md, md
    assert "| duo_x | duo | FAILED | HTTP 500: boom |" in md, md
    assert "- ✓ a: 1 µs (target ≤ 2 µs)" in md
    assert "| duo_auth.wasm | 2097152 | 2.00 |" in md
    assert "- n1" in md


def test_floor_shown_only_beside_a_miss():
    miss = Verdict("p50", 900, 100, "µs", floor="added p50 300 µs")
    assert miss.line() == "✗ p50: 900 µs (target ≤ 100 µs) — floor in this run: added p50 300 µs"
    assert "floor" not in Verdict("p50", 90, 100, "µs", floor="added p50 300 µs").line()
    assert Verdict("p50", 900, 100, "µs", floor="x").as_dict()["floor"] == "x"


def test_ablation_added_and_step_are_paired_per_round():
    raw = {"kb": 1, "rounds": 2, "duration_s": 1, "order": ["plain", "floor", "full"],
           "chains": {"plain": {"cpu_us": [300, 320], "p50_us": [600, 700]},
                      "floor": {"cpu_us": [570, 600], "p50_us": [900, 1000]},
                      "full": {"cpu_us": [1050, 1070], "p50_us": [1500, 1700]}}}
    s = summarize_ablation(raw)
    assert s["chains"]["plain"]["added_cpu_us"] is None and s["chains"]["plain"]["step_cpu_us"] is None
    assert s["chains"]["floor"]["added_cpu_us"]["median"] == 275
    assert s["chains"]["full"]["added_cpu_us"]["median"] == 750
    assert s["chains"]["full"]["step_cpu_us"]["median"] == 475
    assert s["chains"]["full"]["step_p50_us"]["median"] == 650
    md = ablation_table(s)
    assert "| full | 1060 µs (1050…1070, n=2) | +750 µs | +475 µs |" in md, md


LOG = """[2026-11-27 02:39:41.469][9449][warning][wasm] [context.cc:1154] wasm log duo_logger duo_logger duo_logger: duo_timing duo_logger: requests=1000 request_headers=41.3us log=150.5us done=0.7us total=192.5us
[...][warning][wasm] wasm log duo_auth: duo_timing duo_auth: requests=1000 request_headers=125.1us total=125.1us
[...][warning][wasm] wasm log duo_logger: duo_timing duo_logger: requests=1000 request_headers=36.1us log=128.3us done=0.6us total=165.0us
[...][warning][wasm] wasm log duo_logger: duo_timing duo_logger: requests=1000 request_headers=38.1us log=130.3us done=0.6us total=169.0us
"""


def test_timing_drops_the_first_report_and_takes_medians():
    lines = parse_timing(LOG)
    assert [r["log"] for r in lines["duo_logger"]] == [150.5, 128.3, 130.3]
    assert lines["duo_auth"][0] == {"requests": 1000, "request_headers": 125.1, "total": 125.1}
    t = summarize_timing(lines)
    assert "duo_auth" not in t  # one report only: the warm-up
    assert t["duo_logger"] == {"reports": 2, "callbacks": {"request_headers": 37.1, "log": 129.3, "done": 0.6, "total": 167.0}}
    md = timing_table(t)
    assert "| duo_logger | 37.1 | 129.3 | 0.6 | 167.0 | 2 |" in md, md
    assert "| all three | 37.1 | 129.3 | 0.6 | 167.0 |  |" in md, md


def test_render_new_sections():
    sp = {"median": 120.0, "min": 100.0, "max": 140.0, "rounds": 2}
    raw = {"kb": 1, "rounds": 1, "duration_s": 1, "order": ["plain", "floor"],
           "chains": {"plain": {"cpu_us": [300], "p50_us": [600]}, "floor": {"cpu_us": [570], "p50_us": [900]}}}
    report = {
        "meta": {"when": "now", "mode": "quick", "rounds": 2, "duration_s": 2, "throughput_connections": 8,
                 "loadavg_start": "1 1 1", "cpus": 2},
        "verdicts": [], "throughput": {},
        "variants": {"duo_a": {"description": "duo", "added_p50_us": sp, "added_over_floor_p50_us": sp,
                               "added_cpu_us": sp, "added_over_floor_cpu_us": sp}},
        "ablation": summarize_ablation(raw),
        "timing": {"requests": 3000, "filters": summarize_timing(parse_timing(LOG))},
    }
    md = render_markdown(report)
    assert "## Our cost over the floor" in md and "| duo_a | 120 µs (100…140, n=2) |" in md, md
    assert "## Ablation: cumulative chains" in md and "| floor | 570 µs" in md, md
    assert "## Time inside each filter per request (µs), by callback" in md and "| duo_logger | 37.1 |" in md, md
    failed = render_markdown({**report, "ablation": {"failed": "boom"}, "timing": {"failed": "no lines"}})
    assert "FAILED: boom" in failed and "Not measured: no lines" in failed


def _grpc_round(p50: float, rt: float, cpu_call: float | None = None, cpu_msgs: float | None = None) -> dict:
    unary = {"latencies_us": [p50 - 10, p50, p50 + 10]}
    stream = {"messages": 100, "total_us": rt * 100, "rt_us": [rt - 1, rt, rt + 5]}
    if cpu_call is not None:
        unary["cpu_us_per_call"] = cpu_call
        stream["cpu_us"] = cpu_msgs
    return {"unary": unary, "stream": stream}


def test_grpc_added_is_paired_per_round_and_per_message_is_half_an_exchange():
    raw = {"rounds": 2, "calls": 3, "messages": 100, "targets": {
        "direct_inproc": {"rounds": [_grpc_round(500, 200), _grpc_round(520, 210)]},
        "direct": {"rounds": [_grpc_round(600, 300), _grpc_round(640, 320)]},
        "plain": {"rounds": [_grpc_round(1000, 320, 400, 6000), _grpc_round(1100, 340, 420, 8000)]},
        "duo": {"rounds": [_grpc_round(1500, 340, 900, 8000), _grpc_round(1700, 380, 1000, 12000)]},
    }}
    g = summarize_grpc(raw)
    a = g["added"]
    assert a["unary_p50_us"] == {"median": 550.0, "min": 500.0, "max": 600.0, "rounds": 2}, a
    # (340 − 320) / 2 and (380 − 340) / 2: half an exchange is one message
    assert (a["per_message_us"]["min"], a["per_message_us"]["max"]) == (10.0, 20.0), a
    # CPU per message = stream CPU / (2 × 100 messages): plain 30, 40; duo 40, 60
    assert (a["per_message_cpu_us"]["min"], a["per_message_cpu_us"]["max"]) == (10.0, 20.0), a
    assert a["unary_cpu_us"]["median"] == 540.0, a
    assert g["hop"]["per_message_us"]["median"] == 10.0, g["hop"]
    md = "\n".join(grpc_section(g))
    assert "| duo |" in md and "the Python client and fake 310 µs" in md and "the filters +30 µs" in md, md
    raw["targets"]["duo"]["rounds"][1] = {"failed": "gRPC StatusCode.UNAUTHENTICATED: no"}
    g = summarize_grpc(raw)
    assert g["targets"]["duo"] == {"failed": "gRPC StatusCode.UNAUTHENTICATED: no"} and g["added"]["per_message_us"] is None
    assert "FAILED | gRPC StatusCode.UNAUTHENTICATED" in "\n".join(grpc_section(g))


if __name__ == "__main__":
    passed = failed = 0
    for name, fn in list(globals().items()):
        if name.startswith("test_") and callable(fn):
            try:
                fn()
                passed += 1
            except Exception as e:  # noqa: BLE001
                failed += 1
                print(f"FAIL {name}: {e!r}")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
