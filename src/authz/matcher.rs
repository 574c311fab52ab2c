//! String patterns of ACL `match` fields: globs, Go-flavoured regexes and placeholders.
//!
//! # Why a hand-written glob matcher
//!
//! docker_auth matches globs with Go's `path.Match`: whole-string, `*` and `?` never cross `/`,
//! `[...]` classes (which, unlike `*` and `?`, may match `/`), `\` escapes, no `{a,b}`. We add
//! `**` (any run of characters *including* `/`). No existing crate has exactly these semantics,
//! and translating globs to regexes would mean compiling a regex for every request whose pattern
//! contains a placeholder. So a pattern is parsed once into [`Glob`] tokens and matched by a
//! position-set simulation (a DP over *(token, byte offset)* run one token at a time with a
//! bitset): the cost is `O(tokens × input length)` whatever the pattern, so `*a*a*a…b` against a
//! long `aaa…` cannot go exponential. For inputs up to 511 bytes the bitset lives on the stack,
//! so matching a placeholder-free glob allocates nothing.
//!
//! # Regexes
//!
//! A `/…/` pattern is a Go RE2 regex, matched unanchored. The `regex` crate is close to RE2 but
//! differs in a few places, so the Go syntax is translated first (see [`translate_go_regex`]):
//! `\d \w \s \b` (and negations) are ASCII-only in Go but Unicode in Rust; `\/`, `\<`, `\Q…\E`,
//! octal escapes, literal `{` and `[`/`&&`/`~~`/`--` inside classes mean different things or do
//! not exist in Rust. Go-only errors (lookaround, backreferences, unknown flags) are rejected.
//!
//! # Placeholders
//!
//! A pattern is split once into [`Segment`]s. A pattern without placeholders is compiled at load
//! time. One with placeholders is expanded per request and then parsed (glob) or compiled
//! (regex).
//!
//! **Values are data, never patterns.** Every inserted value (request fields, capture groups,
//! label values from users, providers and CI tokens) is quoted for the pattern's kind, so it
//! only matches itself: a label `**` or `/.*/` is the literal text `**` or `/.*/`. Whether a
//! pattern is a glob or a `/regex/` is decided by the text as written, never by what a value
//! makes of it. A placeholder without a value (a label the user does not have, a capture that
//! did not happen) makes the condition fail, rather than being matched as literal text.
//!
//! # Cost of regex templates
//!
//! Compiling a regex costs tens of microseconds, so a `/regex/` with placeholders keeps a small
//! bounded cache of its compiled expansions, keyed by the expanded text ([`REGEX_CACHE_SIZE`]
//! per pattern): the same account, service or label value is compiled once, not once per scope
//! per request. Expansions that change with every scope (`${name}`, `${type}`, captures) are
//! bounded per request by the token endpoint (see [`Pattern::varies_per_scope`]).

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use regex::Regex;

/// The request fields that can be matched and used as placeholders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Account,
    Type,
    Name,
    Service,
}

impl Field {
    /// All fields, in the order of [`Field::index`].
    pub(crate) const ALL: [Self; 4] = [Self::Account, Self::Type, Self::Name, Self::Service];

    /// Position in per-field arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            Self::Account => 0,
            Self::Type => 1,
            Self::Name => 2,
            Self::Service => 3,
        }
    }

    /// The YAML key and placeholder name (`type` for [`Field::Type`]).
    pub(crate) fn key(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::Type => "type",
            Self::Name => "name",
            Self::Service => "service",
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.key() == key)
    }
}

/// What a pattern may look up while it is matched against one request.
pub(crate) trait Env {
    /// The request value of a field (`${account}` …).
    fn var(&self, field: Field) -> &str;
    /// Capture group `group` (1-based) of `field`'s `/regex/` matched against the request value;
    /// `None` when out of range, when the field is not a regex, or when it did not match.
    fn capture(&self, field: Field, group: usize) -> Option<&str>;
    /// The user's values of a label, `None` when the user does not have it.
    fn labels(&self, key: &str) -> Option<&[String]>;
}

