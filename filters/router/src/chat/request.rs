//! The body of `POST /v2/chat/agent` (GitLab's `Gitlab::Duo::Chat::ReactExecutor#step_params`,
//! the AI gateway's `AgentRequest`), parsed and validated into typed values.
//!
//! Shape errors answer 422 in FastAPI's list shape (`{"detail": [{"loc", "msg", "type"}]}`); an `agent_scratchpad` on a message
//! that is not the assistant's answers 400, as GitLab's gateway does. Unknown fields are ignored
//! (Rails sends e.g. `resource_content` in history messages); `model_metadata` belongs to the
//! routing decision and is not read here.

use duo_core::chat_scopes::is_context_category;
use super::validation::invalid;
use duo_core::errors::GitlabError;
use serde_json::{Map, Value};

/// Bounds on what one request may carry. GitLab itself sends at most 50 history messages plus
/// the question and the in-progress scratchpad, and at most 10 ReAct steps per question; the
/// text limit is the legacy chat endpoint's (400 000 characters per prompt string).
pub mod limits {
    pub const MAX_MESSAGES: usize = 100;
    pub const MAX_TEXT_CHARS: usize = 400_000;
    pub const MAX_ADDITIONAL_CONTEXT: usize = 100;
    pub const MAX_SCRATCHPAD_STEPS: usize = 50;
    pub const MAX_UNAVAILABLE_RESOURCES: usize = 50;
    pub const MAX_SHORT_CHARS: usize = 4_096;
    /// Sum of every text field of the request.
    pub const MAX_TOTAL_CHARS: usize = 4_000_000;
}

/// What the AI gateway assumes when `unavailable_resources` is absent.
pub const DEFAULT_UNAVAILABLE_RESOURCES: &str = "Merge Requests, Pipelines, Vulnerabilities";

/// GitLab's chat history has user and assistant messages only.
pub use duo_llm::Role;

/// The page the user was on (`messages[].context`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageContext {
    /// GitLab before 17.9: the page content itself (`{type, content}`).
    Legacy { kind: String, content: String },
    /// A CI build page (`{type: "build"}`).
    Build,
    /// `{type: issue|epic|merge_request|commit|work_item, title}`.
    Titled { kind: String, title: String },
}

