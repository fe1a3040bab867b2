//! duo_logger's built module (`dist/duo_logger.wasm`) in the host emulator: the record it
//! publishes in `on_log`, the content hand-off with duo_router, metrics, configuration.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

use duo_harness::{Filter, Host, LogLevel, MetricType, Plugin, PropValue, Stream};
use serde_json::{Value, json};
use std::time::Duration;

const JWT: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJpbnN0LTEifQ.c2lnbmF0dXJlLWJ5dGVz";

fn logger(host: &Host, config: &str) -> Plugin {
    let p = host.load(Filter::Logger, config).unwrap();
    assert!(p.configured(), "{:?}", p.logs());
    p
}

fn headers<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        (":method", "POST"),
        (":path", "/v2/code/completions?api_key=QUERYSECRET"),
        (":authority", "gw"),
        (
            "authorization",
            "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
        ),
        ("x-request-id", "rid-42"),
        ("user-agent", "gitlab-language-server/7.1"),
        ("x-gitlab-instance-id", "hdr-inst"),
        ("x-gitlab-realm", "self-managed"),
        ("x-gitlab-version", "18.4.1"),
    ];
    h.extend_from_slice(extra);
    h
}

fn record(s: &Stream) -> Value {
    let text = s
        .filter_state_str("duo_access_log")
        .expect("duo_access_log published");
    serde_json::from_str(&text).unwrap()
}

