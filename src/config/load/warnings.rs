//! Problems that do not stop the server but weaken it, reported by `check-config` and logged at
//! start-up and on reload: local users hashed with different bcrypt costs, and connections to
//! databases and directories that are plaintext or whose server is not verified.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::authn::ldap::LdapTls;

use crate::config::ConfigIssue;

/// A warning when the local accounts (`users`, `users_file`, robots as `robot$NAME`) do not all
/// use one bcrypt cost. An unknown user is checked against a dummy hash at the highest cost, so
/// with mixed costs a wrong password for a cheap user answers faster than an unknown name, and
/// timing tells which names exist.
pub(super) fn mixed_bcrypt_costs<'a>(
    accounts: impl IntoIterator<Item = (&'a str, u32)>,
) -> Option<ConfigIssue> {
    let mut by_cost: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    for (name, cost) in accounts {
        by_cost.entry(cost).or_default().push(name);
    }
    if by_cost.len() < 2 {
        return None;
    }
    let highest = *by_cost.keys().next_back()?;
    let groups: Vec<String> = by_cost
        .iter_mut()
        .map(|(cost, names)| {
            names.sort_unstable();
            const SHOWN: usize = 10;
            let more = names.len().saturating_sub(SHOWN);
            let mut list = names
                .iter()
                .take(SHOWN)
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ");
            if more > 0 {
                list.push_str(&format!(" and {more} more"));
            }
            format!("cost {cost}: {list}")
        })
        .collect();
    Some(ConfigIssue::new(
        "users",
        format!(
            "the local users' bcrypt hashes use different costs ({}); an unknown user is checked \
             against a hash at the highest cost ({highest}), so a wrong password for a cheaper \
             user answers faster and timing tells which user names exist; rehash every password \
             with one cost (`registry-auth hash-password --cost {highest}` or `htpasswd -B -C \
             {highest}`)",
            groups.join("; ")
        ),
    ))
}

/// Whether `host` (a host name, an IP literal, possibly in brackets, or empty) is this machine:
/// `localhost`, a loopback address, or empty (the client's default, a local socket).
fn is_local_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.is_empty()
        || host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `(host, query)` of a `scheme://user:password@host:port/path?query` URL (the host without its
/// port; IPv6 literals keep their brackets).
fn url_host_and_query(url: &str) -> (&str, &str) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = before_query.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        host_port.split_inclusive(']').next().unwrap_or(host_port)
    } else {
        host_port.split(':').next().unwrap_or(host_port)
    };
    (host, query.split('#').next().unwrap_or_default())
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// A warning for a PostgreSQL URL (`sql_auth.url`, `acl_sql.url`, `store.url`) whose server is
/// neither local nor verified: `sslmode` missing (sqlx's default, `prefer`, falls back to
/// plaintext), `disable`, `allow`, `prefer` or `require` (encrypted, but any certificate is
/// accepted). `verify-ca` and `verify-full` verify the server; a loopback host or a unix socket
/// needs neither.
pub(super) fn postgres_transport(path: &str, url: &str) -> Option<ConfigIssue> {
    let (host, query) = url_host_and_query(url);
    let socket = |h: &str| h.starts_with('/') || h.to_ascii_lowercase().starts_with("%2f");
    let host_param = query_param(query, "host");
    if socket(host) || host_param.is_some_and(socket) {
        return None;
    }
    let host = host_param.filter(|h| !h.is_empty()).unwrap_or(host);
    if is_local_host(host) {
        return None;
    }
    let mode = query_param(query, "sslmode").or_else(|| query_param(query, "ssl-mode"));
    let what = match mode.map(str::to_ascii_lowercase).as_deref() {
        Some("verify-ca" | "verify-full") => return None,
        None => "no `sslmode`, so sqlx uses `prefer`: it falls back to plaintext when the server \
                 (or anyone in the path) declines TLS, and verifies no certificate"
            .to_owned(),
        Some(m @ ("disable" | "allow")) => {
            format!("`sslmode={m}` may send the password and every query in plaintext")
        }
        Some(m @ "prefer") => format!(
            "`sslmode={m}` falls back to plaintext when TLS is declined and verifies no \
             certificate"
        ),
        Some(m) => format!(
            "`sslmode={m}` encrypts but verifies no certificate, so anyone in the path can \
             impersonate the server"
        ),
    };
    Some(ConfigIssue::new(
        path,
        format!(
            "the connection to PostgreSQL at {host} is not verified: {what}; add \
             `sslmode=verify-full` (and `sslrootcert=/path/ca.pem` unless the system trust store \
             knows its CA) to the URL"
        ),
    ))
}

