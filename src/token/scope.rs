//! Parsing of the `scope` parameter of a token request (distribution `scope.md`).
//!
//! A request carries zero or more `scope` parameters; each may hold several resource scopes
//! separated by spaces (`repository:a:pull repository:b:pull,push`). One resource scope is
//! `type[(class)]:name:action[,action]*`:
//!
//! * the type ends at the **first** `:` and the actions start after the **last** `:`, so names
//!   keep a registry `host:port/` prefix (`repository:localhost:5000/a/b:pull`);
//! * the deprecated resource class (`repository(plugin)`) is accepted and dropped;
//! * actions are lower-case words or `*` (`registry:catalog:*`); empty actions are dropped;
//! * the same `(type, name)` requested twice (containerd sends `repository:a:pull` and
//!   `repository:a:pull,push`) becomes one [`Scope`] holding the union of the actions.
//!
//! This module only parses; it does not decide what is granted and knows nothing about HTTP.
//! A [`ScopeError`] is the client's fault: its `Display` text is meant for a 400 response body.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// Most resource scopes accepted in one token request (counted before merging duplicates).
pub const MAX_SCOPES: usize = 512;

/// Longest accepted resource name, in bytes.
pub const MAX_NAME_LEN: usize = 1024;

/// Longest excerpt of client input quoted in an error message, in characters.
const MAX_EXCERPT_CHARS: usize = 100;

/// One requested resource: `repository:alice/app:pull,push`.
///
/// `kind` is the resource type without any resource class; `actions` are sorted and deduplicated
/// (`*` sorts first). An empty `actions` list is valid (`repository:a:`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// Resource type, e.g. `repository` or `registry`.
    pub kind: String,
    /// Resource name, e.g. `alice/app`, `localhost:5000/a/b` or `catalog`.
    pub name: String,
    /// Requested actions, sorted and deduplicated, e.g. `["pull", "push"]` or `["*"]`.
    pub actions: Vec<String>,
}

impl Scope {
    /// Builds a scope, sorting and deduplicating `actions`. No validation is done.
    pub fn new(kind: impl Into<String>, name: impl Into<String>, actions: Vec<String>) -> Scope {
        let mut actions = actions;
        actions.sort_unstable();
        actions.dedup();
        Scope {
            kind: kind.into(),
            name: name.into(),
            actions,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.kind, self.name)?;
        for (i, action) in self.actions.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(action)?;
        }
        Ok(())
    }
}

impl FromStr for Scope {
    type Err = ScopeError;

    /// Parses exactly one resource scope (no space-separated list).
    fn from_str(s: &str) -> Result<Scope, ScopeError> {
        let raw = parse_one(s)?;
        let actions = raw.actions.map(str::to_owned).collect();
        Ok(Scope::new(raw.kind, raw.name, actions))
    }
}

/// Why a `scope` parameter was rejected.
///
/// `input` fields hold the offending resource scope, truncated to at most 100 characters; the
/// `Display` text quotes it with Rust string escaping, so control characters stay visible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// Fewer than two `:` separators.
    #[error("invalid scope {input:?}: expected type:name:actions")]
    Syntax {
        /// The offending scope (truncated).
        input: String,
    },
    /// Nothing before the first `:`.
    #[error("invalid scope {input:?}: the resource type is empty; expected type:name:actions")]
    EmptyType {
        /// The offending scope (truncated).
        input: String,
    },
    /// The type (or its class) is not `[a-z0-9]+`.
    #[error(
        "invalid scope {input:?}: invalid resource type {kind:?}; use lower-case letters and \
         digits, optionally followed by a (class)"
    )]
    InvalidType {
        /// The offending scope (truncated).
        input: String,
        /// The rejected type (truncated).
        kind: String,
    },
    /// Nothing between the type and the actions.
    #[error("invalid scope {input:?}: the resource name is empty")]
    EmptyName {
        /// The offending scope (truncated).
        input: String,
    },
    /// The name contains whitespace or control characters.
    #[error("invalid scope {input:?}: the resource name contains whitespace or control characters")]
    InvalidName {
        /// The offending scope (truncated).
        input: String,
    },
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("invalid scope {input:?}: the resource name is {len} bytes long; the limit is {max}")]
    NameTooLong {
        /// The offending scope (truncated).
        input: String,
        /// Length of the name in bytes.
        len: usize,
        /// The limit, [`MAX_NAME_LEN`].
        max: usize,
    },
    /// An action is neither `[a-z]+` nor `*`.
    #[error(
        "invalid scope {input:?}: invalid action {action:?}; actions are lower-case letters \
         (pull, push, delete, ...) or \"*\""
    )]
    InvalidAction {
        /// The offending scope (truncated).
        input: String,
        /// The rejected action (truncated).
        action: String,
    },
    /// More than [`MAX_SCOPES`] resource scopes in one request.
    #[error("too many scopes: at most {max} resource scopes are accepted in one request")]
    TooMany {
        /// The limit, [`MAX_SCOPES`].
        max: usize,
    },
}

