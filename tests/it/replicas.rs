//! Many replicas, one truth: three `registry-auth serve` processes, each with its own config
//! file and data dir, behind a real nginx (Debian's, round robin over the three), sharing one
//! `store`: Redis, then PostgreSQL (real servers on loopback ports, started here). What one
//! replica learns, all of them know:
//!
//! * a refresh-token revocation written with the real `registry-auth tokens revoke --config`
//!   of one replica's config (by token and by user) is refused by every replica, directly and
//!   through the proxy;
//! * failed logins spread over the replicas lock the account on all of them;
//! * a web login (fake GitHub) started through the proxy, so begun and finished on different
//!   replicas, mints a password that works on each replica; signing out on one ends it on all.
//!
//! And through a store outage under load (Redis, then PostgreSQL, killed with SIGKILL and
//! started again, no restart of registry-auth): a revoked refresh token is never accepted (the refresh grant fails
//! closed with 503 + Retry-After while the store is down), password logins keep working with
//! the lockout counting per replica (the fallback metric grows), and everything is normal again
//! once the store is back.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use crate::common::http::{self, basic};
use crate::common::idp::{FakeGithub, GhUser};
use crate::common::keys::{KeyFiles, KeySetup, bcrypt_hash, yaml_str};
use crate::common::proc::{ChildGuard, StopMode, free_port, require_tool, tail};
use crate::common::redis::{Persistence, Redis};
use crate::common::server::{AuthServer, run_cli};
use crate::common::stack::{ISSUER, SERVICE, tempdir};
use crate::common::webstack::{CLIENT_ID, CLIENT_SECRET, login_at_fake, sign_out};

pub(crate) const ALICE_PASSWORD: &str = "alice-Pass-3141";
pub(crate) const BOB_PASSWORD: &str = "bob-Pass-2718";

/// nginx in front of the replicas: `upstream` round robin, no retry on another replica (a
/// failure shows as it is), the client's Host and address passed on.
struct Nginx {
    port: u16,
    dir: PathBuf,
    _guard: ChildGuard,
}

impl Nginx {
    fn start(dir: &Path, upstreams: &[&str]) -> Self {
        fs::create_dir_all(dir.join("tmp")).unwrap();
        let port = free_port();
        let servers: String = upstreams
            .iter()
            .map(|u| format!("    server {u};\n"))
            .collect();
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 256; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/tmp/body;\n  \
             proxy_temp_path {d}/tmp/proxy;\n  fastcgi_temp_path {d}/tmp/fastcgi;\n  \
             uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n  \
             upstream registry_auth {{\n{servers}  }}\n  server {{\n    listen \
             127.0.0.1:{port};\n    location / {{\n      proxy_pass http://registry_auth;\n      \
             proxy_next_upstream off;\n      proxy_set_header Host $http_host;\n      \
             proxy_set_header X-Forwarded-For $remote_addr;\n    }}\n  }}\n}}\n"
        );
        let conf_path = dir.join("nginx.conf");
        fs::write(&conf_path, conf).unwrap();
        let log = dir.join("nginx.out");
        let out = fs::File::create(&log).unwrap();
        let child = Command::new(require_tool("nginx"))
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start nginx");
        let mut guard = ChildGuard::new(
            "nginx",
            child,
            StopMode::TermThenKill(Duration::from_secs(5)),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = guard.try_wait() {
                panic!(
                    "nginx exited with {status}:\n{}\n{}",
                    tail(&log, 20),
                    tail(&dir.join("error.log"), 20)
                );
            }
            assert!(Instant::now() < deadline, "nginx did not start");
            sleep(Duration::from_millis(20));
        }
        Self {
            port,
            dir: dir.to_owned(),
            _guard: guard,
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The upstream address of each request so far, in order (from the access log).
    fn access_log(&self) -> String {
        fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }
}

