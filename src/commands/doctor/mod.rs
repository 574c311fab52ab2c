//! `registry-auth doctor`: probes a live registry and its realm with this configuration and
//! prints one line per check (the checks and their texts are in `registry_auth::doctor`).
//!
//! Read-only: `GET /v2/`, the tags list of `--scope`, the realm's published documents and one
//! token request (with the user's password only once the realm proved to be this server).
//! Tokens are signed here through the library's authentication chain and grant code, never
//! printed; passwords are never printed.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use registry_auth::authn::{Authenticator, AuthnContext, CacheStats, Credentials, Secret};
mod reading;

use reading::{
    STDIN_GRACE, StdinLog, cert_ids, jwks_kids, parse_http_date, read_log, token_issuer, unix_now,
};
use registry_auth::cli::DoctorFormat;
use registry_auth::config::Config;
use registry_auth::doctor::checks::{self, BearerChallenge, Challenge, Ours, RealmSeen};
use registry_auth::doctor::registry_log::{self, LogContext};
use registry_auth::doctor::trust::{self, Presented, TrustContext};
use registry_auth::doctor::{Entry, Finding, Report};
use registry_auth::grant::{self, GrantOutcome, TokenRequest};
use registry_auth::token::jws::NOT_BEFORE_SKEW;
use registry_auth::token::{PublishedKeys, SigningKey, TokenIssuer};
use reqwest::header::{AUTHORIZATION, DATE, WWW_AUTHENTICATE};

/// The command line of `doctor`.
#[derive(Debug)]
pub(crate) struct DoctorArgs {
    pub config: PathBuf,
    pub registry: String,
    pub scope: Option<String>,
    pub username: Option<String>,
    pub password_stdin: bool,
    pub registry_log: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub format: DoctorFormat,
}

