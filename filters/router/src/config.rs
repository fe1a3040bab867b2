//! duo_router configuration (README, "duo_router"): the serde layer ([`RawConfig`]) and the compiled,
//! validated form ([`Config`]) that requests read. `Config::parse` does both, so a bad field fails
//! `on_configure` with one message that names it.

use crate::ingress::IngressConfig;
use crate::model::{self, ModelConfig};
use crate::prompts::{TemplateOverrides, validate_overrides};
use duo_core::catalogue::Feature;
use duo_core::config::{ConfigError, parse_json};
use duo_core::limits::MAX_REQUEST_BYTES;
pub use duo_core::validate::split_host_port;
use duo_core::validate::{check_authority, check_name};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The seed's three setups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigurationType {
    SelfHosted,
    Hybrid,
    GitlabCom,
}

impl ConfigurationType {
    pub fn name(self) -> &'static str {
        match self {
            ConfigurationType::SelfHosted => "self_hosted",
            ConfigurationType::Hybrid => "hybrid",
            ConfigurationType::GitlabCom => "gitlab_com",
        }
    }
}

/// GitLab's provider values, plus `aigw`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    SelfHosted,
    Vendored,
    Disabled,
    Aigw,
}

impl Provider {
    pub const ALL: [Provider; 4] = [Provider::SelfHosted, Provider::Vendored, Provider::Disabled, Provider::Aigw];

    pub fn name(self) -> &'static str {
        match self {
            Provider::SelfHosted => "self_hosted",
            Provider::Vendored => "vendored",
            Provider::Disabled => "disabled",
            Provider::Aigw => "aigw",
        }
    }
}

/// `features.<name>` and `default`, as written.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub provider: Provider,
    #[serde(default)]
    pub model: Option<String>,
}

/// `vendor`: GitLab's cloud gateway (cloud.gitlab.com/ai) for `vendored` features.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vendor {
    pub cluster: String,
    pub authority: String,
    /// Prepended to the request path (`/ai` for cloud.gitlab.com). Not applied to gRPC.
    #[serde(default)]
    pub path_prefix: String,
}

/// `aigw`: an existing Python AI gateway that gets requests unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aigw {
    pub cluster: String,
    pub authority: String,
}

/// `agent_platform` / `agent_platform_vendor`: a Duo Workflow Service (gRPC) that gets the
/// Agent Platform's calls unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowService {
    pub cluster: String,
    pub authority: String,
    /// `agent_platform` only: the service calls its self-hosted models through the gateway's
    /// model ingress (the router rewrites the call's model metadata).
    #[serde(default)]
    pub model_ingress: Option<AgentIngress>,
}

/// `agent_platform.model_ingress`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentIngress {
    /// The ingress as the Duo Workflow Service reaches it, e.g. `http://gateway.internal:5052/v1`.
    pub url: String,
    /// LiteLLM's provider prefix of the rewritten identifier.
    #[serde(default = "default_identifier_prefix")]
    pub identifier_prefix: String,
    /// An ingress key duo_auth accepts (listed in its `ingress_keys` by SHA-256), given to the
    /// service as the model's API key.
    pub api_key: String,
}

fn default_identifier_prefix() -> String {
    "custom_openai/".to_owned()
}

impl std::fmt::Debug for AgentIngress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never prints the key.
        f.debug_struct("AgentIngress").field("url", &self.url).field("identifier_prefix", &self.identifier_prefix).finish_non_exhaustive()
    }
}

pub const DEFAULT_CLUSTER_HEADER: &str = "x-duo-upstream";
/// Above Rails' own 600 000-byte cap on code-suggestion bodies; chat bodies carry scratchpads.
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = MAX_REQUEST_BYTES as u64;
pub const DEFAULT_BODY_WAIT_MS: u64 = 10_000;

fn default_cluster_header() -> String {
    DEFAULT_CLUSTER_HEADER.to_owned()
}
fn default_max_request_bytes() -> u64 {
    DEFAULT_MAX_REQUEST_BYTES
}
fn default_body_wait_ms() -> u64 {
    DEFAULT_BODY_WAIT_MS
}

