//! The producer: one per queue. It claims tasks for the queue's free slots (and, when tasks
//! are short, a few more: see [`pace`](super::pace)) and starts an executor for each as slots
//! free.
//!
//! It claims when it has reason to think there is work: at start, when woken by a
//! notification for its queue, on its (jittered) poll tick, and when enough slots are free,
//! or about to be, to be worth a claim. At most [`CLAIMS_IN_FLIGHT`] claims are on their way
//! at once; a burst of notifications meanwhile collapses into one stored wake-up, so it costs
//! one more query, not one per notification. An idle producer sleeps until a notification or
//! its tick.
//!
//! Rows claimed ahead wait in the producer's buffer. For the pool they are in flight
//! (heartbeated, cancellable, awaited at shutdown); in the table they are `running`, claimed
//! by this worker, but not started (`started_at` is null). They start in claim order as slots
//! free, each after one statement marks it started ([`MARK_STARTED`](super::sql::MARK_STARTED),
//! batched for the rows that start together): if this worker dies, the rows it claimed ahead
//! and never started go back to the queue without counting as an attempt, while a row that
//! was running counts (a task that kills its worker must not be retried for ever). Rows that
//! wait longer than [`STALE_AFTER`] (the tasks turned out slower than measured) go back to the
//! queue for other workers, as does the whole buffer at shutdown.

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
use uuid::Uuid;

use super::executor::{self, Claimed};
use super::pace::Pace;
use super::pool::{PoolShared, QueueState};
use super::store::{self, ClaimedRow};
use crate::retry::BackoffPolicy;
use crate::worker::{ClaimAhead, WorkerEvent};

/// Longest wait in the buffer before a row claimed ahead goes back to the queue.
pub(crate) const STALE_AFTER: Duration = Duration::from_millis(100);

/// Tries to hand claimed tasks back at shutdown before leaving them to lock expiry.
const SHUTDOWN_RELEASE_TRIES: u32 = 3;

/// Claims of one queue in flight at once.
const CLAIMS_IN_FLIGHT: usize = 2;

/// Longest wait before a limited queue whose last claim came back short claims again.
const LIMITED_RECHECK: Duration = Duration::from_millis(250);

/// A claim's result, with the slots reserved for it.
struct ClaimDone {
    rows: crate::Result<Vec<ClaimedRow>>,
    slots: Option<OwnedSemaphorePermit>,
    asked: usize,
    /// How many of the rows asked for have a reserved slot.
    reserved: usize,
    began: Instant,
    /// The producer's wake-up count when the claim was sent.
    wakes: u64,
}

type ClaimFuture = Pin<Box<dyn Future<Output = ClaimDone> + Send>>;

/// A place in the line for the group's next free slot.
type SlotFuture =
    Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, tokio::sync::AcquireError>> + Send>>;

/// Rows on their way back to the queue, and the ids the database took back.
type ReleaseFuture = Pin<Box<dyn Future<Output = (Vec<Claimed>, crate::Result<Vec<Uuid>>)> + Send>>;

/// Rows claimed ahead about to start, with their slots, and the ids the database marked
/// started.
type MarkFuture = Pin<Box<dyn Future<Output = (Vec<Starting>, crate::Result<Vec<Uuid>>)> + Send>>;

/// A row claimed ahead with the slot it starts in, once marked started.
struct Starting {
    task: Claimed,
    slot: OwnedSemaphorePermit,
}

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
    /// Claims in flight.
    claims: usize,
    /// Rows claimed ahead whose start is being marked.
    marking: usize,
    /// Rows asked for by the claims in flight beyond their reserved slots.
    asked_ahead: usize,
    /// Tasks this producer started; with the queue's finished count, how many run now.
    started: u64,
    /// After rows claimed ahead waited too long: the queue's finished count then. Nothing is
    /// claimed ahead again until as many tasks as there are slots have finished.
    stuck_at: Option<u64>,
    /// A slot this queue waited for in the semaphore's line (see [`hungry`](Self::hungry)).
    held: Option<OwnedSemaphorePermit>,
    /// Wake-ups (notifications, poll ticks) so far. One that arrives while a claim is on its
    /// way may announce rows that claim could not see: a short claim does not then mean the
    /// queue is empty.
    wakes: u64,
}

