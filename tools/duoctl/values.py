"""`./build.sh config VALUES.yaml [-o FILE]`: a complete Envoy bootstrap from a short values file.

The values file says what a GitLab admin knows (GitLab's URL, the models and their endpoints, which
feature goes where, where to listen, TLS files); everything Envoy-specific (filter order,
jwt_authn wiring, SigV4 signing, verified upstream TLS, buffer limits, access logs, stats tags) is
derived here, so the result passes `./build.sh check`. Keys are documented in docs/tooling.md and
in examples/config/values.yaml; an unknown key is an error that names its line."""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from . import yamlpos
from .yamlpos import PosDict

# The native Envoy access-log line written beside duo_logger's record (every shipped config carries
# the same one). It exists so a request is visible even when a VM failed and wrote no record.
NATIVE_LOG_FORMAT = {
    "log_type": "envoy",
    "timestamp": "%START_TIME%",
    "correlation_id": "%REQ(X-REQUEST-ID)%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(:PATH)%",
    "status_code": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%",
    "response_code_details": "%RESPONSE_CODE_DETAILS%",
    "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "upstream_host": "%UPSTREAM_HOST%",
    "upstream_transport_failure_reason": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    "duration_ms": "%DURATION%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
}
DUO_LOG_FORMAT = "%FILTER_STATE(wasm.duo_access_log:PLAIN)%\n"
# The shipped configs' stats_config: `.tag.value` name segments become Prometheus labels
# (duo_core::metrics::TAGS), and the histograms get buckets that fit LLM calls
# (duo_core::metrics::HISTOGRAM_BUCKETS: milliseconds and token counts; docs/logger.md).
_DURATION_MS = [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240, 20480, 40960, 81920, 163840, 327680]
_TTFT_MS = [1, 5, 10, 20, 40, 60, 80, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000, 30000, 60000]
_TOKENS = [4 ** n for n in range(14)]
STATS_CONFIG = {
    "stats_tags": [{"tag_name": t, "regex": rf"^wasmcustom\..*?(\.{t}\.([^.]+))"}
                   for t in ("feature", "model", "outcome", "reason", "result", "provider", "status_class",
                             "grpc_method", "grpc_status", "gen_ai_operation_name", "gen_ai_provider_name",
                             "gen_ai_request_model", "gen_ai_token_type", "error_type")],
    "histogram_bucket_settings": [
        {"match": {"prefix": "wasmcustom.duo_request_duration_ms."}, "buckets": _DURATION_MS},
        {"match": {"prefix": "wasmcustom.gen_ai_client_operation_duration_ms."}, "buckets": _DURATION_MS},
        {"match": {"prefix": "wasmcustom.gen_ai_server_time_to_first_token_ms."}, "buckets": _TTFT_MS},
        {"match": {"prefix": "wasmcustom.gen_ai_client_token_usage."}, "buckets": _TOKENS},
        {"match": {"prefix": "wasmcustom.duo_grpc_call_duration_ms."},
         "buckets": [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 900000, 1800000, 3600000]},
    ],
}

PLATFORMS = ("vllm", "openai_compatible", "bedrock", "azure_openai")
PROVIDERS = ("self_hosted", "vendored", "disabled", "aigw")
# The Agent Platform's chat and flow settings (duo_core::catalogue::Feature::agent_platform).
AGENT_PLATFORM_FEATURES = ("duo_agent_platform_agentic_chat", "review_merge_request_dap", "sast_vulnerability_fp_detection",
                           "secret_vulnerability_fp_detection", "sast_vulnerability_resolution", "security_review",
                           "resolve_dependency_bump")
DEFAULT_CA = "/etc/ssl/certs/ca-certificates.crt"
CUSTOMERS_DOT = "https://customers.gitlab.com"
VENDOR_URL = "https://cloud.gitlab.com/ai"
# GitLab's Duo Workflow Service (the Agent Platform's `vendored` target), HTTP/2 over TLS.
DWS_CLOUD_URL = "https://duo-workflow-svc.runway.gitlab.net"
DWS_AUDIENCE = "gitlab-duo-workflow-service"

TOP_KEYS = {"gitlab_url", "configuration_type", "listener", "admin", "tls", "wasm_dir", "access_log",
            "log_content", "models", "features", "default", "vendor_url", "aigw_url", "customers_dot_url",
            "max_request_bytes", "duo_workflow_url", "agent_platform_port"}
