//! Reading tasks back: one by id, filtered lists, counts, and results.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, Statement,
};
use serde_json::Value;
use uuid::Uuid;

use crate::QueueLimits;
use crate::entity::task;
use crate::query::{DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, QueueStatus, TaskCounts, TaskFilter};
use crate::record::TaskRecord;
use crate::result::{TaskResult, TaskStatus, chain_outcome};
use crate::{Error, Result, TaskState};

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
    if let Some(chain) = filter.chain {
        query = query.filter(task::Column::ChainId.eq(chain));
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
                paused: false,
                limits: QueueLimits::default(),
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
    // Paused and limited queues, listed even when they hold no task yet.
    let settings = queue_settings(conn).await?;
    for row in settings {
        let status = match out.iter_mut().position(|q| q.queue == row.queue) {
            Some(i) => &mut out[i],
            None => {
                out.push(QueueStatus {
                    queue: row.queue,
                    counts: TaskCounts::default(),
                    oldest_pending_age: None,
                    paused: false,
                    limits: QueueLimits::default(),
                });
                let last = out.len() - 1;
                &mut out[last]
            }
        };
        status.paused = row.paused;
        status.limits = row.limits;
    }
    out.sort_by(|a, b| a.queue.cmp(&b.queue));
    Ok(out)
}

/// A queue's row of `tasklib_queues`: paused or not, its limits.
#[derive(Debug)]
pub(crate) struct QueueSetting {
    pub(crate) queue: String,
    pub(crate) paused: bool,
    pub(crate) limits: QueueLimits,
}

/// The queues that are paused or have limits.
pub(crate) async fn queue_settings<C: ConnectionTrait>(conn: &C) -> Result<Vec<QueueSetting>> {
    let rows = SettingsRow::find_by_statement(Statement::from_string(
        DbBackend::Postgres,
        "SELECT queue, paused_at IS NOT NULL AS paused, concurrency_limit, rate_limit, rate_period
         FROM tasklib_queues
         WHERE paused_at IS NOT NULL OR concurrency_limit IS NOT NULL OR rate_limit IS NOT NULL",
    ))
    .all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| QueueSetting {
            limits: row.limits(),
            paused: row.paused,
            queue: row.queue,
        })
        .collect())
}

#[derive(Debug, FromQueryResult)]
struct SettingsRow {
    queue: String,
    paused: bool,
    concurrency_limit: Option<i32>,
    rate_limit: Option<i32>,
    rate_period: Option<f64>,
}

impl SettingsRow {
    /// The limits, as far as the row's values make sense (the table's checks keep them so).
    fn limits(&self) -> QueueLimits {
        let mut limits = QueueLimits::new();
        if let Some(n) = self.concurrency_limit.and_then(|n| u32::try_from(n).ok()) {
            limits = limits.concurrency(n);
        }
        if let (Some(starts), Some(period)) = (
            self.rate_limit.and_then(|n| u32::try_from(n).ok()),
            self.rate_period
                .and_then(|p| std::time::Duration::try_from_secs_f64(p).ok()),
        ) {
            limits = limits.rate(crate::RateLimit::new(starts, period));
        }
        limits
    }
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

/// The task with id `$1`, or else the steps of the chain `$1` in order: what a result is made
/// of. One statement through the primary key and the (chained rows only) chain index.
const RESULT_ROWS: &str = r#"
SELECT state, result -> 'value' AS value, result IS NOT NULL AS has_value, error,
       next_retry_at IS NOT NULL AS retrying, id = $1 AS is_task
FROM tasks
WHERE id = $1 OR chain_id = $1
ORDER BY (id = $1) DESC, chain_step
"#;

#[derive(Debug, FromQueryResult)]
struct ResultRow {
    state: TaskState,
    value: Option<Value>,
    has_value: bool,
    error: Option<String>,
    retrying: bool,
    is_task: bool,
}

impl ResultRow {
    fn status(&self) -> TaskStatus {
        match (self.state, self.retrying) {
            (TaskState::Pending, _) | (TaskState::Failed, true) => TaskStatus::Pending,
            (TaskState::Running, _) => TaskStatus::Running,
            (TaskState::Completed, _) => TaskStatus::Completed,
            (TaskState::Failed, false) => TaskStatus::Failed,
            (TaskState::Cancelled, _) => TaskStatus::Cancelled,
        }
    }

    fn into_result(self, id: Uuid) -> TaskResult {
        let status = self.status();
        let value = if self.has_value {
            Some(self.value.unwrap_or(Value::Null))
        } else {
            None
        };
        TaskResult {
            id,
            status,
            value,
            error: self.error,
        }
    }
}

/// The result of task `id`, or of chain `id`: `None` when neither exists.
pub(crate) async fn result<C: ConnectionTrait>(conn: &C, id: Uuid) -> Result<Option<TaskResult>> {
    let statement = Statement::from_sql_and_values(DbBackend::Postgres, RESULT_ROWS, [id.into()]);
    let rows = ResultRow::find_by_statement(statement).all(conn).await?;
    Ok(outcome(id, rows))
}

/// A task's result from its row, or a chain's from its steps (in order, by the rule every
/// engine follows: [`chain_outcome`]).
fn outcome(id: Uuid, rows: Vec<ResultRow>) -> Option<TaskResult> {
    if rows.first()?.is_task {
        return rows.into_iter().next().map(|row| row.into_result(id));
    }
    chain_outcome(
        id,
        rows.into_iter().map(|row| row.into_result(id)).collect(),
    )
}
