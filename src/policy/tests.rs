//! `acl test`, `acl replay` and `acl diff` over one ACL with globs, `**`, a regex with a capture,
//! placeholders, labels, an ip rule, a deny entry and first-match order, and the same ACL with
//! only its entry order changed.

use std::path::Path;
use std::sync::Arc;

use super::audit::{encode_labels, encode_scopes, parse_line};
use super::replay::{Memo, Report};
use super::*;

/// Entry 1 (the ip deny) decides before the grants that follow it.
const OLD: &str = r#"
  - match: {account: "", name: "public/*"}
    actions: [pull]
  - match: {ip: "10.9.0.0/16"}
    actions: []
  - match: {account: "/^(.+)@corp\\.example$/", name: "${account:1}/**"}
    actions: [pull, push]
  - match: {account: "/.+/", name: "${account}/**"}
    actions: [pull, push]
  - match: {labels: {team: "/.+/"}, name: "teams/${labels:team}/*"}
    actions: [pull, push]
  - match: {account: "/.+/", name: "public/*"}
    actions: [pull]
"#;

/// The same entries; the ip deny is last (so it only denies what nothing else grants).
const NEW_ORDER: &str = r#"
  - match: {account: "", name: "public/*"}
    actions: [pull]
  - match: {account: "/^(.+)@corp\\.example$/", name: "${account:1}/**"}
    actions: [pull, push]
  - match: {account: "/.+/", name: "${account}/**"}
    actions: [pull, push]
  - match: {labels: {team: "/.+/"}, name: "teams/${labels:team}/*"}
    actions: [pull, push]
  - match: {account: "/.+/", name: "public/*"}
    actions: [pull]
  - match: {ip: "10.9.0.0/16"}
    actions: []
"#;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn offline_with(rt: &tokio::runtime::Runtime, extra: &str, acl: &str) -> Offline {
    let yaml = format!(
        "token: {{issuer: t, generate: true, certificate: /nonexistent/t.crt, key: \
         /nonexistent/t.key}}\nusers:\n  \"\": {{}}\n  alice: {{password: \
         \"$2y$04$abcdefghijklmnopqrstuu5Zr8yXb8m7Q8bC9JqQmRrDk7vJ4GzWi\", labels: {{team: \
         [dev]}}}}\n{extra}acl:{acl}"
    );
    let config = crate::config::parse(&yaml, Path::new("/nonexistent/config.yaml"))
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    rt.block_on(Offline::new(Arc::new(config))).unwrap()
}

fn offline(rt: &tokio::runtime::Runtime, acl: &str) -> Offline {
    offline_with(rt, "", acl)
}

fn user(account: &str, labels: &[(&str, &str)]) -> Principal {
    Principal {
        source: if account.is_empty() {
            "anonymous"
        } else {
            "users"
        },
        account: account.to_owned(),
        labels: labels.iter().map(|(k, v)| (*k, vec![*v])).collect(),
    }
}

fn scope(s: &str) -> Scope {
    s.parse().unwrap()
}

fn granted(o: &Offline, who: &Principal, ip: Option<&str>, s: &str) -> (Vec<String>, Decider) {
    match o
        .decide_sync(who, "reg", ip.map(|i| i.parse().unwrap()), &scope(s))
        .unwrap()
    {
        Verdict::Decided { granted, by } => (granted, by),
        Verdict::External(b) => panic!("external {b}"),
    }
}

