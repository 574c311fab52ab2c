//! `ldap_auth` against a real OpenLDAP `slapd` (Debian's `slapd`, started by each test on a free
//! loopback port with its own slapd.conf and database in the test's temp dir, seeded with
//! `slapadd` and `ldapadd`, killed at the end), driven through the `registry-auth serve` binary:
//!
//! * the directory test: success with groups (`memberOf`, `parse_cn`, `lower_case`) → labels →
//!   ACL decision, a wrong password (401), an empty password (401, and slapd's log shows that
//!   no BIND reached it), filter injection (escaped), a user unknown to LDAP (the next backend
//!   decides), a filter matching two entries (5xx, counted in
//!   `registry_auth_backend_errors_total{backend="ldap_auth"}`), connection reuse, refresh tokens
//!   re-checked by a search (entry deleted → refused), slapd stopped mid-run (5xx, `/readyz`
//!   still 200 with `backends.ldap_auth.status: down`) and restarted (works again, no restart of
//!   registry-auth);
//! * the TLS test: StartTLS and LDAPS with a CA and leaf made by rcgen, a wrong CA (5xx), and
//!   `initial_bind_as_user` (no refresh tokens);
//! * the e2e test: registry 2.8.2 and skopeo, where an LDAP user's group decides push access.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::clients::Outcome;
use crate::common::http::{self, fetch_token, get};
use crate::common::image;
use crate::common::jwt;
use crate::common::keys::Pki;
use crate::common::keys::{KeyFiles, KeySetup, bcrypt_hash, yaml_str};
use crate::common::proc::{self, ChildGuard, StopMode, free_port, require_tool, tail};
use crate::common::server::{AuthServer, assert_log_has_no_secrets};
use crate::common::stack::{self, ISSUER, SERVICE, Stack};

const SUFFIX: &str = "dc=example,dc=com";
const ADMIN_DN: &str = "cn=admin,dc=example,dc=com";
const SVC_DN: &str = "cn=registry-auth,ou=services,dc=example,dc=com";

/// An OpenLDAP server of one test.
pub(crate) struct Slapd {
    conf: PathBuf,
    /// slapd's stderr at log level `stats` (every connection, BIND and SEARCH), across restarts.
    log: PathBuf,
    port: u16,
    /// An `ldaps://` listener too, when TLS is configured.
    ldaps_port: Option<u16>,
    admin_pw: String,
    guard: Option<ChildGuard>,
}

impl Slapd {
    /// Configures, seeds (`slapadd`) and starts slapd, then adds `groups_ldif` with `ldapadd`
    /// (through the server, so the memberof overlay fills `memberOf`).
    pub(crate) fn start(dir: &Path, tls: Option<&Pki>, seed: &str, groups_ldif: &str) -> Self {
        require_tool("slapd");
        require_tool("slapadd");
        require_tool("ldapadd");
        let dir = dir.to_owned();
        let db = dir.join("db");
        fs::create_dir_all(&db).expect("mkdir slapd db");
        let admin_pw = format!("admin-{}", image::random_hex(8));
        let mut conf = String::new();
        for schema in ["core", "cosine", "inetorgperson", "nis"] {
            conf.push_str(&format!("include /etc/ldap/schema/{schema}.schema\n"));
        }
        conf.push_str(&format!(
            "modulepath /usr/lib/ldap\nmoduleload back_mdb\nmoduleload memberof\n\
             pidfile {dir}/slapd.pid\nargsfile {dir}/slapd.args\n",
            dir = dir.display()
        ));
        if let Some(p) = tls {
            conf.push_str(&format!(
                "TLSCACertificateFile {}\nTLSCertificateFile {}\nTLSCertificateKeyFile {}\n",
                p.ca.display(),
                p.cert.display(),
                p.key.display()
            ));
        }
        conf.push_str(&format!(
            "database mdb\nmaxsize 10485760\nsuffix \"{SUFFIX}\"\nrootdn \"{ADMIN_DN}\"\n\
             rootpw {admin_pw}\ndirectory {}\noverlay memberof\n",
            db.display()
        ));
        let conf_path = dir.join("slapd.conf");
        fs::write(&conf_path, conf).expect("write slapd.conf");
        let seed_path = dir.join("seed.ldif");
        fs::write(&seed_path, seed).expect("write seed.ldif");
        let out = proc::run(
            Command::new("slapadd")
                .arg("-f")
                .arg(&conf_path)
                .arg("-l")
                .arg(&seed_path),
            None,
            Duration::from_secs(30),
        );
        assert!(out.success(), "slapadd failed\n{}", out.describe());
        let mut slapd = Self {
            log: dir.join("slapd.log"),
            conf: conf_path,
            port: free_port(),
            ldaps_port: tls.map(|_| free_port()),
            admin_pw,
            guard: None,
        };
        slapd.launch();
        if !groups_ldif.is_empty() {
            slapd.ldap_tool("ldapadd", &[], Some(groups_ldif));
        }
        slapd
    }

