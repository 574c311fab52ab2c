//! Grant logic with a real config: password and refresh grants, revocation, robots.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::*;
use crate::config;
use crate::token::{self, KeyKind, TokenIssuer};

const SECRET_A: &str = "a-refresh-secret-that-is-long-enough-0123456789";
const SECRET_B: &str = "b-refresh-secret-that-is-long-enough-0123456789";

struct Fixture {
    dir: tempfile::TempDir,
    /// alice's hash, fixed so that reloading the config keeps her credential fingerprint.
    alice_hash: String,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = token::generate_self_signed(KeyKind::EcP256, "t", 30).unwrap();
        token::write_key_files(
            &key,
            &dir.path().join("key.pem"),
            &dir.path().join("cert.pem"),
        )
        .unwrap();
        fs::write(dir.path().join("a.secret"), SECRET_A).unwrap();
        fs::write(dir.path().join("b.secret"), SECRET_B).unwrap();
        Self {
            dir,
            alice_hash: bcrypt::hash("alicepass", 4).unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Loads a config with users alice (password `alicepass`, or the given hash source) and the
    /// robot `ci`, refresh tokens on with the given secret files.
    fn config(&self, alice_password: &str, refresh: &str, robots: &str) -> (Config, TokenIssuer) {
        let alice = if alice_password == "alicepass" {
            self.alice_hash.clone()
        } else {
            bcrypt::hash(alice_password, 4).unwrap()
        };
        let yaml = format!(
            r#"
token:
  issuer: Test
  certificate: cert.pem
  key: key.pem
  refresh:
{refresh}
users:
  "": {{}}
  alice: {{password: "{alice}", labels: {{team: [dev]}}}}
{robots}
acl:
  - match: {{account: alice, name: "alice/*"}}
    actions: [pull, push]
  - match: {{name: "public/*"}}
    actions: [pull]
"#
        );
        let p = self.path().join("config.yml");
        fs::write(&p, yaml).unwrap();
        let config = config::load(&p).unwrap();
        let issuer = TokenIssuer::new(
            "Test".into(),
            Duration::from_secs(300),
            config.token.signing_key.clone().unwrap(),
            crate::token::HeaderMode::KidLibtrust,
        );
        (config, issuer)
    }

    fn default(&self) -> (Config, TokenIssuer) {
        self.config("alicepass", REFRESH_ON, ROBOTS)
    }
}

const REFRESH_ON: &str = "    enabled: true\n    secret_file: a.secret\n    lifetime: 1h\n    revocations_file: revoked.yml";

fn robots(expires: &str) -> String {
    let hash = bcrypt::hash("robotsecret", 4).unwrap();
    format!(
        "robots:\n  ci:\n    secret: \"{hash}\"\n    expires: \"{expires}\"\n    scopes: [\"repository:ci/**:pull,push\"]\n"
    )
}

const ROBOTS: &str = "";

/// The server's authenticator for a config (used for refresh re-checks).
fn authn(config: &Config) -> crate::authn::Authenticator {
    crate::authn::Authenticator::with_order(
        config.authn.clone(),
        config.authn_order.clone(),
        config.credential_cache,
        crate::authn::CacheStats::default(),
    )
}

fn scopes(list: &[&str]) -> Vec<Scope> {
    crate::token::parse_scopes(list.iter().copied()).unwrap()
}

fn password_request(account: &str, password: &str, offline: bool) -> TokenRequest {
    TokenRequest {
        service: "reg".into(),
        scopes: scopes(&["repository:alice/app:pull,push,delete"]),
        credentials: Credentials {
            account: account.into(),
            password: Secret::new(password),
        },
        ip: None,
        offline,
    }
}

fn refresh_request(token: &Secret, service: &str) -> RefreshRequest {
    RefreshRequest {
        refresh_token: token.clone(),
        service: service.into(),
        scopes: scopes(&["repository:alice/app:pull,push"]),
        ip: None,
    }
}

fn issued(outcome: GrantOutcome) -> (Vec<ScopeDecision>, Option<IssuedRefresh>) {
    match outcome {
        GrantOutcome::Issued {
            decisions, refresh, ..
        } => (decisions, refresh),
        GrantOutcome::Unauthorized { reason, .. } => panic!("unauthorized: {reason}"),
    }
}

fn refused(outcome: GrantOutcome) -> &'static str {
    match outcome {
        GrantOutcome::Unauthorized { reason, .. } => reason,
        GrantOutcome::Issued { .. } => panic!("unexpectedly issued"),
    }
}

