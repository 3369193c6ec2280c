//! Operations that change a task from outside a worker: cancel, and re-queue (retry) tasks
//! that failed for good — the dead-letter workflow.

use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};
use uuid::Uuid;

use crate::{Error, Result, TaskState};

/// What [`TaskLib::cancel`](crate::TaskLib::cancel) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelOutcome {
    /// The task was waiting (pending, or failed with a retry scheduled): it is now
    /// `cancelled` and will never run.
    Cancelled,
    /// The task is running: the request is recorded (`cancel_requested_at`) and its handler
    /// is told through [`TaskContext::is_cancelled`](crate::TaskContext::is_cancelled). It
    /// ends `cancelled` if the handler stops with an error or
    /// [`TaskError::cancel`](crate::TaskError::cancel), `completed` if it finishes anyway. A
    /// task claimed but not yet started (claimed ahead of a free slot) never starts: it ends
    /// `cancelled` too.
    Requested,
}

/// One statement: lock the row, then either cancel it (waiting tasks) or record the request
/// and notify the workers (running tasks). The notification goes out on commit.
const CANCEL: &str = r#"
WITH target AS (
    SELECT id, state, next_retry_at IS NOT NULL AS retrying
    FROM tasks WHERE id = $1
    FOR UPDATE
), cancelled AS (
    UPDATE tasks AS t
    SET state = 'cancelled', next_retry_at = NULL, locked_until = NULL,
        completed_at = now(), error = COALESCE(t.error, 'cancelled before it ran')
    FROM target
    WHERE t.id = target.id
      AND (target.state = 'pending' OR (target.state = 'failed' AND target.retrying))
    RETURNING t.id
), requested AS (
    UPDATE tasks AS t
    SET cancel_requested_at = COALESCE(t.cancel_requested_at, now())
    FROM target
    WHERE t.id = target.id AND target.state = 'running'
    RETURNING t.id, pg_notify('tasks_cancel', t.id::text)
)
SELECT target.state,
       target.retrying,
       EXISTS (SELECT 1 FROM cancelled) AS cancelled,
       EXISTS (SELECT 1 FROM requested) AS requested
FROM target
"#;

#[derive(Debug, FromQueryResult)]
struct CancelRow {
    state: TaskState,
    cancelled: bool,
    requested: bool,
}

pub(crate) async fn cancel<C: ConnectionTrait>(conn: &C, id: Uuid) -> Result<CancelOutcome> {
    let statement = Statement::from_sql_and_values(DbBackend::Postgres, CANCEL, [id.into()]);
    let row = CancelRow::find_by_statement(statement)
        .one(conn)
        .await?
        .ok_or(Error::NotFound { id })?;
    if row.cancelled {
        Ok(CancelOutcome::Cancelled)
    } else if row.requested {
        Ok(CancelOutcome::Requested)
    } else {
        Err(Error::InvalidState {
            id,
            state: row.state,
            action: "cancelled",
        })
    }
}

/// Re-queues one finished-but-unsuccessful task (failed for good, or cancelled): it becomes
/// `pending`, due now, with its retries restored, and workers are notified. Its last `error`
/// stays until an attempt succeeds; `attempt` keeps counting, as a history.
const RETRY_ONE: &str = r#"
WITH target AS (
    SELECT id, state, next_retry_at IS NOT NULL AS retrying
    FROM tasks WHERE id = $1
    FOR UPDATE
), requeued AS (
    UPDATE tasks AS t
    SET state = 'pending', scheduled_at = now(), next_retry_at = NULL, completed_at = NULL,
        retry_count = 0, worker_id = NULL, locked_until = NULL, cancel_requested_at = NULL,
        result = NULL
    FROM target
    WHERE t.id = target.id
      AND ((target.state = 'failed' AND NOT target.retrying) OR target.state = 'cancelled')
    RETURNING t.id, pg_notify('tasks_new', t.queue)
)
SELECT target.state, EXISTS (SELECT 1 FROM requeued) AS requeued
FROM target
"#;

/// Re-queues every task that failed for good, optionally only of one name and/or queue; one
/// notification per queue.
const RETRY_FAILED: &str = r#"
WITH requeued AS (
    UPDATE tasks
    SET state = 'pending', scheduled_at = now(), next_retry_at = NULL, completed_at = NULL,
        retry_count = 0, worker_id = NULL, locked_until = NULL, cancel_requested_at = NULL
    WHERE state = 'failed' AND next_retry_at IS NULL
      AND ($1::text IS NULL OR name = $1)
      AND ($2::text IS NULL OR queue = $2)
    RETURNING queue
), notified AS (
    SELECT pg_notify('tasks_new', queue) FROM (SELECT DISTINCT queue FROM requeued) AS q
)
SELECT (SELECT count(*) FROM requeued) AS requeued, (SELECT count(*) FROM notified) AS queues
"#;

#[derive(Debug, FromQueryResult)]
struct RetryRow {
    state: TaskState,
    requeued: bool,
}

pub(crate) async fn retry<C: ConnectionTrait>(conn: &C, id: Uuid) -> Result<()> {
    let statement = Statement::from_sql_and_values(DbBackend::Postgres, RETRY_ONE, [id.into()]);
    let row = RetryRow::find_by_statement(statement)
        .one(conn)
        .await?
        .ok_or(Error::NotFound { id })?;
    if row.requeued {
        Ok(())
    } else {
        Err(Error::InvalidState {
            id,
            state: row.state,
            action: "retried (only tasks that failed for good or were cancelled can be)",
        })
    }
}

#[derive(Debug, FromQueryResult)]
struct RetryManyRow {
    requeued: i64,
}

pub(crate) async fn retry_failed<C: ConnectionTrait>(
    conn: &C,
    name: Option<&str>,
    queue: Option<&str>,
) -> Result<u64> {
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        RETRY_FAILED,
        [
            name.map(str::to_owned).into(),
            queue.map(str::to_owned).into(),
        ],
    );
    let row = RetryManyRow::find_by_statement(statement).one(conn).await?;
    Ok(row.map_or(0, |r| u64::try_from(r.requeued).unwrap_or(0)))
}
