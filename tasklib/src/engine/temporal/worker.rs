//! The Temporal engine's worker pool: one Temporal worker per queue of the
//! [`WorkerPlan`], each polling its task queue for the generic workflow's tasks and for the
//! activities of every registered task name. The queues of one group share the group's
//! slots (a semaphore around the handlers), and each worker takes at most that many
//! activities at once.
//!
//! The SDK's worker runs workflow code on a `LocalSet` (workflows are not `Send`), so each
//! runs on a thread of its own that drives it through the application's tokio runtime;
//! activities are spawned onto that runtime's threads as usual.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use temporalio_client::Client;
use temporalio_sdk::runtime::worker_tuner::{FixedSizeSlotSupplier, TunerHolder};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use tokio::sync::{Semaphore, broadcast, oneshot, watch};

use super::activity::Runner;
use super::workflow::TaskWorkflow;
use crate::backend::BackendType;
use crate::config::Config;
use crate::registry::Registry;
use crate::retry::BackoffPolicy;
use crate::worker::lifeline::Lifeline;
use crate::worker::{PoolFailure, PoolStats, RunningPool, WorkerEvent, WorkerPlan};
use crate::{Error, Result};

/// Events kept for slow subscribers.
const EVENT_CAPACITY: usize = 1024;
/// Workflow tasks one worker runs at once: they are short (a step's bookkeeping).
const WORKFLOW_SLOTS: usize = 16;

/// What every part of a pool shares.
pub(crate) struct Shared {
    pub(crate) registry: Registry,
    pub(crate) names: Vec<String>,
    pub(crate) config: Config,
    pub(crate) policy: BackoffPolicy,
    pub(crate) events: broadcast::Sender<WorkerEvent>,
    pub(crate) counters: Counters,
}

impl Shared {
    pub(crate) fn emit(&self, event: WorkerEvent) {
        // Nobody listening is fine.
        let _ = self.events.send(event);
    }
}

/// The counters behind [`PoolStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) received: AtomicU64,
    pub(crate) running: AtomicUsize,
}

/// One Temporal worker running on its thread.
struct Running {
    queue: String,
    shutdown: Box<dyn Fn() + Send + Sync>,
    done: Option<oneshot::Receiver<()>>,
}

/// The running pool.
pub(crate) struct TemporalPool {
    worker_id: String,
    concurrency: usize,
    shared: Arc<Shared>,
    lifeline: Arc<Lifeline>,
    workers: Vec<Running>,
    grace: Duration,
}

impl std::fmt::Debug for TemporalPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporalPool")
            .field("worker_id", &self.worker_id)
            .field("concurrency", &self.concurrency)
            .field(
                "queues",
                &self.workers.iter().map(|w| &w.queue).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn start_error(queue: &str, reason: impl std::fmt::Display) -> Error {
    Error::BackendUnsupported {
        backend: BackendType::Temporal,
        reason: format!(
            "unable to start a worker for task queue `{queue}`: {reason}; check TEMPORAL_HOST \
             and TEMPORAL_NAMESPACE"
        ),
    }
}

/// Starts the workers `plan` describes.
///
/// # Errors
/// [`Error::BackendUnsupported`] when the SDK refuses a worker's options; it must be called
/// inside a multi-threaded tokio runtime.
pub(crate) fn spawn(
    client: &Client,
    runtime: &Arc<Runtime>,
    config: &Config,
    registry: Registry,
    plan: WorkerPlan,
) -> Result<Box<dyn RunningPool>> {
    let handle = tokio::runtime::Handle::try_current().map_err(|e| start_error("any", e))?;
    let lifeline = Lifeline::new(plan.max_outage, "Temporal frontend");
    let (events, _) = broadcast::channel(EVENT_CAPACITY);
    let shared = Arc::new(Shared {
        registry,
        names: plan.names.clone(),
        config: config.clone(),
        policy: BackoffPolicy::retries(config),
        events,
        counters: Counters::default(),
    });
    let mut workers = Vec::new();
    for (queues, slots) in &plan.groups {
        let semaphore = Arc::new(Semaphore::new(*slots));
        for queue in queues {
            let runner = Runner {
                shared: Arc::clone(&shared),
                slots: Arc::clone(&semaphore),
            };
            let tuner = TunerHolder::builder()
                .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(WORKFLOW_SLOTS))
                .activity_task_slot_supplier(FixedSizeSlotSupplier::new(*slots))
                .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(1))
                .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(1))
                .build();
            let options = WorkerOptions::new(queue.clone())
                .register_activities(runner)
                .register_workflow::<TaskWorkflow>()
                .map_err(|e| start_error(queue, e))?
                .tuner(tuner)
                .client_identity_override(format!("{}@{queue}", config.worker_id()))
                .graceful_shutdown_period(plan.grace)
                .build();
            let worker =
                Worker::new(runtime, client.clone(), options).map_err(|e| start_error(queue, e))?;
            workers.push(run_on_thread(
                worker,
                queue.clone(),
                handle.clone(),
                &lifeline,
            )?);
        }
    }
    Ok(Box::new(TemporalPool {
        worker_id: config.worker_id().to_owned(),
        concurrency: plan.total_slots(),
        shared,
        lifeline,
        workers,
        grace: plan.grace,
    }))
}

