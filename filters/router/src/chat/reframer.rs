//! The `/v2/chat/agent` framing for the stream translator: the model's text deltas go through
//! the [`ReactStreamParser`] and come out as GitLab's NDJSON events; a broken upstream stream
//! becomes one `error` event (so the downstream stream can end cleanly: GitLab reads the error).
//!
//! For GitLab 19.x ([`ChatEvents::for_gitlab`]) the deltas carry `finish_reason` and a complete
//! answer ends with a `usage` event.
//!
//! ```ignore
//! let t = StreamTranslator::new(platform, api, Box::new(ChatAgentReframer::new(ChatEvents::for_gitlab(v, model))));
//! ```

use super::events::{AgentEvent, CONTENT_TYPE, is_context_overflow};
use super::parser::ReactStreamParser;
use duo_core::version::GitlabVersion;
use duo_llm::stream::{Reframer, StreamError};
use duo_llm::Usage;

/// Which events the calling GitLab understands besides 18.4's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChatEvents {
    /// `finish_reason` on every `final_answer_delta`, a closing delta with the stop reason.
    pub finish_reason: bool,
    /// A last `usage` event keyed by this model name (when the platform reported tokens).
    pub usage_model: Option<String>,
    /// The tools GitLab may run for this caller (`None`: not checked); an `action` naming
    /// another is GitLab's `tool not available` error event.
    pub tools: Option<Vec<&'static str>>,
}

impl ChatEvents {
    /// 19.0 and later read `finish_reason` and `usage`; 18.x knows neither (an unknown event
    /// type would reach the user as text).
    pub fn for_gitlab(version: GitlabVersion, model: &str) -> ChatEvents {
        if version.is_19_or_later() {
            ChatEvents { finish_reason: true, usage_model: Some(model.to_owned()), tools: None }
        } else {
            ChatEvents::default()
        }
    }

    pub fn with_tools(mut self, tools: Option<Vec<&'static str>>) -> Self {
        self.tools = tools;
        self
    }

    pub fn parser(&self) -> ReactStreamParser {
        let p = if self.finish_reason { ReactStreamParser::with_finish_reason() } else { ReactStreamParser::new() };
        match &self.tools {
            Some(tools) => p.with_tools(tools.clone()),
            None => p,
        }
    }

    /// The closing `usage` event, after every other event of a complete answer. Like GitLab's
    /// gateway, none when the platform reported no tokens.
    pub fn write_usage(&self, usage: &Usage, out: &mut Vec<u8>) {
        let Some(model) = &self.usage_model else { return };
        if usage.input_tokens.is_none() && usage.output_tokens.is_none() {
            return;
        }
        AgentEvent::Usage {
            model: model.clone(),
            input_tokens: usage.input_tokens.unwrap_or(0),
            output_tokens: usage.output_tokens.unwrap_or(0),
        }
        .write_to(out);
    }
}

#[derive(Debug)]
pub struct ChatAgentReframer {
    parser: ReactStreamParser,
    events: ChatEvents,
}

impl ChatAgentReframer {
    pub fn new(events: ChatEvents) -> Self {
        ChatAgentReframer { parser: events.parser(), events }
    }
}

impl Reframer for ChatAgentReframer {
    fn content_type(&self) -> &'static str {
        CONTENT_TYPE
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        self.parser.push(text, out);
    }

    fn finish_reason(&mut self, reason: &str, _out: &mut Vec<u8>) {
        self.parser.set_finish_reason(reason);
    }

    fn complete(&mut self, usage: &Usage, out: &mut Vec<u8>) {
        self.parser.finish(out);
        self.events.write_usage(usage, out);
    }

    fn broken(&mut self, reason: &StreamError, out: &mut Vec<u8>) -> bool {
        self.parser.fail(stream_failure(reason), out);
        true
    }
}

