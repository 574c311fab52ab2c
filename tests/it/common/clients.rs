//! Real registry clients with isolated state (auth files, docker config, podman storage all in
//! the test's temp dir), and how their output maps to an outcome.
//!
//! Outcomes, as the clients report them (observed with skopeo 1.9.3, podman 4.3.1, docker CLI
//! 28 and dockerd 20.10 against registry 2.8.2):
//! * `Denied`: a token was issued but lacks the scope; the registry answers 401
//!   `insufficient_scope`, which the clients print as "requested access to the resource is
//!   denied" (skopeo delete prints the registry's body and "(401 Unauthorized)").
//! * `Unauthorized`: the token server refused the credentials: "unable to retrieve auth token:
//!   invalid username/password" (skopeo, podman), "invalid username/password" (podman login),
//!   "…/v2/\": unauthorized: …" (docker login).
//! * `NotFound`: "manifest unknown", "not found", …
//! * `Refused`: the token server issued a token and the registry refused it (bad signature,
//!   untrusted key, wrong issuer, …): a 401 without `insufficient_scope`, which the clients
//!   print as "unauthorized: authentication required". The registry logs the reason.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use super::dockerd::{self, Dockerd};
use super::image::{self, OciImage};
use super::proc::{self, CmdOutput, require_tool};

/// The outcome of one client operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Denied,
    Unauthorized,
    NotFound,
    /// The registry refused the token the server issued (see the module doc).
    Refused,
    /// Anything else (unrecognised failure, wrong content, …).
    Fail(String),
}

impl Outcome {
    pub fn parse(s: &str) -> Self {
        match s {
            "ok" => Self::Ok,
            "denied" => Self::Denied,
            "unauthorized" => Self::Unauthorized,
            "notfound" => Self::NotFound,
            "refused" => Self::Refused,
            other => Self::Fail(other.to_owned()),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ok => f.write_str("ok"),
            Self::Denied => f.write_str("denied"),
            Self::Unauthorized => f.write_str("unauthorized"),
            Self::NotFound => f.write_str("notfound"),
            Self::Refused => f.write_str("refused"),
            Self::Fail(why) => write!(f, "fail({why})"),
        }
    }
}

/// Credentials of one step; `None` = anonymous.
pub type Cred<'a> = Option<(&'a str, &'a str)>;

/// What a client operation produced.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub outcome: Outcome,
    /// Every command run for the step, with its output.
    pub log: String,
    /// Tags or catalog entries, for `tags` / `catalog`.
    pub list: Option<Vec<String>>,
}

impl Attempt {
    fn new(outcome: Outcome, out: &CmdOutput) -> Self {
        Self {
            outcome,
            log: out.describe(),
            list: None,
        }
    }
}

/// Maps a client's exit status and output to an outcome.
pub fn classify(out: &CmdOutput, login: bool) -> Outcome {
    if out.timed_out {
        return Outcome::Fail("timed out".to_owned());
    }
    if out.success() {
        return Outcome::Ok;
    }
    let o = out.combined().to_lowercase();
    // The registry's insufficient_scope, as the docker distribution client code renders it.
    // Checked first: skopeo list-tags wraps even this in "invalid username/password".
    if o.contains("requested access to the resource is denied") || o.contains("insufficient_scope")
    {
        return Outcome::Denied;
    }
    // skopeo delete prints the registry's raw 401 body.
    if o.contains("failed to delete") && o.contains("401 unauthorized") {
        return Outcome::Denied;
    }
    if o.contains("unable to retrieve auth token")
        || o.contains("invalid username/password")
        || o.contains("incorrect username or password")
    {
        return Outcome::Unauthorized;
    }
    // A token was issued (no token-server refusal above) and the registry still says 401.
    if !login && o.contains("authentication required") {
        return Outcome::Refused;
    }
    // `docker login`: the only failure with a working registry is the token server's 401.
    if login && o.contains("unauthorized") {
        return Outcome::Unauthorized;
    }
    if o.contains("manifest unknown")
        || o.contains("name unknown")
        || o.contains("no such manifest")
        || o.contains("not found")
        || o.contains("image may not exist")
    {
        return Outcome::NotFound;
    }
    Outcome::Fail(format!(
        "exit {:?}, unrecognised output",
        out.code.unwrap_or(-1)
    ))
}

const TIMEOUT: Duration = Duration::from_secs(120);

