//! Chat messages → one text prompt in a model family's own chat format, for the APIs that take
//! raw text (vLLM `/v1/completions`, Bedrock InvokeModel for Mistral and Llama). Each format
//! ends with the assistant's turn opened, followed by the prefill when there is one.

use crate::{Message, Role};

/// Which chat format a raw prompt is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextFormat {
    /// `[INST] … [/INST]` (Mistral, Mixtral, Codestral).
    MistralInst,
    /// Llama 3 header tokens.
    Llama3,
    /// Llama 2 `[INST] <<SYS>> … <</SYS>> … [/INST]` (Code Llama instruct).
    Llama2,
    /// Gemma turns (CodeGemma instruct).
    Gemma,
    /// DeepSeek Coder instruct (`### Instruction:` / `### Response:`).
    DeepseekCoder,
    /// ChatML (`<|im_start|>`), for the rest (Qwen, general BYOM models).
    ChatMl,
}

impl TextFormat {
    /// Stop sequences that end the assistant's turn in this format.
    pub fn stops(self) -> &'static [&'static str] {
        match self {
            TextFormat::MistralInst | TextFormat::Llama2 => &["[INST]", "</s>"],
            TextFormat::Llama3 => &["<|eot_id|>"],
            TextFormat::Gemma => &["<end_of_turn>"],
            TextFormat::DeepseekCoder => &["<|EOT|>"],
            TextFormat::ChatMl => &["<|im_end|>"],
        }
    }
}

/// Renders `messages` (system first if any, an assistant last = prefill). `bos` writes the
/// beginning-of-sequence token (Bedrock wants it in the text; vLLM's tokenizer adds its own).
pub fn render(format: TextFormat, messages: &[Message], bos: bool) -> String {
    let total: usize = messages.iter().map(|m| m.content.len() + 32).sum();
    let mut out = String::with_capacity(total + 64);
    let (system, rest) = match messages.first() {
        Some(m) if m.role == Role::System => (Some(m.content.as_str()), &messages[1..]),
        _ => (None, messages),
    };
    let (turns, prefill) = match rest.last() {
        Some(m) if m.role == Role::Assistant => (&rest[..rest.len() - 1], Some(m.content.as_str())),
        _ => (rest, None),
    };
    match format {
        TextFormat::MistralInst | TextFormat::Llama2 => {
            if bos {
                out.push_str("<s>");
            }
            let mut first_user = true;
            for m in turns {
                match m.role {
                    Role::Assistant => {
                        out.push(' ');
                        out.push_str(&m.content);
                        out.push_str("</s>");
                    }
                    _ => {
                        out.push_str("[INST] ");
                        if first_user {
                            if let Some(s) = system {
                                if format == TextFormat::Llama2 {
                                    out.push_str("<<SYS>>\n");
                                    out.push_str(s);
                                    out.push_str("\n<</SYS>>\n\n");
                                } else {
                                    out.push_str(s);
                                    out.push_str("\n\n");
                                }
                            }
                            first_user = false;
                        }
                        out.push_str(&m.content);
                        out.push_str(" [/INST]");
                    }
                }
            }
        }
        TextFormat::Llama3 => {
            if bos {
                out.push_str("<|begin_of_text|>");
            }
            let header = |out: &mut String, role: &str, text: &str| {
                out.push_str("<|start_header_id|>");
                out.push_str(role);
                out.push_str("<|end_header_id|>\n\n");
                out.push_str(text);
                out.push_str("<|eot_id|>");
            };
            if let Some(s) = system {
                header(&mut out, "system", s);
            }
            for m in turns {
                header(&mut out, if m.role == Role::Assistant { "assistant" } else { "user" }, &m.content);
            }
            out.push_str("<|start_header_id|>assistant<|end_header_id|>\n\n");
        }
        TextFormat::Gemma => {
            if bos {
                out.push_str("<bos>");
            }
            let mut first_user = true;
            for m in turns {
                let role = if m.role == Role::Assistant { "model" } else { "user" };
                out.push_str("<start_of_turn>");
                out.push_str(role);
                out.push('\n');
                if first_user && m.role != Role::Assistant {
                    if let Some(s) = system {
                        out.push_str(s);
                        out.push_str("\n\n");
                    }
                    first_user = false;
                }
                out.push_str(&m.content);
                out.push_str("<end_of_turn>\n");
            }
            out.push_str("<start_of_turn>model\n");
        }
        TextFormat::DeepseekCoder => {
            if let Some(s) = system {
                out.push_str(s);
                out.push('\n');
            }
            for m in turns {
                if m.role == Role::Assistant {
                    out.push_str("### Response:\n");
                    out.push_str(&m.content);
                    out.push_str("\n<|EOT|>\n");
                } else {
                    out.push_str("### Instruction:\n");
                    out.push_str(&m.content);
                    out.push('\n');
                }
            }
            out.push_str("### Response:\n");
        }
        TextFormat::ChatMl => {
            let turn = |out: &mut String, role: &str, text: &str| {
                out.push_str("<|im_start|>");
                out.push_str(role);
                out.push('\n');
                out.push_str(text);
                out.push_str("<|im_end|>\n");
            };
            if let Some(s) = system {
                turn(&mut out, "system", s);
            }
            for m in turns {
                turn(&mut out, if m.role == Role::Assistant { "assistant" } else { "user" }, &m.content);
            }
            out.push_str("<|im_start|>assistant\n");
        }
    }
    if let Some(p) = prefill {
        if matches!(format, TextFormat::MistralInst | TextFormat::Llama2) {
            out.push(' ');
        }
        out.push_str(p);
    }
    out
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn msgs() -> Vec<Message> {
        vec![
            Message::system("SYS"),
            Message::user("Hi"),
        ]
    }

    #[test]
    fn formats_are_exact() {
        let m = msgs();
        assert_eq!(render(TextFormat::MistralInst, &m, true), "<s>[INST] SYS\n\nHi [/INST]");
        assert_eq!(render(TextFormat::MistralInst, &m, false), "[INST] SYS\n\nHi [/INST]");
        assert_eq!(render(TextFormat::Llama2, &m, false), "[INST] <<SYS>>\nSYS\n<</SYS>>\n\nHi [/INST]");
        assert_eq!(
            render(TextFormat::Llama3, &m, true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nSYS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        );
        assert_eq!(render(TextFormat::Gemma, &m, false), "<start_of_turn>user\nSYS\n\nHi<end_of_turn>\n<start_of_turn>model\n");
        assert_eq!(render(TextFormat::DeepseekCoder, &m, false), "SYS\n### Instruction:\nHi\n### Response:\n");
        assert_eq!(
            render(TextFormat::ChatMl, &m, false),
            "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn multi_turn_and_prefill() {
        let m = vec![
            Message::user("a"),
            Message::assistant("b"),
            Message::user("c"),
            Message::assistant("<x>"),
        ];
        assert_eq!(render(TextFormat::MistralInst, &m, false), "[INST] a [/INST] b</s>[INST] c [/INST] <x>");
        assert!(render(TextFormat::ChatMl, &m, false).ends_with("<|im_start|>assistant\n<x>"));
    }
}
