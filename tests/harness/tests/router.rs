//! duo_router's built module (`dist/duo_router.wasm`) in the host emulator: configure/refuse,
//! the routing headers it sets for each target kind, local replies, the body it waits for,
//! the filter state it hands on, metrics, and the body watchdog.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use duo_harness::{Action, Filter, Host, LogLevel, Plugin, Stream};
use serde_json::{Value, json};
use std::time::Duration;

const JWT: &str = "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";

fn config() -> Value {
    json!({
        "configuration_type": "hybrid",
        "cluster_header": "x-duo-upstream",
        "models": {
            "codestral": {"platform": "vllm", "cluster": "vllm_codestral", "authority": "vllm.internal:8000",
                "base_path": "/v1", "model": "Codestral-22B-v0.1", "family": "codestral", "timeout_ms": 60000,
                "identifiers": ["custom_openai/Codestral-22B-v0.1"]},
            "gpt4o": {"platform": "azure_openai", "cluster": "azure_eastus", "authority": "myres.openai.azure.com",
                "model": "gpt-4o-deploy", "family": "gpt", "api_version": "2024-10-21", "identifiers": ["azure/gpt-4o-deploy"]}
        },
        "features": {
            "code_completions": {"provider": "self_hosted", "model": "codestral"},
            "generate_commit_message": {"provider": "vendored"},
            "summarize_review": {"provider": "disabled"},
            "review_merge_request": {"provider": "aigw"}
        },
        "default": {"provider": "self_hosted"},
        "vendor": {"cluster": "cloud_gitlab", "authority": "cloud.gitlab.com", "path_prefix": "/ai"},
        "aigw": {"cluster": "python_aigw", "authority": "aigw.internal:5052"},
        "body_wait_ms": 2000
    })
}

fn router(host: &Host, config: &Value) -> Plugin {
    let p = host.load(Filter::Router, &config.to_string()).unwrap();
    assert!(p.configured(), "{:?}", p.logs());
    p
}

fn headers(path: &str) -> Vec<(&str, &str)> {
    vec![
        (":method", "POST"),
        (":path", path),
        (":authority", "gateway.internal:5052"),
        ("authorization", JWT),
        ("content-type", "application/json"),
        ("x-duo-upstream", "attacker_cluster"),
        ("x-gitlab-instance-id", "inst-1"),
    ]
}

fn prompt_body(identifier: &str, endpoint: &str) -> Vec<u8> {
    json!({"inputs": {"input": "what does it do?", "selected_text": "x = 1", "file_content": "x = 1", "language_info": "Python"},
           "stream": false,
           "model_metadata": {"provider": "openai", "name": "mistral", "identifier": identifier,
                              "endpoint": endpoint, "api_key": "sk-never-logged"}})
    .to_string()
    .into_bytes()
}

fn route(s: &Stream) -> Value {
    serde_json::from_str(&s.filter_state_str("duo_route").expect("duo_route published")).unwrap()
}

#[test]
fn refuses_bad_configurations_with_the_field_named() {
    let host = Host::new();
    let cases: &[(Value, &str)] = &[
        (json!({"configuration_type": "self_hosted", "vendor": {"cluster": "c", "authority": "a"},
                "features": {"duo_chat": {"provider": "vendored"}}}), "features.duo_chat.provider"),
        (json!({"configuration_type": "hybrid", "features": {"duo_chat_everything": {"provider": "disabled"}}}), "features.duo_chat_everything"),
        (json!({"configuration_type": "hybrid", "models": {"m": {"platform": "ollama"}}}), "models.m.platform"),
        (json!({"configuration_type": "hybrid", "default": {"provider": "self_hosted", "model": "ghost"}}), "default.model"),
    ];
    for (cfg, field) in cases {
        let p = host.load(Filter::Router, &cfg.to_string()).unwrap();
        assert!(!p.configured(), "accepted {cfg}");
        assert!(p.logged(LogLevel::Error, &format!("`{field}`")), "{field}: {:?}", p.logs());
    }
    let p = host.load(Filter::Router, "").unwrap();
    assert!(!p.configured(), "an empty configuration has no configuration_type");
}

