//! The client's IP address behind proxies.
//!
//! Forwarding headers are believed only from trusted peers (`server.trusted_proxies`; a
//! unix-socket peer is local and trusted). Walking the addresses of a header from the right,
//! the first one that is not a trusted proxy is the client; a spoofed header from an untrusted
//! peer is ignored. docker_auth's `real_ip_pos` picks a fixed position instead (from the end).
//!
//! Which headers: `server.real_ip_header` when set (then a trusted peer must send it), otherwise
//! both `X-Forwarded-For` and `Forwarded`: each one present must name the same client (a proxy
//! that writes one passes the other through from the client, so a disagreement cannot be
//! settled). A trusted peer that sends none of them is the client itself.
//!
//! A forwarded address that cannot be read (an empty or malformed header, a `Forwarded`
//! element without a usable `for=`, a `real_ip_pos` beyond the header) is an
//! [`Unreadable`] error, never a fall-back to the proxy's own address: that address may be
//! one an ACL `ip` rule grants, and it is shared by every client behind the proxy.

use std::net::IpAddr;

use axum::http::HeaderMap;

use crate::config::ClientIpSettings;

/// The headers read when `server.real_ip_header` is not set.
const DEFAULT_HEADERS: [&str; 2] = ["x-forwarded-for", "forwarded"];

/// Longest excerpt of a bad header value quoted in an error.
const MAX_QUOTED: usize = 40;