/// The configuration exactly as the admin writes it (serde only; see [`Config`] for the checks).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub configuration_type: ConfigurationType,
    #[serde(default = "default_cluster_header")]
    pub cluster_header: String,
    #[serde(default)]
    pub models: BTreeMap<String, ModelConfig>,
    #[serde(default)]
    pub features: BTreeMap<String, RawRoute>,
    #[serde(default)]
    pub default: Option<RawRoute>,
    #[serde(default)]
    pub vendor: Option<Vendor>,
    #[serde(default)]
    pub aigw: Option<Aigw>,
    /// The Duo Workflow Service you run: the Agent Platform's `self_hosted` target.
    #[serde(default)]
    pub agent_platform: Option<WorkflowService>,
    /// GitLab's Duo Workflow Service: the Agent Platform's `vendored` target.
    #[serde(default)]
    pub agent_platform_vendor: Option<WorkflowService>,
    /// Extension: GitLab does not offer `generate_issue_description` on self-hosted models; set
    /// this to `true` to allow `self_hosted` for it anyway.
    #[serde(default)]
    pub allow_self_hosted_issue_description: bool,
    /// Extension: request bodies above this many bytes get 413 (the router buffers bodies it
    /// decides from or rewrites).
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: u64,
    /// Extension: how long a request held at its headers may wait for its first body callback
    /// before the router concludes Envoy will never deliver it (`allow_on_headers_stop_iteration`
    /// missing), answers 500 and logs an error. 0 turns the watchdog off.
    #[serde(default = "default_body_wait_ms")]
    pub body_wait_ms: u64,
    /// Prompt template overrides (owned by the prompt renderer: `crate::prompts`).
    #[serde(default)]
    pub prompts: TemplateOverrides,
    /// The OpenAI-compatible model ingress (`crate::ingress`); off when absent.
    #[serde(default)]
    pub model_ingress: Option<IngressConfig>,
}

/// Where a feature goes, after validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// A configured model: `Some(name)` always that one; `None` the one GitLab names in the body.
    SelfHosted { model: Option<String> },
    Vendored,
    Aigw,
    Disabled,
}

impl Route {
    pub fn provider(&self) -> Provider {
        match self {
            Route::SelfHosted { .. } => Provider::SelfHosted,
            Route::Vendored => Provider::Vendored,
            Route::Aigw => Provider::Aigw,
            Route::Disabled => Provider::Disabled,
        }
    }
}

/// The compiled configuration requests read.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub configuration_type: ConfigurationType,
    pub cluster_header: String,
    pub models: BTreeMap<String, ModelConfig>,
    /// Explicit `features` entries.
    pub features: BTreeMap<Feature, Route>,
    /// `default`, or the configuration type's default when absent.
    pub default: Route,
    pub vendor: Option<Vendor>,
    pub aigw: Option<Aigw>,
    pub agent_platform: Option<WorkflowService>,
    pub agent_platform_vendor: Option<WorkflowService>,
    pub allow_self_hosted_issue_description: bool,
    pub max_request_bytes: u64,
    pub body_wait_ms: u64,
    /// Validated prompt overrides; the adapter builds its `PromptSet` from them.
    pub prompts: TemplateOverrides,
    /// GitLab identifier → `models` key.
    pub identifiers: BTreeMap<String, String>,
    /// The model ingress, when configured.
    pub model_ingress: Option<IngressConfig>,
}

