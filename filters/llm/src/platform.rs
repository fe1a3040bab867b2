//! Platforms, their APIs, and the wire a request uses.

use serde::Deserialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Vllm,
    OpenaiCompatible,
    Bedrock,
    AzureOpenai,
}

impl Platform {
    pub fn name(self) -> &'static str {
        match self {
            Platform::Vllm => "vllm",
            Platform::OpenaiCompatible => "openai_compatible",
            Platform::Bedrock => "bedrock",
            Platform::AzureOpenai => "azure_openai",
        }
    }
}

/// Which API of the platform: `chat`/`completions` (vLLM, OpenAI-compatible),
/// `converse`/`invoke` (Bedrock). Azure always uses chat completions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    Chat,
    Completions,
    Converse,
    Invoke,
}

/// The platform's wire format: what the request body and the answer look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    OpenaiChat,
    OpenaiCompletions,
    BedrockConverse,
    BedrockAnthropic,
    BedrockMistral,
    BedrockLlama,
}

impl Wire {
    /// The API this wire calls.
    pub fn api(self) -> Api {
        match self {
            Wire::OpenaiChat => Api::Chat,
            Wire::OpenaiCompletions => Api::Completions,
            Wire::BedrockConverse => Api::Converse,
            Wire::BedrockAnthropic | Wire::BedrockMistral | Wire::BedrockLlama => Api::Invoke,
        }
    }

    /// The call in OpenTelemetry's `gen_ai.operation.name` words: `text_completion` for a raw
    /// text prompt, `chat` for messages.
    pub fn operation_name(self) -> &'static str {
        if self.takes_raw_text() { "text_completion" } else { "chat" }
    }

    /// Wires whose request is one raw text prompt rather than chat messages.
    pub fn takes_raw_text(self) -> bool {
        matches!(self, Wire::OpenaiCompletions | Wire::BedrockMistral | Wire::BedrockLlama)
    }

    pub fn is_openai(self) -> bool {
        matches!(self, Wire::OpenaiChat | Wire::OpenaiCompletions)
    }
}

/// Where a request goes on its platform: what the builders need to write path and body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelTarget<'a> {
    pub platform: Platform,
    /// vLLM served model name, Bedrock model / inference-profile id or ARN, Azure deployment.
    pub model: &'a str,
    /// Path prefix on the upstream (vLLM default `/v1`; Azure resource prefix).
    pub base_path: Option<&'a str>,
    /// Azure `api-version` (a date, `v1` or `preview`).
    pub api_version: Option<&'a str>,
}
