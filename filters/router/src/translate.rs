//! One self-hosted call, GitLab ⇄ model platform: a per-request [`Translation`] that the adapter
//! (`filter.rs`) only drives. Every decision about what GitLab receives is made here and tested
//! natively; the adapter turns the returned plans into host calls.
//!
//! ```text
//! request body ──► Translation::request ──► RequestEdit (headers to set and keep, new body)
//! response headers ──► response_headers ──► HeadersPlan (answer now / hold whole / stream)
//! each chunk (stream) ──► chunk ──► Chunk (bytes for GitLab, reset?)
//! whole answer (held) ──► whole ──► WholeAnswer (status, headers, body)
//! ```

use crate::chat;
use crate::codec::{self, AnswerCtx, AnswerShape, Call, UpstreamResponse};
use crate::config::Config;
use crate::decide::Target;
use crate::framing::Framing;
use crate::ingress;
use crate::prompts::{CivilDate, PromptSet};
use duo_core::catalogue::{Endpoint, EndpointKind};
use duo_core::errors::GitlabError;
use duo_core::handoff::{ContentInfo, UsageInfo};
use duo_core::version::GitlabVersion;
use duo_llm::stream::{Ended, StreamTranslator};
use serde_json::Value;

/// What the request side needs besides the body.
pub struct RequestCtx<'a> {
    pub now_unix: u64,
    /// The token's scopes from duo_auth's hand-off (`None`: unknown, e.g. auth bypass).
    pub scopes: Option<Vec<String>>,
    /// GitLab's `x-gitlab-enabled-feature-flags`.
    pub feature_flags: Option<&'a str>,
    /// The calling GitLab, from `X-Gitlab-Version` ([`GitlabVersion::from_header`]).
    pub gitlab_version: GitlabVersion,
    /// Envoy's `x-request-id` (model-ingress answers carry it in their id).
    pub request_id: &'a str,
}

/// Request headers a model platform may see besides those the translation sets (pseudo-headers
/// always stay). Everything else GitLab sent goes: its JWT and instance/user headers
/// (`x-gitlab-*`), cookies, key headers, headers describing the rebuilt body. A model platform
/// is often a third party; it gets the prompt and the platform credential, nothing about who
/// asked. Sorted and unique (tested), for review.
pub const FORWARDED_REQUEST_HEADERS: &[&str] = &[
    "accept",
    "content-type",
    "traceparent",
    "tracestate",
    "user-agent",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-upstream-rq-timeout-ms",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-request-id",
];

/// The request as the platform must receive it.
#[derive(Debug, PartialEq)]
pub struct RequestEdit {
    /// Set, in order (the platform's headers, `:method`, `:path`, `content-length`); every other
    /// header GitLab sent goes unless [`RequestEdit::keeps`] it.
    pub set: Vec<(&'static str, String)>,
    /// Replaces the whole request body.
    pub body: Vec<u8>,
}

impl RequestEdit {
    /// Whether a header GitLab sent stays in the platform's request (names lower-case, as Envoy
    /// hands them over): pseudo-headers and [`FORWARDED_REQUEST_HEADERS`]; everything else goes
    /// (GitLab's JWT and headers, cookies, key headers, headers describing the old body), the
    /// client's cluster header included (the decision sets its own). Decided once per header
    /// while the map is written. None of `codec::removed_request_headers` is kept (tested).
    pub fn keeps(name: &[u8]) -> bool {
        // Byte slices compare lengths first, so most entries cost one integer compare; a binary
        // search compared bytes at every step (~7k more wasm operators per request).
        name.first() == Some(&b':') || FORWARDED_REQUEST_HEADERS.iter().any(|f| f.as_bytes() == name)
    }
}

/// What to do with the upstream response headers.
#[derive(Debug, PartialEq)]
pub enum HeadersPlan {
    /// No body will come: translate the (empty) answer now with [`Translation::whole`] and send
    /// it as a local reply (Envoy has no body buffer to replace).
    AnswerNow,
    /// Hold the body whole; translate it at its end with [`Translation::whole`].
    Hold,
    /// Set these headers and remove those of `remove` the upstream sent, then translate chunk
    /// by chunk with [`Translation::chunk`].
    Stream { set: Vec<(&'static str, &'static str)>, remove: &'static [&'static str] },
    /// The answer is already in the client's shape: leave it, only let
    /// [`Translation::observe`] read its chunks (usage, how it ended).
    PassThrough,
}

