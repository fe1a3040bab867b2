//! The routing decision, pure: from the compiled [`Config`], the request's method and path (and,
//! for self-hosted models, its JSON body) to a [`Decision`]: forward to a [`Target`] or answer
//! locally. No proxy-wasm here; `filter.rs` applies the result.
//!
//! Two steps, because reading the body costs: [`plan`] at request headers decides everything that
//! the path decides (unknown path, disabled, vendored, aigw); self-hosted features return
//! [`Plan::NeedBody`] and [`decide_body`] finishes once the whole body is there (the model is
//! named in the body, and the codec rewrites the body anyway).

use crate::config::{Config, Provider, Route, split_host_port};
use crate::ingress;
use duo_core::catalogue::{self, Endpoint, EndpointKind, Feature, Unclassified};
use duo_core::errors::GitlabError;
use duo_core::handoff::RouteInfo;
use serde_json::Value;

/// Where a forwarded request goes and what changes on its headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub provider: Provider,
    /// Value of `cluster_header` (the Envoy cluster).
    pub cluster: String,
    /// New `:authority`.
    pub authority: String,
    /// New `:path`, when the router itself changes it (the vendor prefix). Self-hosted paths are
    /// set by the codec.
    pub path: Option<String>,
    /// Remove GitLab's `Authorization` (its JWT): true for model platforms, never for
    /// `vendored`/`aigw`, which need it.
    pub strip_authorization: bool,
    /// `x-envoy-upstream-rq-timeout-ms`.
    pub timeout_ms: Option<u64>,
    /// Key of the `models` entry (self-hosted only).
    pub model: Option<String>,
    /// A new model-metadata header for the Agent Platform's call (its models through the model
    /// ingress: `agent_platform.model_ingress`).
    pub metadata: Option<Redacted>,
}

impl Target {
    /// Whether a header the client sent goes from a request forwarded untranslated (names
    /// lower-case, as Envoy hands them over): the client's cluster header (the decision sets its
    /// own) and, where [`Target::strip_authorization`] says so, GitLab's JWT. A translated
    /// request keeps less (`translate::RequestEdit::keeps`).
    pub fn drops_sent_header(&self, name: &[u8], cluster_header: &str) -> bool {
        name == cluster_header.as_bytes() || (self.strip_authorization && name == b"authorization")
    }
}

/// A header value holding a key: never in debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted(pub String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redacted(..)")
    }
}

/// Why a request was answered locally (metric and log label; never content).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Health and readiness, answered by the router itself (not an error).
    Health,
    NotFound,
    UnknownPrompt,
    MethodNotAllowed,
    Disabled,
    /// The feature cannot be served by a self-hosted model (v3/v4 code suggestions, Agent Platform,
    /// issue descriptions without the opt-in).
    NotSelfHostable,
    /// GitLab named no model in the body.
    NoModel,
    /// GitLab named a model that no `models` entry lists.
    UnknownModel,
    /// GitLab named a listed model with an endpoint other than the entry's `authority`.
    EndpointMismatch,
    InvalidBody,
    TooLarge,
    /// Agent Platform: the model-metadata header is not a JSON object or too large.
    InvalidMetadata,
    /// Agent Platform: a GitLab-managed model named in a self-hosted configuration.
    Residency,
    /// Agent Platform: a gRPC call over HTTP/1.1.
    NotHttp2,
    /// `GET /v1/models`, answered by the router itself (not an error).
    ModelList,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::Health => "health",
            Reason::NotFound => "not_found",
            Reason::UnknownPrompt => "unknown_prompt",
            Reason::MethodNotAllowed => "method_not_allowed",
            Reason::Disabled => "disabled",
            Reason::NotSelfHostable => "not_self_hostable",
            Reason::NoModel => "no_model",
            Reason::UnknownModel => "unknown_model",
            Reason::EndpointMismatch => "endpoint_mismatch",
            Reason::InvalidBody => "invalid_body",
            Reason::TooLarge => "too_large",
            Reason::InvalidMetadata => "invalid_metadata",
            Reason::Residency => "residency",
            Reason::NotHttp2 => "not_http2",
            Reason::ModelList => "model_list",
        }
    }

    /// Not a refusal: the router answered what was asked.
    pub fn is_answer(self) -> bool {
        matches!(self, Reason::Health | Reason::ModelList)
    }

    pub const ALL: [Reason; 15] = [
        Reason::Health,
        Reason::NotFound,
        Reason::UnknownPrompt,
        Reason::MethodNotAllowed,
        Reason::Disabled,
        Reason::NotSelfHostable,
        Reason::NoModel,
        Reason::UnknownModel,
        Reason::EndpointMismatch,
        Reason::InvalidBody,
        Reason::TooLarge,
        Reason::InvalidMetadata,
        Reason::Residency,
        Reason::NotHttp2,
        Reason::ModelList,
    ];
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Answer locally with this status and JSON body; nothing reaches an upstream.
    Reply { reply: GitlabError, reason: Reason },
    Forward(Target),
}

/// A decision, the classified endpoint (absent for unknown paths) and the hand-off record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub decision: Decision,
    pub endpoint: Option<Endpoint>,
    pub route: RouteInfo,
}

/// A self-hosted request waiting for its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub endpoint: Endpoint,
    /// The explicit `model` of the route, if any.
    pub model: Option<String>,
    pub route: RouteInfo,
    /// `/v4/code/suggestions`: the feature is in the body, so the route is chosen in
    /// [`decide_body`]; holds `:path` as received (a vendored/aigw target may need it).
    pub feature_in_body: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    Decided(Outcome),
    NeedBody(Pending),
}

fn reply(reply: GitlabError, reason: Reason, endpoint: Option<Endpoint>, mut route: RouteInfo) -> Outcome {
    if !reason.is_answer() {
        route.error = Some(reason.name().to_owned());
    }
    // Model-ingress clients speak OpenAI: every refusal in its shape.
    let reply = match &endpoint {
        Some(e) if matches!(e.kind, EndpointKind::ModelIngress { .. }) && !reason.is_answer() => ingress::from_gitlab(&reply),
        _ => reply,
    };
    Outcome { decision: Decision::Reply { reply, reason }, endpoint, route }
}

