//! The connection pool of `ldap_auth`: at most `max_connections` connections, each remembered
//! as bound as the service account (ready to search) or not; idle ones are reused for up to a
//! minute, a failed one is dropped.

/// Who a connection is bound as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BoundAs {
    /// The service account (or nobody, with anonymous searches): ready to search.
    Searcher,
    /// Some user, or nobody after a failed bind.
    Other,
}

pub(super) struct Conn {
    pub(super) ldap: Ldap,
    pub(super) bound: BoundAs,
    pub(super) since: Instant,
    pub(super) reused: bool,
    /// [`Inner::open`], decremented when the connection is dropped (which closes it).
    open: Arc<AtomicUsize>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("bound", &self.bound)
            .field("since", &self.since)
            .finish_non_exhaustive()
    }
}

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError};

use super::{BACKEND, Failure, Inner, LdapBind, LdapTls, MAX_IDLE, RC_SUCCESS, classify};

impl Inner {
    /// A connection for `want`: an idle one bound that way, else a new one while fewer than
    /// `max_connections` are open, else any idle one (re-bound as the searcher when a searcher
    /// is wanted). So a steady stream of logins keeps one connection bound as the service
    /// account for searches and another for the users' binds.
    pub(super) async fn checkout(&self, want: BoundAs) -> Result<Conn, Failure> {
        let max = self.settings.max_connections.max(1);
        let mut reserved = false;
        loop {
            let candidate = {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                idle.retain_mut(|c| !c.ldap.is_closed() && c.since.elapsed() < MAX_IDLE);
                match idle.iter().rposition(|c| c.bound == want) {
                    Some(p) => Some(idle.swap_remove(p)),
                    None => {
                        // Room for one more connection? Reserve it.
                        reserved = self
                            .open
                            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                                (n < max).then_some(n + 1)
                            })
                            .is_ok();
                        if reserved { None } else { idle.pop() }
                    }
                }
            };
            let Some(mut conn) = candidate else {
                break;
            };
            conn.reused = true;
            if want == BoundAs::Searcher && conn.bound != BoundAs::Searcher {
                match self.searcher_bind(&mut conn).await {
                    Ok(()) => {}
                    // Dead: try the next idle one, or a new one.
                    Err(Failure::Connection(_)) => continue,
                    Err(e) => return Err(e),
                }
            }
            return Ok(conn);
        }
        let mut conn = self.open(reserved).await?;
        if want == BoundAs::Searcher {
            self.searcher_bind(&mut conn).await?;
        }
        Ok(conn)
    }

    /// Returns a healthy connection to the pool.
    pub(super) fn checkin(&self, mut conn: Conn) {
        if conn.ldap.is_closed() {
            return;
        }
        conn.since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.settings.max_connections.max(1) {
            idle.push(conn);
        }
    }

    /// Binds as the service account, or back to anonymous for anonymous searches (a new
    /// connection is anonymous already).
    pub(super) async fn searcher_bind(&self, conn: &mut Conn) -> Result<(), Failure> {
        let (dn, password) = match &self.settings.bind {
            LdapBind::Service { dn, password } => (dn.as_str(), password.expose()),
            LdapBind::Anonymous if conn.reused => ("", ""),
            LdapBind::Anonymous | LdapBind::AsUser { .. } => {
                conn.bound = BoundAs::Searcher;
                return Ok(());
            }
        };
        let result = conn
            .ldap
            .with_timeout(self.settings.timeout)
            .simple_bind(dn, password)
            .await
            .map_err(|e| classify("binding as the service account", e))?;
        if result.rc != RC_SUCCESS {
            return Err(Failure::Other(format!(
                "the server refused the service account's bind as {dn:?} (result code {}{}); \
                 check `bind_dn` and `bind_password_file`",
                result.rc,
                if result.text.is_empty() {
                    String::new()
                } else {
                    format!(": {}", result.text)
                }
            )));
        }
        conn.bound = BoundAs::Searcher;
        Ok(())
    }

    /// Opens a connection; `reserved` when [`Inner::open`] was already counted up for it.
    pub(super) async fn open(&self, reserved: bool) -> Result<Conn, Failure> {
        let s = &self.settings;
        let mut settings = LdapConnSettings::new().set_conn_timeout(s.timeout);
        if let Some(config) = &s.tls_config {
            settings = settings.set_config(config.clone());
        }
        if s.tls == LdapTls::StartTls {
            settings = settings.set_starttls(true);
        }
        let connected = LdapConnAsync::with_settings(settings, &self.url).await;
        match (connected.is_ok(), reserved) {
            (true, false) => {
                self.open.fetch_add(1, Ordering::AcqRel);
            }
            (false, true) => {
                self.open.fetch_sub(1, Ordering::AcqRel);
            }
            _ => {}
        }
        let (conn, ldap) = connected.map_err(|e| match e {
            LdapError::Timeout { .. } => Failure::Other(format!(
                "cannot connect to {}: no answer within {:?}",
                s.addr, s.timeout
            )),
            other => Failure::Other(format!("cannot connect to {}: {other}", s.addr)),
        })?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(backend = BACKEND, error = %e, "LDAP connection closed");
            }
        });
        Ok(Conn {
            ldap,
            bound: BoundAs::Other,
            since: Instant::now(),
            reused: false,
            open: self.open.clone(),
        })
    }
}
