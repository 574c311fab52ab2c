//! ACL tests: every category of docker_auth's `acl_test.go` as behaviour, plus first-match
//! order, actions, `**`, paths, ASCII classes, shadowing and a pathological glob.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::authn::Labels;
use crate::config::file::AclEntrySpec;

// ------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------

/// An owned request with sensible defaults.
#[derive(Clone)]
struct Req {
    account: String,
    source: &'static str,
    unqualified: bool,
    kind: String,
    name: String,
    service: String,
    ip: Option<IpAddr>,
    labels: Labels,
    actions: Vec<String>,
}

fn req() -> Req {
    Req {
        account: "alice".into(),
        source: "users",
        unqualified: true,
        kind: "repository".into(),
        name: "alice/app".into(),
        service: "registry.example.com".into(),
        ip: None,
        labels: Labels::default(),
        actions: vec!["pull".into(), "push".into()],
    }
}

impl Req {
    fn account(mut self, v: &str) -> Self {
        self.account = v.into();
        self
    }
    fn from(mut self, source: &'static str, unqualified: bool) -> Self {
        self.source = source;
        self.unqualified = unqualified;
        self
    }
    fn kind(mut self, v: &str) -> Self {
        self.kind = v.into();
        self
    }
    fn name(mut self, v: &str) -> Self {
        self.name = v.into();
        self
    }
    fn service(mut self, v: &str) -> Self {
        self.service = v.into();
        self
    }
    fn ip(mut self, v: &str) -> Self {
        self.ip = Some(v.parse().expect("test IP"));
        self
    }
    fn label(mut self, key: &str, values: &[&str]) -> Self {
        self.labels
            .0
            .insert(key.into(), values.iter().map(|v| (*v).to_owned()).collect());
        self
    }
    fn actions(mut self, v: &[&str]) -> Self {
        self.actions = v.iter().map(|a| (*a).to_owned()).collect();
        self
    }
    fn authz(&self) -> AuthzRequest<'_> {
        AuthzRequest {
            account: &self.account,
            source: self.source,
            unqualified: self.unqualified,
            kind: &self.kind,
            name: &self.name,
            service: &self.service,
            ip: self.ip,
            labels: &self.labels,
            actions: &self.actions,
        }
    }
}

fn specs(yaml: &str) -> Vec<AclEntrySpec> {
    serde_yaml_ng::from_str(yaml).expect("test YAML parses")
}

fn acl(yaml: &str) -> Acl {
    Acl::compile(&specs(yaml)).expect("test ACL compiles")
}

fn errors(yaml: &str) -> Vec<AclCompileError> {
    Acl::compile(&specs(yaml)).expect_err("test ACL must not compile")
}

/// One entry with `match: <flow mapping>` and `actions: ["*"]`.
fn one(match_yaml: &str) -> Acl {
    acl(&format!("- match: {match_yaml}\n  actions: ['*']"))
}

fn matches(match_yaml: &str, r: &Req) -> bool {
    match one(match_yaml).authorize(&r.authz()) {
        AclDecision::Matched { .. } => true,
        AclDecision::NoMatch => false,
    }
}

fn compiles(match_yaml: &str) -> bool {
    Acl::compile(&specs(&format!("- match: {match_yaml}\n  actions: ['*']"))).is_ok()
}