/// The clients of one test, all state under `dir`.
#[derive(Debug)]
pub struct Clients {
    /// `127.0.0.1:PORT` of the registry.
    pub registry: String,
    pub image: OciImage,
    dir: PathBuf,
    authfile: PathBuf,
    podman_root: PathBuf,
    podman_run: PathBuf,
    podman_src: String,
    podman_src_loaded: AtomicBool,
    pulls: AtomicUsize,
    dockerd: Option<Arc<Dockerd>>,
}

impl Clients {
    pub fn new(dir: &Path, registry: &str, image: OciImage) -> Self {
        for sub in [
            "docker",
            "home",
            "xdg",
            "podman-root",
            "podman-run",
            "podman-tmp",
            "pulls",
        ] {
            std::fs::create_dir_all(dir.join(sub)).expect("mkdir client dirs");
        }
        let authfile = dir.join("auth.json");
        std::fs::write(&authfile, "{\"auths\": {}}").expect("write auth.json");
        Self {
            registry: registry.to_owned(),
            podman_src: format!("localhost/registry-auth-it-src:{}", &image.nonce[..12]),
            image,
            dir: dir.to_owned(),
            authfile,
            podman_root: dir.join("podman-root"),
            podman_run: dir.join("podman-run"),
            podman_src_loaded: AtomicBool::new(false),
            pulls: AtomicUsize::new(0),
            dockerd: None,
        }
    }

