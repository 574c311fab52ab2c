//! Checks of the request itself that every route gets, before its handler runs: the `Host`
//! header (RFC 9112 §3.2) and the body size limit. Refusals go through [`ApiError`] like every
//! other error.

use std::net::Ipv6Addr;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, Uri, Version, header};
use http_body_util::Limited;

use super::error::ApiError;

/// What is wrong with the request's `Host`, if anything.
pub fn host_problem(version: Version, uri: &Uri, headers: &HeaderMap) -> Option<&'static str> {
    let mut hosts = headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Some("more than one Host header; send exactly one"),
        (Some(host), None) => {
            (!valid_host(host.as_bytes())).then_some("the Host header is not a valid host[:port]")
        }
        (None, _) => {
            let required = match version {
                Version::HTTP_09 | Version::HTTP_10 => false,
                Version::HTTP_11 => true,
                _ => uri.authority().is_none(),
            };
            required.then_some("the Host header is missing (HTTP/1.1 requires it)")
        }
    }
}

/// `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2): a bracketed IPv6 (or IPvFuture)
/// literal, or a reg-name (which covers IPv4 addresses), then an optional port of at most
/// 65535. An empty value is valid (a target URI without an authority).
fn valid_host(value: &[u8]) -> bool {
    let (host, port) = if let Some(rest) = value.strip_prefix(b"[") {
        let Some(end) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        if !ip_literal(&rest[..end]) {
            return false;
        }
        match &rest[end + 1..] {
            [] => (&[][..], None),
            [b':', port @ ..] => (&[][..], Some(port)),
            _ => return false,
        }
    } else {
        match value.iter().position(|&b| b == b':') {
            Some(i) => (&value[..i], Some(&value[i + 1..])),
            None => (value, None),
        }
    };
    reg_name(host) && port.is_none_or(valid_port)
}

/// `*( unreserved / pct-encoded / sub-delims )`.
fn reg_name(host: &[u8]) -> bool {
    let mut bytes = host.iter();
    while let Some(&b) = bytes.next() {
        let ok = match b {
            b'%' => matches!(
                (bytes.next(), bytes.next()),
                (Some(h), Some(l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit()
            ),
            _ => unreserved(b) || sub_delim(b),
        };
        if !ok {
            return false;
        }
    }
    true
}

/// `IPv6address / IPvFuture` (between the brackets).
fn ip_literal(literal: &[u8]) -> bool {
    if let [b'v' | b'V', rest @ ..] = literal {
        // IPvFuture: "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
        let Some(dot) = rest.iter().position(|&b| b == b'.') else {
            return false;
        };
        let (version, tail) = (&rest[..dot], &rest[dot + 1..]);
        return !version.is_empty()
            && version.iter().all(u8::is_ascii_hexdigit)
            && !tail.is_empty()
            && tail
                .iter()
                .all(|&b| unreserved(b) || sub_delim(b) || b == b':');
    }
    std::str::from_utf8(literal).is_ok_and(|s| s.parse::<Ipv6Addr>().is_ok())
}

/// Empty (the default port), or digits up to 65535.
fn valid_port(port: &[u8]) -> bool {
    port.is_empty()
        || (port.iter().all(u8::is_ascii_digit)
            && std::str::from_utf8(port).is_ok_and(|p| p.parse::<u16>().is_ok()))
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// The request after the checks every route gets: a 400 for a bad `Host` ([`host_problem`]), a
/// 413 without reading the body when `Content-Length` is over `limit`; other bodies are limited
/// to `limit` bytes (reading more fails with [`http_body_util::LengthLimitError`], which
/// handlers answer with a 413 too).
pub fn check(req: Request, limit: usize) -> Result<Request, ApiError> {
    if let Some(problem) = host_problem(req.version(), req.uri(), req.headers()) {
        return Err(ApiError::BadRequest(problem.to_owned()));
    }
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| usize::try_from(n).map_or(true, |n| n > limit)) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    Ok(req.map(|body| Body::new(Limited::new(body, limit))))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn problem(version: Version, uri: &str, hosts: &[&[u8]]) -> Option<&'static str> {
        let mut headers = HeaderMap::new();
        for h in hosts {
            headers.append(header::HOST, HeaderValue::from_bytes(h).unwrap());
        }
        host_problem(version, &uri.parse().unwrap(), &headers)
    }

    #[test]
    fn valid_hosts_are_accepted() {
        for host in [
            &b"registry.example.com"[..],
            b"registry.example.com:443",
            b"127.0.0.1:5001",
            b"localhost",
            b"[::1]",
            b"[::1]:5001",
            b"[2001:db8::ffff:1.2.3.4]:80",
            b"[v1.fe80::a+en1]",
            b"xn--bcher-kva.example",
            b"my_host~1",
            b"a%2Db",
            b"host:",
            b"host:65535",
            b"",
        ] {
            assert_eq!(
                problem(Version::HTTP_11, "/auth", &[host]),
                None,
                "{}",
                String::from_utf8_lossy(host)
            );
        }
    }

    #[test]
    fn invalid_hosts_are_refused() {
        for host in [
            &b"[::1"[..],
            b"::1",
            b"[::1]x",
            b"[::1]:x",
            b"[not-ip]",
            b"[v.x]",
            b"[v1.]",
            b"a b",
            b"a/b",
            b"a@b",
            b"user@host:80",
            b"host:80:90",
            b"host:65536",
            b"host:123456",
            b"host:-1",
            b"a%zzb",
            b"a%2",
            b"\xc3\xa9.example",
            b"a\"b",
        ] {
            assert_eq!(
                problem(Version::HTTP_11, "/auth", &[host]),
                Some("the Host header is not a valid host[:port]"),
                "{}",
                String::from_utf8_lossy(host)
            );
        }
    }

    #[test]
    fn host_is_required_once_in_http_1_1() {
        assert!(problem(Version::HTTP_11, "/auth", &[]).is_some_and(|p| p.contains("missing")));
        // Absolute-form does not excuse a missing Host in HTTP/1.1 (RFC 9112 §3.2).
        assert!(problem(Version::HTTP_11, "http://a/auth", &[]).is_some());
        assert!(
            problem(Version::HTTP_11, "/auth", &[b"a", b"a"])
                .is_some_and(|p| p.contains("more than one"))
        );
        assert!(problem(Version::HTTP_10, "/auth", &[b"a", b"b"]).is_some());
        assert!(problem(Version::HTTP_10, "/auth", &[b"[::1"]).is_some());
        // HTTP/1.0 may omit it; HTTP/2 has :authority.
        assert_eq!(problem(Version::HTTP_10, "/auth", &[]), None);
        assert_eq!(problem(Version::HTTP_2, "https://a/auth", &[]), None);
        assert!(problem(Version::HTTP_2, "/auth", &[]).is_some());
    }
}
