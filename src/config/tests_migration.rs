//! docker_auth migration at the config layer: per-provider token DBs mapped onto the one store,
//! docker_auth features we do not implement, the list of resolved files, duplicate keys in flow
//! mappings and top-level anchor holders.

use std::fs;
use std::path::Path;

use super::*;
use crate::token::{self, KeyKind};

const TOKEN: &str = "token: {issuer: Acme, certificate: cert.pem, key: key.pem}\n";

fn dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let key = token::generate_self_signed(KeyKind::EcP256, "t", 30).unwrap();
    token::write_key_files(&key, &d.path().join("key.pem"), &d.path().join("cert.pem")).unwrap();
    d
}

fn load_in(d: &Path, yaml: &str) -> Result<Config, ConfigError> {
    let p = d.join("config.yml");
    fs::write(&p, yaml).unwrap();
    load(&p)
}

fn issues(r: Result<Config, ConfigError>) -> Vec<ConfigIssue> {
    match r {
        Err(ConfigError::Invalid { issues, .. }) => issues,
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("config unexpectedly valid"),
    }
}

fn at<'a>(list: &'a [ConfigIssue], path: &str) -> &'a ConfigIssue {
    list.iter()
        .find(|i| i.path == path)
        .unwrap_or_else(|| panic!("nothing at {path}; got {list:#?}"))
}

const GH: &str = "client_id: a, client_secret: b";

#[test]
fn level_token_db_becomes_an_embedded_file_next_to_it_with_a_warning() {
    let d = dir();
    let c = load_in(
        d.path(),
        &format!(
            "{TOKEN}users: {{\"\": {{}}}}\nacl: []\n\
             github_auth: {{{GH}, level_token_db: {{path: state/github_tokens.ldb}}}}\n\
             gitlab_auth: {{{GH}, level_token_db: {{path: state/gitlab_tokens.ldb}}}}\n"
        ),
    )
    .unwrap();
    let store = d.path().join("state").join("passwords.db");
    assert_eq!(
        c.web_logins.as_ref().unwrap().store_description(),
        format!("embedded ({})", store.display())
    );
    for section in ["github_auth", "gitlab_auth"] {
        let w = at(&c.warnings, &format!("{section}.level_token_db"));
        assert!(
            w.message.contains(&store.display().to_string())
                && w.message.contains("sign in once more")
                && w.message.contains("store: {type: embedded"),
            "{w}"
        );
    }
    // Different folders are different stores: an error that says how to merge them.
    let i = issues(load_in(
        d.path(),
        &format!(
            "{TOKEN}users: {{\"\": {{}}}}\nacl: []\n\
             github_auth: {{{GH}, level_token_db: {{path: a/tokens.ldb}}}}\n\
             gitlab_auth: {{{GH}, level_token_db: {{path: b/tokens.ldb}}}}\n"
        ),
    ));
    let e = at(&i, "gitlab_auth.level_token_db");
    assert!(
        e.message.contains("github_auth.level_token_db")
            && e.message.contains("top-level `store`")
            && e.message
                .contains(&d.path().join("a").display().to_string()),
        "{e}"
    );
}