/// Parses every `scope` parameter of a request into merged resource scopes.
///
/// Each parameter may hold several space-separated scopes; empty pieces and empty parameters are
/// ignored. Scopes naming the same `(type, name)` are merged by union of their actions, in the
/// order their resources were first seen. More than [`MAX_SCOPES`] pieces in total is an error.
pub fn parse_scopes<'a, I: IntoIterator<Item = &'a str>>(
    params: I,
) -> Result<Vec<Scope>, ScopeError> {
    // A request names one or two resources: the first LINEAR are found by a scan of an array
    // on the stack; a hash index (SipHash keys, an allocation, ~2,000 instructions per request
    // in callgrind) is only built past them, which keeps MAX_SCOPES pieces linear.
    const LINEAR: usize = 16;
    let mut scopes: Vec<Scope> = Vec::new();
    let mut first: [(&'a str, &'a str); LINEAR] = [("", ""); LINEAR];
    let mut index: HashMap<(&'a str, &'a str), usize> = HashMap::new();
    let mut count = 0usize;
    for param in params {
        for piece in param.split(' ').filter(|p| !p.is_empty()) {
            count += 1;
            if count > MAX_SCOPES {
                return Err(ScopeError::TooMany { max: MAX_SCOPES });
            }
            let raw = parse_one(piece)?;
            let key = (raw.kind, raw.name);
            let known = if scopes.len() <= LINEAR {
                first[..scopes.len()].iter().position(|k| *k == key)
            } else {
                index.get(&key).copied()
            };
            let slot = known.unwrap_or_else(|| {
                let slot = scopes.len();
                scopes.push(Scope {
                    kind: raw.kind.to_owned(),
                    name: raw.name.to_owned(),
                    actions: Vec::new(),
                });
                if slot < LINEAR {
                    first[slot] = key;
                } else {
                    if slot == LINEAR {
                        index.extend(first.iter().enumerate().map(|(i, k)| (*k, i)));
                    }
                    index.insert(key, slot);
                }
                slot
            });
            if let Some(scope) = scopes.get_mut(slot) {
                scope.actions.extend(raw.actions.map(str::to_owned));
            }
        }
    }
    for scope in &mut scopes {
        scope.actions.sort_unstable();
        scope.actions.dedup();
    }
    Ok(scopes)
}

/// A validated resource scope borrowing from the request; actions not yet deduplicated.
struct RawScope<'a, A: Iterator<Item = &'a str>> {
    kind: &'a str,
    name: &'a str,
    actions: A,
}

fn parse_one(piece: &str) -> Result<RawScope<'_, impl Iterator<Item = &str>>, ScopeError> {
    let (Some(first), Some(last)) = (piece.find(':'), piece.rfind(':')) else {
        return Err(ScopeError::Syntax {
            input: excerpt(piece),
        });
    };
    if first == last {
        return Err(ScopeError::Syntax {
            input: excerpt(piece),
        });
    }
    let type_part = &piece[..first];
    let name = &piece[first + 1..last];
    let actions = &piece[last + 1..];

    let kind = parse_type(piece, type_part)?;

    if name.is_empty() {
        return Err(ScopeError::EmptyName {
            input: excerpt(piece),
        });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(ScopeError::NameTooLong {
            input: excerpt(piece),
            len: name.len(),
            max: MAX_NAME_LEN,
        });
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ScopeError::InvalidName {
            input: excerpt(piece),
        });
    }

    if let Some(bad) = actions
        .split(',')
        .find(|a| !a.is_empty() && *a != "*" && !a.bytes().all(|b| b.is_ascii_lowercase()))
    {
        return Err(ScopeError::InvalidAction {
            input: excerpt(piece),
            action: excerpt(bad),
        });
    }

    Ok(RawScope {
        kind,
        name,
        actions: actions.split(',').filter(|a| !a.is_empty()),
    })
}

