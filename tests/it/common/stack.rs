//! One registry + one registry-auth server + the clients of a test, in one temp dir.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::sync::Mutex;

use super::clients::Clients;
use super::image;
use super::keys::{KeyFiles, KeySetup, bcrypt_hash, yaml_str};
use super::registry::{Registry, RegistryKind, RegistryOptions, RegistrySpec};
use super::server::{self, AuthServer};

pub const ISSUER: &str = "Acme auth server";
pub const SERVICE: &str = "Docker registry";

/// A user of a test config.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password: String,
    /// Extra YAML for the user entry, e.g. `labels: {team: [dev]}`.
    pub extra: String,
}

impl User {
    /// A user with a fresh random password.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            password: format!("{name}-pw-{}", image::random_hex(8)),
            extra: String::new(),
        }
    }
}

/// Builds the YAML of a test config: `token:` from `keys`, `users:` with bcrypt hashes
/// (cost 4), optional anonymous user, and the given `acl:` body.
pub fn config_yaml(keys: &KeyFiles, users: &[User], anonymous: bool, acl: &str) -> String {
    let mut s = format!(
        "server:\n  addr: \"127.0.0.1:0\"\ntoken:\n  issuer: {}\n  expiration: 900\n{}users:\n",
        yaml_str(ISSUER),
        keys.token_yaml()
    );
    if anonymous {
        s.push_str("  \"\": {}\n");
    }
    for u in users {
        let _ = write!(
            s,
            "  {}:\n    password: {}\n",
            yaml_str(&u.name),
            yaml_str(&bcrypt_hash(&u.password))
        );
        if !u.extra.is_empty() {
            let _ = writeln!(s, "    {}", u.extra);
        }
    }
    s.push_str("acl:\n");
    s.push_str(acl);
    if !acl.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// Which registry a [`Stack`] starts and how that registry trusts the server's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trust {
    pub kind: RegistryKind,
    /// `rootcertbundle` = the key setup's bundle.
    pub bundle: bool,
    /// `jwks` = the output of `registry-auth jwks --config FILE` (v3 only).
    pub jwks: bool,
}

impl Trust {
    /// `kind` with `rootcertbundle` only.
    pub const fn bundle(kind: RegistryKind) -> Self {
        Self {
            kind,
            bundle: true,
            jwks: false,
        }
    }

    /// What the registry is told, in a test title: `v3.1.1 rootcertbundle+jwks`.
    pub fn describe(&self) -> String {
        let what: Vec<&str> = [("rootcertbundle", self.bundle), ("jwks", self.jwks)]
            .iter()
            .filter(|(_, on)| *on)
            .map(|(k, _)| *k)
            .collect();
        format!("{} {}", self.kind.version(), what.join("+"))
    }
}

#[derive(Debug)]
pub struct Stack {
    pub clients: Clients,
    pub registry: Registry,
    pub server: AuthServer,
    pub keys: KeyFiles,
    /// name → password (only users with a password).
    pub users: BTreeMap<String, String>,
    /// Every password any step sent (right or wrong), for the log secrecy check.
    pub sent_passwords: Mutex<Vec<(String, String)>>,
    /// Every token the tests received.
    pub tokens: Mutex<Vec<String>>,
    /// Removed last, after every process above stopped.
    _tmp: tempfile::TempDir,
}

impl Stack {
    /// Keys per `setup`, config from `users`/`anonymous`/`acl`, then server, then registry.
    pub fn start(setup: KeySetup, users: &[User], anonymous: bool, acl: &str) -> Self {
        Self::start_on(
            Trust::bundle(RegistryKind::V2),
            setup,
            users,
            anonymous,
            acl,
        )
    }

    /// [`Stack::start`] with the registry and trust settings of `trust`.
    pub fn start_on(
        trust: Trust,
        setup: KeySetup,
        users: &[User],
        anonymous: bool,
        acl: &str,
    ) -> Self {
        let tmp = tempdir("ra-it");
        let keys = KeyFiles::write(setup, &tmp.path().join("keys"));
        let config = tmp.path().join("registry-auth.yml");
        fs::write(&config, config_yaml(&keys, users, anonymous, acl)).expect("write config");
        let users = users
            .iter()
            .map(|u| (u.name.clone(), u.password.clone()))
            .collect();
        Self::start_with_config_on(trust, tmp, keys, config, users)
    }

    /// Starts with a config file already written into `tmp`.
    pub fn start_with_config(
        tmp: tempfile::TempDir,
        keys: KeyFiles,
        config: PathBuf,
        users: BTreeMap<String, String>,
    ) -> Self {
        Self::start_with_config_on(Trust::bundle(RegistryKind::V2), tmp, keys, config, users)
    }