fn login(config: &Config, issuer: &TokenIssuer) -> IssuedRefresh {
    let (_, refresh) = issued(
        grant(
            config,
            issuer,
            &password_request("alice", "alicepass", true),
            SystemTime::now(),
        )
        .unwrap(),
    );
    refresh.expect("a refresh token for offline access")
}

#[test]
fn password_grant_issues_refresh_token_only_for_offline_access() {
    let f = Fixture::new();
    let (config, issuer) = f.default();
    let now = SystemTime::now();
    let (decisions, refresh) = issued(
        grant(
            &config,
            &issuer,
            &password_request("alice", "alicepass", false),
            now,
        )
        .unwrap(),
    );
    assert!(refresh.is_none());
    assert_eq!(decisions[0].granted, ["pull", "push"]);
    let refresh = login(&config, &issuer);
    assert!(refresh.token.expose().starts_with("rat1."));
    // Anonymous never gets one.
    let anon = TokenRequest {
        credentials: Credentials::anonymous(),
        ..password_request("", "", true)
    };
    let (_, r) = issued(grant(&config, &issuer, &anon, now).unwrap());
    assert!(r.is_none());
    assert_eq!(
        refused(
            grant(
                &config,
                &issuer,
                &password_request("alice", "nope", true),
                now
            )
            .unwrap()
        ),
        "wrong password"
    );
}

#[tokio::test]
async fn refresh_tokens_need_refresh_enabled() {
    let f = Fixture::new();
    let (config, issuer) = f.config("alicepass", "    enabled: false", ROBOTS);
    let (_, refresh) = issued(
        grant(
            &config,
            &issuer,
            &password_request("alice", "alicepass", true),
            SystemTime::now(),
        )
        .unwrap(),
    );
    assert!(refresh.is_none());
    let (outcome, _) = grant_refresh(
        &config,
        &issuer,
        &authn(&config),
        &refresh_request(&Secret::new("rat1.x.y"), "reg"),
        SystemTime::now(),
    )
    .await
    .unwrap();
    refused(outcome);
}

#[tokio::test]
async fn refresh_grant_applies_current_acl() {
    let f = Fixture::new();
    let (config, issuer) = f.default();
    let refresh = login(&config, &issuer);
    let (outcome, problem) = grant_refresh(
        &config,
        &issuer,
        &authn(&config),
        &refresh_request(&refresh.token, "reg"),
        SystemTime::now(),
    )
    .await
    .unwrap();
    assert!(problem.is_none());
    let (decisions, again) = issued(outcome);
    assert_eq!(decisions[0].granted, ["pull", "push"]);
    assert!(
        again.is_none(),
        "a refresh grant issues no new refresh token"
    );
}

#[tokio::test]
async fn refresh_token_for_another_service_is_refused() {
    let f = Fixture::new();
    let (config, issuer) = f.default();
    let refresh = login(&config, &issuer);
    let (outcome, _) = grant_refresh(
        &config,
        &issuer,
        &authn(&config),
        &refresh_request(&refresh.token, "other"),
        SystemTime::now(),
    )
    .await
    .unwrap();
    assert_eq!(refused(outcome), "refresh token issued for another service");
}

#[tokio::test]
async fn expired_and_tampered_refresh_tokens_are_refused() {
    let f = Fixture::new();
    let (config, issuer) = f.default();
    let refresh = login(&config, &issuer);
    let later = SystemTime::now() + Duration::from_secs(3601);
    let (outcome, _) = grant_refresh(
        &config,
        &issuer,
        &authn(&config),
        &refresh_request(&refresh.token, "reg"),
        later,
    )
    .await
    .unwrap();
    assert_eq!(refused(outcome), "refresh token expired");
    let mut tampered = refresh.token.expose().to_owned();
    tampered.insert(10, 'x');
    let (outcome, _) = grant_refresh(
        &config,
        &issuer,
        &authn(&config),
        &refresh_request(&Secret::new(tampered), "reg"),
        SystemTime::now(),
    )
    .await
    .unwrap();
    assert_eq!(refused(outcome), "invalid refresh token");
}

