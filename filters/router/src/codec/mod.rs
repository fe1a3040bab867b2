//! Provider codecs (non-streaming answers; request side for streaming too): GitLab's request →
//! the model platform's request, and the platform's answer → the answer GitLab expects.
//!
//! Pure functions, no proxy-wasm, in GitLab's vocabulary over the provider wire of `duo-llm`.
//! `crate::translate::Translation` calls [`build_upstream_request_parsed`] once the request body
//! is complete and [`translate_response`] once a held upstream answer is complete; streams go
//! through `duo_llm::stream` with GitLab's framings (`crate::framing`).

mod errors;
pub(crate) mod generation;
pub(crate) mod inbound;

#[cfg(test)]
mod golden;

use duo_core::catalogue::EndpointKind;
use duo_core::errors::GitlabError;
use duo_core::version::GitlabVersion;
use serde_json::{Map, Value, json};

use crate::model::{Api, Credentials, Family, ModelConfig, Platform};
use crate::prompts::{PromptSet, RenderOptions, Rendered, date_from_unix};
use duo_llm::textchat::{self, TextFormat};
use duo_llm::{LlmError, LlmRequest, Message, Role, bedrock, openai};
use inbound::{CodeRequest, PromptRequest};

pub use duo_llm::{Completion, Usage, Wire, parse_completion};

pub use duo_core::limits::MAX_REQUEST_BYTES;

/// 413 for a body over [`MAX_REQUEST_BYTES`] (the one 413 text of every filter).
fn request_too_large() -> GitlabError {
    GitlabError::request_too_large(MAX_REQUEST_BYTES as u64)
}

/// Everything [`build_upstream_request`] needs besides the body.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    pub kind: EndpointKind,
    /// `Endpoint::prompt_id` (percent-decoded prompt id, or the `/v1/chat/<invokable>` name).
    pub prompt_id: Option<&'a str>,
    /// The `models.<name>` entry the routing decision chose.
    pub model: &'a ModelConfig,
    pub prompts: &'a PromptSet,
    /// Unix seconds, for `current_date` in prompts.
    pub now_unix: u64,
}

/// What goes to the model platform. The adapter keeps only the forwarded request headers
/// (`translate::FORWARDED_REQUEST_HEADERS`), then sets `set_headers`, `:method` and `:path`, and
/// replaces the body.
#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamRequest {
    pub method: &'static str,
    /// Path with query, single-encoded (what SigV4 signs for Bedrock).
    pub path: String,
    pub set_headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// The platform was asked for a stream.
    pub stream: bool,
    /// Keep this for the response side.
    pub answer: AnswerCtx,
}

/// Headers that describe a body's bytes. When the router replaces a body they describe the old
/// one and go with it: a `content-encoding: gzip` kept on a rebuilt plain body makes the
/// receiver fail to decode it, a digest or length would not match. `content-length` is then set
/// again for the new body.
pub(crate) const BODY_HEADERS: &[&str] = &[
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "content-md5",
    "digest",
    "content-digest",
    "repr-digest",
    "content-range",
    "etag",
];

/// Request headers never forwarded to a model platform besides [`BODY_HEADERS`] (the body is
/// rebuilt): GitLab's JWT and any key header (the only credential sent is the one in
/// `set_headers`), `accept-encoding` (the answer must come back uncompressed to be translated),
/// and the payload hash SigV4 computes again. The forwarding rule is an allow-list; the tests
/// hold it against this deny-list.
#[cfg(test)]
pub(crate) const CREDENTIAL_HEADERS: &[&str] = &["authorization", "api-key", "x-api-key", "accept-encoding", "x-amz-content-sha256"];

/// Request headers a model platform must never see (tests: none is forwarded).
#[cfg(test)]
pub(crate) fn removed_request_headers() -> impl Iterator<Item = &'static str> {
    CREDENTIAL_HEADERS.iter().chain(BODY_HEADERS).copied()
}