pub(crate) async fn run(pool: Arc<PoolShared>, queue: Arc<QueueState>) {
    let mut shutdown = pool.lifeline.on_stop();
    let mut producer = Producer {
        next_poll: Instant::now() + pool.jittered_poll(),
        pool,
        queue,
        buffer: VecDeque::new(),
        pace: Pace::default(),
        may_have_work: true,
        failures: 0,
        retry_at: None,
        claims: 0,
        marking: 0,
        asked_ahead: 0,
        started: 0,
        stuck_at: None,
        held: None,
        wakes: 0,
    };
    let mut claiming: FuturesUnordered<ClaimFuture> = FuturesUnordered::new();
    let mut marking: FuturesUnordered<MarkFuture> = FuturesUnordered::new();
    let mut releasing: Option<ReleaseFuture> = None;
    let mut in_line: Option<SlotFuture> = None;
    // A queue paused before the pool started must not run a single task.
    let shared = Arc::clone(&producer.pool);
    tokio::select! {
        _ = shared.pauses_loaded.get_or_init(|| super::queue_flags::refresh(Arc::clone(&shared))) => {}
        _ = shutdown.changed() => {}
    }
    loop {
        if *shutdown.borrow_and_update() {
            break;
        }
        producer.start_waiting(&mut marking);
        if claiming.len() < CLAIMS_IN_FLIGHT
            && let Some(claim) = producer.next_claim()
        {
            claiming.push(claim);
        }
        let p = &mut producer;
        // Keeps its place in the line across turns of the loop; leaves it when no longer
        // hungry.
        if !p.hungry() {
            in_line = None;
        } else if in_line.is_none() {
            in_line = Some(Box::pin(Arc::clone(&p.queue.group.slots).acquire_owned()));
        }
        let stale_at = p
            .buffer
            .front()
            .filter(|_| releasing.is_none())
            .map(|w| w.since + STALE_AFTER);
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
            Some((rows, marked)) = marking.next(), if !marking.is_empty() => {
                p.marked(rows, marked);
            }
            slot = in_progress(&mut in_line) => {
                in_line = None;
                p.held = slot.ok();
            }
            (tasks, released) = in_progress(&mut releasing) => {
                releasing = None;
                p.returned(tasks, released);
            }
            _ = p.queue.slot_freed.notified(), if wants_slot => {}
            _ = p.queue.wake.notified() => p.woken(),
            _ = tokio::time::sleep_until(p.next_poll), if claiming.is_empty() => {
                p.woken();
                p.next_poll = Instant::now() + p.pool.jittered_poll();
            }
            _ = sleep_until(p.retry_at) => p.retry_at = None,
            _ = sleep_until(stale_at) => releasing = p.release_stale(&mut marking),
            _ = shutdown.changed() => {}
        }
    }
    if let Some(release) = releasing {
        let (tasks, released) = release.await;
        producer.returned(tasks, released);
    }
    while let Some(done) = claiming.next().await {
        producer.claimed(done);
    }
    while let Some((rows, marked)) = marking.next().await {
        producer.marked(rows, marked);
    }
    if let Some(held) = producer.held.take() {
        producer.queue.group.give_back(held);
    }
    producer.give_back_at_shutdown().await;
}

