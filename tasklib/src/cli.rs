//! Turning an application binary into a worker command (feature `cli`).
//!
//! Task handlers are compiled into your own binary, so tasklib cannot ship the worker
//! executable; it ships the command line instead. Register your handlers in a closure and
//! hand it to [`run_worker_command`]:
//!
//! ```no_run
//! # use serde::{Deserialize, Serialize};
//! # use validator::Validate;
//! # #[derive(Debug, Serialize, Deserialize, Validate)] struct Resize { path: String }
//! # impl tasklib::Task for Resize { const NAME: &'static str = "resize"; const QUEUE: &'static str = "file_processing"; type Output = (); }
//! use tasklib::{TaskContext, TaskError};
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     tasklib::cli::run_worker_command(|tasks| {
//!         tasks.register(|job: Resize, _: TaskContext| async move {
//!             println!("resizing {}", job.path);
//!             Ok::<_, TaskError>(())
//!         })
//!     })
//!     .await
//! }
//! ```
//!
//! ```text
//! my-worker --queues file_processing,api_processing --concurrency file_processing=2,api_processing=8
//! DATABASE_URL=postgres://… TASK_QUEUES=file_processing my-worker --concurrency 4
//! TASK_BACKEND_TYPE=celery TASK_CELERY_BROKER_URL=redis://… my-worker
//! ```
//!
//! The engine comes from `--backend` or `TASK_BACKEND_TYPE` (the flag wins; PostgreSQL by
//! default), its settings from its own variables (see [`ConfigBuilder::from_vars`]);
//! `--database-url` or `DATABASE_URL` is needed by PostgreSQL only. The worker logs the engine
//! and its settings, passwords redacted, when it starts.
//!
//! Exit codes: 0 after a clean shutdown (SIGTERM or SIGINT); 1 when the worker cannot start
//! (an engine this build lacks, say) or stops with an error (the message is one line on
//! stderr); 2 for a bad command line. Other `TASKLIB_*` variables apply as usual.

use std::ffi::OsString;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use clap::{CommandFactory, Parser};

use crate::backend::BackendType;
use crate::config::{ConfigBuilder, parse_duration};
use crate::{DEFAULT_CONCURRENCY, Error, Result, TaskLib, TaskWorker};

/// The engine and where to reach it, as every tasklib command line takes them. Flatten it
/// into a clap parser (`#[command(flatten)]`); both flags are global, so they may also follow
/// a subcommand.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EngineArgs {
    /// The engine: postgres, celery, temporal or hatchet. Defaults to TASK_BACKEND_TYPE,
    /// else postgres.
    // Not clap's `env`: clap parses a global argument's variable at the top level even when
    // the flag follows a subcommand, so a bad variable would beat a good flag.
    #[arg(long, global = true, value_parser = backend_arg, value_name = "ENGINE")]
    pub backend: Option<BackendType>,

    /// PostgreSQL URL (needed by the postgres engine only).
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database_url: Option<String>,

    /// PostgreSQL schema of tasklib's table [default: public].
    #[arg(long, global = true, env = "TASKLIB_SCHEMA", value_name = "SCHEMA")]
    pub schema: Option<String>,

    /// DATABASE_URL leads to a pooler in transaction mode (PgBouncer before 1.21): send
    /// statements unnamed, one transaction each. Also TASKLIB_TRANSACTION_POOLER=true.
    #[arg(long, global = true)]
    pub transaction_pooler: bool,

    /// The server itself, for LISTEN, when DATABASE_URL is a pooler.
    #[arg(
        long,
        global = true,
        env = "TASKLIB_LISTEN_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub listen_url: Option<String>,
}

impl EngineArgs {
    /// The engine chosen: `--backend`, else `TASK_BACKEND_TYPE`, else PostgreSQL.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming `TASK_BACKEND_TYPE` when the variable names no engine
    /// (the message lists the names).
    pub fn backend(&self) -> Result<BackendType> {
        self.backend_from(&|name| std::env::var(name).ok())
    }

    fn backend_from(&self, env: &impl Fn(&str) -> Option<String>) -> Result<BackendType> {
        match (self.backend, env("TASK_BACKEND_TYPE")) {
            (Some(backend), _) => Ok(backend),
            (None, Some(name)) if !name.trim().is_empty() => name.parse(),
            (None, _) => Ok(BackendType::default()),
        }
    }

    /// True when the engine is PostgreSQL and no database URL was given.
    pub fn lacks_database_url(&self) -> bool {
        matches!(self.backend(), Ok(BackendType::Postgres))
            && self
                .database_url
                .as_deref()
                .is_none_or(|url| url.trim().is_empty())
    }

    /// Checks that this build has the engine, then starts its configuration from these
    /// arguments and the process environment: the engine's own variables and the optional
    /// `TASKLIB_*` ones, as [`ConfigBuilder::from_vars`] reads them.
    ///
    /// # Errors
    /// As [`backend`](Self::backend); [`Error::BackendNotCompiled`] for an engine whose cargo
    /// feature is off (the message names the feature), [`Error::BackendUnsupported`] for
    /// Hatchet, [`Error::InvalidConfig`] when a variable the engine needs is missing
    /// (`DATABASE_URL` for PostgreSQL) or a variable does not parse.
    pub fn config_builder(&self) -> Result<ConfigBuilder> {
        self.config_builder_from(|name| std::env::var(name).ok())
    }

    /// [`config_builder`](Self::config_builder) with `env` standing for the environment.
    fn config_builder_from(&self, env: impl Fn(&str) -> Option<String>) -> Result<ConfigBuilder> {
        let backend = self.backend_from(&env)?;
        backend.ensure_available()?;
        let builder = ConfigBuilder::from_vars(|name| match name {
            "TASK_BACKEND_TYPE" => Some(backend.as_str().to_owned()),
            // What clap took from the flag, else from the variable.
            "DATABASE_URL" => self.database_url.clone(),
            "TASKLIB_SCHEMA" => self.schema.clone(),
            "TASKLIB_LISTEN_URL" => self.listen_url.clone(),
            "TASKLIB_TRANSACTION_POOLER" if self.transaction_pooler => Some("true".to_owned()),
            _ => env(name),
        })?;
        Ok(builder.backend(backend))
    }
}

/// `--backend`: a name [`BackendType::from_str`] knows; the error lists them.
fn backend_arg(s: &str) -> Result<BackendType, String> {
    BackendType::from_str(s).map_err(|error| match error {
        Error::InvalidConfig { reason, .. } => reason,
        other => other.to_string(),
    })
}

/// The worker command line.
#[derive(Debug, Parser)]
#[command(
    about = "Runs tasklib workers for the task types compiled into this program",
    long_about = None
)]
pub struct WorkerArgs {
    /// The engine and its database.
    #[command(flatten)]
    pub engine: EngineArgs,

