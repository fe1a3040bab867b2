//! GitLab's streaming framings, written chunk by chunk as text arrives (nothing is held back).
//!
//! | framing | GitLab endpoints | body |
//! |---|---|---|
//! | [`RawText`] | `/v2/code/completions`, `/v2/code/generations`, `/v1/prompts/*`, `/v1/chat/*` | the model's text as is, labelled `text/event-stream` |
//! | [`PromptResponses`] | `/v2/prompts/*` | one `PromptResponse` JSON object per line: `{"content":"<delta>"}`; usage, when known, in a last `{"content":"","usage":{...}}` |
//! | [`SuggestionsSse`] | `/v4/code/suggestions` | real SSE: `stream_start`, `content_chunk`..., `stream_end` |
//!
//! [`FenceLines`] wraps a framing for GitLab 19.x generation streams: the text goes on line by
//! line with Markdown fence lines removed, as GitLab's newer gateway streams generations.
//!
//! None of the three has an error message GitLab understands in the middle of a stream, so a
//! broken stream must be reset by the adapter (they return `false` from [`Reframer::broken`]).
//! `/v2/chat/agent` (NDJSON `action`/`final_answer_delta`/`error` events) is another
//! [`Reframer`] (`crate::chat::ChatAgentReframer`); its `broken` writes the `error` event and
//! returns `true`.

use duo_llm::Usage;
use duo_llm::stream::Reframer;
use serde::Serialize;

/// The selection of built-in framings, by GitLab endpoint (see the module table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Raw text chunks, `text/event-stream` label, not SSE-framed.
    RawText,
    /// `/v2/prompts/*`: newline-terminated `PromptResponse` objects. `usage_model` is the key
    /// of the `usage` map (GitLab's model name); without it usage is not written.
    PromptResponses { usage_model: Option<String> },
    /// `/v4/code/suggestions`: SSE with `stream_start` metadata (model, timestamp, GitLab's
    /// enabled feature flags).
    SuggestionsSse { engine: String, name: String, timestamp: u64, feature_flags: Vec<String> },
}

impl Framing {
    /// The stream translator for `api` on `platform` writing this framing.
    pub fn translator(self, platform: duo_llm::Platform, api: duo_llm::Api) -> duo_llm::stream::StreamTranslator {
        duo_llm::stream::StreamTranslator::new(platform, api, self.into_reframer())
    }

    pub fn into_reframer(self) -> Box<dyn Reframer> {
        match self {
            Framing::RawText => Box::new(RawText),
            Framing::PromptResponses { usage_model } => Box::new(PromptResponses { usage_model }),
            Framing::SuggestionsSse { engine, name, timestamp, feature_flags } => {
                Box::new(SuggestionsSse { engine, name, timestamp, feature_flags })
            }
        }
    }
}

pub struct RawText;

impl Reframer for RawText {
    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(text.as_bytes());
    }
}

/// Appends `s` as a JSON string literal.
pub fn push_json_str(s: &str, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail and a str always serializes.
    let _ = serde_json::to_writer(&mut *out, s);
}

pub struct PromptResponses {
    usage_model: Option<String>,
}

#[derive(Serialize)]
struct TokenUsage {
    #[serde(skip_serializing_if = "Option::is_none")]
    input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_tokens: Option<u64>,
}

impl Reframer for PromptResponses {
    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"content\":");
        push_json_str(text, out);
        out.extend_from_slice(b"}\n");
    }

    fn complete(&mut self, usage: &Usage, out: &mut Vec<u8>) {
        let Some(model) = &self.usage_model else { return };
        if usage.input_tokens.is_none() && usage.output_tokens.is_none() {
            return;
        }
        out.extend_from_slice(b"{\"content\":\"\",\"usage\":{");
        push_json_str(model, out);
        out.push(b':');
        let _ = serde_json::to_writer(
            &mut *out,
            &TokenUsage { input_tokens: usage.input_tokens, output_tokens: usage.output_tokens },
        );
        out.extend_from_slice(b"}}\n");
    }
}

/// GitLab 19.x generation streams: whole lines only, each without a Markdown fence-opening line
/// or trailing backticks (`crate::codec::generation::strip_code_block_markdown`); the last,
/// unfinished line goes when the stream completes or breaks. Holds back at most one line.
pub struct FenceLines {
    inner: Box<dyn Reframer>,
    line: String,
}

impl FenceLines {
    pub fn new(inner: Box<dyn Reframer>) -> Self {
        FenceLines { inner, line: String::new() }
    }

    fn pass(&mut self, piece: &str, out: &mut Vec<u8>) {
        let piece = crate::codec::generation::strip_code_block_markdown(piece);
        if !piece.is_empty() {
            self.inner.text(&piece, out);
        }
    }

    fn flush(&mut self, out: &mut Vec<u8>) {
        let rest = std::mem::take(&mut self.line);
        if !rest.is_empty() {
            self.pass(&rest, out);
        }
    }
}

