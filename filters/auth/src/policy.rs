//! GitLab's authentication and authorization rules, as
//! pure functions over a small view of the request. The adapter (`filter.rs`) feeds them headers,
//! keys and the clock, and applies what they decide.

use crate::config::{Bypass, Config, DUO_WORKFLOW_SERVICE};
use crate::token::{Claims, GITLAB_AI_GATEWAY, TokenError};
use crate::user_token::{USER_TOKEN_KID, USER_TOKEN_SCOPES};
use duo_core::catalogue::{self, Endpoint, EndpointKind, classify};
use duo_core::errors::GitlabError;
use duo_core::handoff::AuthInfo;
use serde::Deserialize;

/// The request headers the rules read (names are case-insensitive in Envoy; values as sent).
#[derive(Clone, Debug, Default)]
pub struct RequestView<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub authorization: Option<&'a str>,
    pub authentication_type: Option<&'a str>,
    pub realm: Option<&'a str>,
    pub instance_id: Option<&'a str>,
    pub global_user_id: Option<&'a str>,
    pub bypass_auth: Option<&'a str>,
}

/// A refusal: the local reply and the specific reason (logs, metrics, `x-duo-auth-reason`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub(crate) reply: GitlabError,
    pub(crate) reason: &'static str,
}

impl Denial {
    fn unauthenticated(message: &str, reason: &'static str) -> Self {
        Self { reply: GitlabError::unauthenticated(message), reason }
    }
    fn forbidden(message: &str, reason: &'static str) -> Self {
        Self { reply: GitlabError::detail(403, message), reason }
    }
    pub(crate) fn token(e: TokenError) -> Self {
        Self::unauthenticated(FORBIDDEN_BY_AUTH_PROVIDER, e.reason())
    }
    /// Keys could not be loaded yet: 503, never a false 401.
    pub(crate) fn keys_unavailable() -> Self {
        Self {
            reply: GitlabError {
                status: 503,
                body: serde_json::json!({"error": "No keys found in JWKS; are OIDC providers up? (duo_auth has not loaded GitLab's signing keys yet)"})
                    .to_string(),
            },
            reason: "keys_unavailable",
        }
    }
}

pub(crate) const FORBIDDEN_BY_AUTH_PROVIDER: &str = "Forbidden by auth provider";
pub(crate) const USER_TOKEN_FORBIDDEN: &str = "Unauthorized to create user access token";

/// Who signed a token, as far as the rules care: it decides the keys that verify it and what it
/// may call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// GitLab (the instance or CustomersDot), keys from `jwks_sources` or jwt_authn.
    Gitlab,
    /// duo_auth's own user token (`user_tokens`): code completions only.
    User,
    /// The Duo Workflow Service's self-signed token (`workflow_token_keys`): the Agent Platform's
    /// calls only, never `GenerateToken`.
    Workflow,
}

/// What to do before any token is verified.
#[derive(Debug, PartialEq)]
pub enum Pre<'a> {
    /// Pass without a token (`public` or `bypass`).
    Allow(AuthInfo),
    Deny(Denial, AuthInfo),
    /// Verify this bearer token with the keys of `kind` (read from its unverified header/payload;
    /// only those keys can make it pass).
    Verify { token: &'a str, kind: TokenKind, info: AuthInfo },
}

/// The gRPC health service (`/grpc.health.v1.Health/Check`, `/Watch`): no token, as the Duo
/// Workflow Service itself serves it.
pub(crate) fn is_grpc_health(path: &str) -> bool {
    path.strip_prefix("/grpc.health.v1.Health/").is_some_and(|m| !m.is_empty() && !m.contains(['/', '?']))
}

/// The Agent Platform's gRPC methods (`/DuoWorkflow/<Method>`): their own audience and tokens,
/// gRPC-shaped refusals.
pub(crate) fn is_agent_platform(method: &str, path: &str) -> bool {
    classify(method, path).is_ok_and(|e| e.kind == EndpointKind::AgentPlatformGrpc)
}

/// The feature and unit primitive of a request, for the hand-off (known or not).
pub(crate) fn describe(method: &str, path: &str) -> (Option<Endpoint>, AuthInfo) {
    let endpoint = classify(method, path).ok();
    let info = AuthInfo {
        feature: endpoint.as_ref().and_then(|e| e.feature).map(|f| f.name().to_owned()),
        unit_primitive: endpoint.as_ref().and_then(|e| e.unit_primitive).map(str::to_owned),
        ..Default::default()
    };
    (endpoint, info)
}

