//! Operations features through the real binary: the TLS listener (verified by a client that
//! trusts only a test CA, HSTS, `tls_min_version`), the unix-socket listener (removed on
//! SIGTERM), `server.path_prefix` with the probes at the root and `registry-auth healthcheck`,
//! trusted proxies, `/readyz`, the Prometheus metrics (also on `server.metrics_addr`), the audit
//! log (text and JSON, no secrets), hot reload (SIGHUP, invalid configs, requests in flight,
//! Kubernetes ConfigMap symlink swaps), the brute-force lockout, and the environment variables.
//!
//! Each test starts its own server(s) on 127.0.0.1 (or a unix socket in its temp dir) and kills
//! them through guards; only the lockout test starts a registry (for `docker login`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use serde_json::Value;

use crate::common::http::{self, basic, fetch_token};
use crate::common::jwt;
use crate::common::keys::{KeyFiles, KeySetup, yaml_str};
use crate::common::proc::{self, ChildGuard, CmdOutput, require_tool, strip_ansi, tail};
use crate::common::server::{self, assert_log_has_no_secrets, run_cli};
use crate::common::stack::{SERVICE, Stack, User, config_yaml, tempdir};

// ------------------------------------------------------------------------------------ helpers

/// The server's default `server:` block in [`config_yaml`], replaced by [`with_server`].
const DEFAULT_SERVER: &str = "server:\n  addr: \"127.0.0.1:0\"\n";

/// `yaml` (from [`config_yaml`]) with `server_lines` (indented by two) as its `server:` block
/// and `extra` (top-level sections) appended.
fn with_server(yaml: &str, server_lines: &str, extra: &str) -> String {
    assert!(yaml.starts_with(DEFAULT_SERVER), "unexpected config shape");
    let mut s = format!("server:\n{server_lines}");
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s.push_str(&yaml[DEFAULT_SERVER.len()..]);
    s.push_str(extra);
    s
}

/// Writes `text` to `path` atomically (a temp file in the same folder, then rename), as editors
/// and config-management tools do.
pub(crate) fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-write");
    fs::write(&tmp, text).expect("write temp config");
    fs::rename(&tmp, path).expect("rename config into place");
}

/// A `registry-auth` child process of this module, with its pid for signals.
#[derive(Debug)]
pub(crate) struct Proc {
    guard: ChildGuard,
    pid: u32,
    log: PathBuf,
    cmdline: String,
    /// The main listener as logged: `127.0.0.1:PORT` or `unix:/path`.
    addr: String,
}

