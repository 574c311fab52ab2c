//! Hot reload through the real binary: a file that changes while the loader runs is loaded
//! again, never marked as seen without having been loaded.
//!
//! The loader is paused deterministically between its read of `users_file` and the end of the
//! load by the debug-build test hook `RA_TEST_PAUSE_DIR` (src/config/sources.rs), so
//! the test never races the loader with sleeps.

use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::keys::{KeyFiles, KeySetup, bcrypt_hash};
use crate::common::stack::{User, config_yaml, tempdir};
use crate::ops::{Proc, token_get, write_atomic};

fn htpasswd(users: &[&User]) -> String {
    users
        .iter()
        .map(|u| format!("{}:{}\n", u.name, bcrypt_hash(&u.password)))
        .collect()
}

fn status(base: &str, u: &User) -> u16 {
    token_get(
        base,
        "/auth",
        &["repository:x/app:pull"],
        Some((&u.name, &u.password)),
        &[],
    )
    .status
}

fn wait_file(path: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn a_users_file_changed_while_the_loader_runs_is_loaded_again() {
    let tmp = tempdir("ra-it-reload-race");
    let dir = tmp.path();
    let keys = KeyFiles::write(KeySetup::EcKid, &dir.join("keys"));
    let (admin, alice, bob, carol) = (
        User::new("admin"),
        User::new("alice"),
        User::new("bob"),
        User::new("carol"),
    );
    let users = dir.join("users.htpasswd");
    fs::write(&users, htpasswd(&[&alice, &bob])).unwrap();
    let config = dir.join("registry-auth.yml");
    let acl = "  - match: {name: \"x/*\"}\n    actions: [pull]\n";
    let yaml = config_yaml(&keys, std::slice::from_ref(&admin), false, acl);
    fs::write(&config, format!("{yaml}users_file: users.htpasswd\n")).unwrap();
    let hook = dir.join("hook");
    fs::create_dir(&hook).unwrap();
    let log = dir.join("registry-auth.log");
    let hook_dir = hook.to_string_lossy().into_owned();
    let config_arg = config.to_string_lossy().into_owned();
    let srv = Proc::start(
        &["serve", "--config", &config_arg, "--listen", "127.0.0.1:0"],
        &[("RA_TEST_PAUSE_DIR", &hook_dir)],
        &log,
    );
    let base = srv.base();
    assert_eq!(status(&base, &alice), 200, "{}", srv.log_tail(10));
    assert_eq!(status(&base, &carol), 401);

    // Arm the hook, then change the file (carol added): the poller loads it, and the loader
    // stops right after reading it.
    fs::write(hook.join("pause"), "users.htpasswd").unwrap();
    write_atomic(&users, &htpasswd(&[&alice, &bob, &carol]));
    assert!(
        wait_file(&hook.join("paused"), Duration::from_secs(20)),
        "the loader never read users.htpasswd with the hook armed (the hook needs a debug build \
         of registry-auth):\n{}",
        srv.log_tail(10)
    );
    // While the load is still running: alice is removed. Then the loader goes on.
    write_atomic(&users, &htpasswd(&[&bob, &carol]));
    fs::write(hook.join("resume"), "").unwrap();

    // The version without alice must be the one loaded. The old watcher fingerprinted the
    // files after the load, so it swapped in the version it had read (with alice), took the
    // newer one as seen, and alice kept working until a SIGHUP.
    assert!(
        srv.wait_log("configuration reloaded", 1, Duration::from_secs(20)),
        "no reload within 20 s:\n{}",
        srv.log_tail(15)
    );
    assert_eq!(
        status(&base, &alice),
        401,
        "alice was removed from users_file while the loader ran, yet her password still \
         works; log:\n{}",
        srv.log_tail(15)
    );
    assert_eq!(status(&base, &carol), 200, "{}", srv.log_tail(15));
    assert_eq!(status(&base, &bob), 200);
    // The load that read the intermediate version was not swapped in: the file had changed
    // before it ended.
    assert_eq!(
        srv.count_log("a file changed while the configuration was loading"),
        1,
        "{}",
        srv.log_tail(15)
    );
}
