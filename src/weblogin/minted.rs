//! Minted passwords as credentials: checking one (`docker login`, refresh tokens) and
//! revalidating its upstream account once `revalidate_after` has passed; a revoked account's
//! password is deleted.

use std::sync::Arc;

use tracing::info;

use super::seal::{Keys, Purpose};
use super::{
    MINTED_FINGERPRINT_PREFIX, ProviderKind, UpstreamTokens, Verdict, WebLogins, seal_tokens,
};
use crate::authn::{AuthnError, AuthnOutcome, Credentials, Identity, IdentityKind};
use crate::store::{self, MintedRecord, unix_now};

impl WebLogins {
    /// The chain link: checks a minted password of provider `kind`.
    pub async fn authenticate(
        &self,
        kind: ProviderKind,
        creds: &Credentials,
    ) -> Result<AuthnOutcome, AuthnError> {
        if creds.is_anonymous() || !store::looks_minted(creds.password.expose()) {
            return Ok(AuthnOutcome::NoMatch);
        }
        let id = store::password_id(creds.password.expose());
        match self.current(kind, &creds.account, &id).await? {
            Current::Valid(identity) => Ok(AuthnOutcome::Authenticated(identity)),
            Current::NotOurs => Ok(AuthnOutcome::NoMatch),
            Current::Gone => Ok(AuthnOutcome::WrongPassword),
        }
    }

    /// Re-checks the minted password behind a refresh token (by its fingerprint).
    pub async fn lookup(
        &self,
        account: &str,
        fingerprint: &str,
    ) -> Result<Option<Identity>, AuthnError> {
        let Some(id) = fingerprint.strip_prefix(MINTED_FINGERPRINT_PREFIX) else {
            return Ok(None);
        };
        let Some(kind) = self.kind_of(id).await? else {
            return Ok(None);
        };
        match self.current(kind, account, id).await? {
            Current::Valid(identity) => Ok(Some(identity)),
            Current::NotOurs | Current::Gone => Ok(None),
        }
    }

    async fn kind_of(&self, id: &str) -> Result<Option<ProviderKind>, AuthnError> {
        let record = self.store.get(id).await.map_err(|e| AuthnError::Backend {
            backend: "store",
            message: e.to_string(),
        })?;
        Ok(record.and_then(|r| ProviderKind::from_key(&r.provider)))
    }

    /// The current state of the password `id` for `account`, revalidating upstream when due.
    async fn current(
        &self,
        kind: ProviderKind,
        account: &str,
        id: &str,
    ) -> Result<Current, AuthnError> {
        let record = self
            .store
            .get(id)
            .await
            .map_err(|e| backend_error(kind, e))?;
        let Some(mut record) = record else {
            return Ok(Current::NotOurs);
        };
        if record.provider != kind.key() || !kind.same_user(&record.user, account) {
            return Ok(Current::NotOurs);
        }
        if record.revalidate_at <= unix_now() {
            // One revalidation per password at a time in this process; whoever waited uses the
            // fresh record (rotating refresh tokens must not be spent twice).
            let lock = self
                .revalidating
                .get_with(id.to_owned(), || Arc::new(tokio::sync::Mutex::new(())));
            let _guard = lock.lock().await;
            let seen = match self
                .store
                .get_versioned(id)
                .await
                .map_err(|e| backend_error(kind, e))?
            {
                Some(v)
                    if v.record.provider == kind.key()
                        && kind.same_user(&v.record.user, account) =>
                {
                    v
                }
                _ => return Ok(Current::NotOurs),
            };
            record = seen.record.clone();
            if record.revalidate_at <= unix_now() {
                match self.revalidate(kind, account, id, seen).await? {
                    Some(r) => record = r,
                    None => return Ok(Current::Gone),
                }
            }
        }
        Ok(Current::Valid(Identity {
            account: record.user,
            labels: record.labels,
            kind: IdentityKind::External(kind.key()),
            fingerprint: Some(format!("{MINTED_FINGERPRINT_PREFIX}{id}")),
        }))
    }