#[test]
fn self_hosted_waits_for_the_body_then_routes_to_the_named_model() {
    let host = Host::new();
    let r = router(&host, &config());
    let s = r.new_stream();
    assert_eq!(s.request_headers(&headers("/v1/prompts/chat/explain_code"), false), Action::Pause);
    assert!(!s.request_headers_sent_upstream(), "headers must wait for the model choice");
    let body = prompt_body("azure/gpt-4o-deploy", "https://myres.openai.azure.com/");
    let (a, b) = body.split_at(40);
    assert_eq!(s.request_body(a, false), Action::Pause);
    let done = s.request_body(b, true);
    assert!(done.is_continue(), "{done:?} {:?}", s.trace());
    assert!(s.request_headers_sent_upstream());
    assert_eq!(s.request_header("x-duo-upstream").as_deref(), Some("azure_eastus"));
    assert_eq!(s.request_header(":authority").as_deref(), Some("myres.openai.azure.com"));
    assert_eq!(s.request_header("authorization"), None, "GitLab's JWT never reaches a model platform");
    // The codec rewrote the request for Azure OpenAI.
    assert_eq!(
        s.request_header(":path").as_deref(),
        Some("/openai/deployments/gpt-4o-deploy/chat/completions?api-version=2024-10-21")
    );
    assert_eq!(s.request_header("api-key").as_deref(), Some("sk-never-logged"));
    let sent: Value = serde_json::from_slice(&s.upstream_request_body()).unwrap();
    assert!(sent["messages"].as_array().is_some_and(|m| !m.is_empty()), "{sent}");
    assert_eq!(s.request_header("content-length"), Some(s.upstream_request_body().len().to_string()));
    assert_eq!(s.request_header("x-envoy-upstream-rq-timeout-ms"), None, "gpt4o has no timeout_ms");
    let info = route(&s);
    assert_eq!(info["provider"], "self_hosted");
    assert_eq!(info["model_name"], "gpt4o");
    assert_eq!(info["model_identifier"], "azure/gpt-4o-deploy");
    assert_eq!(info["platform"], "azure_openai");
    assert_eq!(info["model_family"], "gpt");
    assert_eq!(info["upstream_cluster"], "azure_eastus");
    assert_eq!(info["feature"], "duo_chat_explain_code");
    assert_eq!(info["stream"], false);
    assert!(s.filter_state_str("duo_route").is_some_and(|t| !t.contains("sk-never-logged")));
    s.response_headers(&[(":status", "200"), ("content-type", "application/json")], false);
    let azure = json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "It sets x."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}});
    s.response_body(azure.to_string().as_bytes(), true);
    assert_eq!(s.downstream_response_body_str(), "\"It sets x.\"", "GitLab gets a bare JSON string");
    let usage: Value = serde_json::from_str(&s.filter_state_str("duo_usage").expect("duo_usage")).unwrap();
    assert_eq!(usage["upstream_status"], 200);
    assert_eq!((usage["input_tokens"].as_u64(), usage["output_tokens"].as_u64()), (Some(10), Some(3)));
    s.finish();
    assert_eq!(host.metric_value("duo_router.routed.provider.self_hosted.feature.duo_chat_explain_code"), Some(1));
    assert!(r.logs().iter().all(|l| !l.message.contains("sk-never-logged") && !l.message.contains("eyJ")));
}

#[test]
fn explicit_model_sets_timeout_and_ignores_gitlabs_choice() {
    let host = Host::new();
    let r = router(&host, &config());
    let s = r.new_stream();
    assert_eq!(s.request_headers(&headers("/v2/code/completions"), false), Action::Pause);
    let body = json!({"current_file": {"file_name": "a.py", "content_above_cursor": "def f(", "content_below_cursor": ""},
        "model_provider": "litellm", "model_name": "codestral", "model_identifier": "custom_openai/whatever",
        "model_endpoint": "http://elsewhere:1/v1", "stream": true, "prompt_version": 2});
    assert!(s.request_body(body.to_string().as_bytes(), true).is_continue(), "{:?}", s.trace());
    assert_eq!(s.request_header("x-duo-upstream").as_deref(), Some("vllm_codestral"));
    assert_eq!(s.request_header("x-envoy-upstream-rq-timeout-ms").as_deref(), Some("60000"));
    assert_eq!(route(&s)["stream"], true);
}

