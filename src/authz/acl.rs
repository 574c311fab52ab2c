//! The static ACL: compiled entries, first-match evaluation and the shadowing linter.

use std::cell::OnceCell;
use std::fmt;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::matcher::{Env, Field, Pattern};
use crate::authn::Labels;
use crate::config::file::AclEntrySpec;

/// One scope of a token request, as the ACL sees it.
#[derive(Debug, Clone, Copy)]
pub struct AuthzRequest<'a> {
    /// The authenticated account, canonical in its source; `""` for anonymous.
    pub account: &'a str,
    /// The source that vouched for the account ([`crate::authn::Identity::source`]).
    pub source: &'a str,
    /// Whether entries without `match.source` apply (see [`crate::authn::principal`]).
    pub unqualified: bool,
    /// Scope type, e.g. `repository` or `registry`.
    pub kind: &'a str,
    /// Resource name, e.g. `alice/app`, `localhost:5000/x/y` or `catalog`.
    pub name: &'a str,
    /// The `service` the token is for.
    pub service: &'a str,
    /// Client address; `None` never matches an entry that sets `ip`.
    pub ip: Option<IpAddr>,
    /// The user's labels.
    pub labels: &'a Labels,
    /// Requested actions, sorted and deduplicated by the caller.
    pub actions: &'a [String],
}

impl AuthzRequest<'_> {
    /// The principal's subject: the account, or `source:account` for a qualified principal.
    /// What external authorizers and Casbin see as the account.
    pub fn subject(&self) -> std::borrow::Cow<'_, str> {
        crate::authn::principal::subject(self.source, self.account, self.unqualified)
    }
}

/// The outcome of evaluating the ACL for one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclDecision {
    /// Entry `entry` (index in the `acl` list) matched first and decides: `granted` (sorted) may
    /// be empty, which is an explicit denial.
    Matched {
        /// Index of the deciding entry.
        entry: usize,
        /// The granted actions, sorted; a subset of the requested ones.
        granted: Vec<String>,
    },
    /// No entry matched: ask the next authorizer, deny if there is none.
    NoMatch,
}

/// A problem in one ACL entry found while compiling it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclCompileError {
    /// Index of the entry in the `acl` list.
    pub index: usize,
    /// The offending field: `match.name`, `match.labels.team`, `match.ip`, `actions` …
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for AclCompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "acl[{}].{}: {}", self.index, self.field, self.message)
    }
}

impl std::error::Error for AclCompileError {}

/// Entry `index` can never match: entry `by`, earlier in the list, matches every request it
/// matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shadowed {
    /// The entry that is never reached.
    pub index: usize,
    /// The earlier entry that always wins.
    pub by: usize,
}

/// The compiled static ACL. Cheap to share: `Send + Sync`; the only interior mutability is the
/// bounded cache of compiled regex expansions.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    entries: Vec<Entry>,
    /// See [`Acl::per_scope_regexes`].
    per_scope_regexes: usize,
}

#[derive(Debug, Clone)]
struct Entry {
    /// Indexed by [`Field::index`].
    fields: [Option<Pattern>; 4],
    /// `match.source`: the sources whose principals this entry is for; `None` for the
    /// unqualified principals (see [`crate::authn::principal`]).
    sources: Option<Vec<String>>,
    ip: Option<IpNet>,
    labels: Vec<(String, Pattern)>,
    actions: Actions,
    comment: Option<String>,
}

#[derive(Debug, Clone)]
enum Actions {
    /// `["*"]`: everything that was requested.
    All,
    /// Sorted, deduplicated; empty is an explicit deny.
    Listed(Vec<String>),
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Acl>();
};

impl Acl {
    /// Compiles the `acl:` section, reporting every problem at once.
    pub fn compile(specs: &[AclEntrySpec]) -> Result<Self, Vec<AclCompileError>> {
        let mut errors = Vec::new();
        let mut entries = Vec::with_capacity(specs.len());
        for (index, spec) in specs.iter().enumerate() {
            if let Some(entry) = compile_entry(index, spec, &mut errors) {
                entries.push(entry);
            }
        }
        if errors.is_empty() {
            let per_scope_regexes = entries
                .iter()
                .flat_map(|e| {
                    e.fields
                        .iter()
                        .flatten()
                        .chain(e.labels.iter().map(|(_, p)| p))
                })
                .filter(|p| p.varies_per_scope())
                .count();
            Ok(Self {
                entries,
                per_scope_regexes,
            })
        } else {
            Err(errors)
        }
    }

    /// Evaluates the entries in order; the first whose `match` matches decides.
    pub fn authorize(&self, req: &AuthzRequest<'_>) -> AclDecision {
        for (index, entry) in self.entries.iter().enumerate() {
            if entry.matches(req) {
                let mut granted: Vec<String> = match &entry.actions {
                    Actions::All => req.actions.to_vec(),
                    Actions::Listed(allowed) => req
                        .actions
                        .iter()
                        .filter(|a| allowed.binary_search(a).is_ok())
                        .cloned()
                        .collect(),
                };
                granted.sort_unstable();
                granted.dedup();
                return AclDecision::Matched {
                    entry: index,
                    granted,
                };
            }
        }
        AclDecision::NoMatch
    }