/// Runs `worker` on a thread of its own until it shuts down; a worker that stops by itself
/// (the server refused it, or it failed) fails the pool.
fn run_on_thread(
    mut worker: Worker,
    queue: String,
    handle: tokio::runtime::Handle,
    lifeline: &Arc<Lifeline>,
) -> Result<Running> {
    let shutdown = worker.shutdown_handle();
    let (done_tx, done_rx) = oneshot::channel();
    let (ended_tx, ended_rx) = oneshot::channel::<Option<String>>();
    let thread_queue = queue.clone();
    std::thread::Builder::new()
        .name(format!("tasklib-temporal-{queue}"))
        .spawn(move || {
            let local = tokio::task::LocalSet::new();
            let ran = handle.block_on(local.run_until(worker.run()));
            let error = ran.err().map(|e| e.to_string());
            if let Some(error) = &error {
                tracing::error!(queue = %thread_queue, error = %error, "a Temporal worker stopped");
            }
            let _ = ended_tx.send(error);
            let _ = done_tx.send(());
        })
        .map_err(|e| start_error(&queue, e))?;
    let part = format!("Temporal worker of task queue {queue}");
    let watched = Arc::clone(lifeline);
    tokio::spawn(async move {
        let ended = ended_rx.await.ok().flatten();
        if watched.stopping() {
            return;
        }
        watched.fail(match ended {
            Some(last_error) => PoolFailure::Unreachable {
                service: "Temporal frontend".to_owned(),
                for_: Duration::ZERO,
                limit: Duration::ZERO,
                last_error,
            },
            None => PoolFailure::PartEnded { part },
        });
    });
    Ok(Running {
        queue,
        shutdown: Box::new(shutdown),
        done: Some(done_rx),
    })
}

impl RunningPool for TemporalPool {
    fn worker_id(&self) -> &str {
        &self.worker_id
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }

    fn stats(&self) -> PoolStats {
        let c = &self.shared.counters;
        let received = c.received.load(Ordering::Relaxed);
        PoolStats {
            claim_queries: received,
            empty_claims: 0,
            tasks_claimed: received,
            running: c.running.load(Ordering::Relaxed),
            claimed_ahead: 0,
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<WorkerEvent> {
        self.shared.events.subscribe()
    }

    fn failure(&self) -> watch::Receiver<Option<PoolFailure>> {
        self.lifeline.failure()
    }

    fn shutdown(mut self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move {
            self.lifeline.stop();
            for worker in &self.workers {
                (worker.shutdown)();
            }
            let done: Vec<_> = self
                .workers
                .iter_mut()
                .filter_map(|w| w.done.take())
                .collect();
            // The SDK cancels activities still running at the grace period; give it a moment
            // more to report them.
            let limit = self.grace + Duration::from_secs(5);
            match tokio::time::timeout(limit, futures::future::join_all(done)).await {
                Ok(_) => Ok(()),
                Err(_) => Err(Error::ShutdownTimeout(self.grace)),
            }
        })
    }
}

impl Drop for TemporalPool {
    fn drop(&mut self) {
        // Dropped without `shutdown`: stop polling; running activities finish by themselves.
        self.lifeline.stop();
        for worker in &self.workers {
            if worker.done.is_some() {
                (worker.shutdown)();
            }
        }
    }
}
