//! The ACL engine: `authz::Acl::compile` on entries built from fuzz data (patterns assembled
//! from glob, regex and placeholder pieces, or raw strings), then `authorize` for requests built
//! from fuzz data, the shadowing lint (`Acl::shadowed`) and robot scope patterns
//! (`authz::ScopeGrants`).
//!
//! Invariants: no panic; a decision names an existing entry; the granted actions are sorted,
//! unique, a subset of the requested ones and of the deciding entry's list (unless it has `*`);
//! the same request gets the same decision twice; the deciding entry is never one the linter
//! reports as shadowed (it said that entry can never match first); robot grants are a subset of
//! the request.
#![no_main]

use std::net::IpAddr;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use registry_auth::authn::Labels;
use registry_auth::authz::{Acl, AclDecision, AuthzRequest, ScopeGrants};
use registry_auth::config::file::{AclEntrySpec, MatchSpec};

#[derive(Debug, Arbitrary)]
struct Input {
    entries: Vec<EntryIn>,
    requests: Vec<RequestIn>,
    robot_patterns: Vec<RobotPattern>,
}

#[derive(Debug, Arbitrary)]
struct EntryIn {
    account: Option<Pat>,
    kind: Option<Pat>,
    name: Option<Pat>,
    service: Option<Pat>,
    ip: Option<IpIn>,
    labels: Vec<(Word, Pat)>,
    actions: Vec<Action>,
}

#[derive(Debug, Arbitrary)]
enum IpIn {
    Addr(IpAddr),
    Net(IpAddr, u8),
    Raw(String),
}

#[derive(Debug, Arbitrary)]
enum Pat {
    Glob(Vec<Tok>),
    Regex(Vec<Tok>),
    Raw(String),
}

#[derive(Debug, Arbitrary)]
enum Tok {
    Word(Word),
    Lit(String),
    Slash,
    Star,
    DoubleStar,
    Question,
    Class(bool, Word),
    Escape(char),
    RegexMeta(u8),
    Placeholder(Field),
    Capture(Field, u8),
    Label(Word),
}

#[derive(Debug, Arbitrary)]
enum Field {
    Account,
    Type,
    Name,
    Service,
    Bogus,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Word {
    Alice,
    Bob,
    Repository,
    Registry,
    Catalog,
    Team,
    App,
    Public,
    Dev,
    Empty,
    Host,
}

#[derive(Debug, Arbitrary)]
enum Action {
    Pull,
    Push,
    Delete,
    Star,
    Other(String),
}

#[derive(Debug, Arbitrary)]
struct RequestIn {
    account: Vec<Tok>,
    kind: Word,
    name: Vec<Tok>,
    service: Word,
    ip: Option<IpAddr>,
    labels: Vec<(Word, Vec<Vec<Tok>>)>,
    actions: Vec<Action>,
}

/// A request as the ACL sees it.
struct Req {
    account: String,
    kind: &'static str,
    name: String,
    service: &'static str,
    ip: Option<IpAddr>,
    labels: Labels,
    actions: Vec<String>,
}

#[derive(Debug, Arbitrary)]
struct RobotPattern {
    kind: Word,
    name: Pat,
    actions: Vec<Action>,
}

impl Word {
    fn as_str(self) -> &'static str {
        match self {
            Word::Alice => "alice",
            Word::Bob => "bob",
            Word::Repository => "repository",
            Word::Registry => "registry",
            Word::Catalog => "catalog",
            Word::Team => "team",
            Word::App => "app",
            Word::Public => "public",
            Word::Dev => "dev",
            Word::Empty => "",
            Word::Host => "localhost:5000",
        }
    }
}

impl Field {
    fn as_str(&self) -> &'static str {
        match self {
            Field::Account => "account",
            Field::Type => "type",
            Field::Name => "name",
            Field::Service => "service",
            Field::Bogus => "acount",
        }
    }
}

const REGEX_META: &[&str] = &[
    "^", "$", ".", ".*", ".+", "(", ")", "(.+)", "|", "\\d", "\\w", "\\/", "[a-z]", "{2}", "?",
    "+", "\\", "(?i)", "\\b",
];

fn render(toks: &[Tok]) -> String {
    let mut s = String::new();
    for t in toks.iter().take(24) {
        match t {
            Tok::Word(w) => s.push_str(w.as_str()),
            Tok::Lit(l) => s.extend(l.chars().take(16)),
            Tok::Slash => s.push('/'),
            Tok::Star => s.push('*'),
            Tok::DoubleStar => s.push_str("**"),
            Tok::Question => s.push('?'),
            Tok::Class(neg, w) => {
                s.push('[');
                if *neg {
                    s.push('^');
                }
                s.push_str(w.as_str());
                s.push(']');
            }
            Tok::Escape(c) => {
                s.push('\\');
                s.push(*c);
            }
            Tok::RegexMeta(i) => s.push_str(REGEX_META[usize::from(*i) % REGEX_META.len()]),
            Tok::Placeholder(f) => {
                s.push_str("${");
                s.push_str(f.as_str());
                s.push('}');
            }
            Tok::Capture(f, n) => s.push_str(&format!("${{{}:{}}}", f.as_str(), n % 4)),
            Tok::Label(w) => s.push_str(&format!("${{labels:{}}}", w.as_str())),
        }
    }
    s
}

