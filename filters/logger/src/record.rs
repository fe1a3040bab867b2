//! The access-log record: a pure function of what the logger saw at request headers, what Envoy
//! reports at log time, and what duo_auth and duo_router published as filter state.
//!
//! Every string from outside (headers, paths, error texts, content) goes through
//! [`crate::redact::redact`]; a value that is not known is left out, never guessed.

use crate::config::{LogContent, LoggerConfig};
use crate::redact::redact;
use duo_core::handoff::{AuthInfo, ContentInfo, RouteInfo, UsageInfo};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Longest value kept from a request header (user agent, GitLab host name...).
pub(crate) const MAX_HEADER_VALUE_BYTES: usize = 512;
/// Longest path (with its redacted query) kept.
pub const MAX_PATH_BYTES: usize = 2048;
/// Longest error text kept.
pub(crate) const MAX_ERROR_BYTES: usize = 1024;

/// The header GitLab's "Enable AI logs" switch sets.
pub(crate) const VERBOSE_AI_LOGS_HEADER: &str = "x-gitlab-enabled-instance-verbose-ai-logs";

/// The request headers the logger keeps, read when the request headers arrive (before any other
/// filter rewrites them). Values are raw; [`build_record`] cleans them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestFacts {
    pub correlation_id: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub user_agent: Option<String>,
    pub gitlab_instance_id: Option<String>,
    pub gitlab_global_user_id: Option<String>,
    pub gitlab_realm: Option<String>,
    pub gitlab_host_name: Option<String>,
    pub gitlab_version: Option<String>,
    pub gitlab_language_server_version: Option<String>,
    pub gitlab_feature_enablement_type: Option<String>,
    pub gitlab_feature_enabled_by_namespace_ids: Option<String>,
    pub gitlab_root_namespace_id: Option<String>,
    pub gitlab_organization_id: Option<String>,
    /// `x-gitlab-enabled-feature-flags`, as sent (GitLab logs it only when the header is there).
    pub enabled_feature_flags: Option<String>,
    /// `:scheme` and `:authority`, for GitLab's `url` field.
    pub scheme: Option<String>,
    pub authority: Option<String>,
    /// `X-Gitlab-Rails-Send-Start`, a unix time in seconds (float) as text.
    pub rails_send_start: Option<String>,
    /// `x-gitlab-enabled-instance-verbose-ai-logs: true`.
    pub verbose_ai_logs: bool,
    /// A gRPC call (`content-type: application/grpc...`, or an Agent Platform / gRPC health
    /// path): Envoy's gRPC status is meaningful.
    pub grpc: bool,
    /// `x-gitlab-correlation-id` (GitLab's own id of the workflow's request chain).
    pub gitlab_correlation_id: Option<String>,
    /// The model GitLab named in `x-gitlab-agent-platform-model-metadata` (gRPC calls only; never
    /// its `api_key`).
    pub model_metadata: Option<crate::grpc::ModelMetadata>,
}

/// The request headers [`RequestFacts::from_headers`] reads (lower case; a test holds the code
/// to this list).
#[cfg(any(test, feature = "testing"))]
pub const CAPTURED_HEADERS: &[&str] = &[
    "x-request-id",
    ":method",
    ":path",
    "user-agent",
    "x-gitlab-instance-id",
    "x-gitlab-global-user-id",
    "x-gitlab-realm",
    "x-gitlab-host-name",
    "x-gitlab-version",
    "x-gitlab-language-server-version",
    "x-gitlab-feature-enablement-type",
    "x-gitlab-feature-enabled-by-namespace-ids",
    "x-gitlab-rails-send-start",
    "x-gitlab-root-namespace-id",
    "x-gitlab-organization-id",
    "x-gitlab-enabled-feature-flags",
    ":scheme",
    ":authority",
    "content-type",
    VERBOSE_AI_LOGS_HEADER,
    "x-gitlab-correlation-id",
    crate::grpc::MODEL_METADATA_HEADER,
];

impl RequestFacts {
    /// Builds the facts from a header lookup (`name` is lower case).
    pub fn from_headers(header: impl Fn(&str) -> Option<String>) -> Self {
        let verbose = header(VERBOSE_AI_LOGS_HEADER).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let path = header(":path");
        let grpc = header("content-type").is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("application/grpc"))
            || path.as_deref().is_some_and(crate::grpc::is_grpc_path);
        Self {
            correlation_id: header("x-request-id"),
            method: header(":method"),
            path,
            user_agent: header("user-agent"),
            gitlab_instance_id: header("x-gitlab-instance-id"),
            gitlab_global_user_id: header("x-gitlab-global-user-id"),
            gitlab_realm: header("x-gitlab-realm"),
            gitlab_host_name: header("x-gitlab-host-name"),
            gitlab_version: header("x-gitlab-version"),
            gitlab_language_server_version: header("x-gitlab-language-server-version"),
            gitlab_feature_enablement_type: header("x-gitlab-feature-enablement-type"),
            gitlab_feature_enabled_by_namespace_ids: header("x-gitlab-feature-enabled-by-namespace-ids"),
            gitlab_root_namespace_id: header("x-gitlab-root-namespace-id"),
            gitlab_organization_id: header("x-gitlab-organization-id"),
            enabled_feature_flags: header("x-gitlab-enabled-feature-flags"),
            scheme: header(":scheme"),
            authority: header(":authority"),
            rails_send_start: header("x-gitlab-rails-send-start"),
            verbose_ai_logs: verbose,
            grpc,
            gitlab_correlation_id: header("x-gitlab-correlation-id"),
            model_metadata: header(crate::grpc::MODEL_METADATA_HEADER).filter(|_| grpc).and_then(|v| crate::grpc::ModelMetadata::parse(&v)),
        }
    }
}