#[test]
fn redis_token_db_becomes_the_redis_store_with_a_warning_without_the_password() {
    let d = dir();
    let c = load_in(
        d.path(),
        &format!(
            "{TOKEN}users: {{\"\": {{}}}}\nacl: []\n\
             oidc_auth: {{{GH}, issuer: \"https://idp.example\", redirect_url: \
             \"https://auth.example/oidc_auth\", redis_token_db: {{redis_options: {{addr: \
             \"127.0.0.1:6390\", password: \"s3cret-pw\", db: 3}}}}}}\n"
        ),
    )
    .unwrap();
    let w = at(&c.warnings, "oidc_auth.redis_token_db");
    assert!(
        w.message.contains("redis://:***@127.0.0.1:6390/3") && !w.message.contains("s3cret-pw"),
        "{w}"
    );
    let i = issues(load_in(
        d.path(),
        &format!(
            "{TOKEN}users: {{\"\": {{}}}}\nacl: []\n\
             github_auth: {{{GH}, redis_token_db: {{redis_options: {{network: unix, addr: \
             /run/redis.sock}}}}}}\n"
        ),
    ));
    at(&i, "github_auth.redis_token_db.redis_options.network");
    // go-redis's `tlsconfig` (docker_auth's TLS to Redis) keeps TLS: a `rediss` store.
    for (options, url) in [
        (
            "redis_options: {addr: \"cache.example:6380\", password: pw, tlsconfig: {}}",
            "rediss://:***@cache.example:6380/0",
        ),
        (
            "redis_cluster_options: {addrs: [\"n1.example:7000\"], tlsconfig: \
             {insecureskipverify: false}}",
            "rediss+cluster://n1.example:7000",
        ),
    ] {
        let c = load_in(
            d.path(),
            &format!(
                "{TOKEN}users: {{\"\": {{}}}}\nacl: []\n\
                 github_auth: {{{GH}, redis_token_db: {{{options}}}}}\n"
            ),
        )
        .unwrap();
        let w = at(&c.warnings, "github_auth.redis_token_db");
        assert!(w.message.contains(url), "{w}");
        // TLS to another host: no plaintext warning.
        assert!(
            c.warnings.iter().all(|w| !w.message.contains("plaintext")),
            "{:?}",
            c.warnings
        );
        let shown = format!("{:?}", c.web_logins.as_ref().unwrap().store());
        assert!(shown.contains(r#"ca: "system""#), "{shown}");
    }
    // Without it, to another host: plaintext, warned about (without the password).
    let c = load_in(
        d.path(),
        &format!(
            "{TOKEN}users: {{\"\": {{}}}}\nacl: []\ngithub_auth: {{{GH}, redis_token_db: \
             {{redis_options: {{addr: \"cache.example:6379\", password: s3cret-pw}}}}}}\n"
        ),
    )
    .unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.path == "github_auth.redis_token_db"
                && w.message.contains("plaintext")
                && w.message.contains("`rediss://…`")
                && !w.message.contains("s3cret-pw")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn a_token_db_next_to_an_explicit_store_says_which_to_remove() {
    let d = dir();
    let i = issues(load_in(
        d.path(),
        &format!(
            "{TOKEN}users: {{\"\": {{}}}}\nacl: []\nstore: {{type: embedded}}\n\
             google_auth: {{{GH}, level_token_db: {{path: x.ldb}}}}\n"
        ),
    ));
    let e = at(&i, "google_auth.level_token_db");
    assert!(
        e.message
            .contains("keep `store` and remove `google_auth.level_token_db`"),
        "{e}"
    );
}

#[test]
fn gcs_token_db_names_the_replacement_and_redis_cluster_maps_onto_the_store() {
    let d = dir();
    let i = issues(load_in(
        d.path(),
        &format!(
            "{TOKEN}users: {{\"\": {{}}}}\nacl: []\n\
             google_auth: {{{GH}, gcs_token_db: {{bucket: b, client_secret_file: f}}}}\n"
        ),
    ));
    let gcs = at(&i, "google_auth.gcs_token_db");
    assert!(
        gcs.message.contains("Google Cloud Storage") && gcs.message.contains("type: redis"),
        "{gcs}"
    );
    // go-redis cluster options become a `redis+cluster://` store, with the password hidden in
    // the warning.
    let c = load_in(
        d.path(),
        &format!(
            "{TOKEN}users: {{\"\": {{}}}}\nacl: []\n\
             github_auth: {{{GH}, redis_token_db: {{redis_cluster_options: \
             {{addrs: [\"127.0.0.1:7000\", \"127.0.0.1:7001\"], password: s3cret}}}}}}\n"
        ),
    )
    .unwrap();
    let w = at(&c.warnings, "github_auth.redis_token_db");
    assert!(
        w.message
            .contains("redis+cluster://:***@127.0.0.1:7000,127.0.0.1:7001")
            && !w.message.contains("s3cret"),
        "{w}"
    );
}

#[test]
fn only_unsupported_backends_give_one_problem_each_and_nothing_else() {
    let d = dir();
    let i = issues(load_in(
        d.path(),
        &format!(
            "{TOKEN}mongo_auth: {{collection: u}}\nacl_mongo: {{collection: a}}\n\
             xorm_auth: {{database_type: mysql}}\nacl_xorm: {{database_type: mysql}}\n\
             plugin_authn: {{plugin_path: a.so}}\nplugin_authz: {{plugin_path: b.so}}\n\
             server: {{letsencrypt: {{email: a@b}}, tls_curve_preferences: [P256], \
             tls_cipher_suites: [x]}}\n"
        ),
    ));
    let expect = [
        ("mongo_auth", "http_auth"),
        ("acl_mongo", "acl_sql"),
        ("xorm_auth", "sql_auth"),
        ("acl_xorm", "acl_sql"),
        ("plugin_authn", "`http_auth`"),
        ("plugin_authz", "`http_authz`"),
        ("server.letsencrypt", "cert-manager"),
        ("server.tls_curve_preferences", "rustls"),
        ("server.tls_cipher_suites", "rustls"),
    ];
    for (path, replacement) in expect {
        let e = at(&i, path);
        assert!(
            e.message.contains("docker_auth") && e.message.contains(replacement),
            "{e}"
        );
    }
    // No "no users" / "acl missing" besides: the replacements are named above.
    assert_eq!(i.len(), expect.len(), "{i:#?}");
}

#[test]
fn every_resolved_path_is_listed_absolute_with_its_key() {
    let d = dir();
    fs::write(d.path().join("htpasswd"), "").unwrap();
    let c = load_in(d.path(), &format!("{TOKEN}users_file: htpasswd\nacl: []\n")).unwrap();
    let files: Vec<(&str, &Path)> = c
        .files
        .iter()
        .map(|(k, p)| (k.as_str(), p.as_path()))
        .collect();
    assert_eq!(
        files,
        vec![
            ("token.certificate", d.path().join("cert.pem").as_path()),
            ("token.key", d.path().join("key.pem").as_path()),
            ("users_file", d.path().join("htpasswd").as_path()),
        ]
    );
}

#[test]
fn a_key_repeated_in_a_flow_mapping_names_both_lines() {
    let d = dir();
    let i = issues(load_in(
        d.path(),
        &format!(
            "{TOKEN}users: {{\"\": {{}}}}\nacl:\n  - match: {{account: a, name: \"x,y\",\n      \
             'account': b}}\n    actions: []\n"
        ),
    ));
    let e = at(&i, "acl[0].match.account");
    assert!(
        e.message.contains("lines 4 and 5") && e.message.contains("docker_auth"),
        "{e}"
    );
    let i = issues(load_in(
        d.path(),
        "server: {addr: \":5001\", addr: \":5002\"}\n",
    ));
    let e = at(&i, "server.addr");
    assert!(e.message.contains("twice on line 1"), "{e}");
}

#[test]
fn x_and_dot_top_level_keys_hold_anchors_and_are_ignored() {
    let d = dir();
    let c = load_in(
        d.path(),
        &format!(
            "x-pull: &pull {{actions: [pull]}}\n.everyone: &all {{match: {{}}}}\n{TOKEN}\
             users: {{\"\": {{}}}}\nacl:\n  - <<: [*all, *pull]\n"
        ),
    )
    .unwrap();
    assert_eq!(c.acl_entries[0].actions, vec!["pull".to_owned()]);
    // Any other unknown key is still an error.
    let i = issues(load_in(
        d.path(),
        &format!("defaults: &d {{a: 1}}\n{TOKEN}users: {{\"\": {{}}}}\nacl: []\n"),
    ));
    at(&i, "defaults");
}

#[test]
fn a_merged_mapping_that_merges_another_is_merged_all_the_way() {
    let d = dir();
    let c = load_in(
        d.path(),
        &format!(
            "x-labels: &shop {{labels: {{team: [shop]}}}}\n{TOKEN}acl: []\nusers:\n  \
             alice: &alice\n    password: {h}\n    <<: *shop\n  bob:\n    <<: *alice\n    \
             password: {h2}\n",
            h = bcrypt::hash("a", 4).unwrap(),
            h2 = bcrypt::hash("b", 4).unwrap(),
        ),
    )
    .unwrap();
    let bob = c.authn.users().lookup("bob").expect("bob");
    assert_eq!(bob.labels.get("team"), Some(&["shop".to_owned()][..]));
}

#[test]
fn tls_min_version_takes_docker_auths_spellings_and_names_why_old_ones_are_refused() {
    let d = dir();
    fs::copy(d.path().join("cert.pem"), d.path().join("srv.pem")).unwrap();
    fs::copy(d.path().join("key.pem"), d.path().join("srv.key")).unwrap();
    let with = |v: &str| {
        load_in(
            d.path(),
            &format!(
                "server: {{certificate: srv.pem, key: srv.key, tls_min_version: \"{v}\"}}\n\
                 {TOKEN}users: {{\"\": {{}}}}\nacl: []\n"
            ),
        )
    };
    for (v, only13) in [
        ("TLS12", false),
        ("771", false),
        ("TLS13", true),
        ("772", true),
    ] {
        let c = with(v).unwrap();
        assert_eq!(c.server.tls.unwrap().tls13_only, only13, "{v}");
    }
    for v in ["TLS10", "TLS11", "SSL30"] {
        let i = issues(with(v));
        let e = at(&i, "server.tls_min_version");
        assert!(e.message.contains("only TLS 1.2 and 1.3"), "{e}");
    }
}
