//! What the fault suite shares: worker processes to kill, the `executions` side table, and
//! bounded waits (on worker events in-process, on the database across processes).

use std::fs::File;
use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use tasklib::WorkerEvent;
use tasklib_tests::fault::EXECUTIONS_DDL;
use tokio::sync::broadcast;
use tokio::time::Instant;
use uuid::Uuid;

use crate::common::{PATIENCE, TestResult};

/// The `fault_worker` binary (`tests/src/bin/fault_worker.rs`).
const WORKER_BIN: &str = env!("CARGO_BIN_EXE_fault_worker");

/// A raw connection to `url` (a `TestDatabase` or `TestCluster` URL).
pub(crate) async fn connect_raw(url: &str) -> TestResult<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// `url` pointing at database `name` instead (its user, host and parameters kept).
pub(crate) fn with_database(url: &str, name: &str) -> TestResult<String> {
    let (scheme, rest) = url.split_once("://").ok_or("not a URL")?;
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let query = path.find('?').map_or("", |at| &path[at..]);
    Ok(format!("{scheme}://{authority}/{name}{query}"))
}

/// Creates the `executions` table the [`Recorder`](tasklib_tests::fault::Recorder) writes.
pub(crate) async fn create_executions(url: &str) -> TestResult {
    connect_raw(url)
        .await?
        .batch_execute(EXECUTIONS_DDL)
        .await?;
    Ok(())
}

/// A single `bigint` from a query (`count(*)` and the like).
pub(crate) async fn scalar(
    client: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> TestResult<i64> {
    Ok(client.query_one(sql, params).await?.try_get(0)?)
}

/// Polls `check` every 50 ms until it holds; fails after `limit`. For waits on other
/// processes, which send no events.
pub(crate) async fn poll_until<F, Fut>(what: &str, limit: Duration, mut check: F) -> TestResult
where
    F: FnMut() -> Fut,
    Fut: Future<Output = TestResult<bool>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {limit:?} waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every task of `ids` is `completed`. The database is the truth; the pool's
/// events say when to look again (with a 1 s fallback, as events from before the
/// subscription, or skipped by a lagging receiver, never come). Fails after [`PATIENCE`].
pub(crate) async fn all_completed(
    url: &str,
    events: &mut broadcast::Receiver<WorkerEvent>,
    ids: &[Uuid],
) -> TestResult {
    let client = connect_raw(url).await?;
    let deadline = Instant::now() + PATIENCE;
    let want = i64::try_from(ids.len())?;
    loop {
        let done = scalar(
            &client,
            "SELECT count(*) FROM tasks WHERE id = ANY($1) AND state = 'completed'",
            &[&ids],
        )
        .await?;
        if done == want {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(
                format!("only {done} of {want} tasks completed within {PATIENCE:?}").into(),
            );
        }
        let next_finish = async {
            loop {
                match events.recv().await {
                    Ok(WorkerEvent::TaskFinished { .. }) => return,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), next_finish).await;
    }
}

/// A `fault_worker` process. Dropping it kills the process.
pub(crate) struct WorkerProcess {
    child: Child,
    /// The process's lifeline: closing it asks for a graceful shutdown.
    stdin: Option<ChildStdin>,
    log: PathBuf,
    /// Its worker id.
    pub(crate) id: String,
}

impl WorkerProcess {
    /// Starts a worker on `url` with id `id` and `FAULT_*` settings (see the binary's docs).
    pub(crate) fn spawn(url: &str, id: &str, settings: &[(&str, &str)]) -> TestResult<Self> {
        let log = std::env::temp_dir().join(format!(
            "tasklib-fault-worker-{id}-{}.log",
            Uuid::now_v7().simple()
        ));
        let mut command = Command::new(WORKER_BIN);
        command
            .env_remove("DATABASE_URL")
            .env("FAULT_DATABASE_URL", url)
            .env("FAULT_WORKER_ID", id)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(File::create(&log)?);
        for (key, value) in settings {
            command.env(key, value);
        }
        let mut child = command.spawn()?;
        let stdin = child.stdin.take();
        Ok(WorkerProcess {
            child,
            stdin,
            log,
            id: id.to_owned(),
        })
    }

    /// SIGKILL: the process dies at once, mid-task, without writing anything.
    pub(crate) fn kill(&mut self) -> TestResult {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Closes the lifeline and waits (bounded) for a clean exit.
    pub(crate) async fn stop(mut self) -> TestResult {
        self.wait_exit().await
    }

    /// [`stop`](Self::stop), then what the process logged in all.
    pub(crate) async fn stop_with_log(mut self) -> TestResult<String> {
        self.wait_exit().await?;
        Ok(self.log())
    }

    async fn wait_exit(&mut self) -> TestResult {
        drop(self.stdin.take());
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if status.success() {
                    return Ok(());
                }
                return Err(
                    format!("worker {} exited with {status}:\n{}", self.id, self.log()).into(),
                );
            }
            if Instant::now() >= deadline {
                return Err(format!("worker {} did not stop:\n{}", self.id, self.log()).into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the process logged (warnings and errors), for failure messages.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}
