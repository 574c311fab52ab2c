//! Signing material for the tests (made with the crate's own key generator), bcrypt hashes,
//! and an independent implementation of the libtrust key ID the registry looks up.

use std::fs;
use std::path::{Path, PathBuf};

use registry_auth::token::{self, GeneratedKey, KeyKind};
use x509_parser::pem::Pem;
use x509_parser::prelude::*;

/// How the token server signs and how the registry is told to trust it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySetup {
    /// Self-signed EC P-256 (ES256), `kid-libtrust`; bundle = the certificate.
    EcKid,
    /// Self-signed RSA 2048 (RS256), `kid-libtrust`; bundle = the certificate.
    RsaKid,
    /// EC P-256 leaf signed by a test CA, `x5c`; the server's certificate file holds leaf + CA,
    /// the registry's bundle holds the CA only.
    EcLeafX5c,
    /// `token.generate: true`: the server creates key and certificate; bundle = that certificate.
    Generate,
    /// Self-signed EC P-256 (ES256), `x5c`; bundle = the certificate itself.
    EcCertX5c,
    /// Self-signed RSA 2048 (RS256), `kid-thumbprint`; bundle = the certificate.
    RsaThumbprint,
    /// Self-signed EC P-256 (ES256), `kid-thumbprint`; bundle = the certificate. (The generator
    /// never makes a key with a leading-zero coordinate, so distribution v3.1's thumbprint
    /// agrees with ours.)
    EcThumbprint,
}

/// Files written for a [`KeySetup`].
#[derive(Debug, Clone)]
pub struct KeyFiles {
    pub setup: KeySetup,
    /// `token.certificate`.
    pub cert: PathBuf,
    /// `token.key`.
    pub key: PathBuf,
    /// The registry's `rootcertbundle` (exists only after the server started, for `Generate`).
    pub bundle: PathBuf,
    /// `token.signing_header`.
    pub signing_header: &'static str,
}

impl KeyFiles {
    pub fn write(setup: KeySetup, dir: &Path) -> Self {
        fs::create_dir_all(dir).expect("mkdir keys");
        let cert = dir.join("token.crt");
        let key = dir.join("token.key");
        let mut bundle = cert.clone();
        let mut signing_header = "kid-libtrust";
        match setup {
            KeySetup::EcKid
            | KeySetup::RsaKid
            | KeySetup::EcCertX5c
            | KeySetup::RsaThumbprint
            | KeySetup::EcThumbprint => {
                let kind = if matches!(setup, KeySetup::RsaKid | KeySetup::RsaThumbprint) {
                    KeyKind::Rsa2048
                } else {
                    KeyKind::EcP256
                };
                let k = token::generate_self_signed(kind, "registry-auth it signer", 30)
                    .expect("generate self-signed signing key");
                write_pair(&k, &key, &cert);
                signing_header = match setup {
                    KeySetup::EcCertX5c => "x5c",
                    KeySetup::RsaThumbprint | KeySetup::EcThumbprint => "kid-thumbprint",
                    _ => "kid-libtrust",
                };
            }
            KeySetup::EcLeafX5c => {
                let ca = token::generate_ca(KeyKind::EcP256, "registry-auth it CA", 30)
                    .expect("generate CA");
                let leaf =
                    token::generate_signed_by(KeyKind::EcP256, "registry-auth it leaf", 30, &ca)
                        .expect("generate leaf signed by CA");
                fs::write(&key, &leaf.key_pem).expect("write leaf key");
                let chain = format!("{}\n{}", leaf.cert_pem.trim_end(), ca.cert_pem.trim_end());
                fs::write(&cert, chain + "\n").expect("write leaf+CA chain");
                bundle = dir.join("ca.crt");
                fs::write(&bundle, &ca.cert_pem).expect("write CA bundle");
                signing_header = "x5c";
            }
            KeySetup::Generate => {}
        }
        Self {
            setup,
            cert,
            key,
            bundle,
            signing_header,
        }
    }

    /// The `token:` lines (indented by two) besides issuer/expiration.
    pub fn token_yaml(&self) -> String {
        let mut s = format!(
            "  certificate: {}\n  key: {}\n  signing_header: {}\n",
            yaml_str(&self.cert.to_string_lossy()),
            yaml_str(&self.key.to_string_lossy()),
            self.signing_header
        );
        if self.setup == KeySetup::Generate {
            s.push_str("  generate: true\n");
        }
        s
    }
}

fn write_pair(k: &GeneratedKey, key: &Path, cert: &Path) {
    fs::write(key, &k.key_pem).expect("write key");
    fs::write(cert, &k.cert_pem).expect("write cert");
}

/// A YAML double-quoted scalar.
pub fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).expect("json string")
}

/// bcrypt hash at a low cost (fast tests).
pub fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash(password, 4).expect("bcrypt")
}

/// DER of every `CERTIFICATE` block in a PEM file.
pub fn pem_certs(path: &Path) -> Vec<Vec<u8>> {
    let data = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    Pem::iter_from_buffer(&data)
        .filter_map(Result::ok)
        .filter(|p| p.label == "CERTIFICATE")
        .map(|p| p.contents)
        .collect()
}

/// SubjectPublicKeyInfo DER of a DER certificate.
pub fn spki_der(cert_der: &[u8]) -> Vec<u8> {
    let (_, cert) = X509Certificate::from_der(cert_der).expect("parse certificate");
    cert.public_key().raw.to_vec()
}

fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in data {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// docker/libtrust key ID: SHA-256 over the DER SubjectPublicKeyInfo, first 30 bytes, base32
/// (upper case, no padding), 12 groups of 4 joined by `:`.
pub fn libtrust_kid(spki: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki);
    let s = base32(&d.as_ref()[..30]);
    s.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// libtrust key ID of the first certificate in a PEM file.
pub fn kid_of_cert_file(path: &Path) -> String {
    let certs = pem_certs(path);
    let first = certs
        .first()
        .unwrap_or_else(|| panic!("{} holds no certificate", path.display()));
    libtrust_kid(&spki_der(first))
}

/// PEM files of a test CA and a leaf for 127.0.0.1.
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// `<name>-ca.pem`, `<name>-leaf.pem` (for `127.0.0.1` and `localhost`) and
    /// `<name>-leaf.key` in `dir`.
    pub fn write(dir: &Path, name: &str) -> Self {
        Self::write_for(dir, name, &["127.0.0.1", "localhost"])
    }

    /// [`Pki::write`] with a leaf valid for `names` only (host names or IP addresses).
    pub fn write_for(dir: &Path, name: &str, names: &[&str]) -> Self {
        fs::create_dir_all(dir).expect("mkdir pki");
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let ca = ca_params.self_signed(&ca_key).expect("self-sign CA");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
        let mut leaf_params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .expect("leaf params");
        leaf_params.distinguished_name.push(
            rcgen::DnType::CommonName,
            names.first().copied().unwrap_or("127.0.0.1"),
        );
        let leaf = leaf_params
            .signed_by(&leaf_key, &issuer)
            .expect("sign leaf");
        let pki = Self {
            ca: dir.join(format!("{name}-ca.pem")),
            cert: dir.join(format!("{name}-leaf.pem")),
            key: dir.join(format!("{name}-leaf.key")),
        };
        fs::write(&pki.ca, ca.pem()).expect("write CA");
        fs::write(&pki.cert, leaf.pem()).expect("write leaf");
        fs::write(&pki.key, leaf_key.serialize_pem()).expect("write key");
        pki
    }
}
