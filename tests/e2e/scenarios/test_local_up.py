"""`./build.sh up` works: examples/local/up.py --check starts the local GitLab key set, the fake
model and Envoy with envoy/local.yaml on their fixed 127.0.0.1 ports, sends the example request
with a freshly minted token through all three filters, and gets a real answer; and the Agent
Platform's ListTools reaches the fake Duo Workflow Service through the gRPC listener."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from duo_e2e import ROOT, Skip
from duo_e2e import procs
from duo_e2e import contract
from duo_e2e.runner import scenario


@scenario(timeout_s=240)
def test_local_up_answers(e2e):
    for port in (5052, 5053, 5054, 9902, 50052, 5055):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                raise Skip(f"127.0.0.1:{port} is in use (a ./build.sh up running?)")
    proc = procs.spawn([sys.executable, str(ROOT / "examples" / "local" / "up.py"), "--check"], cwd=ROOT,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=200)
    except subprocess.TimeoutExpired:
        procs.stop(proc)
        raise AssertionError("up.py --check did not finish in 200 s")
    procs.stop(proc)
    text = out.decode("utf-8", "replace")
    if proc.returncode != 0:
        why = contract.pending(text)
        if why:
            raise Skip(why)
        if "refused POST /v1/prompts/generate_commit_message: unknown path" in text and not contract.strict():
            # The model got GitLab's request untranslated: duo_router's prompt translation is not built yet.
            raise Skip("duo_router does not translate /v1/prompts/* for vLLM yet (the model received GitLab's request unchanged)")
    assert proc.returncode == 0, text[-3000:]
    status, _, body = text.strip().splitlines()[-1].partition(" ")
    assert status == "200", text[-3000:]
    answer = json.loads(body)
    assert answer == "Fix the greeting typo in hello.py", answer
    # The Agent Platform listener reached the fake Duo Workflow Service (gRPC through the filters).
    assert "Agent Platform ListTools: read_file, run_command" in text, text[-3000:]
