"""Production deployment on real Envoy (docs/deployment.md): every shipped TLS cluster verifies
its peer (a certificate the config trusts works; a self-signed one or one for another name yields
no keys and 503s, and nothing reaches the model); Envoy's own local replies reach GitLab in its
JSON error shape; the resilience defaults (active health checks) run against the fakes."""

from __future__ import annotations

import json
import socket
import time

from duo_e2e import bootstrap, scenario
from duo_e2e.fakes.base import Reply
from duo_e2e.tls import TestPKI

AZURE_KEY = "azure-test-key"  # the fake Azure resource's key (duo_e2e.fakes.openai.FakeAzure)
MODELS = ("vllm_codestral", "bedrock_us_east_1", "azure_eastus")


def _pki(e2e) -> TestPKI:
    if not hasattr(e2e, "_deploy_pki"):
        e2e._deploy_pki = TestPKI(e2e.run_dir / "pki")
    return e2e._deploy_pki


def _commit_message(st):
    meta = {"provider": "openai", "name": "gpt", "identifier": "azure/gpt-4o-deploy",
            "endpoint": "https://myres.openai.azure.com/", "api_key": AZURE_KEY}
    return st.post("/v1/prompts/generate_commit_message", headers=st.gitlab.headers(),
                   json_body={"inputs": {"diff": "diff --git a/x b/x\n+y\n"}, "stream": False, "model_metadata": meta})


def _generation(st):
    body = {"current_file": {"file_name": "main.go", "content_above_cursor": "package main\n// reverse\n", "content_below_cursor": ""},
            "stream": False, "model_provider": "litellm", "prompt_version": 2, "prompt_id": "code_suggestions/generations",
            "prompt": "reverse a string", "model_name": "claude_3",
            "model_identifier": "bedrock/us.anthropic.claude-3-5-sonnet-20240620-v1:0"}
    return st.post("/v2/code/generations", json_body=body, headers=st.gitlab.headers())


# ---- TLS verification -------------------------------------------------------------------------

def test_deployment_every_shipped_tls_cluster_verifies_its_peer(e2e):
    """Static gate: a shipped cluster that speaks TLS names a CA bundle and the host it expects
    (a SAN matcher equal to its SNI); without both Envoy accepts any certificate."""
    from pathlib import Path

    for path in sorted((e2e.root / "envoy").glob("*.yaml")):
        boot = bootstrap.load(Path(path))
        for c in bootstrap.clusters(boot):
            tls = bootstrap.upstream_tls(c)
            if tls is None:
                continue
            where = f"{path.name}: cluster {c['name']}"
            vc = tls.get("common_tls_context", {}).get("validation_context")
            assert vc, f"{where} does not verify its peer (no validation_context)"
            assert vc.get("trusted_ca", {}).get("filename"), f"{where}: no trusted_ca bundle"
            sans = vc.get("match_typed_subject_alt_names") or []
            assert tls.get("sni"), f"{where}: no sni"
            assert {"san_type": "DNS", "matcher": {"exact": tls["sni"]}} in sans, f"{where}: no SAN matcher for {tls['sni']}"
            host = c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["address"]
            assert host == tls["sni"], f"{where}: connects to {host} but expects {tls['sni']}"


def test_deployment_tls_trusted_certificates_work(e2e):
    """GitLab's keys (jwt_authn's JWKS and duo_auth's discovery) and the Bedrock model are served
    over TLS with certificates the config trusts: requests work. Azure's certificate names another
    host (issued by the same trusted CA): that prompt request is GitLab's 421 "500: Internal Server
    Error" (the model could not be reached) and Azure receives nothing."""
    pki = _pki(e2e)
    st = e2e.stack("self_hosted", name="self_hosted_tls", tls=pki,
                   certs={"azure_eastus": pki.issue("impostor.example.net", label="azure-wrong-name")})
    assert st.fake("gitlab").tls and st.fake("bedrock_us_east_1").tls and st.fake("azure_eastus").tls
    r = _generation(st)
    assert r.status == 200, r.body
    assert st.fake("bedrock_us_east_1").received(), "the Bedrock fake (HTTPS) got nothing"
    assert any(r.path == "/oauth/discovery/keys" for r in st.fake("gitlab").history), "jwt_authn did not fetch the JWKS over TLS"
    r = _commit_message(st)
    assert r.status == 421, r.body
    assert json.loads(r.body) == {"detail": "500: Internal Server Error"}, r.body
    st.fake("azure_eastus").assert_nothing_received()
    assert st.fake("azure_eastus").tls_errors, "Envoy never tried the Azure fake's TLS handshake"


