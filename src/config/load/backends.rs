//! Validating the directory, webhook and program backends: `ldap_auth`, `http_auth`,
//! `http_authz`, `ext_auth`, `ext_authz`.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::Uri;

use super::Loader;
use crate::authn::Secret;
use crate::authn::ldap::{LdapAuth, LdapBind, LdapLabel, LdapSettings, LdapTls};
use crate::client_tls::{Trust, client_config};
use crate::config::file::{ExtSpec, HttpHookSpec, LdapSpec, LdapTlsSpec};
use crate::ext::ExtProgram;
use crate::webhook::{Webhook, WebhookSettings};

/// Default for `ldap_auth.max_connections`.
const DEFAULT_LDAP_CONNECTIONS: usize = 10;
/// Default for `http_auth.max_concurrent` / `http_authz.max_concurrent`.
const DEFAULT_HOOK_CONCURRENCY: usize = 16;
/// Shortest HMAC secret accepted.
const MIN_HMAC_SECRET: usize = 32;

impl Loader {
    /// Reads a secret file (trimmed), recording a problem at `path` when it cannot be used.
    fn secret_file(&mut self, path: &str, file: &Path, what: &str) -> Option<Secret> {
        let resolved = self.resolve(path, file);
        self.private(path, &resolved);
        match crate::config::sources::read_to_string(&resolved) {
            Ok(text) if text.trim().is_empty() => {
                self.issue(
                    path,
                    format!("{} is empty; it must hold {what}", resolved.display()),
                );
                None
            }
            Ok(text) => Some(Secret::new(text.trim())),
            Err(e) => {
                self.issue(
                    path,
                    format!(
                        "cannot read {}: {e}; it must hold {what}",
                        resolved.display()
                    ),
                );
                None
            }
        }
    }

