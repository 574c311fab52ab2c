//! The Redis store: a small RESP2 client (`AUTH`, `SELECT`, `SET … NX EX`, `GET`, `DEL`, `SCAN`,
//! `EVAL` for compare-and-set) over plain TCP with a handful of pooled connections. Records live under
//! `registry-auth:minted:<id>` and expire with the password (Redis drops them itself). The
//! `*_key` functions do the same on a key the caller names whole (the replicas' shared state,
//! `registry-auth:shared:…`; see `shared`); every command and script touches one key.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{StoreError, lock};
use crate::authn::Secret;

const KEY_PREFIX: &str = "registry-auth:minted:";
/// Most idle connections kept.
const POOL: usize = 8;
/// Time allowed for connecting and for one command.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Replaces `KEYS[1]` with `ARGV[2]` (expiring in `ARGV[3]` seconds) only while it holds
/// `ARGV[1]`. A script runs atomically on the server: nothing lands between the check and the
/// write.
const CAS_SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) return 1 else return 0 end";
/// Largest reply accepted (a record is ~1 KiB).
const MAX_BULK: usize = 1 << 20;

/// A parsed `redis://[[user]:password@]host[:port][/db]` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port`.
    pub addr: String,
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

impl Target {
    pub(super) fn parse(url: &str) -> Result<Self, String> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| format!("not a URL ({e}); write e.g. `redis://127.0.0.1:6379/0`"))?;
        match parsed.scheme() {
            "redis" => {}
            "rediss" => {
                return Err(
                    "TLS to Redis (`rediss://`) is not supported yet; use `redis://` on a \
                     trusted network (or a TLS tunnel)"
                        .to_owned(),
                );
            }
            other => {
                return Err(format!(
                    "scheme `{other}` is not Redis; write e.g. `redis://127.0.0.1:6379/0`"
                ));
            }
        }
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("the URL has no host; write e.g. `redis://127.0.0.1:6379/0`")?;
        let port = parsed.port().unwrap_or(6379);
        let db = match parsed.path().trim_start_matches('/') {
            "" => 0,
            n => n
                .parse()
                .map_err(|_| format!("the database `{n}` is not a number"))?,
        };
        let decode = |s: &str| {
            percent_decode(s)
                .ok_or_else(|| "the URL's user or password is not valid UTF-8".to_owned())
        };
        let username = match parsed.username() {
            "" => None,
            u => Some(decode(u)?),
        };
        let password = parsed.password().map(decode).transpose()?.map(Secret::new);
        if parsed.query().is_some() {
            return Err("query parameters are not supported in the Redis URL".to_owned());
        }
        Ok(Self {
            // `host_str` keeps an IPv6 address in brackets.
            addr: format!("{host}:{port}"),
            username,
            password,
            db,
        })
    }
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

#[derive(Debug)]
pub(super) struct Redis {
    target: Target,
    idle: std::sync::Mutex<Vec<Conn>>,
}

#[derive(Debug)]
struct Conn(BufReader<TcpStream>);

/// A RESP2 reply.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

fn err(message: impl Into<String>) -> StoreError {
    StoreError::new("redis", message)
}

