//! Duo Chat (`duo_chat`): pure logic for `POST /v2/chat/agent` (the ReAct agent) and the
//! legacy `POST /v1/chat/agent`. No proxy-wasm here; the adapter (`filter.rs`) calls:
//!
//! 1. [`ChatAgentRequest::parse`] on the body (422/400 as GitLab's gateway answers);
//! 2. [`render`] to get the chat messages for the chosen model's family, with
//!    [`model_params`] (stop at `Observation:`) and [`supports_prefill`] for the platform;
//! 3. [`ReactStreamParser`] on the model's text deltas, writing NDJSON events
//!    ([`events::CONTENT_TYPE`]); [`upstream_failure`] for errors after the 200.
//!
//! `include_<category>_context` scopes: [`duo_core::chat_scopes::required_context_scopes`].

pub mod events;
pub mod legacy;
pub mod parser;
pub mod prompt;
pub mod request;

pub use events::{AgentEvent, upstream_failure};
pub use legacy::LegacyChatRequest;
pub use parser::ReactStreamParser;
pub use prompt::{
    CivilDate, PromptMessage, PromptRole, RenderOptions, model_params, offered_tools, render, supports_prefill,
};
pub use request::ChatAgentRequest;
