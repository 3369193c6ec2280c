//! Scenario 1, crash mid-task: a worker process killed with SIGKILL while its handlers run.
//! Its tasks stay `running` until their locks expire; then another worker rescues them and
//! completes them. None is lost, and each record shows the extra attempt.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tasklib::{Config, SubmitOptions, TaskLib, TaskWorker};
use tasklib_test_utils::TestDatabase;
use tasklib_tests::fault::{Behaviour, FaultJob, Recorder};
use uuid::Uuid;

use crate::common::{PATIENCE, TestResult};
use crate::fault_support::{
    WorkerProcess, all_completed, connect_raw, create_executions, poll_until, scalar,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_of_a_killed_worker_process_complete_elsewhere_after_their_locks_expire() -> TestResult
{
    let db = TestDatabase::new().await?;
    create_executions(db.url()).await?;
    let client = connect_raw(db.url()).await?;
    let lock = Duration::from_secs(2);

    // Worker A, a separate process: 4 slots, its handlers record the execution and then hang.
    let mut a = WorkerProcess::spawn(
        db.url(),
        "crash-a",
        &[
            ("FAULT_CONCURRENCY", "4"),
            ("FAULT_BEHAVIOUR", "hang"),
            ("FAULT_LOCK_TIMEOUT", "2s"),
            ("FAULT_POLL_INTERVAL", "100ms"),
        ],
    )?;
    let tasks = TaskLib::connect_with(
        Config::builder(db.url())
            .worker_id("crash-b")
            .lock_timeout(lock)
            .poll_interval(Duration::from_millis(100))
            .max_connections(6)
            .build()?,
    )
    .await?;
    let ids = tasks
        .submit_many((0..6).map(|n| FaultJob { n }), SubmitOptions::new())
        .await?;

    // A is inside four handlers (two tasks wait for a free slot). Kill it there.
    poll_until("worker A to run 4 tasks", PATIENCE, || async {
        Ok(scalar(
            &client,
            "SELECT count(*) FROM executions WHERE worker = 'crash-a'",
            &[],
        )
        .await?
            == 4)
    })
    .await
    .map_err(|e| format!("{e}\nworker log:\n{}", a.log()))?;
    a.kill()?;

    // Nothing was written by the dead worker: its tasks are `running`, locked until a moment
    // after its last heartbeat.
    let held: HashMap<Uuid, DateTime<Utc>> = client
        .query(
            "SELECT id, locked_until FROM tasks WHERE worker_id = 'crash-a' AND state = 'running'",
            &[],
        )
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    assert_eq!(held.len(), 4, "A held four tasks when it died");

    // Worker B, in this process, with the same handler minus the hang.
    tasks.register(Recorder::new(tasks.db()?.clone(), Behaviour::Finish))?;
    let pool = TaskWorker::new(&tasks)
        .concurrency(4)
        .poll_interval(Duration::from_millis(100))
        .spawn()?;
    let mut events = pool.subscribe();
    all_completed(db.url(), &mut events, &ids).await?;
    pool.shutdown().await?;

    // None lost, none duplicated, all completed by B.
    assert_eq!(scalar(&client, "SELECT count(*) FROM tasks", &[]).await?, 6);
    for id in &ids {
        let task = tasks.get_task(*id).await?.ok_or("task missing")?;
        assert!(task.is_completed(), "{task:?}");
        assert_eq!(task.worker_id.as_deref(), Some("crash-b"));
        let runs = client
            .query(
                "SELECT worker, attempt, at FROM executions WHERE task_id = $1 ORDER BY at",
                &[id],
            )
            .await?;
        let runs: Vec<(String, i32, DateTime<Utc>)> = runs
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect::<Result<_, tokio_postgres::Error>>()?;
        match held.get(id) {
            Some(locked_until) => {
                // The record shows the lost attempt: attempt 2, one retry used.
                assert_eq!((task.attempt, task.retry_count), (2, 1), "{task:?}");
                assert_eq!(runs.len(), 2, "{runs:?}");
                assert_eq!((runs[0].0.as_str(), runs[0].1), ("crash-a", 1));
                assert_eq!((runs[1].0.as_str(), runs[1].1), ("crash-b", 2));
                assert!(
                    runs[1].2 >= *locked_until,
                    "B ran it at {} before A's lock expired at {locked_until}",
                    runs[1].2
                );
            }
            None => {
                // Never started by A: B ran it once, as a first attempt.
                assert_eq!((task.attempt, task.retry_count), (1, 0), "{task:?}");
                assert_eq!(runs.len(), 1, "{runs:?}");
                assert_eq!((runs[0].0.as_str(), runs[0].1), ("crash-b", 1));
            }
        }
    }
    Ok(())
}
