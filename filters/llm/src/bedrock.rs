//! AWS Bedrock Runtime: Converse / ConverseStream and InvokeModel(/WithResponseStream) bodies
//! for Anthropic, Mistral and Meta Llama models. Envoy signs the request (SigV4); the path
//! built here is what it signs, so it is encoded exactly once.

use serde_json::{Map, Value, json};

use crate::{Completion, LlmError, LlmRequest, Message, ModelTarget, Role, ToolCall, ToolChoice, Usage, Wire};

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
    if id.contains('%') { id.to_owned() } else { crate::openai::encode_segment(id) }
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

/// One content block of a Bedrock turn.
#[derive(Debug, PartialEq)]
enum Block<'a> {
    Text(String),
    /// An assistant's tool call; `input` is the parsed arguments.
    ToolUse { id: &'a str, name: &'a str, input: Value },
    /// A tool's result for call `id`.
    ToolResult { id: &'a str, text: &'a str },
}

/// Splits off the system text and makes the conversation Bedrock-valid: starts with `user`,
/// alternates roles (consecutive turns of one role are joined: texts with a blank line, tool
/// blocks side by side), no empty text. Tool results travel in user turns, as Bedrock wants.
/// One turn of a Bedrock conversation: its role and content blocks.
type Turn<'a> = (Role, Vec<Block<'a>>);

fn conversation(messages: &[Message]) -> Result<(Option<&str>, Vec<Turn<'_>>), LlmError> {
    let (system, rest) = match messages.first() {
        Some(m) if m.role == Role::System => (Some(m.content.as_str()), &messages[1..]),
        _ => (None, messages),
    };
    let mut turns: Vec<Turn<'_>> = Vec::with_capacity(rest.len());
    for m in rest {
        let role = if m.role == Role::Assistant { Role::Assistant } else { Role::User };
        let mut blocks = Vec::with_capacity(1 + m.tool_calls.len());
        if m.role == Role::Tool {
            let id = m.tool_call_id.as_deref().ok_or_else(|| LlmError::Invalid("a tool message needs tool_call_id".into()))?;
            blocks.push(Block::ToolResult { id, text: &m.content });
        } else if !m.content.is_empty() || m.tool_calls.is_empty() {
            // An assistant turn that only calls tools has no text block.
            blocks.push(Block::Text(m.content.clone()));
        }
        for c in &m.tool_calls {
            let input: Value = serde_json::from_str(if c.arguments.trim().is_empty() { "{}" } else { &c.arguments })
                .map_err(|_| LlmError::Invalid(format!("the arguments of tool call '{}' are not JSON", c.id)))?;
            if !input.is_object() {
                return Err(LlmError::Invalid(format!("the arguments of tool call '{}' are not a JSON object", c.id)));
            }
            blocks.push(Block::ToolUse { id: &c.id, name: &c.name, input });
        }
        match turns.last_mut() {
            Some((r, existing)) if *r == role => {
                for b in blocks {
                    match (existing.last_mut(), b) {
                        (Some(Block::Text(text)), Block::Text(more)) => {
                            text.push_str("\n\n");
                            text.push_str(&more);
                        }
                        (_, b) => existing.push(b),
                    }
                }
            }
            _ => turns.push((role, blocks)),
        }
    }
    if turns.first().is_none_or(|(r, _)| *r != Role::User) {
        turns.insert(0, (Role::User, vec![Block::Text(String::new())]));
    }
    for (_, blocks) in &mut turns {
        for b in blocks.iter_mut() {
            if let Block::Text(text) = b
                && text.trim().is_empty()
            {
                // Bedrock rejects blank text blocks.
                *text = "(empty)".to_owned();
            }
        }
    }
    Ok((system, turns))
}

fn converse_block(b: &Block<'_>) -> Value {
    match b {
        Block::Text(t) => json!({"text": t}),
        Block::ToolUse { id, name, input } => json!({"toolUse": {"toolUseId": id, "name": name, "input": input}}),
        Block::ToolResult { id, text } => json!({"toolResult": {"toolUseId": id, "content": [{"text": text}]}}),
    }
}

