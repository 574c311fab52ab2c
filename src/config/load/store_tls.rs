//! `store.ca_certificate`, `store.client_certificate` and `store.client_key`: the trust and the
//! client identity of a Redis store over TLS (`rediss…://`), read and checked at load, so a bad
//! file is a load error naming its key, never a failure of the first request.

use crate::client_tls::{Trust, client_config, client_identity};
use crate::config::file::{StoreKindSpec, StoreSpec};
use crate::store::{RedisTarget, RedisTlsMaterial};

use super::Loader;

impl Loader {
    /// For a store that is not Redis: the TLS keys are refused (true when none is set).
    pub(super) fn no_redis_tls_keys(&mut self, spec: &StoreSpec, kind: StoreKindSpec) -> bool {
        let mut ok = true;
        for (key, set) in [
            ("ca_certificate", spec.ca_certificate.is_some()),
            ("client_certificate", spec.client_certificate.is_some()),
            ("client_key", spec.client_key.is_some()),
        ] {
            if set {
                let fix = if kind == StoreKindSpec::Postgres {
                    "for PostgreSQL put `sslrootcert=/path/ca.pem` (and `sslcert`, `sslkey`) in \
                     the URL"
                } else {
                    "the embedded store is a local file"
                };
                self.issue(
                    format!("store.{key}"),
                    format!("only used by a Redis store over TLS (`rediss://`); {fix}: remove it"),
                );
                ok = false;
            }
        }
        ok
    }

    /// Attaches the TLS material to a `rediss…://` target (system trust store unless
    /// `ca_certificate`), or refuses the TLS keys on a plaintext `redis…://` URL. `url_key`:
    /// `store.url` or `store.url_file`.
    pub(super) fn redis_tls(
        &mut self,
        spec: &StoreSpec,
        url_key: &str,
        target: RedisTarget,
    ) -> Option<RedisTarget> {
        let ca = spec.ca_certificate.as_deref();
        let (cert, key) = (
            spec.client_certificate.as_deref(),
            spec.client_key.as_deref(),
        );
        if !target.is_tls() {
            let set: Vec<&str> = [
                ("`ca_certificate`", ca.is_some()),
                ("`client_certificate`", cert.is_some()),
                ("`client_key`", key.is_some()),
            ]
            .into_iter()
            .filter_map(|(k, s)| s.then_some(k))
            .collect();
            if let Some(first) = set.first() {
                self.issue(
                    format!("store.{}", first.trim_matches('`')),
                    format!(
                        "{} only apply to TLS, but {url_key} is a plaintext `redis…://` URL: \
                         write it as `rediss://` (`rediss+sentinel://`, `rediss+cluster://`), \
                         or remove {}",
                        set.join(" and "),
                        if set.len() == 1 { "it" } else { "them" }
                    ),
                );
                return None;
            }
            return Some(target);
        }
        let mut ok = true;
        let ca_pem = match ca {
            Some(path) => {
                let path = self.resolve("store.ca_certificate", path);
                // Parsed as our other outbound TLS parses a CA file (errors name the file).
                match client_config(Trust::CaFile(&path), false)
                    .and_then(|_| std::fs::read(&path).map_err(|e| e.to_string()))
                {
                    Ok(pem) => Some(pem),
                    Err(e) => {
                        self.issue("store.ca_certificate", e);
                        ok = false;
                        None
                    }
                }
            }
            None => {
                if let Err(e) = client_config(Trust::System, false) {
                    self.issue(
                        "store.ca_certificate",
                        format!("{url_key} is TLS (`rediss://`) without `ca_certificate`: {e}"),
                    );
                    ok = false;
                }
                None
            }
        };
        let client = match (cert, key) {
            (None, None) => None,
            (Some(_), None) => {
                self.issue(
                    "store.client_key",
                    "missing: `client_certificate` needs its private key in `client_key` (both \
                     PEM files)",
                );
                return None;
            }
            (None, Some(_)) => {
                self.issue(
                    "store.client_certificate",
                    "missing: `client_key` is the key of a client certificate; set \
                     `client_certificate` to its PEM file, or remove `client_key`",
                );
                return None;
            }
            (Some(cert), Some(key)) => {
                let cert = self.resolve("store.client_certificate", cert);
                let key = self.resolve("store.client_key", key);
                self.private("store.client_key", &key);
                match client_identity(&cert, &key) {
                    Ok((c, k)) => Some((c, crate::authn::Secret::new(k))),
                    Err((is_key, e)) => {
                        let at = if is_key {
                            "store.client_key"
                        } else {
                            "store.client_certificate"
                        };
                        self.issue(at, e);
                        return None;
                    }
                }
            }
        };
        ok.then(|| target.with_tls(RedisTlsMaterial { ca: ca_pem, client }))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError, ConfigIssue, parse};

    const BASE: &str = "token: {issuer: it, generate: true, certificate: k/t.crt, key: k/t.key}\n\
                        acl: []\ngithub_auth: {client_id: a, client_secret: b}\n";

    fn load(dir: &Path, store: &str) -> Result<Config, ConfigError> {
        parse(&format!("{BASE}store: {store}\n"), &dir.join("c.yml"))
    }

