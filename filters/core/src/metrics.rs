//! Metric names. proxy-wasm metrics carry no labels, so every label lives in the name as a
//! `.<tag>.<value>` pair after the base name (`duo_auth.requests.result.ok`); the shipped
//! bootstraps' `stats_config.stats_tags` hold one regex per tag in [`TAGS`], which turns each
//! pair into a label. Envoy puts wasm metrics under `wasmcustom.` and drops that namespace in
//! `/stats/prometheus`, so the example is exported as `duo_auth_requests{result="ok"}`.

/// Every tag a filter puts in a metric name. Each needs its `stats_tags` regex
/// `^wasmcustom\..*?(\.<tag>\.([^.]+))` in every shipped bootstrap (tested below), or
/// Prometheus sees the pair as part of the metric name.
pub const TAGS: &[&str] = &[
    "feature",
    "model",
    "outcome",
    "reason",
    "result",
    "provider",
    "status_class",
    "grpc_method",
    "grpc_status",
    // OpenTelemetry GenAI attributes, with `_` for the dots a name segment cannot hold
    // (gen_ai.operation.name -> gen_ai_operation_name: the OpenTelemetry-to-Prometheus naming).
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_token_type",
    "error_type",
];

/// duo_logger's latency of every request, in milliseconds.
pub const REQUEST_DURATION: &str = "duo_request_duration_ms";
/// OpenTelemetry's `gen_ai.client.token.usage` ({token}, by `gen_ai.token.type`).
pub const GENAI_TOKEN_USAGE: &str = "gen_ai_client_token_usage";
/// OpenTelemetry's `gen_ai.client.operation.duration`, in milliseconds (proxy-wasm histograms
/// record integers: whole seconds would lose every sub-second difference).
pub const GENAI_OPERATION_DURATION: &str = "gen_ai_client_operation_duration_ms";
/// OpenTelemetry's `gen_ai.server.time_to_first_token`, in milliseconds.
pub const GENAI_TIME_TO_FIRST_TOKEN: &str = "gen_ai_server_time_to_first_token_ms";

/// OpenTelemetry's advised boundaries for `gen_ai.client.operation.duration` (0.01 s to 81.92 s,
/// doubling) in milliseconds, plus 163.84 s and 327.68 s for long streamed answers.
pub const DURATION_BUCKETS_MS: &[u64] = &[10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240, 20480, 40960, 81920, 163840, 327680];
/// OpenTelemetry's advised boundaries for `gen_ai.server.time_to_first_token` (1 ms to 10 s) in
/// milliseconds, plus 30 s and 60 s for cold models.
pub const TTFT_BUCKETS_MS: &[u64] = &[1, 5, 10, 20, 40, 60, 80, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000, 30000, 60000];
/// OpenTelemetry's advised boundaries for `gen_ai.client.token.usage` (powers of 4).
pub const TOKEN_BUCKETS: &[u64] =
    &[1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864];

/// Each histogram with the buckets every shipped bootstrap (and `./build.sh config`) gives it in
/// `stats_config.histogram_bucket_settings` (`match: {prefix: wasmcustom.<name>.}`; tested
/// below): Envoy's default buckets stop at 300 000 and start at 0.5, which fits neither
/// milliseconds of LLM calls nor token counts well.
pub const HISTOGRAM_BUCKETS: &[(&str, &[u64])] = &[
    (REQUEST_DURATION, DURATION_BUCKETS_MS),
    (GENAI_OPERATION_DURATION, DURATION_BUCKETS_MS),
    (GENAI_TIME_TO_FIRST_TOKEN, TTFT_BUCKETS_MS),
    (GENAI_TOKEN_USAGE, TOKEN_BUCKETS),
];

/// Longest tag value kept, in bytes.
pub const MAX_TAG_VALUE: usize = 64;

/// Makes a value safe as one stat-name segment: lower-case `[a-z0-9_-]` (anything else becomes
/// `_`, so a `.` cannot start a new segment), at most [`MAX_TAG_VALUE`] bytes, `none` if empty.
pub fn tag_value(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len().min(MAX_TAG_VALUE));
    push_tag_value(&mut out, raw);
    out
}

