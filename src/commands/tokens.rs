//! `registry-auth tokens revoke` and `registry-auth robot create`.

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use registry_auth::authz::ScopeGrants;
use registry_auth::token::refresh::{RevocationList, unverified_token_id};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub(crate) fn revoke(path: &Path, user: Option<&str>, token: Option<&str>) -> Result<ExitCode> {
    let config = match super::load_config(path)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let Some(refresh) = &config.token.refresh else {
        bail!("refresh tokens are not enabled in {}", path.display());
    };
    let target = match (user, token) {
        (Some(user), _) => Target::User(user),
        (None, Some(token)) => {
            // A whole token, or just its id.
            Target::Token(unverified_token_id(token).unwrap_or_else(|| token.to_owned()))
        }
        (None, None) => bail!("give a token id or --user NAME"),
    };
    // A Redis or PostgreSQL store is the replicas' shared state: every replica reads it at each
    // refresh grant. Without one, the revocation file (which every replica must mount).
    if let Some(shared) = &config.shared_state {
        let store = shared
            .store_for_command()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let now = registry_auth::store::unix_now();
        // Kept while a token issued until now can live (an hour of margin for clocks).
        let keep_until = now
            .saturating_add(refresh.codec.lifetime().as_secs())
            .saturating_add(3600);
        let what = super::runtime()?.block_on(async {
            match &target {
                Target::User(user) => {
                    let at = store.revoke_refresh_subject(user, now, keep_until).await?;
                    Ok::<_, registry_auth::store::StoreError>(format!(
                        "every refresh token of user {user:?} issued until {}",
                        rfc3339(at)?
                    ))
                }
                Target::Token(id) => {
                    store.revoke_refresh_token(id, now, keep_until).await?;
                    Ok(format!("refresh token {id}"))
                }
            }
        });
        let what = what.map_err(|e| anyhow::anyhow!("{e} (nothing was revoked)"))?;
        writeln!(
            io::stdout(),
            "revoked {what} (written to the {} store; every replica refuses it at the next \
             refresh)",
            shared.description()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(file) = refresh.revocations.path() else {
        bail!(
            "set token.refresh.revocations_file in {} (a file every replica can read), or a \
             Redis or PostgreSQL `store` (shared by the replicas), to revoke tokens",
            path.display()
        );
    };
    let mut list = match fs::read_to_string(file) {
        Ok(text) => RevocationList::parse(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}; fix or remove it first", file.display()))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => RevocationList::default(),
        Err(e) => return Err(e).with_context(|| format!("while reading {}", file.display())),
    };
    let what = match target {
        Target::User(user) => {
            let now = OffsetDateTime::now_utc()
                .replace_nanosecond(0)
                .unwrap_or_else(|_| OffsetDateTime::now_utc())
                .format(&Rfc3339)
                .context("while formatting the time")?;
            list.users.insert(user.to_owned(), now.clone());
            format!("every refresh token of user {user:?} issued until {now}")
        }
        Target::Token(id) => {
            let what = format!("refresh token {id}");
            list.tokens.insert(id);
            what
        }
    };
    // A new file renamed over the old one: a full disk or a crash leaves the old list intact.
    let tmp = file.with_extension("tmp-revoke");
    let written = fs::write(&tmp, list.to_yaml())
        .with_context(|| format!("while writing {} (nothing was revoked)", tmp.display()))
        .and_then(|()| {
            fs::rename(&tmp, file).with_context(|| {
                format!("while replacing {} (nothing was revoked)", file.display())
            })
        });
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    writeln!(
        io::stdout(),
        "revoked {what} (written to {}; servers read it at the next refresh)",
        file.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

/// What `tokens revoke` revokes.
enum Target<'a> {
    User(&'a str),
    Token(String),
}

/// `unix` as RFC 3339.
fn rfc3339(unix: u64) -> Result<String, registry_auth::store::StoreError> {
    i64::try_from(unix)
        .ok()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .ok_or_else(|| registry_auth::store::StoreError {
            backend: "store",
            message: format!("{unix} is not a time"),
        })
}

pub(crate) fn robot_create(
    name: &str,
    scopes: &[String],
    expires: Option<&str>,
    cost: u32,
) -> Result<ExitCode> {
    if !registry_auth::authn::is_valid_robot_name(name) {
        bail!("robot names are lower-case letters, digits, `.`, `_` or `-`");
    }
    if let Err(errors) = ScopeGrants::compile(scopes) {
        let messages: Vec<String> = errors.into_iter().map(|(_, m)| m).collect();
        bail!("bad --scope: {}", messages.join("; "));
    }
    let expires = match expires {
        None => None,
        Some(text) => Some(match humantime::parse_duration(text) {
            Ok(d) => OffsetDateTime::from(SystemTime::now() + d)
                .replace_nanosecond(0)
                .unwrap_or_else(|_| OffsetDateTime::now_utc())
                .format(&Rfc3339)
                .context("while formatting the expiry")?,
            Err(_) => {
                OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
                    anyhow::anyhow!(
                        "--expires {text:?}: give a duration (30d, 12h) or an RFC 3339 time"
                    )
                })?;
                text.to_owned()
            }
        }),
    };
    let secret_bytes: [u8; 32] = rand::random();
    let secret = URL_SAFE_NO_PAD.encode(secret_bytes);
    let hash = bcrypt::hash(&secret, cost).context("while hashing the secret")?;
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "Robot `robot${name}` created. Its secret, shown only this once:\n"
    )?;
    writeln!(out, "    {secret}\n")?;
    writeln!(
        out,
        "Add this under `robots:` in the config (the hash, never the secret):\n"
    )?;
    writeln!(out, "robots:\n  {name}:\n    secret: \"{hash}\"")?;
    if let Some(e) = &expires {
        writeln!(out, "    expires: \"{e}\"")?;
    }
    let quoted: Vec<String> = scopes
        .iter()
        .map(|s| serde_json::Value::String(s.clone()).to_string())
        .collect();
    writeln!(out, "    scopes: [{}]", quoted.join(", "))?;
    writeln!(
        out,
        "\nLog in with: echo \"$SECRET\" | docker login --username 'robot${name}' --password-stdin REGISTRY"
    )?;
    Ok(ExitCode::SUCCESS)
}
