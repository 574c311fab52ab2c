//! `sql_auth` and `acl_sql` end to end, through the real binary, against a real PostgreSQL
//! (Debian's `postgresql`: a cluster initdb'ed in a temp dir and started as the `postgres` user on
//! a free 127.0.0.1 port, with a password, stopped at the end) and a SQLite file:
//!
//! * the CLI: `db migrate`, `users add` (password on stdin, labels), `users list`, `acl list`
//!   (rows in `seq` order; a broken row exits 1), `users passwd`, `users remove`;
//! * the server: SQL users (unknown → 401, wrong password → 401, labels in the ACL), the static
//!   `acl` before `acl_sql`, rows inserted out of order evaluated by `seq`, refresh tokens of SQL
//!   users re-checked against the row (a new password ends them), a changed row picked up after
//!   `cache_ttl`, a broken row keeping the previous ACL and logged with its `seq`;
//! * PostgreSQL stopped mid-run: logins that need it get a 5xx while the kept ACL still
//!   answers; PostgreSQL started again: logins work without restarting registry-auth;
//! * docker_auth's xorm tables copied with the documented SQL (users, Go-cased ACL JSON);
//! * TLS to PostgreSQL (`sslmode=verify-full` with a test CA; an unknown CA refused) and a unix
//!   socket (`host=`);
//! * the database password never reaches the server's log or the CLI's output.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::http::{fetch_token, urlencode};
use crate::common::jwt;
use crate::common::keys::{KeyFiles, KeySetup, yaml_str};
use crate::common::proc::{self, CmdOutput, free_port, strip_ansi, tail};
use crate::common::server::{self, AuthServer, assert_log_has_no_secrets};
use crate::common::stack::{ISSUER, SERVICE, tempdir};

const PG_PASSWORD: &str = "pg-Secret-7f3a91";

// ------------------------------------------------------------------------------ PostgreSQL

/// A PostgreSQL cluster of its own: initdb'ed in a temp dir owned by `postgres`, listening on
/// 127.0.0.1:`port` (and a unix socket in the same dir), password auth (scram-sha-256).
pub(crate) struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    uid: u32,
    gid: u32,
    log: PathBuf,
    child: Option<Child>,
}

fn id_of(flag: &str) -> u32 {
    let out = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .expect("run `id`");
    assert!(
        out.status.success(),
        "there is no `postgres` user: run scripts/install-test-deps.sh (it installs postgresql)"
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("numeric id")
}

fn postgres_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("initdb").is_file())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); run \
             scripts/install-test-deps.sh (as root) to install the test dependencies"
        )
    })
}

