//! Values are data, never patterns: whatever a placeholder inserts (request fields, captures,
//! labels from users, providers and CI tokens) matches only itself, in globs and regexes alike,
//! and never turns a glob into a `/regex/`. Plus the cache of compiled regex expansions.

use super::matcher::{Env, Field, Pattern, REGEX_CACHE_SIZE};
use super::*;

/// Values that would match far more than themselves if read as pattern syntax.
const HOSTILE: [&str; 12] = [
    "**",
    "*",
    "/.*/",
    "/./",
    ".*",
    "?",
    "[a-z]*",
    "\\*",
    "a|b",
    "(.*)",
    "${account}",
    "x/**",
];

/// Requests each hostile value must not reach.
const OTHERS: [&str; 5] = ["other/repo", "a", "b", "abc", "x/y/z"];

#[test]
fn a_ci_claim_of_stars_or_a_regex_matches_only_itself() {
    let m = "{labels: {repository: '/.+/'}, name: '${labels:repository}'}";
    for claim in ["**", "/.*/"] {
        let r = req().label("repository", &[claim]);
        assert!(!matches(m, &r.clone().name("other/repo")), "{claim}");
        assert!(!matches(m, &r.clone().name("org/app")), "{claim}");
        assert!(matches(m, &r.name(claim)), "{claim} matches itself");
    }
    let r = req().label("repository", &["org/app"]);
    assert!(matches(m, &r.clone().name("org/app")));
    assert!(!matches(m, &r.name("org/app2")));
}

#[test]
fn every_placeholder_source_is_quoted_in_globs_and_regexes() {
    // (pattern, request with the value placed where the pattern reads it)
    type Build = fn(&str) -> Req;
    let cases: [(&str, Build); 10] = [
        ("{name: '${account}'}", |v| req().account(v)),
        ("{name: '/^${account}$/'}", |v| req().account(v)),
        ("{name: '${service}'}", |v| req().service(v)),
        ("{name: '/^${service}$/'}", |v| req().service(v)),
        ("{account: '${name}'}", |v| req().account("alice").name(v)),
        ("{name: '${labels:x}'}", |v| req().label("x", &[v])),
        ("{name: '/^${labels:x}$/'}", |v| req().label("x", &[v])),
        ("{account: '/^(.*)$/', name: '${account:1}'}", |v| {
            req().account(v)
        }),
        ("{account: '/^(.*)$/', name: '/^${account:1}$/'}", |v| {
            req().account(v)
        }),
        ("{labels: {team: '${labels:x}'}}", |v| {
            req().label("x", &[v])
        }),
    ];
    for (m, build) in cases {
        for value in HOSTILE {
            for other in OTHERS {
                let mut r = build(value);
                if m.starts_with("{account: '${name}'}") {
                    // The account is the literal value; any other name must fail.
                    r = r.account(other);
                } else if m.contains("team") {
                    r = r.label("team", &[other]);
                } else {
                    r = r.name(other);
                }
                assert!(
                    !matches(m, &r),
                    "{m} with value {value:?} matched {other:?}"
                );
            }
            let mut r = build(value);
            if m.starts_with("{account: '${name}'}") {
                r = r.account(value);
            } else if m.contains("team") {
                r = r.label("team", &[value]);
            } else {
                r = r.name(value);
            }
            assert!(matches(m, &r), "{m} with value {value:?} must match itself");
        }
    }
}

#[test]
fn the_type_placeholder_is_quoted_too() {
    assert!(!matches("{name: '${type}'}", &req().kind("*").name("abc")));
    assert!(matches("{name: '${type}'}", &req().kind("*").name("*")));
}

#[test]
fn a_value_cannot_make_a_glob_a_regex() {
    // The whole pattern is one placeholder: the value `/a/` would be regex-shaped.
    let m = "{name: '${labels:x}${labels:y}'}";
    let r = req().label("x", &["/"]).label("y", &["b/"]);
    assert!(!matches(m, &r.clone().name("abc")));
    assert!(matches(m, &r.name("/b/")));
    // And a regex stays a regex whatever the value: the value is literal inside it.
    let m = "{name: '/${labels:x}/'}";
    let r = req().label("x", &["."]);
    assert!(!matches(m, &r.clone().name("abc")));
    assert!(matches(m, &r.name("a.c")), "unanchored, literal dot");
}

#[test]
fn a_value_inside_a_class_stays_one_character_of_itself() {
    let m = "{name: 'x[${labels:c}]'}";
    let r = req().label("c", &["/"]);
    assert!(matches(m, &r.clone().name("x/")));
    assert!(!matches(m, &r.name("x[")));
    let m = "{name: '/^x[${labels:c}]$/'}";
    let r = req().label("c", &["a-z"]);
    assert!(matches(m, &r.clone().name("x-")));
    assert!(!matches(m, &r.name("xb")));
}