impl Proc {
    /// Starts `registry-auth ARGS` (clean environment plus `env`), output appended to `log`, and
    /// waits for `registry-auth listening addr=…`; panics when it exits first.
    pub(crate) fn start(args: &[&str], env: &[(&str, &str)], log: &Path) -> Self {
        Self::try_start(args, env, log).unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`Self::start`], but an early exit is an `Err` with the log tail.
    fn try_start(args: &[&str], env: &[(&str, &str)], log: &Path) -> Result<Self, String> {
        let offset = fs::metadata(log).map(|m| m.len()).unwrap_or(0) as usize;
        let logf = File::options()
            .create(true)
            .append(true)
            .open(log)
            .expect("open server log");
        let mut cmd = server::command();
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("dup log fd"))
            .stderr(logf);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let cmdline = proc::cmdline(&cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{cmdline}`: {e}"));
        let pid = child.id();
        // SIGTERM first, so a stopped server's log is complete (see `server::STOP`).
        let mut guard = ChildGuard::new("registry-auth", child, server::STOP);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = fs::read(log).unwrap_or_default();
            let text = strip_ansi(&String::from_utf8_lossy(
                text.get(offset..).unwrap_or_default(),
            ));
            if let Some(addr) = text
                .lines()
                .filter(|l| l.contains("registry-auth listening"))
                .find_map(|l| logged_field(l, "addr"))
            {
                return Ok(Self {
                    guard,
                    pid,
                    log: log.to_owned(),
                    cmdline,
                    addr,
                });
            }
            if let Some(status) = guard.try_wait() {
                return Err(format!(
                    "`{cmdline}` exited with {status} before logging `registry-auth listening`; \
                     log:\n{}",
                    tail(log, 30)
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "`{cmdline}` did not log `registry-auth listening` within 20 s; log:\n{}",
                    tail(log, 30)
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://127.0.0.1:PORT`
    pub(crate) fn base(&self) -> String {
        assert!(
            self.addr.starts_with("127.0.0.1:"),
            "not a loopback TCP listener: {}",
            self.addr
        );
        format!("http://{}", self.addr)
    }

    pub(crate) fn port(&self) -> u16 {
        self.addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {}", self.addr))
    }

    /// Sends `sig` (`HUP`, `TERM`) to this child, by pid (the guard still owns the unreaped
    /// child, so the pid cannot have been reused).
    pub(crate) fn signal(&mut self, sig: &str) {
        assert!(
            self.guard.try_wait().is_none(),
            "`{}` is not running (cannot send SIG{sig}); log:\n{}",
            self.cmdline,
            self.log_tail(30)
        );
        let status = Command::new("kill")
            .args(["-s", sig, &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {sig} {} failed", self.pid);
    }

    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.guard.wait_timeout(timeout)
    }

    fn text(&self) -> String {
        strip_ansi(&String::from_utf8_lossy(
            &fs::read(&self.log).unwrap_or_default(),
        ))
    }

    pub(crate) fn log_tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }

    /// The log once `done` holds for it (at most `server::LOG_WAIT`): for lines that should be
    /// present (the server writes them just after it answers).
    pub(crate) fn text_when(&self, done: impl Fn(&str) -> bool) -> String {
        server::log_when(&self.log, 0, done)
    }

    /// Every line logged so far (`server::synced_log`): for counting and absent lines.
    pub(crate) fn synced_text(&self) -> String {
        server::synced_log(&self.log)
    }

    /// Waits until the log has at least `n` lines containing `needle`.
    pub(crate) fn wait_log(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.text().lines().filter(|l| l.contains(needle)).count() >= n {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// Lines containing `needle` among everything logged so far (see [`Self::synced_text`]).
    pub(crate) fn count_log(&self, needle: &str) -> usize {
        self.synced_text()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

/// The value of `key` in a text (`key=value`, `key="value"`) or JSON (`"key":"value"`) log line.
pub(crate) fn logged_field(line: &str, key: &str) -> Option<String> {
    if line.trim_start().starts_with('{') {
        let v: Value = serde_json::from_str(line).ok()?;
        return v.get(key).map(|x| match x {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
    }
    let pat = format!(" {key}=");
    let i = line.find(&pat)? + pat.len();
    let rest = &line[i..];
    if let Some(q) = rest.strip_prefix('"') {
        q.find('"').map(|e| q[..e].to_owned())
    } else {
        Some(rest.split(' ').next().unwrap_or_default().to_owned())
    }
}

/// A started server with its temp dir, keys, users and config.
struct Fixture {
    tmp: tempfile::TempDir,
    keys: KeyFiles,
    config: PathBuf,
    log: PathBuf,
    users: Vec<User>,
}

impl Fixture {
    /// Keys (EC, `kid-libtrust`) and a config from `users`/`anonymous`/`acl`, with
    /// `server_lines` as the `server:` block and `extra` top-level sections.
    fn new(
        prefix: &str,
        users: &[User],
        anonymous: bool,
        acl: &str,
        server_lines: &str,
        extra: &str,
    ) -> Self {
        let tmp = tempdir(prefix);
        let keys = KeyFiles::write(KeySetup::EcKid, &tmp.path().join("keys"));
        let config = tmp.path().join("registry-auth.yml");
        let yaml = config_yaml(&keys, users, anonymous, acl);
        fs::write(&config, with_server(&yaml, server_lines, extra)).expect("write config");
        let log = tmp.path().join("registry-auth.log");
        Self {
            tmp,
            keys,
            config,
            log,
            users: users.to_vec(),
        }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// The config as YAML text with `server_lines`/`extra` (for rewrites during a test).
    fn yaml(&self, anonymous: bool, acl: &str, server_lines: &str, extra: &str) -> String {
        with_server(
            &config_yaml(&self.keys, &self.users, anonymous, acl),
            server_lines,
            extra,
        )
    }

    /// `serve --config CONFIG --listen 127.0.0.1:0` plus `args` (at info level, text).
    fn serve(&self, args: &[&str]) -> Proc {
        let config = self.config.to_string_lossy().into_owned();
        let mut all = vec!["serve", "--config", &config, "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Proc::start(&all, &[], &self.log)
    }

    fn password(&self, user: &str) -> String {
        self.users
            .iter()
            .find(|u| u.name == user)
            .map(|u| u.password.clone())
            .unwrap_or_else(|| panic!("no user {user}"))
    }

    fn secrets(&self) -> Vec<(String, String)> {
        self.users
            .iter()
            .map(|u| (u.name.clone(), u.password.clone()))
            .collect()
    }
}

/// `curl -sS -i --noproxy '*' --max-time 10 ARGS`, with `stdin` (a curl config, for `user = …`
/// so passwords never appear in argv).
fn curl(args: &[&str], stdin: Option<&str>) -> CmdOutput {
    let mut cmd = Command::new(require_tool("curl"));
    cmd.args(["-sS", "-i", "--noproxy", "*", "--max-time", "10"])
        .args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY");
    if stdin.is_some() {
        cmd.args(["-K", "-"]);
    }
    proc::run(&mut cmd, stdin, Duration::from_secs(20))
}

/// Status, headers (lower-case names) and body of `curl -i` output (the last response).
fn curl_response(out: &CmdOutput) -> (u16, BTreeMap<String, String>, String) {
    let text = out.stdout.replace("\r\n", "\n");
    let (head, body) = text
        .split_once("\n\n")
        .unwrap_or_else(|| panic!("no HTTP response\n{}", out.describe()));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line\n{}", out.describe()));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// One sample of the metrics exposition.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("metric line has a value");
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let inner = rest.strip_suffix('}').expect("closing brace");
                let labels = inner
                    .split("\",")
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').expect("label k=v");
                        (k.to_owned(), v.trim_matches('"').to_owned())
                    })
                    .collect();
                (n.to_owned(), labels)
            }
            None => (series.to_owned(), BTreeMap::new()),
        };
        let value = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

/// The value of `name{labels}` (labels given must match; others may be present), or `None`.
fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
        })
        .map(|s| s.value)
}

fn get_metrics(base: &str) -> (String, Vec<Sample>) {
    let r = http::get(&format!("{base}/metrics"), &[]);
    assert_eq!(r.status, 200, "GET {base}/metrics: {r:?}");
    let text = r.text();
    let samples = parse_metrics(&text);
    (text, samples)
}

/// Anonymous or Basic token request; returns the response.
pub(crate) fn token_get(
    base: &str,
    path: &str,
    scopes: &[&str],
    creds: Option<(&str, &str)>,
    headers: &[(&str, String)],
) -> http::Response {
    let mut params = vec![("service", SERVICE)];
    for s in scopes {
        params.push(("scope", s));
    }
    let url = format!("{base}{path}?{}", http::query(&params));
    let mut h: Vec<(&str, String)> = headers.to_vec();
    if let Some((u, p)) = creds {
        h.push(("Authorization", basic(u, p)));
    }
    http::get(&url, &h)
}

/// `(type, name) → granted actions` of a 200 token response.
fn granted_of(r: &http::Response) -> BTreeMap<(String, String), Vec<String>> {
    assert_eq!(r.status, 200, "{r:?}");
    let tok = r.json()["token"].as_str().expect("token").to_owned();
    let claims = jwt::decode(&tok).expect("decode token").claims;
    jwt::granted(&claims)
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().collect()))
        .collect()
}

fn actions_for(r: &http::Response, name: &str) -> Vec<String> {
    granted_of(r)
        .get(&("repository".to_owned(), name.to_owned()))
        .cloned()
        .unwrap_or_default()
}

fn token_of(r: &http::Response) -> String {
    r.json()["token"].as_str().expect("token").to_owned()
}

pub(crate) fn request_id(r: &http::Response) -> String {
    r.header("x-request-id")
        .unwrap_or_else(|| panic!("no x-request-id: {r:?}"))
        .to_owned()
}

/// The audit line (a line with `token issued`/`token refused`) of the request with id `id`.
pub(crate) fn audit_line_of(text: &str, id: &str) -> Option<String> {
    let quoted = format!("\"{id}\"");
    text.lines()
        .filter(|l| l.contains("token issued") || l.contains("token refused"))
        .find(|l| l.contains(&quoted))
        .map(str::to_owned)
}

/// The first line `find` picks in `read()`, waited for up to 10 s: the server's log is written
/// by its log-writer thread, shortly after the response (src/telemetry/sink.rs).
pub(crate) fn wait_line(
    read: impl Fn() -> String,
    find: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    server::wait_for_log(read, find)
}

/// [`audit_line_of`] the request `id` in `read()`, waited for (see [`wait_line`]).
pub(crate) fn wait_audit_line(read: impl Fn() -> String, id: &str) -> Option<String> {
    wait_line(read, |text| audit_line_of(text, id))
}

/// Elapsed time of a test, printed with `--nocapture`.
struct Timer(&'static str, Instant);

impl Timer {
    fn start(name: &'static str) -> Self {
        Self(name, Instant::now())
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        eprintln!("ops::{} took {:.2?}", self.0, self.1.elapsed());
    }
}

// --------------------------------------------------------------------------------------- TLS

/// A test CA (`ca.pem`) and a server leaf for `localhost` and 127.0.0.1 signed by it
/// (`tls.crt` = leaf then CA, `tls.key`).
fn write_tls_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.distinguished_name
        .push(DnType::CommonName, "registry-auth it TLS CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).expect("self-sign CA");
    let issuer = Issuer::new(ca, &ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).expect("leaf params");
    leaf.subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).expect("sign leaf");
    let (ca_pem, crt, key) = (dir.join("ca.pem"), dir.join("tls.crt"), dir.join("tls.key"));
    fs::write(&ca_pem, ca_cert.pem()).expect("write ca.pem");
    fs::write(&crt, format!("{}{}", leaf_cert.pem(), ca_cert.pem())).expect("write tls.crt");
    fs::write(&key, leaf_key.serialize_pem()).expect("write tls.key");
    (ca_pem, crt, key)
}

const SIMPLE_ACL: &str = r#"  - match: {account: alice, name: "alice/*"}
    actions: [pull, push]
  - match: {account: "", name: "public/*"}
    actions: [pull]
"#;

#[test]
fn tls_listener_verified_by_the_test_ca_with_hsts_and_min_version() {
    let _t = Timer::start("tls_listener");
    let alice = User::new("alice");
    let tmp = tempdir("ra-it-ops-tls");
    let (ca, crt, key) = write_tls_pki(tmp.path());
    let tls_lines = format!(
        "  addr: \"127.0.0.1:0\"\n  certificate: {}\n  key: {}\n  hsts: true\n",
        yaml_str(&crt.to_string_lossy()),
        yaml_str(&key.to_string_lossy())
    );
    let fx = Fixture::new(
        "ra-it-ops-tls12",
        std::slice::from_ref(&alice),
        true,
        SIMPLE_ACL,
        &tls_lines,
        "",
    );
    let srv = fx.serve(&[]);
    assert!(
        srv.text().contains("tls=true"),
        "the listening line should say tls=true:\n{}",
        srv.log_tail(10)
    );
    let port = srv.port();
    let resolve = format!("localhost:{port}:127.0.0.1");
    let ca_s = ca.to_string_lossy().into_owned();
    let url = format!(
        "https://localhost:{port}/auth?service={}&scope=repository:alice/app:pull",
        http::urlencode(SERVICE)
    );
    let creds = format!("user = \"alice:{}\"\n", alice.password);

    // A client that verifies the chain against the test CA gets a token, with HSTS.
    let out = curl(
        &["--cacert", &ca_s, "--resolve", &resolve, &url],
        Some(&creds),
    );
    assert!(out.success(), "https with the test CA\n{}", out.describe());
    let (status, headers, body) = curl_response(&out);
    assert_eq!(status, 200, "{}", out.describe());
    let hsts = headers.get("strict-transport-security").cloned();
    assert!(
        hsts.as_deref().is_some_and(|h| h.contains("max-age=")),
        "no Strict-Transport-Security with hsts: true\n{}",
        out.describe()
    );
    let json: Value = serde_json::from_str(&body).expect("token JSON");
    let tok = json["token"].as_str().expect("token").to_owned();
    let claims = jwt::decode(&tok).expect("jwt").claims;
    assert_eq!(claims["sub"], "alice");

    // HSTS on every answer over TLS, errors included.
    let wrong = "user = \"alice:not-the-password\"\n";
    for (what, u, input) in [
        ("401", url.clone(), Some(wrong)),
        ("404", format!("https://localhost:{port}/nope"), None),
    ] {
        let out = curl(&["--cacert", &ca_s, "--resolve", &resolve, &u], input);
        let (status, headers, _) = curl_response(&out);
        assert_eq!(status.to_string(), what, "{}", out.describe());
        assert!(
            headers.contains_key("strict-transport-security"),
            "no Strict-Transport-Security on the {what}\n{}",
            out.describe()
        );
    }

    // Also by IP (the leaf has an IP SAN) and for the probes; TLS 1.2 is accepted by default.
    let out = curl(
        &[
            "--cacert",
            &ca_s,
            "--tls-max",
            "1.2",
            &format!("https://127.0.0.1:{port}/healthz"),
        ],
        None,
    );
    assert!(
        out.success() && curl_response(&out).0 == 200,
        "TLS 1.2 to the default listener\n{}",
        out.describe()
    );

    // A client without the test CA refuses the certificate (curl: 60, peer certificate
    // cannot be authenticated).
    let out = curl(&["--resolve", &resolve, &url], None);
    assert!(
        !out.success() && out.code == Some(60),
        "a client that does not trust the test CA must fail verification\n{}",
        out.describe()
    );
    // Plain HTTP to the TLS port gets no HTTP answer.
    let out = curl(&[&format!("http://127.0.0.1:{port}/healthz")], None);
    assert!(
        !out.success() || !out.stdout.contains(" 200"),
        "plain HTTP on the TLS port must not be served\n{}",
        out.describe()
    );
    let mut secrets = fx.secrets();
    secrets.push(("alice".into(), "not-the-password".into()));
    assert_log_has_no_secrets(&fx.log, &secrets, &[tok]);
    drop(srv);

    // tls_min_version 1.3: a TLS 1.2-only client is refused, TLS 1.3 works.
    let lines13 = format!("{tls_lines}  tls_min_version: \"1.3\"\n");
    let fx13 = Fixture::new(
        "ra-it-ops-tls13",
        std::slice::from_ref(&alice),
        true,
        SIMPLE_ACL,
        &lines13,
        "",
    );
    let srv = fx13.serve(&[]);
    let port = srv.port();
    let resolve = format!("localhost:{port}:127.0.0.1");
    let health = format!("https://localhost:{port}/healthz");
    let out = curl(
        &[
            "--cacert",
            &ca_s,
            "--resolve",
            &resolve,
            "--tls-max",
            "1.2",
            &health,
        ],
        None,
    );
    assert!(
        !out.success(),
        "tls_min_version 1.3 must refuse a TLS 1.2-only client\n{}",
        out.describe()
    );
    assert_eq!(
        out.code,
        Some(35),
        "expected a handshake failure (curl 35)\n{}",
        out.describe()
    );
    let out = curl(
        &[
            "--cacert",
            &ca_s,
            "--resolve",
            &resolve,
            "--tlsv1.3",
            &health,
        ],
        None,
    );
    assert!(
        out.success() && curl_response(&out).0 == 200,
        "TLS 1.3 must work\n{}",
        out.describe()
    );
}

// ------------------------------------------------------------------------------- unix socket

#[test]
fn unix_socket_listener_serves_and_is_removed_on_sigterm() {
    let _t = Timer::start("unix_socket");
    let tmp = tempdir("ra-it-ops-unix");
    let sock = tmp.path().join("auth.sock");
    let lines = format!(
        "  net: unix\n  addr: {}\n",
        yaml_str(&sock.to_string_lossy())
    );
    let fx = Fixture::new("ra-it-ops-unix-cfg", &[], true, SIMPLE_ACL, &lines, "");
    let config = fx.config.to_string_lossy().into_owned();
    let args = ["serve", "--config", config.as_str()];
    let mut srv = Proc::start(&args, &[], &fx.log);
    assert_eq!(
        srv.addr,
        format!("unix:{}", sock.display()),
        "listening line:\n{}",
        srv.log_tail(5)
    );
    let sock_s = sock.to_string_lossy().into_owned();
    let ask = || {
        curl(
            &[
                "--unix-socket",
                &sock_s,
                &format!(
                    "http://localhost/auth?service={}&scope=repository:public/app:pull",
                    http::urlencode(SERVICE)
                ),
            ],
            None,
        )
    };
    let out = ask();
    let (status, _, body) = curl_response(&out);
    assert_eq!(
        status,
        200,
        "token over the unix socket\n{}",
        out.describe()
    );
    let tok = serde_json::from_str::<Value>(&body).expect("json")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let (_, headers, _) = curl_response(&out);
    let id = headers.get("x-request-id").cloned().expect("x-request-id");
    let line = wait_audit_line(|| srv.text(), &id)
        .unwrap_or_else(|| panic!("no audit line for {id}:\n{}", srv.log_tail(5)));
    assert_eq!(
        logged_field(&line, "client_ip").as_deref(),
        Some("unix"),
        "audit line of a unix-socket request: {line}"
    );
    let claims = jwt::decode(&tok).expect("jwt").claims;
    assert_eq!(
        jwt::granted(&claims)
            .get(&("repository".to_owned(), "public/app".to_owned()))
            .map(|s| s.iter().cloned().collect::<Vec<_>>()),
        Some(vec!["pull".to_owned()]),
        "anonymous pull of public/app over the socket"
    );

    // SIGTERM: a clean exit, and the socket file is gone.
    srv.signal("TERM");
    let status = srv.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM must stop the server with exit 0, got {status:?}; log:\n{}",
        srv.log_tail(10)
    );
    assert!(
        !sock.exists(),
        "the socket file {} is still there after shutdown",
        sock.display()
    );

