//! Sample values of ACL patterns, for `acl diff`: strings a pattern matches, chosen to tell
//! `*` from `**` and one alternative of a regex from another.
//!
//! A glob's samples replace every `*` with `x` and every `**` with `x` and `x/y` (its class with
//! a character it accepts); a regex's samples follow its syntax tree (each alternative,
//! repetitions at their minimum and one more, any character as `x`). Placeholders are replaced
//! by the values given. Whether a pattern has finitely many values (a literal) is reported so
//! the diff can say where it is exact.
//!
//! Hand-written: no crate enumerates strings matched by a glob, and `regex-syntax` (the
//! `regex` crate's parser) gives the tree but no sampler.

use regex_syntax::hir::{Class, Hir, HirKind};

/// At most this many samples per pattern.
const MAX_SAMPLES: usize = 8;

/// The samples of `raw` (a glob or `/regex/`) with `${…}` placeholders replaced by `subst`
/// (unknown ones by `x`); `exact` is true when `raw` is a literal (its only value sampled).
pub fn samples(raw: &str, subst: &dyn Fn(&str) -> Option<String>) -> (Vec<String>, bool) {
    let text = substitute(raw, subst);
    if text.len() > 2 && text.starts_with('/') && text.ends_with('/') {
        let inner = &text[1..text.len() - 1];
        let mut out = match regex_syntax::Parser::new().parse(inner) {
            Ok(hir) => hir_samples(&hir),
            Err(_) => vec!["x".to_owned()],
        };
        out.truncate(MAX_SAMPLES);
        out.dedup();
        (out, false)
    } else {
        let exact = !text.contains(['*', '?', '[', '\\']);
        (glob_samples(&text), exact)
    }
}

fn substitute(raw: &str, subst: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        let name = &rest[start + 2..start + end];
        out.push_str(&subst(name).unwrap_or_else(|| "x".to_owned()));
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// Two variants: every `**` as `x`, and as `x/y`.
fn glob_samples(text: &str) -> Vec<String> {
    let mut short = String::new();
    let mut long = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => {
                let mut double = false;
                while chars.next_if_eq(&'*').is_some() {
                    double = true;
                }
                short.push('x');
                long.push_str(if double { "x/y" } else { "x" });
            }
            '?' => {
                short.push('x');
                long.push('x');
            }
            '\\' => {
                if let Some(n) = chars.next() {
                    short.push(n);
                    long.push(n);
                }
            }
            '[' => {
                let mut class = String::new();
                for n in chars.by_ref() {
                    if n == ']' && !class.is_empty() {
                        break;
                    }
                    class.push(n);
                }
                let c = class_char(&class);
                short.push(c);
                long.push(c);
            }
            c => {
                short.push(c);
                long.push(c);
            }
        }
    }
    if short == long {
        vec![short]
    } else {
        vec![short, long]
    }
}

/// A character a glob class (`a-z`, `^0-9`, `!x`) accepts.
fn class_char(class: &str) -> char {
    let (negated, body) = match class.strip_prefix(['^', '!']) {
        Some(b) => (true, b),
        None => (false, class),
    };
    let chars: Vec<char> = body.chars().filter(|c| *c != '\\').collect();
    let contains = |c: char| {
        let mut i = 0;
        while i < chars.len() {
            if i + 2 < chars.len() && chars[i + 1] == '-' {
                if (chars[i]..=chars[i + 2]).contains(&c) {
                    return true;
                }
                i += 3;
            } else {
                if chars[i] == c {
                    return true;
                }
                i += 1;
            }
        }
        false
    };
    if negated {
        ('a'..='z')
            .chain('0'..='9')
            .find(|c| !contains(*c))
            .unwrap_or('_')
    } else {
        chars.first().copied().unwrap_or('x')
    }
}

fn hir_samples(hir: &Hir) -> Vec<String> {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => vec![String::new()],
        HirKind::Literal(l) => vec![String::from_utf8_lossy(&l.0).into_owned()],
        HirKind::Class(c) => vec![hir_class_char(c).to_string()],
        HirKind::Capture(c) => hir_samples(&c.sub),
        HirKind::Repetition(r) => {
            let one = hir_samples(&r.sub);
            let times = (r.min as usize).max(1);
            let mut out: Vec<String> = one.iter().map(|s| s.repeat(times)).collect();
            if r.min == 0 {
                out.push(String::new());
            }
            out
        }
        HirKind::Concat(parts) => {
            let mut acc = vec![String::new()];
            for p in parts {
                let options = hir_samples(p);
                let mut next = Vec::new();
                for a in &acc {
                    for o in &options {
                        if next.len() < MAX_SAMPLES {
                            next.push(format!("{a}{o}"));
                        }
                    }
                }
                acc = next;
            }
            acc
        }
        HirKind::Alternation(alts) => alts
            .iter()
            .flat_map(|a| hir_samples(a).into_iter().take(2))
            .take(MAX_SAMPLES)
            .collect(),
    }
}

fn hir_class_char(c: &Class) -> char {
    let ranges: Vec<(char, char)> = match c {
        Class::Unicode(u) => u.ranges().iter().map(|r| (r.start(), r.end())).collect(),
        Class::Bytes(b) => b
            .ranges()
            .iter()
            .map(|r| (char::from(r.start()), char::from(r.end())))
            .collect(),
    };
    ['x', 'a', '0', 'A', '-', '_', '.']
        .into_iter()
        .find(|p| ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(p)))
        .or_else(|| ranges.first().map(|(lo, _)| *lo))
        .unwrap_or('x')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(raw: &str) -> (Vec<String>, bool) {
        samples(raw, &|name| (name == "account").then(|| "alice".to_owned()))
    }

    #[test]
    fn globs_literals_and_placeholders() {
        assert_eq!(s("public/app"), (vec!["public/app".to_owned()], true));
        assert_eq!(s("public/*").0, vec!["public/x"]);
        assert_eq!(s("${account}/**").0, vec!["alice/x", "alice/x/y"]);
        assert_eq!(s("team-[a-c]?").0, vec!["team-ax"]);
        assert_eq!(s("[^a-z]").0, vec!["0"]);
        assert!(!s("a\\*b").1);
        assert_eq!(s("a\\*b").0, vec!["a*b"]);
    }

    #[test]
    fn regexes_give_each_alternative() {
        let (v, exact) = s("/^(dev|ops)\\/.+$/");
        assert!(!exact);
        assert!(v.contains(&"dev/x".to_owned()), "{v:?}");
        assert!(v.contains(&"ops/x".to_owned()), "{v:?}");
        assert_eq!(s("/.+/").0[0], "x");
        assert_eq!(s("/^user(\\d+)$/").0[0], "user0");
    }
}
