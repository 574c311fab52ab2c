//! Principals: which source a name belongs to, and what ACL entries without `match.source` see.
//!
//! A principal is a source (the backend or provider that vouched for it, see
//! [`super::Identity::source`]) and its canonical account name there. Two kinds of source:
//!
//! * **Password sources** (`users`/`users_file`, `robots`, `ldap_auth`, `sql_auth`, `ext_auth`,
//!   `http_auth`, and anonymous): docker_auth's chain. They share one name space, in which a
//!   name belongs to the first backend of the chain that knows it (a wrong password there stops
//!   the chain), so an account name alone says who it is.
//! * **Federated sources** (`github_auth`, `gitlab_auth`, `google_auth`, `oidc_auth`,
//!   `oidc_tokens`): their names come from somebody else's name space. GitHub's `alice` has
//!   nothing to do with the directory's `alice`.
//!
//! ACL entries (and `acl_sql` rows) that name no `source` are docker_auth's, written for names.
//! They apply to every password-source principal, and to a federated principal only when no
//! other configured source could produce the same name: no open password source (`ldap_auth`,
//! `sql_auth`, `ext_auth`, `http_auth` can produce any name) is configured, the name is not a
//! static user's or a robot's, and no other federated source could produce it (web logins can
//! produce any name; `oidc_tokens` only its configured user names). Such a principal is
//! *unqualified*: its name alone identifies it, and it is its token's `sub`. Every other
//! principal is *qualified*: entries must name its source to apply, and its `sub` (and the
//! account external authorizers, Casbin, the audit log and revocation see) is `source:account`.
//!
//! Pure: built from the configuration once per load, asked per request (a hash lookup).

use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};

use super::ROBOT_PREFIX;

/// Every source name, as written in `match.source`.
pub const SOURCES: [&str; 12] = [
    "anonymous",
    "users",
    "robots",
    "ldap_auth",
    "sql_auth",
    "ext_auth",
    "http_auth",
    "github_auth",
    "gitlab_auth",
    "google_auth",
    "oidc_auth",
    "oidc_tokens",
];

/// The federated sources (names from another name space).
pub const FEDERATED: [&str; 5] = [
    "github_auth",
    "gitlab_auth",
    "google_auth",
    "oidc_auth",
    "oidc_tokens",
];

/// True for a federated source.
pub fn is_federated(source: &str) -> bool {
    FEDERATED.contains(&source)
}

/// Which names each configured source can produce, to tell qualified principals from
/// unqualified ones.
#[derive(Debug, Clone, Default)]
pub struct Namespaces {
    /// Configured password sources that can produce any name.
    open_password: Vec<&'static str>,
    /// The static users' names (`users`, `users_file`).
    static_names: HashSet<String>,
    /// Configured federated sources: `None` for any name (web logins), or the only names they
    /// produce (`oidc_tokens`' user names).
    federated: Vec<(&'static str, Option<BTreeSet<String>>)>,
}

impl Namespaces {
    /// The name spaces of a configuration.
    pub fn new(
        open_password: Vec<&'static str>,
        static_names: HashSet<String>,
        federated: Vec<(&'static str, Option<BTreeSet<String>>)>,
    ) -> Self {
        Self {
            open_password,
            static_names,
            federated,
        }
    }

    /// Whether ACL entries without `match.source` apply to `(source, account)` (see the module
    /// documentation).
    pub fn unqualified(&self, source: &str, account: &str) -> bool {
        if !is_federated(source) {
            return true;
        }
        self.claimants(account).all(|s| s == source)
    }

    /// The configured sources that could produce `account`.
    pub fn claimants<'a>(&'a self, account: &'a str) -> impl Iterator<Item = &'static str> + 'a {
        let robot = account.starts_with(ROBOT_PREFIX).then_some("robots");
        let anonymous = account.is_empty().then_some("anonymous");
        let user = self.static_names.contains(account).then_some("users");
        let federated = self.federated.iter().filter_map(move |(s, names)| {
            names
                .as_ref()
                .is_none_or(|n| n.contains(account))
                .then_some(*s)
        });
        robot
            .into_iter()
            .chain(anonymous)
            .chain(user)
            .chain(self.open_password.iter().copied())
            .chain(federated)
    }

