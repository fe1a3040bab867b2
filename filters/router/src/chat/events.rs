//! GitLab's `/v2/chat/agent` answer: `application/x-ndjson`, one JSON object per line,
//! `{"type": <kind>, "data": {...}}` (the gateway's `AgentBaseEvent.dump_as_response`).
//! GitLab cuts events with `/(\{.*\})\n/`, so an event never holds a raw newline: JSON escapes
//! every newline inside strings and the objects are written compactly.

use serde::Serialize;

/// The response `content-type` of `/v2/chat/agent`.
pub const CONTENT_TYPE: &str = "application/x-ndjson; charset=utf-8";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentEvent {
    /// The model asks GitLab to run a tool; GitLab answers with the observation next step.
    Action { tool: String, tool_input: String, thought: String },
    /// A piece of the final answer, streamed as it comes.
    FinalAnswerDelta { text: String, finish: Finish },
    /// Model output that is neither; GitLab shows it as the answer.
    Unknown { text: String },
    /// A failure after the 200 went out; GitLab retries the step when `retryable`.
    Error { message: String, retryable: bool },
    /// 19.x only, after every other event of a complete answer: the step's tokens, keyed by
    /// the model's name (`{"usage": {"<model>": {"input_tokens", "output_tokens"}}}`).
    Usage { model: String, input_tokens: u64, output_tokens: u64 },
}

/// The `finish_reason` of a `final_answer_delta`. GitLab 18.x's gateway wrote `{"text"}`
/// only; 19.x Rails reads the field on every delta (`null` until the model's stop reason is
/// known) and warns when the last delta has none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finish {
    /// 18.x: no field.
    Omitted,
    /// 19.x: `null`, more may follow.
    Pending,
    /// 19.x: the model's stop reason (OpenAI's vocabulary: `stop`, `length`, ...).
    Reason(String),
}

#[derive(Serialize)]
struct Line<'a, D: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: D,
}

#[derive(Serialize)]
struct ActionData<'a> {
    tool: &'a str,
    tool_input: &'a str,
    thought: &'a str,
}

#[derive(Serialize)]
struct TextData<'a> {
    text: &'a str,
}

#[derive(Serialize)]
struct DeltaData<'a> {
    text: &'a str,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize)]
struct TokenCounts {
    input_tokens: u64,
    output_tokens: u64,
}

#[derive(Serialize)]
struct UsageData<'a> {
    usage: std::collections::BTreeMap<&'a str, TokenCounts>,
}

#[derive(Serialize)]
struct ErrorData<'a> {
    message: &'a str,
    retryable: bool,
}

