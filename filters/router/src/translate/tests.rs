//! Every decision the adapter used to make in `filter.rs`, natively: which request headers go,
//! what the platform gets, how the answer is framed, when a stream is reset, what the record says.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::decide::{self, Decision, Plan};
use duo_llm::sample;
use duo_llm::stream::Dialect;
use serde_json::json;

fn config() -> Config {
    let v = json!({
      "configuration_type": "self_hosted",
      "cluster_header": "x-duo-upstream",
      "models": {
        "codestral": { "platform": "vllm", "cluster": "vllm_codestral", "authority": "vllm.internal:8000",
          "model": "Codestral-22B-v0.1", "family": "codestral", "identifiers": ["custom_openai/Codestral-22B-v0.1"] },
        "claude": { "platform": "bedrock", "cluster": "bedrock_us_east_1", "authority": "bedrock-runtime.us-east-1.amazonaws.com",
          "model": "us.anthropic.claude-3-5-sonnet-20240620-v1:0", "family": "claude_3",
          "identifiers": ["bedrock/us.anthropic.claude-3-5-sonnet-20240620-v1:0"] }
      },
      "features": { "duo_chat": { "provider": "self_hosted", "model": "claude" } },
      "default": { "provider": "self_hosted", "model": "codestral" }
    });
    Config::parse(v.to_string().as_bytes()).unwrap()
}

const SENT: &[&str] = &[
    ":method",
    ":path",
    ":authority",
    "authorization",
    "content-type",
    "content-length",
    "content-encoding",
    "accept-encoding",
    "x-gitlab-instance-id",
    "x-gitlab-global-user-id",
    "x-gitlab-realm",
    "cookie",
    "x-request-id",
    "traceparent",
    "user-agent",
    "x-duo-upstream",
];

/// Decides and translates a request the way the adapter does (from GitLab 18.x).
fn translate(method: &str, path: &str, body: Value) -> Result<(Translation, RequestEdit), GitlabError> {
    translate_from(GitlabVersion::ASSUMED, method, path, body)
}

fn translate_from(gitlab_version: GitlabVersion, method: &str, path: &str, body: Value) -> Result<(Translation, RequestEdit), GitlabError> {
    let config = config();
    let prompts = PromptSet::new(&config.prompts).unwrap();
    let Plan::NeedBody(pending) = decide::plan(&config, method, path) else { panic!("{path} needs its body") };
    let outcome = decide::decide_body(&config, pending, &body);
    let Decision::Forward(target) = outcome.decision else { panic!("{path} is forwarded: {:?}", outcome.decision) };
    let endpoint = outcome.endpoint.unwrap();
    let ctx = RequestCtx {
        now_unix: 1_795_651_200,
        scopes: None,
        feature_flags: Some("flag_a, flag_b,flag_a"),
        gitlab_version,
        request_id: "req-1",
    };
    let len = body.to_string().len();
    Translation::request(&config, &prompts, &target, &endpoint, (&body, len), &ctx)
}

