//! A CNCF distribution registry on a loopback port, token auth, filesystem storage in a temp
//! dir, deletes enabled: 2.8.2 (Debian's `docker-registry`, [`RegistryKind::V2`]) or the
//! upstream v3.1.1 (`registry:3`'s program, built by `scripts/tools/install-registry-v3.sh`,
//! [`RegistryKind::V3`]), with the same token settings (`realm`, `service`, `issuer`,
//! `rootcertbundle` and, v3 only, `jwks` and `signingalgorithms`).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::http;
use super::keys::yaml_str;
use super::proc::{ChildGuard, StopMode, free_port, require_tool, tail, tail_filtered};
use super::tools;

/// Which registry program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryKind {
    /// distribution 2.8.2, Debian's `docker-registry` (`registry:2`).
    V2,
    /// distribution v3.1.1 (`registry:3`), `$RA_TOOLS/bin/registry-v3`.
    V3,
}

impl RegistryKind {
    /// The version, for test titles and messages.
    pub fn version(self) -> &'static str {
        match self {
            Self::V2 => "2.8.2",
            Self::V3 => "v3.1.1",
        }
    }

    /// The program (the test fails loudly, naming how to install it, when it is missing).
    pub fn program(self) -> PathBuf {
        match self {
            Self::V2 => require_tool("docker-registry"),
            Self::V3 => tools::bin("registry-v3", "install-registry-v3.sh"),
        }
    }

    /// The line the registry logs, at info level, when it refuses a token, before the reason.
    pub fn refusal_prefix(self) -> &'static str {
        match self {
            // 2.8 logs the bare reason (`token signed by untrusted key with ID: …`).
            Self::V2 => "",
            Self::V3 => "failed to verify token: ",
        }
    }
}

/// How the registry is told to trust the token server, beyond [`RegistrySpec`].
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    pub kind: RegistryKind,
    /// Write `rootcertbundle: <spec.rootcertbundle>` (false: no bundle; v3 then needs `jwks`).
    pub bundle: bool,
    /// `auth.token.jwks` (v3 only; 2.8 ignores the key).
    pub jwks: Option<PathBuf>,
    /// `auth.token.signingalgorithms` (v3 only); empty = the registry's default list.
    pub signingalgorithms: Vec<String>,
    /// Serve HTTPS with this certificate and key (`http.tls`), e.g. a [`super::keys::Pki`] leaf.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl RegistryOptions {
    /// `kind` trusting `spec.rootcertbundle` only, as the 2.8 tests always did.
    pub fn new(kind: RegistryKind) -> Self {
        Self {
            kind,
            bundle: true,
            jwks: None,
            signingalgorithms: Vec::new(),
            tls: None,
        }
    }
}

#[derive(Debug)]
pub struct RegistrySpec {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    pub rootcertbundle: PathBuf,
}

#[derive(Debug)]
pub struct Registry {
    pub kind: RegistryKind,
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub dir: PathBuf,
    pub log: PathBuf,
    /// Serves HTTPS.
    pub tls: bool,
    guard: ChildGuard,
}

impl Registry {
    /// Starts a registry in `dir` (config.yml, registry.log, data/ — `data/` is reused if it
    /// exists, so a second registry can serve what a first one stored).
    pub fn start(dir: &Path, spec: &RegistrySpec) -> Self {
        Self::start_with(dir, spec, &RegistryOptions::new(RegistryKind::V2))
    }

    /// [`Registry::start`] for either registry, trusting `spec.rootcertbundle`.
    pub fn start_kind(kind: RegistryKind, dir: &Path, spec: &RegistrySpec) -> Self {
        Self::start_with(dir, spec, &RegistryOptions::new(kind))
    }

    /// [`Registry::start`] with every option; panics with the registry's log when it does not
    /// come up.
    pub fn start_with(dir: &Path, spec: &RegistrySpec, opts: &RegistryOptions) -> Self {
        Self::try_start_with(dir, spec, opts)
            .unwrap_or_else(|e| panic!("could not start registry {}: {e}", opts.kind.version()))
    }

    /// Starts the registry, or says why it exited or did not answer (with its log).
    pub fn try_start_with(
        dir: &Path,
        spec: &RegistrySpec,
        opts: &RegistryOptions,
    ) -> Result<Self, String> {
        let auth = auth_yaml(spec, opts);
        Self::try_start_config(opts.kind, dir, &auth, opts.tls.as_ref())
    }

    /// Starts `kind` with this `auth:` block (top-level YAML, e.g. a documented example) after
    /// the test's storage, log and `http` settings; panics with the log when it does not come up.
    pub fn start_with_auth_yaml(kind: RegistryKind, dir: &Path, auth: &str) -> Self {
        Self::try_start_config(kind, dir, auth, None)
            .unwrap_or_else(|e| panic!("could not start registry {}: {e}", kind.version()))
    }

