//! The token signing key: loading a certificate + private key pair once, and signing with it.
//!
//! A [`SigningKey`] is parsed and validated once (at startup or reload) and then only signs; the
//! hot path does no parsing. Supported keys are exactly what registry 2.8 (libtrust) and v3
//! verify: RSA ≥ 2048 bits → `RS256` (PKCS#1 v1.5, SHA-256); ECDSA P-256/P-384/P-521 →
//! `ES256`/`ES384`/`ES512` with JOSE raw `R‖S` signatures (never DER).
//!
//! The certificate file may hold a chain (leaf first); the private key may be PKCS#8
//! (`PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`) PEM and must belong
//! to the leaf certificate. The key is identified to registries by the chain (`x5c`), by the
//! libtrust key ID of the leaf's public key (`kid`, see [`libtrust_key_id`]) or by its RFC 7638
//! JWK thumbprint (`kid`, see [`SigningKey::thumbprint`]).
//!
//! Crypto is aws-lc-rs; certificates are read with x509-parser. No HTTP, no configuration types.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair as _, RsaKeyPair,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_DSA, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_PKCS1_RSASSAPSS, OID_SIG_ED448, OID_SIG_ED25519,
};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

use super::publish::PublishedKey;

/// Smallest RSA modulus accepted for signing, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// JWS signature algorithm of a signing key (the `alg` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RSA PKCS#1 v1.5 with SHA-256.
    Rs256,
    /// ECDSA P-256 with SHA-256, raw 64-byte signature.
    Es256,
    /// ECDSA P-384 with SHA-384, raw 96-byte signature.
    Es384,
    /// ECDSA P-521 with SHA-512, raw 132-byte signature.
    Es512,
}

impl Algorithm {
    /// The JOSE name: `RS256`, `ES256`, `ES384` or `ES512`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
            Algorithm::Es512 => "ES512",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a key could not be loaded, generated or used.
///
/// Messages name the file (or "certificate"/"private key" for in-memory PEM), say what is wrong
/// and, where there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A file could not be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        /// "certificate file" or "private key file".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The PEM text itself is broken.
    #[error("{origin} is not valid PEM: {detail}")]
    Pem {
        /// Where the PEM came from.
        origin: String,
        /// What the PEM parser said.
        detail: String,
    },
    /// No `CERTIFICATE` block.
    #[error(
        "{origin} holds no PEM CERTIFICATE block; expected the signing certificate (leaf first, \
         optionally followed by its CA chain){}",
        if *.looks_like_key { "; it holds a private key: are the certificate and key paths swapped?" } else { "" }
    )]
    NoCertificate {
        /// Where the PEM came from.
        origin: String,
        /// The input holds a private key instead.
        looks_like_key: bool,
    },
    /// A `CERTIFICATE` block is not a valid X.509 certificate.
    #[error("{origin}: certificate #{index} is not a valid X.509 certificate: {detail}")]
    Certificate {
        /// Where the PEM came from.
        origin: String,
        /// 1-based position in the file.
        index: usize,
        /// What the parser said.
        detail: String,
    },
    /// No private key block.
    #[error(
        "{origin} holds no private key; expected a PEM PRIVATE KEY, EC PRIVATE KEY or RSA \
         PRIVATE KEY block{}",
        if *.looks_like_cert { "; it holds a certificate: are the certificate and key paths swapped?" } else { "" }
    )]
    NoPrivateKey {
        /// Where the PEM came from.
        origin: String,
        /// The input holds a certificate instead.
        looks_like_cert: bool,
    },
    /// The private key is password-protected.
    #[error(
        "{origin} holds an encrypted private key; store it unencrypted (e.g. `openssl pkey -in \
         KEY -out KEY.plain`) and protect the file with permissions (0600)"
    )]
    EncryptedKey {
        /// Where the PEM came from.
        origin: String,
    },
    /// The certificate's key type cannot sign registry tokens.
    #[error(
        "{origin}: the certificate's public key is {kind}; registry tokens can only be signed \
         with RSA (at least 2048 bits) or ECDSA P-256, P-384 or P-521 keys"
    )]
    UnsupportedKeyType {
        /// Where the certificate came from.
        origin: String,
        /// Description of the key type.
        kind: String,
    },
    /// RSA key below [`MIN_RSA_BITS`].
    #[error(
        "{origin}: the RSA key has only {bits} bits; at least 2048 are required: generate a new \
         key pair"
    )]
    RsaTooSmall {
        /// Where the certificate came from.
        origin: String,
        /// Modulus size.
        bits: usize,
    },
    /// The private key cannot be used (malformed, unsupported size, ...).
    #[error("{origin}: cannot load the private key: {detail}")]
    InvalidKey {
        /// Where the key came from.
        origin: String,
        /// What is wrong.
        detail: String,
    },
    /// The private key does not belong to the leaf certificate.
    #[error(
        "the private key in {key_origin} does not belong to the certificate in {cert_origin}: \
         {detail}"
    )]
    KeyMismatch {
        /// Where the key came from.
        key_origin: String,
        /// Where the certificate came from.
        cert_origin: String,
        /// What differs and what to do.
        detail: String,
    },
    /// The crypto library refused to sign.
    #[error("signing failed in the crypto library")]
    Sign,
    /// Key or certificate generation failed.
    #[error("cannot generate {what}: {detail}")]
    Generate {
        /// What was being generated.
        what: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// An unknown key type name was given to [`crate::token::keygen::KeyKind`]'s `FromStr`.
    #[error(
        "unknown key type {input:?}; expected one of ec-p256 (alias p256, ec), ec-p384 (p384), \
         rsa-2048 (rsa), rsa-3072, rsa-4096"
    )]
    UnknownKeyKind {
        /// The rejected name.
        input: String,
    },
    /// Only one of the key and certificate files exists.
    #[error(
        "{missing_what} {} does not exist but {present_what} {} does; provide both files, or \
         remove {} so that a new key pair is generated",
        missing.display(), present.display(), present.display()
    )]
    IncompletePair {
        /// "private key file" or "certificate file".
        present_what: &'static str,
        /// The file that exists.
        present: PathBuf,
        /// "private key file" or "certificate file".
        missing_what: &'static str,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// Invalid argument to a generation function.
    #[error("{0}")]
    InvalidArgument(String),
}

