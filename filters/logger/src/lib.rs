//! duo_logger: one JSON access-log record per request, content policy, metrics.
//!
//! Pure modules (`config`, `record`, `redact`, `metrics`, `props`) compile on every target and
//! are tested natively and under Node; only `filter` (the Envoy adapter) touches the host.

pub mod config;
pub mod metrics;
pub mod props;
pub mod record;
pub mod redact;

#[cfg(target_os = "wasi")]
mod filter;
