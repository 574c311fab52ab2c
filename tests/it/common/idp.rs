//! Identity providers for the web-login and CI-token tests, all on 127.0.0.1:
//!
//! * [`FakeGithub`] and [`FakeGitlab`]: small servers speaking GitHub's and GitLab's real OAuth
//!   and REST protocols (the endpoints, parameters, JSON shapes and error answers
//!   registry-auth uses), strict where it matters: the client's id and secret, the exact
//!   registered `redirect_uri`, PKCE S256 (a code only exchanges with its verifier) and
//!   single-use codes. Their users, organizations, teams and groups can be changed while a test
//!   runs, and they can be taken down (HTTP 503).
//! * [`OidcProvider`]: the certified `oidc-provider` npm package under node
//!   (tests/js/oidc-provider.mjs), for Google-style and generic OIDC and for CI tokens.
//!
//! Plus [`Browserless`], a cookie-keeping HTTP client that walks a login the way a browser
//! would (redirects, the provider's approval form) without a browser.

// Handlers answer with ready-made responses.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Form, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::image::random_hex;
use super::proc::{ChildGuard, StopMode, require_tool, tail};

/// The runtime the fakes (and the async HTTP client) run on.
pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

fn serve(router: Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    rt().block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a fake provider");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        (addr, task)
    })
}

fn pkce_ok(verifier: &str, challenge: &str) -> bool {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    !verifier.is_empty() && URL_SAFE_NO_PAD.encode(digest.as_ref()) == challenge
}

fn bearer(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .unwrap_or_default()
        .to_owned()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The provider's approval page: the person confirms (as `login`) and the browser goes back
/// with a code. Every authorization parameter travels as a hidden field.
fn approval_page(
    title: &str,
    action: &str,
    params: &BTreeMap<String, String>,
    login: &str,
) -> Response {
    let mut hidden = String::new();
    for (k, v) in params {
        hidden.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
            html_escape(k),
            html_escape(v)
        ));
    }
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Authorize · {title}</title></head>\
         <body><main><h1>Authorize registry-auth</h1>\
         <form method=\"post\" action=\"{action}\">\n{hidden}\
         <label for=\"login\">Account</label> <input id=\"login\" name=\"login\" value=\"{}\">\n\
         <button id=\"authorize\" type=\"submit\">Authorize</button></form></main></body></html>",
        html_escape(login)
    ))
    .into_response()
}

fn redirect_with(uri: &str, params: &[(&str, &str)]) -> Response {
    let sep = if uri.contains('?') { '&' } else { '?' };
    let q: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", super::http::urlencode(v)))
        .collect();
    Redirect::to(&format!("{uri}{sep}{}", q.join("&"))).into_response()
}

// ------------------------------------------------------------------------------------ GitHub

/// A GitHub user of the fake.
#[derive(Debug, Clone, Default)]
pub struct GhUser {
    pub login: String,
    /// Organization → membership state (`active`, `pending`).
    pub orgs: BTreeMap<String, String>,
    /// (organization, team slug, parent team slug).
    pub teams: Vec<(String, String, Option<String>)>,
}

impl GhUser {
    /// An active member of `org` in `team` (no parent team).
    pub fn member(login: &str, org: &str, team: &str) -> Self {
        Self {
            login: login.to_owned(),
            orgs: [(org.to_owned(), "active".to_owned())].into(),
            teams: vec![(org.to_owned(), team.to_owned(), None)],
        }
    }
}

#[derive(Debug)]
struct Code {
    user: String,
    redirect_uri: String,
    challenge: String,
    used: bool,
}

#[derive(Debug, Default)]
struct GhState {
    client_id: String,
    client_secret: String,
    redirect_uri: String,
    users: HashMap<String, GhUser>,
    next_login: String,
    codes: HashMap<String, Code>,
    tokens: HashMap<String, String>,
    down: bool,
    /// Token requests refused, with the reason (for assertions).
    refusals: Vec<String>,
    /// While set, `/user/teams` waits until the gate is opened (races made deterministic).
    teams_gate: Option<Arc<Gate>>,
}

/// Holds requests until the test opens it: the test knows a request is in flight (`arrived`)
/// and decides when it is answered.
#[derive(Debug)]
pub struct Gate {
    arrived: std::sync::atomic::AtomicUsize,
    open: tokio::sync::watch::Sender<bool>,
}

