//! A redis-server of one test (Debian's `redis-server`), on a free loopback port with a
//! password, its data and log in its own temp dir; and the high-availability set-ups made of
//! them: a primary with replicas watched by sentinels ([`SentinelSet`]), and a Redis Cluster of
//! masters made with `redis-cli --cluster create` ([`Cluster`]). Any of them can listen for
//! TLS only ([`ServerTls`]: `--port 0 --tls-port …`; replication and sentinels over TLS too).

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

/// TLS of a test redis-server or sentinel: it listens for TLS only, replicates and monitors
/// over TLS, and `redis-cli` talks TLS to it (showing `cert`/`key` as its client certificate).
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The server's certificate (for 127.0.0.1) and key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CAs it trusts for client certificates (and for its replication links); it must
    /// hold the CA of `cert`.
    pub ca_bundle: PathBuf,
    /// `--tls-auth-clients`: `no`, `optional` or `yes`.
    pub auth_clients: &'static str,
}

impl ServerTls {
    /// The `redis-server` arguments (after `--port`, which they override).
    fn server_args(&self, port: u16) -> Vec<String> {
        let mut args: Vec<String> = vec!["--port".into(), "0".into()];
        for (k, v) in self.directives(port) {
            args.push(format!("--{k}"));
            args.push(v);
        }
        args
    }

    /// The config directives (for a sentinel's file and the server's command line).
    fn directives(&self, port: u16) -> Vec<(&'static str, String)> {
        vec![
            ("tls-port", port.to_string()),
            ("tls-cert-file", self.cert.display().to_string()),
            ("tls-key-file", self.key.display().to_string()),
            ("tls-ca-cert-file", self.ca_bundle.display().to_string()),
            ("tls-auth-clients", self.auth_clients.to_owned()),
            ("tls-replication", "yes".to_owned()),
        ]
    }

    /// `redis-cli` arguments for TLS.
    fn cli_args(&self) -> Vec<String> {
        vec![
            "--tls".into(),
            "--cacert".into(),
            self.ca_bundle.display().to_string(),
            "--cert".into(),
            self.cert.display().to_string(),
            "--key".into(),
            self.key.display().to_string(),
        ]
    }
}

#[derive(Debug)]
pub struct Redis {
    pub port: u16,
    pub log: PathBuf,
    /// Listening for TLS only.
    pub tls: Option<ServerTls>,
    persistence: Persistence,
    /// More `redis-server` arguments (replication, cluster mode).
    extra: Vec<String>,
    guard: Option<ChildGuard>,
    dir: tempfile::TempDir,
}

impl Redis {
    pub fn start(persistence: Persistence) -> Self {
        Self::start_with(persistence, &[])
    }

    /// With more `redis-server` arguments (`--replicaof`, `--cluster-enabled`, ...).
    pub fn start_with(persistence: Persistence, extra: &[&str]) -> Self {
        Self::start_tls(persistence, extra, None)
    }

    /// [`Redis::start_with`], listening for TLS only when `tls`.
    pub fn start_tls(persistence: Persistence, extra: &[&str], tls: Option<&ServerTls>) -> Self {
        let dir = tempdir("ra-it-redis");
        let mut redis = Self {
            port: free_port(),
            log: dir.path().join("redis.log"),
            tls: tls.cloned(),
            persistence,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
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
            .arg(&self.log)
            .args(["--masterauth", REDIS_PASSWORD])
            .args(self.tls.iter().flat_map(|t| t.server_args(self.port)))
            .args(&self.extra);
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
        let mut all = vec!["-n", "3"];
        all.extend_from_slice(args);
        cli_tls(self.port, REDIS_PASSWORD, self.tls.as_ref(), &all)
    }

    /// `redis-cli` against database 0 (a cluster node, `INFO`, ...); its stdout.
    pub fn cli0(&self, args: &[&str]) -> String {
        cli_tls(self.port, REDIS_PASSWORD, self.tls.as_ref(), args)
    }
}

/// `redis-cli -p PORT -a PASSWORD ARGS…` (over TLS when `tls`); its stdout.
pub fn cli_tls(port: u16, password: &str, tls: Option<&ServerTls>, args: &[&str]) -> String {
    let mut cmd = Command::new(require_tool("redis-cli"));
    cmd.args(["-p", &port.to_string(), "-a", password, "--no-auth-warning"])
        .args(tls.iter().flat_map(|t| t.cli_args()))
        .args(args);
    proc::run(&mut cmd, None, Duration::from_secs(10)).stdout
}

/// Polls `check` every 50 ms until it is true; panics with `what` and `diag()` after
/// `limit`.
pub fn wait_until(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> bool,
    diag: impl Fn() -> String,
) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} (waited {limit:?}):\n{}",
            diag()
        );
        sleep(Duration::from_millis(50));
    }
}

