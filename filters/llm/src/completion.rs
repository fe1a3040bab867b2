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
    /// The model id the platform says answered (OpenAI-style and Anthropic `model`), when the
    /// answer names one; at most 300 bytes.
    pub model: Option<String>,
}

/// Reads a complete 2xx answer of `wire`; `Err` names what is wrong (never quotes content).
pub fn parse_completion(wire: Wire, headers: &[(String, String)], body: &[u8]) -> Result<Completion, String> {
    if wire.is_openai() { crate::openai::parse(wire, body) } else { crate::bedrock::parse(wire, headers, body) }
}

/// Longest model id kept from an answer (ids are short; a hostile answer must not fill the log).
const MAX_MODEL_ID: usize = 300;

/// The answer's top-level `model`, when it is a non-empty string, cut at [`MAX_MODEL_ID`] bytes
/// on a character boundary.
pub(crate) fn reported_model(answer: &serde_json::Value) -> Option<String> {
    clipped_model(answer.get("model")?.as_str()?)
}

/// A reported model id, `None` when empty, cut at [`MAX_MODEL_ID`] bytes on a character boundary.
pub(crate) fn clipped_model(m: &str) -> Option<String> {
    if m.is_empty() {
        return None;
    }
    let mut end = m.len().min(MAX_MODEL_ID);
    while !m.is_char_boundary(end) {
        end -= 1;
    }
    Some(m[..end].to_owned())
}
