//! The error type of every fallible tasklib call.

use std::time::Duration;

use uuid::Uuid;

use crate::url::RedactedUrl;

/// Result type used throughout tasklib.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when talking to tasklib.
///
/// Messages are short and lowercase and say what to do; the underlying cause, where there is
/// one, is kept as the [`source`](std::error::Error::source) (print the whole chain, e.g. with
/// `{:#}` in anyhow or by walking `source()`). No variant ever contains a database password.
///
/// `Debug` prints the same one line as `Display`, followed by the causes: what a `main` that
/// returns `Result<(), Box<dyn Error>>` shows when it fails.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database could not be reached at startup.
    #[error(
        "could not connect to PostgreSQL at {url}: check that the server runs and the URL is right"
    )]
    Connect {
        /// The URL, with its password replaced by `***`.
        url: RedactedUrl,
        /// What the driver said.
        #[source]
        source: sea_orm::DbErr,
    },

    /// A connection to PostgreSQL could not be made as its TLS settings (`sslmode`,
    /// `sslrootcert`) ask: the server's certificate was refused (wrong host name, signed by a
    /// CA that is not trusted, expired), the server does not offer TLS, or the root
    /// certificate file cannot be read. `reason` says which, and which setting to change.
    #[error("could not connect to PostgreSQL at {url} over TLS: {reason}")]
    Tls {
        /// The URL, with its password replaced by `***`.
        url: RedactedUrl,
        /// What went wrong and what to do about it (one line).
        reason: String,
        /// What the TLS library or the driver said, when there is more.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },

    /// A query failed.
    #[error("database error")]
    Database(#[from] sea_orm::DbErr),

    /// Applying tasklib's migrations failed; the schema is left as it was before.
    #[error("applying tasklib migrations failed")]
    Migration(#[source] sea_orm::DbErr),

    /// A configuration value is out of range or unparsable. Raised once, when building the
    /// configuration, never later.
    #[error("invalid configuration for `{field}`: {reason}")]
    InvalidConfig {
        /// The setting (its builder method, or its `TASKLIB_*` variable).
        field: &'static str,
        /// What is wrong and what is accepted.
        reason: String,
    },

    /// The task's arguments failed their `validator` rules; nothing was written.
    #[error("invalid arguments for task `{task}`{}", item_suffix(*.index))]
    InvalidArgs {
        /// The task name.
        task: String,
        /// For a bulk submit, the position of the offending item.
        index: Option<usize>,
        /// The field errors (`source.field_errors()` maps each field to its failures).
        #[source]
        source: validator::ValidationErrors,
    },

    /// JSON arguments (the name-based submit path, or a stored row) do not match the task's
    /// argument type; nothing was written.
    #[error("arguments do not fit the argument type of task `{task}`{}", item_suffix(*.index))]
    ArgsMismatch {
        /// The task name.
        task: String,
        /// For a bulk submit, the position of the offending item.
        index: Option<usize>,
        /// What serde said (names the field and the expected type).
        #[source]
        source: serde_json::Error,
    },

    /// Arguments, a result or a progress report could not be turned into JSON (a map with
    /// non-string keys, a failing `Serialize` impl).
    #[error("could not serialize the arguments, result or progress of task `{task}` to JSON")]
    Serialize {
        /// The task name.
        task: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },

    /// The arguments hold something PostgreSQL cannot store in `jsonb`: the NUL character
    /// (U+0000) in a string or key. Nothing was written.
    #[error(
        "arguments of task `{task}` contain the NUL character (U+0000) at `{path}`, which PostgreSQL cannot store: remove it or encode the value (e.g. base64)"
    )]
    NulCharacter {
        /// The task name.
        task: String,
        /// A JSON pointer to the offending value, such as `/subject` or `/items/3`.
        path: String,
    },

    /// The serialized arguments exceed the configured limit; nothing was written.
    #[error(
        "arguments of task `{task}` are {size} bytes, over the limit of {limit}: store large payloads elsewhere and pass a reference, or raise `max_args_bytes`"
    )]
    ArgsTooLarge {
        /// The task name.
        task: String,
        /// Size of the serialized arguments, in bytes.
        size: usize,
        /// The configured limit ([`crate::Config::max_args_bytes`]).
        limit: usize,
    },

    /// A submit option is invalid (tags that are not a JSON object, an empty queue name...).
    #[error("invalid option `{option}`: {reason}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// What is wrong.
        reason: String,
    },

    /// A schedule's cron expression does not parse, or never matches; nothing was
    /// registered.
    #[error(
        "invalid cron expression `{expression}`: {reason}; write five fields (minute hour \
         day-of-month month day-of-week) or six with seconds first, such as `0 3 * * *`"
    )]
    InvalidCron {
        /// The expression as given.
        expression: String,
        /// What the parser said.
        reason: String,
    },

    /// A schedule names a time zone the time zone database does not know; nothing was
    /// registered.
    #[error(
        "unknown time zone `{zone}`: use an IANA name such as `Europe/Paris`, \
         `America/New_York` or `UTC`"
    )]
    UnknownTimeZone {
        /// The name as given.
        zone: String,
    },

    /// A schedule with this name is already registered with this `TaskLib`.
    #[error("a schedule named `{name}` is already registered")]
    DuplicateSchedule {
        /// The name.
        name: String,
    },

    /// A schedule was registered while a worker pool of this `TaskLib` runs: running pools
    /// run only the schedules registered when they started.
    #[error(
        "schedule `{name}` was registered while a worker pool is running: running pools run \
         only the schedules registered when they started; register every schedule before \
         `spawn_workers`, or shut the pool down first"
    )]
    ScheduledWhileRunning {
        /// The schedule's name.
        name: String,
    },

    /// No task of that name is registered with this `TaskLib`.
    #[error("no task named `{name}` is registered: call `register` for it first")]
    UnknownTask {
        /// The name asked for.
        name: String,
    },

    /// A task with this name is already registered.
    #[error("a task named `{name}` is already registered")]
    DuplicateTask {
        /// The name.
        name: String,
    },

    /// No task has this id.
    #[error("no task with id {id}")]
    NotFound {
        /// The id asked for.
        id: Uuid,
    },

    /// The operation does not apply to the task in its current state.
    #[error("task {id} is {state} and cannot be {action}")]
    InvalidState {
        /// The task.
        id: Uuid,
        /// Its state when asked.
        state: crate::TaskState,
        /// What was asked ("cancelled", "retried").
        action: &'static str,
    },

    /// A stored row holds a value tasklib cannot read (an unknown state, say), usually because
    /// something other than tasklib wrote it.
    #[error("task {id} has an unreadable `{column}` column: {reason}")]
    CorruptRow {
        /// The task.
        id: Uuid,
        /// The column.
        column: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The worker pool's dedicated LISTEN connection failed.
    #[error("the notification listener connection failed")]
    Listener(#[source] tokio_postgres::Error),

    /// A worker pool stopped on its own (see [`WorkerPool::failed`](crate::WorkerPool::failed)).
    #[error(
        "the worker pool stopped: {0}; exit and let the supervisor (systemd, Kubernetes) start the worker again"
    )]
    PoolFailed(crate::PoolFailure),

    /// Shutting down did not finish within the grace period.
    #[error("shutdown did not finish within {0:?}; tasks still running are left to lock expiry")]
    ShutdownTimeout(Duration),

    /// The configured engine is known but this build does not contain it.
    #[error(
        "the `{backend}` backend is not compiled in: enable tasklib's cargo feature `{feature}` \
         (for example `cargo build --features {feature}`)"
    )]
    BackendNotCompiled {
        /// The backend asked for.
        backend: crate::BackendType,
        /// The cargo feature that compiles it in.
        feature: &'static str,
    },

    /// The configured engine cannot be used at all.
    #[error("the `{backend}` backend is {reason}")]
    BackendUnsupported {
        /// The backend asked for.
        backend: crate::BackendType,
        /// Why, and where to read more.
        reason: String,
    },

    /// The chosen engine cannot honour what was asked (an option, or a PostgreSQL-only
    /// operation). Nothing was done.
    #[error(
        "the `{backend}` backend does not support {capability}: drop that option or choose a \
         backend that has it (docs/backends.md lists what each supports)"
    )]
    Unsupported {
        /// The engine in use.
        backend: crate::BackendType,
        /// What it lacks.
        capability: crate::Capability,
    },

    /// A unique task could be neither written nor matched to the task holding its key: the
    /// holder finished each time between the two steps. Nothing was written; submitting
    /// again is safe.
    #[error(
        "could not settle unique key `{key}` of task `{task}`: tasks holding it kept finishing \
         while this submit ran; submit again"
    )]
    UniqueKeyContended {
        /// The task name.
        task: String,
        /// The unique key.
        key: String,
    },

    /// A task cannot be put back to run (retry, rerun) while another unfinished task of the
    /// same name holds its unique key. Nothing was changed.
    #[error(
        "task {id} cannot run again now: an unfinished task of the same name holds its unique \
         key `{key}`; wait for that task to finish, or cancel it, then try again"
    )]
    UniqueKeyTaken {
        /// The task that was to run again.
        id: uuid::Uuid,
        /// Its unique key.
        key: String,
    },

    /// A result's value was asked for, but the task has none (it has not completed).
    #[error("task {id} has no value: it is {status}{}", error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default())]
    NotCompleted {
        /// The task.
        id: Uuid,
        /// Where it stands.
        status: crate::TaskStatus,
        /// Its error, if any.
        error: Option<String>,
    },

    /// A result's value does not deserialize into the type asked for.
    #[error("the result of task {id} does not fit the type asked for")]
    ResultMismatch {
        /// The task.
        id: Uuid,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },

    /// A task type was registered while a worker pool of this `TaskLib` runs: running pools
    /// serve only the types registered when they started, so it would never run there.
    #[error(
        "task `{name}` was registered while a worker pool is running: running pools serve only \
         the task types registered when they started; register every type before \
         `spawn_workers`, or shut the pool down first"
    )]
    RegisteredWhileRunning {
        /// The task type's name.
        name: String,
    },

    /// [`wait_result`](crate::TaskLib::wait_result) gave up before the task finished. The
    /// task goes on; wait again or read it later.
    #[error("task {id} did not finish within {timeout:?}")]
    WaitTimeout {
        /// The task (or chain) waited for.
        id: Uuid,
        /// How long the call waited.
        timeout: Duration,
    },

    /// The server an engine keeps its messages or results on (Redis, for Celery) failed or
    /// could not be reached.
    #[error(
        "the {backend} backend's {role} at {url} failed: check that the server runs and the URL is right"
    )]
    Broker {
        /// The engine.
        backend: crate::BackendType,
        /// Which server: `broker` or `result backend`.
        role: &'static str,
        /// Its URL, with the password replaced by `***`.
        url: RedactedUrl,
        /// What the client library said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::task::error_chain(self).replace('\n', " "))
    }
}

fn item_suffix(index: Option<usize>) -> String {
    index.map(|i| format!(" (item {i})")).unwrap_or_default()
}

impl Error {
    /// True when the task asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// True when a wait for a result ran out of time (the task itself goes on).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::WaitTimeout { .. })
    }

    /// True when the chosen engine lacks what was asked of it.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Error::Unsupported { .. })
    }

    /// True when the error is about the caller's input (arguments, options, unknown task):
    /// retrying the same call cannot succeed. An HTTP handler maps these to 4xx.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Error::InvalidArgs { .. }
                | Error::ArgsMismatch { .. }
                | Error::NulCharacter { .. }
                | Error::ArgsTooLarge { .. }
                | Error::InvalidOption { .. }
                | Error::UnknownTask { .. }
                | Error::Serialize { .. }
                | Error::InvalidCron { .. }
                | Error::UnknownTimeZone { .. }
        )
    }

    /// The field errors, when this is a validation failure.
    pub fn validation_errors(&self) -> Option<&validator::ValidationErrors> {
        match self {
            Error::InvalidArgs { source, .. } => Some(source),
            _ => None,
        }
    }
}
