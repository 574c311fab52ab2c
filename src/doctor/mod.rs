//! `registry-auth doctor`: what is wrong between this configuration and a live registry.
//!
//! The registry answers a client whose token it refuses with a bare 401; the reason sits in its
//! log, worded per version. The doctor probes the whole path (challenge, realm, a token signed
//! here, the registry's clock, its log) and names the one thing to change and on which side.
//!
//! This module is the pure part: parsing what was seen (challenges, log lines) and turning
//! observations into [`Finding`]s with their fix texts. The probes themselves (HTTP to the
//! registry and the realm, signing through [`crate::grant`]) live in the binary's `doctor`
//! command, which feeds their results to the functions here.
//!
//! * [`checks`]: the challenge, the realm, `service`/`path_prefix`, the clock and TLS;
//! * [`trust`]: the token signed here and its retries with the other signing headers;
//! * [`registry_log`]: the registry's reason lines (2.8 and v3 wordings) and their fixes.
//!
//! Every failure names its entry in the troubleshooting guide, docs/src/operating/troubleshooting.md
//! ([`Entry`]); a unit test checks that each entry's anchor exists there.

pub mod checks;
pub mod registry_log;
pub mod trust;

use std::fmt::Write as _;

use serde::Serialize;

/// The troubleshooting guide the findings link to (the README and the book point at it).
pub const GUIDE: &str = "docs/src/operating/troubleshooting.md";

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but something deserves a look.
    Warn,
    /// Broken: clients fail because of this.
    Fail,
}

impl Status {
    /// `ok`, `warn`, `FAIL` (upper case so it stands out in a terminal).
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "FAIL",
        }
    }
}

/// The entries of the troubleshooting guide a finding can point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Entry {
    /// The registry cannot be reached or does not ask for tokens.
    RegistryChallenge,
    /// The realm cannot be reached, or is not this server.
    Realm,
    /// The challenge's `service` is not one this configuration serves.
    Service,
    /// The realm's path does not match `server.path_prefix`.
    PathPrefix,
    /// The registry does not trust the signing key, or wants another signing header.
    UntrustedKey,
    /// `iss` differs from the registry's `auth.token.issuer`.
    Issuer,
    /// The clocks differ.
    Clock,
    /// The signature algorithm is refused.
    Algorithm,
    /// TLS to the registry or the realm.
    Tls,
    /// Our own authentication refused the user (or anonymous access is off).
    Login,
    /// The token is accepted but lacks access to the scope.
    Scope,
    /// The registry log was not usable.
    RegistryLog,
}

impl Entry {
    /// Every entry (for the guide test).
    pub const ALL: [Entry; 12] = [
        Self::RegistryChallenge,
        Self::Realm,
        Self::Service,
        Self::PathPrefix,
        Self::UntrustedKey,
        Self::Issuer,
        Self::Clock,
        Self::Algorithm,
        Self::Tls,
        Self::Login,
        Self::Scope,
        Self::RegistryLog,
    ];

