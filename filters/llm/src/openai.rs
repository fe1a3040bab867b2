//! OpenAI-compatible wire (vLLM, other OpenAI-compatible servers, Azure OpenAI): chat
//! completions and legacy completions (raw prompts, needed for fill-in-the-middle since vLLM
//! rejects `suffix`).

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::{Completion, LlmError, LlmRequest, Message, ModelTarget, Platform, Role, ToolCall, ToolChoice, ToolSpec, Usage, Wire};

/// Default dated api-version for Azure deployments when the model entry names none.
pub const AZURE_DEFAULT_API_VERSION: &str = "2024-10-21";

/// Percent-encodes a path segment (everything but RFC 3986 unreserved characters).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn azure_uses_v1(model: &ModelTarget<'_>) -> bool {
    model.api_version.is_some_and(|v| v == "v1" || v == "preview")
}

/// Azure accepts `stream_options` from api-version 2024-09-01-preview on (and on the v1 API).
fn azure_has_stream_options(model: &ModelTarget<'_>) -> bool {
    match model.api_version {
        None => true,
        Some(v) if azure_uses_v1(model) => !v.is_empty(),
        Some(v) => v >= "2024-09-01",
    }
}

/// The path (with query) of `wire` on the model's platform: Azure's deployment path and
/// `api-version` (or the v1 API), else `<base_path>/chat/completions` or `/completions`.
pub fn path(model: &ModelTarget<'_>, wire: Wire) -> String {
    match model.platform {
        Platform::AzureOpenai => {
            let prefix = model.base_path.unwrap_or("").trim_end_matches('/');
            if azure_uses_v1(model) {
                let query = if model.api_version == Some("preview") { "?api-version=preview" } else { "" };
                format!("{prefix}/openai/v1/chat/completions{query}")
            } else {
                let version = model.api_version.unwrap_or(AZURE_DEFAULT_API_VERSION);
                format!(
                    "{prefix}/openai/deployments/{}/chat/completions?api-version={}",
                    encode_segment(model.model),
                    encode_segment(version)
                )
            }
        }
        _ => {
            let base = model.base_path.unwrap_or("/v1").trim_end_matches('/');
            format!("{base}/{}", if wire == Wire::OpenaiChat { "chat/completions" } else { "completions" })
        }
    }
}

/// (path with query, body) for `wire`.
pub fn build(model: &ModelTarget<'_>, wire: Wire, p: &LlmRequest) -> Result<(String, Vec<u8>), LlmError> {
    let chat = wire == Wire::OpenaiChat;
    if !chat && !p.tools.is_empty() {
        return Err(LlmError::Unsupported("tools need the chat completions API".into()));
    }
    let path = path(model, wire);
    // The body serialized from borrowed parts (a `Value` tree copied the prompt and allocated
    // every key and message). A sorted map of fields keeps the bytes a `Map` wrote: keys in
    // order, and a later insert of a key wins as it did there (the platform's fields over
    // `params`, `params` over the messages).
    let mut body: BTreeMap<&str, Field<'_>> = BTreeMap::new();
    // Classic Azure deployments take the model from the path.
    if model.platform != Platform::AzureOpenai || azure_uses_v1(model) {
        body.insert("model", Field::Text(model.model));
    }
    if chat {
        let mut messages = &p.messages[..];
        if let Some((last, before)) = p.messages.split_last()
            && last.role == Role::Assistant
            && last.tool_calls.is_empty()
            && !before.is_empty()
        {
            if model.platform == Platform::AzureOpenai {
                // Azure/OpenAI cannot continue a message: drop the prefill there.
                messages = before;
            } else {
                // vLLM: continue the assistant message instead of opening a new turn.
                body.insert("continue_final_message", Field::Flag(true));
                body.insert("add_generation_prompt", Field::Flag(false));
            }
        }
        body.insert("messages", Field::Messages(messages));
    } else {
        body.insert("prompt", Field::Text(p.raw.as_deref().unwrap_or_default()));
    }
    for (k, v) in &p.params {
        body.insert(k, Field::Json(v));
    }
    if !p.stop.is_empty() {
        body.insert("stop", Field::Stop(&p.stop));
    }
    if !p.tools.is_empty() {
        body.insert("tools", Field::Tools(&p.tools));
    }
    if let Some(choice) = &p.tool_choice {
        body.insert("tool_choice", Field::ToolChoice(choice));
    }
    body.insert("stream", Field::Flag(p.stream));
    if p.stream && (model.platform != Platform::AzureOpenai || azure_has_stream_options(model)) {
        body.insert("stream_options", Field::IncludeUsage);
    }
    let mut bytes = Vec::with_capacity(p.body_size_hint());
    serde_json::to_writer(&mut bytes, &body).map_err(|e| LlmError::Encode(e.to_string()))?;
    Ok((path, bytes))
}