    /// Queues to serve, comma-separated. Defaults to the queues named in --concurrency, else
    /// every queue of a registered task type.
    #[arg(
        long,
        env = "TASK_QUEUES",
        hide_env_values = true,
        value_delimiter = ',',
        value_name = "QUEUE,..."
    )]
    pub queues: Vec<String>,

    /// Tasks run at once: `N` for each served queue, and/or `QUEUE=N` per queue
    /// (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', value_name = "N|QUEUE=N")]
    pub concurrency: Vec<Concurrency>,

    /// How often idle workers look for due work, e.g. `500ms`, `2s`.
    #[arg(long, value_parser = duration_arg, value_name = "DURATION")]
    pub poll_interval: Option<Duration>,

    /// How long shutdown waits for running tasks, e.g. `30s`.
    #[arg(long, value_parser = duration_arg, value_name = "DURATION")]
    pub shutdown_grace_period: Option<Duration>,

    /// How long the worker rides out a database (or broker) it cannot use before it exits
    /// with an error, for its supervisor to start it again, e.g. `5m` [default: 2m].
    #[arg(long, value_parser = duration_arg, value_name = "DURATION")]
    pub max_outage: Option<Duration>,

    /// Serve Prometheus metrics (`tasklib_*`) over HTTP on this address, e.g.
    /// `127.0.0.1:9464` (scrape `/metrics`). Needs the cargo feature `prometheus`.
    #[cfg(feature = "prometheus")]
    #[arg(long, env = "TASKLIB_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// One `--concurrency` value: for every queue, or for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Concurrency {
    /// `N`: for each served queue without its own value.
    All(usize),
    /// `QUEUE=N`.
    Queue(String, usize),
}

