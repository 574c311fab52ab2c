use std::fs;
use std::path::{Path, PathBuf};

use super::*;
use crate::token::{self, KeyKind};

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn with_keys(self) -> Self {
        let key = token::generate_self_signed(KeyKind::EcP256, "t", 30).unwrap();
        token::write_key_files(
            &key,
            &self.path().join("key.pem"),
            &self.path().join("cert.pem"),
        )
        .unwrap();
        self
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        fs::write(&p, text).unwrap();
        p
    }

    fn load(&self, yaml: &str) -> Result<Config, ConfigError> {
        let p = self.write("config.yml", yaml);
        load(&p)
    }
}

const TOKEN: &str =
    "token: {issuer: Acme, certificate: cert.pem, key: key.pem, signing_header: kid-libtrust}\n";

fn hash() -> String {
    bcrypt::hash("pw", 4).unwrap()
}

fn issues(result: Result<Config, ConfigError>) -> Vec<ConfigIssue> {
    match result {
        Err(ConfigError::Invalid { issues, .. }) => issues,
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("config unexpectedly valid"),
    }
}

fn find<'a>(issues: &'a [ConfigIssue], path: &str) -> &'a ConfigIssue {
    issues
        .iter()
        .find(|i| i.path == path)
        .unwrap_or_else(|| panic!("no issue at {path}; got {issues:#?}"))
}

#[test]
fn minimal_config_loads_with_defaults() {
    let d = Dir::new().with_keys();
    let c = d
        .load(&format!(
            "{TOKEN}users: {{\"\": {{}}}}\nacl: [{{match: {{}}, actions: [pull]}}]\n"
        ))
        .unwrap();
    assert_eq!(c.server.addr, DEFAULT_ADDR);
    assert_eq!(c.server.path_prefix, "");
    assert_eq!(c.token.lifetime.as_secs(), DEFAULT_EXPIRATION_SECS);
    assert_eq!(c.token.header_mode, crate::token::HeaderMode::KidLibtrust);
    // Relative paths resolve against the config file's folder.
    assert_eq!(c.token.certificate, d.path().join("cert.pem"));
    assert!(c.token.signing_key.is_some());
    assert!(c.authn.users().allows_anonymous());
    assert_eq!(c.acl.len(), 1);
}

#[test]
fn typo_in_acl_match_key_names_path_and_fix() {
    let d = Dir::new().with_keys();
    let i = issues(d.load(&format!(
        "{TOKEN}users: {{\"\": {{}}}}\nacl:\n  - match: {{account: admin}}\n    actions: [\"*\"]\n  - match: {{acount: admin}}\n    actions: [\"*\"]\n"
    )));
    let issue = find(&i, "acl[1].match.acount");
    assert!(
        issue.message.contains("did you mean `account`"),
        "{}",
        issue.message
    );
    assert!(issue.message.contains("valid keys"), "{}", issue.message);
}

#[test]
fn every_problem_is_reported_at_once() {
    let d = Dir::new().with_keys();
    let i = issues(d.load(&format!(
        "server: {{adr: x}}\n{TOKEN}users:\n  bob: {{labels: {{a: [b]}}}}\nacl:\n  - match: {{name: \"/[/\"}}\n    actions: []\n  - match: {{ip: 10.0.0.0/33}}\n    actions: []\n  - match: {{}}\n"
    )));
    find(&i, "server.adr");
    find(&i, "users.bob.password");
    let missing = find(&i, "acl[2].actions");
    assert!(
        missing.message.contains("actions: []"),
        "{}",
        missing.message
    );
    assert!(i.len() >= 3, "{i:#?}");
}

#[test]
fn bad_regex_and_bad_cidr_name_their_field() {
    let d = Dir::new().with_keys();
    let i = issues(d.load(&format!(
        "{TOKEN}users: {{\"\": {{}}}}\nacl:\n  - match: {{name: \"/[/\"}}\n    actions: []\n  - match: {{ip: 10.0.0.0/33}}\n    actions: []\n  - match: {{ip: not-an-ip}}\n    actions: []\n"
    )));
    find(&i, "acl[0].match.name");
    find(&i, "acl[1].match.ip");
    find(&i, "acl[2].match.ip");
}

