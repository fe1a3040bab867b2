//! Verifying a GitLab JWT: RS256 only, signature, `exp`/`nbf`/`iat` with clock skew, `aud`
//! contains the audience. A pure function of the token, the keys, the rules and `now`, so it runs
//! in tests with any clock and in a criterion bench.

use crate::keys::{Compact, KeyRing, PreparedKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

/// What GitLab puts in `aud` for the AI gateway (and what user tokens carry as `iss`/`aud`).
pub(crate) const GITLAB_AI_GATEWAY: &str = "gitlab-ai-gateway";

/// Longest token looked at; anything longer is junk (GitLab's are about 1-2 KB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
const MAX_HEADER_BYTES: usize = 2048;

/// Why a token was refused. Every one of them is a 401 `Forbidden by auth provider` for GitLab;
/// the specific reason goes to the access log, the metrics and `x-duo-auth-reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    /// `alg` is not RS256 (`none`, HS256, RS512, ...).
    AlgorithmNotAllowed,
    /// No key with this `kid` (the caller may refetch the key sets).
    UnknownKid,
    BadSignature,
    Expired,
    NotYetValid,
    WrongAudience,
}

impl TokenError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed_token",
            TokenError::AlgorithmNotAllowed => "algorithm_not_allowed",
            TokenError::UnknownKid => "unknown_kid",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::WrongAudience => "wrong_audience",
        }
    }
}

/// `aud` is a string or a list of strings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, aud: &str) -> bool {
        match self {
            Audience::One(a) => a == aud,
            Audience::Many(list) => list.iter().any(|a| a == aud),
        }
    }
}

/// The claims GitLab's rules look at (others are ignored).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Claims {
    #[serde(default)]
    pub iss: Option<String>,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub aud: Option<Audience>,
    #[serde(default)]
    pub exp: Option<f64>,
    #[serde(default)]
    pub nbf: Option<f64>,
    #[serde(default)]
    pub iat: Option<f64>,
    #[serde(default)]
    pub jti: Option<String>,
    #[serde(default)]
    pub gitlab_realm: Option<String>,
    #[serde(default)]
    pub gitlab_instance_id: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// The rules of one verification.
#[derive(Clone, Copy, Debug)]
pub struct Rules<'a> {
    pub audience: &'a str,
    pub clock_skew_s: u64,
    /// Unix seconds.
    pub now: u64,
}

/// A verified token and the key source that vouched for it.
#[derive(Clone, Debug, PartialEq)]
pub struct Verified {
    pub claims: Claims,
    pub(crate) source: String,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<Vec<String>>,
}

/// A token split and its header read, before any key is involved.
pub struct Parsed<'a> {
    pub token: &'a str,
    pub kid: Option<String>,
    signing_input: &'a str,
    payload_b64: &'a str,
    signature: Vec<u8>,
}

/// Splits a compact JWS and checks its header: RS256 only.
pub fn parse(token: &str) -> Result<Parsed<'_>, TokenError> {
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed);
    };
    if h.len() > MAX_HEADER_BYTES {
        return Err(TokenError::Malformed);
    }
    let header_bytes = URL_SAFE_NO_PAD.decode(h).map_err(|_| TokenError::Malformed)?;
    let header: Header = serde_json::from_slice(&header_bytes).map_err(|_| TokenError::Malformed)?;
    if header.alg != "RS256" {
        return Err(TokenError::AlgorithmNotAllowed);
    }
    if header.crit.is_some_and(|c| !c.is_empty()) {
        return Err(TokenError::Malformed);
    }
    if let Some(typ) = header.typ {
        let typ = typ.to_ascii_uppercase();
        if typ != "JWT" && !typ.ends_with("+JWT") {
            return Err(TokenError::Malformed);
        }
    }
    let signature = URL_SAFE_NO_PAD.decode(s).map_err(|_| TokenError::Malformed)?;
    // Splitting on '.' above makes these indices char boundaries.
    let signing_input = token.get(..h.len() + 1 + p.len()).ok_or(TokenError::Malformed)?;
    Ok(Parsed { token, kid: header.kid, signing_input, payload_b64: p, signature })
}

/// Verifies a token against a key ring: signature, then time and audience.
pub fn verify(token: &str, ring: &KeyRing, rules: &Rules<'_>) -> Result<Verified, TokenError> {
    verify_with(token, &ring.keys, rules)
}

/// [`verify`] against any set of prepared keys (e.g. duo_auth's own user-token key).
pub fn verify_with(token: &str, keys: &[PreparedKey], rules: &Rules<'_>) -> Result<Verified, TokenError> {
    let parsed = parse(token)?;
    verify_parsed(&parsed, keys, rules)
}

