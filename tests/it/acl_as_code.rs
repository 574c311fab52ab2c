//! ACL as code end to end: the server decides real traffic (skopeo and the HTTP client) under
//! ACL A and writes its audit log; the config is switched to ACL B (hot reload);
//! `acl replay --config B` on the log of A's traffic predicts the decisions; the same traffic
//! again under B must get exactly the predicted decisions. `acl test` and `acl diff` run on the
//! same two configs. Also: the shipped test cases of config.example.yaml pass.

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, Instant};

use registry_auth::policy::audit::{AuditRecord, parse_line};

use crate::common::clients::Outcome;
use crate::common::http::fetch_token;
use crate::common::keys::KeySetup;
use crate::common::server::run_cli;
use crate::common::stack::{SERVICE, Stack, User};

const ACL_A: &str = r#"  - match: {account: "", name: "public/*"}
    actions: [pull]
  - match: {account: "/.+/", name: "${account}/**"}
    actions: [pull, push]
  - match: {labels: {team: "/.+/"}, name: "teams/${labels:team}/*"}
    actions: [pull, push]
  - match: {account: "/.+/", name: "public/*"}
    actions: [pull, push]
"#;

/// B: loopback clients only pull public/*; accounts starting with `a` only pull their own
/// namespace (a regex capture); team dev may pull alice/*; the rest as in A.
const ACL_B: &str = r#"  - match: {account: "", name: "public/*"}
    actions: [pull]
  - match: {ip: "127.0.0.0/8", name: "public/*"}
    actions: [pull]
  - match: {account: "/^(a.*)$/", name: "${account:1}/**"}
    actions: [pull]
  - match: {account: "/.+/", name: "${account}/**"}
    actions: [pull, push]
  - match: {labels: {team: dev}, name: "alice/*"}
    actions: [pull]
  - match: {labels: {team: "/.+/"}, name: "teams/${labels:team}/*"}
    actions: [pull, push]
"#;

/// (subject, `type:name`, requested actions) → granted actions.
type Decisions = BTreeMap<(String, String, String), Vec<String>>;

fn decisions(records: &[AuditRecord]) -> Decisions {
    let mut out = Decisions::new();
    for r in records {
        for s in &r.scopes {
            out.insert(
                (
                    r.subject.clone(),
                    format!("{}:{}", s.scope.kind, s.scope.name),
                    s.scope.actions.join(","),
                ),
                s.granted.clone(),
            );
        }
    }
    out
}

fn audit_records(log: &str) -> Vec<AuditRecord> {
    crate::common::proc::strip_ansi(log)
        .lines()
        .filter_map(|l| parse_line(l).unwrap_or_else(|e| panic!("unreadable audit line {l}: {e}")))
        .collect()
}

/// The traffic: skopeo pushes and pulls plus token requests over HTTP.
fn traffic(stack: &Stack, alice: (&str, &str), bob: (&str, &str)) -> Vec<(String, Outcome)> {
    let c = &stack.clients;
    let mut out = vec![
        (
            "alice pushes alice/app".to_owned(),
            c.skopeo_push(Some(alice), "alice/app", "v1", None).outcome,
        ),
        (
            "bob pulls alice/app".to_owned(),
            c.skopeo_pull(Some(bob), "alice/app", "v1").outcome,
        ),
        (
            "alice pushes public/base".to_owned(),
            c.skopeo_push(Some(alice), "public/base", "v1", None)
                .outcome,
        ),
        (
            "anonymous pulls public/base".to_owned(),
            c.skopeo_pull(None, "public/base", "v1").outcome,
        ),
    ];
    let realm = stack.server.realm();
    for (who, scopes) in [
        (
            Some(alice),
            &[
                "repository:teams/dev/x:pull,push",
                "repository:alice/a/b:push",
            ][..],
        ),
        (
            Some(bob),
            &["repository:bob/x:pull,push", "repository:teams/ops/x:push"][..],
        ),
        (
            None,
            &["repository:public/x:pull,push", "repository:bob/x:pull"][..],
        ),
    ] {
        let t = fetch_token(&realm, Some(SERVICE), scopes, who, &[]);
        out.push((
            format!("token {scopes:?}"),
            if t.response.status == 200 {
                Outcome::Ok
            } else {
                Outcome::Fail(t.response.text())
            },
        ));
    }
    out
}

