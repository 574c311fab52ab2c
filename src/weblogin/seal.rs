//! The session secret (`server.session_secret_file`, generated into `data_dir` when unset) and
//! the two AES-256-GCM keys derived from it: one seals the login cookie (state, PKCE verifier,
//! nonce), the other the upstream tokens kept in the store. Replicas must share the file.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::token::refresh::{MIN_SECRET_LEN, read_secret};

/// What a key is for (also bound into every sealed value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The login cookie.
    Cookie,
    /// Upstream tokens in the store.
    Upstream,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Self::Cookie => b"registry-auth login cookie v1",
            Self::Upstream => b"registry-auth upstream tokens v1",
        }
    }
}

/// The derived keys.
pub struct Keys {
    cookie: RandomizedNonceKey,
    upstream: RandomizedNonceKey,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(***)")
    }
}

fn derive(secret: &[u8], purpose: Purpose) -> RandomizedNonceKey {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, purpose.label());
    #[allow(clippy::expect_used)] // A 32-byte key always fits AES-256.
    RandomizedNonceKey::new(&AES_256_GCM, tag.as_ref()).expect("a 32-byte AES-256 key")
}

impl Keys {
    /// Derives the keys from the secret.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            cookie: derive(secret, Purpose::Cookie),
            upstream: derive(secret, Purpose::Upstream),
        }
    }

    fn key(&self, purpose: Purpose) -> &RandomizedNonceKey {
        match purpose {
            Purpose::Cookie => &self.cookie,
            Purpose::Upstream => &self.upstream,
        }
    }

    /// Encrypts and authenticates `plain`, bound to `context` (e.g. the provider): base64url of
    /// nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, purpose: Purpose, context: &str, plain: &[u8]) -> String {
        let mut buf = plain.to_vec();
        let aad = [purpose.label(), b"\0", context.as_bytes()].concat();
        match self
            .key(purpose)
            .seal_in_place_append_tag(Aad::from(aad), &mut buf)
        {
            Ok(nonce) => {
                let mut out = nonce.as_ref().to_vec();
                out.extend_from_slice(&buf);
                URL_SAFE_NO_PAD.encode(out)
            }
            // Only fails when the random generator fails; an empty seal never opens.
            Err(_) => String::new(),
        }
    }

    /// The plaintext, when `sealed` was made by [`Keys::seal`] with the same purpose and
    /// context.
    pub fn open(&self, purpose: Purpose, context: &str, sealed: &str) -> Option<Vec<u8>> {
        let raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if raw.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = rest.to_vec();
        let aad = [purpose.label(), b"\0", context.as_bytes()].concat();
        let plain = self
            .key(purpose)
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .ok()?;
        Some(plain.to_vec())
    }
}

/// Reads the session secret at `path`, creating it (48 random bytes, base64, mode 0600) when
/// `generate` is set and it does not exist. Replicas starting together on a shared volume
/// agree: the file is created atomically (written aside, then hard-linked into place).
pub fn load_or_create(path: &Path, generate: bool) -> Result<Vec<u8>, String> {
    if generate && !path.exists() {
        create(path).map_err(|e| {
            format!(
                "cannot create the session secret {}: {e}; create it with `head -c 48 \
                 /dev/urandom | base64 > FILE` or set server.session_secret_file",
                path.display()
            )
        })?;
    }
    let secret = read_secret(path).map_err(|e| e.to_string())?;
    if secret.len() < MIN_SECRET_LEN {
        return Err(format!(
            "{} is too short (at least {MIN_SECRET_LEN} bytes)",
            path.display()
        ));
    }
    Ok(secret)
}

fn create(path: &Path) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    // data_dir holds the store and this secret: owner only when we create it.
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    let random: [u8; 48] = rand::random();
    let tmp: PathBuf = dir.join(format!(
        ".{}.{:016x}",
        path.file_name()
            .map_or("secret".into(), |n| n.to_string_lossy()),
        rand::random::<u64>()
    ));
    let written = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp)?;
        writeln!(f, "{}", STANDARD.encode(random))?;
        f.sync_all()
    })();
    if let Err(e) = written {
        // A full disk: leave nothing half-written behind.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "generated the session secret (share this file between replicas)");
            Ok(())
        }
        // Another process won the race: use its file.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_purpose_and_context() {
        let keys = Keys::new(&[7u8; 48]);
        let sealed = keys.seal(Purpose::Cookie, "github_auth", b"hello");
        assert_eq!(
            keys.open(Purpose::Cookie, "github_auth", &sealed)
                .as_deref(),
            Some(&b"hello"[..])
        );
        assert!(keys.open(Purpose::Cookie, "gitlab_auth", &sealed).is_none());
        assert!(
            keys.open(Purpose::Upstream, "github_auth", &sealed)
                .is_none()
        );
        assert!(
            Keys::new(&[8u8; 48])
                .open(Purpose::Cookie, "github_auth", &sealed)
                .is_none()
        );
        let mut tampered = sealed.into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(
            keys.open(Purpose::Cookie, "github_auth", &tampered)
                .is_none()
        );
        assert!(keys.open(Purpose::Cookie, "github_auth", "short").is_none());
    }

    #[test]
    fn the_secret_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/session.secret");
        assert!(load_or_create(&path, false).is_err());
        let a = load_or_create(&path, true).unwrap();
        let b = load_or_create(&path, true).unwrap();
        assert_eq!(a, b);
        assert!(a.len() >= MIN_SECRET_LEN);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
    }
}