/// `len > 2` and wrapped in slashes: docker_auth's test for "this is a regex".
pub(crate) fn is_regex_shaped(s: &str) -> bool {
    s.len() > 2 && s.starts_with('/') && s.ends_with('/')
}

// ---------------------------------------------------------------------------------------------
// Globs
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// A run of literal characters.
    Lit(Box<str>),
    /// `?`: one character other than `/`.
    Any,
    /// `*`: any run of characters other than `/`.
    Star,
    /// `**` (or more stars): any run of characters.
    DoubleStar,
    /// `[...]`: one character in (or, negated, not in) the ranges. May match `/` (as in Go).
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A parsed glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    toks: Vec<Tok>,
}

const UNCLOSED_CLASS: &str =
    "unclosed `[`: add the closing `]`, or write `\\[` to match a literal `[`";
const LONE_BACKSLASH: &str =
    "the pattern ends with a lone `\\`: write `\\\\` to match a literal backslash";

impl Glob {
    /// Parses Go `path.Match` syntax plus `**`. The error says what is wrong and how to fix it.
    pub(crate) fn parse(pattern: &str) -> Result<Self, String> {
        let mut toks = Vec::new();
        let mut lit = String::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            let tok = match c {
                '*' => {
                    let mut double = false;
                    while chars.next_if_eq(&'*').is_some() {
                        double = true;
                    }
                    if double { Tok::DoubleStar } else { Tok::Star }
                }
                '?' => Tok::Any,
                '[' => parse_class(&mut chars)?,
                '\\' => {
                    lit.push(chars.next().ok_or(LONE_BACKSLASH)?);
                    continue;
                }
                _ => {
                    lit.push(c);
                    continue;
                }
            };
            if !lit.is_empty() {
                toks.push(Tok::Lit(std::mem::take(&mut lit).into_boxed_str()));
            }
            toks.push(tok);
        }
        if !lit.is_empty() {
            toks.push(Tok::Lit(lit.into_boxed_str()));
        }
        Ok(Self { toks })
    }

    /// Whole-string match.
    pub(crate) fn matches(&self, s: &str) -> bool {
        let n = s.len();
        let words = n / 64 + 1;
        let mut stack = [0u64; 8];
        let mut heap;
        let set: &mut [u64] = if words <= stack.len() {
            &mut stack[..words]
        } else {
            heap = vec![0u64; words];
            &mut heap
        };
        // `set` holds the byte offsets (always char boundaries) reachable after the tokens so far.
        set[0] = 1;
        for tok in &self.toks {
            match tok {
                Tok::DoubleStar => {
                    let Some(first) = first_bit(set) else {
                        return false;
                    };
                    for p in first..=n {
                        if s.is_char_boundary(p) {
                            set_bit(set, p);
                        }
                    }
                }
                Tok::Star => {
                    // Ascending: offsets set during the sweep are extended again (closure).
                    for p in 0..n {
                        if get_bit(set, p)
                            && let Some(c) = s[p..].chars().next()
                            && c != '/'
                        {
                            set_bit(set, p + c.len_utf8());
                        }
                    }
                }
                Tok::Lit(_) | Tok::Any | Tok::Class { .. } => {
                    // Descending: each offset moves forward by one step; a target above `p` has
                    // already been consumed, so setting it cannot be confused with an old bit.
                    let mut any = false;
                    for p in (0..=n).rev() {
                        if get_bit(set, p) {
                            clear_bit(set, p);
                            if let Some(len) = step(tok, &s[p..]) {
                                set_bit(set, p + len);
                                any = true;
                            }
                        }
                    }
                    if !any {
                        return false;
                    }
                }
            }
        }
        get_bit(set, n)
    }

    /// True for `**` (and `***` …): matches every string.
    fn matches_everything(&self) -> bool {
        !self.toks.is_empty() && self.toks.iter().all(|t| *t == Tok::DoubleStar)
    }

    /// The single string a glob without wildcards matches.
    fn literal(&self) -> Option<&str> {
        match self.toks.as_slice() {
            [] => Some(""),
            [Tok::Lit(s)] => Some(s),
            _ => None,
        }
    }
}