/// One field of a chat/completions request body, borrowed from the [`LlmRequest`].
enum Field<'a> {
    Text(&'a str),
    Flag(bool),
    Json(&'a Value),
    Messages(&'a [Message]),
    Stop(&'a [String]),
    Tools(&'a [ToolSpec]),
    ToolChoice(&'a ToolChoice),
    /// `{"include_usage": true}`: the last stream chunk carries the usage.
    IncludeUsage,
}

impl Serialize for Field<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Field::Text(t) => s.serialize_str(t),
            Field::Flag(b) => s.serialize_bool(*b),
            Field::Json(v) => v.serialize(s),
            Field::Messages(messages) => s.collect_seq(messages.iter().map(OpenAiMessage)),
            Field::Stop(stop) => stop.serialize(s),
            Field::Tools(tools) => s.collect_seq(tools.iter().map(|t| Function { name: &t.name, description: t.description.as_deref(), parameters: Some(&t.parameters), arguments: None })),
            Field::ToolChoice(ToolChoice::Auto) => s.serialize_str("auto"),
            Field::ToolChoice(ToolChoice::Required) => s.serialize_str("required"),
            Field::ToolChoice(ToolChoice::None) => s.serialize_str("none"),
            Field::ToolChoice(ToolChoice::Named(name)) => {
                Function { name, description: None, parameters: None, arguments: None }.serialize(s)
            }
            Field::IncludeUsage => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("include_usage", &true)?;
                m.end()
            }
        }
    }
}

/// One chat message in OpenAI's shape (assistant `tool_calls`, tool `tool_call_id`), keys in
/// sorted order.
struct OpenAiMessage<'a>(&'a Message);

impl Serialize for OpenAiMessage<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = self.0;
        let calls = m.role == Role::Assistant && !m.tool_calls.is_empty();
        let mut o = s.serialize_map(None)?;
        if calls && m.content.is_empty() {
            // OpenAI allows a null content beside tool calls; an empty text is not sent.
            o.serialize_entry("content", &())?;
        } else {
            o.serialize_entry("content", &m.content)?;
        }
        o.serialize_entry("role", m.role.name())?;
        if let Some(id) = &m.tool_call_id {
            o.serialize_entry("tool_call_id", id)?;
        }
        if calls {
            o.serialize_entry("tool_calls", &FunctionCalls(&m.tool_calls))?;
        }
        o.end()
    }
}

/// The calls the model made: `[{"function": {"arguments", "name"}, "id", "type": "function"}]`.
struct FunctionCalls<'a>(&'a [ToolCall]);

impl Serialize for FunctionCalls<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(FunctionCall))
    }
}

struct FunctionCall<'a>(&'a ToolCall);

impl Serialize for FunctionCall<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.0;
        let mut o = s.serialize_map(Some(3))?;
        o.serialize_entry("function", &Function { name: &c.name, description: None, parameters: None, arguments: Some(&c.arguments) })?;
        o.serialize_entry("id", &c.id)?;
        o.serialize_entry("type", "function")?;
        o.end()
    }
}

/// `{"function": {...}, "type": "function"}` around a function's fields (a tool offered, a
/// named tool choice), or the bare function object inside a call (`arguments` set).
struct Function<'a> {
    name: &'a str,
    description: Option<&'a str>,
    parameters: Option<&'a Value>,
    arguments: Option<&'a str>,
}

impl Serialize for Function<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let Some(arguments) = self.arguments {
            let mut f = s.serialize_map(Some(2))?;
            f.serialize_entry("arguments", arguments)?;
            f.serialize_entry("name", self.name)?;
            return f.end();
        }
        let mut o = s.serialize_map(Some(2))?;
        o.serialize_entry("function", &FunctionFields(self))?;
        o.serialize_entry("type", "function")?;
        o.end()
    }
}

struct FunctionFields<'a, 'b>(&'b Function<'a>);