/// Validates `type` or `type(class)` and returns the type without the class.
fn parse_type<'a>(piece: &str, type_part: &'a str) -> Result<&'a str, ScopeError> {
    if type_part.is_empty() {
        return Err(ScopeError::EmptyType {
            input: excerpt(piece),
        });
    }
    let (kind, class) = match type_part.strip_suffix(')').and_then(|t| t.split_once('(')) {
        Some((kind, class)) => (kind, Some(class)),
        None => (type_part, None),
    };
    let valid = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    if valid(kind) && class.is_none_or(valid) {
        Ok(kind)
    } else {
        Err(ScopeError::InvalidType {
            input: excerpt(piece),
            kind: excerpt(type_part),
        })
    }
}

/// At most [`MAX_EXCERPT_CHARS`] characters of `s`, ending in `...` when cut.
fn excerpt(s: &str) -> String {
    if s.chars().count() <= MAX_EXCERPT_CHARS {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(MAX_EXCERPT_CHARS - 3).collect();
    out.push_str("...");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn scope(kind: &str, name: &str, actions: &[&str]) -> Scope {
        Scope {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    fn parse(params: &[&str]) -> Result<Vec<Scope>, ScopeError> {
        parse_scopes(params.iter().copied())
    }

    /// Resources are merged the same way before and after the scan gives way to the index
    /// (past 16 distinct resources), in first-seen order.
    #[test]
    fn many_resources_merge_like_few() {
        for distinct in [1usize, 15, 16, 17, 40] {
            let mut params: Vec<String> = (0..distinct)
                .map(|i| format!("repository:r{i}:pull"))
                .collect();
            // Every resource again, with another action, after all of them were seen once.
            params.extend((0..distinct).rev().map(|i| format!("repository:r{i}:push")));
            params.push("repository:r0:pull".to_owned());
            let got = parse_scopes(params.iter().map(String::as_str)).unwrap();
            let want: Vec<Scope> = (0..distinct)
                .map(|i| scope("repository", &format!("r{i}"), &["pull", "push"]))
                .collect();
            assert_eq!(got, want, "{distinct} resources");
        }
    }

    #[test]
    fn simple() {
        assert_eq!(
            parse(&["repository:samalba/my-app:pull"]).unwrap(),
            vec![scope("repository", "samalba/my-app", &["pull"])]
        );
    }

    #[test]
    fn multiple_actions_sorted_and_deduped() {
        assert_eq!(
            parse(&["repository:alice/app:push,pull,push"]).unwrap(),
            vec![scope("repository", "alice/app", &["pull", "push"])]
        );
        assert_eq!(
            parse(&["repository:a:pull,*,delete"]).unwrap(),
            vec![scope("repository", "a", &["*", "delete", "pull"])]
        );
    }

    #[test]
    fn resource_class_is_dropped() {
        assert_eq!(
            parse(&["repository(plugin):vieux/sshfs:pull"]).unwrap(),
            vec![scope("repository", "vieux/sshfs", &["pull"])]
        );
        // Class and no class name the same resource, so they merge.
        assert_eq!(
            parse(&["repository(plugin):p:pull", "repository:p:push"]).unwrap(),
            vec![scope("repository", "p", &["pull", "push"])]
        );
    }

    #[test]
    fn name_keeps_host_and_port() {
        assert_eq!(
            parse(&["repository:localhost:5000/a/b:pull"]).unwrap(),
            vec![scope("repository", "localhost:5000/a/b", &["pull"])]
        );
        assert_eq!(
            parse(&["repository:registry.example.com:443/x:pull,push"]).unwrap(),
            vec![scope(
                "repository",
                "registry.example.com:443/x",
                &["pull", "push"]
            )]
        );
    }

    #[test]
    fn registry_catalog_wildcard() {
        assert_eq!(
            parse(&["registry:catalog:*"]).unwrap(),
            vec![scope("registry", "catalog", &["*"])]
        );
        assert_eq!(
            parse(&["registry:catalog:search"]).unwrap(),
            vec![scope("registry", "catalog", &["search"])]
        );
    }

    #[test]
    fn space_separated_list_in_one_param() {
        assert_eq!(
            parse(&["repository:a:pull,push  repository:b:pull "]).unwrap(),
            vec![
                scope("repository", "a", &["pull", "push"]),
                scope("repository", "b", &["pull"]),
            ]
        );
    }

    #[test]
    fn repeated_params_keep_first_seen_order() {
        assert_eq!(
            parse(&[
                "repository:z:pull",
                "repository:a:push",
                "registry:catalog:*"
            ])
            .unwrap(),
            vec![
                scope("repository", "z", &["pull"]),
                scope("repository", "a", &["push"]),
                scope("registry", "catalog", &["*"]),
            ]
        );
    }

    #[test]
    fn duplicates_merge_by_union() {
        // containerd: same repository twice with different action lists.
        assert_eq!(
            parse(&["repository:a:pull", "repository:a:pull,push"]).unwrap(),
            vec![scope("repository", "a", &["pull", "push"])]
        );
        // skopeo retry: exact duplicates.
        assert_eq!(
            parse(&["repository:a:pull", "repository:a:pull"]).unwrap(),
            vec![scope("repository", "a", &["pull"])]
        );
        // Same name, different type: two resources.
        assert_eq!(
            parse(&[
                "repository:x:pull",
                "registry:x:pull",
                "repository:x:delete"
            ])
            .unwrap(),
            vec![
                scope("repository", "x", &["delete", "pull"]),
                scope("registry", "x", &["pull"]),
            ]
        );
    }

    #[test]
    fn empty_params_are_ignored() {
        assert_eq!(parse(&[]).unwrap(), vec![]);
        assert_eq!(parse(&[""]).unwrap(), vec![]);
        assert_eq!(parse(&["", "   ", "repository:a:pull"]).unwrap().len(), 1);
    }

    #[test]
    fn empty_actions_are_dropped() {
        assert_eq!(
            parse(&["repository:a:"]).unwrap(),
            vec![scope("repository", "a", &[])]
        );
        assert_eq!(
            parse(&["repository:a:,pull,,"]).unwrap(),
            vec![scope("repository", "a", &["pull"])]
        );
    }

    #[test]
    fn malformed_syntax() {
        for input in ["foo", "a:b", "repository"] {
            let err = parse(&[input]).unwrap_err();
            assert_eq!(
                err,
                ScopeError::Syntax {
                    input: input.into()
                }
            );
            assert_eq!(
                err.to_string(),
                format!("invalid scope \"{input}\": expected type:name:actions")
            );
        }
    }

    #[test]
    fn malformed_type() {
        let err = parse(&[":name:pull"]).unwrap_err();
        assert!(matches!(err, ScopeError::EmptyType { .. }));
        assert_eq!(
            err.to_string(),
            "invalid scope \":name:pull\": the resource type is empty; expected type:name:actions"
        );

        let err = parse(&["Repository:a:pull"]).unwrap_err();
        assert_eq!(
            err,
            ScopeError::InvalidType {
                input: "Repository:a:pull".into(),
                kind: "Repository".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "invalid scope \"Repository:a:pull\": invalid resource type \"Repository\"; use \
             lower-case letters and digits, optionally followed by a (class)"
        );

        for input in [
            "repo-sitory:a:pull",
            "repository():a:pull",
            "repository(Plugin):a:pull",
            "(plugin):a:pull",
            "repository(plugin:a:pull",
            "repository(a)(b):x:pull",
        ] {
            assert!(
                matches!(parse(&[input]), Err(ScopeError::InvalidType { .. })),
                "{input}"
            );
        }
    }

    #[test]
    fn malformed_name() {
        let err = parse(&["repository::pull"]).unwrap_err();
        assert_eq!(
            err,
            ScopeError::EmptyName {
                input: "repository::pull".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "invalid scope \"repository::pull\": the resource name is empty"
        );

        let err = parse(&["repository:a\tb:pull"]).unwrap_err();
        assert!(matches!(err, ScopeError::InvalidName { .. }));
        assert_eq!(
            err.to_string(),
            "invalid scope \"repository:a\\tb:pull\": the resource name contains whitespace or \
             control characters"
        );
        assert!(matches!(
            parse(&["repository:a\u{0}b:pull"]),
            Err(ScopeError::InvalidName { .. })
        ));

        let long = format!("repository:{}:pull", "a".repeat(MAX_NAME_LEN + 1));
        let err = parse(&[&long]).unwrap_err();
        assert!(matches!(
            err,
            ScopeError::NameTooLong {
                len: 1025,
                max: 1024,
                ..
            }
        ));
        let max = format!("repository:{}:pull", "a".repeat(MAX_NAME_LEN));
        assert_eq!(parse(&[&max]).unwrap()[0].name.len(), MAX_NAME_LEN);
    }

    #[test]
    fn malformed_actions() {
        let err = parse(&["repository:a:PULL"]).unwrap_err();
        assert_eq!(
            err,
            ScopeError::InvalidAction {
                input: "repository:a:PULL".into(),
                action: "PULL".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "invalid scope \"repository:a:PULL\": invalid action \"PULL\"; actions are \
             lower-case letters (pull, push, delete, ...) or \"*\""
        );
        for input in [
            "repository:a:pull;push",
            "repository:a:pu11",
            "repository:a:**",
            "repository:a:pull,*x",
            "repository:a:pull\t",
        ] {
            assert!(
                matches!(parse(&[input]), Err(ScopeError::InvalidAction { .. })),
                "{input}"
            );
        }
    }

    #[test]
    fn error_in_second_piece_quotes_that_piece() {
        let err = parse(&["repository:a:pull", "repository:b:pull bad"]).unwrap_err();
        assert_eq!(
            err,
            ScopeError::Syntax {
                input: "bad".into()
            }
        );
    }

    #[test]
    fn too_many_scopes() {
        let ok: Vec<String> = (0..MAX_SCOPES)
            .map(|i| format!("repository:r{i}:pull"))
            .collect();
        assert_eq!(
            parse_scopes(ok.iter().map(String::as_str)).unwrap().len(),
            MAX_SCOPES
        );

        // Counted before merging: 513 copies of the same scope are still too many.
        let same = vec!["repository:a:pull"; MAX_SCOPES + 1];
        let err = parse(&same).unwrap_err();
        assert_eq!(err, ScopeError::TooMany { max: MAX_SCOPES });
        assert_eq!(
            err.to_string(),
            "too many scopes: at most 512 resource scopes are accepted in one request"
        );

        let one_param = vec!["repository:a:pull"; MAX_SCOPES + 1].join(" ");
        assert_eq!(
            parse(&[&one_param]),
            Err(ScopeError::TooMany { max: MAX_SCOPES })
        );
    }

    #[test]
    fn long_input_is_truncated_in_messages() {
        let input = format!("{}:x", "x".repeat(500));
        let err = parse(&[&input]).unwrap_err();
        let ScopeError::Syntax { input: quoted } = &err else {
            panic!("unexpected {err:?}");
        };
        assert_eq!(quoted.chars().count(), 100);
        assert!(quoted.ends_with("..."));
        assert!(err.to_string().len() < 160);

        // Multi-byte characters are cut on a character boundary.
        let input = format!("{}:x", "é".repeat(300));
        let ScopeError::Syntax { input: quoted } = parse(&[&input]).unwrap_err() else {
            panic!("expected a syntax error");
        };
        assert_eq!(quoted.chars().count(), 100);
    }

    #[test]
    fn display_and_from_str_round_trip() {
        for text in [
            "repository:alice/app:pull,push",
            "repository:localhost:5000/a/b:pull",
            "registry:catalog:*",
            "repository:a:",
            "repository:a:*,delete,pull,push",
        ] {
            let parsed: Scope = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
            let again: Scope = parsed.to_string().parse().unwrap();
            assert_eq!(again, parsed);
        }
        let s: Scope = "repository(plugin):p:push,pull,pull".parse().unwrap();
        assert_eq!(s.to_string(), "repository:p:pull,push");
        assert!("foo".parse::<Scope>().is_err());
        assert!(
            "repository:a:pull repository:b:pull"
                .parse::<Scope>()
                .is_err()
        );
    }

    #[test]
    fn scope_new_normalises_actions() {
        let s = Scope::new(
            "repository",
            "a",
            vec!["push".into(), "pull".into(), "push".into()],
        );
        assert_eq!(s.actions, vec!["pull", "push"]);
    }
}
