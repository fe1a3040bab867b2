//! The emulator's own semantics, checked through a probe filter (tests/harness/probe, built on
//! demand into target-harness-probe/) whose behaviour each request chooses with `x-probe-<name>`.
//! These pin the Envoy behaviours docs/harness.md promises, so filter tests can rely on them.

// Integration tests are test code: helpers outside #[test] fns may unwrap (clippy.toml only
// covers #[test] fns and #[cfg(test)] modules).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use duo_harness::{Action, Host, LoadOptions, LogLevel, MetricType, Plugin, PropValue, Stream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn probe_wasm() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(build_probe)
        .clone()
        .unwrap_or_else(|e| panic!("building the probe filter failed: {e}"))
}

fn build_probe() -> Result<PathBuf, String> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = here.join("../../target-harness-probe");
    let mut child = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip1",
            "--manifest-path",
        ])
        .arg(here.join("probe/Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            if !status.success() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                return Err(format!("cargo build of the probe failed: {err}"));
            }
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("cargo build of the probe took over 600 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(target.join("wasm32-wasip1/release/duo_harness_probe.wasm"))
}

fn probe(host: &Host, config: &str) -> Plugin {
    let p = host
        .load_path(&probe_wasm(), LoadOptions::new(config))
        .unwrap();
    assert!(p.configured(), "{:?}", p.logs());
    p
}

fn req<'a>(ops: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        (":method", "POST"),
        (":path", "/v1/x"),
        (":authority", "gw"),
        ("x-remove", "bye"),
    ];
    h.extend_from_slice(ops);
    h
}

#[test]
fn lifecycle_config_refusal_and_ticks_shared_by_workers() {
    let host = Host::new();
    let a = probe(&host, "name=p");
    assert!(a.logged(LogLevel::Info, "probe vm start"));
    assert_eq!(a.tick_period(), Some(Duration::from_secs(1)));
    let refused = host
        .load_path(&probe_wasm(), LoadOptions::new("name=p fail"))
        .unwrap();
    assert!(!refused.configured());
    assert!(refused.logged(LogLevel::Error, "refusing config"));
    let b = probe(&host, "name=p");
    assert_eq!(a.tick(), Action::Continue);
    assert_eq!(b.tick(), Action::Continue);
    assert_eq!(
        host.shared_data("probe_ticks").map(|(v, _)| v),
        Some(b"2".to_vec())
    );
    assert!(b.reconfigure("name=q"));
    assert!(!b.reconfigure("fail"));
}

#[test]
fn pause_in_headers_still_delivers_the_body_and_continue_from_body_releases_both() {
    let host = Host::new();
    let p = probe(&host, "name=p");
    let s = p.new_stream();
    assert_eq!(
        s.request_headers(&req(&[("x-probe-p", "pause")]), false),
        Action::Pause
    );
    assert!(!s.request_headers_sent_upstream());
    assert_eq!(s.request_body(b"hello", true), Action::Continue);
    assert_eq!(
        s.filter_state_str("probe_p_body_calls").as_deref(),
        Some("5:true")
    );
    assert!(s.request_headers_sent_upstream());
    assert!(s.request_complete_upstream());
    assert_eq!(s.upstream_request_body(), b"hello");
}

#[test]
fn body_pause_buffers_and_the_next_callback_sees_everything() {
    let host = Host::new();
    let p = probe(&host, "name=p");
    let s = p.new_stream();
    assert_eq!(
        s.request_headers(&req(&[("x-probe-p", "buffer")]), false),
        Action::Continue
    );
    assert_eq!(s.request_body(b"ab", false), Action::Pause);
    assert_eq!(s.request_body(b"cd", false), Action::Pause);
    assert_eq!(
        s.filter_state_str("probe_p_body_calls").as_deref(),
        Some("4:false")
    );
    assert_eq!(s.buffered_request_body(), b"abcd");
    assert!(s.upstream_request_body().is_empty());
    assert_eq!(s.request_body(b"ef", true), Action::Continue);
    assert_eq!(
        s.filter_state_str("probe_p_body_calls").as_deref(),
        Some("6:true")
    );
    assert_eq!(s.upstream_request_body(), b"ABCDEF");
    assert!(s.buffered_request_body().is_empty());
}

