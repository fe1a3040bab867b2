//! Streaming answers: platform streams in (SSE, Bedrock event-stream), the caller's framing out,
//! chunk by chunk, with truthful termination.
//!
//! ```text
//! upstream bytes ──► decoder (sse / eventstream) ──► events ──► upstream::Core (per dialect:
//!   text, tool calls, usage, end marker, error) ──► the caller's Reframer ──► `out`
//! ```
//!
//! A proxy calls [`StreamTranslator::push`] for every chunk of a 2xx streaming answer
//! (replacing the chunk with `out`), and [`StreamTranslator::finish`] at the end of the body. A stream ends [`Ended::Complete`] only after the platform's end marker:
//! `data: [DONE]` (vLLM, OpenAI-compatible, Azure), `messageStop` + `metadata` (Converse),
//! `message_stop` / a `stop_reason` / invocation metrics (InvokeModel). Anything else (an
//! upstream that stops early, an exception or error frame, a bad CRC, an in-band error, a
//! content-filter cut, bytes that are not the platform's format) is [`Ended::Broken`].

pub mod eventstream;
pub mod sse;
mod upstream;

pub use upstream::Dialect;

use crate::{Api, Platform, Usage};
use std::fmt;

/// Writes the caller's framing around the model's text. `out` is the replacement for the
/// current upstream chunk; implementations only append to it.
pub trait Reframer {
    /// `content-type` of the re-framed answer.
    fn content_type(&self) -> &'static str {
        "text/event-stream; charset=utf-8"
    }

    /// Other response headers the framing needs.
    fn extra_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    /// Called once, with the first upstream bytes of a successful (2xx) answer.
    fn start(&mut self, _out: &mut Vec<u8>) {}

    /// A piece of the model's text (never empty).
    fn text(&mut self, text: &str, out: &mut Vec<u8>);

    /// A piece of a tool call: `index` orders the calls of one answer; `id` and `name` come
    /// with the call's first piece, `arguments` is the next part of its JSON text (possibly
    /// empty). Framings without tool calls ignore it.
    fn tool_call(&mut self, _index: u32, _id: Option<&str>, _name: Option<&str>, _arguments: &str, _out: &mut Vec<u8>) {}

    /// The platform's reason for stopping, in OpenAI's vocabulary (`stop`, `length`,
    /// `tool_calls`, `content_filter`), when it says one.
    fn finish_reason(&mut self, _reason: &str, _out: &mut Vec<u8>) {}

    /// The upstream stream ended with its end marker.
    fn complete(&mut self, _usage: &Usage, _out: &mut Vec<u8>) {}

    /// The upstream stream broke. Returns whether the framing wrote an error event its client
    /// understands; `false` means the proxy must reset the downstream stream.
    fn broken(&mut self, _reason: &StreamError, _out: &mut Vec<u8>) -> bool {
        false
    }
}

/// The model's text as it comes, nothing around it (`text/plain`).
pub struct PlainText;

impl Reframer for PlainText {
    fn content_type(&self) -> &'static str {
        "text/plain; charset=utf-8"
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(text.as_bytes());
    }
}

/// Why a stream is not complete. Upstream messages are cut to 300 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// Bedrock `:message-type: exception` (`kind` = `:exception-type`, e.g.
    /// `throttlingException`; `message` from the payload).
    UpstreamException { kind: String, message: String },
    /// An error the platform put in the stream: `data: {"error": ...}` (vLLM, OpenAI, Azure),
    /// `event: error`, Anthropic's `error` event, Bedrock `:message-type: error`.
    UpstreamError { code: Option<String>, message: String },
    BadPreludeCrc,
    BadMessageCrc,
    /// Bytes that are not the platform's framing or JSON.
    Malformed(&'static str),
    /// One event or message over the decoder's bound.
    TooLarge,
    /// The platform's content filter or guardrail cut the answer.
    ContentFiltered,
    /// The upstream body ended before the platform's end marker.
    Truncated,
}

