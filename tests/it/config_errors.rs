//! Scenario 5: configuration errors through the binary. A typo in an ACL match key is named
//! with its YAML path by `check-config` (exit 1) and stops `serve` from starting; good configs
//! pass `check-config`; a CI issuer that any repository could use is warned about.

use std::fs;
use std::process::Stdio;
use std::time::Duration;

use crate::common::keys::{KeyFiles, KeySetup};
use crate::common::proc::{self, ChildGuard, StopMode, tail};
use crate::common::server::{self, run_cli};
use crate::common::stack::{self, User, config_yaml};
use crate::reference_fixture::fixture;

const TYPO_ACL: &str = r#"  - match: {acount: alice, name: "alice/*"}
    actions: [pull, push]
"#;

const GOOD_ACL: &str = r#"  - match: {account: alice, name: "alice/*"}
    actions: [pull, push]
"#;

/// A config with valid keys whose only problem is `acl[0].match.acount`.
fn typo_config(dir: &std::path::Path) -> std::path::PathBuf {
    let keys = KeyFiles::write(KeySetup::EcKid, &dir.join("keys"));
    let path = dir.join("typo.yml");
    fs::write(
        &path,
        config_yaml(&keys, &[User::new("alice")], false, TYPO_ACL),
    )
    .expect("write");
    path
}

#[test]
fn check_config_names_the_misspelt_acl_key_and_its_path() {
    let tmp = stack::tempdir("ra-it-cfg");
    let path = typo_config(tmp.path());
    let out = run_cli(&["check-config", &path.to_string_lossy()]);
    let text = proc::strip_ansi(&out.combined());
    assert_eq!(
        out.code,
        Some(1),
        "check-config on a config with a typo must exit 1\n{}",
        out.describe()
    );
    assert!(
        text.contains("acount"),
        "the output must name the unknown key `acount`\n{}",
        out.describe()
    );
    assert!(
        text.contains("acl[0].match"),
        "the output must give the YAML path `acl[0].match`\n{}",
        out.describe()
    );
}

#[test]
fn serve_refuses_to_start_with_a_misspelt_acl_key() {
    let tmp = stack::tempdir("ra-it-cfg");
    let path = typo_config(tmp.path());
    let log = tmp.path().join("serve.log");
    let logf = fs::File::create(&log).expect("log");
    let mut cmd = server::command();
    cmd.arg("serve")
        .arg("--config")
        .arg(&path)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(logf.try_clone().expect("dup"))
        .stderr(logf);
    let line = proc::cmdline(&cmd);
    let mut guard = ChildGuard::new(
        "registry-auth",
        cmd.spawn().expect("spawn registry-auth"),
        StopMode::Kill,
    );
    let status = guard.wait_timeout(Duration::from_secs(15));
    let output = tail(&log, 30);
    match status {
        None => panic!("`{line}` is still running after 15 s: it must refuse the config\n{output}"),
        Some(s) => {
            assert!(!s.success(), "`{line}` exited 0 on a bad config\n{output}");
            assert!(
                output.contains("acount"),
                "`{line}` should say why it refuses to start (name `acount`)\n{output}"
            );
        }
    }
}

#[test]
fn check_config_accepts_good_configs() {
    let tmp = stack::tempdir("ra-it-cfg");
    for setup in [KeySetup::EcKid, KeySetup::RsaKid, KeySetup::EcLeafX5c] {
        let keys = KeyFiles::write(setup, &tmp.path().join(format!("{setup:?}")));
        let path = tmp.path().join(format!("{setup:?}.yml"));
        fs::write(
            &path,
            config_yaml(
                &keys,
                &[User::new("alice"), User::new("bob")],
                true,
                GOOD_ACL,
            ),
        )
        .expect("write");
        let out = run_cli(&["check-config", &path.to_string_lossy()]);
        assert_eq!(
            out.code,
            Some(0),
            "check-config rejected a good config ({setup:?}):\n{}\n{}",
            fs::read_to_string(&path).unwrap_or_default(),
            out.describe()
        );
    }
    // The committed reference fixture, as the harness uses it (generate: true, files may not
    // exist yet).
    let reference = fixture("harness-reference.yml");
    let out = run_cli(&["check-config", &reference.to_string_lossy()]);
    assert_eq!(
        out.code,
        Some(0),
        "check-config rejected tests/fixtures/harness-reference.yml\n{}",
        out.describe()
    );
}

#[test]
fn check_config_warns_about_ci_issuers_that_pin_no_repository_or_owner() {
    let tmp = stack::tempdir("ra-it-cfg");
    let keys = KeyFiles::write(KeySetup::EcKid, &tmp.path().join("keys"));
    let base = config_yaml(&keys, &[User::new("alice")], false, GOOD_ACL);
    let check = |name: &str, ci: &str| {
        let path = tmp.path().join(name);
        fs::write(&path, format!("{base}oidc_tokens:\n{ci}")).expect("write");
        let out = run_cli(&["check-config", &path.to_string_lossy()]);
        assert_eq!(
            out.code,
            Some(0),
            "a warning is not an error\n{}",
            out.describe()
        );
        proc::strip_ansi(&out.combined())
    };
    let text = check(
        "open.yml",
        "  - issuer: https://token.actions.githubusercontent.com\n    audience: registry\n    \
         labels_claims: [repository]\n",
    );
    assert!(
        text.contains("warning: oidc_tokens[0].required_claims")
            && text.contains("repository_owner"),
        "{text}"
    );
    let text = check(
        "pinned.yml",
        "  - issuer: https://token.actions.githubusercontent.com\n    audience: registry\n    \
         required_claims: {repository_owner: acme}\n",
    );
    assert!(!text.contains("required_claims"), "{text}");
}

