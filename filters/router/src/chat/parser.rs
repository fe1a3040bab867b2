//! Incremental parser of a ReAct model answer into GitLab's chat events.
//!
//! The model writes either
//!
//! ```text
//! Thought: I need the issue.
//! Action: issue_reader
//! Action Input: #12
//! ```
//!
//! (generation stops at `Observation:`), or `Thought: ...` then `Final Answer: <answer>`. Text
//! deltas arrive split anywhere. Rules (same precedence as GitLab's gateway):
//!
//! * once `Final Answer:` appears, everything after it is the answer, streamed as
//!   `final_answer_delta` events as soon as it arrives: leading whitespace is dropped, and only
//!   trailing whitespace is held back (GitLab's gateway strips it); before the marker, nothing
//!   can be said yet, so nothing is emitted;
//! * at a clean end without that marker, `Action: <tool>` + `Action Input: <input>` give one
//!   `action` event (thought = the text before `Action:`); `Action: DirectAnswer` gives the
//!   input (or what follows) as the final answer;
//! * anything else is one `unknown` event with the whole text;
//! * a failure after the start gives one `error` event; nothing follows it.

use super::events::{AgentEvent, Finish};

const FINAL_ANSWER: &str = "Final Answer:";
const ACTION: &str = "Action:";
const ACTION_INPUT: &str = "Action Input:";
const OBSERVATION: &str = "Observation:";
const THOUGHT: &str = "Thought:";
const THINK_OPEN: &str = "<think>";
const THINK_CLOSE: &str = "</think>";

/// A reasoning block (`<think>...</think>`) at the start of the answer, as reasoning models
/// write it: not part of the answer, and markers inside it do not count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Think {
    /// Not known yet: the text so far is blank or a prefix of `<think>`.
    Undecided,
    /// Inside the block; `</think>` is searched from this byte on.
    Open(usize),
    /// No block, or the block ended: the answer proper starts at this byte.
    From(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before `Final Answer:`; the text is kept to classify it at the end.
    Preamble,
    /// Inside the final answer.
    Answer,
    /// `finish` or `fail` was called.
    Done,
}

/// Feed it the model's text deltas; it appends NDJSON event lines to `out`.
#[derive(Debug)]
pub struct ReactStreamParser {
    state: State,
    preamble: String,
    /// Bytes of `preamble` known not to start a `Final Answer:` marker.
    scanned: usize,
    think: Think,
    /// Answer whitespace held back until more text follows it.
    pending_ws: String,
    answer_started: bool,
    answer_chars: usize,
    /// The marker was bold (`**Final Answer:**`): its closing `**` is not part of the answer.
    /// Text is held here until it is known whether it starts with that `**`.
    bold_lead: Option<String>,
    /// GitLab 19.x: every `final_answer_delta` carries `finish_reason`, and a complete final
    /// answer ends with one `{"text": "", "finish_reason": <reason>}` delta.
    finish_field: bool,
    /// The platform's stop reason, when it said one.
    reason: Option<String>,
    /// The tools GitLab may run for this caller; an `action` naming another becomes GitLab's
    /// `tool not available` error. `None`: not checked.
    tools: Option<Vec<&'static str>>,
}

impl Default for ReactStreamParser {
    fn default() -> Self {
        Self::new()
    }
}

impl ReactStreamParser {
    pub fn new() -> Self {
        ReactStreamParser {
            state: State::Preamble,
            preamble: String::new(),
            scanned: 0,
            think: Think::Undecided,
            pending_ws: String::new(),
            answer_started: false,
            answer_chars: 0,
            bold_lead: None,
            finish_field: false,
            reason: None,
            tools: None,
        }
    }

    /// Only these tools may be named by an `action` (GitLab's gateway answers any other with
    /// `{"type": "error", "data": {"message": "tool not available", "retryable": false}}`).
    pub fn with_tools(mut self, tools: Vec<&'static str>) -> Self {
        self.tools = Some(tools);
        self
    }