fn acts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn offline_decisions_follow_first_match() {
    let rt = rt();
    let o = offline(&rt, OLD);
    let alice = user("alice", &[("team", "dev")]);
    // Placeholder and `**` (any depth, not the bare namespace).
    assert_eq!(
        granted(&o, &alice, None, "repository:alice/a/b:pull,push,delete"),
        (acts(&["pull", "push"]), Decider::Acl(3))
    );
    assert_eq!(
        granted(&o, &alice, None, "repository:alice:pull").1,
        Decider::NoMatch
    );
    // The regex capture.
    let corp = user("bob@corp.example", &[]);
    assert_eq!(
        granted(&o, &corp, None, "repository:bob/x:push"),
        (acts(&["push"]), Decider::Acl(2))
    );
    // Labels placeholder.
    assert_eq!(
        granted(&o, &alice, None, "repository:teams/dev/x:push").0,
        acts(&["push"])
    );
    assert!(
        granted(&o, &alice, None, "repository:teams/ops/x:push")
            .0
            .is_empty()
    );
    // The ip deny decides first for its network, IPv4-mapped IPv6 too.
    assert_eq!(
        granted(&o, &alice, Some("10.9.1.1"), "repository:alice/x:pull"),
        (vec![], Decider::Acl(1))
    );
    assert_eq!(
        granted(
            &o,
            &alice,
            Some("::ffff:10.9.1.1"),
            "repository:alice/x:pull"
        )
        .1,
        Decider::Acl(1)
    );
    // `*` does not cross `/`.
    let anon = user("", &[]);
    assert_eq!(
        granted(&o, &anon, None, "repository:public/a/b:pull").1,
        Decider::NoMatch
    );
    assert!(
        o.describe(&Decider::Acl(3))
            .starts_with("acl[3]: match {account: \"/.+/\"")
    );
}

const TESTS: &str = r#"
defaults: {service: reg}
cases:
  - name: own namespace
    account: alice
    expect:
      "repository:alice/app:pull,push": pull,push
      "repository:teams/dev/app:push": [push]
  - name: blocked network
    account: alice
    ip: 10.9.0.1
    expect:
      "repository:alice/app:pull": denied
  - name: wrong on purpose
    account: alice
    labels: {team: ops}
    expect:
      "repository:teams/dev/app:push": push
  - name: asks for what is not requested
    account: alice
    expect:
      "repository:alice/app:pull": pull,push
"#;