def _untrusted_gitlab(e2e, label, cert, verifier):
    pki = _pki(e2e)

    def patch(boot):
        if verifier == "builtin":
            bootstrap.patch_plugin(boot, "duo_auth", lambda c: c.update(verifier="builtin"))

    st = e2e.stack("self_hosted", name=f"self_hosted_tls_{label}", tls=pki, patch=patch, certs={"gitlab": cert})
    try:
        deadline = time.monotonic() + 10
        while not st.fake("gitlab").tls_errors and time.monotonic() < deadline:
            time.sleep(0.05)
        assert st.fake("gitlab").tls_errors, "Envoy never tried the GitLab fake's TLS handshake"
        for send in (_generation, _commit_message):
            r = send(st)
            assert r.status == 503, (label, r.status, r.body)
            assert "error" in json.loads(r.body), r.body
        st.fake("gitlab").assert_nothing_received()  # no JWKS or discovery document was accepted
        for m in MODELS:
            st.fake(m).assert_nothing_received()
    finally:
        st.stop()


def test_deployment_tls_self_signed_gitlab_gives_no_keys(e2e):
    """GitLab's endpoint presents a self-signed certificate for the right name: jwt_authn loads
    no keys, every request is 503 and nothing reaches a model."""
    pki = _pki(e2e)
    _untrusted_gitlab(e2e, "self_signed", pki.self_signed("gitlab.example.com"), "envoy_jwt_authn")


def test_deployment_tls_wrong_name_gitlab_gives_no_keys_builtin(e2e):
    """Same with a certificate from the trusted CA for another name, and duo_auth's own verifier
    (its discovery and JWKS callouts go through the same verified cluster)."""
    pki = _pki(e2e)
    _untrusted_gitlab(e2e, "wrong_name", pki.issue("gitlab.attacker.example", label="gitlab-wrong-name"), "builtin")


# ---- Envoy's local replies in GitLab's shape --------------------------------------------------

def _raw(port: int, data: bytes, timeout_s: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes (requests the HTTP client would refuse to write) and parse the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        try:
            s.sendall(data)
        except OSError:
            pass
        out = b""
        try:
            while b"\r\n\r\n" not in out or len(out.split(b"\r\n\r\n", 1)[1]) < _length(out):
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
    return int(lines[0].split()[1]), headers, body


def _length(out: bytes) -> int:
    head = out.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    for line in head.split("\r\n"):
        if line.startswith("content-length:"):
            return int(line.split(":", 1)[1])
    return 0


def _gitlab_shaped(status, headers, body, want_status):
    assert status == want_status, (status, body)
    assert headers.get("content-type", "").startswith("application/json"), headers
    doc = json.loads(body)
    assert set(doc) == {"detail"} and isinstance(doc["detail"], str) and doc["detail"], doc
    return doc["detail"]


def test_deployment_envoy_codec_replies_are_gitlab_shaped(e2e):
    """431 (headers over Envoy's limit), 400 (a request line Envoy cannot parse), 426 (HTTP/1.0):
    Envoy answers these before any filter runs; local_reply_config gives them GitLab's shape."""
    st = e2e.stack("self_hosted")
    port = st.port
    big = b"GET /v2/code/completions HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n"
    assert "Header" in _gitlab_shaped(*_raw(port, big), 431)
    _gitlab_shaped(*_raw(port, b"GET /v2 code HTTP/1.1\r\nHost: gw\r\n\r\n"), 400)
    _gitlab_shaped(*_raw(port, b"GET /v2/code/completions HTTP/1.0\r\n\r\n"), 426)
    # The filters' own replies and the health endpoints keep their bodies (not wrapped twice).
    status, _, body = _raw(port, b"POST /v2/code/completions HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}")
    assert (status, json.loads(body)) == (401, {"error": "No authorization header presented"}), body
    r = st.get("/monitoring/healthz")
    assert (r.status, r.json()) == (200, {"status": "ok"}), r.body


def test_deployment_chunked_body_just_over_1_mib_gets_the_routers_413(e2e):
    """A chunked self-hosted body just over duo_router's 1 MiB limit: the listener's buffer limit
    (4 MiB) is above the router's, so the router's GitLab-shaped 413 answers, not Envoy's."""
    st = e2e.stack("self_hosted")
    body = json.dumps({"inputs": {"diff": "a" * (1024 * 1024)}, "stream": False}).encode()
    hdrs = "".join(f"{k}: {v}\r\n" for k, v in st.gitlab.headers().items()).encode()
    head = (b"POST /v1/prompts/generate_commit_message HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n" + hdrs + b"\r\n")
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 65536]), body[i:i + 65536]) for i in range(0, len(body), 65536))
    detail = _gitlab_shaped(*_raw(st.port, head + chunks + b"0\r\n\r\n", timeout_s=15), 413)
    assert detail == "Request body exceeds 1048576 bytes", detail
    for m in MODELS:
        st.fake(m).assert_nothing_received()


