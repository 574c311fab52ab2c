//! An LDAP user is the directory entry's account, whatever the client typed, through
//! `registry-auth serve` and a real `slapd` (whose `uid` matching ignores case and
//! insignificant spaces, so `ALICE`, `Alice`, ` alice` and `alice ` all bind as alice):
//!
//! * every spelling, by Basic auth (`GET /auth`) and by the OAuth2 password grant
//!   (`POST /auth`), gets a token whose `sub` is `alice`, and the audit line says `alice`;
//! * an ACL entry denying `alice` cannot be escaped by typing `ALICE`;
//! * a refresh token issued to `ALICE` names `alice`, and `tokens revoke --user alice` ends it;
//! * a password change in the directory (`ldappasswd`, which updates `modifyTimestamp`; this
//!   slapd has no password policy, so no `pwdChangedTime`) ends the refresh tokens issued before;
//! * the lockout counts the failed logins of every spelling of alice together.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::common::http::{self, fetch_token};
use crate::common::image;
use crate::common::keys::{KeyFiles, KeySetup, yaml_str};
use crate::common::proc::require_tool;
use crate::common::server::{AuthServer, assert_log_has_no_secrets, run_cli};
use crate::common::stack::{self, ISSUER, SERVICE};
use crate::identity_tokens::field;
use crate::ldap::{Slapd, ldap_yaml, person, post_form, seed, uid_dn};
use crate::principals::{actions, audit_line, log_len};

const ACL: &str = r#"acl:
  - match: {account: alice}
    actions: []
    comment: alice is denied everything
  - match: {}
    actions: ["*"]
    comment: everybody else gets everything
"#;

const SCOPE: &str = "repository:alice/app:pull,push";

fn sub(token: &str) -> String {
    crate::principals::sub(token)
}

/// The claims of a refresh token (`rat1.<payload>.<mac>`), read without the secret.
fn refresh_claims(token: &str) -> Value {
    let mut parts = token.split('.');
    assert_eq!(parts.next(), Some("rat1"), "not a rat1 refresh token");
    let payload = URL_SAFE_NO_PAD
        .decode(parts.next().unwrap_or_default())
        .expect("refresh token payload is base64url");
    serde_json::from_slice(&payload).expect("refresh token payload is JSON")
}

/// `POST /auth grant_type=password` (offline: with a refresh token): the JSON answer.
fn password_grant(server: &AuthServer, user: &str, password: &str, offline: bool) -> Value {
    let mut form = vec![
        ("grant_type", "password"),
        ("username", user),
        ("password", password),
        ("service", SERVICE),
        ("client_id", "it"),
        ("scope", SCOPE),
    ];
    if offline {
        form.push(("access_type", "offline"));
    }
    let r = post_form(server, &form);
    assert_eq!(
        r.status,
        200,
        "password grant as {user:?}: {}\n{}",
        r.text(),
        server.log_tail(20)
    );
    r.json()
}

/// `POST /auth grant_type=refresh_token`: the status, and the audit line it caused.
fn refresh(server: &AuthServer, refresh_token: &str) -> (http::Response, String) {
    let before = log_len(&server.log);
    let r = post_form(
        server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("service", SERVICE),
            ("client_id", "it"),
            ("scope", SCOPE),
        ],
    );
    let message = if r.status == 200 {
        "token issued"
    } else {
        "token refused"
    };
    let audit = audit_line(&server.log, before, message);
    (r, audit)
}

/// Now as LDAP's GeneralizedTime at second precision (`20261207180058Z`).
fn generalized_now() -> String {
    let rfc = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let digits: String = rfc.chars().filter(char::is_ascii_digit).collect();
    format!("{digits}Z")
}

