//! Golden tests: every case of `filters/router/tests/golden/requests.json` (GitLab request →
//! platform request) and `responses.json` (platform answer → GitLab answer) must produce
//! exactly what `*.expected.json` holds. The inputs are written by `gen_cases.py`; after a
//! deliberate change, `DUO_BLESS=1 cargo test -p duo_router golden` rewrites the expectations
//! (review the diff). Compiled into the crate with `include_str!`, so the same cases also run
//! as wasm under Node.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use duo_core::catalogue::classify;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

const MODELS: &str = include_str!("../../tests/golden/models.json");
const REQUESTS: &str = include_str!("../../tests/golden/requests.json");
const REQUESTS_EXPECTED: &str = include_str!("../../tests/golden/requests.expected.json");
const RESPONSES: &str = include_str!("../../tests/golden/responses.json");
const RESPONSES_EXPECTED: &str = include_str!("../../tests/golden/responses.expected.json");

pub const NOW: u64 = 1_798_675_200;

fn models() -> BTreeMap<String, ModelConfig> {
    serde_json::from_str(MODELS).unwrap()
}

fn request_cases() -> Vec<Value> {
    serde_json::from_str(REQUESTS).unwrap()
}

/// Builds the upstream request of one request case.
pub fn build_case(case: &Value, models: &BTreeMap<String, ModelConfig>, set: &PromptSet) -> Result<UpstreamRequest, GitlabError> {
    let model = &models[case["model"].as_str().unwrap()];
    let endpoint = classify("POST", case["path"].as_str().unwrap()).unwrap();
    let body = serde_json::to_vec(&case["body"]).unwrap();
    let call = Call { kind: endpoint.kind, prompt_id: endpoint.prompt_id.as_deref(), model, prompts: set, now_unix: NOW };
    build_upstream_request(&call, &body)
}

fn request_outcome(r: Result<UpstreamRequest, GitlabError>) -> Value {
    match r {
        Ok(r) => {
            let headers: Map<String, Value> = r.set_headers.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
            json!({
                "path": r.path,
                "headers": headers,
                "stream": r.stream,
                "answer": {"shape": format!("{:?}", r.answer.shape), "wire": format!("{:?}", r.answer.wire), "post": post_name(&r.answer.post)},
                "body": serde_json::from_slice::<Value>(&r.body).unwrap(),
            })
        }
        Err(e) => json!({"status": e.status, "body": serde_json::from_str::<Value>(&e.body).unwrap()}),
    }
}

fn answer_outcome(a: GitlabAnswer) -> Value {
    let headers: Map<String, Value> = a.headers.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
    let body = serde_json::from_slice::<Value>(&a.body).unwrap_or_else(|_| json!(String::from_utf8_lossy(&a.body)));
    json!({
        "status": a.status,
        "headers": headers,
        "body": body,
        "usage": a.usage.input_tokens.map(|i| json!({"input_tokens": i, "output_tokens": a.usage.output_tokens.unwrap_or(0)})),
        "error": a.error,
    })
}

/// The post-processing kind (a generation's code above the cursor is the request's own text).
fn post_name(p: &PostProcess) -> &'static str {
    match p {
        PostProcess::None => "None",
        PostProcess::StripFences => "StripFences",
        PostProcess::Generation { .. } => "Generation",
    }
}

fn check(kind: &str, actual: BTreeMap<String, Value>, expected_src: &str, file: &str) {
    let expected: BTreeMap<String, Value> = serde_json::from_str(expected_src).unwrap();
    #[cfg(not(target_arch = "wasm32"))]
    if std::env::var_os("DUO_BLESS").is_some() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(file);
        let mut text = serde_json::to_string_pretty(&actual).unwrap();
        text.push('\n');
        std::fs::write(path, text).unwrap();
        return;
    }
    let _ = file;
    let mut bad = Vec::new();
    for (name, got) in &actual {
        match expected.get(name) {
            Some(want) if want == got => {}
            Some(want) => bad.push(format!("{kind} `{name}` differs:\n  want {want}\n  got  {got}")),
            None => bad.push(format!("{kind} `{name}` has no expectation")),
        }
    }
    for name in expected.keys().filter(|n| !actual.contains_key(*n)) {
        bad.push(format!("{kind} expectation `{name}` has no case"));
    }
    assert!(bad.is_empty(), "{} golden mismatches (DUO_BLESS=1 regenerates):\n{}", bad.len(), bad.join("\n"));
}

#[test]
fn golden_requests() {
    let set = PromptSet::builtin().unwrap();
    let models = models();
    let cases = request_cases();
    assert!(cases.len() > 100);
    let actual: BTreeMap<String, Value> = cases
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_owned(), request_outcome(build_case(c, &models, &set))))
        .collect();
    assert_eq!(actual.len(), cases.len(), "case names must be unique");
    check("request", actual, REQUESTS_EXPECTED, "requests.expected.json");
}

#[test]
fn golden_responses() {
    let set = PromptSet::builtin().unwrap();
    let models = models();
    let requests: BTreeMap<String, Value> =
        request_cases().into_iter().map(|c| (c["name"].as_str().unwrap().to_owned(), c)).collect();
    let cases: Vec<Value> = serde_json::from_str(RESPONSES).unwrap();
    let mut actual = BTreeMap::new();
    for c in &cases {
        let req = &requests[c["request_case"].as_str().unwrap()];
        let ctx = build_case(req, &models, &set).unwrap().answer;
        let headers: Vec<(String, String)> = c["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        let body = match &c["body"] {
            Value::String(s) => s.clone().into_bytes(),
            v => serde_json::to_vec(v).unwrap(),
        };
        let resp = UpstreamResponse {
            status: c["status"].as_u64().unwrap() as u32,
            headers: &headers,
            body: &body,
            via_upstream: c["via_upstream"].as_bool(),
        };
        actual.insert(c["name"].as_str().unwrap().to_owned(), answer_outcome(translate_response(&ctx, &resp, NOW)));
    }
    assert_eq!(actual.len(), cases.len(), "case names must be unique");
    check("response", actual, RESPONSES_EXPECTED, "responses.expected.json");
}

/// The key GitLab sends must appear in the auth header and nowhere else, in every case.
#[test]
fn golden_key_only_in_auth_headers() {
    let set = PromptSet::builtin().unwrap();
    let models = models();
    for c in request_cases() {
        let Ok(r) = build_case(&c, &models, &set) else { continue };
        let key = "sk-golden-test-key";
        assert!(!String::from_utf8_lossy(&r.body).contains(key), "{}", c["name"]);
        assert!(!r.path.contains(key));
        for (k, v) in &r.set_headers {
            // `duo_kit::Headers::changes` compares names exactly: Envoy's map holds them lower-case.
            assert_eq!(k.to_ascii_lowercase(), *k, "{}: set header names are lower-case", c["name"]);
            if v.contains(key) {
                assert!(*k == "authorization" || *k == "api-key", "{}: {k}", c["name"]);
            }
        }
    }
}
