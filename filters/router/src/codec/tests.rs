#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use serde_json::json;

pub(crate) fn model(v: Value) -> ModelConfig {
    serde_json::from_value(v).unwrap()
}

fn vllm(family: &str) -> ModelConfig {
    model(json!({"platform": "vllm", "cluster": "c", "authority": "vllm:8000", "model": "served", "family": family}))
}

fn call<'a>(kind: EndpointKind, prompt_id: Option<&'a str>, m: &'a ModelConfig, set: &'a PromptSet) -> Call<'a> {
    Call { kind, prompt_id, model: m, prompts: set, now_unix: 1_798_675_200 }
}

fn body_json(r: &UpstreamRequest) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

const SECRET: &str = "sk-very-secret-key";

#[test]
fn bedrock_model_ids_are_encoded_once_for_sigv4() {
    assert_eq!(
        bedrock::path("us.anthropic.claude-3-5-sonnet-20240620-v1:0", Wire::BedrockConverse, false),
        "/model/us.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
    assert_eq!(
        bedrock::path(
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama3-3-70b-instruct-v1:0",
            Wire::BedrockLlama,
            true
        ),
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.meta.llama3-3-70b-instruct-v1%3A0/invoke-with-response-stream"
    );
    // Already encoded: left alone.
    assert_eq!(bedrock::encode_model_id("a%3A0"), "a%3A0");
    assert_eq!(bedrock::invoke_wire("us.anthropic.claude-3-5-sonnet-20240620-v1:0"), Some(Wire::BedrockAnthropic));
    assert_eq!(bedrock::invoke_wire("mistral.mistral-7b-instruct-v0:2"), Some(Wire::BedrockMistral));
    assert_eq!(bedrock::invoke_wire("arn:aws:bedrock:us-east-1:1:inference-profile/us.meta.llama3-1-8b-instruct-v1:0"), Some(Wire::BedrockLlama));
    assert_eq!(bedrock::invoke_wire("amazon.titan-text-express-v1"), None);
}

#[test]
fn newer_bedrock_identifiers_cross_region_and_application_profiles() {
    // Cross-region inference profiles (GitLab 18.5+ lists them): the prefix is not the provider.
    for prefix in ["us", "eu", "apac", "global"] {
        let id = format!("{prefix}.anthropic.claude-sonnet-4-20250514-v1:0");
        assert_eq!(bedrock::invoke_wire(&id), Some(Wire::BedrockAnthropic), "{id}");
        assert_eq!(bedrock::path(&id, Wire::BedrockConverse, true), format!("/model/{prefix}.anthropic.claude-sonnet-4-20250514-v1%3A0/converse-stream"));
    }
    // An application inference profile (`bedrock/converse/<ARN>` in GitLab) names no model
    // family: Converse only, the ARN as one encoded path segment.
    let arn = "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/a1b2c3d4e5";
    assert_eq!(bedrock::invoke_wire(arn), None);
    assert_eq!(
        bedrock::path(arn, Wire::BedrockConverse, false),
        "/model/arn%3Aaws%3Abedrock%3Aeu-west-1%3A123456789012%3Aapplication-inference-profile%2Fa1b2c3d4e5/converse"
    );
}

#[test]
fn the_gitlab_api_key_goes_only_to_the_auth_header() {
    let set = PromptSet::builtin().unwrap();
    let body = json!({"inputs": {"diff": "x"}, "model_metadata": {"api_key": SECRET, "name": "mistral"}}).to_string();
    for (m, header) in [
        (vllm("mistral"), "authorization"),
        (
            model(json!({"platform": "azure_openai", "cluster": "c", "authority": "a.openai.azure.com", "model": "d", "family": "gpt"})),
            "api-key",
        ),
    ] {
        let r = build_upstream_request(&call(EndpointKind::PromptV1, Some("generate_commit_message"), &m, &set), body.as_bytes()).unwrap();
        let sent: Vec<_> = r.set_headers.iter().filter(|(_, v)| v.contains(SECRET)).map(|(k, _)| *k).collect();
        assert_eq!(sent, vec![header]);
        assert!(!String::from_utf8_lossy(&r.body).contains(SECRET));
        assert!(!r.path.contains(SECRET));
        assert!(removed_request_headers().any(|h| h == "authorization"));
    }
    // `credentials: envoy`: no key at all.
    let mut m = vllm("mistral");
    m.credentials = Some(Credentials::Envoy);
    let r = build_upstream_request(&call(EndpointKind::PromptV1, Some("generate_commit_message"), &m, &set), body.as_bytes()).unwrap();
    assert!(r.set_headers.iter().all(|(k, v)| *k != "authorization" && !v.contains(SECRET)));
}

#[test]
fn fim_families_use_completions_with_a_raw_prompt_and_no_suffix() {
    let set = PromptSet::builtin().unwrap();
    let body = json!({
        "current_file": {"file_name": "a.py", "content_above_cursor": "def f():\n", "content_below_cursor": "\nf()"},
        "model_api_key": SECRET, "stream": false, "prompt_version": 2, "model_name": "codestral"
    })
    .to_string();
    let m = vllm("codestral");
    let r = build_upstream_request(&call(EndpointKind::CodeCompletions { direct: false }, None, &m, &set), body.as_bytes()).unwrap();
    assert_eq!(r.path, "/v1/completions");
    let b = body_json(&r);
    assert_eq!(b["prompt"], json!("[SUFFIX]\nf()[PREFIX]def f():\n"));
    assert!(b.get("suffix").is_none());
    assert_eq!(b["max_tokens"], json!(96));
    assert_eq!(b["model"], json!("served"));
    assert_eq!(r.answer.wire, Wire::OpenaiCompletions);
    assert_eq!(r.answer.post, PostProcess::None);
}

#[test]
fn params_merge_feature_defaults_then_model_then_request() {
    let set = PromptSet::builtin().unwrap();
    let mut m = vllm("mistral");
    m.params.insert("temperature".into(), json!(0.7));
    m.params.insert("max_tokens".into(), json!(300));
    m.params.insert("top_p".into(), json!(0.9));
    let body = json!({"prompt_components": [{"type": "prompt", "metadata": {"source": "GitLab EE", "version": "18.4.0"}, "payload": {
        "content": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
        "provider": "litellm", "model": "mistral",
        "params": {"max_tokens_to_sample": 50, "temperature": 0.1, "stop_sequences": ["Observation:"]}}}], "stream": true})
    .to_string();
    let r = build_upstream_request(&call(EndpointKind::ChatInvokable, Some("explain_code"), &m, &set), body.as_bytes()).unwrap();
    let b = body_json(&r);
    assert_eq!(b["temperature"], json!(0.1));
    assert_eq!(b["top_p"], json!(0.9));
    assert_eq!(b["max_tokens"], json!(50));
    assert_eq!(b["stop"], json!(["Observation:"]));
    assert_eq!(b["stream"], json!(true));
    assert_eq!(b["stream_options"], json!({"include_usage": true}));
    // Mistral has no system role: folded into the user turn.
    assert_eq!(b["messages"], json!([{"role": "user", "content": "S\n\nU"}]));
    assert!(r.stream);
    assert_eq!(r.set_headers.iter().find(|(k, _)| *k == "accept").map(|(_, v)| v.as_str()), Some("text/event-stream"));
}

#[test]
fn a_600_kb_body_is_translated_and_a_huge_one_is_413() {
    let set = PromptSet::builtin().unwrap();
    let m = vllm("codestral");
    let above = "x = 1\n".repeat(100_000);
    let body = json!({"current_file": {"file_name": "a.py", "content_above_cursor": above, "content_below_cursor": ""}}).to_string();
    assert!(body.len() > 600_000);
    let r = build_upstream_request(&call(EndpointKind::CodeCompletions { direct: false }, None, &m, &set), body.as_bytes()).unwrap();
    assert!(r.body.len() > 600_000);
    let big = vec![b' '; MAX_REQUEST_BYTES + 1];
    let e = build_upstream_request(&call(EndpointKind::CodeCompletions { direct: false }, None, &m, &set), &big).unwrap_err();
    assert_eq!(e.status, 413);
}

#[test]
fn bad_bodies_and_missing_inputs_are_422_unknown_prompts_404() {
    let set = PromptSet::builtin().unwrap();
    let m = vllm("mistral");
    let e = build_upstream_request(&call(EndpointKind::PromptV1, Some("generate_commit_message"), &m, &set), b"{not json").unwrap_err();
    assert_eq!(e.status, 422);
    let e = build_upstream_request(&call(EndpointKind::PromptV1, Some("generate_commit_message"), &m, &set), br#"{"inputs":{}}"#).unwrap_err();
    assert_eq!(e.status, 422);
    assert!(e.body.contains("diff"));
    let e = build_upstream_request(&call(EndpointKind::PromptV2, Some("nope"), &m, &set), br#"{"inputs":{}}"#).unwrap_err();
    assert_eq!(e.status, 404);
    let e = build_upstream_request(&call(EndpointKind::CodeGenerations, None, &m, &set), br#"{"current_file":{}}"#).unwrap_err();
    assert_eq!(e.status, 422);
    assert!(e.body.contains("prompt"), "{}", e.body);
}

#[test]
fn fences_are_stripped_only_when_wrapping_the_answer() {
    assert_eq!(strip_fences("```python\nx = 1\n```"), "x = 1");
    assert_eq!(strip_fences("  x = 1"), "  x = 1");
    assert_eq!(strip_fences("```\nx\n"), "x");
}

fn resp<'a>(status: u32, headers: &'a [(String, String)], body: &'a [u8]) -> UpstreamResponse<'a> {
    UpstreamResponse { status, headers, body, via_upstream: Some(true) }
}

fn ctx(shape: AnswerShape, wire: Wire) -> AnswerCtx {
    AnswerCtx {
        shape,
        wire,
        platform: Platform::Vllm,
        stream: false,
        model: "m".into(),
        family: Family::Mistral,
        lang: None,
        reported_model: None,
        feature_flags: Vec::new(),
        chat_model: None,
        post: PostProcess::None,
        gitlab: duo_core::version::GitlabVersion::ASSUMED,
        ingress: None,
        chat_tools: None,
    }
}

#[test]
fn error_mapping_follows_gitlab() {
    let h = |v: &[(&str, &str)]| v.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect::<Vec<_>>();
    // vLLM new shape on a prompt endpoint → 421 "<code>: <standard reason phrase>" (GitLab's
    // gateway); the model's own message only in the log.
    let hs = h(&[]);
    let body = br#"{"error":{"message":"max_tokens too large","type":"BadRequestError","param":null,"code":400}}"#;
    let a = translate_response(&ctx(AnswerShape::PromptV1, Wire::OpenaiChat), &resp(400, &hs, body), 0);
    assert_eq!((a.status, String::from_utf8_lossy(&a.body).as_ref()), (421, r#"{"detail":"400: Bad Request"}"#));
    assert_eq!(a.error.as_deref(), Some("upstream 400 BadRequestError"));
    // Old flat shape.
    let body = br#"{"object":"error","message":"bad","type":"BadRequestError","param":null,"code":400}"#;
    let a = translate_response(&ctx(AnswerShape::PromptV2, Wire::OpenaiChat), &resp(400, &hs, body), 0);
    assert_eq!(String::from_utf8_lossy(&a.body), r#"{"detail":"400: Bad Request"}"#);
    // Code endpoints: 503.
    let a = translate_response(&ctx(AnswerShape::CodeSuggestions, Wire::OpenaiChat), &resp(400, &hs, body), 0);
    assert_eq!((a.status, String::from_utf8_lossy(&a.body).as_ref()), (503, r#"{"detail":"Inference failed"}"#));
    // Code suggestions: 429 keeps Retry-After; Azure's retry-after-ms becomes seconds. Prompt
    // endpoints: 421 "429: Too Many Requests" (GitLab's gateway drops Retry-After there too).
    let hs = h(&[("Retry-After", "7")]);
    let a = translate_response(&ctx(AnswerShape::CodeSuggestions, Wire::OpenaiChat), &resp(429, &hs, b"{}"), 0);
    assert_eq!(a.status, 429);
    assert!(a.headers.contains(&("retry-after", "7".to_owned())));
    let a = translate_response(&ctx(AnswerShape::PromptV1, Wire::OpenaiChat), &resp(429, &hs, b"{}"), 0);
    assert_eq!((a.status, String::from_utf8_lossy(&a.body).as_ref()), (421, r#"{"detail":"429: Too Many Requests"}"#));
    let hs = h(&[("retry-after-ms", "1500")]);
    let a = translate_response(&ctx(AnswerShape::CodeSuggestions, Wire::OpenaiChat), &resp(429, &hs, b"{}"), 0);
    assert!(a.headers.contains(&("retry-after", "2".to_owned())));
    // Bedrock error type from the header (suffix after ':' dropped).
    let hs = h(&[("x-amzn-ErrorType", "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/")]);
    let a = translate_response(&ctx(AnswerShape::PromptV1, Wire::BedrockConverse), &resp(400, &hs, br#"{"message":"Malformed input request"}"#), 0);
    assert_eq!(String::from_utf8_lossy(&a.body), r#"{"detail":"400: Bad Request"}"#);
    assert_eq!(a.error.as_deref(), Some("upstream 400 ValidationException"));
    let hs = h(&[("x-amzn-errortype", "ThrottlingException")]);
    let a = translate_response(&ctx(AnswerShape::CodeSuggestions, Wire::BedrockConverse), &resp(400, &hs, br#"{"message":"slow down"}"#), 0);
    assert_eq!(a.status, 429);
    // Envoy's own 503 (no upstream) and 504 (timeout): 503 Inference failed on code suggestions;
    // on prompts LiteLLM's APIConnectionError (500) and Timeout (408).
    let hs = h(&[("content-type", "text/plain")]);
    for (status, why, prompt_detail) in [
        (503, "upstream unreachable (503)", r#"{"detail":"500: Internal Server Error"}"#),
        (504, "upstream timeout (504)", r#"{"detail":"408: Request Timeout"}"#),
    ] {
        let r = UpstreamResponse { status, headers: &hs, body: b"no healthy upstream", via_upstream: None };
        let a = translate_response(&ctx(AnswerShape::CodeSuggestions, Wire::OpenaiChat), &r, 0);
        assert_eq!((a.status, a.error.as_deref()), (503, Some(why)));
        let a = translate_response(&ctx(AnswerShape::PromptV1, Wire::OpenaiChat), &r, 0);
        assert_eq!((a.status, String::from_utf8_lossy(&a.body).as_ref(), a.error.as_deref()), (421, prompt_detail, Some(why)));
    }
    assert_eq!(errors::reason_phrase(413), "Request Entity Too Large");
    assert_eq!(errors::reason_phrase(599), "Unknown Status");
    // A model server's own 503 is an HTTP error of the model: 421 on prompts.
    let hs = h(&[("x-envoy-upstream-service-time", "3")]);
    let r = UpstreamResponse { status: 503, headers: &hs, body: b"overloaded", via_upstream: None };
    assert_eq!(translate_response(&ctx(AnswerShape::PromptV1, Wire::OpenaiChat), &r, 0).status, 421);
}

#[test]
fn azure_content_filter_errors_are_explained() {
    let body = json!({"error": {"code": "content_filter", "message": "The response was filtered", "param": "prompt", "status": 400,
        "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
            "hate": {"filtered": true, "severity": "high"}, "violence": {"filtered": false, "severity": "safe"}}}}})
    .to_string();
    let a = translate_response(&ctx(AnswerShape::PromptV1, Wire::OpenaiChat), &resp(400, &[], body.as_bytes()), 0);
    let detail: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(detail["detail"], "400: Bad Request");
    // The explanation is for the admin reading the log.
    let e = a.error.unwrap_or_default();
    assert!(e.contains("Azure OpenAI content filter blocked the request: hate (high)."), "{e}");
    assert!(!e.contains("violence"));
}

#[test]
fn answers_have_gitlab_shapes() {
    let body = br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"Fix the bug"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#;
    let a = translate_response(&ctx(AnswerShape::PromptV1, Wire::OpenaiChat), &resp(200, &[], body), 5);
    assert_eq!(String::from_utf8_lossy(&a.body), r#""Fix the bug""#);
    assert_eq!(a.usage, Usage::known(Some(12), Some(3), None));
    let a = translate_response(&ctx(AnswerShape::PromptV2, Wire::OpenaiChat), &resp(200, &[], body), 5);
    assert_eq!(
        serde_json::from_slice::<Value>(&a.body).unwrap(),
        json!({"content": "Fix the bug", "usage": {"m": {"input_tokens": 12, "output_tokens": 3}}})
    );
    let a = translate_response(&ctx(AnswerShape::ChatV1, Wire::OpenaiChat), &resp(200, &[], body), 5);
    assert_eq!(
        serde_json::from_slice::<Value>(&a.body).unwrap(),
        json!({"response": "Fix the bug", "metadata": {"provider": "litellm", "model": "mistral", "timestamp": 5}})
    );
    // Empty completion: choices dropped; malformed 200: 503.
    let empty = br#"{"choices":[{"index":0,"text":"","finish_reason":"stop"}]}"#;
    let a = translate_response(&ctx(AnswerShape::CodeSuggestions, Wire::OpenaiCompletions), &resp(200, &[], empty), 5);
    assert_eq!(serde_json::from_slice::<Value>(&a.body).unwrap()["choices"], json!([]));
    let a = translate_response(&ctx(AnswerShape::CodeSuggestions, Wire::OpenaiCompletions), &resp(200, &[], b"{}"), 5);
    assert_eq!(a.status, 503);
}

#[test]
fn chat_agent_steps_use_the_same_codecs_and_answer_ndjson() {
    let m = model(json!({"platform": "bedrock", "cluster": "c", "authority": "bedrock-runtime.us-east-1.amazonaws.com",
        "model": "us.anthropic.claude-3-5-sonnet-20240620-v1:0", "family": "claude_3"}));
    let rendered = Rendered {
        messages: vec![
            Message::system("S"),
            Message::user("hi"),
            Message::assistant("Thought:"),
        ],
        fim: None,
        params: [("max_tokens".to_owned(), json!(8192))].into_iter().collect(),
        stop: vec!["Observation:".into()],
    };
    let r = build_rendered_request(&m, AnswerShape::ChatAgent, rendered, true, Some(SECRET.into())).unwrap();
    assert_eq!(r.path, "/model/us.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream");
    let b = body_json(&r);
    assert_eq!(b["messages"][1], json!({"role": "assistant", "content": [{"text": "Thought:"}]}));
    assert_eq!(b["inferenceConfig"]["stopSequences"], json!(["Observation:"]));
    // Bedrock signs with Envoy: the GitLab key is not sent.
    assert!(r.set_headers.iter().all(|(_, v)| !v.contains(SECRET)));
    let ctx = AnswerCtx { shape: AnswerShape::ChatAgent, ..r.answer.clone() };
    let ok = br#"{"output":{"message":{"role":"assistant","content":[{"text":" I know.\nFinal Answer: Hello"}]}},"stopReason":"end_turn","usage":{"inputTokens":5,"outputTokens":3,"totalTokens":8}}"#;
    let a = translate_response(&ctx, &resp(200, &[], ok), 0);
    assert_eq!(a.status, 200);
    assert!(String::from_utf8_lossy(&a.body).contains("final_answer_delta"), "{}", String::from_utf8_lossy(&a.body));
    let a = translate_response(&ctx, &resp(500, &[], br#"{"message":"boom"}"#), 0);
    assert_eq!(a.status, 200);
    assert!(String::from_utf8_lossy(&a.body).contains(r#""type":"error""#), "{}", String::from_utf8_lossy(&a.body));
}

/// The adapter reads code details only for errors; a 2xx answer must translate the same with
/// or without its headers.
#[test]
fn a_2xx_openai_answer_needs_neither_headers_nor_code_details() {
    assert!(!needs_code_details(200) && !needs_code_details(204));
    assert!(needs_code_details(429) && needs_code_details(503));
    let body = br#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
    let hs = vec![("content-type".to_owned(), "application/json".to_owned()), ("retry-after".to_owned(), "7".to_owned())];
    for shape in [AnswerShape::PromptV1, AnswerShape::PromptV2, AnswerShape::CodeSuggestions, AnswerShape::ChatV1] {
        let with = translate_response(&ctx(shape, Wire::OpenaiChat), &resp(200, &hs, body), 7);
        let without = translate_response(&ctx(shape, Wire::OpenaiChat), &UpstreamResponse { status: 200, headers: &[], body, via_upstream: None }, 7);
        assert_eq!((with.status, &with.headers, &with.body), (without.status, &without.headers, &without.body), "{shape:?}");
    }
}

/// GitLab 19.x code generation on `/v4/code/suggestions`: the prompt enhancer Rails fills
/// becomes the template inputs, the key in `model_metadata` the credential, and the answer is
/// GitLab's `CompletionResponse`.
#[test]
fn v4_generation_renders_from_the_prompt_enhancer() {
    let set = PromptSet::builtin().unwrap();
    let m = vllm("mistral");
    let body = json!({
        "project_path": "g/p", "current_file": {"file_name": "ignored.rb"}, "stream": false,
        "prompt_components": [
            {"type": "code_editor_generation", "payload": {
                "file_name": "app/car.py", "content_above_cursor": "FULL ABOVE\n# fast sort\n", "content_below_cursor": "",
                "language_identifier": "Python", "stream": true, "prompt_id": "code_suggestions/generations", "prompt_version": "^1.0.0",
                "prompt_enhancer": {"examples_array": [{"example": "EXAMPLE-ONE", "response": "x", "trigger_type": "comment"}],
                    "trimmed_content_above_cursor": "TRIMMED ABOVE\n", "trimmed_content_below_cursor": "",
                    "related_files": [], "related_snippets": [], "libraries": ["rails"], "user_instruction": "sort it fast"}}},
            {"type": "code_context", "payload": {"type": "file", "name": "util.py", "content": "def helper(): pass"}}],
        "model_metadata": {"provider": "api", "name": "mistral", "endpoint": "http://vllm:8000/v1", "api_key": SECRET, "identifier": "custom_openai/served"}
    });
    let c = call(EndpointKind::CodeSuggestionsUnified { sse: true }, None, &m, &set);
    let r = build_upstream_request_parsed(&c, &body, 1000).unwrap();
    assert!(r.stream, "the payload's stream flag");
    assert_eq!(r.answer.shape, AnswerShape::SuggestionsV4);
    assert_eq!(r.answer.reported_model, Some(("agent".to_owned(), "Mistral 7B Code Generations".to_owned())));
    assert_eq!(r.answer.lang.as_deref(), Some("python"));
    assert!(r.set_headers.contains(&("authorization", format!("Bearer {SECRET}"))));
    let prompt = body_json(&r)["messages"].to_string();
    for want in ["sort it fast", "TRIMMED ABOVE", "EXAMPLE-ONE", "rails", "app/car.py"] {
        assert!(prompt.contains(want), "{want} missing from {prompt}");
    }
    assert!(!prompt.contains("FULL ABOVE"), "Rails' trimmed copy wins");
    // The non-streamed answer.
    let mut ctx = r.answer.clone();
    ctx.stream = false;
    ctx.feature_flags = vec!["f1".to_owned()];
    let ok = br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"def s(xs): return sorted(xs)"},"finish_reason":"stop"}]}"#;
    let a = translate_response(&ctx, &resp(200, &[], ok), 77);
    let model_meta = json!({"engine": "agent", "name": "Mistral 7B Code Generations", "lang": "python"});
    assert_eq!(
        serde_json::from_slice::<Value>(&a.body).unwrap(),
        json!({"choices": [{"text": "def s(xs): return sorted(xs)", "index": 0, "finish_reason": "length"}],
               "metadata": {"model": model_meta, "timestamp": 77, "enabled_feature_flags": ["f1"], "region": null},
               "model": model_meta})
    );
}

#[test]
fn v4_completion_reports_the_requests_model_and_bad_components_are_422() {
    let set = PromptSet::builtin().unwrap();
    let m = vllm("codestral");
    let body = json!({"prompt_components": [{"type": "code_editor_completion", "payload": {
        "file_name": "main.go", "content_above_cursor": "func main() {\n", "content_below_cursor": "}\n"}}],
        "model_metadata": {"provider": "api", "name": "codestral", "identifier": "custom_openai/served"}});
    let c = call(EndpointKind::CodeSuggestionsUnified { sse: true }, None, &m, &set);
    let r = build_upstream_request_parsed(&c, &body, 100).unwrap();
    assert_eq!(r.answer.reported_model, Some(("api".to_owned(), "codestral".to_owned())));
    assert_eq!(r.answer.lang.as_deref(), Some("go"));
    for bad in [json!({"prompt_components": []}), json!({"prompt_components": [{"type": "code_context", "payload": {}}]})] {
        assert_eq!(build_upstream_request_parsed(&c, &bad, 10).unwrap_err().status, 422, "{bad}");
    }
}

#[test]
fn gitlab_language_ids() {
    assert_eq!(inbound::gitlab_lang("a/b.py", None), "python");
    assert_eq!(inbound::gitlab_lang("x.tsx", Some("python")), "ts", "the file name first");
    assert_eq!(inbound::gitlab_lang("Makefile", Some("javascript")), "js");
    assert_eq!(inbound::gitlab_lang("notes.txt", Some("plaintext")), "");
    assert_eq!(feature_flags(" a,b,,a "), vec!["a".to_owned(), "b".to_owned()]);
}

/// Every header describing the old body goes when the router replaces it (request: a gzip
/// `content-encoding` on the rebuilt plain body breaks the model server).
#[test]
fn body_describing_headers_never_outlive_the_body() {
    for h in BODY_HEADERS {
        assert!(removed_request_headers().any(|r| r == *h), "{h} describes the GitLab body the router rebuilds");
    }
    let present: Vec<(String, String)> = [("Content-Encoding", "gzip"), ("content-length", "12"), ("ETag", "\"x\""), ("x-request-id", "r")]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    assert_eq!(stale_body_headers(&present).collect::<Vec<_>>(), ["content-encoding", "etag"]);
}
