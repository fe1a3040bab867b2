//! The only crate (with the filters' `filter.rs` adapters) that talks to the proxy-wasm host.
//! Every host call returns a `Result`/`Option` instead of unwrapping, so a host error becomes a
//! decision (usually: fail closed with a local reply), never a panic that kills the VM.

pub mod counters;
pub mod timing;

pub use counters::Counters;

use duo_core::errors::GitlabError;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, Status};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Reads the plugin configuration bytes (`configuration` in Envoy's wasm filter config).
pub fn plugin_configuration() -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX).ok().flatten()
}

/// Makes the guest's `log` level follow Envoy's, so messages Envoy would drop are never formatted.
pub fn follow_host_log_level() {
    let level = match hostcalls::get_log_level() {
        Ok(LogLevel::Trace) => log::LevelFilter::Trace,
        Ok(LogLevel::Debug) => log::LevelFilter::Debug,
        Ok(LogLevel::Info) => log::LevelFilter::Info,
        Ok(LogLevel::Warn) => log::LevelFilter::Warn,
        Ok(LogLevel::Error) | Ok(LogLevel::Critical) => log::LevelFilter::Error,
        Err(_) => log::LevelFilter::Info,
    };
    log::set_max_level(level);
}

/// A response header as text. Read as bytes and decoded lossily: the SDK's `get_map_value`
/// unwraps UTF-8, so one Latin-1 byte from an upstream would panic and kill the VM. (Request
/// headers: read the whole map once with [`Headers::request`].)
pub fn response_header(name: &str) -> Option<String> {
    header_lossy(MapType::HttpResponseHeaders, name)
}

fn header_lossy(map: MapType, name: &str) -> Option<String> {
    let bytes = hostcalls::get_map_value_bytes(map, name).ok().flatten()?;
    Some(match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// A header map read in one host call. Each single-header read is a VM crossing (~3 µs in V8 on
/// the bench machine, a whole-map read ~6 µs: docs/envoy-facts.md E20), and the filters need
/// five to fifteen headers per request. The host's
/// encoding is kept as read, with the place of each name and value: decoding into a `String` and
/// a `Vec` per header cost two allocations each (~13k wasm operators for GitLab's 17 headers).
#[derive(Default)]
pub struct Headers {
    /// proxy-wasm's pair encoding, as the host returned it.
    raw: Vec<u8>,
    /// Each header's name and value, as ranges of `raw`.
    spans: Vec<(Span, Span)>,
}

#[derive(Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn of(self, raw: &[u8]) -> &[u8] {
        let start = self.start as usize;
        raw.get(start..start + self.len as usize).unwrap_or_default()
    }
}

impl Headers {
    /// The request headers; only in the request-headers callback or later, when Envoy has them
    /// (before, or on a host error: an empty map, never the SDK's panic). Names and values stay
    /// bytes (Envoy's codecs accept only token characters in names).
    pub fn request() -> Headers {
        Headers::from_encoded(raw::get_header_map_pairs(MapType::HttpRequestHeaders as u32).unwrap_or_default())
    }

    /// The response headers; only from the response-headers callback on.
    pub fn response() -> Headers {
        Headers::from_encoded(raw::get_header_map_pairs(MapType::HttpResponseHeaders as u32).unwrap_or_default())
    }

    /// A map in proxy-wasm's pair encoding ([`duo_core::pairs`]); bytes that are not exactly
    /// that make an empty map.
    fn from_encoded(raw: Vec<u8>) -> Headers {
        let spans = match duo_core::pairs::decode_pairs(&raw) {
            Some(pairs) => pairs.into_iter().map(|(name, value)| (span_in(&raw, name), span_in(&raw, value))).collect(),
            None => Vec::new(),
        };
        Headers { raw, spans }
    }