LISTENER_KEYS = {"address", "port", "tls"}
LISTENER_TLS_KEYS = {"cert_file", "key_file"}
ADMIN_KEYS = {"address", "port"}
TLS_KEYS = {"ca_file"}
MODEL_KEYS = {"platform", "url", "region", "model", "family", "identifier", "identifiers", "credentials", "api",
              "api_version", "timeout_ms", "params"}


class ValuesError(Exception):
    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line


def _keys(d, allowed: set, where: str) -> None:
    if not isinstance(d, dict):
        raise ValuesError(getattr(d, "line", 1), f"{where} must be a mapping")
    for k in d:
        if k not in allowed:
            raise ValuesError(d.line_of(k) if isinstance(d, PosDict) else 1,
                              f"unknown key '{where + '.' if where != 'values' else ''}{k}' "
                              f"(known: {', '.join(sorted(allowed))})")


def _url(d: PosDict, key: str, where: str) -> tuple[str, str, int, str]:
    raw = d.get(key)
    u = urlsplit(str(raw or ""))
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValuesError(d.line_of(key), f"{where}.{key} must be an http(s) URL, got {raw!r}")
    port = u.port or (443 if u.scheme == "https" else 80)
    return u.scheme, u.hostname, port, u.path.rstrip("/")


def _authority(scheme: str, host: str, port: int) -> str:
    default = 443 if scheme == "https" else 80
    return host if port == default else f"{host}:{port}"


def _dws_cloud() -> PosDict:
    d = PosDict()
    d["u"] = DWS_CLOUD_URL
    return d


