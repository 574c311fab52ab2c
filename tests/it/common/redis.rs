//! A redis-server of one test (Debian's `redis-server`), on a free loopback port with a
//! password, its data and log in its own temp dir.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::proc::{self, ChildGuard, StopMode, free_port, require_tool, tail};
use super::stack::tempdir;

pub const REDIS_PASSWORD: &str = "redis-Secret-51c2";

/// How the server keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Memory only (`save ""`, `appendonly no`).
    None,
    /// `appendonly yes` + `appendfsync always`: every acknowledged write is in the AOF, so a
    /// SIGKILL loses nothing that was acknowledged.
    AofAlways,
}

#[derive(Debug)]
pub struct Redis {
    pub port: u16,
    pub log: PathBuf,
    persistence: Persistence,
    guard: Option<ChildGuard>,
    dir: tempfile::TempDir,
}

impl Redis {
    pub fn start(persistence: Persistence) -> Self {
        let dir = tempdir("ra-it-redis");
        let mut redis = Self {
            port: free_port(),
            log: dir.path().join("redis.log"),
            persistence,
            guard: None,
            dir,
        };
        redis.launch();
        redis
    }

    /// Starts redis-server (again, on the same port and data dir) and waits until it loaded
    /// its data and accepts connections.
    pub fn launch(&mut self) {
        assert!(self.guard.is_none(), "redis-server is already running");
        let offset = fs::metadata(&self.log).map_or(0, |m| m.len() as usize);
        let mut cmd = Command::new(require_tool("redis-server"));
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--requirepass", REDIS_PASSWORD])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&self.log);
        match self.persistence {
            Persistence::None => cmd.args(["--appendonly", "no"]),
            Persistence::AofAlways => cmd.args(["--appendonly", "yes", "--appendfsync", "always"]),
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let mut guard = ChildGuard::new("redis-server", child, StopMode::Kill);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let bytes = fs::read(&self.log).unwrap_or_default();
            let text = String::from_utf8_lossy(bytes.get(offset..).unwrap_or_default());
            if text.contains("Ready to accept connections") {
                break;
            }
            if let Some(status) = guard.try_wait() {
                panic!(
                    "redis-server exited with {status}:\n{}",
                    tail(&self.log, 20)
                );
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start:\n{}",
                tail(&self.log, 20)
            );
            sleep(Duration::from_millis(20));
        }
        self.guard = Some(guard);
    }

    /// SIGKILL (a crash: no shutdown save, no AOF rewrite).
    pub fn kill(&mut self) {
        if let Some(mut g) = self.guard.take() {
            g.kill();
        }
    }

    /// `redis://:PASSWORD@127.0.0.1:PORT/3`
    pub fn url(&self) -> String {
        format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{}/3", self.port)
    }

    /// `redis-cli` against database 3; its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(require_tool("redis-cli"));
        cmd.args(["-p", &self.port.to_string(), "-a", REDIS_PASSWORD])
            .args(["--no-auth-warning", "-n", "3"])
            .args(args);
        proc::run(&mut cmd, None, Duration::from_secs(10)).stdout
    }
}
