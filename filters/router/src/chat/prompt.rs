//! The ReAct agent prompt of Duo Chat, rendered per model family from a validated request.
//!
//! Templates are data files under `filters/router/prompts/chat_react/`, registered in the prompt
//! manifest as prompt `chat/react` and compiled into the one [`PromptSet`] with the admin's
//! overrides (`prompts."chat/react"`). The result is a list of chat messages:
//! system (identity, date, tools, answer format), the conversation (user turns carry their page
//! context, open file and attached context), and the scratchpad of this question: as a trailing
//! assistant prefill ending in `Thought:` where the platform continues an assistant message
//! (Claude on Bedrock), else appended to the last user turn.

use super::request::{AgentStep, ChatAgentRequest, ChatMessage, PageContext, Role};
use crate::model::{Family, Platform};
use crate::prompts::{CivilDate, Message, Part, PromptSet};
use duo_core::errors::GitlabError;
use serde_json::{Value, json};

/// The ReAct prompt's id in the prompt manifest.
pub const PROMPT_ID: &str = "chat/react";

/// Generation stops before the model invents a tool's answer.
pub const STOP_SEQUENCES: [&str; 1] = ["Observation:"];

/// Inference defaults of the chat agent per family (a model entry's `params` override them).
#[derive(Clone, Debug, PartialEq)]
pub struct ChatParams {
    pub temperature: f64,
    pub max_tokens: u32,
    pub stop: Vec<String>,
}

pub fn model_params(family: Family) -> ChatParams {
    let max_tokens = match family {
        Family::Claude3 | Family::Gpt | Family::General => 8192,
        _ => 4096,
    };
    ChatParams { temperature: 0.1, max_tokens, stop: STOP_SEQUENCES.iter().map(|s| (*s).to_owned()).collect() }
}

/// Can this platform continue a trailing assistant message (prefill)? Anthropic models on
/// Bedrock can; OpenAI-style chat servers start a new turn instead.
pub fn supports_prefill(platform: Platform, family: Family) -> bool {
    platform == Platform::Bedrock && family == Family::Claude3
}

/// What the renderer needs besides the request.
#[derive(Clone, Debug)]
pub struct ChatOptions {
    pub today: CivilDate,
    /// The token's scopes (from duo_auth's hand-off): tools whose unit primitive is missing are
    /// not offered. `None` or empty: no filtering (e.g. auth bypass).
    pub scopes: Option<Vec<String>>,
    /// Put the scratchpad in a trailing assistant message (see [`supports_prefill`]).
    pub prefill: bool,
}

/// A tool GitLab runs for the agent (`Action: <name>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tool {
    pub name: &'static str,
    /// The resource it reads, as `unavailable_resources` names it.
    pub resource: &'static str,
    pub unit_primitive: &'static str,
    pub description: &'static str,
    pub example: &'static str,
}