@scenario(timeout_s=90)
def test_deployment_envoy_413_503_504_are_gitlab_shaped(e2e):
    """Envoy's own 413 (a body over a smaller listener buffer limit, held by a filter), 503 (the
    vendor gateway unreachable) and 504 (an upstream silent past the idle timeout) on the hybrid
    config's forwarded routes reach GitLab as {"detail": ...} JSON."""
    def patch(boot):
        boot["static_resources"]["listeners"][0]["per_connection_buffer_limit_bytes"] = 65536
        for hcm in bootstrap.hcms(boot):
            for vh in hcm["route_config"]["virtual_hosts"]:
                for route in vh["routes"]:
                    if "route" in route:
                        route["route"]["idle_timeout"] = "1s"

    st = e2e.stack("hybrid", name="hybrid_small_limits", patch=patch)
    try:
        h = {**st.gitlab.headers(), "content-type": "application/json"}
        big = json.dumps({"current_file": {"file_name": "a.py", "content_above_cursor": "x" * 100_000, "content_below_cursor": ""}})
        r = st.request("POST", "/v2/code/completions", headers=h, body=big)  # self-hosted: duo_router holds the body
        assert r.status == 413 and r.json() == {"detail": "Payload Too Large"}, r
        st.fake("vllm_codestral").assert_nothing_received()

        vendor = st.fake("cloud_gitlab")
        def silent(_req):
            time.sleep(3)  # no status line for 3 s: past the 1 s idle timeout
            return Reply.json({})

        vendor.enqueue(silent)
        r = st.post("/v1/prompts/generate_commit_message", json_body={"inputs": {"diff": "x"}}, headers=st.gitlab.headers(), timeout_s=20)
        assert r.status == 504 and r.json() == {"detail": "upstream request timeout"}, r
        assert (r.header("content-type") or "").startswith("application/json"), r.header_list

        vendor.stop()
        r = st.post("/v1/prompts/generate_commit_message", json_body={"inputs": {"diff": "x"}}, headers=st.gitlab.headers(), timeout_s=20)
        assert r.status == 503, r
        assert "upstream connect error" in r.json()["detail"], r.body
    finally:
        st.stop()


# ---- resilience defaults ------------------------------------------------------------------------

def test_deployment_shipped_resilience_defaults(e2e):
    """Static gate over every shipped config: each cluster that carries AI traffic (a model,
    the vendor gateway, a Python AI gateway) balances by least requests, has explicit circuit
    breakers and outlier detection; self-run model servers are actively health-checked; no route
    caps a whole (streamed) answer; Envoy's local replies are mapped to GitLab's shape."""
    from pathlib import Path

    for path in sorted((e2e.root / "envoy").glob("*.yaml")):
        boot = bootstrap.load(Path(path))
        router = bootstrap.plugin_json(boot, "duo_router") or {}
        ai = {m["cluster"]: m.get("platform") for m in (router.get("models") or {}).values()}
        for key in ("vendor", "aigw"):
            if (router.get(key) or {}).get("cluster"):
                ai[router[key]["cluster"]] = key
        for c in bootstrap.clusters(boot):
            if c["name"] not in ai:
                continue
            where = f"{path.name}: cluster {c['name']}"
            assert c.get("lb_policy") == "LEAST_REQUEST", where
            assert c.get("circuit_breakers", {}).get("thresholds"), f"{where}: no circuit breakers"
            assert c.get("outlier_detection"), f"{where}: no outlier detection"
            if ai[c["name"]] in ("vllm", "openai_compatible", "aigw"):
                assert c.get("health_checks"), f"{where}: a self-run server without an active health check"
        for hcm in bootstrap.hcms(boot):
            # The Agent Platform's gRPC listener keeps the filters' gRPC-shaped replies as sent
            # (docs/envoy-facts.md E16): no JSON rewriting there.
            if hcm.get("stat_prefix") == "duo_agent_platform":
                assert "local_reply_config" not in hcm, f"{path.name}: gRPC replies must not be rewritten as JSON"
            else:
                assert hcm.get("local_reply_config", {}).get("mappers"), f"{path.name}: no local_reply_config"
            for vh in hcm["route_config"]["virtual_hosts"]:
                for route in vh["routes"]:
                    if "route" in route:
                        assert route["route"].get("timeout") == "0s", f"{path.name}: a route caps whole answers"

