//! Secret redaction of every free-text log value. Two oracles beyond "no panic":
//! - the prefilter (rules skipped when a text cannot match them) never changes the outcome;
//! - a secret planted between fuzzed text never survives: the input is `prefix \0 suffix`, the
//!   secret's form is picked by the first byte, and the secret's body must not be in the output
//!   unless the fuzzed text itself carries it.
#![no_main]

use duo_logger::redact::{MARK, redact, redact_unfiltered};
use libfuzzer_sys::fuzz_target;

/// Secret forms and the part of each that must never reach a log.
const PLANTED: [(&str, &str); 7] = [
    ("Bearer ", "q7Rk2pXw9LmZ4tVb"),
    ("api_key=", "Zx81KqLp0WvR7tYs"),
    ("\"authorization\": \"Basic ", "dXNlcjpwYXNzd29yZA"),
    ("glpat-", "Hq3Lx9Vw2Ks8Pz1Nc4Rm"),
    ("AKIA", "Q2W3E4R5T6Y7U8I9"),
    ("eyJhbGciOiJSUzI1NiJ9.", "eyJzdWIiOiJ4In0.c2lnbmF0dXJlcw"),
    ("AWS4-HMAC-SHA256 Credential=AKIAX/20260101/us-east-1/bedrock/aws4_request, Signature=", "9f8e7d6c5b4a39281706"),
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let out = redact(&text);
    assert_eq!(out, redact_unfiltered(&text), "prefilter changed the outcome");
    if !text.contains(MARK) && out.as_ref() != text.as_ref() {
        assert!(out.contains(MARK));
    }

    let Some((first, rest)) = data.split_first() else { return };
    let (prefix_name, secret) = PLANTED[*first as usize % PLANTED.len()];
    let rest = String::from_utf8_lossy(rest);
    let (prefix, suffix) = rest.split_once('\0').unwrap_or((rest.as_ref(), ""));
    // The secret is a word of its own: a blank or line break on each side.
    let planted = format!("{prefix} {prefix_name}{secret}\n{suffix}");
    let out = redact(&planted);
    if !prefix.contains(secret) && !suffix.contains(secret) {
        assert!(!out.contains(secret), "leaked {secret:?} from {planted:?}: {out:?}");
    }
});
