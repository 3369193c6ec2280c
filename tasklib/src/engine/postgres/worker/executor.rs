//! The executor: runs one attempt under its timeout, turns panics into failures, and hands
//! the outcome to the completer.
//!
//! The slot is given back as soon as the handler returns, before its outcome is written:
//! writes are batched and take a round trip, and a slot held through them would sit idle.
//! The row stays `running` (and heartbeated, and in the pool's in-flight map) until the write
//! lands, so shutdown still waits for it. Outcomes waiting to be written are bounded by the
//! pool's `unwritten` semaphore (four times as many as there are slots): when writes fall behind,
//! finished handlers keep their slot until they can queue, and claiming slows down.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, watch};
use tracing::Instrument;

use super::completer;
use super::pool::{PoolShared, QueueState};
use super::store::{AttemptRef, ClaimedRow};
use crate::attempt;
use crate::task::{TaskContext, TaskError};
use crate::worker::WorkerEvent;

/// A claimed task that the pool holds (see [`PoolShared::hold`]), ready to start.
#[derive(Debug)]
pub(crate) struct Claimed {
    pub(crate) row: ClaimedRow,
    pub(crate) cancelled: watch::Receiver<bool>,
}

/// Starts the attempt on its own tokio task. The slot (`permit`) is given back when the
/// handler returns and its outcome is queued for writing.
pub(crate) fn spawn(
    pool: Arc<PoolShared>,
    queue: Arc<QueueState>,
    task: Claimed,
    permit: OwnedSemaphorePermit,
) {
    let Claimed { row, cancelled } = task;
    let (id, attempt) = (row.id, row.attempt);
    // A root: the attempt belongs to no span of the worker (nor to whatever this thread is
    // in); only the submitter's trace, below, may be its parent.
    let span = tracing::info_span!(
        parent: None,
        "tasklib.task",
        task.id = %row.id,
        task.name = %row.name,
        task.attempt = row.attempt,
        task.queue = %row.queue,
        task.wait_ms = (row.waited.max(0.0) * 1000.0).round() as u64,
    );
    // The submitter's trace, when it kept one (feature `otel`): set before the span is first
    // entered, as a parent can only be.
    crate::trace::continue_trace(&span, row.trace_context.as_deref());
    // Hold the map's lock across the spawn so the attempt cannot leave the map before its
    // abort handle is recorded.
    let mut in_flight = pool.in_flight();
    let handle = tokio::spawn({
        let pool = Arc::clone(&pool);
        async move {
            execute(&pool, &queue, row, cancelled, permit).await;
            pool.finished(&id, attempt);
        }
        .instrument(span)
    });
    if let Some(task) = in_flight.get_mut(&id)
        && task.attempt == attempt
    {
        task.abort = Some(handle.abort_handle());
    }
}

async fn execute(
    pool: &PoolShared,
    queue: &QueueState,
    row: ClaimedRow,
    cancelled: watch::Receiver<bool>,
    slot: OwnedSemaphorePermit,
) {
    let attempt = AttemptRef {
        id: row.id,
        worker_id: pool.worker_id.clone(),
        attempt: row.attempt,
        chained: row.chained,
    };
    let retry_count = u32::try_from(row.retry_count).unwrap_or(0);
    let max_retries = u32::try_from(row.max_retries).unwrap_or(0);
    let ctx = TaskContext {
        id: row.id,
        name: row.name.clone(),
        queue: row.queue.clone(),
        attempt: u32::try_from(row.attempt).unwrap_or(0),
        retry_count,
        max_retries,
        worker_id: pool.worker_id.clone(),
        tags: row.tags.clone(),
        cancelled: cancelled.clone(),
        progress: crate::progress::Progress::Postgres {
            db: pool.db.clone(),
            attempt: attempt.clone(),
        },
    };
    let timeout = row
        .timeout_seconds
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .or(pool.default_task_timeout);
    let started = Instant::now();
    // Claimed (perhaps ahead, in a producer's buffer) but asked to cancel before it started:
    // it never runs.
    let outcome = if *cancelled.borrow() {
        tracing::debug!("task cancelled before it started");
        Err(TaskError::cancel("requested before the task started"))
    } else {
        crate::metrics::claimed(&queue.name, &row.name, row.waited);
        pool.emit(WorkerEvent::TaskStarted {
            id: row.id,
            name: row.name.clone(),
            attempt: ctx.attempt,
        });
        tracing::debug!("task started");
        match pool.registry.handler(&row.name) {
            Some(handler) => attempt::run(handler.as_ref(), row.args, ctx, timeout).await,
            // Only registered names are claimed; a pool whose registry lost the name is a bug.
            None => Err(TaskError::permanent(format!(
                "no handler registered for `{}` in this worker",
                row.name
            ))),
        }
    };
    let duration = started.elapsed();
    let cancel_requested = *cancelled.borrow();
    // Queue for writing, then free the slot (module docs).
    let unwritten = Arc::clone(&pool.unwritten).acquire_owned().await;
    queue.finished.fetch_add(1, Ordering::Relaxed);
    queue.group.give_back(slot);
    let written = completer::record(
        pool,
        &attempt,
        retry_count,
        max_retries,
        outcome,
        cancel_requested,
    )
    .await;
    drop(unwritten);
    if queue.limited.load(Ordering::SeqCst) {
        // The row no longer runs: under a cluster-wide limit, that may be what a short claim
        // waited for.
        queue.wake.notify_one();
    }
    crate::metrics::finished(&queue.name, &row.name, &written, duration);
    pool.emit(WorkerEvent::TaskFinished {
        id: row.id,
        name: row.name,
        outcome: written,
        duration,
    });
}
