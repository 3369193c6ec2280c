//! Changing tasks from outside a worker: cancel, re-queue (retry) tasks that failed for
//! good — the dead-letter workflow —, and delete old finished ones.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};
use uuid::Uuid;

use crate::control::CancelOutcome;
use crate::retention::PRUNE_BATCH;
use crate::{Error, Result, TaskState};

/// One statement: lock the row, then either cancel it (waiting tasks) or record the request
/// and notify the workers (running tasks). The notification goes out on commit. A chain step
/// takes the steps after it along: they wait for it, so they are cancelled at once. A
/// cancelled task someone waits for notifies `tasks_done` (see the worker's `FAIL`).
const CANCEL: &str = r#"
WITH target AS (
    SELECT id, state, next_retry_at IS NOT NULL AS retrying, chain_id, chain_step
    FROM tasks WHERE id = $1
    FOR UPDATE
), cancelled AS (
    UPDATE tasks AS t
    SET state = 'cancelled', next_retry_at = NULL, locked_until = NULL,
        completed_at = now(), error = COALESCE(t.error, 'cancelled before it ran')
    FROM target
    WHERE t.id = target.id
      AND (target.state = 'pending' OR (target.state = 'failed' AND target.retrying))
    RETURNING t.id,
              CASE WHEN t.notify_done
                   THEN pg_notify(tasklib_channel('tasks_done'), concat_ws(' ', t.id, t.chain_id)) END
), requested AS (
    UPDATE tasks AS t
    SET cancel_requested_at = COALESCE(t.cancel_requested_at, now())
    FROM target
    WHERE t.id = target.id AND target.state = 'running'
    RETURNING t.id, pg_notify(tasklib_channel('tasks_cancel'), t.id::text)
), rest AS (
    UPDATE tasks AS t
    SET state = 'cancelled', completed_at = now(),
        error = format('cancelled: step %s of the chain was cancelled', target.chain_step)
    FROM target
    WHERE t.chain_id = target.chain_id AND t.chain_step > target.chain_step
      AND t.state = 'pending'
      AND (target.state IN ('pending', 'running') OR (target.state = 'failed' AND target.retrying))
    RETURNING t.id,
              CASE WHEN t.notify_done
                   THEN pg_notify(tasklib_channel('tasks_done'), concat_ws(' ', t.id, t.chain_id)) END
)
SELECT target.state,
       target.retrying,
       EXISTS (SELECT 1 FROM cancelled) AS cancelled,
       EXISTS (SELECT 1 FROM requested) AS requested,
       (SELECT count(*) FROM rest) AS later_steps
FROM target
"#;

/// The step of chain `$1` that a cancel of the chain stops: the first one not finished.
const CHAIN_CURRENT_STEP: &str = r#"
SELECT id, state, (state = 'pending' OR state = 'running'
                   OR (state = 'failed' AND next_retry_at IS NOT NULL)) AS open
FROM tasks
WHERE chain_id = $1
ORDER BY open DESC, chain_step
LIMIT 1
"#;

#[derive(Debug, FromQueryResult)]
struct StepRow {
    id: Uuid,
    state: TaskState,
    open: bool,
}

#[derive(Debug, FromQueryResult)]
struct CancelRow {
    state: TaskState,
    cancelled: bool,
    requested: bool,
}

/// Cancels task `id`, or the chain `id` from its first unfinished step on.
pub(crate) async fn cancel<C: ConnectionTrait>(conn: &C, id: Uuid) -> Result<CancelOutcome> {
    match cancel_task(conn, id).await {
        Err(Error::NotFound { .. }) => {}
        other => return other,
    }
    let statement =
        Statement::from_sql_and_values(DbBackend::Postgres, CHAIN_CURRENT_STEP, [id.into()]);
    match StepRow::find_by_statement(statement).one(conn).await? {
        None => Err(Error::NotFound { id }),
        Some(step) if step.open => cancel_task(conn, step.id).await,
        Some(step) => Err(Error::InvalidState {
            id,
            state: step.state,
            action: "cancelled (every step of the chain has finished)",
        }),
    }
}