/// What Envoy reports about the stream, and the logger's own clock readings (unix nanoseconds).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamFacts {
    /// `request.time`: when Envoy received the request's first byte.
    pub start_unix_ns: Option<i64>,
    /// `request.duration`, when Envoy has it at log time.
    pub duration_ns: Option<i64>,
    /// The logger's clock when the response headers passed it.
    pub response_start_unix_ns: Option<i64>,
    /// The logger's clock when the first response body bytes (or the end of a bodiless response)
    /// passed it.
    pub first_chunk_unix_ns: Option<i64>,
    /// The logger's clock in `on_log`.
    pub log_unix_ns: Option<i64>,
    /// `response.code`; 0 (no response sent) counts as unknown.
    pub status_code: Option<i64>,
    /// `request.size`: request body bytes.
    pub request_bytes: Option<i64>,
    /// `response.size`: response body bytes sent downstream.
    pub response_bytes: Option<i64>,
    /// `response.code_details` (Envoy's reason for the status).
    pub response_code_details: Option<String>,
    /// `response.grpc_status`; only read for gRPC requests (Envoy maps plain HTTP statuses to
    /// gRPC codes too).
    pub grpc_status: Option<i64>,
    /// `source.address`: the downstream peer as `ip:port` (`[v6]:port`).
    pub source_address: Option<String>,
    /// `request.protocol`: `HTTP/1.1`, `HTTP/2`, ...
    pub protocol: Option<String>,
    /// The response `content-type` the client got.
    pub response_content_type: Option<String>,
    /// gRPC messages the client sent and received (counted by the logger from their prefixes).
    pub messages_in: Option<u64>,
    pub messages_out: Option<u64>,
}

/// Everything one record is built from.
#[derive(Clone, Copy, Debug)]
pub struct RecordInputs<'a> {
    pub config: &'a LoggerConfig,
    pub request: &'a RequestFacts,
    pub stream: &'a StreamFacts,
    pub auth: Option<&'a AuthInfo>,
    pub route: Option<&'a RouteInfo>,
    pub usage: Option<&'a UsageInfo>,
    pub content: Option<&'a ContentInfo>,
}

/// Whether this request's content may be logged.
pub(crate) fn content_allowed(policy: LogContent, verbose_ai_logs: bool) -> bool {
    match policy {
        LogContent::Never => false,
        LogContent::WhenEnabled => verbose_ai_logs,
        LogContent::Always => true,
    }
}

/// The byte limit the logger publishes as `duo_content_wanted`, or `None` (publish nothing).
pub(crate) fn content_wanted(config: &LoggerConfig, request: &RequestFacts) -> Option<usize> {
    (content_allowed(config.log_content, request.verbose_ai_logs) && config.max_content_bytes > 0).then_some(config.max_content_bytes)
}

/// The longest prefix of `text` that fits in `max` bytes and ends on a char boundary.
pub(crate) fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Redacts, then bounds a free-text value.
pub(crate) fn clean(text: &str, max: usize) -> String {
    truncate_utf8(&redact(text), max).to_owned()
}

/// Query parameter names whose values are dropped before redaction even looks at them.
const SECRET_QUERY_HINTS: &[&str] = &["token", "key", "secret", "signature", "password", "credential", "auth", "jwt", "sig"];

/// The path as logged: the query keeps its parameter names but secret-looking values are
/// replaced, the fragment is dropped, and the rest is redacted and bounded.
pub fn clean_path(raw: &str) -> String {
    let without_fragment = raw.split('#').next().unwrap_or("");
    let (path, query) = match without_fragment.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (without_fragment, None),
    };
    let mut out = path.to_owned();
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if is_secret_param(name) => format!("{name}={}", crate::redact::MARK),
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    clean(&out, MAX_PATH_BYTES)
}

fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_QUERY_HINTS.iter().any(|hint| name.contains(hint))
}

/// Lower-case hex SHA-256, used for `hash_user_ids`.
pub(crate) fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 3339 UTC with milliseconds (`2026-11-26T23:19:25.123Z`) from unix nanoseconds.
pub(crate) fn rfc3339_from_unix_ns(ns: i64) -> String {
    let ms = ns.div_euclid(1_000_000);
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", tod / 3600, tod % 3600 / 60, tod % 60)
}

/// Python's `datetime.isoformat()` of an aware UTC time, as GitLab's `request_arrived_at`
/// (`2026-12-02T10:20:32.123456+00:00`).
pub(crate) fn isoformat_from_unix_ns(ns: i64) -> String {
    let us = ns.div_euclid(1000);
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}+00:00", tod / 3600, tod % 3600 / 60, tod % 60)
}

/// `ip:port` or `[v6]:port` → (ip, port).
pub(crate) fn split_peer(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    Some((host, port.parse().ok()?))
}

/// Envoy's `HTTP/1.1` → uvicorn's `1.1` (GitLab's `http_version`).
pub(crate) fn http_version(protocol: &str) -> &str {
    protocol.strip_prefix("HTTP/").unwrap_or(protocol)
}

/// `x-gitlab-enabled-feature-flags` as GitLab's gateway logs it: the distinct names, joined by
/// commas.
pub(crate) fn feature_flags(raw: &str) -> String {
    let mut names: Vec<&str> = Vec::new();
    for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names.join(",")
}

/// Proleptic Gregorian date from days since 1970-01-01 (era arithmetic, 400-year cycles).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Seconds as a float with microsecond precision.
fn seconds(ns: i64) -> Value {
    let micros = ns / 1000;
    serde_json::Number::from_f64(micros as f64 / 1e6).map_or(Value::Null, Value::Number)
}

fn since_start(start: Option<i64>, at: Option<i64>) -> Option<i64> {
    // Envoy's clock and ours: a reading before the start (or absurd values) gives no duration.
    at?.checked_sub(start?).filter(|d| *d >= 0)
}

struct Record(Map<String, Value>);

impl Record {
    fn put(&mut self, key: &str, value: impl Into<Value>) {
        self.0.insert(key.to_owned(), value.into());
    }
    fn text(&mut self, key: &str, value: Option<&str>, max: usize) {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            self.put(key, clean(v, max));
        }
    }
    fn id(&mut self, key: &str, value: Option<&str>, hash: bool) {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            let v = clean(v, MAX_HEADER_VALUE_BYTES);
            self.put(key, if hash { sha256_hex(&v) } else { v });
        }
    }
    fn int(&mut self, key: &str, value: Option<i64>) {
        if let Some(v) = value.filter(|v| *v >= 0) {
            self.put(key, v);
        }
    }
}

fn non_empty(value: Option<&String>) -> Option<&str> {
    value.map(String::as_str).filter(|v| !v.is_empty())
}

