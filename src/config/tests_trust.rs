//! Config tests for key identification and publication: `signing_header: kid-thumbprint`,
//! docker_auth's `disable_legacy_key_id`, and `token.extra_certificates`.

use std::fs;
use std::path::Path;

use super::*;
use crate::token::{self, KeyKind};

const REST: &str = "users: {\"\": {}}\nacl: []\n";

fn dir_with_keys() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let key = token::generate_self_signed(KeyKind::EcP256, "t", 30).unwrap();
    token::write_key_files(&key, &d.path().join("key.pem"), &d.path().join("cert.pem")).unwrap();
    d
}

fn load_in(dir: &Path, token_extra: &str) -> Result<Config, ConfigError> {
    let p = dir.join("config.yml");
    fs::write(
        &p,
        format!("token: {{issuer: A, certificate: cert.pem, key: key.pem{token_extra}}}\n{REST}"),
    )
    .unwrap();
    load(&p)
}

fn issues(result: Result<Config, ConfigError>) -> Vec<ConfigIssue> {
    match result {
        Err(ConfigError::Invalid { issues, .. }) => issues,
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("config unexpectedly valid"),
    }
}

fn message<'a>(issues: &'a [ConfigIssue], path: &str) -> &'a str {
    &issues
        .iter()
        .find(|i| i.path == path)
        .unwrap_or_else(|| panic!("no issue at {path}; got {issues:#?}"))
        .message
}

#[test]
fn signing_header_values() {
    let d = dir_with_keys();
    for (value, mode) in [
        ("kid-libtrust", HeaderMode::KidLibtrust),
        ("x5c", HeaderMode::X5c),
        ("kid-thumbprint", HeaderMode::KidThumbprint),
    ] {
        let c = load_in(d.path(), &format!(", signing_header: {value}")).unwrap();
        assert_eq!(c.token.header_mode, mode, "{value}");
    }
}

#[test]
fn disable_legacy_key_id_maps_to_kid_thumbprint() {
    let d = dir_with_keys();
    let c = load_in(d.path(), ", disable_legacy_key_id: false").unwrap();
    assert_eq!(c.token.header_mode, HeaderMode::KidLibtrust);
    let c = load_in(d.path(), ", disable_legacy_key_id: true").unwrap();
    assert_eq!(c.token.header_mode, HeaderMode::KidThumbprint);
    let c = load_in(
        d.path(),
        ", disable_legacy_key_id: true, signing_header: kid-thumbprint",
    )
    .unwrap();
    assert_eq!(c.token.header_mode, HeaderMode::KidThumbprint);
    // `false` leaves an explicit choice alone.
    let c = load_in(
        d.path(),
        ", disable_legacy_key_id: false, signing_header: x5c",
    )
    .unwrap();
    assert_eq!(c.token.header_mode, HeaderMode::X5c);

    let i = issues(load_in(
        d.path(),
        ", disable_legacy_key_id: true, signing_header: x5c",
    ));
    assert!(
        message(&i, "token.disable_legacy_key_id").contains("kid-thumbprint"),
        "{i:#?}"
    );
    let i = issues(load_in(d.path(), ", disable_legacy_key_id: yes please"));
    assert!(
        message(&i, "token.disable_legacy_key_id").contains("expected true or false"),
        "{i:#?}"
    );
}

#[test]
fn extra_certificates_load_relative_to_the_config_folder() {
    let d = dir_with_keys();
    fs::create_dir(d.path().join("next")).unwrap();
    let next = token::generate_self_signed(KeyKind::Rsa2048, "next", 30).unwrap();
    fs::write(d.path().join("next/next.crt"), &next.cert_pem).unwrap();
    let ca = token::generate_ca(KeyKind::EcP384, "ca", 30).unwrap();
    let leaf = token::generate_signed_by(KeyKind::EcP384, "leaf", 30, &ca).unwrap();
    let chain = d.path().join("chain.crt");
    fs::write(&chain, format!("{}{}", leaf.cert_pem, ca.cert_pem)).unwrap();

    let c = load_in(
        d.path(),
        &format!(
            ", extra_certificates: [next/next.crt, {}]",
            serde_json::to_string(chain.to_str().unwrap()).unwrap()
        ),
    )
    .unwrap();
    let extras = &c.token.extra_certificates;
    assert_eq!(extras.len(), 2);
    assert_eq!(extras[0].algorithm(), token::Algorithm::Rs256);
    assert_eq!(extras[1].algorithm(), token::Algorithm::Es384);
    assert_eq!(extras[1].certificate_chain().len(), 2);

    let published = token::PublishedKeys::new(c.token.signing_key.as_ref().unwrap(), extras);
    assert_eq!(published.keys().len(), 3);

    // No extras: an empty list.
    let c = load_in(d.path(), "").unwrap();
    assert!(c.token.extra_certificates.is_empty());
}

