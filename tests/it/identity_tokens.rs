//! Refresh (identity) tokens with the real Docker clients (PROTOCOL.md §1.5, §3.2):
//! * `docker login` against a server with `token.refresh.enabled` stores an `identitytoken` (and
//!   not the password) in `config.json`; a private dockerd then pulls and pushes with it, by the
//!   OAuth2 `POST` `grant_type=refresh_token` flow;
//! * with refresh tokens disabled `docker login` stores the password form (`auth`);
//! * `registry-auth tokens revoke` (by user, by token) stops stored identity tokens while passwords,
//!   other users, anonymous pulls and fresh logins keep working.
//!
//! Each docker user gets its own `DOCKER_CONFIG` (a `config.json` with no `credsStore`, so no
//! credential helper can hold the login instead of the file). Logins run daemonless (the CLI
//! talks to the token server itself, as in the other docker tests); pulls and pushes go through
//! the shared private dockerd without logging in again, so they can only use the stored login.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::common::clients::{Outcome, classify};
use crate::common::dockerd::{self, Dockerd};
use crate::common::image;
use crate::common::keys::{KeyFiles, KeySetup};
use crate::common::proc::{self, CmdOutput, require_tool};
use crate::common::registry::RegistryKind;
use crate::common::scenario::{self, steps};
use crate::common::server::run_cli;
use crate::common::stack::{self, Stack, Trust, User, config_yaml};

const ACL: &str = r#"  - match: {account: alice, name: "public/*"}
    actions: [pull, push]
    comment: alice publishes
  - match: {account: "/.+/", name: "${account}/*"}
    actions: [pull, push]
    comment: own namespace
  - match: {name: "public/*"}
    actions: [pull]
    comment: everyone pulls public
"#;

/// The `token.refresh` section of these tests (paths relative to the config file's folder).
const REFRESH_YAML: &str = "  refresh:
    enabled: true
    secret_file: refresh.secret
    lifetime: 90d
    revocations_file: revoked.yml
";

const TIMEOUT: Duration = Duration::from_secs(120);

/// A stack whose config has (or not) `token.refresh`.
struct Env {
    stack: Stack,
    /// The test's temp dir (config, secret, revocations file, logs).
    root: PathBuf,
    config: PathBuf,
}

impl Env {
    fn start(refresh: bool, users: &[User]) -> Self {
        Self::start_on(RegistryKind::V2, refresh, users)
    }

    /// On registry 2.8.2 with `kid-libtrust`, or on v3 with `x5c` and the CA in its bundle.
    fn start_on(kind: RegistryKind, refresh: bool, users: &[User]) -> Self {
        let tmp = stack::tempdir("ra-it-idt");
        let root = tmp.path().to_owned();
        let setup = match kind {
            RegistryKind::V2 => KeySetup::EcKid,
            RegistryKind::V3 => KeySetup::EcLeafX5c,
        };
        let keys = KeyFiles::write(setup, &root.join("keys"));
        let mut yaml = config_yaml(&keys, users, true, ACL);
        if refresh {
            // 48 random characters; the server needs at least 32 bytes.
            fs::write(
                root.join("refresh.secret"),
                format!("{}\n", image::random_hex(24)),
            )
            .expect("write refresh.secret");
            assert!(
                yaml.contains("\nusers:\n"),
                "unexpected config layout:\n{yaml}"
            );
            yaml = yaml.replacen("\nusers:\n", &format!("\n{REFRESH_YAML}users:\n"), 1);
        }
        let config = root.join("registry-auth.yml");
        fs::write(&config, &yaml).expect("write config");
        let passwords = users
            .iter()
            .map(|u| (u.name.clone(), u.password.clone()))
            .collect();
        let mut stack =
            Stack::start_with_config_on(Trust::bundle(kind), tmp, keys, config.clone(), passwords);
        // The daemon steps below use the same shared dockerd; this puts its log tail in the
        // diagnostics.
        stack.clients.use_dockerd();
        Self {
            stack,
            root,
            config,
        }
    }

