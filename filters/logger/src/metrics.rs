//! Which metrics one finished request moves, derived from its record (one source of truth).
//! Labels are `.<tag>.<value>` pairs in the name ([`duo_core::metrics`]): with the shipped
//! `stats_tags`, `wasmcustom.duo_requests_total.feature.duo_chat.outcome.ok` is exported as
//! `duo_requests_total{feature="duo_chat",outcome="ok"}`.

use duo_core::metrics::metric_name;
use serde_json::{Map, Value};

pub(crate) const REQUESTS: &str = "duo_requests_total";
pub(crate) const AUTH_DENIALS: &str = "duo_auth_denials_total";
/// Exact token totals (a histogram's `_sum` in Envoy is approximate: its bins keep about two
/// significant digits).
pub(crate) const INPUT_TOKENS: &str = "duo_input_tokens_total";
pub(crate) const OUTPUT_TOKENS: &str = "duo_output_tokens_total";
pub(crate) const DURATION: &str = duo_core::metrics::REQUEST_DURATION;
// Model calls, named after the OpenTelemetry GenAI semantic conventions (docs/logger.md).
use duo_core::metrics::{GENAI_OPERATION_DURATION, GENAI_TIME_TO_FIRST_TOKEN, GENAI_TOKEN_USAGE};
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

/// OpenTelemetry's `gen_ai.provider.name` for a `models.<name>.platform`: vLLM and
/// OpenAI-compatible servers speak OpenAI's API, so they count as `openai`. The name segment
/// turns the dots into `_` (`aws_bedrock`); docs/logger.md shows how to restore them.
fn provider_name(platform: &str) -> &'static str {
    match platform {
        "bedrock" => "aws.bedrock",
        "azure_openai" => "azure.ai.openai",
        "vllm" | "openai_compatible" => "openai",
        _ => "_OTHER",
    }
}

/// OpenTelemetry's `error.type` for a failed model call, `None` when it succeeded: the status
/// the model platform answered (`429`, `503`; Envoy's own 503/504 when it was unreachable),
/// else the status GitLab got, else the kind of stream break (`stream_truncated`,
/// `stream_exception`, ...), else `no_response` or `_OTHER`. Low cardinality by construction:
/// never free text.
fn error_type(record: &Map<String, Value>, outcome: &str) -> Option<String> {
    if outcome == "ok" {
        return None;
    }
    let status = |key: &str| record.get(key).and_then(Value::as_i64).filter(|s| *s >= 400);
    if let Some(s) = status("upstream_status").or_else(|| status("status_code")) {
        return Some(s.to_string());
    }
    if let Some(e) = text(record, "error").filter(|e| e.starts_with("stream_")) {
        return Some(e.split(':').next().unwrap_or(e).to_owned());
    }
    Some(if outcome == "no_response" { "no_response" } else { "_OTHER" }.to_owned())
}

