//! Upstream failures → GitLab's error answers (docs/fidelity.md):
//! - Envoy could not reach the model (no healthy upstream, connect failure, timeout): 503
//!   `{"detail": "Inference failed"}`;
//! - throttling (HTTP 429, Bedrock `ThrottlingException`/`ModelNotReadyException`): 429 with
//!   the upstream `Retry-After`;
//! - any other model-server HTTP error: 503 `Inference failed` (code suggestions, legacy chat);
//! - on the prompt endpoints (`/v1/prompts`, `/v2/prompts`) EVERY model failure is 421
//!   `{"detail": "<code>: <standard reason phrase>"}`, as GitLab's gateway answers for any
//!   exception carrying a status (every LiteLLM error does): the model's own status (429
//!   included), `500` when the model could not be reached, `408` when it timed out. Rails shows
//!   421 as "the self-hosted model server returned code <code>". The access log's `error` keeps
//!   the status and the platform's error type (Azure's content filter: the categories), never
//!   the platform's message, which may quote the request.

use serde_json::Value;

use super::{AnswerCtx, AnswerShape, GitlabAnswer, UpstreamResponse, Usage};

const MAX_REASON_CHARS: usize = 400;

fn detail_answer(status: u32, detail: &str, error: String) -> GitlabAnswer {
    GitlabAnswer {
        status,
        headers: vec![("content-type", "application/json".to_owned())],
        body: serde_json::json!({ "detail": detail }).to_string().into_bytes(),
        usage: Usage::default(),
        error: Some(error),
        finish_reason: None,
        response_model: None,
    }
}

pub fn inference_failed() -> GitlabAnswer {
    detail_answer(503, "Inference failed", "inference failed".to_owned())
}

/// The standard reason phrase of a status, as Python 3.12's `http.client.responses` (what
/// GitLab's gateway puts after the code in its 421 detail).
pub fn reason_phrase(status: u32) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Requested Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a Teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Entity",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => "Unknown Status",
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
            usage: Usage::default(),
            error: Some(if local { format!("upstream unreachable ({})", resp.status) } else { format!("upstream {}{code}", resp.status) }),
            finish_reason: None,
            response_model: None,
        };
    }
    let prompt_endpoint = matches!(ctx.shape, AnswerShape::PromptV1 | AnswerShape::PromptV2);
    if is_envoy_local_reply(resp) {
        let timeout = resp.status == 504;
        let why = if timeout { "upstream timeout" } else { "upstream unreachable" };
        let error = format!("{why} ({})", resp.status);
        if prompt_endpoint {
            // LiteLLM's Timeout carries 408, its APIConnectionError 500.
            return misdirected(if timeout { 408 } else { 500 }, error);
        }
        let mut a = inference_failed();
        a.error = Some(error);
        return a;
    }
    let pe = provider_error(resp);
    let status_text = resp.status.to_string();
    let code_label = pe.code.as_deref().filter(|c| *c != status_text).map(|c| format!(" {c}")).unwrap_or_default();
    // The platform's own message may quote the request: only our content-filter summary (category
    // names) joins the code in the log.
    let explained = match (pe.code.as_deref(), pe.message.as_deref()) {
        (Some("content_filter"), Some(m)) => format!(": {}", truncate(m)),
        _ => String::new(),
    };
    let error = format!("upstream {}{code_label}{explained}", resp.status);
    if prompt_endpoint {
        return misdirected(resp.status, error);
    }
    let throttled =
        resp.status == 429 || matches!(pe.code.as_deref(), Some("ThrottlingException" | "ModelNotReadyException"));
    if throttled {
        let mut a = detail_answer(429, "Too many requests. Please try again later.", error);
        if let Some(ra) = retry_after(resp) {
            a.headers.push(("retry-after", ra));
        }
        return a;
    }
    let mut a = inference_failed();
    a.error = Some(error);
    a
}

/// 421 `"<code>: <reason phrase>"`: the prompt endpoints' answer to any model failure.
fn misdirected(code: u32, error: String) -> GitlabAnswer {
    detail_answer(421, &format!("{code}: {}", reason_phrase(code)), error)
}
