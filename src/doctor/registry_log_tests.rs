use std::collections::BTreeSet;

use super::*;
use crate::doctor::Status;

// Lines as distribution writes them (logrus text formatter), copied from registry 2.8.2 and
// v3.1.1 logs of the doctor's end-to-end tests.
const V28_UNTRUSTED_KEY: &str = r#"time="2026-12-07T20:44:10.019453145Z" level=info msg="token signed by untrusted key with ID: \"AAAA:BBBB:CCCC\"""#;
const V28_CHAIN: &str = r#"time="2026-12-07T20:44:10.025098457Z" level=info msg="unable to verify certificate chain: x509: certificate signed by unknown authority (possibly because of \"x509: invalid signature: parent certificate cannot sign this kind of certificate\" while trying to verify candidate authority certificate \"registry-auth token signer\")""#;
const V3_UNTRUSTED_KEY: &str = r#"time="2026-12-07T20:50:29.553259009Z" level=info msg="failed to verify token: token signed by untrusted key with ID: \"AAAA:BBBB:CCCC\"""#;
// The others follow the format strings of distribution's registry/auth/token/token.go.
const ISSUER: &str =
    r#"time="2026-12-07T20:40:02Z" level=info msg="token from untrusted issuer: \"Acme\"""#;
const AUDIENCE_28: &str =
    r#"time="2026-12-07T20:40:02Z" level=info msg="token intended for another audience: \"svc\"""#;
const AUDIENCE_3: &str =
    r#"time="2026-12-07T20:40:02Z" level=info msg="token intended for another audience: [svc]""#;
const UNKNOWN_CA: &str = r#"time="2026-12-07T20:40:02Z" level=info msg="failed to verify token: tls: failed to verify certificate: x509: certificate signed by unknown authority""#;