/// The single error of a one-entry ACL.
fn error_of(match_yaml: &str) -> AclCompileError {
    let mut errs = errors(&format!("- match: {match_yaml}\n  actions: ['*']"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    errs.remove(0)
}

fn granted(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| (*a).to_owned()).collect()
}

// ------------------------------------------------------------------------------------------
// Validation
// ------------------------------------------------------------------------------------------

#[test]
fn valid_regexes_compile_in_every_string_field() {
    assert!(compiles("{account: '/^(.+)@example\\.com$/'}"));
    assert!(compiles("{type: '/^repo/'}"));
    assert!(compiles("{name: '/^alice\\/.*$/'}"));
    assert!(compiles("{service: '/registry/'}"));
    assert!(compiles("{labels: {team: '/^(dev|ops)$/'}}"));
}

#[test]
fn invalid_regex_is_an_error_naming_the_field() {
    for field in ["account", "type", "name", "service"] {
        let e = error_of(&format!("{{{field}: '/foo(/'}}"));
        assert_eq!(e.index, 0);
        assert_eq!(e.field, format!("match.{field}"));
        assert!(
            e.message.contains("not a valid regular expression"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("escape"),
            "message says how to fix: {}",
            e.message
        );
    }
}

#[test]
fn invalid_label_regex_names_the_label() {
    let e = error_of("{labels: {team: '/[a-/'}}");
    assert_eq!(e.field, "match.labels.team");
}

#[test]
fn go_only_regex_errors_are_rejected() {
    // RE2 has no lookaround and no backreferences.
    assert_eq!(error_of("{name: '/^a(?=b)/'}").field, "match.name");
    assert!(
        error_of("{name: '/(a)\\1/'}")
            .message
            .contains("backreference")
    );
    // Flags other than i, m, s, U do not exist in Go.
    assert!(!compiles("{name: '/(?x)a/'}"));
    // A slash-wrapped two-character string is not a regex: `//` is a glob.
    assert!(compiles("{name: '//'}"));
}

#[test]
fn all_errors_are_reported_with_their_entry_index() {
    let errs = errors(
        "- match: {account: '/(/'}\n  actions: ['*']\n\
         - match: {}\n  actions: ['*']\n\
         - match: {ip: '10.0.0.0/33', name: 'x['}\n  actions: ['pull,push']\n",
    );
    let got: Vec<(usize, &str)> = errs.iter().map(|e| (e.index, e.field.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (0, "match.account"),
            (2, "match.name"),
            (2, "match.ip"),
            (2, "actions")
        ]
    );
    assert!(
        errs[3].message.contains("[pull, push]"),
        "{}",
        errs[3].message
    );
    assert_eq!(
        errs[0].to_string().split(':').next(),
        Some("acl[0].match.account"),
        "Display names entry and field"
    );
}

#[test]
fn valid_ip_rules_compile() {
    for ip in [
        "192.168.1.1",
        "192.168.0.0/16",
        "10.1.2.3/8",
        "2001:db8::1",
        "2001:db8::/32",
        "::ffff:10.0.0.1",
        "0.0.0.0/0",
    ] {
        assert!(compiles(&format!("{{ip: '{ip}'}}")), "{ip}");
    }
}

#[test]
fn invalid_ip_rules_are_errors_with_a_hint() {
    let cases = [
        ("192.168.1.0/33", "0 to 32"),
        ("192.168.1.0/-1", "0 to 32"),
        ("2001:db8::/129", "0 to 128"),
        ("192.168.1.*", "wildcards"),
        ("192.168.1", "neither"),
        ("alice", "neither"),
        ("", "neither"),
        ("fe80::1%eth0", "neither"),
    ];
    for (ip, hint) in cases {
        let e = error_of(&format!("{{ip: '{ip}'}}"));
        assert_eq!(e.field, "match.ip");
        assert!(e.message.contains(hint), "{ip}: {}", e.message);
        assert!(
            e.message.contains("192.0.2.0/24"),
            "{ip}: shows the valid forms"
        );
    }
}

#[test]
fn malformed_globs_are_errors() {
    for (glob, hint) in [
        ("alice/[ab", "unclosed `[`"),
        ("[]", "empty `[]`"),
        ("a\\", "lone `\\`"),
        ("[z-a]", "reversed"),
        ("[a-]", "`-` right before `]`"),
        ("[-a]", "unescaped `-`"),
    ] {
        let e = error_of(&format!("{{name: '{glob}'}}"));
        assert_eq!(e.field, "match.name");
        assert!(e.message.contains(hint), "{glob}: {}", e.message);
    }
    // The same in a label pattern.
    assert_eq!(
        error_of("{labels: {team: 'dev[' }}").field,
        "match.labels.team"
    );
}

#[test]
fn unknown_placeholders_are_errors() {
    let e = error_of("{name: '${acount}/*'}");
    assert!(
        e.message.contains("${acount}") && e.message.contains("${account}"),
        "{}",
        e.message
    );
    assert!(!compiles("{name: '${Account}'}"));
    assert!(!compiles("{name: '${labels:}'}"));
    assert!(!compiles("{name: '${account:x}'}"));
    // `${` not followed by a name is literal text.
    assert!(compiles("{name: '/a${1,2}/'}"));
}

#[test]
fn malformed_actions_are_errors() {
    let errs = errors("- match: {}\n  actions: ['pull push', '']");
    assert_eq!(errs.len(), 2);
    assert!(errs.iter().all(|e| e.field == "actions"));
}

// ------------------------------------------------------------------------------------------
// Globs
// ------------------------------------------------------------------------------------------

#[test]
fn empty_match_matches_everything() {
    assert!(matches("{}", &req()));
    assert!(matches(
        "{}",
        &req().account("").kind("registry").name("catalog")
    ));
}

#[test]
fn question_mark_is_one_character_but_not_a_slash() {
    assert!(matches("{account: 'alic?'}", &req()));
    assert!(!matches("{account: 'alic?'}", &req().account("alic")));
    assert!(!matches("{account: 'alic?'}", &req().account("alicee")));
    assert!(!matches("{name: 'alice?app'}", &req()));
    assert!(
        matches("{account: '?lice'}", &req().account("élice")),
        "one character, not one byte"
    );
}

#[test]
fn star_does_not_cross_slashes() {
    assert!(matches("{account: 'al*'}", &req()));
    assert!(matches("{account: 'alice*'}", &req()));
    assert!(!matches("{account: 'bob*'}", &req()));
    assert!(!matches("{name: '*'}", &req()));
    assert!(matches("{name: 'alice/*'}", &req()));
    assert!(!matches("{name: 'alice/*'}", &req().name("alice/a/b")));
    assert!(!matches("{name: 'alice/*'}", &req().name("alice")));
    assert!(matches("{name: '*/*'}", &req()));
    assert!(matches("{name: '*/*/*'}", &req().name("alice/a/b")));
}

#[test]
fn classes_and_escapes() {
    assert!(matches("{account: '[ab]lice'}", &req()));
    assert!(matches("{account: '[ab]lice'}", &req().account("blice")));
    assert!(!matches("{account: '[ab]lice'}", &req().account("clice")));
    assert!(matches("{account: '[^b]lice'}", &req()));
    assert!(!matches("{account: '[!a]lice'}", &req()));
    assert!(matches("{name: 'app-v[0-9]'}", &req().name("app-v7")));
    assert!(!matches("{name: 'app-v[0-9]'}", &req().name("app-vx")));
    assert!(matches("{name: 'a\\*'}", &req().name("a*")));
    assert!(!matches("{name: 'a\\*'}", &req().name("ab")));
    assert!(matches("{name: '[\\]]'}", &req().name("]")));
    // As in Go's path.Match, a class may match `/`.
    assert!(matches("{name: 'alice[/]app'}", &req()));
}

#[test]
fn braces_are_literal() {
    assert!(matches("{name: '{a,b}'}", &req().name("{a,b}")));
    assert!(!matches("{name: '{a,b}'}", &req().name("a")));
}

#[test]
fn double_star_crosses_slashes() {
    assert!(matches(
        "{name: '${account}/**'}",
        &req().name("alice/team/app")
    ));
    assert!(matches("{name: '${account}/**'}", &req().name("alice/x")));
    assert!(
        !matches("{name: '${account}/**'}", &req().name("alice")),
        "needs the slash"
    );
    assert!(!matches("{name: 'alice/**'}", &req().name("bob/x")));
    assert!(!matches("{name: 'alice/**'}", &req().name("alicex/y")));
    assert!(matches("{name: '**'}", &req().name("a/b/c")));
    assert!(matches("{name: '**'}", &req().name("")));
    assert!(matches("{name: '**/app'}", &req().name("x/y/app")));
    assert!(!matches("{name: '**/app'}", &req().name("x/y/app2")));
    assert!(matches("{name: 'a**z'}", &req().name("a/b/c/z")));
    assert!(
        matches("{name: 'a***z'}", &req().name("a/z")),
        "three stars act like two"
    );
    assert!(matches("{name: '**/*/app'}", &req().name("x/y/app")));
    assert!(!matches("{name: '**/*/app'}", &req().name("y/app")));
}

#[test]
fn names_with_host_and_port() {
    let r = req().name("localhost:5000/team/app");
    assert!(matches("{name: 'localhost:5000/team/*'}", &r));
    assert!(
        matches("{name: '*/team/app'}", &r),
        "`*` matches `localhost:5000`"
    );
    assert!(!matches("{name: 'localhost:5000/*'}", &r));
    assert!(matches("{name: 'localhost:5000/**'}", &r));
    assert!(matches("{name: '/^localhost:5000\\//'}", &r));
}

#[test]
fn matching_is_case_sensitive() {
    assert!(!matches("{account: 'Alice'}", &req()));
    assert!(!matches("{type: 'Repository'}", &req()));
    assert!(!matches("{name: '/ALICE/'}", &req()));
    assert!(
        matches("{name: '/(?i)ALICE/'}", &req()),
        "unless the regex asks"
    );
}

#[test]
fn empty_account_pattern_matches_only_anonymous() {
    assert!(matches("{account: ''}", &req().account("")));
    assert!(!matches("{account: ''}", &req()));
    assert!(matches("{account: '/.+/'}", &req()));
    assert!(!matches("{account: '/.+/'}", &req().account("")));
}

// ------------------------------------------------------------------------------------------
// Regexes
// ------------------------------------------------------------------------------------------

#[test]
fn regexes_are_unanchored() {
    assert!(matches("{name: '/z$/'}", &req().name("baz")));
    assert!(matches("{account: '/lic/'}", &req()));
    assert!(!matches("{account: '/^lic/'}", &req()));
    assert!(!matches("{account: '/^alic$/'}", &req()));
}

#[test]
fn escaped_slash_in_regex() {
    assert!(matches(
        "{name: '/^alice\\/.+$/'}",
        &req().name("alice/a/b")
    ));
    assert!(!matches("{name: '/^alice\\/.+$/'}", &req().name("alice")));
}

#[test]
fn perl_classes_are_ascii_only() {
    let arabic_three = "\u{663}";
    assert!(matches("{name: '/^\\d+$/'}", &req().name("123")));
    assert!(!matches("{name: '/^\\d+$/'}", &req().name(arabic_three)));
    assert!(matches("{name: '/^\\D$/'}", &req().name(arabic_three)));
    assert!(!matches("{name: '/^[\\d]$/'}", &req().name(arabic_three)));
    assert!(matches("{name: '/^[^\\d]$/'}", &req().name(arabic_three)));
    assert!(matches("{name: '/^[\\Da]$/'}", &req().name(arabic_three)));
    assert!(!matches("{name: '/^[^\\D]$/'}", &req().name(arabic_three)));
    assert!(!matches("{name: '/^\\w+$/'}", &req().name("élan")));
    assert!(matches("{name: '/^\\w+$/'}", &req().name("a_1")));
    assert!(!matches("{name: '/^\\s$/'}", &req().name("\u{a0}")));
    assert!(matches("{name: '/^\\S$/'}", &req().name("\u{a0}")));
    // `é` is not an ASCII word character, so there is a boundary between `a` and `é`.
    assert!(matches("{name: '/a\\b/'}", &req().name("aé")));
    assert!(!matches("{name: '/a\\B/'}", &req().name("aé")));
}

#[test]
fn go_syntax_that_rust_reads_differently() {
    // `{` that is not a repetition is a literal in Go.
    assert!(matches("{name: '/^a{x}$/'}", &req().name("a{x}")));
    assert!(matches("{name: '/^a{2}$/'}", &req().name("aa")));
    // `\Q…\E` quotes.
    assert!(matches("{name: '/^\\Qa.b\\E$/'}", &req().name("a.b")));
    assert!(!matches("{name: '/^\\Qa.b\\E$/'}", &req().name("axb")));
    // `\<` is a literal `<` in Go (a word boundary in Rust).
    assert!(matches("{name: '/^\\<$/'}", &req().name("<")));
    // `&&` and `[` inside a class are literals in Go (set operations in Rust).
    assert!(matches("{name: '/^[a&&b]+$/'}", &req().name("a&b")));
    assert!(matches("{name: '/^[[a]+$/'}", &req().name("[a")));
    assert!(matches("{name: '/^[[:alpha:]]+$/'}", &req().name("abc")));
    // Octal escapes.
    assert!(matches("{name: '/^\\141$/'}", &req().name("a")));
    // `.` does not match a newline.
    assert!(!matches("{name: '/^a.b$/'}", &req().name("a\nb")));
}

// ------------------------------------------------------------------------------------------
// Placeholders
// ------------------------------------------------------------------------------------------

#[test]
fn account_substitution() {
    assert!(matches("{name: '${account}/*'}", &req()));
    assert!(!matches("{name: '${account}/*'}", &req().name("bob/app")));
    assert!(matches(
        "{name: '/^${account}\\/.*$/'}",
        &req().name("alice/a/b")
    ));
    assert!(!matches(
        "{name: '/^${account}\\/.*$/'}",
        &req().name("bob/a")
    ));
}

#[test]
fn other_field_substitutions() {
    assert!(matches("{name: '${type}'}", &req().name("repository")));
    assert!(matches(
        "{name: '${service}/*'}",
        &req().name("registry.example.com/app")
    ));
    assert!(matches("{account: '${name}'}", &req().name("alice")));
    assert!(matches(
        "{labels: {owner: '${account}'}}",
        &req().label("owner", &["alice"])
    ));
    assert!(!matches(
        "{labels: {owner: '${account}'}}",
        &req().label("owner", &["bob"])
    ));
}

#[test]
fn substituted_values_are_quoted() {
    // Regex: `.` and `*` in the account are literal.
    let r = req().account("alice.*");
    assert!(matches(
        "{name: '/^${account}$/'}",
        &r.clone().name("alice.*")
    ));
    assert!(!matches("{name: '/^${account}$/'}", &r.name("alicexyz")));
    // Glob: `*`, `?` and `[` in the account are literal.
    let r = req().account("a*[b]?");
    assert!(matches("{name: '${account}'}", &r.clone().name("a*[b]?")));
    assert!(!matches("{name: '${account}'}", &r.name("axbc")));
    // A slash in the value is literal too, and cannot turn the pattern into a regex.
    assert!(matches(
        "{name: '${account}'}",
        &req().account("a/b").name("a/b")
    ));
    let r = req().account("/.*/");
    assert!(!matches(
        "{name: '${account}'}",
        &r.clone().name("anything")
    ));
    assert!(matches("{name: '${account}'}", &r.name("/.*/")));
}

#[test]
fn capture_groups() {
    let m = "{account: '/^(.+)@example\\.com$/', name: '${account:1}/*'}";
    let r = req().account("alice@example.com");
    assert!(matches(m, &r));
    assert!(!matches(m, &r.name("bob/app")));
    assert!(!matches(m, &req().account("alice@evil.com")));
    // From the name into the account.
    assert!(matches(
        "{name: '/^([a-z]+)\\//', account: '${name:1}'}",
        &req()
    ));
    assert!(!matches(
        "{name: '/^([a-z]+)\\//', account: '${name:1}'}",
        &req().name("bob/app")
    ));
}

#[test]
fn capture_group_without_a_value_never_matches() {
    let r = req().account("alice@example.com");
    assert!(!matches(
        "{account: '/^(.+)@example\\.com$/', name: '${account:2}/*'}",
        &r
    ));
    assert!(!matches(
        "{account: '/^(.+)@example\\.com$/', name: '${account:0}/*'}",
        &r
    ));
    // The field is a glob, not a regex: nothing to capture.
    assert!(!matches(
        "{account: 'alice', name: '${account:1}/*'}",
        &req()
    ));
    // No such field in the entry at all.
    assert!(!matches("{name: '${service:1}/*'}", &req()));
    // Without a value the condition fails, even against the placeholder's own text.
    assert!(!matches(
        "{account: 'alice', name: '${account:1}'}",
        &req().name("${account:1}")
    ));
}

#[test]
fn multiple_capture_groups() {
    let m = "{account: '/^(\\w+)-(\\w+)$/', name: '${account:2}/${account:1}/*'}";
    assert!(matches(
        m,
        &req().account("team-alice").name("alice/team/app")
    ));
    assert!(!matches(
        m,
        &req().account("team-alice").name("team/alice/app")
    ));
    // A group that does not take part is empty.
    let m = "{account: '/^(x)?(alice)$/', name: '${account:1}${account:2}/*'}";
    assert!(matches(m, &req()));
}

#[test]
fn captures_are_quoted() {
    // docker_auth inserted captures verbatim, so a captured `a*` acted as a glob.
    let m = "{account: '/^(.+)$/', name: '${account:1}'}";
    assert!(!matches(m, &req().account("a*").name("abc")));
    assert!(matches(m, &req().account("a*").name("a*")));
}

#[test]
fn capture_from_a_regex_with_placeholders() {
    let m = "{account: '/^${service}-(.+)$/', name: '${account:1}/*'}";
    let r = req().service("reg").account("reg-alice");
    assert!(matches(m, &r));
    assert!(!matches(m, &r.service("other")));
}

#[test]
fn service_and_type_combinations() {
    let m = "{type: 'registry', name: 'catalog', service: 'registry.example.com'}";
    let catalog = req().kind("registry").name("catalog");
    assert!(matches(m, &catalog));
    assert!(!matches(m, &catalog.clone().service("other.example.com")));
    assert!(!matches(m, &catalog.kind("repository")));
    assert!(!matches(m, &req()));
    assert!(matches(
        "{service: '/\\.example\\.com$/', type: 'repository'}",
        &req()
    ));
    assert!(!matches(
        "{service: '/\\.example\\.org$/', type: 'repository'}",
        &req()
    ));
}

// ------------------------------------------------------------------------------------------
// IP
// ------------------------------------------------------------------------------------------

#[test]
fn ipv4_exact_and_cidr() {
    assert!(matches("{ip: '192.168.1.10'}", &req().ip("192.168.1.10")));
    assert!(!matches("{ip: '192.168.1.10'}", &req().ip("192.168.1.11")));
    assert!(!matches("{ip: '192.168.1.10'}", &req()), "no client IP");
    assert!(matches(
        "{ip: '192.168.1.0/24'}",
        &req().ip("192.168.1.200")
    ));
    assert!(!matches("{ip: '192.168.1.0/24'}", &req().ip("192.168.2.1")));
    assert!(!matches("{ip: '192.168.1.0/24'}", &req()));
    assert!(
        matches("{ip: '10.9.9.9/8'}", &req().ip("10.1.2.3")),
        "host bits ignored"
    );
}

#[test]
fn ipv6_exact_and_cidr() {
    assert!(matches("{ip: '2001:db8::1'}", &req().ip("2001:db8::1")));
    assert!(!matches("{ip: '2001:db8::1'}", &req().ip("2001:db8::2")));
    assert!(matches(
        "{ip: '2001:db8::/32'}",
        &req().ip("2001:db8:ffff::1")
    ));
    assert!(!matches("{ip: '2001:db8::/32'}", &req().ip("2001:db9::1")));
    assert!(!matches("{ip: '2001:db8::/32'}", &req()));
    assert!(
        !matches("{ip: '::/0'}", &req()),
        "None never matches, even ::/0"
    );
}

#[test]
fn ipv4_rules_and_mapped_addresses() {
    assert!(matches("{ip: '10.0.0.0/8'}", &req().ip("::ffff:10.1.2.3")));
    assert!(!matches("{ip: '10.0.0.0/8'}", &req().ip("::ffff:11.1.2.3")));
    assert!(!matches("{ip: '10.0.0.1'}", &req().ip("2001:db8::1")));
    assert!(!matches("{ip: '2001:db8::1'}", &req().ip("10.0.0.1")));
    assert!(matches("{ip: '::ffff:10.0.0.1'}", &req().ip("10.0.0.1")));
}

// ------------------------------------------------------------------------------------------
// Labels
// ------------------------------------------------------------------------------------------

#[test]
fn labels_are_anded_and_any_value_matches() {
    let m = "{labels: {team: dev, env: prod}}";
    assert!(matches(
        m,
        &req().label("team", &["ops", "dev"]).label("env", &["prod"])
    ));
    assert!(!matches(m, &req().label("team", &["dev"])), "env missing");
    assert!(!matches(
        m,
        &req().label("team", &["dev"]).label("env", &["staging"])
    ));
    assert!(!matches(m, &req()));
    assert!(!matches("{labels: {team: dev}}", &req().label("team", &[])));
    assert!(!matches(
        "{labels: {team: dev}}",
        &req().label("team", &["Dev"])
    ));
}

#[test]
fn glob_and_regex_label_patterns() {
    assert!(matches(
        "{labels: {team: 'dev-*'}}",
        &req().label("team", &["dev-backend"])
    ));
    assert!(!matches(
        "{labels: {team: 'dev-*'}}",
        &req().label("team", &["dev-a/b"])
    ));
    assert!(matches(
        "{labels: {team: '/^(ops|sre)$/'}}",
        &req().label("team", &["x", "sre"])
    ));
    assert!(!matches(
        "{labels: {team: '/^(ops|sre)$/'}}",
        &req().label("team", &["sre2"])
    ));
}

#[test]
fn label_placeholders() {
    let m = "{name: '${labels:groups}/*'}";
    let r = req().label("groups", &["dev", "ops"]);
    assert!(matches(m, &r.clone().name("ops/app")));
    assert!(matches(m, &r.clone().name("dev/app")));
    assert!(!matches(m, &r.name("qa/app")), "right label, wrong value");
    assert!(!matches(m, &req().name("dev/app")), "missing label");
    assert!(
        !matches(m, &req().label("teams", &["dev"]).name("dev/app")),
        "other label"
    );
    assert!(!matches(m, &req().label("groups", &[]).name("dev/app")));
}

#[test]
fn multiple_label_placeholders_try_every_combination() {
    let m = "{name: '${labels:org}/${labels:team}/*'}";
    let r = req().label("org", &["a", "b"]).label("team", &["x", "y"]);
    assert!(matches(m, &r.clone().name("b/y/app")));
    assert!(matches(m, &r.clone().name("a/y/app")));
    assert!(!matches(m, &r.clone().name("b/z/app")));
    assert!(
        !matches(m, &req().label("org", &["a"]).name("a/x/app")),
        "team missing"
    );
    // The same key twice takes the same value in both places.
    let m = "{name: '${labels:org}/${labels:org}'}";
    assert!(matches(m, &r.clone().name("a/a")));
    assert!(!matches(m, &r.name("a/b")));
}

#[test]
fn label_values_are_quoted() {
    // docker_auth's "labels as grants" idiom (a label value read as a glob or regex) is gone:
    // a label value only matches itself.
    let m = "{name: '${labels:full-access}'}";
    let r = req().label("full-access", &["test/*"]);
    assert!(!matches(m, &r.clone().name("test/app")));
    assert!(matches(m, &r.name("test/*")));
    let r = req().label("full-access", &["/^prod-/"]);
    assert!(!matches(m, &r.clone().name("prod-1")));
    assert!(matches(m, &r.name("/^prod-/")));
    // Inside a regex, a label value is literal text.
    let m = "{name: '/^${labels:team}\\//'}";
    assert!(!matches(m, &req().label("team", &["a.c"]).name("abc/x")));
    assert!(matches(m, &req().label("team", &["a.c"]).name("a.c/x")));
    // Label placeholders work in label patterns too.
    let m = "{labels: {owner: '${labels:admins}'}}";
    let r = req().label("admins", &["bob", "e*"]);
    assert!(!matches(m, &r.clone().label("owner", &["eve"])));
    assert!(matches(m, &r.clone().label("owner", &["e*"])));
    assert!(matches(m, &r.label("owner", &["bob"])));
}

// ------------------------------------------------------------------------------------------
// Authorize: order and actions
// ------------------------------------------------------------------------------------------

const ORDERED: &str = "
- match: {account: alice, name: 'alice/readonly'}
  actions: [pull]
  comment: alice may only read this one
- match: {name: '${account}/**'}
  actions: ['*']
- match: {account: admin}
  actions: []
  comment: admin is denied by an explicit empty list
- match: {}
  actions: [pull]
";

#[test]
fn first_match_wins() {
    let acl = acl(ORDERED);
    let r = req().name("alice/readonly");
    assert_eq!(
        acl.authorize(&r.authz()),
        AclDecision::Matched {
            entry: 0,
            granted: granted(&["pull"])
        }
    );
    assert_eq!(
        acl.authorize(&req().authz()),
        AclDecision::Matched {
            entry: 1,
            granted: granted(&["pull", "push"])
        }
    );
    assert_eq!(
        acl.authorize(&req().account("bob").authz()),
        AclDecision::Matched {
            entry: 3,
            granted: granted(&["pull"])
        }
    );
}

#[test]
fn empty_action_list_is_an_explicit_deny() {
    let acl = acl(ORDERED);
    let r = req().account("admin").name("x/y");
    assert_eq!(
        acl.authorize(&r.authz()),
        AclDecision::Matched {
            entry: 2,
            granted: vec![]
        }
    );
}

#[test]
fn no_match() {
    let acl = acl("- match: {account: bob}\n  actions: ['*']");
    assert_eq!(acl.authorize(&req().authz()), AclDecision::NoMatch);
    assert_eq!(
        Acl::default().authorize(&req().authz()),
        AclDecision::NoMatch
    );
}

#[test]
fn star_grants_everything_requested_verbatim() {
    let acl = acl("- match: {}\n  actions: ['*']");
    let r = req().actions(&["delete", "pull", "push", "whatever"]);
    assert_eq!(
        acl.authorize(&r.authz()),
        AclDecision::Matched {
            entry: 0,
            granted: granted(&["delete", "pull", "push", "whatever"])
        }
    );
}

#[test]
fn listed_actions_are_intersected_and_sorted() {
    let acl = acl("- match: {}\n  actions: [push, pull, pull]");
    let r = req().actions(&["delete", "pull", "push"]);
    assert_eq!(
        acl.authorize(&r.authz()),
        AclDecision::Matched {
            entry: 0,
            granted: granted(&["pull", "push"])
        }
    );
    let r = req().actions(&["delete"]);
    assert_eq!(
        acl.authorize(&r.authz()),
        AclDecision::Matched {
            entry: 0,
            granted: vec![]
        }
    );
}

#[test]
fn star_in_a_longer_list_is_literal() {
    let acl = acl("- match: {}\n  actions: ['*', pull]");
    assert_eq!(
        acl.authorize(&req().authz()),
        AclDecision::Matched {
            entry: 0,
            granted: granted(&["pull"])
        }
    );
}

#[test]
fn registry_catalog_star() {
    let r = req().kind("registry").name("catalog").actions(&["*"]);
    let decide = |actions: &str| {
        acl(&format!(
            "- match: {{type: registry, name: catalog}}\n  actions: {actions}"
        ))
        .authorize(&r.authz())
    };
    assert_eq!(
        decide("[pull]"),
        AclDecision::Matched {
            entry: 0,
            granted: vec![]
        }
    );
    assert_eq!(
        decide("['*']"),
        AclDecision::Matched {
            entry: 0,
            granted: granted(&["*"])
        }
    );
    assert_eq!(
        decide("[pull, '*']"),
        AclDecision::Matched {
            entry: 0,
            granted: granted(&["*"])
        }
    );
}

#[test]
fn comments_and_len() {
    let acl = acl(ORDERED);
    assert_eq!(acl.len(), 4);
    assert!(!acl.is_empty());
    assert_eq!(acl.comment(0), Some("alice may only read this one"));
    assert_eq!(acl.comment(1), None);
    assert_eq!(acl.comment(9), None);
    assert!(Acl::default().is_empty());
}

// ------------------------------------------------------------------------------------------
// Shadowing
// ------------------------------------------------------------------------------------------

fn shadowed(yaml_matches: &[&str]) -> Vec<(usize, usize)> {
    let yaml: String = yaml_matches
        .iter()
        .map(|m| format!("- match: {m}\n  actions: ['*']\n"))
        .collect();
    acl(&yaml)
        .shadowed()
        .iter()
        .map(|s| (s.index, s.by))
        .collect()
}

#[test]
fn shadowing_detected() {
    assert_eq!(shadowed(&["{}", "{account: alice}"]), vec![(1, 0)]);
    assert_eq!(
        shadowed(&["{account: '**'}", "{account: alice, name: x}"]),
        vec![(1, 0)]
    );
    assert_eq!(
        shadowed(&["{account: '/.*/'}", "{account: bob}"]),
        vec![(1, 0)]
    );
    assert_eq!(
        shadowed(&["{name: 'alice/**'}", "{name: 'alice/app'}"]),
        vec![(1, 0)]
    );
    assert_eq!(
        shadowed(&["{name: 'alice/**'}", "{name: 'alice/*'}"]),
        vec![(1, 0)]
    );
    assert_eq!(
        shadowed(&["{name: 'alice/*'}", "{name: 'alice/app'}"]),
        vec![(1, 0)]
    );
    assert_eq!(
        shadowed(&["{account: '/^a/'}", "{account: ab}"]),
        vec![(1, 0)]
    );
    assert_eq!(
        shadowed(&[
            "{name: '${account}/*'}",
            "{name: '${account}/*', type: repository}"
        ]),
        vec![(1, 0)]
    );
    assert_eq!(
        shadowed(&["{ip: '10.0.0.0/8'}", "{ip: '10.1.0.0/16'}"]),
        vec![(1, 0)]
    );
    assert_eq!(
        shadowed(&[
            "{labels: {team: 'dev*'}}",
            "{labels: {team: dev, env: prod}, account: bob}"
        ]),
        vec![(1, 0)]
    );
    assert_eq!(
        shadowed(&[
            "{name: '${labels:g}/*'}",
            "{name: '${labels:g}/*', account: x}"
        ]),
        vec![(1, 0)]
    );
    // Reported once, with the first covering entry.
    assert_eq!(
        shadowed(&["{}", "{}", "{account: a}"]),
        vec![(1, 0), (2, 0)]
    );
}

#[test]
fn shadowing_not_claimed_when_unsure_or_wrong() {
    assert!(shadowed(&["{account: alice}", "{name: x}"]).is_empty());
    assert!(shadowed(&["{account: alice}", "{}"]).is_empty());
    assert!(
        shadowed(&["{account: 'a*'}", "{account: 'a/b'}"]).is_empty(),
        "* stops at /"
    );
    assert!(shadowed(&["{name: 'alice/*'}", "{name: 'alice/**'}"]).is_empty());
    assert!(shadowed(&["{ip: '10.1.0.0/16'}", "{ip: '10.0.0.0/8'}"]).is_empty());
    assert!(shadowed(&["{ip: '10.0.0.0/8'}", "{}"]).is_empty());
    assert!(shadowed(&["{account: '/^a/'}", "{account: ba}"]).is_empty());
    assert!(shadowed(&["{account: '/^$/'}", "{account: bob}"]).is_empty());
    assert!(shadowed(&["{labels: {team: dev}}", "{account: bob}"]).is_empty());
    assert!(shadowed(&["{labels: {team: dev}}", "{labels: {team: 'dev*'}}"]).is_empty());
    // Same text, but the capture comes from different regexes.
    assert!(
        shadowed(&[
            "{account: '/(.*)/', name: '${account:1}/*'}",
            "{account: '/^(b).*/', name: '${account:1}/*'}",
        ])
        .is_empty()
    );
    // Earlier entry is narrower.
    assert!(shadowed(&["{account: alice, name: x}", "{account: alice}"]).is_empty());
}

#[test]
fn shadowing_claim_is_true_for_captures_example() {
    // The negative case above really is reachable: entry 1 decides this request.
    let acl = acl(
        "- match: {account: '/(.*)/', name: '${account:1}/*'}\n  actions: [pull]\n\
         - match: {account: '/^(b).*/', name: '${account:1}/*'}\n  actions: [push]\n",
    );
    let r = req().account("bob").name("b/x");
    assert_eq!(
        acl.authorize(&r.authz()),
        AclDecision::Matched {
            entry: 1,
            granted: granted(&["push"])
        }
    );
}

// ------------------------------------------------------------------------------------------
// Performance guard
// ------------------------------------------------------------------------------------------

#[test]
fn pathological_globs_finish_instantly() {
    let long_a = "a".repeat(20_000);
    let start = Instant::now();
    assert!(!matches(
        "{name: '*a*a*a*a*a*a*a*a*b'}",
        &req().name(&long_a)
    ));
    assert!(!matches(
        "{name: '**a**a**a**a**a**a**a**a**b'}",
        &req().name(&long_a)
    ));
    let slashes = "a/".repeat(5_000);
    assert!(!matches("{name: '**/*a*a*a*a*a*b'}", &req().name(&slashes)));
    assert!(matches("{name: '*a*a*a*a*a*a*a*a*'}", &req().name(&long_a)));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
}

// ------------------------------------------------------------------------------------------
// Glob matcher against a naive reference
// ------------------------------------------------------------------------------------------

/// Straightforward backtracking matcher over the same little language (exponential, but fine
/// for the tiny inputs below).
fn naive(p: &[&str], s: &[char]) -> bool {
    let Some((first, rest)) = p.split_first() else {
        return s.is_empty();
    };
    match *first {
        "**" => (0..=s.len()).any(|i| naive(rest, &s[i..])),
        "*" => (0..=s.len())
            .take_while(|&i| i == 0 || s[i - 1] != '/')
            .any(|i| naive(rest, &s[i..])),
        "?" => s.first().is_some_and(|c| *c != '/') && naive(rest, &s[1..]),
        "[ab]" => s.first().is_some_and(|c| matches!(c, 'a' | 'b')) && naive(rest, &s[1..]),
        "[^a]" => s.first().is_some_and(|c| *c != 'a') && naive(rest, &s[1..]),
        lit => {
            let lit: Vec<char> = lit.chars().collect();
            s.starts_with(&lit) && naive(rest, &s[lit.len()..])
        }
    }
}

#[test]
fn glob_matcher_agrees_with_naive_reference() {
    use super::matcher::Glob;
    const TOKENS: [&str; 8] = ["a", "b", "/", "*", "**", "?", "[ab]", "[^a]"];
    const CHARS: [char; 3] = ['a', 'b', '/'];
    // Deterministic xorshift so a failure is reproducible.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut positives = 0;
    for _ in 0..4000 {
        let mut toks: Vec<&str> = (0..next(6)).map(|_| TOKENS[next(TOKENS.len())]).collect();
        // `*` `*` written next to each other would read as `**`: keep the reference honest.
        toks.dedup_by(|a, b| a.starts_with('*') && b.starts_with('*'));
        let pattern: String = toks.concat();
        let input: Vec<char> = (0..next(7)).map(|_| CHARS[next(CHARS.len())]).collect();
        let text: String = input.iter().collect();
        let glob = Glob::parse(&pattern).expect("generated globs are valid");
        let expected = naive(&toks, &input);
        positives += usize::from(expected);
        assert_eq!(
            glob.matches(&text),
            expected,
            "pattern {pattern:?} input {text:?}"
        );
    }
    assert!(
        positives > 200,
        "the generator produces matches too ({positives})"
    );
}

// ------------------------------------------------------------------------------------------
// Sources: a name is only a name within its source
// ------------------------------------------------------------------------------------------

#[test]
fn entries_without_source_are_for_unqualified_principals_only() {
    let ldap_alice = req().from("ldap_auth", true);
    let github_alice = req().from("github_auth", false);
    let lone_github_alice = req().from("github_auth", true);
    assert!(matches("{account: alice}", &ldap_alice));
    assert!(!matches("{account: alice}", &github_alice));
    assert!(!matches("{}", &github_alice), "not even a catch-all");
    assert!(matches("{account: alice}", &lone_github_alice));
}

#[test]
fn match_source_names_the_principals_an_entry_is_for() {
    let ldap_alice = req().from("ldap_auth", true);
    let github_alice = req().from("github_auth", false);
    assert!(matches(
        "{source: github_auth, account: alice}",
        &github_alice
    ));
    assert!(!matches(
        "{source: github_auth, account: alice}",
        &ldap_alice
    ));
    assert!(matches("{source: [ldap_auth, github_auth]}", &github_alice));
    assert!(matches("{source: [ldap_auth, github_auth]}", &ldap_alice));
    // Exact names: a source is never a pattern.
    assert!(!matches(
        "{source: github_auth}",
        &req().from("github", false)
    ));
}

#[test]
fn a_source_that_does_not_exist_is_an_error_with_a_suggestion() {
    let e = errors("- match: {source: gihub_auth}\n  actions: ['*']");
    assert_eq!(e[0].field, "match.source");
    assert!(
        e[0].message.contains("did you mean `github_auth`"),
        "{}",
        e[0].message
    );
    let e = errors("- match: {source: []}\n  actions: ['*']");
    assert!(e[0].message.contains("matches nobody"), "{}", e[0].message);
}

#[test]
fn shadowing_respects_sources() {
    let a = acl("- match: {account: alice}\n  actions: ['*']\n\
                 - match: {account: alice, source: github_auth}\n  actions: [pull]\n\
                 - match: {source: [github_auth, ldap_auth]}\n  actions: [pull]\n\
                 - match: {source: github_auth, account: bob}\n  actions: [pull]");
    let shadowed: Vec<usize> = a.shadowed().iter().map(|s| s.index).collect();
    assert_eq!(shadowed, [3]);
}

#[path = "tests_values.rs"]
mod values;
