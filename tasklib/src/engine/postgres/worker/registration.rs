//! The pool's row in `tasklib_workers`: written when the pool starts, refreshed at each
//! heartbeat, deleted when it stops. Readers list the rows that have not expired
//! ([`crate::engine::postgres::overview`]), so a pool that dies drops off within its lock
//! timeout.

use std::time::Duration;

use sea_orm::{DbBackend, Statement};
use serde_json::json;

use super::pool::PoolShared;
use crate::Result;
use crate::engine::postgres::db::Db;

/// Writes (or refreshes) the pool's row; on start it also deletes rows of pools that died
/// more than a day ago.
const UPSERT: &str = r#"
WITH stale AS (
    DELETE FROM tasklib_workers
    WHERE $8 AND expires_at < now() - interval '1 day'
)
INSERT INTO tasklib_workers AS w
    (pool_id, worker_id, host, pid, queues, slots, started_at, heartbeat_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, now(), now(), now() + make_interval(secs => $7))
ON CONFLICT (pool_id) DO UPDATE
    SET heartbeat_at = now(), expires_at = excluded.expires_at
"#;

const DELETE: &str = "DELETE FROM tasklib_workers WHERE pool_id = $1";

/// Writes the pool's row (`starting`: also clear out long-dead pools' rows).
pub(crate) async fn upsert(pool: &PoolShared, starting: bool) {
    let queues: Vec<_> = pool
        .groups
        .iter()
        .map(|(queues, slots)| json!({ "queues": queues, "slots": slots }))
        .collect();
    let slots: usize = pool.groups.iter().map(|(_, slots)| slots).sum();
    let values = vec![
        pool.pool_id.into(),
        pool.worker_id.clone().into(),
        crate::config::host_name()
            .unwrap_or_else(|| "unknown".to_owned())
            .into(),
        i64::from(std::process::id()).into(),
        serde_json::Value::Array(queues).into(),
        i64::try_from(slots).unwrap_or(i64::MAX).into(),
        // Three heartbeats: the row outlives two lost ones, like a task's lock.
        pool.lock_timeout
            .max(Duration::from_millis(300))
            .as_secs_f64()
            .into(),
        starting.into(),
    ];
    if let Err(error) = execute(&pool.db, UPSERT, values).await {
        tracing::debug!(error = %crate::task::error_chain(&error), "writing the pool's row in tasklib_workers failed; trying again at the next heartbeat");
    }
}

/// Deletes the pool's row (the pool stopped).
pub(crate) async fn remove(pool: &PoolShared) {
    if let Err(error) = execute(&pool.db, DELETE, vec![pool.pool_id.into()]).await {
        tracing::debug!(error = %crate::task::error_chain(&error), "deleting the pool's row in tasklib_workers failed; it expires on its own");
    }
}

async fn execute(db: &Db, sql: &str, values: Vec<sea_orm::Value>) -> Result<()> {
    use sea_orm::ConnectionTrait;
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        values,
    ))
    .await?;
    Ok(())
}
