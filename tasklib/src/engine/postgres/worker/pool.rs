//! State shared by the parts of one worker pool.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, broadcast, watch};
use tokio::task::AbortHandle;
use uuid::Uuid;

use super::store::ClaimedRow;
use crate::registry::Registry;
use crate::retry::BackoffPolicy;
use crate::url::RedactedUrl;
use crate::worker::lifeline::Lifeline;
use crate::worker::{ClaimAhead, WorkerEvent};

/// One queue served by the pool.
#[derive(Debug)]
pub(crate) struct QueueState {
    pub(crate) name: String,
    /// Wakes this queue's producer (a notification arrived, or the listener reconnected).
    pub(crate) wake: Notify,
    /// The execution slots this queue shares with the other queues of its group.
    pub(crate) group: Arc<SlotGroup>,
    /// Signalled whenever a slot of the group frees (each queue of the group has its own, so
    /// every producer hears of it).
    pub(crate) slot_freed: Arc<Notify>,
    /// Handlers of this queue that returned since the pool started: the producer's measure
    /// of throughput.
    pub(crate) finished: AtomicU64,
    /// Paused in the database ([`pauses`](super::pauses)): the producer claims nothing and
    /// starts none of the rows it claimed ahead.
    pub(crate) paused: AtomicBool,
    /// Has cluster-wide limits ([`queue_flags`](super::queue_flags)): the producer claims
    /// with [`CLAIM_LIMITED`](super::sql::CLAIM_LIMITED), for its free slots only.
    pub(crate) limited: AtomicBool,
}

/// Slots shared by some queues of a pool.
#[derive(Debug)]
pub(crate) struct SlotGroup {
    pub(crate) slots: Arc<Semaphore>,
    /// How many slots there are.
    pub(crate) capacity: usize,
    /// The `slot_freed` of each queue of the group.
    pub(crate) freed: Vec<Arc<Notify>>,
}

impl SlotGroup {
    /// Gives a slot back and tells each producer of the group.
    pub(crate) fn give_back(&self, slot: OwnedSemaphorePermit) {
        drop(slot);
        for freed in &self.freed {
            freed.notify_one();
        }
    }
}

/// A task this pool holds: claimed and waiting for a slot, running, or finished with its
/// outcome not yet written.
#[derive(Debug)]
pub(crate) struct InFlight {
    /// Which attempt: a task rescued and claimed again by this pool while its earlier
    /// attempt's outcome is still being written must not be dropped by that attempt.
    pub(crate) attempt: i32,
    pub(crate) cancel: watch::Sender<bool>,
    /// Its executor, once started.
    pub(crate) abort: Option<AbortHandle>,
}

/// Everything the pool's tasks share.
#[derive(Debug)]
pub(crate) struct PoolShared {
    /// The connection pool the worker reads and writes through.
    pub(crate) db: crate::engine::postgres::db::Db,
    /// Where the listener connects; none behind a transaction pooler without a listen URL,
    /// where producers only poll.
    pub(crate) listen_url: Option<RedactedUrl>,
    /// What it listens to: the channels of tasklib's schema.
    pub(crate) channels: crate::engine::postgres::channels::Channels,
    /// The handlers.
    pub(crate) registry: Registry,
    /// Time limit of attempts whose task sets none.
    pub(crate) default_task_timeout: Option<Duration>,
    pub(crate) worker_id: String,
    /// This pool's row in `tasklib_workers` (one process may run several pools under one
    /// worker id).
    pub(crate) pool_id: Uuid,
    /// Its queues, grouped as they share slots, with each group's slots.
    pub(crate) groups: Vec<(Vec<String>, usize)>,
    pub(crate) names: Vec<String>,
    pub(crate) poll_interval: Duration,
    pub(crate) lock_timeout: Duration,
    pub(crate) retry_policy: BackoffPolicy,
    pub(crate) queues: HashMap<String, Arc<QueueState>>,
    pub(crate) in_flight: Mutex<HashMap<Uuid, InFlight>>,
    pub(crate) events: broadcast::Sender<WorkerEvent>,
    /// The stop signal, and the pool's failure.
    pub(crate) lifeline: Arc<Lifeline>,
    pub(crate) stats: Counters,
    pub(crate) retention: crate::retention::RetentionPolicy,
    pub(crate) claim_ahead: ClaimAhead,
    /// Where executors hand successful outcomes, to be written in batches.
    pub(crate) batcher: super::batcher::Batcher,
    /// Outcomes of finished handlers not yet written (one permit each, four times as many as
    /// slots).
    pub(crate) unwritten: Arc<Semaphore>,
    /// Signalled whenever a task leaves `in_flight`.
    pub(crate) left: Notify,
    /// Tasks of `in_flight` claimed ahead, waiting in a producer's buffer for a slot.
    pub(crate) claimed_ahead: AtomicUsize,
    /// Set once the paused queues were first read; producers wait for it before claiming.
    pub(crate) pauses_loaded: tokio::sync::OnceCell<()>,
    /// Pause notifications applied so far: a read of the table that began before one of them
    /// is older than the flags, and is dropped.
    pub(crate) pause_changes: AtomicU64,
}