impl AgentEvent {
    /// Append this event as one NDJSON line.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        // Serializing these plain structs into a Vec cannot fail; if it ever did, the line
        // would be dropped rather than half-written.
        let start = out.len();
        let ok = match self {
            AgentEvent::Action { tool, tool_input, thought } => serde_json::to_writer(
                &mut *out,
                &Line { kind: "action", data: ActionData { tool, tool_input, thought } },
            ),
            AgentEvent::FinalAnswerDelta { text, finish: Finish::Omitted } => {
                serde_json::to_writer(&mut *out, &Line { kind: "final_answer_delta", data: TextData { text } })
            }
            AgentEvent::FinalAnswerDelta { text, finish } => {
                let finish_reason = match finish {
                    Finish::Reason(r) => Some(r.as_str()),
                    Finish::Pending | Finish::Omitted => None,
                };
                serde_json::to_writer(&mut *out, &Line { kind: "final_answer_delta", data: DeltaData { text, finish_reason } })
            }
            AgentEvent::Unknown { text } => {
                serde_json::to_writer(&mut *out, &Line { kind: "unknown", data: TextData { text } })
            }
            AgentEvent::Error { message, retryable } => serde_json::to_writer(
                &mut *out,
                &Line { kind: "error", data: ErrorData { message, retryable: *retryable } },
            ),
            AgentEvent::Usage { model, input_tokens, output_tokens } => {
                let counts = TokenCounts { input_tokens: *input_tokens, output_tokens: *output_tokens };
                let usage = std::iter::once((model.as_str(), counts)).collect();
                serde_json::to_writer(&mut *out, &Line { kind: "usage", data: UsageData { usage } })
            }
        }
        .is_ok();
        if ok {
            out.push(b'\n');
        } else {
            out.truncate(start);
        }
    }

    /// This event as one NDJSON line (with its `\n`).
    pub fn to_line(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

/// The `error` event for an upstream failure, with a message GitLab understands: it shows
/// "too many prompts, run /clear" (A1005) when the message contains `prompt is too long`, and
/// retries the step when `retryable`. The message never carries upstream body text (which
/// could echo the prompt), only a fixed sentence and the status.
///
/// `status`: the model platform's HTTP status, `None` when the stream broke or timed out.
/// `body`: the platform's error body, only inspected for a context-window overflow.
pub fn upstream_failure(status: Option<u32>, body: &[u8]) -> AgentEvent {
    let (message, retryable) = match status {
        _ if is_context_overflow(body) => (
            "prompt is too long: the conversation does not fit the model's context window".to_owned(),
            false,
        ),
        Some(429) => ("overloaded_error: the model server is rate limiting (429)".to_owned(), true),
        Some(s @ (503 | 529)) => (format!("overloaded_error: the model server is overloaded ({s})"), true),
        Some(s) => (format!("The model server returned HTTP {s}"), s >= 500),
        None => ("The model server's answer stopped before it was complete".to_owned(), true),
    };
    AgentEvent::Error { message, retryable }
}

pub(crate) fn is_context_overflow(body: &[u8]) -> bool {
    if body.is_empty() {
        return false;
    }
    let lower = String::from_utf8_lossy(&body[..body.len().min(64 * 1024)]).to_ascii_lowercase();
    [
        "maximum context length",     // vLLM / OpenAI / Azure
        "context_length_exceeded",    // OpenAI / Azure code
        "prompt is too long",         // Anthropic (also on Bedrock)
        "input is too long",          // Bedrock
        "too many input tokens",      // Bedrock
        "exceeds the context window", // assorted
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use serde_json::Value;

    fn line(e: &AgentEvent) -> String {
        String::from_utf8(e.to_line()).unwrap()
    }

    #[test]
    fn shapes_are_exactly_gitlabs() {
        let a = AgentEvent::Action { tool: "issue_reader".into(), tool_input: "#12".into(), thought: "I need it.".into() };
        assert_eq!(
            line(&a),
            "{\"type\":\"action\",\"data\":{\"tool\":\"issue_reader\",\"tool_input\":\"#12\",\"thought\":\"I need it.\"}}\n"
        );
        assert_eq!(
            line(&AgentEvent::FinalAnswerDelta { text: "The issue ".into(), finish: Finish::Omitted }),
            "{\"type\":\"final_answer_delta\",\"data\":{\"text\":\"The issue \"}}\n"
        );
        // 19.x: the field on every delta, null until the stop reason
        assert_eq!(
            line(&AgentEvent::FinalAnswerDelta { text: "The issue ".into(), finish: Finish::Pending }),
            "{\"type\":\"final_answer_delta\",\"data\":{\"text\":\"The issue \",\"finish_reason\":null}}\n"
        );
        assert_eq!(
            line(&AgentEvent::FinalAnswerDelta { text: String::new(), finish: Finish::Reason("stop".into()) }),
            "{\"type\":\"final_answer_delta\",\"data\":{\"text\":\"\",\"finish_reason\":\"stop\"}}\n"
        );
        assert_eq!(
            line(&AgentEvent::Usage { model: "Mistral-7B".into(), input_tokens: 120, output_tokens: 7 }),
            "{\"type\":\"usage\",\"data\":{\"usage\":{\"Mistral-7B\":{\"input_tokens\":120,\"output_tokens\":7}}}}\n"
        );
        assert_eq!(line(&AgentEvent::Unknown { text: "??".into() }), "{\"type\":\"unknown\",\"data\":{\"text\":\"??\"}}\n");
        assert_eq!(
            line(&AgentEvent::Error { message: "overloaded_error".into(), retryable: true }),
            "{\"type\":\"error\",\"data\":{\"message\":\"overloaded_error\",\"retryable\":true}}\n"
        );
    }

    #[test]
    fn newlines_and_quotes_stay_inside_one_line() {
        let text = "line 1\nline \"2\"\r\n\u{2028}end";
        let l = line(&AgentEvent::FinalAnswerDelta { text: text.into(), finish: Finish::Omitted });
        assert_eq!(l.matches('\n').count(), 1);
        assert!(l.ends_with('\n'));
        let v: Value = serde_json::from_str(l.trim_end()).unwrap();
        assert_eq!(v["data"]["text"], text);
    }

    #[test]
    fn upstream_failures_map_to_gitlab_messages() {
        let e = upstream_failure(Some(400), br#"{"error":{"message":"This model's maximum context length is 8192 tokens"}}"#);
        match &e {
            AgentEvent::Error { message, retryable } => {
                assert!(message.contains("prompt is too long"));
                assert!(!retryable);
                assert!(!message.contains("8192"), "no upstream text is echoed");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            upstream_failure(Some(429), b""),
            AgentEvent::Error { message: "overloaded_error: the model server is rate limiting (429)".into(), retryable: true }
        );
        assert!(matches!(upstream_failure(Some(503), b"x"), AgentEvent::Error { retryable: true, .. }));
        assert_eq!(
            upstream_failure(Some(401), b"{\"error\":\"bad key sk-123\"}"),
            AgentEvent::Error { message: "The model server returned HTTP 401".into(), retryable: false }
        );
        assert!(matches!(upstream_failure(Some(500), b""), AgentEvent::Error { retryable: true, .. }));
        assert!(matches!(upstream_failure(None, b""), AgentEvent::Error { retryable: true, .. }));
    }
}
