//! Ingress keys for the OpenAI-compatible model ingress (`/v1/chat/completions`,
//! `/v1/models`): callers send `Authorization: Bearer <key>`; the config holds only each key's
//! SHA-256. The presented key's digest is compared with every configured digest in constant
//! time, so neither which key matched nor how much of a digest matched shows in the timing.
//! GitLab's JWTs are not accepted on these paths.

use duo_core::config::ConfigError;
use duo_core::errors::GitlabError;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// One `ingress_keys` entry as written.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIngressKey {
    pub(crate) name: String,
    /// Lower- or upper-case hex SHA-256 of the key (`printf %s "$KEY" | sha256sum`).
    pub(crate) sha256: String,
}

/// A configured key: its name (logged) and digest.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct IngressKey {
    pub(crate) name: String,
    digest: [u8; 32],
}

impl std::fmt::Debug for IngressKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngressKey").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Validates `ingress_keys`: names as every config name, 64 hex digits, no name or digest twice.
pub(crate) fn compile(raw: &[RawIngressKey]) -> Result<Vec<IngressKey>, ConfigError> {
    let mut keys: Vec<IngressKey> = Vec::with_capacity(raw.len());
    for (i, k) in raw.iter().enumerate() {
        let at = |field: &str| format!("ingress_keys[{i}].{field}");
        duo_core::validate::check_key(&at("name"), &k.name)?;
        let digest = hex32(&k.sha256).ok_or_else(|| ConfigError::new(at("sha256"), "must be the key's SHA-256 as 64 hex digits (never the key itself)"))?;
        if keys.iter().any(|o| o.name == k.name) {
            return Err(ConfigError::new(at("name"), format!("`{}` is used twice", k.name)));
        }
        if keys.iter().any(|o| o.digest == digest) {
            return Err(ConfigError::new(at("sha256"), "the same key is listed twice"));
        }
        keys.push(IngressKey { name: k.name.clone(), digest });
    }
    Ok(keys)
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// Why a call to the ingress was refused (also the metric and log reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    MissingKey,
    UnknownKey,
}

impl Refusal {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::MissingKey => "missing_ingress_key",
            Refusal::UnknownKey => "unknown_ingress_key",
        }
    }

    /// OpenAI's 401 shape: the ingress's clients are OpenAI clients.
    pub(crate) fn reply(self) -> GitlabError {
        let message = match self {
            Refusal::MissingKey => "No API key provided: send `Authorization: Bearer <ingress key>`",
            Refusal::UnknownKey => "Incorrect API key provided",
        };
        let body = serde_json::json!({"error": {"message": message, "type": "authentication_error", "param": null, "code": "invalid_api_key"}});
        GitlabError { status: 401, body: body.to_string() }
    }
}

/// The name of the key `authorization` carries, if it is one of `keys`.
pub(crate) fn authenticate<'k>(keys: &'k [IngressKey], authorization: Option<&str>) -> Result<&'k str, Refusal> {
    let presented = authorization
        .map(str::trim)
        .and_then(|a| a.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .filter(|k| !k.is_empty())
        .ok_or(Refusal::MissingKey)?;
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    // Every digest is compared, whatever matched first.
    let mut found: Option<&'k str> = None;
    for k in keys {
        if bool::from(k.digest.ct_eq(&digest)) {
            found = Some(&k.name);
        }
    }
    found.ok_or(Refusal::UnknownKey)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn sha(key: &str) -> String {
        Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }

    fn keys() -> Vec<IngressKey> {
        compile(&[
            RawIngressKey { name: "dws".into(), sha256: sha("sk-dws-1") },
            RawIngressKey { name: "ci-bot".into(), sha256: sha("sk-ci-2").to_uppercase() },
        ])
        .unwrap()
    }

    #[test]
    fn a_listed_key_is_known_by_name_anything_else_is_401() {
        let k = keys();
        assert_eq!(authenticate(&k, Some("Bearer sk-dws-1")), Ok("dws"));
        assert_eq!(authenticate(&k, Some("bearer  sk-ci-2 ")), Ok("ci-bot"));
        assert_eq!(authenticate(&k, Some("Bearer sk-dws-2")), Err(Refusal::UnknownKey));
        assert_eq!(authenticate(&k, None), Err(Refusal::MissingKey));
        assert_eq!(authenticate(&k, Some("Basic c2stZHdzLTE=")), Err(Refusal::MissingKey));
        assert_eq!(authenticate(&[], Some("Bearer sk-dws-1")), Err(Refusal::UnknownKey), "no keys: nobody gets in");
        // a digest is not a key
        assert_eq!(authenticate(&k, Some(&format!("Bearer {}", sha("sk-dws-1")))), Err(Refusal::UnknownKey));
        let r = Refusal::UnknownKey.reply();
        assert_eq!(r.status, 401);
        assert!(r.body.contains("\"type\":\"authentication_error\"") && r.body.contains("invalid_api_key"));
        assert!(!format!("{k:?}").contains(&sha("sk-dws-1")), "digests stay out of debug output");
    }

    #[test]
    fn bad_entries_name_the_field() {
        let e = compile(&[RawIngressKey { name: "a".into(), sha256: "sk-plain-key".into() }]).unwrap_err();
        assert_eq!(e.path, "ingress_keys[0].sha256");
        let e = compile(&[
            RawIngressKey { name: "a".into(), sha256: sha("x") },
            RawIngressKey { name: "a".into(), sha256: sha("y") },
        ])
        .unwrap_err();
        assert_eq!(e.path, "ingress_keys[1].name");
        let e = compile(&[
            RawIngressKey { name: "a".into(), sha256: sha("x") },
            RawIngressKey { name: "b".into(), sha256: sha("x") },
        ])
        .unwrap_err();
        assert_eq!(e.path, "ingress_keys[1].sha256");
        assert!(compile(&[RawIngressKey { name: "bad name".into(), sha256: sha("x") }]).is_err());
    }
}