impl Redis {
    pub(super) fn new(target: Target) -> Self {
        Self {
            target,
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// `SET … NX EX`: false when the key exists already.
    pub(super) async fn insert(
        &self,
        id: &str,
        value: &[u8],
        ttl: u64,
    ) -> Result<bool, StoreError> {
        let key = format!("{KEY_PREFIX}{id}");
        let ttl = ttl.to_string();
        match self
            .command(&[b"SET", key.as_bytes(), value, b"NX", b"EX", ttl.as_bytes()])
            .await?
        {
            Reply::Simple(s) if s == "OK" => Ok(true),
            Reply::Bulk(None) => Ok(false),
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
        let key = format!("{KEY_PREFIX}{id}");
        let ttl = ttl.to_string();
        match self
            .command(&[
                b"EVAL",
                CAS_SCRIPT.as_bytes(),
                b"1",
                key.as_bytes(),
                seen,
                value,
                ttl.as_bytes(),
            ])
            .await?
        {
            Reply::Int(n) => Ok(n == 1),
            other => Err(err(format!(
                "EVAL (compare-and-set) answered {}",
                describe(&other)
            ))),
        }
    }

    pub(super) async fn get(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = format!("{KEY_PREFIX}{id}");
        match self.command(&[b"GET", key.as_bytes()]).await? {
            Reply::Bulk(v) => Ok(v),
            other => Err(err(format!("GET answered {}", describe(&other)))),
        }
    }

    pub(super) async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let key = format!("{KEY_PREFIX}{id}");
        match self.command(&[b"DEL", key.as_bytes()]).await? {
            Reply::Int(n) => Ok(n > 0),
            other => Err(err(format!("DEL answered {}", describe(&other)))),
        }
    }

    /// The ids of every record (`SCAN` over the key prefix: never blocks the server).
    pub(super) async fn ids(&self) -> Result<Vec<String>, StoreError> {
        let pattern = format!("{KEY_PREFIX}*");
        let mut cursor = b"0".to_vec();
        let mut ids = Vec::new();
        loop {
            let reply = self
                .command(&[
                    b"SCAN",
                    &cursor,
                    b"MATCH",
                    pattern.as_bytes(),
                    b"COUNT",
                    b"500",
                ])
                .await?;
            let Reply::Array(Some(mut parts)) = reply else {
                return Err(err(format!("SCAN answered {}", describe(&reply))));
            };
            let (Some(Reply::Array(Some(keys))), Some(Reply::Bulk(Some(next)))) =
                (parts.pop(), parts.pop())
            else {
                return Err(err("SCAN answered something else than [cursor, keys]"));
            };
            for key in keys {
                if let Reply::Bulk(Some(k)) = key
                    && let Some(id) = std::str::from_utf8(&k)
                        .ok()
                        .and_then(|k| k.strip_prefix(KEY_PREFIX))
                {
                    ids.push(id.to_owned());
                }
            }
            if next == b"0" {
                return Ok(ids);
            }
            cursor = next;
        }
    }

    /// `SET key value NX EX ttl` on a whole key (the shared state: revocations, lockout
    /// counters, under keys the caller names): false when the key exists already.
    pub(super) async fn insert_key(
        &self,
        key: &str,
        value: &[u8],
        ttl: u64,
    ) -> Result<bool, StoreError> {
        let ttl = ttl.to_string();
        match self
            .command(&[b"SET", key.as_bytes(), value, b"NX", b"EX", ttl.as_bytes()])
            .await?
        {
            Reply::Simple(s) if s == "OK" => Ok(true),
            Reply::Bulk(None) => Ok(false),
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
        let ttl = ttl.to_string();
        match self
            .command(&[
                b"EVAL",
                CAS_SCRIPT.as_bytes(),
                b"1",
                key.as_bytes(),
                seen,
                value,
                ttl.as_bytes(),
            ])
            .await?
        {
            Reply::Int(n) => Ok(n == 1),
            other => Err(err(format!(
                "EVAL (compare-and-set) answered {}",
                describe(&other)
            ))),
        }
    }

    /// `GET` of a whole key.
    pub(super) async fn get_key(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.command(&[b"GET", key.as_bytes()]).await? {
            Reply::Bulk(v) => Ok(v),
            other => Err(err(format!("GET answered {}", describe(&other)))),
        }
    }

    /// `DEL` of a whole key; true when it existed.
    pub(super) async fn delete_key(&self, key: &str) -> Result<bool, StoreError> {
        match self.command(&[b"DEL", key.as_bytes()]).await? {
            Reply::Int(n) => Ok(n > 0),
            other => Err(err(format!("DEL answered {}", describe(&other)))),
        }
    }

    /// Runs one command on a pooled (or new) connection. A connection that failed is dropped;
    /// a command that failed on a stale pooled connection is retried once on a fresh one.
    async fn command(&self, args: &[&[u8]]) -> Result<Reply, StoreError> {
        let pooled = lock(&self.idle).pop();
        let fresh = pooled.is_none();
        let mut conn = match pooled {
            Some(c) => c,
            None => self.connect().await?,
        };
        let reply = match tokio::time::timeout(TIMEOUT, conn.call(args)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) if !fresh => {
                tracing::debug!(error = %e, "a pooled Redis connection failed; reconnecting");
                conn = self.connect().await?;
                tokio::time::timeout(TIMEOUT, conn.call(args))
                    .await
                    .map_err(|_| err(format!("no answer from {} within 5 s", self.target.addr)))?
                    .map_err(|e| err(format!("{}: {e}", self.target.addr)))?
            }
            Ok(Err(e)) => return Err(err(format!("{}: {e}", self.target.addr))),
            Err(_) => {
                return Err(err(format!(
                    "no answer from {} within 5 s",
                    self.target.addr
                )));
            }
        };
        if let Reply::Error(e) = &reply {
            return Err(err(format!("Redis refused the command: {e}")));
        }
        let mut idle = lock(&self.idle);
        if idle.len() < POOL {
            idle.push(conn);
        }
        Ok(reply)
    }

    async fn connect(&self) -> Result<Conn, StoreError> {
        let t = &self.target;
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(&t.addr))
            .await
            .map_err(|_| err(format!("cannot connect to {} within 5 s", t.addr)))?
            .map_err(|e| err(format!("cannot connect to {}: {e}", t.addr)))?;
        let _ = stream.set_nodelay(true);
        let mut conn = Conn(BufReader::new(stream));
        let setup = async {
            if let Some(password) = &t.password {
                let mut args: Vec<&[u8]> = vec![b"AUTH"];
                if let Some(user) = &t.username {
                    args.push(user.as_bytes());
                }
                args.push(password.expose().as_bytes());
                expect_ok(conn.call(&args).await?, "AUTH")?;
            }
            if t.db != 0 {
                let db = t.db.to_string();
                expect_ok(conn.call(&[b"SELECT", db.as_bytes()]).await?, "SELECT")?;
            }
            Ok::<_, std::io::Error>(())
        };
        tokio::time::timeout(TIMEOUT, setup)
            .await
            .map_err(|_| err(format!("{} did not answer within 5 s", t.addr)))?
            .map_err(|e| err(format!("{}: {e}", t.addr)))?;
        Ok(conn)
    }
}

fn expect_ok(reply: Reply, what: &str) -> std::io::Result<()> {
    match reply {
        Reply::Simple(s) if s == "OK" => Ok(()),
        other => Err(std::io::Error::other(format!(
            "{what} answered {}",
            describe(&other)
        ))),
    }
}

fn describe(reply: &Reply) -> String {
    match reply {
        Reply::Simple(s) => format!("+{s}"),
        // Error texts come from the server and hold no secret of ours.
        Reply::Error(e) => format!("error `{e}`"),
        Reply::Int(n) => format!(":{n}"),
        Reply::Bulk(_) => "a bulk string".to_owned(),
        Reply::Array(_) => "an array".to_owned(),
    }
}

impl Conn {
    async fn call(&mut self, args: &[&[u8]]) -> std::io::Result<Reply> {
        let mut out = Vec::with_capacity(64 + args.iter().map(|a| a.len() + 16).sum::<usize>());
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.0.get_mut().write_all(&out).await?;
        read_reply(&mut self.0, 0).await
    }
}

fn bad(message: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.to_owned())
}

