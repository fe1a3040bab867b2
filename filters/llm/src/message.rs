//! One vocabulary for what a model receives: messages (tool calls included), parameters,
//! stop sequences, tools; and one [`Usage`] for what it reports.

use serde_json::{Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    System,
    User,
    Assistant,
    /// A tool's result, answering an assistant's [`ToolCall`] (`tool_call_id`).
    Tool,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// A call the model asked for: `arguments` is the JSON text the model wrote (OpenAI's shape,
/// kept as text so it reaches the caller byte for byte).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// A tool offered to the model: its JSON-Schema `parameters`.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: Option<String>,
    pub parameters: Value,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    /// The model must call some tool.
    Required,
    /// The model must not call a tool.
    None,
    /// The model must call this tool.
    Named(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub content: String,
    /// Assistant messages: the calls the model made.
    pub tool_calls: Vec<ToolCall>,
    /// Tool messages: the call this result answers.
    pub tool_call_id: Option<String>,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Message {
        Message { role, content: content.into(), tool_calls: Vec::new(), tool_call_id: None }
    }

    pub fn system(content: impl Into<String>) -> Message {
        Message::new(Role::System, content)
    }

    pub fn user(content: impl Into<String>) -> Message {
        Message::new(Role::User, content)
    }

    pub fn assistant(content: impl Into<String>) -> Message {
        Message::new(Role::Assistant, content)
    }
}

/// Token counts a platform reported (`None`: not reported, never guessed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub total_tokens: Option<u64>,
}

impl Usage {
    /// Input and output counts, the total computed when the platform gave none.
    pub fn known(input: Option<u64>, output: Option<u64>, total: Option<u64>) -> Usage {
        let total = total.or(match (input, output) {
            (Some(i), Some(o)) => Some(i.saturating_add(o)),
            _ => None,
        });
        Usage { input_tokens: input, output_tokens: output, total_tokens: total }
    }

    pub fn is_empty(&self) -> bool {
        self.input_tokens.is_none() && self.output_tokens.is_none()
    }
}

/// What a platform receives, platform-neutral.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LlmRequest {
    /// Chat messages (system first when present; an assistant message last is a prefill the
    /// model continues where the platform can).
    pub messages: Vec<Message>,
    /// One raw text prompt, for the wires that take text ([`crate::Wire::takes_raw_text`]).
    pub raw: Option<String>,
    /// Inference parameters in OpenAI's names (`max_tokens`, `temperature`, `top_p`, ...);
    /// each builder maps them to its platform.
    pub params: Map<String, Value>,
    pub stop: Vec<String>,
    pub stream: bool,
    pub tools: Vec<ToolSpec>,
    pub tool_choice: Option<ToolChoice>,
}

impl LlmRequest {
    /// A close upper guess of the serialized body's size, so the builders write it into one
    /// buffer (serde_json's `to_vec` starts at 128 bytes and copies the body at each doubling).
    pub(crate) fn body_size_hint(&self) -> usize {
        let text: usize = self.messages.iter().map(|m| m.content.len() + 32).sum::<usize>() + self.raw.as_ref().map_or(0, String::len);
        // Escapes (newlines, quotes) lengthen the text a little; the fields around it stay small.
        text + text / 8 + 512
    }
}
