//! duo_router: GitLab's side of every model call. Decides per Duo feature where a request goes
//! (`decide`), renders the prompt (`prompts`, `chat`), and translates request and answer between
//! GitLab and the model platform (`translate`, over `codec` and `framing`); the platforms' own
//! wire is the GitLab-free `duo-llm` crate. `filter.rs` is the proxy-wasm adapter.

pub mod agent_platform;
pub mod chat;
pub mod codec;
pub mod config;
pub mod decide;
pub mod framing;
pub mod ingress;
pub mod metrics;
pub mod model;
pub mod prompts;
pub mod translate;

#[cfg(target_os = "wasi")]
mod filter;