fn forward(target: Target, endpoint: Endpoint, mut route: RouteInfo) -> Outcome {
    route.provider = Some(target.provider.name().to_owned());
    route.upstream_cluster = Some(target.cluster.clone());
    Outcome { decision: Decision::Forward(target), endpoint: Some(endpoint), route }
}

/// A local reply for a call no endpoint describes (the Agent Platform's gRPC calls).
pub(crate) fn refuse(e: GitlabError, reason: Reason, route: RouteInfo) -> Outcome {
    reply(e, reason, None, route)
}

/// A gRPC call forwarded unchanged to a Duo Workflow Service.
pub(crate) fn forward_grpc(target: Target, mut route: RouteInfo) -> Outcome {
    route.provider = Some(target.provider.name().to_owned());
    route.upstream_cluster = Some(target.cluster.clone());
    Outcome { decision: Decision::Forward(target), endpoint: None, route }
}

fn vendor_target(config: &Config, endpoint: &Endpoint, raw_path: &str) -> Option<Target> {
    let v = config.vendor.as_ref()?;
    // gRPC method paths cannot take a prefix; everything else goes under it (`/ai/v2/...`).
    let path = if v.path_prefix.is_empty() || endpoint.kind == EndpointKind::AgentPlatformGrpc {
        None
    } else {
        Some(format!("{}{raw_path}", v.path_prefix))
    };
    Some(Target {
        provider: Provider::Vendored,
        cluster: v.cluster.clone(),
        authority: v.authority.clone(),
        path,
        strip_authorization: false,
        timeout_ms: None,
        model: None,
        metadata: None,
    })
}

fn aigw_target(config: &Config) -> Option<Target> {
    let a = config.aigw.as_ref()?;
    Some(Target {
        provider: Provider::Aigw,
        cluster: a.cluster.clone(),
        authority: a.authority.clone(),
        path: None,
        strip_authorization: false,
        timeout_ms: None,
        model: None,
        metadata: None,
    })
}

/// What GitLab calls the feature in its own 403s (`Unauthorized to access code completions`).
fn feature_label(endpoint: &Endpoint) -> String {
    match (endpoint.feature, &endpoint.prompt_id) {
        (Some(f), _) => f.name().to_owned(),
        (None, Some(id)) => id.clone(),
        (None, None) => "this endpoint".to_owned(),
    }
}

/// Step one, at request headers. `raw_path` is `:path` as received (query included).
pub fn plan(config: &Config, method: &str, raw_path: &str) -> Plan {
    // gRPC (the Agent Platform, gRPC health): the adapter calls `agent_platform::plan` itself with
    // the metadata header and the protocol; here (e.g. `./build.sh explain`) without them.
    let call = crate::agent_platform::Call { path: raw_path, metadata: None, feature_setting: None, http2: true };
    if let Some(outcome) = crate::agent_platform::plan(config, &call) {
        return Plan::Decided(outcome);
    }
    let mut route = RouteInfo { configuration_type: Some(config.configuration_type.name().to_owned()), ..Default::default() };
    let endpoint = match catalogue::classify(method, raw_path) {
        Ok(e) => e,
        Err(Unclassified::NotFound) => return Plan::Decided(reply(GitlabError::not_found(), Reason::NotFound, None, route)),
        Err(Unclassified::UnknownPrompt(id)) => {
            let e = GitlabError::detail(404, &format!("Prompt '{}' not found", clip(&id)));
            return Plan::Decided(reply(e, Reason::UnknownPrompt, None, route));
        }
        Err(Unclassified::MethodNotAllowed) => {
            let e = GitlabError::detail(405, "Method Not Allowed");
            let e = if ingress::is_ingress_path(raw_path) { ingress::from_gitlab(&e) } else { e };
            return Plan::Decided(reply(e, Reason::MethodNotAllowed, None, route));
        }
    };
    route.feature = endpoint.feature.map(|f| f.name().to_owned());

    if endpoint.kind == (EndpointKind::CodeSuggestionsUnified { sse: true }) {
        // Completion or generation: `prompt_components[0].type` says (GitLab 19.x sends every
        // code generation here, self-hosted included).
        route.feature = None;
        return Plan::NeedBody(Pending { endpoint, model: None, route, feature_in_body: Some(raw_path.to_owned()) });
    }

    match endpoint.kind {
        EndpointKind::Public => {
            let path = raw_path.split(['?', '#']).next().unwrap_or(raw_path).trim_end_matches('/');
            if path != "/v1/models/definitions" {
                let ok = GitlabError { status: 200, body: r#"{"status":"ok"}"#.to_owned() };
                return Plan::Decided(reply(ok, Reason::Health, Some(endpoint), route));
            }
            // Model definitions describe GitLab-managed models: ask whoever serves those.
            let target = aigw_target(config).or_else(|| vendor_target(config, &endpoint, raw_path));
            return Plan::Decided(match target {
                Some(t) => forward(t, endpoint, route),
                None => reply(GitlabError::not_found(), Reason::NotFound, Some(endpoint), route),
            });
        }
        EndpointKind::ModelIngress { list } => {
            route.feature = Some(MODEL_INGRESS.to_owned());
            if !config.model_ingress.as_ref().is_some_and(|i| i.enabled) {
                let e = ingress::error(404, "invalid_request_error", None, Some("not_found"), "the model ingress is not enabled on this gateway");
                return Plan::Decided(reply(e, Reason::NotFound, Some(endpoint), route));
            }
            if list {
                // `now` only dates the entries; the list is the same whatever the clock says.
                return Plan::Decided(reply(ingress::model_list(config, 0), Reason::ModelList, Some(endpoint), route));
            }
            route.provider = Some(Provider::SelfHosted.name().to_owned());
            return Plan::NeedBody(Pending { endpoint, model: None, route, feature_in_body: None });
        }
        // duo_auth answers it when `user_tokens` is configured; otherwise it does not exist.
        EndpointKind::UserAccessToken => {
            return Plan::Decided(reply(GitlabError::not_found(), Reason::NotFound, Some(endpoint), route));
        }
        _ => {}
    }
    route_endpoint(config, endpoint, route, raw_path)
}

/// The feature's route: a local reply, a forward, or (self-hosted) the body is needed.
fn route_endpoint(config: &Config, endpoint: Endpoint, mut route: RouteInfo, raw_path: &str) -> Plan {
    let effective = match endpoint.feature {
        Some(f) => config.route_for(f).clone(),
        // `model_configuration/check`: the admin tests the self-hosted model GitLab names.
        None if config.configuration_type == crate::config::ConfigurationType::GitlabCom => Route::Vendored,
        None => Route::SelfHosted { model: None },
    };
    route.provider = Some(effective.provider().name().to_owned());

    match effective {
        Route::Disabled => {
            let e = GitlabError::forbidden_feature(&feature_label(&endpoint));
            Plan::Decided(reply(e, Reason::Disabled, Some(endpoint), route))
        }
        Route::Vendored => Plan::Decided(match vendor_target(config, &endpoint, raw_path) {
            Some(t) => forward(t, endpoint, route),
            // Unreachable with a validated config; fail closed anyway.
            None => reply(GitlabError::forbidden_feature(&feature_label(&endpoint)), Reason::Disabled, Some(endpoint), route),
        }),
        Route::Aigw => Plan::Decided(match aigw_target(config) {
            Some(t) => forward(t, endpoint, route),
            None => reply(GitlabError::forbidden_feature(&feature_label(&endpoint)), Reason::Disabled, Some(endpoint), route),
        }),
        Route::SelfHosted { model } => {
            let why = match (endpoint.kind, endpoint.feature) {
                (EndpointKind::CodeSuggestionsUnified { sse: false }, _) => Some("v3 code suggestions serve GitLab-managed models only"),
                (_, Some(Feature::GenerateIssueDescription)) if !config.allow_self_hosted_issue_description => {
                    Some("GitLab does not offer it on self-hosted models")
                }
                _ => None,
            };
            if let Some(why) = why {
                let e = GitlabError::detail(403, &format!("Unauthorized to access {}: {why}", feature_label(&endpoint)));
                return Plan::Decided(reply(e, Reason::NotSelfHostable, Some(endpoint), route));
            }
            Plan::NeedBody(Pending { endpoint, model, route, feature_in_body: None })
        }
    }
}

/// Parses the buffered body of a self-hosted request: a JSON object or 422, FastAPI's shape.
pub fn parse_body(bytes: &[u8]) -> Result<Value, GitlabError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) if v.is_object() => Ok(v),
        _ => {
            let detail = serde_json::json!({"detail": [{"type": "json_invalid", "loc": ["body"], "msg": "JSON decode error"}]});
            Err(GitlabError { status: 422, body: detail.to_string() })
        }
    }
}

