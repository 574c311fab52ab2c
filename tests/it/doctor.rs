//! `registry-auth doctor` against real registries (distribution 2.8.2 and v3.1.1) and a real
//! `serve`: a correct deployment passes every check, and each broken variant fails with the
//! diagnosis that names it — a wrong `issuer`, a `rootcertbundle` without our certificate,
//! `kid-libtrust` against v3 with only a bundle, a `service` this config does not serve, a realm
//! that is another token server, a path prefix mismatch, a registry clock that is off (its
//! `Date` rewritten by a small proxy in this file) and a registry TLS CA the doctor does not
//! know. The doctor's JSON output is asserted per check; the text output of the passing run is
//! checked for secrets.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::common::keys::{KeyFiles, KeySetup, Pki, yaml_str};
use crate::common::proc::{self, ChildGuard, CmdOutput, StopMode};
use crate::common::registry::{Registry, RegistryKind, RegistryOptions, RegistrySpec};
use crate::common::server::{self, AuthServer};
use crate::common::stack::{ISSUER, SERVICE, User, config_yaml, tempdir};

const ACL: &str = r#"  - match: {account: alice, name: "alice/*"}
    actions: [pull, push]
  - match: {account: "", name: "public/*"}
    actions: [pull]
"#;

/// How a test bends the deployment.
#[derive(Debug, Default)]
struct Variant {
    /// The registry's `issuer` (default: ours).
    issuer: Option<&'static str>,
    /// The registry's `service` (default: [`SERVICE`]).
    service: Option<&'static str>,
    /// `token.allowed_services` of our config.
    allowed_services: Option<&'static str>,
    /// `server.path_prefix` of our config.
    path_prefix: Option<&'static str>,
    /// The registry's bundle holds another certificate than ours.
    foreign_bundle: bool,
    /// The registry's realm is another registry-auth with its own key.
    foreign_realm: bool,
    /// The registry's realm is a loopback port nothing listens on.
    dead_realm: bool,
    /// The registry serves HTTPS with a test CA's certificate (PKI files in this dir).
    tls: Option<PathBuf>,
    /// registry-auth serves HTTPS with a test CA's certificate (PKI files in this dir), and
    /// the realm is `https://localhost:PORT/auth`.
    realm_tls: Option<PathBuf>,
}

/// A registry-auth server and a registry configured per [`Variant`], in one temp dir.
struct Deployment {
    config: PathBuf,
    server: AuthServer,
    registry: Registry,
    password: String,
    pki: Option<Pki>,
    _other: Option<AuthServer>,
    /// Removed last, after the processes above stopped.
    _tmp: tempfile::TempDir,
}

