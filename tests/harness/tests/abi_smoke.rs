//! The built filters load in the host emulator, import only what Envoy provides, export the
//! ABI 0.2.1 entry points, and configure (or refuse) as documented.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use duo_harness::{Action, Filter, Host, LogLevel, module_exports, module_imports};

/// The smallest configuration each filter documents as valid. Owners: update when a field
/// becomes required.
fn minimal_config(filter: Filter) -> &'static str {
    match filter {
        Filter::Auth => r#"{"verifier": "envoy_jwt_authn"}"#,
        Filter::Router => {
            r#"{"configuration_type": "self_hosted", "default": {"provider": "disabled"}}"#
        }
        Filter::Logger => "{}",
    }
}

/// The WASI functions a wasm32-wasip1 Rust cdylib may import (docs/harness.md); anything
/// else means new std functionality Envoy's runtime may not provide.
const WASI_ALLOWED: &[&str] = &[
    "random_get",
    "environ_get",
    "environ_sizes_get",
    "fd_write",
    "proc_exit",
    "clock_time_get",
];

#[test]
fn imports_are_only_proxy_wasm_and_allowed_wasi() {
    for f in Filter::all() {
        let imports = module_imports(&f.artifact()).unwrap();
        assert!(
            imports.iter().any(|(m, n)| m == "env" && n == "proxy_log"),
            "{f:?}: {imports:?}"
        );
        for (module, name) in &imports {
            let ok = (module == "env" && name.starts_with("proxy_"))
                || (module == "wasi_snapshot_preview1" && WASI_ALLOWED.contains(&name.as_str()));
            assert!(ok, "{}: unexpected import {module}.{name}", f.name());
        }
    }
}

#[test]
fn exports_the_abi_entry_points() {
    for f in Filter::all() {
        let exports = module_exports(&f.artifact()).unwrap();
        for required in [
            "proxy_abi_version_0_2_1",
            "_initialize",
            "proxy_on_memory_allocate",
            "proxy_on_context_create",
            "proxy_on_configure",
            "proxy_on_request_headers",
            "proxy_on_log",
            "memory",
        ] {
            assert!(
                exports.iter().any(|e| e == required),
                "{}: no export {required}",
                f.name()
            );
        }
    }
}

#[test]
fn every_filter_configures_with_its_minimal_config() {
    for f in Filter::all() {
        let host = Host::new();
        let p = host.load(f, minimal_config(f)).unwrap();
        assert!(
            p.vm_started(),
            "{}: vm_start false: {:?}",
            f.name(),
            p.logs()
        );
        assert!(
            p.configured(),
            "{}: refused {}: {:?}",
            f.name(),
            minimal_config(f),
            p.logs()
        );
        assert!(p.failure().is_none(), "{:?}", p.failure());
        assert!(
            p.log_messages(LogLevel::Error).is_empty(),
            "{}: {:?}",
            f.name(),
            p.logs()
        );
    }
}

#[test]
fn an_unknown_field_is_refused_with_an_error_naming_it() {
    for f in Filter::all() {
        let host = Host::new();
        let mut config: serde_json::Value = serde_json::from_str(minimal_config(f)).unwrap();
        config["no_such_field_xyz"] = serde_json::json!(1);
        let p = host.load(f, &config.to_string()).unwrap();
        assert!(!p.configured(), "{}: accepted an unknown field", f.name());
        assert!(
            p.failure().is_none(),
            "{}: trapped instead of refusing: {:?}",
            f.name(),
            p.failure()
        );
        assert!(
            p.logged(LogLevel::Error, "no_such_field_xyz"),
            "{}: no error log names the field: {:?}",
            f.name(),
            p.logs()
        );
    }
}

#[test]
fn malformed_json_is_refused_not_trapped() {
    for f in Filter::all() {
        let p = Host::new().load(f, "{not json").unwrap();
        assert!(!p.configured(), "{}", f.name());
        assert!(p.failure().is_none(), "{:?}", p.failure());
        assert!(
            !p.log_messages(LogLevel::Error).is_empty(),
            "{}: refused silently",
            f.name()
        );
    }
}

/// The harness itself can fail: a test that expects a bad config to be accepted fails.
#[test]
#[should_panic(expected = "refused by the filter")]
fn the_harness_fails_a_test_that_expects_a_bad_config_to_pass() {
    let p = Host::new()
        .load(Filter::Logger, r#"{"max_content_bytes": "not a number"}"#)
        .unwrap();
    assert!(
        p.logged(LogLevel::Error, "max_content_bytes"),
        "{:?}",
        p.logs()
    );
    assert!(p.configured(), "refused by the filter: {:?}", p.logs());
}

#[test]
fn a_missing_artifact_is_an_error_with_a_hint() {
    let host = Host::new();
    let err = host
        .load_path(
            std::path::Path::new("/nonexistent/duo_nothing.wasm"),
            duo_harness::LoadOptions::new("{}"),
        )
        .err()
        .unwrap();
    assert!(err.0.contains("./build.sh build"), "{err}");
}

#[test]
fn two_vms_of_one_host_get_distinct_contexts_and_streams_run() {
    let host = Host::new();
    let a = host.load(Filter::Logger, "{}").unwrap();
    let b = host.load(Filter::Logger, "{}").unwrap();
    assert_ne!(a.label(), b.label());
    assert_ne!(a.root_context_id(), b.root_context_id());
    let s = a.new_stream();
    let act = s.request_headers(
        &[
            (":method", "GET"),
            (":path", "/monitoring/healthz"),
            (":authority", "gw"),
        ],
        true,
    );
    assert!(matches!(act, Action::Continue | Action::Pause), "{act:?}");
    assert_eq!(s.finish(), Action::Continue);
    assert!(a.failure().is_none());
}
