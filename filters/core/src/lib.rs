//! Pure Duo domain shared by the three filters. Nothing here calls proxy-wasm, so every
//! function links and runs natively, under Node (wasm-bindgen-test) and inside Envoy alike.

pub mod catalogue;
pub mod chat_scopes;
pub mod config;
pub mod errors;
pub mod grpc;
pub mod handoff;
pub mod limits;
pub mod metrics;
pub mod pairs;
pub mod validate;
pub mod version;

pub use catalogue::{Endpoint, EndpointKind, Feature, classify};
