//! Upstream failures → GitLab's error answers (gitlab-protocol.md §10):
//! - Envoy could not reach the model (no healthy upstream, connect failure, timeout): 503
//!   `{"detail": "Inference failed"}`;
//! - throttling (HTTP 429, Bedrock `ThrottlingException`/`ModelNotReadyException`): 429 with
//!   the upstream `Retry-After`;
//! - any other model-server HTTP error: 421 `{"detail": "<status>: <reason>"}` on the prompt
//!   endpoints (`/v1/prompts`, `/v2/prompts`), 503 `Inference failed` elsewhere (code
//!   suggestions, legacy chat), as GitLab's AI gateway does.

use serde_json::Value;

use super::{AnswerCtx, AnswerShape, GitlabAnswer, UpstreamResponse};

const MAX_REASON_CHARS: usize = 400;

fn detail_answer(status: u32, detail: &str, error: String) -> GitlabAnswer {
    GitlabAnswer {
        status,
        headers: vec![("content-type", "application/json".to_owned())],
        body: serde_json::json!({ "detail": detail }).to_string().into_bytes(),
        usage: None,
        error: Some(error),
    }
}

pub fn inference_failed() -> GitlabAnswer {
    detail_answer(503, "Inference failed", "inference failed".to_owned())
}

pub fn reason_phrase(status: u32) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        424 => "Failed Dependency",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// What the platform said went wrong.
#[derive(Debug, Default, PartialEq)]
pub struct ProviderError {
    /// Bedrock error type, OpenAI `error.type`/`error.code` (never content).
    pub code: Option<String>,
    pub message: Option<String>,
}

fn as_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads the error of any of our platforms: Bedrock (`x-amzn-errortype` + `{"message"}`),
/// vLLM ≥0.10.1 / OpenAI / Azure (`{"error": {...}}`), older vLLM (flat `{"object": "error"}`).
pub fn provider_error(resp: &UpstreamResponse<'_>) -> ProviderError {
    let body: Option<Value> = serde_json::from_slice(resp.body).ok();
    if let Some(t) = resp.header("x-amzn-errortype") {
        let before_colon = t.split(':').next().unwrap_or(t);
        let code = before_colon.rsplit('#').next().unwrap_or(before_colon).trim();
        let message = body.as_ref().and_then(|b| as_text(b.get("message")).or_else(|| as_text(b.get("Message"))));
        return ProviderError { code: Some(code.to_owned()).filter(|c| !c.is_empty()), message };
    }
    let Some(b) = body else { return ProviderError::default() };
    if let Some(e) = b.get("error").filter(|e| e.is_object()) {
        if as_text(e.get("code")).as_deref() == Some("content_filter") {
            return ProviderError { code: Some("content_filter".into()), message: Some(content_filter_reason(e)) };
        }
        let code = as_text(e.get("type")).or_else(|| as_text(e.get("code")));
        return ProviderError { code, message: as_text(e.get("message")) };
    }
    if b.get("object").and_then(Value::as_str) == Some("error") || b.get("message").is_some() {
        return ProviderError {
            code: as_text(b.get("type")).or_else(|| as_text(b.get("__type"))),
            message: as_text(b.get("message")).or_else(|| as_text(b.get("Message"))),
        };
    }
    if let Some(d) = as_text(b.get("detail")) {
        return ProviderError { code: None, message: Some(d) };
    }
    ProviderError::default()
}

/// Azure's content filter: say which categories fired instead of an opaque 400.
fn content_filter_reason(e: &Value) -> String {
    let mut fired = Vec::new();
    if let Some(results) = e.get("innererror").and_then(|i| i.get("content_filter_result")).and_then(Value::as_object) {
        for (category, r) in results {
            if r.get("filtered").and_then(Value::as_bool) == Some(true) || r.get("detected").and_then(Value::as_bool) == Some(true) {
                match r.get("severity").and_then(Value::as_str) {
                    Some(sev) => fired.push(format!("{category} ({sev})")),
                    None => fired.push(category.clone()),
                }
            }
        }
    }
    let what = if fired.is_empty() { String::new() } else { format!(": {}", fired.join(", ")) };
    format!("Azure OpenAI content filter blocked the request{what}. Rephrase the input or adjust the deployment's content filter policy")
}

fn truncate(s: &str) -> String {
    let one_line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(MAX_REASON_CHARS) {
        Some((i, _)) => format!("{}...", &one_line[..i]),
        None => one_line,
    }
}

fn is_envoy_local_reply(resp: &UpstreamResponse<'_>) -> bool {
    match resp.via_upstream {
        Some(v) => !v,
        // Envoy's own replies carry no upstream timing header and a plain-text body.
        None => {
            resp.header("x-envoy-upstream-service-time").is_none()
                && matches!(resp.status, 502..=504)
                && serde_json::from_slice::<Value>(resp.body).is_err()
        }
    }
}

fn retry_after(resp: &UpstreamResponse<'_>) -> Option<String> {
    if let Some(v) = resp.header("retry-after").map(str::trim).filter(|v| !v.is_empty()) {
        return Some(v.to_owned());
    }
    let ms: u64 = resp.header("retry-after-ms")?.trim().parse().ok()?;
    Some(ms.div_ceil(1000).max(1).to_string())
}

pub fn map_error(ctx: &AnswerCtx, resp: &UpstreamResponse<'_>) -> GitlabAnswer {
    if ctx.shape == AnswerShape::ChatAgent {
        // Duo Chat answers 200 with an NDJSON `error` event, as GitLab's gateway does.
        let local = is_envoy_local_reply(resp);
        let status = if local { None } else { Some(resp.status) };
        let code = provider_error(resp).code.map(|c| format!(" {c}")).unwrap_or_default();
        return GitlabAnswer {
            status: 200,
            headers: vec![("content-type", crate::chat::events::CONTENT_TYPE.to_owned())],
            body: crate::chat::error_body(status, resp.body),
            usage: None,
            error: Some(if local { format!("upstream unreachable ({})", resp.status) } else { format!("upstream {}{code}", resp.status) }),
        };
    }
    if is_envoy_local_reply(resp) {
        let why = if resp.status == 504 { "upstream timeout" } else { "upstream unreachable" };
        let mut a = inference_failed();
        a.error = Some(format!("{why} ({})", resp.status));
        return a;
    }
    let pe = provider_error(resp);
    let status_text = resp.status.to_string();
    let code_label = pe.code.as_deref().filter(|c| *c != status_text).map(|c| format!(" {c}")).unwrap_or_default();
    let error = format!("upstream {}{code_label}", resp.status);
    let throttled =
        resp.status == 429 || matches!(pe.code.as_deref(), Some("ThrottlingException" | "ModelNotReadyException"));
    if throttled {
        let mut a = detail_answer(429, "Too many requests. Please try again later.", error);
        if let Some(ra) = retry_after(resp) {
            a.headers.push(("retry-after", ra));
        }
        return a;
    }
    match ctx.shape {
        AnswerShape::PromptV1 | AnswerShape::PromptV2 => {
            let reason = pe.message.as_deref().map(truncate).unwrap_or_else(|| reason_phrase(resp.status).to_owned());
            detail_answer(421, &format!("{}: {reason}", resp.status), error)
        }
        AnswerShape::CodeSuggestions | AnswerShape::ChatV1 | AnswerShape::ChatAgent => {
            let mut a = inference_failed();
            a.error = Some(error);
            a
        }
    }
}
