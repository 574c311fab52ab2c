//! `acl diff`: what changes between two configurations' ACLs, without traffic.
//!
//! The identities and resources compared are built from the patterns of either configuration
//! (static `acl` entries and, when configured, the `acl_sql` rows): every `account` pattern's
//! samples (plus anonymous and an account no pattern names), with no labels or with each
//! entry's `labels` condition, without an address or with an address of each `ip` rule, for
//! each source an entry names (and the password sources); resource names are the samples of
//! every `name` pattern with the identity's values in its placeholders, plus a name no pattern
//! names. Each (identity, resource) is decided under both configurations exactly as the token
//! endpoint would, asking for every action either ACL mentions.
//!
//! Exact for literal patterns; a glob or a regex stands for infinitely many values and is
//! represented by samples (`*` and `**` told apart, each alternative of a regex), so a change
//! that only shows for values no sample hits is missed: the report lists the patterns it
//! sampled. Shadowed entries come from the linter ([`crate::authz::Acl::shadowed`]); an entry
//! that decides none of the sampled requests is reported as unreachable (an approximation too).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::sample::samples;
use super::{Decider, Offline, Principal, Verdict};
use crate::authn::Labels;
use crate::config::describe_acl_entry;
use crate::config::file::AclEntrySpec;
use crate::token::Scope;

/// One identity to compare under both configurations.
#[derive(Debug, Clone)]
struct Witness {
    who: Principal,
    ip: Option<IpAddr>,
    service: String,
    /// How it is described in the report.
    label: String,
}

/// A change for (identity classes, repository pattern): the same change for every identity
/// class listed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PairChange {
    /// Up to three of the identity classes with this change.
    pub identities: Vec<String>,
    /// How many identity classes have it.
    pub identity_count: usize,
    /// The resource pattern the sampled names came from (`type:pattern`).
    pub pattern: String,
    /// Granted before.
    pub before: Vec<String>,
    /// Granted after.
    pub after: Vec<String>,
    /// Who decides now (as `acl explain` names it).
    pub now: String,
    /// How many sampled (identity, resource) pairs have this change.
    pub count: usize,
    /// Up to three of the sampled resources with this change.
    pub examples: Vec<String>,
}

/// The result of a diff.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffReport {
    /// Changed decisions, grouped.
    pub changes: Vec<PairChange>,
    /// Entries present in both, at another position: (entry, old index, new index).
    pub moved: Vec<(String, usize, usize)>,
    /// Entries only in the old ACL.
    pub removed: Vec<String>,
    /// Entries only in the new ACL.
    pub added: Vec<String>,
    /// New-ACL entries the linter finds shadowed (with the entry that shadows them) which were
    /// not shadowed before.
    pub newly_shadowed: Vec<String>,
    /// New-ACL entries that decide none of the sampled requests but did decide some before (or
    /// are new).
    pub unreachable: Vec<String>,
    /// Patterns represented by samples (the diff is approximate for them).
    pub sampled: BTreeSet<String>,
    /// (identity, resource) pairs decided under both.
    pub compared: usize,
    /// Pairs an external authorizer would decide in either configuration (not compared).
    pub external: usize,
}

fn entries(offline: &Offline) -> Vec<AclEntrySpec> {
    let mut out = offline.config().acl_entries.clone();
    if let Some(sql) = &offline.sql {
        out.extend(sql.rows().iter().map(|(_, e)| e.clone()));
    }
    out
}

