use std::fmt;

/// What can go wrong building a platform request. Callers map it to their own answer shape
/// (GitLab's `{"detail"}`, OpenAI's `{"error"}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LlmError {
    /// The request cannot be expressed on this wire (e.g. a model family InvokeModel has no
    /// body format for, tool calls on a raw-text API).
    Unsupported(String),
    /// The request itself is wrong (e.g. tool-call arguments that are not JSON).
    Invalid(String),
    /// Encoding the body failed.
    Encode(String),
}

impl fmt::Display for LlmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LlmError::Unsupported(m) | LlmError::Invalid(m) => f.write_str(m),
            LlmError::Encode(m) => write!(f, "cannot encode the upstream request: {m}"),
        }
    }
}

impl std::error::Error for LlmError {}
