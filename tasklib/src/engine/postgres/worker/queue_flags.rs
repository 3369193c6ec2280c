//! What the pool knows of its queues' rows in `tasklib_queues`: which are paused, and which
//! have cluster-wide limits. Read when the pool starts, when a `tasks_queues` notification
//! arrives, after every listener (re)connect and on every heartbeat (so a lost notification,
//! or a pool without a listener, catches up), and kept in each queue's `paused` and `limited`
//! flags for its producer.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::pool::PoolShared;
use super::store;

/// Reads the flags and sets each queue's; a queue that was paused and no longer is, or whose
/// limits changed, wakes its producer. A failed read keeps the flags as they were (and says
/// so): the next refresh tries again.
pub(crate) async fn refresh(pool: Arc<PoolShared>) {
    let names: Vec<String> = pool.queues.keys().cloned().collect();
    let seen = pool.pause_changes.load(Ordering::SeqCst);
    match store::queue_flags(&pool.db, names).await {
        // A notification came while reading: the flags are newer than this read, and the
        // refresh that notification started reads again.
        Ok(_) if pool.pause_changes.load(Ordering::SeqCst) != seen => {}
        Ok(flags) => {
            for queue in pool.queues.values() {
                let row = flags.iter().find(|f| f.queue == queue.name);
                let paused = row.is_some_and(|f| f.paused);
                let limited = row.is_some_and(|f| f.limited);
                let was = queue.paused.swap(paused, Ordering::SeqCst);
                if was != paused {
                    tracing::info!(queue = %queue.name, paused, "queue {}", if paused { "paused" } else { "resumed" });
                }
                let was_limited = queue.limited.swap(limited, Ordering::SeqCst);
                if was_limited != limited {
                    tracing::info!(queue = %queue.name, limited, "queue {}", if limited { "limited across the cluster" } else { "no longer limited" });
                }
                if (was && !paused) || was_limited != limited {
                    queue.wake.notify_one();
                }
            }
        }
        Err(error) => {
            tracing::warn!(error = %crate::task::error_chain(&error), "reading which queues are paused or limited failed; trying again at the next heartbeat");
        }
    }
}