/// Compares `old` and `new`.
pub async fn diff(
    old: &Offline,
    new: &Offline,
) -> Result<DiffReport, crate::authz::AuthzBackendError> {
    let old_entries = entries(old);
    let new_entries = entries(new);
    let all: Vec<&AclEntrySpec> = old_entries.iter().chain(&new_entries).collect();
    let mut report = DiffReport::default();
    let mut actions: BTreeSet<String> = ["pull", "push", "delete"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    for e in &all {
        actions.extend(e.actions.iter().filter(|a| *a != "*").cloned());
    }
    let actions: Vec<String> = actions.into_iter().collect();
    let witnesses = witnesses(&all, &mut report.sampled);
    type Group = (BTreeSet<String>, Vec<String>);
    let mut grouped: BTreeMap<(String, Vec<String>, Vec<String>, String), Group> = BTreeMap::new();
    let mut decided_new: BTreeSet<Decider> = BTreeSet::new();
    let mut decided_old: BTreeSet<Decider> = BTreeSet::new();
    for w in &witnesses {
        for (pattern, scope) in resources(&all, w, &actions, &mut report.sampled) {
            let before = old.decide(&w.who, &w.service, w.ip, &scope).await?;
            let after = new.decide(&w.who, &w.service, w.ip, &scope).await?;
            let (
                Verdict::Decided {
                    granted: b,
                    by: old_by,
                },
                Verdict::Decided {
                    granted: a,
                    by: new_by,
                },
            ) = (before, after)
            else {
                report.external += 1;
                continue;
            };
            report.compared += 1;
            decided_old.insert(old_by);
            decided_new.insert(new_by.clone());
            if a != b {
                let group = grouped
                    .entry((pattern, b, a, new.describe(&new_by)))
                    .or_default();
                group.0.insert(w.label.clone());
                group.1.push(format!("{}:{}", scope.kind, scope.name));
            }
        }
    }
    report.changes = grouped
        .into_iter()
        .map(
            |((pattern, before, after, now), (identities, mut examples))| {
                let count = examples.len();
                let identity_count = identities.len();
                examples.sort();
                examples.dedup();
                examples.truncate(3);
                PairChange {
                    identities: identities.into_iter().take(3).collect(),
                    identity_count,
                    pattern,
                    before,
                    after,
                    now,
                    count,
                    examples,
                }
            },
        )
        .collect();
    entry_changes(old, new, &decided_old, &decided_new, &mut report);
    Ok(report)
}

/// Moves, additions, removals, newly shadowed and unreachable entries of the static ACL.
fn entry_changes(
    old: &Offline,
    new: &Offline,
    decided_old: &BTreeSet<Decider>,
    decided_new: &BTreeSet<Decider>,
    report: &mut DiffReport,
) {
    let old_text: Vec<String> = old
        .config()
        .acl_entries
        .iter()
        .map(describe_acl_entry)
        .collect();
    let new_text: Vec<String> = new
        .config()
        .acl_entries
        .iter()
        .map(describe_acl_entry)
        .collect();
    let mut used = vec![false; old_text.len()];
    for (j, t) in new_text.iter().enumerate() {
        match (0..old_text.len()).find(|i| !used[*i] && old_text[*i] == *t) {
            Some(i) => {
                used[i] = true;
                if i != j {
                    report.moved.push((t.clone(), i, j));
                }
            }
            None => report.added.push(format!("acl[{j}]: {t}")),
        }
    }
    for (i, t) in old_text.iter().enumerate() {
        if !used[i] {
            report.removed.push(format!("acl[{i}]: {t}"));
        }
    }
    let old_shadowed: BTreeSet<&str> = old
        .config()
        .acl
        .shadowed()
        .iter()
        .map(|s| old_text[s.index].as_str())
        .collect();
    for s in new.config().acl.shadowed() {
        if !old_shadowed.contains(new_text[s.index].as_str()) {
            report.newly_shadowed.push(format!(
                "acl[{}]: {} (shadowed by acl[{}]: {})",
                s.index, new_text[s.index], s.by, new_text[s.by]
            ));
        }
    }
    for (j, t) in new_text.iter().enumerate() {
        let reached_before = old_text
            .iter()
            .enumerate()
            .any(|(i, o)| o == t && decided_old.contains(&Decider::Acl(i)));
        let is_new = !old_text.contains(t);
        if !decided_new.contains(&Decider::Acl(j)) && (reached_before || is_new) {
            report.unreachable.push(format!("acl[{j}]: {t}"));
        }
    }
}

fn source_of(account: &str) -> &'static str {
    if account.is_empty() {
        "anonymous"
    } else {
        "users"
    }
}

