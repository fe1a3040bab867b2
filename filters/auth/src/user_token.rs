//! User access tokens: issued by duo_auth for the IDE's direct
//! completions, signed with `user_tokens.signing_key_pem` (RS256, `iss` = `aud` =
//! `gitlab-ai-gateway`), verified with the same key, and cached per worker by a hash of the token.

use crate::keys::{PreparedKey, RsaBackend};
use crate::token::{Claims, GITLAB_AI_GATEWAY};
use jwt_simple::algorithms::{RS256KeyPair, RSAKeyPairLike};
use jwt_simple::claims::{Audiences, JWTClaims};
use jwt_simple::prelude::Duration;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet, VecDeque};

/// The `kid` of duo_auth's own signing key (the name GitLab's Python gateway uses for it).
pub(crate) const USER_TOKEN_KID: &str = "gitlab_ai_gateway_signing_key";
/// Key-source name of user tokens in the hand-off and logs.
pub(crate) const USER_TOKEN_SOURCE: &str = "user_tokens";
/// The scopes a user token may carry (the caller's scopes are intersected with these).
pub(crate) const USER_TOKEN_SCOPES: [&str; 2] = ["complete_code", "ai_gateway_model_provider_proxy"];

pub struct UserTokenIssuer {
    key: RS256KeyPair,
}

#[derive(Serialize)]
struct UserClaims<'a> {
    gitlab_realm: &'a str,
    gitlab_instance_id: &'a str,
    scopes: Vec<String>,
}

/// What a user token is minted from (the caller's verified claims and its headers).
#[derive(Clone, Debug)]
pub struct IssueRequest<'a> {
    pub global_user_id: &'a str,
    pub instance_id: &'a str,
    pub realm: &'a str,
    pub caller_scopes: &'a [String],
    pub now: u64,
    pub ttl_s: u64,
    /// A fresh unique id (uuid4 text).
    pub jti: &'a str,
}

impl UserTokenIssuer {
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let key = RS256KeyPair::from_pem(pem).map_err(|e| format!("not a usable RSA private key (PEM, 2048-4096 bits): {e}"))?;
        Ok(Self { key: key.with_key_id(USER_TOKEN_KID) })
    }

    /// The public half, prepared like any JWKS key.
    pub fn prepared_public_key(&self, backend: RsaBackend) -> Result<PreparedKey, String> {
        let c = self.key.public_key().to_components();
        PreparedKey::from_components(&c.n, &c.e, Some(USER_TOKEN_KID.to_owned()), USER_TOKEN_SOURCE, backend)
    }

    /// Signs a user token; returns it with its expiry (unix seconds).
    pub fn issue(&self, req: &IssueRequest<'_>) -> Result<(String, u64), String> {
        let scopes: Vec<String> = req.caller_scopes.iter().filter(|s| USER_TOKEN_SCOPES.contains(&s.as_str())).cloned().collect();
        let expires_at = req.now + req.ttl_s;
        let mut audiences = HashSet::new();
        audiences.insert(GITLAB_AI_GATEWAY.to_owned());
        let claims = JWTClaims {
            issued_at: Some(Duration::from_secs(req.now)),
            expires_at: Some(Duration::from_secs(expires_at)),
            invalid_before: Some(Duration::from_secs(req.now)),
            issuer: Some(GITLAB_AI_GATEWAY.to_owned()),
            subject: Some(req.global_user_id.to_owned()),
            audiences: Some(Audiences::AsSet(audiences)),
            jwt_id: Some(req.jti.to_owned()),
            nonce: None,
            custom: UserClaims { gitlab_realm: req.realm, gitlab_instance_id: req.instance_id, scopes },
        };
        let token = self.key.sign(claims).map_err(|e| format!("Failed to generate JWT: {e}"))?;
        Ok((token, expires_at))
    }
}

