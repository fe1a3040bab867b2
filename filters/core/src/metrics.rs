//! Metric names. proxy-wasm metrics carry no labels, so every label lives in the name as a
//! `.<tag>.<value>` pair after the base name (`duo_auth.requests.result.ok`); the shipped
//! bootstraps' `stats_config.stats_tags` hold one regex per tag in [`TAGS`], which turns each
//! pair into a label. Envoy puts wasm metrics under `wasmcustom.` and drops that namespace in
//! `/stats/prometheus`, so the example is exported as `duo_auth_requests{result="ok"}`.

/// Every tag a filter puts in a metric name. Each needs its `stats_tags` regex
/// `^wasmcustom\..*?(\.<tag>\.([^.]+))` in every shipped bootstrap (tested below), or
/// Prometheus sees the pair as part of the metric name.
pub const TAGS: &[&str] = &["feature", "model", "outcome", "reason", "result", "provider", "status_class", "grpc_method", "grpc_status"];

/// Longest tag value kept, in bytes.
pub const MAX_TAG_VALUE: usize = 64;

/// Makes a value safe as one stat-name segment: lower-case `[a-z0-9_-]` (anything else becomes
/// `_`, so a `.` cannot start a new segment), at most [`MAX_TAG_VALUE`] bytes, `none` if empty.
pub fn tag_value(raw: &str) -> String {
    let mut out: String = raw
        .chars()
        .take(MAX_TAG_VALUE)
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c.to_ascii_lowercase() } else { '_' })
        .collect();
    if out.is_empty() {
        out.push_str("none");
    }
    out
}

/// `base.tag1.value1.tag2.value2`, each value passed through [`tag_value`].
pub fn metric_name(base: &str, tags: &[(&str, &str)]) -> String {
    let mut name = base.to_owned();
    for (tag, value) in tags {
        name.push('.');
        name.push_str(tag);
        name.push('.');
        name.push_str(&tag_value(value));
    }
    name
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn tag_values_are_single_safe_segments() {
        assert_eq!(tag_value("code_completions"), "code_completions");
        assert_eq!(tag_value("llama3.1:70B"), "llama3_1_70b");
        assert_eq!(tag_value("Header mismatch 'X-Gitlab-Instance-Id'"), "header_mismatch__x-gitlab-instance-id_");
        assert_eq!(tag_value(""), "none");
        assert_eq!(tag_value(&"é".repeat(100)).len(), 64);
    }

    #[test]
    fn names_carry_tag_value_pairs() {
        assert_eq!(metric_name("duo_auth.requests", &[("result", "ok")]), "duo_auth.requests.result.ok");
        assert_eq!(
            metric_name("duo_requests_total", &[("feature", "duo_chat"), ("outcome", "server_error")]),
            "duo_requests_total.feature.duo_chat.outcome.server_error"
        );
        assert_eq!(metric_name("duo_router.upstream", &[("status_class", "5xx")]), "duo_router.upstream.status_class.5xx");
        assert_eq!(metric_name("duo_auth.jwks.kid_refetch", &[]), "duo_auth.jwks.kid_refetch");
    }

    /// Every shipped bootstrap extracts every tag, with the one regex shape.
    #[test]
    fn shipped_bootstraps_extract_every_tag() {
        let bootstraps = [
            ("envoy/self_hosted.yaml", include_str!("../../../envoy/self_hosted.yaml")),
            ("envoy/hybrid.yaml", include_str!("../../../envoy/hybrid.yaml")),
            ("envoy/gitlab_com.yaml", include_str!("../../../envoy/gitlab_com.yaml")),
            ("envoy/local.yaml", include_str!("../../../envoy/local.yaml")),
            ("examples/embed/envoy.yaml", include_str!("../../../examples/embed/envoy.yaml")),
            ("examples/production/envoy.yaml.tmpl", include_str!("../../../examples/production/envoy.yaml.tmpl")),
        ];
        for (file, text) in bootstraps {
            for tag in TAGS {
                let regex = format!(r"^wasmcustom\..*?(\.{tag}\.([^.]+))");
                // `- {tag_name: t, regex: '...'}` on one line, or `- tag_name: t` then `regex: ...`.
                let lines: Vec<&str> = text.lines().collect();
                let found = lines.iter().enumerate().any(|(i, l)| {
                    let named = l.contains(&format!("tag_name: {tag},")) || l.trim_end().ends_with(&format!("tag_name: {tag}"));
                    named && (l.contains(&regex) || lines.get(i + 1).is_some_and(|next| next.contains(&regex)))
                });
                assert!(found, "{file}: no stats_tags entry {regex} for `{tag}`");
            }
        }
    }
}
