//! proxy-wasm adapter for duo_router: turns callbacks into `decide` calls and applies the result.
//! All decisions are pure functions in `decide.rs`; this file only reads and writes the host.
//!
//! Request: headers → [`decide::plan`]. A decision applies at once (local reply, or cluster header +
//! `:authority` (+ vendor `:path`) and Continue). A self-hosted feature pauses (Envoy must be told
//! `allow_on_headers_stop_iteration: true`, docs/envoy-facts.md E1), buffers the body up to
//! `max_request_bytes`, and at end of stream calls [`decide::decide_body`], sets the headers
//! (Envoy re-routes after header changes, F6) and hands the body to the codec
//! ([`Stream::rewrite_request`]). Response: self-hosted answers go through the codec
//! ([`Stream::translate_response_headers`], [`Stream::translate_response_chunk`]); others pass
//! unchanged. `duo_route` is published when the route is decided, `duo_usage` when the answer ends.
//!
//! A watchdog on the root context's tick answers 500 and logs an error for any request held at
//! its headers whose body callback never arrives within `body_wait_ms` — what Envoy does when
//! `allow_on_headers_stop_iteration` is missing (see docs/router.md).

use crate::chat;
use crate::codec::{self, AnswerCtx, AnswerShape, UpstreamResponse};
use crate::config::{Config, Provider};
use crate::decide::{self, Decision, Outcome, Pending, Plan, Reason, Target};
use crate::prompts::PromptSet;
use crate::stream::{Ended, Framing, StreamTranslator};
use duo_core::catalogue::{Endpoint, EndpointKind};
use duo_core::errors::GitlabError;
use duo_core::handoff::{self, AuthInfo, ContentInfo, RouteInfo, UsageInfo};
use serde_json::Value;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MetricType};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { config: None, prompts: None, shared: Rc::new(RefCell::new(Shared::default())) })
    });
}}

/// Metric names (Envoy shows them as `wasmcustom.<name>`; Prometheus as `envoy_wasmcustom_...`).
mod metric {
    /// Every request the router saw.
    pub const REQUESTS: &str = "duo_router.requests";
    /// `duo_router.routed.<provider>.<feature>`: forwarded requests (`feature` is `model_check`
    /// for the admin's "Test connection", `public` for model definitions).
    pub const ROUTED: &str = "duo_router.routed";
    /// `duo_router.refused.<reason>`: local replies (reasons in `decide::Reason::name`).
    pub const REFUSED: &str = "duo_router.refused";
    /// Requests the body watchdog answered (allow_on_headers_stop_iteration missing).
    pub const BODY_NEVER_ARRIVED: &str = "duo_router.body_never_arrived";
    /// `duo_router.upstream.<provider>.<1xx..5xx>`: upstream answers by status class.
    pub const UPSTREAM: &str = "duo_router.upstream";
}

/// Per-VM state shared by the root context and every stream of this worker.
#[derive(Default)]
struct Shared {
    metrics: BTreeMap<String, u32>,
    /// Streams held at their headers, waiting for their first body callback.
    waiting: BTreeMap<u32, Waiting>,
}

struct Waiting {
    deadline_ms: u64,
    route: RouteInfo,
}

impl Shared {
    fn count(&mut self, name: &str) {
        let id = match self.metrics.get(name) {
            Some(id) => *id,
            None => match hostcalls::define_metric(MetricType::Counter, name) {
                Ok(id) => {
                    self.metrics.insert(name.to_owned(), id);
                    id
                }
                Err(_) => return,
            },
        };
        let _ = hostcalls::increment_metric(id, 1);
    }
}

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