/// The future in `slot` to its end, or never when there is none.
async fn in_progress<T>(slot: &mut Option<Pin<Box<dyn Future<Output = T> + Send>>>) -> T {
    match slot {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
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

    /// Whether this queue has work, nothing under way, and no free slot to claim for: the
    /// other queues of its group hold them all. It then waits in the semaphore's line, which
    /// is first served, so the next slot freed is its own, not taken at once for a row
    /// another queue claimed ahead.
    fn hungry(&self) -> bool {
        !self.paused()
            && self.may_have_work
            && self.held.is_none()
            && self.retry_at.is_none()
            && self.idle()
            && self.queue.group.slots.available_permits() == 0
            && !self.pool.is_shutting_down()
    }

    /// Nothing of this queue's is running, waiting or being claimed.
    fn idle(&self) -> bool {
        let running = self
            .started
            .saturating_sub(self.queue.finished.load(Ordering::Relaxed));
        running == 0 && self.buffer.is_empty() && self.claims == 0 && self.marking == 0
    }

    /// Rows to claim beyond the free slots now.
    fn ahead(&mut self) -> usize {
        let finished = self.queue.finished.load(Ordering::Relaxed);
        let turnover = self.queue.group.capacity as u64;
        if self
            .stuck_at
            .is_some_and(|at| finished < at.saturating_add(turnover))
        {
            return 0;
        }
        self.stuck_at = None;
        if self.limited() {
            // A row claimed ahead counts against the limits while it waits: claim only for
            // the free slots.
            return 0;
        }
        match self.pool.claim_ahead {
            ClaimAhead::Measured => self.pace.ahead(self.queue.group.capacity * 2),
            ClaimAhead::Off => 0,
            ClaimAhead::Fixed(n) => n,
        }
    }

    /// The queue is paused: claim nothing, start nothing (rows claimed ahead go back once
    /// they are stale).
    fn paused(&self) -> bool {
        self.queue.paused.load(Ordering::SeqCst)
    }

    /// The queue has cluster-wide limits: claims go through
    /// [`CLAIM_LIMITED`](super::sql::CLAIM_LIMITED).
    fn limited(&self) -> bool {
        self.queue.limited.load(Ordering::SeqCst)
    }

    /// Takes slots free now for waiting rows, and marks those rows started (one statement
    /// for all, pushed onto `marking`); each starts when its mark is back.
    fn start_waiting(&mut self, marking: &mut FuturesUnordered<MarkFuture>) {
        if self.paused() {
            return;
        }
        let mut starting = Vec::new();
        while !self.buffer.is_empty() {
            let Ok(slot) = Arc::clone(&self.queue.group.slots).try_acquire_owned() else {
                break;
            };
            let Some(waiting) = self.buffer.pop_front() else {
                self.queue.group.give_back(slot);
                break;
            };
            self.pool.claimed_ahead.fetch_sub(1, Ordering::Relaxed);
            if waiting.task.row.started {
                // Marked by its claim (it waited only because its slot went back at a
                // shutdown that did not come): nothing to mark.
                self.start(waiting.task, slot);
            } else {
                starting.push(Starting {
                    task: waiting.task,
                    slot,
                });
            }
        }
        if starting.is_empty() {
            return;
        }
        self.marking += starting.len();
        let pool = Arc::clone(&self.pool);
        marking.push(Box::pin(async move {
            let attempts = starting.iter().map(|s| (s.task.row.id, s.task.row.attempt));
            let marked = store::mark_started(&pool.db, attempts, &pool.worker_id).await;
            (starting, marked)
        }));
    }

    /// Starts a marked row in its slot.
    fn start(&mut self, task: Claimed, slot: OwnedSemaphorePermit) {
        self.started += 1;
        executor::spawn(Arc::clone(&self.pool), Arc::clone(&self.queue), task, slot);
    }

    /// The end of a mark: the rows marked start; a row not marked was taken from this worker
    /// since its claim (its lock expired, or it was released) and is let go. When the mark
    /// failed, or the pool is shutting down, the rows wait again (to start later, or to be
    /// given back).
    fn marked(&mut self, rows: Vec<Starting>, marked: crate::Result<Vec<Uuid>>) {
        self.marking -= rows.len();
        let marked = match marked {
            Ok(ids) if !self.pool.is_shutting_down() => ids,
            outcome => {
                if let Err(error) = outcome {
                    tracing::warn!(queue = %self.queue.name, error = %crate::task::error_chain(&error), "marking tasks claimed ahead as started failed; they wait");
                }
                let now = Instant::now();
                for Starting { task, slot } in rows.into_iter().rev() {
                    self.queue.group.give_back(slot);
                    self.pool.claimed_ahead.fetch_add(1, Ordering::Relaxed);
                    self.buffer.push_front(Waiting { task, since: now });
                }
                return;
            }
        };
        for Starting { task, slot } in rows {
            if marked.contains(&task.row.id) {
                self.start(task, slot);
            } else {
                tracing::debug!(task.id = %task.row.id, "a task claimed ahead was taken from this worker before it started");
                self.queue.group.give_back(slot);
                self.pool.finished(&task.row.id, task.row.attempt);
            }
        }
    }

    /// Starts a claim if one is worth it: for the free slots and the rows expected to be
    /// needed within one round trip, less those already waiting. The free slots are
    /// reserved for it, so other queues of the group cannot take them meanwhile.
    fn next_claim(&mut self) -> Option<ClaimFuture> {
        if !self.may_have_work
            || self.retry_at.is_some()
            || self.pool.is_shutting_down()
            || self.paused()
        {
            if let Some(held) = self.held.take() {
                self.queue.group.give_back(held);
            }
            return None;
        }
        let ahead = self.ahead();
        let group = &self.queue.group;
        // A queue with nothing of its own under way claims for any free slot: at once when
        // the pool is idle (pickup latency), and without waiting for half the slots when
        // other queues of its group keep them busy (it would never see half of them free).
        // A busy queue waits until a claim would fill half the slots (or half the rows it
        // claims ahead), rather than one claim per freed slot.
        let idle = self.idle();
        let least = if idle {
            1
        } else {
            claim_batch(group.capacity).max(ahead / 2)
        };
        let held = usize::from(self.held.is_some());
        let (want, reserve, slots) = loop {
            let free = group.slots.available_permits() + held;
            let want = (free + ahead).saturating_sub(self.buffer.len() + self.asked_ahead);
            if want < least {
                if let Some(held) = self.held.take() {
                    group.give_back(held);
                }
                return None;
            }
            let want = claim_size(want);
            let reserve = free.min(want);
            // The slot waited for in line counts among those reserved; take the rest now.
            let more = match reserve - held {
                0 => None,
                more => match Arc::clone(&group.slots).try_acquire_many_owned(more as u32) {
                    Ok(more) => Some(more),
                    // Another queue of the group took some; count again.
                    Err(TryAcquireError::NoPermits) => continue,
                    Err(TryAcquireError::Closed) => return None,
                },
            };
            let slots = match (self.held.take(), more) {
                (Some(mut held), Some(more)) => {
                    held.merge(more);
                    Some(held)
                }
                (held, more) => held.or(more),
            };
            break (want, reserve, slots);
        };
        self.claims += 1;
        self.asked_ahead += want - reserve;
        let wakes = self.wakes;
        let pool = Arc::clone(&self.pool);
        let queue = Arc::clone(&self.queue);
        let limited = self.limited();
        Some(Box::pin(async move {
            let began = Instant::now();
            let rows = store::claim(
                &pool.db,
                &queue.name,
                &pool.names,
                store::ClaimSize {
                    limit: want,
                    reserved: reserve,
                },
                &pool.worker_id,
                pool.lock_timeout,
                limited,
            )
            .await;
            ClaimDone {
                rows,
                slots,
                asked: want,
                reserved: reserve,
                began,
                wakes,
            }
        }))
    }

    /// Takes a claim's rows: those it marked started take the reserved slots, the rest wait.
    /// At shutdown they all wait, to be given back. True when tasks started.
    fn claimed(&mut self, done: ClaimDone) -> bool {
        let ClaimDone {
            rows,
            mut slots,
            asked,
            reserved,
            began,
            wakes,
        } = done;
        self.claims -= 1;
        self.asked_ahead -= asked - reserved;
        let now = Instant::now();
        self.next_poll = now + self.pool.jittered_poll();
        if self.limited()
            && let Ok(rows) = &rows
            && rows.len() < asked
        {
            // The limits may have held rows back: a slot freed in another process, or the
            // next rate window, says nothing here. Look again soon.
            self.next_poll = self.next_poll.min(now + LIMITED_RECHECK);
        }
        let rows = match rows {
            Ok(rows) => rows,
            Err(error) => {
                if let Some(slots) = slots {
                    self.queue.group.give_back(slots);
                }
                self.pool
                    .lifeline
                    .unreachable(&crate::task::error_chain(&error));
                self.failures += 1;
                let delay = BackoffPolicy::reconnect()
                    .delay(self.failures)
                    .min(self.pool.poll_interval.max(Duration::from_secs(1)));
                tracing::warn!(queue = %self.queue.name, error = %crate::task::error_chain(&error), retry_in = ?delay, "claiming tasks failed");
                self.retry_at = Some(now + delay);
                return false;
            }
        };
        self.failures = 0;
        self.pool.lifeline.reached();
        self.pool.stats.record_claim(rows.len());
        // A full claim may have left rows behind; a short one means the queue had no more,
        // unless a wake-up came while it was on its way.
        self.may_have_work = rows.len() == asked || self.wakes != wakes;
        self.pace.observe(
            now.saturating_duration_since(began),
            now.into_std(),
            self.queue.finished.load(Ordering::Relaxed),
        );
        if self.pool.is_shutting_down()
            && let Some(reserved) = slots.take()
        {
            self.queue.group.give_back(reserved);
        }
        let mut started = false;
        let cancels = self.pool.hold(&rows);
        for (row, cancelled) in rows.into_iter().zip(cancels) {
            // The claim marked as many rows started as it had slots reserved.
            let slot = match row.started {
                true => slots.as_mut().and_then(|s| s.split(1)),
                false => None,
            };
            let task = Claimed { row, cancelled };
            match slot {
                Some(slot) => {
                    started = true;
                    self.start(task, slot);
                }
                None => {
                    self.pool.claimed_ahead.fetch_add(1, Ordering::Relaxed);
                    self.buffer.push_back(Waiting { task, since: now });
                }
            }
        }
        // Reserved slots the claim did not fill go back.
        if let Some(slots) = slots {
            self.queue.group.give_back(slots);
        }
        started
    }

    /// Sends back the rows that waited too long (after starting what free slots allow),
    /// and stops claiming ahead for a while (see [`ahead`](Self::ahead)). The release runs
    /// beside the loop, so claims in flight keep being read meanwhile.
    fn release_stale(
        &mut self,
        marking: &mut FuturesUnordered<MarkFuture>,
    ) -> Option<ReleaseFuture> {
        self.start_waiting(marking);
        let now = Instant::now();
        let mut stale = Vec::new();
        while let Some(waiting) = self.buffer.front()
            && waiting.since + STALE_AFTER <= now
        {
            if let Some(waiting) = self.buffer.pop_front() {
                stale.push(waiting.task);
            }
        }
        if stale.is_empty() {
            return None;
        }
        self.pace.slow_down();
        self.stuck_at = Some(self.queue.finished.load(Ordering::Relaxed));
        let pool = Arc::clone(&self.pool);
        Some(Box::pin(async move {
            let released = release(&pool, &stale).await;
            (stale, released)
        }))
    }

    /// The end of a release of rows claimed ahead. Rows the database did not take back were
    /// no longer ours (rescued and claimed again elsewhere): they are dropped too. When the
    /// release failed, the rows are kept: they start when a slot frees, or go back later.
    fn returned(&mut self, tasks: Vec<Claimed>, released: crate::Result<Vec<Uuid>>) {
        match released {
            Ok(ids) => {
                tracing::debug!(queue = %self.queue.name, released = ids.len(), "returned tasks claimed ahead that waited too long");
                self.let_go(&tasks, ids, false);
            }
            Err(error) => {
                tracing::warn!(queue = %self.queue.name, error = %crate::task::error_chain(&error), "could not return tasks claimed ahead to the queue; keeping them");
                let now = Instant::now();
                for task in tasks.into_iter().rev() {
                    self.buffer.push_front(Waiting { task, since: now });
                }
            }
        }
    }

    /// At shutdown: hands every held row back, trying a few times. Rows that cannot be handed
    /// back are rescued when their lock expires (which counts as an attempt).
    async fn give_back_at_shutdown(&mut self) {
        let tasks: Vec<Claimed> = self.buffer.drain(..).map(|w| w.task).collect();
        if tasks.is_empty() {
            return;
        }
        let mut tries = 0;
        let ids = loop {
            tries += 1;
            match release(&self.pool, &tasks).await {
                Ok(ids) => break ids,
                Err(error) if tries < SHUTDOWN_RELEASE_TRIES => {
                    tracing::warn!(queue = %self.queue.name, error = %crate::task::error_chain(&error), "returning claimed tasks at shutdown failed; trying again");
                    tokio::time::sleep(BackoffPolicy::reconnect().delay(tries)).await;
                }
                Err(error) => {
                    tracing::warn!(queue = %self.queue.name, error = %crate::task::error_chain(&error), "could not return claimed tasks at shutdown; they will be rescued when their lock expires");
                    break Vec::new();
                }
            }
        };
        tracing::info!(queue = %self.queue.name, released = ids.len(), "returned claimed tasks to the queue at shutdown");
        self.let_go(&tasks, ids, true);
    }

    /// Stops holding `tasks`; `released` of them went back to the queue.
    fn let_go(&self, tasks: &[Claimed], released: Vec<Uuid>, at_shutdown: bool) {
        self.pool
            .claimed_ahead
            .fetch_sub(tasks.len(), Ordering::Relaxed);
        for task in tasks {
            self.pool.finished(&task.row.id, task.row.attempt);
        }
        if !released.is_empty() {
            self.pool.emit(WorkerEvent::TasksReturned {
                ids: released,
                at_shutdown,
            });
        }
    }
}

/// Hands claimed, unstarted attempts back to the queue; the ids that went back.
async fn release(pool: &PoolShared, tasks: &[Claimed]) -> crate::Result<Vec<Uuid>> {
    let attempts = tasks.iter().map(|t| (t.row.id, t.row.attempt));
    store::release(&pool.db, attempts, &pool.worker_id).await
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
