//! Public keys as registries identify them: JWK parameters, the RFC 7638 JWK thumbprint, and
//! the canonical DER SubjectPublicKeyInfo (input of the libtrust key ID and of zot's `cert`).
//!
//! * EC: `{"crv","kty","x","y"}` with **full-length** coordinates (32, 48 or 66 bytes, RFC 7518
//!   §6.2.1.2). Distribution v3.1 encodes coordinates without their leading zero bytes, so for a
//!   key whose `x` or `y` starts with a zero byte its thumbprint differs from ours
//!   ([`JwkParams::has_short_coordinate`]); generated keys never have one.
//! * RSA: `{"e","kty","n"}` with minimal big-endian `n` and `e` (what everyone computes).
//!
//! Pure: no I/O.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::keys::Algorithm;

/// A NIST curve usable for token signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    /// P-256 (`ES256`).
    P256,
    /// P-384 (`ES384`).
    P384,
    /// P-521 (`ES512`).
    P521,
}

impl Curve {
    /// The JWK `crv` name: `P-256`, `P-384` or `P-521`.
    pub fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
        }
    }

    /// Length in bytes of one coordinate (and of a private scalar).
    pub fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }

    /// The only JWS algorithm registries accept for this curve.
    pub fn algorithm(self) -> Algorithm {
        match self {
            Curve::P256 => Algorithm::Es256,
            Curve::P384 => Algorithm::Es384,
            Curve::P521 => Algorithm::Es512,
        }
    }

    /// DER of the named-curve OID (tag and length included).
    fn oid_der(self) -> &'static [u8] {
        match self {
            // 1.2.840.10045.3.1.7
            Curve::P256 => &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
            // 1.3.132.0.34
            Curve::P384 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
            // 1.3.132.0.35
            Curve::P521 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23],
        }
    }
}

/// The public parameters of a token signing key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JwkParams {
    /// An ECDSA key; `x` and `y` are full length ([`Curve::coordinate_len`]).
    Ec {
        /// The curve.
        curve: Curve,
        /// X coordinate, big-endian, full length.
        x: Vec<u8>,
        /// Y coordinate, big-endian, full length.
        y: Vec<u8>,
    },
    /// An RSA key; `n` and `e` are big-endian without leading zero bytes.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
}

/// DER of the id-ecPublicKey OID 1.2.840.10045.2.1.
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// DER of the rsaEncryption OID 1.2.840.113549.1.1.1 followed by NULL parameters.
const RSA_ENCRYPTION_NULL: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

impl JwkParams {
    /// An EC key from its SEC1 uncompressed point `04 ‖ x ‖ y`; `None` for any other shape
    /// (compressed points included).
    pub fn from_ec_point(curve: Curve, point: &[u8]) -> Option<JwkParams> {
        let len = curve.coordinate_len();
        let (&tag, xy) = point.split_first()?;
        if tag != 0x04 || xy.len() != 2 * len {
            return None;
        }
        let (x, y) = xy.split_at(len);
        Some(JwkParams::Ec {
            curve,
            x: x.to_vec(),
            y: y.to_vec(),
        })
    }

    /// An RSA key from big-endian modulus and exponent (leading zero bytes are dropped).
    pub fn from_rsa(n: &[u8], e: &[u8]) -> JwkParams {
        JwkParams::Rsa {
            n: strip_leading_zeros(n).to_vec(),
            e: strip_leading_zeros(e).to_vec(),
        }
    }

    /// The JWS algorithm tokens signed by this key use (RSA: `RS256`).
    pub fn algorithm(&self) -> Algorithm {
        match self {
            JwkParams::Ec { curve, .. } => curve.algorithm(),
            JwkParams::Rsa { .. } => Algorithm::Rs256,
        }
    }

    /// The JWK `kty`: `EC` or `RSA`.
    pub fn kty(&self) -> &'static str {
        match self {
            JwkParams::Ec { .. } => "EC",
            JwkParams::Rsa { .. } => "RSA",
        }
    }

    /// Whether an EC coordinate starts with a zero byte, i.e. distribution v3.1 (which drops
    /// leading zeros) computes another thumbprint than RFC 7638. Always false for RSA.
    pub fn has_short_coordinate(&self) -> bool {
        match self {
            JwkParams::Ec { x, y, .. } => x.first() == Some(&0) || y.first() == Some(&0),
            JwkParams::Rsa { .. } => false,
        }
    }

    /// The RFC 7638 JWK thumbprint: base64url (no padding) of SHA-256 over the required members
    /// in lexicographic order without whitespace.
    pub fn thumbprint(&self) -> String {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        // Every interpolated value is a curve name or base64url: no JSON escaping needed.
        let canonical = match self {
            JwkParams::Ec { curve, x, y } => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                curve.name(),
                b64(x),
                b64(y)
            ),
            JwkParams::Rsa { n, e } => {
                format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64(e), b64(n))
            }
        };
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        URL_SAFE_NO_PAD.encode(digest.as_ref())
    }

    /// The canonical DER SubjectPublicKeyInfo, as Go's `x509.MarshalPKIXPublicKey` writes it
    /// (EC: id-ecPublicKey + named curve, uncompressed point; RSA: rsaEncryption + NULL).
    pub fn spki_der(&self) -> Vec<u8> {
        let (algorithm, key) = match self {
            JwkParams::Ec { curve, x, y } => {
                let mut alg = OID_EC_PUBLIC_KEY.to_vec();
                alg.extend_from_slice(curve.oid_der());
                let mut point = Vec::with_capacity(1 + x.len() + y.len());
                point.push(0x04);
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                (alg, point)
            }
            JwkParams::Rsa { n, e } => {
                let mut ints = der_unsigned_integer(n);
                ints.extend(der_unsigned_integer(e));
                (RSA_ENCRYPTION_NULL.to_vec(), der(0x30, &ints))
            }
        };
        let mut bits = Vec::with_capacity(1 + key.len());
        bits.push(0x00); // no unused bits
        bits.extend_from_slice(&key);
        let mut body = der(0x30, &algorithm);
        body.extend(der(0x03, &bits));
        der(0x30, &body)
    }

    /// The SubjectPublicKeyInfo as PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn public_key_pem(&self) -> String {
        pem("PUBLIC KEY", &self.spki_der())
    }
}

/// PEM armour: base64 in 64-character lines.
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    // base64 is ASCII, so splitting at any byte offset is a char boundary.
    let mut rest = b64.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

/// A DER TLV with a definite length.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let significant = strip_leading_zeros(&bytes);
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

/// A DER INTEGER holding a non-negative big-endian number.
fn der_unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let minimal = strip_leading_zeros(magnitude);
    let mut content = Vec::with_capacity(minimal.len() + 1);
    if minimal.first().is_none_or(|&b| b & 0x80 != 0) {
        content.push(0x00);
    }
    content.extend_from_slice(minimal);
    der(0x02, &content)
}
