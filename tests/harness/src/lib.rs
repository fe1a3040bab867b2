//! # duo-harness: a proxy-wasm ABI 0.2.1 host emulator on wasmtime
//!
//! Runs the real `dist/duo_*.wasm` (built by `./build.sh build`) the way Envoy 1.40 does,
//! and lets tests inspect the resulting state (the Go SDK `proxytest` model): feed events in,
//! then look at headers, bodies, local replies, http calls, filter state, logs and metrics.
//!
//! ```no_run
//! use duo_harness::{Action, Filter, Host, LogLevel};
//!
//! let host = Host::new();
//! let auth = host.load(Filter::Auth, "{}").unwrap(); // Err (never a skip) if dist/ is missing
//! assert!(auth.configured(), "{:?}", auth.logs());
//!
//! let s = auth.new_stream();
//! let a = s.request_headers(&[(":method", "POST"), (":path", "/v1/x"), (":authority", "gw")], false);
//! assert_eq!(a, Action::Continue);
//! s.request_body(b"{}", true);
//! if let Some(reply) = s.local_reply() {
//!     assert_eq!(reply.status, 401);
//! }
//! s.finish(); // on_log, on_done, on_delete
//! assert!(!auth.logged(LogLevel::Error, "panicked"));
//! ```
//!
//! * [`Host`]: shared state of one simulated Envoy (shared data, queues, metrics, clock,
//!   host-wide properties, logs, http calls). Plugins loaded from one host share it, like
//!   worker VMs. Each test owns its host; nothing is global except the compiled-module cache.
//! * [`Plugin`]: one VM with its root context: `configured()`, `logs()`, `tick()`,
//!   `http_calls()`, `deliver_http_call_response()`, `new_stream()`.
//! * [`Stream`]: one request through one filter or a chain ([`Stream::chain`]`(&[&logger,
//!   &auth, &router])`), with Envoy's iteration: requests in chain order, responses in reverse,
//!   `Pause` holds the stream, `continue_stream` resumes it after the VM call, a body `Pause`
//!   buffers. See `docs/harness.md` for the semantics and their limits.
//! * [`PropValue`] and [`encode_pairs`]: property presets serialized like Envoy (CEL maps and
//!   lists in the pair encoding).

mod host;
mod pairs;
mod plugin;
mod stream;
mod types;
mod vm;
mod wasmfile;

pub use host::{DEFAULT_START_NANOS, Host};
pub use pairs::{PropValue, decode_pairs, encode_pairs};
pub use plugin::{LoadOptions, Plugin, module_exports, module_imports};
pub use stream::Stream;
pub use types::{
    Action, Filter, HarnessError, HttpCall, LocalReply, LogEntry, LogLevel, Metric, MetricType,
    dist_dir,
};