impl FromStr for Concurrency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let slots = |n: &str| -> Result<usize, String> {
            match n.trim().parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("`{n}` is not a positive number of slots")),
            }
        };
        match s.split_once('=') {
            Some((queue, n)) if !queue.trim().is_empty() => {
                Ok(Concurrency::Queue(queue.trim().to_owned(), slots(n)?))
            }
            Some(_) => Err(format!("`{s}` has no queue name before `=`")),
            None => Ok(Concurrency::All(slots(s)?)),
        }
    }
}

fn duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration("duration", s).map_err(|e| e.to_string())
}

impl WorkerArgs {
    /// The queues to serve and their slots, given the queues of the registered task types.
    pub fn plan(&self, registered_queues: &[String]) -> Vec<(String, usize)> {
        let default = self
            .concurrency
            .iter()
            .rev()
            .find_map(|c| match c {
                Concurrency::All(n) => Some(*n),
                Concurrency::Queue(..) => None,
            })
            .unwrap_or(DEFAULT_CONCURRENCY);
        let named: Vec<(&str, usize)> = self
            .concurrency
            .iter()
            .filter_map(|c| match c {
                Concurrency::Queue(q, n) => Some((q.as_str(), *n)),
                Concurrency::All(_) => None,
            })
            .collect();
        let mut queues: Vec<String> = if !self.queues.is_empty() {
            self.queues
                .iter()
                .map(|q| q.trim().to_owned())
                .filter(|q| !q.is_empty())
                .collect()
        } else if !named.is_empty() {
            named.iter().map(|(q, _)| (*q).to_owned()).collect()
        } else {
            registered_queues.to_vec()
        };
        queues.sort();
        queues.dedup();
        queues
            .into_iter()
            .map(|q| {
                let n = named
                    .iter()
                    .rev()
                    .find(|(name, _)| *name == q)
                    .map_or(default, |(_, n)| *n);
                (q, n)
            })
            .collect()
    }
}

/// Parses the process's arguments, connects, lets `register` add the handlers, and works
/// until SIGTERM or SIGINT. Returns the exit code to end `main` with.
pub async fn run_worker_command(register: impl FnOnce(&TaskLib) -> Result<()>) -> ExitCode {
    run_worker_command_from(std::env::args_os(), register).await
}

/// [`run_worker_command`] with explicit arguments (the first is the program name).
pub async fn run_worker_command_from(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    register: impl FnOnce(&TaskLib) -> Result<()>,
) -> ExitCode {
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let args = match WorkerArgs::try_parse_from(&args) {
        Ok(args) => args,
        Err(err) if err.kind() == clap::error::ErrorKind::DisplayHelp => {
            return clap_exit(&help_with_task_types(&args, register));
        }
        Err(err) => return clap_exit(&err),
    };
    if args.engine.lacks_database_url() {
        let err = WorkerArgs::command().error(
            clap::error::ErrorKind::MissingRequiredArgument,
            "the postgres backend needs a database: pass --database-url <URL> or set \
             DATABASE_URL",
        );
        return clap_exit(&err);
    }
    match work(args, register).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            ExitCode::from(1)
        }
    }
}