/// A trusted peer forwarded a client address that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot read the client address forwarded by a trusted proxy: the {header} header {reason}"
)]
pub struct Unreadable {
    /// The header, as usually spelled (`X-Forwarded-For`, `Forwarded`, `X-Real-IP`), or as
    /// configured in `server.real_ip_header` (lower-cased) for any other.
    pub header: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The client IP for a request from `peer` (`None` for a unix socket): `Ok(None)` only for a
/// unix-socket peer that forwards nothing.
pub fn client_ip(
    settings: &ClientIpSettings,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
) -> Result<Option<IpAddr>, Unreadable> {
    if let Some(p) = peer
        && !is_trusted(settings, p)
    {
        return Ok(Some(canonical(p)));
    }
    let mut found: Option<(String, IpAddr)> = None;
    let names: &[&str] = match settings.header.as_deref() {
        Some(h) => &[h][..],
        None => &DEFAULT_HEADERS[..],
    };
    for name in names {
        let display = display_name(name);
        let Some(hops) = forwarded_hops(headers, name, &display)? else {
            continue;
        };
        let ip = pick(settings, &hops, &display)?;
        match found {
            Some((first, other)) if other != ip => {
                return Err(Unreadable {
                    header: display,
                    reason: format!(
                        "names the client {ip} but {first} names {other}; set \
                         `server.real_ip_header` to the header your proxy writes"
                    ),
                });
            }
            _ => found = Some((display, ip)),
        }
    }
    match (found, settings.header.as_deref()) {
        (Some((_, ip)), _) => Ok(Some(ip)),
        (None, Some(h)) => Err(Unreadable {
            header: display_name(h),
            reason: "is missing; `server.real_ip_header` is set, so every request from a \
                     trusted proxy must carry it"
                .to_owned(),
        }),
        (None, None) => Ok(peer.map(canonical)),
    }
}

/// Whether `peer` sent a forwarding header that is ignored because it is not a trusted proxy
/// (every client behind such a proxy shares its address).
pub fn ignored_forwarding(
    settings: &ClientIpSettings,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
) -> bool {
    peer.is_some_and(|p| !is_trusted(settings, p))
        && (DEFAULT_HEADERS.iter().any(|h| headers.contains_key(*h))
            || settings
                .header
                .as_deref()
                .is_some_and(|h| headers.contains_key(h)))
}

fn is_trusted(settings: &ClientIpSettings, ip: IpAddr) -> bool {
    let ip = canonical(ip);
    settings.trusted_proxies.iter().any(|n| n.contains(&ip))
}

/// The client among `hops` (oldest first, never empty): at `real_ip_pos`, or the right-most
/// address that is not a trusted proxy (the left-most when all are).
fn pick(settings: &ClientIpSettings, hops: &[IpAddr], header: &str) -> Result<IpAddr, Unreadable> {
    let chosen = match settings.position {
        Some(pos) => {
            let back = usize::try_from(pos.unsigned_abs()).unwrap_or(usize::MAX);
            hops.len().checked_sub(back).and_then(|i| hops.get(i))
        }
        None => hops
            .iter()
            .rev()
            .find(|ip| !is_trusted(settings, **ip))
            .or_else(|| hops.first()),
    };
    chosen.map(|ip| canonical(*ip)).ok_or_else(|| Unreadable {
        header: header.to_owned(),
        reason: format!(
            "holds {} address(es), too few for `server.real_ip_pos: {}`",
            hops.len(),
            settings.position.unwrap_or_default()
        ),
    })
}

/// The addresses in the forwarding header(s) `name`, oldest first: `None` when absent, an
/// error when any part of it cannot be read (a malformed header is not guessed at).
fn forwarded_hops(
    headers: &HeaderMap,
    name: &str,
    display: &str,
) -> Result<Option<Vec<IpAddr>>, Unreadable> {
    let unreadable = |reason: String| Unreadable {
        header: display.to_owned(),
        reason,
    };
    let mut hops = Vec::new();
    let mut any = false;
    for value in headers.get_all(name) {
        any = true;
        let value = value
            .to_str()
            .map_err(|_| unreadable("contains bytes that are not visible ASCII".to_owned()))?;
        if value.trim().is_empty() {
            return Err(unreadable("is empty".to_owned()));
        }
        for part in value.split(',') {
            let part = part.trim();
            if part.is_empty() {
                return Err(unreadable(format!(
                    "has an empty entry in {}",
                    quote(value)
                )));
            }
            let ip = if name == "forwarded" {
                let Some(addr) = forwarded_for(part) else {
                    return Err(unreadable(format!(
                        "has an element without a `for=` parameter: {}",
                        quote(part)
                    )));
                };
                parse_addr(addr).ok_or_else(|| {
                    unreadable(format!(
                        "has `for={}`, which is not an IP address (obfuscated identifiers \
                         such as `unknown` or `_hidden` cannot be used)",
                        quote(addr)
                    ))
                })?
            } else {
                parse_addr(part).ok_or_else(|| {
                    unreadable(format!("has {}, which is not an IP address", quote(part)))
                })?
            };
            hops.push(ip);
        }
    }
    Ok(any.then_some(hops))
}

/// The `for=` parameter of one `Forwarded` element (RFC 7239).
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("for")
            .then(|| v.trim().trim_matches('"'))
    })
}

/// `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]`, `[::1]:5678`.
fn parse_addr(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    s.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok())
}

/// The usual spelling of a (lower-case) forwarding header, for messages; any other header
/// (`server.real_ip_header: CF-Connecting-IP`) as configured, lower-cased.
fn display_name(lower: &str) -> String {
    match lower {
        "forwarded" => "Forwarded",
        "x-real-ip" => "X-Real-IP",
        "x-forwarded-for" => "X-Forwarded-For",
        other => other,
    }
    .to_owned()
}