/// Formats 16 random bytes as a version-4 UUID.
pub(crate) fn uuid4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// Verified user tokens, keyed by SHA-256 of the token, bounded, never served past `exp`.
pub struct TokenCache {
    capacity: usize,
    entries: HashMap<[u8; 32], (Claims, u64)>,
    order: VecDeque<[u8; 32]>,
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), entries: HashMap::new(), order: VecDeque::new() }
    }

    fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The claims of a token verified before, if it has not expired (`now <= exp`).
    pub fn get(&mut self, token: &str, now: u64) -> Option<&Claims> {
        let key = Self::key(token);
        let fresh = self.entries.get(&key).map(|(_, exp)| now <= *exp)?;
        if !fresh {
            self.entries.remove(&key);
            return None;
        }
        self.entries.get(&key).map(|(c, _)| c)
    }

    /// Remembers a verified token until `exp`. When full, expired entries go first, then the oldest.
    pub fn insert(&mut self, token: &str, claims: Claims, exp: u64, now: u64) {
        if now > exp {
            return;
        }
        let key = Self::key(token);
        if let std::collections::hash_map::Entry::Occupied(mut e) = self.entries.entry(key) {
            e.insert((claims, exp));
            return;
        }
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, (_, e)| now <= *e);
            self.order.retain(|k| self.entries.contains_key(k));
            while self.entries.len() >= self.capacity {
                let Some(oldest) = self.order.pop_front() else { break };
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key, (claims, exp));
        self.order.push_back(key);
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::keys::KeyRing;
    use crate::testkeys::{self, NOW};
    use crate::token::{Rules, TokenError, verify};

    fn issuer() -> UserTokenIssuer {
        UserTokenIssuer::from_pem(testkeys::USER_PEM).unwrap()
    }

    #[test]
    fn issued_tokens_carry_gitlab_claims_and_verify_with_both_backends() {
        let scopes = vec!["complete_code".to_owned(), "duo_chat".to_owned(), "generate_code".to_owned()];
        let req = IssueRequest {
            global_user_id: "Df0Jhs9x=",
            instance_id: testkeys::INSTANCE_ID,
            realm: "self-managed",
            caller_scopes: &scopes,
            now: NOW,
            ttl_s: 3600,
            jti: "0099dd6c-b66e-4787-8ae2-c451d86025ae",
        };
        let (token, exp) = issuer().issue(&req).unwrap();
        assert_eq!(exp, NOW + 3600);
        for backend in [RsaBackend::Rsa, RsaBackend::JwtSimple] {
            let ring = KeyRing::single(issuer().prepared_public_key(backend).unwrap());
            let v = verify(&token, &ring, &Rules { audience: GITLAB_AI_GATEWAY, clock_skew_s: 0, now: NOW }).unwrap();
            assert_eq!(v.source, USER_TOKEN_SOURCE);
            let c = v.claims;
            assert_eq!(c.iss.as_deref(), Some("gitlab-ai-gateway"));
            assert_eq!(c.sub.as_deref(), Some("Df0Jhs9x="));
            assert_eq!((c.iat, c.nbf, c.exp), (Some(NOW as f64), Some(NOW as f64), Some((NOW + 3600) as f64)));
            assert_eq!(c.gitlab_realm.as_deref(), Some("self-managed"));
            assert_eq!(c.gitlab_instance_id.as_deref(), Some(testkeys::INSTANCE_ID));
            assert_eq!(c.jti.as_deref(), Some("0099dd6c-b66e-4787-8ae2-c451d86025ae"));
            assert_eq!(c.scopes, vec!["complete_code".to_owned()]);
            let late = Rules { audience: GITLAB_AI_GATEWAY, clock_skew_s: 0, now: NOW + 3601 };
            assert_eq!(verify(&token, &ring, &late).map(|_| ()), Err(TokenError::Expired));
        }
        let header = testkeys::header_of(&token);
        assert_eq!(header["kid"], USER_TOKEN_KID);
        assert_eq!(header["alg"], "RS256");
    }

    #[test]
    fn uuid4_has_the_version_bits() {
        let u = uuid4([0xff; 16]);
        assert_eq!(u, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(uuid4([0; 16]), "00000000-0000-4000-8000-000000000000");
    }

    #[test]
    fn cache_is_bounded_and_never_serves_past_exp() {
        let mut cache = TokenCache::new(2);
        let claims = |sub: &str| Claims { sub: Some(sub.to_owned()), ..Default::default() };
        cache.insert("t1", claims("1"), NOW + 10, NOW);
        cache.insert("t2", claims("2"), NOW + 100, NOW);
        assert_eq!(cache.get("t1", NOW + 10).and_then(|c| c.sub.clone()).as_deref(), Some("1"));
        assert!(cache.get("t1", NOW + 11).is_none(), "served past exp");
        assert_eq!(cache.len(), 1, "expired entry dropped on read");
        cache.insert("t3", claims("3"), NOW + 100, NOW);
        cache.insert("t4", claims("4"), NOW + 100, NOW);
        assert_eq!(cache.len(), 2);
        assert!(cache.get("t2", NOW).is_none(), "oldest evicted");
        assert!(cache.get("t3", NOW).is_some() && cache.get("t4", NOW).is_some());
        cache.insert("t5", claims("5"), NOW - 1, NOW);
        assert!(cache.get("t5", NOW - 2).is_none(), "already-expired tokens are not cached");
        assert!(cache.get("other", NOW).is_none());
    }
}