/// GitLab's bytes for one upstream chunk.
#[derive(Debug, Default, PartialEq)]
pub struct Chunk {
    pub bytes: Vec<u8>,
    /// The stream broke and its framing has no error event GitLab understands: the adapter
    /// must reset the downstream stream (a cut answer never looks complete).
    pub reset: bool,
    /// The answer ended (complete or broken): publish the usage record.
    pub done: bool,
}

/// GitLab's whole answer, replacing the upstream's.
#[derive(Debug, PartialEq)]
pub struct WholeAnswer {
    pub status: u32,
    pub set: Vec<(&'static str, String)>,
    /// Upstream headers that described the replaced body.
    pub remove: Vec<&'static str>,
    pub body: Vec<u8>,
}

enum Response {
    /// Response headers not seen yet.
    Waiting,
    Hold,
    Stream(Box<StreamTranslator>),
    /// A streamed answer passed through, decoded only to learn usage and how it ended.
    ObserveStream(Box<StreamTranslator>),
    /// A whole answer passed through, kept (bounded) to read its usage at the end.
    ObserveWhole(Vec<u8>),
    Done,
}

/// Writes nothing: the pass-through stream is only observed.
struct Silent;

impl duo_llm::stream::Reframer for Silent {
    fn text(&mut self, _text: &str, _out: &mut Vec<u8>) {}
}

/// The most of a passed-through whole answer kept to read its usage.
const OBSERVE_LIMIT: usize = 1 << 20;

/// Prompt and answer text, kept only when duo_logger asked for content and cut at its limit.
struct Captured {
    limit: usize,
    prompt: Vec<u8>,
    response: Vec<u8>,
}

impl Captured {
    fn append_response(&mut self, bytes: &[u8]) {
        let room = self.limit.saturating_sub(self.response.len());
        self.response.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// One self-hosted call's translation state.
pub struct Translation {
    answer: AnswerCtx,
    response: Response,
    usage: UsageInfo,
    captured: Option<Captured>,
}

impl Translation {
    /// GitLab's request (parsed once by the decision) → the platform's request.
    /// Errors are GitLab-shaped local replies (422 bad body, 404 unknown prompt, 413...).
    pub fn request(
        config: &Config,
        prompts: &PromptSet,
        target: &Target,
        endpoint: &Endpoint,
        (json, body_len): (&Value, usize),
        ctx: &RequestCtx<'_>,
    ) -> Result<(Translation, RequestEdit), GitlabError> {
        let key = target.model.as_deref().ok_or_else(GitlabError::inference_failed)?;
        let model = config.models.get(key).ok_or_else(GitlabError::inference_failed)?;
        if endpoint.kind == (EndpointKind::ModelIngress { list: false }) {
            let up = ingress::build(key, model, json, ctx.request_id, ctx.now_unix)?;
            let up = codec::UpstreamRequest {
                method: "POST",
                path: up.path,
                set_headers: up.set_headers,
                body: up.body,
                stream: up.stream,
                answer: up.answer,
            };
            return Ok(Self::edit(up));
        }
        let mut up = if endpoint.kind == EndpointKind::ChatAgentV2 {
            // Duo Chat (ReAct): the chat module renders the step; tools follow the token's scopes.
            let date = CivilDate::from_unix_seconds(ctx.now_unix);
            let step = chat::prepare_step(prompts, json, model.family, model.platform, date, ctx.scopes.clone())?;
            let api_key = json.pointer("/model_metadata/api_key").and_then(Value::as_str).map(str::to_owned);
            let mut up = codec::build_rendered_request(model, AnswerShape::ChatAgent, step.rendered(), true, api_key)?;
            // GitLab's gateway checks an action against the tools the token may use.
            let tools = chat::offered_tools(&[], ctx.scopes.as_deref()).iter().map(|t| t.name).collect();
            up.answer.chat_tools = Some(tools);
            up
        } else {
            let call = Call { kind: endpoint.kind, prompt_id: endpoint.prompt_id.as_deref(), model, prompts, now_unix: ctx.now_unix };
            codec::build_upstream_request_parsed(&call, json, body_len)?
        };
        up.answer.feature_flags = ctx.feature_flags.map(codec::feature_flags).unwrap_or_default();
        up.answer.gitlab = ctx.gitlab_version;
        Ok(Self::edit(up))
    }

    /// The host edit for a built upstream request, and the translation of its answer.
    fn edit(mut up: codec::UpstreamRequest) -> (Translation, RequestEdit) {
        let mut set = Vec::with_capacity(up.set_headers.len() + 3);
        set.append(&mut up.set_headers);
        set.push((":method", up.method.to_owned()));
        set.push((":path", std::mem::take(&mut up.path)));
        set.push(("content-length", up.body.len().to_string()));
        let usage = UsageInfo {
            request_model: Some(up.answer.model.clone()),
            operation: Some(up.answer.wire.operation_name().to_owned()),
            ..UsageInfo::default()
        };
        let translation = Translation {
            answer: up.answer,
            response: Response::Waiting,
            usage,
            captured: None,
        };
        (translation, RequestEdit { set, body: up.body })
    }

    /// Keep prompt and answer text up to `limit` bytes each for duo_logger (its content policy
    /// allowed it): the prompt as the model receives it (the rendered request body).
    pub fn capture_content(&mut self, limit: usize, upstream_body: &[u8]) {
        let prompt = upstream_body[..upstream_body.len().min(limit)].to_vec();
        self.captured = Some(Captured { limit, prompt, response: Vec::new() });
    }

    /// The upstream answered with `status` (`end_of_stream`: no body follows). A 2xx stream is
    /// translated chunk by chunk; anything else is held whole. Nothing has gone to GitLab yet.
    /// Only the status decides: a held answer's headers are read once, at its end.
    pub fn response_headers(&mut self, status: Option<u32>, end_of_stream: bool, now_unix: u64) -> HeadersPlan {
        self.usage.upstream_status = status;
        if end_of_stream {
            self.response = Response::Done;
            return HeadersPlan::AnswerNow;
        }
        let ok = status.is_some_and(|s| (200..300).contains(&s));
        if ok && self.answer.ingress.as_ref().is_some_and(|i| i.pass_through) {
            self.response = if self.answer.stream {
                self.usage.error = Some("stream_truncated".to_owned());
                let t = StreamTranslator::new(self.answer.platform, self.answer.wire.api(), Box::new(Silent));
                Response::ObserveStream(Box::new(t))
            } else {
                Response::ObserveWhole(Vec::new())
            };
            return HeadersPlan::PassThrough;
        }
        if !(self.answer.stream && ok) {
            self.response = Response::Hold;
            return HeadersPlan::Hold;
        }
        let t = self.stream_translator(now_unix);
        let mut set = vec![("content-type", t.content_type())];
        set.extend_from_slice(t.extra_headers());
        // The stream is re-framed: the length goes with the old body, and so does every other
        // header describing it.
        let remove = codec::BODY_HEADERS;
        // Until the stream ends the record says it was cut (an upstream reset never ends it).
        self.usage.error = Some("stream_truncated".to_owned());
        self.response = Response::Stream(Box::new(t));
        HeadersPlan::Stream { set, remove }
    }

    /// GitLab's framing of this answer, over the decoder of the wire actually called (FIM code
    /// completions always use `/v1/completions`, whatever the model entry says).
    fn stream_translator(&self, now_unix: u64) -> StreamTranslator {
        let ctx = &self.answer;
        let api = ctx.wire.api();
        let framing = match ctx.shape {
            AnswerShape::ChatAgent => {
                let events = chat::ChatEvents::for_gitlab(ctx.gitlab, &ctx.model).with_tools(ctx.chat_tools.clone());
                return StreamTranslator::new(ctx.platform, api, Box::new(chat::ChatAgentReframer::new(events)));
            }
            AnswerShape::PromptV2 => Framing::PromptResponses { usage_model: Some(ctx.model.clone()) },
            AnswerShape::SuggestionsV4 => {
                let (engine, name) = codec::reported(ctx);
                Framing::SuggestionsSse {
                    engine: engine.to_owned(),
                    name: name.to_owned(),
                    timestamp: now_unix,
                    feature_flags: ctx.feature_flags.clone(),
                }
            }
            AnswerShape::OpenAiChat => {
                let (id, include_usage) = match &ctx.ingress {
                    Some(i) => (i.id.clone(), i.include_usage),
                    None => (duo_llm::serve::AnswerId { id: "chatcmpl-duo".into(), created: now_unix, model: ctx.model.clone() }, false),
                };
                return StreamTranslator::new(ctx.platform, api, Box::new(duo_llm::serve::ChunkWriter::new(id, include_usage)));
            }
            AnswerShape::CodeSuggestions | AnswerShape::PromptV1 | AnswerShape::ChatV1 => Framing::RawText,
        };
        // GitLab 19.x streams generations line by line without Markdown fences.
        if matches!(ctx.post, codec::PostProcess::Generation { .. }) && ctx.gitlab.is_19_or_later() {
            return StreamTranslator::new(ctx.platform, api, Box::new(crate::framing::FenceLines::new(framing.into_reframer())));
        }
        framing.translator(ctx.platform, api)
    }

    /// Whether the body is held whole (the adapter pauses until its end).
    pub fn holds_body(&self) -> bool {
        matches!(self.response, Response::Hold)
    }

    /// Whether the answer passes unchanged ([`HeadersPlan::PassThrough`]).
    pub fn passes_through(&self) -> bool {
        matches!(self.response, Response::ObserveStream(_) | Response::ObserveWhole(_))
    }

    /// One chunk of a passed-through answer, read but not changed: usage and how it ended.
    /// Returns whether the answer ended.
    pub fn observe(&mut self, chunk: &[u8], end_of_stream: bool) -> bool {
        match &mut self.response {
            Response::ObserveStream(t) => {
                let mut sink = Vec::new();
                let broken = t.push(chunk, &mut sink).err();
                let ended = if end_of_stream && broken.is_none() { Some(t.finish(&mut sink)) } else { None };
                let usage = t.usage();
                self.usage.input_tokens = usage.input_tokens.or(self.usage.input_tokens);
                self.usage.output_tokens = usage.output_tokens.or(self.usage.output_tokens);
                if let Some(c) = &mut self.captured {
                    c.append_response(chunk);
                }
                let done = broken.is_some() || ended.is_some();
                if done {
                    self.usage.finish_reason = t.finish_reason().map(str::to_owned);
                    self.usage.response_model = t.response_model().map(str::to_owned);
                    self.usage.error = match (broken, ended) {
                        (Some(e), _) | (None, Some(Ended::Broken(e))) => Some(e.log_reason()),
                        _ => None,
                    };
                    self.response = Response::Done;
                }
                done
            }
            Response::ObserveWhole(body) => {
                let room = OBSERVE_LIMIT.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if !end_of_stream {
                    return false;
                }
                if let Ok(c) = duo_llm::parse_completion(self.answer.wire, &[], body) {
                    self.usage.input_tokens = c.usage.input_tokens;
                    self.usage.output_tokens = c.usage.output_tokens;
                    self.usage.finish_reason = c.finish_reason;
                    self.usage.response_model = c.model;
                }
                if let Some(c) = &mut self.captured {
                    c.append_response(body);
                }
                self.response = Response::Done;
                true
            }
            _ => true,
        }
    }

    /// Whether [`Self::whole`] reads Envoy's `response.code_details` for this status (only
    /// errors do, so the adapter makes that host call only then).
    pub fn needs_code_details(&self) -> bool {
        codec::needs_code_details(self.usage.upstream_status.unwrap_or(502))
    }

    /// One upstream chunk of a streamed answer. Once the answer ended (complete or broken),
    /// later upstream bytes are dropped: GitLab never gets untranslated bytes.
    pub fn chunk(&mut self, chunk: &[u8], end_of_stream: bool) -> Chunk {
        let Response::Stream(t) = &mut self.response else { return Chunk { bytes: Vec::new(), reset: false, done: true } };
        let mut out = Vec::new();
        let mut broken = t.push(chunk, &mut out).err();
        let mut done = broken.is_some();
        if end_of_stream && broken.is_none() {
            done = true;
            if let Ended::Broken(e) = t.finish(&mut out) {
                broken = Some(e);
            }
        }
        let usage = t.usage();
        let reset = broken.is_some() && !t.error_event_written();
        self.usage.input_tokens = usage.input_tokens.or(self.usage.input_tokens);
        self.usage.output_tokens = usage.output_tokens.or(self.usage.output_tokens);
        if done {
            self.usage.finish_reason = t.finish_reason().map(str::to_owned);
            self.usage.response_model = t.response_model().map(str::to_owned);
            self.usage.error = broken.map(|e| e.log_reason());
            self.response = Response::Done;
        }
        if let Some(c) = &mut self.captured {
            c.append_response(&out);
        }
        Chunk { bytes: out, reset, done }
    }

    /// The whole upstream answer (held, or empty when it had no body) → GitLab's answer.
    /// `via_upstream`: Envoy's `response.code_details == "via_upstream"` when
    /// [`Self::needs_code_details`], else `None`.
    pub fn whole(&mut self, headers: &[(String, String)], body: &[u8], via_upstream: Option<bool>, now_unix: u64) -> WholeAnswer {
        self.response = Response::Done;
        let status = self.usage.upstream_status.unwrap_or(502);
        let resp = UpstreamResponse { status, headers, body, via_upstream };
        let answer = match &self.answer.ingress {
            Some(ingress) => ingress::answer(&self.answer, ingress, &resp),
            None => codec::translate_response(&self.answer, &resp, now_unix),
        };
        if let Some(c) = &mut self.captured {
            c.append_response(&answer.body);
        }
        self.usage.input_tokens = answer.usage.input_tokens.or(self.usage.input_tokens);
        self.usage.output_tokens = answer.usage.output_tokens.or(self.usage.output_tokens);
        self.usage.error.clone_from(&answer.error);
        self.usage.finish_reason = answer.finish_reason;
        self.usage.response_model = answer.response_model;
        let remove = codec::stale_body_headers(headers).collect();
        let mut set = answer.headers;
        set.push(("content-length", answer.body.len().to_string()));
        WholeAnswer { status: answer.status, set, remove, body: answer.body }
    }

    /// A host call that rewrites the answer failed: what the record says.
    pub fn fail(&mut self) {
        self.response = Response::Done;
        self.usage.error = Some("response_rewrite_failed".to_owned());
    }

    /// The `duo_usage` record so far (tokens, upstream status, error).
    pub fn usage(&self) -> &UsageInfo {
        &self.usage
    }

    /// The captured prompt and answer, when content capture was asked for.
    pub fn content(&self) -> Option<ContentInfo> {
        let c = self.captured.as_ref()?;
        let text = |b: &[u8]| (!b.is_empty()).then(|| String::from_utf8_lossy(b).into_owned());
        Some(ContentInfo { prompt: text(&c.prompt), response: text(&c.response) })
    }

    /// What the request side decided about the answer (tests, `explain`).
    pub fn answer_ctx(&self) -> &AnswerCtx {
        &self.answer
    }
}

#[cfg(test)]
mod tests;
