//! GitLab's request bodies as duo_router handles them (code suggestions, prompts, legacy chat,
//! the chat agent): plan at headers, body parse, routing decision, then the request each model
//! platform of the shipped self_hosted config would get (vLLM, Bedrock, Azure; ReAct step
//! rendering for the chat agent). Input: first byte picks the endpoint, the rest is the body.
//! Oracles: a refusal is a GitLab error with a JSON body; a platform request has a path and,
//! except Bedrock's binary-free JSON too, a JSON body.
#![no_main]

use duo_core::catalogue::EndpointKind;
use duo_router::chat::{self, CivilDate};
use duo_router::codec::{self, AnswerShape, Call};
use duo_router::config::Config;
use duo_router::decide::{self, Decision, Plan};
use duo_router::prompts::PromptSet;
use libfuzzer_sys::fuzz_target;

const PATHS: [&str; 12] = [
    "/v2/code/completions",
    "/v2/completions",
    "/v2/code/generations",
    "/v1/prompts/generate_commit_message",
    "/v1/prompts/chat%2Fexplain_code",
    "/v1/prompts/code_suggestions%2Fgenerations",
    "/v2/prompts/resolve_vulnerability",
    "/v1/chat/explain_code",
    "/v1/chat/agent",
    "/v2/chat/agent",
    "/v1/prompts/model_configuration%2Fcheck",
    "/v1/prompts/generate_description",
];

thread_local! {
    static ROUTER: (Config, PromptSet) = {
        let config = Config::parse(include_bytes!("../router_self_hosted.json")).unwrap_or_else(|e| panic!("config: {e}"));
        let prompts = PromptSet::new(&config.prompts).unwrap_or_else(|e| panic!("prompts: {e}"));
        (config, prompts)
    };
}

fn json_error(e: &duo_core::errors::GitlabError) {
    assert!((400..600).contains(&e.status), "status {}", e.status);
    assert!(serde_json::from_str::<serde_json::Value>(&e.body).is_ok(), "error body {:?}", e.body);
}

fuzz_target!(|data: &[u8]| ROUTER.with(|(config, prompts)| {
    let Some((which, body)) = data.split_first() else { return };
    let path = PATHS[*which as usize % PATHS.len()];
    let Plan::NeedBody(pending) = decide::plan(config, "POST", path) else { return };
    let json = match decide::parse_body(body) {
        Ok(json) => json,
        Err(e) => return json_error(&e),
    };
    let kind = pending.endpoint.kind;
    let prompt_id = pending.endpoint.prompt_id.clone();
    let outcome = decide::decide_body(config, pending, &json);
    match &outcome.decision {
        Decision::Reply { reply, .. } => {
            if reply.status >= 400 {
                json_error(reply);
            }
        }
        Decision::Forward(_) => {}
    }
    // Every platform's codec sees the body, whichever model the decision chose.
    for model in config.models.values() {
        let built = if kind == EndpointKind::ChatAgentV2 {
            let today = CivilDate { year: 2026, month: 12, day: 2 };
            chat::prepare_step(prompts, &json, model.family, model.platform, today, Some(vec!["include_file_context".into()]))
                .and_then(|step| codec::build_rendered_request(model, AnswerShape::ChatAgent, step.rendered(), true, None))
        } else {
            let call = Call { kind, prompt_id: prompt_id.as_deref(), model, prompts, now_unix: 1_796_000_000 };
            codec::build_upstream_request_parsed(&call, &json, body.len())
        };
        match built {
            Ok(up) => {
                assert!(up.path.starts_with('/'), "path {:?}", up.path);
                assert!(serde_json::from_slice::<serde_json::Value>(&up.body).is_ok(), "upstream body is not JSON");
            }
            Err(e) => json_error(&e),
        }
    }
}));
