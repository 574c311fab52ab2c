//! Issuing registry tokens: a JWT in JWS compact serialization, signed with a [`SigningKey`].
//!
//! The shape is what distribution 2.8 (and v3, zot) verify:
//!
//! * header `{"typ":"JWT","alg":"ES256","kid":"<libtrust key ID>"}` ([`HeaderMode::KidLibtrust`]),
//!   `{"typ":"JWT","alg":"ES256","kid":"<RFC 7638 JWK thumbprint>"}`
//!   ([`HeaderMode::KidThumbprint`]) or `{"typ":"JWT","alg":"ES256","x5c":["<std base64 DER>",
//!   ...]}` ([`HeaderMode::X5c`], the whole chain of the certificate file, leaf first);
//! * claims `iss`, `sub`, `aud` (a JSON **string**), `exp`, `nbf` (now − 5 s), `iat` (JSON
//!   **integers**), `jti` (128 random bits) and `access` (`[{"type","name","actions":[...]}]`,
//!   `[]` when nothing was requested, `"actions":[]` for a denied resource);
//! * segments base64url without padding.
//!
//! The header segment is encoded once in [`TokenIssuer::new`]; [`TokenIssuer::issue`] serializes
//! the claims into one buffer, encodes and signs. What goes into `access` is decided by the
//! caller (authorization); this module never checks access.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Serialize;

use super::keys::{KeyError, SigningKey};

/// How many seconds `nbf` lies before `iat`, to absorb clock skew between us and the registry.
pub const NOT_BEFORE_SKEW: Duration = Duration::from_secs(5);

/// How the JWS header identifies the signing key to the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderMode {
    /// `kid` = libtrust key ID of the signing certificate's key (registry 2.x; the certificate
    /// itself must be in the registry's `rootcertbundle`).
    KidLibtrust,
    /// `x5c` = the certificate chain (works with registry 2.x and 3.x; the bundle may hold the
    /// certificate itself or a CA that issued it).
    X5c,
    /// `kid` = RFC 7638 JWK thumbprint of the signing key (registry v3.1+ for keys in its
    /// `rootcertbundle`, v3.0 for RSA keys only; any v3 with the key in its `jwks` file).
    KidThumbprint,
}

impl HeaderMode {
    /// The config spelling (`kid-libtrust`, `x5c`, `kid-thumbprint`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KidLibtrust => "kid-libtrust",
            Self::X5c => "x5c",
            Self::KidThumbprint => "kid-thumbprint",
        }
    }
}

/// One entry of the `access` claim: the actions granted on one resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Grant {
    /// Resource type (`repository`, `registry`), serialized as `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Resource name.
    pub name: String,
    /// Granted actions; empty when everything requested was denied.
    pub actions: Vec<String>,
}

/// A signed token and the response fields that describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The JWS compact serialization.
    pub token: String,
    /// Lifetime in seconds (`exp − iat`).
    pub expires_in: u64,
    /// `iat` as RFC 3339 UTC with whole seconds, e.g. `2026-11-22T20:00:00Z`.
    pub issued_at: String,
}

/// Why a token could not be issued. All variants are server-side faults (HTTP 500).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The system clock is before 1970 or absurdly far in the future.
    #[error("the system clock is out of range ({0}); cannot compute token timestamps")]
    Clock(String),
    /// The claims could not be serialized.
    #[error("cannot serialize token claims: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The system random number generator failed (for `jti`).
    #[error("the system random number generator failed")]
    Random,
    /// Signing failed.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Signs tokens for one issuer with one key. Cheap to share (`Send + Sync`).
#[derive(Debug)]
pub struct TokenIssuer {
    issuer: String,
    lifetime: Duration,
    lifetime_secs: u64,
    key: Arc<SigningKey>,
    mode: HeaderMode,
    /// base64url(header JSON), computed once.
    header_b64: String,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: &'a str,
    access: &'a [Grant],
}

