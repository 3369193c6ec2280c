//! The worker's reads and writes of the `tasks` table (statements in [`super::sql`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{DbBackend, FromQueryResult, Statement, Value};
use uuid::Uuid;

use super::sql;
use crate::Result;
use crate::engine::postgres::db::Db;

fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// `now` for statements: `None` = the database's clock.
fn clock(now: Option<DateTime<Utc>>) -> Value {
    now.into()
}

/// Identifies one attempt: the fencing token of every outcome write.
#[derive(Debug, Clone)]
pub(crate) struct AttemptRef {
    pub(crate) id: Uuid,
    pub(crate) worker_id: String,
    pub(crate) attempt: i32,
    /// A chain step: its success releases the next step.
    pub(crate) chained: bool,
}

impl AttemptRef {
    fn fence(&self) -> Vec<Value> {
        vec![
            self.id.into(),
            self.worker_id.clone().into(),
            self.attempt.into(),
        ]
    }
}

/// What a claim returns of each row: what the executor reads.
#[derive(Debug, FromQueryResult)]
pub(crate) struct ClaimedRow {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) queue: String,
    pub(crate) args: serde_json::Value,
    pub(crate) attempt: i32,
    pub(crate) retry_count: i32,
    pub(crate) max_retries: i32,
    pub(crate) tags: serde_json::Value,
    pub(crate) timeout_seconds: Option<f64>,
    pub(crate) cancel_requested: bool,
    pub(crate) chained: bool,
    /// Marked started by the claim: it has a reserved slot. Otherwise it was claimed ahead,
    /// and [`mark_started`] marks it when a slot frees.
    pub(crate) started: bool,
    /// Seconds from when it was due to the claim.
    pub(crate) waited: f64,
    /// The W3C `traceparent` of the span that submitted it, if kept (feature `otel`).
    pub(crate) trace_context: Option<String>,
}

/// How many rows a claim asks for: up to `limit`, of which the first `reserved` start at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClaimSize {
    pub(crate) limit: usize,
    pub(crate) reserved: usize,
}

/// Claims rows of `queue` (see [`sql::CLAIM`]); a `limited` queue through
/// [`sql::CLAIM_LIMITED`].
pub(crate) async fn claim(
    db: &Db,
    queue: &str,
    names: &[String],
    ClaimSize { limit, reserved }: ClaimSize,
    worker_id: &str,
    lock_timeout: Duration,
    limited: bool,
) -> Result<Vec<ClaimedRow>> {
    let claim = if limited {
        sql::CLAIM_LIMITED
    } else {
        sql::CLAIM
    };
    let sql = claim.replace("{limit}", &limit.max(1).to_string());
    let statement = stmt(
        &sql,
        vec![
            queue.into(),
            names.to_vec().into(),
            worker_id.into(),
            lock_timeout.as_secs_f64().into(),
            clock(None),
            i64::try_from(reserved).unwrap_or(i64::MAX).into(),
        ],
    );
    Ok(ClaimedRow::find_by_statement(statement).all(db).await?)
}

/// Marks attempts claimed ahead as started, just before they run; the ids marked. One not
/// marked was taken from this worker since the claim and must not run.
pub(crate) async fn mark_started(
    db: &Db,
    attempts: impl Iterator<Item = (Uuid, i32)>,
    worker_id: &str,
) -> Result<Vec<Uuid>> {
    for_attempts(db, sql::MARK_STARTED, attempts, worker_id).await
}