#[test]
fn header_mutations_are_visible_and_derived_properties_follow_them() {
    let host = Host::new();
    let p = probe(&host, "name=p");
    let s = p.new_stream();
    assert_eq!(
        s.request_headers(&req(&[("x-probe-p", "mutate,route")]), true),
        Action::Continue
    );
    assert_eq!(s.request_header(":path").as_deref(), Some("/rewritten"));
    assert_eq!(s.request_header("x-added-p").as_deref(), Some("1"));
    assert_eq!(s.request_header("x-remove"), None);
    assert_eq!(
        s.property(&["request", "path"]),
        Some(b"/rewritten".to_vec())
    );
    assert_eq!(s.foreign_calls(), vec!["clear_route_cache".to_string()]);
}

#[test]
fn local_reply_is_shaped_like_envoys_and_ends_the_request() {
    let host = Host::new();
    let p = probe(&host, "name=p");
    let s = p.new_stream();
    assert_eq!(
        s.request_headers(&req(&[("x-probe-p", "reply")]), false),
        Action::Pause
    );
    let r = s.local_reply().unwrap();
    assert_eq!(
        (r.status, r.body_str().as_str(), r.header("x-probe")),
        (403, "denied by p", Some("p"))
    );
    assert_eq!(s.response_header(":status").as_deref(), Some("403"));
    assert_eq!(
        s.response_header("content-type").as_deref(),
        Some("text/plain")
    );
    assert_eq!(s.response_header("content-length").as_deref(), Some("11"));
    assert_eq!(s.downstream_response_body_str(), "denied by p");
    assert!(s.response_complete_downstream());
    assert!(!s.request_headers_sent_upstream());
    assert_eq!(s.request_body(b"ignored", true), Action::Pause);
    assert!(
        s.filter_state("probe_p_body_calls").is_none(),
        "body after a local reply must not reach the filter"
    );
    assert_eq!(s.finish(), Action::Continue);
    let log = s.filter_state_str("log_p").unwrap();
    assert!(log.contains("code=Some(403)"), "{log}");
    assert!(log.contains("path=Some(\"/v1/x\")"), "{log}");
    assert!(
        log.contains("missing=Err(NotFound)") || log.contains("missing=Ok(None)"),
        "{log}"
    );
}

#[test]
fn callout_then_resume_and_envoy_forgets_request_headers_after_continue() {
    let host = Host::new();
    let p = probe(&host, "name=p");
    let s = p.new_stream();
    assert_eq!(
        s.request_headers(&req(&[("x-probe-p", "callout,late-read")]), true),
        Action::Pause
    );
    let calls = p.pending_http_calls();
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(
        (
            c.cluster.as_str(),
            c.header(":path"),
            c.body.as_slice(),
            c.timeout_ms
        ),
        ("svc", Some("/check"), &b"ping"[..], 2000)
    );
    assert_eq!(c.context_id, s.context_ids()[0]);
    assert_eq!(
        s.deliver_http_call_response(c.token, &[(":status", "200")], b"ok"),
        Action::Continue
    );
    assert!(s.request_headers_sent_upstream());
    assert_eq!(s.request_header("x-callout").as_deref(), Some("ok"));
    assert!(p.pending_http_calls().is_empty());
    assert!(
        matches!(p.deliver_http_call_response(c.token, &[], b""), Action::Failed(m) if m.contains("already answered"))
    );
    assert_eq!(
        s.response_headers(&[(":status", "200")], true),
        Action::Continue
    );
    assert_eq!(s.response_header("x-late-read").as_deref(), Some("Ok(0)"));
}

