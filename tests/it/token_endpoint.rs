//! The token endpoint's HTTP contract as clients rely on it (raw HTTP, no registry client):
//! `/auth` and `/auth/token`, the response fields, the docker-login request shape, the 401 with a
//! Basic challenge, and the 400 JSON error for a malformed scope.

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
