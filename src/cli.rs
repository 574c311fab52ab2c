//! Command-line interface (clap derive). The commands themselves run in `main.rs`.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::telemetry::LogFormat;

/// Token-authentication server for container registries (docker_auth compatible).
#[derive(Debug, Parser)]
#[command(name = "registry-auth", version, about, propagate_version = true)]
pub struct Cli {
    /// Log level: error, warn, info, debug or trace (RUST_LOG overrides it).
    #[arg(long, global = true, default_value = "info", env = "REGISTRY_AUTH_LOG_LEVEL",
          value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub log_level: String,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text,
          env = "REGISTRY_AUTH_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The environment variables the binary reads; any other `REGISTRY_AUTH_*` is an error (a typo
/// would otherwise be ignored silently).
pub const ENV_VARS: &[&str] = &[
    "REGISTRY_AUTH_CONFIG",
    "REGISTRY_AUTH_LISTEN",
    "REGISTRY_AUTH_LOG_LEVEL",
    "REGISTRY_AUTH_LOG_FORMAT",
];

/// `REGISTRY_AUTH_*` variables that are set but unknown.
pub fn unknown_env_vars() -> Vec<String> {
    std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .filter(|k| k.starts_with("REGISTRY_AUTH_") && !ENV_VARS.contains(&k.as_str()))
        .collect()
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the token server.
    Serve {
        /// The YAML config file.
        #[arg(long, short = 'c', env = "REGISTRY_AUTH_CONFIG")]
        config: PathBuf,
        /// Listen address (`host:port`, or a socket path with `server.net: unix`); overrides
        /// `server.addr`. Port 0 picks a free port.
        #[arg(long, env = "REGISTRY_AUTH_LISTEN")]
        listen: Option<String>,
    },
    /// Probe a running server (for container HEALTHCHECKs without curl): exit 0 when `URL`
    /// answers 200.
    Healthcheck {
        /// `http://host:port/path`.
        #[arg(default_value = "http://127.0.0.1:5001/healthz")]
        url: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
    /// Validate a config file: print every problem and exit 1, or a summary and exit 0.
    CheckConfig {
        /// The YAML config file.
        config: PathBuf,
    },
    /// Print a bcrypt hash of a password read from stdin (or prompted for on a terminal).
    HashPassword {
        /// bcrypt cost (4–16). Each +1 doubles the work per login.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(4..=16))]
        cost: u32,
    },
    /// Create a signing key and a self-signed certificate for `token.key`/`token.certificate`.
    GenKeys {
        /// Key type: ec-p256 (ES256, default), ec-p384 (ES384), rsa-2048, rsa-3072, rsa-4096 (RS256).
        #[arg(long = "type", default_value = "ec-p256")]
        kind: String,
        /// Where to write the private key (mode 0600).
        #[arg(long)]
        key: PathBuf,
        /// Where to write the certificate (give it to the registry as `rootcertbundle`).
        #[arg(long)]
        certificate: PathBuf,
        /// Certificate subject common name.
        #[arg(long, default_value = "registry-auth token signer")]
        common_name: String,
        /// Certificate validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Print the JWK Set of the published keys (signing key, then `token.extra_certificates`),
    /// with the `kid`s tokens carry: the file registry v3's `auth.token.jwks` reads.
    Jwks {
        /// The YAML config file.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Write it to this file instead of stdout.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
    /// Print the signing key's public key (PEM SubjectPublicKeyInfo), for zot's
    /// `http.auth.bearer.cert`.
    PublicKey {
        /// The YAML config file.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Write it to this file instead of stdout.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
    /// Diagnose a live deployment: probe the registry and its realm with this config and print
    /// one line per check (ok / warn / FAIL, what was seen, what to change). Exit 0 when every
    /// check passes, 1 when one fails. Read-only; never prints a password or a token.
    Doctor {
        /// The YAML config file of the token server the registry should trust.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// The registry's base URL as clients use it, e.g. `https://registry.example.com`.
        #[arg(long)]
        registry: String,
        /// Also probe this scope's repository (its tags list), e.g. `repository:alice/app:pull`.
        #[arg(long)]
        scope: Option<String>,
        /// Sign the probe token for this user (through the configured authentication) instead
        /// of anonymous; needs --password-stdin.
        #[arg(long, requires = "password_stdin")]
        username: Option<String>,
        /// Read the user's password from the first line of stdin.
        #[arg(long, requires = "username")]
        password_stdin: bool,
        /// The registry's log, to read its reasons for refusing the doctor's tokens: a file
        /// (what is appended during the run is read), or `-` for a stream on stdin (e.g.
        /// `docker logs -f --since 1m registry 2>&1 |`).
        #[arg(long, value_name = "FILE|-")]
        registry_log: Option<String>,
        /// A PEM file of CA certificates to trust for the registry and the realm (instead of
        /// the system's).
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = DoctorFormat::Text)]
        format: DoctorFormat,
    },
    /// ACL tools.
    #[command(subcommand)]
    Acl(AclCommand),
    /// Refresh-token tools.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Passwords minted by the web logins (in `store`): list, or revoke a user's.
    #[command(subcommand)]
    Logins(LoginsCommand),
    /// Robot-account tools.
    #[command(subcommand)]
    Robot(RobotCommand),
    /// Users in the `sql_auth` database: add, remove, change a password, list.
    #[command(subcommand)]
    Users(UsersCommand),
    /// The `sql_auth`/`acl_sql` database: apply the schema migrations.
    #[command(subcommand)]
    Db(DbCommand),
}

/// Output format of `doctor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DoctorFormat {
    /// One line per check and a summary.
    Text,
    /// `{"ok": bool, "findings": [{check, status, seen, fix, entry, link}]}`.
    Json,
}

/// `tokens` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Revoke one refresh token (by id, or the token itself) or every refresh token of a user
    /// issued until now. Writes the Redis or PostgreSQL `store` when the config has one (every
    /// replica checks it at each refresh), else `token.refresh.revocations_file`; running
    /// servers pick it up.
    Revoke {
        /// The YAML config file.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Revoke all of this user's refresh tokens issued until now: the subject as in the
        /// token's `sub` (`alice`, or `github_auth:alice` for a login whose name is ambiguous).
        #[arg(long, conflicts_with = "token")]
        user: Option<String>,
        /// A token id (as logged as `refresh_token_id`) or a whole refresh token.
        #[arg(required_unless_present = "user")]
        token: Option<String>,
    },
}

/// `logins` subcommands.
#[derive(Debug, Subcommand)]
pub enum LoginsCommand {
    /// List the unexpired minted passwords (user, provider, minted, expires, labels; never
    /// the passwords, which are not stored).
    List {
        /// The YAML config file.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke every minted password of a user at once (a lost laptop, someone leaving); they
    /// stop working on the next request, refresh tokens built on them too.
    Revoke {
        /// The YAML config file.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// The user as shown by `logins list`: `github_auth:alice` for one web login's
        /// account, a bare name for that name in every web login.
        #[arg(long)]
        user: String,
    },
}

/// `robot` subcommands.
#[derive(Debug, Subcommand)]
pub enum RobotCommand {
    /// Create a robot: prints its secret once and the YAML to add under `robots:`.
    Create {
        /// Robot name (lower-case letters, digits, `.`, `_`, `-`); it logs in as `robot$NAME`.
        name: String,
        /// What it may do, `type:name-pattern:actions` (repeatable), e.g.
        /// `repository:ci/**:pull,push`.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// When it stops working: a duration from now (`30d`, `12h`) or an RFC 3339 time.
        #[arg(long)]
        expires: Option<String>,
        /// bcrypt cost of the stored hash.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(4..=16))]
        cost: u32,
    },
}

/// `acl` subcommands.
#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Show, per scope, the actions the ACL grants and which entry decided.
    Explain {
        /// The YAML config file.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Account name (empty for anonymous).
        #[arg(long, default_value = "")]
        account: String,
        /// A label of the user, `key=value`; repeat for more values or keys.
        #[arg(long = "labels", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Client IP address.
        #[arg(long)]
        ip: Option<IpAddr>,
        /// The `service` of the request.
        #[arg(long, default_value = "")]
        service: String,
        /// Scopes, e.g. `repository:alice/app:pull,push`.
        #[arg(required = true)]
        scopes: Vec<String>,
    },
    /// Run a file of ACL test cases (identity, scopes, expected actions) against a config:
    /// one line per failing case with the entry that decided; exit 1 on any failure.
    Test {
        /// The YAML config file.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// The test file (YAML; see docs/src/access/acl-as-code.md, "Changing an ACL safely").
        tests: PathBuf,
        /// Report format: text, or JUnit XML for CI systems.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
    },
    /// Re-decide every token request of an audit log (text or JSON lines, `.gz` too) under a
    /// new config and report every decision that would change.
    Replay {
        /// The new YAML config file.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// The audit log(s) the server wrote (its stderr; other lines are ignored). `-` is
        /// stdin.
        #[arg(required = true)]
        logs: Vec<PathBuf>,
        /// Exit 1 when any decision would change.
        #[arg(long)]
        fail_on_change: bool,
        /// Report format: text, or JSON (one object per change, then the summary).
        #[arg(long, value_enum, default_value_t = ReplayFormat::Text)]
        format: ReplayFormat,
        /// No progress bar even on a terminal.
        #[arg(long)]
        quiet: bool,
    },
    /// Compare the ACLs of two configs symbolically: which (identity class, repository
    /// pattern) pairs gain or lose actions, and which entries became shadowed.
    Diff {
        /// The old config, then the new one: `--config OLD.yaml --config NEW.yaml`.
        #[arg(long, short = 'c', num_args = 1, required = true)]
        config: Vec<PathBuf>,
        /// Exit 1 when anything changes.
        #[arg(long)]
        fail_on_change: bool,
    },
    /// Write a synthetic audit log for the replay benchmark (`scripts/bench-replay`).
    #[command(hide = true)]
    GenerateLog {
        /// The YAML config file that decides the logged requests.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// How many token requests.
        #[arg(long)]
        requests: u64,
        /// Where to write the log.
        #[arg(long, short = 'o')]
        output: PathBuf,
    },
    /// List the `acl_sql` rows in evaluation (`seq`) order, flagging broken ones (exit 1 when
    /// one is: the server keeps its previous ACL until they are fixed).
    List {
        /// The YAML config file (its `acl_sql` database is read).
        #[arg(long, short = 'c')]
        config: PathBuf,
    },
}

/// `acl test` report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// One line per failing case, then a summary.
    Text,
    /// JUnit XML.
    Junit,
}

