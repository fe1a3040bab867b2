//! The OpenAI-compatible model ingress (`POST /v1/chat/completions`, `GET /v1/models`): any
//! OpenAI client in front of the listed models, with the same codecs, credentials, logs and
//! metrics as GitLab's features. Callers are authenticated by duo_auth's ingress keys.
//!
//! OpenAI-compatible platforms (vLLM, OpenAI-compatible servers, Azure) get the client's request
//! with the served model name (Azure: its deployment path), and their answers pass unchanged
//! (observed for usage); Bedrock gets Converse / ConverseStream built by `duo-llm`, and its
//! answers are written back in OpenAI's shapes. Errors are OpenAI's `{"error"}`.

use crate::codec::{AnswerCtx, AnswerShape, GitlabAnswer, PostProcess, UpstreamResponse, Wire};
use crate::config::Config;
use crate::model::{ModelConfig, Platform};
use duo_core::errors::GitlabError;
use duo_llm::serve::{self, AnswerId, RequestError};
use duo_llm::{LlmRequest, Role, ToolChoice, Usage, bedrock, openai};
use serde::Deserialize;
use serde_json::{Value, json};

/// The `model_ingress` block of the router configuration.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngressConfig {
    #[serde(default)]
    pub enabled: bool,
    /// `models` keys served; absent: all.
    #[serde(default)]
    pub models: Option<Vec<String>>,
}

/// What the answer side needs about an ingress call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressAnswer {
    pub id: AnswerId,
    pub include_usage: bool,
    /// The platform speaks OpenAI: its 2xx answer goes to the client unchanged.
    pub pass_through: bool,
}

/// The request for the platform.
pub struct IngressRequest {
    pub path: String,
    pub body: Vec<u8>,
    pub stream: bool,
    pub answer: AnswerCtx,
    pub set_headers: Vec<(&'static str, String)>,
}

/// An OpenAI-shaped refusal.
pub fn error(status: u32, kind: &str, param: Option<&str>, code: Option<&str>, message: &str) -> GitlabError {
    GitlabError { status, body: String::from_utf8_lossy(&serve::error_body(message, kind, param, code)).into_owned() }
}

fn invalid(e: RequestError) -> GitlabError {
    error(400, "invalid_request_error", e.param.as_deref(), None, &e.message)
}

/// A router refusal (GitLab's `{"detail"}`) in OpenAI's shape, for ingress paths: the message
/// kept, the type from the status (422 becomes OpenAI's 400).
pub fn from_gitlab(e: &GitlabError) -> GitlabError {
    if serde_json::from_str::<Value>(&e.body).is_ok_and(|v| v.get("error").is_some_and(Value::is_object)) {
        return e.clone();
    }
    let detail = serde_json::from_str::<Value>(&e.body).ok().and_then(|v| match v.get("detail") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(items)) => items.first().and_then(|i| i.get("msg")).and_then(Value::as_str).map(str::to_owned),
        _ => None,
    });
    let message = detail.unwrap_or_else(|| "request refused".to_owned());
    match e.status {
        400 | 422 => error(400, "invalid_request_error", None, None, &message),
        401 => error(401, "authentication_error", None, Some("invalid_api_key"), &message),
        403 => error(403, "permission_error", None, None, &message),
        404 => error(404, "invalid_request_error", None, Some("not_found"), &message),
        405 => error(405, "invalid_request_error", None, None, &message),
        413 => error(413, "invalid_request_error", None, Some("request_too_large"), &message),
        s => error(s, "api_error", None, None, &message),
    }
}

/// The ingress's own paths (whatever the method: a wrong one is refused in OpenAI's shape too).
pub fn is_ingress_path(raw_path: &str) -> bool {
    let path = raw_path.split(['?', '#']).next().unwrap_or(raw_path).trim_end_matches('/');
    path == "/v1/chat/completions" || path == "/v1/models"
}

/// Is the ingress on, and does it serve models entry `key`?
pub fn serves(config: &Config, key: &str) -> bool {
    match &config.model_ingress {
        Some(i) if i.enabled => config.models.contains_key(key) && i.models.as_ref().is_none_or(|m| m.iter().any(|k| k == key)),
        _ => false,
    }
}

