//! The producer: one per queue, claims as many tasks as there are free slots and hands each
//! to an executor.
//!
//! It claims when it has reason to think there is work: at start, when woken by a
//! notification for its queue, on its (jittered) poll tick, and — after a claim that filled
//! every free slot — once half the slots are free again. A burst of notifications while a claim is in
//! flight collapses into one stored wake-up, so it costs one more query, not one per
//! notification; an idle producer sleeps until a notification or its tick.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;

use super::executor;
use super::pool::{PoolShared, QueueState};
use super::store;
use crate::entity::task;
use crate::retry::BackoffPolicy;

pub(crate) async fn run(pool: Arc<PoolShared>, queue: Arc<QueueState>) {
    let mut shutdown = pool.shutdown.subscribe();
    let mut may_have_work = true;
    let mut failures = 0u32;
    loop {
        if *shutdown.borrow_and_update() {
            break;
        }
        if may_have_work {
            let free = queue.slots.available_permits();
            // With work waiting and tasks still running, wait until half the slots are free
            // and claim them in one statement, rather than one claim per freed slot: fewer,
            // larger claims, and outcomes that finish together are written together. An idle
            // pool has every slot free, so pickup latency is unaffected.
            let busy = free < queue.capacity;
            if free == 0 || (busy && free < claim_batch(queue.capacity)) {
                tokio::select! {
                    _ = queue.slot_freed.notified() => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let Ok(permits) = Arc::clone(&queue.slots).try_acquire_many_owned(free as u32) else {
                // Another queue of the group took the slots first.
                continue;
            };
            match claim(&pool, &queue, free).await {
                Ok(rows) => {
                    failures = 0;
                    pool.stats.record_claim(rows.len());
                    may_have_work = rows.len() == free;
                    if pool.is_shutting_down() {
                        release(&pool, &rows).await;
                        break;
                    }
                    start(&pool, &queue, rows, permits);
                    // Let the tasks just started run before counting free slots again: short
                    // ones are over by then, and the next claim takes their slots too.
                    tokio::task::yield_now().await;
                }
                Err(error) => {
                    drop(permits);
                    failures += 1;
                    let delay = BackoffPolicy::reconnect()
                        .delay(failures)
                        .min(pool.poll_interval.max(Duration::from_secs(1)));
                    tracing::warn!(queue = %queue.name, error = %crate::task::error_chain(&error), retry_in = ?delay, "claiming tasks failed");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
            continue;
        }
        tokio::select! {
            _ = queue.wake.notified() => {}
            _ = tokio::time::sleep(pool.jittered_poll()) => {}
            _ = shutdown.changed() => {}
        }
        may_have_work = true;
    }
}

/// The fewest free slots worth a claim while others are busy: half of them.
fn claim_batch(capacity: usize) -> usize {
    (capacity / 2).max(1)
}

async fn claim(
    pool: &PoolShared,
    queue: &QueueState,
    free: usize,
) -> crate::Result<Vec<task::Model>> {
    store::claim(
        pool.tasks.db(),
        &queue.name,
        &pool.names,
        free,
        &pool.worker_id,
        pool.lock_timeout,
        None,
    )
    .await
}

/// Spawns one executor per claimed row, each holding one slot.
fn start(
    pool: &Arc<PoolShared>,
    queue: &Arc<QueueState>,
    rows: Vec<task::Model>,
    mut permits: OwnedSemaphorePermit,
) {
    for row in rows {
        let Some(permit) = permits.split(1) else {
            // Cannot happen: at most `free` rows for `free` permits.
            break;
        };
        executor::spawn(Arc::clone(pool), Arc::clone(queue), row, permit);
    }
    // Permits not used by a task go back now.
    drop(permits);
}

/// Shutdown began while a claim was in flight: hand the rows back untouched.
async fn release(pool: &PoolShared, rows: &[task::Model]) {
    if rows.is_empty() {
        return;
    }
    let ids = rows.iter().map(|r| r.id).collect();
    match store::release(pool.tasks.db(), ids, &pool.worker_id).await {
        Ok(n) => tracing::info!(
            released = n,
            "returned claimed tasks to the queue at shutdown"
        ),
        Err(error) => {
            tracing::warn!(error = %crate::task::error_chain(&error), "could not return claimed tasks at shutdown; they will be rescued when their lock expires")
        }
    }
}
