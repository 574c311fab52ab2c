//! Check 5: the registry's own reasons for refusing a token, read from its log.
//!
//! distribution logs a refused token at info level with its package logger (so without the
//! request's fields). 2.8 writes the bare reason: `token signed by untrusted key with ID: "…"`,
//! `unable to verify certificate chain: x509: certificate signed by unknown authority …`,
//! `token from untrusted issuer: "…"`, `token intended for another audience: "…"`, `token not to
//! be used after/before …`, `unable to verify token signature: …`. v3 prefixes key problems with
//! `failed to verify token: ` (`token signed by untrusted key with ID: "…"`, `…x509: certificate
//! signed by unknown authority`), prints the audience as a
//! list (`[svc]`) and reports a bad signature as `error checking authorization: go-jose/…` with
//! the request's fields. (Wordings read in the v3.1.1 source and seen in the logs of both
//! registries in the end-to-end tests.) Lines are picked by time (the doctor's own requests, in
//! the registry's clock) or by the doctor's User-Agent marker, then classified into [`Reason`]s
//! with their fixes.

use std::collections::BTreeSet;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Entry, Finding, short};
use crate::token::HeaderMode;

/// Why the registry refused a token, as its log says.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// `token signed by untrusted key with ID: "KID"`; `v3` when worded by distribution v3.
    UntrustedKey {
        /// The `kid` of the token.
        kid: String,
        /// Logged by distribution v3 (`failed to verify token:` prefix).
        v3: bool,
    },
    /// `untrusted JWK with no certificate chain`.
    UntrustedJwk,
    /// The `x5c` chain leads to no certificate of the bundle.
    UnknownAuthority,
    /// The `x5c` certificate has expired or is not valid yet.
    CertificateValidity,
    /// `token from untrusted issuer: "ISS"`.
    Issuer(String),
    /// `token intended for another audience: "AUD"`.
    Audience(String),
    /// `token not to be used after …`.
    Expired,
    /// `token not to be used before …`.
    NotYetValid,
    /// The `alg` is refused (the text as logged).
    Algorithm(String),
    /// The signature does not verify with the key the registry holds under that `kid`.
    Signature(String),
}

/// Classifies one log line, `None` when it says nothing about a token.
pub fn classify(line: &str) -> Option<Reason> {
    let v3 = line.contains("failed to verify token");
    if let Some(kid) = after_quoted(line, "untrusted key with ID: ") {
        return Some(Reason::UntrustedKey { kid, v3 });
    }
    if line.contains("untrusted JWK") {
        return Some(Reason::UntrustedJwk);
    }
    if line.contains("signed by unknown authority") {
        return Some(Reason::UnknownAuthority);
    }
    if line.contains("certificate has expired or is not yet valid") {
        return Some(Reason::CertificateValidity);
    }
    if let Some(iss) = after_quoted(line, "token from untrusted issuer: ") {
        return Some(Reason::Issuer(iss));
    }
    if let Some(rest) = after(line, "token intended for another audience: ") {
        // 2.8 quotes the string (`"svc"`), v3 prints the list (`[svc]`).
        let aud = rest
            .trim_start_matches(['\\', '"', '['])
            .split(['"', ']', '\\'])
            .next()
            .unwrap_or_default();
        return Some(Reason::Audience(unescape(aud)));
    }
    if line.contains("token not to be used after") {
        return Some(Reason::Expired);
    }
    if line.contains("token not to be used before") {
        return Some(Reason::NotYetValid);
    }
    for marker in [
        "does not support signature algorithm",
        "unsupported signing algorithm",
        "unexpected signature algorithm",
        "unsupported signature algorithm",
    ] {
        if line.contains(marker) {
            return Some(Reason::Algorithm(message(line)));
        }
    }
    if line.contains("unable to verify token signature")
        || line.contains("error in cryptographic primitive")
        || (line.contains("error checking authorization") && line.contains("go-jose"))
    {
        return Some(Reason::Signature(message(line)));
    }
    None
}

/// The text after `marker`, up to the end of the logfmt value.
fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|i| &line[i + marker.len()..])
}

/// The quoted string after `marker` (logrus escapes the inner quotes of a quoted `msg`).
fn after_quoted(line: &str, marker: &str) -> Option<String> {
    let rest = after(line, marker)?;
    let rest = rest.trim_start_matches('\\').trim_start_matches('"');
    let end = rest.find(['"', '\\']).unwrap_or(rest.len());
    Some(unescape(&rest[..end]))
}

fn unescape(s: &str) -> String {
    s.replace("\\\"", "\"")
}

