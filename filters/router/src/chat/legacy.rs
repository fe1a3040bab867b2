//! Legacy `POST /v1/chat/agent` (and `/v1/chat/{invokable}`): GitLab sends the finished prompt
//! as one prompt component; the gateway passes its messages to the model and answers
//! `{"response", "metadata"}` (or raw text chunks when `stream` is true).
//!
//! Limits are GitLab's gateway's: exactly one component; `content` a string of at most
//! 400 000 characters or 1 to 100 messages; `type`, `metadata.source`, `metadata.version` at
//! most 100 characters; `params.stop_sequences` 1 to 10 strings of at most 225 characters,
//! `temperature` 0 to 1, `max_tokens_to_sample` 1 to 8192.

use crate::prompts::{Message, Role};
use super::validation::invalid;
use duo_core::errors::GitlabError;
use serde_json::{Map, Value};

pub const MAX_CONTENT_CHARS: usize = 400_000;
pub const MAX_MESSAGES: usize = 100;

/// Model names GitLab may put in `payload.model` (its LiteLLM families and Anthropic models,
/// 18.4 and later gateways).
pub const MODEL_NAMES: [&str; 30] = [
    "codegemma",
    "codellama",
    "codestral",
    "codestral-2501",
    "codestral-2508",
    "mistral",
    "mixtral",
    "deepseekcoder",
    "claude_3",
    "claude_3.5",
    "gpt",
    "qwen2p5-coder-7b",
    "llama3",
    "general",
    "claude-2.1",
    "claude-3-sonnet-20240229",
    "claude-3-5-sonnet-20240620",
    "claude-3-5-sonnet@20240620",
    "claude-3-haiku-20240307",
    "claude-3-5-haiku-20241022",
    "claude-3-5-sonnet-20241022",
    "claude-3-5-sonnet-v2@20241022",
    "claude-3-7-sonnet-20250219",
    "claude-3-7-sonnet@20250219",
    "claude-sonnet-4-20250514",
    "claude-sonnet-4@20250514",
    "claude-sonnet-4-5-20250929",
    "claude-sonnet-4-5@20250929",
    "claude-sonnet-4-6",
    "claude-haiku-4-5-20251001",
];

#[derive(Clone, Debug, PartialEq)]
pub struct LegacyParams {
    pub stop_sequences: Vec<String>,
    pub temperature: f64,
    pub max_tokens: u32,
}

/// A validated legacy chat request. `Debug` never shows the API key.
#[derive(Clone, PartialEq)]
pub struct LegacyChatRequest {
    /// The prompt as chat messages (a string prompt becomes one user message).
    pub messages: Vec<Message>,
    pub stream: bool,
    /// `anthropic` or `litellm` (absent: GitLab's default, Anthropic).
    pub provider: Option<String>,
    /// The model family (`mistral`, `claude_3`, ...) or Anthropic model name.
    pub model: Option<String>,
    pub model_endpoint: Option<String>,
    pub model_api_key: Option<String>,
    pub model_identifier: Option<String>,
    /// Only when sent (GitLab's gateway applies them to Anthropic calls only).
    pub params: Option<LegacyParams>,
}

impl std::fmt::Debug for LegacyChatRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacyChatRequest")
            .field("messages", &self.messages.len())
            .field("stream", &self.stream)
            .field("provider", &self.provider)
            .field("model", &self.model)
            .field("model_endpoint", &self.model_endpoint)
            .field("model_api_key", &self.model_api_key.as_ref().map(|_| "**********"))
            .field("model_identifier", &self.model_identifier)
            .field("params", &self.params)
            .finish()
    }
}


fn bounded_str(obj: &Map<String, Value>, loc: &str, key: &str, max: usize, required: bool) -> Result<Option<String>, GitlabError> {
    let loc = format!("{loc}.{key}");
    match obj.get(key) {
        None if required => Err(invalid(&loc, "Field required")),
        None | Some(Value::Null) if !required => Ok(None),
        Some(Value::String(s)) => {
            if s.chars().count() > max {
                Err(invalid(&loc, &format!("String should have at most {max} characters")))
            } else {
                Ok(Some(s.clone()))
            }
        }
        _ => Err(invalid(&loc, "Input should be a valid string")),
    }
}

