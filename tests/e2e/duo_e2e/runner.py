"""Scenario discovery and running.

A scenario is a function named `test_*` in `tests/e2e/scenarios/test_*.py` that takes one
argument, the run context `e2e` (an `E2E`). It passes when it returns, fails on any exception
(use plain `assert`), and is skipped when it raises `Skip("why")`. `@scenario(timeout_s=...)`
is optional. Scenarios run in file order, then definition order, one at a time.
"""

from __future__ import annotations

import importlib.util
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import contract, procs
from .envoy import ENVOY, ENVOY_CWD, ROOT, EnvoyError
from .stack import Stack, shipped

DEFAULT_TIMEOUT_S = 180.0
MODEL_FAKES = {"vllm", "azure", "bedrock"}


class Skip(Exception):
    """Raise to skip a scenario (counted, printed with its reason, never a failure)."""


class ScenarioTimeout(Exception):
    pass


def scenario(fn: Callable[..., Any] | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Any:
    """Optional decorator: `@scenario` or `@scenario(timeout_s=30)`."""
    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        f.__e2e_timeout_s__ = timeout_s  # type: ignore[attr-defined]
        return f
    return wrap(fn) if fn is not None else wrap


class E2E:
    """What a scenario gets: started stacks (cached per name), the run directory, paths."""

    root = ROOT
    envoy_bin = ENVOY

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self._stacks: dict[str, Stack] = {}
        self._failed: dict[str, BaseException] = {}

    def stack(self, config: str = "self_hosted", *, name: str | None = None, fresh: bool = False, **kw: Any) -> Stack:
        """The running stack of `envoy/<config>.yaml`. Stacks are started on first use and shared
        by later scenarios asking for the same `name` (default: the config's name); pass a distinct
        `name` with `patch=`/`fakes=`/`env=` for a variant, `fresh=True` to restart it."""
        key = name or config
        cached = self._stacks.get(key)
        if cached is not None and (fresh or cached.envoy is None or not cached.envoy.running):
            self._stacks.pop(key).stop()  # asked for a fresh one, or a scenario stopped it
        if key in self._failed and not fresh:
            earlier = self._failed[key]
            if isinstance(earlier, Skip):
                raise Skip(str(earlier))
            raise RuntimeError(f"stack {key} failed to start earlier: {earlier}")
        if key not in self._stacks:
            st = Stack(key, shipped(config) if "/" not in config else Path(config), self.run_dir, **kw)
            try:
                st.start()
            except EnvoyError as e:
                why = contract.pending(str(e))
                self._failed[key] = Skip(why) if why else e
                raise self._failed[key] from None
            except BaseException as e:
                self._failed[key] = e
                raise
            self._stacks[key] = st
        return self._stacks[key]

    def stacks(self) -> list[Stack]:
        return list(self._stacks.values())

    def close(self) -> None:
        for st in self._stacks.values():
            try:
                st.stop()
            except Exception:  # noqa: BLE001 - teardown goes on
                traceback.print_exc()
        self._stacks.clear()


@dataclass
class Result:
    name: str
    outcome: str  # PASS | FAIL | SKIP
    seconds: float
    detail: str = ""


def discover(directory: Path, pattern: str | None = None) -> list[tuple[str, Callable[..., Any]]]:
    found: list[tuple[str, Callable[..., Any]]] = []
    for path in sorted(directory.glob("test_*.py")):
        spec = importlib.util.spec_from_file_location(f"scenarios.{path.stem}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        for attr, fn in vars(module).items():
            if attr.startswith("test_") and callable(fn) and getattr(fn, "__module__", None) == module.__name__:
                name = f"{path.stem}.{attr}"
                if pattern is None or pattern in name:
                    found.append((name, fn))
    return found


def _alarm(_signum: int, _frame: Any) -> None:
    raise ScenarioTimeout("scenario timed out")


def run_all(scenarios: list[tuple[str, Callable[..., Any]]], e2e: E2E, out: Any = sys.stdout) -> list[Result]:
    results: list[Result] = []
    signal.signal(signal.SIGALRM, _alarm)
    for name, fn in scenarios:
        for st in e2e.stacks():
            st.mark()
        start = time.monotonic()
        timeout = float(getattr(fn, "__e2e_timeout_s__", DEFAULT_TIMEOUT_S))
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            fn(e2e)
            signal.setitimer(signal.ITIMER_REAL, 0)
            refusals = [r for st in e2e.stacks() for r in st.unexpected_refusals()]
            if refusals:
                raise AssertionError("fakes refused requests nobody expected: " + ", ".join(refusals))
            res = Result(name, "PASS", time.monotonic() - start)
        except Skip as s:
            res = Result(name, "SKIP", time.monotonic() - start, str(s))
        except BaseException as e:  # noqa: BLE001 - a scenario's failure must not stop the run
            signal.setitimer(signal.ITIMER_REAL, 0)
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise  # Ctrl-C / SIGTERM: stop the run; main() tears everything down
            model_refusals = [r for st in e2e.stacks() for f in st.fakes.values() if f.kind in MODEL_FAKES for r in f.refusals]
            why = contract.untranslated(model_refusals)
            if why:
                res = Result(name, "SKIP", time.monotonic() - start, why)
                results.append(res)
                print(f"SKIP {name} ({res.seconds:.1f}s): {why}", file=out, flush=True)
                continue
            detail = "".join(traceback.format_exception(type(e), e, e.__traceback__, limit=-4))
            if isinstance(e, ScenarioTimeout):
                detail = f"timed out after {timeout}s\n" + detail
            res = Result(name, "FAIL", time.monotonic() - start, detail)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        results.append(res)
        line = f"{res.outcome} {res.name} ({res.seconds:.1f}s)"
        if res.outcome == "SKIP":
            line += f": {res.detail}"
        print(line, file=out, flush=True)
        if res.outcome == "FAIL":
            print("    " + res.detail.rstrip().replace("\n", "\n    "), file=out, flush=True)
    return results


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="real-Envoy end-to-end scenarios (tests/e2e/scenarios/test_*.py)")
    ap.add_argument("-k", dest="pattern", help="run only scenarios whose 'file.function' name contains this")
    ap.add_argument("--list", action="store_true", help="list scenarios and exit")
    ap.add_argument("--keep", action="store_true", help="keep the run directory (default: kept only on failure)")
    args = ap.parse_args(argv)

    procs.install_handlers()
    scenarios = discover(Path(__file__).resolve().parents[1] / "scenarios", args.pattern)
    if args.list:
        for name, _ in scenarios:
            print(name)
        return 0
    run_dir = ROOT / "target" / "e2e" / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"e2e: {len(scenarios)} scenario(s), Envoy {ENVOY}, run directory {run_dir.relative_to(ROOT)}", flush=True)
    missing = [f"dist/{n}.wasm" for n in ("duo_logger", "duo_auth", "duo_router") if not (ENVOY_CWD / "dist" / f"{n}.wasm").exists()]
    e2e = E2E(run_dir)
    results: list[Result] = []
    try:
        if not ENVOY.exists():
            results.append(Result("setup", "FAIL", 0, f"{ENVOY} not found: run ./build.sh test (it installs Envoy into .venv)"))
        elif missing:
            results.append(Result("setup", "FAIL", 0, f"{', '.join(missing)} not found: run ./build.sh build first"))
        else:
            results = run_all(scenarios, e2e)
    finally:
        e2e.close()
        procs.stop_all()
    passed = sum(r.outcome == "PASS" for r in results)
    failed = sum(r.outcome == "FAIL" for r in results)
    skipped = sum(r.outcome == "SKIP" for r in results)
    for r in results:
        if r.name == "setup":
            print(f"FAIL setup: {r.detail}")
    if failed == 0 and not args.keep:
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)
    elif failed:
        print(f"e2e: logs and generated configs kept in {run_dir.relative_to(ROOT)}")
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed or passed == 0 and not args.pattern else 0
