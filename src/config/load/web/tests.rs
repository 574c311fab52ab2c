//! Tests of the web-login, `oidc_tokens` and `store` validation.

use std::path::Path;

use crate::config::{Config, ConfigError, ConfigIssue, parse};

const TOKEN: &str =
    "token: {issuer: it, generate: true, certificate: k/t.crt, key: k/t.key}\nacl: []\n";

fn load(dir: &Path, body: &str) -> Result<Config, ConfigError> {
    parse(&format!("{TOKEN}{body}"), &dir.join("c.yml"))
}

fn issues(dir: &Path, body: &str) -> Vec<ConfigIssue> {
    match load(dir, body) {
        Ok(_) => panic!("accepted:\n{body}"),
        Err(ConfigError::Invalid { issues, .. }) => issues,
        Err(e) => panic!("{e}"),
    }
}

fn has(issues: &[ConfigIssue], path: &str, text: &str) {
    assert!(
        issues
            .iter()
            .any(|i| i.path == path && i.message.contains(text)),
        "no issue at {path} containing {text:?}: {issues:#?}"
    );
}

#[test]
fn a_full_web_configuration_loads_in_docker_auths_order() {
    let d = tempfile::tempdir().unwrap();
    let c = load(
        d.path(),
        "github_auth: {organization: acme, client_id: id, client_secret: s, \
         github_web_uri: http://127.0.0.1:1, github_api_uri: http://127.0.0.1:1/api/v3}\n\
         gitlab_auth: {client_id: id, client_secret: s, organization: acme, \
         allowed_groups: [acme/platform]}\n\
         oidc_auth: {issuer: https://login.example.com, client_id: id, client_secret: s, \
         labels_claims: [groups], redirect_url: https://auth.example.com/oidc_auth}\n\
         google_auth: {domain: acme.com, client_id: id, client_secret: s}\n\
         oidc_tokens:\n  - {issuer: https://ci.example.com, audience: registry}\n\
         store: {type: redis, url: \"redis://:pw@127.0.0.1:6379/1\"}\n",
    )
    .unwrap();
    let names: Vec<&str> = c.authn_order.iter().map(|b| b.name()).collect();
    assert_eq!(
        names,
        [
            "google_auth",
            "github_auth",
            "oidc_auth",
            "gitlab_auth",
            "oidc_tokens"
        ]
    );
    let web = c.web_logins.unwrap();
    assert_eq!(web.providers().len(), 4);
    assert_eq!(web.store_description(), "redis (127.0.0.1:6379)");
}

#[test]
fn ci_issuers_without_a_claim_pinning_the_repository_or_owner_are_warned_about() {
    let d = tempfile::tempdir().unwrap();
    let warned = |body: &str| {
        let c = load(d.path(), body).unwrap();
        c.warnings
            .iter()
            .filter(|w| w.path.ends_with(".required_claims"))
            .map(|w| (w.path.clone(), w.message.clone()))
            .collect::<Vec<_>>()
    };
    let w = warned(
        "oidc_tokens:\n  - {issuer: https://token.actions.githubusercontent.com, \
         audience: registry}\n  - {issuer: https://gitlab.com, audience: registry, \
         required_claims: {ref_protected: \"true\"}}\n  - {issuer: https://ci.example.com, \
         audience: registry, required_claims: {repository_owner: acme}}\n  - {issuer: \
         https://gitlab.example.com, audience: registry, required_claims: \
         {namespace_path: acme}}\n",
    );
    let paths: Vec<&str> = w.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "oidc_tokens[0].required_claims",
            "oidc_tokens[1].required_claims"
        ]
    );
    assert!(w[0].1.contains("any CI job"), "{}", w[0].1);
    assert!(w[0].1.contains("repository_owner"), "{}", w[0].1);
    assert!(w[1].1.contains("namespace_path"), "{}", w[1].1);
}

