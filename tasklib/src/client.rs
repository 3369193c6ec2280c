//! [`TaskLib`]: the handle an application keeps. A thin facade over the store, the registry
//! and (later) the worker pool.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use serde_json::Value;
use uuid::Uuid;

use crate::config::Config;
use crate::control::{self, CancelOutcome};
use crate::handler::{BlockingHandler, Handler};
use crate::query::{self, QueueStatus, TaskCounts, TaskFilter};
use crate::record::TaskRecord;
use crate::registry::{Registry, TaskInfo};
use crate::retention;
use crate::submit::{self, NewTask, SubmitOptions, TypeDefaults};
use crate::task::Task;
use crate::worker::{TaskWorker, WorkerPool};
use crate::{Error, Result, TaskState, migrate};

/// The handle to a tasklib database: register task types, submit tasks, inspect them.
///
/// Cheap to clone (it is an `Arc`): keep one in your application state and clone it where
/// needed.
#[derive(Clone)]
pub struct TaskLib {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    config: Config,
    registry: Registry,
}

impl fmt::Debug for TaskLib {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskLib")
            .field("config", &self.inner.config)
            .field("registry", &self.inner.registry)
            .finish_non_exhaustive()
    }
}

/// Replaces the URL in a driver error that quotes it whole (sea-orm's "The connection string
/// '…' cannot be parsed."), since it holds the password.
fn redact_url(source: sea_orm::DbErr, url: &crate::RedactedUrl) -> sea_orm::DbErr {
    match source {
        sea_orm::DbErr::Conn(sea_orm::RuntimeErr::Internal(message)) => sea_orm::DbErr::Conn(
            sea_orm::RuntimeErr::Internal(message.replace(url.expose(), &url.to_string())),
        ),
        other => other,
    }
}

impl TaskLib {
    /// Connects with every setting at its default, and applies pending migrations.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an empty URL, [`Error::Connect`] when the database cannot be
    /// reached, [`Error::Migration`] when migrating fails.
    pub async fn connect(database_url: &str) -> Result<TaskLib> {
        Self::connect_with(Config::builder(database_url).build()?).await
    }

