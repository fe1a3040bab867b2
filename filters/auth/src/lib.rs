//! duo_auth (skeleton: loads and validates its configuration).

pub mod config;

#[cfg(target_os = "wasi")]
mod filter;