/// The sentinels' password (different from the data nodes', so the URL must carry both).
pub const SENTINEL_PASSWORD: &str = "sentinel-Secret-7d41";
/// The master name the sentinels watch.
pub const MASTER_NAME: &str = "registry-auth-primary";

/// A primary, its replicas and three sentinels (quorum 2), every data node with
/// `appendfsync always`.
#[derive(Debug)]
pub struct SentinelSet {
    pub primary: Redis,
    pub replicas: Vec<Redis>,
    pub sentinels: Vec<Sentinel>,
}

/// One `redis-server --sentinel` process.
#[derive(Debug)]
pub struct Sentinel {
    pub port: u16,
    pub log: PathBuf,
    tls: Option<ServerTls>,
    _guard: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Sentinel {
    fn start(primary_port: u16, tls: Option<&ServerTls>) -> Self {
        let dir = tempdir("ra-it-sentinel");
        let port = free_port();
        let log = dir.path().join("sentinel.log");
        let conf = dir.path().join("sentinel.conf");
        let listen = match tls {
            Some(t) => std::iter::once("port 0".to_owned())
                .chain(
                    t.directives(port)
                        .into_iter()
                        .map(|(k, v)| format!("{k} {v}")),
                )
                .collect::<Vec<_>>()
                .join("\n"),
            None => format!("port {port}"),
        };
        // Sentinel rewrites its config file: it must be its own and writable.
        fs::write(
            &conf,
            format!(
                "{listen}\nbind 127.0.0.1\ndir {dir}\nlogfile {log}\n\
                 requirepass {SENTINEL_PASSWORD}\nsentinel sentinel-pass {SENTINEL_PASSWORD}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 2\n\
                 sentinel auth-pass {MASTER_NAME} {REDIS_PASSWORD}\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                 sentinel failover-timeout {MASTER_NAME} 10000\n\
                 sentinel parallel-syncs {MASTER_NAME} 2\n",
                dir = dir.path().display(),
                log = log.display(),
            ),
        )
        .expect("write sentinel.conf");
        let child = Command::new(require_tool("redis-server"))
            .arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server --sentinel");
        let guard = ChildGuard::new("redis-sentinel", child, StopMode::Kill);
        Self {
            port,
            log,
            tls: tls.cloned(),
            _guard: guard,
            _dir: dir,
        }
    }

    /// `SENTINEL MASTER <name>` as field → value.
    pub fn master_info(&self) -> std::collections::HashMap<String, String> {
        let out = cli_tls(
            self.port,
            SENTINEL_PASSWORD,
            self.tls.as_ref(),
            &["SENTINEL", "MASTER", MASTER_NAME],
        );
        let lines: Vec<&str> = out.lines().collect();
        lines
            .chunks(2)
            .filter_map(|kv| Some((kv.first()?.to_string(), kv.get(1)?.to_string())))
            .collect()
    }

    /// The port of the primary this sentinel names now.
    pub fn master_port(&self) -> Option<u16> {
        let out = cli_tls(
            self.port,
            SENTINEL_PASSWORD,
            self.tls.as_ref(),
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
        );
        out.lines().nth(1)?.trim().parse().ok()
    }
}

/// The replication role a node reports (`role:master`, `master_link_status:up`, ...).
fn info_replication(node: &Redis) -> String {
    node.cli0(&["INFO", "replication"])
}

impl SentinelSet {
    /// Starts the primary, `replicas` replicas and three sentinels, and waits until the
    /// replicas are in sync and every sentinel knows the replicas and the other sentinels.
    pub fn start(replicas: usize) -> Self {
        Self::start_tls(replicas, None)
    }

