//! Trustworthy store state (docs/src/security/stored-state.md), on the embedded store, a
//! real Redis and a real PostgreSQL:
//!
//! * A sign-out or `logins revoke` that lands while a revalidation's upstream calls are in
//!   flight stays in force: the fake GitHub holds `/user/teams` until the test has revoked the
//!   password, then answers "still a member"; the revalidation must not write the record back.
//! * Records written to the store by anyone but registry-auth (a forged `admin` record, an
//!   authentic record copied under another password's id) are refused and counted.
//! * The embedded store's files and `data_dir` are owner-only.

use std::fs;
use std::thread::sleep;
use std::time::Duration;

use crate::common::idp::{FakeGithub, GhUser};
use crate::common::keys::yaml_str;
use crate::common::proc::free_port;
use crate::common::redis::{Persistence, Redis};
use crate::common::server::run_cli;
use crate::common::webstack::{CLIENT_ID, CLIENT_SECRET, WebStack, login_at_fake, sign_out};

const ACL: &str = r#"  - match: {labels: {teams: platform}, name: "platform/**"}
    actions: [pull, push]
  - match: {labels: {teams: admins}}
    actions: ["*"]
"#;
const SCOPE: &str = "repository:platform/app:pull";

/// One server with `store_yaml` (empty: the embedded store in `data_dir`), GitHub logins that
/// revalidate after a second.
fn start(store_yaml: &str) -> (FakeGithub, WebStack) {
    let gh = FakeGithub::start(CLIENT_ID, CLIENT_SECRET, "unset");
    gh.set_user(GhUser::member("alice", "acme", "platform"));
    let (web, api) = (gh.web(), gh.api());
    let store = store_yaml.to_owned();
    let stack = WebStack::start_full(
        free_port(),
        "",
        move |_, _| {
            format!(
                "{store}github_auth:\n  organization: acme\n  client_id: {CLIENT_ID}\n  \
                 client_secret: {CLIENT_SECRET}\n  github_web_uri: {web}\n  github_api_uri: {api}\n  \
                 revalidate_after: 1s\n"
            )
        },
        ACL,
        false,
    );
    gh.set_redirect_uri(&format!("{}/github_auth", stack.base()));
    (gh, stack)
}

fn config(stack: &WebStack) -> String {
    stack.server.config.display().to_string()
}

/// `logins list --user alice`: how many of alice's passwords the store holds.
fn alice_passwords(stack: &WebStack) -> String {
    let out = run_cli(&[
        "logins",
        "list",
        "--config",
        &config(stack),
        "--user",
        "alice",
    ]);
    assert!(out.success(), "{}", out.describe());
    out.stdout.lines().last().unwrap_or_default().to_owned()
}

/// Signs alice in, lets her password come due for revalidation, starts an `/auth` that
/// revalidates, runs `revoke` while GitHub holds the revalidation's last call, then lets GitHub
/// answer that she is still a member. The revocation must stand.
fn revoke_during_revalidation(gh: &FakeGithub, stack: &WebStack, how: &str) {
    let alice = login_at_fake(&stack.base(), "github_auth", "alice");
    assert_eq!(stack.token("alice", &alice.password, SCOPE).status, 200);
    assert!(
        alice_passwords(stack).starts_with("1 "),
        "{}",
        alice_passwords(stack)
    );
    sleep(Duration::from_millis(1100));
    let gate = gh.hold_teams();
    let in_flight = std::thread::scope(|s| {
        let request = s.spawn(|| stack.token("alice", &alice.password, SCOPE));
        gate.wait_arrived(1);
        match how {
            "sign_out" => {
                let page = sign_out(&stack.base(), &alice.password);
                assert!(page.body.contains("revoked"), "{}", page.body);
            }
            _ => {
                let out = run_cli(&[
                    "logins",
                    "revoke",
                    "--config",
                    &config(stack),
                    "--user",
                    "alice",
                ]);
                assert!(out.success(), "{}", out.describe());
                assert!(out.stdout.contains("revoked 1 "), "{}", out.stdout);
            }
        }
        gate.open();
        request.join().unwrap()
    });
    let after = stack.token("alice", &alice.password, SCOPE);
    assert_eq!(
        after.status,
        401,
        "{how} undone by the revalidation: {after:?}\n{}",
        stack.diagnostics()
    );
    assert!(
        alice_passwords(stack).starts_with("0 "),
        "{how} undone: the record is back: {}",
        alice_passwords(stack)
    );
    // The request that was revalidating when the password was revoked is refused too.
    assert_eq!(
        in_flight.status,
        401,
        "{how} during the revalidation: the request in flight was answered {in_flight:?}\n{}",
        stack.diagnostics()
    );
}

fn race(store_yaml: &str) -> (FakeGithub, WebStack) {
    let (gh, stack) = start(store_yaml);
    revoke_during_revalidation(&gh, &stack, "sign_out");
    revoke_during_revalidation(&gh, &stack, "logins revoke");
    (gh, stack)
}

