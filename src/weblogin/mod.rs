//! Web logins (`github_auth`, `google_auth`, `oidc_auth`, `gitlab_auth`): a person signs in with
//! their browser through the provider's authorization-code flow and gets a freshly minted
//! registry password for `docker login`; their teams / groups / claims become labels.
//!
//! * The flow is bound to the browser by a short-lived cookie sealed (AES-256-GCM) with a key
//!   derived from the session secret: it carries the `state`, the PKCE verifier and the OIDC
//!   nonce, so a login cannot be started in one browser and finished in another (login CSRF),
//!   and an intercepted code is useless without the verifier.
//! * The minted password is random (256 bits); the store keeps only its SHA-256, the user's
//!   labels, the expiry and the upstream tokens (sealed) needed to re-check the account.
//! * After `revalidate_after`, the next use re-checks the upstream account (organisation
//!   membership, account still active) and refuses the password if it is gone; a provider that
//!   cannot be reached makes `/auth` fail with a 5xx, never a 401. Checking and revalidating
//!   minted passwords lives in `minted.rs`.
//! * The OAuth2 exchanges (authorization URL, code exchange, refresh) go through the `oauth2`
//!   crate on our reqwest client (`oauth.rs`); the account checks are each provider's REST API
//!   (`github.rs`, `gitlab.rs`) or its verified ID token (`oidc_login.rs`, `crate::oidc`).
//! * Signing out deletes the password from the store.

mod github;
mod gitlab;
mod minted;
mod oauth;
mod oidc_login;
pub mod seal;
pub mod session;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

pub use github::Github;
pub use gitlab::Gitlab;
pub use oidc_login::OidcLogin;

use crate::authn::{AuthnError, AuthnOutcome, Credentials, Labels, Secret};
use crate::oidc::Unavailable;
use crate::store::{self, MintedRecord, Store, StoreError, unix_now};
use seal::{Keys, Purpose};
use session::LoginCookie;

/// Prefix of the refresh-token fingerprint of a minted password (followed by its store id).
pub const MINTED_FINGERPRINT_PREFIX: &str = "minted.";

/// Default `http_timeout`.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `revalidate_after`.
pub const DEFAULT_REVALIDATE_AFTER: Duration = Duration::from_secs(3600);
/// Default `password_lifetime`.
pub const DEFAULT_PASSWORD_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long a started login may take.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(600);

/// The four web logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// `github_auth`.
    Github,
    /// `google_auth`.
    Google,
    /// `oidc_auth`.
    Oidc,
    /// `gitlab_auth`.
    Gitlab,
}

impl ProviderKind {
    /// Every kind, in docker_auth's chain order.
    pub const ALL: [Self; 4] = [Self::Google, Self::Github, Self::Oidc, Self::Gitlab];

    /// The config section (and route) name.
    pub fn key(self) -> &'static str {
        match self {
            Self::Github => "github_auth",
            Self::Google => "google_auth",
            Self::Oidc => "oidc_auth",
            Self::Gitlab => "gitlab_auth",
        }
    }

    /// The kind for a config section name.
    pub fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.key() == key)
    }

    /// Whether `typed` names the stored account `user`: GitHub and GitLab ignore the case of
    /// logins (the stored name is lower-cased), the OIDC providers' claims are compared exactly.
    pub fn same_user(self, user: &str, typed: &str) -> bool {
        match self {
            Self::Github | Self::Gitlab => user.eq_ignore_ascii_case(typed),
            Self::Google | Self::Oidc => user == typed,
        }
    }
}

/// Tokens from the provider, kept (sealed) to re-check the account later.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamTokens {
    /// The access token.
    pub access_token: String,
    /// The refresh token, when the provider gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the access token expires (seconds since the Unix epoch), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

impl UpstreamTokens {
    /// True when the access token is known to be expired (with a minute of margin).
    pub fn access_expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|t| t <= now + 60)
    }
}