    /// [`SentinelSet::start`], every server and sentinel listening for TLS only when `tls`.
    pub fn start_tls(replicas: usize, tls: Option<&ServerTls>) -> Self {
        let primary = Redis::start_tls(Persistence::AofAlways, &[], tls);
        let primary_port = primary.port.to_string();
        let replicas: Vec<Redis> = (0..replicas)
            .map(|_| {
                Redis::start_tls(
                    Persistence::AofAlways,
                    &["--replicaof", "127.0.0.1", &primary_port],
                    tls,
                )
            })
            .collect();
        for r in &replicas {
            wait_until(
                "a replica did not sync with the primary",
                Duration::from_secs(20),
                || info_replication(r).contains("master_link_status:up"),
                || tail(&r.log, 20),
            );
        }
        let sentinels: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(primary.port, tls)).collect();
        for s in &sentinels {
            wait_until(
                "a sentinel did not discover the replicas and the other sentinels",
                Duration::from_secs(30),
                || {
                    let m = s.master_info();
                    m.get("num-slaves").map(String::as_str) == Some(&*replicas.len().to_string())
                        && m.get("num-other-sentinels").map(String::as_str) == Some("2")
                },
                || format!("{:?}\n{}", s.master_info(), tail(&s.log, 20)),
            );
        }
        Self {
            primary,
            replicas,
            sentinels,
        }
    }

    /// `redis+sentinel://:PASSWORD@127.0.0.1:S1,…/MASTER/3?sentinel_password=…`
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!(
            "redis+sentinel://:{REDIS_PASSWORD}@{}/{MASTER_NAME}/3?sentinel_password={SENTINEL_PASSWORD}",
            hosts.join(",")
        )
    }

    /// The logs of every process, for a failure message.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        for r in std::iter::once(&self.primary).chain(&self.replicas) {
            out.push_str(&format!("--- redis {} ---\n{}\n", r.port, tail(&r.log, 15)));
        }
        for s in &self.sentinels {
            out.push_str(&format!(
                "--- sentinel {} ---\n{}\n",
                s.port,
                tail(&s.log, 15)
            ));
        }
        out
    }
}

/// A Redis Cluster of masters only (no replicas), made with `redis-cli --cluster create`.
#[derive(Debug)]
pub struct Cluster {
    pub nodes: Vec<Redis>,
}

impl Cluster {
    pub fn start(masters: usize) -> Self {
        Self::start_tls(masters, None)
    }

    /// [`Cluster::start`], the nodes listening for TLS only (clients and the cluster bus) when
    /// `tls`.
    pub fn start_tls(masters: usize, tls: Option<&ServerTls>) -> Self {
        let tls_cluster: &[&str] = if tls.is_some() {
            &["--tls-cluster", "yes"]
        } else {
            &[]
        };
        let nodes: Vec<Redis> = (0..masters)
            .map(|_| {
                // The bus port is given: its default, the port + 10000, may be taken or past
                // 65535 for a free port from the ephemeral range.
                let bus = free_port().to_string();
                let mut args = vec![
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus,
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ];
                args.extend_from_slice(tls_cluster);
                Redis::start_tls(Persistence::None, &args, tls)
            })
            .collect();
        let mut cmd = Command::new(require_tool("redis-cli"));
        cmd.args(["-a", REDIS_PASSWORD, "--no-auth-warning"])
            .args(tls.iter().flat_map(|t| t.cli_args()))
            .args(["--cluster", "create"])
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .arg("--cluster-yes");
        let out = proc::run(&mut cmd, None, Duration::from_secs(60));
        assert!(
            out.code == Some(0) && out.stdout.contains("All 16384 slots covered"),
            "redis-cli --cluster create failed:\n{}\n{}",
            out.stdout,
            out.stderr
        );
        for n in &nodes {
            wait_until(
                "the cluster did not reach cluster_state:ok",
                Duration::from_secs(20),
                || n.cli0(&["CLUSTER", "INFO"]).contains("cluster_state:ok"),
                || tail(&n.log, 20),
            );
        }
        Self { nodes }
    }

    /// `redis+cluster://:PASSWORD@127.0.0.1:FIRST` (one seed node: the client finds the rest).
    pub fn url(&self) -> String {
        format!(
            "redis+cluster://:{REDIS_PASSWORD}@127.0.0.1:{}",
            self.nodes[0].port
        )
    }
}