impl PageContext {
    pub fn kind(&self) -> &str {
        match self {
            PageContext::Legacy { kind, .. } | PageContext::Titled { kind, .. } => kind,
            PageContext::Build => "build",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenFile {
    pub file_path: String,
    pub data: String,
    pub selected_code: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AdditionalContext {
    pub category: String,
    pub id: Option<String>,
    pub content: Option<String>,
    pub metadata: Option<Map<String, Value>>,
}

/// One earlier ReAct step: what the model asked for and what GitLab's tool answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentStep {
    pub thought: String,
    pub tool: String,
    pub tool_input: String,
    pub observation: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ChatMessage {
    pub role: Role,
    /// `None` on the assistant message that carries the in-progress scratchpad.
    pub content: Option<String>,
    pub context: Option<PageContext>,
    pub current_file: Option<OpenFile>,
    pub additional_context: Vec<AdditionalContext>,
    pub agent_scratchpad: Option<Vec<AgentStep>>,
}

/// A validated `/v2/chat/agent` request.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatAgentRequest {
    pub messages: Vec<ChatMessage>,
    /// The steps of this question so far: `options.agent_scratchpad.steps` when `options` is
    /// present, else the scratchpad of a trailing assistant message with no content.
    pub scratchpad: Vec<AgentStep>,
    /// As sent; `None` when the field was absent (the gateway default applies) or null.
    pub unavailable_resources: Option<Vec<String>>,
    /// Whether `unavailable_resources` was absent (not null): the default list applies.
    pub unavailable_resources_defaulted: bool,
}

impl ChatAgentRequest {
    /// Parse and validate a decoded JSON body.
    pub fn parse(body: &Value) -> Result<ChatAgentRequest, GitlabError> {
        let mut budget = Budget { used: 0 };
        let obj = body.as_object().ok_or_else(|| invalid("body", "Input should be a valid JSON object"))?;

        let raw_messages = match obj.get("messages") {
            None => return Err(invalid("messages", "Field required")),
            Some(Value::Array(a)) => a,
            Some(_) => return Err(invalid("messages", "Input should be a valid list")),
        };
        if raw_messages.is_empty() {
            return Err(invalid("messages", "List should have at least 1 item"));
        }
        if raw_messages.len() > limits::MAX_MESSAGES {
            return Err(invalid(
                "messages",
                &format!("List should have at most {} items, not {}", limits::MAX_MESSAGES, raw_messages.len()),
            ));
        }
        let mut messages = Vec::with_capacity(raw_messages.len());
        for (i, m) in raw_messages.iter().enumerate() {
            messages.push(parse_message(&format!("messages.{i}"), m, &mut budget)?);
        }

        let options_scratchpad = match obj.get("options") {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_options(v, &mut budget)?),
        };

        let (unavailable_resources, unavailable_resources_defaulted) = match obj.get("unavailable_resources") {
            None => (None, true),
            Some(Value::Null) => (None, false),
            Some(Value::Array(items)) => {
                if items.len() > limits::MAX_UNAVAILABLE_RESOURCES {
                    return Err(invalid(
                        "unavailable_resources",
                        &format!("List should have at most {} items", limits::MAX_UNAVAILABLE_RESOURCES),
                    ));
                }
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let loc = format!("unavailable_resources.{i}");
                    let s = item.as_str().ok_or_else(|| invalid(&loc, "Input should be a valid string"))?;
                    out.push(text(&loc, s, limits::MAX_SHORT_CHARS, &mut budget)?);
                }
                (Some(out), false)
            }
            Some(_) => return Err(invalid("unavailable_resources", "Input should be a valid list")),
        };

        // The prompt ends with the user's turn: history assistant answers are fine, and an
        // assistant message without content only carries the scratchpad.
        let last_rendered = messages.iter().rev().find(|m| !(m.role == Role::Assistant && m.content.is_none()));
        match last_rendered {
            Some(m) if m.role == Role::User => {}
            _ => return Err(invalid("messages", "The last message with content must come from the user")),
        }

        let scratchpad = match options_scratchpad {
            Some(steps) => steps,
            None => match messages.last() {
                Some(ChatMessage { role: Role::Assistant, content: None, agent_scratchpad: Some(steps), .. }) => {
                    steps.clone()
                }
                _ => Vec::new(),
            },
        };

        Ok(ChatAgentRequest { messages, scratchpad, unavailable_resources, unavailable_resources_defaulted })
    }

    /// Parse raw body bytes (422 when they are not JSON).
    pub fn parse_bytes(body: &[u8]) -> Result<ChatAgentRequest, GitlabError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|_| invalid("body", "JSON decode error"))?;
        Self::parse(&value)
    }

    /// The unavailable resources as the prompt names them: the sent list, the gateway's
    /// default when the field was absent, nothing when it was null.
    pub fn effective_unavailable_resources(&self) -> Vec<String> {
        match (&self.unavailable_resources, self.unavailable_resources_defaulted) {
            (Some(list), _) => list.clone(),
            (None, true) => vec![DEFAULT_UNAVAILABLE_RESOURCES.to_owned()],
            (None, false) => Vec::new(),
        }
    }
}

struct Budget {
    used: usize,
}


fn text(loc: &str, s: &str, max: usize, budget: &mut Budget) -> Result<String, GitlabError> {
    let n = s.chars().count();
    if n > max {
        return Err(invalid(loc, &format!("String should have at most {max} characters")));
    }
    budget.used += n;
    if budget.used > limits::MAX_TOTAL_CHARS {
        return Err(invalid("body", &format!("Request text exceeds {} characters in total", limits::MAX_TOTAL_CHARS)));
    }
    Ok(s.to_owned())
}

fn object<'a>(loc: &str, v: &'a Value) -> Result<&'a Map<String, Value>, GitlabError> {
    v.as_object().ok_or_else(|| invalid(loc, "Input should be a valid dictionary or object"))
}

