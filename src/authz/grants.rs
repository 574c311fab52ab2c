//! Explicit scope grants, as robots carry them: a list of `type:name-pattern:actions` patterns
//! such as `repository:ci/**:pull,push`. A request gets the union of the actions of every
//! pattern that matches it, intersected with what it asked for (`*` in a pattern grants whatever
//! was asked). The name pattern is a glob or `/regex/` with the ACL's syntax; no placeholders
//! are useful here since there are no labels.

use super::{Acl, AclDecision, AuthzRequest};
use crate::authn::Labels;
use crate::config::file::{AclEntrySpec, MatchSpec};

/// Compiled scope patterns.
#[derive(Debug, Clone, Default)]
pub struct ScopeGrants {
    /// One single-entry ACL per pattern (reusing the ACL's matchers).
    patterns: Vec<Acl>,
}

impl ScopeGrants {
    /// Compiles the patterns; errors are `(index, message)`.
    pub fn compile(patterns: &[String]) -> Result<Self, Vec<(usize, String)>> {
        let mut compiled = Vec::new();
        let mut errors = Vec::new();
        for (i, p) in patterns.iter().enumerate() {
            match compile_one(p) {
                Ok(acl) => compiled.push(acl),
                Err(e) => errors.push((i, e)),
            }
        }
        if errors.is_empty() {
            Ok(Self { patterns: compiled })
        } else {
            Err(errors)
        }
    }

    /// The granted subset of `actions` (sorted, deduplicated) on `kind:name`.
    pub fn grant(&self, kind: &str, name: &str, actions: &[String]) -> Vec<String> {
        let labels = Labels::default();
        let req = AuthzRequest {
            account: "",
            source: "robots",
            unqualified: true,
            kind,
            name,
            service: "",
            ip: None,
            labels: &labels,
            actions,
        };
        let mut granted: Vec<String> = Vec::new();
        for acl in &self.patterns {
            if let AclDecision::Matched { granted: g, .. } = acl.authorize(&req) {
                granted.extend(g);
            }
        }
        granted.sort();
        granted.dedup();
        granted
    }
}

fn compile_one(pattern: &str) -> Result<Acl, String> {
    let hint = "expected `type:name-pattern:actions`, e.g. `repository:ci/**:pull,push`";
    let (kind, rest) = pattern
        .split_once(':')
        .ok_or_else(|| format!("{pattern:?}: {hint}"))?;
    let (name, actions) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("{pattern:?}: {hint}"))?;
    if kind.is_empty()
        || !kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(format!(
            "{pattern:?}: the type must be lower-case letters and digits, e.g. `repository`"
        ));
    }
    if name.is_empty() {
        return Err(format!("{pattern:?}: the name pattern is empty; {hint}"));
    }
    let actions: Vec<String> = actions
        .split(',')
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    if actions.is_empty() {
        return Err(format!("{pattern:?}: no actions; {hint}"));
    }
    let spec = AclEntrySpec {
        matches: MatchSpec {
            kind: Some(kind.to_owned()),
            name: Some(name.to_owned()),
            ..MatchSpec::default()
        },
        actions,
        comment: None,
    };
    Acl::compile(std::slice::from_ref(&spec)).map_err(|errors| {
        errors
            .iter()
            .map(|e| format!("{pattern:?}: {}", e.message))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acts(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn union_of_matching_patterns_intersected_with_request() {
        let g = ScopeGrants::compile(&acts(&[
            "repository:ci/**:pull",
            "repository:ci/app:push",
            "registry:catalog:*",
        ]))
        .unwrap();
        assert_eq!(
            g.grant("repository", "ci/app", &acts(&["pull", "push", "delete"])),
            acts(&["pull", "push"])
        );
        assert_eq!(
            g.grant("repository", "ci/x/y", &acts(&["pull", "push"])),
            acts(&["pull"])
        );
        assert!(
            g.grant("repository", "other/app", &acts(&["pull"]))
                .is_empty()
        );
        assert_eq!(g.grant("registry", "catalog", &acts(&["*"])), acts(&["*"]));
        assert!(g.grant("repository", "ci", &acts(&["pull"])).is_empty());
    }

    #[test]
    fn host_port_names_and_bad_patterns() {
        let g = ScopeGrants::compile(&acts(&["repository:localhost:5000/ci/*:pull"])).unwrap();
        assert_eq!(
            g.grant("repository", "localhost:5000/ci/a", &acts(&["pull"])),
            acts(&["pull"])
        );
        let errors = ScopeGrants::compile(&acts(&[
            "repository",
            "repository:ci/*",
            "Repo:ci/*:pull",
            "repository::pull",
            "repository:ci/*:",
            "repository:[:pull",
            "repository:ok/*:pull",
        ]))
        .unwrap_err();
        let idx: Vec<usize> = errors.iter().map(|(i, _)| *i).collect();
        assert_eq!(idx, vec![0, 1, 2, 3, 4, 5]);
    }
}
