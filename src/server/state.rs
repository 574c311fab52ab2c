//! Shared, cheaply clonable application state.

use std::sync::Arc;

use crate::authn::Authenticator;
use crate::config::Config;
use crate::token::{PublishedKeys, TokenIssuer};

use super::routes::keys::KeyDocuments;

/// Everything a request needs: the validated config and the token issuer (signing key parsed
/// once at start-up).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

/// The contents of [`AppState`].
#[derive(Debug)]
pub struct Inner {
    /// The validated configuration.
    pub config: Config,
    /// Signs tokens.
    pub issuer: TokenIssuer,
    /// The JWK Set and certificate bundle of the published keys, encoded once.
    pub keys: KeyDocuments,
    /// Authentication with the credential cache and the bounded bcrypt pool (new per config,
    /// so a reload empties the cache).
    pub authenticator: Authenticator,
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
}

impl AppState {
    /// Builds the state from a validated config whose signing key is loaded.
    pub fn new(config: Config) -> Result<Self, StateError> {
        let key = config
            .token
            .signing_key
            .clone()
            .ok_or(StateError::NoSigningKey)?;
        let published = PublishedKeys::new(&key, &config.token.extra_certificates);
        let keys = KeyDocuments::new(&published, config.token.header_mode)?;
        let issuer = TokenIssuer::new(
            config.token.issuer.clone(),
            config.token.lifetime,
            key,
            config.token.header_mode,
        );
        let authenticator = Authenticator::new(config.authn.clone(), config.credential_cache);
        Ok(Self(Arc::new(Inner {
            config,
            issuer,
            keys,
            authenticator,
        })))
    }

    /// The shared contents.
    pub fn inner(&self) -> &Arc<Inner> {
        &self.0
    }
}