/// The `error` event for a stream that broke after the 200. The upstream's own message is
/// never repeated (it may quote the prompt); only its kind decides the wording.
pub fn stream_failure(reason: &StreamError) -> AgentEvent {
    let overloaded = |what: &str| AgentEvent::Error {
        message: format!("overloaded_error: the model platform is busy ({what})"),
        retryable: true,
    };
    let overflow = match reason {
        StreamError::UpstreamException { message, .. } => is_context_overflow(message.as_bytes()),
        StreamError::UpstreamError { code, message } => {
            is_context_overflow(message.as_bytes()) || code.as_deref().is_some_and(|c| c.contains("context_length"))
        }
        _ => false,
    };
    if overflow {
        return AgentEvent::Error {
            message: "prompt is too long: the conversation does not fit the model's context window".into(),
            retryable: false,
        };
    }
    match reason {
        StreamError::UpstreamException { kind, .. } => {
            let k = kind.to_ascii_lowercase();
            if k.contains("throttling") || k.contains("serviceunavailable") || k.contains("modelnotready") {
                overloaded(kind)
            } else if k.contains("modelstreamerror") || k.contains("internalserver") {
                AgentEvent::Error { message: format!("The model platform failed while answering ({kind})"), retryable: true }
            } else {
                AgentEvent::Error { message: format!("The model platform failed while answering ({kind})"), retryable: false }
            }
        }
        StreamError::UpstreamError { code, .. } => {
            let code_text = code.as_deref().unwrap_or("error");
            let c = code_text.to_ascii_lowercase();
            if c.contains("rate_limit") || c.contains("overloaded") || c == "429" || c == "503" || c == "529" {
                overloaded(code_text)
            } else {
                AgentEvent::Error {
                    message: format!("The model server reported an error in its stream ({code_text})"),
                    retryable: c.contains("server_error") || c.starts_with('5'),
                }
            }
        }
        StreamError::ContentFiltered => AgentEvent::Error {
            message: "The model platform's content filter stopped the answer".into(),
            retryable: false,
        },
        StreamError::Truncated => AgentEvent::Error {
            message: "The model server's answer stopped before it was complete".into(),
            retryable: true,
        },
        StreamError::BadPreludeCrc | StreamError::BadMessageCrc | StreamError::Malformed(_) | StreamError::TooLarge => {
            AgentEvent::Error {
                message: format!("The model server's stream could not be read ({})", reason.log_reason()),
                retryable: false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::chat::parser::tests::{lines, summarize};
    use crate::model::{Api, Platform};
    use duo_llm::stream::{Ended, StreamTranslator};
    use serde_json::json;

    fn sse_chunk(text: &str) -> String {
        format!("data: {}\n\n", json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]}))
    }

    fn vllm_stream(deltas: &[&str], done: bool) -> Vec<u8> {
        let mut s = String::from("data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n");
        for d in deltas {
            s.push_str(&sse_chunk(d));
        }
        if done {
            s.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
            s.push_str("data: [DONE]\n\n");
        }
        s.into_bytes()
    }

    fn translate(bytes: &[u8], split: usize) -> (Vec<u8>, Ended) {
        translate_for(ChatEvents::default(), bytes, split)
    }

    fn translate_for(events: ChatEvents, bytes: &[u8], split: usize) -> (Vec<u8>, Ended) {
        let mut t = StreamTranslator::new(Platform::Vllm, Api::Chat, Box::new(ChatAgentReframer::new(events)));
        assert_eq!(t.content_type(), "application/x-ndjson; charset=utf-8");
        let mut out = Vec::new();
        for chunk in bytes.chunks(split.max(1)) {
            let _ = t.push(chunk, &mut out);
        }
        let ended = t.finish(&mut out);
        (out, ended)
    }

    #[test]
    fn vllm_final_answer_streams_as_deltas() {
        let bytes = vllm_stream(&["Thought: I know.\nFinal", " Answer: The issue", " describes a", " login bug."], true);
        for split in [1, 7, 64, bytes.len()] {
            let (out, ended) = translate(&bytes, split);
            assert_eq!(ended, Ended::Complete);
            let events = lines(&out);
            assert!(events.len() >= 3, "several deltas at split {split}: {events:?}");
            assert_eq!(summarize(&events), ("The issue describes a login bug.".to_owned(), vec![]));
        }
    }

    #[test]
    fn for_19_the_stop_reason_and_usage_close_the_answer() {
        let v19 = ChatEvents::for_gitlab(GitlabVersion::from_header(Some("19.0.1")), "Mistral-7B");
        assert_eq!(v19, ChatEvents { finish_reason: true, usage_model: Some("Mistral-7B".into()), tools: None });
        assert_eq!(ChatEvents::for_gitlab(GitlabVersion::from_header(Some("18.11.0")), "m"), ChatEvents::default());
        assert_eq!(ChatEvents::for_gitlab(GitlabVersion::from_header(None), "m"), ChatEvents::default());
        let mut bytes = vllm_stream(&["Thought: I know.\nFinal Answer: Hi", " there"], false);
        bytes.extend_from_slice(b"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n");
        bytes.extend_from_slice(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":120,\"completion_tokens\":7,\"total_tokens\":127}}\n\n");
        bytes.extend_from_slice(b"data: [DONE]\n\n");
        for split in [1, 13, bytes.len()] {
            let (out, ended) = translate_for(v19.clone(), &bytes, split);
            assert_eq!(ended, Ended::Complete);
            let events = lines(&out);
            let n = events.len();
            assert!(events[..n - 2].iter().all(|e| e["type"] == "final_answer_delta" && e["data"]["finish_reason"].is_null()), "{events:?}");
            assert_eq!(events[n - 2], json!({"type": "final_answer_delta", "data": {"text": "", "finish_reason": "length"}}));
            assert_eq!(events[n - 1], json!({"type": "usage", "data": {"usage": {"Mistral-7B": {"input_tokens": 120, "output_tokens": 7}}}}));
            assert_eq!(summarize(&events[..n - 1]).0, "Hi there");
        }
        // 18.x: the same stream, 18.4's events only
        let (out, _) = translate(&bytes, 5);
        let events = lines(&out);
        assert!(events.iter().all(|e| e["type"] == "final_answer_delta" && e["data"].get("finish_reason").is_none()), "{events:?}");
        // a broken stream: its error is last, no usage
        let cut = vllm_stream(&["Final Answer: Hi"], false);
        let (out, _) = translate_for(v19, &cut, 4);
        assert_eq!(lines(&out).last().unwrap()["type"], "error");
    }

    #[test]
    fn vllm_action_comes_at_the_end() {
        let bytes = vllm_stream(&["Thought: Need it.\nAction: issue", "_reader\nAction Input: #12\n"], true);
        let (out, _) = translate(&bytes, 5);
        assert_eq!(
            lines(&out),
            vec![json!({"type": "action", "data": {"tool": "issue_reader", "tool_input": "#12", "thought": "Need it."}})]
        );
    }

    #[test]
    fn truncated_stream_mid_answer_ends_with_a_retryable_error() {
        let bytes = vllm_stream(&["Final Answer: first part", " second part"], false);
        let (out, ended) = translate(&bytes, 9);
        assert!(matches!(ended, Ended::Broken(StreamError::Truncated)));
        let events = lines(&out);
        let (answer, others) = summarize(&events);
        assert_eq!(answer, "first part second part");
        assert_eq!(
            others,
            vec![json!({"type": "error", "data": {"message": "The model server's answer stopped before it was complete", "retryable": true}})]
        );
        assert_eq!(events.last().unwrap()["type"], "error", "the error is last");
    }

    #[test]
    fn in_band_error_becomes_an_error_event() {
        let mut bytes = vllm_stream(&["Final Answer: part"], false);
        bytes.extend_from_slice(b"data: {\"error\":{\"message\":\"This model's maximum context length is 4096 tokens\",\"type\":\"BadRequestError\",\"code\":400}}\n\n");
        let (out, ended) = translate(&bytes, 3);
        assert!(matches!(ended, Ended::Broken(_)));
        let events = lines(&out);
        assert_eq!(events.last().unwrap()["type"], "error");
        let msg = events.last().unwrap()["data"]["message"].as_str().unwrap().to_owned();
        assert!(msg.starts_with("prompt is too long"), "{msg}");
        assert!(!msg.contains("4096"), "no upstream text: {msg}");
    }

    #[test]
    fn stream_failures_are_classified() {
        let retry = |e: StreamError| match stream_failure(&e) {
            AgentEvent::Error { retryable, .. } => retryable,
            other => panic!("{other:?}"),
        };
        assert!(retry(StreamError::UpstreamException { kind: "throttlingException".into(), message: "slow down".into() }));
        assert!(!retry(StreamError::UpstreamException { kind: "validationException".into(), message: "bad".into() }));
        assert!(retry(StreamError::UpstreamError { code: Some("rate_limit_exceeded".into()), message: String::new() }));
        assert!(!retry(StreamError::ContentFiltered));
        assert!(retry(StreamError::Truncated));
        assert!(!retry(StreamError::BadMessageCrc));
        match stream_failure(&StreamError::UpstreamException { kind: "validationException".into(), message: "Input is too long for requested model.".into() }) {
            AgentEvent::Error { message, retryable } => {
                assert!(message.starts_with("prompt is too long"));
                assert!(!retryable);
            }
            other => panic!("{other:?}"),
        }
    }
}
