//! String patterns of ACL `match` fields: globs, Go-flavoured regexes and placeholders.
//!
//! This module parses a pattern's placeholders and decides its kind; the two matchers live in
//! submodules:
//!
//! * [`glob`]: a hand-written glob engine (Go `path.Match` plus `**`), linear in the input
//!   whatever the pattern;
//! * [`go_regex`]: a `/…/` pattern is a Go RE2 regex, matched unanchored; its syntax is
//!   translated to the `regex` crate's with Go's meaning (ASCII `\d \w \s \b`, `\Q…\E`, octal
//!   escapes, classes…), and Go-only errors are rejected.
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

mod glob;
mod go_regex;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use regex::Regex;

pub(crate) use glob::Glob;
use go_regex::compile_go_regex;

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
        if let (Body::Glob(m), Body::Glob(g)) = (mine, theirs) {
            return m.covers_by_prefix(g);
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
