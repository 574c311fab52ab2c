//! The token endpoint's HTTP contract as clients rely on it (raw HTTP, no registry client):
//! `/auth` and `/auth/token`, the response fields, the docker-login request shape, the 401 with a
//! Basic challenge, the 400 JSON error for a malformed scope, and the cap on scopes × ACL regexes
//! that must be compiled per scope (`MAX_SCOPE_REGEX_WORK`).

use crate::common::http::{self, fetch_token};
use crate::common::jwt;
use crate::common::keys::KeySetup;
use crate::common::scenario;
use crate::common::stack::{ISSUER, SERVICE, Stack, User};

const ACL: &str = r#"  - match: {account: alice, name: "alice/*"}
    actions: [pull, push, delete]
  - match: {account: "", name: "public/*"}
    actions: [pull]
"#;

#[test]
fn token_endpoint_contract() {
    let stack = Stack::start(KeySetup::EcKid, &[User::new("alice")], true, ACL);
    let pw = stack.password("alice").to_owned();
    let alice = Some(("alice", pw.as_str()));
    let ctx = |what: &str, r: &http::TokenResponse| {
        format!(
            "{what}: GET {}\n  {:?}\n{}",
            r.url,
            r.response,
            stack.diagnostics()
        )
    };

    // Both paths serve tokens; the response carries token == access_token, expires_in,
    // issued_at, and passes every registry 2.8 check.
    for path in ["/auth", "/auth/token"] {
        let realm = format!("http://{}{path}", stack.server.addr);
        let scopes = ["repository:alice/app:pull,push"];
        stack.note_sent("alice", &pw);
        let r = fetch_token(&realm, Some(SERVICE), &scopes, alice, &[]);
        assert_eq!(r.response.status, 200, "{}", ctx("token", &r));
        let body = r.response.json();
        let tok = r.token.clone().expect("token");
        stack.note_token(&tok);
        assert_eq!(
            body["token"],
            body["access_token"],
            "{}",
            ctx("token fields", &r)
        );
        assert_eq!(
            body["expires_in"],
            900,
            "{}",
            ctx("expires_in = token.expiration", &r)
        );
        let problems = jwt::lint(&body, &tok, SERVICE, ISSUER, &scopes, &stack.keys.bundle);
        assert!(problems.is_empty(), "{problems:?}\n{}", ctx("lint", &r));
        let claims = jwt::decode(&tok).expect("decode").claims;
        assert_eq!(claims["sub"], "alice", "{}", ctx("sub", &r));
    }

    // What `docker login` sends: no scope, client_id=docker, offline_token=true. A 200 without
    // refresh_token (docker would switch to POST with one).
    let r = scenario::token(&stack, alice, &[]);
    assert_eq!(r.response.status, 200, "{}", ctx("plain login", &r));
    stack.note_sent("alice", &pw);
    let r = fetch_token(
        &stack.server.realm(),
        Some(SERVICE),
        &[],
        alice,
        &[("client_id", "docker"), ("offline_token", "true")],
    );
    assert_eq!(r.response.status, 200, "{}", ctx("docker login", &r));
    if let Some(t) = &r.token {
        stack.note_token(t);
    }
    assert!(
        r.response.json().get("refresh_token").is_none(),
        "{}",
        ctx("no refresh_token on GET", &r)
    );

    // Bad credentials: 401 with a Basic challenge, for wrong passwords and unknown users.
    for (user, password) in [
        ("alice", "wrong-password-t1"),
        ("nobody", "nobody-password"),
    ] {
        let r = scenario::token(
            &stack,
            Some((user, password)),
            &["repository:alice/app:pull"],
        );
        assert_eq!(r.response.status, 401, "{}", ctx("bad credentials", &r));
        let www = r.response.header("WWW-Authenticate").unwrap_or_default();
        assert!(
            www.to_ascii_lowercase().starts_with("basic realm="),
            "{}",
            ctx("WWW-Authenticate: Basic realm=…", &r)
        );
        assert!(r.token.is_none(), "{}", ctx("no token on 401", &r));
    }

    // A malformed scope: 400 with a JSON error body, for anonymous and authenticated callers.
    for cred in [None, alice] {
        let r = scenario::token(&stack, cred, &["repository-without-actions"]);
        assert_eq!(r.response.status, 400, "{}", ctx("malformed scope", &r));
        let ct = r.response.header("Content-Type").unwrap_or_default();
        assert!(ct.contains("json"), "{}", ctx("400 is JSON", &r));
        let body: serde_json::Value = serde_json::from_slice(&r.response.body)
            .unwrap_or_else(|e| panic!("{e}: {}", ctx("400 body is JSON", &r)));
        assert!(body.is_object(), "{}", ctx("400 body is a JSON object", &r));
    }

    // Anonymous: allowed here; gets only what the ACL grants anonymous (public/* pull).
    let r = scenario::token(
        &stack,
        None,
        &[
            "repository:public/base:pull,push",
            "repository:alice/app:pull",
        ],
    );
    assert_eq!(r.response.status, 200, "{}", ctx("anonymous token", &r));
    let claims = jwt::decode(r.token.as_deref().expect("token"))
        .expect("decode")
        .claims;
    let granted = jwt::granted(&claims);
    let public: Vec<&str> = granted
        .get(&("repository".to_owned(), "public/base".to_owned()))
        .map(|a| a.iter().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        public,
        ["pull"],
        "{}",
        ctx("anonymous: pull on public/*", &r)
    );
    assert!(
        granted
            .get(&("repository".to_owned(), "alice/app".to_owned()))
            .is_none_or(|a| a.is_empty()),
        "{}",
        ctx("anonymous: nothing on alice/app", &r)
    );

    stack.assert_log_secrecy();
}

