//! Credentials presented by a client and the labels an authenticator attaches to a user.

use std::collections::BTreeMap;
use std::fmt;

/// Labels attached to an authenticated user (`map[string][]string` in docker_auth): for example
/// `groups: [dev, ops]`. ACL entries match on them (`match.labels`) and expand them
/// (`${labels:groups}`).
#[derive(
    Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct Labels(pub BTreeMap<String, Vec<String>>);

impl Labels {
    /// The values of one label, or `None` when the user does not have it.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.0.get(key).map(Vec::as_slice)
    }

    /// True when no label is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, Vec<V>)> for Labels {
    fn from_iter<T: IntoIterator<Item = (K, Vec<V>)>>(iter: T) -> Self {
        Self(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into_iter().map(Into::into).collect()))
                .collect(),
        )
    }
}

/// A password or other secret. `Debug` never shows it; read it with [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True for the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// What a client presented: an account name (empty for anonymous) and a password.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// The account name; `""` means anonymous.
    pub account: String,
    /// The password; empty for anonymous.
    pub password: Secret,
}

impl Credentials {
    /// Anonymous: no account, no password.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// True when no account name was given.
    pub fn is_anonymous(&self) -> bool {
        self.account.is_empty()
    }
}

/// An account name folded the way directories compare names (caseIgnoreMatch): trimmed, every
/// run of whitespace inside collapsed to one space, and lower-cased (Unicode). LDAP binds
/// `ALICE`, ` alice` and `alice` as one account; the lockout keys on this form so they share a
/// counter (folding more than a backend does only makes the lockout stricter for the spellings
/// it merges), and `ldap_auth` uses it to find the typed spelling among an entry's values.
pub fn fold_account(account: &str) -> String {
    let mut out = String::with_capacity(account.len());
    for word in account.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    out
}

/// Where a login comes from, for backends that decide on more than the credentials
/// (`http_auth` sends both to its webhook).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthnContext {
    /// The client's address, when known.
    pub client_ip: Option<std::net::IpAddr>,
    /// The `service` the token is asked for.
    pub service: String,
}
