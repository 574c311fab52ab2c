//! The docker_auth migration corpus (`tests/fixtures/migration/`, one config per docker_auth
//! example shape, written by us): each is loaded by `check-config` (accepted with the warnings
//! and the list of resolved files, or refused with the documented message), then served by
//! `registry-auth serve` and asked for tokens through `GET /auth`; the tokens are decoded and
//! their `access` compared with the grants docker_auth gave for the same file. Real slapd and
//! redis-server; GitHub, GitLab and the OpenID provider are the fakes of `common::idp`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::common::http::{self, basic, query};
use crate::common::idp::{self, FakeGithub, FakeGitlab, FakeOidc, GhUser};
use crate::common::jwt;
use crate::common::keys::kid_of_cert_file;
use crate::common::proc::{CmdOutput, free_port, strip_ansi};
use crate::common::redis::{Persistence, REDIS_PASSWORD, Redis};
use crate::common::server::{AuthServer, run_cli};
use crate::common::stack::tempdir;
use crate::common::webstack::{CLIENT_ID, CLIENT_SECRET, logged_in, login_at_fake, login_at_oidc};
use crate::ldap::{Slapd, person, seed};

const SERVICE: &str = "registry.example";

/// A copy of the corpus with its placeholders filled in and the key pairs written.
struct Corpus {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Corpus {
    fn new(vars: &[(&str, String)]) -> Self {
        let tmp = tempdir("ra-it-migration");
        let dir = tmp.path().join("corpus");
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/migration"),
            &dir,
        );
        for entry in fs::read_dir(&dir).expect("read corpus") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "yml") {
                let mut text = fs::read_to_string(&path).expect("read fixture");
                for (name, value) in vars {
                    text = text.replace(&format!("@{name}@"), value);
                }
                fs::write(&path, text).expect("write fixture");
            }
        }
        let certs = dir.join("certs");
        fs::create_dir_all(&certs).expect("mkdir certs");
        for name in ["server", "token"] {
            let key = rcgen::KeyPair::generate().expect("key");
            let mut params =
                rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, format!("migration {name}"));
            let cert = params.self_signed(&key).expect("self-sign");
            fs::write(certs.join(format!("{name}.pem")), cert.pem()).expect("write cert");
            fs::write(certs.join(format!("{name}.key")), key.serialize_pem()).expect("write key");
        }
        Self { _tmp: tmp, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `check-config FILE`, run from `/` (relative paths must not depend on the working
    /// directory).
    fn check(&self, name: &str) -> CmdOutput {
        run_cli(&["check-config", &self.path(name).to_string_lossy()])
    }

    /// `check-config` must accept the file; its output.
    fn check_ok(&self, name: &str) -> String {
        let out = self.check(name);
        assert_eq!(out.code, Some(0), "{name}:\n{}", out.describe());
        strip_ansi(&out.combined())
    }

    fn serve(&self, name: &str, port: Option<u16>) -> AuthServer {
        let stem = name.trim_end_matches(".yml");
        let listen = format!("127.0.0.1:{}", port.unwrap_or(0));
        AuthServer::start_on(
            &self.path(name),
            &self.dir.join(format!("{stem}.log")),
            &listen,
        )
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            // fs::copy keeps the mode: the ext scripts stay executable.
            fs::copy(entry.path(), &target).expect("copy fixture");
        }
    }
}

/// The access a token grants: `type:name` → actions.
type Access = BTreeMap<String, Vec<String>>;

fn access_of(token: &str) -> Access {
    let claims = jwt::decode(token).expect("decode token").claims;
    claims["access"]
        .as_array()
        .expect("access list")
        .iter()
        .map(|a| {
            let key = format!(
                "{}:{}",
                a["type"].as_str().unwrap_or_default(),
                a["name"].as_str().unwrap_or_default()
            );
            let actions = a["actions"]
                .as_array()
                .expect("actions")
                .iter()
                .map(|x| x.as_str().unwrap_or_default().to_owned())
                .collect();
            (key, actions)
        })
        .collect()
}

