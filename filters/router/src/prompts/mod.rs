//! Prompt rendering: GitLab sends template variables (`inputs`), the gateway owns the prompts.
//!
//! The built-in templates are data files under `filters/router/prompts/` (Jinja syntax,
//! rendered with minijinja), described by `prompts/manifest.json`: for each prompt id the
//! required and optional variables, the default inference parameters and stop sequences, the
//! base system/user templates, and per-family variants (fill-in-the-middle templates, an
//! assistant prefill, other stops). A [`PromptSet`] compiles all of them once, at
//! `on_configure`, together with the admin's [`TemplateOverrides`]; requests only render.

mod files;

use duo_core::catalogue;
use duo_core::config::ConfigError;
use duo_core::errors::GitlabError;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value as JValue, syntax::SyntaxConfig};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::model::Family;

pub const ALL_FAMILIES: [Family; 10] = [
    Family::Codestral,
    Family::Mistral,
    Family::Mixtral,
    Family::Llama3,
    Family::Codellama,
    Family::Codegemma,
    Family::Deepseekcoder,
    Family::Claude3,
    Family::Gpt,
    Family::General,
];

/// Variables every prompt may use without declaring them: the gateway fills them in.
const GLOBAL_VARS: &[&str] = &["current_date"];

pub use duo_llm::{Message, Role};

/// A rendered prompt: chat messages (system first when present; an assistant message last is
/// a prefill the model continues), or a raw fill-in-the-middle prompt, plus the feature's
/// default parameters and stop sequences.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    pub messages: Vec<Message>,
    /// Raw completion prompt (fill-in-the-middle) when asked for and the family has one.
    pub fim: Option<String>,
    /// Feature defaults (`max_tokens`, `temperature`, ...): the lowest layer of the params merge.
    pub params: Map<String, Value>,
    pub stop: Vec<String>,
}

impl Rendered {
    /// The assistant prefill, if the last message is one.
    pub fn prefill(&self) -> Option<&str> {
        self.messages.last().filter(|m| m.role == Role::Assistant).map(|m| m.content.as_str())
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct RenderOptions<'a> {
    /// Return the family's fill-in-the-middle prompt (when it has one) instead of messages.
    pub want_fim: bool,
    /// `current_date` for templates that use it (`YYYY-MM-DD`), unless GitLab sent one.
    pub today: &'a str,
}

// ---------------------------------------------------------------------------------------
// Admin overrides (router config field `prompts`).

/// Template texts for one family (or, at the top level, for every family).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateTexts {
    /// System message template; an empty string removes the system message.
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// Literal text the assistant's answer starts with (not sent back to GitLab).
    #[serde(default)]
    pub prefill: Option<String>,
    /// Raw fill-in-the-middle template (code completions on vLLM `/v1/completions`).
    #[serde(default)]
    pub fim: Option<String>,
    /// Conversation prompts (`chat/react`): template of each earlier assistant turn.
    #[serde(default)]
    pub assistant: Option<String>,
    /// Conversation prompts (`chat/react`): template of the trailing assistant message the
    /// model continues, on platforms that continue one.
    #[serde(default)]
    pub continuation: Option<String>,
    #[serde(default)]
    pub stop: Option<Vec<String>>,
}

/// One `prompts.<prompt id or feature name>` entry of the router configuration.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptOverride {
    /// Same meaning as in [`TemplateTexts`], for every family.
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub prefill: Option<String>,
    #[serde(default)]
    pub fim: Option<String>,
    #[serde(default)]
    pub assistant: Option<String>,
    #[serde(default)]
    pub continuation: Option<String>,
    #[serde(default)]
    pub stop: Option<Vec<String>>,
    /// Merged over the built-in defaults (`max_tokens`, `temperature`, ...); the model's
    /// `params` still win over these.
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    /// Per-family texts, applied over `all`; keys are GitLab family names.
    #[serde(default)]
    pub families: BTreeMap<String, TemplateTexts>,
}

