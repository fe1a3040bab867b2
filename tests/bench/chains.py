"""The Envoy bootstraps the bench measures, in one place for `run.py` and `ablate.py`: the shipped
self_hosted chain (per model and verifier), plain Envoy, cumulative chains with do-nothing
wasm filters in place of ours (the floor, docs/bench.md "Profiling"), the Agent Platform's gRPC
listener (plain, floor, shipped) and the chain with the model ingress on."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from duo_e2e import bootstrap  # noqa: E402

JWT = "envoy.filters.http.jwt_authn"
ROUTER = "envoy.filters.http.router"
DUO_FILTERS = ("duo_logger", "duo_auth", "duo_router")
NOOP_WASM = Path(os.environ.get("ABLATE_NOOP_WASM", ROOT / "target" / "wasm32-wasip1" / "release" / "duo_bench_noop.wasm"))
# `./build.sh bench` copies the callback-timing builds of the three filters here (profiling only).
TIMING_DIST = ROOT / "target" / "bench-timing" / "dist"


def duo_boot(model: str, verifier: str, source: Path = ROOT) -> dict[str, Any]:
    """The shipped self_hosted config with `generate_commit_message` on `model`, duo_chat on the
    SSE fake, and `verifier` (`builtin` drops the jwt_authn filter). `source`: the tree whose
    shipped config it is (a baseline commit's filters get their own commit's config)."""
    boot = bootstrap.load(source / "envoy" / "self_hosted.yaml")

    def router(c: dict[str, Any]) -> None:
        c["models"]["stream_model"] = {"platform": "vllm", "cluster": "vllm_stream", "authority": "vllm.internal:8000",
                                       "base_path": "/v1", "model": "Codestral-22B-v0.1", "family": "codestral"}
        c["features"]["generate_commit_message"] = {"provider": "self_hosted", "model": model}
        c["features"]["duo_chat"] = {"provider": "self_hosted", "model": "stream_model"}
    bootstrap.patch_plugin(boot, "duo_router", router)
    if verifier == "builtin":
        bootstrap.patch_plugin(boot, "duo_auth", lambda c: c.update(verifier="builtin"))
        for hcm in bootstrap.hcms(boot):
            hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != JWT]
    vllm = next(c for c in bootstrap.clusters(boot) if c["name"] == "vllm_codestral")
    bootstrap.clusters(boot).append({**json.loads(json.dumps(vllm)), "name": "vllm_stream"})
    # The HTTP chain only: the Agent Platform's gRPC listener and the Duo Workflow Service
    # clusters stay out (grpc_boot measures them on their own stacks).
    res = boot["static_resources"]
    res["listeners"] = [l for l in res["listeners"] if not _is_agent_platform(l)]
    res["clusters"] = [c for c in res["clusters"] if not c["name"].startswith("duo_workflow")]
    return boot


def plain_boot() -> dict[str, Any]:
    """The same listener, access log and clusters as the shipped config, no filters but the router,
    routing by path (GitLab's path unchanged) to the same fakes."""
    boot = duo_boot("codestral", "envoy_jwt_authn")
    for hcm in bootstrap.hcms(boot):
        hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] == ROUTER]
        for vh in hcm["route_config"]["virtual_hosts"]:
            routes = [r for r in vh["routes"] if "direct_response" in r]
            routes.append({"match": {"prefix": "/v1/prompts/chat/"}, "route": {"cluster": "vllm_stream", "timeout": "120s"}})
            routes.append({"match": {"prefix": "/"}, "route": {"cluster": "vllm_codestral", "timeout": "120s"}})
            vh["routes"] = routes
    return boot


AGENT_PLATFORM = "duo_agent_platform"
# The model ingress caller's key in the bench (duo_auth holds only its SHA-256).
INGRESS_KEY = "sk-bench-ingress-key-not-a-secret"


def _is_agent_platform(listener: dict[str, Any]) -> bool:
    return any(f.get("typed_config", {}).get("stat_prefix") == AGENT_PLATFORM
               for fc in listener.get("filter_chains", []) for f in fc.get("filters", []))


def grpc_boot(kind: str) -> dict[str, Any]:
    """The shipped self_hosted config's Agent Platform listener alone (HTTP/2, to the
    `duo_workflow` cluster). `duo`: jwt_authn + duo_logger + duo_auth + duo_router as shipped;
    `plain`: the same listener, access log and cluster with only Envoy's router, routed straight
    there; `floor`: jwt_authn + three do-nothing wasm filters + the router, routed the same way."""
    boot = bootstrap.load(ROOT / "envoy" / "self_hosted.yaml")
    res = boot["static_resources"]
    res["listeners"] = [l for l in res["listeners"] if _is_agent_platform(l)]
    if kind == "duo":
        return boot
    if kind not in ("plain", "floor"):
        raise ValueError(f"grpc_boot: unknown kind {kind!r}")
    for hcm in bootstrap.hcms(boot):
        jwt = [f for f in hcm["http_filters"] if f["name"] == JWT] if kind == "floor" else []
        noops = [noop_filter(i) for i in range(3)] if kind == "floor" else []
        hcm["http_filters"] = jwt + noops + [f for f in hcm["http_filters"] if f["name"] == ROUTER]
        for vh in hcm["route_config"]["virtual_hosts"]:
            for r in vh["routes"]:
                r.pop("request_headers_to_remove", None)
                r["route"] = {"cluster": "duo_workflow", "timeout": "0s", "idle_timeout": "1800s"}
    return boot


