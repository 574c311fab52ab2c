//! A JSON Schema of the configuration file, generated from the YAML types in [`file`](super::file)
//! (their doc comments become the descriptions).
//!
//! The schema is draft-07 (what every Helm 3 release understands) and self-contained: every
//! subschema is inlined, so it can be embedded as is, which is how the Helm chart's
//! `values.schema.json` checks `config:` (a test regenerates it). Editors with a YAML language
//! server can use it too.
//!
//! It describes the shape only (keys, types, enums, required keys); what needs more than the shape
//! (patterns, paths, key files, durations) is checked by `check-config`. It never refuses a file
//! that the loader accepts: a test validates every shipped config against it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use super::file::{
    AclEntrySpec, AclSqlSpec, CasbinSpec, CredentialCacheSpec, ExtSpec, HttpHookSpec, LdapSpec,
    LockoutSpec, RobotSpec, ServerSpec, SqlAuthSpec, TokenSpec, UserSpec,
};
use super::file::{
    GithubAuthSpec, GitlabAuthSpec, GoogleAuthSpec, OidcAuthSpec, OidcTokenSpec, StoreSpec,
};

// The top level: the sections the loader knows (a test compares this list with the loader's).
/// A registry-auth configuration file (docker_auth's layout). Every key is explained in
/// examples/reference.yml; `registry-auth check-config FILE` checks what a schema cannot
/// (patterns, files, keys).
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields, title = "registry-auth configuration")]
#[allow(dead_code)] // Only its schema is used.
struct ConfigFile {
    /// Where to listen and how requests are limited.
    server: Option<ServerSpec>,
    /// How tokens are signed and for how long they live. Required.
    token: TokenSpec,
    /// Users with bcrypt hashes and labels; `""` is the anonymous user.
    users: Option<BTreeMap<String, Option<UserSpec>>>,
    /// An htpasswd file with bcrypt (`htpasswd -B`) entries.
    users_file: Option<PathBuf>,
    /// Robot accounts: long-lived credentials with explicit scopes (the ACL is not consulted).
    robots: Option<BTreeMap<String, RobotSpec>>,
    /// The ACL: the first entry whose `match` matches a requested scope decides; no match denies.
    /// Required unless another authorizer (`ext_authz`, `http_authz`, `acl_sql`,
    /// `casbin_authz`) is set (`acl: []` denies everything).
    acl: Option<Vec<AclEntrySpec>>,
    /// Remembering verified credentials so repeated logins skip bcrypt.
    credential_cache: Option<CredentialCacheSpec>,
    /// Brute-force protection per (account, client IP).
    lockout: Option<LockoutSpec>,
    /// An external program that authenticates (docker_auth's `ext_auth` contract).
    ext_auth: Option<ExtSpec>,
    /// An external program that authorizes (docker_auth's `ext_authz` contract).
    ext_authz: Option<ExtSpec>,
    /// The order the authenticators are tried in, e.g. `[users, ext_auth]` (default: that one).
    authn_order: Option<Vec<String>>,
    /// The order the authorizers are asked in, e.g. `[acl, ext_authz]` (default: that one).
    authz_order: Option<Vec<String>>,
    /// Users in an LDAP directory (docker_auth's `ldap_auth` keys).
    ldap_auth: Option<LdapSpec>,
    /// A webhook that authenticates: `{account, password, client_ip, service}` is POSTed, the
    /// answer is `{result: allow|deny|no_match, labels}`.
    http_auth: Option<HttpHookSpec>,
    /// A webhook that authorizes each scope: `{account, type, name, service, client_ip,
    /// actions, labels}` is POSTed, the answer is `{result: allow|deny|no_match, actions}`.
    http_authz: Option<HttpHookSpec>,
    /// Users in a PostgreSQL or SQLite database (`registry-auth users …` manages them).
    sql_auth: Option<SqlAuthSpec>,
    /// ACL entries in a PostgreSQL or SQLite database, in `seq` order, after the static `acl`.
    acl_sql: Option<AclSqlSpec>,
    /// A Casbin model and policy (docker_auth's request shape); always decides, so it comes
    /// last.
    casbin_authz: Option<CasbinSpec>,
    /// Sign in with Google (standard OpenID Connect) for a minted registry password.
    google_auth: Option<GoogleAuthSpec>,
    /// Sign in with GitHub (or GitHub Enterprise) for a minted registry password; the
    /// organization's teams become the `teams` label.
    github_auth: Option<GithubAuthSpec>,
    /// Sign in with any OpenID Connect provider for a minted registry password;
    /// `labels_claims` become labels.
    oidc_auth: Option<OidcAuthSpec>,
    /// Sign in with GitLab for a minted registry password; groups become the `groups` label.
    gitlab_auth: Option<GitlabAuthSpec>,
    /// CI identities: trusted issuers whose OIDC ID tokens (GitHub Actions, GitLab CI) are
    /// accepted as passwords of a fixed user name (`oidc`).
    oidc_tokens: Option<Vec<OidcTokenSpec>>,
    /// Where minted web-login passwords are kept: `embedded` (default), `redis` or `postgres`;
    /// `redis` and `postgres` also share refresh-token revocations and lockout counters between
    /// replicas.
    store: Option<StoreSpec>,
    /// Folder for generated files (the embedded store, the session secret); default `data`
    /// next to the config file.
    data_dir: Option<PathBuf>,
}