/// The tools of GitLab's chat agent, in the order they are offered.
pub const TOOLS: [Tool; 7] = [
    Tool {
        name: "issue_reader",
        resource: "issues",
        unit_primitive: "ask_issue",
        description: "Reads one issue (description, comments, labels, state). Needs an issue ID, a reference such as #123 or group/project#123, an issue URL, or the issue page the user is on.",
        example: "Question: Who reported #123?\nThought: The question is about issue #123, so I read it.\nAction: issue_reader\nAction Input: Who reported #123?",
    },
    Tool {
        name: "epic_reader",
        resource: "epics",
        unit_primitive: "ask_epic",
        description: "Reads one epic. Needs an epic ID, a reference such as &42, an epic URL, or the epic page the user is on.",
        example: "Question: What is left to do in &42?\nThought: I need epic &42.\nAction: epic_reader\nAction Input: What is left to do in &42?",
    },
    Tool {
        name: "merge_request_reader",
        resource: "merge requests",
        unit_primitive: "ask_merge_request",
        description: "Reads one merge request (description, diff summary, discussion). Needs a merge request ID, a reference such as !7, a URL, or the merge request page the user is on.",
        example: "Question: Is !7 ready to merge?\nThought: I need merge request !7.\nAction: merge_request_reader\nAction Input: Is !7 ready to merge?",
    },
    Tool {
        name: "commit_reader",
        resource: "commits",
        unit_primitive: "ask_commit",
        description: "Reads one commit (message, author, changes). Needs a commit SHA, a commit URL, or the commit page the user is on.",
        example: "Question: What did commit 4f2a9c1 change?\nThought: I need that commit.\nAction: commit_reader\nAction Input: What did commit 4f2a9c1 change?",
    },
    Tool {
        name: "build_reader",
        resource: "builds",
        unit_primitive: "ask_build",
        description: "Reads one CI job, also called a build, including its log. Needs a job ID, a job URL, or the job page the user is on.",
        example: "Question: Why did job 9001 fail?\nThought: I need the log of job 9001.\nAction: build_reader\nAction Input: Why did job 9001 fail?",
    },
    Tool {
        name: "work_item_reader",
        resource: "work items",
        unit_primitive: "ask_work_item",
        description: "Reads one work item (task, objective, key result, and similar). Needs a work item ID, a URL, or the work item page the user is on.",
        example: "Question: Summarize https://gitlab.example.com/g/p/-/work_items/55\nThought: I need that work item.\nAction: work_item_reader\nAction Input: Summarize https://gitlab.example.com/g/p/-/work_items/55",
    },
    Tool {
        name: "gitlab_documentation",
        resource: "documentation",
        unit_primitive: "documentation_search",
        description: "Searches the GitLab documentation. Use it for questions about how GitLab works: projects, groups, issues, merge requests, CI/CD, security, administration. Give a few keywords as input.",
        example: "Question: How do I protect a branch?\nThought: This is about how GitLab works; the documentation will say.\nAction: gitlab_documentation\nAction Input: protect branch",
    },
];

/// Lower-case, letters and digits only, without a plural `s`: "Merge Requests" = "merge_request".
fn resource_key(s: &str) -> String {
    let k: String = s.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect();
    k.strip_suffix('s').map(str::to_owned).unwrap_or(k)
}

/// The tools offered for this request: minus those whose resource is unavailable and, when
/// scopes are known, minus those the token may not use.
pub fn offered_tools(unavailable: &[String], scopes: Option<&[String]>) -> Vec<Tool> {
    let unavailable: Vec<String> =
        unavailable.iter().flat_map(|entry| entry.split(',')).map(resource_key).filter(|k| !k.is_empty()).collect();
    TOOLS
        .iter()
        .filter(|t| !unavailable.contains(&resource_key(t.resource)) && !unavailable.contains(&resource_key(t.name)))
        .filter(|t| match scopes {
            Some(s) if !s.is_empty() => s.iter().any(|up| up == t.unit_primitive),
            _ => true,
        })
        .copied()
        .collect()
}

fn steps_json(steps: &[AgentStep]) -> Value {
    Value::Array(
        steps
            .iter()
            .map(|s| json!({"thought": s.thought, "tool": s.tool, "tool_input": s.tool_input, "observation": s.observation}))
            .collect(),
    )
}

fn context_json(c: &PageContext) -> Value {
    match c {
        PageContext::Legacy { kind, content } => json!({"legacy": true, "kind": kind, "content": content}),
        PageContext::Build => json!({"legacy": false, "kind": "build"}),
        PageContext::Titled { kind, title } => {
            json!({"legacy": false, "kind": kind, "label": kind.replace('_', " "), "title": title})
        }
    }
}

fn user_json(m: &ChatMessage, scratchpad: &[AgentStep]) -> Value {
    json!({
        "content": m.content.as_deref().unwrap_or(""),
        "context": m.context.as_ref().map(context_json),
        "current_file": m.current_file.as_ref().map(|f| json!({
            "file_path": f.file_path, "data": f.data, "selected_code": f.selected_code})),
        "additional_context": m.additional_context.iter().map(|a| json!({
            "category": a.category, "id": a.id, "content": a.content.as_deref().unwrap_or("")})).collect::<Vec<_>>(),
        "scratchpad": steps_json(scratchpad),
    })
}