#[test]
fn vendored_and_aigw_go_at_headers_with_gitlabs_request_untouched() {
    let host = Host::new();
    let r = router(&host, &config());
    let s = r.new_stream();
    let a = s.request_headers(&headers("/v1/prompts/generate_commit_message?x=1"), false);
    assert!(a.is_continue(), "vendored needs no body: {a:?}");
    assert_eq!(s.request_header("x-duo-upstream").as_deref(), Some("cloud_gitlab"));
    assert_eq!(s.request_header(":authority").as_deref(), Some("cloud.gitlab.com"));
    assert_eq!(s.request_header(":path").as_deref(), Some("/ai/v1/prompts/generate_commit_message?x=1"));
    assert_eq!(s.request_header("authorization").as_deref(), Some(JWT));
    assert_eq!(s.request_header("x-gitlab-instance-id").as_deref(), Some("inst-1"));
    let body = prompt_body("custom_openai/Codestral-22B-v0.1", "http://vllm.internal:8000/v1");
    assert!(s.request_body(&body, true).is_continue());
    assert_eq!(s.upstream_request_body(), body, "vendored bodies pass unchanged");
    assert_eq!(route(&s)["provider"], "vendored");

    let s = r.new_stream();
    assert!(s.request_headers(&headers("/v1/prompts/review_merge_request"), false).is_continue());
    assert_eq!(s.request_header("x-duo-upstream").as_deref(), Some("python_aigw"));
    assert_eq!(s.request_header(":authority").as_deref(), Some("aigw.internal:5052"));
    assert_eq!(s.request_header(":path").as_deref(), Some("/v1/prompts/review_merge_request"));
    assert_eq!(s.request_header("authorization").as_deref(), Some(JWT));
}

