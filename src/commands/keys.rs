//! `registry-auth hash-password` and `registry-auth gen-keys`.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use registry_auth::token::{self, KeyKind, SigningKey};

pub(crate) fn hash_password(cost: u32) -> Result<ExitCode> {
    let password = super::sql::read_new_password()?;
    let hash = bcrypt::hash(&password, cost).context("while hashing")?;
    writeln!(io::stdout(), "{hash}")?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn gen_keys(
    kind: &str,
    key: &Path,
    certificate: &Path,
    common_name: &str,
    days: u32,
    force: bool,
) -> Result<ExitCode> {
    let kind: KeyKind = kind
        .parse()
        .map_err(|e| anyhow::anyhow!("--type {kind}: {e}"))?;
    if !force {
        for p in [key, certificate] {
            if p.exists() {
                bail!("{} exists; pass --force to overwrite it", p.display());
            }
        }
    }
    let generated =
        token::generate_self_signed(kind, common_name, days).context("while generating the key")?;
    token::write_key_files(&generated, key, certificate).context("while writing the files")?;
    let loaded = SigningKey::load(certificate, key).context("while checking the new key")?;
    writeln!(
        io::stdout(),
        "wrote {} (private key, mode 0600) and {} ({}, kid {})\n\
         set token.key and token.certificate to them, and give the certificate to the registry \
         as auth.token.rootcertbundle",
        key.display(),
        certificate.display(),
        loaded.algorithm().as_str(),
        loaded.kid()
    )?;
    Ok(ExitCode::SUCCESS)
}
