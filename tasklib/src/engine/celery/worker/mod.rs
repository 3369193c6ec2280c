//! The Celery engine's worker pool: Rust handlers for the messages of Celery queues.
//!
//! One consumer per group of queues of the [`WorkerPlan`], each with its slots, `BRPOP`s the
//! group's lists (every priority bucket, highest first) on a connection of its own, records
//! the message as unacknowledged (kombu's layout, [`unacked`]), and runs it
//! ([`execute`]) through the same attempt rules as every engine. A message with an `eta`
//! waits in the pool without a slot until it is due, as in Celery. Two background loops keep
//! the acks-late contract: a heartbeat refreshes the delivery time of held messages, and a
//! restorer re-queues messages whose holder (any worker, Python or Rust) has stopped
//! refreshing them for longer than the visibility timeout
//! ([`Config::lock_timeout`](crate::Config::lock_timeout)).

mod consumer;
mod execute;
pub(crate) mod unacked;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{Semaphore, broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use super::connection::Redis;
use crate::config::Config;
use crate::registry::Registry;
use crate::retry::BackoffPolicy;
use crate::worker::lifeline::Lifeline;
use crate::worker::{PoolFailure, PoolStats, RunningPool, WorkerEvent, WorkerPlan};
use crate::{Error, Result};

/// Events kept for slow subscribers.
const EVENT_CAPACITY: usize = 1024;

/// What every part of a pool shares.
pub(crate) struct Shared {
    pub(crate) broker: Redis,
    pub(crate) results: Redis,
    pub(crate) registry: Registry,
    pub(crate) config: Config,
    pub(crate) policy: BackoffPolicy,
    pub(crate) result_expires: u64,
    pub(crate) events: broadcast::Sender<WorkerEvent>,
    pub(crate) counters: Counters,
    /// Delivery tags this pool holds (unacknowledged), for the heartbeat.
    pub(crate) held: Mutex<HashSet<String>>,
    /// Longest wait of one `BRPOP`: how fast an idle consumer notices a stop.
    pub(crate) block: Duration,
    pub(crate) stop: watch::Receiver<bool>,
    /// The stop signal's sender, and the pool's failure.
    pub(crate) lifeline: Arc<Lifeline>,
}

impl Shared {
    pub(crate) fn emit(&self, event: WorkerEvent) {
        // Nobody listening is fine.
        let _ = self.events.send(event);
    }

    pub(crate) fn hold(&self, tag: &str) {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tag.to_owned());
    }

    pub(crate) fn release(&self, tag: &str) {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(tag);
    }

    fn held_tags(&self) -> Vec<String> {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

/// The counters behind [`PoolStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) pops: AtomicU64,
    pub(crate) empty_pops: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) running: AtomicUsize,
    pub(crate) waiting_eta: AtomicUsize,
}

/// The running pool.
pub(crate) struct CeleryPool {
    worker_id: String,
    concurrency: usize,
    shared: Arc<Shared>,
    /// Every consumer and job holds a clone; all dropped means all finished.
    alive: Option<mpsc::Sender<()>>,
    finished: mpsc::Receiver<()>,
    background: Vec<JoinHandle<()>>,
    grace: Duration,
}

impl std::fmt::Debug for CeleryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CeleryPool")
            .field("worker_id", &self.worker_id)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

