//! Shared application state: the current configuration (swapped atomically on reload) and what
//! outlives reloads (metrics, lockout counters, the listener's TLS certificate, which a reload
//! re-reads).

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use tracing::{info, warn};

use super::lockout::Lockout;
use super::metrics::Metrics;
use super::routes::keys::KeyDocuments;
use crate::authn::Authenticator;
use crate::config::{Config, ServerConfig};
use crate::tls::{self, LiveCert, TlsError};
use crate::token::{self, KeyError, PublishedKeys, SigningKey, TokenIssuer};

/// Everything a request needs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

/// What outlives configuration reloads.
#[derive(Debug)]
pub struct Shared {
    current: ArcSwap<Inner>,
    /// Metrics, for the whole life of the process.
    pub metrics: Metrics,
    /// Failed-login counters per (account, client IP).
    pub lockout: Lockout,
    /// When the current configuration was loaded.
    loaded_at: ArcSwap<(SystemTime, Instant)>,
    /// The listener's certificate, once [`AppState::listener_tls`] built the listener's TLS.
    tls: OnceLock<Arc<LiveCert>>,
}

/// One loaded configuration with everything derived from it. Requests in flight keep the one
/// they started with; a reload swaps in a new one.
#[derive(Debug)]
pub struct Inner {
    /// The validated configuration.
    pub config: Config,
    /// Signs tokens (signing key parsed once).
    pub issuer: TokenIssuer,
    /// The JWK Set and certificate bundle of the published keys, encoded once.
    pub keys: KeyDocuments,
    /// Authentication with the credential cache and the bounded bcrypt pool (new per
    /// configuration, so a reload empties the cache).
    pub authenticator: Authenticator,
    /// Whether the warning about forwarding headers from a peer that is not a trusted proxy
    /// (which defeats the per-address lockout) was logged for this configuration.
    pub forwarding_warned: AtomicBool,
}

