//! Check 3: a token signed here, presented to the registry with the configured signing header
//! and, when refused, with each other one; and 3b, the `--scope` repository with that token.

use super::checks::Challenge;
use super::{Entry, Finding, Status, short};
use crate::token::HeaderMode;

/// How the registry answered a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    /// 200 (or 404 for a repository that does not exist yet): the token passed.
    Accepted,
    /// Refused: the status and the challenge's `error` (`invalid_token`,
    /// `insufficient_scope`), if any.
    Refused {
        /// HTTP status.
        status: u16,
        /// The challenge's `error` parameter.
        error: Option<String>,
    },
    /// No answer (connection or TLS error), described.
    Failed(String),
}

impl Presented {
    /// From a status and the challenges of the answer.
    pub fn from_answer(status: u16, challenges: &[Challenge]) -> Presented {
        if status == 200 || status == 404 {
            return Presented::Accepted;
        }
        Presented::Refused {
            status,
            error: challenges
                .iter()
                .find(|c| c.is_bearer())
                .and_then(|c| c.param("error"))
                .map(str::to_owned),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Accepted => "accepted".to_owned(),
            Self::Refused { status, error } => match error {
                Some(e) => format!("HTTP {status} error=\"{e}\""),
                None => format!("HTTP {status}"),
            },
            Self::Failed(e) => format!("no answer: {e}"),
        }
    }
}

/// The modes in the order the doctor prefers them as a fix (`x5c` works with 2.8 and v3).
pub const MODE_PREFERENCE: [HeaderMode; 3] = [
    HeaderMode::X5c,
    HeaderMode::KidThumbprint,
    HeaderMode::KidLibtrust,
];

/// What else is known when judging the trust check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustContext<'a> {
    /// The configured `token.issuer`.
    pub issuer: &'a str,
    /// The realm base URL (where `/rootcertbundle.pem` is), when known.
    pub realm_base: Option<&'a str>,
    /// The service check failed.
    pub service_failed: bool,
    /// The clock check failed.
    pub clock_failed: bool,
    /// A registry log is read (its finding names the reason).
    pub has_log: bool,
}

/// Check 3: the token signed here with the configured header (`first`) and, when refused,
/// with each other header (`retries`).
pub fn trust(
    configured: HeaderMode,
    kid: &str,
    first: &Presented,
    retries: &[(HeaderMode, Presented)],
    ctx: &TrustContext<'_>,
) -> Finding {
    const CHECK: &str = "trust";
    if *first == Presented::Accepted {
        return Finding::ok(
            CHECK,
            format!(
                "the registry accepted a token signed here (signing_header {}, kid {})",
                configured.as_str(),
                short(kid)
            ),
        );
    }
    if let Presented::Failed(e) = first {
        return Finding::fail(
            CHECK,
            format!("could not present a token to the registry: {e}"),
            "make the registry reachable from here (see the registry and tls checks)",
            Entry::RegistryChallenge,
        );
    }
    let accepted: Vec<HeaderMode> = MODE_PREFERENCE
        .into_iter()
        .filter(|m| {
            retries
                .iter()
                .any(|(mode, p)| mode == m && *p == Presented::Accepted)
        })
        .collect();
    let tried: Vec<&str> = retries.iter().map(|(m, _)| m.as_str()).collect();
    if let Some(best) = accepted.first() {
        let names: Vec<&str> = accepted.iter().map(|m| m.as_str()).collect();
        let mut fix = format!(
            "set token.signing_header: {} in the registry-auth config (restart it)",
            best.as_str()
        );
        if configured == HeaderMode::KidLibtrust && accepted.contains(&HeaderMode::KidThumbprint) {
            fix.push_str(
                "; this is distribution v3, which does not know libtrust kids: alternatively \
                 give it `registry-auth jwks --config FILE` as auth.token.jwks",
            );
        }
        return Finding::fail(
            CHECK,
            format!(
                "the registry refused our {} token ({}) but accepted the same token with {}: it \
                 trusts the key but not the way the header names it",
                configured.as_str(),
                first.describe(),
                names.join(", ")
            ),
            fix,
            Entry::UntrustedKey,
        );
    }
    let seen = format!(
        "the registry refused a token signed here with signing_header {} ({}) and with {}",
        configured.as_str(),
        first.describe(),
        if tried.is_empty() {
            "no other header".to_owned()
        } else {
            tried.join(", ")
        }
    );
    if ctx.service_failed || ctx.clock_failed {
        return Finding::fail(
            CHECK,
            seen,
            format!(
                "fix the {} check above first",
                if ctx.service_failed {
                    "service"
                } else {
                    "clock"
                }
            ),
            if ctx.service_failed {
                Entry::Service
            } else {
                Entry::Clock
            },
        );
    }
    let bundle = ctx.realm_base.map_or_else(
        || "`registry-auth jwks`/the signing certificate".to_owned(),
        |b| format!("{b}/rootcertbundle.pem"),
    );
    let why = if ctx.has_log {
        "the registry-log check below says which"
    } else {
        "give --registry-log to learn which"
    };
    Finding::fail(
        CHECK,
        seen,
        format!(
            "either the registry trusts none of our keys (put the certificates of {bundle} into \
             its auth.token.rootcertbundle, or `registry-auth jwks` into v3's auth.token.jwks, \
             and restart it) or its auth.token.issuer is not \"{}\"; {why}",
            ctx.issuer
        ),
        Entry::UntrustedKey,
    )
}

/// A trust failure that left two causes open gets the cause the registry log names: its
/// entry, and a fix that points at the log's line.
pub fn refine_trust(trust: &mut Finding, log: &[Finding]) {
    if trust.check != "trust" || trust.status != Status::Fail {
        return;
    }
    if let Some(cause) = log.iter().find(|f| f.status == Status::Fail) {
        trust.entry = cause.entry;
        trust.fix = Some(format!(
            "the registry log names the cause: {}",
            cause.fix.as_deref().unwrap_or("see the registry-log line")
        ));
    }
}

/// Check 3b: the repository's tags list with the token (`--scope`). `granted` is what the ACL
/// granted on it.
pub fn scope(scope: &str, subject: &str, answer: &Presented, granted: &[String]) -> Finding {
    const CHECK: &str = "scope";
    let who = if subject.is_empty() {
        "anonymous".to_owned()
    } else {
        format!("\"{subject}\"")
    };
    match answer {
        Presented::Accepted => Finding::ok(
            CHECK,
            format!(
                "the registry let {who} list the tags of {scope} (granted: {})",
                if granted.is_empty() {
                    "nothing".to_owned()
                } else {
                    granted.join(",")
                }
            ),
        ),
        Presented::Refused { error: Some(e), .. } if e == "insufficient_scope" => Finding::fail(
            CHECK,
            format!(
                "the registry accepted the token but it grants {who} {} on {scope}, and listing \
                 tags needs pull",
                if granted.is_empty() {
                    "nothing".to_owned()
                } else {
                    granted.join(",")
                }
            ),
            "grant pull in the ACL (`registry-auth acl explain` shows the deciding entry)",
            Entry::Scope,
        ),
        other => Finding::fail(
            CHECK,
            format!(
                "the tags list of {scope} with our token: {}",
                other.describe()
            ),
            "see the trust check",
            Entry::UntrustedKey,
        ),
    }
}

#[cfg(test)]
#[path = "trust_tests.rs"]
mod tests;
