//! One account name space across sources (docs/src/security/identity.md): a principal is
//! its source and its account there, through `registry-auth serve` with a real `slapd` and the
//! fake GitHub (real web login walk, minted passwords):
//!
//! * `ldap_auth` and `github_auth` together: GitHub's `alice` is not the directory's `alice`.
//!   An ACL entry `{account: alice}` (no `source`) is the directory's only; the GitHub login's
//!   token says `sub: github_auth:alice` and the audit line `source=github_auth`; an entry with
//!   `source: github_auth` reaches it. `check-config` warns about the ambiguous entry;
//!   `logins list` shows, and `logins revoke --user github_auth:alice` revokes, that login.
//! * docker_auth's usual layout (static `users` for CI plus `github_auth`, no open password
//!   source): GitHub names keep matching entries without `source` (`sub: alice`), except a
//!   GitHub user named like a static user, who never gets that user's entries.

use std::fs;
use std::path::Path;

use crate::common::http;
use crate::common::idp::{FakeGithub, GhUser};
use crate::common::jwt;
use crate::common::keys::{bcrypt_hash, yaml_str};
use crate::common::server::{assert_log_has_no_secrets, run_cli};
use crate::common::stack::{self};
use crate::common::webstack::{CLIENT_ID, CLIENT_SECRET, WebStack, login_at_fake, secret_file};
use crate::identity_tokens::field;
use crate::ldap::{Slapd, ldap_yaml, person, seed};

/// The token's `sub`.
pub(crate) fn sub(token: &str) -> String {
    jwt::decode(token).expect("decode token").claims["sub"]
        .as_str()
        .expect("sub")
        .to_owned()
}

/// The actions a token grants on repository `repo`.
pub(crate) fn actions(token: &str, repo: &str) -> Vec<String> {
    let claims = jwt::decode(token).expect("decode token").claims;
    jwt::granted(&claims)
        .remove(&("repository".to_owned(), repo.to_owned()))
        .map(|a| a.into_iter().collect())
        .unwrap_or_default()
}

/// The token of a 200 answer of `GET /auth`.
pub(crate) fn token_of(r: &http::Response, what: &str) -> String {
    assert_eq!(r.status, 200, "{what}: {r:?}");
    r.json()["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no token in {r:?}"))
        .to_owned()
}

/// Bytes of the server log so far.
pub(crate) fn log_len(log: &Path) -> usize {
    fs::metadata(log).map_or(0, |m| m.len() as usize)
}

/// The first audit line (`MESSAGE`, e.g. `token issued`) written to `log` after `offset`,
/// waited for (the server writes its log just after it answers: `server::log_when`).
pub(crate) fn audit_line(log: &Path, offset: usize, message: &str) -> String {
    let find = |t: &str| {
        t.lines()
            .find(|l| l.contains(message) && l.contains("audit"))
            .map(str::to_owned)
    };
    let text = crate::common::server::log_when(log, offset, |t| find(t).is_some());
    find(&text).unwrap_or_else(|| {
        panic!(
            "no `{message}` audit line in {} after byte {offset}:\n{text}",
            log.display()
        )
    })
}

/// `GET /auth` as `user`; the token, with the audit line it caused.
fn issued(s: &WebStack, user: &str, password: &str, scope: &str) -> (String, String) {
    let before = log_len(&s.server.log);
    let r = s.token(user, password, scope);
    let token = token_of(&r, &format!("{user} asks for {scope}\n{}", s.diagnostics()));
    (token, audit_line(&s.server.log, before, "token issued"))
}

fn github_section(gh: &FakeGithub, dir: &Path) -> String {
    format!(
        "github_auth:\n  organization: acme\n  client_id: {CLIENT_ID}\n  client_secret_file: {}\n  \
         github_web_uri: {}\n  github_api_uri: {}\n",
        yaml_str(&secret_file(dir).display().to_string()),
        gh.web(),
        gh.api(),
    )
}

