"""duo_auth on real Envoy 1.40 (docs/auth.md), with both verifiers: `envoy_jwt_authn` (the shipped
self_hosted.yaml) and `builtin` (the same config with jwt_authn removed). GitLab-minted tokens
from the fake GitLab: valid, expired, not yet valid, wrong audience, alg none, HS256 keyed with the
RSA public key, unknown kid, key rotation, junk, an 8 KB Authorization header, every header
mismatch, missing scopes (path and chat body), JWKS down after start, healthz without a token,
user-token issuance and use. Envoy keeps serving after every bad request."""

from __future__ import annotations

import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from duo_e2e import bootstrap

FORBIDDEN = {"error": "Forbidden by auth provider"}
_USER_KEY_PEM = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()


def _with_user_tokens(conf: dict[str, Any]) -> None:
    conf["user_tokens"] = {"signing_key_pem": _USER_KEY_PEM, "ttl_s": 3600}


def _jwt_authn(boot: dict[str, Any]) -> None:
    bootstrap.patch_plugin(boot, "duo_auth", _with_user_tokens)


def _builtin(boot: dict[str, Any]) -> None:
    def change(conf: dict[str, Any]) -> None:
        conf["verifier"] = "builtin"
        _with_user_tokens(conf)

    bootstrap.patch_plugin(boot, "duo_auth", change)
    for hcm in bootstrap.hcms(boot):
        hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != "envoy.filters.http.jwt_authn"]


def _stacks(e2e):
    """Both verifiers: the same answers to the same requests."""
    return [
        ("envoy_jwt_authn", e2e.stack("self_hosted", name="auth_jwt_authn", patch=_jwt_authn)),
        ("builtin", e2e.stack("self_hosted", name="auth_builtin", patch=_builtin)),
    ]


def _commit(st, headers: dict[str, str]):
    return st.post("/v1/prompts/generate_commit_message", json_body={"inputs": {"diff": "diff --git a/x b/x"}}, headers=headers)


def _passed_auth(r) -> bool:
    """duo_auth let the request through: whatever the route answers next is not auth's business."""
    return r.header("x-duo-auth-reason") is None and r.status not in (401, 403, 503)


def _expect_ok(st, headers: dict[str, str], what: str) -> None:
    r = _commit(st, headers)
    assert _passed_auth(r), f"{what}: {r.status} {r.header('x-duo-auth-reason')} {r.text}"


def _forget_model_refusals(st) -> None:
    """Requests that passed auth reach a model fake; what the fake thinks of them is the router's."""
    for name, fake in st.fakes.items():
        if name not in ("gitlab", "customersdot"):
            fake.take_refusals()


def _wait_keys(st, verifier: str) -> None:
    """Bounded wait until the builtin verifier has GitLab's keys (it fetches them on its first tick)."""
    deadline = time.time() + 10
    while True:
        r = _commit(st, st.gitlab.headers())
        if r.status != 503 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert _passed_auth(r), f"{verifier}: keys never loaded: {r.status} {r.text}"


def test_auth_valid_token_passes_and_is_handed_off(e2e):
    for verifier, st in _stacks(e2e):
        _wait_keys(st, verifier)
        gl = st.gitlab
        headers = gl.headers()
        _expect_ok(st, headers, verifier)
        deadline = time.time() + 10
        while True:
            recs = [r for r in st.access_log() if isinstance(r, dict)]
            mine = [r for r in recs if r.get("correlation_id") == headers["X-Request-ID"]]
            if mine or time.time() > deadline:
                break
            time.sleep(0.1)
        assert mine, f"{verifier}: no access-log record for the request: {recs}"
        rec = mine[0]
        assert rec.get("auth_result") == "ok", (verifier, rec)
        assert rec.get("token_issuer") == gl.issuer, (verifier, rec)
        token = headers["Authorization"].split()[1]
        assert token not in json.dumps(recs) and token not in st.envoy.log(), f"{verifier}: token leaked into logs"
        _forget_model_refusals(st)