/// A signing key that group or others can read is named in a warning at start-up; the server
/// starts anyway (the operator decides), and an owner-only key gives no warning.
#[cfg(unix)]
#[test]
fn serve_warns_about_a_signing_key_readable_by_others() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = stack::tempdir("ra-it-cfg");
    let keys = KeyFiles::write(KeySetup::EcKid, &tmp.path().join("keys"));
    let path = tmp.path().join("good.yml");
    fs::write(
        &path,
        config_yaml(&keys, &[User::new("alice")], false, GOOD_ACL),
    )
    .expect("write");
    fs::set_permissions(&keys.key, fs::Permissions::from_mode(0o644)).expect("chmod");
    let log = tmp.path().join("serve.log");
    let server = server::AuthServer::start(&path, &log);
    let r = crate::common::http::get(&format!("http://{}/readyz", server.addr), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let text = proc::strip_ansi(&fs::read_to_string(&log).unwrap_or_default());
    let warning = text
        .lines()
        .find(|l| l.contains("readable by group or others"))
        .unwrap_or_else(|| panic!("no warning about the readable key:\n{text}"));
    assert!(
        warning.contains("WARN") && warning.contains("token.key") && warning.contains("0644"),
        "{warning}"
    );
    drop(server);

    fs::set_permissions(&keys.key, fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = run_cli(&["check-config", &path.to_string_lossy()]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(
        !out.combined().contains("readable by group or others"),
        "{}",
        out.describe()
    );
}

#[test]
fn check_config_warns_about_mixed_bcrypt_costs_and_names_the_users() {
    let tmp = stack::tempdir("ra-it-cfg");
    let keys = KeyFiles::write(KeySetup::EcKid, &tmp.path().join("keys"));
    let (alice, carol) = (User::new("alice"), User::new("carol"));
    // alice at cost 4 (config_yaml's), carol at cost 6 in users_file.
    let carol_hash = bcrypt::hash(&carol.password, 6).expect("bcrypt");
    fs::write(
        tmp.path().join("users.htpasswd"),
        format!("carol:{carol_hash}\n"),
    )
    .expect("write users_file");
    let path = tmp.path().join("mixed.yml");
    let yaml = config_yaml(&keys, &[alice], false, GOOD_ACL);
    fs::write(&path, format!("{yaml}users_file: users.htpasswd\n")).expect("write");
    let out = run_cli(&["check-config", &path.to_string_lossy()]);
    let text = proc::strip_ansi(&out.combined());
    assert_eq!(
        out.code,
        Some(0),
        "a warning is not an error\n{}",
        out.describe()
    );
    assert!(
        text.lines().any(|l| l.starts_with("warning: ")
            && l.contains("cost 4: `alice`; cost 6: `carol`")
            && l.contains("rehash every password with one cost")),
        "check-config must warn about the mixed bcrypt costs\n{}",
        out.describe()
    );
}

#[test]
fn check_config_warns_about_unverified_and_plaintext_backend_transports() {
    let tmp = stack::tempdir("ra-it-cfg");
    let keys = KeyFiles::write(KeySetup::EcKid, &tmp.path().join("keys"));
    let svc = tmp.path().join("svc.pw");
    fs::write(&svc, "service-password\n").expect("write svc.pw");
    let base = config_yaml(&keys, &[User::new("alice")], false, GOOD_ACL);
    // check-config only parses: nothing here is ever connected to.
    let write = |name: &str, pg: &str, ldap_addr: &str, ldap_extra: &str| {
        let path = tmp.path().join(name);
        let yaml = format!(
            "{base}sql_auth:\n  url: \"{pg}\"\n{}authn_order: [users, ldap_auth, sql_auth]\n",
            crate::ldap::ldap_yaml(ldap_addr, ldap_extra, &svc)
        );
        fs::write(&path, yaml).expect("write");
        path
    };
    let check = |path: &std::path::Path| {
        let out = run_cli(&["check-config", &path.to_string_lossy()]);
        assert_eq!(
            out.code,
            Some(0),
            "warnings are not errors\n{}",
            out.describe()
        );
        (proc::strip_ansi(&out.combined()), out.describe())
    };
    let weak = write(
        "weak.yml",
        "postgres://ra:pw@192.0.2.10:5432/registry?sslmode=require",
        "192.0.2.20:389",
        "",
    );
    let (text, describe) = check(&weak);
    let warning = |needle: &str| {
        text.lines()
            .any(|l| l.starts_with("warning: ") && l.contains(needle))
    };
    assert!(
        warning("sql_auth.url") && warning("`sslmode=require`") && warning("sslmode=verify-full"),
        "no warning for PostgreSQL with sslmode=require\n{describe}"
    );
    assert!(
        warning("ldap_auth.tls") && warning("plaintext") && warning("tls: starttls"),
        "no warning for plaintext LDAP\n{describe}"
    );
    assert!(!text.contains(":pw@"), "the password is shown\n{describe}");

    let strong = write(
        "strong.yml",
        "postgres://ra:pw@192.0.2.10:5432/registry?sslmode=verify-full",
        "192.0.2.20:389",
        "  tls: starttls\n",
    );
    let local = write(
        "local.yml",
        "postgres://ra:pw@127.0.0.1:5432/registry",
        "127.0.0.1:389",
        "",
    );
    for path in [strong, local] {
        let (text, describe) = check(&path);
        // Only the transports matter here (the test's key and password files are 0644, which
        // the secret-file check rightly warns about).
        assert!(
            !text
                .lines()
                .any(|l| l.contains("warning:") && !l.contains("readable by group or others")),
            "verified or loopback transports must not warn\n{describe}"
        );
    }
}
