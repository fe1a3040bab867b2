//! duo_auth: GitLab token authentication and unit-primitive authorization for the Duo gateway.
//!
//! Pure modules (compiled on every target, tested natively and under Node):
//! - [`config`]: the plugin configuration and its compiled form;
//! - [`keys`]: JWKS parsing, the shared key set, keys prepared behind one signature-check trait;
//! - [`token`]: [`token::verify`], RS256 signature + time + audience with an injected clock;
//! - [`policy`]: GitLab's rules (headers, cross-checks, scopes, user-token endpoint);
//! - [`user_token`]: issuing user tokens and the verified-token cache;
//! - `fetch`: the JWKS fetch state machine and its schedule;
//! - [`jwt_authn`]: reading Envoy `jwt_authn`'s verdict from metadata bytes.
//!
//! `filter` (wasm32-wasip1 only) is the proxy-wasm adapter.
//!
//! Items are `pub(crate)` unless the benches, the fuzz targets or another crate use them.
//! Natively the adapter is not compiled, so items only it uses would look dead there; the
//! wasm32-wasip1 build, which compiles the adapter, is where dead code is found.
#![cfg_attr(not(target_os = "wasi"), allow(dead_code))]

pub mod config;
mod fetch;
mod ingress;
pub mod jwt_authn;
pub mod keys;
mod metrics;
pub mod policy;
pub mod token;
pub mod user_token;

#[cfg(test)]
mod testkeys;

#[cfg(target_os = "wasi")]
mod filter;
