//! Validating the local accounts and their protection: `users`, `users_file`, `robots`,
//! `credential_cache` and `lockout`.
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde_yaml_ng::Value;

use super::{Loader, describe, named_path, user_path, warnings};
use crate::authn::{self, Labels, RobotRecord, Robots, StaticUsers, UserRecord, check_bcrypt_hash};
use crate::authz::ScopeGrants;
use crate::config::file::{CredentialCacheSpec, LockoutSpec, RobotSpec, UserSpec};
use crate::config::{
    ConfigIssue, DEFAULT_CACHE_ENTRIES, DEFAULT_CACHE_TTL, LockoutSettings, sources,
};

impl Loader {
    pub(super) fn users_section(
        &mut self,
        value: Value,
    ) -> Option<Vec<(String, Option<UserSpec>)>> {
        let map = match value {
            Value::Mapping(m) => m,
            Value::Null => return Some(Vec::new()),
            other => {
                self.issue(
                    "users",
                    format!(
                        "expected a mapping of user name to {{password, labels}}, found {}",
                        describe(&other)
                    ),
                );
                return None;
            }
        };
        let mut users = Vec::new();
        for (name, spec) in map {
            let Some(name) = name.as_str().map(str::to_owned) else {
                self.issue(
                    "users",
                    format!("user name {} is not a string; quote it", describe(&name)),
                );
                continue;
            };
            let path = user_path(&name);
            let spec = if spec.is_null() {
                Some(UserSpec::default())
            } else {
                self.de::<UserSpec>(&path, spec)
            };
            users.push((name, spec));
        }
        Some(users)
    }

