//! StreamTranslator over the fixtures (tests/data/stream/): whole, byte by byte, split at every
//! offset, cut at every offset, corrupted.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::eventstream::{HeaderValue, encode_event, encode_exception, encode_message};
use super::*;
use base64::Engine as _;

const VLLM_CHAT: &[u8] = include_bytes!("../../tests/data/stream/vllm_chat.sse");
const VLLM_COMPLETIONS: &[u8] = include_bytes!("../../tests/data/stream/vllm_completions.sse");
const VLLM_INBAND_ERROR: &[u8] = include_bytes!("../../tests/data/stream/vllm_inband_error.sse");
const AZURE_CHAT: &[u8] = include_bytes!("../../tests/data/stream/azure_chat.sse");
const AZURE_FILTER: &[u8] = include_bytes!("../../tests/data/stream/azure_content_filter.sse");
const CONVERSE_TEXT: &[u8] = include_bytes!("../../tests/data/stream/converse_stream_text.bin");
const CONVERSE_THROTTLED: &[u8] = include_bytes!("../../tests/data/stream/converse_stream_midstream_throttling.bin");
const INVOKE_ANTHROPIC: &[u8] = include_bytes!("../../tests/data/stream/invoke_stream_anthropic.bin");

#[derive(Debug, PartialEq, Eq)]
struct Run {
    out: Vec<u8>,
    ended: Ended,
    usage: Usage,
    first_text: bool,
    /// Index of the first chunk whose push returned an error.
    first_err: Option<usize>,
    finish_reason: Option<String>,
    response_model: Option<String>,
}

/// The framings these tests use: the plain text, and one with an in-band error event.
#[derive(Clone, Copy, Debug)]
enum Framing {
    RawText,
    Events,
}

impl Framing {
    fn reframer(self) -> Box<dyn Reframer> {
        match self {
            Framing::RawText => Box::new(PlainText),
            Framing::Events => Box::new(Events),
        }
    }
}

fn run(platform: Platform, api: Api, framing: Framing, chunks: &[&[u8]]) -> Run {
    let mut t = StreamTranslator::new(platform, api, framing.reframer());
    let mut out = Vec::new();
    let mut first_err = None;
    for (i, c) in chunks.iter().enumerate() {
        let before = out.len();
        let r = t.push(c, &mut out);
        if r.is_err() && first_err.is_none() {
            first_err = Some(i);
        } else if first_err.is_some() {
            assert!(r.is_err(), "a broken stream stays broken");
            assert_eq!(out.len(), before, "nothing is written after the break");
        }
    }
    let ended = t.finish(&mut out);
    let mut again = Vec::new();
    assert_eq!(t.finish(&mut again), ended, "finish is idempotent");
    assert!(again.is_empty());
    let finish_reason = t.finish_reason().map(str::to_owned);
    let response_model = t.response_model().map(str::to_owned);
    Run { out, ended, usage: t.usage(), first_text: t.first_text_seen(), first_err, finish_reason, response_model }
}

fn raw(platform: Platform, api: Api, body: &[u8]) -> Run {
    run(platform, api, Framing::RawText, &[body])
}

/// Whole, byte by byte, and split in two at every offset all give the same output.
fn assert_chunking_invariant(platform: Platform, api: Api, framing: &Framing, body: &[u8]) -> Run {
    let whole = run(platform, api, *framing, &[body]);
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    let by_byte = run(platform, api, *framing, &bytes);
    assert_eq!((&by_byte.out, &by_byte.ended, by_byte.usage), (&whole.out, &whole.ended, whole.usage), "byte by byte");
    assert_eq!((&by_byte.finish_reason, &by_byte.response_model), (&whole.finish_reason, &whole.response_model), "byte by byte");
    for i in 0..=body.len() {
        let (a, b) = body.split_at(i);
        let split = run(platform, api, *framing, &[a, b]);
        assert_eq!((&split.out, &split.ended, split.usage), (&whole.out, &whole.ended, whole.usage), "split at {i}");
    }
    whole
}

fn usage(i: u64, o: u64, t: u64) -> Usage {
    Usage { input_tokens: Some(i), output_tokens: Some(o), total_tokens: Some(t) }
}

