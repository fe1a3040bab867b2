//! duo_logger: one JSON access-log record per request, content policy, metrics.

pub mod config;

#[cfg(target_os = "wasi")]
mod filter;
