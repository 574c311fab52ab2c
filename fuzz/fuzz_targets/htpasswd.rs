//! htpasswd files (`authn::htpasswd::parse`).
//!
//! Invariants: no panic; accepted entries have unique, non-empty user names without `:` and
//! bcrypt-shaped hashes; every error names a line that exists.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use registry_auth::authn::check_bcrypt_hash;
use registry_auth::authn::htpasswd::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count();
    match parse(text) {
        Ok(entries) => {
            let mut users = HashSet::new();
            for (user, hash) in &entries {
                assert!(!user.is_empty());
                assert!(!user.contains(':'), "{user:?}");
                assert!(users.insert(user.as_str()), "duplicate {user:?}");
                assert_eq!(check_bcrypt_hash(hash), Ok(()));
            }
            assert!(entries.len() <= lines);
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in &errors {
                assert!(e.line >= 1 && e.line <= lines, "line {} of {lines}", e.line);
                assert!(!e.message.is_empty());
            }
        }
    }
});