#[test]
fn refusals_reach_no_upstream() {
    let host = Host::new();
    let r = router(&host, &config());
    let cfg = config();
    let cases: Vec<(&str, Option<Vec<u8>>, u32, String)> = vec![
        ("/v1/prompts/summarize_review", None, 403, r#"{"detail":"Unauthorized to access summarize_review"}"#.into()),
        ("/v1/nothing/here", None, 404, r#"{"detail":"Not Found"}"#.into()),
        ("/v1/prompts/nope%2Fnope", None, 404, r#"{"detail":"Prompt 'nope/nope' not found"}"#.into()),
        (
            "/v1/prompts/chat/fix_code",
            Some(prompt_body("custom_openai/Unlisted", "http://vllm.internal:8000/v1")),
            403,
            r#"{"detail":"Unauthorized to access model 'custom_openai/Unlisted': not configured in this AI gateway"}"#.into(),
        ),
        (
            "/v1/prompts/chat/fix_code",
            Some(prompt_body("custom_openai/Codestral-22B-v0.1", "http://10.0.0.66:8000/v1")),
            403,
            r#"{"detail":"Unauthorized to access model 'custom_openai/Codestral-22B-v0.1' at 'http://10.0.0.66:8000/v1': this AI gateway serves it elsewhere"}"#.into(),
        ),
        ("/v1/prompts/chat/fix_code", Some(b"not json".to_vec()), 422, String::new()),
    ];
    for (path, body, status, want) in cases {
        let s = r.new_stream();
        let a = s.request_headers(&headers(path), body.is_none());
        if let Some(b) = &body {
            assert_eq!(a, Action::Pause, "{path}");
            s.request_body(b, true);
        }
        let reply = s.local_reply().unwrap_or_else(|| panic!("{path}: no local reply; {:?}", s.trace()));
        assert_eq!(reply.status, status, "{path}");
        if !want.is_empty() {
            assert_eq!(String::from_utf8_lossy(&reply.body), want, "{path}");
        }
        assert!(!s.request_headers_sent_upstream(), "{path} reached an upstream");
        assert!(route(&s)["error"].is_string(), "{path}");
        s.finish();
    }
    assert_eq!(host.metric_value("duo_router.refused.reason.unknown_model"), Some(1));
    assert_eq!(host.metric_value("duo_router.refused.reason.endpoint_mismatch"), Some(1));
    assert_eq!(host.metric_value("duo_router.refused.reason.disabled"), Some(1));
    assert_eq!(cfg["configuration_type"], "hybrid");
}

#[test]
fn oversized_bodies_get_413_by_header_or_while_buffering() {
    let host = Host::new();
    let mut cfg = config();
    cfg["max_request_bytes"] = json!(100);
    let r = router(&host, &cfg);
    let s = r.new_stream();
    let mut h = headers("/v1/prompts/chat/explain_code");
    h.push(("content-length", "5000"));
    s.request_headers(&h, false);
    assert_eq!(s.local_reply().map(|l| l.status), Some(413));

    let s = r.new_stream();
    assert_eq!(s.request_headers(&headers("/v1/prompts/chat/explain_code"), false), Action::Pause);
    s.request_body(&[b' '; 60], false);
    assert!(s.local_reply().is_none());
    s.request_body(&[b' '; 60], false);
    assert_eq!(s.local_reply().map(|l| l.status), Some(413));
    assert!(!s.request_headers_sent_upstream());
}

#[test]
fn trailers_end_the_body_too() {
    let host = Host::new();
    let r = router(&host, &config());
    let s = r.new_stream();
    s.request_headers(&headers("/v1/prompts/chat/explain_code"), false);
    s.request_body(&prompt_body("custom_openai/Codestral-22B-v0.1", ""), false);
    let a = s.request_trailers(&[("x-trailer", "1")]);
    assert!(a.is_continue(), "{a:?} {:?}", s.trace());
    assert_eq!(s.request_header("x-duo-upstream").as_deref(), Some("vllm_codestral"));
}

#[test]
fn watchdog_answers_500_when_the_body_never_comes() {
    let host = Host::new();
    let r = router(&host, &config());
    assert!(r.tick_period().is_some_and(|p| p <= Duration::from_secs(1)), "{:?}", r.tick_period());
    let s = r.new_stream();
    assert_eq!(s.request_headers(&headers("/v1/prompts/chat/explain_code"), false), Action::Pause);
    host.advance(Duration::from_millis(1500));
    r.tick();
    assert!(s.local_reply().is_none(), "fired before body_wait_ms");
    // A stream that got its body in time is forgotten by the watchdog.
    let ok = r.new_stream();
    ok.request_headers(&headers("/v1/prompts/chat/explain_code"), false);
    ok.request_body(&prompt_body("custom_openai/Codestral-22B-v0.1", ""), true);
    host.advance(Duration::from_millis(600));
    r.tick();
    let reply = s.local_reply().expect("the watchdog answers the stuck request");
    assert_eq!(reply.status, 500);
    assert!(String::from_utf8_lossy(&reply.body).contains("allow_on_headers_stop_iteration"));
    assert!(r.logged(LogLevel::Error, "allow_on_headers_stop_iteration"));
    assert_eq!(route(&s)["error"], "body_never_arrived");
    assert_eq!(host.metric_value("duo_router.body_never_arrived"), Some(1));
    assert!(ok.local_reply().is_none());
    host.advance(Duration::from_secs(10));
    r.tick();
    assert_eq!(host.metric_value("duo_router.body_never_arrived"), Some(1), "fires once per stream");
}

#[test]
fn streamed_answers_are_translated_chunk_by_chunk() {
    let host = Host::new();
    let r = router(&host, &config());
    let s = r.new_stream();
    s.request_headers(&headers("/v1/prompts/chat/explain_code"), false);
    let mut body: Value = serde_json::from_slice(&prompt_body("custom_openai/Codestral-22B-v0.1", "http://vllm.internal:8000/v1")).unwrap();
    body["stream"] = json!(true);
    assert!(s.request_body(body.to_string().as_bytes(), true).is_continue(), "{:?}", s.trace());
    let sent: Value = serde_json::from_slice(&s.upstream_request_body()).unwrap();
    assert_eq!(sent["stream"], true, "a streaming request asks the platform for a stream: {sent}");
    s.response_headers(&[(":status", "200"), ("content-type", "text/event-stream")], false);
    assert_eq!(s.response_header("content-type").as_deref(), Some("text/event-stream; charset=utf-8"));
    let early: Value = serde_json::from_str(&s.filter_state_str("duo_usage").expect("provisional duo_usage")).unwrap();
    assert_eq!(early["error"], "stream_truncated", "until the stream ends it counts as cut");
    let chunk = |text: &str| format!("data: {}\n\n", json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
        "model": "Codestral-22B-v0.1", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]}));
    s.response_body(chunk("It sets").as_bytes(), false);
    s.response_body(format!("{}data: [DONE]\n\n", chunk(" x.")).as_bytes(), true);
    assert_eq!(s.downstream_response_body_str(), "It sets x.", "raw text chunks, not SSE");
    assert!(s.response_complete_downstream());
    let done: Value = serde_json::from_str(&s.filter_state_str("duo_usage").expect("duo_usage")).unwrap();
    assert_eq!((done["upstream_status"].as_u64(), done.get("error")), (Some(200), None), "{done}");
    s.finish();
}

