//! Key rotation, the two procedures of docs/src/registry/key-rotation.md, against a registry that
//! is never restarted (2.8.2 and v3.1.1):
//! * `x5c` with only a CA in the registry's `rootcertbundle`: leaf A, then (our server restarted)
//!   leaf B issued by the same CA;
//! * `kid-libtrust` with the registry's bundle taken from our `GET /rootcertbundle.pem` (2.8) or
//!   its `jwks` written by `registry-auth jwks --config FILE --output F` (v3) while key B is
//!   published as an extra certificate: signer A, then signer B (A published as the extra); and
//!   a key that is in neither is refused by the registry.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use registry_auth::token::{self, GeneratedKey, KeyKind};
use serde_json::json;

use crate::common::clients::Outcome;
use crate::common::http;
use crate::common::jwt;
use crate::common::keys::{KeyFiles, KeySetup, libtrust_kid, pem_certs, spki_der, yaml_str};
use crate::common::registry::RegistryKind;
use crate::common::scenario::{self, steps};
use crate::common::server::AuthServer;
use crate::common::stack::{self, Stack, Trust, User};

const ACL: &str = r#"  - match: {account: alice, name: "alice/*"}
    actions: [pull, push]
"#;

/// The header of a token for alice (pull,push on alice/app), after the registry 2.8 lint
/// against the registry's bundle.
fn alice_header(stack: &Stack) -> serde_json::Value {
    let pw = stack.password("alice").to_owned();
    let scopes = ["repository:alice/app:pull,push"];
    let tr = scenario::token(stack, Some(("alice", &pw)), &scopes);
    assert_eq!(
        tr.response.status,
        200,
        "token request failed: {:?}\n{}",
        tr.response,
        stack.diagnostics()
    );
    let tok = tr.token.clone().expect("token in response");
    let problems = jwt::lint(
        &tr.response.json(),
        &tok,
        stack::SERVICE,
        stack::ISSUER,
        &scopes,
        &stack.keys.bundle,
    );
    assert!(
        problems.is_empty(),
        "token fails the registry 2.8 checks against its bundle: {problems:#?}\n{}",
        stack.diagnostics()
    );
    jwt::decode(&tok).expect("decode").header
}

fn push_pull(stack: &Stack, title: &str, push: &str, pull: &[&str]) {
    let mut table = vec![json!({
        "name": format!("alice pushes alice/app:{push}"),
        "op": "push", "user": "alice", "repo": "alice/app", "tag": push, "expect": "ok"
    })];
    for tag in pull {
        table.push(json!({
            "name": format!("alice pulls alice/app:{tag}"),
            "op": "pull", "user": "alice", "repo": "alice/app", "tag": tag, "expect": "ok"
        }));
    }
    scenario::run(stack, title, &steps(json!(table)));
}

fn cert_der(g: &GeneratedKey) -> Vec<u8> {
    let dir = stack::tempdir("ra-der");
    let p = dir.path().join("c.pem");
    fs::write(&p, &g.cert_pem).expect("write cert");
    pem_certs(&p).remove(0)
}

fn write_pair(g: &GeneratedKey, key: &Path, cert: &Path) {
    fs::write(key, &g.key_pem).expect("write key");
    fs::write(cert, &g.cert_pem).expect("write cert");
}

fn users(list: &[User]) -> BTreeMap<String, String> {
    list.iter()
        .map(|u| (u.name.clone(), u.password.clone()))
        .collect()
}

/// Restarts our server on its address (the registry's realm points there).
fn restart(stack: &mut Stack) {
    let addr = stack.server.addr.clone();
    stack.server.restart_on(&addr);
    assert_eq!(stack.server.addr, addr, "restarted on another address");
}

#[test]
fn x5c_leaf_replaced_under_the_same_ca_without_touching_the_registry() {
    x5c_leaf_rotation(RegistryKind::V2);
}

#[test]
fn x5c_leaf_replaced_under_the_same_ca_without_touching_registry_v3() {
    x5c_leaf_rotation(RegistryKind::V3);
}

