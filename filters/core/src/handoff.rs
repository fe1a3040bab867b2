//! What the filters tell each other, through Envoy filter state (`set_property([key])`, read by
//! the next filter with `get_property([key])`, visible to access logs as `wasm.<key>`).
//! JSON, so an operator can also print any of them with `%FILTER_STATE(wasm.<key>:PLAIN)%`.
//! None of them ever holds a token, an API key or a signature.
//!
//! Order in the chain: duo_logger → duo_auth → duo_router → router. The logger writes
//! [`CONTENT_WANTED`] at request headers; auth writes [`AUTH`]; the router writes [`ROUTE`] once it
//! has decided and [`USAGE`] (plus [`CONTENT`] only when asked) when the answer ends; the logger
//! reads them all in `on_log` and publishes [`ACCESS_LOG`].

use serde::{Deserialize, Serialize};

pub const AUTH: &str = "duo_auth";
pub const ROUTE: &str = "duo_route";
pub const USAGE: &str = "duo_usage";
pub const CONTENT: &str = "duo_content";
/// Set by the logger when this request's content may be logged; holds the byte limit.
pub const CONTENT_WANTED: &str = "duo_content_wanted";
pub const ACCESS_LOG: &str = "duo_access_log";

/// duo_auth's verdict and the verified identity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthInfo {
    /// `ok`, `public`, `bypass` or `denied`.
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_primitive: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitlab_instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitlab_global_user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitlab_realm: Option<String>,
    /// `instance` (GitLab-minted), `user` (issued by duo_auth for the IDE), `ingress_key` (a
    /// model-ingress caller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_kind: Option<String>,
    /// The name of the model-ingress key that authenticated the call (never the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_key_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Microseconds duo_auth spent deciding (key loading and the body check included);
    /// logged as GitLab's `auth_duration_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
}

/// duo_router's decision.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration_type: Option<String>,
    /// `self_hosted`, `vendored`, `aigw` or `disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Code suggestions: what GitLab's gateway logs about the request (`code_suggestion_type`
    /// is the `/v4` component type or `completions`/`generations`; `lang` the language
    /// resolved from the file name, lower case; `editor_lang` the IDE's language id;
    /// `prompt_length` characters of the rendered prompt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_suggestion_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub editor_lang: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_length: Option<u64>,
}

/// What the answer cost and how it ended, written by the router when the response ends.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u32>,
    /// Why a stream was cut or an answer mapped to an error (never content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Characters of the model's answer as GitLab received it (code suggestions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_output_length: Option<u64>,
    /// Microseconds from sending the model request to the end of its answer; logged as
    /// GitLab's `inference_duration_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_duration_us: Option<u64>,    /// The model id the platform was asked for (`models.<name>.model`: served model name,
    /// Bedrock model or inference-profile id, Azure deployment); OpenTelemetry's
    /// `gen_ai.request.model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_model: Option<String>,
    /// The model id the platform says answered, when its answer names one (OpenAI-style
    /// `model`, Anthropic's; Converse never does); `gen_ai.response.model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_model: Option<String>,
    /// The platform's stop reason in OpenAI's vocabulary (`stop`, `length`, `tool_calls`,
    /// `content_filter`), when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// The kind of model call, in OpenTelemetry's `gen_ai.operation.name` words: `chat` (chat
    /// completions, Converse, Anthropic messages) or `text_completion` (a raw prompt:
    /// `/v1/completions`, Bedrock's Mistral and Llama prompts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
}

/// Prompt and answer text; written only when [`CONTENT_WANTED`] was set for the request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn unknown_values_are_absent_not_invented() {
        let json = serde_json::to_string(&UsageInfo { upstream_status: Some(200), ..Default::default() }).unwrap();
        assert_eq!(json, r#"{"upstream_status":200}"#);
        let back: AuthInfo = serde_json::from_str(r#"{"result":"ok","scopes":["duo_chat"]}"#).unwrap();
        assert_eq!(back.scopes, vec!["duo_chat".to_owned()]);
        assert_eq!(back.issuer, None);
    }
}