#[tokio::test]
async fn revoked_token_and_revoked_user_are_refused() {
    let f = Fixture::new();
    let (config, issuer) = f.default();
    let first = login(&config, &issuer);
    let second = login(&config, &issuer);
    let mut list = crate::token::refresh::RevocationList::default();
    list.tokens.insert(first.id.clone());
    fs::write(f.path().join("revoked.yml"), list.to_yaml()).unwrap();
    let now = SystemTime::now();
    let (outcome, _) = grant_refresh(
        &config,
        &issuer,
        &authn(&config),
        &refresh_request(&first.token, "reg"),
        now,
    )
    .await
    .unwrap();
    assert_eq!(refused(outcome), "refresh token revoked");
    let (outcome, _) = grant_refresh(
        &config,
        &issuer,
        &authn(&config),
        &refresh_request(&second.token, "reg"),
        now,
    )
    .await
    .unwrap();
    issued(outcome);
    // Revoke the user: every token issued until now goes.
    let stamp = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    list.users.insert("alice".into(), stamp);
    fs::write(f.path().join("revoked.yml"), list.to_yaml()).unwrap();
    let (outcome, _) = grant_refresh(
        &config,
        &issuer,
        &authn(&config),
        &refresh_request(&second.token, "reg"),
        now,
    )
    .await
    .unwrap();
    assert_eq!(refused(outcome), "refresh token revoked");
}

#[tokio::test]
async fn removed_user_and_changed_password_invalidate_refresh_tokens() {
    let f = Fixture::new();
    let (config, issuer) = f.default();
    let refresh = login(&config, &issuer);
    // Same user, new password hash.
    let (changed, issuer2) = f.config("newpass", REFRESH_ON, ROBOTS);
    let (outcome, _) = grant_refresh(
        &changed,
        &issuer2,
        &authn(&changed),
        &refresh_request(&refresh.token, "reg"),
        SystemTime::now(),
    )
    .await
    .unwrap();
    assert_eq!(
        refused(outcome),
        "the refresh token's user changed their password"
    );
    // User removed from the config.
    let yaml = fs::read_to_string(f.path().join("config.yml"))
        .unwrap()
        .lines()
        .filter(|l| !l.contains("alice: {password"))
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(f.path().join("config.yml"), yaml).unwrap();
    let removed = config::load(&f.path().join("config.yml")).unwrap();
    let (outcome, _) = grant_refresh(
        &removed,
        &issuer2,
        &authn(&removed),
        &refresh_request(&refresh.token, "reg"),
        SystemTime::now(),
    )
    .await
    .unwrap();
    assert_eq!(
        refused(outcome),
        "the refresh token's user no longer exists"
    );
}

#[tokio::test]
async fn secret_rotation_keeps_old_tokens_with_previous_secret_files() {
    let f = Fixture::new();
    let (config, issuer) = f.default();
    let refresh = login(&config, &issuer);
    let rotated_cfg =
        "    enabled: true\n    secret_file: b.secret\n    previous_secret_files: [a.secret]";
    let (rotated, issuer2) = f.config("alicepass", rotated_cfg, ROBOTS);
    let (outcome, _) = grant_refresh(
        &rotated,
        &issuer2,
        &authn(&rotated),
        &refresh_request(&refresh.token, "reg"),
        SystemTime::now(),
    )
    .await
    .unwrap();
    issued(outcome);
    let (dropped, issuer3) = f.config(
        "alicepass",
        "    enabled: true\n    secret_file: b.secret",
        ROBOTS,
    );
    let (outcome, _) = grant_refresh(
        &dropped,
        &issuer3,
        &authn(&dropped),
        &refresh_request(&refresh.token, "reg"),
        SystemTime::now(),
    )
    .await
    .unwrap();
    assert_eq!(refused(outcome), "invalid refresh token");
}

