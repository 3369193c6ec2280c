//! # tasklib
//!
//! A durable task queue on PostgreSQL: tasks are rows in one `tasks` table, submitted with
//! typed, validated arguments (also inside your own transaction), claimed by workers with
//! `FOR UPDATE SKIP LOCKED`, and woken by `LISTEN`/`NOTIFY` with polling as the fallback.
//!
//! ## Quick start
//!
//! ```no_run
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
//!     type Output = bool;
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), tasklib::Error> {
//! // 2. Connect (this also applies tasklib's migrations, safely across instances).
//! let tasks = TaskLib::connect("postgres://postgres@localhost/app").await?;
//!
//! // 3. Register a handler: a closure here, or a struct holding shared state.
//! tasks.register(|args: SendEmail, _ctx: TaskContext| async move {
//!     println!("sending {:?} to {}", args.subject, args.to);
//!     Ok::<_, TaskError>(true)
//! })?;
//!
//! // 4. Submit. Invalid arguments are an error, and nothing is written.
//! let id = tasks
//!     .submit(SendEmail { to: "ada@example.com".into(), subject: "Hello".into() })
//!     .await?;
//! let later = tasks
//!     .submit_with(
//!         SendEmail { to: "bob@example.com".into(), subject: "Reminder".into() },
//!         SubmitOptions::new().delay(std::time::Duration::from_secs(60)).priority(10),
//!     )
//!     .await?;
//!
//! // 5. Inspect.
//! let task = tasks.get_task(id).await?.expect("just submitted");
//! assert!(task.is_pending());
//! # let _ = later;
//! # Ok(())
//! # }
//! ```
//!
//! ## Where things are
//! - [`TaskLib`]: connect, register, submit, inspect.
//! - [`Task`], [`Handler`], [`BlockingHandler`], [`TaskContext`], [`TaskError`]: defining
//!   tasks and what their handlers may return.
//! - [`SubmitOptions`]: delay, priority, queue, tags, retries and timeout per submit.
//! - [`TaskRecord`], [`TaskFilter`], [`TaskCounts`], [`TaskState`]: reading tasks back.
//! - [`Config`]: settings and their `DEFAULT_*` constants; also from the environment.
//! - [`migrate()`]: the migrations, for apps that apply them as a separate step.
//! - [`entity`]: the SeaORM entity of the `tasks` table.
//! - [`Error`]: every failure, typed.

#[cfg(feature = "cli")]
pub mod cli;
mod client;
mod config;
mod control;
pub mod entity;
mod error;
mod handler;
mod migrate;
mod query;
mod record;
mod registry;
mod retention;
mod retry;
mod state;
mod submit;
mod task;
mod url;
mod worker;

pub use client::TaskLib;
pub use config::{
    Config, ConfigBuilder, DEFAULT_BASE_RETRY_DELAY, DEFAULT_CONNECT_TIMEOUT, DEFAULT_LOCK_TIMEOUT,
    DEFAULT_MAX_ARGS_BYTES, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_RETRIES, DEFAULT_MAX_RETRY_DELAY,
    DEFAULT_POLL_INTERVAL, DEFAULT_QUEUE, DEFAULT_RETRY_BACKOFF_MULTIPLIER, DEFAULT_RETRY_JITTER,
    DEFAULT_SHUTDOWN_GRACE_PERIOD, parse_duration,
};
pub use control::CancelOutcome;
pub use error::{Error, Result};
pub use handler::{BlockingHandler, Handler};
pub use migrate::{MIGRATION_LOCK_KEY, migrate, pending_migrations};
pub use query::{DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, QueueStatus, TaskCounts, TaskFilter};
pub use record::TaskRecord;
pub use registry::TaskInfo;
pub use retention::{DEFAULT_RETENTION_INTERVAL, PRUNE_BATCH, RetentionPolicy};
pub use state::{ParseTaskStateError, TaskState};
pub use submit::SubmitOptions;
pub use task::{BoxError, Task, TaskContext, TaskError};
pub use url::RedactedUrl;
pub use worker::{
    CANCEL_CHANNEL, ClaimAhead, DEFAULT_CONCURRENCY, MAX_SLOTS, NEW_TASKS_CHANNEL, PoolStats,
    TaskOutcome, TaskWorker, WorkerEvent, WorkerPool, shutdown_signal,
};

/// The migration crate, re-exported (its `Migrator` is what [`migrate()`] applies).
pub use tasklib_migration as migration;

/// The README's quick start, compiled as a doctest so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeQuickStart;
