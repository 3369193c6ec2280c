//! Batches successful outcomes: executors hand their result to one task per pool, which
//! writes every result waiting at that moment in one statement (`COMPLETE_MANY`).
//!
//! When the pool is idle a result is written at once, alone. When other tasks were still in
//! flight as a result arrived, the batcher lingers up to [`LINGER`] for theirs, and results
//! that arrive while a write is in flight form the next batch. Each batch is one statement and
//! one commit instead of one per task. Slots are free again before the write (see the
//! executor), so the linger delays when a success is recorded, never when the next task
//! starts. It never lingers once the pool's budget of unwritten outcomes is spent: the results
//! it would wait for cannot arrive before this write frees the budget.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{Semaphore, mpsc, oneshot};
use uuid::Uuid;

use crate::engine::postgres::db::Db;

use super::store::{self, AttemptRef};

/// Most results per statement.
const MAX_BATCH: usize = 200;

/// Longest wait for the results of tasks still in flight before writing a batch.
const LINGER: std::time::Duration = std::time::Duration::from_millis(1);

/// One result waiting to be written. The reply says whether the fence let it through, or
/// `None` when the batch failed: the executor then writes it itself, retrying as needed.
#[derive(Debug)]
pub(crate) struct Done {
    pub(crate) attempt: AttemptRef,
    pub(crate) result: Value,
    /// Other tasks of the pool in flight when this one finished: results that may follow.
    pub(crate) others_in_flight: usize,
    pub(crate) reply: oneshot::Sender<Option<bool>>,
}

/// The executors' side of the batcher.
pub(crate) type Batcher = mpsc::UnboundedSender<Done>;

/// Starts the batching task for worker `worker_id`; it ends when every sender is dropped.
pub(crate) fn spawn(db: Db, worker_id: String, unwritten: Arc<Semaphore>) -> Batcher {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(db, worker_id, unwritten, rx));
    tx
}

async fn run(
    db: Db,
    worker_id: String,
    unwritten: Arc<Semaphore>,
    mut rx: mpsc::UnboundedReceiver<Done>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // One write at a time: results that arrive while it is on its way wait in the channel
    // and form the next batch. (Two writes in flight made smaller batches, more statements
    // and a slower drain: `docs/performance.md`.)
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let deadline = tokio::time::Instant::now() + LINGER;
        // No linger once the pool's budget of unwritten outcomes is spent: the results still
        // to come wait for this write to free it.
        while batch.len() < MAX_BATCH
            && batch.len() <= expected(&batch)
            && unwritten.available_permits() > 0
        {
            let room = MAX_BATCH - batch.len();
            match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)).await {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        write(&db, &worker_id, &mut batch).await;
    }
}

/// Tasks other than the newest result's that were in flight when it finished. Every result
/// in the batch is still in flight (until written), so more can come while the batch holds
/// no more than this many.
fn expected(batch: &[Done]) -> usize {
    batch.last().map_or(0, |d| d.others_in_flight)
}

/// Writes `batch` in one statement and answers each result; leaves `batch` empty.
async fn write(db: &Db, worker_id: &str, batch: &mut Vec<Done>) {
    let chained = batch.iter().any(|d| d.attempt.chained);
    let rows = batch
        .iter_mut()
        .map(|d| (d.attempt.id, d.attempt.attempt, d.result.take()));
    let outcome = store::complete_many(db, worker_id, chained, rows).await;
    match outcome {
        Ok(written) => {
            let written: HashSet<Uuid> = written.into_iter().collect();
            for done in batch.drain(..) {
                let _ = done.reply.send(Some(written.contains(&done.attempt.id)));
            }
        }
        Err(error) => {
            // Each executor retries its own write, with backoff, from here on.
            tracing::warn!(error = %crate::task::error_chain(&error), results = batch.len(), "batched completion failed; writing one by one");
            for done in batch.drain(..) {
                let _ = done.reply.send(None);
            }
        }
    }
}