/// The router config's `prompts` object: key = prompt id (`generate_commit_message`,
/// `chat/explain_code`, `code_suggestions/completions`, `model_configuration/check`) or the
/// feature-setting name that uses it (`duo_chat_explain_code`, `code_completions`).
pub type TemplateOverrides = BTreeMap<String, PromptOverride>;

/// Validates the overrides (unknown prompts, bad families, Jinja syntax errors, variables
/// the prompt never receives); `path` is the config field (`prompts`).
pub fn validate_overrides(path: &str, overrides: &TemplateOverrides) -> Result<(), ConfigError> {
    PromptSet::new(overrides).map(|_| ()).map_err(|e| prefix_path(path, e))
}

fn prefix_path(path: &str, mut e: ConfigError) -> ConfigError {
    if !path.is_empty() {
        e.path = if e.path.is_empty() { path.to_owned() } else { format!("{path}.{}", e.path) };
    }
    e
}

// ---------------------------------------------------------------------------------------
// Manifest (built-in data).

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestEntry {
    required: Vec<String>,
    optional: Vec<String>,
    params: Map<String, Value>,
    #[serde(default)]
    stop: Vec<String>,
    base: ManifestVariant,
    #[serde(default)]
    families: BTreeMap<String, ManifestVariant>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestVariant {
    system: Option<String>,
    user: Option<String>,
    prefill: Option<String>,
    fim: Option<String>,
    assistant: Option<String>,
    continuation: Option<String>,
    stop: Option<Vec<String>>,
}

/// Template names (in the environment) per role for one prompt × family.
#[derive(Clone, Debug, Default)]
struct Variant {
    system: Option<String>,
    user: Option<String>,
    prefill: Option<String>,
    fim: Option<String>,
    assistant: Option<String>,
    continuation: Option<String>,
    stop: Option<Vec<String>>,
}

/// One template of a conversation prompt (`chat/react`), rendered message by message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    System,
    User,
    Assistant,
    Continuation,
}

#[derive(Debug)]
struct PromptDef {
    required: Vec<String>,
    optional: Vec<String>,
    params: Map<String, Value>,
    stop: Vec<String>,
    base: Variant,
    families: HashMap<Family, Variant>,
}

/// All prompts, compiled once per VM (built-ins + overrides).
pub struct PromptSet {
    env: Environment<'static>,
    prompts: BTreeMap<String, PromptDef>,
}

impl std::fmt::Debug for PromptSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromptSet").field("prompts", &self.prompts.keys().collect::<Vec<_>>()).finish()
    }
}

pub fn family_from_name(name: &str) -> Option<Family> {
    ALL_FAMILIES.into_iter().find(|f| f.name() == name)
}

fn new_env() -> Result<Environment<'static>, ConfigError> {
    let mut env = Environment::new();
    let syntax = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .map_err(|e| ConfigError::new("", format!("template syntax: {e}")))?;
    env.set_syntax(syntax);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    // minijinja's `builtins` feature would add ~400 KB of wasm; these few filters are what
    // prompt templates need (documented in docs/codecs.md for admins writing overrides).
    env.add_filter("join", filter_join);
    env.add_filter("default", filter_default);
    env.add_filter("upper", |s: String| s.to_uppercase());
    env.add_filter("lower", |s: String| s.to_lowercase());
    env.add_filter("trim", |s: String| s.trim().to_owned());
    env.add_filter("length", |v: JValue| v.len().unwrap_or_else(|| v.to_string().chars().count()));
    Ok(env)
}

/// `join(sep)`: a list joined with `sep` (default `", "`); a string stays as it is.
fn filter_join(v: JValue, sep: Option<String>) -> String {
    if v.is_undefined() || v.is_none() {
        return String::new();
    }
    if v.as_str().is_some() {
        return v.to_string();
    }
    match v.try_iter() {
        Ok(items) => items.map(|i| i.to_string()).collect::<Vec<_>>().join(sep.as_deref().unwrap_or(", ")),
        Err(_) => v.to_string(),
    }
}

