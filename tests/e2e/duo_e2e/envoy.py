"""Real Envoy 1.40 for the e2e layer: `--mode validate`, and a running Envoy (`--concurrency 2`,
`--use-dynamic-base-id`, listener and admin on 127.0.0.1 port 0, discovered through the admin
API), always torn down; helpers for its access log and `/stats/prometheus`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import procs

ROOT = Path(__file__).resolve().parents[3]
ENVOY = Path(os.environ.get("DUO_E2E_ENVOY", ROOT / ".venv" / "bin" / "envoy"))
# Envoy's working directory: the shipped configs name `dist/*.wasm` relative to it. Point it at
# another directory holding a `dist/` to run the e2e against filters built elsewhere.
ENVOY_CWD = Path(os.environ.get("DUO_E2E_ENVOY_CWD", ROOT))


@dataclass
class Validation:
    ok: bool
    output: str  # Envoy's log lines without the [info]/[debug] noise


def validate(config: Path, timeout_s: float = 60.0, env: dict[str, str] | None = None) -> Validation:
    """`envoy --mode validate -c config`, run from the repository root (the shipped configs name
    `dist/*.wasm` relative to it). Loads the .wasm files and runs each plugin's on_configure."""
    proc = procs.spawn([str(ENVOY), "--mode", "validate", "-c", str(config), "-l", "info"],
                       cwd=ENVOY_CWD, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env or envoy_env())
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        procs.stop(proc)
        return Validation(False, f"envoy --mode validate did not finish in {timeout_s}s")
    procs.stop(proc)
    text = out.decode("utf-8", "replace")
    lines = [l for l in text.splitlines() if "][info][" not in l and "][debug][" not in l]
    return Validation(proc.returncode == 0, "\n".join(lines))


def envoy_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment for Envoy: no AWS settings leak in from the caller, no instance metadata."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env.update(extra or {})
    return env


class EnvoyError(RuntimeError):
    pass


class Envoy:
    """One running Envoy. `start()` (= `launch().wait_ready()`) returns once the admin API says LIVE
    and the listener is bound."""

    def __init__(self, config: Path, run_dir: Path, env: dict[str, str] | None = None, name: str = "envoy",
                 concurrency: int = 2):
        self.config = config
        self.concurrency = concurrency
        self.run_dir = run_dir
        self.name = name
        self.env = envoy_env(env)
        self.log_path = run_dir / f"{name}.log"
        self.admin_path = run_dir / f"{name}.admin"
        self.base_id_path = run_dir / f"{name}.base_id"
        self.proc: subprocess.Popen[bytes] | None = None
        self.admin_port = 0
        self.port = 0

    def start(self, timeout_s: float = 90.0) -> "Envoy":
        return self.launch().wait_ready(timeout_s)

    def command(self) -> list[str]:
        """Envoy's command line (subclasses change flags here, e.g. the bench's log level)."""
        return [str(ENVOY), "-c", str(self.config), "--concurrency", str(self.concurrency), "--use-dynamic-base-id",
                "--base-id-path", str(self.base_id_path), "--admin-address-path", str(self.admin_path),
                "-l", "info", "--log-path", str(self.log_path), "--file-flush-interval-msec", "50",
                "--drain-time-s", "1", "--parent-shutdown-time-s", "2"]

    def launch(self) -> "Envoy":
        """Spawn only; `wait_ready()` waits for it. Call from the main thread: Envoy gets SIGTERM
        when the thread that started it ends."""
        for p in (self.admin_path, self.log_path):
            p.unlink(missing_ok=True)
        with open(self.run_dir / f"{self.name}.stdout", "wb") as out:
            self.proc = procs.spawn(self.command(), cwd=ENVOY_CWD, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        return self

    def wait_ready(self, timeout_s: float = 90.0) -> "Envoy":
        """Returns once the admin API says LIVE and the listener is bound; stops Envoy on failure."""
        assert self.proc is not None, "launch() first"
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if self.proc.poll() is not None:
                    raise EnvoyError(f"{self.name} exited with {self.proc.returncode} during start:\n{self.log_tail()}")
                if time.monotonic() > deadline:
                    raise EnvoyError(f"{self.name} not ready after {timeout_s}s:\n{self.log_tail()}")
                if self.admin_port == 0 and self.admin_path.exists():
                    addr = self.admin_path.read_text().strip()
                    if addr:
                        self.admin_port = int(addr.rsplit(":", 1)[1])
                if self.admin_port:
                    try:
                        if self.admin("/ready", timeout_s=1.0).strip() == "LIVE":
                            self.port = self._listener_port()
                            return self
                    except OSError:
                        pass
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise

    def _listener_port(self, name: str | None = None) -> int:
        data = json.loads(self.admin("/listeners?format=json"))
        for st in data.get("listener_statuses", []):
            if name is not None and st.get("name") != name:
                continue
            sa = st.get("local_address", {}).get("socket_address", {})
            if sa.get("port_value"):
                return int(sa["port_value"])
        raise EnvoyError(f"no bound listener{' ' + name if name else ''} in {data}")

    def listener_port(self, name: str) -> int:
        """The port Envoy bound for listener `name` (e.g. `duo_agent_platform`, the gRPC one)."""
        return self._listener_port(name)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        rc = procs.stop(self.proc)
        self.proc = None
        return rc

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def admin(self, path: str, method: str = "GET", timeout_s: float = 5.0) -> str:
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}{path}", method=method)
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return r.read().decode("utf-8", "replace")

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            try:
                text = (self.run_dir / f"{self.name}.stdout").read_text(errors="replace")
            except FileNotFoundError:
                return "(no log)"
        keep = [l for l in text.splitlines() if "][debug][" not in l]
        return "\n".join(keep[-lines:])

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # ---- stats -----------------------------------------------------------------------------
    def prometheus(self) -> dict[str, float]:
        """/stats/prometheus as {'name{label="v",...}': value} (labels as Envoy prints them)."""
        out: dict[str, float] = {}
        for line in self.admin("/stats/prometheus").splitlines():
            if not line or line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            try:
                out[key] = float(value)
            except ValueError:
                continue
        return out

    def metric(self, name: str, **labels: str) -> float | None:
        """Sum of the Prometheus series `name` whose labels include `labels` (None if no series)."""
        total, found = 0.0, False
        for key, value in self.prometheus().items():
            m = re.fullmatch(r"([^{]+)(?:\{(.*)\})?", key)
            if not m or m.group(1) != name:
                continue
            have = dict(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            if all(have.get(k) == v for k, v in labels.items()):
                total += value
                found = True
        return total if found else None

    def counter(self, name: str) -> int | None:
        """An Envoy stat by its native name (e.g. `cluster.vllm_codestral.upstream_rq_total`)."""
        data = json.loads(self.admin(f"/stats?format=json&filter=^{re.escape(name)}$"))
        for s in data.get("stats", []):
            if s.get("name") == name:
                return int(s.get("value", 0))
        return None