def _cluster_name(s: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", s)


class Builder:
    def __init__(self, values: PosDict):
        self.v = values
        self.clusters: list[dict] = []
        self.ca = DEFAULT_CA
        self.agent_platform = False  # whether the Agent Platform's gRPC listener is generated

    def cluster(self, name: str, scheme: str, host: str, port: int, extra: dict | None = None,
                model: bool = False) -> str:
        c: dict = {
            "name": name,
            "type": "STRICT_DNS" if scheme == "http" else "LOGICAL_DNS",
            "connect_timeout": "5s",
            "dns_lookup_family": "V4_PREFERRED",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}]}]},
        }
        if re.fullmatch(r"[\d.]+", host):
            c["type"] = "STATIC"
            c.pop("dns_lookup_family")
        if scheme == "https":
            c["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": host,
                "common_tls_context": {"validation_context": {
                    "trusted_ca": {"filename": self.ca},
                    "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": host}}]}}}}
        if model:
            # The shipped configs' resilience defaults for model clusters (docs/deployment.md).
            c.update({"lb_policy": "LEAST_REQUEST",
                      "circuit_breakers": {"thresholds": [{"priority": "DEFAULT", "max_connections": 1024,
                                                           "max_pending_requests": 1024, "max_requests": 1024,
                                                           "max_retries": 3, "track_remaining": True}]},
                      "outlier_detection": {"consecutive_5xx": 5, "consecutive_gateway_failure": 3,
                                            "consecutive_local_origin_failure": 3,
                                            "split_external_local_origin_errors": True, "interval": "10s",
                                            "base_ejection_time": "30s", "max_ejection_percent": 50}})
        c.update(extra or {})
        self.clusters.append(c)
        return name

    @staticmethod
    def http2(scheme: str) -> dict:
        """HTTP/2 to a Duo Workflow Service (gRPC), keepalive pings for long workflows."""
        opts: dict = {"typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {"connection_keepalive": {"interval": "60s", "timeout": "20s"}}}}}}
        if scheme == "http":
            opts["health_checks"] = [{"timeout": "5s", "interval": "5s", "no_traffic_interval": "5s", "unhealthy_threshold": 3,
                                      "healthy_threshold": 1, "grpc_health_check": {}}]
        return opts

    def build(self) -> dict:
        v = self.v
        _keys(v, TOP_KEYS, "values")
        ctype = v.get("configuration_type", "self_hosted")
        if ctype not in ("self_hosted", "hybrid", "gitlab_com"):
            raise ValuesError(v.line_of("configuration_type"), "configuration_type must be self_hosted, hybrid or gitlab_com")
        if "gitlab_url" not in v:
            raise ValuesError(v.line, "gitlab_url is required (the GitLab instance whose tokens the gateway accepts)")
        tls = v.get("tls") or PosDict()
        _keys(tls, TLS_KEYS, "tls")
        self.ca = str(tls.get("ca_file", DEFAULT_CA))

        # Token issuers: the GitLab instance, plus CustomersDot when features go to GitLab's vendor gateway.
        issuers = [("gitlab", *_url(v, "gitlab_url", "values"))]
        features_in = v.get("features") or PosDict()
        if not isinstance(features_in, dict):
            raise ValuesError(v.line_of("features"), "features must be a mapping of feature: model name or provider")
        uses_vendor = ctype == "gitlab_com" or any(
            str(x) == "vendored" for x in [*features_in.values(), v.get("default", "")])
        if uses_vendor:
            cd = PosDict()
            cd["customers_dot_url"] = v.get("customers_dot_url", CUSTOMERS_DOT)
            cd.key_lines["customers_dot_url"] = v.line_of("customers_dot_url")
            issuers.append(("customersdot", *_url(cd, "customers_dot_url", "values")))
        jwt_providers, jwks_sources = {}, []
        for name, scheme, host, port, _path in issuers:
            self.cluster(name, scheme, host, port)
            base = f"{scheme}://{_authority(scheme, host, port)}"
            jwt_providers[name] = {
                "audiences": ["gitlab-ai-gateway"],
                "remote_jwks": {"http_uri": {"uri": f"{base}/oauth/discovery/keys", "cluster": name, "timeout": "5s"},
                                "cache_duration": "3600s", "async_fetch": {}, "retry_policy": {"num_retries": 3}},
                "forward": True,
                "payload_in_metadata": "duo_jwt_payload",
                # One failure key per provider when there are several (docs/auth.md, "Several issuers").
                "failed_status_in_metadata": "duo_jwt_failure" if len(issuers) == 1 else f"duo_jwt_failure_{name}",
                "clock_skew_seconds": 60,
            }
            src = {"name": name, "cluster": name, "authority": _authority(scheme, host, port)}
            src["discovery_path" if name == "gitlab" else "jwks_path"] = (
                "/.well-known/openid-configuration" if name == "gitlab" else "/oauth/discovery/keys")
            jwks_sources.append(src)

        models = self.models(v.get("models") or PosDict(), ctype)
        features, default = self.features(features_in, v, models)
        router: dict = {"configuration_type": ctype, "cluster_header": "x-duo-upstream"}
        if models:
            router["models"] = models
        router["features"] = features
        router["default"] = default
        if "max_request_bytes" in v:
            router["max_request_bytes"] = v["max_request_bytes"]
        used = [features[f]["provider"] for f in features] + [default["provider"]]
        if "vendored" in used:
            scheme, host, port, path = _url(v, "vendor_url", "values") if "vendor_url" in v else ("https", "cloud.gitlab.com", 443, "/ai")
            self.cluster("cloud_gitlab", scheme, host, port)
            router["vendor"] = {"cluster": "cloud_gitlab", "authority": _authority(scheme, host, port), "path_prefix": path}
        if "aigw" in used:
            if "aigw_url" not in v:
                raise ValuesError(v.line, "a feature uses provider aigw: set aigw_url (the existing Python AI gateway)")
            scheme, host, port, _ = _url(v, "aigw_url", "values")
            self.cluster("python_aigw", scheme, host, port)
            router["aigw"] = {"cluster": "python_aigw", "authority": _authority(scheme, host, port)}

        # The Agent Platform (gRPC): your Duo Workflow Service for `self_hosted`, GitLab's for
        # `vendored`. Its chat and flow settings without an entry follow duo_agent_platform.
        ap = features.get("duo_agent_platform", default)
        ap_routes = [ap] + [features[f] for f in AGENT_PLATFORM_FEATURES if f in features]
        explicit_self_hosted = [f for f in ("duo_agent_platform", *AGENT_PLATFORM_FEATURES)
                                if f in features and features[f]["provider"] == "self_hosted"]
        self.agent_platform = False
        if any(r["provider"] == "self_hosted" for r in ap_routes) and "duo_workflow_url" in v:
            scheme, host, port, _ = _url(v, "duo_workflow_url", "values")
            self.cluster("duo_workflow", scheme, host, port, self.http2(scheme))
            router["agent_platform"] = {"cluster": "duo_workflow", "authority": _authority(scheme, host, port)}
            self.agent_platform = True
        elif explicit_self_hosted:
            raise ValuesError(v.line_of("features"), f"features.{explicit_self_hosted[0]}: self_hosted needs duo_workflow_url "
                              "(your Duo Workflow Service, e.g. http://dws.internal:50052)")
        if any(r["provider"] == "vendored" for r in ap_routes):
            scheme, host, port, _ = _url(_dws_cloud(), "u", "values")
            self.cluster("duo_workflow_cloud", scheme, host, port, self.http2(scheme))
            router["agent_platform_vendor"] = {"cluster": "duo_workflow_cloud", "authority": _authority(scheme, host, port)}
            self.agent_platform = True

        log_content = v.get("log_content", "never")
        if log_content not in ("never", "when_enabled", "always"):
            raise ValuesError(v.line_of("log_content"), "log_content must be never, when_enabled or always")
        auth = {"audience": "gitlab-ai-gateway", "verifier": "envoy_jwt_authn", "jwks_sources": jwks_sources,
                "unauthenticated_paths": ["/monitoring/healthz", "/monitoring/ready", "/v1/models/definitions"]}
        logger = {"log_content": log_content, "max_content_bytes": 8192}
        wasm_dir = str(v.get("wasm_dir", "dist")).rstrip("/")
        limit = int(router.get("max_request_bytes", 1024 * 1024))
        return self.bootstrap(wasm_dir, jwt_providers, auth, router, logger, max(4 * 1024 * 1024, 2 * limit))

    def models(self, models_in, ctype: str) -> dict:
        if not isinstance(models_in, dict):
            raise ValuesError(getattr(models_in, "line", 1), "models must be a mapping of name: model")
        out = {}
        for name, m in models_in.items():
            where = f"models.{name}"
            _keys(m, MODEL_KEYS, where)
            platform = m.get("platform")
            if platform not in PLATFORMS:
                raise ValuesError(m.line_of("platform"), f"{where}.platform must be one of {', '.join(PLATFORMS)}")
            for req in ("model", "family"):
                if req not in m:
                    raise ValuesError(m.line, f"{where}.{req} is required")
            entry: dict = {"platform": platform}
            cname = _cluster_name(f"model_{name}")
            if platform == "bedrock":
                region = m.get("region")
                if not isinstance(region, str) or not re.fullmatch(r"[a-z]{2}(-gov)?-[a-z]+-\d", region):
                    raise ValuesError(m.line_of("region"), f"{where}.region must be an AWS region such as us-east-1")
                if "url" in m:
                    scheme, host, port, _ = _url(m, "url", where)
                else:
                    scheme, host, port = "https", f"bedrock-runtime.{region}.amazonaws.com", 443
                sign = {"typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http_protocol_options": {}},
                    "http_filters": [
                        {"name": "envoy.filters.http.aws_request_signing", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.aws_request_signing.v3.AwsRequestSigning",
                            "service_name": "bedrock", "region": region, "use_unsigned_payload": False,
                            "match_included_headers": [{"exact": "content-type"}, {"exact": "accept"},
                                                       {"prefix": "x-amzn-bedrock-"}]}},
                        {"name": "envoy.filters.http.upstream_codec", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"}}]}}}
                self.cluster(cname, scheme, host, port, sign, model=True)
                entry.update(cluster=cname, authority=_authority(scheme, host, port))
            else:
                if "url" not in m:
                    raise ValuesError(m.line, f"{where}.url is required (the endpoint you typed in GitLab, e.g. http://vllm:8000/v1)")
                scheme, host, port, path = _url(m, "url", where)
                self.cluster(cname, scheme, host, port, model=True)
                entry.update(cluster=cname, authority=_authority(scheme, host, port))
                if platform in ("vllm", "openai_compatible") and path:
                    entry["base_path"] = path
            entry["model"] = str(m["model"])
            entry["family"] = str(m["family"])
            ids = m.get("identifiers") or ([m["identifier"]] if "identifier" in m else [])
            if not ids:
                prefix = {"bedrock": "bedrock", "azure_openai": "azure"}.get(platform, "custom_openai")
                ids = [f"{prefix}/{m['model']}"]
            entry["identifiers"] = [str(i) for i in ids]
            for k in ("credentials", "api", "api_version", "timeout_ms", "params"):
                if k in m:
                    entry[k] = m[k]
            out[str(name)] = entry
        return out

    def features(self, features_in, v: PosDict, models: dict) -> tuple[dict, dict]:
        def route(value, line: int, where: str) -> dict:
            if isinstance(value, str) and value in PROVIDERS:
                return {"provider": value}
            if isinstance(value, str) and value in models:
                return {"provider": "self_hosted", "model": value}
            raise ValuesError(line, f"{where}: '{value}' is neither a model name ({', '.join(models) or 'no models'}) "
                              f"nor a provider ({', '.join(PROVIDERS)})")
        features = {str(k): route(val, features_in.line_of(k) if isinstance(features_in, PosDict) else 1, f"features.{k}")
                    for k, val in features_in.items()}
        ctype = v.get("configuration_type", "self_hosted")
        default_value = v.get("default", "vendored" if ctype == "gitlab_com" else "self_hosted")
        return features, route(default_value, v.line_of("default"), "default")

    def bootstrap(self, wasm_dir: str, jwt_providers: dict, auth: dict, router: dict, logger: dict, buffer: int) -> dict:
        v = self.v
        listener_in = v.get("listener") or PosDict()
        _keys(listener_in, LISTENER_KEYS, "listener")
        admin_in = v.get("admin") or PosDict()
        _keys(admin_in, ADMIN_KEYS, "admin")
        log_path = str(v.get("access_log", "/dev/stdout"))

        def wasm(name: str, conf: dict) -> dict:
            return {"name": name, "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {"name": name, "root_id": name,
                           "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8",
                                         "code": {"local": {"filename": f"{wasm_dir}/{name}.wasm"}}},
                           "failure_policy": "FAIL_RELOAD",
                           "allow_on_headers_stop_iteration": True,
                           "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                             "value": json.dumps(conf, indent=2) + "\n"}}}}

        def file_log(fmt: dict) -> dict:
            return {"name": "envoy.access_loggers.file", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": log_path, "log_format": fmt}}

        ok = {"status": 200, "body": {"inline_string": '{"status":"ok"}'}}
        json_ct = [{"header": {"key": "content-type", "value": "application/json"}}]
        hcm = {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "duo_gateway",
            "codec_type": "AUTO",
            "request_timeout": "0s",
            "stream_idle_timeout": "300s",
            # Envoy's own replies in GitLab's error shape, as in the shipped configs (docs/deployment.md).
            "local_reply_config": {"mappers": [
                {"filter": {"response_flag_filter": {"flags": ["SI"]}}, "status_code": 504,
                 "body_format_override": {"json_format": {"detail": "upstream request timeout"}}},
                {"filter": {"extension_filter": {"name": "envoy.access_loggers.extension_filters.cel", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                    "expression": "response.code_details != '' && response.code_details != 'direct_response'"}}},
                 "body_format_override": {"json_format": {"detail": "%LOCAL_REPLY_BODY%"}}}]},
            "access_log": [file_log({"text_format_source": {"inline_string": DUO_LOG_FORMAT}}),
                           file_log({"json_format": dict(NATIVE_LOG_FORMAT)})],
            "route_config": {"name": "duo_routes", "virtual_hosts": [{"name": "duo", "domains": ["*"], "routes": [
                {"match": {"path": "/monitoring/healthz"}, "direct_response": ok, "response_headers_to_add": json_ct},
                {"match": {"path": "/monitoring/ready"}, "direct_response": ok, "response_headers_to_add": json_ct},
                {"match": {"prefix": "/"}, "route": {"cluster_header": "x-duo-upstream", "timeout": "0s"},
                 "request_headers_to_remove": ["x-duo-upstream"]}]}]},
            "http_filters": [
                {"name": "envoy.filters.http.jwt_authn", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                    "providers": jwt_providers,
                    "rules": [{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": [
                        *({"provider_name": p} for p in jwt_providers), {"allow_missing_or_failed": {}}]}}}]}},
                wasm("duo_logger", logger),
                wasm("duo_auth", auth),
                wasm("duo_router", router),
                {"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
        }
        chain: dict = {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        tls_in = listener_in.get("tls")
        if tls_in is not None:
            _keys(tls_in, LISTENER_TLS_KEYS, "listener.tls")
            for k in ("cert_file", "key_file"):
                if k not in tls_in:
                    raise ValuesError(tls_in.line, f"listener.tls.{k} is required")
            chain["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "common_tls_context": {"tls_certificates": [{
                    "certificate_chain": {"filename": str(tls_in["cert_file"])},
                    "private_key": {"filename": str(tls_in["key_file"])}}]}}}
        port = listener_in.get("port", 5052)
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValuesError(listener_in.line_of("port"), "listener.port must be a port number")
        listeners = [{
            "name": "duo_gateway",
            "address": {"socket_address": {"address": str(listener_in.get("address", "127.0.0.1")), "port_value": port}},
            "per_connection_buffer_limit_bytes": buffer,
            "filter_chains": [chain]}]
        if self.agent_platform:
            listeners.append(self.agent_platform_listener(hcm, chain, listener_in, buffer))
        return {
            "admin": {"address": {"socket_address": {"address": str(admin_in.get("address", "127.0.0.1")),
                                                     "port_value": int(admin_in.get("port", 9901))}}},
            "stats_config": STATS_CONFIG,
            "static_resources": {
                "listeners": listeners,
                "clusters": self.clusters,
            },
        }

    def agent_platform_listener(self, hcm: dict, chain: dict, listener_in, buffer: int) -> dict:
        """The Agent Platform's gRPC listener (docs/agent-platform.md): the same filters on HTTP/2, no
        local_reply_config (replies stay gRPC-shaped), no overall timeout, 30 minutes idle; jwt_authn
        checks the Duo Workflow Service's audience and lets gRPC health through."""
        v = self.v
        port = v.get("agent_platform_port", 50052)
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValuesError(v.line_of("agent_platform_port"), "agent_platform_port must be a port number")
        g = copy.deepcopy(hcm)
        g.pop("local_reply_config", None)
        g.update(stat_prefix="duo_agent_platform", max_request_headers_kb=96, stream_idle_timeout="1800s",
                 http2_protocol_options={"connection_keepalive": {"interval": "60s", "timeout": "20s"}})
        g["route_config"] = {"name": "duo_agent_platform_routes", "virtual_hosts": [{
            "name": "duo_agent_platform", "domains": ["*"], "routes": [{
                "match": {"prefix": "/"},
                "route": {"cluster_header": "x-duo-upstream", "timeout": "0s", "idle_timeout": "1800s"},
                "request_headers_to_remove": ["x-duo-upstream"]}]}]}
        jwt = g["http_filters"][0]["typed_config"]
        for provider in jwt["providers"].values():
            provider["audiences"] = [DWS_AUDIENCE]
        jwt["rules"] = [{"match": {"prefix": "/grpc.health.v1.Health/"}}, *jwt["rules"]]
        grpc_chain: dict = {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": g}]}
        if "transport_socket" in chain:
            ts = copy.deepcopy(chain["transport_socket"])
            ts["typed_config"]["common_tls_context"]["alpn_protocols"] = ["h2", "http/1.1"]
            grpc_chain["transport_socket"] = ts
        return {"name": "duo_agent_platform",
                "address": {"socket_address": {"address": str(listener_in.get("address", "127.0.0.1")), "port_value": port}},
                "per_connection_buffer_limit_bytes": buffer,
                "filter_chains": [grpc_chain]}


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, s: str):
    # Filter configurations stay readable JSON blocks, as in the shipped configs.
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None)


