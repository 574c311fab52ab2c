//! Scenario 3: the docker_auth-compatible reference fixture `tests/fixtures/harness-reference.yml`
//! (the users and ACL of the black-box harness) runs the harness's default scenario table
//! (`tests/fixtures/harness-scenarios.json`): token and token lint, raw HTTP, skopeo, podman, the
//! docker CLI without a daemon and docker pull/push through a private dockerd.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use serde_yaml_ng::Value;

use crate::common::keys::{KeyFiles, KeySetup};
use crate::common::scenario::{self, Step};
use crate::common::stack::{self, Stack};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The passwords the fixture's bcrypt hashes stand for (as in the scenario table).
const PASSWORDS: &[(&str, &str)] = &[
    ("admin", "adminpass"),
    ("alice", "alicepass"),
    ("reader", "readerpass"),
];

fn load_fixture() -> Value {
    let path = fixture("harness-reference.yml");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

#[test]
fn fixture_hashes_match_the_documented_passwords() {
    let doc = load_fixture();
    let users = doc["users"].as_mapping().expect("users mapping");
    assert!(
        users.contains_key(Value::from("")),
        "anonymous (\"\") must be allowed"
    );
    for (user, password) in PASSWORDS {
        let hash = doc["users"][*user]["password"]
            .as_str()
            .unwrap_or_else(|| panic!("user {user} has no password hash"));
        assert!(
            bcrypt::verify(password, hash).unwrap_or(false),
            "the hash of {user} in harness-reference.yml is not bcrypt({password:?})"
        );
    }
    assert_eq!(
        doc["acl"].as_sequence().map(Vec::len),
        Some(5),
        "5 ACL entries"
    );
}

#[test]
fn default_harness_scenarios_pass() {
    let tmp = stack::tempdir("ra-it-ref");
    let keys_dir = tmp.path().join("keys");
    fs::create_dir_all(&keys_dir).expect("mkdir keys");
    let cert = keys_dir.join("token.crt");
    let key = keys_dir.join("token.key");

    // The fixture as is, except that the generated key goes to this test's temp dir.
    let mut doc = load_fixture();
    let token = doc["token"].as_mapping_mut().expect("token section");
    token.insert("certificate".into(), cert.to_string_lossy().as_ref().into());
    token.insert("key".into(), key.to_string_lossy().as_ref().into());
    assert_eq!(
        token.get("generate"),
        Some(&Value::Bool(true)),
        "the fixture is expected to use generate: true"
    );
    let config = tmp.path().join("harness-reference.yml");
    fs::write(&config, serde_yaml_ng::to_string(&doc).expect("yaml")).expect("write config");

    let table: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(fixture("harness-scenarios.json")).expect("read scenario table"),
    )
    .expect("scenario table JSON");
    let users: BTreeMap<String, String> =
        serde_json::from_value(table["users"].clone()).expect("users");
    for (u, p) in PASSWORDS {
        assert_eq!(
            users.get(*u).map(String::as_str),
            Some(*p),
            "table password of {u}"
        );
    }
    let steps: Vec<Step> = scenario::steps(table["steps"].clone());

    let keys = KeyFiles {
        setup: KeySetup::Generate,
        cert: cert.clone(),
        key,
        bundle: cert,
        signing_header: "kid-libtrust",
    };
    let mut stack = Stack::start_with_config(tmp, keys, config, users);

    // Everything up to the first docker daemon step runs without a daemon.
    let is_daemon_step =
        |s: &Step| s.client.as_deref() == Some("docker") && (s.op == "pull" || s.op == "push");
    let split = steps.iter().position(is_daemon_step).unwrap_or(steps.len());
    scenario::run(&stack, "harness default table (no daemon)", &steps[..split]);
    if split < steps.len() {
        stack.clients.use_dockerd();
        scenario::run(&stack, "harness default table (dockerd)", &steps[split..]);
    }
    stack.assert_log_secrecy();
}
