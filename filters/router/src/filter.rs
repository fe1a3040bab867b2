//! proxy-wasm adapter for duo_router: turns callbacks into calls of the pure modules and applies
//! their plans with host calls. It decides nothing itself.
//!
//! Request: headers → [`decide::plan`]. A decision applies at once (local reply, or cluster header +
//! `:authority` (+ vendor `:path`) and Continue). A self-hosted feature pauses (Envoy must be told
//! `allow_on_headers_stop_iteration: true`, docs/envoy-facts.md E1), buffers the body up to
//! `max_request_bytes`, and at end of stream calls [`decide::decide_body`], sets the headers
//! (Envoy re-routes after header changes) and applies [`Translation::request`]'s edit. Response:
//! a self-hosted answer follows [`Translation::response_headers`]' plan (answer now, hold whole,
//! or stream chunk by chunk); others pass unchanged. A host call that would leave GitLab with
//! untranslated bytes fails closed (a complete 503 before the response started, a reset after).
//! `duo_route` is published when the route is decided, `duo_usage` when the answer ends.
//!
//! A watchdog on the root context's tick answers 500 and logs an error for any request held at
//! its headers whose body callback never arrives within `body_wait_ms` — what Envoy does when
//! `allow_on_headers_stop_iteration` is missing (see docs/router.md).

use crate::agent_platform;
use crate::config::{Config, Provider};
use crate::decide::{self, Decision, Outcome, Pending, Plan, Reason, Target};
use crate::metrics;
use crate::prompts::PromptSet;
use crate::translate::{HeadersPlan, RequestCtx, RequestEdit, Translation};
use duo_core::catalogue::{Endpoint, EndpointKind};
use duo_core::errors::{self, GitlabError};
use duo_core::handoff::{self, AuthInfo, RouteInfo};
use duo_core::version::GitlabVersion;
use serde::Serialize;
use serde_json::Value;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel};
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

/// Per-VM state shared by the root context and every stream of this worker.
struct Shared {
    counters: duo_kit::Counters,
    /// Streams held at their headers, waiting for their first body callback.
    waiting: BTreeMap<u32, Waiting>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared { counters: duo_kit::Counters::new("duo_router", metrics::DROPPED, metrics::MAX_NAMES), waiting: BTreeMap::new() }
    }
}

struct Waiting {
    deadline_ms: u64,
    route: RouteInfo,
}

impl Shared {
    fn count(&mut self, name: &str) {
        self.counters.count(name);
    }
}

