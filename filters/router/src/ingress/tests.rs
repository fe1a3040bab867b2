//! The model ingress end to end in pure code: decision, request for each platform, answers.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::decide::{self, Decision, Plan, Reason};
use crate::prompts::PromptSet;
use crate::translate::{HeadersPlan, RequestCtx, RequestEdit, Translation};
use duo_llm::sample;
use duo_llm::stream::Dialect;

fn config(ingress: Value) -> Config {
    let v = json!({
      "configuration_type": "self_hosted",
      "models": {
        "qwen": { "platform": "vllm", "cluster": "vllm_qwen", "authority": "vllm.internal:8000",
          "model": "Qwen/Qwen2.5-7B-Instruct", "family": "general", "identifiers": ["custom_openai/qwen"] },
        "claude": { "platform": "bedrock", "cluster": "bedrock_us_east_1", "authority": "bedrock-runtime.us-east-1.amazonaws.com",
          "model": "us.anthropic.claude-3-5-sonnet-20240620-v1:0", "family": "claude_3" },
        "gpt4o": { "platform": "azure_openai", "cluster": "azure_eastus", "authority": "myres.openai.azure.com",
          "model": "gpt-4o-deploy", "family": "gpt", "api_version": "2024-10-21", "credentials": "envoy" }
      },
      "default": { "provider": "self_hosted" },
      "model_ingress": ingress
    });
    Config::parse(v.to_string().as_bytes()).unwrap()
}

fn on() -> Config {
    config(json!({"enabled": true}))
}

fn refusal(reply: &GitlabError) -> (u32, Value) {
    (reply.status, serde_json::from_str(&reply.body).unwrap())
}

#[test]
fn the_model_list_names_the_served_entries_and_an_off_ingress_is_404() {
    let Plan::Decided(o) = decide::plan(&config(json!({"enabled": true, "models": ["qwen", "claude"]})), "GET", "/v1/models") else { panic!() };
    let Decision::Reply { reply, reason } = o.decision else { panic!() };
    assert_eq!(reason, Reason::ModelList);
    let (status, body) = refusal(&reply);
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["claude", "qwen"]);
    assert_eq!(o.route.feature.as_deref(), Some("model_ingress"));
    assert!(o.route.error.is_none());

    for c in [config(json!({"enabled": false})), config(Value::Null)] {
        let Plan::Decided(o) = decide::plan(&c, "POST", "/v1/chat/completions") else { panic!() };
        let Decision::Reply { reply, .. } = o.decision else { panic!() };
        let (status, body) = refusal(&reply);
        assert_eq!((status, body["error"]["type"].as_str()), (404, Some("invalid_request_error")));
    }
    // an unknown models key in the block is a configuration error naming the field
    let v = json!({"configuration_type": "self_hosted", "models": {}, "default": {"provider": "disabled"},
        "model_ingress": {"enabled": true, "models": ["nope"]}});
    assert_eq!(Config::parse(v.to_string().as_bytes()).unwrap_err().path, "model_ingress.models[0]");
}

fn decide_chat(c: &Config, body: &Value) -> crate::decide::Outcome {
    let Plan::NeedBody(p) = decide::plan(c, "POST", "/v1/chat/completions") else { panic!("needs the body") };
    decide::decide_body(c, p, body)
}

#[test]
fn models_are_named_by_key_or_identifier_and_must_be_served() {
    let c = config(json!({"enabled": true, "models": ["qwen"]}));
    for name in ["qwen", "custom_openai/qwen"] {
        let o = decide_chat(&c, &json!({"model": name, "messages": []}));
        let Decision::Forward(t) = o.decision else { panic!("{name}") };
        assert_eq!((t.cluster.as_str(), t.model.as_deref(), t.strip_authorization), ("vllm_qwen", Some("qwen"), true));
        assert_eq!(o.route.model_name.as_deref(), Some("qwen"));
    }
    let o = decide_chat(&c, &json!({"model": "claude", "messages": []}));
    let Decision::Reply { reply, reason } = o.decision else { panic!() };
    assert_eq!(reason, Reason::UnknownModel);
    let (status, body) = refusal(&reply);
    assert_eq!((status, body["error"]["code"].as_str(), body["error"]["param"].as_str()), (404, Some("model_not_found"), Some("model")));
}