/// Steps 1-3 of GitLab's algorithm: public paths, bypass, the Authorization header, the
/// authentication type.
pub fn pre_check<'a>(cfg: &Config, req: &RequestView<'a>) -> Pre<'a> {
    let (endpoint, mut info) = describe(req.method, req.path);
    // The model ingress: its own keys, never GitLab tokens, never bypassed.
    if endpoint.as_ref().is_some_and(|e| matches!(e.kind, EndpointKind::ModelIngress { .. })) {
        info.feature = Some("model_ingress".to_owned());
        return match crate::ingress::authenticate(&cfg.ingress_keys, req.authorization) {
            Ok(name) => {
                info.result = "ok".to_owned();
                info.token_kind = Some("ingress_key".to_owned());
                info.ingress_key_name = Some(name.to_owned());
                Pre::Allow(info)
            }
            Err(refusal) => {
                info.result = "denied".to_owned();
                info.error = Some(refusal.reason().to_owned());
                Pre::Deny(Denial { reply: refusal.reply(), reason: refusal.reason() }, info)
            }
        };
    }
    if cfg.is_public(req.path) || is_grpc_health(req.path) {
        info.result = "public".to_owned();
        return Pre::Allow(info);
    }
    let bypass = match cfg.bypass {
        Bypass::Off => false,
        Bypass::All => true,
        Bypass::Header => req.bypass_auth.is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
    };
    if bypass {
        info.result = "bypass".to_owned();
        return Pre::Allow(info);
    }
    let deny = |d: Denial, mut info: AuthInfo| {
        info.result = "denied".to_owned();
        info.error = Some(d.reason.to_owned());
        Pre::Deny(d, info)
    };
    let Some(authorization) = req.authorization else {
        return deny(Denial::unauthenticated("No authorization header presented", "missing_authorization"), info);
    };
    let token = match authorization.trim().split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => token.trim(),
        _ => return deny(Denial::unauthenticated("Invalid authorization header", "invalid_authorization_header"), info),
    };
    if req.authentication_type != Some("oidc") {
        return deny(
            Denial::unauthenticated("Invalid authentication token type - only OIDC is supported", "invalid_authentication_type"),
            info,
        );
    }
    let agent_platform = endpoint.is_some_and(|e| e.kind == EndpointKind::AgentPlatformGrpc);
    let kind = if cfg.user_tokens.is_some() && names_user_key(token) {
        TokenKind::User
    } else if agent_platform && !cfg.workflow_keys.is_empty() && self_signed_by_workflow_service(token) {
        TokenKind::Workflow
    } else {
        TokenKind::Gitlab
    };
    Pre::Verify { token, kind, info }
}

/// Whether a token's (unverified) payload says the Duo Workflow Service issued it and its header
/// names no key (the service signs without a `kid`).
fn self_signed_by_workflow_service(token: &str) -> bool {
    use base64::Engine;
    #[derive(Deserialize)]
    struct Iss {
        #[serde(default)]
        iss: Option<String>,
    }
    #[derive(Deserialize)]
    struct Kid {
        #[serde(default)]
        kid: Option<String>,
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p)) = (parts.next(), parts.next()) else { return false };
    if h.len() > 2048 || p.len() > crate::token::MAX_TOKEN_BYTES {
        return false;
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let no_kid = b64.decode(h).ok().and_then(|b| serde_json::from_slice::<Kid>(&b).ok()).is_some_and(|k| k.kid.is_none());
    no_kid
        && b64
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice::<Iss>(&b).ok())
            .and_then(|c| c.iss)
            .is_some_and(|iss| iss == DUO_WORKFLOW_SERVICE)
}

/// Whether a token's (unverified) header names duo_auth's own signing key.
fn names_user_key(token: &str) -> bool {
    use base64::Engine;
    #[derive(Deserialize)]
    struct Kid {
        #[serde(default)]
        kid: Option<String>,
    }
    let Some(h) = token.split('.').next() else { return false };
    if h.len() > 2048 {
        return false;
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice::<Kid>(&b).ok())
        .and_then(|k| k.kid)
        .is_some_and(|k| k == USER_TOKEN_KID)
}

/// What the rules decide once the token is verified.
#[derive(Debug, PartialEq)]
pub enum Decision {
    Allow(AuthInfo),
    Deny(Denial, AuthInfo),
    /// `/v2/chat/agent`: allowed so far; the body's `additional_context` still needs checking.
    CheckChatBody(AuthInfo),
    /// `/v1/code/user_access_token`: answer with a new user token for these values.
    IssueUserToken { info: AuthInfo, global_user_id: String, instance_id: String, realm: String },
}

fn deny(d: Denial, mut info: AuthInfo) -> Decision {
    info.result = "denied".to_owned();
    info.error = Some(d.reason.to_owned());
    Decision::Deny(d, info)
}

/// Legacy scope names that still grant a unit primitive (older Rails tokens, and the Agent
/// Platform's first name, `duo_workflow_execute_workflow`).
fn has_scope(scopes: &[String], up: &str) -> bool {
    scopes.iter().any(|s| {
        s == up
            || (s == "code_suggestions" && (up == "complete_code" || up == "generate_code"))
            || (s == "duo_workflow_execute_workflow" && up == "duo_agent_platform")
    })
}