/// Three replicas sharing `store_yaml` (and one session secret, refresh secret, signing key and
/// user list), each with its own config file and data dir.
pub(crate) struct Replicas {
    pub(crate) servers: Vec<AuthServer>,
    pub(crate) configs: Vec<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Replicas {
    pub(crate) fn start(store_yaml: &str, web: Option<&FakeGithub>) -> Self {
        Self::start_n(3, store_yaml, web)
    }

    /// [`Replicas::start`] with `n` replicas.
    pub(crate) fn start_n(n: usize, store_yaml: &str, web: Option<&FakeGithub>) -> Self {
        let dir = tempdir("ra-it-replicas");
        let shared = dir.path().join("shared");
        fs::create_dir_all(&shared).unwrap();
        let keys = KeyFiles::write(KeySetup::EcKid, &shared.join("keys"));
        let private = |name: &str, text: &str| {
            let p = shared.join(name);
            fs::write(&p, text).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
            }
            p
        };
        let session = private(
            "session.secret",
            "shared-session-secret-of-the-replicas-0123456789\n",
        );
        let refresh = private(
            "refresh.secret",
            "shared-refresh-secret-of-the-replicas-9876543210\n",
        );
        let users = format!(
            "users:\n  alice: {{password: {}}}\n  bob: {{password: {}}}\n",
            yaml_str(&bcrypt_hash(ALICE_PASSWORD)),
            yaml_str(&bcrypt_hash(BOB_PASSWORD))
        );
        let github = web.map_or(String::new(), |gh| {
            format!(
                "github_auth:\n  organization: acme\n  client_id: {CLIENT_ID}\n  \
                 client_secret: {CLIENT_SECRET}\n  github_web_uri: {}\n  github_api_uri: {}\n",
                gh.web(),
                gh.api()
            )
        });
        let mut servers = Vec::new();
        let mut configs = Vec::new();
        for i in 0..n {
            let own = dir.path().join(format!("replica-{i}"));
            fs::create_dir_all(&own).unwrap();
            let config = own.join("registry-auth.yml");
            let yaml = format!(
                "server:\n  addr: \"127.0.0.1:0\"\n  trusted_proxies: [127.0.0.1]\n  \
                 session_secret_file: {}\ndata_dir: data\ntoken:\n  issuer: {}\n  \
                 expiration: 900\n{}  refresh:\n    enabled: true\n    secret_file: {}\n\
                 lockout: {{max_failures: 3, window: 1m, cooldown: 1m}}\n{users}{store_yaml}\
                 {github}acl:\n  - match: {{account: \"/.+/\"}}\n    actions: [pull]\n",
                yaml_str(&session.display().to_string()),
                yaml_str(ISSUER),
                keys.token_yaml(),
                yaml_str(&refresh.display().to_string()),
            );
            fs::write(&config, yaml).unwrap();
            servers.push(AuthServer::start(&config, &own.join("registry-auth.log")));
            configs.push(config);
        }
        Self {
            servers,
            configs,
            _dir: dir,
        }
    }

    pub(crate) fn bases(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|s| format!("http://{}", s.addr))
            .collect()
    }

    pub(crate) fn diagnostics(&self) -> String {
        self.servers
            .iter()
            .enumerate()
            .map(|(i, s)| format!("--- replica {i} ---\n{}\n", s.log_tail(30)))
            .collect()
    }
}

/// `GET /auth` with Basic credentials (offline: with a refresh token).
pub(crate) fn password_grant(
    base: &str,
    user: &str,
    password: &str,
    offline: bool,
) -> http::Response {
    let mut params = vec![("service", SERVICE), ("scope", "repository:x/y:pull")];
    if offline {
        params.push(("offline_token", "true"));
    }
    http::get(
        &format!("{base}/auth?{}", http::query(&params)),
        &[("Authorization", basic(user, password))],
    )
}

pub(crate) fn refresh_token(base: &str, user: &str, password: &str) -> String {
    let r = password_grant(base, user, password, true);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["refresh_token"].as_str().unwrap().to_owned()
}

pub(crate) fn refresh_grant(base: &str, token: &str) -> http::Response {
    http::post_form(
        &format!("{base}/auth"),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("service", SERVICE),
            ("client_id", "replicas-test"),
        ],
        &[],
    )
}

pub(crate) fn revoke(config: &Path, args: &[&str]) {
    let config = config.display().to_string();
    let mut all = vec!["tokens", "revoke", "--config", &config];
    all.extend_from_slice(args);
    let out = run_cli(&all);
    assert!(out.success(), "{}", out.describe());
    assert!(out.stdout.contains("store"), "{}", out.stdout);
}