impl Reframer for FenceLines {
    fn content_type(&self) -> &'static str {
        self.inner.content_type()
    }

    fn extra_headers(&self) -> &'static [(&'static str, &'static str)] {
        self.inner.extra_headers()
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        self.inner.start(out);
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        self.line.push_str(text);
        while let Some(nl) = self.line.find('\n') {
            let line: String = self.line.drain(..=nl).collect();
            self.pass(&line, out);
        }
    }

    fn finish_reason(&mut self, reason: &str, out: &mut Vec<u8>) {
        self.inner.finish_reason(reason, out);
    }

    fn complete(&mut self, usage: &Usage, out: &mut Vec<u8>) {
        self.flush(out);
        self.inner.complete(usage, out);
    }

    fn broken(&mut self, reason: &duo_llm::stream::StreamError, out: &mut Vec<u8>) -> bool {
        // GitLab's gateway sends what it holds before the error ends the stream.
        self.flush(out);
        self.inner.broken(reason, out)
    }
}

pub struct SuggestionsSse {
    engine: String,
    name: String,
    timestamp: u64,
    feature_flags: Vec<String>,
}

impl Reframer for SuggestionsSse {
    fn extra_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[("x-streaming-format", "sse")]
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"event: stream_start\ndata: {\"metadata\":{\"model\":{\"engine\":");
        push_json_str(&self.engine, out);
        out.extend_from_slice(b",\"name\":");
        push_json_str(&self.name, out);
        out.extend_from_slice(b"},\"timestamp\":");
        out.extend_from_slice(self.timestamp.to_string().as_bytes());
        out.extend_from_slice(b",\"enabled_feature_flags\":");
        let _ = serde_json::to_writer(&mut *out, &self.feature_flags);
        out.extend_from_slice(b"}}\n\n");
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        // JSON escapes every line break, so the data stays on one line.
        out.extend_from_slice(b"event: content_chunk\ndata: {\"choices\":[{\"delta\":{\"content\":");
        push_json_str(text, out);
        out.extend_from_slice(b"},\"index\":0}]}\n\n");
    }

    fn complete(&mut self, _usage: &Usage, out: &mut Vec<u8>) {
        out.extend_from_slice(b"event: stream_end\ndata: null\n\n");
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use duo_llm::stream::{Dialect, Ended, StreamError};
    use duo_llm::{Api, Platform, sample};

    fn usage(i: u64, o: u64) -> Usage {
        Usage::known(Some(i), Some(o), None)
    }

    /// The whole stream through `framing`, whole and split at every offset (same output).
    fn translate(framing: &Framing, platform: Platform, api: Api, body: &[u8]) -> (String, Ended) {
        let run = |parts: &[&[u8]]| {
            let mut t = framing.clone().translator(platform, api);
            let mut out = Vec::new();
            for p in parts {
                let _ = t.push(p, &mut out);
            }
            let ended = t.finish(&mut out);
            (String::from_utf8(out).unwrap(), ended)
        };
        let whole = run(&[body]);
        for i in 0..=body.len() {
            let (a, b) = body.split_at(i);
            assert_eq!(run(&[a, b]), whole, "split at {i}");
        }
        whole
    }

    #[test]
    fn prompt_responses_over_converse_carry_usage_last() {
        let body = sample::stream(Dialect::Converse, &["Hello", " world"], usage(12, 2)).unwrap();
        let framing = Framing::PromptResponses { usage_model: Some("claude_3".into()) };
        let (text, ended) = translate(&framing, Platform::Bedrock, Api::Converse, &body);
        assert_eq!(ended, Ended::Complete);
        assert_eq!(
            text,
            "{\"content\":\"Hello\"}\n{\"content\":\" world\"}\n{\"content\":\"\",\"usage\":{\"claude_3\":{\"input_tokens\":12,\"output_tokens\":2}}}\n"
        );
    }

    #[test]
    fn suggestions_sse_over_vllm_ends_only_when_the_stream_is_complete() {
        let framing = Framing::SuggestionsSse { engine: "vllm".into(), name: "codestral".into(), timestamp: 5, feature_flags: vec!["f1".into()] };
        let body = sample::stream(Dialect::OpenAi, &["\n        self.speed += inc"], usage(3, 4)).unwrap();
        let (text, ended) = translate(&framing, Platform::Vllm, Api::Completions, &body);
        assert_eq!(ended, Ended::Complete);
        assert!(text.starts_with("event: stream_start\ndata: {\"metadata\":{\"model\":{\"engine\":\"vllm\",\"name\":\"codestral\"},\"timestamp\":5,\"enabled_feature_flags\":[\"f1\"]}}\n\n"), "{text}");
        assert!(text.contains("event: content_chunk\ndata: {\"choices\":[{\"delta\":{\"content\":\"\\n        self.speed += inc\"},\"index\":0}]}\n\n"));
        assert!(text.ends_with("event: stream_end\ndata: null\n\n"));
        let (text, ended) = translate(&framing, Platform::Vllm, Api::Completions, &body[..body.len() - 10]);
        assert_eq!(ended, Ended::Broken(StreamError::Truncated));
        assert!(!text.contains("stream_end"));
    }

    #[test]
    fn fence_lines_pass_whole_lines_without_fences() {
        let mut r = FenceLines::new(Framing::RawText.into_reframer());
        let mut out = Vec::new();
        r.start(&mut out);
        for piece in ["``", "`go\nfunc ", "f() {\n", "}\n``", "`"] {
            r.text(piece, &mut out);
        }
        assert_eq!(String::from_utf8(out.clone()).unwrap(), "func f() {\n}\n", "the last line waits");
        r.complete(&Usage::default(), &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "func f() {\n}\n", "a closing fence is nothing");
        // over the SSE framing, through a real stream, split anywhere
        let body = sample::stream(Dialect::OpenAi, &["```python\nx = 1", "\ny = 2\n```"], usage(1, 1)).unwrap();
        let framing = Framing::SuggestionsSse { engine: "agent".into(), name: "g".into(), timestamp: 1, feature_flags: Vec::new() };
        for split in 0..=body.len() {
            let mut t = duo_llm::stream::StreamTranslator::new(Platform::Vllm, Api::Chat, Box::new(FenceLines::new(framing.clone().into_reframer())));
            let mut out = Vec::new();
            let (a, b) = body.split_at(split);
            let _ = t.push(a, &mut out);
            let _ = t.push(b, &mut out);
            assert_eq!(t.finish(&mut out), Ended::Complete);
            let text = String::from_utf8(out).unwrap();
            let chunks: Vec<&str> = text.matches("\"content\":").collect();
            assert_eq!(chunks.len(), 2, "{text}");
            assert!(text.contains("{\"content\":\"x = 1\\n\"}") && text.contains("{\"content\":\"y = 2\\n\"}"), "{text}");
            assert!(!text.contains("```") && text.ends_with("event: stream_end\ndata: null\n\n"), "{text}");
        }
        // a broken stream: what was held goes first, then (no error event here) a reset
        let mut r = FenceLines::new(Framing::RawText.into_reframer());
        let mut out = Vec::new();
        r.text("partial", &mut out);
        assert!(!r.broken(&StreamError::Truncated, &mut out));
        assert_eq!(out, b"partial");
    }

    #[test]
    fn raw_text_is_the_text() {
        let mut r = Framing::RawText.into_reframer();
        let mut out = Vec::new();
        r.start(&mut out);
        r.text("a\n\"b\"", &mut out);
        r.complete(&Usage::default(), &mut out);
        assert_eq!(out, b"a\n\"b\"");
        assert_eq!(r.content_type(), "text/event-stream; charset=utf-8");
        assert!(!r.broken(&StreamError::Truncated, &mut out));
        assert_eq!(out, b"a\n\"b\"");
    }

    #[test]
    fn prompt_responses_are_one_json_object_per_line() {
        let mut r = Framing::PromptResponses { usage_model: Some("mistral".into()) }.into_reframer();
        let mut out = Vec::new();
        r.start(&mut out);
        r.text("line1\nline2 \u{1F44B}", &mut out);
        r.text("\"q\"", &mut out);
        r.complete(&Usage { input_tokens: Some(3), output_tokens: Some(4), total_tokens: Some(7) }, &mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(text.ends_with('\n'));
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], serde_json::json!({"content": "line1\nline2 \u{1F44B}"}));
        assert_eq!(lines[1], serde_json::json!({"content": "\"q\""}));
        assert_eq!(lines[2], serde_json::json!({"content": "", "usage": {"mistral": {"input_tokens": 3, "output_tokens": 4}}}));
        // no model name or no usage: no usage line
        let mut r = Framing::PromptResponses { usage_model: None }.into_reframer();
        let mut out = Vec::new();
        r.complete(&Usage { input_tokens: Some(3), ..Usage::default() }, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn suggestions_sse_has_start_chunks_and_end() {
        let mut r = Framing::SuggestionsSse { engine: "vllm".into(), name: "codestral".into(), timestamp: 1732121183, feature_flags: Vec::new() }.into_reframer();
        let mut out = Vec::new();
        r.start(&mut out);
        r.text("\ndef hello_", &mut out);
        r.complete(&Usage::default(), &mut out);
        let mut events = Vec::new();
        let mut d = duo_llm::stream::sse::SseDecoder::new();
        d.feed(&out, |e| {
            events.push((String::from_utf8(e.event.to_vec()).unwrap(), serde_json::from_slice::<serde_json::Value>(e.data).unwrap()));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            events,
            vec![
                ("stream_start".to_owned(), serde_json::json!({"metadata": {"model": {"engine": "vllm", "name": "codestral"}, "timestamp": 1732121183, "enabled_feature_flags": []}})),
                ("content_chunk".to_owned(), serde_json::json!({"choices": [{"delta": {"content": "\ndef hello_"}, "index": 0}]})),
                ("stream_end".to_owned(), serde_json::Value::Null),
            ]
        );
        assert_eq!(r.extra_headers(), &[("x-streaming-format", "sse")]);
    }
}
