//! duo_logger: one JSON access-log record per request, content policy, metrics.
//!
//! Pure modules (`config`, `record`, `redact`, `metrics`, `props`) compile on every target and
//! are tested natively and under Node; only `filter` (the Envoy adapter) touches the host.
//!
//! Items are `pub(crate)` unless the benches or the fuzz targets use them. Natively the adapter
//! is not compiled, so items only it uses would look dead there; the wasm32-wasip1 build, which
//! compiles the adapter, is where dead code is found.
#![cfg_attr(not(target_os = "wasi"), allow(dead_code))]

pub mod config;
pub mod grpc;
pub mod metrics;
pub mod props;
pub mod record;
pub mod redact;

#[cfg(target_os = "wasi")]
mod filter;