/// A refresh token revoked by id through replica 1's config is refused by every replica, and
/// another of alice's (issued by the last replica) still works everywhere; returns that one.
pub(crate) fn revocation_by_id_is_shared(replicas: &Replicas, diag: &dyn Fn() -> String) -> String {
    let bases = replicas.bases();
    let token = refresh_token(&bases[0], "alice", ALICE_PASSWORD);
    let kept = refresh_token(&bases[bases.len() - 1], "alice", ALICE_PASSWORD);
    for base in &bases {
        assert_eq!(refresh_grant(base, &token).status, 200, "{}", diag());
    }
    revoke(&replicas.configs[1], &[&token]);
    for base in &bases {
        assert_eq!(refresh_grant(base, &token).status, 401, "{}", diag());
        assert_eq!(refresh_grant(base, &kept).status, 200, "{}", diag());
    }
    kept
}

/// The acceptance run, on any shared store.
fn one_truth(store_yaml: &str) {
    let gh = FakeGithub::start(CLIENT_ID, CLIENT_SECRET, "unset");
    gh.set_user(GhUser::member("carol", "acme", "platform"));
    let replicas = Replicas::start(store_yaml, Some(&gh));
    let bases = replicas.bases();
    let upstreams: Vec<&str> = replicas.servers.iter().map(|s| s.addr.as_str()).collect();
    let proxy_dir = tempdir("ra-it-nginx");
    let nginx = Nginx::start(proxy_dir.path(), &upstreams);
    let proxy = nginx.base();
    let diag = || {
        format!(
            "{}\n--- nginx ---\n{}",
            replicas.diagnostics(),
            nginx.access_log()
        )
    };

    // Revocation by token id, written through replica 1's config: refused by all.
    let kept = revocation_by_id_is_shared(&replicas, &diag);
    // By user, through replica 2's config; six refreshes through the proxy (two per replica)
    // are all refused.
    revoke(&replicas.configs[2], &["--user", "alice"]);
    for _ in 0..6 {
        let r = refresh_grant(&proxy, &kept);
        assert_eq!(r.status, 401, "{}\n{}", r.text(), diag());
    }
    for base in &bases {
        assert_eq!(refresh_grant(base, &kept).status, 401, "{}", diag());
    }

    // Three wrong passwords for bob, one on each replica: bob is locked out on all of them.
    for base in &bases {
        assert_eq!(
            password_grant(base, "bob", "wrong", false).status,
            401,
            "{}",
            diag()
        );
    }
    for base in &bases {
        let r = password_grant(base, "bob", BOB_PASSWORD, false);
        assert_eq!(r.status, 429, "{}\n{}", r.text(), diag());
        assert!(r.header("retry-after").is_some());
    }
    // Others are not: alice still gets tokens everywhere.
    for base in &bases {
        assert_eq!(
            password_grant(base, "alice", ALICE_PASSWORD, false).status,
            200
        );
    }

    // A web login through the proxy: started on one replica, finished on the next.
    gh.set_redirect_uri(&format!("{proxy}/github_auth"));
    let carol = login_at_fake(&proxy, "github_auth", "carol");
    for base in &bases {
        let r = password_grant(base, "carol", &carol.password, false);
        assert_eq!(r.status, 200, "{}\n{}", r.text(), diag());
    }
    // Signed out on replica 0: refused by every replica.
    let out = sign_out(&bases[0], &carol.password);
    assert!(out.body.contains("revoked"), "{}", out.body);
    for base in &bases {
        assert_eq!(
            password_grant(base, "carol", &carol.password, false).status,
            401,
            "{}",
            diag()
        );
    }
    // /readyz of each reports the shared store up.
    for base in &bases {
        let r = http::get(&format!("{base}/readyz"), &[]);
        assert_eq!(
            r.json()["backends"]["store"]["status"],
            "up",
            "{}",
            r.text()
        );
    }
}