/// `default(fallback)`: `fallback` when the value is undefined or none.
fn filter_default(v: JValue, fallback: Option<JValue>) -> JValue {
    if v.is_undefined() || v.is_none() { fallback.unwrap_or_else(|| JValue::from("")) } else { v }
}

/// The prompt id an override key names: a prompt id, or the feature-setting name of the one
/// prompt that feature uses.
fn resolve_key(key: &str, prompts: &BTreeMap<String, PromptDef>) -> Option<String> {
    if prompts.contains_key(key) {
        return Some(key.to_owned());
    }
    // `duo_chat` owns many prompts (ReAct, tool readers, categorize_question): ambiguous.
    if key == catalogue::Feature::DuoChat.name() {
        return None;
    }
    let mut found = prompts
        .keys()
        .filter(|id| matches!(catalogue::prompt(id), Some((Some(f), _)) if f.name() == key));
    let first = found.next()?;
    if found.next().is_some() {
        return None;
    }
    Some(first.clone())
}

impl PromptSet {
    /// Built-in prompts only.
    pub fn builtin() -> Result<PromptSet, ConfigError> {
        Self::new(&TemplateOverrides::new())
    }

    /// Built-in prompts with the admin's overrides; fails (naming the field) on anything wrong.
    pub fn new(overrides: &TemplateOverrides) -> Result<PromptSet, ConfigError> {
        let mut env = new_env()?;
        for (name, source) in files::TEMPLATES {
            env.add_template(name, source)
                .map_err(|e| ConfigError::new("", format!("built-in template `{name}`: {e}")))?;
        }
        let manifest: BTreeMap<String, ManifestEntry> = serde_json::from_str(files::MANIFEST)
            .map_err(|e| ConfigError::new("", format!("built-in prompt manifest: {e}")))?;
        let mut prompts = BTreeMap::new();
        for (id, entry) in manifest {
            let mut families = HashMap::new();
            for (fname, v) in entry.families {
                let family = family_from_name(&fname)
                    .ok_or_else(|| ConfigError::new("", format!("built-in prompt `{id}`: unknown family `{fname}`")))?;
                families.insert(family, variant_over(&entry.base, &v));
            }
            let base = variant_over(&ManifestVariant::default(), &entry.base);
            prompts.insert(
                id,
                PromptDef {
                    required: entry.required,
                    optional: entry.optional,
                    params: entry.params,
                    stop: entry.stop,
                    base,
                    families,
                },
            );
        }
        for (key, o) in overrides {
            let id = resolve_key(key, &prompts).ok_or_else(|| {
                let known: Vec<&str> = prompts.keys().map(String::as_str).collect();
                ConfigError::new(
                    key.clone(),
                    format!("unknown prompt `{key}`: use a prompt id ({}) or the feature name using it", known.join(", ")),
                )
            })?;
            let Some(def) = prompts.get_mut(&id) else { continue };
            let allowed = allowed_vars(def);
            for (k, v) in &o.params {
                if k == "stop" || k == "stream" || k == "model" || k == "messages" || k == "prompt" {
                    return Err(ConfigError::new(format!("{key}.params.{k}"), "is set by the gateway, not by a prompt"));
                }
                def.params.insert(k.clone(), v.clone());
            }
            let tag = format!("override/{id}");
            let all = TemplateTexts {
                system: o.system.clone(),
                user: o.user.clone(),
                prefill: o.prefill.clone(),
                fim: o.fim.clone(),
                assistant: o.assistant.clone(),
                continuation: o.continuation.clone(),
                stop: o.stop.clone(),
            };
            apply_texts(&mut env, &mut def.base, &all, &format!("{tag}/all"), key, &allowed)?;
            for v in def.families.values_mut() {
                apply_texts(&mut env, v, &all, &format!("{tag}/all"), key, &allowed)?;
            }
            for (fname, texts) in &o.families {
                let family = family_from_name(fname).ok_or_else(|| {
                    ConfigError::new(format!("{key}.families.{fname}"), format!("unknown model family `{fname}`"))
                })?;
                let mut v = def.families.get(&family).cloned().unwrap_or_else(|| def.base.clone());
                let path = format!("{key}.families.{fname}");
                apply_texts(&mut env, &mut v, texts, &format!("{tag}/{fname}"), &path, &allowed)?;
                def.families.insert(family, v);
            }
        }
        Ok(PromptSet { env, prompts })
    }