def ingress_boot() -> dict[str, Any]:
    """duo_boot's jwt_authn chain with the model ingress on (README "Model ingress"): every model
    served, one ingress key."""
    import hashlib
    boot = duo_boot("codestral", "envoy_jwt_authn")
    bootstrap.patch_plugin(boot, "duo_auth", lambda c: c.update(
        ingress_keys=[{"name": "bench", "sha256": hashlib.sha256(INGRESS_KEY.encode()).hexdigest()}]))
    bootstrap.patch_plugin(boot, "duo_router", lambda c: c.update(model_ingress={"enabled": True}))
    return boot


def noop_filter(i: int, reads: str = "") -> dict[str, Any]:
    """A do-nothing wasm filter in its own VM, configured like ours (optionally reading one
    request header, a jwt_authn claim or the whole payload per request: see tests/bench/noop)."""
    return {"name": f"noop{i}", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": f"noop{i}", "root_id": f"noop{i}", "failure_policy": "FAIL_RELOAD",
                   "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": reads},
                   "allow_on_headers_stop_iteration": True,
                   "vm_config": {"vm_id": f"noop{i}", "runtime": "envoy.wasm.runtime.v8",
                                 "code": {"local": {"filename": str(NOOP_WASM)}}}}}}


def chain(keep: set[str], static_route: bool, noops: int = 0, reads: str = "") -> dict[str, Any]:
    """The shipped self_hosted chain with only the filters in `keep` (plus Envoy's router) and
    `noops` do-nothing wasm filters; with `static_route` (needed without duo_router) every route
    goes straight to the vLLM cluster."""
    boot = duo_boot("codestral", "envoy_jwt_authn")
    for hcm in bootstrap.hcms(boot):
        kept = [f for f in hcm["http_filters"] if f["name"] in keep]
        hcm["http_filters"] = kept + [noop_filter(i, reads) for i in range(noops)] + [
            f for f in hcm["http_filters"] if f["name"] == ROUTER]
        if static_route:
            for vh in hcm["route_config"]["virtual_hosts"]:
                for r in vh["routes"]:
                    if "route" in r:
                        r["route"] = {"cluster": "vllm_codestral", "timeout": "120s"}
    return boot


def floor_boot() -> dict[str, Any]:
    """The floor (issue 9): jwt_authn + three do-nothing wasm filters, static route to vLLM."""
    return chain(*CHAINS["floor"])


def with_modules(boot: dict[str, Any], dist: Path) -> dict[str, Any]:
    """`boot` with every duo_*.wasm taken from `dist` (absolute paths), e.g. the timing builds."""
    for hcm in bootstrap.hcms(boot):
        for f in hcm["http_filters"]:
            code = f.get("typed_config", {}).get("config", {}).get("vm_config", {}).get("code", {}).get("local", {})
            name = Path(code.get("filename", "")).name
            if name.startswith("duo_") and name.endswith(".wasm"):
                code["filename"] = str((dist / name).resolve())
    return boot


# name -> chain() arguments: (filters kept, static route, do-nothing filters, what they read)
CHAINS: dict[str, tuple[Any, ...]] = {
    "plain": (set(), True),
    "noop1": (set(), True, 1),
    "noop1_100_reads": (set(), True, 1, "100"),
    "noop1_100_pairs": (set(), True, 1, "pairs:100"),
    "noop1_100_setpairs": (set(), True, 1, "setpairs:100"),
    "noop1_100_replace": (set(), True, 1, "replace:100"),
    "noop1_100_remove": (set(), True, 1, "remove:100"),
    "jwt_noop1": ({JWT}, True, 1),
    "jwt_100_claims": ({JWT}, True, 1, "meta:100"),
    "jwt_100_payloads": ({JWT}, True, 1, "payload:100"),
    "jwt": ({JWT}, True),
    "floor": ({JWT}, True, 3),
    "jwt_logger": ({JWT, "duo_logger"}, True),
    "jwt_log_auth": ({JWT, "duo_logger", "duo_auth"}, True),
    "full": ({JWT, *DUO_FILTERS}, False),
    "no_logger": ({JWT, "duo_auth", "duo_router"}, False),
}
# The cumulative chains `./build.sh bench` runs (BENCH_ABLATE): each step adds one filter.
CUMULATIVE = ("plain", "floor", "jwt_logger", "jwt_log_auth", "full")
