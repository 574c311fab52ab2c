//! The signing-mode matrix against both registries: distribution 2.8.2 (Debian's
//! `docker-registry`) and v3.1.1 (`registry:3`, built by `scripts/tools/install-registry-v3.sh`)
//! × `token.signing_header` and key (`kid-libtrust`, `x5c` with the certificate itself or only
//! its CA in `rootcertbundle`, `kid-thumbprint` RSA and EC) × how the registry trusts us
//! (`rootcertbundle`, `jwks` = `registry-auth jwks` output, or both).
//!
//! Every combination the "Registry versions" table (docs/src/registry/versions.md) calls working
//! pushes, pulls, lists and deletes with skopeo, and gets the ACL's refusals; the main ones (2.8
//! with `kid-libtrust`, v3 with `x5c` CA-only, v3 with `kid-thumbprint` EC, v3 with
//! `kid-libtrust` and `jwks`) also with podman, the docker CLI and dockerd. Every combination the
//! table calls broken is asserted as broken: the token is issued, the registry refuses it (the
//! client sees a 401 that is not `insufficient_scope`), and the registry's log gives the expected
//! reason.

use serde_json::json;

use crate::common::keys::KeySetup;
use crate::common::registry::{Registry, RegistryKind, RegistryOptions, RegistrySpec};
use crate::common::scenario::{self, steps};
use crate::common::stack::{ISSUER, SERVICE, Stack, Trust, User};

const ACL: &str = r#"  - match: {account: alice, name: "alice/*"}
    actions: [pull, push, delete]
  - match: {account: "", name: "public/*"}
    actions: [pull]
"#;

const V2: RegistryKind = RegistryKind::V2;
const V3: RegistryKind = RegistryKind::V3;

fn trust(kind: RegistryKind, bundle: bool, jwks: bool) -> Trust {
    Trust { kind, bundle, jwks }
}

fn start(trust: Trust, setup: KeySetup) -> Stack {
    Stack::start_on(trust, setup, &[User::new("alice")], true, ACL)
}

fn title(trust: Trust, setup: KeySetup) -> String {
    format!("registry {} / {setup:?}", trust.describe())
}

/// skopeo: the whole life of an image, and the ACL's refusals.
fn skopeo_steps(stack: &Stack, title: &str) {
    let table = steps(json!([
        {"name": "alice pushes alice/app:v1 (v2s2)", "op": "push", "user": "alice", "repo": "alice/app", "tag": "v1", "format": "v2s2", "expect": "ok"},
        {"name": "alice pulls alice/app:v1", "op": "pull", "user": "alice", "repo": "alice/app", "tag": "v1", "expect": "ok"},
        {"name": "alice lists tags of alice/app", "op": "tags", "user": "alice", "repo": "alice/app", "expect": "ok", "contains": ["v1"]},
        {"name": "alice pushes bob/app:v1", "op": "push", "user": "alice", "repo": "bob/app", "tag": "v1", "expect": "denied"},
        {"name": "anonymous pulls alice/app:v1", "op": "pull", "user": null, "repo": "alice/app", "tag": "v1", "expect": "denied"},
        {"name": "alice, wrong password, pulls alice/app:v1", "op": "pull", "user": "alice", "password": "wrong-password-m", "repo": "alice/app", "tag": "v1", "expect": "unauthorized"},
        {"name": "alice pushes alice/del:v1", "op": "push", "user": "alice", "repo": "alice/del", "tag": "v1", "expect": "ok"},
        {"name": "alice deletes alice/del:v1", "op": "delete", "user": "alice", "repo": "alice/del", "tag": "v1", "expect": "ok"},
        {"name": "alice pulls the deleted alice/del:v1", "op": "pull", "user": "alice", "repo": "alice/del", "tag": "v1", "expect": "notfound"},
    ]));
    scenario::run(stack, &format!("{title}, skopeo"), &table);
}