    /// The principal's subject: its account when unqualified, else `source:account`.
    pub fn subject<'a>(&self, source: &str, account: &'a str) -> Cow<'a, str> {
        subject(source, account, self.unqualified(source, account))
    }

    /// Every source this configuration can produce principals of: `anonymous`, `users` and
    /// `robots` (always there), then the configured backends and logins in chain order.
    pub fn configured(&self) -> Vec<&'static str> {
        ["anonymous", "users", "robots"]
            .into_iter()
            .chain(self.open_password.iter().copied())
            .chain(self.federated())
            .collect()
    }

    /// The configured federated sources.
    pub fn federated(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.federated.iter().map(|(s, _)| *s)
    }

    /// The configured password sources that can produce any name.
    pub fn open_password(&self) -> &[&'static str] {
        &self.open_password
    }
}

/// `account`, or `source:account` for a qualified principal.
pub fn subject<'a>(source: &str, account: &'a str, unqualified: bool) -> Cow<'a, str> {
    if unqualified {
        Cow::Borrowed(account)
    } else {
        Cow::Owned(format!("{source}:{account}"))
    }
}

/// Splits a subject written by an administrator (`tokens revoke --user`, `logins revoke`):
/// `source:account` when it starts with a federated source's name and a colon, else the bare
/// account.
pub fn parse_subject(subject: &str) -> (Option<&'static str>, &str) {
    for source in FEDERATED {
        if let Some(account) = subject
            .strip_prefix(source)
            .and_then(|rest| rest.strip_prefix(':'))
        {
            return (Some(source), account);
        }
    }
    (None, subject)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> HashSet<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn ci(list: &[&str]) -> Option<BTreeSet<String>> {
        Some(list.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn password_sources_are_always_unqualified() {
        let ns = Namespaces::new(
            vec!["ldap_auth"],
            names(&["admin"]),
            vec![("github_auth", None)],
        );
        for source in ["users", "ldap_auth", "sql_auth", "anonymous", "robots"] {
            assert!(ns.unqualified(source, "alice"), "{source}");
        }
    }

    #[test]
    fn a_web_login_next_to_an_open_password_source_is_qualified() {
        let ns = Namespaces::new(vec!["ldap_auth"], names(&[]), vec![("github_auth", None)]);
        assert!(!ns.unqualified("github_auth", "alice"));
        assert_eq!(ns.subject("github_auth", "alice"), "github_auth:alice");
        assert_eq!(ns.subject("ldap_auth", "alice"), "alice");
        assert_eq!(
            ns.claimants("alice").collect::<Vec<_>>(),
            ["ldap_auth", "github_auth"]
        );
    }

    #[test]
    fn a_lone_web_login_next_to_static_users_keeps_its_free_names() {
        // docker_auth's usual layout: a few static users (CI) and GitHub for people.
        let ns = Namespaces::new(vec![], names(&["admin", "ci"]), vec![("github_auth", None)]);
        assert!(ns.unqualified("github_auth", "alice"));
        assert_eq!(ns.subject("github_auth", "alice"), "alice");
        // A GitHub user called like a static user is not that user.
        assert!(!ns.unqualified("github_auth", "admin"));
        assert!(!ns.unqualified("github_auth", "robot$deploy"));
    }

    #[test]
    fn two_federated_sources_share_only_what_both_can_produce() {
        let ns = Namespaces::new(
            vec![],
            names(&[]),
            vec![("github_auth", None), ("oidc_tokens", ci(&["oidc"]))],
        );
        assert!(ns.unqualified("github_auth", "alice"));
        assert!(!ns.unqualified("github_auth", "oidc"));
        assert!(!ns.unqualified("oidc_tokens", "oidc"));
        let ns = Namespaces::new(
            vec![],
            names(&[]),
            vec![("github_auth", None), ("gitlab_auth", None)],
        );
        assert!(!ns.unqualified("github_auth", "alice"));
        assert!(!ns.unqualified("gitlab_auth", "alice"));
        let ns = Namespaces::new(
            vec![],
            names(&["admin"]),
            vec![("oidc_tokens", ci(&["oidc"]))],
        );
        assert!(ns.unqualified("oidc_tokens", "oidc"));
    }

    #[test]
    fn subjects_written_by_administrators_are_split_on_federated_sources_only() {
        assert_eq!(
            parse_subject("github_auth:alice"),
            (Some("github_auth"), "alice")
        );
        assert_eq!(parse_subject("alice"), (None, "alice"));
        assert_eq!(parse_subject("ldap_auth:alice"), (None, "ldap_auth:alice"));
        assert_eq!(parse_subject("github_auth"), (None, "github_auth"));
    }
}