#[test]
fn user_without_password_is_an_error() {
    let d = Dir::new().with_keys();
    let i = issues(d.load(&format!("{TOKEN}users:\n  alice: {{}}\n  bob:\nacl: []\n")));
    let a = find(&i, "users.alice.password");
    assert!(a.message.contains("hash-password"), "{}", a.message);
    find(&i, "users.bob.password");
}

#[test]
fn anonymous_entry_with_password_and_bad_hash_are_errors() {
    let d = Dir::new().with_keys();
    let i = issues(d.load(&format!(
        "{TOKEN}users:\n  \"\": {{password: \"{}\"}}\n  carol: {{password: plaintext}}\nacl: []\n",
        hash()
    )));
    find(&i, "users.\"\".password");
    let c = find(&i, "users.carol.password");
    assert!(c.message.contains("bcrypt"), "{}", c.message);
}

#[test]
fn short_expiration_is_an_error() {
    let d = Dir::new().with_keys();
    let i = issues(d.load(
        "token: {issuer: A, certificate: cert.pem, key: key.pem, expiration: 30}\nusers: {\"\": {}}\nacl: []\n",
    ));
    let e = find(&i, "token.expiration");
    assert!(e.message.contains("60"), "{}", e.message);
}

#[test]
fn missing_key_files_name_the_path_and_the_fix() {
    let d = Dir::new();
    let i = issues(d.load(&format!("{TOKEN}users: {{\"\": {{}}}}\nacl: []\n")));
    let k = find(&i, "token.key");
    assert!(
        k.message.contains("key.pem") && k.message.contains("gen-keys"),
        "{}",
        k.message
    );
    find(&i, "token.certificate");
}

#[test]
fn generate_allows_missing_files_but_not_half_of_them() {
    let d = Dir::new();
    let yaml = "token: {issuer: A, certificate: cert.pem, key: key.pem, generate: true}\nusers: {\"\": {}}\nacl: []\n";
    let c = d.load(yaml).unwrap();
    assert!(c.token.generate && c.token.signing_key.is_none());
    d.write("key.pem", "stale");
    let i = issues(d.load(yaml));
    let e = find(&i, "token.certificate");
    assert!(e.message.contains("key.pem"), "{}", e.message);
}

#[test]
fn key_not_matching_certificate_is_reported() {
    let d = Dir::new().with_keys();
    let other = token::generate_self_signed(KeyKind::EcP256, "other", 30).unwrap();
    fs::write(d.path().join("key.pem"), other.key_pem).unwrap();
    let i = issues(d.load(&format!("{TOKEN}users: {{\"\": {{}}}}\nacl: []\n")));
    find(&i, "token.key");
}

#[test]
fn unsupported_docker_auth_sections_say_what_to_use() {
    let d = Dir::new().with_keys();
    let i = issues(d.load(&format!(
        "server: {{addr: \":5001\", letsencrypt: {{email: a}}, tls_cipher_suites: [x]}}\n{TOKEN}users: {{\"\": {{}}}}\nacl: []\nmongo_auth: {{collection: x}}\nxorm_auth: {{database_type: postgres}}\nacl_xorm: {{conn_string: x}}\n"
    )));
    assert!(find(&i, "mongo_auth").message.contains("users_file"));
    assert!(find(&i, "xorm_auth").message.contains("sql_auth: {url: …}"));
    assert!(find(&i, "acl_xorm").message.contains("acl_sql: {url: …"));
    assert!(find(&i, "server.letsencrypt").message.contains("ingress"));
    find(&i, "server.tls_cipher_suites");
}

#[test]
fn unknown_top_level_key_suggests_the_right_one() {
    let d = Dir::new().with_keys();
    let i = issues(d.load(&format!("{TOKEN}users: {{\"\": {{}}}}\nacls: []\n")));
    assert!(find(&i, "acls").message.contains("did you mean `acl`"));
    find(&i, "acl");
}

#[test]
fn enum_values_and_types_are_checked() {
    let d = Dir::new().with_keys();
    let i = issues(d.load(
        "token: {issuer: A, certificate: cert.pem, key: key.pem, signing_header: x5cc, expiration: soon}\nusers: {\"\": {}}\nacl: []\n",
    ));
    let t = &i[0];
    assert!(t.path.starts_with("token."), "{i:#?}");
}

