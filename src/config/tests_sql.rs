//! Config tests for `sql_auth`, `acl_sql` and `casbin_authz`: keys, defaults, errors by path,
//! secrets kept out of messages, and where they go in the chains.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::token::{self, KeyKind};

const TOKEN: &str = "token: {issuer: A, certificate: cert.pem, key: key.pem}\n";

const MODEL: &str = "[request_definition]\nr = account, type, name, service, ip, action, labels\n\
                     [policy_definition]\np = account, name, action\n\
                     [policy_effect]\ne = some(where (p.eft == allow))\n\
                     [matchers]\nm = r.account == p.account && keyMatch(r.name, p.name) && \
                     r.action == p.action\n";

fn dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let key = token::generate_self_signed(KeyKind::EcP256, "t", 30).unwrap();
    token::write_key_files(&key, &d.path().join("key.pem"), &d.path().join("cert.pem")).unwrap();
    fs::write(d.path().join("model.conf"), MODEL).unwrap();
    fs::write(d.path().join("policy.csv"), "p, alice, alice/*, pull\n").unwrap();
    d
}

fn load_in(dir: &Path, rest: &str) -> Result<Config, ConfigError> {
    let p = dir.join("config.yml");
    fs::write(&p, format!("{TOKEN}{rest}")).unwrap();
    load(&p)
}

fn issues(result: Result<Config, ConfigError>) -> Vec<ConfigIssue> {
    match result {
        Err(ConfigError::Invalid { issues, .. }) => issues,
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("config unexpectedly valid"),
    }
}

fn message<'a>(issues: &'a [ConfigIssue], path: &str) -> &'a str {
    &issues
        .iter()
        .find(|i| i.path == path)
        .unwrap_or_else(|| panic!("no issue at {path}; got {issues:#?}"))
        .message
}

fn authn_names(c: &Config) -> Vec<&'static str> {
    c.authn_order.iter().map(AuthnBackend::name).collect()
}

fn authz_names(c: &Config) -> Vec<&'static str> {
    c.authz_order.iter().map(AuthzBackend::name).collect()
}

#[test]
fn sql_backends_alone_need_no_users_or_acl() {
    let d = dir();
    let c = load_in(
        d.path(),
        "sql_auth: {url: \"sqlite:ra.db\"}\nacl_sql: {url: \"sqlite:ra.db\"}\n",
    )
    .unwrap();
    assert_eq!(authn_names(&c), ["sql_auth"]);
    assert_eq!(authz_names(&c), ["acl_sql"]);
    let AuthzBackend::Sql(acl) = &c.authz_order[0] else {
        panic!("acl_sql")
    };
    // docker_auth panicked without cache_ttl; ours defaults to 30 s.
    assert_eq!(acl.ttl(), Duration::from_secs(30));
    let AuthnBackend::Sql(users) = &c.authn_order[0] else {
        panic!("sql_auth")
    };
    // One database, one pool.
    assert!(Arc::ptr_eq(users.db(), acl.db()));
    // Nothing was opened at load.
    assert!(!d.path().join("ra.db").exists());
    // Casbin alone (docker_auth refused it without an `acl`).
    let c = load_in(
        d.path(),
        "users: {\"\": {}}\ncasbin_authz: {model_path: model.conf, policy_path: policy.csv}\n",
    )
    .unwrap();
    assert_eq!(authz_names(&c), ["casbin_authz"]);
    assert!(
        c.sources
            .iter()
            .any(|s| s.path == d.path().join("policy.csv")),
        "the policy file is watched"
    );
}

#[test]
fn docker_auth_order_and_explicit_orders() {
    let d = dir();
    fs::write(d.path().join("authz.sh"), "#!/bin/sh\nexit 2\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(d.path().join("authz.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    }
    let all = "users: {\"\": {}}\nsql_auth: {url: \"sqlite:u.db\"}\nacl: []\n\
               acl_sql: {url: \"sqlite:a.db\", cache_ttl: 5s}\next_authz: {command: ./authz.sh}\n\
               casbin_authz: {model_path: model.conf, policy_path: policy.csv}\n";
    let c = load_in(d.path(), all).unwrap();
    assert_eq!(authn_names(&c), ["users", "sql_auth"]);
    assert_eq!(
        authz_names(&c),
        ["acl", "acl_sql", "ext_authz", "casbin_authz"]
    );
    let c = load_in(
        d.path(),
        &format!(
            "{all}authn_order: [sql_auth, users]\nauthz_order: [acl_sql, acl, casbin_authz, \
             ext_authz]\n"
        ),
    )
    .unwrap();
    assert_eq!(authn_names(&c), ["sql_auth", "users"]);
    assert_eq!(
        authz_names(&c),
        ["acl_sql", "acl", "casbin_authz", "ext_authz"]
    );
    let i = issues(load_in(
        d.path(),
        &format!("{all}authz_order: [acl, acl_sql, ext_authz]\n"),
    ));
    assert!(message(&i, "authz_order").contains("casbin_authz"));
}

