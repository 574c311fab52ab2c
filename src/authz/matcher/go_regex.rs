//! Go RE2 regexes of ACL patterns, translated to the `regex` crate's syntax.
//!
//! A `/…/` pattern is a Go RE2 regex, matched unanchored. The `regex` crate is close to RE2 but
//! differs in a few places, so the Go syntax is translated first (see [`translate_go_regex`]):
//! `\d \w \s \b` (and negations) are ASCII-only in Go but Unicode in Rust; `\/`, `\<`, `\Q…\E`,
//! octal escapes, literal `{` and `[`/`&&`/`~~`/`--` inside classes mean different things or do
//! not exist in Rust. Go-only errors (lookaround, backreferences, unknown flags) are rejected.

use std::fmt::Write as _;

use regex::Regex;

const GO_DIGIT: &str = "0-9";
const GO_WORD: &str = "0-9A-Za-z_";
const GO_SPACE: &str = "\\t\\n\\f\\r ";
const POSIX_CLASSES: [&str; 14] = [
    "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower", "print", "punct",
    "space", "upper", "word", "xdigit",
];

/// Compiles a Go RE2 regex (the text between the slashes) with Go's meaning.
pub(super) fn compile_go_regex(src: &str) -> Result<Regex, String> {
    let translated = translate_go_regex(src)?;
    Regex::new(&translated).map_err(|e| {
        // The syntax error's last line names the problem; the rest quotes the translated
        // pattern, which would only confuse.
        let text = e.to_string();
        let last = text.lines().last().unwrap_or(&text).trim();
        format!(
            "{}; text between slashes is an RE2 regex matched anywhere in the value: fix the \
             syntax (escape special characters such as `.` `(` `[` with `\\`), or drop the \
             surrounding slashes to use a glob",
            last.strip_prefix("error: ").unwrap_or(last)
        )
    })
}

/// Rewrites Go RE2 syntax into `regex`-crate syntax with the same meaning.
fn translate_go_regex(src: &str) -> Result<String, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len() + 16);
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        i = match c {
            '\\' => translate_escape(&chars, i, &mut out)?,
            '[' => translate_class(&chars, i, &mut out)?,
            '(' => translate_group(&chars, i, &mut out)?,
            '{' => match repeat_end(&chars, i)? {
                Some(end) => {
                    out.extend(&chars[i..end]);
                    end
                }
                None => {
                    out.push_str("\\{");
                    i + 1
                }
            },
            '}' => {
                out.push_str("\\}");
                i + 1
            }
            _ => {
                out.push(c);
                i + 1
            }
        };
    }
    Ok(out)
}

/// An escape outside a class, `chars[i] == '\\'`. Returns the index after it.
fn translate_escape(chars: &[char], i: usize, out: &mut String) -> Result<usize, String> {
    let Some(&e) = chars.get(i + 1) else {
        return Err("trailing `\\`: write `\\\\` to match a literal backslash".to_owned());
    };
    let fixed = match e {
        'd' => "[0-9]",
        'D' => "[^0-9]",
        'w' => "[0-9A-Za-z_]",
        'W' => "[^0-9A-Za-z_]",
        's' => "[\\t\\n\\f\\r ]",
        'S' => "[^\\t\\n\\f\\r ]",
        'b' => "(?-u:\\b)",
        'B' => "(?-u:\\B)",
        'A' => "\\A",
        'z' => "\\z",
        'p' | 'P' => return copy_unicode_class(chars, i, out),
        'Q' => {
            let mut j = i + 2;
            while let Some(&c) = chars.get(j) {
                if c == '\\' && chars.get(j + 1) == Some(&'E') {
                    return Ok(j + 2);
                }
                push_char(out, c);
                j += 1;
            }
            return Ok(j);
        }
        _ => {
            let (c, next) = parse_escape_char(chars, i)?;
            push_char(out, c);
            return Ok(next);
        }
    };
    out.push_str(fixed);
    Ok(i + 2)
}

/// `\pL`, `\p{Greek}`, `\PL`, `\P{Greek}`: the same in both dialects.
fn copy_unicode_class(chars: &[char], i: usize, out: &mut String) -> Result<usize, String> {
    let end = match chars.get(i + 2) {
        Some('{') => chars[i + 2..]
            .iter()
            .position(|c| *c == '}')
            .map(|p| i + 2 + p + 1)
            .ok_or("unclosed `\\p{`: add the closing `}`")?,
        Some(_) => i + 3,
        None => return Err("`\\p` needs a Unicode class name, e.g. `\\pL` or `\\p{Greek}`".into()),
    };
    out.extend(&chars[i..end]);
    Ok(end)
}

