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
pub mod reframer;
pub mod request;

pub use events::{AgentEvent, upstream_failure};
pub use legacy::LegacyChatRequest;
pub use parser::ReactStreamParser;
pub use reframer::ChatAgentReframer;
pub use prompt::{
    BuiltinTemplates, ChatParams, ChatTemplates, CivilDate, PromptMessage, PromptRole, RenderOptions, model_params,
    offered_tools, render, render_with, supports_prefill,
};
pub use request::ChatAgentRequest;

use crate::model::{Family, Platform};
use duo_core::errors::GitlabError;
use serde_json::Value;

/// Everything the adapter sends to the model for one `/v2/chat/agent` step.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatStep {
    pub request: ChatAgentRequest,
    /// System, conversation, and (when the platform continues assistant messages) a trailing
    /// assistant prefill ending in `Thought:`.
    pub messages: Vec<PromptMessage>,
    /// Defaults under the model entry's `params`; `stop` must reach the platform.
    pub params: ChatParams,
}

/// Parse the body and render the prompt for the routed model.
/// `today`: from the host clock (`CivilDate::from_unix_seconds`); `scopes`: the token's scopes
/// from duo_auth's hand-off (`None` when unknown).
pub fn prepare_step(
    body: &Value,
    family: Family,
    platform: Platform,
    today: CivilDate,
    scopes: Option<Vec<String>>,
) -> Result<ChatStep, GitlabError> {
    let request = ChatAgentRequest::parse(body)?;
    let opts = RenderOptions { today, scopes, prefill: supports_prefill(platform, family) };
    let messages = render(&request, family, &opts)?;
    Ok(ChatStep { request, messages, params: model_params(family) })
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use serde_json::json;

    #[test]
    fn prepare_step_picks_prefill_by_platform() {
        let body = json!({"messages": [{"role": "user", "content": "hi"}]});
        let today = CivilDate { year: 2026, month: 1, day: 2 };
        let bedrock = prepare_step(&body, Family::Claude3, Platform::Bedrock, today, None).unwrap();
        assert_eq!(bedrock.messages.last().map(|m| (m.role, m.content.as_str())), Some((PromptRole::Assistant, "Thought:")));
        assert_eq!(bedrock.params.max_tokens, 8192);
        let vllm = prepare_step(&body, Family::Mistral, Platform::Vllm, today, None).unwrap();
        assert_eq!(vllm.messages.last().map(|m| m.role), Some(PromptRole::User));
        assert_eq!(vllm.params.stop, vec!["Observation:".to_owned()]);
        let e = prepare_step(&json!({"messages": []}), Family::Gpt, Platform::AzureOpenai, today, None).unwrap_err();
        assert_eq!(e.status, 422);
    }
}
