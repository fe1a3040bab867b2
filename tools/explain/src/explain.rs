//! The explanation, pure: arguments in, a [`Report`] out. It calls the router's decision and
//! request translation the way `filters/router/src/filter.rs` does, minus the host calls.

use duo_core::catalogue::Endpoint;
use duo_core::errors::GitlabError;
use duo_router::agent_platform;
use duo_router::config::{Config, Provider};
use duo_router::decide::{self, Decision, Outcome, Plan, Reason, Target};
use duo_router::prompts::PromptSet;
use duo_router::translate::{RequestCtx, RequestEdit, Translation};
use serde_json::{Map, Value, json};
use std::path::PathBuf;

pub const USAGE: &str = "usage: duo-explain --router-config JSON_FILE --path P [--method M] [--header K:V]... [--body FILE] [--json]";

#[derive(Debug, Default)]
pub struct Args {
    pub router_config: PathBuf,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<PathBuf>,
    pub json: bool,
    /// Seconds since the epoch for `current_date` in prompts (`--now`; default: the clock).
    pub now_unix: u64,
}

impl Args {
    pub fn parse(args: &[String]) -> Result<Args, String> {
        let mut out = Args {
            method: "POST".to_owned(),
            now_unix: now_unix(),
            ..Args::default()
        };
        let mut config = None;
        let mut path = None;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value; {USAGE}"))
            };
            match arg.as_str() {
                "--router-config" => config = Some(PathBuf::from(value(arg)?)),
                "--path" => path = Some(value(arg)?),
                "--method" => out.method = value(arg)?.to_ascii_uppercase(),
                "--header" => {
                    let h = value(arg)?;
                    let (k, v) = h
                        .split_once(':')
                        .ok_or_else(|| format!("--header wants K:V, got '{h}'"))?;
                    out.headers
                        .push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
                "--body" => out.body = Some(PathBuf::from(value(arg)?)),
                "--now" => {
                    out.now_unix = value(arg)?
                        .parse()
                        .map_err(|_| "--now wants seconds since the epoch".to_owned())?
                }
                "--json" => out.json = true,
                other => return Err(format!("unknown argument '{other}'; {USAGE}")),
            }
        }
        out.router_config =
            config.ok_or_else(|| format!("--router-config is required; {USAGE}"))?;
        out.path = path.ok_or_else(|| format!("--path is required; {USAGE}"))?;
        if !out.path.starts_with('/') {
            return Err(format!("--path must start with '/', got '{}'", out.path));
        }
        Ok(out)
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What the router decided and, when forwarded, what the upstream receives.
#[derive(Debug)]
pub struct Report {
    pub method: String,
    pub path: String,
    pub outcome: Outcome,
    /// The answer GitLab gets when the router answers itself (also when the translation refused the body).
    pub answer: Option<(GitlabError, &'static str)>,
    pub upstream: Option<Upstream>,
}

#[derive(Debug)]
pub struct Upstream {
    pub target: Target,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub removed: Vec<String>,
    /// `None`: GitLab's body passes unchanged (vendored, aigw).
    pub body: Option<Vec<u8>>,
    pub stream: bool,
}

pub fn run(args: &Args) -> Result<Report, String> {
    let raw = std::fs::read(&args.router_config)
        .map_err(|e| format!("{}: {e}", args.router_config.display()))?;
    let config = Config::parse(&raw).map_err(|e| format!("duo_router {e}"))?;
    let body = match &args.body {
        Some(p) => std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?,
        None => Vec::new(),
    };
    explain(&config, args, &body)
}

pub fn explain(config: &Config, args: &Args, body: &[u8]) -> Result<Report, String> {
    let prompts = PromptSet::new(&config.prompts).map_err(|e| format!("duo_router {e}"))?;
    let mut report = Report {
        method: args.method.clone(),
        path: args.path.clone(),
        outcome: placeholder(),
        answer: None,
        upstream: None,
    };
    // gRPC first, with the headers the filter reads there (GitLab's model metadata and feature
    // setting name the Agent Platform feature and model).
    let sent = |name: &str| args.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    let call = agent_platform::Call {
        path: &args.path,
        metadata: sent(agent_platform::MODEL_METADATA_HEADER),
        feature_setting: sent(agent_platform::FEATURE_SETTING_HEADER),
        http2: true,
    };
    let grpc = agent_platform::plan(config, &call);
    let outcome = match grpc.map(Plan::Decided).unwrap_or_else(|| decide::plan(config, &args.method, &args.path)) {
        Plan::Decided(o) => o,
        // As the filter: the size limit first, then the body must be a JSON object, then the model.
        Plan::NeedBody(pending) if body.len() as u64 > config.max_request_bytes => {
            decide::refuse_body(pending, decide::too_large(config), Reason::TooLarge)
        }
        Plan::NeedBody(pending) => match decide::parse_body(body) {
            Err(e) => decide::refuse_body(pending, e, Reason::InvalidBody),
            Ok(json) => {
                let outcome = decide::decide_body(config, pending, &json);
                if let (Decision::Forward(target), Some(endpoint)) =
                    (&outcome.decision, &outcome.endpoint)
                {
                    match translate(
                        config,
                        &prompts,
                        target,
                        endpoint,
                        (&json, body.len()),
                        &args.headers,
                        args.now_unix,
                    ) {
                        Ok(up) => report.upstream = Some(upstream(target, &args.headers, Some(up))),
                        Err(e) => report.answer = Some((e, "translation")),
                    }
                }
                outcome
            }
        },
    };
    match &outcome.decision {
        Decision::Reply { reply, reason } => report.answer = Some((reply.clone(), reason.name())),
        Decision::Forward(target) if report.upstream.is_none() && report.answer.is_none() => {
            report.upstream = Some(upstream(target, &args.headers, None));
        }
        Decision::Forward(_) => {}
    }
    report.outcome = outcome;
    Ok(report)
}

fn placeholder() -> Outcome {
    Outcome {
        decision: Decision::Reply {
            reply: GitlabError::not_found(),
            reason: Reason::NotFound,
        },
        endpoint: None,
        route: Default::default(),
    }
}

/// The self-hosted rewrite: the router's own [`Translation::request`], as `filter.rs` applies it.
fn translate(
    config: &Config,
    prompts: &PromptSet,
    target: &Target,
    endpoint: &Endpoint,
    (json, body_len): (&Value, usize),
    sent: &[(String, String)],
    now_unix: u64,
) -> Result<(RequestEdit, bool), GitlabError> {
    let flags = sent
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-gitlab-enabled-feature-flags"))
        .map(|(_, v)| v.as_str());
    // Scopes come from duo_auth's verdict in Envoy; unknown here (all tools offered).
    let header = |name: &str| sent.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    let ctx = RequestCtx {
        now_unix,
        scopes: None,
        feature_flags: flags,
        request_id: header("x-request-id").unwrap_or("explain"),
        gitlab_version: duo_core::version::GitlabVersion::from_header(header("x-gitlab-version")),
    };
    let (translation, edit) = Translation::request(config, prompts, target, endpoint, (json, body_len), &ctx)?;
    Ok((edit, translation.answer_ctx().stream))
}

fn upstream(target: &Target, sent: &[(String, String)], up: Option<(RequestEdit, bool)>) -> Upstream {
    let mut headers: Vec<(String, String)> = sent.to_vec();
    let mut removed = Vec::new();
    let mut drop = |name: &str, headers: &mut Vec<(String, String)>| {
        if headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)) {
            headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
            removed.push(name.to_owned());
        }
    };
    if target.strip_authorization {
        drop("authorization", &mut headers);
    }
    // `agent_platform.model_ingress`: the metadata as the router rewrites it.
    if let Some(m) = &target.metadata {
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case(agent_platform::MODEL_METADATA_HEADER));
        headers.push((agent_platform::MODEL_METADATA_HEADER.to_owned(), m.0.clone()));
    }
    let (method, path, body, stream) = match up {
        Some((edit, stream)) => {
            // What the platform may not see and the edit does not set again.
            let gone: Vec<String> = headers
                .iter()
                .map(|(k, _)| k.to_ascii_lowercase())
                .filter(|k| !RequestEdit::keeps(k.as_bytes()) && !edit.set.iter().any(|(s, _)| s == k))
                .collect();
            for name in &gone {
                drop(name, &mut headers);
            }
            let (mut method, mut path) = (String::new(), String::new());
            for (k, v) in edit.set {
                match k {
                    ":method" => method = v,
                    ":path" => path = v,
                    _ => {
                        headers.retain(|(h, _)| !h.eq_ignore_ascii_case(k));
                        headers.push((k.to_owned(), v));
                    }
                }
            }
            (method, path, Some(edit.body), stream)
        }
        None => (
            String::new(),
            target.path.clone().unwrap_or_default(),
            None,
            false,
        ),
    };
    headers.retain(|(k, _)| k != ":authority");
    headers.insert(0, (":authority".to_owned(), target.authority.clone()));
    if let Some(ms) = target.timeout_ms {
        headers.push(("x-envoy-upstream-rq-timeout-ms".to_owned(), ms.to_string()));
    }
    Upstream {
        target: target.clone(),
        method,
        path,
        headers,
        removed,
        body,
        stream,
    }
}