    /// The HTML anchor of the entry in docs/src/operating/troubleshooting.md.
    pub fn anchor(self) -> &'static str {
        match self {
            Self::RegistryChallenge => "doctor-registry",
            Self::Realm => "doctor-realm",
            Self::Service => "doctor-service",
            Self::PathPrefix => "doctor-path-prefix",
            Self::UntrustedKey => "doctor-untrusted-key",
            Self::Issuer => "doctor-issuer",
            Self::Clock => "doctor-clock",
            Self::Algorithm => "doctor-algorithm",
            Self::Tls => "doctor-tls",
            Self::Login => "doctor-login",
            Self::Scope => "doctor-scope",
            Self::RegistryLog => "doctor-registry-log",
        }
    }

    /// The link printed after a failure.
    pub fn link(self) -> String {
        format!("{GUIDE}#{}", self.anchor())
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Which check (`registry`, `realm`, `service`, `path-prefix`, `trust`, `scope`, `clock`,
    /// `registry-log`, `tls`, `login`).
    pub check: &'static str,
    /// The outcome.
    pub status: Status,
    /// What was seen.
    pub seen: String,
    /// What to change (failures and warnings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The troubleshooting entry (failures and warnings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<Entry>,
}

impl Finding {
    /// A passed check.
    pub fn ok(check: &'static str, seen: impl Into<String>) -> Finding {
        Finding {
            check,
            status: Status::Ok,
            seen: seen.into(),
            fix: None,
            entry: None,
        }
    }

    /// A warning with what to look at.
    pub fn warn(
        check: &'static str,
        seen: impl Into<String>,
        fix: impl Into<String>,
        entry: Entry,
    ) -> Finding {
        Self::with_fix(Status::Warn, check, seen.into(), fix.into(), entry)
    }

    /// A failed check with its fix.
    pub fn fail(
        check: &'static str,
        seen: impl Into<String>,
        fix: impl Into<String>,
        entry: Entry,
    ) -> Finding {
        Self::with_fix(Status::Fail, check, seen.into(), fix.into(), entry)
    }

    fn with_fix(
        status: Status,
        check: &'static str,
        seen: String,
        fix: String,
        entry: Entry,
    ) -> Finding {
        Finding {
            check,
            status,
            seen,
            fix: Some(fix),
            entry: Some(entry),
        }
    }

    /// The text line: `FAIL  trust: what was seen → fix: what to change (see GUIDE#anchor)`.
    pub fn line(&self) -> String {
        let mut s = format!("{:<5} {}: {}", self.status.label(), self.check, self.seen);
        if let Some(fix) = &self.fix {
            let _ = write!(s, " → fix: {fix}");
        }
        if let Some(entry) = self.entry {
            let _ = write!(s, " (see {})", entry.link());
        }
        s
    }
}

/// The whole report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The findings in check order.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Adds a finding.
    pub fn push(&mut self, finding: Finding) {
        self.findings.push(finding);
    }

    /// Whether any check failed (exit 1).
    pub fn failed(&self) -> bool {
        self.findings.iter().any(|f| f.status == Status::Fail)
    }

    /// Whether the check named `check` failed.
    pub fn check_failed(&self, check: &str) -> bool {
        self.findings
            .iter()
            .any(|f| f.check == check && f.status == Status::Fail)
    }

    /// One line per finding and a summary line.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for f in &self.findings {
            s.push_str(&f.line());
            s.push('\n');
        }
        let fails = self
            .findings
            .iter()
            .filter(|f| f.status == Status::Fail)
            .count();
        let warns = self
            .findings
            .iter()
            .filter(|f| f.status == Status::Warn)
            .count();
        if fails == 0 {
            let _ = writeln!(s, "all checks passed ({warns} warning(s))");
        } else {
            let _ = writeln!(s, "{fails} check(s) failed, {warns} warning(s)");
        }
        s
    }

    /// `{"ok": bool, "findings": [...]}` with each finding's `link`.
    pub fn json(&self) -> serde_json::Value {
        let findings: Vec<serde_json::Value> = self
            .findings
            .iter()
            .map(|f| {
                let mut v = serde_json::to_value(f).unwrap_or_default();
                if let (Some(entry), Some(obj)) = (f.entry, v.as_object_mut()) {
                    obj.insert("link".to_owned(), entry.link().into());
                }
                v
            })
            .collect();
        serde_json::json!({ "ok": !self.failed(), "findings": findings })
    }
}

/// At most the first 12 characters of an identifier (a `kid`, a fingerprint) followed by `…`,
/// for lines that must stay short. Never used on secrets: those are not printed at all.
pub fn short(id: &str) -> String {
    match id.char_indices().nth(12) {
        Some((i, _)) => format!("{}…", &id[..i]),
        None => id.to_owned(),
    }
}

#[cfg(test)]
mod tests;