async fn cancel_task<C: ConnectionTrait>(conn: &C, id: Uuid) -> Result<CancelOutcome> {
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
/// `pending`, due now, with its retries restored, and workers are notified. A chain step takes
/// the later steps that its failure cancelled back with it: they wait again for the step
/// before them, so the chain goes on from where it stopped. A later step whose previous step
/// has not completed waits for it too, instead of running without its input. Its last `error`
/// stays until an attempt succeeds; `attempt` keeps counting, as a history.
///
/// With `$2` (forced), a completed task goes back too: it runs again, and its result and
/// progress are cleared. A completed chain step runs again alone; the steps after it keep
/// what they did.
const RETRY_ONE: &str = r#"
WITH target AS (
    SELECT t.id, t.state, t.next_retry_at IS NOT NULL AS retrying, t.chain_id, t.chain_step,
           (t.chain_step IS NULL OR t.chain_step = 0
            OR EXISTS (SELECT 1 FROM tasks p
                       WHERE p.chain_id = t.chain_id AND p.chain_step = t.chain_step - 1
                         AND p.state = 'completed')) AS due
    FROM tasks t WHERE t.id = $1
    FOR UPDATE OF t
), requeued AS (
    UPDATE tasks AS t
    SET state = 'pending',
        scheduled_at = CASE WHEN target.due THEN now() ELSE '9999-12-31 00:00:00+00'::timestamptz END,
        next_retry_at = NULL, completed_at = NULL,
        retry_count = 0, worker_id = NULL, locked_until = NULL, cancel_requested_at = NULL,
        result = NULL, progress = NULL
    FROM target
    WHERE t.id = target.id
      AND ((target.state = 'failed' AND NOT target.retrying) OR target.state = 'cancelled'
           OR ($2 AND target.state = 'completed'))
    RETURNING t.id, CASE WHEN target.due THEN pg_notify(tasklib_channel('tasks_new'), t.queue) END
), later AS (
    UPDATE tasks AS t
    SET state = 'pending', scheduled_at = '9999-12-31 00:00:00+00', completed_at = NULL, error = NULL,
        cancel_requested_at = NULL
    FROM target
    WHERE t.chain_id = target.chain_id AND t.chain_step > target.chain_step
      AND t.state = 'cancelled' AND EXISTS (SELECT 1 FROM requeued)
    RETURNING t.id
)
SELECT target.state, EXISTS (SELECT 1 FROM requeued) AS requeued
FROM target
"#;

/// Deletes task `$1` in any state but running, or, when `$1` is a chain's id, every step of
/// that chain if none is running. A single step of a chain is refused: the steps after it
/// would wait for it for ever. Reports what it found, so a refusal can say why.
const DELETE: &str = r#"
WITH target AS MATERIALIZED (
    SELECT id, state, chain_id FROM tasks
    WHERE id = $1 OR chain_id = $1
    FOR UPDATE
), refused AS MATERIALIZED (
    SELECT EXISTS (SELECT 1 FROM target WHERE state = 'running') AS running,
           EXISTS (SELECT 1 FROM target WHERE chain_id IS NOT NULL AND chain_id <> $1) AS step
), deleted AS (
    DELETE FROM tasks AS t
    USING target, refused
    WHERE t.id = target.id AND NOT refused.running AND NOT refused.step
    RETURNING t.id
)
SELECT (SELECT count(*) FROM target) AS found,
       (SELECT count(*) FROM deleted) AS deleted,
       refused.running, refused.step,
       (SELECT state FROM target WHERE state = 'running' OR id = $1 LIMIT 1) AS state
FROM refused
"#;

#[derive(Debug, FromQueryResult)]
struct DeleteRow {
    found: i64,
    deleted: i64,
    running: bool,
    step: bool,
    state: Option<TaskState>,
}

/// Deletes task `id` (or every step of chain `id`) unless it is running; how many rows went.
pub(crate) async fn delete<C: ConnectionTrait>(conn: &C, id: Uuid) -> Result<u64> {
    let statement = Statement::from_sql_and_values(DbBackend::Postgres, DELETE, [id.into()]);
    let row = DeleteRow::find_by_statement(statement)
        .one(conn)
        .await?
        .ok_or(Error::NotFound { id })?;
    let state = row.state.unwrap_or(TaskState::Pending);
    match row {
        DeleteRow { found: 0, .. } => Err(Error::NotFound { id }),
        DeleteRow { running: true, .. } => Err(Error::InvalidState {
            id,
            state: TaskState::Running,
            action: "deleted while it runs (cancel it, and delete it once it has stopped)",
        }),
        DeleteRow { step: true, .. } => Err(Error::InvalidState {
            id,
            state,
            action: "deleted alone: it is a step of a chain (delete the chain by its id)",
        }),
        DeleteRow { deleted, .. } => Ok(u64::try_from(deleted).unwrap_or(0)),
    }
}

/// Re-queues every task that failed for good, optionally only of one name and/or queue; one
/// notification per queue. Chain steps go back as in [`RETRY_ONE`]. A task unique while
/// unfinished stays failed while another task holds its key; of several failed with the same
/// key, the newest goes back.
const RETRY_FAILED: &str = r#"
WITH requeued AS (
    UPDATE tasks AS t
    SET state = 'pending',
        scheduled_at = CASE WHEN t.chain_step IS NULL OR t.chain_step = 0
                              OR EXISTS (SELECT 1 FROM tasks p
                                         WHERE p.chain_id = t.chain_id
                                           AND p.chain_step = t.chain_step - 1
                                           AND p.state = 'completed')
                            THEN now() ELSE '9999-12-31 00:00:00+00'::timestamptz END,
        next_retry_at = NULL, completed_at = NULL,
        retry_count = 0, worker_id = NULL, locked_until = NULL, cancel_requested_at = NULL
    WHERE t.state = 'failed' AND t.next_retry_at IS NULL
      AND ($1::text IS NULL OR t.name = $1)
      AND ($2::text IS NULL OR t.queue = $2)
      AND (t.unique_key IS NULL OR t.unique_window IS NOT NULL OR (
           -- A unique task goes back only if no unfinished task holds its key, and only the
           -- newest of several failed ones with the same key.
           NOT EXISTS (SELECT 1 FROM tasks o
                       WHERE o.name = t.name AND o.unique_key = t.unique_key
                         AND o.unique_key IS NOT NULL AND o.unique_window IS NULL
                         AND (o.state IN ('pending', 'running')
                              OR (o.state = 'failed' AND o.next_retry_at IS NOT NULL)))
           AND t.id = (SELECT d.id FROM tasks d
                       WHERE d.name = t.name AND d.unique_key = t.unique_key
                         AND d.unique_window IS NULL
                         AND d.state = 'failed' AND d.next_retry_at IS NULL
                         AND ($2::text IS NULL OR d.queue = $2)
                       ORDER BY d.id DESC LIMIT 1)))
    RETURNING t.queue, t.chain_id, t.chain_step, t.scheduled_at <> '9999-12-31 00:00:00+00' AS due
), later AS (
    UPDATE tasks AS t
    SET state = 'pending', scheduled_at = '9999-12-31 00:00:00+00', completed_at = NULL, error = NULL,
        cancel_requested_at = NULL
    FROM requeued
    WHERE requeued.chain_id IS NOT NULL AND t.chain_id = requeued.chain_id
      AND t.chain_step > requeued.chain_step AND t.state = 'cancelled'
    RETURNING t.id
), notified AS (
    SELECT pg_notify(tasklib_channel('tasks_new'), queue) FROM (SELECT DISTINCT queue FROM requeued WHERE due) AS q
)
SELECT (SELECT count(*) FROM requeued) AS requeued, (SELECT count(*) FROM notified) AS queues
"#;

#[derive(Debug, FromQueryResult)]
struct RetryRow {
    state: TaskState,
    requeued: bool,
}

pub(crate) async fn retry<C: ConnectionTrait>(conn: &C, id: Uuid, force: bool) -> Result<()> {
    let statement =
        Statement::from_sql_and_values(DbBackend::Postgres, RETRY_ONE, [id.into(), force.into()]);
    let row = match RetryRow::find_by_statement(statement).one(conn).await {
        Ok(row) => row.ok_or(Error::NotFound { id })?,
        Err(error) => return Err(unique_key_taken(conn, id, error).await),
    };
    if row.requeued {
        Ok(())
    } else {
        Err(Error::InvalidState {
            id,
            state: row.state,
            action: if force {
                "run again (only finished tasks can be: completed, failed for good, cancelled)"
            } else {
                "retried (only tasks that failed for good or were cancelled can be; \
                 a completed one with force)"
            },
        })
    }
}

/// `error` from putting task `id` back: [`Error::UniqueKeyTaken`] when an unfinished task
/// holds its unique key (the open unique index refused it), else the database error.
async fn unique_key_taken<C: ConnectionTrait>(conn: &C, id: Uuid, error: sea_orm::DbErr) -> Error {
    if !matches!(
        error.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    ) {
        return Error::Database(error);
    }
    let key = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT unique_key FROM tasks WHERE id = $1",
            [id.into()],
        ))
        .await
        .ok()
        .flatten()
        .and_then(|row| {
            row.try_get::<Option<String>>("", "unique_key")
                .ok()
                .flatten()
        });
    match key {
        Some(key) => Error::UniqueKeyTaken { id, key },
        None => Error::Database(error),
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

/// Pauses queue `$1` (a row in `tasklib_queues`, kept if already paused) and tells every
/// worker pool (`tasks_queues`, payload `paused <queue>`).
const PAUSE: &str = r#"
WITH paused AS (
    INSERT INTO tasklib_queues AS q (queue, paused_at) VALUES ($1, now())
    ON CONFLICT (queue) DO UPDATE SET paused_at = COALESCE(q.paused_at, now())
    RETURNING q.queue
)
SELECT count(pg_notify(tasklib_channel('tasks_queues'), 'paused ' || queue)) AS notified FROM paused
"#;

/// Resumes queue `$1`, telling every pool (`tasks_queues`, payload `resumed <queue>`) and
/// waking its producers
/// (`tasks_new`); a queue that was not paused is left as it is.
const RESUME: &str = r#"
WITH resumed AS (
    UPDATE tasklib_queues SET paused_at = NULL
    WHERE queue = $1 AND paused_at IS NOT NULL
    RETURNING queue
)
SELECT count(pg_notify(tasklib_channel('tasks_queues'), 'resumed ' || queue))
       + count(pg_notify(tasklib_channel('tasks_new'), queue)) AS notified
FROM resumed
"#;

/// A queue name an admin verb can take: not empty.
fn check_queue_name(queue: &str) -> Result<()> {
    if queue.trim().is_empty() {
        return Err(Error::InvalidOption {
            option: "queue",
            reason: "the queue name must not be empty".to_owned(),
        });
    }
    Ok(())
}

/// Pauses (`pause`) or resumes queue `queue`.
pub(crate) async fn set_paused<C: ConnectionTrait>(
    conn: &C,
    queue: &str,
    pause: bool,
) -> Result<()> {
    check_queue_name(queue)?;
    let sql = if pause { PAUSE } else { RESUME };
    conn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        [queue.into()],
    ))
    .await?;
    Ok(())
}