    /// Every header, in order: name (lower-case, as Envoy keeps it) and value bytes. Lookups
    /// compare the bytes; a name becomes `&str` only where a caller asks for text.
    fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans.iter().map(|(name, value)| (name.of(&self.raw), value.of(&self.raw)))
    }

    /// Every header as text, values decoded lossily (an upstream may send obs-text; the SDK's
    /// `get_map` would panic on it and kill the VM).
    pub fn lossy_pairs(&self) -> Vec<(String, String)> {
        self.pairs().map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned())).collect()
    }

    /// The first value of a header, decoded lossily like [`response_header`] and borrowed when it
    /// is UTF-8. Names compare ASCII-case-insensitively, as Envoy's own lookups do.
    pub fn value(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        self.pairs().find(|(k, _)| same_name(k, name.as_bytes())).map(|(_, v)| String::from_utf8_lossy(v))
    }

    /// [`Self::value`], owned.
    pub fn get(&self, name: &str) -> Option<String> {
        self.value(name).map(std::borrow::Cow::into_owned)
    }

    /// The single-header writes that turn this map into itself without the headers `drop` names
    /// and with each `set` name holding exactly one value (the last one listed): a removal per
    /// dropped name that no `set` entry names, a replacement per set name unless the map already
    /// holds exactly that one value, kept. A replacement stands for every value of its name (Envoy's
    /// `setCopy`), so a name both dropped and set is one write. Names are lower-case on both sides:
    /// Envoy keeps its maps' names lower-case (docs/envoy-facts.md E19) and the filters set
    /// lower-case constants, so bytes compare exactly (the router's golden tests hold every name
    /// it sets to that). `drop` sees each header once: the caller decides by rule instead of
    /// listing names compared again.
    pub fn changes<'a>(&'a self, drop: impl Fn(&[u8]) -> bool, set: &[(&'a str, &'a str)]) -> Vec<HeaderChange<'a>> {
        // Most headers of a request are dropped (GitLab's) or meet no set name of their length:
        // the lengths the set holds, as a bit set, end those lookups at one AND.
        let set_lengths = length_bits(set.iter().map(|(k, _)| *k));
        // Per set entry, what the map holds under its name: nothing yet, exactly its value (kept),
        // or anything else (another value, two values, dropped). One pass over the map.
        let mut held = vec![Held::Nothing; set.len()];
        let mut out = Vec::with_capacity(self.spans.len() + set.len());
        for (name, value) in self.pairs() {
            let gone = drop(name);
            let named = if holds_length(set_lengths, name.len()) { set.iter().rposition(|(k, _)| k.as_bytes() == name) } else { None };
            match named {
                Some(i) => {
                    let same = !gone && set.get(i).is_some_and(|(_, v)| v.as_bytes() == value);
                    if let Some(h) = held.get_mut(i) {
                        *h = if same && *h == Held::Nothing { Held::Same } else { Held::Other };
                    }
                }
                // A dropped name no set entry names: removed once, whatever its number of values.
                None if gone && !out.iter().any(|c| matches!(c, HeaderChange::Remove(n) if *n == name)) => out.push(HeaderChange::Remove(name)),
                None => {}
            }
        }
        for (i, ((name, value), held)) in set.iter().zip(&held).enumerate() {
            let later = set.get(i + 1..).is_some_and(|later| later.iter().any(|(k, _)| k == name));
            if !later && *held != Held::Same {
                out.push(HeaderChange::Set(name, value));
            }
        }
        out
    }
}

/// What a map holds under a name [`Headers::changes`] sets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Held {
    Nothing,
    Same,
    Other,
}

/// One single-header write of [`Headers::changes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderChange<'a> {
    /// Every value of this name goes.
    Remove(&'a [u8]),
    /// The name ends with exactly this one value.
    Set(&'a str, &'a str),
}

/// Where `part` (a subslice of `raw`) sits in `raw`.
fn span_in(raw: &[u8], part: &[u8]) -> Span {
    let start = (part.as_ptr() as usize).saturating_sub(raw.as_ptr() as usize);
    Span { start: u32::try_from(start).unwrap_or(u32::MAX), len: u32::try_from(part.len()).unwrap_or(0) }
}

/// The lengths of `names` as a bit set (63 stands for 63 and longer).
fn length_bits<'n>(names: impl Iterator<Item = &'n str>) -> u64 {
    names.fold(0, |bits, name| bits | 1 << name.len().min(63))
}

