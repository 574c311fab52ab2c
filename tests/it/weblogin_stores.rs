//! Minted passwords in shared stores: Redis and PostgreSQL (real servers from Debian packages,
//! started here on loopback ports) with two registry-auth processes sharing the store and the
//! session secret. A password minted on one works on the other (through the real registry,
//! whose realm is the second one), revalidation runs on either (the sealed upstream tokens
//! open with the shared secret), and signing out on one revokes it on both.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::common::clients::Outcome;
use crate::common::idp::{Browserless, FakeGithub, GhUser};
use crate::common::keys::yaml_str;
use crate::common::proc::{ChildGuard, StopMode, free_port, require_tool, tail};
use crate::common::stack::tempdir;
use crate::common::webstack::{CLIENT_ID, CLIENT_SECRET, WebStack, login_at_fake};

const REDIS_PASSWORD: &str = "redis-Secret-51c2";

/// A redis-server of its own (no persistence, password required).
struct Redis {
    port: u16,
    log: PathBuf,
    _guard: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Self {
        let bin = require_tool("redis-server");
        let dir = tempdir("ra-it-redis");
        let log = dir.path().join("redis.log");
        let port = free_port();
        let child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--requirepass", REDIS_PASSWORD])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let mut guard = ChildGuard::new("redis-server", child, StopMode::Kill);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Ready to accept connections") {
                break;
            }
            if let Some(status) = guard.try_wait() {
                panic!("redis-server exited with {status}:\n{}", tail(&log, 20));
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start:\n{}",
                tail(&log, 20)
            );
            sleep(Duration::from_millis(50));
        }
        Self {
            port,
            log,
            _guard: guard,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{}/3", self.port)
    }
}

const ACL: &str = r#"  - match: {labels: {teams: platform}, name: "platform/**"}
    actions: [pull, push]
"#;

/// Two servers sharing `store` and one session secret; the registry's realm is the second.
fn two_replicas(store_yaml: &str, dump: &dyn Fn() -> String) {
    let gh = FakeGithub::start(CLIENT_ID, CLIENT_SECRET, "unset");
    gh.set_user(GhUser {
        login: "alice".to_owned(),
        orgs: [("acme".to_owned(), "active".to_owned())].into(),
        teams: vec![("acme".to_owned(), "platform".to_owned(), None)],
    });
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
    let out = Browserless::default().post_form(
        &format!("{}/sign_out", b.base()),
        &[("password".to_owned(), alice.password.clone())],
    );
    assert!(out.body.contains("revoked"), "{}", out.body);
    let r = a.token("alice", &alice.password, "repository:platform/app:pull");
    assert_eq!(r.status, 401, "{r:?}");
    let pull = b
        .clients()
        .skopeo_pull(Some(("alice", &alice.password)), "platform/app", "v1");
    assert_eq!(pull.outcome, Outcome::Unauthorized, "{}", pull.log);
}

#[test]
fn redis_store_shared_by_two_replicas() {
    let redis = Redis::start();
    let port = redis.port.to_string();
    let cli = |args: &[&str]| {
        let mut cmd = Command::new(require_tool("redis-cli"));
        cmd.args([
            "-p",
            &port,
            "-a",
            REDIS_PASSWORD,
            "--no-auth-warning",
            "-n",
            "3",
        ])
        .args(args);
        crate::common::proc::run(&mut cmd, None, Duration::from_secs(10)).stdout
    };
    let dump = || {
        let keys = cli(&["--scan", "--pattern", "registry-auth:minted:*"]);
        let mut all = keys.clone();
        for key in keys.lines() {
            all.push_str(&cli(&["GET", key]));
        }
        all
    };
    two_replicas(
        &format!("store:\n  type: redis\n  url: {}\n", yaml_str(&redis.url())),
        &dump,
    );
    let _ = &redis.log;
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
