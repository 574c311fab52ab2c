//! Validating the `server` section: listen addresses, path prefix, TLS, client IPs behind
//! proxies and request limits.
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde_yaml_ng::Value;

use super::Loader;
use crate::config::file::{LimitsSpec, NetSpec, ServerSpec};
use crate::config::{ClientIpSettings, DEFAULT_ADDR, Limits, ServerConfig, TlsSettings};

/// docker_auth `server:` keys we do not implement: the feature, why, and the replacement.
const UNSUPPORTED_SERVER_KEYS: &[(&str, &str)] = &[
    (
        "tls_curve_preferences",
        "docker_auth's TLS curve list is not configurable here: registry-auth uses rustls' safe \
         defaults (X25519, P-256, P-384) and offers nothing weaker to choose; remove this key",
    ),
    (
        "tls_cipher_suites",
        "docker_auth's TLS cipher list is not configurable here: registry-auth uses rustls' safe \
         defaults (AEAD suites only) and offers nothing weaker to choose; remove this key",
    ),
    (
        "letsencrypt",
        "docker_auth's Let's Encrypt (autocert) is not supported (in docker_auth it served plain \
         HTTP, and certificates are better renewed outside the server); terminate TLS at your \
         ingress or load balancer (e.g. with cert-manager), or set `server.certificate`/`key` \
         to a certificate renewed by certbot",
    ),
];

impl Loader {
    pub(super) fn server_section(&mut self, value: Value) -> Option<ServerSpec> {
        let value = match value {
            Value::Mapping(mut m) => {
                for (key, hint) in UNSUPPORTED_SERVER_KEYS {
                    if m.remove(*key).is_some() {
                        self.issue(format!("server.{key}"), *hint);
                    }
                }
                Value::Mapping(m)
            }
            Value::Null => return Some(ServerSpec::default()),
            other => other,
        };
        self.de("server", value)
    }