/// A required string field.
fn req_str(obj: &Map<String, Value>, loc: &str, key: &str, max: usize, budget: &mut Budget) -> Result<String, GitlabError> {
    let loc = format!("{loc}.{key}");
    match obj.get(key) {
        None => Err(invalid(&loc, "Field required")),
        Some(Value::String(s)) => text(&loc, s, max, budget),
        Some(_) => Err(invalid(&loc, "Input should be a valid string")),
    }
}

/// An optional (absent or null) string field.
fn opt_str(
    obj: &Map<String, Value>,
    loc: &str,
    key: &str,
    max: usize,
    budget: &mut Budget,
) -> Result<Option<String>, GitlabError> {
    let loc = format!("{loc}.{key}");
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => text(&loc, s, max, budget).map(Some),
        Some(_) => Err(invalid(&loc, "Input should be a valid string")),
    }
}

/// Booleans as GitLab's gateway accepts them (lax): JSON booleans, 0/1, and the usual words.
fn req_bool(obj: &Map<String, Value>, loc: &str, key: &str) -> Result<bool, GitlabError> {
    let loc = format!("{loc}.{key}");
    let bad = || invalid(&loc, "Input should be a valid boolean");
    match obj.get(key) {
        None => Err(invalid(&loc, "Field required")),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            _ => Err(bad()),
        },
        Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" | "t" | "y" => Ok(true),
            "false" | "0" | "no" | "off" | "f" | "n" => Ok(false),
            _ => Err(bad()),
        },
        Some(_) => Err(bad()),
    }
}

fn parse_message(loc: &str, v: &Value, budget: &mut Budget) -> Result<ChatMessage, GitlabError> {
    let obj = object(loc, v)?;
    let role = match obj.get("role") {
        None => return Err(invalid(&format!("{loc}.role"), "Field required")),
        Some(Value::String(r)) if r == "user" => Role::User,
        Some(Value::String(r)) if r == "assistant" => Role::Assistant,
        Some(_) => return Err(invalid(&format!("{loc}.role"), "Input should be 'user' or 'assistant'")),
    };
    let content = opt_str(obj, loc, "content", limits::MAX_TEXT_CHARS, budget)?;
    let context = match obj.get("context") {
        None | Some(Value::Null) => None,
        Some(c) => Some(parse_context(&format!("{loc}.context"), c, budget)?),
    };
    let current_file = match obj.get("current_file") {
        None | Some(Value::Null) => None,
        Some(f) => {
            let floc = format!("{loc}.current_file");
            let fo = object(&floc, f)?;
            Some(OpenFile {
                file_path: req_str(fo, &floc, "file_path", limits::MAX_SHORT_CHARS, budget)?,
                data: req_str(fo, &floc, "data", limits::MAX_TEXT_CHARS, budget)?,
                selected_code: req_bool(fo, &floc, "selected_code")?,
            })
        }
    };
    let additional_context = match obj.get("additional_context") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let aloc = format!("{loc}.additional_context");
            if items.len() > limits::MAX_ADDITIONAL_CONTEXT {
                return Err(invalid(
                    &aloc,
                    &format!("List should have at most {} items", limits::MAX_ADDITIONAL_CONTEXT),
                ));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(parse_additional_context(&format!("{aloc}.{i}"), item, budget)?);
            }
            out
        }
        Some(_) => return Err(invalid(&format!("{loc}.additional_context"), "Input should be a valid list")),
    };
    let agent_scratchpad = match obj.get("agent_scratchpad") {
        None | Some(Value::Null) => None,
        Some(pad) => {
            if role != Role::Assistant {
                // GitLab's gateway raises this one as 400, not 422.
                return Err(GitlabError::detail(400, "agent_scratchpad can only be present when role is ASSISTANT"));
            }
            Some(parse_message_scratchpad(&format!("{loc}.agent_scratchpad"), pad, budget)?)
        }
    };
    Ok(ChatMessage { role, content, context, current_file, additional_context, agent_scratchpad })
}

const LEGACY_CONTEXT_TYPES: [&str; 5] = ["issue", "epic", "merge_request", "commit", "build"];
const TITLED_CONTEXT_TYPES: [&str; 5] = ["issue", "epic", "merge_request", "commit", "work_item"];

