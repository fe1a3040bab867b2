//! duo_auth's built module (`dist/duo_auth.wasm`) in the host emulator: key fetch through
//! discovery, refresh, a failed refresh keeping the keys, the kid-miss refetch and its rate limit,
//! one key set shared by two workers, 503 before the first fetch, user tokens (issue, use, cache),
//! the envoy_jwt_authn verdict from metadata, the chat body scopes, the hand-off and metrics, the
//! Agent Platform's gRPC-shaped refusals and unauthenticated gRPC health.
//! Tokens: tests/auth/fixtures.json (filters/auth/tests/gen_harness_fixtures.py), issued at the
//! harness clock's start.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

use duo_harness::{Action, Filter, Host, HttpCall, Plugin, PropValue, Stream};
use serde_json::{Value, json};
use std::time::Duration;

fn fx() -> Value {
    serde_json::from_str(include_str!("auth/fixtures.json")).unwrap()
}

fn fs(key: &str) -> String {
    fx()[key].as_str().unwrap().to_owned()
}

fn builtin_config(extra: Value) -> String {
    let mut c = json!({
        "audience": "gitlab-ai-gateway",
        "jwks_sources": [{"name": "gitlab", "cluster": "gitlab", "authority": "gitlab.example.com",
                          "discovery_path": "/.well-known/openid-configuration"}],
        "refresh_interval_s": 3600,
        "clock_skew_s": 60
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c.to_string()
}

fn load(host: &Host, config: &str) -> Plugin {
    let p = host.load(Filter::Auth, config).unwrap();
    assert!(p.configured(), "{:?}", p.logs());
    p
}

fn only_call(calls: Vec<HttpCall>) -> HttpCall {
    assert_eq!(calls.len(), 1, "{calls:?}");
    calls.into_iter().next().unwrap()
}

/// Answers the discovery call and then the JWKS call the filter makes next.
fn serve_keys(p: &Plugin, jwks: &Value) {
    let d = only_call(p.pending_http_calls());
    assert_eq!(d.cluster, "gitlab");
    assert_eq!(d.header(":path"), Some("/.well-known/openid-configuration"));
    assert_eq!(d.header(":authority"), Some("gitlab.example.com"));
    assert_eq!(d.header(":method"), Some("GET"));
    p.deliver_http_call_response(d.token, &[(":status", "200")], fx()["discovery"].to_string().as_bytes());
    let j = only_call(p.pending_http_calls());
    assert_eq!(j.header(":path"), Some("/oauth/discovery/keys"));
    p.deliver_http_call_response(j.token, &[(":status", "200")], jwks.to_string().as_bytes());
    assert!(p.pending_http_calls().is_empty());
}

fn headers<'a>(path: &'a str, auth: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        (":method", "POST"),
        (":path", path),
        (":authority", "gw"),
        ("authorization", auth),
        ("x-gitlab-authentication-type", "oidc"),
        ("x-gitlab-instance-id", "292c3c7c-c5d5-48ec-b4bf-f00b724ce560"),
        ("x-gitlab-realm", "self-managed"),
        ("x-gitlab-global-user-id", "Df0Jhs9x="),
    ]
}

fn send(p: &Plugin, path: &str, token: &str) -> (Stream, Action) {
    let s = p.new_stream();
    let auth = format!("Bearer {token}");
    let a = s.request_headers(&headers(path, &auth), false);
    (s, a)
}

fn handoff(s: &Stream) -> Value {
    serde_json::from_str(&s.filter_state_str("duo_auth").expect("duo_auth filter state")).unwrap()
}

fn denied(s: &Stream, status: u32, reason: &str) {
    let r = s.local_reply().unwrap_or_else(|| panic!("no local reply: {:?}", s.trace()));
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-duo-auth-reason"), Some(reason));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let h = handoff(s);
    assert_eq!(h["result"], "denied");
    assert_eq!(h["error"], reason);
    assert!(!s.request_headers_sent_upstream());
}