/// The upstream response headers (of `present`) that describe the body the router replaces and
/// must be removed; `content-length` is not among them (the adapter sets it, or removes it for a
/// stream).
pub(crate) fn stale_body_headers(present: &[(String, String)]) -> impl Iterator<Item = &'static str> + '_ {
    BODY_HEADERS
        .iter()
        .copied()
        .filter(|h| *h != "content-length" && present.iter().any(|(k, _)| k.eq_ignore_ascii_case(h)))
}

/// The answer GitLab expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerShape {
    /// `/v2/code/*`: `{id, model, object, created, choices, metadata}`; stream: raw text.
    CodeSuggestions,
    /// `/v4/code/suggestions`: `{choices, metadata, model}`; stream: SSE `stream_start`,
    /// `content_chunk`..., `stream_end`.
    SuggestionsV4,
    /// `/v1/prompts/*`: a bare JSON string; stream: raw text.
    PromptV1,
    /// `/v2/prompts/*`: `{content, usage}`.
    PromptV2,
    /// Legacy `/v1/chat/*`: `{response, metadata}`; stream: raw text.
    ChatV1,
    /// `/v2/chat/agent`: NDJSON events (`crate::chat`), HTTP 200 even for model failures.
    ChatAgent,
    /// The model ingress: OpenAI's `chat.completion` / chunks / `{"error"}` (`crate::ingress`).
    OpenAiChat,
}

/// What the response side needs to know about the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnswerCtx {
    pub shape: AnswerShape,
    pub wire: Wire,
    pub platform: Platform,
    pub stream: bool,
    /// The platform's model id (`models.<name>.model`), echoed as GitLab's model name.
    pub model: String,
    pub family: Family,
    /// Code suggestions: GitLab's language id for `model.lang` (`inbound::gitlab_lang`).
    pub lang: Option<String>,
    /// Code suggestions: `model.engine` and `model.name` as GitLab's gateway reports them.
    pub reported_model: Option<(String, String)>,
    /// `metadata.enabled_feature_flags` of code-suggestion answers: GitLab's
    /// `x-gitlab-enabled-feature-flags`, distinct names (set by the adapter; `[]` without the
    /// header, GitLab's default).
    pub feature_flags: Vec<String>,
    /// Legacy chat: `payload.model` GitLab sent, echoed in `metadata.model`.
    pub chat_model: Option<String>,
    /// Answer text post-processing.
    pub post: PostProcess,
    /// The calling GitLab (`X-Gitlab-Version`, set by the adapter): answer shapes only newer
    /// GitLab reads (Duo Chat's `finish_reason` and `usage`).
    pub gitlab: GitlabVersion,
    /// Model-ingress calls: the OpenAI answer's identity and options.
    pub ingress: Option<crate::ingress::IngressAnswer>,
    /// Duo Chat: the tools GitLab may run for this caller (set by the translation); an
    /// `action` naming another is GitLab's `tool not available` error.
    pub chat_tools: Option<Vec<&'static str>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PostProcess {
    None,
    /// Chat-mode code completion: drop a Markdown fence wrapped around the code.
    StripFences,
    /// Code generation: GitLab's post-processing ([`generation::post_process`]) with the code
    /// above the cursor; streamed for 19.x, fence lines stripped line by line.
    Generation { above: String },
}

/// The upstream answer, as the adapter has it at the end of the response.
#[derive(Clone, Copy, Debug)]
pub struct UpstreamResponse<'a> {
    pub status: u32,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    /// `Some(true)` when Envoy's `response.code_details` is `via_upstream`, `Some(false)` for
    /// Envoy's own replies (no healthy upstream, connect failure, timeout); `None`: unknown.
    pub via_upstream: Option<bool>,
}

