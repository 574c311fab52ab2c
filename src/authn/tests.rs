use std::collections::HashMap;

use super::*;

fn user(password: &str, labels: Labels) -> UserRecord {
    UserRecord {
        hash: bcrypt::hash(password, 4).unwrap(),
        labels,
    }
}

fn chain(anonymous: bool) -> Chain {
    let mut users = HashMap::new();
    users.insert(
        "alice".to_owned(),
        user("alicepass", Labels::from_iter([("team", vec!["dev"])])),
    );
    users.insert("bob".to_owned(), user("bobpass", Labels::default()));
    Chain::new(
        StaticUsers::new(
            users,
            anonymous.then(|| Labels::from_iter([("kind", vec!["anon"])])),
        ),
        Robots::default(),
    )
    .unwrap()
}

fn creds(account: &str, password: &str) -> Credentials {
    Credentials {
        account: account.to_owned(),
        password: Secret::new(password),
    }
}

#[test]
fn right_password_authenticates_with_labels() {
    let outcome = chain(false)
        .authenticate(&creds("alice", "alicepass"))
        .unwrap();
    let AuthnOutcome::Authenticated(identity) = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(identity.labels, Labels::from_iter([("team", vec!["dev"])]));
    assert_eq!(identity.kind, IdentityKind::User);
    assert!(identity.fingerprint.is_some());
}

#[test]
fn wrong_and_empty_passwords_are_wrong_password() {
    let c = chain(false);
    assert_eq!(
        c.authenticate(&creds("alice", "bobpass")).unwrap(),
        AuthnOutcome::WrongPassword
    );
    assert_eq!(
        c.authenticate(&creds("alice", "")).unwrap(),
        AuthnOutcome::WrongPassword
    );
    assert_eq!(
        c.authenticate(&creds("alice", "ALICEPASS")).unwrap(),
        AuthnOutcome::WrongPassword
    );
}

#[test]
fn unknown_user_is_no_match() {
    assert_eq!(
        chain(true).authenticate(&creds("mallory", "x")).unwrap(),
        AuthnOutcome::NoMatch
    );
}

#[test]
fn anonymous_needs_the_empty_user_entry() {
    assert_eq!(
        chain(false)
            .authenticate(&Credentials::anonymous())
            .unwrap(),
        AuthnOutcome::NoMatch
    );
    assert_eq!(
        chain(true).authenticate(&Credentials::anonymous()).unwrap(),
        AuthnOutcome::Authenticated(Identity {
            account: String::new(),
            labels: Labels::from_iter([("kind", vec!["anon"])]),
            kind: IdentityKind::Anonymous,
            fingerprint: None,
        })
    );
    // An empty user name with a password is not anonymous access.
    assert_eq!(
        chain(true).authenticate(&creds("", "something")).unwrap(),
        AuthnOutcome::NoMatch
    );
}

#[test]
fn unknown_user_and_wrong_password_cost_exactly_one_bcrypt_each() {
    let c = chain(true);
    for (account, password) in [
        ("alice", "wrong"),
        ("mallory", "wrong"),
        ("alice", ""),
        ("mallory", ""),
        ("alice", "alicepass"),
    ] {
        let before = bcrypt_verifications_on_this_thread();
        c.authenticate(&creds(account, password)).unwrap();
        assert_eq!(
            bcrypt_verifications_on_this_thread() - before,
            1,
            "{account}/{password:?} must run exactly one bcrypt verification"
        );
    }
    let before = bcrypt_verifications_on_this_thread();
    c.authenticate(&Credentials::anonymous()).unwrap();
    assert_eq!(
        bcrypt_verifications_on_this_thread(),
        before,
        "anonymous runs no bcrypt"
    );
}

#[test]
fn dummy_hash_uses_the_highest_configured_cost() {
    let mut users = HashMap::new();
    users.insert(
        "a".to_owned(),
        UserRecord {
            hash: bcrypt::hash("x", 4).unwrap(),
            labels: Labels::default(),
        },
    );
    users.insert(
        "b".to_owned(),
        UserRecord {
            hash: bcrypt::hash("x", 6).unwrap(),
            labels: Labels::default(),
        },
    );
    let c = Chain::new(StaticUsers::new(users, None), Robots::default()).unwrap();
    assert!(c.dummy_hash.starts_with("$2b$06$"), "{}", c.dummy_hash);
}

#[test]
fn secret_debug_is_redacted() {
    let c = creds("alice", "hunter2");
    let shown = format!("{c:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("alice"));
}

#[test]
fn robots_log_in_with_their_prefix_and_expire() {
    let mut robots = HashMap::new();
    robots.insert(
        "ci".to_owned(),
        RobotRecord {
            hash: bcrypt::hash("s3cret", 4).unwrap(),
            expires: Some(std::time::SystemTime::now() + std::time::Duration::from_secs(60)),
        },
    );
    robots.insert(
        "old".to_owned(),
        RobotRecord {
            hash: bcrypt::hash("s3cret", 4).unwrap(),
            expires: Some(std::time::UNIX_EPOCH),
        },
    );
    let c = Chain::new(StaticUsers::default(), Robots::new(robots)).unwrap();
    let AuthnOutcome::Authenticated(id) = c.authenticate(&creds("robot$ci", "s3cret")).unwrap()
    else {
        panic!("robot login failed");
    };
    assert_eq!(id.kind, IdentityKind::Robot("ci".to_owned()));
    for (account, password, expected) in [
        ("robot$ci", "wrong", AuthnOutcome::WrongPassword),
        ("robot$ci", "", AuthnOutcome::WrongPassword),
        ("robot$old", "s3cret", AuthnOutcome::WrongPassword),
        ("robot$nobody", "s3cret", AuthnOutcome::NoMatch),
        ("ci", "s3cret", AuthnOutcome::NoMatch),
    ] {
        let before = bcrypt_verifications_on_this_thread();
        assert_eq!(
            c.authenticate(&creds(account, password)).unwrap(),
            expected,
            "{account}"
        );
        assert_eq!(
            bcrypt_verifications_on_this_thread() - before,
            1,
            "{account}"
        );
    }
    assert!(c.lookup("robot$ci", std::time::SystemTime::now()).is_some());
    assert!(
        c.lookup("robot$old", std::time::SystemTime::now())
            .is_none()
    );
}