/// A single-character escape (`chars[i] == '\\'`): octal, hex, C escapes, escaped punctuation.
fn parse_escape_char(chars: &[char], i: usize) -> Result<(char, usize), String> {
    let e = chars.get(i + 1).copied().unwrap_or('\\');
    let octal = |c: Option<&char>| c.and_then(|c| c.to_digit(8));
    match e {
        '1'..='7' if octal(chars.get(i + 2)).is_none() => Err(format!(
            "backreferences such as `\\{e}` are not supported by RE2; match the text again \
             explicitly or use a capture placeholder"
        )),
        '0'..='7' => {
            let mut value = 0u32;
            let mut j = i + 1;
            while j < i + 4
                && let Some(d) = octal(chars.get(j))
            {
                value = value * 8 + d;
                j += 1;
            }
            let c = char::from_u32(value).ok_or("invalid octal escape")?;
            Ok((c, j))
        }
        'x' => {
            let (digits, next): (String, usize) = if chars.get(i + 2) == Some(&'{') {
                let close = chars[i + 3..]
                    .iter()
                    .position(|c| *c == '}')
                    .ok_or("unclosed `\\x{`: add the closing `}`")?;
                (
                    chars[i + 3..i + 3 + close].iter().collect(),
                    i + 3 + close + 1,
                )
            } else {
                (chars.iter().skip(i + 2).take(2).collect(), i + 4)
            };
            let valid = !digits.is_empty()
                && digits.chars().all(|c| c.is_ascii_hexdigit())
                && (chars.get(i + 2) == Some(&'{') || digits.len() == 2);
            u32::from_str_radix(&digits, 16)
                .ok()
                .filter(|_| valid)
                .and_then(char::from_u32)
                .map(|c| (c, next))
                .ok_or_else(|| {
                    "invalid hex escape: write `\\x41` (two hex digits) or `\\x{1F600}`".to_owned()
                })
        }
        'a' => Ok(('\u{7}', i + 2)),
        'f' => Ok(('\u{c}', i + 2)),
        't' => Ok(('\t', i + 2)),
        'n' => Ok(('\n', i + 2)),
        'r' => Ok(('\r', i + 2)),
        'v' => Ok(('\u{b}', i + 2)),
        c if c.is_ascii() && !c.is_ascii_alphanumeric() => Ok((c, i + 2)),
        c => Err(format!(
            "unsupported escape `\\{c}`: RE2 does not know it; escape only punctuation \
             (`\\.`, `\\/`), or use \\d \\w \\s \\b \\pL \\x41 \\n \\t"
        )),
    }
}

/// A literal character in a form the `regex` crate reads as exactly that character, inside or
/// outside a class.
fn push_char(out: &mut String, c: char) {
    if c.is_control() {
        let _ = write!(out, "\\x{{{:X}}}", u32::from(c));
    } else {
        let mut buf = [0u8; 4];
        out.push_str(&regex::escape(c.encode_utf8(&mut buf)));
    }
}

/// A bracket class, `chars[i] == '['`. Returns the index after the closing `]`.
fn translate_class(chars: &[char], i: usize, out: &mut String) -> Result<usize, String> {
    const UNCLOSED: &str =
        "missing `]` at the end of a character class: add it, or write `\\[` for a literal `[`";
    out.push('[');
    let mut j = i + 1;
    if chars.get(j) == Some(&'^') {
        out.push('^');
        j += 1;
    }
    let start = j;
    loop {
        let Some(&c) = chars.get(j) else {
            return Err(UNCLOSED.to_owned());
        };
        if c == ']' && j > start {
            out.push(']');
            return Ok(j + 1);
        }
        if c == '['
            && chars.get(j + 1) == Some(&':')
            && let Some(end) = posix_class_end(chars, j)?
        {
            out.extend(&chars[j..end]);
            j = end;
            continue;
        }
        if c == '\\' {
            let perl = match chars.get(j + 1) {
                Some('d') => Some(GO_DIGIT.to_owned()),
                Some('w') => Some(GO_WORD.to_owned()),
                Some('s') => Some(GO_SPACE.to_owned()),
                Some('D') => Some(format!("[^{GO_DIGIT}]")),
                Some('W') => Some(format!("[^{GO_WORD}]")),
                Some('S') => Some(format!("[^{GO_SPACE}]")),
                Some('p' | 'P') => {
                    j = copy_unicode_class(chars, j, out)?;
                    continue;
                }
                _ => None,
            };
            if let Some(perl) = perl {
                out.push_str(&perl);
                j += 2;
                continue;
            }
        }
        let (lo, next) = class_char_go(chars, j)?;
        j = next;
        if chars.get(j) == Some(&'-') && chars.get(j + 1).is_some_and(|c| *c != ']') {
            let (hi, next) = class_char_go(chars, j + 1)?;
            if hi < lo {
                return Err(format!(
                    "the range `{lo}-{hi}` in `[...]` is reversed: write `{hi}-{lo}`"
                ));
            }
            push_char(out, lo);
            out.push('-');
            push_char(out, hi);
            j = next;
        } else {
            push_char(out, lo);
        }
    }
}

