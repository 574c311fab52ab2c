//! Generating signing keys and certificates (`gen-keys`, first start without keys).
//!
//! Three shapes, all accepted by registry 2.8/3.x (`rootcertbundle`, x5c verified with Go's
//! `x509.Verify` and `ExtKeyUsageAny`):
//!
//! * [`generate_self_signed`]: a self-signed leaf (`CA:FALSE`, digitalSignature); put the
//!   certificate itself in the registry's `rootcertbundle` (works with `kid` and `x5c`).
//! * [`generate_ca`] + [`generate_signed_by`]: a stable CA (`CA:TRUE`, keyCertSign, cRLSign) in
//!   the bundle and a rotatable leaf signed by it (`CA:FALSE`); use the `x5c` header mode.
//! * [`ensure_generated`]: creates an ES256 key (mode 0600) and self-signed certificate (0644)
//!   when neither file exists; [`write_key_files`] writes a [`GeneratedKey`] (for `gen-keys`).
//!
//! EC keys are drawn until neither coordinate starts with a zero byte, so that registry v3.1's
//! JWK thumbprint (which drops leading zeros) equals the RFC 7638 one (`kid-thumbprint`).
//!
//! Private keys are PKCS#8 PEM (`PRIVATE KEY`). Files are written atomically: a temporary file
//! in the same directory, created with its final mode, then renamed (or, for
//! [`ensure_generated`], hard-linked so that an existing file is never clobbered).
//! Key generation uses aws-lc-rs through rcgen; no HTTP, no configuration types.

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, RsaKeySize, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::asn1_rs::Tag;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

use super::keys::KeyError;

/// Validity of the certificate created by [`ensure_generated`], in days (10 years).
pub const DEFAULT_VALIDITY_DAYS: u32 = 3650;

/// How far certificates are back-dated, to tolerate clock skew between hosts.
const BACKDATE: time::Duration = time::Duration::hours(1);

/// Type and size of a key to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// ECDSA P-256 (signs ES256). The default.
    EcP256,
    /// ECDSA P-384 (signs ES384).
    EcP384,
    /// RSA 2048 bits (signs RS256).
    Rsa2048,
    /// RSA 3072 bits (signs RS256).
    Rsa3072,
    /// RSA 4096 bits (signs RS256).
    Rsa4096,
}

impl KeyKind {
    /// Canonical names, as accepted by `FromStr` and printed by `Display`.
    pub const NAMES: [&'static str; 5] = ["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096"];

    /// The canonical name (`ec-p256`, ..., `rsa-4096`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::EcP256 => "ec-p256",
            KeyKind::EcP384 => "ec-p384",
            KeyKind::Rsa2048 => "rsa-2048",
            KeyKind::Rsa3072 => "rsa-3072",
            KeyKind::Rsa4096 => "rsa-4096",
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyKind {
    type Err = KeyError;

    /// Accepts (case-insensitively) `ec-p256`/`p256`/`ec`, `ec-p384`/`p384`,
    /// `rsa`/`rsa-2048`, `rsa-3072`, `rsa-4096`.
    fn from_str(s: &str) -> Result<KeyKind, KeyError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ec-p256" | "p256" | "ec" | "p-256" | "es256" => Ok(KeyKind::EcP256),
            "ec-p384" | "p384" | "p-384" | "es384" => Ok(KeyKind::EcP384),
            "rsa" | "rsa-2048" | "rsa2048" => Ok(KeyKind::Rsa2048),
            "rsa-3072" | "rsa3072" => Ok(KeyKind::Rsa3072),
            "rsa-4096" | "rsa4096" => Ok(KeyKind::Rsa4096),
            _ => Err(KeyError::UnknownKeyKind {
                input: s.chars().take(40).collect(),
            }),
        }
    }
}

/// A freshly generated private key and certificate, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct GeneratedKey {
    /// PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`). Secret.
    pub key_pem: String,
    /// The certificate (only this certificate; for a leaf signed by a CA, append the CA's
    /// `cert_pem` to build a chain file).
    pub cert_pem: String,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("key_pem", &"<redacted>")
            .field("cert_pem", &self.cert_pem)
            .finish()
    }
}

