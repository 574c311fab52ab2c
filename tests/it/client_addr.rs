//! Client addresses through the real binary, with raw forwarding headers: a forwarded address
//! that a trusted proxy sends but that cannot be read is refused with 400 (never decided with
//! the proxy's own address, which an ACL `ip` rule may grant), docker_auth's `real_ip_header`
//! and `real_ip_pos`, the lockout keyed on a folded account (also against a real slapd, which
//! binds `ALICE` as alice), its warning about forwarding headers from untrusted peers, and
//! request ids that a client cannot choose.
//!
//! Each test starts its own server(s) on 127.0.0.1: the test client is the "proxy" (peer
//! 127.0.0.1), trusted or not depending on `server.trusted_proxies`.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use crate::common::http::{self, basic, fetch_token};
use crate::common::image;
use crate::common::jwt;
use crate::common::keys::{KeyFiles, KeySetup};
use crate::common::proc::strip_ansi;
use crate::common::server::{AuthServer, assert_log_has_no_secrets};
use crate::common::stack::{SERVICE, User, config_yaml, tempdir};
use crate::ldap::{Slapd, ldap_yaml, person, seed};
use crate::ops::{audit_line_of, logged_field, request_id, wait_audit_line, wait_line};

/// The proxy (127.0.0.1) gets `pull`; clients in 198.51.100.0/24 get `push`.
const IP_ACL: &str = r#"  - match: {ip: 127.0.0.0/8}
    actions: [pull]
  - match: {ip: 198.51.100.0/24}
    actions: [push]
"#;

/// Raw request headers.
type Headers<'a> = &'a [(&'a str, &'a str)];

const SCOPE: &str = "repository:team/app:pull,push";

/// A server from a config with `server_lines` (indented by two) in its `server:` block and
/// `extra` top-level sections; users alice and bob plus anonymous.
struct Srv {
    server: AuthServer,
    users: Vec<User>,
    _tmp: tempfile::TempDir,
}

impl Srv {
    fn start(prefix: &str, acl: &str, server_lines: &str, extra: &str) -> Self {
        let tmp = tempdir(prefix);
        let keys = KeyFiles::write(KeySetup::EcKid, &tmp.path().join("keys"));
        let users = vec![User::new("alice"), User::new("bob")];
        let yaml = config_yaml(&keys, &users, true, acl);
        let default = "server:\n  addr: \"127.0.0.1:0\"\n";
        assert!(yaml.starts_with(default), "unexpected config shape");
        let yaml = format!("{default}{server_lines}{}{extra}", &yaml[default.len()..]);
        let config = tmp.path().join("registry-auth.yml");
        fs::write(&config, yaml).expect("write config");
        let server = AuthServer::start(&config, &tmp.path().join("registry-auth.log"));
        Self {
            server,
            users,
            _tmp: tmp,
        }
    }

    fn realm(&self) -> String {
        self.server.realm()
    }

    fn password(&self, user: &str) -> String {
        self.users
            .iter()
            .find(|u| u.name == user)
            .map(|u| u.password.clone())
            .unwrap_or_else(|| panic!("no user {user}"))
    }

    fn log(&self) -> String {
        strip_ansi(&String::from_utf8_lossy(
            &fs::read(&self.server.log).unwrap_or_default(),
        ))
    }

    fn log_path(&self) -> PathBuf {
        self.server.log.clone()
    }

    /// `GET /auth?service=…&scope=SCOPE`, anonymous unless `creds`, with raw `headers`.
    fn token(&self, creds: Option<(&str, &str)>, headers: &[(&str, &str)]) -> http::Response {
        let url = format!(
            "{}?{}",
            self.realm(),
            http::query(&[("service", SERVICE), ("scope", SCOPE)])
        );
        let mut h: Vec<(&str, String)> =
            headers.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        if let Some((u, p)) = creds {
            h.push(("Authorization", basic(u, p)));
        }
        http::get(&url, &h)
    }
}

/// The actions granted on `team/app` by a 200 token response.
fn granted(r: &http::Response) -> Vec<String> {
    assert_eq!(r.status, 200, "{r:?}");
    let token = r.json()["token"].as_str().expect("token").to_owned();
    let claims = jwt::decode(&token).expect("decode token").claims;
    let map: BTreeMap<(String, String), Vec<String>> = jwt::granted(&claims)
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().collect()))
        .collect();
    map.get(&("repository".to_owned(), "team/app".to_owned()))
        .cloned()
        .unwrap_or_default()
}