#[test]
fn acl_test_cases() {
    let rt = rt();
    let o = offline(&rt, OLD);
    let file = cases::parse(TESTS).unwrap();
    let results = rt.block_on(cases::run(&o, &file));
    assert_eq!(results[0].outcome, cases::Outcome::Passed);
    assert_eq!(results[1].outcome, cases::Outcome::Passed);
    // Labels given replace the config's (team ops, not dev): denied, by no match.
    match &results[2].outcome {
        cases::Outcome::Failed(m) => {
            assert_eq!(m[0].expected, acts(&["push"]));
            assert!(m[0].granted.is_empty());
            assert!(m[0].decided_by.starts_with("no ACL entry matched"), "{m:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(results[3].outcome, cases::Outcome::Invalid(_)));
    assert_eq!(cases::counts(&results), (2, 1, 1, 0));
    let text = cases::report_text(&results);
    assert!(
        text.contains("FAIL wrong on purpose: repository:teams/dev/app:push: expected push, granted denied (decided by no ACL entry matched"),
        "{text}"
    );
    let junit = cases::report_junit("t.yaml", &results);
    assert!(
        junit.contains("tests=\"4\" failures=\"1\" errors=\"1\""),
        "{junit}"
    );
    // The same cases under the reordered ACL: the blocked network is no longer blocked.
    let results = rt.block_on(cases::run(&offline(&rt, NEW_ORDER), &file));
    match &results[1].outcome {
        cases::Outcome::Failed(m) => assert!(m[0].decided_by.starts_with("acl[2]"), "{m:?}"),
        other => panic!("{other:?}"),
    }
    // Unknown keys and bad scopes are errors that name the place.
    let e = cases::parse("cases:\n  - account: a\n    expect: {}\n    labelz: {}\n").unwrap_err();
    assert!(e.contains("cases[0]") && e.contains("labelz"), "{e}");
}

#[test]
fn external_authorizers_are_not_evaluated() {
    let rt = rt();
    let o = offline_with(
        &rt,
        "http_authz: {url: \"http://127.0.0.1:9/authz\"}\nauthz_order: [acl, http_authz]\n",
        OLD,
    );
    let file = cases::parse(
        "cases:\n  - account: alice\n    expect:\n      \"repository:alice/x:pull\": pull\n      \
         \"repository:zz/x:pull\": denied\n",
    )
    .unwrap();
    let results = rt.block_on(cases::run(&o, &file));
    match &results[0].outcome {
        cases::Outcome::NotEvaluable { scope, reason } => {
            assert_eq!(scope, "repository:zz/x:pull");
            assert!(reason.contains("http_authz (a webhook)"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

/// Audit lines of `requests` decided under `o`, in the text and the JSON format.
fn audit_lines(o: &Offline, requests: &[(Principal, Option<&str>, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, (who, ip, scopes)) in requests.iter().enumerate() {
        let scopes: Vec<Scope> = scopes.split(' ').map(scope).collect();
        let decided: Vec<(Scope, Vec<String>, Decider)> = scopes
            .into_iter()
            .map(|s| {
                let (g, by) = granted(o, who, *ip, &s.to_string());
                (s, g, by)
            })
            .collect();
        let field = encode_scopes(decided.iter().map(|(s, g, b)| (s, g.as_slice(), b.clone())));
        let ip = ip.unwrap_or("unix");
        let labels = encode_labels(&who.labels);
        if i % 2 == 0 {
            out.push(format!(
                "2026-12-01T00:00:00Z  INFO request{{id=\"{i}\"}}: audit: token issued \
                 audit_version=1 account={:?} source={:?} labels={labels:?} client_ip={ip} \
                 service=\"reg\" client_id=\"\" grant=\"password\" refresh_token_id=\"\" \
                 scopes={field}",
                who.account, who.source
            ));
        } else {
            out.push(
                serde_json::json!({
                    "timestamp": "2026-12-01T00:00:00Z", "level": "INFO",
                    "message": "token issued", "audit_version": 1,
                    "account": who.account, "source": who.source, "labels": labels,
                    "client_ip": ip, "service": "reg", "client_id": "", "grant": "password",
                    "refresh_token_id": "", "scopes": field, "target": "audit",
                })
                .to_string(),
            );
        }
        out.push("2026-12-01T00:00:00Z DEBUG other: unrelated line".to_owned());
    }
    out
}

fn replay(o: &Offline, lines: &[String]) -> Report {
    let mut report = Report::default();
    let mut memo = Memo::new();
    for (n, line) in lines.iter().enumerate() {
        match parse_line(line) {
            Ok(Some(rec)) => {
                // Both paths: the command's (no copy of the verdicts) on even lines.
                if n % 4 == 0 {
                    assert!(memo.replay(o, &rec, &mut report));
                } else {
                    let v = memo.decide_sync(o, &rec).unwrap();
                    report.add(&rec, &v);
                }
            }
            Ok(None) => {}
            Err(e) => report.unreadable(n as u64, e),
        }
    }
    report
}

#[test]
fn replay_predicts_exactly_the_reordered_decisions() {
    let rt = rt();
    let old = offline(&rt, OLD);
    let new = offline(&rt, NEW_ORDER);
    let alice = user("alice", &[("team", "dev")]);
    let requests = [
        (
            alice.clone(),
            Some("10.9.0.5"),
            "repository:alice/app:pull,push",
        ),
        (
            alice.clone(),
            Some("10.9.0.5"),
            "repository:alice/app:pull,push",
        ),
        (
            alice.clone(),
            Some("10.1.0.5"),
            "repository:alice/app:pull,push",
        ),
        (
            user("bob@corp.example", &[]),
            Some("10.9.0.6"),
            "repository:bob/x:push repository:zz/y:pull",
        ),
        (user("", &[]), None, "repository:public/x:pull"),
        (alice, Some("10.9.0.5"), "repository:teams/dev/a:push"),
    ];
    let lines = audit_lines(&old, &requests);
    // Under the configuration that wrote them, nothing changes.
    let same = replay(&old, &lines);
    assert_eq!(
        same.stats.unreadable, 0,
        "{:?}",
        same.stats.first_unreadable
    );
    assert_eq!(same.stats.requests, 6);
    assert_eq!(same.stats.scopes, 7);
    assert_eq!(same.stats.changed, 0);
    // Under the reordered one, exactly the 10.9 requests that something else grants change.
    let r = replay(&new, &lines);
    assert_eq!(r.stats.changed, 4, "{:?}", r.changes);
    type Change = (String, String, Vec<String>, Vec<String>, Decider, u64);
    let got: Vec<Change> = r
        .changes
        .iter()
        .map(|(k, n)| {
            (
                k.subject.clone(),
                k.resource.clone(),
                k.before.clone(),
                k.after.clone(),
                k.now.clone(),
                *n,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "alice".into(),
                "repository:alice/app".into(),
                vec![],
                acts(&["pull", "push"]),
                Decider::Acl(2),
                2
            ),
            (
                "alice".into(),
                "repository:teams/dev/a".into(),
                vec![],
                acts(&["push"]),
                Decider::Acl(3),
                1
            ),
            (
                "bob@corp.example".into(),
                "repository:bob/x".into(),
                vec![],
                acts(&["push"]),
                Decider::Acl(1),
                1
            ),
        ]
    );
    // Same grants by another entry now: repository:zz/y (denied by no match instead of the ip
    // rule) and alice/app from 10.1 (the same entry, one place up).
    assert_eq!(r.stats.moved, 2);
    let text = replay::report_text(&r, &new);
    assert!(
        text.contains("alice [users] repository:alice/app asked pull,push: - → pull,push (2×; now decided by acl[2]:"),
        "{text}"
    );
}

#[test]
fn diff_finds_the_order_change_and_shadowing() {
    let rt = rt();
    let old = offline(&rt, OLD);
    let new = offline(&rt, NEW_ORDER);
    let same = rt.block_on(diff::diff(&old, &old)).unwrap();
    assert!(!same.changed() && same.changes.is_empty(), "{same:?}");
    let r = rt.block_on(diff::diff(&old, &new)).unwrap();
    assert!(r.changed());
    assert_eq!(r.moved.len(), 5, "{:?}", r.moved);
    assert!(r.added.is_empty() && r.removed.is_empty());
    // Clients of 10.9.0.0/16 gain, nobody loses.
    assert!(!r.changes.is_empty());
    for c in &r.changes {
        assert!(c.before.is_empty() && !c.after.is_empty(), "{c:?}");
        assert!(
            c.identities.iter().all(|i| i.contains("from 10.9.0.0")),
            "{c:?}"
        );
    }
    assert!(
        r.changes
            .iter()
            .any(|c| c.pattern == "repository:${account}/**" && c.after == acts(&["pull", "push"])),
        "{:?}",
        r.changes
    );
    assert!(
        r.changes
            .iter()
            .any(|c| c.pattern == "repository:teams/${labels:team}/*"),
        "{:?}",
        r.changes
    );
    let text = diff::report_text(&r);
    assert!(
        text.contains("approximate:") && text.contains("moved: acl[1] → acl[5]"),
        "{text}"
    );

    // A catch-all deny put first shadows every other entry.
    let deny_first = format!("\n  - match: {{}}\n    actions: []{OLD}");
    let r = rt
        .block_on(diff::diff(&old, &offline(&rt, &deny_first)))
        .unwrap();
    assert_eq!(r.added.len(), 1);
    assert_eq!(r.newly_shadowed.len(), 6, "{:?}", r.newly_shadowed);
    assert_eq!(r.unreachable.len(), 6, "{:?}", r.unreachable);
    assert!(r.changes.iter().all(|c| c.after.is_empty()));
}

#[test]
fn literal_acls_diff_exactly() {
    let rt = rt();
    let a = offline(
        &rt,
        "\n  - match: {account: alice, name: app}\n    actions: [pull]\n",
    );
    let b = offline(
        &rt,
        "\n  - match: {account: alice, name: app}\n    actions: [pull, push]\n",
    );
    let r = rt.block_on(diff::diff(&a, &b)).unwrap();
    let text = diff::report_text(&r);
    assert!(text.contains("exact: every pattern is a literal"), "{text}");
    assert_eq!(r.changes.len(), 1, "{text}");
    assert_eq!(r.changes[0].pattern, "repository:app");
    assert_eq!(r.changes[0].after, acts(&["pull", "push"]));
    assert!(text.contains("gains push"), "{text}");
}

#[test]
fn acl_sql_rows_and_casbin_are_decided_offline() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    // acl_sql (SQLite) after the static ACL.
    let o = offline_with(
        &rt,
        &format!("acl_sql: {{url: \"sqlite:{d}/acl.db\"}}\nauthz_order: [acl, acl_sql]\n"),
        "\n  - match: {account: alice, name: \"alice/*\"}\n    actions: [pull]\n",
    );
    let crate::config::AuthzBackend::Sql(sql) = &o.config().authz_order[1] else {
        panic!("acl_sql is second");
    };
    rt.block_on(async {
        sql.db().migrate().await.unwrap();
        sql.db()
            .execute(
                r#"INSERT INTO registry_auth_acl (seq, entry) VALUES
                   (10, '{"match": {"name": "shared/*"}, "actions": ["pull", "push"]}')"#,
            )
            .await
            .unwrap();
    });
    // Read the rows now that they exist.
    let o = rt
        .block_on(Offline::new(Arc::new(o.config().clone())))
        .unwrap();
    let file = cases::parse(
        "cases:\n  - account: alice\n    expect:\n      \"repository:alice/x:pull,push\": pull\n      \
         \"repository:shared/x:pull,push\": pull\n",
    )
    .unwrap();
    let results = rt.block_on(cases::run(&o, &file));
    match &results[0].outcome {
        cases::Outcome::Failed(m) => {
            assert_eq!(m.len(), 1, "{m:?}");
            assert_eq!(m[0].granted, acts(&["pull", "push"]));
            assert!(
                m[0].decided_by
                    .starts_with("acl_sql row seq=10: match {name: \"shared/*\"}"),
                "{m:?}"
            );
        }
        other => panic!("{other:?}"),
    }

    // Casbin after the static ACL: it decides what the ACL does not match.
    std::fs::write(
        dir.path().join("model.conf"),
        "[request_definition]\nr = account, type, name, service, ip, action, labels\n\n\
         [policy_definition]\np = account, type, name, service, ip, action, labels\n\n\
         [policy_effect]\ne = some(where (p.eft == allow))\n\n[matchers]\nm = r.account == \
         p.account && keyMatch(r.name, p.name) && r.action == p.action\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("policy.csv"),
        "p, alice, repository, team/*, reg, 0.0.0.0/0, push, \"{}\"\n",
    )
    .unwrap();
    let o = offline_with(
        &rt,
        &format!(
            "casbin_authz: {{model_path: {d}/model.conf, policy_path: {d}/policy.csv}}\n\
             authz_order: [acl, casbin_authz]\n"
        ),
        "\n  - match: {account: alice, name: \"alice/*\"}\n    actions: [pull]\n",
    );
    let alice = user("alice", &[]);
    assert!(
        o.decide_sync(&alice, "reg", None, &scope("repository:team/x:push"))
            .is_none()
    );
    let v = rt
        .block_on(o.decide(&alice, "reg", None, &scope("repository:team/x:pull,push")))
        .unwrap();
    assert_eq!(
        v,
        Verdict::Decided {
            granted: acts(&["push"]),
            by: Decider::Other("casbin_authz".into())
        }
    );
    assert_eq!(
        granted(&o, &alice, None, "repository:alice/x:pull,push"),
        (acts(&["pull"]), Decider::Acl(0))
    );
}

#[test]
fn cases_for_sources_the_configuration_lacks_are_refused_by_name() {
    let rt = rt();
    let o = offline(&rt, OLD);
    let configured = o.config().namespaces.configured();
    assert_eq!(configured, ["anonymous", "users", "robots"]);
    let file = cases::parse(
        r#"
cases:
  - name: a configured source
    account: alice
    source: users
    expect: {"repository:alice/app:pull": pull}
  - name: the directory
    account: carol
    source: ldap_auth
    expect: {"repository:carol/app:pull": pull}
  - account: bob
    source: user
    expect: {"repository:bob/app:pull": pull}
  - account: dave
    expect: {"repository:dave/app:pull": pull}
"#,
    )
    .unwrap();
    let problems = cases::unconfigured_sources(&file, &configured);
    assert_eq!(
        problems,
        [
            "cases[1] (\"the directory\"): source `ldap_auth` is not configured here; the \
             configured sources are anonymous, users, robots",
            "cases[2] (account \"bob\"): source `user` is not a source (did you mean `users`?); \
             the configured sources are anonymous, users, robots",
        ]
    );
    // With LDAP configured, the same case is fine.
    let mut with_ldap = configured.clone();
    with_ldap.push("ldap_auth");
    assert_eq!(cases::unconfigured_sources(&file, &with_ldap).len(), 1);
}
