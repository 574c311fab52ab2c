//! `registry-auth check-config` and `registry-auth acl explain`.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use registry_auth::authn::Labels;
use registry_auth::config::{self, ConfigError};
use registry_auth::grant::{DecidedBy, explain};
use registry_auth::token::parse_scopes;

pub(crate) fn check_config(path: &Path) -> Result<ExitCode> {
    let mut out = io::stdout().lock();
    match config::load(path) {
        Ok(c) => {
            for w in &c.warnings {
                writeln!(out, "warning: {w}")?;
            }
            let users = c.authn.users();
            writeln!(
                out,
                "{}: OK ({} user{}, anonymous access {}, {} ACL entr{}, tokens signed {})",
                path.display(),
                users.len(),
                if users.len() == 1 { "" } else { "s" },
                if users.allows_anonymous() {
                    "enabled"
                } else {
                    "disabled"
                },
                c.acl.len(),
                if c.acl.len() == 1 { "y" } else { "ies" },
                match &c.token.signing_key {
                    Some(k) => format!(
                        "{} with kid {}",
                        k.algorithm().as_str(),
                        k.public_key().kid(c.token.header_mode)
                    ),
                    None => format!(
                        "with a key generated at first start in {}",
                        c.token.key.display()
                    ),
                }
            )?;
            if !c.files.is_empty() {
                let folder = c.file.parent().filter(|p| !p.as_os_str().is_empty());
                let folder = std::path::absolute(folder.unwrap_or(Path::new(".")))
                    .unwrap_or_else(|_| Path::new(".").to_path_buf());
                writeln!(
                    out,
                    "files (relative paths resolve against the config file's folder {}; \
                     docker_auth used its working directory):",
                    folder.display()
                )?;
                for (key, file) in &c.files {
                    writeln!(out, "  {key}: {}", file.display())?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ ConfigError::Invalid { .. }) | Err(e @ ConfigError::Read { .. }) => {
            writeln!(out, "{e}")?;
            Ok(ExitCode::FAILURE)
        }
    }
}

pub(crate) fn acl_explain(
    path: &Path,
    account: &str,
    labels: &[String],
    ip: Option<std::net::IpAddr>,
    service: &str,
    scopes: &[String],
) -> Result<ExitCode> {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            writeln!(io::stdout(), "{e}")?;
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut label_map = Labels::default();
    for l in labels {
        let Some((k, v)) = l.split_once('=') else {
            bail!("--labels {l}: expected KEY=VALUE");
        };
        label_map
            .0
            .entry(k.to_owned())
            .or_default()
            .push(v.to_owned());
    }
    let scopes = parse_scopes(scopes.iter().map(String::as_str))?;
    // External authorizers (ext_authz) are asked too, as the server would.
    let runtime = super::runtime()?;
    let decisions =
        runtime.block_on(explain(&config, account, &label_map, service, ip, &scopes))?;
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "account {account:?}, service {service:?}, ip {}, labels {:?}",
        ip.map_or_else(|| "none".to_owned(), |i| i.to_string()),
        label_map.0
    )?;
    for d in decisions {
        let granted = if d.granted.is_empty() {
            "nothing (denied)".to_owned()
        } else {
            d.granted.join(",")
        };
        writeln!(out, "{}\n  granted: {granted}", d.scope)?;
        match d.decided_by {
            DecidedBy::AclEntry(i) => {
                let entry = config
                    .acl_entries
                    .get(i)
                    .map(config::describe_acl_entry)
                    .unwrap_or_default();
                writeln!(out, "  decided by acl[{i}]: {entry}")?;
            }
            DecidedBy::NoMatch => writeln!(
                out,
                "  decided by: no ACL entry matched (denied by default)"
            )?,
            DecidedBy::External(name) => writeln!(out, "  decided by: {name}")?,
            DecidedBy::AclSqlRow(seq) => {
                let entry = super::sql::acl_sql_entry(&config, &runtime, seq);
                writeln!(out, "  decided by acl_sql row seq={seq}: {entry}")?;
            }
            DecidedBy::RobotScopes => writeln!(
                out,
                "  decided by: the robot's own scopes (the ACL is not consulted for robots)"
            )?,
        }
    }
    Ok(ExitCode::SUCCESS)
}
