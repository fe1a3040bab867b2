//! Metric names (proxy-wasm `define_metric`; Envoy shows them under `wasmcustom.`). Labels are
//! `.<tag>.<value>` pairs ([`duo_core::metrics`]), which the shipped `stats_tags` turn into
//! Prometheus labels: `duo_auth.requests.result.ok` is `duo_auth_requests{result="ok"}`.

use duo_core::metrics::metric_name;

/// `duo_auth.requests.result.<result>`: every request duo_auth decided: `ok`, `public`, `bypass`, `denied`.
pub(crate) const REQUESTS: &str = "duo_auth.requests";
/// `duo_auth.denied.reason.<reason>`: denials by reason (the list is in docs/auth.md).
pub(crate) const DENIED: &str = "duo_auth.denied";
/// `duo_auth.jwks.fetch.result.<ok|failed>`: key-set fetches (discovery then JWKS) that stored
/// keys, or failed (the last good keys stay).
pub(crate) const JWKS_FETCH: &str = "duo_auth.jwks.fetch";
/// `duo_auth.jwks.kid_refetch`: refetches an unknown `kid` started.
pub(crate) const KID_REFETCH: &str = "duo_auth.jwks.kid_refetch";
/// `duo_auth.jwks.kid_refetch_wait`: requests with an unknown `kid` that waited for a refetch
/// another request had started (a key rotation seen by several requests at once).
pub(crate) const KID_REFETCH_WAIT: &str = "duo_auth.jwks.kid_refetch_wait";
/// `duo_auth.user_token_cache.result.<hit|miss>`: lookups of verified user tokens.
pub(crate) const USER_TOKEN_CACHE: &str = "duo_auth.user_token_cache";
/// Updates dropped because [`MAX_NAMES`] names are defined (never expected: every name is in a
/// fixed list).
pub(crate) const DROPPED: &str = "duo_auth.metrics_dropped";
/// Distinct names one VM defines, with room to spare over the ~31 names listed here.
pub(crate) const MAX_NAMES: usize = 256;
/// The `result` values of [`REQUESTS`] (the tests hold the code to these lists).
#[cfg(test)]
pub(crate) const RESULTS: [&str; 4] = ["ok", "public", "bypass", "denied"];

/// The `reason` values of [`DENIED`]: every reason duo_auth gives.
#[cfg(test)]
pub(crate) const REASONS: [&str; 24] = [
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
    "missing_ingress_key",
    "unknown_ingress_key",
];

pub(crate) fn request(result: &str) -> String {
    metric_name(REQUESTS, &[("result", result)])
}

pub(crate) fn denial(reason: &str) -> String {
    metric_name(DENIED, &[("reason", reason)])
}

pub(crate) fn jwks_fetch(ok: bool) -> String {
    metric_name(JWKS_FETCH, &[("result", if ok { "ok" } else { "failed" })])
}

pub(crate) fn user_token_cache(hit: bool) -> String {
    metric_name(USER_TOKEN_CACHE, &[("result", if hit { "hit" } else { "miss" })])
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
        assert_eq!(denial("token_expired"), "duo_auth.denied.reason.token_expired");
        assert_eq!(request("ok"), "duo_auth.requests.result.ok");
        assert_eq!(jwks_fetch(true), "duo_auth.jwks.fetch.result.ok");
        assert_eq!(jwks_fetch(false), "duo_auth.jwks.fetch.result.failed");
        assert_eq!(user_token_cache(true), "duo_auth.user_token_cache.result.hit");
        assert_eq!(user_token_cache(false), "duo_auth.user_token_cache.result.miss");
        // Every name fits the cap: results x reasons are the only variable parts.
        assert!(RESULTS.len() + REASONS.len() + 2 + 2 + 2 < MAX_NAMES);
    }
}
