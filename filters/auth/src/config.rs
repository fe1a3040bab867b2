//! duo_auth configuration: the serde form an admin writes, validated at
//! `on_configure` into [`Config`], the compiled form requests read. Errors name the field.

use crate::keys::{PreparedKey, RsaBackend};
use crate::token::GITLAB_AI_GATEWAY;
use crate::user_token::UserTokenIssuer;
use duo_core::config::{ConfigError, parse_json};
use duo_core::validate;
use serde::Deserialize;

/// What GitLab and the Duo Workflow Service put in `aud` for the Agent Platform (gRPC), and the
/// `iss` of the service's own self-signed tokens.
pub(crate) const DUO_WORKFLOW_SERVICE: &str = "gitlab-duo-workflow-service";

/// Where a `workflow_token_keys` entry's key comes from (logs and the hand-off).
pub(crate) const WORKFLOW_KEY_SOURCE: &str = "workflow_token_keys";

/// The paths GitLab's own gateway serves without a token.
pub(crate) const DEFAULT_UNAUTHENTICATED_PATHS: [&str; 3] = ["/monitoring/healthz", "/monitoring/ready", "/v1/models/definitions"];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Bypass {
    #[default]
    Off,
    /// Every request passes unauthenticated (troubleshooting only; warn-logged per request).
    All,
    /// Requests with `Bypass-Auth: true` pass unauthenticated (warn-logged per request).
    Header,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Verifier {
    /// duo_auth verifies signatures itself with keys fetched from `jwks_sources`.
    #[default]
    Builtin,
    /// Envoy's `jwt_authn` (before duo_auth) verifies; duo_auth reads its verdict from metadata.
    EnvoyJwtAuthn,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJwksSource {
    pub(crate) name: String,
    pub(crate) cluster: String,
    pub(crate) authority: String,
    #[serde(default)]
    pub(crate) discovery_path: Option<String>,
    #[serde(default)]
    pub(crate) jwks_path: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUserTokens {
    pub(crate) signing_key_pem: String,
    #[serde(default = "default_user_token_ttl")]
    pub(crate) ttl_s: u64,
}

fn default_user_token_ttl() -> u64 {
    3600
}

/// The configuration as written (serde only).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default = "default_audience")]
    pub(crate) audience: String,
    /// Replaces `audience` on the Agent Platform's gRPC paths (`/DuoWorkflow/*`).
    #[serde(default = "default_agent_platform_audience")]
    pub(crate) agent_platform_audience: String,
    /// Public keys (PEM) of the Duo Workflow Service's self-signed tokens; old and new during a
    /// rotation.
    #[serde(default)]
    pub(crate) workflow_token_keys: Vec<String>,
    #[serde(default)]
    pub(crate) jwks_sources: Vec<RawJwksSource>,
    /// Keys of the model ingress's callers, as SHA-256 digests (`crate::ingress`).
    #[serde(default)]
    pub(crate) ingress_keys: Vec<crate::ingress::RawIngressKey>,
    #[serde(default = "default_refresh")]
    pub(crate) refresh_interval_s: u64,
    #[serde(default = "default_skew")]
    pub(crate) clock_skew_s: u64,
    #[serde(default)]
    pub(crate) user_tokens: Option<RawUserTokens>,
    #[serde(default)]
    pub(crate) bypass: Bypass,
    #[serde(default)]
    pub(crate) verifier: Verifier,
    #[serde(default = "default_public_paths")]
    pub(crate) unauthenticated_paths: Vec<String>,
    /// Answered 503 by duo_auth until every source's keys are held (`null`: not answered).
    #[serde(default = "default_readiness_path")]
    pub(crate) readiness_path: Option<String>,
    /// Which RSA implementation checks RS256 signatures for the builtin verifier (both give the
    /// same verdicts; `rsa` is the fast one). Not in the product sample: an addition.
    #[serde(default)]
    pub(crate) rsa_backend: RsaBackend,
    /// Timeout of each JWKS/discovery call.
    #[serde(default = "default_fetch_timeout")]
    pub(crate) fetch_timeout_ms: u64,
    /// Verified user tokens kept per Envoy worker.
    #[serde(default = "default_cache_size")]
    pub(crate) user_token_cache_size: usize,
}

fn default_audience() -> String {
    GITLAB_AI_GATEWAY.to_owned()
}
fn default_agent_platform_audience() -> String {
    DUO_WORKFLOW_SERVICE.to_owned()
}
fn default_refresh() -> u64 {
    3600
}
fn default_skew() -> u64 {
    60
}
fn default_public_paths() -> Vec<String> {
    DEFAULT_UNAUTHENTICATED_PATHS.iter().map(|p| (*p).to_owned()).collect()
}
fn default_readiness_path() -> Option<String> {
    Some(DEFAULT_UNAUTHENTICATED_PATHS[1].to_owned())
}
fn default_fetch_timeout() -> u64 {
    5000
}
fn default_cache_size() -> usize {
    1024
}

/// Where a source's key set comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeyLocation {
    /// OIDC discovery document; its `jwks_uri` is then fetched from the same cluster.
    Discovery(String),
    /// The JWKS itself.
    Jwks(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JwksSource {
    pub(crate) name: String,
    pub(crate) cluster: String,
    pub(crate) authority: String,
    pub(crate) location: KeyLocation,
}

/// The compiled configuration; requests only read it.
pub struct Config {
    pub(crate) audience: String,
    pub(crate) agent_platform_audience: String,
    /// `workflow_token_keys`, prepared (no `kid`: each is tried).
    pub(crate) workflow_keys: Vec<PreparedKey>,
    pub(crate) jwks_sources: Vec<JwksSource>,
    pub(crate) ingress_keys: Vec<crate::ingress::IngressKey>,
    pub(crate) refresh_interval_s: u64,
    pub(crate) clock_skew_s: u64,
    pub(crate) user_tokens: Option<UserTokens>,
    pub(crate) bypass: Bypass,
    pub(crate) verifier: Verifier,
    pub(crate) unauthenticated_paths: Vec<String>,
    pub(crate) readiness_path: Option<String>,
    pub(crate) rsa_backend: RsaBackend,
    pub(crate) fetch_timeout_ms: u64,
    pub(crate) user_token_cache_size: usize,
}

/// `user_tokens`, compiled: the signing key and its public half, prepared for verification.
pub(crate) struct UserTokens {
    pub(crate) issuer: UserTokenIssuer,
    pub(crate) verifying_key: PreparedKey,
    pub(crate) ttl_s: u64,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never prints the signing key.
        f.debug_struct("Config")
            .field("audience", &self.audience)
            .field("jwks_sources", &self.jwks_sources)
            .field("verifier", &self.verifier)
            .field("bypass", &self.bypass)
            .field("user_tokens", &self.user_tokens.is_some())
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Parses and validates; the error names the offending field.
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        let raw: RawConfig = parse_json(bytes)?;
        Self::compile(raw)
    }

    pub(crate) fn compile(raw: RawConfig) -> Result<Self, ConfigError> {
        if raw.audience.trim().is_empty() {
            return Err(ConfigError::new("audience", "must not be empty"));
        }
        if raw.agent_platform_audience.trim().is_empty() {
            return Err(ConfigError::new("agent_platform_audience", "must not be empty"));
        }
        if raw.workflow_token_keys.len() > 8 {
            return Err(ConfigError::new("workflow_token_keys", "at most 8 keys (the current one and those of rotations in progress)"));
        }
        let mut workflow_keys = Vec::with_capacity(raw.workflow_token_keys.len());
        for (i, pem) in raw.workflow_token_keys.iter().enumerate() {
            let key = PreparedKey::from_pem(pem, WORKFLOW_KEY_SOURCE, raw.rsa_backend)
                .map_err(|m| ConfigError::new(format!("workflow_token_keys[{i}]"), m))?;
            workflow_keys.push(key);
        }
        if !(10..=7 * 86_400).contains(&raw.refresh_interval_s) {
            return Err(ConfigError::new("refresh_interval_s", "must be between 10 and 604800 seconds"));
        }
        if raw.clock_skew_s > 600 {
            return Err(ConfigError::new("clock_skew_s", "must be at most 600 seconds"));
        }
        if !(100..=60_000).contains(&raw.fetch_timeout_ms) {
            return Err(ConfigError::new("fetch_timeout_ms", "must be between 100 and 60000"));
        }
        if !(1..=1_000_000).contains(&raw.user_token_cache_size) {
            return Err(ConfigError::new("user_token_cache_size", "must be between 1 and 1000000"));
        }

        let mut sources: Vec<JwksSource> = Vec::with_capacity(raw.jwks_sources.len());
        for (i, s) in raw.jwks_sources.into_iter().enumerate() {
            let at = |field: &str| format!("jwks_sources[{i}].{field}");
            // The name keys the source's shared-data entries (`duo_auth.attempt.<name>`).
            validate::check_key(&at("name"), &s.name)?;
            if sources.iter().any(|o| o.name == s.name) {
                return Err(ConfigError::new(at("name"), format!("duplicate source name '{}'", s.name)));
            }
            validate::check_name(&at("cluster"), &s.cluster)?;
            validate::check_authority(&at("authority"), &s.authority)?;
            let location = match (s.discovery_path, s.jwks_path) {
                (Some(p), None) => KeyLocation::Discovery(check_path(&p).map_err(|m| ConfigError::new(at("discovery_path"), m))?),
                (None, Some(p)) => KeyLocation::Jwks(check_path(&p).map_err(|m| ConfigError::new(at("jwks_path"), m))?),
                (Some(_), Some(_)) => {
                    return Err(ConfigError::new(at("jwks_path"), "give either discovery_path or jwks_path, not both"));
                }
                (None, None) => return Err(ConfigError::new(at("discovery_path"), "one of discovery_path or jwks_path is required")),
            };
            sources.push(JwksSource { name: s.name, cluster: s.cluster, authority: s.authority, location });
        }
        if raw.verifier == Verifier::Builtin && raw.bypass != Bypass::All && sources.is_empty() {
            return Err(ConfigError::new(
                "jwks_sources",
                "the builtin verifier needs at least one source of GitLab's keys (or set verifier: envoy_jwt_authn)",
            ));
        }

        let mut public = Vec::with_capacity(raw.unauthenticated_paths.len());
        for (i, p) in raw.unauthenticated_paths.into_iter().enumerate() {
            let p = check_path(&p).map_err(|m| ConfigError::new(format!("unauthenticated_paths[{i}]"), m))?;
            if p.contains('?') {
                return Err(ConfigError::new(format!("unauthenticated_paths[{i}]"), "must not contain a query"));
            }
            public.push(p);
        }

        let readiness_path = match raw.readiness_path {
            None => None,
            Some(p) => {
                let p = check_path(&p).map_err(|m| ConfigError::new("readiness_path", m))?;
                if p.contains('?') {
                    return Err(ConfigError::new("readiness_path", "must not contain a query"));
                }
                Some(p)
            }
        };

        let user_tokens = match raw.user_tokens {
            None => None,
            Some(u) => {
                if !(60..=86_400).contains(&u.ttl_s) {
                    return Err(ConfigError::new("user_tokens.ttl_s", "must be between 60 and 86400 seconds"));
                }
                let issuer = UserTokenIssuer::from_pem(&u.signing_key_pem)
                    .map_err(|m| ConfigError::new("user_tokens.signing_key_pem", m))?;
                let verifying_key = issuer
                    .prepared_public_key(raw.rsa_backend)
                    .map_err(|m| ConfigError::new("user_tokens.signing_key_pem", m))?;
                Some(UserTokens { issuer, verifying_key, ttl_s: u.ttl_s })
            }
        };

        Ok(Config {
            audience: raw.audience,
            agent_platform_audience: raw.agent_platform_audience,
            workflow_keys,
            jwks_sources: sources,
            ingress_keys: crate::ingress::compile(&raw.ingress_keys)?,
            refresh_interval_s: raw.refresh_interval_s,
            clock_skew_s: raw.clock_skew_s,
            user_tokens,
            bypass: raw.bypass,
            verifier: raw.verifier,
            unauthenticated_paths: public,
            readiness_path,
            rsa_backend: raw.rsa_backend,
            fetch_timeout_ms: raw.fetch_timeout_ms,
            user_token_cache_size: raw.user_token_cache_size,
        })
    }

    /// Whether `path` (query ignored) is listed in `unauthenticated_paths`.
    pub(crate) fn is_public(&self, path: &str) -> bool {
        let path = without_query(path);
        self.unauthenticated_paths.iter().any(|p| p == path)
    }

    /// Whether `path` (query ignored) is the readiness check duo_auth answers until it holds keys.
    pub(crate) fn is_readiness(&self, path: &str) -> bool {
        self.readiness_path.as_deref().is_some_and(|p| p == without_query(path))
    }

    pub(crate) fn source(&self, name: &str) -> Option<&JwksSource> {
        self.jwks_sources.iter().find(|s| s.name == name)
    }
}

fn without_query(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or(path)
}

fn check_path(p: &str) -> Result<String, &'static str> {
    if !p.starts_with('/') || p.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err("must be an absolute path starting with '/'");
    }
    Ok(p.to_owned())
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::testkeys;

    fn base() -> serde_json::Value {
        serde_json::json!({
            "jwks_sources": [
                {"name": "gitlab", "cluster": "gitlab", "authority": "gitlab.example.com", "discovery_path": "/.well-known/openid-configuration"},
                {"name": "customersdot", "cluster": "customersdot", "authority": "customers.gitlab.com", "jwks_path": "/oauth/discovery/keys"}
            ]
        })
    }

    fn parse(v: &serde_json::Value) -> Result<Config, ConfigError> {
        Config::parse(v.to_string().as_bytes())
    }

    #[test]
    fn product_sample_parses_with_defaults() {
        let mut v = base();
        v["user_tokens"] = serde_json::json!({"signing_key_pem": testkeys::USER_PEM, "ttl_s": 3600});
        v["bypass"] = "off".into();
        v["verifier"] = "builtin".into();
        v["refresh_interval_s"] = 3600.into();
        v["clock_skew_s"] = 60.into();
        let c = parse(&v).unwrap();
        assert_eq!(c.audience, "gitlab-ai-gateway");
        assert_eq!(c.jwks_sources.len(), 2);
        assert_eq!(c.jwks_sources[0].location, KeyLocation::Discovery("/.well-known/openid-configuration".into()));
        assert_eq!(c.jwks_sources[1].location, KeyLocation::Jwks("/oauth/discovery/keys".into()));
        assert!(c.user_tokens.is_some());
        assert!(c.is_public("/monitoring/healthz"));
        assert!(c.is_public("/v1/models/definitions?x=1"));
        assert!(!c.is_public("/v2/code/completions"));
        assert_eq!(c.rsa_backend, RsaBackend::Rsa);
        assert!(c.is_readiness("/monitoring/ready?probe=lb"));
        assert!(!c.is_readiness("/monitoring/healthz"));
        assert!(!format!("{c:?}").contains("PRIVATE"));
        let mut off = base();
        off["readiness_path"] = serde_json::Value::Null;
        assert!(!parse(&off).unwrap().is_readiness("/monitoring/ready"));
    }

    #[test]
    fn errors_name_the_field() {
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (serde_json::json!({"audince": "x"}), "audince"),
            (serde_json::json!({"bypass": "sometimes"}), "bypass"),
            (serde_json::json!({"verifier": "magic"}), "verifier"),
            (serde_json::json!({"jwks_sources": []}), "jwks_sources"),
            (serde_json::json!({"jwks_sources": [{"name": "a", "cluster": "c", "authority": "h"}]}), "jwks_sources[0].discovery_path"),
            (serde_json::json!({"jwks_sources": [{"name": "a", "cluster": "c", "authority": "h", "jwks_path": "/k", "discovery_path": "/d"}]}), "jwks_sources[0].jwks_path"),
            (serde_json::json!({"jwks_sources": [{"name": "a", "cluster": "c", "authority": "h", "jwks_path": "k"}]}), "jwks_sources[0].jwks_path"),
            (serde_json::json!({"jwks_sources": [{"name": "a", "cluster": "c", "authority": "h", "jwks_path": "/k", "extra": 1}]}), "jwks_sources[0].extra"),
            (serde_json::json!({"jwks_sources": [{"name": "a", "cluster": "c", "authority": "h", "jwks_path": "/k"}, {"name": "a", "cluster": "c", "authority": "h", "jwks_path": "/k"}]}), "jwks_sources[1].name"),
            (serde_json::json!({"refresh_interval_s": 1}), "refresh_interval_s"),
            (serde_json::json!({"clock_skew_s": 100000}), "clock_skew_s"),
            (serde_json::json!({"unauthenticated_paths": ["healthz"]}), "unauthenticated_paths[0]"),
            (serde_json::json!({"user_tokens": {"signing_key_pem": "nope"}}), "user_tokens.signing_key_pem"),
            (serde_json::json!({"user_tokens": {"signing_key_pem": testkeys::USER_PEM, "ttl_s": 5}}), "user_tokens.ttl_s"),
            (serde_json::json!({"user_tokens": {"signing_key_pem": testkeys::WEAK_PEM}}), "user_tokens.signing_key_pem"),
            (serde_json::json!({"rsa_backend": "openssl"}), "rsa_backend"),
            (serde_json::json!({"readiness_path": "ready"}), "readiness_path"),
            (serde_json::json!({"jwks_sources": [{"name": "a b", "cluster": "c", "authority": "h", "jwks_path": "/k"}]}), "jwks_sources[0].name"),
            (serde_json::json!({"jwks_sources": [{"name": "a", "cluster": "c d", "authority": "h", "jwks_path": "/k"}]}), "jwks_sources[0].cluster"),
            (serde_json::json!({"jwks_sources": [{"name": "a", "cluster": "c", "authority": "https://h", "jwks_path": "/k"}]}), "jwks_sources[0].authority"),
            (serde_json::json!({"jwks_sources": [{"name": "a", "cluster": "c", "authority": "user@h", "jwks_path": "/k"}]}), "jwks_sources[0].authority"),
            (serde_json::json!({"jwks_sources": [{"name": "a", "cluster": "c", "authority": "h:0", "jwks_path": "/k"}]}), "jwks_sources[0].authority"),
            (serde_json::json!({"jwks_sources": [{"name": "a", "cluster": "c", "authority": "::1", "jwks_path": "/k"}]}), "jwks_sources[0].authority"),
        ];
        for (patch, field) in cases {
            let mut v = base();
            for (k, val) in patch.as_object().unwrap() {
                v[k] = val.clone();
            }
            let e = match parse(&v) {
                Err(e) => e,
                Ok(_) => panic!("accepted {patch}"),
            };
            assert_eq!(e.path, field, "{patch}: {e}");
        }
    }

    #[test]
    fn json_schema_lists_every_field_with_accepted_defaults() {
        let schema: serde_json::Value = serde_json::from_str(include_str!("../config.schema.json")).unwrap();
        let props = schema["properties"].as_object().unwrap();
        let mut all = base();
        for (name, p) in props {
            if let Some(d) = p.get("default") {
                let mut v = base();
                v[name] = d.clone();
                assert!(parse(&v).is_ok(), "default of {name} refused");
                all[name] = d.clone();
            }
        }
        assert!(parse(&all).is_ok());
        // Every field the parser knows is in the schema: a config naming all of them parses.
        all["user_tokens"] = serde_json::json!({"signing_key_pem": testkeys::USER_PEM, "ttl_s": 600});
        let keys: Vec<&String> = all.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), props.len(), "{keys:?}");
        assert!(parse(&all).is_ok());
        let mut source_keys: Vec<&str> =
            schema["properties"]["jwks_sources"]["items"]["properties"].as_object().unwrap().keys().map(String::as_str).collect();
        source_keys.sort_unstable();
        assert_eq!(source_keys, ["authority", "cluster", "discovery_path", "jwks_path", "name"]);
    }

    #[test]
    fn workflow_token_keys_are_public_pems() {
        let pem = testkeys::public_pem(testkeys::OTHER_PEM);
        let mut v = base();
        v["workflow_token_keys"] = serde_json::json!([pem, testkeys::public_pem(testkeys::GITLAB_B_PEM)]);
        let c = parse(&v).unwrap();
        assert_eq!(c.workflow_keys.len(), 2);
        assert!(c.workflow_keys.iter().all(|k| k.kid.is_none() && k.source == WORKFLOW_KEY_SOURCE));
        assert_eq!(c.agent_platform_audience, DUO_WORKFLOW_SERVICE);
        for bad in [serde_json::json!(["not a pem"]), serde_json::json!([testkeys::OTHER_PEM])] {
            let mut v = base();
            v["workflow_token_keys"] = bad;
            assert_eq!(parse(&v).err().unwrap().path, "workflow_token_keys[0]");
        }
        let mut v = base();
        v["agent_platform_audience"] = serde_json::json!(" ");
        assert_eq!(parse(&v).err().unwrap().path, "agent_platform_audience");
    }

    #[test]
    fn envoy_jwt_authn_and_bypass_all_need_no_sources() {
        assert!(parse(&serde_json::json!({"verifier": "envoy_jwt_authn"})).is_ok());
        assert!(parse(&serde_json::json!({"bypass": "all"})).is_ok());
        assert!(Config::parse(b"").is_err());
    }
}
