"""The configuration gate: every shipped envoy/*.yaml passes `envoy --mode validate` with the
built filters (which runs each plugin's on_configure), every envoy/invalid/*.yaml is refused for
the reason its `# expect:` line names, and the shipped files have the shape the README's feature table
and docs/envoy-facts.md E12, E9, E1, E11 require (static checks)."""

from __future__ import annotations

import json
import re
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from duo_e2e import ROOT, Skip, bootstrap, scenario, validate
from duo_e2e import contract

SHIPPED = sorted((ROOT / "envoy").glob("*.yaml"))
INVALID = sorted((ROOT / "envoy" / "invalid").glob("*.yaml"))
FILTER_ORDER = ["duo_logger", "duo_auth", "duo_router"]
ACCESS_LOG_FORMAT = "%FILTER_STATE(wasm.duo_access_log:PLAIN)%\n"


_POOL = ThreadPoolExecutor(max_workers=2)
_FUTURES: dict[Path, Future] = {}


def _validated(path: Path):
    """`envoy --mode validate` of every config, started together on first use and run two at a
    time; each scenario waits only for its own file."""
    if not _FUTURES:
        for p in SHIPPED + INVALID:
            _FUTURES[p] = _POOL.submit(validate, p, 300.0)
    return _FUTURES[path].result()


def _validates(path: Path):
    def scenario(e2e):
        v = _validated(path)
        if not v.ok:
            why = contract.pending(v.output)
            if why:
                raise Skip(why)
        assert v.ok, f"envoy --mode validate refused {path.relative_to(ROOT)}:\n{v.output[-3000:]}"
    return scenario


def _refused(path: Path):
    expect = re.search(r"^# expect: (.+)$", path.read_text(), re.M)

    def scenario(e2e):
        assert expect, f"{path.relative_to(ROOT)} has no '# expect: <text in Envoy's error>' line"
        v = _validated(path)
        assert not v.ok, f"envoy --mode validate accepted {path.relative_to(ROOT)}, which must be refused"
        # Envoy names the file in its errors: match the reason, not the file name.
        output = v.output.replace(str(path), "<config>").replace(str(path.relative_to(ROOT)), "<config>")
        if expect.group(1) not in output:
            why = contract.pending(v.output)
            if why:
                raise Skip(f"refused, but not yet for its own reason: {why}")
        assert expect.group(1) in output, (
            f"{path.relative_to(ROOT)} was refused for another reason than '{expect.group(1)}':\n{v.output[-3000:]}")
    return scenario


for _p in SHIPPED:
    globals()[f"test_validate_{_p.stem}"] = scenario(_validates(_p), timeout_s=300)
    globals()[f"test_validate_{_p.stem}"].__module__ = __name__
for _p in INVALID:
    globals()[f"test_refuse_invalid_{_p.stem}"] = scenario(_refused(_p), timeout_s=300)
    globals()[f"test_refuse_invalid_{_p.stem}"].__module__ = __name__


def test_there_are_configs_to_check(e2e):
    names = {p.stem for p in SHIPPED}
    assert {"self_hosted", "hybrid", "gitlab_com", "local"} <= names, names
    assert len(INVALID) >= 5, INVALID