    pub(super) fn validate_server(&mut self, spec: ServerSpec) -> Option<ServerConfig> {
        let unix = spec.net == Some(NetSpec::Unix);
        let addr = match spec.addr.as_deref() {
            None if unix => {
                self.issue(
                    "server.addr",
                    "with `net: unix`, set `addr` to the socket path, e.g. \
                     `/run/registry-auth/auth.sock`",
                );
                None
            }
            None => Some(DEFAULT_ADDR.to_owned()),
            Some(a) if unix => Some(
                self.resolve("server.addr", Path::new(a))
                    .display()
                    .to_string(),
            ),
            Some(a) => match normalize_addr(a) {
                Some(a) => Some(a),
                None => {
                    self.issue(
                        "server.addr",
                        format!(
                            "`{a}` is not a listen address; use `host:port`, e.g. \
                             `0.0.0.0:5001`, `127.0.0.1:5001`, `[::]:5001` or `:5001`"
                        ),
                    );
                    None
                }
            },
        };
        let path_prefix = match spec.path_prefix.as_deref() {
            None | Some("") | Some("/") => Some(String::new()),
            Some(p) => {
                let ok = p.starts_with('/')
                    && !p.contains("//")
                    && p.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~')
                    });
                if ok {
                    Some(p.trim_end_matches('/').to_owned())
                } else {
                    self.issue(
                        "server.path_prefix",
                        format!(
                            "`{p}` is not a usable prefix; it must start with `/` and contain \
                             only letters, digits and `/-_.~`, e.g. `/registry-auth`"
                        ),
                    );
                    None
                }
            }
        };
        let tls = self.validate_tls(
            spec.certificate,
            spec.key,
            spec.tls_min_version.as_deref(),
            spec.hsts,
        );
        let metrics_addr = match spec.metrics_addr.as_deref() {
            None => Some(None),
            Some(a) => match normalize_addr(a) {
                Some(a) => Some(Some(a)),
                None => {
                    self.issue(
                        "server.metrics_addr",
                        format!("`{a}` is not a listen address; use `host:port`, e.g. `:9090`"),
                    );
                    None
                }
            },
        };
        let limits = self.validate_limits(spec.limits.unwrap_or_default());
        let client_ip =
            self.validate_client_ip(spec.trusted_proxies, spec.real_ip_header, spec.real_ip_pos);
        Some(ServerConfig {
            addr: addr?,
            path_prefix: path_prefix?,
            limits: limits?,
            client_ip: client_ip?,
            unix,
            tls: tls?,
            metrics_addr: metrics_addr?,
        })
    }

    fn validate_tls(
        &mut self,
        certificate: Option<PathBuf>,
        key: Option<PathBuf>,
        min_version: Option<&str>,
        hsts: bool,
    ) -> Option<Option<TlsSettings>> {
        // docker_auth took Go's names (`TLS12`) or the protocol number (771 = 0x0303 = TLS 1.2).
        let tls13_only = match min_version {
            None | Some("1.2" | "TLS12" | "tls12" | "771" | "0x0303") => false,
            Some("1.3" | "TLS13" | "tls13" | "772" | "0x0304") => true,
            Some(v @ ("SSL30" | "TLS10" | "TLS11" | "1.0" | "1.1" | "768" | "769" | "770")) => {
                self.issue(
                    "server.tls_min_version",
                    format!(
                        "{v:?} is refused: registry-auth (rustls) speaks only TLS 1.2 and 1.3, \
                         the versions without known weaknesses; use `1.2` (default) or `1.3`"
                    ),
                );
                return None;
            }
            Some(v) => {
                self.issue(
                    "server.tls_min_version",
                    format!("{v:?} is not supported; use `1.2` (default) or `1.3`"),
                );
                return None;
            }
        };
        match (certificate, key) {
            (None, None) => {
                if hsts || min_version.is_some() {
                    self.issue(
                        "server.hsts",
                        "`hsts` and `tls_min_version` need TLS: set `server.certificate` and \
                         `server.key`, or set HSTS at your ingress",
                    );
                    return None;
                }
                Some(None)
            }
            (Some(c), Some(k)) => {
                let (certificate, key) = (
                    self.resolve("server.certificate", &c),
                    self.resolve("server.key", &k),
                );
                self.private("server.key", &key);
                let mut ok = true;
                for (name, p) in [("certificate", &certificate), ("key", &key)] {
                    if !p.exists() {
                        self.issue(
                            format!("server.{name}"),
                            format!("file not found: {}", p.display()),
                        );
                        ok = false;
                    }
                }
                if ok && let Err(e) = crate::tls::certified_key(&certificate, &key) {
                    self.issue("server.certificate", e.to_string());
                    ok = false;
                }
                ok.then_some(Some(TlsSettings {
                    certificate,
                    key,
                    tls13_only,
                    hsts,
                }))
            }
            (c, _) => {
                let missing = if c.is_none() { "certificate" } else { "key" };
                self.issue(
                    format!("server.{missing}"),
                    "missing; TLS needs both `server.certificate` and `server.key` (or neither, \
                     behind a TLS-terminating ingress)",
                );
                None
            }
        }
    }

    fn validate_client_ip(
        &mut self,
        trusted: Option<Vec<String>>,
        header: Option<String>,
        position: Option<i64>,
    ) -> Option<ClientIpSettings> {
        let mut ok = true;
        let mut nets = Vec::new();
        for (i, entry) in trusted.iter().flatten().enumerate() {
            let parsed = entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from));
            match parsed {
                Ok(n) => nets.push(n.trunc()),
                Err(_) => {
                    self.issue(
                        format!("server.trusted_proxies[{i}]"),
                        format!(
                            "{entry:?} is not an IP address or CIDR; write e.g. `10.0.0.0/8` or \
                             `192.0.2.7`"
                        ),
                    );
                    ok = false;
                }
            }
        }
        let header = match header {
            None => None,
            // Any header, as in docker_auth (`CF-Connecting-IP`, `True-Client-IP`,
            // `X-Original-Forwarded-For`, …): a list of addresses like X-Forwarded-For, except
            // `Forwarded`, which is read by its `for=` parameters.
            Some(h) => {
                let lower = h.trim().to_ascii_lowercase();
                if !lower.is_empty() && axum::http::HeaderName::from_bytes(lower.as_bytes()).is_ok()
                {
                    Some(lower)
                } else {
                    self.issue(
                        "server.real_ip_header",
                        format!(
                            "{h:?} is not an HTTP header name; write the header your proxy \
                             sets, e.g. X-Forwarded-For, X-Real-IP or CF-Connecting-IP"
                        ),
                    );
                    ok = false;
                    None
                }
            }
        };
        // 0 is docker_auth's default: the same as leaving the key out.
        let position = position.filter(|p| *p != 0);
        if position.is_some_and(|p| p > 0) {
            // Positive positions count from the client's end, which the client controls.
            self.issue(
                "server.real_ip_pos",
                "a position counted from the start of the header can be spoofed by the client; \
                 use a negative position (-1 = the address the nearest proxy saw), or better, \
                 list your proxies in `server.trusted_proxies`",
            );
            ok = false;
        }
        if trusted.is_none() && (header.is_some() || position.is_some()) {
            // docker_auth believed the header from any peer: keep that for migrated configs.
            nets = vec![IpNet::V4(Default::default()), IpNet::V6(Default::default())];
        }
        ok.then_some(ClientIpSettings {
            trusted_proxies: nets,
            header,
            position,
        })
    }

    fn validate_limits(&mut self, spec: LimitsSpec) -> Option<Limits> {
        let d = Limits::default();
        let mut ok = true;
        let max_header_bytes = match spec.max_header_bytes {
            Some(n) if n < 8192 => {
                self.issue(
                    "server.limits.max_header_bytes",
                    format!("{n} is too small; use at least 8192 (clients send long scopes)"),
                );
                ok = false;
                n
            }
            Some(n) => n,
            None => d.max_header_bytes,
        };
        let max_body_bytes = match spec.max_body_bytes {
            Some(0) => {
                self.issue(
                    "server.limits.max_body_bytes",
                    "0 would refuse every OAuth2 form; use at least 1024",
                );
                ok = false;
                0
            }
            Some(n) => n,
            None => d.max_body_bytes,
        };
        let header_read_timeout = self.positive_duration(
            "server.limits.header_read_timeout",
            spec.header_read_timeout,
            d.header_read_timeout,
            "10s",
        );
        let request_timeout = self.positive_duration(
            "server.limits.request_timeout",
            spec.request_timeout,
            d.request_timeout,
            "30s",
        );
        Some(Limits {
            max_header_bytes,
            max_body_bytes,
            header_read_timeout: header_read_timeout?,
            request_timeout: request_timeout?,
        })
        .filter(|_| ok)
    }
}

fn normalize_addr(addr: &str) -> Option<String> {
    if let Some(port) = addr.strip_prefix(':') {
        return port.parse::<u16>().ok().map(|p| format!("0.0.0.0:{p}"));
    }
    if addr.parse::<SocketAddr>().is_ok() {
        return Some(addr.to_owned());
    }
    let (host, port) = addr.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    host_ok.then(|| addr.to_owned())
}
