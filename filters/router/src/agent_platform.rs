//! The Agent Platform's gRPC calls (`/DuoWorkflow/<Method>`, `/grpc.health.v1.Health/<Method>`),
//! pure: which Duo Workflow Service gets a call, or why it is refused. The payload is never read:
//! the decision comes from the path, the protocol, GitLab's model-metadata header and its
//! feature-setting header.
//!
//! Refusals are [`GitlabError`]s whose HTTP status maps to the gRPC code the adapter sends
//! (`duo_core::grpc::GrpcStatus::from_http`): 403 → 7 PERMISSION_DENIED (disabled, residency and
//! endpoint guards, no service configured), 404 → 12 UNIMPLEMENTED (unknown method), 400/426 →
//! 3 INVALID_ARGUMENT (malformed metadata, HTTP/1.1).

use crate::config::{ConfigurationType, Config, Provider, Route};
use crate::decide::{self, Outcome, Reason, Target, endpoint_matches};
use duo_core::catalogue::Feature;
use duo_core::errors::GitlabError;
use duo_core::handoff::RouteInfo;
use serde_json::Value;

/// GitLab's model-metadata header on Agent Platform calls (JSON).
pub const MODEL_METADATA_HEADER: &str = "x-gitlab-agent-platform-model-metadata";
/// GitLab's name for the header naming an Agent Platform feature setting (its executor sends it
/// with a flow's calls; docs/agent-platform.md "Which feature").
pub const FEATURE_SETTING_HEADER: &str = "x-gitlab-agent-platform-feature-setting-name";
/// Longest metadata accepted (GitLab's is well under 1 KiB).
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// The service of GitLab's contract (no proto package).
const WORKFLOW_SERVICE: &str = "DuoWorkflow";
const HEALTH_SERVICE: &str = "grpc.health.v1.Health";
/// The methods of GitLab's `DuoWorkflow` service; anything else is UNIMPLEMENTED here.
pub const METHODS: [&str; 7] = [
    "ExecuteWorkflow",
    "GenerateToken",
    "ListCapabilities",
    "ListTools",
    "ListFlows",
    "TrackSelfHostedExecuteWorkflow",
    "ValidateFlowConfig",
];
const HEALTH_METHODS: [&str; 2] = ["Check", "Watch"];

/// What the decision reads of a gRPC request.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    /// `:path` as received.
    pub path: &'a str,
    /// The model-metadata header, when sent.
    pub metadata: Option<&'a str>,
    /// The feature-setting header, when sent.
    pub feature_setting: Option<&'a str>,
    /// The request came over HTTP/2 (gRPC needs it; unknown counts as yes).
    pub http2: bool,
}

/// `(service, method)` of a path shaped like a gRPC call, query ignored.
fn service_method(path: &str) -> Option<(&str, &str)> {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/')).then_some((service, method))
}

fn is_workflow_service(service: &str) -> bool {
    service == WORKFLOW_SERVICE || service.rsplit_once('.').is_some_and(|(_, s)| s == WORKFLOW_SERVICE)
}

/// Whether a request is a gRPC call (its refusals must be gRPC-shaped): a gRPC content type, or
/// an Agent Platform or gRPC health path.
pub fn is_grpc(path: &str, content_type: Option<&str>) -> bool {
    content_type.is_some_and(duo_core::grpc::is_grpc_content_type)
        || service_method(path).is_some_and(|(s, _)| s == HEALTH_SERVICE || is_workflow_service(s))
}

/// The model GitLab named for the call (never its `api_key`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Metadata {
    provider: Option<String>,
    endpoint: Option<String>,
    identifier: Option<String>,
    feature_setting: Option<String>,
}

