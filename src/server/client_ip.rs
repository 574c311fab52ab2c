//! The client's IP address behind proxies.
//!
//! Forwarding headers are believed only from trusted peers (`server.trusted_proxies`): walking
//! `X-Forwarded-For` (or `Forwarded: for=`) from the right, the first address that is not a
//! trusted proxy is the client. A spoofed header from an untrusted peer is ignored. docker_auth's
//! `real_ip_pos` picks a fixed position instead (from the end). A unix-socket peer is local and
//! trusted. When nothing usable is found, the peer address is the answer.

use std::net::IpAddr;

use axum::http::HeaderMap;

use crate::config::ClientIpSettings;

/// The client IP for a request from `peer` (`None` for a unix socket).
pub fn client_ip(
    settings: &ClientIpSettings,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
) -> Option<IpAddr> {
    let trusted = |ip: &IpAddr| {
        let ip = canonical(*ip);
        settings.trusted_proxies.iter().any(|n| n.contains(&ip))
    };
    if let Some(p) = peer
        && !trusted(&p)
    {
        return Some(canonical(p));
    }
    let header = settings.header.as_deref().unwrap_or("x-forwarded-for");
    let Some(hops) = forwarded_hops(headers, header) else {
        return peer.map(canonical);
    };
    if let Some(pos) = settings.position {
        let index = usize::try_from(pos.unsigned_abs())
            .ok()
            .and_then(|back| hops.len().checked_sub(back));
        return index
            .and_then(|i| hops.get(i).copied())
            .or(peer)
            .map(canonical);
    }
    hops.iter()
        .rev()
        .find(|ip| !trusted(ip))
        .or_else(|| hops.first())
        .copied()
        .or(peer)
        .map(canonical)
}

/// The addresses in the forwarding header(s), oldest first; `None` when absent or malformed (a
/// malformed header from a trusted proxy is not guessed at).
fn forwarded_hops(headers: &HeaderMap, header: &str) -> Option<Vec<IpAddr>> {
    let mut hops = Vec::new();
    let mut any = false;
    for value in headers.get_all(header) {
        any = true;
        let value = value.to_str().ok()?;
        for part in value.split(',') {
            let part = part.trim();
            let addr = if header == "forwarded" {
                forwarded_for(part)?
            } else {
                part
            };
            hops.push(parse_addr(addr)?);
        }
    }
    (any && !hops.is_empty()).then_some(hops)
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

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn untrusted_peers_cannot_spoof() {
        let s = settings(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(&s, ip("203.0.113.9"), &xff(&["1.2.3.4"])),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(&settings(&[]), ip("10.1.1.1"), &xff(&["1.2.3.4"])),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn right_most_untrusted_address_wins() {
        let s = settings(&["10.0.0.0/8", "192.0.2.0/24"]);
        // client 198.51.100.7 spoofs 1.1.1.1; the ingress (10.0.0.5) appended what it saw.
        let h = xff(&["1.1.1.1, 198.51.100.7", "192.0.2.10"]);
        assert_eq!(client_ip(&s, ip("10.0.0.5"), &h), ip("198.51.100.7"));
        // Everything trusted: the left-most entry.
        assert_eq!(
            client_ip(&s, ip("10.0.0.5"), &xff(&["10.2.2.2, 192.0.2.1"])),
            ip("10.2.2.2")
        );
        // No header: the peer. Malformed header: the peer.
        assert_eq!(
            client_ip(&s, ip("10.0.0.5"), &HeaderMap::new()),
            ip("10.0.0.5")
        );
        assert_eq!(
            client_ip(&s, ip("10.0.0.5"), &xff(&["nonsense"])),
            ip("10.0.0.5")
        );
        // Ports and brackets are stripped.
        assert_eq!(
            client_ip(&s, ip("10.0.0.5"), &xff(&["[2001:db8::1]:443"])),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn forwarded_header_and_unix_peers() {
        let s = ClientIpSettings {
            header: Some("forwarded".into()),
            ..settings(&["10.0.0.0/8"])
        };
        let mut h = HeaderMap::new();
        h.insert(
            "forwarded",
            HeaderValue::from_static("for=198.51.100.7;proto=https, for=\"[2001:db8::2]:80\""),
        );
        assert_eq!(client_ip(&s, ip("10.0.0.1"), &h), ip("2001:db8::2"));
        // A unix-socket peer is trusted.
        assert_eq!(client_ip(&s, None, &h), ip("2001:db8::2"));
        assert_eq!(client_ip(&s, None, &HeaderMap::new()), None);
    }

    #[test]
    fn docker_auth_position_and_mapped_addresses() {
        let s = ClientIpSettings {
            position: Some(-2),
            ..settings(&["0.0.0.0/0"])
        };
        let h = xff(&["1.1.1.1, 2.2.2.2, 3.3.3.3"]);
        assert_eq!(client_ip(&s, ip("10.0.0.1"), &h), ip("2.2.2.2"));
        // Out of range (docker_auth panicked): the peer.
        let far = ClientIpSettings {
            position: Some(-9),
            ..s
        };
        assert_eq!(client_ip(&far, ip("10.0.0.1"), &h), ip("10.0.0.1"));
        assert_eq!(
            client_ip(&settings(&[]), ip("::ffff:192.0.2.1"), &HeaderMap::new()),
            ip("192.0.2.1")
        );
    }
}
