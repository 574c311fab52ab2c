//! `registry-auth logins list|revoke`: the passwords minted by the web logins, in `store`.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use registry_auth::authn::principal;
use registry_auth::config::Config;
use registry_auth::store::{MintedRecord, Store};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{load_config, runtime};

/// Loads the config and its store, or prints the config's problems (`Err(exit code)`).
fn store_of(path: &Path) -> Result<Result<(Config, Store), ExitCode>> {
    let config = match load_config(path)? {
        Ok(c) => c,
        Err(code) => return Ok(Err(code)),
    };
    let Some(logins) = &config.web_logins else {
        bail!(
            "{} has no web login (`github_auth`, `google_auth`, `oidc_auth`, `gitlab_auth`): \
             there are no minted passwords",
            path.display()
        );
    };
    let store = match logins.store_with_secret() {
        Ok(s) => s.clone(),
        Err(e) => bail!("{e}"),
    };
    Ok(Ok((config, store)))
}

fn time(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// The records of `subject`: `source:account` names one web login's account, a bare name the
/// account in every web login (all of them, when `None`).
async fn records_of(store: &Store, subject: Option<&str>) -> Result<Vec<(String, MintedRecord)>> {
    let (source, account) = match subject.map(principal::parse_subject) {
        Some((source, account)) => (source, Some(account)),
        None => (None, None),
    };
    let mut records = store.list(account).await?;
    // GitHub and GitLab logins are stored lower-cased (both ignore their case): `Alice` names
    // the same account as `alice` there.
    if let Some(lower) = account
        .map(str::to_lowercase)
        .filter(|l| Some(l.as_str()) != account)
    {
        let more = store.list(Some(&lower)).await?;
        records.extend(
            more.into_iter()
                .filter(|(_, r)| matches!(r.provider.as_str(), "github_auth" | "gitlab_auth")),
        );
    }
    records.retain(|(_, r)| source.is_none_or(|s| r.provider == s));
    Ok(records)
}

/// One record: the principal's subject (as in tokens and the audit log), its source, times and
/// labels.
fn line(config: &Config, record: &MintedRecord) -> String {
    let provider = principal::FEDERATED
        .iter()
        .find(|s| **s == record.provider)
        .copied()
        .unwrap_or("unknown");
    format!(
        "{}\t{}\tminted {}\texpires {}\tlabels {}",
        config.namespaces.subject(provider, &record.user),
        record.provider,
        time(record.created_at),
        time(record.expires_at),
        serde_json::to_string(&record.labels).unwrap_or_default()
    )
}

pub(crate) fn list(path: &Path, user: Option<&str>) -> Result<ExitCode> {
    let (config, store) = match store_of(path)? {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let records = runtime()?.block_on(records_of(&store, user))?;
    let mut out = io::stdout().lock();
    for (_, record) in &records {
        writeln!(out, "{}", line(&config, record))?;
    }
    let description = config
        .web_logins
        .as_ref()
        .map_or("", |l| l.store_description());
    writeln!(
        out,
        "{} minted password{} in {description}",
        records.len(),
        if records.len() == 1 { "" } else { "s" }
    )?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn revoke(path: &Path, user: &str) -> Result<ExitCode> {
    let (_, store) = match store_of(path)? {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let revoked = runtime()?.block_on(async {
        let records = records_of(&store, Some(user)).await?;
        for (id, _) in &records {
            store.delete(id).await?;
        }
        anyhow::Ok(records.len())
    })?;
    writeln!(
        io::stdout(),
        "revoked {revoked} minted password{} of {user:?}",
        if revoked == 1 { "" } else { "s" }
    )?;
    Ok(ExitCode::SUCCESS)
}
