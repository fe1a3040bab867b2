//! Unit primitives a Duo Chat request needs beyond `duo_chat`: every `additional_context` item
//! (on any message of `POST /v2/chat/agent`) needs `include_<category>_context` in the token's
//! `scopes`, else 403 `Unauthorized to access include_<category>_context`.
//!
//! Lives in duo-core so duo_auth (which enforces scopes) and duo_router (which validates the
//! body) read one list of categories.

use serde_json::Value;

/// The `additional_context.category` values GitLab sends (AIGW `AdditionalContext.category`).
pub const CONTEXT_CATEGORIES: [&str; 11] = [
    "file",
    "snippet",
    "merge_request",
    "issue",
    "dependency",
    "local_git",
    "terminal",
    "repository",
    "directory",
    "os_information",
    "agent_user_environment",
];

/// Is `category` one GitLab defines?
pub fn is_context_category(category: &str) -> bool {
    CONTEXT_CATEGORIES.contains(&category)
}

/// `include_<category>_context` for each distinct known category in `messages[].additional_context[]`,
/// in order of first appearance. A body that is not a chat request, or items whose category is
/// missing or unknown, add nothing: the router answers those with 422 (body validation), as
/// GitLab's gateway validates before it authorizes.
pub fn required_context_scopes(body: &Value) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return scopes;
    };
    for message in messages {
        let Some(items) = message.get("additional_context").and_then(Value::as_array) else {
            continue;
        };
        for item in items {
            let Some(category) = item.get("category").and_then(Value::as_str) else {
                continue;
            };
            if !is_context_category(category) {
                continue;
            }
            let scope = format!("include_{category}_context");
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
    }
    scopes
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use serde_json::json;

    #[test]
    fn every_message_counts_once_per_category_in_order() {
        let body = json!({"messages": [
            {"role": "user", "content": "old", "additional_context": [
                {"category": "snippet", "content": "x"}, {"category": "file", "id": "a.rb"}]},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "new", "additional_context": [
                {"category": "file"}, {"category": "local_git"}, {"category": "snippet"}]}
        ]});
        assert_eq!(
            required_context_scopes(&body),
            vec!["include_snippet_context", "include_file_context", "include_local_git_context"]
        );
    }

    #[test]
    fn nothing_needed_without_additional_context() {
        assert!(required_context_scopes(&json!({"messages": [{"role": "user", "content": "hi"}]})).is_empty());
        assert!(required_context_scopes(&json!({"messages": [{"role": "user", "additional_context": null}]})).is_empty());
        assert!(required_context_scopes(&json!("not an object")).is_empty());
        assert!(required_context_scopes(&json!({"messages": {"role": "user"}})).is_empty());
    }

    #[test]
    fn unknown_or_malformed_categories_are_left_to_validation() {
        let body = json!({"messages": [{"role": "user", "additional_context": [
            {"category": "secrets"}, {"category": 7}, {"id": "x"}, "junk", {"category": "terminal"}]}]});
        assert_eq!(required_context_scopes(&body), vec!["include_terminal_context"]);
    }

    #[test]
    fn all_documented_categories_map_to_their_primitive() {
        for c in CONTEXT_CATEGORIES {
            let body = json!({"messages": [{"role": "user", "additional_context": [{"category": c}]}]});
            assert_eq!(required_context_scopes(&body), vec![format!("include_{c}_context")]);
        }
    }
}
