//! The request as duo_auth and every filter classify it: method and path (percent escapes,
//! prompt ids), the headers GitLab's rules read, and the chat-agent body's context categories
//! checked against the token's scopes. Input: lines `method`, `path`, `authorization`,
//! `authentication type`, `bypass`, then the body.
#![no_main]

use duo_auth::config::Config;
use duo_auth::policy::{self, RequestView};
use duo_core::catalogue;
use libfuzzer_sys::fuzz_target;

// A Config holds prepared keys (not Sync): one per fuzzing thread.
thread_local! {
    static CONFIGS: [Config; 2] = {
        let parse = |json: &[u8]| Config::parse(json).unwrap_or_else(|e| panic!("fuzz config: {e}"));
        [
            parse(br#"{"jwks_sources": [{"name": "g", "cluster": "g", "authority": "g.example", "jwks_path": "/k"}]}"#),
            parse(br#"{"jwks_sources": [{"name": "g", "cluster": "g", "authority": "g.example", "jwks_path": "/k"}], "bypass": "header"}"#),
        ]
    };
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(6, '\n');
    let mut next = || lines.next();
    let (method, path) = (next().unwrap_or_default(), next().unwrap_or_default());
    let (authorization, authentication_type, bypass_auth) = (next(), next(), next());
    let body = next().unwrap_or_default();

    let classified = catalogue::classify(method, path);
    if let Ok(endpoint) = &classified
        && let Some(feature) = endpoint.feature
    {
        assert_eq!(catalogue::Feature::from_name(feature.name()), Some(feature));
    }
    if let Some(decoded) = catalogue::percent_decode(path) {
        let _ = catalogue::prompt(&decoded);
        if !path.contains('%') {
            assert_eq!(decoded, path);
        }
    }

    let req = RequestView {
        method,
        path,
        authorization,
        authentication_type,
        realm: Some("self-managed"),
        instance_id: Some("1"),
        global_user_id: Some("2"),
        bypass_auth,
    };
    CONFIGS.with(|configs| {
        for config in configs {
            let _ = policy::pre_check(config, &req);
        }
    });

    let scopes: Vec<String> = body.split_whitespace().take(4).map(str::to_owned).collect();
    let _ = policy::check_chat_body(body.as_bytes(), &scopes);
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(body) {
        for scope in duo_core::chat_scopes::required_context_scopes(&value) {
            assert!(scope.starts_with("include_") && scope.ends_with("_context"));
        }
    }
});