#[test]
fn upstream_errors_are_mapped_for_gitlab() {
    let host = Host::new();
    let r = router(&host, &config());
    let s = r.new_stream();
    s.request_headers(&headers("/v1/prompts/chat/explain_code"), false);
    s.request_body(&prompt_body("custom_openai/Codestral-22B-v0.1", "http://vllm.internal:8000/v1"), true);
    assert_eq!(s.response_headers(&[(":status", "401"), ("content-type", "application/json")], false), Action::Pause);
    s.response_body(br#"{"error":"Unauthorized"}"#, true);
    assert_eq!(s.response_header(":status").as_deref(), Some("421"), "a model server's HTTP error is 421 on prompt endpoints");
    let answer: Value = serde_json::from_str(&s.downstream_response_body_str()).unwrap();
    assert_eq!(answer["detail"], "401: Unauthorized", "GitLab's code and reason phrase");
    let usage: Value = serde_json::from_str(&s.filter_state_str("duo_usage").expect("duo_usage")).unwrap();
    assert_eq!(usage["upstream_status"], 401);
    s.finish();
}

/// Header values outside UTF-8 (legal obs-text: a Latin-1 `User-Agent`, an upstream's note) on
/// both sides of a self-hosted call: the router reads whole header maps as bytes, so neither
/// kills the VM, and the answer is still translated.
#[test]
fn header_values_outside_utf8_do_not_kill_the_vm() {
    let host = Host::new();
    let r = router(&host, &config());
    let s = r.new_stream();
    let mut request: Vec<(String, Vec<u8>)> =
        headers("/v1/prompts/chat/explain_code").into_iter().map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec())).collect();
    request.push(("user-agent".to_owned(), b"caf\xe9-client/1.0".to_vec()));
    assert_eq!(s.request_headers_raw(request, false), Action::Pause);
    let done = s.request_body(&prompt_body("custom_openai/Codestral-22B-v0.1", "http://vllm.internal:8000/v1"), true);
    assert!(done.is_continue(), "{done:?} {:?}", s.trace());
    assert_eq!(s.request_header("x-duo-upstream").as_deref(), Some("vllm_codestral"));
    let response = vec![
        (":status".to_owned(), b"200".to_vec()),
        ("content-type".to_owned(), b"application/json".to_vec()),
        ("x-upstream-note".to_owned(), b"r\xe9sum\xe9".to_vec()),
    ];
    assert_eq!(s.response_headers_raw(response, false), Action::Pause);
    let answer = json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "Codestral-22B-v0.1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "It sets x."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}});
    s.response_body(answer.to_string().as_bytes(), true);
    assert!(r.failure().is_none(), "the VM died: {:?}", r.failure());
    assert_eq!(s.downstream_response_body_str(), "\"It sets x.\"");
    s.finish();
}