impl UpstreamResponse<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What to send GitLab.
#[derive(Clone, Debug, PartialEq)]
pub struct GitlabAnswer {
    pub status: u32,
    /// Replace these response headers (always `content-type`; `retry-after` on 429).
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// What the platform reported (empty when it did not).
    pub usage: Usage,
    /// For the access log's `error` (never content).
    pub error: Option<String>,
    /// For the access log: the platform's stop reason (OpenAI's words) and the model id it
    /// says answered, from a successful answer.
    pub finish_reason: Option<String>,
    pub response_model: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Request side.

/// The wire a request will use on `model` (FIM code completions switch vLLM to completions).
fn choose_wire(model: &ModelConfig, fim_available: bool) -> Result<Wire, GitlabError> {
    Ok(match model.platform {
        Platform::Vllm | Platform::OpenaiCompatible => {
            if fim_available || model.effective_api() == Api::Completions {
                Wire::OpenaiCompletions
            } else {
                Wire::OpenaiChat
            }
        }
        Platform::AzureOpenai => Wire::OpenaiChat,
        Platform::Bedrock => match model.effective_api() {
            Api::Invoke => bedrock::invoke_wire(&model.model).ok_or_else(|| {
                GitlabError::detail(
                    500,
                    &format!("Bedrock InvokeModel is not supported for model '{}': use api converse", model.model),
                )
            })?,
            _ => Wire::BedrockConverse,
        },
    })
}

fn takes_raw(wire: Wire) -> bool {
    wire.takes_raw_text()
}

/// The chat format a family's raw text prompts are written in.
pub(crate) fn text_format(f: Family) -> TextFormat {
    match f {
        Family::Mistral | Family::Mixtral | Family::Codestral => TextFormat::MistralInst,
        Family::Llama3 => TextFormat::Llama3,
        Family::Codellama => TextFormat::Llama2,
        Family::Codegemma => TextFormat::Gemma,
        Family::Deepseekcoder => TextFormat::DeepseekCoder,
        Family::Claude3 | Family::Gpt | Family::General => TextFormat::ChatMl,
    }
}

/// Families whose chat templates reject a system role: the system text goes into the first
/// user turn instead.
pub(crate) fn family_has_system_role(f: Family) -> bool {
    !matches!(f, Family::Mistral | Family::Mixtral | Family::Codestral | Family::Codegemma)
}

/// A provider-wire failure as GitLab's answer: the gateway could not build the request.
fn wire_error(e: LlmError) -> GitlabError {
    match e {
        LlmError::Invalid(m) => GitlabError::detail(422, &m),
        e => GitlabError::detail(500, &e.to_string()),
    }
}

/// Builds the platform request from GitLab's body bytes. Errors are GitLab-shaped local
/// replies (422 bad body or missing variables, 404 unknown prompt).
pub fn build_upstream_request(call: &Call<'_>, body: &[u8]) -> Result<UpstreamRequest, GitlabError> {
    if body.len() > MAX_REQUEST_BYTES {
        return Err(request_too_large());
    }
    let json: Value = inbound::parse(body)?;
    build_upstream_request_parsed(call, &json, body.len())
}

/// [`build_upstream_request`] from the body the router already parsed to decide (`body_len`: its
/// size in bytes): the body is parsed once per request.
pub fn build_upstream_request_parsed(call: &Call<'_>, body: &Value, body_len: usize) -> Result<UpstreamRequest, GitlabError> {
    if body_len > MAX_REQUEST_BYTES {
        return Err(request_too_large());
    }
    let model = call.model;
    let today = date_from_unix(call.now_unix);
    let mut reported_model = None;
    let (shape, api_key, prepared, wire, lang, chat_model, post) = match call.kind {
        EndpointKind::CodeCompletions { .. } | EndpointKind::CodeGenerations | EndpointKind::CodeSuggestionsUnified { sse: true } => {
            let v4 = matches!(call.kind, EndpointKind::CodeSuggestionsUnified { .. });
            let (mut req, generations, enhancer) = if v4 {
                let s = inbound::from_value::<inbound::SuggestionsRequest>(body)?.into_code_request()?;
                (s.code, s.generation, s.enhancer)
            } else {
                (inbound::from_value::<CodeRequest>(body)?, call.kind == EndpointKind::CodeGenerations, Map::new())
            };
            let editor_lang = req.current_file.language_identifier.clone();
            let gitlab_lang = inbound::gitlab_lang(&req.current_file.file_name, editor_lang.as_deref()).to_owned();
            let lang = inbound::language_name(editor_lang.as_deref(), &req.current_file.file_name);
            let id = if generations { "code_suggestions/generations" } else { "code_suggestions/completions" };
            let fim = !generations && model.platform != Platform::Bedrock && model.platform != Platform::AzureOpenai
                && call.prompts.has_fim(id, model.family);
            let wire = choose_wire(model, fim)?;
            let (rendered, post) = render_code(call, &mut req, generations, lang.as_deref(), takes_raw(wire), &today, &enhancer)?;
            let prepared = prepare(rendered, model, wire, req.stream, &Map::new());
            let shape = if v4 { AnswerShape::SuggestionsV4 } else { AnswerShape::CodeSuggestions };
            reported_model = Some(reported_code_model(call, body, v4, generations));
            (shape, req.model_api_key, prepared, wire, Some(gitlab_lang), None, post)
        }
        EndpointKind::PromptV1 | EndpointKind::PromptV2 => {
            let req: PromptRequest = inbound::from_value(body)?;
            let id = call.prompt_id.unwrap_or_default();
            let wire = choose_wire(model, false)?;
            let opts = RenderOptions { want_fim: false, today: &today };
            let rendered = call.prompts.render(id, model.family, &req.inputs, opts)?;
            let prepared = prepare(rendered, model, wire, req.stream, &Map::new());
            let shape = if call.kind == EndpointKind::PromptV1 { AnswerShape::PromptV1 } else { AnswerShape::PromptV2 };
            let key = req.model_metadata.and_then(|m| m.api_key);
            (shape, key, prepared, wire, None, None, PostProcess::None)
        }
        EndpointKind::ChatInvokable | EndpointKind::ChatAgentV1 => {
            // GitLab's validation of legacy prompt components lives with Duo Chat.
            let req = crate::chat::LegacyChatRequest::parse(body)?;
            let wire = choose_wire(model, false)?;
            let messages = req.messages.clone();
            let rendered = Rendered { messages, fim: None, params: Map::new(), stop: Vec::new() };
            let mut request_params = Map::new();
            if let Some(p) = &req.params {
                request_params.insert("temperature".into(), json!(p.temperature));
                request_params.insert("max_tokens".into(), json!(p.max_tokens));
                if !p.stop_sequences.is_empty() {
                    request_params.insert("stop".into(), json!(p.stop_sequences));
                }
            }
            let prepared = prepare(rendered, model, wire, req.stream, &request_params);
            (AnswerShape::ChatV1, req.model_api_key, prepared, wire, None, req.model, PostProcess::None)
        }
        other => {
            return Err(GitlabError::detail(500, &format!("{other:?} requests are not translated by the provider codecs")));
        }
    };
    let answer = AnswerCtx {
        shape,
        wire,
        platform: model.platform,
        stream: prepared.stream,
        model: model.model.clone(),
        family: model.family,
        lang,
        reported_model,
        feature_flags: Vec::new(),
        chat_model,
        post,
        gitlab: GitlabVersion::ASSUMED,
        ingress: None,
        chat_tools: None,
    };
    finish(model, prepared, api_key, answer)
}

/// `model.engine` / `model.name` of a code-suggestion answer, as GitLab's gateway fills them:
/// `/v2` (18.4's gateway) runs the prompt registry's agent (`"agent"`, the prompt definition's
/// name); a `/v4` completion reports the request's `model_metadata` (provider, name), a `/v4`
/// generation the agent again.
fn reported_code_model(call: &Call<'_>, body: &Value, v4: bool, generations: bool) -> (String, String) {
    let text = |pointer: &str| body.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    if v4 && !generations {
        let engine = text("/model_metadata/provider").unwrap_or_else(|| "litellm".to_owned());
        return (engine, text("/model_metadata/name").unwrap_or_else(|| call.model.family.name().to_owned()));
    }
    let name = if generations { generation_prompt_name(call.model.family) } else { completion_prompt_name(call.model.family) };
    ("agent".to_owned(), name.to_owned())
}

/// The `name` of GitLab's `code_suggestions/completions` prompt definition for a family (18.4;
/// families without a folder use `base`).
pub fn completion_prompt_name(family: Family) -> &'static str {
    match family {
        Family::Claude3 => "Claude 3 Code Completions",
        Family::Codegemma => "Codegemma Code Completions",
        Family::Codellama => "Codellama 13B-Code Code Completions",
        Family::Codestral => "Codestral 22B Code Completions",
        Family::Deepseekcoder => "DeepSeekCoder Code Completions",
        Family::Gpt => "GPT Code Completions",
        Family::Llama3 => "LLaMA3 Code Completions",
        Family::Mistral => "Mistral 7B Instruct Code Completions",
        Family::Mixtral | Family::General => "Claude Code Completions",
    }
}

