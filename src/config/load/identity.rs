//! The principals' name spaces of a configuration ([`Namespaces`]) and the warnings about ACL
//! entries that a name alone cannot aim at one principal.

use std::collections::{BTreeSet, HashSet};

use crate::authn::Chain;
use crate::authn::principal::{Namespaces, is_federated};
use crate::config::AuthnBackend;
use crate::config::error::ConfigIssue;
use crate::config::file::AclEntrySpec;

/// Which names each configured authenticator can produce.
pub(super) fn namespaces(order: &[AuthnBackend], chain: &Chain) -> Namespaces {
    let mut open_password = Vec::new();
    let mut federated: Vec<(&'static str, Option<BTreeSet<String>>)> = Vec::new();
    for backend in order {
        match backend {
            AuthnBackend::Local => {}
            AuthnBackend::Ext(_)
            | AuthnBackend::Ldap(_)
            | AuthnBackend::Http(_)
            | AuthnBackend::Sql(_) => open_password.push(backend.name()),
            AuthnBackend::WebLogin(_) => federated.push((backend.name(), None)),
            AuthnBackend::CiTokens(ci) => federated.push((
                backend.name(),
                Some(ci.issuers().iter().map(|i| i.username.clone()).collect()),
            )),
        }
    }
    let static_names: HashSet<String> = chain.users().names().map(str::to_owned).collect();
    Namespaces::new(open_password, static_names, federated)
}

/// A pattern that can only ever match itself (no glob metacharacter, placeholder or regex).
fn literal(raw: &str) -> bool {
    let regex = raw.len() > 1 && raw.starts_with('/') && raw.ends_with('/');
    !regex && !raw.contains(['*', '?', '[', '\\', '$'])
}

/// Warnings: entries without `match.source` whose account several configured sources can
/// produce (they apply to the password sources' user only), entries naming a source that is
/// not configured, and once, the federated sources that entries without `source` never reach.
pub(super) fn warnings(ns: &Namespaces, entries: &[AclEntrySpec]) -> Vec<ConfigIssue> {
    let mut out = Vec::new();
    let configured = ns.configured();
    for (i, entry) in entries.iter().enumerate() {
        let m = &entry.matches;
        if let Some(sources) = &m.source {
            for s in sources.names() {
                if !configured.contains(&s.as_str()) {
                    out.push(ConfigIssue::new(
                        format!("acl[{i}].match.source"),
                        format!("`{s}` is not configured, so this entry never matches its users"),
                    ));
                }
            }
            continue;
        }
        let Some(account) = m.account.as_deref().filter(|a| literal(a) && !a.is_empty()) else {
            continue;
        };
        let claimants: Vec<&str> = ns.claimants(account).collect();
        let federated: Vec<&str> = claimants
            .iter()
            .copied()
            .filter(|s| is_federated(s))
            .collect();
        if claimants.len() > 1 && !federated.is_empty() {
            let owner = claimants
                .iter()
                .copied()
                .find(|s| !is_federated(s))
                .map_or_else(
                    || "no principal at all (the name is ambiguous)".to_owned(),
                    |s| format!("the {s} user only"),
                );
            out.push(ConfigIssue::new(
                format!("acl[{i}].match.account"),
                format!(
                    "the account `{account}` can come from {}; without `match.source` this entry \
                     is for {owner}. Add `source: {}` to an entry meant for that login",
                    claimants.join(", "),
                    federated[0]
                ),
            ));
        }
    }
    let shadowed: Vec<&str> = ns
        .federated()
        .filter(|f| {
            !ns.open_password().is_empty() || ns.federated().any(|g| g != *f && open_federated(g))
        })
        .collect();
    if !shadowed.is_empty() && !entries.is_empty() {
        out.push(ConfigIssue::new(
            "acl",
            format!(
                "logins from {} can share names with other configured sources, so ACL entries \
                 without `match.source` do not apply to them; give them entries with \
                 `match.source` (e.g. `source: {}`)",
                shadowed.join(", "),
                shadowed[0]
            ),
        ));
    }
    out
}

/// A federated source that can produce any name (every web login; not `oidc_tokens`).
fn open_federated(source: &str) -> bool {
    source != "oidc_tokens"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_told_from_patterns() {
        assert!(literal("alice"));
        assert!(literal("alice.smith@example.com"));
        assert!(!literal("alice*"));
        assert!(!literal("/al.*/"));
        assert!(!literal("${labels:x}"));
    }
}
