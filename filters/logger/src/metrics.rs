//! Which metrics one finished request moves, derived from its record (one source of truth).
//! Labels are `.<tag>.<value>` pairs in the name ([`duo_core::metrics`]): with the shipped
//! `stats_tags`, `wasmcustom.duo_requests_total.feature.duo_chat.outcome.ok` is exported as
//! `duo_requests_total{feature="duo_chat",outcome="ok"}`.

use duo_core::metrics::metric_name;
use serde_json::{Map, Value};

pub(crate) const REQUESTS: &str = "duo_requests_total";
pub(crate) const AUTH_DENIALS: &str = "duo_auth_denials_total";
pub(crate) const INPUT_TOKENS: &str = "duo_input_tokens_total";
pub(crate) const OUTPUT_TOKENS: &str = "duo_output_tokens_total";
pub(crate) const DURATION: &str = "duo_request_duration_ms";
pub(crate) const FIRST_CHUNK: &str = "duo_first_chunk_duration_ms";
/// gRPC calls (the Agent Platform) by method and status, their duration, and the streams open.
pub(crate) const GRPC_CALLS: &str = "duo_grpc_calls_total";
pub(crate) const GRPC_DURATION: &str = "duo_grpc_call_duration_ms";
pub(crate) const GRPC_STREAMS: &str = "duo_grpc_streams_active";

/// Updates dropped because [`MAX_NAMES`] distinct names are defined in this VM.
pub(crate) const DROPPED: &str = "duo_logger_metrics_dropped_total";
/// Distinct names one VM defines: a flood of odd tag values cannot grow Envoy's stat table
/// without bound.
pub(crate) const MAX_NAMES: usize = 2000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Histogram,
}

/// One metric change: add `value` to a counter, or record `value` in a histogram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    pub kind: Kind,
    pub name: String,
    pub value: u64,
}

/// How a request ended, for `duo_requests_total{outcome}`:
/// `ok` (status < 400 and no error), `auth_denied` (duo_auth refused it), `client_error` (other
/// 4xx), `rate_limited` (429), `server_error` (5xx), `stream_error` (the status was sent but the
/// answer broke afterwards), `no_response` (no status was sent). A gRPC answer (HTTP 200) with a
/// non-zero `grpc_status` counts as `rate_limited` (8), `client_error` (1, 3, 5, 6, 7, 9, 11, 16)
/// or `server_error` (the others).
pub(crate) fn outcome(record: &Map<String, Value>) -> &'static str {
    let status = record.get("status_code").and_then(Value::as_i64);
    let denied = record.get("auth_result").and_then(Value::as_str) == Some("denied");
    let grpc = record.get("grpc_status").and_then(Value::as_i64).filter(|c| *c != 0);
    match status {
        None => "no_response",
        Some(_) if denied => "auth_denied",
        // gRPC answers are HTTP 200; the grpc-status says how they ended.
        Some(s) if s < 400 && grpc.is_some() => match grpc {
            Some(8) => "rate_limited",
            Some(1 | 3 | 5 | 6 | 7 | 9 | 11 | 16) => "client_error",
            _ => "server_error",
        },
        Some(429) => "rate_limited",
        Some(s) if s >= 500 => "server_error",
        Some(s) if s >= 400 => "client_error",
        Some(_) if record.contains_key("error") => "stream_error",
        Some(_) => "ok",
    }
}

/// The method of `Service/Method` as a label (`ExecuteWorkflow`, lower-cased by the tag rules).
fn grpc_method_label(method: &str) -> &str {
    method.rsplit('/').next().unwrap_or(method)
}

/// The gauge of open gRPC streams for a call of `method` (`Service/Method`).
pub(crate) fn grpc_streams(method: &str) -> String {
    metric_name(GRPC_STREAMS, &[("grpc_method", grpc_method_label(method))])
}

fn text<'a>(record: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    record.get(key).and_then(Value::as_str)
}

fn millis(record: &Map<String, Value>, key: &str) -> Option<u64> {
    let s = record.get(key).and_then(Value::as_f64)?;
    (s >= 0.0).then(|| (s * 1000.0).round() as u64)
}

