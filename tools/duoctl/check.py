"""`./build.sh check FILE...`: the filters' own static cross-checks, then Envoy's --mode validate.

Every problem is one line `FILE:LINE: message`; the exit status is 1 when any file has one.
The rules (docs/tooling.md lists them with the reason for each):

  filter-config    a duo filter's configuration is JSON the filter can parse
  stop-iteration   allow_on_headers_stop_iteration: true on every duo filter
  failure-policy   no FAIL_OPEN on a duo filter (it would skip the security filter)
  filter-order     duo_logger, duo_auth, duo_router in that order; jwt_authn before duo_auth
  jwt-authn        verifier envoy_jwt_authn: a jwt_authn filter whose providers write the metadata
                   keys duo_auth reads
  cluster-exists   every cluster a filter (or jwt_authn) names is defined
  cluster-header   a route sends traffic to the cluster named by duo_router's cluster_header
  bedrock-sigv4    a Bedrock cluster (Envoy credentials) signs with SigV4, service bedrock, the
                   region of the model's authority
  authority        a filter's authority agrees with its cluster's address, port and TLS SNI
  tls-verify       every upstream TLS context verifies the peer: a trusted CA and the expected name
  buffer-limit     Envoy's request buffer limits are not below duo_router's max_request_bytes
  envoy-validate   `envoy --mode validate` accepts the file (runs each filter's on_configure)
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import yamlpos
from .yamlpos import PosDict, PosList

HCM_TYPE = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
WASM_TYPE = "envoy.extensions.filters.http.wasm.v3.Wasm"
JWT_TYPE = "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
UPSTREAM_TLS_TYPE = "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
SIGV4_TYPE = "envoy.extensions.filters.http.aws_request_signing.v3.AwsRequestSigning"
HTTP_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
DUO_FILTERS = ("duo_logger", "duo_auth", "duo_router")
ENVOY_DEFAULT_BUFFER = 1024 * 1024          # listener per_connection_buffer_limit_bytes default
ROUTER_DEFAULT_MAX_REQUEST = 1024 * 1024    # duo_router max_request_bytes default
ROUTER_DEFAULT_CLUSTER_HEADER = "x-duo-upstream"
BEDROCK_HOST = re.compile(
    r"^(?:[a-z0-9-]+\.)?bedrock-runtime(?:-fips)?\.([a-z]{2}(?:-gov)?-[a-z]+-\d)\.(?:vpce\.)?amazonaws\.com$")


@dataclass
class Problem:
    line: int
    rule: str
    message: str


def _type(typed_config) -> str:
    if not isinstance(typed_config, dict):
        return ""
    return str(typed_config.get("@type", "")).rsplit("/", 1)[-1]


def _get(d, *path, default=None):
    for key in path:
        if isinstance(d, dict) and key in d:
            d = d[key]
        elif isinstance(d, list) and isinstance(key, int) and 0 <= key < len(d):
            d = d[key]
        else:
            return default
    return d


@dataclass
class DuoFilter:
    kind: str            # duo_logger | duo_auth | duo_router
    index: int           # position in the HCM's http_filters
    line: int            # line of the filter's `name:`
    wasm: PosDict        # the Wasm typed_config's `config`
    conf: dict | None    # parsed JSON configuration (None when it does not parse)
    text: str            # the JSON text
    text_line: int       # line where the JSON text starts

    def line_of(self, *path) -> int:
        return yamlpos.json_line(self.text, list(path), self.text_line)


@dataclass
class Hcm:
    line: int
    config: PosDict
    listener: PosDict
    filters: list        # http_filters (PosList)
    duo: list            # DuoFilter


def _filter_kind(f: dict, wasm: dict) -> str | None:
    names = [str(_get(wasm, "vm_config", "code", "local", "filename", default="")),
             str(wasm.get("name", "")), str(wasm.get("root_id", "")), str(f.get("name", ""))]
    for kind in DUO_FILTERS:
        if any(kind in n for n in names):
            return kind
    return None


class Checker:
    def __init__(self, doc: PosDict):
        self.doc = doc
        self.problems: list[Problem] = []
        self.clusters: dict[str, PosDict] = {}
        self.hcms: list[Hcm] = []

    def add(self, line: int, rule: str, message: str) -> None:
        self.problems.append(Problem(line, rule, message))

    # -- collection ---------------------------------------------------------------------------
    def collect(self) -> None:
        static = self.doc.get("static_resources") or {}
        for c in static.get("clusters") or []:
            if isinstance(c, dict) and "name" in c:
                self.clusters[str(c["name"])] = c
        for listener in static.get("listeners") or []:
            if not isinstance(listener, dict):
                continue
            chains = list(listener.get("filter_chains") or [])
            if isinstance(listener.get("default_filter_chain"), dict):
                chains.append(listener["default_filter_chain"])
            for chain in chains:
                for nf in (chain or {}).get("filters") or []:
                    tc = (nf or {}).get("typed_config")
                    if _type(tc) == HCM_TYPE:
                        self.hcms.append(self._hcm(listener, tc))

    def _hcm(self, listener: PosDict, tc: PosDict) -> Hcm:
        filters = tc.get("http_filters") or PosList()
        duo = []
        for i, f in enumerate(filters):
            if not isinstance(f, dict) or _type(f.get("typed_config")) != WASM_TYPE:
                continue
            wasm = _get(f, "typed_config", "config") or PosDict()
            kind = _filter_kind(f, wasm)
            if kind is None:
                continue
            cfg = wasm.get("configuration") or {}
            text = cfg.get("value", "") if isinstance(cfg, dict) else ""
            text_line = cfg.text_lines.get("value", cfg.line) if isinstance(cfg, PosDict) else wasm.line
            conf = None
            try:
                conf = json.loads(text) if text.strip() else {}
                if not isinstance(conf, dict):
                    raise ValueError("not a JSON object")
            except ValueError as e:
                line = text_line + (getattr(e, "lineno", 1) - 1)
                self.add(line, "filter-config", f"{kind}: configuration is not a JSON object: {e}")
                conf = None
            duo.append(DuoFilter(kind, i, filters.line_of(i), wasm, conf, text, text_line))
        return Hcm(tc.line, tc, listener, filters, duo)

    # -- rules --------------------------------------------------------------------------------
    def run(self) -> list[Problem]:
        self.collect()
        if not any(h.duo for h in self.hcms):
            self.add(1, "filter-config", "no duo_logger, duo_auth or duo_router wasm filter in any "
                     "listener's http_connection_manager: nothing for check to cross-check")
        for hcm in self.hcms:
            if hcm.duo:
                self.check_filters(hcm)
                self.check_routes(hcm)
                self.check_buffers(hcm)
        self.check_tls()
        self.problems.sort(key=lambda p: p.line)
        return self.problems

    def check_filters(self, hcm: Hcm) -> None:
        seen = [d.kind for d in hcm.duo]
        order = [k for k in DUO_FILTERS if k in seen]
        if seen != order:
            self.add(hcm.duo[0].line, "filter-order",
                     f"duo filters run in the order {', '.join(seen)}; they must run as {', '.join(order)} "
                     "(the logger sees every answer, auth decides before the router reads the body)")
        for d in hcm.duo:
            stop = d.wasm.get("allow_on_headers_stop_iteration")
            if stop is not True:
                self.add(d.wasm.line_of("allow_on_headers_stop_iteration"), "stop-iteration",
                         f"{d.kind}: allow_on_headers_stop_iteration must be true (without it Envoy 1.40 never "
                         "delivers the body to a filter that holds the headers: the request hangs or gets the "
                         "router's body-watchdog 500)")
            if d.wasm.get("failure_policy") == "FAIL_OPEN":
                self.add(d.wasm.line_of("failure_policy"), "failure-policy",
                         f"{d.kind}: failure_policy FAIL_OPEN lets requests through unfiltered when the VM fails; "
                         "use FAIL_RELOAD")
            if d.conf is None:
                continue
            if d.kind == "duo_auth":
                self.check_auth(hcm, d)
            elif d.kind == "duo_router":
                self.check_router(d)

    def need_cluster(self, name, line: int, who: str) -> PosDict | None:
        if not isinstance(name, str) or not name:
            return None
        c = self.clusters.get(name)
        if c is None:
            known = ", ".join(sorted(self.clusters)) or "none"
            self.add(line, "cluster-exists", f"{who} names cluster '{name}', which is not defined (clusters: {known})")
        return c

    def check_auth(self, hcm: Hcm, d: DuoFilter) -> None:
        for i, src in enumerate(d.conf.get("jwks_sources") or []):
            if not isinstance(src, dict):
                continue
            who = f"duo_auth jwks_sources[{i}] ({src.get('name', '?')})"
            line = d.line_of("jwks_sources", src.get("name", ""), "cluster") if src.get("name") else d.text_line
            c = self.need_cluster(src.get("cluster"), line, who)
            if c is not None and src.get("authority"):
                self.check_authority(str(src["authority"]), c, line, who)
        jwt = [(i, f) for i, f in enumerate(hcm.filters)
               if isinstance(f, dict) and _type(f.get("typed_config")) == JWT_TYPE]
        for _, f in jwt:
            providers = _get(f, "typed_config", "providers") or {}
            for pname, p in providers.items():
                if not isinstance(p, dict):
                    continue
                uri = _get(p, "remote_jwks", "http_uri") or {}
                uline = uri.line if isinstance(uri, PosDict) else providers.line_of(pname)
                c = self.need_cluster(uri.get("cluster"), uline, f"jwt_authn provider '{pname}'")
                if c is not None and uri.get("uri"):
                    m = re.match(r"^(https?)://([^/]+)", str(uri["uri"]))
                    if m:
                        self.check_authority(m.group(2), c, uline, f"jwt_authn provider '{pname}' uri",
                                             scheme=m.group(1))
        if d.conf.get("verifier", "builtin") != "envoy_jwt_authn":
            return
        if not jwt or jwt[0][0] > d.index:
            self.add(d.line, "jwt-authn", "duo_auth verifier is envoy_jwt_authn but no "
                     "envoy.filters.http.jwt_authn runs before it in this filter chain")
            return
        for _, f in jwt:
            providers = _get(f, "typed_config", "providers") or {}
            for pname, p in providers.items():
                if not isinstance(p, dict):
                    continue
                # Several providers: one failure key each (jwt_authn keeps only the last write of a
                # key, which would hide one provider's bad signature behind another's unknown kid).
                failure = [f"duo_jwt_failure_{pname}"] + (["duo_jwt_failure"] if len(providers) == 1 else [])
                for key, wanted in (("payload_in_metadata", ["duo_jwt_payload"]),
                                    ("failed_status_in_metadata", failure)):
                    if p.get(key) not in wanted:
                        line = p.line_of(key) if isinstance(p, PosDict) else f.line
                        want = " or ".join(f"'{w}'" for w in reversed(wanted))
                        self.add(line, "jwt-authn", f"jwt_authn provider '{pname}': {key} must be {want} "
                                 "(duo_auth reads the verdict there)")

    def check_router(self, d: DuoFilter) -> None:
        conf = d.conf
        for name, m in (conf.get("models") or {}).items():
            if not isinstance(m, dict):
                continue
            line = d.line_of("models", name, "cluster")
            who = f"duo_router model '{name}'"
            c = self.need_cluster(m.get("cluster"), line, who)
            if c is None:
                continue
            if m.get("authority"):
                self.check_authority(str(m["authority"]), c, d.line_of("models", name, "authority"), who)
            creds = m.get("credentials", "envoy" if m.get("platform") == "bedrock" else "gitlab")
            if m.get("platform") == "bedrock" and creds == "envoy":
                self.check_sigv4(c, str(m.get("authority", "")), line, who)
        for section in ("vendor", "aigw", "agent_platform", "agent_platform_vendor"):
            s = conf.get(section)
            if isinstance(s, dict):
                line = d.line_of(section, "cluster")
                c = self.need_cluster(s.get("cluster"), line, f"duo_router {section}")
                if c is not None and s.get("authority"):
                    self.check_authority(str(s["authority"]), c, line, f"duo_router {section}")

    def check_routes(self, hcm: Hcm) -> None:
        router = next((d for d in hcm.duo if d.kind == "duo_router" and d.conf is not None), None)
        if router is None:
            return
        header = str(router.conf.get("cluster_header", ROUTER_DEFAULT_CLUSTER_HEADER))
        rc = hcm.config.get("route_config")
        if not isinstance(rc, dict):
            self.add(hcm.line, "cluster-header", "routes come from RDS or scoped routes: check cannot see "
                     f"whether a route uses cluster_header '{header}'; use an inline route_config")
            return
        routes = [r for vh in rc.get("virtual_hosts") or [] for r in (vh or {}).get("routes") or []]
        using = [r for r in routes if _get(r, "route", "cluster_header") == header]
        if not using:
            other = [_get(r, "route", "cluster_header") for r in routes if _get(r, "route", "cluster_header")]
            hint = f" (routes use cluster_header {', '.join(map(repr, other))})" if other else ""
            self.add(hcm.config.line_of("route_config"), "cluster-header", f"no route has cluster_header '{header}', the header duo_router "
                     f"sets to the chosen cluster: its requests would never reach a model{hint}")

    def check_buffers(self, hcm: Hcm) -> None:
        router = next((d for d in hcm.duo if d.kind == "duo_router" and d.conf is not None), None)
        if router is None:
            return
        limit = router.conf.get("max_request_bytes", ROUTER_DEFAULT_MAX_REQUEST)
        if not isinstance(limit, int):
            return
        listener = hcm.listener
        buf = listener.get("per_connection_buffer_limit_bytes", ENVOY_DEFAULT_BUFFER)
        if isinstance(buf, int) and buf < limit:
            line = listener.line_of("per_connection_buffer_limit_bytes")
            self.add(line, "buffer-limit", f"listener per_connection_buffer_limit_bytes {buf} is below duo_router "
                     f"max_request_bytes {limit}: Envoy would answer bodies between the two with its own "
                     "plain-text 413 before the router sees them; raise it to at least the router's limit")
        rc = hcm.config.get("route_config")
        for vh in (rc or {}).get("virtual_hosts") or [] if isinstance(rc, dict) else []:
            for r in (vh or {}).get("routes") or []:
                for key in ("per_request_buffer_limit_bytes", "request_body_buffer_limit"):
                    v = r.get(key) if isinstance(r, dict) else None
                    if isinstance(v, int) and v < limit:
                        self.add(r.line_of(key), "buffer-limit", f"route {key} {v} is below duo_router "
                                 f"max_request_bytes {limit}")

    # -- clusters -----------------------------------------------------------------------------
    @staticmethod
    def endpoints(c: dict) -> list[tuple[str, int]]:
        out = []
        for ep in _get(c, "load_assignment", "endpoints", default=[]) or []:
            for lb in (ep or {}).get("lb_endpoints") or []:
                sa = _get(lb, "endpoint", "address", "socket_address")
                if isinstance(sa, dict) and "address" in sa:
                    out.append((str(sa["address"]), int(sa.get("port_value", 0) or 0)))
        return out

    @staticmethod
    def tls_context(c: dict) -> dict | None:
        ts = c.get("transport_socket")
        if isinstance(ts, dict) and _type(ts.get("typed_config")) == UPSTREAM_TLS_TYPE:
            return ts["typed_config"]
        for m in c.get("transport_socket_matches") or []:
            t = (m or {}).get("transport_socket")
            if isinstance(t, dict) and _type(t.get("typed_config")) == UPSTREAM_TLS_TYPE:
                return t["typed_config"]
        return None

    def check_authority(self, authority: str, c: PosDict, line: int, who: str, scheme: str | None = None) -> None:
        host, _, port_s = authority.rpartition(":") if re.search(r":\d+$", authority) else (authority, "", "")
        host = host.strip("[]").lower()
        tls = self.tls_context(c)
        name = c.get("name")
        if scheme == "https" and tls is None:
            self.add(line, "authority", f"{who}: https URI but cluster '{name}' (line {c.line}) has no TLS transport_socket")
        port = int(port_s) if port_s else (443 if tls is not None or scheme == "https" else 80)
        eps = self.endpoints(c)
        if eps and not _is_ip(host):
            names = [(h.lower(), p) for h, p in eps if not _is_ip(h)]
            if names and not any(h == host for h, _ in names):
                self.add(line, "authority", f"{who}: authority '{authority}' names host '{host}' but cluster "
                         f"'{name}' (line {c.line}) connects to {', '.join(h for h, _ in names)}")
            elif names and not any(h == host and p == port for h, p in names):
                self.add(line, "authority", f"{who}: authority '{authority}' means port {port} but cluster "
                         f"'{name}' (line {c.line}) connects to port {', '.join(str(p) for _, p in names)}")
        elif eps and _is_ip(host) and not any(h == host and p == port for h, p in eps):
            self.add(line, "authority", f"{who}: authority '{authority}' is not an address of cluster '{name}' "
                     f"(line {c.line}): {', '.join(f'{h}:{p}' for h, p in eps)}")
        if tls is None:
            if any(p == 443 for _, p in eps):
                self.add(c.line, "authority", f"cluster '{name}' connects to port 443 without TLS ({who})")
            return
        sni = tls.get("sni")
        if not _is_ip(host) and sni != host:
            line_sni = tls.line_of("sni") if isinstance(tls, PosDict) and "sni" in tls else c.line
            got = f"'{sni}'" if sni else "not set"
            self.add(line_sni, "authority", f"cluster '{name}': TLS sni is {got} but {who} sends authority "
                     f"'{authority}': set sni: {host}")

    def check_sigv4(self, c: PosDict, authority: str, line: int, who: str) -> None:
        name = c.get("name")
        m = BEDROCK_HOST.match(authority.split(":")[0].lower())
        want_region = m.group(1) if m else None
        signers = []
        for f in _get(c, "typed_extension_protocol_options", HTTP_OPTIONS_KEY, "http_filters", default=[]) or []:
            if isinstance(f, dict) and _type(f.get("typed_config")) == SIGV4_TYPE:
                signers.append(f["typed_config"])
        if not signers:
            self.add(c.line, "bedrock-sigv4", f"cluster '{name}' carries Bedrock traffic for {who} with "
                     "credentials: envoy but does not sign it: add envoy.filters.http.aws_request_signing "
                     f"(service_name: bedrock, region: {want_region or '<region>'}) to its upstream http_filters")
            return
        s = signers[0]
        sline = s.line if isinstance(s, PosDict) else c.line
        if s.get("service_name") != "bedrock":
            self.add(s.line_of("service_name") if isinstance(s, PosDict) else sline, "bedrock-sigv4",
                     f"cluster '{name}': aws_request_signing service_name is '{s.get('service_name')}', "
                     "Bedrock Runtime needs 'bedrock'")
        if s.get("signing_algorithm", "AWS_SIGV4") == "AWS_SIGV4":
            region = s.get("region")
            if want_region and region != want_region:
                self.add(s.line_of("region") if isinstance(s, PosDict) and "region" in s else sline, "bedrock-sigv4",
                         f"cluster '{name}': aws_request_signing region is '{region}' but {who} calls "
                         f"'{authority}' ({want_region}): AWS refuses the signature")

    def check_tls(self) -> None:
        for name, c in self.clusters.items():
            tls = self.tls_context(c)
            if tls is None:
                continue
            common = tls.get("common_tls_context") or {}
            vc = common.get("validation_context")
            combined = common.get("combined_validation_context")
            if isinstance(combined, dict):
                vc = combined.get("default_validation_context") or {}
                if combined.get("validation_context_sds_secret_config"):
                    vc = dict(vc, trusted_ca={"sds": True})
            if common.get("validation_context_sds_secret_config"):
                vc = {"trusted_ca": {"sds": True}, **(vc or {})}
            line = tls.line if isinstance(tls, PosDict) else c.line
            if not isinstance(vc, dict) or not vc.get("trusted_ca"):
                self.add(line, "tls-verify", f"cluster '{name}': TLS without certificate verification (no "
                         "common_tls_context.validation_context.trusted_ca): anyone on the path can pose as "
                         "this upstream")
                continue
            if vc.get("trust_chain_verification") == "ACCEPT_UNTRUSTED":
                self.add(line, "tls-verify", f"cluster '{name}': trust_chain_verification ACCEPT_UNTRUSTED "
                         "turns verification off")
            auto_san = _get(c, "typed_extension_protocol_options", HTTP_OPTIONS_KEY, "upstream_http_protocol_options",
                            "auto_san_validation")
            if not (vc.get("match_typed_subject_alt_names") or vc.get("match_subject_alt_names") or auto_san):
                self.add(line, "tls-verify", f"cluster '{name}': the CA is checked but not the name: add "
                         "validation_context.match_typed_subject_alt_names (or auto_san_validation)")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def static_problems(path: Path) -> tuple[list[Problem], str | None]:
    """(problems, fatal): fatal is one line when the file is not an Envoy bootstrap at all."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return [], f"cannot read: {e}"
    try:
        doc = yamlpos.load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{mark.line + 1}: " if mark else ""
        return [], f"{where}not YAML/JSON: {getattr(e, 'problem', None) or e}"
    if not isinstance(doc, dict) or not ({"static_resources", "dynamic_resources"} & set(doc)):
        return [], "not an Envoy bootstrap (no static_resources or dynamic_resources at the top level)"
    return Checker(doc).run(), None