pub(crate) fn verify_parsed(parsed: &Parsed<'_>, keys: &[PreparedKey], rules: &Rules<'_>) -> Result<Verified, TokenError> {
    let compact = Compact { token: parsed.token, signing_input: parsed.signing_input, signature: &parsed.signature };
    let mut candidates = keys.iter().filter(|k| parsed.kid.is_none() || k.kid == parsed.kid).peekable();
    if candidates.peek().is_none() {
        return Err(if parsed.kid.is_some() { TokenError::UnknownKid } else { TokenError::BadSignature });
    }
    let key = candidates.find(|k| k.verify(&compact)).ok_or(TokenError::BadSignature)?;
    let payload = URL_SAFE_NO_PAD.decode(parsed.payload_b64).map_err(|_| TokenError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
    check_claims(&claims, rules)?;
    Ok(Verified { claims, source: key.source.clone() })
}

/// Time and audience rules (python-jose's, which GitLab's gateway uses): `exp` is required.
pub fn check_claims(claims: &Claims, rules: &Rules<'_>) -> Result<(), TokenError> {
    let now = rules.now as f64;
    let skew = rules.clock_skew_s as f64;
    let exp = claims.exp.ok_or(TokenError::Malformed)?;
    if !exp.is_finite() || exp + skew < now {
        return Err(TokenError::Expired);
    }
    for t in [claims.nbf, claims.iat].into_iter().flatten() {
        if !t.is_finite() || t > now + skew {
            return Err(TokenError::NotYetValid);
        }
    }
    match &claims.aud {
        Some(aud) if aud.contains(rules.audience) => Ok(()),
        _ => Err(TokenError::WrongAudience),
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::keys::{RsaBackend, SharedKeys};
    use crate::testkeys::{self, NOW};

    fn ring(backend: RsaBackend) -> KeyRing {
        let keys = crate::keys::parse_jwks(
            serde_json::json!({"keys": [testkeys::jwk(testkeys::GITLAB_A_PEM, "a"), testkeys::jwk(testkeys::GITLAB_B_PEM, "b")]})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        SharedKeys::default().with_source("gitlab", keys, NOW).prepare(&["gitlab"], backend)
    }

    fn rules() -> Rules<'static> {
        Rules { audience: "gitlab-ai-gateway", clock_skew_s: 60, now: NOW }
    }

    /// (name, token, expected verdict) for every rule; run against both RSA backends.
    fn corpus() -> Vec<(&'static str, String, Result<(), TokenError>)> {
        let good = testkeys::instance_claims();
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut c = good.clone();
            f(&mut c);
            c
        };
        let a = testkeys::GITLAB_A_PEM;
        let mut v = vec![
            ("valid", testkeys::sign(a, Some("a"), &good), Ok(())),
            ("valid, key b", testkeys::sign(testkeys::GITLAB_B_PEM, Some("b"), &good), Ok(())),
            ("valid without kid", testkeys::sign(a, None, &good), Ok(())),
            ("aud as string", testkeys::sign(a, Some("a"), &with(&|c| c["aud"] = "gitlab-ai-gateway".into())), Ok(())),
            ("aud among others", testkeys::sign(a, Some("a"), &with(&|c| c["aud"] = serde_json::json!(["x", "gitlab-ai-gateway"]))), Ok(())),
            ("expired", testkeys::sign(a, Some("a"), &with(&|c| c["exp"] = (NOW - 61).into())), Err(TokenError::Expired)),
            ("expired within skew", testkeys::sign(a, Some("a"), &with(&|c| c["exp"] = (NOW - 60).into())), Ok(())),
            ("no exp", testkeys::sign(a, Some("a"), &with(&|c| c["exp"] = serde_json::Value::Null)), Err(TokenError::Malformed)),
            ("nbf in future", testkeys::sign(a, Some("a"), &with(&|c| c["nbf"] = (NOW + 61).into())), Err(TokenError::NotYetValid)),
            ("nbf within skew", testkeys::sign(a, Some("a"), &with(&|c| c["nbf"] = (NOW + 60).into())), Ok(())),
            ("iat in future", testkeys::sign(a, Some("a"), &with(&|c| c["iat"] = (NOW + 3600).into())), Err(TokenError::NotYetValid)),
            ("wrong audience", testkeys::sign(a, Some("a"), &with(&|c| c["aud"] = serde_json::json!(["gitlab-duo-workflow-service"]))), Err(TokenError::WrongAudience)),
            ("no audience", testkeys::sign(a, Some("a"), &with(&|c| c["aud"] = serde_json::Value::Null)), Err(TokenError::WrongAudience)),
            ("unknown kid", testkeys::sign(a, Some("zzz"), &good), Err(TokenError::UnknownKid)),
            ("kid of the other key", testkeys::sign(a, Some("b"), &good), Err(TokenError::BadSignature)),
            ("signed by a stranger", testkeys::sign(testkeys::OTHER_PEM, Some("a"), &good), Err(TokenError::BadSignature)),
            ("stranger without kid", testkeys::sign(testkeys::OTHER_PEM, None, &good), Err(TokenError::BadSignature)),
            ("alg none", testkeys::unsigned(r#"{"alg":"none","typ":"JWT","kid":"a"}"#, &good, ""), Err(TokenError::AlgorithmNotAllowed)),
            ("alg HS256 with the public key", testkeys::hs256_with_public_key(a, "a", &good), Err(TokenError::AlgorithmNotAllowed)),
            ("alg RS512", testkeys::unsigned(r#"{"alg":"RS512","kid":"a"}"#, &good, "AAAA"), Err(TokenError::AlgorithmNotAllowed)),
            ("crit header", testkeys::unsigned(r#"{"alg":"RS256","kid":"a","crit":["exp"]}"#, &good, "AAAA"), Err(TokenError::Malformed)),
            ("junk", "not-a-token".to_owned(), Err(TokenError::Malformed)),
            ("empty", String::new(), Err(TokenError::Malformed)),
            ("four parts", "a.b.c.d".to_owned(), Err(TokenError::Malformed)),
            ("8 KB of junk", "x".repeat(8 * 1024), Err(TokenError::Malformed)),
            ("too long", format!("{}.{}.{}", "e".repeat(10), "e".repeat(MAX_TOKEN_BYTES), "e"), Err(TokenError::Malformed)),
        ];
        // Tampering: a valid token with its payload replaced keeps the old signature.
        let valid = testkeys::sign(a, Some("a"), &good);
        let forged_payload = URL_SAFE_NO_PAD.encode(with(&|c| c["scopes"] = serde_json::json!(["everything"])).to_string());
        let mut parts: Vec<&str> = valid.split('.').collect();
        parts[1] = &forged_payload;
        v.push(("payload swapped", parts.join("."), Err(TokenError::BadSignature)));
        let mut truncated = valid.clone();
        truncated.truncate(valid.len() - 4);
        v.push(("signature truncated", truncated, Err(TokenError::Malformed)));
        let (input, sig) = valid.rsplit_once('.').unwrap();
        let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        sig[100] ^= 1;
        v.push(("signature bit flipped", format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig)), Err(TokenError::BadSignature)));
        sig.truncate(sig.len() - 1);
        v.push(("signature one byte short", format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig)), Err(TokenError::BadSignature)));
        v
    }

    #[test]
    fn every_rule_on_both_backends_with_identical_verdicts() {
        let rsa = ring(RsaBackend::Rsa);
        let js = ring(RsaBackend::JwtSimple);
        for (name, token, want) in corpus() {
            let got_rsa = verify(&token, &rsa, &rules());
            let got_js = verify(&token, &js, &rules());
            assert_eq!(got_rsa.as_ref().map(|_| ()).map_err(|e| *e), want, "{name} (rsa)");
            assert_eq!(got_rsa, got_js, "{name}: backends disagree");
        }
    }

    #[test]
    fn verified_claims_and_source_are_returned() {
        let token = testkeys::sign(testkeys::GITLAB_A_PEM, Some("a"), &testkeys::instance_claims());
        let v = verify(&token, &ring(RsaBackend::Rsa), &rules()).unwrap();
        assert_eq!(v.source, "gitlab");
        assert_eq!(v.claims.sub.as_deref(), Some(testkeys::INSTANCE_ID));
        assert_eq!(v.claims.gitlab_realm.as_deref(), Some("self-managed"));
        assert!(v.claims.scopes.iter().any(|s| s == "complete_code"));
    }

    #[test]
    fn empty_ring_refuses_everything() {
        let token = testkeys::sign(testkeys::GITLAB_A_PEM, Some("a"), &testkeys::instance_claims());
        assert_eq!(verify(&token, &KeyRing::default(), &rules()), Err(TokenError::UnknownKid));
        let one = PreparedKey::from_stored(
            &crate::keys::parse_jwks(serde_json::json!({"keys": [testkeys::jwk(testkeys::GITLAB_B_PEM, "a")]}).to_string().as_bytes())
                .unwrap()[0],
            "gitlab",
            RsaBackend::Rsa,
        )
        .unwrap();
        assert_eq!(verify(&token, &KeyRing::single(one), &rules()), Err(TokenError::BadSignature));
    }

    #[test]
    fn time_rules_use_the_injected_clock() {
        let token = testkeys::sign(testkeys::GITLAB_A_PEM, Some("a"), &testkeys::instance_claims());
        let r = ring(RsaBackend::Rsa);
        let at = |now| verify(&token, &r, &Rules { now, ..rules() }).map(|_| ());
        assert_eq!(at(NOW), Ok(()));
        assert_eq!(at(NOW + 3600 + 60), Ok(()));
        assert_eq!(at(NOW + 3600 + 61), Err(TokenError::Expired));
        assert_eq!(at(NOW - 5 - 61), Err(TokenError::NotYetValid));
    }
}