/// The private half, parsed once.
enum Signer {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
}

/// A certificate chain plus the matching private key, ready to sign tokens. `Send + Sync`.
pub struct SigningKey {
    algorithm: Algorithm,
    kid: String,
    /// The certificate chain and the public key in its published forms.
    public: PublishedKey,
    not_after: SystemTime,
    signer: Signer,
    rng: SystemRandom,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .field("thumbprint", &self.public.thumbprint())
            .field("chain_len", &self.public.certificate_chain().len())
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// What the leaf certificate says the private key must be.
#[derive(Clone, Copy)]
enum Expected {
    Rsa,
    Ec(Algorithm, &'static EcdsaSigningAlgorithm, &'static str),
}

impl SigningKey {
    /// Loads a signing key from PEM text: `cert_pem` holds one or more certificates (leaf
    /// first), `key_pem` the leaf's private key (PKCS#8, SEC1 or PKCS#1).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<SigningKey, KeyError> {
        Self::from_pem_named(
            cert_pem,
            key_pem,
            "the certificate PEM",
            "the private key PEM",
        )
    }

    /// Reads and loads the certificate (chain) file and the private key file. Errors name the
    /// file at fault.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<SigningKey, KeyError> {
        let cert_pem =
            crate::config::sources::read(cert_path).map_err(|source| KeyError::Read {
                what: "certificate file",
                path: cert_path.to_owned(),
                source,
            })?;
        let key_pem = crate::config::sources::read(key_path).map_err(|source| KeyError::Read {
            what: "private key file",
            path: key_path.to_owned(),
            source,
        })?;
        Self::from_pem_named(
            &cert_pem,
            &key_pem,
            &format!("certificate file {}", cert_path.display()),
            &format!("private key file {}", key_path.display()),
        )
    }

    fn from_pem_named(
        cert_pem: &[u8],
        key_pem: &[u8],
        cert_origin: &str,
        key_origin: &str,
    ) -> Result<SigningKey, KeyError> {
        let chain = read_certificates(cert_pem, cert_origin)?;
        let Some(leaf_der) = chain.first() else {
            return Err(KeyError::NoCertificate {
                origin: cert_origin.to_owned(),
                looks_like_key: false,
            });
        };
        // Validate every certificate of the chain, keep the parsed leaf.
        for (i, der) in chain.iter().enumerate().skip(1) {
            parse_certificate(der, cert_origin, i + 1)?;
        }
        let leaf = parse_certificate(leaf_der, cert_origin, 1)?;
        let spki = leaf.public_key();
        let expected = expected_key(&leaf, cert_origin)?;
        let not_after = unix_to_system_time(leaf.validity().not_after.timestamp());

        let (key, key_format) = read_private_key(key_pem, key_origin)?;
        let key_der = key.secret_der();
        let mismatch = |detail: String| KeyError::KeyMismatch {
            key_origin: key_origin.to_owned(),
            cert_origin: cert_origin.to_owned(),
            detail,
        };
        let invalid = |detail: String| KeyError::InvalidKey {
            origin: key_origin.to_owned(),
            detail,
        };

        let (algorithm, signer, public_spki) = match expected {
            Expected::Rsa => {
                let parsed = match key_format {
                    KeyFormat::Pkcs8 => RsaKeyPair::from_pkcs8(key_der),
                    KeyFormat::Pkcs1 => RsaKeyPair::from_der(key_der),
                    KeyFormat::Sec1 => {
                        return Err(mismatch(
                            "the certificate holds an RSA key but the private key is an EC \
                             PRIVATE KEY"
                                .into(),
                        ));
                    }
                };
                let pair = parsed.map_err(|e| {
                    if e.description_() == "WrongAlgorithm" {
                        mismatch(format!(
                            "the certificate holds an RSA key but the private key is {}",
                            describe_pkcs8(key_der)
                        ))
                    } else {
                        invalid(describe_rejection(e, "an RSA key"))
                    }
                })?;
                let Ok(PublicKey::RSA(cert_rsa)) = spki.parsed() else {
                    return Err(invalid(
                        "the certificate's RSA public key is malformed".into(),
                    ));
                };
                let public = pair.public_key();
                let same = strip_zeros(public.modulus().big_endian_without_leading_zero())
                    == strip_zeros(cert_rsa.modulus)
                    && strip_zeros(public.exponent().big_endian_without_leading_zero())
                        == strip_zeros(cert_rsa.exponent);
                let der = public
                    .as_der()
                    .map_err(|_| invalid("cannot encode the RSA public key".into()))?
                    .as_ref()
                    .to_vec();
                if !same {
                    return Err(mismatch(mismatch_hint(&chain, &der)));
                }
                (Algorithm::Rs256, Signer::Rsa(pair), der)
            }
            Expected::Ec(algorithm, signing_alg, curve) => {
                let parsed = match key_format {
                    KeyFormat::Pkcs8 => EcdsaKeyPair::from_pkcs8(signing_alg, key_der),
                    KeyFormat::Sec1 => EcdsaKeyPair::from_private_key_der(signing_alg, key_der),
                    KeyFormat::Pkcs1 => {
                        return Err(mismatch(format!(
                            "the certificate holds an ECDSA {curve} key but the private key is an \
                             RSA PRIVATE KEY"
                        )));
                    }
                };
                let pair = parsed.map_err(|e| match e.description_() {
                    "WrongAlgorithm" | "InvalidEncoding" if key_format == KeyFormat::Pkcs8 => {
                        let actual = describe_pkcs8(key_der);
                        if actual == UNKNOWN_KEY {
                            invalid(describe_rejection(e, "an ECDSA key"))
                        } else {
                            mismatch(format!(
                                "the certificate holds an ECDSA {curve} key but the private key \
                                 is {actual}"
                            ))
                        }
                    }
                    "WrongAlgorithm" => mismatch(format!(
                        "the certificate holds an ECDSA {curve} key but the private key is on \
                         another curve"
                    )),
                    _ => invalid(describe_rejection(e, "an ECDSA key")),
                })?;
                let public = pair.public_key();
                let der = public
                    .as_der()
                    .map_err(|_| invalid("cannot encode the ECDSA public key".into()))?
                    .as_ref()
                    .to_vec();
                if public.as_ref() != spki.subject_public_key.data.as_ref() {
                    return Err(mismatch(mismatch_hint(&chain, &der)));
                }
                (algorithm, Signer::Ecdsa(pair), der)
            }
        };

        let public = PublishedKey::from_chain(chain, cert_origin)?;
        Ok(SigningKey {
            algorithm,
            // Go's x509.MarshalPKIXPublicKey re-encodes the key canonically; aws-lc's SPKI DER
            // is the same canonical form (named curve, uncompressed point; RSA with NULL).
            kid: libtrust_key_id(&public_spki),
            public,
            not_after,
            signer,
            rng: SystemRandom::new(),
        })
    }

    /// The JWS algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// libtrust key ID of the leaf certificate's public key (the `kid` registry 2.x trusts).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// RFC 7638 JWK thumbprint of the leaf certificate's public key (the `kid` registry v3
    /// trusts for a `rootcertbundle` certificate).
    pub fn thumbprint(&self) -> &str {
        self.public.thumbprint()
    }

    /// The public half: certificate chain, JWK parameters, key IDs.
    pub fn public_key(&self) -> &PublishedKey {
        &self.public
    }

    /// The certificate chain as DER, leaf first, exactly as listed in the certificate PEM.
    pub fn certificate_chain(&self) -> &[Vec<u8>] {
        self.public.certificate_chain()
    }

    /// End of the leaf certificate's validity period.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Signs `message`: RS256 → PKCS#1 v1.5 SHA-256; ES* → raw `R‖S` (64/96/132 bytes).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.signer {
            Signer::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &self.rng,
                    message,
                    &mut signature,
                )
                .map_err(|_| KeyError::Sign)?;
                Ok(signature)
            }
            Signer::Ecdsa(pair) => pair
                .sign(&self.rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Sign),
        }
    }
}

