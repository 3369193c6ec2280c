//! [`TaskLib`]: the handle an application keeps. A thin facade: it checks input and options
//! (the same on every engine) and hands the rest to the engine.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::Value;
use uuid::Uuid;

use crate::backend::{BackendConfig, BackendType, Capabilities, Capability};
use crate::chain::{Chain, ChainIds, NewChain, StepArgs};
use crate::config::Config;
use crate::control::CancelOutcome;
use crate::engine::Engine;
use crate::engine::postgres::{PgEngine, admin, insert, migrate, read, schedules};
use crate::handler::{BlockingHandler, Handler};
use crate::limits::QueueLimits;
use crate::metrics::Submitting;
use crate::query::{QueueStatus, TaskCounts, TaskFilter};
use crate::record::TaskRecord;
use crate::registry::{Registry, TaskInfo};
use crate::result::TaskResult;
use crate::schedule::{Schedule, ScheduleInfo};
use crate::submit::{self, NewTask, OwnedDefaults, SubmitOptions, TypeDefaults};
use crate::task::Task;
use crate::unique::Submitted;
use crate::worker::{TaskWorker, WorkerPool};
use crate::{Error, Result, TaskState};

/// The handle to tasklib: register task types, submit tasks, read their results.
///
/// The same calls work on every engine ([`BackendType`]); PostgreSQL, the default, also has
/// transactional submit, listing and the admin operations. Cheap to clone (it is an `Arc`):
/// keep one in your application state and clone it where needed.
#[derive(Clone)]
pub struct TaskLib {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Arc<dyn Engine>,
    config: Config,
    registry: Registry,
}

impl fmt::Debug for TaskLib {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskLib")
            .field("backend", &self.inner.engine.backend())
            .field("config", &self.inner.config)
            .field("registry", &self.inner.registry)
            .finish_non_exhaustive()
    }
}

impl TaskLib {
    /// Connects to PostgreSQL with every setting at its default, and applies pending
    /// migrations.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an empty URL, [`Error::Connect`] when the database cannot be
    /// reached, [`Error::Migration`] when migrating fails.
    pub async fn connect(database_url: &str) -> Result<TaskLib> {
        Self::connect_with(Config::builder(database_url).build()?).await
    }

    /// Connects to the engine the environment chooses (`TASK_BACKEND_TYPE`, PostgreSQL by
    /// default) with the settings it gives (see [`ConfigBuilder::from_vars`](crate::ConfigBuilder::from_vars)).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when a variable is missing or wrong, and everything
    /// [`connect_with`](Self::connect_with) returns.
    pub async fn from_env() -> Result<TaskLib> {
        Self::connect_with(Config::from_env()?).await
    }

    /// Connects to the engine of `config`; on PostgreSQL, applies pending migrations unless
    /// [`run_migrations`](crate::ConfigBuilder::run_migrations) is off.
    ///
    /// # Errors
    /// [`Error::BackendNotCompiled`] when the engine's cargo feature is off,
    /// [`Error::BackendUnsupported`] for Hatchet; otherwise as [`connect`](Self::connect).
    pub async fn connect_with(config: Config) -> Result<TaskLib> {
        config.backend().ensure_available()?;
        let engine: Arc<dyn Engine> = match config.backend() {
            BackendType::Postgres => Arc::new(PgEngine::connect(&config).await?),
            #[cfg(feature = "celery")]
            BackendType::Celery => {
                Arc::new(crate::engine::celery::CeleryEngine::connect(&config).await?)
            }
            #[cfg(feature = "temporal")]
            BackendType::Temporal => {
                Arc::new(crate::engine::temporal::TemporalEngine::connect(&config).await?)
            }
            other => {
                // `ensure_available` lets only compiled-in engines through.
                return Err(Error::BackendNotCompiled {
                    backend: other,
                    feature: other.cargo_feature().unwrap_or("none"),
                });
            }
        };
        Ok(TaskLib {
            inner: Arc::new(Inner {
                engine,
                config,
                registry: Registry::default(),
            }),
        })
    }