#[test]
fn extra_certificate_errors_name_the_entry() {
    let d = dir_with_keys();
    fs::write(d.path().join("garbage.crt"), "not a certificate").unwrap();
    let i = issues(load_in(
        d.path(),
        ", extra_certificates: [cert.pem, missing.crt, key.pem, garbage.crt]",
    ));
    assert_eq!(i.len(), 3, "{i:#?}");
    let missing = message(&i, "token.extra_certificates[1]");
    assert!(missing.contains("missing.crt"), "{missing}");
    assert!(
        message(&i, "token.extra_certificates[2]").contains("swapped"),
        "{i:#?}"
    );
    assert!(
        message(&i, "token.extra_certificates[3]").contains("no PEM CERTIFICATE"),
        "{i:#?}"
    );
}

#[test]
fn short_ec_coordinate_warns_only_in_kid_thumbprint_mode() {
    // Draw raw P-256 keys until one has x or y starting with a zero byte (≈ 1 in 128).
    let d = tempfile::tempdir().unwrap();
    let short = loop {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = pair.public_key_raw();
        if raw[1] == 0 || raw[33] == 0 {
            break pair;
        }
    };
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    let cert = params.self_signed(&short).unwrap();
    fs::write(d.path().join("cert.pem"), cert.pem()).unwrap();
    fs::write(d.path().join("key.pem"), short.serialize_pem()).unwrap();
    // Owner-only, like a real key (a readable one is a warning of its own).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(d.path().join("key.pem"), fs::Permissions::from_mode(0o600)).unwrap();
    }

    let c = load_in(d.path(), ", signing_header: kid-thumbprint").unwrap();
    let w = c
        .warnings
        .iter()
        .find(|w| w.path == "token.key")
        .unwrap_or_else(|| panic!("no warning: {:#?}", c.warnings));
    assert!(w.message.contains("gen-keys"), "{}", w.message);
    // The `jwks` file carries our `kid`, so it is a fix too (registry v3.1 uses it as written).
    assert!(
        w.message.contains("registry-auth jwks") && w.message.contains("auth.token.jwks"),
        "{}",
        w.message
    );
    for other in ["x5c", "kid-libtrust"] {
        let c = load_in(d.path(), &format!(", signing_header: {other}")).unwrap();
        assert!(c.warnings.is_empty(), "{other}: {:#?}", c.warnings);
    }
}

#[test]
fn signing_header_left_out_warns_that_registry_v3_needs_the_jwks() {
    let d = tempfile::tempdir().unwrap();
    let k = crate::token::generate_self_signed(crate::token::KeyKind::EcP256, "t", 30).unwrap();
    fs::write(d.path().join("cert.pem"), &k.cert_pem).unwrap();
    fs::write(d.path().join("key.pem"), &k.key_pem).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(d.path().join("key.pem"), fs::Permissions::from_mode(0o600)).unwrap();
    }
    // Left out: kid-libtrust by default, which registry v3 refuses without our JWK Set.
    let c = load_in(d.path(), "").unwrap();
    assert_eq!(c.token.header_mode, HeaderMode::KidLibtrust);
    let w = c
        .warnings
        .iter()
        .find(|w| w.path == "token.signing_header")
        .unwrap_or_else(|| panic!("no warning: {:#?}", c.warnings));
    // Both fixes: publish the JWK Set as v3's jwks, or another header.
    for needle in [
        "registry v3",
        "registry-auth jwks --config",
        "auth.token.jwks",
        "signing_header: x5c",
        "kid-thumbprint",
        "signing_header: kid-libtrust",
    ] {
        assert!(
            w.message.contains(needle),
            "{needle:?} missing: {}",
            w.message
        );
    }
    // Chosen explicitly (kid-libtrust included) or through docker_auth's switch: no warning.
    for extra in [
        ", signing_header: kid-libtrust",
        ", signing_header: x5c",
        ", signing_header: kid-thumbprint",
        ", disable_legacy_key_id: true",
    ] {
        let c = load_in(d.path(), extra).unwrap();
        assert!(c.warnings.is_empty(), "{extra}: {:#?}", c.warnings);
    }
}
