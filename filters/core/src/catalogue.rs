//! The feature catalogue: GitLab's feature-setting names, their unit primitives, and which
//! gateway call belongs to which feature. One place for these facts; auth, router and logger
//! all read them from here.

/// GitLab's feature-setting names (the rows of the admin UI, `Ai::FeatureSetting`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Feature {
    CodeCompletions,
    CodeGenerations,
    DuoChat,
    DuoChatExplainCode,
    DuoChatWriteTests,
    DuoChatRefactorCode,
    DuoChatFixCode,
    DuoChatTroubleshootJob,
    DuoChatExplainVulnerability,
    DuoChatSummarizeComments,
    GenerateCommitMessage,
    SummarizeNewMergeRequest,
    ReviewMergeRequest,
    SummarizeReview,
    ResolveVulnerability,
    GlabAskGitCommand,
    DuoAgentPlatform,
    GenerateIssueDescription,
    // The Agent Platform's own settings (GitLab 18.5+; docs/fidelity.md item 9): they run in the
    // Duo Workflow Service and route like `DuoAgentPlatform`.
    DuoAgentPlatformAgenticChat,
    ReviewMergeRequestDap,
    SastVulnerabilityFpDetection,
    SecretVulnerabilityFpDetection,
    SastVulnerabilityResolution,
    SecurityReview,
    ResolveDependencyBump,
}

impl Feature {
    pub const ALL: [Feature; 25] = [
        Feature::CodeCompletions,
        Feature::CodeGenerations,
        Feature::DuoChat,
        Feature::DuoChatExplainCode,
        Feature::DuoChatWriteTests,
        Feature::DuoChatRefactorCode,
        Feature::DuoChatFixCode,
        Feature::DuoChatTroubleshootJob,
        Feature::DuoChatExplainVulnerability,
        Feature::DuoChatSummarizeComments,
        Feature::GenerateCommitMessage,
        Feature::SummarizeNewMergeRequest,
        Feature::ReviewMergeRequest,
        Feature::SummarizeReview,
        Feature::ResolveVulnerability,
        Feature::GlabAskGitCommand,
        Feature::DuoAgentPlatform,
        Feature::GenerateIssueDescription,
        Feature::DuoAgentPlatformAgenticChat,
        Feature::ReviewMergeRequestDap,
        Feature::SastVulnerabilityFpDetection,
        Feature::SecretVulnerabilityFpDetection,
        Feature::SastVulnerabilityResolution,
        Feature::SecurityReview,
        Feature::ResolveDependencyBump,
    ];