#[test]
fn signing_header_value_suggestion() {
    let d = Dir::new().with_keys();
    let i = issues(d.load(
        "token: {issuer: A, certificate: cert.pem, key: key.pem, signing_header: x5cc}\nusers: {\"\": {}}\nacl: []\n",
    ));
    let t = find(&i, "token.signing_header");
    assert!(t.message.contains("did you mean `x5c`"), "{}", t.message);
}

#[test]
fn listen_address_forms() {
    let d = Dir::new().with_keys();
    for (given, expected) in [
        (":5001", "0.0.0.0:5001"),
        ("127.0.0.1:5001", "127.0.0.1:5001"),
        ("[::]:5001", "[::]:5001"),
        ("localhost:5001", "localhost:5001"),
    ] {
        let c = d
            .load(&format!(
                "server: {{addr: \"{given}\"}}\n{TOKEN}users: {{\"\": {{}}}}\nacl: []\n"
            ))
            .unwrap();
        assert_eq!(c.server.addr, expected);
    }
    let i = issues(d.load(&format!(
        "server: {{addr: nope}}\n{TOKEN}users: {{\"\": {{}}}}\nacl: []\n"
    )));
    find(&i, "server.addr");
    let i = issues(d.load(&format!(
        "server: {{path_prefix: \"no-slash\"}}\n{TOKEN}users: {{\"\": {{}}}}\nacl: []\n"
    )));
    find(&i, "server.path_prefix");
}

#[test]
fn users_file_is_loaded_relative_to_the_config() {
    let d = Dir::new().with_keys();
    d.write("users.htpasswd", &format!("# team\nalice:{}\n", hash()));
    let c = d
        .load(&format!("{TOKEN}users_file: users.htpasswd\nacl: []\n"))
        .unwrap();
    assert_eq!(c.authn.users().len(), 1);
    assert!(!c.authn.users().allows_anonymous());
}

#[test]
fn users_file_errors_name_the_line() {
    let d = Dir::new().with_keys();
    d.write(
        "users.htpasswd",
        &format!("alice:{}\nbob:$apr1$x$y\n", hash()),
    );
    let i = issues(d.load(&format!("{TOKEN}users_file: users.htpasswd\nacl: []\n")));
    let e = find(&i, "users_file");
    assert!(
        e.message.contains("line 2") && e.message.contains("htpasswd -B"),
        "{}",
        e.message
    );
    let i = issues(d.load(&format!("{TOKEN}users_file: missing.htpasswd\nacl: []\n")));
    assert!(find(&i, "users_file").message.contains("missing.htpasswd"));
}

#[test]
fn user_in_both_users_and_users_file_is_an_error() {
    let d = Dir::new().with_keys();
    d.write("u", &format!("alice:{}\n", hash()));
    let i = issues(d.load(&format!(
        "{TOKEN}users: {{alice: {{password: \"{}\"}}}}\nusers_file: u\nacl: []\n",
        hash()
    )));
    assert!(find(&i, "users_file").message.contains("both"));
}

#[test]
fn missing_sections_are_explained() {
    let d = Dir::new();
    let i = issues(d.load("server: {}\n"));
    find(&i, "token");
    find(&i, "users");
    find(&i, "acl");
    let i = issues(d.load(""));
    assert!(i[0].message.contains("empty"));
    let i = issues(d.load("acl: [\n"));
    assert!(i[0].message.contains("YAML"), "{}", i[0].message);
}

#[test]
fn shadowed_entries_are_warnings() {
    let d = Dir::new().with_keys();
    let c = d
        .load(&format!(
            "{TOKEN}users: {{\"\": {{}}}}\nacl:\n  - match: {{account: admin}}\n    actions: [\"*\"]\n  - match: {{account: admin, name: x}}\n    actions: [pull]\n"
        ))
        .unwrap();
    assert_eq!(c.warnings.len(), 1, "{:#?}", c.warnings);
    assert_eq!(c.warnings[0].path, "acl[1]");
    assert!(c.warnings[0].message.contains("acl[0]"));
}