fn anthropic_block(b: &Block<'_>) -> Value {
    match b {
        Block::Text(t) => json!({"type": "text", "text": t}),
        Block::ToolUse { id, name, input } => json!({"type": "tool_use", "id": id, "name": name, "input": input}),
        Block::ToolResult { id, text } => json!({"type": "tool_result", "tool_use_id": id, "content": text}),
    }
}

/// Converse `toolConfig`: the tools' JSON schemas and the choice. Bedrock has no "none":
/// the tools stay declared (a tool history needs them) and the choice is left out.
fn converse_tool_config(p: &LlmRequest) -> Option<Value> {
    if p.tools.is_empty() {
        return None;
    }
    let tools: Vec<Value> = p
        .tools
        .iter()
        .map(|t| {
            let mut spec = Map::new();
            spec.insert("name".into(), json!(t.name));
            if let Some(d) = t.description.as_deref().filter(|d| !d.is_empty()) {
                spec.insert("description".into(), json!(d));
            }
            spec.insert("inputSchema".into(), json!({"json": t.parameters}));
            json!({"toolSpec": spec})
        })
        .collect();
    let mut config = Map::new();
    config.insert("tools".into(), Value::Array(tools));
    match &p.tool_choice {
        Some(ToolChoice::Auto) => {
            config.insert("toolChoice".into(), json!({"auto": {}}));
        }
        Some(ToolChoice::Required) => {
            config.insert("toolChoice".into(), json!({"any": {}}));
        }
        Some(ToolChoice::Named(name)) => {
            config.insert("toolChoice".into(), json!({"tool": {"name": name}}));
        }
        Some(ToolChoice::None) | None => {}
    }
    Some(Value::Object(config))
}

/// (path, body) for a Bedrock wire.
pub fn build(model: &ModelTarget<'_>, wire: Wire, p: &LlmRequest) -> Result<(String, Vec<u8>), LlmError> {
    let params = &p.params;
    if wire.takes_raw_text() && !p.tools.is_empty() {
        return Err(LlmError::Unsupported("tools need Bedrock Converse or an Anthropic model".into()));
    }
    let body = match wire {
        Wire::BedrockConverse => {
            let (system, turns) = conversation(&p.messages)?;
            let mut body = Map::new();
            if let Some(s) = system.filter(|s| !s.trim().is_empty()) {
                body.insert("system".into(), json!([{ "text": s }]));
            }
            let msgs: Vec<Value> = turns
                .iter()
                .map(|(r, blocks)| json!({"role": r.name(), "content": blocks.iter().map(converse_block).collect::<Vec<_>>()}))
                .collect();
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
            if let Some(config) = converse_tool_config(p) {
                body.insert("toolConfig".into(), config);
            }
            Value::Object(body)
        }
        Wire::BedrockAnthropic => {
            let (system, turns) = conversation(&p.messages)?;
            let mut body = Map::new();
            body.insert("anthropic_version".into(), json!(ANTHROPIC_VERSION));
            body.insert("max_tokens".into(), json!(max_tokens(params)));
            if let Some(s) = system.filter(|s| !s.trim().is_empty()) {
                body.insert("system".into(), json!(s));
            }
            let msgs: Vec<Value> = turns
                .iter()
                .map(|(r, blocks)| json!({"role": r.name(), "content": blocks.iter().map(anthropic_block).collect::<Vec<_>>()}))
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
            if !p.tools.is_empty() {
                let tools: Vec<Value> = p
                    .tools
                    .iter()
                    .map(|t| json!({"name": t.name, "description": t.description.as_deref().unwrap_or(""), "input_schema": t.parameters}))
                    .collect();
                body.insert("tools".into(), Value::Array(tools));
                match &p.tool_choice {
                    Some(ToolChoice::Auto) => {
                        body.insert("tool_choice".into(), json!({"type": "auto"}));
                    }
                    Some(ToolChoice::Required) => {
                        body.insert("tool_choice".into(), json!({"type": "any"}));
                    }
                    Some(ToolChoice::Named(name)) => {
                        body.insert("tool_choice".into(), json!({"type": "tool", "name": name}));
                    }
                    Some(ToolChoice::None) | None => {}
                }
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
            return Err(LlmError::Unsupported("not a Bedrock wire".into()));
        }
    };
    let mut bytes = Vec::with_capacity(p.body_size_hint());
    serde_json::to_writer(&mut bytes, &body).map_err(|e| LlmError::Encode(e.to_string()))?;
    Ok((path(model.model, wire, p.stream), bytes))
}

fn header_u64(headers: &[(String, String)], name: &str) -> Option<u64> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).and_then(|(_, v)| v.trim().parse().ok())
}

