//! `tasklib`: inspect and repair a tasklib queue from the shell. Needs no task code.
//!
//! ```text
//! tasklib migrate
//! tasklib status [--json]
//! tasklib list [--state failed] [--name N] [--queue Q] [--tag key=value] [--limit 50] [--json]
//! tasklib show <id> [--json]
//! tasklib retry <id> | tasklib retry --failed [--name N] [--queue Q]
//! tasklib cancel <id>
//! tasklib prune --state completed --older-than 7d
//! ```
//!
//! The database comes from `--database-url` or `DATABASE_URL`. Errors are one line on
//! stderr with exit code 1 (2 for a bad command line).

mod commands;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Inspect and repair a tasklib task queue.
#[derive(Debug, Parser)]
#[command(name = "tasklib", version, about, long_about = None)]
struct Cli {
    /// PostgreSQL URL.
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    database_url: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending tasklib migrations (safe to run from many places at once).
    Migrate,
    /// Tasks per state and queue, and how long the oldest due task has waited.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List tasks, newest first.
    List(commands::ListArgs),
    /// Everything about one task, its error in full.
    Show {
        /// The task id.
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Re-queue a task that failed for good or was cancelled; with --failed, all that failed.
    Retry(commands::RetryArgs),
    /// Cancel a waiting task, or ask a running one to stop.
    Cancel {
        /// The task id.
        id: String,
    },
    /// Delete finished tasks older than an age.
    Prune(commands::PruneArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return tasklib::cli::clap_exit(&err),
    };
    match commands::run(cli.database_url, cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}
