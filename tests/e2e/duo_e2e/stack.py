"""A Stack: one shipped Envoy config running for real, with a fake behind every cluster.

    stack = e2e.stack("self_hosted")               # envoy/self_hosted.yaml, started once, cached
    r = stack.post("/v1/prompts/generate_commit_message", json_body={...}, headers=stack.gitlab.headers())
    stack.fake("vllm_codestral").last().json()     # what reached vLLM
    stack.access_log()                             # records written since this scenario started

Which fake serves which cluster follows from the config itself: the clusters of jwt_authn's
remote JWKS and of duo_auth's `jwks_sources` get a FakeGitLab; a cluster named by duo_router's
`models` gets the fake of that model's `platform` (serving exactly the models/deployments the admin
listed for that cluster); `vendor.cluster` and `aigw.cluster` get a FakeAigw (with the vendor's
`path_prefix`). Pass `fakes={"cluster": FakeX(...)}` to override, e.g. for a cluster only a test
config has.

With `tls=TestPKI(...)` every cluster that speaks TLS keeps its shipped `transport_socket` and
trusts only the test CA, and its fake serves HTTPS with a certificate that CA issued for the
cluster's SNI name; `certs={"cluster": pki.self_signed(...)}` serves another certificate instead.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from . import bootstrap
from .client import Response, request
from .envoy import ROOT, Envoy
from .fakes import FakeAigw, FakeAzure, FakeBedrock, FakeGitLab, FakeServer, FakeVllm
from .fakes.duo_workflow import FakeDuoWorkflow
from .fakes.bedrock import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY
from .tls import ServerCert, TestPKI


class Stack:
    def __init__(self, name: str, config: Path, run_dir: Path,
                 patch: Callable[[dict[str, Any]], None] | None = None,
                 fakes: dict[str, FakeServer] | None = None, env: dict[str, str] | None = None,
                 concurrency: int = 2, tls: TestPKI | None = None, certs: dict[str, ServerCert] | None = None):
        self.name = name
        self.concurrency = concurrency
        self.source = config
        self.run_dir = run_dir
        self.boot = bootstrap.load(config)
        self.shipped_boot = bootstrap.load(config)  # fakes follow the shipped config, not the patch
        if patch:
            patch(self.boot)
        self.fakes: dict[str, FakeServer] = dict(fakes or {})
        self.env = {"AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": TEST_SECRET_ACCESS_KEY,
                    "HOME": str(run_dir), **(env or {})}
        self.tls = tls
        self.certs = dict(certs or {})
        self.access_log_path = run_dir / f"{name}.access.log"
        self.native_log_path = bootstrap.native_log_path(self.access_log_path)
        self.envoy: Envoy | None = None
        self._log_mark = 0
        self._native_mark = 0

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> "Stack":
        self._make_fakes()
        for name, fake in self.fakes.items():
            if fake._server is None:
                if isinstance(fake, FakeDuoWorkflow):
                    fake.start(cert=self._server_cert(name))
                else:
                    fake.start(tls=self._server_tls(name))
        ports = {name: fake.port for name, fake in self.fakes.items()}
        self.access_log_path.touch()
        self.native_log_path.touch()
        cfg = bootstrap.dump(bootstrap.for_e2e(self.boot, ports, self.access_log_path,
                                               tls_ca=self.tls.ca_path if self.tls else None),
                             self.run_dir / f"{self.name}.yaml")
        self.envoy = Envoy(cfg, self.run_dir, env=self.env, name=self.name, concurrency=self.concurrency)
        try:
            self.envoy.start()
        except BaseException:
            self.stop()
            raise
        self.mark()
        return self

    def _server_tls(self, cluster: str) -> Any:
        """The fake's server TLS context when this is a TLS stack and the cluster speaks TLS."""
        cert = self._server_cert(cluster)
        return cert.server_context() if cert is not None else None

    def _server_cert(self, cluster: str) -> ServerCert | None:
        if self.tls is None:
            return None
        c = next((c for c in bootstrap.clusters(self.boot) if c["name"] == cluster), None)
        tls = bootstrap.upstream_tls(c) if c else None
        if tls is None:
            return None
        return self.certs.get(cluster) or self.tls.issue(tls.get("sni") or cluster)

    def stop(self) -> None:
        if self.envoy is not None:
            self.envoy.stop()
        for fake in self.fakes.values():
            fake.stop()

    def mark(self) -> None:
        """Forget what fakes recorded and start the access log from here (done before each scenario)."""
        for fake in self.fakes.values():
            fake.reset()
        self._log_mark = self.access_log_path.stat().st_size if self.access_log_path.exists() else 0
        self._native_mark = self.native_log_path.stat().st_size if self.native_log_path.exists() else 0

    def _make_fakes(self) -> None:
        boot = self.shipped_boot
        for pname, provider in bootstrap.jwt_providers(boot).items():
            uri = provider.get("remote_jwks", {}).get("http_uri", {})
            if uri.get("cluster") and uri["cluster"] not in self.fakes:
                u = urlsplit(uri["uri"])
                self.fakes[uri["cluster"]] = FakeGitLab(uri["cluster"], issuer=f"https://{u.netloc}", jwks_path=u.path)
        auth = bootstrap.plugin_json(boot, "duo_auth") or {}
        for src in auth.get("jwks_sources") or []:
            if src.get("cluster") and src["cluster"] not in self.fakes:
                self.fakes[src["cluster"]] = FakeGitLab(src["cluster"], issuer=f"https://{src.get('authority', src['cluster'])}",
                                                        jwks_path=src.get("jwks_path") or "/oauth/discovery/keys")
        router = bootstrap.plugin_json(boot, "duo_router") or {}
        by_cluster: dict[str, list[dict[str, Any]]] = {}
        for m in (router.get("models") or {}).values():
            by_cluster.setdefault(m.get("cluster", ""), []).append(m)
        for cluster, models in by_cluster.items():
            if cluster in self.fakes or not cluster:
                continue
            platform = models[0].get("platform")
            names = [m.get("model", "") for m in models]
            if platform in ("vllm", "openai_compatible"):
                self.fakes[cluster] = FakeVllm(cluster, served_models=names, base_path=models[0].get("base_path", "/v1"))
            elif platform == "bedrock":
                c = next((c for c in bootstrap.clusters(boot) if c["name"] == cluster), {})
                region = (bootstrap.upstream_signing(c) or {}).get("region", "us-east-1")
                self.fakes[cluster] = FakeBedrock(cluster, region=region, models=names)
            elif platform == "azure_openai":
                self.fakes[cluster] = FakeAzure(cluster, deployments=names)
        # The Duo Workflow Service: the router's Agent Platform targets, and any other cluster that
        # speaks HTTP/2 to its upstream (the shipped configs' duo_workflow* clusters).
        gitlabs = [f for f in self.fakes.values() if isinstance(f, FakeGitLab)]
        dws = [(router.get(k) or {}).get("cluster") for k in ("agent_platform", "agent_platform_vendor")]
        dws += [c["name"] for c in bootstrap.clusters(boot) if bootstrap.upstream_http2(c)]
        for cluster in dws:
            if cluster and cluster not in self.fakes:
                self.fakes[cluster] = FakeDuoWorkflow(cluster, gitlabs=gitlabs)
        for fake in self.fakes.values():
            if isinstance(fake, FakeDuoWorkflow) and not fake.gitlabs:
                fake.gitlabs = gitlabs  # a scenario's own fake verifies GitLab's tokens too
        for key in ("vendor", "aigw"):
            target = router.get(key) or {}
            if target.get("cluster") and target["cluster"] not in self.fakes:
                self.fakes[target["cluster"]] = FakeAigw(target["cluster"], path_prefix=target.get("path_prefix", ""))
        missing = [c["name"] for c in bootstrap.clusters(self.boot) if c["name"] not in self.fakes]
        if missing:
            raise KeyError(f"{self.source.name}: no fake for cluster(s) {missing}; pass fakes={{...}}")

    # ---- access ----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self.envoy is not None
        return self.envoy.port

    @property
    def grpc_port(self) -> int:
        """The Agent Platform (gRPC) listener's port."""
        assert self.envoy is not None
        return self.envoy.listener_port("duo_agent_platform")

    @property
    def gitlab(self) -> FakeGitLab:
        """The fake GitLab on cluster `gitlab` (else the first FakeGitLab, e.g. `customersdot`)."""
        fake = self.fakes.get("gitlab")
        if not isinstance(fake, FakeGitLab):
            fake = next((f for f in self.fakes.values() if isinstance(f, FakeGitLab)), None)
        assert isinstance(fake, FakeGitLab), f"{self.name} has no FakeGitLab"
        return fake

    def fake(self, cluster: str) -> Any:
        return self.fakes[cluster]

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | str | None = None,
                json_body: Any = None, timeout_s: float = 30.0) -> Response:
        return request(self.port, method, path, headers=headers, body=body, json_body=json_body, timeout_s=timeout_s)

    def get(self, path: str, headers: dict[str, str] | None = None, **kw: Any) -> Response:
        return self.request("GET", path, headers=headers, **kw)

    def post(self, path: str, json_body: Any = None, headers: dict[str, str] | None = None, **kw: Any) -> Response:
        return self.request("POST", path, headers=headers, json_body=json_body, **kw)

    def access_log(self, wait_for: int = 0, timeout_s: float = 5.0) -> list[Any]:
        """Access-log lines written since the scenario started, parsed as JSON when they are JSON
        (duo_logger's record), else kept as the raw string (`-` when the filter state is absent).
        With `wait_for=n`, waits (bounded) until at least n lines are there."""
        return _read_log(self.access_log_path, self._log_mark, wait_for, timeout_s)

    def native_log(self, wait_for: int = 0, timeout_s: float = 5.0) -> list[Any]:
        """Envoy's native access-log lines (JSON objects with `log_type: envoy`) since the scenario started."""
        return _read_log(self.native_log_path, self._native_mark, wait_for, timeout_s)

    def unexpected_refusals(self) -> list[str]:
        return [f"{r!r}" for fake in self.fakes.values() for r in fake.refusals]


def _read_log(path: Path, mark: int, wait_for: int, timeout_s: float) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        with open(path, "rb") as f:
            f.seek(mark)
            lines = [l for l in f.read().decode("utf-8", "replace").splitlines() if l.strip()]
        if len(lines) >= wait_for or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    out: list[Any] = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            out.append(line)
    return out


def shipped(name: str) -> Path:
    return ROOT / "envoy" / f"{name}.yaml"