/// A served request: the filter states duo_auth and duo_router write, a response in two chunks.
fn served(host: &Host, plugin: &Plugin, extra: &[(&str, &str)]) -> Stream {
    let s = plugin.new_stream();
    let start = host.now_nanos() as i64;
    s.set_property(&["request", "time"], PropValue::TimestampNanos(start));
    s.set_property(&["request", "size"], PropValue::Int(321));
    s.set_property(&["response", "size"], PropValue::Int(8));
    let a = s.request_headers(&headers(extra), false);
    assert!(a.is_continue(), "{a:?} {:?} {:?}", s.trace(), plugin.logs());
    assert!(
        s.request_body(br#"{"prompt_version":1}"#, true)
            .is_continue()
    );
    let auth = json!({"result": "ok", "feature": "code_completions", "unit_primitive": "complete_code",
        "issuer": "https://gitlab.example.com", "gitlab_instance_id": "inst-1", "gitlab_global_user_id": "user-1",
        "gitlab_realm": "self-managed", "token_kind": "instance", "scopes": ["complete_code"]});
    let route = json!({"feature": "code_completions", "configuration_type": "self_hosted", "provider": "self_hosted",
        "model_name": "codestral", "model_identifier": "custom_openai/Codestral-22B-v0.1", "model_family": "codestral",
        "platform": "vllm", "upstream_cluster": "vllm_codestral", "stream": true});
    s.set_filter_state("duo_auth", auth.to_string().as_bytes());
    s.set_filter_state("duo_route", route.to_string().as_bytes());
    host.advance(Duration::from_millis(100));
    assert!(
        s.response_headers(
            &[(":status", "200"), ("content-type", "text/event-stream")],
            false
        )
        .is_continue()
    );
    host.advance(Duration::from_millis(150));
    assert!(s.response_body(b"def ", false).is_continue());
    host.advance(Duration::from_millis(250));
    assert!(s.response_body(b"f(): ", true).is_continue());
    let usage = json!({"input_tokens": 120, "output_tokens": 30, "upstream_status": 200,
        "request_model": "Codestral-22B-v0.1", "response_model": "codestral-served", "operation": "text_completion",
        "finish_reason": "length"});
    s.set_filter_state("duo_usage", usage.to_string().as_bytes());
    host.advance(Duration::from_millis(10));
    s
}

#[test]
fn publishes_one_record_in_on_log() {
    let host = Host::new();
    let p = logger(&host, r#"{"log_content": "never"}"#);
    let s = served(&host, &p, &[]);
    assert!(
        s.filter_state("duo_access_log").is_none(),
        "the record is built in on_log, not before"
    );
    s.finish();
    let r = record(&s);
    assert_eq!(r["timestamp"], "2026-01-01T00:00:00.000Z");
    assert_eq!(r["correlation_id"], "rid-42");
    assert_eq!(r["method"], "POST");
    assert_eq!(r["path"], "/v2/code/completions?api_key=[REDACTED]");
    assert_eq!(r["status_code"], 200);
    assert_eq!(r["response_start_duration_s"], 0.1);
    assert_eq!(r["first_chunk_duration_s"], 0.25);
    assert_eq!(
        r["duration_s"], 0.51,
        "no request.duration: the logger's clock at on_log"
    );
    assert_eq!(
        (r["feature"].as_str(), r["unit_primitive"].as_str()),
        (Some("code_completions"), Some("complete_code"))
    );
    assert_eq!(
        (r["model_name"].as_str(), r["platform"].as_str()),
        (Some("codestral"), Some("vllm"))
    );
    assert_eq!(r["stream"], true);
    // The platform's model ids beside the config key, and how the answer ended (duo_usage).
    assert_eq!(
        (&r["request_model"], &r["response_model"], &r["operation_name"], &r["finish_reason"]),
        (&json!("Codestral-22B-v0.1"), &json!("codestral-served"), &json!("text_completion"), &json!("length"))
    );
    assert_eq!(
        (
            r["input_tokens"].as_u64(),
            r["output_tokens"].as_u64(),
            r["total_tokens"].as_u64()
        ),
        (Some(120), Some(30), Some(150))
    );
    assert_eq!(r["upstream_status"], 200);
    assert_eq!(
        r["gitlab_instance_id"], "inst-1",
        "verified identity wins over the header"
    );
    assert_eq!(r["gitlab_version"], "18.4.1");
    assert_eq!(r["auth_result"], "ok");
    assert_eq!(r["token_issuer"], "https://gitlab.example.com");
    assert_eq!(
        (r["request_bytes"].as_u64(), r["response_bytes"].as_u64()),
        (Some(321), Some(8))
    );
    assert!(r.get("content").is_none());
    let text = r.to_string();
    assert!(
        !text.contains("QUERYSECRET") && !text.contains("eyJ"),
        "{text}"
    );
    assert_eq!(
        s.filter_states()
            .iter()
            .filter(|(k, _)| k == "duo_access_log")
            .count(),
        1
    );
}

#[test]
fn request_duration_property_wins_when_envoy_has_it() {
    let host = Host::new();
    let p = logger(&host, "{}");
    let s = served(&host, &p, &[]);
    s.set_property(
        &["request", "duration"],
        PropValue::DurationNanos(1_234_567_000),
    );
    s.finish();
    assert_eq!(record(&s)["duration_s"], 1.234567);
}

#[test]
fn local_reply_without_other_filters_gets_a_minimal_record() {
    let host = Host::new();
    let p = logger(&host, "{}");
    let s = p.new_stream();
    s.set_property(
        &["request", "time"],
        PropValue::TimestampNanos(host.now_nanos() as i64),
    );
    s.request_headers(
        &[
            (":method", "GET"),
            (":path", "/nope"),
            (":authority", "gw"),
            ("x-request-id", "r404"),
        ],
        true,
    );
    host.advance(Duration::from_millis(2));
    s.response_headers(&[(":status", "404"), ("content-length", "0")], true);
    s.finish();
    let r = record(&s);
    let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "content_type",
            "correlation_id",
            "duration_request",
            "duration_s",
            "first_chunk_duration_s",
            "method",
            "path",
            "request_arrived_at",
            "response_start_duration_s",
            "status_code",
            "timestamp",
            "url"
        ],
        "{r}"
    );
    assert_eq!(r["status_code"], 404);
    assert_eq!(
        r["first_chunk_duration_s"], 0.002,
        "a bodiless answer's first chunk is its headers"
    );
}

