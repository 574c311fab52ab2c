//! `registry-auth serve`.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use registry_auth::config::{self, Config};
use registry_auth::server::{self, AppState};
use registry_auth::token::{self, SigningKey};
use tracing::{info, warn};

pub(crate) fn serve(path: &Path, listen: Option<String>) -> Result<ExitCode> {
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
    let limits = config.server.limits;
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
        server::serve(listener, server::router(state), limits, shutdown_signal())
            .await
            .context("while serving")?;
        info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Generates the key and certificate on first start when `token.generate` is set, then loads it.
pub(crate) fn prepare_signing_key(config: &mut Config) -> Result<()> {
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
            header = ?t.header_mode,
            kid = key.public_key().kid(t.header_mode),
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
