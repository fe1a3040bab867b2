//! GitLab's post-processing of generated code (docs/fidelity.md, item 6), written from what its
//! gateway does to a generation before answering (`code_suggestions/processing/post`):
//!
//! 1. every Markdown fence-opening line (```` ``` ```` plus an optional language, at a line
//!    start) is removed, and trailing backticks are dropped ([`strip_code_block_markdown`]);
//! 2. a newline is put in front when the code above the cursor does not end its line and the
//!    answer does not start one;
//! 3. "model reflection": after the first line break, a run of lines that repeats lines of the
//!    code above the cursor is dropped when it is a single comment line or a block of five or
//!    more lines of repetitive text (under a quarter special characters, under 35 % distinct
//!    characters); other repeats stay (code often repeats a line on purpose);
//! 4. an answer of whitespace only becomes empty.
//!
//! A streamed generation (GitLab 19.x) only gets step 1, line by line
//! (`crate::framing::FenceLines`).
//!
//! Line handling follows Python's `str.splitlines`/`str.strip`, which GitLab's code uses, so the
//! same answers come out for the same inputs.

/// Whole-answer post-processing of a generation; `above` is the code above the cursor.
pub fn post_process(above: &str, completion: &str) -> String {
    let completion = strip_code_block_markdown(completion);
    let completion = prepend_new_line(above, &completion);
    let completion = clean_model_reflection(above, &completion);
    if !completion.is_empty() && completion.chars().all(is_py_space) { String::new() } else { completion }
}

/// Removes every line start followed by three backticks, non-space characters and a newline,
/// then the backticks at the end.
pub fn strip_code_block_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        // `rest` is at a line start here.
        if let Some(after) = rest.strip_prefix("```") {
            let word = after.find(is_py_space).unwrap_or(after.len());
            if after[word..].starts_with('\n') {
                rest = &after[word + 1..];
                continue;
            }
        }
        match rest.find('\n') {
            Some(nl) => {
                out.push_str(&rest[..=nl]);
                rest = &rest[nl + 1..];
            }
            None => {
                out.push_str(rest);
                break;
            }
        }
    }
    out.trim_end_matches('`').to_owned()
}

fn prepend_new_line(above: &str, completion: &str) -> String {
    if !completion.is_empty() && !above.ends_with('\n') && !completion.starts_with('\n') {
        format!("\n{completion}")
    } else {
        completion.to_owned()
    }
}

const COMMENT_STARTS: [&str; 3] = ["/*", "//", "#"];
const SPECIAL_CHARS: &str = "()[];.,$%&^*@#!{}/";

fn clean_model_reflection(context: &str, completion: &str) -> String {
    let text = format!("{context}{completion}");
    let Some(br) = newline_position(&text, context.len()) else {
        // Only the current line was completed.
        return completion.to_owned();
    };
    let before = split_code_lines(&text[..br]);
    let after = split_code_lines(&text[br..]);
    let source: Vec<&str> = before.iter().map(|l| py_strip(l)).collect();
    let target: Vec<&str> = after.iter().map(|l| py_strip(l)).collect();
    let mut kept: Vec<&str> = Vec::with_capacity(after.len());
    let mut prev = 0;
    for group in common_lines(&source, &target) {
        let (start, end) = (group[0], group[group.len() - 1]);
        let lines = &after[start..=end];
        kept.extend(after[prev..start].iter().map(String::as_str));
        if !(is_single_line_comment(lines) || is_large_group(group.len(), lines)) {
            kept.extend(lines.iter().map(String::as_str));
        }
        prev = end + 1;
    }
    kept.extend(after[prev.min(after.len())..].iter().map(String::as_str));
    let mut out = text[context.len()..br].to_owned();
    for l in kept {
        out.push_str(l);
    }
    out
}

fn is_single_line_comment(lines: &[String]) -> bool {
    lines.len() == 1 && COMMENT_STARTS.iter().any(|c| lines[0].trim_start_matches(is_py_space).starts_with(c))
}

