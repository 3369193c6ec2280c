//! The worker pool: [`TaskWorker`] configures one, [`WorkerPool`] is the running handle.
//!
//! Inside a pool: one [listener](listener) connection wakes one [producer](producer) per
//! queue; producers claim tasks for their free slots and start an [executor](executor) for
//! each; the [completer](completer) writes outcomes, fenced by worker id and attempt;
//! [maintenance] extends locks of running tasks and rescues tasks of dead workers.

mod batcher;
mod completer;
mod events;
mod executor;
mod listener;
mod maintenance;
mod pace;
mod pool;
mod producer;
mod sql;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, broadcast, watch};
use tokio::task::JoinHandle;

pub use events::{TaskOutcome, WorkerEvent};
pub use listener::{CANCEL_CHANNEL, NEW_TASKS_CHANNEL};

use crate::client::TaskLib;
use crate::retention::RetentionPolicy;
use crate::retry::BackoffPolicy;
use crate::{Error, Result};
use pool::{PoolShared, QueueState, SlotGroup};

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
#[derive(Debug, Clone)]
pub struct TaskWorker {
    tasks: TaskLib,
    concurrency: usize,
    queues: BTreeMap<String, usize>,
    poll_interval: Option<Duration>,
    shutdown_grace_period: Option<Duration>,
    retention: RetentionPolicy,
    claim_ahead: ClaimAhead,
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
    /// tens of milliseconds or more. The default.
    #[default]
    Measured,
    /// Never: claim only for free slots, so an idle worker elsewhere can take every task
    /// this one cannot start now.
    Off,
    /// Always this many (at most [`MAX_SLOTS`]), whatever the tasks' duration.
    Fixed(usize),
}

