//! Which actions a Casbin model and policy can ever allow, worked out once at load so that
//! `casbin_authz` denies every other action without running the model.
//!
//! The answer is a set only when it is certain; otherwise it is `None` (every action is
//! enforced, within the per-request limits). It is a set when:
//!
//! * the effect needs a matching `allow` line (`some(where (p.eft == allow))`, the same with
//!   `&& !some(where (p.eft == deny))`, or `priority(p.eft) || deny`; `!some(where (p.eft ==
//!   deny))` allows what nothing denies, so any action can be allowed);
//! * the matcher is written with `&&`, `||`, parentheses, function calls, comparisons and
//!   `"…"` strings only (no `{…}`, `?`, `;`, `|`, `&`, `^`, `'…'` or backquotes, whose
//!   precedence this reading does not model); and
//! * every `||` branch of the matcher has, among its top-level `&&` terms, an equality of the
//!   request's action with a policy field (`r.action == p.action`, either way round) or with a
//!   string (`r.action == "pull"`).
//!
//! The set is then every value of those policy fields over the policy's `p` lines (`""` when
//! there are none: Casbin evaluates the matcher once with empty fields), plus those strings.
//! A matcher such as `keyMatch(r.action, p.action)`, `regexMatch(…)`, `r.action != …`, `g2(…)`
//! on the action, or `r.account == "root" || (… && r.action == p.action)` (the first branch
//! allows any action) gives `None`.

use std::collections::BTreeSet;

/// The effects under which only a matching `allow` policy line allows a request (as Casbin
/// stores them: `p.` written `p_`).
const ALLOW_NEEDS_A_MATCH: &[&str] = &[
    "some(where (p_eft == allow))",
    "some(where (p_eft == allow)) && !some(where (p_eft == deny))",
    "priority(p_eft) || deny",
];

/// Where a matcher branch takes the allowed action from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// A policy field (`p_action`).
    Field(String),
    /// A string in the matcher.
    Literal(String),
}

/// The actions the model can allow, or `None` when it may allow actions the policy does not
/// name. `effect` and `matcher` as Casbin stores them (`r.x` written `r_x`), `action` the
/// request's action token (`r_action`), `p_tokens` the policy's tokens (`p_account`, …),
/// `policy` its `p` lines.
pub(super) fn grantable<'a>(
    effect: &str,
    matcher: &str,
    action: &str,
    p_tokens: &[String],
    policy: impl IntoIterator<Item = &'a Vec<String>>,
) -> Option<BTreeSet<String>> {
    if !ALLOW_NEEDS_A_MATCH.contains(&effect.trim()) || !understood(matcher) {
        return None;
    }
    let sources = sources(matcher, action, p_tokens)?;
    let policy: Vec<&Vec<String>> = policy.into_iter().collect();
    let mut set = BTreeSet::new();
    for source in sources {
        match source {
            Source::Literal(s) => {
                set.insert(s);
            }
            Source::Field(field) => {
                let i = p_tokens.iter().position(|t| *t == field)?;
                if policy.is_empty() {
                    set.insert(String::new());
                }
                for line in &policy {
                    set.insert(line.get(i)?.clone());
                }
            }
        }
    }
    Some(set)
}

