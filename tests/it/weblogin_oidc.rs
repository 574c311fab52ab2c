//! OpenID Connect against a real, certified provider (`oidc-provider` under node): `oidc_auth`
//! (discovery, PKCE, nonce, ID-token verification, `labels_claims`, revalidation with the
//! refresh token), `google_auth` (the `hd` domain restriction), a provider that is down (503 on
//! the login page, 5xx on `/auth`), and CI identities (`oidc_tokens`): an ID token as the
//! password of user `oidc`, its claims as labels deciding pushes through the real registry,
//! tokens of an untrusted issuer or for another audience refused.

use std::thread::sleep;
use std::time::Duration;

use serde_json::json;

use crate::common::clients::Outcome;
use crate::common::http;
use crate::common::idp::{Browserless, FakeOidc, Flaw, OidcProvider};
use crate::common::proc::free_port;
use crate::common::stack::tempdir;
use crate::common::webstack::{CLIENT_ID, CLIENT_SECRET, WebStack, logged_in, login_at_oidc};

fn web_client(port: u16, route: &str) -> serde_json::Value {
    json!({
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [format!("http://127.0.0.1:{port}/{route}")],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    })
}

fn actions(r: &http::Response) -> serde_json::Value {
    assert_eq!(r.status, 200, "{r:?}");
    crate::common::jwt::decode(r.json()["token"].as_str().unwrap())
        .unwrap()
        .claims["access"][0]["actions"]
        .clone()
}

const ACL: &str = r#"  - match: {labels: {groups: platform}, name: "platform/**"}
    actions: [pull, push]
  - match: {account: "/.+@.+/", name: "platform/**"}
    actions: [pull]
"#;

#[test]
fn oidc_login_labels_from_claims_and_revalidation_with_the_refresh_token() {
    let port = free_port();
    let tmp = tempdir("ra-oidc");
    let op = OidcProvider::start(
        tmp.path(),
        json!([web_client(port, "oidc_auth")]),
        json!({
            "alice": {"email": "alice@acme.test", "email_verified": true, "groups": ["platform", "dev"]},
            "bob": {"email": "bob@acme.test", "email_verified": true, "groups": ["web"]},
            "unverified": {"email": "x@acme.test", "email_verified": false},
        }),
    );
    let issuer = op.issuer.clone();
    let s = WebStack::start_on_port(
        port,
        move |_, _| {
            format!(
                "oidc_auth:\n  issuer: {issuer}\n  redirect_url: http://127.0.0.1:{port}/oidc_auth\n  \
                 client_id: {CLIENT_ID}\n  client_secret: {CLIENT_SECRET}\n  \
                 scopes: [openid, email, groups, offline_access]\n  labels_claims: [groups]\n  \
                 revalidate_after: 1s\n"
            )
        },
        ACL,
        false,
    );
    let base = s.base();
    let scope = "repository:platform/app:pull,push";

    op.sign_in_as("alice");
    let alice = logged_in(&login_at_oidc(&base, "oidc_auth"));
    assert_eq!(alice.user, "alice@acme.test");
    assert!(
        alice.page.contains("groups: platform, dev"),
        "{}",
        alice.page
    );
    op.sign_in_as("bob");
    let bob = logged_in(&login_at_oidc(&base, "oidc_auth"));
    assert_eq!(
        actions(&s.token(&alice.user, &alice.password, scope)),
        json!(["pull", "push"])
    );
    assert_eq!(
        actions(&s.token(&bob.user, &bob.password, scope)),
        json!(["pull"])
    );

    // An unverified email does not name an account.
    op.sign_in_as("unverified");
    let page = login_at_oidc(&base, "oidc_auth");
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("not verified"), "{}", page.body);

    // Revalidation: the refresh token still works, the new claims apply.
    op.set_claims(
        "bob",
        json!({"email": "bob@acme.test", "email_verified": true, "groups": ["platform"]}),
    );
    sleep(Duration::from_millis(1100));
    assert_eq!(
        actions(&s.token(&bob.user, &bob.password, scope)),
        json!(["pull", "push"]),
        "{}",
        s.diagnostics()
    );
    // The account is gone at the provider: the next revalidation refuses.
    op.disable("alice");
    sleep(Duration::from_millis(1100));
    let r = s.token(&alice.user, &alice.password, scope);
    assert_eq!(r.status, 401, "{r:?}");

    // The provider goes down: a revalidation that cannot run is a 5xx, not a 401.
    drop(op);
    sleep(Duration::from_millis(1100));
    let r = s.token(&bob.user, &bob.password, scope);
    assert!(r.status >= 500, "{r:?}");
}

