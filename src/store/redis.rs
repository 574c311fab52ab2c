//! The Redis store, through the `redis` crate (tokio, no TLS features): one server
//! (`redis://`, a `ConnectionManager` that reconnects by itself), Redis Sentinel
//! (`redis+sentinel://`, the crate's master discovery: ask the sentinels, check the answer with
//! `ROLE`) and Redis Cluster (`redis+cluster://`, the crate's slot routing, `MOVED`/`ASK`
//! redirections and topology refresh). Records live under `registry-auth:minted:<id>` and expire
//! with the password (Redis drops them itself).
//!
//! Still by hand, because the crate has no such thing:
//!
//! * parsing the multi-host URL forms (the crate parses one-host `redis://` URLs only);
//! * keeping one Sentinel master connection and asking the sentinels again after a failure (the
//!   crate's Sentinel client hands out connections, it does not manage one);
//! * `WAIT` after each write through Sentinel, so a write is acknowledged only once a replica
//!   holds it and a failover cannot lose it;
//! * listing on a cluster: `SCAN` runs per node, so it is sent to every master in turn.
//!
//! Replies are read by the crate (bounded by the server's `proto-max-bulk-len`); a record over
//! 1 MiB is refused after reading. Each connection attempt and each command has a 5 s limit.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    RedisConnectionInfo, RedisError, Value,
};

use super::StoreError;
use crate::authn::Secret;

const KEY_PREFIX: &str = "registry-auth:minted:";
/// Time allowed for connecting and for one command.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Replaces `KEYS[1]` with `ARGV[2]` (expiring in `ARGV[3]` seconds) only while it holds
/// `ARGV[1]`. A script runs atomically on the server (on a cluster: on the key's master):
/// nothing lands between the check and the write.
const CAS_SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) return 1 else return 0 end";
/// Largest record accepted (a record is ~1 KiB).
const MAX_BULK: usize = 1 << 20;
/// How long a Sentinel write waits for its replicas (`WAIT`).
const WAIT_MS: u64 = 2000;
/// Most hosts in one URL.
const MAX_HOSTS: usize = 32;

const EXAMPLES: &str = "write e.g. `redis://127.0.0.1:6379/0`, \
     `redis+sentinel://sentinel-1:26379,sentinel-2:26379/mymaster/0` or \
     `redis+cluster://node-1:6379,node-2:6379`";

/// One server, or how to find the servers.
#[derive(Clone, PartialEq, Eq, Debug)]
enum Topology {
    /// `redis://host:port/db`
    Single { host: String, port: u16 },
    /// `redis+sentinel://s1,s2/master/db`
    Sentinel {
        sentinels: Vec<(String, u16)>,
        master: String,
        /// Replicas each write waits for (`WAIT`); 0: none.
        replicas: u32,
        sentinel_username: Option<String>,
        sentinel_password: Option<Secret>,
    },
    /// `redis+cluster://n1,n2`
    Cluster { nodes: Vec<(String, u16)> },
}

/// A parsed Redis URL: `redis://[[user]:password@]host[:port][/db]`,
/// `redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/master[/db][?query]` or
/// `redis+cluster://[[user]:password@]host[:port][,host[:port]…]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// What it points at, for logs and `/readyz` (never a password): `host:port`, or e.g.
    /// `sentinel master mymaster via h1:26379,h2:26379`, `cluster h1:6379,h2:6379`.
    pub addr: String,
    topology: Topology,
    username: Option<String>,
    password: Option<Secret>,
    db: u32,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("addr", &self.addr)
            .field("username", &self.username)
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

fn host_port(h: &(String, u16)) -> String {
    format!("{}:{}", h.0, h.1)
}

fn decode(s: &str) -> Result<String, String> {
    percent_decode(s).ok_or_else(|| "the URL's user or password is not valid UTF-8".to_owned())
}

