//! Streamed model answers as duo_router translates them: SSE (vLLM, Azure: chat and
//! completions), AWS event-stream (Bedrock ConverseStream, InvokeWithResponseStream), into
//! GitLab's framings (raw text, `/v2/prompts` NDJSON-style PromptResponses, v4 SSE, the chat
//! agent's NDJSON events). Input: byte 0 picks platform/API and framing, byte 1 seeds where the
//! stream is cut into chunks, the rest is the upstream body.
//! Oracle: chunk boundaries never change the outcome (how the stream ended, the usage, the
//! error event; with the raw-text framing also every byte GitLab gets: the other framings
//! write one event per upstream delta, so their bytes follow the cuts), as TCP may cut an
//! answer anywhere.
#![no_main]

use duo_llm::stream::{Reframer, StreamTranslator};
use duo_llm::{Api, Platform};
use duo_router::chat::{ChatAgentReframer, ChatEvents};
use duo_router::framing::Framing;
use libfuzzer_sys::fuzz_target;

const WIRES: [(Platform, Api); 5] = [
    (Platform::Vllm, Api::Chat),
    (Platform::Vllm, Api::Completions),
    (Platform::AzureOpenai, Api::Chat),
    (Platform::Bedrock, Api::Converse),
    (Platform::Bedrock, Api::Invoke),
];

fn reframer(which: u8) -> Box<dyn Reframer> {
    match which % 5 {
        0 => Framing::RawText.into_reframer(),
        1 => Framing::PromptResponses { usage_model: Some("codestral".into()) }.into_reframer(),
        2 => Framing::SuggestionsSse { engine: "vllm".into(), name: "codestral".into(), timestamp: 1, feature_flags: vec!["f".into()] }.into_reframer(),
        // Duo Chat for GitLab 18.x (no finish_reason, no usage event) and for 19.x.
        3 => Box::new(ChatAgentReframer::new(ChatEvents::default())),
        _ => Box::new(ChatAgentReframer::new(ChatEvents { finish_reason: true, usage_model: Some("claude".into()), tools: Some(vec!["issue_reader", "build_reader"]) })),
    }
}

fn run(selector: u8, pieces: &[&[u8]]) -> (Vec<u8>, String, String, bool) {
    let (platform, api) = WIRES[selector as usize % WIRES.len()];
    let mut t = StreamTranslator::new(platform, api, reframer(selector / 5));
    let mut out = Vec::new();
    let mut error = String::new();
    for piece in pieces {
        if let Err(e) = t.push(piece, &mut out) {
            error = format!("{e:?}");
        }
    }
    let ended = t.finish(&mut out);
    (out, format!("{ended:?} {error}"), format!("{:?}", t.usage()), t.error_event_written())
}

fuzz_target!(|data: &[u8]| {
    let [selector, seed, body @ ..] = data else { return };
    let whole = run(*selector, &[body]);
    // Cut points from the seed: small, irregular chunks (1..=16 bytes).
    let mut pieces = Vec::new();
    let (mut at, mut state) = (0usize, u32::from(*seed) | 1);
    while at < body.len() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let len = 1 + (state >> 16) as usize % 16;
        pieces.push(&body[at..(at + len).min(body.len())]);
        at += len;
    }
    let mut split = run(*selector, &pieces);
    if (*selector / 5) % 5 != 0 {
        split.0.clone_from(&whole.0);
    }
    assert_eq!(whole, split, "chunk boundaries changed the stream's outcome");
});
