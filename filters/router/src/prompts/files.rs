//! The built-in prompt templates, compiled into the filter (`filters/router/prompts/`).
//! Regenerate the list with `filters/router/prompts/gen_files.sh` after adding a file;
//! a unit test fails when this table and the directory disagree.

pub const MANIFEST: &str = include_str!("../../prompts/manifest.json");

/// (template name, source): the name is the path under `prompts/` without `.jinja`.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("categorize_question/user", include_str!("../../prompts/categorize_question/user.jinja")),
    ("chat/explain_code/user", include_str!("../../prompts/chat/explain_code/user.jinja")),
    ("chat/explain_vulnerability/user", include_str!("../../prompts/chat/explain_vulnerability/user.jinja")),
    ("chat/fix_code/user", include_str!("../../prompts/chat/fix_code/user.jinja")),
    ("chat/refactor_code/user", include_str!("../../prompts/chat/refactor_code/user.jinja")),
    ("chat/summarize_comments/user", include_str!("../../prompts/chat/summarize_comments/user.jinja")),
    ("chat/troubleshoot_job/user", include_str!("../../prompts/chat/troubleshoot_job/user.jinja")),
    ("chat/write_tests/user", include_str!("../../prompts/chat/write_tests/user.jinja")),
    ("chat_react/assistant", include_str!("../../prompts/chat_react/assistant.jinja")),
    ("chat_react/prefill", include_str!("../../prompts/chat_react/prefill.jinja")),
    ("chat_react/scratchpad", include_str!("../../prompts/chat_react/scratchpad.jinja")),
    ("chat_react/system", include_str!("../../prompts/chat_react/system.jinja")),
    ("chat_react/system_compact", include_str!("../../prompts/chat_react/system_compact.jinja")),
    ("chat_react/user", include_str!("../../prompts/chat_react/user.jinja")),
    ("code_suggestions/completions/fim_codegemma", include_str!("../../prompts/code_suggestions/completions/fim_codegemma.jinja")),
    ("code_suggestions/completions/fim_codellama", include_str!("../../prompts/code_suggestions/completions/fim_codellama.jinja")),
    ("code_suggestions/completions/fim_codestral", include_str!("../../prompts/code_suggestions/completions/fim_codestral.jinja")),
    ("code_suggestions/completions/fim_deepseekcoder", include_str!("../../prompts/code_suggestions/completions/fim_deepseekcoder.jinja")),
    ("code_suggestions/completions/system", include_str!("../../prompts/code_suggestions/completions/system.jinja")),
    ("code_suggestions/completions/user", include_str!("../../prompts/code_suggestions/completions/user.jinja")),
    ("code_suggestions/generations/system", include_str!("../../prompts/code_suggestions/generations/system.jinja")),
    ("code_suggestions/generations/user", include_str!("../../prompts/code_suggestions/generations/user.jinja")),
    ("code_suggestions/generations/user_tagged", include_str!("../../prompts/code_suggestions/generations/user_tagged.jinja")),
    ("generate_commit_message/system", include_str!("../../prompts/generate_commit_message/system.jinja")),
    ("generate_commit_message/user", include_str!("../../prompts/generate_commit_message/user.jinja")),
    ("generate_description/system", include_str!("../../prompts/generate_description/system.jinja")),
    ("generate_description/user", include_str!("../../prompts/generate_description/user.jinja")),
    ("glab_ask_git_command/system", include_str!("../../prompts/glab_ask_git_command/system.jinja")),
    ("glab_ask_git_command/user", include_str!("../../prompts/glab_ask_git_command/user.jinja")),
    ("model_configuration/check", include_str!("../../prompts/model_configuration/check.jinja")),
    ("partials/duo_chat_system", include_str!("../../prompts/partials/duo_chat_system.jinja")),
    ("partials/selected_code", include_str!("../../prompts/partials/selected_code.jinja")),
    ("resolve_vulnerability/system", include_str!("../../prompts/resolve_vulnerability/system.jinja")),
    ("resolve_vulnerability/user", include_str!("../../prompts/resolve_vulnerability/user.jinja")),
    ("review_merge_request/system", include_str!("../../prompts/review_merge_request/system.jinja")),
    ("review_merge_request/user", include_str!("../../prompts/review_merge_request/user.jinja")),
    ("summarize_new_merge_request/system", include_str!("../../prompts/summarize_new_merge_request/system.jinja")),
    ("summarize_new_merge_request/user", include_str!("../../prompts/summarize_new_merge_request/user.jinja")),
    ("summarize_review/system", include_str!("../../prompts/summarize_review/system.jinja")),
    ("summarize_review/user", include_str!("../../prompts/summarize_review/user.jinja")),
];