impl Config {
    /// Parses and validates; the error names the field.
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        let raw: RawConfig = parse_json(bytes)?;
        Self::compile(raw)
    }

    pub fn compile(raw: RawConfig) -> Result<Self, ConfigError> {
        let ct = raw.configuration_type;
        check_header_name("cluster_header", &raw.cluster_header)?;

        let mut identifiers: BTreeMap<String, String> = BTreeMap::new();
        for (name, m) in &raw.models {
            let path = format!("models.{name}");
            check_name(&path, name)?;
            model::validate(&path, m)?;
            for (i, id) in m.identifiers.iter().enumerate() {
                if let Some(other) = identifiers.insert(id.clone(), name.clone()) {
                    let where_ = if &other == name { "earlier in this list".to_owned() } else { format!("in `models.{other}`") };
                    return Err(ConfigError::new(
                        format!("{path}.identifiers[{i}]"),
                        format!("duplicate identifier `{id}`, already listed {where_}"),
                    ));
                }
            }
        }
        if let Some(v) = &raw.vendor {
            check_name("vendor.cluster", &v.cluster)?;
            check_authority("vendor.authority", &v.authority)?;
            let p = &v.path_prefix;
            if !p.is_empty() && (!p.starts_with('/') || p.ends_with('/') || p.contains(['?', '#', ' '])) {
                return Err(ConfigError::new(
                    "vendor.path_prefix",
                    format!("`{p}` must be empty or a path like `/ai` (leading `/`, no trailing `/`)"),
                ));
            }
        }
        if let Some(a) = &raw.aigw {
            check_name("aigw.cluster", &a.cluster)?;
            check_authority("aigw.authority", &a.authority)?;
        }
        if let Some(i) = raw.agent_platform.as_ref().and_then(|s| s.model_ingress.as_ref()) {
            let at = |f: &str| format!("agent_platform.model_ingress.{f}");
            let scheme_ok = i.url.strip_prefix("http://").or_else(|| i.url.strip_prefix("https://")).is_some_and(|rest| !rest.is_empty());
            if !scheme_ok || i.url.contains(char::is_whitespace) {
                return Err(ConfigError::new(at("url"), format!("`{}` must be an http(s) URL of the model ingress", i.url)));
            }
            if i.api_key.trim().is_empty() {
                return Err(ConfigError::new(at("api_key"), "must be an ingress key duo_auth accepts"));
            }
            if !raw.model_ingress.as_ref().is_some_and(|m| m.enabled) {
                return Err(ConfigError::new("agent_platform.model_ingress", "needs the model ingress on (`model_ingress.enabled: true`)"));
            }
        }
        if raw.agent_platform_vendor.as_ref().is_some_and(|s| s.model_ingress.is_some()) {
            return Err(ConfigError::new("agent_platform_vendor.model_ingress", "GitLab's own service calls GitLab's models: only `agent_platform` takes it"));
        }
        for (key, s) in [("agent_platform", &raw.agent_platform), ("agent_platform_vendor", &raw.agent_platform_vendor)] {
            if let Some(s) = s {
                check_name(&format!("{key}.cluster"), &s.cluster)?;
                check_authority(&format!("{key}.authority"), &s.authority)?;
            }
        }
        if ct == ConfigurationType::SelfHosted && raw.agent_platform_vendor.is_some() {
            return Err(ConfigError::new(
                "agent_platform_vendor",
                "a `self_hosted` configuration_type never sends the Agent Platform to GitLab's service; use `hybrid` for that",
            ));
        }
        let limit = u64::try_from(MAX_REQUEST_BYTES).unwrap_or(u64::MAX);
        if raw.max_request_bytes == 0 || raw.max_request_bytes > limit {
            return Err(ConfigError::new("max_request_bytes", format!("must be between 1 and {limit} (what the codecs accept)")));
        }
        validate_overrides("prompts", &raw.prompts)?;

        let compiler = RouteCompiler { raw: &raw, any_identifier: !identifiers.is_empty() };
        let mut features = BTreeMap::new();
        for (key, r) in &raw.features {
            let path = format!("features.{key}");
            let feature = Feature::from_name(key).ok_or_else(|| {
                let names: Vec<&str> = Feature::ALL.iter().map(|f| f.name()).collect();
                ConfigError::new(&path, format!("unknown feature `{key}`; GitLab's feature settings are: {}", names.join(", ")))
            })?;
            features.insert(feature, compiler.route(&path, Some(feature), r)?);
        }
        let default = match &raw.default {
            Some(r) => compiler.route("default", None, r)?,
            None => {
                let implicit = RawRoute {
                    provider: if ct == ConfigurationType::GitlabCom { Provider::Vendored } else { Provider::SelfHosted },
                    model: None,
                };
                compiler.route("default", None, &implicit).map_err(|e| {
                    ConfigError::new(e.path, format!("{} (the implicit default for `{}` is `{}`; set `default`)", e.message, ct.name(), implicit.provider.name()))
                })?
            }
        };

        if let Some(ingress) = &raw.model_ingress {
            for (i, key) in ingress.models.iter().flatten().enumerate() {
                if !raw.models.contains_key(key) {
                    return Err(ConfigError::new(format!("model_ingress.models[{i}]"), format!("`{key}` is not a `models` key")));
                }
            }
        }

        Ok(Config {
            configuration_type: ct,
            cluster_header: raw.cluster_header.to_ascii_lowercase(),
            models: raw.models,
            features,
            default,
            vendor: raw.vendor,
            aigw: raw.aigw,
            agent_platform: raw.agent_platform,
            agent_platform_vendor: raw.agent_platform_vendor,
            allow_self_hosted_issue_description: raw.allow_self_hosted_issue_description,
            max_request_bytes: raw.max_request_bytes,
            body_wait_ms: raw.body_wait_ms,
            prompts: raw.prompts,
            identifiers,
            model_ingress: raw.model_ingress,
        })
    }

    /// The route in effect for a feature (before per-request rules): `gitlab_com` sends
    /// everything but `disabled` entries to the vendor; an explicit entry wins; chat sub-features
    /// follow `duo_chat`, the Agent Platform's flow and chat settings `duo_agent_platform`;
    /// everything else follows `default`.
    pub fn route_for(&self, feature: Feature) -> &Route {
        if let Some(r) = self.features.get(&feature) {
            return r;
        }
        let parent = feature.chat_parent().or_else(|| feature.agent_platform_parent());
        if let Some(r) = parent.and_then(|p| self.features.get(&p)) {
            return r;
        }
        &self.default
    }
}