#[test]
fn vllm_chat_sse_to_raw_text() {
    let r = assert_chunking_invariant(Platform::Vllm, Api::Chat, &Framing::RawText, VLLM_CHAT);
    assert_eq!(String::from_utf8(r.out).unwrap(), "def add(a, b):\n    return a + b  # \"sum\" é\u{1F600}");
    assert_eq!(r.ended, Ended::Complete);
    assert_eq!(r.usage, usage(21, 15, 36));
    assert!(r.first_text);
    assert_eq!((r.finish_reason.as_deref(), r.response_model.as_deref()), (Some("stop"), Some("codestral")));
}

#[test]
fn vllm_completions_sse_to_raw_text() {
    let r = assert_chunking_invariant(Platform::Vllm, Api::Completions, &Framing::RawText, VLLM_COMPLETIONS);
    assert_eq!(String::from_utf8(r.out).unwrap(), " -> None:\n        self.speed += inc");
    assert_eq!(r.ended, Ended::Complete);
    assert_eq!(r.usage, usage(40, 8, 48));
    assert_eq!(r.finish_reason.as_deref(), Some("length"));
}

#[test]
fn azure_skips_filter_result_chunks_and_reads_usage() {
    let r = assert_chunking_invariant(Platform::AzureOpenai, Api::Chat, &Framing::RawText, AZURE_CHAT);
    assert_eq!(String::from_utf8(r.out).unwrap(), "Hello there");
    assert_eq!(r.ended, Ended::Complete);
    assert_eq!(r.usage, usage(9, 2, 11));
    // The prompt-filter chunk before the answer names no model ("").
    assert_eq!((r.finish_reason.as_deref(), r.response_model.as_deref()), (Some("stop"), Some("gpt-4o-2024-08-06")));
}

#[test]
fn azure_content_filter_cut_is_broken() {
    let r = assert_chunking_invariant(Platform::AzureOpenai, Api::Chat, &Framing::RawText, AZURE_FILTER);
    assert_eq!(r.out, b"Some");
    assert_eq!(r.ended, Ended::Broken(StreamError::ContentFiltered));
    assert_eq!(r.finish_reason.as_deref(), Some("content_filter"));
}

#[test]
fn vllm_in_band_error_breaks_the_stream_even_though_done_follows() {
    let r = assert_chunking_invariant(Platform::Vllm, Api::Chat, &Framing::RawText, VLLM_INBAND_ERROR);
    assert_eq!(r.out, b"Partial");
    assert_eq!(
        r.ended,
        Ended::Broken(StreamError::UpstreamError { code: Some("500".into()), message: "The engine died unexpectedly.".into() })
    );
    assert_eq!(r.first_err, Some(0));
    if let Ended::Broken(e) = &r.ended {
        assert_eq!(e.log_reason(), "stream_error:500");
        assert!(!e.log_reason().contains("engine"), "log reason carries no upstream text");
    }
}

#[test]
fn other_in_band_error_shapes() {
    let flat = b"data: {\"object\":\"error\",\"message\":\"bad\",\"type\":\"BadRequestError\",\"param\":null,\"code\":400}\n\n";
    assert_eq!(
        raw(Platform::Vllm, Api::Chat, flat).ended,
        Ended::Broken(StreamError::UpstreamError { code: Some("400".into()), message: "bad".into() })
    );
    let azure = b"data: {\"error\":{\"code\":\"429\",\"message\":\"Requests exceeded token rate limit\"}}\n\n";
    assert_eq!(
        raw(Platform::AzureOpenai, Api::Chat, azure).ended,
        Ended::Broken(StreamError::UpstreamError { code: Some("429".into()), message: "Requests exceeded token rate limit".into() })
    );
    let event = b"event: error\ndata: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n";
    assert_eq!(
        raw(Platform::OpenaiCompatible, Api::Chat, event).ended,
        Ended::Broken(StreamError::UpstreamError { code: Some("server_error".into()), message: "overloaded".into() })
    );
    let text = b"event: error\ndata: upstream went away\n\n";
    assert_eq!(
        raw(Platform::OpenaiCompatible, Api::Chat, text).ended,
        Ended::Broken(StreamError::UpstreamError { code: None, message: "upstream went away".into() })
    );
    // `"error": null` is not an error
    let null = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"}}],\"error\":null}\n\ndata: [DONE]\n\n";
    let r = raw(Platform::Vllm, Api::Chat, null);
    assert_eq!((r.out.as_slice(), r.ended), (&b"ok"[..], Ended::Complete));
}

