//! HTTP streams: one request/response passing through one filter or a chain of filters, with
//! Envoy's filter-manager iteration (decoders in chain order, encoders in reverse order,
//! `Pause` stops iteration, `continue_stream` resumes it after the VM call returns, a body
//! `Pause` buffers so the next body callback sees everything buffered so far).

use crate::host::Host;
use crate::pairs::PropValue;
use crate::plugin::{Plugin, PluginInner};
use crate::types::{Action, HttpCall, LocalReply};
use crate::vm::MapKind;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DirKind {
    Request,
    Response,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hdr {
    NotDelivered,
    Paused,
    Passed,
}

/// One direction's iteration state. Positions 0..n are filters in iteration order (for
/// responses the chain reversed); position n is "past the chain" (upstream for requests,
/// downstream for responses).
#[derive(Clone, Debug)]
struct Dir {
    n: usize,
    headers_at: Vec<bool>,
    hdr: Vec<Hdr>,
    /// The headers callback ran (or is running) at this position: the map is the filter's.
    seen: Vec<bool>,
    buf: Vec<Vec<u8>>,
    new_data: Vec<bool>,
    eos_at: Vec<bool>,
    eos_delivered: Vec<bool>,
    body_paused: Vec<bool>,
    trailers_at: Vec<bool>,
    trailers_delivered: Vec<bool>,
    headers_only: bool,
    aborted: bool,
}

impl Dir {
    fn new(n: usize) -> Dir {
        Dir {
            n,
            headers_at: vec![false; n + 1],
            hdr: vec![Hdr::NotDelivered; n],
            seen: vec![false; n],
            buf: vec![Vec::new(); n + 1],
            new_data: vec![false; n + 1],
            eos_at: vec![false; n + 1],
            eos_delivered: vec![false; n],
            body_paused: vec![false; n],
            trailers_at: vec![false; n + 1],
            trailers_delivered: vec![false; n],
            headers_only: false,
            aborted: false,
        }
    }

    fn get<T: Copy>(v: &[T], i: usize, default: T) -> T {
        v.get(i).copied().unwrap_or(default)
    }

    fn set<T>(v: &mut [T], i: usize, value: T) {
        if let Some(x) = v.get_mut(i) {
            *x = value;
        }
    }

    fn paused(&self, p: usize) -> bool {
        Self::get(&self.hdr, p, Hdr::Passed) == Hdr::Paused
            || Self::get(&self.body_paused, p, false)
    }

    fn body_pending(&self, p: usize) -> bool {
        !self.headers_only
            && (Self::get(&self.new_data, p, false)
                || (Self::get(&self.eos_at, p, false) && !Self::get(&self.eos_delivered, p, true)))
    }

    /// Passes everything position `p` holds to `p + 1` (only when `p` is not paused).
    fn forward(&mut self, p: usize) {
        if self.paused(p) || Self::get(&self.hdr, p, Hdr::NotDelivered) != Hdr::Passed {
            return;
        }
        Self::set(&mut self.headers_at, p + 1, true);
        let data = self.buf.get_mut(p).map(std::mem::take).unwrap_or_default();
        if !data.is_empty() {
            if let Some(next) = self.buf.get_mut(p + 1) {
                next.extend_from_slice(&data);
            }
            Self::set(&mut self.new_data, p + 1, true);
        }
        if self.headers_only || Self::get(&self.eos_delivered, p, false) {
            Self::set(&mut self.eos_at, p + 1, true);
        }
        if Self::get(&self.trailers_delivered, p, false) {
            Self::set(&mut self.trailers_at, p + 1, true);
        }
    }

    /// Everything that arrived went past the chain.
    fn all_passed(&self) -> bool {
        Self::get(&self.headers_at, self.n, false)
            && (0..self.n).all(|p| !self.paused(p) && self.buf.get(p).is_none_or(Vec::is_empty))
    }
}

#[derive(Clone, Copy)]
enum Event {
    RequestHeaders,
    RequestData,
    ResponseHeaders,
    ResponseData,
}

pub(crate) enum Deferred {
    Continue { stage: usize, dir: DirKind },
    Reset { stage: usize, dir: DirKind },
    LocalReply { reply: LocalReply },
}

pub(crate) struct StreamData {
    request_headers: Vec<(String, Vec<u8>)>,
    request_trailers: Vec<(String, Vec<u8>)>,
    response_headers: Vec<(String, Vec<u8>)>,
    response_trailers: Vec<(String, Vec<u8>)>,
    properties: PropValue,
    filter_state: Vec<(String, Vec<u8>)>,
    local_reply: Option<LocalReply>,
    late_local_replies: Vec<LocalReply>,
    req: Dir,
    resp: Dir,
    deferred: Vec<Deferred>,
    reset: Option<String>,
    failure: Option<String>,
    detached: Vec<bool>,
    foreign_calls: Vec<String>,
    /// Host calls made by each stage's callbacks on this stream (VM crossings), by function.
    host_calls: BTreeMap<usize, BTreeMap<&'static str, u32>>,
    /// Wasm operators each stage's callbacks executed on this stream (wasmtime fuel).
    fuel: BTreeMap<usize, BTreeMap<String, u64>>,
    trace: Vec<String>,
    /// The direction whose headers callback is running: Envoy has no body buffer for it then.
    in_headers_of: Option<DirKind>,
    /// Host calls a test made fail for this stream ([`Stream::fail_host_call`]).
    failing_host_calls: Vec<String>,
}

pub(crate) struct Stage {
    pub plugin: Weak<PluginInner>,
    pub label: String,
    pub ctx_id: u32,
}

pub(crate) struct StreamCore {
    data: RefCell<StreamData>,
    pub(crate) stages: Vec<Stage>,
}

fn to_pairs(headers: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
        .collect()
}

fn header_in(map: &[(String, Vec<u8>)], name: &str) -> Option<String> {
    let name = name.to_ascii_lowercase();
    map.iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

fn lossy(map: &[(String, Vec<u8>)]) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect()
}

impl StreamCore {
    fn n(&self) -> usize {
        self.stages.len()
    }

    fn pos(&self, dir: DirKind, stage: usize) -> usize {
        match dir {
            DirKind::Request => stage,
            DirKind::Response => self.n().saturating_sub(1).saturating_sub(stage),
        }
    }

    fn stage_at(&self, dir: DirKind, p: usize) -> usize {
        // The mapping is its own inverse.
        self.pos(dir, p)
    }

    pub(crate) fn defer(&self, d: Deferred) {
        self.data.borrow_mut().deferred.push(d);
    }

    pub(crate) fn record_fuel(&self, stage: usize, callback: &str, used: u64) {
        let mut d = self.data.borrow_mut();
        let by_callback = d.fuel.entry(stage).or_default();
        match by_callback.get_mut(callback) {
            Some(n) => *n += used,
            None => {
                by_callback.insert(callback.to_owned(), used);
            }
        }
    }

    pub(crate) fn record_host_call(&self, stage: usize, name: &'static str) {
        *self.data.borrow_mut().host_calls.entry(stage).or_default().entry(name).or_default() += 1;
    }

    pub(crate) fn record_foreign_call(&self, name: &str) {
        self.data.borrow_mut().foreign_calls.push(name.to_string());
    }

    pub(crate) fn map_for(
        &self,
        stage: usize,
        kind: MapKind,
        in_log: bool,
    ) -> Option<Vec<(String, Vec<u8>)>> {
        let d = self.data.borrow();
        let available = self.map_available(&d, stage, kind, in_log);
        if !available {
            return None;
        }
        Some(match kind {
            MapKind::RequestHeaders => d.request_headers.clone(),
            MapKind::RequestTrailers => d.request_trailers.clone(),
            MapKind::ResponseHeaders => d.response_headers.clone(),
            MapKind::ResponseTrailers => d.response_trailers.clone(),
        })
    }

    fn map_available(&self, d: &StreamData, stage: usize, kind: MapKind, in_log: bool) -> bool {
        let detached = d.detached.get(stage).copied().unwrap_or(false);
        match kind {
            MapKind::RequestHeaders if in_log => d.req.headers_at.first().copied().unwrap_or(false),
            MapKind::ResponseHeaders if in_log => {
                d.resp.headers_at.first().copied().unwrap_or(false)
            }
            MapKind::RequestHeaders => {
                !detached && Dir::get(&d.req.seen, self.pos(DirKind::Request, stage), false)
            }
            MapKind::ResponseHeaders => {
                Dir::get(&d.resp.seen, self.pos(DirKind::Response, stage), false)
            }
            MapKind::RequestTrailers => {
                !in_log
                    && !detached
                    && Dir::get(&d.req.trailers_at, self.pos(DirKind::Request, stage), false)
            }
            MapKind::ResponseTrailers => Dir::get(
                &d.resp.trailers_at,
                self.pos(DirKind::Response, stage),
                false,
            ),
        }
    }

    pub(crate) fn modify_map(
        &self,
        stage: usize,
        kind: MapKind,
        f: impl FnOnce(&mut Vec<(String, Vec<u8>)>),
    ) -> bool {
        let mut d = self.data.borrow_mut();
        if !self.map_available(&d, stage, kind, false) {
            return false;
        }
        match kind {
            MapKind::RequestHeaders => f(&mut d.request_headers),
            MapKind::RequestTrailers => f(&mut d.request_trailers),
            MapKind::ResponseHeaders => f(&mut d.response_headers),
            MapKind::ResponseTrailers => f(&mut d.response_trailers),
        }
        true
    }

    pub(crate) fn body_at(&self, stage: usize, dir: DirKind, in_log: bool) -> Vec<u8> {
        if in_log {
            return Vec::new();
        }
        let d = self.data.borrow();
        let p = self.pos(dir, stage);
        let dir = if dir == DirKind::Request {
            &d.req
        } else {
            &d.resp
        };
        dir.buf.get(p).cloned().unwrap_or_default()
    }

    /// Envoy's `copyFrom`: start 0 drains `size` bytes from the front and prepends the data;
    /// start at or past the end appends; anything else is BadArgument.
    pub(crate) fn set_body_at(
        &self,
        stage: usize,
        dir: DirKind,
        start: usize,
        size: usize,
        data: &[u8],
    ) -> bool {
        let mut d = self.data.borrow_mut();
        if d.in_headers_of == Some(dir) {
            // Envoy's wasm context has no body buffer in a headers callback (its buffer
            // wrapper holds no instance) and `copyFrom` answers BadArgument.
            return false;
        }
        let p = self.pos(dir, stage);
        let dir = if dir == DirKind::Request {
            &mut d.req
        } else {
            &mut d.resp
        };
        let Some(buf) = dir.buf.get_mut(p) else {
            return false;
        };
        if start == 0 {
            let drain = size.min(buf.len());
            buf.drain(..drain);
            let mut new = data.to_vec();
            new.extend_from_slice(buf);
            *buf = new;
            true
        } else if start >= buf.len() {
            buf.extend_from_slice(data);
            true
        } else {
            false
        }
    }

    /// Whether a test made host call `name` fail for this stream.
    pub(crate) fn host_call_fails(&self, name: &str) -> bool {
        self.data.borrow().failing_host_calls.iter().any(|n| n == name)
    }

    pub(crate) fn set_filter_state(&self, _stage: usize, key: String, value: Vec<u8>) {
        let mut d = self.data.borrow_mut();
        if let Some(e) = d.filter_state.iter_mut().find(|(k, _)| *k == key) {
            e.1 = value;
        } else {
            d.filter_state.push((key, value));
        }
    }

    /// Stream-level property lookup: test presets, then attributes derived from the stream
    /// (request.*, response.*), then filter state (`["k"]` or `["filter_state", "wasm.k"]`).
    pub(crate) fn property(&self, _stage: usize, path: &[String]) -> Option<Vec<u8>> {
        let d = self.data.borrow();
        let walk = |root: &PropValue, parts: &[String]| -> Option<Vec<u8>> {
            let mut v = root;
            for part in parts {
                v = v.child(part)?;
            }
            Some(v.serialize())
        };
        if let Some(v) = walk(&d.properties, path) {
            return Some(v);
        }
        let (first, rest) = path.split_first()?;
        if let Some(v) = derived(&d, first).and_then(|root| walk(&root, rest)) {
            return Some(v);
        }
        let key = match (first.as_str(), rest) {
            (k, []) => k.to_string(),
            ("filter_state", [k]) => k.strip_prefix("wasm.")?.to_string(),
            _ => return None,
        };
        d.filter_state
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }
}

/// Attributes Envoy derives from the stream, built from the current headers and local reply.
fn derived(d: &StreamData, first: &str) -> Option<PropValue> {
    let h = |m: &[(String, Vec<u8>)], n: &str| header_in(m, n).map(PropValue::Str);
    let map_of = |m: &[(String, Vec<u8>)]| {
        PropValue::Map(
            lossy(m)
                .into_iter()
                .map(|(k, v)| (k, PropValue::Str(v)))
                .collect(),
        )
    };
    let mut entries: Vec<(String, PropValue)> = Vec::new();
    let mut put = |k: &str, v: Option<PropValue>| {
        if let Some(v) = v {
            entries.push((k.to_string(), v));
        }
    };
    match first {
        "request" => {
            if !d.req.headers_at.first().copied().unwrap_or(false) {
                return None;
            }
            let m = &d.request_headers;
            let path = header_in(m, ":path");
            put("path", path.clone().map(PropValue::Str));
            put(
                "url_path",
                path.as_ref()
                    .map(|p| PropValue::Str(p.split('?').next().unwrap_or("").to_string())),
            );
            put(
                "query",
                path.as_ref()
                    .and_then(|p| p.split_once('?'))
                    .map(|(_, q)| PropValue::Str(q.to_string())),
            );
            put("host", h(m, ":authority").or_else(|| h(m, "host")));
            put("method", h(m, ":method"));
            put("scheme", h(m, ":scheme"));
            put("id", h(m, "x-request-id"));
            put("useragent", h(m, "user-agent"));
            put("referer", h(m, "referer"));
            put("headers", Some(map_of(m)));
        }
        "response" => {
            let status = header_in(&d.response_headers, ":status")
                .and_then(|s| s.parse::<i64>().ok())
                .or_else(|| d.local_reply.as_ref().map(|r| i64::from(r.status)));
            put("code", status.map(PropValue::Int));
            put(
                "code_details",
                d.local_reply
                    .as_ref()
                    .map(|r| PropValue::Str(r.details.clone())),
            );
            if d.resp.headers_at.first().copied().unwrap_or(false) {
                put("headers", Some(map_of(&d.response_headers)));
            }
        }
        _ => return None,
    }
    Some(PropValue::Map(entries))
}

/// The local reply's response headers as Envoy builds them: `:status`, the filter's headers,
/// `content-length`, and `content-type: text/plain` when there is a body and none was given.
fn local_reply_headers(reply: &LocalReply) -> Vec<(String, Vec<u8>)> {
    let mut h = vec![(":status".to_string(), reply.status.to_string().into_bytes())];
    for (k, v) in &reply.headers {
        h.push((k.clone(), v.clone().into_bytes()));
    }
    if !reply.body.is_empty() && !h.iter().any(|(k, _)| k == "content-type") {
        h.push(("content-type".into(), b"text/plain".to_vec()));
    }
    h.retain(|(k, _)| k != "content-length");
    h.push((
        "content-length".into(),
        reply.body.len().to_string().into_bytes(),
    ));
    h
}

/// Runs callbacks until nothing in either direction can move.
pub(crate) fn pump(core: &Rc<StreamCore>) {
    apply_deferred(core);
    for _ in 0..100_000 {
        let a = step(core, DirKind::Request);
        let b = step(core, DirKind::Response);
        if !a && !b {
            break;
        }
    }
}

enum Work {
    Headers,
    Body,
    Trailers,
}

/// Finds the first position that has work, runs one callback there; false when idle.
fn step(core: &Rc<StreamCore>, dir: DirKind) -> bool {
    let (p, work, arg) = {
        let d = core.data.borrow();
        if d.reset.is_some() || d.failure.is_some() {
            return false;
        }
        let dd = if dir == DirKind::Request {
            &d.req
        } else {
            &d.resp
        };
        if dd.aborted {
            return false;
        }
        let mut found = None;
        for p in 0..dd.n {
            if !Dir::get(&dd.headers_at, p, false) {
                break;
            }
            if Dir::get(&dd.hdr, p, Hdr::Passed) == Hdr::NotDelivered {
                let n = if dir == DirKind::Request {
                    d.request_headers.len()
                } else {
                    d.response_headers.len()
                };
                found = Some((p, Work::Headers, (n, dd.headers_only)));
                break;
            }
            if dd.body_pending(p) {
                let size = dd.buf.get(p).map_or(0, Vec::len);
                found = Some((p, Work::Body, (size, Dir::get(&dd.eos_at, p, false))));
                break;
            }
            if Dir::get(&dd.trailers_at, p, false) && !Dir::get(&dd.trailers_delivered, p, true) {
                let n = if dir == DirKind::Request {
                    d.request_trailers.len()
                } else {
                    d.response_trailers.len()
                };
                found = Some((p, Work::Trailers, (n, false)));
                break;
            }
            if dd.paused(p) {
                break;
            }
        }
        match found {
            Some(f) => f,
            None => return false,
        }
    };
    let stage = core.stage_at(dir, p);
    // Mark the work as taken before calling, so a trap cannot make us loop.
    {
        let mut d = core.data.borrow_mut();
        let dd = if dir == DirKind::Request {
            &mut d.req
        } else {
            &mut d.resp
        };
        match work {
            Work::Headers => Dir::set(&mut dd.seen, p, true),
            Work::Body => {
                Dir::set(&mut dd.new_data, p, false);
                let eos = arg.1;
                Dir::set(&mut dd.eos_delivered, p, eos);
            }
            Work::Trailers => Dir::set(&mut dd.trailers_delivered, p, true),
        }
    }
    let (name, args): (&str, Vec<i32>) = match (dir, &work) {
        (DirKind::Request, Work::Headers) => (
            "proxy_on_request_headers",
            vec![arg.0 as i32, i32::from(arg.1)],
        ),
        (DirKind::Request, Work::Body) => (
            "proxy_on_request_body",
            vec![arg.0 as i32, i32::from(arg.1)],
        ),
        (DirKind::Request, Work::Trailers) => ("proxy_on_request_trailers", vec![arg.0 as i32]),
        (DirKind::Response, Work::Headers) => (
            "proxy_on_response_headers",
            vec![arg.0 as i32, i32::from(arg.1)],
        ),
        (DirKind::Response, Work::Body) => (
            "proxy_on_response_body",
            vec![arg.0 as i32, i32::from(arg.1)],
        ),
        (DirKind::Response, Work::Trailers) => ("proxy_on_response_trailers", vec![arg.0 as i32]),
    };
    if matches!(work, Work::Headers) {
        core.data.borrow_mut().in_headers_of = Some(dir);
    }
    let action = call_stage(core, stage, name, &args);
    core.data.borrow_mut().in_headers_of = None;
    {
        let mut d = core.data.borrow_mut();
        let label = core
            .stages
            .get(stage)
            .map(|s| s.label.clone())
            .unwrap_or_default();
        let detail = match work {
            Work::Headers => format!("headers(n={}, eos={})", arg.0, arg.1),
            Work::Body => format!("body(size={}, eos={})", arg.0, arg.1),
            Work::Trailers => format!("trailers(n={})", arg.0),
        };
        d.trace
            .push(format!("{label} {dir:?} {detail} -> {action:?}"));
        let dd = if dir == DirKind::Request {
            &mut d.req
        } else {
            &mut d.resp
        };
        match (&action, work) {
            (Action::Failed(msg), _) => {
                d.failure = Some(msg.clone());
            }
            (Action::Continue, _) => {
                Dir::set(&mut dd.hdr, p, Hdr::Passed);
                Dir::set(&mut dd.body_paused, p, false);
                dd.forward(p);
            }
            (Action::Pause, Work::Headers) => Dir::set(&mut dd.hdr, p, Hdr::Paused),
            (Action::Pause, _) => Dir::set(&mut dd.body_paused, p, true),
        }
    }
    apply_deferred(core);
    true
}

/// Calls a stream callback export on the stage's plugin with the stage's context id first.
fn call_stage(core: &Rc<StreamCore>, stage: usize, name: &str, args: &[i32]) -> Action {
    let Some(st) = core.stages.get(stage) else {
        return Action::Failed("harness: no such stage".into());
    };
    let Some(plugin) = st.plugin.upgrade() else {
        return Action::Failed(format!("harness: plugin {} was dropped", st.label));
    };
    let mut full = vec![st.ctx_id as i32];
    full.extend_from_slice(args);
    plugin.call_action(st.ctx_id, name, &full, false)
}

/// Applies what the VM asked for during the last call (Envoy runs these after the VM call).
fn apply_deferred(core: &Rc<StreamCore>) {
    let items: Vec<Deferred> = std::mem::take(&mut core.data.borrow_mut().deferred);
    for item in items {
        let mut d = core.data.borrow_mut();
        match item {
            Deferred::Continue { stage, dir } => {
                let label = core
                    .stages
                    .get(stage)
                    .map(|s| s.label.clone())
                    .unwrap_or_default();
                d.trace.push(format!("{label} continue_stream({dir:?})"));
                // Envoy forgets the context's request headers/body after continue_stream.
                Dir::set(&mut d.detached, stage, true);
                let p = core.pos(dir, stage);
                let dd = if dir == DirKind::Request {
                    &mut d.req
                } else {
                    &mut d.resp
                };
                if dd.paused(p) {
                    if Dir::get(&dd.hdr, p, Hdr::NotDelivered) == Hdr::Paused {
                        Dir::set(&mut dd.hdr, p, Hdr::Passed);
                    }
                    Dir::set(&mut dd.body_paused, p, false);
                    dd.forward(p);
                }
            }
            Deferred::Reset { stage, dir } => {
                let label = core
                    .stages
                    .get(stage)
                    .map(|s| s.label.clone())
                    .unwrap_or_default();
                d.trace.push(format!("{label} close_stream({dir:?})"));
                d.reset = Some(format!("{label} closed the stream ({dir:?})"));
                d.req.aborted = true;
                d.resp.aborted = true;
            }
            Deferred::LocalReply { reply } => {
                d.trace.push(format!(
                    "{} send_local_response({})",
                    reply.plugin, reply.status
                ));
                let n = core.n();
                let started = Dir::get(&d.resp.headers_at, n, false);
                if started || d.local_reply.is_some() {
                    // Response already on its way (or a reply while sending one): Envoy resets.
                    d.reset = Some(format!(
                        "{} sent a local reply after the response started",
                        reply.plugin
                    ));
                    d.late_local_replies.push(reply);
                    d.req.aborted = true;
                    d.resp.aborted = true;
                    continue;
                }
                d.req.aborted = true;
                d.response_headers = local_reply_headers(&reply);
                d.response_trailers.clear();
                if Dir::get(&d.resp.headers_at, 0, false) {
                    // Upstream response headers exist but have not gone downstream: Envoy's
                    // sendDirectLocalReply sends the reply straight to the client, bypassing the
                    // encoder filters.
                    let mut resp = Dir::new(n);
                    resp.seen.clone_from(&d.resp.seen);
                    resp.aborted = true;
                    Dir::set(&mut resp.headers_at, n, true);
                    Dir::set(&mut resp.eos_at, n, true);
                    if let Some(b) = resp.buf.get_mut(n) {
                        b.clone_from(&reply.body);
                    }
                    d.resp = resp;
                    d.trace.push(format!(
                        "{} local reply sent directly to the client",
                        reply.plugin
                    ));
                    d.local_reply = Some(reply);
                    continue;
                }
                let mut resp = Dir::new(n);
                Dir::set(&mut resp.headers_at, 0, true);
                Dir::set(&mut resp.eos_at, 0, true);
                resp.headers_only = reply.body.is_empty();
                if let Some(b) = resp.buf.get_mut(0) {
                    b.clone_from(&reply.body);
                }
                Dir::set(&mut resp.new_data, 0, !reply.body.is_empty());
                d.resp = resp;
                d.local_reply = Some(reply);
            }
        }
    }
}

/// One HTTP stream through one filter ([`Plugin::new_stream`]) or a chain
/// ([`Stream::chain`]). Feed it events, then inspect the state. Event methods return
/// `Continue` when everything fed so far went past the whole chain, `Pause` when a filter holds
/// it (or a local reply/reset ended that direction), `Failed` when a VM trapped.
pub struct Stream {
    core: Rc<StreamCore>,
    plugins: Vec<Plugin>,
    host: Host,
}

impl Stream {
    /// A stream through `plugins` in Envoy chain order (e.g. `[&logger, &auth, &router]`):
    /// requests visit them in that order, responses in reverse. All must come from one `Host`.
    pub fn chain(plugins: &[&Plugin]) -> Stream {
        let host = plugins.first().map(|p| p.host()).unwrap_or_default();
        let n = plugins.len();
        let stages: Vec<Stage> = plugins
            .iter()
            .map(|p| Stage {
                plugin: Rc::downgrade(&p.inner),
                label: p.label().to_string(),
                ctx_id: p.host().state.borrow_mut().alloc_context_id(),
            })
            .collect();
        let core = Rc::new(StreamCore {
            data: RefCell::new(StreamData {
                request_headers: Vec::new(),
                request_trailers: Vec::new(),
                response_headers: Vec::new(),
                response_trailers: Vec::new(),
                properties: PropValue::Map(Vec::new()),
                filter_state: Vec::new(),
                local_reply: None,
                late_local_replies: Vec::new(),
                req: Dir::new(n),
                resp: Dir::new(n),
                deferred: Vec::new(),
                reset: None,
                failure: None,
                detached: vec![false; n],
                foreign_calls: Vec::new(),
                host_calls: BTreeMap::new(),
                fuel: BTreeMap::new(),
                trace: Vec::new(),
                in_headers_of: None,
                failing_host_calls: Vec::new(),
            }),
            stages,
        });
        for (i, p) in plugins.iter().enumerate() {
            let ctx = core.stages.get(i).map_or(0, |s| s.ctx_id);
            p.inner.register_stream_context(ctx, core.clone(), i);
            if let Action::Failed(msg) = p.inner.create_context(ctx) {
                core.data.borrow_mut().failure = Some(msg);
            }
        }
        Stream {
            core,
            plugins: plugins.iter().map(|p| (*p).clone()).collect(),
            host,
        }
    }

    /// Events Envoy could not deliver in this state are harness misuse: answered with
    /// `Failed("harness: ...")` and not run. A stream that already failed or was reset ignores
    /// further events (and returns its status).
    fn refuse(&self, event: Event) -> Option<Action> {
        let d = self.core.data.borrow();
        let dir = match event {
            Event::RequestHeaders | Event::RequestData => DirKind::Request,
            Event::ResponseHeaders | Event::ResponseData => DirKind::Response,
        };
        if d.failure.is_some() || d.reset.is_some() {
            drop(d);
            return Some(self.status(dir));
        }
        let n = self.core.n();
        let why = match event {
            Event::RequestHeaders if Dir::get(&d.req.headers_at, 0, false) => {
                "request headers were already sent"
            }
            Event::RequestData if !Dir::get(&d.req.headers_at, 0, false) => {
                "request body/trailers before request headers"
            }
            Event::RequestData
                if Dir::get(&d.req.eos_at, 0, false) || Dir::get(&d.req.trailers_at, 0, false) =>
            {
                "request data after the end of the request"
            }
            Event::ResponseHeaders if d.local_reply.is_some() => {
                "no upstream response can come: the stream already has a local reply"
            }
            Event::ResponseHeaders if !Dir::get(&d.req.headers_at, n, false) => {
                "response before the request headers went upstream (a filter holds them: see trace())"
            }
            Event::ResponseHeaders if Dir::get(&d.resp.headers_at, 0, false) => {
                "response headers were already sent"
            }
            Event::ResponseData if d.local_reply.is_some() => {
                "no upstream response can come: the stream already has a local reply"
            }
            Event::ResponseData if !Dir::get(&d.resp.headers_at, 0, false) => {
                "response body/trailers before response headers"
            }
            Event::ResponseData
                if Dir::get(&d.resp.eos_at, 0, false)
                    || Dir::get(&d.resp.trailers_at, 0, false) =>
            {
                "response data after the end of the response"
            }
            _ => return None,
        };
        Some(Action::Failed(format!("harness: {why}")))
    }

    fn status(&self, dir: DirKind) -> Action {
        let d = self.core.data.borrow();
        if let Some(f) = &d.failure {
            return Action::Failed(f.clone());
        }
        let dd = if dir == DirKind::Request {
            &d.req
        } else {
            &d.resp
        };
        if d.reset.is_none() && !dd.aborted && dd.all_passed() {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    // ---- events ----

    /// Request headers from downstream (names are lower-cased, as Envoy's codecs do).
    /// `end_of_stream` true means a request without body.
    pub fn request_headers(&self, headers: &[(&str, &str)], end_of_stream: bool) -> Action {
        self.request_headers_raw(to_pairs(headers), end_of_stream)
    }

    /// Like [`Stream::request_headers`] with byte values (e.g. non-UTF-8 header values).
    pub fn request_headers_raw(
        &self,
        headers: Vec<(String, Vec<u8>)>,
        end_of_stream: bool,
    ) -> Action {
        if let Some(a) = self.refuse(Event::RequestHeaders) {
            return a;
        }
        {
            let mut d = self.core.data.borrow_mut();
            d.request_headers = headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect();
            Dir::set(&mut d.req.headers_at, 0, true);
            d.req.headers_only = end_of_stream;
            Dir::set(&mut d.req.eos_at, 0, end_of_stream);
        }
        pump(&self.core);
        self.status(DirKind::Request)
    }

    /// A request body chunk from downstream.
    pub fn request_body(&self, chunk: &[u8], end_of_stream: bool) -> Action {
        if let Some(a) = self.refuse(Event::RequestData) {
            return a;
        }
        {
            let mut d = self.core.data.borrow_mut();
            if let Some(b) = d.req.buf.get_mut(0) {
                b.extend_from_slice(chunk);
            }
            Dir::set(&mut d.req.new_data, 0, true);
            if end_of_stream {
                Dir::set(&mut d.req.eos_at, 0, true);
            }
        }
        pump(&self.core);
        self.status(DirKind::Request)
    }

    /// Request trailers (they end the request; body callbacks never saw end_of_stream).
    pub fn request_trailers(&self, trailers: &[(&str, &str)]) -> Action {
        if let Some(a) = self.refuse(Event::RequestData) {
            return a;
        }
        {
            let mut d = self.core.data.borrow_mut();
            d.request_trailers = to_pairs(trailers);
            Dir::set(&mut d.req.trailers_at, 0, true);
        }
        pump(&self.core);
        self.status(DirKind::Request)
    }

    /// Response headers from upstream (include `:status`).
    pub fn response_headers(&self, headers: &[(&str, &str)], end_of_stream: bool) -> Action {
        self.response_headers_raw(to_pairs(headers), end_of_stream)
    }

    /// Like [`Stream::response_headers`] with byte values (e.g. an upstream's obs-text).
    pub fn response_headers_raw(&self, headers: Vec<(String, Vec<u8>)>, end_of_stream: bool) -> Action {
        if let Some(a) = self.refuse(Event::ResponseHeaders) {
            return a;
        }
        {
            let mut d = self.core.data.borrow_mut();
            d.response_headers = headers;
            Dir::set(&mut d.resp.headers_at, 0, true);
            d.resp.headers_only = end_of_stream;
            Dir::set(&mut d.resp.eos_at, 0, end_of_stream);
        }
        pump(&self.core);
        self.status(DirKind::Response)
    }

    /// A response body chunk from upstream.
    pub fn response_body(&self, chunk: &[u8], end_of_stream: bool) -> Action {
        if let Some(a) = self.refuse(Event::ResponseData) {
            return a;
        }
        {
            let mut d = self.core.data.borrow_mut();
            if let Some(b) = d.resp.buf.get_mut(0) {
                b.extend_from_slice(chunk);
            }
            Dir::set(&mut d.resp.new_data, 0, true);
            if end_of_stream {
                Dir::set(&mut d.resp.eos_at, 0, true);
            }
        }
        pump(&self.core);
        self.status(DirKind::Response)
    }

    pub fn response_trailers(&self, trailers: &[(&str, &str)]) -> Action {
        if let Some(a) = self.refuse(Event::ResponseData) {
            return a;
        }
        {
            let mut d = self.core.data.borrow_mut();
            d.response_trailers = to_pairs(trailers);
            Dir::set(&mut d.resp.trailers_at, 0, true);
        }
        pump(&self.core);
        self.status(DirKind::Response)
    }

    /// `proxy_on_log` on every filter in chain order (the access-log phase: maps read as
    /// Envoy's access log sees them; missing ones give NotFound, bodies are empty).
    pub fn log(&self) -> Action {
        let mut result = Action::Continue;
        for st in &self.core.stages {
            if let Some(p) = st.plugin.upgrade() {
                let a = p.call_action(st.ctx_id, "proxy_on_log", &[st.ctx_id as i32], true);
                if let Action::Failed(_) = a {
                    result = a;
                }
            }
        }
        result
    }

    /// `proxy_on_done` then `proxy_on_delete` on every filter.
    pub fn done(&self) -> Action {
        let mut result = Action::Continue;
        for st in &self.core.stages {
            if let Some(p) = st.plugin.upgrade() {
                for name in ["proxy_on_done", "proxy_on_delete"] {
                    let a = p.call_action(st.ctx_id, name, &[st.ctx_id as i32], false);
                    if let Action::Failed(_) = a {
                        result = a;
                    }
                }
                p.unregister_context(st.ctx_id);
            }
        }
        result
    }

    /// The end of the stream as Envoy runs it: [`Stream::log`], then [`Stream::done`].
    pub fn finish(&self) -> Action {
        let a = self.log();
        let b = self.done();
        if let Action::Failed(_) = a { a } else { b }
    }

    /// Delivers the response of an http call made by one of this stream's filters.
    pub fn deliver_http_call_response(
        &self,
        token: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Action {
        match self.owner_of(token) {
            Some(p) => p.deliver_http_call_response(token, headers, body),
            None => Action::Failed(format!(
                "harness: no filter of this stream made http call {token}"
            )),
        }
    }

    /// Fails an http call (timeout/reset: the callback sees 0 headers and no body).
    pub fn fail_http_call(&self, token: u32) -> Action {
        match self.owner_of(token) {
            Some(p) => p.fail_http_call(token),
            None => Action::Failed(format!(
                "harness: no filter of this stream made http call {token}"
            )),
        }
    }

    fn owner_of(&self, token: u32) -> Option<&Plugin> {
        let call = self
            .host
            .http_calls()
            .into_iter()
            .find(|c| c.token == token)?;
        self.plugins.iter().find(|p| p.label() == call.plugin)
    }

    // ---- presets ----

    /// Makes host call `name` (`proxy_set_buffer_bytes` or one of the header-map writes:
    /// `proxy_replace_header_map_value`, `proxy_remove_header_map_value`,
    /// `proxy_add_header_map_value`, `proxy_set_header_map_pairs`) answer NotFound
    /// for this stream from now on, as Envoy does when the object it acts on is gone: for
    /// testing that a filter fails closed when a write it relies on does not happen.
    pub fn fail_host_call(&self, name: &str) {
        self.core.data.borrow_mut().failing_host_calls.push(name.to_owned());
    }

    /// Presets a property this stream's filters read with `get_property` (e.g.
    /// `&["metadata", "filter_metadata", "envoy.filters.http.jwt_authn", "duo_jwt_payload"]`,
    /// `&["request", "time"]`). Presets win over attributes derived from headers.
    pub fn set_property(&self, path: &[&str], value: impl Into<PropValue>) {
        let path: Vec<String> = path.iter().map(|s| (*s).to_string()).collect();
        self.core
            .data
            .borrow_mut()
            .properties
            .insert(&path, value.into());
    }

    /// Presets filter state as if an earlier filter had called `set_property([key], value)`.
    pub fn set_filter_state(&self, key: &str, value: &[u8]) {
        self.core
            .set_filter_state(0, key.to_string(), value.to_vec());
    }

    // ---- inspection ----

    /// The context id each filter got for this stream, in chain order.
    pub fn context_ids(&self) -> Vec<u32> {
        self.core.stages.iter().map(|s| s.ctx_id).collect()
    }

    /// The current request header map (after the filters' changes), lossy UTF-8.
    pub fn request_header_map(&self) -> Vec<(String, String)> {
        lossy(&self.core.data.borrow().request_headers)
    }
    pub fn request_header(&self, name: &str) -> Option<String> {
        header_in(&self.core.data.borrow().request_headers, name)
    }
    /// Every value of a request header, in order.
    pub fn request_header_values(&self, name: &str) -> Vec<String> {
        let name = name.to_ascii_lowercase();
        lossy(&self.core.data.borrow().request_headers)
            .into_iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v)
            .collect()
    }
    pub fn response_header_map(&self) -> Vec<(String, String)> {
        lossy(&self.core.data.borrow().response_headers)
    }
    pub fn response_header(&self, name: &str) -> Option<String> {
        header_in(&self.core.data.borrow().response_headers, name)
    }
    pub fn request_trailer_map(&self) -> Vec<(String, String)> {
        lossy(&self.core.data.borrow().request_trailers)
    }
    pub fn response_trailer_map(&self) -> Vec<(String, String)> {
        lossy(&self.core.data.borrow().response_trailers)
    }

    /// True once the request headers went past every filter (Envoy would now send them
    /// upstream).
    pub fn request_headers_sent_upstream(&self) -> bool {
        let d = self.core.data.borrow();
        Dir::get(&d.req.headers_at, d.req.n, false)
    }
    /// The request body bytes that went past every filter so far (what upstream received).
    pub fn upstream_request_body(&self) -> Vec<u8> {
        let d = self.core.data.borrow();
        d.req.buf.get(d.req.n).cloned().unwrap_or_default()
    }
    /// True once end of stream (or the trailers) went past every filter.
    pub fn request_complete_upstream(&self) -> bool {
        let d = self.core.data.borrow();
        Dir::get(&d.req.eos_at, d.req.n, false) || Dir::get(&d.req.trailers_at, d.req.n, false)
    }
    /// Request body bytes held inside the chain (buffered by paused filters), in chain order.
    pub fn buffered_request_body(&self) -> Vec<u8> {
        let d = self.core.data.borrow();
        d.req.buf.iter().take(d.req.n).flatten().copied().collect()
    }
    pub fn response_headers_sent_downstream(&self) -> bool {
        let d = self.core.data.borrow();
        Dir::get(&d.resp.headers_at, d.resp.n, false)
    }
    /// The response body bytes that went past every filter (what the client received).
    pub fn downstream_response_body(&self) -> Vec<u8> {
        let d = self.core.data.borrow();
        d.resp.buf.get(d.resp.n).cloned().unwrap_or_default()
    }
    pub fn downstream_response_body_str(&self) -> String {
        String::from_utf8_lossy(&self.downstream_response_body()).into_owned()
    }
    pub fn response_complete_downstream(&self) -> bool {
        let d = self.core.data.borrow();
        Dir::get(&d.resp.eos_at, d.resp.n, false) || Dir::get(&d.resp.trailers_at, d.resp.n, false)
    }
    pub fn buffered_response_body(&self) -> Vec<u8> {
        let d = self.core.data.borrow();
        d.resp
            .buf
            .iter()
            .take(d.resp.n)
            .flatten()
            .copied()
            .collect()
    }

    /// The local reply a filter sent (as sent: status, details, headers, body). The response
    /// the client got is in `response_header_map()` / `downstream_response_body()`.
    pub fn local_reply(&self) -> Option<LocalReply> {
        self.core.data.borrow().local_reply.clone()
    }
    /// Local replies sent after the response had started (Envoy resets the stream instead).
    pub fn late_local_replies(&self) -> Vec<LocalReply> {
        self.core.data.borrow().late_local_replies.clone()
    }
    /// Why the stream was reset (`proxy_close_stream`, or a late local reply), if it was.
    pub fn reset_reason(&self) -> Option<String> {
        self.core.data.borrow().reset.clone()
    }
    pub fn was_reset(&self) -> bool {
        self.core.data.borrow().reset.is_some()
    }
    /// The trap that killed a VM during this stream, if any.
    pub fn failure(&self) -> Option<String> {
        self.core.data.borrow().failure.clone()
    }

    /// Filter state set with `set_property([key], ..)` (Envoy's `wasm.<key>`).
    pub fn filter_state(&self, key: &str) -> Option<Vec<u8>> {
        self.core
            .data
            .borrow()
            .filter_state
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }
    pub fn filter_state_str(&self, key: &str) -> Option<String> {
        self.filter_state(key)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }
    /// Every filter state entry, in the order first set.
    pub fn filter_states(&self) -> Vec<(String, Vec<u8>)> {
        self.core.data.borrow().filter_state.clone()
    }
    /// What `get_property(path)` returns to this stream's filters right now (presets, derived
    /// attributes, filter state; not plugin tokens or host presets).
    pub fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let path: Vec<String> = path.iter().map(|s| (*s).to_string()).collect();
        self.core.property(0, &path)
    }

    /// Http calls dispatched by this stream's contexts.
    pub fn http_calls(&self) -> Vec<HttpCall> {
        let ids = self.context_ids();
        self.host
            .http_calls()
            .into_iter()
            .filter(|c| ids.contains(&c.context_id))
            .collect()
    }
    /// Foreign functions this stream's filters called (e.g. `clear_route_cache`).
    /// The host calls the filter labelled `label` made for this stream so far, by function
    /// (`proxy_get_header_map_pairs`: 2, ...): the VM crossings its callbacks cost besides the
    /// callbacks themselves.
    pub fn host_calls(&self, label: &str) -> BTreeMap<String, u32> {
        let d = self.core.data.borrow();
        self.core
            .stages
            .iter()
            .enumerate()
            .filter(|(_, st)| st.label == label)
            .filter_map(|(i, _)| d.host_calls.get(&i))
            .flat_map(|m| m.iter().map(|(k, v)| ((*k).to_owned(), *v)))
            .fold(BTreeMap::new(), |mut acc, (k, v)| {
                *acc.entry(k).or_default() += v;
                acc
            })
    }

    /// The wasm operators the filter labelled `label` executed in its callbacks for this stream
    /// (wasmtime fuel; host calls excluded): its work inside the VM, the same on every machine
    /// for the same module and input.
    pub fn wasm_ops(&self, label: &str) -> u64 {
        self.wasm_ops_by_callback(label).values().sum()
    }

    /// [`Self::wasm_ops`] by callback export (`proxy_on_log`: 41000, ...).
    pub fn wasm_ops_by_callback(&self, label: &str) -> BTreeMap<String, u64> {
        let d = self.core.data.borrow();
        let mut out = BTreeMap::new();
        for (i, _) in self.core.stages.iter().enumerate().filter(|(_, st)| st.label == label) {
            for (callback, n) in d.fuel.get(&i).into_iter().flatten() {
                *out.entry(callback.clone()).or_default() += n;
            }
        }
        out
    }

    pub fn foreign_calls(&self) -> Vec<String> {
        self.core.data.borrow().foreign_calls.clone()
    }
    /// One line per callback run: `duo_auth#1 Request headers(n=5, eos=false) -> Pause`.
    pub fn trace(&self) -> Vec<String> {
        self.core.data.borrow().trace.clone()
    }
}
