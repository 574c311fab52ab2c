use super::*;
use crate::doctor::checks::parse_challenge;

fn ctx() -> TrustContext<'static> {
    TrustContext {
        issuer: "iss",
        realm_base: Some("http://a"),
        service_failed: false,
        clock_failed: false,
        has_log: false,
    }
}

fn refused() -> Presented {
    Presented::Refused {
        status: 401,
        error: Some("invalid_token".into()),
    }
}

#[test]
fn a_refused_token_that_another_header_fixes_names_that_header() {
    let f = trust(HeaderMode::X5c, "kid", &Presented::Accepted, &[], &ctx());
    assert_eq!(f.status, Status::Ok);
    let retries = [
        (HeaderMode::X5c, Presented::Accepted),
        (HeaderMode::KidThumbprint, Presented::Accepted),
    ];
    let f = trust(HeaderMode::KidLibtrust, "kid", &refused(), &retries, &ctx());
    assert_eq!(f.status, Status::Fail);
    assert_eq!(f.entry, Some(Entry::UntrustedKey));
    let fix = f.fix.expect("fix");
    assert!(fix.contains("signing_header: x5c"), "{fix}");
    assert!(fix.contains("v3"), "{fix}");
    assert!(
        f.seen
            .contains("accepted the same token with x5c, kid-thumbprint")
    );
    let retries = [
        (HeaderMode::X5c, refused()),
        (HeaderMode::KidLibtrust, Presented::Accepted),
    ];
    let f = trust(
        HeaderMode::KidThumbprint,
        "kid",
        &refused(),
        &retries,
        &ctx(),
    );
    assert!(f.fix.expect("fix").contains("signing_header: kid-libtrust"));
}

#[test]
fn a_token_refused_with_every_header_points_at_keys_issuer_or_the_failed_check() {
    let retries = [
        (HeaderMode::X5c, refused()),
        (HeaderMode::KidThumbprint, refused()),
    ];
    let f = trust(HeaderMode::KidLibtrust, "kid", &refused(), &retries, &ctx());
    assert_eq!(f.status, Status::Fail);
    let fix = f.fix.expect("fix");
    assert!(fix.contains("http://a/rootcertbundle.pem"), "{fix}");
    assert!(fix.contains("issuer is not \"iss\""), "{fix}");
    assert!(fix.contains("--registry-log"), "{fix}");
    let c = TrustContext {
        clock_failed: true,
        ..ctx()
    };
    let f = trust(HeaderMode::KidLibtrust, "kid", &refused(), &retries, &c);
    assert_eq!(f.entry, Some(Entry::Clock));
    let c = TrustContext {
        service_failed: true,
        ..ctx()
    };
    let f = trust(HeaderMode::KidLibtrust, "kid", &refused(), &retries, &c);
    assert_eq!(f.entry, Some(Entry::Service));
}

#[test]
fn answers_become_presented() {
    let c =
        parse_challenge(r#"Bearer realm="r",service="s",error="insufficient_scope""#).expect("c");
    assert_eq!(Presented::from_answer(200, &[]), Presented::Accepted);
    assert_eq!(Presented::from_answer(404, &[]), Presented::Accepted);
    assert_eq!(
        Presented::from_answer(401, &[c]),
        Presented::Refused {
            status: 401,
            error: Some("insufficient_scope".into())
        }
    );
    assert_eq!(
        Presented::from_answer(400, &[]),
        Presented::Refused {
            status: 400,
            error: None
        }
    );
}

#[test]
fn a_scope_without_pull_is_an_acl_matter() {
    let ok = scope(
        "repository:a/b",
        "alice",
        &Presented::Accepted,
        &["pull".into()],
    );
    assert_eq!(ok.status, Status::Ok);
    let denied = Presented::Refused {
        status: 401,
        error: Some("insufficient_scope".into()),
    };
    let f = scope("repository:a/b", "", &denied, &[]);
    assert_eq!(f.status, Status::Fail);
    assert_eq!(f.entry, Some(Entry::Scope));
    assert!(f.seen.contains("grants anonymous nothing"), "{}", f.seen);
}

#[test]
fn the_log_names_the_cause_a_refused_trust_left_open() {
    let retries = [(HeaderMode::X5c, refused())];
    let mut t = trust(HeaderMode::KidLibtrust, "kid", &refused(), &retries, &ctx());
    let log = [
        Finding::ok("registry-log", "x"),
        Finding::fail("registry-log", "issuer", "set the issuer", Entry::Issuer),
    ];
    refine_trust(&mut t, &log);
    assert_eq!(t.entry, Some(Entry::Issuer));
    assert_eq!(
        t.fix.as_deref(),
        Some("the registry log names the cause: set the issuer")
    );
    let mut ok = trust(HeaderMode::X5c, "kid", &Presented::Accepted, &[], &ctx());
    refine_trust(&mut ok, &log);
    assert_eq!(ok.status, Status::Ok);
    assert_eq!(ok.fix, None);
}
