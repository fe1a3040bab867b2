//! Micro-benchmarks of duo_router's hot pure functions (native; `./build.sh bench` runs them):
//! prompt rendering, provider request build (vLLM / Bedrock Converse / Azure), answer
//! translation, and the stream translator per chunk (OpenAI SSE and Bedrock event stream).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use duo_core::catalogue::EndpointKind;
use duo_router::codec::{self, Call, UpstreamResponse};
use duo_router::model::{Api, ModelConfig, Platform};
use duo_router::prompts::{PromptSet, RenderOptions};
use duo_llm::sample;
use duo_llm::stream::Dialect;
use duo_router::framing::Framing;
use serde_json::{Map, Value, json};
use std::hint::black_box;

const NOW: u64 = 1_798_675_200;

fn fail(what: &str, e: impl std::fmt::Debug) -> ! {
    eprintln!("bench setup failed: {what}: {e:?}");
    std::process::exit(1)
}

fn model(v: Value) -> ModelConfig {
    serde_json::from_value(v).unwrap_or_else(|e| fail("model", e))
}

fn models() -> Vec<(&'static str, ModelConfig)> {
    vec![
        ("vllm", model(json!({"platform": "vllm", "cluster": "c", "authority": "vllm:8000", "base_path": "/v1",
            "model": "Codestral-22B-v0.1", "family": "codestral", "params": {"temperature": 0.2, "max_tokens": 512}}))),
        ("bedrock_converse", model(json!({"platform": "bedrock", "cluster": "b", "authority": "bedrock-runtime.us-east-1.amazonaws.com",
            "model": "us.anthropic.claude-3-5-sonnet-20240620-v1:0", "family": "claude_3", "api": "converse"}))),
        ("azure", model(json!({"platform": "azure_openai", "cluster": "a", "authority": "myres.openai.azure.com",
            "model": "gpt-4o-deploy", "family": "gpt", "api_version": "2024-10-21"}))),
    ]
}

/// A unified diff of about `bytes` bytes (the realistic shape of a commit-message request).
pub fn diff(bytes: usize) -> String {
    let mut out = String::from("diff --git a/app/models/user.rb b/app/models/user.rb\nindex 3b18e51..a9c2f0d 100644\n--- a/app/models/user.rb\n+++ b/app/models/user.rb\n");
    let mut i = 0;
    while out.len() < bytes {
        i += 1;
        out.push_str(&format!("@@ -{i},3 +{i},4 @@ class User < ApplicationRecord\n-  validates :name, presence: true\n+  validates :name, presence: true, length: {{ maximum: 255 }}\n+  # keeps \"quotes\" and tabs\tintact\n"));
    }
    out.truncate(bytes);
    out
}

fn bench_prompts(c: &mut Criterion) {
    let set = PromptSet::builtin().unwrap_or_else(|e| fail("prompts", e));
    let mut g = c.benchmark_group("prompt_render");
    for size in [1024usize, 20 * 1024] {
        let mut inputs = Map::new();
        inputs.insert("diff".into(), Value::String(diff(size)));
        for (name, m) in models() {
            let opts = RenderOptions { want_fim: false, today: "2026-11-27" };
            if let Err(e) = set.render("generate_commit_message", m.family, &inputs, opts) {
                fail("render", e);
            }
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_with_input(BenchmarkId::new(format!("generate_commit_message_{name}"), size), &inputs, |b, inputs| {
                b.iter(|| set.render("generate_commit_message", m.family, black_box(inputs), opts))
            });
        }
    }
    g.finish();
}

fn bench_request_build(c: &mut Criterion) {
    let set = PromptSet::builtin().unwrap_or_else(|e| fail("prompts", e));
    let mut g = c.benchmark_group("request_build");
    for size in [1024usize, 20 * 1024] {
        let body = serde_json::to_vec(&json!({"inputs": {"diff": diff(size)}, "stream": false})).unwrap_or_else(|e| fail("body", e));
        for (name, m) in models() {
            let call = Call { kind: EndpointKind::PromptV1, prompt_id: Some("generate_commit_message"), model: &m, prompts: &set, now_unix: NOW };
            if let Err(e) = codec::build_upstream_request(&call, &body) {
                fail("build", e);
            }
            g.throughput(Throughput::Bytes(body.len() as u64));
            g.bench_with_input(BenchmarkId::new(format!("generate_commit_message_{name}"), size), &body, |b, body| {
                b.iter(|| codec::build_upstream_request(&call, black_box(body)))
            });
        }
    }
    g.finish();
}