/// The `--help` of the worker command, ending with the task types `register` adds and their
/// queues (registered on a `TaskLib` connected to nothing).
fn help_with_task_types(
    args: &[OsString],
    register: impl FnOnce(&TaskLib) -> Result<()>,
) -> clap::Error {
    // Any valid configuration: nothing connects.
    let registered = crate::Config::builder("postgres://localhost/")
        .build()
        .map(TaskLib::detached)
        .and_then(|tasks| register(&tasks).map(|()| tasks));
    let listing = match registered {
        Ok(tasks) => {
            let types = tasks.get_registered_tasks();
            let width = types.iter().map(|t| t.name.len()).max().unwrap_or(0);
            let lines: Vec<String> = types
                .iter()
                .map(|t| format!("  {:width$}  queue: {}", t.name, t.queue))
                .collect();
            let mut listing = format!("Task types this worker runs:\n{}", lines.join("\n"));
            let schedules = tasks.registered_schedules();
            if !schedules.is_empty() {
                let lines: Vec<String> = schedules
                    .iter()
                    .map(|s| {
                        format!(
                            "  {}  `{}` ({}): {}",
                            s.name,
                            s.timing.expression(),
                            s.timing.zone_name(),
                            s.task_name()
                        )
                    })
                    .collect();
                listing.push_str(&format!(
                    "\n\nSchedules this worker runs:\n{}",
                    lines.join("\n")
                ));
            }
            listing
        }
        Err(error) => format!("Task types: could not be listed ({})", one_line(&error)),
    };
    match WorkerArgs::command()
        .after_help(listing)
        .try_get_matches_from(args)
    {
        Err(help) => help,
        // `--help` was on the line a moment ago; parsing it again cannot succeed.
        Ok(_) => WorkerArgs::command().error(
            clap::error::ErrorKind::DisplayHelp,
            "run with --help for help",
        ),
    }
}

async fn work(args: WorkerArgs, register: impl FnOnce(&TaskLib) -> Result<()>) -> Result<()> {
    let config = args.engine.config_builder()?.build()?;
    #[cfg(feature = "prometheus")]
    if let Some(addr) = args.metrics_listen {
        crate::metrics::serve_prometheus(addr)?;
        tracing::info!(%addr, "serving Prometheus metrics");
    }
    tracing::info!("tasklib backend: {}", config.backend_config());
    let tasks = TaskLib::connect_with(config).await?;
    register(&tasks)?;
    let mut registered: Vec<String> = tasks
        .get_registered_tasks()
        .into_iter()
        .map(|t| t.queue)
        .collect();
    registered.sort();
    registered.dedup();
    let mut worker = TaskWorker::new(&tasks);
    for (queue, slots) in args.plan(&registered) {
        worker = worker.queue(queue, slots);
    }
    if let Some(interval) = args.poll_interval {
        worker = worker.poll_interval(interval);
    }
    if let Some(grace) = args.shutdown_grace_period {
        worker = worker.shutdown_grace_period(grace);
    }
    if let Some(limit) = args.max_outage {
        worker = worker.max_outage(limit);
    }
    worker.run().await
}

/// An error and its causes on one line.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    crate::task::error_chain(error).replace('\n', " ")
}