fn class_char_go(chars: &[char], j: usize) -> Result<(char, usize), String> {
    match chars.get(j) {
        Some('\\') if j + 1 < chars.len() => parse_escape_char(chars, j),
        Some('\\') | None => Err(
            "missing `]` at the end of a character class: add it, or write `\\[` for a literal `[`"
                .to_owned(),
        ),
        Some(&c) => Ok((c, j + 1)),
    }
}

/// `[:name:]` at `chars[j]`: `Some(end)` for a known class, `None` when there is no `:]` (then
/// `[` is a literal, as in Go), an error for an unknown name.
fn posix_class_end(chars: &[char], j: usize) -> Result<Option<usize>, String> {
    let rest = &chars[j + 2..];
    let Some(close) = rest.windows(2).position(|w| w == [':', ']']) else {
        return Ok(None);
    };
    let name: String = rest[..close].iter().collect();
    if POSIX_CLASSES.contains(&name.strip_prefix('^').unwrap_or(&name)) {
        Ok(Some(j + 2 + close + 2))
    } else {
        Err(format!(
            "unknown POSIX class `[:{name}:]`; known: {}",
            POSIX_CLASSES.join(", ")
        ))
    }
}

/// `{n}`, `{n,}`, `{n,m}` at `chars[i]`: `Some(end)`. Anything else is a literal `{` in Go.
fn repeat_end(chars: &[char], i: usize) -> Result<Option<usize>, String> {
    let mut j = i + 1;
    let digits = |j: &mut usize| {
        let start = *j;
        while chars.get(*j).is_some_and(char::is_ascii_digit) {
            *j += 1;
        }
        chars[start..*j].iter().collect::<String>()
    };
    let min = digits(&mut j);
    if min.is_empty() {
        return Ok(None);
    }
    let mut max = String::new();
    if chars.get(j) == Some(&',') {
        j += 1;
        max = digits(&mut j);
    }
    if chars.get(j) != Some(&'}') {
        return Ok(None);
    }
    let too_big = |s: &str| !s.is_empty() && !s.parse::<u32>().is_ok_and(|n| n <= 1000);
    if too_big(&min) || too_big(&max) {
        return Err("repeat counts above 1000 are not allowed by RE2; use `+` or `*`".to_owned());
    }
    Ok(Some(j + 1))
}

/// `(` at `chars[i]`: plain groups, `(?:`, `(?P<name>`, `(?<name>` and the flags `i m s U`.
fn translate_group(chars: &[char], i: usize, out: &mut String) -> Result<usize, String> {
    if chars.get(i + 1) != Some(&'?') {
        out.push('(');
        return Ok(i + 1);
    }
    match (chars.get(i + 2), chars.get(i + 3)) {
        (Some('P'), Some('<')) => {
            out.push_str("(?P<");
            return Ok(i + 4);
        }
        (Some('<'), Some('=' | '!')) | (Some('=' | '!'), _) => {
            return Err(
                "lookaround (`(?=`, `(?!`, `(?<=`, `(?<!`) is not supported by RE2; \
                        rewrite the expression without it, or split the rule in two"
                    .to_owned(),
            );
        }
        (Some('<'), _) => {
            out.push_str("(?<");
            return Ok(i + 3);
        }
        _ => {}
    }
    let mut j = i + 2;
    while chars
        .get(j)
        .is_some_and(|c| matches!(c, 'i' | 'm' | 's' | 'U' | '-'))
    {
        j += 1;
    }
    match chars.get(j) {
        Some(':' | ')') => {
            out.extend(&chars[i..=j]);
            Ok(j + 1)
        }
        other => Err(format!(
            "unsupported group syntax `(?{}`: RE2 knows `(?:…)`, `(?P<name>…)`, `(?<name>…)` and \
             the flags i, m, s, U (e.g. `(?i)`)",
            other.map(char::to_string).unwrap_or_default()
        )),
    }
}