struct Root {
    config: Option<Rc<Config>>,
    /// Built-in prompts plus the config's overrides, compiled once per VM.
    prompts: Option<Rc<PromptSet>>,
    shared: Rc<RefCell<Shared>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        duo_kit::follow_host_log_level();
        let bytes = duo_kit::plugin_configuration().unwrap_or_default();
        match Config::parse(&bytes) {
            Ok(config) => {
                let prompts = match PromptSet::new(&config.prompts) {
                    Ok(p) => p,
                    Err(e) => {
                        log::error!("duo_router: {e}");
                        return false;
                    }
                };
                self.prompts = Some(Rc::new(prompts));
                let period = match config.body_wait_ms {
                    0 => Duration::ZERO,
                    ms => Duration::from_millis((ms / 4).clamp(50, 1000)),
                };
                if hostcalls::set_tick_period(period).is_err() {
                    log::warn!("duo_router: no tick timer; the body watchdog is off");
                }
                log::info!(
                    "duo_router: configured ({}, {} models, {} feature entries)",
                    config.configuration_type.name(),
                    config.models.len(),
                    config.features.len()
                );
                self.config = Some(Rc::new(config));
                true
            }
            Err(e) => {
                log::error!("duo_router: {e}");
                false
            }
        }
    }

    /// The body watchdog: Envoy without `allow_on_headers_stop_iteration: true` never calls the
    /// body callback of a filter that paused at headers, and the request would hang.
    fn on_tick(&mut self) {
        let now = now_ms();
        let expired: Vec<(u32, Waiting)> = {
            let mut shared = self.shared.borrow_mut();
            let ids: Vec<u32> = shared.waiting.iter().filter(|(_, w)| w.deadline_ms <= now).map(|(id, _)| *id).collect();
            ids.into_iter().filter_map(|id| shared.waiting.remove(&id).map(|w| (id, w))).collect()
        };
        for (id, mut waiting) in expired {
            log::error!(
                "duo_router: #{id} was held at its request headers and Envoy never delivered the body: \
                 set `allow_on_headers_stop_iteration: true` in this wasm filter's config (answering 500)"
            );
            self.shared.borrow_mut().count(metric::BODY_NEVER_ARRIVED);
            if hostcalls::set_effective_context(id).is_err() {
                continue; // the stream is gone
            }
            waiting.route.error = Some("body_never_arrived".to_owned());
            let _ = duo_kit::set_filter_state(handoff::ROUTE, &waiting.route);
            let e = GitlabError::detail(
                500,
                "duo_router did not receive the request body: its Envoy filter config needs allow_on_headers_stop_iteration: true",
            );
            let _ = duo_kit::send_error(&e, &[]);
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(duo_kit::timing::wrap("duo_router", Box::new(Stream {
            id: context_id,
            config: self.config.clone(),
            prompts: self.prompts.clone(),
            shared: self.shared.clone(),
            answer: None,
            response: Response::PassThrough,
            pending: None,
            target: None,
            endpoint: None,
            replied: false,
            usage: UsageInfo::default(),
            usage_published: false,
            sent_headers: duo_kit::Headers::default(),
            content: None,
        })))
    }
}

/// What happens to the upstream answer of a self-hosted call.
enum Response {
    /// Not ours to translate (vendored, aigw, local replies) or already done.
    PassThrough,
    /// Held whole, then translated (non-streaming answers and every error status).
    Buffer,
    /// Translated chunk by chunk.
    Stream(Box<StreamTranslator>),
}

struct Stream {
    id: u32,
    config: Option<Rc<Config>>,
    prompts: Option<Rc<PromptSet>>,
    shared: Rc<RefCell<Shared>>,
    /// The codec's context for translating the answer (self-hosted only).
    answer: Option<AnswerCtx>,
    response: Response,
    /// A self-hosted request waiting for the end of its body.
    pending: Option<Pending>,
    /// Where it was sent, once decided.
    target: Option<Target>,
    endpoint: Option<Endpoint>,
    /// We answered locally: the response is ours, not an upstream's.
    replied: bool,
    usage: UsageInfo,
    usage_published: bool,
    /// The request headers as GitLab sent them: only headers it sent are removed (each removal
    /// is a host call).
    sent_headers: duo_kit::Headers,
    /// Prompt and answer text, kept only when duo_logger asked for content (its policy allows
    /// it for this request) and cut at its byte limit; published with the usage.
    content: Option<CapturedContent>,
}

struct CapturedContent {
    limit: usize,
    prompt: Vec<u8>,
    response: Vec<u8>,
}

impl CapturedContent {
    fn append_response(&mut self, bytes: &[u8]) {
        let room = self.limit.saturating_sub(self.response.len());
        self.response.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn info(&self) -> ContentInfo {
        let text = |b: &[u8]| (!b.is_empty()).then(|| String::from_utf8_lossy(b).into_owned());
        ContentInfo { prompt: text(&self.prompt), response: text(&self.response) }
    }
}

impl Context for Stream {}

impl Stream {
    fn stop_waiting(&mut self) {
        self.shared.borrow_mut().waiting.remove(&self.id);
    }

    fn reply(&mut self, e: &GitlabError) -> Action {
        self.replied = true;
        if duo_kit::send_error(e, &[]).is_err() {
            log::error!("duo_router: #{} could not send its local reply", self.id);
        }
        Action::Pause
    }