#[test]
fn fetches_keys_at_start_then_verifies_and_hands_off() {
    let host = Host::new();
    let auth = load(&host, &builtin_config(json!({})));
    // Before any key: 503 with a clear message, never a false 401.
    let (s, a) = send(&auth, "/v2/code/completions", &fs("token_a"));
    assert_eq!(a, Action::Pause);
    denied(&s, 503, "keys_unavailable");
    assert!(String::from_utf8_lossy(&s.local_reply().unwrap().body).contains("are OIDC providers up?"));

    serve_keys(&auth, &fx()["jwks_a"]);
    let (shared, _) = host.shared_data("duo_auth.keys").expect("keys in shared data");
    assert!(String::from_utf8_lossy(&shared).contains("\"kid\":\"a\""));

    let (s, a) = send(&auth, "/v2/code/completions", &fs("token_a"));
    assert_eq!(a, Action::Continue, "{:?}", s.trace());
    let h = handoff(&s);
    assert_eq!(h["result"], "ok");
    assert_eq!(h["feature"], "code_completions");
    assert_eq!(h["unit_primitive"], "complete_code");
    assert_eq!(h["issuer"], "https://gitlab.example.com");
    assert_eq!(h["token_kind"], "instance");
    assert!(!h.to_string().contains(&fs("token_a")), "the token must never be handed off");
    assert_eq!(s.request_header("authorization").as_deref(), Some(format!("Bearer {}", fs("token_a")).as_str()));

    let (s, _) = send(&auth, "/v2/code/completions", &fs("token_a_expired"));
    denied(&s, 401, "token_expired");
    assert_eq!(s.local_reply().unwrap().body, br#"{"error":"Forbidden by auth provider"}"#.to_vec());
    let (s, _) = send(&auth, "/v1/prompts/generate_commit_message", &fs("token_a_chat_only"));
    denied(&s, 403, "missing_scope");

    assert_eq!(host.metric_value("duo_auth.requests.result.ok"), Some(1));
    assert_eq!(host.metric_value("duo_auth.requests.result.denied"), Some(3));
    assert_eq!(host.metric_value("duo_auth.denied.reason.token_expired"), Some(1));
    assert_eq!(host.metric_value("duo_auth.jwks.fetch.result.ok"), Some(1));
}

#[test]
fn refreshes_on_schedule_and_keeps_keys_when_gitlab_is_down() {
    let host = Host::new();
    let auth = load(&host, &builtin_config(json!({})));
    serve_keys(&auth, &fx()["jwks_a"]);
    host.advance(Duration::from_secs(60));
    auth.tick();
    assert!(auth.pending_http_calls().is_empty(), "no refresh before refresh_interval_s");

    host.advance(Duration::from_secs(3600));
    auth.tick();
    let d = only_call(auth.pending_http_calls());
    auth.fail_http_call(d.token);
    assert!(auth.failure().is_none(), "a failed call must not kill the VM: {:?}", auth.failure());
    assert_eq!(host.metric_value("duo_auth.jwks.fetch.result.failed"), Some(1));
    // The last good keys still verify (back to the token's lifetime).
    host.set_now_unix_secs(fx()["now"].as_u64().unwrap() + 30);
    let (s, a) = send(&auth, "/v2/code/completions", &fs("token_a"));
    assert_eq!(a, Action::Continue, "{:?} {:?}", s.trace(), auth.logs());

    // A failed refresh is retried (not at once, but within a minute).
    host.advance(Duration::from_secs(3700));
    auth.tick();
    let d = only_call(auth.pending_http_calls());
    auth.deliver_http_call_response(d.token, &[(":status", "500")], b"oops");
    assert!(auth.logged(duo_harness::LogLevel::Warn, "keeping the last good keys"));
}

#[test]
fn unknown_kid_refetches_once_then_rate_limits() {
    let host = Host::new();
    let auth = load(&host, &builtin_config(json!({})));
    serve_keys(&auth, &fx()["jwks_a"]);

    // A token signed with a key GitLab just published: the request waits for the refetch.
    let (s, a) = send(&auth, "/v2/code/completions", &fs("token_b"));
    assert_eq!(a, Action::Pause);
    assert!(s.local_reply().is_none());
    serve_refetch(&s, &fx()["jwks_ab"]);
    assert!(s.request_headers_sent_upstream(), "{:?}", s.trace());
    assert_eq!(handoff(&s)["result"], "ok");
    assert_eq!(host.metric_value("duo_auth.jwks.kid_refetch"), Some(1));

    // Junk kids within 5 s: refused at once, no call.
    let before = host.http_calls().len();
    for _ in 0..3 {
        let (s, a) = send(&auth, "/v2/code/completions", &fs("token_unknown_kid"));
        assert_eq!(a, Action::Pause);
        denied(&s, 401, "unknown_kid");
    }
    assert_eq!(host.http_calls().len(), before, "rate limit: no refetch within 5 s");
    host.advance(Duration::from_secs(5));
    let (s, _) = send(&auth, "/v2/code/completions", &fs("token_unknown_kid"));
    assert_eq!(host.http_calls().len(), before + 1, "one refetch after 5 s");
    let d = only_call(s.http_calls());
    s.fail_http_call(d.token);
    assert!(auth.failure().is_none(), "{:?}", auth.failure());
    denied(&s, 401, "unknown_kid");
}

/// Answers a kid-miss refetch (discovery, then the JWKS with the new key) on the stream that made it.
fn serve_refetch(s: &Stream, jwks: &Value) {
    let d = only_call(s.http_calls());
    assert_eq!(d.header(":path"), Some("/.well-known/openid-configuration"));
    s.deliver_http_call_response(d.token, &[(":status", "200")], fx()["discovery"].to_string().as_bytes());
    let j = only_call(s.http_calls().into_iter().filter(|c| !c.answered).collect());
    s.deliver_http_call_response(j.token, &[(":status", "200")], jwks.to_string().as_bytes());
}

/// Two workers (two VMs sharing shared data) holding key `a`: one of them made the start fetch.
fn two_workers_with_keys(host: &Host) -> (Plugin, Plugin) {
    let w1 = load(host, &builtin_config(json!({})));
    let w2 = load(host, &builtin_config(json!({})));
    let fetcher = if w1.pending_http_calls().is_empty() { &w2 } else { &w1 };
    serve_keys(fetcher, &fx()["jwks_a"]);
    (w1, w2)
}

fn waiting(s: &Stream, a: Action) {
    assert_eq!(a, Action::Pause);
    assert!(s.local_reply().is_none(), "refused instead of waiting: {:?}", s.trace());
    assert!(s.http_calls().is_empty(), "a waiter makes no call of its own");
    assert!(!s.request_headers_sent_upstream());
}

#[test]
fn a_rotation_seen_by_several_requests_at_once_waits_for_the_one_refetch() {
    // GitLab signs with a new key from its first request on: every new-key request that arrives
    // while the first one's refetch is under way must be served, not refused as unknown_kid.
    let host = Host::new();
    let (w1, w2) = two_workers_with_keys(&host);
    let before = host.http_calls().len();

    let (first, a) = send(&w1, "/v2/code/completions", &fs("token_b"));
    assert_eq!(a, Action::Pause);
    let (same_vm, a) = send(&w1, "/v2/code/completions", &fs("token_b"));
    waiting(&same_vm, a);
    let (other_vm, a) = send(&w2, "/v2/code/completions", &fs("token_b"));
    waiting(&other_vm, a);
    assert_eq!(w2.tick_period(), Some(Duration::from_millis(20)), "the other worker polls while a request waits");
    w2.tick();
    waiting(&other_vm, Action::Pause);
    assert_eq!(host.http_calls().len(), before + 1, "one refetch for all of them");

    serve_refetch(&first, &fx()["jwks_ab"]);
    for s in [&first, &same_vm] {
        assert!(s.request_headers_sent_upstream(), "{:?}", s.trace());
        assert_eq!(handoff(s)["result"], "ok");
    }
    assert!(!other_vm.request_headers_sent_upstream(), "woken by its own worker's tick");
    w2.tick();
    assert!(other_vm.request_headers_sent_upstream(), "{:?} {:?}", other_vm.trace(), w2.logs());
    assert_eq!(handoff(&other_vm)["result"], "ok");
    assert_eq!(host.metric_value("duo_auth.jwks.kid_refetch"), Some(1));
    assert_eq!(host.metric_value("duo_auth.jwks.kid_refetch_wait"), Some(2));
    w2.tick();
    assert_eq!(w2.tick_period(), Some(Duration::from_secs(1)), "back to the refresh schedule's tick");

    // After the refetch, a junk kid is refused at once (no refetch under way, none allowed yet).
    let (s, _) = send(&w2, "/v2/code/completions", &fs("token_unknown_kid"));
    denied(&s, 401, "unknown_kid");
}

#[test]
fn waiters_are_refused_when_the_refetch_fails_or_its_fetcher_never_answers() {
    let host = Host::new();
    let (w1, w2) = two_workers_with_keys(&host);

    // The refetch fails: the waiter on the same VM is refused with the fetcher, the other at its tick.
    let (first, _) = send(&w1, "/v2/code/completions", &fs("token_b"));
    let (same_vm, a) = send(&w1, "/v2/code/completions", &fs("token_b"));
    waiting(&same_vm, a);
    let (other_vm, a) = send(&w2, "/v2/code/completions", &fs("token_b"));
    waiting(&other_vm, a);
    let d = only_call(first.http_calls());
    first.fail_http_call(d.token);
    denied(&first, 401, "unknown_kid");
    denied(&same_vm, 401, "unknown_kid");
    w2.tick();
    denied(&other_vm, 401, "unknown_kid");

    // A fetcher that never answers (its worker gone): waiters are held no longer than the window
    // (two fetch timeouts, 5 s each by default, and a second).
    host.advance(Duration::from_secs(5));
    let (_stuck, _) = send(&w1, "/v2/code/completions", &fs("token_b"));
    let (held, a) = send(&w2, "/v2/code/completions", &fs("token_b"));
    waiting(&held, a);
    host.advance(Duration::from_secs(10));
    w2.tick();
    waiting(&held, Action::Pause);
    host.advance(Duration::from_secs(1));
    w2.tick();
    denied(&held, 401, "unknown_kid");
    assert!(w1.failure().is_none() && w2.failure().is_none());
}

#[test]
fn two_workers_share_one_key_set() {
    let host = Host::new();
    let w1 = load(&host, &builtin_config(json!({})));
    let w2 = load(&host, &builtin_config(json!({})));
    // Only one worker claimed the start fetch.
    let calls: Vec<_> = host.http_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let fetcher = if w1.pending_http_calls().is_empty() { &w2 } else { &w1 };
    serve_keys(fetcher, &fx()["jwks_a"]);
    for w in [&w1, &w2] {
        let (s, a) = send(w, "/v2/code/completions", &fs("token_a"));
        assert_eq!(a, Action::Continue, "{:?}", s.trace());
    }
    w1.tick();
    w2.tick();
    assert_eq!(host.http_calls().len(), 2, "no duplicate fetches");
}

#[test]
fn user_tokens_are_issued_used_and_cached() {
    let host = Host::new();
    let auth = load(&host, &builtin_config(json!({"user_tokens": {"signing_key_pem": fs("user_key_pem"), "ttl_s": 3600}})));
    serve_keys(&auth, &fx()["jwks_a"]);
    let (s, a) = send(&auth, "/v1/code/user_access_token", &fs("token_a"));
    assert_eq!(a, Action::Pause);
    let r = s.local_reply().expect("the token answer");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    let now = fx()["now"].as_u64().unwrap();
    assert_eq!(body["expires_at"].as_u64(), Some(now + 3600));
    let user = body["token"].as_str().unwrap().to_owned();

    for _ in 0..2 {
        let (s, a) = send(&auth, "/v2/completions", &user);
        assert_eq!(a, Action::Continue, "{:?}", s.trace());
        assert_eq!(handoff(&s)["token_kind"], "user");
    }
    assert_eq!(host.metric_value("duo_auth.user_token_cache.result.miss"), Some(1));
    assert_eq!(host.metric_value("duo_auth.user_token_cache.result.hit"), Some(1));
    let (s, _) = send(&auth, "/v2/code/generations", &user);
    denied(&s, 403, "user_token_not_allowed");
    let (s, _) = send(&auth, "/v1/code/user_access_token", &user);
    denied(&s, 403, "user_token_not_allowed");
    // Never served from the cache past exp.
    host.set_now_unix_secs(now + 3600 + 61);
    let (s, _) = send(&auth, "/v2/completions", &user);
    denied(&s, 401, "token_expired");
}

#[test]
fn envoy_jwt_authn_verdicts_from_metadata() {
    let host = Host::new();
    let auth = load(&host, r#"{"verifier": "envoy_jwt_authn"}"#);
    assert!(host.http_calls().is_empty(), "no key fetch without sources");
    let ns = ["metadata", "filter_metadata", "envoy.filters.http.jwt_authn"];
    let claims: Value = json!({"iss": "https://gitlab.example.com", "sub": "292c3c7c-c5d5-48ec-b4bf-f00b724ce560",
        "aud": ["gitlab-ai-gateway"], "exp": 1767229200, "gitlab_realm": "self-managed", "scopes": ["complete_code"]});
    let s = auth.new_stream();
    s.set_property(&[ns[0], ns[1], ns[2], "duo_jwt_payload"], PropValue::from_json(&claims));
    let a = s.request_headers(&headers("/v2/code/completions", "Bearer x.y.z"), false);
    assert_eq!(a, Action::Continue, "{:?} {:?}", s.trace(), auth.logs());
    assert_eq!(handoff(&s)["issuer"], "https://gitlab.example.com");

    let s = auth.new_stream();
    s.set_property(&[ns[0], ns[1], ns[2], "duo_jwt_payload"], PropValue::from_json(&claims));
    s.request_headers(&headers("/v2/code/generations", "Bearer x.y.z"), false);
    denied(&s, 403, "missing_scope");

    let s = auth.new_stream();
    s.set_property(&[ns[0], ns[1], ns[2], "duo_jwt_failure"], PropValue::from_json(&json!({"code": 16, "message": "Jwt is expired"})));
    s.request_headers(&headers("/v2/code/completions", &format!("Bearer {}", fs("token_a_expired"))), false);
    denied(&s, 401, "token_expired");

    let s = auth.new_stream();
    s.request_headers(&headers("/v2/code/completions", "Bearer x.y.z"), false);
    denied(&s, 401, "jwt_authn_no_verdict");
}

/// `duo_auth` with two jwt_authn providers (the GitLab instance and CustomersDot), each writing
/// its failure under its own key, and duo_auth's own copy of the GitLab keys.
#[test]
fn several_jwt_authn_providers_give_the_most_specific_verdict() {
    let host = Host::new();
    let auth = load(&host, &builtin_config(json!({"verifier": "envoy_jwt_authn"})));
    serve_keys(&auth, &fx()["jwks_a"]);
    let ns = ["metadata", "filter_metadata", "envoy.filters.http.jwt_authn"];
    let failure = |m: &str| PropValue::from_json(&json!({"code": 1, "message": m}));
    let claims = json!({"iss": "https://customers.gitlab.com", "sub": "292c3c7c-c5d5-48ec-b4bf-f00b724ce560",
        "aud": ["gitlab-ai-gateway"], "exp": 1767229200, "gitlab_realm": "self-managed", "scopes": ["complete_code"]});
    let no_key = "Jwks doesn't have key to match kid or alg from Jwt";
    let with = |token: &str, meta: &[(&str, PropValue)]| {
        let s = auth.new_stream();
        for (key, value) in meta {
            s.set_property(&[ns[0], ns[1], ns[2], *key], value.clone());
        }
        let a = s.request_headers(&headers("/v2/code/completions", &format!("Bearer {token}")), false);
        (s, a)
    };

    // CustomersDot accepted, the instance's provider failed: the payload decides.
    let (s, a) = with(&fs("token_a"), &[("duo_jwt_failure_gitlab", failure(no_key)), ("duo_jwt_payload", PropValue::from_json(&claims))]);
    assert_eq!(a, Action::Continue, "{:?} {:?}", s.trace(), auth.logs());
    assert_eq!(handoff(&s)["issuer"], "https://customers.gitlab.com");

    // Tampered payload: the provider whose key matched says "verification fails", the other one
    // does not know the kid; whichever wrote last, the answer is a bad signature.
    for (first, second) in [("Jwt verification fails", no_key), (no_key, "Jwt verification fails")] {
        let (s, _) = with(&fs("token_a"), &[("duo_jwt_failure_gitlab", failure(first)), ("duo_jwt_failure_customersdot", failure(second))]);
        denied(&s, 401, "bad_signature");
    }

    // HS256 keyed with the public key: refused from its header, no key fetched.
    let calls = host.http_calls().len();
    let hs256 = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ4In0.c2ln";
    let (s, a) = with(hs256, &[("duo_jwt_failure_gitlab", failure(no_key)), ("duo_jwt_failure_customersdot", failure(no_key))]);
    assert_eq!(a, Action::Pause);
    denied(&s, 401, "algorithm_not_allowed");
    assert_eq!(host.http_calls().len(), calls, "no refetch for a token no key can verify");

    // Unknown kid everywhere (a rotation jwt_authn has not seen): duo_auth refetches and verifies.
    let (s, a) = with(&fs("token_b"), &[("duo_jwt_failure_gitlab", failure(no_key)), ("duo_jwt_failure_customersdot", failure(no_key))]);
    assert_eq!(a, Action::Pause);
    let d = only_call(s.http_calls());
    s.deliver_http_call_response(d.token, &[(":status", "200")], fx()["discovery"].to_string().as_bytes());
    let j = only_call(s.http_calls().into_iter().filter(|c| !c.answered).collect());
    s.deliver_http_call_response(j.token, &[(":status", "200")], fx()["jwks_ab"].to_string().as_bytes());
    assert!(s.request_headers_sent_upstream(), "{:?}", s.trace());
    assert_eq!(handoff(&s)["result"], "ok");
}

#[test]
fn ready_only_once_every_source_has_keys() {
    let host = Host::new();
    let two = json!({"jwks_sources": [
        {"name": "gitlab", "cluster": "gitlab", "authority": "gitlab.example.com", "discovery_path": "/.well-known/openid-configuration"},
        {"name": "customersdot", "cluster": "customersdot", "authority": "customers.gitlab.com", "jwks_path": "/oauth/discovery/keys"}]});
    // At configure time Envoy's clusters cannot be called yet.
    host.set_clusters(&[]);
    let auth = load(&host, &builtin_config(two));
    assert!(host.http_calls().is_empty());
    let ready = || {
        let s = auth.new_stream();
        let a = s.request_headers(&[(":method", "GET"), (":path", "/monitoring/ready"), (":authority", "gw")], true);
        (s, a)
    };
    let (s, a) = ready();
    assert_eq!(a, Action::Pause);
    let r = s.local_reply().expect("503 before keys");
    assert_eq!(r.status, 503);
    assert!(String::from_utf8_lossy(&r.body).contains("from: gitlab, customersdot"), "{}", String::from_utf8_lossy(&r.body));
    let healthz = auth.new_stream();
    assert_eq!(healthz.request_headers(&[(":method", "GET"), (":path", "/monitoring/healthz"), (":authority", "gw")], true), Action::Continue, "liveness stays 200");

    // The clusters become callable: the next tick fetches at once (the failed dispatch at
    // configure time did not start a retry period).
    host.set_clusters(&["gitlab", "customersdot"]);
    auth.tick();
    let calls = auth.pending_http_calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let cdot = calls.iter().find(|c| c.cluster == "customersdot").unwrap();
    assert_eq!(cdot.header(":path"), Some("/oauth/discovery/keys"));
    assert_eq!(cdot.header(":authority"), Some("customers.gitlab.com"));
    auth.deliver_http_call_response(cdot.token, &[(":status", "200")], fx()["jwks_ab"].to_string().as_bytes());
    let (s, _) = ready();
    let r = s.local_reply().expect("still 503 with one source missing");
    assert_eq!(r.status, 503);
    assert!(String::from_utf8_lossy(&r.body).contains("from: gitlab\""), "{}", String::from_utf8_lossy(&r.body));
    // A kid none of the held keys has may be GitLab's, whose keys are still on the way: 503, and
    // no kid-miss refetch spent (it stays free for a real rotation).
    let (s, _) = send(&auth, "/v2/code/completions", &fs("token_unknown_kid"));
    denied(&s, 503, "keys_unavailable");
    assert!(s.http_calls().is_empty());
    serve_keys(&auth, &fx()["jwks_a"]);
    let (s, a) = ready();
    assert_eq!(a, Action::Continue, "ready: {:?}", s.local_reply());
    assert_eq!(handoff(&s)["result"], "public");
}

#[test]
fn chat_body_categories_need_their_scopes() {
    let host = Host::new();
    let auth = load(&host, &builtin_config(json!({})));
    serve_keys(&auth, &fx()["jwks_a"]);
    let chat = |cat: &str| json!({"messages": [{"role": "user", "content": "hi",
        "additional_context": [{"category": cat, "id": "1", "content": "x"}]}]}).to_string();
    let (s, a) = send(&auth, "/v2/chat/agent", &fs("token_a"));
    assert_eq!(a, Action::Pause, "headers wait for the body");
    let body = chat("file");
    let (first, rest) = body.as_bytes().split_at(10);
    assert_eq!(s.request_body(first, false), Action::Pause);
    assert_eq!(s.request_body(rest, true), Action::Continue, "{:?}", s.trace());
    assert_eq!(s.upstream_request_body(), body.as_bytes().to_vec());

    let (s, _) = send(&auth, "/v2/chat/agent", &fs("token_a"));
    s.request_body(chat("merge_request").as_bytes(), true);
    denied(&s, 403, "missing_scope");
    assert_eq!(s.local_reply().unwrap().body, br#"{"detail":"Unauthorized to access include_merge_request_context"}"#.to_vec());
}

#[test]
fn public_paths_and_bypass() {
    let host = Host::new();
    let auth = load(&host, &builtin_config(json!({})));
    let s = auth.new_stream();
    let a = s.request_headers(&[(":method", "GET"), (":path", "/monitoring/healthz"), (":authority", "gw")], true);
    assert_eq!(a, Action::Continue);
    assert_eq!(handoff(&s)["result"], "public");

    let bypass = load(&host, &builtin_config(json!({"bypass": "header"})));
    let s = bypass.new_stream();
    let a = s.request_headers(&[(":method", "POST"), (":path", "/v2/code/completions"), (":authority", "gw"), ("bypass-auth", "true")], false);
    assert_eq!(a, Action::Continue);
    assert_eq!(handoff(&s)["result"], "bypass");
    assert!(bypass.logged(duo_harness::LogLevel::Warn, "WITHOUT authentication"));
    assert!(host.load(Filter::Auth, r#"{"bypass": "sometimes"}"#).map(|p| !p.configured()).unwrap_or(true));
}

/// The Agent Platform (gRPC) on the built module: refusals are trailers-only gRPC answers (HTTP
/// 200, application/grpc, grpc-status, a percent-encoded plain-text grpc-message, no body), and
/// gRPC health passes without a token.
#[test]
fn agent_platform_refusals_are_grpc_shaped_and_health_is_public() {
    let host = Host::new();
    let p = load(&host, &builtin_config(json!({})));
    let s = p.new_stream();
    let mut h = headers("/DuoWorkflow/ExecuteWorkflow", "");
    h.retain(|(k, _)| *k != "authorization");
    h.push(("content-type", "application/grpc"));
    s.request_headers(&h, false);
    let r = s.local_reply().unwrap_or_else(|| panic!("no local reply: {:?}", s.trace()));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/grpc"));
    assert_eq!(r.header("grpc-status"), Some("16"));
    assert_eq!(r.header("grpc-message"), Some("No authorization header presented"));
    assert_eq!(r.header("x-duo-auth-reason"), Some("missing_authorization"));
    assert!(r.body.is_empty(), "{:?}", r.body);
    assert!(!s.request_headers_sent_upstream());
    assert_eq!(handoff(&s)["error"], "missing_authorization");

    // A token before GitLab's keys were ever loaded: 14 UNAVAILABLE (retry later), not a 401.
    let (s, _) = send(&p, "/DuoWorkflow/ListTools", "not-a-jwt");
    let r = s.local_reply().unwrap_or_else(|| panic!("no local reply: {:?}", s.trace()));
    assert_eq!((r.status, r.header("grpc-status"), r.header("x-duo-auth-reason")), (200, Some("14"), Some("keys_unavailable")), "{r:?}");

    let s = p.new_stream();
    let a = s.request_headers(&[(":method", "POST"), (":path", "/grpc.health.v1.Health/Check"), (":authority", "gw"),
                                ("content-type", "application/grpc")], false);
    assert_eq!(a, Action::Continue);
    assert!(s.local_reply().is_none());
    assert_eq!(handoff(&s)["result"], "public");
}
