//! The producer: one per queue. It claims tasks for the queue's free slots (and, when tasks
//! are short, a few more: see [`pace`](super::pace)) and starts an executor for each as slots
//! free.
//!
//! It claims when it has reason to think there is work: at start, when woken by a
//! notification for its queue, on its (jittered) poll tick, and when enough slots are free,
//! or about to be, to be worth a claim. One claim is in flight at a time; a burst of
//! notifications meanwhile collapses into one stored wake-up, so it costs one more query, not
//! one per notification. An idle producer sleeps until a notification or its tick.
//!
//! Rows claimed ahead wait in the producer's buffer. For the pool they are in flight
//! (heartbeated, cancellable, awaited at shutdown); in the table they are `running`, claimed
//! by this worker. They start in claim order as slots free. Rows that wait longer than
//! [`STALE_AFTER`] (the tasks turned out slower than measured) go back to the queue for other
//! workers, as does the whole buffer at shutdown.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{OwnedSemaphorePermit, TryAcquireError};
use tokio::time::Instant;

use super::ClaimAhead;
use super::events::WorkerEvent;
use super::executor::{self, Claimed};
use super::pace::Pace;
use super::pool::{PoolShared, QueueState};
use super::store::{self, ClaimedRow};
use crate::retry::BackoffPolicy;

/// Longest wait in the buffer before a row claimed ahead goes back to the queue.
pub(crate) const STALE_AFTER: Duration = Duration::from_millis(100);

/// Claims of one queue in flight at once.
const CLAIMS_IN_FLIGHT: usize = 2;

/// A claim's result, with the slots reserved for it.
struct ClaimDone {
    rows: crate::Result<Vec<ClaimedRow>>,
    slots: Option<OwnedSemaphorePermit>,
    asked: usize,
    began: Instant,
    /// The producer's wake-up count when the claim was sent.
    wakes: u64,
}

type ClaimFuture = Pin<Box<dyn Future<Output = ClaimDone> + Send>>;

/// A row claimed ahead, waiting for a slot.
struct Waiting {
    task: Claimed,
    since: Instant,
}

struct Producer {
    pool: Arc<PoolShared>,
    queue: Arc<QueueState>,
    buffer: VecDeque<Waiting>,
    pace: Pace,
    may_have_work: bool,
    failures: u32,
    /// After a failed claim: no claim before this.
    retry_at: Option<Instant>,
    next_poll: Instant,
    /// Rows asked for by the claims in flight.
    asked: usize,
    /// After rows claimed ahead waited too long: the queue's finished count then. Nothing is
    /// claimed ahead until a task finishes.
    stuck_at: Option<u64>,
    /// Wake-ups (notifications, poll ticks) so far. One that arrives while a claim is on its
    /// way may announce rows that claim could not see: a short claim does not then mean the
    /// queue is empty.
    wakes: u64,
}

pub(crate) async fn run(pool: Arc<PoolShared>, queue: Arc<QueueState>) {
    let mut shutdown = pool.shutdown.subscribe();
    let mut producer = Producer {
        next_poll: Instant::now() + pool.jittered_poll(),
        pool,
        queue,
        buffer: VecDeque::new(),
        pace: Pace::default(),
        may_have_work: true,
        failures: 0,
        retry_at: None,
        asked: 0,
        stuck_at: None,
        wakes: 0,
    };
    let mut claiming: FuturesUnordered<ClaimFuture> = FuturesUnordered::new();
    loop {
        if *shutdown.borrow_and_update() {
            break;
        }
        producer.start_waiting();
        if claiming.len() < CLAIMS_IN_FLIGHT
            && let Some(claim) = producer.next_claim()
        {
            claiming.push(claim);
        }
        let p = &mut producer;
        let stale_at = p.buffer.front().map(|w| w.since + STALE_AFTER);
        let wants_slot =
            !p.buffer.is_empty() || (p.may_have_work && claiming.len() < CLAIMS_IN_FLIGHT);
        tokio::select! {
            Some(done) = claiming.next(), if !claiming.is_empty() => {
                if p.claimed(done) {
                    // Let the tasks just started run before counting free slots again: short
                    // ones are over by then, and the next claim takes their slots too.
                    tokio::task::yield_now().await;
                }
            }
            _ = p.queue.slot_freed.notified(), if wants_slot => {}
            _ = p.queue.wake.notified() => p.woken(),
            _ = tokio::time::sleep_until(p.next_poll), if claiming.is_empty() => {
                p.woken();
                p.next_poll = Instant::now() + p.pool.jittered_poll();
            }
            _ = sleep_until(p.retry_at) => p.retry_at = None,
            _ = sleep_until(stale_at) => p.release_stale().await,
            _ = shutdown.changed() => {}
        }
    }
    while let Some(done) = claiming.next().await {
        producer.claimed(done);
    }
    let rest: Vec<Claimed> = producer.buffer.drain(..).map(|w| w.task).collect();
    producer.give_back(rest, true).await;
}

