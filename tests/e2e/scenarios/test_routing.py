"""Envoy-level routing facts the filters rely on (docs/envoy-facts.md E2, E1), checked on the shipped
self_hosted.yaml route table and filter chain:

- health checks pass through the whole chain with no token and are answered by Envoy;
- a wasm filter that sets `x-duo-upstream` (or rewrites `:path`) re-routes the request even
  though jwt_authn already resolved and cached the route (Envoy clears the route cache on header
  changes for proxy-wasm ABI 0.2.1): if a future Envoy or SDK stops doing that, these fail;
- a filter that pauses in the headers callback and chooses the cluster from the body works only
  with `allow_on_headers_stop_iteration: true`; without it the request hangs (checked, so a change
  in Envoy's behaviour is noticed).
The route-cache checks use a tiny test-only filter (tests/e2e/probe) so they do not depend on
duo_router's progress; duo_router's own routing is tested in test_router*.py."""

from __future__ import annotations

import json
import socket
import time

from duo_e2e import probe

VLLM = "vllm_codestral"
CHAT = {"model": "Codestral-22B-v0.1", "messages": [{"role": "user", "content": "hello"}]}


def test_health_passthrough(e2e):
    st = e2e.stack("self_hosted")
    # Readiness is 503 until duo_auth holds the instance's keys (its first JWKS fetch, slower on
    # a loaded machine): wait for it, bounded, and do not count these probes below.
    deadline, probes = time.monotonic() + 15, 1
    while st.get("/monitoring/ready").status != 200:
        assert time.monotonic() < deadline, "never ready"
        time.sleep(0.1)
        probes += 1
    st.access_log(wait_for=probes)
    st._log_mark = st.access_log_path.stat().st_size
    for path in ("/monitoring/healthz", "/monitoring/ready"):
        r = st.get(path)
        assert r.status == 200, (path, r)
        assert r.json() == {"status": "ok"}, r
        # A broken token must not matter on a public path either.
        r = st.get(path, headers={"Authorization": "Bearer not.a.jwt", "X-Gitlab-Authentication-Type": "oidc"})
        assert r.status == 200, (path, r)
    for name, fake in st.fakes.items():
        if fake.kind != "gitlab":
            fake.assert_nothing_received()
    lines = st.access_log(wait_for=4)
    assert len(lines) == 4, lines
    for rec in lines:
        if isinstance(rec, dict):  # duo_logger's record
            assert rec.get("status_code") == 200 and rec.get("path") in ("/monitoring/healthz", "/monitoring/ready"), rec


def test_every_shipped_config_boots_behind_its_fakes(e2e):
    """hybrid, gitlab_com and local start for real (jwt_authn fetched their key sets through the
    shipped clusters) and answer health checks with no token; nothing reaches a model."""
    for config in ("hybrid", "gitlab_com", "local"):
        st = e2e.stack(config)
        try:
            r = st.get("/monitoring/healthz")
            assert r.status == 200 and r.json() == {"status": "ok"}, (config, r)
            issuers = [f for f in st.fakes.values() if f.kind == "gitlab"]
            assert issuers and all(any(q.path.endswith("/keys") for q in f.history) for f in issuers), \
                (config, {f.name: f.history for f in issuers})
            for fake in st.fakes.values():
                if fake.kind != "gitlab":
                    fake.assert_nothing_received()
        finally:
            st.stop()


def _probe_stack(e2e):
    return e2e.stack("self_hosted", name="route_probe", patch=probe.splice())


def test_cluster_header_set_in_headers_reroutes(e2e):
    st = _probe_stack(e2e)
    r = st.post("/v1/chat/completions", json_body=CHAT,
                headers={"x-probe-touch-route": "1", "x-probe-cluster": VLLM})
    assert r.status == 200, r
    got = st.fake(VLLM).last()
    assert got.path == "/v1/chat/completions" and got.json() == CHAT
    assert got.header("x-duo-upstream") is None, "the route must remove x-duo-upstream before the upstream"
    for name, fake in st.fakes.items():
        if name != VLLM and fake.kind != "gitlab":
            fake.assert_nothing_received()
    # Without the header there is no cluster: Envoy answers by itself, nothing goes upstream.
    st.fake(VLLM).reset()
    r = st.post("/v1/chat/completions", json_body=CHAT)
    assert r.status in (404, 503), r
    st.fake(VLLM).assert_nothing_received()


def test_path_rewrite_leaves_a_cached_direct_response_route(e2e):
    """jwt_authn resolved /monitoring/healthz to the direct_response route; the probe rewrites
    :path and sets the cluster header: the request must follow the new route, not the cached one."""
    st = _probe_stack(e2e)
    r = st.request("GET", "/monitoring/healthz", headers={"x-probe-path": "/v1/models", "x-probe-cluster": VLLM})
    assert r.status == 200, r
    assert r.json().get("object") == "list", f"answered by the cached health route instead of vLLM: {r}"
    assert st.fake(VLLM).last().path == "/v1/models"


def test_cluster_chosen_from_body_reroutes(e2e):
    st = _probe_stack(e2e)
    body = {**CHAT, "duo_cluster": VLLM}
    r = st.post("/v1/chat/completions", json_body=body, headers={"x-probe-body": "duo_cluster"})
    assert r.status == 200, r
    got = st.fake(VLLM).last()
    assert got.json() == body
    assert got.notes == ["ignored field 'duo_cluster'"], got.notes