impl StreamError {
    /// The HTTP status the platform would have answered with had the error come before the
    /// stream started (Bedrock's modeled status per exception; an in-band error's numeric
    /// code). Lets an adapter that has not sent the response headers yet (no text so far)
    /// map the error exactly like a non-streaming one. `None` for our own findings.
    pub fn upstream_status(&self) -> Option<u16> {
        match self {
            StreamError::UpstreamException { kind, .. } => match kind.as_str() {
                "validationException" | "serviceQuotaExceededException" => Some(400),
                "accessDeniedException" => Some(403),
                "resourceNotFoundException" => Some(404),
                "modelTimeoutException" => Some(408),
                "throttlingException" | "modelNotReadyException" => Some(429),
                "modelErrorException" | "modelStreamErrorException" => Some(424),
                "internalServerException" => Some(500),
                "serviceUnavailableException" => Some(503),
                _ => None,
            },
            StreamError::UpstreamError { code: Some(code), .. } => {
                code.parse::<u16>().ok().filter(|c| (400..600).contains(c))
            }
            _ => None,
        }
    }

    /// A short, content-free reason for the access log (`error` field of `duo_usage`):
    /// never an upstream message, which might quote the prompt.
    pub fn log_reason(&self) -> String {
        match self {
            StreamError::UpstreamException { kind, .. } => format!("stream_exception:{kind}"),
            StreamError::UpstreamError { code: Some(code), .. } => format!("stream_error:{code}"),
            StreamError::UpstreamError { code: None, .. } => "stream_error".to_owned(),
            StreamError::BadPreludeCrc => "stream_bad_prelude_crc".to_owned(),
            StreamError::BadMessageCrc => "stream_bad_message_crc".to_owned(),
            StreamError::Malformed(_) => "stream_malformed".to_owned(),
            StreamError::TooLarge => "stream_event_too_large".to_owned(),
            StreamError::ContentFiltered => "stream_content_filtered".to_owned(),
            StreamError::Truncated => "stream_truncated".to_owned(),
        }
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::UpstreamException { kind, message } => write!(f, "upstream exception {kind}: {message}"),
            StreamError::UpstreamError { code: Some(code), message } => write!(f, "upstream error {code}: {message}"),
            StreamError::UpstreamError { code: None, message } => write!(f, "upstream error: {message}"),
            StreamError::BadPreludeCrc => f.write_str("event-stream prelude CRC mismatch"),
            StreamError::BadMessageCrc => f.write_str("event-stream message CRC mismatch"),
            StreamError::Malformed(what) => write!(f, "malformed stream: {what}"),
            StreamError::TooLarge => f.write_str("stream event too large"),
            StreamError::ContentFiltered => f.write_str("answer cut by the platform's content filter"),
            StreamError::Truncated => f.write_str("upstream stream ended before its end marker"),
        }
    }
}

impl std::error::Error for StreamError {}

/// How a stream ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    Complete,
    Broken(StreamError),
}

impl Ended {
    pub fn is_complete(&self) -> bool {
        matches!(self, Ended::Complete)
    }
}

enum Decoder {
    Sse(sse::SseDecoder),
    EventStream(eventstream::EventStreamDecoder),
}

/// One streaming answer, from the platform's bytes to GitLab's.
pub struct StreamTranslator {
    decoder: Decoder,
    core: upstream::Core,
    started: bool,
    broken: Option<StreamError>,
    /// The reframer wrote an in-band error event for `broken`.
    error_event_written: bool,
    ended: Option<Ended>,
}

impl StreamTranslator {
    /// `api` is the API actually called ([`crate::Wire::api`]): Bedrock `invoke` reads
    /// InvokeModelWithResponseStream, Bedrock otherwise ConverseStream; every other platform
    /// reads OpenAI-style SSE (chat and completions chunks alike).
    pub fn new(platform: Platform, api: Api, reframer: Box<dyn Reframer>) -> Self {
        let dialect = Dialect::of(platform, api);
        let decoder = match dialect {
            Dialect::OpenAi => Decoder::Sse(sse::SseDecoder::new()),
            Dialect::Converse | Dialect::Invoke => Decoder::EventStream(eventstream::EventStreamDecoder::new()),
        };
        StreamTranslator {
            decoder,
            core: upstream::Core::new(dialect, reframer),
            started: false,
            broken: None,
            error_event_written: false,
            ended: None,
        }
    }