/// A body that cannot be decided from: too large or not JSON.
pub fn refuse_body(pending: Pending, reply_: GitlabError, reason: Reason) -> Outcome {
    reply(reply_, reason, Some(pending.endpoint), pending.route)
}

/// The `feature` of model-ingress calls in logs and metrics.
pub const MODEL_INGRESS: &str = "model_ingress";

/// `POST /v1/chat/completions`: the model the client names must be one the ingress serves.
fn decide_ingress(config: &Config, pending: Pending, body: &Value) -> Outcome {
    let Pending { endpoint, mut route, .. } = pending;
    let named = body.get("model").and_then(Value::as_str).unwrap_or_default();
    route.model_identifier = Some(clip(named));
    route.stream = Some(body.get("stream").and_then(Value::as_bool).unwrap_or(false));
    let Some(key) = ingress::resolve(config, named) else {
        return reply(ingress::unknown_model(named), Reason::UnknownModel, Some(endpoint), route);
    };
    let Some(m) = config.models.get(key) else {
        return reply(ingress::unknown_model(named), Reason::UnknownModel, Some(endpoint), route);
    };
    let target = model_target(key.to_owned(), m, &mut route);
    forward(target, endpoint, route)
}

/// The target of a `models` entry (GitLab's JWT removed: a model platform never needs it), and
/// the entry in the hand-off record.
fn model_target(key: String, m: &crate::model::ModelConfig, route: &mut RouteInfo) -> Target {
    route.model_name = Some(key.clone());
    route.model_family = Some(m.family.name().to_owned());
    route.platform = Some(m.platform.name().to_owned());
    Target {
        provider: Provider::SelfHosted,
        cluster: m.cluster.clone(),
        authority: m.authority.clone(),
        path: None,
        strip_authorization: true,
        timeout_ms: m.timeout_ms,
        model: Some(key),
        metadata: None,
    }
}

/// 413 for a body above `max_request_bytes`.
pub fn too_large(config: &Config) -> GitlabError {
    GitlabError::request_too_large(config.max_request_bytes)
}

/// GitLab's name for the model and the endpoint it would call, as sent in the body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GitlabModel<'a> {
    pub identifier: Option<&'a str>,
    pub endpoint: Option<&'a str>,
}

fn non_empty(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// Where each call carries the model (docs/fidelity.md):
/// code suggestions flat `model_identifier`/`model_endpoint`; legacy chat in
/// `prompt_components[0].payload`; everything else `model_metadata`. Any request may also carry
/// `model_metadata` (the Python gateway reads it everywhere), used when the specific place is empty.
pub fn gitlab_model(kind: EndpointKind, body: &Value) -> GitlabModel<'_> {
    fn flat(v: &Value) -> GitlabModel<'_> {
        GitlabModel { identifier: non_empty(v.get("model_identifier")), endpoint: non_empty(v.get("model_endpoint")) }
    }
    let specific = match kind {
        EndpointKind::CodeCompletions { .. } | EndpointKind::CodeGenerations => flat(body),
        EndpointKind::ChatAgentV1 | EndpointKind::ChatInvokable => {
            body.pointer("/prompt_components/0/payload").map(flat).unwrap_or_default()
        }
        _ => GitlabModel::default(),
    };
    if specific.identifier.is_some() {
        return specific;
    }
    let meta = body.get("model_metadata").unwrap_or(&Value::Null);
    GitlabModel { identifier: non_empty(meta.get("identifier")), endpoint: non_empty(meta.get("endpoint")) }
}