/// The refusal log line (target `audit`) of the request with id `id`.
fn refusal_line_of(text: &str, id: &str) -> Option<String> {
    let quoted = format!("\"{id}\"");
    text.lines()
        .filter(|l| l.contains("unreadable client address"))
        .find(|l| l.contains(&quoted))
        .map(str::to_owned)
}

#[test]
fn unreadable_forwarded_addresses_from_a_trusted_proxy_get_400_never_the_proxys_grant() {
    let srv = Srv::start(
        "ra-it-addr-bad",
        IP_ACL,
        "  trusted_proxies: [127.0.0.1/32]\n",
        "",
    );
    // Readable forwarding: the client's address decides (push), not the proxy's (pull).
    let good = srv.token(None, &[("X-Forwarded-For", "198.51.100.7")]);
    assert_eq!(granted(&good), ["push"], "{}", srv.server.log_tail(5));
    let good_fwd = srv.token(None, &[("Forwarded", "for=198.51.100.8;proto=https")]);
    assert_eq!(granted(&good_fwd), ["push"]);
    let both = srv.token(
        None,
        &[
            ("X-Forwarded-For", "198.51.100.9"),
            ("Forwarded", "for=\"198.51.100.9:4711\""),
        ],
    );
    assert_eq!(granted(&both), ["push"]);
    // A trusted proxy that forwards nothing is the client itself.
    let direct = srv.token(None, &[]);
    assert_eq!(granted(&direct), ["pull"]);

    let cases: &[(Headers<'_>, &str, &str)] = &[
        (
            &[("X-Forwarded-For", "garbage")],
            "X-Forwarded-For",
            "not an IP address",
        ),
        (&[("X-Forwarded-For", "")], "X-Forwarded-For", "empty"),
        (
            &[("X-Forwarded-For", "198.51.100.7, ")],
            "X-Forwarded-For",
            "empty entry",
        ),
        (
            &[("Forwarded", "for=nonsense")],
            "Forwarded",
            "not an IP address",
        ),
        (
            &[("Forwarded", "for=unknown")],
            "Forwarded",
            "not an IP address",
        ),
        (
            &[("Forwarded", "proto=https;host=x")],
            "Forwarded",
            "without a `for=`",
        ),
        (
            &[
                ("X-Forwarded-For", "198.51.100.7"),
                ("Forwarded", "for=203.0.113.1"),
            ],
            "Forwarded",
            "real_ip_header",
        ),
    ];
    let alice = srv.password("alice");
    let mut refused = Vec::new();
    for (headers, header, why) in cases {
        for creds in [None, Some(("alice", alice.as_str()))] {
            let r = srv.token(creds, headers);
            assert_eq!(
                r.status,
                400,
                "{headers:?} ({creds_kind}) must be refused, not decided with the proxy's \
                 address: {r:?}",
                creds_kind = if creds.is_some() {
                    "alice"
                } else {
                    "anonymous"
                }
            );
            let message = r.json()["errors"][0]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(
                message.contains(header) && message.contains(why),
                "{headers:?}: the message must name {header} and say why ({why}): {message}"
            );
            assert_eq!(r.json()["errors"][0]["code"], "BAD_REQUEST");
            refused.push((r, *header));
        }
    }
    // The OAuth2 flow: the same refusal, OAuth2-shaped.
    let post = http::post_form(
        &srv.realm(),
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", &alice),
            ("service", SERVICE),
            ("client_id", "it"),
            ("scope", SCOPE),
        ],
        &[("X-Forwarded-For", "garbage".to_owned())],
    );
    assert_eq!(post.status, 400, "{post:?}");
    assert_eq!(post.json()["error"], "invalid_request", "{post:?}");
    assert!(
        post.json()["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("X-Forwarded-For")),
        "{post:?}"
    );
    refused.push((post, "X-Forwarded-For"));
    // The same request with a readable header gets its token.
    let post_ok = http::post_form(
        &srv.realm(),
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", &alice),
            ("service", SERVICE),
            ("client_id", "it"),
            ("scope", SCOPE),
        ],
        &[("X-Forwarded-For", "198.51.100.7".to_owned())],
    );
    assert_eq!(post_ok.status, 200, "{post_ok:?}");

    // Probes do not read forwarding headers.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = http::get(
            &format!("http://{}{path}", srv.server.addr),
            &[("X-Forwarded-For", "garbage".to_owned())],
        );
        assert_eq!(r.status, 200, "{path}: {r:?}");
    }

    // Each refusal is logged with the header and the reason, and never as a decision with the
    // proxy's address.
    for (r, header) in &refused {
        let id = request_id(r);
        // The refusal line is written by the log thread, after any decision line of the same
        // request would be: once it is there, the absence of a decision line means something.
        wait_line(|| srv.log(), |text| refusal_line_of(text, &id));
        let text = srv.log();
        assert!(
            audit_line_of(&text, &id).is_none(),
            "a refused request has no token decision: {:?}",
            audit_line_of(&text, &id)
        );
        let line = refusal_line_of(&text, &id)
            .unwrap_or_else(|| panic!("no refusal line for {id}:\n{}", srv.server.log_tail(20)));
        assert_eq!(
            logged_field(&line, "header").as_deref(),
            Some(*header),
            "{line}"
        );
        assert_eq!(
            logged_field(&line, "proxy").as_deref(),
            Some("127.0.0.1"),
            "{line}"
        );
        assert!(line.contains("reason="), "{line}");
        assert!(logged_field(&line, "client_ip").is_none(), "{line}");
    }
    for (r, ip) in [(&good, "198.51.100.7"), (&direct, "127.0.0.1")] {
        let line = wait_audit_line(|| srv.log(), &request_id(r)).expect("audit line");
        assert_eq!(
            logged_field(&line, "client_ip").as_deref(),
            Some(ip),
            "{line}"
        );
    }
    assert_log_has_no_secrets(&srv.log_path(), &[("alice".to_owned(), alice)], &[]);
    drop(srv);

    // A peer that is not a trusted proxy: its headers, readable or not, are ignored.
    let srv = Srv::start(
        "ra-it-addr-untrusted",
        IP_ACL,
        "  trusted_proxies: [10.0.0.0/8]\n",
        "",
    );
    for value in ["garbage", "", "198.51.100.7"] {
        let r = srv.token(None, &[("X-Forwarded-For", value)]);
        assert_eq!(granted(&r), ["pull"], "X-Forwarded-For: {value:?}");
    }
    let r = srv.token(None, &[("Forwarded", "for=nonsense")]);
    assert_eq!(granted(&r), ["pull"]);
}