fn is_large_group(group_len: usize, lines: &[String]) -> bool {
    let joined: String = lines.iter().map(|l| py_strip(l)).collect();
    let total = joined.chars().count();
    if group_len < 5 || total == 0 {
        return false;
    }
    let special = joined.chars().filter(|c| SPECIAL_CHARS.contains(*c)).count();
    let mut distinct: Vec<char> = joined.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    // GitLab's thresholds: a quarter special characters, 35 % distinct characters.
    let many_special = special as f64 / total as f64 >= 0.25;
    let diverse = distinct.len() as f64 / total as f64 >= 0.35;
    !many_special && !diverse
}

/// The line break nearest after `start`: `start` itself when the text before it ends a line
/// (ignoring spaces and tabs), else just after the next `\n`.
fn newline_position(text: &str, start: usize) -> Option<usize> {
    if text[..start].trim_end_matches([' ', '\t']).ends_with('\n') {
        return Some(start);
    }
    text[start..].find('\n').map(|i| start + i + 1)
}

/// Python's `splitlines(keepends=True)`, then each line's trailing `\n` moved to the front of
/// the next line (and a lone `"\n"` last when the text ended with one).
fn split_code_lines(s: &str) -> Vec<String> {
    let raw = py_splitlines(s);
    let mut out: Vec<String> = Vec::with_capacity(raw.len() + 1);
    for (i, line) in raw.iter().enumerate() {
        let line = line.trim_end_matches('\n');
        out.push(if i > 0 { format!("\n{line}") } else { line.to_owned() });
    }
    if raw.last().is_some_and(|l| l.ends_with('\n')) {
        out.push("\n".to_owned());
    }
    out
}

fn py_splitlines(s: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let is_break = matches!(c, '\n' | '\r' | '\x0b' | '\x0c' | '\x1c' | '\x1d' | '\x1e' | '\u{85}' | '\u{2028}' | '\u{2029}');
        if !is_break {
            continue;
        }
        let mut end = i + c.len_utf8();
        if c == '\r' && chars.peek().is_some_and(|(_, n)| *n == '\n') {
            chars.next();
            end += 1;
        }
        lines.push(&s[start..end]);
        start = end;
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

/// Python's `str.isspace` per character (Unicode whitespace plus the ASCII separators).
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\x1c'..='\x1f')
}

fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// GitLab's grouping of the `target` lines that repeat `source` lines: for every target line,
/// the source line where the longest run of equal lines ending at it ends (a run's second line
/// counts double, so runs win over lone matches; the first such source line on ties); matched
/// target lines are grouped while their source lines follow each other.
fn common_lines(source: &[&str], target: &[&str]) -> Vec<Vec<usize>> {
    let m = target.len();
    // Column maxima of the run-length table, kept row by row: a row is final once the next
    // row was computed (computing row i may raise a value of row i-1).
    let mut best: Vec<(u32, usize)> = vec![(0, 0); m + 1];
    let mut prev: Vec<u32> = vec![0; m + 1];
    let mut cur: Vec<u32> = vec![0; m + 1];
    let settle = |row: &[u32], i: usize, best: &mut Vec<(u32, usize)>| {
        for (j, &v) in row.iter().enumerate() {
            if v > best[j].0 {
                best[j] = (v, i);
            }
        }
    };
    for i in 1..=source.len() {
        cur[0] = 0;
        for j in 1..=m {
            if source[i - 1] == target[j - 1] {
                if prev[j - 1] == 1 {
                    prev[j - 1] = 2;
                }
                cur[j] = prev[j - 1] + 1;
            } else {
                cur[j] = 0;
            }
        }
        settle(&prev, i - 1, &mut best);
        std::mem::swap(&mut prev, &mut cur);
    }
    settle(&prev, source.len(), &mut best);
    let matched: Vec<(usize, usize)> =
        (1..=m).filter(|&j| best[j].1 > 0).map(|j| (j - 1, best[j].1)).collect();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut last_row = None;
    for (t, row) in matched {
        match (groups.last_mut(), last_row) {
            (Some(g), Some(r)) if row == r + 1 => g.push(t),
            _ => groups.push(vec![t]),
        }
        last_row = Some(row);
    }
    groups
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn fence_lines_anywhere_and_trailing_backticks_go() {
        assert_eq!(strip_code_block_markdown("```python\nx = 1\n```"), "x = 1\n");
        assert_eq!(strip_code_block_markdown("Here:\n```go\nfunc f() {}\n```\n"), "Here:\nfunc f() {}\n", "a closing fence line too");
        assert_eq!(strip_code_block_markdown("```\n```"), "");
        assert_eq!(strip_code_block_markdown("a ```py\nb"), "a ```py\nb", "only at a line start");
        assert_eq!(strip_code_block_markdown("```py 3\nb"), "```py 3\nb", "the word has no space");
        assert_eq!(strip_code_block_markdown("x = `y`"), "x = `y");
    }

    #[test]
    fn splitting_follows_python() {
        assert_eq!(py_splitlines("a\nb\r\nc\rd"), vec!["a\n", "b\r\n", "c\r", "d"]);
        assert_eq!(py_splitlines(""), Vec::<&str>::new());
        assert_eq!(split_code_lines("a\nb\n"), vec!["a", "\nb", "\n"]);
        assert_eq!(split_code_lines("\nb"), vec!["", "\nb"]);
        assert_eq!(newline_position("ab\n  ", 5), Some(5));
        assert_eq!(newline_position("ab cd\nef", 3), Some(6));
        assert_eq!(newline_position("abcd", 2), None);
    }

    #[test]
    fn common_lines_groups_runs_of_repeated_lines() {
        assert_eq!(common_lines(&["abc", "def", "g"], &["abc", "def", "c", "abc"]), vec![vec![0, 1], vec![3]]);
        assert_eq!(common_lines(&["a"], &["b"]), Vec::<Vec<usize>>::new());
        assert_eq!(common_lines(&[], &["b"]), Vec::<Vec<usize>>::new());
    }

    /// Expected values computed by running GitLab's algorithm (a Python transcription) on the
    /// same inputs.
    #[test]
    fn generations_are_post_processed_as_gitlab_does() {
        // the fence goes, a newline is prepended after an unfinished line
        assert_eq!(post_process("def add(a, b):", "```python\n    return a + b\n```"), "\n    return a + b\n");
        // the code above ended its line: no newline
        assert_eq!(post_process("# add\n", "def add(a, b):\n    return a + b"), "def add(a, b):\n    return a + b");
        // whitespace only is nothing
        assert_eq!(post_process("x = 1\n", "  \n\t"), "");
        assert_eq!(post_process("x = 1\n", ""), "");
        // an ordinary repeated line stays
        let above = "import os\nimport sys\n\ndef main():\n";
        assert_eq!(post_process(above, "    import sys\n    print(os.getcwd())\n"), "    import sys\n    print(os.getcwd())\n");
        assert_eq!(post_process("import sys\n", "import sys\nimport sys\n"), "import sys\nimport sys\n");
        // a repeated single comment line is the model reflecting the code above: dropped
        assert_eq!(post_process("# TODO\nx = 1\n", "# TODO\ny = 2"), "\ny = 2");
    }

    #[test]
    fn long_repetitive_repeated_blocks_are_dropped() {
        let block = "alpha beta gamma\nalpha beta gamma delta\nalpha beta gamma\nalpha beta gamma delta\nalpha beta gamma\n";
        assert_eq!(post_process(&format!("start\n{block}"), &format!("{block}end")), "\nend");
        let short = "alpha beta gamma\nalpha beta\n";
        assert_eq!(post_process(&format!("start\n{short}"), &format!("{short}end")), format!("{short}end"));
    }
}