    /// Prompt ids this set can render.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.prompts.keys().map(String::as_str)
    }

    pub fn has(&self, id: &str) -> bool {
        self.prompts.contains_key(id)
    }

    /// Renders prompt `id` for `family` from GitLab's `inputs`.
    /// Unknown id: 404 `Prompt '<id>' not found`; a catalogue id without templates: 422
    /// `Prompt '<id>' is not supported`; missing required variables: 422 naming them.
    pub fn render(
        &self,
        id: &str,
        family: Family,
        inputs: &Map<String, Value>,
        opts: RenderOptions<'_>,
    ) -> Result<Rendered, GitlabError> {
        let Some(def) = self.prompts.get(id) else {
            return Err(if catalogue::prompt(id).is_some() {
                GitlabError::detail(422, &format!("Prompt '{id}' is not supported"))
            } else {
                GitlabError::detail(404, &format!("Prompt '{id}' not found"))
            });
        };
        let missing: Vec<&str> = def
            .required
            .iter()
            .filter(|k| inputs.get(k.as_str()).is_none_or(Value::is_null))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            let mut received: Vec<&str> = inputs.keys().map(String::as_str).collect();
            received.sort_unstable();
            return Err(GitlabError::detail(
                422,
                &format!(
                    "Missing variables for prompt '{id}': expected {}, received {}",
                    brace_list(&missing),
                    brace_list(&received)
                ),
            ));
        }
        let variant = def.families.get(&family).unwrap_or(&def.base);
        let ctx = context(inputs, opts.today);
        let stop = variant.stop.clone().unwrap_or_else(|| def.stop.clone());
        if opts.want_fim
            && let Some(name) = &variant.fim
        {
            let text = self.render_one(name, &ctx)?;
            return Ok(Rendered { messages: Vec::new(), fim: Some(text), params: def.params.clone(), stop });
        }
        let mut messages = Vec::with_capacity(3);
        if let Some(name) = &variant.system {
            let text = self.render_one(name, &ctx)?;
            if !text.trim().is_empty() {
                messages.push(Message::system(text));
            }
        }
        let user = match &variant.user {
            Some(name) => self.render_one(name, &ctx)?,
            None => String::new(),
        };
        messages.push(Message::user(user));
        if let Some(prefill) = variant.prefill.as_ref().filter(|p| !p.is_empty()) {
            messages.push(Message::assistant(prefill.clone()));
        }
        Ok(Rendered { messages, fim: None, params: def.params.clone(), stop })
    }

    /// Renders one template of conversation prompt `id` for `family` with `vars` (the caller
    /// builds them; the manifest declares them). Edge line breaks left by block tags are
    /// trimmed. A part the prompt has no template for renders empty.
    pub fn render_part(&self, id: &str, family: Family, part: Part, vars: &Value) -> Result<String, GitlabError> {
        let def = self.prompts.get(id).ok_or_else(|| GitlabError::detail(500, &format!("Prompt '{id}' is not built in")))?;
        let variant = def.families.get(&family).unwrap_or(&def.base);
        let name = match part {
            Part::System => &variant.system,
            Part::User => &variant.user,
            Part::Assistant => &variant.assistant,
            Part::Continuation => &variant.continuation,
        };
        let Some(name) = name else { return Ok(String::new()) };
        let Value::Object(vars) = vars else { return Err(GitlabError::detail(500, "prompt variables must be an object")) };
        let text = self.render_one(name, &context(vars, ""))?;
        Ok(text.trim_matches('\n').to_owned())
    }

    /// Default params of prompt `id` (what `render` would return), without rendering.
    pub fn default_params(&self, id: &str) -> Map<String, Value> {
        self.prompts.get(id).map(|d| d.params.clone()).unwrap_or_default()
    }

    /// Does `family` have a fill-in-the-middle template for prompt `id`?
    pub fn has_fim(&self, id: &str, family: Family) -> bool {
        self.prompts
            .get(id)
            .and_then(|d| d.families.get(&family).or(Some(&d.base)))
            .is_some_and(|v| v.fim.is_some())
    }

    fn render_one(&self, name: &str, ctx: &JValue) -> Result<String, GitlabError> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            // Template errors come from admin overrides that passed validation but fail on
            // these inputs (e.g. a filter applied to the wrong type): the request cannot be served.
            .map_err(|e| GitlabError::detail(422, &format!("Prompt template error: {}", e.kind())))
    }

    /// Variables the templates of `id` reference but the manifest does not declare (test aid).
    #[cfg(test)]
    fn undeclared(&self, id: &str) -> BTreeSet<String> {
        let Some(def) = self.prompts.get(id) else { return BTreeSet::new() };
        let allowed = allowed_vars(def);
        let mut names: Vec<&String> = Vec::new();
        for v in std::iter::once(&def.base).chain(def.families.values()) {
            names.extend([&v.system, &v.user, &v.fim, &v.assistant, &v.continuation].into_iter().flatten());
        }
        let mut out = BTreeSet::new();
        for n in names {
            if let Ok(t) = self.env.get_template(n) {
                for var in t.undeclared_variables(false) {
                    if !allowed.contains(&var) && self.env.globals().all(|(g, _)| g != var) {
                        out.insert(var);
                    }
                }
            }
        }
        out
    }
}