fn holds_length(bits: u64, len: usize) -> bool {
    bits & 1 << len.min(63) != 0
}

/// Header names compare ASCII-case-insensitively, as Envoy's own lookups do; lengths first,
/// where most pairs differ.
fn same_name(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.eq_ignore_ascii_case(b)
}

/// Edits the request headers where they change, one host call per write ([`Headers::changes`]):
/// `current` is the map the filter read in its request-headers callback (the filters before it
/// have run, and nothing changes the map while it holds the request). Envoy prices a single
/// write at ~0.7 µs in V8 and a whole-map write at ~0.6 µs per header of the map
/// (docs/envoy-facts.md E20: it removes every header, then adds each), so writing only what
/// changes is never dearer and skips the values that stay (`:method`, `content-type`, `:status`).
/// Every request-header write re-picks the route (docs/envoy-facts.md E2). A refused write is an
/// error, not the SDK's panic; earlier writes of the edit stay, so callers fail closed.
pub fn write_request_headers(current: &Headers, drop: impl Fn(&[u8]) -> bool, set: &[(&str, &str)]) -> Result<(), Status> {
    write_changes(MapType::HttpRequestHeaders, &current.changes(drop, set))
}

/// [`write_request_headers`] for the response headers: `current` as read in the response-headers
/// callback or later (nothing upstream of the filter changes it afterwards), `:status` included.
pub fn write_response_headers(current: &Headers, drop: impl Fn(&[u8]) -> bool, set: &[(&str, &str)]) -> Result<(), Status> {
    write_changes(MapType::HttpResponseHeaders, &current.changes(drop, set))
}

fn write_changes(map: MapType, changes: &[HeaderChange<'_>]) -> Result<(), Status> {
    for change in changes {
        let status = match *change {
            HeaderChange::Remove(name) => raw::remove_header(map as u32, name),
            HeaderChange::Set(name, value) => raw::replace_header(map as u32, name.as_bytes(), value.as_bytes()),
        };
        match status {
            0 => {}
            1 => return Err(Status::NotFound),
            _ => return Err(Status::BadArgument),
        }
    }
    Ok(())
}

/// Reads a property as raw bytes (`["request", "path"]`, filter state keys, metadata...).
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    hostcalls::get_property(path.to_vec()).ok().flatten()
}

/// Publishes a value as filter state `wasm.<key>`, readable by later filters and access logs.
pub fn set_filter_state<T: Serialize>(key: &str, value: &T) -> Result<(), Status> {
    let bytes = serde_json::to_vec(value).map_err(|_| Status::SerializationFailure)?;
    hostcalls::set_property(vec![key], Some(&bytes))
}

pub fn set_filter_state_raw(key: &str, bytes: &[u8]) -> Result<(), Status> {
    hostcalls::set_property(vec![key], Some(bytes))
}

/// Reads filter state written by another filter of this stream; absent or malformed is `None`.
pub fn filter_state<T: DeserializeOwned>(key: &str) -> Option<T> {
    property(&[key]).and_then(|bytes| serde_json::from_slice(&bytes).ok())
}

/// Answers the request locally with a GitLab-shaped JSON error.
pub fn send_error(error: &GitlabError, extra_headers: &[(&str, &str)]) -> Result<(), Status> {
    let mut headers = Vec::with_capacity(extra_headers.len() + 1);
    headers.push(("content-type", "application/json"));
    headers.extend_from_slice(extra_headers);
    hostcalls::send_http_response(error.status, headers, Some(error.body.as_bytes()))
}

/// Answers a gRPC call locally, trailers-only: HTTP 200, `content-type: application/grpc`,
/// `grpc-status` and the percent-encoded `grpc-message`, no body. Envoy keeps a `grpc-status` a
/// filter set (it derives one only when none is there) and, with no body, leaves the message
/// alone, so the client sees exactly this status and text.
pub fn send_grpc_error(reply: &duo_core::grpc::GrpcReply, extra_headers: &[(&str, &str)]) -> Result<(), Status> {
    let own = reply.headers();
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(own.len() + extra_headers.len());
    headers.extend(own.iter().map(|(k, v)| (*k, v.as_str())));
    headers.extend_from_slice(extra_headers);
    hostcalls::send_http_response(200, headers, None)
}

