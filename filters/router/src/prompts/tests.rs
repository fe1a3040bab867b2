#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use serde_json::json;

fn inputs(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn opts() -> RenderOptions<'static> {
    RenderOptions { want_fim: false, today: "2026-11-26" }
}

#[test]
fn builtin_set_compiles_and_declares_every_variable_it_uses() {
    let set = PromptSet::builtin().unwrap();
    for id in set.ids() {
        assert!(set.undeclared(id).is_empty(), "{id}: {:?}", set.undeclared(id));
        assert!(catalogue::prompt(id).is_some(), "{id} is not a GitLab prompt id");
    }
    // Every self-hostable /v1/prompts feature of the README's feature table has a prompt.
    for id in [
        "chat/explain_code",
        "chat/write_tests",
        "chat/refactor_code",
        "chat/fix_code",
        "chat/troubleshoot_job",
        "chat/explain_vulnerability",
        "chat/summarize_comments",
        "generate_commit_message",
        "summarize_new_merge_request",
        "review_merge_request",
        "summarize_review",
        "resolve_vulnerability",
        "glab_ask_git_command",
        "model_configuration/check",
        "code_suggestions/completions",
        "code_suggestions/generations",
    ] {
        assert!(set.has(id), "{id}");
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn file_table_matches_the_prompts_directory() {
    fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, base, out);
            } else if p.extension().is_some_and(|x| x == "jinja") {
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().replace('\\', "/");
                out.push(rel.trim_end_matches(".jinja").to_owned());
            }
        }
    }
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
    let mut on_disk = Vec::new();
    walk(&base, &base, &mut on_disk);
    on_disk.sort();
    let mut table: Vec<String> = files::TEMPLATES.iter().map(|(n, _)| (*n).to_owned()).collect();
    table.sort();
    assert_eq!(on_disk, table, "run filters/router/prompts/gen_files.sh");
}

#[test]
fn renders_system_and_user_from_inputs() {
    let set = PromptSet::builtin().unwrap();
    let r = set
        .render("generate_commit_message", Family::Mistral, &inputs(json!({"diff": "diff --git a/x b/x\n+hello"})), opts())
        .unwrap();
    assert_eq!(r.messages.len(), 2);
    assert_eq!(r.messages[0].role, Role::System);
    assert_eq!(r.messages[1].role, Role::User);
    assert!(r.messages[1].content.contains("+hello"), "{}", r.messages[1].content);
    assert!(!r.messages[1].content.contains("{{"));
    assert_eq!(r.params.get("max_tokens"), Some(&json!(512)));
    assert_eq!(r.fim, None);
}

#[test]
fn missing_required_variables_are_named_in_a_422() {
    let set = PromptSet::builtin().unwrap();
    let e = set.render("generate_commit_message", Family::Gpt, &inputs(json!({"dif": "x"})), opts()).unwrap_err();
    assert_eq!(e.status, 422);
    assert!(e.body.contains("'diff'") && e.body.contains("'dif'"), "{}", e.body);
    let e = set.render("generate_commit_message", Family::Gpt, &inputs(json!({"diff": null})), opts()).unwrap_err();
    assert_eq!(e.status, 422);
}