/// Writes a hand-off record for duo_logger. Its loss changes the log, never GitLab's answer, so
/// a failure is logged and the request goes on.
fn hand_off<T: Serialize>(key: &str, value: &T) {
    if duo_kit::set_filter_state(key, value).is_err() {
        log::warn!("duo_router: could not write the `{key}` hand-off for duo_logger");
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
            self.shared.borrow_mut().count(metrics::BODY_NEVER_ARRIVED);
            if hostcalls::set_effective_context(id).is_err() {
                continue; // the stream is gone
            }
            waiting.route.error = Some("body_never_arrived".to_owned());
            hand_off(handoff::ROUTE, &waiting.route);
            let e = GitlabError::detail(
                500,
                "duo_router did not receive the request body: its Envoy filter config needs allow_on_headers_stop_iteration: true",
            );
            if duo_kit::send_error(&e, &[]).is_err() {
                log::error!("duo_router: #{id} could not answer the held request");
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(duo_kit::timing::wrap("duo_router", Box::new(Exchange {
            id: context_id,
            config: self.config.clone(),
            prompts: self.prompts.clone(),
            shared: self.shared.clone(),
            translation: None,
            pending: None,
            target: None,
            replied: false,
            upstream_status: None,
            usage_published: false,
            sent_headers: duo_kit::Headers::default(),
            grpc: false,
        })))
    }
}

/// One request/response exchange through the router.
struct Exchange {
    id: u32,
    config: Option<Rc<Config>>,
    prompts: Option<Rc<PromptSet>>,
    shared: Rc<RefCell<Shared>>,
    /// A self-hosted call's translation (request and answer), once the request was rewritten.
    translation: Option<Translation>,
    /// A self-hosted request waiting for the end of its body.
    pending: Option<Pending>,
    /// Where it was sent, once decided.
    target: Option<Target>,
    /// We answered locally: the response is ours, not an upstream's.
    replied: bool,
    /// Status of an upstream that is not translated (vendored, aigw).
    upstream_status: Option<u32>,
    usage_published: bool,
    /// The request headers as GitLab sent them (read once; the decision and the translation
    /// read what they need from here).
    sent_headers: duo_kit::Headers,
    /// A gRPC call (the Agent Platform): local replies are gRPC-shaped.
    grpc: bool,
}

impl Context for Exchange {}

impl Exchange {
    fn stop_waiting(&mut self) {
        self.shared.borrow_mut().waiting.remove(&self.id);
    }

    fn reply(&mut self, e: &GitlabError) -> Action {
        self.replied = true;
        // A body-validation 422 is shown as GitLab's gateway shows it to this caller.
        let verbose = self.sent_headers.get(errors::VERBOSE_AI_LOGS_HEADER).as_deref() == Some("true");
        let version = GitlabVersion::from_header(self.sent_headers.get("x-gitlab-version").as_deref());
        let e = &errors::shown_validation_error(e.clone(), verbose, version);
        let sent = if self.grpc { duo_kit::send_grpc_error(&duo_core::grpc::GrpcReply::from_gitlab(e), &[]) } else { duo_kit::send_error(e, &[]) };
        if sent.is_err() {
            log::error!("duo_router: #{} could not send its local reply", self.id);
        }
        Action::Pause
    }

    /// Applies a decision: local reply, or the target's headers (then the translation for
    /// self-hosted).
    fn apply(&mut self, config: &Config, outcome: Outcome, body: Option<(&Value, &[u8])>) -> Action {
        let Outcome { decision, endpoint, route } = outcome;
        let label = route.feature.clone().unwrap_or_else(|| match &endpoint {
            Some(e) if e.prompt_id.is_some() => "model_check".to_owned(),
            _ => "public".to_owned(),
        });
        duo_kit::timing::span("handoff_route", || hand_off(handoff::ROUTE, &route));
        match decision {
            Decision::Reply { reply, reason } => {
                if !reason.is_answer() {
                    self.shared.borrow_mut().count(&metrics::refused(reason.name()));
                    log::debug!("duo_router: #{} {label}: refused ({})", self.id, reason.name());
                }
                self.reply(&reply)
            }
            Decision::Forward(target) => {
                self.shared.borrow_mut().count(&metrics::routed(target.provider.name(), &label));
                log::debug!("duo_router: #{} {label}: {} -> {}", self.id, target.provider.name(), target.cluster);
                let translated = match (target.provider, &endpoint, body) {
                    (Provider::SelfHosted, Some(endpoint), Some(body)) => match duo_kit::timing::span("translate", || self.translate_request(config, &target, endpoint, body)) {
                        Ok(t) => Some((t, body.1.len())),
                        Err(e) => return self.reply(&e),
                    },
                    _ => None,
                };
                let timeout = target.timeout_ms.map(|ms| ms.to_string());
                let mut set = target_headers(config, &target, timeout.as_deref());
                if let Some(((_, edit), _)) = &translated {
                    set.extend(edit.set.iter().map(|(k, v)| (*k, v.as_str())));
                }
                // The map as read in the headers callback, each header decided once by rule.
                let translating = translated.is_some();
                let drop = |name: &[u8]| if translating { !RequestEdit::keeps(name) } else { target.drops_sent_header(name, &config.cluster_header) };
                if let Err(e) = duo_kit::timing::span("write_headers", || duo_kit::write_request_headers(&self.sent_headers, drop, &set)) {
                    log::error!("duo_router: #{} could not set the upstream headers ({e:?})", self.id);
                    return self.reply(&GitlabError::inference_failed());
                }
                if let Some(((mut translation, edit), old_len)) = translated {
                    if duo_kit::timing::span("replace_body", || duo_kit::replace_body(duo_kit::Body::Request, old_len, &edit.body)).is_err() {
                        log::error!("duo_router: #{} could not replace the request body", self.id);
                        return self.reply(&GitlabError::inference_failed());
                    }
                    if let Some(limit) = duo_kit::timing::span("content_wanted", || duo_kit::filter_state::<usize>(handoff::CONTENT_WANTED)) {
                        translation.capture_content(limit, &edit.body);
                    }
                    self.translation = Some(translation);
                }
                self.target = Some(target);
                Action::Continue
            }
        }
    }

    /// The whole body of a self-hosted request is there: decide and apply.
    fn finish_request(&mut self, config: &Config, pending: Pending, size: usize) -> Action {
        self.stop_waiting();
        let bytes = duo_kit::timing::span("get_body", || hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size).ok().flatten().unwrap_or_default());
        match duo_kit::timing::span("parse_body", || decide::parse_body(&bytes)) {
            Err(e) => {
                let outcome = decide::refuse_body(pending, e, Reason::InvalidBody);
                self.apply(config, outcome, None)
            }
            Ok(body) => {
                let outcome = duo_kit::timing::span("decide_body", || decide::decide_body(config, pending, &body));
                self.apply(config, outcome, Some((&body, &bytes)))
            }
        }
    }

    /// [`Translation::request`] for this request: the translation of its answer and the edit
    /// that makes the platform's request (applied by [`Self::apply`], nothing here calls the
    /// host but to read the auth hand-off).
    fn translate_request(&self, config: &Config, target: &Target, endpoint: &Endpoint, (json, body): (&Value, &[u8])) -> Result<(Translation, RequestEdit), GitlabError> {
        let prompts = self.prompts.clone().ok_or_else(GitlabError::inference_failed)?;
        // Only Duo Chat's tools follow the token's scopes: other requests skip the hand-off read
        // and its parse (a host call and ~30 strings).
        let scopes = if endpoint.kind == EndpointKind::ChatAgentV2 {
            duo_kit::filter_state::<AuthInfo>(handoff::AUTH).filter(|a| a.result == "ok").map(|a| a.scopes)
        } else {
            None
        };
        let flags = self.sent_headers.value("x-gitlab-enabled-feature-flags");
        let request_id = self.sent_headers.value("x-request-id").unwrap_or_default();
        let ctx = RequestCtx {
            request_id: &request_id,
            now_unix: now_ms() / 1000,
            scopes,
            feature_flags: flags.as_deref(),
            gitlab_version: GitlabVersion::from_header(self.sent_headers.value("x-gitlab-version").as_deref()),
        };
        Translation::request(config, &prompts, target, endpoint, (json, body.len()), &ctx)
    }

    /// Upstream response headers of a self-hosted call, per the translation's plan.
    fn translate_response_headers(&mut self, status: Option<u32>, end_of_stream: bool) -> Action {
        let Some(t) = self.translation.as_mut() else { return Action::Continue };
        match t.response_headers(status, end_of_stream, now_ms() / 1000) {
            HeadersPlan::AnswerNow => {
                // No body at all (a 200 with `content-length: 0`, an empty 503 from a load
                // balancer): Envoy has no body buffer to replace here (set_buffer answers
                // BadArgument and the SDK panics on it), so the translated answer goes as a local
                // reply, which Envoy sends straight to the client (these headers have not gone
                // downstream).
                let via = t.needs_code_details().then(via_upstream).flatten();
                let upstream = duo_kit::Headers::response().lossy_pairs();
                let answer = t.whole(&upstream, &[], via, now_ms() / 1000);
                let headers: Vec<(&str, &str)> =
                    answer.set.iter().filter(|(k, _)| *k != "content-length").map(|(k, v)| (*k, v.as_str())).collect();
                self.replied = true;
                self.publish_usage();
                if duo_kit::send_response(answer.status, &headers, &answer.body).is_err() {
                    log::error!("duo_router: #{} could not send the translated answer", self.id);
                }
                Action::Pause
            }
            HeadersPlan::Hold => Action::Pause,
            HeadersPlan::PassThrough => {
                // Until it ends, the record says how far it got (a reset never ends it).
                hand_off(handoff::USAGE, t.usage());
                Action::Continue
            }
            HeadersPlan::Stream { set, remove } => {
                let current = duo_kit::Headers::response();
                if duo_kit::write_response_headers(&current, |n| remove.iter().any(|r| r.as_bytes() == n), &set).is_err() {
                    return self.fail_response("could not rewrite the response headers");
                }
                // Provisional record: if the stream never ends (upstream reset), the logger's
                // on_log (which runs before ours) still sees that it was cut.
                hand_off(handoff::USAGE, t.usage());
                Action::Continue
            }
        }
    }

    /// The whole upstream answer is held (end of stream in the body callback): translate it and
    /// replace status, headers and body. Any failed write fails closed: the headers have not
    /// gone downstream, so GitLab gets a complete 503 instead of untranslated bytes.
    fn finish_held(&mut self, size: usize) -> Action {
        let Some(t) = self.translation.as_mut() else { return Action::Continue };
        let body = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size).ok().flatten().unwrap_or_default();
        let current = duo_kit::Headers::response();
        let upstream = current.lossy_pairs();
        let via = t.needs_code_details().then(via_upstream).flatten();
        let answer = t.whole(&upstream, &body, via, now_ms() / 1000);
        let write = || -> Result<(), proxy_wasm::types::Status> {
            let status = answer.status.to_string();
            let set: Vec<(&str, &str)> =
                std::iter::once((":status", status.as_str())).chain(answer.set.iter().map(|(k, v)| (*k, v.as_str()))).collect();
            duo_kit::write_response_headers(&current, |n| answer.remove.iter().any(|r| r.as_bytes() == n), &set)?;
            duo_kit::replace_body(duo_kit::Body::Response, size, &answer.body)
        };
        if write().is_err() {
            return self.fail_response("could not replace the response");
        }
        self.publish_usage();
        Action::Continue
    }

    /// A host call that rewrites the answer failed: GitLab must not get the upstream's bytes
    /// under our headers. Before the response started this is a complete 503; after, Envoy
    /// resets the stream (a cut answer never looks complete).
    fn fail_response(&mut self, why: &str) -> Action {
        log::error!("duo_router: #{} {why}; failing closed", self.id);
        if let Some(t) = self.translation.as_mut() {
            t.fail();
        }
        self.publish_usage();
        self.reply(&GitlabError::inference_failed())
    }

    /// One upstream chunk of a streamed self-hosted answer.
    fn translate_chunk(&mut self, size: usize, end_of_stream: bool) -> Action {
        let Some(t) = self.translation.as_mut() else { return Action::Continue };
        let upstream = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size).ok().flatten().unwrap_or_default();
        let chunk = t.chunk(&upstream, end_of_stream);
        if duo_kit::replace_body(duo_kit::Body::Response, size, &chunk.bytes).is_err() {
            return self.fail_response("could not replace a stream chunk");
        }
        if chunk.done {
            self.publish_usage();
        }
        if chunk.reset {
            // After the response started, a local reply resets the stream: a broken stream
            // whose framing has no error event must never look complete.
            log::debug!("duo_router: #{} the upstream stream broke; resetting GitLab's", self.id);
            return self.reply(&GitlabError::inference_failed());
        }
        Action::Continue
    }

    fn publish_usage(&mut self) {
        if self.usage_published {
            return;
        }
        self.usage_published = true;
        match &self.translation {
            Some(t) => {
                hand_off(handoff::USAGE, t.usage());
                if let Some(content) = t.content() {
                    hand_off(handoff::CONTENT, &content);
                }
            }
            None => hand_off(handoff::USAGE, &handoff::UsageInfo { upstream_status: self.upstream_status, ..Default::default() }),
        }
    }
}

