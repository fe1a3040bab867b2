"""Turn a shipped Envoy bootstrap (envoy/*.yaml) into the one the e2e runs, changing only what
must change on a test machine and keeping everything else (filters, their configurations, routes,
upstream filters such as SigV4 signing):

- listener and admin bind 127.0.0.1 port 0 (the real ports are read back from the admin API);
- every cluster points at its fake on 127.0.0.1 (STATIC); by default plain HTTP (`transport_socket`
  dropped); with `tls_ca` (the TLS stacks) each cluster keeps its shipped `transport_socket` (SNI,
  expected SAN) and only the trusted CA bundle becomes the test CA, so the fakes serve HTTPS;
- file access logs write to the run directory: duo_logger's record to `access_log`, Envoy's native
  JSON line (every shipped config has both) to `native_log_path(access_log)`.
Helpers also read and patch the JSON configuration of a wasm filter (for scenario variants)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml


def load(path: Path) -> dict[str, Any]:
    with open(path) as f:
        return yaml.safe_load(f)


def dump(boot: dict[str, Any], path: Path) -> Path:
    with open(path, "w") as f:
        yaml.safe_dump(boot, f, sort_keys=False, width=4096)
    return path


def hcms(boot: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for listener in boot.get("static_resources", {}).get("listeners", []):
        for chain in listener.get("filter_chains", []):
            for f in chain.get("filters", []):
                if f.get("name") == "envoy.filters.network.http_connection_manager":
                    yield f["typed_config"]


def http_filters(boot: dict[str, Any]) -> list[dict[str, Any]]:
    for hcm in hcms(boot):
        return hcm.get("http_filters", [])
    return []


def wasm_filter(boot: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The `config` (PluginConfig) of the wasm filter whose module is dist/<name>.wasm."""
    for f in http_filters(boot):
        cfg = f.get("typed_config", {}).get("config")
        if not cfg:
            continue
        filename = cfg.get("vm_config", {}).get("code", {}).get("local", {}).get("filename", "")
        if filename.endswith(f"{name}.wasm"):
            return cfg
    return None


def plugin_json(boot: dict[str, Any], name: str) -> dict[str, Any] | None:
    cfg = wasm_filter(boot, name)
    if cfg is None:
        return None
    value = cfg.get("configuration", {}).get("value", "")
    return json.loads(value) if value.strip() else {}


def patch_plugin(boot: dict[str, Any], name: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply `change` to the parsed JSON configuration of plugin `name` and store it back."""
    cfg = wasm_filter(boot, name)
    assert cfg is not None, f"no wasm filter {name} in the bootstrap"
    doc = plugin_json(boot, name) or {}
    change(doc)
    cfg["configuration"]["value"] = json.dumps(doc, indent=2)


def jwt_providers(boot: dict[str, Any]) -> dict[str, Any]:
    for f in http_filters(boot):
        if f.get("name") == "envoy.filters.http.jwt_authn":
            return f["typed_config"].get("providers", {})
    return {}


def clusters(boot: dict[str, Any]) -> list[dict[str, Any]]:
    return boot.get("static_resources", {}).get("clusters", [])


def upstream_signing(cluster: dict[str, Any]) -> dict[str, Any] | None:
    """The aws_request_signing upstream filter config of a cluster, if it has one."""
    opts = cluster.get("typed_extension_protocol_options", {}).get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", {})
    for f in opts.get("http_filters", []):
        if f.get("name") == "envoy.filters.http.aws_request_signing":
            return f.get("typed_config", {})
    return None


def upstream_http2(cluster: dict[str, Any]) -> bool:
    """Whether a cluster speaks HTTP/2 to its upstream (gRPC: the Duo Workflow Service)."""
    opts = cluster.get("typed_extension_protocol_options", {}).get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", {})
    return "http2_protocol_options" in (opts.get("explicit_http_config") or {})


def upstream_tls(cluster: dict[str, Any]) -> dict[str, Any] | None:
    """The UpstreamTlsContext of a cluster, if it speaks TLS."""
    ts = cluster.get("transport_socket") or {}
    tc = ts.get("typed_config") or {}
    return tc if tc.get("@type", "").endswith("UpstreamTlsContext") else None


def for_e2e(boot: dict[str, Any], ports: dict[str, int], access_log: Path, tls_ca: Path | None = None) -> dict[str, Any]:
    out = copy.deepcopy(boot)
    out.setdefault("admin", {})["address"] = {"socket_address": {"address": "127.0.0.1", "port_value": 0}}
    for listener in out.get("static_resources", {}).get("listeners", []):
        listener["address"] = {"socket_address": {"address": "127.0.0.1", "port_value": 0}}
    for c in clusters(out):
        name = c["name"]
        if name not in ports:
            raise KeyError(f"cluster {name!r} has no fake (add one in Stack or pass fakes=)")
        c["type"] = "STATIC"
        c.pop("dns_lookup_family", None)
        tls = upstream_tls(c)
        if tls_ca is not None and tls is not None:
            vc = tls.get("common_tls_context", {}).get("validation_context", {})
            if "trusted_ca" in vc:
                vc["trusted_ca"] = {"filename": str(tls_ca)}
        else:
            c.pop("transport_socket", None)
        c["load_assignment"] = {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": ports[name]}}}}]}]}
    for hcm in hcms(out):
        for log in hcm.get("access_log", []):
            tc = log.get("typed_config", {})
            if "path" in tc:
                native = "json_format" in tc.get("log_format", {})
                tc["path"] = str(native_log_path(access_log) if native else access_log)
    return out


def native_log_path(access_log: Path) -> Path:
    """Where the e2e writes Envoy's native access-log line (beside duo_logger's records)."""
    return access_log.with_name(access_log.name.replace(".access.log", "") + ".envoy.log")
