//! AWS Bedrock Runtime: Converse / ConverseStream and InvokeModel(/WithResponseStream) bodies
//! for Anthropic, Mistral and Meta Llama models. Envoy signs the request (SigV4); the path
//! built here is what it signs, so it is encoded exactly once.

use duo_core::errors::GitlabError;
use serde_json::{Map, Value, json};

use super::{Completion, Prepared, Usage, Wire};
use crate::model::ModelConfig;
use crate::prompts::{Message, Role};

/// `anthropic_version` for Anthropic bodies on InvokeModel (AWS's documented value).
pub const ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";
/// Anthropic on Bedrock requires `max_tokens`; used when neither prompt nor model sets one.
pub const DEFAULT_MAX_TOKENS: u64 = 1024;

/// The InvokeModel body family of a model id / inference profile / ARN.
pub fn invoke_wire(model_id: &str) -> Option<Wire> {
    // Works for `anthropic.x`, `us.anthropic.x`, and ARNs ending in `/us.anthropic.x`.
    let tail = model_id.rsplit('/').next().unwrap_or(model_id);
    let provider = tail.split('.').find(|p| !matches!(*p, "us" | "eu" | "apac" | "global" | "us-gov" | "jp" | "au" | "ca"))?;
    match provider {
        "anthropic" => Some(Wire::BedrockAnthropic),
        "mistral" => Some(Wire::BedrockMistral),
        "meta" => Some(Wire::BedrockLlama),
        _ => None,
    }
}

/// The model id as one path segment: every byte but RFC 3986 unreserved characters is
/// percent-encoded (`:` → `%3A`, `/` → `%2F`), as botocore does; an id that already
/// contains `%` is taken as encoded (never double-encode).
pub fn encode_model_id(id: &str) -> String {
    if id.contains('%') { id.to_owned() } else { super::openai::encode_segment(id) }
}

pub fn path(model_id: &str, wire: Wire, stream: bool) -> String {
    let op = match (wire, stream) {
        (Wire::BedrockConverse, false) => "converse",
        (Wire::BedrockConverse, true) => "converse-stream",
        (_, false) => "invoke",
        (_, true) => "invoke-with-response-stream",
    };
    format!("/model/{}/{op}", encode_model_id(model_id))
}

fn num(params: &Map<String, Value>, k: &str) -> Option<Value> {
    params.get(k).filter(|v| v.is_number()).cloned()
}

/// Bedrock's temperature/top_p range is 0..=1 (OpenAI's temperature goes to 2).
fn unit(params: &Map<String, Value>, k: &str) -> Option<Value> {
    let v = params.get(k)?.as_f64()?;
    Some(json!(v.clamp(0.0, 1.0)))
}

fn max_tokens(params: &Map<String, Value>) -> u64 {
    params
        .get("max_tokens")
        .or_else(|| params.get("max_completion_tokens"))
        .and_then(Value::as_u64)
        .filter(|n| *n >= 1)
        .unwrap_or(DEFAULT_MAX_TOKENS)
}

/// Splits off the system text and makes the conversation Bedrock-valid: starts with `user`,
/// alternates roles (consecutive turns of one role are joined), no empty text.
fn conversation(messages: &[Message]) -> (Option<&str>, Vec<(Role, String)>) {
    let (system, rest) = match messages.first() {
        Some(m) if m.role == Role::System => (Some(m.content.as_str()), &messages[1..]),
        _ => (None, messages),
    };
    let mut turns: Vec<(Role, String)> = Vec::with_capacity(rest.len());
    for m in rest {
        let role = if m.role == Role::Assistant { Role::Assistant } else { Role::User };
        match turns.last_mut() {
            Some((r, text)) if *r == role => {
                text.push_str("\n\n");
                text.push_str(&m.content);
            }
            _ => turns.push((role, m.content.clone())),
        }
    }
    if turns.first().is_none_or(|(r, _)| *r != Role::User) {
        turns.insert(0, (Role::User, String::new()));
    }
    for (_, text) in &mut turns {
        if text.trim().is_empty() {
            // Bedrock rejects blank text blocks.
            *text = "(empty)".to_owned();
        }
    }
    (system, turns)
}