    fn registry(&self) -> &str {
        &self.stack.registry.addr
    }

    fn image(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.registry())
    }

    fn log_text(&self) -> String {
        self.stack.server.synced_log()
    }

    /// `token issued` / `token refused` lines of our server's log with `grant=GRANT`.
    fn token_lines(&self, what: &str, grant: &str) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains(what) && field(l, "grant").as_deref() == Some(grant))
            .map(str::to_owned)
            .collect()
    }

    /// Fails with the outputs, the servers' logs and the user's config.json.
    #[track_caller]
    fn check(&self, ok: bool, what: &str, out: &CmdOutput, cli: Option<&DockerCli>) {
        if !ok {
            panic!(
                "{what}\n{}{}\n{}",
                out.describe(),
                cli.map(|c| format!(
                    "--- {} ---\n{}\n",
                    c.config_file().display(),
                    c.raw_config()
                ))
                .unwrap_or_default(),
                self.stack.diagnostics()
            );
        }
    }

    /// `registry-auth tokens revoke --config CONFIG ARGS…`.
    fn revoke(&self, args: &[&str]) -> CmdOutput {
        let config = self.config.to_string_lossy().into_owned();
        let mut all = vec!["tokens", "revoke", "--config", config.as_str()];
        all.extend_from_slice(args);
        let out = run_cli(&all);
        self.check(out.success(), "tokens revoke failed", &out, None);
        out
    }

    /// Checks every credential of the test against our server's log, plus the refresh-token
    /// shape (`rat1.…`) in any form.
    fn assert_log_secrecy(&self, clis: &[&DockerCli]) {
        for cli in clis {
            if let Some(t) = cli.identity_token(self.registry()) {
                self.stack.note_token(&t);
            }
        }
        self.stack.assert_log_secrecy();
        let text = self.log_text();
        assert!(
            !text.contains("rat1."),
            "registry-auth's log ({}) holds something shaped like a refresh token",
            self.stack.server.log.display()
        );
    }
}

/// The value of `name=value` or `name="value"` in a text log line.
pub(crate) fn field(line: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=");
    let start = line.find(&key)? + key.len();
    let rest = &line[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = quoted.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.extend(chars.next()),
                '"' => return Some(out),
                c => out.push(c),
            }
        }
        None
    } else {
        // Up to the next space (`scopes= next=…` is an empty value).
        Some(rest.split(' ').next().unwrap_or_default().to_owned())
    }
}

/// The docker CLI of one user: its own `DOCKER_CONFIG`, logging in without a daemon, pulling
/// and pushing through the shared dockerd with whatever that config holds.
struct DockerCli {
    name: String,
    config_dir: PathBuf,
    home: PathBuf,
    /// `unix://…` of a socket that does not exist: the CLI logs in by itself.
    no_daemon: String,
    dockerd: Arc<Dockerd>,
}

impl DockerCli {
    fn new(env: &Env, name: &str) -> Self {
        let dir = env.root.join("docker-users").join(name);
        let config_dir = dir.join("config");
        let home = dir.join("home");
        fs::create_dir_all(&config_dir).expect("mkdir DOCKER_CONFIG");
        fs::create_dir_all(&home).expect("mkdir HOME");
        // No credsStore / credHelpers: logins must land in this file.
        fs::write(config_dir.join("config.json"), "{\"auths\": {}}\n").expect("config.json");
        Self {
            name: name.to_owned(),
            no_daemon: format!("unix://{}/no-docker.sock", dir.display()),
            config_dir,
            home,
            dockerd: dockerd::shared(),
        }
    }

    fn run(&self, daemon: bool, args: &[&str], input: Option<&str>) -> CmdOutput {
        let mut cmd = std::process::Command::new(require_tool("docker"));
        cmd.args(args)
            .env("DOCKER_CONFIG", &self.config_dir)
            .env("HOME", &self.home)
            .env(
                "DOCKER_HOST",
                if daemon {
                    &self.dockerd.host
                } else {
                    &self.no_daemon
                },
            )
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .env_remove("DOCKER_AUTH_CONFIG");
        proc::run(&mut cmd, input, TIMEOUT)
    }