/// Prints a clap error as one line (help and version as they are) and picks the exit code.
pub fn clap_exit(err: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            print!("{}", err.render());
            if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            // clap's message, without its usage block, folded onto one line.
            let rendered = err.render().to_string();
            let message: Vec<&str> = rendered
                .lines()
                .take_while(|line| {
                    !line.starts_with("Usage:") && !line.trim_start().starts_with("tip:")
                })
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with("For more information"))
                .collect();
            eprintln!("{} (see --help)", message.join(" "));
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Serialize, serde::Deserialize, validator::Validate)]
    struct Ping {
        n: i64,
    }

    impl crate::Task for Ping {
        const NAME: &'static str = "ping";
        type Output = i64;
    }

    #[test]
    fn help_lists_the_task_types_and_the_schedules_without_connecting() {
        let args: Vec<OsString> = vec!["worker".into(), "--help".into()];
        let help = help_with_task_types(&args, |tasks| {
            tasks.register(|ping: Ping, _: crate::TaskContext| async move {
                Ok::<_, crate::TaskError>(ping.n)
            })?;
            tasks.schedule(
                crate::Schedule::new("pinger", "*/5 * * * *")?
                    .time_zone("Europe/Paris")?
                    .args(Ping { n: 1 }),
            )
        })
        .to_string();
        assert!(
            help.contains("Task types this worker runs:\n  ping"),
            "{help}"
        );
        assert!(
            help.contains(
                "Schedules this worker runs:\n  pinger  `*/5 * * * *` (Europe/Paris): ping"
            ),
            "{help}"
        );
    }

    fn args(list: &[&str]) -> std::result::Result<WorkerArgs, clap::Error> {
        let mut all = vec!["worker", "--database-url", "postgres://localhost/x"];
        all.extend_from_slice(list);
        WorkerArgs::try_parse_from(all)
    }

    #[test]
    fn plans_queues_and_slots() -> std::result::Result<(), clap::Error> {
        let registered = vec!["default".to_owned(), "email".to_owned()];
        assert_eq!(
            args(&[])?.plan(&registered),
            vec![("default".into(), 10), ("email".into(), 10)]
        );
        assert_eq!(
            args(&["--concurrency", "4"])?.plan(&registered),
            vec![("default".into(), 4), ("email".into(), 4)]
        );
        assert_eq!(
            args(&["--concurrency", "file_processing=2,api_processing=8"])?.plan(&registered),
            vec![("api_processing".into(), 8), ("file_processing".into(), 2)]
        );
        assert_eq!(
            args(&[
                "--queues",
                "a,b",
                "--concurrency",
                "3",
                "--concurrency",
                "b=7"
            ])?
            .plan(&registered),
            vec![("a".into(), 3), ("b".into(), 7)]
        );
        Ok(())
    }

    #[test]
    fn rejects_bad_concurrency() {
        assert!(args(&["--concurrency", "0"]).is_err());
        assert!(args(&["--concurrency", "=3"]).is_err());
        assert!(args(&["--concurrency", "q=lots"]).is_err());
        assert!(args(&["--poll-interval", "soon"]).is_err());
    }

    #[test]
    fn unknown_backends_list_the_known_ones() {
        let message = args(&["--backend", "nosuch"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("nosuch") && message.contains("postgres, celery, temporal, hatchet"),
            "{message}"
        );
    }

    #[test]
    fn the_flag_chooses_the_engine_and_the_rest_comes_from_the_environment() -> Result<()> {
        let env = |name: &str| match name {
            "TASK_BACKEND_TYPE" => Some("celery".to_owned()),
            "TASKLIB_MAX_RETRIES" => Some("7".to_owned()),
            _ => None,
        };
        let engine = EngineArgs {
            backend: Some(BackendType::Postgres),
            database_url: Some("postgres://u:pw@h/db".to_owned()),
            schema: Some("ops".to_owned()),
            transaction_pooler: true,
            listen_url: Some("postgres://u:pw@direct/db".to_owned()),
        };
        let config = engine.config_builder_from(env)?.build()?;
        assert_eq!(config.backend(), BackendType::Postgres);
        assert_eq!(config.max_retries(), 7);
        assert_eq!(config.schema(), "ops");
        assert!(config.transaction_pooler());
        assert_eq!(
            config.listen_url().map(ToString::to_string).as_deref(),
            Some("postgres://u:***@direct/db")
        );
        assert_eq!(
            config.backend_config().to_string(),
            "postgres (database_url=postgres://u:***@h/db)"
        );
        Ok(())
    }

    #[test]
    fn the_variable_chooses_when_the_flag_is_absent() {
        let env = |value: &'static str| {
            move |name: &str| (name == "TASK_BACKEND_TYPE").then(|| value.to_owned())
        };
        let engine = EngineArgs::default();
        assert!(matches!(
            engine.config_builder_from(env("hatchet")),
            Err(Error::BackendUnsupported { .. })
        ));
        let message = engine
            .config_builder_from(env("nosuch"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("TASK_BACKEND_TYPE") && message.contains("postgres, celery"),
            "{message}"
        );
        assert!(matches!(
            engine.backend_from(&env(" ")),
            Ok(BackendType::Postgres)
        ));
    }

    #[test]
    fn engines_this_build_lacks_and_missing_urls() {
        let none = |_: &str| None;
        let hatchet = EngineArgs {
            backend: Some(BackendType::Hatchet),
            ..EngineArgs::default()
        };
        assert!(matches!(
            hatchet.config_builder_from(none),
            Err(Error::BackendUnsupported { .. })
        ));
        let postgres = EngineArgs::default();
        assert!(postgres.lacks_database_url());
        assert!(matches!(
            postgres.config_builder_from(none),
            Err(Error::InvalidConfig {
                field: "DATABASE_URL",
                ..
            })
        ));
        let temporal = EngineArgs {
            backend: Some(BackendType::Temporal),
            ..EngineArgs::default()
        };
        assert!(!temporal.lacks_database_url());
    }
}
