//! Sizes every filter agrees on.

/// Largest request body the gateway buffers and translates (1 MiB). GitLab caps code-suggestion
/// payloads at 600 000 bytes before adding its own model fields; chat bodies carry scratchpads.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
