//! A private dockerd (Debian docker.io 20.10) for `docker pull` / `docker push`: vfs storage,
//! no iptables or bridge, its own data/exec roots and a unix socket in a short temp dir.
//!
//! Shared by the tests of this binary that run at the same time: [`shared`] hands out an `Arc`;
//! the daemon stops (SIGTERM, then SIGKILL; its containerd child by pid as a fallback) and its
//! directory is removed when the last user drops it. Every test uses its own `DOCKER_CONFIG`,
//! so credentials never leak between tests; images are tagged with each test's own registry
//! address, so they never collide either. [`dedicated`] starts a daemon of one test's own
//! (ingress: with `HTTPS_PROXY`, see `connect_proxy`).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use super::proc::{self, ChildGuard, StopMode, require_tool, tail};

#[derive(Debug)]
pub struct Dockerd {
    pub host: String,
    pub log: PathBuf,
    exec_root: PathBuf,
    guard: ChildGuard,
    /// Removed (after the daemon stopped) when this drops.
    dir: tempfile::TempDir,
}

static SHARED: Mutex<Weak<Dockerd>> = Mutex::new(Weak::new());

/// The running shared daemon, or a new one.
pub fn shared() -> Arc<Dockerd> {
    let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(d) = slot.upgrade() {
        return d;
    }
    let d = Arc::new(Dockerd::start(&[], None));
    *slot = Arc::downgrade(&d);
    d
}

/// What a [`dedicated`] daemon sees in place of the machine's files.
#[derive(Debug, Clone, Copy)]
pub struct Private<'a> {
    /// Its `/etc/hosts`.
    pub hosts: &'a str,
    /// A folder mounted over `/etc/docker` (so `certs.d/` inside it is the daemon's; no
    /// `daemon.json` of the machine applies either).
    pub etc_docker: &'a Path,
}

/// A daemon of the caller's own, with `env` set (e.g. `HTTPS_PROXY`; the proxy variables of
/// the test's environment are never inherited by it) and, with `private`, its own `/etc/hosts`
/// and `/etc/docker`: it runs in a mount namespace of its own (`unshare --mount`, private
/// propagation) where they are bind-mounted, so nothing outside sees them and nothing is left
/// behind on the machine, whatever happens to the test.
pub fn dedicated(env: &[(&str, &str)], private: Option<Private<'_>>) -> Arc<Dockerd> {
    Arc::new(Dockerd::start(env, private))
}

impl Dockerd {
    fn start(env: &[(&str, &str)], private: Option<Private<'_>>) -> Self {
        let bin = require_tool("dockerd");
        require_tool("docker");
        // Short path: unix socket paths are limited to ~108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("ra-dk")
            .tempdir_in("/tmp")
            .expect("dockerd temp dir");
        let d = dir.path();
        let (data, exec) = (d.join("data"), d.join("exec"));
        fs::create_dir_all(&data).expect("mkdir data");
        fs::create_dir_all(&exec).expect("mkdir exec");
        let log = d.join("dockerd.log");
        let logf = File::create(&log).expect("dockerd log");
        let host = format!("unix://{}", d.join("sock").display());
        let mut cmd = match private {
            None => Command::new(bin),
            Some(p) => {
                let hosts = d.join("hosts");
                fs::write(&hosts, p.hosts).expect("write the daemon's hosts file");
                let mut c = Command::new(require_tool("unshare"));
                require_tool("mount");
                // `$0` is the hosts file, `$1` the /etc/docker folder, then dockerd and its
                // arguments (below).
                c.args(["--mount", "--propagation", "private", "sh", "-c"])
                    .arg(
                        "mount --bind \"$0\" /etc/hosts && mount --bind \"$1\" /etc/docker \
                         && shift && exec \"$@\"",
                    )
                    .arg(&hosts)
                    .arg(p.etc_docker)
                    .arg(bin);
                c
            }
        };
        if !env.is_empty() {
            for var in [
                "HTTPS_PROXY",
                "https_proxy",
                "HTTP_PROXY",
                "http_proxy",
                "NO_PROXY",
                "no_proxy",
                "ALL_PROXY",
                "all_proxy",
            ] {
                cmd.env_remove(var);
            }
        }
        cmd.arg("--data-root")
            .arg(&data)
            .arg("--exec-root")
            .arg(&exec)
            .arg("--pidfile")
            .arg(d.join("pid"))
            .args(["-H", &host])
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--bridge=none",
                "--storage-driver=vfs",
            ])
            .env_remove("DOCKER_HOST")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("dup"))
            .stderr(logf);
        let line = proc::cmdline(&cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{line}`: {e}"));
        let mut guard = ChildGuard::new(
            "dockerd",
            child,
            StopMode::TermThenKill(Duration::from_secs(15)),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if d.join("sock").exists() {
                let mut v = Command::new("docker");
                v.args(["version", "--format", "{{.Server.Version}}"])
                    .env("DOCKER_HOST", &host)
                    .env("DOCKER_CONFIG", d.join("cli"));
                let out = proc::run(&mut v, None, Duration::from_secs(10));
                if out.success() {
                    break;
                }
            }
            if let Some(status) = guard.try_wait() {
                panic!("`{line}` exited with {status}; log:\n{}", tail(&log, 40));
            }
            if Instant::now() > deadline {
                panic!(
                    "`{line}` did not answer within 60 s; log:\n{}",
                    tail(&log, 40)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
        Self {
            host,
            log,
            exec_root: exec,
            guard,
            dir,
        }
    }

    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let containerd_pid = fs::read_to_string(self.exec_root.join("containerd/containerd.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        self.guard.stop();
        // dockerd stops the containerd it started on SIGTERM; if it had to be killed, stop that
        // containerd by its pid (only if it still is a containerd).
        if let Some(pid) = containerd_pid {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "containerd" {
                let _ = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                for _ in 0..100 {
                    if !Path::new(&format!("/proc/{pid}")).exists() {
                        break;
                    }
                    thread::sleep(Duration::from_millis(50));
                }
            }
        }
        // dockerd bind-mounts its data root onto itself and unmounts it on a clean stop; if it
        // could not stop cleanly, undo our own mounts so the temp dir can be removed.
        let ours = self.dir.path().to_string_lossy().into_owned();
        let mut mounts: Vec<String> = fs::read_to_string("/proc/self/mounts")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
            .filter(|mp| mp == &ours || mp.starts_with(&format!("{ours}/")))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mp in mounts {
            let _ = Command::new("umount")
                .args(["-l", &mp])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