/// The matcher only uses syntax whose precedence [`sources`] reads correctly.
fn understood(matcher: &str) -> bool {
    let b = matcher.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => match skip_string(b, i) {
                Some(next) => {
                    i = next;
                    continue;
                }
                None => return false,
            },
            b'{' | b'}' | b'?' | b';' | b'^' | b'\'' | b'`' => return false,
            c @ (b'|' | b'&') => {
                if b.get(i + 1) != Some(&c) || b.get(i + 2) == Some(&c) {
                    return false;
                }
                i += 2;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    true
}

/// The index after the string starting at `start` (a `"`), or `None` if it never ends.
fn skip_string(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// `expr` split at `sep` (`||` or `&&`) outside parentheses, brackets and strings; `None` when
/// they do not balance.
fn split_top<'a>(expr: &'a str, sep: &str) -> Option<Vec<&'a str>> {
    let b = expr.as_bytes();
    let mut parts = Vec::new();
    let (mut depth, mut start, mut i) = (0usize, 0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'"' => {
                i = skip_string(b, i)?;
                continue;
            }
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth = depth.checked_sub(1)?,
            _ if depth == 0 && b[i..].starts_with(sep.as_bytes()) => {
                parts.push(expr.get(start..i)?);
                i += sep.len();
                start = i;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    if depth != 0 {
        return None;
    }
    parts.push(expr.get(start..)?);
    Some(parts)
}

/// `expr` without parentheses around all of it (`((a))` → `a`); `None` when they do not
/// balance.
fn strip_parens(expr: &str) -> Option<&str> {
    let mut expr = expr.trim();
    while expr.starts_with('(') {
        let b = expr.as_bytes();
        let (mut depth, mut i, mut close) = (0usize, 0usize, None);
        while i < b.len() {
            match b[i] {
                b'"' => {
                    i = skip_string(b, i)?;
                    continue;
                }
                b'(' | b'[' => depth += 1,
                b')' | b']' => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        close = Some(i);
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        if close? + 1 != expr.len() {
            break;
        }
        expr = expr.get(1..expr.len() - 1)?.trim();
    }
    Some(expr)
}

/// Where every branch of `expr` takes the allowed action from; `None` when some branch does
/// not pin it.
fn sources(expr: &str, action: &str, p_tokens: &[String]) -> Option<Vec<Source>> {
    let expr = strip_parens(expr)?;
    let mut out = Vec::new();
    for branch in split_top(expr, "||")? {
        let terms = split_top(branch, "&&")?;
        let pinned = terms.iter().find_map(|term| {
            let term = term.trim();
            if let Some(source) = equality(term, action, p_tokens) {
                return Some(vec![source]);
            }
            let inner = strip_parens(term)?;
            (inner.len() < term.len())
                .then(|| sources(inner, action, p_tokens))
                .flatten()
        })?;
        out.extend(pinned);
    }
    Some(out)
}

/// `term` is exactly `ACTION == p_field`, `p_field == ACTION`, `ACTION == "s"` or
/// `"s" == ACTION`.
fn equality(term: &str, action: &str, p_tokens: &[String]) -> Option<Source> {
    let (left, right) = term.split_once("==")?;
    let (left, right) = (left.trim(), right.trim());
    let other = if left == action {
        right
    } else if right == action {
        left
    } else {
        return None;
    };
    if p_tokens.iter().any(|t| t == other) {
        return Some(Source::Field(other.to_owned()));
    }
    let literal = other.strip_prefix('"')?.strip_suffix('"')?;
    (!literal.contains(['"', '\\'])).then(|| Source::Literal(literal.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOW: &str = "some(where (p_eft == allow))";

    fn p_tokens() -> Vec<String> {
        ["p_account", "p_type", "p_name", "p_action"]
            .map(String::from)
            .to_vec()
    }

    fn policy() -> Vec<Vec<String>> {
        vec![
            ["alice", "repository", "a/*", "pull"]
                .map(String::from)
                .to_vec(),
            ["alice", "repository", "a/*", "push"]
                .map(String::from)
                .to_vec(),
            ["devs", "repository", "t/*", "*"]
                .map(String::from)
                .to_vec(),
        ]
    }

    fn set(effect: &str, matcher: &str) -> Option<Vec<String>> {
        grantable(effect, matcher, "r_action", &p_tokens(), &policy())
            .map(|s| s.into_iter().collect())
    }

    #[test]
    fn an_equality_in_every_branch_bounds_the_actions() {
        let all = Some(vec!["*".to_owned(), "pull".into(), "push".into()]);
        let m = "g(r_account, p_account) && r_type == p_type && keyMatch(r_name, p_name) && \
                 r_action == p_action";
        assert_eq!(set(ALLOW, m), all);
        assert_eq!(
            set(ALLOW, "(p_action == r_action) && r_type == p_type"),
            all
        );
        assert_eq!(
            set(ALLOW, "((r_type == p_type && (r_action == p_action)))"),
            all
        );
        assert_eq!(
            set(
                "priority(p_eft) || deny",
                "r_action == p_action || (r_action == \"delete\" && r_account == \"root\")"
            ),
            Some(vec![
                "*".into(),
                "delete".into(),
                "pull".into(),
                "push".into()
            ])
        );
        // An empty policy: Casbin evaluates the matcher once with empty fields.
        assert_eq!(
            grantable(ALLOW, "r_action == p_action", "r_action", &p_tokens(), &[]),
            Some(BTreeSet::from([String::new()]))
        );
    }

    #[test]
    fn anything_that_could_allow_other_actions_is_unbounded() {
        for m in [
            // A branch without the action.
            "r_account == \"root\" || (g(r_account, p_account) && r_action == p_action)",
            // Patterns or other comparisons on the action.
            "keyMatch(r_action, p_action)",
            "regexMatch(r_action, p_action) && r_type == p_type",
            "r_action != p_action",
            "!(r_action == p_action)",
            "g2(r_action, p_action)",
            "r_action == p_action + \"x\"",
            "r_action == p_type2",
            "r_action == \"a\\\"b\"",
            // Syntax whose precedence is not modelled.
            "r_type == p_type | r_action == p_action",
            "r_action == p_action & true",
            "if true { true } else { r_action == p_action }",
            "r_action == p_action ?? true",
            // Unbalanced.
            "(r_action == p_action",
            "r_action == p_action)",
            "r_action == \"p",
        ] {
            assert_eq!(set(ALLOW, m), None, "{m}");
        }
        // An effect that allows what nothing denies.
        assert_eq!(
            set("!some(where (p_eft == deny))", "r_action == p_action"),
            None
        );
        assert_eq!(set("something else", "r_action == p_action"), None);
    }

    #[test]
    fn strings_and_parentheses_are_read_as_units() {
        assert_eq!(
            split_top("a || \"x || y\" && (b || c)", "||")
                .unwrap()
                .len(),
            2
        );
        assert_eq!(strip_parens("((a) && (b))"), Some("(a) && (b)"));
        assert_eq!(strip_parens("(a) && (b)"), Some("(a) && (b)"));
        assert_eq!(strip_parens("(\")\")"), Some("\")\""));
        assert!(understood("a || b && \"x | y ? {\""));
        assert!(!understood("a ||| b"));
    }
}
