//! A criterion-free surface for the benchmark (`./build.sh bench`): realistic GitLab requests
//! and platform answers, and one call that runs render + build + translate over them. Uses only
//! the public codec API, so what it measures is what the adapter runs.

use duo_core::catalogue::classify;
use serde_json::json;

use super::{Call, UpstreamResponse, build_upstream_request, translate_response};
use crate::model::ModelConfig;
use crate::prompts::PromptSet;

/// One benchmark scenario: the model entry, the GitLab call and the platform's answer.
pub struct Scenario {
    pub name: &'static str,
    pub model: ModelConfig,
    pub path: &'static str,
    pub request: Vec<u8>,
    pub answer: Vec<u8>,
}

fn model(v: serde_json::Value) -> Option<ModelConfig> {
    serde_json::from_value(v).ok()
}

/// Scenarios: FIM code completion on vLLM with `above_bytes` of code above the cursor, a
/// commit message on Bedrock Converse, an explain-code prompt on Azure.
pub fn scenarios(above_bytes: usize) -> Vec<Scenario> {
    let line = "    total += compute(value, factor)  # keep going\n";
    let above: String = line.repeat(above_bytes / line.len() + 1);
    let mut out = Vec::new();
    if let Some(m) = model(json!({"platform": "vllm", "cluster": "c", "authority": "vllm:8000", "model": "Codestral-22B-v0.1", "family": "codestral"})) {
        out.push(Scenario {
            name: "code_completion_fim_vllm",
            model: m,
            path: "/v2/code/completions",
            request: json!({"prompt_version": 2, "current_file": {"file_name": "app/calc.py", "language_identifier": "python",
                "content_above_cursor": above, "content_below_cursor": "\nprint(total)\n"}, "model_api_key": "sk-bench",
                "model_name": "codestral", "stream": false})
            .to_string()
            .into_bytes(),
            answer: br#"{"id":"cmpl-1","object":"text_completion","created":1,"model":"Codestral-22B-v0.1","choices":[{"index":0,"text":"    return total","finish_reason":"stop"}],"usage":{"prompt_tokens":9000,"completion_tokens":4,"total_tokens":9004}}"#.to_vec(),
        });
    }
    if let Some(m) = model(json!({"platform": "bedrock", "cluster": "c", "authority": "bedrock-runtime.us-east-1.amazonaws.com",
        "model": "us.anthropic.claude-3-5-sonnet-20240620-v1:0", "family": "claude_3"})) {
        let diff = "+    let x = compute(a, b);\n".repeat(2000);
        out.push(Scenario {
            name: "commit_message_bedrock_converse",
            model: m,
            path: "/v1/prompts/generate_commit_message",
            request: json!({"inputs": {"diff": diff}, "model_metadata": {"name": "claude_3"}}).to_string().into_bytes(),
            answer: br#"{"output":{"message":{"role":"assistant","content":[{"text":"Compute x from a and b"}]}},"stopReason":"end_turn","usage":{"inputTokens":9000,"outputTokens":8,"totalTokens":9008},"metrics":{"latencyMs":800}}"#.to_vec(),
        });
    }
    if let Some(m) = model(json!({"platform": "azure_openai", "cluster": "c", "authority": "r.openai.azure.com", "model": "gpt-4o", "family": "gpt", "api_version": "2024-10-21"})) {
        out.push(Scenario {
            name: "explain_code_azure",
            model: m,
            path: "/v2/prompts/chat/explain_code",
            request: json!({"inputs": {"input": "", "selected_text": "x = [i*i for i in range(10)]", "file_content": "import os\n", "language_info": "Python"},
                "model_metadata": {"api_key": "k"}})
            .to_string()
            .into_bytes(),
            answer: br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"It builds a list of squares."},"finish_reason":"stop","content_filter_results":{}}],"usage":{"prompt_tokens":50,"completion_tokens":7,"total_tokens":57}}"#.to_vec(),
        });
    }
    out
}

/// Runs one scenario end to end (build the platform request, translate the answer) and returns
/// the bytes produced, so the work cannot be optimised away. `None` if a step failed.
pub fn run(prompts: &PromptSet, s: &Scenario, now_unix: u64) -> Option<usize> {
    let endpoint = classify("POST", s.path).ok()?;
    let call = Call { kind: endpoint.kind, prompt_id: endpoint.prompt_id.as_deref(), model: &s.model, prompts, now_unix };
    let up = build_upstream_request(&call, &s.request).ok()?;
    let headers: Vec<(String, String)> = Vec::new();
    let resp = UpstreamResponse { status: 200, headers: &headers, body: &s.answer, via_upstream: Some(true) };
    let ans = translate_response(&up.answer, &resp, now_unix);
    (ans.status == 200).then_some(up.body.len() + ans.body.len())
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn every_scenario_runs() {
        let prompts = PromptSet::builtin().unwrap();
        let all = scenarios(600_000);
        assert_eq!(all.len(), 3);
        for s in &all {
            let n = run(&prompts, s, 0).unwrap_or_else(|| panic!("{}", s.name));
            assert!(n > 0);
        }
        assert!(all[0].request.len() > 600_000);
    }
}
