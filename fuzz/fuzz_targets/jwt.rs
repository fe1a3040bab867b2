//! A bearer token as GitLab (or anyone) sends it: split, header read, payload claims decoded and
//! checked, then GitLab's authorization rules with the claims against fuzzed request headers.
//! Input: the token text (lossy UTF-8); its last byte also picks the request's path.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use duo_auth::config::Config;
use duo_auth::policy::{self, Pre, RequestView};
use duo_auth::token::{self, Claims, Rules};
use libfuzzer_sys::fuzz_target;

const PATHS: [&str; 6] = [
    "/v2/code/completions",
    "/v2/chat/agent",
    "/v1/prompts/code_suggestions%2Fgenerations",
    "/v1/code/user_access_token",
    "/v1/agent/unknown",
    "/monitoring/healthz",
];

// A Config holds prepared keys (not Sync): one per fuzzing thread.
thread_local! {
    static CONFIG: Config = {
        let json = br#"{"jwks_sources": [{"name": "gitlab", "cluster": "gitlab", "authority": "gitlab.example", "jwks_path": "/oauth/discovery/keys"}]}"#;
        Config::parse(json).unwrap_or_else(|e| panic!("fuzz config: {e}"))
    };
}

fuzz_target!(|data: &[u8]| CONFIG.with(|config| {
    let text = String::from_utf8_lossy(data);
    let token_text = text.as_ref();
    let path = PATHS[data.last().map_or(0, |b| *b as usize) % PATHS.len()];

    // The Authorization header path: scheme, token, authentication type.
    let authorization = format!("Bearer {token_text}");
    let req = RequestView {
        method: "POST",
        path,
        authorization: Some(&authorization),
        authentication_type: Some("oidc"),
        realm: Some("self-managed"),
        instance_id: Some("instance-1"),
        global_user_id: Some("user-1"),
        bypass_auth: None,
    };
    let _ = policy::pre_check(config, &req);
    let raw = RequestView { authorization: Some(token_text), ..req.clone() };
    if let Pre::Verify { token, .. } = policy::pre_check(config, &raw) {
        assert!(token_text.contains(token));
    }

    // The token itself: header checks, then the payload's claims as if the signature held.
    if let Ok(parsed) = token::parse(token_text) {
        assert!(parsed.token.len() <= token::MAX_TOKEN_BYTES);
    }
    let payload = token_text.split('.').nth(1).and_then(|p| URL_SAFE_NO_PAD.decode(p).ok());
    let claims_json = payload.as_deref().unwrap_or(data);
    if let Ok(claims) = serde_json::from_slice::<Claims>(claims_json) {
        for now in [0, 1_700_000_000, u64::MAX] {
            let rules = Rules { audience: "gitlab-ai-gateway", clock_skew_s: 60, now };
            if token::check_claims(&claims, &rules).is_ok() {
                // Accepted means: an expiry, not past, and our audience.
                let exp = claims.exp.unwrap_or(f64::NAN);
                assert!(exp.is_finite() && exp + 60.0 >= now as f64);
                assert!(claims.aud.as_ref().is_some_and(|a| a.contains("gitlab-ai-gateway")));
            }
        }
        for kind in [policy::TokenKind::Gitlab, policy::TokenKind::User, policy::TokenKind::Workflow] {
            let _ = policy::authorize(config, &req, &claims, kind, Default::default());
        }
    }
}));