impl Pat {
    fn render(&self) -> String {
        match self {
            Pat::Glob(t) => render(t),
            Pat::Regex(t) => format!("/{}/", render(t)),
            Pat::Raw(r) => r.chars().take(64).collect(),
        }
    }
}

impl Action {
    fn render(&self) -> String {
        match self {
            Action::Pull => "pull".to_owned(),
            Action::Push => "push".to_owned(),
            Action::Delete => "delete".to_owned(),
            Action::Star => "*".to_owned(),
            Action::Other(o) => o.chars().take(12).collect(),
        }
    }
}

fn actions(list: &[Action]) -> Vec<String> {
    list.iter().take(6).map(Action::render).collect()
}

fuzz_target!(|input: Input| {
    let specs: Vec<AclEntrySpec> = input
        .entries
        .iter()
        .take(8)
        .map(|e| AclEntrySpec {
            matches: MatchSpec {
                account: e.account.as_ref().map(Pat::render),
                kind: e.kind.as_ref().map(Pat::render),
                name: e.name.as_ref().map(Pat::render),
                service: e.service.as_ref().map(Pat::render),
                ip: e.ip.as_ref().map(|ip| match ip {
                    IpIn::Addr(a) => a.to_string(),
                    IpIn::Net(a, len) => format!("{a}/{len}"),
                    IpIn::Raw(r) => r.chars().take(48).collect(),
                }),
                labels: e
                    .labels
                    .iter()
                    .take(3)
                    .map(|(k, p)| (k.as_str().to_owned(), p.render()))
                    .collect(),
                source: None,
            },
            actions: actions(&e.actions),
            comment: None,
        })
        .collect();

    let requests: Vec<Req> = input
        .requests
        .iter()
        .take(8)
        .map(|r| {
            let mut actions = actions(&r.actions);
            actions.sort_unstable();
            actions.dedup();
            // At most 3 labels of at most 3 values: label expansion tries their product.
            let labels: Labels = r
                .labels
                .iter()
                .take(3)
                .map(|(k, vs)| (k.as_str(), vs.iter().take(3).map(|v| render(v)).collect()))
                .collect();
            Req {
                account: render(&r.account),
                kind: r.kind.as_str(),
                name: render(&r.name),
                service: r.service.as_str(),
                ip: r.ip,
                labels,
                actions,
            }
        })
        .collect();

    if let Ok(acl) = Acl::compile(&specs) {
        assert_eq!(acl.len(), specs.len());
        let shadowed = acl.shadowed();
        for s in &shadowed {
            assert!(s.by < s.index && s.index < specs.len(), "{s:?}");
        }
        for r in &requests {
            let acts = &r.actions;
            let req = AuthzRequest {
                account: &r.account,
                source: "users",
                unqualified: true,
                kind: r.kind,
                name: &r.name,
                service: r.service,
                ip: r.ip,
                labels: &r.labels,
                actions: acts,
            };
            let decision = acl.authorize(&req);
            assert_eq!(decision, acl.authorize(&req), "not deterministic");
            if let AclDecision::Matched { entry, granted } = &decision {
                assert!(*entry < specs.len());
                assert!(
                    !shadowed.iter().any(|s| s.index == *entry),
                    "acl[{entry}] decided {req:?} but the linter says it can never match: \
                     {shadowed:?}\n{specs:#?}"
                );
                assert!(granted.windows(2).all(|w| w[0] < w[1]), "{granted:?}");
                for g in granted {
                    assert!(acts.contains(g), "granted {g:?}, requested {acts:?}");
                    let listed = &specs[*entry].actions;
                    assert!(
                        listed.contains(g) || listed.iter().any(|a| a == "*"),
                        "granted {g:?}, entry lists {listed:?}"
                    );
                }
            }
        }
    }

    let patterns: Vec<String> = input
        .robot_patterns
        .iter()
        .take(6)
        .map(|p| {
            format!(
                "{}:{}:{}",
                p.kind.as_str(),
                p.name.render(),
                actions(&p.actions).join(",")
            )
        })
        .collect();
    if let Ok(grants) = ScopeGrants::compile(&patterns) {
        for r in &requests {
            let granted = grants.grant(r.kind, &r.name, &r.actions);
            for g in &granted {
                assert!(
                    r.actions.contains(g),
                    "robot granted {g:?}, requested {:?}",
                    r.actions
                );
            }
        }
    }
});