/// The `msg` of a logfmt line (or the line), shortened.
fn message(line: &str) -> String {
    let m = after(line, "msg=\"")
        .map(|r| r.split("\" ").next().unwrap_or(r).trim_end_matches('"'))
        .or_else(|| after(line, "\"msg\":\"").and_then(|r| r.split('"').next()))
        .unwrap_or(line);
    let m: String = m.chars().take(200).collect();
    m
}

/// The time of a logrus line (`time="RFC 3339"` in text, `"time":"RFC 3339"` in JSON).
pub fn line_time(line: &str) -> Option<OffsetDateTime> {
    let value = after(line, "time=\"").or_else(|| after(line, "\"time\":\""))?;
    let end = value.find('"')?;
    OffsetDateTime::parse(&value[..end], &Rfc3339).ok()
}

/// Which lines count: those within `window` (unix seconds, registry clock, inclusive) or
/// carrying `marker` (the doctor's User-Agent). Without a window every line counts.
pub fn select<'a>(text: &'a str, window: Option<(i64, i64)>, marker: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| match window {
            None => true,
            Some((from, to)) => {
                l.contains(marker)
                    || line_time(l).is_some_and(|t| {
                        let s = t.unix_timestamp();
                        s >= from && s <= to
                    })
            }
        })
        .collect()
}

/// What the fixes need to know about this configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogContext<'a> {
    /// `token.issuer`.
    pub issuer: &'a str,
    /// The configured signing header.
    pub mode: HeaderMode,
    /// Every `kid` our keys may carry (libtrust and thumbprint of each published key).
    pub our_kids: BTreeSet<String>,
    /// The service of the registry's challenge.
    pub service: Option<&'a str>,
    /// Where our certificates are published (`<realm-base>/rootcertbundle.pem`), when known.
    pub bundle_url: Option<String>,
    /// The registry accepted the same token with another signing header (so it does hold our
    /// key, and an untrusted `kid` is about the header, not the key).
    pub other_header_accepted: bool,
}

/// The findings for the reasons found in `lines`: one per troubleshooting entry, worded after
/// the first such reason in log order (the doctor presents the configured header's token first;
/// the others are its retries with the other headers, counted). `refused` says whether the
/// doctor saw a token refused (then no reason at all is worth a warning).
pub fn findings(lines: &[&str], refused: bool, ctx: &LogContext<'_>) -> Vec<Finding> {
    const CHECK: &str = "registry-log";
    let mut reasons: Vec<Reason> = Vec::new();
    for r in lines.iter().filter_map(|l| classify(l)) {
        if !reasons.contains(&r) {
            reasons.push(r);
        }
    }
    if reasons.is_empty() {
        let seen = format!(
            "no token complaint among the {} registry log line(s) of the doctor's requests",
            lines.len()
        );
        return vec![if refused {
            Finding::warn(
                CHECK,
                seen,
                "give the log of this registry (log.level: info or debug) covering this run, \
                 e.g. `docker logs -f --since 1m REGISTRY 2>&1 | registry-auth doctor … \
                 --registry-log -`",
                Entry::RegistryLog,
            )
        } else {
            Finding::ok(CHECK, seen)
        }];
    }
    let mut out: Vec<(Finding, usize)> = Vec::new();
    for r in &reasons {
        let f = finding(r, ctx);
        match out.iter_mut().find(|(o, _)| o.entry == f.entry) {
            Some((_, more)) => *more += 1,
            None => out.push((f, 0)),
        }
    }
    out.into_iter()
        .map(|(mut f, more)| {
            if more > 0 {
                f.seen.push_str(&format!(
                    " (and {more} more line(s) of this kind, for the doctor's retries with the \
                     other signing headers)"
                ));
            }
            f
        })
        .collect()
}