#[test]
fn callout_denial_failure_and_unknown_cluster() {
    let host = Host::new();
    let p = probe(&host, "name=p");
    let s = p.new_stream();
    s.request_headers(&req(&[("x-probe-p", "callout")]), true);
    let token = s.http_calls()[0].token;
    s.deliver_http_call_response(token, &[(":status", "500")], b"");
    assert_eq!(
        s.local_reply().map(|r| (r.status, r.body_str())),
        Some((401, "callout said 500 by p".to_string()))
    );

    let s = p.new_stream();
    s.request_headers(&req(&[("x-probe-p", "callout")]), true);
    s.fail_http_call(s.http_calls()[0].token);
    assert_eq!(s.local_reply().map(|r| r.status), Some(503));

    host.set_clusters(&["other"]);
    let s = p.new_stream();
    s.request_headers(&req(&[("x-probe-p", "callout")]), true);
    assert!(s.http_calls().is_empty());
    assert_eq!(
        s.local_reply().map(|r| r.body_str()),
        Some("dispatch BadArgument by p".to_string())
    );
}

#[test]
fn chain_iterates_in_order_and_responses_in_reverse() {
    let host = Host::new();
    let (a, b, c) = (
        probe(&host, "name=a"),
        probe(&host, "name=b"),
        probe(&host, "name=c"),
    );
    let s = Stream::chain(&[&a, &b, &c]);
    let h = req(&[
        ("x-probe-a", "state,resp-mutate"),
        ("x-probe-b", "callout,resp-mutate"),
        ("x-probe-c", "state,resp-mutate"),
    ]);
    assert_eq!(s.request_headers(&h, true), Action::Pause);
    assert!(
        s.trace()
            .iter()
            .all(|t| !t.starts_with("duo_harness_probe#3")),
        "c ran before b resumed: {:?}",
        s.trace()
    );
    let token = b.pending_http_calls()[0].token;
    assert_eq!(
        s.deliver_http_call_response(token, &[(":status", "200")], b"ok"),
        Action::Continue
    );
    assert_eq!(
        s.request_header("x-saw-c").as_deref(),
        Some("set-by-a|set-by-a")
    );
    assert!(s.request_headers_sent_upstream());
    assert_eq!(
        s.response_headers(&[(":status", "200")], true),
        Action::Continue
    );
    assert_eq!(s.response_header("x-order").as_deref(), Some("cba"));
}

#[test]
fn a_local_reply_in_a_chain_runs_through_every_encoder() {
    let host = Host::new();
    let (a, b, c) = (
        probe(&host, "name=a"),
        probe(&host, "name=b"),
        probe(&host, "name=c"),
    );
    let s = Stream::chain(&[&a, &b, &c]);
    let h = req(&[
        ("x-probe-a", "resp-mutate"),
        ("x-probe-b", "reply"),
        ("x-probe-c", "resp-mutate"),
    ]);
    assert_eq!(s.request_headers(&h, true), Action::Pause);
    // c never saw the request, so it has no ops; a rewrote the reply's headers.
    assert_eq!(s.response_header("x-order").as_deref(), Some("a"));
    assert_eq!(
        s.local_reply().map(|r| r.plugin),
        Some(b.label().to_string())
    );
    assert!(
        s.trace()
            .iter()
            .any(|t| t.starts_with(c.label()) && t.contains("Response headers")),
        "{:?}",
        s.trace()
    );
    assert!(
        !s.trace()
            .iter()
            .any(|t| t.starts_with(c.label()) && t.contains("Request")),
        "{:?}",
        s.trace()
    );
}