fn brace_list(items: &[&str]) -> String {
    format!("{{{}}}", items.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", "))
}

fn allowed_vars(def: &PromptDef) -> BTreeSet<String> {
    def.required
        .iter()
        .chain(def.optional.iter())
        .cloned()
        .chain(GLOBAL_VARS.iter().map(|s| (*s).to_owned()))
        .collect()
}

fn variant_over(base: &ManifestVariant, v: &ManifestVariant) -> Variant {
    Variant {
        system: v.system.clone().or_else(|| base.system.clone()),
        user: v.user.clone().or_else(|| base.user.clone()),
        prefill: v.prefill.clone().or_else(|| base.prefill.clone()),
        fim: v.fim.clone().or_else(|| base.fim.clone()),
        assistant: v.assistant.clone().or_else(|| base.assistant.clone()),
        continuation: v.continuation.clone().or_else(|| base.continuation.clone()),
        stop: v.stop.clone().or_else(|| base.stop.clone()),
    }
}

fn apply_texts(
    env: &mut Environment<'static>,
    v: &mut Variant,
    t: &TemplateTexts,
    name_prefix: &str,
    path: &str,
    allowed: &BTreeSet<String>,
) -> Result<(), ConfigError> {
    for (role, src, slot) in [
        ("system", &t.system, &mut v.system),
        ("user", &t.user, &mut v.user),
        ("fim", &t.fim, &mut v.fim),
        ("assistant", &t.assistant, &mut v.assistant),
        ("continuation", &t.continuation, &mut v.continuation),
    ] {
        let Some(src) = src else { continue };
        let name = format!("{name_prefix}/{role}");
        let field = format!("{path}.{role}");
        env.add_template_owned(name.clone(), src.clone())
            .map_err(|e| ConfigError::new(field.clone(), format!("invalid template: {e}")))?;
        let tmpl = env.get_template(&name).map_err(|e| ConfigError::new(field.clone(), e.to_string()))?;
        let mut unknown: Vec<String> = tmpl
            .undeclared_variables(false)
            .into_iter()
            .filter(|var| !allowed.contains(var) && env.globals().all(|(g, _)| g != var))
            .collect();
        if !unknown.is_empty() {
            unknown.sort();
            let known: Vec<&str> = allowed.iter().map(String::as_str).collect();
            return Err(ConfigError::new(
                field,
                format!("unknown variable(s) {}: this prompt receives {}", unknown.join(", "), known.join(", ")),
            ));
        }
        *slot = if src.trim().is_empty() && role == "system" { None } else { Some(name) };
    }
    if let Some(p) = &t.prefill {
        v.prefill = if p.is_empty() { None } else { Some(p.clone()) };
    }
    if let Some(stop) = &t.stop {
        if let Some(i) = stop.iter().position(String::is_empty) {
            return Err(ConfigError::new(format!("{path}.stop[{i}]"), "stop sequences must not be empty"));
        }
        v.stop = Some(stop.clone());
    }
    Ok(())
}