/// libtrust key ID: SHA-256 of the DER SubjectPublicKeyInfo, first 30 bytes, base32 (RFC 4648,
/// upper case, no padding), with `:` after every 4 characters.
///
/// Example: `PYYO:TEWU:V7JH:26JV:AQTZ:LJC3:SXVJ:XGHA:34F2:2LAQ:ZRMK:Z7Q6`.
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki_der);
    let bytes = digest.as_ref().get(..30).unwrap_or_default();
    let mut out = String::with_capacity(59);
    let mut emitted = 0usize;
    // 30 bytes = 6 groups of 5 bytes = 48 base32 characters, no padding.
    for group in bytes.chunks(5) {
        let mut buf = 0u64;
        for &b in group {
            buf = (buf << 8) | u64::from(b);
        }
        for i in (0..8).rev() {
            if emitted > 0 && emitted.is_multiple_of(4) {
                out.push(':');
            }
            let index = ((buf >> (i * 5)) & 0x1f) as usize;
            out.push(char::from(ALPHABET[index]));
            emitted += 1;
        }
    }
    out
}

/// Every `CERTIFICATE` block, in order.
pub(super) fn read_certificates(pem: &[u8], origin: &str) -> Result<Vec<Vec<u8>>, KeyError> {
    let mut chain = Vec::new();
    for item in CertificateDer::pem_slice_iter(pem) {
        let cert = item.map_err(|e| KeyError::Pem {
            origin: origin.to_owned(),
            detail: e.to_string(),
        })?;
        chain.push(cert.as_ref().to_vec());
    }
    if chain.is_empty() {
        return Err(KeyError::NoCertificate {
            origin: origin.to_owned(),
            looks_like_key: PrivateKeyDer::from_pem_slice(pem).is_ok() || has_encrypted_key(pem),
        });
    }
    Ok(chain)
}