fn parse_metadata(raw: &str) -> Result<Metadata, GitlabError> {
    if raw.len() > MAX_METADATA_BYTES {
        let m = format!("{MODEL_METADATA_HEADER} is larger than {MAX_METADATA_BYTES} bytes");
        return Err(GitlabError::detail(400, &m));
    }
    let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(raw) else {
        return Err(GitlabError::detail(400, &format!("{MODEL_METADATA_HEADER} is not a JSON object")));
    };
    let mut text = |key: &str| match map.remove(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    };
    Ok(Metadata { provider: text("provider"), endpoint: text("endpoint"), identifier: text("identifier"), feature_setting: text("feature_setting") })
}

/// The Agent Platform feature a call belongs to: the metadata's `feature_setting` (Rails writes
/// it for GitLab-managed models), else the feature-setting header, else `duo_agent_platform`.
/// A name that is not an Agent Platform setting (unknown, newer, or an HTTP feature) counts as
/// `duo_agent_platform`: it can neither pick an HTTP feature's route nor grow the metrics' labels.
fn feature_of(metadata: &Metadata, header: Option<&str>) -> Feature {
    let named = |name: Option<&str>| name.map(str::trim).and_then(Feature::from_name).filter(|f| f.agent_platform());
    named(metadata.feature_setting.as_deref()).or_else(|| named(header)).unwrap_or(Feature::DuoAgentPlatform)
}