fn x5c_leaf_rotation(kind: RegistryKind) {
    let tmp = stack::tempdir("ra-rot-x5c");
    let dir = tmp.path().join("keys");
    fs::create_dir_all(&dir).expect("mkdir keys");
    let ca = token::generate_ca(KeyKind::EcP256, "rotation CA", 30).expect("CA");
    let leaf_a = token::generate_signed_by(KeyKind::EcP256, "leaf A", 30, &ca).expect("leaf A");
    let leaf_b = token::generate_signed_by(KeyKind::EcP256, "leaf B", 30, &ca).expect("leaf B");
    let keys = KeyFiles {
        setup: KeySetup::EcLeafX5c,
        cert: dir.join("token.crt"),
        key: dir.join("token.key"),
        bundle: dir.join("ca.crt"),
        signing_header: "x5c",
    };
    let (key_file, cert_file) = (keys.key.clone(), keys.cert.clone());
    let install = |leaf: &GeneratedKey| {
        fs::write(&key_file, &leaf.key_pem).expect("write leaf key");
        fs::write(
            &cert_file,
            format!("{}{}", leaf.cert_pem, ca.cert_pem).as_bytes(),
        )
        .expect("write leaf + CA chain");
    };
    install(&leaf_a);
    fs::write(&keys.bundle, &ca.cert_pem).expect("write CA bundle");
    let people = [User::new("alice")];
    let config = tmp.path().join("registry-auth.yml");
    fs::write(&config, stack::config_yaml(&keys, &people, false, ACL)).expect("write config");
    let mut stack =
        Stack::start_with_config_on(Trust::bundle(kind), tmp, keys, config, users(&people));
    let bundle_before = fs::read(&stack.keys.bundle).expect("read bundle");

    // Our bundle holds the leaf and the CA (what the registry needs if it trusted only us).
    let published = http::get(
        &format!("http://{}/rootcertbundle.pem", stack.server.addr),
        &[],
    );
    assert_eq!(published.status, 200, "{published:?}");
    let published_dir = stack::tempdir("ra-rot-pub");
    let published_file = published_dir.path().join("bundle.pem");
    fs::write(&published_file, &published.body).expect("write published bundle");
    assert_eq!(
        pem_certs(&published_file),
        vec![cert_der(&leaf_a), cert_der(&ca)],
        "rootcertbundle.pem = leaf A, CA"
    );

    let header = alice_header(&stack);
    let x5c_leaf = |h: &serde_json::Value| -> Vec<u8> {
        STANDARD
            .decode(h["x5c"][0].as_str().expect("x5c[0]"))
            .expect("std base64")
    };
    assert_eq!(x5c_leaf(&header), cert_der(&leaf_a), "signs with leaf A");
    push_pull(&stack, "x5c, leaf A", "v1", &["v1"]);

    // Rotate the leaf: same CA, new key; only our server restarts.
    install(&leaf_b);
    restart(&mut stack);
    let header = alice_header(&stack);
    assert_eq!(x5c_leaf(&header), cert_der(&leaf_b), "signs with leaf B");
    push_pull(
        &stack,
        "x5c, leaf B, registry untouched",
        "v2",
        &["v1", "v2"],
    );
    assert_eq!(
        fs::read(&stack.keys.bundle).expect("read bundle"),
        bundle_before,
        "the registry's bundle must not change"
    );
    stack.assert_log_secrecy();
}

#[test]
fn kid_libtrust_rotation_through_the_published_bundle() {
    kid_libtrust_rotation(RegistryKind::V2);
}

/// Registry v3 does not look libtrust `kid`s up in its bundle: it gets `registry-auth jwks`.
#[test]
fn kid_libtrust_rotation_through_the_published_jwks_registry_v3() {
    kid_libtrust_rotation(RegistryKind::V3);
}

