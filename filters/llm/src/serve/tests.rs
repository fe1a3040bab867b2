#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::stream::StreamTranslator;
use crate::{Api, Platform, sample};

fn req(v: Value) -> Result<(LlmRequest, Options), RequestError> {
    parse_request(&v)
}

#[test]
fn a_tool_round_trip_request_parses_into_the_one_vocabulary() {
    let (r, o) = req(json!({
        "model": "claude", "stream": true, "stream_options": {"include_usage": true},
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Weather "}, {"type": "text", "text": "in Oslo?"}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "12 degrees"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "temperature": 0.2, "max_completion_tokens": 50, "stop": "END", "user": "u1"
    }))
    .unwrap();
    assert_eq!(o, Options { model: "claude".into(), stream: true, include_usage: true, n: 1, response_format: None, logprobs: false });
    assert_eq!(r.messages[0], Message::system("Be brief."));
    assert_eq!(r.messages[1], Message::user("Weather in Oslo?"));
    assert_eq!(r.messages[2].tool_calls[0].arguments, "{\"city\":\"Oslo\"}");
    assert_eq!(r.messages[3].tool_call_id.as_deref(), Some("call_1"));
    assert_eq!(r.tools[0].name, "get_weather");
    assert_eq!(r.tool_choice, Some(ToolChoice::Named("get_weather".into())));
    assert_eq!((r.params.get("temperature"), r.params.get("max_tokens")), (Some(&json!(0.2)), Some(&json!(50))));
    assert_eq!(r.stop, vec!["END".to_owned()]);
    assert!(!r.params.contains_key("user"), "only portable parameters reach a non-OpenAI platform");
}

#[test]
fn bad_requests_name_the_field() {
    let cases = [
        (json!({"messages": [{"role": "user", "content": "x"}]}), "model"),
        (json!({"model": "m", "messages": []}), "messages"),
        (json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}), "messages[0].role"),
        (json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}), "messages[0].content[0]"),
        (json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{oops"}}]}]}),
            "messages[0].tool_calls[0].function.arguments"),
        (json!({"model": "m", "messages": [{"role": "tool", "content": "r"}]}), "messages[0].tool_call_id"),
        (json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}), "temperature"),
        (json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "sometimes"}), "tool_choice"),
        (json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "retrieval"}]}), "tools[0]"),
    ];
    for (body, param) in cases {
        let e = req(body.clone()).unwrap_err();
        assert_eq!(e.param.as_deref(), Some(param), "{body}: {e:?}");
    }
}

#[test]
fn whole_answers_in_openais_shape() {
    let id = AnswerId { id: "chatcmpl-1".into(), created: 7, model: "claude".into() };
    let c = Completion {
        text: String::new(),
        tool_calls: vec![ToolCall { id: "tooluse_1".into(), name: "get_weather".into(), arguments: "{\"city\":\"Oslo\"}".into() }],
        finish_reason: Some("tool_calls".into()),
        usage: Usage::known(Some(20), Some(7), None),
        model: None,
    };
    let v: Value = serde_json::from_slice(&completion_body(&id, &c)).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"], json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": "tooluse_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]}));
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(v["usage"], json!({"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27}));
    let e: Value = serde_json::from_slice(&error_body("no", "invalid_request_error", Some("model"), Some("model_not_found"))).unwrap();
    assert_eq!(e, json!({"error": {"message": "no", "type": "invalid_request_error", "param": "model", "code": "model_not_found"}}));
}

fn chunks(out: &[u8]) -> Vec<Value> {
    let text = String::from_utf8(out.to_vec()).unwrap();
    text.split("\n\n").filter(|e| !e.is_empty()).map(|e| {
        let data = e.strip_prefix("data: ").unwrap();
        if data == "[DONE]" { json!("[DONE]") } else { serde_json::from_str(data).unwrap() }
    }).collect()
}

#[test]
fn a_converse_stream_becomes_openai_chunks_ending_in_done() {
    let id = AnswerId { id: "chatcmpl-2".into(), created: 9, model: "claude".into() };
    let body = sample::stream(crate::stream::Dialect::Converse, &["Hel", "lo"], Usage::known(Some(3), Some(2), None)).unwrap();
    let mut t = StreamTranslator::new(Platform::Bedrock, Api::Converse, Box::new(ChunkWriter::new(id.clone(), true)));
    let mut out = Vec::new();
    t.push(&body, &mut out).unwrap();
    assert!(t.finish(&mut out).is_complete());
    let c = chunks(&out);
    assert_eq!(c[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    assert_eq!(c[1]["choices"][0]["delta"]["content"], "Hel");
    assert_eq!(c[2]["choices"][0]["delta"]["content"], "lo");
    assert_eq!(c[3]["choices"][0]["finish_reason"], "stop");
    assert_eq!(c[4]["usage"], json!({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}));
    assert_eq!(c[5], json!("[DONE]"));
    assert!(c[..5].iter().all(|c| c["id"] == "chatcmpl-2" && c["object"] == "chat.completion.chunk" && c["model"] == "claude"));

    // cut before its end: no [DONE], and the proxy is told to cut the stream
    let mut t = StreamTranslator::new(Platform::Bedrock, Api::Converse, Box::new(ChunkWriter::new(id, false)));
    let mut out = Vec::new();
    let _ = t.push(&body[..body.len() - 20], &mut out);
    assert!(!t.finish(&mut out).is_complete());
    assert!(!t.error_event_written());
    assert!(!String::from_utf8(out).unwrap().contains("[DONE]"));
}

#[test]
fn tool_call_pieces_open_once_then_carry_arguments() {
    let mut w = ChunkWriter::new(AnswerId { id: "c".into(), created: 0, model: "m".into() }, false);
    let mut out = Vec::new();
    w.tool_call(0, Some("tooluse_A"), Some("get_weather"), "", &mut out);
    w.tool_call(0, None, None, "{\"city\":", &mut out);
    w.complete(&Usage::default(), &mut out);
    let c = chunks(&out);
    assert_eq!(c[0]["choices"][0]["delta"]["tool_calls"][0], json!({"index": 0, "id": "tooluse_A", "type": "function", "function": {"name": "get_weather", "arguments": ""}}));
    assert_eq!(c[1]["choices"][0]["delta"]["tool_calls"][0], json!({"index": 0, "function": {"arguments": "{\"city\":"}}));
    assert_eq!(c[2]["choices"][0]["finish_reason"], "tool_calls", "a stream that never said why it stopped still says it");
    assert_eq!(c[3], json!("[DONE]"));
}