fn deploy(kind: RegistryKind, setup: KeySetup, v: Variant) -> Deployment {
    let tmp = tempdir("ra-doctor");
    let root = tmp.path().to_owned();
    let keys = KeyFiles::write(setup, &root.join("keys"));
    let alice = User::new("alice");
    let mut yaml = config_yaml(&keys, std::slice::from_ref(&alice), true, ACL);
    if let Some(prefix) = v.path_prefix {
        yaml = yaml.replacen(
            "server:\n",
            &format!("server:\n  path_prefix: \"{prefix}\"\n"),
            1,
        );
    }
    let realm_pki = v
        .realm_tls
        .map(|dir| Pki::write_for(&dir, "realm", &["localhost"]));
    if let Some(p) = &realm_pki {
        yaml = yaml.replacen(
            "server:\n",
            &format!(
                "server:\n  certificate: {}\n  key: {}\n",
                yaml_str(&p.cert.to_string_lossy()),
                yaml_str(&p.key.to_string_lossy())
            ),
            1,
        );
    }
    if let Some(services) = v.allowed_services {
        yaml = yaml.replacen(
            "token:\n",
            &format!("token:\n  allowed_services: {services}\n"),
            1,
        );
    }
    let config = root.join("registry-auth.yml");
    fs::write(&config, yaml).expect("write config");
    let server = AuthServer::start(&config, &root.join("registry-auth.log"));

    let mut realm = server.realm();
    if realm_pki.is_some() {
        realm = format!("https://localhost:{}/auth", port_of(&server.addr));
    }
    let mut other = None;
    if v.foreign_realm {
        let other_keys = KeyFiles::write(KeySetup::EcKid, &root.join("other-keys"));
        let other_config = root.join("other.yml");
        fs::write(&other_config, config_yaml(&other_keys, &[], true, ACL)).expect("write");
        let o = AuthServer::start(&other_config, &root.join("other.log"));
        realm = o.realm();
        other = Some(o);
    }
    if v.dead_realm {
        realm = format!("http://127.0.0.1:{}/auth", proc::free_port());
    }
    let bundle = if v.foreign_bundle {
        KeyFiles::write(KeySetup::EcKid, &root.join("stale-keys")).bundle
    } else {
        keys.bundle
    };
    let mut opts = RegistryOptions::new(kind);
    // A certificate for `localhost` only: https://127.0.0.1:PORT is a name mismatch.
    let tls_registry = v.tls.is_some();
    let pki = v
        .tls
        .map(|dir| Pki::write_for(&dir, "registry", &["localhost"]))
        .or(realm_pki);
    if let (Some(p), true) = (&pki, tls_registry) {
        opts.tls = Some((p.cert.clone(), p.key.clone()));
    }
    let registry = Registry::start_with(
        &root.join("registry"),
        &RegistrySpec {
            realm,
            service: v.service.unwrap_or(SERVICE).to_owned(),
            issuer: v.issuer.unwrap_or(ISSUER).to_owned(),
            rootcertbundle: bundle,
        },
        &opts,
    );
    Deployment {
        config,
        server,
        registry,
        password: alice.password,
        pki,
        _other: other,
        _tmp: tmp,
    }
}

/// The port of `HOST:PORT`.
fn port_of(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap_or_default()
}

/// One doctor run: its output and the parsed JSON report.
struct Run {
    out: CmdOutput,
    report: Value,
}

impl Run {
    /// The first finding of `check`.
    fn finding(&self, check: &str) -> &Value {
        self.report["findings"]
            .as_array()
            .and_then(|a| a.iter().find(|f| f["check"] == check))
            .unwrap_or_else(|| panic!("no `{check}` finding:\n{}", self.out.describe()))
    }

    /// Every finding of `check`.
    fn findings(&self, check: &str) -> Vec<&Value> {
        self.report["findings"]
            .as_array()
            .map(|a| a.iter().filter(|f| f["check"] == check).collect())
            .unwrap_or_default()
    }

    /// Asserts the status of `check`, and that its `seen`/`fix` hold each of `texts`.
    fn expect(&self, check: &str, status: &str, texts: &[&str]) {
        let f = self.finding(check);
        assert_eq!(
            f["status"],
            status,
            "`{check}` should be {status}:\n{}",
            self.out.describe()
        );
        let words = format!(
            "{} {}",
            f["seen"].as_str().unwrap_or_default(),
            f["fix"].as_str().unwrap_or_default()
        );
        for t in texts {
            assert!(
                words.contains(t),
                "`{check}` should say {t:?}; it says {words}\n{}",
                self.out.describe()
            );
        }
    }

    /// Asserts the troubleshooting entry of `check`'s first finding.
    fn entry(&self, check: &str, entry: &str) {
        assert_eq!(
            self.finding(check)["link"],
            format!("docs/src/operating/troubleshooting.md#doctor-{entry}"),
            "{}",
            self.out.describe()
        );
    }

    fn exit(&self, code: i32) {
        assert_eq!(self.out.code, Some(code), "{}", self.out.describe());
    }
}

fn doctor(d: &Deployment, registry: &str, extra: &[&str], stdin: Option<&str>) -> Run {
    let out = doctor_raw(
        &d.config,
        registry,
        &[&["--format", "json"], extra].concat(),
        stdin,
    );
    let report = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor printed no JSON report ({e}):\n{}", out.describe()));
    Run { out, report }
}