#[test]
fn google_logins_are_restricted_to_the_workspace_domain_by_the_hd_claim() {
    let port = free_port();
    let tmp = tempdir("ra-google");
    let op = OidcProvider::start(
        tmp.path(),
        json!([web_client(port, "google_auth")]),
        json!({
            "alice": {"email": "alice@acme.test", "email_verified": true, "hd": "acme.test"},
            // A consumer account whose address merely looks like the domain.
            "eve": {"email": "eve+acme.test@gmail.test", "email_verified": true},
            "olga": {"email": "olga@other.test", "email_verified": true, "hd": "other.test"},
        }),
    );
    let issuer = op.issuer.clone();
    let s = WebStack::start_on_port(
        port,
        move |_, _| {
            format!(
                "google_auth:\n  issuer: {issuer}\n  domain: acme.test\n  client_id: {CLIENT_ID}\n  \
                 client_secret: {CLIENT_SECRET}\n  registry_url: registry.acme.test\n"
            )
        },
        ACL,
        false,
    );
    let base = s.base();
    op.sign_in_as("alice");
    let alice = logged_in(&login_at_oidc(&base, "google_auth"));
    assert_eq!(alice.user, "alice@acme.test");
    assert!(alice.page.contains("registry.acme.test"), "{}", alice.page);
    assert_eq!(
        actions(&s.token(&alice.user, &alice.password, "repository:platform/app:pull")),
        json!(["pull"])
    );
    for who in ["eve", "olga"] {
        op.sign_in_as(who);
        let page = login_at_oidc(&base, "google_auth");
        assert_eq!(page.status, 403, "{who}: {}", page.body);
        assert!(page.body.contains("acme.test"), "{}", page.body);
    }
}

#[test]
fn a_provider_that_is_down_gives_a_clear_503_on_the_login_page() {
    // Nothing listens on this port.
    let dead = free_port();
    let s = WebStack::start(
        move |_, _| {
            format!(
                "oidc_auth:\n  issuer: http://127.0.0.1:{dead}\n  client_id: {CLIENT_ID}\n  \
                 client_secret: {CLIENT_SECRET}\n  http_timeout: 2s\n"
            )
        },
        ACL,
        false,
    );
    let page = Browserless::default().get(&format!("{}/oidc_auth", s.base()));
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(page.body.contains("cannot be reached"), "{}", page.body);
    assert_eq!(page.headers.get("retry-after").unwrap(), "30");
    // The token endpoint keeps working for everything else.
    let r = http::get(
        &format!("{}/auth?service=x&scope=repository:a/b:pull", s.base()),
        &[],
    );
    assert_eq!(r.status, 401, "{r:?}");
}

const CI_ACL: &str = r#"  - match: {account: oidc, labels: {repository: "/.+/"}, name: "${labels:repository}"}
    actions: [pull, push]
    comment: a CI job pushes its own repository
  - match: {account: oidc}
    actions: [pull]
"#;