/// The `name` of GitLab's `code_suggestions/generations` prompt definition for a family
/// (`ai_gateway/prompts/definitions/code_suggestions/generations/<family>/1.0.0.yml`; families
/// without a folder use `base`).
pub fn generation_prompt_name(family: Family) -> &'static str {
    match family {
        Family::Codegemma => "CodeGemma Generations",
        Family::Codellama => "Codellama 13B Code Generations",
        Family::Codestral => "Codestral 22B Code Generations",
        Family::Deepseekcoder => "DeepSeekCoder Code Generations",
        Family::Gpt => "GPT Code Generations",
        Family::Llama3 => "LLaMA3 Code Generations",
        Family::Mistral => "Mistral 7B Code Generations",
        Family::Mixtral => "Mixtral Code Generations",
        Family::Claude3 | Family::General => "Code Generations Agent",
    }
}

/// For prompts rendered elsewhere (`/v2/chat/agent`: `crate::chat::ChatStep::rendered()`):
/// the same params merge, system folding, raw-text formats, paths and credentials as
/// [`build_upstream_request`]. `api_key`: `model_metadata.api_key` from GitLab's body.
pub fn build_rendered_request(
    model: &ModelConfig,
    shape: AnswerShape,
    rendered: Rendered,
    stream: bool,
    api_key: Option<String>,
) -> Result<UpstreamRequest, GitlabError> {
    let wire = choose_wire(model, false)?;
    let prepared = prepare(rendered, model, wire, stream, &Map::new());
    let answer = AnswerCtx {
        shape,
        wire,
        platform: model.platform,
        stream,
        model: model.model.clone(),
        family: model.family,
        lang: None,
        reported_model: None,
        feature_flags: Vec::new(),
        chat_model: None,
        post: PostProcess::None,
        gitlab: GitlabVersion::ASSUMED,
        ingress: None,
        chat_tools: None,
    };
    finish(model, prepared, api_key, answer)
}