def test_auth_rejects_bad_tokens_with_gitlabs_answer(e2e):
    for verifier, st in _stacks(e2e):
        _wait_keys(st, verifier)
        gl = st.gitlab
        cases = {
            "token_expired": gl.mint_expired(),
            "token_not_yet_valid": gl.mint_not_yet_valid(),
            "wrong_audience": gl.mint_wrong_audience(),
            "algorithm_not_allowed": gl.mint_alg_none(),
            "algorithm_not_allowed (HS256 with the RSA public key)": gl.mint_hs256_with_public_key(),
            "bad_signature": gl.mint_bad_signature(),
            "unknown_kid": gl.mint_unknown_kid(),
            "malformed_token": "junk",
            "malformed_token (8 KB)": "x" * 8192,
        }
        for reason, token in cases.items():
            r = _commit(st, gl.headers(token=token))
            assert r.status == 401 and r.json() == FORBIDDEN, f"{verifier} {reason}: {r.status} {r.text}"
            got = r.header("x-duo-auth-reason")
            assert got == reason.split(" ")[0], f"{verifier} {reason}: reason {got}"
        _expect_ok(st, gl.headers(), f"{verifier}: Envoy keeps serving after bad tokens")
        _forget_model_refusals(st)


def test_auth_header_checks_use_gitlabs_messages(e2e):
    for verifier, st in _stacks(e2e):
        _wait_keys(st, verifier)
        gl = st.gitlab
        h = gl.headers()
        cases = [
            ({k: v for k, v in h.items() if k != "Authorization"}, "No authorization header presented"),
            ({**h, "Authorization": "Basic dXNlcjpwYXNz"}, "Invalid authorization header"),
            (gl.headers(X_Gitlab_Authentication_Type="jwt"), "Invalid authentication token type - only OIDC is supported"),
            (gl.headers(X_Gitlab_Realm="saas"), "Header mismatch 'X-Gitlab-Realm'"),
            (gl.headers(X_Gitlab_Instance_Id="00000000-0000-0000-0000-000000000000"), "Header mismatch 'X-Gitlab-Instance-Id'"),
        ]
        for headers, message in cases:
            r = _commit(st, headers)
            assert r.status == 401 and r.json() == {"error": message}, f"{verifier} {message}: {r.status} {r.text}"
        _forget_model_refusals(st)


def test_auth_scopes_are_enforced(e2e):
    for verifier, st in _stacks(e2e):
        _wait_keys(st, verifier)
        gl = st.gitlab
        r = _commit(st, gl.headers(token=gl.mint(scopes=["duo_chat"])))
        assert r.status == 403 and r.json() == {"detail": "Unauthorized to access 'generate_commit_message'"}, (verifier, r.text)
        chat = {
            "messages": [{"role": "user", "content": "Summarize",
                          "additional_context": [{"category": "merge_request", "id": "1", "content": "x", "metadata": {}}]}],
            "unavailable_resources": [],
        }
        scopes = ["duo_chat", "include_file_context"]
        r = st.post("/v2/chat/agent", json_body=chat, headers=gl.headers(token=gl.mint(scopes=scopes)))
        assert r.status == 403 and r.json() == {"detail": "Unauthorized to access include_merge_request_context"}, (verifier, r.status, r.text)
        r = st.post("/v2/code/generations", json_body={"prompt": "x"}, headers=gl.headers(token=gl.mint(scopes=["complete_code"])))
        assert r.status == 403 and r.json() == {"detail": "Unauthorized to access code generations"}, (verifier, r.text)
        _forget_model_refusals(st)


def test_auth_healthz_needs_no_token(e2e):
    for verifier, st in _stacks(e2e):
        r = st.get("/monitoring/healthz")
        assert r.status == 200, (verifier, r.status, r.text)


def test_auth_key_rotation_is_picked_up_at_once(e2e):
    for verifier, st in _stacks(e2e):
        _wait_keys(st, verifier)
        gl = st.gitlab
        old = gl.current
        time.sleep(5.2)  # past the kid-miss refetch window an earlier scenario may have opened
        gl.rotate()
        before = len(gl.received())
        # GitLab signs with the new key from its first request on, and many requests arrive at
        # once: the first starts the refetch (slowed here so the others arrive while it is under
        # way, on both workers), the others wait for it instead of getting 401 unknown_kid.
        original = gl.handle
        gl.handle = lambda req: (time.sleep(0.3), original(req))[1]
        try:
            with ThreadPoolExecutor(max_workers=8) as pool:
                answers = list(pool.map(lambda _: _commit(st, gl.headers()), range(8)))
        finally:
            gl.handle = original
        refused = [(r.status, r.header("x-duo-auth-reason")) for r in answers if not _passed_auth(r)]
        assert not refused, f"{verifier}: new-key tokens refused during the refetch: {refused}"
        fetched = len(gl.received()) - before
        assert 0 < fetched <= 2, f"{verifier}: {fetched} key fetches for one rotation (discovery + JWKS once)"
        # A flood of unknown kids refetches at most once per source every 5 s.
        before = len(gl.received())
        for _ in range(5):
            r = _commit(st, gl.headers(token=gl.mint_unknown_kid()))
            assert r.status == 401, (verifier, r.status)
        fetches = len(gl.received()) - before
        assert fetches <= 2 * 2, f"{verifier}: {fetches} key fetches for 5 unknown kids"  # two workers, discovery+JWKS
        _expect_ok(st, gl.headers(token=gl.mint(key=old)), f"{verifier}: old key still published")
        _forget_model_refusals(st)


