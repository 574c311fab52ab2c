//! The doctor's checks as pure functions: what was observed in, a [`Finding`] out.
//!
//! The challenge parser is hand-written: the one `WWW-Authenticate` grammar the registries emit
//! (`Bearer realm="…",service="…"[,scope="…"][,error="…"]`, RFC 6750 §3) is a few lines, and
//! the HTTP crates in the tree offer no parser for it.

use std::collections::BTreeSet;

use super::{Entry, Finding, short};

/// One challenge of a `WWW-Authenticate` header: the scheme and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `Bearer`, `Basic`, … as sent.
    pub scheme: String,
    /// `name=value` pairs in order, names lower-cased, quoted values unescaped.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of a parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the scheme is `Bearer` (case-insensitive).
    pub fn is_bearer(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("bearer")
    }
}

/// Parses one `WWW-Authenticate` value holding one challenge; `None` when it is empty.
/// Malformed parameters end the list (what came before is kept).
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, mut rest) = match value.find(' ') {
        Some(i) => (&value[..i], value[i + 1..].trim_start()),
        None => (value, ""),
    };
    if scheme.is_empty() {
        return None;
    }
    let mut params = Vec::new();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let name = rest[..eq].trim().to_ascii_lowercase();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            out.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => out.push(c),
                }
            }
            let Some(end) = end else { break };
            value = out;
            rest = &quoted[end + 1..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_owned();
            rest = &rest[end..];
        }
        params.push((name, value));
        rest = rest.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge {
        scheme: scheme.to_owned(),
        params,
    })
}

/// The realm and service of the registry's Bearer challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerChallenge {
    /// Where clients ask for tokens.
    pub realm: String,
    /// The `service` clients send (the token's `aud`).
    pub service: String,
}

/// Check 1a: the registry's answer to an anonymous `GET /v2/`.
pub fn registry_challenge(
    url: &str,
    status: u16,
    challenges: &[Challenge],
) -> (Finding, Option<BearerChallenge>) {
    const CHECK: &str = "registry";
    let configure = "give the registry an `auth.token` section (realm, service, issuer, \
                     rootcertbundle) as in docs/src/registry/index.md";
    if status == 200 {
        return (
            Finding::fail(
                CHECK,
                format!(
                    "GET {url} answered 200 without a token: the registry does not ask for tokens"
                ),
                configure,
                Entry::RegistryChallenge,
            ),
            None,
        );
    }
    if status != 401 {
        return (
            Finding::fail(
                CHECK,
                format!("GET {url} answered HTTP {status}, not 401 with a Bearer challenge"),
                "check that --registry is the registry's base URL (the one clients use, \
                 without /v2/)",
                Entry::RegistryChallenge,
            ),
            None,
        );
    }
    let Some(bearer) = challenges.iter().find(|c| c.is_bearer()) else {
        let schemes: Vec<&str> = challenges.iter().map(|c| c.scheme.as_str()).collect();
        return (
            Finding::fail(
                CHECK,
                format!(
                    "GET {url} answered 401 without a Bearer challenge (schemes: {})",
                    if schemes.is_empty() {
                        "none".to_owned()
                    } else {
                        schemes.join(", ")
                    }
                ),
                format!("the registry uses another authentication; {configure}"),
                Entry::RegistryChallenge,
            ),
            None,
        );
    };
    match (bearer.param("realm"), bearer.param("service")) {
        (Some(realm), Some(service)) if !realm.is_empty() => (
            Finding::ok(
                CHECK,
                format!(
                    "GET {url} answered 401 with Bearer realm=\"{realm}\", service=\"{service}\""
                ),
            ),
            Some(BearerChallenge {
                realm: realm.to_owned(),
                service: service.to_owned(),
            }),
        ),
        _ => (
            Finding::fail(
                CHECK,
                format!("the Bearer challenge of {url} lacks realm or service"),
                "set both `auth.token.realm` and `auth.token.service` in the registry's config",
                Entry::RegistryChallenge,
            ),
            None,
        ),
    }
}

/// The token-endpoint paths of this server, longest first.
const TOKEN_PATHS: [&str; 3] = ["/auth/token/", "/auth/token", "/auth"];

/// The path prefix a realm path implies (`/ra/auth` → `/ra`, `/auth/token` → ``), or `None`
/// when the path is not one of our token endpoints.
pub fn realm_prefix(path: &str) -> Option<&str> {
    TOKEN_PATHS.iter().find_map(|p| path.strip_suffix(p))
}