    /// Applies a decision: local reply, or the target's headers (then the codec for self-hosted).
    fn apply(&mut self, config: &Config, outcome: Outcome, body: Option<(&Value, &[u8])>) -> Action {
        let Outcome { decision, endpoint, route } = outcome;
        let label = route.feature.clone().unwrap_or_else(|| match &endpoint {
            Some(e) if e.prompt_id.is_some() => "model_check".to_owned(),
            _ => "public".to_owned(),
        });
        let _ = duo_kit::set_filter_state(handoff::ROUTE, &route);
        match decision {
            Decision::Reply { reply, reason } => {
                if reason != Reason::Health {
                    self.shared.borrow_mut().count(&format!("{}.{}", metric::REFUSED, reason.name()));
                    log::debug!("duo_router: #{} {label}: refused ({})", self.id, reason.name());
                }
                self.reply(&reply)
            }
            Decision::Forward(target) => {
                if let Err(e) = self.set_target_headers(config, &target) {
                    log::error!("duo_router: #{} could not set the upstream headers ({e:?})", self.id);
                    return self.reply(&GitlabError::inference_failed());
                }
                self.shared.borrow_mut().count(&format!("{}.{}.{label}", metric::ROUTED, target.provider.name()));
                log::debug!("duo_router: #{} {label}: {} -> {}", self.id, target.provider.name(), target.cluster);
                if target.provider == Provider::SelfHosted
                    && let (Some(endpoint), Some(body)) = (&endpoint, body)
                    && let Err(e) = self.rewrite_request(config, &target, endpoint, body)
                {
                    return self.reply(&e);
                }
                self.endpoint = endpoint;
                self.target = Some(target);
                Action::Continue
            }
        }
    }

    fn set_target_headers(&self, config: &Config, t: &Target) -> Result<(), proxy_wasm::types::Status> {
        duo_kit::set_request_header(&config.cluster_header, Some(&t.cluster))?;
        duo_kit::set_request_header(":authority", Some(&t.authority))?;
        if let Some(path) = &t.path {
            duo_kit::set_request_header(":path", Some(path))?;
        }
        if let Some(ms) = t.timeout_ms {
            duo_kit::set_request_header("x-envoy-upstream-rq-timeout-ms", Some(&ms.to_string()))?;
        }
        if t.strip_authorization && self.sent_headers.contains("authorization") {
            duo_kit::set_request_header("authorization", None)?;
        }
        Ok(())
    }

    /// The whole body of a self-hosted request is there: decide and apply.
    fn finish_request(&mut self, config: &Config, pending: Pending, size: usize) -> Action {
        self.stop_waiting();
        let bytes = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size).ok().flatten().unwrap_or_default();
        match decide::parse_body(&bytes) {
            Err(e) => {
                let outcome = decide::refuse_body(pending, e, Reason::InvalidBody);
                self.apply(config, outcome, None)
            }
            Ok(body) => {
                let outcome = decide::decide_body(config, pending, &body);
                self.apply(config, outcome, Some((&body, &bytes)))
            }
        }
    }

    // ---- codec seam: the provider translation plugs in here ----