impl Target {
    pub(super) fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("not a URL; {EXAMPLES}"))?;
        match scheme {
            "redis" => Self::parse_single(url),
            "redis+sentinel" | "redis+cluster" => Self::parse_multi(scheme, rest),
            "rediss" | "rediss+sentinel" | "rediss+cluster" => Err(
                "TLS to Redis (`rediss://`) is not supported yet; use `redis://` on a trusted \
                 network (or a TLS tunnel)"
                    .to_owned(),
            ),
            other => Err(format!("scheme `{other}` is not Redis; {EXAMPLES}")),
        }
    }

    fn parse_single(url: &str) -> Result<Self, String> {
        let parsed =
            reqwest::Url::parse(url).map_err(|e| format!("not a URL ({e}); {EXAMPLES}"))?;
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("the URL has no host; {EXAMPLES}"))?;
        let port = parsed.port().unwrap_or(6379);
        let db = match parsed.path().trim_start_matches('/') {
            "" => 0,
            n => n
                .parse()
                .map_err(|_| format!("the database `{n}` is not a number"))?,
        };
        let (username, password) = credentials(&parsed)?;
        if parsed.query().is_some() {
            return Err("query parameters are not supported in a `redis://` URL".to_owned());
        }
        Ok(Self {
            // `host_str` keeps an IPv6 address in brackets.
            addr: format!("{host}:{port}"),
            topology: Topology::Single {
                host: bare_host(host),
                port,
            },
            username,
            password,
            db,
        })
    }

    /// `redis+sentinel://` and `redis+cluster://`: the host list is split here, each host
    /// checked as a one-host URL; the rest (credentials, path, query) is parsed as a URL.
    fn parse_multi(scheme: &str, rest: &str) -> Result<Self, String> {
        let cluster = scheme == "redis+cluster";
        let default_port = if cluster { 6379 } else { 26379 };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let mut list = Vec::new();
        for h in hosts.split(',') {
            if h.is_empty() {
                return Err(format!(
                    "the URL has an empty host in its list `{hosts}`; write hosts as \
                     `host:port,host:port`"
                ));
            }
            let one = reqwest::Url::parse(&format!("redis://{h}"))
                .map_err(|e| format!("the host `{h}` is not valid ({e})"))?;
            let (Some(host), "", "", None) =
                (one.host_str(), one.username(), one.path(), one.password())
            else {
                return Err(format!("the host `{h}` is not valid; write `host:port`"));
            };
            list.push((bare_host(host), one.port().unwrap_or(default_port)));
        }
        if list.len() > MAX_HOSTS {
            return Err(format!("more than {MAX_HOSTS} hosts in the URL"));
        }
        // Credentials, path and query, parsed on a stand-in host.
        let at = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        let parsed = reqwest::Url::parse(&format!("redis://{at}stand-in{tail}"))
            .map_err(|e| format!("not a URL ({e}); {EXAMPLES}"))?;
        let (username, password) = credentials(&parsed)?;
        let segments: Vec<&str> = parsed.path().split('/').filter(|s| !s.is_empty()).collect();
        let names = list.iter().map(host_port).collect::<Vec<_>>().join(",");
        if cluster {
            match segments.as_slice() {
                [] | ["0"] => {}
                _ => {
                    return Err(
                        "a Redis Cluster has database 0 only: remove the path after the hosts \
                         (`redis+cluster://host:port,host:port`)"
                            .to_owned(),
                    );
                }
            }
            if parsed.query().is_some() {
                return Err(
                    "query parameters are not supported in a `redis+cluster://` URL".to_owned(),
                );
            }
            return Ok(Self {
                addr: format!("cluster {names}"),
                topology: Topology::Cluster { nodes: list },
                username,
                password,
                db: 0,
            });
        }
        let (master, db) = match segments.as_slice() {
            [m] => (*m, 0),
            [m, n] => (
                *m,
                n.parse()
                    .map_err(|_| format!("the database `{n}` is not a number"))?,
            ),
            _ => {
                return Err(
                    "a Sentinel URL names the master after the hosts, then optionally the \
                     database: `redis+sentinel://host:26379,host:26379/MASTER[/DB]`"
                        .to_owned(),
                );
            }
        };
        let master = decode(master)?;
        let mut replicas = 1;
        let (mut sentinel_username, mut sentinel_password) = (None, None);
        for (k, v) in parsed.query_pairs() {
            match &*k {
                "replicas" => {
                    replicas =
                        v.parse().ok().filter(|n| *n <= 16).ok_or_else(|| {
                            format!("`replicas={v}` is not a number from 0 to 16")
                        })?;
                }
                "sentinel_username" => sentinel_username = Some(v.into_owned()),
                "sentinel_password" => sentinel_password = Some(Secret::new(v.into_owned())),
                other => {
                    return Err(format!(
                        "unknown query parameter `{other}` in the Sentinel URL; known: \
                         `replicas`, `sentinel_username`, `sentinel_password`"
                    ));
                }
            }
        }
        Ok(Self {
            addr: format!("sentinel master {master} via {names}"),
            topology: Topology::Sentinel {
                sentinels: list,
                master,
                replicas,
                sentinel_username,
                sentinel_password,
            },
            username,
            password,
            db,
        })
    }

    fn redis_info(&self) -> RedisConnectionInfo {
        let mut info = RedisConnectionInfo::default().set_db(i64::from(self.db));
        if let Some(u) = &self.username {
            info = info.set_username(u);
        }
        if let Some(p) = &self.password {
            info = info.set_password(p.expose());
        }
        info
    }
}

