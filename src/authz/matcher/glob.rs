//! The glob engine of ACL patterns: Go `path.Match` syntax plus `**`.
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
    pub(super) fn matches_everything(&self) -> bool {
        !self.toks.is_empty() && self.toks.iter().all(|t| *t == Tok::DoubleStar)
    }

    /// `prefix**` covers every glob that starts with the literal `prefix`. `false` otherwise.
    pub(super) fn covers_by_prefix(&self, other: &Self) -> bool {
        if let [Tok::Lit(prefix), Tok::DoubleStar] = self.toks.as_slice()
            && let Some(Tok::Lit(lead)) = other.toks.first()
        {
            return lead.starts_with(&**prefix);
        }
        false
    }

    /// The single string a glob without wildcards matches.
    pub(super) fn literal(&self) -> Option<&str> {
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