impl Serialize for FunctionFields<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let f = self.0;
        let mut o = s.serialize_map(None)?;
        if let Some(d) = f.description {
            o.serialize_entry("description", d)?;
        }
        o.serialize_entry("name", f.name)?;
        if let Some(p) = f.parameters {
            o.serialize_entry("parameters", p)?;
        }
        o.end()
    }
}

/// `usage` of an answer or chunk; input present means usage was reported.
pub fn usage_of(v: &Value) -> Usage {
    let Some(u) = v.get("usage") else { return Usage::default() };
    let Some(input) = u.get("prompt_tokens").and_then(Value::as_u64) else { return Usage::default() };
    let output = u.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0);
    Usage::known(Some(input), Some(output), u.get("total_tokens").and_then(Value::as_u64))
}

fn tool_calls_of(message: Option<&Value>) -> Vec<ToolCall> {
    tool_calls_in(message.and_then(|m| m.get("tool_calls")))
}

/// A message's `tool_calls`: those with a function and a name, arguments as JSON text.
fn tool_calls_in(calls: Option<&Value>) -> Vec<ToolCall> {
    let Some(calls) = calls.and_then(Value::as_array) else { return Vec::new() };
    calls
        .iter()
        .filter_map(|c| {
            let f = c.get("function")?;
            let arguments = match f.get("arguments") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => "{}".to_owned(),
            };
            Some(ToolCall {
                id: c.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
                name: f.get("name").and_then(Value::as_str)?.to_owned(),
                arguments,
            })
        })
        .collect()
}

/// What [`parse`] reads of a non-streaming answer, borrowed from the body: every other field is
/// skipped unbuilt (a `Value` tree allocated each field of the answer: id, logprobs, usage
/// details...). Any field of an unexpected type fails this shape and the answer is read again as
/// a tree ([`parse_tree`]), whose rules decide; a test holds the two to the same result.
#[derive(Deserialize)]
struct AnswerWire<'a> {
    #[serde(borrow)]
    choices: Vec<Object<ChoiceWire<'a>>>,
    #[serde(default)]
    usage: Option<Object<UsageWire>>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ChoiceWire<'a> {
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    message: Option<Object<MessageWire<'a>>>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct MessageWire<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    /// Rare, and read by the tree rules (`arguments` may be any JSON).
    #[serde(default)]
    tool_calls: Option<Value>,
}

/// OpenAI's `usage`, in a whole answer and in a stream's last chunk.
#[derive(Deserialize)]
pub(crate) struct UsageWire {
    #[serde(default)]
    pub(crate) prompt_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) completion_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) total_tokens: Option<u64>,
}

/// A struct read only from a JSON object: serde's derive also reads a struct from an array (its
/// fields in order), which the tree rules never do (found by the router_answer fuzz target).
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OnlyMaps<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for OnlyMaps<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(OnlyMaps(std::marker::PhantomData)).map(Object)
    }
}

/// Reads a non-streaming answer: first choice's text, finish reason and usage.
pub fn parse(wire: Wire, body: &[u8]) -> Result<Completion, String> {
    // serde_json skips an ignored string without checking its bytes or its `\u` escapes (a byte
    // outside UTF-8 or a lone surrogate passes there and fails the tree, as the router_answer
    // fuzz target found): such answers take the tree's rules.
    let Ok(text) = std::str::from_utf8(body) else { return parse_tree(wire, body) };
    if has_unicode_escape(body) {
        return parse_tree(wire, body);
    }
    let Ok(Object(answer)) = serde_json::from_str::<Object<AnswerWire<'_>>>(text) else { return parse_tree(wire, body) };
    let Object(choice) = answer.choices.into_iter().next().ok_or_else(|| "no choices".to_owned())?;
    let (content, calls) = choice.message.map_or((None, None), |Object(m)| (m.content, m.tool_calls));
    let text = if wire == Wire::OpenaiCompletions { choice.text } else { content };
    let tool_calls = tool_calls_in(calls.as_ref());
    let finish = choice.finish_reason.map(Cow::into_owned);
    if text.is_none() && tool_calls.is_empty() && finish.as_deref() != Some("content_filter") {
        return Err("choice without text".into());
    }
    let usage = match answer.usage {
        Some(Object(UsageWire { prompt_tokens: Some(input), completion_tokens, total_tokens })) => {
            Usage::known(Some(input), Some(completion_tokens.unwrap_or(0)), total_tokens)
        }
        _ => Usage::default(),
    };
    let model = answer.model.as_deref().and_then(crate::completion::clipped_model);
    Ok(Completion { text: text.map(Cow::into_owned).unwrap_or_default(), tool_calls, finish_reason: finish, usage, model })
}

