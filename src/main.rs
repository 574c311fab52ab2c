//! The `registry-auth` binary: parses the command line, sets up logging and runs a command.

mod commands;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use registry_auth::cli::{
    AclCommand, Cli, Command, DbCommand, RobotCommand, TokensCommand, UsersCommand,
};
use registry_auth::telemetry;

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
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
