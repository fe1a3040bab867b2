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

pub(crate) mod events;
pub(crate) mod legacy;
pub(crate) mod parser;
pub(crate) mod prompt;
pub(crate) mod reframer;
pub(crate) mod request;
mod validation;

pub use events::{AgentEvent, upstream_failure};
pub use legacy::LegacyChatRequest;
pub use parser::ReactStreamParser;
pub use reframer::{ChatAgentReframer, ChatEvents};
pub use crate::prompts::CivilDate;
pub use prompt::{ChatOptions, ChatParams, PROMPT_ID, model_params, offered_tools, render, supports_prefill};
pub use request::ChatAgentRequest;

use crate::model::{Family, Platform};
use crate::prompts::{Message, PromptSet, Rendered};
use duo_core::errors::GitlabError;
use serde_json::Value;

/// Everything the adapter sends to the model for one `/v2/chat/agent` step.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatStep {
    pub request: ChatAgentRequest,
    /// System, conversation, and (when the platform continues assistant messages) a trailing
    /// assistant prefill ending in `Thought:`.
    pub messages: Vec<Message>,
    /// Defaults under the model entry's `params`; `stop` must reach the platform.
    pub params: ChatParams,
    /// The admin's `prompts."chat/react".params`, over [`Self::params`].
    pub overrides: serde_json::Map<String, Value>,
}

impl ChatStep {
    /// The step as the codecs take it: messages (assistant prefill last when present),
    /// `temperature`/`max_tokens` defaults (the admin's prompt params over them), stop sequences.
    pub fn rendered(self) -> Rendered {
        let mut params = serde_json::Map::new();
        params.insert("temperature".into(), Value::from(self.params.temperature));
        params.insert("max_tokens".into(), Value::from(self.params.max_tokens));
        params.extend(self.overrides);
        Rendered { messages: self.messages, fim: None, params, stop: self.params.stop }
    }
}

/// The whole NDJSON answer for a model answer that arrived in one piece (non-streaming
/// upstream): same events as the streaming path, `finish_reason` and `usage` included.
pub fn answer_body(events: &ChatEvents, c: &duo_llm::Completion, text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut parser = events.parser();
    parser.push(text, &mut out);
    if let Some(reason) = &c.finish_reason {
        parser.set_finish_reason(reason);
    }
    parser.finish(&mut out);
    events.write_usage(&c.usage, &mut out);
    out
}

/// The NDJSON answer (HTTP 200, like GitLab's gateway, which has already started its stream
/// when the model call fails) for a model platform that answered `status` with `body`, or
/// (`None`) could not be reached.
pub fn error_body(status: Option<u32>, body: &[u8]) -> Vec<u8> {
    upstream_failure(status, body).to_line()
}

/// Parse the body and render the prompt for the routed model.
/// `today`: from the host clock (`CivilDate::from_unix_seconds`); `scopes`: the token's scopes
/// from duo_auth's hand-off (`None` when unknown).
pub fn prepare_step(
    prompts: &PromptSet,
    body: &Value,
    family: Family,
    platform: Platform,
    today: CivilDate,
    scopes: Option<Vec<String>>,
) -> Result<ChatStep, GitlabError> {
    let request = ChatAgentRequest::parse(body)?;
    let opts = ChatOptions { today, scopes, prefill: supports_prefill(platform, family) };
    let messages = render(prompts, &request, family, &opts)?;
    Ok(ChatStep { request, messages, params: model_params(family), overrides: prompts.default_params(PROMPT_ID) })
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::prompts::Role;
    use serde_json::json;

    #[test]
    fn prepare_step_picks_prefill_by_platform() {
        let body = json!({"messages": [{"role": "user", "content": "hi"}]});
        let today = CivilDate { year: 2026, month: 1, day: 2 };
        let set = PromptSet::builtin().unwrap();
        let bedrock = prepare_step(&set, &body, Family::Claude3, Platform::Bedrock, today, None).unwrap();
        assert_eq!(bedrock.messages.last().map(|m| (m.role, m.content.as_str())), Some((Role::Assistant, "Thought:")));
        assert_eq!(bedrock.params.max_tokens, 8192);
        let vllm = prepare_step(&set, &body, Family::Mistral, Platform::Vllm, today, None).unwrap();
        assert_eq!(vllm.messages.last().map(|m| m.role), Some(Role::User));
        assert_eq!(vllm.params.stop, vec!["Observation:".to_owned()]);
        let e = prepare_step(&set, &json!({"messages": []}), Family::Gpt, Platform::AzureOpenai, today, None).unwrap_err();
        assert_eq!(e.status, 422);
    }

    #[test]
    fn step_in_the_codecs_vocabulary() {
        let body = json!({"messages": [{"role": "user", "content": "hi"}]});
        let step = prepare_step(&PromptSet::builtin().unwrap(), &body, Family::Claude3, Platform::Bedrock, CivilDate { year: 2026, month: 1, day: 2 }, None).unwrap();
        let r = step.rendered();
        assert_eq!(r.messages.len(), 3);
        assert_eq!(r.messages[0].role, Role::System);
        assert_eq!(r.messages[1], Message::user("hi"));
        assert_eq!(r.messages[2].role, Role::Assistant);
        assert_eq!(r.stop, vec!["Observation:".to_owned()]);
        assert_eq!(r.params.get("max_tokens"), Some(&json!(8192)));
        assert_eq!(r.params.get("temperature"), Some(&json!(0.1)));
        assert_eq!(r.fim, None);
    }

    #[test]
    fn whole_answers_and_errors_as_ndjson() {
        let c = |reason: Option<&str>| duo_llm::Completion {
            text: String::new(),
            tool_calls: Vec::new(),
            finish_reason: reason.map(str::to_owned),
            usage: duo_llm::Usage::known(Some(30), Some(4), Some(34)),
            model: None,
        };
        let v18 = ChatEvents::default();
        let body = String::from_utf8(answer_body(&v18, &c(Some("stop")), "Thought: x\nFinal Answer: Hello\nthere")).unwrap();
        assert_eq!(body, "{\"type\":\"final_answer_delta\",\"data\":{\"text\":\"Hello\\nthere\"}}\n");
        let v19 = ChatEvents { finish_reason: true, usage_model: Some("m".into()), tools: None };
        let body = String::from_utf8(answer_body(&v19, &c(Some("length")), "Thought: x\nFinal Answer: Hello")).unwrap();
        assert_eq!(
            body,
            "{\"type\":\"final_answer_delta\",\"data\":{\"text\":\"Hello\",\"finish_reason\":null}}\n\
             {\"type\":\"final_answer_delta\",\"data\":{\"text\":\"\",\"finish_reason\":\"length\"}}\n\
             {\"type\":\"usage\",\"data\":{\"usage\":{\"m\":{\"input_tokens\":30,\"output_tokens\":4}}}}\n"
        );
        let body = String::from_utf8(answer_body(&v18, &c(None), "Thought: x\nAction: build_reader\nAction Input: job 9")).unwrap();
        assert!(body.starts_with("{\"type\":\"action\""), "{body}");
        let e = String::from_utf8(error_body(Some(503), b"")).unwrap();
        assert_eq!(e, "{\"type\":\"error\",\"data\":{\"message\":\"overloaded_error: the model server is overloaded (503)\",\"retryable\":true}}\n");
    }
}
