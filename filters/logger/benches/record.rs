//! Micro-benchmarks of duo_logger's per-request work (native; `./build.sh bench` runs them): the
//! hand-offs parsed from filter state, the record built and serialized, the metric updates.

use criterion::{Criterion, criterion_group, criterion_main};
use duo_core::handoff::{AuthInfo, RouteInfo, UsageInfo};
use duo_logger::config::LoggerConfig;
use duo_logger::metrics;
use duo_logger::record::{self, RecordInputs, RequestFacts, StreamFacts};
use std::hint::black_box;

const AUTH: &str = r#"{"result":"ok","feature":"generate_commit_message","unit_primitive":"generate_commit_message","issuer":"https://gitlab.example.com","gitlab_instance_id":"3f2b3f0e-5a0c-4c39-9d65-0a2f9a1d7c11","gitlab_global_user_id":"Vv0HqKJ9cTf3a7lKQbq2xw==","gitlab_realm":"self-managed","token_kind":"instance","scopes":["code_suggestions","duo_chat","explain_vulnerability","generate_commit_message","generate_description","summarize_comments","resolve_vulnerability","troubleshoot_job","summarize_review","review_merge_request","include_file_context","include_merge_request_context","include_issue_context","include_epic_context","include_snippet_context","include_dependency_context","include_local_git_context","include_terminal_context","include_repository_context","include_directory_context","include_commit_context","include_pipeline_job_context","include_user_defined_rule_context","complete_code","generate_code","duo_workflow_execute_workflow","glab_ask_git_command","ask_build","ask_commit","ask_epic","ask_issue","ask_merge_request","documentation_search","explain_code","refactor_code"]}"#;
const ROUTE: &str = r#"{"feature":"generate_commit_message","configuration_type":"self_hosted","provider":"self_hosted","model_name":"codestral","model_identifier":"Codestral-22B-v0.1","model_family":"codestral","platform":"vllm","upstream_cluster":"vllm_codestral","stream":false}"#;
const USAGE: &str = r#"{"upstream_status":200,"input_tokens":310,"output_tokens":17}"#;

fn fail(what: &str, e: impl std::fmt::Debug) -> ! {
    eprintln!("bench setup failed: {what}: {e:?}");
    std::process::exit(1)
}

fn request() -> RequestFacts {
    let headers = [
        ("x-request-id", "0a4f6b5e-1c1d-4a55-9d0e-52d6a5c9e7f1"),
        (":method", "POST"),
        (":path", "/v1/prompts/generate_commit_message"),
        ("user-agent", "GitLab/18.4.1-ee Ruby/3.3.8"),
        (
            "x-gitlab-instance-id",
            "3f2b3f0e-5a0c-4c39-9d65-0a2f9a1d7c11",
        ),
        ("x-gitlab-global-user-id", "Vv0HqKJ9cTf3a7lKQbq2xw=="),
        ("x-gitlab-realm", "self-managed"),
        ("x-gitlab-host-name", "gitlab.example.com"),
        ("x-gitlab-version", "18.4.1"),
        ("x-gitlab-feature-enablement-type", "duo_enterprise"),
        ("x-gitlab-feature-enabled-by-namespace-ids", "42,77"),
        ("x-gitlab-rails-send-start", "1798675199.998"),
        ("x-gitlab-enabled-feature-flags", "expanded_ai_logging"),
        (":scheme", "http"),
        (":authority", "aigw.internal:5052"),
        ("content-type", "application/json"),
    ];
    RequestFacts::from_headers(|name| {
        headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    })
}

fn stream() -> StreamFacts {
    let start = 1_798_675_200_000_000_000;
    StreamFacts {
        start_unix_ns: Some(start),
        duration_ns: None,
        response_start_unix_ns: Some(start + 900_000),
        first_chunk_unix_ns: Some(start + 950_000),
        log_unix_ns: Some(start + 1_000_000),
        status_code: Some(200),
        request_bytes: Some(1060),
        response_bytes: Some(120),
        response_code_details: Some("via_upstream".into()),
        grpc_status: None,
        source_address: Some("10.0.3.17:49152".into()),
        protocol: Some("HTTP/1.1".into()),
        response_content_type: Some("application/json".into()),
        messages_in: None,
        messages_out: None,
    }
}

fn bench_record(c: &mut Criterion) {
    let config = LoggerConfig::default();
    let request = request();
    let stream = stream();
    let mut g = c.benchmark_group("logger");
    g.bench_function("handoffs_parse", |b| {
        b.iter(|| {
            let auth: Option<AuthInfo> = serde_json::from_str(black_box(AUTH)).ok();
            let route: Option<RouteInfo> = serde_json::from_str(black_box(ROUTE)).ok();
            let usage: Option<UsageInfo> = serde_json::from_str(black_box(USAGE)).ok();
            (auth, route, usage)
        })
    });
    let auth: AuthInfo = serde_json::from_str(AUTH).unwrap_or_else(|e| fail("auth", e));
    let route: RouteInfo = serde_json::from_str(ROUTE).unwrap_or_else(|e| fail("route", e));
    let usage: UsageInfo = serde_json::from_str(USAGE).unwrap_or_else(|e| fail("usage", e));
    let inputs = RecordInputs {
        config: &config,
        request: &request,
        stream: &stream,
        auth: Some(&auth),
        route: Some(&route),
        usage: Some(&usage),
        content: None,
    };
    g.bench_function("record_build_serialize", |b| {
        b.iter(|| serde_json::Value::Object(record::build_record(black_box(&inputs))).to_string())
    });
    let rec = record::build_record(&inputs);
    g.bench_function("metric_updates", |b| {
        b.iter(|| metrics::updates(black_box(&rec)))
    });
    g.finish();
}

criterion_group!(benches, bench_record);
criterion_main!(benches);
