//! The command line: flags that override the config file, and the helper subcommands.
//!
//! Flags are global, so `ferry check-config --config x` and `ferry --config x check-config`
//! mean the same.

use std::io::{IsTerminal, Read};
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError};

/// Ferry: an AMQP 1.0 message broker.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about)]
pub struct Cli {
    /// The config file; without it the built-in default (see `print-default-config`) is used.
    #[arg(long, short = 'c', value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,

    /// Listen here instead of the configured addresses (repeatable). Every address gets the
    /// first configured listener's other settings.
    #[arg(long = "listen", value_name = "IP:PORT", global = true)]
    pub listen: Vec<SocketAddr>,

    /// Overrides `[broker].data_dir`.
    #[arg(long, value_name = "PATH", global = true)]
    pub data_dir: Option<PathBuf>,

    /// Log filter: a level (`error` … `trace`) or `tracing` directives such as
    /// `info,ferry::proto=debug`.
    #[arg(
        long,
        value_name = "LEVEL",
        env = "RUST_LOG",
        default_value = "info",
        global = true
    )]
    pub log_level: String,

    /// What to do; without a subcommand, run the broker.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Print the built-in default config, with its comments, to start a config file from.
    PrintDefaultConfig,
    /// Load and validate the config (with the flags applied), print "ok", and exit.
    CheckConfig,
    /// Read a password and print its argon2id hash for a `[[users]]` entry.
    Passwd {
        /// Read the password from standard input without prompting (for scripts); it must be
        /// a single line.
        #[arg(long)]
        password_stdin: bool,
    },
    /// The write-ahead log.
    #[command(subcommand)]
    Wal(WalCommand),
}

/// `ferry wal …`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum WalCommand {
    /// Read every segment under the data directory without changing anything; print what each
    /// holds and how it ends, and exit non-zero if the broker would refuse to start.
    Check,
}

/// Prints `ferry wal check` for the log under `data_dir`; returns whether it is usable.
pub fn wal_check(data_dir: &std::path::Path) -> Result<bool, crate::store::log::LogError> {
    let dir = data_dir.join("wal");
    if !dir.exists() {
        println!("{}: no write-ahead log", dir.display());
        return Ok(true);
    }
    let report = crate::store::log::check(&dir)?;
    let mut ok = true;
    for r in &report {
        ok &= !r.fatal;
        println!(
            "{}: generation {}, first record {}, {} committed records; {}{}",
            r.path.display(),
            r.generation.map_or("?".into(), |g| g.to_string()),
            r.first_seq.map_or("?".into(), |s| s.to_string()),
            r.records,
            r.end,
            if r.fatal { " [FATAL]" } else { "" }
        );
    }
    println!(
        "{} segment(s); {}",
        report.len(),
        if ok {
            "ok"
        } else {
            "the broker would refuse to start"
        }
    );
    Ok(ok)
}

impl Cli {
    /// The config file (or the built-in default) with the flags applied, validated.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        let mut config = Config::load(self.config.as_deref())?;
        if self.listen.is_empty() && self.data_dir.is_none() {
            return Ok(config);
        }
        config.override_listen(&self.listen);
        if let Some(dir) = &self.data_dir {
            config.broker.data_dir.clone_from(dir);
        }
        let origin = match &self.config {
            Some(path) => format!("{} with command-line overrides", path.display()),
            None => "the built-in default config with command-line overrides".to_owned(),
        };
        config.validate(&origin)?;
        Ok(config)
    }
}

/// Why `ferry passwd` failed.
#[derive(Debug, thiserror::Error)]
pub enum PasswdError {
    /// Standard input could not be read.
    #[error("cannot read the password: {0}")]
    Read(#[from] std::io::Error),
    /// Nothing, or more than one line, was given.
    #[error("{0}")]
    Input(&'static str),
    /// Hashing failed.
    #[error(transparent)]
    Hash(#[from] crate::auth::HashError),
}

/// `ferry passwd`: reads one password from standard input and returns its PHC string.
///
/// Input is not hidden while typed (that needs terminal control we do not carry); the prompt
/// says so, and `--password-stdin` takes it from a pipe instead.
pub fn passwd(password_stdin: bool) -> Result<String, PasswdError> {
    let stdin = std::io::stdin();
    let mut input = String::new();
    if password_stdin {
        stdin.lock().read_to_string(&mut input)?;
    } else {
        if stdin.is_terminal() {
            eprint!("Password (shown as typed; use --password-stdin to pipe it): ");
        }
        stdin.read_line(&mut input)?;
    }
    let password = strip_newline(&input);
    if password.is_empty() {
        return Err(PasswdError::Input("the password must not be empty"));
    }
    if password.contains(['\n', '\r']) {
        return Err(PasswdError::Input("the password must be a single line"));
    }
    Ok(crate::auth::hash_password(password)?)
}

fn strip_newline(line: &str) -> &str {
    let line = line.strip_suffix('\n').unwrap_or(line);
    line.strip_suffix('\r').unwrap_or(line)
}
