//! The access-log record built from what clients send (headers, path) and what the other
//! filters hand over (filter-state JSON, which a misbehaving or newer filter could garble).
//! Input: 9 x 8 bytes of stream facts, then lines: 13 request header values, 4 hand-off JSON
//! documents (auth, route, usage, content), the logger's configuration JSON; the last three
//! lines are Envoy's source address, protocol and response content type.
//! Oracles: the record is one line of valid JSON; content only when the policy allows; metric
//! names are safe stat segments.
#![no_main]

use duo_core::handoff::{AuthInfo, ContentInfo, RouteInfo, UsageInfo};
use duo_logger::config::{LogContent, LoggerConfig};
use duo_logger::metrics;
use duo_logger::props;
use duo_logger::record::{self, RecordInputs, RequestFacts, StreamFacts};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (numbers, rest) = data.split_at(data.len().min(72));
    let mut n = numbers.chunks(8).map(props::i64_le);
    let mut next_number = || n.next().flatten();
    let stream = StreamFacts {
        start_unix_ns: next_number(),
        duration_ns: next_number(),
        response_start_unix_ns: next_number(),
        first_chunk_unix_ns: next_number(),
        log_unix_ns: next_number(),
        status_code: next_number(),
        request_bytes: next_number(),
        response_bytes: next_number(),
        grpc_status: next_number(),
        response_code_details: Some("via_upstream".to_owned()),
        ..Default::default()
    };

    let text = String::from_utf8_lossy(rest);
    let lines: Vec<&str> = text.split('\n').collect();
    let line = |i: usize| lines.get(i).copied();
    // What Envoy reports about the connection and the answer: the last three lines.
    let tail = |back: usize| lines.len().checked_sub(back).and_then(|i| lines.get(i)).map(|v| (*v).to_owned());
    let stream = StreamFacts {
        source_address: tail(3),
        protocol: tail(2),
        response_content_type: tail(1),
        ..stream
    };
    let request = RequestFacts::from_headers(|name| {
        let i = record::CAPTURED_HEADERS.iter().position(|h| *h == name)?;
        line(i).filter(|v| !v.is_empty()).map(str::to_owned)
    });
    let base = record::CAPTURED_HEADERS.len();
    let auth: Option<AuthInfo> = line(base).and_then(|j| serde_json::from_str(j).ok());
    let route: Option<RouteInfo> = line(base + 1).and_then(|j| serde_json::from_str(j).ok());
    let usage: Option<UsageInfo> = line(base + 2).and_then(|j| serde_json::from_str(j).ok());
    let content: Option<ContentInfo> = line(base + 3).and_then(|j| serde_json::from_str(j).ok());
    let config = line(base + 4).and_then(|j| LoggerConfig::parse(j.as_bytes()).ok()).unwrap_or_default();

    let inputs = RecordInputs {
        config: &config,
        request: &request,
        stream: &stream,
        auth: auth.as_ref(),
        route: route.as_ref(),
        usage: usage.as_ref(),
        content: content.as_ref(),
    };
    let rendered = record::render_record(&inputs);
    assert!(!rendered.contains('\n'), "record spans lines");
    let parsed: serde_json::Value = serde_json::from_str(&rendered).unwrap_or_else(|e| panic!("record is not JSON: {e}"));
    let object = parsed.as_object().unwrap_or_else(|| panic!("record is not an object"));
    if config.log_content == LogContent::Never {
        assert!(!object.contains_key("content"), "content logged under log_content: never");
    }
    for update in metrics::updates(object) {
        assert!(update.name.bytes().all(|b| b.is_ascii_graphic()), "metric name {:?}", update.name);
    }
    if let Some(path) = request.path.as_deref() {
        assert!(record::clean_path(path).len() <= record::MAX_PATH_BYTES);
    }
});