#[test]
fn a_stream_without_done_is_truncated_and_never_complete() {
    for body in [VLLM_CHAT, VLLM_COMPLETIONS, AZURE_CHAT] {
        let full = raw(Platform::Vllm, Api::Chat, body);
        assert_eq!(full.ended, Ended::Complete);
        // `data: [DONE]` counts once its blank line ends (a CR alone ends a line)
        let closed_at = body.len() - usize::from(body.ends_with(b"\r\n\r\n"));
        for cut in 0..=body.len() {
            let r = raw(Platform::Vllm, Api::Chat, &body[..cut]);
            if cut >= closed_at {
                assert_eq!(r.ended, Ended::Complete, "cut at {cut}");
            } else {
                assert_eq!(r.ended, Ended::Broken(StreamError::Truncated), "cut at {cut}");
            }
            assert!(full.out.starts_with(&r.out), "cut at {cut}: text is a prefix of the whole text");
        }
    }
}

#[test]
fn empty_and_garbage_bodies_are_broken() {
    assert_eq!(raw(Platform::Vllm, Api::Chat, b"").ended, Ended::Broken(StreamError::Truncated));
    assert!(matches!(raw(Platform::Vllm, Api::Chat, b"data: {not json\n\n").ended, Ended::Broken(StreamError::Malformed(_))));
    assert!(matches!(raw(Platform::Bedrock, Api::Converse, VLLM_CHAT).ended, Ended::Broken(StreamError::BadPreludeCrc)));
    // a non-stream JSON answer given to the stream translator is not a stream
    let json = br#"{"id":"x","choices":[{"message":{"content":"hi"}}]}"#;
    assert_eq!(raw(Platform::Vllm, Api::Chat, json).ended, Ended::Broken(StreamError::Truncated));
}

#[test]
fn bytes_after_the_end_marker_are_ignored() {
    let mut body = VLLM_CHAT.to_vec();
    body.extend_from_slice(b"data: {\"error\":{\"message\":\"late\"}}\n\ngarbage");
    let r = raw(Platform::Vllm, Api::Chat, &body);
    assert_eq!(r.ended, Ended::Complete);
    let mut body = CONVERSE_TEXT.to_vec();
    body.extend_from_slice(b"\0\0\0\0garbage-after-the-end");
    assert_eq!(raw(Platform::Bedrock, Api::Converse, &body).ended, Ended::Complete);
}

#[test]
fn converse_stream_text_and_usage() {
    let r = assert_chunking_invariant(Platform::Bedrock, Api::Converse, &Framing::RawText, CONVERSE_TEXT);
    assert_eq!(r.out, b"Hello world");
    assert_eq!(r.ended, Ended::Complete);
    assert_eq!(r.usage, usage(12, 2, 14));
    // Bedrock's end_turn in OpenAI's words; Converse never names the model.
    assert_eq!((r.finish_reason.as_deref(), r.response_model.as_deref()), (Some("stop"), None));
}

/// Offsets where each event-stream message ends.
fn message_ends(body: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut at = 0;
    while at + 4 <= body.len() {
        let total = u32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]) as usize;
        at += total;
        ends.push(at);
    }
    ends
}

#[test]
fn converse_needs_message_stop_and_metadata() {
    let ends = message_ends(CONVERSE_TEXT);
    assert_eq!(ends.len(), 6);
    for cut in 0..CONVERSE_TEXT.len() {
        let r = raw(Platform::Bedrock, Api::Converse, &CONVERSE_TEXT[..cut]);
        assert_eq!(r.ended, Ended::Broken(StreamError::Truncated), "cut at {cut}");
        let want: &[u8] = if cut >= ends[2] {
            b"Hello world"
        } else if cut >= ends[1] {
            b"Hello"
        } else {
            b""
        };
        assert_eq!(r.out, want, "cut at {cut}");
    }
    // messageStop without metadata is still not complete
    let r = raw(Platform::Bedrock, Api::Converse, &CONVERSE_TEXT[..ends[4]]);
    assert_eq!(r.ended, Ended::Broken(StreamError::Truncated));
}

