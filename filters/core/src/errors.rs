//! GitLab-shaped error bodies. Auth failures use `{"error": ...}`; everything else `{"detail": ...}`,
//! exactly as GitLab's own AI gateway answers, so Rails shows the right message.

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
}