impl TokenIssuer {
    /// Creates an issuer. `issuer` becomes `iss` and must equal the registry's
    /// `auth.token.issuer`; `lifetime` is whole seconds (sub-second parts are dropped) and should
    /// be at least 60 s (the spec's minimum, validated by the configuration layer).
    pub fn new(
        issuer: String,
        lifetime: Duration,
        key: Arc<SigningKey>,
        mode: HeaderMode,
    ) -> TokenIssuer {
        let header_b64 = URL_SAFE_NO_PAD.encode(header_json(&key, mode));
        TokenIssuer {
            issuer,
            lifetime,
            lifetime_secs: lifetime.as_secs(),
            key,
            mode,
            header_b64,
        }
    }

    /// The signing key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// The `iss` claim.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The token lifetime.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The header mode.
    pub fn mode(&self) -> HeaderMode {
        self.mode
    }

    /// Issues a token for `subject` (user name, may be empty for anonymous) and `audience` (the
    /// requested `service`) carrying `access` as given.
    pub fn issue(
        &self,
        subject: &str,
        audience: &str,
        access: &[Grant],
        now: SystemTime,
    ) -> Result<IssuedToken, TokenError> {
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| TokenError::Clock("before 1970-01-01".into()))?
            .as_secs();
        let exp = iat
            .checked_add(self.lifetime_secs)
            .ok_or_else(|| TokenError::Clock("expiry overflows".into()))?;
        let nbf = iat.saturating_sub(NOT_BEFORE_SKEW.as_secs());
        let issued_at = rfc3339(iat)?;

        let mut nonce = [0u8; 16];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| TokenError::Random)?;
        let jti = URL_SAFE_NO_PAD.encode(nonce);

        let claims = Claims {
            iss: &self.issuer,
            sub: subject,
            aud: audience,
            exp,
            nbf,
            iat,
            jti: &jti,
            access,
        };
        let mut json = Vec::with_capacity(
            160 + self.issuer.len()
                + subject.len()
                + audience.len()
                + access
                    .iter()
                    .map(|g| 40 + g.kind.len() + g.name.len() + 10 * g.actions.len())
                    .sum::<usize>(),
        );
        serde_json::to_writer(&mut json, &claims)?;

        // header.claims.signature; RSA-4096 signatures are 512 bytes → 683 characters.
        let mut token =
            String::with_capacity(self.header_b64.len() + json.len().div_ceil(3) * 4 + 700);
        token.push_str(&self.header_b64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&json, &mut token);
        let signature = self.key.sign(token.as_bytes())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);

        Ok(IssuedToken {
            token,
            expires_in: self.lifetime_secs,
            issued_at,
        })
    }
}

/// The header JSON. Every interpolated value is `[A-Z0-9:]` (alg, libtrust kid), base64url
/// (thumbprint kid) or standard base64 (`x5c`), so no JSON escaping is needed.
fn header_json(key: &SigningKey, mode: HeaderMode) -> String {
    let mut header = format!(r#"{{"typ":"JWT","alg":"{}""#, key.algorithm().as_str());
    match mode {
        HeaderMode::KidLibtrust => {
            let _ = write!(header, r#","kid":"{}""#, key.kid());
        }
        HeaderMode::KidThumbprint => {
            let _ = write!(header, r#","kid":"{}""#, key.thumbprint());
        }
        HeaderMode::X5c => {
            header.push_str(r#","x5c":["#);
            for (i, der) in key.certificate_chain().iter().enumerate() {
                if i > 0 {
                    header.push(',');
                }
                header.push('"');
                STANDARD.encode_string(der, &mut header);
                header.push('"');
            }
            header.push(']');
        }
    }
    header.push('}');
    header
}

fn rfc3339(unix_secs: u64) -> Result<String, TokenError> {
    let secs = i64::try_from(unix_secs).map_err(|e| TokenError::Clock(e.to_string()))?;
    let time = time::OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|e| TokenError::Clock(e.to_string()))?;
    time.format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| TokenError::Clock(e.to_string()))
}