def test_deployment_vllm_is_health_checked(e2e):
    """The vLLM cluster is actively health-checked on vLLM's own GET /health (the fake counts the
    checks apart from requests) and Envoy reports the host healthy."""
    st = e2e.stack("self_hosted")
    fake = st.fake("vllm_codestral")
    deadline = time.monotonic() + 5
    while fake.health_checks == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake.health_checks >= 1, "no health check reached vLLM"
    deadline, flags = time.monotonic() + 20, []
    while time.monotonic() < deadline:  # a check may time out on a loaded machine: the next one passes
        flags = [l for l in st.envoy.admin("/clusters").splitlines()
                 if l.startswith("vllm_codestral::127.0.0.1:") and "::health_flags::" in l]
        if flags and all(l.endswith("::healthy") for l in flags):
            break
        time.sleep(0.5)
    assert flags and all(l.endswith("::healthy") for l in flags), flags


# ---- the production template --------------------------------------------------------------------

GATEWAY_NAME = "duo-gateway.example.test"


def _render_production(e2e, pki):
    import importlib.util

    spec = importlib.util.spec_from_file_location("render", e2e.root / "examples" / "production" / "render.py")
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    values = render.parse((e2e.root / "examples" / "production" / "hosts.env").read_text().splitlines(), "hosts.env")
    cert = pki.issue(GATEWAY_NAME, label="gateway")
    values.update(CA_BUNDLE=str(pki.ca_path), TLS_CERT=str(cert.cert_path), TLS_KEY=str(cert.key_path), WASM_DIR="dist")
    out = e2e.run_dir / "production.yaml"
    out.write_text(render.render(values))
    return out


def _https(port, pki, method, path, headers=None, body=b""):
    import http.client

    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock = pki.client_context().wrap_socket(raw, server_hostname=GATEWAY_NAME)
    try:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {GATEWAY_NAME}", f"Content-Length: {len(body)}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        return resp.status, resp.read()
    finally:
        sock.close()


def test_deployment_production_template_serves_https_with_verified_upstreams(e2e):
    """examples/production: hosts.env rendered (with the test CA, a gateway certificate made now
    and dist/) passes Envoy, terminates TLS for GitLab with that certificate, and serves a
    request end to end with every upstream TLS connection verified (GitLab's keys, Bedrock); the
    Agent Platform's gRPC listener serves TLS with the same certificate."""
    pki = _pki(e2e)
    config = _render_production(e2e, pki)
    st = e2e.stack(str(config), name="production", tls=pki)
    try:
        status, body = _https(st.port, pki, "GET", "/monitoring/healthz")
        assert (status, json.loads(body)) == (200, {"status": "ok"}), body
        req = {"current_file": {"file_name": "main.go", "content_above_cursor": "package main\n", "content_below_cursor": ""},
               "stream": False, "model_provider": "litellm", "prompt_version": 2, "prompt_id": "code_suggestions/generations",
               "prompt": "reverse a string", "model_name": "claude_3",
               "model_identifier": "bedrock/us.anthropic.claude-3-5-sonnet-20240620-v1:0"}
        status, body = _https(st.port, pki, "POST", "/v2/code/generations",
                              {**st.gitlab.headers(), "Content-Type": "application/json"}, json.dumps(req).encode())
        assert status == 200, body
        assert st.fake("bedrock_us_east_1").tls and st.fake("bedrock_us_east_1").received()
        # The Agent Platform's listener: gRPC over TLS (h2) with the same certificate, the filters
        # answering a call without a token gRPC-shaped.
        import grpc

        from duo_e2e import dws_proto

        pb2, pb2_grpc = dws_proto.load()
        creds = grpc.ssl_channel_credentials(root_certificates=pki.ca_path.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{st.grpc_port}", creds, options=[("grpc.ssl_target_name_override", GATEWAY_NAME)]) as ch:
            try:
                pb2_grpc.DuoWorkflowStub(ch).ListTools(pb2.ListToolsRequest(), timeout=20)
                raise AssertionError("a gRPC call without a token was answered")
            except grpc.RpcError as e:
                assert (e.code(), e.details()) == (grpc.StatusCode.UNAUTHENTICATED, "No authorization header presented"), e
        # Plain HTTP to the TLS listener gets no answer.
        with socket.create_connection(("127.0.0.1", st.port), timeout=5) as s:
            s.sendall(b"GET /monitoring/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                assert not s.recv(100).startswith(b"HTTP/1.1 200"), "plain HTTP answered on the TLS listener"
            except (ConnectionResetError, socket.timeout):
                pass
    finally:
        st.stop()