pub(super) fn parse_certificate<'a>(
    der: &'a [u8],
    origin: &str,
    index: usize,
) -> Result<X509Certificate<'a>, KeyError> {
    let error = |detail: String| KeyError::Certificate {
        origin: origin.to_owned(),
        index,
        detail,
    };
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| error(e.to_string()))?;
    if !rest.is_empty() {
        return Err(error("trailing data after the certificate".into()));
    }
    Ok(cert)
}

/// The algorithm a token signed by the leaf certificate's key uses, rejecting key types
/// registries cannot verify (with the same messages as for the signing key).
pub(super) fn key_algorithm(
    leaf: &X509Certificate<'_>,
    origin: &str,
) -> Result<Algorithm, KeyError> {
    Ok(match expected_key(leaf, origin)? {
        Expected::Rsa => Algorithm::Rs256,
        Expected::Ec(algorithm, _, _) => algorithm,
    })
}

/// The key type the leaf certificate requires, rejecting what registries cannot verify.
fn expected_key(leaf: &X509Certificate<'_>, origin: &str) -> Result<Expected, KeyError> {
    let spki = leaf.public_key();
    let oid = &spki.algorithm.algorithm;
    let unsupported = |kind: String| KeyError::UnsupportedKeyType {
        origin: origin.to_owned(),
        kind,
    };
    if *oid == OID_PKCS1_RSAENCRYPTION {
        let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
            return Err(KeyError::Certificate {
                origin: origin.to_owned(),
                index: 1,
                detail: "malformed RSA public key".into(),
            });
        };
        let bits = bit_length(rsa.modulus);
        if bits < MIN_RSA_BITS {
            return Err(KeyError::RsaTooSmall {
                origin: origin.to_owned(),
                bits,
            });
        }
        return Ok(Expected::Rsa);
    }
    if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == OID_EC_P256 => Ok(Expected::Ec(
                Algorithm::Es256,
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                "P-256",
            )),
            Some(c) if c == OID_NIST_EC_P384 => Ok(Expected::Ec(
                Algorithm::Es384,
                &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                "P-384",
            )),
            Some(c) if c == OID_NIST_EC_P521 => Ok(Expected::Ec(
                Algorithm::Es512,
                &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
                "P-521",
            )),
            Some(c) => Err(unsupported(format!("an ECDSA key on curve {c}"))),
            None => Err(unsupported(
                "an ECDSA key with explicit (unnamed) curve parameters".into(),
            )),
        };
    }
    let kind = if *oid == OID_SIG_ED25519 {
        "an Ed25519 key".to_owned()
    } else if *oid == OID_SIG_ED448 {
        "an Ed448 key".to_owned()
    } else if *oid == OID_PKCS1_RSASSAPSS {
        "an RSASSA-PSS key".to_owned()
    } else if *oid == OID_KEY_TYPE_DSA {
        "a DSA key".to_owned()
    } else {
        format!("of unknown type (algorithm {oid})")
    };
    Err(unsupported(kind))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyFormat {
    Pkcs8,
    Pkcs1,
    Sec1,
}