#[test]
fn router_refusals_on_ingress_paths_are_openai_shaped() {
    let c = on();
    let Plan::NeedBody(p) = decide::plan(&c, "POST", "/v1/chat/completions") else { panic!() };
    let o = decide::refuse_body(p, decide::too_large(&c), Reason::TooLarge);
    let Decision::Reply { reply, .. } = o.decision else { panic!() };
    let (status, body) = refusal(&reply);
    assert_eq!(status, 413);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("exceeds"));
    let Plan::Decided(o) = decide::plan(&c, "DELETE", "/v1/chat/completions") else { panic!() };
    let Decision::Reply { reply, .. } = o.decision else { panic!() };
    assert!(reply.body.contains("\"error\""), "{}", reply.body);
}

fn translate(c: &Config, body: Value) -> Result<(Translation, crate::translate::RequestEdit), GitlabError> {
    let o = decide_chat(c, &body);
    let Decision::Forward(target) = o.decision else { panic!("forwarded: {:?}", o.decision) };
    let prompts = PromptSet::builtin().unwrap();
    let ctx = RequestCtx { now_unix: 1_800_000_000, scopes: None, feature_flags: None, request_id: "r-42",
        gitlab_version: duo_core::version::GitlabVersion::ASSUMED };
    Translation::request(c, &prompts, &target, &o.endpoint.unwrap(), (&body, body.to_string().len()), &ctx)
}

fn path_of(edit: &crate::translate::RequestEdit) -> &str {
    edit.set.iter().find(|(k, _)| *k == ":path").map(|(_, v)| v.as_str()).unwrap()
}

#[test]
fn openai_platforms_get_the_clients_request_with_the_served_name_and_never_its_key() {
    let c = on();
    let body = json!({"model": "custom_openai/qwen", "messages": [{"role": "user", "content": "hi"}], "seed": 7, "stream": true,
        "stream_options": {"include_usage": true}});
    let (mut t, edit) = translate(&c, body).unwrap();
    assert_eq!(path_of(&edit), "/v1/chat/completions");
    let sent: Value = serde_json::from_slice(&edit.body).unwrap();
    assert_eq!(sent["model"], "Qwen/Qwen2.5-7B-Instruct");
    assert_eq!(sent["seed"], 7, "OpenAI-compatible platforms get every field the client sent");
    assert!(!RequestEdit::keeps("authorization".as_bytes()), "the ingress key never goes upstream");
    assert!(!RequestEdit::keeps("cookie".as_bytes()));
    assert!(!edit.set.iter().any(|(k, _)| *k == "authorization" || *k == "api-key"));
    // the answer passes unchanged and is only observed
    assert_eq!(t.response_headers(Some(200), false, 0), HeadersPlan::PassThrough);
    let stream = sample::stream(Dialect::OpenAi, &["hel", "lo"], Usage::known(Some(4), Some(2), None)).unwrap();
    assert!(!t.observe(&stream[..10], false));
    assert!(t.observe(&stream[10..], true));
    assert_eq!((t.usage().input_tokens, t.usage().output_tokens, t.usage().error.as_deref()), (Some(4), Some(2), None));

    // classic Azure deployments: the deployment path and api-version, no model in the body
    let (_, edit) = translate(&c, json!({"model": "gpt4o", "messages": [{"role": "user", "content": "hi"}]})).unwrap();
    assert_eq!(path_of(&edit), "/openai/deployments/gpt-4o-deploy/chat/completions?api-version=2024-10-21");
    assert!(serde_json::from_slice::<Value>(&edit.body).unwrap().get("model").is_none());
}

