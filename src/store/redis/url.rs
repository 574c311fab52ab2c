//! Redis store URLs: `redis://` (one server, parsed by the `url` crate), and the multi-host
//! forms `redis+sentinel://` and `redis+cluster://`, whose host lists no URL parser takes
//! (`host:port,host:port` is not an authority), so they are split here and each host checked
//! as a one-host URL.

use redis::RedisConnectionInfo;

use crate::authn::Secret;

/// Most hosts in one URL.
const MAX_HOSTS: usize = 32;

const EXAMPLES: &str = "write e.g. `redis://127.0.0.1:6379/0`, \
     `redis+sentinel://sentinel-1:26379,sentinel-2:26379/mymaster/0` or \
     `redis+cluster://node-1:6379,node-2:6379`";

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