    pub(crate) fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs slapd in the foreground (`-d stats`: its log on stderr) and waits for its port.
    pub(crate) fn launch(&mut self) {
        let mut urls = format!("ldap://127.0.0.1:{}/", self.port);
        if let Some(p) = self.ldaps_port {
            urls.push_str(&format!(" ldaps://127.0.0.1:{p}/"));
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open slapd log");
        let child = Command::new("slapd")
            .arg("-f")
            .arg(&self.conf)
            .args(["-h", &urls, "-d", "stats"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("start slapd");
        let mut guard = ChildGuard::new(
            "slapd",
            child,
            StopMode::TermThenKill(Duration::from_secs(5)),
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            if let Some(status) = guard.try_wait() {
                panic!(
                    "slapd exited with {status} before listening on {}:\n{}",
                    self.port,
                    tail(&self.log, 30)
                );
            }
            assert!(
                Instant::now() < deadline,
                "slapd did not listen on {} within 15 s:\n{}",
                self.port,
                tail(&self.log, 30)
            );
            thread::sleep(Duration::from_millis(50));
        }
        self.guard = Some(guard);
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut g) = self.guard.take() {
            g.stop();
        }
    }

    /// SIGKILL (a crash); `launch` starts it again on the same database.
    pub(crate) fn kill(&mut self) {
        if let Some(mut g) = self.guard.take() {
            g.kill();
        }
    }

    /// `ldapadd`/`ldapdelete`/`ldapmodify`/`ldappasswd`/`ldapsearch` as the directory manager;
    /// fails the test when the tool fails.
    pub(crate) fn ldap_tool(
        &self,
        tool: &str,
        args: &[&str],
        input: Option<&str>,
    ) -> proc::CmdOutput {
        let out = proc::run(
            Command::new(require_tool(tool))
                .args(["-x", "-H", &format!("ldap://{}", self.addr())])
                .args(["-D", ADMIN_DN, "-w", &self.admin_pw])
                .args(args),
            input,
            Duration::from_secs(30),
        );
        assert!(out.success(), "{tool} failed\n{}", out.describe());
        out
    }

    fn delete(&self, dn: &str) {
        self.ldap_tool("ldapdelete", &[dn], None);
    }

    /// Bytes of the log so far (to look at what a step caused).
    fn log_len(&self) -> usize {
        fs::metadata(&self.log).map_or(0, |m| m.len() as usize)
    }

    fn log_since(&self, offset: usize) -> String {
        let bytes = fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(bytes.get(offset..).unwrap_or_default()).into_owned()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A user entry under `ou=people`.
pub(crate) fn person(uid: &str, ou: &str, password: &str) -> String {
    format!(
        "dn: uid={uid},ou={ou},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\n\
         cn: {uid}\nsn: {uid}\nuserPassword: {password}\n\n"
    )
}

fn group(cn: &str, members: &[&str]) -> String {
    let mut s = format!("dn: cn={cn},ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: {cn}\n");
    for m in members {
        s.push_str(&format!("member: {m}\n"));
    }
    s.push('\n');
    s
}

/// Base entries, the service account and the people; `svc_pw` is the service account's.
pub(crate) fn seed(svc_pw: &str, people: &str) -> String {
    format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
         dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=staff,ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: staff\n\n\
         dn: ou=contractors,ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: contractors\n\n\
         dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n\n\
         dn: {SVC_DN}\nobjectClass: person\ncn: registry-auth\nsn: service\nuserPassword: {svc_pw}\n\n\
         {people}"
    )
}

pub(crate) fn uid_dn(uid: &str, ou: &str) -> String {
    format!("uid={uid},ou={ou},ou=people,{SUFFIX}")
}

const ACL: &str = r#"acl:
  - match: {account: "/.+/", labels: {groups: devs}, name: "devs/*"}
    actions: [pull, push]
    comment: the devs group (LDAP) pushes devs/*
  - match: {account: "/.+/", name: "devs/*"}
    actions: [pull]
    comment: everybody else pulls devs/*
  - match: {account: "/.+/", name: "${account}/*"}
    actions: ["*"]
    comment: own namespace
"#;

/// The `ldap_auth:` section.
pub(crate) fn ldap_yaml(addr: &str, extra: &str, svc_pw_file: &Path) -> String {
    format!(
        "ldap_auth:\n  addr: {addr}\n  bind_dn: {}\n  bind_password_file: {}\n  base: {}\n  \
         filter: \"(&(objectClass=inetOrgPerson)(uid=${{account}}))\"\n  labels:\n    groups:\n      \
         attribute: memberOf\n      parse_cn: true\n      lower_case: true\n  timeout: 2s\n{extra}",
        yaml_str(SVC_DN),
        yaml_str(&svc_pw_file.to_string_lossy()),
        yaml_str(&format!("ou=people,{SUFFIX}")),
    )
}

/// `server`, `token` (refresh tokens on), a local user `carol`, then `rest`.
pub(crate) fn config(keys: &KeyFiles, root: &Path, carol_pw: &str, rest: &str) -> String {
    fs::write(
        root.join("refresh.secret"),
        format!("{}\n", image::random_hex(24)),
    )
    .expect("write refresh.secret");
    format!(
        "server:\n  addr: \"127.0.0.1:0\"\ntoken:\n  issuer: {}\n  expiration: 900\n{}  refresh:\n    \
         enabled: true\n    secret_file: refresh.secret\nusers:\n  carol:\n    password: {}\n\
         credential_cache:\n  ttl: 0s\nlockout:\n  enabled: false\n{rest}{ACL}",
        yaml_str(ISSUER),
        keys.token_yaml(),
        yaml_str(&bcrypt_hash(carol_pw)),
    )
}

/// `GET /auth` for `scopes` with Basic credentials (and `offline_token` when `offline`).
fn token(
    server: &AuthServer,
    user: &str,
    password: &str,
    scopes: &[&str],
    offline: bool,
) -> http::TokenResponse {
    let extra: &[(&str, &str)] = if offline {
        &[("offline_token", "true"), ("client_id", "it")]
    } else {
        &[]
    };
    fetch_token(
        &server.realm(),
        Some(SERVICE),
        scopes,
        Some((user, password)),
        extra,
    )
}

fn granted(token: &str) -> BTreeMap<(String, String), Vec<String>> {
    let jwt = jwt::decode(token).expect("decode token");
    jwt::granted(&jwt.claims)
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().collect()))
        .collect()
}

fn actions(token: &str, repo: &str) -> Vec<String> {
    granted(token)
        .get(&("repository".to_owned(), repo.to_owned()))
        .cloned()
        .unwrap_or_default()
}

/// `POST /auth` with a form body (the OAuth2 refresh flow).
pub(crate) fn post_form(server: &AuthServer, form: &[(&str, &str)]) -> http::Response {
    let body = http::query(form);
    let mut stream = TcpStream::connect(&server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let req = format!(
        "POST /auth HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: \
         application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        server.addr,
        body.len()
    );
    stream.write_all(req.as_bytes()).expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    http::Response {
        status,
        headers: Vec::new(),
        body: body.as_bytes().to_vec(),
    }
}

fn refresh(server: &AuthServer, refresh_token: &str) -> http::Response {
    post_form(
        server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("service", SERVICE),
            ("client_id", "it"),
            ("scope", "repository:devs/app:pull,push"),
        ],
    )
}

/// The `server.metrics_addr` listener's address, from the `metrics listening addr=…` line.
fn metrics_addr(server: &AuthServer) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = proc::strip_ansi(&fs::read_to_string(&server.log).unwrap_or_default());
        if let Some(addr) = log
            .lines()
            .filter(|l| l.contains("metrics listening"))
            .find_map(|l| l.split("addr=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
        {
            return addr.trim_matches('"').to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no `metrics listening` line:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn readyz(server: &AuthServer) -> (u16, Value) {
    let r = get(&format!("http://{}/readyz", server.addr), &[]);
    (r.status, r.json())
}

/// `registry_auth_backend_errors_total{backend="…"}` (0 when absent).
fn backend_errors(server: &AuthServer, backend: &str) -> u64 {
    let text = get(&format!("http://{}/metrics", server.addr), &[]).text();
    let needle = format!("registry_auth_backend_errors_total{{backend=\"{backend}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn binds(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains(" BIND dn=")).collect()
}

/// Polls `f` until it returns true (up to `secs` seconds).
fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn ldap_directory_against_real_slapd() {
    let started = Instant::now();
    let tmp = stack::tempdir("ra-it-ldap");
    let root = tmp.path().to_owned();
    let svc_pw = format!("svc-{}", image::random_hex(12));
    let pw = |u: &str| format!("{u}-pw-{}", image::random_hex(6));
    let (alice_pw, bob_pw, dave_pw, twin_pw, carol_pw) =
        (pw("alice"), pw("bob"), pw("dave"), pw("twin"), pw("carol"));
    let people = [
        person("alice", "staff", &alice_pw),
        person("bob", "staff", &bob_pw),
        person("dave", "contractors", &dave_pw),
        // Two entries for one account: the filter matches both.
        person("twin", "staff", &twin_pw),
        person("twin", "contractors", &twin_pw),
    ]
    .concat();
    let groups = [
        group(
            "Devs",
            &[&uid_dn("alice", "staff"), &uid_dn("dave", "contractors")],
        ),
        group("Ops", &[&uid_dn("alice", "staff"), &uid_dn("bob", "staff")]),
    ]
    .concat();
    let mut slapd = Slapd::start(&root.join("slapd"), None, &seed(&svc_pw, &people), &groups);
    let svc_file = root.join("svc.pw");
    fs::write(&svc_file, format!("{svc_pw}\n")).expect("write svc.pw");
    let keys = KeyFiles::write(KeySetup::EcKid, &root.join("keys"));
    // LDAP first, then the local users: an account LDAP does not know falls through.
    let rest = format!(
        "{}authn_order: [ldap_auth, users]\n",
        ldap_yaml(&slapd.addr(), "", &svc_file)
    );
    let cfg = root.join("registry-auth.yml");
    // An operators' listener too: it shows the backend error texts the public /readyz hides.
    let yaml = config(&keys, &root, &carol_pw, &rest).replacen(
        "server:\n  addr: \"127.0.0.1:0\"\n",
        "server:\n  addr: \"127.0.0.1:0\"\n  metrics_addr: \"127.0.0.1:0\"\n",
        1,
    );
    fs::write(&cfg, yaml).expect("write config");
    let server = AuthServer::start(&cfg, &root.join("registry-auth.log"));
    let metrics_addr = metrics_addr(&server);
    let slapd_log = slapd.log.clone();
    let ctx = |what: &str| {
        format!(
            "{what}\n--- registry-auth log ---\n{}--- slapd log ---\n{}",
            server.log_tail(20),
            tail(&slapd_log, 20)
        )
    };
    let scopes = [
        "repository:devs/app:pull,push",
        "repository:alice/app:pull,push",
    ];

    // Success: groups → labels → ACL.
    let before = slapd.log_len();
    let r = token(&server, "alice", &alice_pw, &scopes, false);
    assert_eq!(
        r.response.status,
        200,
        "{}",
        ctx(&format!("{:?}", r.response))
    );
    let t = r.token.expect("token");
    assert_eq!(
        actions(&t, "devs/app"),
        ["pull", "push"],
        "{}",
        ctx("alice in Devs")
    );
    assert_eq!(actions(&t, "alice/app"), ["pull", "push"]);
    let log = slapd.log_since(before);
    assert!(
        binds(&log)
            .iter()
            .any(|l| l.contains(&format!("dn=\"{SVC_DN}\""))),
        "the search ran as the service account:\n{log}"
    );
    assert!(
        binds(&log)
            .iter()
            .any(|l| l.contains("dn=\"uid=alice,ou=staff")),
        "the password was checked by a bind as the entry:\n{log}"
    );
    assert!(
        log.contains("filter=\"(&(objectClass=inetOrgPerson)(uid=alice))\""),
        "{log}"
    );

    // Wrong password: 401.
    let r = token(&server, "alice", "not-her-password", &scopes, false);
    assert_eq!(r.response.status, 401, "{}", ctx("wrong password"));

    // Empty password: 401, and nothing reaches slapd (no anonymous-bind bypass).
    let before = slapd.log_len();
    let r = token(&server, "alice", "", &scopes, false);
    assert_eq!(r.response.status, 401, "{}", ctx("empty password"));
    thread::sleep(Duration::from_millis(300));
    let log = slapd.log_since(before);
    assert!(
        binds(&log).is_empty(),
        "an empty password reached a BIND:\n{log}"
    );
    assert!(
        !log.contains("SRCH"),
        "an empty password caused a search:\n{log}"
    );

    // Filter injection: `*` is escaped, so it matches nobody.
    let before = slapd.log_len();
    let r = token(&server, "*", &alice_pw, &scopes, false);
    assert_eq!(r.response.status, 401, "{}", ctx("account *"));
    let log = slapd.log_since(before);
    assert!(
        log.contains("(uid=\\2A)") || log.contains("(uid=\\2a)"),
        "{log}"
    );
    assert!(
        !binds(&log).iter().any(|l| l.contains("uid=alice")),
        "the injected filter found alice:\n{log}"
    );

    // Unknown to LDAP: the next backend (the local users) decides.
    let r = token(
        &server,
        "carol",
        &carol_pw,
        &["repository:carol/x:push"],
        false,
    );
    assert_eq!(r.response.status, 200, "{}", ctx("carol via users"));
    assert_eq!(actions(&r.token.expect("token"), "carol/x"), ["push"]);

    // bob: in Ops only: pulls devs/*, no push.
    let r = token(&server, "bob", &bob_pw, &scopes, false);
    assert_eq!(r.response.status, 200, "{}", ctx("bob"));
    assert_eq!(actions(&r.token.expect("token"), "devs/app"), ["pull"]);

    // Two entries: an error (5xx), counted against ldap_auth.
    let errors_before = backend_errors(&server, "ldap_auth");
    let r = token(&server, "twin", &twin_pw, &scopes, false);
    assert_eq!(r.response.status, 503, "{}", ctx("twin"));
    assert_eq!(backend_errors(&server, "ldap_auth"), errors_before + 1);
    let text = server.log_when(|t| t.contains("exactly one is required"));
    assert!(
        text.contains("exactly one is required"),
        "{}",
        ctx("the log says why")
    );

    // Connections are reused: ten logins, a couple of connections.
    let before = slapd.log_len();
    for _ in 0..10 {
        let r = token(&server, "alice", &alice_pw, &scopes, false);
        assert_eq!(r.response.status, 200);
    }
    let accepted = slapd.log_since(before).matches(" ACCEPT from").count();
    assert!(
        accepted <= 2,
        "{accepted} new LDAP connections for 10 logins"
    );

    // Refresh tokens: honoured while a search still finds the entry.
    let r = token(&server, "dave", &dave_pw, &scopes, true);
    assert_eq!(r.response.status, 200, "{}", ctx("dave offline"));
    let dave_refresh = r.response.json()["refresh_token"]
        .as_str()
        .expect("a refresh token for an LDAP user")
        .to_owned();
    let r = token(&server, "alice", &alice_pw, &scopes, true);
    let alice_refresh = r.response.json()["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned();
    let r = refresh(&server, &dave_refresh);
    assert_eq!(
        r.status,
        200,
        "{}",
        ctx(&format!("dave refresh {:?}", r.text()))
    );
    let access = r.json()["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        actions(&access, "devs/app"),
        ["pull", "push"],
        "current labels apply"
    );
    slapd.delete(&uid_dn("dave", "contractors"));
    let r = refresh(&server, &dave_refresh);
    assert_eq!(
        r.status,
        401,
        "{}",
        ctx("refresh after the entry was deleted")
    );
    let r = refresh(&server, &alice_refresh);
    assert_eq!(r.status, 200, "{}", ctx("alice's refresh still works"));

    // slapd stops: 5xx (never 401), /readyz stays 200 and shows ldap_auth down.
    let (status, body) = readyz(&server);
    assert_eq!(status, 200);
    assert_eq!(body["backends"]["ldap_auth"]["status"], "up", "{body}");
    slapd.stop();
    let errors_before = backend_errors(&server, "ldap_auth");
    let t0 = Instant::now();
    let r = token(&server, "alice", &alice_pw, &scopes, false);
    assert_eq!(r.response.status, 503, "{}", ctx("slapd down"));
    assert!(t0.elapsed() < Duration::from_secs(10));
    let r = refresh(&server, &alice_refresh);
    assert_eq!(
        r.status,
        503,
        "{}",
        ctx("a refresh re-check with slapd down")
    );
    assert!(backend_errors(&server, "ldap_auth") >= errors_before + 2);
    let (status, body) = readyz(&server);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["backends"]["ldap_auth"]["status"], "down", "{body}");
    // The public listener never shows the error text (a failed bind can name a user's DN)...
    assert!(
        body["backends"]["ldap_auth"].get("error").is_none()
            && !body.to_string().contains("cannot connect")
            && body["problems"] == serde_json::json!(["ldap_auth is down"]),
        "the public /readyz shows a backend's error text: {body}"
    );
    // ...server.metrics_addr and the log do.
    let ops = get(&format!("http://{metrics_addr}/readyz"), &[]).json();
    assert!(
        ops["backends"]["ldap_auth"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot connect")),
        "{ops}"
    );
    assert!(
        server
            .log_when(|t| t
                .lines()
                .any(|l| l.contains("backend is down") && l.contains("cannot connect")))
            .lines()
            .any(|l| l.contains("backend is down") && l.contains("cannot connect")),
        "{}",
        ctx("the log names the LDAP error")
    );
    // LDAP comes first in this chain, and a failure is not a "no match": the local user
    // behind it gets a 5xx too (docker_auth's semantics), not a 401.
    let r = token(
        &server,
        "carol",
        &carol_pw,
        &["repository:carol/x:pull"],
        false,
    );
    assert_eq!(
        r.response.status,
        503,
        "{}",
        ctx("carol while LDAP is down")
    );

    // slapd is back: works again without restarting registry-auth.
    slapd.launch();
    let r = token(&server, "alice", &alice_pw, &scopes, false);
    assert_eq!(r.response.status, 200, "{}", ctx("slapd back"));
    assert!(
        eventually(10, || readyz(&server).1["backends"]["ldap_auth"]["status"]
            == "up"),
        "{}",
        ctx("readyz after the restart")
    );

    let mut secrets: Vec<(String, String)> = [
        ("alice", &alice_pw),
        ("bob", &bob_pw),
        ("dave", &dave_pw),
        ("twin", &twin_pw),
        ("carol", &carol_pw),
        ("registry-auth", &svc_pw),
    ]
    .iter()
    .map(|(u, p)| ((*u).to_owned(), (*p).clone()))
    .collect();
    secrets.push(("alice".to_owned(), "not-her-password".to_owned()));
    assert_log_has_no_secrets(&server.log, &secrets, &[alice_refresh, dave_refresh]);
    eprintln!("ldap_directory_against_real_slapd: {:?}", started.elapsed());
}

#[test]
fn ldap_starttls_ldaps_and_bind_as_user() {
    let started = Instant::now();
    let tmp = stack::tempdir("ra-it-ldaptls");
    let root = tmp.path().to_owned();
    let pki = Pki::write(&root.join("pki"), "slapd");
    let other = Pki::write(&root.join("pki"), "other");
    let svc_pw = format!("svc-{}", image::random_hex(12));
    let alice_pw = format!("alice-{}", image::random_hex(8));
    let carol_pw = format!("carol-{}", image::random_hex(8));
    let slapd = Slapd::start(
        &root.join("slapd"),
        Some(&pki),
        &seed(&svc_pw, &person("alice", "staff", &alice_pw)),
        &group("Devs", &[&uid_dn("alice", "staff")]),
    );
    let svc_file = root.join("svc.pw");
    fs::write(&svc_file, &svc_pw).expect("write svc.pw");
    let keys = KeyFiles::write(KeySetup::EcKid, &root.join("keys"));
    let scopes = ["repository:devs/app:pull,push"];
    let ldaps = format!("127.0.0.1:{}", slapd.ldaps_port.expect("ldaps port"));
    let cases: [(&str, String, String, u16); 4] = [
        (
            "starttls",
            slapd.addr(),
            format!(
                "  tls: starttls\n  ca_certificate: {}\n",
                yaml_str(&pki.ca.to_string_lossy())
            ),
            200,
        ),
        (
            "ldaps",
            ldaps.clone(),
            format!(
                "  tls: always\n  ca_certificate: {}\n",
                yaml_str(&pki.ca.to_string_lossy())
            ),
            200,
        ),
        (
            "starttls-wrong-ca",
            slapd.addr(),
            format!(
                "  tls: starttls\n  ca_certificate: {}\n",
                yaml_str(&other.ca.to_string_lossy())
            ),
            503,
        ),
        (
            "ldaps-wrong-ca",
            ldaps,
            format!(
                "  tls: always\n  ca_certificate: {}\n",
                yaml_str(&other.ca.to_string_lossy())
            ),
            503,
        ),
    ];
    for (name, addr, tls, expected) in cases {
        let cfg = root.join(format!("{name}.yml"));
        let rest = ldap_yaml(&addr, &tls, &svc_file);
        fs::write(&cfg, config(&keys, &root, &carol_pw, &rest)).expect("write config");
        let server = AuthServer::start(&cfg, &root.join(format!("{name}.log")));
        let before = slapd.log_len();
        let r = token(&server, "alice", &alice_pw, &scopes, false);
        assert_eq!(
            r.response.status,
            expected,
            "{name}: {:?}\n{}\n--- slapd ---\n{}",
            r.response,
            server.log_tail(15),
            tail(&slapd.log, 15)
        );
        let log = slapd.log_since(before);
        if expected == 200 {
            assert_eq!(
                actions(&r.token.expect("token"), "devs/app"),
                ["pull", "push"]
            );
            if name == "starttls" {
                assert!(
                    log.contains("oid=1.3.6.1.4.1.1466.20037"),
                    "no StartTLS:\n{log}"
                );
            }
            // Everything went over TLS: every bind has a TLS security strength factor.
            for l in log.lines().filter(|l| l.contains("mech=SIMPLE")) {
                assert!(!l.contains(" ssf=0"), "a bind without TLS in {name}: {l}");
            }
        } else {
            assert!(binds(&log).is_empty(), "{name}: a bind went out:\n{log}");
        }
    }

    // initial_bind_as_user: the user's own bind searches; no refresh tokens.
    let cfg = root.join("as-user.yml");
    let rest = format!(
        "ldap_auth:\n  addr: {}\n  tls: starttls\n  ca_certificate: {}\n  initial_bind_as_user: true\n  \
         bind_dn: \"uid=${{account}},ou=staff,ou=people,{SUFFIX}\"\n  base: \"ou=people,{SUFFIX}\"\n  \
         filter: \"(uid=${{account}})\"\n  labels:\n    groups: {{attribute: memberOf, parse_cn: true, lower_case: true}}\n",
        slapd.addr(),
        yaml_str(&pki.ca.to_string_lossy()),
    );
    fs::write(&cfg, config(&keys, &root, &carol_pw, &rest)).expect("write config");
    let server = AuthServer::start(&cfg, &root.join("as-user.log"));
    let before = slapd.log_len();
    let r = token(&server, "alice", &alice_pw, &scopes, true);
    assert_eq!(
        r.response.status,
        200,
        "{:?}\n{}",
        r.response,
        server.log_tail(15)
    );
    assert!(
        r.response.json().get("refresh_token").is_none(),
        "no refresh token with initial_bind_as_user"
    );
    assert_eq!(
        actions(&r.token.expect("token"), "devs/app"),
        ["pull", "push"]
    );
    let log = slapd.log_since(before);
    assert!(
        !log.contains(SVC_DN),
        "no service account in this mode:\n{log}"
    );
    let r = token(&server, "alice", "wrong", &scopes, false);
    assert_eq!(r.response.status, 401);
    let r = token(&server, "alice", "", &scopes, false);
    assert_eq!(r.response.status, 401);
    eprintln!(
        "ldap_starttls_ldaps_and_bind_as_user: {:?}",
        started.elapsed()
    );
}

#[test]
fn ldap_group_decides_push_with_skopeo() {
    let started = Instant::now();
    let tmp = stack::tempdir("ra-it-ldape2e");
    let root = tmp.path().to_owned();
    let svc_pw = format!("svc-{}", image::random_hex(12));
    let alice_pw = format!("alice-{}", image::random_hex(8));
    let bob_pw = format!("bob-{}", image::random_hex(8));
    let carol_pw = format!("carol-{}", image::random_hex(8));
    let slapd = Slapd::start(
        &root.join("slapd"),
        None,
        &seed(
            &svc_pw,
            &[
                person("alice", "staff", &alice_pw),
                person("bob", "staff", &bob_pw),
            ]
            .concat(),
        ),
        &group("Devs", &[&uid_dn("alice", "staff")]),
    );
    let svc_file = root.join("svc.pw");
    fs::write(&svc_file, &svc_pw).expect("write svc.pw");
    let keys = KeyFiles::write(KeySetup::EcKid, &root.join("keys"));
    let cfg = root.join("registry-auth.yml");
    let rest = ldap_yaml(&slapd.addr(), "", &svc_file);
    fs::write(&cfg, config(&keys, &root, &carol_pw, &rest)).expect("write config");
    let users = [
        ("alice".to_owned(), alice_pw.clone()),
        ("bob".to_owned(), bob_pw.clone()),
        ("carol".to_owned(), carol_pw),
    ]
    .into_iter()
    .collect();
    let stack = Stack::start_with_config(tmp, keys, cfg, users);
    let c = &stack.clients;
    stack.note_sent("alice", &alice_pw);
    stack.note_sent("bob", &bob_pw);
    let alice = Some(("alice", alice_pw.as_str()));
    let bob = Some(("bob", bob_pw.as_str()));
    let step = |what: &str, got: Outcome, want: Outcome, log: &str| {
        assert_eq!(got, want, "{what}\n{log}\n{}", stack.diagnostics());
    };
    let a = c.skopeo_push(bob, "devs/app", "1", None);
    step(
        "bob (not in Devs) pushes devs/app",
        a.outcome,
        Outcome::Denied,
        &a.log,
    );
    let a = c.skopeo_push(alice, "devs/app", "1", None);
    step(
        "alice (in Devs) pushes devs/app",
        a.outcome,
        Outcome::Ok,
        &a.log,
    );
    let a = c.skopeo_pull(bob, "devs/app", "1");
    step("bob pulls devs/app", a.outcome, Outcome::Ok, &a.log);
    let a = c.skopeo_pull(Some(("alice", "wrong-password")), "devs/app", "1");
    stack.note_sent("alice", "wrong-password");
    step(
        "alice with a wrong password",
        a.outcome,
        Outcome::Unauthorized,
        &a.log,
    );
    let a = c.skopeo_pull(Some(("alice", "")), "devs/app", "1");
    step(
        "alice with an empty password",
        a.outcome,
        Outcome::Unauthorized,
        &a.log,
    );
    stack.note_sent("registry-auth", &svc_pw);
    stack.assert_log_secrecy();
    drop(slapd);
    eprintln!(
        "ldap_group_decides_push_with_skopeo: {:?}",
        started.elapsed()
    );
}
