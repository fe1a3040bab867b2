//! Metric names (proxy-wasm `define_metric`; Envoy shows them under `wasmcustom.`). Labels are
//! encoded as `.<tag>.<value>` segments, the convention the shipped `stats_tags` extract
//! (`.reason.` already; `.result.` needs a `result` tag regex next to them): the contract's
//! `duo_auth.requests{result}` is `duo_auth.requests.result.<result>`, and
//! `duo_auth.denied{reason}` is `duo_auth.denied.reason.<reason>`.

/// `duo_auth.requests.result.<result>`, result in [`RESULTS`].
pub const RESULTS: [&str; 4] = ["ok", "public", "bypass", "denied"];

/// `duo_auth.denied.reason.<reason>`, every reason duo_auth gives.
pub const REASONS: [&str; 22] = [
    "missing_authorization",
    "invalid_authorization_header",
    "invalid_authentication_type",
    "malformed_token",
    "algorithm_not_allowed",
    "unknown_kid",
    "bad_signature",
    "token_expired",
    "token_not_yet_valid",
    "wrong_audience",
    "wrong_issuer",
    "header_mismatch_realm",
    "header_mismatch_instance_id",
    "header_mismatch_global_user_id",
    "missing_scope",
    "user_token_not_allowed",
    "user_tokens_disabled",
    "missing_header",
    "keys_unavailable",
    "jwt_authn_no_verdict",
    "token_issue_failed",
    "internal_error",
];

/// Counters about the key sets: `duo_auth.jwks.fetch_ok`, `.fetch_failed`, `.kid_refetch`.
pub const JWKS_COUNTERS: [&str; 3] = ["duo_auth.jwks.fetch_ok", "duo_auth.jwks.fetch_failed", "duo_auth.jwks.kid_refetch"];

/// Counters of the user-token cache: hits and misses.
pub const CACHE_COUNTERS: [&str; 2] = ["duo_auth.user_token_cache.hit", "duo_auth.user_token_cache.miss"];

pub fn request_metric(result: &str) -> String {
    format!("duo_auth.requests.result.{result}")
}

pub fn denial_metric(reason: &str) -> String {
    format!("duo_auth.denied.reason.{reason}")
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::token::TokenError;

    #[test]
    fn every_token_reason_has_a_metric() {
        for e in [
            TokenError::Malformed,
            TokenError::AlgorithmNotAllowed,
            TokenError::UnknownKid,
            TokenError::BadSignature,
            TokenError::Expired,
            TokenError::NotYetValid,
            TokenError::WrongAudience,
        ] {
            assert!(REASONS.contains(&e.reason()), "{}", e.reason());
        }
        assert_eq!(denial_metric("token_expired"), "duo_auth.denied.reason.token_expired");
        assert_eq!(request_metric("ok"), "duo_auth.requests.result.ok");
    }
}