#[test]
fn ci_jobs_log_in_with_their_id_token_and_push_their_own_repository() {
    let tmp = tempdir("ra-ci");
    let ci_client = |id: &str| {
        json!({
            "client_id": id, "client_secret": CLIENT_SECRET,
            "redirect_uris": ["http://127.0.0.1:9/ci"],
            "grant_types": ["authorization_code"], "response_types": ["code"],
        })
    };
    let claims = json!({
        "app-ci": {"repository": "acme/app", "repository_owner": "acme", "ref": "refs/heads/main"},
        "evil-ci": {"repository": "acme/app", "repository_owner": "evil"},
    });
    let op = OidcProvider::start(
        &tmp.path().join("trusted"),
        json!([ci_client("registry.acme.test"), ci_client("someone-else")]),
        claims.clone(),
    );
    let untrusted = OidcProvider::start(
        &tmp.path().join("untrusted"),
        json!([ci_client("registry.acme.test")]),
        claims,
    );
    let issuer = op.issuer.clone();
    let s = WebStack::start(
        move |_, _| {
            format!(
                "users: {{\"\": {{}}}}\noidc_tokens:\n  - issuer: {issuer}\n    \
                 audience: registry.acme.test\n    labels_claims: [repository, ref]\n    \
                 required_claims: {{repository_owner: acme}}\n"
            )
        },
        CI_ACL,
        true,
    );
    let id_token = |p: &OidcProvider, client: &str, account: &str| {
        p.sign_in_as(account);
        p.code_flow(client, CLIENT_SECRET, "http://127.0.0.1:9/ci", "openid ci")["id_token"]
            .as_str()
            .expect("an ID token")
            .to_owned()
    };
    let token = id_token(&op, "registry.acme.test", "app-ci");
    let c = s.clients();
    let push = c.skopeo_push(Some(("oidc", &token)), "acme/app", "ci", None);
    assert_eq!(
        push.outcome,
        Outcome::Ok,
        "{}\n{}",
        push.log,
        s.diagnostics()
    );
    let push = c.skopeo_push(Some(("oidc", &token)), "acme/other", "ci", None);
    assert_eq!(push.outcome, Outcome::Denied, "{}", push.log);
    let pull = c.skopeo_pull(Some(("oidc", &token)), "acme/app", "ci");
    assert_eq!(pull.outcome, Outcome::Ok, "{}", pull.log);

    // Another audience, another issuer, another owner, another user name: refused.
    let other_aud = id_token(&op, "someone-else", "app-ci");
    let foreign = id_token(&untrusted, "registry.acme.test", "app-ci");
    let evil = id_token(&op, "registry.acme.test", "evil-ci");
    for (what, user, t) in [
        ("wrong audience", "oidc", &other_aud),
        ("untrusted issuer", "oidc", &foreign),
        ("required claim", "oidc", &evil),
        ("other user name", "ci", &token),
    ] {
        let r = s.token(user, t, "repository:acme/app:pull");
        assert_eq!(r.status, 401, "{what}: {r:?}");
    }
    let pull = c.skopeo_pull(Some(("oidc", &foreign)), "acme/app", "ci");
    assert_eq!(pull.outcome, Outcome::Unauthorized, "{}", pull.log);
    // The ID tokens never reach the log.
    crate::common::server::assert_log_has_no_secrets(
        &s.server.log,
        &[],
        &[token, other_aud, foreign, evil],
    );
}

#[test]
fn id_tokens_with_a_bad_signature_audience_nonce_or_expiry_are_refused() {
    let op = FakeOidc::start(CLIENT_ID, CLIENT_SECRET);
    let issuer = op.issuer();
    let s = WebStack::start(
        move |_, _| {
            format!(
                "oidc_auth:\n  issuer: {issuer}\n  client_id: {CLIENT_ID}\n  \
                 client_secret: {CLIENT_SECRET}\n"
            )
        },
        ACL,
        false,
    );
    op.set_redirect_uri(&format!("{}/oidc_auth", s.base()));
    for (flaw, reason) in [
        (Flaw::Signature, "bad signature"),
        (Flaw::Audience, "audience"),
        (Flaw::Nonce, "nonce"),
        (Flaw::Expired, "expired"),
    ] {
        op.set_flaw(flaw);
        let page = login_at_oidc(&s.base(), "oidc_auth");
        assert_eq!(page.status, 403, "{flaw:?}: {}", page.body);
        assert!(page.body.contains(reason), "{flaw:?}: {}", page.body);
        assert!(
            !page.body.contains("rapw_"),
            "{flaw:?}: a password was minted"
        );
    }
    op.set_flaw(Flaw::None);
    let alice = logged_in(&login_at_oidc(&s.base(), "oidc_auth"));
    assert_eq!(alice.user, "alice@acme.test");
}