/// Whether `body` holds a `\u` escape anywhere (found by the router_answer fuzz target: an
/// invalid one in a field the borrowed reading skips was accepted there, refused by the tree).
fn has_unicode_escape(body: &[u8]) -> bool {
    body.split(|&b| b == b'\\').skip(1).any(|after| after.first() == Some(&b'u'))
}

/// [`parse_tree`] for the fuzz target that holds [`parse`] to it.
#[cfg(feature = "testing")]
pub fn parse_as_tree(wire: Wire, body: &[u8]) -> Result<Completion, String> {
    parse_tree(wire, body)
}

/// [`parse`] over a `Value` tree: the rules for answers whose fields have unexpected types.
fn parse_tree(wire: Wire, body: &[u8]) -> Result<Completion, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let choice = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| "no choices".to_owned())?;
    let message = choice.get("message");
    let text = match wire {
        Wire::OpenaiCompletions => choice.get("text").and_then(Value::as_str),
        _ => message.and_then(|m| m.get("content")).and_then(Value::as_str),
    };
    let tool_calls = tool_calls_of(message);
    let finish = choice.get("finish_reason").and_then(Value::as_str).map(str::to_owned);
    // A filtered answer has no content, a tool call may have none; anything else without
    // text is malformed.
    if text.is_none() && tool_calls.is_empty() && finish.as_deref() != Some("content_filter") {
        return Err("choice without text".into());
    }
    let model = crate::completion::reported_model(&v);
    Ok(Completion { text: text.unwrap_or_default().to_owned(), tool_calls, finish_reason: finish, usage: usage_of(&v), model })
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    use serde_json::{Map, json};

    /// The builder as it was written over a `Value` tree: the reference the borrowed one must
        /// match byte for byte.
        fn build_as_tree(model: &ModelTarget<'_>, wire: Wire, p: &LlmRequest) -> Result<(String, Vec<u8>), LlmError> {
        let chat = wire == Wire::OpenaiChat;
        if !chat && !p.tools.is_empty() {
            return Err(LlmError::Unsupported("tools need the chat completions API".into()));
        }
        let path = path(model, wire);
        let mut body = Map::new();
        // Classic Azure deployments take the model from the path.
        if model.platform != Platform::AzureOpenai || azure_uses_v1(model) {
            body.insert("model".into(), Value::String(model.model.to_owned()));
        }
        if chat {
            let mut prefill = false;
            let mut msgs = Vec::with_capacity(p.messages.len());
            for (i, m) in p.messages.iter().enumerate() {
                let last = i + 1 == p.messages.len();
                if last && m.role == Role::Assistant && m.tool_calls.is_empty() && i > 0 {
                    // Azure/OpenAI cannot continue a message: drop the prefill there.
                    if model.platform == Platform::AzureOpenai {
                        continue;
                    }
                    prefill = true;
                }
                msgs.push(message_json(m));
            }
            body.insert("messages".into(), Value::Array(msgs));
            if prefill {
                // vLLM: continue the assistant message instead of opening a new turn.
                body.insert("continue_final_message".into(), Value::Bool(true));
                body.insert("add_generation_prompt".into(), Value::Bool(false));
            }
        } else {
            body.insert("prompt".into(), Value::String(p.raw.clone().unwrap_or_default()));
        }
        for (k, v) in &p.params {
            body.insert(k.clone(), v.clone());
        }
        if !p.stop.is_empty() {
            body.insert("stop".into(), json!(p.stop));
        }
        if !p.tools.is_empty() {
            let tools: Vec<Value> = p
                .tools
                .iter()
                .map(|t| {
                    let mut f = Map::new();
                    f.insert("name".into(), Value::String(t.name.clone()));
                    if let Some(d) = &t.description {
                        f.insert("description".into(), Value::String(d.clone()));
                    }
                    f.insert("parameters".into(), t.parameters.clone());
                    json!({"type": "function", "function": f})
                })
                .collect();
            body.insert("tools".into(), Value::Array(tools));
        }
        if let Some(choice) = &p.tool_choice {
            let v = match choice {
                ToolChoice::Auto => json!("auto"),
                ToolChoice::Required => json!("required"),
                ToolChoice::None => json!("none"),
                ToolChoice::Named(name) => json!({"type": "function", "function": {"name": name}}),
            };
            body.insert("tool_choice".into(), v);
        }
        body.insert("stream".into(), Value::Bool(p.stream));
        if p.stream && (model.platform != Platform::AzureOpenai || azure_has_stream_options(model)) {
            body.insert("stream_options".into(), json!({"include_usage": true}));
        }
        let bytes = serde_json::to_vec(&Value::Object(body)).map_err(|e| LlmError::Encode(e.to_string()))?;
        Ok((path, bytes))
    }

    fn message_json(m: &Message) -> Value {
        let mut o = Map::new();
        o.insert("role".into(), Value::String(m.role.name().to_owned()));
        if m.role == Role::Assistant && !m.tool_calls.is_empty() {
            // OpenAI allows a null content beside tool calls; an empty text is not sent.
            o.insert("content".into(), if m.content.is_empty() { Value::Null } else { Value::String(m.content.clone()) });
            let calls: Vec<Value> = m
                .tool_calls
                .iter()
                .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                .collect();
            o.insert("tool_calls".into(), Value::Array(calls));
        } else {
            o.insert("content".into(), Value::String(m.content.clone()));
        }
        if let Some(id) = &m.tool_call_id {
            o.insert("tool_call_id".into(), Value::String(id.clone()));
        }
        Value::Object(o)
    }

    fn requests() -> Vec<LlmRequest> {
        let call = ToolCall { id: "call_1".into(), name: "get_weather".into(), arguments: r#"{"city":"Oslo"}"#.into() };
        let mut assistant = Message::new(Role::Assistant, "");
        assistant.tool_calls = vec![call.clone()];
        let mut spoke_and_called = Message::new(Role::Assistant, "let me look");
        spoke_and_called.tool_calls = vec![call];
        let mut tool = Message::new(Role::Tool, "{\"t\": 3}");
        tool.tool_call_id = Some("call_1".into());
        let tools = vec![
            ToolSpec { name: "get_weather".into(), description: Some("Weather \"now\"".into()), parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}) },
            ToolSpec { name: "noop".into(), description: None, parameters: json!({}) },
        ];
        let mut params = Map::new();
        params.insert("max_tokens".into(), json!(64));
        params.insert("temperature".into(), json!(0.2));
        let mut clashing = params.clone();
        clashing.insert("stream".into(), json!("param"));
        clashing.insert("model".into(), json!("param-model"));
        clashing.insert("messages".into(), json!("param-messages"));
        clashing.insert("stop".into(), json!(["p"]));
        let base = LlmRequest {
            messages: vec![Message::system("be brief"), Message::user("caf\u{e9} \u{1F600} <tag> \n\t\"q\"")],
            raw: None,
            params,
            stop: Vec::new(),
            stream: false,
            tools: Vec::new(),
            tool_choice: None,
        };
        let mut out = vec![base.clone()];
        let mut r = base.clone();
        r.messages.push(Message::new(Role::Assistant, "def f("));
        r.stream = true;
        r.stop = vec!["[INST]".into(), "</s>".into()];
        out.push(r);
        let mut r = base.clone();
        r.messages.extend([assistant, tool, spoke_and_called]);
        r.tools = tools;
        for choice in [None, Some(ToolChoice::Auto), Some(ToolChoice::Required), Some(ToolChoice::None), Some(ToolChoice::Named("noop".into()))] {
            r.tool_choice = choice;
            out.push(r.clone());
        }
        let mut r = base.clone();
        r.messages = vec![Message::new(Role::Assistant, "only a prefill")];
        r.params = clashing;
        r.stop = vec!["s".into()];
        out.push(r);
        let mut r = base;
        r.messages.clear();
        r.raw = Some("[SUFFIX]x[PREFIX]def f(".into());
        r.stream = true;
        out.push(r);
        out
    }

    #[test]
    fn the_borrowed_request_body_is_the_tree_built_one_byte_for_byte() {
        let targets = [
            ModelTarget { platform: Platform::Vllm, model: "Qwen/Qwen2.5", base_path: None, api_version: None },
            ModelTarget { platform: Platform::AzureOpenai, model: "gpt-4o", base_path: None, api_version: None },
            ModelTarget { platform: Platform::AzureOpenai, model: "gpt-4o", base_path: None, api_version: Some("v1") },
            ModelTarget { platform: Platform::AzureOpenai, model: "gpt-4o", base_path: None, api_version: Some("2024-02-01") },
        ];
        let mut compared = 0;
        for target in &targets {
            for wire in [Wire::OpenaiChat, Wire::OpenaiCompletions] {
                for (i, r) in requests().iter().enumerate() {
                    match (build(target, wire, r), build_as_tree(target, wire, r)) {
                        (Ok(new), Ok(old)) => {
                            assert_eq!(String::from_utf8(new.1).unwrap(), String::from_utf8(old.1).unwrap(), "{:?} {wire:?} #{i}", target.platform);
                            assert_eq!(new.0, old.0);
                            compared += 1;
                        }
                        (new, old) => assert_eq!(new.is_err(), old.is_err(), "{:?} {wire:?} #{i}", target.platform),
                    }
                }
            }
        }
        assert!(compared >= 40, "{compared}");
    }

    /// The borrowed reading and the tree reading agree on every answer, the odd ones included
    /// (those fall back to the tree).
    #[test]
    fn the_borrowed_reading_agrees_with_the_tree_rules() {
        let long_model = format!(r#"{{"model":"{}","choices":[{{"text":"a"}}]}}"#, "m".repeat(400));
        let answers: Vec<String> = [
            r#"{"id":"x","object":"chat.completion","created":1,"model":"Qwen/Qwen2.5","choices":[{"index":0,"message":{"role":"assistant","content":"hi \"there\"\n","tool_calls":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":null}}"#,
            r#"{"choices":[{"text":"def f():","finish_reason":"length"}],"usage":{"prompt_tokens":3}}"#,
            r#"{"choices":[{"message":{"content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":{"a":1}}},{"function":{"name":"g"}},{"function":{"arguments":"{}"}},7]},"finish_reason":"tool_calls"}]}"#,
            r#"{"choices":[{"message":{"content":null},"finish_reason":"content_filter"}],"model":""}"#,
            r#"{"choices":[{"message":null,"finish_reason":null}]}"#,
            r#"{"choices":[]}"#,
            r#"{"choices":null}"#,
            r#"{"choices":"x"}"#,
            r#"{"choices":[1]}"#,
            r#"{}"#,
            r#"[]"#,
            r#"{"choices":[{"text":"a","message":"m"}]}"#,
            r#"{"choices":[{"text":5,"message":{"content":"c"}}]}"#,
            r#"{"choices":[{"text":"a"}],"usage":{"prompt_tokens":1.5,"completion_tokens":2}}"#,
            r#"{"choices":[{"text":"a"}],"usage":{"prompt_tokens":-1}}"#,
            r#"{"choices":[{"text":"a"}],"usage":"none","model":7}"#,
            r#"{"choices":[{"text":"a"}],"choices":[{"text":"b"}]}"#,
            r#"{"choices":[{"text":"caf\u00e9 \ud83d\ude00"}],"model":"m\u00e9"}"#,
            r#"{"choices":[{"text":"a"}],"id":"\ud800"}"#,
            r#"{"choices":[{"text":"a\\u"}],"id":"x\\"}"#,
            r#"{"choices":[{"text":"a"}]"#,
            r#"[[["hi"]]]"#,
            r#"{"choices":[["hi"]]}"#,
            r#"{"choices":[{"message":["hi"]}]}"#,
            r#"{"choices":[{"text":"a"}],"usage":[3,4,7]}"#,
            "not json",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([long_model])
        .collect();
        for body in &answers {
            for wire in [Wire::OpenaiChat, Wire::OpenaiCompletions] {
                assert_eq!(parse(wire, body.as_bytes()), parse_tree(wire, body.as_bytes()), "{wire:?} {body}");
            }
        }
        // bytes outside UTF-8 in a field the borrowed reading skips
        let latin1 = b"{\"choices\":[{\"text\":\"a\"}],\"id\":\"caf\xe9\"}";
        for wire in [Wire::OpenaiChat, Wire::OpenaiCompletions] {
            assert_eq!(parse(wire, latin1), parse_tree(wire, latin1));
            assert!(parse(wire, latin1).is_err());
        }
        // the fast path is taken for an ordinary answer, not only the fallback
        assert!(serde_json::from_slice::<Object<AnswerWire<'_>>>(answers[0].as_bytes()).is_ok());
    }
}
