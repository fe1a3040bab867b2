//! proxy-wasm adapter for duo_auth: turns callbacks into calls of the pure modules and applies
//! what they decide. The only file of this crate that talks to the host.
//!
//! Keys: the root context of every worker fetches the `jwks_sources` on its tick (one worker
//! claims each fetch with CAS on `duo_auth.attempt.<source>`) and writes the keys to shared data
//! `duo_auth.keys` (CAS loop). Request contexts read that entry and prepare the keys once per
//! version (the shared-data CAS), per VM. An unknown `kid` makes the request context refetch
//! (at most once per source every 5 s across workers) and decide again when the answer comes.
//! Requests with unknown kids that arrive, on any worker, while that refetch is under way wait
//! for it rather than being refused (GitLab signs with a new key from its first request on):
//! the fetching request wakes the waiters of its own VM, each root's tick those of its worker.

use crate::config::{Config, Verifier};
use crate::fetch::{Attempt, Fetch, FetchRequest, FetchStep, kid_refetch_allowed, refetch_window_s, refresh_due, waiter_due, UnderWay};
use crate::jwt_authn::{self, Failed};
use crate::keys::{KeyRing, SharedKeys, StoredKey};
use crate::metrics;
use crate::policy::{self, Decision, Denial, Pre, RequestView, TokenKind};
use crate::token::{self, Claims, GITLAB_AI_GATEWAY, Rules, TokenError};
use crate::user_token::{IssueRequest, TokenCache, uuid4};
use duo_core::errors::GitlabError;
use duo_core::grpc::GrpcReply;
use duo_core::handoff::{self, AuthInfo};
use duo_kit::Counters;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, Status};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::{Rc, Weak};
use std::time::{Duration, UNIX_EPOCH};

const KEYS_KEY: &str = "duo_auth.keys";
const CAS_RETRIES: usize = 8;
/// Requests one VM holds for a refetch under way; more are refused (401 `unknown_kid`), so a
/// flood of junk kids during a rotation cannot hold unbounded memory.
const MAX_WAITERS: usize = 1024;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> {
        Box::new(Root { id, config: None, vm: Rc::new(RefCell::new(Vm::default())), fetches: HashMap::new(), configured_at: 0, warned_uncallable: HashSet::new() })
    });
}}

fn now() -> u64 {
    hostcalls::get_current_time().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs())
}

fn attempt_key(source: &str) -> String {
    format!("duo_auth.attempt.{source}")
}

/// Per-VM state shared by the root and the request contexts of one worker.
struct Vm {
    /// Keys prepared from the shared entry with this CAS.
    ring: Option<(u32, Rc<KeyRing>)>,
    user_cache: Option<TokenCache>,
    counters: Counters,
    /// Requests waiting for a kid-miss refetch another request started.
    waiters: Vec<Waiter>,
    /// The root's tick period (a request context sets it too: the host applies it to its root).
    tick: Duration,
}

/// A request held until the refetches under way when it came end (or their window passes).
struct Waiter {
    id: u32,
    stream: Weak<RefCell<Stream>>,
    joined: UnderWay,
}

impl Default for Vm {
    fn default() -> Self {
        Vm {
            ring: None,
            user_cache: None,
            counters: Counters::new("duo_auth", metrics::DROPPED, metrics::MAX_NAMES),
            waiters: Vec::new(),
            tick: Duration::ZERO,
        }
    }
}

impl Vm {

    /// The prepared keys of the current shared entry (prepared again only when it changed).
    fn ring(&mut self, cfg: &Config) -> Rc<KeyRing> {
        let (bytes, cas) = hostcalls::get_shared_data(KEYS_KEY).unwrap_or((None, None));
        let cas = cas.unwrap_or(0);
        if let Some((cached, ring)) = &self.ring
            && *cached == cas && bytes.is_some() {
                return ring.clone();
            }
        let names: Vec<&str> = cfg.jwks_sources.iter().map(|s| s.name.as_str()).collect();
        let ring = Rc::new(SharedKeys::decode(bytes.as_deref()).prepare(&names, cfg.rsa_backend));
        self.ring = Some((cas, ring.clone()));
        ring
    }
}