const ACL_BEFORE: &str = r#"  - match: {account: alice}
    actions: ["*"]
    comment: the directory's alice
  - match: {account: "/.+/", name: "public/*"}
    actions: [pull]
    comment: every unqualified principal pulls public/*
"#;

/// [`ACL_BEFORE`] with an entry for GitHub's alice.
const ACL_AFTER: &str = r#"  - match: {account: alice}
    actions: ["*"]
    comment: the directory's alice
  - match: {source: github_auth, account: alice}
    actions: [pull]
    comment: GitHub's alice
  - match: {account: "/.+/", name: "public/*"}
    actions: [pull]
    comment: every unqualified principal pulls public/*
"#;

#[test]
fn ldap_and_github_logins_do_not_share_account_names() {
    let tmp = stack::tempdir("ra-it-principals");
    let root = tmp.path().to_owned();
    let svc_pw = format!("svc-{}", crate::common::image::random_hex(12));
    let alice_pw = format!("alice-{}", crate::common::image::random_hex(8));
    let slapd = Slapd::start(
        &root.join("slapd"),
        None,
        &seed(&svc_pw, &person("alice", "staff", &alice_pw)),
        "",
    );
    let svc_file = root.join("svc.pw");
    fs::write(&svc_file, &svc_pw).expect("write svc.pw");
    let gh = FakeGithub::start(CLIENT_ID, CLIENT_SECRET, "unset");
    gh.set_user(GhUser::member("alice", "acme", "platform"));
    let ldap = ldap_yaml(&slapd.addr(), "", &svc_file);
    let mut s = WebStack::start(
        |dir, _| format!("{ldap}{}", github_section(&gh, dir)),
        ACL_BEFORE,
        false,
    );
    gh.set_redirect_uri(&format!("{}/github_auth", s.base()));
    let base = s.base();
    let config = s.server.config.display().to_string();
    let scope = "repository:alice/app:pull,push";

    // GitHub's alice signs in: her minted password does not make her the directory's alice.
    let gh_alice = login_at_fake(&base, "github_auth", "alice");
    assert_eq!(gh_alice.user, "alice");
    let (token, audit) = issued(&s, "alice", &gh_alice.password, scope);
    assert_eq!(sub(&token), "github_auth:alice", "{audit}");
    assert_eq!(
        actions(&token, "alice/app"),
        Vec::<String>::new(),
        "GitHub's alice got the directory alice's entry:\n{audit}"
    );
    assert_eq!(
        field(&audit, "source").as_deref(),
        Some("github_auth"),
        "{audit}"
    );
    assert_eq!(
        field(&audit, "account").as_deref(),
        Some("github_auth:alice"),
        "{audit}"
    );
    assert!(audit.contains("[no match]"), "{audit}");
    // Entries without `source` are not for her at all (the directory could produce any name).
    let (token, audit) = issued(&s, "alice", &gh_alice.password, "repository:public/x:pull");
    assert_eq!(actions(&token, "public/x"), Vec::<String>::new(), "{audit}");

    // The directory's alice, with her LDAP password: everything, as plain `alice`.
    let (token, audit) = issued(&s, "alice", &alice_pw, scope);
    assert_eq!(sub(&token), "alice", "{audit}");
    assert_eq!(actions(&token, "alice/app"), ["pull", "push"], "{audit}");
    assert_eq!(
        field(&audit, "source").as_deref(),
        Some("ldap_auth"),
        "{audit}"
    );
    assert_eq!(
        field(&audit, "account").as_deref(),
        Some("alice"),
        "{audit}"
    );

    // check-config: the entry without `source` names an account both sources can produce.
    let out = run_cli(&["check-config", &config]);
    assert!(out.success(), "{}", out.describe());
    let warning = out
        .combined()
        .lines()
        .find(|l| l.contains("acl[0]"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no warning about acl[0]:\n{}", out.describe()));
    assert!(
        warning.contains("warning") && warning.contains("github_auth"),
        "{warning}"
    );

    // An entry for GitHub's alice (`source` + `account`): she gets what it says, and the
    // directory's alice keeps hers. Same port (the provider knows the callback), same store.
    let yaml = fs::read_to_string(&s.server.config).expect("read config");
    assert!(yaml.contains(ACL_BEFORE), "{yaml}");
    fs::write(&s.server.config, yaml.replace(ACL_BEFORE, ACL_AFTER)).expect("write config");
    let addr = s.server.addr.clone();
    s.server.restart_on(&addr);
    let (token, audit) = issued(&s, "alice", &gh_alice.password, scope);
    assert_eq!(sub(&token), "github_auth:alice", "{audit}");
    assert_eq!(actions(&token, "alice/app"), ["pull"], "{audit}");
    assert!(audit.contains("[acl 1]"), "{audit}");
    let (token, audit) = issued(&s, "alice", &alice_pw, scope);
    assert_eq!(sub(&token), "alice", "{audit}");
    assert_eq!(actions(&token, "alice/app"), ["pull", "push"], "{audit}");
    assert!(audit.contains("[acl 0]"), "{audit}");

    // `logins list` shows the login by its subject; `logins revoke` with that subject ends it.
    let out = run_cli(&["logins", "list", "--config", &config]);
    assert!(out.success(), "{}", out.describe());
    let listed: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains("\tgithub_auth\t"))
        .collect();
    assert_eq!(listed.len(), 1, "{}", out.stdout);
    assert!(
        listed[0].starts_with("github_auth:alice\t"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains(&gh_alice.password));
    let out = run_cli(&[
        "logins",
        "revoke",
        "--config",
        &config,
        "--user",
        "github_auth:alice",
    ]);
    assert!(out.success(), "{}", out.describe());
    assert!(
        out.stdout.contains("revoked 1 minted password"),
        "{}",
        out.stdout
    );
    let r = s.token("alice", &gh_alice.password, scope);
    assert_eq!(r.status, 401, "a revoked minted password: {r:?}");
    // The directory's alice is not a web login: untouched.
    let r = s.token("alice", &alice_pw, scope);
    assert_eq!(r.status, 200, "{r:?}");

    assert_log_has_no_secrets(
        &s.server.log,
        &[
            ("alice".to_owned(), gh_alice.password),
            ("alice".to_owned(), alice_pw),
            ("registry-auth".to_owned(), svc_pw),
            ("x".to_owned(), CLIENT_SECRET.to_owned()),
        ],
        &[],
    );
    drop(slapd);
}

const ACL_STATIC: &str = r#"  - match: {account: admin}
    actions: ["*"]
    comment: the static admin
  - match: {account: alice, name: "alice/*"}
    actions: [pull, push]
    comment: alice (a GitHub login) owns alice/*
"#;

#[test]
fn github_next_to_static_users_keeps_its_names_but_not_theirs() {
    let gh = FakeGithub::start(CLIENT_ID, CLIENT_SECRET, "unset");
    gh.set_user(GhUser::member("alice", "acme", "platform"));
    gh.set_user(GhUser::member("admin", "acme", "platform"));
    let admin_pw = format!("admin-{}", crate::common::image::random_hex(8));
    let ci_pw = format!("ci-{}", crate::common::image::random_hex(8));
    // GitHub before the static users: a minted password of GitHub's `admin` reaches
    // github_auth (in docker_auth's order the static `admin` would refuse it first; see the end).
    let users = format!(
        "authn_order: [github_auth, users]\nusers:\n  admin:\n    password: {}\n  ci:\n    password: {}\n",
        yaml_str(&bcrypt_hash(&admin_pw)),
        yaml_str(&bcrypt_hash(&ci_pw)),
    );
    let mut s = WebStack::start(
        |dir, _| format!("{users}{}", github_section(&gh, dir)),
        ACL_STATIC,
        false,
    );
    gh.set_redirect_uri(&format!("{}/github_auth", s.base()));
    let base = s.base();
    let config = s.server.config.display().to_string();

    // GitHub's alice: her name is nobody else's, so docker_auth's entries apply to it.
    let gh_alice = login_at_fake(&base, "github_auth", "alice");
    let (token, alice_audit) = issued(
        &s,
        "alice",
        &gh_alice.password,
        "repository:alice/app:pull,push",
    );
    assert_eq!(sub(&token), "alice", "{alice_audit}");
    assert_eq!(
        actions(&token, "alice/app"),
        ["pull", "push"],
        "{alice_audit}"
    );

    // A GitHub user called `admin` is not the static admin.
    let gh_admin = login_at_fake(&base, "github_auth", "admin");
    assert_eq!(gh_admin.user, "admin");
    let (token, audit) = issued(
        &s,
        "admin",
        &gh_admin.password,
        "repository:alice/app:pull,push",
    );
    assert_eq!(sub(&token), "github_auth:admin", "{audit}");
    assert_eq!(
        actions(&token, "alice/app"),
        Vec::<String>::new(),
        "GitHub's admin got the static admin's entry:\n{audit}"
    );
    assert_eq!(
        field(&audit, "account").as_deref(),
        Some("github_auth:admin"),
        "{audit}"
    );
    // The audit lines name the source of both.
    for audit in [&audit, &alice_audit] {
        assert_eq!(
            field(audit, "source").as_deref(),
            Some("github_auth"),
            "{audit}"
        );
    }
    // The static admin (its password) still gets everything.
    let (token, audit) = issued(&s, "admin", &admin_pw, "repository:alice/app:pull,push");
    assert_eq!(sub(&token), "admin", "{audit}");
    assert_eq!(actions(&token, "alice/app"), ["pull", "push"], "{audit}");
    assert_eq!(field(&audit, "source").as_deref(), Some("users"), "{audit}");
    let out = run_cli(&["check-config", &config]);
    assert!(out.success(), "{}", out.describe());
    let text = out.combined();
    assert!(
        text.lines()
            .any(|l| l.contains("acl[0]") && l.contains("github_auth")),
        "no warning about acl[0] (admin is a static user's name):\n{}",
        out.describe()
    );
    assert!(
        !text.lines().any(|l| l.contains("acl[1]")),
        "alice is nobody else's name:\n{}",
        out.describe()
    );

    // A minted password is its own user's only.
    let r = s.token("ci", &gh_admin.password, "repository:alice/app:pull");
    assert_eq!(r.status, 401, "{r:?}");

    // docker_auth's order (the static users first): `admin` is the static user's name, so the
    // minted password of GitHub's admin is a wrong password for it; GitHub's alice is unaffected.
    let yaml = fs::read_to_string(&s.server.config).expect("read config");
    fs::write(
        &s.server.config,
        yaml.replacen("authn_order: [github_auth, users]\n", "", 1),
    )
    .expect("write config");
    let addr = s.server.addr.clone();
    s.server.restart_on(&addr);
    let r = s.token(
        "admin",
        &gh_admin.password,
        "repository:alice/app:pull,push",
    );
    assert_eq!(r.status, 401, "{r:?}");
    let (token, audit) = issued(&s, "alice", &gh_alice.password, "repository:alice/app:pull");
    assert_eq!(sub(&token), "alice", "{audit}");
    assert_eq!(actions(&token, "alice/app"), ["pull"], "{audit}");
    let (token, _) = issued(&s, "admin", &admin_pw, "repository:alice/app:pull,push");
    assert_eq!(actions(&token, "alice/app"), ["pull", "push"]);

    assert_log_has_no_secrets(
        &s.server.log,
        &[
            ("alice".to_owned(), gh_alice.password),
            ("admin".to_owned(), gh_admin.password),
            ("admin".to_owned(), admin_pw),
            ("ci".to_owned(), ci_pw),
            ("x".to_owned(), CLIENT_SECRET.to_owned()),
        ],
        &[],
    );
}