/// A bounded, quoted excerpt of a header value (visible ASCII already) for a message.
fn quote(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED) {
        Some((i, _)) => format!("{:?}…", &s[..i]),
        None => format!("{s:?}"),
    }
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn settings(trusted: &[&str]) -> ClientIpSettings {
        ClientIpSettings {
            trusted_proxies: trusted.iter().map(|t| t.parse().unwrap()).collect(),
            header: None,
            position: None,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn xff(values: &[&str]) -> HeaderMap {
        headers(
            &values
                .iter()
                .map(|v| ("x-forwarded-for", *v))
                .collect::<Vec<_>>(),
        )
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn ok(r: Result<Option<IpAddr>, Unreadable>) -> Option<IpAddr> {
        r.unwrap_or_else(|e| panic!("{e}"))
    }

    /// The error's message, which must name `header`.
    fn err(r: Result<Option<IpAddr>, Unreadable>, header: &str) -> String {
        match r {
            Err(e) => {
                assert_eq!(e.header, header, "{e}");
                let m = e.to_string();
                assert!(m.contains(header), "{m}");
                m
            }
            Ok(ip) => panic!("expected an error about {header}, got {ip:?}"),
        }
    }

    #[test]
    fn untrusted_peers_cannot_spoof() {
        let s = settings(&["10.0.0.0/8"]);
        assert_eq!(
            ok(client_ip(&s, ip("203.0.113.9"), &xff(&["1.2.3.4"]))),
            ip("203.0.113.9")
        );
        assert_eq!(
            ok(client_ip(
                &settings(&[]),
                ip("10.1.1.1"),
                &xff(&["1.2.3.4"])
            )),
            ip("10.1.1.1")
        );
        // Nor can they cause an error: their headers are not read at all.
        assert_eq!(
            ok(client_ip(&s, ip("203.0.113.9"), &xff(&["garbage", ""]))),
            ip("203.0.113.9")
        );
        assert!(ignored_forwarding(
            &s,
            ip("203.0.113.9"),
            &xff(&["1.2.3.4"])
        ));
        let fwd = headers(&[("forwarded", "for=1.2.3.4")]);
        assert!(ignored_forwarding(&s, ip("203.0.113.9"), &fwd));
        assert!(!ignored_forwarding(
            &s,
            ip("203.0.113.9"),
            &HeaderMap::new()
        ));
        assert!(!ignored_forwarding(&s, ip("10.0.0.1"), &fwd));
        assert!(!ignored_forwarding(&s, None, &fwd));
    }

    #[test]
    fn right_most_untrusted_address_wins() {
        let s = settings(&["10.0.0.0/8", "192.0.2.0/24"]);
        // client 198.51.100.7 spoofs 1.1.1.1; the ingress (10.0.0.5) appended what it saw.
        let h = xff(&["1.1.1.1, 198.51.100.7", "192.0.2.10"]);
        assert_eq!(ok(client_ip(&s, ip("10.0.0.5"), &h)), ip("198.51.100.7"));
        // Everything trusted: the left-most entry.
        assert_eq!(
            ok(client_ip(
                &s,
                ip("10.0.0.5"),
                &xff(&["10.2.2.2, 192.0.2.1"])
            )),
            ip("10.2.2.2")
        );
        // No header at all: the trusted peer is the client.
        assert_eq!(
            ok(client_ip(&s, ip("10.0.0.5"), &HeaderMap::new())),
            ip("10.0.0.5")
        );
        // Ports and brackets are stripped.
        assert_eq!(
            ok(client_ip(&s, ip("10.0.0.5"), &xff(&["[2001:db8::1]:443"]))),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn unreadable_headers_from_a_trusted_peer_are_errors_not_the_peer() {
        let s = settings(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.5");
        for (values, needle) in [
            (
                &["nonsense"][..],
                "\"nonsense\", which is not an IP address",
            ),
            (&[""], "is empty"),
            (&["   "], "is empty"),
            (&["198.51.100.7, "], "empty entry"),
            (&["198.51.100.7", "garbage"], "\"garbage\""),
            (&["198.51.100.7,,1.2.3.4"], "empty entry"),
        ] {
            let m = err(client_ip(&s, peer, &xff(values)), "X-Forwarded-For");
            assert!(m.contains(needle), "{values:?}: {m}");
        }
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"198.51.100.\xff").unwrap(),
        );
        err(client_ip(&s, peer, &h), "X-Forwarded-For");
        // A long value is quoted only in part.
        let long = "x".repeat(5000);
        let m = err(client_ip(&s, peer, &xff(&[&long])), "X-Forwarded-For");
        assert!(m.len() < 300, "{m}");
        for value in [
            "for=nonsense",
            "proto=https",
            "for=unknown",
            "for=_hidden",
            "for=",
        ] {
            let h = headers(&[("forwarded", value)]);
            let m = err(client_ip(&s, peer, &h), "Forwarded");
            assert!(m.contains("for="), "{value}: {m}");
        }
        // A unix-socket peer is trusted: the same errors.
        err(client_ip(&s, None, &xff(&["nonsense"])), "X-Forwarded-For");
    }

    #[test]
    fn both_default_headers_must_agree() {
        let s = settings(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.5");
        let h = headers(&[("forwarded", "for=198.51.100.7;proto=https")]);
        assert_eq!(ok(client_ip(&s, peer, &h)), ip("198.51.100.7"));
        let h = headers(&[
            ("forwarded", "for=198.51.100.7"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(ok(client_ip(&s, peer, &h)), ip("198.51.100.7"));
        // The proxy writes one; the client sent the other: which is true cannot be told.
        let h = headers(&[
            ("forwarded", "for=198.51.100.7"),
            ("x-forwarded-for", "203.0.113.1"),
        ]);
        let m = err(client_ip(&s, peer, &h), "Forwarded");
        assert!(m.contains("real_ip_header"), "{m}");
        // A configured header is the only one read, and a trusted peer must send it.
        let only = ClientIpSettings {
            header: Some("x-forwarded-for".into()),
            ..s.clone()
        };
        assert_eq!(ok(client_ip(&only, peer, &h)), ip("203.0.113.1"));
        let m = err(client_ip(&only, peer, &HeaderMap::new()), "X-Forwarded-For");
        assert!(m.contains("missing"), "{m}");
        let real = ClientIpSettings {
            header: Some("x-real-ip".into()),
            ..s
        };
        let h = headers(&[("x-real-ip", "198.51.100.9")]);
        assert_eq!(ok(client_ip(&real, peer, &h)), ip("198.51.100.9"));
        err(client_ip(&real, peer, &xff(&["198.51.100.9"])), "X-Real-IP");
        // ... but not from an untrusted peer.
        assert_eq!(
            ok(client_ip(&real, ip("203.0.113.9"), &HeaderMap::new())),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn forwarded_header_and_unix_peers() {
        let s = ClientIpSettings {
            header: Some("forwarded".into()),
            ..settings(&["10.0.0.0/8"])
        };
        let h = headers(&[(
            "forwarded",
            "for=198.51.100.7;proto=https, for=\"[2001:db8::2]:80\"",
        )]);
        assert_eq!(ok(client_ip(&s, ip("10.0.0.1"), &h)), ip("2001:db8::2"));
        // A unix-socket peer is trusted.
        assert_eq!(ok(client_ip(&s, None, &h)), ip("2001:db8::2"));
        let default = settings(&["10.0.0.0/8"]);
        assert_eq!(ok(client_ip(&default, None, &HeaderMap::new())), None);
    }

    #[test]
    fn docker_auth_position_and_mapped_addresses() {
        let s = ClientIpSettings {
            position: Some(-2),
            ..settings(&["0.0.0.0/0"])
        };
        let h = xff(&["1.1.1.1, 2.2.2.2, 3.3.3.3"]);
        assert_eq!(ok(client_ip(&s, ip("10.0.0.1"), &h)), ip("2.2.2.2"));
        // Out of range (docker_auth panicked): an error, not the peer.
        let far = ClientIpSettings {
            position: Some(-9),
            ..s
        };
        let m = err(client_ip(&far, ip("10.0.0.1"), &h), "X-Forwarded-For");
        assert!(m.contains("real_ip_pos: -9"), "{m}");
        assert_eq!(
            ok(client_ip(
                &settings(&[]),
                ip("::ffff:192.0.2.1"),
                &HeaderMap::new()
            )),
            ip("192.0.2.1")
        );
    }
}
