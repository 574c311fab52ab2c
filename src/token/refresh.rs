//! Refresh (identity) tokens: what `docker login` stores instead of the password, and what the
//! OAuth2 `grant_type=refresh_token` exchanges for access tokens.
//!
//! They are stateless, so every replica can check them with the shared secret:
//!
//! ```text
//! rat1.<base64url(JSON payload)>.<base64url(HMAC-SHA256(secret, "rat1." + payload))>
//! ```
//!
//! The payload binds the token to one subject (`sub`) and one service (`aud`), carries a random
//! id (for revocation), issue and expiry times, and a fingerprint of the credential the subject had
//! when the token was issued: a password change (or the user's removal) invalidates it. The
//! payload is readable by whoever holds the token; it holds nothing secret. Several secrets may
//! be configured: new tokens use the first, and the others keep older tokens valid during a
//! rotation.
//!
//! [`Revocations`] is the list of revoked token ids and users, re-read when its file changes.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use aws_lc_rs::{digest, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// Version prefix of the token format.
const PREFIX: &str = "rat1";
/// Shortest accepted secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;
/// Longest token accepted for parsing (a real one is ~250 bytes).
const MAX_TOKEN_LEN: usize = 4096;

/// What a refresh token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshClaims {
    /// Random token id, used for revocation.
    pub id: String,
    /// The account it was issued to.
    pub sub: String,
    /// The service it is bound to.
    pub aud: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: u64,
    /// Fingerprint of the credential `sub` had at issue time.
    pub fp: String,
}

/// Why a refresh token is not accepted. Every variant means "401, log in again".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    /// Not a refresh token of ours (wrong shape, version, encoding or MAC).
    #[error("not a valid refresh token")]
    Invalid,
    /// Past its expiry.
    #[error("the refresh token has expired")]
    Expired,
    /// Issued for another service.
    #[error("the refresh token was issued for another service")]
    WrongService,
    /// Revoked by id or by user.
    #[error("the refresh token has been revoked")]
    Revoked,
}

/// A problem with the secret files (a configuration error).
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}; create it with `head -c 48 /dev/urandom | base64 > FILE`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The secret is too short.
    #[error("{} holds {len} bytes; a refresh secret needs at least {MIN_SECRET_LEN} (create one with `head -c 48 /dev/urandom | base64 > FILE`)", path.display())]
    TooShort {
        /// The file.
        path: PathBuf,
        /// Its length after trimming.
        len: usize,
    },
}

/// Reads a secret file (surrounding whitespace trimmed) and checks its length.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, SecretError> {
    let raw = crate::config::sources::read(path).map_err(|source| SecretError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let trimmed = raw.trim_ascii().to_vec();
    if trimmed.len() < MIN_SECRET_LEN {
        return Err(SecretError::TooShort {
            path: path.to_path_buf(),
            len: trimmed.len(),
        });
    }
    Ok(trimmed)
}

/// Fingerprint of a stored credential (a bcrypt hash): the first 16 bytes of its SHA-256,
/// base64url. It changes whenever the hash changes and reveals nothing usable about it.
pub fn credential_fingerprint(stored_hash: &str) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"registry-auth credential fingerprint v1\0");
    ctx.update(stored_hash.as_bytes());
    URL_SAFE_NO_PAD.encode(&ctx.finish().as_ref()[..16])
}

/// Issues and verifies refresh tokens.
pub struct RefreshCodec {
    keys: Vec<hmac::Key>,
    lifetime: Duration,
}

impl std::fmt::Debug for RefreshCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshCodec")
            .field("secrets", &self.keys.len())
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

impl RefreshCodec {
    /// `current` signs new tokens; `previous` secrets are still accepted.
    pub fn new(current: &[u8], previous: &[Vec<u8>], lifetime: Duration) -> Self {
        let mut keys = vec![hmac::Key::new(hmac::HMAC_SHA256, current)];
        keys.extend(
            previous
                .iter()
                .map(|p| hmac::Key::new(hmac::HMAC_SHA256, p)),
        );
        Self { keys, lifetime }
    }

