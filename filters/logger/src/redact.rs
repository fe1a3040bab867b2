//! Secret redaction for every free-text value that goes into a log record.
//!
//! A hand-written scanner (no regex engine in the wasm module): it finds spans that hold a
//! secret and replaces each with [`MARK`]. Rules, all ASCII-case-insensitive:
//!
//! 1. `key=value`, `key: value`, `"key": "value"` (also JSON escaped inside a string, `\"key\"`)
//!    where `key` is a credential name ([`SECRET_KEYS`]: `api_key`, `model_api_key`,
//!    `authorization`, `x-amz-signature`, `x-amz-security-token`, `password`, ...). A quoted value
//!    runs to its closing quote, or to the end of the text when the quote never closes (text cut by
//!    truncation). An `authorization` value keeps its scheme word and loses the rest of the line.
//! 2. `Bearer <token>` / `Basic <credentials>` anywhere.
//! 3. `AWS4-HMAC-SHA256 <anything up to end of line or quote>` (credential scope, signed headers,
//!    signature).
//! 4. Token-looking words: JWTs and JWT parts (`eyJ...`), AWS access key ids (`AKIA`/`ASIA` + 16),
//!    and API-key prefixes (`sk-`, `glpat-`, ... followed by at least 16 characters).
//!
//! Over-redacting is acceptable; leaking is not.

use std::borrow::Cow;

/// What a secret is replaced with.
pub const MARK: &str = "[REDACTED]";

/// Credential names whose value is always redacted (lower case).
const SECRET_KEYS: &[&str] = &[
    "api_key",
    "api-key",
    "apikey",
    "model_api_key",
    "x-api-key",
    "authorization",
    "proxy-authorization",
    "x-amz-signature",
    "x-amz-security-token",
    "x-amz-credential",
    "aws_secret_access_key",
    "aws_session_token",
    "secret_access_key",
    "session_token",
    "access_token",
    "refresh_token",
    "id_token",
    "private_token",
    "private-token",
    "token",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "signature",
    "credential",
    "signing_key_pem",
    "private_key",
    "x-gitlab-oidc-token",
];

/// Authorization schemes followed by a credential.
const SCHEMES: &[&str] = &["bearer", "basic"];

/// Prefixes of well-known API key formats (lower-case compare), each followed by >= 16 chars.
const KEY_PREFIXES: &[&str] = &["sk-", "sk_", "glpat-", "gloas-", "glrt-", "gldt-", "glptt-", "glcbt-", "xoxb-", "ghp_", "github_pat_"];

fn is_key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Characters of a token-looking word (base64, base64url, JWT dots, key punctuation).
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+' | b'/' | b'=' | b'~')
}

/// Where an unquoted value ends.
fn is_value_end(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b'&' | b',' | b';' | b'"' | b'\'' | b'}' | b')' | b']' | b'<' | b'>' | b'\\')
}

/// Replaces every secret in `text` with [`MARK`]; borrows when there is nothing to hide.
pub fn redact(text: &str) -> Cow<'_, str> {
    redact_with(text, true)
}

/// [`redact`] without the shortcut that skips the rules a text cannot match: the fuzz oracle
/// (fuzz/fuzz_targets/redact.rs) that the shortcut never changes the outcome.
#[cfg(any(test, feature = "testing"))]
pub fn redact_unfiltered(text: &str) -> Cow<'_, str> {
    redact_with(text, false)
}

fn redact_with(text: &str, prefilter: bool) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    // Rules 1 and 2 need a separator after their name (`=`, `:`, a blank); rules 3 and 4 need a
    // run of at least 16 token characters (`aws4-hmac-sha256`, the shortest secret word). Most
    // record values (ids, names, paths) lack one or the other, so those rules are skipped exactly.
    let separated = !prefilter || bytes.iter().any(|&b| matches!(b, b'=' | b':' | b' ' | b'\t'));
    let long_word = !prefilter || has_token_run(bytes, 16);
    if !separated && !long_word {
        return Cow::Borrowed(text);
    }
    let mut spans = Vec::new();
    let lower = text.to_ascii_lowercase();
    let lower = lower.as_bytes();
    if separated {
        key_values(bytes, lower, &mut spans);
        schemes(bytes, lower, &mut spans);
    }
    if long_word {
        aws_sigv4(bytes, lower, &mut spans);
        token_words(bytes, lower, &mut spans);
    }
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in spans {
        if end <= at {
            continue;
        }
        let start = start.max(at);
        // Spans are found on ASCII delimiters, so both ends are char boundaries; stay safe anyway.
        if let (Some(keep), true) = (text.get(at..start), text.is_char_boundary(end)) {
            out.push_str(keep);
            out.push_str(MARK);
            at = end;
        }
    }
    out.push_str(text.get(at..).unwrap_or(""));
    Cow::Owned(out)
}