async fn read_line(r: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut line = Vec::new();
    let n = r.read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    if !line.ends_with(b"\r\n") || line.len() > 64 * 1024 {
        return Err(bad("malformed reply line"));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| bad("reply line is not UTF-8"))
}

fn read_reply<'a>(
    r: &'a mut BufReader<TcpStream>,
    depth: usize,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Reply>> + Send + 'a>> {
    Box::pin(async move {
        if depth > 4 {
            return Err(bad("reply nested too deep"));
        }
        let line = read_line(r).await?;
        let (kind, rest) = line.split_at_checked(1).ok_or_else(|| bad("empty reply"))?;
        let int = || rest.parse::<i64>().map_err(|_| bad("bad length"));
        Ok(match kind {
            "+" => Reply::Simple(rest.to_owned()),
            "-" => Reply::Error(rest.to_owned()),
            ":" => Reply::Int(int()?),
            "$" => {
                let n = int()?;
                if n < 0 {
                    Reply::Bulk(None)
                } else {
                    let n = usize::try_from(n).map_err(|_| bad("bad length"))?;
                    if n > MAX_BULK {
                        return Err(bad("reply too large"));
                    }
                    let mut buf = vec![0; n + 2];
                    r.read_exact(&mut buf).await?;
                    buf.truncate(n);
                    Reply::Bulk(Some(buf))
                }
            }
            "*" => {
                let n = int()?;
                if n < 0 {
                    Reply::Array(None)
                } else {
                    let n = usize::try_from(n).map_err(|_| bad("bad length"))?;
                    let mut items = Vec::with_capacity(n.min(16));
                    for _ in 0..n {
                        items.push(read_reply(r, depth + 1).await?);
                    }
                    Reply::Array(Some(items))
                }
            }
            _ => return Err(bad("unknown reply type")),
        })
    })
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
        assert_eq!(t.username.as_deref(), Some("app"));
        assert!(Target::parse("rediss://h").unwrap_err().contains("TLS"));
        assert!(Target::parse("http://h").unwrap_err().contains("scheme"));
        assert!(Target::parse("redis://h/x").unwrap_err().contains("number"));
    }
}
