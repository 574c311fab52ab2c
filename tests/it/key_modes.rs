//! Scenario 2: signing key modes, each checked on the token itself and end to end with skopeo.
//! * RSA 2048 (RS256), `kid-libtrust`, registry bundle = that certificate;
//! * EC P-256 leaf signed by a test CA, `x5c`, server certificate file = leaf + CA, registry
//!   bundle = the CA only;
//! * `token.generate: true`: the server creates an ES256 key and self-signed certificate; the
//!   registry trusts that certificate; a restart reuses the same files (same `kid`).

use std::fs;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use crate::common::jwt;
use crate::common::keys::{KeySetup, kid_of_cert_file, pem_certs};
use crate::common::registry::{Registry, RegistrySpec};
use crate::common::scenario::{self, steps};
use crate::common::stack::{ISSUER, SERVICE, Stack, User};

const ACL: &str = r#"  - match: {account: alice, name: "alice/*"}
    actions: [pull, push, delete]
  - match: {account: "", name: "public/*"}
    actions: [pull]
"#;

fn start(setup: KeySetup) -> Stack {
    Stack::start(setup, &[User::new("alice")], true, ACL)
}

/// A token for alice on alice/app, decoded, after the full lint.
fn alice_token(stack: &Stack) -> jwt::Jwt {
    let pw = stack.password("alice").to_owned();
    let scopes = ["repository:alice/app:pull,push"];
    let tr = scenario::token(stack, Some(("alice", &pw)), &scopes);
    assert_eq!(
        tr.response.status,
        200,
        "token request GET {} failed: {:?}\n{}",
        tr.url,
        tr.response,
        stack.diagnostics()
    );
    let tok = tr.token.clone().expect("token in response");
    let problems = jwt::lint(
        &tr.response.json(),
        &tok,
        SERVICE,
        ISSUER,
        &scopes,
        &stack.keys.bundle,
    );
    assert!(
        problems.is_empty(),
        "token for alice fails the registry 2.8 checks: {problems:#?}\n{}",
        stack.diagnostics()
    );
    let j = jwt::decode(&tok).expect("decode");
    let granted = jwt::granted(&j.claims);
    assert_eq!(
        granted.get(&("repository".to_owned(), "alice/app".to_owned())),
        Some(&["pull".to_owned(), "push".to_owned()].into_iter().collect()),
        "alice should get pull,push on alice/app; claims: {}",
        j.claims
    );
    j
}

fn push_pull(stack: &Stack, title: &str) {
    let table = steps(json!([
        {"name": "alice pushes alice/app:v1", "op": "push", "user": "alice", "repo": "alice/app", "tag": "v1", "expect": "ok"},
        {"name": "alice pulls alice/app:v1", "op": "pull", "user": "alice", "repo": "alice/app", "tag": "v1", "expect": "ok"},
        {"name": "alice lists tags of alice/app", "op": "tags", "user": "alice", "repo": "alice/app", "expect": "ok", "contains": ["v1"]},
        {"name": "alice pushes bob/app:v1", "op": "push", "user": "alice", "repo": "bob/app", "tag": "v1", "expect": "denied"},
        {"name": "anonymous pulls alice/app:v1", "op": "pull", "user": null, "repo": "alice/app", "tag": "v1", "expect": "denied"},
        {"name": "alice, wrong password, pulls alice/app:v1", "op": "pull", "user": "alice", "password": "wrong-password-k", "repo": "alice/app", "tag": "v1", "expect": "unauthorized"},
        {"name": "alice deletes alice/app:v1", "op": "delete", "user": "alice", "repo": "alice/app", "tag": "v1", "expect": "ok"},
    ]));
    scenario::run(stack, title, &table);
}

#[test]
fn rsa_key_with_libtrust_kid() {
    let stack = start(KeySetup::RsaKid);
    let j = alice_token(&stack);
    assert_eq!(j.header["alg"], "RS256", "header: {}", j.header);
    assert_eq!(
        j.header["kid"].as_str(),
        Some(kid_of_cert_file(&stack.keys.cert).as_str()),
        "kid must be the libtrust key ID of the signing certificate; header: {}",
        j.header
    );
    assert!(
        j.header.get("x5c").is_none(),
        "kid-libtrust mode sends no x5c: {}",
        j.header
    );
    push_pull(&stack, "RSA / RS256 / kid-libtrust");
    stack.assert_log_secrecy();
}