impl Gate {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            arrived: std::sync::atomic::AtomicUsize::new(0),
            open: tokio::sync::watch::channel(false).0,
        })
    }

    /// Waits (at most 30 s) until `n` requests are held.
    pub fn wait_arrived(&self, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.arrived.load(std::sync::atomic::Ordering::SeqCst) < n {
            assert!(
                std::time::Instant::now() < deadline,
                "no request reached the gate"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Lets every held (and later) request through.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    async fn pass(&self) {
        self.arrived
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut rx = self.open.subscribe();
        let _ = rx.wait_for(|open| *open).await;
    }
}

/// GitHub's OAuth (`/login/oauth/authorize`, `/login/oauth/access_token`) and REST API
/// (`/api/v3/user`, `/api/v3/user/memberships/orgs/{org}`, `/api/v3/user/teams`, the GitHub
/// Enterprise layout).
#[derive(Debug)]
pub struct FakeGithub {
    pub addr: SocketAddr,
    state: Arc<Mutex<GhState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Gh = State<Arc<Mutex<GhState>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FakeGithub {
    /// Starts the fake for one OAuth app (`client_id`, `client_secret`, the exact callback).
    pub fn start(client_id: &str, client_secret: &str, redirect_uri: &str) -> Self {
        let state = Arc::new(Mutex::new(GhState {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            ..GhState::default()
        }));
        let router = Router::new()
            .route("/login/oauth/authorize", get(gh_authorize).post(gh_approve))
            .route("/login/oauth/access_token", axum::routing::post(gh_token))
            .route("/api/v3/user", get(gh_user))
            .route("/api/v3/user/memberships/orgs/{org}", get(gh_membership))
            .route("/api/v3/user/teams", get(gh_teams))
            .with_state(state.clone());
        let (addr, task) = serve(router);
        Self { addr, state, task }
    }

    pub fn web(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn api(&self) -> String {
        format!("http://{}/api/v3", self.addr)
    }

    /// The exact callback URL registered for the app.
    pub fn set_redirect_uri(&self, uri: &str) {
        lock(&self.state).redirect_uri = uri.to_owned();
    }

    /// Adds or replaces a user.
    pub fn set_user(&self, user: GhUser) {
        let mut s = lock(&self.state);
        if s.next_login.is_empty() {
            s.next_login = user.login.clone();
        }
        s.users.insert(user.login.clone(), user);
    }

    /// Removes `login` from `org` (membership and teams).
    pub fn remove_from_org(&self, login: &str, org: &str) {
        let mut s = lock(&self.state);
        if let Some(u) = s.users.get_mut(login) {
            u.orgs.remove(org);
            u.teams.retain(|(o, _, _)| o != org);
        }
    }

    /// Makes every endpoint answer 503 (or work again).
    pub fn set_down(&self, down: bool) {
        lock(&self.state).down = down;
    }

    /// The token requests refused so far, with the reasons.
    pub fn refusals(&self) -> Vec<String> {
        lock(&self.state).refusals.clone()
    }

    /// From now on `/user/teams` (the last call of a login or a revalidation) waits until the
    /// returned gate is opened.
    pub fn hold_teams(&self) -> Arc<Gate> {
        let gate = Gate::new();
        lock(&self.state).teams_gate = Some(gate.clone());
        gate
    }

    /// Successful code exchanges so far.
    pub fn tokens_issued(&self) -> usize {
        lock(&self.state).tokens.len()
    }
}

fn down_response() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "GitHub is down (test)").into_response()
}

/// Checks the authorization parameters; the error is the page to show instead.
fn check_authorize(
    client_id: &str,
    redirect_uri: &str,
    q: &BTreeMap<String, String>,
) -> Result<(), Response> {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    if get("client_id") != client_id {
        return Err((StatusCode::NOT_FOUND, "unknown client_id").into_response());
    }
    if get("redirect_uri") != redirect_uri {
        return Err((
            StatusCode::BAD_REQUEST,
            "The redirect_uri is not associated with this application.",
        )
            .into_response());
    }
    if get("code_challenge").is_empty() || get("code_challenge_method") != "S256" {
        return Err((StatusCode::BAD_REQUEST, "PKCE (S256) is required").into_response());
    }
    if get("state").is_empty() {
        return Err((StatusCode::BAD_REQUEST, "state is required (test fake)").into_response());
    }
    Ok(())
}

async fn gh_authorize(State(s): Gh, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let s = lock(&s);
    if s.down {
        return down_response();
    }
    if let Err(r) = check_authorize(&s.client_id, &s.redirect_uri, &q) {
        return r;
    }
    approval_page("GitHub", "/login/oauth/authorize", &q, &s.next_login)
}

async fn gh_approve(State(s): Gh, Form(f): Form<BTreeMap<String, String>>) -> Response {
    let mut s = lock(&s);
    if s.down {
        return down_response();
    }
    if let Err(r) = check_authorize(&s.client_id, &s.redirect_uri, &f) {
        return r;
    }
    let login = f.get("login").cloned().unwrap_or_default();
    if !s.users.contains_key(&login) {
        return (StatusCode::FORBIDDEN, "no such GitHub user (test fake)").into_response();
    }
    let code = random_hex(10);
    s.codes.insert(
        code.clone(),
        Code {
            user: login,
            redirect_uri: f["redirect_uri"].clone(),
            challenge: f["code_challenge"].clone(),
            used: false,
        },
    );
    redirect_with(
        &f["redirect_uri"],
        &[("code", &code), ("state", &f["state"])],
    )
}

async fn gh_token(State(s): Gh, Form(f): Form<BTreeMap<String, String>>) -> Response {
    let mut s = lock(&s);
    if s.down {
        return down_response();
    }
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let refuse = |s: &mut GhState, error: &str, why: &str| {
        s.refusals.push(format!("{error}: {why}"));
        // GitHub answers OAuth errors with 200 and an `error` field.
        axum::Json(json!({"error": error, "error_description": why})).into_response()
    };
    if get("client_id") != s.client_id || get("client_secret") != s.client_secret {
        return refuse(
            &mut s,
            "incorrect_client_credentials",
            "client id or secret",
        );
    }
    let code = get("code");
    let Some(c) = s.codes.get_mut(&code) else {
        return refuse(&mut s, "bad_verification_code", "unknown code");
    };
    if c.used {
        return refuse(&mut s, "bad_verification_code", "code already used");
    }
    c.used = true;
    if get("redirect_uri") != c.redirect_uri {
        return refuse(&mut s, "redirect_uri_mismatch", "redirect_uri differs");
    }
    if !pkce_ok(&get("code_verifier"), &c.challenge) {
        return refuse(
            &mut s,
            "bad_verification_code",
            "PKCE verifier does not match",
        );
    }
    let user = c.user.clone();
    let token = format!("gho_{}", random_hex(16));
    s.tokens.insert(token.clone(), user);
    axum::Json(json!({"access_token": token, "token_type": "bearer", "scope": "read:org"}))
        .into_response()
}

fn gh_auth(s: &GhState, headers: &HeaderMap) -> Result<GhUser, Response> {
    if s.down {
        return Err(down_response());
    }
    s.tokens
        .get(&bearer(headers))
        .and_then(|login| s.users.get(login))
        .cloned()
        .ok_or_else(|| {
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"message": "Bad credentials"})),
            )
                .into_response()
        })
}