/// `GET {realm}?service=…&scope=…` with optional Basic credentials and extra headers.
fn token(
    realm: &str,
    creds: Option<(&str, &str)>,
    scopes: &[&str],
    headers: &[(&str, String)],
) -> http::Response {
    let mut params = vec![("service", SERVICE)];
    params.extend(scopes.iter().map(|s| ("scope", *s)));
    let mut h = headers.to_vec();
    if let Some((u, p)) = creds {
        h.push(("Authorization", basic(u, p)));
    }
    http::get(&format!("{realm}?{}", query(&params)), &h)
}

/// The grants for `scopes` (200 required).
fn grants(
    server: &AuthServer,
    realm: &str,
    creds: Option<(&str, &str)>,
    scopes: &[&str],
    headers: &[(&str, String)],
) -> Access {
    let r = token(realm, creds, scopes, headers);
    assert_eq!(
        r.status,
        200,
        "GET {realm} {scopes:?} as {:?}: {r:?}\n{}",
        creds.map(|c| c.0),
        server.log_tail(30)
    );
    access_of(r.json()["token"].as_str().expect("token"))
}

fn want(entries: &[(&str, &[&str])]) -> Access {
    entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
        .collect()
}

/// Placeholders for `check-config` only (nothing is contacted by it).
fn dummy_vars() -> Vec<(&'static str, String)> {
    vec![
        ("PORT", "5001".to_owned()),
        ("LDAP_ADDR", "127.0.0.1:3899".to_owned()),
        ("GITHUB", "http://127.0.0.1:9".to_owned()),
        ("GITLAB", "http://127.0.0.1:9".to_owned()),
        ("OIDC_ISSUER", "http://127.0.0.1:9".to_owned()),
        ("REDIS_ADDR", "127.0.0.1:6399".to_owned()),
        ("REDIS_PASSWORD", "pw".to_owned()),
    ]
}

#[test]
fn check_config_accepts_the_corpus_lists_its_files_and_refuses_what_is_documented() {
    let c = Corpus::new(&dummy_vars());
    let dir = c.dir.display().to_string();
    let ok = [
        "simple.yml",
        "ldap_auth.yml",
        "github_level_token_db.yml",
        "gitlab_redis_token_db.yml",
        "google_oidc_level_token_db.yml",
        "casbin.yml",
        "ext.yml",
        "reference.yml",
        "anchors.yml",
        "real_ip_cf.yml",
        "real_ip_xff.yml",
    ];
    for name in ok {
        let out = c.check_ok(name);
        // Every resolved file, absolute, under the config's folder (not the working directory).
        assert!(
            out.contains(&format!(
                "files (relative paths resolve against the config file's folder {dir};"
            )),
            "{name}: no files block\n{out}"
        );
        if name != "simple.yml" {
            assert!(
                out.contains(&format!("  token.certificate: {dir}/certs/token.pem\n")),
                "{name}: token.certificate not listed\n{out}"
            );
        }
    }
    // Every corpus file is covered here.
    let mut names: Vec<String> = fs::read_dir(&c.dir)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            n.ends_with(".yml").then_some(n)
        })
        .collect();
    names.sort();
    let mut covered: Vec<String> = ok
        .iter()
        .chain(&["ldap_auth_repeated_key.yml", "unsupported.yml"])
        .map(|s| (*s).to_owned())
        .collect();
    covered.sort();
    assert_eq!(names, covered);

    let simple = c.check_ok("simple.yml");
    assert!(
        simple.contains("tokens are signed with the server's TLS pair")
            && simple.contains(&format!("  token.key: {dir}/certs/server.key\n")),
        "{simple}"
    );
    let ext = c.check_ok("ext.yml");
    assert!(
        ext.contains(&format!("  ext_auth.command: {dir}/ext/ext_auth.sh\n"))
            && ext.contains(&format!("  ext_authz.command: {dir}/ext/ext_authz.sh\n")),
        "{ext}"
    );
    let gh = c.check_ok("github_level_token_db.yml");
    assert!(
        gh.contains(&format!(
            "warning: github_auth.level_token_db: docker_auth's LevelDB token DB is mapped onto \
             the embedded store {dir}/state/passwords.db"
        )) && gh.contains(&format!("  store.path: {dir}/state/passwords.db\n")),
        "{gh}"
    );
    let both = c.check_ok("google_oidc_level_token_db.yml");
    for section in ["google_auth", "oidc_auth"] {
        assert!(
            both.contains(&format!("warning: {section}.level_token_db:")),
            "{both}"
        );
    }
    let gl = c.check_ok("gitlab_redis_token_db.yml");
    assert!(
        gl.contains("redis://:***@127.0.0.1:6399/2") && !gl.contains(":pw@"),
        "{gl}"
    );

    // docker_auth's LDAP example as shipped: the repeated key, both lines, which one it used.
    let out = c.check("ldap_auth_repeated_key.yml");
    let text = strip_ansi(&out.combined());
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(
        text.contains(
            "ldap_auth.bind_dn: given twice (lines 18 and 21); YAML forbids repeating a key, and \
             docker_auth silently used the last one (line 21)"
        ),
        "{text}"
    );

    // Only unsupported backends: one line each with its replacement, nothing else, exit 1.
    let out = c.check("unsupported.yml");
    let text = strip_ansi(&out.combined());
    assert_eq!(out.code, Some(1), "{}", out.describe());
    let expected = [
        ("server.tls_curve_preferences", "rustls"),
        ("server.tls_cipher_suites", "rustls"),
        ("server.letsencrypt", "cert-manager"),
        ("mongo_auth", "`users_file`"),
        ("xorm_auth", "`sql_auth"),
        ("plugin_authn", "`http_auth`"),
        ("acl_mongo", "`acl`"),
        ("acl_xorm", "`acl_sql"),
        ("plugin_authz", "`http_authz`"),
    ];
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("  - ")).collect();
    assert_eq!(lines.len(), expected.len(), "{text}");
    for (line, (key, replacement)) in lines.iter().zip(expected) {
        assert!(
            line.starts_with(&format!("  - {key}: docker_auth's")) && line.contains(replacement),
            "expected `{key}` naming {replacement}, got: {line}\n{text}"
        );
    }
}

