//! `ldap_auth`: users in an LDAP directory, with docker_auth's keys and semantics.
//!
//! 1. An empty account or an empty password is `NoMatch` at once: nothing is sent to the server
//!    (an empty password would make the bind below an *unauthenticated* bind, which many servers
//!    accept as anonymous: docker_auth issue #155).
//! 2. Search `base` (subtree) with `filter`, `${account}` escaped per RFC 4515, as the service
//!    account (`bind_dn` + `bind_password_file`), anonymously (neither), or as the user
//!    (`initial_bind_as_user`: `bind_dn` with `${account}`, escaped per RFC 4514, and the user's
//!    password; a refused bind is a wrong password).
//! 3. No entry is `NoMatch` (the next backend is asked); two or more is an error (5xx).
//! 4. Bind as the entry's DN with the user's password: invalid credentials (or a refusal such as
//!    a locked account) is `WrongPassword` (401); success gives the labels (`labels:` maps
//!    attributes to labels, `parse_cn` keeps a DN's `cn`, `lower_case` lower-cases).
//!
//! Connections are pooled: at most `max_connections` operations run at once, each on an idle
//! connection when there is one (a search needs one bound as the service account; a user bind
//! any). A connection that fails is dropped; a stale pooled one (the server restarted) is
//! replaced once, transparently. Every connect, bind and search has the `timeout`; running out
//! of it, or any failure to talk to the server, is an error (5xx), never a 401. The server's
//! state is kept for `/readyz`.
//!
//! Refresh tokens: an LDAP identity carries a fingerprint of its entry's DN, and
//! [`LdapAuth::lookup`] searches again as the service account, so a refresh token is honoured
//! only while the entry is still found. With `initial_bind_as_user` there is no way to search
//! without the password, so no fingerprint is given and no refresh token is issued.
//!
//! Files: the pure text of names and filters (escaping, `cn`, fingerprints) is `ldap/names.rs`,
//! the connection pool `ldap/pool.rs`; the flows above are here.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ldap3::{LdapError, Scope, SearchEntry, SearchOptions};
use tokio::sync::Semaphore;

use super::{AuthnError, AuthnOutcome, Credentials, Identity, IdentityKind, Labels, Secret};
use crate::health::Health;
use names::same_account;
pub use names::{cn_of, entry_fingerprint, escape_filter_value, filter_account_attribute};
use pool::{BoundAs, Conn};

mod names;
mod pool;

const BACKEND: &str = "ldap_auth";

/// LDAP result codes we act on.
const RC_SUCCESS: u32 = 0;
const RC_SIZE_LIMIT_EXCEEDED: u32 = 4;
const RC_NO_SUCH_OBJECT: u32 = 32;
const RC_INVALID_CREDENTIALS: u32 = 49;
const RC_INSUFFICIENT_ACCESS: u32 = 50;
const RC_UNWILLING_TO_PERFORM: u32 = 53;

/// Idle connections older than this are closed rather than reused (servers and firewalls drop
/// idle connections silently).
const MAX_IDLE: Duration = Duration::from_secs(60);

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LdapTls {
    /// Plain LDAP.
    None,
    /// LDAPS.
    Always,
    /// StartTLS before anything else.
    StartTls,
}

/// Who searches.
#[derive(Debug, Clone)]
pub enum LdapBind {
    /// Nobody: anonymous searches.
    Anonymous,
    /// The service account.
    Service {
        /// Its DN.
        dn: String,
        /// Its password (never empty).
        password: Secret,
    },
    /// The user: the DN template holds `${account}`.
    AsUser {
        /// The template.
        dn_template: String,
    },
}

/// One label taken from an attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapLabel {
    /// Label name.
    pub name: String,
    /// Attribute read.
    pub attribute: String,
    /// Keep only the `cn` of DN values.
    pub parse_cn: bool,
    /// Lower-case the values.
    pub lower_case: bool,
}

/// A validated `ldap_auth` section.
#[derive(Debug, Clone)]
pub struct LdapSettings {
    /// `host:port`.
    pub addr: String,
    /// TLS mode.
    pub tls: LdapTls,
    /// Client TLS configuration (for `Always` and `StartTls`).
    pub tls_config: Option<Arc<rustls::ClientConfig>>,
    /// Who searches.
    pub bind: LdapBind,
    /// Search base.
    pub base: String,
    /// Filter template with `${account}`.
    pub filter: String,
    /// Labels from attributes.
    pub labels: Vec<LdapLabel>,
    /// The attribute whose value is the account (the directory's own spelling, whatever the
    /// client typed): `account_attribute`, or the attribute `${account}` is compared with in
    /// `filter`.
    pub account_attribute: String,
    /// Time allowed for each connect, bind and search.
    pub timeout: Duration,
    /// Most operations (and connections) at once.
    pub max_connections: usize,
}

