//! What an operator looks at: each queue's open tasks and recent throughput, and the live
//! worker pools. Cheap enough to poll on a table of millions of rows: the counts read only
//! unfinished rows and the finished rows of the last minutes, each through an index.
//! PostgreSQL only.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::QueueLimits;

/// One queue now: [`TaskLib::queue_overview`](crate::TaskLib::queue_overview).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct QueueOverview {
    /// The queue.
    pub queue: String,
    /// Pending and due.
    pub due: u64,
    /// Pending, due later (a delay or a snooze).
    pub scheduled: u64,
    /// Running, or claimed by a worker ahead of a free slot.
    pub running: u64,
    /// Failed, waiting for a retry.
    pub retrying: u64,
    /// Failed for good.
    pub failed: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// How long the oldest due pending task has waited.
    pub oldest_due_age: Option<Duration>,
    /// Paused: it takes submits and runs nothing.
    pub paused: bool,
    /// Its cluster-wide limits.
    pub limits: QueueLimits,
    /// Tasks that finished in each of the last minutes, oldest first; the last entry is the
    /// current (partial) minute.
    pub finished: Vec<MinuteCounts>,
}

/// How many tasks of a queue finished in one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MinuteCounts {
    /// The minute's start.
    pub minute: DateTime<Utc>,
    /// Completed in that minute.
    pub completed: u64,
    /// Failed for good in that minute.
    pub failed: u64,
    /// Cancelled in that minute.
    pub cancelled: u64,
}

/// A worker pool that is running now (it heartbeated within its lock timeout):
/// [`TaskLib::workers`](crate::TaskLib::workers).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// The pool's own id (one process may run several pools).
    pub pool_id: Uuid,
    /// The worker id its tasks carry ([`ConfigBuilder::worker_id`](crate::ConfigBuilder::worker_id)).
    pub worker_id: String,
    /// The machine's host name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// Its queues, grouped as they share slots.
    pub queues: Vec<QueueSlots>,
    /// All its slots.
    pub slots: u64,
    /// Tasks running under its worker id now.
    pub running: u64,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub heartbeat_at: DateTime<Utc>,
    /// When it drops off the list unless it heartbeats again.
    pub expires_at: DateTime<Utc>,
}

/// Queues that share slots in a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct QueueSlots {
    /// The queues.
    pub queues: Vec<String>,
    /// Their shared slots.
    pub slots: u64,
}

/// The longest window [`TaskLib::queue_overview`](crate::TaskLib::queue_overview) accepts:
/// a day of minutes.
pub const MAX_OVERVIEW_MINUTES: u32 = 24 * 60;

impl crate::TaskLib {
    /// Each queue that has unfinished tasks, tasks finished in the last `minutes`, a pause or
    /// limits: its open tasks by state, its lag, and what finished minute by minute. Reads
    /// only unfinished rows and the last minutes' finished ones, through indexes, so it stays
    /// cheap on large tables (the dashboard polls it). PostgreSQL only.
    ///
    /// # Errors
    /// [`Error::InvalidOption`](crate::Error::InvalidOption) for `minutes` outside 1 to
    /// [`MAX_OVERVIEW_MINUTES`]; [`Error::Database`](crate::Error::Database) when the query
    /// fails; [`Error::Unsupported`](crate::Error::Unsupported) on other engines.
    pub async fn queue_overview(&self, minutes: u32) -> crate::Result<Vec<QueueOverview>> {
        let engine = self.postgres(crate::Capability::List)?;
        crate::engine::postgres::overview::queues(engine.db(), minutes).await
    }

    /// The worker pools running now, on every machine: each pool writes a row when it starts,
    /// refreshes it at each heartbeat and deletes it when it stops; one that stops
    /// heartbeating drops off once its lock timeout passes. PostgreSQL only.
    ///
    /// # Errors
    /// [`Error::Database`](crate::Error::Database) when the query fails;
    /// [`Error::Unsupported`](crate::Error::Unsupported) on other engines.
    pub async fn workers(&self) -> crate::Result<Vec<WorkerInfo>> {
        let engine = self.postgres(crate::Capability::List)?;
        crate::engine::postgres::overview::workers(engine.db()).await
    }
}