/// `deadline`, or never.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The fewest rows worth a claim while slots are busy: half the slots.
fn claim_batch(capacity: usize) -> usize {
    (capacity / 2).max(1)
}

/// `want` rounded down to a number with at most three significant bits (1–8, 10, 12, 14, 16,
/// 20, 24, 28, 32, 40, …). The limit is written into the claim's text (see
/// [`CLAIM`](super::sql::CLAIM)), and every distinct text is prepared and planned anew on each
/// connection: a few sizes keep that to a few statements.
fn claim_size(want: usize) -> usize {
    let bits = usize::BITS - want.leading_zeros();
    let dropped = bits.saturating_sub(3);
    (want >> dropped) << dropped
}

impl Producer {
    /// There may be work: claim again.
    fn woken(&mut self) {
        self.may_have_work = true;
        self.wakes += 1;
    }

    /// Rows to claim beyond the free slots now.
    fn ahead(&mut self) -> usize {
        let finished = self.queue.finished.load(Ordering::Relaxed);
        if self.stuck_at.is_some_and(|at| at == finished) {
            return 0;
        }
        self.stuck_at = None;
        match self.pool.claim_ahead {
            ClaimAhead::Measured => self.pace.ahead(self.queue.group.capacity * 2),
            ClaimAhead::Off => 0,
            ClaimAhead::Fixed(n) => n,
        }
    }

    /// Starts waiting rows in the slots free now.
    fn start_waiting(&mut self) {
        while !self.buffer.is_empty() {
            let Ok(slot) = Arc::clone(&self.queue.group.slots).try_acquire_owned() else {
                return;
            };
            let Some(waiting) = self.buffer.pop_front() else {
                return;
            };
            self.pool.claimed_ahead.fetch_sub(1, Ordering::Relaxed);
            executor::spawn(
                Arc::clone(&self.pool),
                Arc::clone(&self.queue),
                waiting.task,
                slot,
            );
        }
    }

    /// Starts a claim if one is worth it: for the free slots and the rows expected to be
    /// needed within one round trip, less those already waiting. The free slots are
    /// reserved for it, so other queues of the group cannot take them meanwhile.
    fn next_claim(&mut self) -> Option<ClaimFuture> {
        if !self.may_have_work || self.retry_at.is_some() || self.pool.is_shutting_down() {
            return None;
        }
        let ahead = self.ahead();
        let group = &self.queue.group;
        let (want, slots) = loop {
            let free = group.slots.available_permits();
            let want = (free + ahead).saturating_sub(self.buffer.len() + self.asked);
            // An idle pool claims at once (pickup latency); a busy one waits until a claim
            // would fill half its slots (or half the rows it claims ahead), rather than one
            // claim per freed slot.
            let idle = free == group.capacity && self.buffer.is_empty();
            if want == 0 || (!idle && want < claim_batch(group.capacity).max(ahead / 2)) {
                return None;
            }
            let want = claim_size(want);
            let reserve = free.min(want);
            if reserve == 0 {
                break (want, None);
            }
            match Arc::clone(&group.slots).try_acquire_many_owned(reserve as u32) {
                Ok(slots) => break (want, Some(slots)),
                // Another queue of the group took some; count again.
                Err(TryAcquireError::NoPermits) => continue,
                Err(TryAcquireError::Closed) => return None,
            }
        };
        self.asked += want;
        let wakes = self.wakes;
        let pool = Arc::clone(&self.pool);
        let queue = Arc::clone(&self.queue);
        Some(Box::pin(async move {
            let began = Instant::now();
            let rows = store::claim(
                pool.tasks.db(),
                &queue.name,
                &pool.names,
                want,
                &pool.worker_id,
                pool.lock_timeout,
                None,
            )
            .await;
            ClaimDone {
                rows,
                slots,
                asked: want,
                began,
                wakes,
            }
        }))
    }