fn has_encrypted_key(pem: &[u8]) -> bool {
    let needle = b"ENCRYPTED";
    pem.windows(needle.len()).any(|w| w == needle)
}

/// The first private key block and its format.
fn read_private_key(
    pem: &[u8],
    origin: &str,
) -> Result<(PrivateKeyDer<'static>, KeyFormat), KeyError> {
    if has_encrypted_key(pem) {
        return Err(KeyError::EncryptedKey {
            origin: origin.to_owned(),
        });
    }
    let key = match PrivateKeyDer::from_pem_slice(pem) {
        Ok(key) => key,
        Err(rustls_pki_types::pem::Error::NoItemsFound) => {
            return Err(KeyError::NoPrivateKey {
                origin: origin.to_owned(),
                looks_like_cert: CertificateDer::from_pem_slice(pem).is_ok(),
            });
        }
        Err(e) => {
            return Err(KeyError::Pem {
                origin: origin.to_owned(),
                detail: e.to_string(),
            });
        }
    };
    let format = match &key {
        PrivateKeyDer::Pkcs8(_) => KeyFormat::Pkcs8,
        PrivateKeyDer::Pkcs1(_) => KeyFormat::Pkcs1,
        PrivateKeyDer::Sec1(_) => KeyFormat::Sec1,
        _ => {
            return Err(KeyError::InvalidKey {
                origin: origin.to_owned(),
                detail: "unsupported private key format; use PKCS#8 (PRIVATE KEY)".into(),
            });
        }
    };
    Ok((key, format))
}

const UNKNOWN_KEY: &str = "a key of an unrecognised type";

/// Names the type of a PKCS#8 key (error path only).
fn describe_pkcs8(der: &[u8]) -> &'static str {
    if RsaKeyPair::from_pkcs8(der).is_ok() {
        return "an RSA key";
    }
    for (alg, name) in [
        (
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            "an ECDSA P-256 key",
        ),
        (
            &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            "an ECDSA P-384 key",
        ),
        (
            &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
            "an ECDSA P-521 key",
        ),
    ] {
        if EcdsaKeyPair::from_pkcs8(alg, der).is_ok() {
            return name;
        }
    }
    if Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).is_ok() {
        return "an Ed25519 key";
    }
    UNKNOWN_KEY
}

fn describe_rejection(e: aws_lc_rs::error::KeyRejected, expected: &str) -> String {
    match e.description_() {
        "InvalidEncoding" => format!("the key is malformed or not {expected}"),
        "WrongAlgorithm" => format!("the key is not {expected}"),
        "TooSmall" => "the key is too small (RSA needs at least 2048 bits)".into(),
        "TooLarge" => "the key is too large (RSA keys up to 8192 bits are supported)".into(),
        "InconsistentComponents" => "the key's components are inconsistent".into(),
        other => format!("the crypto library rejected it ({other})"),
    }
}

/// Explains a key/certificate mismatch, spotting a chain that lists the leaf later.
fn mismatch_hint(chain: &[Vec<u8>], key_spki: &[u8]) -> String {
    let position = chain.iter().enumerate().skip(1).find_map(|(i, der)| {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        (cert.public_key().raw == key_spki).then_some(i + 1)
    });
    match position {
        Some(n) => format!(
            "it matches certificate #{n} of the file; the signing (leaf) certificate must come \
             first"
        ),
        None => "its public key differs from the certificate's; provide the matching \
                 certificate and key pair"
            .to_owned(),
    }
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

fn bit_length(big_endian: &[u8]) -> usize {
    let bytes = strip_zeros(big_endian);
    match bytes.first() {
        Some(&first) => bytes.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

fn unix_to_system_time(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}