fn prompt(stream: bool) -> (Translation, RequestEdit) {
    let body = json!({"inputs": {"diff": "+a"}, "stream": stream,
        "model_metadata": {"provider": "custom_openai", "name": "codestral", "identifier": "custom_openai/Codestral-22B-v0.1"}});
    translate("POST", "/v2/prompts/generate_commit_message", body).unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[test]
fn the_platform_gets_the_prompt_and_its_credential_nothing_about_who_asked() {
    let (_, edit) = prompt(false);
    let set: Vec<&str> = edit.set.iter().map(|(k, _)| *k).collect();
    // What the platform does not get: what is neither kept nor set again.
    let mut removed: Vec<&str> = SENT.iter().copied().filter(|n| !RequestEdit::keeps(n.as_bytes()) && !set.contains(n)).collect();
    removed.sort();
    assert_eq!(
        removed,
        [
            "accept-encoding",
            "authorization",
            "content-encoding",
            "cookie",
            "x-duo-upstream",
            "x-gitlab-global-user-id",
            "x-gitlab-instance-id",
            "x-gitlab-realm",
        ],
        "GitLab's JWT, its instance and user headers, cookies, the old body's encoding and the client's \
         cluster header (the decision sets its own) go; tracing stays"
    );
    assert_eq!(set, ["content-type", "accept", ":method", ":path", "content-length"]);
    assert_eq!(edit.set[3].1, "/v1/chat/completions");
    assert_eq!(edit.set[4].1, edit.body.len().to_string());
    let body: Value = serde_json::from_slice(&edit.body).unwrap();
    assert_eq!(body["model"], "Codestral-22B-v0.1");
    assert!(body["messages"].to_string().contains("+a"));
}

#[test]
fn pseudo_headers_stay_for_the_edit_to_set() {
    for name in SENT.iter().filter(|n| n.starts_with(':')) {
        assert!(RequestEdit::keeps(name.as_bytes()), "{name}");
    }
}

#[test]
fn answer_plans_follow_status_and_streaming() {
    // no body at all: answer now (Envoy has no body buffer to replace)
    let (mut t, _) = prompt(true);
    assert_eq!(t.response_headers(Some(200), true, 0), HeadersPlan::AnswerNow);
    // an error status is held whole, even on a streaming request
    let (mut t, _) = prompt(true);
    assert_eq!(t.response_headers(Some(503), false, 0), HeadersPlan::Hold);
    assert!(t.holds_body() && t.needs_code_details());
    // a non-streaming answer is held whole
    let (mut t, _) = prompt(false);
    assert_eq!(t.response_headers(Some(200), false, 0), HeadersPlan::Hold);
    assert!(!t.needs_code_details());
    // a 2xx stream is re-framed: GitLab's content type, the old body's headers removed (the
    // adapter writes only those the upstream sent: duo_kit::Headers::changes)
    let (mut t, _) = prompt(true);
    let plan = t.response_headers(Some(200), false, 0);
    assert_eq!(plan, HeadersPlan::Stream { set: vec![("content-type", "text/event-stream; charset=utf-8")], remove: codec::BODY_HEADERS });
    assert!(["content-length", "content-encoding", "transfer-encoding"].iter().all(|h| codec::BODY_HEADERS.contains(h)));
    assert_eq!(t.usage().error.as_deref(), Some("stream_truncated"), "until it ends, the record says cut");
}

#[test]
fn a_complete_stream_becomes_gitlabs_framing_with_usage() {
    let (mut t, _) = prompt(true);
    let _ = t.response_headers(Some(200), false, 7);
    let body = sample::stream(Dialect::OpenAi, &["fix: ", "a"], duo_llm::Usage::known(Some(5), Some(2), None)).unwrap();
    let (a, b) = body.split_at(body.len() / 2);
    let first = t.chunk(a, false);
    assert!(!first.done && !first.reset);
    let last = t.chunk(b, true);
    assert!(last.done && !last.reset);
    let text = String::from_utf8([first.bytes, last.bytes].concat()).unwrap();
    assert_eq!(
        text,
        "{\"content\":\"fix: \"}\n{\"content\":\"a\"}\n{\"content\":\"\",\"usage\":{\"Codestral-22B-v0.1\":{\"input_tokens\":5,\"output_tokens\":2}}}\n"
    );
    assert_eq!((t.usage().input_tokens, t.usage().output_tokens, t.usage().error.as_deref()), (Some(5), Some(2), None));
    // the record names the model asked for, the one the stream says answered, and why it stopped
    let u = t.usage();
    assert_eq!(
        (u.request_model.as_deref(), u.response_model.as_deref(), u.finish_reason.as_deref(), u.operation.as_deref()),
        (Some("Codestral-22B-v0.1"), Some("m"), Some("stop"), Some("chat"))
    );
    // bytes after the end never reach GitLab untranslated
    let after = t.chunk(b"data: {\"junk\": true}\n\n", false);
    assert!(after.bytes.is_empty() && after.done);
}

#[test]
fn a_cut_stream_without_an_error_event_is_reset_and_logged() {
    let (mut t, _) = prompt(true);
    let _ = t.response_headers(Some(200), false, 0);
    let body = sample::stream(Dialect::OpenAi, &["partial"], duo_llm::Usage::default()).unwrap();
    let cut = t.chunk(&body[..body.len() - 14], true);
    assert!(cut.done && cut.reset, "PromptResponses has no error event: GitLab must see a reset");
    assert_eq!(t.usage().error.as_deref(), Some("stream_truncated"));
    // The platform had said why it stopped before the cut; the record keeps both.
    assert_eq!((t.usage().finish_reason.as_deref(), t.usage().request_model.as_deref()), (Some("stop"), Some("Codestral-22B-v0.1")));
    let (mut t, _) = prompt(true);
    let _ = t.response_headers(Some(200), false, 0);
    assert!(t.chunk(&body[..body.len() / 3], true).done);
    assert_eq!(t.usage().finish_reason, None, "cut before the platform said why it stopped");
}

#[test]
fn a_broken_chat_stream_ends_with_an_error_event_not_a_reset() {
    let body = json!({"messages": [{"role": "user", "content": "hi"}],
        "model_metadata": {"provider": "bedrock", "name": "claude_3", "identifier": "bedrock/us.anthropic.claude-3-5-sonnet-20240620-v1:0"}});
    let (mut t, edit) = translate("POST", "/v2/chat/agent", body).unwrap();
    assert_eq!(edit.set.iter().find(|(k, _)| *k == ":path").map(|(_, v)| v.as_str()),
        Some("/model/us.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"));
    let plan = t.response_headers(Some(200), false, 0);
    assert!(matches!(plan, HeadersPlan::Stream { ref set, .. } if set[0].1 == "application/x-ndjson; charset=utf-8"), "{plan:?}");
    let body = sample::stream(Dialect::Converse, &["Thought: x\nFinal Answer: hel"], duo_llm::Usage::default()).unwrap();
    let cut = t.chunk(&body[..body.len() / 2], true);
    assert!(cut.done && !cut.reset);
    assert!(String::from_utf8(cut.bytes).unwrap().contains("\"type\":\"error\""));    assert_eq!(t.usage().request_model.as_deref(), Some("us.anthropic.claude-3-5-sonnet-20240620-v1:0"));
    assert_eq!(t.usage().operation.as_deref(), Some("chat"));
}

#[test]
fn an_application_inference_profile_identifier_routes_to_converse() {
    let arn = "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/a1b2c3d4e5";
    let identifier = format!("bedrock/converse/{arn}");
    let v = json!({
      "configuration_type": "self_hosted",
      "cluster_header": "x-duo-upstream",
      "models": { "claude_eu": { "platform": "bedrock", "cluster": "bedrock_eu_west_1",
          "authority": "bedrock-runtime.eu-west-1.amazonaws.com", "model": arn, "family": "claude_3",
          "identifiers": [identifier] } },
      "default": { "provider": "self_hosted" }
    });
    let config = Config::parse(v.to_string().as_bytes()).unwrap();
    let prompts = PromptSet::new(&config.prompts).unwrap();
    let body = json!({"inputs": {"diff": "+a"}, "stream": false,
        "model_metadata": {"provider": "bedrock", "name": "claude_3", "identifier": identifier}});
    let Plan::NeedBody(pending) = decide::plan(&config, "POST", "/v2/prompts/generate_commit_message") else { panic!("needs its body") };
    let outcome = decide::decide_body(&config, pending, &body);
    let Decision::Forward(target) = outcome.decision else { panic!("forwarded: {:?}", outcome.decision) };
    assert_eq!(target.model.as_deref(), Some("claude_eu"));
    let ctx = RequestCtx { now_unix: 0, scopes: None, feature_flags: None, gitlab_version: GitlabVersion::ASSUMED, request_id: "req-arn" };
    let (_, edit) = Translation::request(&config, &prompts, &target, &outcome.endpoint.unwrap(), (&body, 100), &ctx).unwrap();
    let path = edit.set.iter().find(|(k, _)| *k == ":path").map(|(_, v)| v.as_str());
    assert_eq!(path, Some("/model/arn%3Aaws%3Abedrock%3Aeu-west-1%3A123456789012%3Aapplication-inference-profile%2Fa1b2c3d4e5/converse"));
}

#[test]
fn chat_answers_for_19_close_with_the_stop_reason_and_usage_and_18_gets_neither() {
    let body = json!({"messages": [{"role": "user", "content": "hi"}],
        "model_metadata": {"provider": "bedrock", "name": "claude_3", "identifier": "bedrock/us.anthropic.claude-3-5-sonnet-20240620-v1:0"}});
    let model = "us.anthropic.claude-3-5-sonnet-20240620-v1:0";
    let stream = sample::stream(Dialect::Converse, &["Thought: x\nFinal Answer: hello"], duo_llm::Usage::known(Some(40), Some(3), None)).unwrap();
    let streamed = |version: &str| {
        let (mut t, _) = translate_from(GitlabVersion::from_header(Some(version)), "POST", "/v2/chat/agent", body.clone()).unwrap();
        let _ = t.response_headers(Some(200), false, 0);
        let c = t.chunk(&stream, true);
        assert!(c.done && !c.reset);
        String::from_utf8(c.bytes).unwrap().lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).collect::<Vec<_>>()
    };
    let events = streamed("19.1.0");
    let n = events.len();
    assert_eq!(events[n - 2], json!({"type": "final_answer_delta", "data": {"text": "", "finish_reason": "stop"}}));
    assert_eq!(events[n - 1], json!({"type": "usage", "data": {"usage": {model: {"input_tokens": 40, "output_tokens": 3}}}}));
    let events = streamed("18.4.1");
    assert!(events.iter().all(|e| e["type"] == "final_answer_delta" && e["data"].get("finish_reason").is_none()), "{events:?}");

    // the same for an answer that came whole
    let mut whole_body = body.clone();
    whole_body["model_metadata"]["name"] = json!("claude_3");
    let (mut t, _) = translate_from(GitlabVersion::from_header(Some("19.0.0")), "POST", "/v2/chat/agent", whole_body).unwrap();
    let _ = t.response_headers(Some(200), false, 0);
    let converse = br#"{"output":{"message":{"role":"assistant","content":[{"text":"Thought: x\nFinal Answer: hi"}]}},"stopReason":"max_tokens","usage":{"inputTokens":9,"outputTokens":2,"totalTokens":11}}"#;
    let a = t.whole(&[], converse, None, 0);
    let events: Vec<Value> = String::from_utf8(a.body).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        events,
        vec![
            json!({"type": "final_answer_delta", "data": {"text": "hi", "finish_reason": null}}),
            json!({"type": "final_answer_delta", "data": {"text": "", "finish_reason": "length"}}),
            json!({"type": "usage", "data": {"usage": {model: {"input_tokens": 9, "output_tokens": 2}}}}),
        ]
    );
}