#[test]
fn converse_midstream_throttling_exception() {
    let r = assert_chunking_invariant(Platform::Bedrock, Api::Converse, &Framing::RawText, CONVERSE_THROTTLED);
    assert_eq!(
        r.ended,
        Ended::Broken(StreamError::UpstreamException {
            kind: "throttlingException".into(),
            message: "Too many tokens, please wait before trying again.".into()
        })
    );
    assert!(r.out.is_empty());
    assert!(!r.first_text);
    if let Ended::Broken(e) = r.ended {
        assert_eq!(e.log_reason(), "stream_exception:throttlingException");
    }
    // after text: the text already written stays, the stream is broken
    let ends = message_ends(CONVERSE_TEXT);
    let mut body = CONVERSE_TEXT[..ends[2]].to_vec();
    encode_exception("modelStreamErrorException", br#"{"message":"model failed","originalStatusCode":500}"#, &mut body).unwrap();
    body.extend_from_slice(&CONVERSE_TEXT[ends[2]..]);
    let r = run(Platform::Bedrock, Api::Converse, Framing::RawText, &[&body[..ends[1]], &body[ends[1]..]]);
    assert_eq!(r.out, b"Hello world");
    assert_eq!(r.first_err, Some(1));
    assert!(matches!(r.ended, Ended::Broken(StreamError::UpstreamException { ref kind, .. }) if kind == "modelStreamErrorException"));
}

#[test]
fn crc_corruption_breaks_the_stream_at_the_bad_message() {
    let ends = message_ends(CONVERSE_TEXT);
    // a payload byte of the third message (" world")
    let mut bad = CONVERSE_TEXT.to_vec();
    bad[ends[2] - 10] ^= 0x01;
    let r = assert_chunking_invariant(Platform::Bedrock, Api::Converse, &Framing::RawText, &bad);
    assert_eq!(r.out, b"Hello");
    assert_eq!(r.ended, Ended::Broken(StreamError::BadMessageCrc));
    // a length byte of the fourth message's prelude
    let mut bad = CONVERSE_TEXT.to_vec();
    bad[ends[2] + 3] ^= 0x01;
    let r = assert_chunking_invariant(Platform::Bedrock, Api::Converse, &Framing::RawText, &bad);
    assert_eq!(r.out, b"Hello world");
    assert_eq!(r.ended, Ended::Broken(StreamError::BadPreludeCrc));
    // every single flipped bit of every byte breaks the stream (never Complete)
    for i in 0..CONVERSE_TEXT.len() {
        let mut bad = CONVERSE_TEXT.to_vec();
        bad[i] ^= 0x80;
        let r = raw(Platform::Bedrock, Api::Converse, &bad);
        assert!(!r.ended.is_complete(), "flip at {i}");
    }
}

#[test]
fn bedrock_error_message_type() {
    let mut body = Vec::new();
    encode_event("messageStart", br#"{"role":"assistant"}"#, &mut body).unwrap();
    encode_message(
        &[
            (":message-type", HeaderValue::String("error")),
            (":error-code", HeaderValue::String("InternalFailure")),
            (":error-message", HeaderValue::String("An internal error occurred")),
        ],
        b"",
        &mut body,
    )
    .unwrap();
    let r = raw(Platform::Bedrock, Api::Converse, &body);
    assert_eq!(
        r.ended,
        Ended::Broken(StreamError::UpstreamError { code: Some("InternalFailure".into()), message: "An internal error occurred".into() })
    );
    // a message without :message-type is not Bedrock's
    let mut body = Vec::new();
    encode_message(&[(":event-type", HeaderValue::String("messageStart"))], b"{}", &mut body).unwrap();
    assert!(matches!(raw(Platform::Bedrock, Api::Converse, &body).ended, Ended::Broken(StreamError::Malformed(_))));
}

#[test]
fn converse_guardrail_and_non_text_blocks() {
    let mut body = Vec::new();
    encode_event("messageStart", br#"{"role":"assistant"}"#, &mut body).unwrap();
    encode_event("contentBlockDelta", br#"{"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"hmm"}}}"#, &mut body).unwrap();
    encode_event("contentBlockStart", br#"{"contentBlockIndex":1,"start":{"toolUse":{"toolUseId":"t","name":"f"}}}"#, &mut body).unwrap();
    encode_event("contentBlockDelta", br#"{"contentBlockIndex":1,"delta":{"toolUse":{"input":"{\"x\":1}"}}}"#, &mut body).unwrap();
    encode_event("contentBlockDelta", br#"{"contentBlockIndex":2,"delta":{"text":"visible"}}"#, &mut body).unwrap();
    let mut ok = body.clone();
    encode_event("messageStop", br#"{"stopReason":"end_turn"}"#, &mut ok).unwrap();
    encode_event("metadata", br#"{"usage":{"inputTokens":5,"outputTokens":6,"totalTokens":11},"metrics":{"latencyMs":3}}"#, &mut ok).unwrap();
    let r = raw(Platform::Bedrock, Api::Converse, &ok);
    assert_eq!((r.out.as_slice(), &r.ended, r.usage), (&b"visible"[..], &Ended::Complete, usage(5, 6, 11)));
    encode_event("messageStop", br#"{"stopReason":"guardrail_intervened"}"#, &mut body).unwrap();
    assert_eq!(raw(Platform::Bedrock, Api::Converse, &body).ended, Ended::Broken(StreamError::ContentFiltered));
}

#[test]
fn invoke_anthropic_stream() {
    let r = assert_chunking_invariant(Platform::Bedrock, Api::Invoke, &Framing::RawText, INVOKE_ANTHROPIC);
    assert_eq!(r.out, b"Hello");
    assert_eq!(r.ended, Ended::Complete);
    assert_eq!(r.usage, usage(12, 2, 14));
    assert_eq!((r.finish_reason.as_deref(), r.response_model.as_deref()), (Some("stop"), Some("claude-3-5-sonnet-20240620")));
    let ends = message_ends(INVOKE_ANTHROPIC);
    let r = raw(Platform::Bedrock, Api::Invoke, &INVOKE_ANTHROPIC[..ends[ends.len() - 2]]);
    assert_eq!(r.out, b"Hello");
    assert_eq!(r.ended, Ended::Broken(StreamError::Truncated), "message_delta is not the end");
}

fn invoke_body(parts: &[&str]) -> Vec<u8> {
    let mut body = Vec::new();
    for p in parts {
        let b64 = base64::engine::general_purpose::STANDARD.encode(p.as_bytes());
        let payload = format!(r#"{{"bytes":"{b64}","p":"abc"}}"#);
        encode_event("chunk", payload.as_bytes(), &mut body).unwrap();
    }
    body
}

#[test]
fn invoke_mistral_llama_and_chat_style_streams() {
    let mistral = invoke_body(&[
        r#"{"outputs":[{"text":" def","stop_reason":null}]}"#,
        r#"{"outputs":[{"text":" f():","stop_reason":null}]}"#,
        r#"{"outputs":[{"text":"","stop_reason":"stop"}],"amazon-bedrock-invocationMetrics":{"inputTokenCount":7,"outputTokenCount":3,"invocationLatency":10,"firstByteLatency":5}}"#,
    ]);
    let r = assert_chunking_invariant(Platform::Bedrock, Api::Invoke, &Framing::RawText, &mistral);
    assert_eq!((r.out.as_slice(), &r.ended, r.usage), (&b" def f():"[..], &Ended::Complete, usage(7, 3, 10)));

    let llama = invoke_body(&[
        r#"{"generation":"Hi","prompt_token_count":4,"generation_token_count":1,"stop_reason":null}"#,
        r#"{"generation":" you","prompt_token_count":null,"generation_token_count":2,"stop_reason":null}"#,
        r#"{"generation":"","prompt_token_count":null,"generation_token_count":3,"stop_reason":"stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":4,"outputTokenCount":3,"invocationLatency":1,"firstByteLatency":1}}"#,
    ]);
    let r = raw(Platform::Bedrock, Api::Invoke, &llama);
    assert_eq!((r.out.as_slice(), &r.ended, r.usage), (&b"Hi you"[..], &Ended::Complete, usage(4, 3, 7)));
    // cut before the last chunk: text so far, broken
    let ends = message_ends(&llama);
    let r = raw(Platform::Bedrock, Api::Invoke, &llama[..ends[1]]);
    assert_eq!((r.out.as_slice(), &r.ended), (&b"Hi you"[..], &Ended::Broken(StreamError::Truncated)));

    let chat = invoke_body(&[
        r#"{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"message":{"role":"assistant","content":"Bonjour"},"stop_reason":null}]}"#,
        r#"{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"message":{"role":"assistant","content":""},"stop_reason":"stop"}]}"#,
    ]);
    let r = raw(Platform::Bedrock, Api::Invoke, &chat);
    assert_eq!((r.out.as_slice(), &r.ended), (&b"Bonjour"[..], &Ended::Complete));
}

#[test]
fn invoke_errors() {
    let anthropic_error = invoke_body(&[
        r#"{"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":1}}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Par"}}"#,
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    ]);
    let r = raw(Platform::Bedrock, Api::Invoke, &anthropic_error);
    assert_eq!(r.out, b"Par");
    assert_eq!(r.ended, Ended::Broken(StreamError::UpstreamError { code: Some("overloaded_error".into()), message: "Overloaded".into() }));

    let mut not_b64 = Vec::new();
    encode_event("chunk", br#"{"bytes":"%%%"}"#, &mut not_b64).unwrap();
    assert!(matches!(raw(Platform::Bedrock, Api::Invoke, &not_b64).ended, Ended::Broken(StreamError::Malformed(_))));

    let mut timeout = invoke_body(&[r#"{"generation":"a","stop_reason":null}"#]);
    encode_exception("modelTimeoutException", br#"{"message":"Model has timed out"}"#, &mut timeout).unwrap();
    let r = raw(Platform::Bedrock, Api::Invoke, &timeout);
    assert_eq!(r.out, b"a");
    assert!(matches!(r.ended, Ended::Broken(StreamError::UpstreamException { ref kind, .. }) if kind == "modelTimeoutException"));
}

#[test]
fn anthropic_thinking_and_tool_deltas_are_not_text() {
    let body = invoke_body(&[
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"secret"}}"#,
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\""}}"#,
        r#"{"type":"content_block_delta","index":2,"delta":{"type":"text_delta","text":"shown"}}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}"#,
        r#"{"type":"message_stop"}"#,
    ]);
    let r = raw(Platform::Bedrock, Api::Invoke, &body);
    assert_eq!((r.out.as_slice(), &r.ended), (&b"shown"[..], &Ended::Complete));
    assert_eq!(r.usage, Usage { input_tokens: None, output_tokens: Some(9), total_tokens: None });
}

/// A framing with an in-band error event, which also writes tool calls and the stop reason.
struct Events;

impl Reframer for Events {
    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(b"T:");
        out.extend_from_slice(text.as_bytes());
        out.push(b'\n');
    }

    fn tool_call(&mut self, index: u32, id: Option<&str>, name: Option<&str>, arguments: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("C{index}:{}:{}:{arguments}\n", id.unwrap_or("-"), name.unwrap_or("-")).as_bytes());
    }

    fn finish_reason(&mut self, reason: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("F:{reason}\n").as_bytes());
    }

    fn broken(&mut self, reason: &StreamError, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(format!("E:{}\n", reason.log_reason()).as_bytes());
        true
    }
}

#[test]
fn a_custom_framing_gets_its_error_event_written_once() {
    let mut t = StreamTranslator::new(Platform::Bedrock, Api::Converse, Box::new(Events));
    let mut out = Vec::new();
    assert!(t.push(CONVERSE_THROTTLED, &mut out).is_err());
    assert!(t.error_event_written());
    assert!(t.push(b"more", &mut out).is_err());
    assert!(!t.finish(&mut out).is_complete());
    assert_eq!(String::from_utf8(out).unwrap(), "E:stream_exception:throttlingException\n");

    let mut t = StreamTranslator::new(Platform::Vllm, Api::Chat, Box::new(Events));
    let mut out = Vec::new();
    let two_events = VLLM_CHAT.windows(2).enumerate().filter(|(_, w)| *w == b"\n\n").nth(1).unwrap().0 + 2;
    t.push(&VLLM_CHAT[..two_events], &mut out).unwrap();
    assert_eq!(t.finish(&mut out), Ended::Broken(StreamError::Truncated));
    assert!(t.error_event_written());
    assert_eq!(String::from_utf8(out).unwrap(), "T:def add(a, b):\n\nE:stream_truncated\n");
}

#[test]
fn headers_for_the_adapter() {
    let t = StreamTranslator::new(Platform::Vllm, Api::Chat, Box::new(PlainText));
    assert_eq!((t.content_type(), t.extra_headers()), ("text/plain; charset=utf-8", &[][..]));
    let t = StreamTranslator::new(Platform::Vllm, Api::Chat, Box::new(Events));
    assert_eq!(t.content_type(), "text/event-stream; charset=utf-8");
    assert_eq!(Dialect::of(Platform::Bedrock, Api::Invoke), Dialect::Invoke);
    assert_eq!(Dialect::of(Platform::Bedrock, Api::Chat), Dialect::Converse);
    assert_eq!(Dialect::of(Platform::AzureOpenai, Api::Completions), Dialect::OpenAi);
}

#[test]
fn first_text_is_reported_with_the_chunk_that_carries_it() {
    let mut t = StreamTranslator::new(Platform::Vllm, Api::Chat, Box::new(PlainText));
    let first_event_end = VLLM_CHAT.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
    let mut out = Vec::new();
    t.push(&VLLM_CHAT[..first_event_end], &mut out).unwrap();
    assert!(!t.first_text_seen(), "the role chunk has empty content");
    assert!(out.is_empty());
    let second_event_end = first_event_end + VLLM_CHAT[first_event_end..].windows(2).position(|w| w == b"\n\n").unwrap() + 2;
    t.push(&VLLM_CHAT[first_event_end..second_event_end - 1], &mut out).unwrap();
    assert!(!t.first_text_seen(), "the event is not finished before its blank line");
    t.push(&VLLM_CHAT[second_event_end - 1..second_event_end], &mut out).unwrap();
    assert!(t.first_text_seen());
    assert_eq!(out, b"def add(a, b):\n");
}

/// Captures of real Bedrock streams made by another project (not committed: their licence is
/// not ours): `DUO_REAL_CAPTURES=<dir> cargo test -p duo-llm -- --ignored real_captures`.
#[cfg(not(target_arch = "wasm32"))]
#[test]
#[ignore]
fn real_captures() {
    let dir = std::env::var("DUO_REAL_CAPTURES").unwrap();
    for (name, api) in [("aigw_converse_stream_real", Api::Converse), ("aigw_invoke_stream_anthropic_real", Api::Invoke)] {
        let bin = std::fs::read(format!("{dir}/{name}.bin")).unwrap();
        let decoded = std::fs::read_to_string(format!("{dir}/{name}.decoded.jsonl")).unwrap();
        // expected text from the reference decoding
        let mut want = String::new();
        for line in decoded.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(t) = v["payload"]["delta"]["text"].as_str() {
                want.push_str(t);
            }
            let inner = &v["payload_bytes_decoded"];
            if inner["delta"]["type"] == "text_delta" {
                want.push_str(inner["delta"]["text"].as_str().unwrap());
            }
        }
        let r = assert_chunking_invariant(Platform::Bedrock, api, &Framing::RawText, &bin);
        assert_eq!(String::from_utf8(r.out).unwrap(), want, "{name}");
        assert_eq!(r.ended, Ended::Complete, "{name}");
        eprintln!("{name}: {} bytes, text {:?}, usage {:?}", bin.len(), want, r.usage);
    }
}

#[test]
fn upstream_status_hints() {
    let exc = |k: &str| StreamError::UpstreamException { kind: k.into(), message: String::new() };
    assert_eq!(exc("throttlingException").upstream_status(), Some(429));
    assert_eq!(exc("modelStreamErrorException").upstream_status(), Some(424));
    assert_eq!(exc("serviceUnavailableException").upstream_status(), Some(503));
    assert_eq!(exc("validationException").upstream_status(), Some(400));
    assert_eq!(exc("somethingNew").upstream_status(), None);
    let err = |c: Option<&str>| StreamError::UpstreamError { code: c.map(str::to_owned), message: String::new() };
    assert_eq!(err(Some("429")).upstream_status(), Some(429));
    assert_eq!(err(Some("500")).upstream_status(), Some(500));
    assert_eq!(err(Some("200")).upstream_status(), None);
    assert_eq!(err(Some("server_error")).upstream_status(), None);
    assert_eq!(err(None).upstream_status(), None);
    assert_eq!(StreamError::Truncated.upstream_status(), None);
    assert_eq!(StreamError::BadMessageCrc.upstream_status(), None);
}

#[test]
fn invoke_titan_deepseek_and_unknown_shapes() {
    let titan = invoke_body(&[
        r#"{"outputText":"Hello","index":0,"totalOutputTextTokenCount":1,"completionReason":null,"inputTextTokenCount":3}"#,
        r#"{"outputText":" Titan","index":0,"totalOutputTextTokenCount":2,"completionReason":"FINISH","amazon-bedrock-invocationMetrics":{"inputTokenCount":3,"outputTokenCount":2,"invocationLatency":1,"firstByteLatency":1}}"#,
    ]);
    let r = raw(Platform::Bedrock, Api::Invoke, &titan);
    assert_eq!((r.out.as_slice(), &r.ended, r.usage), (&b"Hello Titan"[..], &Ended::Complete, usage(3, 2, 5)));
    let deepseek = invoke_body(&[
        r#"{"choices":[{"text":"<think>","stop_reason":null}]}"#,
        r#"{"choices":[{"text":" ok","stop_reason":"stop"}]}"#,
    ]);
    let r = raw(Platform::Bedrock, Api::Invoke, &deepseek);
    assert_eq!((r.out.as_slice(), &r.ended), (&b"<think> ok"[..], &Ended::Complete));
    // text in a shape we do not know is never dropped silently: the stream breaks
    let unknown = invoke_body(&[r#"{"answer":"hidden text","done":true}"#]);
    let r = raw(Platform::Bedrock, Api::Invoke, &unknown);
    assert!(matches!(r.ended, Ended::Broken(StreamError::Malformed(_))));
    assert!(r.out.is_empty());
}

#[test]
fn tool_calls_and_stop_reasons_reach_the_reframer_in_every_dialect() {
    let sse = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Oslo\\\"}\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: [DONE]\n\n",
    );
    let r = assert_chunking_invariant(Platform::Vllm, Api::Chat, &Framing::Events, sse.as_bytes());
    assert_eq!(r.ended, Ended::Complete);
    assert_eq!(String::from_utf8(r.out).unwrap(), "C0:call_1:get_weather:\nC0:-:-:{\"city\":\nC0:-:-:\"Oslo\"}\nF:tool_calls\n");

    let mut converse = Vec::new();
    for (ty, payload) in [
        ("messageStart", r#"{"role":"assistant"}"#),
        ("contentBlockDelta", r#"{"contentBlockIndex":0,"delta":{"text":"Let me check."}}"#),
        ("contentBlockStop", r#"{"contentBlockIndex":0}"#),
        ("contentBlockStart", r#"{"contentBlockIndex":1,"start":{"toolUse":{"toolUseId":"tooluse_A","name":"get_weather"}}}"#),
        ("contentBlockDelta", r#"{"contentBlockIndex":1,"delta":{"toolUse":{"input":"{\"city\":"}}}"#),
        ("contentBlockDelta", r#"{"contentBlockIndex":1,"delta":{"toolUse":{"input":"\"Oslo\"}"}}}"#),
        ("contentBlockStop", r#"{"contentBlockIndex":1}"#),
        ("messageStop", r#"{"stopReason":"tool_use"}"#),
        ("metadata", r#"{"usage":{"inputTokens":20,"outputTokens":9,"totalTokens":29},"metrics":{"latencyMs":5}}"#),
    ] {
        encode_event(ty, payload.as_bytes(), &mut converse).unwrap();
    }
    let r = assert_chunking_invariant(Platform::Bedrock, Api::Converse, &Framing::Events, &converse);
    assert_eq!((&r.ended, r.usage), (&Ended::Complete, usage(20, 9, 29)));
    assert_eq!(
        String::from_utf8(r.out).unwrap(),
        "T:Let me check.\nC0:tooluse_A:get_weather:\nC0:-:-:{\"city\":\nC0:-:-:\"Oslo\"}\nF:tool_calls\n"
    );

    let invoke = invoke_body(&[
        r#"{"type":"message_start","message":{"usage":{"input_tokens":11,"output_tokens":1}}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Oslo\"}"}}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":7}}"#,
        r#"{"type":"message_stop"}"#,
    ]);
    let r = assert_chunking_invariant(Platform::Bedrock, Api::Invoke, &Framing::Events, &invoke);
    assert_eq!(r.ended, Ended::Complete);
    assert_eq!(String::from_utf8(r.out).unwrap(), "C0:toolu_1:get_weather:\nC0:-:-:{\"city\": \"Oslo\"}\nF:tool_calls\n");

    // tool input for a block that never started as a tool call has no call to join: dropped
    let mut stray = Vec::new();
    encode_event("contentBlockDelta", br#"{"contentBlockIndex":3,"delta":{"toolUse":{"input":"{}"}}}"#, &mut stray).unwrap();
    let mut out = Vec::new();
    let mut t = StreamTranslator::new(Platform::Bedrock, Api::Converse, Box::new(Events));
    t.push(&stray, &mut out).unwrap();
    assert!(out.is_empty());
}