#[test]
fn simple_tls_only_signs_with_the_server_pair() {
    let c = Corpus::new(&[]);
    let server = c.serve("simple.yml", None);
    let pem = fs::read(c.path("certs/server.pem")).expect("server.pem");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("certificate"))
        .no_proxy()
        .build()
        .expect("https client");
    let fetch = |user: &str, pw: &str, scope: &str| -> (u16, Option<String>) {
        let url = format!(
            "https://{}/auth?{}",
            server.addr,
            query(&[("service", SERVICE), ("scope", scope)])
        );
        idp::rt().block_on(async {
            let r = client
                .get(&url)
                .basic_auth(user, Some(pw))
                .send()
                .await
                .expect("https GET /auth");
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            (status, body["token"].as_str().map(str::to_owned))
        })
    };
    let scope = "repository:acme/app:pull,push,delete";
    let (status, tok) = fetch("admin", "admin-Pw-51", scope);
    assert_eq!(status, 200, "{}", server.log_tail(20));
    let tok = tok.expect("token");
    assert_eq!(
        access_of(&tok),
        want(&[("repository:acme/app", &["delete", "pull", "push"])])
    );
    // Signed with the server's pair: its kid is the server certificate's.
    let kid = jwt::decode(&tok).unwrap().header["kid"].clone();
    assert_eq!(kid, kid_of_cert_file(&c.path("certs/server.pem")));
    let (status, tok) = fetch("test", "test-Pw-62", scope);
    assert_eq!(status, 200);
    assert_eq!(
        access_of(&tok.expect("token")),
        want(&[("repository:acme/app", &["pull"])])
    );
    assert_eq!(fetch("test", "wrong", scope).0, 401);
}

#[test]
fn ldap_example_is_served_once_its_repeated_key_is_removed() {
    let tmp = tempdir("ra-it-migration-ldap");
    let slapd = Slapd::start(
        &tmp.path().join("slapd"),
        None,
        &seed("svc-unused-pw", &person("alice", "staff", "alice-ldap-Pw")),
        "",
    );
    let c = Corpus::new(&[("LDAP_ADDR", slapd.addr())]);
    c.check_ok("ldap_auth.yml");
    assert_eq!(c.check("ldap_auth_repeated_key.yml").code, Some(1));
    let server = c.serve("ldap_auth.yml", None);
    let realm = server.realm();
    let scopes = ["repository:anything/app:pull,push"];
    assert_eq!(
        grants(
            &server,
            &realm,
            Some(("alice", "alice-ldap-Pw")),
            &scopes,
            &[]
        ),
        want(&[("repository:anything/app", &["pull", "push"])])
    );
    assert_eq!(
        token(&realm, Some(("alice", "wrong")), &scopes, &[]).status,
        401
    );
}

