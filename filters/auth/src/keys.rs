//! Signing keys: JWKS parsing, the key set shared by all Envoy workers (shared data, JSON), and
//! keys prepared once for verification behind one small interface ([`SignatureCheck`]), so the
//! RSA implementation can be swapped without touching the JWT rules.
//!
//! Two implementations sit behind it and must give identical verdicts (tested):
//! - [`RsaBackend::JwtSimple`]: jwt-simple 0.15's own RS256 verification (`rsa` 0.9 underneath);
//! - [`RsaBackend::Rsa`] (default): `rsa` 0.10 on `crypto-bigint` (fixed-width Montgomery
//!   arithmetic), a `VerifyingKey<Sha256>` built once per JWK when the set loads.
//!
//! Every key is imported through jwt-simple first, so both backends accept exactly the same keys
//! (RSA 2048–4096 bits, e = 65537).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_simple::algorithms::{RS256PublicKey, RSAPublicKeyLike};
use jwt_simple::common::VerificationOptions;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RsaBackend {
    /// `rsa` 0.10 / crypto-bigint, keys prepared once (fast).
    #[default]
    Rsa,
    /// jwt-simple's own RS256 verification.
    JwtSimple,
}

/// A compact JWS split once: what a signature check needs.
pub(crate) struct Compact<'a> {
    pub(crate) token: &'a str,
    pub(crate) signing_input: &'a str,
    pub(crate) signature: &'a [u8],
}

/// The one interface an RSA implementation has to offer.
pub(crate) trait SignatureCheck {
    /// RSASSA-PKCS1-v1_5 with SHA-256 over `signing_input`.
    fn verify(&self, compact: &Compact<'_>) -> bool;
}

struct JwtSimpleCheck(RS256PublicKey);

impl SignatureCheck for JwtSimpleCheck {
    fn verify(&self, compact: &Compact<'_>) -> bool {
        // Only the signature is judged here: time and audience rules live in `token::verify`, the
        // same for both backends. With a fixed clock at 0 and no tolerance, jwt-simple's own
        // time checks cannot fail.
        let options = VerificationOptions {
            accept_future: true,
            time_tolerance: Some(jwt_simple::prelude::Duration::from_secs(0)),
            artificial_time: Some(jwt_simple::prelude::Duration::from_secs(0)),
            max_token_length: None,
            ..Default::default()
        };
        self.0.verify_token::<serde_json::Value>(compact.token, Some(options)).is_ok()
    }
}

struct RsaCheck(rsa::pkcs1v15::VerifyingKey<rsa::sha2::Sha256>);

impl SignatureCheck for RsaCheck {
    fn verify(&self, compact: &Compact<'_>) -> bool {
        use rsa::signature::Verifier;
        let Ok(signature) = rsa::pkcs1v15::Signature::try_from(compact.signature) else {
            return false;
        };
        self.0.verify(compact.signing_input.as_bytes(), &signature).is_ok()
    }
}

/// A key ready to verify, with where it came from.
pub struct PreparedKey {
    pub(crate) kid: Option<String>,
    /// The `jwks_sources` name, or `user_tokens` for duo_auth's own key.
    pub(crate) source: String,
    check: Box<dyn SignatureCheck>,
}

impl PreparedKey {
    /// Imports an RSA public key from its big-endian modulus and exponent.
    pub fn from_components(n: &[u8], e: &[u8], kid: Option<String>, source: &str, backend: RsaBackend) -> Result<Self, String> {
        // jwt-simple's import applies the key policy for both backends.
        let key = RS256PublicKey::from_components(n, e).map_err(|err| format!("unusable RSA key: {err}"))?;
        let check: Box<dyn SignatureCheck> = match backend {
            RsaBackend::JwtSimple => Box::new(JwtSimpleCheck(key)),
            RsaBackend::Rsa => {
                let n = rsa::BoxedUint::from_be_slice_vartime(n);
                let e = rsa::BoxedUint::from_be_slice_vartime(e);
                let public = rsa::PublicKey::new(n, e).map_err(|err| format!("unusable RSA key: {err}"))?;
                Box::new(RsaCheck(rsa::pkcs1v15::VerifyingKey::<rsa::sha2::Sha256>::new(public)))
            }
        };
        Ok(Self { kid, source: source.to_owned(), check })
    }