    /// Daemonless `docker login -u USER --password-stdin REGISTRY`.
    fn login(&self, env: &Env, user: &str, password: &str) -> CmdOutput {
        env.stack.note_sent(user, password);
        self.run(
            false,
            &["login", "-u", user, "--password-stdin", env.registry()],
            Some(&format!("{password}\n")),
        )
    }

    fn pull(&self, image: &str) -> CmdOutput {
        self.run(true, &["pull", image], None)
    }

    /// `docker tag FROM TO` then `docker push TO`, through the daemon.
    fn tag_and_push(&self, from: &str, to: &str) -> CmdOutput {
        let tag = self.run(true, &["tag", from, to], None);
        if !tag.success() {
            return tag;
        }
        self.run(true, &["push", to], None)
    }

    fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.json")
    }

    fn raw_config(&self) -> String {
        fs::read_to_string(self.config_file()).unwrap_or_else(|e| format!("(unreadable: {e})"))
    }

    fn config(&self) -> Value {
        serde_json::from_str(&self.raw_config()).unwrap_or_else(|e| {
            panic!(
                "{} of {} is not JSON: {e}\n{}",
                self.config_file().display(),
                self.name,
                self.raw_config()
            )
        })
    }

    /// `auths[REGISTRY]` of config.json.
    fn stored(&self, registry: &str) -> Value {
        self.config()["auths"][registry].clone()
    }

    fn identity_token(&self, registry: &str) -> Option<String> {
        self.stored(registry)["identitytoken"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    }
}

/// The claims of one of our refresh tokens (`rat1.<payload>.<mac>`), read without the secret.
fn refresh_claims(token: &str) -> Value {
    let mut parts = token.split('.');
    assert_eq!(parts.next(), Some("rat1"), "not a rat1 refresh token");
    let payload = URL_SAFE_NO_PAD
        .decode(parts.next().unwrap_or_default())
        .expect("refresh token payload is base64url");
    serde_json::from_slice(&payload).expect("refresh token payload is JSON")
}

/// Seeds Docker schema 2 images (what `docker pull` handles everywhere) with skopeo.
fn seed(env: &Env, images: &[(&str, &str)]) {
    let table: Vec<Value> = images
        .iter()
        .map(|(user, repo)| {
            json!({"name": format!("seed: {user} pushes {repo}:v1 (v2s2)"), "op": "push",
                   "user": user, "repo": repo, "tag": "v1", "format": "v2s2", "expect": "ok"})
        })
        .collect();
    scenario::run(&env.stack, "seed images", &steps(Value::Array(table)));
}

/// Asserts what `docker login` stored for a user with refresh tokens enabled: an identity
/// token for this server and user, never the password. Returns the token.
fn assert_identity_token_stored(env: &Env, cli: &DockerCli, user: &str, password: &str) -> String {
    let reg = env.registry();
    let stored = cli.stored(reg);
    let raw = cli.raw_config();
    let ctx = || format!("{} of {user}:\n{raw}", cli.config_file().display());
    let Some(token) = cli.identity_token(reg) else {
        panic!(
            "docker login stored no identitytoken for {reg}: {}\n{}",
            ctx(),
            env.stack.diagnostics()
        );
    };
    let claims = refresh_claims(&token);
    assert_eq!(claims["sub"], user, "identity token subject; {}", ctx());
    assert_eq!(
        claims["aud"],
        stack::SERVICE,
        "identity token audience; {}",
        ctx()
    );
    let pair = format!("{user}:{password}");
    for (what, needle) in [
        ("the password", password.to_owned()),
        ("user:password", pair.clone()),
        ("base64(user:password)", STANDARD.encode(&pair)),
    ] {
        assert!(
            !raw.contains(&needle),
            "config.json holds {what} although the server issued an identity token; {}",
            ctx()
        );
    }
    assert!(
        stored.get("password").is_none(),
        "config.json has a password field; {}",
        ctx()
    );
    // The CLI keeps the user name next to the identity token (`auth` = base64("user:")).
    if let Some(auth) = stored["auth"].as_str() {
        let decoded = STANDARD.decode(auth).unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&decoded),
            format!("{user}:"),
            "`auth` must carry the user name only; {}",
            ctx()
        );
    }
    assert!(
        cli.config().get("credsStore").is_none() && cli.config().get("credHelpers").is_none(),
        "a credential helper was configured; {}",
        ctx()
    );
    token
}

