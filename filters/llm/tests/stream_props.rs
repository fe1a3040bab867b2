//! Property tests of the stream codecs (native only: proptest does not run under Node):
//! re-chunking never changes the output, decoders round-trip what the encoders write, and
//! arbitrary bytes never panic nor end complete by accident. Plus `per_chunk_cost`, an ignored
//! micro-benchmark.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

#![cfg(not(target_arch = "wasm32"))]

use duo_llm::stream::eventstream::{EventStreamDecoder, HeaderValue, encode_message};
use duo_llm::stream::sse::SseDecoder;
use duo_llm::stream::{Dialect, Ended, PlainText, Reframer, StreamTranslator};
use duo_llm::{Api, Platform, Usage, sample};
use proptest::prelude::*;

const FIXTURES: &[(&str, Platform, Api, &[u8])] = &[
    ("vllm_chat", Platform::Vllm, Api::Chat, include_bytes!("data/stream/vllm_chat.sse")),
    ("vllm_completions", Platform::Vllm, Api::Completions, include_bytes!("data/stream/vllm_completions.sse")),
    ("vllm_inband_error", Platform::Vllm, Api::Chat, include_bytes!("data/stream/vllm_inband_error.sse")),
    ("azure_chat", Platform::AzureOpenai, Api::Chat, include_bytes!("data/stream/azure_chat.sse")),
    ("azure_content_filter", Platform::AzureOpenai, Api::Chat, include_bytes!("data/stream/azure_content_filter.sse")),
    ("converse_text", Platform::Bedrock, Api::Converse, include_bytes!("data/stream/converse_stream_text.bin")),
    ("converse_throttled", Platform::Bedrock, Api::Converse, include_bytes!("data/stream/converse_stream_midstream_throttling.bin")),
    ("invoke_anthropic", Platform::Bedrock, Api::Invoke, include_bytes!("data/stream/invoke_stream_anthropic.bin")),
];

/// The plain text, and a framing that writes every callback (text, tool calls, stop reason,
/// usage at the end): both must be independent of how the upstream bytes were chunked.
#[derive(Clone, Copy, Debug)]
enum Framing {
    RawText,
    Lines,
}

struct Lines;

impl Reframer for Lines {
    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("text {text:?}\n").as_bytes());
    }

    fn tool_call(&mut self, index: u32, id: Option<&str>, name: Option<&str>, arguments: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("tool {index} {id:?} {name:?} {arguments:?}\n").as_bytes());
    }

    fn finish_reason(&mut self, reason: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("finish {reason}\n").as_bytes());
    }

    fn complete(&mut self, usage: &Usage, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("usage {usage:?}\n").as_bytes());
    }
}

impl Framing {
    fn reframer(self) -> Box<dyn Reframer> {
        match self {
            Framing::RawText => Box::new(PlainText),
            Framing::Lines => Box::new(Lines),
        }
    }
}

fn framings() -> Vec<Framing> {
    vec![Framing::RawText, Framing::Lines]
}

/// Splits `body` at the given cut points (taken modulo its length, sorted).
fn chunks<'a>(body: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| if body.is_empty() { 0 } else { c % (body.len() + 1) }).collect();
    at.sort_unstable();
    let mut out = Vec::new();
    let mut prev = 0;
    for c in at {
        out.push(&body[prev..c]);
        // Envoy may hand over empty chunks (e.g. the end_of_stream call): one after each piece
        out.push(&body[c..c]);
        prev = c;
    }
    out.push(&body[prev..]);
    out
}