#[cfg(unix)]
#[test]
fn secret_files_readable_by_others_are_warnings() {
    use std::os::unix::fs::PermissionsExt;
    let d = Dir::new().with_keys();
    let secret = d.write("client.secret", "s3cret\n");
    let yaml = format!(
        "{TOKEN}github_auth: {{organization: acme, client_id: c, client_secret_file: client.secret}}\n\
         acl: []\n"
    );
    let chmod = |name: &str, mode: u32| {
        fs::set_permissions(d.path().join(name), fs::Permissions::from_mode(mode)).unwrap();
    };
    chmod("client.secret", 0o600);
    chmod("key.pem", 0o600);
    let c = d.load(&yaml).unwrap();
    assert!(c.warnings.is_empty(), "{:#?}", c.warnings);
    // Readable by others: a warning each (the server still starts).
    chmod("client.secret", 0o644);
    chmod("key.pem", 0o640);
    let c = d.load(&yaml).unwrap();
    let paths: Vec<&str> = c.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        paths,
        ["token.key", "github_auth.client_secret_file"],
        "{:#?}",
        c.warnings
    );
    assert!(
        c.warnings[1].message.contains("0644"),
        "{}",
        c.warnings[1].message
    );
    assert!(
        c.warnings[1]
            .message
            .contains(&secret.display().to_string()),
        "{}",
        c.warnings[1].message
    );
}

#[test]
fn error_display_lists_every_issue_with_its_path() {
    let d = Dir::new().with_keys();
    let err = d
        .load(&format!(
            "{TOKEN}users: {{bob: {{}}}}\nacl: [{{match: {{acount: a}}, actions: []}}]\n"
        ))
        .unwrap_err()
        .to_string();
    assert!(err.contains("2 problems"), "{err}");
    assert!(err.contains("users.bob.password"), "{err}");
    assert!(err.contains("acl[0].match.acount"), "{err}");
}

#[test]
fn describe_acl_entry_renders_all_fields() {
    let d = Dir::new().with_keys();
    let c = d
        .load(&format!(
            "{TOKEN}users: {{\"\": {{}}}}\nacl:\n  - match: {{account: alice, name: \"alice/*\", labels: {{team: dev}}}}\n    actions: [pull, push]\n    comment: own namespace\n"
        ))
        .unwrap();
    assert_eq!(
        describe_acl_entry(&c.acl_entries[0]),
        "match {account: \"alice\", name: \"alice/*\", labels: {team: \"dev\"}} actions [pull, push] # own namespace"
    );
}

/// Every example config shipped with the project must load. They all use `generate: true`, so
/// they are copied to a temp dir to keep generated keys out of the source tree.
#[test]
fn every_shipped_example_config_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("config.example.yaml")];
    for entry in fs::read_dir(root.join("examples")).unwrap() {
        let p = entry.unwrap().path();
        if matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")) {
            files.push(p);
        }
    }
    // Fixtures named `bad-*` are deliberately invalid (the CLI tests use them).
    for fixture in fs::read_dir(root.join("tests/fixtures")).unwrap() {
        let p = fixture.unwrap().path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.starts_with("bad-")
            && matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml"))
        {
            files.push(p);
        }
    }
    assert!(files.len() >= 3, "{files:?}");
    for file in files {
        let d = Dir::new();
        let text = fs::read_to_string(&file).unwrap();
        let copy = d.write("config.yml", &text);
        match load(&copy) {
            Ok(c) => assert!(
                c.warnings.is_empty(),
                "{}: unexpected warnings {:#?}",
                file.display(),
                c.warnings
            ),
            Err(e) => panic!("{}: {e}", file.display()),
        }
    }
}

#[test]
fn robots_are_validated_with_paths() {
    let d = Dir::new().with_keys();
    let h = hash();
    let i = issues(d.load(&format!(
        "{TOKEN}users: {{\"\": {{}}}}\nacl: []\nrobots:\n  ci:\n    scopes: [\"repository:ci/**:pull\"]\n  deploy:\n    secret: \"{h}\"\n    expires: tomorrow\n    scopes: [\"repository\", \"repository:ok/*:pull\"]\n  Bad:\n    secret: \"{h}\"\n    scopes: [\"repository:x:pull\"]\n  empty:\n    secret: \"{h}\"\n"
    )));
    assert!(
        find(&i, "robots.ci.secret")
            .message
            .contains("robot create")
    );
    assert!(
        find(&i, "robots.deploy.expires")
            .message
            .contains("RFC 3339")
    );
    find(&i, "robots.deploy.scopes[0]");
    find(&i, "robots.Bad");
    find(&i, "robots.empty.scopes");
    let c = d
        .load(&format!(
            "{TOKEN}acl: []\nrobots:\n  ci:\n    secret: \"{h}\"\n    expires: \"2030-01-01T00:00:00+02:00\"\n    scopes: [\"repository:ci/**:pull,push\"]\n"
        ))
        .unwrap();
    assert_eq!(c.authn.robots().len(), 1);
    assert!(c.robot_scopes.contains_key("ci"));
}