#[test]
fn content_wanted_follows_the_policy_and_verbose_header() {
    let cases = [
        ("never", None, false),
        ("never", Some("true"), false),
        ("when_enabled", None, false),
        ("when_enabled", Some("false"), false),
        ("when_enabled", Some("true"), true),
        ("always", None, true),
    ];
    for (policy, verbose, wanted) in cases {
        let host = Host::new();
        let p = logger(
            &host,
            &format!(r#"{{"log_content": "{policy}", "max_content_bytes": 16}}"#),
        );
        let extra: Vec<(&str, &str)> = verbose
            .map(|v| ("x-gitlab-enabled-instance-verbose-ai-logs", v))
            .into_iter()
            .collect();
        let s = p.new_stream();
        s.request_headers(&headers(&extra), false);
        let got = s.filter_state_str("duo_content_wanted");
        assert_eq!(
            got.as_deref(),
            wanted.then_some("16"),
            "{policy} {verbose:?}"
        );
        // Even if some filter wrote content, the logger only logs it when allowed.
        let content = json!({"prompt": format!("please use api_key=K1 and {JWT}"), "response": "0123456789abcdefXYZ"});
        s.set_filter_state("duo_content", content.to_string().as_bytes());
        s.response_headers(&[(":status", "200")], true);
        s.finish();
        let r = record(&s);
        assert_eq!(
            r.get("content").is_some(),
            wanted,
            "{policy} {verbose:?}: {r}"
        );
        if wanted {
            assert_eq!(
                r["content"]["response"], "0123456789abcdef",
                "cut to max_content_bytes"
            );
            assert_eq!(r["content"]["truncated"], true);
            let prompt = r["content"]["prompt"].as_str().unwrap();
            assert!(prompt.len() <= 16 && !prompt.contains("K1"), "{prompt}");
        }
    }
}

#[test]
fn metrics_are_defined_once_and_moved() {
    let host = Host::new();
    let p = logger(&host, "{}");
    for _ in 0..2 {
        served(&host, &p, &[]).finish();
    }
    let denied = p.new_stream();
    denied.request_headers(&headers(&[]), false);
    let auth = json!({"result": "denied", "error": "Forbidden by auth provider", "feature": "code_completions"});
    denied.set_filter_state("duo_auth", auth.to_string().as_bytes());
    denied.response_headers(&[(":status", "401")], true);
    denied.finish();

    let ok = "duo_requests_total.feature.code_completions.outcome.ok";
    assert_eq!(host.metric_value(ok), Some(2), "{:?}", host.metrics());
    assert_eq!(
        host.metric_value("duo_requests_total.feature.code_completions.outcome.auth_denied"),
        Some(1)
    );
    assert_eq!(
        host.metric_value("duo_auth_denials_total.reason.forbidden_by_auth_provider"),
        Some(1)
    );
    assert_eq!(
        host.metric_value("duo_input_tokens_total.feature.code_completions.model.codestral"),
        Some(240)
    );
    assert_eq!(
        host.metric_value("duo_output_tokens_total.feature.code_completions.model.codestral"),
        Some(60)
    );
    // The OpenTelemetry GenAI histograms of the model call (docs/logger.md).
    let genai = "feature.code_completions.model.codestral.gen_ai_operation_name.text_completion\
                 .gen_ai_provider_name.openai.gen_ai_request_model.codestral-22b-v0_1";
    for (kind, n) in [("input", 120), ("output", 30)] {
        let tokens = host
            .metric(&format!("gen_ai_client_token_usage.{genai}.gen_ai_token_type.{kind}"))
            .unwrap_or_else(|| panic!("{kind} tokens: {:?}", host.metrics()));
        assert_eq!((tokens.kind, tokens.samples.clone()), (MetricType::Histogram, vec![n, n]));
    }
    let op = host.metric(&format!("gen_ai_client_operation_duration_ms.{genai}")).unwrap();
    assert_eq!(op.samples, vec![510, 510]);
    let ttft = host.metric(&format!("gen_ai_server_time_to_first_token_ms.{genai}")).unwrap();
    assert_eq!(ttft.samples, vec![250, 250]);
    let latency = host
        .metric("duo_request_duration_ms.feature.code_completions.model.codestral")
        .unwrap();
    assert_eq!(
        (latency.kind, latency.samples.clone()),
        (MetricType::Histogram, vec![510, 510])
    );
    // No timing properties on the denied stream: no latency sample invented for it.
    assert!(
        host.metric("duo_request_duration_ms.feature.code_completions.model.none")
            .is_none()
    );
}

#[test]
fn distinct_metric_names_are_capped_and_the_rest_counted() {
    let host = Host::new();
    let p = logger(&host, "{}");
    // Each denial with a new reason defines one new name; the outcome counter is shared.
    let requests = 2010;
    for i in 0..requests {
        let s = p.new_stream();
        s.request_headers(&headers(&[]), false);
        let auth = json!({"result": "denied", "error": format!("reason {i}"), "feature": "code_completions"});
        s.set_filter_state("duo_auth", auth.to_string().as_bytes());
        s.response_headers(&[(":status", "401")], true);
        s.finish();
    }
    let dropped = "duo_logger_metrics_dropped_total";
    let names: Vec<String> = host.metrics().into_iter().map(|m| m.name).filter(|n| n != dropped).collect();
    assert_eq!(names.len(), 2000, "the cap (duo_logger's MAX_NAMES)");
    // 1 shared name + 1999 reasons fill the cap; the 11 later reasons are counted, not defined.
    assert_eq!(host.metric_value(dropped), Some(requests - 1999));
    assert_eq!(host.metric_value("duo_auth_denials_total.reason.reason_1998"), Some(1));
    assert!(host.metric("duo_auth_denials_total.reason.reason_1999").is_none());
    // Names defined before the cap keep counting.
    assert_eq!(
        host.metric_value("duo_requests_total.feature.code_completions.outcome.auth_denied"),
        Some(requests)
    );
    let warnings: Vec<_> = p.logs().into_iter().filter(|l| l.message.contains("distinct metric names")).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].level, LogLevel::Warn);
}

