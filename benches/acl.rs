//! Criterion benchmark of ACL evaluation: `Acl::compile` and `Acl::authorize` over 10, 100 and
//! 1000 realistic rules (account globs, a `/regex/` with a capture placeholder, `${account}` and
//! `${labels:team}` placeholders, an IP range, labels), for a request decided by an early rule, one
//! decided by the last rule and one that no rule matches (every rule is tried).
//!
//! `cargo bench --bench acl`. Reports only; nothing here asserts a time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use registry_auth::authn::Labels;
use registry_auth::authz::{Acl, AclDecision, AuthzRequest};
use registry_auth::config::file::{AclEntrySpec, MatchSpec};

fn entry(matches: MatchSpec, actions: &[&str], comment: &str) -> AclEntrySpec {
    AclEntrySpec {
        matches,
        actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        comment: Some(comment.to_owned()),
    }
}

fn pattern(p: &str) -> Option<String> {
    Some(p.to_owned())
}

/// `n` rules shaped like a real installation: a few general rules at the top, per-team and
/// per-project rules in the middle, anonymous public pulls last.
fn rules(n: usize) -> Vec<AclEntrySpec> {
    let mut specs = vec![
        entry(
            MatchSpec {
                account: pattern("admin"),
                ..MatchSpec::default()
            },
            &["*"],
            "admins can do anything",
        ),
        entry(
            MatchSpec {
                account: pattern(r"/^ci-([a-z]+)$/"),
                name: pattern("${account:1}/**"),
                ..MatchSpec::default()
            },
            &["pull", "push"],
            "CI robots push to their project",
        ),
        entry(
            MatchSpec {
                account: pattern("/.+/"),
                name: pattern("${account}/*"),
                ..MatchSpec::default()
            },
            &["pull", "push", "delete"],
            "own namespace",
        ),
        entry(
            MatchSpec {
                labels: BTreeMap::from([("team".to_owned(), "*".to_owned())]),
                name: pattern("teams/${labels:team}/**"),
                ..MatchSpec::default()
            },
            &["pull", "push"],
            "team namespaces",
        ),
        entry(
            MatchSpec {
                ip: pattern("10.0.0.0/8"),
                kind: pattern("registry"),
                name: pattern("catalog"),
                ..MatchSpec::default()
            },
            &["*"],
            "catalog from the intranet",
        ),
    ];
    // Filler: per-project rules for named users, as large installations accumulate them.
    let mut i = 0;
    while specs.len() + 1 < n {
        specs.push(entry(
            MatchSpec {
                account: pattern(&format!("user{i}")),
                name: pattern(&format!("project{i}/{{app,lib}}-*")),
                service: pattern("registry.example.com"),
                ..MatchSpec::default()
            },
            &["pull"],
            "project reader",
        ));
        i += 1;
    }
    specs.push(entry(
        MatchSpec {
            account: pattern(""),
            name: pattern("public/**"),
            ..MatchSpec::default()
        },
        &["pull"],
        "anonymous pulls of public/",
    ));
    specs.truncate(n);
    specs
}

struct Request {
    account: &'static str,
    name: &'static str,
    labels: Labels,
    actions: Vec<String>,
}

impl Request {
    fn as_authz(&self) -> AuthzRequest<'_> {
        AuthzRequest {
            account: self.account,
            source: "users",
            unqualified: true,
            kind: "repository",
            name: self.name,
            service: "registry.example.com",
            ip: Some(IpAddr::from([192, 168, 1, 20])),
            labels: &self.labels,
            actions: &self.actions,
        }
    }
}

fn requests() -> Vec<(&'static str, Request)> {
    let team = Labels(BTreeMap::from([(
        "team".to_owned(),
        vec!["infra".to_owned(), "web".to_owned()],
    )]));
    vec![
        (
            "own_namespace",
            Request {
                account: "alice",
                name: "alice/app",
                labels: team,
                actions: vec!["pull".to_owned(), "push".to_owned()],
            },
        ),
        (
            "anonymous_last_rule",
            Request {
                account: "",
                name: "public/base/debian",
                labels: Labels::default(),
                actions: vec!["pull".to_owned()],
            },
        ),
        (
            "no_match",
            Request {
                account: "",
                name: "private/secret",
                labels: Labels::default(),
                actions: vec!["pull".to_owned()],
            },
        ),
    ]
}

fn bench_acl(c: &mut Criterion) {
    let sizes = [10, 100, 1000];
    let mut compile = c.benchmark_group("acl_compile");
    for n in sizes {
        let specs = rules(n);
        compile.bench_with_input(BenchmarkId::from_parameter(n), &specs, |b, specs| {
            b.iter(|| Acl::compile(black_box(specs)).expect("rules compile"));
        });
    }
    compile.finish();

    let mut authorize = c.benchmark_group("acl_authorize");
    for n in sizes {
        let acl = Acl::compile(&rules(n)).expect("rules compile");
        for (label, request) in requests() {
            let decision = acl.authorize(&request.as_authz());
            // The "anonymous_last_rule" request must really be decided by the last rule and
            // "no_match" by none, or the benchmark would measure something else.
            match (label, &decision) {
                ("anonymous_last_rule", AclDecision::Matched { entry, .. }) => {
                    assert_eq!(*entry, n - 1, "decided by the last rule");
                }
                ("no_match", d) => assert_eq!(*d, AclDecision::NoMatch),
                (_, AclDecision::Matched { .. }) => {}
                (_, AclDecision::NoMatch) => panic!("{label}: no rule matched"),
            }
            authorize.bench_with_input(BenchmarkId::new(label, n), &request, |b, request| {
                b.iter(|| acl.authorize(black_box(&request.as_authz())));
            });
        }
    }
    authorize.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_acl
}
criterion_main!(benches);