    fn try_start_config(
        kind: RegistryKind,
        dir: &Path,
        auth: &str,
        tls: Option<&(PathBuf, PathBuf)>,
    ) -> Result<Self, String> {
        let bin = kind.program();
        fs::create_dir_all(dir.join("data")).expect("mkdir registry data");
        let log = dir.join("registry.log");
        let mut last_err = String::new();
        for attempt in 0..5 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let config = dir.join("config.yml");
            fs::write(&config, config_yaml(dir, &addr, auth, tls)).expect("write registry config");
            let logf = File::create(&log).expect("create registry.log");
            let mut cmd = Command::new(&bin);
            cmd.arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(logf.try_clone().expect("dup log fd"))
                .stderr(logf);
            // REGISTRY_* variables override the config file; never inherit them.
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("REGISTRY_") {
                    cmd.env_remove(k);
                }
            }
            // v3 exports traces by OTLP to localhost:4318 unless told not to: no such traffic.
            cmd.env("OTEL_TRACES_EXPORTER", "none")
                .env("OTEL_SDK_DISABLED", "true");
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
            let mut guard = ChildGuard::new("registry", child, StopMode::Kill);
            let deadline = Instant::now() + Duration::from_secs(15);
            let tls = tls.is_some();
            loop {
                // A TLS listener answers a plain HTTP request with 400 ("Client sent an HTTP
                // request to an HTTPS server"): it is up.
                if let Ok(r) = http::try_request("GET", &format!("http://{addr}/v2/"), &[])
                    && (r.status == 401 || (tls && r.status == 400))
                {
                    // The right program answered (not some other registry on PATH).
                    if kind == RegistryKind::V3 {
                        let text = fs::read_to_string(&log).unwrap_or_default();
                        assert!(
                            text.contains("version=v3.1.1"),
                            "{} does not log version=v3.1.1:\n{}",
                            bin.display(),
                            tail(&log, 10)
                        );
                    }
                    return Ok(Self {
                        kind,
                        addr,
                        dir: dir.to_owned(),
                        log,
                        tls,
                        guard,
                    });
                }
                if let Some(status) = guard.try_wait() {
                    last_err = format!(
                        "registry exited with {status} (attempt {attempt}); log:\n{}",
                        tail(&log, 30)
                    );
                    break;
                }
                if Instant::now() > deadline {
                    last_err = format!(
                        "registry on {addr} did not answer 401 on /v2/ within 15 s; log:\n{}",
                        tail(&log, 30)
                    );
                    break;
                }
                thread::sleep(Duration::from_millis(25));
            }
            drop(guard);
            if !last_err.contains("address already in use") {
                break;
            }
        }
        Err(last_err)
    }

    pub fn base_url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    /// The last `n` log lines, without the noise (access log, Go runtime fields), shortened.
    pub fn log_tail(&self, n: usize) -> String {
        tail_filtered(&self.log, n, 400, |l| l.starts_with("time="))
            .lines()
            .map(|l| match l.find(" go.version=") {
                Some(i) => {
                    let rest = &l[i + 1..];
                    let end = rest.find(' ').map_or(l.len(), |e| i + 1 + e);
                    format!("{}{}\n", &l[..i], &l[end..])
                }
                None => format!("{l}\n"),
            })
            .collect()
    }

    /// Registry log lines that explain refused tokens (`token …`, `untrusted`, …).
    pub fn token_complaints(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.contains("level=info")
                    && [
                        "msg=\"token",
                        "msg=\"failed to verify token",
                        "untrusted",
                        "msg=\"unable",
                        "error while",
                    ]
                    .iter()
                    .any(|k| l.contains(k))
            })
            .collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// The info lines in which the registry refused a token (`token …`, v3's `failed to verify
    /// token: …`), for the tests that assert the reason, or that there was none.
    pub fn token_refusals(&self) -> Vec<String> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains("level=info"))
            .filter(|l| {
                [
                    "msg=\"token",
                    "msg=\"failed to verify token",
                    "untrusted",
                    "unable",
                ]
                .iter()
                .any(|k| l.contains(k))
            })
            .map(str::to_owned)
            .collect()
    }

    pub fn stop(&mut self) {
        self.guard.stop();
    }
}

/// The `auth:` block of [`RegistrySpec`] and [`RegistryOptions`].
fn auth_yaml(spec: &RegistrySpec, opts: &RegistryOptions) -> String {
    let mut s = format!(
        "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n",
        yaml_str(&spec.realm),
        yaml_str(&spec.service),
        yaml_str(&spec.issuer),
    );
    if opts.bundle {
        s += &format!(
            "    rootcertbundle: {}\n",
            yaml_str(&spec.rootcertbundle.to_string_lossy())
        );
    }
    if let Some(j) = &opts.jwks {
        s += &format!("    jwks: {}\n", yaml_str(&j.to_string_lossy()));
    }
    if !opts.signingalgorithms.is_empty() {
        s += "    signingalgorithms:\n";
        for a in &opts.signingalgorithms {
            s += &format!("      - {}\n", yaml_str(a));
        }
    }
    s
}

fn config_yaml(dir: &Path, addr: &str, auth: &str, tls: Option<&(PathBuf, PathBuf)>) -> String {
    let tls = match tls {
        Some((cert, key)) => format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            yaml_str(&cert.to_string_lossy()),
            yaml_str(&key.to_string_lossy())
        ),
        None => String::new(),
    };
    format!(
        "version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {addr}
  secret: registry-auth-it-not-secret
{tls}{auth}",
        data = yaml_str(&dir.join("data").to_string_lossy()),
    )
}