    // A socket left behind by a killed server is replaced at the next start.
    let mut srv = Proc::start(&args, &[], &fx.log);
    srv.signal("KILL");
    let _ = srv.wait_exit(Duration::from_secs(5));
    assert!(sock.exists(), "SIGKILL leaves the socket file behind");
    let srv = Proc::start(&args, &[], &fx.log);
    let out = ask();
    assert_eq!(
        curl_response(&out).0,
        200,
        "after replacing a stale socket\n{}\nlog:\n{}",
        out.describe(),
        srv.log_tail(10)
    );
    drop(srv); // a clean stop: the log is complete
    assert_log_has_no_secrets(&fx.log, &[], &[tok]);
}

// ------------------------------------------------------------------------------ path_prefix

#[test]
fn path_prefix_moves_every_route_but_the_probes_and_healthcheck_probes_them() {
    let _t = Timer::start("path_prefix");
    let fx = Fixture::new(
        "ra-it-ops-prefix",
        &[],
        true,
        SIMPLE_ACL,
        "  addr: \"127.0.0.1:0\"\n  path_prefix: /p\n",
        "",
    );
    let srv = fx.serve(&[]);
    let base = srv.base();
    let get = |path: &str| http::get(&format!("{base}{path}"), &[]);
    let q = format!("?service={}", http::urlencode(SERVICE));
    let mut problems = Vec::new();
    let mut expect = |path: String, status: u16| {
        let r = get(&path);
        if r.status != status {
            problems.push(format!("GET {path}: expected {status}, got {r:?}"));
        }
        r
    };
    expect(format!("/p/auth{q}"), 200);
    expect(format!("/p/auth/token{q}"), 200);
    let jwks = expect("/p/.well-known/jwks.json".into(), 200);
    let bundle = expect("/p/rootcertbundle.pem".into(), 200);
    expect("/healthz".into(), 200);
    expect("/readyz".into(), 200);
    expect("/metrics".into(), 200);
    // Nothing of the prefixed routes at the root, and no probes under the prefix.
    for path in [
        format!("/auth{q}"),
        format!("/auth/token{q}"),
        "/.well-known/jwks.json".into(),
        "/rootcertbundle.pem".into(),
        "/p/healthz".into(),
        "/p/readyz".into(),
        "/p/metrics".into(),
    ] {
        expect(path, 404);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        jwks.json()["keys"]
            .as_array()
            .is_some_and(|k| !k.is_empty()),
        "JWKS: {jwks:?}"
    );
    assert!(
        bundle.text().contains("-----BEGIN CERTIFICATE-----"),
        "bundle: {bundle:?}"
    );

    // `registry-auth healthcheck`: 0 against /healthz, 1 against a 404 and a closed port.
    let ok = run_cli(&["healthcheck", &format!("{base}/healthz")]);
    assert_eq!(ok.code, Some(0), "{}", ok.describe());
    let not_found = run_cli(&["healthcheck", &format!("{base}/p/healthz")]);
    assert_eq!(not_found.code, Some(1), "{}", not_found.describe());
    let closed = format!("http://127.0.0.1:{}/healthz", proc::free_port());
    let down = run_cli(&["healthcheck", "--timeout", "3", &closed]);
    assert_eq!(
        down.code,
        Some(1),
        "healthcheck against a closed port\n{}",
        down.describe()
    );
    assert!(down.elapsed < Duration::from_secs(5), "{}", down.describe());
}