fn users() -> Vec<User> {
    vec![User::new("alice"), User::new("bob")]
}

/// (a) `docker login` stores an identity token; dockerd pulls and pushes with it through the
/// refresh grant, and the ACL still applies.
#[test]
fn docker_login_stores_identity_token_used_by_dockerd() {
    identity_token_used_by_dockerd(RegistryKind::V2);
}

/// (a) against registry v3 (`x5c`).
#[test]
fn docker_login_stores_identity_token_used_by_dockerd_registry_v3() {
    identity_token_used_by_dockerd(RegistryKind::V3);
}

fn identity_token_used_by_dockerd(kind: RegistryKind) {
    let env = Env::start_on(kind, true, &users());
    seed(&env, &[("alice", "alice/docker")]);
    let pw = env.stack.password("alice").to_owned();
    let alice = DockerCli::new(&env, "alice");

    let out = alice.login(&env, "alice", &pw);
    env.check(out.success(), "docker login alice", &out, Some(&alice));
    let token = assert_identity_token_stored(&env, &alice, "alice", &pw);
    // The login was a password grant that handed out exactly this refresh token.
    let id = refresh_claims(&token)["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let logins = env.token_lines("token issued", "password");
    assert!(
        logins.iter().any(|l| {
            field(l, "account").as_deref() == Some("alice")
                && field(l, "refresh_token_id").as_deref() == Some(id.as_str())
        }),
        "no `token issued … grant=password refresh_token_id={id}` line for the login:\n{}",
        logins.join("\n")
    );
    assert!(
        env.token_lines("token issued", "refresh_token").is_empty(),
        "a refresh grant before any pull"
    );

    // Pull through dockerd without logging in again: only the identity token is available.
    let out = alice.pull(&env.image("alice/docker", "v1"));
    env.check(
        out.success(),
        "dockerd: alice pulls alice/docker:v1 with the stored identity token",
        &out,
        Some(&alice),
    );
    let refreshes = env.token_lines("token issued", "refresh_token");
    assert!(
        refreshes.iter().any(|l| {
            field(l, "account").as_deref() == Some("alice")
                && field(l, "client_id").as_deref() == Some("docker")
                && field(l, "scopes").is_some_and(|s| s.contains("alice/docker"))
        }),
        "the pull did not go through a refresh grant for alice on alice/docker; \
         `token issued … grant=refresh_token` lines:\n{}\n{}",
        refreshes.join("\n"),
        env.stack.diagnostics()
    );

    // Push a new tag with it, and read the tag back with the password.
    let before = env.token_lines("token issued", "refresh_token").len();
    let out = alice.tag_and_push(
        &env.image("alice/docker", "v1"),
        &env.image("alice/docker", "v2"),
    );
    env.check(
        out.success(),
        "dockerd: alice pushes alice/docker:v2 with the stored identity token",
        &out,
        Some(&alice),
    );
    let pushes: Vec<String> = env.token_lines("token issued", "refresh_token")[before..]
        .iter()
        .filter(|l| {
            field(l, "scopes").is_some_and(|s| s.contains("alice/docker") && s.contains("push"))
        })
        .cloned()
        .collect();
    assert!(
        !pushes.is_empty(),
        "the push did not get pull,push on alice/docker through a refresh grant:\n{}",
        env.token_lines("token issued", "refresh_token").join("\n")
    );
    scenario::run(
        &env.stack,
        "after the identity-token push",
        &steps(json!([
            {"name": "alice lists tags of alice/docker (password)", "op": "tags", "user": "alice", "repo": "alice/docker", "expect": "ok", "contains": ["v1", "v2"]},
        ])),
    );

    // The ACL still decides: alice's identity token does not open bob's namespace.
    let out = alice.tag_and_push(
        &env.image("alice/docker", "v1"),
        &env.image("bob/docker", "v1"),
    );
    let got = classify(&out, false);
    env.check(
        got == Outcome::Denied,
        &format!("dockerd: alice pushes bob/docker:v1 with her identity token: expected denied, got {got}"),
        &out,
        Some(&alice),
    );

    // Nothing the daemon did put the password into the file.
    assert_identity_token_stored(&env, &alice, "alice", &pw);
    env.assert_log_secrecy(&[&alice]);
}

/// (b) Without `token.refresh`, `docker login` stores the password form and dockerd uses it.
#[test]
fn docker_login_without_refresh_tokens_stores_password() {
    let env = Env::start(false, &users());
    seed(&env, &[("alice", "alice/docker")]);
    let pw = env.stack.password("alice").to_owned();
    let alice = DockerCli::new(&env, "alice");

    let out = alice.login(&env, "alice", &pw);
    env.check(out.success(), "docker login alice", &out, Some(&alice));
    let stored = alice.stored(env.registry());
    let raw = alice.raw_config();
    assert!(
        alice.identity_token(env.registry()).is_none(),
        "identitytoken stored although refresh tokens are disabled:\n{raw}"
    );
    assert_eq!(
        stored["auth"].as_str(),
        Some(STANDARD.encode(format!("alice:{pw}")).as_str()),
        "docker login must store auth = base64(user:password):\n{raw}"
    );
    assert!(
        env.token_lines("token issued", "password")
            .iter()
            .all(|l| field(l, "refresh_token_id").unwrap_or_default().is_empty()),
        "a refresh token was issued although refresh tokens are disabled:\n{}",
        env.log_text()
    );

    let out = alice.pull(&env.image("alice/docker", "v1"));
    env.check(
        out.success(),
        "dockerd: alice pulls alice/docker:v1 with the stored password",
        &out,
        Some(&alice),
    );
    assert!(
        env.token_lines("token", "refresh_token").is_empty(),
        "a refresh grant although no identity token exists:\n{}",
        env.log_text()
    );
    env.assert_log_secrecy(&[&alice]);
}

/// (c) `tokens revoke --user alice` stops alice's stored identity token at the next refresh
/// of a running server; bob, anonymous pulls, alice's password and a fresh login still work.
/// Then `tokens revoke TOKEN` stops bob's.
#[test]
fn revoked_identity_tokens_stop_working() {
    let env = Env::start(true, &users());
    seed(
        &env,
        &[
            ("alice", "alice/docker"),
            ("bob", "bob/docker"),
            ("alice", "public/docker"),
        ],
    );
    let (apw, bpw) = (
        env.stack.password("alice").to_owned(),
        env.stack.password("bob").to_owned(),
    );
    let alice = DockerCli::new(&env, "alice");
    let bob = DockerCli::new(&env, "bob");
    let anon = DockerCli::new(&env, "anonymous");
    for (cli, user, pw) in [(&alice, "alice", &apw), (&bob, "bob", &bpw)] {
        let out = cli.login(&env, user, pw);
        env.check(
            out.success(),
            &format!("docker login {user}"),
            &out,
            Some(cli),
        );
        assert_identity_token_stored(&env, cli, user, pw);
    }
    let a_img = env.image("alice/docker", "v1");
    let b_img = env.image("bob/docker", "v1");
    let out = alice.pull(&a_img);
    env.check(
        out.success(),
        "dockerd: alice pulls (before the revocation)",
        &out,
        Some(&alice),
    );
    let out = bob.pull(&b_img);
    env.check(
        out.success(),
        "dockerd: bob pulls (before the revocation)",
        &out,
        Some(&bob),
    );

    // Revoke every token of alice, with the server running.
    let out = env.revoke(&["--user", "alice"]);
    let revoked_file = env.root.join("revoked.yml");
    let listed = fs::read_to_string(&revoked_file).unwrap_or_default();
    env.check(
        listed.contains("alice") && !listed.contains("bob"),
        &format!(
            "{} after `tokens revoke --user alice`:\n{listed}",
            revoked_file.display()
        ),
        &out,
        None,
    );

    let out = alice.pull(&a_img);
    let text = out.combined().to_lowercase();
    env.check(
        !out.success() && text.contains("unauthorized"),
        "dockerd: alice pulls with her revoked identity token: expected unauthorized",
        &out,
        Some(&alice),
    );
    let refused = env.token_lines("token refused", "refresh_token");
    assert!(
        refused
            .iter()
            .any(|l| field(l, "reason").is_some_and(|r| r.contains("revoked"))),
        "no `token refused … grant=refresh_token reason=…revoked` line:\n{}\n{}",
        refused.join("\n"),
        env.stack.diagnostics()
    );

    // Everyone else is unaffected.
    let out = bob.pull(&b_img);
    env.check(
        out.success(),
        "dockerd: bob pulls after alice's revocation",
        &out,
        Some(&bob),
    );
    let out = anon.pull(&env.image("public/docker", "v1"));
    env.check(
        out.success(),
        "dockerd: anonymous pulls public/docker:v1 after alice's revocation",
        &out,
        Some(&anon),
    );
    let out = anon.pull(&a_img);
    env.check(
        classify(&out, false) == Outcome::Denied,
        "dockerd: anonymous pulls alice/docker:v1: expected denied",
        &out,
        Some(&anon),
    );
    scenario::run(
        &env.stack,
        "passwords after the revocation",
        &steps(json!([
            {"name": "alice pulls alice/docker:v1 with her password (skopeo)", "op": "pull", "user": "alice", "repo": "alice/docker", "tag": "v1", "expect": "ok"},
        ])),
    );

    // Only tokens issued until the revocation are revoked: a new login (a later second) works.
    std::thread::sleep(Duration::from_millis(1100));
    let old = alice.identity_token(env.registry()).unwrap_or_default();
    let out = alice.login(&env, "alice", &apw);
    env.check(
        out.success(),
        "docker login alice after the revocation",
        &out,
        Some(&alice),
    );
    let new = assert_identity_token_stored(&env, &alice, "alice", &apw);
    assert_ne!(
        old, new,
        "the new login stored the revoked identity token again"
    );
    let out = alice.pull(&a_img);
    env.check(
        out.success(),
        "dockerd: alice pulls with the identity token of her new login",
        &out,
        Some(&alice),
    );

    // Revoke one token by the token itself: bob's.
    let bob_token = bob.identity_token(env.registry()).unwrap_or_default();
    env.stack.note_token(&bob_token);
    env.revoke(&[bob_token.as_str()]);
    let out = bob.pull(&b_img);
    env.check(
        !out.success() && out.combined().to_lowercase().contains("unauthorized"),
        "dockerd: bob pulls with his revoked identity token: expected unauthorized",
        &out,
        Some(&bob),
    );
    let revoked = env
        .token_lines("token refused", "refresh_token")
        .into_iter()
        .filter(|l| field(l, "reason").is_some_and(|r| r.contains("revoked")))
        .count();
    assert_eq!(
        revoked,
        2,
        "expected two refresh grants refused as revoked (alice's and bob's old tokens):\n{}",
        env.log_text()
    );
    let out = alice.pull(&a_img);
    env.check(
        out.success(),
        "dockerd: alice pulls after bob's token was revoked",
        &out,
        Some(&alice),
    );

    // alice's first (revoked) token is no longer in her config.json: check it too.
    env.stack.note_token(&old);
    env.assert_log_secrecy(&[&alice, &bob, &anon]);
}
