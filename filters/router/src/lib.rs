//! duo_router (skeleton: loads and validates its configuration).

pub mod chat;
pub mod codec;
pub mod config;
pub mod decide;
pub mod model;
pub mod prompts;
pub mod stream;

#[cfg(target_os = "wasi")]
mod filter;