struct RouteCompiler<'a> {
    raw: &'a RawConfig,
    any_identifier: bool,
}

impl RouteCompiler<'_> {
    fn route(&self, path: &str, feature: Option<Feature>, r: &RawRoute) -> Result<Route, ConfigError> {
        let ct = self.raw.configuration_type;
        let err = |p: String, m: String| Err(ConfigError::new(p, m));
        if r.model.is_some() && r.provider != Provider::SelfHosted {
            return err(format!("{path}.model"), format!("only `self_hosted` takes a model, not `{}`", r.provider.name()));
        }
        match (ct, r.provider) {
            (ConfigurationType::SelfHosted, Provider::Vendored) => {
                return err(
                    format!("{path}.provider"),
                    "a `self_hosted` configuration_type never sends a feature to GitLab's vendor models; use `hybrid` for that".into(),
                );
            }
            (ConfigurationType::GitlabCom, Provider::SelfHosted | Provider::Aigw) => {
                return err(
                    format!("{path}.provider"),
                    format!("a `gitlab_com` configuration_type sends every feature to the vendor; only `vendored` or `disabled`, not `{}`", r.provider.name()),
                );
            }
            _ => {}
        }
        match r.provider {
            Provider::Vendored if self.raw.vendor.is_none() => {
                return err(format!("{path}.provider"), "`vendored` needs a `vendor` block (cluster, authority, path_prefix)".into());
            }
            Provider::Aigw if self.raw.aigw.is_none() => {
                return err(format!("{path}.provider"), "`aigw` needs an `aigw` block (cluster, authority)".into());
            }
            _ => {}
        }
        if r.provider == Provider::SelfHosted {
            match feature {
                Some(Feature::GenerateIssueDescription) if !self.raw.allow_self_hosted_issue_description => {
                    return err(
                        format!("{path}.provider"),
                        "GitLab does not offer generate_issue_description on self-hosted models; set `allow_self_hosted_issue_description: true` to route it to one anyway".into(),
                    );
                }
                // The Duo Workflow Service runs its own agent loop and picks its models itself.
                Some(f) if f.agent_platform() => {
                    if r.model.is_some() {
                        return err(format!("{path}.model"), "the Agent Platform's service picks its models; give no `model`".into());
                    }
                    if self.raw.agent_platform.is_none() {
                        return err(
                            format!("{path}.provider"),
                            "`self_hosted` for the Agent Platform needs an `agent_platform` block (cluster, authority of your Duo Workflow Service)".into(),
                        );
                    }
                    return Ok(Route::SelfHosted { model: None });
                }
                _ => {}
            }
            match &r.model {
                Some(name) if !self.raw.models.contains_key(name) => {
                    return err(format!("{path}.model"), format!("model `{name}` is not defined in `models`"));
                }
                Some(_) => {}
                None if !self.any_identifier => {
                    return err(
                        format!("{path}.provider"),
                        "`self_hosted` without `model` picks the model GitLab names, but no entry in `models` lists `identifiers`".into(),
                    );
                }
                None => {}
            }
        }
        Ok(match r.provider {
            Provider::SelfHosted => Route::SelfHosted { model: r.model.clone() },
            Provider::Vendored => Route::Vendored,
            Provider::Aigw => Route::Aigw,
            Provider::Disabled => Route::Disabled,
        })
    }
}