#[test]
fn docker_auth_real_ip_header_is_required_and_real_ip_pos_zero_is_the_default() {
    // real_ip_pos: 0 is docker_auth's default: the same as leaving it out.
    let srv = Srv::start(
        "ra-it-addr-realip",
        IP_ACL,
        "  trusted_proxies: [127.0.0.1/32]\n  real_ip_header: X-Real-IP\n  real_ip_pos: 0\n",
        "",
    );
    let ok = srv.token(None, &[("X-Real-IP", "198.51.100.7")]);
    assert_eq!(granted(&ok), ["push"], "{}", srv.server.log_tail(10));
    for (headers, why) in [
        (&[][..], "missing"),
        (&[("X-Real-IP", "garbage")][..], "not an IP address"),
        (&[("X-Real-IP", "")][..], "empty"),
        // Only the configured header is read.
        (&[("X-Forwarded-For", "198.51.100.7")][..], "missing"),
    ] {
        let r = srv.token(None, headers);
        assert_eq!(r.status, 400, "{headers:?}: {r:?}");
        let m = r.json()["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            m.contains("X-Real-IP") && m.contains(why),
            "{headers:?}: {m}"
        );
    }
    drop(srv);

    // A position beyond the header is an error, not the proxy (docker_auth panicked).
    let srv = Srv::start(
        "ra-it-addr-pos",
        IP_ACL,
        "  trusted_proxies: [127.0.0.1/32]\n  real_ip_header: X-Forwarded-For\n  real_ip_pos: -2\n",
        "",
    );
    let ok = srv.token(None, &[("X-Forwarded-For", "198.51.100.7, 10.1.2.3")]);
    assert_eq!(granted(&ok), ["push"]);
    let short = srv.token(None, &[("X-Forwarded-For", "198.51.100.7")]);
    assert_eq!(short.status, 400, "{short:?}");
    assert!(short.text().contains("real_ip_pos: -2"), "{short:?}");
    drop(srv);

    // Any header a CDN or proxy writes, as docker_auth accepts (read like X-Forwarded-For).
    let srv = Srv::start(
        "ra-it-addr-cdn",
        IP_ACL,
        "  trusted_proxies: [127.0.0.1/32]\n  real_ip_header: CF-Connecting-IP\n",
        "",
    );
    let ok = srv.token(None, &[("CF-Connecting-IP", "198.51.100.7")]);
    assert_eq!(granted(&ok), ["push"], "{}", srv.server.log_tail(10));
    for (headers, why) in [
        (&[("X-Forwarded-For", "198.51.100.7")][..], "missing"),
        (&[("CF-Connecting-IP", "nonsense")][..], "not an IP address"),
    ] {
        let r = srv.token(None, headers);
        assert_eq!(r.status, 400, "{headers:?}: {r:?}");
        assert!(
            r.text().contains("cf-connecting-ip") && r.text().contains(why),
            "{headers:?}: {r:?}"
        );
    }
}