#[test]
fn replay_predicts_the_decisions_after_a_reload() {
    let mut alice = User::new("alice");
    alice.extra = "labels: {team: [dev]}".to_owned();
    let mut bob = User::new("bob");
    bob.extra = "labels: {team: [dev]}".to_owned();
    let users = [alice.clone(), bob.clone()];
    let stack = Stack::start(KeySetup::EcKid, &users, true, ACL_A);
    let a = (alice.name.as_str(), alice.password.as_str());
    let b = (bob.name.as_str(), bob.password.as_str());
    let dir = stack.server.config.parent().unwrap().to_path_buf();

    // Phase A.
    let before = traffic(&stack, a, b);
    assert_eq!(
        before[0].1,
        Outcome::Ok,
        "{before:?}\n{}",
        stack.diagnostics()
    );
    assert_eq!(before[1].1, Outcome::Denied, "{before:?}");
    let log_a = stack.server.synced_log();
    let records_a = audit_records(&log_a);
    assert!(records_a.len() >= 7, "{} audit lines", records_a.len());
    assert!(
        records_a.iter().all(|r| r.version == 1),
        "audit lines without audit_version 1"
    );
    let phase_a = dir.join("phase-a.log");
    fs::write(&phase_a, &log_a).unwrap();

    // B as a file of its own, for the tools, then as the server's config (hot reload).
    let config_b = dir.join("b.yml");
    // Same users (hashes) as A: take A's file and swap the ACL.
    let text_a = fs::read_to_string(&stack.server.config).unwrap();
    let head = &text_a[..text_a.find("acl:\n").unwrap()];
    fs::write(&config_b, format!("{head}acl:\n{ACL_B}")).unwrap();

    // acl diff A → B reports gains and losses.
    let diff = run_cli(&[
        "acl",
        "diff",
        "--config",
        &stack.server.config.to_string_lossy(),
        "--config",
        &config_b.to_string_lossy(),
    ]);
    assert!(diff.success(), "{}", diff.describe());
    assert!(
        diff.stdout.contains("loses push") && diff.stdout.contains("gains pull"),
        "{}",
        diff.describe()
    );

    // The prediction.
    let replay = run_cli(&[
        "acl",
        "replay",
        "--config",
        &config_b.to_string_lossy(),
        "--format",
        "json",
        "--fail-on-change",
        &phase_a.to_string_lossy(),
    ]);
    assert_eq!(
        replay.code,
        Some(1),
        "changes expected:\n{}",
        replay.describe()
    );
    let mut predicted = decisions(&records_a);
    let mut changed = 0;
    for line in replay.stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v.get("summary").is_some() {
            assert_eq!(v["summary"]["unreadable"], 0, "{}", replay.describe());
            continue;
        }
        let key = (
            v["account"].as_str().unwrap().to_owned(),
            v["resource"].as_str().unwrap().to_owned(),
            v["requested"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect::<Vec<_>>()
                .join(","),
        );
        let after: Vec<String> = v["after"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        assert!(predicted.contains_key(&key), "{key:?} not in the log");
        predicted.insert(key, after);
        changed += 1;
    }
    assert!(changed >= 4, "{}", replay.describe());

    // Switch the server to B and wait for the reload.
    let len_a = log_a.len();
    let tmp = dir.join("registry-auth.yml.tmp");
    fs::copy(&config_b, &tmp).unwrap();
    fs::rename(&tmp, &stack.server.config).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = fs::read_to_string(&stack.server.log).unwrap();
        if log[len_a..].contains("configuration reloaded") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no reload within 15 s:\n{}",
            stack.server.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Phase B: the same traffic.
    let after = traffic(&stack, a, b);
    assert_eq!(
        after[0].1,
        Outcome::Denied,
        "alice may only pull now: {after:?}"
    );
    assert_eq!(
        after[1].1,
        Outcome::Ok,
        "bob (team dev) pulls alice/* now: {after:?}"
    );
    let log = stack.server.synced_log();
    let actual = decisions(&audit_records(&log[len_a..]));
    let mut compared = 0;
    for (key, granted) in &actual {
        if let Some(p) = predicted.get(key) {
            assert_eq!(
                p, granted,
                "{key:?}: replay predicted {p:?}, the server granted {granted:?}"
            );
            compared += 1;
        }
    }
    // Every decision the replay said would change was made again under B (a client may skip
    // a follow-up request after a denial, e.g. skopeo's pull after a refused push, so unchanged
    // ones need not all come back).
    let original = decisions(&records_a);
    for (key, p) in &predicted {
        if original.get(key) != Some(p) {
            assert!(
                actual.contains_key(key),
                "{key:?} (predicted to change) was not requested again under B: {actual:?}"
            );
        }
    }
    assert!(
        compared >= 9,
        "only {compared} decisions compared: {actual:?}"
    );

    // Replaying B's own traffic under B changes nothing.
    let phase_b = dir.join("phase-b.log");
    fs::write(&phase_b, &log[len_a..]).unwrap();
    let again = run_cli(&[
        "acl",
        "replay",
        "--fail-on-change",
        "--config",
        &config_b.to_string_lossy(),
        &phase_b.to_string_lossy(),
    ]);
    assert!(again.success(), "{}", again.describe());
    assert!(
        again.stdout.contains(" 0 would change"),
        "{}",
        again.describe()
    );

    // acl test: a case that held under A fails under B, naming the deciding entry.
    let cases = dir.join("cases.yaml");
    fs::write(
        &cases,
        format!(
            "defaults: {{service: {SERVICE:?}, ip: 127.0.0.1}}\ncases:\n  - name: alice pushes \
             her namespace\n    account: alice\n    expect:\n      \"repository:alice/app:pull,\
             push\": pull,push\n"
        ),
    )
    .unwrap();
    let ok = run_cli(&[
        "acl",
        "test",
        "--config",
        &phase_config(&dir, &text_a),
        &cases.to_string_lossy(),
    ]);
    assert!(ok.success(), "{}", ok.describe());
    let fail = run_cli(&[
        "acl",
        "test",
        "--config",
        &config_b.to_string_lossy(),
        &cases.to_string_lossy(),
    ]);
    assert_eq!(fail.code, Some(1), "{}", fail.describe());
    assert!(
        fail.stdout.contains("FAIL alice pushes her namespace: repository:alice/app:pull,push: expected pull,push, granted pull (decided by acl[2]:"),
        "{}",
        fail.describe()
    );
    stack.assert_log_secrecy();
}

/// A's config as a file of its own (the server's file is B's now).
fn phase_config(dir: &std::path::Path, text_a: &str) -> String {
    let p = dir.join("a.yml");
    fs::write(&p, text_a).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn example_config_test_cases_pass() {
    let out = run_cli(&[
        "acl",
        "test",
        "--config",
        "config.example.yaml",
        "examples/acl-tests/config.example.tests.yaml",
        "--format",
        "junit",
    ]);
    assert!(out.success(), "{}", out.describe());
    assert!(
        out.stdout
            .contains("failures=\"0\" errors=\"0\" skipped=\"0\"")
            && out.stdout.contains("<testcase"),
        "{}",
        out.describe()
    );
}

/// The worked example of docs/src/access/acl.md (tests/it/docs.rs checks that the page shows
/// these two files as they are) holds.
#[test]
fn worked_example_test_cases_pass() {
    let out = run_cli(&[
        "acl",
        "test",
        "--config",
        "examples/acl-tests/worked.yml",
        "examples/acl-tests/worked.tests.yaml",
    ]);
    assert!(out.success(), "{}", out.describe());
    assert!(
        out.stdout
            .contains("6 cases: 6 passed, 0 failed, 0 invalid, 0 not evaluable offline"),
        "{}",
        out.describe()
    );
}

#[test]
fn a_case_for_a_source_the_config_does_not_have_is_an_error() {
    let tmp = crate::common::stack::tempdir("ra-it-acl-test-source");
    let cases = tmp.path().join("cases.yaml");
    fs::write(
        &cases,
        "cases:\n  - name: a directory user\n    account: carol\n    source: ldap_auth\n    \
         expect: {\"repository:carol/app:pull\": denied}\n  - account: bob\n    source: user\n    \
         expect: {\"repository:bob/app:pull\": denied}\n",
    )
    .unwrap();
    let cases_arg = cases.to_string_lossy().into_owned();
    let out = run_cli(&["acl", "test", "--config", "config.example.yaml", &cases_arg]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(out.stdout.is_empty(), "no case may run: {}", out.describe());
    let configured = "the configured sources are anonymous, users, robots";
    for line in [
        format!(
            "{cases_arg}: cases[0] (\"a directory user\"): source `ldap_auth` is not configured \
             here; {configured}"
        ),
        format!(
            "{cases_arg}: cases[1] (account \"bob\"): source `user` is not a source (did you \
             mean `users`?); {configured}"
        ),
    ] {
        assert!(
            out.stderr.contains(&line),
            "missing {line:?}:\n{}",
            out.describe()
        );
    }
}