    /// Takes a claim's rows: the first ones start in the reserved slots, the rest wait.
    /// At shutdown they all wait, to be given back. True when tasks started.
    fn claimed(&mut self, done: ClaimDone) -> bool {
        let ClaimDone {
            rows,
            mut slots,
            asked,
            began,
            wakes,
        } = done;
        self.asked -= asked;
        self.next_poll = Instant::now() + self.pool.jittered_poll();
        let rows = match rows {
            Ok(rows) => rows,
            Err(error) => {
                drop(slots);
                self.failures += 1;
                let delay = BackoffPolicy::reconnect()
                    .delay(self.failures)
                    .min(self.pool.poll_interval.max(Duration::from_secs(1)));
                tracing::warn!(queue = %self.queue.name, error = %crate::task::error_chain(&error), retry_in = ?delay, "claiming tasks failed");
                self.retry_at = Some(Instant::now() + delay);
                return false;
            }
        };
        self.failures = 0;
        self.pool.stats.record_claim(rows.len());
        // A full claim may have left rows behind; a short one means the queue had no more,
        // unless a wake-up came while it was on its way.
        self.may_have_work = rows.len() == asked || self.wakes != wakes;
        self.pace.observe(
            began.elapsed(),
            Instant::now().into_std(),
            self.queue.finished.load(Ordering::Relaxed),
        );
        if self.pool.is_shutting_down() {
            slots = None;
        }
        let mut started = false;
        for row in rows {
            let cancelled = self.pool.hold(row.id, row.cancel_requested);
            let task = Claimed { row, cancelled };
            match slots.as_mut().and_then(|s| s.split(1)) {
                Some(slot) => {
                    started = true;
                    executor::spawn(Arc::clone(&self.pool), Arc::clone(&self.queue), task, slot);
                }
                None => {
                    self.pool.claimed_ahead.fetch_add(1, Ordering::Relaxed);
                    self.buffer.push_back(Waiting {
                        task,
                        since: Instant::now(),
                    });
                }
            }
        }
        // Reserved slots the claim did not fill go back.
        if let Some(slots) = slots {
            self.queue.group.give_back(slots);
        }
        started
    }

    /// Gives back the rows that waited too long, and stops claiming ahead until the pace is
    /// measured again.
    async fn release_stale(&mut self) {
        let now = Instant::now();
        let mut stale = Vec::new();
        while let Some(waiting) = self.buffer.front()
            && waiting.since + STALE_AFTER <= now
        {
            if let Some(waiting) = self.buffer.pop_front() {
                stale.push(waiting.task);
            }
        }
        self.pace.slow_down();
        self.stuck_at = Some(self.queue.finished.load(Ordering::Relaxed));
        self.give_back(stale, false).await;
    }

    /// Hands held rows back to the queue untouched (the attempt does not count).
    async fn give_back(&self, tasks: Vec<Claimed>, at_shutdown: bool) {
        if tasks.is_empty() {
            return;
        }
        let ids: Vec<_> = tasks.iter().map(|t| t.row.id).collect();
        let queue = &self.queue.name;
        let returned = match store::release(self.pool.tasks.db(), ids.clone(), &self.pool.worker_id)
            .await
        {
            Ok(n) if at_shutdown => {
                tracing::info!(%queue, released = n, "returned claimed tasks to the queue at shutdown");
                true
            }
            Ok(n) => {
                tracing::debug!(%queue, released = n, "returned tasks claimed ahead that waited too long");
                true
            }
            Err(error) => {
                tracing::warn!(%queue, error = %crate::task::error_chain(&error), "could not return claimed tasks to the queue; they will be rescued when their lock expires");
                false
            }
        };
        self.pool
            .claimed_ahead
            .fetch_sub(ids.len(), Ordering::Relaxed);
        for id in &ids {
            self.pool.finished(id);
        }
        if returned {
            self.pool
                .emit(WorkerEvent::TasksReturned { ids, at_shutdown });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_sizes_are_few_and_never_larger_than_wanted() {
        let sizes: Vec<usize> = (1..=32).map(claim_size).collect();
        assert_eq!(&sizes[..10], &[1, 2, 3, 4, 5, 6, 7, 8, 8, 10]);
        for want in 1..=10_000 {
            let size = claim_size(want);
            assert!(size <= want && size * 5 / 4 >= want - 1, "{want} -> {size}");
        }
        let mut distinct = sizes.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), 16, "{distinct:?}");
    }
}