/// The metric updates for one finished request.
pub fn updates(record: &Map<String, Value>) -> Vec<Update> {
    let feature = text(record, "feature").unwrap_or("none");
    let model = text(record, "model_name").unwrap_or("none");
    let counter = |name: String, value: u64| Update { kind: Kind::Counter, name, value };
    let histogram = |name: String, value: u64| Update { kind: Kind::Histogram, name, value };
    let outcome = outcome(record);
    let mut out = vec![counter(metric_name(REQUESTS, &[("feature", feature), ("outcome", outcome)]), 1)];
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
    // A model call: duo_router built a platform request (it names the model id it asked for).
    if let Some(request_model) = text(record, "request_model") {
        let genai = [
            ("feature", feature),
            ("model", model),
            ("gen_ai_operation_name", text(record, "operation_name").unwrap_or("none")),
            ("gen_ai_provider_name", provider_name(text(record, "platform").unwrap_or(""))),
            ("gen_ai_request_model", request_model),
        ];
        for (key, kind) in [("input_tokens", "input"), ("output_tokens", "output")] {
            if let Some(n) = record.get(key).and_then(Value::as_u64) {
                let mut tags = genai.to_vec();
                tags.push(("gen_ai_token_type", kind));
                out.push(histogram(metric_name(GENAI_TOKEN_USAGE, &tags), n));
            }
        }
        if let Some(ms) = millis(record, "duration_s") {
            let error = error_type(record, outcome);
            let mut tags = genai.to_vec();
            if let Some(e) = &error {
                tags.push(("error_type", e));
            }
            out.push(histogram(metric_name(GENAI_OPERATION_DURATION, &tags), ms));
        }
        // Time to the first answer byte GitLab got, for successful streamed answers (for a
        // whole answer it is the whole duration).
        let streamed = record.get("stream").and_then(Value::as_bool) == Some(true);
        if let (true, "ok", Some(ms)) = (streamed, outcome, millis(record, "first_chunk_duration_s")) {
            out.push(histogram(metric_name(GENAI_TIME_TO_FIRST_TOKEN, &genai), ms));
        }
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

    const GENAI: &str = "feature.code_completions.model.codestral.gen_ai_operation_name.text_completion.gen_ai_provider_name.openai.gen_ai_request_model.mistralai_codestral-22b-v0_1";

    #[test]
    fn a_served_request_moves_every_metric() {
        let record = obj(json!({
            "status_code": 200, "feature": "code_completions", "model_name": "codestral", "platform": "vllm",
            "request_model": "mistralai/Codestral-22B-v0.1", "operation_name": "text_completion", "stream": true,
            "input_tokens": 120, "output_tokens": 30, "duration_s": 1.2345, "first_chunk_duration_s": 0.25,
            "auth_result": "ok"
        }));
        let got = updates(&record);
        let want = vec![
            Update { kind: Kind::Counter, name: "duo_requests_total.feature.code_completions.outcome.ok".into(), value: 1 },
            Update { kind: Kind::Counter, name: "duo_input_tokens_total.feature.code_completions.model.codestral".into(), value: 120 },
            Update { kind: Kind::Counter, name: "duo_output_tokens_total.feature.code_completions.model.codestral".into(), value: 30 },
            Update { kind: Kind::Histogram, name: "duo_request_duration_ms.feature.code_completions.model.codestral".into(), value: 1235 },
            Update { kind: Kind::Histogram, name: format!("gen_ai_client_token_usage.{GENAI}.gen_ai_token_type.input"), value: 120 },
            Update { kind: Kind::Histogram, name: format!("gen_ai_client_token_usage.{GENAI}.gen_ai_token_type.output"), value: 30 },
            Update { kind: Kind::Histogram, name: format!("gen_ai_client_operation_duration_ms.{GENAI}"), value: 1235 },
            Update { kind: Kind::Histogram, name: format!("gen_ai_server_time_to_first_token_ms.{GENAI}"), value: 250 },
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn provider_names_follow_opentelemetry() {
        for (platform, want) in [("bedrock", "aws_bedrock"), ("azure_openai", "azure_ai_openai"), ("vllm", "openai"), ("openai_compatible", "openai")] {
            let record = obj(json!({"status_code": 200, "platform": platform, "request_model": "m", "operation_name": "chat", "duration_s": 0.1}));
            let got = updates(&record);
            let d = got.iter().find(|u| u.name.starts_with("gen_ai_client_operation_duration_ms.")).unwrap();
            assert!(d.name.contains(&format!(".gen_ai_provider_name.{want}.")), "{platform}: {}", d.name);
        }
    }

    #[test]
    fn failed_model_calls_carry_an_error_type_and_no_time_to_first_token() {
        let cases = [
            (json!({"status_code": 421, "upstream_status": 500}), Some("500")),
            (json!({"status_code": 503, "upstream_status": 503, "error": "upstream unreachable (503)"}), Some("503")),
            (json!({"status_code": 429}), Some("429")),
            (json!({"status_code": 200, "error": "stream_exception:throttlingException"}), Some("stream_exception")),
            (json!({"status_code": 200, "error": "stream_truncated"}), Some("stream_truncated")),
            (json!({"status_code": 200, "error": "response_rewrite_failed"}), Some("_other")),
            (json!({}), Some("no_response")),
            (json!({"status_code": 200}), None),
        ];
        for (facts, want) in cases {
            let mut record = obj(json!({"feature": "duo_chat", "model_name": "claude", "platform": "bedrock", "stream": true,
                "request_model": "anthropic.claude-3-5-sonnet-20240620-v1:0", "operation_name": "chat",
                "duration_s": 2.0, "first_chunk_duration_s": 0.5}));
            record.extend(obj(facts.clone()));
            let got = updates(&record);
            let d = got.iter().find(|u| u.name.starts_with("gen_ai_client_operation_duration_ms.")).unwrap();
            assert!(d.name.contains(".gen_ai_request_model.anthropic_claude-3-5-sonnet-20240620-v1_0"), "{}", d.name);
            match want {
                Some(e) => {
                    assert!(d.name.ends_with(&format!(".error_type.{e}")), "{facts}: {}", d.name);
                    assert!(!got.iter().any(|u| u.name.starts_with("gen_ai_server_time_to_first_token_ms.")), "{facts}");
                }
                None => {
                    assert!(!d.name.contains("error_type"), "{}", d.name);
                    assert!(got.iter().any(|u| u.name.starts_with("gen_ai_server_time_to_first_token_ms.")));
                }
            }
        }
    }

    #[test]
    fn requests_without_a_model_call_move_no_genai_metric() {
        // vendored, a router refusal, a whole (non-streamed) answer's first chunk
        for record in [
            json!({"status_code": 200, "feature": "commit_message", "provider": "vendored", "duration_s": 0.3}),
            json!({"status_code": 403, "feature": "duo_chat", "model_name": "claude", "platform": "bedrock", "duration_s": 0.01}),
        ] {
            let got = updates(&obj(record.clone()));
            assert!(got.iter().all(|u| !u.name.starts_with("gen_ai_")), "{record}: {got:?}");
        }
        let whole = obj(json!({"status_code": 200, "platform": "vllm", "request_model": "m", "stream": false,
            "duration_s": 0.3, "first_chunk_duration_s": 0.3}));
        assert!(updates(&whole).iter().all(|u| !u.name.starts_with("gen_ai_server_time_to_first_token")));
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