    fn reference(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.registry)
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(require_tool(program));
        let docker_host = match &self.dockerd {
            Some(d) => d.host.clone(),
            // Never talk to some other daemon by accident.
            None => format!("unix://{}/no-docker.sock", self.dir.display()),
        };
        cmd.env("REGISTRY_AUTH_FILE", &self.authfile)
            .env("DOCKER_CONFIG", self.dir.join("docker"))
            .env("HOME", self.dir.join("home"))
            .env("XDG_RUNTIME_DIR", self.dir.join("xdg"))
            .env("DOCKER_HOST", docker_host)
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .env_remove("CONTAINERS_REGISTRIES_CONF")
            .env_remove("CONTAINERS_CONF");
        cmd
    }

    fn run(&self, program: &str, args: &[&str], input: Option<&str>) -> CmdOutput {
        let mut cmd = self.command(program);
        cmd.args(args);
        proc::run(&mut cmd, input, TIMEOUT)
    }

    fn creds_args(cred: Cred<'_>, prefix: &str) -> Vec<String> {
        match cred {
            None => vec![format!("--{prefix}no-creds")],
            Some((u, p)) => vec![format!("--{prefix}creds"), format!("{u}:{p}")],
        }
    }

    // ---------------------------------------------------------------- skopeo

    pub fn skopeo_push(
        &self,
        cred: Cred<'_>,
        repo: &str,
        tag: &str,
        format: Option<&str>,
    ) -> Attempt {
        let mut args: Vec<String> = vec![
            "copy".into(),
            "--retry-times".into(),
            "0".into(),
            "--dest-tls-verify=false".into(),
        ];
        args.extend(Self::creds_args(cred, "dest-"));
        if let Some(f) = format {
            args.extend(["--format".to_owned(), f.to_owned()]);
        }
        args.push(self.image.oci_ref());
        args.push(format!("docker://{}", self.reference(repo, tag)));
        let out = self.run("skopeo", &strs(&args), None);
        Attempt::new(classify(&out, false), &out)
    }

    pub fn skopeo_pull(&self, cred: Cred<'_>, repo: &str, tag: &str) -> Attempt {
        let n = self.pulls.fetch_add(1, Ordering::SeqCst);
        let dst = self.dir.join("pulls").join(format!("p{n}"));
        let mut args: Vec<String> = vec![
            "copy".into(),
            "--retry-times".into(),
            "0".into(),
            "--src-tls-verify=false".into(),
        ];
        args.extend(Self::creds_args(cred, "src-"));
        args.push(format!("docker://{}", self.reference(repo, tag)));
        args.push(format!("oci:{}:x", dst.display()));
        let out = self.run("skopeo", &strs(&args), None);
        let mut attempt = Attempt::new(classify(&out, false), &out);
        if attempt.outcome == Outcome::Ok
            && let Err(e) = image::pulled_layout_matches(&dst, &self.image)
        {
            attempt.outcome = Outcome::Fail(e);
        }
        attempt
    }

    pub fn skopeo_delete(&self, cred: Cred<'_>, repo: &str, tag: &str) -> Attempt {
        let mut args: Vec<String> = vec![
            "delete".into(),
            "--retry-times".into(),
            "0".into(),
            "--tls-verify=false".into(),
        ];
        args.extend(Self::creds_args(cred, ""));
        args.push(format!("docker://{}", self.reference(repo, tag)));
        let out = self.run("skopeo", &strs(&args), None);
        Attempt::new(classify(&out, false), &out)
    }

    pub fn skopeo_inspect(&self, cred: Cred<'_>, repo: &str, tag: &str) -> Attempt {
        let mut args: Vec<String> = vec![
            "inspect".into(),
            "--retry-times".into(),
            "0".into(),
            "--raw".into(),
            "--tls-verify=false".into(),
        ];
        args.extend(Self::creds_args(cred, ""));
        args.push(format!("docker://{}", self.reference(repo, tag)));
        let out = self.run("skopeo", &strs(&args), None);
        Attempt::new(classify(&out, false), &out)
    }

    pub fn skopeo_tags(&self, cred: Cred<'_>, repo: &str) -> Attempt {
        let mut args: Vec<String> = vec![
            "list-tags".into(),
            "--retry-times".into(),
            "0".into(),
            "--tls-verify=false".into(),
        ];
        args.extend(Self::creds_args(cred, ""));
        args.push(format!("docker://{}/{repo}", self.registry));
        let out = self.run("skopeo", &strs(&args), None);
        let mut attempt = Attempt::new(classify(&out, false), &out);
        if attempt.outcome == Outcome::Ok {
            match serde_json::from_str::<serde_json::Value>(&out.stdout) {
                Ok(v) => {
                    attempt.list = Some(
                        v["Tags"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|t| t.as_str().map(str::to_owned))
                            .collect(),
                    );
                }
                Err(e) => attempt.outcome = Outcome::Fail(format!("list-tags output: {e}")),
            }
        }
        attempt
    }

    // ---------------------------------------------------------------- podman

    fn podman(&self, args: &[&str], input: Option<&str>) -> CmdOutput {
        let root = self.podman_root.to_string_lossy().into_owned();
        let run = self.podman_run.to_string_lossy().into_owned();
        let tmp = self.dir.join("podman-tmp").to_string_lossy().into_owned();
        let mut all = vec![
            "--root",
            &root,
            "--runroot",
            &run,
            "--tmpdir",
            &tmp,
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ];
        all.extend_from_slice(args);
        self.run("podman", &all, input)
    }

    /// `podman login` (or `logout` for anonymous).
    pub fn podman_login(&self, cred: Cred<'_>) -> Attempt {
        match cred {
            None => {
                let out = self.podman(&["logout", "--all"], None);
                let outcome = if out.success() {
                    Outcome::Ok
                } else {
                    Outcome::Fail("podman logout failed".to_owned())
                };
                Attempt::new(outcome, &out)
            }
            Some((u, p)) => {
                let input = format!("{p}\n");
                let out = self.podman(
                    &[
                        "login",
                        "--tls-verify=false",
                        "-u",
                        u,
                        "--password-stdin",
                        &self.registry,
                    ],
                    Some(&input),
                );
                Attempt::new(classify(&out, true), &out)
            }
        }
    }

    fn then(first: Attempt, out: &CmdOutput) -> Attempt {
        Attempt {
            outcome: classify(out, false),
            log: format!("{}{}", first.log, out.describe()),
            list: None,
        }
    }

    pub fn podman_push(&self, cred: Cred<'_>, repo: &str, tag: &str) -> Attempt {
        let login = self.podman_login(cred);
        if login.outcome != Outcome::Ok {
            return login;
        }
        if !self.podman_src_loaded.load(Ordering::SeqCst) {
            let store = format!(
                "containers-storage:[vfs@{}+{}]{}",
                self.podman_root.display(),
                self.podman_run.display(),
                self.podman_src
            );
            let out = self.run("skopeo", &["copy", &self.image.oci_ref(), &store], None);
            if !out.success() {
                return Attempt {
                    outcome: Outcome::Fail("loading the test image into podman storage".into()),
                    log: format!("{}{}", login.log, out.describe()),
                    list: None,
                };
            }
            self.podman_src_loaded.store(true, Ordering::SeqCst);
        }
        let dst = self.reference(repo, tag);
        let out = self.podman(
            &["push", "--tls-verify=false", &self.podman_src, &dst],
            None,
        );
        Self::then(login, &out)
    }

    pub fn podman_pull(&self, cred: Cred<'_>, repo: &str, tag: &str) -> Attempt {
        let login = self.podman_login(cred);
        if login.outcome != Outcome::Ok {
            return login;
        }
        let src = self.reference(repo, tag);
        let out = self.podman(&["pull", "--tls-verify=false", &src], None);
        Self::then(login, &out)
    }

    // ---------------------------------------------------------------- docker

    /// Daemon steps go through the shared private dockerd from now on.
    pub fn use_dockerd(&mut self) {
        if self.dockerd.is_none() {
            self.dockerd = Some(dockerd::shared());
        }
    }

    /// Daemon steps go through `dockerd` (e.g. [`dockerd::dedicated`]) from now on.
    pub fn use_own_dockerd(&mut self, dockerd: Arc<Dockerd>) {
        self.dockerd = Some(dockerd);
    }

    /// Any `docker` command with this client's config and daemon.
    pub fn docker(&self, args: &[&str]) -> CmdOutput {
        self.run("docker", args, None)
    }

    pub fn dockerd_log_tail(&self, n: usize) -> Option<String> {
        self.dockerd.as_ref().map(|d| d.log_tail(n))
    }

    /// `docker login` (or `logout` for anonymous). Daemonless unless [`Self::use_dockerd`]
    /// was called: the CLI then logs in itself.
    pub fn docker_login(&self, cred: Cred<'_>) -> Attempt {
        match cred {
            None => {
                let out = self.run("docker", &["logout", &self.registry], None);
                let outcome = if out.success() {
                    Outcome::Ok
                } else {
                    Outcome::Fail("docker logout failed".to_owned())
                };
                Attempt::new(outcome, &out)
            }
            Some((u, p)) => {
                let input = format!("{p}\n");
                let out = self.run(
                    "docker",
                    &["login", "-u", u, "--password-stdin", &self.registry],
                    Some(&input),
                );
                Attempt::new(classify(&out, true), &out)
            }
        }
    }

    /// Daemonless `docker manifest inspect --insecure` with the stored login.
    pub fn docker_manifest(&self, cred: Cred<'_>, repo: &str, tag: &str) -> Attempt {
        let login = self.docker_login(cred);
        if login.outcome != Outcome::Ok {
            return login;
        }
        let r = self.reference(repo, tag);
        let out = self.run("docker", &["manifest", "inspect", "--insecure", &r], None);
        Self::then(login, &out)
    }

    fn require_daemon(&self) {
        assert!(
            self.dockerd.is_some(),
            "docker pull/push steps need Clients::use_dockerd() first"
        );
    }

    pub fn docker_pull(&self, cred: Cred<'_>, repo: &str, tag: &str) -> Attempt {
        self.require_daemon();
        let login = self.docker_login(cred);
        if login.outcome != Outcome::Ok {
            return login;
        }
        let r = self.reference(repo, tag);
        let out = self.run("docker", &["pull", &r], None);
        Self::then(login, &out)
    }

    /// Tags `from` (`repo:tag` on this registry, pulled earlier) as `repo:tag` and pushes it.
    pub fn docker_push(&self, cred: Cred<'_>, from: &str, repo: &str, tag: &str) -> Attempt {
        self.docker_push_image(cred, &format!("{}/{from}", self.registry), repo, tag)
    }

    /// Tags the local image `src` (any full reference) as `repo:tag` here and pushes it.
    pub fn docker_push_image(&self, cred: Cred<'_>, src: &str, repo: &str, tag: &str) -> Attempt {
        self.require_daemon();
        let login = self.docker_login(cred);
        if login.outcome != Outcome::Ok {
            return login;
        }
        let dst = self.reference(repo, tag);
        let out = self.run("docker", &["tag", src, &dst], None);
        if !out.success() {
            return Attempt {
                outcome: Outcome::Fail(format!("docker tag {src} (was it pulled before?)")),
                log: format!("{}{}", login.log, out.describe()),
                list: None,
            };
        }
        let log = format!("{}{}", login.log, out.describe());
        let out = self.run("docker", &["push", &dst], None);
        Attempt {
            outcome: classify(&out, false),
            log: format!("{log}{}", out.describe()),
            list: None,
        }
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