/// The finding for one reason.
pub fn finding(reason: &Reason, ctx: &LogContext<'_>) -> Finding {
    const CHECK: &str = "registry-log";
    let bundle = ctx
        .bundle_url
        .clone()
        .unwrap_or_else(|| "registry-auth's /rootcertbundle.pem".to_owned());
    match reason {
        Reason::UntrustedKey { kid, v3 } if !ctx.our_kids.contains(kid) => Finding::fail(
            CHECK,
            format!(
                "\"token signed by untrusted key with ID: {}\": that kid is not one of this \
                 config's keys",
                short(kid)
            ),
            "another token server signs for this registry: check the realm, or run doctor with \
             that server's config",
            Entry::Realm,
        )
        .with_v3_note(*v3),
        Reason::UntrustedKey { kid, v3: true }
            if ctx.mode == HeaderMode::KidLibtrust && ctx.other_header_accepted =>
        {
            Finding::fail(
                CHECK,
                format!(
                    "registry v3: \"token signed by untrusted key with ID: {}\" (a libtrust kid, \
                     which v3 does not recognise)",
                    short(kid)
                ),
                "set token.signing_header: x5c (or kid-thumbprint) in the registry-auth config, \
                 or give the registry `registry-auth jwks --config FILE` as auth.token.jwks and \
                 restart it",
                Entry::UntrustedKey,
            )
        }
        Reason::UntrustedKey { kid, v3 } => Finding::fail(
            CHECK,
            format!(
                "{}\"token signed by untrusted key with ID: {}\": the registry does not hold our \
                 signing key",
                if *v3 { "registry v3: " } else { "" },
                short(kid)
            ),
            format!(
                "put the certificates of {bundle} into the registry's auth.token.rootcertbundle{} \
                 and restart the registry",
                if *v3 {
                    " (or `registry-auth jwks` into auth.token.jwks)"
                } else {
                    ""
                }
            ),
            Entry::UntrustedKey,
        ),
        Reason::UntrustedJwk => Finding::fail(
            CHECK,
            "\"untrusted JWK with no certificate chain\"",
            format!("put the certificates of {bundle} into the registry's rootcertbundle"),
            Entry::UntrustedKey,
        ),
        Reason::UnknownAuthority => Finding::fail(
            CHECK,
            "\"certificate signed by unknown authority\": the x5c chain of our token leads to \
             no certificate of the registry's rootcertbundle",
            format!(
                "put the certificates of {bundle} (our certificate or its CA) into the \
                 registry's auth.token.rootcertbundle and restart it; a v3 registry with only \
                 auth.token.jwks cannot check x5c: use signing_header: kid-thumbprint there"
            ),
            Entry::UntrustedKey,
        ),
        Reason::CertificateValidity => Finding::fail(
            CHECK,
            "\"certificate has expired or is not yet valid\": the signing certificate our \
             tokens carry in x5c is outside its validity",
            "renew token.certificate (`registry-auth gen-keys`, or a new leaf from your CA)",
            Entry::UntrustedKey,
        ),
        Reason::Issuer(seen) => Finding::fail(
            CHECK,
            format!(
                "\"token from untrusted issuer: {seen}\": the registry's auth.token.issuer is \
                 not \"{seen}\""
            ),
            format!(
                "set the registry's auth.token.issuer to \"{}\" (or token.issuer to the \
                 registry's value); they must match byte for byte",
                ctx.issuer
            ),
            Entry::Issuer,
        ),
        Reason::Audience(seen) => Finding::fail(
            CHECK,
            format!(
                "\"token intended for another audience: {seen}\": the registry's \
                 auth.token.service is not \"{seen}\""
            ),
            format!(
                "make clients and the registry agree on the service{}: set the registry's \
                 auth.token.service to the one its challenge announces",
                ctx.service
                    .map(|s| format!(" (its challenge says \"{s}\")"))
                    .unwrap_or_default()
            ),
            Entry::Service,
        ),
        Reason::Expired => Finding::fail(
            CHECK,
            "\"token not to be used after …\": tokens have expired by the registry's clock",
            "synchronise the clocks (NTP), and check token.expiration",
            Entry::Clock,
        ),
        Reason::NotYetValid => Finding::fail(
            CHECK,
            "\"token not to be used before …\": tokens are not yet valid by the registry's clock",
            "synchronise the clocks (NTP)",
            Entry::Clock,
        ),
        Reason::Algorithm(text) => Finding::fail(
            CHECK,
            format!("\"{text}\": the registry refuses our signature algorithm"),
            "sign with ES256 or RS256 (`registry-auth gen-keys --type ec-p256`), or add the \
             algorithm to v3's auth.token.signingalgorithms",
            Entry::Algorithm,
        ),
        Reason::Signature(text) => Finding::fail(
            CHECK,
            format!(
                "\"{text}\": the signature does not verify with the key the registry holds under \
                 our kid"
            ),
            format!(
                "the registry's rootcertbundle/jwks holds another key under that kid (a stale \
                 jwks file?): replace it with {bundle} or `registry-auth jwks` and restart it"
            ),
            Entry::UntrustedKey,
        ),
    }
}

impl Finding {
    fn with_v3_note(mut self, v3: bool) -> Finding {
        if v3 {
            self.seen.insert_str(0, "registry v3: ");
        }
        self
    }
}

#[cfg(test)]
#[path = "registry_log_tests.rs"]
mod tests;