    /// A `TaskLib` connected to nothing, on which task types can be registered and listed
    /// (for a worker command's `--help`); everything else is refused.
    #[cfg(feature = "cli")]
    pub(crate) fn detached(config: Config) -> TaskLib {
        TaskLib {
            inner: Arc::new(Inner {
                engine: Arc::new(crate::engine::detached::Detached {
                    backend: config.backend(),
                }),
                config,
                registry: Registry::default(),
            }),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The engine in use.
    pub fn backend_type(&self) -> BackendType {
        self.inner.engine.backend()
    }

    /// The engine and its settings, secrets redacted.
    pub fn backend_config(&self) -> BackendConfig {
        self.inner.config.backend_config()
    }

    /// What the engine in use honours; submits that ask for more are refused.
    pub fn capabilities(&self) -> Capabilities {
        self.inner.engine.capabilities()
    }

    /// The PostgreSQL engine, for what only it can do.
    pub(crate) fn postgres(&self, capability: Capability) -> Result<&PgEngine> {
        self.inner
            .engine
            .postgres()
            .ok_or_else(|| Error::Unsupported {
                backend: self.backend_type(),
                capability,
            })
    }

    /// The connection pool, to share with the application's own SeaORM code (and to open the
    /// transactions that [`submit_in`](Self::submit_in) takes). PostgreSQL only.
    ///
    /// Behind a [transaction pooler](crate::ConfigBuilder::transaction_pooler) this pool
    /// caches no prepared statements, but sqlx still names the ones it sends: only a pooler
    /// that keeps named statements working (PgBouncer 1.21 and later with
    /// `max_prepared_statements`) runs the application's statements safely through it.
    /// tasklib's own statements do not depend on that.
    ///
    /// # Errors
    /// [`Error::Unsupported`] on other engines.
    pub fn db(&self) -> Result<&DatabaseConnection> {
        Ok(self
            .postgres(Capability::TransactionalSubmit)?
            .db()
            .connection())
    }

    /// Applies pending migrations (see [`migrate()`](crate::migrate())) to the configured
    /// [schema](crate::ConfigBuilder::schema), creating it if missing; the names of those this
    /// call applied (none when another instance was first). PostgreSQL only.
    ///
    /// # Errors
    /// [`Error::Migration`] when migrating fails; [`Error::Unsupported`] on other engines.
    pub async fn migrate(&self) -> Result<Vec<String>> {
        let pg = self.postgres(Capability::TransactionalSubmit)?;
        migrate::apply(pg.db(), Some(self.inner.config.schema())).await
    }

    /// Registers the async handler for task type `T`. Register every type before starting
    /// workers: a worker runs only the names registered when it starts.
    ///
    /// # Errors
    /// [`Error::DuplicateTask`] when `T::NAME` is already registered;
    /// [`Error::RegisteredWhileRunning`] while a worker pool of this `TaskLib` runs.
    pub fn register<T: Task, H: Handler<T>>(&self, handler: H) -> Result<()> {
        self.inner.registry.register::<T, H>(handler)
    }

    /// Registers a synchronous handler for task type `T`, run on the blocking thread pool.
    ///
    /// # Errors
    /// As [`register`](Self::register).
    pub fn register_blocking<T: Task, H: BlockingHandler<T>>(&self, handler: H) -> Result<()> {
        self.inner.registry.register_blocking::<T, H>(handler)
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
    /// input the engine cannot take, [`Error::Unsupported`] for an option the engine cannot
    /// honour — in all these cases nothing is written — and [`Error::Database`] when the
    /// write fails.
    pub async fn submit<T: Task>(&self, args: T) -> Result<Uuid> {
        self.submit_with(args, SubmitOptions::new()).await
    }

    /// Validates `args` and submits a task with the given options.
    ///
    /// # Errors
    /// As [`submit`](Self::submit).
    pub async fn submit_with<T: Task>(&self, args: T, options: SubmitOptions) -> Result<Uuid> {
        Ok(self.submit_unique(args, options).await?.id)
    }

    /// [`submit_with`](Self::submit_with), telling whether the task was a duplicate: with a
    /// unique key ([`SubmitOptions::unique_key`] or [`Task::unique_key`]) in scope, nothing
    /// is written and the existing task's id comes back with `duplicate: true`.
    ///
    /// ```no_run
    /// # use serde::{Deserialize, Serialize};
    /// # use validator::Validate;
    /// # #[derive(Debug, Serialize, Deserialize, Validate)] struct Reindex { index: String }
    /// # impl tasklib::Task for Reindex { const NAME: &'static str = "reindex"; type Output = (); }
    /// use tasklib::{SubmitOptions, TaskLib};
    ///
    /// # async fn run(tasks: &TaskLib) -> tasklib::Result<()> {
    /// let options = SubmitOptions::new().unique_key("products");
    /// let first = tasks.submit_unique(Reindex { index: "products".into() }, options.clone()).await?;
    /// let again = tasks.submit_unique(Reindex { index: "products".into() }, options).await?;
    /// assert!(again.duplicate && again.id == first.id);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`submit`](Self::submit); [`Error::Unsupported`] for a unique key on an engine
    /// without unique tasks; [`Error::InvalidOption`] for an empty or over-long key.
    pub async fn submit_unique<T: Task>(
        &self,
        args: T,
        options: SubmitOptions,
    ) -> Result<Submitted> {
        let row = self.prepare_typed(&args, None, &options)?;
        self.submit_one(row).await
    }

    /// Submits inside the caller's transaction (or through any SeaORM connection): the task
    /// exists only if that transaction commits, and workers are notified only then.
    /// PostgreSQL only.
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
    /// let txn = tasks.db()?.begin().await?;
    /// // ... insert the user with `txn` ...
    /// tasks.submit_in(&txn, Welcome { user_id: 42 }, SubmitOptions::new()).await?;
    /// txn.commit().await?; // the task and the user appear together, or neither does
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`submit`](Self::submit); [`Error::Unsupported`] on other engines.
    pub async fn submit_in<C: ConnectionTrait, T: Task>(
        &self,
        conn: &C,
        args: T,
        options: SubmitOptions,
    ) -> Result<Uuid> {
        let pg = self.postgres(Capability::TransactionalSubmit)?;
        let row = self.prepare_typed(&args, None, &options)?;
        let counting = Submitting::of(std::slice::from_ref(&row));
        let submitted = insert::insert_one(conn, pg.inserts(), row).await?;
        counting.done(std::slice::from_ref(&submitted));
        Ok(submitted.id)
    }

    /// Validates every item, then submits them all at once: all or nothing. The options apply
    /// to every item. On PostgreSQL this is one statement, and workers get one notification
    /// per queue, not one per task.
    ///
    /// # Errors
    /// As [`submit`](Self::submit); validation errors carry the index of the first invalid
    /// item, and nothing is written.
    pub async fn submit_many<T: Task>(
        &self,
        items: impl IntoIterator<Item = T>,
        options: SubmitOptions,
    ) -> Result<Vec<Uuid>> {
        let rows = self.prepare_many(items, &options)?;
        self.submit_rows(rows).await
    }

    /// [`submit_many`](Self::submit_many) inside the caller's transaction. PostgreSQL only.
    ///
    /// # Errors
    /// As [`submit_many`](Self::submit_many); [`Error::Unsupported`] on other engines.
    pub async fn submit_many_in<C: ConnectionTrait, T: Task>(
        &self,
        conn: &C,
        items: impl IntoIterator<Item = T>,
        options: SubmitOptions,
    ) -> Result<Vec<Uuid>> {
        let pg = self.postgres(Capability::TransactionalSubmit)?;
        let rows = self.prepare_many(items, &options)?;
        let counting = Submitting::of(&rows);
        let submitted = insert::insert(conn, pg.inserts(), rows).await?;
        counting.done(&submitted);
        Ok(submitted.into_iter().map(|s| s.id).collect())
    }

    /// Submits a task by name with JSON arguments: for the CLI, other languages and generic
    /// producers. The arguments are an object, or an array of positional arguments mapped
    /// onto the argument type's fields in their declared order (`["a@b.c", "Hi"]` for
    /// `{to, subject}`). The name must be registered here; the JSON is decoded into the
    /// registered type and validated exactly like a typed submit.
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
        let row = self.prepare_json(name, args, &options)?;
        Ok(self.submit_one(row).await?.id)
    }

    /// Submits task `name` whether or not this program registered it: for producers that
    /// do not link the task code (the admin CLI, a service in another language's stead).
    ///
    /// A registered name goes through [`submit_json`](Self::submit_json): decoded into its
    /// type, validated, the type's defaults applied. Any other name is written as given:
    /// `args` is an object, or an array of positional arguments that the worker maps onto the
    /// fields of the type it registered, in their declared order. The worker checks and
    /// validates them when it runs the task; arguments that do not fit fail the task for
    /// good, with the reason as its error. The queue, priority, retries and timeout come from
    /// the options, else [`DEFAULT_QUEUE`](crate::DEFAULT_QUEUE) and the configuration (the
    /// type's own defaults are not known here).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for an empty name, or arguments that are neither an object
    /// nor an array; otherwise as [`submit_json`](Self::submit_json). Nothing is written on
    /// error.
    pub async fn submit_by_name(
        &self,
        name: &str,
        args: Value,
        options: SubmitOptions,
    ) -> Result<Uuid> {
        Ok(self.submit_by_name_unique(name, args, options).await?.id)
    }

    /// [`submit_by_name`](Self::submit_by_name), telling whether the task was a duplicate of
    /// one holding the same unique key (see [`submit_unique`](Self::submit_unique)).
    ///
    /// # Errors
    /// As [`submit_by_name`](Self::submit_by_name).
    pub async fn submit_by_name_unique(
        &self,
        name: &str,
        args: Value,
        options: SubmitOptions,
    ) -> Result<Submitted> {
        if name.trim().is_empty() {
            return Err(Error::InvalidOption {
                option: "name",
                reason: "must not be empty".to_owned(),
            });
        }
        if self.inner.registry.get(name).is_some() {
            let row = self.prepare_json(name, args, &options)?;
            return self.submit_one(row).await;
        }
        if !(args.is_object() || args.is_array()) {
            return Err(Error::InvalidOption {
                option: "args",
                reason: format!("must be a JSON object or array, got {args}"),
            });
        }
        let row = self.prepare_row(name, args, TypeDefaults::untyped(), &options, None)?;
        self.submit_one(row).await
    }

    /// [`submit_json`](Self::submit_json) inside the caller's transaction. PostgreSQL only.
    ///
    /// # Errors
    /// As [`submit_json`](Self::submit_json); [`Error::Unsupported`] on other engines.
    pub async fn submit_json_in<C: ConnectionTrait>(
        &self,
        conn: &C,
        name: &str,
        args: Value,
        options: SubmitOptions,
    ) -> Result<Uuid> {
        let pg = self.postgres(Capability::TransactionalSubmit)?;
        let row = self.prepare_json(name, args, &options)?;
        let counting = Submitting::of(std::slice::from_ref(&row));
        let submitted = insert::insert_one(conn, pg.inserts(), row).await?;
        counting.done(std::slice::from_ref(&submitted));
        Ok(submitted.id)
    }

    /// Submits every step of a [`Chain`] at once (all or nothing) and returns the chain's id
    /// and each step's, all known now. The first step is due as its options say; each later
    /// step runs once the step before it completes, fed its output ([`Chain`] has the rule).
    ///
    /// # Errors
    /// As [`submit`](Self::submit) for each step (the error names the step's index);
    /// [`Error::InvalidOption`] for a delay on a step after the first;
    /// [`Error::UnknownTask`] for a by-name step that is not registered;
    /// [`Error::Unsupported`] when the engine has no chains.
    pub async fn submit_chain(&self, chain: Chain) -> Result<ChainIds> {
        self.capabilities()
            .require(self.backend_type(), Capability::Chains)?;
        if let Some(error) = chain.error {
            return Err(error);
        }
        let mut steps = Vec::with_capacity(chain.steps.len());
        for (index, step) in chain.steps.into_iter().enumerate() {
            if index > 0 && step.options.is_delayed() {
                return Err(Error::InvalidOption {
                    option: "delay",
                    reason: format!(
                        "step {index} of the chain starts when the step before it completes; \
                         only the first step takes a delay"
                    ),
                });
            }
            // Typed steps carry their defaults and were checked when built; by-name steps take
            // both from the registry (a first step's whole arguments are checked here).
            let (defaults, args, type_key) = match step.defaults {
                Some(defaults) => (defaults, step.args.into_value(), step.type_key),
                None => {
                    let registered = self.registered(&step.name)?;
                    let (args, key) = match step.args {
                        StepArgs::Whole(args) => (registered.check)(&step.name, args)?,
                        extra => (extra.into_value(), None),
                    };
                    (OwnedDefaults::of_info(&registered.info), args, key)
                }
            };
            let row = self.prepare_row(
                &step.name,
                args,
                defaults.borrowed(),
                &step.options,
                type_key,
            )?;
            if row.unique.is_some() {
                return Err(Error::InvalidOption {
                    option: "unique_key",
                    reason: format!(
                        "step {index} of the chain has a unique key: chain steps cannot be \
                         unique (submit a unique task that starts the chain instead)"
                    ),
                });
            }
            steps.push(row);
        }
        let chain = NewChain {
            id: Uuid::now_v7(),
            steps,
        };
        let counting = Submitting::of(&chain.steps);
        let ids = self.inner.engine.submit_chain(chain).await?;
        let steps: Vec<Submitted> = ids.steps.iter().map(|&id| Submitted::new(id)).collect();
        counting.done(&steps);
        Ok(ids)
    }

    /// The result of a task or a chain: its status, and its value or error. For a chain, the
    /// last step's result, or the first step that failed or was cancelled.
    ///
    /// # Errors
    /// [`Error::NotFound`] when no task or chain has this id (check with
    /// [`Error::is_not_found`]); [`Error::Database`] when the query fails.
    pub async fn get_result(&self, id: Uuid) -> Result<TaskResult> {
        self.inner
            .engine
            .result(id)
            .await?
            .ok_or(Error::NotFound { id })
    }

    /// Waits until a task or a chain is finished (completed, failed for good, or cancelled)
    /// and returns its result. On PostgreSQL the wait is woken by a notification when the
    /// task finishes, and checks again every [`poll_interval`](crate::Config::poll_interval)
    /// in case a notification was lost.
    ///
    /// # Errors
    /// [`Error::WaitTimeout`] when `timeout` passes first (the task goes on;
    /// [`Error::is_timeout`]); [`Error::NotFound`] for an unknown id; [`Error::Database`]
    /// when a query fails.
    pub async fn wait_result(&self, id: Uuid, timeout: Duration) -> Result<TaskResult> {
        self.inner.engine.wait_result(id, timeout).await
    }

    /// The task with this id, if any: every stored fact about it. PostgreSQL only.
    ///
    /// # Errors
    /// [`Error::Database`] when the query fails; [`Error::Unsupported`] on other engines.
    pub async fn get_task(&self, id: Uuid) -> Result<Option<TaskRecord>> {
        read::get(self.postgres(Capability::List)?.db(), id).await
    }

    /// Tasks matching the filter, newest first. PostgreSQL only.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a limit out of range or a tag filter that is not an
    /// object; [`Error::Database`] when the query fails; [`Error::Unsupported`] on other
    /// engines.
    pub async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>> {
        read::list(self.postgres(Capability::List)?.db(), filter).await
    }

    /// How many tasks are in each state. PostgreSQL only.
    ///
    /// # Errors
    /// [`Error::Database`] when the query fails; [`Error::Unsupported`] on other engines.
    pub async fn count_tasks(&self) -> Result<TaskCounts> {
        read::counts(self.postgres(Capability::List)?.db()).await
    }

    /// Cancels a task: a waiting one at once, a running one by asking its handler (see
    /// [`CancelOutcome`]). Given a chain's id, cancels the chain from its first unfinished
    /// step on; cancelling one step of a chain cancels the steps after it.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id; [`Error::InvalidState`] when the task already
    /// finished; [`Error::Database`] when the statement fails; [`Error::Unsupported`] when
    /// the engine cannot cancel.
    pub async fn cancel(&self, id: Uuid) -> Result<CancelOutcome> {
        self.capabilities()
            .require(self.backend_type(), Capability::Cancel)?;
        self.inner.engine.cancel(id).await
    }

    /// Counts and lag per queue: how many tasks are in each state, and how long the oldest
    /// due pending task has waited. PostgreSQL only.
    ///
    /// # Errors
    /// [`Error::Database`] when the query fails; [`Error::Unsupported`] on other engines.
    pub async fn queue_status(&self) -> Result<Vec<QueueStatus>> {
        read::queue_status(self.postgres(Capability::List)?.db()).await
    }

    /// Re-queues a task that failed for good or was cancelled: it becomes `pending`, due now,
    /// with its retries restored. The dead-letter workflow: fix the cause, then retry.
    /// PostgreSQL only.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id; [`Error::InvalidState`] for a task that is not
    /// failed-for-good or cancelled; [`Error::Unsupported`] on other engines.
    pub async fn retry(&self, id: Uuid) -> Result<()> {
        admin::retry(self.postgres(Capability::Admin)?.db(), id, false).await
    }

    /// Runs a finished task again, whatever its outcome: as [`retry`](Self::retry), and a
    /// completed task too (its result and progress are cleared; a chain step runs again
    /// alone, the steps after it keep what they did). PostgreSQL only.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id; [`Error::InvalidState`] for a task that has not
    /// finished (pending, running, or waiting for a retry); [`Error::Unsupported`] on other
    /// engines.
    pub async fn rerun(&self, id: Uuid) -> Result<()> {
        admin::retry(self.postgres(Capability::Admin)?.db(), id, true).await
    }

    /// Pauses queue `queue` across the cluster: it keeps taking submits, and no worker starts
    /// any of its tasks until [`resume_queue`](Self::resume_queue); tasks already running
    /// finish. Persisted in the database (table `tasklib_queues`), so it holds for pools that
    /// start later and across restarts. Every pool hears of it through a notification at
    /// once (within a heartbeat, `lock_timeout / 3`, when it has no listening connection).
    /// Pausing a paused queue, or one with no task yet, is fine. PostgreSQL only.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for an empty name; [`Error::Database`] when the write fails;
    /// [`Error::Unsupported`] on other engines.
    pub async fn pause_queue(&self, queue: &str) -> Result<()> {
        admin::set_paused(self.postgres(Capability::Admin)?.db(), queue, true).await
    }

    /// Resumes a paused queue: its tasks run again, at once. Resuming a queue that is not
    /// paused does nothing. PostgreSQL only.
    ///
    /// # Errors
    /// As [`pause_queue`](Self::pause_queue).
    pub async fn resume_queue(&self, queue: &str) -> Result<()> {
        admin::set_paused(self.postgres(Capability::Admin)?.db(), queue, false).await
    }

    /// Sets the cluster-wide limits of queue `queue`, replacing any it had
    /// ([`QueueLimits::new()`] removes them): at most so many of its tasks running at once,
    /// and at most so many started per period, counted over every worker process. Persisted in
    /// the database (`tasklib_queues`) and heard by every pool through a notification at once
    /// (or within a heartbeat). Claims of a limited queue take turns across the cluster and
    /// claim no tasks ahead; queues without limits pay nothing. PostgreSQL only.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use tasklib::{QueueLimits, RateLimit, TaskLib};
    ///
    /// # async fn run(tasks: &TaskLib) -> tasklib::Result<()> {
    /// // The partner's API takes 10 requests at a time and 600 a minute.
    /// let limits = QueueLimits::new()
    ///     .concurrency(10)
    ///     .rate(RateLimit::new(600, Duration::from_secs(60)));
    /// tasks.set_queue_limits("partner-api", limits).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for an empty name, a count of 0 or a period under a second;
    /// [`Error::Database`] when the write fails; [`Error::Unsupported`] on other engines.
    pub async fn set_queue_limits(&self, queue: &str, limits: QueueLimits) -> Result<()> {
        limits.check()?;
        admin::set_limits(self.postgres(Capability::Admin)?.db(), queue, limits).await
    }

    /// Deletes a task in any state but running; given a chain's id, every step of the chain
    /// (if none is running). Returns how many rows went. PostgreSQL only.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id; [`Error::InvalidState`] for a running task (cancel
    /// it first) or a single step of a chain (delete the chain by its id);
    /// [`Error::Unsupported`] on other engines.
    pub async fn delete(&self, id: Uuid) -> Result<u64> {
        admin::delete(self.postgres(Capability::Admin)?.db(), id).await
    }

    /// Re-queues every task that failed for good, optionally only those of one task name
    /// and/or queue; returns how many. PostgreSQL only.
    ///
    /// # Errors
    /// [`Error::Database`] when the statement fails; [`Error::Unsupported`] on other engines.
    pub async fn retry_failed(&self, name: Option<&str>, queue: Option<&str>) -> Result<u64> {
        admin::retry_failed(self.postgres(Capability::Admin)?.db(), name, queue).await
    }

    /// Deletes finished tasks in `states` whose `completed_at` is older than `older_than`, in
    /// batches of [`PRUNE_BATCH`](crate::PRUNE_BATCH) rows so that no statement holds many
    /// locks; returns how many were deleted. Workers can do this in the background: see
    /// [`TaskWorker::retention`]. PostgreSQL only.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when `states` names pending or running;
    /// [`Error::Database`] when a statement fails; [`Error::Unsupported`] on other engines.
    pub async fn prune(&self, states: &[TaskState], older_than: Duration) -> Result<u64> {
        admin::prune(self.postgres(Capability::Admin)?.db(), states, older_than).await
    }

    /// Registers a recurring task: every worker pool this `TaskLib` starts from now on runs
    /// the schedule, and submits its task at each tick. Any number of processes may run the
    /// same schedule (the same name): each tick submits exactly one task. A process that
    /// runs no worker pool runs no schedule. Register every schedule before starting
    /// workers. PostgreSQL only.
    ///
    /// The schedule's definition is written to the table `tasklib_schedules` when a pool
    /// starts, for [`list_schedules`](Self::list_schedules) and `tasklib schedules`.
    /// `docs/concepts.md` ("Recurring tasks (cron)") has the rules: the database's clock,
    /// missed ticks, time zones.
    ///
    /// # Errors
    /// [`Error::Unsupported`] on an engine without schedules (checked first, before
    /// anything else); the errors of [`submit`](Self::submit) for the schedule's arguments
    /// and options (a delay is refused: the task is due at its tick);
    /// [`Error::InvalidOption`] for a schedule without [`args`](crate::Schedule::args);
    /// [`Error::DuplicateSchedule`] for a name already registered here;
    /// [`Error::ScheduledWhileRunning`] while a worker pool of this `TaskLib` runs.
    pub fn schedule(&self, schedule: Schedule) -> Result<()> {
        self.capabilities()
            .require(self.backend_type(), Capability::Schedules)?;
        let recurring = schedule.into_recurring(|name, args, defaults, options, key| {
            self.prepare_row(name, args, defaults.borrowed(), options, key)
        })?;
        self.inner.registry.add_schedule(recurring)
    }

    /// The schedules registered on this `TaskLib`, by name.
    #[cfg(feature = "cli")]
    pub(crate) fn registered_schedules(&self) -> Vec<Arc<crate::schedule::Recurring>> {
        self.inner.registry.schedules()
    }

    /// The schedules the database knows (those some worker pool registered), by name, with
    /// their latest tick and the next one. PostgreSQL only.
    ///
    /// # Errors
    /// [`Error::Database`] when the query fails; [`Error::Unsupported`] on other engines.
    pub async fn list_schedules(&self) -> Result<Vec<ScheduleInfo>> {
        schedules::list(self.postgres(Capability::Schedules)?.db()).await
    }

    /// Starts an in-process worker pool with `concurrency` slots, serving the queues of every
    /// registered task type. For per-queue slots and other settings, use [`TaskWorker`].
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when no task type is registered or `concurrency` is 0.
    pub fn spawn_workers(&self, concurrency: usize) -> Result<WorkerPool> {
        TaskWorker::new(self).concurrency(concurrency).spawn()
    }

    async fn submit_rows(&self, rows: Vec<NewTask>) -> Result<Vec<Uuid>> {
        let counting = Submitting::of(&rows);
        let submitted = self.inner.engine.submit(rows).await?;
        counting.done(&submitted);
        Ok(submitted.into_iter().map(|s| s.id).collect())
    }

    async fn submit_one(&self, row: NewTask) -> Result<Submitted> {
        let rows = vec![row];
        let counting = Submitting::of(&rows);
        let submitted = self.inner.engine.submit(rows).await?;
        counting.done(&submitted);
        submitted
            .into_iter()
            .next()
            .ok_or(Error::Database(sea_orm::DbErr::RecordNotInserted))
    }

    fn registered(&self, name: &str) -> Result<crate::registry::Registered> {
        self.inner
            .registry
            .get(name)
            .ok_or_else(|| Error::UnknownTask {
                name: name.to_owned(),
            })
    }

    fn prepare_json(&self, name: &str, args: Value, options: &SubmitOptions) -> Result<NewTask> {
        let registered = self.registered(name)?;
        let (args, key) = (registered.check)(name, args)?;
        self.prepare_row(
            name,
            args,
            TypeDefaults::of_info(&registered.info),
            options,
            key,
        )
    }

    fn prepare_many<T: Task>(
        &self,
        items: impl IntoIterator<Item = T>,
        options: &SubmitOptions,
    ) -> Result<Vec<NewTask>> {
        items
            .into_iter()
            .enumerate()
            .map(|(index, args)| self.prepare_typed(&args, Some(index), options))
            .collect()
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
        self.prepare_row(
            T::NAME,
            json,
            TypeDefaults::of::<T>(),
            options,
            args.unique_key(),
        )
    }

    /// The checks every submit shares: what the engine honours, then the row's own.
    fn prepare_row(
        &self,
        name: &str,
        args: Value,
        defaults: TypeDefaults<'_>,
        options: &SubmitOptions,
        type_key: Option<String>,
    ) -> Result<NewTask> {
        submit::check_capabilities(
            self.backend_type(),
            self.capabilities(),
            defaults,
            options,
            type_key.as_deref(),
        )?;
        submit::prepare(&self.inner.config, name, args, defaults, options, type_key)
    }
}

impl TaskWorker {
    /// A pool for `tasks`'s registered task types, on its engine,
    /// [`DEFAULT_CONCURRENCY`](crate::DEFAULT_CONCURRENCY) slots.
    pub fn new(tasks: &TaskLib) -> Self {
        TaskWorker::from_parts(
            Arc::clone(&tasks.inner.engine),
            tasks.inner.registry.clone(),
            tasks.inner.config.clone(),
        )
    }
}
