//! Tokens: scope parsing, the signing key, JWS/JWT issuance and key generation.
//!
//! * [`scope`] parses the `scope` request parameters into merged [`Scope`]s.
//! * [`keys`] loads the signing certificate chain and private key once ([`SigningKey`]).
//! * [`jws`] builds and signs the registry JWT ([`TokenIssuer`]); it only sees [`Grant`]s, the
//!   outcome of authorization, and never decides access itself.
//! * [`keygen`] creates key pairs and certificates for `gen-keys` and first start.
//! * [`jwk`] has the JWK parameters, RFC 7638 thumbprint and canonical SPKI of a public key.
//! * [`publish`] collects the keys registries must trust ([`PublishedKeys`]: signing key and
//!   extra certificates) as a JWK Set, a PEM certificate bundle and PEM public keys.
//!
//! Pure: no HTTP, no configuration types, no global state.

pub mod jwk;
pub mod jws;
pub mod keygen;
pub mod keys;
pub mod publish;
pub mod refresh;
pub mod scope;

pub use jwk::{Curve, JwkParams};
pub use jws::{Grant, HeaderMode, IssuedToken, TokenError, TokenIssuer};
pub use keygen::{
    GeneratedKey, KeyKind, ensure_generated, generate_ca, generate_self_signed, generate_signed_by,
    write_key_files,
};
pub use keys::{Algorithm, KeyError, SigningKey, libtrust_key_id};
pub use publish::{PublishedKey, PublishedKeys};
pub use scope::{Scope, ScopeError, parse_scopes};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod trust_tests;
