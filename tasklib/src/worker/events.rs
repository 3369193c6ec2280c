//! Events a worker pool reports, for metrics, logging hooks and tests.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// What happened to one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskOutcome {
    /// The handler succeeded; the result is stored.
    Completed,
    /// The attempt failed and the task will run again after this delay.
    Retrying {
        /// Delay before the next attempt.
        delay: Duration,
    },
    /// The attempt failed and the task will not run again.
    Failed,
    /// The task was cancelled (by its handler, or on request while it ran).
    Cancelled,
    /// The handler snoozed: the task runs again after this delay, without using a retry.
    Snoozed {
        /// Delay before the next attempt.
        delay: Duration,
    },
    /// The outcome could not be written because this worker no longer held the task (its
    /// lock expired and it was rescued, or the write kept failing): the task's row
    /// reflects what happened instead.
    Lost,
}

/// Something a worker pool did. Subscribe with
/// [`WorkerPool::subscribe`](crate::WorkerPool::subscribe).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerEvent {
    /// A task was claimed and its handler started.
    TaskStarted {
        /// The task.
        id: Uuid,
        /// Its name.
        name: String,
        /// Attempt number, from 1.
        attempt: u32,
    },
    /// An attempt ended and its outcome was written.
    TaskFinished {
        /// The task.
        id: Uuid,
        /// Its name.
        name: String,
        /// What was written.
        outcome: TaskOutcome,
        /// How long the handler ran.
        duration: Duration,
    },
    /// A task whose worker stopped heartbeating was made runnable again (or failed for good
    /// when it had no retries left).
    TaskRescued {
        /// The task.
        id: Uuid,
        /// Whether it will run again.
        retrying: bool,
        /// Whether the lost attempt had started. False for a task the dead worker had only
        /// claimed ahead: it went back to the queue and the attempt does not count.
        started: bool,
    },
    /// Tasks this pool had claimed but not started went back to the queue, their attempt
    /// not counted: tasks claimed ahead of a free slot that waited too long (the running
    /// ones turned out slow), or every such task at shutdown.
    TasksReturned {
        /// The tasks handed back.
        ids: Vec<Uuid>,
        /// True when the pool was shutting down.
        at_shutdown: bool,
    },
    /// Retention deleted old finished tasks.
    TasksPruned {
        /// How many.
        count: u64,
    },
    /// This pool claimed a tick of a schedule ([`Schedule`](crate::Schedule)): of all the
    /// pools running the schedule, only the one that claimed a tick reports it.
    ScheduleTicked {
        /// The schedule's name.
        schedule: String,
        /// The tick (UTC).
        tick: DateTime<Utc>,
        /// The task it submitted; `None` for a missed tick that the schedule skips.
        task: Option<Uuid>,
    },
    /// The notification listener connected (first time or after a reconnect). Producers
    /// fetch at once afterwards, since notifications sent while it was down are lost.
    ListenerConnected,
    /// The notification listener lost its connection; polling continues meanwhile.
    ListenerDisconnected {
        /// Why, as the driver put it.
        reason: String,
    },
}