fn doctor_raw(config: &Path, registry: &str, extra: &[&str], stdin: Option<&str>) -> CmdOutput {
    let mut cmd = server::command();
    cmd.arg("doctor")
        .arg("--config")
        .arg(config)
        .args(["--registry", registry])
        .args(extra);
    proc::run(&mut cmd, stdin, Duration::from_secs(40))
}

fn log_arg(d: &Deployment) -> String {
    d.registry.log.to_string_lossy().into_owned()
}

/// Every check of a correct deployment passes, for alice with a scope and with the registry's
/// log; the text report never shows her password or a token.
fn correct_deployment_passes(kind: RegistryKind, setup: KeySetup) {
    let d = deploy(kind, setup, Variant::default());
    let log = log_arg(&d);
    let url = d.registry.base_url();
    let args = [
        "--scope",
        "repository:alice/app:pull",
        "--username",
        "alice",
        "--password-stdin",
        "--registry-log",
        &log,
    ];
    let run = doctor(&d, &url, &args, Some(&format!("{}\n", d.password)));
    run.exit(0);
    for f in run.report["findings"].as_array().expect("findings") {
        assert_eq!(f["status"], "ok", "{f}\n{}", run.out.describe());
    }
    for check in [
        "registry",
        "realm",
        "path-prefix",
        "service",
        "login",
        "trust",
        "scope",
        "clock",
        "registry-log",
    ] {
        run.finding(check);
    }
    run.expect("realm", "ok", &["is this server", ISSUER]);
    run.expect("scope", "ok", &["\"alice\"", "alice/app", "granted: pull"]);
    run.expect("login", "ok", &["\"alice\"", "vouched for by users"]);
    // The text form: one line per check, no secret.
    let text = doctor_raw(&d.config, &url, &args, Some(&format!("{}\n", d.password)));
    assert!(text.success(), "{}", text.describe());
    assert!(text.stdout.contains("ok    trust: "), "{}", text.describe());
    assert!(
        text.stdout.ends_with("all checks passed (0 warning(s))\n"),
        "{}",
        text.describe()
    );
    let all = format!("{}{}", text.combined(), run.out.combined());
    assert!(
        !all.contains(&d.password),
        "the password was printed:\n{all}"
    );
    assert!(
        !all.contains("eyJ"),
        "a token (JWS segment) was printed:\n{all}"
    );
}

#[test]
fn v2_a_correct_deployment_passes_every_check() {
    correct_deployment_passes(RegistryKind::V2, KeySetup::EcKid);
}

#[test]
fn v3_a_correct_deployment_passes_every_check() {
    correct_deployment_passes(RegistryKind::V3, KeySetup::EcLeafX5c);
}

/// A wrong issuer: every header is refused; the registry's log tells it from an untrusted key.
fn wrong_issuer(kind: RegistryKind, setup: KeySetup) {
    let d = deploy(
        kind,
        setup,
        Variant {
            issuer: Some("someone else"),
            ..Variant::default()
        },
    );
    let url = d.registry.base_url();
    // Without the log, both causes stay open and the text says so.
    let run = doctor(&d, &url, &[], None);
    run.exit(1);
    run.expect(
        "trust",
        "fail",
        &[
            "refused",
            r#"issuer is not "Acme auth server""#,
            "--registry-log",
        ],
    );
    let run = doctor(&d, &url, &["--registry-log", &log_arg(&d)], None);
    run.exit(1);
    run.expect(
        "registry-log",
        "fail",
        &[
            "untrusted issuer",
            r#"auth.token.issuer to "Acme auth server""#,
        ],
    );
    run.entry("registry-log", "issuer");
    run.entry("trust", "issuer");
    run.expect("realm", "ok", &[]);
    // The log streamed on stdin (`docker logs -f … |`): the doctor's lines are picked by time
    // and User-Agent among what arrives while it runs.
    let run = doctor_with_log_stream(&d, &url);
    run.exit(1);
    run.expect("registry-log", "fail", &["untrusted issuer"]);
}

