//! gRPC-shaped answers for the Agent Platform's calls (`/DuoWorkflow/*`, gRPC health).
//!
//! A gRPC client reads `grpc-status` and `grpc-message`, never an HTTP status or a JSON body, so a
//! refusal is a trailers-only response: HTTP 200, `content-type: application/grpc`, the status
//! code and a percent-encoded plain-text message (gRPC over HTTP/2, "Responses"). This module is
//! the pure part (codes, mapping, encoding); `duo_kit::send_grpc_error` sends it.

use crate::errors::GitlabError;

/// The gRPC status codes the gateway answers with (numbers fixed by the gRPC spec).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpcStatus {
    Ok,
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Unimplemented,
    Internal,
    Unavailable,
    Unauthenticated,
}

impl GrpcStatus {
    pub fn code(self) -> u32 {
        match self {
            GrpcStatus::Ok => 0,
            GrpcStatus::Cancelled => 1,
            GrpcStatus::Unknown => 2,
            GrpcStatus::InvalidArgument => 3,
            GrpcStatus::DeadlineExceeded => 4,
            GrpcStatus::NotFound => 5,
            GrpcStatus::PermissionDenied => 7,
            GrpcStatus::ResourceExhausted => 8,
            GrpcStatus::FailedPrecondition => 9,
            GrpcStatus::Unimplemented => 12,
            GrpcStatus::Internal => 13,
            GrpcStatus::Unavailable => 14,
            GrpcStatus::Unauthenticated => 16,
        }
    }

    /// The code a gateway refusal that would be this HTTP status becomes: 401 → UNAUTHENTICATED,
    /// 403 → PERMISSION_DENIED, 404/405 → UNIMPLEMENTED (no such method), 502/503/504 →
    /// UNAVAILABLE, 429 → RESOURCE_EXHAUSTED, other 4xx → INVALID_ARGUMENT, anything else INTERNAL.
    pub fn from_http(status: u32) -> Self {
        match status {
            200..=299 => GrpcStatus::Ok,
            401 => GrpcStatus::Unauthenticated,
            403 => GrpcStatus::PermissionDenied,
            404 | 405 => GrpcStatus::Unimplemented,
            408 => GrpcStatus::DeadlineExceeded,
            429 => GrpcStatus::ResourceExhausted,
            502..=504 => GrpcStatus::Unavailable,
            400..=499 => GrpcStatus::InvalidArgument,
            _ => GrpcStatus::Internal,
        }
    }
}

/// A local gRPC answer: status and plain-text message (not yet encoded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcReply {
    pub status: GrpcStatus,
    pub message: String,
}

impl GrpcReply {
    pub fn new(status: GrpcStatus, message: &str) -> Self {
        Self { status, message: message.to_owned() }
    }

    /// The same refusal for a gRPC client: the code from the HTTP status, the message from the
    /// GitLab-shaped body (`{"error": m}` or `{"detail": m}`; a structured detail as its JSON).
    pub fn from_gitlab(error: &GitlabError) -> Self {
        Self { status: GrpcStatus::from_http(error.status), message: plain_message(&error.body) }
    }

    /// The response headers of the trailers-only answer (`:status` 200 is the caller's).
    pub fn headers(&self) -> [(&'static str, String); 3] {
        [
            ("content-type", GRPC_CONTENT_TYPE.to_owned()),
            ("grpc-status", self.status.code().to_string()),
            ("grpc-message", encode_message(&self.message)),
        ]
    }
}

pub const GRPC_CONTENT_TYPE: &str = "application/grpc";

/// Longest message sent: headers have limits (Envoy's default is 60 KiB for all of them).
const MAX_MESSAGE_BYTES: usize = 1024;

/// Percent-encodes a `grpc-message` value as the gRPC spec asks: every byte outside printable
/// ASCII (0x20-0x7E) and `%` itself become `%XX`, so UTF-8 text survives as its bytes.
/// Messages longer than 1 KiB are cut on a character boundary first.
pub fn encode_message(message: &str) -> String {
    let mut end = message.len().min(MAX_MESSAGE_BYTES);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end);
    for b in message.as_bytes().iter().take(end) {
        match b {
            0x20..=0x7e if *b != b'%' => out.push(char::from(*b)),
            _ => {
                out.push('%');
                out.push(hex(b >> 4));
                out.push(hex(b & 0x0f));
            }
        }
    }
    out
}

