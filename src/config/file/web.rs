//! The YAML shape of the web logins (`github_auth`, `google_auth`, `oidc_auth`, `gitlab_auth`,
//! in docker_auth's layout), the CI identities (`oidc_tokens`) and the password `store`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// `store:`: where minted web-login passwords are kept (configured once, shared by every web
/// login); a Redis or PostgreSQL store is also the replicas' shared state (refresh-token
/// revocations, lockout counters), with or without web logins.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreSpec {
    /// `embedded` (default: a SQLite file in `data_dir`, no server, one host), `redis` or
    /// `postgres` (several replicas share the passwords, refresh-token revocations and lockout
    /// counters).
    #[serde(rename = "type")]
    pub kind: Option<StoreKindSpec>,
    /// `embedded`: the database file (default `<data_dir>/passwords.db`).
    pub path: Option<PathBuf>,
    /// `redis`: one server `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`; Sentinel
    /// `redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT],…/MASTER[/DB][?replicas=N&sentinel_password=P]`
    /// (the user and password are the master's; `replicas` (default 1): each write waits for
    /// that many replicas); Cluster `redis+cluster://[[USER]:PASSWORD@]HOST[:PORT],…`. Over TLS:
    /// `rediss://`, `rediss+sentinel://` (TLS to the sentinels and the servers they name),
    /// `rediss+cluster://`.
    /// `postgres`: `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=verify-full]`.
    pub url: Option<String>,
    /// A file holding the URL instead (it may contain a password).
    pub url_file: Option<PathBuf>,
    /// `redis` over TLS (`rediss…://`): PEM file of the CA(s) the servers' certificates must
    /// chain to (default: the system's trust store).
    pub ca_certificate: Option<PathBuf>,
    /// `redis` over TLS: PEM file of a client certificate (and its intermediates) for servers
    /// that require one (`tls-auth-clients yes`); with `client_key`.
    pub client_certificate: Option<PathBuf>,
    /// `redis` over TLS: PEM file of the private key of `client_certificate`.
    pub client_key: Option<PathBuf>,
}

/// `store.type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StoreKindSpec {
    /// A SQLite file.
    Embedded,
    /// A Redis server.
    Redis,
    /// A PostgreSQL server.
    Postgres,
}

/// docker_auth's `level_token_db` (LevelDB): accepted, mapped onto the embedded store.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LevelTokenDbSpec {
    /// docker_auth's LevelDB folder (not read: people sign in again once).
    pub path: Option<PathBuf>,
    /// Ignored (minted passwords are random; their SHA-256 is stored).
    pub token_hash_cost: Option<u32>,
}

/// docker_auth's `redis_token_db`: mapped onto `store: {type: redis}`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisTokenDbSpec {
    /// go-redis options: `addr`, `password`, `db`, `username`.
    pub redis_options: Option<RedisOptionsSpec>,
    /// go-redis cluster options: `addrs`, `password`, `username` (mapped onto a
    /// `redis+cluster://` store).
    pub redis_cluster_options: Option<RedisClusterOptionsSpec>,
    /// Ignored.
    pub token_hash_cost: Option<u32>,
}

/// go-redis `Options` (the keys docker_auth users set; other go-redis options, such as
/// timeouts and pool sizes, are accepted and ignored).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
pub struct RedisOptionsSpec {
    /// `tcp` (the default; `unix` sockets are refused).
    pub network: Option<String>,
    /// `host:port`.
    pub addr: Option<String>,
    /// ACL user name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Database number.
    pub db: Option<u32>,
    /// go-redis `TLSConfig` (YAML `tlsconfig`): when set, the store connects over TLS
    /// (`rediss://`), verifying the server against the system's trust store; its fields are not
    /// read (for another CA, write a top-level `store` with `ca_certificate`).
    pub tlsconfig: Option<serde_json::Value>,
}

/// go-redis `ClusterOptions` (the keys docker_auth users set; other go-redis options are
/// accepted and ignored).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
pub struct RedisClusterOptionsSpec {
    /// `host:port` of some cluster nodes.
    pub addrs: Option<Vec<String>>,
    /// ACL user name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// go-redis `TLSConfig` (YAML `tlsconfig`): when set, the store connects over TLS
    /// (`rediss://`), verifying the server against the system's trust store; its fields are not
    /// read (for another CA, write a top-level `store` with `ca_certificate`).
    pub tlsconfig: Option<serde_json::Value>,
}

/// The keys every web login has.
#[derive(Debug, Clone, Default)]
pub struct WebCommonSpec {
    /// The OAuth client id.
    pub client_id: Option<String>,
    /// The OAuth client secret.
    pub client_secret: Option<String>,
    /// A file holding the client secret.
    pub client_secret_file: Option<PathBuf>,
    /// Request timeout.
    pub http_timeout: Option<String>,
    /// Revalidation period.
    pub revalidate_after: Option<String>,
    /// Minted password lifetime.
    pub password_lifetime: Option<String>,
    /// Shown in the login commands.
    pub registry_url: Option<String>,
    /// docker_auth's LevelDB token DB.
    pub level_token_db: Option<LevelTokenDbSpec>,
    /// docker_auth's Redis token DB.
    pub redis_token_db: Option<RedisTokenDbSpec>,
    /// docker_auth's GCS token DB.
    pub gcs_token_db: Option<serde_yaml_ng::Value>,
}

