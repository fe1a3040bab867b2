//! 422 bodies in FastAPI's shape, as GitLab's gateway answers validation errors and the other
//! endpoints of this router do: `{"detail": [{"loc": ["body", ...], "msg": ..., "type": ...}]}`
//! (GitLab reads `detail[0].msg`). Messages name the field, never its content.

use duo_core::errors::GitlabError;
use serde_json::{Value, json};

/// `loc` is the dotted field path (`messages.0.role`), or `body` for the body itself.
pub(crate) fn invalid(loc: &str, msg: &str) -> GitlabError {
    let mut path = vec![Value::from("body")];
    if loc != "body" {
        for seg in loc.split('.') {
            path.push(seg.parse::<u64>().map(Value::from).unwrap_or_else(|_| Value::from(seg)));
        }
    }
    let body = json!({"detail": [{"loc": path, "msg": msg, "type": error_type(msg)}]});
    GitlabError { status: 422, body: body.to_string() }
}

/// Pydantic's error type for our messages.
fn error_type(msg: &str) -> &'static str {
    if msg == "Field required" {
        "missing"
    } else if msg.starts_with("Input should be a valid string") {
        "string_type"
    } else if msg.starts_with("Input should be a valid list") {
        "list_type"
    } else if msg.starts_with("Input should be a valid boolean") {
        "bool_parsing"
    } else if msg.starts_with("Input should be a valid dictionary") || msg.starts_with("Input should be a valid JSON object") {
        "dict_type"
    } else if msg.starts_with("Input should be a valid number") {
        "float_type"
    } else if msg.starts_with("Input should be '") || msg.starts_with("Input should be one of") {
        "literal_error"
    } else if msg.starts_with("String should have at most") || msg.starts_with("List should have at most") {
        "too_long"
    } else if msg.starts_with("List should have at least") {
        "too_short"
    } else if msg == "JSON decode error" {
        "json_invalid"
    } else {
        "value_error"
    }
}

/// For tests: `<dotted loc>: <msg>` of the first error.
#[cfg(test)]
pub(crate) fn summary(e: &GitlabError) -> String {
    let v: Value = serde_json::from_str(&e.body).unwrap();
    let d = &v["detail"][0];
    let segs: Vec<String> = d["loc"].as_array().unwrap()[1..]
        .iter()
        .map(|s| s.as_str().map(str::to_owned).unwrap_or_else(|| s.to_string()))
        .collect();
    let loc = if segs.is_empty() { "body".to_owned() } else { segs.join(".") };
    format!("{loc}: {}", d["msg"].as_str().unwrap())
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn fastapi_shape_with_numeric_indices() {
        let e = invalid("messages.2.role", "Input should be 'user' or 'assistant'");
        assert_eq!(e.status, 422);
        let v: Value = serde_json::from_str(&e.body).unwrap();
        assert_eq!(
            v,
            json!({"detail": [{"loc": ["body", "messages", 2, "role"], "msg": "Input should be 'user' or 'assistant'", "type": "literal_error"}]})
        );
        assert_eq!(summary(&e), "messages.2.role: Input should be 'user' or 'assistant'");
        let e = invalid("body", "JSON decode error");
        assert_eq!(serde_json::from_str::<Value>(&e.body).unwrap()["detail"][0]["loc"], json!(["body"]));
        assert_eq!(summary(&e), "body: JSON decode error");
        assert_eq!(error_type("Field required"), "missing");
        assert_eq!(error_type("String should have at most 5 characters"), "too_long");
    }
}
