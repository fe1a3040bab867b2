//! A self-hosted model entry of the router configuration (`models.<name>`), shared by the
//! routing decision, the prompt renderer and the provider codecs.

use serde::Deserialize;
use std::collections::BTreeMap;

pub use duo_llm::{Api, Platform};

/// GitLab's model family names; they pick the prompt set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Codestral,
    Mistral,
    Mixtral,
    Llama3,
    Codellama,
    Codegemma,
    Deepseekcoder,
    #[serde(rename = "claude_3")]
    Claude3,
    Gpt,
    General,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Codestral => "codestral",
            Family::Mistral => "mistral",
            Family::Mixtral => "mixtral",
            Family::Llama3 => "llama3",
            Family::Codellama => "codellama",
            Family::Codegemma => "codegemma",
            Family::Deepseekcoder => "deepseekcoder",
            Family::Claude3 => "claude_3",
            Family::Gpt => "gpt",
            Family::General => "general",
        }
    }
}

/// Where the upstream credential comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Credentials {
    /// Forward the API key GitLab sends in the body (`model_metadata.api_key`, `model_api_key`).
    #[default]
    Gitlab,
    /// Send none; the Envoy cluster adds it (credential_injector, aws_request_signing).
    Envoy,
}

/// One `models.<name>` entry, as the admin writes it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub platform: Platform,
    pub cluster: String,
    pub authority: String,
    #[serde(default)]
    pub base_path: Option<String>,
    /// The platform's model id: vLLM served model name, Bedrock model/inference-profile id,
    /// Azure deployment name.
    pub model: String,
    pub family: Family,
    #[serde(default)]
    pub api: Option<Api>,
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub identifiers: Vec<String>,
    #[serde(default)]
    pub credentials: Option<Credentials>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Inference parameters merged over the feature defaults (temperature, max_tokens, ...).
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
}

impl ModelConfig {
    /// The API in effect, with the platform's default.
    pub fn effective_api(&self) -> Api {
        match (self.platform, self.api) {
            (_, Some(api)) => api,
            (Platform::Bedrock, None) => Api::Converse,
            _ => Api::Chat,
        }
    }

    /// What the provider wire needs to address this model.
    pub fn target(&self) -> duo_llm::ModelTarget<'_> {
        duo_llm::ModelTarget {
            platform: self.platform,
            model: &self.model,
            base_path: self.base_path.as_deref(),
            api_version: self.api_version.as_deref(),
        }
    }

    /// Bedrock signs with Envoy's `aws_request_signing`; a GitLab key makes no sense there.
    pub fn effective_credentials(&self) -> Credentials {
        match (self.platform, self.credentials) {
            (_, Some(c)) => c,
            (Platform::Bedrock, None) => Credentials::Envoy,
            _ => Credentials::Gitlab,
        }
    }
}

/// Checks one `models.<name>` entry; `path` is `models.<name>`. Cross-entry checks (duplicate
/// identifiers) live in `config.rs`.
pub fn validate(path: &str, m: &ModelConfig) -> Result<(), duo_core::config::ConfigError> {
    use duo_core::config::ConfigError;
    let err = |field: &str, msg: String| Err(ConfigError::new(format!("{path}.{field}"), msg));
    duo_core::validate::check_name(&format!("{path}.cluster"), &m.cluster)?;
    duo_core::validate::check_authority(&format!("{path}.authority"), &m.authority)?;
    if m.model.trim().is_empty() {
        return err("model", "must not be empty".into());
    }
    if let Some(base) = &m.base_path
        && (!base.starts_with('/') || base.contains(['?', '#', ' ']))
    {
        return err("base_path", format!("`{base}` must be a path starting with `/` (no query)"));
    }
    if let Some(api) = m.api {
        let ok = match m.platform {
            Platform::Vllm | Platform::OpenaiCompatible => matches!(api, Api::Chat | Api::Completions),
            Platform::Bedrock => matches!(api, Api::Converse | Api::Invoke),
            Platform::AzureOpenai => matches!(api, Api::Chat),
        };
        if !ok {
            let allowed = match m.platform {
                Platform::Vllm | Platform::OpenaiCompatible => "`chat` or `completions`",
                Platform::Bedrock => "`converse` or `invoke`",
                Platform::AzureOpenai => "`chat`",
            };
            return err("api", format!("platform `{}` takes {allowed}", m.platform.name()));
        }
    }
    match (&m.api_version, m.platform) {
        (Some(v), Platform::AzureOpenai) if v.trim().is_empty() || v.contains(['&', '?', '#', ' ']) => {
            return err("api_version", format!("`{v}` is not an Azure OpenAI api-version (e.g. `2024-10-21` or `v1`)"));
        }
        (Some(_), p) if p != Platform::AzureOpenai => {
            return err("api_version", format!("only `azure_openai` models take an api_version, not `{}`", p.name()));
        }
        _ => {}
    }
    if m.platform == Platform::Bedrock && m.credentials == Some(Credentials::Gitlab) {
        return err(
            "credentials",
            "`bedrock` requests are signed by Envoy's aws_request_signing: use `envoy` (the default)".into(),
        );
    }
    if m.timeout_ms == Some(0) {
        return err("timeout_ms", "must be greater than 0".into());
    }
    for (i, id) in m.identifiers.iter().enumerate() {
        if id.trim().is_empty() || id.len() > 255 {
            return err(&format!("identifiers[{i}]"), "must be 1 to 255 characters (GitLab's limit)".into());
        }
    }
    Ok(())
}