/// `acl replay` report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplayFormat {
    /// Lines for people.
    Text,
    /// JSON lines: one per change, then one summary.
    Json,
}

/// `users` subcommands (the `sql_auth` database). Passwords are read from stdin (one line) or
/// prompted for twice on a terminal, and stored as bcrypt hashes.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user.
    Add {
        /// The YAML config file (its `sql_auth` database is written).
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// The user name (the `docker login` user).
        name: String,
        /// A label, `key=value`; repeat for more values or keys (`--labels team=dev
        /// --labels team=ops`).
        #[arg(long = "labels", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// bcrypt cost (4–16).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(4..=16))]
        cost: u32,
    },
    /// Remove a user (their refresh tokens stop working too).
    Remove {
        /// The YAML config file.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// The user name.
        name: String,
    },
    /// Set a new password (ends the user's refresh tokens).
    Passwd {
        /// The YAML config file.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// The user name.
        name: String,
        /// bcrypt cost (4–16).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(4..=16))]
        cost: u32,
    },
    /// List the users and their labels (never the hashes).
    List {
        /// The YAML config file.
        #[arg(long, short = 'c')]
        config: PathBuf,
    },
}

/// `db` subcommands.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply the pending schema migrations to the `sql_auth`/`acl_sql` databases (the server
    /// also does at its first connection; run this as an account with DDL rights when the
    /// server's account has none).
    Migrate {
        /// The YAML config file.
        #[arg(long, short = 'c')]
        config: PathBuf,
    },
}