    /// How long new tokens live.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Issues a token for `sub` on `aud`, fingerprinting the credential it has now.
    pub fn issue(
        &self,
        sub: &str,
        aud: &str,
        fingerprint: &str,
        now: SystemTime,
    ) -> (String, RefreshClaims) {
        let iat = unix(now);
        let id: [u8; 16] = rand::random();
        let claims = RefreshClaims {
            id: URL_SAFE_NO_PAD.encode(id),
            sub: sub.to_owned(),
            aud: aud.to_owned(),
            iat,
            exp: iat.saturating_add(self.lifetime.as_secs()),
            fp: fingerprint.to_owned(),
        };
        // Serializing a struct of strings and integers cannot fail.
        let payload = serde_json::to_vec(&claims).unwrap_or_default();
        let signing_input = format!("{PREFIX}.{}", URL_SAFE_NO_PAD.encode(payload));
        let tag = hmac::sign(&self.keys[0], signing_input.as_bytes());
        let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
        (token, claims)
    }

    /// Checks shape, MAC (against every configured secret, in constant time), expiry and
    /// service. Revocation and the subject's current credential are checked by the caller.
    pub fn verify(
        &self,
        token: &str,
        service: &str,
        now: SystemTime,
    ) -> Result<RefreshClaims, RefreshError> {
        let claims = self.decode(token)?;
        if unix(now) >= claims.exp {
            return Err(RefreshError::Expired);
        }
        if claims.aud != service {
            return Err(RefreshError::WrongService);
        }
        Ok(claims)
    }

    /// Checks shape and MAC only (no expiry or service check).
    pub fn decode(&self, token: &str) -> Result<RefreshClaims, RefreshError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(RefreshError::Invalid);
        }
        let (signing_input, tag_b64) = token.rsplit_once('.').ok_or(RefreshError::Invalid)?;
        let (prefix, payload_b64) = signing_input.split_once('.').ok_or(RefreshError::Invalid)?;
        if prefix != PREFIX {
            return Err(RefreshError::Invalid);
        }
        let tag = URL_SAFE_NO_PAD
            .decode(tag_b64)
            .map_err(|_| RefreshError::Invalid)?;
        let authentic = self
            .keys
            .iter()
            .any(|k| hmac::verify(k, signing_input.as_bytes(), &tag).is_ok());
        if !authentic {
            return Err(RefreshError::Invalid);
        }
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| RefreshError::Invalid)?;
        serde_json::from_slice(&payload).map_err(|_| RefreshError::Invalid)
    }
}

/// Reads the id out of a refresh token without checking it (for `tokens revoke TOKEN`).
pub fn unverified_token_id(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    if parts.next()? != PREFIX {
        return None;
    }
    let payload = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
    let claims: RefreshClaims = serde_json::from_slice(&payload).ok()?;
    Some(claims.id)
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The revocation file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationList {
    /// Revoked token ids.
    #[serde(default)]
    pub tokens: HashSet<String>,
    /// User → RFC 3339 time: every token of that user issued at or before it is revoked.
    #[serde(default)]
    pub users: HashMap<String, String>,
}

impl RevocationList {
    /// Parses the YAML file content.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let list: Self = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        for (user, when) in &list.users {
            humantime::parse_rfc3339(when)
                .map_err(|e| format!("users.{user}: {when:?} is not an RFC 3339 time: {e}"))?;
        }
        Ok(list)
    }

    /// Whether `claims` is revoked.
    pub fn is_revoked(&self, claims: &RefreshClaims) -> bool {
        if self.tokens.contains(&claims.id) {
            return true;
        }
        self.users
            .get(&claims.sub)
            .and_then(|when| humantime::parse_rfc3339(when).ok())
            .is_some_and(|when| claims.iat <= unix(when))
    }

    /// Serializes for writing back (with a header comment).
    pub fn to_yaml(&self) -> String {
        let mut tokens: Vec<&String> = self.tokens.iter().collect();
        tokens.sort();
        let mut users: Vec<(&String, &String)> = self.users.iter().collect();
        users.sort();
        let mut out = String::from(
            "# Revoked refresh tokens, written by `registry-auth tokens revoke`.\n\
             # tokens: revoked token ids; users: every token issued to the user at or before \
             the time is revoked.\n",
        );
        out.push_str("tokens:\n");
        for t in tokens {
            out.push_str(&format!("  - {}\n", serde_json::Value::String(t.clone())));
        }
        out.push_str("users:\n");
        for (u, when) in users {
            out.push_str(&format!(
                "  {}: {}\n",
                serde_json::Value::String(u.clone()),
                serde_json::Value::String(when.clone())
            ));
        }
        out
    }
}