/// Builds the record (a JSON object). Field names and meanings: docs/logger.md.
pub fn build_record(inputs: &RecordInputs<'_>) -> Map<String, Value> {
    let RecordInputs { config, request, stream, auth, route, usage, content } = *inputs;
    let mut r = Record(Map::new());

    if let Some(start) = stream.start_unix_ns {
        r.put("timestamp", rfc3339_from_unix_ns(start));
    }
    r.text("correlation_id", request.correlation_id.as_deref(), MAX_HEADER_VALUE_BYTES);
    r.text("method", request.method.as_deref(), 16);
    if let Some(path) = non_empty(request.path.as_ref()) {
        r.put("path", clean_path(path));
    }
    r.int("status_code", stream.status_code.filter(|c| *c > 0));

    let response_start = since_start(stream.start_unix_ns, stream.response_start_unix_ns);
    let first_chunk = since_start(stream.start_unix_ns, stream.first_chunk_unix_ns);
    // Envoy's total is on its monotonic clock, the stages on the wall clock the start is on: under
    // load they differ by up to a millisecond, which must not put a stage after the whole.
    let duration = stream
        .duration_ns
        .or_else(|| since_start(stream.start_unix_ns, stream.log_unix_ns))
        .filter(|d| *d >= 0)
        .map(|d| d.max(response_start.unwrap_or(0)).max(first_chunk.unwrap_or(0)));
    if let Some(d) = duration {
        r.put("duration_s", seconds(d));
    }
    if let Some(d) = response_start {
        r.put("response_start_duration_s", seconds(d));
    }
    if let Some(d) = first_chunk {
        r.put("first_chunk_duration_s", seconds(d));
    }
    // GitLab's `duration_request`: arrival minus Rails' send time, -1 when Rails did not say.
    let arrived = stream.start_unix_ns.or(stream.log_unix_ns);
    let wait = match (request.rails_send_start.as_deref().map(|s| s.trim().parse::<f64>()), arrived) {
        (Some(Ok(sent)), Some(at)) if sent.is_finite() => (at as f64 / 1e9 - sent) * 1e6,
        _ => -1e6,
    };
    r.put("duration_request", serde_json::Number::from_f64(wait.round() / 1e6).map_or(Value::Null, Value::Number));
    if let Some(start) = stream.start_unix_ns {
        r.put("request_arrived_at", isoformat_from_unix_ns(start));
    }
    if let Some(path) = non_empty(request.path.as_ref()) {
        let scheme = non_empty(request.scheme.as_ref()).unwrap_or("http");
        let authority = non_empty(request.authority.as_ref()).map(|a| clean(a, MAX_HEADER_VALUE_BYTES)).unwrap_or_default();
        r.put("url", format!("{}://{authority}{}", clean(scheme, 16), clean_path(path)));
    }
    if let Some((ip, port)) = stream.source_address.as_deref().and_then(split_peer) {
        r.put("client_ip", clean(ip, 64));
        r.put("client_port", port);
    }
    if let Some(protocol) = non_empty(stream.protocol.as_ref()) {
        r.put("http_version", clean(http_version(protocol), 16));
    }
    let content_type = non_empty(stream.response_content_type.as_ref()).unwrap_or("unknown");
    r.put("content_type", clean(content_type, 128));

    // Feature and unit primitive: the router's decision, else auth's, else the catalogue's reading
    // of the path (a 404 path has none).
    let classified = match (request.method.as_deref(), request.path.as_deref()) {
        (Some(m), Some(p)) => duo_core::classify(m, p).ok(),
        _ => None,
    };
    let feature = route
        .and_then(|r| non_empty(r.feature.as_ref()))
        .or_else(|| auth.and_then(|a| non_empty(a.feature.as_ref())))
        .or_else(|| classified.as_ref().and_then(|c| c.feature.map(|f| f.name())));
    r.text("feature", feature, 128);
    let unit_primitive = auth
        .and_then(|a| non_empty(a.unit_primitive.as_ref()))
        .or_else(|| classified.as_ref().and_then(|c| c.unit_primitive));
    r.text("unit_primitive", unit_primitive, 128);
    // GitLab's own names for the same two facts.
    r.text("meta.feature_category", classified.as_ref().and_then(|c| c.kind.feature_category()), 64);
    r.text("meta.unit_primitive", unit_primitive, 128);

    if let Some(route) = route {
        r.text("configuration_type", route.configuration_type.as_deref(), 64);
        r.text("provider", route.provider.as_deref(), 64);
        r.text("model_name", route.model_name.as_deref(), 256);
        r.text("model_identifier", route.model_identifier.as_deref(), 256);
        r.text("model_family", route.model_family.as_deref(), 64);
        r.text("platform", route.platform.as_deref(), 64);
        r.text("upstream_cluster", route.upstream_cluster.as_deref(), 256);
        if let Some(stream) = route.stream {
            r.put("stream", stream);
        }
        r.text("code_suggestion_type", route.code_suggestion_type.as_deref(), 64);
        if let Some(lang) = &route.lang {
            // GitLab logs "" when the file name names no language it knows.
            r.put("lang", clean(lang, 64));
        }
        r.text("editor_lang", route.editor_lang.as_deref(), 64);
        r.int("prompt_length", route.prompt_length.and_then(|v| i64::try_from(v).ok()));
    }
    if let Some(usage) = usage {
        r.int("upstream_status", usage.upstream_status.map(i64::from));
        let input = usage.input_tokens.and_then(|v| i64::try_from(v).ok());
        let output = usage.output_tokens.and_then(|v| i64::try_from(v).ok());
        r.int("input_tokens", input);
        r.int("output_tokens", output);
        if let (Some(i), Some(o)) = (input, output) {
            r.int("total_tokens", i.checked_add(o));
        }
        // The platform's model id beside the config key (`model_name`), as OpenTelemetry's
        // gen_ai.request.model / gen_ai.response.model, and how the answer ended.
        r.text("request_model", usage.request_model.as_deref(), 256);
        r.text("response_model", usage.response_model.as_deref(), 256);
        r.text("operation_name", usage.operation.as_deref(), 32);
        r.text("finish_reason", usage.finish_reason.as_deref(), 64);
        r.int("model_output_length", usage.model_output_length.and_then(|v| i64::try_from(v).ok()));
        if let Some(us) = usage.inference_duration_us.and_then(|v| i64::try_from(v).ok()) {
            r.put("inference_duration_s", seconds(us * 1000));
        }
    }

    // Identity: verified by duo_auth when it got that far, else what the request claimed.
    let hash = config.hash_user_ids;
    let instance = auth.and_then(|a| non_empty(a.gitlab_instance_id.as_ref())).or(non_empty(request.gitlab_instance_id.as_ref()));
    r.id("gitlab_instance_id", instance, hash);
    let user = auth.and_then(|a| non_empty(a.gitlab_global_user_id.as_ref())).or(non_empty(request.gitlab_global_user_id.as_ref()));
    r.id("gitlab_global_user_id", user, hash);
    let realm = auth.and_then(|a| non_empty(a.gitlab_realm.as_ref())).or(non_empty(request.gitlab_realm.as_ref()));
    r.text("gitlab_realm", realm, 64);
    r.text("gitlab_host_name", request.gitlab_host_name.as_deref(), MAX_HEADER_VALUE_BYTES);
    r.text("gitlab_version", request.gitlab_version.as_deref(), 64);
    r.text("gitlab_language_server_version", request.gitlab_language_server_version.as_deref(), 64);
    r.text("user_agent", request.user_agent.as_deref(), MAX_HEADER_VALUE_BYTES);
    r.text("gitlab_feature_enablement_type", request.gitlab_feature_enablement_type.as_deref(), 64);
    r.text("gitlab_feature_enabled_by_namespace_ids", request.gitlab_feature_enabled_by_namespace_ids.as_deref(), MAX_HEADER_VALUE_BYTES);
    r.text("gitlab_root_namespace_id", request.gitlab_root_namespace_id.as_deref(), 64);
    r.text("gitlab_organization_id", request.gitlab_organization_id.as_deref(), 64);
    if let Some(flags) = &request.enabled_feature_flags {
        r.put("enabled_feature_flags", clean(&feature_flags(flags), MAX_HEADER_VALUE_BYTES));
    }

    if let Some(auth) = auth {
        r.text("auth_result", Some(&auth.result), 32);
        r.text("auth_error", auth.error.as_deref(), MAX_ERROR_BYTES);
        r.text("token_issuer", auth.issuer.as_deref(), 256);
        // Model-ingress callers: the key's name from duo_auth's config, never the key.
        r.text("ingress_key_name", auth.ingress_key_name.as_deref(), 64);
        if let Some(us) = auth.duration_us.and_then(|v| i64::try_from(v).ok()) {
            r.put("auth_duration_s", seconds(us * 1000));
        }
    }
    // GitLab's gateway names the exception; ours says which side failed: the model platform
    // (or the way to it) or the gateway's own decision.
    let usage_error = usage.and_then(|u| non_empty(u.error.as_ref()));
    let (error, exception_class) = match usage_error {
        Some(e) => (Some(e), Some("UpstreamError")),
        None => (route.and_then(|r| non_empty(r.error.as_ref())), Some("RouteError")),
    };
    r.text("error", error, MAX_ERROR_BYTES);
    if error.is_some() {
        r.text("exception_class", exception_class, 32);
        r.text("exception_message", error, MAX_ERROR_BYTES);
    }
    if let Some(details) = non_empty(stream.response_code_details.as_ref()).filter(|d| *d != "via_upstream") {
        r.put("response_code_details", clean(details, 256));
    }
    if request.grpc {
        r.int("grpc_status", stream.grpc_status);
        r.text("grpc_method", request.path.as_deref().and_then(crate::grpc::method_of), 256);
        r.text("gitlab_correlation_id", request.gitlab_correlation_id.as_deref(), 128);
        if let Some(m) = &request.model_metadata {
            if !r.0.contains_key("model_identifier") {
                r.text("model_identifier", m.identifier.as_deref(), 256);
            }
            r.text("model_provider", m.provider.as_deref(), 64);
        }
        // A call refused before any upstream was chosen forwarded nothing, whatever the client
        // had already sent.
        let forwarded = route.is_some_and(|r| r.upstream_cluster.is_some());
        let count = |n: Option<u64>| n.map(|v| if forwarded { i64::try_from(v).unwrap_or(i64::MAX) } else { 0 });
        r.int("messages_in", count(stream.messages_in));
        r.int("messages_out", count(stream.messages_out));
    }
    r.int("request_bytes", stream.request_bytes);
    r.int("response_bytes", stream.response_bytes);

    if let Some(content) = content.filter(|_| content_allowed(config.log_content, request.verbose_ai_logs)) {
        let mut c = Map::new();
        let mut truncated = false;
        for (key, value) in [("prompt", &content.prompt), ("response", &content.response)] {
            if let Some(v) = value {
                let redacted = redact(v);
                let kept = truncate_utf8(&redacted, config.max_content_bytes);
                truncated |= kept.len() < redacted.len();
                c.insert(key.to_owned(), Value::String(kept.to_owned()));
            }
        }
        if !c.is_empty() {
            if truncated {
                c.insert("truncated".to_owned(), Value::Bool(true));
            }
            r.put("content", Value::Object(c));
        }
    }
    r.0
}