/// podman, the docker CLI without a daemon, and dockerd, after [`skopeo_steps`] pushed
/// alice/app:v1.
fn other_clients(stack: &mut Stack, title: &str) {
    let table = steps(json!([
        {"name": "podman login alice", "client": "podman", "op": "login", "user": "alice", "expect": "ok"},
        {"name": "podman: alice pushes alice/podman:v1", "client": "podman", "op": "push", "user": "alice", "repo": "alice/podman", "tag": "v1", "expect": "ok"},
        {"name": "podman: alice pulls alice/podman:v1", "client": "podman", "op": "pull", "user": "alice", "repo": "alice/podman", "tag": "v1", "expect": "ok"},
        {"name": "podman: alice pushes bob/podman:v1", "client": "podman", "op": "push", "user": "alice", "repo": "bob/podman", "tag": "v1", "expect": "denied"},
        {"name": "docker login alice (no daemon)", "client": "docker", "op": "login", "user": "alice", "expect": "ok"},
        {"name": "docker: manifest inspect alice/app:v1", "client": "docker", "op": "manifest", "user": "alice", "repo": "alice/app", "tag": "v1", "expect": "ok"},
        {"name": "docker: anonymous manifest inspect alice/app:v1", "client": "docker", "op": "manifest", "user": null, "repo": "alice/app", "tag": "v1", "expect": "denied"},
    ]));
    scenario::run(stack, &format!("{title}, podman and docker CLI"), &table);
    stack.clients.use_dockerd();
    let table = steps(json!([
        {"name": "dockerd: login alice", "client": "docker", "op": "login", "user": "alice", "expect": "ok"},
        {"name": "dockerd: alice pulls alice/app:v1", "client": "docker", "op": "pull", "user": "alice", "repo": "alice/app", "tag": "v1", "expect": "ok"},
        {"name": "dockerd: alice pushes alice/app:v2", "client": "docker", "op": "push", "user": "alice", "from": "alice/app:v1", "repo": "alice/app", "tag": "v2", "expect": "ok"},
        {"name": "dockerd: alice pushes bob/app:v1", "client": "docker", "op": "push", "user": "alice", "from": "alice/app:v1", "repo": "bob/app", "tag": "v1", "expect": "denied"},
    ]));
    scenario::run(stack, &format!("{title}, dockerd"), &table);
}

/// A combination that works: skopeo always, the other clients when `all_clients`.
fn works(trust: Trust, setup: KeySetup, all_clients: bool) {
    let mut stack = start(trust, setup);
    let title = title(trust, setup);
    skopeo_steps(&stack, &title);
    if all_clients {
        other_clients(&mut stack, &title);
    }
    let refusals = stack.registry.token_refusals();
    assert!(
        refusals.is_empty(),
        "{title}: the registry refused tokens:\n{}\n{}",
        refusals.join("\n"),
        stack.diagnostics()
    );
    stack.assert_log_secrecy();
}

/// A combination that cannot work: the server issues tokens, the registry refuses every one
/// of them and logs `reason`.
fn refused(trust: Trust, setup: KeySetup, reason: &str) {
    let stack = start(trust, setup);
    let title = title(trust, setup);
    let table = steps(json!([
        {"name": "token for alice is issued", "op": "token", "user": "alice", "scope": ["repository:alice/app:pull,push"], "expect": "ok"},
        {"name": "alice pushes alice/app:v1: the registry refuses the token", "op": "push", "user": "alice", "repo": "alice/app", "tag": "v1", "expect": "refused"},
        {"name": "alice reads /v2/: the registry refuses the token", "op": "base", "user": "alice", "expect": "refused"},
    ]));
    scenario::run(&stack, &format!("{title} (expected to be refused)"), &table);
    let refusals = stack.registry.token_refusals();
    let prefix = trust.kind.refusal_prefix();
    assert!(
        refusals
            .iter()
            .any(|l| l.contains(&format!("{prefix}{reason}"))),
        "{title}: the registry should log {:?} for the refused tokens; its refusals:\n{}\n{}",
        format!("{prefix}{reason}"),
        refusals.join("\n"),
        stack.diagnostics()
    );
    stack.assert_log_secrecy();
}

// ------------------------------------------------------------------ distribution 2.8.2

#[test]
fn v2_kid_libtrust_rsa_all_clients() {
    works(trust(V2, true, false), KeySetup::RsaKid, true);
}

#[test]
fn v2_x5c_certificate() {
    works(trust(V2, true, false), KeySetup::EcCertX5c, false);
}

#[test]
fn v2_x5c_ca_only() {
    works(trust(V2, true, false), KeySetup::EcLeafX5c, false);
}

/// 2.8 ignores `jwks` and trusts the bundle.
#[test]
fn v2_kid_libtrust_with_jwks_and_bundle() {
    works(trust(V2, true, true), KeySetup::EcKid, false);
}