/// Answers locally with any status, headers and body. Before the response headers went
/// downstream this is a complete answer (Envoy sends it straight to the client); after, Envoy
/// resets the stream.
pub fn send_response(status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), Status> {
    hostcalls::send_http_response(status, headers.to_vec(), Some(body))
}

/// Which HTTP body [`replace_body`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    Request,
    Response,
}

/// Replaces the first `size` bytes of the body of the running body callback with `data`.
///
/// The SDK's `hostcalls::set_buffer` panics on every status but Ok, and a panic kills the VM
/// (every stream of the worker, then a reload). Envoy answers BadArgument when it has no body
/// buffer (any headers callback, or a body that does not exist), NotFound when the stream is
/// gone. Here those are errors the caller turns into a fail-closed answer.
pub fn replace_body(body: Body, size: usize, data: &[u8]) -> Result<(), Status> {
    let buffer_type: u32 = match body {
        Body::Request => 0,
        Body::Response => 1,
    };
    match raw::set_buffer_bytes(buffer_type, size, data) {
        0 => Ok(()),
        1 => Err(Status::NotFound),
        _ => Err(Status::BadArgument),
    }
}

/// The host calls the SDK offers only in a panicking form, declared as the ABI spells them.
#[allow(unsafe_code)]
mod raw {
    #[cfg(target_arch = "wasm32")]
    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        #[link_name = "proxy_set_buffer_bytes"]
        fn proxy_set_buffer_bytes_raw(buffer_type: u32, start: usize, size: usize, data: *const u8, data_size: usize) -> u32;
    }

    #[cfg(target_arch = "wasm32")]
    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        #[link_name = "proxy_replace_header_map_value"]
        fn proxy_replace_header_map_value_raw(map_type: u32, key: *const u8, key_size: usize, value: *const u8, value_size: usize) -> u32;
        #[link_name = "proxy_remove_header_map_value"]
        fn proxy_remove_header_map_value_raw(map_type: u32, key: *const u8, key_size: usize) -> u32;
    }

    #[cfg(target_arch = "wasm32")]
    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        #[link_name = "proxy_get_header_map_pairs"]
        fn proxy_get_header_map_pairs_raw(map_type: u32, return_data: *mut *mut u8, return_size: *mut usize) -> u32;
    }

    /// The encoded pairs of a header map, or `None` when the host refuses (the SDK's
    /// `get_map_bytes` panics then, and decodes every pair into two allocations).
    #[cfg(target_arch = "wasm32")]
    pub(super) fn get_header_map_pairs(map_type: u32) -> Option<Vec<u8>> {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: the host writes a pointer and a size into the two locals it is given.
        let status = unsafe { proxy_get_header_map_pairs_raw(map_type, &mut data, &mut size) };
        if status != 0 || data.is_null() {
            return None;
        }
        // SAFETY: on success the host hands over `size` bytes it allocated through the SDK's
        // `proxy_on_memory_allocate` (a boxed slice of exactly `size` bytes from this module's
        // allocator); the Vec takes ownership and frees it, as the SDK's own readers do.
        Some(unsafe { Vec::from_raw_parts(data, size, size) })
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub(super) fn get_header_map_pairs(_map_type: u32) -> Option<Vec<u8>> {
        None
    }

    /// Raw status of `proxy_replace_header_map_value(map_type, name, value)` (the SDK's
    /// `set_map_value_bytes` panics on any other status than Ok, and takes names as `&str`).
    #[cfg(target_arch = "wasm32")]
    pub(super) fn replace_header(map_type: u32, name: &[u8], value: &[u8]) -> u32 {
        // SAFETY: the host reads `name.len()` and `value.len()` bytes that both slices keep alive
        // for the call.
        unsafe { proxy_replace_header_map_value_raw(map_type, name.as_ptr(), name.len(), value.as_ptr(), value.len()) }
    }

    /// Raw status of `proxy_remove_header_map_value(map_type, name)`.
    #[cfg(target_arch = "wasm32")]
    pub(super) fn remove_header(map_type: u32, name: &[u8]) -> u32 {
        // SAFETY: as for `replace_header`.
        unsafe { proxy_remove_header_map_value_raw(map_type, name.as_ptr(), name.len()) }
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub(super) fn replace_header(_map_type: u32, _name: &[u8], _value: &[u8]) -> u32 {
        1
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub(super) fn remove_header(_map_type: u32, _name: &[u8]) -> u32 {
        1
    }

    /// Raw status of `proxy_set_buffer_bytes(buffer_type, 0, size, data)`.
    #[cfg(target_arch = "wasm32")]
    pub(super) fn set_buffer_bytes(buffer_type: u32, size: usize, data: &[u8]) -> u32 {
        // SAFETY: the host reads `data.len()` bytes at `data.as_ptr()`, which `data` keeps alive
        // for the call; the status is a plain integer, never interpreted as an enum.
        unsafe { proxy_set_buffer_bytes_raw(buffer_type, 0, size, data.as_ptr(), data.len()) }
    }

    /// Outside a wasm VM there is no host (native builds only type-check this crate).
    #[cfg(not(target_arch = "wasm32"))]
    pub(super) fn set_buffer_bytes(_buffer_type: u32, _size: usize, _data: &[u8]) -> u32 {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs<'a>(list: &[(&'a str, &'a [u8])]) -> Vec<(&'a [u8], &'a [u8])> {
        list.iter().map(|(k, v)| (k.as_bytes(), *v)).collect()
    }

    fn map(list: &[(&str, &[u8])]) -> Headers {
        Headers::from_encoded(duo_core::pairs::encode_pairs(&pairs(list)))
    }

    #[test]
    fn a_map_reads_back_as_encoded_and_bad_encodings_are_empty() {
        let h = map(&[(":status", b"200"), ("x-latin", b"caf\xe9"), ("empty", b"")]);
        let read: Vec<(&[u8], &[u8])> = h.pairs().collect();
        assert_eq!(read, vec![(&b":status"[..], &b"200"[..]), (b"x-latin", b"caf\xe9"), (b"empty", b"")]);
        assert_eq!(h.get("X-Latin").as_deref(), Some("caf\u{fffd}"));
        assert!(matches!(h.value(":status"), Some(std::borrow::Cow::Borrowed("200"))));
        assert!(h.value("EMPTY").is_some() && h.value("absent").is_none());
        assert_eq!(h.lossy_pairs()[1], ("x-latin".to_owned(), "caf\u{fffd}".to_owned()));
        let mut cut = duo_core::pairs::encode_pairs(&[(b"a", b"b")]);
        cut.pop();
        assert_eq!(Headers::from_encoded(cut).pairs().count(), 0);
    }

    /// What Envoy's map holds after the writes: a removal takes every value of its name, a
    /// replacement too, then adds its one value (`setCopy`). Sorted: Envoy's order is not ours.
    fn applied(h: &Headers, changes: &[HeaderChange<'_>]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut m: Vec<(Vec<u8>, Vec<u8>)> = h.pairs().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        for c in changes {
            match *c {
                HeaderChange::Remove(name) => m.retain(|(k, _)| k != name),
                HeaderChange::Set(name, value) => {
                    m.retain(|(k, _)| k != name.as_bytes());
                    m.push((name.as_bytes().to_vec(), value.as_bytes().to_vec()));
                }
            }
        }
        m.sort();
        m
    }

    fn sorted(list: &[(&str, &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut m: Vec<(Vec<u8>, Vec<u8>)> = list.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.to_vec())).collect();
        m.sort();
        m
    }

    #[test]
    fn an_edit_writes_only_what_changes_and_sets_each_name_once() {
        let sent = map(&[
            (":method", b"POST"),
            (":path", b"/v2/code/completions"),
            ("authorization", b"Bearer t"),
            ("x-gitlab-realm", b"self-managed"),
            ("user-agent", b"ua \xff"),
            ("content-type", b"application/json"),
            ("accept", b"a"),
            ("accept", b"b"),
            ("content-length", b"12"),
        ]);
        let set = [
            (":method", "POST"),
            ("content-type", "application/json"),
            (":path", "/v1/chat/completions"),
            ("accept", "application/json"),
            ("content-length", "99"),
            ("x-new", "1"),
            ("content-length", "100"),
        ];
        let changes = sent.changes(|n| n == b"authorization" || n == b"x-gitlab-realm", &set);
        // `:method` and `content-type` already hold their values: no write.
        assert_eq!(
            changes,
            vec![
                HeaderChange::Remove(b"authorization"),
                HeaderChange::Remove(b"x-gitlab-realm"),
                HeaderChange::Set(":path", "/v1/chat/completions"),
                HeaderChange::Set("accept", "application/json"),
                HeaderChange::Set("x-new", "1"),
                HeaderChange::Set("content-length", "100"),
            ]
        );
        let want = sorted(&[
            (":method", b"POST"),
            (":path", b"/v1/chat/completions"),
            ("user-agent", b"ua \xff"),
            ("content-type", b"application/json"),
            ("accept", b"application/json"),
            ("content-length", b"100"),
            ("x-new", b"1"),
        ]);
        assert_eq!(applied(&sent, &changes), want);
    }

    #[test]
    fn a_name_both_dropped_and_set_is_one_write_with_the_set_value() {
        let sent = map(&[(":path", b"/a"), ("x-envoy-upstream-rq-timeout-ms", b"5")]);
        let changes = sent.changes(|n| n == b"x-envoy-upstream-rq-timeout-ms", &[("x-envoy-upstream-rq-timeout-ms", "60000")]);
        assert_eq!(changes, vec![HeaderChange::Set("x-envoy-upstream-rq-timeout-ms", "60000")]);
        // Dropped, then set to the value it had: still written (the value is not the client's to keep).
        let same = sent.changes(|n| n == b"x-envoy-upstream-rq-timeout-ms", &[("x-envoy-upstream-rq-timeout-ms", "5")]);
        assert_eq!(same, vec![HeaderChange::Set("x-envoy-upstream-rq-timeout-ms", "5")]);
    }

    #[test]
    fn a_dropped_name_held_twice_is_removed_once() {
        let sent = map(&[("cookie", b"a"), (":path", b"/a"), ("cookie", b"b"), ("x-api-key", b"k")]);
        let changes = sent.changes(|n| n != b":path", &[]);
        assert_eq!(changes, vec![HeaderChange::Remove(b"cookie"), HeaderChange::Remove(b"x-api-key")]);
        assert_eq!(applied(&sent, &changes), sorted(&[(":path", b"/a")]));
    }

    #[test]
    fn a_set_name_listed_twice_or_held_twice_ends_with_one_value() {
        let sent = map(&[(":path", b"/a"), ("accept", b"text"), ("accept", b"text")]);
        let changes = sent.changes(|_| false, &[("accept", "json"), ("x-new", "1"), ("x-new", "2"), ("accept", "text")]);
        // `accept: text` twice is not "exactly that one value": the replacement leaves one.
        assert_eq!(changes, vec![HeaderChange::Set("x-new", "2"), HeaderChange::Set("accept", "text")]);
        assert_eq!(applied(&sent, &changes), sorted(&[(":path", b"/a"), ("accept", b"text"), ("x-new", b"2")]));
    }

    #[test]
    fn drop_sees_each_header_once() {
        let sent = map(&[("a", b"1"), ("b", b"2"), ("a", b"3")]);
        let calls = std::cell::Cell::new(0);
        let _ = sent.changes(
            |_| {
                calls.set(calls.get() + 1);
                true
            },
            &[("a", "x"), ("b", "2")],
        );
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn seventy_set_names_each_end_with_one_value() {
        let names: Vec<String> = (0..70).map(|i| format!("x-h{i}")).collect();
        let set: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        let sent = map(&[("x-h69", b"old"), ("x-h1", b"v")]);
        let changes = sent.changes(|_| false, &set);
        assert_eq!(changes.len(), 69, "x-h1 already holds its value");
        let got = applied(&sent, &changes);
        assert_eq!(got.len(), 70);
        assert!(got.iter().all(|(_, v)| v == b"v"));
    }
}