fn parse_context(loc: &str, v: &Value, budget: &mut Budget) -> Result<PageContext, GitlabError> {
    let obj = object(loc, v)?;
    let kind = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        None => return Err(invalid(&format!("{loc}.type"), "Field required")),
        Some(_) => return Err(invalid(&format!("{loc}.type"), "Input should be a valid string")),
    };
    // Same precedence as the gateway's union: the legacy `{type, content}` form first.
    if LEGACY_CONTEXT_TYPES.contains(&kind)
        && let Some(Value::String(content)) = obj.get("content")
    {
        let content = text(&format!("{loc}.content"), content, limits::MAX_TEXT_CHARS, budget)?;
        return Ok(PageContext::Legacy { kind: kind.to_owned(), content });
    }
    if kind == "build" {
        return Ok(PageContext::Build);
    }
    if TITLED_CONTEXT_TYPES.contains(&kind) {
        let title = req_str(obj, loc, "title", limits::MAX_SHORT_CHARS, budget)?;
        return Ok(PageContext::Titled { kind: kind.to_owned(), title });
    }
    Err(invalid(
        &format!("{loc}.type"),
        "Input should be 'issue', 'epic', 'merge_request', 'commit', 'build' or 'work_item'",
    ))
}

fn parse_additional_context(loc: &str, v: &Value, budget: &mut Budget) -> Result<AdditionalContext, GitlabError> {
    let obj = object(loc, v)?;
    let category = match obj.get("category") {
        None => return Err(invalid(&format!("{loc}.category"), "Field required")),
        Some(Value::String(c)) if is_context_category(c) => c.clone(),
        Some(_) => {
            return Err(invalid(
                &format!("{loc}.category"),
                &format!("Input should be one of: {}", duo_core::chat_scopes::CONTEXT_CATEGORIES.join(", ")),
            ));
        }
    };
    let id = opt_str(obj, loc, "id", limits::MAX_SHORT_CHARS, budget)?;
    let content = opt_str(obj, loc, "content", limits::MAX_TEXT_CHARS, budget)?;
    let metadata = match obj.get("metadata") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m.clone()),
        Some(_) => return Err(invalid(&format!("{loc}.metadata"), "Input should be a valid dictionary")),
    };
    Ok(AdditionalContext { category, id, content, metadata })
}

fn check_steps_len(loc: &str, n: usize) -> Result<(), GitlabError> {
    if n > limits::MAX_SCRATCHPAD_STEPS {
        return Err(invalid(loc, &format!("List should have at most {} items", limits::MAX_SCRATCHPAD_STEPS)));
    }
    Ok(())
}

/// GitLab escapes underscores in tool names and thoughts it stored (`issue\_reader`).
fn unescape_underscores(s: String) -> String {
    if s.contains("\\_") { s.replace("\\_", "_") } else { s }
}

/// `messages[].agent_scratchpad`: `[{action: {thought, tool, tool_input}, observation}]`; steps
/// without an action are skipped.
fn parse_message_scratchpad(loc: &str, v: &Value, budget: &mut Budget) -> Result<Vec<AgentStep>, GitlabError> {
    let items = v.as_array().ok_or_else(|| invalid(loc, "Input should be a valid list"))?;
    check_steps_len(loc, items.len())?;
    let mut steps = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let sloc = format!("{loc}.{i}");
        let so = object(&sloc, item)?;
        let observation = opt_str(so, &sloc, "observation", limits::MAX_TEXT_CHARS, budget)?.unwrap_or_default();
        let action = match so.get("action") {
            None | Some(Value::Null) => continue,
            Some(a) => a,
        };
        let aloc = format!("{sloc}.action");
        let ao = object(&aloc, action)?;
        steps.push(AgentStep {
            thought: unescape_underscores(req_str(ao, &aloc, "thought", limits::MAX_TEXT_CHARS, budget)?),
            tool: unescape_underscores(req_str(ao, &aloc, "tool", limits::MAX_SHORT_CHARS, budget)?),
            tool_input: req_str(ao, &aloc, "tool_input", limits::MAX_TEXT_CHARS, budget)?,
            observation,
        });
    }
    Ok(steps)
}