/// A doctor run with `--registry-log -` fed by `tail -F` of the registry's log.
fn doctor_with_log_stream(d: &Deployment, url: &str) -> Run {
    let log = log_arg(d);
    let mut tail = Command::new(proc::require_tool("tail"))
        .args(["-n", "0", "-F", &log])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tail");
    let stream = tail.stdout.take().expect("tail stdout");
    let _tail = ChildGuard::new("tail", tail, StopMode::Kill);
    let mut cmd = server::command();
    cmd.arg("doctor")
        .arg("--config")
        .arg(&d.config)
        .args(["--registry", url, "--format", "json", "--registry-log", "-"])
        .stdin(stream);
    let line = proc::cmdline(&cmd);
    let output = cmd.output().expect("run doctor");
    let out = CmdOutput {
        cmdline: line,
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        timed_out: false,
        elapsed: Duration::ZERO,
    };
    let report = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor printed no JSON report ({e}):\n{}", out.describe()));
    Run { out, report }
}

#[test]
fn v2_a_wrong_issuer_is_named() {
    wrong_issuer(RegistryKind::V2, KeySetup::EcKid);
}

#[test]
fn v3_a_wrong_issuer_is_named() {
    // x5c: v3 would refuse a libtrust kid before it looks at the issuer.
    wrong_issuer(RegistryKind::V3, KeySetup::EcLeafX5c);
}

/// The registry's bundle holds a stale certificate: every header is refused, and the log's
/// "untrusted key" (with our kid) means our key is missing, whatever the version.
fn bundle_without_our_certificate(kind: RegistryKind) {
    let d = deploy(
        kind,
        KeySetup::EcKid,
        Variant {
            foreign_bundle: true,
            ..Variant::default()
        },
    );
    let run = doctor(
        &d,
        &d.registry.base_url(),
        &["--registry-log", &log_arg(&d)],
        None,
    );
    run.exit(1);
    run.expect("trust", "fail", &["x5c, kid-thumbprint"]);
    let log = run.findings("registry-log");
    assert_eq!(
        log.len(),
        1,
        "one finding for the three refusals:\n{}",
        run.out.describe()
    );
    run.expect(
        "registry-log",
        "fail",
        &[
            "untrusted key with ID",
            "does not hold our signing key",
            &format!("http://{}/rootcertbundle.pem", d.server.addr),
            "and 2 more line(s)",
        ],
    );
    run.entry("registry-log", "untrusted-key");
    run.entry("trust", "untrusted-key");
}

#[test]
fn v2_a_rootcertbundle_without_our_certificate_is_named() {
    bundle_without_our_certificate(RegistryKind::V2);
}

#[test]
fn v3_a_rootcertbundle_without_our_certificate_is_named() {
    bundle_without_our_certificate(RegistryKind::V3);
}

#[test]
fn v3_kid_libtrust_with_only_a_bundle_wants_another_header() {
    let d = deploy(RegistryKind::V3, KeySetup::EcKid, Variant::default());
    let run = doctor(
        &d,
        &d.registry.base_url(),
        &["--registry-log", &log_arg(&d)],
        None,
    );
    run.exit(1);
    run.expect(
        "trust",
        "fail",
        &[
            "refused our kid-libtrust token",
            "accepted the same token with x5c, kid-thumbprint",
            "signing_header: x5c",
            "auth.token.jwks",
        ],
    );
    run.entry("trust", "untrusted-key");
    run.expect(
        "registry-log",
        "fail",
        &["registry v3", "libtrust kid", "signing_header: x5c"],
    );
}

#[test]
fn v2_a_service_this_config_does_not_serve_fails() {
    let d = deploy(
        RegistryKind::V2,
        KeySetup::EcKid,
        Variant {
            allowed_services: Some("[\"team registry\"]"),
            ..Variant::default()
        },
    );
    let run = doctor(&d, &d.registry.base_url(), &[], None);
    run.exit(1);
    run.expect(
        "service",
        "fail",
        &[
            r#""Docker registry" is not in token.allowed_services"#,
            r#"add "Docker registry" to token.allowed_services"#,
        ],
    );
    run.entry("service", "service");
}