#[test]
fn properties_presets_and_pair_encoded_metadata() {
    let host = Host::new();
    host.set_property(&["node", "id"], "node-1");
    let p = probe(&host, "name=p");
    let s = p.new_stream();
    let claims = serde_json::json!({"sub": "user-1", "scopes": ["complete_code"]});
    s.set_property(
        &[
            "metadata",
            "filter_metadata",
            "envoy.filters.http.jwt_authn",
            "duo_jwt_payload",
        ],
        PropValue::from_json(&claims),
    );
    s.request_headers(&req(&[("x-probe-p", "props")]), true);
    assert_eq!(
        s.request_header("x-props-p").as_deref(),
        Some("/v1/x|user-1|duo_harness_probe|node-1")
    );
    let whole = s
        .property(&[
            "metadata",
            "filter_metadata",
            "envoy.filters.http.jwt_authn",
            "duo_jwt_payload",
        ])
        .unwrap();
    let pairs = duo_harness::decode_pairs(&whole).unwrap();
    assert!(
        pairs.contains(&(b"sub".to_vec(), b"user-1".to_vec())),
        "{pairs:?}"
    );
    let scopes = pairs
        .iter()
        .find(|(k, _)| k == b"scopes")
        .map(|(_, v)| duo_harness::decode_pairs(v).unwrap());
    assert_eq!(scopes, Some(vec![(b"complete_code".to_vec(), vec![])]));
}

#[test]
fn metrics_and_shared_data_are_host_wide() {
    let host = Host::new();
    let (w1, w2) = (probe(&host, "name=p"), probe(&host, "name=p"));
    for w in [&w1, &w2, &w1] {
        let s = w.new_stream();
        assert_eq!(
            s.request_headers(&req(&[("x-probe-p", "metric,shared")]), true),
            Action::Continue
        );
    }
    assert_eq!(host.metric_value("probe.requests"), Some(3));
    assert_eq!(
        host.metric_kind("probe.requests"),
        Some(MetricType::Counter)
    );
    assert_eq!(host.metric_value("probe.gauge"), Some(7));
    assert_eq!(
        host.shared_data("probe_counter").map(|(v, _)| v),
        Some(b"3".to_vec())
    );
}

#[test]
fn a_trap_fails_the_stream_and_kills_the_vm() {
    let host = Host::new();
    let p = probe(&host, "name=p");
    let s = p.new_stream();
    let a = s.request_headers(&req(&[("x-probe-p", "bad-read")]), true);
    assert!(
        matches!(&a, Action::Failed(m) if m.contains("unexpected status")),
        "{a:?}"
    );
    assert!(p.failure().is_some());
    assert!(matches!(
        p.new_stream().request_headers(&req(&[]), true),
        Action::Failed(_)
    ));
}

#[test]
fn reset_and_late_local_reply() {
    let host = Host::new();
    let p = probe(&host, "name=p");
    let s = p.new_stream();
    s.request_headers(&req(&[("x-probe-p", "reset")]), true);
    assert!(s.was_reset(), "{:?}", s.trace());

    let s = p.new_stream();
    s.request_headers(&req(&[("x-probe-p", "resp-late-reply")]), true);
    assert_eq!(
        s.response_headers(&[(":status", "200")], false),
        Action::Continue
    );
    assert!(s.response_headers_sent_downstream());
    s.response_body(b"partial", false);
    assert!(s.was_reset());
    assert_eq!(s.late_local_replies().len(), 1);
    assert!(s.local_reply().is_none());
}

#[test]
fn response_body_buffering_and_rewrite() {
    let host = Host::new();
    let p = probe(&host, "name=p");
    let s = p.new_stream();
    s.request_headers(&req(&[("x-probe-p", "resp-buffer")]), true);
    assert_eq!(
        s.response_headers(&[(":status", "200"), ("content-length", "4")], false),
        Action::Continue
    );
    assert_eq!(s.response_header("content-length"), None);
    assert_eq!(s.response_body(b"ab", false), Action::Pause);
    assert!(s.downstream_response_body().is_empty());
    assert_eq!(s.response_body(b"cd", true), Action::Continue);
    assert_eq!(s.downstream_response_body_str(), "ABCD");
}