    /// The parser for GitLab 19.x: deltas carry `finish_reason` (see [`Finish`]).
    pub fn with_finish_reason() -> Self {
        ReactStreamParser { finish_field: true, ..Self::new() }
    }

    /// The platform's reason for stopping (OpenAI's vocabulary); the last one said counts.
    pub fn set_finish_reason(&mut self, reason: &str) {
        self.reason = Some(reason.to_owned());
    }

    /// What the closing delta of a complete answer says: the platform's reason, or `stop`
    /// when the stream ended with its end marker but no reason (the answer is complete; a
    /// missing reason would make 19.x Rails warn that it was not).
    fn closing(&self) -> Finish {
        Finish::Reason(self.reason.clone().unwrap_or_else(|| "stop".to_owned()))
    }

    fn open(&self) -> Finish {
        if self.finish_field { Finish::Pending } else { Finish::Omitted }
    }

    /// One text delta of the model's answer.
    pub fn push(&mut self, text: &str, out: &mut Vec<u8>) {
        match self.state {
            State::Done => {}
            State::Answer => self.answer(text, out),
            State::Preamble => {
                self.preamble.push_str(text);
                let Some(start) = self.advance_think() else { return };
                // Only the part that may hold a new marker is searched: at most the marker's
                // length minus one old bytes, then the new text.
                let from = floor_boundary(&self.preamble, self.scanned.max(start));
                if let Some(at) = self.preamble[from..].find(FINAL_ANSWER) {
                    let at = from + at;
                    let rest = self.preamble[at + FINAL_ANSWER.len()..].to_owned();
                    if self.preamble[..at].ends_with("**") {
                        self.bold_lead = Some(String::new());
                    }
                    self.preamble.truncate(at);
                    self.state = State::Answer;
                    self.answer(&rest, out);
                } else {
                    self.scanned = self.preamble.len().saturating_sub(FINAL_ANSWER.len() - 1);
                }
            }
        }
    }

