//! OpenAI's Chat Completions API as a server speaks it: a client's request → [`LlmRequest`],
//! and a [`Completion`] or a platform stream → OpenAI's answer shapes (`chat.completion`,
//! `chat.completion.chunk` SSE, `{"error"}`). The model ingress puts any listed model behind it.

use crate::stream::{Reframer, StreamError};
use crate::{Completion, LlmRequest, Message, Role, ToolCall, ToolChoice, ToolSpec, Usage};
use serde_json::{Map, Value, json};

/// A request the gateway refuses: 400 `invalid_request_error`, `param` names the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestError {
    pub message: String,
    pub param: Option<String>,
}

fn invalid(param: impl Into<String>, message: impl Into<String>) -> RequestError {
    RequestError { message: message.into(), param: Some(param.into()) }
}

/// What the request asks besides the model input.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// `model` as the client sent it (echoed in answers).
    pub model: String,
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// `n` (choices asked for).
    pub n: u64,
    /// `response_format.type` when it is not `text`.
    pub response_format: Option<String>,
    /// `logprobs: true` was asked.
    pub logprobs: bool,
}

/// Parameters with a meaning on every platform; others stay with the client's JSON (forwarded
/// as they are to OpenAI-compatible platforms, refused or ignored elsewhere).
const PORTABLE_PARAMS: [&str; 3] = ["temperature", "top_p", "max_tokens"];

/// Reads a Chat Completions request. Messages: `system`/`developer`, `user`, `assistant` (with
/// `tool_calls`), `tool` (with `tool_call_id`); content a string or text parts. Tool-call
/// arguments must be JSON objects (a platform that takes structured input could not carry
/// anything else).
pub fn parse_request(body: &Value) -> Result<(LlmRequest, Options), RequestError> {
    let Some(obj) = body.as_object() else {
        return Err(RequestError { message: "the body must be a JSON object".into(), param: None });
    };
    let model = match obj.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        _ => return Err(invalid("model", "`model` is required (a string)")),
    };
    let Some(raw_messages) = obj.get("messages").and_then(Value::as_array) else {
        return Err(invalid("messages", "`messages` is required (an array)"));
    };
    if raw_messages.is_empty() {
        return Err(invalid("messages", "`messages` must not be empty"));
    }
    let mut messages = Vec::with_capacity(raw_messages.len());
    for (i, m) in raw_messages.iter().enumerate() {
        messages.push(message(i, m)?);
    }
    let mut req = LlmRequest { messages, ..LlmRequest::default() };
    for key in PORTABLE_PARAMS {
        if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
            if !v.is_number() {
                return Err(invalid(key, format!("`{key}` must be a number")));
            }
            req.params.insert(key.to_owned(), v.clone());
        }
    }
    if let Some(v) = obj.get("max_completion_tokens").filter(|v| !v.is_null()) {
        if !v.is_u64() {
            return Err(invalid("max_completion_tokens", "`max_completion_tokens` must be a positive integer"));
        }
        req.params.insert("max_tokens".to_owned(), v.clone());
    }
    req.stop = match obj.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        Some(_) => return Err(invalid("stop", "`stop` must be a string or an array of strings")),
    };
    req.tools = match obj.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(tools)) => tools.iter().enumerate().map(|(i, t)| tool(i, t)).collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("tools", "`tools` must be an array")),
    };
    req.tool_choice = match obj.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => return Err(invalid("tool_choice", format!("unknown tool_choice '{other}'"))),
        }),
        Some(v) => match v.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => Some(ToolChoice::Named(name.to_owned())),
            None => return Err(invalid("tool_choice", "`tool_choice` must be auto, none, required or {type: function, function: {name}}")),
        },
    };
    req.stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("stream", "`stream` must be a boolean")),
    };
    let include_usage = obj.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
    let n = match obj.get("n") {
        None | Some(Value::Null) => 1,
        Some(v) => v.as_u64().filter(|n| *n >= 1).ok_or_else(|| invalid("n", "`n` must be a positive integer"))?,
    };
    let response_format = obj
        .get("response_format")
        .and_then(|r| r.get("type"))
        .and_then(Value::as_str)
        .filter(|t| *t != "text")
        .map(str::to_owned);
    let logprobs = obj.get("logprobs").and_then(Value::as_bool).unwrap_or(false);
    let options = Options { model, stream: req.stream, include_usage, n, response_format, logprobs };
    Ok((req, options))
}