/// A self-hosted prompt request that reached the vLLM model (`stream` as asked).
fn routed_to_vllm(r: &duo_harness::Plugin, stream: bool) -> Stream {
    let s = r.new_stream();
    s.request_headers(&headers("/v1/prompts/chat/explain_code"), false);
    let mut body: Value = serde_json::from_slice(&prompt_body("custom_openai/Codestral-22B-v0.1", "http://vllm.internal:8000/v1")).unwrap();
    body["stream"] = json!(stream);
    assert!(s.request_body(body.to_string().as_bytes(), true).is_continue(), "{:?}", s.trace());
    s
}

fn usage(s: &Stream) -> Value {
    serde_json::from_str(&s.filter_state_str("duo_usage").expect("duo_usage published")).unwrap()
}

/// Regression (a 200 with `content-length: 0`, an empty 503 from a load balancer): the answer
/// ends at its headers, Envoy has no body buffer to replace, and the SDK panics on the status
/// of that write. GitLab gets a GitLab-shaped answer, the VM lives, the record has the cause.
#[test]
fn an_upstream_answer_without_a_body_gets_a_gitlab_answer_and_the_vm_lives() {
    let host = Host::new();
    let r = router(&host, &config());
    for (stream, status, want_status) in [(false, "200", 503), (true, "200", 503), (false, "503", 421), (true, "503", 421)] {
        let s = routed_to_vllm(&r, stream);
        s.response_headers(&[(":status", status), ("content-length", "0")], true);
        assert!(r.failure().is_none(), "the VM died on an empty {status}: {:?}", r.failure());
        let reply = s.local_reply().unwrap_or_else(|| panic!("empty {status}: no answer; {:?}", s.trace()));
        assert_eq!(reply.status, want_status, "empty {status} (stream {stream})");
        assert_eq!(s.response_header("content-type").as_deref(), Some("application/json"));
        let body: Value = serde_json::from_slice(&reply.body).unwrap();
        assert!(body["detail"].is_string(), "{body}");
        assert!(s.response_complete_downstream(), "{:?}", s.trace());
        let u = usage(&s);
        assert_eq!(u["upstream_status"].to_string(), status);
        assert!(u["error"].is_string(), "the record names the cause: {u}");
        s.finish();
    }
    // The same VM still serves.
    let s = routed_to_vllm(&r, false);
    s.response_headers(&[(":status", "200"), ("content-type", "application/json")], false);
    let answer = json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "Codestral-22B-v0.1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]});
    s.response_body(answer.to_string().as_bytes(), true);
    assert_eq!(s.downstream_response_body_str(), "\"ok\"");
}