/// Waits until the clock is past the second of `dn`'s `modifyTimestamp` (second precision), so
/// that the next change of the entry gets another timestamp.
fn wait_past_modify_timestamp(slapd: &Slapd, dn: &str) {
    let out = slapd.ldap_tool(
        "ldapsearch",
        &[
            "-LLL",
            "-b",
            dn,
            "-s",
            "base",
            "(objectClass=*)",
            "modifyTimestamp",
        ],
        None,
    );
    let stamp = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("modifyTimestamp: "))
        .unwrap_or_else(|| panic!("no modifyTimestamp of {dn}:\n{}", out.describe()))
        .trim()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    while generalized_now() <= stamp {
        assert!(
            Instant::now() < deadline,
            "the clock ({}) did not pass {stamp}",
            generalized_now()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The config of these tests; `lockout` is the `lockout:` section.
fn write_config(root: &Path, slapd: &Slapd, svc_file: &Path, lockout: &str) -> std::path::PathBuf {
    let keys = KeyFiles::write(KeySetup::EcKid, &root.join("keys"));
    fs::write(
        root.join("refresh.secret"),
        format!("{}\n", image::random_hex(24)),
    )
    .expect("write refresh.secret");
    let yaml = format!(
        "server:\n  addr: \"127.0.0.1:0\"\ntoken:\n  issuer: {}\n  expiration: 900\n{}  refresh:\n    \
         enabled: true\n    secret_file: refresh.secret\n    revocations_file: revoked.yml\n\
         {lockout}{}{ACL}",
        yaml_str(ISSUER),
        keys.token_yaml(),
        ldap_yaml(&slapd.addr(), "", svc_file),
    );
    let config = root.join("registry-auth.yml");
    fs::write(&config, yaml).expect("write config");
    config
}

#[test]
fn ldap_spellings_of_one_user_are_one_account() {
    require_tool("ldappasswd");
    require_tool("ldapsearch");
    let tmp = stack::tempdir("ra-it-ldapid");
    let root = tmp.path().to_owned();
    let svc_pw = format!("svc-{}", image::random_hex(12));
    let alice_pw = format!("alice-{}", image::random_hex(8));
    let bob_pw = format!("bob-{}", image::random_hex(8));
    let slapd = Slapd::start(
        &root.join("slapd"),
        None,
        &seed(
            &svc_pw,
            &[
                person("alice", "staff", &alice_pw),
                person("bob", "staff", &bob_pw),
            ]
            .concat(),
        ),
        "",
    );
    let svc_file = root.join("svc.pw");
    fs::write(&svc_file, &svc_pw).expect("write svc.pw");
    let config = write_config(&root, &slapd, &svc_file, "lockout:\n  enabled: false\n");
    let server = AuthServer::start(&config, &root.join("registry-auth.log"));
    let mut tokens = Vec::new();

    // Every spelling the directory accepts is alice: her `sub`, her audit line, her denial.
    for spelling in ["ALICE", "Alice", " alice", "alice ", "alice"] {
        let before = log_len(&server.log);
        let r = fetch_token(
            &server.realm(),
            Some(SERVICE),
            &[SCOPE],
            Some((spelling, &alice_pw)),
            &[],
        );
        let token = r.token.clone().unwrap_or_else(|| {
            panic!(
                "Basic {spelling:?}: {:?}\n{}",
                r.response,
                server.log_tail(20)
            )
        });
        let audit = audit_line(&server.log, before, "token issued");
        assert_eq!(sub(&token), "alice", "Basic {spelling:?}: {audit}");
        assert_eq!(
            actions(&token, "alice/app"),
            Vec::<String>::new(),
            "Basic {spelling:?} escaped the entry denying alice: {audit}"
        );
        assert_eq!(
            field(&audit, "account").as_deref(),
            Some("alice"),
            "{audit}"
        );
        assert_eq!(
            field(&audit, "source").as_deref(),
            Some("ldap_auth"),
            "{audit}"
        );
        assert!(audit.contains("[acl 0]"), "{audit}");
        tokens.push(token);

        let body = password_grant(&server, spelling, &alice_pw, false);
        let token = body["access_token"].as_str().expect("access_token");
        assert_eq!(sub(token), "alice", "password grant {spelling:?}: {body}");
        assert_eq!(actions(token, "alice/app"), Vec::<String>::new(), "{body}");
        tokens.push(token.to_owned());
    }
    // The ACL's second entry is everybody else's.
    let r = fetch_token(
        &server.realm(),
        Some(SERVICE),
        &[SCOPE],
        Some(("bob", &bob_pw)),
        &[],
    );
    let token = r.token.expect("bob's token");
    assert_eq!(sub(&token), "bob");
    assert_eq!(actions(&token, "alice/app"), ["pull", "push"]);

    // Refresh tokens issued to `ALICE` (password grant) and `Alice` (Basic) name alice.
    let body = password_grant(&server, "ALICE", &alice_pw, true);
    let r1 = body["refresh_token"]
        .as_str()
        .expect("a refresh token for an LDAP user")
        .to_owned();
    assert_eq!(
        refresh_claims(&r1)["sub"],
        "alice",
        "{}",
        refresh_claims(&r1)
    );
    let r = fetch_token(
        &server.realm(),
        Some(SERVICE),
        &[SCOPE],
        Some(("Alice", &alice_pw)),
        &[("offline_token", "true"), ("client_id", "it")],
    );
    assert_eq!(r.response.status, 200, "{:?}", r.response);
    let r2 = r.response.json()["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();
    assert_eq!(refresh_claims(&r2)["sub"], "alice");
    let (r, audit) = refresh(&server, &r1);
    assert_eq!(r.status, 200, "{}\n{audit}", r.text());
    let access = r.json()["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(sub(&access), "alice", "{audit}");
    assert_eq!(actions(&access, "alice/app"), Vec::<String>::new());
    tokens.push(access);

    // alice's password is changed in the directory: the refresh tokens issued before end.
    let alice_dn = uid_dn("alice", "staff");
    wait_past_modify_timestamp(&slapd, &alice_dn);
    let new_pw = format!("alice-new-{}", image::random_hex(8));
    slapd.ldap_tool("ldappasswd", &["-s", &new_pw, &alice_dn], None);
    for (name, rt) in [("ALICE's", &r1), ("Alice's", &r2)] {
        let (r, audit) = refresh(&server, rt);
        assert_eq!(
            r.status,
            401,
            "{name} refresh token after the password change: {}\n{audit}",
            r.text()
        );
        assert!(
            field(&audit, "reason").is_some_and(|r| r.contains("changed their password")),
            "{audit}"
        );
    }
    // Her new password works, and gives new refresh tokens (still as alice).
    let body = password_grant(&server, " alice", &new_pw, true);
    let r3 = body["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();
    assert_eq!(refresh_claims(&r3)["sub"], "alice");
    let (r, audit) = refresh(&server, &r3);
    assert_eq!(r.status, 200, "{}\n{audit}", r.text());

    // `tokens revoke --user alice` ends the tokens issued to any spelling of alice.
    let config_arg = config.display().to_string();
    let out = run_cli(&[
        "tokens",
        "revoke",
        "--config",
        &config_arg,
        "--user",
        "alice",
    ]);
    assert!(out.success(), "{}", out.describe());
    let (r, audit) = refresh(&server, &r3);
    assert_eq!(r.status, 401, "after the revocation: {}\n{audit}", r.text());
    assert!(
        field(&audit, "reason").is_some_and(|r| r.contains("revoked")),
        "{audit}"
    );
    // Passwords still work (a revocation is about refresh tokens).
    let body = password_grant(&server, "ALICE", &new_pw, false);
    assert_eq!(
        sub(body["access_token"].as_str().unwrap_or_default()),
        "alice"
    );

    let secrets: Vec<(String, String)> = [
        ("alice", &alice_pw),
        ("alice", &new_pw),
        ("bob", &bob_pw),
        ("registry-auth", &svc_pw),
    ]
    .iter()
    .map(|(u, p)| ((*u).to_owned(), (*p).clone()))
    .collect();
    tokens.extend([r1, r2, r3]);
    assert_log_has_no_secrets(&server.log, &secrets, &tokens);
}

/// Wrong passwords typed as `alice`, `ALICE` and ` Alice` are three failures of one account:
/// with `max_failures: 3` the next attempt from that address, in any spelling and even with the
/// right password, gets 429 (each spelling used to have its own counter, so that typing the name
/// differently gave an attacker `max_failures` more guesses every time). bob is unaffected.
#[test]
fn ldap_lockout_counts_every_spelling_of_one_user() {
    let tmp = stack::tempdir("ra-it-ldaplock");
    let root = tmp.path().to_owned();
    let svc_pw = format!("svc-{}", image::random_hex(12));
    let alice_pw = format!("alice-{}", image::random_hex(8));
    let bob_pw = format!("bob-{}", image::random_hex(8));
    let slapd = Slapd::start(
        &root.join("slapd"),
        None,
        &seed(
            &svc_pw,
            &[
                person("alice", "staff", &alice_pw),
                person("bob", "staff", &bob_pw),
            ]
            .concat(),
        ),
        "",
    );
    let svc_file = root.join("svc.pw");
    fs::write(&svc_file, &svc_pw).expect("write svc.pw");
    let config = write_config(
        &root,
        &slapd,
        &svc_file,
        "lockout:\n  enabled: true\n  max_failures: 3\n  window: 10m\n  cooldown: 10m\n",
    );
    let server = AuthServer::start(&config, &root.join("registry-auth.log"));
    let attempt = |user: &str, password: &str| {
        fetch_token(
            &server.realm(),
            Some(SERVICE),
            &[SCOPE],
            Some((user, password)),
            &[],
        )
        .response
    };
    for spelling in ["alice", "ALICE", " Alice"] {
        let r = attempt(spelling, "not-her-password");
        assert_eq!(
            r.status,
            401,
            "{spelling:?}: {r:?}\n{}",
            server.log_tail(10)
        );
    }
    for spelling in ["Alice", "alice", "aLiCe  "] {
        let r = attempt(spelling, &alice_pw);
        assert_eq!(
            r.status,
            429,
            "{spelling:?} after three failures of alice's spellings: {r:?}\n{}",
            server.log_tail(10)
        );
        assert!(r.header("retry-after").is_some(), "{r:?}");
    }
    let r = attempt("bob", &bob_pw);
    assert_eq!(r.status, 200, "{r:?}");
    assert_log_has_no_secrets(
        &server.log,
        &[
            ("alice".to_owned(), alice_pw),
            ("bob".to_owned(), bob_pw),
            ("registry-auth".to_owned(), svc_pw),
        ],
        &[],
    );
    drop(slapd);
}