/// `options: {agent_scratchpad: {agent_type: "react", steps: [{thought, tool, tool_input, observation}]}}`.
fn parse_options(v: &Value, budget: &mut Budget) -> Result<Vec<AgentStep>, GitlabError> {
    let obj = object("options", v)?;
    let pad = match obj.get("agent_scratchpad") {
        None => return Err(invalid("options.agent_scratchpad", "Field required")),
        Some(p) => object("options.agent_scratchpad", p)?,
    };
    match pad.get("agent_type") {
        Some(Value::String(t)) if t == "react" => {}
        None => return Err(invalid("options.agent_scratchpad.agent_type", "Field required")),
        Some(_) => return Err(invalid("options.agent_scratchpad.agent_type", "Input should be 'react'")),
    }
    let loc = "options.agent_scratchpad.steps";
    let items = match pad.get("steps") {
        None => return Err(invalid(loc, "Field required")),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(invalid(loc, "Input should be a valid list")),
    };
    check_steps_len(loc, items.len())?;
    let mut steps = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let sloc = format!("{loc}.{i}");
        let so = object(&sloc, item)?;
        steps.push(AgentStep {
            thought: unescape_underscores(req_str(so, &sloc, "thought", limits::MAX_TEXT_CHARS, budget)?),
            tool: unescape_underscores(req_str(so, &sloc, "tool", limits::MAX_SHORT_CHARS, budget)?),
            tool_input: req_str(so, &sloc, "tool_input", limits::MAX_TEXT_CHARS, budget)?,
            observation: req_str(so, &sloc, "observation", limits::MAX_TEXT_CHARS, budget)?,
        });
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use serde_json::json;

    fn detail(e: &GitlabError) -> String {
        if e.status == 422 {
            return crate::chat::validation::summary(e);
        }
        let v: Value = serde_json::from_str(&e.body).unwrap();
        v["detail"].as_str().unwrap().to_owned()
    }

    fn err(body: Value) -> (u32, String) {
        let e = ChatAgentRequest::parse(&body).unwrap_err();
        (e.status, detail(&e))
    }

    /// The body GitLab's ReactExecutor sends on the second step of a question.
    pub(crate) fn rails_step_body() -> Value {
        json!({
            "messages": [
                {"role": "user", "content": "What is CI?", "additional_context": null, "resource_content": null},
                {"role": "assistant", "content": "CI runs your pipelines.", "additional_context": null},
                {"role": "user", "content": "Summarize issue #12",
                 "context": {"type": "issue", "title": "Login broken"},
                 "current_file": {"file_path": "app/x.rb", "data": "puts 1", "selected_code": true},
                 "additional_context": [{"category": "snippet", "id": "s1", "content": "fn a() {}", "metadata": {"k": 1}}]},
                {"role": "assistant", "agent_scratchpad": [
                    {"action": {"thought": "I need the issue\\_reader.", "tool": "issue\\_reader", "tool_input": "#12"},
                     "observation": "Issue #12: login fails on Safari."}]}
            ],
            "model_metadata": {"provider": "openai", "name": "mistral", "endpoint": "http://v:8000/v1", "identifier": "custom_openai/m"},
            "unavailable_resources": ["Pipelines", "Vulnerabilities"]
        })
    }

    #[test]
    fn rails_step_body_parses_completely() {
        let r = ChatAgentRequest::parse(&rails_step_body()).unwrap();
        assert_eq!(r.messages.len(), 4);
        let q = &r.messages[2];
        assert_eq!(q.role, Role::User);
        assert_eq!(q.context, Some(PageContext::Titled { kind: "issue".into(), title: "Login broken".into() }));
        assert_eq!(
            q.current_file,
            Some(OpenFile { file_path: "app/x.rb".into(), data: "puts 1".into(), selected_code: true })
        );
        assert_eq!(q.additional_context[0].category, "snippet");
        assert_eq!(q.additional_context[0].metadata.as_ref().unwrap()["k"], json!(1));
        assert_eq!(
            r.scratchpad,
            vec![AgentStep {
                thought: "I need the issue_reader.".into(),
                tool: "issue_reader".into(),
                tool_input: "#12".into(),
                observation: "Issue #12: login fails on Safari.".into(),
            }]
        );
        assert_eq!(r.effective_unavailable_resources(), vec!["Pipelines", "Vulnerabilities"]);
    }

    #[test]
    fn options_scratchpad_wins_over_the_message_one() {
        let mut body = rails_step_body();
        body["options"] = json!({"agent_scratchpad": {"agent_type": "react", "steps": [
            {"thought": "t", "tool": "epic_reader", "tool_input": "&3", "observation": "o"}]}});
        let r = ChatAgentRequest::parse(&body).unwrap();
        assert_eq!(r.scratchpad.len(), 1);
        assert_eq!(r.scratchpad[0].tool, "epic_reader");
        // Present but empty options: no steps, even if the last message has some.
        body["options"]["agent_scratchpad"]["steps"] = json!([]);
        assert!(ChatAgentRequest::parse(&body).unwrap().scratchpad.is_empty());
    }

    #[test]
    fn first_question_has_no_scratchpad_and_default_resources() {
        let r = ChatAgentRequest::parse(&json!({"messages": [{"role": "user", "content": "hi"}]})).unwrap();
        assert!(r.scratchpad.is_empty());
        assert_eq!(r.effective_unavailable_resources(), vec![DEFAULT_UNAVAILABLE_RESOURCES]);
        let r = ChatAgentRequest::parse(&json!({"messages": [{"role": "user", "content": "hi"}], "unavailable_resources": null})).unwrap();
        assert!(r.effective_unavailable_resources().is_empty());
    }

    #[test]
    fn context_forms() {
        let parse = |c: Value| {
            let r = ChatAgentRequest::parse(&json!({"messages": [{"role": "user", "content": "q", "context": c}]}));
            r.map(|r| r.messages[0].context.clone().unwrap())
        };
        assert_eq!(parse(json!({"type": "build"})).unwrap(), PageContext::Build);
        assert_eq!(
            parse(json!({"type": "epic", "content": "<epic page>"})).unwrap(),
            PageContext::Legacy { kind: "epic".into(), content: "<epic page>".into() }
        );
        assert_eq!(
            parse(json!({"type": "work_item", "title": "W"})).unwrap(),
            PageContext::Titled { kind: "work_item".into(), title: "W".into() }
        );
        assert_eq!(detail(&parse(json!({"type": "issue"})).unwrap_err()), "messages.0.context.title: Field required");
        assert!(detail(&parse(json!({"type": "vulnerability", "title": "x"})).unwrap_err()).starts_with("messages.0.context.type: Input should be"));
    }

    #[test]
    fn shape_errors_are_422_with_the_place() {
        let cases = [
            (json!([]), "body: Input should be a valid JSON object"),
            (json!({}), "messages: Field required"),
            (json!({"messages": "hi"}), "messages: Input should be a valid list"),
            (json!({"messages": []}), "messages: List should have at least 1 item"),
            (json!({"messages": [{"content": "x"}]}), "messages.0.role: Field required"),
            (json!({"messages": [{"role": "system", "content": "x"}]}), "messages.0.role: Input should be 'user' or 'assistant'"),
            (json!({"messages": [{"role": "user", "content": 5}]}), "messages.0.content: Input should be a valid string"),
            (json!({"messages": [{"role": "user", "content": "a", "current_file": {"file_path": "a", "data": "b"}}]}),
             "messages.0.current_file.selected_code: Field required"),
            (json!({"messages": [{"role": "user", "content": "a", "current_file": {"file_path": "a", "data": "b", "selected_code": "maybe"}}]}),
             "messages.0.current_file.selected_code: Input should be a valid boolean"),
            (json!({"messages": [{"role": "user", "content": "a", "additional_context": [{"category": "secrets"}]}]}),
             "messages.0.additional_context.0.category: Input should be one of: file, snippet, merge_request, issue, dependency, local_git, terminal, repository, directory, os_information, agent_user_environment"),
            (json!({"messages": [{"role": "user", "content": "a", "additional_context": {"category": "file"}}]}),
             "messages.0.additional_context: Input should be a valid list"),
            (json!({"messages": [{"role": "user", "content": "a"}], "options": {"agent_scratchpad": {"agent_type": "plan", "steps": []}}}),
             "options.agent_scratchpad.agent_type: Input should be 'react'"),
            (json!({"messages": [{"role": "user", "content": "a"}], "options": {"agent_scratchpad": {"agent_type": "react", "steps": [{"thought": "t", "tool": "x", "tool_input": "i"}]}}}),
             "options.agent_scratchpad.steps.0.observation: Field required"),
            (json!({"messages": [{"role": "user", "content": "a"}], "unavailable_resources": "Pipelines"}),
             "unavailable_resources: Input should be a valid list"),
            (json!({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}),
             "messages: The last message with content must come from the user"),
            (json!({"messages": [{"role": "assistant", "agent_scratchpad": []}]}),
             "messages: The last message with content must come from the user"),
        ];
        for (body, want) in cases {
            assert_eq!(err(body.clone()), (422, want.to_owned()), "body {body}");
        }
    }

    #[test]
    fn scratchpad_on_a_user_message_is_400() {
        let (status, d) = err(json!({"messages": [{"role": "user", "content": "a", "agent_scratchpad": []}]}));
        assert_eq!((status, d.as_str()), (400, "agent_scratchpad can only be present when role is ASSISTANT"));
    }

    #[test]
    fn limits_on_counts_and_sizes() {
        let many: Vec<Value> = (0..=limits::MAX_MESSAGES).map(|_| json!({"role": "user", "content": "x"})).collect();
        assert_eq!(err(json!({"messages": many})), (422, "messages: List should have at most 100 items, not 101".to_owned()));
        let at_limit: Vec<Value> = (0..limits::MAX_MESSAGES).map(|_| json!({"role": "user", "content": "x"})).collect();
        assert!(ChatAgentRequest::parse(&json!({"messages": at_limit})).is_ok());

        let big = "é".repeat(limits::MAX_TEXT_CHARS + 1);
        assert_eq!(
            err(json!({"messages": [{"role": "user", "content": big}]})),
            (422, "messages.0.content: String should have at most 400000 characters".to_owned())
        );
        let exact = "é".repeat(limits::MAX_TEXT_CHARS);
        assert!(ChatAgentRequest::parse(&json!({"messages": [{"role": "user", "content": exact}]})).is_ok());

        let ctx: Vec<Value> = (0..=limits::MAX_ADDITIONAL_CONTEXT).map(|_| json!({"category": "file"})).collect();
        assert_eq!(
            err(json!({"messages": [{"role": "user", "content": "a", "additional_context": ctx}]})),
            (422, "messages.0.additional_context: List should have at most 100 items".to_owned())
        );
        let steps: Vec<Value> = (0..=limits::MAX_SCRATCHPAD_STEPS)
            .map(|_| json!({"thought": "t", "tool": "x", "tool_input": "i", "observation": "o"}))
            .collect();
        assert_eq!(
            err(json!({"messages": [{"role": "user", "content": "a"}], "options": {"agent_scratchpad": {"agent_type": "react", "steps": steps}}})),
            (422, "options.agent_scratchpad.steps: List should have at most 50 items".to_owned())
        );
        // Many fields each under their own limit still hit the total budget.
        let chunk = "a".repeat(limits::MAX_TEXT_CHARS);
        let msgs: Vec<Value> = (0..11).map(|_| json!({"role": "user", "content": chunk.clone()})).collect();
        assert_eq!(err(json!({"messages": msgs})), (422, "body: Request text exceeds 4000000 characters in total".to_owned()));
    }

    #[test]
    fn raw_bytes_that_are_not_json_are_422() {
        let e = ChatAgentRequest::parse_bytes(b"{not json").unwrap_err();
        assert_eq!((e.status, detail(&e).as_str()), (422, "body: JSON decode error"));
        assert!(ChatAgentRequest::parse_bytes(br#"{"messages":[{"role":"user","content":"hi"}]}"#).is_ok());
    }
}
