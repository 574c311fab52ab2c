//! Web logins end to end against local providers that speak GitHub's and GitLab's real OAuth
//! and REST protocols (PKCE, exact redirect_uri, single-use codes enforced), with the minted
//! password used through the real registry 2.8.2 by skopeo: teams and groups become labels and
//! the ACL decides by them; state mismatches, replayed codes and refused accounts; revalidation
//! after `revalidate_after` (success, membership gone, provider down → 5xx); sign-out; refresh
//! tokens re-checking the minted password.

use std::thread::sleep;
use std::time::Duration;

use crate::common::clients::Outcome;
use crate::common::http;
use crate::common::idp::{Browserless, FakeGithub, FakeGitlab, GhUser, query_param};
use crate::common::keys::yaml_str;
use crate::common::proc::free_port;
use crate::common::registry::RegistryKind;
use crate::common::server::assert_log_has_no_secrets;
use crate::common::stack::SERVICE;
use crate::common::webstack::{
    CLIENT_ID, CLIENT_SECRET, WebStack, approve_at_fake, logged_in, login_at_fake, secret_file,
    sign_out,
};

const GITHUB_ACL: &str = r#"  - match: {labels: {teams: platform}, name: "platform/**"}
    actions: [pull, push]
    comment: team platform pushes platform/**
  - match: {account: "/.+/", name: "platform/**"}
    actions: [pull]
    comment: everyone signed in pulls platform/**
"#;

fn github_users(gh: &FakeGithub) {
    let member = |login: &str, team: &str, parent: Option<&str>| GhUser {
        login: login.to_owned(),
        orgs: [("acme".to_owned(), "active".to_owned())].into(),
        teams: vec![(
            "acme".to_owned(),
            team.to_owned(),
            parent.map(str::to_owned),
        )],
    };
    gh.set_user(member("alice", "platform", Some("engineering")));
    gh.set_user(member("bob", "web", None));
    gh.set_user(GhUser {
        login: "mallory".to_owned(),
        ..GhUser::default()
    });
    gh.set_user(GhUser {
        login: "pat".to_owned(),
        orgs: [("acme".to_owned(), "pending".to_owned())].into(),
        teams: Vec::new(),
    });
}

fn github_stack(gh: &FakeGithub, extra: &str, registry: bool) -> WebStack {
    github_stack_on(gh, extra, registry.then_some(RegistryKind::V2))
}

fn github_stack_on(gh: &FakeGithub, extra: &str, registry: Option<RegistryKind>) -> WebStack {
    let web = gh.web();
    let api = gh.api();
    let extra = extra.to_owned();
    let stack = WebStack::start_with_registry(
        free_port(),
        "",
        move |dir, registry_addr| {
            format!(
                "github_auth:\n  organization: acme\n  client_id: {CLIENT_ID}\n  \
                 client_secret_file: {}\n  github_web_uri: {web}\n  github_api_uri: {api}\n  \
                 registry_url: {registry_addr}\n{extra}",
                yaml_str(&secret_file(dir).display().to_string()),
            )
        },
        GITHUB_ACL,
        registry,
    );
    gh.set_redirect_uri(&format!("{}/github_auth", stack.base()));
    stack
}

/// A minted password against registry v3 (`x5c`): pushes, the ACL's labels, sign-out.
#[test]
fn github_minted_password_with_registry_v3() {
    let gh = FakeGithub::start(CLIENT_ID, CLIENT_SECRET, "unset");
    github_users(&gh);
    let s = github_stack_on(&gh, "", Some(RegistryKind::V3));
    let base = s.base();
    let alice = login_at_fake(&base, "github_auth", "alice");
    let bob = login_at_fake(&base, "github_auth", "bob");
    let c = s.clients();
    let push = c.skopeo_push(Some(("alice", &alice.password)), "platform/app", "v1", None);
    assert_eq!(
        push.outcome,
        Outcome::Ok,
        "{}\n{}",
        push.log,
        s.diagnostics()
    );
    let pull = c.skopeo_pull(Some(("bob", &bob.password)), "platform/app", "v1");
    assert_eq!(
        pull.outcome,
        Outcome::Ok,
        "{}\n{}",
        pull.log,
        s.diagnostics()
    );
    let push = c.skopeo_push(Some(("bob", &bob.password)), "platform/app", "v2", None);
    assert_eq!(
        push.outcome,
        Outcome::Denied,
        "{}\n{}",
        push.log,
        s.diagnostics()
    );
    let out = sign_out(&base, &bob.password);
    assert_eq!(out.status, 200, "{}", out.body);
    let pull = c.skopeo_pull(Some(("bob", &bob.password)), "platform/app", "v1");
    assert_eq!(pull.outcome, Outcome::Unauthorized, "{}", pull.log);
    let registry = s.registry.as_ref().expect("registry");
    assert_eq!(registry.kind, RegistryKind::V3);
    assert!(
        registry.token_refusals().is_empty(),
        "registry v3 refused tokens:\n{}",
        s.diagnostics()
    );
    assert_log_has_no_secrets(
        &s.server.log,
        &[
            ("alice".to_owned(), alice.password),
            ("bob".to_owned(), bob.password),
            ("x".to_owned(), CLIENT_SECRET.to_owned()),
        ],
        &[],
    );
}

#[test]
fn github_login_mints_a_password_that_works_with_the_teams_as_labels() {
    let gh = FakeGithub::start(CLIENT_ID, CLIENT_SECRET, "unset");
    github_users(&gh);
    let s = github_stack(&gh, "", true);
    let base = s.base();

    // The index lists the login.
    let mut b = Browserless::default();
    let index = b.get(&format!("{base}/"));
    assert_eq!(index.status, 200);
    assert!(index.body.contains("/github_auth"), "{}", index.body);

    // alice (team platform, parent engineering) signs in.
    let alice = login_at_fake(&base, "github_auth", "alice");
    assert_eq!(alice.user, "alice");
    assert!(alice.password.starts_with("rapw_"), "{}", alice.password);
    for tool in ["docker", "podman", "nerdctl"] {
        assert!(
            alice.page.contains(&format!(
                "{tool} login --username alice --password-stdin {}",
                s.registry.as_ref().unwrap().addr
            )),
            "{tool} command missing:\n{}",
            alice.page
        );
    }
    assert!(
        alice.page.contains("teams: engineering, platform"),
        "{}",
        alice.page
    );
    // bob (team web) too.
    let bob = login_at_fake(&base, "github_auth", "bob");

    // The labels drive the ACL through the real registry.
    let c = s.clients();
    let push = c.skopeo_push(Some(("alice", &alice.password)), "platform/app", "v1", None);
    assert_eq!(
        push.outcome,
        Outcome::Ok,
        "{}\n{}",
        push.log,
        s.diagnostics()
    );
    let pull = c.skopeo_pull(Some(("bob", &bob.password)), "platform/app", "v1");
    assert_eq!(pull.outcome, Outcome::Ok, "{}", pull.log);
    let push = c.skopeo_push(Some(("bob", &bob.password)), "platform/app", "v2", None);
    assert_eq!(push.outcome, Outcome::Denied, "{}", push.log);
    // A minted password belongs to its user only.
    let r = s.token("bob", &alice.password, "repository:platform/app:pull");
    assert_eq!(r.status, 401, "{r:?}");
    // And a wrong one is refused.
    let r = s.token(
        "alice",
        "rapw_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "repository:platform/app:pull",
    );
    assert_eq!(r.status, 401, "{r:?}");

    // Outside the organization, or with a pending invitation: refused with a clear page.
    for who in ["mallory", "pat"] {
        let mut b = Browserless::default();
        let callback = approve_at_fake(&mut b, &base, "github_auth", who);
        let page = b.get(&callback);
        assert_eq!(page.status, 403, "{who}: {}", page.body);
        assert!(page.body.contains("acme"), "{}", page.body);
        assert!(!page.body.contains("rapw_"));
    }

    // Sign out revokes the password at once (minted passwords are never cached).
    let out = sign_out(&base, &bob.password);
    assert_eq!(out.status, 200, "{}", out.body);
    assert!(out.body.contains("revoked"), "{}", out.body);
    let pull = c.skopeo_pull(Some(("bob", &bob.password)), "platform/app", "v1");
    assert_eq!(pull.outcome, Outcome::Unauthorized, "{}", pull.log);

    // Nothing secret in the log.
    assert_log_has_no_secrets(
        &s.server.log,
        &[
            ("alice".to_owned(), alice.password),
            ("bob".to_owned(), bob.password),
            ("x".to_owned(), CLIENT_SECRET.to_owned()),
        ],
        &[],
    );
}

#[test]
fn github_callbacks_need_this_browsers_state_and_a_fresh_code() {
    let gh = FakeGithub::start(CLIENT_ID, CLIENT_SECRET, "unset");
    github_users(&gh);
    let s = github_stack(&gh, "", false);
    let base = s.base();

    // A tampered state: refused before the code is used.
    let mut b = Browserless::default();
    let callback = approve_at_fake(&mut b, &base, "github_auth", "alice");
    let state = query_param(&callback, "state").unwrap();
    let forged = callback.replace(&http::urlencode(&state), "forged-state");
    let page = b.get(&forged);
    assert_eq!(page.status, 400, "{}", page.body);
    assert_eq!(gh.tokens_issued(), 0, "the code must not be exchanged");

    // The right callback in another browser (no login cookie: login CSRF): refused.
    let mut b = Browserless::default();
    let callback = approve_at_fake(&mut b, &base, "github_auth", "alice");
    let page = Browserless::default().get(&callback);
    assert_eq!(page.status, 400, "{}", page.body);

    // The right callback in the right browser works once; replayed, the provider refuses the
    // used code (and our cookie is gone, too).
    let mut b = Browserless::default();
    let callback = approve_at_fake(&mut b, &base, "github_auth", "alice");
    let before = b.clone();
    logged_in(&b.get(&callback));
    let page = b.get(&callback);
    assert_eq!(page.status, 400, "replay without the cookie: {}", page.body);
    let mut replay = before;
    let page = replay.get(&callback);
    assert_eq!(
        page.status, 403,
        "replay with the old cookie: {}",
        page.body
    );
    assert!(
        gh.refusals()
            .iter()
            .any(|r| r.contains("code already used")),
        "{:?}",
        gh.refusals()
    );

    // The user declines at the provider.
    let mut b = Browserless::default();
    let start = b.get(&format!("{base}/github_auth"));
    let st = query_param(start.location.as_deref().unwrap(), "state").unwrap();
    let page = b.get(&format!(
        "{base}/github_auth?error=access_denied&state={st}"
    ));
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("declined"), "{}", page.body);
}

#[test]
fn github_revalidation_refresh_tokens_and_a_provider_that_is_down() {
    let gh = FakeGithub::start(CLIENT_ID, CLIENT_SECRET, "unset");
    github_users(&gh);
    let s = github_stack(&gh, "  revalidate_after: 1s\n", false);
    let base = s.base();
    let scope = "repository:platform/app:pull,push";
    let granted = |r: &http::Response| -> Vec<String> {
        let token = r.json()["token"].as_str().unwrap().to_owned();
        let claims = crate::common::jwt::decode(&token).unwrap().claims;
        claims["access"][0]["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect()
    };

    let alice = login_at_fake(&base, "github_auth", "alice");
    let r = s.token("alice", &alice.password, scope);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(granted(&r), ["pull", "push"]);

    // Still a member after revalidate_after: accepted (GitHub was asked again).
    sleep(Duration::from_millis(1100));
    let r = s.token("alice", &alice.password, scope);
    assert_eq!(r.status, 200, "{r:?}\n{}", s.diagnostics());

    // GitHub down when a revalidation is due: a 5xx, not a 401 (docker keeps the password).
    sleep(Duration::from_millis(1100));
    gh.set_down(true);
    let r = s.token("alice", &alice.password, scope);
    assert!(r.status >= 500, "{r:?}");
    // … and the login page says so.
    let mut b = Browserless::default();
    let start = b.get(&format!("{base}/github_auth"));
    let page = b.get(&format!(
        "{base}/github_auth?code=x&state={}",
        query_param(start.location.as_deref().unwrap(), "state").unwrap()
    ));
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(page.body.contains("not reachable"), "{}", page.body);
    gh.set_down(false);
    let r = s.token("alice", &alice.password, scope);
    assert_eq!(r.status, 200, "{r:?}");

    // Removed from the organization: the next revalidation refuses and revokes.
    gh.remove_from_org("alice", "acme");
    sleep(Duration::from_millis(1100));
    let r = s.token("alice", &alice.password, scope);
    assert_eq!(r.status, 401, "{r:?}");
    gh.set_user(GhUser {
        login: "alice".to_owned(),
        orgs: [("acme".to_owned(), "active".to_owned())].into(),
        teams: Vec::new(),
    });
    let r = s.token("alice", &alice.password, scope);
    assert_eq!(r.status, 401, "a revoked password stays revoked: {r:?}");
}

#[test]
fn refresh_tokens_recheck_the_minted_password() {
    let gh = FakeGithub::start(CLIENT_ID, CLIENT_SECRET, "unset");
    github_users(&gh);
    let secret = "refresh-secret-for-tests-0123456789abcdef";
    let s = {
        let gh_web = gh.web();
        let gh_api = gh.api();
        let stack = WebStack::start(
            move |dir, _| {
                std::fs::write(dir.join("refresh.secret"), secret).unwrap();
                format!(
                    "  refresh: {{enabled: true, secret_file: {}}}\ngithub_auth:\n  \
                     organization: acme\n  client_id: {CLIENT_ID}\n  client_secret: {CLIENT_SECRET}\n  \
                     github_web_uri: {gh_web}\n  github_api_uri: {gh_api}\n",
                    yaml_str(&dir.join("refresh.secret").display().to_string())
                )
            },
            GITHUB_ACL,
            false,
        );
        gh.set_redirect_uri(&format!("{}/github_auth", stack.base()));
        stack
    };
    let base = s.base();
    let alice = login_at_fake(&base, "github_auth", "alice");
    let post = |form: &[(&str, &str)]| {
        crate::common::idp::rt().block_on(async {
            let r = crate::common::idp::client()
                .post(format!("{base}/auth"))
                .form(form)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        })
    };
    let (status, body) = post(&[
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", &alice.password),
        ("service", SERVICE),
        ("client_id", "it"),
        ("access_type", "offline"),
        ("scope", "repository:platform/app:pull"),
    ]);
    assert_eq!(status, 200, "{body}");
    let refresh = body["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();
    let refresh_grant = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("service", SERVICE),
        ("client_id", "it"),
        ("scope", "repository:platform/app:pull"),
    ];
    let (status, body) = post(&refresh_grant);
    assert_eq!(status, 200, "{body}");
    // Signing out revokes the password, and with it the refresh token.
    sign_out(&base, &alice.password);
    let (status, body) = post(&refresh_grant);
    assert_eq!(status, 401, "{body}");
}

const GITLAB_ACL: &str = r#"  - match: {labels: {groups: "acme/platform"}, name: "platform/**"}
    actions: [pull, push]
  - match: {account: "/.+/", name: "platform/**"}
    actions: [pull]
"#;

#[test]
fn gitlab_groups_allowed_groups_and_token_refresh_on_revalidation() {
    let gl = FakeGitlab::start(CLIENT_ID, CLIENT_SECRET, "unset");
    gl.set_user("alice", &["acme", "acme/platform"]);
    gl.set_user("bob", &["acme/web"]);
    gl.set_user("eve", &["other"]);
    let web = gl.web();
    let s = WebStack::start(
        move |dir, _| {
            format!(
                "gitlab_auth:\n  client_id: {CLIENT_ID}\n  client_secret_file: {}\n  \
                 gitlab_web_uri: {web}\n  allowed_groups: [acme]\n  grant_type: authorization_code\n  \
                 revalidate_after: 1s\n",
                yaml_str(&secret_file(dir).display().to_string())
            )
        },
        GITLAB_ACL,
        false,
    );
    gl.set_redirect_uri(&format!("{}/gitlab_auth", s.base()));
    let base = s.base();
    let scope = "repository:platform/app:pull,push";

    // GitLab access tokens here live one second: revalidation must refresh them.
    gl.set_token_lifetime(Duration::from_secs(1));
    let alice = login_at_fake(&base, "gitlab_auth", "alice");
    assert!(
        alice.page.contains("groups: acme, acme/platform"),
        "{}",
        alice.page
    );
    let bob = login_at_fake(&base, "gitlab_auth", "bob");
    let r = s.token("alice", &alice.password, scope);
    assert_eq!(r.status, 200, "{r:?}");
    let actions = |r: &http::Response| {
        crate::common::jwt::decode(r.json()["token"].as_str().unwrap())
            .unwrap()
            .claims["access"][0]["actions"]
            .clone()
    };
    assert_eq!(actions(&r), serde_json::json!(["pull", "push"]));
    let r = s.token("bob", &bob.password, scope);
    assert_eq!(actions(&r), serde_json::json!(["pull"]));

    // eve is in no allowed group: refused (docker_auth never enforced this).
    let mut b = Browserless::default();
    let callback = approve_at_fake(&mut b, &base, "gitlab_auth", "eve");
    let page = b.get(&callback);
    assert_eq!(page.status, 403, "{}", page.body);

    // After revalidate_after, with the access token expired: refreshed (GitLab rotates refresh
    // tokens: concurrent requests must not spend it twice), re-checked, accepted.
    sleep(Duration::from_millis(2100));
    std::thread::scope(|scope_| {
        let runs: Vec<_> = (0..6)
            .map(|_| scope_.spawn(|| s.token("alice", &alice.password, scope)))
            .collect();
        for run in runs {
            let r = run.join().unwrap();
            assert_eq!(r.status, 200, "{r:?}\n{}", s.diagnostics());
        }
    });
    // Blocked upstream: refused at the next revalidation.
    gl.block("alice");
    sleep(Duration::from_millis(1100));
    let r = s.token("alice", &alice.password, scope);
    assert_eq!(r.status, 401, "{r:?}");
    // GitLab down during bob's revalidation: a 5xx.
    gl.set_down(true);
    let r = s.token("bob", &bob.password, scope);
    assert!(r.status >= 500, "{r:?}");
    gl.set_down(false);
    let r = s.token("bob", &bob.password, scope);
    assert_eq!(r.status, 200, "{r:?}\n{}", s.diagnostics());
    // A replayed code, a wrong PKCE verifier or redirect_uri never got through.
    assert!(
        gl.refusals()
            .iter()
            .all(|r| !r.contains("PKCE") && !r.contains("redirect_uri")),
        "{:?}",
        gl.refusals()
    );
}
