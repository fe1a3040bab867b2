//! Plain value types the harness hands to tests.

use std::fmt;
use std::path::PathBuf;

/// The three filters this repository ships, by their `dist/` artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Filter {
    Auth,
    Router,
    Logger,
}

impl Filter {
    /// The module name, as in `dist/<name>.wasm`.
    pub fn name(self) -> &'static str {
        match self {
            Filter::Auth => "duo_auth",
            Filter::Router => "duo_router",
            Filter::Logger => "duo_logger",
        }
    }

    /// Every shipped filter, in Envoy chain order (logger -> auth -> router).
    pub fn all() -> [Filter; 3] {
        [Filter::Logger, Filter::Auth, Filter::Router]
    }

    /// `<workspace>/dist/<name>.wasm` (the `DUO_DIST_DIR` environment variable overrides the
    /// directory).
    pub fn artifact(self) -> PathBuf {
        dist_dir().join(format!("{}.wasm", self.name()))
    }
}

/// The directory holding the built filters: `$DUO_DIST_DIR`, else `<workspace root>/dist`.
pub fn dist_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DUO_DIST_DIR") {
        return PathBuf::from(dir);
    }
    // CARGO_MANIFEST_DIR is tests/harness; the workspace root is two levels up.
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../dist")
}

/// What a filter callback returned, or that the VM trapped (a panic in the guest, an
/// out-of-bounds access, `proc_exit`...). A trapped VM stays dead, like Envoy's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
    /// The VM trapped; the message includes the trap and the guest's last critical log.
    Failed(String),
}

impl Action {
    pub(crate) fn from_raw(v: i32) -> Action {
        if v == 0 {
            Action::Continue
        } else {
            Action::Pause
        }
    }
    pub fn is_continue(&self) -> bool {
        *self == Action::Continue
    }
}

/// proxy-wasm log levels (the values of `proxy_log`'s first argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

impl LogLevel {
    pub(crate) fn from_raw(v: i32) -> LogLevel {
        match v {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            _ => LogLevel::Critical,
        }
    }
}

/// One `proxy_log` call (or a line the guest wrote to stdout/stderr through WASI `fd_write`,
/// logged at Info/Error with `context_id` 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// The plugin instance label, e.g. `duo_auth#2`.
    pub plugin: String,
    pub context_id: u32,
    pub level: LogLevel,
    pub message: String,
}

impl fmt::Display for LogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:?}] {} #{}: {}",
            self.level, self.plugin, self.context_id, self.message
        )
    }
}

/// Metric kinds (`proxy_define_metric`'s first argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

/// A metric as the host holds it (process-wide, shared by every plugin of a `Host`, like Envoy
/// stats). `value` is the counter/gauge value; `samples` the recorded histogram values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metric {
    pub name: String,
    pub kind: MetricType,
    pub value: i64,
    pub samples: Vec<u64>,
}

/// One `proxy_http_call` (dispatch_http_call) the guest made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCall {
    pub token: u32,
    /// Label of the plugin that made it (`duo_auth#1`).
    pub plugin: String,
    /// The calling context (a stream context, or the root context for background calls).
    pub context_id: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
    pub timeout_ms: u32,
    /// Set once the test delivered a response (or failure) for it.
    pub answered: bool,
}

impl HttpCall {
    /// First value of a header of the call (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A `proxy_send_local_response` as the filter sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    /// The `details` argument (Envoy's response code details).
    pub details: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub grpc_status: i32,
    /// Label of the plugin that sent it.
    pub plugin: String,
}

impl LocalReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A harness error: the artifact is missing, the module does not compile or instantiate, or a
/// lifecycle call trapped before the plugin existed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HarnessError(pub String);

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HarnessError {}

/// proxy-wasm status codes the host returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    Empty = 7,
    CasMismatch = 8,
    Unimplemented = 12,
}
