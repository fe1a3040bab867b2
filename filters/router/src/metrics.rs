//! duo_router's metric names, `.<tag>.<value>` pairs after the base name (`duo_core::metrics`),
//! so Prometheus gets labels from the shipped `stats_tags`.

use duo_core::metrics::metric_name;

/// Every request the router saw.
pub const REQUESTS: &str = "duo_router.requests";
/// Requests the body watchdog answered (`allow_on_headers_stop_iteration` missing).
pub const BODY_NEVER_ARRIVED: &str = "duo_router.body_never_arrived";
/// Updates past [`MAX_NAMES`].
pub const DROPPED: &str = "duo_router.metrics_dropped";
/// Distinct names one VM defines at most: features × providers, reasons, status classes fit
/// many times over.
pub const MAX_NAMES: usize = 512;

/// `duo_router.routed.provider.<p>.feature.<f>`: forwarded requests (`feature` is `model_check`
/// for the admin's "Test connection", `public` for model definitions).
pub fn routed(provider: &str, feature: &str) -> String {
    metric_name("duo_router.routed", &[("provider", provider), ("feature", feature)])
}

/// `duo_router.refused.reason.<r>`: local replies (reasons in `decide::Reason::name`).
pub fn refused(reason: &str) -> String {
    metric_name("duo_router.refused", &[("reason", reason)])
}

/// `duo_router.upstream.provider.<p>.status_class.<N>xx`: upstream answers by status class.
pub fn upstream(provider: &str, status: u32) -> String {
    // A static class: formatting one per answer cost more than the rest of the name.
    let class = match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "other",
    };
    metric_name("duo_router.upstream", &[("provider", provider), ("status_class", class)])
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn names_carry_their_labels_as_tag_value_pairs() {
        assert_eq!(routed("self_hosted", "duo_chat_explain_code"), "duo_router.routed.provider.self_hosted.feature.duo_chat_explain_code");
        assert_eq!(refused("unknown_model"), "duo_router.refused.reason.unknown_model");
        assert_eq!(upstream("self_hosted", 503), "duo_router.upstream.provider.self_hosted.status_class.5xx");
        // a value can never open a new segment
        assert_eq!(refused("a.b"), "duo_router.refused.reason.a_b");
    }
}