/// Identity of a file version: modification time, length and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp(Option<SystemTime>, u64, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    let m = fs::metadata(path).ok()?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let ino = 0;
    Some(Stamp(m.modified().ok(), m.len(), ino))
}

#[derive(Debug)]
struct Loaded {
    stamp: Option<Stamp>,
    list: RevocationList,
}

/// The revocation list of a file, re-read whenever the file changes (every replica mounting the
/// same file sees a revocation at its next refresh). A file that cannot be parsed keeps the
/// previous list in force and is reported by [`Revocations::check`].
#[derive(Debug)]
pub struct Revocations {
    path: Option<PathBuf>,
    current: ArcSwap<Loaded>,
}

impl Revocations {
    /// No revocation file: nothing is ever revoked.
    pub fn none() -> Self {
        Self {
            path: None,
            current: ArcSwap::from_pointee(Loaded {
                stamp: None,
                list: RevocationList::default(),
            }),
        }
    }

    /// Loads `path` now (a missing file is an empty list).
    pub fn load(path: PathBuf) -> Result<Self, String> {
        let stamp = stamp(&path);
        let list = match fs::read_to_string(&path) {
            Ok(text) => {
                RevocationList::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RevocationList::default(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(Self {
            path: Some(path),
            current: ArcSwap::from_pointee(Loaded { stamp, list }),
        })
    }

    /// The file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Whether `claims` is revoked, re-reading the file first if it changed. The `Err` carries a
    /// reload problem to log; the previous list was used.
    pub fn check(&self, claims: &RefreshClaims) -> (bool, Option<String>) {
        let mut problem = None;
        if let Some(path) = &self.path {
            let now = stamp(path);
            if now != self.current.load().stamp {
                let reloaded = match fs::read_to_string(path) {
                    Ok(text) => RevocationList::parse(&text),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        Ok(RevocationList::default())
                    }
                    Err(e) => Err(e.to_string()),
                };
                match reloaded {
                    Ok(list) => self.current.store(Arc::new(Loaded { stamp: now, list })),
                    Err(e) => {
                        problem = Some(format!(
                            "cannot reload {}: {e}; the previous revocation list stays in force",
                            path.display()
                        ));
                    }
                }
            }
        }
        (self.current.load().list.is_revoked(claims), problem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-first";
    const OTHER: &[u8] = b"0123456789abcdef0123456789abcdef-other";

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn codec() -> RefreshCodec {
        RefreshCodec::new(SECRET, &[], Duration::from_secs(3600))
    }

    #[test]
    fn round_trip_binds_subject_service_and_expiry() {
        let (token, claims) = codec().issue("alice", "reg", "fp1", at(1_000));
        assert!(token.starts_with("rat1."));
        assert_eq!(claims.exp, 4_600);
        let back = codec().verify(&token, "reg", at(2_000)).unwrap();
        assert_eq!(back, claims);
        assert_eq!(
            codec().verify(&token, "other", at(2_000)),
            Err(RefreshError::WrongService)
        );
        assert_eq!(
            codec().verify(&token, "reg", at(4_600)),
            Err(RefreshError::Expired)
        );
        assert_eq!(unverified_token_id(&token), Some(claims.id));
    }

    #[test]
    fn ids_are_random() {
        let (_, a) = codec().issue("alice", "reg", "fp", at(1));
        let (_, b) = codec().issue("alice", "reg", "fp", at(1));
        assert_ne!(a.id, b.id);
    }

    #[test]
    fn tampering_and_foreign_secrets_are_rejected() {
        let (token, _) = codec().issue("alice", "reg", "fp", at(1_000));
        let (prefix_payload, tag) = token.rsplit_once('.').unwrap();
        // Swap the payload for one naming another user, keep the tag.
        let forged_payload = URL_SAFE_NO_PAD.encode(
            br#"{"id":"x","sub":"admin","aud":"reg","iat":1000,"exp":9999999999,"fp":"fp"}"#,
        );
        for bad in [
            format!("rat1.{forged_payload}.{tag}"),
            format!("{prefix_payload}.{}", &tag[1..]),
            format!("{prefix_payload}.AAAA"),
            token.replacen("rat1", "rat2", 1),
            "rat1.only-two".to_owned(),
            String::new(),
            "x".repeat(5000),
        ] {
            assert_eq!(codec().decode(&bad), Err(RefreshError::Invalid), "{bad}");
        }
        let other = RefreshCodec::new(OTHER, &[], Duration::from_secs(60));
        assert_eq!(other.decode(&token), Err(RefreshError::Invalid));
    }

    #[test]
    fn previous_secrets_keep_old_tokens_valid() {
        let (old_token, _) = codec().issue("alice", "reg", "fp", at(1_000));
        let rotated = RefreshCodec::new(OTHER, &[SECRET.to_vec()], Duration::from_secs(3600));
        assert!(rotated.verify(&old_token, "reg", at(1_001)).is_ok());
        let (new_token, _) = rotated.issue("alice", "reg", "fp", at(1_000));
        // New tokens are signed with the new secret only.
        assert_eq!(codec().decode(&new_token), Err(RefreshError::Invalid));
        let dropped = RefreshCodec::new(OTHER, &[], Duration::from_secs(3600));
        assert_eq!(dropped.decode(&old_token), Err(RefreshError::Invalid));
    }

    #[test]
    fn fingerprint_follows_the_hash() {
        let a = credential_fingerprint("$2y$05$aaaa");
        assert_eq!(a, credential_fingerprint("$2y$05$aaaa"));
        assert_ne!(a, credential_fingerprint("$2y$05$aaab"));
        assert!(!a.contains("aaaa"));
    }

    #[test]
    fn secret_files_must_be_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        fs::write(&short, "  tooshort \n").unwrap();
        assert!(matches!(
            read_secret(&short),
            Err(SecretError::TooShort { len: 8, .. })
        ));
        let good = dir.path().join("good");
        fs::write(&good, format!("{}\n", "s".repeat(40))).unwrap();
        assert_eq!(read_secret(&good).unwrap().len(), 40);
        let err = read_secret(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing") && err.contains("urandom"), "{err}");
    }

    #[test]
    fn revocations_by_id_and_by_user_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revoked.yml");
        let revocations = Revocations::load(path.clone()).unwrap();
        let (_, alice) = codec().issue("alice", "reg", "fp", at(1_000));
        let (_, bob) = codec().issue("bob", "reg", "fp", at(1_000));
        assert_eq!(revocations.check(&alice), (false, None));

        let mut list = RevocationList::default();
        list.tokens.insert(alice.id.clone());
        list.users
            .insert("bob".to_owned(), "1970-01-01T00:16:40Z".to_owned());
        fs::write(&path, list.to_yaml()).unwrap();
        assert_eq!(RevocationList::parse(&list.to_yaml()).unwrap(), list);
        assert!(revocations.check(&alice).0);
        assert!(revocations.check(&bob).0, "issued at the revocation time");
        let (_, later_bob) = codec().issue("bob", "reg", "fp", at(1_001));
        assert!(!revocations.check(&later_bob).0, "issued after it");

        // A broken file keeps the previous list and reports the problem.
        fs::write(&path, "tokens: [unterminated\n").unwrap();
        let (revoked, problem) = revocations.check(&alice);
        assert!(revoked);
        assert!(problem.unwrap().contains("previous revocation list"));
        // Removing the file clears the list.
        fs::remove_file(&path).unwrap();
        assert!(!revocations.check(&alice).0);
    }

    #[test]
    fn revocation_file_errors() {
        assert!(RevocationList::parse("").unwrap().tokens.is_empty());
        assert!(RevocationList::parse("unknown: 1").is_err());
        let e = RevocationList::parse("users: {bob: yesterday}").unwrap_err();
        assert!(e.contains("users.bob"), "{e}");
    }
}