/// An upstream account that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The registry account name.
    pub user: String,
    /// Labels for the ACL.
    pub labels: Labels,
    /// Tokens to re-check it later.
    pub tokens: UpstreamTokens,
}

/// The provider's verdict on an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed.
    Allowed(Account),
    /// Refused; the message is safe to show to the person (no secret, no token).
    Refused(String),
}

/// The settings every web login has.
#[derive(Debug, Clone)]
pub struct Common {
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: Secret,
    /// The registry's address, shown in the login commands.
    pub registry_url: Option<String>,
    /// The exact callback URL registered at the provider; `None` derives it from the request.
    pub redirect_url: Option<String>,
    /// Re-check the upstream account after this long.
    pub revalidate_after: Duration,
    /// Minted passwords expire after this long.
    pub password_lifetime: Duration,
    /// Per-request timeout towards the provider.
    pub http_timeout: Duration,
}

/// One configured web login.
#[derive(Debug)]
pub struct Provider {
    /// Which one.
    pub kind: ProviderKind,
    /// Shared settings.
    pub common: Common,
    flavor: Flavor,
}

#[derive(Debug)]
enum Flavor {
    Github(Github),
    Gitlab(Gitlab),
    Oidc(OidcLogin),
}

/// Where to send the browser, and the cookie that binds the login to it.
#[derive(Debug)]
pub struct Started {
    /// The provider's authorization URL.
    pub location: String,
    /// The sealed cookie value.
    pub cookie: String,
}

/// A successful login.
#[derive(Debug)]
pub struct Minted {
    /// The account name to use with `docker login`.
    pub user: String,
    /// The password (shown once).
    pub password: Secret,
    /// When it expires (seconds since the Unix epoch).
    pub expires_at: u64,
    /// Its labels.
    pub labels: Labels,
}

/// Why a callback did not produce a password.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The `state` does not match this browser's login (a forged or stale callback, or the
    /// login was finished already, or took longer than ten minutes). 400.
    #[error(
        "this sign-in link is not valid in this browser (it was already used, is older than ten minutes, or was started elsewhere); start again"
    )]
    BadState,
    /// The provider said no, or the account is not allowed. 403.
    #[error("{0}")]
    Refused(String),
    /// The provider cannot be reached. 503.
    #[error("{0}")]
    Unavailable(String),
    /// The password store cannot be reached or failed. 503.
    #[error("{0}")]
    StoreUnavailable(String),
    /// Something failed on our side (the session secret). 500.
    #[error("{0}")]
    Internal(String),
}

impl From<Unavailable> for LoginError {
    fn from(e: Unavailable) -> Self {
        Self::Unavailable(e.0)
    }
}

impl From<StoreError> for LoginError {
    fn from(e: StoreError) -> Self {
        Self::StoreUnavailable(e.to_string())
    }
}

impl Provider {
    /// A GitHub login.
    pub fn github(common: Common, github: Github) -> Self {
        Self {
            kind: ProviderKind::Github,
            common,
            flavor: Flavor::Github(github),
        }
    }

    /// A GitLab login.
    pub fn gitlab(common: Common, gitlab: Gitlab) -> Self {
        Self {
            kind: ProviderKind::Gitlab,
            common,
            flavor: Flavor::Gitlab(gitlab),
        }
    }

    /// A Google or generic OIDC login.
    pub fn oidc(kind: ProviderKind, common: Common, oidc: OidcLogin) -> Self {
        Self {
            kind,
            common,
            flavor: Flavor::Oidc(oidc),
        }
    }