/// The `ldap_auth` backend. Cheap to clone (shared pool and state).
#[derive(Debug, Clone)]
pub struct LdapAuth {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: LdapSettings,
    url: String,
    /// Attributes requested by searches.
    attributes: Vec<String>,
    ops: Semaphore,
    idle: Mutex<Vec<Conn>>,
    health: Health,
    probing: AtomicBool,
    opened: AtomicU64,
    /// Connections open now (idle or in use).
    open: Arc<AtomicUsize>,
}

/// Why an LDAP exchange failed.
#[derive(Debug)]
enum Failure {
    /// The connection is unusable (I/O, closed); worth one retry on a fresh connection when it
    /// was a pooled one.
    Connection(String),
    /// Anything else: a timeout, an unexpected result code, a configuration problem.
    Other(String),
}

impl Failure {
    fn message(self) -> String {
        match self {
            Self::Connection(m) | Self::Other(m) => m,
        }
    }
}

fn classify(what: &str, e: LdapError) -> Failure {
    match e {
        LdapError::Io { .. }
        | LdapError::OpSend { .. }
        | LdapError::ResultRecv { .. }
        | LdapError::EndOfStream => Failure::Connection(format!("{what}: {e}")),
        LdapError::Timeout { .. } => Failure::Other(format!("{what}: no answer in time ({e})")),
        other => Failure::Other(format!("{what}: {other}")),
    }
}

/// The entry a search found.
#[derive(Debug)]
struct Found {
    dn: String,
    /// The entry's value of the account attribute.
    account: String,
    /// When the password (`pwdChangedTime`) or else the entry (`modifyTimestamp`) last changed.
    changed: Option<String>,
    labels: Labels,
}

/// The operational attributes read for the refresh-token fingerprint: a password change
/// (`pwdChangedTime`, kept by password-policy overlays and Active Directory's `pwdLastSet`
/// equivalent) or, without one, any change of the entry (`modifyTimestamp`, every server).
const CHANGE_ATTRIBUTES: [&str; 2] = ["pwdChangedTime", "modifyTimestamp"];