#[test]
fn unknown_prompt_is_404_and_known_but_unsupported_is_422() {
    let set = PromptSet::builtin().unwrap();
    let e = set.render("no/such", Family::Gpt, &Map::new(), opts()).unwrap_err();
    assert_eq!((e.status, e.body.as_str()), (404, r#"{"detail":"Prompt 'no/such' not found"}"#));
    let e = set.render("chat/issue_reader", Family::Gpt, &Map::new(), opts()).unwrap_err();
    assert_eq!((e.status, e.body.as_str()), (422, r#"{"detail":"Prompt 'chat/issue_reader' is not supported"}"#));
}

#[test]
fn fim_formats_per_family() {
    let set = PromptSet::builtin().unwrap();
    let vars = inputs(json!({"prefix": "def add(a, b):\n", "suffix": "\nprint(add(1, 2))"}));
    let fim = RenderOptions { want_fim: true, today: "" };
    let cases = [
        (Family::Codestral, "[SUFFIX]\nprint(add(1, 2))[PREFIX]def add(a, b):\n"),
        (Family::Codellama, "<PRE> def add(a, b):\n <SUF>\nprint(add(1, 2)) <MID>"),
        (Family::Codegemma, "<|fim_prefix|>def add(a, b):\n<|fim_suffix|>\nprint(add(1, 2))<|fim_middle|>"),
        (Family::Deepseekcoder, "<｜fim▁begin｜>def add(a, b):\n<｜fim▁hole｜>\nprint(add(1, 2))<｜fim▁end｜>"),
    ];
    for (family, want) in cases {
        let r = set.render("code_suggestions/completions", family, &vars, fim).unwrap();
        assert_eq!(r.fim.as_deref(), Some(want), "{family:?}");
        assert!(r.messages.is_empty());
        assert!(!r.stop.is_empty(), "{family:?} has FIM stops");
        assert!(set.has_fim("code_suggestions/completions", family));
    }
    // Families without infill tokens get a chat prompt even when FIM is asked for.
    for family in [Family::Mistral, Family::Llama3, Family::Gpt, Family::Claude3] {
        assert!(!set.has_fim("code_suggestions/completions", family));
        let r = set.render("code_suggestions/completions", family, &vars, fim).unwrap();
        assert_eq!(r.fim, None);
        assert!(r.messages[1].content.contains("<code_after_cursor>\n\nprint(add(1, 2))</code_after_cursor>"), "{}", r.messages[1].content);
    }
}

#[test]
fn claude_generations_use_a_prefill_and_matching_stop() {
    let set = PromptSet::builtin().unwrap();
    let vars = inputs(json!({"user_instruction": "write a fibonacci function", "file_name": "fib.py", "language": "Python"}));
    let r = set.render("code_suggestions/generations", Family::Claude3, &vars, opts()).unwrap();
    assert_eq!(r.prefill(), Some("<new_code>"));
    assert_eq!(r.stop, vec!["</new_code>".to_owned()]);
    let r = set.render("code_suggestions/generations", Family::Mistral, &vars, opts()).unwrap();
    assert_eq!(r.prefill(), None);
    assert!(r.messages[1].content.contains("Task: write a fibonacci function"));
}

#[test]
fn current_date_is_filled_in_unless_sent() {
    let set = PromptSet::builtin().unwrap();
    let r = set.render("review_merge_request", Family::Gpt, &inputs(json!({"formatted_mr_input": "x"})), opts()).unwrap();
    assert!(r.messages[0].content.contains("Today is 2026-11-26."), "{}", r.messages[0].content);
    let r = set
        .render(
            "review_merge_request",
            Family::Gpt,
            &inputs(json!({"formatted_mr_input": "x", "current_date": "1999-01-01"})),
            opts(),
        )
        .unwrap();
    assert!(r.messages[0].content.contains("Today is 1999-01-01."));
    assert_eq!(date_from_unix(0), "1970-01-01");
    assert_eq!(date_from_unix(1_709_251_199), "2024-02-29");
    assert_eq!(date_from_unix(1_798_675_200), "2026-12-31");
    // The digit-by-digit writer agrees with `format!` everywhere, its fallback included.
    for (year, month, day) in [(2026, 12, 3), (999, 1, 9), (10_000, 10, 31), (-1, 2, 28), (2026, 123, 200)] {
        let date = CivilDate { year, month, day };
        assert_eq!(date.iso(), format!("{year:04}-{month:02}-{day:02}"));
    }
}

#[test]
fn admin_overrides_replace_templates_params_and_per_family_texts() {
    let cfg: TemplateOverrides = serde_json::from_value(json!({
        "generate_commit_message": {
            "user": "Commit message for: {{ diff | upper }}",
            "system": "",
            "params": {"max_tokens": 99},
            "families": {"llama3": {"user": "LLAMA {{ diff }}", "stop": ["END"]}}
        },
        "duo_chat_explain_code": {"system": "Be terse."}
    }))
    .unwrap();
    let set = PromptSet::new(&cfg).unwrap();
    let vars = inputs(json!({"diff": "abc"}));
    let r = set.render("generate_commit_message", Family::Gpt, &vars, opts()).unwrap();
    assert_eq!(r.messages, vec![Message::user("Commit message for: ABC")]);
    assert_eq!(r.params.get("max_tokens"), Some(&json!(99)));
    assert_eq!(r.params.get("temperature"), Some(&json!(0.2)));
    let r = set.render("generate_commit_message", Family::Llama3, &vars, opts()).unwrap();
    assert_eq!(r.messages.last().map(|m| m.content.as_str()), Some("LLAMA abc"));
    assert_eq!(r.stop, vec!["END".to_owned()]);
    let r = set.render("chat/explain_code", Family::Gpt, &inputs(json!({"selected_text": "x"})), opts()).unwrap();
    assert_eq!(r.messages[0].content, "Be terse.");
}

#[test]
fn override_validation_names_the_field() {
    let bad = |v: Value| validate_overrides("prompts", &serde_json::from_value(v).unwrap()).unwrap_err();
    let e = bad(json!({"nope": {"user": "x"}}));
    assert_eq!(e.path, "prompts.nope");
    let e = bad(json!({"generate_commit_message": {"user": "{{ diff "}}));
    assert_eq!(e.path, "prompts.generate_commit_message.user");
    let e = bad(json!({"generate_commit_message": {"user": "{{ difff }}"}}));
    assert_eq!(e.path, "prompts.generate_commit_message.user");
    assert!(e.message.contains("difff"), "{}", e.message);
    let e = bad(json!({"generate_commit_message": {"families": {"gpt5": {"user": "x"}}}}));
    assert_eq!(e.path, "prompts.generate_commit_message.families.gpt5");
    let e = bad(json!({"generate_commit_message": {"params": {"stream": true}}}));
    assert_eq!(e.path, "prompts.generate_commit_message.params.stream");
    let e = bad(json!({"generate_commit_message": {"stop": [""]}}));
    assert_eq!(e.path, "prompts.generate_commit_message.stop[0]");
    // duo_chat is used by several prompts: ambiguous, refused.
    assert_eq!(bad(json!({"duo_chat": {"user": "x"}})).path, "prompts.duo_chat");
    assert!(serde_json::from_value::<TemplateOverrides>(json!({"x": {"usr": "x"}})).is_err());
    validate_overrides("prompts", &serde_json::from_value(json!({"code_completions": {"user": "{{ prefix }}"}})).unwrap())
        .unwrap();
}