    /// [`Stack::start_with_config`] with the registry and trust settings of `trust`.
    pub fn start_with_config_on(
        trust: Trust,
        tmp: tempfile::TempDir,
        keys: KeyFiles,
        config: PathBuf,
        users: BTreeMap<String, String>,
    ) -> Self {
        let server = AuthServer::start(&config, &tmp.path().join("registry-auth.log"));
        assert!(
            keys.bundle.is_file(),
            "the registry's rootcertbundle {} does not exist after the server started{}",
            keys.bundle.display(),
            if keys.setup == KeySetup::Generate {
                " (token.generate: true should have created it)"
            } else {
                ""
            }
        );
        let mut opts = RegistryOptions::new(trust.kind);
        opts.bundle = trust.bundle;
        if trust.jwks {
            opts.jwks = Some(write_jwks(&config, &tmp.path().join("jwks.json")));
        }
        let registry = Registry::start_with(
            &tmp.path().join("registry"),
            &RegistrySpec {
                realm: server.realm(),
                service: SERVICE.to_owned(),
                issuer: ISSUER.to_owned(),
                rootcertbundle: keys.bundle.clone(),
            },
            &opts,
        );
        let img = image::build(&tmp.path().join("image"), "latest");
        let clients = Clients::new(&tmp.path().join("clients"), &registry.addr, img);
        Self {
            clients,
            registry,
            server,
            keys,
            users,
            sent_passwords: Mutex::new(Vec::new()),
            tokens: Mutex::new(Vec::new()),
            _tmp: tmp,
        }
    }

    pub fn password(&self, user: &str) -> &str {
        self.users
            .get(user)
            .unwrap_or_else(|| panic!("no password for user {user:?} in this test"))
    }

    /// Records credentials a step is about to send.
    pub fn note_sent(&self, user: &str, password: &str) {
        self.sent_passwords
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((user.to_owned(), password.to_owned()));
    }

    pub fn note_token(&self, token: &str) {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(token.to_owned());
    }

    /// Tails of our server's and the registry's logs (and dockerd's, if used).
    pub fn diagnostics(&self) -> String {
        let mut s = format!(
            "--- registry-auth log (last 25 lines of {}) ---\n{}--- registry log (last 15 lines) ---\n{}",
            self.server.log.display(),
            self.server.log_tail(25),
            self.registry.log_tail(15),
        );
        let complaints = self.registry.token_complaints();
        if !complaints.is_empty() {
            let _ = write!(
                s,
                "--- registry: why tokens were refused ---\n{complaints}\n"
            );
        }
        if let Some(d) = self.clients.dockerd_log_tail(10) {
            let _ = write!(s, "--- dockerd log (last 10 lines) ---\n{d}");
        }
        s
    }

    /// Log secrecy: no password (configured or sent), no `user:password` base64, no token.
    pub fn assert_log_secrecy(&self) {
        let mut secrets: Vec<(String, String)> = self
            .users
            .iter()
            .map(|(u, p)| (u.clone(), p.clone()))
            .collect();
        secrets.extend(
            self.sent_passwords
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        );
        let tokens = self
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        server::assert_log_has_no_secrets(&self.server.log, &secrets, &tokens);
    }
}

/// Writes the registry's `jwks` file the way docs/src/registry/index.md says: `registry-auth jwks --config
/// FILE --output OUT`.
pub fn write_jwks(config: &std::path::Path, out: &std::path::Path) -> PathBuf {
    let config = config.to_string_lossy();
    let path = out.to_string_lossy();
    let r = server::run_cli(&["jwks", "--config", &config, "--output", &path]);
    assert!(
        r.success() && out.is_file(),
        "registry-auth jwks --config {config} --output {path} failed:\n{}",
        r.describe()
    );
    out.to_owned()
}

/// A temp dir under /tmp (short paths: unix socket paths are limited). Kept after the test
/// (logs, configs, keys) when `REGISTRY_AUTH_IT_KEEP=1`.
pub fn tempdir(prefix: &str) -> tempfile::TempDir {
    let keep = std::env::var_os("REGISTRY_AUTH_IT_KEEP").is_some_and(|v| !v.is_empty() && v != "0");
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .disable_cleanup(keep)
        .tempdir_in("/tmp")
        .expect("create temp dir");
    if keep {
        eprintln!("REGISTRY_AUTH_IT_KEEP: keeping {}", dir.path().display());
    }
    dir
}