/// The identities: account samples × sources × label sets × addresses × services.
fn witnesses(all: &[&AclEntrySpec], sampled: &mut BTreeSet<String>) -> Vec<Witness> {
    let mut accounts: BTreeMap<String, String> = BTreeMap::new();
    accounts.insert(String::new(), "anonymous".to_owned());
    accounts.insert(
        "unnamed-user".to_owned(),
        "an account no pattern names".to_owned(),
    );
    let mut sources: BTreeSet<&'static str> = BTreeSet::new();
    let mut ips: Vec<Option<IpAddr>> = vec![None];
    let mut services: BTreeSet<String> = BTreeSet::from([String::new()]);
    for e in all {
        let m = &e.matches;
        if let Some(raw) = &m.account {
            let (values, exact) = samples(raw, &|_| None);
            if !exact {
                sampled.insert(format!("account {raw:?}"));
            }
            for v in values {
                let how = if exact {
                    format!("account {v:?}")
                } else {
                    format!("account {v:?} (sample of {raw:?})")
                };
                accounts.entry(v).or_insert(how);
            }
        }
        if let Some(s) = &m.source {
            sources.extend(s.names().iter().filter_map(|n| super::source_name(n)));
        }
        if let Some(ip) = &m.ip {
            let addr = ip
                .parse::<ipnet::IpNet>()
                .map(|n| n.network())
                .or_else(|_| ip.parse::<IpAddr>());
            if let Ok(a) = addr
                && !ips.contains(&Some(a))
            {
                ips.push(Some(a));
            }
        }
        if let Some(raw) = &m.service {
            let (values, exact) = samples(raw, &|_| None);
            if !exact {
                sampled.insert(format!("service {raw:?}"));
            }
            services.extend(values);
        }
    }
    let mut out = Vec::new();
    for (account, how) in &accounts {
        let mut label_sets: Vec<Labels> = vec![Labels::default()];
        for e in all {
            if e.matches.labels.is_empty() {
                continue;
            }
            let mut labels = Labels::default();
            for (k, raw) in &e.matches.labels {
                let (values, exact) =
                    samples(raw, &|name| (name == "account").then(|| account.clone()));
                if !exact {
                    sampled.insert(format!("labels.{k} {raw:?}"));
                }
                labels
                    .0
                    .insert(k.clone(), values.into_iter().take(1).collect());
            }
            if !label_sets.contains(&labels) {
                label_sets.push(labels);
            }
        }
        let mut srcs: Vec<&'static str> = vec![source_of(account)];
        if !account.is_empty() {
            srcs.extend(sources.iter().copied().filter(|s| *s != "users"));
        }
        for source in srcs {
            for labels in &label_sets {
                for ip in &ips {
                    for service in &services {
                        let mut label = format!("{how} ({source})");
                        if !labels.is_empty() {
                            label.push_str(&format!(
                                ", labels {}",
                                super::audit::encode_labels(labels)
                            ));
                        }
                        if let Some(ip) = ip {
                            label.push_str(&format!(", from {ip}"));
                        }
                        if !service.is_empty() {
                            label.push_str(&format!(", service {service:?}"));
                        }
                        out.push(Witness {
                            who: Principal {
                                source,
                                account: account.clone(),
                                labels: labels.clone(),
                            },
                            ip: *ip,
                            service: service.clone(),
                            label,
                        });
                    }
                }
            }
        }
    }
    out
}