/// Whether `bytes` holds `min` or more token characters in a row.
fn has_token_run(bytes: &[u8], min: usize) -> bool {
    let mut run = 0;
    for &b in bytes {
        run = if is_token_char(b) { run + 1 } else { 0 };
        if run >= min {
            return true;
        }
    }
    false
}

/// Every start of `needle` in `haystack`, overlapping ones included; candidates come from a fast
/// scan for the first byte rather than a compare at every position.
fn find_all<'a>(haystack: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    let (first, starts) = match needle.first() {
        Some(&b) => (b, &haystack[..haystack.len().saturating_sub(needle.len() - 1)]),
        None => (0, &haystack[..0]),
    };
    memchr::memchr_iter(first, starts).filter(move |&i| haystack[i..].starts_with(needle))
}

fn skip_spaces(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
        i += 1;
    }
    i
}

/// Bytes that start some credential name: rule 1 looks at no other position.
const KEY_STARTS: [bool; 256] = {
    let mut table = [false; 256];
    let mut k = 0;
    while k < SECRET_KEYS.len() {
        table[SECRET_KEYS[k].as_bytes()[0] as usize] = true;
        k += 1;
    }
    table
};

/// Rule 1: credential-named keys and their values. One pass over the text, not one search per
/// name: every record value comes through here, and thirty searches per value were the logger's
/// main cost (~50 µs per record, natively).
fn key_values(bytes: &[u8], lower: &[u8], spans: &mut Vec<(usize, usize)>) {
    for (start, &first) in lower.iter().enumerate() {
        if !KEY_STARTS[usize::from(first)] {
            continue;
        }
        for key in SECRET_KEYS.iter().filter(|k| k.as_bytes()[0] == first && lower[start..].starts_with(k.as_bytes())) {
            let end = start + key.len();
            if start > 0 && is_key_char(lower[start - 1]) {
                continue;
            }
            if end < lower.len() && is_key_char(lower[end]) {
                continue;
            }
            // Closing quote of a quoted key (`"api_key"`, `\"api_key\"`, `'api_key'`).
            let mut i = end;
            if i < bytes.len() && bytes[i] == b'\\' {
                i += 1;
            }
            if i < bytes.len() && (bytes[i] == b'"' || bytes[i] == b'\'') {
                i += 1;
            }
            i = skip_spaces(bytes, i);
            if i >= bytes.len() || !(bytes[i] == b'=' || bytes[i] == b':') {
                continue;
            }
            i = skip_spaces(bytes, i + 1);
            if i < bytes.len() && bytes[i] == b'\\' {
                i += 1;
            }
            if bytes[i..].starts_with(MARK.as_bytes()) || bytes.get(i + 1..).is_some_and(|rest| rest.starts_with(MARK.as_bytes())) {
                continue; // already redacted
            }
            let authorization = key.ends_with("authorization");
            if i < bytes.len() && (bytes[i] == b'"' || bytes[i] == b'\'') {
                let quote = bytes[i];
                let value_start = i + 1;
                let mut value_end = bytes[value_start..].iter().position(|&b| b == quote).map_or(bytes.len(), |p| value_start + p);
                if value_end > value_start && bytes[value_end - 1] == b'\\' {
                    value_end -= 1;
                }
                if value_end > value_start {
                    let from = if authorization { after_scheme(lower, value_start, value_end) } else { value_start };
                    spans.push((from, value_end));
                }
            } else if authorization {
                let line_end = bytes[i..].iter().position(|&b| b == b'\n' || b == b'\r').map_or(bytes.len(), |p| i + p);
                if line_end > i {
                    spans.push((after_scheme(lower, i, line_end), line_end));
                }
            } else {
                let value_end = bytes[i..].iter().position(|&b| is_value_end(b)).map_or(bytes.len(), |p| i + p);
                if value_end > i {
                    spans.push((i, value_end));
                }
            }
        }
    }
}