    /// The feature-setting name as GitLab spells it (and as the router config keys it).
    pub fn name(self) -> &'static str {
        match self {
            Feature::CodeCompletions => "code_completions",
            Feature::CodeGenerations => "code_generations",
            Feature::DuoChat => "duo_chat",
            Feature::DuoChatExplainCode => "duo_chat_explain_code",
            Feature::DuoChatWriteTests => "duo_chat_write_tests",
            Feature::DuoChatRefactorCode => "duo_chat_refactor_code",
            Feature::DuoChatFixCode => "duo_chat_fix_code",
            Feature::DuoChatTroubleshootJob => "duo_chat_troubleshoot_job",
            Feature::DuoChatExplainVulnerability => "duo_chat_explain_vulnerability",
            Feature::DuoChatSummarizeComments => "duo_chat_summarize_comments",
            Feature::GenerateCommitMessage => "generate_commit_message",
            Feature::SummarizeNewMergeRequest => "summarize_new_merge_request",
            Feature::ReviewMergeRequest => "review_merge_request",
            Feature::SummarizeReview => "summarize_review",
            Feature::ResolveVulnerability => "resolve_vulnerability",
            Feature::GlabAskGitCommand => "glab_ask_git_command",
            Feature::DuoAgentPlatform => "duo_agent_platform",
            Feature::GenerateIssueDescription => "generate_issue_description",
            Feature::DuoAgentPlatformAgenticChat => "duo_agent_platform_agentic_chat",
            Feature::ReviewMergeRequestDap => "review_merge_request_dap",
            Feature::SastVulnerabilityFpDetection => "sast_vulnerability_fp_detection",
            Feature::SecretVulnerabilityFpDetection => "secret_vulnerability_fp_detection",
            Feature::SastVulnerabilityResolution => "sast_vulnerability_resolution",
            Feature::SecurityReview => "security_review",
            Feature::ResolveDependencyBump => "resolve_dependency_bump",
        }
    }

    pub fn from_name(name: &str) -> Option<Feature> {
        Feature::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Runs in the Duo Workflow Service (the Agent Platform's gRPC calls), not on the HTTP API.
    pub fn agent_platform(self) -> bool {
        matches!(
            self,
            Feature::DuoAgentPlatform
                | Feature::DuoAgentPlatformAgenticChat
                | Feature::ReviewMergeRequestDap
                | Feature::SastVulnerabilityFpDetection
                | Feature::SecretVulnerabilityFpDetection
                | Feature::SastVulnerabilityResolution
                | Feature::SecurityReview
                | Feature::ResolveDependencyBump
        )
    }

    /// The setting an Agent Platform feature without its own route follows: `duo_agent_platform`
    /// (GitLab's Rails falls back to it for a workflow without a specific setting).
    pub fn agent_platform_parent(self) -> Option<Feature> {
        (self.agent_platform() && self != Feature::DuoAgentPlatform).then_some(Feature::DuoAgentPlatform)
    }

    /// Chat sub-features without their own setting follow `duo_chat`, as GitLab does.
    pub fn chat_parent(self) -> Option<Feature> {
        match self {
            Feature::DuoChatExplainCode
            | Feature::DuoChatWriteTests
            | Feature::DuoChatRefactorCode
            | Feature::DuoChatFixCode
            | Feature::DuoChatTroubleshootJob
            | Feature::DuoChatExplainVulnerability
            | Feature::DuoChatSummarizeComments => Some(Feature::DuoChat),
            _ => None,
        }
    }
}

/// What kind of call a request is; decides the body format and the answer shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointKind {
    /// No token needed (health, readiness, model definitions).
    Public,
    /// `POST /v2/code/completions` and the IDE's direct `POST /v2/completions`.
    CodeCompletions { direct: bool },
    CodeGenerations,
    /// `/v3/code/completions`, `/v4/code/suggestions`: GitLab-managed models only; never rewritten.
    CodeSuggestionsUnified { sse: bool },
    ChatAgentV2,
    ChatAgentV1,
    /// Legacy `/v1/chat/<invokable>` with prompt components.
    ChatInvokable,
    PromptV1,
    PromptV2,
    UserAccessToken,
    /// Agent Platform gRPC: routed and logged, payload untouched.
    AgentPlatformGrpc,
    /// The OpenAI-compatible model ingress: `POST /v1/chat/completions` (`list: false`) and
    /// `GET /v1/models` (`list: true`). Callers hold ingress keys, not GitLab tokens.
    ModelIngress { list: bool },
}

impl EndpointKind {
    /// The feature category GitLab's gateway tags the call with (`meta.feature_category` in
    /// its access log; `GitLabFeatureCategory` values on the route decorators).
    pub fn feature_category(self) -> Option<&'static str> {
        Some(match self {
            EndpointKind::Public => return None,
            EndpointKind::CodeCompletions { .. }
            | EndpointKind::CodeGenerations
            | EndpointKind::CodeSuggestionsUnified { .. }
            | EndpointKind::UserAccessToken => "code_suggestions",
            EndpointKind::ChatAgentV2 | EndpointKind::ChatAgentV1 | EndpointKind::ChatInvokable => "duo_chat",
            EndpointKind::PromptV1 | EndpointKind::PromptV2 => "ai_abstraction_layer",
            EndpointKind::AgentPlatformGrpc => "duo_agent_platform",
            EndpointKind::ModelIngress { .. } => "model_ingress",
        })
    }
}

/// A classified request: the call, its feature (if any), and the unit primitive to check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub kind: EndpointKind,
    pub feature: Option<Feature>,
    pub unit_primitive: Option<&'static str>,
    /// Prompt id for `/v{1,2}/prompts/<id>` (percent-decoded) and the invokable of `/v1/chat/*`.
    pub prompt_id: Option<String>,
}

/// Why a path is not served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unclassified {
    /// Not a gateway path at all: 404 `{"detail": "Not Found"}`.
    NotFound,
    /// `/v1/prompts/<id>` with an id we do not know: 404 `Prompt '<id>' not found`.
    UnknownPrompt(String),
    /// A known path with the wrong method: 405.
    MethodNotAllowed,
}