    /// Connects with the given configuration, and applies pending migrations unless
    /// [`run_migrations`](crate::ConfigBuilder::run_migrations) is off.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn connect_with(config: Config) -> Result<TaskLib> {
        let mut options = ConnectOptions::new(config.database_url().expose());
        options
            .max_connections(config.max_connections())
            .min_connections(0)
            .connect_timeout(config.connect_timeout())
            .acquire_timeout(config.connect_timeout())
            .sqlx_logging(false)
            // A ping on every acquire doubles the round trips of the hot path (claim, complete);
            // only connections idle for a while, which a server restart may have broken, are
            // checked first.
            .test_before_acquire_if_idle_for(Duration::from_secs(30));
        let db = Database::connect(options)
            .await
            .map_err(|source| Error::Connect {
                url: config.database_url().clone(),
                source: redact_url(source, config.database_url()),
            })?;
        // The pool connects lazily; make sure the server is really there.
        db.ping().await.map_err(|source| Error::Connect {
            url: config.database_url().clone(),
            source,
        })?;
        if config.run_migrations() {
            migrate::migrate(&db).await?;
        }
        tracing::debug!(url = %config.database_url(), worker_id = config.worker_id(), "tasklib connected");
        Ok(TaskLib {
            inner: Arc::new(Inner {
                db,
                config,
                registry: Registry::default(),
            }),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The connection pool, to share with the application's own SeaORM code (and to open the
    /// transactions that [`submit_in`](Self::submit_in) takes).
    pub fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    /// Applies pending migrations (see [`migrate::migrate`]).
    ///
    /// # Errors
    /// [`Error::Migration`] when migrating fails.
    pub async fn migrate(&self) -> Result<()> {
        migrate::migrate(&self.inner.db).await
    }

    /// Registers the async handler for task type `T`. Register every type before starting
    /// workers: a worker claims only the names registered when it starts.
    ///
    /// # Errors
    /// [`Error::DuplicateTask`] when `T::NAME` is already registered.
    pub fn register<T: Task, H: Handler<T>>(&self, handler: H) -> Result<()> {
        self.inner.registry.register::<T, H>(handler)
    }

    /// Registers a synchronous handler for task type `T`, run on the blocking thread pool.
    ///
    /// # Errors
    /// [`Error::DuplicateTask`] when `T::NAME` is already registered.
    pub fn register_blocking<T: Task, H: BlockingHandler<T>>(&self, handler: H) -> Result<()> {
        self.inner.registry.register_blocking::<T, H>(handler)
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The registered task types, sorted by name.
    pub fn get_registered_tasks(&self) -> Vec<TaskInfo> {
        self.inner.registry.infos()
    }

    /// Validates `args` and submits a task with default options.
    ///
    /// # Errors
    /// [`Error::InvalidArgs`] (with the field errors) when validation fails,
    /// [`Error::NulCharacter`], [`Error::ArgsTooLarge`] or [`Error::InvalidOption`] for
    /// input PostgreSQL cannot take — in all these cases nothing is written —
    /// and [`Error::Database`] when the insert fails.
    pub async fn submit<T: Task>(&self, args: T) -> Result<Uuid> {
        self.submit_with(args, SubmitOptions::new()).await
    }

    /// Validates `args` and submits a task with the given options.
    ///
    /// # Errors
    /// As [`submit`](Self::submit).
    pub async fn submit_with<T: Task>(&self, args: T, options: SubmitOptions) -> Result<Uuid> {
        self.submit_in(&self.inner.db, args, options).await
    }

    /// Submits inside the caller's transaction (or through any SeaORM connection): the task
    /// exists only if that transaction commits, and workers are notified only then.
    ///
    /// ```no_run
    /// # use serde::{Deserialize, Serialize};
    /// # use validator::Validate;
    /// # #[derive(Debug, Serialize, Deserialize, Validate)] struct Welcome { user_id: i64 }
    /// # impl tasklib::Task for Welcome { const NAME: &'static str = "welcome"; type Output = (); }
    /// use sea_orm::TransactionTrait;
    /// use tasklib::{SubmitOptions, TaskLib};
    ///
    /// # async fn signup(tasks: &TaskLib) -> Result<(), Box<dyn std::error::Error>> {
    /// let txn = tasks.db().begin().await?;
    /// // ... insert the user with `txn` ...
    /// tasks.submit_in(&txn, Welcome { user_id: 42 }, SubmitOptions::new()).await?;
    /// txn.commit().await?; // the task and the user appear together, or neither does
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`submit`](Self::submit).
    pub async fn submit_in<C: ConnectionTrait, T: Task>(
        &self,
        conn: &C,
        args: T,
        options: SubmitOptions,
    ) -> Result<Uuid> {
        let row = self.prepare_typed(&args, None, &options)?;
        submit::insert_one(conn, row).await
    }

    /// Validates every item, then submits them all in one statement: all or nothing. The
    /// options apply to every item. Workers get one notification per queue, not one per task.
    ///
    /// # Errors
    /// As [`submit`](Self::submit); validation errors carry the index of the first invalid
    /// item, and nothing is written.
    pub async fn submit_many<T: Task>(
        &self,
        items: impl IntoIterator<Item = T>,
        options: SubmitOptions,
    ) -> Result<Vec<Uuid>> {
        self.submit_many_in(&self.inner.db, items, options).await
    }

    /// [`submit_many`](Self::submit_many) inside the caller's transaction.
    ///
    /// # Errors
    /// As [`submit_many`](Self::submit_many).
    pub async fn submit_many_in<C: ConnectionTrait, T: Task>(
        &self,
        conn: &C,
        items: impl IntoIterator<Item = T>,
        options: SubmitOptions,
    ) -> Result<Vec<Uuid>> {
        let rows = items
            .into_iter()
            .enumerate()
            .map(|(index, args)| self.prepare_typed(&args, Some(index), &options))
            .collect::<Result<Vec<NewTask>>>()?;
        submit::insert(conn, rows).await
    }

    /// Submits a task by name with JSON arguments: for the CLI, other languages and generic
    /// producers. The name must be registered here; the JSON is decoded into the registered
    /// argument type and validated exactly like a typed submit.
    ///
    /// # Errors
    /// [`Error::UnknownTask`] for a name not registered, [`Error::ArgsMismatch`] when the
    /// JSON does not fit the type, and everything [`submit`](Self::submit) returns.
    pub async fn submit_json(
        &self,
        name: &str,
        args: Value,
        options: SubmitOptions,
    ) -> Result<Uuid> {
        self.submit_json_in(&self.inner.db, name, args, options)
            .await
    }

    /// [`submit_json`](Self::submit_json) inside the caller's transaction.
    ///
    /// # Errors
    /// As [`submit_json`](Self::submit_json).
    pub async fn submit_json_in<C: ConnectionTrait>(
        &self,
        conn: &C,
        name: &str,
        args: Value,
        options: SubmitOptions,
    ) -> Result<Uuid> {
        let registered = self
            .inner
            .registry
            .get(name)
            .ok_or_else(|| Error::UnknownTask {
                name: name.to_owned(),
            })?;
        let args = (registered.check)(name, args)?;
        let info = &registered.info;
        let defaults = TypeDefaults {
            queue: &info.queue,
            max_retries: info.max_retries,
            timeout: info.timeout,
            priority: info.priority,
        };
        let row = submit::prepare(&self.inner.config, name, args, defaults, &options)?;
        submit::insert_one(conn, row).await
    }

    fn prepare_typed<T: Task>(
        &self,
        args: &T,
        index: Option<usize>,
        options: &SubmitOptions,
    ) -> Result<NewTask> {
        args.validate().map_err(|source| Error::InvalidArgs {
            task: T::NAME.to_owned(),
            index,
            source,
        })?;
        let json = serde_json::to_value(args).map_err(|source| Error::Serialize {
            task: T::NAME.to_owned(),
            source,
        })?;
        let defaults = TypeDefaults {
            queue: T::QUEUE,
            max_retries: T::MAX_RETRIES,
            timeout: T::TIMEOUT,
            priority: T::PRIORITY,
        };
        submit::prepare(&self.inner.config, T::NAME, json, defaults, options)
    }

    /// The task with this id, if any.
    ///
    /// # Errors
    /// [`Error::Database`] when the query fails.
    pub async fn get_task(&self, id: Uuid) -> Result<Option<TaskRecord>> {
        query::get(&self.inner.db, id).await
    }

    /// Tasks matching the filter, newest first.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a limit out of range or a tag filter that is not an
    /// object; [`Error::Database`] when the query fails.
    pub async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>> {
        query::list(&self.inner.db, filter).await
    }

    /// How many tasks are in each state.
    ///
    /// # Errors
    /// [`Error::Database`] when the query fails.
    pub async fn count_tasks(&self) -> Result<TaskCounts> {
        query::counts(&self.inner.db).await
    }

    /// Cancels a task: a waiting one at once, a running one by asking its handler (see
    /// [`CancelOutcome`]).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id; [`Error::InvalidState`] when the task already
    /// finished; [`Error::Database`] when the statement fails.
    pub async fn cancel(&self, id: Uuid) -> Result<CancelOutcome> {
        control::cancel(&self.inner.db, id).await
    }

    /// Counts and lag per queue: how many tasks are in each state, and how long the oldest
    /// due pending task has waited.
    ///
    /// # Errors
    /// [`Error::Database`] when the query fails.
    pub async fn queue_status(&self) -> Result<Vec<QueueStatus>> {
        query::queue_status(&self.inner.db).await
    }

    /// Re-queues a task that failed for good or was cancelled: it becomes `pending`, due now,
    /// with its retries restored. The dead-letter workflow: fix the cause, then retry.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id; [`Error::InvalidState`] for a task that is not
    /// failed-for-good or cancelled.
    pub async fn retry(&self, id: Uuid) -> Result<()> {
        control::retry(&self.inner.db, id).await
    }

    /// Re-queues every task that failed for good, optionally only those of one task name
    /// and/or queue; returns how many.
    ///
    /// # Errors
    /// [`Error::Database`] when the statement fails.
    pub async fn retry_failed(&self, name: Option<&str>, queue: Option<&str>) -> Result<u64> {
        control::retry_failed(&self.inner.db, name, queue).await
    }

    /// Deletes finished tasks in `states` whose `completed_at` is older than `older_than`, in
    /// batches of [`PRUNE_BATCH`](crate::PRUNE_BATCH) rows so that no statement holds many
    /// locks; returns how many were deleted. Workers can do this in the background: see
    /// [`TaskWorker::retention`].
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when `states` names pending or running;
    /// [`Error::Database`] when a statement fails.
    pub async fn prune(
        &self,
        states: &[TaskState],
        older_than: std::time::Duration,
    ) -> Result<u64> {
        retention::prune(&self.inner.db, states, older_than).await
    }

    /// Starts an in-process worker pool with `concurrency` slots, serving the queues of every
    /// registered task type. For per-queue slots and other settings, use [`TaskWorker`].
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when no task type is registered or `concurrency` is 0.
    pub fn spawn_workers(&self, concurrency: usize) -> Result<WorkerPool> {
        TaskWorker::new(self).concurrency(concurrency).spawn()
    }
}