fn translate(platform: Platform, api: Api, framing: Framing, parts: &[&[u8]]) -> (Vec<u8>, Ended, Usage) {
    let mut t = StreamTranslator::new(platform, api, framing.reframer());
    let mut out = Vec::new();
    let mut broken = false;
    for p in parts {
        let before = out.len();
        let r = t.push(p, &mut out);
        if broken {
            assert!(r.is_err());
            assert_eq!(out.len(), before);
        }
        broken |= r.is_err();
    }
    let ended = t.finish(&mut out);
    (out, ended, t.usage())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rechunking_never_changes_the_output(fixture in 0..FIXTURES.len(), framing in 0usize..2, cuts in proptest::collection::vec(any::<usize>(), 0..40)) {
        let (name, platform, api, body) = FIXTURES[fixture];
        let f = framings()[framing];
        let whole = translate(platform, api, f, &[body]);
        let split = translate(platform, api, f, &chunks(body, &cuts));
        prop_assert_eq!(split, whole, "{}", name);
    }

    #[test]
    fn sample_streams_round_trip_under_any_chunking(
        pieces in proptest::collection::vec("\\PC{0,12}", 1..12),
        which in 0usize..3,
        cuts in proptest::collection::vec(any::<usize>(), 0..30),
    ) {
        let (platform, api) = [(Platform::Vllm, Api::Chat), (Platform::Bedrock, Api::Converse), (Platform::Bedrock, Api::Invoke)][which];
        let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
        let usage = Usage { input_tokens: Some(3), output_tokens: Some(5), total_tokens: Some(8) };
        let body = sample::stream(Dialect::of(platform, api), &refs, usage).unwrap();
        let (out, ended, got_usage) = translate(platform, api, Framing::RawText, &chunks(&body, &cuts));
        prop_assert_eq!(String::from_utf8(out).unwrap(), pieces.concat());
        prop_assert_eq!(ended, Ended::Complete);
        prop_assert_eq!(got_usage, usage);
    }

    #[test]
    fn any_prefix_of_a_stream_is_never_complete_before_its_end(fixture in 0..FIXTURES.len(), cut in any::<usize>()) {
        let (_, platform, api, body) = FIXTURES[fixture];
        let cut = cut % body.len();
        let (out, ended, _) = translate(platform, api, Framing::RawText, &[&body[..cut]]);
        let (whole_out, whole_ended, _) = translate(platform, api, Framing::RawText, &[body]);
        prop_assert!(whole_out.starts_with(&out));
        if ended.is_complete() {
            // only a cut inside the trailing bytes after the end marker can be complete
            prop_assert!(whole_ended.is_complete());
            prop_assert_eq!(out, whole_out);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), which in 0usize..4, cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        let (platform, api) = [(Platform::Vllm, Api::Chat), (Platform::AzureOpenai, Api::Chat), (Platform::Bedrock, Api::Converse), (Platform::Bedrock, Api::Invoke)][which];
        let (_, ended, _) = translate(platform, api, Framing::RawText, &chunks(&bytes, &cuts));
        let (_, ended_whole, _) = translate(platform, api, Framing::RawText, &[&bytes]);
        prop_assert_eq!(ended, ended_whole);
    }

    #[test]
    fn sse_decoder_round_trips_events(
        events in proptest::collection::vec(("[a-z_]{0,8}", proptest::collection::vec("[^\r\n]{0,20}", 1..4)), 0..8),
        eol in 0usize..3,
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
    ) {
        let nl = ["\n", "\r\n", "\r"][eol];
        let mut body = String::new();
        for (event, lines) in &events {
            body.push_str(": comment");
            body.push_str(nl);
            if !event.is_empty() {
                body.push_str(&format!("event: {event}{nl}"));
            }
            for l in lines {
                body.push_str(&format!("data: {l}{nl}"));
            }
            body.push_str(nl);
        }
        let mut d = SseDecoder::new();
        let mut got = Vec::new();
        for part in chunks(body.as_bytes(), &cuts) {
            d.feed(part, |e| {
                got.push((String::from_utf8(e.event.to_vec()).unwrap(), String::from_utf8(e.data.to_vec()).unwrap()));
                Ok(())
            }).unwrap();
        }
        prop_assert!(!d.finish());
        let want: Vec<(String, String)> = events.iter().map(|(e, l)| (e.clone(), l.join("\n"))).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn event_stream_decoder_round_trips_messages(
        messages in proptest::collection::vec((proptest::collection::vec(("[a-z:-]{1,12}", "\\PC{0,20}", any::<i64>(), any::<bool>()), 0..4), proptest::collection::vec(any::<u8>(), 0..200)), 0..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
    ) {
        let mut body = Vec::new();
        let mut want = Vec::new();
        for (headers, payload) in &messages {
            // names made unique by an index prefix
            let names: Vec<String> = headers.iter().enumerate().map(|(i, h)| format!("{i}{}", h.0)).collect();
            let hv: Vec<(&str, HeaderValue<'_>)> = headers.iter().zip(&names).map(|(h, n)| {
                (n.as_str(), if h.3 { HeaderValue::String(h.1.as_str()) } else { HeaderValue::Long(h.2) })
            }).collect();
            encode_message(&hv, payload, &mut body).unwrap();
            want.push((hv.iter().map(|(n, v)| format!("{n}={v:?}")).collect::<Vec<_>>(), payload.clone()));
        }
        let mut d = EventStreamDecoder::new();
        let mut got = Vec::new();
        for part in chunks(&body, &cuts) {
            d.feed(part, |m| {
                got.push((m.headers.iter().map(|(n, v)| format!("{n}={v:?}")).collect::<Vec<_>>(), m.payload.to_vec()));
                Ok(())
            }).unwrap();
        }
        prop_assert!(!d.finish());
        prop_assert_eq!(got, want);
    }
}

/// Cost per upstream chunk, natively (run with `--release -- --ignored --nocapture`).
#[test]
#[ignore]
fn per_chunk_cost() {
    let piece = "    let total = items.iter().map(|x| x.price).sum::<u64>();\n";
    let pieces: Vec<&str> = std::iter::repeat_n(piece, 2000).collect();
    let usage = Usage { input_tokens: Some(100), output_tokens: Some(2000), total_tokens: Some(2100) };
    for (platform, api) in [(Platform::Vllm, Api::Chat), (Platform::Bedrock, Api::Converse), (Platform::Bedrock, Api::Invoke)] {
        let dialect = Dialect::of(platform, api);
        let mut events = Vec::new();
        for p in &pieces {
            let mut e = Vec::new();
            sample::text_event(dialect, p, &mut e).unwrap();
            events.push(e);
        }
        let mut end = Vec::new();
        sample::end_events(dialect, usage, &mut end).unwrap();
        for framing in framings() {
            let label = format!("{framing:?}");
            let rounds = 20;
            let start = std::time::Instant::now();
            let mut out = Vec::with_capacity(4096);
            for _ in 0..rounds {
                let mut t = StreamTranslator::new(platform, api, framing.reframer());
                for e in &events {
                    out.clear();
                    t.push(e, &mut out).unwrap();
                }
                out.clear();
                t.push(&end, &mut out).unwrap();
                assert!(t.finish(&mut out).is_complete());
            }
            let per = start.elapsed().as_nanos() as f64 / (rounds * events.len()) as f64;
            println!("{platform:?}/{api:?} {}: {per:.0} ns per chunk ({} B/chunk)", &label[..label.find([' ', '{']).unwrap_or(label.len())], events[0].len());
        }
    }
}