/// (path, body) for a Bedrock wire.
pub fn build(model: &ModelConfig, wire: Wire, p: &Prepared) -> Result<(String, Vec<u8>), GitlabError> {
    let params = &p.params;
    let body = match wire {
        Wire::BedrockConverse => {
            let (system, turns) = conversation(&p.messages);
            let mut body = Map::new();
            if let Some(s) = system.filter(|s| !s.trim().is_empty()) {
                body.insert("system".into(), json!([{ "text": s }]));
            }
            let msgs: Vec<Value> =
                turns.iter().map(|(r, t)| json!({"role": r.name(), "content": [{"text": t}]})).collect();
            body.insert("messages".into(), Value::Array(msgs));
            let mut inference = Map::new();
            inference.insert("maxTokens".into(), json!(max_tokens(params)));
            if let Some(t) = unit(params, "temperature") {
                inference.insert("temperature".into(), t);
            }
            if let Some(t) = unit(params, "top_p") {
                inference.insert("topP".into(), t);
            }
            if !p.stop.is_empty() {
                inference.insert("stopSequences".into(), json!(p.stop));
            }
            body.insert("inferenceConfig".into(), Value::Object(inference));
            // Anything else the model entry sets goes to the model as-is (top_k, ...).
            let extra: Map<String, Value> = params
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "max_tokens" | "max_completion_tokens" | "temperature" | "top_p"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !extra.is_empty() {
                body.insert("additionalModelRequestFields".into(), Value::Object(extra));
            }
            Value::Object(body)
        }
        Wire::BedrockAnthropic => {
            let (system, turns) = conversation(&p.messages);
            let mut body = Map::new();
            body.insert("anthropic_version".into(), json!(ANTHROPIC_VERSION));
            body.insert("max_tokens".into(), json!(max_tokens(params)));
            if let Some(s) = system.filter(|s| !s.trim().is_empty()) {
                body.insert("system".into(), json!(s));
            }
            let msgs: Vec<Value> = turns
                .iter()
                .map(|(r, t)| json!({"role": r.name(), "content": [{"type": "text", "text": t}]}))
                .collect();
            body.insert("messages".into(), Value::Array(msgs));
            for (k, name) in [("temperature", "temperature"), ("top_p", "top_p")] {
                if let Some(v) = unit(params, k) {
                    body.insert(name.into(), v);
                }
            }
            if let Some(v) = num(params, "top_k") {
                body.insert("top_k".into(), v);
            }
            if !p.stop.is_empty() {
                body.insert("stop_sequences".into(), json!(p.stop));
            }
            Value::Object(body)
        }
        Wire::BedrockMistral => {
            let mut body = Map::new();
            body.insert("prompt".into(), json!(p.raw.as_deref().unwrap_or_default()));
            body.insert("max_tokens".into(), json!(max_tokens(params)));
            for k in ["temperature", "top_p"] {
                if let Some(v) = unit(params, k) {
                    body.insert(k.into(), v);
                }
            }
            if let Some(v) = num(params, "top_k") {
                body.insert("top_k".into(), v);
            }
            if !p.stop.is_empty() {
                body.insert("stop".into(), json!(p.stop));
            }
            Value::Object(body)
        }
        Wire::BedrockLlama => {
            // Llama on InvokeModel has no stop parameter; the chat format ends the turn.
            let mut body = Map::new();
            body.insert("prompt".into(), json!(p.raw.as_deref().unwrap_or_default()));
            body.insert("max_gen_len".into(), json!(max_tokens(params)));
            for k in ["temperature", "top_p"] {
                if let Some(v) = unit(params, k) {
                    body.insert(k.into(), v);
                }
            }
            Value::Object(body)
        }
        Wire::OpenaiChat | Wire::OpenaiCompletions => {
            return Err(GitlabError::detail(500, "not a Bedrock wire"));
        }
    };
    let bytes = serde_json::to_vec(&body)
        .map_err(|e| GitlabError::detail(500, &format!("cannot encode the upstream request: {e}")))?;
    Ok((path(&model.model, wire, p.stream), bytes))
}

fn header_u64(headers: &[(String, String)], name: &str) -> Option<u64> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).and_then(|(_, v)| v.trim().parse().ok())
}

