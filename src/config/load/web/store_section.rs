//! Validating `store` and docker_auth's token DBs (mapped onto the store): the minted
//! passwords' store of the web logins and, with Redis or PostgreSQL, the replicas' shared state.

use std::path::{Path, PathBuf};

use super::super::Loader;
use crate::authn::Secret;
use crate::config::ConfigIssue;
use crate::config::file::{StoreKindSpec, StoreSpec, WebCommonSpec};
use crate::store::{self, StoreSettings};

/// The embedded store's file in `data_dir`.
const EMBEDDED_FILE: &str = "passwords.db";

impl Loader {
    /// A folder or a file that may not exist yet, resolved like [`Loader::resolve`].
    pub(super) fn resolve_dir(&self, key: &str, path: &Path) -> PathBuf {
        let resolved = if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        };
        self.note_file(key, &resolved);
        resolved
    }

    /// The store: `store:`, else a docker_auth token DB of a section, else the embedded file.
    pub(super) fn store_settings(
        &mut self,
        spec: Option<&StoreSpec>,
        data_dir: &Path,
        token_dbs: &[(String, StoreSettings)],
        web_configured: bool,
    ) -> Option<StoreSettings> {
        if let Some(spec) = spec {
            if let Some((section, _)) = token_dbs.first() {
                self.issue(
                    section.clone(),
                    format!(
                        "both `store` and a docker_auth token DB are set; one store serves every \
                         web login: keep `store` and remove `{section}`"
                    ),
                );
                return None;
            }
            return self.store_spec(spec, data_dir);
        }
        if let Some((first, settings)) = token_dbs.first() {
            if let Some((other, theirs)) = token_dbs.iter().find(|(_, s)| s != settings) {
                self.issue(
                    other.clone(),
                    format!(
                        "points at {}, but {first} at {}; registry-auth keeps every web login's \
                         passwords in one store: remove the token DBs and configure the store \
                         once as top-level `store` (e.g. `store: {{type: redis, url: …}}`, or \
                         give every `level_token_db` a path in the same folder)",
                        theirs.describe(),
                        settings.describe()
                    ),
                );
                return None;
            }
            return Some(settings.clone());
        }
        web_configured.then(|| StoreSettings::Embedded {
            path: data_dir.join(EMBEDDED_FILE),
        })
    }

    pub(super) fn store_spec(
        &mut self,
        spec: &StoreSpec,
        data_dir: &Path,
    ) -> Option<StoreSettings> {
        let kind = spec.kind.unwrap_or(StoreKindSpec::Embedded);
        let url = match (&spec.url, &spec.url_file) {
            (Some(_), Some(_)) => {
                self.issue("store.url_file", "set `url` or `url_file`, not both");
                return None;
            }
            (Some(u), None) => Some(u.trim().to_owned()),
            (None, Some(f)) => {
                let resolved = self.resolve("store.url_file", f);
                self.private("store.url_file", &resolved);
                match crate::config::sources::read_to_string(&resolved) {
                    Ok(t) if !t.trim().is_empty() => Some(t.trim().to_owned()),
                    Ok(_) => {
                        self.issue("store.url_file", format!("{} is empty", resolved.display()));
                        return None;
                    }
                    Err(e) => {
                        self.issue(
                            "store.url_file",
                            format!("cannot read {}: {e}", resolved.display()),
                        );
                        return None;
                    }
                }
            }
            (None, None) => None,
        };
        if kind != StoreKindSpec::Redis && !self.no_redis_tls_keys(spec, kind) {
            return None;
        }
        match kind {
            StoreKindSpec::Embedded => {
                if url.is_some() {
                    self.issue(
                        "store.url",
                        "the embedded store is a file: set `path` (or nothing, for \
                         data_dir/passwords.db), not `url`",
                    );
                    return None;
                }
                let path = match &spec.path {
                    Some(p) => self.resolve_dir("store.path", p),
                    None => data_dir.join(EMBEDDED_FILE),
                };
                Some(StoreSettings::Embedded { path })
            }
            StoreKindSpec::Redis | StoreKindSpec::Postgres => {
                let name = if kind == StoreKindSpec::Redis {
                    "redis"
                } else {
                    "postgres"
                };
                if spec.path.is_some() {
                    self.issue(
                        "store.path",
                        format!("`path` is for the embedded store; a {name} store needs `url`"),
                    );
                    return None;
                }
                let Some(url) = url else {
                    self.issue(
                        "store.url",
                        format!(
                            "missing; a {name} store needs `url` (or `url_file`), e.g. {}",
                            if kind == StoreKindSpec::Redis {
                                "`redis://127.0.0.1:6379/0`, \
                                 `redis+sentinel://sentinel-1:26379,sentinel-2:26379/mymaster/0` \
                                 or `redis+cluster://node-1:6379,node-2:6379`"
                            } else {
                                "`postgres://registry_auth:PASSWORD@db:5432/registry`"
                            }
                        ),
                    );
                    return None;
                };
                let key = if spec.url_file.is_some() {
                    "store.url_file"
                } else {
                    "store.url"
                };
                self.warnings.extend(if kind == StoreKindSpec::Redis {
                    super::super::warnings::redis_transport(key, &url)
                } else {
                    super::super::warnings::postgres_transport(key, &url)
                });
                if kind == StoreKindSpec::Redis {
                    match store::parse_redis_url(&url) {
                        Ok(target) => self
                            .redis_tls(spec, key, target)
                            .map(|target| StoreSettings::Redis { target }),
                        Err(e) => {
                            self.issue("store.url", e);
                            None
                        }
                    }
                } else {
                    match store::check_postgres_url(&url) {
                        Ok(()) => Some(StoreSettings::Postgres {
                            url: Secret::new(url),
                        }),
                        Err(e) => {
                            self.issue("store.url", e);
                            None
                        }
                    }
                }
            }
        }
    }

    /// A docker_auth token DB inside a section, mapped onto the store, with a warning saying
    /// what it became. `out` collects (key, store) for [`Loader::store_settings`].
    pub(super) fn token_db(
        &mut self,
        section: &str,
        c: &WebCommonSpec,
        data_dir: &Path,
        out: &mut Vec<(String, StoreSettings)>,
    ) -> bool {
        let mut ok = true;
        if c.gcs_token_db.is_some() {
            self.issue(
                format!("{section}.gcs_token_db"),
                "docker_auth's Google Cloud Storage token DB is not supported (registry-auth \
                 keeps minted passwords in one store it can lock and expire, and has no GCS \
                 client); remove `gcs_token_db` and set top-level `store`: `{type: redis, url: \
                 …}` or `{type: postgres, url: …}` for several replicas, or nothing (an embedded \
                 file in data_dir) for one",
            );
            ok = false;
        }
        if let Some(level) = &c.level_token_db {
            let key = format!("{section}.level_token_db");
            // docker_auth's LevelDB is a folder; the embedded store is a file next to it, so a
            // volume mounted for the LevelDB keeps the passwords too.
            let (path, place) = match &level.path {
                Some(p) => {
                    let folder = self.resolve_dir(&format!("{key}.path"), p);
                    let parent = folder.parent().map_or(folder.clone(), Path::to_path_buf);
                    (
                        parent.join(EMBEDDED_FILE),
                        format!(
                            " next to the LevelDB folder {}",
                            std::path::absolute(&folder)
                                .unwrap_or_else(|_| folder.clone())
                                .display()
                        ),
                    )
                }
                None => (data_dir.join(EMBEDDED_FILE), " in data_dir".to_owned()),
            };
            self.warnings.push(ConfigIssue::new(
                key.clone(),
                format!(
                    "docker_auth's LevelDB token DB is mapped onto the embedded store {}{place} \
                     (LevelDB is not read: people sign in once more); write `store: {{type: \
                     embedded, path: …}}` instead to silence this",
                    std::path::absolute(&path)
                        .unwrap_or_else(|_| path.clone())
                        .display()
                ),
            ));
            out.push((key, StoreSettings::Embedded { path }));
        }
        if let Some(r) = &c.redis_token_db {
            let path = format!("{section}.redis_token_db");
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            // The URL, and the same with the password shown as `***` for the warning.
            let auth = |u: &Option<String>, p: &Option<String>| match (u, p) {
                (Some(u), Some(p)) => (
                    format!("{}:{}@", enc(u), enc(p)),
                    format!("{}:***@", enc(u)),
                ),
                (None, Some(p)) => (format!(":{}@", enc(p)), ":***@".to_owned()),
                _ => (String::new(), String::new()),
            };
            if let Some(c) = &r.redis_cluster_options {
                let addrs = c.addrs.as_deref().unwrap_or_default();
                if addrs.is_empty() || addrs.iter().any(|a| a.is_empty() || a.contains(',')) {
                    self.issue(
                        format!("{path}.redis_cluster_options.addrs"),
                        "needs a list of `host:port` (some nodes of the cluster)",
                    );
                    return false;
                }
                let (auth, shown) = auth(&c.username, &c.password);
                let hosts = addrs.join(",");
                let s = Self::tls_s(&c.tlsconfig);
                ok &= self.redis_token_db(
                    path,
                    "Redis Cluster token DB",
                    "redis_cluster_options",
                    [
                        format!("redis{s}+cluster://{auth}{hosts}"),
                        format!("redis{s}+cluster://{shown}{hosts}"),
                    ],
                    out,
                );
            } else if let Some(o) = &r.redis_options {
                if o.network.as_deref().is_some_and(|n| n != "tcp") {
                    self.issue(
                        format!("{path}.redis_options.network"),
                        "only `tcp` is supported (the store connects to `host:port`); use the \
                         Redis server's TCP address in `addr`",
                    );
                    return false;
                }
                let Some(addr) = o.addr.as_deref().filter(|a| !a.is_empty()) else {
                    self.issue(format!("{path}.redis_options.addr"), "missing `host:port`");
                    return false;
                };
                let (auth, shown) = auth(&o.username, &o.password);
                let db = o.db.unwrap_or(0);
                let s = Self::tls_s(&o.tlsconfig);
                ok &= self.redis_token_db(
                    path,
                    "Redis token DB",
                    "redis_options",
                    [
                        format!("redis{s}://{auth}{addr}/{db}"),
                        format!("redis{s}://{shown}{addr}/{db}"),
                    ],
                    out,
                );
            } else {
                self.issue(path, "needs `redis_options: {addr: HOST:PORT}`");
                ok = false;
            }
        }
        ok
    }

    /// docker_auth's Redis token DB at `path` (`what`, options under `options`) mapped onto a
    /// Redis `store` at `url` (`shown`: the same URL with the password as `***`): the transport
    /// warning, the mapping warning, and the store in `out`; false after an issue.
    fn redis_token_db(
        &mut self,
        path: String,
        what: &str,
        options: &str,
        [url, shown]: [String; 2],
        out: &mut Vec<(String, StoreSettings)>,
    ) -> bool {
        self.warnings
            .extend(super::super::warnings::redis_transport(&path, &url));
        match store::parse_redis_url(&url) {
            Ok(target) => {
                self.warnings.push(ConfigIssue::new(
                    path.clone(),
                    format!(
                        "docker_auth's {what} is mapped onto `store: {{type: redis, url: \
                         \"{shown}\"}}` (docker_auth's entries are not read: people sign in \
                         once more); write that `store` instead (the password in `url_file`) \
                         to silence this"
                    ),
                ));
                out.push((path, StoreSettings::Redis { target }));
                true
            }
            Err(e) => {
                self.issue(format!("{path}.{options}"), e);
                false
            }
        }
    }

    /// `s` (`rediss://`) when go-redis options carry a `tlsconfig`, else nothing.
    fn tls_s(tlsconfig: &Option<serde_json::Value>) -> &'static str {
        match tlsconfig {
            Some(v) if !v.is_null() => "s",
            _ => "",
        }
    }
}