/// The metric updates for one finished request.
pub fn updates(record: &Map<String, Value>) -> Vec<Update> {
    let feature = text(record, "feature").unwrap_or("none");
    let model = text(record, "model_name").unwrap_or("none");
    let counter = |name: String, value: u64| Update { kind: Kind::Counter, name, value };
    let histogram = |name: String, value: u64| Update { kind: Kind::Histogram, name, value };
    let mut out = vec![counter(metric_name(REQUESTS, &[("feature", feature), ("outcome", outcome(record))]), 1)];
    if text(record, "auth_result") == Some("denied") {
        let reason = text(record, "auth_error").unwrap_or("none");
        out.push(counter(metric_name(AUTH_DENIALS, &[("reason", reason)]), 1));
    }
    let fm = [("feature", feature), ("model", model)];
    for (key, base) in [("input_tokens", INPUT_TOKENS), ("output_tokens", OUTPUT_TOKENS)] {
        if let Some(n) = record.get(key).and_then(Value::as_u64) {
            out.push(counter(metric_name(base, &fm), n));
        }
    }
    if let Some(ms) = millis(record, "duration_s") {
        out.push(histogram(metric_name(DURATION, &fm), ms));
    }
    if let Some(ms) = millis(record, "first_chunk_duration_s") {
        out.push(histogram(metric_name(FIRST_CHUNK, &fm), ms));
    }
    if let Some(method) = text(record, "grpc_method") {
        let label = grpc_method_label(method);
        let status = record.get("grpc_status").and_then(Value::as_i64).map_or_else(|| "none".to_owned(), |c| c.to_string());
        out.push(counter(metric_name(GRPC_CALLS, &[("grpc_method", label), ("grpc_status", &status)]), 1));
        if let Some(ms) = millis(record, "duration_s") {
            out.push(histogram(metric_name(GRPC_DURATION, &[("grpc_method", label)]), ms));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn a_grpc_call_counts_by_method_and_status() {
        let record = obj(json!({"status_code": 200, "grpc_status": 0, "grpc_method": "DuoWorkflow/ExecuteWorkflow",
                                "feature": "duo_agent_platform", "duration_s": 61.5}));
        let u = updates(&record);
        assert!(u.contains(&Update { kind: Kind::Counter, name: "duo_grpc_calls_total.grpc_method.executeworkflow.grpc_status.0".into(), value: 1 }), "{u:?}");
        assert!(u.contains(&Update { kind: Kind::Histogram, name: "duo_grpc_call_duration_ms.grpc_method.executeworkflow".into(), value: 61_500 }), "{u:?}");
        let refused = obj(json!({"status_code": 200, "grpc_status": 16, "grpc_method": "DuoWorkflow/GenerateToken", "auth_result": "denied"}));
        assert!(updates(&refused).iter().any(|x| x.name == "duo_grpc_calls_total.grpc_method.generatetoken.grpc_status.16"));
        let no_status = obj(json!({"grpc_method": "grpc.health.v1.Health/Check"}));
        assert!(updates(&no_status).iter().any(|x| x.name == "duo_grpc_calls_total.grpc_method.check.grpc_status.none"));
        assert_eq!(grpc_streams("DuoWorkflow/ExecuteWorkflow"), "duo_grpc_streams_active.grpc_method.executeworkflow");
        // Plain HTTP requests move no gRPC metric.
        assert!(!updates(&obj(json!({"status_code": 200}))).iter().any(|x| x.name.starts_with("duo_grpc")));
    }

    #[test]
    fn outcome_table() {
        let cases = [
            (json!({}), "no_response"),
            (json!({"status_code": 200}), "ok"),
            (json!({"status_code": 304}), "ok"),
            (json!({"status_code": 200, "error": "stream cut"}), "stream_error"),
            (json!({"status_code": 401, "auth_result": "denied"}), "auth_denied"),
            (json!({"status_code": 403, "auth_result": "denied"}), "auth_denied"),
            (json!({"status_code": 403, "auth_result": "ok"}), "client_error"),
            (json!({"status_code": 404}), "client_error"),
            (json!({"status_code": 429}), "rate_limited"),
            (json!({"status_code": 421}), "client_error"),
            (json!({"status_code": 503}), "server_error"),
            (json!({"status_code": 200, "grpc_status": 0}), "ok"),
            (json!({"status_code": 200, "grpc_status": 14}), "server_error"),
            (json!({"status_code": 200, "grpc_status": 3}), "client_error"),
            (json!({"status_code": 200, "grpc_status": 8}), "rate_limited"),
            (json!({"status_code": 401, "grpc_status": 16, "auth_result": "denied"}), "auth_denied"),
        ];
        for (record, want) in cases {
            assert_eq!(outcome(&obj(record.clone())), want, "{record}");
        }
    }

    #[test]
    fn a_served_request_moves_every_metric() {
        let record = obj(json!({
            "status_code": 200, "feature": "code_completions", "model_name": "codestral",
            "input_tokens": 120, "output_tokens": 30, "duration_s": 1.2345, "first_chunk_duration_s": 0.25,
            "auth_result": "ok"
        }));
        let got = updates(&record);
        let want = vec![
            Update { kind: Kind::Counter, name: "duo_requests_total.feature.code_completions.outcome.ok".into(), value: 1 },
            Update { kind: Kind::Counter, name: "duo_input_tokens_total.feature.code_completions.model.codestral".into(), value: 120 },
            Update { kind: Kind::Counter, name: "duo_output_tokens_total.feature.code_completions.model.codestral".into(), value: 30 },
            Update { kind: Kind::Histogram, name: "duo_request_duration_ms.feature.code_completions.model.codestral".into(), value: 1235 },
            Update { kind: Kind::Histogram, name: "duo_first_chunk_duration_ms.feature.code_completions.model.codestral".into(), value: 250 },
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn a_denied_request_counts_the_reason_and_no_tokens() {
        let record = obj(json!({"status_code": 401, "auth_result": "denied", "auth_error": "Forbidden by auth provider", "duration_s": 0.001}));
        let got = updates(&record);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0].name, "duo_requests_total.feature.none.outcome.auth_denied");
        assert_eq!(got[1], Update { kind: Kind::Counter, name: "duo_auth_denials_total.reason.forbidden_by_auth_provider".into(), value: 1 });
        assert_eq!(got[2], Update { kind: Kind::Histogram, name: "duo_request_duration_ms.feature.none.model.none".into(), value: 1 });
    }
}