fn bench_answer(c: &mut Criterion) {
    let set = PromptSet::builtin().unwrap_or_else(|e| fail("prompts", e));
    let body = serde_json::to_vec(&json!({"inputs": {"diff": diff(1024)}})).unwrap_or_else(|e| fail("body", e));
    let text = "Validate the length of user names\n\nNames longer than 255 characters are refused.";
    let answers: [(&str, Value); 3] = [
        ("vllm", json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "Codestral-22B-v0.1",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 300, "completion_tokens": 20, "total_tokens": 320}})),
        ("bedrock_converse", json!({"output": {"message": {"role": "assistant", "content": [{"text": text}]}},
            "stopReason": "end_turn", "usage": {"inputTokens": 300, "outputTokens": 20, "totalTokens": 320}, "metrics": {"latencyMs": 100}})),
        ("azure", json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 300, "completion_tokens": 20, "total_tokens": 320}})),
    ];
    let headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    let mut g = c.benchmark_group("answer_translate");
    for ((name, m), (_, answer)) in models().into_iter().zip(answers) {
        let call = Call { kind: EndpointKind::PromptV1, prompt_id: Some("generate_commit_message"), model: &m, prompts: &set, now_unix: NOW };
        let req = codec::build_upstream_request(&call, &body).unwrap_or_else(|e| fail("build", e));
        let raw = serde_json::to_vec(&answer).unwrap_or_else(|e| fail("answer", e));
        let resp = UpstreamResponse { status: 200, headers: &headers, body: &raw, via_upstream: Some(true) };
        let out = codec::translate_response(&req.answer, &resp, NOW);
        if out.status != 200 {
            fail("translate", String::from_utf8_lossy(&out.body).into_owned());
        }
        g.bench_function(name, |b| b.iter(|| codec::translate_response(&req.answer, black_box(&resp), NOW)));
    }
    g.finish();
}

/// One upstream event per piece, then the end (usage and end marker), as separate chunks.
fn sample_events(dialect: Dialect, pieces: &[String]) -> Vec<Vec<u8>> {
    let mut events: Vec<Vec<u8>> = Vec::with_capacity(pieces.len() + 1);
    for p in pieces {
        let mut ev = Vec::new();
        sample::text_event(dialect, p, &mut ev).unwrap_or_else(|e| fail("event", e));
        events.push(ev);
    }
    let mut end = Vec::new();
    sample::end_events(dialect, duo_llm::Usage::known(Some(300), Some(200), None), &mut end).unwrap_or_else(|e| fail("end", e));
    events.push(end);
    events
}

/// Pushes every event through a fresh translator: (ended complete, bytes written).
fn translate_all(mut t: duo_llm::stream::StreamTranslator, events: &[Vec<u8>]) -> (bool, usize) {
    let mut out = Vec::with_capacity(4096);
    for ev in events {
        if t.push(ev, &mut out).is_err() {
            break;
        }
    }
    (t.finish(&mut out).is_complete(), out.len())
}

/// 200 upstream events pushed one by one (one body callback each), then the end: the time per
/// element is the translator's cost per chunk.
fn bench_stream(c: &mut Criterion) {
    const CHUNKS: usize = 200;
    let pieces: Vec<String> = (0..CHUNKS).map(|i| format!("word{i} ")).collect();
    let mut g = c.benchmark_group("stream_translate");
    let ingress = || {
        let id = duo_llm::serve::AnswerId { id: "chatcmpl-bench".into(), created: NOW, model: "claude".into() };
        duo_llm::stream::StreamTranslator::new(Platform::Bedrock, Api::Converse, Box::new(duo_llm::serve::ChunkWriter::new(id, true)))
    };
    let cases: [(&str, Platform, Api, &dyn Fn() -> duo_llm::stream::StreamTranslator); 3] = [
        ("openai_sse", Platform::Vllm, Api::Chat, &|| Framing::RawText.translator(Platform::Vllm, Api::Chat)),
        ("bedrock_converse_stream", Platform::Bedrock, Api::Converse, &|| Framing::RawText.translator(Platform::Bedrock, Api::Converse)),
        // The model ingress: a ConverseStream re-written as OpenAI chunks (target: 5 µs a chunk).
        ("ingress_converse_to_openai_chunks", Platform::Bedrock, Api::Converse, &ingress),
    ];
    for (name, platform, api, translator) in cases {
        let events = sample_events(Dialect::of(platform, api), &pieces);
        let (complete, len) = translate_all(translator(), &events);
        if !complete || len == 0 {
            fail(name, "the sample stream did not translate completely");
        }
        g.throughput(Throughput::Elements(CHUNKS as u64));
        g.bench_function(format!("{name}_200_chunks"), |b| b.iter(|| translate_all(translator(), black_box(&events))));
    }
    g.finish();
}

criterion_group!(benches, bench_prompts, bench_request_build, bench_answer, bench_stream);
criterion_main!(benches);
