//! The login cookie: what binds a started login to the browser that started it.

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::seal::{Keys, Purpose};

/// The cookie's name for a provider (one per provider, so two logins in two tabs do not clash).
pub fn cookie_name(provider_key: &str) -> String {
    format!("registry_auth_{provider_key}")
}

/// What the sealed cookie carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginCookie {
    /// The provider's config key.
    #[serde(rename = "p")]
    pub provider: String,
    /// The OAuth `state` sent to the provider.
    #[serde(rename = "s")]
    pub state: String,
    /// The PKCE code verifier.
    #[serde(rename = "v")]
    pub verifier: String,
    /// The OIDC nonce.
    #[serde(rename = "n")]
    pub nonce: String,
    /// The redirect URI used (the token request must repeat it exactly).
    #[serde(rename = "r")]
    pub redirect_uri: String,
    /// Seconds since the Unix epoch after which the login is refused.
    #[serde(rename = "e")]
    pub expires_at: u64,
}

impl LoginCookie {
    /// The sealed cookie value.
    pub fn seal(&self, keys: &Keys) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        keys.seal(Purpose::Cookie, &self.provider, &json)
    }

    /// Opens a cookie value (any provider; the caller checks which).
    pub fn open(keys: &Keys, value: &str) -> Option<Self> {
        // The provider is bound in the sealing context; try the one the payload claims
        // after opening with each known key (a handful at most).
        for kind in super::ProviderKind::ALL {
            if let Some(plain) = keys.open(Purpose::Cookie, kind.key(), value) {
                let cookie: Self = serde_json::from_slice(&plain).ok()?;
                return (cookie.provider == kind.key()).then_some(cookie);
            }
        }
        None
    }
}

/// Constant-time string equality (for `state`).
pub fn same(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_round_trip_and_resist_tampering() {
        let keys = Keys::new(&[1u8; 40]);
        let c = LoginCookie {
            provider: "github_auth".into(),
            state: "st".into(),
            verifier: "ver".into(),
            nonce: "no".into(),
            redirect_uri: "http://x/github_auth".into(),
            expires_at: 42,
        };
        let sealed = c.seal(&keys);
        assert!(!sealed.contains("ver"));
        assert_eq!(LoginCookie::open(&keys, &sealed), Some(c));
        assert_eq!(LoginCookie::open(&Keys::new(&[2u8; 40]), &sealed), None);
        assert_eq!(LoginCookie::open(&keys, "garbage"), None);
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("", ""));
    }
}