/// Regression: the router rebuilds the body, so no header describing GitLab's body (its
/// encoding, length, digests) reaches the model, and none describing the upstream's answer
/// reaches GitLab.
#[test]
fn headers_describing_a_replaced_body_go_with_it() {
    let host = Host::new();
    let r = router(&host, &config());
    let s = r.new_stream();
    let mut h = headers("/v1/prompts/chat/explain_code");
    let stale = [("content-encoding", "gzip"), ("content-md5", "Q2hlY2sgSW50ZWdyaXR5IQ=="), ("digest", "sha-256=X48E9q"),
        ("content-digest", "sha-256=:X48E9q:"), ("repr-digest", "sha-256=:X48E9q:"), ("transfer-encoding", "chunked")];
    h.extend(stale);
    s.request_headers(&h, false);
    let body = prompt_body("custom_openai/Codestral-22B-v0.1", "http://vllm.internal:8000/v1");
    assert!(s.request_body(&body, true).is_continue(), "{:?}", s.trace());
    for (name, _) in stale {
        assert_eq!(s.request_header(name), None, "{name} described GitLab's body, not the one sent");
    }
    assert_eq!(s.request_header("content-length"), Some(s.upstream_request_body().len().to_string()));

    s.response_headers(&[(":status", "200"), ("content-type", "application/json"), ("content-encoding", "identity"),
        ("etag", "\"abc\""), ("content-md5", "xyz"), ("content-length", "999"), ("x-request-id", "r1")], false);
    let answer = json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "Codestral-22B-v0.1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]});
    s.response_body(answer.to_string().as_bytes(), true);
    assert_eq!(s.downstream_response_body_str(), "\"ok\"");
    for name in ["content-encoding", "etag", "content-md5"] {
        assert_eq!(s.response_header(name), None, "{name} described the upstream's answer");
    }
    assert_eq!(s.response_header("content-length").as_deref(), Some("4"));
    assert_eq!(s.response_header("x-request-id").as_deref(), Some("r1"), "other headers pass");

    // Streams too.
    let s = routed_to_vllm(&r, true);
    s.response_headers(&[(":status", "200"), ("content-type", "text/event-stream"), ("content-encoding", "identity"), ("etag", "\"e\"")], false);
    assert_eq!((s.response_header("content-encoding"), s.response_header("etag")), (None, None));
}

/// Fail closed: when replacing the answer's body fails, GitLab never gets the upstream's
/// bytes under the translated headers: a 503 before the response started, a reset after.
#[test]
fn a_failed_body_replacement_fails_closed() {
    let host = Host::new();
    let r = router(&host, &config());
    held_answer_fails_closed(&r, "proxy_set_buffer_bytes");
    assert!(r.logged(LogLevel::Error, "failing closed"));

    let s = routed_to_vllm(&r, true);
    s.response_headers(&[(":status", "200"), ("content-type", "text/event-stream")], false);
    let chunk = format!("data: {}\n\n", json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
        "model": "m", "choices": [{"index": 0, "delta": {"content": "secret upstream bytes"}, "finish_reason": null}]}));
    s.fail_host_call("proxy_set_buffer_bytes");
    s.response_body(chunk.as_bytes(), false);
    assert!(r.failure().is_none(), "{:?}", r.failure());
    assert!(s.was_reset(), "a stream whose chunk could not be replaced must not go on; {:?}", s.trace());
    assert!(!s.downstream_response_body_str().contains("secret upstream bytes"));
    assert_eq!(usage(&s)["error"], "response_rewrite_failed");

    // Request side: the rebuilt request body cannot be written: nothing goes to the model.
    let s = r.new_stream();
    s.request_headers(&headers("/v1/prompts/chat/explain_code"), false);
    s.fail_host_call("proxy_set_buffer_bytes");
    s.request_body(&prompt_body("custom_openai/Codestral-22B-v0.1", "http://vllm.internal:8000/v1"), true);
    assert_eq!(s.local_reply().map(|l| l.status), Some(503));
    assert!(!s.request_headers_sent_upstream());
}

/// Fail closed on header writes too: every header a translation removes or sets is its own host
/// call (duo_kit::write_request_headers), so any one refused write stops the request (GitLab's
/// headers must never reach the model half-removed) or the held answer (never the upstream's
/// headers under a translated body).
#[test]
fn a_failed_header_write_fails_closed() {
    let host = Host::new();
    let r = router(&host, &config());
    for call in ["proxy_remove_header_map_value", "proxy_replace_header_map_value"] {
        let s = r.new_stream();
        s.request_headers(&headers("/v1/prompts/chat/explain_code"), false);
        s.fail_host_call(call);
        s.request_body(&prompt_body("custom_openai/Codestral-22B-v0.1", "http://vllm.internal:8000/v1"), true);
        assert!(r.failure().is_none(), "{call}: {:?}", r.failure());
        assert_eq!(s.local_reply().map(|l| l.status), Some(503), "{call}: {:?}", s.trace());
        assert!(!s.request_headers_sent_upstream(), "{call}");
        assert!(r.logged(LogLevel::Error, "could not set the upstream headers"), "{call}");
    }

    held_answer_fails_closed(&r, "proxy_replace_header_map_value");
}