/// The ReAct chat's unit primitive (`/v2/chat/agent`, prompt `chat/react`) in GitLab's current
/// gateway; it was `duo_chat` up to 18.x, and tokens holding only that are still served
/// ([`fallback_unit_primitive`]).
pub const CLASSIC_CHAT: &str = "duo_classic_chat";

/// The older unit primitive a token may hold instead of `up`: `duo_chat` for
/// [`CLASSIC_CHAT`] (GitLab 18.x instances never issue `duo_classic_chat`; GitLab's gateway
/// falls back to `duo_chat` too).
pub fn fallback_unit_primitive(up: &str) -> Option<&'static str> {
    (up == CLASSIC_CHAT).then_some("duo_chat")
}

/// Prompt ids GitLab sends to `/v1/prompts/<id>`, their feature and unit primitive.
const PROMPTS: &[(&str, Option<Feature>, &str)] = &[
    ("chat/explain_code", Some(Feature::DuoChatExplainCode), "explain_code"),
    ("chat/write_tests", Some(Feature::DuoChatWriteTests), "write_tests"),
    ("chat/refactor_code", Some(Feature::DuoChatRefactorCode), "refactor_code"),
    ("chat/fix_code", Some(Feature::DuoChatFixCode), "fix_code"),
    ("chat/troubleshoot_job", Some(Feature::DuoChatTroubleshootJob), "troubleshoot_job"),
    ("chat/explain_vulnerability", Some(Feature::DuoChatExplainVulnerability), "explain_vulnerability"),
    ("chat/summarize_comments", Some(Feature::DuoChatSummarizeComments), "summarize_comments"),
    ("chat/react", Some(Feature::DuoChat), CLASSIC_CHAT),
    ("chat/issue_reader", Some(Feature::DuoChat), "ask_issue"),
    ("chat/epic_reader", Some(Feature::DuoChat), "ask_epic"),
    ("chat/merge_request_reader", Some(Feature::DuoChat), "ask_merge_request"),
    ("chat/commit_reader", Some(Feature::DuoChat), "ask_commit"),
    ("chat/build_reader", Some(Feature::DuoChat), "ask_build"),
    ("chat/work_item_reader", Some(Feature::DuoChat), "ask_work_item"),
    ("chat/documentation_search", Some(Feature::DuoChat), "documentation_search"),
    ("categorize_question", Some(Feature::DuoChat), "duo_chat"),
    ("generate_commit_message", Some(Feature::GenerateCommitMessage), "generate_commit_message"),
    ("summarize_new_merge_request", Some(Feature::SummarizeNewMergeRequest), "summarize_new_merge_request"),
    ("summarize_review", Some(Feature::SummarizeReview), "summarize_review"),
    ("review_merge_request", Some(Feature::ReviewMergeRequest), "review_merge_request"),
    ("resolve_vulnerability", Some(Feature::ResolveVulnerability), "resolve_vulnerability"),
    ("glab_ask_git_command", Some(Feature::GlabAskGitCommand), "glab_ask_git_command"),
    ("generate_description", Some(Feature::GenerateIssueDescription), "generate_issue_description"),
    ("code_suggestions/completions", Some(Feature::CodeCompletions), "complete_code"),
    ("code_suggestions/generations", Some(Feature::CodeGenerations), "generate_code"),
    // The admin's "Test connection": served by whichever self-hosted model GitLab names.
    ("model_configuration/check", None, "complete_code"),
];

/// Looks up a prompt id (already percent-decoded).
pub fn prompt(id: &str) -> Option<(Option<Feature>, &'static str)> {
    PROMPTS.iter().find(|(p, _, _)| *p == id).map(|(_, f, up)| (*f, *up))
}

/// Legacy `/v1/chat/<invokable>` names and their (feature, unit primitive).
fn chat_invokable(name: &str) -> Option<(Feature, &'static str)> {
    Some(match name {
        "explain_code" => (Feature::DuoChatExplainCode, "duo_chat"),
        "write_tests" => (Feature::DuoChatWriteTests, "duo_chat"),
        "refactor_code" => (Feature::DuoChatRefactorCode, "duo_chat"),
        "explain_vulnerability" => (Feature::DuoChatExplainVulnerability, "explain_vulnerability"),
        "summarize_comments" => (Feature::DuoChatSummarizeComments, "summarize_comments"),
        "troubleshoot_job" => (Feature::DuoChatTroubleshootJob, "troubleshoot_job"),
        _ => return None,
    })
}