/// The `models` key a client's `model` names: a key, or one of an entry's identifiers.
pub fn resolve<'a>(config: &'a Config, model: &str) -> Option<&'a str> {
    let key = match config.models.get_key_value(model) {
        Some((k, _)) => k.as_str(),
        None => config.identifiers.get(model).map(String::as_str)?,
    };
    serves(config, key).then_some(key)
}

/// `GET /v1/models`: the served `models` keys in OpenAI's list shape.
pub fn model_list(config: &Config, now_unix: u64) -> GitlabError {
    let data: Vec<Value> = config
        .models
        .keys()
        .filter(|k| serves(config, k))
        .map(|k| json!({"id": k, "object": "model", "created": now_unix, "owned_by": "duo-gateway"}))
        .collect();
    GitlabError { status: 200, body: json!({"object": "list", "data": data}).to_string() }
}

/// 404 for a `model` the ingress does not serve.
pub fn unknown_model(model: &str) -> GitlabError {
    let shown: String = model.chars().take(200).collect();
    error(404, "invalid_request_error", Some("model"), Some("model_not_found"), &format!("The model '{shown}' does not exist or is not served here"))
}

/// The client's request → the platform's. Bad input is a 400 naming the field; nothing is sent.
pub fn build(model_key: &str, model: &ModelConfig, body: &Value, request_id: &str, now_unix: u64) -> Result<IngressRequest, GitlabError> {
    let (llm, options) = serve::parse_request(body).map_err(invalid)?;
    let id = AnswerId { id: format!("chatcmpl-{}", sanitize_id(request_id)), created: now_unix, model: options.model.clone() };
    let pass_through = model.platform != Platform::Bedrock;
    let (wire, path, bytes) = if pass_through {
        let (path, bytes) = forward_openai(model, body)?;
        (Wire::OpenaiChat, path, bytes)
    } else {
        refuse_what_converse_cannot_express(&llm, &options)?;
        let (path, bytes) = bedrock::build(&model.target(), Wire::BedrockConverse, &llm).map_err(|e| match e {
            duo_llm::LlmError::Invalid(m) | duo_llm::LlmError::Unsupported(m) => error(400, "invalid_request_error", None, None, &m),
            e => error(500, "api_error", None, None, &e.to_string()),
        })?;
        (Wire::BedrockConverse, path, bytes)
    };
    let stream = options.stream;
    let accept = match (stream, wire) {
        (false, _) => "application/json",
        (true, Wire::BedrockConverse) => "application/vnd.amazon.eventstream",
        (true, _) => "text/event-stream",
    };
    // The platform credential always comes from Envoy; the caller's key never goes upstream,
    // and a `credentials: gitlab` model gets none (the gateway has no key to send).
    let set_headers = vec![("content-type", "application/json".to_owned()), ("accept", accept.to_owned())];
    let answer = AnswerCtx {
        shape: AnswerShape::OpenAiChat,
        wire,
        platform: model.platform,
        stream,
        model: model.model.clone(),
        family: model.family,
        lang: None,
        reported_model: Some(("model_ingress".to_owned(), model_key.to_owned())),
        feature_flags: Vec::new(),
        chat_model: None,
        post: PostProcess::None,
        gitlab: duo_core::version::GitlabVersion::ASSUMED,
        chat_tools: None,
        ingress: Some(IngressAnswer { id, include_usage: options.include_usage, pass_through }),
    };
    Ok(IngressRequest { path, body: bytes, stream, answer, set_headers })
}

/// An id the client can echo: letters, digits, `-` and `_` of the request id.
fn sanitize_id(request_id: &str) -> String {
    let id: String = request_id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').take(64).collect();
    if id.is_empty() { "duo".to_owned() } else { id }
}

