//! Validating the `token` section: issuer, lifetime, signing key and certificates, published
//! extra certificates and refresh tokens.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_yaml_ng::Value;

use super::{Loader, describe};
use crate::config::file::{RefreshSpec, SigningHeaderSpec, TokenSpec};
use crate::config::{
    ConfigIssue, DEFAULT_EXPIRATION_SECS, DEFAULT_REFRESH_LIFETIME, MIN_EXPIRATION_SECS,
    RefreshConfig, TokenConfig,
};
use crate::token::refresh::{self, RefreshCodec, Revocations};
use crate::token::{HeaderMode, PublishedKey, SigningKey};

impl Loader {
    pub(super) fn token_section(&mut self, value: Value) -> Option<TokenSpec> {
        let mut legacy_key_id_disabled = false;
        let value = match value {
            Value::Mapping(mut m) => {
                // docker_auth: `true` puts the JWK thumbprint in `kid` (our `kid-thumbprint`);
                // `false` is its default and ours (libtrust kid).
                if let Some(v) = m.remove("disable_legacy_key_id") {
                    match v.as_bool() {
                        Some(b) => legacy_key_id_disabled = b,
                        None => self.issue(
                            "token.disable_legacy_key_id",
                            format!(
                                "expected true or false, found {}; better, replace it with \
                                 `signing_header: kid-thumbprint` (true) or remove it (false)",
                                describe(&v)
                            ),
                        ),
                    }
                }
                Value::Mapping(m)
            }
            other => other,
        };
        let mut spec: TokenSpec = self.de("token", value)?;
        if legacy_key_id_disabled {
            match spec.signing_header {
                None | Some(SigningHeaderSpec::KidThumbprint) => {
                    spec.signing_header = Some(SigningHeaderSpec::KidThumbprint);
                }
                Some(_) => self.issue(
                    "token.disable_legacy_key_id",
                    "`true` is docker_auth's way of saying `signing_header: kid-thumbprint`, \
                     but `signing_header` asks for another header; keep only `signing_header`",
                ),
            }
        }
        Some(spec)
    }

    pub(super) fn validate_token(&mut self, t: TokenSpec) -> Option<TokenConfig> {
        let issuer = match t.issuer {
            Some(i) if !i.trim().is_empty() => Some(i),
            _ => {
                self.issue(
                    "token.issuer",
                    "missing; set it to the same string as the registry's auth.token.issuer, \
                     e.g. `issuer: \"Acme auth server\"`",
                );
                None
            }
        };
        let lifetime = match t.expiration {
            None => Some(Duration::from_secs(DEFAULT_EXPIRATION_SECS)),
            Some(secs) => match u64::try_from(secs) {
                Ok(s) if s >= MIN_EXPIRATION_SECS => Some(Duration::from_secs(s)),
                _ => {
                    self.issue(
                        "token.expiration",
                        format!(
                            "{secs} seconds is too short; clients assume a token lives at least \
                             {MIN_EXPIRATION_SECS} s, so use {MIN_EXPIRATION_SECS} or more (900 is \
                             a common choice)"
                        ),
                    );
                    None
                }
            },
        };
        if t.signing_header.is_none() {
            self.warnings.push(default_kid_libtrust_warning());
        }
        let header_mode = match t.signing_header.unwrap_or(SigningHeaderSpec::KidLibtrust) {
            SigningHeaderSpec::KidLibtrust => HeaderMode::KidLibtrust,
            SigningHeaderSpec::X5c => HeaderMode::X5c,
            SigningHeaderSpec::KidThumbprint => HeaderMode::KidThumbprint,
        };
        let allowed_services = match t.allowed_services {
            Some(list) if list.is_empty() => {
                self.issue(
                    "token.allowed_services",
                    "an empty list would refuse every request; remove the key to allow any \
                     service, or list the registry's auth.token.service",
                );
                None
            }
            Some(list) => {
                for (i, s) in list.iter().enumerate() {
                    if s.is_empty() {
                        self.issue(
                            format!("token.allowed_services[{i}]"),
                            "empty service name; use the registry's auth.token.service value",
                        );
                    }
                }
                Some(Some(list))
            }
            None => Some(None),
        };
        let (certificate, key) = match (t.certificate, t.key) {
            (Some(c), Some(k)) => (
                Some(self.resolve("token.certificate", &c)),
                Some(self.resolve("token.key", &k)),
            ),
            (c, k) => {
                for (name, missing) in [("certificate", c.is_none()), ("key", k.is_none())] {
                    if missing {
                        self.issue(
                            format!("token.{name}"),
                            "missing; set both `token.certificate` and `token.key` (create them \
                             with `registry-auth gen-keys`, or add `generate: true` to have the \
                             server create them on first start)",
                        );
                    }
                }
                (None, None)
            }
        };
        let signing_key = match (&certificate, &key) {
            (Some(c), Some(k)) => self.signing_key(c, k, t.generate),
            _ => None,
        };
        let extra_certificates = self.extra_certificates(&t.extra_certificates);
        let refresh = match t.refresh {
            Some(r) if r.enabled => self.validate_refresh(r).map(Some),
            _ => Some(None),
        };
        Some(TokenConfig {
            issuer: issuer?,
            lifetime: lifetime?,
            certificate: certificate?,
            key: key?,
            generate: t.generate,
            header_mode,
            allowed_services: allowed_services?,
            signing_key: signing_key?,
            extra_certificates: extra_certificates?,
            refresh: refresh?,
        })
    }

