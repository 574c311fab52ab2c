//! The `registry-auth` binary: parses the command line, sets up logging and runs a command.

mod commands;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use registry_auth::cli::{
    AclCommand, Cli, Command, DbCommand, LoginsCommand, RobotCommand, TokensCommand, UsersCommand,
};
use registry_auth::telemetry;

/// How long the end of the process waits for the log writer to write what is queued.
const LOG_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn main() -> ExitCode {
    let unknown = registry_auth::cli::unknown_env_vars();
    if !unknown.is_empty() {
        let _ = writeln!(
            io::stderr(),
            "error: unknown environment variable(s) {}; registry-auth reads only {}",
            unknown.join(", "),
            registry_auth::cli::ENV_VARS.join(", ")
        );
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    telemetry::init(&cli.log_level, cli.log_format);
    let result = match cli.command {
        Command::Serve { config, listen } => commands::serve::serve(&config, listen),
        Command::Healthcheck { url, timeout } => commands::health::healthcheck(&url, timeout),
        Command::CheckConfig { config } => commands::config::check_config(&config),
        Command::HashPassword { cost } => commands::keys::hash_password(cost),
        Command::GenKeys {
            kind,
            key,
            certificate,
            common_name,
            days,
            force,
        } => commands::keys::gen_keys(&kind, &key, &certificate, &common_name, days, force),
        Command::Jwks { config, output } => commands::trust::jwks(&config, output.as_deref()),
        Command::PublicKey { config, output } => {
            commands::trust::public_key(&config, output.as_deref())
        }
        Command::Doctor {
            config,
            registry,
            scope,
            username,
            password_stdin,
            registry_log,
            ca_file,
            format,
        } => commands::doctor::doctor(&commands::doctor::DoctorArgs {
            config,
            registry,
            scope,
            username,
            password_stdin,
            registry_log,
            ca_file,
            format,
        }),
        Command::Acl(AclCommand::Explain {
            config,
            account,
            labels,
            ip,
            service,
            scopes,
        }) => commands::config::acl_explain(&config, &account, &labels, ip, &service, &scopes),
        Command::Tokens(TokensCommand::Revoke {
            config,
            user,
            token,
        }) => commands::tokens::revoke(&config, user.as_deref(), token.as_deref()),
        Command::Robot(RobotCommand::Create {
            name,
            scopes,
            expires,
            cost,
        }) => commands::tokens::robot_create(&name, &scopes, expires.as_deref(), cost),
        Command::Acl(AclCommand::List { config }) => commands::sql::acl_list(&config),
        Command::Acl(AclCommand::Test {
            config,
            tests,
            format,
        }) => commands::acl_test::acl_test(&config, &tests, format),
        Command::Acl(AclCommand::Replay {
            config,
            logs,
            fail_on_change,
            format,
            quiet,
        }) => commands::acl_replay::acl_replay(&config, &logs, fail_on_change, format, quiet),
        Command::Acl(AclCommand::GenerateLog {
            config,
            requests,
            output,
        }) => commands::acl_replay::generate_log(&config, requests, &output),
        Command::Acl(AclCommand::Diff {
            config,
            fail_on_change,
        }) => commands::acl_diff::acl_diff(&config, fail_on_change),
        Command::Users(UsersCommand::Add {
            config,
            name,
            labels,
            cost,
        }) => commands::sql::users_add(&config, &name, &labels, cost),
        Command::Users(UsersCommand::Remove { config, name }) => {
            commands::sql::users_remove(&config, &name)
        }
        Command::Users(UsersCommand::Passwd { config, name, cost }) => {
            commands::sql::users_passwd(&config, &name, cost)
        }
        Command::Users(UsersCommand::List { config }) => commands::sql::users_list(&config),
        Command::Db(DbCommand::Migrate { config }) => commands::sql::db_migrate(&config),
        Command::Logins(LoginsCommand::List { config, user }) => {
            commands::logins::list(&config, user.as_deref())
        }
        Command::Logins(LoginsCommand::Revoke { config, user }) => {
            commands::logins::revoke(&config, &user)
        }
    };
    // Everything logged is written before the process ends (bounded: a stderr that is not read
    // must not keep it alive).
    telemetry::flush(LOG_FLUSH_TIMEOUT);
    match result {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(io::stderr(), "error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined with `: `, leaving out a cause whose text the error before
/// it already quotes (many errors name their source in their own message).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut last = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !last.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        last = text;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[test]
    fn causes_already_quoted_are_not_repeated() {
        let io = std::io::Error::from_raw_os_error(28);
        let e = anyhow::Error::new(io)
            .context("cannot write /data/token.key: No space left on device (os error 28)")
            .context("while preparing the signing key");
        assert_eq!(
            error_chain(&e),
            "while preparing the signing key: cannot write /data/token.key: No space left on \
             device (os error 28)"
        );
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_chain(&e), "outer: inner");
    }
}