#[test]
fn reasons_are_read_from_both_wordings() {
    assert_eq!(
        classify(V3_UNTRUSTED_KEY),
        Some(Reason::UntrustedKey {
            kid: "AAAA:BBBB:CCCC".into(),
            v3: true
        })
    );
    assert_eq!(
        classify(
            r#"level=info msg="unable to get token signing key: token signed by untrusted key with ID: \"K\"""#
        ),
        Some(Reason::UntrustedKey {
            kid: "K".into(),
            v3: false
        })
    );
    assert_eq!(
        classify(V28_UNTRUSTED_KEY),
        Some(Reason::UntrustedKey {
            kid: "AAAA:BBBB:CCCC".into(),
            v3: false
        })
    );
    assert_eq!(classify(V28_CHAIN), Some(Reason::UnknownAuthority));
    assert_eq!(classify(ISSUER), Some(Reason::Issuer("Acme".into())));
    assert_eq!(classify(AUDIENCE_28), Some(Reason::Audience("svc".into())));
    assert_eq!(classify(AUDIENCE_3), Some(Reason::Audience("svc".into())));
    assert_eq!(classify(UNKNOWN_CA), Some(Reason::UnknownAuthority));
    assert_eq!(
        classify(r#"msg="token not to be used after 2026-12-07 20:00:00 +0000 UTC - currently …""#),
        Some(Reason::Expired)
    );
    assert_eq!(
        classify(
            r#"msg="token not to be used before 2026-12-07 20:00:00 +0000 UTC - currently …""#
        ),
        Some(Reason::NotYetValid)
    );
    assert!(matches!(
        classify(
            r#"msg="unable to verify token signature: unable to verify signature: EC Public Key with curve \"P-256\" does not support signature algorithm \"ES384\"""#
        ),
        Some(Reason::Algorithm(_))
    ));
    assert!(matches!(
        classify(
            r#"level=error msg="error checking authorization: go-jose/go-jose: error in cryptographic primitive" http.request.useragent="registry-auth-doctor/1 (run 1)""#
        ),
        Some(Reason::Signature(_))
    ));
    assert_eq!(
        classify(r#"level=info msg="response completed" http.response.status=401"#),
        None
    );
}

#[test]
fn lines_are_picked_by_time_window_or_marker() {
    let t = OffsetDateTime::parse("2026-12-07T20:40:02Z", &Rfc3339)
        .expect("time")
        .unix_timestamp();
    let text = format!(
        "{ISSUER}\ntime=\"2026-12-07T20:30:00Z\" msg=old\nno time but run 42 marker\nno time\n{{\"time\":\"2026-12-07T20:40:03Z\",\"msg\":\"json\"}}\n"
    );
    let picked = select(&text, Some((t - 1, t + 1)), "run 42");
    assert_eq!(picked.len(), 3, "{picked:?}");
    assert_eq!(picked[0], ISSUER);
    assert!(picked[1].contains("marker"));
    assert!(picked[2].contains("json"));
    assert_eq!(select(&text, None, "x").len(), 5);
}

fn ctx(mode: HeaderMode) -> LogContext<'static> {
    LogContext {
        issuer: "registry-auth",
        mode,
        our_kids: BTreeSet::from(["AAAA:BBBB:CCCC".to_owned(), "thumb".to_owned()]),
        service: Some("svc"),
        bundle_url: Some("http://auth/rootcertbundle.pem".into()),
        other_header_accepted: true,
    }
}

#[test]
fn each_reason_becomes_the_precise_fix() {
    let f = findings(&[ISSUER, ISSUER], true, &ctx(HeaderMode::X5c));
    assert_eq!(f.len(), 1, "one finding per distinct reason");
    assert!(!f[0].seen.contains("more line"), "{}", f[0].seen);
    assert_eq!(f[0].status, Status::Fail);
    assert_eq!(f[0].entry, Some(Entry::Issuer));
    assert!(
        f[0].fix
            .as_deref()
            .expect("fix")
            .contains("auth.token.issuer to \"registry-auth\"")
    );

    let f = &findings(&[V3_UNTRUSTED_KEY], true, &ctx(HeaderMode::KidLibtrust))[0];
    assert!(f.seen.starts_with("registry v3:"), "{}", f.seen);
    assert!(
        f.fix
            .as_deref()
            .expect("fix")
            .contains("signing_header: x5c")
    );

    // v3 refusing a libtrust kid, and every other header too: the key is missing, not the
    // header.
    let none_accepted = LogContext {
        other_header_accepted: false,
        ..ctx(HeaderMode::KidLibtrust)
    };
    let f = &findings(&[V3_UNTRUSTED_KEY], true, &none_accepted)[0];
    assert!(
        f.seen.contains("does not hold our signing key"),
        "{}",
        f.seen
    );
    assert!(
        f.fix
            .as_deref()
            .expect("fix")
            .contains("http://auth/rootcertbundle.pem")
    );

    let f = &findings(&[V3_UNTRUSTED_KEY], true, &ctx(HeaderMode::KidThumbprint))[0];
    assert!(
        f.fix
            .as_deref()
            .expect("fix")
            .contains("http://auth/rootcertbundle.pem")
    );

    let f = &findings(&[V28_UNTRUSTED_KEY], true, &ctx(HeaderMode::KidLibtrust))[0];
    assert!(!f.seen.contains("v3"), "{}", f.seen);
    assert!(f.fix.as_deref().expect("fix").contains("rootcertbundle"));

    let foreign =
        r#"msg="unable to get token signing key: token signed by untrusted key with ID: \"ZZZZ\"""#;
    let f = &findings(&[foreign], true, &ctx(HeaderMode::KidLibtrust))[0];
    assert_eq!(f.entry, Some(Entry::Realm));

    let f = &findings(&[AUDIENCE_3], true, &ctx(HeaderMode::X5c))[0];
    assert_eq!(f.entry, Some(Entry::Service));
    let f = &findings(&[UNKNOWN_CA], true, &ctx(HeaderMode::X5c))[0];
    assert_eq!(f.entry, Some(Entry::UntrustedKey));
    assert!(f.fix.as_deref().expect("fix").contains("kid-thumbprint"));
}

#[test]
fn the_retries_complaints_are_counted_under_the_first_ones_entry() {
    // 2.8 refusing all three headers of a key it does not hold, in the doctor's order.
    let lines = [
        r#"msg="token signed by untrusted key with ID: \"AAAA:BBBB:CCCC\"""#,
        r#"msg="unable to verify certificate chain: x509: certificate signed by unknown authority""#,
        r#"msg="token signed by untrusted key with ID: \"thumb\"""#,
    ];
    let f = findings(&lines, true, &ctx(HeaderMode::KidLibtrust));
    assert_eq!(f.len(), 1, "{f:#?}");
    assert!(f[0].seen.contains("AAAA:BBBB:CC"), "{}", f[0].seen);
    assert!(f[0].seen.contains("and 2 more line(s)"), "{}", f[0].seen);
}

#[test]
fn no_reason_is_a_warning_only_when_a_token_was_refused() {
    let quiet = [r#"msg="response completed""#];
    assert_eq!(
        findings(&quiet, false, &ctx(HeaderMode::X5c))[0].status,
        Status::Ok
    );
    let f = &findings(&quiet, true, &ctx(HeaderMode::X5c))[0];
    assert_eq!(f.status, Status::Warn);
    assert_eq!(f.entry, Some(Entry::RegistryLog));
}
