"""Every child process the e2e layer starts goes through here: its own process group, and a
guaranteed teardown (explicit stop, `atexit`, SIGTERM/SIGINT/SIGHUP) that signals only the
groups we created."""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import threading
from typing import Any

_children: list[subprocess.Popen[bytes]] = []
_lock = threading.Lock()


def spawn(cmd: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, start_new_session=True, stdin=subprocess.DEVNULL, **kwargs)
    with _lock:
        _children.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> int | None:
    """SIGTERM the process group, wait `grace_s`, then SIGKILL it."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
    else:
        # The leader is gone; make sure nothing of its group lingers.
        _signal_group(proc, signal.SIGKILL)
    with _lock:
        if proc in _children:
            _children.remove(proc)
    return proc.returncode


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # start_new_session: the group id is the child's pid
    except (ProcessLookupError, PermissionError):
        pass


def stop_all() -> None:
    with _lock:
        procs = list(_children)
    for p in procs:
        stop(p, grace_s=3.0)


def _on_signal(signum: int, _frame: Any) -> None:
    stop_all()
    raise SystemExit(128 + signum)


def install_handlers() -> None:
    atexit.register(stop_all)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