#[test]
fn github_with_level_token_db_mints_into_the_store_next_to_it() {
    let gh = FakeGithub::start(CLIENT_ID, CLIENT_SECRET, "unset");
    gh.set_user(GhUser::member("alice", "acme", "platform"));
    gh.set_user(GhUser::member("bob", "acme", "web"));
    let c = Corpus::new(&[("GITHUB", gh.web())]);
    let port = free_port();
    let server = c.serve("github_level_token_db.yml", Some(port));
    let base = format!("http://{}", server.addr);
    gh.set_redirect_uri(&format!("{base}/github_auth"));
    let alice = login_at_fake(&base, "github_auth", "alice");
    let bob = login_at_fake(&base, "github_auth", "bob");
    assert!(
        c.path("state/passwords.db").is_file(),
        "the embedded store is not next to the LevelDB folder"
    );
    let scopes = ["repository:platform/app:pull,push"];
    let realm = server.realm();
    assert_eq!(
        grants(
            &server,
            &realm,
            Some(("alice", &alice.password)),
            &scopes,
            &[]
        ),
        want(&[("repository:platform/app", &["pull", "push"])])
    );
    assert_eq!(
        grants(&server, &realm, Some(("bob", &bob.password)), &scopes, &[]),
        want(&[("repository:platform/app", &["pull"])])
    );
}

#[test]
fn gitlab_with_redis_token_db_uses_that_redis() {
    let redis = Redis::start(Persistence::None);
    let gl = FakeGitlab::start(CLIENT_ID, CLIENT_SECRET, "unset");
    gl.set_user("alice", &["acme"]);
    let port = free_port();
    let c = Corpus::new(&[
        ("GITLAB", gl.web()),
        ("PORT", port.to_string()),
        ("REDIS_ADDR", format!("127.0.0.1:{}", redis.port)),
        ("REDIS_PASSWORD", REDIS_PASSWORD.to_owned()),
    ]);
    let server = c.serve("gitlab_redis_token_db.yml", Some(port));
    let base = format!("http://{}", server.addr);
    gl.set_redirect_uri(&format!("{base}/gitlab_auth"));
    let alice = login_at_fake(&base, "gitlab_auth", "alice");
    let realm = server.realm();
    assert_eq!(
        grants(
            &server,
            &realm,
            Some(("alice", &alice.password)),
            &[
                "repository:alice/app:pull,push",
                "repository:shared/lib:pull,push"
            ],
            &[]
        ),
        want(&[
            ("repository:alice/app", &["pull", "push"]),
            ("repository:shared/lib", &["pull"]),
        ])
    );
    // The password went to that Redis (db 2), not to a file.
    assert!(
        !c.path("data/passwords.db").exists(),
        "an embedded store was created"
    );
    let mut conn = redis_cli(&redis, &["-n", "2", "DBSIZE"]);
    conn.retain(|ch| ch.is_ascii_digit());
    assert!(
        conn.parse::<u64>().is_ok_and(|n| n > 0),
        "redis db 2 holds nothing: {conn:?}\n{}",
        server.log_tail(20)
    );
}

fn redis_cli(redis: &Redis, args: &[&str]) -> String {
    let out = crate::common::proc::run(
        std::process::Command::new(crate::common::proc::require_tool("redis-cli"))
            .args(["-h", "127.0.0.1", "-p", &redis.port.to_string()])
            .args(["-a", REDIS_PASSWORD, "--no-auth-warning"])
            .args(args),
        None,
        std::time::Duration::from_secs(10),
    );
    assert!(out.success(), "{}", out.describe());
    out.stdout
}