/// Runs `sql` (`$1` ids, `$2` worker, `$3` attempts) for attempts `(id, attempt)` of
/// `worker_id`; the ids it returns.
async fn for_attempts(
    db: &Db,
    sql: &str,
    attempts: impl Iterator<Item = (Uuid, i32)>,
    worker_id: &str,
) -> Result<Vec<Uuid>> {
    let (ids, numbers): (Vec<Uuid>, Vec<i32>) = attempts.unzip();
    let statement = stmt(sql, vec![ids.into(), worker_id.into(), numbers.into()]);
    let rows = IdRow::find_by_statement(statement).all(db).await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// Writes a success; false when the attempt was fenced off.
pub(crate) async fn complete(
    db: &Db,
    attempt: &AttemptRef,
    result: serde_json::Value,
) -> Result<bool> {
    let written = complete_many(
        db,
        &attempt.worker_id,
        attempt.chained,
        std::iter::once((attempt.id, attempt.attempt, result)),
    )
    .await?;
    Ok(written.len() == 1)
}

/// Writes many successes of worker `worker_id` at once; returns the ids the fence let
/// through. `chained` when any of them is a chain step.
pub(crate) async fn complete_many(
    db: &Db,
    worker_id: &str,
    chained: bool,
    done: impl ExactSizeIterator<Item = (Uuid, i32, serde_json::Value)>,
) -> Result<Vec<Uuid>> {
    let mut ids = Vec::with_capacity(done.len());
    let mut attempts = Vec::with_capacity(done.len());
    let mut results = Vec::with_capacity(done.len());
    for (id, attempt, result) in done {
        ids.push(id);
        attempts.push(attempt);
        results.push(stored_result(result));
    }
    let statement = stmt(
        if chained {
            sql::COMPLETE_MANY_CHAINED
        } else {
            sql::COMPLETE_MANY
        },
        vec![
            ids.into(),
            attempts.into(),
            results.into(),
            worker_id.into(),
            clock(None),
        ],
    );
    let written = IdRow::find_by_statement(statement).all(db).await?;
    Ok(written.into_iter().map(|r| r.id).collect())
}

/// A result as stored: `{"value": result}`, so a `null` result is told from no result.
fn stored_result(result: serde_json::Value) -> serde_json::Value {
    let mut stored = serde_json::Map::with_capacity(1);
    stored.insert("value".to_owned(), result);
    serde_json::Value::Object(stored)
}

#[derive(Debug, FromQueryResult)]
struct IdRow {
    id: Uuid,
}

/// Writes a failure: retried after `retry_in`, or terminal when `None`. False when fenced off.
pub(crate) async fn fail(
    db: &Db,
    attempt: &AttemptRef,
    error: &str,
    retry_in: Option<Duration>,
) -> Result<bool> {
    let mut values = attempt.fence();
    values.push(error.into());
    values.push(retry_in.map(|d| d.as_secs_f64()).into());
    values.push(clock(None));
    let written = IdRow::find_by_statement(stmt(sql::FAIL, values))
        .all(db)
        .await?;
    Ok(written.len() == 1)
}

/// Writes a snooze: the task waits `delay`, then runs again without using a retry. False when
/// fenced off.
pub(crate) async fn snooze(db: &Db, attempt: &AttemptRef, delay: Duration) -> Result<bool> {
    let mut values = attempt.fence();
    values.push(delay.as_secs_f64().into());
    values.push(clock(None));
    let written = IdRow::find_by_statement(stmt(sql::SNOOZE, values))
        .all(db)
        .await?;
    Ok(written.len() == 1)
}

/// Records the progress a running attempt reported. False when fenced off (the attempt is no
/// longer this worker's).
pub(crate) async fn set_progress(
    db: &Db,
    attempt: &AttemptRef,
    progress: serde_json::Value,
) -> Result<bool> {
    let mut values = attempt.fence();
    values.push(progress.into());
    let written = IdRow::find_by_statement(stmt(sql::SET_PROGRESS, values))
        .all(db)
        .await?;
    Ok(written.len() == 1)
}

/// The rows of `queues` in `tasklib_queues`: which are paused, which have limits.
pub(crate) async fn queue_flags(db: &Db, queues: Vec<String>) -> Result<Vec<QueueFlags>> {
    let statement = stmt(
        "SELECT queue, paused_at IS NOT NULL AS paused,
                (concurrency_limit IS NOT NULL OR rate_limit IS NOT NULL) AS limited
         FROM tasklib_queues WHERE queue = ANY($1::text[])",
        vec![queues.into()],
    );
    Ok(QueueFlags::find_by_statement(statement).all(db).await?)
}

/// Due-and-unclaimed and running tasks of `queues`, for the gauges of the `metrics` feature.
pub(crate) async fn queue_depths(db: &Db, queues: Vec<String>) -> Result<Vec<QueueDepth>> {
    let statement = stmt(
        "SELECT queue,
                count(*) FILTER (WHERE state <> 'running') AS pending,
                count(*) FILTER (WHERE state = 'running') AS running
         FROM tasks
         WHERE queue = ANY($1::text[])
           AND (state = 'running'
                OR ((state = 'pending' OR (state = 'failed' AND next_retry_at IS NOT NULL))
                    AND COALESCE(next_retry_at, scheduled_at) <= now()))
         GROUP BY queue",
        vec![queues.into()],
    );
    Ok(QueueDepth::find_by_statement(statement).all(db).await?)
}

/// One queue's counts from [`queue_depths`].
#[derive(Debug, FromQueryResult)]
pub(crate) struct QueueDepth {
    pub(crate) queue: String,
    pub(crate) pending: i64,
    pub(crate) running: i64,
}

/// A queue's row of `tasklib_queues`, as the pool needs it.
#[derive(Debug, FromQueryResult)]
pub(crate) struct QueueFlags {
    pub(crate) queue: String,
    pub(crate) paused: bool,
    pub(crate) limited: bool,
}

/// Writes a cancellation decided by the handler (or asked for while it ran).
pub(crate) async fn cancelled(db: &Db, attempt: &AttemptRef, reason: &str) -> Result<bool> {
    let mut values = attempt.fence();
    values.push(reason.into());
    values.push(clock(None));
    let written = IdRow::find_by_statement(stmt(sql::CANCELLED_BY_HANDLER, values))
        .all(db)
        .await?;
    Ok(written.len() == 1)
}

#[derive(Debug, FromQueryResult)]
pub(crate) struct HeartbeatRow {
    pub(crate) id: Uuid,
    pub(crate) cancel_requested: bool,
}

/// Extends the locks of `ids`; returns those still held, with their cancel flags.
pub(crate) async fn heartbeat(
    db: &Db,
    ids: Vec<Uuid>,
    worker_id: &str,
    lock_timeout: Duration,
) -> Result<Vec<HeartbeatRow>> {
    let statement = stmt(
        sql::HEARTBEAT,
        vec![
            ids.into(),
            worker_id.into(),
            lock_timeout.as_secs_f64().into(),
            clock(None),
        ],
    );
    Ok(HeartbeatRow::find_by_statement(statement).all(db).await?)
}

/// Returns claimed-but-unstarted attempts `(id, attempt)` to the queue; the ids that went
/// back.
pub(crate) async fn release(
    db: &Db,
    attempts: impl Iterator<Item = (Uuid, i32)>,
    worker_id: &str,
) -> Result<Vec<Uuid>> {
    for_attempts(db, sql::RELEASE, attempts, worker_id).await
}

#[derive(Debug, FromQueryResult)]
pub(crate) struct RescuedRow {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) queue: String,
    pub(crate) worker_id: Option<String>,
    pub(crate) retrying: bool,
    /// Claimed ahead and never started: back in the queue, the attempt not counted.
    pub(crate) returned: bool,
}

/// Rescues up to `limit` tasks whose lock expired.
pub(crate) async fn rescue_expired(
    db: &Db,
    limit: i64,
    now: Option<DateTime<Utc>>,
) -> Result<Vec<RescuedRow>> {
    let statement = stmt(sql::RESCUE_EXPIRED, vec![limit.into(), clock(now)]);
    Ok(RescuedRow::find_by_statement(statement).all(db).await?)
}