/// 2.8 looks `kid`s up as libtrust key IDs only.
#[test]
fn v2_kid_thumbprint_rsa_refused() {
    refused(
        trust(V2, true, false),
        KeySetup::RsaThumbprint,
        "token signed by untrusted key with ID",
    );
}

#[test]
fn v2_kid_thumbprint_ec_refused() {
    refused(
        trust(V2, true, false),
        KeySetup::EcThumbprint,
        "token signed by untrusted key with ID",
    );
}

/// 2.8 has no `jwks`: without a bundle it does not start at all.
#[test]
fn v2_jwks_without_bundle_does_not_start() {
    let dir = crate::common::stack::tempdir("ra-v2jwks");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, r#"{"keys": []}"#).expect("write jwks");
    let mut opts = RegistryOptions::new(V2);
    opts.bundle = false;
    opts.jwks = Some(jwks);
    let spec = RegistrySpec {
        realm: "http://127.0.0.1:9/auth".to_owned(),
        service: SERVICE.to_owned(),
        issuer: ISSUER.to_owned(),
        rootcertbundle: dir.path().join("unused.pem"),
    };
    let err = Registry::try_start_with(&dir.path().join("registry"), &spec, &opts)
        .expect_err("registry 2.8.2 must refuse a token config without rootcertbundle");
    assert!(
        err.contains("rootcertbundle"),
        "registry 2.8.2 should name rootcertbundle: {err}"
    );
}

// ------------------------------------------------------------------ distribution v3.1.1

#[test]
fn v3_x5c_ca_only_all_clients() {
    works(trust(V3, true, false), KeySetup::EcLeafX5c, true);
}

#[test]
fn v3_x5c_certificate() {
    works(trust(V3, true, false), KeySetup::EcCertX5c, false);
}

#[test]
fn v3_kid_thumbprint_ec_all_clients() {
    works(trust(V3, true, false), KeySetup::EcThumbprint, true);
}

#[test]
fn v3_kid_thumbprint_rsa() {
    works(trust(V3, true, false), KeySetup::RsaThumbprint, false);
}

#[test]
fn v3_kid_thumbprint_ec_jwks_only() {
    works(trust(V3, false, true), KeySetup::EcThumbprint, false);
}

/// `registry-auth jwks` publishes the libtrust `kid`s our tokens carry.
#[test]
fn v3_kid_libtrust_jwks_only_all_clients() {
    works(trust(V3, false, true), KeySetup::RsaKid, true);
}

#[test]
fn v3_kid_libtrust_jwks_and_bundle() {
    works(trust(V3, true, true), KeySetup::EcKid, false);
}

/// v3 keys a bundle's certificates by RFC 7638 thumbprint, not by libtrust key ID.
#[test]
fn v3_kid_libtrust_bundle_only_refused() {
    refused(
        trust(V3, true, false),
        KeySetup::RsaKid,
        "token signed by untrusted key with ID",
    );
}

/// Without a bundle v3 has no roots to verify an `x5c` chain against.
#[test]
fn v3_x5c_jwks_only_refused() {
    refused(
        trust(V3, false, true),
        KeySetup::EcLeafX5c,
        "x509: certificate signed by unknown authority",
    );
}