def test_body_routing_hangs_without_allow_on_headers_stop_iteration(e2e):
    st = e2e.stack("self_hosted", name="route_probe_no_stop_iteration", patch=probe.splice(allow_on_headers_stop_iteration=False))
    body = {**CHAT, "duo_cluster": VLLM}
    try:
        r = st.post("/v1/chat/completions", json_body=body, headers={"x-probe-body": "duo_cluster"}, timeout_s=3)
    except (socket.timeout, TimeoutError):
        r = None
    assert r is None, f"Envoy answered {r}: allow_on_headers_stop_iteration may no longer be needed (docs/envoy-facts.md E1)"
    st.fake(VLLM).assert_nothing_received()


def test_jwt_authn_verdicts_on_gitlab_tokens(e2e):
    """The shipped jwt_authn provider (F18) fetches the fake GitLab's JWKS through cluster `gitlab`
    with GitLab's Host, accepts GitLab-minted instance tokens, and leaves the verdict where duo_auth
    reads it: `duo_jwt_payload` on success, `duo_jwt_failure` otherwise; it never rejects by itself."""
    st = _probe_stack(e2e)
    gl = st.gitlab
    cases = {
        "valid": (gl.mint(), gl.instance_id, None),
        "expired": (gl.mint_expired(), None, "Jwt is expired"),
        "not yet valid": (gl.mint_not_yet_valid(), None, "Jwt not yet valid"),
        "wrong audience": (gl.mint_wrong_audience(), None, "Audiences in Jwt are not allowed"),
        "unknown kid": (gl.mint_unknown_kid(), None, "Jwks doesn't have key to match kid or alg from Jwt"),
        "tampered": (gl.mint_bad_signature(), None, "Jwt verification fails"),
        "alg none": (gl.mint_alg_none(), None, ""),
        "hs256 with public key": (gl.mint_hs256_with_public_key(), None, ""),
        "missing": (None, None, "Jwt is missing"),
    }
    vllm = st.fake(VLLM)
    for what, (token, sub, failure) in cases.items():
        vllm.reset()
        headers = {"x-probe-jwt": "1", "x-probe-cluster": VLLM}
        if token is not None:
            headers.update(gl.headers(token))
        r = st.post("/v1/chat/completions", json_body=CHAT, headers=headers)
        if token is not None:
            # The probe forwards GitLab's JWT to vLLM on purpose: the fake must refuse it.
            assert r.status == 401, (what, r)
            [got] = vllm.take_refusals()
        else:
            assert r.status == 200, (what, r)
            got = vllm.last()
        assert got.header("x-probe-jwt-sub") == sub, (what, got.header("x-probe-jwt-sub"))
        if failure is None:
            assert got.header("x-probe-jwt-failure") is None, (what, got.header("x-probe-jwt-failure"))
        else:
            msg = got.header("x-probe-jwt-failure")
            assert msg is not None and failure in msg, (what, msg)
        if token is not None:
            assert got.header("authorization") == f"Bearer {token}", f"{what}: jwt_authn must forward the token"
    fetches = [r for r in gl.history if r.path == "/oauth/discovery/keys"]  # fetched at start
    assert fetches and all(f.header("host") == "gitlab.example.com" for f in fetches), fetches


def _crash_then_normal(e2e, policy):
    # One worker, so the crashed VM is the one every later request meets.
    st = e2e.stack("self_hosted", name=f"route_probe_{policy.lower()}", fresh=True, concurrency=1,
                   patch=probe.splice(failure_policy=policy))
    crashed = st.post("/v1/chat/completions", json_body=CHAT, headers={"x-probe-crash": "1", "x-probe-cluster": VLLM})
    after = [st.post("/v1/chat/completions", json_body=CHAT, headers={"x-probe-cluster": VLLM}) for _ in range(3)]
    return st, crashed, after


def test_failure_policy_fail_closed_keeps_failing_after_a_crash(e2e):
    """docs/envoy-facts.md E9: with FAIL_CLOSED a crashing filter fails its request and every later
    request on that worker fails too (nothing passes unfiltered); the VM is not reloaded. This is
    why the shipped configs use FAIL_RELOAD (next scenario)."""
    st, crashed, after = _crash_then_normal(e2e, "FAIL_CLOSED")
    assert crashed.status >= 500, crashed
    time.sleep(2.5)  # longer than FAIL_RELOAD's backoff: still no recovery
    after.append(st.post("/v1/chat/completions", json_body=CHAT, headers={"x-probe-cluster": VLLM}))
    assert all(r.status >= 500 for r in after), after
    st.fake(VLLM).assert_nothing_received()
    st.stop()


def test_failure_policy_fail_reload_recovers_after_a_crash(e2e):
    """The shipped policy: FAIL_RELOAD fails the crashing request (closed, nothing reaches an
    upstream unfiltered) and recovers the worker once Envoy has reloaded the VM."""
    st, crashed, after = _crash_then_normal(e2e, "FAIL_RELOAD")
    assert crashed.status >= 500, crashed
    # The crashed VM wrote no duo_logger record for it, but Envoy's native line shows the request.
    first = st.native_log(wait_for=1)[0]
    assert first["log_type"] == "envoy" and int(first["status_code"]) == crashed.status, first
    assert first["upstream_host"] in (None, "-"), first
    # Envoy reloads the VM with a backoff (1 s base): requests recover within a few seconds.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = st.post("/v1/chat/completions", json_body=CHAT, headers={"x-probe-cluster": VLLM})
        if r.status == 200:
            break
        time.sleep(0.25)
    assert r.status == 200, f"no recovery 10 s after the crash: {r}"
    assert st.fake(VLLM).received(), "the reloaded VM's request did not reach vLLM"
    st.stop()