fn parse_class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<Tok, String> {
    let negated = chars.next_if(|c| *c == '^' || *c == '!').is_some();
    let mut ranges = Vec::new();
    loop {
        let c = chars.next().ok_or(UNCLOSED_CLASS)?;
        if c == ']' && !ranges.is_empty() {
            break;
        }
        let lo = class_char(c, chars, ranges.is_empty())?;
        let hi = if chars.next_if_eq(&'-').is_some() {
            match chars.next().ok_or(UNCLOSED_CLASS)? {
                ']' => {
                    return Err("`-` right before `]` needs a range end: write `\\-` for a \
                                literal dash"
                        .to_owned());
                }
                c => class_char(c, chars, false)?,
            }
        } else {
            lo
        };
        if hi < lo {
            return Err(format!(
                "the range `{lo}-{hi}` in `[...]` is reversed: write `{hi}-{lo}`"
            ));
        }
        ranges.push((lo, hi));
    }
    Ok(Tok::Class { negated, ranges })
}

fn class_char(
    c: char,
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    first: bool,
) -> Result<char, String> {
    match c {
        '\\' => chars.next().ok_or_else(|| UNCLOSED_CLASS.to_owned()),
        '-' => Err(
            "unescaped `-` in `[...]`: write `\\-` for a literal dash, or put it between \
                    two characters for a range (`a-z`)"
                .to_owned(),
        ),
        ']' if first => Err(
            "empty `[]`: a class needs at least one character; write `\\[` and \
                             `\\]` to match literal brackets"
                .to_owned(),
        ),
        _ => Ok(c),
    }
}

/// Length of the text one single-step token consumes at the start of `s`, if it matches.
fn step(tok: &Tok, s: &str) -> Option<usize> {
    match tok {
        Tok::Lit(lit) => s.starts_with(&**lit).then_some(lit.len()),
        Tok::Any => s.chars().next().filter(|c| *c != '/').map(char::len_utf8),
        Tok::Class { negated, ranges } => {
            let c = s.chars().next()?;
            let inside = ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
            (inside != *negated).then_some(c.len_utf8())
        }
        Tok::Star | Tok::DoubleStar => None,
    }
}

fn get_bit(set: &[u64], p: usize) -> bool {
    set[p >> 6] & (1 << (p & 63)) != 0
}

fn set_bit(set: &mut [u64], p: usize) {
    set[p >> 6] |= 1 << (p & 63);
}

fn clear_bit(set: &mut [u64], p: usize) {
    set[p >> 6] &= !(1 << (p & 63));
}

fn first_bit(set: &[u64]) -> Option<usize> {
    set.iter()
        .enumerate()
        .find(|(_, w)| **w != 0)
        .map(|(i, w)| i * 64 + w.trailing_zeros() as usize)
}

// ---------------------------------------------------------------------------------------------
// Go RE2 → Rust regex
// ---------------------------------------------------------------------------------------------

const GO_DIGIT: &str = "0-9";
const GO_WORD: &str = "0-9A-Za-z_";
const GO_SPACE: &str = "\\t\\n\\f\\r ";
const POSIX_CLASSES: [&str; 14] = [
    "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower", "print", "punct",
    "space", "upper", "word", "xdigit",
];