#[test]
fn ec_leaf_signed_by_ca_with_x5c_chain() {
    let stack = start(KeySetup::EcLeafX5c);
    let chain = pem_certs(&stack.keys.cert);
    let bundle = pem_certs(&stack.keys.bundle);
    assert_eq!(
        chain.len(),
        2,
        "the server's certificate file holds leaf + CA"
    );
    assert_eq!(
        bundle,
        vec![chain[1].clone()],
        "the registry trusts the CA only"
    );
    let j = alice_token(&stack);
    assert_eq!(j.header["alg"], "ES256", "header: {}", j.header);
    let x5c: Vec<Vec<u8>> = j.header["x5c"]
        .as_array()
        .unwrap_or_else(|| panic!("x5c mode must send an x5c array; header: {}", j.header))
        .iter()
        .map(|c| {
            STANDARD
                .decode(c.as_str().unwrap_or_default())
                .expect("x5c entries are standard base64")
        })
        .collect();
    assert_eq!(
        x5c.first(),
        Some(&chain[0]),
        "x5c[0] must be the leaf certificate (leaf first)"
    );
    assert!(
        x5c.iter().all(|c| chain.contains(c)),
        "x5c holds only certificates of the configured chain"
    );
    push_pull(&stack, "EC P-256 leaf + CA / ES256 / x5c");
    stack.assert_log_secrecy();
}

#[test]
fn generated_key_is_created_and_reused_after_restart() {
    let mut stack = start(KeySetup::Generate);
    let (cert, key) = (stack.keys.cert.clone(), stack.keys.key.clone());
    assert!(
        cert.is_file() && key.is_file(),
        "generate: true must create {} and {}",
        cert.display(),
        key.display()
    );
    let cert_before = fs::read(&cert).expect("read cert");
    let key_before = fs::read(&key).expect("read key");
    let kid = kid_of_cert_file(&cert);

    let j = alice_token(&stack);
    assert_eq!(
        j.header["alg"], "ES256",
        "generated keys are EC P-256; header: {}",
        j.header
    );
    assert_eq!(
        j.header["kid"].as_str(),
        Some(kid.as_str()),
        "header: {}",
        j.header
    );
    let table = steps(json!([
        {"name": "alice pushes alice/app:v1", "op": "push", "user": "alice", "repo": "alice/app", "tag": "v1", "expect": "ok"},
        {"name": "alice pulls alice/app:v1", "op": "pull", "user": "alice", "repo": "alice/app", "tag": "v1", "expect": "ok"},
        {"name": "alice pushes bob/app:v1", "op": "push", "user": "alice", "repo": "bob/app", "tag": "v1", "expect": "denied"},
    ]));
    scenario::run(&stack, "generated key, first start", &table);

    // Restart: the files must be reused, not regenerated.
    stack.registry.stop();
    stack.server.restart_on("127.0.0.1:0");
    assert_eq!(
        fs::read(&cert).expect("read cert"),
        cert_before,
        "certificate regenerated on restart"
    );
    assert_eq!(
        fs::read(&key).expect("read key"),
        key_before,
        "key regenerated on restart"
    );
    let j2 = alice_token(&stack);
    assert_eq!(
        j2.header["kid"].as_str(),
        Some(kid.as_str()),
        "kid changed across restart: {}",
        j2.header
    );

    // A registry that trusts the certificate from the first start (same storage) serves the
    // image pushed before the restart.
    let registry = Registry::start(
        &stack.registry.dir,
        &RegistrySpec {
            realm: stack.server.realm(),
            service: SERVICE.to_owned(),
            issuer: ISSUER.to_owned(),
            rootcertbundle: stack.keys.bundle.clone(),
        },
    );
    stack.clients.registry = registry.addr.clone();
    stack.registry = registry;
    let table = steps(json!([
        {"name": "after restart: alice pulls alice/app:v1", "op": "pull", "user": "alice", "repo": "alice/app", "tag": "v1", "expect": "ok"},
        {"name": "after restart: alice pushes alice/app:v2", "op": "push", "user": "alice", "repo": "alice/app", "tag": "v2", "expect": "ok"},
        {"name": "after restart: anonymous pulls alice/app:v2", "op": "pull", "user": null, "repo": "alice/app", "tag": "v2", "expect": "denied"},
    ]));
    scenario::run(&stack, "generated key, after restart", &table);
    stack.assert_log_secrecy();
}