fn message(i: usize, m: &Value) -> Result<Message, RequestError> {
    let at = |field: &str| format!("messages[{i}].{field}");
    let role = match m.get("role").and_then(Value::as_str) {
        Some("system" | "developer") => Role::System,
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("tool") => Role::Tool,
        Some(other) => return Err(invalid(at("role"), format!("unknown role '{other}'"))),
        None => return Err(invalid(at("role"), "`role` is required")),
    };
    let content = match m.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, p) in parts.iter().enumerate() {
                match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    _ => return Err(invalid(format!("messages[{i}].content[{j}]"), "only text content parts are supported")),
                }
            }
            text
        }
        Some(_) => return Err(invalid(at("content"), "`content` must be a string or an array of text parts")),
    };
    let mut msg = Message::new(role, content);
    if let Some(calls) = m.get("tool_calls").filter(|v| !v.is_null()) {
        if role != Role::Assistant {
            return Err(invalid(at("tool_calls"), "only assistant messages carry tool_calls"));
        }
        let Some(calls) = calls.as_array() else { return Err(invalid(at("tool_calls"), "`tool_calls` must be an array")) };
        for (j, c) in calls.iter().enumerate() {
            let here = format!("messages[{i}].tool_calls[{j}]");
            let id = c.get("id").and_then(Value::as_str).filter(|s| !s.is_empty());
            let name = c.pointer("/function/name").and_then(Value::as_str).filter(|s| !s.is_empty());
            let (Some(id), Some(name)) = (id, name) else {
                return Err(invalid(here, "a tool call needs `id` and `function.name`"));
            };
            let arguments = c.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
            let parsed: Result<Value, _> = serde_json::from_str(if arguments.trim().is_empty() { "{}" } else { arguments });
            if !parsed.is_ok_and(|v| v.is_object()) {
                return Err(invalid(format!("{here}.function.arguments"), "tool-call arguments must be a JSON object (as a string)"));
            }
            msg.tool_calls.push(ToolCall { id: id.to_owned(), name: name.to_owned(), arguments: arguments.to_owned() });
        }
    }
    if role == Role::Tool {
        match m.get("tool_call_id").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            Some(id) => msg.tool_call_id = Some(id.to_owned()),
            None => return Err(invalid(at("tool_call_id"), "a tool message needs `tool_call_id`")),
        }
    }
    Ok(msg)
}

fn tool(i: usize, t: &Value) -> Result<ToolSpec, RequestError> {
    let here = format!("tools[{i}]");
    if t.get("type").and_then(Value::as_str) != Some("function") {
        return Err(invalid(here, "only `function` tools are supported"));
    }
    let Some(name) = t.pointer("/function/name").and_then(Value::as_str).filter(|s| !s.is_empty()) else {
        return Err(invalid(format!("{here}.function.name"), "a tool needs a name"));
    };
    let parameters = match t.pointer("/function/parameters") {
        None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => return Err(invalid(format!("{here}.function.parameters"), "`parameters` must be a JSON Schema object")),
    };
    let description = t.pointer("/function/description").and_then(Value::as_str).map(str::to_owned);
    Ok(ToolSpec { name: name.to_owned(), description, parameters })
}

/// Identity of one answer: echoed in every chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnswerId {
    /// `chatcmpl-...`
    pub id: String,
    pub created: u64,
    /// The `model` the client asked for.
    pub model: String,
}

fn usage_json(u: &Usage) -> Value {
    let (i, o) = (u.input_tokens.unwrap_or(0), u.output_tokens.unwrap_or(0));
    json!({"prompt_tokens": i, "completion_tokens": o, "total_tokens": u.total_tokens.unwrap_or(i.saturating_add(o))})
}

fn tool_calls_json(calls: &[ToolCall]) -> Value {
    Value::Array(
        calls
            .iter()
            .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
            .collect(),
    )
}

/// A whole `chat.completion` for a completed answer.
pub fn completion_body(id: &AnswerId, c: &Completion) -> Vec<u8> {
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    let tools = !c.tool_calls.is_empty();
    message.insert("content".into(), if tools && c.text.is_empty() { Value::Null } else { Value::String(c.text.clone()) });
    if tools {
        message.insert("tool_calls".into(), tool_calls_json(&c.tool_calls));
    }
    let finish = c.finish_reason.clone().unwrap_or_else(|| if tools { "tool_calls".into() } else { "stop".into() });
    let body = json!({
        "id": id.id, "object": "chat.completion", "created": id.created, "model": id.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
        "usage": usage_json(&c.usage),
    });
    body.to_string().into_bytes()
}