#[test]
fn mistakes_are_reported_with_their_paths() {
    let d = tempfile::tempdir().unwrap();
    let i = issues(
        d.path(),
        "github_auth: {client_secret: s, client_secret_file: f, organisation: acme}\n",
    );
    has(&i, "github_auth.organisation", "organization");
    let i = issues(
        d.path(),
        "github_auth: {client_secret: s, client_secret_file: f}\n",
    );
    has(&i, "github_auth.client_id", "missing");
    has(&i, "github_auth.client_secret_file", "not both");
    let i = issues(
        d.path(),
        "oidc_auth: {client_id: a, client_secret: b, redirect_url: https://x/callback}\n",
    );
    has(&i, "oidc_auth.issuer", "missing");
    has(&i, "oidc_auth.redirect_url", "/oidc_auth");
    let i = issues(
        d.path(),
        "gitlab_auth: {client_id: a, client_secret: b, grant_type: password, revalidate_after: soon}\n",
    );
    has(&i, "gitlab_auth.grant_type", "authorization_code");
    let i = issues(
        d.path(),
        "oidc_tokens: [{issuer: https://ci.example.com}]\n",
    );
    has(&i, "oidc_tokens[0].audience", "missing");
    let i = issues(d.path(), "store: {type: embedded}\n");
    has(&i, "store", "no web login");
    has(&i, "store", "type: redis");
    let i = issues(d.path(), "store: {type: redis}\n");
    has(&i, "store.url", "missing");
    let i = issues(
        d.path(),
        "github_auth: {client_id: a, client_secret: b}\nstore: {type: postgres, path: x}\n",
    );
    has(&i, "store.path", "url");
    let i = issues(
        d.path(),
        "github_auth: {client_id: a, client_secret: b, gcs_token_db: {bucket: x}}\n",
    );
    has(&i, "github_auth.gcs_token_db", "not supported");
    let i = issues(
        d.path(),
        "github_auth: {client_id: a, client_secret: b}\nserver: {session_secret_file: nope}\n",
    );
    has(&i, "server.session_secret_file", "does not exist");
    let i = issues(
        d.path(),
        "github_auth: {client_id: a, client_secret: b}\nauthn_order: [oidc_auth]\n",
    );
    has(&i, "authn_order[0]", "oidc_auth");
    has(&i, "authn_order", "github_auth");
}

#[test]
fn a_shared_store_is_accepted_without_web_logins() {
    let d = tempfile::tempdir().unwrap();
    let secret = d.path().join("session.secret");
    std::fs::write(&secret, "a shared session secret of at least 32 bytes\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    for (store, described) in [
        (
            "store: {type: redis, url: \"redis://127.0.0.1:6379/1\"}\n",
            "redis (127.0.0.1:6379)",
        ),
        (
            "store: {type: postgres, url: \"postgres://ra@127.0.0.1/ra\"}\n",
            "postgres",
        ),
    ] {
        let c = load(
            d.path(),
            &format!(
                "{store}server: {{session_secret_file: session.secret}}\n\
                 users: {{\"\": {{}}}}\n"
            ),
        )
        .unwrap();
        assert!(c.web_logins.is_none());
        let shared = c.shared_state.expect("the shared state");
        assert_eq!(shared.description(), described);
        assert!(
            !c.warnings
                .iter()
                .any(|w| w.path == "server.session_secret_file"),
            "{:#?}",
            c.warnings
        );
    }
    // Without a shared secret file, each replica would generate its own: warned.
    let c = load(
        d.path(),
        "store: {type: redis, url: \"redis://127.0.0.1\"}\nusers: {\"\": {}}\n",
    )
    .unwrap();
    assert!(c.shared_state.is_some());
    assert!(
        c.warnings
            .iter()
            .any(|w| w.path == "server.session_secret_file"
                && w.message.contains("every replica the same file")),
        "{:#?}",
        c.warnings
    );
    // The embedded store (one host) and no store share nothing.
    let c = load(
        d.path(),
        "github_auth: {client_id: a, client_secret: b}\nstore: {type: embedded}\n",
    )
    .unwrap();
    assert!(c.shared_state.is_none() && c.web_logins.is_some());
    assert!(
        load(d.path(), "users: {\"\": {}}\n")
            .unwrap()
            .shared_state
            .is_none()
    );
    // With web logins, one store serves both.
    let c = load(
        d.path(),
        "github_auth: {client_id: a, client_secret: b}\n\
         store: {type: redis, url: \"redis://127.0.0.1:6379/1\"}\n",
    )
    .unwrap();
    assert!(c.shared_state.is_some() && c.web_logins.is_some());
}