def _shape_problems(path: Path) -> list[str]:
    boot = bootstrap.load(path)
    problems: list[str] = []
    say = problems.append
    if boot.get("admin", {}).get("address", {}).get("socket_address", {}).get("address") != "127.0.0.1":
        say("admin must listen on 127.0.0.1")
    listeners = boot["static_resources"]["listeners"]
    sa = listeners[0]["address"]["socket_address"]
    if (sa.get("address"), sa.get("port_value")) != ("127.0.0.1", 5052):
        say(f"listener must be 127.0.0.1:5052, is {sa}")
    hcm = next(bootstrap.hcms(boot))
    names = [f["name"] for f in hcm["http_filters"]]
    wasm = [n for n in names if n.startswith("duo_")]
    if wasm != FILTER_ORDER:
        say(f"wasm filters must be {FILTER_ORDER} in that order, are {wasm}")
    if names[-1] != "envoy.filters.http.router":
        say("the router must be the last http filter")
    if "envoy.filters.http.jwt_authn" in names and names.index("envoy.filters.http.jwt_authn") > names.index("duo_logger"):
        say("jwt_authn must come before the wasm filters")
    for name in FILTER_ORDER:
        cfg = bootstrap.wasm_filter(boot, name)
        if cfg is None:
            say(f"{name}: missing")
            continue
        vm = cfg.get("vm_config", {})
        if vm.get("runtime") != "envoy.wasm.runtime.v8":
            say(f"{name}: runtime must be envoy.wasm.runtime.v8")
        if vm.get("code", {}).get("local", {}).get("filename") != f"dist/{name}.wasm":
            say(f"{name}: code must be dist/{name}.wasm (relative to the repository root)")
        # FAIL_RELOAD: the crashing request fails closed, then the VM is reloaded (F7). FAIL_OPEN
        # would skip a security filter; FAIL_CLOSED would leave the worker answering 503 forever.
        if cfg.get("failure_policy") != "FAIL_RELOAD":
            say(f"{name}: failure_policy must be FAIL_RELOAD (docs/envoy-facts.md E9)")
        if cfg.get("allow_on_headers_stop_iteration") is not True:
            say(f"{name}: allow_on_headers_stop_iteration must be true (docs/envoy-facts.md E1)")
        conf = cfg.get("configuration", {})
        if conf.get("@type") != "type.googleapis.com/google.protobuf.StringValue":
            say(f"{name}: configuration must be a google.protobuf.StringValue")
        try:
            json.loads(conf.get("value", ""))
        except json.JSONDecodeError as e:
            say(f"{name}: configuration is not JSON: {e}")
    router = bootstrap.plugin_json(boot, "duo_router") or {}
    auth = bootstrap.plugin_json(boot, "duo_auth") or {}
    if router.get("cluster_header") != "x-duo-upstream":
        say("duo_router cluster_header must be x-duo-upstream")
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    dyn = [r for r in routes if "route" in r and r["route"].get("cluster_header")]
    if len(dyn) != 1 or dyn[0]["route"]["cluster_header"] != "x-duo-upstream":
        say("exactly one route must use cluster_header: x-duo-upstream")
    elif "x-duo-upstream" not in dyn[0].get("request_headers_to_remove", []):
        say("the cluster_header route must remove x-duo-upstream upstream")
    formats = [l.get("typed_config", {}).get("log_format", {}).get("text_format_source", {}).get("inline_string")
               for l in hcm.get("access_log", [])]
    if ACCESS_LOG_FORMAT not in formats:
        say(f"an access log must write {ACCESS_LOG_FORMAT!r}")
    providers = bootstrap.jwt_providers(boot)
    if providers:
        if auth.get("verifier") != "envoy_jwt_authn":
            say("jwt_authn is configured but duo_auth's verifier is not envoy_jwt_authn")
        for pname, p in providers.items():
            for k, v in {"payload_in_metadata": "duo_jwt_payload", "forward": True}.items():
                if p.get(k) != v:
                    say(f"jwt_authn provider {pname}: {k} must be {v!r}")
            # Several providers: one failure key each (jwt_authn keeps only the last write of a key,
            # which would hide a bad signature behind another provider's "unknown kid").
            failure = {f"duo_jwt_failure_{pname}"} | ({"duo_jwt_failure"} if len(providers) == 1 else set())
            if p.get("failed_status_in_metadata") not in failure:
                say(f"jwt_authn provider {pname}: failed_status_in_metadata must be one of {sorted(failure)}")
            if p.get("audiences") != [auth.get("audience", "gitlab-ai-gateway")]:
                say(f"jwt_authn provider {pname}: audiences must be duo_auth's audience")
        jwt = next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.jwt_authn")["typed_config"]
        for rule in jwt.get("rules", []):
            reqs = rule.get("requires", {}).get("requires_any", {}).get("requirements", [])
            if not reqs or reqs[-1] != {"allow_missing_or_failed": {}} or \
                    {r.get("provider_name") for r in reqs[:-1]} != set(providers):
                say("jwt_authn rules must be requires_any [every provider, allow_missing_or_failed]")
    elif auth.get("verifier") == "envoy_jwt_authn":
        say("duo_auth's verifier is envoy_jwt_authn but there is no jwt_authn filter")
    clusters = {c["name"]: c for c in bootstrap.clusters(boot)}
    wanted = {m.get("cluster") for m in (router.get("models") or {}).values()}
    wanted |= {(router.get(k) or {}).get("cluster") for k in ("vendor", "aigw")}
    wanted |= {s.get("cluster") for s in auth.get("jwks_sources") or []}
    wanted |= {p.get("remote_jwks", {}).get("http_uri", {}).get("cluster") for p in providers.values()}
    for c in sorted(x for x in wanted if x):
        if c not in clusters:
            say(f"cluster {c} is referenced but not defined")
    for m in (router.get("models") or {}).values():
        c = clusters.get(m.get("cluster"))
        if c is None:
            continue
        if m.get("platform") == "bedrock":
            sig = bootstrap.upstream_signing(c)
            if not sig or sig.get("service_name") != "bedrock":
                say(f"cluster {c['name']}: Bedrock needs the aws_request_signing upstream filter with service_name bedrock")
            elif f".{sig.get('region')}." not in m.get("authority", ""):
                say(f"cluster {c['name']}: signing region {sig.get('region')} does not match {m.get('authority')}")
        ep = c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
        host = m.get("authority", "").split(":")[0]
        if ep["address"] != host:
            say(f"model cluster {c['name']} connects to {ep['address']}, but the model's authority is {m.get('authority')}")
    return problems


def test_shipped_config_shape(e2e):
    problems = {p.name: _shape_problems(p) for p in SHIPPED}
    bad = {k: v for k, v in problems.items() if v}
    assert not bad, json.dumps(bad, indent=2)
