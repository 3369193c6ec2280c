//! # tasklib
//!
//! A durable task queue on PostgreSQL: tasks are rows in one `tasks` table, submitted with
//! typed, validated arguments (also inside your own transaction), claimed by workers with
//! `FOR UPDATE SKIP LOCKED`, and woken by `LISTEN`/`NOTIFY` with polling as the fallback.
//! The task API does not name its engine: PostgreSQL is the default and today the only one
//! compiled in (see [Engines](#engines)).
//!
//! ## Quick start
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use serde::{Deserialize, Serialize};
//! use tasklib::{SubmitOptions, Task, TaskContext, TaskError, TaskLib};
//! use validator::Validate;
//!
//! // 1. The arguments: data with a stable name, validated at submit.
//! #[derive(Debug, Serialize, Deserialize, Validate)]
//! struct SendEmail {
//!     #[validate(email)]
//!     to: String,
//!     #[validate(length(min = 1, max = 200))]
//!     subject: String,
//! }
//!
//! impl Task for SendEmail {
//!     const NAME: &'static str = "send_email";
//!     type Output = String;
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), tasklib::Error> {
//! // 2. Connect (this also applies tasklib's migrations, safely across instances).
//! let tasks = TaskLib::connect("postgres://postgres@localhost/app").await?;
//!
//! // 3. Register a handler (a closure here, or a struct holding shared state), then start
//! //    workers in this process.
//! tasks.register(|args: SendEmail, _ctx: TaskContext| async move {
//!     Ok::<_, TaskError>(format!("sent {:?} to {}", args.subject, args.to))
//! })?;
//! let workers = tasks.spawn_workers(4)?;
//!
//! // 4. Submit. Invalid arguments are an error, and nothing is written.
//! let id = tasks
//!     .submit(SendEmail { to: "ada@example.com".into(), subject: "Hello".into() })
//!     .await?;
//! let later = tasks
//!     .submit_with(
//!         SendEmail { to: "bob@example.com".into(), subject: "Reminder".into() },
//!         SubmitOptions::new().delay(Duration::from_secs(60)).priority(10),
//!     )
//!     .await?;
//!
//! // 5. Wait for the result: its status, and the handler's output or the error.
//! let result = tasks.wait_result(id, Duration::from_secs(10)).await?;
//! println!("{}: {:?}", result.status, result.value);
//!
//! // 6. Stop the workers; running tasks finish first.
//! workers.shutdown().await?;
//! # let _ = later;
//! # Ok(())
//! # }
//! ```
//!
//! ## Where things are
//!
//! **The client.** [`TaskLib`] is the handle an application keeps: connect, register, submit,
//! read results, cancel; on PostgreSQL also list, count, re-queue and prune.
//!
//! **Defining tasks.** [`Task`] is the argument type and its name; [`Handler`] and
//! [`BlockingHandler`] run it (async, or on the blocking thread pool); [`TaskContext`] is what
//! a handler knows about its attempt; [`TaskError`] is the closed set of outcomes a handler may
//! return (retry, permanent, cancel), with [`BoxError`] for the errors it wraps.
//! [`TaskInfo`] describes a registered type ([`TaskLib::get_registered_tasks`]).
//!
//! **Submitting.** [`SubmitOptions`]: delay, priority, queue, tags, retries and timeout per
//! submit ([`DEFAULT_QUEUE`] is the queue of types that name none). [`TaskLib::submit_json`]
//! submits by name with keyword or positional JSON arguments. A unique key (per submit, or
//! [`Task::unique_key`] per type), for a [`UniqueScope`] and at most [`MAX_UNIQUE_KEY_BYTES`],
//! makes a duplicate submit return the existing task; [`TaskLib::submit_unique`] returns
//! [`Submitted`], which says so (PostgreSQL).
//!
//! **Results, the same on every engine.** [`TaskLib::get_result`] and
//! [`TaskLib::wait_result`] return a [`TaskResult`], whose [`TaskStatus`] is pending, running,
//! completed, failed or cancelled (a task waiting for a retry is pending, with its last error).
//!
//! **Chains.** A [`Chain`] runs steps one after another; [`TaskLib::submit_chain`] writes them
//! all at once and returns their [`ChainIds`] ([Chains](#chains) has the rule).
//!
//! **Recurring tasks (PostgreSQL).** A [`Schedule`] submits a task on every tick of a cron
//! expression, in UTC or a named time zone; [`TaskLib::schedule`] registers it, and every
//! worker pool of that `TaskLib` runs it, exactly one task per tick however many processes
//! do. [`MissedTicks`] says what becomes of ticks missed while no process ran it (later than
//! [`MISSED_TICK_GRACE`]); [`TaskLib::list_schedules`] reads them back as [`ScheduleInfo`].
//! `docs/concepts.md` has the rules.
//!
//! **Reading tasks back (PostgreSQL).** [`TaskRecord`] is every stored fact about a task, in a
//! [`TaskState`] ([`ParseTaskStateError`] when parsing one fails), with its failed attempts
//! as [`AttemptError`]s; [`TaskFilter`] selects tasks
//! for [`TaskLib::list_tasks`] (at most [`MAX_LIST_LIMIT`] at a time, [`DEFAULT_LIST_LIMIT`]
//! by default); [`TaskCounts`] and [`QueueStatus`] count them. [`TaskLib::cancel`] returns a
//! [`CancelOutcome`]. [`TaskLib::pause_queue`] and [`TaskLib::resume_queue`] stop and restart
//! a queue across every process; [`TaskLib::set_queue_limits`] caps it with
//! [`QueueLimits`] (a concurrency, a [`RateLimit`]) across the cluster.
//!
//! **Running tasks.** [`TaskWorker`] configures a pool (slots per queue, polling, retention,
//! [`ClaimAhead`]) and [`WorkerPool`] is the running handle: [`PoolStats`] counts what it did,
//! and [`WorkerEvent`]s, each finished attempt with its [`TaskOutcome`] (and each tick of a
//! schedule the pool claimed), report it as it goes.
//! A pool has [`DEFAULT_CONCURRENCY`] slots unless told otherwise, and at most [`MAX_SLOTS`] per
//! group. [`shutdown_signal`] resolves on SIGINT or SIGTERM, for
//! [`TaskWorker::run_until`] or a web server's graceful shutdown. [`RetentionPolicy`] deletes
//! old finished tasks in the background, [`PRUNE_BATCH`] rows at a time, every
//! [`DEFAULT_RETENTION_INTERVAL`] by default.
//!
//! **Configuration.** [`Config`] and its [`ConfigBuilder`], validated once, also read from the
//! environment ([`ConfigBuilder::from_vars`] lists the variables); durations there parse with
//! [`parse_duration`]. The defaults are constants: [`DEFAULT_MAX_RETRIES`],
//! [`DEFAULT_BASE_RETRY_DELAY`], [`DEFAULT_RETRY_BACKOFF_MULTIPLIER`],
//! [`DEFAULT_MAX_RETRY_DELAY`], [`DEFAULT_RETRY_JITTER`], [`DEFAULT_LOCK_TIMEOUT`],
//! [`DEFAULT_POLL_INTERVAL`], [`DEFAULT_CONNECT_TIMEOUT`], [`DEFAULT_MAX_CONNECTIONS`],
//! [`DEFAULT_MAX_ARGS_BYTES`], [`DEFAULT_SHUTDOWN_GRACE_PERIOD`], and for Temporal
//! [`DEFAULT_TEMPORAL_HOST`] and [`DEFAULT_TEMPORAL_NAMESPACE`]. [`RedactedUrl`] holds a URL
//! whose `Display` and `Debug` hide the password.
//!
//! **The database (PostgreSQL).** [`migrate()`] and [`pending_migrations`] apply and list
//! tasklib's migrations, for apps that run them as a separate step, under the advisory lock
//! [`MIGRATION_LOCK_KEY`]; [`migration`] is the migration crate itself, and [`entity`] the
//! SeaORM entity of the `tasks` table. The notification channels are
//! [`NEW_TASKS_CHANNEL`] (new work, per queue), [`CANCEL_CHANNEL`] (cancel requests for running
//! tasks), [`DONE_CHANNEL`] (finished tasks someone waits for) and [`QUEUES_CHANNEL`] (a
//! queue paused or resumed).
//!
//! **Errors.** [`Error`] is every failure, typed, and [`Result`] is tasklib's result type.
//!
//! **Worker binaries.** The `cli` module (cargo feature `cli`) turns your binary into a worker
//! command with `--queues`, `--concurrency` and graceful SIGTERM handling.
//!
//! **Metrics.** The cargo feature `metrics` records counters of submitted, completed, retried,
//! failed, cancelled, snoozed and rescued tasks, histograms of wait and run time and gauges of
//! pending and running tasks per queue (`tasklib_*`, listed in `docs/monitoring.md`) through
//! the `metrics` facade; `prometheus` adds the worker command's `--metrics-listen ADDR`.
//!
//! **Traces.** The cargo feature `otel` makes a task part of the trace of the code that
//! submitted it: a submit stores the W3C `traceparent` of the current `tracing` span's
//! OpenTelemetry context ([`TaskRecord::trace_context`]), and the worker's `tasklib.task` span
//! (fields `task.id`, `task.name`, `task.queue`, `task.attempt`, `task.wait_ms`; there with or
//! without the feature) continues it through `tracing-opentelemetry`. `docs/monitoring.md`,
//! "Traces", shows how to wire an exporter.
//!
//! ## Chains
//!
//! When a step of a [`Chain`] completes, its output is put in front of the next step's
//! positional arguments, and that list is mapped onto the fields of the next step's argument
//! type in their declared order. This is Celery's rule, so a chain means the same on every
//! engine. Every step's id is known at submit ([`ChainIds`]). The chain's result is the last
//! step's, or that of the first step that failed for good or was cancelled; the steps after
//! such a step are cancelled. Retries apply to each step on its own.
//!
//! ## Engines
//!
//! [`BackendType`] names the engine: `postgres` (the default), `celery`, `temporal` or
//! `hatchet`, chosen with [`ConfigBuilder::backend`] or `TASK_BACKEND_TYPE`. Only PostgreSQL is
//! implemented; Celery and Temporal are planned behind cargo features of those names, and
//! choosing them now fails at [`TaskLib::connect_with`] with [`Error::BackendNotCompiled`];
//! Hatchet is not supported. [`BackendConfig`] shows the engine and its settings with secrets
//! redacted. Each engine declares what it honours as [`Capabilities`], a set of
//! [`Capability`]; an option the engine cannot honour is refused at submit with
//! [`Error::Unsupported`], never dropped. `docs/backends.md` compares the engines.

mod attempt;
mod backend;
mod chain;
#[cfg(feature = "cli")]
pub mod cli;
mod client;
mod config;
mod control;
mod engine;
pub mod entity;
mod error;
mod handler;
mod limits;
mod metrics;
mod overview;
mod progress;
mod query;
mod record;
mod registry;
mod result;
mod retention;
mod retry;
mod schedule;
mod state;
mod submit;
mod task;
mod trace;
mod unique;
mod url;
mod worker;

pub use backend::{BackendConfig, BackendType, Capabilities, Capability};
pub use chain::{Chain, ChainIds};
pub use client::TaskLib;
pub use config::{
    Config, ConfigBuilder, DEFAULT_BASE_RETRY_DELAY, DEFAULT_CONNECT_TIMEOUT, DEFAULT_LOCK_TIMEOUT,
    DEFAULT_MAX_ARGS_BYTES, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_RETRIES, DEFAULT_MAX_RETRY_DELAY,
    DEFAULT_POLL_INTERVAL, DEFAULT_QUEUE, DEFAULT_RETRY_BACKOFF_MULTIPLIER, DEFAULT_RETRY_JITTER,
    DEFAULT_SCHEMA, DEFAULT_SHUTDOWN_GRACE_PERIOD, DEFAULT_SSL_MODE, DEFAULT_TEMPORAL_HOST,
    DEFAULT_TEMPORAL_NAMESPACE, SslMode, parse_duration,
};
pub use control::CancelOutcome;
pub use engine::postgres::migrate::{
    MIGRATION_LOCK_KEY, migrate, migration_lock_key, pending_migrations,
};
pub use engine::postgres::wait::DONE_CHANNEL;
pub use engine::postgres::worker::{CANCEL_CHANNEL, NEW_TASKS_CHANNEL, QUEUES_CHANNEL};
pub use error::{Error, Result};
pub use handler::{BlockingHandler, Handler};
pub use limits::{QueueLimits, RateLimit};
#[cfg(feature = "prometheus")]
pub use metrics::prometheus_builder;
pub use overview::{MAX_OVERVIEW_MINUTES, MinuteCounts, QueueOverview, QueueSlots, WorkerInfo};
pub use query::{DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, QueueStatus, TaskCounts, TaskFilter};
pub use record::{AttemptError, TaskRecord};
pub use registry::TaskInfo;
pub use result::{TaskResult, TaskStatus};
pub use retention::{DEFAULT_RETENTION_INTERVAL, PRUNE_BATCH, RetentionPolicy};
pub use schedule::{MISSED_TICK_GRACE, MissedTicks, Schedule, ScheduleInfo};
pub use state::{ParseTaskStateError, TaskState};
pub use submit::SubmitOptions;
pub use task::{BoxError, Task, TaskContext, TaskError};
pub use unique::{MAX_UNIQUE_KEY_BYTES, Submitted, UniqueScope};
pub use url::RedactedUrl;
pub use worker::{
    ClaimAhead, DEFAULT_CONCURRENCY, DEFAULT_MAX_OUTAGE, MAX_SLOTS, PoolFailure, PoolStats,
    TaskOutcome, TaskWorker, WorkerEvent, WorkerPool, shutdown_signal,
};

/// The migration crate, re-exported (its `Migrator` is what [`migrate()`] applies).
pub use tasklib_migration as migration;

/// The README's quick start, compiled as a doctest so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeQuickStart;
