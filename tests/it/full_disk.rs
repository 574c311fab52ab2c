//! A full disk, for real: a small tmpfs mounted by the test (needs root, like the podman and
//! dockerd tests) and filled to the last block. Whatever registry-auth writes must fail with a
//! clear error naming the file, never a panic or a 500, and never lose or half-write data:
//!
//! * the first start with `token.generate`: refused with the path and "No space left on
//!   device", no partial key or certificate left behind; starts once there is room;
//! * the embedded password store (SQLite in `data_dir`): logging in and signing out answer a
//!   503 page while the disk is full, passwords minted before keep working, `/readyz` shows the
//!   store `down`; once there is room everything works again and nothing was lost;
//! * `tokens revoke`: refused with the path ("nothing was revoked"), the revocation list on disk
//!   unchanged, no temporary file left.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::http;
use crate::common::idp::{FakeGithub, GhUser, element_text};
use crate::common::keys::yaml_str;
use crate::common::proc::{self, free_port};
use crate::common::server::{self, AuthServer};
use crate::common::stack::{ISSUER, SERVICE, tempdir};
use crate::common::webstack::{self, CLIENT_ID, CLIENT_SECRET, WebStack, login_page};

/// A tmpfs of a few hundred KiB, unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size_kib: u32) -> Self {
        let dir = tempdir("ra-it-disk");
        let path = dir.path().join("disk");
        fs::create_dir(&path).unwrap();
        let out = proc::run(
            Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size_kib}k,mode=0755"),
                    "tmpfs",
                ])
                .arg(&path),
            None,
            Duration::from_secs(10),
        );
        assert!(
            out.success(),
            "cannot mount a tmpfs for the full-disk tests (they need root with CAP_SYS_ADMIN, \
             like the dockerd tests):\n{}",
            out.describe()
        );
        Self { path, _dir: dir }
    }

    fn filler(&self) -> PathBuf {
        self.path.join("filler")
    }

    /// Writes until the file system refuses (ENOSPC).
    fn fill(&self) {
        let mut f = fs::File::create(self.filler()).unwrap();
        let block = [0_u8; 4096];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        // Also the last bytes of a partial block.
        while f.write(&[0]).is_ok_and(|n| n == 1) {}
        let _ = f.sync_all();
        let probe = self.path.join("probe");
        let full = fs::write(&probe, b"x").map_err(|e| e.raw_os_error());
        let _ = fs::remove_file(&probe);
        assert_eq!(full, Err(Some(28)), "the disk is not full");
    }

    fn free(&self) {
        fs::remove_file(self.filler()).unwrap();
    }

    /// File names on the disk, sorted (the filler excluded).
    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "filler")
            .collect();
        names.sort();
        names
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn assert_clear_failure(out: &proc::CmdOutput, path: &Path) {
    let text = out.combined();
    assert!(!out.success(), "it did not fail:\n{}", out.describe());
    assert!(
        text.contains("No space left on device"),
        "the error does not say the disk is full:\n{text}"
    );
    assert!(
        text.contains(&path.display().to_string()),
        "the error does not name {}:\n{text}",
        path.display()
    );
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn first_start_on_a_full_disk_fails_clearly_and_leaves_no_partial_key() {
    let disk = SmallDisk::mount(256);
    let tmp = tempdir("ra-it-full-keys");
    let (key, cert) = (disk.path.join("token.key"), disk.path.join("token.crt"));
    let cfg = tmp.path().join("registry-auth.yml");
    fs::write(
        &cfg,
        format!(
            "server:\n  addr: \"127.0.0.1:0\"\ntoken:\n  issuer: {}\n  generate: true\n  \
             key: {}\n  certificate: {}\nusers:\n  \"\": {{}}\nacl:\n  - match: {{name: \
             \"public/*\"}}\n    actions: [pull]\n",
            yaml_str(ISSUER),
            yaml_str(&key.display().to_string()),
            yaml_str(&cert.display().to_string())
        ),
    )
    .unwrap();

    disk.fill();
    let mut cmd = server::command();
    cmd.args(["serve", "--config"])
        .arg(&cfg)
        .args(["--listen", "127.0.0.1:0"]);
    let out = proc::run(&mut cmd, None, Duration::from_secs(30));
    assert_clear_failure(&out, &key);
    assert_eq!(
        disk.files(),
        Vec::<String>::new(),
        "something was left behind"
    );
    println!(
        "full disk at first start: exit {:?}; {}",
        out.code,
        out.combined()
            .lines()
            .find(|l| l.contains("No space"))
            .unwrap_or_default()
            .trim()
    );

    disk.free();
    let server = AuthServer::start(&cfg, &tmp.path().join("registry-auth.log"));
    assert!(key.is_file() && cert.is_file());
    let r = http::get(
        &format!(
            "http://{}/auth?{}",
            server.addr,
            http::query(&[("service", SERVICE), ("scope", "repository:public/a:pull")])
        ),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// One web login; the result page's status and, on a 200, the password.
fn login(base: &str) -> (u16, Option<String>) {
    let page = login_page(base, "github_auth", "alice");
    (page.status, element_text(&page.body, "password"))
}

fn sign_out(base: &str, password: &str) -> (u16, String) {
    let page = webstack::sign_out(base, password);
    (page.status, page.body)
}

#[test]
fn embedded_store_on_a_full_disk_answers_503_and_loses_nothing() {
    let disk = SmallDisk::mount(2048);
    let gh = FakeGithub::start(CLIENT_ID, CLIENT_SECRET, "unset");
    gh.set_user(GhUser::member("alice", "acme", "platform"));
    let (web, api, data) = (gh.web(), gh.api(), disk.path.display().to_string());
    let stack = WebStack::start_full(
        free_port(),
        "",
        move |_, _| {
            format!(
                "data_dir: {}\ngithub_auth:\n  organization: acme\n  client_id: {CLIENT_ID}\n  \
                 client_secret: {CLIENT_SECRET}\n  github_web_uri: {web}\n  github_api_uri: {api}\n  \
                 revalidate_after: 1h\nlockout:\n  enabled: false\n",
                yaml_str(&data)
            )
        },
        "  - match: {labels: {teams: platform}, name: \"platform/**\"}\n    actions: [pull]\n",
        false,
    );
    let base = stack.base();
    gh.set_redirect_uri(&format!("{base}/github_auth"));
    let works = |pw: &str| {
        stack
            .token("alice", pw, "repository:platform/app:pull")
            .status
    };
    let store_status = || {
        http::get(&format!("{base}/readyz"), &[]).json()["backends"]["store"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };

    let (status, kept) = login(&base);
    assert_eq!(status, 200);
    let kept = kept.unwrap();
    let (status, revoked_later) = login(&base);
    assert_eq!(status, 200);
    let revoked_later = revoked_later.unwrap();

    disk.fill();
    let (status, password) = login(&base);
    assert_eq!(
        (status, password.is_some()),
        (503, false),
        "a login with a full disk\n{}",
        stack.diagnostics()
    );
    assert_eq!(
        works(&kept),
        200,
        "a password minted before stopped working"
    );
    let (status, body) = sign_out(&base, &revoked_later);
    assert_eq!(status, 503, "sign-out with a full disk: {body}");
    assert!(body.contains("It still works"), "{body}");
    // `/readyz` tells what the last call found: the failed write.
    assert_eq!(store_status(), "down");
    assert_eq!(
        works(&revoked_later),
        200,
        "a failed sign-out revoked it anyway"
    );
    let log = stack.server.synced_log();
    assert!(
        log.contains("full"),
        "the log does not say the disk is full:\n{}",
        stack.diagnostics()
    );
    assert!(!log.contains("panicked"), "{}", stack.diagnostics());

    disk.free();
    let (status, fresh) = login(&base);
    assert_eq!(status, 200, "{}", stack.diagnostics());
    assert_eq!(works(&fresh.unwrap()), 200);
    assert_eq!(works(&kept), 200);
    let (status, body) = sign_out(&base, &revoked_later);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("has been revoked"), "{body}");
    assert_eq!(works(&revoked_later), 401);
    assert_eq!(store_status(), "up");
}

#[test]
fn tokens_revoke_on_a_full_disk_keeps_the_old_list() {
    let disk = SmallDisk::mount(256);
    let tmp = tempdir("ra-it-full-revoke");
    let list = disk.path.join("revoked.yml");
    fs::write(
        tmp.path().join("refresh.secret"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    let cfg = tmp.path().join("registry-auth.yml");
    fs::write(
        &cfg,
        format!(
            "server:\n  addr: \"127.0.0.1:0\"\ntoken:\n  issuer: {}\n  generate: true\n  \
             key: token.key\n  certificate: token.crt\n  refresh:\n    enabled: true\n    \
             secret_file: refresh.secret\n    revocations_file: {}\nusers:\n  \"\": {{}}\nacl: []\n",
            yaml_str(ISSUER),
            yaml_str(&list.display().to_string())
        ),
    )
    .unwrap();
    let cfg_s = cfg.display().to_string();
    let revoke =
        |user: &str| server::run_cli(&["tokens", "revoke", "--config", &cfg_s, "--user", user]);

    let out = revoke("alice");
    assert!(out.success(), "{}", out.describe());
    let before = fs::read_to_string(&list).unwrap();
    assert!(before.contains("alice"), "{before}");

    disk.fill();
    let out = revoke("bob");
    assert_clear_failure(&out, &list.with_extension("tmp-revoke"));
    assert!(
        out.combined().contains("nothing was revoked"),
        "{}",
        out.describe()
    );
    assert_eq!(
        fs::read_to_string(&list).unwrap(),
        before,
        "the list changed"
    );
    assert_eq!(disk.files(), ["revoked.yml"], "a temporary file was left");

    disk.free();
    let out = revoke("bob");
    assert!(out.success(), "{}", out.describe());
    let after = fs::read_to_string(&list).unwrap();
    assert!(after.contains("alice") && after.contains("bob"), "{after}");
}