#[tokio::test]
async fn robots_get_their_scopes_not_the_acl() {
    let f = Fixture::new();
    let (config, issuer) = f.config("alicepass", REFRESH_ON, &robots("2999-01-01T00:00:00Z"));
    let request = TokenRequest {
        service: "reg".into(),
        scopes: scopes(&[
            "repository:ci/app:pull,push,delete",
            "repository:public/x:pull",
            "repository:alice/app:pull",
        ]),
        credentials: Credentials {
            account: "robot$ci".into(),
            password: Secret::new("robotsecret"),
        },
        ip: None,
        offline: true,
    };
    let (decisions, refresh) =
        issued(grant(&config, &issuer, &request, SystemTime::now()).unwrap());
    assert_eq!(decisions[0].granted, ["pull", "push"]);
    // The ACL would let anyone pull public/*, but robots only get their own scopes.
    assert!(decisions[1].granted.is_empty());
    assert!(decisions[2].granted.is_empty());
    assert!(
        decisions
            .iter()
            .all(|d| d.decided_by == DecidedBy::RobotScopes)
    );
    // Robots get refresh tokens too, re-checked on use.
    let refresh = refresh.unwrap();
    let (outcome, _) = grant_refresh(
        &config,
        &issuer,
        &authn(&config),
        &RefreshRequest {
            refresh_token: refresh.token,
            service: "reg".into(),
            scopes: scopes(&["repository:ci/x/y:push"]),
            ip: None,
        },
        SystemTime::now(),
    )
    .await
    .unwrap();
    assert_eq!(issued(outcome).0[0].granted, ["push"]);
    let wrong = TokenRequest {
        credentials: Credentials {
            account: "robot$ci".into(),
            password: Secret::new("nope"),
        },
        ..request
    };
    assert_eq!(
        refused(grant(&config, &issuer, &wrong, SystemTime::now()).unwrap()),
        "wrong password"
    );
}

#[test]
fn expired_robot_is_unauthorized() {
    let f = Fixture::new();
    let (config, issuer) = f.config("alicepass", REFRESH_ON, &robots("2001-01-01T00:00:00Z"));
    let request = TokenRequest {
        service: "reg".into(),
        scopes: scopes(&["repository:ci/app:pull"]),
        credentials: Credentials {
            account: "robot$ci".into(),
            password: Secret::new("robotsecret"),
        },
        ip: None,
        offline: false,
    };
    refused(grant(&config, &issuer, &request, SystemTime::now()).unwrap());
    assert!(config.authn.lookup("robot$ci", SystemTime::now()).is_none());
}

#[tokio::test]
async fn explain_uses_robot_scopes_for_robots() {
    let f = Fixture::new();
    let (config, _) = f.config("alicepass", REFRESH_ON, &robots("2999-01-01T00:00:00Z"));
    let d = explain(
        &config,
        "robot$ci",
        &Labels::default(),
        "reg",
        None,
        &scopes(&["repository:ci/a:push"]),
    )
    .await
    .unwrap();
    assert_eq!(d[0].decided_by, DecidedBy::RobotScopes);
    assert_eq!(d[0].granted, ["push"]);
    let d = explain(
        &config,
        "alice",
        &Labels::default(),
        "reg",
        None,
        &scopes(&["repository:alice/a:push"]),
    )
    .await
    .unwrap();
    assert_eq!(d[0].decided_by, DecidedBy::AclEntry(0));
}

/// ext_auth vouches for `carol` (with a group label), the ACL decides what it knows, and
/// ext_authz decides the rest.
#[tokio::test]
async fn external_backends_follow_the_configured_order() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    let script = |name: &str, body: &str| {
        let p = f.path().join(name);
        fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    };
    script(
        "auth.sh",
        r#"read u p; [ "$u:$p" = "carol:carolpass" ] && { echo '{"labels":{"group":["ops"]}}'; exit 0; }; exit 2"#,
    );
    script("authz.sh", r#"grep -q '"Name":"ops/' && exit 0; exit 2"#);
    let extra = "ext_auth: {command: ./auth.sh}\next_authz: {command: ./authz.sh}\n";
    let (config, issuer) = f.config("alicepass", REFRESH_ON, extra);
    let auth = crate::authn::Authenticator::with_order(
        config.authn.clone(),
        config.authn_order.clone(),
        config.credential_cache,
        crate::authn::CacheStats::default(),
    );
    let request = TokenRequest {
        service: "reg".into(),
        scopes: scopes(&[
            "repository:ops/tool:pull,push",
            "repository:public/x:pull",
            "repository:other/x:pull",
        ]),
        credentials: Credentials {
            account: "carol".into(),
            password: Secret::new("carolpass"),
        },
        ip: None,
        offline: true,
    };
    let outcome = auth.authenticate(&request.credentials).await.unwrap();
    let (decisions, refresh) = issued(
        grant_authenticated(&config, &issuer, &request, outcome, SystemTime::now())
            .await
            .unwrap(),
    );
    assert!(refresh.is_none(), "ext_auth users get no refresh token");
    assert_eq!(decisions[0].granted, ["pull", "push"]);
    assert_eq!(decisions[0].decided_by, DecidedBy::External("ext_authz"));
    assert_eq!(decisions[1].granted, ["pull"]);
    assert_eq!(decisions[1].decided_by, DecidedBy::AclEntry(1));
    assert!(decisions[2].granted.is_empty());
    assert_eq!(decisions[2].decided_by, DecidedBy::NoMatch);
    // Static users still come first; an unknown user costs one dummy bcrypt after the chain.
    let before = config.authn.bcrypt_runs();
    let nobody = Credentials {
        account: "nobody".into(),
        password: Secret::new("x"),
    };
    assert_eq!(
        auth.authenticate(&nobody).await.unwrap(),
        AuthnOutcome::NoMatch
    );
    assert_eq!(config.authn.bcrypt_runs() - before, 1);
    // The synchronous entry point refuses configurations with external authorizers.
    assert!(matches!(
        grant(
            &config,
            &issuer,
            &password_request("alice", "alicepass", false),
            SystemTime::now()
        ),
        Err(GrantError::NeedsAsync)
    ));
}