/// GitLab's refusal of a self-signed token on `GenerateToken` (the service's own wording).
pub(crate) const GENERATE_TOKEN_FORBIDDEN: &str = "Unauthorized to generate token";

/// GitLab's 403 text for a missing unit primitive on this call.
fn forbidden_message(endpoint: &Endpoint) -> String {
    match endpoint.kind {
        EndpointKind::CodeCompletions { .. } | EndpointKind::CodeSuggestionsUnified { .. } => "Unauthorized to access code completions".to_owned(),
        EndpointKind::CodeGenerations => "Unauthorized to access code generations".to_owned(),
        EndpointKind::ChatAgentV2 | EndpointKind::ChatAgentV1 => "Unauthorized to access duo chat".to_owned(),
        EndpointKind::PromptV1 | EndpointKind::PromptV2 => {
            format!("Unauthorized to access '{}'", endpoint.prompt_id.as_deref().unwrap_or_default())
        }
        EndpointKind::UserAccessToken => USER_TOKEN_FORBIDDEN.to_owned(),
        _ => format!("Unauthorized to access {}", endpoint.unit_primitive.unwrap_or("this feature")),
    }
}

/// Steps 5-6 and authorization: issuer kind, header cross-checks, the unit primitive.
/// `kind` says whose keys verified the token.
pub fn authorize(cfg: &Config, req: &RequestView<'_>, claims: &Claims, kind: TokenKind, mut info: AuthInfo) -> Decision {
    let iss = claims.iss.as_deref().unwrap_or_default();
    let user_token = kind == TokenKind::User;
    let workflow_token = kind == TokenKind::Workflow;
    info.issuer = claims.iss.clone();
    info.token_kind = Some(
        match kind {
            TokenKind::User => "user",
            TokenKind::Workflow => "workflow",
            TokenKind::Gitlab => "instance",
        }
        .to_owned(),
    );
    info.scopes = claims.scopes.clone();
    info.gitlab_realm = req.realm.map(str::to_owned);
    info.gitlab_instance_id = req.instance_id.map(str::to_owned);
    info.gitlab_global_user_id = req.global_user_id.map(str::to_owned);
    // A user token is one duo_auth signed and says so; a GitLab key cannot mint one.
    // Likewise the Duo Workflow Service's own tokens.
    if user_token != (iss == GITLAB_AI_GATEWAY) || workflow_token != (iss == DUO_WORKFLOW_SERVICE) {
        return deny(Denial::unauthenticated(FORBIDDEN_BY_AUTH_PROVIDER, "wrong_issuer"), info);
    }
    let header = |v: Option<&str>| v.unwrap_or_default().to_owned();
    if let Some(realm) = claims.gitlab_realm.as_deref().filter(|r| !r.is_empty())
        && realm != header(req.realm) {
            return deny(Denial::unauthenticated("Header mismatch 'X-Gitlab-Realm'", "header_mismatch_realm"), info);
        }
    if let Some(id) = claims.gitlab_instance_id.as_deref().filter(|r| !r.is_empty())
        && id != header(req.instance_id) {
            return deny(Denial::unauthenticated("Header mismatch 'X-Gitlab-Instance-Id'", "header_mismatch_instance_id"), info);
        }
    let sub = claims.sub.clone().unwrap_or_default();
    // User and workflow tokens name the user (`sub` = the global user id); GitLab's, the instance.
    if user_token || workflow_token {
        if sub != header(req.global_user_id) {
            return deny(Denial::unauthenticated("Header mismatch 'X-Gitlab-Global-User-Id'", "header_mismatch_global_user_id"), info);
        }
    } else if sub != header(req.instance_id) {
        return deny(Denial::unauthenticated("Header mismatch 'X-Gitlab-Instance-Id'", "header_mismatch_instance_id"), info);
    }

    // Unknown paths and methods: authenticated, so the router answers (404/405) as GitLab would.
    let Ok(endpoint) = classify(req.method, req.path) else {
        info.result = "ok".to_owned();
        return Decision::Allow(info);
    };

    if workflow_token && endpoint.kind != EndpointKind::AgentPlatformGrpc {
        return deny(Denial::forbidden(&forbidden_message(&endpoint), "workflow_token_not_allowed"), info);
    }
    if endpoint.kind == EndpointKind::UserAccessToken {
        if user_token {
            return deny(Denial::forbidden(USER_TOKEN_FORBIDDEN, "user_token_not_allowed"), info);
        }
        if !USER_TOKEN_SCOPES.iter().any(|up| has_scope(&claims.scopes, up)) {
            return deny(Denial::forbidden(USER_TOKEN_FORBIDDEN, "missing_scope"), info);
        }
        if cfg.user_tokens.is_none() {
            return deny(Denial::forbidden(USER_TOKEN_FORBIDDEN, "user_tokens_disabled"), info);
        }
        for (value, name) in [
            (req.global_user_id, "X-Gitlab-Global-User-Id"),
            (req.instance_id, "X-Gitlab-Instance-Id"),
            (req.realm, "X-Gitlab-Realm"),
        ] {
            if value.is_none_or(|v| v.trim().is_empty()) {
                let reply = GitlabError::detail(400, &format!("Missing {name} header"));
                return deny(Denial { reply, reason: "missing_header" }, info);
            }
        }
        info.result = "ok".to_owned();
        return Decision::IssueUserToken {
            info,
            global_user_id: header(req.global_user_id),
            instance_id: header(req.instance_id),
            realm: header(req.realm),
        };
    }

    // A self-signed token cannot mint another (GitLab's `disallowed_issuers` on GenerateToken).
    if workflow_token && grpc_method(req.path) == Some("GenerateToken") {
        return deny(Denial::forbidden(GENERATE_TOKEN_FORBIDDEN, "workflow_token_not_allowed"), info);
    }
    // User tokens serve code completions only (the IDE's direct connection).
    if user_token && !matches!(endpoint.kind, EndpointKind::CodeCompletions { .. }) {
        return deny(Denial::forbidden(&forbidden_message(&endpoint), "user_token_not_allowed"), info);
    }
    if let Some(up) = endpoint.unit_primitive {
        // The primitive the token holds is the one recorded (GitLab's gateway authorizes a
        // fallback on its older primitive's behalf).
        let held = std::iter::once(up).chain(catalogue::fallback_unit_primitive(up)).find(|u| has_scope(&claims.scopes, u));
        let Some(held) = held else {
            return deny(Denial::forbidden(&forbidden_message(&endpoint), "missing_scope"), info);
        };
        info.unit_primitive = Some(held.to_owned());
    }
    info.result = "ok".to_owned();
    if endpoint.kind == EndpointKind::ChatAgentV2 {
        return Decision::CheckChatBody(info);
    }
    Decision::Allow(info)
}

