use crate::{ToolCall, Usage, Wire};

/// What a complete (non-streaming) 2xx answer says.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Completion {
    pub text: String,
    /// Calls the model asked for (OpenAI's shape: `arguments` as JSON text).
    pub tool_calls: Vec<ToolCall>,
    /// OpenAI's vocabulary: `stop`, `length`, `content_filter`, `tool_calls`.
    pub finish_reason: Option<String>,
    pub usage: Usage,
}

/// Reads a complete 2xx answer of `wire`; `Err` names what is wrong (never quotes content).
pub fn parse_completion(wire: Wire, headers: &[(String, String)], body: &[u8]) -> Result<Completion, String> {
    if wire.is_openai() { crate::openai::parse(wire, body) } else { crate::bedrock::parse(wire, headers, body) }
}