    /// Imports an RSA public key written as PEM (SubjectPublicKeyInfo or PKCS#1), with no `kid`.
    pub(crate) fn from_pem(pem: &str, source: &str, backend: RsaBackend) -> Result<Self, String> {
        let key = RS256PublicKey::from_pem(pem.trim()).map_err(|e| format!("not an RSA public key in PEM: {e}"))?;
        let c = key.to_components();
        Self::from_components(&c.n, &c.e, None, source, backend)
    }

    pub(crate) fn from_stored(key: &StoredKey, source: &str, backend: RsaBackend) -> Result<Self, String> {
        let n = URL_SAFE_NO_PAD.decode(key.n.trim_end_matches('=')).map_err(|_| "bad base64url in n".to_owned())?;
        let e = URL_SAFE_NO_PAD.decode(key.e.trim_end_matches('=')).map_err(|_| "bad base64url in e".to_owned())?;
        Self::from_components(&n, &e, key.kid.clone(), source, backend)
    }

    pub(crate) fn verify(&self, compact: &Compact<'_>) -> bool {
        self.check.verify(compact)
    }
}

/// One RSA signing key as stored in shared data (the JWK's public members we use).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) kid: Option<String>,
    pub(crate) n: String,
    pub(crate) e: String,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
}

/// The RS256-usable keys of a JWKS document. Keys of other types or algorithms (EC, `enc` keys,
/// RS512...) are skipped; a document with no usable key is an error (the last good set stays).
pub fn parse_jwks(body: &[u8]) -> Result<Vec<StoredKey>, String> {
    let doc: Jwks = serde_json::from_slice(body).map_err(|e| format!("JWKS is not valid JSON: {e}"))?;
    let mut out = Vec::new();
    for value in doc.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else { continue };
        if jwk.kty != "RSA" || jwk.alg.as_deref().is_some_and(|a| a != "RS256") || jwk.use_.as_deref().is_some_and(|u| u != "sig") {
            continue;
        }
        let (Some(n), Some(e)) = (jwk.n, jwk.e) else { continue };
        let key = StoredKey { kid: jwk.kid, n, e };
        // Drop keys that do not import (weak, malformed) now rather than on every request.
        if PreparedKey::from_stored(&key, "check", RsaBackend::JwtSimple).is_err() {
            continue;
        }
        out.push(key);
    }
    if out.is_empty() {
        return Err("JWKS has no usable RS256 key".to_owned());
    }
    Ok(out)
}

/// The path of `jwks_uri` from an OIDC discovery document (fetched from the same cluster).
pub fn parse_discovery(body: &[u8]) -> Result<String, String> {
    #[derive(Deserialize)]
    struct Discovery {
        jwks_uri: String,
    }
    let doc: Discovery = serde_json::from_slice(body).map_err(|e| format!("discovery document without jwks_uri: {e}"))?;
    uri_path(&doc.jwks_uri).ok_or_else(|| "jwks_uri is not an absolute URL or path".to_owned())
}

/// `https://host[:port]/p?q` -> `/p?q`; `/p` stays.
fn uri_path(uri: &str) -> Option<String> {
    if uri.starts_with('/') {
        return Some(uri.to_owned());
    }
    let rest = uri.strip_prefix("https://").or_else(|| uri.strip_prefix("http://"))?;
    let slash = rest.find('/')?;
    let path = &rest[slash..];
    let path = path.split('#').next().unwrap_or(path);
    Some(path.to_owned())
}

/// What all workers share: every source's last good keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedKeys {
    #[serde(default)]
    pub(crate) sources: BTreeMap<String, SourceKeys>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SourceKeys {
    pub(crate) keys: Vec<StoredKey>,
    /// Unix seconds of the last successful fetch.
    pub(crate) fetched_at: u64,
}