/// A held (non-streaming) vLLM answer whose rewrite meets the refused host call `call`: GitLab
/// gets a complete GitLab-shaped 503, never the upstream's bytes, and the record says why.
fn held_answer_fails_closed(r: &duo_harness::Plugin, call: &str) {
    let upstream = json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "Codestral-22B-v0.1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "secret upstream bytes"}, "finish_reason": "stop"}]});
    let s = routed_to_vllm(r, false);
    s.response_headers(&[(":status", "200"), ("content-type", "application/json")], false);
    s.fail_host_call(call);
    s.response_body(upstream.to_string().as_bytes(), true);
    assert!(r.failure().is_none(), "{call}: {:?}", r.failure());
    let reply = s.local_reply().unwrap_or_else(|| panic!("{call}: no fail-closed answer; {:?}", s.trace()));
    assert_eq!((reply.status, String::from_utf8_lossy(&reply.body).into_owned()), (503, r#"{"detail":"Inference failed"}"#.to_owned()), "{call}");
    assert!(!s.downstream_response_body_str().contains("secret upstream bytes"), "{call}");
    assert_eq!(usage(&s)["error"], "response_rewrite_failed", "{call}");
}

/// The Agent Platform (gRPC) on the built module: forwarded to the Duo Workflow Service at the
/// request headers (no body wait), GitLab's token kept; refusals gRPC-shaped.
#[test]
fn agent_platform_calls_go_to_the_workflow_service_or_get_grpc_refusals() {
    let host = Host::new();
    let mut cfg = config();
    cfg["agent_platform"] = json!({"cluster": "duo_workflow", "authority": "dws.internal:50052"});
    cfg["features"]["duo_agent_platform"] = json!({"provider": "self_hosted"});
    let p = router(&host, &cfg);
    let metadata = json!({"provider": "custom_openai", "endpoint": "http://vllm.internal:8000/v1", "api_key": "k",
                          "identifier": "custom_openai/Codestral-22B-v0.1", "feature_setting": "duo_agent_platform"})
    .to_string();
    let grpc = |path: &'static str, md: Option<&str>| {
        let s = p.new_stream();
        let mut h = vec![(":method", "POST"), (":path", path), (":authority", "gw"), ("authorization", JWT),
                         ("content-type", "application/grpc")];
        if let Some(m) = md {
            h.push(("x-gitlab-agent-platform-model-metadata", m));
        }
        let a = s.request_headers(&h, false);
        (s, a)
    };
    let (s, a) = grpc("/DuoWorkflow/ExecuteWorkflow", Some(&metadata));
    assert_eq!(a, Action::Continue, "{:?}", s.trace());
    assert_eq!(s.request_header("x-duo-upstream").as_deref(), Some("duo_workflow"));
    assert_eq!(s.request_header(":authority").as_deref(), Some("dws.internal:50052"));
    assert_eq!(s.request_header("authorization").as_deref(), Some(JWT));
    assert_eq!(s.request_header(":path").as_deref(), Some("/DuoWorkflow/ExecuteWorkflow"));

    let elsewhere = metadata.replace("vllm.internal:8000", "attacker.example:8000");
    for (path, md, code) in [("/DuoWorkflow/ListTools", Some(elsewhere.as_str()), "7"), ("/DuoWorkflow/Nope", None, "12"),
                             ("/DuoWorkflow/ListTools", Some("not json"), "3")] {
        let (s, _) = grpc(path, md);
        let r = s.local_reply().unwrap_or_else(|| panic!("{path}: no local reply: {:?}", s.trace()));
        assert_eq!((r.status, r.header("content-type"), r.header("grpc-status")), (200, Some("application/grpc"), Some(code)), "{path}");
        assert!(r.header("grpc-message").is_some_and(|m| !m.starts_with('{')), "{path}: {r:?}");
        assert!(r.body.is_empty() && !s.request_headers_sent_upstream(), "{path}");
    }
}