/// Compiles a Go RE2 regex (the text between the slashes) with Go's meaning.
pub(crate) fn compile_go_regex(src: &str) -> Result<Regex, String> {
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
pub(crate) fn translate_go_regex(src: &str) -> Result<String, String> {
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

// ---------------------------------------------------------------------------------------------
// Patterns with placeholders
// ---------------------------------------------------------------------------------------------

/// A piece of a pattern. Every value a placeholder inserts is quoted for the pattern's kind.
#[derive(Debug, Clone)]
enum Segment {
    Lit(String),
    /// `${account}` …: the request value.
    Var(Field),
    /// `${account:N}`: capture group N of that field's regex.
    Capture {
        field: Field,
        group: usize,
    },
    /// `${labels:KEY}`: index into [`Template::label_keys`].
    Label {
        key: usize,
    },
}

#[derive(Debug, Clone)]
struct Template {
    segments: Vec<Segment>,
    /// Distinct label keys, in order of first use.
    label_keys: Vec<String>,
    /// Compiled expansions, for a `/regex/` template.
    cache: Arc<RegexCache>,
}

#[derive(Debug, Clone)]
enum Body {
    Glob(Glob),
    Regex(Regex),
    Template(Template),
}

/// Compiled expansions a `/regex/` template keeps, at most.
pub(crate) const REGEX_CACHE_SIZE: usize = 64;

/// The compiled expansions of one `/regex/` template, keyed by the expanded text (an invalid
/// expansion is kept as `None`). First in, first out: simple, and bounded.
#[derive(Debug, Default)]
struct RegexCache {
    entries: Mutex<CacheEntries>,
    /// Regexes compiled so far (cache misses), for tests and diagnostics.
    compilations: AtomicUsize,
}

#[derive(Debug, Default)]
struct CacheEntries {
    map: HashMap<Box<str>, Option<Arc<Regex>>>,
    order: VecDeque<Box<str>>,
}

impl RegexCache {
    /// The compiled regex of the expanded `/…/` text, compiling it on a miss.
    fn get(&self, text: &str) -> Option<Arc<Regex>> {
        let lock = || self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(hit) = lock().map.get(text) {
            return hit.clone();
        }
        // Compiled outside the lock; two threads racing on the same text both compile once.
        self.compilations.fetch_add(1, Ordering::Relaxed);
        let compiled = text
            .get(1..text.len().saturating_sub(1))
            .and_then(|inner| compile_go_regex(inner).ok())
            .map(Arc::new);
        let mut entries = lock();
        if !entries.map.contains_key(text) {
            if entries.order.len() >= REGEX_CACHE_SIZE
                && let Some(old) = entries.order.pop_front()
            {
                entries.map.remove(&old);
            }
            entries.order.push_back(text.into());
            entries.map.insert(text.into(), compiled.clone());
        }
        compiled
    }
}

/// A compiled `match` string.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    raw: String,
    regex_shaped: bool,
    body: Body,
}

const PLACEHOLDER_HELP: &str = "use ${account}, ${type}, ${name}, ${service}, ${<field>:N} \
     (capture group N of that field's /regex/, e.g. ${account:1}) or ${labels:KEY}; \
     names are case-sensitive";

impl Pattern {
    /// Parses and validates a pattern. The error says what is wrong and how to fix it.
    pub(crate) fn compile(raw: &str) -> Result<Self, String> {
        let regex_shaped = is_regex_shaped(raw);
        let (segments, label_keys) = parse_segments(raw)?;
        let body = if segments.iter().all(|s| matches!(s, Segment::Lit(_))) {
            if regex_shaped {
                Body::Regex(
                    compile_go_regex(&raw[1..raw.len() - 1]).map_err(|e| regex_error(raw, &e))?,
                )
            } else {
                Body::Glob(Glob::parse(raw).map_err(|e| glob_error(raw, &e))?)
            }
        } else {
            escaped_placeholder(raw, &segments)?;
            let template = Template {
                segments,
                label_keys,
                cache: Arc::default(),
            };
            // Validate the shape with every placeholder replaced by a plain letter.
            let probe: String = template
                .segments
                .iter()
                .map(|s| match s {
                    Segment::Lit(l) => l.as_str(),
                    _ => "x",
                })
                .collect();
            if regex_shaped {
                compile_go_regex(&probe[1..probe.len() - 1]).map_err(|e| regex_error(raw, &e))?;
            } else {
                Glob::parse(&probe).map_err(|e| glob_error(raw, &e))?;
            }
            Body::Template(template)
        };
        Ok(Self {
            raw: raw.to_owned(),
            regex_shaped,
            body,
        })
    }

    /// The pattern as written.
    pub(crate) fn raw(&self) -> &str {
        &self.raw
    }

    /// Does `value` match, with placeholders taken from `env`?
    pub(crate) fn matches<E: Env + ?Sized>(&self, value: &str, env: &E) -> bool {
        match &self.body {
            Body::Glob(g) => g.matches(value),
            Body::Regex(r) => r.is_match(value),
            Body::Template(t) => self.matches_template(t, value, env),
        }
    }

    fn matches_template<E: Env + ?Sized>(&self, t: &Template, value: &str, env: &E) -> bool {
        if t.label_keys.is_empty() {
            return self.matches_expanded(t, value, env, None);
        }
        // Every combination of the user's values of the labels the pattern names; a user
        // without one of the labels does not match.
        let mut lists: Vec<&[String]> = Vec::with_capacity(t.label_keys.len());
        for key in &t.label_keys {
            match env.labels(key) {
                Some(values) if !values.is_empty() => lists.push(values),
                _ => return false,
            }
        }
        let mut idx = vec![0usize; lists.len()];
        let mut choice: Vec<&str> = lists.iter().map(|l| l[0].as_str()).collect();
        loop {
            if self.matches_expanded(t, value, env, Some(&choice)) {
                return true;
            }
            // Odometer over the cartesian product.
            let mut pos = 0;
            loop {
                let Some(list) = lists.get(pos) else {
                    return false;
                };
                idx[pos] += 1;
                if let Some(v) = list.get(idx[pos]) {
                    choice[pos] = v.as_str();
                    break;
                }
                idx[pos] = 0;
                choice[pos] = list[0].as_str();
                pos += 1;
            }
        }
    }

    fn matches_expanded<E: Env + ?Sized>(
        &self,
        t: &Template,
        value: &str,
        env: &E,
        choice: Option<&[&str]>,
    ) -> bool {
        // The kind comes from the pattern as written: a value never makes a glob a regex.
        if self.regex_shaped {
            return t
                .expand(env, choice, true)
                .and_then(|text| t.cache.get(&text))
                .is_some_and(|re| re.is_match(value));
        }
        t.expand(env, choice, true)
            .and_then(|text| Glob::parse(&text).ok())
            .is_some_and(|g| g.matches(value))
    }

    /// Groups 1..=n of this pattern's regex matched against `value` (a group that did not take
    /// part is `""`); `None` if this is not a `/regex/` or it does not match. A regex that
    /// itself uses captures or labels has no captures to offer (no cycles, no guessing).
    pub(crate) fn capture_groups<E: Env + ?Sized>(
        &self,
        value: &str,
        env: &E,
    ) -> Option<Vec<String>> {
        if !self.regex_shaped {
            return None;
        }
        let dynamic;
        let re = match &self.body {
            Body::Regex(r) => r,
            Body::Template(t) => {
                dynamic = t.cache.get(&t.expand(env, None, false)?)?;
                &*dynamic
            }
            Body::Glob(_) => return None,
        };
        let caps = re.captures(value)?;
        Some(
            (1..caps.len())
                .map(|i| caps.get(i).map_or("", |m| m.as_str()).to_owned())
                .collect(),
        )
    }

    /// A `/regex/` whose expansion may differ from one scope of a request to the next (it uses
    /// `${type}`, `${name}` or a capture), so it may be compiled once per scope.
    pub(crate) fn varies_per_scope(&self) -> bool {
        let Body::Template(t) = &self.body else {
            return false;
        };
        self.regex_shaped
            && t.segments.iter().any(|s| {
                matches!(
                    s,
                    Segment::Var(Field::Type | Field::Name) | Segment::Capture { .. }
                )
            })
    }

    /// Regexes this pattern compiled after loading (cache misses).
    #[cfg(test)]
    pub(crate) fn compilations(&self) -> usize {
        match &self.body {
            Body::Template(t) => t.cache.compilations.load(Ordering::Relaxed),
            _ => 0,
        }
    }

    /// Fields whose captures this pattern uses.
    pub(crate) fn capture_fields(&self) -> impl Iterator<Item = Field> + '_ {
        let segments = match &self.body {
            Body::Template(t) => t.segments.as_slice(),
            _ => &[],
        };
        segments.iter().filter_map(|s| match s {
            Segment::Capture { field, .. } => Some(*field),
            _ => None,
        })
    }

    /// Sure to match every string (`**`, or a placeholder-free regex without anchors or word
    /// boundaries that matches the empty string, such as `/.*/`).
    pub(crate) fn matches_everything(&self) -> bool {
        match &self.body {
            Body::Glob(g) => g.matches_everything(),
            Body::Regex(r) => {
                let inner = &self.raw[1..self.raw.len() - 1];
                let assertion = inner.contains(['^', '$'])
                    || ["\\b", "\\B", "\\A", "\\z"]
                        .iter()
                        .any(|a| inner.contains(a));
                !assertion && r.is_match("")
            }
            Body::Template(_) => false,
        }
    }

    /// Is every string this pattern matches also matched by `self`? Conservative: `false` when
    /// unsure. Patterns that use captures are only compared by the caller (which knows whether
    /// the captured fields are the same).
    pub(crate) fn surely_covers(&self, other: &Self) -> bool {
        if self.matches_everything() {
            return true;
        }
        let (Some(mine), Some(theirs)) = (self.static_body(), other.static_body()) else {
            return false;
        };
        if let Body::Glob(g) = theirs
            && let Some(lit) = g.literal()
        {
            return match mine {
                Body::Glob(m) => m.matches(lit),
                Body::Regex(r) => r.is_match(lit),
                Body::Template(_) => false,
            };
        }
        // `prefix**` covers every glob that starts with the literal `prefix`.
        if let (Body::Glob(m), Body::Glob(g)) = (mine, theirs)
            && let [Tok::Lit(prefix), Tok::DoubleStar] = m.toks.as_slice()
            && let Some(Tok::Lit(lead)) = g.toks.first()
        {
            return lead.starts_with(&**prefix);
        }
        false
    }

    fn static_body(&self) -> Option<&Body> {
        match &self.body {
            Body::Template(_) => None,
            b => Some(b),
        }
    }
}