/// Keeps a leading scheme word (`Bearer `, `AWS4-HMAC-SHA256 `) visible, hides the rest.
fn after_scheme(lower: &[u8], start: usize, end: usize) -> usize {
    let word_end = lower[start..end].iter().position(|&b| b == b' ').map_or(end, |p| start + p);
    let word = &lower[start..word_end];
    let known = SCHEMES.iter().any(|s| s.as_bytes() == word) || word == b"aws4-hmac-sha256";
    if known && word_end < end { skip_spaces(lower, word_end) } else { start }
}

/// Rule 2: `Bearer <token>`, `Basic <credentials>`.
fn schemes(bytes: &[u8], lower: &[u8], spans: &mut Vec<(usize, usize)>) {
    for scheme in SCHEMES {
        for start in find_all(lower, scheme.as_bytes()) {
            if start > 0 && is_key_char(lower[start - 1]) {
                continue;
            }
            let end = start + scheme.len();
            if end >= bytes.len() || !(bytes[end] == b' ' || bytes[end] == b'\t') {
                continue;
            }
            let value_start = skip_spaces(bytes, end);
            let value_end = bytes[value_start..].iter().position(|&b| !is_token_char(b)).map_or(bytes.len(), |p| value_start + p);
            if value_end > value_start {
                spans.push((value_start, value_end));
            }
        }
    }
}

/// Rule 3: everything after `AWS4-HMAC-SHA256` up to the end of the line or a quote.
fn aws_sigv4(bytes: &[u8], lower: &[u8], spans: &mut Vec<(usize, usize)>) {
    const ALG: &[u8] = b"aws4-hmac-sha256";
    for start in find_all(lower, ALG) {
        let from = start + ALG.len();
        let to = bytes[from..].iter().position(|&b| matches!(b, b'\n' | b'\r' | b'"' | b'\'')).map_or(bytes.len(), |p| from + p);
        if to > from && bytes[from..to].iter().any(|b| !b.is_ascii_whitespace()) {
            spans.push((skip_spaces(bytes, from), to));
        }
    }
}