    /// Entries that can never match because an earlier entry matches everything they match.
    /// Conservative: an entry is only reported when that is certain. Each shadowed entry is
    /// reported once, with the first entry that covers it.
    pub fn shadowed(&self) -> Vec<Shadowed> {
        let mut out = Vec::new();
        for (index, later) in self.entries.iter().enumerate() {
            if let Some(by) = self.entries[..index].iter().position(|e| e.covers(later)) {
                out.push(Shadowed { index, by });
            }
        }
        out
    }

    /// How many `/regex/` patterns of this ACL use `${type}`, `${name}` or a capture, and so may
    /// be compiled once per scope of a request: the token endpoint bounds scopes × this.
    pub fn per_scope_regexes(&self) -> usize {
        self.per_scope_regexes
    }

    /// The `comment` of entry `index`, if it has one.
    pub fn comment(&self, index: usize) -> Option<&str> {
        self.entries.get(index)?.comment.as_deref()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries (every request is `NoMatch`).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn compile_entry(
    index: usize,
    spec: &AclEntrySpec,
    errors: &mut Vec<AclCompileError>,
) -> Option<Entry> {
    let before = errors.len();
    let mut error = |field: String, message: String| {
        errors.push(AclCompileError {
            index,
            field,
            message,
        });
    };
    let m = &spec.matches;
    let raw_fields = [&m.account, &m.kind, &m.name, &m.service];
    let mut fields: [Option<Pattern>; 4] = Default::default();
    for (field, raw) in Field::ALL.into_iter().zip(raw_fields) {
        if let Some(raw) = raw {
            match Pattern::compile(raw) {
                Ok(p) => fields[field.index()] = Some(p),
                Err(message) => error(format!("match.{}", field.key()), message),
            }
        }
    }
    let sources = m.source.as_ref().map(|s| {
        let list = s.names().to_vec();
        for name in &list {
            if !crate::authn::principal::SOURCES.contains(&name.as_str()) {
                let suggestion = crate::authn::principal::SOURCES
                    .iter()
                    .min_by_key(|known| strsim::levenshtein(known, name))
                    .filter(|known| strsim::levenshtein(known, name) <= 3)
                    .map(|known| format!(" (did you mean `{known}`?)"))
                    .unwrap_or_default();
                error(
                    "match.source".to_owned(),
                    format!(
                        "`{name}` is not a source{suggestion}; a source is one of {}",
                        crate::authn::principal::SOURCES.join(", ")
                    ),
                );
            }
        }
        if list.is_empty() {
            error(
                "match.source".to_owned(),
                "an empty list matches nobody; name at least one source".to_owned(),
            );
        }
        list
    });
    let ip = match m.ip.as_deref().map(parse_ip_rule) {
        Some(Ok(net)) => Some(net),
        Some(Err(message)) => {
            error("match.ip".to_owned(), message);
            None
        }
        None => None,
    };
    let mut labels = Vec::with_capacity(m.labels.len());
    for (key, raw) in &m.labels {
        match Pattern::compile(raw) {
            Ok(p) => labels.push((key.clone(), p)),
            Err(message) => error(format!("match.labels.{key}"), message),
        }
    }
    let actions = if spec.actions.len() == 1 && spec.actions[0] == "*" {
        Actions::All
    } else {
        for action in &spec.actions {
            if let Some(message) = action_problem(action) {
                error("actions".to_owned(), message);
            }
        }
        let mut list = spec.actions.clone();
        list.sort_unstable();
        list.dedup();
        Actions::Listed(list)
    };
    (errors.len() == before).then(|| Entry {
        fields,
        sources,
        ip,
        labels,
        actions,
        comment: spec.comment.clone(),
    })
}

fn action_problem(action: &str) -> Option<String> {
    if action.is_empty() {
        return Some("an empty action can never be requested; remove it".to_owned());
    }
    if action.contains(',') || action.contains(char::is_whitespace) {
        let parts: Vec<&str> = action
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|p| !p.is_empty())
            .collect();
        return Some(format!(
            "`{action}` is a single action name containing a separator, so it never matches; \
             list the actions separately: [{}]",
            parts.join(", ")
        ));
    }
    None
}

/// A single address (IPv4 → /32, IPv6 → /128; an IPv4-mapped IPv6 address counts as IPv4, as
/// in Go) or a CIDR (host bits are ignored).
fn parse_ip_rule(s: &str) -> Result<IpNet, String> {
    if let Ok(addr) = s.parse::<IpAddr>() {
        let net = match addr {
            IpAddr::V4(a) => IpNet::V4(Ipv4Net::from(a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => IpNet::V4(Ipv4Net::from(v4)),
                None => IpNet::V6(Ipv6Net::from(a)),
            },
        };
        return Ok(net);
    }
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    let why = if s.contains('*') {
        "wildcards are not supported; write a network instead (`10.1.2.*` is `10.1.2.0/24`)"
    } else if let Some((addr, len)) = s.split_once('/') {
        match addr.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => {
                if len.parse::<u8>().is_ok() {
                    "the prefix length of an IPv4 network must be 0 to 32"
                } else {
                    "the prefix length after `/` must be a number from 0 to 32"
                }
            }
            Ok(IpAddr::V6(_)) => {
                "the prefix length of an IPv6 network must be a number from 0 to 128"
            }
            Err(_) => "the part before `/` is not an IP address",
        }
    } else {
        "it is neither an IP address nor a CIDR network"
    };
    Err(format!(
        "`{s}` is not a valid IP rule: {why}. Write one address (`192.0.2.7`, `2001:db8::7`) or \
         a network (`192.0.2.0/24`, `2001:db8::/32`)"
    ))
}

fn ip_matches(net: &IpNet, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpNet::V4(n), IpAddr::V4(a)) => n.contains(&a),
        (IpNet::V4(n), IpAddr::V6(a)) => a.to_ipv4_mapped().is_some_and(|a| n.contains(&a)),
        (IpNet::V6(n), IpAddr::V6(a)) => n.contains(&a),
        (IpNet::V6(n), IpAddr::V4(a)) => n.contains(&a.to_ipv6_mapped()),
    }
}

