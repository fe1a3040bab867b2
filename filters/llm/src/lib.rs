//! duo-llm: the model platforms' wire, knowing nothing of GitLab.
//!
//! ```text
//! LlmRequest ──► openai::build / bedrock::build ──► (path, body) for the platform
//! platform answer ──► parse_completion ──► Completion (text, tool calls, finish reason, usage)
//! platform stream ──► stream::StreamTranslator (SSE / event-stream decoders, one dialect per
//!                     API) ──► a caller's Reframer (the caller's own framing of text and usage)
//! ```
//!
//! GitLab's vocabulary (features, prompts, answer shapes) lives in duo_router; the model ingress
//! (OpenAI-compatible clients) uses this crate directly. Pure code, no proxy-wasm.

pub mod bedrock;
mod completion;
mod error;
mod message;
pub mod openai;
pub mod serve;
mod platform;
pub mod stream;
pub mod textchat;

#[cfg(any(test, feature = "testing"))]
pub mod sample;

pub use completion::{Completion, parse_completion};
pub use error::LlmError;
pub use message::{LlmRequest, Message, Role, ToolCall, ToolChoice, ToolSpec, Usage};
pub use platform::{Api, ModelTarget, Platform, Wire};

#[cfg(test)]
mod tests;
