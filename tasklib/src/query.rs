//! Reading tasks back: by id, filtered lists with keyset pagination, and counts by state.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, Statement,
};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::entity::task;
use crate::record::TaskRecord;
use crate::{Error, Result, TaskState};

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
    states: Vec<TaskState>,
    name: Option<String>,
    queue: Option<String>,
    tags: Option<Value>,
    before: Option<Uuid>,
    limit: Option<u64>,
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

pub(crate) async fn get<C: ConnectionTrait>(conn: &C, id: Uuid) -> Result<Option<TaskRecord>> {
    Ok(task::Entity::find_by_id(id)
        .one(conn)
        .await?
        .map(TaskRecord::from))
}

pub(crate) async fn list<C: ConnectionTrait>(
    conn: &C,
    filter: &TaskFilter,
) -> Result<Vec<TaskRecord>> {
    let limit = filter.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if !(1..=MAX_LIST_LIMIT).contains(&limit) {
        return Err(Error::InvalidOption {
            option: "limit",
            reason: format!("must be between 1 and {MAX_LIST_LIMIT}, got {limit}"),
        });
    }
    let mut query = task::Entity::find();
    if !filter.states.is_empty() {
        query = query.filter(task::Column::State.is_in(filter.states.iter().copied()));
    }
    if let Some(name) = &filter.name {
        query = query.filter(task::Column::Name.eq(name.as_str()));
    }
    if let Some(queue) = &filter.queue {
        query = query.filter(task::Column::Queue.eq(queue.as_str()));
    }
    if let Some(tags) = &filter.tags {
        if !tags.is_object() {
            return Err(Error::InvalidOption {
                option: "tags",
                reason: format!("a tag filter must be a JSON object, got {tags}"),
            });
        }
        // `tags <> '{}'` is the tag index's predicate, written out so the planner can use it;
        // an empty filter matches every row, so it gets no condition at all.
        if tags.as_object().is_some_and(|t| !t.is_empty()) {
            query = query.filter(Expr::cust_with_values(
                "tags @> $1::jsonb AND tags <> '{}'::jsonb",
                [tags.clone()],
            ));
        }
    }
    if let Some(before) = filter.before {
        query = query.filter(task::Column::Id.lt(before));
    }
    let rows = query
        .order_by_desc(task::Column::Id)
        .limit(limit)
        .all(conn)
        .await?;
    Ok(rows.into_iter().map(TaskRecord::from).collect())
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

/// Counts by queue, state and retrying-or-not, with the oldest due pending task of each
/// queue.
const COUNT_BY_QUEUE: &str = r#"
SELECT queue, state, (next_retry_at IS NOT NULL) AS retrying, count(*) AS n,
       min(scheduled_at) FILTER (WHERE state = 'pending' AND scheduled_at <= now()) AS oldest_due,
       now() AS now
FROM tasks
GROUP BY 1, 2, 3
ORDER BY 1
"#;

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
}

#[derive(Debug, sea_orm::FromQueryResult)]
struct CountRow {
    queue: String,
    state: TaskState,
    retrying: bool,
    n: i64,
    oldest_due: Option<sea_orm::prelude::DateTimeWithTimeZone>,
    now: sea_orm::prelude::DateTimeWithTimeZone,
}

/// Counts per queue. This reads every row, finished ones included (through the
/// `(state, queue)` index when the visibility map allows): fine for dashboards and the CLI,
/// not for a hot path.
pub(crate) async fn queue_status<C: ConnectionTrait>(conn: &C) -> Result<Vec<QueueStatus>> {
    let rows =
        CountRow::find_by_statement(Statement::from_string(DbBackend::Postgres, COUNT_BY_QUEUE))
            .all(conn)
            .await?;
    let mut out: Vec<QueueStatus> = Vec::new();
    for row in rows {
        if out.last().is_none_or(|q| q.queue != row.queue) {
            out.push(QueueStatus {
                queue: row.queue.clone(),
                counts: TaskCounts::default(),
                oldest_pending_age: None,
            });
        }
        let Some(status) = out.last_mut() else {
            continue;
        };
        let n = u64::try_from(row.n).unwrap_or(0);
        let c = &mut status.counts;
        match (row.state, row.retrying) {
            (TaskState::Pending, _) => c.pending += n,
            (TaskState::Running, _) => c.running += n,
            (TaskState::Completed, _) => c.completed += n,
            (TaskState::Failed, true) => c.failed_retrying += n,
            (TaskState::Failed, false) => c.failed_permanent += n,
            (TaskState::Cancelled, _) => c.cancelled += n,
        }
        if let Some(oldest) = row.oldest_due {
            let age = (row.now - oldest).to_std().unwrap_or_default();
            status.oldest_pending_age = Some(status.oldest_pending_age.map_or(age, |a| a.max(age)));
        }
    }
    Ok(out)
}

/// Counts by state, over all queues.
pub(crate) async fn counts<C: ConnectionTrait>(conn: &C) -> Result<TaskCounts> {
    let mut total = TaskCounts::default();
    for q in queue_status(conn).await? {
        let c = q.counts;
        total.pending += c.pending;
        total.running += c.running;
        total.completed += c.completed;
        total.failed_retrying += c.failed_retrying;
        total.failed_permanent += c.failed_permanent;
        total.cancelled += c.cancelled;
    }
    Ok(total)
}
