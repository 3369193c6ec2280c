//! Which of the pool's queues are paused: read from `tasklib_queues` when the pool starts,
//! when a `tasks_queues` notification arrives, after every listener (re)connect and on every
//! heartbeat (so a lost notification, or a pool without a listener, catches up), and kept in
//! each queue's `paused` flag for its producer. The claim itself never reads the table.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::pool::PoolShared;
use super::store;

/// Reads the paused queues and sets each queue's flag; a queue that was paused and no
/// longer is wakes its producer. A failed read keeps the flags as they were (and says so):
/// the next refresh tries again.
pub(crate) async fn refresh(pool: Arc<PoolShared>) {
    let names: Vec<String> = pool.queues.keys().cloned().collect();
    let seen = pool.pause_changes.load(Ordering::SeqCst);
    match store::paused_queues(&pool.db, names).await {
        // A notification came while reading: the flags are newer than this read, and the
        // refresh that notification started reads again.
        Ok(_) if pool.pause_changes.load(Ordering::SeqCst) != seen => {}
        Ok(paused) => {
            for queue in pool.queues.values() {
                let now = paused.contains(&queue.name);
                let was = queue.paused.swap(now, Ordering::SeqCst);
                if was != now {
                    tracing::info!(queue = %queue.name, paused = now, "queue {}", if now { "paused" } else { "resumed" });
                }
                if was && !now {
                    queue.wake.notify_one();
                }
            }
        }
        Err(error) => {
            tracing::warn!(error = %crate::task::error_chain(&error), "reading which queues are paused failed; trying again at the next heartbeat");
        }
    }
}
