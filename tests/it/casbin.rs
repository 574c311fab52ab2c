//! `casbin_authz` end to end through the real binary: a model and a policy file written here,
//! docker_auth's request shape (`account, type, name, service, ip, action, labels`), roles
//! (`g`), `ipMatch`, `labelMatch` on JSON labels in the policy, the allowed subset of the
//! requested actions granted. Casbin alone (no `acl`: docker_auth refused that), and after the
//! static `acl` (the ACL decides what it matches, Casbin the rest). Editing the policy file
//! reloads the configuration. The work an anonymous request causes is bounded (counted with
//! `registry_auth_casbin_enforcements_total`, not timed), and `check-config` warns about a user
//! named like a role.

use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::http::{self, fetch_token};
use crate::common::jwt;
use crate::common::keys::{KeyFiles, KeySetup, bcrypt_hash, yaml_str};
use crate::common::server::{AuthServer, run_cli};
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
        srv.log_when(|t| t.contains("[casbin_authz]"))
            .contains("[casbin_authz]"),
        "the audit log names Casbin\n{}",
        srv.log_tail(20)
    );
}

// ------------------------------------------------------------------ work an anonymous request causes

/// The process's Casbin enforcements so far (`registry_auth_casbin_enforcements_total`).
fn enforcements(srv: &AuthServer) -> u64 {
    let r = http::get(&format!("http://{}/metrics", srv.addr), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix("registry_auth_casbin_enforcements_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| {
            panic!(
                "no registry_auth_casbin_enforcements_total in\n{}",
                r.text()
            )
        })
}

/// `n` distinct made-up actions (`aaa`, `aab`, …): three-letter words no policy names.
fn made_up(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let l = |k: usize| char::from(b'a' + u8::try_from(k % 26).unwrap());
            format!("{}{}{}", l(i / 676), l(i / 26), l(i))
        })
        .collect()
}

/// An anonymous `GET /auth` for one scope, its `,` and `:` left as they are (a 14 KB URL for
/// 3,500 actions).
fn anonymous_raw(srv: &AuthServer, scope: &str) -> http::Response {
    http::get(
        &format!(
            "{}?service={}&scope={scope}",
            srv.realm(),
            http::urlencode(SERVICE)
        ),
        &[],
    )
}

/// A server with Casbin alone, a 500-line policy plus anonymous pulls of `public/*`, and
/// `model` as the model.
fn big_policy_server(dir: &Path, model: &str) -> AuthServer {
    let config = write_config(dir, "");
    let mut policy = String::from(POLICY);
    for i in 0..500 {
        policy.push_str(&format!(
            "p, user{i}, repository, u{i}/*, Docker registry, 127.0.0.0/8, pull, \"{{}}\"\n"
        ));
    }
    policy.push_str("p, , repository, public/*, Docker registry, 127.0.0.0/8, pull, \"{}\"\n");
    fs::write(dir.join("policy.csv"), policy).unwrap();
    fs::write(dir.join("model.conf"), model).unwrap();
    let yaml = fs::read_to_string(&config)
        .unwrap()
        .replace("users:\n", "users:\n  \"\": {}\n");
    fs::write(&config, yaml).unwrap();
    AuthServer::start(&config, &dir.join("server.log"))
}

fn anonymous(srv: &AuthServer, scopes: &[&str]) -> crate::common::http::TokenResponse {
    fetch_token(&srv.realm(), Some(SERVICE), scopes, None, &[])
}