impl LegacyChatRequest {
    pub fn parse(body: &Value) -> Result<LegacyChatRequest, GitlabError> {
        let obj = body.as_object().ok_or_else(|| invalid("body", "Input should be a valid JSON object"))?;
        let components = match obj.get("prompt_components") {
            None => return Err(invalid("prompt_components", "Field required")),
            Some(Value::Array(a)) => a,
            Some(_) => return Err(invalid("prompt_components", "Input should be a valid list")),
        };
        if components.len() != 1 {
            return Err(invalid("prompt_components", "List should have exactly 1 item"));
        }
        let loc = "prompt_components.0";
        let comp = components[0].as_object().ok_or_else(|| invalid(loc, "Input should be a valid dictionary"))?;
        bounded_str(comp, loc, "type", 100, true)?;
        let mloc = format!("{loc}.metadata");
        let meta = match comp.get("metadata") {
            Some(Value::Object(m)) => m,
            None => return Err(invalid(&mloc, "Field required")),
            Some(_) => return Err(invalid(&mloc, "Input should be a valid dictionary")),
        };
        bounded_str(meta, &mloc, "source", 100, true)?;
        bounded_str(meta, &mloc, "version", 100, true)?;
        let ploc = format!("{loc}.payload");
        let payload = match comp.get("payload") {
            Some(Value::Object(p)) => p,
            None => return Err(invalid(&ploc, "Field required")),
            Some(_) => return Err(invalid(&ploc, "Input should be a valid dictionary")),
        };

        let cloc = format!("{ploc}.content");
        let messages = match payload.get("content") {
            None => return Err(invalid(&cloc, "Field required")),
            Some(Value::String(s)) => {
                if s.chars().count() > MAX_CONTENT_CHARS {
                    return Err(invalid(&cloc, &format!("String should have at most {MAX_CONTENT_CHARS} characters")));
                }
                vec![Message::user(s.clone())]
            }
            Some(Value::Array(items)) => {
                if items.is_empty() || items.len() > MAX_MESSAGES {
                    return Err(invalid(&cloc, &format!("List should have between 1 and {MAX_MESSAGES} items")));
                }
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let iloc = format!("{cloc}.{i}");
                    let m = item.as_object().ok_or_else(|| invalid(&iloc, "Input should be a valid dictionary"))?;
                    let role = match m.get("role").and_then(Value::as_str) {
                        Some("system") => Role::System,
                        Some("user") => Role::User,
                        Some("assistant") => Role::Assistant,
                        None if !m.contains_key("role") => return Err(invalid(&format!("{iloc}.role"), "Field required")),
                        _ => return Err(invalid(&format!("{iloc}.role"), "Input should be 'system', 'user' or 'assistant'")),
                    };
                    let content = bounded_str(m, &iloc, "content", MAX_CONTENT_CHARS, true)?.unwrap_or_default();
                    out.push(Message::new(role, content));
                }
                out
            }
            Some(_) => return Err(invalid(&cloc, "Input should be a valid string or list")),
        };

        let provider = bounded_str(payload, &ploc, "provider", 64, false)?;
        if let Some(p) = &provider
            && p != "anthropic"
            && p != "litellm"
        {
            return Err(invalid(&format!("{ploc}.provider"), "Input should be 'anthropic' or 'litellm'"));
        }
        let model = bounded_str(payload, &ploc, "model", 128, false)?;
        if let Some(m) = &model
            && !MODEL_NAMES.contains(&m.as_str())
        {
            return Err(invalid(&format!("{ploc}.model"), &format!("Input should be one of: {}", MODEL_NAMES.join(", "))));
        }
        let params = match payload.get("params") {
            None | Some(Value::Null) => None,
            Some(Value::Object(p)) => Some(parse_params(&format!("{ploc}.params"), p)?),
            Some(_) => return Err(invalid(&format!("{ploc}.params"), "Input should be a valid dictionary")),
        };
        let stream = match obj.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid("stream", "Input should be a valid boolean")),
        };
        Ok(LegacyChatRequest {
            messages,
            stream,
            provider,
            model,
            model_endpoint: bounded_str(payload, &ploc, "model_endpoint", 2048, false)?,
            model_api_key: bounded_str(payload, &ploc, "model_api_key", 4096, false)?,
            model_identifier: bounded_str(payload, &ploc, "model_identifier", 255, false)?,
            params,
        })
    }
}

