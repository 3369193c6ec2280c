//! Operations that change a task from outside a worker: cancel.

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
    /// ends `cancelled` if the handler stops with an error or [`TaskError::cancel`]
    /// (crate::TaskError::cancel), `completed` if it finishes anyway.
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