/// The resources for one identity: (pattern they came from, scope).
fn resources(
    all: &[&AclEntrySpec],
    w: &Witness,
    actions: &[String],
    sampled: &mut BTreeSet<String>,
) -> Vec<(String, Scope)> {
    let mut kinds: BTreeSet<String> = BTreeSet::from(["repository".to_owned()]);
    for e in all {
        if let Some(raw) = &e.matches.kind {
            kinds.extend(samples(raw, &|_| None).0);
        }
    }
    let subst = |name: &str| -> Option<String> {
        match name {
            "account" => Some(w.who.account.clone()),
            "service" => Some(w.service.clone()),
            _ => name
                .strip_prefix("labels:")
                .and_then(|k| w.who.labels.get(k))
                .and_then(|v| v.first().cloned()),
        }
    };
    let mut out: Vec<(String, Scope)> = Vec::new();
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    for kind in &kinds {
        let mut push = |pattern: String, name: String| {
            if seen.insert((kind.clone(), name.clone())) {
                out.push((
                    format!("{kind}:{pattern}"),
                    Scope::new(kind.clone(), name, actions.to_vec()),
                ));
            }
        };
        for e in all {
            if let Some(raw) = &e.matches.name {
                let (values, exact) = samples(raw, &subst);
                if !exact {
                    sampled.insert(format!("name {raw:?}"));
                }
                for v in values {
                    push(raw.clone(), v);
                }
            }
        }
        push(
            "(a name no pattern names)".to_owned(),
            "zz-unnamed/x".to_owned(),
        );
    }
    out
}

fn actions_text(list: &[String]) -> String {
    if list.is_empty() {
        "nothing".to_owned()
    } else {
        list.join(",")
    }
}

/// The text report.
pub fn report_text(r: &DiffReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for c in &r.changes {
        let gained: Vec<String> = c
            .after
            .iter()
            .filter(|a| !c.before.contains(a))
            .cloned()
            .collect();
        let lost: Vec<String> = c
            .before
            .iter()
            .filter(|a| !c.after.contains(a))
            .cloned()
            .collect();
        let mut what = Vec::new();
        if !gained.is_empty() {
            what.push(format!("gains {}", gained.join(",")));
        }
        if !lost.is_empty() {
            what.push(format!("loses {}", lost.join(",")));
        }
        let who = if c.identity_count == 1 {
            c.identities.join("")
        } else {
            format!(
                "{} identity classes (e.g. {})",
                c.identity_count,
                c.identities.join("; ")
            )
        };
        let _ = writeln!(
            out,
            "{} for {who}: {} ({} → {}; e.g. {}; now decided by {})",
            c.pattern,
            what.join(", "),
            actions_text(&c.before),
            actions_text(&c.after),
            c.examples.join(", "),
            c.now
        );
    }
    for (t, i, j) in &r.moved {
        let _ = writeln!(out, "moved: acl[{i}] → acl[{j}]: {t}");
    }
    for t in &r.added {
        let _ = writeln!(out, "added: {t}");
    }
    for t in &r.removed {
        let _ = writeln!(out, "removed: {t}");
    }
    for t in &r.newly_shadowed {
        let _ = writeln!(out, "newly shadowed: {t}");
    }
    for t in &r.unreachable {
        let _ = writeln!(
            out,
            "unreachable (decides none of the sampled requests): {t}"
        );
    }
    let _ = writeln!(
        out,
        "{} (identity, resource) pairs compared: {} change(s) in {} group(s){}",
        r.compared,
        r.changes.iter().map(|c| c.count).sum::<usize>(),
        r.changes.len(),
        if r.external > 0 {
            format!(
                "; {} pair(s) fall to an external authorizer in either config and are not compared",
                r.external
            )
        } else {
            String::new()
        }
    );
    if r.sampled.is_empty() {
        out.push_str("exact: every pattern is a literal\n");
    } else {
        let list: Vec<&str> = r.sampled.iter().map(String::as_str).collect();
        let _ = writeln!(
            out,
            "approximate: these patterns match unboundedly many values and were represented by \
             samples (a change only other values would show is not seen): {}",
            list.join(", ")
        );
    }
    out
}

impl DiffReport {
    /// True when the two ACLs differ in a decision or in their entries.
    pub fn changed(&self) -> bool {
        !self.changes.is_empty()
            || !self.moved.is_empty()
            || !self.added.is_empty()
            || !self.removed.is_empty()
    }
}