/// Check 2b: the realm's path against `server.path_prefix`. `origin` is `scheme://host:port`
/// of the realm; `confirmed` whether the realm was found to be this server (a proxy may map
/// paths); `found_at` the URL where this server was found instead, when it was looked for.
pub fn path_prefix(
    origin: &str,
    realm_path: &str,
    prefix: &str,
    confirmed: bool,
    found_at: Option<&str>,
) -> Finding {
    const CHECK: &str = "path-prefix";
    let want = format!("{origin}{prefix}/auth");
    match realm_prefix(realm_path) {
        Some(p) if p == prefix => Finding::ok(
            CHECK,
            format!("the realm's path {realm_path} matches server.path_prefix \"{prefix}\""),
        ),
        _ if confirmed => Finding::ok(
            CHECK,
            format!(
                "the realm's path {realm_path} differs from server.path_prefix \"{prefix}\" \
                 but reaches this server (a proxy maps the path)"
            ),
        ),
        Some(p) => {
            let seen = match found_at {
                Some(at) => format!(
                    "the realm's path {realm_path} means path_prefix \"{p}\", but \
                     server.path_prefix is \"{prefix}\"; this server answers at {at}"
                ),
                None => format!(
                    "the realm's path {realm_path} means path_prefix \"{p}\", but \
                     server.path_prefix is \"{prefix}\""
                ),
            };
            Finding::fail(
                CHECK,
                seen,
                format!(
                    "set the registry's auth.token.realm to {want}, or server.path_prefix to \
                     \"{p}\" (restart registry-auth)"
                ),
                Entry::PathPrefix,
            )
        }
        None => Finding::fail(
            CHECK,
            format!("the realm's path {realm_path} is not a token endpoint of registry-auth"),
            format!("set the registry's auth.token.realm to {want}"),
            Entry::PathPrefix,
        ),
    }
}

/// Check 2a: the challenge's `service` against `token.allowed_services`.
pub fn service(service: &str, allowed: Option<&[String]>) -> Finding {
    const CHECK: &str = "service";
    match allowed {
        None => Finding::ok(
            CHECK,
            format!("service \"{service}\": token.allowed_services is not set, any is served"),
        ),
        Some(list) if list.iter().any(|s| s == service) => Finding::ok(
            CHECK,
            format!("service \"{service}\" is in token.allowed_services"),
        ),
        Some(list) => Finding::fail(
            CHECK,
            format!(
                "the registry's service \"{service}\" is not in token.allowed_services {list:?}: \
                 token requests for it are refused"
            ),
            format!(
                "add \"{service}\" to token.allowed_services, or set the registry's \
                 auth.token.service to one of {list:?}"
            ),
            Entry::Service,
        ),
    }
}

/// What was learnt about the realm.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RealmSeen {
    /// The libtrust key IDs of the certificates at `<realm-base>/rootcertbundle.pem`, when it
    /// answered 200 with certificates.
    pub bundle_kids: Option<BTreeSet<String>>,
    /// The `kid`s of `<realm-base>/.well-known/jwks.json`, when it answered with a key set.
    pub jwks_kids: Option<BTreeSet<String>>,
    /// How the bundle and JWKS requests answered when they did not (`HTTP 404`, an error).
    pub documents_status: String,
    /// The `iss` of a token the realm returned.
    pub token_issuer: Option<String>,
    /// How the token request answered when it gave no token (`HTTP 401`, …).
    pub token_status: Option<String>,
    /// Why nothing at the realm's host answered (connection refused, DNS, timeout), when
    /// nothing did.
    pub unreachable: Option<String>,
}

/// What this configuration publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ours<'a> {
    /// The `token.issuer`.
    pub issuer: &'a str,
    /// libtrust key IDs of every published key.
    pub libtrust_kids: BTreeSet<String>,
    /// The `kid`s our JWKS carries (header mode's kid of every published key).
    pub jwks_kids: BTreeSet<String>,
}