_Dumper.add_representer(str, _str)


def render(values_text: str, source: str = "values") -> str:
    try:
        values = yamlpos.load(values_text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ValuesError(mark.line + 1 if mark else 1, f"not YAML: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(values, PosDict):
        raise ValuesError(1, "a values file is a YAML mapping (gitlab_url, models, features, ...)")
    if "static_resources" in values or "dynamic_resources" in values:
        raise ValuesError(1, "this is an Envoy bootstrap, not a values file (check it with ./build.sh check; "
                          "examples/config/values.yaml shows a values file)")
    boot = Builder(values).build()
    head = (f"# Generated by ./build.sh config {source}: edit the values file and run it again.\n"
            "# Check it with ./build.sh check; run it from the repository root (the .wasm paths are relative)\n"
            "# or set wasm_dir to where the .wasm files are installed.\n")
    return head + yaml.dump(boot, Dumper=_Dumper, sort_keys=False, width=120)


def main(argv: list[str]) -> int:
    import argparse
    p = argparse.ArgumentParser(prog="./build.sh config", description="Write an Envoy bootstrap from a values file")
    p.add_argument("values", metavar="VALUES.yaml")
    p.add_argument("-o", "--output", help="write here instead of stdout")
    a = p.parse_args(argv)
    try:
        text = Path(a.values).read_text(encoding="utf-8")
    except OSError as e:
        print(f"{a.values}: cannot read: {e.strerror}", file=sys.stderr)
        return 1
    try:
        out = render(text, a.values)
    except ValuesError as e:
        print(f"{a.values}:{e.line}: {e}", file=sys.stderr)
        return 1
    if a.output:
        Path(a.output).write_text(out, encoding="utf-8")
        print(f"wrote {a.output}", file=sys.stderr)
    else:
        sys.stdout.write(out)
    return 0
