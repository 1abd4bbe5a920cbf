//! `scriptmesh`, the command-line client: the public API's common tasks (log in, join, list
//! agents, run scripts and wait for them, jobs, schedules, keys, integrations, members, the
//! audit trail, passwords) as commands with tables for people and `--json` for scripts.

mod args;
mod client;
mod commands;
mod credentials;
mod error;
mod events;
mod output;

pub use args::Cli;
pub use error::{Error, Result};

use args::Command;
use clap::Parser;
use client::{Auth, Client};
use credentials::CredentialStore;
use output::Output;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the orchestrator is when neither `--url`, SCRIPTMESH_URL nor a login says.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// The environment the CLI reads, once, at start.
#[derive(Clone, Debug, Default)]
pub struct Environment {
    /// SCRIPTMESH_API_KEY (empty counts as unset).
    pub api_key: Option<String>,
    /// SCRIPTMESH_CONFIG_DIR, XDG_CONFIG_HOME, HOME: where the login is stored.
    pub config_dir: Option<PathBuf>,
    pub xdg_config_home: Option<PathBuf>,
    pub home: Option<PathBuf>,
    /// NO_COLOR is set (to anything): never colour output.
    pub no_color: bool,
}

impl Environment {
    pub fn from_process() -> Environment {
        let text = |name: &str| std::env::var(name).ok().filter(|value| !value.trim().is_empty());
        Environment {
            api_key: text("SCRIPTMESH_API_KEY").map(|key| key.trim().to_owned()),
            config_dir: text("SCRIPTMESH_CONFIG_DIR").map(PathBuf::from),
            xdg_config_home: text("XDG_CONFIG_HOME").map(PathBuf::from),
            home: text("HOME").map(PathBuf::from),
            no_color: std::env::var_os("NO_COLOR").is_some(),
        }
    }

    fn credential_store(&self) -> Option<CredentialStore> {
        CredentialStore::locate(self.config_dir.clone(), self.xdg_config_home.clone(), self.home.clone())
    }
}

/// The whole program: parses the arguments and the environment, runs the command, prints
/// any error, and returns the exit status (2 for usage errors, 1 for other errors).
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
        }
    };
    match run(cli, &Environment::from_process()) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            Output {
                json: false,
                colour: false,
            }
            .note(format!("error: {error}"));
            ExitCode::from(1)
        }
    }
}

/// Runs one parsed command; `Ok` holds the exit status.
pub fn run(cli: Cli, environment: &Environment) -> Result<u8> {
    let output = Output {
        json: cli.json,
        colour: !environment.no_color && std::io::stdout().is_terminal(),
    };
    let url = cli.url.as_deref();
    match cli.command {
        Command::Login(args) => commands::session::login(url, environment, output, args),
        Command::Join(args) => commands::session::join(url, environment, output, args),
        Command::Logout => commands::session::logout(url, environment, output),
        Command::Whoami => commands::session::whoami(&mut connect(url, environment)?, output),
        Command::Agents(args) => commands::agents::run(&mut connect(url, environment)?, output, args),
        Command::Run(args) => commands::run::run(&mut connect(url, environment)?, output, args),
        Command::Jobs(args) => commands::jobs::list(&mut connect(url, environment)?, output, args),
        Command::Job { id, follow: false } => commands::jobs::show(&mut connect(url, environment)?, output, &id),
        Command::Job { id, follow: true } => commands::jobs::follow(&mut connect(url, environment)?, output, &id),
        Command::Fanout(command) => commands::fanout::run(&mut connect(url, environment)?, output, command),
        Command::Schedules(command) => commands::schedules::run(&mut connect(url, environment)?, output, command),
        Command::Keys(command) => commands::keys::run(&mut connect(url, environment)?, output, command),
        Command::Integrations(command) => commands::integrations::run(&mut connect(url, environment)?, output, command),
        Command::Members(command) => commands::members::run(&mut connect(url, environment)?, output, command),
        Command::Audit(args) => commands::audit::run(&mut connect(url, environment)?, output, args),
        Command::Password(command) => commands::password::run(url, environment, output, command),
    }
}

/// A client with the caller's credential: SCRIPTMESH_API_KEY first, else the stored login
/// (whose URL is used when none is given; a different one given is refused, as the tokens
/// would mean nothing there).
pub(crate) fn connect(url: Option<&str>, environment: &Environment) -> Result<Client> {
    if let Some(key) = &environment.api_key {
        return Client::new(url.unwrap_or(DEFAULT_URL), Auth::ApiKey(key.clone()));
    }
    let store = environment.credential_store().ok_or(Error::NotLoggedIn)?;
    let credentials = store.load()?.ok_or(Error::NotLoggedIn)?;
    let url = match url {
        Some(wanted) if client::normalize_url(wanted)? != client::normalize_url(&credentials.url)? => {
            return Err(Error::OtherOrchestrator {
                stored: credentials.url,
                wanted: wanted.to_owned(),
            });
        }
        _ => credentials.url.clone(),
    };
    Client::new(&url, Auth::Session { credentials, store })
}