async fn gh_user(State(s): Gh, headers: HeaderMap) -> Response {
    match gh_auth(&lock(&s), &headers) {
        Ok(u) => axum::Json(json!({"login": u.login, "id": 1, "type": "User"})).into_response(),
        Err(r) => r,
    }
}

async fn gh_membership(
    State(s): Gh,
    headers: HeaderMap,
    UrlPath(org): UrlPath<String>,
) -> Response {
    let user = match gh_auth(&lock(&s), &headers) {
        Ok(u) => u,
        Err(r) => return r,
    };
    match user.orgs.get(&org) {
        Some(state) => axum::Json(json!({"state": state, "role": "member",
                                          "organization": {"login": org}}))
        .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": "Not Found"})),
        )
            .into_response(),
    }
}

async fn gh_teams(State(s): Gh, headers: HeaderMap) -> Response {
    let gate = lock(&s).teams_gate.clone();
    if let Some(gate) = gate {
        gate.pass().await;
    }
    let user = match gh_auth(&lock(&s), &headers) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let teams: Vec<Value> = user
        .teams
        .iter()
        .map(|(org, slug, parent)| {
            json!({"slug": slug, "name": slug, "organization": {"login": org},
                   "parent": parent.as_ref().map(|p| json!({"slug": p}))})
        })
        .collect();
    axum::Json(teams).into_response()
}

