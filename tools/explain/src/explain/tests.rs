use super::*;

const CONFIG: &str = r#"{
  "configuration_type": "hybrid",
  "models": {
    "codestral": {"platform": "vllm", "cluster": "vllm_codestral", "authority": "vllm.internal:8000", "base_path": "/v1",
                  "model": "Codestral-22B-v0.1", "family": "codestral",
                  "identifiers": ["custom_openai/Codestral-22B-v0.1"], "credentials": "gitlab", "timeout_ms": 60000},
    "claude": {"platform": "bedrock", "cluster": "bedrock_us_east_1", "authority": "bedrock-runtime.us-east-1.amazonaws.com",
               "model": "us.anthropic.claude-3-5-sonnet-20240620-v1:0", "family": "claude_3",
               "identifiers": ["bedrock/us.anthropic.claude-3-5-sonnet-20240620-v1:0"]}
  },
  "features": {
    "code_completions": {"provider": "self_hosted", "model": "codestral"},
    "duo_chat": {"provider": "self_hosted", "model": "claude"},
    "summarize_review": {"provider": "disabled"},
    "generate_commit_message": {"provider": "vendored"}
  },
  "default": {"provider": "self_hosted"},
  "vendor": {"cluster": "cloud_gitlab", "authority": "cloud.gitlab.com", "path_prefix": "/ai"},
  "max_request_bytes": 4096
}"#;

fn config() -> Config {
    match Config::parse(CONFIG.as_bytes()) {
        Ok(c) => c,
        Err(e) => unreachable!("test config: {e}"),
    }
}

fn args(path: &str, headers: &[(&str, &str)]) -> Args {
    Args {
        method: "POST".into(),
        path: path.into(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        now_unix: 1_764_633_600,
        ..Args::default()
    }
}

fn run_it(path: &str, body: &str) -> Report {
    match explain(
        &config(),
        &args(
            path,
            &[
                ("authorization", "Bearer gitlab-jwt"),
                ("x-gitlab-instance-id", "i"),
            ],
        ),
        body.as_bytes(),
    ) {
        Ok(r) => r,
        Err(e) => unreachable!("{e}"),
    }
}

fn as_json(r: &Report) -> Value {
    serde_json::from_str(&r.to_json()).unwrap_or(Value::Null)
}

const COMPLETION: &str = r#"{"current_file": {"file_name": "a.py", "language_identifier": "python",
  "content_above_cursor": "def add(a, b):\n", "content_below_cursor": "\nprint(add(1, 2))\n"},
  "model_provider": "litellm", "model_name": "codestral", "prompt_version": 2, "stream": false,
  "model_endpoint": "http://vllm.internal:8000/v1", "model_api_key": "sk-secret-key",
  "model_identifier": "custom_openai/Codestral-22B-v0.1"}"#;

#[test]
fn a_completion_goes_to_vllm_as_the_router_rewrites_it() {
    let r = run_it("/v2/code/completions", COMPLETION);
    assert!(r.forwarded());
    let j = as_json(&r);
    assert_eq!(j["feature"], "code_completions");
    assert_eq!(j["unit_primitive"], "complete_code");
    assert_eq!(j["provider"], "self_hosted");
    assert_eq!(j["model_name"], "codestral");
    let up = &j["upstream"];
    assert_eq!(up["cluster"], "vllm_codestral");
    assert_eq!(up["authority"], "vllm.internal:8000");
    assert_eq!(up["method"], "POST");
    assert_eq!(up["path"], "/v1/completions");
    assert_eq!(up["timeout_ms"], 60000);
    assert_eq!(up["body"]["model"], "Codestral-22B-v0.1");
    assert_eq!(
        up["body"]["prompt"],
        "[SUFFIX]\nprint(add(1, 2))\n[PREFIX]def add(a, b):\n"
    );
    // GitLab's JWT replaced by the model key GitLab sent, and neither is printed.
    assert_eq!(up["headers"]["authorization"], "Bearer ****");
    // GitLab's instance and user headers never reach a model platform.
    assert_eq!(up["headers"]["x-gitlab-instance-id"], Value::Null);
    let text = r.to_text() + &r.to_json();
    assert!(
        !text.contains("sk-secret-key") && !text.contains("gitlab-jwt"),
        "{text}"
    );
    assert!(
        r.to_text()
            .contains("upstream:        POST /v1/completions"),
        "{}",
        r.to_text()
    );
}

#[test]
fn duo_chat_on_bedrock_is_a_converse_stream() {
    let body = r#"{"prompt": "", "options": {"chat_history": [], "agent_scratchpad": {"agent_type": "react", "steps": []},
      "context": null, "current_file": null, "additional_context": []},
      "model_metadata": {"provider": "openai", "name": "claude_3", "identifier": "bedrock/us.anthropic.claude-3-5-sonnet-20240620-v1:0"},
      "messages": [{"role": "user", "content": "hi", "context": null, "current_file": null, "additional_context": []}],
      "unavailable_resources": []}"#;
    let r = run_it("/v2/chat/agent", body);
    let j = as_json(&r);
    assert!(r.forwarded(), "{j}");
    assert_eq!(j["upstream"]["cluster"], "bedrock_us_east_1");
    let path = j["upstream"]["path"].as_str().unwrap_or_default();
    assert!(
        path.starts_with("/model/us.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"),
        "{path}"
    );
    assert_eq!(j["upstream"]["stream"], true);
    assert_eq!(j["upstream"]["removed_headers"], json!(["authorization", "x-gitlab-instance-id"]));
}

