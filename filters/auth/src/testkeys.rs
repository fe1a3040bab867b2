//! Test keys (generated for this project with `openssl genpkey`, committed as test data) and
//! helpers that mint tokens the way GitLab does. Test-only.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_simple::prelude::*;

pub const GITLAB_A_PEM: &str = include_str!("../tests/data/gitlab_a.pem");
pub const GITLAB_B_PEM: &str = include_str!("../tests/data/gitlab_b.pem");
pub const USER_PEM: &str = include_str!("../tests/data/user_key.pem");
pub const OTHER_PEM: &str = include_str!("../tests/data/other.pem");
pub const WEAK_PEM: &str = include_str!("../tests/data/weak_1024.pem");

pub const NOW: u64 = 1_726_758_000;
pub const INSTANCE_ID: &str = "292c3c7c-c5d5-48ec-b4bf-f00b724ce560";

/// The public JWK of a PEM private key.
pub fn jwk(pem: &str, kid: &str) -> serde_json::Value {
    let c = RS256KeyPair::from_pem(pem).unwrap().public_key().to_components();
    serde_json::json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
        "n": URL_SAFE_NO_PAD.encode(c.n), "e": URL_SAFE_NO_PAD.encode(c.e)})
}

/// The JWK of a 1024-bit key (too weak: refused by both backends).
pub fn weak_jwk(kid: &str) -> serde_json::Value {
    let hex = include_str!("../tests/data/weak_1024.modulus.hex").trim();
    let n: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    serde_json::json!({"kty": "RSA", "kid": kid, "n": URL_SAFE_NO_PAD.encode(n), "e": "AQAB"})
}

/// Claims of an instance token as GitLab 18.4 mints them, issued at [`NOW`].
pub fn instance_claims() -> serde_json::Value {
    serde_json::json!({
        "jti": "0099dd6c-b66e-4787-8ae2-c451d86025ae",
        "aud": ["gitlab-ai-gateway"],
        "sub": INSTANCE_ID,
        "iss": "https://gitlab.example.com",
        "iat": NOW,
        "nbf": NOW - 5,
        "exp": NOW + 3600,
        "gitlab_realm": "self-managed",
        "scopes": ["complete_code", "generate_code", "duo_chat", "explain_code", "include_file_context",
                   "generate_commit_message", "summarize_review"]
    })
}

/// Signs claims (a JSON object; `null` members are dropped) with RS256.
pub fn sign(pem: &str, kid: Option<&str>, claims: &serde_json::Value) -> String {
    let mut key = RS256KeyPair::from_pem(pem).unwrap();
    if let Some(kid) = kid {
        key = key.with_key_id(kid);
    }
    let mut map = claims.as_object().unwrap().clone();
    map.retain(|_, v| !v.is_null());
    let mut secs = |k: &str| map.remove(k).and_then(|v| v.as_u64()).map(Duration::from_secs);
    let (iat, nbf, exp) = (secs("iat"), secs("nbf"), secs("exp"));
    let str_of = |m: &mut serde_json::Map<String, serde_json::Value>, k: &str| m.remove(k).and_then(|v| v.as_str().map(str::to_owned));
    let (iss, sub, jti) = (str_of(&mut map, "iss"), str_of(&mut map, "sub"), str_of(&mut map, "jti"));
    let aud = map.remove("aud").map(|a| match a {
        serde_json::Value::String(s) => Audiences::AsString(s),
        serde_json::Value::Array(list) => Audiences::AsSet(list.into_iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()),
        _ => Audiences::AsString(String::new()),
    });
    let claims = JWTClaims {
        issued_at: iat,
        expires_at: exp,
        invalid_before: nbf,
        issuer: iss,
        subject: sub,
        audiences: aud,
        jwt_id: jti,
        nonce: None,
        custom: map,
    };
    key.sign(claims).unwrap()
}

/// A token with a hand-written header and the given signature text.
pub fn unsigned(header: &str, claims: &serde_json::Value, signature_b64: &str) -> String {
    format!("{}.{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims.to_string()), signature_b64)
}

/// The algorithm-confusion attack: HS256 keyed with the RSA public key (PEM text).
pub fn hs256_with_public_key(pem: &str, kid: &str, claims: &serde_json::Value) -> String {
    let public_pem = RS256KeyPair::from_pem(pem).unwrap().public_key().to_pem().unwrap();
    let key = HS256Key::from_bytes(public_pem.as_bytes()).with_key_id(kid);
    let mut map = claims.as_object().unwrap().clone();
    let exp = map.remove("exp").and_then(|v| v.as_u64()).map(Duration::from_secs);
    map.remove("aud");
    let claims = JWTClaims {
        issued_at: None,
        expires_at: exp,
        invalid_before: None,
        issuer: None,
        subject: None,
        audiences: Some(Audiences::AsString("gitlab-ai-gateway".to_owned())),
        jwt_id: None,
        nonce: None,
        custom: map,
    };
    key.authenticate(claims).unwrap()
}

pub fn header_of(token: &str) -> serde_json::Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
}

/// The public half of a PEM private key, as PEM (what `workflow_token_keys` lists).
pub fn public_pem(pem: &str) -> String {
    RS256KeyPair::from_pem(pem).unwrap().public_key().to_pem().unwrap()
}

/// Claims of a Duo Workflow Service self-signed token (no kid when signed), issued at [`NOW`].
pub fn workflow_claims(global_user_id: &str) -> serde_json::Value {
    serde_json::json!({
        "jti": "5b3f4c0e-0d1e-4c55-9b8e-0d6c1f7f3a10",
        "aud": "gitlab-duo-workflow-service",
        "iss": "gitlab-duo-workflow-service",
        "sub": global_user_id,
        "iat": NOW,
        "nbf": NOW - 5,
        "exp": NOW + 3600,
        "scopes": ["duo_agent_platform"]
    })
}