/// Time allowed per request.
const TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn doctor(args: &DoctorArgs) -> Result<ExitCode> {
    if args.username.is_some() != args.password_stdin {
        bail!("--username and --password-stdin go together (the password is read from stdin)");
    }
    if args.password_stdin && args.registry_log.as_deref() == Some("-") {
        bail!("--password-stdin and --registry-log - both read stdin; give the log as a file");
    }
    let config = match super::load_config(&args.config)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let key = match &config.token.signing_key {
        Some(k) => k.clone(),
        None => Arc::new(
            SigningKey::load(&config.token.certificate, &config.token.key).context(
                "the signing key does not exist yet: start `serve` once (token.generate) or \
                 create it with `registry-auth gen-keys`",
            )?,
        ),
    };
    let password = if args.password_stdin {
        let mut line = String::new();
        io::stdin()
            .read_line(&mut line)
            .context("while reading the password from stdin")?;
        Some(Secret::new(line.trim_end_matches(['\r', '\n'])))
    } else {
        None
    };
    let log_offset = match args.registry_log.as_deref() {
        Some(path) if path != "-" => Some(
            std::fs::metadata(path)
                .with_context(|| format!("cannot read --registry-log {path}"))?
                .len(),
        ),
        _ => None,
    };
    let credentials = match (&args.username, password) {
        (Some(u), Some(p)) => Credentials {
            account: u.clone(),
            password: p,
        },
        _ => Credentials::anonymous(),
    };
    // A log stream on stdin (`docker logs -f … |`) is read from now on, in the background.
    let stdin_log = (args.registry_log.as_deref() == Some("-")).then(StdinLog::start);
    let probe = Probe::new(args, config, key, credentials)?;
    let report = super::runtime()?.block_on(probe.run(log_offset, stdin_log.as_ref()))?;
    let mut out = io::stdout().lock();
    match args.format {
        DoctorFormat::Text => out.write_all(report.text().as_bytes())?,
        DoctorFormat::Json => writeln!(out, "{:#}", report.json())?,
    }
    Ok(if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Everything the probes need.
struct Probe<'a> {
    args: &'a DoctorArgs,
    config: Config,
    key: Arc<SigningKey>,
    published: PublishedKeys,
    credentials: Credentials,
    client: reqwest::Client,
    /// The User-Agent of every request (carries a per-run marker for the log check).
    agent: String,
    registry: String,
}

impl<'a> Probe<'a> {
    fn new(
        args: &'a DoctorArgs,
        config: Config,
        key: Arc<SigningKey>,
        credentials: Credentials,
    ) -> Result<Self> {
        let nonce: u64 = rand::random();
        let agent = format!(
            "registry-auth-doctor/{} (run {nonce:016x})",
            env!("CARGO_PKG_VERSION")
        );
        let mut builder = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(agent.clone());
        if let Some(ca) = &args.ca_file {
            let tls = registry_auth::client_tls::client_config(
                registry_auth::client_tls::Trust::CaFile(ca),
                false,
            )
            .map_err(anyhow::Error::msg)
            .context("--ca-file")?;
            builder = builder.tls_backend_preconfigured((*tls).clone());
        }
        let client = builder.build().context("while building the HTTP client")?;
        let published = PublishedKeys::new(&key, &config.token.extra_certificates);
        Ok(Self {
            registry: args.registry.trim_end_matches('/').to_owned(),
            args,
            config,
            key,
            published,
            credentials,
            client,
            agent,
        })
    }

    async fn run(&self, log_offset: Option<u64>, stdin_log: Option<&StdinLog>) -> Result<Report> {
        let mut report = Report::default();
        let started = unix_now();
        let mut skew = 0i64;
        let mut refused = false;
        let mut other_header_accepted = false;
        let mut service = None;
        let mut realm_base = None;
        let v2 = format!("{}/v2/", self.registry);
        match self.get(&v2, None).await {
            Err(e) => report.push(connection_finding("registry", &v2, &e, self.args)),
            Ok(answer) => {
                if v2.starts_with("https:") {
                    report.push(Finding::ok(
                        "tls",
                        format!("the registry's certificate at {v2} is trusted"),
                    ));
                }
                let (finding, bearer) =
                    checks::registry_challenge(&v2, answer.status, &answer.challenges);
                report.push(finding);
                if let Some(date) = answer.date {
                    skew = date - answer.received;
                }
                if let Some(bearer) = bearer {
                    realm_base = self.realm_checks(&bearer, &mut report).await;
                    report.push(checks::service(
                        &bearer.service,
                        self.config.token.allowed_services.as_deref(),
                    ));
                    let clock = match answer.date {
                        Some(_) => checks::clock(
                            skew,
                            NOT_BEFORE_SKEW.as_secs() as i64,
                            self.config.token.lifetime.as_secs() as i64,
                        ),
                        None => Finding::warn(
                            "clock",
                            "the registry sent no Date header; the clocks were not compared",
                            "compare the clocks by hand (`date -u` on both hosts)",
                            Entry::Clock,
                        ),
                    };
                    let clock_failed = clock.status == registry_auth::doctor::Status::Fail;
                    (refused, other_header_accepted) = self
                        .trust_checks(&bearer, realm_base.as_deref(), clock_failed, &mut report)
                        .await;
                    report.push(clock);
                    service = Some(bearer.service);
                }
            }
        }
        if let Some(source) = &self.args.registry_log {
            let ended = unix_now();
            let text = match stdin_log {
                Some(log) => {
                    // Give the registry's lines time to come through the pipe.
                    tokio::time::sleep(STDIN_GRACE).await;
                    log.snapshot()
                }
                None => read_log(source, log_offset)?,
            };
            // A file is read from where it ended before the probes; stdin by the time window
            // of the probes (in the registry's clock) or the marker.
            let window = log_offset
                .is_none()
                .then(|| (started + skew - 2, ended + skew + 2));
            let lines = registry_log::select(&text, window, &self.agent);
            let ctx = LogContext {
                issuer: &self.config.token.issuer,
                mode: self.config.token.header_mode,
                our_kids: self
                    .published
                    .keys()
                    .iter()
                    .flat_map(|k| [k.libtrust_kid().to_owned(), k.thumbprint().to_owned()])
                    .collect(),
                service: service.as_deref(),
                bundle_url: realm_base.map(|b| format!("{b}/rootcertbundle.pem")),
                other_header_accepted,
            };
            let found = registry_log::findings(&lines, refused, &ctx);
            if let Some(trust) = report.findings.iter_mut().find(|f| f.check == "trust") {
                trust::refine_trust(trust, &found);
            }
            for f in found {
                report.push(f);
            }
        }
        Ok(report)
    }

    /// Checks 1b and 2b: the realm is reachable, is this server, and its path matches
    /// `server.path_prefix`. Returns the realm base URL when the realm URL parses.
    async fn realm_checks(&self, bearer: &BearerChallenge, report: &mut Report) -> Option<String> {
        let url = match reqwest::Url::parse(&bearer.realm) {
            Ok(u) if u.host_str().is_some() => u,
            _ => {
                report.push(Finding::fail(
                    "realm",
                    format!("the realm \"{}\" is not an absolute URL", bearer.realm),
                    "set the registry's auth.token.realm to the full URL of registry-auth's \
                     /auth, as clients reach it",
                    Entry::Realm,
                ));
                return None;
            }
        };
        let origin = url.origin().ascii_serialization();
        let path = url.path().to_owned();
        let base_path = checks::realm_prefix(&path)
            .unwrap_or(path.trim_end_matches('/'))
            .to_owned();
        let base = format!("{origin}{base_path}");
        let ours = Ours {
            issuer: &self.config.token.issuer,
            libtrust_kids: cert_ids(self.published.root_bundle_pem().as_bytes()),
            jwks_kids: self
                .published
                .keys()
                .iter()
                .map(|k| k.kid(self.config.token.header_mode).to_owned())
                .collect(),
        };
        let mut seen = RealmSeen::default();
        let mut statuses = Vec::new();
        // Connection-level failures: when every request to the realm's host failed so, the
        // realm is unreachable rather than something else.
        let mut unreachable = Vec::new();
        match self.document(&format!("{base}/rootcertbundle.pem")).await {
            Ok(Some(body)) => seen.bundle_kids = Some(cert_ids(&body)),
            Ok(None) => statuses.push("rootcertbundle.pem: not found".to_owned()),
            Err(e) => {
                if let Some(f) = tls_finding("realm", &base, &e, self.args) {
                    report.push(f);
                    report.push(Finding::fail(
                        "realm",
                        format!("the realm {} could not be reached over TLS", bearer.realm),
                        "see the tls check",
                        Entry::Tls,
                    ));
                    return Some(base);
                }
                statuses.push(format!("rootcertbundle.pem: {}", describe(&e)));
                unreachable.push(describe(&e));
            }
        }
        if seen.bundle_kids.is_none() {
            match self
                .document(&format!("{base}/.well-known/jwks.json"))
                .await
            {
                Ok(Some(body)) => seen.jwks_kids = jwks_kids(&body),
                Ok(None) => statuses.push("jwks.json: not found".to_owned()),
                Err(e) => {
                    statuses.push(format!("jwks.json: {}", describe(&e)));
                    unreachable.push(describe(&e));
                }
            }
        }
        seen.documents_status = statuses.join(", ");
        let keys_match = seen.bundle_kids.as_ref() == Some(&ours.libtrust_kids);
        // The password goes only to a realm that proved to be this server.
        let creds = keys_match
            .then_some(&self.credentials)
            .filter(|c| !c.is_anonymous());
        let mut token_url = url.clone();
        token_url
            .query_pairs_mut()
            .append_pair("service", &bearer.service);
        let mut request = self.client.get(token_url);
        if let Some(c) = creds {
            request = request.basic_auth(&c.account, Some(c.password.expose()));
        }
        match request.send().await {
            Ok(r) if r.status().is_success() => {
                let body = registry_auth::oidc::read_body(r, "the realm's token")
                    .await
                    .unwrap_or_default();
                seen.token_issuer = token_issuer(&body);
                if seen.token_issuer.is_none() {
                    seen.token_status = Some("HTTP 200 without a readable token".to_owned());
                }
            }
            Ok(r) => seen.token_status = Some(format!("HTTP {}", r.status().as_u16())),
            Err(e) => {
                seen.token_status = Some(describe(&e));
                unreachable.push(describe(&e));
            }
        }
        if unreachable.len() == 3 {
            seen.unreachable = unreachable.pop();
        }
        if url.scheme() == "https" && (seen.bundle_kids.is_some() || seen.token_issuer.is_some()) {
            report.push(Finding::ok(
                "tls",
                format!("the realm's certificate at {origin} is trusted"),
            ));
        }
        let (mut finding, confirmed) = checks::realm_identity(&bearer.realm, &ours, &seen);
        let prefix = &self.config.server.path_prefix;
        let mut found_at = None;
        if !confirmed && checks::realm_prefix(&path) != Some(prefix.as_str()) {
            let at = format!("{origin}{prefix}");
            if let Ok(Some(body)) = self.document(&format!("{at}/rootcertbundle.pem")).await
                && cert_ids(&body) == ours.libtrust_kids
            {
                found_at = Some(format!("{at}/auth"));
            }
        }
        if let Some(at) = &found_at {
            // The host is this server; only the path is wrong: one cause, named once.
            finding = checks::realm_at_other_path(&bearer.realm, at);
        }
        report.push(finding);
        report.push(checks::path_prefix(
            &origin,
            &path,
            prefix,
            confirmed,
            found_at.as_deref(),
        ));
        Some(base)
    }

    /// Check 3 (and 3b with `--scope`). Returns whether the registry refused our token, and
    /// whether it accepted it with another signing header.
    async fn trust_checks(
        &self,
        bearer: &BearerChallenge,
        realm_base: Option<&str>,
        clock_failed: bool,
        report: &mut Report,
    ) -> (bool, bool) {
        let mode = self.config.token.header_mode;
        let issuer = TokenIssuer::new(
            self.config.token.issuer.clone(),
            self.config.token.lifetime,
            self.key.clone(),
            mode,
        );
        let scopes = match &self.args.scope {
            Some(s) => match registry_auth::token::parse_scopes([s.as_str()]) {
                Ok(s) => s,
                Err(e) => {
                    report.push(Finding::fail(
                        "scope",
                        format!("--scope {s}: {e}"),
                        "give a scope like repository:NAME:pull",
                        Entry::Scope,
                    ));
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        let now = SystemTime::now();
        let (subject, signed, granted) = match self.sign(&issuer, bearer, &scopes, now).await {
            Ok((subject, signed, granted, ok)) => {
                report.push(ok);
                (subject, signed, granted)
            }
            Err(f) => {
                report.push(f);
                return (false, false);
            }
        };
        let first = self
            .present(&format!("{}/v2/", self.registry), &signed)
            .await;
        let mut retries = Vec::new();
        if first != Presented::Accepted && !matches!(first, Presented::Failed(_)) {
            for other in trust::MODE_PREFERENCE.into_iter().filter(|m| *m != mode) {
                let alt = TokenIssuer::new(
                    self.config.token.issuer.clone(),
                    self.config.token.lifetime,
                    self.key.clone(),
                    other,
                );
                let answer = match alt.issue(&subject, &bearer.service, &[], now) {
                    Ok(t) => {
                        self.present(&format!("{}/v2/", self.registry), &t.token)
                            .await
                    }
                    Err(e) => Presented::Failed(format!("cannot sign: {e}")),
                };
                retries.push((other, answer));
            }
        }
        let ctx = TrustContext {
            issuer: &self.config.token.issuer,
            realm_base,
            service_failed: report.check_failed("service"),
            clock_failed,
            has_log: self.args.registry_log.is_some(),
        };
        let kid = self.key.public_key().kid(mode).to_owned();
        report.push(trust::trust(mode, &kid, &first, &retries, &ctx));
        if first == Presented::Accepted
            && let Some(scope) = scopes.first()
        {
            if scope.kind == "repository" {
                let url = format!("{}/v2/{}/tags/list", self.registry, scope.name);
                let answer = self.present(&url, &signed).await;
                let label = format!("{}:{}", scope.kind, scope.name);
                report.push(trust::scope(&label, &subject, &answer, &granted));
            } else {
                report.push(Finding::warn(
                    "scope",
                    format!("--scope {}: only repository scopes are probed", scope.kind),
                    "give a scope like repository:NAME:pull",
                    Entry::Scope,
                ));
            }
        }
        let other_accepted = retries.iter().any(|(_, p)| *p == Presented::Accepted);
        (first != Presented::Accepted, other_accepted)
    }

    /// A token for the challenge's service, through the configured authentication and ACL.
    /// Returns the subject, the token, the actions granted on the first scope and the `login`
    /// finding; a refused login is a failed finding (the trust check then has nothing to
    /// present).
    async fn sign(
        &self,
        issuer: &TokenIssuer,
        bearer: &BearerChallenge,
        scopes: &[registry_auth::token::Scope],
        now: SystemTime,
    ) -> Result<(String, String, Vec<String>, Finding), Finding> {
        let authenticator = Authenticator::with_order(
            self.config.authn.clone(),
            self.config.authn_order.clone(),
            self.config.credential_cache,
            CacheStats::default(),
        );
        let context = AuthnContext {
            client_ip: None,
            service: bearer.service.clone(),
        };
        let who = if self.credentials.is_anonymous() {
            "anonymous".to_owned()
        } else {
            format!("\"{}\"", self.credentials.account)
        };
        let outcome = authenticator
            .authenticate_in(&self.credentials, &context)
            .await
            .result
            .map_err(|e| {
                Finding::fail(
                    "login",
                    format!("the authentication backend failed for {who}: {e}"),
                    "make the backend reachable from here (the doctor uses the config's chain)",
                    Entry::Login,
                )
            })?;
        let request = TokenRequest {
            service: bearer.service.clone(),
            scopes: scopes.to_vec(),
            credentials: self.credentials.clone(),
            ip: None,
            offline: false,
        };
        let fail = |what: String| {
            Finding::fail(
                "login",
                what,
                if self.credentials.is_anonymous() {
                    "enable anonymous access (a `\"\"` user) or give --username and \
                     --password-stdin"
                } else {
                    "check the user name and password against this config's backends"
                },
                Entry::Login,
            )
        };
        match grant::grant_authenticated(&self.config, issuer, &request, outcome, now).await {
            Ok(GrantOutcome::Issued {
                account,
                source,
                token,
                decisions,
                ..
            }) => {
                let granted = decisions
                    .first()
                    .map(|d| d.granted.clone())
                    .unwrap_or_default();
                let ok = Finding::ok(
                    "login",
                    if self.credentials.is_anonymous() {
                        format!(
                            "this config issues anonymous clients a token for service \"{}\"",
                            bearer.service
                        )
                    } else {
                        format!(
                            "this config issues {who} a token for service \"{}\" (subject \
                             \"{account}\", vouched for by {source})",
                            bearer.service
                        )
                    },
                );
                Ok((account, token.token, granted, ok))
            }
            Ok(GrantOutcome::Unauthorized { reason, .. }) => Err(fail(format!(
                "this config refuses a token to {who}: {reason}"
            ))),
            Err(e) => Err(fail(format!("cannot sign a token for {who}: {e}"))),
        }
    }

    /// Presents a token to the registry with a read-only `GET`.
    async fn present(&self, url: &str, token: &str) -> Presented {
        match self.get(url, Some(token)).await {
            Ok(a) => Presented::from_answer(a.status, &a.challenges),
            Err(e) => Presented::Failed(describe(&e)),
        }
    }

    async fn get(&self, url: &str, bearer: Option<&str>) -> reqwest::Result<Answer> {
        let mut request = self.client.get(url);
        if let Some(t) = bearer {
            request = request.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        let response = request.send().await?;
        let received = unix_now();
        let headers = response.headers();
        Ok(Answer {
            status: response.status().as_u16(),
            challenges: headers
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter_map(checks::parse_challenge)
                .collect(),
            date: headers
                .get(DATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_http_date),
            received,
        })
    }

    /// A published document: `Some(body)` on 200, `None` on another status.
    async fn document(&self, url: &str) -> reqwest::Result<Option<Vec<u8>>> {
        let r = self.client.get(url).send().await?;
        if !r.status().is_success() {
            return Ok(None);
        }
        Ok(registry_auth::oidc::read_body(r, url).await.ok())
    }
}

/// What a registry answered.
struct Answer {
    status: u16,
    challenges: Vec<Challenge>,
    /// Its `Date`, unix seconds.
    date: Option<i64>,
    /// Our clock when the answer arrived, unix seconds.
    received: i64,
}

/// A transport error in one line, with its causes.
fn describe(e: &reqwest::Error) -> String {
    registry_auth::oidc::describe_reqwest(e)
}

/// The TLS finding for a failed request, when the failure is a TLS one.
fn tls_finding(target: &str, url: &str, e: &reqwest::Error, args: &DoctorArgs) -> Option<Finding> {
    let text = format!("{} {e:?}", describe(e));
    let problem = checks::classify_tls(&text)?;
    Some(checks::tls(
        target,
        url,
        &problem,
        &describe(e),
        args.ca_file.is_some(),
    ))
}

/// The finding for a registry that gave no answer.
fn connection_finding(target: &str, url: &str, e: &reqwest::Error, args: &DoctorArgs) -> Finding {
    tls_finding(target, url, e, args).unwrap_or_else(|| {
        Finding::fail(
            "registry",
            format!("GET {url}: no answer ({})", describe(e)),
            "check --registry (the URL clients use) and that the registry runs and is \
             reachable from here",
            Entry::RegistryChallenge,
        )
    })
}
