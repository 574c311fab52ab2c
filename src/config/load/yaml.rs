//! YAML the way docker_auth's reader (Go's yaml.v2) took it, and where we differ: merge keys
//! nested inside merged mappings, top-level anchor holders, and repeated keys explained (yaml.v2
//! kept the last silently; YAML 1.2 forbids them, so we refuse with both lines).
//!
//! Hand-written: serde_yaml_ng reports a repeated key with the mapping's position only, so the
//! key's own lines are found here by scanning the text (block and flow mappings).

use serde_yaml_ng::Value;

/// Applies every merge key (`<<: *base`, `<<: [*a, *b]`) in `root`: the mapping's own keys win,
/// then the merged mappings in order. A merged mapping may itself merge another (`<<: *alice`
/// where alice has `<<: *shop`): one pass brings its `<<` along as a plain key, so passes repeat
/// until none is left (each removes one level of nesting). The error is the message to show.
pub(super) fn apply_merges(root: &mut Value) -> Result<(), String> {
    for _ in 0..MAX_MERGE_DEPTH {
        root.apply_merge().map_err(|e| {
            format!(
                "a merge key `<<` must name a mapping or a list of mappings (`<<: *base`, `<<: \
                 [*a, *b]`): {e}"
            )
        })?;
        if !has_merge_key(root) {
            return Ok(());
        }
    }
    Err(format!(
        "merge keys `<<` nest more than {MAX_MERGE_DEPTH} deep; flatten the anchors"
    ))
}

/// Most levels of merges inside merged mappings (`<<: *a` where `a` merges `b`, …).
const MAX_MERGE_DEPTH: usize = 16;

/// Whether a `<<` key is left anywhere in `v`.
fn has_merge_key(v: &Value) -> bool {
    match v {
        Value::Mapping(m) => m
            .iter()
            .any(|(k, v)| k.as_str() == Some("<<") || has_merge_key(v)),
        Value::Sequence(s) => s.iter().any(has_merge_key),
        Value::Tagged(t) => has_merge_key(&t.value),
        _ => false,
    }
}

/// A top-level key that only holds anchors for the rest of the file and is otherwise ignored:
/// one starting with `x-` (as in Compose files) or `.` (as in GitLab CI files).
pub(super) fn is_anchor_holder(key: &str) -> bool {
    key.starts_with("x-") || (key.starts_with('.') && key.len() > 1)
}

/// A repeated key, explained: both lines and the value docker_auth used (Go's yaml.v2 kept the
/// last one silently; YAML 1.2 forbids repeating a key, so we refuse). `None` when `err` is not
/// a duplicate key of a block or flow mapping we can find in `text`.
pub(super) fn duplicate_key(text: &str, err: &serde_yaml_ng::Error) -> Option<(String, String)> {
    let message = err.to_string();
    let (path, rest) = match message.strip_prefix("duplicate entry with key \"") {
        // The top-level mapping: no path, no location.
        Some(rest) => ("", rest),
        None => message.split_once(": duplicate entry with key \"")?,
    };
    let key = rest.split_once('"')?.0;
    let (line, column) = err.location().map_or((1, 1), |l| (l.line(), l.column()));
    let lines: Vec<&str> = text.lines().collect();
    let start = line.checked_sub(1)?;
    let indent = column.checked_sub(1)?;
    let flow = lines
        .get(start)
        .and_then(|l| l.chars().nth(indent))
        .is_some_and(|c| c == '{');
    let found = if flow {
        flow_key_lines(&lines, start, indent, key)
    } else {
        block_key_lines(&lines, start, indent, key)
    };
    let (first, last) = (*found.first()?, *found.last()?);
    if found.len() < 2 {
        return None;
    }
    let full = if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    };
    let (where_, which) = if first == last {
        (format!("on line {first}"), "the later one".to_owned())
    } else {
        (
            format!("(lines {first} and {last})"),
            format!("the last one (line {last})"),
        )
    };
    Some((
        full,
        format!(
            "given twice {where_}; YAML forbids repeating a key, and docker_auth silently used \
             {which}: keep the one you mean and remove the other"
        ),
    ))
}

/// The lines (1-based) where `key` is a key of the block mapping starting at line `start`,
/// column `indent` (0-based).
fn block_key_lines(lines: &[&str], start: usize, indent: usize, key: &str) -> Vec<usize> {
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate().skip(start) {
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let here = line.len() - content.len();
        if i > start && here < indent {
            break;
        }
        let is_key = here == indent
            && content
                .strip_prefix(key)
                .or_else(|| content.strip_prefix(&format!("\"{key}\"")))
                .is_some_and(|r| r.trim_start().starts_with(':'));
        if is_key {
            found.push(i + 1);
        }
    }
    found
}

/// The lines (1-based) where `key` is a key of the flow mapping (`{a: 1, b: 2}`) whose `{` is
/// at line `start`, column `col` (0-based). Nested flow collections, quoted scalars and
/// comments are skipped.
fn flow_key_lines(lines: &[&str], start: usize, col: usize, key: &str) -> Vec<usize> {
    let mut found = Vec::new();
    let mut depth = 0usize;
    // The text of the current entry at depth 1 up to its `:`, and the line it started on.
    let mut entry: Option<(String, usize)> = None;
    let mut quote: Option<char> = None;
    for (i, line) in lines.iter().enumerate().skip(start) {
        let skip = if i == start { col } else { 0 };
        let mut chars = line.chars().skip(skip).peekable();
        while let Some(c) = chars.next() {
            if let Some(q) = quote {
                if c == q {
                    quote = None;
                }
                if let Some((text, _)) = entry.as_mut() {
                    text.push(c);
                }
                continue;
            }
            match c {
                '#' => break,
                '"' | '\'' => {
                    quote = Some(c);
                    if let Some((text, at)) = entry.as_mut() {
                        if text.trim().is_empty() {
                            *at = i + 1;
                        }
                        text.push(c);
                    }
                }
                '{' | '[' => {
                    depth += 1;
                    if depth == 1 {
                        entry = Some((String::new(), i + 1));
                    }
                }
                '}' | ']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return found;
                    }
                }
                ',' if depth == 1 => entry = Some((String::new(), i + 1)),
                ':' if depth == 1
                    && chars
                        .peek()
                        .is_none_or(|n| n.is_whitespace() || ",}".contains(*n)) =>
                {
                    if let Some((text, at)) = entry.take() {
                        let k = text.trim();
                        let unquoted = k
                            .strip_prefix('"')
                            .and_then(|k| k.strip_suffix('"'))
                            .or_else(|| k.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')))
                            .unwrap_or(k);
                        if unquoted == key {
                            found.push(at);
                        }
                    }
                }
                _ if depth == 1 => {
                    if let Some((text, at)) = entry.as_mut() {
                        if text.trim().is_empty() && !c.is_whitespace() {
                            *at = i + 1;
                        }
                        text.push(c);
                    }
                }
                _ => {}
            }
        }
    }
    found
}