/// Starts the pool `plan` describes. Connections are made by the consumers themselves
/// (and made again after a failure), so this cannot fail on the network.
pub(crate) fn spawn(
    broker: Redis,
    results: Redis,
    config: &Config,
    result_expires: u64,
    registry: Registry,
    plan: WorkerPlan,
) -> Result<Box<dyn RunningPool>> {
    let lifeline = Lifeline::new(plan.max_outage, "broker");
    let (events, _) = broadcast::channel(EVENT_CAPACITY);
    let block = plan
        .poll_interval
        .clamp(Duration::from_millis(100), Duration::from_secs(5));
    let shared = Arc::new(Shared {
        broker,
        results,
        registry,
        config: config.clone(),
        policy: BackoffPolicy::retries(config),
        result_expires,
        events,
        counters: Counters::default(),
        held: Mutex::new(HashSet::new()),
        block,
        stop: lifeline.on_stop(),
        lifeline: Arc::clone(&lifeline),
    });
    let (alive, finished) = mpsc::channel(1);
    for (queues, slots) in &plan.groups {
        let slots = Arc::new(Semaphore::new(*slots));
        tokio::spawn(lifeline.guard(
            format!("consumer of {}", queues.join(", ")),
            consumer::consume(Arc::clone(&shared), queues.clone(), slots, alive.clone()),
        ));
    }
    let visibility = config.lock_timeout();
    let background = vec![
        tokio::spawn(lifeline.guard(
            "heartbeat".to_owned(),
            heartbeat(Arc::clone(&shared), visibility / 3),
        )),
        tokio::spawn(lifeline.guard(
            "restorer".to_owned(),
            restorer(Arc::clone(&shared), visibility),
        )),
    ];
    Ok(Box::new(CeleryPool {
        worker_id: config.worker_id().to_owned(),
        concurrency: plan.total_slots(),
        shared,
        alive: Some(alive),
        finished,
        background,
        grace: plan.grace,
    }))
}

impl RunningPool for CeleryPool {
    fn worker_id(&self) -> &str {
        &self.worker_id
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }

    fn stats(&self) -> PoolStats {
        let c = &self.shared.counters;
        PoolStats {
            claim_queries: c.pops.load(Ordering::Relaxed),
            empty_claims: c.empty_pops.load(Ordering::Relaxed),
            tasks_claimed: c.received.load(Ordering::Relaxed),
            running: c.running.load(Ordering::Relaxed),
            claimed_ahead: c.waiting_eta.load(Ordering::Relaxed),
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<WorkerEvent> {
        self.shared.events.subscribe()
    }

    fn failure(&self) -> watch::Receiver<Option<PoolFailure>> {
        self.shared.lifeline.failure()
    }

    fn shutdown(mut self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move {
            self.shared.lifeline.stop();
            self.alive = None;
            // `recv` gives `None` once every consumer and job has dropped its sender.
            let drained = tokio::time::timeout(self.grace, self.finished.recv()).await;
            for task in self.background.drain(..) {
                task.abort();
            }
            match drained {
                Ok(_) => Ok(()),
                Err(_) => Err(Error::ShutdownTimeout(self.grace)),
            }
        })
    }
}

impl Drop for CeleryPool {
    fn drop(&mut self) {
        // Dropped without `shutdown`: stop taking messages; running jobs finish by themselves.
        self.shared.lifeline.stop();
    }
}

/// Keeps the delivery time of held messages fresh, so that no restorer re-queues a message
/// this pool is still working on.
async fn heartbeat(shared: Arc<Shared>, every: Duration) {
    let every = every.max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let tags = shared.held_tags();
        if tags.is_empty() && *shared.stop.borrow() {
            return;
        }
        let mut conn = shared.broker.conn();
        if let Err(e) = unacked::heartbeat(&mut conn, &tags).await {
            tracing::warn!(error = %shared.broker.error(e), "could not refresh held messages");
        }
    }
}

/// Re-queues messages whose holder stopped refreshing them (crashed, killed, cut off) for
/// longer than the visibility timeout.
async fn restorer(shared: Arc<Shared>, visibility: Duration) {
    let every = (visibility / 2).clamp(Duration::from_millis(200), Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop = shared.stop.clone();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let ceiling = unacked::now_score() - visibility.as_secs_f64();
        let mut conn = shared.broker.conn();
        match unacked::restore_older_than(&mut conn, ceiling).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                count = n,
                "re-queued messages unacknowledged for longer than the visibility timeout"
            ),
            Err(e) => {
                tracing::warn!(error = %shared.broker.error(e), "could not restore unacked messages")
            }
        }
    }
}