/// Regexes with `${name}` are compiled once per scope: a client (here anonymous) asking for many
/// scopes would multiply that work, so scopes × such regexes is capped at 1024 with a 400 that
/// names the limit. Regexes with only `${account}` are cached and do not count.
#[test]
fn scopes_times_per_scope_acl_regexes_are_capped_with_a_clear_400() {
    use std::io::{Read as _, Write as _};

    use crate::common::webstack::WebStack;
    const PER_SCOPE: &str = r#"  - match: {account: "/^${name}$/"}
    actions: [pull]
  - match: {account: "/^${name}-ci$/"}
    actions: [pull]
  - match: {labels: {team: "/^${name}$/"}}
    actions: [pull]
  - match: {account: "/^${type}-${name}$/"}
    actions: [pull]
  - match: {name: "/^${account}pub/"}
    actions: [pull]
"#;
    let s = WebStack::start(|_, _| "users: {\"\": {}}\n".to_owned(), PER_SCOPE, false);
    let get = |n: usize| {
        let mut params = vec![("service", SERVICE.to_owned())];
        params.extend((0..n).map(|i| ("scope", format!("repository:pub{i}:pull"))));
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        http::get(&format!("{}/auth?{}", s.base(), http::query(&params)), &[])
    };
    // 4 regexes vary per scope: 256 scopes are exactly the limit.
    let r = get(256);
    assert_eq!(r.status, 200, "{r:?}\n{}", s.diagnostics());
    let claims = jwt::decode(r.json()["token"].as_str().unwrap())
        .unwrap()
        .claims;
    assert_eq!(
        claims["access"][255]["actions"],
        serde_json::json!(["pull"])
    );
    let r = get(257);
    assert_eq!(r.status, 400, "{r:?}");
    let message = r.json()["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("MAX_SCOPE_REGEX_WORK") && message.contains("257 scopes × 4"),
        "{message}"
    );
    // The OAuth2 flow answers the same limit in its own shape.
    let mut form = vec![
        ("grant_type", "password".to_owned()),
        ("client_id", "it".to_owned()),
        ("service", SERVICE.to_owned()),
        ("username", "nobody".to_owned()),
        ("password", "x".to_owned()),
    ];
    form.extend((0..257).map(|i| ("scope", format!("repository:pub{i}:pull"))));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let body = http::query(&form);
    let mut stream = std::net::TcpStream::connect(&s.server.addr).unwrap();
    write!(
        stream,
        "POST /auth HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: \
         application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"invalid_scope\""), "{answer}");
    assert!(answer.contains("MAX_SCOPE_REGEX_WORK"), "{answer}");
}