/// A principal vouched for by `source`, as an authenticator would hand it over.
fn vouched(source: &'static str, account: &str) -> AuthnOutcome {
    AuthnOutcome::Authenticated(Identity {
        account: account.to_owned(),
        labels: Labels::default(),
        kind: IdentityKind::External(source),
        fingerprint: None,
    })
}

/// Grants `request` to the principal `vouched` names: the token's subject, the source and the
/// actions granted for the first scope.
async fn granted_to(
    config: &Config,
    issuer: &TokenIssuer,
    request: &TokenRequest,
    vouched: AuthnOutcome,
) -> (String, &'static str, Vec<String>) {
    match grant_authenticated(config, issuer, request, vouched, SystemTime::now())
        .await
        .unwrap()
    {
        GrantOutcome::Issued {
            account,
            source,
            mut decisions,
            ..
        } => (account, source, decisions.swap_remove(0).granted),
        GrantOutcome::Unauthorized { reason, .. } => panic!("unauthorized: {reason}"),
    }
}

#[tokio::test]
async fn a_federated_login_named_like_a_user_of_another_source_gets_none_of_their_grants() {
    let f = Fixture::new();
    let (mut config, issuer) = f.default();
    // LDAP and GitHub both configured: either can produce `alice`.
    config.namespaces = std::sync::Arc::new(crate::authn::principal::Namespaces::new(
        vec!["ldap_auth"],
        std::collections::HashSet::new(),
        vec![("github_auth", None)],
    ));
    let request = password_request("alice", "minted", false);
    let (account, source, granted) =
        granted_to(&config, &issuer, &request, vouched("github_auth", "alice")).await;
    assert_eq!(account, "github_auth:alice");
    assert_eq!(source, "github_auth");
    assert!(granted.is_empty(), "{granted:?}");
    // The directory's alice keeps her entry, under her bare name.
    let (account, _, granted) =
        granted_to(&config, &issuer, &request, vouched("ldap_auth", "alice")).await;
    assert_eq!(account, "alice");
    assert_eq!(granted, ["pull", "push"]);
}

#[tokio::test]
async fn the_token_names_the_canonical_account_not_the_typed_one() {
    let f = Fixture::new();
    let (config, issuer) = f.default();
    let request = password_request("ALICE ", "whatever", false);
    let (account, _, granted) =
        granted_to(&config, &issuer, &request, vouched("ldap_auth", "alice")).await;
    assert_eq!(account, "alice");
    assert_eq!(granted, ["pull", "push"]);
}

#[tokio::test]
async fn a_password_source_account_spelled_like_a_federated_subject_is_refused() {
    let f = Fixture::new();
    let (config, issuer) = f.default();
    let request = password_request("github_auth:alice", "x", false);
    let outcome = grant_authenticated(
        &config,
        &issuer,
        &request,
        vouched("ldap_auth", "github_auth:alice"),
        SystemTime::now(),
    )
    .await
    .unwrap();
    assert!(refused(outcome).contains("reserved"));
}