#[test]
fn refresh_settings_are_validated() {
    let d = Dir::new().with_keys();
    let base = "token:\n  issuer: A\n  certificate: cert.pem\n  key: key.pem\n  refresh:\n";
    let tail = "users: {\"\": {}}\nacl: []\n";
    let i = issues(d.load(&format!("{base}    enabled: true\n{tail}")));
    assert!(
        find(&i, "token.refresh.secret_file")
            .message
            .contains("urandom")
    );
    d.write("short.secret", "tiny");
    let i = issues(d.load(&format!(
        "{base}    enabled: true\n    secret_file: short.secret\n    lifetime: forever\n    previous_secret_files: [missing.secret]\n{tail}"
    )));
    find(&i, "token.refresh.secret_file");
    find(&i, "token.refresh.lifetime");
    find(&i, "token.refresh.previous_secret_files[0]");
    d.write("good.secret", &"k".repeat(40));
    let c = d
        .load(&format!(
            "{base}    enabled: true\n    secret_file: good.secret\n    lifetime: 30d\n{tail}"
        ))
        .unwrap();
    assert_eq!(
        c.token.refresh.unwrap().codec.lifetime(),
        std::time::Duration::from_secs(30 * 86400)
    );
    // Disabled: the rest is not required.
    let c = d
        .load(&format!("{base}    enabled: false\n{tail}"))
        .unwrap();
    assert!(c.token.refresh.is_none());
}

#[test]
fn limits_have_defaults_and_are_validated() {
    let d = Dir::new().with_keys();
    let tail = format!("{TOKEN}users: {{\"\": {{}}}}\nacl: []\n");
    let c = d.load(&tail).unwrap();
    assert_eq!(c.server.limits, Limits::default());
    let c = d
        .load(&format!(
            "server:\n  limits: {{max_header_bytes: 32768, header_read_timeout: 2s}}\n{tail}"
        ))
        .unwrap();
    assert_eq!(c.server.limits.max_header_bytes, 32768);
    assert_eq!(
        c.server.limits.header_read_timeout,
        std::time::Duration::from_secs(2)
    );
    let i = issues(d.load(&format!(
        "server:\n  limits: {{max_header_bytes: 100, max_body_bytes: 0, request_timeout: never, header_read_timeout: 0s}}\n{tail}"
    )));
    find(&i, "server.limits.max_header_bytes");
    find(&i, "server.limits.max_body_bytes");
    find(&i, "server.limits.request_timeout");
    find(&i, "server.limits.header_read_timeout");
    let i = issues(d.load(&format!("server:\n  limits: {{max_headers: 1}}\n{tail}")));
    assert!(
        find(&i, "server.limits.max_headers")
            .message
            .contains("max_header_bytes")
    );
}

#[test]
fn credential_cache_settings() {
    let d = Dir::new().with_keys();
    let tail = format!("{TOKEN}users: {{\"\": {{}}}}\nacl: []\n");
    let c = d.load(&tail).unwrap();
    assert_eq!(c.credential_cache.ttl, DEFAULT_CACHE_TTL);
    assert!(c.credential_cache.bcrypt_workers >= 1);
    let c = d
        .load(&format!(
            "server: {{bcrypt_workers: 3}}\ncredential_cache: {{ttl: 0s}}\n{tail}"
        ))
        .unwrap();
    assert!(c.credential_cache.ttl.is_zero());
    assert_eq!(c.credential_cache.bcrypt_workers, 3);
    let i = issues(d.load(&format!(
        "server: {{bcrypt_workers: 0}}\ncredential_cache: {{ttl: soon, max_entries: 0}}\n{tail}"
    )));
    find(&i, "server.bcrypt_workers");
    find(&i, "credential_cache.ttl");
    find(&i, "credential_cache.max_entries");
}