/// The JSON Schema (draft-07) of the configuration file, with every subschema inlined.
pub fn json_schema() -> Value {
    let mut settings = SchemaSettings::draft07();
    settings.inline_subschemas = true;
    let schema = settings
        .into_generator()
        .into_root_schema_for::<ConfigFile>();
    let mut value = schema.to_value();
    adjust(&mut value);
    value
}

/// What the loader does beyond the serde types: keys it requires although they are `Option`s
/// (for a message that says how to fix them), and docker_auth's `token.disable_legacy_key_id`,
/// which it translates before deserializing `token`.
fn adjust(root: &mut Value) {
    if let Some(obj) = root.as_object_mut() {
        // Anchor holders (`x-defaults: &d {…}`, `.base: &b {…}`): ignored by the loader.
        obj.insert("patternProperties".to_owned(), json!({ "^(x-|\\.).": {} }));
        // An authorizer: the ACL, or an external one.
        obj.insert(
            "anyOf".to_owned(),
            json!([
                { "required": ["acl"] },
                { "required": ["ext_authz"] },
                { "required": ["http_authz"] },
                { "required": ["acl_sql"] },
                { "required": ["casbin_authz"] }
            ]),
        );
    }
    let Some(token) = root.pointer_mut("/properties/token") else {
        return;
    };
    if let Some(props) = token.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert(
            "disable_legacy_key_id".to_owned(),
            json!({
                "description": "docker_auth's switch: `true` means `signing_header: kid-thumbprint`, \
                                `false` (its default) the libtrust `kid`. Prefer `signing_header`.",
                "type": "boolean",
            }),
        );
    }
    // `certificate`/`key` may be left out when `generate: true` or when `server` has a pair
    // (docker_auth's fallback); check-config tells which is missing.
    if let Some(obj) = token.as_object_mut() {
        obj.insert("required".to_owned(), json!(["issuer"]));
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The keys the loader accepts at the top level, from its own "unknown key" message.
    fn loader_sections() -> Vec<String> {
        let err = super::super::parse("no_such_section: 1\n", Path::new("/nonexistent/c.yml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let marker = "valid keys here are: ";
        let Some(start) = err.find(marker) else {
            panic!("no list of valid keys in the loader's message:\n{err}");
        };
        let rest = &err[start + marker.len()..];
        let list = rest.lines().next().unwrap_or_default();
        let mut keys: Vec<String> = list
            .split(", ")
            .map(|k| k.trim().trim_end_matches(['.', ';']).to_owned())
            .collect();
        keys.sort();
        keys
    }

    #[test]
    fn top_level_sections_match_the_loader() {
        let schema = json_schema();
        let mut props: Vec<String> = schema["properties"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        props.sort();
        assert_eq!(
            props,
            loader_sections(),
            "the schema's top-level sections (struct ConfigFile in src/config/schema.rs) differ \
             from the loader's KNOWN_SECTIONS (src/config/load.rs): add the new section there"
        );
        assert_eq!(schema["additionalProperties"], json!(false));
        assert_eq!(schema["required"], json!(["token"]));
        assert_eq!(
            schema["anyOf"],
            json!([
                { "required": ["acl"] },
                { "required": ["ext_authz"] },
                { "required": ["http_authz"] },
                { "required": ["acl_sql"] },
                { "required": ["casbin_authz"] }
            ])
        );
    }

    #[test]
    fn schema_is_draft_07_and_self_contained() {
        let schema = json_schema();
        assert_eq!(
            schema["$schema"],
            json!("http://json-schema.org/draft-07/schema#")
        );
        let text = schema.to_string();
        assert!(!text.contains("\"$ref\""), "a $ref is left: {text}");
        assert!(!text.contains("\"$defs\"") && !text.contains("\"definitions\""));
    }

    /// The subschema at a path of property names (`[]` for array items), looking into the
    /// first `anyOf` branch where a nullable value put it.
    fn at<'a>(schema: &'a Value, path: &[&str]) -> &'a Value {
        let mut node = schema;
        for key in path {
            if node.get("properties").is_none()
                && node.get("items").is_none()
                && node.get("additionalProperties").is_none()
                && let Some(first) = node.get("anyOf").and_then(|a| a.get(0))
            {
                node = first;
            }
            node = match *key {
                "[]" => &node["items"],
                "{}" => &node["additionalProperties"],
                k => &node["properties"][k],
            };
            assert!(!node.is_null(), "no {path:?} in the schema");
        }
        node
    }

    #[test]
    fn schema_mirrors_the_serde_types() {
        let s = json_schema();
        // deny_unknown_fields everywhere.
        for path in [
            &["server"][..],
            &["server", "limits"],
            &["token"],
            &["token", "refresh"],
            &["users", "{}"],
            &["robots", "{}"],
            &["acl", "[]"],
            &["acl", "[]", "match"],
            &["credential_cache"],
            &["lockout"],
            &["ldap_auth"],
            &["ldap_auth", "labels", "{}"],
            &["http_auth"],
            &["http_authz"],
            &["sql_auth"],
            &["acl_sql"],
            &["casbin_authz"],
        ] {
            assert_eq!(
                at(&s, path)["additionalProperties"],
                json!(false),
                "{path:?}"
            );
        }
        // serde renames.
        let m = at(&s, &["acl", "[]", "match"]);
        assert!(m["properties"].get("type").is_some(), "{m}");
        assert!(m["properties"].get("kind").is_none(), "{m}");
        let header = at(&s, &["token", "signing_header"]).to_string();
        for v in ["kid-libtrust", "x5c", "kid-thumbprint"] {
            assert!(header.contains(&format!("\"{v}\"")), "{v} in {header}");
        }
        // docker_auth's `tls: ""` (plain LDAP) is accepted like `none`.
        let tls = at(&s, &["ldap_auth", "tls"]).to_string();
        for v in ["none", "always", "starttls", ""] {
            assert!(tls.contains(&format!("\"{v}\"")), "{v:?} in {tls}");
        }
        // Labels: a map of lists of strings.
        let labels = at(&s, &["users", "{}", "labels", "{}"]);
        assert!(labels.to_string().contains("\"array\""), "{labels}");
        // docker_auth's flag and the keys the loader requires.
        at(&s, &["token", "disable_legacy_key_id"]);
        // certificate/key may come from `server` (docker_auth's fallback) or `generate`.
        assert_eq!(at(&s, &["token"])["required"], json!(["issuer"]));
        // Anchor holders at the top level.
        assert_eq!(s["patternProperties"], json!({ "^(x-|\\.).": {} }));
        // Doc comments become descriptions.
        let addr = at(&s, &["server", "addr"])["description"]
            .as_str()
            .unwrap_or_default();
        assert!(addr.contains("host:port"), "{addr}");
    }
}
