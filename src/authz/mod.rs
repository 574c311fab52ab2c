//! Authorization: the static ACL (`acl:`), docker_auth compatible, plus `**` globs.
//!
//! Every requested scope (`repository:alice/app:pull,push`) is checked on its own.
//!
//! # Evaluation
//!
//! * Entries are tried **top to bottom; the first whose `match` matches decides**. Later
//!   entries are never consulted. If none matches the result is [`AclDecision::NoMatch`] (the
//!   next authorizer is asked; with none left the scope is denied).
//! * The conditions of one `match` (`account`, `type`, `name`, `service`, `ip`, `labels`) are
//!   **ANDed**. An omitted condition matches anything; `match: {}` matches every request.
//! * `actions: ["*"]` grants every requested action as is (including `delete` or the `*` of
//!   `registry:catalog:*`). Any other list grants the requested actions it contains; a `"*"` in
//!   a longer list is just the literal action `*`. `actions: []` matches and grants nothing: an
//!   explicit deny that stops evaluation.
//! * Everything is case-sensitive.
//!
//! # String patterns (`account`, `type`, `name`, `service`, label values)
//!
//! * **`/regex/`** (longer than two characters, first and last character `/`): a Go RE2 regular
//!   expression matched **anywhere** in the value (`/z$/` matches `baz`; anchor with `^…$`).
//!   `\d`, `\w`, `\s`, `\b` are ASCII-only as in Go (`\d` does not match `٣`); `\/` is a slash.
//! * **Glob** otherwise, matching the **whole** value:
//!   * `*`: any run of characters except `/` (`alice/*` matches `alice/app`, not
//!     `alice/team/app`);
//!   * `**`: any run of characters including `/` (our extension; `alice/**` matches `alice/x`
//!     and `alice/team/app` but **not** `alice` itself; three or more stars act like two);
//!   * `?`: one character except `/`;
//!   * `[abc]`, `[a-z]`, `[^a-z]` (or `[!a-z]`): one character of a class (a class may match
//!     `/`, as in Go's `path.Match`);
//!   * `\x`: the character `x` literally; braces `{a,b}` are literal text.
//!
//!   An empty pattern (`account: ""`) matches only the empty value, i.e. anonymous users.
//!
//! # Placeholders
//!
//! Substituted into a pattern before it is matched. **Every inserted value is quoted**: it
//! only matches itself, in a glob as in a regex, so an account, a label or a CI claim such as
//! `**`, `alice.*` or `/.*/` cannot inject a pattern. Whether a pattern is a glob or a
//! `/regex/` is decided by the text as written, never by an inserted value. A placeholder
//! without a value makes the condition fail. A `\` right before a placeholder is refused (it
//! would escape the inserted value).
//!
//! * `${account}`, `${type}`, `${name}`, `${service}`: the request's value.
//!   `name: "${account}/**"` gives every user their own namespace.
//! * `${account:N}` (likewise `type`, `name`, `service`): capture group `N` of that field's own
//!   `/regex/` in the same entry, matched against the request. Example:
//!   `account: /^(.+)@example\.com$/` with `name: "${account:1}/*"`. If the group does not exist,
//!   the field is not a regex or it does not match, the condition fails.
//! * `${labels:KEY}`: every combination of the user's values of every label the pattern names is
//!   tried and any match counts. A user without the label does not match. Unlike docker_auth, a
//!   label value is not pattern syntax: a label `test/*` matches only the name `test/*`.
//!
//! Unknown placeholders such as `${acount}` are configuration errors.
//!
//! # `ip` and `labels`
//!
//! * `ip`: one address (`192.0.2.7`, `2001:db8::7`) or a network (`192.0.2.0/24`). A request
//!   without a known client address never matches. IPv4 rules also match IPv4-mapped IPv6
//!   clients (`::ffff:192.0.2.7`).
//! * `labels: {team: dev, env: "prod-*"}`: for every key the user must have that label with at
//!   least one value matching the pattern; a missing label does not match.
//!
//! # Cost
//!
//! Patterns are compiled once when the configuration loads; a pattern without placeholders
//! does not allocate when matched. Placeholder patterns are expanded per request; a regex
//! containing a placeholder keeps a bounded cache of its compiled expansions (64, first in first
//! out), so the same account, service or label value is compiled once, not once per scope.
//! Regexes whose expansion changes with the scope (`${type}`, `${name}`, captures) are counted
//! by [`Acl::per_scope_regexes`]; the token endpoint bounds scopes × that count. Label expansion
//! tries the cartesian product of the label values involved.
//!
//! [`Acl::shadowed`] lists entries that can never match because an earlier entry covers them.

mod acl;
mod acl_sql;
mod casbin;
mod casbin_actions;
mod ext_authz;
mod grants;
mod http_authz;
mod matcher;

#[cfg(test)]
mod tests;

pub use acl::{Acl, AclCompileError, AclDecision, AuthzRequest, Shadowed};
pub use acl_sql::{AclSnapshot, AuthzBackendError, SqlAcl, compile_rows, parse_entry};
pub use casbin::{
    CasbinAuthz, MAX_ACTIONS_PER_REQUEST, MAX_ACTIONS_PER_SCOPE,
    check_limits as casbin_check_limits, enforcements as casbin_enforcements, ip_match,
    label_match,
};
pub use ext_authz::{ExtAuthz, ExtAuthzError};
pub use grants::ScopeGrants;
pub use http_authz::HttpAuthz;

/// The requested actions an external authorizer allowed, sorted and deduplicated: an
/// authorizer can only ever narrow a request, never add to it.
pub(crate) fn requested_subset(requested: &[String], allowed: &[String]) -> Vec<String> {
    let mut granted: Vec<String> = requested
        .iter()
        .filter(|a| allowed.contains(a))
        .cloned()
        .collect();
    granted.sort();
    granted.dedup();
    granted
}