/// Why the state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// `token.key`/`token.certificate` were not loaded (they must exist, or be generated first).
    #[error(
        "the signing key is not loaded; create it with `registry-auth gen-keys` or set \
         `token.generate: true`"
    )]
    NoSigningKey,
    /// The JWK Set could not be encoded.
    #[error("cannot encode the published keys as a JWK Set: {0}")]
    Publish(#[from] serde_json::Error),
    /// Generating or loading the signing key failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The web logins' session secret cannot be read or created.
    #[error("web logins: {0}")]
    WebLogins(String),
    /// The session secret that authenticates the shared state cannot be read or created.
    #[error("store: {0}")]
    SharedState(String),
    /// `server.certificate`/`server.key` cannot be used (re-read on reload).
    #[error("server.certificate / server.key: {0}; the previous certificate keeps serving")]
    Tls(#[from] TlsError),
}

/// Generates the key and certificate when `token.generate` is set and they do not exist yet,
/// then loads them into `config`. Logs what the registry needs to know.
pub fn prepare_signing_key(config: &mut Config) -> Result<(), StateError> {
    let t = &mut config.token;
    if t.signing_key.is_none() {
        let created = token::ensure_generated(&t.key, &t.certificate, &t.issuer)?;
        let key = SigningKey::load(&t.certificate, &t.key)?;
        if created {
            info!(
                certificate = %t.certificate.display(),
                key = %t.key.display(),
                kid = key.kid(),
                "generated an ES256 signing key and a self-signed certificate; give the \
                 certificate to the registry as auth.token.rootcertbundle"
            );
        }
        t.signing_key = Some(Arc::new(key));
    }
    if let Some(key) = &t.signing_key {
        info!(
            certificate = %t.certificate.display(),
            algorithm = key.algorithm().as_str(),
            header = t.header_mode.as_str(),
            kid = key.public_key().kid(t.header_mode),
            "signing tokens; the registry's rootcertbundle must hold this certificate (or its CA)"
        );
    }
    Ok(())
}

impl Inner {
    fn build(config: Config, metrics: &Metrics) -> Result<Self, StateError> {
        let key = config
            .token
            .signing_key
            .clone()
            .ok_or(StateError::NoSigningKey)?;
        if let Some(web) = &config.web_logins {
            // Read (or generate) the session secret now, so a problem stops the start.
            web.prepare().map_err(StateError::WebLogins)?;
        }
        if let Some(shared) = &config.shared_state {
            shared.prepare().map_err(StateError::SharedState)?;
        }
        let published = PublishedKeys::new(&key, &config.token.extra_certificates);
        let keys = KeyDocuments::new(&published, config.token.header_mode)?;
        let issuer = TokenIssuer::new(
            config.token.issuer.clone(),
            config.token.lifetime,
            key,
            config.token.header_mode,
        );
        let authenticator = Authenticator::with_order(
            config.authn.clone(),
            config.authn_order.clone(),
            config.credential_cache,
            metrics.cache.clone(),
        );
        Ok(Self {
            config,
            issuer,
            keys,
            authenticator,
            forwarding_warned: AtomicBool::new(false),
        })
    }
}

impl AppState {
    /// Builds the state from a validated config whose signing key is loaded.
    pub fn new(config: Config) -> Result<Self, StateError> {
        let metrics = Metrics::new();
        let lockout = Lockout::new(config.lockout);
        let inner = Inner::build(config, &metrics)?;
        metrics.set_certificate_expiry(inner.issuer.key().not_after(), SystemTime::now());
        Ok(Self(Arc::new(Shared {
            current: ArcSwap::from_pointee(inner),
            metrics,
            lockout,
            loaded_at: ArcSwap::from_pointee((SystemTime::now(), Instant::now())),
            tls: OnceLock::new(),
        })))
    }

    /// The listener's TLS configuration (`None` without `server.certificate`): its certificate
    /// and key are re-read by every [`AppState::reload`], for the next handshakes.
    pub fn listener_tls(&self) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
        let Some(t) = self.current().config.server.tls.clone() else {
            return Ok(None);
        };
        let live = Arc::new(LiveCert::load(&t.certificate, &t.key)?);
        let config = tls::server_config(live.clone(), t.tls13_only)?;
        let live = self.0.tls.get_or_init(|| live);
        info!(
            certificate = %t.certificate.display(),
            sha256 = %tls::fingerprint(&live.current()),
            "server TLS certificate in force"
        );
        Ok(Some(config))
    }

    /// The current configuration and what derives from it. Lock-free; hold it for the whole
    /// request so the request sees one configuration.
    pub fn current(&self) -> Arc<Inner> {
        self.0.current.load_full()
    }

    /// What outlives reloads.
    pub fn shared(&self) -> &Shared {
        &self.0
    }

    /// When the current configuration was loaded.
    pub fn loaded_at(&self) -> SystemTime {
        self.0.loaded_at.load().0
    }

    /// Swaps in a new configuration (its signing key prepared). Requests in flight finish with
    /// the old one. The listener's TLS certificate and key are read again and used by the next
    /// handshakes; the other settings that need a restart (listen address, path prefix, limits,
    /// TLS on or off, `tls_min_version`, `hsts`) are reported and keep their old values. On error
    /// nothing changes.
    pub fn reload(&self, mut config: Config) -> Result<(), StateError> {
        prepare_signing_key(&mut config)?;
        let old = self.current();
        let live = self.0.tls.get();
        let new_cert = match (live, &config.server.tls) {
            (Some(_), Some(t)) => Some((
                t.certificate.clone(),
                tls::certified_key(&t.certificate, &t.key)?,
            )),
            _ => None,
        };
        if restart_only(&old.config.server) != restart_only(&config.server) {
            warn!(
                "server settings (addr, path_prefix, limits, TLS on or off, tls_min_version, \
                 hsts, listeners) changed: they take effect at the next restart"
            );
        }
        let inner = Inner::build(config, &self.0.metrics)?;
        self.0
            .metrics
            .set_certificate_expiry(inner.issuer.key().not_after(), SystemTime::now());
        self.0.lockout.configure(inner.config.lockout);
        self.0.current.store(Arc::new(inner));
        if let (Some(live), Some((path, cert))) = (live, new_cert) {
            let (before, after) = (tls::fingerprint(&live.current()), tls::fingerprint(&cert));
            live.store(cert);
            if before != after {
                info!(
                    certificate = %path.display(),
                    sha256 = %after,
                    previous = %before,
                    "server TLS certificate reloaded: new connections use it"
                );
            }
        }
        self.0
            .loaded_at
            .store(Arc::new((SystemTime::now(), Instant::now())));
        Ok(())
    }
}

/// The `server` settings a reload cannot change (all but the certificate and key files, which
/// are re-read).
fn restart_only(server: &ServerConfig) -> ServerConfig {
    let mut s = server.clone();
    if let Some(t) = &mut s.tls {
        t.certificate = std::path::PathBuf::new();
        t.key = std::path::PathBuf::new();
    }
    s
}
