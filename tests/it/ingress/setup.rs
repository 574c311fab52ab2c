//! The ingress test's set-up: the shipped files, the test PKI, dockerd's certs.d folder and
//! nginx running deploy/nginx/registry.conf.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{MIRROR_HOST, NGINX_UPSTREAM_ADDR, REGISTRY_HOST};
use crate::common::proc::{self, ChildGuard, StopMode, require_tool, tail};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub(super) fn shipped(rel: &str) -> String {
    fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// `text` with `from` replaced by `to`; fails when the shipped file no longer has `from`.
pub(super) fn subst(text: &str, file: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "{file} no longer contains {from:?}: update tests/it/ingress.rs and docs/src/operating/deployment.md"
    );
    text.replace(from, to)
}

/// A self-signed CA: its PEM and the issuer to sign with.
pub(super) fn new_ca(name: &str) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let ca = ca_params.self_signed(&ca_key).expect("self-sign CA");
    (ca.pem(), rcgen::Issuer::new(ca_params, ca_key))
}

pub(super) struct Pki {
    pub(super) ca: PathBuf,
    /// Another CA, which did not sign nginx's certificate.
    pub(super) wrong_ca: PathBuf,
    pub(super) cert: PathBuf,
    pub(super) key: PathBuf,
}

/// A test CA and nginx's certificate for both host names signed by it.
pub(super) fn write_pki(dir: &Path) -> Pki {
    fs::create_dir_all(dir).expect("mkdir pki");
    let (ca_pem, issuer) = new_ca("registry-auth ingress test CA");
    let (wrong_pem, _) = new_ca("registry-auth ingress test CA");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let mut leaf_params =
        rcgen::CertificateParams::new(vec![REGISTRY_HOST.to_owned(), MIRROR_HOST.to_owned()])
            .expect("leaf params");
    leaf_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, REGISTRY_HOST);
    let leaf = leaf_params
        .signed_by(&leaf_key, &issuer)
        .expect("sign leaf");
    let pki = Pki {
        ca: dir.join("ca.crt"),
        wrong_ca: dir.join("wrong-ca.crt"),
        cert: dir.join("nginx.crt"),
        key: dir.join("nginx.key"),
    };
    fs::write(&pki.ca, ca_pem).expect("write CA");
    fs::write(&pki.wrong_ca, wrong_pem).expect("write wrong CA");
    fs::write(&pki.cert, leaf.pem()).expect("write leaf");
    fs::write(&pki.key, leaf_key.serialize_pem()).expect("write key");
    pki
}

/// `certs.d/<host:port>` in the folder the test's dockerd sees as `/etc/docker` (dockerd 20.10
/// reads only `/etc/docker/certs.d`, or a folder under `$XDG_CONFIG_HOME` in rootless mode).
pub(super) struct DockerCertsDir(PathBuf);

impl DockerCertsDir {
    pub(super) fn new(etc_docker: &Path, host_port: &str) -> Self {
        Self(etc_docker.join("certs.d").join(host_port))
    }

    /// Puts `ca` in as `ca.crt` (dockerd reads the folder on every registry operation).
    pub(super) fn trust(&self, ca: &Path) {
        fs::create_dir_all(&self.0).expect("mkdir certs.d/<host:port>");
        fs::copy(ca, self.0.join("ca.crt")).expect("copy ca.crt");
    }
}

/// The upstreams nginx proxies to.
pub(super) struct Upstreams<'a> {
    pub(super) auth: &'a str,
    pub(super) registry: &'a str,
    pub(super) mirror: &'a str,
}

/// nginx (Debian's) with the shipped deploy/nginx/registry.conf, one process in the foreground.
pub(super) struct Nginx {
    dir: PathBuf,
    _guard: ChildGuard,
}

impl Nginx {
    pub(super) fn start(dir: &Path, port: u16, pki: &Pki, up: &Upstreams<'_>) -> Self {
        let bin = require_tool("nginx");
        fs::create_dir_all(dir.join("tmp")).expect("mkdir nginx");
        let file = "deploy/nginx/registry.conf";
        let mut conf = shipped(file);
        let (cert, key) = (pki.cert.display(), pki.key.display());
        for (from, to) in [
            ("server registry-auth:5001;", format!("server {};", up.auth)),
            ("server registry:5000;", format!("server {};", up.registry)),
            ("server mirror:5000;", format!("server {};", up.mirror)),
            ("listen 443 ssl;", format!("listen 127.0.0.1:{port} ssl;")),
            // One certificate for both names in the test.
            ("/etc/nginx/tls/registry.example.com.crt", cert.to_string()),
            ("/etc/nginx/tls/registry.example.com.key", key.to_string()),
            ("/etc/nginx/tls/mirror.example.com.crt", cert.to_string()),
            ("/etc/nginx/tls/mirror.example.com.key", key.to_string()),
            (
                "server_name registry.example.com;",
                format!("server_name {REGISTRY_HOST};"),
            ),
            (
                "server_name mirror.example.com;",
                format!("server_name {MIRROR_HOST};"),
            ),
        ] {
            conf = subst(&conf, file, from, &to);
        }
        fs::write(dir.join("registry.conf"), conf).expect("write registry.conf");
        let d = dir.display();
        // The test's main file: what /etc/nginx/nginx.conf is on a server, in the temp dir.
        let main = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 256; }}\nhttp {{\n  \
             log_format fwd '$remote_addr $host \"$request\" $status xff=\"$http_x_forwarded_for\"';\n  \
             access_log {d}/access.log fwd;\n  \
             client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n  \
             fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  \
             scgi_temp_path {d}/tmp/scgi;\n  proxy_bind {NGINX_UPSTREAM_ADDR};\n  \
             include {d}/registry.conf;\n}}\n"
        );
        let main_file = dir.join("nginx.conf");
        fs::write(&main_file, main).expect("write nginx.conf");
        let test = proc::run(
            Command::new(&bin)
                .arg("-t")
                .arg("-c")
                .arg(&main_file)
                .arg("-p")
                .arg(dir),
            None,
            Duration::from_secs(30),
        );
        assert!(test.success(), "nginx -t:\n{}", test.describe());
        let log = fs::File::create(dir.join("stderr.log")).expect("nginx stderr");
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&main_file)
            .arg("-p")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn nginx");
        let mut guard = ChildGuard::new(
            "nginx",
            child,
            StopMode::TermThenKill(Duration::from_secs(5)),
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = guard.try_wait() {
                panic!(
                    "nginx exited with {status}:\n{}",
                    tail(&dir.join("error.log"), 20)
                );
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {port} within 15 s:\n{}",
                tail(&dir.join("error.log"), 20)
            );
            thread::sleep(Duration::from_millis(25));
        }
        Self {
            dir: dir.to_owned(),
            _guard: guard,
        }
    }

    pub(super) fn access_log(&self) -> String {
        fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    pub(super) fn logs(&self) -> String {
        format!(
            "nginx access log:\n{}\nnginx error log:\n{}",
            tail(&self.dir.join("access.log"), 20),
            tail(&self.dir.join("error.log"), 10)
        )
    }
}
