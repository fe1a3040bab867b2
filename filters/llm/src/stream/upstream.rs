//! What each platform's stream events mean: text, usage, end marker, error.
//!
//! - OpenAI-style SSE (vLLM, OpenAI-compatible, Azure): `choices[i].delta.content` (chat) or
//!   `choices[i].text` (completions) of choice 0; `usage` (any chunk, last one wins);
//!   `data: [DONE]` is the end. Azure's `choices: []` + `prompt_filter_results` chunks and
//!   choices without `delta` carry no text and are skipped. `{"error": ...}` (also vLLM's old
//!   flat `{"object":"error"}`) or `event: error` breaks the stream; `finish_reason:
//!   "content_filter"` too (the answer was cut by the platform's filter).
//! - Bedrock ConverseStream: `contentBlockDelta.delta.text`; `messageStop` then `metadata`
//!   (usage) is the end; `stopReason` `content_filtered`/`guardrail_intervened` breaks it.
//! - Bedrock InvokeModelWithResponseStream: `chunk` events whose `bytes` (base64) hold the
//!   model's own JSON: Anthropic messages events (end: `message_stop`), Mistral `outputs[0]`,
//!   Mistral chat-style / DeepSeek `choices[0]`, Llama `generation`, Titan `outputText`, Cohere
//!   `text`, Claude 2 `completion` (end: a `stop_reason` / `completionReason` / `is_finished`),
//!   and on the last chunk `amazon-bedrock-invocationMetrics` (usage; also marks the end). A
//!   chunk of none of these shapes is refused, never silently dropped.
//! - Bedrock `exception` and `error` messages break the stream.
//!
//! Tool calls reach the reframer piece by piece ([`Reframer::tool_call`]: OpenAI
//! `delta.tool_calls`, Converse `toolUse` blocks, Anthropic `tool_use` blocks with
//! `input_json_delta`), and so does the stop reason in OpenAI's vocabulary
//! ([`Reframer::finish_reason`]). Reasoning text and other side channels are dropped.

use super::eventstream::Message;
use super::sse::SseEvent;
use super::{Reframer, StreamError};
use crate::{Api, Platform, Usage};
use base64::Engine as _;
use serde::Deserialize;
use serde::de::IgnoredAny;
use std::borrow::Cow;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAI chat/completions chunks over SSE (vLLM, OpenAI-compatible, Azure).
    OpenAi,
    /// Bedrock ConverseStream over event-stream.
    Converse,
    /// Bedrock InvokeModelWithResponseStream over event-stream.
    Invoke,
}

impl Dialect {
    /// The stream dialect of `api` on `platform`.
    pub fn of(platform: Platform, api: Api) -> Dialect {
        match (platform, api) {
            (Platform::Bedrock, Api::Invoke) => Dialect::Invoke,
            (Platform::Bedrock, _) => Dialect::Converse,
            _ => Dialect::OpenAi,
        }
    }
}

/// Longest upstream error message kept (bytes, cut at a char boundary).
const MAX_MESSAGE: usize = 300;

