//! `registry-auth healthcheck [URL]`: a tiny HTTP probe for container images without curl.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::body::Body;
use hyper::Request;
use hyper_util::rt::TokioIo;

pub(crate) fn healthcheck(url: &str, timeout: u64) -> Result<ExitCode> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!(
            "{url}: only http:// URLs are supported; with a TLS listener, probe the plain \
             `server.metrics_addr` listener instead"
        );
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        bail!("{url}: missing host:port");
    }
    let runtime = super::runtime()?;
    let status = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(timeout), probe(authority, path))
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {timeout} s"))?
    });
    match status {
        Ok(200) => Ok(ExitCode::SUCCESS),
        Ok(code) => {
            writeln!(io::stderr(), "unhealthy: {url} answered {code}")?;
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            writeln!(io::stderr(), "unhealthy: {url}: {e:#}")?;
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn probe(authority: &str, path: &str) -> Result<u16> {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| format!("cannot connect to {authority}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake failed")?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header(hyper::header::HOST, authority)
        .body(Body::empty())
        .context("bad request")?;
    let resp = sender.send_request(req).await.context("request failed")?;
    Ok(resp.status().as_u16())
}