#[test]
fn tls_unix_and_proxy_settings() {
    let d = Dir::new().with_keys();
    let tail = format!("{TOKEN}users: {{\"\": {{}}}}\nacl: []\n");
    // The token key pair doubles as a TLS pair here.
    let c = d
        .load(&format!(
            "server: {{certificate: cert.pem, key: key.pem, tls_min_version: TLS13, hsts: true}}\n{tail}"
        ))
        .unwrap();
    let tls = c.server.tls.unwrap();
    assert!(tls.tls13_only && tls.hsts);
    let i = issues(d.load(&format!("server: {{certificate: cert.pem}}\n{tail}")));
    find(&i, "server.key");
    let i = issues(d.load(&format!("server: {{hsts: true}}\n{tail}")));
    find(&i, "server.hsts");
    let i = issues(d.load(&format!(
        "server: {{certificate: cert.pem, key: key.pem, tls_min_version: \"1.1\"}}\n{tail}"
    )));
    find(&i, "server.tls_min_version");
    let c = d
        .load(&format!("server: {{net: unix, addr: auth.sock}}\n{tail}"))
        .unwrap();
    assert!(c.server.unix);
    assert_eq!(
        c.server.addr,
        d.path().join("auth.sock").display().to_string()
    );
    let i = issues(d.load(&format!("server: {{net: unix}}\n{tail}")));
    find(&i, "server.addr");
    let c = d
        .load(&format!(
            "server: {{trusted_proxies: [10.0.0.0/8, 192.0.2.1], metrics_addr: \":9090\"}}\n{tail}"
        ))
        .unwrap();
    assert_eq!(c.server.client_ip.trusted_proxies.len(), 2);
    assert_eq!(c.server.metrics_addr.as_deref(), Some("0.0.0.0:9090"));
    let i = issues(d.load(&format!(
        "server: {{trusted_proxies: [not-a-net], real_ip_header: \"X Custom\", real_ip_pos: 1}}\n{tail}"
    )));
    find(&i, "server.trusted_proxies[0]");
    find(&i, "server.real_ip_header");
    find(&i, "server.real_ip_pos");
    // Any header name, as in docker_auth (CDNs write their own).
    let c = d
        .load(&format!(
            "server: {{trusted_proxies: [10.0.0.0/8], real_ip_header: CF-Connecting-IP}}\n{tail}"
        ))
        .unwrap();
    assert_eq!(
        c.server.client_ip.header.as_deref(),
        Some("cf-connecting-ip")
    );
    // docker_auth's keys without trusted_proxies: every peer is believed, as docker_auth did.
    let c = d
        .load(&format!(
            "server: {{real_ip_header: X-Forwarded-For, real_ip_pos: -1}}\n{tail}"
        ))
        .unwrap();
    assert_eq!(c.server.client_ip.trusted_proxies.len(), 2);
    assert_eq!(c.server.client_ip.position, Some(-1));
    // real_ip_pos: 0 (docker_auth's default) is the same as leaving it out.
    for extra in ["", ", real_ip_pos: 0"] {
        for base in ["", "trusted_proxies: [10.0.0.0/8], "] {
            let with = d
                .load(&format!(
                    "server: {{{base}real_ip_header: Forwarded{extra}}}\n{tail}"
                ))
                .unwrap();
            let without = d
                .load(&format!(
                    "server: {{{base}real_ip_header: Forwarded}}\n{tail}"
                ))
                .unwrap();
            assert_eq!(
                with.server.client_ip, without.server.client_ip,
                "{base}{extra}"
            );
            assert_eq!(with.server.client_ip.position, None);
        }
    }
    let c = d
        .load(&format!("server: {{real_ip_pos: 0}}\n{tail}"))
        .unwrap();
    assert_eq!(
        c.server.client_ip,
        crate::config::ClientIpSettings::default()
    );
}

#[test]
fn lockout_settings() {
    let d = Dir::new().with_keys();
    let tail = format!("{TOKEN}users: {{\"\": {{}}}}\nacl: []\n");
    let c = d.load(&tail).unwrap();
    assert_eq!(c.lockout, LockoutSettings::default());
    let c = d
        .load(&format!("lockout: {{enabled: false}}\n{tail}"))
        .unwrap();
    assert!(!c.lockout.enabled);
    let i = issues(d.load(&format!(
        "lockout: {{max_failures: 0, window: x, cooldown: 0s}}\n{tail}"
    )));
    find(&i, "lockout.max_failures");
    find(&i, "lockout.window");
    find(&i, "lockout.cooldown");
}

