//! Scenario 1: the ACL as seen by real clients. One stack (server + registry) per client family
//! so the three tests run in parallel:
//! * admin (`*`), alice (pull/push/delete on `alice/*` only; `*` does not cross `/`), carol
//!   (`carol/**`, which does), reader (pull on every repository), anonymous (pull `public/*`),
//!   and wrong or unknown credentials (the token server's 401);
//! * skopeo (push, pull, delete, list-tags, inspect) and raw HTTP (token, catalog, tags);
//! * podman (login, push, pull);
//! * the docker CLI without a daemon (login, manifest inspect), then a private dockerd (login,
//!   pull, push).
//!
//! Every test ends with the log secrecy check on the server's trace-level log.

use serde_json::json;

use crate::common::keys::KeySetup;
use crate::common::scenario::{self, steps};
use crate::common::stack::{Stack, User};

const ACL: &str = r#"  - match: {account: admin}
    actions: ["*"]
    comment: admin may do everything, including registry:catalog:*
  - match: {account: alice, name: "alice/*"}
    actions: [pull, push, delete]
  - match: {account: carol, name: "carol/**"}
    actions: [pull, push, delete]
  - match: {account: reader, type: repository}
    actions: [pull]
  - match: {account: "", name: "public/*"}
    actions: [pull]
    comment: anonymous may pull public/*
"#;

fn users() -> Vec<User> {
    ["admin", "alice", "carol", "reader"]
        .iter()
        .map(|u| User::new(u))
        .collect()
}

fn start() -> Stack {
    Stack::start(KeySetup::EcKid, &users(), true, ACL)
}

#[test]
fn skopeo_and_http() {
    let stack = start();
    let table = steps(json!([
        // The token endpoint itself.
        {"name": "token: admin, right password", "op": "token", "user": "admin", "scope": ["repository:alice/app:pull"], "expect": "ok"},
        {"name": "token: alice, wrong password", "op": "token", "user": "alice", "password": "wrong-password-1", "scope": ["repository:alice/app:pull"], "expect": "unauthorized"},
        {"name": "token: unknown user", "op": "token", "user": "mallory", "password": "mallory-pw", "scope": [], "expect": "unauthorized"},
        {"name": "token: known user, empty password", "op": "token", "user": "alice", "password": "", "scope": [], "expect": "unauthorized"},
        {"name": "token: anonymous", "op": "token", "user": null, "scope": ["repository:public/base:pull"], "expect": "ok"},
        {"name": "token lint: alice pull,push on alice/app", "op": "token_lint", "user": "alice", "scope": ["repository:alice/app:pull,push"], "expect": "ok"},
        {"name": "token lint: admin catalog", "op": "token_lint", "user": "admin", "scope": ["registry:catalog:*"], "expect": "ok"},
        {"name": "token lint: reader asks pull,push,delete", "op": "token_lint", "user": "reader", "scope": ["repository:alice/app:pull,push,delete"], "expect": "ok"},
        {"name": "token lint: duplicate scopes are merged", "op": "token_lint", "user": "alice", "scope": ["repository:alice/app:pull", "repository:alice/app:pull", "repository:alice/app:push"], "expect": "ok"},
        {"name": "GET /v2/ as alice", "op": "base", "user": "alice", "expect": "ok"},
        {"name": "GET /v2/ anonymous", "op": "base", "user": null, "expect": "ok"},
        {"name": "GET /v2/ wrong password", "op": "base", "user": "alice", "password": "wrong-password-2", "expect": "unauthorized"},

        // admin: everything.
        {"name": "admin pushes public/base:1.0", "op": "push", "user": "admin", "repo": "public/base", "tag": "1.0", "expect": "ok"},
        {"name": "admin pushes bob/x:v1", "op": "push", "user": "admin", "repo": "bob/x", "tag": "v1", "expect": "ok"},
        {"name": "admin inspects bob/x:v1", "op": "inspect", "user": "admin", "repo": "bob/x", "tag": "v1", "expect": "ok"},

        // alice: her namespace only, one level deep.
        {"name": "alice pushes alice/app:v1", "op": "push", "user": "alice", "repo": "alice/app", "tag": "v1", "expect": "ok"},
        {"name": "alice pushes alice/app:v2", "op": "push", "user": "alice", "repo": "alice/app", "tag": "v2", "expect": "ok"},
        {"name": "alice pulls alice/app:v1", "op": "pull", "user": "alice", "repo": "alice/app", "tag": "v1", "expect": "ok"},
        {"name": "alice lists tags of alice/app", "op": "tags", "user": "alice", "repo": "alice/app", "expect": "ok", "contains": ["v1", "v2"]},
        {"name": "alice pushes bob/x:v2", "op": "push", "user": "alice", "repo": "bob/x", "tag": "v2", "expect": "denied"},
        {"name": "alice pulls bob/x:v1", "op": "pull", "user": "alice", "repo": "bob/x", "tag": "v1", "expect": "denied"},
        {"name": "alice pushes alice/a/b ('*' stops at '/')", "op": "push", "user": "alice", "repo": "alice/a/b", "tag": "v1", "expect": "denied"},
        {"name": "alice pushes public/base:alice", "op": "push", "user": "alice", "repo": "public/base", "tag": "alice", "expect": "denied"},

        // carol: `carol/**` crosses '/'.
        {"name": "carol pushes carol/a/b:v1 ('**' crosses '/')", "op": "push", "user": "carol", "repo": "carol/a/b", "tag": "v1", "expect": "ok"},
        {"name": "carol pulls carol/a/b:v1", "op": "pull", "user": "carol", "repo": "carol/a/b", "tag": "v1", "expect": "ok"},
        {"name": "carol pushes carol/app:v1", "op": "push", "user": "carol", "repo": "carol/app", "tag": "v1", "expect": "ok"},
        {"name": "carol pulls alice/app:v1", "op": "pull", "user": "carol", "repo": "alice/app", "tag": "v1", "expect": "denied"},

        // reader: pull everything, nothing else.
        {"name": "reader pulls alice/app:v1", "op": "pull", "user": "reader", "repo": "alice/app", "tag": "v1", "expect": "ok"},
        {"name": "reader pulls bob/x:v1", "op": "pull", "user": "reader", "repo": "bob/x", "tag": "v1", "expect": "ok"},
        {"name": "reader lists tags of alice/app", "op": "tags", "user": "reader", "repo": "alice/app", "expect": "ok", "contains": ["v1"]},
        {"name": "reader pushes alice/app:v3", "op": "push", "user": "reader", "repo": "alice/app", "tag": "v3", "expect": "denied"},
        {"name": "reader pushes reader/own:v1", "op": "push", "user": "reader", "repo": "reader/own", "tag": "v1", "expect": "denied"},

        // anonymous: pull public/* only.
        {"name": "anonymous pulls public/base:1.0", "op": "pull", "user": null, "repo": "public/base", "tag": "1.0", "expect": "ok"},
        {"name": "anonymous lists tags of public/base", "op": "tags", "user": null, "repo": "public/base", "expect": "ok", "contains": ["1.0"]},
        {"name": "anonymous pulls alice/app:v1", "op": "pull", "user": null, "repo": "alice/app", "tag": "v1", "expect": "denied"},
        {"name": "anonymous lists tags of alice/app", "op": "tags", "user": null, "repo": "alice/app", "expect": "denied"},
        {"name": "anonymous pushes public/base:anon", "op": "push", "user": null, "repo": "public/base", "tag": "anon", "expect": "denied"},
        {"name": "anonymous pushes anon/x:v1", "op": "push", "user": null, "repo": "anon/x", "tag": "v1", "expect": "denied"},

        // Wrong password / unknown user: the token server's 401, whatever the operation.
        {"name": "alice, wrong password, pushes alice/app:v9", "op": "push", "user": "alice", "password": "wrong-password-3", "repo": "alice/app", "tag": "v9", "expect": "unauthorized"},
        {"name": "alice, wrong password, pulls alice/app:v1", "op": "pull", "user": "alice", "password": "wrong-password-4", "repo": "alice/app", "tag": "v1", "expect": "unauthorized"},
        {"name": "alice, wrong password, lists tags", "op": "tags", "user": "alice", "password": "wrong-password-5", "repo": "alice/app", "expect": "unauthorized"},
        {"name": "alice, wrong password, deletes alice/app:v2", "op": "delete", "user": "alice", "password": "wrong-password-6", "repo": "alice/app", "tag": "v2", "expect": "unauthorized"},
        {"name": "unknown user pulls public/base:1.0", "op": "pull", "user": "mallory", "password": "mallory-pw", "repo": "public/base", "tag": "1.0", "expect": "unauthorized"},

        // Raw HTTP: catalog needs registry:catalog:* (admin only), tags need pull.
        {"name": "http: admin catalog", "op": "catalog", "user": "admin", "expect": "ok", "contains": ["alice/app", "bob/x", "carol/a/b", "public/base"]},
        {"name": "http: alice catalog", "op": "catalog", "user": "alice", "expect": "denied"},
        {"name": "http: reader catalog", "op": "catalog", "user": "reader", "expect": "denied"},
        {"name": "http: anonymous catalog", "op": "catalog", "user": null, "expect": "denied"},
        {"name": "http: reader tags/list alice/app", "op": "tags", "client": "http", "user": "reader", "repo": "alice/app", "expect": "ok", "contains": ["v1", "v2"]},
        {"name": "http: anonymous tags/list alice/app", "op": "tags", "client": "http", "user": null, "repo": "alice/app", "expect": "denied"},
        {"name": "http: anonymous tags/list public/base", "op": "tags", "client": "http", "user": null, "repo": "public/base", "expect": "ok", "contains": ["1.0"]},
        {"name": "http: alice, wrong password, tags/list", "op": "tags", "client": "http", "user": "alice", "password": "wrong-password-7", "repo": "alice/app", "expect": "unauthorized"},

        // Deletes (skopeo asks for repository:R:* first, then retries with delete).
        {"name": "reader deletes alice/app:v1", "op": "delete", "user": "reader", "repo": "alice/app", "tag": "v1", "expect": "denied"},
        {"name": "alice deletes bob/x:v1", "op": "delete", "user": "alice", "repo": "bob/x", "tag": "v1", "expect": "denied"},
        {"name": "anonymous deletes public/base:1.0", "op": "delete", "user": null, "repo": "public/base", "tag": "1.0", "expect": "denied"},
        {"name": "alice deletes alice/app:v1", "op": "delete", "user": "alice", "repo": "alice/app", "tag": "v1", "expect": "ok"},
        {"name": "alice pulls the deleted alice/app:v1", "op": "pull", "user": "alice", "repo": "alice/app", "tag": "v1", "expect": "notfound"},
        {"name": "carol deletes carol/a/b:v1", "op": "delete", "user": "carol", "repo": "carol/a/b", "tag": "v1", "expect": "ok"},
        {"name": "admin deletes bob/x:v1", "op": "delete", "user": "admin", "repo": "bob/x", "tag": "v1", "expect": "ok"},
    ]));
    scenario::run(&stack, "skopeo + http ACL matrix", &table);
    stack.assert_log_secrecy();
}

#[test]
fn podman() {
    let stack = start();
    let table = steps(json!([
        {"name": "login alice", "client": "podman", "op": "login", "user": "alice", "expect": "ok"},
        {"name": "login alice, wrong password", "client": "podman", "op": "login", "user": "alice", "password": "wrong-password-p1", "expect": "unauthorized"},
        {"name": "login unknown user", "client": "podman", "op": "login", "user": "mallory", "password": "mallory-pw", "expect": "unauthorized"},
        {"name": "alice pushes alice/podman:v1", "client": "podman", "op": "push", "user": "alice", "repo": "alice/podman", "tag": "v1", "expect": "ok"},
        {"name": "alice pulls alice/podman:v1", "client": "podman", "op": "pull", "user": "alice", "repo": "alice/podman", "tag": "v1", "expect": "ok"},
        {"name": "alice pushes bob/podman:v1", "client": "podman", "op": "push", "user": "alice", "repo": "bob/podman", "tag": "v1", "expect": "denied"},
        {"name": "alice pushes alice/a/b:v1", "client": "podman", "op": "push", "user": "alice", "repo": "alice/a/b", "tag": "v1", "expect": "denied"},
        {"name": "carol pushes carol/x/y:v1", "client": "podman", "op": "push", "user": "carol", "repo": "carol/x/y", "tag": "v1", "expect": "ok"},
        {"name": "reader pulls alice/podman:v1", "client": "podman", "op": "pull", "user": "reader", "repo": "alice/podman", "tag": "v1", "expect": "ok"},
        {"name": "reader pushes alice/podman:v2", "client": "podman", "op": "push", "user": "reader", "repo": "alice/podman", "tag": "v2", "expect": "denied"},
        {"name": "admin pushes public/podman:v1", "client": "podman", "op": "push", "user": "admin", "repo": "public/podman", "tag": "v1", "expect": "ok"},
        {"name": "anonymous pulls public/podman:v1", "client": "podman", "op": "pull", "user": null, "repo": "public/podman", "tag": "v1", "expect": "ok"},
        {"name": "anonymous pulls alice/podman:v1", "client": "podman", "op": "pull", "user": null, "repo": "alice/podman", "tag": "v1", "expect": "denied"},
        {"name": "anonymous pushes public/podman:v2", "client": "podman", "op": "push", "user": null, "repo": "public/podman", "tag": "v2", "expect": "denied"},
        {"name": "alice, wrong password, pushes alice/podman:v3", "client": "podman", "op": "push", "user": "alice", "password": "wrong-password-p2", "repo": "alice/podman", "tag": "v3", "expect": "unauthorized"},
    ]));
    scenario::run(&stack, "podman ACL matrix", &table);
    stack.assert_log_secrecy();
}

#[test]
fn docker_cli_and_daemon() {
    let mut stack = start();
    // Seed with Docker schema 2 images (what `docker pull` handles everywhere).
    let seed = steps(json!([
        {"name": "seed: alice pushes alice/docker:v1 (v2s2)", "op": "push", "user": "alice", "repo": "alice/docker", "tag": "v1", "format": "v2s2", "expect": "ok"},
        {"name": "seed: admin pushes public/docker:v1 (v2s2)", "op": "push", "user": "admin", "repo": "public/docker", "tag": "v1", "format": "v2s2", "expect": "ok"},
    ]));
    scenario::run(&stack, "docker: seed images", &seed);

    // Without a daemon: the CLI logs in by itself and reads manifests itself.
    let daemonless = steps(json!([
        {"name": "docker login alice (no daemon)", "client": "docker", "op": "login", "user": "alice", "expect": "ok"},
        {"name": "docker login alice, wrong password (no daemon)", "client": "docker", "op": "login", "user": "alice", "password": "wrong-password-d1", "expect": "unauthorized"},
        {"name": "docker login unknown user (no daemon)", "client": "docker", "op": "login", "user": "mallory", "password": "mallory-pw", "expect": "unauthorized"},
        {"name": "docker login reader (no daemon)", "client": "docker", "op": "login", "user": "reader", "expect": "ok"},
        {"name": "reader: manifest inspect alice/docker:v1", "client": "docker", "op": "manifest", "user": "reader", "repo": "alice/docker", "tag": "v1", "expect": "ok"},
        {"name": "alice: manifest inspect alice/docker:v1", "client": "docker", "op": "manifest", "user": "alice", "repo": "alice/docker", "tag": "v1", "expect": "ok"},
        {"name": "carol: manifest inspect alice/docker:v1", "client": "docker", "op": "manifest", "user": "carol", "repo": "alice/docker", "tag": "v1", "expect": "denied"},
        {"name": "anonymous: manifest inspect alice/docker:v1", "client": "docker", "op": "manifest", "user": null, "repo": "alice/docker", "tag": "v1", "expect": "denied"},
        {"name": "anonymous: manifest inspect public/docker:v1", "client": "docker", "op": "manifest", "user": null, "repo": "public/docker", "tag": "v1", "expect": "ok"},
    ]));
    scenario::run(&stack, "docker CLI without daemon", &daemonless);

    // Through a private dockerd: the daemon does the login and the token flow.
    stack.clients.use_dockerd();
    let daemon = steps(json!([
        {"name": "dockerd: login alice, wrong password", "client": "docker", "op": "login", "user": "alice", "password": "wrong-password-d2", "expect": "unauthorized"},
        {"name": "dockerd: login alice", "client": "docker", "op": "login", "user": "alice", "expect": "ok"},
        {"name": "dockerd: alice pulls alice/docker:v1", "client": "docker", "op": "pull", "user": "alice", "repo": "alice/docker", "tag": "v1", "expect": "ok"},
        {"name": "dockerd: alice pushes alice/docker:v2", "client": "docker", "op": "push", "user": "alice", "from": "alice/docker:v1", "repo": "alice/docker", "tag": "v2", "expect": "ok"},
        {"name": "dockerd: alice pushes bob/docker:v1", "client": "docker", "op": "push", "user": "alice", "from": "alice/docker:v1", "repo": "bob/docker", "tag": "v1", "expect": "denied"},
        {"name": "dockerd: alice pushes alice/a/b:v1", "client": "docker", "op": "push", "user": "alice", "from": "alice/docker:v1", "repo": "alice/a/b", "tag": "v1", "expect": "denied"},
        {"name": "dockerd: carol pushes carol/d/e:v1", "client": "docker", "op": "push", "user": "carol", "from": "alice/docker:v1", "repo": "carol/d/e", "tag": "v1", "expect": "ok"},
        {"name": "dockerd: reader pulls alice/docker:v2", "client": "docker", "op": "pull", "user": "reader", "repo": "alice/docker", "tag": "v2", "expect": "ok"},
        {"name": "dockerd: reader pushes alice/docker:v3", "client": "docker", "op": "push", "user": "reader", "from": "alice/docker:v1", "repo": "alice/docker", "tag": "v3", "expect": "denied"},
        {"name": "dockerd: anonymous pulls alice/docker:v1", "client": "docker", "op": "pull", "user": null, "repo": "alice/docker", "tag": "v1", "expect": "denied"},
        {"name": "dockerd: anonymous pulls public/docker:v1", "client": "docker", "op": "pull", "user": null, "repo": "public/docker", "tag": "v1", "expect": "ok"},
        {"name": "dockerd: anonymous pushes public/docker:anon", "client": "docker", "op": "push", "user": null, "from": "public/docker:v1", "repo": "public/docker", "tag": "anon", "expect": "denied"},
        {"name": "dockerd: admin pushes public/docker:v2", "client": "docker", "op": "push", "user": "admin", "from": "alice/docker:v1", "repo": "public/docker", "tag": "v2", "expect": "ok"},
    ]));
    scenario::run(&stack, "docker through dockerd", &daemon);
    stack.assert_log_secrecy();
}
