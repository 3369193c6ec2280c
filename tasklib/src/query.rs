//! Reading tasks back: by id, filtered lists with keyset pagination, and counts by state.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Statement,
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
        query = query.filter(Expr::cust_with_values("tags @> $1::jsonb", [tags.clone()]));
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

const COUNT_BY_STATE: &str = r#"
SELECT state, (next_retry_at IS NOT NULL) AS retrying, count(*) AS n
FROM tasks
GROUP BY 1, 2
"#;

/// Counts by state. This reads every row, finished ones included (through the state index
/// when the visibility map allows): fine for dashboards and the CLI, not for a hot path.
pub(crate) async fn counts<C: ConnectionTrait>(conn: &C) -> Result<TaskCounts> {
    let rows = conn
        .query_all_raw(Statement::from_string(DbBackend::Postgres, COUNT_BY_STATE))
        .await?;
    let mut counts = TaskCounts::default();
    for row in rows {
        let state: TaskState = row.try_get("", "state")?;
        let retrying: bool = row.try_get("", "retrying")?;
        let n: i64 = row.try_get("", "n")?;
        let n = u64::try_from(n).unwrap_or(0);
        match (state, retrying) {
            (TaskState::Pending, _) => counts.pending += n,
            (TaskState::Running, _) => counts.running += n,
            (TaskState::Completed, _) => counts.completed += n,
            (TaskState::Failed, true) => counts.failed_retrying += n,
            (TaskState::Failed, false) => counts.failed_permanent += n,
            (TaskState::Cancelled, _) => counts.cancelled += n,
        }
    }
    Ok(counts)
}