/// Does a GitLab endpoint URL (`http://vllm.internal:8000/v1`) point at `authority`
/// (`vllm.internal:8000`)? Hosts compare case-insensitively; a missing port is the scheme's
/// default (80/443) on either side.
pub fn endpoint_matches(endpoint_url: &str, authority: &str) -> bool {
    let (scheme, rest) = match endpoint_url.split_once("://") {
        Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
        None => (None, endpoint_url),
    };
    let ep_auth = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let ep_auth = ep_auth.rsplit_once('@').map_or(ep_auth, |(_, h)| h);
    let default_port = match scheme.as_deref() {
        Some("http") => Some(80u16),
        Some("https") => Some(443u16),
        _ => None,
    };
    let port_of = |p: Option<&str>| -> Result<Option<u16>, ()> {
        match p {
            None => Ok(default_port),
            Some(p) => p.parse::<u16>().map(Some).map_err(|_| ()),
        }
    };
    let (eh, ep) = split_host_port(ep_auth);
    let (ah, ap) = split_host_port(authority);
    match (port_of(ep), port_of(ap)) {
        (Ok(ep), Ok(ap)) => !eh.is_empty() && eh.eq_ignore_ascii_case(ah) && ep == ap,
        _ => false,
    }
}

/// Identifiers and addresses come from GitLab's admin; keep error texts bounded.
fn clip(s: &str) -> String {
    if s.chars().count() <= 255 { s.to_owned() } else { s.chars().take(255).collect::<String>() + "…" }
}