#[test]
fn lockout_counts_spellings_of_one_account_together() {
    let srv = Srv::start(
        "ra-it-addr-fold",
        "  - match: {account: alice}\n    actions: [pull]\n",
        "  trusted_proxies: [127.0.0.1/32]\n",
        "lockout:\n  max_failures: 3\n  window: 1m\n  cooldown: 1m\n",
    );
    let alice = srv.password("alice");
    let from = ("X-Forwarded-For", "198.51.100.30");
    // A case- and space-insensitive backend (LDAP) binds all of these as alice.
    for spelling in ["ALICE", " Alice", "alice  "] {
        let r = srv.token(Some((spelling, "wrong-password")), &[from]);
        assert_eq!(r.status, 401, "{spelling:?}: {r:?}");
    }
    let locked = srv.token(Some(("alice", &alice)), &[from]);
    assert_eq!(
        locked.status,
        429,
        "three wrong passwords under three spellings must lock alice: {locked:?}\n{}",
        srv.server.log_tail(10)
    );
    assert!(locked.header("retry-after").is_some(), "{locked:?}");
    let other = srv.token(Some(("AlIcE", "whatever")), &[from]);
    assert_eq!(other.status, 429, "{other:?}");
    // Other accounts, and alice from elsewhere, are not locked.
    let bob = srv.password("bob");
    assert_eq!(srv.token(Some(("bob", &bob)), &[from]).status, 200);
    let elsewhere = srv.token(
        Some(("alice", &alice)),
        &[("X-Forwarded-For", "198.51.100.31")],
    );
    assert_eq!(elsewhere.status, 200, "{elsewhere:?}");
}

const WARNING: &str = "is not in server.trusted_proxies";

#[test]
fn forwarding_headers_from_an_untrusted_peer_warn_once_while_the_lockout_is_on() {
    let srv = Srv::start("ra-it-addr-warn", IP_ACL, "", "");
    // Probes and requests without forwarding headers do not warn.
    assert_eq!(srv.token(None, &[]).status, 200);
    assert_eq!(srv.server.synced_log().matches(WARNING).count(), 0);
    for headers in [
        &[("X-Forwarded-For", "198.51.100.7")][..],
        &[("Forwarded", "for=198.51.100.7")][..],
        &[("X-Forwarded-For", "garbage")][..],
    ] {
        // Ignored (the peer is not trusted): the peer's address decides.
        assert_eq!(granted(&srv.token(None, headers)), ["pull"], "{headers:?}");
    }
    let alice = srv.password("alice");
    let r = srv.token(
        Some(("alice", &alice)),
        &[("X-Forwarded-For", "198.51.100.8")],
    );
    assert_eq!(r.status, 200);
    // Everything logged before the last answer is written once its audit line is.
    wait_audit_line(|| srv.log(), &request_id(&r));
    let text = srv.log();
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains(WARNING)).collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning per process and configuration:\n{}",
        warnings.join("\n")
    );
    assert!(
        warnings[0].contains("WARN") && warnings[0].contains("peer=127.0.0.1"),
        "{}",
        warnings[0]
    );
    drop(srv);

    // With the lockout off the shared address costs nothing: no warning.
    let srv = Srv::start(
        "ra-it-addr-nowarn",
        IP_ACL,
        "",
        "lockout: {enabled: false}\n",
    );
    assert_eq!(
        granted(&srv.token(None, &[("X-Forwarded-For", "198.51.100.7")])),
        ["pull"]
    );
    assert_eq!(srv.server.synced_log().matches(WARNING).count(), 0);
}