#[test]
fn v2_a_realm_that_is_another_token_server_is_named() {
    let d = deploy(
        RegistryKind::V2,
        KeySetup::EcKid,
        Variant {
            foreign_realm: true,
            ..Variant::default()
        },
    );
    let run = doctor(&d, &d.registry.base_url(), &[], None);
    run.exit(1);
    run.expect(
        "realm",
        "fail",
        &["publishes other keys", "another token server"],
    );
    run.entry("realm", "realm");
    // The registry itself trusts our key: only the realm is wrong.
    run.expect("trust", "ok", &[]);
}

#[test]
fn v2_a_realm_nothing_answers_at_is_named() {
    let d = deploy(
        RegistryKind::V2,
        KeySetup::EcKid,
        Variant {
            dead_realm: true,
            ..Variant::default()
        },
    );
    let run = doctor(&d, &d.registry.base_url(), &[], None);
    run.exit(1);
    run.expect(
        "realm",
        "fail",
        &["cannot be reached from here", "as clients reach it"],
    );
    run.entry("realm", "realm");
}

#[test]
fn v2_a_realm_path_that_misses_the_path_prefix_says_where_the_server_is() {
    let d = deploy(
        RegistryKind::V2,
        KeySetup::EcKid,
        Variant {
            path_prefix: Some("/registry-auth"),
            ..Variant::default()
        },
    );
    // The registry's realm is http://HOST/auth; the server lives under /registry-auth.
    let run = doctor(&d, &d.registry.base_url(), &[], None);
    run.exit(1);
    let at = format!("http://{}/registry-auth/auth", d.server.addr);
    run.expect(
        "path-prefix",
        "fail",
        &[
            r#"means path_prefix """#,
            &format!("this server answers at {at}"),
            &format!("auth.token.realm to {at}"),
        ],
    );
    run.entry("path-prefix", "path-prefix");
    run.expect("realm", "fail", &[&format!("this server is at {at}")]);
    run.entry("realm", "path-prefix");
}

/// A proxy in front of the registry that replaces its `Date` with one `offset` seconds off
/// (one request per connection; the doctor only sends `GET`s).
fn date_skewing_proxy(upstream: String, offset: i64) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr").to_string();
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let upstream = upstream.clone();
            thread::spawn(move || {
                let _ = proxy_one(client, &upstream, offset);
            });
        }
    });
    addr
}

fn proxy_one(mut client: TcpStream, upstream: &str, offset: i64) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut request: String = head
        .trim_end()
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    request.push_str("Connection: close\r\n\r\n");
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    server.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(response.len());
    let (resp_head, body) = response.split_at(split);
    let date = http_date(SystemTime::now(), offset);
    let mut out: String = String::from_utf8_lossy(resp_head)
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.starts_with("date:") && !l.starts_with("connection:")
        })
        .map(|l| format!("{l}\r\n"))
        .collect();
    out.push_str(&format!("Date: {date}\r\nConnection: close"));
    client.write_all(out.as_bytes())?;
    client.write_all(body)?;
    Ok(())
}

/// An IMF-fixdate `offset` seconds from `now`.
fn http_date(now: SystemTime, offset: i64) -> String {
    let t = time::OffsetDateTime::from(now) + time::Duration::seconds(offset);
    let format = time::format_description::parse_borrowed::<2>(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT",
    )
    .expect("date format");
    t.format(&format).expect("format date")
}