#[test]
fn three_replicas_behind_nginx_share_redis() {
    let redis = Redis::start(Persistence::None);
    one_truth(&format!(
        "store:\n  type: redis\n  url: {}\n",
        yaml_str(&redis.url())
    ));
    // The shared state is there, under its own prefix, authenticated (no account in a key).
    let keys = redis.cli(&["--scan", "--pattern", "registry-auth:shared:*"]);
    assert!(keys.contains("registry-auth:shared:lockout:"), "{keys}");
    assert!(
        keys.contains("registry-auth:shared:revoked-user:"),
        "{keys}"
    );
    assert!(
        keys.contains("registry-auth:shared:revoked-token:"),
        "{keys}"
    );
    assert!(!keys.contains("bob") && !keys.contains("alice"), "{keys}");
}

#[test]
fn three_replicas_behind_nginx_share_postgres() {
    let pg = crate::sql::Postgres::init();
    one_truth(&format!(
        "store:\n  type: postgres\n  url: {}\n",
        yaml_str(&pg.url())
    ));
    let rows = crate::sql::psql_as_postgres(
        &pg,
        "SELECT name, record FROM registry_auth_shared_state ORDER BY name",
    );
    assert!(rows.contains("lockout:"), "{rows}");
    assert!(rows.contains("revoked-user:"), "{rows}");
    assert!(rows.contains("v1."), "records are authenticated: {rows}");
}

/// Answers of one probe during the outage run: (start, end, status).
type Answers = Arc<Mutex<Vec<(Instant, Instant, u16)>>>;

/// A store the outage run kills and starts again.
trait Killable {
    /// The `store:` section.
    fn yaml(&self) -> String;
    /// SIGKILL.
    fn kill(&mut self);
    /// Started again on the same data; returns once it accepts connections.
    fn restart(&mut self);
}

impl Killable for Redis {
    fn yaml(&self) -> String {
        format!("store:\n  type: redis\n  url: {}\n", yaml_str(&self.url()))
    }
    fn kill(&mut self) {
        Redis::kill(self);
    }
    fn restart(&mut self) {
        self.launch();
    }
}

impl Killable for crate::sql::Postgres {
    fn yaml(&self) -> String {
        format!(
            "store:\n  type: postgres\n  url: {}\n",
            yaml_str(&self.url())
        )
    }
    fn kill(&mut self) {
        self.kill_all();
    }
    fn restart(&mut self) {
        crate::sql::Postgres::restart(self);
    }
}

#[test]
fn a_redis_outage_under_load_fails_refresh_closed_and_falls_back_to_local_lockout() {
    outage(&mut Redis::start(Persistence::AofAlways), "Redis");
}

#[test]
fn a_postgres_outage_under_load_fails_refresh_closed_and_falls_back_to_local_lockout() {
    outage(&mut crate::sql::Postgres::init(), "PostgreSQL");
}