/// The client's JSON for an OpenAI-compatible platform: `model` set to the served name (classic
/// Azure deployments take it from the path instead).
fn forward_openai(model: &ModelConfig, body: &Value) -> Result<(String, Vec<u8>), GitlabError> {
    let mut body = body.clone();
    let path = openai::path(&model.target(), Wire::OpenaiChat);
    if let Some(o) = body.as_object_mut() {
        let azure_classic = model.platform == Platform::AzureOpenai && !path.contains("/openai/v1/");
        if azure_classic {
            o.remove("model");
        } else {
            o.insert("model".into(), Value::String(model.model.clone()));
        }
    }
    let bytes = serde_json::to_vec(&body).map_err(|e| error(500, "api_error", None, None, &e.to_string()))?;
    Ok((path, bytes))
}

/// What Converse has no way to say is refused, never dropped silently.
fn refuse_what_converse_cannot_express(llm: &LlmRequest, o: &serve::Options) -> Result<(), GitlabError> {
    let refuse = |param: &str, why: &str| Err(error(400, "invalid_request_error", Some(param), None, why));
    if o.n > 1 {
        return refuse("n", "Bedrock Converse answers one choice: `n` must be 1");
    }
    if let Some(kind) = &o.response_format {
        return refuse("response_format", &format!("Bedrock Converse has no `{kind}` response format"));
    }
    if o.logprobs {
        return refuse("logprobs", "Bedrock Converse returns no log probabilities");
    }
    let history = llm.messages.iter().any(|m| !m.tool_calls.is_empty() || m.role == Role::Tool);
    if llm.tool_choice == Some(ToolChoice::None) && history {
        return refuse("tool_choice", "Bedrock Converse cannot forbid tools while the conversation holds tool calls");
    }
    if llm.tool_choice.is_some() && llm.tools.is_empty() {
        return refuse("tool_choice", "`tool_choice` needs `tools`");
    }
    Ok(())
}

/// The answer for the client, from a whole upstream answer (any error status, or a 2xx that is
/// not passed through).
pub fn answer(ctx: &AnswerCtx, ingress: &IngressAnswer, resp: &UpstreamResponse<'_>) -> GitlabAnswer {
    let json_answer = |status: u32, body: Vec<u8>, usage: Usage, error: Option<String>| GitlabAnswer {
        status,
        headers: vec![("content-type", "application/json".to_owned())],
        body,
        usage,
        error,
        finish_reason: None,
        response_model: None,
    };
    let fail = |status: u32, kind: &str, code: Option<&str>, message: &str, log: String| {
        json_answer(status, serve::error_body(message, kind, None, code), Usage::default(), Some(log))
    };
    if (200..300).contains(&resp.status) {
        return match duo_llm::parse_completion(ctx.wire, resp.headers, resp.body) {
            Ok(c) => {
                let body = if ingress.pass_through { resp.body.to_vec() } else { serve::completion_body(&ingress.id, &c) };
                let mut a = json_answer(200, body, c.usage, None);
                a.finish_reason = c.finish_reason;
                a.response_model = c.model;
                a
            }
            Err(why) => fail(502, "upstream_error", None, "the model platform's answer could not be read", format!("malformed upstream answer: {why}")),
        };
    }
    let envoy = resp.via_upstream == Some(false);
    match resp.status {
        429 => {
            let mut a = fail(429, "rate_limit_error", Some("rate_limit_exceeded"), "the model platform is rate limiting requests", "upstream_429".into());
            if let Some(r) = resp.header("retry-after") {
                a.headers.push(("retry-after", r.to_owned()));
            }
            a
        }
        503 | 502 if envoy => fail(503, "api_error", Some("upstream_unavailable"), "the model platform cannot be reached", "upstream_unreachable".into()),
        504 if envoy => fail(504, "api_error", Some("upstream_timeout"), "the model platform did not answer in time", "upstream_timeout".into()),
        s => {
            let detail = upstream_message(resp.body);
            let message = match detail {
                Some(d) => format!("the model platform answered {s}: {d}"),
                None => format!("the model platform answered {s}"),
            };
            fail(502, "upstream_error", None, &message, format!("upstream_{s}"))
        }
    }
}

/// The platform's own error message (OpenAI `error.message`, Bedrock `message`), bounded.
fn upstream_message(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let m = v
        .pointer("/error/message")
        .or_else(|| v.get("message"))
        .or_else(|| v.get("Message"))
        .and_then(Value::as_str)?;
    Some(m.chars().take(300).collect())
}

#[cfg(test)]
mod tests;