impl SharedKeys {
    pub fn decode(bytes: Option<&[u8]>) -> SharedKeys {
        bytes.and_then(|b| serde_json::from_slice(b).ok()).unwrap_or_default()
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Replaces one source's keys (a successful fetch).
    pub fn with_source(mut self, source: &str, keys: Vec<StoredKey>, now: u64) -> SharedKeys {
        self.sources.insert(source.to_owned(), SourceKeys { keys, fetched_at: now });
        self
    }

    pub(crate) fn fetched_at(&self, source: &str) -> Option<u64> {
        self.sources.get(source).map(|s| s.fetched_at)
    }

    /// Prepares every key once (per VM, per version of the shared set). Keys of sources that are
    /// no longer configured are ignored.
    pub fn prepare(&self, configured: &[&str], backend: RsaBackend) -> KeyRing {
        let mut keys = Vec::new();
        for (name, source) in &self.sources {
            if !configured.contains(&name.as_str()) {
                continue;
            }
            for k in &source.keys {
                if let Ok(p) = PreparedKey::from_stored(k, name, backend) {
                    keys.push(p);
                }
            }
        }
        let missing: Vec<String> = configured.iter().filter(|c| !self.sources.contains_key(**c)).map(|c| (*c).to_owned()).collect();
        KeyRing { keys, loaded: missing.len() < configured.len(), missing }
    }
}

/// Prepared keys of every source.
#[derive(Default)]
pub struct KeyRing {
    pub(crate) keys: Vec<PreparedKey>,
    /// At least one source has answered once.
    pub(crate) loaded: bool,
    /// Configured sources that never answered (the gateway is not ready while any is listed).
    pub(crate) missing: Vec<String>,
}

impl KeyRing {
    #[cfg(test)]
    pub(crate) fn single(key: PreparedKey) -> KeyRing {
        KeyRing { keys: vec![key], loaded: true, missing: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::testkeys;

    #[test]
    fn jwks_keeps_only_rs256_signing_keys() {
        let a = testkeys::jwk(testkeys::GITLAB_A_PEM, "a");
        let mut enc = testkeys::jwk(testkeys::GITLAB_B_PEM, "enc");
        enc["use"] = "enc".into();
        let mut rs512 = testkeys::jwk(testkeys::GITLAB_B_PEM, "rs512");
        rs512["alg"] = "RS512".into();
        let ec = serde_json::json!({"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"});
        let weak = testkeys::weak_jwk("weak");
        let doc = serde_json::json!({"keys": [a, enc, rs512, ec, weak, {"junk": true}]});
        let keys = parse_jwks(doc.to_string().as_bytes()).unwrap();
        assert_eq!(keys.iter().map(|k| k.kid.clone().unwrap()).collect::<Vec<_>>(), vec!["a"]);
        assert!(parse_jwks(br#"{"keys": []}"#).is_err());
        assert!(parse_jwks(b"<html>").is_err());
    }

    #[test]
    fn discovery_gives_the_jwks_path() {
        let body = br#"{"issuer": "https://gitlab.example.com", "jwks_uri": "https://gitlab.example.com/oauth/discovery/keys"}"#;
        assert_eq!(parse_discovery(body).unwrap(), "/oauth/discovery/keys");
        assert_eq!(parse_discovery(br#"{"jwks_uri": "http://h:8080/-/jwks?x=1"}"#).unwrap(), "/-/jwks?x=1");
        assert!(parse_discovery(br#"{"issuer": "x"}"#).is_err());
        assert!(parse_discovery(br#"{"jwks_uri": "ftp://h/x"}"#).is_err());
    }

    #[test]
    fn shared_keys_round_trip_and_prepare_only_configured_sources() {
        let keys = parse_jwks(serde_json::json!({"keys": [testkeys::jwk(testkeys::GITLAB_A_PEM, "a")]}).to_string().as_bytes()).unwrap();
        let shared = SharedKeys::default().with_source("gitlab", keys.clone(), 100).with_source("old", keys, 50);
        let back = SharedKeys::decode(Some(&shared.encode()));
        assert_eq!(back, shared);
        assert_eq!(back.fetched_at("gitlab"), Some(100));
        let ring = back.prepare(&["gitlab"], RsaBackend::Rsa);
        assert!(ring.loaded);
        assert_eq!(ring.keys.len(), 1);
        assert_eq!(ring.keys[0].source, "gitlab");
        assert!(ring.missing.is_empty());
        let partial = shared.prepare(&["gitlab", "customersdot"], RsaBackend::Rsa);
        assert!(partial.loaded);
        assert_eq!(partial.missing, vec!["customersdot"]);
        assert!(!SharedKeys::decode(None).prepare(&["gitlab"], RsaBackend::Rsa).loaded);
        assert!(!SharedKeys::decode(Some(b"garbage")).prepare(&["gitlab"], RsaBackend::Rsa).loaded);
    }
}