fn regex_error(raw: &str, err: &str) -> String {
    format!("`{raw}` is not a valid regular expression: {err}")
}

fn glob_error(raw: &str, err: &str) -> String {
    format!("`{raw}` is not a valid glob: {err}")
}

/// A literal right before a placeholder must not end in an unescaped `\`: it would escape the
/// first character of the quoted value and so unquote the next one.
fn escaped_placeholder(raw: &str, segments: &[Segment]) -> Result<(), String> {
    for pair in segments.windows(2) {
        if let [Segment::Lit(lit), next] = pair
            && !matches!(next, Segment::Lit(_))
            && lit.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
        {
            return Err(format!(
                "`{raw}`: a `\\` right before a placeholder would escape the inserted value; \
                 write `\\\\` for a literal backslash (a placeholder cannot be escaped)"
            ));
        }
    }
    Ok(())
}

impl Template {
    /// The pattern text with every value quoted; `None` when a placeholder has no value (a
    /// capture that did not happen, a label not chosen): the condition then fails.
    fn expand<E: Env + ?Sized>(
        &self,
        env: &E,
        choice: Option<&[&str]>,
        captures: bool,
    ) -> Option<String> {
        let mut out = String::new();
        for seg in &self.segments {
            match seg {
                Segment::Lit(l) => out.push_str(l),
                Segment::Var(f) => quote_into(&mut out, env.var(*f)),
                Segment::Capture { field, group } => {
                    let value = captures.then(|| env.capture(*field, *group)).flatten()?;
                    quote_into(&mut out, value);
                }
                Segment::Label { key } => {
                    quote_into(&mut out, choice?.get(*key)?);
                }
            }
        }
        Some(out)
    }
}