    /// The model's answer ended normally.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match self.state {
            State::Done => return,
            State::Answer => {
                if let Some(lead) = self.bold_lead.take() {
                    // Only a lone `*` can still be held: it was the answer.
                    self.answer(&lead, out);
                }
                if !self.answer_started {
                    AgentEvent::Error { message: "The model's final answer was empty".into(), retryable: true }
                        .write_to(out);
                } else if self.finish_field {
                    AgentEvent::FinalAnswerDelta { text: String::new(), finish: self.closing() }.write_to(out);
                }
            }
            State::Preamble => {
                let text = std::mem::take(&mut self.preamble);
                let mut event = match self.think {
                    // The reasoning is not shown; what follows it is the answer.
                    Think::From(start) if start > 0 => classify(&text[start..]),
                    // A reasoning block that never closed (cut by max_tokens): all there is.
                    _ => classify(&text),
                };
                // A direct answer is whole: its one delta is also the last.
                if let AgentEvent::FinalAnswerDelta { finish, .. } = &mut event
                    && self.finish_field
                {
                    *finish = self.closing();
                }
                if let AgentEvent::Action { tool, .. } = &event
                    && let Some(tools) = &self.tools
                    && !tools.contains(&tool.as_str())
                {
                    event = AgentEvent::Error { message: "tool not available".into(), retryable: false };
                }
                event.write_to(out);
            }
        }
        self.pending_ws.clear();
        self.state = State::Done;
    }

    /// The upstream failed after the response started; `event` is usually
    /// [`super::events::upstream_failure`]. Emits it (only if nothing ended the stream yet).
    pub fn fail(&mut self, event: AgentEvent, out: &mut Vec<u8>) {
        if self.state == State::Done {
            return;
        }
        event.write_to(out);
        self.preamble.clear();
        self.pending_ws.clear();
        self.state = State::Done;
    }

    /// Convenience for the adapter: `finish` when `ended_ok`, else `fail` with a retryable
    /// "stopped before complete" error.
    pub fn end(&mut self, ended_ok: bool, out: &mut Vec<u8>) {
        if ended_ok {
            self.finish(out);
        } else {
            self.fail(super::events::upstream_failure(None, b""), out);
        }
    }

    /// Whether a final answer started (its text is already on its way to GitLab).
    pub fn answer_started(&self) -> bool {
        self.answer_started
    }

    /// Characters of final answer emitted so far.
    pub fn answer_chars(&self) -> usize {
        self.answer_chars
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Tracks a leading reasoning block; returns where the answer proper starts, or `None`
    /// while inside (or maybe about to open) one.
    fn advance_think(&mut self) -> Option<usize> {
        loop {
            match self.think {
                Think::From(start) => return Some(start),
                Think::Undecided => {
                    let lead = self.preamble.len() - self.preamble.trim_start().len();
                    let rest = &self.preamble[lead..];
                    if rest.starts_with(THINK_OPEN) {
                        self.think = Think::Open(lead + THINK_OPEN.len());
                    } else if THINK_OPEN.starts_with(rest) {
                        return None;
                    } else {
                        self.think = Think::From(0);
                    }
                }
                Think::Open(from) => {
                    let from = floor_boundary(&self.preamble, from);
                    match self.preamble[from..].find(THINK_CLOSE) {
                        Some(at) => self.think = Think::From(from + at + THINK_CLOSE.len()),
                        None => {
                            self.think = Think::Open(self.preamble.len().saturating_sub(THINK_CLOSE.len() - 1));
                            return None;
                        }
                    }
                }
            }
        }
    }

    fn answer(&mut self, text: &str, out: &mut Vec<u8>) {
        let lead_text;
        let text = match self.bold_lead.as_mut() {
            Some(lead) => {
                lead.push_str(text);
                let t = lead.trim_start();
                if t.is_empty() || t == "*" {
                    return;
                }
                lead_text = t.strip_prefix("**").unwrap_or(t).to_owned();
                self.bold_lead = None;
                lead_text.as_str()
            }
            None => text,
        };
        let text = if self.answer_started { text } else { text.trim_start() };
        if text.is_empty() {
            return;
        }
        let mut combined = std::mem::take(&mut self.pending_ws);
        combined.push_str(text);
        let keep = combined.trim_end().len();
        if keep == 0 {
            self.pending_ws = combined;
            return;
        }
        self.pending_ws = combined[keep..].to_owned();
        combined.truncate(keep);
        self.answer_started = true;
        self.answer_chars += combined.chars().count();
        AgentEvent::FinalAnswerDelta { text: combined, finish: self.open() }.write_to(out);
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A complete answer without `Final Answer:`.
fn classify(raw: &str) -> AgentEvent {
    let text = raw.trim();
    if text.is_empty() {
        return AgentEvent::Error { message: "The model returned an empty answer".into(), retryable: true };
    }
    let body = text.strip_prefix(THOUGHT).unwrap_or(text);
    if let Some(a) = body.find(ACTION) {
        let thought = body[..a].trim();
        let after = &body[a + ACTION.len()..];
        let (tool_text, input) = match after.find(ACTION_INPUT) {
            Some(i) => (&after[..i], Some(&after[i + ACTION_INPUT.len()..])),
            None => (after, None),
        };
        let tool_line = tool_text.trim().lines().next().unwrap_or("");
        let tool = tool_name(tool_line);
        if tool.eq_ignore_ascii_case("DirectAnswer") {
            let answer = match input {
                Some(i) => cut_observation(i),
                None => tool_text.trim().split_once('\n').map(|(_, rest)| rest).unwrap_or(""),
            }
            .trim();
            if !answer.is_empty() {
                return AgentEvent::FinalAnswerDelta { text: answer.to_owned(), finish: Finish::Omitted };
            }
        } else if let Some(input) = input
            && !tool.is_empty()
        {
            return AgentEvent::Action {
                tool,
                tool_input: cut_observation(input).trim().to_owned(),
                thought: thought.replace("\\_", "_"),
            };
        }
    }
    AgentEvent::Unknown { text: text.to_owned() }
}

/// Generation should stop at `Observation:`; when a platform ignored the stop sequence, the
/// invented observation is not part of the tool input.
fn cut_observation(s: &str) -> &str {
    match s.find(OBSERVATION) {
        Some(i) => &s[..i],
        None => s,
    }
}

/// The tool name as GitLab knows it: unescaped, without markdown decoration, snake_case for
/// the one CamelCase slip older GitLab versions provoked.
fn tool_name(line: &str) -> String {
    let name = line
        .trim()
        .trim_matches(|c: char| matches!(c, '`' | '"' | '\'' | '*' | '[' | ']'))
        .trim()
        .replace("\\_", "_");
    if name == "MergeRequestReader" { "merge_request_reader".to_owned() } else { name }
}

#[cfg(test)]
pub(crate) mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use serde_json::Value;

    /// Parse `chunks` with a clean end; return the events as JSON values.
    pub(crate) fn run(chunks: &[&str]) -> Vec<Value> {
        let mut p = ReactStreamParser::new();
        let mut out = Vec::new();
        for c in chunks {
            p.push(c, &mut out);
        }
        p.finish(&mut out);
        lines(&out)
    }

    pub(crate) fn lines(out: &[u8]) -> Vec<Value> {
        let s = std::str::from_utf8(out).unwrap();
        assert!(s.is_empty() || s.ends_with('\n'), "every event ends its line: {s:?}");
        s.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// The concatenated final answer, and the other events.
    pub(crate) fn summarize(events: &[Value]) -> (String, Vec<Value>) {
        let mut answer = String::new();
        let mut others = Vec::new();
        for e in events {
            if e["type"] == "final_answer_delta" {
                let t = e["data"]["text"].as_str().unwrap();
                assert!(!t.is_empty() || e["data"]["finish_reason"].is_string(), "no empty deltas but the closing one");
                answer.push_str(t);
            } else {
                others.push(e.clone());
            }
        }
        (answer, others)
    }

    fn bytewise(s: &str) -> Vec<String> {
        s.chars().map(|c| c.to_string()).collect()
    }

    #[test]
    fn final_answer_streams_before_the_end() {
        let mut p = ReactStreamParser::new();
        let mut out = Vec::new();
        p.push("Thought: I know it.\nFinal Answer: The issue ", &mut out);
        assert_eq!(lines(&out), vec![serde_json::json!({"type": "final_answer_delta", "data": {"text": "The issue"}})]);
        out.clear();
        p.push("describes a bug.", &mut out);
        assert_eq!(lines(&out)[0]["data"]["text"], " describes a bug.");
        out.clear();
        p.push("\n\n", &mut out);
        assert!(out.is_empty(), "trailing whitespace waits");
        p.finish(&mut out);
        assert!(out.is_empty(), "and is dropped at the end");
        assert!(p.is_done());
    }

    #[test]
    fn for_19_every_delta_says_finish_reason_and_the_last_one_says_why() {
        use serde_json::json;
        let run19 = |chunks: &[&str], reason: Option<&str>| {
            let mut p = ReactStreamParser::with_finish_reason();
            let mut out = Vec::new();
            for c in chunks {
                p.push(c, &mut out);
            }
            if let Some(r) = reason {
                p.set_finish_reason(r);
            }
            p.finish(&mut out);
            lines(&out)
        };
        assert_eq!(
            run19(&["Thought: ok\nFinal Answer: Hel", "lo \n"], Some("length")),
            vec![
                json!({"type": "final_answer_delta", "data": {"text": "Hel", "finish_reason": null}}),
                json!({"type": "final_answer_delta", "data": {"text": "lo", "finish_reason": null}}),
                json!({"type": "final_answer_delta", "data": {"text": "", "finish_reason": "length"}}),
            ]
        );
        // the end marker came without a reason: the answer is complete all the same
        assert_eq!(run19(&["Final Answer: Hi"], None)[1], json!({"type": "final_answer_delta", "data": {"text": "", "finish_reason": "stop"}}));
        // a direct answer is one delta, the last
        assert_eq!(
            run19(&["Thought: easy\nAction: DirectAnswer\nAction Input: Yes."], Some("stop")),
            vec![json!({"type": "final_answer_delta", "data": {"text": "Yes.", "finish_reason": "stop"}})]
        );
        // actions, unknown text and errors do not change
        assert_eq!(
            run19(&["Thought: need it\nAction: issue_reader\nAction Input: #1"], Some("stop")),
            vec![json!({"type": "action", "data": {"tool": "issue_reader", "tool_input": "#1", "thought": "need it"}})]
        );
        assert_eq!(run19(&["just text"], Some("stop")), vec![json!({"type": "unknown", "data": {"text": "just text"}})]);
        assert_eq!(run19(&["Final Answer:  "], Some("stop"))[0]["type"], "error");
        // a broken stream ends with its error, no closing delta
        let mut p = ReactStreamParser::with_finish_reason();
        let mut out = Vec::new();
        p.push("Final Answer: part", &mut out);
        p.fail(AgentEvent::Error { message: "cut".into(), retryable: true }, &mut out);
        p.finish(&mut out);
        let events = lines(&out);
        assert_eq!(events.len(), 2);
        assert_eq!(events[1]["type"], "error");
        // 18.x: never the field
        let events = run(&["Final Answer: Hi"]);
        assert_eq!(events, vec![json!({"type": "final_answer_delta", "data": {"text": "Hi"}})]);
    }

    #[test]
    fn an_action_outside_the_offered_tools_is_gitlabs_tool_not_available() {
        let run_with = |text: &str| {
            let mut p = ReactStreamParser::new().with_tools(vec!["issue_reader", "gitlab_documentation"]);
            let mut out = Vec::new();
            p.push(text, &mut out);
            p.finish(&mut out);
            lines(&out)
        };
        assert_eq!(run_with("Thought: need it\nAction: issue_reader\nAction Input: #1")[0]["type"], "action");
        assert_eq!(
            run_with("Thought: need it\nAction: pipeline_reader\nAction Input: 7"),
            vec![serde_json::json!({"type": "error", "data": {"message": "tool not available", "retryable": false}})]
        );
        // GitLab's name repairs apply first; final answers and unknown text are not tool calls
        assert_eq!(run_with("Thought: x\nAction: issue\\_reader\nAction Input: #1")[0]["type"], "action");
        assert_eq!(run_with("Final Answer: use pipeline_reader")[0]["type"], "final_answer_delta");
        assert_eq!(run_with("Action: DirectAnswer\nAction Input: hi")[0]["type"], "final_answer_delta");
        // without a list, nothing is checked
        assert_eq!(run(&["Thought: x\nAction: pipeline_reader\nAction Input: 7"])[0]["type"], "action");
    }

    #[test]
    fn marker_split_across_chunks() {
        for split in 1..FINAL_ANSWER.len() {
            let (a, b) = FINAL_ANSWER.split_at(split);
            let mut p = ReactStreamParser::new();
            let mut out = Vec::new();
            p.push(&format!("Thought: ok\n{a}"), &mut out);
            assert!(out.is_empty());
            p.push(&format!("{b} Hello"), &mut out);
            assert_eq!(lines(&out)[0]["data"]["text"], "Hello", "split at {split}");
            p.push(" world", &mut out);
            p.finish(&mut out);
            let (answer, others) = summarize(&lines(&out));
            assert_eq!(answer, "Hello world");
            assert!(others.is_empty());
        }
    }

    #[test]
    fn byte_by_byte_answer_is_the_same() {
        let text = "Thought: I can answer directly.\nAction: DirectAnswer\nFinal Answer: Use `rules:` — ✓ done.\n\n```yaml\njob:\n  script: echo\n```\n";
        let chunks = bytewise(text);
        let events = run(&chunks.iter().map(String::as_str).collect::<Vec<_>>());
        let (answer, others) = summarize(&events);
        assert_eq!(answer, "Use `rules:` — ✓ done.\n\n```yaml\njob:\n  script: echo\n```");
        assert!(others.is_empty());
        assert!(events.len() > 10, "streamed in many deltas");
        assert_eq!(summarize(&run(&[text])).0, answer);
    }

    #[test]
    fn action_with_multiline_input() {
        let text = "Thought: The user wants issue #12 and its\ncomments.\nAction: issue_reader\nAction Input: Summarize\nissue #12 and\n  its comments\n";
        for chunks in [vec![text.to_owned()], bytewise(text)] {
            let events = run(&chunks.iter().map(String::as_str).collect::<Vec<_>>());
            assert_eq!(
                events,
                vec![serde_json::json!({"type": "action", "data": {
                    "tool": "issue_reader",
                    "tool_input": "Summarize\nissue #12 and\n  its comments",
                    "thought": "The user wants issue #12 and its\ncomments."}})]
            );
        }
    }

    #[test]
    fn action_after_prefilled_thought_and_decorated_names() {
        // With an assistant prefill ending in "Thought:", the model does not repeat it.
        let events = run(&[" I need the MR.\nAction: `merge\\_request\\_reader`\nAction Input: !7"]);
        assert_eq!(events[0]["data"]["tool"], "merge_request_reader");
        assert_eq!(events[0]["data"]["thought"], "I need the MR.");
        assert_eq!(run(&["Action: MergeRequestReader\nAction Input: !7"])[0]["data"]["tool"], "merge_request_reader");
    }

    #[test]
    fn invented_observation_is_cut_from_the_input() {
        let events = run(&["Thought: t\nAction: epic_reader\nAction Input: &5\nObservation: The epic says..."]);
        assert_eq!(events[0]["data"]["tool_input"], "&5");
    }

    #[test]
    fn final_answer_wins_over_an_action() {
        let events = run(&["Thought: t\nAction: issue_reader\nAction Input: #1\nFinal Answer: done"]);
        assert_eq!(summarize(&events), ("done".to_owned(), vec![]));
    }

    #[test]
    fn direct_answer_without_marker_is_an_answer() {
        let events = run(&["Thought: easy\nAction: DirectAnswer\nAction Input: Paris is the capital."]);
        assert_eq!(summarize(&events).0, "Paris is the capital.");
        let events = run(&["Thought: easy\nAction: DirectAnswer\nIt is 4."]);
        assert_eq!(summarize(&events).0, "It is 4.");
    }

    #[test]
    fn garbage_is_unknown_with_the_whole_text() {
        for text in ["Sure! GitLab CI is great.", "Action: issue_reader but no input", "Thought: hmm\nAction:\nAction Input: x", "{\"json\": true}\n"] {
            let events = run(&[text]);
            assert_eq!(events, vec![serde_json::json!({"type": "unknown", "data": {"text": text.trim()}})], "{text}");
        }
    }

    #[test]
    fn empty_answers_are_retryable_errors() {
        let events = run(&["  \n"]);
        assert_eq!(events[0]["type"], "error");
        assert_eq!(events[0]["data"]["retryable"], true);
        let events = run(&["Thought: x\nFinal Answer:   \n"]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["type"], "error");
        assert!(run(&[]).iter().all(|e| e["type"] == "error"));
    }

    #[test]
    fn failure_mid_answer_ends_with_one_error() {
        let mut p = ReactStreamParser::new();
        let mut out = Vec::new();
        p.push("Final Answer: The first half", &mut out);
        p.fail(AgentEvent::Error { message: "boom".into(), retryable: true }, &mut out);
        p.push(" more", &mut out);
        p.finish(&mut out);
        let events = lines(&out);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0]["data"]["text"], "The first half");
        assert_eq!(events[1], serde_json::json!({"type": "error", "data": {"message": "boom", "retryable": true}}));
    }

    #[test]
    fn failure_before_the_answer_drops_the_preamble() {
        let mut p = ReactStreamParser::new();
        let mut out = Vec::new();
        p.push("Thought: I need\nAction: issue_reader\nAction Inp", &mut out);
        p.end(false, &mut out);
        let events = lines(&out);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["type"], "error");
        assert_eq!(events[0]["data"]["retryable"], true);
    }

    #[test]
    fn reasoning_blocks_are_not_the_answer() {
        let text = "<think>The user wants X. Final Answer: maybe?</think>\nThought: ok\nFinal Answer: X it is.";
        for chunks in [vec![text.to_owned()], bytewise(text)] {
            let events = run(&chunks.iter().map(String::as_str).collect::<Vec<_>>());
            assert_eq!(summarize(&events), ("X it is.".to_owned(), vec![]));
        }
        let events = run(&["  <think>plan: use issue_reader</think>\nAction: issue_reader\nAction Input: #3"]);
        assert_eq!(events[0]["data"]["thought"], "", "reasoning is not the thought");
        assert_eq!(events[0]["data"]["tool"], "issue_reader");
        let events = run(&["<think>hmm</think>Just text."]);
        assert_eq!(events, vec![serde_json::json!({"type": "unknown", "data": {"text": "Just text."}})]);
        // Never closed: everything there is, as unknown.
        let events = run(&["<think>Final Answer: not yet"]);
        assert_eq!(events[0]["type"], "unknown");
        // Not at the start: ordinary text.
        assert_eq!(summarize(&run(&["Final Answer: use <think> tags"])).0, "use <think> tags");
    }

    #[test]
    fn bold_marker_closing_stars_are_dropped() {
        let text = "**Thought:** easy\n**Final Answer:** **Runners** run *jobs*.";
        for chunks in [vec![text.to_owned()], bytewise(text)] {
            let events = run(&chunks.iter().map(String::as_str).collect::<Vec<_>>());
            assert_eq!(summarize(&events).0, "**Runners** run *jobs*.");
        }
        // A plain marker keeps an answer that starts in bold.
        assert_eq!(summarize(&run(&["Final Answer: **Bold** start"])).0, "**Bold** start");
        // A lone star after a bold marker is still text.
        assert_eq!(summarize(&run(&["**Final Answer:** *"])).0, "*");
        assert_eq!(summarize(&run(&["**Final Answer:**", " *", "x*"])).0, "*x*");
    }

    #[test]
    fn marker_text_inside_the_answer_is_kept() {
        let events = run(&["Final Answer: write 'Final Answer:' at the end"]);
        assert_eq!(summarize(&events).0, "write 'Final Answer:' at the end");
    }

    #[test]
    fn multibyte_text_around_the_marker() {
        let text = "Thought: 日本語のテキスト\nFinal Answer: こんにちは 👋";
        let events = run(&bytewise(text).iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(summarize(&events).0, "こんにちは 👋");
    }
}

