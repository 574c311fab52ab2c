//! `registry-auth jwks` and `registry-auth public-key`: what a registry must be given to trust
//! our tokens, printed from the config (the same keys `serve` publishes and signs with).

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use registry_auth::config::{self, Config};
use registry_auth::token::PublishedKeys;
use tracing::warn;

use super::serve::prepare_signing_key;

/// The JWK Set for registry v3's `auth.token.jwks`.
pub(crate) fn jwks(path: &Path, output: Option<&Path>) -> Result<ExitCode> {
    let Some(config) = load(path)? else {
        return Ok(ExitCode::FAILURE);
    };
    let published = published(&config)?;
    let text = published
        .jwks_json(config.token.header_mode, true)
        .context("while encoding the JWK Set")?;
    emit(output, &text, &format!("{} keys", published.keys().len()))
}

/// The signing key as PEM SubjectPublicKeyInfo, for zot's `http.auth.bearer.cert`.
pub(crate) fn public_key(path: &Path, output: Option<&Path>) -> Result<ExitCode> {
    let Some(config) = load(path)? else {
        return Ok(ExitCode::FAILURE);
    };
    let published = published(&config)?;
    let signing = published
        .signing()
        .context("no signing key is configured")?;
    emit(
        output,
        &signing.public_key_pem(),
        &format!("the {} public key", signing.algorithm()),
    )
}

/// Loads the config like `serve` does: problems go to stderr (then `None`), and with
/// `token.generate: true` a missing key is created now so that what we print is what `serve`
/// will sign with.
fn load(path: &Path) -> Result<Option<Config>> {
    let mut config = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(io::stderr(), "{e}");
            return Ok(None);
        }
    };
    for w in &config.warnings {
        warn!(path = %w.path, "{}", w.message);
    }
    prepare_signing_key(&mut config)?;
    Ok(Some(config))
}

fn published(config: &Config) -> Result<PublishedKeys> {
    let key = config
        .token
        .signing_key
        .as_ref()
        .context("the signing key is not loaded")?;
    Ok(PublishedKeys::new(key, &config.token.extra_certificates))
}

/// Writes `text` to `output` (replacing it) or to stdout.
fn emit(output: Option<&Path>, text: &str, what: &str) -> Result<ExitCode> {
    match output {
        Some(file) => {
            std::fs::write(file, text)
                .with_context(|| format!("while writing {}", file.display()))?;
            writeln!(io::stdout(), "wrote {what} to {}", file.display())?;
        }
        None => io::stdout().write_all(text.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}
