//! Shared application state: the current configuration (swapped atomically on reload) and what
//! outlives reloads (metrics, lockout counters).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use tracing::{info, warn};

use super::lockout::Lockout;
use super::metrics::Metrics;
use super::routes::keys::KeyDocuments;
use crate::authn::Authenticator;
use crate::config::Config;
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
        })))
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
    /// the old one. Settings that need a restart (listen address, path prefix, limits) are
    /// reported and keep their old values. On error nothing changes.
    pub fn reload(&self, mut config: Config) -> Result<(), StateError> {
        prepare_signing_key(&mut config)?;
        let old = self.current();
        if old.config.server != config.server {
            warn!(
                "server settings (addr, path_prefix, limits, TLS, listeners) changed: they take \
                 effect at the next restart"
            );
        }
        let inner = Inner::build(config, &self.0.metrics)?;
        self.0
            .metrics
            .set_certificate_expiry(inner.issuer.key().not_after(), SystemTime::now());
        self.0.lockout.configure(inner.config.lockout);
        self.0.current.store(Arc::new(inner));
        self.0
            .loaded_at
            .store(Arc::new((SystemTime::now(), Instant::now())));
        Ok(())
    }
}
