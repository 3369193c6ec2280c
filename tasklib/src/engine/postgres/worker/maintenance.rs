//! Background upkeep of one pool: heartbeats that extend the locks of running tasks (and pick
//! up cancellation requests), the rescue of tasks whose worker died, and retention.

use std::sync::Arc;
use std::time::Duration;

use super::pool::PoolShared;
use super::store;
use crate::worker::WorkerEvent;

/// Rows rescued per statement, so one rescue never holds many locks.
const RESCUE_BATCH: i64 = 100;

pub(crate) async fn run(pool: Arc<PoolShared>) {
    // Runs through a graceful shutdown (running tasks still need their locks); the pool
    // aborts it once they are done.
    // Three heartbeats per lock period: a lock survives two lost heartbeats.
    let heartbeat_every = (pool.lock_timeout / 3).max(Duration::from_millis(100));
    let mut heartbeat = tokio::time::interval(heartbeat_every);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let rescue_sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(rescue_sleep);
    let mut retention = tokio::time::interval(pool.retention.every);
    retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first heartbeat ticks at once: it writes the pool's row in `tasklib_workers`.
    let mut starting = true;
    loop {
        tokio::select! {
            _ = retention.tick(), if !pool.retention.is_empty() && !pool.is_shutting_down() => prune(&pool).await,
            _ = heartbeat.tick() => {
                beat(&pool).await;
                super::registration::upsert(&pool, std::mem::take(&mut starting)).await;
                super::queue_flags::refresh(Arc::clone(&pool)).await;
                if crate::metrics::SAMPLES_DEPTH {
                    sample_depths(&pool).await;
                }
            }
            _ = &mut rescue_sleep => {
                rescue(&pool).await;
                rescue_sleep.as_mut().reset(tokio::time::Instant::now() + pool.jittered_poll());
            }
        }
    }
}

async fn beat(pool: &PoolShared) {
    let ids: Vec<_> = pool.in_flight().keys().copied().collect();
    if ids.is_empty() {
        return;
    }
    match store::heartbeat(&pool.db, ids.clone(), &pool.worker_id, pool.lock_timeout).await {
        Ok(rows) => {
            let in_flight = pool.in_flight();
            for row in &rows {
                if row.cancel_requested
                    && let Some(task) = in_flight.get(&row.id)
                {
                    task.cancel.send_replace(true);
                }
            }
            if rows.len() < ids.len() {
                // Usually tasks whose outcome was written since `ids` was taken; a lost lock
                // shows up as `TaskOutcome::Lost` when its outcome is refused.
                tracing::debug!(
                    not_extended = ids.len() - rows.len(),
                    "some tasks were no longer running under this worker at the heartbeat"
                );
            }
        }
        Err(error) => {
            tracing::warn!(error = %crate::task::error_chain(&error), "heartbeat failed; locks expire unless a later one succeeds")
        }
    }
}

/// Sets the pending and running gauges of the pool's queues (feature `metrics`): one count
/// over the due and the running rows of those queues, through the claim and lock indexes.
async fn sample_depths(pool: &PoolShared) {
    let queues: Vec<String> = pool.queues.keys().cloned().collect();
    match store::queue_depths(&pool.db, queues.clone()).await {
        Ok(depths) => {
            for queue in &queues {
                let (pending, running) = depths
                    .iter()
                    .find(|d| &d.queue == queue)
                    .map_or((0, 0), |d| (d.pending, d.running));
                crate::metrics::depth(queue, pending, running);
            }
        }
        Err(error) => {
            tracing::debug!(error = %crate::task::error_chain(&error), "sampling queue depths failed");
        }
    }
}

async fn rescue(pool: &PoolShared) {
    match store::rescue_expired(&pool.db, RESCUE_BATCH, None).await {
        Ok(rows) => {
            pool.lifeline.reached();
            for row in rows {
                let dead_worker = row.worker_id.as_deref().unwrap_or("?");
                if row.returned {
                    tracing::info!(task.id = %row.id, task.name = %row.name, dead_worker, "returned a task its worker claimed ahead and never started (lock expired); the attempt does not count");
                } else {
                    tracing::warn!(task.id = %row.id, task.name = %row.name, dead_worker, retrying = row.retrying, "rescued a task whose lock expired");
                }
                if !row.returned {
                    crate::metrics::rescued(&row.queue, &row.name);
                }
                pool.emit(WorkerEvent::TaskRescued {
                    id: row.id,
                    retrying: row.retrying,
                    started: !row.returned,
                });
            }
        }
        Err(error) => {
            let error = crate::task::error_chain(&error);
            tracing::warn!(%error, "rescuing expired tasks failed");
            pool.lifeline.unreachable(&error);
        }
    }
}

async fn prune(pool: &PoolShared) {
    let mut deleted = 0;
    for (state, age) in &pool.retention.rules {
        match crate::engine::postgres::admin::prune(&pool.db, std::slice::from_ref(state), *age)
            .await
        {
            Ok(n) => deleted += n,
            Err(error) => {
                tracing::warn!(error = %crate::task::error_chain(&error), %state, "pruning old tasks failed")
            }
        }
    }
    if deleted > 0 {
        tracing::info!(deleted, "pruned old finished tasks");
        pool.emit(WorkerEvent::TasksPruned { count: deleted });
    }
}
