//! VM crossings and work per request: the host calls each filter's callbacks make, and the wasm
//! operators they execute (wasmtime fuel: deterministic, unlike timings on a shared box), for one
//! ordinary forwarded request through the shipped chain order (duo_logger, duo_auth, duo_router),
//! counted by the host emulator. Every host call is a V8 boundary crossing (1-2 µs each in Envoy on the
//! bench box, docs/bench.md), so the counts are held to budgets: a change that adds crossings
//! fails here and has to raise its budget knowingly (README "Performance").
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use duo_harness::{Filter, Host, Plugin, PropValue, Stream};
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn fx() -> Value {
    serde_json::from_str(include_str!("auth/fixtures.json")).unwrap()
}

fn load(host: &Host, filter: Filter, config: &Value) -> Plugin {
    let p = host.load(filter, &config.to_string()).unwrap();
    assert!(p.configured(), "{:?}", p.logs());
    p
}

/// duo_auth with its own keys (builtin verifier), served once at start like GitLab's JWKS.
fn auth(host: &Host) -> Plugin {
    let p = load(host, Filter::Auth, &json!({
        "audience": "gitlab-ai-gateway", "verifier": "builtin",
        "jwks_sources": [{"name": "gitlab", "cluster": "gitlab", "authority": "gitlab.example.com",
                          "discovery_path": "/.well-known/openid-configuration"}],
        "refresh_interval_s": 3600, "clock_skew_s": 60
    }));
    let calls = p.pending_http_calls();
    p.deliver_http_call_response(calls[0].token, &[(":status", "200")], fx()["discovery"].to_string().as_bytes());
    let calls = p.pending_http_calls();
    p.deliver_http_call_response(calls[0].token, &[(":status", "200")], fx()["jwks_a"].to_string().as_bytes());
    assert!(p.pending_http_calls().is_empty());
    p
}

fn router(host: &Host) -> Plugin {
    load(host, Filter::Router, &json!({
        "configuration_type": "self_hosted",
        "cluster_header": "x-duo-upstream",
        "models": {"codestral": {"platform": "vllm", "cluster": "vllm_codestral", "authority": "vllm.internal:8000",
            "base_path": "/v1", "model": "Codestral-22B-v0.1", "family": "codestral", "timeout_ms": 60000,
            "identifiers": ["custom_openai/Codestral-22B-v0.1"], "credentials": "gitlab"}},
        "features": {"generate_commit_message": {"provider": "self_hosted", "model": "codestral"}},
        "default": {"provider": "disabled"}
    }))
}

/// Sends GitLab's generate_commit_message request (its real header set) through the chain and
/// answers it as vLLM does; returns the host calls per filter.
/// Per filter: its label, host calls by function, wasm operators by callback.
type Counts = Vec<(String, BTreeMap<String, u32>, BTreeMap<String, u64>)>;

fn one_request(host: &Host, chain: &[&Plugin]) -> Counts {
    let s = Stream::chain(chain);
    s.set_property(&["request", "time"], PropValue::TimestampNanos(host.now_nanos() as i64));
    let auth = format!("Bearer {}", fx()["token_a"].as_str().unwrap());
    let headers = [
        (":method", "POST"),
        (":path", "/v1/prompts/generate_commit_message"),
        (":authority", "gateway.internal:5052"),
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("user-agent", "GitLab/18.4.0"),
        ("x-request-id", "01JCROSSINGS"),
        ("x-gitlab-authentication-type", "oidc"),
        ("x-gitlab-instance-id", "292c3c7c-c5d5-48ec-b4bf-f00b724ce560"),
        ("x-gitlab-realm", "self-managed"),
        ("x-gitlab-global-user-id", "Df0Jhs9x="),
        ("x-gitlab-host-name", "gitlab.example.com"),
        ("x-gitlab-version", "18.4.0"),
        ("x-gitlab-feature-enabled-by-namespace-ids", "1,2"),
        ("x-gitlab-feature-enablement-type", "duo_enterprise"),
        ("x-gitlab-unit-primitive", "generate_commit_message"),
        ("x-gitlab-duo-seat-count", "10"),
    ];
    s.request_headers(&headers, false);
    let body = json!({"inputs": {"diff": "diff --git a/x b/x\n+x = 1\n"}, "prompt_version": "^1.0.0"}).to_string();
    let a = s.request_body(body.as_bytes(), true);
    assert!(a.is_continue(), "{a:?} {:?}", s.trace());
    assert!(s.request_headers_sent_upstream(), "{:?}", s.trace());
    assert_eq!(s.request_header("x-duo-upstream").as_deref(), Some("vllm_codestral"));
    s.response_headers(&[(":status", "200"), ("content-type", "application/json")], false);
    let answer = json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "Codestral-22B-v0.1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Set x"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 2, "total_tokens": 42}});
    s.response_body(answer.to_string().as_bytes(), true);
    assert_eq!(s.downstream_response_body_str(), "\"Set x\"");
    s.finish();
    chain.iter().map(|p| (p.label().to_owned(), s.host_calls(p.label()), s.wasm_ops_by_callback(p.label()))).collect()
}

/// The budgets: host calls per request at the last change that moved them (2026-12-03). Lower is
/// welcome (lower the budget with it); higher needs a reason in the README's Performance section.
const BUDGETS: [(&str, u32); 3] = [("duo_logger", 24), ("duo_auth", 5), ("duo_router", 35)];

/// Wasm operators per request (wasmtime fuel), measured 2026-12-03 on `./build.sh build`'s
/// modules (wasm-opt -O3): duo_logger 401,586, duo_auth 7,217,321 (the builtin verifier's RS256),
/// duo_router 143,000. The budgets leave a quarter of headroom (a module built without wasm-opt,
/// small feature work); a change that needs more raises them with a reason in the README.
const OPS_BUDGETS: [u64; 3] = [502_000, 9_022_000, 186_000];

#[test]
fn an_ordinary_request_stays_within_each_filters_host_call_budget() {
    let host = Host::new();
    let logger = load(&host, Filter::Logger, &json!({"log_content": "when_enabled", "max_content_bytes": 8192, "hash_user_ids": false}));
    let auth = auth(&host);
    let router = router(&host);
    let chain = [&logger, &auth, &router];
    // The first request also prepares per-VM state (metric ids, keys): the steady state is the second.
    one_request(&host, &chain);
    let counts = one_request(&host, &chain);
    // To compare another build (an older commit's `dist/`):
    // DUO_DIST_DIR=<its dist> DUO_CROSSINGS_REPORT_ONLY=1 cargo test -p duo-harness --test crossings -- --nocapture
    let enforce = std::env::var_os("DUO_CROSSINGS_REPORT_ONLY").is_none();
    let mut report = String::new();
    for (((label, calls, ops), (name, budget)), ops_budget) in counts.iter().zip(BUDGETS).zip(OPS_BUDGETS) {
        assert!(label.starts_with(name), "{label} vs {name}");
        let total: u32 = calls.values().sum();
        let all: u64 = ops.values().sum();
        report.push_str(&format!("{name}: {all} wasm ops (budget {ops_budget}) {ops:?}\n    {total} host calls (budget {budget}): {calls:?}\n"));
        assert!(!enforce || total <= budget, "{name}: {total} host calls per request, over its budget of {budget}\n{report}");
        assert!(!enforce || all <= ops_budget, "{name}: {all} wasm operators per request, over its budget of {ops_budget}\n{report}");
    }
    eprintln!("{report}");
}
