//! Running tasks, whatever the engine: [`TaskWorker`] configures a pool of workers,
//! [`WorkerPool`] is the running handle. The settings are checked here, once; the engine
//! (`crate::engine`) runs the pool they describe.

mod events;
pub(crate) mod lifeline;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::broadcast;

pub use events::{TaskOutcome, WorkerEvent};
pub use lifeline::{DEFAULT_MAX_OUTAGE, PoolFailure};

use crate::config::Config;
use crate::engine::Engine;
use crate::registry::Registry;
use crate::retention::RetentionPolicy;
use crate::{Error, Result};

/// Slots of a pool when none are set.
pub const DEFAULT_CONCURRENCY: usize = 10;
/// Most slots one group may have.
pub const MAX_SLOTS: usize = 10_000;

/// Configures a worker pool: which queues it serves, with how many concurrent tasks.
///
/// ```no_run
/// # async fn run(tasks: tasklib::TaskLib) -> tasklib::Result<()> {
/// use tasklib::TaskWorker;
///
/// // Serve the queues of every registered task type with 8 slots in all,
/// // until SIGINT or SIGTERM, then shut down gracefully.
/// TaskWorker::new(&tasks).concurrency(8).run().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TaskWorker {
    engine: Arc<dyn Engine>,
    registry: Registry,
    config: Config,
    concurrency: usize,
    queues: BTreeMap<String, usize>,
    poll_interval: Option<Duration>,
    shutdown_grace_period: Option<Duration>,
    retention: RetentionPolicy,
    claim_ahead: ClaimAhead,
    max_outage: Duration,
}

/// How many tasks a pool claims beyond its free slots, to start them the moment a slot frees
/// instead of one claim round trip later. Tasks claimed ahead are `running` in the table and
/// held by this pool; those that wait longer than 100 ms (the running tasks turned out slow)
/// go back to the queue, and the pool claims nothing ahead again until as many of its tasks as
/// it has slots have finished. `docs/concepts.md` has the details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClaimAhead {
    /// As many as the pool's slots finish during two claim round trips, measured as it runs,
    /// at most twice the slots: a dozen for no-op tasks, none for tasks that take
    /// tens of milliseconds or more. Each task claimed ahead is marked started by one more
    /// (batched) statement just before it runs, so this costs the database more per task than
    /// it saves in round trips (measured: `docs/performance.md`).
    Measured,
    /// Never: claim only for free slots (up to two claims per queue in flight), so an idle
    /// worker elsewhere can take every task this one cannot start now. The default: the
    /// fastest drain on a durable server, and a claimed task is started by its claim.
    #[default]
    Off,
    /// Always this many (at most [`MAX_SLOTS`]), whatever the tasks' duration.
    Fixed(usize),
}

impl fmt::Debug for TaskWorker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskWorker")
            .field("backend", &self.engine.backend())
            .field("concurrency", &self.concurrency)
            .field("queues", &self.queues)
            .field("poll_interval", &self.poll_interval)
            .field("claim_ahead", &self.claim_ahead)
            .finish_non_exhaustive()
    }
}

/// What a pool is asked to run, checked: the engine's side of [`TaskWorker::spawn`].
#[derive(Debug, Clone)]
pub(crate) struct WorkerPlan {
    /// Queues and the slots they share: each entry is one group of queues with its slots.
    pub(crate) groups: Vec<(Vec<String>, usize)>,
    /// The task names this pool runs (every registered one).
    pub(crate) names: Vec<String>,
    pub(crate) poll_interval: Duration,
    pub(crate) retention: RetentionPolicy,
    pub(crate) claim_ahead: ClaimAhead,
    pub(crate) grace: Duration,
    /// How long the database may stay unreachable before the pool fails.
    pub(crate) max_outage: Duration,
}

impl WorkerPlan {
    /// Slots in all.
    pub(crate) fn total_slots(&self) -> usize {
        self.groups.iter().map(|(_, slots)| slots).sum()
    }
}

impl TaskWorker {
    /// A pool over `engine` for the task types of `registry`, [`DEFAULT_CONCURRENCY`] slots.
    /// [`TaskWorker::new`] is the public way in.
    pub(crate) fn from_parts(engine: Arc<dyn Engine>, registry: Registry, config: Config) -> Self {
        TaskWorker {
            engine,
            registry,
            config,
            concurrency: DEFAULT_CONCURRENCY,
            queues: BTreeMap::new(),
            poll_interval: None,
            shutdown_grace_period: None,
            retention: RetentionPolicy::new(),
            claim_ahead: ClaimAhead::default(),
            max_outage: DEFAULT_MAX_OUTAGE,
        }
    }

    /// Slots shared by the queues not given their own with [`queue`](Self::queue): how many
    /// tasks run at once. At least 1. Defaults to [`DEFAULT_CONCURRENCY`].
    pub fn concurrency(mut self, slots: usize) -> Self {
        self.concurrency = slots;
        self
    }