/// Sets the limits of queue `$1` (`$2` concurrency, `$3` starts per `$4` seconds; NULLs for
/// none), telling every pool (`tasks_queues`, payload `limits <queue>`) and waking its
/// producers (`tasks_new`). A new rate starts counting afresh.
const SET_LIMITS: &str = r#"
WITH limited AS (
    INSERT INTO tasklib_queues AS q (queue, concurrency_limit, rate_limit, rate_period)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (queue) DO UPDATE
    SET concurrency_limit = $2, rate_limit = $3, rate_period = $4,
        rate_window_start = CASE WHEN q.rate_period IS NOT DISTINCT FROM $4
                                 THEN q.rate_window_start END,
        rate_window_count = CASE WHEN q.rate_period IS NOT DISTINCT FROM $4
                                 THEN q.rate_window_count ELSE 0 END
    RETURNING q.queue
)
SELECT count(pg_notify(tasklib_channel('tasks_queues'), 'limits ' || queue))
       + count(pg_notify(tasklib_channel('tasks_new'), queue)) AS notified
FROM limited
"#;

/// Sets (or, with empty `limits`, removes) the cluster-wide limits of queue `queue`.
pub(crate) async fn set_limits<C: ConnectionTrait>(
    conn: &C,
    queue: &str,
    limits: crate::QueueLimits,
) -> Result<()> {
    check_queue_name(queue)?;
    let count = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    conn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        SET_LIMITS,
        [
            queue.into(),
            limits.concurrency.map(count).into(),
            limits.rate.map(|r| count(r.starts)).into(),
            limits.rate.map(|r| r.period.as_secs_f64()).into(),
        ],
    ))
    .await?;
    Ok(())
}

