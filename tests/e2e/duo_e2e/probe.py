"""The test-only route-cache probe filter (tests/e2e/probe): built on demand with cargo into
target/e2e-probe/, and spliced into a shipped config in place of the three duo filters."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Callable

from . import bootstrap, procs
from .envoy import ROOT

TARGET = ROOT / "target" / "e2e-probe"
WASM = TARGET / "wasm32-wasip1" / "release" / "duo_e2e_probe.wasm"
_built = False


def build(timeout_s: float = 600.0) -> Path:
    global _built
    if _built and WASM.exists():
        return WASM
    env = {**os.environ, "CARGO_TARGET_DIR": str(TARGET)}
    proc = procs.spawn(["cargo", "build", "--quiet", "--release", "--target", "wasm32-wasip1",
                        "--manifest-path", str(ROOT / "tests" / "e2e" / "probe" / "Cargo.toml")],
                       cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        procs.stop(proc)
        raise RuntimeError(f"building the e2e probe took more than {timeout_s}s")
    procs.stop(proc)
    if proc.returncode != 0 or not WASM.exists():
        raise RuntimeError(f"building the e2e probe failed:\n{out.decode(errors='replace')[-3000:]}")
    _built = True
    return WASM


def splice(allow_on_headers_stop_iteration: bool = True, failure_policy: str = "FAIL_CLOSED") -> Callable[[dict[str, Any]], None]:
    """A Stack `patch`: keep the shipped chain's non-wasm filters (jwt_authn, which resolves and
    caches the route before any wasm filter runs, and the router), replace duo_* by the probe."""
    wasm = build()

    def patch(boot: dict[str, Any]) -> None:
        for hcm in bootstrap.hcms(boot):
            chain = [f for f in hcm["http_filters"] if not f["name"].startswith("duo_")]
            probe = {"name": "e2e_probe", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {"name": "e2e_probe", "root_id": "e2e_probe",
                           "vm_config": {"vm_id": "e2e_probe", "runtime": "envoy.wasm.runtime.v8",
                                         "code": {"local": {"filename": str(wasm)}}},
                           "failure_policy": failure_policy,
                           "allow_on_headers_stop_iteration": allow_on_headers_stop_iteration}}}
            chain.insert(len(chain) - 1, probe)
            hcm["http_filters"] = chain
    return patch
