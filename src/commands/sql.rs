//! `registry-auth users …`, `acl list` and `db migrate`: the `sql_auth`/`acl_sql` database.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use registry_auth::authn::{Labels, ROBOT_PREFIX, parse_labels};
use registry_auth::authz::compile_rows;
use registry_auth::config::{self, AuthnBackend, AuthzBackend, Config};
use registry_auth::sql::{SqlDb, UserRow};

use super::{load_config, runtime};

fn users_db(config: &Config) -> Result<Arc<SqlDb>> {
    config
        .authn_order
        .iter()
        .find_map(|b| match b {
            AuthnBackend::Sql(s) => Some(s.db().clone()),
            _ => None,
        })
        .with_context(|| {
            format!(
                "{} has no `sql_auth` section; add `sql_auth: {{url: …}}` to keep users in a \
                 database",
                config.file.display()
            )
        })
}

fn acl_db(config: &Config) -> Option<Arc<SqlDb>> {
    config.authz_order.iter().find_map(|b| match b {
        AuthzBackend::Sql(s) => Some(s.db().clone()),
        _ => None,
    })
}

/// A new password from stdin (one line) or, on a terminal, prompted for twice.
pub(crate) fn read_new_password() -> Result<String> {
    let stdin = io::stdin();
    let password = if stdin.is_terminal() {
        let first = rpassword::prompt_password("Password: ").context("while reading")?;
        let second = rpassword::prompt_password("Again: ").context("while reading")?;
        if first != second {
            bail!("the passwords differ");
        }
        first
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("while reading stdin")?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    if password.is_empty() {
        bail!("empty password; registry-auth never accepts an empty password");
    }
    Ok(password)
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        bail!(
            "the user name is empty (anonymous access is configured with `users: {{\"\": {{}}}}`)"
        );
    }
    if name.contains(':') || name.chars().any(char::is_control) {
        bail!("{name:?}: a user name cannot contain `:` or control characters (HTTP Basic auth)");
    }
    if name.starts_with(ROBOT_PREFIX) {
        bail!("{name:?}: names starting with `{ROBOT_PREFIX}` are robot accounts (`robots:`)");
    }
    Ok(())
}

fn parse_label_args(labels: &[String]) -> Result<Labels> {
    let mut map = Labels::default();
    for l in labels {
        let Some((k, v)) = l.split_once('=') else {
            bail!("--labels {l}: expected KEY=VALUE");
        };
        if k.is_empty() {
            bail!("--labels {l}: the key is empty");
        }
        let values = map.0.entry(k.to_owned()).or_default();
        if !values.iter().any(|x| x == v) {
            values.push(v.to_owned());
        }
    }
    Ok(map)
}

fn hash(password: &str, cost: u32) -> Result<String> {
    bcrypt::hash(password, cost).context("while hashing the password")
}