#[test]
fn whole_answers_are_gitlabs_with_their_length_and_without_the_old_bodys_headers() {
    let (mut t, _) = prompt(false);
    let upstream = headers(&[("content-type", "application/json"), ("content-encoding", "identity"), ("etag", "\"e\"")]);
    let _ = t.response_headers(Some(200), false, 0);
    let answer = br#"{"model":"codestral-served","choices":[{"message":{"content":"fix: a"},"finish_reason":"length"}],"usage":{"prompt_tokens":5,"completion_tokens":2}}"#;
    let a = t.whole(&upstream, answer, None, 0);
    assert_eq!(a.status, 200);
    assert_eq!(a.remove, ["content-encoding", "etag"]);
    assert_eq!(a.set.last().map(|(k, v)| (*k, v.clone())), Some(("content-length", a.body.len().to_string())));
    assert_eq!(serde_json::from_slice::<Value>(&a.body).unwrap()["content"], "fix: a");
    assert_eq!((t.usage().input_tokens, t.usage().output_tokens), (Some(5), Some(2)));
    assert_eq!((t.usage().finish_reason.as_deref(), t.usage().response_model.as_deref()), (Some("length"), Some("codestral-served")));

    // an error answer is mapped the GitLab way and the record keeps a content-free reason
    let (mut t, _) = prompt(false);
    let _ = t.response_headers(Some(429), false, 0);
    let a = t.whole(&headers(&[("retry-after", "3")]), br#"{"error": {"message": "slow down"}}"#, Some(true), 0);
    assert_ne!(a.status, 200);
    assert!(t.usage().error.is_some());
    assert_eq!((t.usage().finish_reason.as_deref(), t.usage().response_model.as_deref()), (None, None));
    assert_eq!(t.usage().request_model.as_deref(), Some("Codestral-22B-v0.1"), "the model asked for is known either way");
}

#[test]
fn content_is_captured_only_when_asked_and_cut_at_the_limit() {
    let (mut t, edit) = prompt(true);
    assert_eq!(t.content(), None);
    t.capture_content(10, &edit.body);
    let _ = t.response_headers(Some(200), false, 0);
    let body = sample::stream(Dialect::OpenAi, &["0123456789abcdef"], duo_llm::Usage::default()).unwrap();
    let _ = t.chunk(&body, true);
    let c = t.content().unwrap();
    assert_eq!(c.prompt.map(|p| p.len()), Some(10));
    assert_eq!(c.response.as_deref(), Some("{\"content\""));
}

#[test]
fn bad_bodies_are_gitlab_errors_before_anything_is_sent() {
    let body = json!({"inputs": {}, "model_metadata": {"provider": "custom_openai", "name": "codestral", "identifier": "custom_openai/Codestral-22B-v0.1"}});
    let e = translate("POST", "/v2/prompts/generate_commit_message", body).err().unwrap();
    assert_eq!(e.status, 422);
}

#[test]
fn a_fill_in_the_middle_completion_is_a_text_completion_call() {
    let body = json!({"current_file": {"file_name": "a.py", "content_above_cursor": "def f():\n", "content_below_cursor": "\nf()"},
        "model_provider": "litellm", "model_identifier": "custom_openai/Codestral-22B-v0.1"});
    let (t, edit) = translate("POST", "/v2/code/completions", body).unwrap();
    assert_eq!(edit.set.iter().find(|(k, _)| *k == ":path").map(|(_, v)| v.as_str()), Some("/v1/completions"));
    assert_eq!((t.usage().operation.as_deref(), t.usage().request_model.as_deref()), (Some("text_completion"), Some("Codestral-22B-v0.1")));
}

#[test]
fn the_forwarded_list_is_sorted_lower_case_and_holds_no_removed_header() {
    assert!(FORWARDED_REQUEST_HEADERS.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
    for name in FORWARDED_REQUEST_HEADERS {
        assert_eq!(name.to_ascii_lowercase(), *name);
        assert!(RequestEdit::keeps(name.as_bytes()));
        assert!(!codec::removed_request_headers().any(|r| r == *name), "{name} is both forwarded and removed");
    }
    for name in ["authorization", "x-gitlab-realm", "cookie", "content-length", "accept-encoding", "a", "zzz"] {
        assert!(!RequestEdit::keeps(name.as_bytes()), "{name}");
    }
}