    pub(super) fn validate_cache(
        &mut self,
        spec: CredentialCacheSpec,
        workers: Option<usize>,
    ) -> Option<authn::CacheSettings> {
        let ttl = match spec.ttl.as_deref() {
            None => Some(DEFAULT_CACHE_TTL),
            Some("0") => Some(Duration::ZERO),
            Some(text) => match humantime::parse_duration(text) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.issue(
                        "credential_cache.ttl",
                        format!(
                            "{text:?} is not a duration ({e}); write e.g. `5m`, or `0s` to \
                                 disable the cache"
                        ),
                    );
                    None
                }
            },
        };
        let max_entries = match spec.max_entries {
            Some(0) => {
                self.issue(
                    "credential_cache.max_entries",
                    "0 entries cannot cache anything; disable the cache with `ttl: 0s` instead",
                );
                None
            }
            other => Some(other.unwrap_or(DEFAULT_CACHE_ENTRIES)),
        };
        let bcrypt_workers = match workers {
            Some(0) => {
                self.issue(
                    "server.bcrypt_workers",
                    "at least 1 worker is needed to check passwords",
                );
                None
            }
            Some(n) => Some(n),
            None => Some(
                std::thread::available_parallelism()
                    .map_or(1, |n| n.get().saturating_sub(1))
                    .max(1),
            ),
        };
        Some(authn::CacheSettings {
            ttl: ttl?,
            max_entries: max_entries?,
            bcrypt_workers: bcrypt_workers?,
        })
    }

    pub(super) fn validate_lockout(&mut self, spec: LockoutSpec) -> Option<LockoutSettings> {
        let d = LockoutSettings::default();
        let mut ok = true;
        let max_failures = match spec.max_failures {
            Some(0) => {
                self.issue(
                    "lockout.max_failures",
                    "0 would lock everybody out at once; use at least 1, or `enabled: false`",
                );
                ok = false;
                0
            }
            Some(n) => n,
            None => d.max_failures,
        };
        let window = self.positive_duration("lockout.window", spec.window, d.window, "5m");
        let cooldown = self.positive_duration("lockout.cooldown", spec.cooldown, d.cooldown, "5m");
        Some(LockoutSettings {
            enabled: spec.enabled.unwrap_or(true),
            max_failures,
            window: window?,
            cooldown: cooldown?,
        })
        .filter(|_| ok)
    }

    pub(super) fn validate_robots(
        &mut self,
        specs: Vec<(String, Option<RobotSpec>)>,
    ) -> Option<(Robots, HashMap<String, ScopeGrants>)> {
        let mut ok = true;
        let mut records = HashMap::new();
        let mut scopes = HashMap::new();
        for (name, spec) in specs {
            let Some(spec) = spec else {
                ok = false;
                continue;
            };
            let path = named_path("robots", &name);
            if !authn::is_valid_robot_name(&name) {
                self.issue(
                    path.clone(),
                    "a robot name must be lower-case letters, digits, `.`, `_` or `-` (it logs \
                     in as `robot$NAME`)",
                );
                ok = false;
            }
            let hash = match (spec.secret, spec.secret_file) {
                (Some(h), None) => Some(h),
                (None, Some(f)) => {
                    let f = self.resolve(format!("{path}.secret_file"), &f);
                    self.private(format!("{path}.secret_file"), &f);
                    match sources::read_to_string(&f) {
                        Ok(text) => Some(text.trim().to_owned()),
                        Err(e) => {
                            self.issue(
                                format!("{path}.secret_file"),
                                format!("cannot read {}: {e}", f.display()),
                            );
                            None
                        }
                    }
                }
                (Some(_), Some(_)) => {
                    self.issue(
                        format!("{path}.secret"),
                        "give `secret` or `secret_file`, not both",
                    );
                    None
                }
                (None, None) => {
                    self.issue(
                        format!("{path}.secret"),
                        "missing; create a robot with `registry-auth robot create NAME --scope …`, \
                         which prints the secret once and the bcrypt hash to put here",
                    );
                    None
                }
            };
            let hash = match hash.map(|h| check_bcrypt_hash(&h).map(|()| h)) {
                Some(Ok(h)) => Some(h),
                Some(Err(e)) => {
                    self.issue(format!("{path}.secret"), e.to_string());
                    None
                }
                None => None,
            };
            let expires = match spec.expires.as_deref() {
                None => Some(None),
                Some(text) => match time::OffsetDateTime::parse(
                    text,
                    &time::format_description::well_known::Rfc3339,
                ) {
                    Ok(t) => Some(Some(SystemTime::from(t))),
                    Err(_) => {
                        self.issue(
                            format!("{path}.expires"),
                            format!(
                                "{text:?} is not an RFC 3339 time; write e.g. \
                                 `2027-01-31T00:00:00Z`"
                            ),
                        );
                        None
                    }
                },
            };
            let grants = if spec.scopes.is_empty() {
                self.issue(
                    format!("{path}.scopes"),
                    "a robot without scopes can do nothing; list what it may do, e.g. \
                     `[\"repository:ci/**:pull,push\"]`",
                );
                None
            } else {
                match ScopeGrants::compile(&spec.scopes) {
                    Ok(g) => Some(g),
                    Err(errors) => {
                        for (i, e) in errors {
                            self.issue(format!("{path}.scopes[{i}]"), e);
                        }
                        None
                    }
                }
            };
            match (hash, expires, grants) {
                (Some(hash), Some(expires), Some(grants)) => {
                    records.insert(name.clone(), RobotRecord { hash, expires });
                    scopes.insert(name, grants);
                }
                _ => ok = false,
            }
        }
        ok.then(|| (Robots::new(records), scopes))
    }

    pub(super) fn validate_users(
        &mut self,
        users: Option<Vec<(String, Option<UserSpec>)>>,
        users_file: Option<PathBuf>,
        robots: Option<Robots>,
        other_backends: bool,
    ) -> Option<authn::Chain> {
        if users.is_none()
            && users_file.is_none()
            && robots.as_ref().is_none_or(Robots::is_empty)
            && !other_backends
        {
            self.issue(
                "users",
                "no users are configured, so every request would be refused; add `users` \
                 (`\"\": {}` allows anonymous access) or `users_file` (an htpasswd -B file)",
            );
            return None;
        }
        let mut ok = true;
        let mut table: HashMap<String, UserRecord> = HashMap::new();
        let mut anonymous: Option<Labels> = None;
        for (name, spec) in users.unwrap_or_default() {
            let Some(spec) = spec else {
                ok = false;
                continue;
            };
            let path = user_path(&name);
            if name.is_empty() {
                if spec.password.is_some() {
                    self.issue(
                        format!("{path}.password"),
                        "the anonymous entry `\"\"` takes no password; remove it (anonymous \
                         clients send no credentials)",
                    );
                    ok = false;
                }
                anonymous = Some(spec.labels);
                continue;
            }
            match spec.password {
                None => {
                    self.issue(
                        format!("{path}.password"),
                        "missing; every named user needs a bcrypt hash (create one with \
                         `registry-auth hash-password` or `htpasswd -nB NAME`); docker_auth \
                         accepted any password here, registry-auth refuses to",
                    );
                    ok = false;
                }
                Some(hash) => match check_bcrypt_hash(&hash) {
                    Ok(()) => {
                        table.insert(
                            name,
                            UserRecord {
                                hash,
                                labels: spec.labels,
                            },
                        );
                    }
                    Err(e) => {
                        self.issue(format!("{path}.password"), e.to_string());
                        ok = false;
                    }
                },
            }
        }
        if let Some(rel) = users_file {
            let path = self.resolve("users_file", &rel);
            match sources::read_to_string(&path) {
                Err(e) => {
                    self.issue(
                        "users_file",
                        format!(
                            "cannot read {}: {e}; point it at an htpasswd file made with \
                             `htpasswd -B`",
                            path.display()
                        ),
                    );
                    ok = false;
                }
                Ok(text) => match authn::htpasswd::parse(&text) {
                    Err(errors) => {
                        for e in errors {
                            self.issue(
                                "users_file",
                                format!("{} line {}: {}", path.display(), e.line, e.message),
                            );
                        }
                        ok = false;
                    }
                    Ok(entries) => {
                        for (name, hash) in entries {
                            match table.entry(name) {
                                std::collections::hash_map::Entry::Occupied(e) => {
                                    self.issues.push(ConfigIssue::new(
                                        "users_file",
                                        format!(
                                            "user `{}` is defined in both `users` and {}; keep \
                                             one definition",
                                            e.key(),
                                            path.display()
                                        ),
                                    ));
                                    ok = false;
                                }
                                std::collections::hash_map::Entry::Vacant(e) => {
                                    e.insert(UserRecord {
                                        hash,
                                        labels: Labels::default(),
                                    });
                                }
                            }
                        }
                    }
                },
            }
        }
        let robots = robots?;
        if !ok {
            return None;
        }
        let robot_names: Vec<(String, u32)> = robots
            .costs()
            .map(|(n, c)| (format!("{}{n}", authn::ROBOT_PREFIX), c))
            .collect();
        let accounts = table
            .iter()
            .filter_map(|(n, u)| Some((n.as_str(), u.hash.get(4..6)?.parse().ok()?)))
            .chain(robot_names.iter().map(|(n, c)| (n.as_str(), *c)));
        self.warnings.extend(warnings::mixed_bcrypt_costs(accounts));
        match authn::Chain::new(StaticUsers::new(table, anonymous), robots) {
            Ok(chain) => Some(chain),
            Err(e) => {
                self.issue("users", e.to_string());
                None
            }
        }
    }
}