/// A self-signed leaf certificate (`CA:FALSE`, digitalSignature) valid for `validity_days`.
pub fn generate_self_signed(
    kind: KeyKind,
    common_name: &str,
    validity_days: u32,
) -> Result<GeneratedKey, KeyError> {
    let key = generate_key_pair(kind)?;
    let mut params = base_params(common_name, validity_days)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = params
        .self_signed(&key)
        .map_err(|e| generate_error("the certificate", &e))?;
    Ok(GeneratedKey {
        key_pem: key.serialize_pem(),
        cert_pem: cert.pem(),
    })
}

/// A self-signed CA certificate (`CA:TRUE`, keyCertSign, cRLSign) valid for `validity_days`.
pub fn generate_ca(
    kind: KeyKind,
    common_name: &str,
    validity_days: u32,
) -> Result<GeneratedKey, KeyError> {
    let key = generate_key_pair(kind)?;
    let mut params = base_params(common_name, validity_days)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    let cert = params
        .self_signed(&key)
        .map_err(|e| generate_error("the CA certificate", &e))?;
    Ok(GeneratedKey {
        key_pem: key.serialize_pem(),
        cert_pem: cert.pem(),
    })
}

/// A leaf certificate (`CA:FALSE`, digitalSignature) for a new key, signed by `ca` (made by
/// [`generate_ca`]). `cert_pem` of the result holds only the leaf.
pub fn generate_signed_by(
    kind: KeyKind,
    common_name: &str,
    validity_days: u32,
    ca: &GeneratedKey,
) -> Result<GeneratedKey, KeyError> {
    let bad_ca = |detail: String| KeyError::InvalidArgument(format!("invalid CA: {detail}"));
    let ca_key = KeyPair::from_pem(&ca.key_pem)
        .map_err(|e| bad_ca(format!("cannot read the CA private key: {e}")))?;
    let ca_der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes())
        .map_err(|e| bad_ca(format!("cannot read the CA certificate PEM: {e}")))?;
    let (_, ca_cert) = X509Certificate::from_der(ca_der.as_ref())
        .map_err(|e| bad_ca(format!("cannot parse the CA certificate: {e}")))?;
    if !ca_cert.is_ca() {
        return Err(bad_ca(
            "the certificate is not a CA (basicConstraints CA:TRUE missing)".into(),
        ));
    }
    if ca_cert.public_key().subject_public_key.data.as_ref() != ca_key.public_key_raw() {
        return Err(bad_ca(
            "the CA private key does not belong to the CA certificate".into(),
        ));
    }
    let ca_subject_raw = ca_cert.subject().as_raw();
    let ski = ca_cert
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        });

    let mut issuer_params = CertificateParams::default();
    issuer_params.distinguished_name = distinguished_name(ca_cert.subject()).map_err(bad_ca)?;
    issuer_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    if let Some(ski) = &ski {
        issuer_params.key_identifier_method = KeyIdMethod::PreSpecified(ski.clone());
    }
    let issuer = Issuer::new(issuer_params, &ca_key);

    let key = generate_key_pair(kind)?;
    let mut params = base_params(common_name, validity_days)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = ski.is_some();
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| generate_error("the certificate", &e))?;

    // Chain building compares the leaf's issuer with the CA's subject byte for byte.
    let (_, leaf) = X509Certificate::from_der(cert.der().as_ref())
        .map_err(|e| generate_error("the certificate", &e))?;
    if leaf.issuer().as_raw() != ca_subject_raw {
        return Err(bad_ca(
            "its subject name cannot be reproduced exactly; use a CA made by generate_ca".into(),
        ));
    }
    Ok(GeneratedKey {
        key_pem: key.serialize_pem(),
        cert_pem: cert.pem(),
    })
}

