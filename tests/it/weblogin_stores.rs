//! Minted passwords in shared stores: Redis and PostgreSQL (real servers from Debian packages,
//! started here on loopback ports) with two registry-auth processes sharing the store and the
//! session secret. A password minted on one works on the other (through the real registry,
//! whose realm is the second one), revalidation runs on either (the sealed upstream tokens
//! open with the shared secret), signing out on one revokes it on both, and `logins revoke`
//! revokes every password of a user on both.

use std::fs;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::common::clients::Outcome;
use crate::common::idp::{FakeGithub, GhUser};
use crate::common::keys::yaml_str;
use crate::common::proc::free_port;
use crate::common::redis::{Persistence, Redis};
use crate::common::server::run_cli;
use crate::common::stack::tempdir;
use crate::common::webstack::{CLIENT_ID, CLIENT_SECRET, WebStack, login_at_fake, sign_out};

const ACL: &str = r#"  - match: {labels: {teams: platform}, name: "platform/**"}
    actions: [pull, push]
"#;

/// Two servers sharing `store` and one session secret; the registry's realm is the second.
fn two_replicas(store_yaml: &str, dump: &dyn Fn() -> String) {
    let gh = FakeGithub::start(CLIENT_ID, CLIENT_SECRET, "unset");
    gh.set_user(GhUser::member("alice", "acme", "platform"));
    let shared = tempdir("ra-it-shared");
    let secret = shared.path().join("session.secret");
    fs::write(
        &secret,
        "shared-session-secret-of-the-replicas-0123456789\n",
    )
    .unwrap();
    let server_extra = format!(
        "  session_secret_file: {}\n",
        yaml_str(&secret.display().to_string())
    );
    let sections = |gh: &FakeGithub| {
        let (web, api) = (gh.web(), gh.api());
        let store = store_yaml.to_owned();
        move |_: &std::path::Path, _: &str| {
            format!(
                "{store}github_auth:\n  organization: acme\n  client_id: {CLIENT_ID}\n  \
                 client_secret: {CLIENT_SECRET}\n  github_web_uri: {web}\n  github_api_uri: {api}\n  \
                 revalidate_after: 1s\n"
            )
        }
    };
    let a = WebStack::start_full(free_port(), &server_extra, sections(&gh), ACL, false);
    let b = WebStack::start_full(free_port(), &server_extra, sections(&gh), ACL, true);
    gh.set_redirect_uri(&format!("{}/github_auth", a.base()));
    // The store is reached at start-up (a problem would show in the log at once).
    let deadline = Instant::now() + Duration::from_secs(15);
    while !fs::read_to_string(&a.server.log)
        .unwrap_or_default()
        .contains("password store ready")
    {
        assert!(Instant::now() < deadline, "{}", a.diagnostics());
        sleep(Duration::from_millis(100));
    }

    // Minted on A, used on B (by skopeo, through the registry whose realm is B).
    let alice = login_at_fake(&a.base(), "github_auth", "alice");
    let push =
        b.clients()
            .skopeo_push(Some(("alice", &alice.password)), "platform/app", "v1", None);
    assert_eq!(
        push.outcome,
        Outcome::Ok,
        "{}\n{}",
        push.log,
        b.diagnostics()
    );
    // B revalidates with A's sealed upstream token (the shared session secret).
    sleep(Duration::from_millis(1100));
    let r = b.token("alice", &alice.password, "repository:platform/app:pull");
    assert_eq!(r.status, 200, "{r:?}\n{}", b.diagnostics());
    // The store holds hashes and sealed upstream tokens only.
    let stored = dump();
    assert!(stored.contains("alice"), "nothing stored? {stored}");
    assert!(
        !stored.contains(&alice.password),
        "the password is stored: {stored}"
    );
    assert!(
        !stored.contains("gho_"),
        "the GitHub token is stored in the clear: {stored}"
    );
    // Signed out on B: refused on A too.
    let out = sign_out(&b.base(), &alice.password);
    assert!(out.body.contains("revoked"), "{}", out.body);
    let r = a.token("alice", &alice.password, "repository:platform/app:pull");
    assert_eq!(r.status, 401, "{r:?}");
    let pull = b
        .clients()
        .skopeo_pull(Some(("alice", &alice.password)), "platform/app", "v1");
    assert_eq!(pull.outcome, Outcome::Unauthorized, "{}", pull.log);

    // An administrator revokes every password of a user at once (`logins revoke`), from any
    // host that has the config: both replicas refuse them at the next request.
    let first = login_at_fake(&a.base(), "github_auth", "alice");
    let second = login_at_fake(&a.base(), "github_auth", "alice");
    let config = a.server.config.display().to_string();
    let out = run_cli(&["logins", "list", "--config", &config]);
    assert!(out.success(), "{}", out.describe());
    let listed: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("alice\t"))
        .collect();
    assert_eq!(listed.len(), 2, "{}", out.stdout);
    assert!(
        listed[0].contains("github_auth") && listed[0].contains("platform"),
        "{}",
        out.stdout
    );
    for pw in [&first.password, &second.password] {
        assert!(!out.stdout.contains(pw.as_str()), "a password is listed");
        assert_eq!(
            b.token("alice", pw, "repository:platform/app:pull").status,
            200
        );
    }
    let out = run_cli(&["logins", "revoke", "--config", &config, "--user", "alice"]);
    assert!(out.success(), "{}", out.describe());
    assert!(
        out.stdout.contains("revoked 2 minted passwords"),
        "{}",
        out.stdout
    );
    for pw in [&first.password, &second.password] {
        assert_eq!(
            a.token("alice", pw, "repository:platform/app:pull").status,
            401
        );
        assert_eq!(
            b.token("alice", pw, "repository:platform/app:pull").status,
            401
        );
    }
    let out = run_cli(&["logins", "list", "--config", &config, "--user", "alice"]);
    assert!(
        out.stdout.starts_with("0 minted passwords"),
        "{}",
        out.stdout
    );
}

#[test]
fn redis_store_shared_by_two_replicas() {
    let redis = Redis::start(Persistence::None);
    let dump = || {
        let keys = redis.cli(&["--scan", "--pattern", "registry-auth:minted:*"]);
        let mut all = keys.clone();
        for key in keys.lines() {
            all.push_str(&redis.cli(&["GET", key]));
        }
        all
    };
    two_replicas(
        &format!("store:\n  type: redis\n  url: {}\n", yaml_str(&redis.url())),
        &dump,
    );
}

#[test]
fn postgres_store_shared_by_two_replicas() {
    let pg = crate::sql::Postgres::init();
    let dump = || crate::sql::psql_as_postgres(&pg, "SELECT * FROM registry_auth_minted_passwords");
    two_replicas(
        &format!("store:\n  type: postgres\n  url: {}\n", yaml_str(&pg.url())),
        &dump,
    );
}
