//! Configuration loading (`config::parse(text, path)`), the whole validation path: YAML, every
//! section, patterns, key files, htpasswd, robots, the ACL and its shadowing lint.
//!
//! The config "lives" in a temporary directory that holds a working key pair (`key.pem`,
//! `cert.pem`), an htpasswd file (`users.htpasswd`), a refresh secret (`refresh.secret`) and an
//! empty file, so relative paths in the input reach the deep code. Loading only reads files.
//!
//! Inputs are skipped (not run) when a string in them could make the harness itself hang or
//! wander outside the sandbox: paths into `/dev`, `/proc`, `/sys` (reading `/dev/zero` never
//! ends) or FIFOs, and bcrypt hashes with a cost above 10 (loading computes one bcrypt at the
//! highest configured cost; cost 31 takes days, see docs/src/project/reliability/known-findings.md).
//!
//! Invariants: no panic; an accepted config is consistent (`acl.len() == acl_entries.len()`);
//! every refusal lists at least one issue.
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use registry_auth::config::{ConfigError, parse};
use registry_auth::token::{KeyKind, generate_self_signed, write_key_files};
use serde_yaml_ng::Value;

struct Sandbox {
    _dir: tempfile::TempDir,
    config: PathBuf,
}

static SANDBOX: LazyLock<Sandbox> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path();
    let key = generate_self_signed(KeyKind::EcP256, "fuzz", 30).expect("key");
    write_key_files(&key, &p.join("key.pem"), &p.join("cert.pem")).expect("key files");
    std::fs::write(
        p.join("users.htpasswd"),
        "alice:$2y$04$4Fo6EfWTzFbe6f5Vn1Ox6OhDd0.xzsOtZ9gIuyDcUGBjZ2IyfqHwW\n",
    )
    .expect("htpasswd");
    std::fs::write(
        p.join("refresh.secret"),
        "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC1zZWNyZXQK\n",
    )
    .expect("secret");
    std::fs::write(p.join("empty"), "").expect("empty");
    Sandbox {
        config: p.join("config.yml"),
        _dir: dir,
    }
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The loader parses the same YAML with the same library, so this sees every string it will.
    if let Ok(value) = serde_yaml_ng::from_str::<Value>(text)
        && !safe(&value)
    {
        return;
    }
    let sandbox = &*SANDBOX;
    match parse(text, &sandbox.config) {
        Ok(config) => {
            assert_eq!(config.acl.len(), config.acl_entries.len());
            for w in &config.warnings {
                let _ = w.to_string();
            }
        }
        Err(ConfigError::Invalid { issues, .. }) => {
            assert!(!issues.is_empty(), "refused without an issue");
            for i in &issues {
                assert!(!i.message.is_empty(), "empty message at {}", i.path);
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});

fn safe(v: &Value) -> bool {
    match v {
        Value::String(s) => safe_str(s),
        Value::Sequence(items) => items.iter().all(safe),
        Value::Mapping(m) => m.iter().all(|(k, v)| safe(k) && safe(v)),
        Value::Tagged(t) => safe(&t.value),
        Value::Null | Value::Bool(_) | Value::Number(_) => true,
    }
}

fn safe_str(s: &str) -> bool {
    let special = ["/dev", "/proc", "/sys", "/run", "/tmp", "/var", ".."];
    if special.iter().any(|p| s.contains(p)) {
        return false;
    }
    // `$2?$NN$…`: refuse costs above 10 (see the module comment).
    if let Some(i) = s.find("$2")
        && let Some(cost) = s.get(i + 4..i + 6)
        && cost.parse::<u32>().is_ok_and(|c| c > 10)
    {
        return false;
    }
    true
}
