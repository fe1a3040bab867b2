"""Checks of the bench driver's pure helpers (quick; not part of ./build.sh test):
    .venv/bin/python tests/bench/test_benchlib.py"""

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import Spread, Verdict, median, paired_differences, paired_ratios, percentile, render_markdown  # noqa: E402


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
