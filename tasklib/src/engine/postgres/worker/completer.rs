//! The completer: turns an attempt's outcome into the row's next state, and writes it fenced
//! by worker id and attempt.

use std::time::Duration;

use serde_json::Value;

use super::pool::PoolShared;
use super::store::{self, AttemptRef};
use crate::attempt::{Write, decide};
use crate::retry::BackoffPolicy;
use crate::task::TaskError;
use crate::worker::TaskOutcome;

/// Writes the outcome, retrying the write through database outages for as long as the lock
/// could still be ours (`lock_timeout`; fencing makes a late write harmless). Gives
/// [`TaskOutcome::Lost`] when the fence rejects it or the outage outlasts the lock: the task
/// is then rescued and run again, so it is never lost for good.
pub(crate) async fn record(
    pool: &PoolShared,
    attempt: &AttemptRef,
    retry_count: u32,
    max_retries: u32,
    outcome: Result<Value, TaskError>,
    cancel_requested: bool,
) -> TaskOutcome {
    let write = decide(
        &pool.retry_policy,
        retry_count,
        max_retries,
        outcome,
        cancel_requested,
    );
    if let Write::Complete(value) = &write
        && let Some(written) = batched(pool, attempt, value.clone()).await
    {
        return if written {
            tracing::debug!("task completed");
            TaskOutcome::Completed
        } else {
            tracing::warn!(
                "outcome not written: this worker no longer holds the task (lock expired, rescued or claimed again)"
            );
            TaskOutcome::Lost
        };
    }
    let db = &pool.db;
    let give_up = tokio::time::Instant::now() + pool.lock_timeout;
    let mut tries = 0u32;
    loop {
        tries += 1;
        let written = match &write {
            Write::Complete(value) => store::complete(db, attempt, value.clone()).await,
            Write::Fail { error, retry_in } => store::fail(db, attempt, error, *retry_in).await,
            Write::Cancel(reason) => store::cancelled(db, attempt, reason).await,
            Write::Snooze(delay) => store::snooze(db, attempt, *delay).await,
        };
        match written {
            Ok(true) => {
                let outcome = match &write {
                    Write::Complete(_) => TaskOutcome::Completed,
                    Write::Fail {
                        retry_in: Some(delay),
                        ..
                    } => TaskOutcome::Retrying { delay: *delay },
                    Write::Fail { retry_in: None, .. } => TaskOutcome::Failed,
                    Write::Cancel(_) => TaskOutcome::Cancelled,
                    Write::Snooze(delay) => TaskOutcome::Snoozed { delay: *delay },
                };
                match &write {
                    Write::Fail {
                        error,
                        retry_in: Some(delay),
                    } => {
                        tracing::warn!(error = %error, retry_in = ?delay, "task attempt failed; it will be retried")
                    }
                    // Once, at ERROR: nothing will run it again (the span names the task).
                    Write::Fail {
                        error,
                        retry_in: None,
                    } => tracing::error!(error = %error, "task failed for good"),
                    _ => tracing::debug!(?outcome, "task finished"),
                }
                return outcome;
            }
            Ok(false) => {
                tracing::warn!(
                    "outcome not written: this worker no longer holds the task (lock expired, rescued or claimed again)"
                );
                return TaskOutcome::Lost;
            }
            Err(error) if tokio::time::Instant::now() < give_up => {
                let delay = BackoffPolicy::reconnect()
                    .delay(tries)
                    .min(Duration::from_secs(5));
                tracing::warn!(error = %crate::task::error_chain(&error), retry_in = ?delay, "writing a task outcome failed; retrying");
                tokio::time::sleep(delay).await;
            }
            Err(error) => {
                tracing::error!(error = %crate::task::error_chain(&error), "writing a task outcome failed; the task will be rescued when its lock expires");
                return TaskOutcome::Lost;
            }
        }
    }
}

/// Hands a success to the pool's batcher; `None` when the batch failed (write it yourself).
async fn batched(pool: &PoolShared, attempt: &AttemptRef, result: Value) -> Option<bool> {
    let (reply, written) = tokio::sync::oneshot::channel();
    let done = super::batcher::Done {
        attempt: attempt.clone(),
        result,
        others_in_flight: pool.in_flight().len().saturating_sub(
            1 + pool
                .claimed_ahead
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
        reply,
    };
    pool.batcher.send(done).ok()?;
    written.await.ok().flatten()
}