impl Postgres {
    pub(crate) fn init() -> Self {
        let bin = postgres_bin();
        proc::require_tool("psql");
        let (uid, gid) = (id_of("-u"), id_of("-g"));
        let dir = tempdir("ra-it-pg-");
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the pg dir");
        let pwfile = dir.path().join("pw");
        fs::write(&pwfile, PG_PASSWORD).unwrap();
        std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).unwrap();
        let log = dir.path().join("postgres.log");
        fs::write(&log, "").unwrap();
        write_tls_pki(dir.path(), uid, gid);
        let mut cmd = Command::new(bin.join("initdb"));
        cmd.args(["-D"])
            .arg(dir.path().join("data"))
            .args([
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .env("LC_ALL", "C")
            .current_dir(dir.path())
            .uid(uid)
            .gid(gid);
        let out = proc::run(&mut cmd, None, Duration::from_secs(120));
        assert!(out.success(), "initdb failed\n{}", out.describe());
        let mut pg = Self {
            bin,
            port: free_port(),
            dir,
            uid,
            gid,
            log,
            child: None,
        };
        pg.start();
        pg
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let offset = fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0) as usize;
        let logf = fs::OpenOptions::new().append(true).open(&self.log).unwrap();
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args([
                "-c",
                "fsync=off",
                "-c",
                "max_connections=30",
                "-c",
                "ssl=on",
            ])
            .arg("-c")
            .arg(format!(
                "ssl_cert_file={}",
                self.dir.path().join("tls.crt").display()
            ))
            .arg("-c")
            .arg(format!(
                "ssl_key_file={}",
                self.dir.path().join("tls.key").display()
            ))
            .env("LC_ALL", "C")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .uid(self.uid)
            .gid(self.gid)
            // Its own process group, so `kill_all` reaches the postmaster and its children.
            .process_group(0);
        let child = cmd.spawn().expect("start postgres");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = fs::read(&self.log).unwrap_or_default();
            let text = String::from_utf8_lossy(text.get(offset..).unwrap_or_default());
            if text.contains("ready to accept connections") {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "postgres exited with {status} before it was ready:\n{}",
                    tail(&self.log, 30)
                );
            }
            assert!(
                Instant::now() < deadline,
                "postgres not ready within 60 s:\n{}",
                tail(&self.log, 30)
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fast shutdown (SIGINT: clients are disconnected), SIGKILL after 30 s.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGKILL to the postmaster and every backend at once (a crash, or the OOM killer taking
    /// the container); `restart` then runs crash recovery from the WAL.
    pub(crate) fn kill_all(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .status();
        let _ = child.wait();
        // Backends of the group are not our children: wait until the group is gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let alive = Command::new("kill")
                .args(["-0", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !alive {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("postgres processes survived SIGKILL for 10 s");
    }

    /// Starts the cluster again (after `kill_all`), on the same port and data.
    pub(crate) fn restart(&mut self) {
        self.start();
    }

    pub(crate) fn url(&self) -> String {
        format!(
            "postgres://postgres:{PG_PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        )
    }
}

/// A test CA (`ca.pem`) and a server certificate for `localhost` signed by it (`tls.crt`,
/// `tls.key`, owned by `postgres`, as PostgreSQL requires of its key).
fn write_tls_pki(dir: &Path, uid: u32, gid: u32) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.distinguished_name
        .push(DnType::CommonName, "registry-auth it PostgreSQL CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).expect("self-sign CA");
    let issuer = Issuer::new(ca, &ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).expect("leaf params");
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).expect("sign leaf");
    fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    for (name, text) in [
        ("tls.crt", leaf_cert.pem()),
        ("tls.key", leaf_key.serialize_pem()),
    ] {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
    }
}

/// Runs SQL with psql (the real client) on the cluster at `port`, failing the test on an error.
fn psql(port: u16, sql: &str) -> CmdOutput {
    let mut cmd = Command::new("psql");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args([
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-qAt",
        ])
        .args(["-c", sql])
        .env("PGPASSWORD", PG_PASSWORD);
    let out = proc::run(&mut cmd, None, Duration::from_secs(30));
    assert!(out.success(), "psql failed\n{}", out.describe());
    out
}

/// psql's output for `sql` on `pg` (for other tests' assertions).
pub(crate) fn psql_as_postgres(pg: &Postgres, sql: &str) -> String {
    psql(pg.port, sql).stdout
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

// ------------------------------------------------------------------------------ helpers

/// Runs SQL on the test's database: psql for PostgreSQL, the library for SQLite.
enum Db {
    /// The port of the cluster.
    Postgres(u16),
    Sqlite(PathBuf),
}

impl Db {
    fn exec(&self, sql: &str) {
        match self {
            Db::Postgres(port) => {
                psql(*port, sql);
            }
            Db::Sqlite(file) => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let db = registry_auth::sql::SqlDb::parse(
                    &format!("sqlite:{}", file.display()),
                    Path::new("/"),
                    1,
                    Duration::from_secs(5),
                )
                .unwrap();
                rt.block_on(db.execute(sql))
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        }
    }
}

/// `registry-auth ARGS` with `stdin`.
fn cli(args: &[&str], stdin: Option<&str>) -> CmdOutput {
    let mut cmd = server::command();
    cmd.args(args);
    proc::run(&mut cmd, stdin, Duration::from_secs(60))
}

fn cli_ok(args: &[&str], stdin: Option<&str>) -> CmdOutput {
    let out = cli(args, stdin);
    assert!(out.success(), "expected success\n{}", out.describe());
    out
}

/// `(HTTP status, granted actions)` for one scope.
fn grant(srv: &AuthServer, creds: Option<(&str, &str)>, scope: &str) -> (u16, Vec<String>) {
    let tr = fetch_token(&srv.realm(), Some(SERVICE), &[scope], creds, &[]);
    let actions = tr
        .token
        .as_deref()
        .map(|t| {
            let claims = jwt::decode(t).expect("decode token").claims;
            claims["access"][0]["actions"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        })
        .unwrap_or_default();
    (tr.response.status, actions)
}

fn expect(srv: &AuthServer, creds: Option<(&str, &str)>, scope: &str, status: u16, want: &[&str]) {
    let (got_status, got) = grant(srv, creds, scope);
    assert_eq!(
        (
            got_status,
            got.iter().map(String::as_str).collect::<Vec<_>>()
        ),
        (status, want.to_vec()),
        "{creds:?} {scope}\nserver log:\n{}",
        srv.log_tail(25)
    );
}

/// Polls `check` for up to `secs` seconds.
fn eventually(what: &str, secs: u64, srv: &AuthServer, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "{what}: not within {secs} s\nserver log:\n{}",
        srv.log_tail(40)
    );
}

fn log_text(srv: &AuthServer) -> String {
    strip_ansi(&String::from_utf8_lossy(
        &fs::read(&srv.log).unwrap_or_default(),
    ))
}

/// POSTs a form to the token endpoint (the OAuth2 refresh grant).
fn post_form(srv: &AuthServer, body: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(&srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST /auth HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: \
         application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        srv.addr,
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn refresh(srv: &AuthServer, refresh_token: &str) -> u16 {
    let body = format!(
        "grant_type=refresh_token&refresh_token={}&service={}&client_id=it&scope={}",
        urlencode(refresh_token),
        urlencode(SERVICE),
        urlencode("repository:alice/app:pull")
    );
    post_form(srv, &body).0
}

fn write_config(dir: &Path, url: &str) -> PathBuf {
    let keys = KeyFiles::write(KeySetup::EcKid, &dir.join("keys"));
    fs::write(dir.join("db-url"), format!("{url}\n")).unwrap();
    fs::write(
        dir.join("refresh.secret"),
        "c3FsLWl0LXJlZnJlc2gtc2VjcmV0LW9mLWF0LWxlYXN0LTMyLWJ5dGVz",
    )
    .unwrap();
    let yaml = format!(
        "server:\n  addr: \"127.0.0.1:0\"\n\
         token:\n  issuer: {}\n{}  refresh:\n    enabled: true\n    secret_file: refresh.secret\n\
         credential_cache:\n  ttl: 0s\n\
         lockout:\n  enabled: false\n\
         users:\n  \"\": {{}}\n\
         acl:\n  - match: {{account: alice, name: \"static/*\"}}\n    actions: [pull]\n    \
         comment: the static ACL is asked before acl_sql\n\
         sql_auth:\n  url_file: db-url\n  timeout: 2s\n\
         acl_sql:\n  url_file: db-url\n  timeout: 2s\n  cache_ttl: 1s\n",
        yaml_str(ISSUER),
        keys.token_yaml()
    );
    let path = dir.join("config.yml");
    fs::write(&path, yaml).unwrap();
    path
}

// ------------------------------------------------------------------------------ the scenario

fn scenario(db: &Db, mut pg: Option<&mut Postgres>, dir: &Path, url: &str) {
    let started = Instant::now();
    let config = write_config(dir, url);
    let c = config.to_str().unwrap();

    // The CLI creates the schema and the users.
    let out = cli_ok(&["db", "migrate", "--config", c], None);
    assert!(
        out.stdout.contains("applied 0001_users_and_acl"),
        "{}",
        out.describe()
    );
    let out = cli_ok(&["db", "migrate", "--config", c], None);
    assert!(out.stdout.contains("schema up to date (version 1)"));
    cli_ok(
        &[
            "users", "add", "--config", c, "alice", "--labels", "team=dev", "--labels", "team=ops",
        ],
        Some("alice-pass-1\n"),
    );
    cli_ok(
        &["users", "add", "--config", c, "bob"],
        Some("bob-pass-1\n"),
    );
    let again = cli(&["users", "add", "--config", c, "alice"], Some("x\n"));
    assert!(
        !again.success() && again.stderr.contains("already exists"),
        "{}",
        again.describe()
    );
    let list = cli_ok(&["users", "list", "--config", c], None);
    assert!(
        list.stdout
            .contains(r#"alice	labels {"team":["dev","ops"]}"#)
            && list.stdout.contains("bob")
            && list.stdout.contains("2 users")
            && !list.stdout.contains("$2"),
        "{}",
        list.describe()
    );

    // ACL rows, inserted out of order: `seq` decides.
    db.exec(
        r#"INSERT INTO registry_auth_acl (seq, entry) VALUES
           (30, '{"match": {}, "actions": [], "comment": "everything else is denied"}'),
           (10, '{"match": {"account": "alice", "name": "alice/*"}, "actions": ["*"]}'),
           (20, '{"match": {"labels": {"team": "dev"}, "name": "team/*"}, "actions": ["pull"]}')"#,
    );
    let acl = cli_ok(&["acl", "list", "--config", c], None);
    let order: Vec<&str> = acl
        .stdout
        .lines()
        .filter(|l| l.starts_with("seq "))
        .map(|l| l.split(':').next().unwrap_or_default())
        .collect();
    assert_eq!(order, ["seq 10", "seq 20", "seq 30"], "{}", acl.describe());

    let srv = AuthServer::start(&config, &dir.join("server.log"));
    // Both databases are reached at start-up (a problem would show in the log at once).
    eventually("the start-up check of the databases", 15, &srv, || {
        let log = log_text(&srv);
        log.contains("database ready") && log.contains("rows=3") && log.contains("ACL rows loaded")
    });
    let alice = Some(("alice", "alice-pass-1"));
    expect(
        &srv,
        alice,
        "repository:alice/app:pull,push",
        200,
        &["pull", "push"],
    );
    expect(&srv, alice, "repository:team/app:pull,push", 200, &["pull"]);
    // The static `acl` decides first (acl_sql's seq 30 would deny).
    expect(
        &srv,
        alice,
        "repository:static/app:pull,push",
        200,
        &["pull"],
    );
    expect(
        &srv,
        Some(("bob", "bob-pass-1")),
        "repository:team/app:pull",
        200,
        &[],
    );
    expect(&srv, None, "repository:team/app:pull", 200, &[]);
    expect(
        &srv,
        Some(("alice", "wrong")),
        "repository:alice/app:pull",
        401,
        &[],
    );
    expect(
        &srv,
        Some(("carol", "x")),
        "repository:alice/app:pull",
        401,
        &[],
    );
    assert!(
        srv.log_when(|t| t.contains("acl_sql seq 10"))
            .contains("acl_sql seq 10"),
        "the audit log names the deciding row\n{}",
        srv.log_tail(20)
    );

    // A refresh token for a SQL user (offline access).
    let tr = fetch_token(
        &srv.realm(),
        Some(SERVICE),
        &["repository:alice/app:pull"],
        alice,
        &[("offline_token", "true"), ("client_id", "it")],
    );
    let refresh_token = tr.response.json()["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh_token: {:?}", tr.response))
        .to_owned();
    assert_eq!(refresh(&srv, &refresh_token), 200);

    // A changed row is picked up after cache_ttl (1 s), without a restart.
    db.exec(
        r#"UPDATE registry_auth_acl SET entry = '{"match": {"labels": {"team": "dev"}, "name": "team/*"}, "actions": ["pull", "push"]}' WHERE seq = 20"#,
    );
    eventually("the changed row is in force", 15, &srv, || {
        grant(&srv, alice, "repository:team/app:pull,push").1 == ["pull", "push"]
    });

    // A broken row: the previous ACL stays, and the log says which row.
    db.exec(
        r#"INSERT INTO registry_auth_acl (seq, entry) VALUES (15, '{"match": {"name": "/[unclosed/"}, "actions": ["pull"]}')"#,
    );
    eventually("the broken row is logged with its seq", 15, &srv, || {
        let log = log_text(&srv);
        log.contains("row seq=15: match.name") && log.contains("previous ACL")
    });
    expect(
        &srv,
        alice,
        "repository:team/app:pull,push",
        200,
        &["pull", "push"],
    );
    expect(&srv, alice, "repository:alice/app:delete", 200, &["delete"]);
    let broken = cli(&["acl", "list", "--config", c], None);
    assert!(
        !broken.success() && broken.stdout.contains("BROKEN: row seq=15: match.name"),
        "{}",
        broken.describe()
    );
    db.exec("DELETE FROM registry_auth_acl WHERE seq = 15");
    eventually("the fixed table is in force again", 15, &srv, || {
        log_text(&srv).contains("readable and valid again")
    });

    // The database goes away: logins that need it fail with a 5xx (never a 401), the kept ACL
    // still answers; it comes back: logins work again, no restart.
    if let Some(pg) = pg.as_deref_mut() {
        pg.stop();
        let (status, _) = grant(&srv, alice, "repository:alice/app:pull");
        assert!(
            (500..600).contains(&status),
            "a login with the database down: {status}\n{}",
            srv.log_tail(20)
        );
        expect(&srv, None, "repository:team/app:pull", 200, &[]);
        eventually("the failed ACL read is logged", 15, &srv, || {
            log_text(&srv).contains("acl_sql: cannot read the ACL table")
        });
        pg.start();
        eventually("logins work again after the restart", 30, &srv, || {
            grant(&srv, alice, "repository:alice/app:pull").0 == 200
        });
        expect(
            &srv,
            alice,
            "repository:alice/app:pull,push",
            200,
            &["pull", "push"],
        );
    }

    // A new password: the old one and the old refresh token stop working.
    cli_ok(
        &["users", "passwd", "--config", c, "alice"],
        Some("alice-pass-2\n"),
    );
    expect(&srv, alice, "repository:alice/app:pull", 401, &[]);
    expect(
        &srv,
        Some(("alice", "alice-pass-2")),
        "repository:alice/app:pull",
        200,
        &["pull"],
    );
    assert_eq!(refresh(&srv, &refresh_token), 401);
    // Removed users are unknown.
    cli_ok(&["users", "remove", "--config", c, "bob"], None);
    expect(
        &srv,
        Some(("bob", "bob-pass-1")),
        "repository:team/app:pull",
        401,
        &[],
    );
    let gone = cli(&["users", "remove", "--config", c, "bob"], None);
    assert!(!gone.success() && gone.stderr.contains("no user"));

    // The database password is nowhere in the log or the CLI's answers.
    let everything = format!(
        "{}{}{}{}",
        srv.synced_log(),
        list.combined(),
        acl.combined(),
        broken.combined()
    );
    assert!(
        !everything.contains(PG_PASSWORD),
        "the database password leaked"
    );
    assert_log_has_no_secrets(
        &srv.log,
        &[
            ("alice".into(), "alice-pass-1".into()),
            ("alice".into(), "alice-pass-2".into()),
            ("bob".into(), "bob-pass-1".into()),
        ],
        &[refresh_token],
    );
    eprintln!(
        "sql scenario ({}): {:.1?}",
        if pg.is_some() { "postgres" } else { "sqlite" },
        started.elapsed()
    );
}

#[test]
fn sql_users_and_acl_on_postgresql() {
    let mut pg = Postgres::init();
    let dir = tempdir("ra-it-sql-pg-");
    let url = pg.url();
    let port = pg.port;
    scenario(&Db::Postgres(port), Some(&mut pg), dir.path(), &url);
    // psql sees the schema registry-auth created.
    let tables = psql(
        port,
        "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables \
         WHERE table_name LIKE 'registry_auth_%'",
    );
    assert_eq!(
        tables.stdout.trim(),
        "registry_auth_acl,registry_auth_schema,registry_auth_users"
    );
    migrate_from_xorm(port, dir.path());
    connection_variants(&pg);
}

/// TLS (`sslmode=verify-full` against the cluster's test CA, through rustls) and a unix socket
/// (`host=` the socket directory); a server the CA does not vouch for is refused.
fn connection_variants(pg: &Postgres) {
    let pgdir = pg.dir.path();
    let ca = pgdir.join("ca.pem");
    for (what, url, works) in [
        (
            "TLS, verified",
            format!(
                "postgres://postgres:{PG_PASSWORD}@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
                pg.port,
                ca.display()
            ),
            true,
        ),
        (
            "TLS, unknown CA",
            format!(
                "postgres://postgres:{PG_PASSWORD}@localhost:{}/postgres?sslmode=verify-full",
                pg.port
            ),
            false,
        ),
        (
            "unix socket",
            format!(
                "postgres://postgres:{PG_PASSWORD}@localhost:{}/postgres?host={}",
                pg.port,
                pgdir.display()
            ),
            true,
        ),
    ] {
        let dir = tempdir("ra-it-sql-conn-");
        let config = write_config(dir.path(), &url);
        let out = cli(
            &["users", "list", "--config", config.to_str().unwrap()],
            None,
        );
        assert_eq!(out.success(), works, "{what}\n{}", out.describe());
        assert!(
            !out.combined().contains(PG_PASSWORD),
            "{what}: password shown"
        );
        if works {
            assert!(out.stdout.contains("dave"), "{what}\n{}", out.describe());
        } else {
            assert!(
                out.stderr
                    .contains("invalid peer certificate: UnknownIssuer"),
                "{what}\n{}",
                out.describe()
            );
        }
    }
    // An account without DDL rights (PostgreSQL 15: no CREATE on `public`) and with only SELECT
    // works once the schema is applied: start-up reads registry_auth_schema only.
    psql(
        pg.port,
        "CREATE ROLE reader LOGIN PASSWORD 'reader-pw-1'; GRANT SELECT ON registry_auth_schema, \
         registry_auth_users, registry_auth_acl TO reader;",
    );
    let dir = tempdir("ra-it-sql-conn-");
    let config = write_config(
        dir.path(),
        &format!(
            "postgres://reader:reader-pw-1@127.0.0.1:{}/postgres",
            pg.port
        ),
    );
    let c = config.to_str().unwrap();
    let out = cli_ok(&["users", "list", "--config", c], None);
    assert!(out.stdout.contains("dave"), "{}", out.describe());
    cli_ok(&["acl", "list", "--config", c], None);
    let denied = cli(
        &["users", "add", "--config", c, "frank"],
        Some("frank-pass\n"),
    );
    assert!(
        !denied.success() && denied.stderr.contains("permission denied"),
        "{}",
        denied.describe()
    );
    // psql confirms the server speaks TLS.
    let ssl = psql(
        pg.port,
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    );
    assert_eq!(ssl.stdout.trim(), "t", "psql negotiated TLS by default");
}

/// The SQL of docs/src/users/sql.md ("From docker_auth's xorm_auth/acl_xorm"), verbatim (checked
/// below).
const DOCS_XORM_SQL: &str = r#"
INSERT INTO registry_auth_users (name, password_hash, labels)
SELECT DISTINCT ON (username) username, password_hash,
       COALESCE(NULLIF(NULLIF(labels, ''), 'null'), '{}')::jsonb
FROM xorm_user ORDER BY username, id DESC;             -- docker_auth used the newest row

INSERT INTO registry_auth_acl (seq, entry)
SELECT 10 * row_number() OVER (ORDER BY seq), jsonb_strip_nulls(jsonb_build_object(
         'match', jsonb_build_object(
           'account', e->'Match'->'Account', 'type', e->'Match'->'Type',
           'name', e->'Match'->'Name', 'service', e->'Match'->'Service',
           'ip', e->'Match'->'IP', 'labels', e->'Match'->'Labels'),
         'actions', e->'Actions', 'comment', e->'Comment'))
FROM (SELECT seq, acl_entry::jsonb AS e FROM xorm_acl_entry) AS x;
"#;

/// docker_auth's xorm tables (as its Sync2 creates them, with Go-cased JSON), copied with the
/// documented SQL: the users and rows work.
fn migrate_from_xorm(port: u16, dir: &Path) {
    let hash = crate::common::keys::bcrypt_hash("dave-pass");
    psql(
        port,
        &format!(
            r#"CREATE TABLE xorm_user (id BIGSERIAL PRIMARY KEY, username VARCHAR(128) NOT NULL,
                 password_hash VARCHAR(128) NOT NULL, labels TEXT);
               CREATE TABLE xorm_acl_entry (acl_entry TEXT, seq BIGINT);
               INSERT INTO xorm_user (username, password_hash, labels) VALUES
                 ('dave', 'old-hash', 'null'),
                 ('dave', '{hash}', '{{"team":["dev"]}}'),
                 ('erin', '{hash}', '');
               INSERT INTO xorm_acl_entry (acl_entry, seq) VALUES
                 ('{{"Match":{{"Account":null,"Type":null,"Name":null,"IP":null,"Service":null,"Labels":null}},"Actions":[],"Comment":"deny the rest"}}', 9),
                 ('{{"Match":{{"Account":"dave","Type":null,"Name":"dave/*","IP":null,"Service":null,"Labels":null}},"Actions":["*"],"Comment":null}}', 5),
                 ('{{"Match":{{"Account":null,"Type":"repository","Name":"team/*","IP":"127.0.0.0/8","Service":null,"Labels":{{"team":"dev"}}}},"Actions":["pull"],"Comment":"team pulls"}}', 7);
               DELETE FROM registry_auth_acl;"#
        ),
    );
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/src/users/sql.md"
    ))
    .expect("read docs/src/users/sql.md");
    assert!(
        page.contains(DOCS_XORM_SQL.trim()),
        "docs/src/users/sql.md no longer shows the SQL this test runs"
    );
    psql(port, DOCS_XORM_SQL);
    let c = dir.join("config.yml");
    let c = c.to_str().unwrap();
    let acl = cli_ok(&["acl", "list", "--config", c], None);
    let rows: Vec<&str> = acl
        .stdout
        .lines()
        .filter(|l| l.starts_with("seq "))
        .collect();
    assert_eq!(
        rows,
        [
            r#"seq 10: match {account: "dave", name: "dave/*"} actions [*]"#,
            r#"seq 20: match {type: "repository", name: "team/*", ip: "127.0.0.0/8", labels: {team: "dev"}} actions [pull] # team pulls"#,
            "seq 30: match {} actions [] # deny the rest",
        ],
        "{}",
        acl.describe()
    );
    let users = cli_ok(&["users", "list", "--config", c], None);
    assert!(
        users.stdout.contains("dave\tlabels {\"team\":[\"dev\"]}\n")
            && users.stdout.contains("erin\n"),
        "{}",
        users.describe()
    );
    let explain = cli_ok(
        &[
            "acl",
            "explain",
            "--config",
            c,
            "--account",
            "dave",
            "--labels",
            "team=dev",
            "--ip",
            "127.0.0.1",
            "repository:team/x:pull,push",
            "repository:dave/x:push",
        ],
        None,
    );
    assert!(
        explain
            .stdout
            .contains("granted: pull\n  decided by acl_sql row seq=20")
            && explain
                .stdout
                .contains("granted: push\n  decided by acl_sql row seq=10"),
        "{}",
        explain.describe()
    );
}

#[test]
fn sql_users_and_acl_on_sqlite() {
    let dir = tempdir("ra-it-sql-lite-");
    let file = dir.path().join("registry-auth.db");
    // Relative to the config folder.
    scenario(
        &Db::Sqlite(file.clone()),
        None,
        dir.path(),
        "sqlite:registry-auth.db",
    );
    assert!(file.is_file());
}

/// A NUL in a user name (which PostgreSQL cannot store in text) is a 401 like any unknown user,
/// in Basic credentials and in the OAuth2 form, and marks neither `sql_auth` nor `acl_sql` down:
/// anyone could otherwise keep readiness degraded.
#[test]
fn a_nul_in_a_user_name_is_a_401_and_leaves_both_backends_up() {
    use crate::common::http::{basic, get};
    use crate::faults::readiness;
    let pg = Postgres::init();
    let dir = tempdir("ra-it-sql-nul-");
    let config = write_config(dir.path(), &pg.url());
    let c = config.to_str().unwrap();
    cli_ok(&["db", "migrate", "--config", c], None);
    cli_ok(
        &["users", "add", "--config", c, "alice"],
        Some("alice-pass-1\n"),
    );
    psql(
        pg.port,
        r#"INSERT INTO registry_auth_acl (seq, entry) VALUES
           (10, '{"match": {"account": "alice", "name": "alice/*"}, "actions": ["*"]}')"#,
    );
    let srv = AuthServer::start(&config, &dir.path().join("server.log"));
    eventually("the start-up check of the databases", 15, &srv, || {
        let log = log_text(&srv);
        log.contains("database ready") && log.contains("ACL rows loaded")
    });
    let alice = Some(("alice", "alice-pass-1"));
    expect(&srv, alice, "repository:alice/app:pull", 200, &["pull"]);
    assert_eq!(readiness(&srv, "sql_auth"), "up");
    assert_eq!(readiness(&srv, "acl_sql"), "up");

    let url = format!(
        "{}?service={}&scope={}",
        srv.realm(),
        urlencode(SERVICE),
        urlencode("repository:alice/app:pull")
    );
    for name in ["al\0ice", "alice\0", "\0"] {
        let r = get(&url, &[("Authorization", basic(name, "alice-pass-1"))]);
        assert_eq!(r.status, 401, "{name:?}: {r:?}\n{}", srv.log_tail(10));
    }
    let form = format!(
        "grant_type=password&username=al%00ice&password=alice-pass-1&client_id=it&service={}\
         &scope={}",
        urlencode(SERVICE),
        urlencode("repository:alice/app:pull")
    );
    let (status, body) = post_form(&srv, &form);
    assert_eq!(status, 401, "{body}\n{}", srv.log_tail(10));
    assert_eq!(body["error"], "invalid_grant", "{body}");
    // A NUL in the repository name never reaches acl_sql: the scope is refused (400).
    let tr = fetch_token(
        &srv.realm(),
        Some(SERVICE),
        &["repository:al\0ice/app:pull"],
        alice,
        &[],
    );
    assert_eq!(tr.response.status, 400, "{:?}", tr.response);

    // Neither backend was marked down, and both still answer.
    assert_eq!(readiness(&srv, "sql_auth"), "up", "{}", srv.log_tail(10));
    assert_eq!(readiness(&srv, "acl_sql"), "up", "{}", srv.log_tail(10));
    expect(
        &srv,
        alice,
        "repository:alice/app:pull,push",
        200,
        &["pull", "push"],
    );
}
