//! `casbin_authz` end to end through the real binary: a model and a policy file written here,
//! docker_auth's request shape (`account, type, name, service, ip, action, labels`), roles
//! (`g`), `ipMatch`, `labelMatch` on JSON labels in the policy, the allowed subset of the
//! requested actions granted. Casbin alone (no `acl`: docker_auth refused that), and after the
//! static `acl` (the ACL decides what it matches, Casbin the rest). Editing the policy file
//! reloads the configuration.

use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::http::fetch_token;
use crate::common::jwt;
use crate::common::keys::{KeyFiles, KeySetup, bcrypt_hash, yaml_str};
use crate::common::server::AuthServer;
use crate::common::stack::{ISSUER, SERVICE, tempdir};

const MODEL: &str = r#"# docker_auth's request: Enforce(account, type, name, service, ip, action, labels)
[request_definition]
r = account, type, name, service, ip, action, labels

[policy_definition]
p = account, type, name, service, ip, action, labels

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.account, p.account) && r.type == p.type && keyMatch(r.name, p.name) && r.service == p.service && ipMatch(r.ip, p.ip) && r.action == p.action && labelMatch(r.labels, p.labels)
"#;

/// `Docker registry` is the test service; 127.0.0.1 is where the test's requests come from.
const POLICY: &str = r#"p, alice, repository, alice/*, Docker registry, 127.0.0.0/8, pull, "{}"
p, alice, repository, alice/*, Docker registry, 127.0.0.0/8, push, "{}"
p, devs, repository, team/*, Docker registry, 127.0.0.1, pull, "{""team"":[""dev""]}"
p, devs, repository, team/*, Docker registry, 10.0.0.0/8, push, "{""team"":[""dev""]}"
p, ops, repository, team/*, Docker registry, 127.0.0.1, push, "{""team"":[""dev"",""ops""]}"
g, bob, devs
g, carol, devs
g, carol, ops
"#;

fn write_config(dir: &Path, acl: &str) -> std::path::PathBuf {
    let keys = KeyFiles::write(KeySetup::EcKid, &dir.join("keys"));
    fs::write(dir.join("model.conf"), MODEL).unwrap();
    fs::write(dir.join("policy.csv"), POLICY).unwrap();
    let mut users = String::new();
    for (name, labels) in [
        ("alice", "{}"),
        ("bob", "{team: [dev]}"),
        ("carol", "{team: [dev, ops]}"),
    ] {
        users.push_str(&format!(
            "  {name}: {{password: {}, labels: {labels}}}\n",
            yaml_str(&bcrypt_hash(&format!("{name}-pass")))
        ));
    }
    let yaml = format!(
        "server:\n  addr: \"127.0.0.1:0\"\ntoken:\n  issuer: {}\n{}users:\n{users}{acl}\
         casbin_authz:\n  model_path: model.conf\n  policy_path: policy.csv\n",
        yaml_str(ISSUER),
        keys.token_yaml()
    );
    let path = dir.join("config.yml");
    fs::write(&path, yaml).unwrap();
    path
}

fn granted(srv: &AuthServer, user: &str, scope: &str) -> Vec<String> {
    let password = format!("{user}-pass");
    let tr = fetch_token(
        &srv.realm(),
        Some(SERVICE),
        &[scope],
        Some((user, &password)),
        &[],
    );
    let token = tr
        .token
        .unwrap_or_else(|| panic!("{user} {scope}: {:?}\n{}", tr.response, srv.log_tail(20)));
    let claims = jwt::decode(&token).unwrap().claims;
    claims["access"][0]["actions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn casbin_alone_decides_each_action() {
    let dir = tempdir("ra-it-casbin-");
    let config = write_config(dir.path(), "");
    let srv = AuthServer::start(&config, &dir.path().join("server.log"));
    assert_eq!(
        granted(&srv, "alice", "repository:alice/app:pull,push,delete"),
        ["pull", "push"]
    );
    assert!(granted(&srv, "alice", "repository:team/app:pull").is_empty());
    // bob is in `devs` (g) and has team=dev: pull from 127.0.0.1; push only from 10/8.
    assert_eq!(
        granted(&srv, "bob", "repository:team/app:pull,push"),
        ["pull"]
    );
    // carol is in `devs` and `ops` with team=[dev, ops]: the ops line's labels are a subset.
    assert_eq!(
        granted(&srv, "carol", "repository:team/app:pull,push"),
        ["pull", "push"]
    );
    // Editing the policy reloads the configuration.
    let policy = dir.path().join("policy.csv");
    fs::write(
        &policy,
        format!("{POLICY}p, alice, repository, team/*, Docker registry, 127.0.0.1, pull, \"\"\n"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while granted(&srv, "alice", "repository:team/app:pull").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the policy change was not picked up\n{}",
            srv.log_tail(20)
        );
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn casbin_after_the_acl() {
    let dir = tempdir("ra-it-casbin-acl-");
    // The ACL decides alice/* (read-only here, though Casbin would allow push) and says nothing
    // about the rest, which Casbin decides.
    let config = write_config(
        dir.path(),
        "acl:\n  - match: {name: \"alice/*\"}\n    actions: [pull]\n",
    );
    let srv = AuthServer::start(&config, &dir.path().join("server.log"));
    assert_eq!(
        granted(&srv, "alice", "repository:alice/app:pull,push"),
        ["pull"]
    );
    assert_eq!(
        granted(&srv, "carol", "repository:team/app:pull,push"),
        ["pull", "push"]
    );
    assert!(
        srv.log_tail(200).contains("[casbin_authz]"),
        "the audit log names Casbin\n{}",
        srv.log_tail(20)
    );
}
