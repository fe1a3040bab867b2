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
    pub context: Vec<ContextItem>,
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

/// `/v4/code/suggestions` (GitLab 19.x sends every code generation here): prompt components and,
/// for self-hosted models, `model_metadata` beside them (`Prompts::CodeGeneration::
/// AiGatewayMessages#request_params`). The IDE's own fields Rails merges in are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct SuggestionsRequest {
    #[serde(default)]
    pub prompt_components: Vec<SuggestionComponent>,
    #[serde(default)]
    pub model_metadata: Option<ModelMetadata>,
}

#[derive(Debug, Default, Deserialize)]
pub struct SuggestionComponent {
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub payload: Map<String, Value>,
}

/// A `/v4` request as the `/v2` codec reads it: the editor component's payload becomes the
/// `current_file`, `code_context` components the `context`, and a generation's
/// `prompt_enhancer` the template inputs (Rails fills them: instruction, trimmed file halves,
/// examples, related files and snippets, libraries).
pub struct Suggestions {
    pub code: CodeRequest,
    pub generation: bool,
    pub enhancer: Map<String, Value>,
}

impl SuggestionsRequest {
    pub fn into_code_request(self) -> Result<Suggestions, GitlabError> {
        let mut components = self.prompt_components.into_iter();
        let Some(first) = components.next() else {
            return Err(validation_error(&["body", "prompt_components"], "List should have at least 1 item after validation, not 0"));
        };
        let generation = match first.kind.as_str() {
            "code_editor_generation" => true,
            "code_editor_completion" => false,
            _ => return Err(validation_error(&["body", "prompt_components", "0", "type"], "Input tag does not match the expected tags")),
        };
        let mut p = first.payload;
        let text = |p: &mut Map<String, Value>, k: &str| match p.remove(k) {
            Some(Value::String(s)) => s,
            _ => String::new(),
        };
        let current_file = CurrentFile {
            file_name: text(&mut p, "file_name"),
            language_identifier: Some(text(&mut p, "language_identifier")).filter(|l| !l.is_empty()),
            content_above_cursor: text(&mut p, "content_above_cursor"),
            content_below_cursor: text(&mut p, "content_below_cursor"),
        };
        let enhancer = match p.remove("prompt_enhancer") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let prompt = if generation {
            // The prompt registry renders from the enhancer; its instruction is the task.
            enhancer.get("user_instruction").cloned().or_else(|| p.remove("prompt"))
        } else {
            p.remove("prompt")
        };
        let context = components
            .filter(|c| c.kind == "code_context")
            .map(|c| ContextItem {
                kind: c.payload.get("type").and_then(Value::as_str).map(str::to_owned),
                name: c.payload.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                content: c.payload.get("content").and_then(Value::as_str).unwrap_or_default().to_owned(),
            })
            .collect();
        let code = CodeRequest {
            current_file,
            stream: p.get("stream").and_then(Value::as_bool).unwrap_or(false),
            model_api_key: self.model_metadata.and_then(|m| m.api_key),
            prompt,
            context,
        };
        Ok(Suggestions { code, generation, enhancer })
    }
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

/// The language GitLab's gateway reports (`model.lang`, the log's `lang`): its `LanguageId` name
/// in lower case, from the file extension first, then the IDE's language id; `""` when neither
/// names a language it knows (`code_suggestions/processing/typing.py`, `base.py`
/// `resolve_lang_id`).
pub fn gitlab_lang(file_name: &str, editor_lang: Option<&str>) -> &'static str {
    const BY_EXT: &[(&str, &str)] = &[
        ("c", "c"), ("h", "c"), ("cc", "cpp"), ("cpp", "cpp"), ("cxx", "cpp"), ("hpp", "cpp"), ("cs", "csharp"),
        ("go", "go"), ("java", "java"), ("js", "js"), ("jsx", "js"), ("mjs", "js"), ("cjs", "js"), ("php", "php"),
        ("py", "python"), ("rb", "ruby"), ("rs", "rust"), ("scala", "scala"), ("ts", "ts"), ("tsx", "ts"),
        ("kt", "kotlin"), ("kts", "kotlin"), ("sh", "bash"), ("bash", "bash"), ("swift", "swift"), ("sql", "sql"),
        ("lua", "lua"), ("dart", "dart"), ("ex", "elixir"), ("exs", "elixir"), ("hs", "haskell"), ("html", "html"),
        ("css", "css"), ("vue", "vue"), ("tf", "terraform"), ("yaml", "yaml"), ("yml", "yaml"), ("json", "json"),
    ];
    // The IDE's language ids (VS Code's) for the same languages.
    const BY_EDITOR: &[(&str, &str)] = &[
        ("c", "c"), ("cpp", "cpp"), ("csharp", "csharp"), ("go", "go"), ("java", "java"), ("javascript", "js"),
        ("javascriptreact", "js"), ("php", "php"), ("python", "python"), ("ruby", "ruby"), ("rust", "rust"),
        ("scala", "scala"), ("typescript", "ts"), ("typescriptreact", "ts"), ("kotlin", "kotlin"),
        ("shellscript", "bash"), ("swift", "swift"), ("sql", "sql"), ("lua", "lua"), ("dart", "dart"),
        ("elixir", "elixir"), ("haskell", "haskell"), ("html", "html"), ("css", "css"), ("vue", "vue"),
        ("terraform", "terraform"), ("yaml", "yaml"), ("json", "json"),
    ];
    let by_ext = file_name.rsplit_once('.').and_then(|(_, ext)| BY_EXT.iter().find(|(e, _)| e.eq_ignore_ascii_case(ext)));
    let by_editor = || editor_lang.and_then(|l| BY_EDITOR.iter().find(|(e, _)| e.eq_ignore_ascii_case(l.trim())));
    by_ext.or_else(by_editor).map_or("", |(_, id)| id)
}