    /// Rewrites a self-hosted request for its model platform (`codec::build_upstream_request`):
    /// method, path, headers (the platform credential; GitLab's JWT and length removed), body.
    fn rewrite_request(
        &mut self,
        config: &Config,
        target: &Target,
        endpoint: &Endpoint,
        (json, body): (&Value, &[u8]),
    ) -> Result<(), GitlabError> {
        let model = target.model.as_ref().and_then(|n| config.models.get(n)).ok_or_else(GitlabError::inference_failed)?;
        let prompts = self.prompts.clone().ok_or_else(GitlabError::inference_failed)?;
        let now_unix = now_ms() / 1000;
        let up = if endpoint.kind == EndpointKind::ChatAgentV2 {
            // Duo Chat (ReAct): the chat module renders the step; tools follow the token's scopes.
            let scopes = duo_kit::filter_state::<AuthInfo>(handoff::AUTH).filter(|a| a.result == "ok").map(|a| a.scopes);
            let date = chat::CivilDate::from_unix_seconds(now_unix);
            let step = chat::prepare_step(json, model.family, model.platform, date, scopes)?;
            let api_key = json.pointer("/model_metadata/api_key").and_then(Value::as_str).map(str::to_owned);
            codec::build_rendered_request(model, AnswerShape::ChatAgent, step.rendered(), true, api_key)?
        } else {
            let call = codec::Call { kind: endpoint.kind, prompt_id: endpoint.prompt_id.as_deref(), model, prompts: &prompts, now_unix };
            codec::build_upstream_request_parsed(&call, json, body.len())?
        };
        let mut up = up;
        up.answer.feature_flags = self.sent_headers.get("x-gitlab-enabled-feature-flags").map(|v| codec::feature_flags(&v)).unwrap_or_default();
        let host = |r: Result<(), proxy_wasm::types::Status>| r.map_err(|_| GitlabError::inference_failed());
        // Only what GitLab sent (each removal is a host call), and not what is set again below.
        let resent = |name: &&str| *name == "content-length" || up.set_headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
        for name in up.remove_headers.iter().filter(|n| self.sent_headers.contains(n) && !resent(n)) {
            host(duo_kit::set_request_header(name, None))?;
        }
        for (name, value) in &up.set_headers {
            host(duo_kit::set_request_header(name, Some(value)))?;
        }
        host(duo_kit::set_request_header(":method", Some(up.method)))?;
        host(duo_kit::set_request_header(":path", Some(&up.path)))?;
        host(duo_kit::set_request_header("content-length", Some(&up.body.len().to_string())))?;
        host(duo_kit::replace_body(duo_kit::Body::Request, body.len(), &up.body))?;
        // The prompt as the model receives it (the rendered request body; keys travel in headers).
        self.content = duo_kit::filter_state::<usize>(handoff::CONTENT_WANTED).map(|limit| CapturedContent {
            limit,
            prompt: up.body[..up.body.len().min(limit)].to_vec(),
            response: Vec::new(),
        });
        self.answer = Some(up.answer);
        Ok(())
    }

