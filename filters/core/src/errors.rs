//! GitLab-shaped error bodies. Auth failures use `{"error": ...}`; everything else `{"detail": ...}`,
//! exactly as GitLab's own AI gateway answers, so Rails shows the right message.

use crate::version::GitlabVersion;

/// A local reply: status and a JSON body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitlabError {
    pub status: u32,
    pub body: String,
}

impl GitlabError {
    /// 401 `{"error": reason}`.
    pub fn unauthenticated(reason: &str) -> Self {
        Self { status: 401, body: json_object("error", reason) }
    }

    /// Any status with `{"detail": detail}`.
    pub fn detail(status: u32, detail: &str) -> Self {
        Self { status, body: json_object("detail", detail) }
    }

    /// 403 `Unauthorized to access <what>`.
    pub fn forbidden_feature(what: &str) -> Self {
        Self::detail(403, &format!("Unauthorized to access {what}"))
    }

    pub fn not_found() -> Self {
        Self::detail(404, "Not Found")
    }

    /// 503 `Inference failed`: the model could not be reached or answered garbage.
    pub fn inference_failed() -> Self {
        Self::detail(503, "Inference failed")
    }

    /// 413 for a request body above `limit` bytes (the configured limit, at most
    /// [`crate::limits::MAX_REQUEST_BYTES`]).
    pub fn request_too_large(limit: u64) -> Self {
        Self::detail(413, &format!("Request body exceeds {limit} bytes"))
    }
}

/// The header Rails sets from the admin's "Enable AI logs" (`x-gitlab-enabled-instance-verbose-ai-logs`).
pub const VERBOSE_AI_LOGS_HEADER: &str = "x-gitlab-enabled-instance-verbose-ai-logs";

/// A request-validation 422 (FastAPI's `{"detail": [{"type", "loc", "msg"}, ...]}`) as GitLab's
/// gateway shows it to this caller: only when the admin enabled AI logs (`verbose`: the header
/// is exactly `true`) does it show the list, as a list for 18.x and as the list's Python text
/// for 19.x (the gateway's newer `str(exc.errors())`); otherwise `{"detail": "Validation
/// error"}`. Any other error is returned as it is. The list never carries the rejected input
/// (GitLab's does: it may quote the prompt).
pub fn shown_validation_error(e: GitlabError, verbose: bool, version: GitlabVersion) -> GitlabError {
    let list = match serde_json::from_str::<serde_json::Value>(&e.body) {
        Ok(serde_json::Value::Object(mut o)) if e.status == 422 && o.len() == 1 => match o.remove("detail") {
            Some(serde_json::Value::Array(list)) => list,
            _ => return e,
        },
        _ => return e,
    };
    if !verbose {
        return GitlabError::detail(422, "Validation error");
    }
    if !version.is_19_or_later() {
        return e;
    }
    let mut text = String::from("[");
    for (i, item) in list.iter().enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        text.push('{');
        let mut first = true;
        // pydantic's order; `loc` is a tuple there.
        for key in ["type", "loc", "msg"] {
            let Some(v) = item.get(key) else { continue };
            if !first {
                text.push_str(", ");
            }
            first = false;
            py_str(key, &mut text);
            text.push_str(": ");
            match v {
                serde_json::Value::Array(parts) if key == "loc" => {
                    text.push('(');
                    for (j, p) in parts.iter().enumerate() {
                        if j > 0 {
                            text.push_str(", ");
                        }
                        py_value(p, &mut text);
                    }
                    if parts.len() == 1 {
                        text.push(',');
                    }
                    text.push(')');
                }
                other => py_value(other, &mut text),
            }
        }
        text.push('}');
    }
    text.push(']');
    GitlabError::detail(422, &text)
}

fn py_value(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::String(s) => py_str(s, out),
        serde_json::Value::Number(n) => out.push_str(&n.to_string()),
        serde_json::Value::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
        serde_json::Value::Null => out.push_str("None"),
        other => out.push_str(&other.to_string()),
    }
}

/// Python's `repr` of a str: single quotes unless the text has a single quote and no double
/// quote; backslashes, the chosen quote and control characters escaped.
fn py_str(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
}

fn json_object(key: &str, value: &str) -> String {
    serde_json::json!({ key: value }).to_string()
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn bodies_are_gitlab_shaped_and_escaped() {
        assert_eq!(GitlabError::unauthenticated("Forbidden by auth provider").body, r#"{"error":"Forbidden by auth provider"}"#);
        let e = GitlabError::forbidden_feature("explain_code");
        assert_eq!((e.status, e.body.as_str()), (403, r#"{"detail":"Unauthorized to access explain_code"}"#));
        assert_eq!(GitlabError::detail(422, "a \"b\"").body, r#"{"detail":"a \"b\""}"#);
        let e = GitlabError::request_too_large(1_048_576);
        assert_eq!((e.status, e.body.as_str()), (413, r#"{"detail":"Request body exceeds 1048576 bytes"}"#));
    }

    #[test]
    fn validation_errors_are_shown_as_gitlab_shows_them() {
        let list = GitlabError {
            status: 422,
            body: r#"{"detail":[{"loc":["body","messages",2,"role"],"msg":"Input should be 'user' or 'assistant'","type":"literal_error"},{"loc":["body"],"msg":"bad\\ \"x\"\n","type":"value_error"}]}"#.into(),
        };
        let v18 = GitlabVersion::from_header(Some("18.4.1"));
        let v19 = GitlabVersion::from_header(Some("19.0.0"));
        for v in [v18, v19] {
            assert_eq!(shown_validation_error(list.clone(), false, v), GitlabError::detail(422, "Validation error"));
        }
        assert_eq!(shown_validation_error(list.clone(), true, v18), list);
        let shown = shown_validation_error(list.clone(), true, v19);
        let detail: serde_json::Value = serde_json::from_str(&shown.body).unwrap();
        assert_eq!(
            detail["detail"],
            r#"[{'type': 'literal_error', 'loc': ('body', 'messages', 2, 'role'), 'msg': "Input should be 'user' or 'assistant'"}, {'type': 'value_error', 'loc': ('body',), 'msg': 'bad\\ "x"\n'}]"#
        );
        // anything else stays as it is
        for other in [GitlabError::detail(422, "Prompt 'x' is not supported"), GitlabError::detail(403, "Unauthorized to access duo chat")] {
            assert_eq!(shown_validation_error(other.clone(), false, v19), other);
        }
    }
}
