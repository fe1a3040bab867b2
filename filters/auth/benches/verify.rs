//! Micro-benchmarks of duo_auth's hot pure functions (native; `./build.sh bench` runs them):
//! RS256 verification of a GitLab-sized instance token with each backend behind
//! `keys::SignatureCheck`, the parse step alone, and a cached user-token lookup.
//! The signing key is the committed test key `tests/data/gitlab_a.pem` (test data only).

use criterion::{Criterion, criterion_group, criterion_main};
use duo_auth::keys::{PreparedKey, RsaBackend};
use duo_auth::token::{self, Rules};
use duo_auth::user_token::{IssueRequest, TokenCache, UserTokenIssuer};
use jwt_simple::prelude::*;
use std::hint::black_box;

const PEM: &str = include_str!("../tests/data/gitlab_a.pem");
const KID: &str = "bench-kid";

/// The unit primitives an instance with Duo Enterprise puts in `scopes` (a GitLab-sized token).
const SCOPES: [&str; 30] = [
    "complete_code", "generate_code", "code_suggestions", "duo_chat", "explain_code", "write_tests",
    "refactor_code", "fix_code", "troubleshoot_job", "explain_vulnerability", "summarize_comments",
    "generate_commit_message", "summarize_new_merge_request", "review_merge_request", "summarize_review",
    "resolve_vulnerability", "glab_ask_git_command", "duo_agent_platform", "generate_issue_description",
    "include_file_context", "include_snippet_context", "include_merge_request_context",
    "include_issue_context", "include_dependency_context", "include_local_git_context",
    "include_terminal_context", "include_user_rule_context", "include_repository_context",
    "ai_gateway_model_provider_proxy", "documentation_search",
];

#[derive(serde::Serialize, serde::Deserialize)]
struct Instance {
    gitlab_realm: String,
    scopes: Vec<String>,
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("bench setup failed: {what}: {e}");
    std::process::exit(1)
}

fn instance_token(key: &RS256KeyPair) -> String {
    let custom = Instance { gitlab_realm: "self-managed".into(), scopes: SCOPES.iter().map(|s| (*s).to_owned()).collect() };
    let claims = Claims::with_custom_claims(custom, jwt_simple::prelude::Duration::from_hours(1))
        .with_issuer("https://gitlab.example.com")
        .with_subject("292c3c7c-c5d5-48ec-b4bf-f00b724ce560")
        .with_audience("gitlab-ai-gateway")
        .with_jwt_id("6f1c2a4e-8b1d-4c5e-9a77-0b1e2d3c4f50");
    key.sign(claims).unwrap_or_else(|e| fail("sign", e))
}

fn prepared(key: &RS256KeyPair, backend: RsaBackend) -> PreparedKey {
    let c = key.public_key().to_components();
    PreparedKey::from_components(&c.n, &c.e, Some(KID.into()), "gitlab", backend).unwrap_or_else(|e| fail("prepare key", e))
}

fn bench_verify(c: &mut Criterion) {
    let key = RS256KeyPair::from_pem(PEM).unwrap_or_else(|e| fail("pem", e)).with_key_id(KID);
    let token = instance_token(&key);
    let rules = Rules { audience: "gitlab-ai-gateway", clock_skew_s: 60, now: now() };
    let mut g = c.benchmark_group("jwt");
    for (name, backend) in [("rs256_verify_rsa_0_10", RsaBackend::Rsa), ("rs256_verify_jwt_simple", RsaBackend::JwtSimple)] {
        let keys = [prepared(&key, backend)];
        // A benchmark of a failing verify would measure the wrong thing.
        if let Err(e) = token::verify_with(&token, &keys, &rules) {
            fail(name, format!("{e:?}"));
        }
        g.bench_function(name, |b| b.iter(|| token::verify_with(black_box(&token), &keys, &rules)));
    }
    g.bench_function("parse_only", |b| b.iter(|| token::parse(black_box(&token)).is_ok()));
    g.finish();
}