/// A warning for a plaintext Redis URL (`store.url`: `redis://`, `redis+sentinel://`,
/// `redis+cluster://`) to a host that is not local: minted-password hashes, sessions,
/// revocations and the password itself cross the network readable and alterable. Every host of
/// a multi-host URL is checked. A `rediss…://` URL (TLS, the server verified) needs none.
pub(super) fn redis_transport(path: &str, url: &str) -> Option<ConfigIssue> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    if scheme.starts_with("rediss") {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = hosts.split(',').find_map(|h| {
        let (host, _) = url_host_and_query(h);
        (!is_local_host(host)).then_some(host)
    })?;
    let tls = if scheme.is_empty() {
        "rediss://".to_owned()
    } else {
        format!("{}://", scheme.replacen("redis", "rediss", 1))
    };
    Some(ConfigIssue::new(
        path,
        format!(
            "the connection to Redis at {host} is plaintext: the password, minted passwords' \
             hashes and sessions cross the network readable and alterable; use TLS: write the \
             URL as `{tls}…` (with `store.ca_certificate` unless the system trust store knows \
             the server's CA), or run Redis on this host"
        ),
    ))
}

/// A warning for `ldap_auth` over plaintext to a host that is not local (binds send passwords),
/// or over TLS without verification (`insecure_tls_skip_verify`).
pub(super) fn ldap_transport(addr: &str, tls: LdapTls, skip_verify: bool) -> Option<ConfigIssue> {
    let host = if addr.starts_with('[') {
        addr.split_inclusive(']').next().unwrap_or(addr)
    } else {
        addr.rsplit_once(':').map_or(addr, |(h, _)| h)
    };
    match tls {
        LdapTls::None if !is_local_host(host) => Some(ConfigIssue::new(
            "ldap_auth.tls",
            format!(
                "the connection to the LDAP server {addr} is plaintext: every bind sends a \
                 password readable by anyone in the path; set `tls: starttls` (or `tls: always` \
                 for LDAPS on 636) with `ca_certificate` if the system trust store does not know \
                 its CA"
            ),
        )),
        LdapTls::Always | LdapTls::StartTls if skip_verify => Some(ConfigIssue::new(
            "ldap_auth.insecure_tls_skip_verify",
            format!(
                "the TLS connection to the LDAP server {addr} verifies no certificate, so anyone \
                 in the path can impersonate it and read the passwords; set `ca_certificate` \
                 instead"
            ),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_warns_unless_local_or_verified() {
        let warns = |url: &str| postgres_transport("sql_auth.url", url).is_some();
        for url in [
            "postgres://ra:pw@db.example.com/reg",
            "postgres://ra:pw@db.example.com:5432/reg?sslmode=disable",
            "postgres://ra:pw@10.0.0.5/reg?sslmode=allow",
            "postgresql://ra@db/reg?sslmode=prefer",
            "postgres://ra@db/reg?application_name=x&sslmode=require",
            "postgres://ra@[2001:db8::1]:5432/reg?sslmode=require",
            "postgres://ra@localhost/reg?host=db.example.com",
        ] {
            assert!(warns(url), "{url}");
        }
        for url in [
            "postgres://ra:pw@db.example.com/reg?sslmode=verify-full",
            "postgres://ra:pw@db.example.com/reg?sslmode=verify-ca",
            "postgres://ra:pw@db.example.com/reg?sslrootcert=/ca.pem&sslmode=VERIFY-FULL",
            "postgres://ra:pw@127.0.0.1:5432/reg",
            "postgres://ra:pw@127.0.0.53/reg?sslmode=disable",
            "postgres://ra:pw@localhost/reg",
            "postgres://ra@[::1]:5432/reg",
            "postgres://ra@/reg",
            "postgres://ra@%2Fvar%2Frun%2Fpostgresql/reg",
            "postgres://ra@/reg?host=/var/run/postgresql",
        ] {
            assert!(!warns(url), "{url}");
        }
        let w = postgres_transport("store.url", "postgres://ra:s3cret@db/reg").unwrap();
        assert_eq!(w.path, "store.url");
        assert!(w.message.contains("sslmode=verify-full"), "{}", w.message);
        assert!(!w.message.contains("s3cret"), "{}", w.message);
        let w = postgres_transport("acl_sql.url", "postgres://db/reg?sslmode=require").unwrap();
        assert!(w.message.contains("`sslmode=require`"), "{}", w.message);
    }

    #[test]
    fn redis_warns_off_this_host() {
        let warns = |url: &str| redis_transport("store.url", url).is_some();
        assert!(warns("redis://redis.example.com:6379/0"));
        assert!(warns("redis://:pw@10.1.2.3/0"));
        assert!(!warns("redis://127.0.0.1:6379/0"));
        assert!(!warns("redis://localhost/0"));
        assert!(!warns("redis://[::1]:6379"));
        assert!(!warns(
            "redis+sentinel://:pw@127.0.0.1:26379,[::1]:26380/m/0"
        ));
        assert!(warns("redis+sentinel://127.0.0.1:26379,sentinel-2:26379/m"));
        assert!(warns("redis+cluster://n1.example.com:7000,127.0.0.1:7001"));
        assert!(!warns("redis+cluster://localhost:7000,127.0.0.1:7001"));
        let w = redis_transport("store.url", "redis://:hunter2@cache:6379/0").unwrap();
        assert!(!w.message.contains("hunter2"), "{}", w.message);
        assert!(w.message.contains("`rediss://…`"), "{}", w.message);
        let w = redis_transport("store.url", "redis+sentinel://s.example:26379/m").unwrap();
        assert!(w.message.contains("`rediss+sentinel://…`"), "{}", w.message);
        // TLS: no warning, wherever the server is.
        assert!(!warns("rediss://:pw@redis.example.com:6380/0"));
        assert!(!warns("rediss+sentinel://s1.example:26379,s2.example/m"));
        assert!(!warns("rediss+cluster://n1.example.com:7000"));
    }

    #[test]
    fn ldap_warns_for_plaintext_off_this_host_and_unverified_tls() {
        let warns = |addr: &str, tls, skip| ldap_transport(addr, tls, skip).is_some();
        assert!(warns("ldap.example.com:389", LdapTls::None, false));
        assert!(warns("10.0.0.7:3268", LdapTls::None, false));
        assert!(warns("ldap.example.com:636", LdapTls::Always, true));
        assert!(warns("ldap.example.com:389", LdapTls::StartTls, true));
        assert!(!warns("ldap.example.com:389", LdapTls::StartTls, false));
        assert!(!warns("ldap.example.com:636", LdapTls::Always, false));
        assert!(!warns("127.0.0.1:389", LdapTls::None, false));
        assert!(!warns("localhost:389", LdapTls::None, false));
        assert!(!warns("[::1]:389", LdapTls::None, false));
        assert_eq!(
            ldap_transport("ldap:389", LdapTls::None, false)
                .unwrap()
                .path,
            "ldap_auth.tls"
        );
    }

    #[test]
    fn one_cost_is_fine_and_mixed_costs_name_each_cost_and_user() {
        assert!(mixed_bcrypt_costs([]).is_none());
        assert!(mixed_bcrypt_costs([("alice", 10), ("bob", 10), ("robot$ci", 10)]).is_none());
        let w = mixed_bcrypt_costs([("carol", 12), ("alice", 5), ("robot$ci", 5)]).unwrap();
        assert_eq!(w.path, "users");
        assert!(
            w.message
                .contains("cost 5: `alice`, `robot$ci`; cost 12: `carol`"),
            "{}",
            w.message
        );
        assert!(w.message.contains("--cost 12"), "{}", w.message);
        let many: Vec<(String, u32)> = (0..25).map(|i| (format!("u{i:02}"), 4)).collect();
        let w = mixed_bcrypt_costs(many.iter().map(|(n, c)| (n.as_str(), *c)).chain([("z", 6)]))
            .unwrap();
        assert!(w.message.contains("and 15 more"), "{}", w.message);
    }
}