def test_auth_cached_keys_survive_a_gitlab_outage(e2e):
    for verifier, st in _stacks(e2e):
        _wait_keys(st, verifier)
        gl = st.gitlab
        gl.fail_next(50, status=503)
        for i in range(3):
            _expect_ok(st, gl.headers(), f"{verifier}: request {i} while GitLab's keys are down")
        gl.fail_next(0)
        _forget_model_refusals(st)


def _user_headers(gl, token: str) -> dict[str, str]:
    return gl.headers(token=token)


def test_auth_user_tokens_issue_and_use(e2e):
    for verifier, st in _stacks(e2e):
        _wait_keys(st, verifier)
        gl = st.gitlab
        r = st.post("/v1/code/user_access_token", json_body={}, headers=gl.headers())
        assert r.status == 200, (verifier, r.status, r.text)
        body = r.json()
        token, expires_at = body["token"], body["expires_at"]
        assert isinstance(expires_at, int) and 3500 < expires_at - time.time() <= 3600, body
        claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        assert claims["iss"] == "gitlab-ai-gateway" and claims["aud"] in ("gitlab-ai-gateway", ["gitlab-ai-gateway"]), claims
        assert claims["sub"] == gl.headers()["X-Gitlab-Global-User-Id"] and "complete_code" in claims["scopes"], claims
        assert set(claims["scopes"]) <= {"complete_code", "ai_gateway_model_provider_proxy"}, claims
        completion = {
            "prompt_version": 1, "project_path": "group/project",
            "current_file": {"file_name": "a.py", "language_identifier": "python",
                             "content_above_cursor": "def f():", "content_below_cursor": ""},
            "stream": False,
        }
        for attempt in range(2):  # the second use comes from the per-worker cache
            r = st.post("/v2/completions", json_body=completion, headers=_user_headers(gl, token))
            assert _passed_auth(r), (verifier, attempt, r.status, r.text)
        r = st.post("/v2/code/generations", json_body={"prompt": "x"}, headers=_user_headers(gl, token))
        assert r.status == 403 and r.json() == {"detail": "Unauthorized to access code generations"}, (verifier, r.text)
        r = st.post("/v1/code/user_access_token", json_body={}, headers=_user_headers(gl, token))
        assert r.status == 403 and r.json() == {"detail": "Unauthorized to create user access token"}, (verifier, r.text)
        r = st.post("/v2/completions", json_body=completion, headers=gl.headers(token=token, X_Gitlab_Global_User_Id="someone-else"))
        assert r.status == 401 and r.json() == {"error": "Header mismatch 'X-Gitlab-Global-User-Id'"}, (verifier, r.text)
        _forget_model_refusals(st)


# ---- several issuers: the GitLab instance and CustomersDot (envoy/hybrid.yaml) -------------------

def _hybrid_builtin(boot: dict[str, Any]) -> None:
    bootstrap.patch_plugin(boot, "duo_auth", lambda conf: conf.__setitem__("verifier", "builtin"))
    for hcm in bootstrap.hcms(boot):
        hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != "envoy.filters.http.jwt_authn"]


def _log_time(line: str) -> float:
    """Seconds of the day of an Envoy log line (`[2026-12-02 10:17:24.123][...]`)."""
    stamp = line[1:24].split(" ")[1]
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def _keys_after_listener_s(st) -> float:
    """From Envoy's log: when the last jwks source's keys were loaded, relative to the moment the
    listener started (`starting workers`); negative when the keys came first."""
    deadline = time.time() + 5
    while True:
        lines = st.envoy.log().splitlines()
        workers = [l for l in lines if "starting workers" in l]
        loaded = {l.split("source '")[1].split("'")[0]: l for l in lines if "signing key(s)" in l and "source '" in l}
        if (workers and len(loaded) >= 2) or time.time() > deadline:
            break
        time.sleep(0.05)
    assert workers and len(loaded) >= 2, f"{st.name}: no listener start or key loads in the log"
    return max(_log_time(l) for l in loaded.values()) - _log_time(workers[0])