fn usage_from_headers(headers: &[(String, String)]) -> Usage {
    match header_u64(headers, "x-amzn-bedrock-input-token-count") {
        Some(input) => {
            Usage::known(Some(input), Some(header_u64(headers, "x-amzn-bedrock-output-token-count").unwrap_or(0)), None)
        }
        None => Usage::default(),
    }
}

/// Tool calls among content blocks: Converse `{"toolUse": {...}}`, Anthropic `{"type": "tool_use"}`.
fn tool_calls_in(blocks: Option<&Value>) -> Vec<ToolCall> {
    let Some(blocks) = blocks.and_then(Value::as_array) else { return Vec::new() };
    blocks
        .iter()
        .filter_map(|b| {
            let (id, name, input) = if let Some(u) = b.get("toolUse") {
                (u.get("toolUseId"), u.get("name"), u.get("input"))
            } else if b.get("type").and_then(Value::as_str) == Some("tool_use") {
                (b.get("id"), b.get("name"), b.get("input"))
            } else {
                return None;
            };
            Some(ToolCall {
                id: id.and_then(Value::as_str).unwrap_or_default().to_owned(),
                name: name.and_then(Value::as_str)?.to_owned(),
                arguments: input.map_or_else(|| "{}".to_owned(), Value::to_string),
            })
        })
        .collect()
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
            let usage = u.map_or_else(Usage::default, |_| {
                let input = n("inputTokens") + n("cacheReadInputTokens") + n("cacheWriteInputTokens");
                Usage::known(Some(input), Some(n("outputTokens")), None)
            });
            let finish = str_of(&v, "stopReason").map(|r| finish_reason(&r).to_owned());
            Ok(Completion { text, tool_calls: tool_calls_in(content), finish_reason: finish, usage, model: None })
        }
        Wire::BedrockAnthropic => {
            let text = texts(v.get("content"), "text").ok_or_else(|| "no content".to_owned())?;
            let u = v.get("usage");
            let n = |k: &str| u.and_then(|u| u.get(k)).and_then(Value::as_u64).unwrap_or(0);
            let usage = match u {
                Some(_) => {
                    let input = n("input_tokens") + n("cache_read_input_tokens") + n("cache_creation_input_tokens");
                    Usage::known(Some(input), Some(n("output_tokens")), None)
                }
                None => usage_from_headers(headers),
            };
            let finish = str_of(&v, "stop_reason").map(|r| finish_reason(&r).to_owned());
            let model = crate::completion::reported_model(&v);
            Ok(Completion { text, tool_calls: tool_calls_in(v.get("content")), finish_reason: finish, usage, model })
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
                tool_calls: Vec::new(),
                finish_reason: reason.map(|r| finish_reason(&r).to_owned()),
                usage: usage_from_headers(headers),
                model: None,
            })
        }
        Wire::BedrockLlama => {
            let text = str_of(&v, "generation").ok_or_else(|| "no generation".to_owned())?;
            let usage = match (v.get("prompt_token_count").and_then(Value::as_u64), v.get("generation_token_count").and_then(Value::as_u64)) {
                (Some(i), o) => Usage::known(Some(i), Some(o.unwrap_or(0)), None),
                _ => usage_from_headers(headers),
            };
            let finish = str_of(&v, "stop_reason").map(|r| finish_reason(&r).to_owned());
            Ok(Completion { text, tool_calls: Vec::new(), finish_reason: finish, usage, model: None })
        }
        Wire::OpenaiChat | Wire::OpenaiCompletions => Err("not a Bedrock wire".into()),
    }
}