#[test]
fn google_and_oidc_token_dbs_in_one_folder_share_one_store() {
    let op = FakeOidc::start(CLIENT_ID, CLIENT_SECRET);
    let port = free_port();
    let c = Corpus::new(&[("OIDC_ISSUER", op.issuer()), ("PORT", port.to_string())]);
    let server = c.serve("google_oidc_level_token_db.yml", Some(port));
    let base = format!("http://{}", server.addr);
    op.set_redirect_uri(&format!("{base}/oidc_auth"));
    let alice = logged_in(&login_at_oidc(&base, "oidc_auth"));
    assert_eq!(alice.user, "alice@acme.test");
    assert!(c.path("state/passwords.db").is_file());
    let realm = server.realm();
    assert_eq!(
        grants(
            &server,
            &realm,
            Some((&alice.user, &alice.password)),
            &["repository:alice/app:pull,push", "repository:bob/app:pull"],
            &[]
        ),
        want(&[
            ("repository:alice/app", &["pull", "push"]),
            ("repository:bob/app", &[]),
        ])
    );
}

#[test]
fn casbin_alone_decides_with_docker_auths_request_layout() {
    let c = Corpus::new(&[]);
    let server = c.serve("casbin.yml", None);
    let realm = server.realm();
    let scopes = ["repository:shop/app:pull,push", "repository:other/app:pull"];
    assert_eq!(
        grants(
            &server,
            &realm,
            Some(("admin", "admin-Pw-51")),
            &scopes,
            &[]
        ),
        want(&[
            ("repository:shop/app", &["pull", "push"]),
            ("repository:other/app", &["pull"]),
        ])
    );
    assert_eq!(
        grants(
            &server,
            &realm,
            Some(("alice", "alice-Pw-73")),
            &scopes,
            &[]
        ),
        want(&[
            ("repository:shop/app", &["pull", "push"]),
            ("repository:other/app", &[]),
        ])
    );
    assert_eq!(
        grants(&server, &realm, Some(("bob", "bob-Pw-84")), &scopes, &[]),
        want(&[
            ("repository:shop/app", &["pull"]),
            ("repository:other/app", &[]),
        ])
    );
}

#[test]
fn ext_auth_and_ext_authz_scripts_follow_docker_auths_contract() {
    let c = Corpus::new(&[]);
    let server = c.serve("ext.yml", None);
    let realm = server.realm();
    // ext_authz exits 0 after printing a sentence: every requested action (stdout ignored).
    assert_eq!(
        grants(
            &server,
            &realm,
            Some(("ci", "ci-Pw-95")),
            &["repository:ci/app:pull,push", "repository:prod/app:pull"],
            &[]
        ),
        want(&[
            ("repository:ci/app", &["pull", "push"]),
            ("repository:prod/app", &[]),
        ])
    );
    // ext_auth's labels reach the ACL: level max is denied secret/* by the ACL before ext_authz.
    assert_eq!(
        grants(
            &server,
            &realm,
            Some(("ops", "ops-Pw-06")),
            &[
                "repository:secret/keys:pull",
                "repository:prod/app:pull,push"
            ],
            &[]
        ),
        want(&[
            ("repository:secret/keys", &[]),
            ("repository:prod/app", &["pull", "push"]),
        ])
    );
    assert_eq!(
        grants(
            &server,
            &realm,
            Some(("admin", "admin-Pw-51")),
            &["repository:secret/keys:pull"],
            &[]
        ),
        want(&[("repository:secret/keys", &["pull"])])
    );
    // ext_auth exit 1: refused.
    assert_eq!(
        token(
            &realm,
            Some(("ci", "wrong")),
            &["repository:ci/app:pull"],
            &[]
        )
        .status,
        401
    );
}

