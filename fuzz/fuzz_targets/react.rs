//! The ReAct output parser of the chat agent: model text (streamed) into GitLab's NDJSON
//! agent events (thoughts, tool calls, final answer). Input: byte 0 seeds the cut points, the
//! rest is the model's text (lossy UTF-8). Oracle: cutting the text anywhere (on character
//! boundaries, as the stream decoder delivers text) gives the same events; every event line
//! is JSON.
#![no_main]

use duo_router::chat::ReactStreamParser;
use libfuzzer_sys::fuzz_target;

/// The events with consecutive `final_answer_delta` texts joined (the deltas follow the cuts).
fn events(out: &[u8]) -> Vec<serde_json::Value> {
    let mut events: Vec<serde_json::Value> = Vec::new();
    for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let event: serde_json::Value = serde_json::from_slice(line)
            .unwrap_or_else(|e| panic!("event is not JSON ({e}): {:?}", String::from_utf8_lossy(line)));
        let delta = |v: &serde_json::Value| v["type"] == "final_answer_delta";
        if let Some(last) = events.last_mut()
            && delta(last)
            && delta(&event)
        {
            let joined = format!("{}{}", last["data"]["text"].as_str().unwrap_or(""), event["data"]["text"].as_str().unwrap_or(""));
            last["data"]["text"] = joined.into();
        } else {
            events.push(event);
        }
    }
    events
}

fn run(pieces: &[&str]) -> Vec<u8> {
    let mut parser = ReactStreamParser::new();
    let mut out = Vec::new();
    for piece in pieces {
        parser.push(piece, &mut out);
    }
    parser.finish(&mut out);
    parser.end(true, &mut out);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((seed, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let whole = events(&run(&[&text]));
    let mut pieces = Vec::new();
    let (mut at, mut state) = (0usize, u32::from(*seed) | 1);
    while at < text.len() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let mut end = (at + 1 + (state >> 16) as usize % 12).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        pieces.push(&text[at..end]);
        at = end;
    }
    assert_eq!(whole, events(&run(&pieces)), "cut points changed the agent events");
});