/// Defines a web-login section: the shared keys (serde's `flatten` cannot be combined with
/// `deny_unknown_fields`, so they are repeated in each) and its own.
macro_rules! web_section {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $f:ident : $t:ty,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// The OAuth client id. Required.
            pub client_id: Option<String>,
            /// The OAuth client secret (or `client_secret_file`).
            pub client_secret: Option<String>,
            /// A file holding the client secret (surrounding whitespace trimmed).
            pub client_secret_file: Option<PathBuf>,
            /// Time allowed for each request to the provider, e.g. `10s` (default).
            pub http_timeout: Option<String>,
            /// Re-check the upstream account (membership, still active) on the first use of a
            /// minted password after this long, e.g. `1h` (default).
            pub revalidate_after: Option<String>,
            /// How long a minted password is valid, e.g. `30d` (default).
            pub password_lifetime: Option<String>,
            /// The registry's address shown in the login commands, e.g. `registry.example.com`.
            pub registry_url: Option<String>,
            /// docker_auth's `level_token_db` (mapped onto the embedded `store`).
            pub level_token_db: Option<LevelTokenDbSpec>,
            /// docker_auth's `redis_token_db` (mapped onto `store: {type: redis}`).
            pub redis_token_db: Option<RedisTokenDbSpec>,
            /// docker_auth's Google Cloud Storage token DB (not supported).
            #[schemars(with = "Option<serde_json::Value>")]
            pub gcs_token_db: Option<serde_yaml_ng::Value>,
            $($(#[$fm])* pub $f: $t,)*
        }

        impl $name {
            /// The shared keys.
            pub fn common(&self) -> WebCommonSpec {
                WebCommonSpec {
                    client_id: self.client_id.clone(),
                    client_secret: self.client_secret.clone(),
                    client_secret_file: self.client_secret_file.clone(),
                    http_timeout: self.http_timeout.clone(),
                    revalidate_after: self.revalidate_after.clone(),
                    password_lifetime: self.password_lifetime.clone(),
                    registry_url: self.registry_url.clone(),
                    level_token_db: self.level_token_db.clone(),
                    redis_token_db: self.redis_token_db.clone(),
                    gcs_token_db: self.gcs_token_db.clone(),
                }
            }
        }
    };
}

web_section! {
    /// `github_auth:`: GitHub or GitHub Enterprise OAuth.
    GithubAuthSpec {
        /// Only members of this organization may log in; their teams (and parent teams) become
        /// the `teams` label.
        organization: Option<String>,
        /// The web address (default `https://github.com`; GitHub Enterprise: `https://HOST`).
        github_web_uri: Option<String>,
        /// The API address (default `https://api.github.com`; Enterprise: `https://HOST/api/v3`).
        github_api_uri: Option<String>,
        /// The callback URL registered for the OAuth app (`https://…/github_auth`); default: derived
        /// from the request.
        redirect_url: Option<String>,
    }
}

web_section! {
    /// `google_auth:`: Google accounts (standard OpenID Connect; no Google JavaScript).
    GoogleAuthSpec {
        /// Only accounts of this Google Workspace domain (the ID token's `hd` claim).
        domain: Option<String>,
        /// The callback URL registered for the client (`https://…/google_auth`); default: derived
        /// from the request.
        redirect_url: Option<String>,
        /// The issuer (default `https://accounts.google.com`; for tests).
        issuer: Option<String>,
    }
}

web_section! {
    /// `oidc_auth:`: any OpenID Connect provider.
    OidcAuthSpec {
        /// The issuer, exactly as in its tokens' `iss` (discovery at
        /// `<issuer>/.well-known/openid-configuration`). Required.
        issuer: Option<String>,
        /// The callback URL registered for the client (must end in `/oidc_auth`).
        redirect_url: Option<String>,
        /// The claim naming the registry account (default `email`).
        user_claim: Option<String>,
        /// String or string-array claims that become labels of the same name (e.g. `groups`).
        #[serde(default)]
        labels_claims: Vec<String>,
        /// Scopes to ask for (default `[openid, email]`; add `offline_access` for revalidation
        /// with a refresh token).
        scopes: Option<Vec<String>>,
    }
}

web_section! {
    /// `gitlab_auth:`: GitLab.com or a self-hosted GitLab.
    GitlabAuthSpec {
        /// The web address (default `https://gitlab.com`).
        gitlab_web_uri: Option<String>,
        /// The API address (default `<gitlab_web_uri>/api/v4`).
        gitlab_api_uri: Option<String>,
        /// docker_auth's key: `authorization_code` (the only grant a browser login uses).
        grant_type: Option<String>,
        /// The callback URL registered for the application (must end in `/gitlab_auth`).
        redirect_uri: Option<String>,
        /// docker_auth's key (never enforced there): one group users must belong to.
        organization: Option<String>,
        /// Users must belong to one of these groups (full paths) or a subgroup of them.
        #[serde(default)]
        allowed_groups: Vec<String>,
    }
}

/// One entry of `oidc_tokens:`: a trusted issuer of CI identity tokens.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcTokenSpec {
    /// The issuer, exactly as in the tokens' `iss`, e.g.
    /// `https://token.actions.githubusercontent.com` or `https://gitlab.com`. Required.
    pub issuer: Option<String>,
    /// The audience the tokens must carry (what the CI job asks for). Required.
    pub audience: Option<String>,
    /// The user name CI jobs log in with (default `oidc`); the token is the password.
    pub username: Option<String>,
    /// Claims copied into labels of the same name, e.g. `[repository, ref]` or
    /// `[project_path, ref]`.
    #[serde(default)]
    pub labels_claims: Vec<String>,
    /// Claims that must have exactly these values, e.g. `{repository_owner: acme}`.
    #[serde(default)]
    pub required_claims: BTreeMap<String, String>,
    /// The key set's URL (default: from discovery).
    pub jwks_uri: Option<String>,
    /// Time allowed for each request to the issuer, e.g. `10s` (default).
    pub http_timeout: Option<String>,
}