/// The record as one JSON line (no newline; Envoy's log format adds it), as the tests and fuzz
/// targets see it.
#[cfg(any(test, feature = "testing"))]
pub fn render_record(inputs: &RecordInputs<'_>) -> String {
    Value::Object(build_record(inputs)).to_string()
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use serde_json::json;

    const START: i64 = 1_795_000_000_123_456_789; // 2026-11-18T...
    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJpbnN0YW5jZSJ9.c2lnbmF0dXJl";

    fn request() -> RequestFacts {
        RequestFacts {
            correlation_id: Some("req-7f3a".into()),
            method: Some("POST".into()),
            path: Some("/v2/code/completions?api_key=topsecret&x=1".into()),
            user_agent: Some("gitlab-language-server/7.1 vscode".into()),
            gitlab_instance_id: Some("hdr-instance".into()),
            gitlab_global_user_id: Some("hdr-user".into()),
            gitlab_realm: Some("self-managed".into()),
            gitlab_host_name: Some("gitlab.example.com".into()),
            gitlab_version: Some("18.4.1".into()),
            gitlab_language_server_version: Some("7.1.0".into()),
            gitlab_feature_enablement_type: Some("duo_enterprise".into()),
            gitlab_feature_enabled_by_namespace_ids: Some("".into()),
            gitlab_root_namespace_id: Some("9970".into()),
            gitlab_organization_id: None,
            enabled_feature_flags: Some("expanded_ai_logging, ,flag_b,expanded_ai_logging".into()),
            scheme: Some("http".into()),
            authority: Some("aigw.internal:5052".into()),
            rails_send_start: None,
            verbose_ai_logs: false,
            grpc: false,
            gitlab_correlation_id: None,
            model_metadata: None,
        }
    }

    fn stream() -> StreamFacts {
        StreamFacts {
            start_unix_ns: Some(START),
            duration_ns: Some(1_500_000_000),
            response_start_unix_ns: Some(START + 200_000_000),
            first_chunk_unix_ns: Some(START + 250_000_000),
            log_unix_ns: Some(START + 1_600_000_000),
            status_code: Some(200),
            request_bytes: Some(321),
            response_bytes: Some(654),
            response_code_details: Some("via_upstream".into()),
            grpc_status: Some(2),
            source_address: Some("10.0.0.7:51234".into()),
            protocol: Some("HTTP/1.1".into()),
            response_content_type: Some("application/json".into()),
            messages_in: None,
            messages_out: None,
        }
    }

    fn auth() -> AuthInfo {
        AuthInfo {
            result: "ok".into(),
            feature: Some("code_completions".into()),
            unit_primitive: Some("complete_code".into()),
            issuer: Some("https://gitlab.example.com".into()),
            gitlab_instance_id: Some("inst-1".into()),
            gitlab_global_user_id: Some("user-1".into()),
            gitlab_realm: Some("self-managed".into()),
            token_kind: Some("instance".into()),
            ingress_key_name: None,
            scopes: vec!["complete_code".into()],
            error: None,
            duration_us: Some(4_500),
        }
    }

    fn route() -> RouteInfo {
        RouteInfo {
            feature: Some("code_completions".into()),
            configuration_type: Some("hybrid".into()),
            provider: Some("self_hosted".into()),
            model_name: Some("codestral".into()),
            model_identifier: Some("custom_openai/Codestral-22B-v0.1".into()),
            model_family: Some("codestral".into()),
            platform: Some("vllm".into()),
            upstream_cluster: Some("vllm_codestral".into()),
            stream: Some(false),
            error: None,
            code_suggestion_type: Some("completions".into()),
            lang: Some("python".into()),
            editor_lang: Some("python".into()),
            prompt_length: Some(1234),
        }
    }

    fn usage() -> UsageInfo {
        UsageInfo {
            input_tokens: Some(120),
            output_tokens: Some(30),
            upstream_status: Some(200),
            error: None,
            model_output_length: Some(42),
            inference_duration_us: Some(1_250_000),
            request_model: Some("mistralai/Codestral-22B-v0.1".into()),
            response_model: Some("codestral-22b".into()),
            finish_reason: Some("length".into()),
            operation: Some("text_completion".into()),
        }
    }

    fn build(config: &LoggerConfig, request: &RequestFacts, stream: &StreamFacts, auth: Option<&AuthInfo>, route: Option<&RouteInfo>, usage: Option<&UsageInfo>, content: Option<&ContentInfo>) -> Value {
        Value::Object(build_record(&RecordInputs { config, request, stream, auth, route, usage, content }))
    }

    #[test]
    fn every_field_from_known_inputs() {
        let (a, ro, u) = (auth(), route(), usage());
        let record = build(&LoggerConfig::default(), &request(), &stream(), Some(&a), Some(&ro), Some(&u), None);
        let expected = json!({
            "timestamp": rfc3339_from_unix_ns(START),
            "correlation_id": "req-7f3a",
            "method": "POST",
            "path": "/v2/code/completions?api_key=[REDACTED]&x=1",
            "status_code": 200,
            "duration_s": 1.5,
            "response_start_duration_s": 0.2,
            "first_chunk_duration_s": 0.25,
            "duration_request": -1.0,
            "request_arrived_at": isoformat_from_unix_ns(START),
            "url": "http://aigw.internal:5052/v2/code/completions?api_key=[REDACTED]&x=1",
            "client_ip": "10.0.0.7",
            "client_port": 51234,
            "http_version": "1.1",
            "content_type": "application/json",
            "feature": "code_completions",
            "unit_primitive": "complete_code",
            "meta.feature_category": "code_suggestions",
            "meta.unit_primitive": "complete_code",
            "configuration_type": "hybrid",
            "provider": "self_hosted",
            "model_name": "codestral",
            "model_identifier": "custom_openai/Codestral-22B-v0.1",
            "model_family": "codestral",
            "platform": "vllm",
            "upstream_cluster": "vllm_codestral",
            "stream": false,
        });
        let rest = json!({
            "code_suggestion_type": "completions",
            "lang": "python",
            "editor_lang": "python",
            "prompt_length": 1234,
            "upstream_status": 200,
            "input_tokens": 120,
            "output_tokens": 30,
            "total_tokens": 150,
            "request_model": "mistralai/Codestral-22B-v0.1",
            "response_model": "codestral-22b",
            "operation_name": "text_completion",
            "finish_reason": "length",
            "model_output_length": 42,
            "inference_duration_s": 1.25,
            "gitlab_instance_id": "inst-1",
            "gitlab_global_user_id": "user-1",
            "gitlab_realm": "self-managed",
            "gitlab_host_name": "gitlab.example.com",
            "gitlab_version": "18.4.1",
            "gitlab_language_server_version": "7.1.0",
            "user_agent": "gitlab-language-server/7.1 vscode",
            "gitlab_feature_enablement_type": "duo_enterprise",
            "gitlab_root_namespace_id": "9970",
            "enabled_feature_flags": "expanded_ai_logging,flag_b",
            "auth_result": "ok",
            "token_issuer": "https://gitlab.example.com",
            "auth_duration_s": 0.0045,
            "request_bytes": 321,
            "response_bytes": 654,
        });
        let mut expected = expected;
        if let (Some(e), Value::Object(r)) = (expected.as_object_mut(), rest) {
            e.extend(r);
        }
        assert_eq!(record, expected);
    }

    #[test]
    fn a_stage_never_comes_after_the_whole() {
        // Envoy's monotonic total came out 0.4 ms below the first chunk's wall-clock time (seen
        // in e2e under load): the total is raised to the latest stage.
        let st = StreamFacts {
            start_unix_ns: Some(START),
            duration_ns: Some(45_624_000),
            response_start_unix_ns: Some(START + 1_419_000),
            first_chunk_unix_ns: Some(START + 46_040_000),
            ..Default::default()
        };
        let record = build(&LoggerConfig::default(), &RequestFacts::default(), &st, None, None, None, None);
        assert_eq!((record["duration_s"].as_f64(), record["first_chunk_duration_s"].as_f64()), (Some(0.04604), Some(0.04604)));
        let st = StreamFacts { duration_ns: Some(50_000_000), ..st };
        let record = build(&LoggerConfig::default(), &RequestFacts::default(), &st, None, None, None, None);
        assert_eq!(record["duration_s"].as_f64(), Some(0.05), "a consistent total is kept as Envoy measured it");
    }

    #[test]
    fn unknown_values_are_absent() {
        // GitLab's gateway always writes these two: -1 without Rails' send time, "unknown"
        // without a response content type.
        let always = json!({"duration_request": -1.0, "content_type": "unknown"});
        let record = build(&LoggerConfig::default(), &RequestFacts::default(), &StreamFacts::default(), None, None, None, None);
        assert_eq!(record, always);
        // A local 404 on an unknown path: status and request facts, no feature, no model.
        let req = RequestFacts { method: Some("GET".into()), path: Some("/nope".into()), ..Default::default() };
        let st = StreamFacts { status_code: Some(404), start_unix_ns: Some(START), log_unix_ns: Some(START + 1_000_000), ..Default::default() };
        let record = build(&LoggerConfig::default(), &req, &st, None, None, None, None);
        let obj = record.as_object().unwrap();
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 9, "{keys:?}");
        assert_eq!(record["status_code"], 404);
        assert_eq!(record["duration_s"], 0.001, "falls back to log time minus start");
        assert!(obj.get("feature").is_none() && obj.get("first_chunk_duration_s").is_none());
        // Status 0 (no response) and negative sizes are unknown, not zero.
        let st = StreamFacts { status_code: Some(0), request_bytes: Some(-1), ..Default::default() };
        assert_eq!(build(&LoggerConfig::default(), &RequestFacts::default(), &st, None, None, None, None), always);
        // One token count alone gives no total.
        let u = UsageInfo { output_tokens: Some(9), ..Default::default() };
        let record = build(&LoggerConfig::default(), &RequestFacts::default(), &StreamFacts::default(), None, None, Some(&u), None);
        assert_eq!(record, json!({"output_tokens": 9, "duration_request": -1.0, "content_type": "unknown"}));
    }

    #[test]
    fn feature_falls_back_from_route_to_auth_to_catalogue() {
        let req = RequestFacts { method: Some("POST".into()), path: Some("/v1/prompts/chat/explain_code".into()), ..Default::default() };
        let st = StreamFacts::default();
        let cfg = LoggerConfig::default();
        let r = build(&cfg, &req, &st, None, None, None, None);
        assert_eq!((r["feature"].as_str(), r["unit_primitive"].as_str()), (Some("duo_chat_explain_code"), Some("explain_code")));
        let a = AuthInfo { result: "denied".into(), feature: Some("duo_chat".into()), unit_primitive: Some("include_issue_context".into()), error: Some("Unauthorized to access duo_chat".into()), ..Default::default() };
        let r = build(&cfg, &req, &st, Some(&a), None, None, None);
        assert_eq!((r["feature"].as_str(), r["unit_primitive"].as_str()), (Some("duo_chat"), Some("include_issue_context")));
        assert_eq!((r["auth_result"].as_str(), r["auth_error"].as_str()), (Some("denied"), Some("Unauthorized to access duo_chat")));
        let ro = RouteInfo { feature: Some("duo_chat_write_tests".into()), ..Default::default() };
        let r = build(&cfg, &req, &st, Some(&a), Some(&ro), None, None);
        assert_eq!(r["feature"], "duo_chat_write_tests");
    }

    #[test]
    fn identity_prefers_verified_values_and_hashes_on_request() {
        let req = request();
        let st = StreamFacts::default();
        let r = build(&LoggerConfig::default(), &req, &st, None, None, None, None);
        assert_eq!((r["gitlab_instance_id"].as_str(), r["gitlab_global_user_id"].as_str()), (Some("hdr-instance"), Some("hdr-user")));
        let cfg = LoggerConfig { hash_user_ids: true, ..Default::default() };
        let a = auth();
        let r = build(&cfg, &req, &st, Some(&a), None, None, None);
        assert_eq!(r["gitlab_instance_id"], sha256_hex("inst-1"));
        assert_eq!(r["gitlab_global_user_id"], sha256_hex("user-1"));
        assert_eq!(r["gitlab_realm"], "self-managed", "the realm is not an identity");
        assert!(!r.to_string().contains("inst-1") && !r.to_string().contains("user-1"));
    }

    #[test]
    fn sha256_matches_known_vectors() {
        assert_eq!(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339_from_unix_ns(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_from_unix_ns(951_782_400_999_000_000), "2000-02-29T00:00:00.999Z");
        assert_eq!(rfc3339_from_unix_ns(1_798_761_599_000_000_000), "2026-12-31T23:59:59.000Z");
        assert_eq!(rfc3339_from_unix_ns(4_107_542_400_000_000_000), "2100-03-01T00:00:00.000Z");
        assert_eq!(rfc3339_from_unix_ns(-1_000_000), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn secrets_never_reach_the_record() {
        let req = RequestFacts {
            correlation_id: Some(format!("id {JWT}")),
            method: Some("POST".into()),
            path: Some(format!("/v1/prompts/x?token={JWT}&X-Amz-Signature=abc123&ok=1#frag")),
            user_agent: Some("curl Bearer ua-secret".into()),
            ..Default::default()
        };
        let u = UsageInfo { error: Some(r#"upstream said {"api_key": "k-upstream"} Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/x, Signature=deadbeef"#.into()), ..Default::default() };
        let a = AuthInfo { result: "denied".into(), error: Some(format!("bad token {JWT}")), ..Default::default() };
        let c = ContentInfo { prompt: Some(r#"my model_api_key="mk-123" please"#.into()), response: Some("x-amz-security-token: FQoGZXIvYXdz".into()) };
        let cfg = LoggerConfig { log_content: LogContent::Always, ..Default::default() };
        let line = render_record(&RecordInputs { config: &cfg, request: &req, stream: &StreamFacts::default(), auth: Some(&a), route: None, usage: Some(&u), content: Some(&c) });
        for secret in ["eyJ", "abc123", "ua-secret", "k-upstream", "AKIAIOSFODNN7EXAMPLE", "deadbeef", "mk-123", "FQoGZXIvYXdz", "frag"] {
            assert!(!line.contains(secret), "{secret} in {line}");
        }
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["path"], "/v1/prompts/x?token=[REDACTED]&X-Amz-Signature=[REDACTED]&ok=1");
    }

    #[test]
    fn content_policy_table() {
        let c = ContentInfo { prompt: Some("def hello".into()), response: Some("world".into()) };
        let cases = [
            (LogContent::Never, false, false),
            (LogContent::Never, true, false),
            (LogContent::WhenEnabled, false, false),
            (LogContent::WhenEnabled, true, true),
            (LogContent::Always, false, true),
            (LogContent::Always, true, true),
        ];
        for (policy, verbose, logged) in cases {
            let cfg = LoggerConfig { log_content: policy, ..Default::default() };
            let req = RequestFacts { verbose_ai_logs: verbose, ..Default::default() };
            assert_eq!(content_allowed(policy, verbose), logged);
            assert_eq!(content_wanted(&cfg, &req), logged.then_some(8192), "{policy:?} {verbose}");
            let r = build(&cfg, &req, &StreamFacts::default(), None, None, None, Some(&c));
            assert_eq!(r.get("content").is_some(), logged, "{policy:?} verbose={verbose}: {r}");
            if logged {
                assert_eq!(r["content"], json!({"prompt": "def hello", "response": "world"}));
            }
        }
        // A zero limit asks for nothing.
        let cfg = LoggerConfig { log_content: LogContent::Always, max_content_bytes: 0, ..Default::default() };
        assert_eq!(content_wanted(&cfg, &RequestFacts::default()), None);
    }

    #[test]
    fn verbose_header_parsing() {
        for (value, verbose) in [(Some("true"), true), (Some(" TRUE "), true), (Some("false"), false), (Some("1"), false), (None, false)] {
            let facts = RequestFacts::from_headers(|name| (name == VERBOSE_AI_LOGS_HEADER).then(|| value.map(str::to_owned)).flatten());
            assert_eq!(facts.verbose_ai_logs, verbose, "{value:?}");
        }
        let facts = RequestFacts::from_headers(|name| Some(format!("v:{name}")));
        assert_eq!(facts.correlation_id.as_deref(), Some("v:x-request-id"));
        assert_eq!(facts.gitlab_language_server_version.as_deref(), Some("v:x-gitlab-language-server-version"));
        assert_eq!(facts.path.as_deref(), Some("v::path"));
    }

    #[test]
    fn reads_exactly_the_documented_headers() {
        let asked = std::cell::RefCell::new(Vec::new());
        let _ = RequestFacts::from_headers(|name| {
            asked.borrow_mut().push(name.to_owned());
            None
        });
        let mut asked = asked.into_inner();
        asked.sort();
        let mut documented: Vec<String> = CAPTURED_HEADERS.iter().map(|h| (*h).to_owned()).collect();
        documented.sort();
        assert_eq!(asked, documented);
    }

    #[test]
    fn content_is_truncated_on_char_boundaries() {
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("héllo", 3), "hé");
        assert_eq!(truncate_utf8("😀😀", 5), "😀");
        assert_eq!(truncate_utf8("abc", 10), "abc");
        assert_eq!(truncate_utf8("abc", 0), "");
        let cfg = LoggerConfig { log_content: LogContent::Always, max_content_bytes: 5, ..Default::default() };
        let c = ContentInfo { prompt: Some("ab😀cd".into()), response: Some("ok".into()) };
        let r = build(&cfg, &RequestFacts::default(), &StreamFacts::default(), None, None, None, Some(&c));
        assert_eq!(r["content"], json!({"prompt": "ab", "response": "ok", "truncated": true}));
    }

    #[test]
    fn error_prefers_usage_then_route_and_envoy_details_are_kept() {
        let u = UsageInfo { error: Some("stream cut".into()), ..Default::default() };
        let ro = RouteInfo { error: Some("unknown model".into()), ..Default::default() };
        let st = StreamFacts { response_code_details: Some("wasm_fail_stream".into()), ..Default::default() };
        let cfg = LoggerConfig::default();
        let req = RequestFacts::default();
        assert_eq!(build(&cfg, &req, &st, None, Some(&ro), Some(&u), None)["error"], "stream cut");
        let r = build(&cfg, &req, &st, None, Some(&ro), None, None);
        assert_eq!((r["error"].as_str(), r["response_code_details"].as_str()), (Some("unknown model"), Some("wasm_fail_stream")));
    }

    #[test]
    fn grpc_status_only_for_grpc_requests() {
        let st = StreamFacts { status_code: Some(200), grpc_status: Some(14), ..Default::default() };
        let plain = RequestFacts::from_headers(|name| (name == "content-type").then(|| "application/json".to_owned()));
        assert!(!plain.grpc);
        assert!(build(&LoggerConfig::default(), &plain, &st, None, None, None, None).get("grpc_status").is_none());
        let grpc = RequestFacts::from_headers(|name| (name == "content-type").then(|| "application/grpc+proto".to_owned()));
        assert!(grpc.grpc);
        assert_eq!(build(&LoggerConfig::default(), &grpc, &st, None, None, None, None)["grpc_status"], 14);
    }

    #[test]
    fn a_grpc_call_gets_its_method_messages_and_model_but_never_the_key() {
        let metadata = r#"{"provider":"custom_openai","name":"mistral","endpoint":"vllm:8000","api_key":"sk-live-secret","identifier":"custom_openai/Mistral-7B","feature_setting":"duo_agent_platform"}"#;
        let req = RequestFacts::from_headers(|name| match name {
            ":method" => Some("POST".to_owned()),
            ":path" => Some("/DuoWorkflow/ExecuteWorkflow".to_owned()),
            "content-type" => Some("application/grpc".to_owned()),
            "x-gitlab-correlation-id" => Some("corr-1".to_owned()),
            "x-gitlab-agent-platform-model-metadata" => Some(metadata.to_owned()),
            _ => None,
        });
        assert!(req.grpc);
        let st = StreamFacts { status_code: Some(200), grpc_status: Some(0), messages_in: Some(4), messages_out: Some(3), ..Default::default() };
        let forwarded = RouteInfo { feature: Some("duo_agent_platform".into()), upstream_cluster: Some("duo_workflow".into()), ..Default::default() };
        let r = build(&LoggerConfig::default(), &req, &st, None, Some(&forwarded), None, None);
        assert_eq!(r["grpc_method"], "DuoWorkflow/ExecuteWorkflow");
        assert_eq!((r["grpc_status"].as_i64(), r["messages_in"].as_i64(), r["messages_out"].as_i64()), (Some(0), Some(4), Some(3)));
        assert_eq!((r["model_identifier"].as_str(), r["model_provider"].as_str()), (Some("custom_openai/Mistral-7B"), Some("custom_openai")));
        assert_eq!(r["gitlab_correlation_id"], "corr-1");
        assert_eq!(r["feature"], "duo_agent_platform");
        let line = r.to_string();
        assert!(!line.contains("sk-live-secret") && !line.contains("api_key"), "{line}");
        // Refused before an upstream was chosen: nothing was forwarded.
        let refused = build(&LoggerConfig::default(), &req, &StreamFacts { grpc_status: Some(16), ..st }, None, None, None, None);
        assert_eq!((refused["messages_in"].as_i64(), refused["messages_out"].as_i64()), (Some(0), Some(0)));
        // The health check is a gRPC call too (path alone).
        let health = RequestFacts::from_headers(|name| (name == ":path").then(|| "/grpc.health.v1.Health/Check".to_owned()));
        assert!(health.grpc && health.model_metadata.is_none());
    }

    #[test]
    fn rails_send_start_gives_duration_request() {
        // Arrival (request.time) minus Rails' send time, as GitLab's middleware measures it at
        // the request's start; the later log time does not count.
        let req = RequestFacts { rails_send_start: Some(format!("{}", (START - 2_000_000_000) as f64 / 1e9)), ..Default::default() };
        let st = StreamFacts { start_unix_ns: Some(START), log_unix_ns: Some(START + 5_000_000_000), ..Default::default() };
        let r = build(&LoggerConfig::default(), &req, &st, None, None, None, None);
        let d = r["duration_request"].as_f64().unwrap();
        assert!((d - 2.0).abs() < 0.001, "{d}");
        for bad in ["garbage", "", "inf"] {
            let req = RequestFacts { rails_send_start: Some(bad.into()), ..Default::default() };
            assert_eq!(build(&LoggerConfig::default(), &req, &st, None, None, None, None)["duration_request"], -1.0, "{bad}");
        }
    }

    #[test]
    fn gitlab_shaped_helpers() {
        assert_eq!(isoformat_from_unix_ns(1_764_670_832_123_456_789), "2025-12-02T10:20:32.123456+00:00");
        assert_eq!(isoformat_from_unix_ns(0), "1970-01-01T00:00:00.000000+00:00");
        assert_eq!(split_peer("10.0.0.7:51234"), Some(("10.0.0.7", 51234)));
        assert_eq!(split_peer("[::1]:8080"), Some(("::1", 8080)));
        assert_eq!(split_peer("nonsense"), None);
        assert_eq!((http_version("HTTP/1.1"), http_version("HTTP/2"), http_version("weird")), ("1.1", "2", "weird"));
        assert_eq!(feature_flags(""), "");
        assert_eq!(feature_flags("a,,b , a"), "a,b");
    }

    #[test]
    fn errors_name_their_side() {
        let cfg = LoggerConfig::default();
        let req = RequestFacts::default();
        let st = StreamFacts::default();
        let u = UsageInfo { error: Some("upstream 500".into()), ..Default::default() };
        let r = build(&cfg, &req, &st, None, None, Some(&u), None);
        assert_eq!((r["exception_class"].as_str(), r["exception_message"].as_str()), (Some("UpstreamError"), Some("upstream 500")));
        let ro = RouteInfo { error: Some("unknown model".into()), ..Default::default() };
        let r = build(&cfg, &req, &st, None, Some(&ro), None, None);
        assert_eq!((r["exception_class"].as_str(), r["exception_message"].as_str()), (Some("RouteError"), Some("unknown model")));
        assert!(build(&cfg, &req, &st, None, None, None, None).get("exception_class").is_none());
    }

    #[test]
    fn feature_flags_are_logged_only_when_sent() {
        let cfg = LoggerConfig::default();
        let st = StreamFacts::default();
        let none = build(&cfg, &RequestFacts::default(), &st, None, None, None, None);
        assert!(none.get("enabled_feature_flags").is_none());
        let empty = RequestFacts { enabled_feature_flags: Some(String::new()), ..Default::default() };
        assert_eq!(build(&cfg, &empty, &st, None, None, None, None)["enabled_feature_flags"], "");
    }

    #[test]
    fn durations_from_absurd_clock_readings_are_absent_not_wrapped() {
        // Found by fuzz/fuzz_targets/log_record.rs: `at - start` overflowed for a negative start.
        assert_eq!(since_start(Some(-1), Some(i64::MAX)), None);
        assert_eq!(since_start(Some(i64::MIN), Some(0)), None);
        assert_eq!(since_start(Some(10), Some(5)), None);
        assert_eq!(since_start(Some(5), Some(10)), Some(5));
        let config = LoggerConfig::default();
        let stream = StreamFacts { start_unix_ns: Some(i64::MIN), log_unix_ns: Some(i64::MAX), response_start_unix_ns: Some(i64::MAX), ..Default::default() };
        let inputs = RecordInputs { config: &config, request: &RequestFacts::default(), stream: &stream, auth: None, route: None, usage: None, content: None };
        let record = build_record(&inputs);
        assert!(!record.contains_key("duration_s") && !record.contains_key("response_start_duration_s"), "{record:?}");
    }
}
