//! The PostgreSQL engine's worker pool.
//!
//! Inside a pool: one [listener](listener) connection wakes one [producer](producer) per
//! queue; producers claim tasks for their free slots and start an [executor](executor) for
//! each; the [completer](completer) writes outcomes, fenced by worker id and attempt;
//! [maintenance] extends locks of running tasks and rescues tasks of dead workers; the
//! [scheduler] submits the tasks of the client's schedules, when it has any.
//!
//! The pool gets what it needs (the connection pool, the configuration, the registry) and
//! nothing of the client.

mod batcher;
mod completer;
mod executor;
mod listener;
mod maintenance;
mod pace;
mod pool;
mod producer;
mod queue_flags;
mod registration;
mod scheduler;
pub(crate) mod sql;
pub(crate) mod store;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::postgres::db::Db;
use futures::future::BoxFuture;
use tokio::sync::{Notify, Semaphore, broadcast, watch};
use tokio::task::JoinHandle;

pub use listener::{CANCEL_CHANNEL, NEW_TASKS_CHANNEL, QUEUES_CHANNEL};

use crate::config::Config;
use crate::registry::Registry;
use crate::retry::BackoffPolicy;
use crate::worker::lifeline::Lifeline;
use crate::worker::{PoolFailure, PoolStats, RunningPool, WorkerEvent, WorkerPlan};
use crate::{Error, Result};
use pool::{PoolShared, QueueState, SlotGroup};

/// Starts a pool that runs `plan` against the database `db`.
pub(crate) fn spawn(
    db: Db,
    config: &Config,
    registry: Registry,
    plan: WorkerPlan,
) -> Result<Box<dyn RunningPool>> {
    let total_slots = plan.total_slots();
    let schedules = registry.schedules();
    let mut queues = HashMap::new();
    let groups = plan.groups.clone();
    for (names, slots) in plan.groups {
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
                    paused: Default::default(),
                    limited: Default::default(),
                }),
            );
        }
    }
    // Outcomes waiting to be written: a bound on memory, and room for large batches
    // (twice the slots starved the writer: docs/performance.md).
    let unwritten = Arc::new(Semaphore::new(total_slots.saturating_mul(4)));
    let (events, _) = broadcast::channel(1024);
    let lifeline = Lifeline::new(plan.max_outage, "database");
    let shared = Arc::new(PoolShared {
        worker_id: config.worker_id().to_owned(),
        pool_id: uuid::Uuid::now_v7(),
        groups,
        names: plan.names,
        poll_interval: plan.poll_interval,
        lock_timeout: config.lock_timeout(),
        default_task_timeout: config.default_task_timeout(),
        retry_policy: BackoffPolicy::retries(config),
        queues,
        in_flight: Default::default(),
        events,
        lifeline: Arc::clone(&lifeline),
        stats: Default::default(),
        retention: plan.retention,
        claim_ahead: plan.claim_ahead,
        batcher: batcher::spawn(
            db.clone(),
            config.worker_id().to_owned(),
            Arc::clone(&unwritten),
        ),
        unwritten,
        left: Notify::new(),
        claimed_ahead: Default::default(),
        pauses_loaded: Default::default(),
        pause_changes: Default::default(),
        db,
        listen_url: config.notification_url().cloned(),
        channels: crate::engine::postgres::channels::Channels::of(config.schema()),
        registry,
    });
    // Each part runs guarded: a panic, or an end before the pool stops, fails the pool.
    let listener = tokio::spawn(lifeline.guard(
        "notification listener".to_owned(),
        listener::run(Arc::clone(&shared)),
    ));
    let maintenance = tokio::spawn(lifeline.guard(
        "maintenance (heartbeats, rescues)".to_owned(),
        maintenance::run(Arc::clone(&shared)),
    ));
    let scheduler = (!schedules.is_empty()).then(|| {
        tokio::spawn(lifeline.guard(
            "scheduler".to_owned(),
            scheduler::run(
                Arc::clone(&shared),
                schedules,
                crate::engine::postgres::insert::Inserts::new(config.schema()),
            ),
        ))
    });
    let producers = shared
        .queues
        .values()
        .map(|queue| {
            tokio::spawn(lifeline.guard(
                format!("producer of queue \"{}\"", queue.name),
                producer::run(Arc::clone(&shared), Arc::clone(queue)),
            ))
        })
        .collect();
    Ok(Box::new(PgPool {
        shared,
        producers,
        listener,
        maintenance,
        scheduler,
        grace: plan.grace,
        total_slots,
    }))
}

/// A running pool of the PostgreSQL engine.
#[derive(Debug)]
struct PgPool {
    shared: Arc<PoolShared>,
    producers: Vec<JoinHandle<()>>,
    listener: JoinHandle<()>,
    maintenance: JoinHandle<()>,
    /// Runs the schedules, when there are any.
    scheduler: Option<JoinHandle<()>>,
    grace: Duration,
    total_slots: usize,
}

impl RunningPool for PgPool {
    fn worker_id(&self) -> &str {
        &self.shared.worker_id
    }

    fn concurrency(&self) -> usize {
        self.total_slots
    }

    fn stats(&self) -> PoolStats {
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

    fn subscribe(&self) -> broadcast::Receiver<WorkerEvent> {
        self.shared.events.subscribe()
    }

    fn shutdown(self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        Box::pin(self.stop())
    }

    fn failure(&self) -> watch::Receiver<Option<PoolFailure>> {
        self.shared.lifeline.failure()
    }
}

impl PgPool {
    async fn stop(mut self: Box<Self>) -> Result<()> {
        self.shared.lifeline.stop();
        for producer in self.producers.drain(..) {
            let _ = producer.await;
        }
        // It stops at once, or after the statement it is running (a claim is all or nothing).
        if let Some(mut scheduler) = self.scheduler.take()
            && tokio::time::timeout(self.grace, &mut scheduler)
                .await
                .is_err()
        {
            scheduler.abort();
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
        registration::remove(&self.shared).await;
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

impl Drop for PgPool {
    fn drop(&mut self) {
        self.shared.lifeline.stop();
    }
}