fn parse_params(loc: &str, p: &Map<String, Value>) -> Result<LegacyParams, GitlabError> {
    let stop_sequences = match p.get("stop_sequences") {
        None | Some(Value::Null) => vec!["\n\nHuman".to_owned(), "Observation:".to_owned()],
        Some(Value::Array(items)) => {
            let sloc = format!("{loc}.stop_sequences");
            if items.is_empty() || items.len() > 10 {
                return Err(invalid(&sloc, "List should have between 1 and 10 items"));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, s) in items.iter().enumerate() {
                match s.as_str() {
                    Some(s) if s.chars().count() <= 225 => out.push(s.to_owned()),
                    Some(_) => return Err(invalid(&format!("{sloc}.{i}"), "String should have at most 225 characters")),
                    None => return Err(invalid(&format!("{sloc}.{i}"), "Input should be a valid string")),
                }
            }
            out
        }
        Some(_) => return Err(invalid(&format!("{loc}.stop_sequences"), "Input should be a valid list")),
    };
    let temperature = match p.get("temperature") {
        None | Some(Value::Null) => 0.2,
        Some(v) => match v.as_f64() {
            Some(t) if (0.0..=1.0).contains(&t) => t,
            Some(_) => return Err(invalid(&format!("{loc}.temperature"), "Input should be between 0 and 1")),
            None => return Err(invalid(&format!("{loc}.temperature"), "Input should be a valid number")),
        },
    };
    let max_tokens = match p.get("max_tokens_to_sample") {
        None | Some(Value::Null) => 8192,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=8192) => n as u32,
            _ => return Err(invalid(&format!("{loc}.max_tokens_to_sample"), "Input should be an integer between 1 and 8192")),
        },
    };
    Ok(LegacyParams { stop_sequences, temperature, max_tokens })
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use serde_json::json;

    fn body(content: Value) -> Value {
        json!({
            "prompt_components": [{
                "type": "prompt",
                "metadata": {"source": "GitLab EE", "version": "18.4.0"},
                "payload": {
                    "content": content,
                    "provider": "litellm",
                    "model": "mistral",
                    "model_endpoint": "http://vllm.internal:8000/v1",
                    "model_api_key": "sk-secret",
                    "model_identifier": "custom_openai/Mixtral-8x7B-Instruct-v0.1",
                    "params": {"stop_sequences": ["\n\nHuman", "Observation:"], "temperature": 0.2, "max_tokens_to_sample": 2048}
                }
            }],
            "stream": true
        })
    }

    fn detail(body: Value) -> String {
        let e = LegacyChatRequest::parse(&body).unwrap_err();
        assert_eq!(e.status, 422);
        crate::chat::validation::summary(&e)
    }

    #[test]
    fn gitlab_troubleshooting_body_parses() {
        let r = LegacyChatRequest::parse(&body(json!([
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "Hello"}
        ])))
        .unwrap();
        assert_eq!(
            r.messages,
            vec![
                Message::system("You are helpful."),
                Message::user("Hello")
            ]
        );
        assert!(r.stream);
        assert_eq!(r.model.as_deref(), Some("mistral"));
        assert_eq!(r.model_identifier.as_deref(), Some("custom_openai/Mixtral-8x7B-Instruct-v0.1"));
        assert_eq!(r.model_api_key.as_deref(), Some("sk-secret"));
        assert_eq!(r.params.as_ref().unwrap().max_tokens, 2048);
        let dbg = format!("{r:?}");
        assert!(!dbg.contains("sk-secret") && !dbg.contains("Hello"), "{dbg}");
    }

    #[test]
    fn string_content_is_one_user_message() {
        let r = LegacyChatRequest::parse(&body(json!("\n\nHuman: hi\n\nAssistant:"))).unwrap();
        assert_eq!(r.messages, vec![Message::user("\n\nHuman: hi\n\nAssistant:")]);
    }

    #[test]
    fn limits_and_shapes_are_422() {
        assert_eq!(detail(json!({})), "prompt_components: Field required");
        let mut two = body(json!("x"));
        let c = two["prompt_components"][0].clone();
        two["prompt_components"] = json!([c.clone(), c]);
        assert_eq!(detail(two), "prompt_components: List should have exactly 1 item");
        assert_eq!(detail(body(json!([]))), "prompt_components.0.payload.content: List should have between 1 and 100 items");
        let many: Vec<Value> = (0..101).map(|_| json!({"role": "user", "content": "x"})).collect();
        assert_eq!(detail(body(json!(many))), "prompt_components.0.payload.content: List should have between 1 and 100 items");
        assert_eq!(
            detail(body(json!("x".repeat(MAX_CONTENT_CHARS + 1)))),
            "prompt_components.0.payload.content: String should have at most 400000 characters"
        );
        assert_eq!(
            detail(body(json!([{"role": "tool", "content": "x"}]))),
            "prompt_components.0.payload.content.0.role: Input should be 'system', 'user' or 'assistant'"
        );
        let mut b = body(json!("x"));
        b["prompt_components"][0]["payload"]["model"] = json!("gpt-5-turbo-ultra");
        assert!(detail(b).starts_with("prompt_components.0.payload.model: Input should be one of: codegemma"));
        let mut b = body(json!("x"));
        b["prompt_components"][0]["payload"]["provider"] = json!("openai");
        assert_eq!(detail(b), "prompt_components.0.payload.provider: Input should be 'anthropic' or 'litellm'");
        let mut b = body(json!("x"));
        b["prompt_components"][0]["payload"]["params"]["temperature"] = json!(1.5);
        assert_eq!(detail(b), "prompt_components.0.payload.params.temperature: Input should be between 0 and 1");
        let mut b = body(json!("x"));
        b["prompt_components"][0]["metadata"]["source"] = json!("s".repeat(101));
        assert_eq!(detail(b), "prompt_components.0.metadata.source: String should have at most 100 characters");
    }
}