/// Rule 4: words that look like tokens or keys, whatever surrounds them.
fn token_words(bytes: &[u8], lower: &[u8], spans: &mut Vec<(usize, usize)>) {
    let mut i = 0;
    while i < bytes.len() {
        if !is_token_char(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_token_char(bytes[i]) {
            i += 1;
        }
        let word = &bytes[start..i];
        if secret_word(word, &lower[start..i]) {
            spans.push((start, i));
        } else if let Some(p) = (1..word.len()).find(|&p| !word[p - 1].is_ascii_alphanumeric() && looks_like_jwt(&word[p..])) {
            // A JWT glued to punctuation inside the word: `jwt=eyJ...`, `/x/eyJ...`.
            spans.push((start + p, i));
        }
    }
}

fn looks_like_jwt(word: &[u8]) -> bool {
    word.starts_with(b"eyJ") && word.len() >= 16
}

fn secret_word(word: &[u8], lower: &[u8]) -> bool {
    if looks_like_jwt(word) {
        return true;
    }
    // AWS access key id: AKIA/ASIA + 16 upper-case letters or digits.
    if word.len() >= 20
        && (word.starts_with(b"AKIA") || word.starts_with(b"ASIA"))
        && word[4..20].iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return true;
    }
    KEY_PREFIXES.iter().any(|p| lower.starts_with(p.as_bytes()) && word.len() >= p.len() + 16)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const JWT: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiIxMjMiLCJhdWQiOiJnaXRsYWItYWktZ2F0ZXdheSJ9.c2lnbmF0dXJlLWJ5dGVz";

    fn hidden(text: &str, secret: &str) {
        let out = redact(text);
        assert!(!out.contains(secret), "secret {secret:?} survived in {out:?} (from {text:?})");
        assert!(out.contains(MARK), "no mark in {out:?}");
    }

    /// The prefilter only skips rules that cannot match: every text built from these fragments
    /// (up to four of them, ~50k texts) comes out the same with and without it.
    #[test]
    fn the_prefilter_never_changes_the_outcome() {
        const PARTS: &[&str] = &[
            "api_key", "=", ":", " ", "\t", "Bearer", "\"", "\\", "eyJhbGciOiJIUzI1NiJ9", "AKIAABCDEFGHIJKLMNOP",
            "aws4-hmac-sha256", "glpat-", "0123456789abcdef", "x", "/",
        ];
        let mut texts = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = texts.iter().flat_map(|t| PARTS.iter().map(move |p| format!("{t}{p}"))).collect();
            for t in &longer {
                assert_eq!(redact_with(t, true), redact_with(t, false), "{t:?}");
            }
            texts = longer;
        }
    }

    #[test]
    fn clean_text_is_borrowed_and_unchanged() {
        for text in [
            "",
            "/v2/code/completions",
            "Inference failed: upstream 503",
            "GitLab Workhorse 17.0, code_completions on codestral",
            "the key to success is patience",
            "token count 42 exceeded",
            "tokens: many",
            "duo_chat_explain_code",
            "aws4 is a word",
        ] {
            assert!(matches!(redact(text), Cow::Borrowed(t) if t == text), "{text:?} was changed to {:?}", redact(text));
        }
    }

    #[test]
    fn bearer_and_basic_credentials() {
        hidden("Authorization: Bearer abc.def-ghi", "abc.def-ghi");
        hidden("bearer s3cr3t-value and more", "s3cr3t-value");
        hidden("BEARER\tx1y2z3", "x1y2z3");
        hidden("Basic dXNlcjpwYXNz", "dXNlcjpwYXNz");
        assert_eq!(redact("got Bearer abc123 then stop"), "got Bearer [REDACTED] then stop");
        assert_eq!(redact("Authorization: Bearer abc123\nnext line"), "Authorization: Bearer [REDACTED]\nnext line");
    }

    #[test]
    fn api_keys_in_every_spelling() {
        hidden(r#"{"api_key": "sk-live-123"}"#, "sk-live-123");
        hidden(r#"{"model_api_key":"my-model-key"}"#, "my-model-key");
        hidden(r#"{\"model_api_key\": \"esc-key-9\"}"#, "esc-key-9");
        hidden("api_key=k123&model=x", "k123");
        hidden("API-KEY: azure-key-value", "azure-key-value");
        hidden("x-api-key:abc", "abc");
        hidden("'apikey': 'quoted'", "quoted");
        hidden("password = hunter2", "hunter2");
        hidden("?private_token=glpat-short&x=1", "glpat-short");
        // Redacting twice changes nothing.
        for text in ["api_key=[REDACTED]&x=1", r#"{"api_key":"[REDACTED]"}"#, "Bearer [REDACTED]"] {
            assert_eq!(redact(text), text);
        }
        assert_eq!(redact("/v1/x?api_key=k123&model=codestral"), "/v1/x?api_key=[REDACTED]&model=codestral");
        assert_eq!(redact(r#"{"api_key":"a","model":"m"}"#), r#"{"api_key":"[REDACTED]","model":"m"}"#);
    }

    #[test]
    fn quoted_value_cut_by_truncation_is_hidden_to_the_end() {
        hidden(r#"{"prompt":"hi","api_key": "sk-abcdef"#, "sk-abcdef");
        assert_eq!(redact(r#"{"api_key": "partial"#), r#"{"api_key": "[REDACTED]"#);
    }

    #[test]
    fn aws_signatures() {
        let header = "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261126/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024";
        for secret in ["AKIDEXAMPLE", "fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024", "20261126/us-east-1"] {
            hidden(header, secret);
        }
        assert!(redact(header).starts_with("Authorization: AWS4-HMAC-SHA256 [REDACTED]"));
        hidden("https://x/?X-Amz-Signature=abcdef0123&X-Amz-Date=1", "abcdef0123");
        hidden("X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F2026", "AKIAIOSFODNN7EXAMPLE");
        hidden("x-amz-security-token: IQoJb3JpZ2luX2VjEJr//////////wEaCXVz", "IQoJb3JpZ2luX2VjEJr");
        hidden("key id AKIAIOSFODNN7EXAMPLE leaked", "AKIAIOSFODNN7EXAMPLE");
        hidden("session ASIAY34FZKBOKMUTVV7A here", "ASIAY34FZKBOKMUTVV7A");
        hidden(r#"{"signature":"0a1b2c"}"#, "0a1b2c");
    }

    #[test]
    fn jwts_anywhere() {
        hidden(JWT, JWT);
        hidden(&format!("token is {JWT}."), "c2lnbmF0dXJlLWJ5dGVz");
        hidden(&format!("/v1/x?jwt={JWT}"), "eyJzdWIiOiIxMjMi");
        hidden(&format!("/v1/x/{JWT}"), "eyJzdWIiOiIxMjMi");
        hidden(&format!("{{\"t\":\"{JWT}\"}}"), "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0");
        hidden("header only eyJhbGciOiJSUzI1NiJ9 here", "eyJhbGciOiJSUzI1NiJ9");
        assert_eq!(redact(&format!("a {JWT} b")), "a [REDACTED] b");
    }

    #[test]
    fn well_known_key_formats() {
        hidden("use sk-proj-ABCDEFGHIJKLMNOPQRSTUV please", "ABCDEFGHIJKLMNOPQRSTUV");
        hidden("glpat-xxxxxxxxxxxxxxxxxxxx", "xxxxxxxxxxxxxxxxxxxx");
        // Short words with those prefixes are ordinary text.
        assert_eq!(redact("sk-learn"), "sk-learn");
    }

    #[test]
    fn many_secrets_in_one_text_and_utf8_stays_valid() {
        let text = format!("é Bearer tok1 ü api_key=k2 😀 {JWT} X-Amz-Signature=sig3 ñ");
        let out = redact(&text);
        for secret in ["tok1", "k2", "eyJ", "sig3"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        for keep in ["é", "ü", "😀", "ñ"] {
            assert!(out.contains(keep));
        }
    }

    #[test]
    fn every_secret_form_in_every_context() {
        // (text carrying a secret, the part that must disappear)
        let forms: &[(&str, &str)] = &[
            ("Bearer S3cretTok.en_1", "S3cretTok"),
            ("authorization: Bearer S3cretTok", "S3cretTok"),
            ("Authorization=Basic dXNlcjpwdw==", "dXNlcjpwdw"),
            ("api_key=S3cretKey", "S3cretKey"),
            ("\"api_key\": \"S3cret Key\"", "S3cret Key"),
            ("'model_api_key':'S3cretKey'", "S3cretKey"),
            ("\\\"model_api_key\\\":\\\"S3cretKey\\\"", "S3cretKey"),
            ("api-key: S3cretKey", "S3cretKey"),
            ("X-Amz-Signature=0123abcd", "0123abcd"),
            ("x-amz-security-token=FwoGZXIvY", "FwoGZXIvY"),
            ("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=0123abcd", "0123abcd"),
            ("AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
            (JWT, "eyJzdWIiOiIxMjMi"),
        ];
        let contexts = ["{}", "x {} y", "\"{}\"", "({})", "<{}>", "[{}]", "{}\nnext", "\t{}", "a,{};b", "é{}ü", "{}&z=1", "{\"k\":\"{}\"}"];
        for (form, secret) in forms {
            for context in contexts {
                let text = context.replacen("{}", form, 1);
                let out = redact(&text);
                assert!(!out.contains(secret), "{secret:?} survived in {out:?} (from {text:?})");
                assert!(out.contains(MARK), "{text:?}");
            }
        }
    }

    #[test]
    fn cut_anywhere_the_secret_never_shows_more_than_its_key() {
        let text = r#"{"model_api_key": "S3cretKeyValue", "prompt": "x"}"#;
        for end in 0..=text.len() {
            let out = redact(&text[..end]);
            assert!(!out.contains("S3c"), "{end}: {out:?}");
        }
    }

    #[test]
    fn key_names_inside_longer_words_do_not_fire() {
        // `tokenizer` and `secretary` are not credential keys.
        assert_eq!(redact("tokenizer=fast secretary: bob"), "tokenizer=fast secretary: bob");
        // ...but the full key does.
        assert_eq!(redact("token=abc"), "token=[REDACTED]");
    }
}