#[test]
fn a_disabled_feature_is_gitlabs_403() {
    let r = run_it(
        "/v1/prompts/summarize_review",
        r#"{"inputs": {"draft_notes_content": "x"}}"#,
    );
    assert!(!r.forwarded());
    let j = as_json(&r);
    assert_eq!(j["answer"]["status"], 403);
    assert_eq!(j["answer"]["reason"], "disabled");
    assert!(j.get("upstream").is_none());
    assert!(
        r.to_text().contains("answer:          403 {\"detail\""),
        "{}",
        r.to_text()
    );
}

#[test]
fn a_path_gitlab_never_calls_is_404() {
    let r = run_it("/v9/nothing", "");
    let j = as_json(&r);
    assert_eq!(
        j["answer"],
        json!({"status": 404, "body": {"detail": "Not Found"}, "reason": "not_found"})
    );
    assert_eq!(
        r.to_text(),
        "POST /v9/nothing answer: 404 {\"detail\":\"Not Found\"}  (not_found: not a path GitLab calls)\n"
    );
}

#[test]
fn vendored_features_pass_unchanged_under_the_prefix() {
    let r = run_it(
        "/v1/prompts/generate_commit_message",
        r#"{"inputs": {"diff": "x"}}"#,
    );
    let j = as_json(&r);
    assert_eq!(j["provider"], "vendored");
    assert_eq!(j["upstream"]["cluster"], "cloud_gitlab");
    assert_eq!(
        j["upstream"]["path"],
        "/ai/v1/prompts/generate_commit_message"
    );
    assert_eq!(j["upstream"]["body_unchanged"], true);
    // The vendor gateway needs GitLab's token: kept (and still not printed).
    assert_eq!(j["upstream"]["headers"]["authorization"], "Bearer ****");
}

#[test]
fn unlisted_identifier_and_bad_bodies_get_the_routers_answers() {
    let unknown = COMPLETION.replace("custom_openai/Codestral-22B-v0.1", "custom_openai/other");
    let j = as_json(&run_it("/v2/code/generations", &unknown));
    assert_eq!(j["answer"]["status"], 403, "{j}");
    assert_eq!(
        as_json(&run_it("/v2/code/completions", "not json"))["answer"]["status"],
        422
    );
    let big = format!(r#"{{"x": "{}"}}"#, "a".repeat(5000));
    assert_eq!(
        as_json(&run_it("/v2/code/completions", &big))["answer"]["status"],
        413
    );
}

#[test]
fn arguments() {
    let ok = Args::parse(
        &[
            "--router-config",
            "c.json",
            "--path",
            "/v2/code/completions",
            "--header",
            "X-A: b",
            "--json",
        ]
        .map(String::from),
    );
    let ok = ok.unwrap_or_default();
    assert_eq!(ok.headers, vec![("x-a".to_owned(), "b".to_owned())]);
    assert!(ok.json && ok.method == "POST");
    for bad in [
        &["--path", "/x"][..],
        &["--router-config", "c"],
        &["--router-config", "c", "--path", "x"],
        &["--bogus"],
    ] {
        assert!(
            Args::parse(&bad.iter().map(|s| s.to_string()).collect::<Vec<_>>()).is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn agent_platform_calls_follow_the_named_setting_and_never_show_a_key() {
    let mut v: Value = serde_json::from_str(CONFIG).unwrap_or_default();
    v["agent_platform"] = json!({"cluster": "duo_workflow", "authority": "dws.internal:50052",
        "model_ingress": {"url": "http://gateway.internal:5052/v1", "api_key": "sk-ingress-secret"}});
    v["agent_platform_vendor"] = json!({"cluster": "duo_workflow_cloud", "authority": "duo-workflow-svc.runway.gitlab.net"});
    v["model_ingress"] = json!({"enabled": true});
    v["features"]["duo_agent_platform"] = json!({"provider": "self_hosted"});
    v["features"]["sast_vulnerability_fp_detection"] = json!({"provider": "vendored"});
    let config = match Config::parse(v.to_string().as_bytes()) {
        Ok(c) => c,
        Err(e) => unreachable!("test config: {e}"),
    };
    let run = |headers: &[(&str, &str)]| match explain(&config, &args("/DuoWorkflow/ExecuteWorkflow", headers), b"") {
        Ok(r) => r,
        Err(e) => unreachable!("{e}"),
    };
    let managed = r#"{"provider":"gitlab","feature_setting":"sast_vulnerability_fp_detection"}"#;
    let r = run(&[("X-Gitlab-Agent-Platform-Model-Metadata", managed)]);
    assert_eq!(r.outcome.route.feature.as_deref(), Some("sast_vulnerability_fp_detection"));
    assert_eq!(r.upstream.as_ref().map(|u| u.target.cluster.as_str()), Some("duo_workflow_cloud"));
    // A self-hosted model and the feature-setting header: your service, the metadata rewritten
    // for the ingress, and neither key printed.
    let own = r#"{"provider":"openai","name":"codestral","endpoint":"http://vllm.internal:8000/v1","api_key":"sk-model-secret","identifier":"custom_openai/Codestral-22B-v0.1"}"#;
    let r = run(&[("x-gitlab-agent-platform-model-metadata", own), ("x-gitlab-agent-platform-feature-setting-name", "duo_agent_platform_agentic_chat")]);
    assert_eq!(r.outcome.route.feature.as_deref(), Some("duo_agent_platform_agentic_chat"));
    assert_eq!(r.upstream.as_ref().map(|u| u.target.cluster.as_str()), Some("duo_workflow"));
    let (text, json) = (r.to_text(), r.to_json());
    for out in [&text, &json] {
        assert!(out.contains("gateway.internal:5052") && out.contains("custom_openai/codestral"), "{out}");
        assert!(!out.contains("sk-ingress-secret") && !out.contains("sk-model-secret"), "{out}");
    }
}