/// Makes sure a signing key pair exists at `key_path` / `cert_path`.
///
/// * both missing: creates an ES256 key (mode 0600) and a self-signed certificate (0644, valid
///   [`DEFAULT_VALIDITY_DAYS`]) for `common_name`, creating parent directories; `Ok(true)`;
/// * both present: leaves them alone; `Ok(false)`;
/// * only one present: an error naming the missing file.
pub fn ensure_generated(
    key_path: &Path,
    cert_path: &Path,
    common_name: &str,
) -> Result<bool, KeyError> {
    if key_path == cert_path {
        return Err(KeyError::InvalidArgument(format!(
            "the private key and the certificate must be different files (both are {})",
            key_path.display()
        )));
    }
    let key_exists = exists(key_path, "private key file")?;
    let cert_exists = exists(cert_path, "certificate file")?;
    match (key_exists, cert_exists) {
        (true, true) => return Ok(false),
        (true, false) => {
            return Err(KeyError::IncompletePair {
                present_what: "private key file",
                present: key_path.to_owned(),
                missing_what: "certificate file",
                missing: cert_path.to_owned(),
            });
        }
        (false, true) => {
            return Err(KeyError::IncompletePair {
                present_what: "certificate file",
                present: cert_path.to_owned(),
                missing_what: "private key file",
                missing: key_path.to_owned(),
            });
        }
        (false, false) => {}
    }

    let generated = generate_self_signed(KeyKind::EcP256, common_name, DEFAULT_VALIDITY_DAYS)?;
    write_file(
        key_path,
        generated.key_pem.as_bytes(),
        0o600,
        Publish::NoClobber,
    )?;
    if let Err(e) = write_file(
        cert_path,
        generated.cert_pem.as_bytes(),
        0o644,
        Publish::NoClobber,
    ) {
        // Do not leave half a pair behind: the next start would refuse it.
        let _ = fs::remove_file(key_path);
        return Err(e);
    }
    Ok(true)
}

/// Writes a generated key pair to files, replacing existing ones: the private key with mode
/// 0600, the certificate with 0644, each atomically (temporary file in the same directory, then
/// rename), creating parent directories. Refusing to overwrite is the caller's decision.
pub fn write_key_files(
    generated: &GeneratedKey,
    key_path: &Path,
    cert_path: &Path,
) -> Result<(), KeyError> {
    if key_path == cert_path {
        return Err(KeyError::InvalidArgument(format!(
            "the private key and the certificate must be different files (both are {})",
            key_path.display()
        )));
    }
    write_file(
        key_path,
        generated.key_pem.as_bytes(),
        0o600,
        Publish::Replace,
    )?;
    write_file(
        cert_path,
        generated.cert_pem.as_bytes(),
        0o644,
        Publish::Replace,
    )
}

fn exists(path: &Path, what: &'static str) -> Result<bool, KeyError> {
    path.try_exists().map_err(|source| KeyError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn generate_error(what: &'static str, e: &dyn fmt::Display) -> KeyError {
    KeyError::Generate {
        what,
        detail: e.to_string(),
    }
}

/// How many EC keys [`generate_key_pair`] draws at most to find one without a short
/// coordinate (each draw fails with probability ≈ 2/256, so 64 draws never all fail).
const MAX_EC_DRAWS: usize = 64;

pub(super) fn generate_key_pair(kind: KeyKind) -> Result<KeyPair, KeyError> {
    let ec = |alg: &'static rcgen::SignatureAlgorithm| -> Result<KeyPair, KeyError> {
        for _ in 0..MAX_EC_DRAWS {
            let key =
                KeyPair::generate_for(alg).map_err(|e| generate_error("a private key", &e))?;
            if ec_coordinates_are_full_length(key.public_key_raw()) {
                return Ok(key);
            }
        }
        Err(generate_error(
            "a private key",
            &"no EC key without a leading zero coordinate byte was found",
        ))
    };
    let result = match kind {
        KeyKind::EcP256 => return ec(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyKind::EcP384 => return ec(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyKind::Rsa2048 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048),
        KeyKind::Rsa3072 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_3072),
        KeyKind::Rsa4096 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_4096),
    };
    result.map_err(|e| generate_error("a private key", &e))
}

/// Whether an uncompressed EC point `04 ‖ x ‖ y` has `x` and `y` both starting with a non-zero
/// byte. Distribution v3.1 computes the JWK thumbprint from coordinates stripped of leading
/// zeros (RFC 7638 keeps them); for such keys both thumbprints agree, so a `kid-thumbprint`
/// token is accepted whichever way the registry computes it.
pub(crate) fn ec_coordinates_are_full_length(point: &[u8]) -> bool {
    let Some((&0x04, xy)) = point.split_first() else {
        return false;
    };
    if xy.is_empty() || !xy.len().is_multiple_of(2) {
        return false;
    }
    let (x, y) = xy.split_at(xy.len() / 2);
    x.first() != Some(&0) && y.first() != Some(&0)
}