pub(crate) fn bounded(s: &str) -> String {
    if s.len() <= MAX_MESSAGE {
        return s.to_owned();
    }
    let mut end = MAX_MESSAGE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Translation state shared by every dialect; the decoder lives beside it.
pub struct Core {
    pub(crate) dialect: Dialect,
    pub(crate) reframer: Box<dyn Reframer>,
    pub(crate) usage: Usage,
    pub(crate) first_text: bool,
    /// The end marker arrived: later bytes are ignored.
    pub(crate) complete: bool,
    /// Converse: `messageStop` seen (the end needs `metadata` too).
    stop_seen: bool,
    metadata_seen: bool,
    /// Reused base64 output of InvokeModel `chunk` payloads.
    scratch: Vec<u8>,
    pub(crate) text_bytes: u64,
    /// Content-block indexes (Converse, Anthropic) that are tool calls, in order: a tool call's
    /// index for the reframer is its position here.
    tool_blocks: Vec<u64>,
    /// The stop reason was passed on (some platforms repeat it).
    finish_sent: bool,
    /// That stop reason, in OpenAI's vocabulary (for the access log).
    pub(crate) finish_reason: Option<String>,
    /// The model id the platform says answered (OpenAI-style `model`, Anthropic's
    /// `message_start.message.model`), bounded.
    pub(crate) model: Option<String>,
}

impl Core {
    pub fn new(dialect: Dialect, reframer: Box<dyn Reframer>) -> Self {
        Core {
            dialect,
            reframer,
            usage: Usage::default(),
            first_text: false,
            complete: false,
            stop_seen: false,
            metadata_seen: false,
            scratch: Vec::new(),
            text_bytes: 0,
            tool_blocks: Vec::new(),
            finish_sent: false,
            finish_reason: None,
            model: None,
        }
    }

    fn finish(&mut self, reason: &str, out: &mut Vec<u8>) {
        if !self.finish_sent {
            self.finish_sent = true;
            self.finish_reason = Some(bounded(reason));
            self.reframer.finish_reason(reason, out);
        }
    }

    fn tool_index(&mut self, block: u64) -> Option<u32> {
        self.tool_blocks.iter().position(|b| *b == block).and_then(|i| u32::try_from(i).ok())
    }

    fn tool_start(&mut self, block: u64, id: &str, name: &str, out: &mut Vec<u8>) {
        if self.tool_index(block).is_none() {
            self.tool_blocks.push(block);
        }
        if let Some(index) = self.tool_index(block) {
            self.reframer.tool_call(index, Some(id), Some(name), "", out);
        }
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        if text.is_empty() {
            return;
        }
        self.first_text = true;
        self.text_bytes += text.len() as u64;
        self.reframer.text(text, out);
    }

    // ---------------------------------------------------------------- OpenAI-style SSE

    pub fn on_sse(&mut self, ev: SseEvent<'_>, out: &mut Vec<u8>) -> Result<(), StreamError> {
        if self.complete {
            return Ok(());
        }
        let data = ev.data.trim_ascii();
        if data == b"[DONE]" {
            self.complete = true;
            return Ok(());
        }
        if ev.event == b"error" {
            return Err(error_from_json(data).unwrap_or(StreamError::UpstreamError {
                code: None,
                message: bounded(&String::from_utf8_lossy(data)),
            }));
        }
        if data.is_empty() {
            return Ok(());
        }
        let chunk: OaiChunk<'_> =
            serde_json::from_slice(data).map_err(|_| StreamError::Malformed("stream chunk is not the platform's JSON"))?;
        if chunk.error.as_ref().is_some_and(|e| !e.is_null()) || chunk.object.as_deref() == Some("error") {
            return Err(error_from_json(data).unwrap_or(StreamError::UpstreamError { code: None, message: String::new() }));
        }
        if self.model.is_none() {
            self.model = chunk.model.as_deref().filter(|m| !m.is_empty()).map(bounded);
        }
        for choice in chunk.choices.iter().filter(|c| c.index == 0) {
            if let Some(text) = choice.delta.as_ref().and_then(|d| d.content.as_deref()) {
                self.text(text, out);
            }
            if let Some(text) = choice.text.as_deref() {
                self.text(text, out);
            }
            for call in choice.delta.iter().flat_map(|d| d.tool_calls.iter()) {
                let f = call.function.as_ref();
                let arguments = f.and_then(|f| f.arguments.as_deref()).unwrap_or("");
                let name = f.and_then(|f| f.name.as_deref());
                self.reframer.tool_call(call.index, call.id.as_deref(), name, arguments, out);
            }
            if choice.finish_reason.as_deref() == Some("content_filter") {
                self.finish_reason = Some("content_filter".to_owned());
                return Err(StreamError::ContentFiltered);
            }
            if let Some(reason) = choice.finish_reason.as_deref() {
                self.finish(reason, out);
            }
        }
        if let Some(u) = chunk.usage {
            self.usage = Usage::known(u.prompt_tokens, u.completion_tokens, u.total_tokens);
        }
        Ok(())
    }

    // ---------------------------------------------------------------- Bedrock event-stream

    pub fn on_message(&mut self, m: Message<'_>, out: &mut Vec<u8>) -> Result<(), StreamError> {
        if self.complete {
            return Ok(());
        }
        match m.headers.get_str(":message-type") {
            Some("event") => {}
            Some("exception") => {
                let kind = m.headers.get_str(":exception-type").unwrap_or("unknown").to_owned();
                let message = serde_json::from_slice::<MessageBody<'_>>(m.payload)
                    .ok()
                    .and_then(|b| b.message.or(b.message_upper))
                    .map(|s| bounded(&s))
                    .unwrap_or_default();
                return Err(StreamError::UpstreamException { kind: bounded(&kind), message });
            }
            Some("error") => {
                return Err(StreamError::UpstreamError {
                    code: m.headers.get_str(":error-code").map(bounded),
                    message: m.headers.get_str(":error-message").map(bounded).unwrap_or_default(),
                });
            }
            _ => return Err(StreamError::Malformed("event-stream message without a known :message-type")),
        }
        let event_type = m.headers.get_str(":event-type").unwrap_or("");
        match self.dialect {
            Dialect::Invoke => self.on_invoke_event(event_type, m.payload, out),
            _ => self.on_converse_event(event_type, m.payload, out),
        }
    }

    fn on_converse_event(&mut self, event_type: &str, payload: &[u8], out: &mut Vec<u8>) -> Result<(), StreamError> {
        match event_type {
            "contentBlockStart" => {
                let ev: ConverseStart<'_> = parse(payload)?;
                if let Some(tool) = ev.start.and_then(|s| s.tool_use) {
                    self.tool_start(ev.content_block_index, &tool.tool_use_id, &tool.name, out);
                }
            }
            "contentBlockDelta" => {
                let ev: ConverseDelta<'_> = parse(payload)?;
                if let Some(delta) = ev.delta {
                    if let Some(text) = delta.text {
                        self.text(&text, out);
                    }
                    if let Some(input) = delta.tool_use.and_then(|t| t.input) {
                        // Input for a block that never started as a tool call has no call to join.
                        if let Some(index) = self.tool_index(ev.content_block_index) {
                            self.reframer.tool_call(index, None, None, &input, out);
                        }
                    }
                }
            }
            "messageStop" => {
                let ev: ConverseStop<'_> = parse(payload)?;
                if matches!(ev.stop_reason.as_deref(), Some("content_filtered" | "guardrail_intervened")) {
                    self.finish_reason = Some("content_filter".to_owned());
                    return Err(StreamError::ContentFiltered);
                }
                if let Some(reason) = ev.stop_reason.as_deref() {
                    self.finish(crate::bedrock::finish_reason(reason), out);
                }
                self.stop_seen = true;
            }
            "metadata" => {
                let ev: ConverseMetadata = parse(payload)?;
                if let Some(u) = ev.usage {
                    self.usage = Usage::known(u.input_tokens, u.output_tokens, u.total_tokens);
                }
                self.metadata_seen = true;
            }
            // messageStart, contentBlockStart/Stop and events added later carry no text.
            _ => {}
        }
        self.complete = self.stop_seen && self.metadata_seen;
        Ok(())
    }

    fn on_invoke_event(&mut self, event_type: &str, payload: &[u8], out: &mut Vec<u8>) -> Result<(), StreamError> {
        if event_type != "chunk" {
            return Ok(());
        }
        let part: InvokePart<'_> = parse(payload)?;
        let Some(b64) = part.bytes else {
            return Err(StreamError::Malformed("InvokeModel chunk without bytes"));
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let result = match base64::engine::general_purpose::STANDARD.decode_vec(b64.as_bytes(), &mut scratch) {
            Ok(()) => self.on_invoke_json(&scratch, out),
            Err(_) => Err(StreamError::Malformed("InvokeModel chunk bytes are not base64")),
        };
        self.scratch = scratch;
        result
    }

    fn on_invoke_json(&mut self, json: &[u8], out: &mut Vec<u8>) -> Result<(), StreamError> {
        let c: InvokeChunk<'_> = parse(json)?;
        let mut end = false;
        match c.kind.as_deref() {
            // Anthropic messages events.
            Some(kind) => match kind {
                "content_block_start" => {
                    if let Some(b) = &c.content_block
                        && b.kind.as_deref() == Some("tool_use")
                    {
                        let (id, name) = (b.id.as_deref().unwrap_or(""), b.name.as_deref().unwrap_or(""));
                        self.tool_start(c.index.unwrap_or(0), id, name, out);
                    }
                }
                "content_block_delta" => {
                    if let Some(d) = &c.delta {
                        match d.kind.as_deref() {
                            Some("text_delta") => {
                                if let Some(text) = &d.text {
                                    self.text(text, out);
                                }
                            }
                            Some("input_json_delta") => {
                                let part = d.partial_json.as_deref().unwrap_or("");
                                if let Some(index) = self.tool_index(c.index.unwrap_or(0)) {
                                    self.reframer.tool_call(index, None, None, part, out);
                                }
                            }
                            _ => {}
                        }
                    }
                }
                "message_start" => {
                    if self.model.is_none() {
                        self.model = c.message.as_ref().and_then(|m| m.model.as_deref()).filter(|m| !m.is_empty()).map(bounded);
                    }
                    if let Some(u) = c.message.and_then(|m| m.usage) {
                        self.usage.input_tokens = u.input_tokens.or(self.usage.input_tokens);
                        self.usage.output_tokens = u.output_tokens.or(self.usage.output_tokens);
                    }
                }
                "message_delta" => {
                    if let Some(reason) = c.delta.as_ref().and_then(|d| d.stop_reason.as_deref()) {
                        self.finish(crate::bedrock::finish_reason(reason), out);
                    }
                    if let Some(u) = &c.usage {
                        self.usage.output_tokens = u.output_tokens.or(self.usage.output_tokens);
                        self.usage.input_tokens = u.input_tokens.or(self.usage.input_tokens);
                    }
                }
                "message_stop" => end = true,
                "error" => {
                    let (code, message) = c
                        .error
                        .map(|e| (e.kind.map(|k| bounded(&k)), e.message.map(|m| bounded(&m)).unwrap_or_default()))
                        .unwrap_or_default();
                    return Err(StreamError::UpstreamError { code, message });
                }
                _ => {}
            },
            None => {
                // Mistral (`outputs`), Mistral chat-style and DeepSeek (`choices`), Llama
                // (`generation`), Titan (`outputText`), Cohere (`text`), Claude 2 (`completion`).
                let known = c.outputs.is_some()
                    || c.choices.is_some()
                    || c.generation.is_some()
                    || c.output_text.is_some()
                    || c.text.is_some()
                    || c.completion.is_some()
                    || c.metrics.is_some();
                if !known {
                    // Never drop a model's text silently and call the answer complete.
                    return Err(StreamError::Malformed("InvokeModel chunk of an unknown model format"));
                }
                if let Some(o) = c.outputs.as_ref().and_then(|o| o.first()) {
                    if let Some(text) = &o.text {
                        self.text(text, out);
                    }
                    end |= o.stop_reason.is_some();
                }
                if let Some(ch) = c.choices.as_ref().and_then(|o| o.first()) {
                    let text = ch.message.as_ref().or(ch.delta.as_ref()).and_then(|m| m.content.as_deref());
                    if let Some(text) = text.or(ch.text.as_deref()) {
                        self.text(text, out);
                    }
                    end |= ch.stop_reason.is_some() || ch.finish_reason.is_some();
                }
                for text in [&c.generation, &c.output_text, &c.text, &c.completion].into_iter().flatten() {
                    self.text(text, out);
                }
                end |= c.stop_reason.is_some() || c.completion_reason.is_some() || c.is_finished == Some(true);
                if c.prompt_token_count.is_some() {
                    self.usage.input_tokens = c.prompt_token_count;
                }
                if c.generation_token_count.is_some() {
                    self.usage.output_tokens = c.generation_token_count;
                }
            }
        }
        if let Some(m) = c.metrics {
            self.usage.input_tokens = m.input_token_count.or(self.usage.input_tokens);
            self.usage.output_tokens = m.output_token_count.or(self.usage.output_tokens);
            end = true;
        }
        if end {
            self.usage.total_tokens = match (self.usage.input_tokens, self.usage.output_tokens) {
                (Some(i), Some(o)) => Some(i + o),
                _ => self.usage.total_tokens,
            };
            self.complete = true;
        }
        Ok(())
    }
}

fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, StreamError> {
    serde_json::from_slice(bytes).map_err(|_| StreamError::Malformed("stream event is not the platform's JSON"))
}

/// Reads an in-band error: `{"error": {"message", "code", "type"}}`, `{"error": "text"}`, or
/// vLLM's old flat `{"object": "error", "message", "code"}`.
fn error_from_json(data: &[u8]) -> Option<StreamError> {
    let v: serde_json::Value = serde_json::from_slice(data).ok()?;
    let body = match v.get("error") {
        Some(serde_json::Value::String(s)) => {
            return Some(StreamError::UpstreamError { code: None, message: bounded(s) });
        }
        Some(e @ serde_json::Value::Object(_)) => e,
        _ => &v,
    };
    let message = body.get("message").and_then(|m| m.as_str()).map(bounded).unwrap_or_default();
    let code = match body.get("code").or_else(|| body.get("type")) {
        Some(serde_json::Value::String(s)) => Some(bounded(s)),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    Some(StreamError::UpstreamError { code, message })
}

#[derive(Deserialize)]
struct OaiChunk<'a> {
    #[serde(default, borrow)]
    choices: Vec<OaiChoice<'a>>,
    #[serde(default)]
    usage: Option<crate::openai::UsageWire>,
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default, borrow)]
    object: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct OaiChoice<'a> {
    #[serde(default)]
    index: u32,
    #[serde(default, borrow)]
    delta: Option<OaiDelta<'a>>,
    #[serde(default, borrow)]
    message: Option<OaiDelta<'a>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    stop_reason: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct OaiDelta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Vec<OaiToolCallDelta<'a>>,
}