// ------------------------------------------------------------------------------------ GitLab

#[derive(Debug, Clone)]
struct GlToken {
    user: String,
    expires: Instant,
}

#[derive(Debug, Default)]
struct GlState {
    client_id: String,
    client_secret: String,
    redirect_uri: String,
    /// username → (state, group full paths).
    users: HashMap<String, (String, Vec<String>)>,
    next_login: String,
    codes: HashMap<String, Code>,
    access: HashMap<String, GlToken>,
    /// refresh token → user.
    refresh: HashMap<String, String>,
    token_lifetime: Duration,
    down: bool,
    refusals: Vec<String>,
}

/// GitLab's OAuth (`/oauth/authorize`, `/oauth/token` with the authorization-code and
/// refresh-token grants; refresh tokens rotate) and REST API (`/api/v4/user`,
/// `/api/v4/groups`).
#[derive(Debug)]
pub struct FakeGitlab {
    pub addr: SocketAddr,
    state: Arc<Mutex<GlState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGitlab {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Gl = State<Arc<Mutex<GlState>>>;

impl FakeGitlab {
    pub fn start(client_id: &str, client_secret: &str, redirect_uri: &str) -> Self {
        let state = Arc::new(Mutex::new(GlState {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            token_lifetime: Duration::from_secs(7200),
            ..GlState::default()
        }));
        let router = Router::new()
            .route("/oauth/authorize", get(gl_authorize).post(gl_approve))
            .route("/oauth/token", axum::routing::post(gl_token))
            .route("/api/v4/user", get(gl_user))
            .route("/api/v4/groups", get(gl_groups))
            .with_state(state.clone());
        let (addr, task) = serve(router);
        Self { addr, state, task }
    }

    pub fn web(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The exact callback URL registered for the application.
    pub fn set_redirect_uri(&self, uri: &str) {
        lock(&self.state).redirect_uri = uri.to_owned();
    }

    /// Adds or replaces a user (active) with its groups' full paths.
    pub fn set_user(&self, username: &str, groups: &[&str]) {
        let mut s = lock(&self.state);
        if s.next_login.is_empty() {
            s.next_login = username.to_owned();
        }
        s.users.insert(
            username.to_owned(),
            (
                "active".to_owned(),
                groups.iter().map(|g| (*g).to_owned()).collect(),
            ),
        );
    }

    /// Blocks the account (the API then reports `state: blocked`).
    pub fn block(&self, username: &str) {
        if let Some(u) = lock(&self.state).users.get_mut(username) {
            u.0 = "blocked".to_owned();
        }
    }

    /// Access tokens issued from now on live this long.
    pub fn set_token_lifetime(&self, d: Duration) {
        lock(&self.state).token_lifetime = d;
    }

    pub fn set_down(&self, down: bool) {
        lock(&self.state).down = down;
    }

    pub fn refusals(&self) -> Vec<String> {
        lock(&self.state).refusals.clone()
    }
}

async fn gl_authorize(State(s): Gl, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let s = lock(&s);
    if s.down {
        return down_response();
    }
    if let Err(r) = check_authorize(&s.client_id, &s.redirect_uri, &q) {
        return r;
    }
    if q.get("response_type").map(String::as_str) != Some("code") {
        return (StatusCode::BAD_REQUEST, "response_type must be code").into_response();
    }
    approval_page("GitLab", "/oauth/authorize", &q, &s.next_login)
}

async fn gl_approve(State(s): Gl, Form(f): Form<BTreeMap<String, String>>) -> Response {
    let mut s = lock(&s);
    if s.down {
        return down_response();
    }
    if let Err(r) = check_authorize(&s.client_id, &s.redirect_uri, &f) {
        return r;
    }
    let login = f.get("login").cloned().unwrap_or_default();
    if !s.users.contains_key(&login) {
        return (StatusCode::FORBIDDEN, "no such GitLab user (test fake)").into_response();
    }
    let code = random_hex(10);
    s.codes.insert(
        code.clone(),
        Code {
            user: login,
            redirect_uri: f["redirect_uri"].clone(),
            challenge: f["code_challenge"].clone(),
            used: false,
        },
    );
    redirect_with(
        &f["redirect_uri"],
        &[("code", &code), ("state", &f["state"])],
    )
}

fn gl_error(s: &mut GlState, status: StatusCode, error: &str, why: &str) -> Response {
    s.refusals.push(format!("{error}: {why}"));
    (
        status,
        axum::Json(json!({"error": error, "error_description": why})),
    )
        .into_response()
}

fn gl_issue(s: &mut GlState, user: String) -> Response {
    let access = random_hex(16);
    let refresh = random_hex(16);
    let lifetime = s.token_lifetime;
    s.access.insert(
        access.clone(),
        GlToken {
            user: user.clone(),
            expires: Instant::now() + lifetime,
        },
    );
    s.refresh.insert(refresh.clone(), user);
    axum::Json(json!({"access_token": access, "token_type": "Bearer",
                      "expires_in": lifetime.as_secs(), "refresh_token": refresh,
                      "scope": "read_user read_api", "created_at": 0}))
    .into_response()
}

async fn gl_token(State(s): Gl, Form(f): Form<BTreeMap<String, String>>) -> Response {
    let mut s = lock(&s);
    if s.down {
        return down_response();
    }
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    if get("client_id") != s.client_id || get("client_secret") != s.client_secret {
        return gl_error(
            &mut s,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    match get("grant_type").as_str() {
        "authorization_code" => {
            let code = get("code");
            let Some(c) = s.codes.get_mut(&code) else {
                return gl_error(
                    &mut s,
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown code",
                );
            };
            if c.used {
                return gl_error(
                    &mut s,
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "code already used",
                );
            }
            c.used = true;
            if get("redirect_uri") != c.redirect_uri {
                return gl_error(
                    &mut s,
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "redirect_uri differs",
                );
            }
            if !pkce_ok(&get("code_verifier"), &c.challenge) {
                return gl_error(
                    &mut s,
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "PKCE verification failed",
                );
            }
            let user = c.user.clone();
            gl_issue(&mut s, user)
        }
        "refresh_token" => {
            let Some(user) = s.refresh.remove(&get("refresh_token")) else {
                return gl_error(
                    &mut s,
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown refresh token",
                );
            };
            gl_issue(&mut s, user)
        }
        other => {
            let other = other.to_owned();
            gl_error(
                &mut s,
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &other,
            )
        }
    }
}

fn gl_auth(s: &GlState, headers: &HeaderMap) -> Result<(String, String, Vec<String>), Response> {
    if s.down {
        return Err(down_response());
    }
    let unauthorized = || {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "401 Unauthorized"})),
        )
            .into_response()
    };
    let token = s.access.get(&bearer(headers)).ok_or_else(unauthorized)?;
    if token.expires <= Instant::now() {
        return Err(unauthorized());
    }
    let (state, groups) = s.users.get(&token.user).ok_or_else(unauthorized)?;
    Ok((token.user.clone(), state.clone(), groups.clone()))
}

async fn gl_user(State(s): Gl, headers: HeaderMap) -> Response {
    match gl_auth(&lock(&s), &headers) {
        Ok((user, state, _)) => {
            axum::Json(json!({"id": 7, "username": user, "state": state})).into_response()
        }
        Err(r) => r,
    }
}

async fn gl_groups(
    State(s): Gl,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    match gl_auth(&lock(&s), &headers) {
        Ok((_, _, groups)) => {
            assert_eq!(q.get("min_access_level").map(String::as_str), Some("10"));
            let list: Vec<Value> = groups
                .iter()
                .map(|g| json!({"id": 1, "full_path": g, "path": g.rsplit('/').next()}))
                .collect();
            axum::Json(list).into_response()
        }
        Err(r) => r,
    }
}

// ------------------------------------------------------------------------------ oidc-provider

/// The `oidc-provider` npm package under node (tests/js/oidc-provider.mjs).
#[derive(Debug)]
pub struct OidcProvider {
    pub issuer: String,
    pub log: PathBuf,
    _guard: ChildGuard,
}

/// tests/js, where `npm ci` installed the node tools.
pub fn js_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        dir.join("node_modules/oidc-provider").is_dir()
            && dir.join("node_modules/puppeteer-core").is_dir(),
        "the node test tools are not installed in {}; run scripts/install-test-deps.sh (it runs \
         `npm ci` there)",
        dir.display()
    );
    dir
}