#[test]
fn embedded_store_revocations_survive_a_concurrent_revalidation_and_its_files_are_private() {
    let (_gh, stack) = race("");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let data = stack.dir.join("data");
        assert_eq!(mode(&data), 0o700, "data_dir");
        for name in [
            "passwords.db",
            "passwords.db-wal",
            "passwords.db-shm",
            "session.secret",
        ] {
            let p = data.join(name);
            assert!(p.exists(), "{} missing", p.display());
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
}

#[test]
fn redis_store_revocations_survive_a_concurrent_revalidation() {
    let redis = Redis::start(Persistence::None);
    race(&format!(
        "store:\n  type: redis\n  url: {}\n",
        yaml_str(&redis.url())
    ));
}

#[test]
fn postgres_store_revocations_survive_a_concurrent_revalidation() {
    let pg = crate::sql::Postgres::init();
    race(&format!(
        "store:\n  type: postgres\n  url: {}\n",
        yaml_str(&pg.url())
    ));
}

/// `registry_auth_store_records_rejected_total` (0 when absent).
fn rejected(stack: &WebStack) -> u64 {
    let text = crate::common::http::get(&format!("{}/metrics", stack.base()), &[]).text();
    text.lines()
        .find_map(|l| l.strip_prefix("registry_auth_store_records_rejected_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Someone with write access to the store (but not the session secret) writes records.
fn forged_records_are_refused(
    stack: &WebStack,
    write: &dyn Fn(&str, &str),
    read: &dyn Fn(&str) -> String,
) {
    use registry_auth::store::{mint_password, password_id, unix_now};
    let alice = login_at_fake(&stack.base(), "github_auth", "alice");
    assert_eq!(stack.token("alice", &alice.password, SCOPE).status, 200);
    let now = unix_now();
    let admin = format!(
        r#"{{"user":"admin","provider":"github_auth","labels":{{"teams":["admins"]}},"created_at":{now},"expires_at":{},"revalidate_at":{},"upstream":""}}"#,
        now + 3600,
        now + 3600
    );
    // A plain record for `admin` (also what versions before authenticated records wrote).
    let (plain, plain_id) = mint_password();
    write(&plain_id, &admin);
    // The same in the current format with a made-up tag.
    let (tagged, tagged_id) = mint_password();
    write(&tagged_id, &format!("v1.{}.{admin}", "A".repeat(43)));
    // alice's authentic record, copied under another password's id.
    let (copied, copied_id) = mint_password();
    let stored = read(&password_id(&alice.password));
    assert!(stored.contains("alice"), "{stored}");
    write(&copied_id, &stored);

    let before = rejected(stack);
    for (user, pw) in [("admin", &plain), ("admin", &tagged), ("alice", &copied)] {
        let r = stack.token(user, pw.expose(), "repository:anything:pull,push");
        assert_eq!(
            r.status,
            401,
            "a forged record for {user} was believed: {r:?}\n{}",
            stack.diagnostics()
        );
    }
    assert!(
        rejected(stack) >= before + 3,
        "registry_auth_store_records_rejected_total: {} (was {before})",
        rejected(stack)
    );
    // Refused, never repaired: the forged records are left as they were.
    assert_eq!(read(&plain_id), admin);
    // The authentic record still works.
    assert_eq!(stack.token("alice", &alice.password, SCOPE).status, 200);
    // `logins list` shows only authentic records.
    let out = run_cli(&["logins", "list", "--config", &config(stack)]);
    assert!(out.success(), "{}", out.describe());
    assert!(!out.stdout.contains("admin"), "{}", out.stdout);
    assert!(out.stdout.contains("1 minted password "), "{}", out.stdout);
}

#[test]
fn redis_records_written_by_others_are_refused() {
    let redis = Redis::start(Persistence::None);
    let (_gh, stack) = start(&format!(
        "store:\n  type: redis\n  url: {}\n",
        yaml_str(&redis.url())
    ));
    let key = |id: &str| format!("registry-auth:minted:{id}");
    forged_records_are_refused(
        &stack,
        &|id, value| {
            let out = redis.cli(&["SET", &key(id), value, "EX", "3600"]);
            assert_eq!(out.trim(), "OK", "{out}");
        },
        &|id| redis.cli(&["GET", &key(id)]).trim_end().to_owned(),
    );
}

#[test]
fn postgres_records_written_by_others_are_refused() {
    let pg = crate::sql::Postgres::init();
    let (_gh, stack) = start(&format!(
        "store:\n  type: postgres\n  url: {}\n",
        yaml_str(&pg.url())
    ));
    let sql = |q: &str| crate::sql::psql_as_postgres(&pg, q);
    forged_records_are_refused(
        &stack,
        &|id, value| {
            assert!(!value.contains('\''));
            sql(&format!(
                "INSERT INTO registry_auth_minted_passwords (id, username, expires_at, record) \
                 VALUES ('{id}', 'admin', {}, '{value}')",
                registry_auth::store::unix_now() + 3600
            ));
        },
        &|id| {
            sql(&format!(
                "SELECT record FROM registry_auth_minted_passwords WHERE id = '{id}'"
            ))
            .trim_end()
            .to_owned()
        },
    );
}
