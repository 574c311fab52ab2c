//! `registry-auth serve`.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use registry_auth::config::{self, AuthnBackend, AuthzBackend, Config};
use registry_auth::server::{self, AppState, Listener, reload};
use registry_auth::sql::SqlDb;
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
    let server_config = config.server.clone();
    let state = AppState::new(config).context("while preparing the server")?;
    let tls = state
        .listener_tls()
        .context("while loading the TLS certificate")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("while starting the async runtime")?;
    runtime.block_on(async move {
        let listener = Listener::bind(&addr, server_config.unix)
            .await
            .with_context(|| format!("while binding {addr}"))?;
        info!(
            addr = %listener.describe(),
            tls = tls.is_some(),
            "registry-auth listening"
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let mut metrics_task = None;
        if let Some(maddr) = &server_config.metrics_addr {
            let mlistener = Listener::bind(maddr, false)
                .await
                .with_context(|| format!("while binding server.metrics_addr {maddr}"))?;
            info!(addr = %mlistener.describe(), "metrics listening");
            let router = server::ops_router(state.clone());
            let limits = server_config.limits;
            let stop = stopped(stop_rx.clone());
            metrics_task = Some(tokio::spawn(async move {
                server::serve(mlistener, router, limits, None, stop).await
            }));
        }
        tokio::spawn(reload::watch(state.clone(), path.to_path_buf()));
        tokio::spawn(check_backends(state.clone()));
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        server::serve(
            listener,
            server::router(state),
            server_config.limits,
            tls,
            stopped(stop_rx),
        )
        .await
        .context("while serving")?;
        if let Some(task) = metrics_task {
            let _ = task.await;
        }
        info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Connects to the databases and the password store once at start-up, in the background, so a
/// problem shows in the log (and in `/readyz`) at once rather than at the first request that
/// needs them. Never stops the start: anonymous pulls and local users work without them.
async fn check_backends(state: AppState) {
    let inner = state.current();
    let config = &inner.config;
    for backend in &config.authn_order {
        if let AuthnBackend::Sql(sql) = backend {
            let result = sql.db().migrate().await;
            SqlDb::record(sql.health(), &result);
            match result {
                Ok(_) => info!(backend = "sql_auth", db = %sql.db().describe(), "database ready"),
                Err(e) => warn!(
                    backend = "sql_auth",
                    error = %e,
                    "the database is not reachable yet; its users get a 503 until it is"
                ),
            }
        }
    }
    for backend in &config.authz_order {
        if let AuthzBackend::Sql(sql) = backend {
            match sql.snapshot().await {
                Ok(acl) => info!(
                    backend = "acl_sql",
                    rows = acl.rows().len(),
                    "ACL rows loaded"
                ),
                Err(e) => warn!(
                    backend = "acl_sql",
                    error = %e,
                    "the ACL table cannot be read yet; scopes it decides get a 503 until it can"
                ),
            }
        }
    }
    if let Some(web) = &config.web_logins {
        web.check_store().await;
    } else if let Some(shared) = &config.shared_state {
        match shared.store().check().await {
            Ok(()) => info!(store = %shared.description(), "shared store ready"),
            Err(e) => warn!(
                store = %shared.description(),
                error = %e,
                "the shared store is not reachable yet; refresh grants get a 503 and the lockout \
                 counts on this replica alone until it is"
            ),
        }
    }
}

/// Generates the key and certificate on first start when `token.generate` is set, then loads it.
pub(crate) fn prepare_signing_key(config: &mut Config) -> Result<()> {
    server::state::prepare_signing_key(config).context("while preparing the signing key")
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