/// Appends [`tag_value`]`(raw)` to `out`. Names are built on every counted request, so a value
/// that is already a clean segment (feature names, providers, reasons) is copied as it is
/// instead of char by char (about ten times fewer wasm operators).
fn push_tag_value(out: &mut String, raw: &str) {
    let clean = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-';
    if !raw.is_empty() && raw.len() <= MAX_TAG_VALUE && raw.bytes().all(clean) {
        out.push_str(raw);
        return;
    }
    let start = out.len();
    for c in raw.chars().take(MAX_TAG_VALUE) {
        out.push(if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c.to_ascii_lowercase() } else { '_' });
    }
    if out.len() == start {
        out.push_str("none");
    }
}

/// `base.tag1.value1.tag2.value2`, each value passed through [`tag_value`].
pub fn metric_name(base: &str, tags: &[(&str, &str)]) -> String {
    let len = base.len() + tags.iter().map(|(tag, value)| tag.len() + value.len().clamp(4, MAX_TAG_VALUE) + 2).sum::<usize>();
    let mut name = String::with_capacity(len);
    name.push_str(base);
    for (tag, value) in tags {
        name.push('.');
        name.push_str(tag);
        name.push('.');
        push_tag_value(&mut name, value);
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
        assert_eq!(tag_value(&"a".repeat(100)), "a".repeat(64));
        assert_eq!(tag_value("ok-1_b"), "ok-1_b");
        assert_eq!(tag_value("."), "_");
    }

    /// The clean-value shortcut gives what the char-by-char rule gives.
    #[test]
    fn the_shortcut_agrees_with_the_rule() {
        let rule = |raw: &str| {
            let out: String = raw.chars().take(MAX_TAG_VALUE).map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c.to_ascii_lowercase() } else { '_' }).collect();
            if out.is_empty() { "none".to_owned() } else { out }
        };
        let long = "x".repeat(MAX_TAG_VALUE);
        let longer = "y".repeat(MAX_TAG_VALUE + 1);
        for raw in ["", "a", "generate_commit_message", "self_hosted", "5xx", "Mixed", "a.b", "a b", "ü", "-_-", long.as_str(), longer.as_str()] {
            assert_eq!(tag_value(raw), rule(raw), "{raw:?}");
        }
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

    const BOOTSTRAPS: [(&str, &str); 6] = [
        ("envoy/self_hosted.yaml", include_str!("../../../envoy/self_hosted.yaml")),
        ("envoy/hybrid.yaml", include_str!("../../../envoy/hybrid.yaml")),
        ("envoy/gitlab_com.yaml", include_str!("../../../envoy/gitlab_com.yaml")),
        ("envoy/local.yaml", include_str!("../../../envoy/local.yaml")),
        ("examples/embed/envoy.yaml", include_str!("../../../examples/embed/envoy.yaml")),
        ("examples/production/envoy.yaml.tmpl", include_str!("../../../examples/production/envoy.yaml.tmpl")),
    ];

    /// Every shipped bootstrap extracts every tag, with the one regex shape.
    #[test]
    fn shipped_bootstraps_extract_every_tag() {
        for (file, text) in BOOTSTRAPS {
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

    /// Every shipped bootstrap gives each histogram its buckets:
    /// `- match: {prefix: wasmcustom.<name>.}` then `buckets: [...]` on the next line.
    #[test]
    fn shipped_bootstraps_give_every_histogram_its_buckets() {
        for (file, text) in BOOTSTRAPS {
            let lines: Vec<&str> = text.lines().collect();
            for (name, buckets) in HISTOGRAM_BUCKETS {
                let prefix = format!("match: {{prefix: wasmcustom.{name}.}}");
                let list = format!("buckets: [{}]", buckets.iter().map(u64::to_string).collect::<Vec<_>>().join(", "));
                let found = lines.iter().enumerate().any(|(i, l)| l.contains(&prefix) && lines.get(i + 1).is_some_and(|n| n.trim() == list));
                assert!(found, "{file}: no histogram_bucket_settings entry `{prefix}` with `{list}`");
            }
        }
    }
}
