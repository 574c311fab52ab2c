//! Shape check of stored bcrypt hashes, done at config load so a bad hash is reported with its
//! YAML path instead of failing every login.

/// The highest bcrypt cost accepted: above it a single check takes seconds (a cost-31 hash would
/// stall config loading for days, since unknown users are checked against a dummy hash of the
/// highest configured cost).
pub const MAX_COST: u32 = 16;

/// Why a string is not a usable bcrypt hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BcryptHashError {
    /// A hash of another scheme (named).
    #[error("{0} hashes are not accepted, only bcrypt (`$2y$…`)")]
    NotBcrypt(&'static str),
    /// Looks like bcrypt but is malformed.
    #[error(
        "malformed bcrypt hash (expected `$2y$NN$` followed by 53 characters); generate one with \
         `registry-auth hash-password`"
    )]
    Malformed,
    /// The cost is outside the accepted range.
    #[error(
        "bcrypt cost {0} is out of range: use 4 to 16 (every login costs 2^cost rounds; 10 to 12 \
         is usual, and 31 would take days per check)"
    )]
    Cost(u32),
}

/// Checks that `hash` is a bcrypt hash (`$2a$`, `$2b$`, `$2x$` or `$2y$`, cost 4–16, 53 chars of
/// salt and digest). Never logs or returns the hash itself.
pub fn check_bcrypt_hash(hash: &str) -> Result<(), BcryptHashError> {
    if hash.starts_with("$apr1$") {
        return Err(BcryptHashError::NotBcrypt("MD5 (`$apr1$`)"));
    }
    if hash.starts_with("{SHA}") {
        return Err(BcryptHashError::NotBcrypt("SHA-1 (`{SHA}`)"));
    }
    if hash.starts_with("$1$") || hash.starts_with("$5$") || hash.starts_with("$6$") {
        return Err(BcryptHashError::NotBcrypt("crypt(3)"));
    }
    if !hash.starts_with("$2") {
        return Err(BcryptHashError::NotBcrypt("plain-text or unknown"));
    }
    let bytes = hash.as_bytes();
    if bytes.len() != 60
        || !matches!(bytes[2], b'a' | b'b' | b'x' | b'y')
        || bytes[3] != b'$'
        || bytes[6] != b'$'
    {
        return Err(BcryptHashError::Malformed);
    }
    let cost: u32 = hash[4..6].parse().map_err(|_| BcryptHashError::Malformed)?;
    if !(4..=MAX_COST).contains(&cost) {
        return Err(BcryptHashError::Cost(cost));
    }
    if !bytes[7..]
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'.' || *b == b'/')
    {
        return Err(BcryptHashError::Malformed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_hashes_and_rejects_others() {
        let real = bcrypt::hash("x", 4).unwrap();
        assert_eq!(check_bcrypt_hash(&real), Ok(()));
        assert_eq!(
            check_bcrypt_hash("$2y$05$4Fo6EfWTzFbe6f5Vn1Ox6OhDd0.xzsOtZ9gIuyDcUGBjZ2IyfqHwW"),
            Ok(())
        );
        assert!(matches!(
            check_bcrypt_hash("$apr1$x$y"),
            Err(BcryptHashError::NotBcrypt(_))
        ));
        assert!(matches!(
            check_bcrypt_hash("secret"),
            Err(BcryptHashError::NotBcrypt(_))
        ));
        assert_eq!(
            check_bcrypt_hash("$2y$05$short"),
            Err(BcryptHashError::Malformed)
        );
        assert_eq!(
            check_bcrypt_hash("$2y$03$4Fo6EfWTzFbe6f5Vn1Ox6OhDd0.xzsOtZ9gIuyDcUGBjZ2IyfqHwW"),
            Err(BcryptHashError::Cost(3))
        );
        assert_eq!(
            check_bcrypt_hash("$2y$31$4Fo6EfWTzFbe6f5Vn1Ox6OhDd0.xzsOtZ9gIuyDcUGBjZ2IyfqHwW"),
            Err(BcryptHashError::Cost(31))
        );
        assert_eq!(
            check_bcrypt_hash("$2y$16$4Fo6EfWTzFbe6f5Vn1Ox6OhDd0.xzsOtZ9gIuyDcUGBjZ2IyfqHwW"),
            Ok(())
        );
        assert_eq!(
            check_bcrypt_hash("$2y$05$4Fo6EfWTzFbe6f5Vn1Ox6OhDd0.xzsOtZ9gIuyDcUGBjZ2IyfqH!W"),
            Err(BcryptHashError::Malformed)
        );
    }
}
