//! Redis store URLs: `redis://` (one server, parsed by the `url` crate), and the multi-host
//! forms `redis+sentinel://` and `redis+cluster://`, whose host lists no URL parser takes
//! (`host:port,host:port` is not an authority), so they are split here and each host checked
//! as a one-host URL. Each has a TLS form, `rediss://`, `rediss+sentinel://` (TLS to the
//! sentinels and to the servers they name) and `rediss+cluster://`; the trust material
//! (`store.ca_certificate`, `store.client_certificate`/`client_key`) is read at config load and
//! attached with [`Target::with_tls`].

use redis::RedisConnectionInfo;

use crate::authn::Secret;

/// Most hosts in one URL.
const MAX_HOSTS: usize = 32;

const EXAMPLES: &str = "write e.g. `redis://127.0.0.1:6379/0`, \
     `redis+sentinel://sentinel-1:26379,sentinel-2:26379/mymaster/0` or \
     `redis+cluster://node-1:6379,node-2:6379` (`rediss://`, `rediss+sentinel://`, \
     `rediss+cluster://` for TLS)";

/// What a TLS connection (`rediss…://`) trusts and shows, as PEM read at config load.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsMaterial {
    /// The CA certificate(s) the servers' certificates must chain to; `None`: the system's
    /// trust store.
    pub ca: Option<Vec<u8>>,
    /// The client certificate chain and its private key (mutual TLS).
    pub client: Option<(Vec<u8>, Secret)>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca", &if self.ca.is_some() { "file" } else { "system" })
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

/// One server, or how to find the servers.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(super) enum Topology {
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
    pub(super) topology: Topology,
    pub(super) username: Option<String>,
    pub(super) password: Option<Secret>,
    pub(super) db: u32,
    /// TLS (`rediss…://`): what it trusts (system's store until [`Target::with_tls`]).
    pub(super) tls: Option<Box<TlsMaterial>>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("addr", &self.addr)
            .field("username", &self.username)
            .field("db", &self.db)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

pub(super) fn host_port(h: &(String, u16)) -> String {
    format!("{}:{}", h.0, h.1)
}

fn decode(s: &str) -> Result<String, String> {
    percent_decode(s).ok_or_else(|| "the URL's user or password is not valid UTF-8".to_owned())
}

impl Target {
    pub(in crate::store) fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("not a URL; {EXAMPLES}"))?;
        let tls = match scheme {
            "rediss" | "rediss+sentinel" | "rediss+cluster" => Some(Box::default()),
            _ => None,
        };
        let mut target = match scheme {
            "redis" | "rediss" => Self::parse_single(rest),
            "redis+sentinel" | "redis+cluster" | "rediss+sentinel" | "rediss+cluster" => {
                Self::parse_multi(scheme.ends_with("cluster"), rest)
            }
            other => Err(format!("scheme `{other}` is not Redis; {EXAMPLES}")),
        }?;
        target.tls = tls;
        Ok(target)
    }

    /// Whether the URL asks for TLS (`rediss…://`).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The TLS material read at config load (only for a `rediss…://` URL; the caller checks).
    pub fn with_tls(mut self, material: TlsMaterial) -> Self {
        if self.tls.is_some() {
            self.tls = Some(Box::new(material));
        }
        self
    }

    /// `rest`: the URL after `redis://` or `rediss://`.
    fn parse_single(rest: &str) -> Result<Self, String> {
        let parsed = reqwest::Url::parse(&format!("redis://{rest}"))
            .map_err(|e| format!("not a URL ({e}); {EXAMPLES}"))?;
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
            tls: None,
        })
    }

    /// `redis+sentinel://` and `redis+cluster://` (and their `rediss` forms): the host list is
    /// split here, each host checked as a one-host URL; the rest (credentials, path, query) is
    /// parsed as a URL.
    fn parse_multi(cluster: bool, rest: &str) -> Result<Self, String> {
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
                tls: None,
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
            tls: None,
        })
    }

    pub(super) fn redis_info(&self) -> RedisConnectionInfo {
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
pub(super) fn bare_host(host: &str) -> String {
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
        assert!(!t.is_tls());
        assert!(Target::parse("redis+sentinel://h/m").is_ok_and(|t| !t.is_tls()));
        assert!(Target::parse("http://h").unwrap_err().contains("scheme"));
        assert!(Target::parse("redis://h/x").unwrap_err().contains("number"));
        assert!(
            Target::parse("redis://h/0?x=1")
                .unwrap_err()
                .contains("query")
        );
    }

    #[test]
    fn tls_urls() {
        // `rediss://`: the same shapes, TLS on (trusting the system's store until the config's
        // material is attached).
        let t = Target::parse("rediss://:s%40cret@cache.example.com:6380/2").unwrap();
        assert!(t.is_tls());
        assert_eq!(t.tls.as_deref(), Some(&TlsMaterial::default()));
        assert_eq!(t.addr, "cache.example.com:6380");
        assert_eq!(t.db, 2);
        assert_eq!(t.password.as_ref().unwrap().expose(), "s@cret");
        assert!(!format!("{t:?}").contains("s@cret"));
        let t = Target::parse("rediss://[::1]").unwrap();
        assert_eq!(
            t.topology,
            Topology::Single {
                host: "::1".to_owned(),
                port: 6379
            }
        );
        let t = Target::parse("rediss+sentinel://s1,s2:26380/m/1?sentinel_password=sp").unwrap();
        assert!(t.is_tls());
        assert_eq!(t.addr, "sentinel master m via s1:26379,s2:26380");
        assert_eq!(t.db, 1);
        let t = Target::parse("rediss+cluster://:pw@n1:7000,n2").unwrap();
        assert!(t.is_tls());
        assert_eq!(t.addr, "cluster n1:7000,n2:6379");
        let e = Target::parse("rediss+cluster://n1/3").unwrap_err();
        assert!(e.contains("database 0"), "{e}");
        let e = Target::parse("rediss://h/0?tls=1").unwrap_err();
        assert!(e.contains("query"), "{e}");
        let e = Target::parse("redisss://h").unwrap_err();
        assert!(
            e.contains("scheme `redisss`") && e.contains("rediss://"),
            "{e}"
        );
        // The material: attached to a TLS target only; its Debug shows no key.
        let material = TlsMaterial {
            ca: Some(b"CA PEM".to_vec()),
            client: Some((b"CERT PEM".to_vec(), Secret::new("KEY-PEM-secret"))),
        };
        let t = Target::parse("rediss://h")
            .unwrap()
            .with_tls(material.clone());
        assert_eq!(t.tls.as_deref(), Some(&material));
        let shown = format!("{t:?}");
        assert!(
            !shown.contains("KEY-PEM") && !shown.contains("CA PEM"),
            "{shown}"
        );
        assert!(
            Target::parse("redis://h")
                .unwrap()
                .with_tls(material)
                .tls
                .is_none()
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