fn check_header_name(path: &str, value: &str) -> Result<(), ConfigError> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if value.is_empty() || !value.chars().all(token) {
        return Err(ConfigError::new(path, format!("`{value}` is not an HTTP header name")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use serde_json::{Value, json};

    /// The README's duo_router example, verbatim in meaning.
    pub(crate) fn example() -> Value {
        json!({
          "configuration_type": "hybrid",
          "cluster_header": "x-duo-upstream",
          "models": {
            "codestral": {
              "platform": "vllm", "cluster": "vllm_codestral", "authority": "vllm.internal:8000",
              "base_path": "/v1", "model": "Codestral-22B-v0.1", "family": "codestral",
              "identifiers": ["custom_openai/Codestral-22B-v0.1"], "credentials": "gitlab",
              "timeout_ms": 60000, "params": { "temperature": 0.2, "max_tokens": 512 }
            },
            "claude": {
              "platform": "bedrock", "cluster": "bedrock_us_east_1",
              "authority": "bedrock-runtime.us-east-1.amazonaws.com",
              "model": "us.anthropic.claude-3-5-sonnet-20240620-v1:0", "family": "claude_3", "api": "converse",
              "identifiers": ["bedrock/us.anthropic.claude-3-5-sonnet-20240620-v1:0"]
            },
            "gpt4o": {
              "platform": "azure_openai", "cluster": "azure_eastus", "authority": "myres.openai.azure.com",
              "model": "gpt-4o-deploy", "family": "gpt", "api_version": "2024-10-21",
              "identifiers": ["azure/gpt-4o-deploy"], "credentials": "envoy"
            }
          },
          "features": {
            "code_completions": { "provider": "self_hosted", "model": "codestral" },
            "duo_chat": { "provider": "self_hosted" },
            "generate_commit_message": { "provider": "vendored" },
            "summarize_review": { "provider": "disabled" },
            "review_merge_request": { "provider": "aigw" }
          },
          "default": { "provider": "self_hosted" },
          "vendor": { "cluster": "cloud_gitlab", "authority": "cloud.gitlab.com", "path_prefix": "/ai" },
          "aigw": { "cluster": "python_aigw", "authority": "aigw.internal:5052" }
        })
    }

    fn parse(v: &Value) -> Result<Config, ConfigError> {
        Config::parse(v.to_string().as_bytes())
    }

    /// Applies `edit` to the example and expects an error at `path` whose message contains `needle`.
    fn refused(edit: impl FnOnce(&mut Value), path: &str, needle: &str) {
        let mut v = example();
        edit(&mut v);
        match parse(&v) {
            Ok(_) => panic!("accepted, expected error at {path}: {v}"),
            Err(e) => {
                assert_eq!(e.path, path, "{e}");
                assert!(e.message.contains(needle), "`{}` lacks `{needle}`", e.message);
            }
        }
    }

    #[test]
    fn the_contract_example_compiles() {
        let c = parse(&example()).unwrap();
        assert_eq!(c.configuration_type, ConfigurationType::Hybrid);
        assert_eq!(c.cluster_header, "x-duo-upstream");
        assert_eq!(c.features[&Feature::CodeCompletions], Route::SelfHosted { model: Some("codestral".into()) });
        assert_eq!(c.features[&Feature::ReviewMergeRequest], Route::Aigw);
        assert_eq!(c.default, Route::SelfHosted { model: None });
        assert_eq!(c.identifiers["azure/gpt-4o-deploy"], "gpt4o");
        assert_eq!(c.identifiers.len(), 3);
        assert_eq!(c.max_request_bytes, DEFAULT_MAX_REQUEST_BYTES);
        assert_eq!(c.body_wait_ms, DEFAULT_BODY_WAIT_MS);
        assert!(!c.allow_self_hosted_issue_description);
    }

    #[test]
    fn routes_follow_entry_then_duo_chat_then_default() {
        let c = parse(&example()).unwrap();
        assert_eq!(c.route_for(Feature::DuoChatExplainCode), &Route::SelfHosted { model: None });
        assert_eq!(c.route_for(Feature::GenerateCommitMessage), &Route::Vendored);
        assert_eq!(c.route_for(Feature::SummarizeReview), &Route::Disabled);
        assert_eq!(c.route_for(Feature::GlabAskGitCommand), &c.default);
        let mut v = example();
        v["features"]["duo_chat"] = json!({"provider": "disabled"});
        v["features"]["duo_chat_fix_code"] = json!({"provider": "vendored"});
        let c = parse(&v).unwrap();
        assert_eq!(c.route_for(Feature::DuoChatWriteTests), &Route::Disabled);
        assert_eq!(c.route_for(Feature::DuoChatFixCode), &Route::Vendored);
    }

    #[test]
    fn implicit_defaults_per_configuration_type() {
        let c = parse(&json!({"configuration_type": "gitlab_com",
            "vendor": {"cluster": "cloud", "authority": "cloud.gitlab.com", "path_prefix": "/ai"}}))
        .unwrap();
        assert_eq!(c.default, Route::Vendored);
        assert!(c.models.is_empty() && c.features.is_empty());
        let mut v = example();
        v.as_object_mut().unwrap().remove("default");
        assert_eq!(parse(&v).unwrap().default, Route::SelfHosted { model: None });
        // No identifiers anywhere: the implicit self_hosted default could never match a model.
        let e = parse(&json!({"configuration_type": "self_hosted"})).unwrap_err();
        assert_eq!(e.path, "default.provider");
        assert!(e.message.contains("implicit default"), "{e}");
        // gitlab_com with no vendor block: the implicit vendored default has nowhere to go.
        let e = parse(&json!({"configuration_type": "gitlab_com"})).unwrap_err();
        assert_eq!(e.path, "default.provider");
    }

    #[test]
    fn configure_errors_name_the_field() {
        type Edit = fn(&mut Value);
        let cases: Vec<(Edit, &str, &str)> = vec![
            (|v| v["configuration_type"] = json!("cloud"), "configuration_type", "unknown variant"),
            (|v| { v.as_object_mut().unwrap().remove("configuration_type"); }, ".", "configuration_type"),
            (|v| v["colour"] = json!(1), "colour", "unknown field `colour`"),
            (|v| v["cluster_header"] = json!("x duo"), "cluster_header", "header name"),
            (|v| v["models"]["codestral"]["platform"] = json!("ollama"), "models.codestral.platform", "unknown variant `ollama`"),
            (|v| v["models"]["codestral"]["family"] = json!("gemma9"), "models.codestral.family", "unknown variant `gemma9`"),
            (|v| v["models"]["codestral"]["temperature"] = json!(1), "models.codestral.temperature", "unknown field `temperature`"),
            (|v| { v["models"]["codestral"].as_object_mut().unwrap().remove("cluster"); }, "models.codestral", "missing field `cluster`"),
            (|v| v["models"]["codestral"]["cluster"] = json!(""), "models.codestral.cluster", "non-empty"),
            (|v| v["models"]["codestral"]["authority"] = json!("http://vllm:8000"), "models.codestral.authority", "host[:port]"),
            (|v| v["models"]["codestral"]["authority"] = json!("vllm:99999"), "models.codestral.authority", "host[:port]"),
            (|v| v["models"]["codestral"]["base_path"] = json!("v1"), "models.codestral.base_path", "starting with `/`"),
            (|v| v["models"]["codestral"]["api"] = json!("converse"), "models.codestral.api", "`chat` or `completions`"),
            (|v| v["models"]["claude"]["api"] = json!("chat"), "models.claude.api", "`converse` or `invoke`"),
            (|v| v["models"]["gpt4o"]["api"] = json!("completions"), "models.gpt4o.api", "`chat`"),
            (|v| v["models"]["codestral"]["api_version"] = json!("2024-10-21"), "models.codestral.api_version", "only `azure_openai`"),
            (|v| v["models"]["claude"]["credentials"] = json!("gitlab"), "models.claude.credentials", "aws_request_signing"),
            (|v| v["models"]["codestral"]["timeout_ms"] = json!(0), "models.codestral.timeout_ms", "greater than 0"),
            (|v| v["models"]["codestral"]["model"] = json!(" "), "models.codestral.model", "empty"),
            (|v| v["models"]["gpt4o"]["identifiers"] = json!(["custom_openai/Codestral-22B-v0.1"]), "models.gpt4o.identifiers[0]", "already listed in `models.codestral`"),
            (|v| v["models"]["gpt4o"]["identifiers"] = json!(["a", "a"]), "models.gpt4o.identifiers[1]", "earlier in this list"),
            (|v| v["models"]["gpt4o"]["identifiers"] = json!([""]), "models.gpt4o.identifiers[0]", "255"),
            (|v| v["features"]["duo_chat_everything"] = json!({"provider": "vendored"}), "features.duo_chat_everything", "unknown feature"),
            (|v| v["features"]["duo_chat"] = json!({"provider": "local"}), "features.duo_chat.provider", "unknown variant `local`"),
            (|v| v["features"]["duo_chat"] = json!({"provider": "self_hosted", "modle": "x"}), "features.duo_chat.modle", "unknown field `modle`"),
            (|v| v["features"]["duo_chat"]["model"] = json!("llama"), "features.duo_chat.model", "not defined in `models`"),
            (|v| v["features"]["duo_chat"] = json!({"provider": "vendored", "model": "codestral"}), "features.duo_chat.model", "only `self_hosted`"),
            (|v| v["default"]["model"] = json!("nope"), "default.model", "not defined"),
            (|v| { v.as_object_mut().unwrap().remove("vendor"); }, "features.generate_commit_message.provider", "`vendor` block"),
            (|v| { v.as_object_mut().unwrap().remove("aigw"); }, "features.review_merge_request.provider", "`aigw` block"),
            (|v| v["vendor"]["path_prefix"] = json!("/ai/"), "vendor.path_prefix", "no trailing"),
            (|v| v["vendor"]["authority"] = json!(""), "vendor.authority", "host[:port]"),
            (|v| { v["vendor"].as_object_mut().unwrap().remove("cluster"); }, "vendor", "missing field `cluster`"),
            (|v| v["aigw"]["cluster"] = json!("a b"), "aigw.cluster", "non-empty"),
            (|v| v["configuration_type"] = json!("self_hosted"), "features.generate_commit_message.provider", "use `hybrid`"),
            (|v| { v["configuration_type"] = json!("gitlab_com"); }, "features.code_completions.provider", "only `vendored` or `disabled`"),
            (|v| v["features"]["generate_issue_description"] = json!({"provider": "self_hosted"}), "features.generate_issue_description.provider", "allow_self_hosted_issue_description"),
            (|v| v["features"]["duo_agent_platform"] = json!({"provider": "self_hosted"}), "features.duo_agent_platform.provider", "`agent_platform` block"),
            (|v| { v["agent_platform"] = json!({"cluster": "dws", "authority": "dws:50052"}); v["features"]["duo_agent_platform"] = json!({"provider": "self_hosted", "model": "codestral"}); }, "features.duo_agent_platform.model", "picks its models"),
            (|v| v["features"]["sast_vulnerability_fp_detection"] = json!({"provider": "self_hosted"}), "features.sast_vulnerability_fp_detection.provider", "`agent_platform` block"),
            (|v| { v["agent_platform"] = json!({"cluster": "dws", "authority": "dws:50052"}); v["features"]["duo_agent_platform_agentic_chat"] = json!({"provider": "self_hosted", "model": "codestral"}); }, "features.duo_agent_platform_agentic_chat.model", "picks its models"),
            (|v| { v["configuration_type"] = json!("self_hosted"); v["features"] = json!({"security_review": {"provider": "vendored"}}); }, "features.security_review.provider", "use `hybrid`"),
            (|v| v["features"]["duo_developer"] = json!({"provider": "disabled"}), "features.duo_developer", "unknown feature"),
            (|v| v["agent_platform"] = json!({"cluster": "dws", "authority": "a b"}), "agent_platform.authority", "host[:port]"),
            (|v| { v["configuration_type"] = json!("self_hosted"); v["features"] = json!({}); v["agent_platform_vendor"] = json!({"cluster": "c", "authority": "c:443"}); }, "agent_platform_vendor", "never sends"),
            (|v| v["max_request_bytes"] = json!(0), "max_request_bytes", "between 1 and"),
            (|v| v["max_request_bytes"] = json!(1u64 << 30), "max_request_bytes", "between 1 and"),
            (|v| v["prompts"] = json!({"no_such_prompt": {"user": "x"}}), "prompts.no_such_prompt", ""),
            (|v| v["prompts"] = json!({"generate_commit_message": {"colour": 1}}), "prompts.generate_commit_message.colour", "unknown field"),
            (|v| v["max_request_bytes"] = json!(-1), "max_request_bytes", "invalid value"),
        ];
        for (edit, path, needle) in cases {
            refused(edit, path, needle);
        }
    }

    #[test]
    fn self_hosted_refuses_vendored_everywhere_including_default() {
        let mut v = example();
        v["configuration_type"] = json!("self_hosted");
        v["features"]["generate_commit_message"] = json!({"provider": "disabled"});
        v["default"] = json!({"provider": "vendored"});
        let e = parse(&v).unwrap_err();
        assert_eq!(e.path, "default.provider");
        v["default"] = json!({"provider": "aigw"});
        assert_eq!(parse(&v).unwrap().default, Route::Aigw);
    }

    #[test]
    fn opt_ins_and_limits_are_read() {
        let mut v = example();
        v["allow_self_hosted_issue_description"] = json!(true);
        v["features"]["generate_issue_description"] = json!({"provider": "self_hosted", "model": "gpt4o"});
        v["max_request_bytes"] = json!(600_000);
        v["body_wait_ms"] = json!(0);
        let c = parse(&v).unwrap();
        assert_eq!(c.route_for(Feature::GenerateIssueDescription), &Route::SelfHosted { model: Some("gpt4o".into()) });
        assert_eq!((c.max_request_bytes, c.body_wait_ms), (600_000, 0));
    }

    #[test]
    fn agent_platform_settings_are_keys_that_fall_back_to_duo_agent_platform() {
        let mut v = example();
        v["agent_platform"] = json!({"cluster": "duo_workflow", "authority": "dws.internal:50052"});
        v["features"]["duo_agent_platform"] = json!({"provider": "self_hosted"});
        v["features"]["sast_vulnerability_fp_detection"] = json!({"provider": "vendored"});
        v["features"]["secret_vulnerability_fp_detection"] = json!({"provider": "disabled"});
        v["default"] = json!({"provider": "disabled"});
        let c = parse(&v).unwrap();
        assert_eq!(c.route_for(Feature::SastVulnerabilityFpDetection), &Route::Vendored);
        assert_eq!(c.route_for(Feature::SecretVulnerabilityFpDetection), &Route::Disabled);
        // No key of their own: duo_agent_platform's route, not `default`.
        for f in [Feature::DuoAgentPlatformAgenticChat, Feature::SastVulnerabilityResolution, Feature::ResolveDependencyBump] {
            assert_eq!(c.route_for(f), &Route::SelfHosted { model: None }, "{}", f.name());
        }
        v["features"].as_object_mut().unwrap().remove("duo_agent_platform");
        let c = parse(&v).unwrap();
        assert_eq!(c.route_for(Feature::SecurityReview), &Route::Disabled, "then `default`");
        // The classic (HTTP) code review is not an Agent Platform setting.
        assert_eq!(c.route_for(Feature::ReviewMergeRequest), &Route::Aigw);
    }

    #[test]
    fn gitlab_com_takes_disabled_entries_only() {
        let base = json!({"configuration_type": "gitlab_com",
            "vendor": {"cluster": "cloud", "authority": "cloud.gitlab.com", "path_prefix": "/ai"},
            "features": {"duo_chat": {"provider": "disabled"}}});
        let c = parse(&base).unwrap();
        assert_eq!(c.route_for(Feature::DuoChatFixCode), &Route::Disabled);
        assert_eq!(c.route_for(Feature::CodeCompletions), &Route::Vendored);
        let mut v = base.clone();
        v["features"]["duo_chat"] = json!({"provider": "aigw"});
        assert_eq!(parse(&v).unwrap_err().path, "features.duo_chat.provider");
    }
}