pub(crate) fn users_add(path: &Path, name: &str, labels: &[String], cost: u32) -> Result<ExitCode> {
    check_name(name)?;
    let labels = parse_label_args(labels)?;
    let config = match load_config(path)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let db = users_db(&config)?;
    let password = read_new_password()?;
    let row = UserRow {
        name: name.to_owned(),
        password_hash: hash(&password, cost)?,
        labels: serde_json::to_string(&labels).context("while encoding the labels")?,
    };
    let added = runtime()?.block_on(db.insert_user(&row))?;
    if !added {
        bail!(
            "user {name:?} already exists in {}; change the password with `registry-auth users \
             passwd {name}`",
            db.describe()
        );
    }
    writeln!(
        io::stdout(),
        "added user {name:?} with labels {} to {}",
        row.labels,
        db.describe()
    )?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn users_remove(path: &Path, name: &str) -> Result<ExitCode> {
    let config = match load_config(path)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let db = users_db(&config)?;
    if !runtime()?.block_on(db.delete_user(name))? {
        bail!("there is no user {name:?} in {}", db.describe());
    }
    writeln!(
        io::stdout(),
        "removed user {name:?} from {} (cached logins end within credential_cache.ttl)",
        db.describe()
    )?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn users_passwd(path: &Path, name: &str, cost: u32) -> Result<ExitCode> {
    let config = match load_config(path)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let db = users_db(&config)?;
    let rt = runtime()?;
    if rt.block_on(db.find_user(name))?.is_none() {
        bail!("there is no user {name:?} in {}", db.describe());
    }
    let password = read_new_password()?;
    if !rt.block_on(db.set_password(name, &hash(&password, cost)?))? {
        bail!("user {name:?} was removed meanwhile from {}", db.describe());
    }
    writeln!(
        io::stdout(),
        "changed the password of {name:?} in {} (their refresh tokens no longer work)",
        db.describe()
    )?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn users_list(path: &Path) -> Result<ExitCode> {
    let config = match load_config(path)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let db = users_db(&config)?;
    let users = runtime()?.block_on(db.list_users())?;
    let mut out = io::stdout().lock();
    for u in &users {
        match parse_labels(&u.labels) {
            Ok(l) if l.is_empty() => writeln!(out, "{}", u.name)?,
            Ok(l) => writeln!(
                out,
                "{}\tlabels {}",
                u.name,
                serde_json::to_string(&l).unwrap_or_default()
            )?,
            Err(e) => writeln!(out, "{}\tBROKEN labels: {e}", u.name)?,
        }
    }
    writeln!(
        out,
        "{} user{} in {}",
        users.len(),
        if users.len() == 1 { "" } else { "s" },
        db.describe()
    )?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn acl_list(path: &Path) -> Result<ExitCode> {
    let config = match load_config(path)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let Some(db) = acl_db(&config) else {
        bail!(
            "{} has no `acl_sql` section; add `acl_sql: {{url: …}}` to keep ACL entries in a \
             database",
            config.file.display()
        );
    };
    let rows = runtime()?.block_on(db.acl_rows())?;
    let mut out = io::stdout().lock();
    let mut broken = 0;
    for row in &rows {
        match registry_auth::authz::parse_entry(&row.entry) {
            Ok(entry) => writeln!(
                out,
                "seq {}: {}",
                row.seq,
                config::describe_acl_entry(&entry)
            )?,
            Err(e) => {
                broken += 1;
                writeln!(out, "seq {}: BROKEN: {e}", row.seq)?;
            }
        }
    }
    if broken == 0
        && let Err(problems) = compile_rows(&rows)
    {
        for p in &problems {
            writeln!(out, "BROKEN: {p}")?;
        }
        broken = problems.len();
    }
    writeln!(
        out,
        "{} row{} in {}",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        db.describe()
    )?;
    if broken > 0 {
        writeln!(
            out,
            "{broken} problem{}: a running server keeps its previous ACL until they are fixed",
            if broken == 1 { "" } else { "s" }
        )?;
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn db_migrate(path: &Path) -> Result<ExitCode> {
    let config = match load_config(path)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let mut dbs: Vec<Arc<SqlDb>> = Vec::new();
    let candidates = config
        .authn_order
        .iter()
        .filter_map(|b| match b {
            AuthnBackend::Sql(s) => Some(s.db().clone()),
            _ => None,
        })
        .chain(acl_db(&config));
    for db in candidates {
        if !dbs.iter().any(|d| d.identity() == db.identity()) {
            dbs.push(db);
        }
    }
    if dbs.is_empty() {
        bail!(
            "{} configures no database (`sql_auth` or `acl_sql`)",
            config.file.display()
        );
    }
    let rt = runtime()?;
    let mut out = io::stdout().lock();
    for db in dbs {
        let applied = rt.block_on(db.migrate())?;
        let newest = db.migrations().iter().map(|m| m.version).max().unwrap_or(0);
        if applied.is_empty() {
            writeln!(
                out,
                "{}: schema up to date (version {newest})",
                db.describe()
            )?;
        }
        for m in applied {
            writeln!(
                out,
                "{}: applied {:04}_{}",
                db.describe(),
                m.version,
                m.name
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `acl explain`: the `acl_sql` row that decided, described.
pub(crate) fn acl_sql_entry(config: &Config, rt: &tokio::runtime::Runtime, seq: i64) -> String {
    let snapshot = config.authz_order.iter().find_map(|b| match b {
        AuthzBackend::Sql(s) => rt.block_on(s.snapshot()).ok(),
        _ => None,
    });
    snapshot
        .and_then(|s| s.entry(seq).map(config::describe_acl_entry))
        .unwrap_or_default()
}