/// Header values that are credentials: shown as `****` (the scheme of `authorization` kept).
fn shown(name: &str, value: &str) -> String {
    match name.to_ascii_lowercase().as_str() {
        "authorization" => match value.split_once(' ') {
            Some((scheme, _)) => format!("{scheme} ****"),
            None => "****".to_owned(),
        },
        "api-key" | "x-api-key" | "x-amz-security-token" | "x-gitlab-oidc-token" | "cookie" => {
            "****".to_owned()
        }
        // GitLab's model metadata carries the model's key (or, rewritten, the ingress key).
        agent_platform::MODEL_METADATA_HEADER => match serde_json::from_str::<Value>(value) {
            Ok(mut v) => {
                mask(&mut v);
                v.to_string()
            }
            Err(_) => "****".to_owned(),
        },
        _ => value.to_owned(),
    }
}

/// The body as JSON text with GitLab's model API keys masked (they travel in the body).
fn shown_body(bytes: &[u8]) -> Value {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(mut v) => {
            mask(&mut v);
            v
        }
        Err(_) => Value::String(String::from_utf8_lossy(bytes).into_owned()),
    }
}

fn mask(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if matches!(k.as_str(), "api_key" | "model_api_key") && x.is_string() {
                    *x = Value::String("****".to_owned());
                } else {
                    mask(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(mask),
        _ => {}
    }
}

impl Report {
    pub fn forwarded(&self) -> bool {
        self.answer.is_none() && self.upstream.is_some()
    }

    pub fn to_json(&self) -> String {
        let route = &self.outcome.route;
        let endpoint = self.outcome.endpoint.as_ref();
        let mut out = Map::new();
        out.insert(
            "request".into(),
            json!({"method": self.method, "path": self.path}),
        );
        out.insert("feature".into(), json!(route.feature));
        out.insert(
            "unit_primitive".into(),
            json!(endpoint.and_then(|e| e.unit_primitive)),
        );
        out.insert("configuration_type".into(), json!(route.configuration_type));
        out.insert("provider".into(), json!(route.provider));
        out.insert("model_name".into(), json!(route.model_name));
        out.insert("model_identifier".into(), json!(route.model_identifier));
        out.insert("model_family".into(), json!(route.model_family));
        out.insert("platform".into(), json!(route.platform));
        if let Some((answer, reason)) = &self.answer {
            let body = serde_json::from_str::<Value>(&answer.body)
                .unwrap_or_else(|_| Value::String(answer.body.clone()));
            out.insert(
                "answer".into(),
                json!({"status": answer.status, "body": body, "reason": reason}),
            );
        }
        if let (Some(up), None) = (&self.upstream, &self.answer) {
            let headers: Map<String, Value> = up
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(shown(k, v))))
                .collect();
            out.insert("upstream".into(), json!({
                "cluster": up.target.cluster,
                "authority": up.target.authority,
                "model": up.target.model.as_ref().map(|_| route.model_name.clone()),
                "method": if up.method.is_empty() { self.method.clone() } else { up.method.clone() },
                "path": if up.path.is_empty() { self.path.clone() } else { up.path.clone() },
                "headers": headers,
                "removed_headers": up.removed,
                "timeout_ms": up.target.timeout_ms,
                "stream": up.stream,
                "body": up.body.as_deref().map(shown_body),
                "body_unchanged": up.body.is_none(),
            }));
        }
        let mut text = serde_json::to_string_pretty(&Value::Object(out)).unwrap_or_default();
        text.push('\n');
        text
    }

    pub fn to_text(&self) -> String {
        let route = &self.outcome.route;
        let endpoint = self.outcome.endpoint.as_ref();
        if let (None, Some((answer, reason))) = (endpoint, &self.answer) {
            // Not a gateway call at all: one line, the answer GitLab (or anyone) would get.
            return format!(
                "{} {} answer: {} {}  ({reason}: not a path GitLab calls)\n",
                self.method, self.path, answer.status, answer.body
            );
        }
        let dash = |v: Option<&str>| v.unwrap_or("-").to_owned();
        let mut lines = vec![
            format!("request:         {} {}", self.method, self.path),
            format!("feature:         {}", dash(route.feature.as_deref())),
            format!(
                "unit primitive:  {}",
                dash(endpoint.and_then(|e| e.unit_primitive))
            ),
            format!("provider:        {}", dash(route.provider.as_deref())),
        ];
        if let Some(name) = &route.model_name {
            lines.push(format!(
                "model:           {name} ({}, family {}, platform {})",
                dash(route.model_identifier.as_deref()),
                dash(route.model_family.as_deref()),
                dash(route.platform.as_deref())
            ));
        }
        if let Some((answer, reason)) = &self.answer {
            lines.push(format!(
                "answer:          {} {}  ({reason}; nothing reaches an upstream)",
                answer.status, answer.body
            ));
        } else if let Some(up) = &self.upstream {
            let provider = up.target.provider;
            lines.push(format!("cluster:         {}", up.target.cluster));
            let method = if up.method.is_empty() {
                &self.method
            } else {
                &up.method
            };
            let path = if up.path.is_empty() {
                &self.path
            } else {
                &up.path
            };
            lines.push(format!("upstream:        {method} {path}"));
            for (k, v) in &up.headers {
                lines.push(format!("  {k}: {}", shown(k, v)));
            }
            if !up.removed.is_empty() {
                lines.push(format!("removed headers: {}", up.removed.join(", ")));
            }
            match &up.body {
                Some(b) => {
                    lines.push(format!(
                        "body ({} bytes{}):",
                        b.len(),
                        if up.stream { ", streamed answer" } else { "" }
                    ));
                    lines.push(serde_json::to_string_pretty(&shown_body(b)).unwrap_or_default());
                }
                None if provider == Provider::SelfHosted => {
                    lines.push("body:            (none)".to_owned())
                }
                None => lines.push(
                    "body:            GitLab's request, unchanged (its token too)".to_owned(),
                ),
            }
        }
        let mut text = lines.join("\n");
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests;
