//! A table of steps (same shape as the black-box harness's scenario tables), run in order
//! against a [`Stack`]; every step's outcome is compared with its `expect`, and all mismatches
//! are reported together with the clients' output and the servers' log tails.

use std::fmt::Write as _;
use std::time::Instant;

use serde::Deserialize;
use serde_json::Value;

use super::clients::{Attempt, Outcome};
use super::http::{self, authed_request, fetch_token};
use super::jwt;
use super::stack::{ISSUER, SERVICE, Stack};

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Expect {
    One(String),
    Any(Vec<String>),
}

impl Expect {
    fn outcomes(&self) -> Vec<Outcome> {
        match self {
            Self::One(s) => vec![Outcome::parse(s)],
            Self::Any(v) => v.iter().map(|s| Outcome::parse(s)).collect(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: String,
    #[serde(default)]
    pub client: Option<String>,
    pub op: String,
    /// `null` / missing = anonymous.
    #[serde(default)]
    pub user: Option<String>,
    /// Overrides the user's password (wrong-password steps).
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub repo: Option<String>,
    #[serde(default)]
    pub tag: Option<String>,
    pub expect: Expect,
    #[serde(default)]
    pub contains: Vec<String>,
    #[serde(default)]
    pub absent: Vec<String>,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub scope: Vec<String>,
    #[serde(default)]
    pub from: Option<String>,
}

/// Parses a JSON array of steps.
pub fn steps(v: Value) -> Vec<Step> {
    serde_json::from_value(v).unwrap_or_else(|e| panic!("bad step table: {e}"))
}

#[derive(Debug)]
struct Done {
    step: Step,
    client: String,
    got: Outcome,
    ok: bool,
    why: String,
    log: String,
    secs: f64,
}

impl Step {
    fn client(&self) -> String {
        self.client.clone().unwrap_or_else(|| {
            if ["base", "catalog", "token", "token_lint"].contains(&self.op.as_str()) {
                "http".to_owned()
            } else {
                "skopeo".to_owned()
            }
        })
    }

    fn repo(&self) -> &str {
        self.repo
            .as_deref()
            .unwrap_or_else(|| panic!("step {:?} needs `repo`", self.name))
    }

    fn tag(&self) -> &str {
        self.tag.as_deref().unwrap_or("latest")
    }
}

/// Runs `steps` in order; panics listing every step whose outcome differs from `expect`.
pub fn run(stack: &Stack, title: &str, steps: &[Step]) {
    let started = Instant::now();
    let mut done = Vec::new();
    for step in steps {
        let t = Instant::now();
        let client = step.client();
        let attempt = run_step(stack, step, &client);
        let expected = step.expect.outcomes();
        let mut ok = expected.contains(&attempt.outcome);
        let mut why = String::new();
        if ok && attempt.outcome == Outcome::Ok {
            let list = attempt.list.clone().unwrap_or_default();
            for c in &step.contains {
                if !list.contains(c) {
                    ok = false;
                    let _ = write!(why, "missing {c:?} in {list:?}; ");
                }
            }
            for a in &step.absent {
                if list.contains(a) {
                    ok = false;
                    let _ = write!(why, "unexpected {a:?} in {list:?}; ");
                }
            }
        }
        done.push(Done {
            step: step.clone(),
            client,
            got: attempt.outcome,
            ok,
            why,
            log: attempt.log,
            secs: t.elapsed().as_secs_f64(),
        });
    }
    let failed: Vec<&Done> = done.iter().filter(|d| !d.ok).collect();
    let mut summary = format!(
        "{title}: {} steps, {} passed, {} failed in {:.1}s\n",
        done.len(),
        done.len() - failed.len(),
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    for d in &done {
        let expected: Vec<String> = d
            .step
            .expect
            .outcomes()
            .iter()
            .map(ToString::to_string)
            .collect();
        let _ = writeln!(
            summary,
            "  {} [{:>6}] {:<62} expect {:<14} got {} ({:.2}s){}",
            if d.ok { "PASS" } else { "FAIL" },
            d.client,
            d.step.name,
            expected.join("|"),
            d.got,
            d.secs,
            if d.why.is_empty() {
                String::new()
            } else {
                format!(" — {}", d.why)
            },
        );
    }
    eprint!("{summary}");
    if !failed.is_empty() {
        let mut details = String::new();
        for d in &failed {
            let _ = write!(
                details,
                "\n=== FAILED: {} (client {}, user {:?}) ===\n{}",
                d.step.name, d.client, d.step.user, d.log
            );
        }
        panic!("{summary}{details}\n{}", stack.diagnostics());
    }
}

fn run_step(stack: &Stack, step: &Step, client: &str) -> Attempt {
    let cred: Option<(String, String)> = match step.user.as_deref() {
        None | Some("") => None,
        Some(u) => {
            let p = step
                .password
                .clone()
                .unwrap_or_else(|| stack.password(u).to_owned());
            stack.note_sent(u, &p);
            Some((u.to_owned(), p))
        }
    };
    let cred = cred.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
    let c = &stack.clients;
    match (client, step.op.as_str()) {
        ("skopeo", "push") => c.skopeo_push(cred, step.repo(), step.tag(), step.format.as_deref()),
        ("skopeo", "pull") => c.skopeo_pull(cred, step.repo(), step.tag()),
        ("skopeo", "delete") => c.skopeo_delete(cred, step.repo(), step.tag()),
        ("skopeo", "tags") => c.skopeo_tags(cred, step.repo()),
        ("skopeo", "inspect") => c.skopeo_inspect(cred, step.repo(), step.tag()),
        ("podman", "login") => c.podman_login(cred),
        ("podman", "push") => c.podman_push(cred, step.repo(), step.tag()),
        ("podman", "pull") => c.podman_pull(cred, step.repo(), step.tag()),
        ("docker", "login") => c.docker_login(cred),
        ("docker", "manifest") => c.docker_manifest(cred, step.repo(), step.tag()),
        ("docker", "pull") => c.docker_pull(cred, step.repo(), step.tag()),
        ("docker", "push") => {
            let from = step
                .from
                .as_deref()
                .unwrap_or_else(|| panic!("docker push step {:?} needs `from`", step.name));
            c.docker_push(cred, from, step.repo(), step.tag())
        }
        ("http", "base") => http_flow(stack, "/v2/", cred, None),
        ("http", "catalog") => http_flow(stack, "/v2/_catalog?n=1000", cred, Some("repositories")),
        ("http", "tags") => {
            let path = format!("/v2/{}/tags/list", step.repo());
            http_flow(stack, &path, cred, Some("tags"))
        }
        ("http", "token") => http_token(stack, step, cred, false),
        ("http", "token_lint") => http_token(stack, step, cred, true),
        (cl, op) => panic!("step {:?}: unknown op {cl}/{op}", step.name),
    }
}

/// Raw HTTP through the token flow; `list_key` = JSON array to return as the list.
fn http_flow(
    stack: &Stack,
    path: &str,
    cred: Option<(&str, &str)>,
    list_key: Option<&str>,
) -> Attempt {
    let url = format!("{}{path}", stack.registry.base_url());
    let (r, info) = authed_request("GET", &url, cred);
    if let Some(t) = info.token.as_ref().and_then(|t| t.token.as_deref()) {
        stack.note_token(t);
    }
    let token_status = info.token.as_ref().map(|t| t.response.status);
    let outcome = match r.status {
        200 => Outcome::Ok,
        _ if token_status == Some(401) => Outcome::Unauthorized,
        401 => {
            let chal = info.challenge2.clone().unwrap_or_default();
            if chal.contains("error=\"insufficient_scope\"") {
                Outcome::Denied
            } else if info.token.is_some() && chal.contains("error=\"invalid_token\"") {
                Outcome::Refused
            } else {
                Outcome::Fail(format!("registry 401 without insufficient_scope: {chal}"))
            }
        }
        404 => Outcome::NotFound,
        s => Outcome::Fail(format!("http {s}")),
    };
    let mut log = format!("GET {url}\n  challenge: {:?}\n", info.challenge);
    if let Some(t) = &info.token {
        let _ = writeln!(
            log,
            "  token request: GET {}\n  token response: {:?}",
            t.url, t.response
        );
        if let Some(tok) = &t.token
            && let Ok(j) = jwt::decode(tok)
        {
            let _ = writeln!(log, "  token claims: {}", j.claims);
        }
    }
    let _ = writeln!(
        log,
        "  final: {r:?}\n  second challenge: {:?}",
        info.challenge2
    );
    let list = (outcome == Outcome::Ok)
        .then(|| list_key.map(|k| json_strings(&r.json()[k])))
        .flatten();
    Attempt { outcome, log, list }
}

fn json_strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

fn http_token(stack: &Stack, step: &Step, cred: Option<(&str, &str)>, lint: bool) -> Attempt {
    let scopes: Vec<&str> = step.scope.iter().map(String::as_str).collect();
    let tr = fetch_token(&stack.server.realm(), Some(SERVICE), &scopes, cred, &[]);
    let mut log = format!("GET {}\n  {:?}\n", tr.url, tr.response);
    if let Some(t) = &tr.token {
        stack.note_token(t);
    }
    let outcome = match (tr.response.status, &tr.token) {
        (200, Some(tok)) => {
            if let Ok(j) = jwt::decode(tok) {
                let _ = writeln!(log, "  header: {}\n  claims: {}", j.header, j.claims);
            }
            if lint {
                let problems = jwt::lint(
                    &tr.response.json(),
                    tok,
                    SERVICE,
                    ISSUER,
                    &scopes,
                    &stack.keys.bundle,
                );
                if problems.is_empty() {
                    Outcome::Ok
                } else {
                    Outcome::Fail(problems.join("; "))
                }
            } else {
                Outcome::Ok
            }
        }
        (401, _) => {
            let www = tr.response.header("WWW-Authenticate").unwrap_or_default();
            if www.to_ascii_lowercase().starts_with("basic") {
                Outcome::Unauthorized
            } else {
                Outcome::Fail(format!(
                    "401 without `WWW-Authenticate: Basic …` (got {www:?})"
                ))
            }
        }
        (s, _) => Outcome::Fail(format!("token endpoint answered {s}")),
    };
    Attempt {
        outcome,
        log,
        list: None,
    }
}

/// Fetches a token directly (for tests that look at claims), recording it for the secrecy check.
pub fn token(stack: &Stack, cred: Option<(&str, &str)>, scopes: &[&str]) -> http::TokenResponse {
    if let Some((u, p)) = cred {
        stack.note_sent(u, p);
    }
    let tr = fetch_token(&stack.server.realm(), Some(SERVICE), scopes, cred, &[]);
    if let Some(t) = &tr.token {
        stack.note_token(t);
    }
    tr
}