fn anonymous_grants(srv: &AuthServer, scopes: &[&str]) -> Vec<Vec<String>> {
    let tr = anonymous(srv, scopes);
    let token = tr
        .token
        .unwrap_or_else(|| panic!("{:?}\n{}", tr.response, srv.log_tail(20)));
    let claims = jwt::decode(&token).unwrap().claims;
    claims["access"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            a["actions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn casbin_work_per_anonymous_request_is_bounded() {
    let dir = tempdir("ra-it-casbin-work-");
    let srv = big_policy_server(dir.path(), MODEL);
    let before = enforcements(&srv);

    // 3,500 made-up actions in one 14 KB request: refused before Casbin, naming the limit, in
    // the GET and the OAuth2 POST shapes.
    let hostile = format!("repository:public/app:{}", made_up(3500).join(","));
    let r = anonymous_raw(&srv, &hostile);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.text().contains("at most 16 distinct actions"), "{r:?}");
    let form = format!(
        "grant_type=password&username=alice&password=alice-pass&client_id=it&service={}&scope={}",
        http::urlencode(SERVICE),
        http::urlencode(&hostile)
    );
    let r = http::post_raw_form(&srv.realm(), &form);
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.json()["error"], "invalid_scope", "{r:?}");
    // More than 64 actions over all scopes.
    let many: Vec<String> = (0..65)
        .map(|i| format!("repository:public/r{i}:pull"))
        .collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let tr = anonymous(&srv, &refs);
    assert_eq!(tr.response.status, 400, "{:?}", tr.response);
    assert!(
        tr.response.text().contains("at most 64"),
        "{:?}",
        tr.response
    );
    assert_eq!(
        enforcements(&srv),
        before,
        "refused requests ran no enforcement"
    );

    // Within the limits, actions the policy never names are denied without running the model:
    // one enforcement (pull) for sixteen actions.
    let mut actions = made_up(15);
    actions.push("pull".into());
    let scope = format!("repository:public/app:{}", actions.join(","));
    assert_eq!(anonymous_grants(&srv, &[&scope]), [["pull"]]);
    assert_eq!(enforcements(&srv), before + 1);

    // The most a request can cost (64 grantable actions), 32 at once, next to an unrelated
    // anonymous pull: the pull is served, and the hostile requests ran exactly their 64
    // enforcements each (the refused ones none).
    let before = enforcements(&srv);
    let realm = srv.realm();
    let hostile_max: Vec<String> = (0..64)
        .map(|i| format!("repository:public/h{i}:pull"))
        .collect();
    let workers: Vec<_> = (0..32)
        .map(|i| {
            let realm = realm.clone();
            let scopes = hostile_max.clone();
            let hostile = hostile.clone();
            thread::spawn(move || {
                if i % 2 == 0 {
                    let refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
                    fetch_token(&realm, Some(SERVICE), &refs, None, &[])
                        .response
                        .status
                } else {
                    let url = format!(
                        "{realm}?service={}&scope={hostile}",
                        http::urlencode(SERVICE)
                    );
                    http::get(&url, &[]).status
                }
            })
        })
        .collect();
    assert_eq!(
        anonymous_grants(&srv, &["repository:public/app:pull"]),
        [["pull"]]
    );
    let statuses: Vec<u16> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        16,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        16,
        "{statuses:?}"
    );
    assert_eq!(enforcements(&srv), before + 16 * 64 + 1);
}

#[test]
fn casbin_matching_any_action_is_still_capped() {
    // keyMatch on the action: the policy's `*` matches any action, so nothing can be filtered
    // and every action within the limits is enforced.
    let dir = tempdir("ra-it-casbin-any-");
    let model = MODEL.replace("r.action == p.action", "keyMatch(r.action, p.action)");
    let srv = big_policy_server(dir.path(), &model);
    let before = enforcements(&srv);
    let scope = format!("repository:public/app:{}", made_up(16).join(","));
    assert_eq!(anonymous_grants(&srv, &[&scope]), [Vec::<String>::new()]);
    assert_eq!(enforcements(&srv), before + 16);
    let scope = format!("repository:public/app:{}", made_up(17).join(","));
    assert_eq!(anonymous(&srv, &[&scope]).response.status, 400);
    assert_eq!(enforcements(&srv), before + 16);
}

#[test]
fn check_config_warns_about_a_user_named_like_a_role() {
    let dir = tempdir("ra-it-casbin-roles-");
    let config = write_config(dir.path(), "");
    // `devs` is a role (g, bob, devs); a user called `devs` would get it.
    let yaml = fs::read_to_string(&config).unwrap().replace(
        "users:\n",
        &format!(
            "users:\n  devs: {{password: {}, labels: {{team: [dev]}}}}\n",
            yaml_str(&bcrypt_hash("devs-pass"))
        ),
    );
    fs::write(&config, yaml).unwrap();
    let out = run_cli(&["check-config", &config.to_string_lossy()]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("warning: casbin_authz.policy_path")
            && out.stdout.contains("\"devs\" is also a user"),
        "{out:?}"
    );
    // And it does get the role's permissions.
    let srv = AuthServer::start(&config, &dir.path().join("server.log"));
    assert_eq!(granted(&srv, "devs", "repository:team/app:pull"), ["pull"]);
}