/// Re-chunking invariance: however the same text is split, the events say the same thing.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod props {
    use super::tests::{run, summarize};
    use proptest::prelude::*;

    fn split(text: &str, cuts: &[usize]) -> Vec<String> {
        let chars: Vec<char> = text.chars().collect();
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (chars.len() + 1)).collect();
        points.push(0);
        points.push(chars.len());
        points.sort_unstable();
        points.dedup();
        points.windows(2).map(|w| chars[w[0]..w[1]].iter().collect()).collect()
    }

    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("Thought: ".to_owned()),
            Just("Final Answer:".to_owned()),
            Just("Final Ans".to_owned()),
            Just("Action: ".to_owned()),
            Just("Action Input: ".to_owned()),
            Just("Observation:".to_owned()),
            Just("issue_reader".to_owned()),
            Just("<think>".to_owned()),
            Just("</think>".to_owned()),
            Just("<thi".to_owned()),
            Just("**".to_owned()),
            Just("*".to_owned()),
            Just("\n".to_owned()),
            Just("  ".to_owned()),
            Just("é✓👋".to_owned()),
            "[a-zA-Z :#\n]{0,12}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn events_do_not_depend_on_chunking(
            pieces in proptest::collection::vec(piece(), 0..24),
            cuts in proptest::collection::vec(0usize..400, 0..30),
        ) {
            let text: String = pieces.concat();
            let whole = summarize(&run(&[text.as_str()]));
            let chunks = split(&text, &cuts);
            let parts = summarize(&run(&chunks.iter().map(String::as_str).collect::<Vec<_>>()));
            prop_assert_eq!(whole, parts);
        }
    }
}
