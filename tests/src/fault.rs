//! The task the fault suite runs, in-process and in the `fault_worker` binary: each execution
//! is recorded in a side table, so a test can tell how often every task really ran.

use std::str::FromStr;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use serde::{Deserialize, Serialize};
use tasklib::{Handler, Task, TaskContext, TaskError};
use validator::Validate;

/// The side table: one row per execution of a handler (written before the handler's work).
pub const EXECUTIONS_DDL: &str = "CREATE TABLE IF NOT EXISTS executions (
    task_id uuid NOT NULL,
    worker text NOT NULL,
    attempt integer NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)";

const RECORD: &str = "INSERT INTO executions (task_id, worker, attempt) VALUES ($1, $2, $3)";

/// A task identified by a number the test chooses (a logical key, stable across re-submits).
#[derive(Debug, Clone, Serialize, Deserialize, Validate, PartialEq, Eq)]
pub struct FaultJob {
    /// The test's key for this task.
    pub n: i64,
}

impl Task for FaultJob {
    const NAME: &'static str = "fault_job";
    type Output = i64;
}

/// What the handler does once it has recorded the execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Returns at once.
    Finish,
    /// Sleeps this long, holding no database connection, then returns.
    Sleep(Duration),
    /// Records and sleeps (`pg_sleep`) inside one transaction: holds a pooled connection this
    /// long. The execution is recorded only if that transaction commits.
    HoldConnection(Duration),
    /// Never returns (until the process is killed).
    Hang,
}

impl FromStr for Behaviour {
    type Err = String;

    /// `finish`, `sleep:<duration>`, `hold:<duration>` or `hang` (durations as `250ms`).
    fn from_str(text: &str) -> Result<Self, String> {
        let duration =
            |d: &str| tasklib::parse_duration("FAULT_BEHAVIOUR", d).map_err(|e| e.to_string());
        match text.split_once(':') {
            None if text == "finish" => Ok(Behaviour::Finish),
            None if text == "hang" => Ok(Behaviour::Hang),
            Some(("sleep", d)) => Ok(Behaviour::Sleep(duration(d)?)),
            Some(("hold", d)) => Ok(Behaviour::HoldConnection(duration(d)?)),
            _ => Err(format!(
                "unknown behaviour `{text}`: use finish, sleep:<duration>, hold:<duration> or hang"
            )),
        }
    }
}

/// The [`FaultJob`] handler: records `(task id, worker id, attempt)` in `executions`, then
/// behaves as told. A failed record is a retryable error.
#[derive(Debug, Clone)]
pub struct Recorder {
    db: DatabaseConnection,
    behaviour: Behaviour,
}

impl Recorder {
    /// Records through `db` (the worker's own pool: `TaskLib::db()`).
    pub fn new(db: DatabaseConnection, behaviour: Behaviour) -> Self {
        Recorder { db, behaviour }
    }
}

fn record_statement(ctx: &TaskContext) -> Statement {
    Statement::from_sql_and_values(
        DbBackend::Postgres,
        RECORD,
        [
            ctx.id().into(),
            ctx.worker_id().into(),
            i32::try_from(ctx.attempt()).unwrap_or(i32::MAX).into(),
        ],
    )
}

impl Handler<FaultJob> for Recorder {
    async fn run(&self, job: FaultJob, ctx: TaskContext) -> Result<i64, TaskError> {
        if let Behaviour::HoldConnection(hold) = self.behaviour {
            let txn = self.db.begin().await?;
            txn.execute_raw(record_statement(&ctx)).await?;
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_sleep($1)",
                [hold.as_secs_f64().into()],
            ))
            .await?;
            txn.commit().await?;
            return Ok(job.n);
        }
        self.db.execute_raw(record_statement(&ctx)).await?;
        match self.behaviour {
            Behaviour::Sleep(pause) => tokio::time::sleep(pause).await,
            Behaviour::Hang => std::future::pending::<()>().await,
            Behaviour::Finish | Behaviour::HoldConnection(_) => {}
        }
        Ok(job.n)
    }
}
