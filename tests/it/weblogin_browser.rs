//! A real browser: Debian's headless Chromium, driven by puppeteer-core
//! (tests/js/browser-login.mjs), opens the index, clicks through the GitHub login at the fake
//! provider, reads the minted password from the result page; skopeo then pulls with it through
//! the real registry 2.8.2. axe-core checks our pages (no serious or critical violation), the
//! inline style must apply under our CSP, and a screenshot of the result page is kept as
//! `target/test-artifacts/weblogin-result.png`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::clients::Outcome;
use crate::common::idp::{FakeGithub, GhUser, js_dir};
use crate::common::keys::yaml_str;
use crate::common::proc::{self, require_tool};
use crate::common::webstack::{CLIENT_ID, CLIENT_SECRET, WebStack, login_at_fake, secret_file};

#[test]
fn a_browser_signs_in_with_github_and_the_password_pulls_through_the_registry() {
    let node = require_tool("node");
    let chromium = require_tool("chromium");
    let js = js_dir();
    let gh = FakeGithub::start(CLIENT_ID, CLIENT_SECRET, "unset");
    gh.set_user(GhUser {
        login: "alice".to_owned(),
        orgs: [("acme".to_owned(), "active".to_owned())].into(),
        teams: vec![("acme".to_owned(), "platform".to_owned(), None)],
    });
    let (web, api) = (gh.web(), gh.api());
    let s = WebStack::start(
        move |dir, registry| {
            format!(
                "github_auth:\n  organization: acme\n  client_id: {CLIENT_ID}\n  \
                 client_secret_file: {}\n  github_web_uri: {web}\n  github_api_uri: {api}\n  \
                 registry_url: {registry}\n",
                yaml_str(&secret_file(dir).display().to_string())
            )
        },
        r#"  - match: {labels: {teams: platform}, name: "platform/**"}
    actions: [pull, push]
"#,
        true,
    );
    gh.set_redirect_uri(&format!("{}/github_auth", s.base()));
    // Something to pull.
    let seed = login_at_fake(&s.base(), "github_auth", "alice");
    let push = s
        .clients()
        .skopeo_push(Some(("alice", &seed.password)), "platform/app", "v1", None);
    assert_eq!(push.outcome, Outcome::Ok, "{}", push.log);

    let out_dir = s.dir.join("browser");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut cmd = Command::new(node);
    cmd.arg(js.join("browser-login.mjs"))
        .arg(s.base())
        .arg(&out_dir)
        .arg("github_auth")
        .current_dir(&js)
        .env("CHROMIUM", &chromium);
    let run = proc::run(&mut cmd, None, Duration::from_secs(120));
    assert!(run.success(), "the browser run failed:\n{}", run.describe());
    let result: Value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", run.describe()));

    // Keep the screenshot.
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("weblogin-result.png");
    std::fs::copy(out_dir.join("result.png"), &shot).expect("the screenshot was taken");
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000);

    for (name, want) in [("index", 200), ("result", 200), ("error", 400)] {
        let p = &result["pages"][name];
        assert_eq!(p["status"], want, "{name}: {p}");
        assert_eq!(
            p["styled"], true,
            "{name}: the inline style did not apply under the CSP"
        );
        let bad: Vec<&Value> = p["violations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .collect();
        assert!(bad.is_empty(), "axe-core on the {name} page: {bad:#?}");
    }
    assert_eq!(result["username"], "alice");
    let password = result["password"].as_str().unwrap();
    assert!(password.starts_with("rapw_"));
    let pull = s
        .clients()
        .skopeo_pull(Some(("alice", password)), "platform/app", "v1");
    assert_eq!(
        pull.outcome,
        Outcome::Ok,
        "{}\n{}",
        pull.log,
        s.diagnostics()
    );
}
