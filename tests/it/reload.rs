//! Hot reload through the real binary: a file that changes while the loader runs is loaded
//! again, never marked as seen without having been loaded; the listener's TLS certificate is
//! read again on reload (new connections get it, established ones keep theirs) and a broken
//! pair keeps the old one.
//!
//! The loader is paused deterministically between its read of `users_file` and the end of the
//! load by the debug-build test hook `RA_TEST_PAUSE_DIR` (src/config/sources.rs), so
//! the test never races the loader with sleeps.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::keys::{KeyFiles, KeySetup, Pki, bcrypt_hash, pem_certs};
use crate::common::stack::{User, config_yaml, tempdir};
use crate::ops::{Proc, token_get, write_atomic};

fn htpasswd(users: &[&User]) -> String {
    users
        .iter()
        .map(|u| format!("{}:{}\n", u.name, bcrypt_hash(&u.password)))
        .collect()
}

fn status(base: &str, u: &User) -> u16 {
    token_get(
        base,
        "/auth",
        &["repository:x/app:pull"],
        Some((&u.name, &u.password)),
        &[],
    )
    .status
}

fn wait_file(path: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn a_users_file_changed_while_the_loader_runs_is_loaded_again() {
    let tmp = tempdir("ra-it-reload-race");
    let dir = tmp.path();
    let keys = KeyFiles::write(KeySetup::EcKid, &dir.join("keys"));
    let (admin, alice, bob, carol) = (
        User::new("admin"),
        User::new("alice"),
        User::new("bob"),
        User::new("carol"),
    );
    let users = dir.join("users.htpasswd");
    fs::write(&users, htpasswd(&[&alice, &bob])).unwrap();
    let config = dir.join("registry-auth.yml");
    let acl = "  - match: {name: \"x/*\"}\n    actions: [pull]\n";
    let yaml = config_yaml(&keys, std::slice::from_ref(&admin), false, acl);
    fs::write(&config, format!("{yaml}users_file: users.htpasswd\n")).unwrap();
    let hook = dir.join("hook");
    fs::create_dir(&hook).unwrap();
    let log = dir.join("registry-auth.log");
    let hook_dir = hook.to_string_lossy().into_owned();
    let config_arg = config.to_string_lossy().into_owned();
    let srv = Proc::start(
        &["serve", "--config", &config_arg, "--listen", "127.0.0.1:0"],
        &[("RA_TEST_PAUSE_DIR", &hook_dir)],
        &log,
    );
    let base = srv.base();
    assert_eq!(status(&base, &alice), 200, "{}", srv.log_tail(10));
    assert_eq!(status(&base, &carol), 401);

    // Arm the hook, then change the file (carol added): the poller loads it, and the loader
    // stops right after reading it.
    fs::write(hook.join("pause"), "users.htpasswd").unwrap();
    write_atomic(&users, &htpasswd(&[&alice, &bob, &carol]));
    assert!(
        wait_file(&hook.join("paused"), Duration::from_secs(20)),
        "the loader never read users.htpasswd with the hook armed (the hook needs a debug build \
         of registry-auth):\n{}",
        srv.log_tail(10)
    );
    // While the load is still running: alice is removed. Then the loader goes on.
    write_atomic(&users, &htpasswd(&[&bob, &carol]));
    fs::write(hook.join("resume"), "").unwrap();

    // The version without alice must be the one loaded. The old watcher fingerprinted the
    // files after the load, so it swapped in the version it had read (with alice), took the
    // newer one as seen, and alice kept working until a SIGHUP.
    assert!(
        srv.wait_log("configuration reloaded", 1, Duration::from_secs(20)),
        "no reload within 20 s:\n{}",
        srv.log_tail(15)
    );
    assert_eq!(
        status(&base, &alice),
        401,
        "alice was removed from users_file while the loader ran, yet her password still \
         works; log:\n{}",
        srv.log_tail(15)
    );
    assert_eq!(status(&base, &carol), 200, "{}", srv.log_tail(15));
    assert_eq!(status(&base, &bob), 200);
    // The load that read the intermediate version was not swapped in: the file had changed
    // before it ended.
    assert_eq!(
        srv.count_log("a file changed while the configuration was loading"),
        1,
        "{}",
        srv.log_tail(15)
    );
}

// ------------------------------------------------------------------- the listener's certificate

/// A TLS connection to the server that trusts the CAs `cas` (PEM files).
struct TlsConn {
    stream: rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
}

impl TlsConn {
    fn open(port: u16, cas: &[&Path]) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for ca in cas {
            for der in pem_certs(ca) {
                roots
                    .add(rustls::pki_types::CertificateDer::from(der))
                    .expect("add CA");
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("TLS client");
        let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .expect("TLS handshake with the server");
        }
        Self { stream }
    }

    /// The DER of the leaf certificate the server presented.
    fn leaf(&self) -> Vec<u8> {
        self.stream
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec())
            .expect("the server sent no certificate")
    }

    /// `GET path` on this (kept-alive) connection: status and body.
    fn get(&mut self, path: &str) -> (u16, String) {
        write!(
            self.stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n"
        )
        .expect("send request");
        self.stream.flush().expect("flush");
        let mut raw = Vec::new();
        let mut byte = [0u8; 1];
        while !raw.ends_with(b"\r\n\r\n") {
            let n = self.stream.read(&mut byte).expect("read response head");
            assert!(
                n == 1,
                "connection closed mid-head: {}",
                String::from_utf8_lossy(&raw)
            );
            raw.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&raw).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head}"));
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or_else(|| panic!("no content-length in {head}"));
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).expect("read body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

fn leaf_der(pki: &Pki) -> Vec<u8> {
    pem_certs(&pki.cert)
        .into_iter()
        .next()
        .expect("leaf in PEM")
}

/// `registry_auth_config_reloads_total{result="…"}` from a `/metrics` text.
fn reloads(metrics: &str, result: &str) -> f64 {
    let prefix = format!("registry_auth_config_reloads_total{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn the_server_certificate_is_read_again_on_reload_and_a_broken_pair_keeps_the_old_one() {
    let tmp = tempdir("ra-it-reload-tls");
    let dir = tmp.path();
    let keys = KeyFiles::write(KeySetup::EcKid, &dir.join("keys"));
    let old = Pki::write(&dir.join("pki-old"), "old");
    let new = Pki::write(&dir.join("pki-new"), "new");
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let read = |p: &Path| fs::read_to_string(p).expect("read PEM");
    fs::write(&crt, read(&old.cert)).unwrap();
    fs::write(&key, read(&old.key)).unwrap();
    let config = dir.join("registry-auth.yml");
    let acl = "  - match: {name: \"x/*\"}\n    actions: [pull]\n";
    let yaml = config_yaml(&keys, &[User::new("admin")], false, acl);
    let plain = "server:\n  addr: \"127.0.0.1:0\"\n";
    assert!(yaml.starts_with(plain), "unexpected config shape");
    let yaml = yaml.replacen(
        plain,
        &format!("{plain}  certificate: tls.crt\n  key: tls.key\n"),
        1,
    );
    fs::write(&config, yaml).unwrap();
    let log = dir.join("registry-auth.log");
    let config_arg = config.to_string_lossy().into_owned();
    let mut srv = Proc::start(
        &["serve", "--config", &config_arg, "--listen", "127.0.0.1:0"],
        &[],
        &log,
    );
    let port = srv.port();
    let cas = [old.ca.as_path(), new.ca.as_path()];

    let mut established = TlsConn::open(port, &cas);
    assert!(
        established.leaf() == leaf_der(&old),
        "not the first certificate at start"
    );
    assert_eq!(established.get("/healthz").0, 200, "{}", srv.log_tail(10));

    // cert-manager renews: both files replaced, then SIGHUP (the poller may be first).
    write_atomic(&crt, &read(&new.cert));
    write_atomic(&key, &read(&new.key));
    srv.signal("HUP");
    assert!(
        srv.wait_log(
            "server TLS certificate reloaded",
            1,
            Duration::from_secs(20)
        ),
        "the renewed certificate was not reloaded:\n{}",
        srv.log_tail(15)
    );
    let mut fresh = TlsConn::open(port, &cas);
    assert!(
        fresh.leaf() == leaf_der(&new),
        "a new connection still gets the old certificate after the reload:\n{}",
        srv.log_tail(15)
    );
    assert_eq!(fresh.get("/healthz").0, 200);
    // The connection opened before the reload keeps working (with the certificate it got).
    assert_eq!(established.get("/healthz").0, 200, "{}", srv.log_tail(10));
    assert!(established.leaf() == leaf_der(&old));

    // A broken renewal: the key of the old pair next to the new certificate. The reload fails
    // (logged with the key and the fix, counted), the new certificate keeps serving.
    let failed_before = reloads(&fresh.get("/metrics").1, "failure");
    write_atomic(&key, &read(&old.key));
    srv.signal("HUP");
    assert!(
        srv.wait_log(
            "does not belong to the certificate",
            1,
            Duration::from_secs(20)
        ),
        "the mismatched pair was not reported:\n{}",
        srv.log_tail(15)
    );
    let report = srv
        .log_tail(40)
        .lines()
        .find(|l| l.contains("does not belong to the certificate"))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(
        report.contains("server.certificate") && report.contains("issued for"),
        "the failure names neither the key nor the fix: {report}"
    );
    assert!(srv.wait_log("the previous one keeps serving", 1, Duration::from_secs(5)));
    let mut after = TlsConn::open(port, &cas);
    assert!(
        after.leaf() == leaf_der(&new),
        "a broken pair replaced the certificate in force:\n{}",
        srv.log_tail(15)
    );
    let failed_after = reloads(&after.get("/metrics").1, "failure");
    assert!(
        failed_after > failed_before,
        "config_reloads_total{{result=\"failure\"}} {failed_before} → {failed_after}"
    );
    assert_eq!(srv.count_log("server TLS certificate reloaded"), 1);
}