impl LdapAuth {
    /// Sets up the backend (no connection is opened until the first request).
    pub fn new(settings: LdapSettings) -> Self {
        let scheme = if settings.tls == LdapTls::Always {
            "ldaps"
        } else {
            "ldap"
        };
        let url = format!("{scheme}://{}", settings.addr);
        let mut attributes: Vec<String> = vec![settings.account_attribute.clone()];
        attributes.extend(CHANGE_ATTRIBUTES.map(str::to_owned));
        for l in &settings.labels {
            if !attributes
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&l.attribute))
            {
                attributes.push(l.attribute.clone());
            }
        }
        Self {
            inner: Arc::new(Inner {
                ops: Semaphore::new(settings.max_connections.max(1)),
                settings,
                url,
                attributes,
                idle: Mutex::new(Vec::new()),
                health: Health::named("ldap_auth"),
                probing: AtomicBool::new(false),
                opened: AtomicU64::new(0),
                open: Arc::new(AtomicUsize::new(0)),
            }),
        }
    }

    /// The server's last known state.
    pub fn health(&self) -> &Health {
        &self.inner.health
    }

    /// Connections opened so far (a test hook: pooling keeps it low).
    pub fn connections_opened(&self) -> u64 {
        self.inner.opened.load(Ordering::Relaxed)
    }

    /// Whether a refresh token can be re-checked (a search without the user's password).
    pub fn can_recheck(&self) -> bool {
        !matches!(self.inner.settings.bind, LdapBind::AsUser { .. })
    }

    /// For `/readyz`: the last known state, refreshed by a probe (connect, bind as the service
    /// account, read the root DSE) when it is older than a few seconds. Waits at most `wait` for
    /// the probe; a slower probe finishes in the background and shows next time.
    pub async fn check(&self, wait: Duration) -> serde_json::Value {
        let (_, age) = self.inner.health.get();
        let stale = age.is_none_or(|a| a > Duration::from_secs(5));
        if stale && !self.inner.probing.swap(true, Ordering::AcqRel) {
            let me = self.clone();
            let probe = tokio::spawn(async move {
                let result = me.probe().await;
                me.inner.probing.store(false, Ordering::Release);
                result
            });
            let _ = tokio::time::timeout(wait, probe).await;
        }
        self.inner.health.report()
    }

    async fn probe(&self) -> Result<(), Failure> {
        let inner = &self.inner;
        let _op = inner.permit().await?;
        let result = async {
            let mut conn = inner.checkout(BoundAs::Searcher).await?;
            let rc = {
                let search = conn
                    .ldap
                    .with_timeout(inner.settings.timeout)
                    .search("", Scope::Base, "(objectClass=*)", vec!["1.1"])
                    .await
                    .map_err(|e| classify("reading the root DSE", e))?;
                search.1.rc
            };
            inner.checkin(conn);
            if rc == RC_SUCCESS {
                Ok(())
            } else {
                Err(Failure::Other(format!(
                    "reading the root DSE answered result code {rc}"
                )))
            }
        }
        .await;
        inner.record(&result);
        result
    }

    /// Authenticates `creds` (see the module documentation).
    pub async fn authenticate(&self, creds: &Credentials) -> Result<AuthnOutcome, AuthnError> {
        if creds.account.is_empty() || creds.password.is_empty() {
            // Never a bind without a password: it would be an anonymous bind.
            return Ok(AuthnOutcome::NoMatch);
        }
        let inner = &self.inner;
        let result = match &inner.settings.bind {
            LdapBind::AsUser { dn_template } => inner.as_user(dn_template, creds).await,
            LdapBind::Anonymous | LdapBind::Service { .. } => inner.as_searcher(creds).await,
        };
        inner.record(&result);
        result.map_err(|f| AuthnError::Backend {
            backend: BACKEND,
            message: f.message(),
        })
    }

    /// The current identity of `account` without its password, for a refresh token: `None`
    /// when no entry is found any more (or with `initial_bind_as_user`, where nothing can be
    /// searched without the password).
    pub async fn lookup(&self, account: &str) -> Result<Option<Identity>, AuthnError> {
        if account.is_empty() || !self.can_recheck() {
            return Ok(None);
        }
        let inner = &self.inner;
        let result = inner.search_as_searcher(account).await;
        inner.record(&result);
        let found = result.map_err(|f| AuthnError::Backend {
            backend: BACKEND,
            message: f.message(),
        })?;
        Ok(found.map(|f| inner.identity(f)))
    }
}

impl Inner {
    fn record<T>(&self, result: &Result<T, Failure>) {
        match result {
            Ok(_) => self.health.up(),
            Err(Failure::Connection(m) | Failure::Other(m)) => self.health.down(m.clone()),
        }
    }

    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, Failure> {
        self.ops
            .acquire()
            .await
            .map_err(|_| Failure::Other("the connection pool is closed".to_owned()))
    }

    fn identity(&self, found: Found) -> Identity {
        let fingerprint = match self.settings.bind {
            LdapBind::AsUser { .. } => None,
            _ => Some(entry_fingerprint(&found.dn, found.changed.as_deref())),
        };
        Identity {
            account: found.account,
            labels: found.labels,
            kind: IdentityKind::External(BACKEND),
            fingerprint,
        }
    }

    /// Search as the service account (or anonymously), then bind as the entry.
    async fn as_searcher(&self, creds: &Credentials) -> Result<AuthnOutcome, Failure> {
        let Some(found) = self.search_as_searcher(&creds.account).await? else {
            return Ok(AuthnOutcome::NoMatch);
        };
        let _op = self.permit().await?;
        for attempt in 0..2 {
            let mut conn = self.checkout(BoundAs::Other).await?;
            conn.bound = BoundAs::Other;
            match self.user_bind(&mut conn, &found.dn, &creds.password).await {
                Ok(true) => {
                    self.checkin(conn);
                    return Ok(AuthnOutcome::Authenticated(self.identity(found)));
                }
                Ok(false) => {
                    self.checkin(conn);
                    return Ok(AuthnOutcome::WrongPassword);
                }
                Err(Failure::Connection(m)) if conn.reused && attempt == 0 => {
                    tracing::debug!(error = %m, "a pooled LDAP connection was stale; retrying");
                }
                Err(e) => return Err(e),
            }
        }
        Err(Failure::Other("no usable connection".to_owned()))
    }

    /// One search on a searcher connection, retried once on a fresh connection when a pooled
    /// one turned out to be dead.
    async fn search_as_searcher(&self, account: &str) -> Result<Option<Found>, Failure> {
        let _op = self.permit().await?;
        for attempt in 0..2 {
            let mut conn = self.checkout(BoundAs::Searcher).await?;
            match self.search(&mut conn, account).await {
                Ok(found) => {
                    self.checkin(conn);
                    return Ok(found);
                }
                Err(Failure::Connection(m)) if conn.reused && attempt == 0 => {
                    tracing::debug!(error = %m, "a pooled LDAP connection was stale; retrying");
                }
                Err(e) => return Err(e),
            }
        }
        Err(Failure::Other("no usable connection".to_owned()))
    }