/// Appends `value` so that the pattern matches it literally, in a glob (also inside `[...]`)
/// as in a Go regex: every ASCII punctuation character is escaped with `\`. That covers the
/// glob metacharacters `* ? [ ] \` (hence `**`), every regex metacharacter, and `/`, which
/// both dialects read as a plain slash once escaped.
fn quote_into(out: &mut String, value: &str) {
    for c in value.chars() {
        if c.is_ascii_punctuation() {
            out.push('\\');
        }
        out.push(c);
    }
}

type Segments = (Vec<Segment>, Vec<String>);

fn parse_segments(raw: &str) -> Result<Segments, String> {
    let mut segments = Vec::new();
    let mut label_keys: Vec<String> = Vec::new();
    let mut lit = String::new();
    let mut rest = raw;
    while let Some(pos) = rest.find("${") {
        lit.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let Some(end) = after.find('}') else {
            lit.push_str(&rest[pos..]);
            rest = "";
            break;
        };
        let body = &after[..end];
        let placeholder = &rest[pos..pos + 2 + end + 1];
        match classify(body, placeholder, &mut label_keys)? {
            Some(seg) => {
                if !lit.is_empty() {
                    segments.push(Segment::Lit(std::mem::take(&mut lit)));
                }
                segments.push(seg);
                rest = &after[end + 1..];
            }
            None => {
                lit.push_str("${");
                rest = after;
            }
        }
    }
    lit.push_str(rest);
    if !lit.is_empty() || segments.is_empty() {
        segments.push(Segment::Lit(lit));
    }
    Ok((segments, label_keys))
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `Some` for a placeholder, `None` for text that merely looks like `${…}` (kept literally).
fn classify(
    body: &str,
    placeholder: &str,
    label_keys: &mut Vec<String>,
) -> Result<Option<Segment>, String> {
    if let Some(field) = Field::from_key(body) {
        return Ok(Some(Segment::Var(field)));
    }
    let Some((name, arg)) = body.split_once(':') else {
        return if is_identifier(body) {
            Err(format!(
                "unknown placeholder `{placeholder}`; {PLACEHOLDER_HELP}"
            ))
        } else {
            Ok(None)
        };
    };
    if name == "labels" {
        if arg.is_empty() {
            return Err(format!(
                "`{placeholder}` needs a label name, e.g. `${{labels:groups}}`"
            ));
        }
        let key = match label_keys.iter().position(|k| k == arg) {
            Some(k) => k,
            None => {
                label_keys.push(arg.to_owned());
                label_keys.len() - 1
            }
        };
        return Ok(Some(Segment::Label { key }));
    }
    if let Some(field) = Field::from_key(name) {
        return match arg.parse::<usize>() {
            Ok(group) if arg.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(Some(Segment::Capture { field, group }))
            }
            _ => Err(format!(
                "in `{placeholder}` the part after `:` must be a capture group number, \
                 e.g. `${{{name}:1}}`"
            )),
        };
    }
    if is_identifier(name) {
        return Err(format!(
            "unknown placeholder `{placeholder}`; {PLACEHOLDER_HELP}"
        ));
    }
    Ok(None)
}