#[test]
fn connection_settings_are_checked_and_secrets_stay_out_of_messages() {
    let d = dir();
    let i = issues(load_in(
        d.path(),
        "users: {}\nacl: []\nsql_auth: {url: \"mysql://ra:hunter22@db/reg\", max_connections: 0}\n\
         acl_sql: {url: \"sqlite:a.db\", url_file: u.txt, cache_ttl: 0s, timeout: soon}\n",
    ));
    let url = message(&i, "sql_auth.url");
    assert!(url.contains("MySQL is not supported"), "{url}");
    assert!(!url.contains("hunter22"), "{url}");
    message(&i, "sql_auth.max_connections");
    assert!(message(&i, "acl_sql.url").contains("not both"));
    // Never a panic on 0: an error naming the key.
    assert!(message(&i, "acl_sql.cache_ttl").contains("positive"));
    message(&i, "acl_sql.timeout");
    let text = issues(load_in(
        d.path(),
        "users: {}\nacl: []\nsql_auth: {url: \"postgres://ra:hunter22@db:99999/reg\"}\n",
    ))
    .iter()
    .map(ToString::to_string)
    .collect::<String>();
    assert!(!text.contains("hunter22"), "{text}");
    let i = issues(load_in(
        d.path(),
        "users: {}\nacl: []\nacl_sql: {url: \"sqlite:a.db\", cache_ttl: 100ms, cache_tll: 1s}\n",
    ));
    assert!(message(&i, "acl_sql.cache_tll").contains("did you mean `cache_ttl`"));
    let i = issues(load_in(
        d.path(),
        "users: {}\nacl: []\nacl_sql: {url: \"sqlite:a.db\", cache_ttl: 100ms}\n",
    ));
    assert!(message(&i, "acl_sql.cache_ttl").contains("at least `1s`"));
    let i = issues(load_in(d.path(), "users: {}\nacl: []\nacl_sql: {}\n"));
    assert!(message(&i, "acl_sql.url").contains("url_file"));
}

#[test]
fn url_file_holds_the_url() {
    let d = dir();
    fs::write(d.path().join("db-url"), "  sqlite:from-file.db\n").unwrap();
    let c = load_in(
        d.path(),
        "users: {}\nacl: []\nsql_auth: {url_file: db-url, timeout: 2s, max_connections: 2}\n",
    )
    .unwrap();
    let AuthnBackend::Sql(users) = c.authn_order.last().unwrap() else {
        panic!("sql_auth")
    };
    assert_eq!(users.db().describe(), "sqlite:from-file.db");
    assert!(c.sources.iter().any(|s| s.path == d.path().join("db-url")));
    let i = issues(load_in(
        d.path(),
        "users: {}\nacl: []\nsql_auth: {url_file: missing}\n",
    ));
    message(&i, "sql_auth.url_file");
}

#[test]
fn casbin_errors_name_the_file_key() {
    let d = dir();
    let i = issues(load_in(
        d.path(),
        "users: {}\ncasbin_authz: {model_path: nope.conf, policy_path: policy.csv}\n",
    ));
    assert!(message(&i, "casbin_authz.model_path").contains("nope.conf"));
    fs::write(d.path().join("bad.csv"), "p, alice, \"open\n").unwrap();
    let i = issues(load_in(
        d.path(),
        "users: {}\ncasbin_authz: {model_path: model.conf, policy_path: bad.csv}\n",
    ));
    assert!(message(&i, "casbin_authz.policy_path").contains("line 1"));
    let i = issues(load_in(
        d.path(),
        "users: {}\ncasbin_authz: {model_path: model.conf}\n",
    ));
    message(&i, "casbin_authz.policy_path");
}

#[test]
fn casbin_roles_that_could_be_account_names_are_warned_about() {
    let d = dir();
    let model = MODEL
        .replace(
            "[policy_effect]",
            "[role_definition]\ng = _, _\n[policy_effect]",
        )
        .replace("r.account == p.account", "g(r.account, p.account)");
    fs::write(d.path().join("model.conf"), model).unwrap();
    fs::write(
        d.path().join("policy.csv"),
        "p, devs, team/*, push\ng, bob, devs\ng, carol, ops\n",
    )
    .unwrap();
    let casbin = "casbin_authz: {model_path: model.conf, policy_path: policy.csv}\n";
    let hash = bcrypt::hash("pw", 4).unwrap();
    let warnings = |c: &Config| -> Vec<String> {
        c.warnings
            .iter()
            .filter(|w| w.path == "casbin_authz.policy_path")
            .map(|w| w.message.clone())
            .collect()
    };
    // Static users only, none named like a role: nothing to say.
    let c = load_in(
        d.path(),
        &format!("users: {{bob: {{password: \"{hash}\"}}}}\n{casbin}"),
    )
    .unwrap();
    assert!(warnings(&c).is_empty(), "{:#?}", c.warnings);
    // A user called like a role gets it.
    let c = load_in(
        d.path(),
        &format!("users: {{devs: {{password: \"{hash}\"}}}}\n{casbin}"),
    )
    .unwrap();
    let w = warnings(&c);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].contains("\"devs\"") && w[0].contains("also a user"),
        "{w:#?}"
    );
    // A source whose account names are not in the config could produce any role name.
    let c = load_in(
        d.path(),
        &format!("users: {{}}\nsql_auth: {{url: \"sqlite:ra.db\"}}\n{casbin}"),
    )
    .unwrap();
    let w = warnings(&c);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].contains("\"devs\", \"ops\"") && w[0].contains("sql_auth"),
        "{w:#?}"
    );
}