// -------------------------------------------------------------------------- trusted proxies

const IP_ACL: &str = r#"  - match: {ip: 198.51.100.0/24}
    actions: [pull]
"#;

#[test]
fn trusted_proxies_decide_whether_x_forwarded_for_is_believed() {
    let _t = Timer::start("trusted_proxies");
    let scope = ["repository:team/app:pull"];
    let xff = |v: &str| vec![("X-Forwarded-For", v.to_owned())];

    // Trusted peer (127.0.0.1): the header names the client.
    let fx = Fixture::new(
        "ra-it-ops-xff",
        &[],
        true,
        IP_ACL,
        "  addr: \"127.0.0.1:0\"\n  trusted_proxies: [127.0.0.1]\n",
        "",
    );
    let srv = fx.serve(&[]);
    let base = srv.base();
    let spoofed = token_get(&base, "/auth", &scope, None, &xff("198.51.100.7"));
    assert_eq!(
        actions_for(&spoofed, "team/app"),
        ["pull"],
        "a trusted proxy's X-Forwarded-For must be believed\n{}",
        srv.log_tail(5)
    );
    // Right-most untrusted hop wins (the client cannot push itself further left).
    let chain = token_get(
        &base,
        "/auth",
        &scope,
        None,
        &xff("203.0.113.9, 198.51.100.8"),
    );
    assert_eq!(actions_for(&chain, "team/app"), ["pull"]);
    let plain = token_get(&base, "/auth", &scope, None, &[]);
    assert!(actions_for(&plain, "team/app").is_empty(), "{plain:?}");
    for (r, ip) in [
        (&spoofed, "198.51.100.7"),
        (&chain, "198.51.100.8"),
        (&plain, "127.0.0.1"),
    ] {
        let line = wait_audit_line(|| srv.text(), &request_id(r))
            .unwrap_or_else(|| panic!("no audit line for {r:?}\n{}", srv.log_tail(10)));
        assert_eq!(
            logged_field(&line, "client_ip").as_deref(),
            Some(ip),
            "audit line: {line}"
        );
    }
    drop(srv);

    // Peer not in trusted_proxies: the same header is ignored.
    let fx = Fixture::new(
        "ra-it-ops-xff2",
        &[],
        true,
        IP_ACL,
        "  addr: \"127.0.0.1:0\"\n  trusted_proxies: [10.0.0.0/8]\n",
        "",
    );
    let srv = fx.serve(&[]);
    let r = token_get(&srv.base(), "/auth", &scope, None, &xff("198.51.100.7"));
    assert!(
        actions_for(&r, "team/app").is_empty(),
        "a spoofed X-Forwarded-For from an untrusted peer must be ignored: {:?}",
        granted_of(&r)
    );
    let line = wait_audit_line(|| srv.text(), &request_id(&r)).expect("audit line");
    assert_eq!(
        logged_field(&line, "client_ip").as_deref(),
        Some("127.0.0.1"),
        "audit line: {line}"
    );
}

// ----------------------------------------------------------------------------------- health

/// An EC signing key whose self-signed certificate expired yesterday.
fn write_expired_signing_key(dir: &Path) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, "registry-auth it expired signer");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(30);
    params.not_after = now - time::Duration::days(1);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = params.self_signed(&key).expect("self-sign");
    fs::create_dir_all(dir).expect("mkdir");
    let (c, k) = (dir.join("expired.crt"), dir.join("expired.key"));
    fs::write(&c, cert.pem()).expect("write cert");
    fs::write(&k, key.serialize_pem()).expect("write key");
    (c, k)
}