fn context(inputs: &Map<String, Value>, today: &str) -> JValue {
    let extra = (!inputs.contains_key("current_date") && !today.is_empty()).then(|| ("current_date", JValue::from(today)));
    JValue::from_pairs(inputs.iter().map(|(k, v)| (k.as_str(), to_jinja(v))).chain(extra))
}

/// JSON → template value (strings are copied once, into the template engine's own type).
fn to_jinja(v: &Value) -> JValue {
    match v {
        Value::Null => JValue::from(()),
        Value::Bool(b) => JValue::from(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                JValue::from(i)
            } else if let Some(u) = n.as_u64() {
                JValue::from(u)
            } else {
                JValue::from(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => JValue::from(s.as_str()),
        Value::Array(a) => JValue::from(a.iter().map(to_jinja).collect::<Vec<_>>()),
        Value::Object(m) => JValue::from_pairs(m.iter().map(|(k, v)| (k.as_str(), to_jinja(v)))),
    }
}

/// `YYYY-MM-DD` (UTC) of a Unix time, for `current_date`.
pub fn date_from_unix(secs: u64) -> String {
    CivilDate::from_unix_seconds(secs).iso()
}

/// A calendar date (UTC), handed in by the adapter: pure code does not read the clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CivilDate {
    pub year: i32,
    pub month: u8,
    pub day: u8,
}

impl CivilDate {
    /// The UTC date of a Unix time.
    pub fn from_unix_seconds(secs: u64) -> CivilDate {
        let days = i64::try_from(secs / 86_400).unwrap_or(0);
        // Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        CivilDate { year, month, day }
    }

    /// `YYYY-MM-DD`.
    pub fn iso(self) -> String {
        // Written digit by digit: `format!` costs ~2.5k wasm operators per request here.
        let (Ok(year @ 0..=9999), 0..=99, 0..=99) = (u16::try_from(self.year), self.month, self.day) else {
            return format!("{:04}-{:02}-{:02}", self.year, self.month, self.day);
        };
        let digit = |n: u16| char::from(b'0' + (n % 10) as u8);
        let (month, day) = (u16::from(self.month), u16::from(self.day));
        [digit(year / 1000), digit(year / 100), digit(year / 10), digit(year), '-', digit(month / 10), digit(month), '-', digit(day / 10), digit(day)]
            .into_iter()
            .collect()
    }

    /// E.g. `Thursday, November 26, 2026`.
    pub fn long_format(self) -> String {
        const MONTHS: [&str; 12] = [
            "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
            "November", "December",
        ];
        const WEEKDAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
        // Sakamoto's day-of-week.
        const T: [i32; 12] = [0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4];
        let m = usize::from(self.month.clamp(1, 12));
        let y = if m < 3 { self.year - 1 } else { self.year };
        let dow = (y + y.div_euclid(4) - y.div_euclid(100) + y.div_euclid(400) + T[m - 1] + i32::from(self.day))
            .rem_euclid(7) as usize;
        format!("{}, {} {}, {}", WEEKDAYS[dow], MONTHS[m - 1], self.day, self.year)
    }
}

#[cfg(test)]
mod tests;
