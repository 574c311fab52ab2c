//! `acl replay`: recorded token requests (audit lines) re-decided under another configuration,
//! and what would change.
//!
//! A request is re-decided for the principal the audit line names (source, canonical account,
//! labels as the login attached them), its client address and service, scope by scope. The
//! principal's qualification (whether entries without `match.source` apply) is the new
//! configuration's. Authentication is not replayed: a user the new configuration no longer has
//! is still decided by its ACL (a robot it no longer has is denied, `[unknown robot]`).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use super::audit::AuditRecord;
use super::{Decider, Offline, Principal, Verdict};
use crate::token::Scope;

/// A changed decision, aggregated over the requests that had it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChangeKey {
    /// The subject as logged.
    pub subject: String,
    /// The source.
    pub source: &'static str,
    /// `type:name`.
    pub resource: String,
    /// The requested actions.
    pub requested: Vec<String>,
    /// Granted before (as logged).
    pub before: Vec<String>,
    /// Granted under the new configuration.
    pub after: Vec<String>,
    /// Who decides now.
    pub now: Decider,
}

/// Totals of a replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Lines read.
    pub lines: u64,
    /// `token issued` lines replayed.
    pub requests: u64,
    /// Scope decisions replayed.
    pub scopes: u64,
    /// Scope decisions that grant other actions now.
    pub changed: u64,
    /// Scope decisions granting the same actions, by another entry.
    pub moved: u64,
    /// Scope decisions that an external authorizer would make (not evaluated).
    pub external: u64,
    /// Lines that looked like audit lines but could not be read.
    pub unreadable: u64,
    /// The first of them: line number and why.
    pub first_unreadable: Option<(u64, String)>,
    /// Lines written before `audit_version` 1 (no labels recorded: replayed as none).
    pub unversioned: u64,
}

/// The changes found so far and the totals.
#[derive(Debug, Default)]
pub struct Report {
    /// Change → number of scope decisions with it.
    pub changes: BTreeMap<ChangeKey, u64>,
    /// External authorizer → scope decisions it would make.
    pub external: BTreeMap<&'static str, u64>,
    /// Totals.
    pub stats: Stats,
}

impl Report {
    /// Counts a line that could not be read.
    pub fn unreadable(&mut self, line: u64, why: String) {
        self.stats.unreadable += 1;
        if self.stats.first_unreadable.is_none() {
            self.stats.first_unreadable = Some((line, why));
        }
    }

    /// Adds one request and its new verdicts (one per recorded scope, in order).
    pub fn add(&mut self, rec: &AuditRecord, verdicts: &[Verdict]) {
        self.start(rec);
        for (recorded, verdict) in rec.scopes.iter().zip(verdicts) {
            self.add_scope(rec, recorded, verdict);
        }
    }

    /// Counts a request (its scopes come through [`Report::add_scope`]).
    fn start(&mut self, rec: &AuditRecord) {
        self.stats.requests += 1;
        if rec.version == 0 {
            self.stats.unversioned += 1;
        }
    }

    /// Adds the new verdict of one recorded scope of `rec`.
    fn add_scope(
        &mut self,
        rec: &AuditRecord,
        recorded: &super::audit::RecordedScope,
        verdict: &Verdict,
    ) {
        self.stats.scopes += 1;
        match verdict {
            Verdict::External(name) => {
                self.stats.external += 1;
                *self.external.entry(name).or_default() += 1;
            }
            Verdict::Decided { granted, by } => {
                if *granted == recorded.granted {
                    if *by != recorded.by {
                        self.stats.moved += 1;
                    }
                    return;
                }
                self.stats.changed += 1;
                let key = ChangeKey {
                    subject: rec.subject.clone(),
                    source: rec.principal.source,
                    resource: format!("{}:{}", recorded.scope.kind, recorded.scope.name),
                    requested: recorded.scope.actions.clone(),
                    before: recorded.granted.clone(),
                    after: granted.clone(),
                    now: by.clone(),
                };
                *self.changes.entry(key).or_default() += 1;
            }
        }
    }
}

/// Decides recorded requests, remembering each distinct decision (real traffic repeats the
/// same principal, repository and actions many times). Bounded: at most [`MEMO_LIMIT`]
/// decisions are kept; past that it starts over.
///
/// The key is the text of everything a decision depends on (source, account, labels, address,
/// service, scope), built in one reused buffer, so a hit allocates nothing but the verdict's
/// copy.
#[derive(Debug, Default)]
pub struct Memo {
    memo: HashMap<Box<str>, Verdict>,
    key: String,
}

/// Distinct decisions remembered at most.
pub const MEMO_LIMIT: usize = 1 << 20;

impl Memo {
    /// An empty memo.
    pub fn new() -> Self {
        Self::default()
    }

    fn key(&mut self, who: &Principal, ip: Option<IpAddr>, service: &str, scope: &Scope) {
        use std::fmt::Write as _;
        let k = &mut self.key;
        k.clear();
        // Client-chosen parts are length-prefixed, so no value can imitate a separator.
        let _ = write!(k, "{} {}:", who.source, who.account.len());
        k.push_str(&who.account);
        for (key, values) in &who.labels.0 {
            let _ = write!(k, " {}:", key.len());
            k.push_str(key);
            for v in values {
                let _ = write!(k, ",{}:", v.len());
                k.push_str(v);
            }
        }
        let _ = write!(k, " {}:", service.len());
        k.push_str(service);
        let _ = match ip {
            Some(ip) => write!(k, " {ip} {scope}"),
            None => write!(k, " - {scope}"),
        };
    }