    /// Loads `token.extra_certificates`: published (JWKS, root bundle), never used to sign.
    fn extra_certificates(&mut self, paths: &[PathBuf]) -> Option<Vec<PublishedKey>> {
        let mut ok = true;
        let mut keys = Vec::with_capacity(paths.len());
        for (i, rel) in paths.iter().enumerate() {
            match PublishedKey::load(&self.resolve(format!("token.extra_certificates[{i}]"), rel)) {
                Ok(key) => keys.push(key),
                Err(e) => {
                    self.issue(
                        format!("token.extra_certificates[{i}]"),
                        format!(
                            "{e}; list PEM certificate files (a key's certificate, optionally \
                             followed by its CA chain) whose keys registries should also trust"
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(keys)
    }

    fn validate_refresh(&mut self, r: RefreshSpec) -> Option<RefreshConfig> {
        let lifetime = match r.lifetime.as_deref() {
            None => Some(DEFAULT_REFRESH_LIFETIME),
            Some(text) => match humantime::parse_duration(text) {
                Ok(d) if d >= Duration::from_secs(MIN_EXPIRATION_SECS) => Some(d),
                Ok(_) => {
                    self.issue(
                        "token.refresh.lifetime",
                        format!("{text:?} is too short; use at least a minute, e.g. `90d`"),
                    );
                    None
                }
                Err(e) => {
                    self.issue(
                        "token.refresh.lifetime",
                        format!("{text:?} is not a duration ({e}); write e.g. `90d` or `12h`"),
                    );
                    None
                }
            },
        };
        let current = match r.secret_file {
            Some(f) => match refresh::read_secret(&{
                let f = self.resolve("token.refresh.secret_file", &f);
                self.private("token.refresh.secret_file", &f);
                f
            }) {
                Ok(s) => Some(s),
                Err(e) => {
                    self.issue("token.refresh.secret_file", e.to_string());
                    None
                }
            },
            None => {
                self.issue(
                    "token.refresh.secret_file",
                    "missing; refresh tokens need a secret shared by every replica: create one \
                     with `head -c 48 /dev/urandom | base64 > refresh.secret` and point this at it",
                );
                None
            }
        };
        let mut previous = Vec::new();
        let mut previous_ok = true;
        for (i, f) in r.previous_secret_files.iter().enumerate() {
            match refresh::read_secret(
                &self.resolve(format!("token.refresh.previous_secret_files[{i}]"), f),
            ) {
                Ok(s) => previous.push(s),
                Err(e) => {
                    self.issue(
                        format!("token.refresh.previous_secret_files[{i}]"),
                        e.to_string(),
                    );
                    previous_ok = false;
                }
            }
        }
        let revocations = match r.revocations_file {
            None => Some(Revocations::none()),
            Some(f) => {
                match Revocations::load(self.resolve("token.refresh.revocations_file", &f)) {
                    Ok(rev) => Some(rev),
                    Err(e) => {
                        self.issue("token.refresh.revocations_file", e);
                        None
                    }
                }
            }
        };
        let (lifetime, current, revocations) = (lifetime?, current?, revocations?);
        if !previous_ok {
            return None;
        }
        Some(RefreshConfig {
            codec: Arc::new(RefreshCodec::new(&current, &previous, lifetime)),
            revocations: Arc::new(revocations),
        })
    }

    /// Loads the signing key. `Some(None)` means "not there yet, will be generated".
    fn signing_key(
        &mut self,
        cert: &Path,
        key: &Path,
        generate: bool,
    ) -> Option<Option<Arc<SigningKey>>> {
        self.private("token.key", key);
        match (cert.exists(), key.exists()) {
            (true, true) => match SigningKey::load(cert, key) {
                Ok(k) => Some(Some(Arc::new(k))),
                Err(e) => {
                    self.issue("token.key", e.to_string());
                    None
                }
            },
            (false, false) if generate => Some(None),
            (c, k) => {
                if generate {
                    let (present, missing, missing_key) = if c {
                        (cert, key, "token.key")
                    } else {
                        (key, cert, "token.certificate")
                    };
                    self.issue(
                        missing_key,
                        format!(
                            "{} does not exist but {} does; with `generate: true` both are \
                             created together, so remove {} to regenerate both, or restore the \
                             missing file",
                            missing.display(),
                            present.display(),
                            present.display()
                        ),
                    );
                } else {
                    for (name, path, exists) in [("certificate", cert, c), ("key", key, k)] {
                        if !exists {
                            self.issue(
                                format!("token.{name}"),
                                format!(
                                    "file not found: {}; create a key and certificate with \
                                     `registry-auth gen-keys --key … --certificate …`, or set \
                                     `token.generate: true`",
                                    path.display()
                                ),
                            );
                        }
                    }
                }
                None
            }
        }
    }
}

/// With `kid-thumbprint`, an EC signing key whose `x` or `y` starts with a zero byte gets
/// another `kid` from registry v3.1 (which drops leading zeros) than the RFC 7638 one we send,
/// when it computes the `kid` from the certificate in its `rootcertbundle`. Keys it reads from its
/// `jwks` file keep the `kid` written there, so `registry-auth jwks` output works.
pub(super) fn short_coordinate_warning(t: &TokenConfig) -> Option<ConfigIssue> {
    let key = t.signing_key.as_ref()?;
    (t.header_mode == HeaderMode::KidThumbprint && key.public_key().params().has_short_coordinate())
        .then(|| {
            ConfigIssue::new(
                "token.key",
                "this EC key has a coordinate starting with a zero byte, so registry v3.1 \
                 computes a different JWK thumbprint from the certificate in its \
                 rootcertbundle than the `kid` we send and refuses the tokens; give it the \
                 output of `registry-auth jwks --config FILE` as its auth.token.jwks (that file \
                 carries our `kid`), create a new key with `registry-auth gen-keys` (it never \
                 makes such keys), or use `signing_header: x5c`",
            )
        })
}

/// `signing_header` left out means `kid-libtrust` (docker_auth's tokens): registry 2.8 takes
/// them, registry v3 refuses them unless its `auth.token.jwks` lists our libtrust `kid`s (v3
/// keys the certificates of its `rootcertbundle` by JWK thumbprint only). Setting the header
/// explicitly, `kid-libtrust` included, is the operator's answer and silences the warning.
fn default_kid_libtrust_warning() -> ConfigIssue {
    ConfigIssue::new(
        "token.signing_header",
        "not set, so tokens carry docker_auth's libtrust `kid` (`kid-libtrust`): registry 2.8 \
         accepts them, but registry v3 (`registry:3`) refuses them unless it is given our keys \
         as a JWK Set; for v3, either publish the output of `registry-auth jwks --config FILE` \
         (or GET /.well-known/jwks.json) as the registry's auth.token.jwks, or set \
         `signing_header: x5c` (registry 2.8 and v3, nothing else to publish) or \
         `kid-thumbprint` (v3 only); set `signing_header: kid-libtrust` to keep these tokens \
         and silence this warning",
    )
}