#[test]
fn bedrock_gets_converse_and_answers_come_back_in_openais_shape() {
    let c = on();
    let body = json!({"model": "claude", "max_tokens": 64, "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Oslo?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]});
    let (mut t, edit) = translate(&c, body).unwrap();
    assert_eq!(path_of(&edit), "/model/us.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse");
    let sent: Value = serde_json::from_slice(&edit.body).unwrap();
    assert_eq!(sent["system"], json!([{"text": "Be brief."}]));
    assert_eq!(sent["toolConfig"]["tools"][0]["toolSpec"]["name"], "get_weather");
    assert_eq!(sent["inferenceConfig"]["maxTokens"], 64);
    assert_eq!(t.response_headers(Some(200), false, 0), HeadersPlan::Hold);
    let answer = br#"{"output":{"message":{"role":"assistant","content":[{"toolUse":{"toolUseId":"tooluse_1","name":"get_weather","input":{"city":"Oslo"}}}]}},"stopReason":"tool_use","usage":{"inputTokens":9,"outputTokens":4,"totalTokens":13}}"#;
    let a = t.whole(&[], answer, None, 0);
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(v["id"], "chatcmpl-r-42");
    assert_eq!(v["model"], "claude");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(v["choices"][0]["message"]["tool_calls"][0]["id"], "tooluse_1");
    assert_eq!(v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Oslo\"}");
    assert_eq!((t.usage().input_tokens, t.usage().output_tokens), (Some(9), Some(4)));
}

#[test]
fn a_bedrock_stream_becomes_chunks_and_a_cut_one_is_reset() {
    let c = on();
    let body = json!({"model": "claude", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let (mut t, edit) = translate(&c, body.clone()).unwrap();
    assert!(path_of(&edit).ends_with("/converse-stream"));
    assert!(matches!(t.response_headers(Some(200), false, 0), HeadersPlan::Stream { .. }));
    let stream = sample::stream(Dialect::Converse, &["Hel", "lo"], Usage::known(Some(3), Some(2), None)).unwrap();
    let out = t.chunk(&stream, true);
    let text = String::from_utf8(out.bytes).unwrap();
    assert!(out.done && !out.reset);
    assert!(text.contains("\"content\":\"Hel\"") && text.ends_with("data: [DONE]\n\n"), "{text}");

    let (mut t, _) = translate(&c, body).unwrap();
    let _ = t.response_headers(Some(200), false, 0);
    let out = t.chunk(&stream[..stream.len() - 30], true);
    assert!(out.reset, "a cut stream is never closed with [DONE]");
    assert!(!String::from_utf8(out.bytes).unwrap().contains("[DONE]"));
}

#[test]
fn upstream_failures_map_to_openai_errors() {
    let c = on();
    let req = json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]});
    let run = |status: u32, headers: &[(&str, &str)], body: &[u8], via: Option<bool>| {
        let (mut t, _) = translate(&c, req.clone()).unwrap();
        let _ = t.response_headers(Some(status), false, 0);
        let h: Vec<(String, String)> = headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let a = t.whole(&h, body, via, 0);
        let v: Value = serde_json::from_slice(&a.body).unwrap();
        (a.status, v["error"]["type"].as_str().unwrap_or_default().to_owned(), a.set)
    };
    let (s, kind, set) = run(429, &[("retry-after", "7")], br#"{"message":"Too many requests"}"#, Some(true));
    assert_eq!((s, kind.as_str()), (429, "rate_limit_error"));
    assert!(set.iter().any(|(k, v)| *k == "retry-after" && v == "7"));
    assert_eq!(run(503, &[], b"no healthy upstream", Some(false)).0, 503);
    assert_eq!(run(504, &[], b"upstream request timeout", Some(false)).0, 504);
    let (s, kind, _) = run(400, &[], br#"{"message":"ValidationException: bad tool schema"}"#, Some(true));
    assert_eq!((s, kind.as_str()), (502, "upstream_error"));
    let (s, _, _) = run(200, &[], b"not json", Some(true));
    assert_eq!(s, 502);
}

#[test]
fn bad_requests_are_400_naming_the_field_and_what_converse_cannot_say_is_refused() {
    let c = on();
    let e = |body: Value| {
        let err = translate(&c, body).err().unwrap();
        let (status, v) = refusal(&err);
        (status, v["error"]["param"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(e(json!({"model": "qwen", "messages": []})), (400, "messages".into()));
    assert_eq!(e(json!({"model": "qwen", "messages": [{"role": "robot", "content": "x"}]})), (400, "messages[0].role".into()));
    assert_eq!(
        e(json!({"model": "claude", "messages": [{"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "nope"}}]}]})),
        (400, "messages[0].tool_calls[0].function.arguments".into())
    );
    assert_eq!(e(json!({"model": "claude", "n": 2, "messages": [{"role": "user", "content": "x"}]})), (400, "n".into()));
    assert_eq!(
        e(json!({"model": "claude", "response_format": {"type": "json_schema"}, "messages": [{"role": "user", "content": "x"}]})),
        (400, "response_format".into())
    );
    // OpenAI-compatible platforms take what Converse cannot
    assert!(translate(&c, json!({"model": "qwen", "n": 2, "messages": [{"role": "user", "content": "x"}]})).is_ok());
}