fn kid_libtrust_rotation(kind: RegistryKind) {
    let tmp = stack::tempdir("ra-rot-kid");
    let dir = tmp.path().join("keys");
    fs::create_dir_all(&dir).expect("mkdir keys");
    // A: EC P-256 (ES256), B: RSA 2048 (RS256), C: never trusted.
    let a = token::generate_self_signed(KeyKind::EcP256, "key A", 30).expect("A");
    let b = token::generate_self_signed(KeyKind::Rsa2048, "key B", 30).expect("B");
    let c = token::generate_self_signed(KeyKind::EcP256, "key C", 30).expect("C");
    let file = |n: &str| dir.join(n);
    write_pair(&a, &file("a.key"), &file("a.crt"));
    write_pair(&b, &file("b.key"), &file("b.crt"));
    write_pair(&c, &file("c.key"), &file("c.crt"));
    let keys = KeyFiles {
        setup: KeySetup::EcKid,
        cert: file("a.crt"),
        key: file("a.key"),
        bundle: file("registry-bundle.pem"),
        signing_header: "kid-libtrust",
    };
    let people = [User::new("alice")];
    let config = tmp.path().join("registry-auth.yml");
    // Signer `name`, publishing `extra` too.
    let template = keys.clone();
    let write_config = |name: &str, extra: &str| {
        let signer = KeyFiles {
            cert: file(&format!("{name}.crt")),
            key: file(&format!("{name}.key")),
            ..template.clone()
        };
        let yaml = stack::config_yaml(&signer, &people, false, ACL).replace(
            "  signing_header: kid-libtrust\n",
            &format!(
                "  signing_header: kid-libtrust\n  extra_certificates: [{}]\n",
                yaml_str(&file(&format!("{extra}.crt")).to_string_lossy())
            ),
        );
        assert!(yaml.contains("extra_certificates"), "{yaml}");
        fs::write(&config, yaml).expect("write config");
    };
    write_config("a", "b");

    // The registry's bundle is what our server publishes: A (signing) and B (next).
    {
        let mut pre = AuthServer::start(&config, &tmp.path().join("pre-start.log"));
        let r = http::get(&format!("http://{}/rootcertbundle.pem", pre.addr), &[]);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("content-type"), Some("application/x-pem-file"));
        fs::write(&keys.bundle, &r.body).expect("write registry bundle");
        let jwks = http::get(&format!("http://{}/.well-known/jwks.json", pre.addr), &[]);
        assert_eq!(jwks.status, 200, "{jwks:?}");
        let kids: Vec<String> = jwks.json()["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| k["kid"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(
            kids,
            vec![
                libtrust_kid(&spki_der(&cert_der(&a))),
                libtrust_kid(&spki_der(&cert_der(&b)))
            ],
            "JWKS kids in kid-libtrust mode"
        );
        pre.stop();
    }
    assert_eq!(
        pem_certs(&keys.bundle),
        vec![cert_der(&a), cert_der(&b)],
        "rootcertbundle.pem = A, B"
    );
    let bundle_before = fs::read(&keys.bundle).expect("read bundle");
    // 2.8: the bundle above; v3: `registry-auth jwks` of this config (A and B), at its start.
    let trust = match kind {
        RegistryKind::V2 => Trust::bundle(kind),
        RegistryKind::V3 => Trust {
            kind,
            bundle: false,
            jwks: true,
        },
    };
    let mut stack = Stack::start_with_config_on(trust, tmp, keys, config.clone(), users(&people));

    let header = alice_header(&stack);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(
        header["kid"].as_str(),
        Some(libtrust_kid(&spki_der(&cert_der(&a))).as_str())
    );
    push_pull(&stack, "kid-libtrust, signer A", "v1", &["v1"]);

    // Switch the signer to B, keep A published; the registry is not restarted.
    write_config("b", "a");
    restart(&mut stack);
    let header = alice_header(&stack);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(
        header["kid"].as_str(),
        Some(libtrust_kid(&spki_der(&cert_der(&b))).as_str())
    );
    push_pull(&stack, "kid-libtrust, signer B", "v2", &["v1", "v2"]);
    let published = http::get(
        &format!("http://{}/rootcertbundle.pem", stack.server.addr),
        &[],
    );
    let published_dir = stack::tempdir("ra-rot-pub");
    let published_file = published_dir.path().join("bundle.pem");
    fs::write(&published_file, &published.body).expect("write published bundle");
    assert_eq!(
        pem_certs(&published_file),
        vec![cert_der(&b), cert_der(&a)],
        "after the switch: B (signing), A (extra)"
    );

    // A key the registry does not trust: tokens are issued, the registry refuses them.
    write_config("c", "a");
    restart(&mut stack);
    let pw = stack.password("alice").to_owned();
    let attempt = stack
        .clients
        .skopeo_pull(Some(("alice", &pw)), "alice/app", "v1");
    let out = attempt.log.to_lowercase();
    assert!(
        attempt.outcome != Outcome::Ok
            && (out.contains("unauthorized") || out.contains("authentication required")),
        "a token signed by a key outside the bundle must be refused; got {:?}\n{}\n{}",
        attempt.outcome,
        attempt.log,
        stack.diagnostics()
    );
    let complaints = stack.registry.token_complaints();
    let kid_c = libtrust_kid(&spki_der(&cert_der(&c)));
    assert!(
        complaints.contains("untrusted key") && complaints.contains(&kid_c),
        "the registry should refuse the token as signed by the untrusted key {kid_c}; its \
         complaints:\n{complaints}\n{}",
        stack.diagnostics()
    );
    assert_eq!(
        fs::read(&stack.keys.bundle).expect("read bundle"),
        bundle_before,
        "the registry's bundle must not change"
    );
    stack.assert_log_secrecy();
}
