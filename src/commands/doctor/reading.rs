//! What the doctor reads besides HTTP status lines: dates, published key documents, the
//! realm's token (decoded, never verified or printed) and the registry's log.

use std::collections::BTreeSet;
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use registry_auth::token::PublishedKey;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Largest registry log read (the tail is kept).
pub(super) const MAX_LOG: u64 = 64 << 20;

pub(super) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// An IMF-fixdate (`Mon, 07 Dec 2026 20:30:00 GMT`) as unix seconds.
pub(super) fn parse_http_date(value: &str) -> Option<i64> {
    let format = time::format_description::parse_borrowed::<2>(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT",
    )
    .ok()?;
    time::PrimitiveDateTime::parse(value.trim(), &format)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

/// The identities of the certificates of a PEM bundle: the libtrust key ID of each one's key,
/// or its DER hash when the key is of a kind tokens cannot use.
pub(super) fn cert_ids(pem: &[u8]) -> BTreeSet<String> {
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .map(|der| {
            PublishedKey::from_chain(vec![der.to_vec()], "bundle").map_or_else(
                |_| {
                    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
                    format!("sha256:{}", URL_SAFE_NO_PAD.encode(digest.as_ref()))
                },
                |k| k.libtrust_kid().to_owned(),
            )
        })
        .collect()
}

/// The `kid`s of a JWK Set document.
pub(super) fn jwks_kids(body: &[u8]) -> Option<BTreeSet<String>> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    Some(
        v.get("keys")?
            .as_array()?
            .iter()
            .filter_map(|k| k.get("kid").and_then(|k| k.as_str()).map(str::to_owned))
            .collect(),
    )
}

/// The `iss` of the token in a token response (decoded, not verified: it is only compared).
pub(super) fn token_issuer(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let token = v.get("token").or_else(|| v.get("access_token"))?.as_str()?;
    let payload = token.split('.').nth(1)?;
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

/// How long the log stream on stdin is still read after the last probe.
pub(super) const STDIN_GRACE: Duration = Duration::from_millis(1500);

/// The registry log streamed on stdin, read by a background thread into a bounded buffer
/// (the thread ends with the process; a stream like `docker logs -f` never ends by itself).
#[derive(Debug, Clone, Default)]
pub(super) struct StdinLog(Arc<Mutex<Vec<u8>>>);

impl StdinLog {
    pub(super) fn start() -> StdinLog {
        let log = StdinLog::default();
        let buffer = log.0.clone();
        std::thread::spawn(move || {
            let mut stdin = io::stdin().lock();
            let mut chunk = [0u8; 8192];
            while let Ok(n) = stdin.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let mut b = buffer
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                b.extend_from_slice(&chunk[..n]);
                let len = b.len();
                if len as u64 > MAX_LOG {
                    b.drain(..len - MAX_LOG as usize);
                }
            }
        });
        log
    }

    pub(super) fn snapshot(&self) -> String {
        let b = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&b).into_owned()
    }
}

/// The registry log file from `offset` (its length before the probes; from the start if it
/// shrank). At most the last [`MAX_LOG`] bytes.
pub(super) fn read_log(source: &str, offset: Option<u64>) -> Result<String> {
    let mut bytes = Vec::new();
    {
        let path = Path::new(source);
        let mut file = std::fs::File::open(path)
            .with_context(|| format!("cannot open --registry-log {source}"))?;
        let len = file.metadata()?.len();
        let from = match offset {
            Some(o) if o <= len => o,
            _ => 0,
        };
        file.seek(SeekFrom::Start(from.max(len.saturating_sub(MAX_LOG))))?;
        file.read_to_end(&mut bytes)
            .with_context(|| format!("while reading --registry-log {source}"))?;
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