#[test]
fn readyz_reports_ready_and_degraded_with_an_expired_signing_certificate() {
    let _t = Timer::start("health");
    let fx = Fixture::new(
        "ra-it-ops-ready",
        &[],
        true,
        SIMPLE_ACL,
        "  addr: \"127.0.0.1:0\"\n",
        "",
    );
    let srv = fx.serve(&[]);
    let health = http::get(&format!("{}/healthz", srv.base()), &[]);
    assert_eq!(health.status, 200, "{health:?}");
    let r = http::get(&format!("{}/readyz", srv.base()), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let j = r.json();
    assert_eq!(j["status"], "ready", "{j:#}");
    assert_eq!(j["problems"], serde_json::json!([]), "{j:#}");
    assert_eq!(j["signing_key"]["algorithm"], "ES256", "{j:#}");
    assert_eq!(
        j["signing_key"]["kid"].as_str(),
        Some(crate::common::keys::kid_of_cert_file(&fx.keys.cert).as_str()),
        "{j:#}"
    );
    let left = j["signing_key"]["certificate_expires_in_seconds"]
        .as_i64()
        .expect("expiry seconds");
    assert!(
        (29 * 86_400..=30 * 86_400).contains(&left),
        "the test key is valid for 30 days: {j:#}"
    );
    assert!(
        j["config"]["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("registry-auth.yml")),
        "{j:#}"
    );
    drop(srv);

    // An expired signing certificate: degraded, still 200 (and tokens are still issued).
    let tmp = tempdir("ra-it-ops-expired");
    let (crt, key) = write_expired_signing_key(tmp.path());
    let cfg = tmp.path().join("config.yml");
    fs::write(
        &cfg,
        format!(
            "server:\n  addr: \"127.0.0.1:0\"\ntoken:\n  issuer: iss\n  certificate: {}\n  key: {}\nusers:\n  \"\": {{}}\nacl:\n{SIMPLE_ACL}",
            yaml_str(&crt.to_string_lossy()),
            yaml_str(&key.to_string_lossy())
        ),
    )
    .expect("write config");
    let cfg_s = cfg.to_string_lossy().into_owned();
    let srv = Proc::start(
        &["serve", "--config", &cfg_s, "--listen", "127.0.0.1:0"],
        &[],
        &tmp.path().join("log"),
    );
    let r = http::get(&format!("{}/readyz", srv.base()), &[]);
    assert_eq!(
        r.status, 200,
        "an expired signing certificate keeps the replica ready: {r:?}"
    );
    let j = r.json();
    assert_eq!(j["status"], "degraded", "{j:#}");
    assert!(
        j["problems"].as_array().is_some_and(|p| p
            .iter()
            .any(|x| x.as_str().is_some_and(|s| s.contains("expired")))),
        "{j:#}"
    );
    assert!(
        j["signing_key"]["certificate_expires_in_seconds"]
            .as_i64()
            .is_some_and(|s| s < 0),
        "{j:#}"
    );
    let (_, samples) = get_metrics(&srv.base());
    let expiry = metric(
        &samples,
        "registry_auth_signing_certificate_expiry_seconds",
        &[],
    )
    .expect("expiry gauge");
    assert!(expiry < 0.0, "expired certificate gauge: {expiry}");
    let t = token_get(
        &srv.base(),
        "/auth",
        &["repository:public/a:pull"],
        None,
        &[],
    );
    assert_eq!(t.status, 200, "tokens are still issued: {t:?}");
    let warned = srv
        .text_when(|t| t.to_lowercase().contains("expire"))
        .to_lowercase();
    assert!(
        warned.contains("expire"),
        "the server should warn about the expired signing certificate:\n{}",
        srv.log_tail(10)
    );
}

// ---------------------------------------------------------------------------------- metrics

const METRICS_ACL: &str = r#"  - match: {account: alice, name: "alice/*"}
    actions: [pull, push]
"#;

#[test]
fn metrics_count_decisions_requests_reloads_and_serve_on_metrics_addr() {
    let _t = Timer::start("metrics");
    let alice = User::new("alice");
    // server.metrics_addr on a free port (racy by nature: retry with another port).
    let mut attempt = 0;
    let (fx, mut srv, maddr) = loop {
        attempt += 1;
        let maddr = format!("127.0.0.1:{}", proc::free_port());
        let fx = Fixture::new(
            "ra-it-ops-metrics",
            std::slice::from_ref(&alice),
            false,
            METRICS_ACL,
            &format!("  addr: \"127.0.0.1:0\"\n  metrics_addr: \"{maddr}\"\n"),
            "",
        );
        let config = fx.config.to_string_lossy().into_owned();
        match Proc::try_start(
            &["serve", "--config", &config, "--listen", "127.0.0.1:0"],
            &[],
            &fx.log,
        ) {
            Ok(p) => break (fx, p, maddr),
            Err(e) if attempt < 5 && e.contains("metrics_addr") => continue,
            Err(e) => panic!("{e}"),
        }
    };
    assert!(
        srv.wait_log("metrics listening", 1, Duration::from_secs(5)),
        "no `metrics listening` line:\n{}",
        srv.log_tail(10)
    );
    let base = srv.base();
    let pw = alice.password;
    let a = Some(("alice", pw.as_str()));
    let mut tokens = Vec::new();

    // The script.
    let granted = token_get(&base, "/auth", &["repository:alice/app:pull,push"], a, &[]);
    assert_eq!(actions_for(&granted, "alice/app"), ["pull", "push"]);
    tokens.push(token_of(&granted));
    let partial = token_get(
        &base,
        "/auth",
        &["repository:alice/app:pull", "repository:bob/app:pull"],
        a,
        &[],
    );
    assert_eq!(partial.status, 200, "{partial:?}");
    tokens.push(token_of(&partial));
    let denied = token_get(&base, "/auth", &["repository:bob/app:pull"], a, &[]);
    assert!(actions_for(&denied, "bob/app").is_empty());
    tokens.push(token_of(&denied));
    let bad = token_get(
        &base,
        "/auth",
        &[],
        Some(("alice", "wrong-password-x")),
        &[],
    );
    assert_eq!(bad.status, 401, "{bad:?}");
    let no_service = http::get(&format!("{base}/auth"), &[]);
    assert_eq!(no_service.status, 400, "{no_service:?}");
    let again = token_get(&base, "/auth/token", &["repository:alice/app:pull"], a, &[]);
    assert_eq!(again.status, 200, "{again:?}");
    tokens.push(token_of(&again));

    // A reload (SIGHUP with an unchanged file), so config_reloads has a sample.
    srv.signal("HUP");
    assert!(
        srv.wait_log("configuration reloaded", 1, Duration::from_secs(10)),
        "no reload logged after SIGHUP:\n{}",
        srv.log_tail(10)
    );

    let (text, samples) = get_metrics(&base);
    let ctx = || format!("/metrics:\n{text}");
    let dec = |o: &str| {
        metric(
            &samples,
            "registry_auth_token_decisions_total",
            &[("outcome", o)],
        )
    };
    assert_eq!(dec("granted"), Some(2.0), "{}", ctx());
    assert_eq!(dec("partially_denied"), Some(1.0), "{}", ctx());
    assert_eq!(dec("denied"), Some(1.0), "{}", ctx());
    assert_eq!(dec("bad_credentials"), Some(1.0), "{}", ctx());
    assert_eq!(dec("locked_out"), None, "{}", ctx());
    let req = |route: &str, status: &str| {
        metric(
            &samples,
            "registry_auth_http_requests_total",
            &[("route", route), ("status", status)],
        )
    };
    assert_eq!(req("/auth", "200"), Some(3.0), "{}", ctx());
    assert_eq!(req("/auth", "401"), Some(1.0), "{}", ctx());
    assert_eq!(req("/auth", "400"), Some(1.0), "{}", ctx());
    assert_eq!(req("/auth/token", "200"), Some(1.0), "{}", ctx());
    assert_eq!(
        metric(
            &samples,
            "registry_auth_config_reloads_total",
            &[("result", "success")]
        ),
        Some(1.0),
        "{}",
        ctx()
    );
    // alice's first request verified the password; the next three reused it (the 401 is a
    // different password: a miss).
    let hits = metric(&samples, "registry_auth_credential_cache_hits_total", &[]);
    assert!(hits.is_some_and(|h| h >= 3.0), "cache hits\n{}", ctx());
    let misses = metric(&samples, "registry_auth_credential_cache_misses_total", &[]);
    assert!(misses.is_some_and(|m| m >= 2.0), "cache misses\n{}", ctx());
    assert_eq!(
        metric(
            &samples,
            "registry_auth_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0),
        "{}",
        ctx()
    );
    let expiry = metric(
        &samples,
        "registry_auth_signing_certificate_expiry_seconds",
        &[],
    )
    .expect("expiry gauge");
    assert!(
        (29.0 * 86_400.0..=30.0 * 86_400.0).contains(&expiry),
        "the test key is valid for 30 days: {expiry}\n{}",
        ctx()
    );
    let ctype = http::get(&format!("{base}/metrics"), &[]);
    assert!(
        ctype
            .header("content-type")
            .is_some_and(|c| c.contains("openmetrics-text") || c.contains("text/plain")),
        "{ctype:?}"
    );

    // The same metrics (and probes, nothing else) on server.metrics_addr.
    let mbase = format!("http://{maddr}");
    let (mtext, msamples) = get_metrics(&mbase);
    assert_eq!(
        metric(
            &msamples,
            "registry_auth_token_decisions_total",
            &[("outcome", "granted")]
        ),
        Some(2.0),
        "metrics_addr /metrics:\n{mtext}"
    );
    assert_eq!(http::get(&format!("{mbase}/healthz"), &[]).status, 200);
    assert_eq!(http::get(&format!("{mbase}/readyz"), &[]).status, 200);
    let no_auth = http::get(&format!("{mbase}/auth?service=x"), &[]);
    assert_eq!(
        no_auth.status, 404,
        "the metrics listener must not serve tokens: {no_auth:?}"
    );
    drop(srv); // a clean stop: the log is complete
    let mut secrets = fx.secrets();
    secrets.push(("alice".into(), "wrong-password-x".into()));
    assert_log_has_no_secrets(&fx.log, &secrets, &tokens);
    // Last, so that everything above is checked too: the documented name of the bcrypt counter
    // (alice's first login and the wrong password ran bcrypt).
    assert!(
        metric(&samples, "registry_auth_bcrypt_verifications_total", &[]).is_some_and(|v| v >= 2.0),
        "no registry_auth_bcrypt_verifications_total (the collector's name is prefixed twice?)\n{}",
        ctx()
    );
}

// -------------------------------------------------------------------------------- audit log

#[test]
fn audit_log_has_one_line_per_decision_in_text_and_json_without_secrets() {
    let _t = Timer::start("audit_log");
    let alice = User::new("alice");
    let fx = Fixture::new(
        "ra-it-ops-audit",
        std::slice::from_ref(&alice),
        true,
        SIMPLE_ACL,
        "  addr: \"127.0.0.1:0\"\n",
        "",
    );
    let pw = fx.password("alice");
    let a = Some(("alice", pw.as_str()));
    let wrong = "not-alices-password";
    let mut tokens = Vec::new();
    let mut target_problems = Vec::new();

    for format in ["text", "json"] {
        let start = fs::metadata(&fx.log).map(|m| m.len()).unwrap_or(0) as usize;
        let srv = fx.serve(&["--log-format", format, "--log-level", "info"]);
        let base = srv.base();
        let granted = token_get(&base, "/auth", &["repository:alice/app:pull,push"], a, &[]);
        let mixed = token_get(
            &base,
            "/auth",
            &[
                "repository:alice/app:pull,delete",
                "repository:bob/app:pull",
            ],
            a,
            &[],
        );
        let anon = token_get(&base, "/auth", &["repository:secret/app:pull"], None, &[]);
        let bad = token_get(
            &base,
            "/auth",
            &["repository:alice/app:pull"],
            Some(("alice", wrong)),
            &[],
        );
        let client_error = http::get(&format!("{base}/auth"), &[]);
        assert_eq!(client_error.status, 400);
        for r in [&granted, &mixed, &anon] {
            assert_eq!(r.status, 200, "{r:?}");
            tokens.push(token_of(r));
        }
        assert_eq!(bad.status, 401, "{bad:?}");

        // The log thread writes the lines just after the answers: a clean stop writes them all
        // (including any line the 400 might have caused, which must not be an audit line).
        drop(srv);
        let all = fs::read(&fx.log).expect("log");
        let text = strip_ansi(&String::from_utf8_lossy(&all[start..]));
        let decisions: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("token issued") || l.contains("token refused"))
            .collect();
        assert_eq!(
            decisions.len(),
            4,
            "{format}: one audit line per token decision (4), none for the 400:\n{text}"
        );
        let expect = [
            (
                &granted,
                "alice",
                vec!["repository:alice/app:pull,push→pull,push [acl 0]"],
            ),
            (
                &mixed,
                "alice",
                vec![
                    "repository:alice/app:delete,pull→pull [acl 0]",
                    "repository:bob/app:pull→- [no match]",
                ],
            ),
            (&anon, "", vec!["repository:secret/app:pull→- [no match]"]),
            (&bad, "alice", vec![]),
        ];
        for (r, account, scopes) in expect {
            let id = request_id(r);
            let line = audit_line_of(&text, &id)
                .unwrap_or_else(|| panic!("{format}: no audit line for request {id}:\n{text}"));
            let field = |k: &str| logged_field(&line, k);
            assert_eq!(field("account").as_deref(), Some(account), "{line}");
            assert_eq!(field("client_ip").as_deref(), Some("127.0.0.1"), "{line}");
            assert_eq!(field("service").as_deref(), Some(SERVICE), "{line}");
            if r.status == 401 {
                assert!(line.contains("token refused"), "{line}");
                assert!(
                    field("reason").is_some_and(|x| !x.is_empty()),
                    "a refusal says why: {line}"
                );
            } else {
                for s in &scopes {
                    assert!(line.contains(s), "{format}: `{s}` missing from {line}");
                }
                // `acl replay` reads the line back, in either format.
                let record = registry_auth::policy::audit::parse_line(&line)
                    .unwrap_or_else(|e| panic!("{format}: acl replay cannot read {line}: {e}"))
                    .unwrap_or_else(|| panic!("{format}: not a token-issued line: {line}"));
                assert_eq!(record.version, 1, "{line}");
                assert_eq!(record.subject, account, "{line}");
                assert_eq!(record.scopes.len(), scopes.len(), "{line}");
            }
            // Marked as audit: target `audit`.
            let marked = if format == "json" {
                serde_json::from_str::<Value>(&line)
                    .ok()
                    .is_some_and(|v| v["target"] == "audit")
            } else {
                line.contains("audit")
            };
            if !marked {
                target_problems.push(format!("{format}: not marked with target `audit`: {line}"));
            }
        }
        if format == "json" {
            for l in text.lines().filter(|l| !l.trim().is_empty()) {
                assert!(
                    serde_json::from_str::<Value>(l).is_ok(),
                    "--log-format json wrote a non-JSON line: {l}"
                );
            }
        }
    }
    let mut secrets = fx.secrets();
    secrets.push(("alice".into(), wrong.into()));
    assert_log_has_no_secrets(&fx.log, &secrets, &tokens);
    assert!(
        target_problems.is_empty(),
        "the docs promise audit lines with target `audit`, but the log hides targets \
         (telemetry::init uses .with_target(false)):\n{}",
        target_problems.join("\n")
    );
}

// ------------------------------------------------------------------------------- hot reload

const RELOAD_ACL: &str = r#"  - match: {account: alice, name: "alice/*"}
    actions: [pull, push]
"#;
const RELOAD_ACL_SHARED: &str = r#"  - match: {account: alice, name: "alice/*"}
    actions: [pull, push]
  - match: {name: "shared/*"}
    actions: [pull]
"#;
const RELOAD_ACL_TYPO: &str = r#"  - match: {account: alice, name: "alice/*"}
    actions: [pull, push]
  - match: {acount: alice, name: "other/*"}
    actions: ["*"]
"#;

#[test]
fn reload_on_sighup_applies_valid_and_rejects_invalid_configs() {
    let _t = Timer::start("reload_sighup");
    let alice = User::new("alice");
    let server_lines = "  addr: \"127.0.0.1:0\"\n";
    let fx = Fixture::new(
        "ra-it-ops-reload",
        std::slice::from_ref(&alice),
        false,
        RELOAD_ACL,
        server_lines,
        "",
    );
    let mut srv = fx.serve(&[]);
    let base = srv.base();
    let pw = fx.password("alice");
    let a = Some(("alice", pw.as_str()));
    let shared = ["repository:shared/app:pull"];
    let r = token_get(&base, "/auth", &shared, a, &[]);
    assert!(actions_for(&r, "shared/app").is_empty(), "before: {r:?}");

    // (a) a new ACL entry + SIGHUP: the next request sees it.
    write_atomic(
        &fx.config,
        &fx.yaml(false, RELOAD_ACL_SHARED, server_lines, ""),
    );
    srv.signal("HUP");
    assert!(
        srv.wait_log("configuration reloaded", 1, Duration::from_secs(10)),
        "no reload after SIGHUP:\n{}",
        srv.log_tail(10)
    );
    let r = token_get(&base, "/auth", &shared, a, &[]);
    assert_eq!(
        actions_for(&r, "shared/app"),
        ["pull"],
        "the reloaded ACL applies:\n{}",
        srv.log_tail(10)
    );

    // (b) a typo + SIGHUP: logged with the YAML path, the old ACL keeps serving.
    write_atomic(
        &fx.config,
        &fx.yaml(false, RELOAD_ACL_TYPO, server_lines, ""),
    );
    srv.signal("HUP");
    let invalid = "the new configuration is invalid";
    assert!(
        srv.wait_log(invalid, 1, Duration::from_secs(10)),
        "no failure logged after SIGHUP with a broken config:\n{}",
        srv.log_tail(10)
    );
    let text = srv.text_when(|t| {
        t.lines()
            .any(|l| l.contains("acl[1].match.acount") && l.contains("did you mean"))
    });
    assert!(
        text.lines()
            .any(|l| l.contains("acl[1].match.acount") && l.contains("did you mean")),
        "the problem must name the YAML path acl[1].match.acount:\n{}",
        srv.log_tail(10)
    );
    let r = token_get(&base, "/auth", &shared, a, &[]);
    assert_eq!(
        actions_for(&r, "shared/app"),
        ["pull"],
        "the previous ACL keeps serving"
    );
    let r = token_get(&base, "/auth", &["repository:other/app:pull"], a, &[]);
    assert!(actions_for(&r, "other/app").is_empty(), "{r:?}");
    // Let one poll interval pass: the broken file is reported once, not every tick.
    thread::sleep(Duration::from_millis(2500));
    let (text, samples) = get_metrics(&base);
    // One snapshot, taken after the metrics (a failure counted there is logged too).
    let log = srv.synced_text();
    let failures = log.lines().filter(|l| l.contains(invalid)).count();
    let by_poll = log
        .lines()
        .filter(|l| l.contains(invalid) && l.contains("FileChange"))
        .count();
    let failure_metric = metric(
        &samples,
        "registry_auth_config_reloads_total",
        &[("result", "failure")],
    );
    // The poller may have seen the file in the few milliseconds between the write and SIGHUP
    // (then both report it); normally only the signal does.
    assert_eq!(
        failure_metric,
        Some((1 + by_poll) as f64),
        "reloads_total{{result=failure}} (failure lines logged: {failures}, by the poller: \
         {by_poll}):\n{text}\nlog:\n{}",
        srv.log_tail(15)
    );
    assert_eq!(failures, 1 + by_poll, "log:\n{}", srv.log_tail(15));
    assert!(
        metric(
            &samples,
            "registry_auth_config_reloads_total",
            &[("result", "success")]
        )
        .is_some_and(|v| v >= 1.0),
        "{text}"
    );

    // A new password for alice: the credential cache starts empty, so her old (cached)
    // password stops working at once.
    let renewed = User::new("alice");
    let yaml = with_server(
        &config_yaml(
            &fx.keys,
            std::slice::from_ref(&renewed),
            false,
            RELOAD_ACL_SHARED,
        ),
        server_lines,
        "",
    );
    write_atomic(&fx.config, &yaml);
    let reloads = srv.count_log("configuration reloaded");
    srv.signal("HUP");
    assert!(
        srv.wait_log(
            "configuration reloaded",
            reloads + 1,
            Duration::from_secs(10)
        ),
        "no reload:\n{}",
        srv.log_tail(10)
    );
    let old = token_get(&base, "/auth", &shared, a, &[]);
    assert_eq!(
        old.status, 401,
        "the old password still works after a reload: {old:?}"
    );
    let new = token_get(
        &base,
        "/auth",
        &shared,
        Some(("alice", renewed.password.as_str())),
        &[],
    );
    assert_eq!(actions_for(&new, "shared/app"), ["pull"], "{new:?}");
    drop(srv); // a clean stop: the log is complete
    let mut secrets = fx.secrets();
    secrets.push(("alice".into(), renewed.password));
    assert_log_has_no_secrets(&fx.log, &secrets, &[token_of(&new)]);
}

#[test]
fn requests_in_flight_complete_across_a_reload() {
    let _t = Timer::start("reload_in_flight");
    const N: usize = 20;
    let password = format!("inflight-{}", crate::common::image::random_hex(8));
    let hash = bcrypt::hash(&password, 10).expect("bcrypt cost 10");
    let mut users = String::new();
    for i in 0..N {
        let _ = writeln!(users, "  u{i:02}:\n    password: {}", yaml_str(&hash));
    }
    let acl = "  - match: {name: \"${account}/*\"}\n    actions: [pull]\n";
    let tmp = tempdir("ra-it-ops-inflight");
    let keys = KeyFiles::write(KeySetup::EcKid, &tmp.path().join("keys"));
    let server_lines = "  addr: \"127.0.0.1:0\"\n  bcrypt_workers: 2\n";
    let build = |comment: &str| {
        let yaml = config_yaml(&keys, &[], false, &format!("{acl}    comment: {comment}\n"));
        with_server(
            &yaml.replacen("users:\n", &format!("users:\n{users}"), 1),
            server_lines,
            "",
        )
    };
    let config = tmp.path().join("registry-auth.yml");
    fs::write(&config, build("v1")).expect("write config");
    let log = tmp.path().join("registry-auth.log");
    let config_s = config.to_string_lossy().into_owned();
    let mut srv = Proc::start(
        &["serve", "--config", &config_s, "--listen", "127.0.0.1:0"],
        &[],
        &log,
    );
    let base = srv.base();
    let done = AtomicUsize::new(0);
    let started = Instant::now();
    let (results, done_at_reload) = thread::scope(|s| {
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let (base, password, done) = (&base, &password, &done);
                s.spawn(move || {
                    let user = format!("u{i:02}");
                    let scope = format!("repository:{user}/app:pull");
                    let r = token_get(base, "/auth", &[&scope], Some((&user, password)), &[]);
                    done.fetch_add(1, Ordering::SeqCst);
                    (user, r)
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(300));
        write_atomic(&config, &build("v2"));
        srv.signal("HUP");
        assert!(
            srv.wait_log("configuration reloaded", 1, Duration::from_secs(10)),
            "no reload:\n{}",
            srv.log_tail(10)
        );
        let done_at_reload = done.load(Ordering::SeqCst);
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("request thread"))
            .collect();
        (results, done_at_reload)
    });
    eprintln!(
        "ops::reload_in_flight: {N} requests in {:.2?}, {done_at_reload} done when the reload \
         was logged",
        started.elapsed()
    );
    assert!(
        done_at_reload < N,
        "the reload should happen while requests are in flight ({done_at_reload}/{N} done)"
    );
    let mut failed = Vec::new();
    let mut tokens = Vec::new();
    for (user, r) in &results {
        if r.status != 200 || actions_for(r, &format!("{user}/app")) != ["pull"] {
            failed.push(format!("{user}: {r:?}"));
        } else {
            tokens.push(token_of(r));
        }
    }
    assert!(
        failed.is_empty(),
        "requests in flight across a reload must succeed:\n{}\nlog:\n{}",
        failed.join("\n"),
        srv.log_tail(15)
    );
    let secrets: Vec<(String, String)> = (0..N)
        .map(|i| (format!("u{i:02}"), password.clone()))
        .collect();
    drop(srv); // a clean stop: the log is complete
    assert_log_has_no_secrets(&log, &secrets, &tokens);
}

#[test]
fn configmap_symlink_swap_is_picked_up_without_a_signal() {
    let _t = Timer::start("reload_configmap");
    let alice = User::new("alice");
    let fx = Fixture::new(
        "ra-it-ops-cm",
        std::slice::from_ref(&alice),
        false,
        RELOAD_ACL,
        "  addr: \"127.0.0.1:0\"\n",
        "",
    );
    // The kubelet's layout: config.yml → ..data/config.yml, ..data → ..v1.
    let cm = fx.dir().join("cm");
    let v1 = cm.join("..v1");
    fs::create_dir_all(&v1).expect("mkdir ..v1");
    fs::copy(&fx.config, v1.join("config.yml")).expect("copy config");
    std::os::unix::fs::symlink("..v1", cm.join("..data")).expect("symlink ..data");
    std::os::unix::fs::symlink("..data/config.yml", cm.join("config.yml"))
        .expect("symlink config.yml");
    let config = cm.join("config.yml");
    let config_s = config.to_string_lossy().into_owned();
    let srv = Proc::start(
        &["serve", "--config", &config_s, "--listen", "127.0.0.1:0"],
        &[],
        &fx.log,
    );
    let base = srv.base();
    let pw = fx.password("alice");
    let a = Some(("alice", pw.as_str()));
    let shared = ["repository:shared/app:pull"];
    assert!(actions_for(&token_get(&base, "/auth", &shared, a, &[]), "shared/app").is_empty());

    // ..v2 with the new ACL; ..data swapped atomically (rename of a new symlink over it).
    let v2 = cm.join("..v2");
    fs::create_dir_all(&v2).expect("mkdir ..v2");
    fs::write(
        v2.join("config.yml"),
        fx.yaml(false, RELOAD_ACL_SHARED, "  addr: \"127.0.0.1:0\"\n", ""),
    )
    .expect("write v2");
    std::os::unix::fs::symlink("..v2", cm.join("..data_tmp")).expect("symlink ..data_tmp");
    fs::rename(cm.join("..data_tmp"), cm.join("..data")).expect("swap ..data");
    let swapped = Instant::now();
    let deadline = swapped + Duration::from_secs(10);
    loop {
        let r = token_get(&base, "/auth", &shared, a, &[]);
        if actions_for(&r, "shared/app") == ["pull"] {
            eprintln!(
                "ops::reload_configmap: picked up {:.2?} after the swap",
                swapped.elapsed()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the ConfigMap swap was not picked up within 10 s:\n{}",
            srv.log_tail(15)
        );
        thread::sleep(Duration::from_millis(200));
    }
    assert!(
        srv.text_when(|t| t
            .lines()
            .any(|l| l.contains("configuration reloaded") && l.contains("FileChange")))
            .lines()
            .any(|l| l.contains("configuration reloaded") && l.contains("FileChange")),
        "{}",
        srv.log_tail(10)
    );
}

// ---------------------------------------------------------------------------------- lockout

#[test]
fn lockout_after_failed_logins_refuses_the_pair_but_not_other_users() {
    let _t = Timer::start("lockout");
    let users = [User::new("alice"), User::new("reader")];
    let acl = r#"  - match: {account: alice, name: "alice/*"}
    actions: [pull, push]
  - match: {account: reader}
    actions: [pull]
"#;
    let tmp = tempdir("ra-it-ops-lockout");
    let keys = KeyFiles::write(KeySetup::EcKid, &tmp.path().join("keys"));
    let config = tmp.path().join("registry-auth.yml");
    fs::write(
        &config,
        with_server(
            &config_yaml(&keys, &users, false, acl),
            "  addr: \"127.0.0.1:0\"\n  trusted_proxies: [127.0.0.1]\n",
            "lockout:\n  max_failures: 3\n  window: 1m\n  cooldown: 1m\n",
        ),
    )
    .expect("write config");
    let passwords = users
        .iter()
        .map(|u| (u.name.clone(), u.password.clone()))
        .collect();
    let stack = Stack::start_with_config(tmp, keys, config, passwords);
    let realm = stack.server.realm();
    let alice_pw = stack.password("alice").to_owned();
    let reader_pw = stack.password("reader").to_owned();
    stack.note_sent("alice", "alice-wrong-1");
    stack.note_sent("alice", "alice-wrong-2");
    stack.note_sent("alice", "alice-wrong-3");
    let scope = ["repository:alice/app:pull"];
    let stop = std::sync::atomic::AtomicBool::new(false);

    let (reader_statuses, locked) = thread::scope(|s| {
        // reader keeps getting tokens while alice is locked out.
        let reader = s.spawn(|| {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::SeqCst) || statuses.len() < 5 {
                let r = fetch_token(
                    &realm,
                    Some(SERVICE),
                    &["repository:any/app:pull"],
                    Some(("reader", &reader_pw)),
                    &[],
                );
                if let Some(t) = &r.token {
                    stack.note_token(t);
                }
                statuses.push(r.response.status);
                thread::sleep(Duration::from_millis(20));
            }
            statuses
        });
        for i in 1..=3 {
            let wrong = format!("alice-wrong-{i}");
            let r = fetch_token(&realm, Some(SERVICE), &scope, Some(("alice", &wrong)), &[]);
            assert_eq!(
                r.response.status,
                401,
                "wrong password #{i}: {:?}\n{}",
                r.response,
                stack.diagnostics()
            );
        }
        let locked = fetch_token(
            &realm,
            Some(SERVICE),
            &scope,
            Some(("alice", &alice_pw)),
            &[],
        );
        stop.store(true, Ordering::SeqCst);
        (reader.join().expect("reader thread"), locked)
    });
    let r = &locked.response;
    assert_eq!(
        r.status,
        429,
        "the 4th request (right password) must be refused: {r:?}\n{}",
        stack.diagnostics()
    );
    let retry = r
        .header("retry-after")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("429 without a numeric Retry-After: {:?}", r.headers));
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert!(
        reader_statuses.iter().all(|s| *s == 200),
        "reader must keep getting tokens: {reader_statuses:?}"
    );

    // The same account from another client address (via the trusted proxy) is not locked.
    let other_ip = http::get(
        &format!(
            "{realm}?service={}&scope=repository:alice/app:pull",
            http::urlencode(SERVICE)
        ),
        &[
            ("Authorization", basic("alice", &alice_pw)),
            ("X-Forwarded-For", "198.51.100.20".to_owned()),
        ],
    );
    assert_eq!(
        other_ip.status, 200,
        "alice from another address is not locked: {other_ip:?}"
    );
    stack.note_token(&token_of(&other_ip));

    // docker login (right password) fails while locked out.
    stack.note_sent("alice", &alice_pw);
    let login = stack.clients.docker_login(Some(("alice", &alice_pw)));
    assert!(
        login.outcome != crate::common::clients::Outcome::Ok
            && login.log.to_lowercase().contains("too many"),
        "docker login must fail while alice is locked out (too many failed logins):\n{}\n{}",
        login.log,
        stack.diagnostics()
    );
    let text = stack.server.log_when(|t| t.contains("locked out"));
    assert!(
        text.contains("locked out"),
        "no audit line for the locked-out request:\n{}",
        stack.diagnostics()
    );
    let (mtext, samples) = get_metrics(&format!("http://{}", stack.server.addr));
    assert!(
        metric(
            &samples,
            "registry_auth_token_decisions_total",
            &[("outcome", "locked_out")]
        )
        .is_some_and(|v| v >= 2.0),
        "locked_out decisions (the 429 and docker login):\n{mtext}"
    );
    stack.assert_log_secrecy();
}

// ------------------------------------------------------------------------------ environment

#[test]
fn environment_variables_configure_serve_and_unknown_ones_are_refused() {
    let _t = Timer::start("environment");
    let fx = Fixture::new(
        "ra-it-ops-env",
        &[],
        true,
        SIMPLE_ACL,
        "  addr: \"127.0.0.1:0\"\n",
        "",
    );
    let config = fx.config.to_string_lossy().into_owned();
    let anon = |srv: &Proc| {
        let r = token_get(
            &srv.base(),
            "/auth",
            &["repository:public/x:pull"],
            None,
            &[],
        );
        assert_eq!(r.status, 200, "{r:?}");
    };

    // REGISTRY_AUTH_CONFIG instead of --config.
    let srv = Proc::start(
        &["serve", "--listen", "127.0.0.1:0"],
        &[("REGISTRY_AUTH_CONFIG", &config)],
        &fx.dir().join("env1.log"),
    );
    anon(&srv);
    drop(srv);

    // A flag wins over its variable: a bad REGISTRY_AUTH_LISTEN is not used.
    let srv = Proc::start(
        &["serve", "--listen", "127.0.0.1:0"],
        &[
            ("REGISTRY_AUTH_CONFIG", &config),
            ("REGISTRY_AUTH_LISTEN", "256.0.0.1:99999"),
        ],
        &fx.dir().join("env2.log"),
    );
    anon(&srv);
    drop(srv);

    // The variables alone: REGISTRY_AUTH_LISTEN and REGISTRY_AUTH_LOG_FORMAT.
    let log3 = fx.dir().join("env3.log");
    let srv = Proc::start(
        &["serve"],
        &[
            ("REGISTRY_AUTH_CONFIG", &config),
            ("REGISTRY_AUTH_LISTEN", "127.0.0.1:0"),
            ("REGISTRY_AUTH_LOG_FORMAT", "json"),
        ],
        &log3,
    );
    anon(&srv);
    drop(srv);
    let text = fs::read_to_string(&log3).expect("log");
    assert!(
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "REGISTRY_AUTH_LOG_FORMAT=json:\n{text}"
    );

    // ... and a bad REGISTRY_AUTH_LISTEN without the flag is used (and fails).
    let mut cmd = server::command();
    cmd.args(["serve"])
        .env("REGISTRY_AUTH_CONFIG", &config)
        .env("REGISTRY_AUTH_LISTEN", "256.0.0.1:99999");
    let out = proc::run(&mut cmd, None, Duration::from_secs(20));
    assert!(
        !out.success() && !out.timed_out && out.combined().contains("256.0.0.1:99999"),
        "{}",
        out.describe()
    );

    // An unknown REGISTRY_AUTH_* variable: exit 2, naming it.
    let mut cmd = server::command();
    cmd.args(["serve", "--config", &config, "--listen", "127.0.0.1:0"])
        .env("REGISTRY_AUTH_FOO", "1");
    let out = proc::run(&mut cmd, None, Duration::from_secs(20));
    assert_eq!(out.code, Some(2), "{}", out.describe());
    assert!(
        out.stderr.contains("REGISTRY_AUTH_FOO"),
        "{}",
        out.describe()
    );
}