impl TaskWorker {
    /// A pool for `tasks`'s registered task types, [`DEFAULT_CONCURRENCY`] slots.
    pub fn new(tasks: &TaskLib) -> Self {
        TaskWorker {
            tasks: tasks.clone(),
            concurrency: DEFAULT_CONCURRENCY,
            queues: BTreeMap::new(),
            poll_interval: None,
            shutdown_grace_period: None,
            retention: RetentionPolicy::new(),
            claim_ahead: ClaimAhead::default(),
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
    /// [`ClaimAhead::Measured`].
    pub fn claim_ahead(mut self, claim_ahead: ClaimAhead) -> Self {
        self.claim_ahead = claim_ahead;
        self
    }

    /// Starts the pool in the background and returns its handle.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when no task type is registered, a slot count is zero, the
    /// poll interval is zero, or [`ClaimAhead::Fixed`] exceeds [`MAX_SLOTS`].
    pub fn spawn(self) -> Result<WorkerPool> {
        let config = self.tasks.config();
        let infos = self.tasks.get_registered_tasks();
        if infos.is_empty() {
            return Err(Error::InvalidConfig {
                field: "worker",
                reason: "no task types are registered: call `register` before starting workers"
                    .to_owned(),
            });
        }
        let poll_interval = self.poll_interval.unwrap_or(config.poll_interval());
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
        let total_slots: usize = groups.iter().map(|(_, slots)| slots).sum();
        let mut queues = HashMap::new();
        for (names, slots) in groups {
            if slots == 0 || slots > MAX_SLOTS {
                return Err(Error::InvalidConfig {
                    field: "concurrency",
                    reason: format!("must be between 1 and {}, got {slots}", MAX_SLOTS),
                });
            }
            let freed: Vec<Arc<Notify>> = names.iter().map(|_| Arc::new(Notify::new())).collect();
            let group = Arc::new(SlotGroup {
                slots: Arc::new(Semaphore::new(slots)),
                capacity: slots,
                freed: freed.clone(),
            });
            for (name, slot_freed) in names.into_iter().zip(freed) {
                queues.insert(
                    name.clone(),
                    Arc::new(QueueState {
                        name,
                        wake: Notify::new(),
                        group: Arc::clone(&group),
                        slot_freed,
                        finished: Default::default(),
                    }),
                );
            }
        }
        // Outcomes waiting to be written: a bound on memory, and room for large batches
        // (twice the slots starved the writer: docs/performance.md).
        let unwritten = Arc::new(Semaphore::new(total_slots.saturating_mul(4)));
        let (events, _) = broadcast::channel(1024);
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(PoolShared {
            worker_id: config.worker_id().to_owned(),
            names: infos.iter().map(|i| i.name.clone()).collect(),
            poll_interval,
            lock_timeout: config.lock_timeout(),
            retry_policy: BackoffPolicy::retries(config),
            queues,
            in_flight: Default::default(),
            events,
            shutdown,
            stats: Default::default(),
            retention: self.retention.clone(),
            claim_ahead: self.claim_ahead,
            batcher: batcher::spawn(
                self.tasks.db().clone(),
                config.worker_id().to_owned(),
                Arc::clone(&unwritten),
            ),
            unwritten,
            left: Notify::new(),
            claimed_ahead: Default::default(),
            tasks: self.tasks.clone(),
        });
        tracing::info!(
            worker_id = %shared.worker_id,
            queues = ?shared.queues.keys().collect::<Vec<_>>(),
            "Starting TaskWorker {} with concurrency={}",
            shared.worker_id,
            total_slots
        );
        let listener = tokio::spawn(listener::run(Arc::clone(&shared)));
        let maintenance = tokio::spawn(maintenance::run(Arc::clone(&shared)));
        let producers = shared
            .queues
            .values()
            .map(|queue| tokio::spawn(producer::run(Arc::clone(&shared), Arc::clone(queue))))
            .collect();
        Ok(WorkerPool {
            shared,
            producers,
            listener,
            maintenance,
            grace: self
                .shutdown_grace_period
                .unwrap_or(config.shutdown_grace_period()),
            total_slots,
        })
    }

    /// Runs the pool until the process receives SIGINT (Ctrl-C) or SIGTERM, then shuts it
    /// down gracefully.
    ///
    /// # Errors
    /// As [`spawn`](Self::spawn), and [`Error::ShutdownTimeout`] when running tasks outlast
    /// the grace period.
    pub async fn run(self) -> Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Runs the pool until `signal` resolves, then shuts it down gracefully.
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> Result<()> {
        let pool = self.spawn()?;
        signal.await;
        tracing::info!("shutdown requested");
        pool.shutdown().await
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

/// A running worker pool. [`shutdown`](Self::shutdown) stops it gracefully; dropping the
/// handle stops claiming new tasks and lets running ones finish in the background.
#[derive(Debug)]
pub struct WorkerPool {
    shared: Arc<PoolShared>,
    producers: Vec<JoinHandle<()>>,
    listener: JoinHandle<()>,
    maintenance: JoinHandle<()>,
    grace: Duration,
    total_slots: usize,
}

impl WorkerPool {
    /// The id this pool writes into `worker_id`.
    pub fn worker_id(&self) -> &str {
        &self.shared.worker_id
    }

    /// Total slots.
    pub fn concurrency(&self) -> usize {
        self.total_slots
    }

    /// Counters since the pool started.
    pub fn stats(&self) -> PoolStats {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.shared.stats;
        let claimed_ahead = self.shared.claimed_ahead.load(Relaxed);
        PoolStats {
            claim_queries: c.claim_queries.load(Relaxed),
            empty_claims: c.empty_claims.load(Relaxed),
            tasks_claimed: c.tasks_claimed.load(Relaxed),
            claimed_ahead,
            running: self.shared.in_flight().len().saturating_sub(claimed_ahead),
        }
    }

    /// Events from now on. A slow receiver that falls more than 1024 events behind skips
    /// the oldest (and is told so by `RecvError::Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<WorkerEvent> {
        self.shared.events.subscribe()
    }

    /// Stops claiming, waits up to the grace period for running tasks, and stops.
    ///
    /// Tasks claimed but not yet started go back to the queue. Tasks still running at the
    /// deadline are abandoned: their rows stay `running` until their lock expires, then
    /// another worker rescues and retries them.
    ///
    /// # Errors
    /// [`Error::ShutdownTimeout`] when tasks were still running at the deadline.
    pub async fn shutdown(mut self) -> Result<()> {
        self.shared.shutdown.send_replace(true);
        for producer in self.producers.drain(..) {
            let _ = producer.await;
        }
        let drained = tokio::time::timeout(self.grace, self.shared.no_task_in_flight())
            .await
            .is_ok();
        let abandoned: Vec<_> = {
            let mut in_flight = self.shared.in_flight();
            in_flight
                .drain()
                .map(|(id, task)| {
                    if let Some(abort) = task.abort {
                        abort.abort();
                    }
                    id
                })
                .collect()
        };
        self.listener.abort();
        self.maintenance.abort();
        if drained && abandoned.is_empty() {
            tracing::info!(worker_id = %self.shared.worker_id, "worker pool stopped");
            Ok(())
        } else {
            tracing::warn!(
                abandoned = abandoned.len(),
                "shutdown grace period over; abandoned tasks will be retried after their lock expires"
            );
            Err(Error::ShutdownTimeout(self.grace))
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
    }
}
