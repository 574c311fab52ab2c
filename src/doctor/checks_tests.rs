use std::collections::BTreeSet;

use super::*;
use crate::doctor::Status;

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn challenges_parse_quoted_values_with_commas_and_escapes() {
    let c = parse_challenge(
        r#"Bearer realm="https://auth.example.com/auth",service="Docker registry",scope="repository:a/b:pull,push",error="invalid_token""#,
    )
    .expect("challenge");
    assert!(c.is_bearer());
    assert_eq!(c.param("realm"), Some("https://auth.example.com/auth"));
    assert_eq!(c.param("service"), Some("Docker registry"));
    assert_eq!(c.param("scope"), Some("repository:a/b:pull,push"));
    assert_eq!(c.param("error"), Some("invalid_token"));
    let c = parse_challenge(r#"bearer Realm = "a\"b" , service=plain"#).expect("challenge");
    assert!(c.is_bearer());
    assert_eq!(c.param("realm"), Some("a\"b"));
    assert_eq!(c.param("service"), Some("plain"));
    let c = parse_challenge(r#"Basic realm="Registry Realm""#).expect("challenge");
    assert!(!c.is_bearer());
    assert_eq!(parse_challenge("  "), None);
    // An unterminated quote ends the list; what came before stays.
    let c = parse_challenge(r#"Bearer service="s",realm="open"#).expect("challenge");
    assert_eq!(c.params, vec![("service".to_owned(), "s".to_owned())]);
}

#[test]
fn the_registry_must_answer_401_with_a_bearer_challenge() {
    let bearer = parse_challenge(r#"Bearer realm="http://a/auth",service="svc""#);
    let (f, b) = registry_challenge("http://r/v2/", 401, &[bearer.expect("c")]);
    assert_eq!(f.status, Status::Ok);
    assert_eq!(
        b,
        Some(BearerChallenge {
            realm: "http://a/auth".into(),
            service: "svc".into()
        })
    );
    let (f, b) = registry_challenge("http://r/v2/", 200, &[]);
    assert_eq!((f.status, b), (Status::Fail, None));
    assert!(f.seen.contains("does not ask for tokens"), "{}", f.seen);
    let basic = parse_challenge(r#"Basic realm="Registry Realm""#).expect("c");
    let (f, _) = registry_challenge("http://r/v2/", 401, &[basic]);
    assert_eq!(f.status, Status::Fail);
    assert!(f.seen.contains("Basic"), "{}", f.seen);
    let (f, _) = registry_challenge("http://r/v2/", 404, &[]);
    assert!(f.seen.contains("HTTP 404"), "{}", f.seen);
    let no_service = parse_challenge(r#"Bearer realm="http://a/auth""#).expect("c");
    let (f, _) = registry_challenge("http://r/v2/", 401, &[no_service]);
    assert_eq!(f.status, Status::Fail);
}

#[test]
fn the_realm_path_gives_the_prefix() {
    assert_eq!(realm_prefix("/auth"), Some(""));
    assert_eq!(realm_prefix("/auth/token"), Some(""));
    assert_eq!(realm_prefix("/auth/token/"), Some(""));
    assert_eq!(realm_prefix("/ra/auth"), Some("/ra"));
    assert_eq!(realm_prefix("/token"), None);
}

#[test]
fn a_realm_path_that_is_not_the_prefix_fails_unless_the_realm_is_us() {
    let f = path_prefix("http://h:1", "/auth", "", false, None);
    assert_eq!(f.status, Status::Ok);
    let f = path_prefix(
        "http://h:1",
        "/auth",
        "/ra",
        false,
        Some("http://h:1/ra/auth"),
    );
    assert_eq!(f.status, Status::Fail);
    assert!(
        f.seen.contains("this server answers at http://h:1/ra/auth"),
        "{}",
        f.seen
    );
    let fix = f.fix.expect("fix");
    assert!(
        fix.contains("auth.token.realm to http://h:1/ra/auth"),
        "{fix}"
    );
    assert!(fix.contains("server.path_prefix to \"\""), "{fix}");
    // A proxy may map /public/auth to our /auth: the realm proved to be us.
    let f = path_prefix("http://h:1", "/public/auth", "", true, None);
    assert_eq!(f.status, Status::Ok);
    let f = path_prefix("http://h:1", "/token", "", false, None);
    assert_eq!(f.status, Status::Fail);
    assert_eq!(f.entry, Some(Entry::PathPrefix));
}

#[test]
fn the_service_must_be_allowed() {
    assert_eq!(service("svc", None).status, Status::Ok);
    let allowed = vec!["svc".to_owned(), "other".to_owned()];
    assert_eq!(service("svc", Some(&allowed)).status, Status::Ok);
    let f = service("Docker registry", Some(&allowed[1..]));
    assert_eq!(f.status, Status::Fail);
    assert!(
        f.seen
            .contains("\"Docker registry\" is not in token.allowed_services")
    );
    assert!(f.fix.expect("fix").contains("add \"Docker registry\""));
}

#[test]
fn the_realm_is_us_when_it_publishes_our_keys_and_issuer() {
    let ours = Ours {
        issuer: "iss",
        libtrust_kids: set(&["AAAA:BBBB"]),
        jwks_kids: set(&["thumb"]),
    };
    let same = RealmSeen {
        bundle_kids: Some(set(&["AAAA:BBBB"])),
        token_issuer: Some("iss".into()),
        ..RealmSeen::default()
    };
    let (f, confirmed) = realm_identity("http://r/auth", &ours, &same);
    assert!(confirmed);
    assert_eq!(f.status, Status::Ok);
    let other_keys = RealmSeen {
        bundle_kids: Some(set(&["CCCC:DDDD"])),
        ..RealmSeen::default()
    };
    let (f, confirmed) = realm_identity("http://r/auth", &ours, &other_keys);
    assert!(!confirmed);
    assert_eq!(f.status, Status::Fail);
    assert!(
        f.seen.contains("publishes other keys (kid CCCC:DDDD)"),
        "{}",
        f.seen
    );
    let other_issuer = RealmSeen {
        jwks_kids: Some(set(&["thumb"])),
        token_issuer: Some("someone".into()),
        ..RealmSeen::default()
    };
    let (f, _) = realm_identity("http://r/auth", &ours, &other_issuer);
    assert_eq!(f.status, Status::Fail);
    assert!(f.seen.contains("iss \"someone\""), "{}", f.seen);
    let nothing = RealmSeen {
        documents_status: "rootcertbundle.pem: not found".into(),
        token_status: Some("HTTP 404".into()),
        ..RealmSeen::default()
    };
    let (f, confirmed) = realm_identity("http://r/auth", &ours, &nothing);
    assert!(!confirmed);
    assert_eq!(f.status, Status::Fail);
    assert!(f.seen.contains("is not this server"), "{}", f.seen);
    assert_eq!(f.entry, Some(Entry::Realm));
    let down = RealmSeen {
        unreachable: Some("cannot connect: Connection refused".into()),
        ..RealmSeen::default()
    };
    let (f, confirmed) = realm_identity("http://r/auth", &ours, &down);
    assert!(!confirmed);
    assert!(
        f.seen
            .contains("cannot be reached from here: cannot connect"),
        "{}",
        f.seen
    );
}

#[test]
fn clock_skew_fails_beyond_what_the_registry_tolerates() {
    assert_eq!(clock(0, 5, 900).status, Status::Ok);
    assert_eq!(clock(-5, 5, 900).status, Status::Ok);
    assert_eq!(clock(-30, 5, 900).status, Status::Warn);
    // nbf = iat − 5 s, 60 s leeway: 65 s behind is the edge.
    assert_eq!(clock(-65, 5, 900).status, Status::Warn);
    let f = clock(-66, 5, 900);
    assert_eq!(f.status, Status::Fail);
    assert!(f.seen.contains("66 s behind"), "{}", f.seen);
    assert_eq!(clock(960, 5, 900).status, Status::Warn);
    let f = clock(961, 5, 900);
    assert_eq!(f.status, Status::Fail);
    assert!(f.seen.contains("expired"), "{}", f.seen);
}

#[test]
fn tls_errors_are_classified() {
    assert_eq!(
        classify_tls("invalid peer certificate: UnknownIssuer"),
        Some(TlsProblem::UnknownCa)
    );
    assert_eq!(
        classify_tls("InvalidCertificate(NotValidForName(..))"),
        Some(TlsProblem::NameMismatch)
    );
    assert_eq!(
        classify_tls("invalid peer certificate: Expired"),
        Some(TlsProblem::Validity)
    );
    assert_eq!(
        classify_tls("received corrupt message of type InvalidContentType"),
        Some(TlsProblem::NotTls)
    );
    assert_eq!(classify_tls("Connection refused (os error 111)"), None);
    let f = tls(
        "registry",
        "https://r/v2/",
        &TlsProblem::UnknownCa,
        "d",
        false,
    );
    assert_eq!(f.status, Status::Fail);
    assert!(f.fix.as_deref().expect("fix").contains("--ca-file"));
    let f = tls(
        "registry",
        "https://r/v2/",
        &TlsProblem::UnknownCa,
        "d",
        true,
    );
    assert!(
        f.fix
            .as_deref()
            .expect("fix")
            .contains("does not hold the CA")
    );
}

#[test]
fn a_realm_on_our_host_at_another_path_points_at_the_prefix() {
    let f = realm_at_other_path("http://h/auth", "http://h/ra/auth");
    assert_eq!(f.status, Status::Fail);
    assert_eq!(f.entry, Some(Entry::PathPrefix));
    assert!(
        f.seen.contains("this server is at http://h/ra/auth"),
        "{}",
        f.seen
    );
}
