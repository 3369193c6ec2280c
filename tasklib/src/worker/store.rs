//! The worker's reads and writes of the `tasks` table (statements in [`super::sql`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, FromQueryResult, Statement, Value};
use uuid::Uuid;

use super::sql;
use crate::Result;
use crate::entity::task;

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

pub(crate) async fn claim(
    db: &DatabaseConnection,
    queue: &str,
    names: &[String],
    limit: usize,
    worker_id: &str,
    lock_timeout: Duration,
    now: Option<DateTime<Utc>>,
) -> Result<Vec<task::Model>> {
    let sql = sql::CLAIM.replace("{limit}", &limit.max(1).to_string());
    let statement = stmt(
        &sql,
        vec![
            queue.into(),
            names.to_vec().into(),
            worker_id.into(),
            lock_timeout.as_secs_f64().into(),
            clock(now),
        ],
    );
    Ok(task::Model::find_by_statement(statement).all(db).await?)
}

/// Writes a success; false when the attempt was fenced off.
pub(crate) async fn complete(
    db: &DatabaseConnection,
    attempt: &AttemptRef,
    result: serde_json::Value,
) -> Result<bool> {
    let mut values = attempt.fence();
    values.push(serde_json::json!({ "value": result }).into());
    values.push(clock(None));
    let done = db.execute_raw(stmt(sql::COMPLETE, values)).await?;
    Ok(done.rows_affected() == 1)
}

/// Writes many successes of worker `worker_id` at once; returns the ids the fence let
/// through.
pub(crate) async fn complete_many(
    db: &DatabaseConnection,
    worker_id: &str,
    done: &[(Uuid, i32, serde_json::Value)],
) -> Result<Vec<Uuid>> {
    let rows: Vec<serde_json::Value> = done
        .iter()
        .map(|(id, attempt, result)| serde_json::json!({ "id": id, "attempt": attempt, "result": { "value": result } }))
        .collect();
    let statement = stmt(
        sql::COMPLETE_MANY,
        vec![
            serde_json::Value::Array(rows).into(),
            worker_id.into(),
            clock(None),
            done.iter()
                .map(|(id, _, _)| *id)
                .collect::<Vec<Uuid>>()
                .into(),
        ],
    );
    let written = IdRow::find_by_statement(statement).all(db).await?;
    Ok(written.into_iter().map(|r| r.id).collect())
}

#[derive(Debug, FromQueryResult)]
struct IdRow {
    id: Uuid,
}

/// Writes a failure: retried after `retry_in`, or terminal when `None`. False when fenced off.
pub(crate) async fn fail(
    db: &DatabaseConnection,
    attempt: &AttemptRef,
    error: &str,
    retry_in: Option<Duration>,
) -> Result<bool> {
    let mut values = attempt.fence();
    values.push(error.into());
    values.push(retry_in.map(|d| d.as_secs_f64()).into());
    values.push(clock(None));
    let done = db.execute_raw(stmt(sql::FAIL, values)).await?;
    Ok(done.rows_affected() == 1)
}

/// Writes a cancellation decided by the handler (or asked for while it ran).
pub(crate) async fn cancelled(
    db: &DatabaseConnection,
    attempt: &AttemptRef,
    reason: &str,
) -> Result<bool> {
    let mut values = attempt.fence();
    values.push(reason.into());
    values.push(clock(None));
    let done = db
        .execute_raw(stmt(sql::CANCELLED_BY_HANDLER, values))
        .await?;
    Ok(done.rows_affected() == 1)
}

#[derive(Debug, FromQueryResult)]
pub(crate) struct HeartbeatRow {
    pub(crate) id: Uuid,
    pub(crate) cancel_requested: bool,
}

/// Extends the locks of `ids`; returns those still held, with their cancel flags.
pub(crate) async fn heartbeat(
    db: &DatabaseConnection,
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

/// Returns claimed-but-unstarted tasks to the queue.
pub(crate) async fn release(
    db: &DatabaseConnection,
    ids: Vec<Uuid>,
    worker_id: &str,
) -> Result<u64> {
    let done = db
        .execute_raw(stmt(sql::RELEASE, vec![ids.into(), worker_id.into()]))
        .await?;
    Ok(done.rows_affected())
}

#[derive(Debug, FromQueryResult)]
pub(crate) struct RescuedRow {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) worker_id: Option<String>,
    pub(crate) retrying: bool,
}

/// Rescues up to `limit` tasks whose lock expired.
pub(crate) async fn rescue_expired(
    db: &DatabaseConnection,
    limit: i64,
    now: Option<DateTime<Utc>>,
) -> Result<Vec<RescuedRow>> {
    let statement = stmt(sql::RESCUE_EXPIRED, vec![limit.into(), clock(now)]);
    Ok(RescuedRow::find_by_statement(statement).all(db).await?)
}