/// Renders the agent prompt for `family` from the prompt set (built-ins and overrides).
pub fn render(prompts: &PromptSet, req: &ChatAgentRequest, family: Family, opts: &ChatOptions) -> Result<Vec<Message>, GitlabError> {
    let unavailable = req.effective_unavailable_resources();
    let tools = offered_tools(&unavailable, opts.scopes.as_deref());
    let part = |part: Part, vars: Value| prompts.render_part(PROMPT_ID, family, part, &vars);
    let system = part(
        Part::System,
        json!({
            "current_date": opts.today.long_format(),
            "tools": tools.iter().map(|t| json!({"name": t.name, "description": t.description, "example": t.example})).collect::<Vec<_>>(),
            "tool_names": tools.iter().map(|t| t.name).collect::<Vec<_>>().join(", "),
            "resources": tools.iter().map(|t| t.resource).collect::<Vec<_>>().join(", "),
            "unavailable_resources": unavailable.join(", "),
        }),
    )?;

    let mut messages = vec![Message::system(system)];
    let last_user = req.messages.iter().rposition(|m| m.role == Role::User);
    let scratch_in_user = !opts.prefill && !req.scratchpad.is_empty();
    for (i, m) in req.messages.iter().enumerate() {
        let (role, content) = match m.role {
            Role::Assistant => match &m.content {
                None => continue,
                Some(c) => (Role::Assistant, part(Part::Assistant, json!({"content": c}))?),
            },
            // The request parser only yields user and assistant messages.
            _ => {
                let pad: &[AgentStep] = if scratch_in_user && Some(i) == last_user { &req.scratchpad } else { &[] };
                (Role::User, part(Part::User, user_json(m, pad))?)
            }
        };
        // Strict chat templates (Mistral's) need alternating roles: merge neighbours.
        match messages.last_mut() {
            Some(prev) if prev.role == role => {
                prev.content.push_str("\n\n");
                prev.content.push_str(&content);
            }
            _ => messages.push(Message::new(role, content)),
        }
    }
    if opts.prefill {
        let content = part(Part::Continuation, json!({"scratchpad": steps_json(&req.scratchpad)}))?;
        messages.push(Message::assistant(content));
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::chat::request::ChatAgentRequest;
    use serde_json::json;

    use crate::prompts::ALL_FAMILIES;

    const TODAY: CivilDate = CivilDate { year: 2026, month: 11, day: 26 };

    fn opts(prefill: bool) -> ChatOptions {
        ChatOptions { today: TODAY, scopes: None, prefill }
    }

    fn set() -> PromptSet {
        PromptSet::builtin().unwrap()
    }

    fn golden_request() -> ChatAgentRequest {
        ChatAgentRequest::parse(&json!({
            "messages": [
                {"role": "user", "content": "What is a runner?"},
                {"role": "assistant", "content": "A runner executes CI jobs."},
                {"role": "user", "content": "Summarize issue #12 and fix my code",
                 "context": {"type": "issue", "title": "Login broken"},
                 "current_file": {"file_path": "app/login.rb", "data": "def login = nil", "selected_code": true},
                 "additional_context": [{"category": "snippet", "id": "s1", "content": "retry 3"}]},
                {"role": "assistant", "agent_scratchpad": [
                    {"action": {"thought": "I need the issue.", "tool": "issue_reader", "tool_input": "#12"},
                     "observation": "Issue #12: login fails on Safari."}]}
            ],
            "unavailable_resources": ["Pipelines", "Vulnerabilities"]
        }))
        .unwrap()
    }

    fn render_text(messages: &[Message]) -> String {
        let mut s = String::new();
        for m in messages {
            s.push_str(&format!("=== {}\n{}\n", m.role.name(), m.content));
        }
        s
    }

    fn golden(family: Family) -> Option<&'static str> {
        Some(match family {
            Family::Codestral => include_str!("golden/codestral.txt"),
            Family::Mistral => include_str!("golden/mistral.txt"),
            Family::Mixtral => include_str!("golden/mixtral.txt"),
            Family::Llama3 => include_str!("golden/llama3.txt"),
            Family::Codellama => include_str!("golden/codellama.txt"),
            Family::Codegemma => include_str!("golden/codegemma.txt"),
            Family::Deepseekcoder => include_str!("golden/deepseekcoder.txt"),
            Family::Claude3 => include_str!("golden/claude_3.txt"),
            Family::Gpt => include_str!("golden/gpt.txt"),
            Family::General => include_str!("golden/general.txt"),
        })
    }

    /// Golden renders per family. `UPDATE_GOLDEN=1 cargo test -p duo_router golden` rewrites them
    /// (then review the diff).
    #[test]
    fn golden_renders_per_family() {
        let req = golden_request();
        for family in ALL_FAMILIES {
            let prefill = family == Family::Claude3;
            let got = render_text(&render(&set(), &req, family, &opts(prefill)).unwrap());
            #[cfg(not(target_arch = "wasm32"))]
            if std::env::var_os("UPDATE_GOLDEN").is_some() {
                let path = format!("{}/src/chat/golden/{}.txt", env!("CARGO_MANIFEST_DIR"), family.name());
                std::fs::write(path, &got).unwrap();
                continue;
            }
            assert_eq!(got, golden(family).unwrap(), "golden render for {}", family.name());
        }
    }

    #[test]
    fn structure_without_prefill() {
        let m = render(&set(), &golden_request(), Family::Mistral, &opts(false)).unwrap();
        let roles: Vec<_> = m.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            vec![Role::System, Role::User, Role::Assistant, Role::User],
            "alternating, ends with the user"
        );
        let last = &m[3].content;
        for needle in [
            "Login broken",
            "app/login.rb",
            "def login = nil",
            "category=\"snippet\" id=\"s1\"",
            "retry 3",
            "Summarize issue #12 and fix my code",
            "Action: issue_reader\nAction Input: #12\nObservation: Issue #12: login fails on Safari.",
        ] {
            assert!(last.contains(needle), "{needle:?} in {last}");
        }
        assert_eq!(m[2].content, "A runner executes CI jobs.");
        assert!(m[0].content.contains("Thursday, November 26, 2026"));
        assert!(m[0].content.contains("You cannot read: Pipelines, Vulnerabilities."));
    }

    #[test]
    fn prefill_ends_with_the_scratchpad_and_thought() {
        let m = render(&set(), &golden_request(), Family::Claude3, &opts(true)).unwrap();
        let last = m.last().unwrap();
        assert_eq!(last.role, Role::Assistant);
        assert_eq!(
            last.content,
            "Thought: I need the issue.\nAction: issue_reader\nAction Input: #12\nObservation: Issue #12: login fails on Safari.\nThought:"
        );
        assert!(!m[m.len() - 2].content.contains("Observation:"), "not also in the user turn");
        // First step of a question: just the cue.
        let first = ChatAgentRequest::parse(&json!({"messages": [{"role": "user", "content": "hi"}]})).unwrap();
        let m = render(&set(), &first, Family::Claude3, &opts(true)).unwrap();
        assert_eq!(m.last().unwrap().content, "Thought:");
        let m = render(&set(), &first, Family::Gpt, &opts(false)).unwrap();
        assert_eq!(m.last().unwrap(), &Message::user("hi"));
    }

    #[test]
    fn tools_minus_unavailable_and_missing_scopes() {
        let names = |t: Vec<Tool>| t.iter().map(|t| t.name).collect::<Vec<_>>();
        assert_eq!(names(offered_tools(&["Pipelines".into(), "Vulnerabilities".into()], None)).len(), 7);
        assert_eq!(
            names(offered_tools(&[DEFAULT.into()], None)),
            vec!["issue_reader", "epic_reader", "commit_reader", "build_reader", "work_item_reader", "gitlab_documentation"]
        );
        assert_eq!(
            names(offered_tools(&["Issues".into(), "Work Items".into(), "documentation".into()], None)),
            vec!["epic_reader", "merge_request_reader", "commit_reader", "build_reader"]
        );
        let scopes = vec!["duo_chat".to_owned(), "ask_issue".to_owned(), "documentation_search".to_owned()];
        assert_eq!(names(offered_tools(&[], Some(&scopes))), vec!["issue_reader", "gitlab_documentation"]);
        assert_eq!(names(offered_tools(&[], Some(&[]))).len(), 7);

        let req = ChatAgentRequest::parse(&json!({"messages": [{"role": "user", "content": "hi"}], "unavailable_resources": ["Epics"]})).unwrap();
        let o = ChatOptions { today: TODAY, scopes: Some(scopes), prefill: false };
        let sys = &render(&set(), &req, Family::Gpt, &o).unwrap()[0].content;
        assert!(sys.contains("<name>issue_reader</name>"));
        assert!(!sys.contains("epic_reader"));
        assert!(!sys.contains("commit_reader"));
        assert!(sys.contains("Action: one of [issue_reader, gitlab_documentation]"));
        assert!(sys.contains("You cannot read these GitLab resources: Epics."));
    }

    const DEFAULT: &str = crate::chat::request::DEFAULT_UNAVAILABLE_RESOURCES;

    #[test]
    fn page_contexts_render() {
        let render_ctx = |c: Value| {
            let r = ChatAgentRequest::parse(&json!({"messages": [{"role": "user", "content": "q", "context": c}]})).unwrap();
            render(&set(), &r, Family::Llama3, &opts(false)).unwrap()[1].content.clone()
        };
        assert!(render_ctx(json!({"type": "build"})).starts_with("The user is looking at a CI job (build) page"));
        assert!(render_ctx(json!({"type": "merge_request", "title": "Add X"})).contains("the merge request titled \"Add X\""));
        assert!(render_ctx(json!({"type": "epic", "content": "EPIC BODY"})).contains("<page type=\"epic\">\nEPIC BODY\n</page>"));
    }

    #[test]
    fn request_text_is_not_template_code() {
        let r = ChatAgentRequest::parse(&json!({"messages": [{"role": "user", "content": "{{ current_date }} {% if x %}"}]})).unwrap();
        let m = render(&set(), &r, Family::Mistral, &opts(false)).unwrap();
        assert_eq!(m[1].content, "{{ current_date }} {% if x %}");
    }

    #[test]
    fn admin_overrides_reach_duo_chat() {
        let overrides: crate::prompts::TemplateOverrides = serde_json::from_value(json!({
            "chat/react": {
                "system": "ACME assistant. Tools: {{ tool_names }}. Today {{ current_date }}.",
                "params": {"max_tokens": 333},
                "families": {"mistral": {"user": "Q: {{ content }}"}}
            }
        }))
        .unwrap();
        let set = PromptSet::new(&overrides).unwrap();
        let scopes = Some(vec!["ask_issue".to_owned()]);
        let o = ChatOptions { today: TODAY, scopes, prefill: false };
        let m = render(&set, &golden_request(), Family::Mistral, &o).unwrap();
        assert_eq!(m[0].content, "ACME assistant. Tools: issue_reader. Today Thursday, November 26, 2026.");
        assert_eq!(m[1].content, "Q: What is a runner?");
        let m = render(&set, &golden_request(), Family::Gpt, &o).unwrap();
        assert!(m[1].content.starts_with("What is a runner?"), "the built-in user template for other families");
        assert_eq!(set.default_params(PROMPT_ID).get("max_tokens"), Some(&json!(333)));
        // an override naming a variable the chat prompt never receives is refused at configure
        let bad: crate::prompts::TemplateOverrides = serde_json::from_value(json!({"chat/react": {"user": "{{ diff }}"}})).unwrap();
        let e = PromptSet::new(&bad).unwrap_err();
        assert!(e.to_string().contains("diff"), "{e}");
    }

    #[test]
    fn families_pick_full_or_compact_prompts_and_params() {
        let full = render(&set(), &golden_request(), Family::Claude3, &opts(false)).unwrap();
        let compact = render(&set(), &golden_request(), Family::Codestral, &opts(false)).unwrap();
        assert!(compact[0].content.len() < full[0].content.len(), "compact system prompt for small open models");
        assert_eq!(model_params(Family::Gpt).max_tokens, 8192);
        assert_eq!(model_params(Family::Mistral), ChatParams { temperature: 0.1, max_tokens: 4096, stop: vec!["Observation:".into()] });
        assert!(supports_prefill(Platform::Bedrock, Family::Claude3));
        assert!(!supports_prefill(Platform::Vllm, Family::Claude3));
        assert!(!supports_prefill(Platform::Bedrock, Family::Mistral));
    }

    #[test]
    fn dates() {
        assert_eq!(CivilDate::from_unix_seconds(0), CivilDate { year: 1970, month: 1, day: 1 });
        assert_eq!(CivilDate::from_unix_seconds(1_795_651_200), TODAY);
        assert_eq!(TODAY.long_format(), "Thursday, November 26, 2026");
        assert_eq!(CivilDate::from_unix_seconds(951_782_400).long_format(), "Tuesday, February 29, 2000");
        assert_eq!(CivilDate { year: 2024, month: 1, day: 1 }.long_format(), "Monday, January 1, 2024");
    }
}