impl OidcProvider {
    /// Starts the provider with `clients` (oidc-provider client metadata) and `accounts`
    /// (account id → claims).
    pub fn start(dir: &Path, clients: Value, accounts: Value) -> Self {
        let node = require_tool("node");
        let js = js_dir();
        std::fs::create_dir_all(dir).expect("provider dir");
        let settings = dir.join("oidc-provider.json");
        std::fs::write(
            &settings,
            json!({"port": 0, "clients": clients, "accounts": accounts}).to_string(),
        )
        .expect("write provider settings");
        let log = dir.join("oidc-provider.log");
        let logf = std::fs::File::create(&log).expect("provider log");
        let child = Command::new(node)
            .arg(js.join("oidc-provider.mjs"))
            .arg(&settings)
            .current_dir(&js)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("dup"))
            .stderr(logf)
            .spawn()
            .expect("start node oidc-provider.mjs");
        let mut guard = ChildGuard::new("oidc-provider", child, StopMode::Kill);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(issuer) = text
                .lines()
                .find_map(|l| l.strip_prefix("listening "))
                .map(str::to_owned)
            {
                return Self {
                    issuer,
                    log,
                    _guard: guard,
                };
            }
            if let Some(status) = guard.try_wait() {
                panic!("oidc-provider exited with {status}:\n{}", tail(&log, 30));
            }
            assert!(
                Instant::now() < deadline,
                "oidc-provider did not start:\n{}",
                tail(&log, 30)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn control(&self, path: &str, body: Option<Value>) {
        let url = format!("{}{path}", self.issuer);
        rt().block_on(async {
            let mut req = client().post(&url);
            if let Some(b) = body {
                req = req.body(b.to_string());
            }
            let r = req.send().await.expect("oidc-provider control");
            assert_eq!(r.status().as_u16(), 204, "{url}");
        });
    }

    /// Who signs in at the next authorization.
    pub fn sign_in_as(&self, user: &str) {
        self.control(&format!("/_test/login?user={user}"), None);
    }

    /// The account disappears (refresh grants and userinfo fail from now on).
    pub fn disable(&self, user: &str) {
        self.control(&format!("/_test/disable?user={user}"), None);
    }

    /// Replaces an account's claims.
    pub fn set_claims(&self, user: &str, claims: Value) {
        self.control(&format!("/_test/claims?user={user}"), Some(claims));
    }

    /// Runs the authorization-code flow (PKCE) for `client_id` as the current user and returns
    /// the token response (`id_token`, `access_token`, …): how a CI job gets its ID token here.
    pub fn code_flow(
        &self,
        client_id: &str,
        secret: &str,
        redirect_uri: &str,
        scope: &str,
    ) -> Value {
        let verifier = random_hex(32);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
        let challenge = URL_SAFE_NO_PAD.encode(digest.as_ref());
        let url = format!(
            "{}/auth?{}",
            self.issuer,
            super::http::query(&[
                ("response_type", "code"),
                ("client_id", client_id),
                ("redirect_uri", redirect_uri),
                ("scope", scope),
                ("state", "s1"),
                ("nonce", "n1"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ])
        );
        let mut b = Browserless::default();
        let callback = b.follow_until(&url, redirect_uri);
        let code =
            query_param(&callback, "code").unwrap_or_else(|| panic!("no code in {callback}"));
        rt().block_on(async {
            let r = client()
                .post(format!("{}/token", self.issuer))
                .basic_auth(client_id, Some(secret))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", redirect_uri),
                    ("code_verifier", verifier.as_str()),
                ])
                .send()
                .await
                .expect("token request");
            let status = r.status();
            let body: Value = r.json().await.expect("token JSON");
            assert!(
                status.is_success(),
                "token endpoint: {status} {body}\n{}",
                tail(&self.log, 20)
            );
            body
        })
    }
}