fn usage_from_headers(headers: &[(String, String)]) -> Option<Usage> {
    Some(Usage {
        input_tokens: header_u64(headers, "x-amzn-bedrock-input-token-count")?,
        output_tokens: header_u64(headers, "x-amzn-bedrock-output-token-count").unwrap_or(0),
    })
}

/// Bedrock stop reasons in OpenAI/GitLab vocabulary.
pub fn finish_reason(r: &str) -> &'static str {
    match r {
        "max_tokens" | "length" | "model_context_window_exceeded" => "length",
        "content_filtered" | "guardrail_intervened" | "refusal" => "content_filter",
        "tool_use" => "tool_calls",
        _ => "stop",
    }
}

fn texts(blocks: Option<&Value>, key: &str) -> Option<String> {
    let blocks = blocks?.as_array()?;
    let mut out = String::new();
    for b in blocks {
        if let Some(t) = b.get(key).and_then(Value::as_str) {
            out.push_str(t);
        }
    }
    Some(out)
}

pub fn parse(wire: Wire, headers: &[(String, String)], body: &[u8]) -> Result<Completion, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    match wire {
        Wire::BedrockConverse => {
            let content = v.get("output").and_then(|o| o.get("message")).and_then(|m| m.get("content"));
            let text = texts(content, "text").ok_or_else(|| "no output.message".to_owned())?;
            let u = v.get("usage");
            let n = |k: &str| u.and_then(|u| u.get(k)).and_then(Value::as_u64).unwrap_or(0);
            let usage = u.map(|_| Usage {
                input_tokens: n("inputTokens") + n("cacheReadInputTokens") + n("cacheWriteInputTokens"),
                output_tokens: n("outputTokens"),
            });
            let finish = str_of(&v, "stopReason").map(|r| finish_reason(&r).to_owned());
            Ok(Completion { text, finish_reason: finish, usage })
        }
        Wire::BedrockAnthropic => {
            let text = texts(v.get("content"), "text").ok_or_else(|| "no content".to_owned())?;
            let u = v.get("usage");
            let n = |k: &str| u.and_then(|u| u.get(k)).and_then(Value::as_u64).unwrap_or(0);
            let usage = u.map(|_| Usage {
                input_tokens: n("input_tokens") + n("cache_read_input_tokens") + n("cache_creation_input_tokens"),
                output_tokens: n("output_tokens"),
            });
            let usage = usage.or_else(|| usage_from_headers(headers));
            let finish = str_of(&v, "stop_reason").map(|r| finish_reason(&r).to_owned());
            Ok(Completion { text, finish_reason: finish, usage })
        }
        Wire::BedrockMistral => {
            // Text models: {outputs:[{text, stop_reason}]}; Mistral Large: {choices:[{message}]}.
            let (text, reason) = if let Some(o) = v.get("outputs").and_then(Value::as_array).and_then(|a| a.first()) {
                (str_of(o, "text"), str_of(o, "stop_reason"))
            } else if let Some(c) = v.get("choices").and_then(Value::as_array).and_then(|a| a.first()) {
                let t = c.get("message").and_then(|m| m.get("content")).and_then(Value::as_str).map(str::to_owned);
                (t, str_of(c, "stop_reason").or_else(|| str_of(c, "finish_reason")))
            } else {
                (None, None)
            };
            let text = text.ok_or_else(|| "no outputs".to_owned())?;
            Ok(Completion {
                text,
                finish_reason: reason.map(|r| finish_reason(&r).to_owned()),
                usage: usage_from_headers(headers),
            })
        }
        Wire::BedrockLlama => {
            let text = str_of(&v, "generation").ok_or_else(|| "no generation".to_owned())?;
            let usage = match (v.get("prompt_token_count").and_then(Value::as_u64), v.get("generation_token_count").and_then(Value::as_u64)) {
                (Some(i), o) => Some(Usage { input_tokens: i, output_tokens: o.unwrap_or(0) }),
                _ => usage_from_headers(headers),
            };
            let finish = str_of(&v, "stop_reason").map(|r| finish_reason(&r).to_owned());
            Ok(Completion { text, finish_reason: finish, usage })
        }
        Wire::OpenaiChat | Wire::OpenaiCompletions => Err("not a Bedrock wire".into()),
    }
}