/// The user and password of a parsed URL, percent-decoded.
fn credentials(parsed: &reqwest::Url) -> Result<(Option<String>, Option<Secret>), String> {
    let username = match parsed.username() {
        "" => None,
        u => Some(decode(u)?),
    };
    let password = parsed.password().map(decode).transpose()?.map(Secret::new);
    Ok((username, password))
}

/// An IPv6 address without its URL brackets (as a socket address wants it).
fn bare_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A live connection (each is a cheap handle onto a multiplexed connection).
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Sentinel(MultiplexedConnection),
    Cluster(ClusterConnection),
}

pub(super) struct Redis {
    target: Box<Target>,
    /// Made on first use; a Sentinel connection is dropped after a failure (the sentinels are
    /// asked again next time). Held across connecting, so one connection is made at a time.
    conn: tokio::sync::Mutex<Option<Conn>>,
    /// The Sentinel client (it caches its connections to the sentinels).
    sentinel: tokio::sync::Mutex<Option<Box<SentinelClient>>>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

fn err(message: impl Into<String>) -> StoreError {
    StoreError::new("redis", message)
}

impl Redis {
    pub(super) fn new(target: Target) -> Self {
        Self {
            target: Box::new(target),
            conn: tokio::sync::Mutex::new(None),
            sentinel: tokio::sync::Mutex::new(None),
        }
    }

