//! The `registry-auth` binary: parses the command line, sets up logging and runs a command.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Parser;
use registry_auth::authn::Labels;
use registry_auth::cli::{AclCommand, Cli, Command};
use registry_auth::config::{self, Config, ConfigError};
use registry_auth::grant::authorize_scopes;
use registry_auth::server::{self, AppState};
use registry_auth::telemetry;
use registry_auth::token::{self, KeyKind, SigningKey, parse_scopes};
use tracing::{info, warn};

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(&cli.log_level, cli.log_format);
    let result = match cli.command {
        Command::Serve { config, listen } => serve(&config, listen),
        Command::CheckConfig { config } => check_config(&config),
        Command::HashPassword { cost } => hash_password(cost),
        Command::GenKeys {
            kind,
            key,
            certificate,
            common_name,
            days,
            force,
        } => gen_keys(&kind, &key, &certificate, &common_name, days, force),
        Command::Acl(AclCommand::Explain {
            config,
            account,
            labels,
            ip,
            service,
            scopes,
        }) => acl_explain(&config, &account, &labels, ip, &service, &scopes),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(path: &Path, listen: Option<String>) -> Result<ExitCode> {
    let mut config = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(io::stderr(), "{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    for w in &config.warnings {
        warn!(path = %w.path, "{}", w.message);
    }
    prepare_signing_key(&mut config)?;
    let addr = listen.unwrap_or_else(|| config.server.addr.clone());
    let state = AppState::new(config).context("while preparing the server")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("while starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("while binding {addr}"))?;
        let local = listener
            .local_addr()
            .context("while reading the bound address")?;
        info!(addr = %local, "registry-auth listening");
        server::serve(listener, server::router(state), shutdown_signal())
            .await
            .context("while serving")?;
        info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Generates the key and certificate on first start when `token.generate` is set, then loads it.
fn prepare_signing_key(config: &mut Config) -> Result<()> {
    let t = &mut config.token;
    if t.signing_key.is_none() {
        let created = token::ensure_generated(&t.key, &t.certificate, &t.issuer)
            .context("while generating the signing key")?;
        let key = SigningKey::load(&t.certificate, &t.key)
            .context("while loading the generated signing key")?;
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
            kid = key.kid(),
            "signing tokens; the registry's rootcertbundle must hold this certificate (or its CA)"
        );
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    info!("shutting down: draining in-flight requests");
}

fn check_config(path: &Path) -> Result<ExitCode> {
    let mut out = io::stdout().lock();
    match config::load(path) {
        Ok(c) => {
            for w in &c.warnings {
                writeln!(out, "warning: {w}")?;
            }
            let users = c.authn.users();
            writeln!(
                out,
                "{}: OK ({} user{}, anonymous access {}, {} ACL entr{}, tokens signed {})",
                path.display(),
                users.len(),
                if users.len() == 1 { "" } else { "s" },
                if users.allows_anonymous() {
                    "enabled"
                } else {
                    "disabled"
                },
                c.acl.len(),
                if c.acl.len() == 1 { "y" } else { "ies" },
                match &c.token.signing_key {
                    Some(k) => format!("{} with kid {}", k.algorithm().as_str(), k.kid()),
                    None => format!(
                        "with a key generated at first start in {}",
                        c.token.key.display()
                    ),
                }
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ ConfigError::Invalid { .. }) | Err(e @ ConfigError::Read { .. }) => {
            writeln!(out, "{e}")?;
            Ok(ExitCode::FAILURE)
        }
    }
}

fn hash_password(cost: u32) -> Result<ExitCode> {
    let stdin = io::stdin();
    let password = if stdin.is_terminal() {
        let first = rpassword::prompt_password("Password: ").context("while reading")?;
        let second = rpassword::prompt_password("Again: ").context("while reading")?;
        if first != second {
            bail!("the passwords differ");
        }
        first
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("while reading stdin")?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    if password.is_empty() {
        bail!("empty password; registry-auth never accepts an empty password");
    }
    let hash = bcrypt::hash(&password, cost).context("while hashing")?;
    writeln!(io::stdout(), "{hash}")?;
    Ok(ExitCode::SUCCESS)
}

fn gen_keys(
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

fn acl_explain(
    path: &Path,
    account: &str,
    labels: &[String],
    ip: Option<std::net::IpAddr>,
    service: &str,
    scopes: &[String],
) -> Result<ExitCode> {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            writeln!(io::stdout(), "{e}")?;
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut label_map = Labels::default();
    for l in labels {
        let Some((k, v)) = l.split_once('=') else {
            bail!("--labels {l}: expected KEY=VALUE");
        };
        label_map
            .0
            .entry(k.to_owned())
            .or_default()
            .push(v.to_owned());
    }
    let scopes = parse_scopes(scopes.iter().map(String::as_str))?;
    let decisions = authorize_scopes(&config.acl, account, &label_map, service, ip, &scopes);
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "account {account:?}, service {service:?}, ip {}, labels {:?}",
        ip.map_or_else(|| "none".to_owned(), |i| i.to_string()),
        label_map.0
    )?;
    for d in decisions {
        let granted = if d.granted.is_empty() {
            "nothing (denied)".to_owned()
        } else {
            d.granted.join(",")
        };
        writeln!(out, "{}\n  granted: {granted}", d.scope)?;
        match d.entry {
            Some(i) => {
                let entry = config
                    .acl_entries
                    .get(i)
                    .map(config::describe_acl_entry)
                    .unwrap_or_default();
                writeln!(out, "  decided by acl[{i}]: {entry}")?;
            }
            None => writeln!(
                out,
                "  decided by: no ACL entry matched (denied by default)"
            )?,
        }
    }
    Ok(ExitCode::SUCCESS)
}