    /// `content-type` of the re-framed answer (the proxy removes `content-length`).
    pub fn content_type(&self) -> &'static str {
        self.core.reframer.content_type()
    }

    /// Other response headers of the framing (e.g. `x-streaming-format: sse` for `/v4`).
    pub fn extra_headers(&self) -> &'static [(&'static str, &'static str)] {
        self.core.reframer.extra_headers()
    }

    /// Translates one upstream chunk; appends GitLab's bytes to `out` (possibly nothing).
    ///
    /// On `Err` the stream is broken: `out` holds the text decoded before the break and, when
    /// the framing has one, its error event ([`Self::error_event_written`]). Without an error
    /// event the adapter must reset the downstream stream. Later calls write nothing and
    /// return the same error. Bytes after the end marker are ignored.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), StreamError> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        if self.ended.is_some() || self.core.complete {
            return Ok(());
        }
        if !self.started {
            self.started = true;
            self.core.reframer.start(out);
        }
        let core = &mut self.core;
        let result = match &mut self.decoder {
            Decoder::Sse(d) => d.feed(chunk, |ev| core.on_sse(ev, out)),
            Decoder::EventStream(d) => d.feed(chunk, |m| core.on_message(m, out)),
        };
        match result {
            Ok(()) => Ok(()),
            // The decoder read on past the end marker: what follows it does not matter.
            Err(_) if self.core.complete => Ok(()),
            Err(e) => Err(self.break_with(e, out)),
        }
    }

    /// The upstream body ended (`end_of_stream`). Appends the framing's closing bytes (or its
    /// error event) to `out` and says how the stream ended. Idempotent.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Ended {
        if let Some(ended) = &self.ended {
            return ended.clone();
        }
        let ended = if let Some(e) = &self.broken {
            Ended::Broken(e.clone())
        } else if self.core.complete {
            match &mut self.decoder {
                Decoder::Sse(d) => {
                    d.finish();
                }
                Decoder::EventStream(d) => {
                    d.finish();
                }
            }
            self.core.reframer.complete(&self.core.usage, out);
            Ended::Complete
        } else {
            Ended::Broken(self.break_with(StreamError::Truncated, out))
        };
        self.ended = Some(ended.clone());
        ended
    }

    fn break_with(&mut self, e: StreamError, out: &mut Vec<u8>) -> StreamError {
        self.error_event_written = self.core.reframer.broken(&e, out);
        self.broken = Some(e.clone());
        e
    }

    /// Whether the framing wrote an error event GitLab understands for the break; when
    /// `false` after a break, the adapter must reset the downstream stream.
    pub fn error_event_written(&self) -> bool {
        self.error_event_written
    }

    /// Usage reported so far (complete once the stream is complete).
    pub fn usage(&self) -> Usage {
        self.core.usage
    }

    /// Whether any of the model's text has been written (time to first chunk).
    pub fn first_text_seen(&self) -> bool {
        self.core.first_text
    }

    /// Bytes of model text written so far.
    pub fn text_bytes(&self) -> u64 {
        self.core.text_bytes
    }

    /// The platform's stop reason so far, in OpenAI's vocabulary (`stop`, `length`,
    /// `tool_calls`, ...): what [`Reframer::finish_reason`] was given.
    pub fn finish_reason(&self) -> Option<&str> {
        self.core.finish_reason.as_deref()
    }

    /// The model id the platform says is answering, when its stream names one (OpenAI-style
    /// chunks' `model`, Anthropic's `message_start`; Converse never does).
    pub fn response_model(&self) -> Option<&str> {
        self.core.model.as_deref()
    }

    /// The end marker has arrived (the stream will end `Complete` at `finish`).
    pub fn end_marker_seen(&self) -> bool {
        self.core.complete
    }
}

#[cfg(test)]
mod tests;