/// `/v3/code/completions`, `/v4/code/suggestions`: the feature is in the body. GitLab's gateway
/// dispatches on `prompt_components[0].type` (`code_suggestions/handler.py`): a completion needs
/// `complete_code`, a generation its prompt's `generate_code`. Returns (feature, unit primitive,
/// component type), or `None` for a body without a known first component.
pub fn classify_suggestions(body: &serde_json::Value) -> Option<(Feature, &'static str, &'static str)> {
    match body.pointer("/prompt_components/0/type")?.as_str()? {
        "code_editor_completion" => Some((Feature::CodeCompletions, "complete_code", "code_editor_completion")),
        "code_editor_generation" => Some((Feature::CodeGenerations, "generate_code", "code_editor_generation")),
        _ => None,
    }
}

/// Decodes `%XX` escapes (`model_configuration%2Fcheck`). Invalid escapes make the id unknown.
pub fn percent_decode(raw: &str) -> Option<String> {
    if !raw.contains('%') {
        return Some(raw.to_owned());
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn endpoint(kind: EndpointKind, feature: Option<Feature>, up: Option<&'static str>) -> Endpoint {
    Endpoint { kind, feature, unit_primitive: up, prompt_id: None }
}

/// Classifies a request by method and `:path` (the query string is ignored).
pub fn classify(method: &str, path: &str) -> Result<Endpoint, Unclassified> {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let path = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    let post = method.eq_ignore_ascii_case("POST");
    let get = method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD");
    let need = |ok: bool, e: Endpoint| if ok { Ok(e) } else { Err(Unclassified::MethodNotAllowed) };

    match path {
        "/monitoring/healthz" | "/monitoring/ready" | "/v1/models/definitions" => {
            return need(get, endpoint(EndpointKind::Public, None, None));
        }
        "/v2/code/completions" | "/v2/completions" => {
            let kind = EndpointKind::CodeCompletions { direct: path == "/v2/completions" };
            return need(post, endpoint(kind, Some(Feature::CodeCompletions), Some("complete_code")));
        }
        "/v2/code/generations" => {
            let e = endpoint(EndpointKind::CodeGenerations, Some(Feature::CodeGenerations), Some("generate_code"));
            return need(post, e);
        }
        "/v3/code/completions" | "/v4/code/suggestions" => {
            let kind = EndpointKind::CodeSuggestionsUnified { sse: path.starts_with("/v4/") };
            return need(post, endpoint(kind, Some(Feature::CodeCompletions), Some("complete_code")));
        }
        "/v2/chat/agent" => {
            return need(post, endpoint(EndpointKind::ChatAgentV2, Some(Feature::DuoChat), Some(CLASSIC_CHAT)));
        }
        "/v1/chat/agent" => {
            return need(post, endpoint(EndpointKind::ChatAgentV1, Some(Feature::DuoChat), Some("duo_chat")));
        }
        "/v1/chat/completions" => return need(post, endpoint(EndpointKind::ModelIngress { list: false }, None, None)),
        "/v1/models" => return need(get, endpoint(EndpointKind::ModelIngress { list: true }, None, None)),
        "/v1/code/user_access_token" => {
            return need(post, endpoint(EndpointKind::UserAccessToken, Some(Feature::CodeCompletions), Some("complete_code")));
        }
        _ => {}
    }
    if let Some(raw_id) = path.strip_prefix("/v1/prompts/").or_else(|| path.strip_prefix("/v2/prompts/")) {
        let kind = if path.starts_with("/v1/") { EndpointKind::PromptV1 } else { EndpointKind::PromptV2 };
        let id = percent_decode(raw_id).ok_or_else(|| Unclassified::UnknownPrompt(raw_id.to_owned()))?;
        let (feature, up) = prompt(&id).ok_or_else(|| Unclassified::UnknownPrompt(id.clone()))?;
        let mut e = endpoint(kind, feature, Some(up));
        e.prompt_id = Some(id);
        return need(post, e);
    }
    if let Some(name) = path.strip_prefix("/v1/chat/") {
        let (feature, up) = chat_invokable(name).ok_or(Unclassified::NotFound)?;
        let mut e = endpoint(EndpointKind::ChatInvokable, Some(feature), Some(up));
        e.prompt_id = Some(name.to_owned());
        return need(post, e);
    }
    // gRPC: `/<package>.DuoWorkflow/<Method>`, whatever the proto package is called.
    if let Some(rest) = path.strip_prefix('/')
        && let Some((service, method_name)) = rest.split_once('/')
        && service.rsplit('.').next() == Some("DuoWorkflow")
        && !method_name.is_empty()
        && !method_name.contains('/')
    {
        let e = endpoint(EndpointKind::AgentPlatformGrpc, Some(Feature::DuoAgentPlatform), Some("duo_agent_platform"));
        return need(post, e);
    }
    Err(Unclassified::NotFound)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn feature_names_round_trip_and_are_unique() {
        for f in Feature::ALL {
            assert_eq!(Feature::from_name(f.name()), Some(f));
        }
        assert_eq!(Feature::from_name("duo_chat_everything"), None);
    }

    type Case = (&'static str, &'static str, EndpointKind, Option<Feature>, Option<&'static str>);

    #[test]
    fn classifies_every_documented_call() {
        let cases: &[Case] = &[
            ("GET", "/monitoring/healthz", EndpointKind::Public, None, None),
            ("POST", "/v2/code/completions", EndpointKind::CodeCompletions { direct: false }, Some(Feature::CodeCompletions), Some("complete_code")),
            ("POST", "/v2/completions", EndpointKind::CodeCompletions { direct: true }, Some(Feature::CodeCompletions), Some("complete_code")),
            ("POST", "/v2/code/generations", EndpointKind::CodeGenerations, Some(Feature::CodeGenerations), Some("generate_code")),
            ("POST", "/v2/chat/agent", EndpointKind::ChatAgentV2, Some(Feature::DuoChat), Some("duo_classic_chat")),
            ("POST", "/v1/chat/agent", EndpointKind::ChatAgentV1, Some(Feature::DuoChat), Some("duo_chat")),
            ("POST", "/v1/chat/completions", EndpointKind::ModelIngress { list: false }, None, None),
            ("GET", "/v1/models", EndpointKind::ModelIngress { list: true }, None, None),
            ("POST", "/v1/chat/troubleshoot_job", EndpointKind::ChatInvokable, Some(Feature::DuoChatTroubleshootJob), Some("troubleshoot_job")),
            ("POST", "/v1/chat/explain_code", EndpointKind::ChatInvokable, Some(Feature::DuoChatExplainCode), Some("duo_chat")),
            ("POST", "/v1/prompts/chat/explain_code", EndpointKind::PromptV1, Some(Feature::DuoChatExplainCode), Some("explain_code")),
            ("POST", "/v2/prompts/generate_commit_message", EndpointKind::PromptV2, Some(Feature::GenerateCommitMessage), Some("generate_commit_message")),
            ("POST", "/v1/prompts/model_configuration%2Fcheck", EndpointKind::PromptV1, None, Some("complete_code")),
            ("POST", "/v1/prompts/model_configuration/check?x=1", EndpointKind::PromptV1, None, Some("complete_code")),
            ("POST", "/v1/prompts/generate_description", EndpointKind::PromptV1, Some(Feature::GenerateIssueDescription), Some("generate_issue_description")),
            ("POST", "/v1/code/user_access_token", EndpointKind::UserAccessToken, Some(Feature::CodeCompletions), Some("complete_code")),
            ("POST", "/DuoWorkflow/ExecuteWorkflow", EndpointKind::AgentPlatformGrpc, Some(Feature::DuoAgentPlatform), Some("duo_agent_platform")),
            ("POST", "/duo_workflow.DuoWorkflow/ExecuteWorkflow", EndpointKind::AgentPlatformGrpc, Some(Feature::DuoAgentPlatform), Some("duo_agent_platform")),
        ];
        for (method, path, kind, feature, up) in cases {
            let e = classify(method, path).unwrap_or_else(|e| panic!("{path}: {e:?}"));
            assert_eq!(e.kind, *kind, "{path}");
            assert_eq!(e.feature, *feature, "{path}");
            assert_eq!(e.unit_primitive, *up, "{path}");
        }
        assert_eq!(
            classify("POST", "/v1/prompts/model_configuration%2Fcheck").map(|e| e.prompt_id),
            Ok(Some("model_configuration/check".to_owned()))
        );
    }

    #[test]
    fn refuses_unknown_paths_prompts_and_methods() {
        assert_eq!(classify("POST", "/v1/prompts/nope"), Err(Unclassified::UnknownPrompt("nope".into())));
        assert_eq!(classify("POST", "/v1/prompts/bad%zz"), Err(Unclassified::UnknownPrompt("bad%zz".into())));
        assert_eq!(classify("POST", "/v1/chat/delete_everything"), Err(Unclassified::NotFound));
        assert_eq!(classify("GET", "/v2/code/completions"), Err(Unclassified::MethodNotAllowed));
        assert_eq!(classify("POST", "/"), Err(Unclassified::NotFound));
        assert_eq!(classify("POST", "/Other/DuoWorkflow/x"), Err(Unclassified::NotFound));
    }

    #[test]
    fn suggestions_are_classified_by_their_first_component() {
        use serde_json::json;
        let body = |t: &str| json!({"prompt_components": [{"type": t, "payload": {}}, {"type": "code_context"}]});
        assert_eq!(classify_suggestions(&body("code_editor_generation")), Some((Feature::CodeGenerations, "generate_code", "code_editor_generation")));
        assert_eq!(classify_suggestions(&body("code_editor_completion")), Some((Feature::CodeCompletions, "complete_code", "code_editor_completion")));
        assert_eq!(classify_suggestions(&body("code_context")), None);
        assert_eq!(classify_suggestions(&json!({"prompt_components": []})), None);
        assert_eq!(classify_suggestions(&json!({"current_file": {}})), None);
    }

    #[test]
    fn feature_categories_follow_gitlabs_route_decorators() {
        let cat = |m: &str, p: &str| classify(m, p).ok().and_then(|e| e.kind.feature_category());
        assert_eq!(cat("POST", "/v2/code/completions"), Some("code_suggestions"));
        assert_eq!(cat("POST", "/v4/code/suggestions"), Some("code_suggestions"));
        assert_eq!(cat("POST", "/v2/chat/agent"), Some("duo_chat"));
        assert_eq!(cat("POST", "/v1/prompts/generate_commit_message"), Some("ai_abstraction_layer"));
        assert_eq!(cat("GET", "/monitoring/healthz"), None);
    }

    #[test]
    fn the_react_chat_is_classic_chat_with_duo_chat_as_fallback() {
        let up = |p: &str| classify("POST", p).ok().and_then(|e| e.unit_primitive);
        assert_eq!(up("/v2/chat/agent"), Some("duo_classic_chat"));
        assert_eq!(up("/v1/prompts/chat/react"), Some("duo_classic_chat"));
        assert_eq!(up("/v1/chat/agent"), Some("duo_chat"), "the legacy agent keeps duo_chat");
        assert_eq!(fallback_unit_primitive("duo_classic_chat"), Some("duo_chat"));
        assert_eq!(fallback_unit_primitive("duo_chat"), None);
        assert_eq!(fallback_unit_primitive("complete_code"), None);
    }

    #[test]
    fn chat_sub_features_fall_back_to_duo_chat() {
        let subs: Vec<_> = Feature::ALL.into_iter().filter(|f| f.chat_parent().is_some()).collect();
        assert_eq!(subs.len(), 7);
        assert!(subs.iter().all(|f| f.name().starts_with("duo_chat_")));
    }

    #[test]
    fn agent_platform_settings_fall_back_to_duo_agent_platform() {
        let ap: Vec<_> = Feature::ALL.into_iter().filter(|f| f.agent_platform()).map(|f| f.name()).collect();
        assert_eq!(
            ap,
            [
                "duo_agent_platform",
                "duo_agent_platform_agentic_chat",
                "review_merge_request_dap",
                "sast_vulnerability_fp_detection",
                "secret_vulnerability_fp_detection",
                "sast_vulnerability_resolution",
                "security_review",
                "resolve_dependency_bump",
            ]
        );
        assert_eq!(Feature::DuoAgentPlatform.agent_platform_parent(), None);
        assert_eq!(Feature::SastVulnerabilityFpDetection.agent_platform_parent(), Some(Feature::DuoAgentPlatform));
        assert_eq!(Feature::ReviewMergeRequest.agent_platform_parent(), None, "the classic code review is an HTTP feature");
        assert!(Feature::ALL.into_iter().all(|f| !(f.agent_platform() && f.chat_parent().is_some())));
    }
}