    /// `ldap_auth`.
    pub(super) fn validate_ldap(&mut self, spec: LdapSpec) -> Option<LdapAuth> {
        let mut ok = true;
        let port = match spec.addr.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                port.parse::<u16>().ok()
            }
            _ => {
                self.issue(
                    "ldap_auth.addr",
                    format!(
                        "{:?} is not `host:port`; write e.g. `ldap.example.com:636` (LDAPS) or \
                         `ldap.example.com:389`",
                        spec.addr
                    ),
                );
                None
            }
        };
        let tls = match spec.tls {
            Some(LdapTlsSpec::None) => LdapTls::None,
            Some(LdapTlsSpec::Always) => LdapTls::Always,
            Some(LdapTlsSpec::Starttls) => LdapTls::StartTls,
            None if port == Some(636) => LdapTls::Always,
            None => LdapTls::None,
        };
        self.warnings.extend(super::warnings::ldap_transport(
            &spec.addr,
            tls,
            spec.insecure_tls_skip_verify,
        ));
        let tls_config = if tls == LdapTls::None {
            if spec.ca_certificate.is_some() || spec.insecure_tls_skip_verify {
                self.issue(
                    "ldap_auth.tls",
                    "`ca_certificate` and `insecure_tls_skip_verify` need TLS: set `tls: always` \
                     (LDAPS) or `tls: starttls`, or remove them",
                );
                ok = false;
            }
            None
        } else {
            self.outbound_tls(
                "ldap_auth",
                spec.ca_certificate.as_deref(),
                spec.insecure_tls_skip_verify,
                false,
            )
        };
        let bind = match (
            spec.initial_bind_as_user,
            spec.bind_dn,
            spec.bind_password_file,
        ) {
            (true, Some(dn), None) if dn.contains("${account}") => {
                Some(LdapBind::AsUser { dn_template: dn })
            }
            (true, Some(_), None) => {
                self.issue(
                    "ldap_auth.bind_dn",
                    "with `initial_bind_as_user`, `bind_dn` is the user's DN with `${account}`, \
                     e.g. `uid=${account},ou=people,dc=example,dc=com`",
                );
                None
            }
            (true, None, _) => {
                self.issue(
                    "ldap_auth.bind_dn",
                    "missing; `initial_bind_as_user` binds as `bind_dn` with `${account}` \
                     replaced by the user name, e.g. `uid=${account},ou=people,dc=example,dc=com`",
                );
                None
            }
            (true, Some(_), Some(_)) => {
                self.issue(
                    "ldap_auth.bind_password_file",
                    "not used with `initial_bind_as_user` (the user's own password binds); \
                     remove it, or remove `initial_bind_as_user` to search as a service account",
                );
                None
            }
            (false, Some(dn), Some(file)) => {
                if dn.contains("${account}") {
                    self.issue(
                        "ldap_auth.bind_dn",
                        "contains `${account}` but `initial_bind_as_user` is not set; a \
                         service account's DN is fixed",
                    );
                    None
                } else {
                    self.secret_file(
                        "ldap_auth.bind_password_file",
                        &file,
                        "the service account's password",
                    )
                    .map(|password| LdapBind::Service { dn, password })
                }
            }
            (false, Some(_), None) => {
                self.issue(
                    "ldap_auth.bind_password_file",
                    "missing; the service account `bind_dn` needs its password in a file",
                );
                None
            }
            (false, None, Some(_)) => {
                self.issue(
                    "ldap_auth.bind_dn",
                    "missing; `bind_password_file` is the password of the service account \
                     `bind_dn`",
                );
                None
            }
            (false, None, None) => Some(LdapBind::Anonymous),
        };
        if spec.base.trim().is_empty() {
            self.issue(
                "ldap_auth.base",
                "empty; set the DN under which users are searched, e.g. \
                 `ou=people,dc=example,dc=com`",
            );
            ok = false;
        }
        if !spec.filter.contains("${account}") {
            self.issue(
                "ldap_auth.filter",
                format!(
                    "{:?} does not contain `${{account}}`, so it would find the same entry for \
                     every user; write e.g. `(uid=${{account}})`",
                    spec.filter
                ),
            );
            ok = false;
        } else if ldap3::parse_filter(spec.filter.replace("${account}", "x")).is_err() {
            self.issue(
                "ldap_auth.filter",
                format!(
                    "{:?} is not an LDAP filter (RFC 4515); write e.g. \
                     `(&(objectClass=person)(uid=${{account}}))`",
                    spec.filter
                ),
            );
            ok = false;
        }
        let account_attribute = match spec.account_attribute {
            Some(a) if a.trim().is_empty() => {
                self.issue(
                    "ldap_auth.account_attribute",
                    "empty; name the attribute that holds the user name, e.g. `uid`",
                );
                ok = false;
                String::new()
            }
            Some(a) => a.trim().to_owned(),
            None => match crate::authn::ldap::filter_account_attribute(&spec.filter) {
                Some(a) => a,
                None => {
                    if spec.filter.contains("${account}") {
                        self.issue(
                            "ldap_auth.account_attribute",
                            format!(
                                "missing, and {:?} does not compare an attribute with \
                                 `${{account}}` (as in `(uid=${{account}})`); name the attribute \
                                 that holds the user name, e.g. `account_attribute: uid`",
                                spec.filter
                            ),
                        );
                        ok = false;
                    }
                    String::new()
                }
            },
        };
        let mut labels = Vec::new();
        for (name, l) in spec.labels {
            if l.attribute.trim().is_empty() {
                self.issue(
                    format!("ldap_auth.labels.{name}.attribute"),
                    "empty; name the attribute whose values become this label, e.g. `memberOf`",
                );
                ok = false;
                continue;
            }
            labels.push(LdapLabel {
                name,
                attribute: l.attribute,
                parse_cn: l.parse_cn,
                lower_case: l.lower_case,
            });
        }
        let timeout = self.positive_duration(
            "ldap_auth.timeout",
            spec.timeout,
            Duration::from_secs(5),
            "5s",
        );
        let max_connections = match spec.max_connections {
            Some(0) => {
                self.issue(
                    "ldap_auth.max_connections",
                    "0 would never reach the server; use at least 1",
                );
                None
            }
            Some(n) => Some(n),
            None => Some(DEFAULT_LDAP_CONNECTIONS),
        };
        let tls_config = if tls == LdapTls::None {
            Some(None)
        } else {
            tls_config.map(Some)
        };
        let settings = LdapSettings {
            addr: spec.addr,
            tls,
            tls_config: tls_config?,
            bind: bind?,
            base: spec.base,
            filter: spec.filter,
            labels,
            account_attribute,
            timeout: timeout?,
            max_connections: max_connections?,
        };
        port?;
        ok.then(|| LdapAuth::new(settings))
    }

    /// A TLS client configuration for an outbound connection of `section`.
    fn outbound_tls(
        &mut self,
        section: &str,
        ca: Option<&Path>,
        insecure: bool,
        alpn_http1: bool,
    ) -> Option<Arc<rustls::ClientConfig>> {
        let trust = match (ca, insecure) {
            (Some(_), true) => {
                self.issue(
                    format!("{section}.insecure_tls_skip_verify"),
                    "`ca_certificate` and `insecure_tls_skip_verify` contradict each other; keep \
                     `ca_certificate`",
                );
                return None;
            }
            (Some(ca), false) => Some(self.resolve(format!("{section}.ca_certificate"), ca)),
            (None, _) => None,
        };
        let result = match (&trust, insecure) {
            (Some(path), _) => client_config(Trust::CaFile(path), alpn_http1),
            (None, true) => client_config(Trust::Insecure, alpn_http1),
            (None, false) => client_config(Trust::System, alpn_http1),
        };
        match result {
            Ok(c) => Some(c),
            Err(e) => {
                self.issue(format!("{section}.ca_certificate"), e);
                None
            }
        }
    }

    /// `http_auth` / `http_authz`.
    pub(super) fn validate_hook(
        &mut self,
        section: &'static str,
        spec: HttpHookSpec,
    ) -> Option<Arc<Webhook>> {
        let mut ok = true;
        let url = match spec.url.parse::<Uri>() {
            Ok(u)
                if matches!(u.scheme_str(), Some("http" | "https"))
                    && u.host().is_some_and(|h| !h.is_empty()) =>
            {
                if u.authority().is_some_and(|a| a.as_str().contains('@')) {
                    self.issue(
                        format!("{section}.url"),
                        "holds credentials (`user:password@`); put a token in \
                         `bearer_token_file` instead",
                    );
                    None
                } else {
                    Some(u)
                }
            }
            _ => {
                self.issue(
                    format!("{section}.url"),
                    format!(
                        "{:?} is not an http:// or https:// URL; write e.g. \
                         `https://hooks.example.com/registry/{}`",
                        spec.url,
                        if section == "http_auth" {
                            "authn"
                        } else {
                            "authz"
                        }
                    ),
                );
                None
            }
        };
        let https = url
            .as_ref()
            .is_some_and(|u| u.scheme_str() == Some("https"));
        let tls = if https {
            self.outbound_tls(section, spec.ca_certificate.as_deref(), false, true)
                .map(Some)
        } else {
            if spec.ca_certificate.is_some() && url.is_some() {
                self.issue(
                    format!("{section}.ca_certificate"),
                    "only used with an https:// URL; remove it or use https",
                );
                ok = false;
            }
            Some(None)
        };
        let timeout = self.positive_duration(
            &format!("{section}.timeout"),
            spec.timeout,
            Duration::from_secs(5),
            "5s",
        );
        let cache_ttl = match spec.cache_ttl.as_deref() {
            None | Some("0" | "0s") => Some(None),
            Some(text) => match humantime::parse_duration(text) {
                Ok(d) if d.is_zero() => Some(None),
                Ok(d) => Some(Some(d)),
                Err(e) => {
                    self.issue(
                        format!("{section}.cache_ttl"),
                        format!(
                            "{text:?} is not a duration ({e}); write e.g. `10s`, or leave it out \
                             to ask the webhook every time"
                        ),
                    );
                    None
                }
            },
        };
        let max_concurrent = match spec.max_concurrent {
            Some(0) => {
                self.issue(
                    format!("{section}.max_concurrent"),
                    "0 would never call the webhook; use at least 1",
                );
                None
            }
            Some(n) => Some(n),
            None => Some(DEFAULT_HOOK_CONCURRENCY),
        };
        let bearer_token = match &spec.bearer_token_file {
            None => Some(None),
            Some(f) => self
                .secret_file(
                    &format!("{section}.bearer_token_file"),
                    f,
                    "the token sent as `Authorization: Bearer …`",
                )
                .map(Some),
        };
        let hmac_secret = match &spec.hmac_secret_file {
            None => Some(None),
            Some(f) => {
                let path = format!("{section}.hmac_secret_file");
                match self.secret_file(&path, f, "the HMAC key of the request signature") {
                    Some(s) if s.expose().len() < MIN_HMAC_SECRET => {
                        self.issue(
                            path,
                            format!(
                                "the secret is {} bytes; use at least {MIN_HMAC_SECRET} random \
                                 bytes, e.g. `head -c 48 /dev/urandom | base64 > hmac.secret`",
                                s.expose().len()
                            ),
                        );
                        None
                    }
                    other => other.map(Some),
                }
            }
        };
        let settings = WebhookSettings {
            name: section,
            url: url?,
            tls: tls?,
            timeout: timeout?,
            bearer_token: bearer_token?,
            hmac_secret: hmac_secret?,
            max_concurrent: max_concurrent?,
            cache_ttl: cache_ttl?,
        };
        if !ok {
            return None;
        }
        match Webhook::new(settings) {
            Ok(hook) => Some(hook),
            Err(e) => {
                self.issue(format!("{section}.bearer_token_file"), e);
                None
            }
        }
    }

    /// An `ext_auth`/`ext_authz` program.
    pub(super) fn validate_ext(&mut self, section: &str, spec: ExtSpec) -> Option<Arc<ExtProgram>> {
        let command = if spec.command.contains('/') {
            let p = self.resolve(format!("{section}.command"), Path::new(&spec.command));
            p.is_file().then_some(p)
        } else {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(&spec.command))
                    .find(|p| p.is_file())
            })
        };
        let Some(command) = command else {
            self.issue(
                format!("{section}.command"),
                format!(
                    "{:?} not found (a name is looked up on PATH, a path with `/` is relative to \
                     the config folder); the program is run directly, not through a shell",
                    spec.command
                ),
            );
            return None;
        };
        self.note_file(format!("{section}.command"), &command);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if fs::metadata(&command).is_ok_and(|m| m.permissions().mode() & 0o111 == 0) {
                self.issue(
                    format!("{section}.command"),
                    format!("{} is not executable; `chmod +x` it", command.display()),
                );
                return None;
            }
        }
        let timeout = self.positive_duration(
            &format!("{section}.timeout"),
            spec.timeout,
            Duration::from_secs(5),
            "5s",
        )?;
        let max = match spec.max_concurrent {
            Some(0) => {
                self.issue(
                    format!("{section}.max_concurrent"),
                    "0 would never run the program; use at least 1",
                );
                return None;
            }
            Some(n) => n,
            None => 16,
        };
        Some(ExtProgram::new(command, spec.args, timeout, max))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::config::{AuthnBackend, AuthzBackend, Config, ConfigError, ConfigIssue, load};
    use crate::token::{self, KeyKind};

    struct Dir(tempfile::TempDir);

    impl Dir {
        fn new() -> Self {
            let d = Self(tempfile::tempdir().unwrap());
            let key = token::generate_self_signed(KeyKind::EcP256, "t", 30).unwrap();
            token::write_key_files(&key, &d.path("key.pem"), &d.path("cert.pem")).unwrap();
            d.write("svc.pw", "s3rvice-pass\n");
            d.write("hmac.secret", &"k".repeat(40));
            d.write("token.txt", "tok-123\n");
            d
        }

        fn path(&self, name: &str) -> PathBuf {
            self.0.path().join(name)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let p = self.path(name);
            std::fs::write(&p, text).unwrap();
            p
        }

        fn load(&self, yaml: &str) -> Result<Config, ConfigError> {
            let full =
                format!("token: {{issuer: Acme, certificate: cert.pem, key: key.pem}}\n{yaml}");
            load(&self.write("config.yml", &full))
        }
    }

    const LDAP: &str = "ldap_auth:\n  addr: 127.0.0.1:389\n  bind_dn: cn=svc,dc=x\n  \
                        bind_password_file: svc.pw\n  base: dc=x\n  filter: (uid=${account})\n";

    fn issues(result: Result<Config, ConfigError>) -> Vec<ConfigIssue> {
        match result {
            Err(ConfigError::Invalid { issues, .. }) => issues,
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => panic!("config unexpectedly valid"),
        }
    }

    fn one(result: Result<Config, ConfigError>, path: &str) -> String {
        let issues = issues(result);
        issues
            .iter()
            .find(|i| i.path == path)
            .map(|i| i.message.clone())
            .unwrap_or_else(|| panic!("no issue at {path}; got {issues:#?}"))
    }

    fn authn_names(c: &Config) -> Vec<&'static str> {
        c.authn_order.iter().map(AuthnBackend::name).collect()
    }

    fn authz_names(c: &Config) -> Vec<&'static str> {
        c.authz_order.iter().map(AuthzBackend::name).collect()
    }

    #[test]
    fn ldap_alone_is_enough_and_joins_the_chain_after_users() {
        let d = Dir::new();
        let c = d.load(&format!("{LDAP}acl: []\n")).unwrap();
        assert_eq!(authn_names(&c), ["ldap_auth"]);
        let c = d
            .load(&format!(
                "{LDAP}users: {{\"\": {{}}}}\nacl: []\nhttp_auth: {{url: \"http://127.0.0.1:9/a\"}}\n"
            ))
            .unwrap();
        assert_eq!(authn_names(&c), ["users", "ldap_auth", "http_auth"]);
        assert!(c.sources.iter().any(|s| s.path.ends_with("svc.pw")));
        let c = d
            .load(&format!(
                "{LDAP}users: {{\"\": {{}}}}\nacl: []\nauthn_order: [ldap_auth, users]\n"
            ))
            .unwrap();
        assert_eq!(authn_names(&c), ["ldap_auth", "users"]);
        let msg = one(
            d.load(&format!("{LDAP}acl: []\nauthn_order: [ldap]\n")),
            "authn_order[0]",
        );
        assert!(
            msg.contains("ldap_auth") && msg.contains("http_auth"),
            "{msg}"
        );
    }

    #[test]
    fn ldap_keys_are_checked() {
        let d = Dir::new();
        let msg = one(
            d.load(&format!("{LDAP}  bindn: x\nacl: []\n")),
            "ldap_auth.bindn",
        );
        assert!(msg.contains("did you mean `bind_dn`"), "{msg}");
        let msg = one(
            d.load(&format!(
                "{LDAP}  labels: {{groups: {{atribute: memberOf}}}}\nacl: []\n"
            )),
            "ldap_auth.labels.groups.atribute",
        );
        assert!(msg.contains("attribute"), "{msg}");
        let msg = one(
            d.load(&(LDAP.replace("svc.pw", "missing.pw") + "acl: []\n")),
            "ldap_auth.bind_password_file",
        );
        assert!(msg.contains("missing.pw"), "{msg}");
        d.write("empty.pw", "  \n");
        let msg = one(
            d.load(&(LDAP.replace("svc.pw", "empty.pw") + "acl: []\n")),
            "ldap_auth.bind_password_file",
        );
        assert!(msg.contains("empty"), "{msg}");
        let msg = one(
            d.load(&(LDAP.replace("(uid=${account})", "(uid=alice)") + "acl: []\n")),
            "ldap_auth.filter",
        );
        assert!(msg.contains("${account}"), "{msg}");
        let msg = one(
            d.load(&(LDAP.replace("(uid=${account})", "\"uid=${account}))\"") + "acl: []\n")),
            "ldap_auth.filter",
        );
        assert!(msg.contains("not an LDAP filter"), "{msg}");
        let msg = one(
            d.load(&(LDAP.replace("127.0.0.1:389", "ldap.example.com") + "acl: []\n")),
            "ldap_auth.addr",
        );
        assert!(msg.contains("host:port"), "{msg}");
        let msg = one(
            d.load(&(LDAP.replace("  bind_password_file: svc.pw\n", "") + "acl: []\n")),
            "ldap_auth.bind_password_file",
        );
        assert!(msg.contains("missing"), "{msg}");
        let msg = one(
            d.load(&format!("{LDAP}  ca_certificate: ca.pem\nacl: []\n")),
            "ldap_auth.tls",
        );
        assert!(msg.contains("need TLS"), "{msg}");
        let msg = one(
            d.load(&format!(
                "{LDAP}  tls: always\n  ca_certificate: nope.pem\nacl: []\n"
            )),
            "ldap_auth.ca_certificate",
        );
        assert!(msg.contains("nope.pem"), "{msg}");
        let msg = one(
            d.load(&format!("{LDAP}  tls: sometimes\nacl: []\n")),
            "ldap_auth.tls",
        );
        assert!(msg.contains("none, always, starttls"), "{msg}");
        let msg = one(
            d.load(&format!(
                "{LDAP}  max_connections: 0\n  timeout: 0s\nacl: []\n"
            )),
            "ldap_auth.max_connections",
        );
        assert!(msg.contains("at least 1"), "{msg}");
    }

    #[test]
    fn ldap_tls_modes_and_bind_modes() {
        let d = Dir::new();
        // docker_auth's `tls: ""` is plain LDAP; port 636 defaults to LDAPS.
        d.load(&format!("{LDAP}  tls: \"\"\nacl: []\n")).unwrap();
        d.load(&(LDAP.replace(":389", ":636") + "  insecure_tls_skip_verify: true\nacl: []\n"))
            .unwrap();
        let msg = one(
            d.load(
                &(LDAP.replace(":389", ":636")
                    + "  ca_certificate: c.pem\n  insecure_tls_skip_verify: true\nacl: []\n"),
            ),
            "ldap_auth.insecure_tls_skip_verify",
        );
        assert!(msg.contains("contradict"), "{msg}");
        let as_user = "ldap_auth:\n  addr: 127.0.0.1:389\n  initial_bind_as_user: true\n  \
                       bind_dn: \"uid=${account},dc=x\"\n  base: dc=x\n  filter: (uid=${account})\n";
        d.load(&format!("{as_user}acl: []\n")).unwrap();
        let msg = one(
            d.load(&format!("{as_user}  bind_password_file: svc.pw\nacl: []\n")),
            "ldap_auth.bind_password_file",
        );
        assert!(msg.contains("initial_bind_as_user"), "{msg}");
        let msg = one(
            d.load(&(as_user.replace("uid=${account},dc=x", "cn=svc,dc=x") + "acl: []\n")),
            "ldap_auth.bind_dn",
        );
        assert!(msg.contains("${account}"), "{msg}");
        // Anonymous searches: neither bind_dn nor a password file.
        d.load("ldap_auth: {addr: \"h:389\", base: dc=x, filter: \"(uid=${account})\"}\nacl: []\n")
            .unwrap();
    }

    #[test]
    fn webhook_keys_are_checked() {
        let d = Dir::new();
        let c = d
            .load(
                "users: {\"\": {}}\nhttp_authz:\n  url: http://127.0.0.1:9/authz\n  \
                 bearer_token_file: token.txt\n  hmac_secret_file: hmac.secret\n  \
                 cache_ttl: 10s\n  max_concurrent: 2\n  timeout: 2s\n",
            )
            .unwrap();
        // http_authz alone is enough (no acl).
        assert_eq!(authz_names(&c), ["http_authz"]);
        let c = d
            .load("users: {\"\": {}}\nacl: []\next_authz: {command: /bin/true}\nhttp_authz: {url: \"https://h.example/z\"}\n")
            .unwrap();
        assert_eq!(authz_names(&c), ["acl", "ext_authz", "http_authz"]);
        for (url, needle) in [
            ("ftp://h/x", "http:// or https://"),
            ("not a url", "http:// or https://"),
            ("http://user:pw@h/x", "bearer_token_file"),
        ] {
            let msg = one(
                d.load(&format!(
                    "users: {{\"\": {{}}}}\nacl: []\nhttp_auth: {{url: \"{url}\"}}\n"
                )),
                "http_auth.url",
            );
            assert!(msg.contains(needle), "{url}: {msg}");
        }
        let base = "users: {\"\": {}}\nacl: []\nhttp_auth:\n  url: http://127.0.0.1:9/a\n";
        let msg = one(
            d.load(&format!("{base}  ca_certificate: ca.pem\n")),
            "http_auth.ca_certificate",
        );
        assert!(msg.contains("https"), "{msg}");
        d.write("short.secret", "tooshort");
        let msg = one(
            d.load(&format!("{base}  hmac_secret_file: short.secret\n")),
            "http_auth.hmac_secret_file",
        );
        assert!(msg.contains("at least 32"), "{msg}");
        let msg = one(
            d.load(&format!("{base}  bearer_token_file: nope.txt\n")),
            "http_auth.bearer_token_file",
        );
        assert!(msg.contains("nope.txt"), "{msg}");
        let msg = one(
            d.load(&format!("{base}  cache_ttl: soon\n")),
            "http_auth.cache_ttl",
        );
        assert!(msg.contains("duration"), "{msg}");
        let msg = one(
            d.load(&format!("{base}  max_concurrent: 0\n")),
            "http_auth.max_concurrent",
        );
        assert!(msg.contains("at least 1"), "{msg}");
        let msg = one(d.load(&format!("{base}  secret: x\n")), "http_auth.secret");
        assert!(msg.contains("valid keys here are"), "{msg}");
        let msg = one(
            d.load("users: {\"\": {}}\nacl: []\nhttp_auth: {url: \"https://h/x\", ca_certificate: gone.pem}\n"),
            "http_auth.ca_certificate",
        );
        assert!(msg.contains("gone.pem"), "{msg}");
    }
}
