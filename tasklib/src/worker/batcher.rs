//! Batches successful outcomes: executors hand their result to one task per pool, which
//! writes every result waiting at that moment in one statement (`COMPLETE_MANY`).
//!
//! No timer: when the pool is idle a result is written at once, alone; under load, results
//! that arrive while a write is in flight form the next batch. Each batch is one statement and
//! one commit instead of one per task.

use std::collections::HashSet;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use sea_orm::DatabaseConnection;

use super::store::{self, AttemptRef};

/// Most results per statement.
const MAX_BATCH: usize = 200;

/// One result waiting to be written. The reply says whether the fence let it through, or
/// `None` when the batch failed: the executor then writes it itself, retrying as needed.
#[derive(Debug)]
pub(crate) struct Done {
    pub(crate) attempt: AttemptRef,
    pub(crate) result: Value,
    pub(crate) reply: oneshot::Sender<Option<bool>>,
}

/// The executors' side of the batcher.
pub(crate) type Batcher = mpsc::UnboundedSender<Done>;

/// Starts the batching task for worker `worker_id`; it ends when every sender is dropped.
pub(crate) fn spawn(db: DatabaseConnection, worker_id: String) -> Batcher {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(db, worker_id, rx));
    tx
}

async fn run(db: DatabaseConnection, worker_id: String, mut rx: mpsc::UnboundedReceiver<Done>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        write(&db, &worker_id, std::mem::take(&mut batch)).await;
    }
}

async fn write(db: &DatabaseConnection, worker_id: &str, batch: Vec<Done>) {
    let rows: Vec<(Uuid, i32, Value)> = batch
        .iter()
        .map(|d| (d.attempt.id, d.attempt.attempt, d.result.clone()))
        .collect();
    match store::complete_many(db, worker_id, &rows).await {
        Ok(written) => {
            let written: HashSet<Uuid> = written.into_iter().collect();
            for done in batch {
                let _ = done.reply.send(Some(written.contains(&done.attempt.id)));
            }
        }
        Err(error) => {
            // Each executor retries its own write, with backoff, from here on.
            tracing::warn!(error = %crate::task::error_chain(&error), results = batch.len(), "batched completion failed; writing one by one");
            for done in batch {
                let _ = done.reply.send(None);
            }
        }
    }
}