/// Decodes a `grpc-message` (malformed escapes are kept as written, as the spec asks).
pub fn decode_message(encoded: &str) -> String {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (bytes.get(i + 1).and_then(|c| unhex(*c)), bytes.get(i + 2).and_then(|c| unhex(*c)))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(n: u8) -> char {
    char::from(b"0123456789ABCDEF"[usize::from(n & 0x0f)])
}

fn unhex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Whether a `content-type` names gRPC (`application/grpc`, `application/grpc+proto`, ...).
pub fn is_grpc_content_type(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    v == GRPC_CONTENT_TYPE || v.starts_with("application/grpc+") || v.starts_with("application/grpc;")
}

/// The text of a GitLab-shaped JSON error body, else the body itself.
fn plain_message(body: &str) -> String {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(body) else {
        return body.to_owned();
    };
    match map.get("error").or_else(|| map.get("detail")) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => body.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn codes_are_the_grpc_spec_numbers() {
        let all = [
            (GrpcStatus::Ok, 0),
            (GrpcStatus::Cancelled, 1),
            (GrpcStatus::Unknown, 2),
            (GrpcStatus::InvalidArgument, 3),
            (GrpcStatus::DeadlineExceeded, 4),
            (GrpcStatus::NotFound, 5),
            (GrpcStatus::PermissionDenied, 7),
            (GrpcStatus::ResourceExhausted, 8),
            (GrpcStatus::FailedPrecondition, 9),
            (GrpcStatus::Unimplemented, 12),
            (GrpcStatus::Internal, 13),
            (GrpcStatus::Unavailable, 14),
            (GrpcStatus::Unauthenticated, 16),
        ];
        for (s, n) in all {
            assert_eq!(s.code(), n, "{s:?}");
        }
    }

    #[test]
    fn http_refusals_map_to_the_codes_the_agent_platform_expects() {
        assert_eq!(GrpcStatus::from_http(401), GrpcStatus::Unauthenticated);
        assert_eq!(GrpcStatus::from_http(403), GrpcStatus::PermissionDenied);
        assert_eq!(GrpcStatus::from_http(404), GrpcStatus::Unimplemented);
        assert_eq!(GrpcStatus::from_http(405), GrpcStatus::Unimplemented);
        for s in [502, 503, 504] {
            assert_eq!(GrpcStatus::from_http(s), GrpcStatus::Unavailable);
        }
        assert_eq!(GrpcStatus::from_http(429), GrpcStatus::ResourceExhausted);
        assert_eq!(GrpcStatus::from_http(413), GrpcStatus::InvalidArgument);
        assert_eq!(GrpcStatus::from_http(500), GrpcStatus::Internal);
    }

    #[test]
    fn messages_are_percent_encoded_and_round_trip() {
        assert_eq!(encode_message("Header mismatch 'X-Gitlab-Realm'"), "Header mismatch 'X-Gitlab-Realm'");
        assert_eq!(encode_message("100% sure"), "100%25 sure");
        assert_eq!(encode_message("a\r\nb"), "a%0D%0Ab");
        assert_eq!(encode_message("café"), "caf%C3%A9");
        for m in ["", "plain", "100% sure", "café ☕\n\t\u{7f}", "%zz"] {
            assert_eq!(decode_message(&encode_message(m)), m);
        }
        assert_eq!(decode_message("bad %zz escape %4"), "bad %zz escape %4");
        // Never a byte a header value cannot carry.
        assert!(encode_message("\u{0}\u{1f}é").bytes().all(|b| (0x20..=0x7e).contains(&b)));
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let long = "é".repeat(1000);
        let e = encode_message(&long);
        assert_eq!(decode_message(&e), "é".repeat(MAX_MESSAGE_BYTES / 2));
    }

    #[test]
    fn gitlab_refusals_become_plain_text() {
        let r = GrpcReply::from_gitlab(&GitlabError::unauthenticated("Forbidden by auth provider"));
        assert_eq!(r, GrpcReply::new(GrpcStatus::Unauthenticated, "Forbidden by auth provider"));
        let r = GrpcReply::from_gitlab(&GitlabError::forbidden_feature("duo_agent_platform"));
        assert_eq!((r.status, r.message.as_str()), (GrpcStatus::PermissionDenied, "Unauthorized to access duo_agent_platform"));
        let r = GrpcReply::from_gitlab(&GitlabError { status: 503, body: "not json".into() });
        assert_eq!((r.status, r.message.as_str()), (GrpcStatus::Unavailable, "not json"));
        let h = GrpcReply::new(GrpcStatus::Unavailable, "Duo Workflow Service unreachable: 100%").headers();
        assert_eq!(h[0], ("content-type", "application/grpc".to_owned()));
        assert_eq!(h[1], ("grpc-status", "14".to_owned()));
        assert_eq!(h[2], ("grpc-message", "Duo Workflow Service unreachable: 100%25".to_owned()));
    }

    #[test]
    fn grpc_content_types() {
        for v in ["application/grpc", "application/grpc+proto", "Application/GRPC; charset=x", " application/grpc "] {
            assert!(is_grpc_content_type(v), "{v}");
        }
        for v in ["application/json", "application/grpc-web", "application/grpcx", ""] {
            assert!(!is_grpc_content_type(v), "{v}");
        }
    }
}