/// The method of a gRPC path (`/DuoWorkflow/GenerateToken` → `GenerateToken`), query ignored.
pub(crate) fn grpc_method(path: &str) -> Option<&str> {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let (_, method) = path.strip_prefix('/')?.split_once('/')?;
    (!method.is_empty() && !method.contains('/')).then_some(method)
}

#[derive(Deserialize)]
struct ChatBody {
    #[serde(default)]
    messages: Vec<ChatMessage>,
}

#[derive(Deserialize)]
struct ChatMessage {
    #[serde(default)]
    additional_context: Option<Vec<ContextItem>>,
}

#[derive(Deserialize)]
struct ContextItem {
    #[serde(default)]
    category: Option<String>,
}

/// `/v2/chat/agent`: every `additional_context` category needs `include_<category>_context`.
/// A body that is not a chat request passes (the router answers 422).
pub fn check_chat_body(body: &[u8], scopes: &[String]) -> Result<(), Denial> {
    let Ok(chat) = serde_json::from_slice::<ChatBody>(body) else { return Ok(()) };
    for item in chat.messages.iter().filter_map(|m| m.additional_context.as_ref()).flatten() {
        let Some(category) = item.category.as_deref() else { continue };
        let up = format!("include_{category}_context");
        let well_formed = !category.is_empty() && category.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        if !well_formed || !scopes.contains(&up) {
            let what = if well_formed { up } else { "additional context".to_owned() };
            return Err(Denial::forbidden(&format!("Unauthorized to access {what}"), "missing_scope"));
        }
    }
    Ok(())
}