/// Check 1b: whether the realm is this server (same keys, same issuer). Returns the finding
/// and whether the identity was confirmed.
pub fn realm_identity(realm: &str, ours: &Ours<'_>, seen: &RealmSeen) -> (Finding, bool) {
    const CHECK: &str = "realm";
    let keys_match = match (&seen.bundle_kids, &seen.jwks_kids) {
        (Some(kids), _) => Some(kids == &ours.libtrust_kids),
        (None, Some(kids)) => Some(kids == &ours.jwks_kids),
        (None, None) => None,
    };
    if let Some(why) = &seen.unreachable {
        return (
            Finding::fail(
                CHECK,
                format!("the realm {realm} cannot be reached from here: {why}"),
                "the realm must be registry-auth's /auth as clients reach it (a public host \
                 name, not a container or cluster-internal one), and registry-auth must be \
                 running there",
                Entry::Realm,
            ),
            false,
        );
    }
    let issuer_match = seen.token_issuer.as_deref().map(|i| i == ours.issuer);
    let ours_first = ours
        .libtrust_kids
        .iter()
        .next()
        .map_or(String::new(), |k| short(k));
    match (keys_match, issuer_match) {
        (Some(false), _) => {
            let theirs = seen
                .bundle_kids
                .as_ref()
                .or(seen.jwks_kids.as_ref())
                .map(|s| s.iter().map(|k| short(k)).collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            (
                Finding::fail(
                    CHECK,
                    format!(
                        "the realm {realm} publishes other keys (kid {theirs}) than this config \
                         (kid {ours_first}…): it is another token server or another \
                         configuration"
                    ),
                    "point the registry's auth.token.realm at this server (the URL clients \
                     reach it by), or run doctor with the config that realm serves",
                    Entry::Realm,
                ),
                false,
            )
        }
        (_, Some(false)) => (
            Finding::fail(
                CHECK,
                format!(
                    "the realm {realm} signs tokens with iss \"{}\", this config with \"{}\": it \
                     runs another configuration",
                    seen.token_issuer.as_deref().unwrap_or_default(),
                    ours.issuer
                ),
                "point the registry's auth.token.realm at the server that runs this config, or \
                 run doctor with that server's config",
                Entry::Realm,
            ),
            false,
        ),
        (Some(true), issuer) => (
            Finding::ok(
                CHECK,
                format!(
                    "the realm {realm} is this server: same published keys{}",
                    match issuer {
                        Some(_) => format!(", tokens with iss \"{}\"", ours.issuer),
                        None => format!(
                            " (its token for the doctor: {}; iss not compared)",
                            seen.token_status.as_deref().unwrap_or("none")
                        ),
                    }
                ),
            ),
            true,
        ),
        (None, Some(true)) => (
            Finding::warn(
                CHECK,
                format!(
                    "the realm {realm} returns tokens with our iss but publishes no keys \
                     ({}); it may be an older registry-auth or another server",
                    seen.documents_status
                ),
                "make sure the realm is this server (its /rootcertbundle.pem should answer)",
                Entry::Realm,
            ),
            false,
        ),
        (None, None) => (
            Finding::fail(
                CHECK,
                format!(
                    "the realm {realm} is not this server: no published keys ({}), no token \
                     ({})",
                    seen.documents_status,
                    seen.token_status.as_deref().unwrap_or("not asked")
                ),
                "point the registry's auth.token.realm at registry-auth's token endpoint \
                 (`<scheme>://<host><server.path_prefix>/auth`, as clients reach it)",
                Entry::Realm,
            ),
            false,
        ),
    }
}

/// Check 1b when the realm's host is this server but the realm's path misses it: this server
/// was found at `found_at` instead (the path-prefix check gives the fix).
pub fn realm_at_other_path(realm: &str, found_at: &str) -> Finding {
    Finding::fail(
        "realm",
        format!(
            "nothing of registry-auth answers at the realm {realm}; this server is at {found_at}"
        ),
        "fix the path (see the path-prefix check)",
        Entry::PathPrefix,
    )
}

/// The leeway distribution (2.8 and v3) allows on `nbf`/`exp`, in seconds.
pub const REGISTRY_LEEWAY_SECS: i64 = 60;
/// Clock differences up to this many seconds pass without a warning (`Date` has whole
/// seconds, and the request takes time).
pub const CLOCK_TOLERANCE_SECS: i64 = 5;

/// Check 4: `skew` = registry clock − ours (seconds), from its `Date` header; `not_before`
/// is how far our `nbf` lies before `iat`; `lifetime` is the token lifetime.
pub fn clock(skew: i64, not_before: i64, lifetime: i64) -> Finding {
    const CHECK: &str = "clock";
    let fix = "synchronise both clocks (NTP, chrony or systemd-timesyncd on both hosts)";
    let behind_limit = -(not_before + REGISTRY_LEEWAY_SECS);
    let ahead_limit = lifetime + REGISTRY_LEEWAY_SECS;
    if skew.abs() <= CLOCK_TOLERANCE_SECS {
        Finding::ok(
            CHECK,
            format!("the registry's clock is within {CLOCK_TOLERANCE_SECS} s of ours ({skew:+} s)"),
        )
    } else if skew < behind_limit {
        Finding::fail(
            CHECK,
            format!(
                "the registry's clock is {} s behind ours: every token is \"not yet valid\" for \
                 it (nbf = iat − {not_before} s, {REGISTRY_LEEWAY_SECS} s leeway)",
                -skew
            ),
            fix,
            Entry::Clock,
        )
    } else if skew > ahead_limit {
        Finding::fail(
            CHECK,
            format!(
                "the registry's clock is {skew} s ahead of ours: every token has expired when \
                 it arrives (lifetime {lifetime} s + {REGISTRY_LEEWAY_SECS} s leeway)"
            ),
            fix,
            Entry::Clock,
        )
    } else {
        Finding::warn(
            CHECK,
            format!(
                "the registry's clock differs from ours by {skew:+} s: within distribution's \
                 {REGISTRY_LEEWAY_SECS} s leeway (zot has none), tokens live {} s less",
                skew.max(0)
            ),
            fix,
            Entry::Clock,
        )
    }
}

/// A TLS failure, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsProblem {
    /// The certificate chains to no CA we trust.
    UnknownCa,
    /// The certificate is not valid for the host name in the URL.
    NameMismatch,
    /// Expired or not yet valid.
    Validity,
    /// The server does not speak TLS on that port.
    NotTls,
}

