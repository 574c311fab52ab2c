//! The keys registries must trust, in the forms they read them: a JWK Set (distribution v3's
//! `auth.token.jwks`), a PEM certificate bundle (`auth.token.rootcertbundle`) and a PEM public
//! key (zot's `http.auth.bearer.cert`).
//!
//! [`PublishedKeys`] is the signing key first, then every `token.extra_certificates` entry: keys
//! that are trusted but never sign (the next key before a rotation, the previous one after it).
//! Each [`PublishedKey`] is one certificate file: its first certificate holds the key, the
//! certificates after it are its CA chain.
//!
//! Pure: no HTTP, no configuration types; files are only read by [`PublishedKey::load`].

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Serialize;
use x509_parser::public_key::PublicKey;

use super::jwk::{Curve, JwkParams, pem};
use super::jws::HeaderMode;
use super::keys::{
    Algorithm, KeyError, SigningKey, key_algorithm, libtrust_key_id, parse_certificate,
    read_certificates,
};

/// One published key: a certificate (chain, leaf first) whose leaf key registries trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedKey {
    chain: Vec<Vec<u8>>,
    params: JwkParams,
    libtrust_kid: String,
    thumbprint: String,
}

impl PublishedKey {
    /// Reads a PEM certificate file (the key's certificate first, optionally followed by its CA
    /// chain). Errors name the file.
    pub fn load(path: &Path) -> Result<PublishedKey, KeyError> {
        let pem = crate::config::sources::read(path).map_err(|source| KeyError::Read {
            what: "certificate file",
            path: path.to_owned(),
            source,
        })?;
        Self::from_pem(&pem, &format!("certificate file {}", path.display()))
    }

    /// Parses PEM text; `origin` names it in errors.
    pub fn from_pem(pem: &[u8], origin: &str) -> Result<PublishedKey, KeyError> {
        Self::from_chain(read_certificates(pem, origin)?, origin)
    }

    /// Builds from DER certificates, leaf first. The leaf's key must be one registries can
    /// verify tokens with (RSA ≥ 2048 bits, ECDSA P-256/P-384/P-521).
    pub fn from_chain(chain: Vec<Vec<u8>>, origin: &str) -> Result<PublishedKey, KeyError> {
        let Some(leaf_der) = chain.first() else {
            return Err(KeyError::NoCertificate {
                origin: origin.to_owned(),
                looks_like_key: false,
            });
        };
        for (i, der) in chain.iter().enumerate().skip(1) {
            parse_certificate(der, origin, i + 1)?;
        }
        let leaf = parse_certificate(leaf_der, origin, 1)?;
        let algorithm = key_algorithm(&leaf, origin)?;
        let malformed = |detail: &str| KeyError::Certificate {
            origin: origin.to_owned(),
            index: 1,
            detail: detail.to_owned(),
        };
        let params = match (algorithm, leaf.public_key().parsed()) {
            (Algorithm::Rs256, Ok(PublicKey::RSA(rsa))) => {
                JwkParams::from_rsa(rsa.modulus, rsa.exponent)
            }
            (alg, Ok(PublicKey::EC(point))) => {
                let curve = match alg {
                    Algorithm::Es256 => Curve::P256,
                    Algorithm::Es384 => Curve::P384,
                    _ => Curve::P521,
                };
                JwkParams::from_ec_point(curve, point.data()).ok_or_else(|| {
                    malformed(
                        "the EC public key is not an uncompressed point of its curve \
                         (compressed points are not supported)",
                    )
                })?
            }
            _ => return Err(malformed("malformed public key")),
        };
        Ok(PublishedKey {
            libtrust_kid: libtrust_key_id(&params.spki_der()),
            thumbprint: params.thumbprint(),
            chain,
            params,
        })
    }

    /// The JWS algorithm tokens signed by this key carry.
    pub fn algorithm(&self) -> Algorithm {
        self.params.algorithm()
    }

    /// The public key parameters.
    pub fn params(&self) -> &JwkParams {
        &self.params
    }

    /// The libtrust key ID (registry 2.x `kid`).
    pub fn libtrust_kid(&self) -> &str {
        &self.libtrust_kid
    }