/// Claims the right to fetch `source` (a scheduled fetch or a kid-miss refetch) with CAS.
/// Returns the attempt it replaced, to put back if the call cannot even be made.
fn claim(source: &str, now: u64, kid_miss: bool, fetched_at: Option<u64>, refresh_interval_s: u64) -> Option<Attempt> {
    let key = attempt_key(source);
    for _ in 0..CAS_RETRIES {
        let (bytes, cas) = hostcalls::get_shared_data(&key).ok()?;
        let before = Attempt::decode(bytes.as_deref());
        let allowed = if kid_miss { kid_refetch_allowed(now, &before) } else { refresh_due(now, fetched_at, &before, refresh_interval_s) };
        if !allowed {
            return None;
        }
        let mut attempt = before;
        if kid_miss {
            attempt.kid_miss_at = Some(now);
            attempt.kid_miss_pending = true;
        } else {
            attempt.scheduled_at = Some(now);
        }
        match hostcalls::set_shared_data(&key, Some(&attempt.encode()), cas) {
            Ok(()) => return Some(before),
            Err(Status::CasMismatch) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// Resumes a request held for keys or its body. If the host refuses, the request stays held
/// (fails closed) until Envoy's own timeout ends it; the log says why.
fn resume() {
    if hostcalls::resume_http_request().is_err() {
        log::error!("duo_auth: could not resume a held request; it stays held until Envoy's timeout");
    }
}

/// Puts back the attempt a claim replaced when no call went out (at start the clusters are not
/// callable until Envoy has initialized them): the next tick tries again instead of waiting for
/// the retry period.
fn unclaim(source: &str, before: Attempt) {
    let key = attempt_key(source);
    if let Ok((_, cas)) = hostcalls::get_shared_data(&key) {
        // A CAS mismatch means another worker claimed meanwhile: its claim stands.
        if hostcalls::set_shared_data(&key, Some(&before.encode()), cas).is_err() {
            log::debug!("duo_auth: the fetch claim of {source} stays (another worker holds it)");
        }
    }
}

/// Stores a source's fresh keys in the shared entry (CAS loop; other sources are kept).
fn store_keys(source: &str, keys: Vec<StoredKey>, now: u64) -> bool {
    for _ in 0..CAS_RETRIES {
        let Ok((bytes, cas)) = hostcalls::get_shared_data(KEYS_KEY) else { return false };
        let next = SharedKeys::decode(bytes.as_deref()).with_source(source, keys.clone(), now);
        match hostcalls::set_shared_data(KEYS_KEY, Some(&next.encode()), cas) {
            Ok(()) => return true,
            Err(Status::CasMismatch) => continue,
            Err(_) => return false,
        }
    }
    false
}

fn fetched_at(source: &str) -> Option<u64> {
    let (bytes, _) = hostcalls::get_shared_data(KEYS_KEY).unwrap_or((None, None));
    SharedKeys::decode(bytes.as_deref()).fetched_at(source)
}

/// Marks a source's kid-miss refetch as ended (CAS loop), so waiters on every worker decide.
fn end_kid_miss(source: &str) {
    let key = attempt_key(source);
    for _ in 0..CAS_RETRIES {
        let Ok((bytes, cas)) = hostcalls::get_shared_data(&key) else { return };
        let mut attempt = Attempt::decode(bytes.as_deref());
        if !attempt.kid_miss_pending {
            return;
        }
        attempt.kid_miss_pending = false;
        match hostcalls::set_shared_data(&key, Some(&attempt.encode()), cas) {
            Ok(()) => return,
            Err(Status::CasMismatch) => continue,
            Err(_) => break,
        }
    }
    log::warn!("duo_auth: source '{source}': could not mark the kid refetch as ended; waiters decide when its window ends");
}

/// The kid-miss refetches under way (any worker's), if any.
fn refetches_under_way(cfg: &Config, now: u64) -> Option<UnderWay> {
    let attempts = cfg.jwks_sources.iter().filter_map(|src| {
        let (bytes, _) = hostcalls::get_shared_data(&attempt_key(&src.name)).ok()?;
        Some(Attempt::decode(bytes.as_deref()))
    });
    UnderWay::of(now, attempts, refetch_window_s(cfg.fetch_timeout_ms))
}

/// Lets the waiters whose refetch ended (or whose window passed) decide, each in its own context;
/// then host calls act on `back_to` again.
fn wake_waiters(cfg: &Config, vm: &RefCell<Vm>, back_to: u32) {
    if vm.borrow().waiters.is_empty() {
        return;
    }
    let now = now();
    let current = refetches_under_way(cfg, now);
    let due: Vec<Waiter> = {
        let mut v = vm.borrow_mut();
        let (due, keep) = std::mem::take(&mut v.waiters).into_iter().partition(|w| waiter_due(now, &w.joined, current.as_ref()));
        v.waiters = keep;
        due
    };
    if due.is_empty() {
        return;
    }
    for w in due {
        // A request whose client went away is gone from the host: nothing to decide.
        let Some(stream) = w.stream.upgrade() else { continue };
        if hostcalls::set_effective_context(w.id).is_err() {
            continue;
        }
        match stream.try_borrow_mut() {
            Ok(mut s) => s.retry_after_keys(),
            // Deciding already (cannot happen: callbacks do not nest); it is woken next time.
            Err(_) => vm.borrow_mut().waiters.push(w),
        }
    }
    if hostcalls::set_effective_context(back_to).is_err() {
        log::warn!("duo_auth: could not switch back to context {back_to} after waking waiters");
    }
}

fn dispatch(req: &FetchRequest, timeout_ms: u64) -> Result<u32, Status> {
    hostcalls::dispatch_http_call(
        &req.cluster,
        vec![(":method", "GET"), (":path", &req.path), (":authority", &req.authority), ("accept", "application/json")],
        None,
        vec![],
        Duration::from_millis(timeout_ms),
    )
}

/// Reads a finished call's answer: its status and body. A failed call (timeout, reset) has no
/// headers and its maps are unavailable: they are not read (the SDK would panic on BadArgument).
fn call_response(num_headers: usize, body_size: usize) -> (Option<u32>, Vec<u8>) {
    if num_headers == 0 {
        return (None, Vec::new());
    }
    let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .and_then(|s| std::str::from_utf8(&s).ok().and_then(|s| s.parse().ok()));
    let body = if body_size == 0 {
        Vec::new()
    } else {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten().unwrap_or_default()
    };
    (status, body)
}

/// Feeds one answer to a fetch; dispatches its next call or stores its keys.
/// Returns `Some(token)` when another call is in flight.
fn advance(cfg: &Config, vm: &RefCell<Vm>, fetch: &mut Fetch, status: Option<u32>, body: &[u8]) -> Option<u32> {
    let src = cfg.source(&fetch.source)?;
    match fetch.on_response(src, status, body) {
        FetchStep::Next(req) => match dispatch(&req, cfg.fetch_timeout_ms) {
            Ok(token) => Some(token),
            Err(e) => {
                log::warn!("duo_auth: source '{}': cannot call cluster '{}': {e:?}", src.name, req.cluster);
                vm.borrow_mut().counters.count(&metrics::jwks_fetch(false));
                None
            }
        },
        FetchStep::Done(keys) => {
            let n = keys.len();
            if store_keys(&src.name, keys, now()) {
                log::info!("duo_auth: source '{}': loaded {n} signing key(s)", src.name);
                vm.borrow_mut().counters.count(&metrics::jwks_fetch(true));
            } else {
                log::warn!("duo_auth: source '{}': could not store keys in shared data", src.name);
            }
            None
        }
        FetchStep::Failed(reason) => {
            log::warn!("duo_auth: source '{}': key fetch failed, keeping the last good keys: {reason}", src.name);
            vm.borrow_mut().counters.count(&metrics::jwks_fetch(false));
            None
        }
    }
}

/// Starts fetching a source. `Err` when the cluster cannot be called (yet).
fn start_fetch(cfg: &Config, name: &str) -> Result<(u32, Fetch), Status> {
    let src = cfg.source(name).ok_or(Status::NotFound)?;
    let (fetch, req) = Fetch::start(src);
    dispatch(&req, cfg.fetch_timeout_ms).map(|token| (token, fetch))
}

/// Sources none of whose keys are held yet (from the shared entry every worker reads).
fn sources_without_keys(cfg: &Config) -> usize {
    let (bytes, _) = hostcalls::get_shared_data(KEYS_KEY).unwrap_or((None, None));
    let shared = SharedKeys::decode(bytes.as_deref());
    cfg.jwks_sources.iter().filter(|s| shared.fetched_at(&s.name).is_none()).count()
}

/// Tick periods: fast while requests wait for a refetch another worker makes (they are woken
/// by the tick), fast until every source has answered once (the first keys come as soon as the
/// clusters can be called), then the 1 s the refresh schedule needs.
const TICK_WAITING: Duration = Duration::from_millis(20);
const TICK_WITHOUT_KEYS: Duration = Duration::from_millis(100);
const TICK: Duration = Duration::from_secs(1);

/// Sets the tick period of the current context's root (from a request context too: Envoy applies
/// it to the root). Returns whether the host took it.
fn set_tick(vm: &RefCell<Vm>, tick: Duration) -> bool {
    if vm.borrow().tick == tick {
        return true;
    }
    let ok = hostcalls::set_tick_period(tick).is_ok();
    if ok {
        vm.borrow_mut().tick = tick;
    }
    ok
}

struct Root {
    id: u32,
    config: Option<Rc<Config>>,
    vm: Rc<RefCell<Vm>>,
    fetches: HashMap<u32, Fetch>,
    configured_at: u64,
    warned_uncallable: HashSet<String>,
}

/// How long a source's cluster may be not callable after configure before duo_auth warns.
const UNCALLABLE_GRACE_S: u64 = 10;

impl Root {
    fn schedule(&mut self) {
        let Some(cfg) = self.config.clone() else { return };
        // With envoy_jwt_authn the keys are still loaded when sources are listed: they verify
        // tokens whose kid jwt_authn does not know yet (a rotation before its cache expires).
        let now = now();
        for src in &cfg.jwks_sources {
            if self.fetches.values().any(|f| f.source == src.name) {
                continue;
            }
            let Some(before) = claim(&src.name, now, false, fetched_at(&src.name), cfg.refresh_interval_s) else { continue };
            match start_fetch(&cfg, &src.name) {
                Ok((token, fetch)) => {
                    self.fetches.insert(token, fetch);
                }
                Err(e) => {
                    unclaim(&src.name, before);
                    // Normal for a moment at start; a cluster still not callable after that is
                    // misconfigured (a typo in `cluster`): say so once.
                    if now >= self.configured_at.saturating_add(UNCALLABLE_GRACE_S) && self.warned_uncallable.insert(src.name.clone()) {
                        log::warn!("duo_auth: source '{}': cannot call cluster '{}': {e:?} (does it exist?); retrying", src.name, src.cluster);
                        self.vm.borrow_mut().counters.count(&metrics::jwks_fetch(false));
                    }
                }
            }
        }
        let tick = if !self.vm.borrow().waiters.is_empty() {
            TICK_WAITING
        } else if sources_without_keys(&cfg) > 0 {
            TICK_WITHOUT_KEYS
        } else {
            TICK
        };
        set_tick(&self.vm, tick);
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        let Some(mut fetch) = self.fetches.remove(&token_id) else { return };
        let Some(cfg) = self.config.clone() else { return };
        let (status, body) = call_response(num_headers, body_size);
        if let Some(next) = advance(&cfg, &self.vm, &mut fetch, status, &body) {
            self.fetches.insert(next, fetch);
        }
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _size: usize) -> bool {
        log::info!("duo_auth {} starting", env!("CARGO_PKG_VERSION"));
        true
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        duo_kit::follow_host_log_level();
        let bytes = duo_kit::plugin_configuration().unwrap_or_default();
        match Config::parse(&bytes) {
            Ok(config) => {
                if config.bypass != crate::config::Bypass::Off {
                    log::warn!("duo_auth: bypass is '{:?}': requests may pass WITHOUT authentication (troubleshooting only)", config.bypass);
                }
                let cache = crate::user_token::TokenCache::new(config.user_token_cache_size);
                self.vm.borrow_mut().user_cache = Some(cache);
                self.config = Some(Rc::new(config));
                self.configured_at = now();
                self.schedule();
                if self.vm.borrow().tick.is_zero() {
                    log::error!("duo_auth: the host refused a tick period: keys are fetched only on unknown kids");
                }
                true
            }
            Err(e) => {
                log::error!("duo_auth: {e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        self.schedule();
        // Last: waking switches the effective context (the root's own calls are done by then).
        if let Some(cfg) = self.config.clone() {
            wake_waiters(&cfg, &self.vm, self.id);
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let config = self.config.clone()?;
        let stream = Rc::new_cyclic(|me| {
            RefCell::new(Stream {
                id: context_id,
                me: me.clone(),
                config,
                vm: self.vm.clone(),
                state: State::Start,
                fetches: HashMap::new(),
                body_done: false,
                agent_platform: false,
                grpc: false,
            })
        });
        Some(duo_kit::timing::wrap("duo_auth", Box::new(SharedStream(stream))))
    }
}

/// The host's handle on a request context. Shared so that a request waiting for another's
/// refetch can be woken from outside its own callbacks (the VM's waiter list holds a `Weak`).
struct SharedStream(Rc<RefCell<Stream>>);

/// Where a request stands.
enum State {
    Start,
    /// Waiting for refetched keys before deciding again.
    Refetching { token: String, info: AuthInfo, view: OwnedView },
    /// `/v2/chat/agent`: waiting for the whole body.
    ChatBody { info: AuthInfo },
    Done,
}

/// The request headers the rules read, kept while the request waits.
#[derive(Clone, Default)]
struct OwnedView {
    method: String,
    path: String,
    authorization: Option<String>,
    authentication_type: Option<String>,
    realm: Option<String>,
    instance_id: Option<String>,
    global_user_id: Option<String>,
    bypass_auth: Option<String>,
    content_type: Option<String>,
}

impl OwnedView {
    fn read() -> Self {
        let headers = duo_kit::Headers::request();
        let h = |name: &str| headers.get(name);
        OwnedView {
            method: h(":method").unwrap_or_default(),
            path: h(":path").unwrap_or_default(),
            authorization: h("authorization"),
            authentication_type: h("x-gitlab-authentication-type"),
            realm: h("x-gitlab-realm"),
            instance_id: h("x-gitlab-instance-id"),
            global_user_id: h("x-gitlab-global-user-id"),
            bypass_auth: h("bypass-auth"),
            content_type: h("content-type"),
        }
    }

    fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            path: &self.path,
            authorization: self.authorization.as_deref(),
            authentication_type: self.authentication_type.as_deref(),
            realm: self.realm.as_deref(),
            instance_id: self.instance_id.as_deref(),
            global_user_id: self.global_user_id.as_deref(),
            bypass_auth: self.bypass_auth.as_deref(),
        }
    }
}

/// What the verification step ended with.
enum Verdict {
    Claims { claims: Claims, kind: TokenKind },
    Deny(Denial),
    /// Unknown kid and a refetch was started: wait.
    Wait,
}

struct Stream {
    id: u32,
    me: Weak<RefCell<Stream>>,
    config: Rc<Config>,
    vm: Rc<RefCell<Vm>>,
    state: State,
    fetches: HashMap<u32, Fetch>,
    body_done: bool,
    /// `/DuoWorkflow/*`: the Agent Platform audience and tokens.
    agent_platform: bool,
    /// A gRPC call (Agent Platform, gRPC health, or `application/grpc`): refusals gRPC-shaped.
    grpc: bool,
}

impl Stream {
    /// The audience tokens must carry on this request.
    fn audience(&self) -> &str {
        if self.agent_platform { &self.config.agent_platform_audience } else { &self.config.audience }
    }

    fn publish(&self, info: &AuthInfo) {
        if let Err(e) = duo_kit::set_filter_state(handoff::AUTH, info) {
            log::warn!("duo_auth #{}: cannot publish filter state: {e:?}", self.id);
        }
        let mut vm = self.vm.borrow_mut();
        vm.counters.count(&metrics::request(&info.result));
        if let Some(reason) = info.error.as_deref() {
            vm.counters.count(&metrics::denial(reason));
        }
    }

    fn refuse(&mut self, d: &Denial, info: &AuthInfo) {
        self.state = State::Done;
        self.publish(info);
        log::debug!("duo_auth #{}: denied {} ({})", self.id, d.reply.status, d.reason);
        let sent = if self.grpc {
            duo_kit::send_grpc_error(&GrpcReply::from_gitlab(&d.reply), &[("x-duo-auth-reason", d.reason)])
        } else {
            duo_kit::send_error(&d.reply, &[("x-duo-auth-reason", d.reason)])
        };
        if let Err(e) = sent {
            log::error!("duo_auth #{}: cannot send the {} reply: {e:?}", self.id, d.reply.status);
        }
    }

    fn verify_user_token(&self, token: &str) -> Verdict {
        let Some(user) = &self.config.user_tokens else { return Verdict::Deny(Denial::token(TokenError::UnknownKid)) };
        let now = now();
        let mut vm = self.vm.borrow_mut();
        if let Some(claims) = vm.user_cache.as_mut().and_then(|c| c.get(token, now)).cloned() {
            vm.counters.count(&metrics::user_token_cache(true));
            return Verdict::Claims { claims, kind: TokenKind::User };
        }
        vm.counters.count(&metrics::user_token_cache(false));
        let rules = Rules { audience: GITLAB_AI_GATEWAY, clock_skew_s: self.config.clock_skew_s, now };
        let single = std::slice::from_ref(&user.verifying_key);
        match token::verify_with(token, single, &rules) {
            Ok(v) => {
                if let (Some(cache), Some(exp)) = (vm.user_cache.as_mut(), v.claims.exp) {
                    cache.insert(token, v.claims.clone(), exp as u64, now);
                }
                Verdict::Claims { claims: v.claims, kind: TokenKind::User }
            }
            Err(e) => Verdict::Deny(Denial::token(e)),
        }
    }

    /// The Duo Workflow Service's self-signed tokens: its public keys (no kid: each is tried),
    /// the Agent Platform audience. Verified here whatever the verifier (jwt_authn has no such
    /// provider), like user tokens.
    fn verify_workflow_token(&self, token: &str) -> Verdict {
        let rules = Rules { audience: &self.config.agent_platform_audience, clock_skew_s: self.config.clock_skew_s, now: now() };
        match token::verify_with(token, &self.config.workflow_keys, &rules) {
            Ok(v) => Verdict::Claims { claims: v.claims, kind: TokenKind::Workflow },
            Err(e) => Verdict::Deny(Denial::token(e)),
        }
    }

    fn verify_builtin(&mut self, token: &str, allow_refetch: bool) -> Verdict {
        let ring = self.vm.borrow_mut().ring(&self.config);
        if !ring.loaded {
            return Verdict::Deny(Denial::keys_unavailable());
        }
        let now = now();
        let rules = Rules { audience: self.audience(), clock_skew_s: self.config.clock_skew_s, now };
        match token::verify(token, &ring, &rules) {
            Ok(v) => Verdict::Claims { claims: v.claims, kind: TokenKind::Gitlab },
            // The key may be one of a source that never answered yet: its scheduled fetch is on
            // the way (not ready), and the kid-miss window stays free for a real rotation.
            Err(TokenError::UnknownKid) if !ring.missing.is_empty() => Verdict::Deny(Denial::keys_unavailable()),
            Err(TokenError::UnknownKid) if allow_refetch => {
                let cfg = self.config.clone();
                for src in &cfg.jwks_sources {
                    if claim(&src.name, now, true, None, cfg.refresh_interval_s).is_some() {
                        self.vm.borrow_mut().counters.count(metrics::KID_REFETCH);
                        match start_fetch(&cfg, &src.name) {
                            Ok((t, fetch)) => {
                                self.fetches.insert(t, fetch);
                            }
                            Err(e) => {
                                log::warn!("duo_auth: source '{}': cannot call cluster '{}': {e:?}", src.name, src.cluster);
                                self.vm.borrow_mut().counters.count(&metrics::jwks_fetch(false));
                            }
                        }
                    }
                }
                if !self.fetches.is_empty() || self.wait_for_refetch(&cfg, now) {
                    Verdict::Wait
                } else {
                    Verdict::Deny(Denial::token(TokenError::UnknownKid))
                }
            }
            Err(e) => Verdict::Deny(Denial::token(e)),
        }
    }

    /// Joins a kid-miss refetch another request started (on any worker) instead of refusing a
    /// token its keys may verify in a moment. False when none is under way or too many wait.
    fn wait_for_refetch(&self, cfg: &Config, now: u64) -> bool {
        let Some(joined) = refetches_under_way(cfg, now) else { return false };
        {
            let mut vm = self.vm.borrow_mut();
            if vm.waiters.len() >= MAX_WAITERS {
                return false;
            }
            vm.waiters.push(Waiter { id: self.id, stream: self.me.clone(), joined });
            vm.counters.count(metrics::KID_REFETCH_WAIT);
        }
        // The root's tick wakes waiters when the fetching worker is another one.
        if !set_tick(&self.vm, TICK_WAITING) {
            log::warn!("duo_auth #{}: the host refused a faster tick: waiting up to {}s for a key refetch", self.id, joined.until.saturating_sub(now));
        }
        true
    }

    /// Decides again once refetched keys are in (or the refetch ended without them).
    fn retry_after_keys(&mut self) {
        let State::Refetching { token, info, view } = std::mem::replace(&mut self.state, State::Done) else { return };
        let action = self.decide(view, token, TokenKind::Gitlab, info, false);
        if action == Action::Continue {
            resume();
        } else if let State::ChatBody { .. } = self.state
            && self.body_done {
                let action = match self.request_body() {
                    Some(body) => self.check_chat(&body),
                    None => {
                        let d = Denial { reply: GitlabError::detail(503, "Request body unavailable"), reason: "internal_error" };
                        let info = match std::mem::replace(&mut self.state, State::Done) {
                            State::ChatBody { info } => policy::denied(info, &d),
                            _ => AuthInfo::default(),
                        };
                        self.refuse(&d, &info);
                        Action::Pause
                    }
                };
                if action == Action::Continue {
                    resume();
                }
            }
    }

    fn verify_jwt_authn(&mut self, token: &str, allow_refetch: bool) -> Verdict {
        // A payload means a provider accepted the token, whatever the others' failure keys say
        // (with requires_any, jwt_authn records every provider that failed).
        if let Some(payload) = duo_kit::property(&jwt_authn::key_path(jwt_authn::PAYLOAD_KEY)) {
            return match jwt_authn::claims_from_payload_map(&payload) {
                None => self.no_jwt_authn_verdict(),
                Some(claims) if claims.aud.as_ref().is_some_and(|a| !a.contains(self.audience())) => {
                    Verdict::Deny(Denial::token(TokenError::WrongAudience))
                }
                Some(claims) => Verdict::Claims { claims, kind: TokenKind::Gitlab },
            };
        }
        let namespace = duo_kit::property(&jwt_authn::NAMESPACE_PATH).unwrap_or_default();
        let header = token::parse(token).map(|_| ());
        let own_keys = !self.config.jwks_sources.is_empty();
        match jwt_authn::combine_failures(header, jwt_authn::failure_messages(&namespace)) {
            None => self.no_jwt_authn_verdict(),
            Some(Failed::Refuse(e)) => Verdict::Deny(Denial::token(e)),
            // jwt_authn caches its JWKS for its cache_duration and never refetches on an unknown
            // kid: duo_auth's own keys (and kid-miss refetch) decide those.
            Some(Failed::UnknownKid { .. } | Failed::KeysUnavailable) if own_keys => self.verify_builtin(token, allow_refetch),
            Some(Failed::UnknownKid { keys_unavailable: false }) => Verdict::Deny(Denial::token(TokenError::UnknownKid)),
            Some(Failed::UnknownKid { keys_unavailable: true } | Failed::KeysUnavailable) => Verdict::Deny(Denial::keys_unavailable()),
        }
    }

    fn no_jwt_authn_verdict(&self) -> Verdict {
        log::warn!("duo_auth #{}: no jwt_authn verdict in metadata: is jwt_authn configured before duo_auth?", self.id);
        Verdict::Deny(Denial { reason: "jwt_authn_no_verdict", ..Denial::token(TokenError::Malformed) })
    }

    /// Verifies and decides; `Action` for the headers callback.
    fn decide(&mut self, view: OwnedView, token: String, kind: TokenKind, info: AuthInfo, allow_refetch: bool) -> Action {
        let verdict = match (kind, self.config.verifier) {
            (TokenKind::User, _) => self.verify_user_token(&token),
            (TokenKind::Workflow, _) => self.verify_workflow_token(&token),
            (TokenKind::Gitlab, Verifier::Builtin) => self.verify_builtin(&token, allow_refetch),
            (TokenKind::Gitlab, Verifier::EnvoyJwtAuthn) => self.verify_jwt_authn(&token, allow_refetch),
        };
        match verdict {
            Verdict::Wait => {
                self.state = State::Refetching { token, info, view };
                Action::Pause
            }
            Verdict::Deny(d) => {
                let info = policy::denied(info, &d);
                self.refuse(&d, &info);
                Action::Pause
            }
            Verdict::Claims { claims, kind } => {
                let decision = policy::authorize(&self.config, &view.view(), &claims, kind, info);
                self.apply(decision, &claims)
            }
        }
    }

    fn apply(&mut self, decision: Decision, claims: &Claims) -> Action {
        match decision {
            Decision::Allow(info) => {
                self.state = State::Done;
                self.publish(&info);
                Action::Continue
            }
            Decision::Deny(d, info) => {
                self.refuse(&d, &info);
                Action::Pause
            }
            Decision::CheckChatBody(info) => {
                self.state = State::ChatBody { info };
                Action::Pause
            }
            Decision::IssueUserToken { info, global_user_id, instance_id, realm } => {
                self.issue(info, claims, &global_user_id, &instance_id, &realm);
                Action::Pause
            }
        }
    }

    fn issue(&mut self, info: AuthInfo, claims: &Claims, global_user_id: &str, instance_id: &str, realm: &str) {
        let Some(user) = &self.config.user_tokens else { return };
        let mut random = [0u8; 16];
        if getrandom::fill(&mut random).is_err() {
            let d = Denial { reply: GitlabError::detail(500, "Failed to generate JWT"), reason: "token_issue_failed" };
            let info = policy::denied(info, &d);
            return self.refuse(&d, &info);
        }
        let jti = uuid4(random);
        let req = IssueRequest {
            global_user_id,
            instance_id,
            realm,
            caller_scopes: &claims.scopes,
            now: now(),
            ttl_s: user.ttl_s,
            jti: &jti,
        };
        match user.issuer.issue(&req) {
            Ok((token, expires_at)) => {
                self.state = State::Done;
                self.publish(&info);
                let body = serde_json::json!({"token": token, "expires_at": expires_at}).to_string();
                if let Err(e) = hostcalls::send_http_response(200, vec![("content-type", "application/json")], Some(body.as_bytes())) {
                    log::error!("duo_auth #{}: cannot send the user token: {e:?}", self.id);
                }
            }
            Err(e) => {
                log::error!("duo_auth #{}: cannot sign a user token: {e}", self.id);
                let d = Denial { reply: GitlabError::detail(500, "Failed to generate JWT"), reason: "token_issue_failed" };
                let info = policy::denied(info, &d);
                self.refuse(&d, &info);
            }
        }
    }

    fn check_chat(&mut self, body: &[u8]) -> Action {
        let State::ChatBody { info } = std::mem::replace(&mut self.state, State::Done) else { return Action::Continue };
        match policy::check_chat_body(body, &info.scopes) {
            Ok(()) => {
                self.publish(&info);
                Action::Continue
            }
            Err(d) => {
                let info = policy::denied(info, &d);
                self.refuse(&d, &info);
                Action::Pause
            }
        }
    }

    /// The readiness check: 503 while a source's keys were never loaded (a load balancer must not
    /// send traffic that could only get 503s), else on to whatever answers it behind duo_auth.
    fn readiness(&mut self) -> Action {
        if self.config.bypass == crate::config::Bypass::All || self.config.jwks_sources.is_empty() {
            return Action::Continue;
        }
        let ring = self.vm.borrow_mut().ring(&self.config);
        if ring.missing.is_empty() {
            return Action::Continue;
        }
        let body = serde_json::json!({"status": "not ready", "detail": format!("duo_auth holds no signing keys yet from: {}", ring.missing.join(", "))});
        let reply = GitlabError { status: 503, body: body.to_string() };
        if let Err(e) = duo_kit::send_error(&reply, &[("x-duo-auth-reason", "keys_unavailable")]) {
            log::error!("duo_auth #{}: cannot send the readiness reply: {e:?}", self.id);
        }
        Action::Pause
    }

    fn request_body(&self) -> Option<Vec<u8>> {
        hostcalls::get_buffer(BufferType::HttpRequestBody, 0, usize::MAX).ok().map(Option::unwrap_or_default)
    }
}

impl Stream {
    fn on_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize) {
        let Some(mut fetch) = self.fetches.remove(&token_id) else { return };
        let (status, body) = call_response(num_headers, body_size);
        match advance(&self.config, &self.vm, &mut fetch, status, &body) {
            Some(next) => {
                self.fetches.insert(next, fetch);
            }
            None => end_kid_miss(&fetch.source),
        }
        if !self.fetches.is_empty() {
            return;
        }
        self.retry_after_keys();
        let (cfg, vm) = (self.config.clone(), self.vm.clone());
        wake_waiters(&cfg, &vm, self.id);
    }
}

impl Context for SharedStream {
    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        // Borrowed only here and when woken from another context's callback: never both.
        if let Ok(mut s) = self.0.try_borrow_mut() {
            s.on_call_response(token_id, num_headers, body_size);
        }
    }
}

impl HttpContext for SharedStream {
    fn on_http_request_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        self.0.try_borrow_mut().map_or(Action::Pause, |mut s| s.on_http_request_headers(num_headers, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.0.try_borrow_mut().map_or(Action::Pause, |mut s| s.on_http_request_body(body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, num_trailers: usize) -> Action {
        self.0.try_borrow_mut().map_or(Action::Pause, |mut s| s.on_http_request_trailers(num_trailers))
    }
}

// The callbacks, driven through `SharedStream`.
impl Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.body_done = end_of_stream;
        let owned = OwnedView::read();
        self.agent_platform = policy::is_agent_platform(&owned.method, &owned.path);
        self.grpc = self.agent_platform
            || policy::is_grpc_health(&owned.path)
            || owned.content_type.as_deref().is_some_and(duo_core::grpc::is_grpc_content_type);
        let (token, kind, info) = match policy::pre_check(&self.config, &owned.view()) {
            Pre::Allow(info) => {
                if info.result == "bypass" {
                    log::warn!("duo_auth #{}: bypass ({:?}): {} {} passed WITHOUT authentication", self.id, self.config.bypass, owned.method, owned.path);
                }
                self.state = State::Done;
                self.publish(&info);
                if self.config.is_readiness(&owned.path) {
                    return self.readiness();
                }
                return Action::Continue;
            }
            Pre::Deny(d, info) => {
                self.refuse(&d, &info);
                return Action::Pause;
            }
            Pre::Verify { token, kind, info } => (token.to_owned(), kind, info),
        };
        let action = self.decide(owned, token, kind, info, true);
        if end_of_stream
            && let State::ChatBody { .. } = self.state {
                return self.check_chat(b"");
            }
        action
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match self.state {
            State::Refetching { .. } => {
                self.body_done = end_of_stream;
                Action::Pause
            }
            State::ChatBody { .. } => {
                if !end_of_stream {
                    return Action::Pause;
                }
                self.body_done = true;
                let body = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size).ok().flatten().unwrap_or_default();
                self.check_chat(&body)
            }
            State::Start | State::Done => Action::Continue,
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // A body followed by trailers never has end_of_stream in the body callback.
        if let State::ChatBody { .. } = self.state {
            let body = self.request_body().unwrap_or_default();
            return self.check_chat(&body);
        }
        if let State::Refetching { .. } = self.state {
            self.body_done = true;
            return Action::Pause;
        }
        Action::Continue
    }
}