fn finish(model: &ModelConfig, prepared: LlmRequest, api_key: Option<String>, answer: AnswerCtx) -> Result<UpstreamRequest, GitlabError> {
    let wire = answer.wire;
    let target = model.target();
    let (path, body) = match wire {
        Wire::OpenaiChat | Wire::OpenaiCompletions => openai::build(&target, wire, &prepared),
        _ => bedrock::build(&target, wire, &prepared),
    }
    .map_err(wire_error)?;
    let mut set_headers: Vec<(&'static str, String)> = vec![("content-type", "application/json".to_owned())];
    let accept = match (prepared.stream, wire) {
        (false, _) => "application/json",
        (true, Wire::OpenaiChat | Wire::OpenaiCompletions) => "text/event-stream",
        (true, _) => "application/vnd.amazon.eventstream",
    };
    set_headers.push(("accept", accept.to_owned()));
    if model.effective_credentials() == Credentials::Gitlab
        && let Some(key) = api_key.filter(|k| !k.trim().is_empty())
    {
        match model.platform {
            Platform::AzureOpenai => set_headers.push(("api-key", key)),
            _ => set_headers.push(("authorization", format!("Bearer {key}"))),
        }
    }
    Ok(UpstreamRequest {
        method: "POST",
        path,
        set_headers,
        body,
        stream: prepared.stream,
        answer,
    })
}

fn render_code(
    call: &Call<'_>,
    req: &mut CodeRequest,
    generations: bool,
    lang: Option<&str>,
    raw_wire: bool,
    today: &str,
    enhancer: &Map<String, Value>,
) -> Result<(Rendered, PostProcess), GitlabError> {
    // The file contents move into the template inputs (they can be 100 000 characters each).
    let above = std::mem::take(&mut req.current_file.content_above_cursor);
    let below = std::mem::take(&mut req.current_file.content_below_cursor);
    let f = &req.current_file;
    // An explicit prompt: generations v3 sends chat messages; a completions prompt is final text.
    match &req.prompt {
        Some(Value::Array(_)) if generations => {
            let messages = chat_messages(req.prompt.as_ref().unwrap_or(&Value::Null))?;
            let post = PostProcess::Generation { above };
            return Ok((Rendered { messages, fim: None, params: default_code_params(call, true), stop: Vec::new() }, post));
        }
        Some(Value::String(p)) if !generations && !p.is_empty() => {
            let r = if raw_wire {
                Rendered { messages: Vec::new(), fim: Some(p.clone()), params: default_code_params(call, false), stop: Vec::new() }
            } else {
                let messages = vec![Message::user(p.clone())];
                Rendered { messages, fim: None, params: default_code_params(call, false), stop: Vec::new() }
            };
            return Ok((r, PostProcess::None));
        }
        _ => {}
    }
    let mut inputs = Map::new();
    let s = |v: &str| Value::String(v.to_owned());
    inputs.insert("file_name".into(), s(&f.file_name));
    if let Some(l) = lang {
        inputs.insert("language".into(), s(l));
    }
    // GitLab post-processes a generation against the code above the cursor.
    let generation_above = generations.then(|| above.clone());
    let (id, opts) = if generations {
        if let Some(Value::String(p)) = &req.prompt {
            inputs.insert("user_instruction".into(), s(p));
        }
        inputs.insert("trimmed_content_above_cursor".into(), Value::String(above));
        inputs.insert("trimmed_content_below_cursor".into(), Value::String(below));
        // `/v4`: Rails' prompt enhancer (its trimmed halves, examples, related files...) wins.
        const ENHANCER_INPUTS: [&str; 7] = [
            "user_instruction",
            "trimmed_content_above_cursor",
            "trimmed_content_below_cursor",
            "examples_array",
            "related_files",
            "related_snippets",
            "libraries",
        ];
        for key in ENHANCER_INPUTS {
            if let Some(v) = enhancer.get(key).filter(|v| !v.is_null()) {
                inputs.insert(key.into(), v.clone());
            }
        }
        ("code_suggestions/generations", RenderOptions { want_fim: false, today })
    } else {
        inputs.insert("prefix".into(), Value::String(above));
        inputs.insert("suffix".into(), Value::String(below));
        let ctx: Vec<Value> = req
            .context
            .iter()
            .filter(|c| !c.content.is_empty())
            .map(|c| json!({"name": c.name, "type": c.kind, "content": c.content}))
            .collect();
        if !ctx.is_empty() {
            inputs.insert("code_context".into(), Value::Array(ctx));
        }
        ("code_suggestions/completions", RenderOptions { want_fim: raw_wire, today })
    };
    let r = call.prompts.render(id, call.model.family, &inputs, opts).map_err(|e| {
        if generations && e.status == 422 && !inputs.contains_key("user_instruction") {
            inbound::validation_error(&["body", "prompt"], "Field required")
        } else {
            e
        }
    })?;
    let post = match generation_above {
        Some(above) => PostProcess::Generation { above },
        None if r.fim.is_some() => PostProcess::None,
        None => PostProcess::StripFences,
    };
    Ok((r, post))
}

fn default_code_params(call: &Call<'_>, generations: bool) -> Map<String, Value> {
    let id = if generations { "code_suggestions/generations" } else { "code_suggestions/completions" };
    call.prompts.default_params(id)
}

/// `content` of a legacy chat component (string or messages) or a v3 generations prompt.
fn chat_messages(content: &Value) -> Result<Vec<Message>, GitlabError> {
    match content {
        Value::String(s) => Ok(vec![Message::user(s.clone())]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|m| {
                let role = match m.get("role").and_then(Value::as_str) {
                    Some("system") => Role::System,
                    Some("user") => Role::User,
                    Some("assistant") => Role::Assistant,
                    other => {
                        return Err(inbound::validation_error(
                            &["body", "content", "role"],
                            &format!("Unsupported message role {other:?}"),
                        ));
                    }
                };
                let content = m.get("content").and_then(Value::as_str).unwrap_or_default().to_owned();
                Ok(Message::new(role, content))
            })
            .collect(),
        _ => Err(inbound::validation_error(&["body", "content"], "Expected a string or a list of messages")),
    }
}

/// Merges params (feature defaults < model `params` < request params), moves `stop` out,
/// folds the system prompt for families that have no system role, renders raw text prompts.
fn prepare(r: Rendered, model: &ModelConfig, wire: Wire, stream: bool, request: &Map<String, Value>) -> LlmRequest {
    let mut params = r.params;
    let mut stop = r.stop;
    for layer in [&model.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Map<_, _>>(), request] {
        for (k, v) in layer {
            if k == "stop" || k == "stop_sequences" {
                stop = match v {
                    Value::String(s) => vec![s.clone()],
                    Value::Array(a) => a.iter().filter_map(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
                    _ => stop,
                };
            } else if !matches!(k.as_str(), "stream" | "model" | "messages" | "prompt" | "stream_options") {
                params.insert(k.clone(), v.clone());
            }
        }
    }
    let mut messages = r.messages;
    let mut raw = r.fim;
    if takes_raw(wire) {
        if raw.is_none() {
            let (format, bos) = match wire {
                Wire::BedrockMistral => (TextFormat::MistralInst, true),
                Wire::BedrockLlama => (TextFormat::Llama3, true),
                _ => (text_format(model.family), false),
            };
            raw = Some(textchat::render(format, &messages, bos));
            for s in format.stops() {
                if !stop.iter().any(|x| x == s) {
                    stop.push((*s).to_owned());
                }
            }
        }
        messages.clear();
    } else if !family_has_system_role(model.family) {
        fold_system(&mut messages);
    }
    LlmRequest { messages, raw, params, stop, stream, tools: Vec::new(), tool_choice: None }
}

/// Moves a leading system message into the first user message.
fn fold_system(messages: &mut Vec<Message>) {
    if messages.first().is_some_and(|m| m.role == Role::System) {
        let sys = messages.remove(0);
        match messages.iter_mut().find(|m| m.role == Role::User) {
            Some(u) => u.content = format!("{}\n\n{}", sys.content, u.content),
            None => messages.insert(0, Message::user(sys.content)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Response side.

/// Whether [`translate_response`] reads `via_upstream` (Envoy's code details) for `status`: only
/// errors do, so the adapter makes that host call only then.
pub fn needs_code_details(status: u32) -> bool {
    !(200..300).contains(&status)
}

/// Turns the upstream answer into GitLab's answer (non-streaming; for streams, only
/// error statuses come here).
pub fn translate_response(ctx: &AnswerCtx, resp: &UpstreamResponse<'_>, now_unix: u64) -> GitlabAnswer {
    if !(200..300).contains(&resp.status) {
        return errors::map_error(ctx, resp);
    }
    match parse_completion(ctx.wire, resp.headers, resp.body) {
        Ok(c) => success(ctx, c, now_unix),
        Err(why) => {
            let mut a = errors::inference_failed();
            a.error = Some(format!("malformed upstream answer: {why}"));
            a
        }
    }
}

/// GitLab's answer for a completed text (also used by the stream side for its final record).
pub fn success(ctx: &AnswerCtx, c: Completion, now_unix: u64) -> GitlabAnswer {
    let text = post_process(&ctx.post, &c.text);
    if ctx.shape == AnswerShape::ChatAgent {
        return GitlabAnswer {
            status: 200,
            headers: vec![("content-type", crate::chat::events::CONTENT_TYPE.to_owned())],
            body: crate::chat::answer_body(&crate::chat::ChatEvents::for_gitlab(ctx.gitlab, &ctx.model).with_tools(ctx.chat_tools.clone()), &c, &text),
            usage: c.usage,
            error: None,
            finish_reason: c.finish_reason,
            response_model: c.model,
        };
    }
    let body = match ctx.shape {
        AnswerShape::CodeSuggestions => {
            // GitLab's `SuggestionsResponse`: empty texts are dropped; `finish_reason` is
            // always "length" (the field's default; the model's reason is not copied).
            let choices: Vec<Value> = if text.is_empty() {
                Vec::new()
            } else {
                vec![json!({"text": text, "index": 0, "finish_reason": "length"})]
            };
            let (engine, name) = reported(ctx);
            json!({
                "id": "id",
                "model": {"engine": engine, "name": name, "lang": ctx.lang.as_deref().unwrap_or(""),
                          "tokens_consumption_metadata": null, "region": null},
                "experiments": [],
                "object": "text_completion",
                "created": now_unix,
                "choices": choices,
                "metadata": {"enabled_feature_flags": ctx.feature_flags.clone()},
            })
        }
        AnswerShape::SuggestionsV4 => {
            // GitLab's `CompletionResponse` (`code_suggestions/handler.py`).
            let choices: Vec<Value> = if text.is_empty() {
                Vec::new()
            } else {
                vec![json!({"text": text, "index": 0, "finish_reason": "length"})]
            };
            let (engine, name) = reported(ctx);
            let model = json!({"engine": engine, "name": name, "lang": ctx.lang.as_deref().unwrap_or("")});
            json!({
                "choices": choices,
                "metadata": {"model": model, "timestamp": now_unix, "enabled_feature_flags": ctx.feature_flags.clone(), "region": null},
                "model": model,
            })
        }
        AnswerShape::PromptV1 => Value::String(text),
        AnswerShape::PromptV2 => {
            let mut o = Map::new();
            o.insert("content".into(), Value::String(text));
            if let Some(input) = c.usage.input_tokens {
                let output = c.usage.output_tokens.unwrap_or(0);
                o.insert("usage".into(), json!({ ctx.model.as_str(): {"input_tokens": input, "output_tokens": output} }));
            }
            Value::Object(o)
        }
        // Never here: chat agent answers return above, ingress answers go through `crate::ingress`.
        AnswerShape::ChatAgent | AnswerShape::OpenAiChat => Value::Null,
        AnswerShape::ChatV1 => json!({
            "response": text,
            "metadata": {"provider": "litellm", "model": ctx.chat_model.as_deref().unwrap_or(ctx.family.name()), "timestamp": now_unix},
        }),
    };
    GitlabAnswer {
        status: 200,
        headers: vec![("content-type", "application/json".to_owned())],
        body: body.to_string().into_bytes(),
        usage: c.usage,
        error: None,
        finish_reason: c.finish_reason,
        response_model: c.model,
    }
}

/// `x-gitlab-enabled-feature-flags` as GitLab's gateway echoes it: the distinct names.
pub fn feature_flags(header: &str) -> Vec<String> {
    let mut flags: Vec<String> = Vec::new();
    for f in header.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        if !flags.iter().any(|g| g == f) {
            flags.push(f.to_owned());
        }
    }
    flags
}

/// `model.engine` and `model.name` of a code-suggestion answer.
pub fn reported(ctx: &AnswerCtx) -> (&str, &str) {
    match &ctx.reported_model {
        Some((engine, name)) => (engine, name),
        None => ("litellm", &ctx.model),
    }
}

/// The answer text as GitLab's gateway post-processes it (chat-mode completions: a wrapping
/// fence dropped; generations: GitLab's generation post-processing).
pub fn post_process(p: &PostProcess, text: &str) -> String {
    match p {
        PostProcess::None => text.to_owned(),
        PostProcess::StripFences => strip_fences(text).to_owned(),
        PostProcess::Generation { above } => generation::post_process(above, text),
    }
}

fn strip_fences(text: &str) -> &str {
    let t = text.trim();
    let Some(rest) = t.strip_prefix("```") else { return text };
    let Some(nl) = rest.find('\n') else { return text };
    let inner = &rest[nl + 1..];
    match inner.trim_end().strip_suffix("```") {
        Some(code) => code.strip_suffix('\n').unwrap_or(code),
        None => inner,
    }
}

#[cfg(test)]
mod tests;