// ------------------------------------------------------------------------- browserless client

/// An HTTP client without redirects or cookies of its own.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

/// The value of query parameter `name` in `url`.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

/// Walks a login like a browser: one cookie jar per host:port, redirects followed by hand.
#[derive(Debug, Default, Clone)]
pub struct Browserless {
    jar: HashMap<String, BTreeMap<String, String>>,
}

fn host_of(url: &str) -> String {
    url.split("://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_default()
        .to_owned()
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else {
        let scheme_host = base.split('/').take(3).collect::<Vec<_>>().join("/");
        format!("{scheme_host}{location}")
    }
}

impl Browserless {
    fn send(&mut self, req: reqwest::RequestBuilder, url: &str) -> Answer {
        let host = host_of(url);
        let cookies = self
            .jar
            .get(&host)
            .map(|j| {
                j.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        let req = if cookies.is_empty() {
            req
        } else {
            req.header(reqwest::header::COOKIE, cookies)
        };
        let answer = rt().block_on(async {
            let r = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            let location = headers
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| absolute(url, l));
            let set_cookies = headers
                .get_all(reqwest::header::SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_owned))
                .collect();
            let body = r.text().await.unwrap_or_default();
            Answer {
                status,
                location,
                set_cookies,
                headers,
                body,
            }
        });
        let jar = self.jar.entry(host).or_default();
        for c in &answer.set_cookies {
            let pair = c.split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                let expired = c.to_ascii_lowercase().contains("max-age=0") || v.is_empty();
                if expired {
                    jar.remove(k.trim());
                } else {
                    jar.insert(k.trim().to_owned(), v.trim().to_owned());
                }
            }
        }
        answer
    }

    pub fn get(&mut self, url: &str) -> Answer {
        self.send(client().get(url), url)
    }

    pub fn post_form(&mut self, url: &str, form: &[(String, String)]) -> Answer {
        self.send(client().post(url).form(form), url)
    }

    /// Follows GET redirects from `url` until one points at `stop_prefix` (not fetched), and
    /// returns that URL.
    pub fn follow_until(&mut self, url: &str, stop_prefix: &str) -> String {
        let mut url = url.to_owned();
        for _ in 0..10 {
            let a = self.get(&url);
            let next = a
                .location
                .unwrap_or_else(|| panic!("GET {url}: {} without Location: {}", a.status, a.body));
            if next.starts_with(stop_prefix) {
                return next;
            }
            url = next;
        }
        panic!("too many redirects from {url}");
    }

    /// Submits a fake provider's approval form found at `authorize_url` (GitHub/GitLab fakes),
    /// as `login`, and returns where the provider sends the browser back to.
    pub fn approve(&mut self, authorize_url: &str, login: Option<&str>) -> Answer {
        let page = self.get(authorize_url);
        assert_eq!(
            page.status, 200,
            "the provider's authorize page: {}",
            page.body
        );
        let mut form: Vec<(String, String)> = authorize_url
            .split_once('?')
            .map(|(_, q)| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let default_login = page
            .body
            .split("name=\"login\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default()
            .to_owned();
        form.push((
            "login".to_owned(),
            login.map_or(default_login, str::to_owned),
        ));
        let action = authorize_url
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        self.post_form(&action, &form)
    }
}

/// The text of the element with `id` on a page (`<code id="password">…</code>`), unescaped.
pub fn element_text(html: &str, id: &str) -> Option<String> {
    let start = html.find(&format!("id=\"{id}\">"))? + id.len() + 6;
    let end = html[start..].find('<')? + start;
    Some(
        html[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&"),
    )
}

// ------------------------------------------------------------------------ misbehaving OIDC

/// What is wrong with the ID tokens [`FakeOidc`] issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// Nothing: a good token.
    None,
    /// Signed by another key that claims the same `kid`.
    Signature,
    /// Issued to another client.
    Audience,
    /// Another login's nonce.
    Nonce,
    /// Expired an hour ago.
    Expired,
}

struct OidcState {
    issuer: String,
    client_id: String,
    client_secret: String,
    redirect_uri: String,
    key: aws_lc_rs::signature::EcdsaKeyPair,
    forger: aws_lc_rs::signature::EcdsaKeyPair,
    /// code → (nonce, challenge, redirect_uri, used)
    codes: HashMap<String, (String, String, String, bool)>,
    flaw: Flaw,
}

/// A small OpenID provider (discovery, JWKS, authorization with PKCE and nonce, token endpoint
/// with client_secret_basic) whose ID tokens can be made wrong on purpose: the cases a
/// certified provider never produces.
pub struct FakeOidc {
    pub addr: SocketAddr,
    state: Arc<Mutex<OidcState>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeOidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeOidc")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for FakeOidc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Op = State<Arc<Mutex<OidcState>>>;

fn es256_pair() -> aws_lc_rs::signature::EcdsaKeyPair {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).expect("key")
}

fn sign_jwt(key: &aws_lc_rs::signature::EcdsaKeyPair, claims: &Value) -> String {
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": "k1"});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = key
        .sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes())
        .expect("sign");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

impl FakeOidc {
    pub fn start(client_id: &str, client_secret: &str) -> Self {
        let state = Arc::new(Mutex::new(OidcState {
            issuer: String::new(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            redirect_uri: String::new(),
            key: es256_pair(),
            forger: es256_pair(),
            codes: HashMap::new(),
            flaw: Flaw::None,
        }));
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(op_discovery))
            .route("/jwks", get(op_jwks))
            .route("/authorize", get(op_authorize))
            .route("/token", axum::routing::post(op_token))
            .with_state(state.clone());
        let (addr, task) = serve(router);
        lock(&state).issuer = format!("http://{addr}");
        Self { addr, state, task }
    }

    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_redirect_uri(&self, uri: &str) {
        lock(&self.state).redirect_uri = uri.to_owned();
    }

    pub fn set_flaw(&self, flaw: Flaw) {
        lock(&self.state).flaw = flaw;
    }
}

async fn op_discovery(State(s): Op) -> Response {
    let issuer = lock(&s).issuer.clone();
    axum::Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "code_challenge_methods_supported": ["S256"],
        "response_types_supported": ["code"],
    }))
    .into_response()
}