    /// Re-checks the upstream account of a minted password; `None` when it is revoked.
    async fn revalidate(
        &self,
        kind: ProviderKind,
        account: &str,
        id: &str,
        seen: store::Versioned,
    ) -> Result<Option<MintedRecord>, AuthnError> {
        let mut record = seen.record.clone();
        let Some(provider) = self.provider(kind) else {
            return Ok(None);
        };
        let keys = self.keys().map_err(|e| backend_error(kind, e))?;
        let revoke = |why: &str| {
            info!(provider = kind.key(), account, reason = %why, "minted password revoked");
        };
        let Some(tokens) = open_tokens(keys, kind, &record.upstream) else {
            revoke(
                "its upstream tokens cannot be opened (was server.session_secret_file changed?)",
            );
            self.store
                .delete(id)
                .await
                .map_err(|e| backend_error(kind, e))?;
            return Ok(None);
        };
        let verdict = provider.revalidate(&tokens).await.map_err(|e| {
            backend_error(kind, format!("cannot revalidate {account:?} upstream: {e}"))
        })?;
        let why = match verdict {
            Verdict::Allowed(a) if a.user == record.user => {
                let now = unix_now();
                record.labels = a.labels;
                record.revalidate_at = now + provider.common.revalidate_after.as_secs();
                record.upstream = seal_tokens(keys, kind, &a.tokens);
                // Only if nobody changed it meanwhile: a sign-out or `logins revoke` that landed
                // during the upstream calls wins (the record stays deleted).
                if !self
                    .store
                    .update(id, &seen, &record)
                    .await
                    .map_err(|e| backend_error(kind, e))?
                {
                    return self.changed_meanwhile(kind, account, id).await;
                }
                info!(
                    provider = kind.key(),
                    account, "minted password revalidated upstream"
                );
                return Ok(Some(record));
            }
            Verdict::Allowed(_) => "the upstream account now has another name".to_owned(),
            Verdict::Refused(why) => why,
        };
        // Another replica may have revalidated meanwhile (and spent a rotating refresh token).
        if let Some(fresh) = self
            .store
            .get(id)
            .await
            .map_err(|e| backend_error(kind, e))?
            && fresh.revalidate_at > unix_now()
        {
            return Ok(Some(fresh));
        }
        revoke(&format!("the upstream account is no longer allowed: {why}"));
        self.store
            .delete(id)
            .await
            .map_err(|e| backend_error(kind, e))?;
        Ok(None)
    }

    /// The record changed while it was being revalidated: deleted (signed out, revoked) or
    /// revalidated by another replica. Its current state, or `None` when it is gone.
    async fn changed_meanwhile(
        &self,
        kind: ProviderKind,
        account: &str,
        id: &str,
    ) -> Result<Option<MintedRecord>, AuthnError> {
        match self
            .store
            .get(id)
            .await
            .map_err(|e| backend_error(kind, e))?
        {
            Some(fresh) if fresh.revalidate_at > unix_now() => Ok(Some(fresh)),
            _ => {
                info!(
                    provider = kind.key(),
                    account, "minted password revoked while it was being revalidated"
                );
                Ok(None)
            }
        }
    }
}

enum Current {
    Valid(Identity),
    /// No such password (or another user's, or another provider's).
    NotOurs,
    /// It existed and is now revoked (upstream refused it).
    Gone,
}

fn backend_error(kind: ProviderKind, message: impl std::fmt::Display) -> AuthnError {
    AuthnError::Backend {
        backend: kind.key(),
        message: message.to_string(),
    }
}

fn open_tokens(keys: &Keys, kind: ProviderKind, sealed: &str) -> Option<UpstreamTokens> {
    let plain = keys.open(Purpose::Upstream, kind.key(), sealed)?;
    serde_json::from_slice(&plain).ok()
}
