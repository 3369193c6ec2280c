//! Scenario 3, contention: 4 worker processes × 8 slots race for the same tasks. With no
//! crash, every task runs exactly once (one row in the `executions` side table, by the worker
//! that completed it) and every task ends `completed`.
//!
//! The default run works 2,000 tasks; the long variant, 20,000 (`--ignored`, run by CI).

use std::time::Duration;

use tasklib::{SubmitOptions, TaskLib};
use tasklib_test_utils::TestDatabase;
use tasklib_tests::fault::FaultJob;

use crate::common::{PATIENCE, TestResult};
use crate::fault_support::{WorkerProcess, connect_raw, create_executions, poll_until, scalar};

const PROCESSES: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_run_2_000_tasks_exactly_once() -> TestResult {
    contend(2_000).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run with --ignored"]
async fn four_processes_run_20_000_tasks_exactly_once() -> TestResult {
    contend(20_000).await
}

async fn contend(count: i64) -> TestResult {
    let db = TestDatabase::new().await?;
    create_executions(db.url()).await?;
    let client = connect_raw(db.url()).await?;
    let workers = (0..PROCESSES)
        .map(|i| {
            WorkerProcess::spawn(
                db.url(),
                &format!("contend-{i}"),
                &[
                    ("FAULT_CONCURRENCY", "8"),
                    ("FAULT_BEHAVIOUR", "finish"),
                    ("FAULT_LOCK_TIMEOUT", "60s"),
                    ("FAULT_POLL_INTERVAL", "1s"),
                ],
            )
        })
        .collect::<TestResult<Vec<_>>>()?;
    // Every process is listening: the one notification of the bulk submit wakes all four at
    // once, and they claim from the same rows.
    poll_until("all workers to listen", PATIENCE, || async {
        Ok(scalar(
            &client,
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
            &[],
        )
        .await?
            == PROCESSES as i64)
    })
    .await?;

    let tasks = TaskLib::connect(db.url()).await?;
    tasks
        .submit_many((0..count).map(|n| FaultJob { n }), SubmitOptions::new())
        .await?;
    // About 1 s per 1,000 tasks here; the limit only guards a hang.
    let limit = PATIENCE + Duration::from_millis(15 * count.unsigned_abs());
    poll_until("every task to complete", limit, || async {
        Ok(scalar(
            &client,
            "SELECT count(*) FROM tasks WHERE state = 'completed'",
            &[],
        )
        .await?
            == count)
    })
    .await
    .map_err(|e| {
        let logs: Vec<String> = workers.iter().map(|w| w.log()).collect();
        format!("{e}\nworker logs:\n{}", logs.join("\n"))
    })?;
    for worker in workers {
        worker.stop().await?;
    }

    let one = |sql: &'static str| {
        let client = &client;
        async move { scalar(client, sql, &[]).await }
    };
    assert_eq!(one("SELECT count(*) FROM tasks").await?, count);
    assert_eq!(
        one("SELECT count(*) FROM executions").await?,
        count,
        "one execution per task"
    );
    assert_eq!(
        one("SELECT count(DISTINCT task_id) FROM executions").await?,
        count
    );
    assert_eq!(
        one("SELECT count(*) FROM tasks WHERE attempt <> 1 OR retry_count <> 0").await?,
        0,
        "no task needed a second attempt"
    );
    assert_eq!(
        one(
            "SELECT count(*) FROM tasks t JOIN executions e ON e.task_id = t.id
             WHERE e.worker IS DISTINCT FROM t.worker_id"
        )
        .await?,
        0,
        "each task was completed by the worker that ran it"
    );
    assert_eq!(
        one("SELECT count(DISTINCT worker) FROM executions").await?,
        PROCESSES as i64,
        "every process took part"
    );
    Ok(())
}