/// Counters behind [`PoolStats`](super::PoolStats).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) claim_queries: AtomicU64,
    pub(crate) empty_claims: AtomicU64,
    pub(crate) tasks_claimed: AtomicU64,
}

impl Counters {
    pub(crate) fn record_claim(&self, claimed: usize) {
        self.claim_queries.fetch_add(1, Ordering::Relaxed);
        if claimed == 0 {
            self.empty_claims.fetch_add(1, Ordering::Relaxed);
        }
        self.tasks_claimed
            .fetch_add(claimed as u64, Ordering::Relaxed);
    }
}

impl PoolShared {
    pub(crate) fn emit(&self, event: WorkerEvent) {
        // No subscriber is fine.
        let _ = self.events.send(event);
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.lifeline.stopping()
    }

    pub(crate) fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, InFlight>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a claim's rows as in flight (heartbeated, cancellable, awaited at shutdown)
    /// before they start, under one lock; each receiver tells its handler of cancellation.
    pub(crate) fn hold(&self, rows: &[ClaimedRow]) -> Vec<watch::Receiver<bool>> {
        let mut in_flight = self.in_flight();
        rows.iter()
            .map(|row| {
                let (cancel, cancelled) = watch::channel(row.cancel_requested);
                in_flight.insert(
                    row.id,
                    InFlight {
                        attempt: row.attempt,
                        cancel,
                        abort: None,
                    },
                );
                cancelled
            })
            .collect()
    }

    /// Attempt `attempt` of `id` is over and its outcome written (or given up on). A newer
    /// attempt of the same task held meanwhile stays.
    pub(crate) fn finished(&self, id: &Uuid, attempt: i32) {
        {
            let mut in_flight = self.in_flight();
            if in_flight.get(id).is_some_and(|t| t.attempt == attempt) {
                in_flight.remove(id);
            }
        }
        self.left.notify_waiters();
    }

    /// Resolves once no task is in flight: every handler returned and every outcome written.
    pub(crate) async fn no_task_in_flight(&self) {
        loop {
            let left = self.left.notified();
            tokio::pin!(left);
            // Registered before looking, so a removal in between is not missed.
            left.as_mut().enable();
            if self.in_flight().is_empty() {
                return;
            }
            left.await;
        }
    }

    /// Wakes every producer: after a listener (re)connect, notifications may have been missed.
    pub(crate) fn wake_all(&self) {
        for queue in self.queues.values() {
            queue.wake.notify_one();
        }
    }

    /// The poll interval spread by ±10 %, so idle pools started together do not poll in step.
    pub(crate) fn jittered_poll(&self) -> Duration {
        self.poll_interval.mul_f64(0.9 + 0.2 * random_fraction())
    }
}

/// A random number in [0, 1), from the standard library's randomly keyed hasher.
pub(crate) fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}
