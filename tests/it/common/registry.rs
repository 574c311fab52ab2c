//! CNCF distribution registry 2.8.2 (`docker-registry`) on a loopback port, token auth,
//! filesystem storage in a temp dir, deletes enabled.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::http;
use super::keys::yaml_str;
use super::proc::{ChildGuard, StopMode, free_port, require_tool, tail, tail_filtered};

#[derive(Debug)]
pub struct RegistrySpec {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    pub rootcertbundle: PathBuf,
}

#[derive(Debug)]
pub struct Registry {
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub dir: PathBuf,
    pub log: PathBuf,
    guard: ChildGuard,
}

impl Registry {
    /// Starts a registry in `dir` (config.yml, registry.log, data/ — `data/` is reused if it
    /// exists, so a second registry can serve what a first one stored).
    pub fn start(dir: &Path, spec: &RegistrySpec) -> Self {
        let bin = require_tool("docker-registry");
        fs::create_dir_all(dir.join("data")).expect("mkdir registry data");
        let log = dir.join("registry.log");
        let mut last_err = String::new();
        for attempt in 0..5 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let config = dir.join("config.yml");
            fs::write(&config, config_yaml(dir, &addr, spec)).expect("write registry config");
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
            let child = cmd.spawn().expect("spawn docker-registry");
            let mut guard = ChildGuard::new("docker-registry", child, StopMode::Kill);
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Ok(r) = http::try_request("GET", &format!("http://{addr}/v2/"), &[])
                    && r.status == 401
                {
                    return Self {
                        addr,
                        dir: dir.to_owned(),
                        log,
                        guard,
                    };
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
        panic!("could not start docker-registry: {last_err}");
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The last `n` log lines, without the noise (access log, Go runtime fields), shortened.
    pub fn log_tail(&self, n: usize) -> String {
        tail_filtered(&self.log, n, 400, |l| l.starts_with("time="))
            .replace(" go.version=go1.19.8", "")
    }

    /// Registry log lines that explain refused tokens (`token …`, `untrusted`, …).
    pub fn token_complaints(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.contains("level=info")
                    && ["msg=\"token", "untrusted", "msg=\"unable", "error while"]
                        .iter()
                        .any(|k| l.contains(k))
            })
            .collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    pub fn stop(&mut self) {
        self.guard.stop();
    }
}

fn config_yaml(dir: &Path, addr: &str, spec: &RegistrySpec) -> String {
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
auth:
  token:
    realm: {realm}
    service: {service}
    issuer: {issuer}
    rootcertbundle: {bundle}
",
        data = yaml_str(&dir.join("data").to_string_lossy()),
        realm = yaml_str(&spec.realm),
        service = yaml_str(&spec.service),
        issuer = yaml_str(&spec.issuer),
        bundle = yaml_str(&spec.rootcertbundle.to_string_lossy()),
    )
}