/// Placeholder values for one request against one entry. Captures are computed on first use.
struct RequestEnv<'r, 'a> {
    req: &'r AuthzRequest<'a>,
    entry: &'r Entry,
    captures: [OnceCell<Option<Vec<String>>>; 4],
}

impl Env for RequestEnv<'_, '_> {
    fn var(&self, field: Field) -> &str {
        match field {
            Field::Account => self.req.account,
            Field::Type => self.req.kind,
            Field::Name => self.req.name,
            Field::Service => self.req.service,
        }
    }

    fn capture(&self, field: Field, group: usize) -> Option<&str> {
        let groups = self.captures[field.index()].get_or_init(|| {
            self.entry.fields[field.index()]
                .as_ref()?
                .capture_groups(self.var(field), self)
        });
        let groups = groups.as_ref()?;
        groups.get(group.checked_sub(1)?).map(String::as_str)
    }

    fn labels(&self, key: &str) -> Option<&[String]> {
        self.req.labels.get(key)
    }
}

impl Entry {
    fn matches(&self, req: &AuthzRequest<'_>) -> bool {
        // Who the entry is for comes first: a name is only a name within its source.
        let for_principal = match &self.sources {
            Some(sources) => sources.iter().any(|s| s == req.source),
            None => req.unqualified,
        };
        if !for_principal {
            return false;
        }
        if let Some(net) = &self.ip
            && !req.ip.is_some_and(|ip| ip_matches(net, ip))
        {
            return false;
        }
        let env = RequestEnv {
            req,
            entry: self,
            captures: Default::default(),
        };
        for field in Field::ALL {
            if let Some(p) = &self.fields[field.index()]
                && !p.matches(env.var(field), &env)
            {
                return false;
            }
        }
        self.labels.iter().all(|(key, p)| {
            req.labels
                .get(key)
                .is_some_and(|values| values.iter().any(|v| p.matches(v, &env)))
        })
    }

    /// Does this entry surely match every request `later` matches?
    fn covers(&self, later: &Self) -> bool {
        let ip_ok = match (&self.ip, &later.ip) {
            (None, _) => true,
            (Some(mine), Some(theirs)) => mine.contains(theirs),
            (Some(_), None) => false,
        };
        let sources_ok = match (&self.sources, &later.sources) {
            (None, None) => true,
            (Some(mine), Some(theirs)) => theirs.iter().all(|t| mine.contains(t)),
            _ => false,
        };
        ip_ok
            && sources_ok
            && Field::ALL.into_iter().all(|f| {
                self.pattern_covers(
                    self.fields[f.index()].as_ref(),
                    later,
                    later.fields[f.index()].as_ref(),
                )
            })
            && self.labels.iter().all(|(key, mine)| {
                let theirs = later.labels.iter().find(|(k, _)| k == key).map(|(_, p)| p);
                // Without the key in `later`, a user lacking the label would match it only.
                theirs.is_some() && self.pattern_covers(Some(mine), later, theirs)
            })
    }

    fn pattern_covers(
        &self,
        mine: Option<&Pattern>,
        later: &Self,
        theirs: Option<&Pattern>,
    ) -> bool {
        let Some(mine) = mine else {
            return true;
        };
        if mine.matches_everything() {
            return true;
        }
        let Some(theirs) = theirs else {
            return false;
        };
        if mine.raw() == theirs.raw() {
            // Same text expands the same way, provided captured fields are the same too.
            return mine.capture_fields().all(|f| {
                let a = self.fields[f.index()].as_ref().map(Pattern::raw);
                let b = later.fields[f.index()].as_ref().map(Pattern::raw);
                a == b
            });
        }
        mine.surely_covers(theirs)
    }
}