    /// Upstream response headers of a self-hosted call: a 2xx stream is translated chunk by
    /// chunk; anything else is held whole and translated at its end. Nothing has gone to GitLab
    /// yet, so a failed rewrite still becomes a complete local reply.
    fn translate_response_headers(&mut self, status: Option<u32>, end_of_stream: bool) -> Action {
        let Some(ctx) = self.answer.clone() else {
            return Action::Continue;
        };
        let ok = status.is_some_and(|s| (200..300).contains(&s));
        if end_of_stream {
            // No body at all (a 200 with `content-length: 0`, an empty 503 from a load balancer):
            // Envoy has no body buffer to replace here (set_buffer answers BadArgument and the
            // SDK panics on it), so the translated answer goes as a local reply, which Envoy
            // sends straight to the client because these headers have not gone downstream.
            self.response = Response::PassThrough;
            let answer = self.translate_whole(&ctx, &[], duo_kit::Headers::response().into_lossy_pairs());
            let headers: Vec<(&str, &str)> = answer.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            self.replied = true;
            if duo_kit::send_response(answer.status, &headers, &answer.body).is_err() {
                log::error!("duo_router: #{} could not send the translated answer", self.id);
            }
            return Action::Pause;
        }
        if !(ctx.stream && ok) {
            self.response = Response::Buffer;
            return Action::Pause;
        }
        // The wire's API, not the entry's: FIM completions always use /v1/completions.
        let api = ctx.wire.api();
        let t = match ctx.shape {
            AnswerShape::ChatAgent => StreamTranslator::with_reframer(ctx.platform, api, Box::new(chat::ChatAgentReframer::new())),
            AnswerShape::PromptV2 => {
                StreamTranslator::new(ctx.platform, api, Framing::PromptResponses { usage_model: Some(ctx.model.clone()) })
            }
            AnswerShape::SuggestionsV4 => {
                let (engine, name) = codec::reported(&ctx);
                let framing = Framing::SuggestionsSse {
                    engine: engine.to_owned(),
                    name: name.to_owned(),
                    timestamp: now_ms() / 1000,
                    feature_flags: ctx.feature_flags.clone(),
                };
                StreamTranslator::new(ctx.platform, api, framing)
            }
            _ => StreamTranslator::new(ctx.platform, api, Framing::RawText),
        };
        let upstream = duo_kit::Headers::response().into_lossy_pairs();
        let rewrite = || -> Result<(), proxy_wasm::types::Status> {
            duo_kit::set_response_header("content-type", Some(t.content_type()))?;
            for (k, v) in t.extra_headers() {
                duo_kit::set_response_header(k, Some(v))?;
            }
            // The length goes with the old body (the stream is re-framed), and so does every
            // other header describing it.
            if upstream.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
                duo_kit::set_response_header("content-length", None)?;
            }
            for name in codec::stale_body_headers(&upstream) {
                duo_kit::set_response_header(name, None)?;
            }
            Ok(())
        };
        if rewrite().is_err() {
            return self.fail_response("could not rewrite the response headers");
        }
        // Provisional record: if the stream never ends (upstream reset), the logger's
        // on_log (which runs before ours) still sees that it was cut.
        let provisional = UsageInfo { error: Some("stream_truncated".to_owned()), ..self.usage.clone() };
        let _ = duo_kit::set_filter_state(handoff::USAGE, &provisional);
        self.response = Response::Stream(Box::new(t));
        Action::Continue
    }

    /// GitLab's answer for a complete upstream answer (`codec::translate_response`); records
    /// usage, error and captured content.
    fn translate_whole(&mut self, ctx: &AnswerCtx, body: &[u8], headers: Vec<(String, String)>) -> codec::GitlabAnswer {
        let status = self.usage.upstream_status.unwrap_or(502);
        let via_upstream =
            if codec::needs_code_details(status) { duo_kit::property(&["response", "code_details"]).map(|d| d == b"via_upstream") } else { None };
        let resp = UpstreamResponse { status, headers: &headers, body, via_upstream };
        let answer = codec::translate_response(ctx, &resp, now_ms() / 1000);
        if let Some(c) = &mut self.content {
            c.append_response(&answer.body);
        }
        if let Some(u) = answer.usage {
            self.usage.input_tokens = Some(u.input_tokens);
            self.usage.output_tokens = Some(u.output_tokens);
        }
        self.usage.error.clone_from(&answer.error);
        answer
    }

    /// The whole upstream answer is buffered (end of stream in the body callback): translate it
    /// and replace status, headers and body. Any failed write fails closed: the headers have not
    /// gone downstream, so GitLab gets a complete 503 instead of untranslated bytes.
    fn finish_buffered(&mut self, ctx: &AnswerCtx, size: usize) -> Action {
        self.response = Response::PassThrough;
        let body = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size).ok().flatten().unwrap_or_default();
        let upstream = duo_kit::Headers::response().into_lossy_pairs();
        let answer = self.translate_whole(ctx, &body, upstream.clone());
        let write = || -> Result<(), proxy_wasm::types::Status> {
            duo_kit::set_response_header(":status", Some(&answer.status.to_string()))?;
            for (k, v) in &answer.headers {
                duo_kit::set_response_header(k, Some(v))?;
            }
            for name in codec::stale_body_headers(&upstream) {
                duo_kit::set_response_header(name, None)?;
            }
            duo_kit::set_response_header("content-length", Some(&answer.body.len().to_string()))?;
            duo_kit::replace_body(duo_kit::Body::Response, size, &answer.body)
        };
        if write().is_err() {
            return self.fail_response("could not replace the response");
        }
        Action::Continue
    }

    /// A host call that rewrites the answer failed: GitLab must not get the upstream's bytes
    /// under our headers. Before the response started this is a complete 503; after, Envoy
    /// resets the stream (a cut answer never looks complete).
    fn fail_response(&mut self, why: &str) -> Action {
        log::error!("duo_router: #{} {why}; failing closed", self.id);
        self.response = Response::PassThrough;
        self.usage.error = Some("response_rewrite_failed".to_owned());
        self.publish_usage();
        self.reply(&GitlabError::inference_failed())
    }

    /// One upstream response chunk of a self-hosted call.
    fn translate_response_chunk(&mut self, size: usize, end_of_stream: bool) -> Action {
        match &mut self.response {
            Response::PassThrough => Action::Continue,
            Response::Buffer => {
                if !end_of_stream {
                    return Action::Pause;
                }
                match self.answer.clone() {
                    Some(ctx) => self.finish_buffered(&ctx, size),
                    None => {
                        self.response = Response::PassThrough;
                        Action::Continue
                    }
                }
            }
            Response::Stream(t) => {
                let chunk = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size).ok().flatten().unwrap_or_default();
                let mut out = Vec::new();
                let mut broken = t.push(&chunk, &mut out).err();
                if end_of_stream
                    && broken.is_none()
                    && let Ended::Broken(e) = t.finish(&mut out)
                {
                    broken = Some(e);
                }
                let usage = t.usage();
                let reset = broken.is_some() && !t.error_event_written();
                if duo_kit::replace_body(duo_kit::Body::Response, size, &out).is_err() {
                    return self.fail_response("could not replace a stream chunk");
                }
                if let Some(c) = &mut self.content {
                    c.append_response(&out);
                }
                self.usage.input_tokens = usage.input_tokens.or(self.usage.input_tokens);
                self.usage.output_tokens = usage.output_tokens.or(self.usage.output_tokens);
                if let Some(e) = broken {
                    self.usage.error = Some(e.log_reason());
                    self.response = Response::PassThrough;
                    self.publish_usage();
                    if reset {
                        // After the response started, a local reply resets the stream (F16):
                        // a broken raw-text stream must never look complete.
                        let _ = duo_kit::send_error(&GitlabError::inference_failed(), &[]);
                        return Action::Pause;
                    }
                }
                Action::Continue
            }
        }
    }

    fn publish_usage(&mut self) {
        if !self.usage_published {
            self.usage_published = true;
            let _ = duo_kit::set_filter_state(handoff::USAGE, &self.usage);
            if let Some(c) = &self.content {
                let _ = duo_kit::set_filter_state(handoff::CONTENT, &c.info());
            }
        }
    }

    fn is_self_hosted(&self) -> bool {
        self.target.as_ref().is_some_and(|t| t.provider == Provider::SelfHosted)
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return self.reply(&GitlabError::detail(500, "duo_router is not configured"));
        };
        self.shared.borrow_mut().count(metric::REQUESTS);
        // One host call for every header this request needs (each single read is a VM crossing).
        let headers = duo_kit::Headers::request();
        // The client never picks the cluster: only a decision below sets this header.
        if headers.contains(&config.cluster_header) && duo_kit::set_request_header(&config.cluster_header, None).is_err() {
            return self.reply(&GitlabError::inference_failed());
        }
        let method = headers.get(":method").unwrap_or_default();
        let path = headers.get(":path").unwrap_or_default();
        let declared = headers.get("content-length").and_then(|v| v.trim().parse::<u64>().ok());
        self.sent_headers = headers;
        match decide::plan(&config, &method, &path) {
            Plan::Decided(outcome) => self.apply(&config, outcome, None),
            Plan::NeedBody(pending) => {
                if declared.is_some_and(|n| n > config.max_request_bytes) {
                    let outcome = decide::refuse_body(pending, decide::too_large(&config), Reason::TooLarge);
                    return self.apply(&config, outcome, None);
                }
                if end_of_stream {
                    return self.finish_request(&config, pending, 0);
                }
                if config.body_wait_ms > 0 {
                    let waiting = Waiting { deadline_ms: now_ms().saturating_add(config.body_wait_ms), route: pending.route.clone() };
                    self.shared.borrow_mut().waiting.insert(self.id, waiting);
                }
                self.pending = Some(pending);
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.stop_waiting();
        let Some(pending) = self.pending.take() else {
            return Action::Continue;
        };
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        if u64::try_from(body_size).unwrap_or(u64::MAX) > config.max_request_bytes {
            let outcome = decide::refuse_body(pending, decide::too_large(&config), Reason::TooLarge);
            return self.apply(&config, outcome, None);
        }
        if !end_of_stream {
            self.pending = Some(pending);
            return Action::Pause;
        }
        self.finish_request(&config, pending, body_size)
    }

    /// With trailers, the body callback never sees end_of_stream (Coraza's lesson).
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        let (Some(pending), Some(config)) = (self.pending.take(), self.config.clone()) else {
            return Action::Continue;
        };
        let size = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, usize::MAX).ok().flatten().map_or(0, |b| b.len());
        if u64::try_from(size).unwrap_or(u64::MAX) > config.max_request_bytes {
            let outcome = decide::refuse_body(pending, decide::too_large(&config), Reason::TooLarge);
            return self.apply(&config, outcome, None);
        }
        self.finish_request(&config, pending, size)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.replied {
            return Action::Continue;
        }
        let status = duo_kit::response_header(":status").and_then(|s| s.parse::<u32>().ok());
        self.usage.upstream_status = status;
        if let (Some(t), Some(s)) = (&self.target, status) {
            let name = format!("{}.{}.{}xx", metric::UPSTREAM, t.provider.name(), s / 100);
            self.shared.borrow_mut().count(&name);
        }
        let action = if self.is_self_hosted() { self.translate_response_headers(status, end_of_stream) } else { Action::Continue };
        if end_of_stream || !self.is_self_hosted() {
            self.publish_usage();
        }
        action
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.replied || !self.is_self_hosted() {
            return Action::Continue;
        }
        let action = self.translate_response_chunk(body_size, end_of_stream);
        if end_of_stream {
            self.publish_usage();
        }
        action
    }

    fn on_log(&mut self) {
        self.stop_waiting();
    }
}