#[test]
fn reference_layout_with_prefix_real_ip_labels_and_anonymous() {
    let c = Corpus::new(&[]);
    let server = c.serve("reference.yml", None);
    let realm = format!("http://{}/docker-auth/auth", server.addr);
    let via = |chain: &str| vec![("X-Forwarded-For", chain.to_owned())];
    let local = via("203.0.113.7, 127.0.0.1");
    let remote = via("127.0.0.1, 198.51.100.1");
    assert_eq!(
        grants(
            &server,
            &realm,
            Some(("alice", "alice-Pw-73")),
            &[
                "repository:alice/app:pull,push,delete",
                "repository:shop/app:pull,push",
                "repository:ops/tool:push",
                "repository:hr/app:pull",
            ],
            &local
        ),
        want(&[
            ("repository:alice/app", &["delete", "pull", "push"]),
            ("repository:shop/app", &["pull", "push"]),
            ("repository:ops/tool", &["push"]),
            ("repository:hr/app", &[]),
        ])
    );
    // `test` pulls from loopback only: the last X-Forwarded-For address (real_ip_pos: -1).
    let scope = ["repository:any/thing:pull"];
    assert_eq!(
        grants(
            &server,
            &realm,
            Some(("test", "test-Pw-62")),
            &scope,
            &local
        ),
        want(&[("repository:any/thing", &["pull"])])
    );
    assert_eq!(
        grants(
            &server,
            &realm,
            Some(("test", "test-Pw-62")),
            &scope,
            &remote
        ),
        want(&[("repository:any/thing", &[])])
    );
    // Anonymous: hello-world and the catalog, nothing else.
    assert_eq!(
        grants(
            &server,
            &realm,
            None,
            &[
                "repository:hello-world:pull",
                "registry:catalog:*",
                "repository:alice/app:pull"
            ],
            &local
        ),
        want(&[
            ("repository:hello-world", &["pull"]),
            ("registry:catalog", &["*"]),
            ("repository:alice/app", &[]),
        ])
    );
    // ext_auth is asked after the static users.
    assert_eq!(
        grants(
            &server,
            &realm,
            Some(("ci", "ci-Pw-95")),
            &["repository:ci/app:pull"],
            &local
        ),
        want(&[("repository:ci/app", &["pull"])])
    );
    // real_ip_header is required, as in docker_auth.
    assert_eq!(
        token(&realm, Some(("test", "test-Pw-62")), &scope, &[]).status,
        400
    );
}

#[test]
fn anchors_merges_and_lists_of_merges() {
    let c = Corpus::new(&[]);
    let server = c.serve("anchors.yml", None);
    let realm = server.realm();
    let scopes = ["repository:shop/app:pull,push", "repository:x/y:pull"];
    let shop = want(&[
        ("repository:shop/app", &["pull", "push"]),
        ("repository:x/y", &[]),
    ]);
    assert_eq!(
        grants(
            &server,
            &realm,
            Some(("alice", "alice-Pw-73")),
            &scopes,
            &[]
        ),
        shop
    );
    // bob merges alice (who merges the shop labels) with a password of his own.
    assert_eq!(
        grants(&server, &realm, Some(("bob", "bob-Pw-84")), &scopes, &[]),
        shop
    );
    assert_eq!(
        token(&realm, Some(("bob", "alice-Pw-73")), &scopes, &[]).status,
        401
    );
    assert_eq!(
        grants(
            &server,
            &realm,
            Some(("admin", "admin-Pw-51")),
            &scopes,
            &[]
        ),
        want(&[
            ("repository:shop/app", &["pull", "push"]),
            ("repository:x/y", &["pull"]),
        ])
    );
}

#[test]
fn real_ip_header_any_name_and_position() {
    let c = Corpus::new(&[]);
    let scope = ["repository:team/app:pull,push"];
    let both = want(&[("repository:team/app", &["pull", "push"])]);
    let pull = want(&[("repository:team/app", &["pull"])]);
    let creds = Some(("test", "test-Pw-62"));

    let cf = c.serve("real_ip_cf.yml", None);
    let realm = cf.realm();
    let h = |v: &str| vec![("CF-Connecting-IP", v.to_owned())];
    assert_eq!(grants(&cf, &realm, creds, &scope, &h("203.0.113.9")), both);
    assert_eq!(grants(&cf, &realm, creds, &scope, &h("198.51.100.1")), pull);
    assert_eq!(token(&realm, creds, &scope, &[]).status, 400);

    let xff = c.serve("real_ip_xff.yml", None);
    let realm = xff.realm();
    let h = |v: &str| vec![("X-Forwarded-For", v.to_owned())];
    assert_eq!(
        grants(&xff, &realm, creds, &scope, &h("10.0.0.1, 203.0.113.9")),
        both
    );
    assert_eq!(
        grants(&xff, &realm, creds, &scope, &h("203.0.113.9, 10.0.0.1")),
        pull
    );
}