    /// `SET … NX EX`: false when the key exists already.
    pub(super) async fn insert(
        &self,
        id: &str,
        value: &[u8],
        ttl: u64,
    ) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key(id)).arg(value).arg("NX").arg("EX").arg(ttl);
        match self.write(cmd, "SET").await? {
            Value::Okay => Ok(true),
            Value::Nil => Ok(false),
            other => Err(err(format!("SET answered {}", describe(&other)))),
        }
    }

    /// Compare-and-set in one server-side script: replaces the value only while it is still
    /// `seen`; a deleted key stays deleted. False when it changed.
    pub(super) async fn update(
        &self,
        id: &str,
        seen: &[u8],
        value: &[u8],
        ttl: u64,
    ) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(CAS_SCRIPT)
            .arg(1)
            .arg(key(id))
            .arg(seen)
            .arg(value)
            .arg(ttl);
        match self.write(cmd, "EVAL (compare-and-set)").await? {
            Value::Int(n) => Ok(n == 1),
            other => Err(err(format!(
                "EVAL (compare-and-set) answered {}",
                describe(&other)
            ))),
        }
    }

    pub(super) async fn get(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key(id));
        match self.command(&cmd, None, "GET").await? {
            Value::Nil => Ok(None),
            Value::BulkString(v) if v.len() <= MAX_BULK => Ok(Some(v)),
            Value::BulkString(_) => Err(err("GET answered a record over 1 MiB")),
            other => Err(err(format!("GET answered {}", describe(&other)))),
        }
    }

    pub(super) async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(key(id));
        match self.write(cmd, "DEL").await? {
            Value::Int(n) => Ok(n > 0),
            other => Err(err(format!("DEL answered {}", describe(&other)))),
        }
    }

    /// The ids of every record (`SCAN` over the key prefix: never blocks the server; on a
    /// cluster, on every master in turn).
    pub(super) async fn ids(&self) -> Result<Vec<String>, StoreError> {
        let nodes = match &self.target.topology {
            Topology::Cluster { .. } => self.masters().await?.into_iter().map(Some).collect(),
            _ => vec![None],
        };
        let mut ids = Vec::new();
        for node in nodes {
            self.scan(node.as_ref(), &mut ids).await?;
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    async fn scan(
        &self,
        node: Option<&(String, u16)>,
        ids: &mut Vec<String>,
    ) -> Result<(), StoreError> {
        let pattern = format!("{KEY_PREFIX}*");
        let mut cursor = "0".to_owned();
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(&cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500);
            let reply = self.command(&cmd, node, "SCAN").await?;
            let Value::Array(parts) = reply else {
                return Err(err(format!("SCAN answered {}", describe(&reply))));
            };
            let [Value::BulkString(next), Value::Array(keys)] = parts.as_slice() else {
                return Err(err("SCAN answered something else than [cursor, keys]"));
            };
            for k in keys {
                if let Value::BulkString(k) = k
                    && let Some(id) = std::str::from_utf8(k)
                        .ok()
                        .and_then(|k| k.strip_prefix(KEY_PREFIX))
                {
                    ids.push(id.to_owned());
                }
            }
            if next.as_slice() == b"0" {
                return Ok(());
            }
            cursor = String::from_utf8(next.clone())
                .map_err(|_| err("SCAN answered a cursor that is not text"))?;
        }
    }

    /// The cluster's masters (`CLUSTER NODES`: `id host:port@bus flags …`), failing ones left
    /// out.
    async fn masters(&self) -> Result<Vec<(String, u16)>, StoreError> {
        let reply = self
            .command(
                &redis::cmd("CLUSTER").arg("NODES").clone(),
                None,
                "CLUSTER NODES",
            )
            .await?;
        let text = match &reply {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            Value::VerbatimString { text, .. } => text.clone(),
            other => return Err(err(format!("CLUSTER NODES answered {}", describe(other)))),
        };
        let mut masters = Vec::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let (Some(addr), Some(flags)) = (fields.get(1), fields.get(2)) else {
                continue;
            };
            let flags: Vec<&str> = flags.split(',').collect();
            if !flags.contains(&"master") || flags.iter().any(|f| f.starts_with("fail")) {
                continue;
            }
            let addr = addr.split('@').next().unwrap_or_default();
            if let Some((host, port)) = addr.rsplit_once(':')
                && let Ok(port) = port.parse()
                && !host.is_empty()
            {
                masters.push((bare_host(host), port));
            }
        }
        if masters.is_empty() {
            return Err(err("CLUSTER NODES listed no master"));
        }
        Ok(masters)
    }

    /// A write; through Sentinel followed by `WAIT` (in one pipeline, on the same connection),
    /// so it is acknowledged only once enough replicas hold it.
    async fn write(&self, cmd: Cmd, what: &str) -> Result<Value, StoreError> {
        let Topology::Sentinel { replicas, .. } = &self.target.topology else {
            return self.command(&cmd, None, what).await;
        };
        if *replicas == 0 {
            return self.command(&cmd, None, what).await;
        }
        let mut pipe = redis::pipe();
        pipe.add_command(cmd)
            .cmd("WAIT")
            .arg(*replicas)
            .arg(WAIT_MS);
        let reply = self.run(Request::Pipe(&pipe), None, what).await?;
        let Value::Array(mut parts) = reply else {
            return Err(err(format!("{what} + WAIT answered {}", describe(&reply))));
        };
        let (Some(wait), Some(result)) = (parts.pop(), parts.pop()) else {
            return Err(err(format!("{what} + WAIT answered too few replies")));
        };
        match wait {
            Value::Int(n) if n >= i64::from(*replicas) => Ok(result),
            Value::Int(n) => Err(err(format!(
                "{what} reached {n} of the {replicas} replicas required within {WAIT_MS} ms \
                 (the write may still land)"
            ))),
            other => Err(err(format!("WAIT answered {}", describe(&other)))),
        }
    }

    /// Runs one command (on a cluster: routed by its key, or to `node`).
    async fn command(
        &self,
        cmd: &Cmd,
        node: Option<&(String, u16)>,
        what: &str,
    ) -> Result<Value, StoreError> {
        self.run(Request::Cmd(cmd), node, what).await
    }

    /// Runs a request on the shared connection (made now when there is none). A Sentinel
    /// connection that fails is dropped; a request that failed on an older connection is tried
    /// once more on a fresh one (after a failover the first request meets the old master).
    async fn run(
        &self,
        req: Request<'_>,
        node: Option<&(String, u16)>,
        what: &str,
    ) -> Result<Value, StoreError> {
        let (conn, fresh) = self.connection().await?;
        match self.send(conn, &req, node, what).await {
            Ok(v) => Ok(v),
            Err(e) if matches!(self.target.topology, Topology::Sentinel { .. }) => {
                *self.conn.lock().await = None;
                if fresh {
                    return Err(e);
                }
                tracing::debug!(error = %e, "the Redis master connection failed; asking the sentinels again");
                let (conn, _) = self.connection().await?;
                self.send(conn, &req, node, what).await.inspect_err(|_| {
                    // Dropped again: the next request asks the sentinels anew.
                    if let Ok(mut c) = self.conn.try_lock() {
                        *c = None;
                    }
                })
            }
            Err(e) => Err(e),
        }
    }

    async fn send(
        &self,
        conn: Conn,
        req: &Request<'_>,
        node: Option<&(String, u16)>,
        what: &str,
    ) -> Result<Value, StoreError> {
        let call = async {
            match (conn, req) {
                (Conn::Single(mut c), Request::Cmd(cmd)) => cmd.query_async(&mut c).await,
                (Conn::Single(mut c), Request::Pipe(p)) => p.query_async(&mut c).await,
                (Conn::Sentinel(mut c), Request::Cmd(cmd)) => cmd.query_async(&mut c).await,
                (Conn::Sentinel(mut c), Request::Pipe(p)) => p.query_async(&mut c).await,
                (Conn::Cluster(mut c), Request::Cmd(cmd)) => match node {
                    Some((host, port)) => {
                        c.route_command(
                            (*cmd).clone(),
                            RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                                host: host.clone(),
                                port: *port,
                            }),
                        )
                        .await
                    }
                    None => cmd.query_async(&mut c).await,
                },
                (Conn::Cluster(mut c), Request::Pipe(p)) => p.query_async(&mut c).await,
            }
        };
        match tokio::time::timeout(TIMEOUT, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.failed(what, &e)),
            Err(_) => Err(err(format!(
                "no answer from {} to {what} within 5 s",
                self.target.addr
            ))),
        }
    }

    fn failed(&self, what: &str, e: &RedisError) -> StoreError {
        // The crate's error texts hold the server's reply or the I/O error, never the
        // credentials.
        err(format!("{} ({what}): {e}", self.target.addr))
    }

    /// The shared connection, and whether it was made by this call. Waiting for another
    /// request's connection attempt counts against the same 10 s.
    async fn connection(&self) -> Result<(Conn, bool), StoreError> {
        let get = async {
            let mut slot = self.conn.lock().await;
            if let Some(c) = &*slot {
                return Ok((c.clone(), false));
            }
            let conn = self.connect().await?;
            *slot = Some(conn.clone());
            Ok((conn, true))
        };
        tokio::time::timeout(TIMEOUT * 2, get).await.map_err(|_| {
            err(format!(
                "cannot connect to {} within 10 s",
                self.target.addr
            ))
        })?
    }

    async fn connect(&self) -> Result<Conn, StoreError> {
        let t = &self.target;
        let connect_err = |e: RedisError| err(format!("cannot connect to {}: {e}", t.addr));
        match &t.topology {
            Topology::Single { host, port } => {
                let info = ConnectionAddr::Tcp(host.clone(), *port)
                    .into_connection_info()
                    .map_err(connect_err)?
                    .set_redis_settings(t.redis_info());
                let client = Client::open(info).map_err(connect_err)?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(TIMEOUT))
                    .set_response_timeout(Some(TIMEOUT))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(200));
                let manager = ConnectionManager::new_with_config(client, config)
                    .await
                    .map_err(connect_err)?;
                Ok(Conn::Single(manager))
            }
            Topology::Cluster { nodes } => {
                let infos = nodes
                    .iter()
                    .map(|(h, p)| {
                        Ok::<_, RedisError>(
                            ConnectionAddr::Tcp(h.clone(), *p)
                                .into_connection_info()?
                                .set_redis_settings(t.redis_info()),
                        )
                    })
                    .collect::<Result<Vec<ConnectionInfo>, _>>()
                    .map_err(connect_err)?;
                let mut builder = ClusterClientBuilder::new(infos)
                    .connection_timeout(TIMEOUT)
                    .response_timeout(TIMEOUT)
                    .retries(2);
                if let Some(u) = &t.username {
                    builder = builder.username(u);
                }
                if let Some(p) = &t.password {
                    builder = builder.password(p.expose());
                }
                let client = builder.build().map_err(connect_err)?;
                let conn = client.get_async_connection().await.map_err(connect_err)?;
                Ok(Conn::Cluster(conn))
            }
            Topology::Sentinel {
                sentinels,
                master,
                sentinel_username,
                sentinel_password,
                ..
            } => {
                let mut guard = self.sentinel.lock().await;
                if guard.is_none() {
                    let mut sentinel_info = RedisConnectionInfo::default();
                    if let Some(u) = sentinel_username {
                        sentinel_info = sentinel_info.set_username(u);
                    }
                    if let Some(p) = sentinel_password {
                        sentinel_info = sentinel_info.set_password(p.expose());
                    }
                    let infos = sentinels
                        .iter()
                        .map(|(h, p)| {
                            Ok::<_, RedisError>(
                                ConnectionAddr::Tcp(h.clone(), *p)
                                    .into_connection_info()?
                                    .set_redis_settings(sentinel_info.clone()),
                            )
                        })
                        .collect::<Result<Vec<ConnectionInfo>, _>>()
                        .map_err(connect_err)?;
                    let node = SentinelNodeConnectionInfo::default()
                        .set_redis_connection_info(t.redis_info());
                    *guard = Some(Box::new(
                        SentinelClient::build(
                            infos,
                            master.clone(),
                            Some(node),
                            SentinelServerType::Master,
                        )
                        .map_err(connect_err)?,
                    ));
                }
                let Some(client) = guard.as_mut() else {
                    return Err(err("the Sentinel client is missing"));
                };
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(TIMEOUT))
                    .set_response_timeout(Some(TIMEOUT));
                let conn = client
                    .get_async_connection_with_config(&config)
                    .await
                    .map_err(|e| {
                        err(format!(
                            "cannot reach the master `{master}` through the sentinels {}: {e}",
                            sentinels
                                .iter()
                                .map(host_port)
                                .collect::<Vec<_>>()
                                .join(",")
                        ))
                    })?;
                Ok(Conn::Sentinel(conn))
            }
        }
    }
}

