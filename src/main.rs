//! The `qosd` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Traffic prioritisation for branch-office Internet gateways.
#[derive(Parser)]
#[command(name = "qosd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration file (the embedded default when no FILE is
    /// given). Exits 0 when valid, 2 when not, with every error on stderr.
    CheckConfig {
        /// The configuration file to check.
        file: Option<PathBuf>,
        /// Print the effective configuration, every default filled in.
        #[arg(long)]
        print: bool,
    },
}

/// Exit status for an invalid configuration or unusable arguments.
const EXIT_INVALID: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file, print } => check_config(file, print),
    }
}

fn check_config(file: Option<PathBuf>, print: bool) -> ExitCode {
    match qosd::config::load(file.as_deref()) {
        Ok(cfg) => {
            if print {
                print!("{}", cfg.to_toml());
            } else {
                println!(
                    "{}: valid ({} categories, {} rules)",
                    cfg.source,
                    cfg.category.len(),
                    cfg.rule.len()
                );
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            let n = errors.0.len();
            eprintln!("{errors}");
            eprintln!(
                "{n} error{} found; configuration not valid",
                if n == 1 { "" } else { "s" }
            );
            ExitCode::from(EXIT_INVALID)
        }
    }
}
