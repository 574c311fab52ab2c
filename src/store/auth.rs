//! Authentication of stored records: whoever can write to Redis or PostgreSQL must not be able to
//! create or alter a minted password.
//!
//! Every record is stored as `v1.<tag>.<json>`, where `tag` is base64url(HMAC-SHA256) over a
//! version label, the record's id (its store key) and the exact JSON bytes. The key is derived
//! with HKDF-SHA256 from the session secret (its own label: it is never the key that seals the
//! cookies or the upstream tokens). So a record forged without the secret, altered in place, or
//! copied under another id fails the check and is refused; the tag is compared in constant time
//! (`hmac::verify`).
//!
//! Records written before records were authenticated (plain JSON) are refused like forged ones:
//! their users sign in again.

use aws_lc_rs::{hkdf, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::MintedRecord;

/// The format marker (and the first part of a stored value).
const VERSION: &str = "v1";
/// Bound into every tag: a tag of another purpose never verifies here.
const TAG_LABEL: &[u8] = b"registry-auth store record v1\0";
/// HKDF salt and info of the record key.
const HKDF_SALT: &[u8] = b"registry-auth";
const HKDF_INFO: &[u8] = b"registry-auth store record authentication v1";
/// base64url of 32 bytes, unpadded.
const TAG_LEN: usize = 43;

/// The key that authenticates the records (derived from the session secret).
pub struct RecordKey(hmac::Key);

impl std::fmt::Debug for RecordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordKey(***)")
    }
}

/// Why a stored value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Not in the authenticated format (forged, or written by an older version).
    Unauthenticated,
    /// The tag does not match (forged, altered, copied from another id, or another secret).
    BadTag,
    /// Authenticated but not a record (never written by us).
    Unreadable,
}

impl Rejected {
    /// Why, for the log.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Unauthenticated => {
                "it is not authenticated (forged, or written by a version before records were \
                 authenticated)"
            }
            Self::BadTag => {
                "its authentication tag does not match (forged, altered, copied from another \
                 password, or written under another session secret)"
            }
            Self::Unreadable => "it is authenticated but cannot be read",
        }
    }
}

impl RecordKey {
    /// Derives the key from the session secret (HKDF-SHA256).
    pub fn derive(secret: &[u8]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(secret);
        #[allow(clippy::expect_used)] // 32 bytes of output are always available from HKDF-SHA256.
        let okm = prk
            .expand(&[HKDF_INFO], hmac::HMAC_SHA256)
            .expect("HKDF-SHA256 gives 32 bytes");
        Self(hmac::Key::from(okm))
    }

    fn message(id: &str, json: &[u8]) -> Vec<u8> {
        let mut m = Vec::with_capacity(TAG_LABEL.len() + id.len() + 1 + json.len());
        m.extend_from_slice(TAG_LABEL);
        m.extend_from_slice(id.as_bytes());
        m.push(0);
        m.extend_from_slice(json);
        m
    }

    /// The stored form of `record` under `id`.
    pub fn encode(&self, id: &str, record: &MintedRecord) -> Result<Vec<u8>, String> {
        self.encode_any(id, record)
    }

    /// The stored form of any record under `id` (the shared state's records, whose ids carry
    /// their kind, e.g. `lockout:…`: a minted id never has a `:`, so no record verifies as
    /// another kind).
    pub fn encode_any<T: serde::Serialize>(&self, id: &str, record: &T) -> Result<Vec<u8>, String> {
        let json =
            serde_json::to_vec(record).map_err(|e| format!("cannot encode a record: {e}"))?;
        let tag = hmac::sign(&self.0, &Self::message(id, &json));
        let mut out = Vec::with_capacity(VERSION.len() + 2 + TAG_LEN + json.len());
        out.extend_from_slice(VERSION.as_bytes());
        out.push(b'.');
        out.extend_from_slice(URL_SAFE_NO_PAD.encode(tag.as_ref()).as_bytes());
        out.push(b'.');
        out.extend_from_slice(&json);
        Ok(out)
    }