    /// The name shown on the pages.
    pub fn title(&self) -> &'static str {
        match self.kind {
            ProviderKind::Github => "GitHub",
            ProviderKind::Google => "Google",
            ProviderKind::Oidc => "single sign-on",
            ProviderKind::Gitlab => "GitLab",
        }
    }

    async fn authorize_url(
        &self,
        redirect_uri: &str,
        state: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<String, Unavailable> {
        match &self.flavor {
            Flavor::Github(g) => g.authorize_url(&self.common, redirect_uri, state, verifier),
            Flavor::Gitlab(g) => g.authorize_url(&self.common, redirect_uri, state, verifier),
            Flavor::Oidc(o) => {
                o.authorize_url(&self.common, redirect_uri, state, verifier, nonce)
                    .await
            }
        }
    }

    /// The HTTP client and OAuth2 client of a plain OAuth2 provider (GitHub, GitLab).
    fn plain_oauth(
        &self,
        redirect_uri: Option<&str>,
    ) -> Result<(&reqwest::Client, oauth::Client), Unavailable> {
        match &self.flavor {
            Flavor::Github(g) => Ok((&g.http, g.oauth(&self.common, redirect_uri)?)),
            Flavor::Gitlab(g) => Ok((&g.http, g.oauth(&self.common, redirect_uri)?)),
            Flavor::Oidc(_) => Err(Unavailable(
                "an OIDC login has no plain OAuth2 client".to_owned(),
            )),
        }
    }

    async fn finish(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<Verdict, Unavailable> {
        if let Flavor::Oidc(o) = &self.flavor {
            return o
                .finish(&self.common, code, redirect_uri, verifier, nonce)
                .await;
        }
        let (http, client) = self.plain_oauth(Some(redirect_uri))?;
        let name = self.title();
        let what = format!("{name} token exchange");
        match oauth::exchange_code(&client, http, code, verifier, &what).await? {
            Ok(answer) => self.check_plain(oauth::upstream(&answer, None)).await,
            Err(why) => Ok(Verdict::Refused(format!(
                "{name} did not accept the sign-in ({why}); start again"
            ))),
        }
    }

    async fn revalidate(&self, tokens: &UpstreamTokens) -> Result<Verdict, Unavailable> {
        if let Flavor::Oidc(o) = &self.flavor {
            return o.revalidate(&self.common, tokens).await;
        }
        match self.fresh_tokens(tokens).await? {
            Ok(tokens) => self.check_plain(tokens).await,
            Err(why) => Ok(Verdict::Refused(why)),
        }
    }

    /// `tokens` of a plain OAuth2 provider, refreshed first when the access token has expired;
    /// or (`Ok(Err(why))`) why they cannot be refreshed (the account must sign in again).
    async fn fresh_tokens(
        &self,
        tokens: &UpstreamTokens,
    ) -> Result<Result<UpstreamTokens, String>, Unavailable> {
        if !tokens.access_expired(unix_now()) {
            return Ok(Ok(tokens.clone()));
        }
        let name = self.title();
        let Some(refresh) = tokens.refresh_token.as_deref() else {
            return Ok(Err(format!(
                "the {name} token expired and cannot be refreshed"
            )));
        };
        let (http, client) = self.plain_oauth(None)?;
        let what = format!("{name} token refresh");
        Ok(match oauth::refresh(&client, http, refresh, &what).await? {
            Ok(answer) => Ok(oauth::upstream(&answer, Some(refresh))),
            Err(why) => Err(format!("{name} refused the refresh: {why}")),
        })
    }

    /// The account behind fresh tokens of a plain OAuth2 provider (GitHub, GitLab): their REST
    /// APIs decide. Not called for OIDC, which checks its ID token instead.
    async fn check_plain(&self, tokens: UpstreamTokens) -> Result<Verdict, Unavailable> {
        match &self.flavor {
            Flavor::Github(g) => g.check(tokens).await,
            Flavor::Gitlab(g) => g.check(tokens).await,
            Flavor::Oidc(_) => Err(Unavailable(
                "an OIDC login has no plain OAuth2 account check".to_owned(),
            )),
        }
    }
}

/// Every configured web login, the store and the session keys.
#[derive(Debug)]
pub struct WebLogins {
    providers: Vec<Arc<Provider>>,
    store: Store,
    store_description: String,
    secret_path: PathBuf,
    generate_secret: bool,
    keys: OnceLock<Arc<Keys>>,
    /// One revalidation per password at a time.
    revalidating: moka::sync::Cache<String, Arc<tokio::sync::Mutex<()>>>,
}

/// One web login as a link of the authentication chain.
#[derive(Debug, Clone)]
pub struct WebLoginBackend {
    /// The shared web logins.
    pub logins: Arc<WebLogins>,
    /// Which provider's passwords this link accepts.
    pub kind: ProviderKind,
}

impl WebLoginBackend {
    /// Checks a minted password of this provider.
    pub async fn authenticate(&self, creds: &Credentials) -> Result<AuthnOutcome, AuthnError> {
        self.logins.authenticate(self.kind, creds).await
    }
}

fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

impl WebLogins {
    /// The web logins with their store; the session secret is read (or generated, when
    /// `generate_secret`) on first use or by [`WebLogins::prepare`].
    pub fn new(
        providers: Vec<Provider>,
        store: Store,
        store_description: String,
        secret_path: PathBuf,
        generate_secret: bool,
    ) -> Self {
        Self {
            providers: providers.into_iter().map(Arc::new).collect(),
            store,
            store_description,
            secret_path,
            generate_secret,
            keys: OnceLock::new(),
            revalidating: moka::sync::Cache::builder()
                .time_to_idle(Duration::from_secs(120))
                .build(),
        }
    }

    /// With keys given directly (tests).
    pub fn with_keys(providers: Vec<Provider>, store: Store, secret: &[u8]) -> Self {
        store.set_secret(secret);
        let logins = Self::new(providers, store, "memory".to_owned(), PathBuf::new(), false);
        let _ = logins.keys.set(Arc::new(Keys::new(secret)));
        logins
    }

    /// Reads or creates the session secret now (at start-up), so a problem is reported early.
    pub fn prepare(&self) -> Result<(), String> {
        self.keys()?;
        let logins: Vec<&str> = self.providers.iter().map(|p| p.kind.key()).collect();
        info!(
            logins = %logins.join(", "),
            store = %self.store_description,
            "web logins enabled at <path_prefix>/"
        );
        Ok(())
    }

    /// Opens or connects to the store now, logging (not failing on) a problem.
    pub async fn check_store(&self) {
        match self.store.check().await {
            Ok(()) => info!(store = %self.store_description, "password store ready"),
            Err(e) => {
                warn!(store = %self.store_description, error = %e, "the password store is not reachable yet; web logins and minted passwords fail until it is")
            }
        }
    }

    fn keys(&self) -> Result<&Arc<Keys>, String> {
        if let Some(k) = self.keys.get() {
            return Ok(k);
        }
        let secret = seal::load_or_create(&self.secret_path, self.generate_secret)?;
        self.store.set_secret(&secret);
        let _ = self.keys.set(Arc::new(Keys::new(&secret)));
        self.keys
            .get()
            .ok_or_else(|| "the session keys could not be set".to_owned())
    }

    /// The configured providers, in docker_auth's order.
    pub fn providers(&self) -> &[Arc<Provider>] {
        &self.providers
    }

    /// The provider configured for `kind`.
    pub fn provider(&self, kind: ProviderKind) -> Option<&Arc<Provider>> {
        self.providers.iter().find(|p| p.kind == kind)
    }

    /// The store description (for logs).
    pub fn store_description(&self) -> &str {
        &self.store_description
    }

    /// The store of minted passwords.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store, ready to read (for the `logins` command): its records are authenticated with
    /// the session secret, which must exist (it is never generated here).
    pub fn store_with_secret(&self) -> Result<&Store, String> {
        let secret = seal::load_or_create(&self.secret_path, false)
            .map_err(|e| format!("the session secret authenticates the stored passwords: {e}"))?;
        self.store.set_secret(&secret);
        Ok(&self.store)
    }

    /// Starts a login: a fresh state, PKCE verifier and nonce, sealed into the cookie, and the
    /// provider's authorization URL.
    pub async fn begin(
        &self,
        provider: &Provider,
        redirect_uri: &str,
    ) -> Result<Started, LoginError> {
        let keys = self.keys().map_err(LoginError::Internal)?;
        let cookie = LoginCookie {
            provider: provider.kind.key().to_owned(),
            state: random_token(),
            verifier: random_token(),
            nonce: random_token(),
            redirect_uri: redirect_uri.to_owned(),
            expires_at: unix_now() + LOGIN_TIMEOUT.as_secs(),
        };
        let location = provider
            .authorize_url(redirect_uri, &cookie.state, &cookie.verifier, &cookie.nonce)
            .await?;
        Ok(Started {
            location,
            cookie: cookie.seal(keys),
        })
    }

    /// Finishes a login: checks the state against this browser's cookie, exchanges the code
    /// (with the PKCE verifier), checks the account, mints and stores a password.
    pub async fn complete(
        &self,
        provider: &Provider,
        code: &str,
        state: &str,
        cookie: Option<&str>,
    ) -> Result<Minted, LoginError> {
        let keys = self.keys().map_err(LoginError::Internal)?;
        let login = cookie
            .and_then(|c| LoginCookie::open(keys, c))
            .filter(|c| c.provider == provider.kind.key() && c.expires_at > unix_now())
            .ok_or(LoginError::BadState)?;
        if !session::same(state, &login.state) {
            return Err(LoginError::BadState);
        }
        let account = match provider
            .finish(code, &login.redirect_uri, &login.verifier, &login.nonce)
            .await?
        {
            Verdict::Allowed(a) => a,
            Verdict::Refused(why) => {
                info!(provider = provider.kind.key(), reason = %why, "web login refused");
                return Err(LoginError::Refused(why));
            }
        };
        let (password, id) = store::mint_password();
        let now = unix_now();
        let expires_at = now + provider.common.password_lifetime.as_secs();
        let record = MintedRecord {
            user: account.user.clone(),
            provider: provider.kind.key().to_owned(),
            labels: account.labels.clone(),
            created_at: now,
            expires_at,
            revalidate_at: now + provider.common.revalidate_after.as_secs(),
            upstream: seal_tokens(keys, provider.kind, &account.tokens),
        };
        self.store.insert(&id, &record).await?;
        info!(
            provider = provider.kind.key(),
            account = %account.user,
            labels = ?account.labels.0,
            "web login: minted a registry password"
        );
        Ok(Minted {
            user: account.user,
            password,
            expires_at,
            labels: account.labels,
        })
    }

    /// Revokes a minted password (sign out). True when it existed.
    pub async fn sign_out(&self, password: &str) -> Result<bool, StoreError> {
        if !store::looks_minted(password) {
            return Ok(false);
        }
        self.store.delete(&store::password_id(password)).await
    }
}

fn seal_tokens(keys: &Keys, kind: ProviderKind, tokens: &UpstreamTokens) -> String {
    let json = serde_json::to_vec(tokens).unwrap_or_default();
    keys.seal(Purpose::Upstream, kind.key(), &json)
}

/// Reads a JSON answer of a provider.
async fn json_answer<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    what: &str,
) -> Result<T, Unavailable> {
    let body = crate::oidc::read_ok(response, what).await?;
    serde_json::from_slice(&body)
        .map_err(|e| Unavailable(format!("{what}: unexpected answer: {e}")))
}

/// Sends a request, mapping transport failures to [`Unavailable`].
async fn send(
    request: reqwest::RequestBuilder,
    what: &str,
) -> Result<reqwest::Response, Unavailable> {
    request
        .send()
        .await
        .map_err(|e| Unavailable(format!("{what}: {}", crate::oidc::describe_reqwest(&e))))
}