    /// Serves `queue` with its own `slots`, so a flood in another queue cannot starve it.
    /// Once any queue is named, the pool serves only the named queues.
    pub fn queue(mut self, queue: impl Into<String>, slots: usize) -> Self {
        self.queues.insert(queue.into(), slots);
        self
    }

    /// Overrides [`Config::poll_interval`](crate::Config::poll_interval) for this pool.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = Some(interval);
        self
    }

    /// Overrides [`Config::shutdown_grace_period`](crate::Config::shutdown_grace_period).
    pub fn shutdown_grace_period(mut self, grace: Duration) -> Self {
        self.shutdown_grace_period = Some(grace);
        self
    }

    /// Deletes old finished tasks in the background, in small batches (see
    /// [`RetentionPolicy`]). Several pools may prune the same table: they skip each other's
    /// rows. Defaults to keeping everything.
    pub fn retention(mut self, policy: RetentionPolicy) -> Self {
        self.retention = policy;
        self
    }

    /// How many tasks to claim beyond the free slots (see [`ClaimAhead`]). Defaults to
    /// [`ClaimAhead::Off`].
    pub fn claim_ahead(mut self, claim_ahead: ClaimAhead) -> Self {
        self.claim_ahead = claim_ahead;
        self
    }

    /// How long the pool rides out a database (or, on Celery, a broker) it cannot reach
    /// before it stops with [`PoolFailure::Unreachable`], so that its process exits and a
    /// supervisor starts it afresh. Defaults to [`DEFAULT_MAX_OUTAGE`] (two minutes); a
    /// restart of a few seconds is ridden out either way.
    pub fn max_outage(mut self, limit: Duration) -> Self {
        self.max_outage = limit;
        self
    }

    /// Starts the pool in the background and returns its handle.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when no task type is registered, a slot count is zero, the
    /// poll interval is zero, or [`ClaimAhead::Fixed`] exceeds [`MAX_SLOTS`].
    pub fn spawn(self) -> Result<WorkerPool> {
        let plan = self.plan()?;
        let slots: Vec<String> = plan
            .groups
            .iter()
            .map(|(queues, slots)| format!("{}={slots}", queues.join("+")))
            .collect();
        tracing::info!(
            backend = %self.engine.backend(),
            "Starting TaskWorker {} with concurrency={} ({})",
            self.config.worker_id(),
            plan.total_slots(),
            slots.join(", ")
        );
        let inner = self.engine.spawn_workers(self.registry.clone(), plan)?;
        Ok(WorkerPool {
            inner,
            _registering: self.registry.pool_started(),
        })
    }

    /// Checks the settings and resolves them into the plan an engine runs.
    fn plan(&self) -> Result<WorkerPlan> {
        let infos = self.registry.infos();
        if infos.is_empty() {
            return Err(Error::InvalidConfig {
                field: "worker",
                reason: "no task types are registered: call `register` before starting workers"
                    .to_owned(),
            });
        }
        let poll_interval = self.poll_interval.unwrap_or(self.config.poll_interval());
        if self.retention.every.is_zero() {
            return Err(Error::InvalidConfig {
                field: "retention",
                reason: "the pruning interval must be greater than zero".to_owned(),
            });
        }
        if poll_interval.is_zero() {
            return Err(Error::InvalidConfig {
                field: "poll_interval",
                reason: "must be greater than zero".to_owned(),
            });
        }
        if let ClaimAhead::Fixed(n) = self.claim_ahead
            && n > MAX_SLOTS
        {
            return Err(Error::InvalidConfig {
                field: "claim_ahead",
                reason: format!("must be at most {MAX_SLOTS} tasks, got {n}"),
            });
        }
        // Queue -> slots group. Named queues get their own group; otherwise every queue of a
        // registered type shares one.
        let groups: Vec<(Vec<String>, usize)> = if self.queues.is_empty() {
            let mut queues: Vec<String> = infos.iter().map(|i| i.queue.clone()).collect();
            queues.sort();
            queues.dedup();
            vec![(queues, self.concurrency)]
        } else {
            self.queues
                .iter()
                .map(|(q, n)| (vec![q.clone()], *n))
                .collect()
        };
        if let Some((_, slots)) = groups
            .iter()
            .find(|(_, slots)| *slots == 0 || *slots > MAX_SLOTS)
        {
            return Err(Error::InvalidConfig {
                field: "concurrency",
                reason: format!("must be between 1 and {MAX_SLOTS}, got {slots}"),
            });
        }
        Ok(WorkerPlan {
            groups,
            names: infos.into_iter().map(|i| i.name).collect(),
            poll_interval,
            retention: self.retention.clone(),
            claim_ahead: self.claim_ahead,
            grace: self
                .shutdown_grace_period
                .unwrap_or(self.config.shutdown_grace_period()),
            max_outage: self.max_outage,
        })
    }

    /// Runs the pool until the process receives SIGINT (Ctrl-C) or SIGTERM, then shuts it
    /// down gracefully; or until the pool stops on its own.
    ///
    /// # Errors
    /// As [`spawn`](Self::spawn); [`Error::ShutdownTimeout`] when running tasks outlast
    /// the grace period; [`Error::PoolFailed`] when the pool stopped on its own (see
    /// [`WorkerPool::failed`]): the process should then exit with an error, so that its
    /// supervisor starts it again.
    pub async fn run(self) -> Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Runs the pool until `signal` resolves, then shuts it down gracefully; or until the
    /// pool stops on its own.
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> Result<()> {
        let pool = self.spawn()?;
        let failure = tokio::select! {
            () = signal => {
                tracing::info!("shutdown requested");
                None
            }
            failure = pool.failed() => Some(failure),
        };
        let stopped = pool.shutdown().await;
        match failure {
            Some(failure) => Err(failure),
            None => stopped,
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM: what process managers and Kubernetes
/// send to stop a worker.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

/// Counters of a pool, for metrics and for checking that it neither spins nor stampedes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PoolStats {
    /// Claim statements run.
    pub claim_queries: u64,
    /// Claim statements that found nothing.
    pub empty_claims: u64,
    /// Tasks claimed.
    pub tasks_claimed: u64,
    /// Tasks in flight now: running, or finished with their outcome not yet written (their
    /// rows are still `running`).
    pub running: usize,
    /// Tasks claimed ahead of a free slot, waiting in the pool to start (their rows are
    /// `running` too). Only pools of short tasks claim ahead (`docs/concepts.md` explains
    /// when and how many).
    pub claimed_ahead: usize,
}

/// A running pool, as an engine implements it: the worker half of the engine seam.
pub(crate) trait RunningPool: Send + Sync + fmt::Debug {
    /// The id this pool writes into `worker_id`.
    fn worker_id(&self) -> &str;
    /// Total slots.
    fn concurrency(&self) -> usize;
    /// Counters since the pool started.
    fn stats(&self) -> PoolStats;
    /// Events from now on.
    fn subscribe(&self) -> broadcast::Receiver<WorkerEvent>;
    /// Stops gracefully (see [`WorkerPool::shutdown`]).
    fn shutdown(self: Box<Self>) -> BoxFuture<'static, Result<()>>;
    /// Holds the pool's failure once it has one.
    fn failure(&self) -> tokio::sync::watch::Receiver<Option<PoolFailure>>;
}

/// A running worker pool. [`shutdown`](Self::shutdown) stops it gracefully; dropping the
/// handle stops claiming new tasks and lets running ones finish in the background.
#[derive(Debug)]
pub struct WorkerPool {
    inner: Box<dyn RunningPool>,
    /// Refuses new task types while the pool runs (they would never be served).
    _registering: crate::registry::PoolGuard,
}

impl WorkerPool {
    /// The id this pool writes into `worker_id`.
    pub fn worker_id(&self) -> &str {
        self.inner.worker_id()
    }

    /// Total slots.
    pub fn concurrency(&self) -> usize {
        self.inner.concurrency()
    }

    /// Counters since the pool started.
    pub fn stats(&self) -> PoolStats {
        self.inner.stats()
    }

    /// Events from now on. A slow receiver that falls more than 1024 events behind skips
    /// the oldest (and is told so by `RecvError::Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<WorkerEvent> {
        self.inner.subscribe()
    }

    /// Resolves when the pool stops on its own, with why ([`Error::PoolFailed`]): a part of
    /// it panicked or ended (a bug in tasklib), or the database (on Celery, the broker) could
    /// not be reached for longer than [`TaskWorker::max_outage`]. It never resolves while the
    /// pool works, nor because of [`shutdown`](Self::shutdown). A pool that failed claims
    /// nothing more; call `shutdown` to wait for the tasks it was running, then exit with an
    /// error so that a supervisor (systemd, Kubernetes) starts the worker again.
    ///
    /// ```no_run
    /// # async fn example(tasks: tasklib::TaskLib) -> tasklib::Result<()> {
    /// let pool = tasklib::TaskWorker::new(&tasks).spawn()?;
    /// let failure = tokio::select! {
    ///     () = tasklib::shutdown_signal() => None,
    ///     failure = pool.failed() => Some(failure),
    /// };
    /// let stopped = pool.shutdown().await;
    /// match failure {
    ///     Some(failure) => Err(failure), // exit non-zero
    ///     None => stopped,
    /// }
    /// # }
    /// ```
    pub async fn failed(&self) -> Error {
        let mut failure = self.inner.failure();
        loop {
            if let Some(failure) = failure.borrow_and_update().clone() {
                return Error::PoolFailed(failure);
            }
            if failure.changed().await.is_err() {
                // The pool is gone without failing: never.
                return std::future::pending().await;
            }
        }
    }

    /// Stops claiming, waits up to the grace period for running tasks, and stops.
    ///
    /// Tasks claimed but not yet started go back to the queue. Tasks still running at the
    /// deadline are abandoned: their rows stay `running` until their lock expires, then
    /// another worker rescues and retries them.
    ///
    /// # Errors
    /// [`Error::ShutdownTimeout`] when tasks were still running at the deadline.
    pub async fn shutdown(self) -> Result<()> {
        let WorkerPool {
            inner,
            _registering,
        } = self;
        inner.shutdown().await
    }
}