#[test]
fn root_callouts_on_tick_and_queues() {
    let host = Host::new();
    let p = probe(&host, "name=p root-callout queue");
    p.tick();
    let call = p.pending_http_calls().pop().unwrap();
    assert_eq!(
        (call.cluster.as_str(), call.context_id),
        ("keys", p.root_context_id())
    );
    assert_eq!(
        p.deliver_http_call_response(call.token, &[(":status", "200")], b"jwks"),
        Action::Continue
    );
    assert_eq!(
        host.shared_data("probe_root_call").map(|(v, _)| v),
        Some(b"1:200:jwks".to_vec())
    );
    assert!(host.enqueue_shared_queue("", "probe_q", b"item-1"));
    assert_eq!(p.deliver_ready_queues(), Action::Continue);
    assert_eq!(
        host.shared_data("probe_q_last").map(|(v, _)| v),
        Some(b"item-1".to_vec())
    );
}

#[test]
fn events_envoy_could_not_deliver_are_refused_as_harness_misuse() {
    let host = Host::new();
    let p = probe(&host, "name=p");
    let s = p.new_stream();
    let refused = |a: Action, why: &str| matches!(&a, Action::Failed(m) if m.starts_with("harness:") && m.contains(why));
    assert!(refused(
        s.request_body(b"x", true),
        "before request headers"
    ));
    assert_eq!(
        s.request_headers(&req(&[("x-probe-p", "pause")]), false),
        Action::Pause
    );
    assert!(refused(
        s.response_headers(&[(":status", "200")], true),
        "before the request headers went upstream"
    ));
    assert!(refused(s.request_headers(&req(&[]), true), "already sent"));
    assert_eq!(s.request_body(b"x", true), Action::Continue);
    assert!(refused(s.request_body(b"y", true), "after the end"));
    assert!(refused(
        s.response_body(b"y", true),
        "before response headers"
    ));
    assert_eq!(
        s.response_headers(&[(":status", "200")], true),
        Action::Continue
    );
    let t = s.trace();
    assert!(
        t.len() >= 3 && t[0].contains("Request headers") && t[0].ends_with("Pause"),
        "{t:?}"
    );
}

#[test]
fn a_local_reply_while_encoding_goes_straight_to_the_client() {
    let host = Host::new();
    let (a, b) = (probe(&host, "name=a"), probe(&host, "name=b"));
    let s = Stream::chain(&[&a, &b]);
    let h = req(&[("x-probe-a", "resp-mutate"), ("x-probe-b", "resp-reply")]);
    assert_eq!(s.request_headers(&h, true), Action::Continue);
    // Responses visit b first; b replaces the upstream response before it went downstream.
    assert_eq!(
        s.response_headers(&[(":status", "200")], false),
        Action::Pause
    );
    assert_eq!(s.response_header(":status").as_deref(), Some("500"));
    assert_eq!(
        s.response_header("x-order"),
        None,
        "a must not see a direct local reply"
    );
    assert_eq!(s.downstream_response_body_str(), "response rejected by b");
    assert!(s.response_complete_downstream());
    assert!(!s.was_reset());
    assert!(
        matches!(s.response_body(b"late upstream bytes", true), Action::Failed(m) if m.contains("local reply"))
    );
}

#[test]
fn trailers_end_the_stream_without_end_of_stream_on_the_body() {
    let host = Host::new();
    let p = probe(&host, "name=p");
    let s = p.new_stream();
    assert_eq!(s.request_headers(&req(&[]), false), Action::Continue);
    assert_eq!(s.request_body(b"abc", false), Action::Continue);
    assert!(!s.request_complete_upstream());
    assert_eq!(s.request_trailers(&[("x-checksum", "1")]), Action::Continue);
    assert_eq!(
        s.filter_state_str("probe_p_body_calls").as_deref(),
        Some("3:false")
    );
    assert!(s.request_complete_upstream());
    assert_eq!(
        s.request_trailer_map(),
        vec![("x-checksum".to_string(), "1".to_string())]
    );
    assert!(
        s.trace()
            .iter()
            .any(|t| t.contains("Request trailers(n=1)")),
        "{:?}",
        s.trace()
    );
}