#[test]
fn request_ids_are_generated_and_the_clients_own_is_logged_apart() {
    let srv = Srv::start("ra-it-addr-reqid", IP_ACL, "", "");
    let sent = "client-chosen-id-42";
    let a = srv.token(None, &[("X-Request-ID", sent)]);
    let b = srv.token(None, &[("X-Request-ID", sent)]);
    let (id_a, id_b) = (request_id(&a), request_id(&b));
    assert_ne!(id_a, id_b, "two requests must have two ids");
    assert!(
        id_a != sent && id_b != sent,
        "our id, not the client's: {id_a} {id_b}"
    );
    for id in [&id_a, &id_b] {
        let line = wait_audit_line(|| srv.log(), id)
            .unwrap_or_else(|| panic!("no audit line for {id}:\n{}", srv.server.log_tail(10)));
        assert_eq!(
            logged_field(&line, "client_request_id").as_deref(),
            Some(sent),
            "{line}"
        );
    }
    // Without one, no such field; a long one is cut.
    let c = srv.token(None, &[]);
    let line = wait_audit_line(|| srv.log(), &request_id(&c)).expect("audit line");
    assert!(!line.contains("client_request_id"), "{line}");
    let long = "x".repeat(1000);
    let d = srv.token(None, &[("X-Request-ID", &long)]);
    let line = wait_audit_line(|| srv.log(), &request_id(&d)).expect("audit line");
    let logged = logged_field(&line, "client_request_id").expect("client_request_id");
    assert!(logged.len() < 100 && logged.starts_with("xxxx"), "{line}");
}

#[test]
fn lockout_counts_the_spellings_slapd_binds_as_one_account() {
    let tmp = tempdir("ra-it-addr-ldap");
    let root = tmp.path().to_owned();
    let svc_pw = format!("svc-{}", image::random_hex(12));
    let alice_pw = format!("alice-pw-{}", image::random_hex(6));
    let slapd = Slapd::start(
        &root.join("slapd"),
        None,
        &seed(&svc_pw, &person("alice", "staff", &alice_pw)),
        "",
    );
    let svc_file = root.join("svc.pw");
    fs::write(&svc_file, format!("{svc_pw}\n")).expect("write svc.pw");
    let keys = KeyFiles::write(KeySetup::EcKid, &root.join("keys"));
    let yaml = format!(
        "server:\n  addr: \"127.0.0.1:0\"\ntoken:\n  issuer: it\n  expiration: 900\n{}\
         credential_cache:\n  ttl: 0s\nlockout:\n  max_failures: 3\n  window: 1m\n  cooldown: 1m\n\
         {}acl:\n  - match: {{account: \"/.+/\"}}\n    actions: [pull]\n",
        keys.token_yaml(),
        ldap_yaml(&slapd.addr(), "", &svc_file)
    );
    let cfg = root.join("registry-auth.yml");
    fs::write(&cfg, yaml).expect("write config");
    let server = AuthServer::start(&cfg, &root.join("registry-auth.log"));
    let get = |user: &str, password: &str| {
        fetch_token(
            &server.realm(),
            Some(SERVICE),
            &["repository:team/app:pull"],
            Some((user, password)),
            &[],
        )
        .response
    };
    // The premise: slapd binds other spellings of alice as alice.
    for spelling in ["ALICE", "Alice"] {
        let r = get(spelling, &alice_pw);
        assert_eq!(r.status, 200, "{spelling}: {r:?}\n{}", server.log_tail(10));
    }
    for spelling in ["ALICE", " alice", "Alice "] {
        let r = get(spelling, "wrong-password");
        assert_eq!(r.status, 401, "{spelling:?}: {r:?}");
    }
    let locked = get("alice", &alice_pw);
    assert_eq!(
        locked.status,
        429,
        "three wrong passwords for alice under three spellings must lock her: {locked:?}\n{}",
        server.log_tail(10)
    );
    assert_eq!(get("aLiCe", &alice_pw).status, 429);
    assert_log_has_no_secrets(
        &server.log,
        &[
            ("alice".to_owned(), alice_pw),
            ("registry-auth".to_owned(), svc_pw),
        ],
        &[],
    );
}