fn clip(s: &str) -> String {
    let mut end = s.len().min(200);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn service_target(provider: Provider, cluster: &str, authority: &str) -> Target {
    Target {
        provider,
        cluster: cluster.to_owned(),
        authority: authority.to_owned(),
        path: None,
        // The service checks GitLab's token itself.
        strip_authorization: false,
        timeout_ms: None,
        model: None,
        metadata: None,
    }
}

/// Where the Agent Platform's route sends calls, if that target is configured.
fn target_for(config: &Config, route: &Route) -> Option<Target> {
    match route {
        Route::SelfHosted { .. } => config.agent_platform.as_ref().map(|s| service_target(Provider::SelfHosted, &s.cluster, &s.authority)),
        Route::Vendored => config.agent_platform_vendor.as_ref().map(|s| service_target(Provider::Vendored, &s.cluster, &s.authority)),
        Route::Aigw => config.aigw.as_ref().map(|a| service_target(Provider::Aigw, &a.cluster, &a.authority)),
        Route::Disabled => None,
    }
}

const FEATURE: &str = "duo_agent_platform";

fn forbidden(feature: Feature, why: &str) -> GitlabError {
    GitlabError::detail(403, &format!("Unauthorized to access {}: {why}", feature.name()))
}

/// The decision for a gRPC call; `None` when the path is not the Agent Platform's or gRPC
/// health (the HTTP plan decides those).
pub fn plan(config: &Config, call: &Call<'_>) -> Option<Outcome> {
    let (service, method) = service_method(call.path)?;
    let health = service == HEALTH_SERVICE;
    if !health && !is_workflow_service(service) {
        return None;
    }
    let mut route = RouteInfo { configuration_type: Some(config.configuration_type.name().to_owned()), ..Default::default() };
    if !call.http2 {
        let e = GitlabError::detail(426, "the Agent Platform speaks gRPC over HTTP/2; this request came over HTTP/1.1");
        return Some(decide::refuse(e, Reason::NotHttp2, route));
    }
    if health {
        if !HEALTH_METHODS.contains(&method) {
            return Some(decide::refuse(unknown_method(service, method), Reason::NotFound, route));
        }
        // Health has no feature: ask whichever Duo Workflow Service is configured.
        let target = target_for(config, config.route_for(Feature::DuoAgentPlatform))
            .or_else(|| target_for(config, &Route::SelfHosted { model: None }))
            .or_else(|| target_for(config, &Route::Vendored));
        return Some(match target {
            Some(t) => decide::forward_grpc(t, route),
            None => decide::refuse(GitlabError::detail(404, "no Duo Workflow Service is configured"), Reason::NotFound, route),
        });
    }
    if service != WORKFLOW_SERVICE || !METHODS.contains(&method) {
        return Some(decide::refuse(unknown_method(service, method), Reason::NotFound, route));
    }

    let metadata = match call.metadata.map(parse_metadata).transpose() {
        Ok(m) => m.unwrap_or_default(),
        Err(e) => {
            route.feature = Some(FEATURE.to_owned());
            return Some(decide::refuse(e, Reason::InvalidMetadata, route));
        }
    };
    // The feature's own entry, else duo_agent_platform's, else `default` (Config::route_for).
    let feature = feature_of(&metadata, call.feature_setting);
    let effective = config.route_for(feature).clone();
    route.feature = Some(feature.name().to_owned());
    route.provider = Some(effective.provider().name().to_owned());
    route.model_identifier = metadata.identifier.as_deref().map(clip);
    if effective == Route::Disabled {
        return Some(decide::refuse(GitlabError::forbidden_feature(feature.name()), Reason::Disabled, route));
    }
    let gitlab_managed = metadata.provider.as_deref() == Some("gitlab");
    // Residency: nothing leaves the network in a self-hosted configuration.
    if gitlab_managed && config.configuration_type == ConfigurationType::SelfHosted {
        let e = forbidden(feature, "a GitLab-managed model cannot be used in a self-hosted configuration");
        return Some(decide::refuse(e, Reason::Residency, route));
    }
    // Endpoint guard: the service would call this address with the request's key.
    if !gitlab_managed && let Some(url) = metadata.endpoint.as_deref() {
        match config.models.iter().find(|(_, m)| endpoint_matches(url, &m.authority)) {
            Some((name, _)) => route.model_name = Some(name.clone()),
            None => {
                let e = GitlabError::detail(
                    403,
                    &format!("Unauthorized to access model at '{}': not a model endpoint this AI gateway lists", clip(url)),
                );
                return Some(decide::refuse(e, Reason::EndpointMismatch, route));
            }
        }
    }
    let rewrite = match (&effective, route.model_name.as_deref(), call.metadata) {
        (Route::SelfHosted { .. }, Some(key), Some(raw)) => through_ingress(config, key, raw),
        _ => None,
    };
    Some(match target_for(config, &effective) {
        Some(mut t) => {
            t.metadata = rewrite;
            decide::forward_grpc(t, route)
        }
        None => {
            let which = if effective == Route::Vendored { "agent_platform_vendor" } else { "agent_platform" };
            decide::refuse(forbidden(feature, &format!("no Duo Workflow Service is configured (`{which}`)")), Reason::Disabled, route)
        }
    })
}

/// `agent_platform.model_ingress`: the metadata of a call naming listed model `key`, rewritten so
/// the Duo Workflow Service calls it through the gateway's model ingress (endpoint, identifier,
/// and an ingress key instead of the platform's); the real platform and its credentials stay in
/// Envoy. `None` when off or when the ingress does not serve that model.
fn through_ingress(config: &Config, key: &str, raw: &str) -> Option<decide::Redacted> {
    let ingress = config.agent_platform.as_ref()?.model_ingress.as_ref()?;
    if !crate::ingress::serves(config, key) {
        return None;
    }
    let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(raw) else { return None };
    map.insert("endpoint".into(), Value::String(ingress.url.clone()));
    map.insert("identifier".into(), Value::String(format!("{}{key}", ingress.identifier_prefix)));
    map.insert("api_key".into(), Value::String(ingress.api_key.clone()));
    Some(decide::Redacted(Value::Object(map).to_string()))
}

fn unknown_method(service: &str, method: &str) -> GitlabError {
    GitlabError::detail(404, &format!("unknown method {}/{}", clip(service), clip(method)))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::decide::Decision;
    use duo_core::grpc::{GrpcReply, GrpcStatus};
    use serde_json::json;

    fn config(ct: &str, ap: Value) -> Config {
        let mut v = json!({
            "configuration_type": ct,
            "models": {"codestral": {"platform": "vllm", "cluster": "vllm", "authority": "vllm.internal:8000", "base_path": "/v1",
                                      "model": "Codestral-22B-v0.1", "family": "codestral", "identifiers": ["custom_openai/Codestral-22B-v0.1"]}},
            "agent_platform": {"cluster": "duo_workflow", "authority": "dws.internal:50052"},
            "features": {"duo_agent_platform": ap},
            "default": {"provider": if ct == "gitlab_com" { "vendored" } else { "self_hosted" }},
        });
        if ct != "self_hosted" {
            v["agent_platform_vendor"] = json!({"cluster": "duo_workflow_cloud", "authority": "duo-workflow-svc.runway.gitlab.net"});
            v["vendor"] = json!({"cluster": "cloud", "authority": "cloud.gitlab.com", "path_prefix": "/ai"});
        }
        if ct == "gitlab_com" {
            v.as_object_mut().unwrap().remove("models");
            v.as_object_mut().unwrap().remove("agent_platform");
        }
        Config::parse(v.to_string().as_bytes()).unwrap()
    }

    fn call<'a>(path: &'a str, metadata: Option<&'a str>) -> Call<'a> {
        Call { path, metadata, feature_setting: None, http2: true }
    }

    fn forwarded(o: &Outcome) -> &Target {
        match &o.decision {
            Decision::Forward(t) => t,
            other => panic!("not forwarded: {other:?}"),
        }
    }

    fn refused(o: &Outcome) -> (GrpcStatus, String, Reason) {
        match &o.decision {
            Decision::Reply { reply, reason } => {
                let g = GrpcReply::from_gitlab(reply);
                (g.status, g.message, *reason)
            }
            other => panic!("not refused: {other:?}"),
        }
    }

    /// What Rails sends for a self-hosted model: no `feature_setting`.
    const SELF_HOSTED_MODEL_NO_FEATURE: &str = r#"{"provider":"openai","name":"codestral","endpoint":"http://vllm.internal:8000/v1","api_key":"k","identifier":"custom_openai/Codestral-22B-v0.1"}"#;
    const SELF_HOSTED_MODEL: &str = r#"{"provider":"custom_openai","name":"codestral","endpoint":"http://vllm.internal:8000/v1","api_key":"k","identifier":"custom_openai/Codestral-22B-v0.1","feature_setting":"duo_agent_platform_agentic_chat"}"#;

    #[test]
    fn only_grpc_paths_are_decided_here() {
        let c = config("self_hosted", json!({"provider": "self_hosted"}));
        assert!(plan(&c, &call("/v2/code/completions", None)).is_none());
        assert!(plan(&c, &call("/v1/prompts/chat/explain_code", None)).is_none());
        assert!(is_grpc("/DuoWorkflow/ExecuteWorkflow", None));
        assert!(is_grpc("/grpc.health.v1.Health/Check", None));
        assert!(is_grpc("/anything", Some("application/grpc")));
        assert!(!is_grpc("/v2/chat/agent", Some("application/json")));
    }

    #[test]
    fn self_hosted_goes_to_your_service_with_the_model_guarded() {
        let c = config("self_hosted", json!({"provider": "self_hosted"}));
        let o = plan(&c, &call("/DuoWorkflow/ExecuteWorkflow", Some(SELF_HOSTED_MODEL))).unwrap();
        let t = forwarded(&o);
        assert_eq!((t.cluster.as_str(), t.authority.as_str(), t.path.as_ref(), t.strip_authorization), ("duo_workflow", "dws.internal:50052", None, false));
        assert_eq!(o.route.feature.as_deref(), Some("duo_agent_platform_agentic_chat"));
        assert_eq!(o.route.model_name.as_deref(), Some("codestral"));
        assert_eq!(o.route.model_identifier.as_deref(), Some("custom_openai/Codestral-22B-v0.1"));
        assert_eq!(o.route.upstream_cluster.as_deref(), Some("duo_workflow"));
        // No metadata: duo_agent_platform, no model to guard.
        let o = plan(&c, &call("/DuoWorkflow/GenerateToken", None)).unwrap();
        assert_eq!((forwarded(&o).cluster.as_str(), o.route.feature.as_deref()), ("duo_workflow", Some("duo_agent_platform")));
        // An endpoint no model lists: refused, whatever the identifier says.
        let elsewhere = SELF_HOSTED_MODEL.replace("vllm.internal:8000", "attacker.example:8000");
        let (code, msg, why) = refused(&plan(&c, &call("/DuoWorkflow/ExecuteWorkflow", Some(&elsewhere))).unwrap());
        assert_eq!((code, why), (GrpcStatus::PermissionDenied, Reason::EndpointMismatch));
        assert!(msg.contains("attacker.example:8000"), "{msg}");
        // Residency: a GitLab-managed model in a self-hosted configuration.
        let managed = r#"{"provider":"gitlab","feature_setting":"duo_agent_platform","identifier":null}"#;
        let (code, _, why) = refused(&plan(&c, &call("/DuoWorkflow/ExecuteWorkflow", Some(managed))).unwrap());
        assert_eq!((code, why), (GrpcStatus::PermissionDenied, Reason::Residency));
    }

    #[test]
    fn hybrid_and_gitlab_com_follow_the_feature_setting() {
        let managed = r#"{"provider":"gitlab","feature_setting":"duo_agent_platform"}"#;
        let hybrid = config("hybrid", json!({"provider": "vendored"}));
        let o = plan(&hybrid, &call("/DuoWorkflow/ExecuteWorkflow", Some(managed))).unwrap();
        assert_eq!((forwarded(&o).cluster.as_str(), forwarded(&o).authority.as_str()), ("duo_workflow_cloud", "duo-workflow-svc.runway.gitlab.net"));
        assert_eq!(o.route.provider.as_deref(), Some("vendored"));
        // The endpoint guard holds in every configuration type.
        let elsewhere = SELF_HOSTED_MODEL.replace("vllm.internal:8000", "10.0.0.9:8000");
        assert_eq!(refused(&plan(&hybrid, &call("/DuoWorkflow/ExecuteWorkflow", Some(&elsewhere))).unwrap()).2, Reason::EndpointMismatch);
        let hybrid_self = config("hybrid", json!({"provider": "self_hosted"}));
        assert_eq!(forwarded(&plan(&hybrid_self, &call("/DuoWorkflow/ExecuteWorkflow", Some(managed))).unwrap()).cluster, "duo_workflow");
        let com = config("gitlab_com", json!({"provider": "vendored"}));
        assert_eq!(forwarded(&plan(&com, &call("/DuoWorkflow/ListTools", None)).unwrap()).cluster, "duo_workflow_cloud");
        let aigw = {
            let mut c = config("hybrid", json!({"provider": "disabled"}));
            c.aigw = Some(crate::config::Aigw { cluster: "python_aigw".into(), authority: "aigw:50052".into() });
            c.features.insert(Feature::DuoAgentPlatform, Route::Aigw);
            c
        };
        assert_eq!(forwarded(&plan(&aigw, &call("/DuoWorkflow/ListTools", None)).unwrap()).cluster, "python_aigw");
    }

    #[test]
    fn refusals_carry_the_agent_platform_codes() {
        let c = config("self_hosted", json!({"provider": "disabled"}));
        let (code, msg, why) = refused(&plan(&c, &call("/DuoWorkflow/ExecuteWorkflow", None)).unwrap());
        assert_eq!((code, msg.as_str(), why), (GrpcStatus::PermissionDenied, "Unauthorized to access duo_agent_platform", Reason::Disabled));
        let c = config("self_hosted", json!({"provider": "self_hosted"}));
        let (code, msg, _) = refused(&plan(&c, &call("/DuoWorkflow/NoSuchMethod", None)).unwrap());
        assert_eq!((code, msg.as_str()), (GrpcStatus::Unimplemented, "unknown method DuoWorkflow/NoSuchMethod"));
        assert_eq!(refused(&plan(&c, &call("/pkg.DuoWorkflow/ListTools", None)).unwrap()).0, GrpcStatus::Unimplemented);
        assert_eq!(refused(&plan(&c, &call("/grpc.health.v1.Health/Nope", None)).unwrap()).0, GrpcStatus::Unimplemented);
        for bad in ["not json", "[1, 2]", "\"x\""] {
            let (code, msg, why) = refused(&plan(&c, &call("/DuoWorkflow/ExecuteWorkflow", Some(bad))).unwrap());
            assert_eq!((code, why), (GrpcStatus::InvalidArgument, Reason::InvalidMetadata), "{bad}");
            assert_eq!(msg, "x-gitlab-agent-platform-model-metadata is not a JSON object");
        }
        let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(64 * 1024));
        let (code, msg, _) = refused(&plan(&c, &call("/DuoWorkflow/ExecuteWorkflow", Some(&big))).unwrap());
        assert_eq!((code, msg.as_str()), (GrpcStatus::InvalidArgument, "x-gitlab-agent-platform-model-metadata is larger than 16384 bytes"));
        let mut h1 = call("/DuoWorkflow/ExecuteWorkflow", None);
        h1.http2 = false;
        let (code, msg, why) = refused(&plan(&c, &h1).unwrap());
        assert_eq!((code, why), (GrpcStatus::InvalidArgument, Reason::NotHttp2));
        assert!(msg.contains("HTTP/2"), "{msg}");
        // Refused calls name no upstream (the logger counts nothing forwarded).
        assert!(plan(&c, &call("/DuoWorkflow/NoSuchMethod", None)).unwrap().route.upstream_cluster.is_none());
    }

    #[test]
    fn health_goes_to_a_configured_service_without_a_feature() {
        let c = config("self_hosted", json!({"provider": "disabled"}));
        let o = plan(&c, &call("/grpc.health.v1.Health/Check", None)).unwrap();
        assert_eq!((forwarded(&o).cluster.as_str(), o.route.feature.as_deref()), ("duo_workflow", None));
        let com = config("gitlab_com", json!({"provider": "vendored"}));
        assert_eq!(forwarded(&plan(&com, &call("/grpc.health.v1.Health/Watch", None)).unwrap()).cluster, "duo_workflow_cloud");
    }

    #[test]
    fn the_service_can_be_pointed_at_the_model_ingress() {
        let with = |ingress: Value, ap: Value| {
            let mut v = json!({
                "configuration_type": "self_hosted",
                "models": {"codestral": {"platform": "vllm", "cluster": "vllm", "authority": "vllm.internal:8000", "base_path": "/v1",
                                          "model": "Codestral-22B-v0.1", "family": "codestral", "identifiers": ["custom_openai/Codestral-22B-v0.1"]}},
                "agent_platform": {"cluster": "duo_workflow", "authority": "dws.internal:50052"},
                "features": {"duo_agent_platform": {"provider": "self_hosted"}},
                "default": {"provider": "self_hosted"},
                "model_ingress": ingress,
            });
            v["agent_platform"]["model_ingress"] = ap;
            Config::parse(v.to_string().as_bytes())
        };
        let ap = json!({"url": "http://gateway.internal:5052/v1", "api_key": "sk-dws-ingress"});
        let c = with(json!({"enabled": true}), ap.clone()).unwrap();
        let o = plan(&c, &call("/DuoWorkflow/ExecuteWorkflow", Some(SELF_HOSTED_MODEL))).unwrap();
        let t = forwarded(&o);
        let m: Value = serde_json::from_str(&t.metadata.as_ref().unwrap().0).unwrap();
        assert_eq!(m["endpoint"], "http://gateway.internal:5052/v1");
        assert_eq!(m["identifier"], "custom_openai/codestral");
        assert_eq!(m["api_key"], "sk-dws-ingress", "the platform's key is replaced by the ingress key");
        assert_eq!(m["feature_setting"], "duo_agent_platform_agentic_chat", "everything else stays");
        assert!(!format!("{t:?}{c:?}").contains("sk-dws-ingress"), "the key never shows in debug output");
        // without the block, or for a model the ingress does not serve: unchanged
        let c = with(json!({"enabled": true}), Value::Null).unwrap();
        assert!(forwarded(&plan(&c, &call("/DuoWorkflow/ExecuteWorkflow", Some(SELF_HOSTED_MODEL))).unwrap()).metadata.is_none());
        let c = with(json!({"enabled": true, "models": []}), ap.clone()).unwrap();
        assert!(forwarded(&plan(&c, &call("/DuoWorkflow/ExecuteWorkflow", Some(SELF_HOSTED_MODEL))).unwrap()).metadata.is_none());
        // configuration errors name the field
        assert_eq!(with(json!({"enabled": false}), ap.clone()).unwrap_err().path, "agent_platform.model_ingress");
        let bad = json!({"url": "gateway:5052", "api_key": "k"});
        assert_eq!(with(json!({"enabled": true}), bad).unwrap_err().path, "agent_platform.model_ingress.url");
    }

    /// Every Agent Platform setting × every provider, named by GitLab's metadata (as Rails sends
    /// it for a GitLab-managed model) or by the feature-setting header; hybrid, with
    /// `duo_agent_platform` on the other service so the setting's own key is seen to win.
    #[test]
    fn each_agent_platform_setting_routes_by_its_own_key() {
        let settings: Vec<Feature> = Feature::ALL.into_iter().filter(|f| f.agent_platform_parent().is_some()).collect();
        assert_eq!(settings.len(), 7);
        for f in settings {
            for (route, want) in [(Route::SelfHosted { model: None }, Some("duo_workflow")), (Route::Vendored, Some("duo_workflow_cloud")), (Route::Disabled, None)] {
                let provider = route.provider().name();
                let parent = if route == Route::Vendored { json!({"provider": "self_hosted"}) } else { json!({"provider": "vendored"}) };
                let mut c = config("hybrid", parent);
                c.features.insert(f, route);
                let managed = json!({"provider": "gitlab", "feature_setting": f.name(), "identifier": null}).to_string();
                let by_metadata = call("/DuoWorkflow/ExecuteWorkflow", Some(&managed));
                let mut by_header = call("/DuoWorkflow/ExecuteWorkflow", Some(SELF_HOSTED_MODEL_NO_FEATURE));
                by_header.feature_setting = Some(f.name());
                for (how, call) in [("metadata", by_metadata), ("header", by_header)] {
                    let ctx = format!("{} {provider} by {how}", f.name());
                    let o = plan(&c, &call).unwrap();
                    assert_eq!(o.route.feature.as_deref(), Some(f.name()), "{ctx}");
                    assert_eq!(o.route.provider.as_deref(), Some(provider), "{ctx}");
                    match want {
                        Some(cluster) => assert_eq!(forwarded(&o).cluster, cluster, "{ctx}"),
                        None => {
                            let (code, msg, why) = refused(&o);
                            assert_eq!((code, why), (GrpcStatus::PermissionDenied, Reason::Disabled), "{ctx}");
                            assert_eq!(msg, format!("Unauthorized to access {}", f.name()), "{ctx}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn unnamed_or_unknown_settings_follow_duo_agent_platform() {
        let mut c = config("hybrid", json!({"provider": "vendored"}));
        c.features.insert(Feature::SastVulnerabilityFpDetection, Route::SelfHosted { model: None });
        c.features.insert(Feature::DuoChat, Route::Disabled);
        let goes = |metadata: Option<&str>, header: Option<&str>| {
            let mut k = call("/DuoWorkflow/ExecuteWorkflow", metadata);
            k.feature_setting = header;
            let o = plan(&c, &k).unwrap();
            (forwarded(&o).cluster.clone(), o.route.feature.clone().unwrap_or_default())
        };
        let cloud = ("duo_workflow_cloud".to_owned(), "duo_agent_platform".to_owned());
        // No name at all (a self-hosted model's metadata carries none): duo_agent_platform.
        assert_eq!(goes(Some(SELF_HOSTED_MODEL_NO_FEATURE), None), cloud);
        assert_eq!(goes(None, None), cloud);
        // A setting without a key of its own: duo_agent_platform's route, under its own name.
        let chat = r#"{"provider":"gitlab","feature_setting":"duo_agent_platform_agentic_chat"}"#;
        assert_eq!(goes(Some(chat), None), ("duo_workflow_cloud".to_owned(), "duo_agent_platform_agentic_chat".to_owned()));
        // Names that are not Agent Platform settings never pick a route (nor a metrics label).
        for name in ["duo_chat", "code_completions", "duo_developer", "SAST_VULNERABILITY_FP_DETECTION", "", "x\\u0000y"] {
            let m = format!(r#"{{"provider":"gitlab","feature_setting":"{name}"}}"#);
            assert_eq!(goes(Some(&m), None), cloud, "{name}");
            assert_eq!(goes(None, Some(name)), cloud, "{name}");
        }
        // The metadata (written by Rails) wins over the header.
        let sast = r#"{"provider":"gitlab","feature_setting":"sast_vulnerability_fp_detection"}"#;
        assert_eq!(goes(Some(sast), Some("duo_agent_platform_agentic_chat")).0, "duo_workflow");
        assert_eq!(goes(Some(chat), Some("sast_vulnerability_fp_detection")).0, "duo_workflow_cloud");
        assert_eq!(goes(Some(SELF_HOSTED_MODEL_NO_FEATURE), Some(" sast_vulnerability_fp_detection ")).0, "duo_workflow");
    }

    #[test]
    fn the_guards_hold_whichever_setting_is_named() {
        // self_hosted configuration: a flow on your service still gets the residency and endpoint guards.
        let mut c = config("self_hosted", json!({"provider": "disabled"}));
        c.features.insert(Feature::SecretVulnerabilityFpDetection, Route::SelfHosted { model: None });
        let managed = r#"{"provider":"gitlab","feature_setting":"secret_vulnerability_fp_detection"}"#;
        let (code, msg, why) = refused(&plan(&c, &call("/DuoWorkflow/ExecuteWorkflow", Some(managed))).unwrap());
        assert_eq!((code, why), (GrpcStatus::PermissionDenied, Reason::Residency));
        assert!(msg.starts_with("Unauthorized to access secret_vulnerability_fp_detection: a GitLab-managed model"), "{msg}");
        let elsewhere = SELF_HOSTED_MODEL_NO_FEATURE.replace("vllm.internal:8000", "attacker.example:8000");
        let mut k = call("/DuoWorkflow/ExecuteWorkflow", Some(&elsewhere));
        k.feature_setting = Some("secret_vulnerability_fp_detection");
        assert_eq!(refused(&plan(&c, &k).unwrap()).2, Reason::EndpointMismatch);
        k.metadata = Some(SELF_HOSTED_MODEL_NO_FEATURE);
        let o = plan(&c, &k).unwrap();
        assert_eq!((forwarded(&o).cluster.as_str(), o.route.model_name.as_deref()), ("duo_workflow", Some("codestral")));
        // Without the header the same call is duo_agent_platform's, which is disabled here.
        k.feature_setting = None;
        assert_eq!(refused(&plan(&c, &k).unwrap()).1, "Unauthorized to access duo_agent_platform");
    }
}
