//! Reading tasks back: filters for lists with keyset pagination, and counts by state.

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::TaskState;

/// Largest page [`TaskFilter::limit`] accepts.
pub const MAX_LIST_LIMIT: u64 = 10_000;
/// Page size when none is set.
pub const DEFAULT_LIST_LIMIT: u64 = 100;

/// Which tasks to list. Results come newest first (by id, which is time-ordered), so pages
/// are stable while new tasks arrive: pass the last id of a page to
/// [`before`](Self::before) to get the next one.
///
/// ```
/// use serde_json::json;
/// use tasklib::{TaskFilter, TaskState};
///
/// let filter = TaskFilter::new()
///     .state(TaskState::Failed)
///     .name("send_email")
///     .tags(json!({"batch": "weekly"}))
///     .limit(50);
/// ```
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub(crate) states: Vec<TaskState>,
    pub(crate) name: Option<String>,
    pub(crate) queue: Option<String>,
    pub(crate) tags: Option<Value>,
    pub(crate) before: Option<Uuid>,
    pub(crate) chain: Option<Uuid>,
    pub(crate) limit: Option<u64>,
}

impl TaskFilter {
    /// All tasks, newest first, [`DEFAULT_LIST_LIMIT`] at a time.
    pub fn new() -> Self {
        Self::default()
    }
    /// Only tasks in this state (call again to allow several states).
    pub fn state(mut self, state: TaskState) -> Self {
        self.states.push(state);
        self
    }
    /// Only tasks of this name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Only tasks of this queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }
    /// Only tasks whose tags contain this JSON object (`tags @> filter`): `{"batch":
    /// "weekly"}` matches every task tagged with at least that key and value.
    pub fn tags(mut self, tags: Value) -> Self {
        self.tags = Some(tags);
        self
    }
    /// Only the steps of this chain (its [`ChainIds::id`](crate::ChainIds::id)).
    pub fn chain(mut self, chain_id: Uuid) -> Self {
        self.chain = Some(chain_id);
        self
    }
    /// Only tasks older than this id: the cursor for the next page.
    pub fn before(mut self, id: Uuid) -> Self {
        self.before = Some(id);
        self
    }
    /// At most this many (1 to [`MAX_LIST_LIMIT`]). Defaults to [`DEFAULT_LIST_LIMIT`].
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }
}

/// How many tasks are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TaskCounts {
    /// Waiting to run, including those scheduled later.
    pub pending: u64,
    /// Running now.
    pub running: u64,
    /// Completed.
    pub completed: u64,
    /// Failed, with a retry scheduled.
    pub failed_retrying: u64,
    /// Failed for good.
    pub failed_permanent: u64,
    /// Cancelled.
    pub cancelled: u64,
}

impl TaskCounts {
    /// All tasks.
    pub fn total(&self) -> u64 {
        self.pending
            + self.running
            + self.completed
            + self.failed_retrying
            + self.failed_permanent
            + self.cancelled
    }
}

/// The state of one queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct QueueStatus {
    /// The queue.
    pub queue: String,
    /// Its tasks by state.
    pub counts: TaskCounts,
    /// How long the oldest pending task that is due has waited: how far behind the queue is.
    pub oldest_pending_age: Option<std::time::Duration>,
    /// Paused ([`TaskLib::pause_queue`](crate::TaskLib::pause_queue)): it takes submits and
    /// runs nothing.
    pub paused: bool,
    /// Its cluster-wide limits ([`TaskLib::set_queue_limits`](crate::TaskLib::set_queue_limits)).
    pub limits: crate::QueueLimits,
}