fn exec_script(d: &Dir, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = d.write(name, &format!("#!/bin/sh\n{body}\n"));
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn ext_programs_and_backend_orders() {
    let d = Dir::new().with_keys();
    exec_script(&d, "auth.sh", "exit 2");
    exec_script(&d, "authz.sh", "exit 0");
    d.write("not-exec.sh", "#!/bin/sh\n");
    // ext_auth alone is enough (no users), ext_authz alone is enough (no acl).
    let c = d
        .load(&format!(
            "{TOKEN}ext_auth: {{command: ./auth.sh, timeout: 2s, max_concurrent: 4}}\next_authz: {{command: ./authz.sh}}\n"
        ))
        .unwrap();
    let names: Vec<&str> = c.authn_order.iter().map(AuthnBackend::name).collect();
    assert_eq!(names, ["ext_auth"]);
    let names: Vec<&str> = c.authz_order.iter().map(AuthzBackend::name).collect();
    assert_eq!(names, ["ext_authz"]);
    // Default order is docker_auth's; an explicit order is honoured.
    let both = format!(
        "{TOKEN}users: {{\"\": {{}}}}\nacl: []\next_auth: {{command: ./auth.sh}}\next_authz: {{command: ./authz.sh}}\n"
    );
    let c = d.load(&both).unwrap();
    let names: Vec<&str> = c.authn_order.iter().map(AuthnBackend::name).collect();
    assert_eq!(names, ["users", "ext_auth"]);
    let c = d
        .load(&format!(
            "{both}authn_order: [ext_auth, users]\nauthz_order: [ext_authz, acl]\n"
        ))
        .unwrap();
    let names: Vec<&str> = c.authn_order.iter().map(AuthnBackend::name).collect();
    assert_eq!(names, ["ext_auth", "users"]);
    let names: Vec<&str> = c.authz_order.iter().map(AuthzBackend::name).collect();
    assert_eq!(names, ["ext_authz", "acl"]);
    // Problems name their path.
    let i = issues(d.load(&format!(
        "{TOKEN}users: {{\"\": {{}}}}\nacl: []\next_auth: {{command: ./missing.sh}}\next_authz: {{command: ./not-exec.sh, max_concurrent: 0}}\n"
    )));
    assert!(find(&i, "ext_auth.command").message.contains("not found"));
    assert!(find(&i, "ext_authz.command").message.contains("chmod"));
    let i = issues(d.load(&format!(
        "{both}authn_order: [users]\nauthz_order: [acl, ext_authz, ldap]\n"
    )));
    assert!(find(&i, "authn_order").message.contains("ext_auth"));
    assert!(
        find(&i, "authz_order[2]")
            .message
            .contains("unknown backend")
    );
    let i = issues(d.load(&format!("{both}authz_order: [acl, acl, ext_authz]\n")));
    find(&i, "authz_order[1]");
    let i = issues(d.load(&format!(
        "{TOKEN}users: {{\"\": {{}}}}\nacl: []\next_auth: {{command: sh, timeout: never}}\n"
    )));
    find(&i, "ext_auth.timeout");
}

#[test]
fn mixed_bcrypt_costs_among_users_users_file_and_robots_are_a_warning() {
    let d = Dir::new().with_keys();
    let (h5, h6) = (
        bcrypt::hash("pw", 5).unwrap(),
        bcrypt::hash("pw", 6).unwrap(),
    );
    d.write("users.htpasswd", &format!("bob:{h6}\n"));
    let c = d
        .load(&format!(
            "{TOKEN}users:\n  alice: {{password: \"{h5}\"}}\nusers_file: users.htpasswd\n\
             robots:\n  ci:\n    secret: \"{h5}\"\n    scopes: [\"repository:ci/*:pull\"]\nacl: []\n"
        ))
        .unwrap();
    let w = find(&c.warnings, "users");
    assert!(
        w.message
            .contains("cost 5: `alice`, `robot$ci`; cost 6: `bob`"),
        "{}",
        w.message
    );
    assert!(w.message.contains("rehash every password with one cost"));
    assert_eq!(c.authn.dummy_cost(), Some(6));
}

#[test]
fn with_one_cost_unknown_and_known_users_cost_one_bcrypt_at_that_cost() {
    let d = Dir::new().with_keys();
    let h = bcrypt::hash("right", 5).unwrap();
    d.write("users.htpasswd", &format!("bob:{h}\n"));
    let c = d
        .load(&format!(
            "{TOKEN}users:\n  alice: {{password: \"{h}\"}}\nusers_file: users.htpasswd\nacl: []\n"
        ))
        .unwrap();
    assert!(
        c.warnings.iter().all(|w| w.path != "users"),
        "{:?}",
        c.warnings
    );
    // The dummy hash an unknown user is checked against has the users' cost...
    assert_eq!(c.authn.dummy_cost(), Some(5));
    // ...and each attempt runs exactly one bcrypt: unknown user, wrong password, right password.
    for (account, password) in [
        ("mallory", "right"),
        ("alice", "wrong"),
        ("bob", "wrong"),
        ("alice", "right"),
    ] {
        let creds = authn::Credentials {
            account: account.to_owned(),
            password: authn::Secret::new(password),
        };
        let before = authn::bcrypt_verifications_on_this_thread();
        c.authn.authenticate(&creds).unwrap();
        assert_eq!(
            authn::bcrypt_verifications_on_this_thread() - before,
            1,
            "{account}/{password}"
        );
    }
}

#[test]
fn yaml_merge_keys_work_anywhere_as_in_docker_auth() {
    let d = Dir::new().with_keys();
    let h = hash();
    let c = d
        .load(&format!(
            "{TOKEN}users:\n  alice: &user\n    password: \"{h}\"\n    labels: {{team: [dev]}}\n  \
             bob:\n    <<: *user\n    labels: {{team: [ops]}}\n\
             acl:\n  - match: &dev {{labels: {{team: dev}}}}\n    actions: &rw [pull, push]\n  \
             - match:\n      <<: [*dev, {{name: \"x/*\"}}]\n    actions: *rw\n"
        ))
        .unwrap();
    // bob has alice's password through the merge and his own labels (own keys win).
    let bob = c.authn.lookup("bob", std::time::SystemTime::now()).unwrap();
    assert_eq!(bob.labels.get("team").unwrap(), ["ops"]);
    assert_eq!(
        c.acl_entries[1]
            .matches
            .labels
            .get("team")
            .map(String::as_str),
        Some("dev")
    );
    assert_eq!(c.acl_entries[1].matches.name.as_deref(), Some("x/*"));
    let i = issues(d.load(&format!(
        "{TOKEN}users: {{\"\": {{}}}}\nacl:\n  - match: {{<<: 3}}\n    actions: [pull]\n"
    )));
    assert!(
        i.iter().any(|i| i.message.contains("merge key `<<`")),
        "{i:#?}"
    );
}

#[test]
fn without_a_token_key_pair_tokens_are_signed_with_the_server_pair_as_in_docker_auth() {
    let d = Dir::new().with_keys();
    let c = d
        .load(
            "server: {certificate: cert.pem, key: key.pem}\ntoken: {issuer: Acme}\n\
             users: {\"\": {}}\nacl: [{match: {}, actions: [pull]}]\n",
        )
        .unwrap();
    assert_eq!(c.token.certificate, d.path().join("cert.pem"));
    assert!(c.token.signing_key.is_some());
    assert!(
        c.warnings
            .iter()
            .any(|w| w.path == "token" && w.message.contains("server's TLS pair")),
        "{:#?}",
        c.warnings
    );
    // Without a server pair either, both keys are still required.
    let i = issues(d.load("token: {issuer: Acme}\nusers: {\"\": {}}\n"));
    find(&i, "token.certificate");
}

#[test]
fn a_repeated_key_names_both_lines_and_the_value_docker_auth_used() {
    let d = Dir::new().with_keys();
    let i = issues(d.load(&format!(
        "{TOKEN}ldap_auth:\n  addr: ldap.example.com:636\n  bind_dn: cn=a,dc=x\n  base: dc=x\n  \
         filter: (uid=${{account}})\n  bind_dn: cn=b,dc=x\nusers: {{\"\": {{}}}}\n"
    )));
    let issue = find(&i, "ldap_auth.bind_dn");
    assert!(
        issue.message.contains("lines 4 and 7") && issue.message.contains("used the last one"),
        "{}",
        issue.message
    );
    let i = issues(d.load(&format!(
        "{TOKEN}users: {{\"\": {{}}}}\nusers:\n  a: {{}}\n"
    )));
    let issue = find(&i, "users");
    assert!(issue.message.contains("lines 2 and 3"), "{}", issue.message);
}