fn bench_user_token_cache(c: &mut Criterion) {
    let issuer = UserTokenIssuer::from_pem(PEM).unwrap_or_else(|e| fail("issuer", e));
    let scopes: Vec<String> = SCOPES.iter().map(|s| (*s).to_owned()).collect();
    let t = now();
    let req = IssueRequest {
        global_user_id: "Df0Jhs9xkUVnUjEMx0vUi1p3CkVbZIMj1Dn06ZQjI0E=",
        instance_id: "292c3c7c-c5d5-48ec-b4bf-f00b724ce560",
        realm: "self-managed",
        caller_scopes: &scopes,
        now: t,
        ttl_s: 3600,
        jti: "0d9c6a44-3f0b-4b55-8d1e-9b2f7c1a2e3d",
    };
    let (user_token, exp) = issuer.issue(&req).unwrap_or_else(|e| fail("issue", e));
    let verifying = [issuer.prepared_public_key(RsaBackend::Rsa).unwrap_or_else(|e| fail("user key", e))];
    let rules = Rules { audience: "gitlab-ai-gateway", clock_skew_s: 60, now: t };
    let claims = token::verify_with(&user_token, &verifying, &rules).unwrap_or_else(|e| fail("verify user token", format!("{e:?}"))).claims;
    let mut cache = TokenCache::new(10_000);
    // A realistically warm cache: many users' tokens, ours among them.
    for i in 0..1000 {
        cache.insert(&format!("{user_token}{i}"), claims.clone(), exp, t);
    }
    cache.insert(&user_token, claims, exp, t);
    if cache.get(&user_token, t).is_none() {
        fail("cache", "the inserted token is not found");
    }
    c.bench_function("jwt/user_token_cache_hit", |b| b.iter(|| cache.get(black_box(&user_token), t).is_some()));
}

/// duo_auth's whole request-side work with `verifier: envoy_jwt_authn` once Envoy handed over
/// the bytes: jwt_authn's payload map decoded, GitLab's header rules, the scope decision, and
/// the hand-off serialized for the other filters.
fn bench_jwt_authn_decision(c: &mut Criterion) {
    use duo_auth::config::Config;
    use duo_auth::jwt_authn::{self, encode_pairs as pairs};
    use duo_auth::policy::{self, Decision, Pre, RequestView};
    let config = Config::parse(br#"{"audience": "gitlab-ai-gateway", "verifier": "envoy_jwt_authn"}"#)
        .unwrap_or_else(|e| fail("config", format!("{e:?}")));
    let scope_list: Vec<(&[u8], &[u8])> = SCOPES.iter().map(|s| (s.as_bytes(), &b""[..])).collect();
    let scopes = pairs(&scope_list);
    let exp = ((now() + 3600) as f64).to_le_bytes();
    let iat = (now() as f64).to_le_bytes();
    let payload = pairs(&[
        (b"iss", b"https://gitlab.example.com"),
        (b"sub", b"3f2b3f0e-5a0c-4c39-9d65-0a2f9a1d7c11"),
        (b"aud", b"gitlab-ai-gateway"),
        (b"exp", &exp),
        (b"iat", &iat),
        (b"nbf", &iat),
        (b"jti", b"4c6a0d1e-6f0b-4f59-a7c2-1b1f0e9d8c77"),
        (b"gitlab_realm", b"self-managed"),
        (b"gitlab_instance_id", b"3f2b3f0e-5a0c-4c39-9d65-0a2f9a1d7c11"),
        (b"scopes", &scopes),
    ]);
    let authorization = "Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6ImJlbmNoIn0.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
    let view = RequestView {
        method: "POST",
        path: "/v1/prompts/generate_commit_message",
        authorization: Some(authorization),
        authentication_type: Some("oidc"),
        realm: Some("self-managed"),
        instance_id: Some("3f2b3f0e-5a0c-4c39-9d65-0a2f9a1d7c11"),
        global_user_id: Some("Vv0HqKJ9cTf3a7lKQbq2xw=="),
        bypass_auth: None,
    };
    let run = || -> Option<Vec<u8>> {
        let Pre::Verify { info, .. } = policy::pre_check(&config, black_box(&view)) else { return None };
        let claims = jwt_authn::claims_from_payload_map(black_box(&payload))?;
        match policy::authorize(&config, &view, &claims, policy::TokenKind::Gitlab, info) {
            Decision::Allow(info) => serde_json::to_vec(&info).ok(),
            _ => None,
        }
    };
    if run().is_none() {
        fail("jwt_authn decision", "the request was not allowed");
    }
    c.bench_function("auth/jwt_authn_decision", |b| b.iter(run));
}

criterion_group!(benches, bench_verify, bench_user_token_cache, bench_jwt_authn_decision);
criterion_main!(benches);