/// Records a chat-body refusal in the hand-off.
pub(crate) fn denied(mut info: AuthInfo, d: &Denial) -> AuthInfo {
    info.result = "denied".to_owned();
    info.error = Some(d.reason.to_owned());
    info
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::testkeys::{self, INSTANCE_ID};

    fn cfg(extra: serde_json::Value) -> Config {
        let mut v = serde_json::json!({"jwks_sources": [{"name": "gitlab", "cluster": "gitlab", "authority": "gitlab.example.com", "jwks_path": "/oauth/discovery/keys"}]});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        Config::parse(v.to_string().as_bytes()).unwrap()
    }

    fn view<'a>(path: &'a str, auth: Option<&'a str>) -> RequestView<'a> {
        RequestView {
            method: "POST",
            path,
            authorization: auth,
            authentication_type: Some("oidc"),
            realm: Some("self-managed"),
            instance_id: Some(INSTANCE_ID),
            global_user_id: Some("Df0Jhs9x="),
            bypass_auth: None,
        }
    }

    fn claims() -> Claims {
        serde_json::from_value(testkeys::instance_claims()).unwrap()
    }

    fn reply(p: Pre<'_>) -> (u32, String, &'static str) {
        match p {
            Pre::Deny(d, info) => {
                assert_eq!(info.result, "denied");
                assert_eq!(info.error.as_deref(), Some(d.reason));
                (d.reply.status, d.reply.body, d.reason)
            }
            other => panic!("not denied: {other:?}"),
        }
    }

    #[test]
    fn pre_check_follows_gitlab_steps_1_to_3() {
        let c = cfg(serde_json::json!({}));
        let mut healthz = view("/monitoring/healthz", None);
        healthz.method = "GET";
        assert!(matches!(pre_check(&c, &healthz), Pre::Allow(ref i) if i.result == "public"));
        assert_eq!(
            reply(pre_check(&c, &view("/v2/code/completions", None))),
            (401, r#"{"error":"No authorization header presented"}"#.into(), "missing_authorization")
        );
        for bad in ["Basic abc", "Bearer", "Bearer   ", "token"] {
            assert_eq!(
                reply(pre_check(&c, &view("/v2/code/completions", Some(bad)))).1,
                r#"{"error":"Invalid authorization header"}"#,
                "{bad}"
            );
        }
        let mut v = view("/v2/code/completions", Some("bearer abc"));
        v.authentication_type = Some("OIDC2");
        assert_eq!(
            reply(pre_check(&c, &v)),
            (401, r#"{"error":"Invalid authentication token type - only OIDC is supported"}"#.into(), "invalid_authentication_type")
        );
        v.authentication_type = None;
        assert_eq!(reply(pre_check(&c, &v)).2, "invalid_authentication_type");
        match pre_check(&c, &view("/v2/code/completions", Some("bearer abc.def.ghi"))) {
            Pre::Verify { token, kind, info } => {
                assert_eq!(token, "abc.def.ghi");
                assert_eq!(kind, TokenKind::Gitlab);
                assert_eq!(info.feature.as_deref(), Some("code_completions"));
                assert_eq!(info.unit_primitive.as_deref(), Some("complete_code"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bypass_modes() {
        let all = cfg(serde_json::json!({"bypass": "all"}));
        assert!(matches!(pre_check(&all, &view("/v2/code/completions", None)), Pre::Allow(ref i) if i.result == "bypass"));
        let header = cfg(serde_json::json!({"bypass": "header"}));
        let mut v = view("/v2/code/completions", None);
        assert!(matches!(pre_check(&header, &v), Pre::Deny(..)));
        v.bypass_auth = Some("true");
        assert!(matches!(pre_check(&header, &v), Pre::Allow(ref i) if i.result == "bypass"));
        let off = cfg(serde_json::json!({}));
        assert!(matches!(pre_check(&off, &v), Pre::Deny(..)));
    }

    #[test]
    fn user_token_is_recognised_by_its_kid_only_when_enabled() {
        let on = cfg(serde_json::json!({"user_tokens": {"signing_key_pem": testkeys::USER_PEM}}));
        let off = cfg(serde_json::json!({}));
        let t = testkeys::sign(testkeys::USER_PEM, Some(USER_TOKEN_KID), &testkeys::instance_claims());
        let auth = format!("Bearer {t}");
        assert!(matches!(pre_check(&on, &view("/v2/completions", Some(&auth))), Pre::Verify { kind: TokenKind::User, .. }));
        assert!(matches!(pre_check(&off, &view("/v2/completions", Some(&auth))), Pre::Verify { kind: TokenKind::Gitlab, .. }));
    }

    fn decide(c: &Config, v: &RequestView<'_>, claims: &Claims, user: bool) -> Decision {
        authorize(c, v, claims, if user { TokenKind::User } else { TokenKind::Gitlab }, describe(v.method, v.path).1)
    }

    fn denied_with(d: Decision) -> (u32, String, &'static str) {
        match d {
            Decision::Deny(d, info) => {
                assert_eq!(info.result, "denied");
                (d.reply.status, d.reply.body, d.reason)
            }
            other => panic!("not denied: {other:?}"),
        }
    }

    #[test]
    fn header_cross_checks_use_gitlab_messages() {
        let c = cfg(serde_json::json!({}));
        let ok = view("/v2/code/completions", Some("Bearer x"));
        match decide(&c, &ok, &claims(), false) {
            Decision::Allow(info) => {
                assert_eq!(info.result, "ok");
                assert_eq!(info.token_kind.as_deref(), Some("instance"));
                assert_eq!(info.issuer.as_deref(), Some("https://gitlab.example.com"));
                assert_eq!(info.gitlab_instance_id.as_deref(), Some(INSTANCE_ID));
                assert_eq!(info.feature.as_deref(), Some("code_completions"));
            }
            other => panic!("{other:?}"),
        }
        let mut v = ok.clone();
        v.realm = Some("saas");
        assert_eq!(denied_with(decide(&c, &v, &claims(), false)), (401, r#"{"error":"Header mismatch 'X-Gitlab-Realm'"}"#.into(), "header_mismatch_realm"));
        v.realm = None;
        assert_eq!(denied_with(decide(&c, &v, &claims(), false)).2, "header_mismatch_realm");
        let mut v = ok.clone();
        v.instance_id = Some("other");
        assert_eq!(denied_with(decide(&c, &v, &claims(), false)).1, r#"{"error":"Header mismatch 'X-Gitlab-Instance-Id'"}"#);
        let mut with_claim = claims();
        with_claim.gitlab_instance_id = Some("claimed".into());
        assert_eq!(denied_with(decide(&c, &ok, &with_claim, false)).2, "header_mismatch_instance_id");
        let mut realmless = claims();
        realmless.gitlab_realm = Some(String::new());
        let mut v = ok.clone();
        v.realm = Some("anything");
        assert!(matches!(decide(&c, &v, &realmless, false), Decision::Allow(_)), "empty realm claim is not compared");
    }

    #[test]
    fn scopes_are_enforced_per_endpoint() {
        let c = cfg(serde_json::json!({}));
        let mut few = claims();
        few.scopes = vec!["duo_chat".into()];
        let cases = [
            ("/v2/code/completions", "Unauthorized to access code completions"),
            ("/v2/code/generations", "Unauthorized to access code generations"),
            ("/v1/prompts/chat/write_tests", "Unauthorized to access 'chat/write_tests'"),
            ("/v1/prompts/model_configuration%2Fcheck", "Unauthorized to access 'model_configuration/check'"),
        ];
        for (path, msg) in cases {
            let (status, body, reason) = denied_with(decide(&c, &view(path, Some("Bearer x")), &few, false));
            assert_eq!((status, reason), (403, "missing_scope"), "{path}");
            assert_eq!(body, serde_json::json!({"detail": msg}).to_string());
        }
        assert!(matches!(decide(&c, &view("/v2/chat/agent", Some("Bearer x")), &few, false), Decision::CheckChatBody(_)));
        few.scopes = vec!["code_suggestions".into()];
        assert!(matches!(decide(&c, &view("/v2/code/generations", Some("Bearer x")), &few, false), Decision::Allow(_)));
        // Unknown paths are authenticated, then left to the router.
        assert!(matches!(decide(&c, &view("/v9/unknown", Some("Bearer x")), &few, false), Decision::Allow(ref i) if i.feature.is_none()));
    }

    #[test]
    fn the_react_chat_takes_duo_classic_chat_or_duo_chat() {
        let c = cfg(serde_json::json!({}));
        let mut token = claims();
        let chat = |t: &Claims| decide(&c, &view("/v2/chat/agent", Some("Bearer x")), t, false);
        for (scopes, held) in [
            (vec!["duo_classic_chat", "duo_chat"], "duo_classic_chat"),
            (vec!["duo_classic_chat"], "duo_classic_chat"),
            (vec!["duo_chat"], "duo_chat"),
        ] {
            token.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
            match chat(&token) {
                Decision::CheckChatBody(info) => assert_eq!(info.unit_primitive.as_deref(), Some(held), "{scopes:?}"),
                other => panic!("{scopes:?}: {other:?}"),
            }
        }
        token.scopes = vec!["complete_code".into(), "include_file_context".into()];
        let (status, body, reason) = denied_with(chat(&token));
        assert_eq!((status, body.as_str(), reason), (403, r#"{"detail":"Unauthorized to access duo chat"}"#, "missing_scope"));
        // duo_classic_chat is not a fallback for anything else
        token.scopes = vec!["duo_classic_chat".into()];
        assert_eq!(denied_with(decide(&c, &view("/v1/chat/agent", Some("Bearer x")), &token, false)).2, "missing_scope");
    }

    #[test]
    fn user_tokens_serve_completions_only() {
        let c = cfg(serde_json::json!({"user_tokens": {"signing_key_pem": testkeys::USER_PEM}}));
        let mut user = claims();
        user.iss = Some("gitlab-ai-gateway".into());
        user.sub = Some("Df0Jhs9x=".into());
        user.gitlab_instance_id = Some(INSTANCE_ID.into());
        user.scopes = vec!["complete_code".into()];
        for path in ["/v2/completions", "/v2/code/completions"] {
            assert!(matches!(decide(&c, &view(path, Some("Bearer x")), &user, true), Decision::Allow(ref i) if i.token_kind.as_deref() == Some("user")));
        }
        let (status, body, _) = denied_with(decide(&c, &view("/v2/code/generations", Some("Bearer x")), &user, true));
        assert_eq!((status, body.as_str()), (403, r#"{"detail":"Unauthorized to access code generations"}"#));
        let mut v = view("/v2/completions", Some("Bearer x"));
        v.global_user_id = Some("someone-else");
        assert_eq!(denied_with(decide(&c, &v, &user, true)).1, r#"{"error":"Header mismatch 'X-Gitlab-Global-User-Id'"}"#);
        // A GitLab-signed token may not pose as a user token, nor the reverse.
        assert_eq!(denied_with(decide(&c, &view("/v2/completions", Some("Bearer x")), &user, false)).2, "wrong_issuer");
        assert_eq!(denied_with(decide(&c, &view("/v2/completions", Some("Bearer x")), &claims(), true)).2, "wrong_issuer");
    }

    #[test]
    fn user_access_token_endpoint_rules() {
        let c = cfg(serde_json::json!({"user_tokens": {"signing_key_pem": testkeys::USER_PEM}}));
        let path = "/v1/code/user_access_token";
        match decide(&c, &view(path, Some("Bearer x")), &claims(), false) {
            Decision::IssueUserToken { global_user_id, instance_id, realm, .. } => {
                assert_eq!((global_user_id.as_str(), instance_id.as_str(), realm.as_str()), ("Df0Jhs9x=", INSTANCE_ID, "self-managed"));
            }
            other => panic!("{other:?}"),
        }
        let mut v = view(path, Some("Bearer x"));
        v.global_user_id = None;
        assert_eq!(denied_with(decide(&c, &v, &claims(), false)), (400, r#"{"detail":"Missing X-Gitlab-Global-User-Id header"}"#.into(), "missing_header"));
        let mut no_scope = claims();
        no_scope.scopes = vec!["duo_chat".into()];
        assert_eq!(
            denied_with(decide(&c, &view(path, Some("Bearer x")), &no_scope, false)),
            (403, r#"{"detail":"Unauthorized to create user access token"}"#.into(), "missing_scope")
        );
        let mut user = claims();
        user.iss = Some("gitlab-ai-gateway".into());
        user.sub = Some("Df0Jhs9x=".into());
        assert_eq!(denied_with(decide(&c, &view(path, Some("Bearer x")), &user, true)).2, "user_token_not_allowed");
        let disabled = cfg(serde_json::json!({}));
        assert_eq!(denied_with(decide(&disabled, &view(path, Some("Bearer x")), &claims(), false)).2, "user_tokens_disabled");
    }

    const USER_ID: &str = "Df0Jhs9x=";

    fn workflow_cfg() -> Config {
        cfg(serde_json::json!({"workflow_token_keys": [testkeys::public_pem(testkeys::OTHER_PEM)]}))
    }

    fn workflow_token() -> String {
        testkeys::sign(testkeys::OTHER_PEM, None, &testkeys::workflow_claims(USER_ID))
    }

    #[test]
    fn grpc_health_is_public_and_agent_platform_paths_are_known() {
        let c = cfg(serde_json::json!({}));
        for path in ["/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"] {
            assert!(matches!(pre_check(&c, &view(path, None)), Pre::Allow(ref i) if i.result == "public"), "{path}");
        }
        for path in ["/grpc.health.v1.Health/", "/grpc.health.v1.Health/Check/x", "/grpc.health.v1.HealthX/Check"] {
            assert!(!is_grpc_health(path), "{path}");
        }
        assert_eq!(reply(pre_check(&c, &view("/DuoWorkflow/ExecuteWorkflow", None))).2, "missing_authorization");
        assert!(is_agent_platform("POST", "/DuoWorkflow/GenerateToken"));
        assert!(!is_agent_platform("POST", "/v2/code/completions"));
        assert_eq!(grpc_method("/DuoWorkflow/GenerateToken"), Some("GenerateToken"));
        assert_eq!(grpc_method("/DuoWorkflow/"), None);
        assert_eq!(grpc_method("/a/b/c"), None);
    }

    #[test]
    fn workflow_tokens_are_recognised_only_on_agent_platform_paths_and_when_keys_are_listed() {
        let auth = format!("Bearer {}", workflow_token());
        let on = workflow_cfg();
        let off = cfg(serde_json::json!({}));
        assert!(matches!(pre_check(&on, &view("/DuoWorkflow/ExecuteWorkflow", Some(&auth))), Pre::Verify { kind: TokenKind::Workflow, .. }));
        assert!(matches!(pre_check(&off, &view("/DuoWorkflow/ExecuteWorkflow", Some(&auth))), Pre::Verify { kind: TokenKind::Gitlab, .. }));
        assert!(matches!(pre_check(&on, &view("/v2/code/completions", Some(&auth))), Pre::Verify { kind: TokenKind::Gitlab, .. }));
        // A kid means a GitLab key, whatever the payload claims.
        let with_kid = testkeys::sign(testkeys::OTHER_PEM, Some("k1"), &testkeys::workflow_claims(USER_ID));
        let auth = format!("Bearer {with_kid}");
        assert!(matches!(pre_check(&on, &view("/DuoWorkflow/ExecuteWorkflow", Some(&auth))), Pre::Verify { kind: TokenKind::Gitlab, .. }));
        // A GitLab token (kid, GitLab issuer) stays a GitLab token.
        let gitlab = testkeys::sign(testkeys::GITLAB_A_PEM, Some("a"), &testkeys::instance_claims());
        let auth = format!("Bearer {gitlab}");
        assert!(matches!(pre_check(&on, &view("/DuoWorkflow/ExecuteWorkflow", Some(&auth))), Pre::Verify { kind: TokenKind::Gitlab, .. }));
    }

    fn workflow_claims() -> Claims {
        serde_json::from_value(testkeys::workflow_claims(USER_ID)).unwrap()
    }

    fn ap(c: &Config, path: &str, claims: &Claims, kind: TokenKind) -> Decision {
        let v = view(path, Some("Bearer x"));
        authorize(c, &v, claims, kind, describe(v.method, v.path).1)
    }

    #[test]
    fn workflow_tokens_call_the_agent_platform_but_never_generate_token() {
        let c = workflow_cfg();
        for method in ["ExecuteWorkflow", "ListTools", "ListFlows"] {
            match ap(&c, &format!("/DuoWorkflow/{method}"), &workflow_claims(), TokenKind::Workflow) {
                Decision::Allow(info) => {
                    assert_eq!(info.token_kind.as_deref(), Some("workflow"));
                    assert_eq!(info.feature.as_deref(), Some("duo_agent_platform"));
                }
                other => panic!("{method}: {other:?}"),
            }
        }
        assert_eq!(
            denied_with(ap(&c, "/DuoWorkflow/GenerateToken", &workflow_claims(), TokenKind::Workflow)),
            (403, r#"{"detail":"Unauthorized to generate token"}"#.into(), "workflow_token_not_allowed")
        );
        // sub is the user: checked against X-Gitlab-Global-User-Id.
        let mut v = view("/DuoWorkflow/ExecuteWorkflow", Some("Bearer x"));
        v.global_user_id = Some("someone-else");
        assert_eq!(
            denied_with(authorize(&c, &v, &workflow_claims(), TokenKind::Workflow, describe(v.method, v.path).1)).2,
            "header_mismatch_global_user_id"
        );
        // Issuer and kind must agree both ways.
        assert_eq!(denied_with(ap(&c, "/DuoWorkflow/ExecuteWorkflow", &workflow_claims(), TokenKind::Gitlab)).2, "wrong_issuer");
        assert_eq!(denied_with(ap(&c, "/DuoWorkflow/ExecuteWorkflow", &claims(), TokenKind::Workflow)).2, "wrong_issuer");
        // Outside the Agent Platform a workflow token is worth nothing.
        assert_eq!(denied_with(ap(&c, "/v2/code/completions", &workflow_claims(), TokenKind::Workflow)).2, "workflow_token_not_allowed");
    }

    #[test]
    fn agent_platform_scopes_accept_the_legacy_name() {
        let c = workflow_cfg();
        let mut gitlab = claims();
        gitlab.scopes = vec!["duo_chat".into()];
        assert_eq!(
            denied_with(ap(&c, "/DuoWorkflow/ExecuteWorkflow", &gitlab, TokenKind::Gitlab)),
            (403, r#"{"detail":"Unauthorized to access duo_agent_platform"}"#.into(), "missing_scope")
        );
        for scope in ["duo_agent_platform", "duo_workflow_execute_workflow"] {
            gitlab.scopes = vec![scope.into()];
            assert!(matches!(ap(&c, "/DuoWorkflow/GenerateToken", &gitlab, TokenKind::Gitlab), Decision::Allow(_)), "{scope}");
            let mut w = workflow_claims();
            w.scopes = vec![scope.into()];
            assert!(matches!(ap(&c, "/DuoWorkflow/ExecuteWorkflow", &w, TokenKind::Workflow), Decision::Allow(_)), "{scope}");
        }
        // The legacy name grants nothing else.
        gitlab.scopes = vec!["duo_workflow_execute_workflow".into()];
        assert_eq!(denied_with(ap(&c, "/v2/chat/agent", &gitlab, TokenKind::Gitlab)).2, "missing_scope");
    }

    #[test]
    fn chat_context_categories_need_their_scopes() {
        let scopes = vec!["duo_chat".to_owned(), "include_file_context".to_owned()];
        let body = |cats: &[&str]| {
            let ctx: Vec<_> = cats.iter().map(|c| serde_json::json!({"category": c, "id": "1", "content": "x"})).collect();
            serde_json::json!({"messages": [{"role": "user", "content": "hi", "additional_context": ctx}, {"role": "assistant", "content": null}]}).to_string()
        };
        assert_eq!(check_chat_body(body(&[]).as_bytes(), &scopes), Ok(()));
        assert_eq!(check_chat_body(body(&["file", "file"]).as_bytes(), &scopes), Ok(()));
        let d = check_chat_body(body(&["file", "merge_request"]).as_bytes(), &scopes).unwrap_err();
        assert_eq!((d.reply.status, d.reply.body.as_str()), (403, r#"{"detail":"Unauthorized to access include_merge_request_context"}"#));
        assert_eq!(check_chat_body(body(&["../x"]).as_bytes(), &scopes).unwrap_err().reason, "missing_scope");
        assert_eq!(check_chat_body(br#"{"messages": [{"additional_context": null}]}"#, &scopes), Ok(()));
        assert_eq!(check_chat_body(b"not json", &scopes), Ok(()));
    }
}
