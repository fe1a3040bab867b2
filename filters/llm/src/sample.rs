//! Well-formed platform streams built from a list of text pieces, for benchmarks (cost per
//! chunk, added time to first chunk), fake upstreams and tests. Each piece is one upstream
//! event, as the platform would send it; the usage numbers are the caller's.

use crate::Usage;
use crate::stream::eventstream::encode_event;
use crate::stream::{Dialect, StreamError};
use base64::Engine as _;
use serde_json::json;

/// Appends one event carrying `text` in the dialect's shape.
pub fn text_event(dialect: Dialect, text: &str, out: &mut Vec<u8>) -> Result<(), StreamError> {
    match dialect {
        Dialect::OpenAi => {
            let chunk = json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": "m",
                "choices": [{"index": 0, "delta": {"content": text}, "logprobs": null, "finish_reason": null}]});
            sse_data(&chunk, out);
            Ok(())
        }
        Dialect::Converse => {
            let ev = json!({"contentBlockIndex": 0, "delta": {"text": text}, "p": "abcdefgh"});
            encode_event("contentBlockDelta", ev.to_string().as_bytes(), out)
        }
        Dialect::Invoke => {
            let inner = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}});
            invoke_chunk(&inner, out)
        }
    }
}

/// Appends the dialect's end: usage and end marker.
pub fn end_events(dialect: Dialect, usage: Usage, out: &mut Vec<u8>) -> Result<(), StreamError> {
    let (i, o) = (usage.input_tokens.unwrap_or(0), usage.output_tokens.unwrap_or(0));
    match dialect {
        Dialect::OpenAi => {
            sse_data(&json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}), out);
            sse_data(&json!({"choices": [], "usage": {"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o}}), out);
            out.extend_from_slice(b"data: [DONE]\n\n");
            Ok(())
        }
        Dialect::Converse => {
            encode_event("contentBlockStop", br#"{"contentBlockIndex":0}"#, out)?;
            encode_event("messageStop", br#"{"stopReason":"end_turn"}"#, out)?;
            let meta = json!({"usage": {"inputTokens": i, "outputTokens": o, "totalTokens": i + o}, "metrics": {"latencyMs": 1}});
            encode_event("metadata", meta.to_string().as_bytes(), out)
        }
        Dialect::Invoke => {
            invoke_chunk(&json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": o}}), out)?;
            invoke_chunk(
                &json!({"type": "message_stop", "amazon-bedrock-invocationMetrics":
                    {"inputTokenCount": i, "outputTokenCount": o, "invocationLatency": 1, "firstByteLatency": 1}}),
                out,
            )
        }
    }
}

/// A whole stream: one event per piece, then the end.
pub fn stream(dialect: Dialect, pieces: &[&str], usage: Usage) -> Result<Vec<u8>, StreamError> {
    let mut out = Vec::new();
    for p in pieces {
        text_event(dialect, p, &mut out)?;
    }
    end_events(dialect, usage, &mut out)?;
    Ok(out)
}

fn sse_data(v: &serde_json::Value, out: &mut Vec<u8>) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(v.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

fn invoke_chunk(inner: &serde_json::Value, out: &mut Vec<u8>) -> Result<(), StreamError> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(inner.to_string());
    let payload = json!({"bytes": b64, "p": "abcd"});
    encode_event("chunk", payload.to_string().as_bytes(), out)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::stream::{Ended, PlainText, StreamTranslator};
    use crate::{Api, Platform};

    #[test]
    fn sample_streams_translate_back_to_their_pieces() {
        let pieces = ["fn main() {\n", "    println!(\"hi\");\n", "}", " é\u{1F600}"];
        let u = Usage { input_tokens: Some(10), output_tokens: Some(4), total_tokens: Some(14) };
        for (platform, api) in [(Platform::Vllm, Api::Chat), (Platform::Bedrock, Api::Converse), (Platform::Bedrock, Api::Invoke)] {
            let body = stream(Dialect::of(platform, api), &pieces, u).unwrap();
            let mut t = StreamTranslator::new(platform, api, Box::new(PlainText));
            let mut out = Vec::new();
            t.push(&body, &mut out).unwrap();
            assert_eq!(t.finish(&mut out), Ended::Complete, "{platform:?}/{api:?}");
            assert_eq!(String::from_utf8(out).unwrap(), pieces.concat());
            assert_eq!(t.usage(), u);
        }
    }
}