#[derive(Deserialize)]
struct OaiToolCallDelta<'a> {
    #[serde(default)]
    index: u32,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    function: Option<OaiFunctionDelta<'a>>,
}

#[derive(Deserialize)]
struct OaiFunctionDelta<'a> {
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    arguments: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct MessageBody<'a> {
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "Message")]
    message_upper: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseStart<'a> {
    #[serde(default)]
    content_block_index: u64,
    #[serde(default, borrow)]
    start: Option<ConverseStartBlock<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseStartBlock<'a> {
    #[serde(default, borrow)]
    tool_use: Option<ConverseToolStart<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseToolStart<'a> {
    #[serde(borrow)]
    tool_use_id: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseDelta<'a> {
    #[serde(default)]
    content_block_index: u64,
    #[serde(default, borrow)]
    delta: Option<ConverseText<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseText<'a> {
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_use: Option<ConverseToolInput<'a>>,
}

#[derive(Deserialize)]
struct ConverseToolInput<'a> {
    #[serde(default, borrow)]
    input: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ConverseStop<'a> {
    #[serde(default, borrow, rename = "stopReason")]
    stop_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ConverseMetadata {
    #[serde(default)]
    usage: Option<ConverseUsage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    total_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct InvokePart<'a> {
    #[serde(default, borrow)]
    bytes: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct InvokeChunk<'a> {
    #[serde(default, borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    index: Option<u64>,
    #[serde(default, borrow)]
    content_block: Option<AnthropicBlock<'a>>,
    #[serde(default, borrow)]
    delta: Option<AnthropicDelta<'a>>,
    #[serde(default)]
    message: Option<AnthropicMessage>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
    #[serde(default, borrow)]
    error: Option<AnthropicError<'a>>,
    #[serde(default, borrow)]
    outputs: Option<Vec<MistralOutput<'a>>>,
    #[serde(default, borrow)]
    choices: Option<Vec<OaiChoice<'a>>>,
    #[serde(default, borrow)]
    generation: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "outputText")]
    output_text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    completion: Option<Cow<'a, str>>,
    #[serde(default)]
    stop_reason: Option<IgnoredAny>,
    #[serde(default, rename = "completionReason")]
    completion_reason: Option<IgnoredAny>,
    #[serde(default)]
    is_finished: Option<bool>,
    #[serde(default)]
    prompt_token_count: Option<u64>,
    #[serde(default)]
    generation_token_count: Option<u64>,
    #[serde(default, rename = "amazon-bedrock-invocationMetrics")]
    metrics: Option<InvocationMetrics>,
}

#[derive(Deserialize)]
struct AnthropicDelta<'a> {
    #[serde(default, borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    stop_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct AnthropicBlock<'a> {
    #[serde(default, borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct AnthropicMessage {
    #[serde(default)]
    usage: Option<AnthropicUsage>,
    #[serde(default)]
    model: Option<String>,
}

#[derive(Deserialize)]
struct AnthropicUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct AnthropicError<'a> {
    #[serde(default, borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct MistralOutput<'a> {
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default)]
    stop_reason: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InvocationMetrics {
    #[serde(default)]
    input_token_count: Option<u64>,
    #[serde(default)]
    output_token_count: Option<u64>,
}