/// Values are data, never patterns: a CI token's claim inserted into `${labels:repository}` only
/// ever names itself, so a workflow whose repository claim is `**` or `/.*/` gets nothing
/// elsewhere (before the fix, it matched every repository).
#[test]
fn a_ci_claim_shaped_like_a_pattern_grants_only_a_repository_of_that_literal_name() {
    let tmp = tempdir("ra-ci-claims");
    let op = OidcProvider::start(
        tmp.path(),
        json!([{
            "client_id": "registry.acme.test", "client_secret": CLIENT_SECRET,
            "redirect_uris": ["http://127.0.0.1:9/ci"],
            "grant_types": ["authorization_code"], "response_types": ["code"],
        }]),
        json!({
            "stars-ci": {"repository": "**", "repository_owner": "org"},
            "regex-ci": {"repository": "/.*/", "repository_owner": "org"},
            "app-ci": {"repository": "org/app", "repository_owner": "org"},
        }),
    );
    let issuer = op.issuer.clone();
    let s = WebStack::start(
        move |_, _| {
            format!(
                "users: {{\"\": {{}}}}\noidc_tokens:\n  - issuer: {issuer}\n    \
                 audience: registry.acme.test\n    labels_claims: [repository]\n    \
                 required_claims: {{repository_owner: org}}\n"
            )
        },
        "  - match: {account: oidc, name: \"${labels:repository}\"}\n    actions: [pull, push]\n",
        false,
    );
    let id_token = |account: &str| {
        op.sign_in_as(account);
        op.code_flow(
            "registry.acme.test",
            CLIENT_SECRET,
            "http://127.0.0.1:9/ci",
            "openid ci",
        )["id_token"]
            .as_str()
            .expect("an ID token")
            .to_owned()
    };
    for ci in ["stars-ci", "regex-ci"] {
        let token = id_token(ci);
        for repo in ["other/repo", "org/app"] {
            let r = s.token("oidc", &token, &format!("repository:{repo}:pull,push"));
            assert_eq!(
                actions(&r),
                json!([]),
                "{ci} was granted {repo}\n{}",
                s.diagnostics()
            );
        }
    }
    let token = id_token("app-ci");
    assert_eq!(
        actions(&s.token("oidc", &token, "repository:org/app:pull,push")),
        json!(["pull", "push"])
    );
    assert_eq!(
        actions(&s.token("oidc", &token, "repository:other/repo:pull")),
        json!([])
    );
}

/// "nOAuth": an email names an account only when the provider asserts `email_verified: true`.
/// A missing claim or the string "false" was accepted before, so anyone who registered the
/// address at the provider signed in as its owner.
#[test]
fn an_email_names_an_account_only_when_the_provider_asserts_it_is_verified() {
    let port = free_port();
    let tmp = tempdir("ra-oidc-verified");
    let op = OidcProvider::start(
        tmp.path(),
        json!([web_client(port, "oidc_auth")]),
        json!({
            "missing": {"email": "ceo@acme.test"},
            "string-false": {"email": "ceo@acme.test", "email_verified": "false"},
            "false": {"email": "ceo@acme.test", "email_verified": false},
            "true": {"email": "alice@acme.test", "email_verified": true},
            "string-true": {"email": "bob@acme.test", "email_verified": "true"},
        }),
    );
    let issuer = op.issuer.clone();
    let s = WebStack::start_on_port(
        port,
        move |_, _| {
            format!(
                "oidc_auth:\n  issuer: {issuer}\n  redirect_url: http://127.0.0.1:{port}/oidc_auth\n  \
                 client_id: {CLIENT_ID}\n  client_secret: {CLIENT_SECRET}\n"
            )
        },
        ACL,
        false,
    );
    for (who, why) in [
        ("missing", "did not send `email_verified`"),
        ("string-false", "email_verified: &quot;false&quot;"),
        ("false", "email_verified: false"),
    ] {
        op.sign_in_as(who);
        let page = login_at_oidc(&s.base(), "oidc_auth");
        assert_eq!(page.status, 403, "{who}: {}", page.body);
        for text in ["ceo@acme.test is not verified", why, "user_claim"] {
            assert!(
                page.body.contains(text),
                "{who}: no {text:?} in {}",
                page.body
            );
        }
        assert!(!page.body.contains("rapw_"), "{who}: a password was minted");
    }
    for (who, user) in [
        ("true", "alice@acme.test"),
        ("string-true", "bob@acme.test"),
    ] {
        op.sign_in_as(who);
        let login = logged_in(&login_at_oidc(&s.base(), "oidc_auth"));
        assert_eq!(login.user, user);
        assert_eq!(
            actions(&s.token(&login.user, &login.password, "repository:platform/app:pull")),
            json!(["pull"])
        );
    }
}