/// Classifies the text of a connection error (the whole source chain) as a TLS problem.
pub fn classify_tls(error_chain: &str) -> Option<TlsProblem> {
    let e = error_chain;
    if e.contains("UnknownIssuer") || e.contains("unknown issuer") || e.contains("UnknownCA") {
        Some(TlsProblem::UnknownCa)
    } else if e.contains("NotValidForName") || e.contains("not valid for name") {
        Some(TlsProblem::NameMismatch)
    } else if e.contains("Expired") || e.contains("NotValidYet") || e.contains("expired") {
        Some(TlsProblem::Validity)
    } else if e.contains("InvalidContentType")
        || e.contains("corrupt message")
        || e.contains("invalid content type")
    {
        Some(TlsProblem::NotTls)
    } else {
        None
    }
}

/// Check 6: a TLS problem reaching `target` (`registry`, `realm`) at `url`.
pub fn tls(target: &str, url: &str, problem: &TlsProblem, detail: &str, ca_file: bool) -> Finding {
    const CHECK: &str = "tls";
    let (seen, fix) = match problem {
        TlsProblem::UnknownCa => (
            format!("the {target} {url} presents a certificate from a CA this host does not trust"),
            if ca_file {
                "the --ca-file does not hold the CA that issued it: give the right CA certificate \
                 (clients need it too: /etc/docker/certs.d/<host>/ca.crt or the system store)"
                    .to_owned()
            } else {
                "give its CA certificate with --ca-file (clients need it too: \
                 /etc/docker/certs.d/<host>/ca.crt or the system store)"
                    .to_owned()
            },
        ),
        TlsProblem::NameMismatch => (
            format!("the {target}'s certificate is not valid for the host name in {url}"),
            "use a URL whose host name is in the certificate's subjectAltName, or reissue the \
             certificate with that name"
                .to_owned(),
        ),
        TlsProblem::Validity => (
            format!("the {target}'s certificate at {url} has expired or is not valid yet"),
            "renew the certificate (and check the host's clock)".to_owned(),
        ),
        TlsProblem::NotTls => (
            format!("the {target} at {url} does not speak TLS on that port"),
            "use http:// for it, or the port where it serves HTTPS".to_owned(),
        ),
    };
    Finding::fail(CHECK, format!("{seen} ({detail})"), fix, Entry::Tls)
}

#[cfg(test)]
#[path = "checks_tests.rs"]
mod tests;
