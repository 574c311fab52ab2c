//! The Redis store, through the `redis` crate (tokio): one server
//! (`redis://`, a `ConnectionManager` that reconnects by itself), Redis Sentinel
//! (`redis+sentinel://`, the crate's master discovery: ask the sentinels, check the answer with
//! `ROLE`) and Redis Cluster (`redis+cluster://`, the crate's slot routing, `MOVED`/`ASK`
//! redirections and topology refresh). Each over TLS with `rediss…://`: the crate's rustls
//! support (`TlsCertificates`: the CA file's PEM or the system's trust store, and a client
//! certificate for mutual TLS), on the aws-lc-rs provider installed as the process default
//! before the first connection; through Sentinel both the sentinels and the servers they name
//! are reached over TLS. Records live under `registry-auth:minted:<id>` and expire
//! with the password (Redis drops them itself). The `*_key` functions do the same on a key the
//! caller names whole (the replicas' shared state, `registry-auth:shared:…`; see `shared`).
//!
//! Still by hand, because the crate has no such thing:
//!
//! * parsing the multi-host URL forms (`url`; the crate parses one-host `redis://` URLs only);
//! * keeping one Sentinel master connection and asking the sentinels again after a failure (the
//!   crate's Sentinel client hands out connections, it does not manage one);
//! * `WAIT` after each write through Sentinel, so a write is acknowledged only once a replica
//!   holds it and a failover cannot lose it;
//! * listing on a cluster: `SCAN` runs per node, so it is sent to every master in turn.
//!
//! Replies are read by the crate (bounded by the server's `proto-max-bulk-len`); a record over
//! 1 MiB is refused after reading. Each connection attempt and each command has a 5 s limit.
//!
//! A new operation builds a `redis::Cmd` (one key, so it routes on a cluster) and sends it with
//! `Redis::command` (reads) or `Redis::write` (writes: `WAIT` through Sentinel), matching on the
//! returned `redis::Value`.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, Cmd, ConnectionAddr, ConnectionInfo,
    IntoConnectionInfo, RedisError, TlsCertificates, TlsMode, Value,
};

use super::StoreError;

mod url;

pub use url::{Target, TlsMaterial};
use url::{Topology, bare_host, host_port};

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
        self.insert_key(&key(id), value, ttl).await
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
        self.update_key(&key(id), seen, value, ttl).await
    }

    pub(super) async fn get(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_key(&key(id)).await
    }

    pub(super) async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.delete_key(&key(id)).await
    }

    /// [`Redis::insert`] on a whole key (the shared state: revocations and lockout counters,
    /// under keys the caller names).
    pub(super) async fn insert_key(
        &self,
        key: &str,
        value: &[u8],
        ttl: u64,
    ) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("NX").arg("EX").arg(ttl);
        match self.write(cmd, "SET").await? {
            Value::Okay => Ok(true),
            Value::Nil => Ok(false),
            other => Err(err(format!("SET answered {}", describe(&other)))),
        }
    }

    /// [`Redis::update`] on a whole key: [`CAS_SCRIPT`] (one key, so one Cluster slot).
    pub(super) async fn update_key(
        &self,
        key: &str,
        seen: &[u8],
        value: &[u8],
        ttl: u64,
    ) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(CAS_SCRIPT)
            .arg(1)
            .arg(key)
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

    /// `GET` of a whole key.
    pub(super) async fn get_key(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        match self.command(&cmd, None, "GET").await? {
            Value::Nil => Ok(None),
            Value::BulkString(v) if v.len() <= MAX_BULK => Ok(Some(v)),
            Value::BulkString(_) => Err(err("GET answered a record over 1 MiB")),
            other => Err(err(format!("GET answered {}", describe(&other)))),
        }
    }

    /// `DEL` of a whole key; true when it existed.
    pub(super) async fn delete_key(&self, key: &str) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(key);
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
        let tls = t.tls.as_ref().map(|m| {
            install_crypto_provider();
            certificates(m)
        });
        let connect_err = |e: RedisError| {
            let what = if tls.is_some() { " over TLS" } else { "" };
            err(format!(
                "cannot connect to {}{what}: {e}{}",
                t.addr,
                tls_hint(&e)
            ))
        };
        let addr = |host: &str, port: u16| match &tls {
            Some(_) => ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure: false,
                tls_params: None,
            },
            None => ConnectionAddr::Tcp(host.to_owned(), port),
        };
        match &t.topology {
            Topology::Single { host, port } => {
                let info = addr(host, *port)
                    .into_connection_info()
                    .map_err(connect_err)?
                    .set_redis_settings(t.redis_info());
                let client = match &tls {
                    Some(certs) => Client::build_with_tls(info, certs.clone()),
                    None => Client::open(info),
                }
                .map_err(connect_err)?;
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
                            addr(h, *p)
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
                if let Some(certs) = &tls {
                    // Every node the cluster names is reached over TLS, verified alike.
                    builder = builder.tls(TlsMode::Secure).certs(certs.clone());
                }
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
                    let mut builder = SentinelClientBuilder::new(
                        sentinels.iter().map(|(h, p)| addr(h, *p)),
                        master.clone(),
                        SentinelServerType::Master,
                    )
                    .map_err(connect_err)?
                    .set_client_to_redis_db(i64::from(t.db));
                    if let Some(u) = sentinel_username {
                        builder = builder.set_client_to_sentinel_username(u);
                    }
                    if let Some(p) = sentinel_password {
                        builder = builder.set_client_to_sentinel_password(p.expose());
                    }
                    if let Some(u) = &t.username {
                        builder = builder.set_client_to_redis_username(u);
                    }
                    if let Some(p) = &t.password {
                        builder = builder.set_client_to_redis_password(p.expose());
                    }
                    if let Some(certs) = &tls {
                        // TLS to the sentinels and to the master they name, one trust for both.
                        builder = builder
                            .set_client_to_sentinel_tls_mode(TlsMode::Secure)
                            .set_client_to_sentinel_certificates(certs.clone())
                            .set_client_to_redis_tls_mode(TlsMode::Secure)
                            .set_client_to_redis_certificates(certs.clone());
                    }
                    *guard = Some(Box::new(builder.build().map_err(connect_err)?));
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

/// What to do about a TLS failure the error text names (rustls's wording), or nothing.
fn tls_hint(e: &RedisError) -> &'static str {
    let text = e.to_string();
    if text.contains("invalid peer certificate") {
        " (the server's certificate is not valid for this host or not signed by a CA of \
         `store.ca_certificate`, or of the system's trust store without it)"
    } else if text.contains("CertificateRequired") {
        " (the server requires a client certificate: set `store.client_certificate` and \
         `store.client_key`)"
    } else {
        ""
    }
}

/// The crate's TLS settings for `material`: its CA PEM (`None`: the system's trust store) and
/// the client certificate and key for mutual TLS (all checked at config load).
fn certificates(material: &TlsMaterial) -> TlsCertificates {
    TlsCertificates {
        client_tls: material.client.as_ref().map(|(cert, key)| ClientTlsConfig {
            client_cert: cert.clone(),
            client_key: key.expose().as_bytes().to_vec(),
        }),
        root_cert: material.ca.clone(),
    }
}

/// The crate builds its rustls configurations on the process's default provider: make it
/// aws-lc-rs (our one crypto provider) before the first TLS connection. Installing twice is a
/// no-op (the error only says one is installed, and aws-lc-rs is the only one built in).
fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
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
