//! Whole (non-streamed) model answers and errors as duo_router turns them into GitLab's
//! answers: OpenAI chat/completions (vLLM, Azure), Bedrock Converse and InvokeModel (Anthropic,
//! Mistral, Llama), for every GitLab answer shape. Input: byte 0 picks wire and shape, byte 1
//! the status class, the rest is the body. Oracle: GitLab gets a JSON body (or the raw text of a
//! stream label), a status it understands, never a panic; OpenAI answers read the same through
//! the borrowed fast path as through the `Value` tree.
#![no_main]

use duo_router::codec::{self, AnswerCtx, AnswerShape, PostProcess, UpstreamResponse, Wire};
use duo_router::model::{Family, Platform};
use libfuzzer_sys::fuzz_target;

const WIRES: [(Wire, Platform, Family); 6] = [
    (Wire::OpenaiChat, Platform::Vllm, Family::Mistral),
    (Wire::OpenaiCompletions, Platform::Vllm, Family::Codestral),
    (Wire::BedrockConverse, Platform::Bedrock, Family::Claude3),
    (Wire::BedrockAnthropic, Platform::Bedrock, Family::Claude3),
    (Wire::BedrockMistral, Platform::Bedrock, Family::Mistral),
    (Wire::BedrockLlama, Platform::Bedrock, Family::Llama3),
];
const SHAPES: [AnswerShape; 6] = [
    AnswerShape::CodeSuggestions,
    AnswerShape::PromptV1,
    AnswerShape::PromptV2,
    AnswerShape::ChatV1,
    AnswerShape::ChatAgent,
    AnswerShape::SuggestionsV4,
];
const STATUSES: [u32; 8] = [200, 200, 400, 401, 404, 429, 500, 503];

fuzz_target!(|data: &[u8]| {
    let [selector, status, body @ ..] = data else { return };
    let (wire, platform, family) = WIRES[*selector as usize % WIRES.len()];
    let shape = SHAPES[*selector as usize / WIRES.len() % SHAPES.len()];
    let ctx = AnswerCtx {
        shape,
        wire,
        platform,
        stream: false,
        model: "model".into(),
        family,
        lang: Some("python".into()),
        chat_model: Some("chat".into()),
        post: if status & 0x80 != 0 { PostProcess::StripFences } else { PostProcess::None },
        reported_model: (status & 0x20 != 0).then(|| ("agent".into(), "prompt".into())),
        feature_flags: vec!["flag".into()],
        ingress: None,
        chat_tools: None,
        gitlab: if status & 0x40 != 0 { duo_core::version::GitlabVersion::ASSUMED } else { duo_core::version::GitlabVersion::from_header(Some("19.2.0")) },
    };
    let headers = vec![("content-type".to_owned(), "application/json".to_owned()), ("retry-after".to_owned(), "3".to_owned())];
    let resp = UpstreamResponse {
        status: STATUSES[*status as usize % STATUSES.len()],
        headers: &headers,
        body,
        via_upstream: Some(status & 0x40 == 0),
    };
    let parsed = codec::parse_completion(wire, &headers, body);
    if wire.is_openai() {
        // The borrowed fast path reads every answer as the tree rules do.
        assert_eq!(parsed, duo_llm::openai::parse_as_tree(wire, body));
    }
    let answer = codec::translate_response(&ctx, &resp, 1_796_000_000);
    assert!((200..600).contains(&answer.status), "status {}", answer.status);
    if shape != AnswerShape::ChatAgent || answer.status != 200 {
        assert!(serde_json::from_slice::<serde_json::Value>(&answer.body).is_ok(), "answer body is not JSON: {:?}", String::from_utf8_lossy(&answer.body));
    }
});
