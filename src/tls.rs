//! TLS for the listener (rustls with the aws-lc-rs provider): the certificate chain and key
//! are read and checked at config load, and again on every reload (SIGHUP, or a change of the
//! files, e.g. cert-manager renewing the Secret): [`LiveCert`] is the listener's certificate
//! resolver, so the next handshake uses the new pair while established connections keep theirs.
//! A pair that cannot be used fails the reload and the previous certificate keeps serving.
//! The protocol versions (`tls_min_version`) are fixed when the listener starts.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::aws_lc_rs;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why the TLS files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file holds no usable certificate.
    #[error("cannot read the TLS certificate chain from {path}: {detail}")]
    Certificate {
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// The key file holds no usable key.
    #[error("cannot read the TLS private key from {path}: {detail}")]
    Key {
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// The key is not the certificate's.
    #[error(
        "the private key in {key} does not belong to the certificate in {certificate}: give the \
         key the certificate was issued for (both files of the same renewal, e.g. `tls.crt` and \
         `tls.key` of one Kubernetes TLS Secret)"
    )]
    Mismatch {
        /// The certificate file.
        certificate: String,
        /// The key file.
        key: String,
    },
    /// rustls refused the pair or the settings.
    #[error("the TLS certificate and key cannot be used together: {0}")]
    Config(String),
}

/// Reads the certificate chain (leaf first) and its private key, and checks that they belong
/// together.
pub fn certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect)
        .map_err(|e| TlsError::Certificate {
            path: cert.display().to_string(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Certificate {
            path: cert.display().to_string(),
            detail: "no CERTIFICATE block found".to_owned(),
        });
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        detail: e.to_string(),
    })?;
    let signing_key = aws_lc_rs::default_provider()
        .key_provider
        .load_private_key(private_key)
        .map_err(|e| TlsError::Key {
            path: key.display().to_string(),
            detail: e.to_string(),
        })?;
    let certified = CertifiedKey::new(certs, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::Mismatch {
                certificate: cert.display().to_string(),
                key: key.display().to_string(),
            })
        }
        Err(e) => Err(TlsError::Config(e.to_string())),
    }
}

/// The SHA-256 fingerprint of a pair's leaf certificate (hex, for logs).
pub fn fingerprint(key: &CertifiedKey) -> String {
    let leaf = key.cert.first().map(|c| c.as_ref()).unwrap_or_default();
    ::aws_lc_rs::digest::digest(&::aws_lc_rs::digest::SHA256, leaf)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The listener's certificate: the pair in force, replaced on reload.
#[derive(Debug)]
pub struct LiveCert {
    current: ArcSwap<CertifiedKey>,
}

impl LiveCert {
    /// Reads the pair (see [`certified_key`]).
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(Self {
            current: ArcSwap::from_pointee(certified_key(cert, key)?),
        })
    }

    /// The pair in force.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// Puts `key` in force for the next handshakes.
    pub fn store(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }
}

impl ResolvesServerCert for LiveCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The rustls server configuration (HTTP/1.1 via ALPN) serving `cert`'s pair in force.
pub fn server_config(cert: Arc<LiveCert>, tls13_only: bool) -> Result<Arc<ServerConfig>, TlsError> {
    let versions: &[&rustls::SupportedProtocolVersion] = if tls13_only {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut config = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| unreachable!("{e}"));
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .and_then(|p| p.self_signed(&key))
            .unwrap_or_else(|e| unreachable!("{e}"));
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap_or_else(|e| unreachable!("{e}"));
        std::fs::write(&k, key.serialize_pem()).unwrap_or_else(|e| unreachable!("{e}"));
        (c, k)
    }

    #[test]
    fn a_key_of_another_certificate_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let (a_crt, a_key) = pair(dir.path(), "a");
        let (b_crt, _) = pair(dir.path(), "b");
        assert!(certified_key(&a_crt, &a_key).is_ok());
        let e = certified_key(&b_crt, &a_key)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("does not belong to the certificate") && e.contains("b.crt"),
            "{e}"
        );
        let e = certified_key(&a_key, &a_key)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("no CERTIFICATE block"), "{e}");
    }

    #[test]
    fn the_live_certificate_serves_the_pair_stored_last() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let (a_crt, a_key) = pair(dir.path(), "a");
        let (b_crt, b_key) = pair(dir.path(), "b");
        let live = LiveCert::load(&a_crt, &a_key).unwrap_or_else(|e| unreachable!("{e}"));
        let a = fingerprint(&live.current());
        let b = certified_key(&b_crt, &b_key).unwrap_or_else(|e| unreachable!("{e}"));
        let b_print = fingerprint(&b);
        assert_ne!(a, b_print);
        live.store(b);
        assert_eq!(fingerprint(&live.current()), b_print);
        assert_eq!(a.len(), 64);
    }
}