    /// Decides every scope of `rec` and adds it to `report`, without awaiting: false (and
    /// nothing added) when Casbin has to be asked.
    pub fn replay(&mut self, offline: &Offline, rec: &AuditRecord, report: &mut Report) -> bool {
        if !offline.is_sync() {
            return false;
        }
        report.start(rec);
        for s in &rec.scopes {
            self.key(&rec.principal, rec.ip, &rec.service, &s.scope);
            if let Some(v) = self.memo.get(self.key.as_str()) {
                report.add_scope(rec, s, v);
                continue;
            }
            let Some(v) = offline.decide_sync(&rec.principal, &rec.service, rec.ip, &s.scope)
            else {
                unreachable!("is_sync: every decision is synchronous");
            };
            report.add_scope(rec, s, &v);
            if self.memo.len() >= MEMO_LIMIT {
                self.memo.clear();
            }
            self.memo.insert(self.key.as_str().into(), v);
        }
        true
    }

    /// The verdicts of one record, without awaiting; `None` when Casbin has to be asked.
    pub fn decide_sync(&mut self, offline: &Offline, rec: &AuditRecord) -> Option<Vec<Verdict>> {
        let mut out = Vec::with_capacity(rec.scopes.len());
        for s in &rec.scopes {
            self.key(&rec.principal, rec.ip, &rec.service, &s.scope);
            if let Some(v) = self.memo.get(self.key.as_str()) {
                out.push(v.clone());
                continue;
            }
            let v = offline.decide_sync(&rec.principal, &rec.service, rec.ip, &s.scope)?;
            if self.memo.len() >= MEMO_LIMIT {
                self.memo.clear();
            }
            self.memo.insert(self.key.as_str().into(), v.clone());
            out.push(v);
        }
        Some(out)
    }
}

/// Decides every scope of a record (Casbin included).
pub async fn decide(
    offline: &Offline,
    rec: &AuditRecord,
) -> Result<Vec<Verdict>, crate::authz::AuthzBackendError> {
    let mut out = Vec::with_capacity(rec.scopes.len());
    for s in &rec.scopes {
        out.push(
            offline
                .decide(&rec.principal, &rec.service, rec.ip, &s.scope)
                .await?,
        );
    }
    Ok(out)
}

fn actions(list: &[String]) -> String {
    if list.is_empty() {
        "-".to_owned()
    } else {
        list.join(",")
    }
}

/// The text report: one line per change (subject, resource, requested, before → after, how
/// many scope decisions, the entry that decides now), then the summary.
pub fn report_text(report: &Report, offline: &Offline) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for (k, n) in &report.changes {
        let who = if k.subject.is_empty() {
            "(anonymous)".to_owned()
        } else {
            k.subject.clone()
        };
        let _ = writeln!(
            out,
            "{who} [{}] {} asked {}: {} → {} ({n}×; now decided by {})",
            k.source,
            k.resource,
            actions(&k.requested),
            actions(&k.before),
            actions(&k.after),
            offline.describe(&k.now)
        );
    }
    out.push_str(&summary(report));
    out
}

/// The summary lines.
pub fn summary(report: &Report) -> String {
    use std::fmt::Write as _;
    let s = &report.stats;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} lines, {} token requests, {} scope decisions: {} would change ({} distinct), {} \
         unchanged ({} of them decided by another entry now), {} not evaluable offline",
        s.lines,
        s.requests,
        s.scopes,
        s.changed,
        report.changes.len(),
        s.scopes - s.changed - s.external,
        s.moved,
        s.external
    );
    for (name, n) in &report.external {
        let _ = writeln!(
            out,
            "  {n} decision(s) would fall to {name}: {}",
            super::external_reason(name)
        );
    }
    if s.unversioned > 0 {
        let _ = writeln!(
            out,
            "  {} line(s) were written before audit_version 1: they carry no labels, replayed \
             as a user without labels",
            s.unversioned
        );
    }
    if let Some((line, why)) = &s.first_unreadable {
        let _ = writeln!(
            out,
            "  {} audit line(s) could not be read; the first, line {line}: {why}",
            s.unreadable
        );
    }
    out
}

/// One change as a JSON object (for `--format json`).
pub fn change_json(k: &ChangeKey, count: u64, offline: &Offline) -> serde_json::Value {
    serde_json::json!({
        "account": k.subject,
        "source": k.source,
        "resource": k.resource,
        "requested": k.requested,
        "before": k.before,
        "after": k.after,
        "count": count,
        "decided_by": k.now.to_string(),
        "entry": offline.describe(&k.now),
    })
}

/// The summary as a JSON object.
pub fn summary_json(report: &Report) -> serde_json::Value {
    let s = &report.stats;
    serde_json::json!({
        "summary": {
            "lines": s.lines,
            "requests": s.requests,
            "scopes": s.scopes,
            "changed": s.changed,
            "distinct_changes": report.changes.len(),
            "moved": s.moved,
            "not_evaluable": s.external,
            "unreadable": s.unreadable,
            "unversioned": s.unversioned,
        }
    })
}