    /// `initial_bind_as_user`: bind as the user, search, bind as the entry found, on one
    /// connection.
    async fn as_user(
        &self,
        dn_template: &str,
        creds: &Credentials,
    ) -> Result<AuthnOutcome, Failure> {
        let bind_dn = dn_template.replace("${account}", &ldap3::dn_escape(creds.account.as_str()));
        let _op = self.permit().await?;
        for attempt in 0..2 {
            let mut conn = self.checkout(BoundAs::Other).await?;
            conn.bound = BoundAs::Other;
            let result = async {
                if !self.user_bind(&mut conn, &bind_dn, &creds.password).await? {
                    return Ok(AuthnOutcome::WrongPassword);
                }
                let Some(found) = self.search(&mut conn, &creds.account).await? else {
                    return Ok(AuthnOutcome::NoMatch);
                };
                if !self
                    .user_bind(&mut conn, &found.dn, &creds.password)
                    .await?
                {
                    return Ok(AuthnOutcome::WrongPassword);
                }
                Ok(AuthnOutcome::Authenticated(self.identity(found)))
            }
            .await;
            match result {
                Ok(outcome) => {
                    self.checkin(conn);
                    return Ok(outcome);
                }
                Err(Failure::Connection(m)) if conn.reused && attempt == 0 => {
                    tracing::debug!(error = %m, "a pooled LDAP connection was stale; retrying");
                }
                Err(e) => return Err(e),
            }
        }
        Err(Failure::Other("no usable connection".to_owned()))
    }

    /// Binds as `dn` with the user's password: `Ok(true)` accepted, `Ok(false)` refused
    /// (invalid credentials, or a refusal such as a locked account).
    async fn user_bind(
        &self,
        conn: &mut Conn,
        dn: &str,
        password: &Secret,
    ) -> Result<bool, Failure> {
        debug_assert!(
            !password.is_empty(),
            "an empty password is an anonymous bind"
        );
        if password.is_empty() {
            return Ok(false);
        }
        let result = conn
            .ldap
            .with_timeout(self.settings.timeout)
            .simple_bind(dn, password.expose())
            .await
            .map_err(|e| classify("binding as the user", e))?;
        match result.rc {
            RC_SUCCESS => Ok(true),
            RC_INVALID_CREDENTIALS | RC_INSUFFICIENT_ACCESS | RC_UNWILLING_TO_PERFORM => {
                tracing::debug!(
                    backend = BACKEND,
                    dn,
                    rc = result.rc,
                    "the LDAP server refused the user's bind"
                );
                Ok(false)
            }
            rc => Err(Failure::Other(format!(
                "binding as {dn} answered result code {rc} ({})",
                result.text
            ))),
        }
    }