/// One batch: the oldest finished rows of the given states, skipping any a concurrent pruner
/// holds. Uses `tasks_finished_idx` (finished rows by `completed_at`).
const PRUNE: &str = r#"
WITH doomed AS (
    SELECT id FROM tasks
    WHERE completed_at IS NOT NULL
      AND completed_at < now() - make_interval(secs => $2)
      AND state = ANY($1::text[])
    ORDER BY completed_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
DELETE FROM tasks AS t USING doomed WHERE t.id = doomed.id
"#;

/// Deletes tasks in `states` (terminal states only) whose `completed_at` is older than
/// `older_than`, batch by batch, and returns how many it deleted.
pub(crate) async fn prune<C: ConnectionTrait>(
    conn: &C,
    states: &[TaskState],
    older_than: Duration,
) -> Result<u64> {
    if states.is_empty() {
        return Ok(0);
    }
    if let Some(state) = states
        .iter()
        .find(|s| matches!(s, TaskState::Pending | TaskState::Running))
    {
        return Err(Error::InvalidOption {
            option: "states",
            reason: format!("only finished tasks can be pruned, not {state} ones"),
        });
    }
    let names: Vec<String> = states.iter().map(|s| s.as_str().to_owned()).collect();
    let mut total = 0;
    loop {
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            PRUNE,
            [
                names.clone().into(),
                older_than.as_secs_f64().into(),
                i64::from(PRUNE_BATCH).into(),
            ],
        );
        let deleted = conn.execute_raw(statement).await?.rows_affected();
        total += deleted;
        if deleted < u64::from(PRUNE_BATCH) {
            return Ok(total);
        }
        // Let other work on this runtime (and this connection pool) through between batches.
        tokio::task::yield_now().await;
    }
}
