//! Robot accounts end to end: `registry-auth robot create` (the binary) prints a secret once
//! and the YAML with its bcrypt hash; that YAML goes into the config as printed; the robot logs in
//! as `robot$NAME` with skopeo, podman and the docker CLI (the `$` passes through every client
//! unchanged: arguments go to the clients as argv, never through a shell) and is granted the
//! requested scopes ∩ its own scopes. The ACL is not consulted for robots: ACL entries that
//! would let the robot pull or even push `other/*` change nothing. A robot whose `expires` is
//! past is refused by the token server (401) on every client.

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, SystemTime};

use serde_json::json;
use serde_yaml_ng::Value as Yaml;

use crate::common::jwt;
use crate::common::keys::{KeyFiles, KeySetup};
use crate::common::proc::strip_ansi;
use crate::common::registry::RegistryKind;
use crate::common::scenario::{self, steps};
use crate::common::server::run_cli;
use crate::common::stack::{self, ISSUER, SERVICE, Stack, Trust, User, config_yaml};

const CI_SCOPE: &str = "repository:ci/**:pull,push";

/// The ACL for users (first match wins). Entries 1 and 2 would let `robot$ci` push and pull
/// `other/*` if robots went through the ACL; nothing grants `ci/**` to anybody but admin.
const ACL: &str = r#"  - match: {account: admin}
    actions: ["*"]
    comment: admin does everything
  - match: {account: "robot$ci", name: "other/*"}
    actions: ["*"]
    comment: never consulted (robots use their own scopes)
  - match: {name: "other/*"}
    actions: [pull]
    comment: everyone may pull other/*
"#;

/// What `robot create` printed.
#[derive(Debug)]
struct Created {
    secret: String,
    /// The `robots:` block as printed.
    yaml: String,
}

/// Runs `registry-auth robot create NAME ARGS…` and checks its output: a secret, and YAML with
/// a bcrypt hash of that secret (not the secret), `expires` and the scopes.
fn create_robot(name: &str, args: &[&str]) -> Created {
    let mut all = vec!["robot", "create", name];
    all.extend_from_slice(args);
    let out = run_cli(&all);
    let ctx = || out.describe();
    assert!(out.success(), "robot create failed\n{}", ctx());
    let lines: Vec<&str> = out.stdout.lines().collect();
    let after = lines
        .iter()
        .position(|l| l.contains("shown only this once"))
        .unwrap_or_else(|| panic!("no `shown only this once` line\n{}", ctx()));
    let secret = lines[after + 1..]
        .iter()
        .map(|l| l.trim())
        .find(|l| !l.is_empty())
        .unwrap_or_else(|| panic!("no secret after `shown only this once`\n{}", ctx()))
        .to_owned();
    assert!(
        secret.len() >= 32 && !secret.contains(char::is_whitespace),
        "implausible secret {secret:?}\n{}",
        ctx()
    );
    let start = lines
        .iter()
        .position(|l| *l == "robots:")
        .unwrap_or_else(|| panic!("no `robots:` YAML block\n{}", ctx()));
    let block: Vec<&str> = lines[start..]
        .iter()
        .take_while(|l| !l.trim().is_empty())
        .copied()
        .collect();
    let yaml = format!("{}\n", block.join("\n"));
    assert!(
        !yaml.contains(&secret),
        "the YAML holds the secret itself\n{}",
        ctx()
    );
    let doc: Yaml = serde_yaml_ng::from_str(&yaml)
        .unwrap_or_else(|e| panic!("the printed YAML does not parse: {e}\n{}", ctx()));
    let robot = &doc["robots"][name];
    let hash = robot["secret"].as_str().unwrap_or_default();
    assert!(
        bcrypt::verify(&secret, hash).unwrap_or(false),
        "robots.{name}.secret {hash:?} is not a bcrypt hash of the printed secret\n{}",
        ctx()
    );
    let scopes: Vec<&str> = robot["scopes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(Yaml::as_str)
        .collect();
    let wanted: Vec<&str> = args
        .windows(2)
        .filter(|w| w[0] == "--scope")
        .map(|w| w[1])
        .collect();
    assert_eq!(scopes, wanted, "robots.{name}.scopes\n{}", ctx());
    let expires = robot["expires"].as_str().unwrap_or_default();
    assert!(
        humantime::parse_rfc3339(expires).is_ok(),
        "robots.{name}.expires {expires:?} is not RFC 3339\n{}",
        ctx()
    );
    Created { secret, yaml }
}

/// Creates the robots `ci` (a day) and `old` (expired), writes them into a config as printed,
/// checks it, and starts a stack on `trust` with `setup`'s keys.
fn robot_stack(trust: Trust, setup: KeySetup) -> (Stack, Created) {
    // ci: valid for a day (a duration), default bcrypt cost, as an operator would run it.
    let ci = create_robot("ci", &["--scope", CI_SCOPE, "--expires", "1d"]);
    let doc: Yaml = serde_yaml_ng::from_str(&ci.yaml).expect("ci yaml");
    let expires = humantime::parse_rfc3339(doc["robots"]["ci"]["expires"].as_str().unwrap())
        .expect("expires");
    let now = SystemTime::now();
    assert!(
        expires > now + Duration::from_secs(23 * 3600)
            && expires < now + Duration::from_secs(25 * 3600),
        "--expires 1d printed {expires:?}, not about a day from now:\n{}",
        ci.yaml
    );
    // old: expired (an RFC 3339 time in the past).
    let old = create_robot(
        "old",
        &[
            "--scope",
            CI_SCOPE,
            "--expires",
            "2020-01-01T00:00:00Z",
            "--cost",
            "4",
        ],
    );

    let users = [User::new("alice"), User::new("admin")];
    let tmp = stack::tempdir("ra-it-robot");
    let keys = KeyFiles::write(setup, &tmp.path().join("keys"));
    let mut yaml = config_yaml(&keys, &users, true, ACL);
    // Both robots, as printed (the second without its own `robots:` line).
    yaml.push_str(&ci.yaml);
    yaml.push_str(old.yaml.strip_prefix("robots:\n").expect("robots: header"));
    let config = tmp.path().join("registry-auth.yml");
    fs::write(&config, &yaml).expect("write config");
    let check = run_cli(&["check-config", &config.to_string_lossy()]);
    assert!(
        check.success(),
        "check-config refuses the config with the printed robots:\n{yaml}\n{}",
        check.describe()
    );
    let mut secrets: BTreeMap<String, String> = users
        .iter()
        .map(|u| (u.name.clone(), u.password.clone()))
        .collect();
    secrets.insert("robot$ci".to_owned(), ci.secret.clone());
    secrets.insert("robot$old".to_owned(), old.secret.clone());
    let stack = Stack::start_with_config_on(trust, tmp, keys, config, secrets);
    (stack, ci)
}

/// Robots against registry v3 (`x5c`, the CA in its bundle), with skopeo.
#[test]
fn robots_with_skopeo_registry_v3() {
    let (stack, _ci) = robot_stack(Trust::bundle(RegistryKind::V3), KeySetup::EcLeafX5c);
    let table = steps(json!([
        {"name": "admin pushes other/app:v1", "op": "push", "user": "admin", "repo": "other/app", "tag": "v1", "expect": "ok"},
        {"name": "robot$ci pushes ci/team/app:v1", "op": "push", "user": "robot$ci", "repo": "ci/team/app", "tag": "v1", "expect": "ok"},
        {"name": "robot$ci pulls ci/team/app:v1", "op": "pull", "user": "robot$ci", "repo": "ci/team/app", "tag": "v1", "expect": "ok"},
        {"name": "robot$ci lists tags of ci/team/app", "op": "tags", "user": "robot$ci", "repo": "ci/team/app", "expect": "ok", "contains": ["v1"]},
        {"name": "robot$ci pulls other/app:v1 (ACL would allow)", "op": "pull", "user": "robot$ci", "repo": "other/app", "tag": "v1", "expect": "denied"},
        {"name": "robot$ci deletes ci/team/app:v1 (no delete scope)", "op": "delete", "user": "robot$ci", "repo": "ci/team/app", "tag": "v1", "expect": "denied"},
        {"name": "robot$ci, wrong secret, pulls ci/team/app:v1", "op": "pull", "user": "robot$ci", "password": "wrong-secret-r3", "repo": "ci/team/app", "tag": "v1", "expect": "unauthorized"},
        {"name": "robot$old (expired) pulls ci/team/app:v1", "op": "pull", "user": "robot$old", "repo": "ci/team/app", "tag": "v1", "expect": "unauthorized"},
    ]));
    scenario::run(&stack, "robots, registry v3.1.1", &table);
    assert!(
        stack.registry.token_refusals().is_empty(),
        "registry v3 refused tokens:\n{}",
        stack.diagnostics()
    );
    stack.assert_log_secrecy();
}

#[test]
fn robots_with_skopeo_podman_docker() {
    let (stack, ci) = robot_stack(Trust::bundle(RegistryKind::V2), KeySetup::EcKid);
    let table = steps(json!([
        // Users still go through the ACL.
        {"name": "admin pushes other/app:v1", "op": "push", "user": "admin", "repo": "other/app", "tag": "v1", "expect": "ok"},
        {"name": "alice pulls other/app:v1 (ACL: everyone pulls other/*)", "op": "pull", "user": "alice", "repo": "other/app", "tag": "v1", "expect": "ok"},
        {"name": "anonymous pulls other/app:v1", "op": "pull", "user": null, "repo": "other/app", "tag": "v1", "expect": "ok"},
        {"name": "alice pushes ci/app:v0 (no ACL entry)", "op": "push", "user": "alice", "repo": "ci/app", "tag": "v0", "expect": "denied"},

        // robot$ci with skopeo: its scopes, nothing else.
        {"name": "robot$ci pushes ci/app:v1", "op": "push", "user": "robot$ci", "repo": "ci/app", "tag": "v1", "expect": "ok"},
        {"name": "robot$ci pushes ci/team/app:v1 ('**' crosses '/')", "op": "push", "user": "robot$ci", "repo": "ci/team/app", "tag": "v1", "expect": "ok"},
        {"name": "robot$ci pulls ci/app:v1", "op": "pull", "user": "robot$ci", "repo": "ci/app", "tag": "v1", "expect": "ok"},
        {"name": "robot$ci pulls ci/team/app:v1", "op": "pull", "user": "robot$ci", "repo": "ci/team/app", "tag": "v1", "expect": "ok"},
        {"name": "robot$ci lists tags of ci/app", "op": "tags", "user": "robot$ci", "repo": "ci/app", "expect": "ok", "contains": ["v1"]},
        {"name": "robot$ci pulls other/app:v1 (ACL would allow)", "op": "pull", "user": "robot$ci", "repo": "other/app", "tag": "v1", "expect": "denied"},
        {"name": "robot$ci pushes other/app:v2 (ACL would allow)", "op": "push", "user": "robot$ci", "repo": "other/app", "tag": "v2", "expect": "denied"},
        {"name": "robot$ci pushes cix/app:v1 (not under ci/)", "op": "push", "user": "robot$ci", "repo": "cix/app", "tag": "v1", "expect": "denied"},
        {"name": "robot$ci deletes ci/app:v1 (no delete scope)", "op": "delete", "user": "robot$ci", "repo": "ci/app", "tag": "v1", "expect": "denied"},
        {"name": "robot$ci, wrong secret, pulls ci/app:v1", "op": "pull", "user": "robot$ci", "password": "wrong-secret-r1", "repo": "ci/app", "tag": "v1", "expect": "unauthorized"},
        {"name": "robot$nope (unknown robot) pulls ci/app:v1", "op": "pull", "user": "robot$nope", "password": "nope-secret-r2", "repo": "ci/app", "tag": "v1", "expect": "unauthorized"},
        {"name": "robot$ci pushes ci/docker:v1 (v2s2)", "op": "push", "user": "robot$ci", "repo": "ci/docker", "tag": "v1", "format": "v2s2", "expect": "ok"},

        // podman.
        {"name": "podman login robot$ci", "client": "podman", "op": "login", "user": "robot$ci", "expect": "ok"},
        {"name": "podman: robot$ci pushes ci/podman:v1", "client": "podman", "op": "push", "user": "robot$ci", "repo": "ci/podman", "tag": "v1", "expect": "ok"},
        {"name": "podman: robot$ci pulls ci/podman:v1", "client": "podman", "op": "pull", "user": "robot$ci", "repo": "ci/podman", "tag": "v1", "expect": "ok"},
        {"name": "podman: robot$ci pushes other/podman:v1", "client": "podman", "op": "push", "user": "robot$ci", "repo": "other/podman", "tag": "v1", "expect": "denied"},

        // docker CLI (daemonless).
        {"name": "docker login robot$ci", "client": "docker", "op": "login", "user": "robot$ci", "expect": "ok"},
        {"name": "docker: robot$ci manifest inspect ci/docker:v1", "client": "docker", "op": "manifest", "user": "robot$ci", "repo": "ci/docker", "tag": "v1", "expect": "ok"},

        // The expired robot: the token server's 401 on every client.
        {"name": "robot$old (expired) pulls ci/app:v1", "op": "pull", "user": "robot$old", "repo": "ci/app", "tag": "v1", "expect": "unauthorized"},
        {"name": "robot$old (expired) pushes ci/app:old", "op": "push", "user": "robot$old", "repo": "ci/app", "tag": "old", "expect": "unauthorized"},
        {"name": "http: robot$old (expired) token", "op": "token", "user": "robot$old", "scope": ["repository:ci/app:pull"], "expect": "unauthorized"},
        {"name": "docker login robot$old (expired)", "client": "docker", "op": "login", "user": "robot$old", "expect": "unauthorized"},
        {"name": "podman login robot$old (expired)", "client": "podman", "op": "login", "user": "robot$old", "expect": "unauthorized"},
    ]));
    scenario::run(&stack, "robots", &table);

    // The grant itself: requested ∩ the robot's scopes, decided by the robot's scopes.
    let scopes = [
        "repository:ci/app:pull,push,delete",
        "repository:ci/team/app:pull",
        "repository:other/app:pull,push",
    ];
    let tr = scenario::token(&stack, Some(("robot$ci", &ci.secret)), &scopes);
    let ctx = || {
        format!(
            "GET {}\n  {:?}\n{}",
            tr.url,
            tr.response,
            stack.diagnostics()
        )
    };
    assert_eq!(tr.response.status, 200, "robot token\n{}", ctx());
    let tok = tr.token.clone().expect("token");
    let body = tr.response.json();
    let problems = jwt::lint(&body, &tok, SERVICE, ISSUER, &scopes, &stack.keys.bundle);
    assert!(problems.is_empty(), "{problems:?}\n{}", ctx());
    let claims = jwt::decode(&tok).expect("decode").claims;
    assert_eq!(claims["sub"], "robot$ci", "sub\n{}", ctx());
    let granted = jwt::granted(&claims);
    let acts = |name: &str| -> Vec<String> {
        granted
            .get(&("repository".to_owned(), name.to_owned()))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(acts("ci/app"), ["pull", "push"], "ci/app\n{}", ctx());
    assert_eq!(acts("ci/team/app"), ["pull"], "ci/team/app\n{}", ctx());
    assert!(acts("other/app").is_empty(), "other/app\n{}", ctx());
    // Written by the server's log thread just after the answer: waited for.
    let line = crate::ops::wait_line(
        || strip_ansi(&fs::read_to_string(&stack.server.log).unwrap_or_default()),
        |log| {
            log.lines()
                .rev()
                .find(|l| l.contains("token issued") && l.contains("other/app:pull,push"))
                .map(str::to_owned)
        },
    )
    .unwrap_or_else(|| panic!("no `token issued` line for the robot token\n{}", ctx()));
    assert!(
        line.contains("[robot scopes]") && !line.contains("[acl"),
        "the robot's grant must be decided by its scopes, never the ACL: {line}"
    );

    stack.assert_log_secrecy();
}