/// Subject CN, validity window, random serial.
fn base_params(common_name: &str, validity_days: u32) -> Result<CertificateParams, KeyError> {
    if validity_days == 0 {
        return Err(KeyError::InvalidArgument(
            "certificate validity must be at least 1 day".into(),
        ));
    }
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .map_err(|e| generate_error("the certificate", &e))?;
    let not_after = now
        .checked_add(time::Duration::days(i64::from(validity_days)))
        .filter(|t| t.year() <= 9999)
        .ok_or_else(|| {
            KeyError::InvalidArgument(format!(
                "certificate validity of {validity_days} days ends after the year 9999"
            ))
        })?;

    let mut serial = [0u8; 16];
    aws_lc_rs::rand::fill(&mut serial)
        .map_err(|_| generate_error("a serial number", &"random number generator failed"))?;
    serial[0] = (serial[0] & 0x7f) | 0x40; // positive, exactly 16 bytes

    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    params.not_before = now - BACKDATE;
    params.not_after = not_after;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    Ok(params)
}

/// Rebuilds a certificate's subject for rcgen (single-valued RDNs, common string types).
fn distinguished_name(name: &X509Name<'_>) -> Result<DistinguishedName, String> {
    let mut dn = DistinguishedName::new();
    for rdn in name.iter() {
        let mut attrs = rdn.iter();
        let (Some(attr), None) = (attrs.next(), attrs.next()) else {
            return Err("multi-valued subject name components are not supported".into());
        };
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or("subject name attribute type is not a valid OID")?
            .collect();
        let text = attr
            .as_str()
            .map_err(|e| format!("unsupported subject name value: {e}"))?;
        let value = match attr.attr_value().tag() {
            Tag::Utf8String => DnValue::Utf8String(text.to_owned()),
            Tag::PrintableString => DnValue::PrintableString(
                text.try_into()
                    .map_err(|e| format!("invalid PrintableString in subject: {e}"))?,
            ),
            Tag::Ia5String => DnValue::Ia5String(
                text.try_into()
                    .map_err(|e| format!("invalid IA5String in subject: {e}"))?,
            ),
            other => return Err(format!("unsupported string type {other} in subject name")),
        };
        dn.push(DnType::from_oid(&oid), value);
    }
    Ok(dn)
}

/// How a fully written temporary file is moved into place.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Publish {
    /// Fail if the destination exists (checked atomically where the filesystem allows).
    NoClobber,
    /// Atomically replace the destination.
    Replace,
}

/// Writes `contents` to `path` with `mode`, atomically.
fn write_file(path: &Path, contents: &[u8], mode: u32, publish: Publish) -> Result<(), KeyError> {
    let write_error = |source: std::io::Error| KeyError::Write {
        path: path.to_owned(),
        source,
    };
    let Some(file_name) = path.file_name() else {
        return Err(KeyError::InvalidArgument(format!(
            "{} is not a file path",
            path.display()
        )));
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(|source| KeyError::Write {
        path: dir.clone(),
        source,
    })?;

    let mut suffix = [0u8; 6];
    aws_lc_rs::rand::fill(&mut suffix)
        .map_err(|_| write_error(std::io::Error::other("random number generator failed")))?;
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp-{suffix}"));
    let tmp = dir.join(tmp_name);

    let result = write_and_publish(&tmp, path, contents, mode, publish);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(write_error)
}

fn write_and_publish(
    tmp: &Path,
    path: &Path,
    contents: &[u8],
    mode: u32,
    publish: Publish,
) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);

    if publish == Publish::Replace {
        return fs::rename(tmp, path);
    }
    // A hard link fails if `path` appeared meanwhile, so an existing key is never clobbered.
    match fs::hard_link(tmp, path) {
        Ok(()) => fs::remove_file(tmp),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
        // Filesystems without hard links: fall back to rename.
        Err(_) => {
            if path.try_exists()? {
                return Err(std::io::Error::from(std::io::ErrorKind::AlreadyExists));
            }
            fs::rename(tmp, path)
        }
    }
}
