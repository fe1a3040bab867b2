//! Request builders and answer parsers with tool calls, on every wire that has them.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use serde_json::{Value, json};

fn target(platform: Platform, model: &str) -> ModelTarget<'_> {
    ModelTarget { platform, model, base_path: None, api_version: None }
}

/// A tool round trip: the user asks, the model called a tool, the tool answered.
fn round_trip() -> LlmRequest {
    let call = ToolCall { id: "call_1".into(), name: "get_weather".into(), arguments: r#"{"city":"Oslo"}"#.into() };
    let mut assistant = Message::assistant("");
    assistant.tool_calls.push(call);
    let mut result = Message::new(Role::Tool, "12 degrees");
    result.tool_call_id = Some("call_1".into());
    LlmRequest {
        messages: vec![Message::system("Be brief."), Message::user("Weather in Oslo?"), assistant, result],
        tools: vec![ToolSpec {
            name: "get_weather".into(),
            description: Some("Current weather".into()),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        }],
        tool_choice: Some(ToolChoice::Auto),
        params: serde_json::Map::from_iter([("max_tokens".to_owned(), json!(100))]),
        ..LlmRequest::default()
    }
}

fn body(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn openai_chat_carries_tools_calls_and_results() {
    let (path, bytes) = openai::build(&target(Platform::Vllm, "qwen"), Wire::OpenaiChat, &round_trip()).unwrap();
    assert_eq!(path, "/v1/chat/completions");
    let b = body(&bytes);
    assert_eq!(b["messages"][2], json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]}));
    assert_eq!(b["messages"][3], json!({"role": "tool", "content": "12 degrees", "tool_call_id": "call_1"}));
    assert_eq!(b["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(b["tools"][0]["function"]["parameters"]["required"], json!(["city"]));
    assert_eq!(b["tool_choice"], "auto");
    assert!(b.get("continue_final_message").is_none(), "a tool result is not a prefill");
    // raw-text completions cannot carry tools
    assert!(matches!(openai::build(&target(Platform::Vllm, "m"), Wire::OpenaiCompletions, &round_trip()), Err(LlmError::Unsupported(_))));
}

#[test]
fn converse_carries_tool_config_tool_use_and_tool_result_blocks() {
    let mut req = round_trip();
    req.tool_choice = Some(ToolChoice::Named("get_weather".into()));
    let (path, bytes) = bedrock::build(&target(Platform::Bedrock, "us.anthropic.claude-3-5-sonnet-20240620-v1:0"), Wire::BedrockConverse, &req).unwrap();
    assert_eq!(path, "/model/us.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse");
    let b = body(&bytes);
    assert_eq!(b["system"], json!([{"text": "Be brief."}]));
    assert_eq!(b["messages"], json!([
        {"role": "user", "content": [{"text": "Weather in Oslo?"}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Oslo"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "call_1", "content": [{"text": "12 degrees"}]}}]},
    ]));
    assert_eq!(b["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["required"], json!(["city"]));
    assert_eq!(b["toolConfig"]["toolChoice"], json!({"tool": {"name": "get_weather"}}));
    assert_eq!(b["inferenceConfig"]["maxTokens"], 100);
}

#[test]
fn anthropic_invoke_carries_tool_use_and_tool_result_blocks() {
    let mut req = round_trip();
    req.tool_choice = Some(ToolChoice::Required);
    let (_, bytes) = bedrock::build(&target(Platform::Bedrock, "anthropic.claude-3-haiku-20240307-v1:0"), Wire::BedrockAnthropic, &req).unwrap();
    let b = body(&bytes);
    assert_eq!(b["messages"][1]["content"][0], json!({"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}}));
    assert_eq!(b["messages"][2]["content"][0], json!({"type": "tool_result", "tool_use_id": "call_1", "content": "12 degrees"}));
    assert_eq!(b["tools"][0]["input_schema"]["type"], "object");
    assert_eq!(b["tool_choice"], json!({"type": "any"}));
}

#[test]
fn tool_history_that_is_not_json_or_has_no_call_id_is_refused() {
    let mut req = round_trip();
    req.messages[2].tool_calls[0].arguments = "{not json".into();
    let e = bedrock::build(&target(Platform::Bedrock, "m"), Wire::BedrockConverse, &req).unwrap_err();
    assert!(matches!(e, LlmError::Invalid(ref m) if m.contains("call_1")), "{e:?}");
    let mut req = round_trip();
    req.messages[3].tool_call_id = None;
    assert!(matches!(bedrock::build(&target(Platform::Bedrock, "m"), Wire::BedrockConverse, &req), Err(LlmError::Invalid(_))));
    // Mistral/Llama take one raw prompt: no tools there
    assert!(matches!(bedrock::build(&target(Platform::Bedrock, "m"), Wire::BedrockMistral, &round_trip()), Err(LlmError::Unsupported(_))));
}

#[test]
fn answers_with_tool_calls_parse_on_every_wire() {
    let openai = br#"{"choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[
        {"id":"call_9","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}]},
        "finish_reason":"tool_calls"}],"usage":{"prompt_tokens":20,"completion_tokens":7,"total_tokens":27}}"#;
    let c = parse_completion(Wire::OpenaiChat, &[], openai).unwrap();
    assert_eq!(c.tool_calls, vec![ToolCall { id: "call_9".into(), name: "get_weather".into(), arguments: r#"{"city":"Oslo"}"#.into() }]);
    assert_eq!((c.text.as_str(), c.finish_reason.as_deref(), c.usage), ("", Some("tool_calls"), Usage::known(Some(20), Some(7), Some(27))));

    let converse = br#"{"output":{"message":{"role":"assistant","content":[{"text":"Checking."},
        {"toolUse":{"toolUseId":"tooluse_1","name":"get_weather","input":{"city":"Oslo"}}}]}},
        "stopReason":"tool_use","usage":{"inputTokens":30,"outputTokens":12,"totalTokens":42}}"#;
    let c = parse_completion(Wire::BedrockConverse, &[], converse).unwrap();
    assert_eq!(c.text, "Checking.");
    assert_eq!(c.tool_calls[0].id, "tooluse_1");
    assert_eq!(serde_json::from_str::<Value>(&c.tool_calls[0].arguments).unwrap(), json!({"city": "Oslo"}));
    assert_eq!(c.finish_reason.as_deref(), Some("tool_calls"));

    let anthropic = br#"{"content":[{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Oslo"}}],
        "stop_reason":"tool_use","usage":{"input_tokens":10,"output_tokens":5}}"#;
    let c = parse_completion(Wire::BedrockAnthropic, &[], anthropic).unwrap();
    assert_eq!((c.tool_calls[0].name.as_str(), c.finish_reason.as_deref()), ("get_weather", Some("tool_calls")));
}

#[test]
fn answers_report_the_model_the_platform_used_when_they_name_one() {
    let openai = br#"{"model":"mistralai/Codestral-22B-v0.1","choices":[{"index":0,"text":"x","finish_reason":"length"}]}"#;
    let c = parse_completion(Wire::OpenaiCompletions, &[], openai).unwrap();
    assert_eq!((c.model.as_deref(), c.finish_reason.as_deref()), (Some("mistralai/Codestral-22B-v0.1"), Some("length")));
    let anthropic = br#"{"model":"claude-3-5-sonnet-20240620","content":[{"type":"text","text":"hi"}],"stop_reason":"max_tokens"}"#;
    let c = parse_completion(Wire::BedrockAnthropic, &[], anthropic).unwrap();
    assert_eq!((c.model.as_deref(), c.finish_reason.as_deref()), (Some("claude-3-5-sonnet-20240620"), Some("length")));
    // Converse names no model; an empty or non-string id is no id; a huge one is cut.
    let converse = br#"{"output":{"message":{"content":[{"text":"hi"}]}},"stopReason":"end_turn"}"#;
    assert_eq!(parse_completion(Wire::BedrockConverse, &[], converse).unwrap().model, None);
    for body in [r#"{"model":"","choices":[{"message":{"content":"x"}}]}"#, r#"{"model":7,"choices":[{"message":{"content":"x"}}]}"#] {
        assert_eq!(parse_completion(Wire::OpenaiChat, &[], body.as_bytes()).unwrap().model, None, "{body}");
    }
    let long = format!(r#"{{"model":"{}é","choices":[{{"message":{{"content":"x"}}}}]}}"#, "m".repeat(299));
    assert_eq!(parse_completion(Wire::OpenaiChat, &[], long.as_bytes()).unwrap().model, Some("m".repeat(299)));
}