async fn op_jwks(State(s): Op) -> Response {
    use aws_lc_rs::signature::KeyPair as _;
    let s = lock(&s);
    let point = s.key.public_key().as_ref();
    axum::Json(json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    }]}))
    .into_response()
}

async fn op_authorize(State(s): Op, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let mut s = lock(&s);
    let (client_id, redirect_uri) = (s.client_id.clone(), s.redirect_uri.clone());
    if let Err(r) = check_authorize(&client_id, &redirect_uri, &q) {
        return r;
    }
    let nonce = q.get("nonce").cloned().unwrap_or_default();
    if nonce.is_empty() || q.get("response_type").map(String::as_str) != Some("code") {
        return (
            StatusCode::BAD_REQUEST,
            "nonce and response_type=code are required",
        )
            .into_response();
    }
    let code = random_hex(10);
    s.codes.insert(
        code.clone(),
        (
            nonce,
            q["code_challenge"].clone(),
            q["redirect_uri"].clone(),
            false,
        ),
    );
    redirect_with(
        &q["redirect_uri"],
        &[("code", &code), ("state", &q["state"])],
    )
}

async fn op_token(
    State(s): Op,
    headers: HeaderMap,
    Form(f): Form<BTreeMap<String, String>>,
) -> Response {
    let mut s = lock(&s);
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", s.client_id, s.client_secret))
    );
    let bad = |e: &str| (StatusCode::BAD_REQUEST, axum::Json(json!({"error": e}))).into_response();
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(expected.as_str())
    {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let Some(entry) = s.codes.get_mut(&get("code")) else {
        return bad("invalid_grant");
    };
    if entry.3 || entry.2 != get("redirect_uri") || !pkce_ok(&get("code_verifier"), &entry.1) {
        entry.3 = true;
        return bad("invalid_grant");
    }
    entry.3 = true;
    let nonce = entry.0.clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut claims = json!({
        "iss": s.issuer, "aud": s.client_id, "sub": "u1", "email": "alice@acme.test",
        "email_verified": true, "nonce": nonce, "iat": now, "exp": now + 300,
    });
    match s.flaw {
        Flaw::None | Flaw::Signature => {}
        Flaw::Audience => claims["aud"] = json!("another-client"),
        Flaw::Nonce => claims["nonce"] = json!("a-nonce-of-another-login"),
        Flaw::Expired => {
            claims["iat"] = json!(now - 7200);
            claims["exp"] = json!(now - 3600);
        }
    }
    let key = if s.flaw == Flaw::Signature {
        &s.forger
    } else {
        &s.key
    };
    let id_token = sign_jwt(key, &claims);
    axum::Json(
        json!({"access_token": random_hex(16), "token_type": "Bearer", "expires_in": 300,
                      "id_token": id_token}),
    )
    .into_response()
}