#[test]
fn redis_sentinel_and_cluster_urls_load_and_mistakes_name_store_url() {
    let d = tempfile::tempdir().unwrap();
    let web = "github_auth: {client_id: a, client_secret: b}\n";
    let c = load(
        d.path(),
        &format!(
            "{web}store: {{type: redis, url: \"redis+sentinel://:pw@127.0.0.1:26379,127.0.0.1:26380/mymaster/2?sentinel_password=sp\"}}\n"
        ),
    )
    .unwrap();
    assert_eq!(
        c.web_logins.unwrap().store_description(),
        "redis (sentinel master mymaster via 127.0.0.1:26379,127.0.0.1:26380)"
    );
    let c = load(
        d.path(),
        &format!(
            "{web}store: {{type: redis, url: \"redis+cluster://127.0.0.1:7000,127.0.0.1:7001\"}}\n"
        ),
    )
    .unwrap();
    assert!(
        c.warnings.iter().all(|w| w.path != "store.url"),
        "{:?}",
        c.warnings
    );
    let c = load(
        d.path(),
        &format!(
            "{web}store: {{type: redis, url: \"redis+cluster://127.0.0.1:7000,redis-2:7001\"}}\n"
        ),
    )
    .unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.path == "store.url" && w.message.contains("redis-2")),
        "{:?}",
        c.warnings
    );
    for (url, text) in [
        ("redis+sentinel://127.0.0.1:26379", "MASTER"),
        (
            "redis+sentinel://127.0.0.1:26379/m?password=x",
            "sentinel_password",
        ),
        ("redis+cluster://127.0.0.1:7000/2", "database 0"),
        ("redis+cluster://127.0.0.1:7000,,h:1", "empty host"),
        ("redis+ha://127.0.0.1/m", "redis+sentinel://"),
    ] {
        let i = issues(
            d.path(),
            &format!("{web}store: {{type: redis, url: \"{url}\"}}\n"),
        );
        has(&i, "store.url", text);
        assert!(i.iter().all(|x| !x.message.contains("pw")), "{i:#?}");
    }
}

#[test]
fn docker_auth_token_dbs_map_onto_the_store() {
    let d = tempfile::tempdir().unwrap();
    let c = load(
        d.path(),
        "github_auth: {client_id: a, client_secret: b, level_token_db: {path: /data/tokens, token_hash_cost: 5}}\n",
    )
    .unwrap();
    let web = c.web_logins.unwrap();
    assert!(
        web.store_description().starts_with("embedded (")
            && web.store_description().ends_with("passwords.db)"),
        "{}",
        web.store_description()
    );
    let c = load(
        d.path(),
        "github_auth: {client_id: a, client_secret: b, redis_token_db: {redis_options: \
         {addr: \"127.0.0.1:6380\", password: \"p@ss\", db: 2, dial_timeout: 5}}}\n\
         gitlab_auth: {client_id: a, client_secret: b, redis_token_db: {redis_options: \
         {addr: \"127.0.0.1:6380\", password: \"p@ss\", db: 2}}}\n",
    )
    .unwrap();
    assert_eq!(
        c.web_logins.unwrap().store_description(),
        "redis (127.0.0.1:6380)"
    );
    let i = issues(
        d.path(),
        "github_auth: {client_id: a, client_secret: b, redis_token_db: {redis_options: {addr: \"h:1\"}}}\n\
         gitlab_auth: {client_id: a, client_secret: b, level_token_db: {path: x}}\n",
    );
    assert!(i.iter().any(|x| x.message.contains("one store")), "{i:#?}");
    // go-redis cluster options become a `redis+cluster://` store.
    let c = load(
        d.path(),
        "github_auth: {client_id: a, client_secret: b, redis_token_db: {redis_cluster_options: \
         {addrs: [\"127.0.0.1:7000\", \"127.0.0.1:7001\"], password: \"p@ss\", read_only: true}}}\n",
    )
    .unwrap();
    assert_eq!(
        c.web_logins.unwrap().store_description(),
        "redis (cluster 127.0.0.1:7000,127.0.0.1:7001)"
    );
    let i = issues(
        d.path(),
        "github_auth: {client_id: a, client_secret: b, redis_token_db: {redis_cluster_options: {addrs: []}}}\n",
    );
    has(
        &i,
        "github_auth.redis_token_db.redis_cluster_options.addrs",
        "host:port",
    );
    let i = issues(
        d.path(),
        "github_auth: {client_id: a, client_secret: b, level_token_db: {path: x}}\nstore: {type: embedded}\n",
    );
    has(&i, "github_auth.level_token_db", "keep `store` and remove");
}