    /// The record stored under `id`, when its tag verifies.
    pub fn decode(&self, id: &str, raw: &[u8]) -> Result<MintedRecord, Rejected> {
        self.decode_any(id, raw)
    }

    /// Any record stored under `id`, when its tag verifies.
    pub fn decode_any<T: serde::de::DeserializeOwned>(
        &self,
        id: &str,
        raw: &[u8],
    ) -> Result<T, Rejected> {
        let rest = raw
            .strip_prefix(VERSION.as_bytes())
            .and_then(|r| r.strip_prefix(b"."))
            .ok_or(Rejected::Unauthenticated)?;
        if rest.len() < TAG_LEN + 1 || rest[TAG_LEN] != b'.' {
            return Err(Rejected::Unauthenticated);
        }
        let (tag, json) = (&rest[..TAG_LEN], &rest[TAG_LEN + 1..]);
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| Rejected::BadTag)?;
        hmac::verify(&self.0, &Self::message(id, json), &tag).map_err(|_| Rejected::BadTag)?;
        serde_json::from_slice(json).map_err(|_| Rejected::Unreadable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::Labels;

    fn record(user: &str) -> MintedRecord {
        MintedRecord {
            user: user.to_owned(),
            provider: "github_auth".to_owned(),
            labels: Labels::from_iter([("teams", vec!["platform"])]),
            created_at: 1,
            expires_at: 2,
            revalidate_at: 3,
            upstream: "sealed".to_owned(),
        }
    }

    #[test]
    fn records_verify_only_under_their_id_and_key() {
        let key = RecordKey::derive(b"a session secret of at least 32 bytes..");
        let raw = key.encode("id-1", &record("alice")).unwrap();
        assert!(raw.starts_with(b"v1."));
        assert_eq!(key.decode("id-1", &raw), Ok(record("alice")));
        // Copied to another id.
        assert_eq!(key.decode("id-2", &raw), Err(Rejected::BadTag));
        // Another secret.
        let other = RecordKey::derive(b"another session secret of 32 bytes....");
        assert_eq!(other.decode("id-1", &raw), Err(Rejected::BadTag));
        // Altered in place: another user, same tag.
        let text = String::from_utf8(raw).unwrap();
        let forged = text.replace("\"alice\"", "\"admin\"");
        assert_eq!(key.decode("id-1", forged.as_bytes()), Err(Rejected::BadTag));
        // Plain JSON (a forged record, or one from before records were authenticated).
        let plain = serde_json::to_vec(&record("admin")).unwrap();
        assert_eq!(key.decode("id-1", &plain), Err(Rejected::Unauthenticated));
        for junk in [&b""[..], b"v1.", b"v1.short.{}", b"v2.x"] {
            assert!(key.decode("id-1", junk).is_err(), "{junk:?}");
        }
        // A tag over something that is not a record.
        let mut fake = b"v1.".to_vec();
        let tag = hmac::sign(&key.0, &RecordKey::message("id-1", b"[]"));
        fake.extend_from_slice(URL_SAFE_NO_PAD.encode(tag.as_ref()).as_bytes());
        fake.extend_from_slice(b".[]");
        assert_eq!(key.decode("id-1", &fake), Err(Rejected::Unreadable));
    }

    #[test]
    fn the_key_is_not_the_secret_nor_the_cookie_key() {
        let secret = b"a session secret of at least 32 bytes..";
        let key = RecordKey::derive(secret);
        let raw = key.encode("id", &record("alice")).unwrap();
        // A tag made with the raw secret as the HMAC key does not verify.
        let naive = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let json = serde_json::to_vec(&record("alice")).unwrap();
        let tag = hmac::sign(&naive, &RecordKey::message("id", &json));
        let mut forged = b"v1.".to_vec();
        forged.extend_from_slice(URL_SAFE_NO_PAD.encode(tag.as_ref()).as_bytes());
        forged.push(b'.');
        forged.extend_from_slice(&json);
        assert_ne!(raw, forged);
        assert_eq!(key.decode("id", &forged), Err(Rejected::BadTag));
    }
}