def router_configuration(path: Path) -> tuple[str | None, str | None]:
    """(duo_router's JSON configuration, None) from a bootstrap, or (None, one-line error)."""
    try:
        doc = yamlpos.load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        return None, f"cannot read: {e}"
    except yaml.YAMLError as e:
        return None, f"not YAML/JSON: {getattr(e, 'problem', None) or e}"
    if not isinstance(doc, dict) or not ({"static_resources", "dynamic_resources"} & set(doc)):
        return None, "not an Envoy bootstrap (no static_resources or dynamic_resources at the top level)"
    c = Checker(doc)
    c.collect()
    routers = [d for h in c.hcms for d in h.duo if d.kind == "duo_router"]
    if not routers:
        return None, "no duo_router wasm filter in any listener's http_connection_manager"
    return routers[0].text, None


INVALID_AT = re.compile(r"invalid configuration at `([^`]*)`: ?(.*)")


def envoy_validate(path: Path, envoy: str, cwd: Path, text: str) -> list[Problem]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    try:
        out = subprocess.run([envoy, "--mode", "validate", "-c", str(path), "-l", "error"], cwd=cwd, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        return [Problem(1, "envoy-validate", "envoy --mode validate did not finish in 120 s")]
    except OSError as e:
        return [Problem(1, "envoy-validate", f"cannot run {envoy}: {e.strerror}")]
    if out.returncode == 0:
        return []
    lines = [l for l in out.stdout.decode("utf-8", "replace").splitlines() if l.strip()]
    # A filter's own refusal names the field: point at it.
    for l in lines:
        m = INVALID_AT.search(l)
        if m:
            field = m.group(1)
            return [Problem(_field_line(text, field.split(".")), "envoy-validate",
                            f"a filter refused its configuration at `{field}`: {m.group(2).strip()}")]
    text_out = "\n".join(lines)
    msg = lines[-1] if lines else "no output"
    init = re.search(r"error initializing configuration '[^']*': ?(.*)", text_out, re.S)
    if init:
        rest = init.group(1)
        proto = re.search(r"(Proto constraint validation failed.*|Protobuf message .*)", rest)
        msg = (proto.group(1) if proto else rest.strip().splitlines()[0] if rest.strip() else msg)
    return [Problem(1, "envoy-validate", f"envoy --mode validate refused it: {msg.strip()[:400]}")]


def _field_line(text: str, path: list[str]) -> int:
    """Best line for a filter's field path: the configuration block holding its first key."""
    first = path[0] if path else ""
    best = 1
    for i, l in enumerate(text.splitlines(), 1):
        if f'"{first}"' in l:
            best = i
            break
    sub = "\n".join(text.splitlines()[best - 1:])
    return yamlpos.json_line(sub, path[1:], best) if len(path) > 1 else best


def main(argv: list[str]) -> int:
    import argparse
    p = argparse.ArgumentParser(prog="./build.sh check", description="Validate Envoy bootstraps carrying the duo filters")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--envoy", default=os.environ.get("DUO_ENVOY", "envoy"), help="Envoy binary for --mode validate")
    p.add_argument("--cwd", default=os.getcwd(), help="directory Envoy resolves relative .wasm paths from")
    p.add_argument("--no-envoy", action="store_true", help="static cross-checks only")
    a = p.parse_args(argv)
    bad = 0
    for f in a.files:
        path = Path(f)
        problems, fatal = static_problems(path)
        if fatal:
            print(f"{f}:{fatal}" if re.match(r"^\d+: ", fatal) else f"{f}: {fatal}")
            bad += 1
            continue
        if not a.no_envoy:
            problems += envoy_validate(path.resolve(), a.envoy, Path(a.cwd), path.read_text(encoding="utf-8"))
        problems.sort(key=lambda p: p.line)
        for pr in problems:
            print(f"{f}:{pr.line}: [{pr.rule}] {pr.message}")
        if problems:
            bad += 1
        else:
            print(f"{f}: ok")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