#[test]
fn v2_a_registry_clock_behind_ours_fails() {
    let d = deploy(RegistryKind::V2, KeySetup::EcKid, Variant::default());
    let proxy = date_skewing_proxy(d.registry.addr.clone(), -300);
    let run = doctor(&d, &format!("http://{proxy}"), &[], None);
    run.exit(1);
    run.expect("clock", "fail", &["s behind ours", "not yet valid", "NTP"]);
    run.entry("clock", "clock");
    let seen = run.finding("clock")["seen"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let secs: i64 = seen
        .split("clock is ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no seconds in {seen}"));
    assert!((298..=302).contains(&secs), "{seen}");
    // Through the proxy, the same registry with its right clock passes everything else.
    run.expect("trust", "ok", &[]);
    let ahead = date_skewing_proxy(d.registry.addr.clone(), 30);
    let run = doctor(&d, &format!("http://{ahead}"), &[], None);
    run.exit(0);
    run.expect("clock", "warn", &["differs from ours by +", "NTP"]);
}

#[test]
fn v2_a_registry_tls_ca_the_doctor_does_not_know_and_a_wrong_name_are_named() {
    let pki_dir = tempdir("ra-doctor-pki");
    let d = deploy(
        RegistryKind::V2,
        KeySetup::EcKid,
        Variant {
            tls: Some(pki_dir.path().to_owned()),
            ..Variant::default()
        },
    );
    let by_ip = d.registry.base_url();
    assert!(by_ip.starts_with("https://127.0.0.1:"), "{by_ip}");
    let url = by_ip.replace("127.0.0.1", "localhost");
    let run = doctor(&d, &url, &[], None);
    run.exit(1);
    run.expect(
        "tls",
        "fail",
        &["from a CA this host does not trust", "--ca-file"],
    );
    run.entry("tls", "tls");
    let ca = d
        .pki
        .as_ref()
        .expect("pki")
        .ca
        .to_string_lossy()
        .into_owned();
    let run = doctor(&d, &url, &["--ca-file", &ca], None);
    run.exit(0);
    run.expect("tls", "ok", &["trusted"]);
    run.expect("trust", "ok", &[]);
    let run = doctor(&d, &by_ip, &["--ca-file", &ca], None);
    run.exit(1);
    run.expect(
        "tls",
        "fail",
        &["not valid for the host name", "subjectAltName"],
    );
}

#[test]
fn conflicting_or_incomplete_options_are_refused_before_any_request() {
    let tmp = tempdir("ra-doctor-args");
    let config = tmp.path().join("missing.yml");
    let url = "http://127.0.0.1:9/";
    let out = doctor_raw(&config, url, &["--username", "alice"], None);
    assert_eq!(out.code, Some(2), "{}", out.describe());
    assert!(
        out.stderr.contains("--password-stdin"),
        "{}",
        out.describe()
    );
    let out = doctor_raw(
        &config,
        url,
        &["--username", "a", "--password-stdin", "--registry-log", "-"],
        Some("pw\n"),
    );
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(out.stderr.contains("both read stdin"), "{}", out.describe());
    let out = doctor_raw(&config, url, &[], None);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(out.stderr.contains("missing.yml"), "{}", out.describe());
    assert!(out.stdout.is_empty(), "{}", out.describe());
}

#[test]
fn v2_a_realm_tls_ca_the_doctor_does_not_know_is_named() {
    let pki_dir = tempdir("ra-doctor-pki");
    let d = deploy(
        RegistryKind::V2,
        KeySetup::EcKid,
        Variant {
            realm_tls: Some(pki_dir.path().to_owned()),
            ..Variant::default()
        },
    );
    let url = d.registry.base_url();
    let run = doctor(&d, &url, &[], None);
    run.exit(1);
    run.expect(
        "tls",
        "fail",
        &[
            "the realm https://localhost:",
            "CA this host does not trust",
            "--ca-file",
        ],
    );
    run.expect("realm", "fail", &["could not be reached over TLS"]);
    run.entry("realm", "tls");
    let ca = d
        .pki
        .as_ref()
        .expect("pki")
        .ca
        .to_string_lossy()
        .into_owned();
    let run = doctor(&d, &url, &["--ca-file", &ca], None);
    run.exit(0);
    run.expect("tls", "ok", &["realm's certificate"]);
    run.expect("realm", "ok", &["is this server"]);
}