/// Step two, with the whole body parsed: picks the model and refuses anything the admin did not list.
pub fn decide_body(config: &Config, pending: Pending, body: &Value) -> Outcome {
    if matches!(pending.endpoint.kind, EndpointKind::ModelIngress { .. }) {
        return decide_ingress(config, pending, body);
    }
    let Pending { mut endpoint, mut model, mut route, feature_in_body } = pending;
    if let Some(raw_path) = feature_in_body {
        let Some((feature, up, component)) = catalogue::classify_suggestions(body) else {
            let e = crate::codec::inbound::validation_error(
                &["body", "prompt_components", "0", "type"],
                "Input tag does not match any of the expected tags: 'code_editor_completion', 'code_editor_generation', 'code_context'",
            );
            return reply(e, Reason::InvalidBody, Some(endpoint), route);
        };
        endpoint.feature = Some(feature);
        endpoint.unit_primitive = Some(up);
        route.feature = Some(feature.name().to_owned());
        route.code_suggestion_type = Some(component.to_owned());
        match route_endpoint(config, endpoint, route, &raw_path) {
            Plan::Decided(outcome) => return outcome,
            Plan::NeedBody(p) => (endpoint, model, route) = (p.endpoint, p.model, p.route),
        }
    }
    let named = gitlab_model(endpoint.kind, body);
    route.stream = Some(match endpoint.kind {
        EndpointKind::ChatAgentV2 => true,
        EndpointKind::CodeSuggestionsUnified { .. } => {
            body.pointer("/prompt_components/0/payload/stream").and_then(Value::as_bool).unwrap_or(false)
        }
        _ => body.get("stream").and_then(Value::as_bool).unwrap_or(false),
    });
    route.model_identifier = named.identifier.map(clip);

    let name = match model {
        Some(name) => name,
        None => {
            let Some(id) = named.identifier else {
                let e = GitlabError::detail(
                    403,
                    &format!("Unauthorized to access {}: the request names no self-hosted model identifier", feature_label(&endpoint)),
                );
                return reply(e, Reason::NoModel, Some(endpoint), route);
            };
            let Some(name) = config.identifiers.get(id) else {
                let e = GitlabError::detail(403, &format!("Unauthorized to access model '{}': not configured in this AI gateway", clip(id)));
                return reply(e, Reason::UnknownModel, Some(endpoint), route);
            };
            let Some(m) = config.models.get(name) else {
                return reply(GitlabError::detail(403, "Unauthorized to access this model"), Reason::UnknownModel, Some(endpoint), route);
            };
            if let Some(url) = named.endpoint
                && !endpoint_matches(url, &m.authority)
            {
                let e = GitlabError::detail(
                    403,
                    &format!("Unauthorized to access model '{}' at '{}': this AI gateway serves it elsewhere", clip(id), clip(url)),
                );
                return reply(e, Reason::EndpointMismatch, Some(endpoint), route);
            }
            name.clone()
        }
    };
    let Some(m) = config.models.get(&name) else {
        // Unreachable with a validated config.
        return reply(GitlabError::detail(403, "Unauthorized to access this model"), Reason::UnknownModel, Some(endpoint), route);
    };
    if route.model_identifier.is_none() {
        route.model_identifier = m.identifiers.first().cloned();
    }
    let target = model_target(name, m, &mut route);
    forward(target, endpoint, route)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use serde_json::json;

    fn models() -> Value {
        json!({
          "codestral": { "platform": "vllm", "cluster": "vllm_codestral", "authority": "vllm.internal:8000",
            "base_path": "/v1", "model": "Codestral-22B-v0.1", "family": "codestral", "timeout_ms": 60000,
            "identifiers": ["custom_openai/Codestral-22B-v0.1"] },
          "claude": { "platform": "bedrock", "cluster": "bedrock_us_east_1",
            "authority": "bedrock-runtime.us-east-1.amazonaws.com",
            "model": "us.anthropic.claude-3-5-sonnet-20240620-v1:0", "family": "claude_3",
            "identifiers": ["bedrock/us.anthropic.claude-3-5-sonnet-20240620-v1:0"] },
          "gpt4o": { "platform": "azure_openai", "cluster": "azure_eastus", "authority": "myres.openai.azure.com",
            "model": "gpt-4o-deploy", "family": "gpt", "api_version": "2024-10-21",
            "identifiers": ["azure/gpt-4o-deploy"] }
        })
    }

    fn config(ct: &str, features: Value, default: Value, extra: Value) -> Config {
        let mut v = json!({
            "configuration_type": ct, "models": models(), "features": features, "default": default,
            "vendor": { "cluster": "cloud_gitlab", "authority": "cloud.gitlab.com", "path_prefix": "/ai" },
            "aigw": { "cluster": "python_aigw", "authority": "aigw.internal:5052" }
        });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        // The Duo Workflow Services of the Agent Platform (GitLab's only outside self_hosted).
        v["agent_platform"] = json!({"cluster": "duo_workflow", "authority": "dws.internal:50052"});
        if ct != "self_hosted" {
            v["agent_platform_vendor"] = json!({"cluster": "duo_workflow_cloud", "authority": "duo-workflow-svc.runway.gitlab.net"});
        }
        Config::parse(v.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The call GitLab makes for each feature (the README's feature table).
    fn path_of(f: Feature) -> &'static str {
        match f {
            Feature::CodeCompletions => "/v2/code/completions",
            Feature::CodeGenerations => "/v2/code/generations",
            Feature::DuoChat => "/v2/chat/agent",
            Feature::DuoChatExplainCode => "/v1/prompts/chat/explain_code",
            Feature::DuoChatWriteTests => "/v1/prompts/chat/write_tests",
            Feature::DuoChatRefactorCode => "/v1/prompts/chat/refactor_code",
            Feature::DuoChatFixCode => "/v1/prompts/chat/fix_code",
            Feature::DuoChatTroubleshootJob => "/v1/prompts/chat/troubleshoot_job",
            Feature::DuoChatExplainVulnerability => "/v1/prompts/chat/explain_vulnerability",
            Feature::DuoChatSummarizeComments => "/v1/prompts/chat/summarize_comments",
            Feature::GenerateCommitMessage => "/v1/prompts/generate_commit_message",
            Feature::SummarizeNewMergeRequest => "/v1/prompts/summarize_new_merge_request",
            Feature::ReviewMergeRequest => "/v1/prompts/review_merge_request",
            Feature::SummarizeReview => "/v1/prompts/summarize_review",
            Feature::ResolveVulnerability => "/v1/prompts/resolve_vulnerability",
            Feature::GlabAskGitCommand => "/v1/prompts/glab_ask_git_command",
            Feature::GenerateIssueDescription => "/v1/prompts/generate_description",
            // Only the metadata names the other Agent Platform settings (agent_platform.rs tests).
            f if f.agent_platform() => "/DuoWorkflow/ExecuteWorkflow",
            _ => unreachable!("every feature has a path"),
        }
    }

    /// Every feature the path alone decides (the Agent Platform's flow and chat settings need
    /// GitLab's metadata; agent_platform.rs tests them).
    fn by_path() -> impl Iterator<Item = Feature> {
        Feature::ALL.into_iter().filter(|f| f.agent_platform_parent().is_none())
    }

    /// A body in which GitLab names `identifier` (and `endpoint`) where this feature's call puts it.
    fn body_naming(f: Feature, identifier: &str, endpoint: Option<&str>) -> Value {
        match f {
            Feature::CodeCompletions | Feature::CodeGenerations => json!({
                "current_file": {"file_name": "a.py", "content_above_cursor": "def f(", "content_below_cursor": ""},
                "model_provider": "litellm", "model_name": "codestral", "model_identifier": identifier,
                "model_endpoint": endpoint, "model_api_key": "sk-secret", "stream": true, "prompt_version": 2
            }),
            _ => json!({
                "inputs": {"diff": "x"}, "stream": false,
                "model_metadata": {"provider": "openai", "name": "mistral", "identifier": identifier,
                                    "endpoint": endpoint, "api_key": "sk-secret"}
            }),
        }
    }

    fn forwarded(o: &Outcome) -> &Target {
        match &o.decision {
            Decision::Forward(t) => t,
            d => panic!("expected a forward, got {d:?}"),
        }
    }

    fn replied(o: &Outcome) -> (&GitlabError, Reason) {
        match &o.decision {
            Decision::Reply { reply, reason } => (reply, *reason),
            d => panic!("expected a local reply, got {d:?}"),
        }
    }

    fn decided(p: Plan) -> Outcome {
        match p {
            Plan::Decided(o) => o,
            Plan::NeedBody(p) => panic!("expected a decision at headers, body needed for {:?}", p.endpoint),
        }
    }

    fn pending(p: Plan) -> Pending {
        match p {
            Plan::NeedBody(p) => p,
            Plan::Decided(o) => panic!("expected to need the body, got {o:?}"),
        }
    }

    /// Every feature × every provider value, as an explicit `features` entry in a hybrid setup.
    #[test]
    fn every_feature_times_every_provider() {
        for f in by_path() {
            for p in Provider::ALL {
                let feature_entry = |model: Option<&str>| {
                    let mut e = json!({ "provider": p.name() });
                    if let Some(m) = model {
                        e["model"] = json!(m);
                    }
                    json!({ f.name(): e })
                };
                let ctx = format!("{} × {}", f.name(), p.name());
                let path = path_of(f);
                let opt_in = json!({"allow_self_hosted_issue_description": true});
                match p {
                    Provider::Disabled => {
                        let c = config("hybrid", feature_entry(None), json!({"provider": "aigw"}), json!({}));
                        let o = decided(plan(&c, "POST", path));
                        let (r, why) = replied(&o);
                        assert_eq!((r.status, why), (403, Reason::Disabled), "{ctx}");
                        assert_eq!(r.body, json!({"detail": format!("Unauthorized to access {}", f.name())}).to_string(), "{ctx}");
                        assert_eq!(o.route.provider.as_deref(), Some("disabled"), "{ctx}");
                        assert_eq!(o.route.feature.as_deref(), Some(f.name()), "{ctx}");
                        assert_eq!(o.route.upstream_cluster, None, "{ctx}");
                    }
                    Provider::Vendored => {
                        let c = config("hybrid", feature_entry(None), json!({"provider": "disabled"}), json!({}));
                        let o = decided(plan(&c, "POST", &format!("{path}?x=1")));
                        let t = forwarded(&o);
                        // The Agent Platform goes to GitLab's Duo Workflow Service, path unchanged.
                        let (cluster, authority, want) = if f == Feature::DuoAgentPlatform {
                            ("duo_workflow_cloud", "duo-workflow-svc.runway.gitlab.net", None)
                        } else {
                            ("cloud_gitlab", "cloud.gitlab.com", Some(format!("/ai{path}?x=1")))
                        };
                        assert_eq!((t.cluster.as_str(), t.authority.as_str()), (cluster, authority), "{ctx}");
                        assert_eq!(t.path, want, "{ctx}");
                        assert!(!t.strip_authorization, "{ctx}: GitLab's token must reach the vendor");
                        assert_eq!(o.route.upstream_cluster.as_deref(), Some(cluster), "{ctx}");
                        assert_eq!(o.route.provider.as_deref(), Some("vendored"), "{ctx}");
                    }
                    Provider::Aigw => {
                        let c = config("self_hosted", feature_entry(None), json!({"provider": "disabled"}), json!({}));
                        let o = decided(plan(&c, "POST", path));
                        let t = forwarded(&o);
                        assert_eq!((t.cluster.as_str(), t.authority.as_str(), &t.path), ("python_aigw", "aigw.internal:5052", &None), "{ctx}");
                        assert!(!t.strip_authorization, "{ctx}");
                        assert_eq!(o.route.provider.as_deref(), Some("aigw"), "{ctx}");
                    }
                    Provider::SelfHosted if f == Feature::DuoAgentPlatform => {
                        // Your Duo Workflow Service, which needs its `agent_platform` block.
                        let e = Config::parse(json!({"configuration_type": "hybrid", "models": models(), "features": feature_entry(None)}).to_string().as_bytes());
                        assert_eq!(e.unwrap_err().path, "features.duo_agent_platform.provider", "{ctx}");
                        let c = config("self_hosted", feature_entry(None), json!({"provider": "disabled"}), json!({}));
                        let t = forwarded(&decided(plan(&c, "POST", path))).clone();
                        assert_eq!((t.cluster.as_str(), t.path, t.strip_authorization), ("duo_workflow", None, false), "{ctx}");
                    }
                    Provider::SelfHosted => {
                        let extra = if f == Feature::GenerateIssueDescription { opt_in } else { json!({}) };
                        // Explicit model: that model, whatever GitLab names.
                        let c = config("self_hosted", feature_entry(Some("gpt4o")), json!({"provider": "disabled"}), extra.clone());
                        let pend = pending(plan(&c, "POST", path));
                        assert_eq!(pend.model.as_deref(), Some("gpt4o"), "{ctx}");
                        let o = decide_body(&c, pend, &body_naming(f, "custom_openai/Codestral-22B-v0.1", None));
                        let t = forwarded(&o);
                        assert_eq!((t.cluster.as_str(), t.authority.as_str()), ("azure_eastus", "myres.openai.azure.com"), "{ctx}");
                        assert!(t.strip_authorization, "{ctx}: GitLab's JWT must not reach a model platform");
                        assert_eq!(t.model.as_deref(), Some("gpt4o"), "{ctx}");
                        assert_eq!(o.route.model_name.as_deref(), Some("gpt4o"), "{ctx}");
                        assert_eq!(o.route.platform.as_deref(), Some("azure_openai"), "{ctx}");
                        assert_eq!(o.route.model_family.as_deref(), Some("gpt"), "{ctx}");

                        // No model: the one GitLab names, only at its configured address.
                        let c = config("self_hosted", feature_entry(None), json!({"provider": "disabled"}), extra);
                        let named = body_naming(f, "custom_openai/Codestral-22B-v0.1", Some("http://vllm.internal:8000/v1"));
                        let o = decide_body(&c, pending(plan(&c, "POST", path)), &named);
                        let t = forwarded(&o);
                        assert_eq!((t.cluster.as_str(), t.timeout_ms), ("vllm_codestral", Some(60000)), "{ctx}");
                        assert_eq!(o.route.model_identifier.as_deref(), Some("custom_openai/Codestral-22B-v0.1"), "{ctx}");
                        assert_eq!(o.route.upstream_cluster.as_deref(), Some("vllm_codestral"), "{ctx}");

                        let unknown = body_naming(f, "custom_openai/evil", Some("http://vllm.internal:8000/v1"));
                        let o = decide_body(&c, pending(plan(&c, "POST", path)), &unknown);
                        let (r, why) = replied(&o);
                        assert_eq!((r.status, why), (403, Reason::UnknownModel), "{ctx}");
                        assert!(r.body.contains("custom_openai/evil"), "{ctx}: {}", r.body);
                        assert!(!r.body.contains("sk-secret"), "{ctx}");

                        let moved = body_naming(f, "custom_openai/Codestral-22B-v0.1", Some("http://attacker.example:8000/v1"));
                        let o = decide_body(&c, pending(plan(&c, "POST", path)), &moved);
                        let (r, why) = replied(&o);
                        assert_eq!((r.status, why), (403, Reason::EndpointMismatch), "{ctx}");

                        let o = decide_body(&c, pending(plan(&c, "POST", path)), &json!({"inputs": {}}));
                        let (r, why) = replied(&o);
                        assert_eq!((r.status, why), (403, Reason::NoModel), "{ctx}");
                    }
                }
            }
        }
    }

    #[test]
    fn unlisted_features_follow_duo_chat_then_default() {
        let c = config("hybrid", json!({"duo_chat": {"provider": "aigw"}}), json!({"provider": "vendored"}), json!({}));
        for f in by_path() {
            let p = plan(&c, "POST", path_of(f));
            let want = match f {
                Feature::DuoAgentPlatform => "duo_workflow_cloud",
                _ if f == Feature::DuoChat || f.chat_parent().is_some() => "python_aigw",
                _ => "cloud_gitlab",
            };
            assert_eq!(forwarded(&decided(p)).cluster, want, "{}", f.name());
        }
    }

    #[test]
    fn gitlab_com_sends_everything_but_disabled_to_the_vendor() {
        let c = Config::parse(
            json!({"configuration_type": "gitlab_com",
                   "vendor": {"cluster": "cloud", "authority": "cloud.gitlab.com", "path_prefix": "/ai"},
                   "agent_platform_vendor": {"cluster": "dws_cloud", "authority": "duo-workflow-svc.runway.gitlab.net"},
                   "features": {"summarize_review": {"provider": "disabled"}}})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        for f in by_path() {
            let o = decided(plan(&c, "POST", path_of(f)));
            if f == Feature::SummarizeReview {
                assert_eq!(replied(&o).1, Reason::Disabled);
            } else {
                let want = if f == Feature::DuoAgentPlatform { "dws_cloud" } else { "cloud" };
                assert_eq!(forwarded(&o).cluster, want, "{}", f.name());
            }
        }
        let o = decided(plan(&c, "POST", "/v1/prompts/model_configuration%2Fcheck"));
        assert_eq!(forwarded(&o).path.as_deref(), Some("/ai/v1/prompts/model_configuration%2Fcheck"));
    }

    #[test]
    fn default_self_hosted_never_serves_what_gitlab_does_not_self_host() {
        let c = config("self_hosted", json!({}), json!({"provider": "self_hosted"}), json!({}));
        for path in ["/v1/prompts/generate_description", "/v3/code/completions"] {
            let o = decided(plan(&c, "POST", path));
            let (r, why) = replied(&o);
            assert_eq!((r.status, why), (403, Reason::NotSelfHostable), "{path}");
        }
        // The Agent Platform goes to your Duo Workflow Service (agent_platform.rs) at headers,
        // never a body wait.
        let o = decided(plan(&c, "POST", "/DuoWorkflow/ExecuteWorkflow"));
        assert_eq!(forwarded(&o).cluster, "duo_workflow");
        let c = config("self_hosted", json!({}), json!({"provider": "self_hosted"}), json!({"allow_self_hosted_issue_description": true}));
        pending(plan(&c, "POST", "/v1/prompts/generate_description"));
    }

    /// GitLab 19.x posts code generation (and may post completions) to `/v4/code/suggestions`:
    /// the first prompt component picks the feature, and with it the route.
    #[test]
    fn v4_suggestions_are_routed_by_their_payload() {
        let body = |t: &str| json!({"prompt_components": [{"type": t, "payload": {"file_name": "a.py", "stream": true}}],
            "model_metadata": {"provider": "api", "name": "claude_3", "identifier": "bedrock/us.anthropic.claude-3-5-sonnet-20240620-v1:0"}});
        let c = config("hybrid", json!({"code_generations": {"provider": "self_hosted", "model": "claude"},
            "code_completions": {"provider": "vendored"}}), json!({"provider": "disabled"}), json!({}));
        let p = pending(plan(&c, "POST", "/v4/code/suggestions"));
        assert_eq!(p.route.feature, None, "unknown until the body is read");
        let o = decide_body(&c, p, &body("code_editor_generation"));
        let t = forwarded(&o);
        assert_eq!((t.cluster.as_str(), t.provider), ("bedrock_us_east_1", Provider::SelfHosted));
        assert_eq!(o.route.feature.as_deref(), Some("code_generations"));
        assert_eq!(o.route.code_suggestion_type.as_deref(), Some("code_editor_generation"));
        assert_eq!(o.route.stream, Some(true));
        let e = o.endpoint.unwrap_or_else(|| panic!("no endpoint"));
        assert_eq!((e.feature, e.unit_primitive), (Some(Feature::CodeGenerations), Some("generate_code")));
        // A completion on the same path follows code_completions: vendored, path kept under /ai.
        let o = decide_body(&c, pending(plan(&c, "POST", "/v4/code/suggestions")), &body("code_editor_completion"));
        assert_eq!(forwarded(&o).path.as_deref(), Some("/ai/v4/code/suggestions"));
        assert_eq!(o.route.feature.as_deref(), Some("code_completions"));
        // Disabled generations: GitLab's 403; an unknown component: 422; nothing reaches a model.
        let c = config("self_hosted", json!({"code_generations": {"provider": "disabled"}}), json!({"provider": "self_hosted"}), json!({}));
        let o = decide_body(&c, pending(plan(&c, "POST", "/v4/code/suggestions")), &body("code_editor_generation"));
        assert_eq!(replied(&o).1, Reason::Disabled);
        let o = decide_body(&c, pending(plan(&c, "POST", "/v4/code/suggestions")), &body("code_context"));
        assert_eq!((replied(&o).0.status, replied(&o).1), (422, Reason::InvalidBody));
    }

    #[test]
    fn unknown_paths_prompts_and_methods_reach_nothing() {
        let c = config("hybrid", json!({}), json!({"provider": "vendored"}), json!({}));
        let cases: &[(&str, &str, u32, &str, Reason)] = &[
            ("POST", "/v1/nothing", 404, r#"{"detail":"Not Found"}"#, Reason::NotFound),
            ("POST", "/v1/prompts/chat/nope", 404, r#"{"detail":"Prompt 'chat/nope' not found"}"#, Reason::UnknownPrompt),
            ("POST", "/v1/prompts/a%2Fb", 404, r#"{"detail":"Prompt 'a/b' not found"}"#, Reason::UnknownPrompt),
            ("POST", "/v1/chat/delete_everything", 404, r#"{"detail":"Not Found"}"#, Reason::NotFound),
            // GitLab's code-embedding endpoints are not served (docs/fidelity.md, item 9).
            ("POST", "/v1/embeddings/code_embeddings", 404, r#"{"detail":"Not Found"}"#, Reason::NotFound),
            ("POST", "/v1/embeddings/code_embeddings/index", 404, r#"{"detail":"Not Found"}"#, Reason::NotFound),
            ("POST", "/v1/embeddings/code_embeddings/search", 404, r#"{"detail":"Not Found"}"#, Reason::NotFound),
            ("GET", "/v2/code/completions", 405, r#"{"detail":"Method Not Allowed"}"#, Reason::MethodNotAllowed),
            ("POST", "/v1/code/user_access_token", 404, r#"{"detail":"Not Found"}"#, Reason::NotFound),
            ("GET", "/monitoring/healthz", 200, r#"{"status":"ok"}"#, Reason::Health),
            ("GET", "/monitoring/ready", 200, r#"{"status":"ok"}"#, Reason::Health),
        ];
        for (method, path, status, body, reason) in cases {
            let o = decided(plan(&c, method, path));
            let (r, why) = replied(&o);
            assert_eq!((r.status, r.body.as_str(), why), (*status, *body, *reason), "{method} {path}");
            assert_eq!(o.route.error.is_some(), *reason != Reason::Health, "{path}");
        }
        let o = decided(plan(&c, "GET", "/v1/models/definitions"));
        assert_eq!(forwarded(&o).cluster, "python_aigw");
    }

    #[test]
    fn legacy_chat_and_check_read_their_own_model_fields() {
        let c = config("self_hosted", json!({}), json!({"provider": "self_hosted"}), json!({}));
        let legacy = json!({"prompt_components": [{"type": "prompt", "payload": {
            "content": "hi", "provider": "litellm", "model": "mistral",
            "model_endpoint": "https://myres.openai.azure.com/", "model_identifier": "azure/gpt-4o-deploy"}}], "stream": true});
        for path in ["/v1/chat/agent", "/v1/chat/explain_code"] {
            let o = decide_body(&c, pending(plan(&c, "POST", path)), &legacy);
            assert_eq!(forwarded(&o).cluster, "azure_eastus", "{path}");
            assert_eq!(o.route.stream, Some(true));
        }
        let check = json!({"stream": false, "inputs": {}, "model_metadata": {"provider": "openai", "name": "claude_3",
            "endpoint": "", "identifier": "bedrock/us.anthropic.claude-3-5-sonnet-20240620-v1:0"}});
        let p = pending(plan(&c, "POST", "/v1/prompts/model_configuration%2Fcheck"));
        assert_eq!(p.endpoint.feature, None);
        let o = decide_body(&c, p, &check);
        assert_eq!(forwarded(&o).cluster, "bedrock_us_east_1");
        assert_eq!(o.route.feature, None);
        assert_eq!(o.route.stream, Some(false));
        let o = decide_body(&c, pending(plan(&c, "POST", "/v2/chat/agent")), &check);
        assert_eq!(o.route.stream, Some(true), "chat agent answers are always NDJSON streams");
    }

    #[test]
    fn code_suggestions_ignore_model_metadata_when_flat_fields_name_the_model() {
        let body = json!({"model_identifier": "azure/gpt-4o-deploy", "model_metadata": {"identifier": "x"}});
        assert_eq!(gitlab_model(EndpointKind::CodeGenerations, &body).identifier, Some("azure/gpt-4o-deploy"));
        assert_eq!(gitlab_model(EndpointKind::PromptV1, &body).identifier, Some("x"));
        let only_meta = json!({"model_metadata": {"identifier": "y", "endpoint": "http://h:1"}});
        assert_eq!(gitlab_model(EndpointKind::CodeCompletions { direct: false }, &only_meta), GitlabModel { identifier: Some("y"), endpoint: Some("http://h:1") });
        assert_eq!(gitlab_model(EndpointKind::PromptV2, &json!({"model_metadata": {"identifier": 3}})), GitlabModel::default());
    }

    #[test]
    fn endpoints_compare_by_host_and_effective_port() {
        let cases: &[(&str, &str, bool)] = &[
            ("http://vllm.internal:8000/v1", "vllm.internal:8000", true),
            ("http://VLLM.internal:8000", "vllm.internal:8000", true),
            ("http://vllm.internal:8001/v1", "vllm.internal:8000", false),
            ("http://vllm.internal/v1", "vllm.internal:8000", false),
            ("https://myres.openai.azure.com/", "myres.openai.azure.com", true),
            ("https://myres.openai.azure.com:443", "myres.openai.azure.com", true),
            ("https://myres.openai.azure.com", "myres.openai.azure.com:443", true),
            ("http://myres.openai.azure.com", "myres.openai.azure.com:443", false),
            ("http://user:pw@vllm.internal:8000/v1", "vllm.internal:8000", true),
            ("http://vllm.internal.evil.com:8000", "vllm.internal:8000", false),
            ("http://[::1]:8000/v1", "[::1]:8000", true),
            ("vllm.internal:8000/v1", "vllm.internal:8000", true),
            ("http://vllm.internal:x/v1", "vllm.internal:8000", false),
            ("http://:8000/v1", ":8000", false),
        ];
        for (url, authority, want) in cases {
            assert_eq!(endpoint_matches(url, authority), *want, "{url} vs {authority}");
        }
    }

    #[test]
    fn bodies_that_are_not_json_objects_get_422() {
        for bad in [&b""[..], b"[1]", b"{", b"\"s\""] {
            let e = parse_body(bad).unwrap_err();
            assert_eq!(e.status, 422);
            assert!(e.body.contains("JSON decode error"));
        }
        assert!(parse_body(br#"{"a":1}"#).is_ok());
    }

    #[test]
    fn long_identifiers_are_clipped_in_answers() {
        let c = config("self_hosted", json!({}), json!({"provider": "self_hosted"}), json!({}));
        let id = "x".repeat(1000);
        let o = decide_body(&c, pending(plan(&c, "POST", "/v1/prompts/generate_commit_message")), &json!({"model_metadata": {"identifier": id}}));
        let (r, _) = replied(&o);
        assert!(r.body.len() < 400, "{}", r.body.len());
    }

    #[test]
    fn an_untranslated_request_loses_only_the_clients_cluster_header_and_where_asked_the_jwt() {
        let c = config("hybrid", json!({"code_completions": {"provider": "vendored"}}), json!({"provider": "disabled"}), json!({}));
        let t = forwarded(&decided(plan(&c, "POST", "/v2/code/completions"))).clone();
        let sent = [":path", "authorization", "x-duo-upstream", "x-gitlab-realm", "accept"];
        let dropped: Vec<&str> = sent.into_iter().filter(|n| t.drops_sent_header(n.as_bytes(), &c.cluster_header)).collect();
        assert_eq!(dropped, ["x-duo-upstream"], "the vendor needs GitLab's token and headers");
        let stripping = Target { strip_authorization: true, ..t };
        let dropped: Vec<&str> = sent.into_iter().filter(|n| stripping.drops_sent_header(n.as_bytes(), &c.cluster_header)).collect();
        assert_eq!(dropped, ["authorization", "x-duo-upstream"]);
    }
}
