//! `tasklib`: inspect and repair a tasklib queue from the shell. Needs no task code.
//!
//! ```text
//! tasklib migrate
//! tasklib status [--json]
//! tasklib list [--state failed] [--name N] [--queue Q] [--tag key=value] [--limit 50] [--json]
//! tasklib show <id> [--json]
//! tasklib retry <id> | tasklib retry --failed [--name N] [--queue Q]
//! tasklib cancel <id>
//! tasklib pause <queue> | tasklib resume <queue>
//! tasklib limit <queue> [--concurrency N] [--rate 100/1m]
//! tasklib prune --state completed --older-than 7d
//! tasklib schedules [--json]
//! tasklib submit add_numbers --args '[15, 25]' [--queue Q] [--delay 10s] [--priority N]
//!                [--unique-key KEY [--unique-period 1h]]
//! tasklib result <id> [--wait 30s] [--json]
//! ```
//!
//! The engine comes from `--backend` or `TASK_BACKEND_TYPE` (PostgreSQL by default) and its
//! own variables; PostgreSQL's database from `--database-url` or `DATABASE_URL`. `submit` and
//! `result` work on every engine, `cancel` on those that can cancel; the other commands need
//! PostgreSQL, and say so on another engine.
//! Errors are one line on stderr with exit code 1 (2 for a bad command line); `result` exits
//! 0 only for a completed task.

mod commands;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Inspect and repair a tasklib task queue.
#[derive(Debug, Parser)]
#[command(
    name = "tasklib",
    version,
    about = "Inspect and repair a tasklib task queue; submit tasks and read their results",
    long_about = None
)]
struct Cli {
    #[command(flatten)]
    engine: tasklib::cli::EngineArgs,

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
    /// Re-queue a task that failed for good or was cancelled (--force: or completed); with
    /// --failed, all that failed.
    Retry(commands::RetryArgs),
    /// Cancel a waiting task, or ask a running one to stop.
    Cancel {
        /// The task id.
        id: String,
    },
    /// Pause a queue across every worker: it takes submits and runs nothing until resumed.
    Pause {
        /// The queue.
        queue: String,
    },
    /// Resume a paused queue.
    Resume {
        /// The queue.
        queue: String,
    },
    /// Set a queue's limits across every worker (none given: remove them).
    Limit(commands::LimitArgs),
    /// Delete one task in any state but running (or a whole chain, by its id).
    Delete {
        /// The task (or chain) id.
        id: String,
    },
    /// Delete finished tasks older than an age.
    Prune(commands::PruneArgs),
    /// Recurring tasks (cron schedules) the workers registered: latest tick and next run.
    Schedules {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The worker pools running now: queues, slots, running tasks, last heartbeat.
    Workers {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Serve the web dashboard (queues, tasks, workers, actions; `/metrics` for Prometheus).
    Dashboard(commands::DashboardArgs),
    /// Submit a task by name; prints its id.
    Submit(commands::SubmitArgs),
    /// A task's status, and its value or error; exits 0 only when it completed.
    Result(commands::ResultArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return tasklib::cli::clap_exit(&err),
    };
    match commands::run(&cli.engine, cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}