/// The headers every forwarded request gets: the cluster to route to, the upstream's authority
/// and path, its timeout, the Agent Platform's model metadata.
fn target_headers<'t>(config: &'t Config, t: &'t Target, timeout_ms: Option<&'t str>) -> Vec<(&'t str, &'t str)> {
    let mut set = Vec::with_capacity(16);
    set.push((config.cluster_header.as_str(), t.cluster.as_str()));
    set.push((":authority", t.authority.as_str()));
    if let Some(path) = &t.path {
        set.push((":path", path.as_str()));
    }
    if let Some(ms) = timeout_ms {
        set.push(("x-envoy-upstream-rq-timeout-ms", ms));
    }
    if let Some(metadata) = &t.metadata {
        set.push((agent_platform::MODEL_METADATA_HEADER, metadata.0.as_str()));
    }
    set
}

/// Envoy's `response.code_details` says the answer came from the upstream (`via_upstream`), not
/// from Envoy itself (no healthy upstream, connect failure, timeout).
fn via_upstream() -> Option<bool> {
    duo_kit::property(&["response", "code_details"]).map(|d| d == b"via_upstream")
}

impl HttpContext for Exchange {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return self.reply(&GitlabError::detail(500, "duo_router is not configured"));
        };
        self.shared.borrow_mut().count(metrics::REQUESTS);
        // One host call for every header this request needs (each single read is a VM crossing).
        let headers = duo_kit::Headers::request();
        // The client never picks the cluster: a forwarded request's one header write (`apply`)
        // drops whatever it sent under the cluster header and sets the decision's value.
        let method = headers.value(":method").unwrap_or_default().into_owned();
        let path = headers.value(":path").unwrap_or_default().into_owned();
        let declared = headers.value("content-length").and_then(|v| v.trim().parse::<u64>().ok());
        self.grpc = agent_platform::is_grpc(&path, headers.value("content-type").as_deref());
        if self.grpc {
            // Unknown protocol counts as HTTP/2: only a known HTTP/1.x is refused.
            let http2 = !duo_kit::property(&["request", "protocol"]).is_some_and(|p| p.starts_with(b"HTTP/1"));
            let metadata = headers.get(agent_platform::MODEL_METADATA_HEADER);
            let feature_setting = headers.get(agent_platform::FEATURE_SETTING_HEADER);
            let call = agent_platform::Call { path: &path, metadata: metadata.as_deref(), feature_setting: feature_setting.as_deref(), http2 };
            if let Some(outcome) = agent_platform::plan(&config, &call) {
                self.sent_headers = headers;
                return self.apply(&config, outcome, None);
            }
        }
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
        // The status decides the plan; a translated answer reads the whole map only where its
        // plan needs it (a stream's rewrite, a held answer's end).
        let status = duo_kit::response_header(":status").and_then(|s| s.parse::<u32>().ok());
        if let (Some(t), Some(s)) = (&self.target, status) {
            self.shared.borrow_mut().count(&metrics::upstream(t.provider.name(), s));
        }
        if self.translation.is_some() {
            return self.translate_response_headers(status, end_of_stream);
        }
        self.upstream_status = status;
        self.publish_usage();
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(t) = &self.translation else { return Action::Continue };
        if self.replied {
            return Action::Continue;
        }
        if t.holds_body() {
            return if end_of_stream { self.finish_held(body_size) } else { Action::Pause };
        }
        if t.passes_through() {
            let chunk = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size).ok().flatten().unwrap_or_default();
            if let Some(t) = self.translation.as_mut()
                && t.observe(&chunk, end_of_stream)
            {
                self.publish_usage();
            }
            return Action::Continue;
        }
        self.translate_chunk(body_size, end_of_stream)
    }

    fn on_log(&mut self) {
        self.stop_waiting();
    }
}