#[test]
fn two_workers_share_metrics() {
    let host = Host::new();
    let (a, b) = (logger(&host, "{}"), logger(&host, "{}"));
    served(&host, &a, &[]).finish();
    served(&host, &b, &[]).finish();
    assert_eq!(
        host.metric_value("duo_requests_total.feature.code_completions.outcome.ok"),
        Some(2)
    );
}

#[test]
fn refuses_bad_configuration_naming_the_field() {
    let host = Host::new();
    for (config, field) in [
        (r#"{"log_content": "sometimes"}"#, "log_content"),
        (r#"{"max_content_bytes": 99999999}"#, "max_content_bytes"),
        (r#"{"hash_user_id": true}"#, "hash_user_id"),
    ] {
        let p = host.load(Filter::Logger, config).unwrap();
        assert!(!p.configured(), "{config} accepted");
        assert!(p.logged(LogLevel::Error, field), "{config}: {:?}", p.logs());
    }
}

#[test]
fn hashes_user_ids_when_asked() {
    let host = Host::new();
    let p = logger(&host, r#"{"hash_user_ids": true}"#);
    let s = served(&host, &p, &[]);
    s.finish();
    let r = record(&s);
    // sha256("inst-1"), computed with Python's hashlib.
    assert_eq!(
        r["gitlab_instance_id"],
        "81bf91245ce284f94340671d7a16608f13c03018243300c00e5b4832c16bdfe6"
    );
}

#[test]
fn no_secret_in_the_filter_logs() {
    let host = Host::new();
    host.set_log_level(LogLevel::Trace);
    let p = logger(&host, r#"{"log_content": "always"}"#);
    served(
        &host,
        &p,
        &[
            ("x-amz-security-token", "AMZSECRET"),
            ("api-key", "AZSECRET"),
        ],
    )
    .finish();
    for entry in host.logs() {
        for secret in ["QUERYSECRET", "AMZSECRET", "AZSECRET", "eyJ"] {
            assert!(!entry.message.contains(secret), "{entry}");
        }
    }
}

#[test]
fn header_bytes_outside_utf8_do_not_kill_the_vm() {
    let host = Host::new();
    let p = logger(&host, "{}");
    let s = p.new_stream();
    let raw = vec![
        (":method".to_owned(), b"GET".to_vec()),
        (":path".to_owned(), b"/monitoring/healthz".to_vec()),
        ("user-agent".to_owned(), b"caf\xe9".to_vec()),
        ("x-request-id".to_owned(), b"r\xff1".to_vec()),
    ];
    let a = s.request_headers_raw(raw, true);
    assert!(a.is_continue(), "{a:?}");
    s.response_headers(&[(":status", "200")], true);
    s.finish();
    assert_eq!(p.failure(), None);
    let r = record(&s);
    assert_eq!((r["user_agent"].as_str(), r["correlation_id"].as_str()), (Some("caf\u{fffd}"), Some("r\u{fffd}1")));
}

#[test]
fn grpc_status_decides_the_outcome_of_a_grpc_answer() {
    let host = Host::new();
    let p = logger(&host, "{}");
    let s = p.new_stream();
    s.set_property(&["response", "grpc_status"], PropValue::Int(14));
    s.request_headers(
        &[(":method", "POST"), (":path", "/DuoWorkflow/ExecuteWorkflow"), (":authority", "gw"), ("content-type", "application/grpc")],
        false,
    );
    s.request_body(b"\0\0\0\0\0", true);
    s.response_headers(&[(":status", "200"), ("content-type", "application/grpc")], false);
    s.response_body(b"", true);
    s.finish();
    let r = record(&s);
    assert_eq!((r["status_code"].as_i64(), r["grpc_status"].as_i64()), (Some(200), Some(14)));
    assert_eq!(r["feature"], "duo_agent_platform");
    assert_eq!(host.metric_value("duo_requests_total.feature.duo_agent_platform.outcome.server_error"), Some(1));
}

/// The real duo_auth after the logger (`duo_logger -> duo_auth`): a request with no token gets
/// duo_auth's 401 local reply, and the logger's record carries that status and auth's verdict.
#[test]
fn local_reply_of_duo_auth_gets_a_record_with_its_verdict() {
    let host = Host::new();
    let log = logger(&host, "{}");
    let auth_config = r#"{"audience": "gitlab-ai-gateway", "jwks_sources": [{"name": "gitlab", "cluster": "gitlab",
        "authority": "gitlab.example.com", "jwks_path": "/oauth/discovery/keys"}]}"#;
    let auth = host.load(Filter::Auth, auth_config).unwrap();
    assert!(auth.configured(), "{:?}", auth.logs());
    let s = Stream::chain(&[&log, &auth]);
    s.set_property(&["request", "time"], PropValue::TimestampNanos(host.now_nanos() as i64));
    s.request_headers(
        &[(":method", "POST"), (":path", "/v2/code/completions"), (":authority", "gw"), ("x-request-id", "no-token"),
          ("content-type", "application/json"), ("x-gitlab-authentication-type", "oidc")],
        false,
    );
    s.request_body(br#"{"prompt_version": 1}"#, true);
    let reply = s.local_reply().expect("duo_auth answers a request without a token itself");
    s.finish();
    let r = record(&s);
    assert_eq!(r["status_code"].as_u64(), Some(u64::from(reply.status)), "{r}");
    assert_eq!(reply.status, 401);
    assert_eq!(r["auth_result"], "denied", "{r}");
    assert!(r["auth_error"].as_str().is_some_and(|e| !e.is_empty()), "{r}");
    assert_eq!(r["correlation_id"], "no-token");
    assert_eq!(r["feature"], "code_completions");
    assert!(r.get("first_chunk_duration_s").is_some(), "the local reply passed the logger on its way out: {r}");
    assert_eq!(host.metric_value("duo_requests_total.feature.code_completions.outcome.auth_denied"), Some(1));
}