/// What [`Redis::run`] sends.
enum Request<'a> {
    Cmd(&'a Cmd),
    Pipe(&'a redis::Pipeline),
}

fn key(id: &str) -> String {
    format!("{KEY_PREFIX}{id}")
}

fn describe(reply: &Value) -> String {
    match reply {
        Value::Okay => "OK".to_owned(),
        Value::SimpleString(s) => format!("+{s}"),
        // Error texts come from the server and hold no secret of ours.
        Value::ServerError(e) => format!("error `{e:?}`"),
        Value::Int(n) => format!(":{n}"),
        Value::Nil => "nil".to_owned(),
        Value::BulkString(_) => "a bulk string".to_owned(),
        Value::Array(_) => "an array".to_owned(),
        _ => "an unexpected reply type".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::parse("redis://127.0.0.1:6390/2").unwrap();
        assert_eq!(t.addr, "127.0.0.1:6390");
        assert_eq!(t.db, 2);
        assert!(t.password.is_none());
        let t = Target::parse("redis://:s%40cret@redis").unwrap();
        assert_eq!(t.addr, "redis:6379");
        assert_eq!(t.password.as_ref().unwrap().expose(), "s@cret");
        assert!(t.username.is_none());
        assert!(!format!("{t:?}").contains("s@cret"));
        let t = Target::parse("redis://app:pw@[::1]:7000").unwrap();
        assert_eq!(t.addr, "[::1]:7000");
        assert_eq!(
            t.topology,
            Topology::Single {
                host: "::1".to_owned(),
                port: 7000
            }
        );
        assert_eq!(t.username.as_deref(), Some("app"));
        assert!(Target::parse("rediss://h").unwrap_err().contains("TLS"));
        assert!(
            Target::parse("rediss+sentinel://h/m")
                .unwrap_err()
                .contains("TLS")
        );
        assert!(Target::parse("http://h").unwrap_err().contains("scheme"));
        assert!(Target::parse("redis://h/x").unwrap_err().contains("number"));
        assert!(
            Target::parse("redis://h/0?x=1")
                .unwrap_err()
                .contains("query")
        );
    }

    #[test]
    fn sentinel_urls() {
        let t = Target::parse(
            "redis+sentinel://app:p%40ss@s1:26379,[::1]:26380,s3/my-master/4?sentinel_password=sp&replicas=2",
        )
        .unwrap();
        assert_eq!(t.db, 4);
        assert_eq!(t.username.as_deref(), Some("app"));
        assert_eq!(t.password.as_ref().unwrap().expose(), "p@ss");
        let Topology::Sentinel {
            sentinels,
            master,
            replicas,
            sentinel_username,
            sentinel_password,
        } = &t.topology
        else {
            panic!("{t:?}")
        };
        assert_eq!(
            sentinels,
            &[
                ("s1".to_owned(), 26379),
                ("::1".to_owned(), 26380),
                ("s3".to_owned(), 26379)
            ]
        );
        assert_eq!(master, "my-master");
        assert_eq!(*replicas, 2);
        assert!(sentinel_username.is_none());
        assert_eq!(sentinel_password.as_ref().unwrap().expose(), "sp");
        assert_eq!(
            t.addr,
            "sentinel master my-master via s1:26379,::1:26380,s3:26379"
        );
        let shown = format!("{t:?}");
        assert!(!shown.contains("p@ss") && !shown.contains("sp&"), "{shown}");
        // Defaults: database 0, one replica to wait for.
        let t = Target::parse("redis+sentinel://s1/m").unwrap();
        assert_eq!(t.db, 0);
        assert!(matches!(t.topology, Topology::Sentinel { replicas: 1, .. }));
        let e = Target::parse("redis+sentinel://s1:26379").unwrap_err();
        assert!(e.contains("MASTER"), "{e}");
        let e = Target::parse("redis+sentinel://s1/m/x").unwrap_err();
        assert!(e.contains("number"), "{e}");
        let e = Target::parse("redis+sentinel://s1/m/0/1").unwrap_err();
        assert!(e.contains("MASTER"), "{e}");
        let e = Target::parse("redis+sentinel://s1,,s2/m").unwrap_err();
        assert!(e.contains("empty host"), "{e}");
        let e = Target::parse("redis+sentinel://s1:x/m").unwrap_err();
        assert!(e.contains("`s1:x`"), "{e}");
        let e = Target::parse("redis+sentinel://s1/m?password=x").unwrap_err();
        assert!(e.contains("unknown query parameter `password`"), "{e}");
        let e = Target::parse("redis+sentinel://s1/m?replicas=many").unwrap_err();
        assert!(e.contains("replicas"), "{e}");
    }

    #[test]
    fn cluster_urls() {
        let t = Target::parse("redis+cluster://:pw@n1:7000,n2:7001,n3").unwrap();
        assert_eq!(t.addr, "cluster n1:7000,n2:7001,n3:6379");
        assert_eq!(t.password.as_ref().unwrap().expose(), "pw");
        assert_eq!(t.db, 0);
        assert!(Target::parse("redis+cluster://n1:7000/0").is_ok());
        let e = Target::parse("redis+cluster://n1:7000/3").unwrap_err();
        assert!(e.contains("database 0"), "{e}");
        let e = Target::parse("redis+cluster://n1?x=1").unwrap_err();
        assert!(e.contains("query"), "{e}");
    }
}