    fn issue(dir: &Path, store: &str, path: &str, text: &str) -> ConfigIssue {
        let issues = match load(dir, store) {
            Ok(_) => panic!("accepted: {store}"),
            Err(ConfigError::Invalid { issues, .. }) => issues,
            Err(e) => panic!("{e}"),
        };
        issues
            .into_iter()
            .find(|i| i.path == path && i.message.contains(text))
            .unwrap_or_else(|| panic!("no issue at {path} containing {text:?} for {store}"))
    }

    /// The store's `Debug` (it shows the TLS material as `file`/`system`, never its PEM).
    fn shown(c: &Config) -> String {
        format!("{:?}", c.web_logins.as_ref().unwrap().store())
    }

    #[test]
    fn rediss_loads_with_a_ca_file_and_a_client_identity_and_no_transport_warning() {
        let d = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["redis.test".to_owned()]).unwrap();
        let client = rcgen::generate_simple_self_signed(vec!["client".to_owned()]).unwrap();
        std::fs::write(d.path().join("ca.pem"), ca.cert.pem()).unwrap();
        std::fs::write(d.path().join("client.pem"), client.cert.pem()).unwrap();
        std::fs::write(
            d.path().join("client.key"),
            client.signing_key.serialize_pem(),
        )
        .unwrap();
        let c = load(
            d.path(),
            "{type: redis, url: \"rediss://:pw@redis.example.com:6380/0\", ca_certificate: \
             ca.pem, client_certificate: client.pem, client_key: client.key}",
        )
        .unwrap();
        assert!(
            c.warnings.iter().all(|w| w.path != "store.url"),
            "{:?}",
            c.warnings
        );
        let text = shown(&c);
        assert!(
            text.contains(r#"TlsMaterial { ca: "file", client_certificate: true }"#),
            "{text}"
        );
        assert!(!text.contains("PRIVATE") && !text.contains(":pw"), "{text}");
        for url in [
            "rediss+sentinel://s1.example:26379,s2.example/m/0",
            "rediss+cluster://n1.example:7000",
        ] {
            let c = load(
                d.path(),
                &format!("{{type: redis, url: \"{url}\", ca_certificate: ca.pem}}"),
            )
            .unwrap();
            assert!(shown(&c).contains(r#"ca: "file""#), "{}", shown(&c));
            assert!(c.warnings.iter().all(|w| w.path != "store.url"));
        }
        // No CA file: the system's trust store (this machine has one: ca-certificates).
        let c = load(
            d.path(),
            "{type: redis, url: \"rediss://redis.example.com\"}",
        )
        .unwrap();
        assert!(shown(&c).contains(r#"ca: "system""#), "{}", shown(&c));
        // Plaintext off this host still warns, naming the TLS form.
        let c = load(
            d.path(),
            "{type: redis, url: \"redis://redis.example.com\"}",
        )
        .unwrap();
        assert!(
            c.warnings
                .iter()
                .any(|w| w.path == "store.url" && w.message.contains("rediss://")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn tls_mistakes_name_the_key_and_the_fix() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        let ca = rcgen::generate_simple_self_signed(vec!["redis.test".to_owned()]).unwrap();
        let client = rcgen::generate_simple_self_signed(vec!["client".to_owned()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["other".to_owned()]).unwrap();
        std::fs::write(p.join("ca.pem"), ca.cert.pem()).unwrap();
        std::fs::write(p.join("client.pem"), client.cert.pem()).unwrap();
        std::fs::write(p.join("other.key"), other.signing_key.serialize_pem()).unwrap();
        std::fs::write(p.join("junk.pem"), "not a certificate\n").unwrap();
        let tls = "type: redis, url: \"rediss://127.0.0.1:6380\"";
        issue(
            p,
            &format!("{{{tls}, ca_certificate: missing.pem}}"),
            "store.ca_certificate",
            "missing.pem",
        );
        issue(
            p,
            &format!("{{{tls}, ca_certificate: junk.pem}}"),
            "store.ca_certificate",
            "CERTIFICATE",
        );
        issue(
            p,
            &format!("{{{tls}, client_certificate: client.pem}}"),
            "store.client_key",
            "`client_key`",
        );
        issue(
            p,
            &format!("{{{tls}, client_key: other.key}}"),
            "store.client_certificate",
            "`client_certificate`",
        );
        issue(
            p,
            &format!("{{{tls}, client_certificate: client.pem, client_key: other.key}}"),
            "store.client_key",
            "does not belong",
        );
        issue(
            p,
            &format!("{{{tls}, client_certificate: junk.pem, client_key: other.key}}"),
            "store.client_certificate",
            "CERTIFICATE",
        );
        // TLS keys on a plaintext URL: the fix is `rediss://`.
        let i = issue(
            p,
            "{type: redis, url: \"redis://127.0.0.1:6379\", ca_certificate: ca.pem}",
            "store.ca_certificate",
            "rediss://",
        );
        assert!(i.message.contains("remove it"), "{}", i.message);
        issue(
            p,
            "{type: redis, url: \"redis+cluster://127.0.0.1:7000\", client_certificate: \
             client.pem, client_key: other.key}",
            "store.client_certificate",
            "`client_certificate` and `client_key` only apply to TLS",
        );
        // On another kind of store.
        issue(
            p,
            "{type: postgres, url: \"postgres://ra@127.0.0.1/db\", ca_certificate: ca.pem}",
            "store.ca_certificate",
            "sslrootcert",
        );
        issue(
            p,
            "{ca_certificate: ca.pem}",
            "store.ca_certificate",
            "Redis store over TLS",
        );
    }
}
