//! OpenAI-compatible wire (vLLM, other OpenAI-compatible servers, Azure OpenAI): chat
//! completions and legacy completions (raw prompts, needed for fill-in-the-middle since vLLM
//! rejects `suffix`).

use duo_core::errors::GitlabError;
use serde_json::{Map, Value, json};

use super::{Completion, Prepared, Usage, Wire};
use crate::model::{ModelConfig, Platform};
use crate::prompts::Role;

/// Default dated api-version for Azure deployments when the model entry names none.
pub const AZURE_DEFAULT_API_VERSION: &str = "2024-10-21";

/// Percent-encodes a path segment (everything but RFC 3986 unreserved characters).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn azure_uses_v1(model: &ModelConfig) -> bool {
    model.api_version.as_deref().is_some_and(|v| v == "v1" || v == "preview")
}

/// Azure accepts `stream_options` from api-version 2024-09-01-preview on (and on the v1 API).
fn azure_has_stream_options(model: &ModelConfig) -> bool {
    match model.api_version.as_deref() {
        None => true,
        Some(v) if azure_uses_v1(model) => !v.is_empty(),
        Some(v) => v >= "2024-09-01",
    }
}

/// (path with query, body) for `wire`.
pub fn build(model: &ModelConfig, wire: Wire, p: &Prepared) -> Result<(String, Vec<u8>), GitlabError> {
    let chat = wire == Wire::OpenaiChat;
    let path = match model.platform {
        Platform::AzureOpenai => {
            let prefix = model.base_path.as_deref().unwrap_or("").trim_end_matches('/');
            if azure_uses_v1(model) {
                let query = if model.api_version.as_deref() == Some("preview") { "?api-version=preview" } else { "" };
                format!("{prefix}/openai/v1/chat/completions{query}")
            } else {
                let version = model.api_version.as_deref().unwrap_or(AZURE_DEFAULT_API_VERSION);
                format!(
                    "{prefix}/openai/deployments/{}/chat/completions?api-version={}",
                    encode_segment(&model.model),
                    encode_segment(version)
                )
            }
        }
        _ => {
            let base = model.base_path.as_deref().unwrap_or("/v1").trim_end_matches('/');
            format!("{base}/{}", if chat { "chat/completions" } else { "completions" })
        }
    };
    let mut body = Map::new();
    // Classic Azure deployments take the model from the path.
    if model.platform != Platform::AzureOpenai || azure_uses_v1(model) {
        body.insert("model".into(), Value::String(model.model.clone()));
    }
    if chat {
        let mut prefill = false;
        let mut msgs = Vec::with_capacity(p.messages.len());
        for (i, m) in p.messages.iter().enumerate() {
            let last = i + 1 == p.messages.len();
            if last && m.role == Role::Assistant && i > 0 {
                // Azure/OpenAI cannot continue a message: drop the prefill there.
                if model.platform == Platform::AzureOpenai {
                    continue;
                }
                prefill = true;
            }
            msgs.push(json!({"role": m.role.name(), "content": m.content}));
        }
        body.insert("messages".into(), Value::Array(msgs));
        if prefill {
            // vLLM: continue the assistant message instead of opening a new turn.
            body.insert("continue_final_message".into(), Value::Bool(true));
            body.insert("add_generation_prompt".into(), Value::Bool(false));
        }
    } else {
        body.insert("prompt".into(), Value::String(p.raw.clone().unwrap_or_default()));
    }
    for (k, v) in &p.params {
        body.insert(k.clone(), v.clone());
    }
    if !p.stop.is_empty() {
        body.insert("stop".into(), json!(p.stop));
    }
    body.insert("stream".into(), Value::Bool(p.stream));
    if p.stream && (model.platform != Platform::AzureOpenai || azure_has_stream_options(model)) {
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    let bytes = serde_json::to_vec(&Value::Object(body))
        .map_err(|e| GitlabError::detail(500, &format!("cannot encode the upstream request: {e}")))?;
    Ok((path, bytes))
}

pub fn usage_of(v: &Value) -> Option<Usage> {
    let u = v.get("usage")?;
    Some(Usage {
        input_tokens: u.get("prompt_tokens").and_then(Value::as_u64)?,
        output_tokens: u.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0),
    })
}

/// Reads a non-streaming answer: first choice's text, finish reason and usage.
pub fn parse(wire: Wire, body: &[u8]) -> Result<Completion, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let choice = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| "no choices".to_owned())?;
    let text = match wire {
        Wire::OpenaiCompletions => choice.get("text").and_then(Value::as_str),
        _ => choice.get("message").and_then(|m| m.get("content")).and_then(Value::as_str),
    };
    let finish = choice.get("finish_reason").and_then(Value::as_str).map(str::to_owned);
    // A filtered answer has no content; anything else without text is malformed.
    if text.is_none() && finish.as_deref() != Some("content_filter") {
        return Err("choice without text".into());
    }
    Ok(Completion { text: text.unwrap_or_default().to_owned(), finish_reason: finish, usage: usage_of(&v) })
}
