//! Recovery with default settings, the way it happens in production: a worker process that
//! sets nothing is killed with SIGKILL while running tasks, a second process that sets nothing
//! takes over, and every task completes within a minute of the kill.
//!
//! Long (about half a minute: the default lease), so it runs with `--ignored`, as CI does.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tasklib::{SubmitOptions, TaskLib};
use tasklib_test_utils::TestDatabase;
use tasklib_tests::fault::FaultJob;

use crate::common::TestResult;
use crate::fault_support::{WorkerProcess, connect_raw, create_executions, poll_until, scalar};

/// Longest wait for anything here: the default lease (30 s) and a poll interval, with room.
const LIMIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: waits out the default lease; run with --ignored"]
async fn with_default_settings_a_killed_workers_tasks_run_elsewhere_within_a_minute() -> TestResult
{
    let db = TestDatabase::new().await?;
    create_executions(db.url()).await?;
    let client = connect_raw(db.url()).await?;
    let library_defaults = [
        ("FAULT_LOCK_TIMEOUT", "library"),
        ("FAULT_POLL_INTERVAL", "library"),
    ];
    let mut a = WorkerProcess::spawn(
        db.url(),
        "defaults-a",
        &[
            ("FAULT_CONCURRENCY", "4"),
            ("FAULT_BEHAVIOUR", "hang"),
            library_defaults[0],
            library_defaults[1],
        ],
    )?;
    let tasks = TaskLib::connect(db.url()).await?;
    let ids = tasks
        .submit_many((0..20).map(|n| FaultJob { n }), SubmitOptions::new())
        .await?;
    poll_until("worker A to run 4 tasks", LIMIT, || async {
        Ok(scalar(&client, "SELECT count(*) FROM executions", &[]).await? == 4)
    })
    .await
    .map_err(|e| format!("{e}\nworker log:\n{}", a.log()))?;
    a.kill()?;
    let killed_at: DateTime<Utc> = client.query_one("SELECT now()", &[]).await?.get(0);

    let b = WorkerProcess::spawn(
        db.url(),
        "defaults-b",
        &[
            ("FAULT_CONCURRENCY", "4"),
            ("FAULT_BEHAVIOUR", "finish"),
            library_defaults[0],
            library_defaults[1],
        ],
    )?;
    for id in &ids {
        let result = tasks.wait_result(*id, LIMIT).await?;
        assert!(
            result.is_completed(),
            "{result:?}\nworker B log:\n{}",
            b.log()
        );
    }
    b.stop().await?;

    // Nothing lost, nothing run twice but the four A died holding, and the last of those
    // within a minute of the kill.
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*) FROM tasks WHERE state = 'completed'",
            &[]
        )
        .await?,
        20
    );
    let rerun = scalar(
        &client,
        "SELECT count(*) FROM (SELECT task_id FROM executions GROUP BY 1 HAVING count(*) > 1) r",
        &[],
    )
    .await?;
    assert_eq!(rerun, 4);
    let last: DateTime<Utc> = client
        .query_one("SELECT max(completed_at) FROM tasks", &[])
        .await?
        .get(0);
    let recovery = (last - killed_at).to_std()?;
    assert!(
        recovery < Duration::from_secs(60),
        "the killed worker's tasks completed {recovery:?} after the kill"
    );
    Ok(())
}