/// `check-config` and `serve` say that a config without `signing_header` (so `kid-libtrust`)
/// needs our JWK Set on registry v3, with both fixes; an explicit header is silent.
#[test]
fn default_kid_libtrust_warns_about_registry_v3_in_check_config_and_serve() {
    let tmp = crate::common::stack::tempdir("ra-v3warn");
    let keys = crate::common::keys::KeyFiles::write(KeySetup::EcKid, &tmp.path().join("keys"));
    let explicit = crate::common::stack::config_yaml(&keys, &[User::new("alice")], true, ACL);
    assert!(
        explicit.contains("  signing_header: kid-libtrust\n"),
        "{explicit}"
    );
    let implicit = explicit.replace("  signing_header: kid-libtrust\n", "");
    let (with, without) = (
        tmp.path().join("implicit.yml"),
        tmp.path().join("explicit.yml"),
    );
    std::fs::write(&with, &implicit).expect("write");
    std::fs::write(&without, &explicit).expect("write");
    // Only this warning is looked at (the test's key file is 0644, a warning of its own).
    let fixes = [
        "registry v3",
        "`registry-auth jwks --config FILE`",
        "auth.token.jwks",
        "`signing_header: x5c`",
        "`kid-thumbprint`",
    ];
    let out = crate::common::server::run_cli(&["check-config", &with.to_string_lossy()]);
    assert!(out.success(), "{}", out.describe());
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("warning: token.signing_header"))
        .unwrap_or_else(|| panic!("no token.signing_header warning:\n{}", out.describe()));
    for f in fixes {
        assert!(line.contains(f), "{f:?} missing from: {line}");
    }
    let out = crate::common::server::run_cli(&["check-config", &without.to_string_lossy()]);
    assert!(
        out.success() && !out.stdout.contains("token.signing_header"),
        "an explicit signing_header must not warn:\n{}",
        out.describe()
    );
    let log = tmp.path().join("serve.log");
    let mut server = crate::common::server::AuthServer::start(&with, &log);
    server.stop();
    let text = crate::common::proc::strip_ansi(&std::fs::read_to_string(&log).unwrap_or_default());
    let line = text
        .lines()
        .find(|l| l.contains("WARN") && l.contains("auth.token.jwks"))
        .unwrap_or_else(|| panic!("serve logged no registry v3 warning:\n{text}"));
    for f in fixes {
        assert!(line.contains(f), "{f:?} missing from: {line}");
    }
}

/// The registry v3 `config.yml` block of the book's "Next to a registry" page
/// (docs/src/registry/index.md), as shipped, works with registry v3.1.1 both with `kid-libtrust`
/// (our JWK Set in its `jwks`) and with `x5c` (its `rootcertbundle`).
#[test]
fn documented_registry_v3_config_works() {
    const PAGE: &str = "docs/src/registry/index.md";
    let page = std::fs::read_to_string(format!("{}/{PAGE}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("read {PAGE}: {e}"));
    let marker = "<!-- registry v3 config.yml";
    let after = &page[page
        .find(marker)
        .unwrap_or_else(|| panic!("{PAGE} has no `{marker}` block"))..];
    let from = after.find("```yaml\n").expect("```yaml after the marker") + "```yaml\n".len();
    let end = from + after[from..].find("```").expect("end of the yaml block");
    // The block sits in a list item (indented by two).
    let block: String = after[from..end]
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l)))
        .collect();
    for setup in [KeySetup::RsaKid, KeySetup::EcCertX5c] {
        let mut stack = start(Trust::bundle(V3), setup);
        let jwks = crate::common::stack::write_jwks(
            &stack.server.config,
            &stack.registry.dir.with_file_name("documented-jwks.json"),
        );
        let mut auth = block.clone();
        for (from, to) in [
            (
                "https://registry.example.com/auth".to_owned(),
                stack.server.realm(),
            ),
            (
                "service: registry\n".to_owned(),
                format!("service: {SERVICE:?}\n"),
            ),
            (
                "issuer: registry-auth\n".to_owned(),
                format!("issuer: {ISSUER:?}\n"),
            ),
            (
                "/certs/token.crt".to_owned(),
                stack.keys.bundle.to_string_lossy().into_owned(),
            ),
            (
                "/certs/jwks.json".to_owned(),
                jwks.to_string_lossy().into_owned(),
            ),
        ] {
            assert!(
                auth.contains(&from),
                "{from:?} not in the block of {PAGE}:\n{block}"
            );
            auth = auth.replacen(&from, &to, 1);
        }
        stack.registry.stop();
        let registry = Registry::start_with_auth_yaml(
            V3,
            &stack.registry.dir.with_file_name("documented-registry"),
            &auth,
        );
        stack.clients.registry = registry.addr.clone();
        stack.registry = registry;
        let table = steps(json!([
            {"name": "alice pushes alice/app:v1", "op": "push", "user": "alice", "repo": "alice/app", "tag": "v1", "expect": "ok"},
            {"name": "alice pulls alice/app:v1", "op": "pull", "user": "alice", "repo": "alice/app", "tag": "v1", "expect": "ok"},
            {"name": "anonymous pulls alice/app:v1", "op": "pull", "user": null, "repo": "alice/app", "tag": "v1", "expect": "denied"},
        ]));
        scenario::run(
            &stack,
            &format!("the registry v3 config.yml of {PAGE}, {setup:?}"),
            &table,
        );
        assert!(
            stack.registry.token_refusals().is_empty(),
            "{}",
            stack.diagnostics()
        );
    }
}
