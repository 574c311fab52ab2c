//! TLS for outbound connections (`ldap_auth`, `http_auth`, `http_authz`; the Redis store checks
//! its CA file and client certificate here at load): rustls with the
//! aws-lc-rs provider, trusting the CA file of the configuration or, without one, the system's
//! trust store. Built once at config load, so a bad CA file is a load error naming its path.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// Whose certificates a client trusts.
#[derive(Debug, Clone, Copy)]
pub enum Trust<'a> {
    /// The system's trust store.
    System,
    /// The CA certificates in this PEM file.
    CaFile(&'a Path),
    /// Anything (`insecure_tls_skip_verify`): the connection is encrypted, but to whoever
    /// answers. Signatures in the handshake are still checked.
    Insecure,
}

/// A client configuration for `trust`, HTTP/1.1 announced through ALPN when `alpn_http1`.
/// The error names the file and says what is wrong with it.
pub fn client_config(trust: Trust<'_>, alpn_http1: bool) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    let mut config = match trust {
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth(),
        Trust::CaFile(path) => {
            let mut roots = RootCertStore::empty();
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(Iterator::collect)
                .map_err(|e| format!("cannot read CA certificates from {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "{} holds no CERTIFICATE block; give a PEM file of the CA certificate(s)",
                    path.display()
                ));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::System => {
            let mut roots = RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map_or_else(String::new, |e| format!(" ({e})"));
                return Err(format!(
                    "no CA certificate found in the system's trust store{why}; install the \
                     ca-certificates package or set `ca_certificate`"
                ));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    if alpn_http1 {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
    }
    Ok(Arc::new(config))
}

/// Reads a client certificate chain and its private key (PEM files, for mutual TLS) and checks
/// that both parse and that the key belongs to the certificate. The PEM texts on success; on
/// failure, whether the key file (`true`) or the certificate file is at fault, and why.
pub fn client_identity(cert: &Path, key: &Path) -> Result<(Vec<u8>, String), (bool, String)> {
    let cert_pem =
        std::fs::read(cert).map_err(|e| (false, format!("cannot read {}: {e}", cert.display())))?;
    let key_pem = std::fs::read_to_string(key)
        .map_err(|e| (true, format!("cannot read {}: {e}", key.display())))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            (
                false,
                format!("{}: not PEM certificates: {e}", cert.display()),
            )
        })?;
    if chain.is_empty() {
        return Err((
            false,
            format!(
                "{} holds no CERTIFICATE block; give the PEM file of the client certificate \
                 (and its intermediates)",
                cert.display()
            ),
        ));
    }
    let der = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
        (
            true,
            format!(
                "{} holds no PEM private key (`PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE \
                 KEY`): {e}",
                key.display()
            ),
        )
    })?;
    let signing = aws_lc_rs::default_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| {
            (
                true,
                format!("{}: not a usable private key: {e}", key.display()),
            )
        })?;
    CertifiedKey::new(chain, signing)
        .keys_match()
        .map_err(|_| {
            (
                true,
                format!(
                    "the key in {} does not belong to the certificate in {}; give the key the \
                 certificate was issued for",
                    key.display(),
                    cert.display()
                ),
            )
        })?;
    Ok((cert_pem, key_pem))
}

/// `insecure_tls_skip_verify`: any certificate, any name.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_is_read_and_problems_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_owned()]).unwrap();
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, ca.cert.pem()).unwrap();
        assert!(client_config(Trust::CaFile(&good), true).is_ok());
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing here\n").unwrap();
        let err = client_config(Trust::CaFile(&empty), false).unwrap_err();
        assert!(
            err.contains("empty.pem") && err.contains("CERTIFICATE"),
            "{err}"
        );
        let missing = dir.path().join("missing.pem");
        let err = client_config(Trust::CaFile(&missing), false).unwrap_err();
        assert!(err.contains("missing.pem"), "{err}");
        assert!(client_config(Trust::Insecure, false).is_ok());
    }

    #[test]
    fn a_client_identity_needs_a_certificate_and_its_own_key() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let one = rcgen::generate_simple_self_signed(vec!["client.test".to_owned()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["other.test".to_owned()]).unwrap();
        let cert = write("cert.pem", &one.cert.pem());
        let key = write("key.pem", &one.signing_key.serialize_pem());
        let (c, k) = client_identity(&cert, &key).unwrap();
        assert!(String::from_utf8(c).unwrap().contains("BEGIN CERTIFICATE"));
        assert!(k.contains("PRIVATE KEY"));
        let wrong = write("wrong.pem", &other.signing_key.serialize_pem());
        let (is_key, e) = client_identity(&cert, &wrong).unwrap_err();
        assert!(is_key && e.contains("does not belong"), "{e}");
        let (is_key, e) = client_identity(&key, &key).unwrap_err();
        assert!(!is_key && e.contains("CERTIFICATE"), "{e}");
        let (is_key, e) = client_identity(&cert, &cert).unwrap_err();
        assert!(is_key && e.contains("private key"), "{e}");
        let (is_key, e) = client_identity(&cert, &dir.path().join("gone.pem")).unwrap_err();
        assert!(is_key && e.contains("gone.pem"), "{e}");
    }
}