/// The shared store killed under load: see the module doc.
fn outage(store: &mut dyn Killable, what: &str) {
    let replicas = Replicas::start(&store.yaml(), None);
    let bases = replicas.bases();
    let revoked = refresh_token(&bases[0], "alice", ALICE_PASSWORD);
    revoke(&replicas.configs[0], &[&revoked]);
    // Issued after the revocation: valid.
    let valid = refresh_token(&bases[1], "bob", BOB_PASSWORD);
    for base in &bases {
        assert_eq!(refresh_grant(base, &revoked).status, 401);
        assert_eq!(refresh_grant(base, &valid).status, 200);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let probes: Vec<(&str, Answers)> = ["revoked", "valid", "password"]
        .into_iter()
        .map(|n| (n, Answers::default()))
        .collect();
    let mut workers = Vec::new();
    for (i, (name, answers)) in probes.iter().enumerate() {
        for w in 0..2 {
            let (name, answers, stop) = (*name, answers.clone(), stop.clone());
            let base = bases[(i + w) % bases.len()].clone();
            let (revoked, valid) = (revoked.clone(), valid.clone());
            workers.push(thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let r = match name {
                        "revoked" => refresh_grant(&base, &revoked),
                        "valid" => refresh_grant(&base, &valid),
                        _ => password_grant(&base, "alice", ALICE_PASSWORD, false),
                    };
                    if r.status == 503 {
                        assert_eq!(r.header("retry-after"), Some("2"));
                    }
                    answers
                        .lock()
                        .unwrap()
                        .push((start, Instant::now(), r.status));
                }
            }));
        }
    }
    sleep(Duration::from_secs(2));
    let killed = Instant::now();
    store.kill();
    sleep(Duration::from_millis(1500));
    // While the store is down: the lockout counts on each replica (3 failures lock bob on the
    // replica that saw them).
    for _ in 0..3 {
        assert_eq!(
            password_grant(&bases[2], "bob", "wrong", false).status,
            401,
            "{}",
            replicas.diagnostics()
        );
    }
    assert_eq!(
        password_grant(&bases[2], "bob", BOB_PASSWORD, false).status,
        429
    );
    // /readyz says so (these replicas have no web login: the store is there for shared state).
    let ready = http::get(&format!("{}/readyz", bases[2]), &[]).json();
    assert_eq!(ready["backends"]["store"]["status"], "down", "{ready}");
    assert_eq!(ready["status"], "degraded", "{ready}");
    sleep(Duration::from_millis(1500));
    store.restart();
    let back = Instant::now();
    // At least 3 s of load after the restart, and until the valid token's last 5 answers since
    // then are 200 (the store reconnects at its next probe, every 2 s; on a loaded machine that
    // can take longer than the 3 s): at most 20 s, then the assertions below show the figures.
    let recovered = || {
        let answers = probes[1].1.lock().unwrap();
        let since: Vec<u16> = answers
            .iter()
            .filter(|(s, _, _)| *s >= back)
            .map(|a| a.2)
            .collect();
        since.len() >= 5 && since[since.len() - 5..].iter().all(|s| *s == 200)
    };
    while back.elapsed() < Duration::from_secs(3)
        || (!recovered() && back.elapsed() < Duration::from_secs(20))
    {
        sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let mut figures = String::new();
    for (name, answers) in &probes {
        let answers = answers.lock().unwrap();
        let count = |from: Instant, to: Instant, status: u16| {
            answers
                .iter()
                .filter(|(s, e, st)| *s >= from && *e <= to && *st == status)
                .count()
        };
        let far = back + Duration::from_secs(3600);
        let (start, end) = (killed - Duration::from_secs(3600), killed);
        figures.push_str(&format!(
            "{name}: before 200={} 401={} | outage 200={} 401={} 503={} | after 200={} 401={} \
             503={} | total {}\n",
            count(start, end, 200),
            count(start, end, 401),
            count(killed, back, 200),
            count(killed, back, 401),
            count(killed, back, 503),
            count(back, far, 200),
            count(back, far, 401),
            count(back, far, 503),
            answers.len()
        ));
        if *name == "valid" {
            let first = answers
                .iter()
                .filter(|(s, _, st)| *s >= back && *st == 200)
                .map(|(_, e, _)| e.duration_since(back))
                .min();
            figures.push_str(&format!(
                "valid: first 200 {first:?} after {what} accepted connections again\n"
            ));
        }
        let statuses: Vec<u16> = answers.iter().map(|a| a.2).collect();
        match *name {
            // Never accepted, whatever the store's state.
            "revoked" => assert!(statuses.iter().all(|s| matches!(s, 401 | 503)), "{figures}"),
            "valid" => {
                assert!(statuses.iter().all(|s| matches!(s, 200 | 503)), "{figures}");
                assert!(
                    count(killed, back, 503) > 0,
                    "no 503 in the outage: {figures}"
                );
                // Normal again after the store is back.
                let last = answers.iter().rev().take(5);
                assert!(last.clone().all(|a| a.2 == 200), "{figures}");
            }
            // Password grants do not need the store: 200 throughout.
            _ => assert!(statuses.iter().all(|s| *s == 200), "{figures}"),
        }
    }
    eprintln!("{what}:\n{figures}");
    // The fallback is counted.
    let metrics = http::get(&format!("{}/metrics", bases[2]), &[]).text();
    let fallbacks: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("registry_auth_lockout_store_fallbacks_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(fallbacks >= 4, "{metrics}");
    // Nothing acknowledged was lost: the revocation holds after the restart.
    for base in &bases {
        assert_eq!(refresh_grant(base, &revoked).status, 401);
        assert_eq!(refresh_grant(base, &valid).status, 200);
        let ready = http::get(&format!("{base}/readyz"), &[]).json();
        assert_eq!(ready["backends"]["store"]["status"], "up", "{ready}");
    }
}
