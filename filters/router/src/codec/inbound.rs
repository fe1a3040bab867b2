//! GitLab's request bodies, parsed once into what the codecs need. The API key GitLab sends
//! (`model_metadata.api_key`, `model_api_key`) is kept only to become the upstream auth header.

use duo_core::errors::GitlabError;
use serde::Deserialize;
use serde_json::{Map, Value};

/// `/v2/code/completions`, `/v2/completions`, `/v2/code/generations`.
#[derive(Debug, Default, Deserialize)]
pub struct CodeRequest {
    #[serde(default)]
    pub current_file: CurrentFile,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub model_api_key: Option<String>,
    /// Generations: the user's instruction (v2) or chat messages (v3); completions: a full prompt.
    #[serde(default)]
    pub prompt: Option<Value>,
    #[serde(default)]
    pub prompt_version: Option<Value>,
    #[serde(default)]
    pub context: Vec<ContextItem>,
    #[serde(default)]
    pub model_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct CurrentFile {
    #[serde(default)]
    pub file_name: String,
    #[serde(default)]
    pub language_identifier: Option<String>,
    #[serde(default)]
    pub content_above_cursor: String,
    #[serde(default)]
    pub content_below_cursor: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct ContextItem {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub content: String,
}

/// `/v1/prompts/<id>`, `/v2/prompts/<id>`.
#[derive(Debug, Default, Deserialize)]
pub struct PromptRequest {
    #[serde(default)]
    pub inputs: Map<String, Value>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub model_metadata: Option<ModelMetadata>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ModelMetadata {
    #[serde(default)]
    pub api_key: Option<String>,
}

/// Legacy `/v1/chat/<invokable>` and `/v1/chat/agent`.
#[derive(Debug, Default, Deserialize)]
pub struct ChatV1Request {
    #[serde(default)]
    pub prompt_components: Vec<PromptComponent>,
    #[serde(default)]
    pub stream: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct PromptComponent {
    #[serde(default)]
    pub payload: ChatPayload,
}

#[derive(Debug, Default, Deserialize)]
pub struct ChatPayload {
    /// A string or a list of `{role, content}` messages.
    #[serde(default)]
    pub content: Value,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub model_api_key: Option<String>,
    #[serde(default)]
    pub params: Map<String, Value>,
}

/// 422 in FastAPI's list shape (Rails reads `detail[0].msg`).
pub fn validation_error(loc: &[&str], msg: &str) -> GitlabError {
    let body = serde_json::json!({ "detail": [{ "loc": loc, "msg": msg, "type": "value_error" }] });
    GitlabError { status: 422, body: body.to_string() }
}

/// The typed request from the body the router already parsed (parse once: no second pass over
/// the bytes); same 422 as [`parse`], without a position.
pub fn from_value<'a, T: Deserialize<'a>>(body: &'a serde_json::Value) -> Result<T, GitlabError> {
    T::deserialize(body).map_err(|e| validation_error(&["body"], &format!("Invalid request body: {e}")))
}

pub fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, GitlabError> {
    serde_json::from_slice(body).map_err(|e| {
        // serde's message names the field and position; never the content.
        validation_error(&["body"], &format!("Invalid request body: {e}"))
    })
}

/// Human language name from the IDE's language id or the file extension.
pub fn language_name(language_identifier: Option<&str>, file_name: &str) -> Option<String> {
    const BY_EXT: &[(&str, &str)] = &[
        ("py", "Python"),
        ("rb", "Ruby"),
        ("go", "Go"),
        ("js", "JavaScript"),
        ("jsx", "JavaScript"),
        ("mjs", "JavaScript"),
        ("ts", "TypeScript"),
        ("tsx", "TypeScript"),
        ("java", "Java"),
        ("kt", "Kotlin"),
        ("rs", "Rust"),
        ("c", "C"),
        ("h", "C"),
        ("cc", "C++"),
        ("cpp", "C++"),
        ("hpp", "C++"),
        ("cs", "C#"),
        ("php", "PHP"),
        ("swift", "Swift"),
        ("scala", "Scala"),
        ("sh", "Shell"),
        ("sql", "SQL"),
        ("html", "HTML"),
        ("css", "CSS"),
        ("vue", "Vue"),
        ("yaml", "YAML"),
        ("yml", "YAML"),
        ("tf", "Terraform"),
        ("ex", "Elixir"),
        ("exs", "Elixir"),
        ("lua", "Lua"),
        ("dart", "Dart"),
    ];
    if let Some(id) = language_identifier.map(str::trim).filter(|s| !s.is_empty()) {
        if let Some((_, name)) = BY_EXT.iter().find(|(ext, _)| ext.eq_ignore_ascii_case(id)) {
            return Some((*name).to_owned());
        }
        let named = BY_EXT.iter().find(|(_, n)| n.eq_ignore_ascii_case(id)).map(|(_, n)| (*n).to_owned());
        return Some(named.unwrap_or_else(|| id.to_owned()));
    }
    let ext = file_name.rsplit_once('.')?.1;
    BY_EXT.iter().find(|(e, _)| e.eq_ignore_ascii_case(ext)).map(|(_, n)| (*n).to_owned())
}
