//! What the JWKS source answers (GitLab's keys endpoint, its OIDC discovery document) and the
//! key set the workers share: parsed, every usable key imported, the shared form round-trips.
#![no_main]

use duo_auth::keys::{self, RsaBackend, SharedKeys};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(stored) = keys::parse_jwks(data) {
        assert!(!stored.is_empty());
        let shared = SharedKeys::default().with_source("gitlab", stored, 1);
        assert_eq!(SharedKeys::decode(Some(&shared.encode())), shared);
        let _ = shared.prepare(&["gitlab"], RsaBackend::Rsa);
    }
    if let Ok(path) = keys::parse_discovery(data) {
        assert!(path.starts_with('/'), "{path:?}");
    }
    let _ = SharedKeys::decode(Some(data));
});