def _traffic_from_the_first_moment(st, verifier: str) -> float:
    """Sends requests as soon as the listener is up (no warm-up): GitLab's and CustomersDot's
    tokens, and the attack tokens. Returns seconds from the listener being up to the first 200 of
    /monitoring/ready. Before that, the only allowed refusal is 503 keys_unavailable (builtin
    verifier: it fetches its keys itself); never a 401 for a valid token, never a 503 for an attack."""
    gl, cd = st.fake("gitlab"), st.fake("customersdot")
    t0 = time.monotonic()
    ready_at = None
    seen_503 = 0
    while time.monotonic() - t0 < 10:
        for who, fake in (("gitlab", gl), ("customersdot", cd)):
            r = _commit(st, fake.headers())
            if r.status == 503 and ready_at is None and verifier == "builtin":
                assert r.header("x-duo-auth-reason") == "keys_unavailable", (verifier, who, r.text)
                seen_503 += 1
            else:
                assert _passed_auth(r), f"{verifier}: {who} token at t+{time.monotonic() - t0:.3f}s: {r.status} {r.text}"
        for reason, token in (("algorithm_not_allowed", gl.mint_hs256_with_public_key()), ("bad_signature", cd.mint_bad_signature())):
            r = _commit(st, gl.headers(token=token))
            assert r.status == 401 and r.json() == FORBIDDEN and r.header("x-duo-auth-reason") == reason, \
                f"{verifier} {reason} at t+{time.monotonic() - t0:.3f}s: {r.status} {r.header('x-duo-auth-reason')} {r.text}"
        if ready_at is None:
            r = st.get("/monitoring/ready")
            if r.status == 200:
                ready_at = time.monotonic() - t0
            else:
                assert r.status == 503 and r.header("x-duo-auth-reason") == "keys_unavailable", (verifier, r.status, r.text)
                assert st.get("/monitoring/healthz").status == 200, f"{verifier}: liveness must not wait for keys"
        elif time.monotonic() - t0 > ready_at + 0.5:
            break
    assert ready_at is not None, f"{verifier}: /monitoring/ready never answered 200"
    print(f"    {verifier}: /monitoring/ready 200 at t+{ready_at * 1000:.0f} ms after the listener; {seen_503} 503s before")
    return ready_at


def test_auth_two_issuers_from_the_first_request(e2e):
    """envoy/hybrid.yaml trusts the GitLab instance (OIDC discovery) and CustomersDot (JWKS), with
    both verifiers. Traffic starts the moment the listener is up: tokens of either issuer pass,
    HS256-with-the-public-key and tampered tokens get 401 with their reason (never 503), and
    /monitoring/ready turns 200 within 1 s of the listener. Then CustomersDot rotates its key: a
    token signed with the new one passes at once, an old-key token still does."""
    for verifier, patch in (("envoy_jwt_authn", None), ("builtin", _hybrid_builtin)):
        st = e2e.stack("hybrid", name=f"auth_two_issuers_{verifier}", fresh=True, patch=patch)
        ready_s = _traffic_from_the_first_moment(st, verifier)
        assert ready_s < 1.0, f"{verifier}: ready {ready_s:.3f}s after the listener"
        keys_s = _keys_after_listener_s(st)
        print(f"    {verifier}: duo_auth held both issuers' keys {keys_s * 1000:+.0f} ms from listener start (Envoy log)")
        assert keys_s < 1.0, f"{verifier}: keys {keys_s:.3f}s after the listener"

        gl, cd = st.fake("gitlab"), st.fake("customersdot")
        old = cd.current
        cd.rotate()
        before = len(cd.received())
        r = _commit(st, cd.headers())
        assert _passed_auth(r), f"{verifier}: CustomersDot's new key: {r.status} {r.header('x-duo-auth-reason')} {r.text}"
        assert len(cd.received()) > before, f"{verifier}: CustomersDot's new key was not fetched"
        _expect_ok(st, cd.headers(token=cd.mint(key=old)), f"{verifier}: CustomersDot's old key")
        _expect_ok(st, gl.headers(), f"{verifier}: GitLab's key after CustomersDot rotated")
        r = _commit(st, gl.headers(token=gl.mint_alg_none()))
        assert r.status == 401 and r.header("x-duo-auth-reason") == "algorithm_not_allowed", (verifier, r.status, r.text)
        _forget_model_refusals(st)
        st.stop()