    /// Searches for the account's entry: `None` when there is none, an error for two or more.
    async fn search(&self, conn: &mut Conn, account: &str) -> Result<Option<Found>, Failure> {
        let filter = self
            .settings
            .filter
            .replace("${account}", &escape_filter_value(account));
        let attrs: Vec<&str> = self.attributes.iter().map(String::as_str).collect();
        let result = conn
            .ldap
            .with_search_options(SearchOptions::new().sizelimit(2))
            .with_timeout(self.settings.timeout)
            .search(&self.settings.base, Scope::Subtree, &filter, attrs)
            .await
            .map_err(|e| classify("searching", e))?;
        let ldap3::SearchResult(entries, status) = result;
        let entries: Vec<_> = entries
            .into_iter()
            .filter(|e| !e.is_ref() && !e.is_intermediate())
            .collect();
        match status.rc {
            RC_SUCCESS => {}
            RC_SIZE_LIMIT_EXCEEDED => {
                return Err(Failure::Other(format!(
                    "the filter matches more than one entry under {:?} for this account; \
                     exactly one is required (make `filter` more specific)",
                    self.settings.base
                )));
            }
            RC_NO_SUCH_OBJECT => {
                return Err(Failure::Other(format!(
                    "the search base {:?} does not exist on the server",
                    self.settings.base
                )));
            }
            rc => {
                return Err(Failure::Other(format!(
                    "the search answered result code {rc} ({})",
                    status.text
                )));
            }
        }
        if entries.len() > 1 {
            return Err(Failure::Other(format!(
                "the filter matches {} entries under {:?} for this account; exactly one is \
                 required (make `filter` more specific)",
                entries.len(),
                self.settings.base
            )));
        }
        let Some(entry) = entries.into_iter().next() else {
            return Ok(None);
        };
        let entry = std::panic::catch_unwind(AssertUnwindSafe(|| SearchEntry::construct(entry)))
            .map_err(|_| Failure::Other("the server sent a malformed entry".to_owned()))?;
        let attr = |name: &str| {
            entry
                .attrs
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_slice())
                .unwrap_or_default()
        };
        // The account is the entry's value: the one the typed name matched (an attribute may
        // hold several), else the first. Never the typed string: `ALICE` and ` alice` bind as
        // alice, and must be alice for the ACL, the token and revocation.
        let values = attr(&self.settings.account_attribute);
        let Some(account) = values
            .iter()
            .find(|v| same_account(v, account))
            .or_else(|| values.first())
            .cloned()
        else {
            return Err(Failure::Other(format!(
                "the entry {:?} has no `{}` attribute to name the account; set \
                 `ldap_auth.account_attribute` to the attribute that holds the user name",
                entry.dn, self.settings.account_attribute
            )));
        };
        let changed = CHANGE_ATTRIBUTES
            .iter()
            .find_map(|a| attr(a).first().cloned());
        Ok(Some(Found {
            labels: self.labels(&entry),
            account,
            changed,
            dn: entry.dn,
        }))
    }

    fn labels(&self, entry: &SearchEntry) -> Labels {
        let mut labels: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for rule in &self.settings.labels {
            let Some(values) = entry
                .attrs
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&rule.attribute))
                .map(|(_, v)| v)
            else {
                continue;
            };
            let slot = labels.entry(rule.name.clone()).or_default();
            for v in values {
                let mut v = if rule.parse_cn { cn_of(v) } else { v.clone() };
                if rule.lower_case {
                    v = v.to_lowercase();
                }
                if !slot.contains(&v) {
                    slot.push(v);
                }
            }
        }
        Labels(labels)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn settings(addr: &str, bind: LdapBind) -> LdapSettings {
        LdapSettings {
            addr: addr.to_owned(),
            tls: LdapTls::None,
            tls_config: None,
            bind,
            base: "dc=x".to_owned(),
            filter: "(uid=${account})".to_owned(),
            labels: vec![],
            account_attribute: "uid".to_owned(),
            timeout: Duration::from_secs(2),
            max_connections: 2,
        }
    }

    #[tokio::test]
    async fn empty_passwords_and_accounts_never_reach_the_server() {
        // A listener that counts connections: nothing may connect.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let auth = LdapAuth::new(settings(&addr, LdapBind::Anonymous));
        for (account, password) in [("alice", ""), ("", "x"), ("", "")] {
            let creds = Credentials {
                account: account.to_owned(),
                password: Secret::new(password),
            };
            assert_eq!(
                auth.authenticate(&creds).await.unwrap(),
                AuthnOutcome::NoMatch
            );
        }
        assert_eq!(auth.connections_opened(), 0);
        let accepted = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
        assert!(accepted.is_err(), "something connected");
    }

    #[tokio::test]
    async fn a_server_that_is_down_is_an_error_not_a_denial() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let auth = LdapAuth::new(settings(
            &format!("127.0.0.1:{port}"),
            LdapBind::Service {
                dn: "cn=svc,dc=x".to_owned(),
                password: Secret::new("pw"),
            },
        ));
        let creds = Credentials {
            account: "alice".to_owned(),
            password: Secret::new("pw"),
        };
        let err = auth.authenticate(&creds).await.unwrap_err();
        assert!(err.to_string().contains("cannot connect"), "{err}");
        assert!(auth.health().is_down());
        assert!(auth.lookup("alice").await.is_err());
        let report = auth.check(Duration::from_secs(2)).await;
        assert_eq!(report["status"], "down", "{report}");
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        // Accepts connections, never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let mut s = settings(
            &addr,
            LdapBind::Service {
                dn: "cn=svc,dc=x".to_owned(),
                password: Secret::new("pw"),
            },
        );
        s.timeout = Duration::from_millis(300);
        let auth = LdapAuth::new(s);
        let creds = Credentials {
            account: "alice".to_owned(),
            password: Secret::new("pw"),
        };
        let started = Instant::now();
        let err = auth.authenticate(&creds).await.unwrap_err();
        assert!(err.to_string().contains("no answer in time"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
        hold.abort();
    }
}