/// `{"error": {...}}` with OpenAI's fields.
pub fn error_body(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Vec<u8> {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}}).to_string().into_bytes()
}

/// Writes a platform stream as OpenAI `chat.completion.chunk` events: the role first, content
/// and tool-call deltas by `index`, the finish reason, a usage chunk when asked, and
/// `data: [DONE]` only after a complete stream. A broken stream gets no closing event: the
/// proxy must cut it ([`Reframer::broken`] answers `false`).
pub struct ChunkWriter {
    /// `data: {"id":…,"object":"chat.completion.chunk","created":…,"model":…,"choices":`,
    /// written once: every chunk starts with it.
    head: Vec<u8>,
    include_usage: bool,
    /// Tool-call indexes whose opening chunk (id, type, name) has been written.
    opened: Vec<u32>,
    finished: bool,
}

/// Appends `s` as a JSON string literal.
fn push_str(s: &str, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail and a str always serializes.
    let _ = serde_json::to_writer(&mut *out, s);
}

impl ChunkWriter {
    pub fn new(id: AnswerId, include_usage: bool) -> ChunkWriter {
        let mut head = b"data: {\"id\":".to_vec();
        push_str(&id.id, &mut head);
        head.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        head.extend_from_slice(id.created.to_string().as_bytes());
        head.extend_from_slice(b",\"model\":");
        push_str(&id.model, &mut head);
        head.extend_from_slice(b",\"choices\":");
        ChunkWriter { head, include_usage, opened: Vec::new(), finished: false }
    }

    /// One chunk of choice 0: `delta` is the delta object's JSON, written by the caller.
    fn delta(&self, delta: impl FnOnce(&mut Vec<u8>), finish: Option<&str>, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.head);
        out.extend_from_slice(b"[{\"index\":0,\"delta\":");
        delta(out);
        out.extend_from_slice(b",\"finish_reason\":");
        match finish {
            Some(f) => push_str(f, out),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"logprobs\":null}]}\n\n");
    }
}

impl Reframer for ChunkWriter {
    fn start(&mut self, out: &mut Vec<u8>) {
        self.delta(|o| o.extend_from_slice(b"{\"role\":\"assistant\",\"content\":\"\"}"), None, out);
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        self.delta(
            |o| {
                o.extend_from_slice(b"{\"content\":");
                push_str(text, o);
                o.push(b'}');
            },
            None,
            out,
        );
    }

    fn tool_call(&mut self, index: u32, id: Option<&str>, name: Option<&str>, arguments: &str, out: &mut Vec<u8>) {
        let first = !self.opened.contains(&index);
        if first {
            self.opened.push(index);
        }
        self.delta(
            |o| {
                o.extend_from_slice(b"{\"tool_calls\":[{\"index\":");
                o.extend_from_slice(index.to_string().as_bytes());
                if first {
                    o.extend_from_slice(b",\"id\":");
                    push_str(id.unwrap_or_default(), o);
                    o.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
                    push_str(name.unwrap_or_default(), o);
                    o.extend_from_slice(b",\"arguments\":");
                } else {
                    o.extend_from_slice(b",\"function\":{\"arguments\":");
                }
                push_str(arguments, o);
                o.extend_from_slice(b"}}]}");
            },
            None,
            out,
        );
    }

    fn finish_reason(&mut self, reason: &str, out: &mut Vec<u8>) {
        self.finished = true;
        self.delta(|o| o.extend_from_slice(b"{}"), Some(reason), out);
    }

    fn complete(&mut self, usage: &Usage, out: &mut Vec<u8>) {
        if !self.finished {
            let reason = if self.opened.is_empty() { "stop" } else { "tool_calls" };
            self.delta(|o| o.extend_from_slice(b"{}"), Some(reason), out);
        }
        if self.include_usage {
            out.extend_from_slice(&self.head);
            out.extend_from_slice(b"[],\"usage\":");
            out.extend_from_slice(usage_json(usage).to_string().as_bytes());
            out.extend_from_slice(b"}\n\n");
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    fn broken(&mut self, _reason: &StreamError, _out: &mut Vec<u8>) -> bool {
        false
    }
}

#[cfg(test)]
mod tests;