#[test]
fn a_placeholder_without_a_value_never_matches() {
    // A user without the label: not even the placeholder's own text matches.
    for m in ["{name: '${labels:x}'}", "{name: '/${labels:x}/'}"] {
        assert!(!matches(m, &req().name("${labels:x}")), "{m}");
    }
}

#[test]
fn a_backslash_before_a_placeholder_is_refused() {
    // `\${account}` would escape the first character of the quoted value and free the next.
    for m in [
        "{name: 'a\\${account}'}",
        "{name: '/a\\${labels:x}/'}",
        "{name: '\\${account:1}', account: '/(.*)/'}",
    ] {
        let e = &errors(&format!("- match: {m}\n  actions: ['*']"))[0];
        assert!(e.message.contains("right before a placeholder"), "{m}: {e}");
    }
    // An escaped backslash is fine.
    assert!(matches(
        "{name: 'a\\\\${account}'}",
        &req().account("b").name("a\\b")
    ));
}

// ------------------------------------------------------------------------------------------
// The cache of compiled regex expansions
// ------------------------------------------------------------------------------------------

struct TestEnv {
    account: String,
    name: String,
    labels: Labels,
}

impl Env for TestEnv {
    fn var(&self, field: Field) -> &str {
        match field {
            Field::Account => &self.account,
            Field::Name => &self.name,
            Field::Type => "repository",
            Field::Service => "registry",
        }
    }
    fn capture(&self, _: Field, _: usize) -> Option<&str> {
        None
    }
    fn labels(&self, key: &str) -> Option<&[String]> {
        self.labels.get(key)
    }
}

fn env(account: &str) -> TestEnv {
    TestEnv {
        account: account.to_owned(),
        name: String::new(),
        labels: Labels::default(),
    }
}

#[test]
fn a_regex_template_compiles_each_expansion_once() {
    let p = Pattern::compile("/^${account}\\//").unwrap();
    let e = env("alice");
    // 512 scopes of one request, then another request of the same user.
    for i in 0..1024 {
        assert!(p.matches(&format!("alice/app{i}"), &e));
    }
    assert!(!p.matches("bob/app", &e));
    assert_eq!(p.compilations(), 1);
    // Another account is another expansion.
    assert!(p.matches("bob/app", &env("bob")));
    assert_eq!(p.compilations(), 2);
    // Globs and placeholder-free regexes compile nothing per request.
    let g = Pattern::compile("${account}/*").unwrap();
    assert!(g.matches("alice/x", &e));
    assert_eq!(g.compilations(), 0);
}

#[test]
fn label_expansions_are_cached_across_scopes() {
    let p = Pattern::compile("/^${labels:groups}\\//").unwrap();
    let mut e = env("alice");
    e.labels
        .0
        .insert("groups".into(), vec!["a".into(), "b".into(), "c".into()]);
    for i in 0..512 {
        assert!(p.matches(&format!("c/app{i}"), &e));
        assert!(!p.matches(&format!("d/app{i}"), &e));
    }
    assert_eq!(p.compilations(), 3);
    // A user without the label compiles nothing (the condition fails at once).
    assert!(!p.matches("a/x", &env("anon")));
    assert_eq!(p.compilations(), 3);
}

#[test]
fn the_cache_is_bounded() {
    let p = Pattern::compile("/^${account}$/").unwrap();
    let n = REGEX_CACHE_SIZE + 10;
    for i in 0..n {
        assert!(p.matches(&format!("u{i}"), &env(&format!("u{i}"))));
    }
    assert_eq!(p.compilations(), n);
    // The newest are still there, the oldest were evicted (first in, first out).
    assert!(p.matches(&format!("u{}", n - 1), &env(&format!("u{}", n - 1))));
    assert_eq!(p.compilations(), n);
    assert!(p.matches("u0", &env("u0")));
    assert_eq!(p.compilations(), n + 1);
}

#[test]
fn per_scope_regexes_are_counted() {
    let a = acl("
- match: {name: '/^${account}\\//'}
  actions: [pull]
- match: {account: '/^${name}$/'}
  actions: [pull]
- match: {account: '/(.*)/', name: '/^${account:1}$/'}
  actions: [pull]
- match: {labels: {x: '/${type}/'}, name: '${name}'}
  actions: [pull]
");
    // `${account}` is the same in every scope; the glob `${name}` needs no compiling.
    assert_eq!(a.per_scope_regexes(), 3);
}