    /// The RFC 7638 JWK thumbprint (registry v3 `kid`).
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The `kid` a token signed by this key carries (or, in `x5c` mode, the key's JWK
    /// thumbprint): libtrust in [`HeaderMode::KidLibtrust`], the thumbprint otherwise.
    pub fn kid(&self, mode: HeaderMode) -> &str {
        match mode {
            HeaderMode::KidLibtrust => &self.libtrust_kid,
            HeaderMode::KidThumbprint | HeaderMode::X5c => &self.thumbprint,
        }
    }

    /// The certificates as DER, leaf first, as listed in the file.
    pub fn certificate_chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    /// The public key as PEM SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`).
    pub fn public_key_pem(&self) -> String {
        self.params.public_key_pem()
    }

    fn jwk(&self, mode: HeaderMode) -> Jwk<'_> {
        let b64 = |bytes: &[u8]| Some(URL_SAFE_NO_PAD.encode(bytes));
        let mut jwk = Jwk {
            kty: self.params.kty(),
            use_: "sig",
            alg: self.algorithm().as_str(),
            kid: self.kid(mode),
            crv: None,
            x: None,
            y: None,
            n: None,
            e: None,
            x5c: self.chain.iter().map(|der| STANDARD.encode(der)).collect(),
        };
        match &self.params {
            JwkParams::Ec { curve, x, y } => {
                jwk.crv = Some(curve.name());
                jwk.x = b64(x);
                jwk.y = b64(y);
            }
            JwkParams::Rsa { n, e } => {
                jwk.n = b64(n);
                jwk.e = b64(e);
            }
        }
        jwk
    }
}

/// One JWK of the set, members in a readable order.
#[derive(Serialize)]
struct Jwk<'a> {
    kty: &'static str,
    #[serde(rename = "use")]
    use_: &'static str,
    alg: &'static str,
    kid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    crv: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    y: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    e: Option<String>,
    x5c: Vec<String>,
}

#[derive(Serialize)]
struct JwkSet<'a> {
    keys: Vec<Jwk<'a>>,
}

/// Every key registries should trust: the signing key first, then the extra certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedKeys {
    keys: Vec<PublishedKey>,
    /// Every certificate of every file, each once, in order.
    certificates: Vec<Vec<u8>>,
}

impl PublishedKeys {
    /// The signing key, then `extras` in order. An extra whose key is already published (e.g.
    /// the signing key itself, still listed while a rotation is under way) is published once;
    /// its certificates still go into the bundle.
    pub fn new(signing: &SigningKey, extras: &[PublishedKey]) -> PublishedKeys {
        let mut keys: Vec<PublishedKey> = vec![signing.public_key().clone()];
        let mut certificates: Vec<Vec<u8>> = Vec::new();
        for key in std::iter::once(signing.public_key()).chain(extras) {
            for der in &key.chain {
                if !certificates.contains(der) {
                    certificates.push(der.clone());
                }
            }
            if !keys.iter().any(|k| k.params == key.params) {
                keys.push(key.clone());
            }
        }
        PublishedKeys { keys, certificates }
    }

    /// The published keys, signing key first.
    pub fn keys(&self) -> &[PublishedKey] {
        &self.keys
    }

    /// The signing key.
    pub fn signing(&self) -> Option<&PublishedKey> {
        self.keys.first()
    }

    /// The JWK Set `{"keys":[…]}`: per key `kty`, `use: "sig"`, `alg`, `kid` (as
    /// [`PublishedKey::kid`] for `mode`), `crv`/`x`/`y` or `n`/`e`, and `x5c` (standard
    /// base64 DER, leaf first). `pretty` adds indentation and a final newline.
    pub fn jwks_json(&self, mode: HeaderMode, pretty: bool) -> Result<String, serde_json::Error> {
        let set = JwkSet {
            keys: self.keys.iter().map(|k| k.jwk(mode)).collect(),
        };
        if pretty {
            serde_json::to_string_pretty(&set).map(|s| s + "\n")
        } else {
            serde_json::to_string(&set)
        }
    }

    /// Every certificate as PEM, each once: what the registry's `rootcertbundle` needs (the
    /// signing certificate, its CA chain if the certificate file holds one, and the extras).
    pub fn root_bundle_pem(&self) -> String {
        self.certificates
            .iter()
            .map(|der| pem("CERTIFICATE", der))
            .collect()
    }
}
