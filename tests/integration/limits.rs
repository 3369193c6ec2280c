//! Cluster-wide limits per queue, obeyed by several worker processes at once: at most N of a
//! queue's tasks running, at most N started per window.

use std::time::Duration;

use tasklib::{QueueLimits, RateLimit, SubmitOptions, TaskLib};
use tasklib_test_utils::TestDatabase;
use tasklib_tests::fault::FaultJob;

use crate::common::{PATIENCE, TestResult};
use crate::fault_support::{WorkerProcess, connect_raw, create_executions, poll_until, scalar};

/// Three `fault_worker` processes of 4 slots each, handlers doing `behaviour`.
fn three_workers(url: &str, prefix: &str, behaviour: &str) -> TestResult<Vec<WorkerProcess>> {
    (0..3)
        .map(|n| {
            WorkerProcess::spawn(
                url,
                &format!("{prefix}-{n}"),
                &[
                    ("FAULT_CONCURRENCY", "4"),
                    ("FAULT_BEHAVIOUR", behaviour),
                    ("FAULT_POLL_INTERVAL", "100ms"),
                ],
            )
        })
        .collect()
}

async fn all_completed(client: &tokio_postgres::Client, n: i64) -> TestResult {
    poll_until("every task to complete", PATIENCE, || async {
        Ok(scalar(
            client,
            "SELECT count(*) FROM tasks WHERE state = 'completed'",
            &[],
        )
        .await?
            == n)
    })
    .await
}

/// The most tasks whose running spans (claimed to completed) overlap at one instant.
const MOST_AT_ONCE: &str = r#"
SELECT max(running)::bigint FROM (
    SELECT sum(delta) OVER (ORDER BY at, delta) AS running
    FROM (SELECT started_at AS at, 1 AS delta FROM tasks
          UNION ALL
          SELECT completed_at, -1 FROM tasks) AS edges
) AS timeline
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_n_tasks_of_a_limited_queue_run_at_once_across_processes() -> TestResult {
    let db = TestDatabase::new().await?;
    create_executions(db.url()).await?;
    let client = connect_raw(db.url()).await?;
    let tasks = TaskLib::connect(db.url()).await?;
    tasks
        .set_queue_limits("default", QueueLimits::new().concurrency(3))
        .await?;
    // Twelve slots in all, three allowed.
    let workers = three_workers(db.url(), "limited", "sleep:150ms")?;
    tasks
        .submit_many((0..24).map(|n| FaultJob { n }), SubmitOptions::new())
        .await?;
    all_completed(&client, 24).await?;

    let most = scalar(&client, MOST_AT_ONCE, &[]).await?;
    assert_eq!(most, 3, "the limit was reached and never passed");

    // Without the limit, the same processes run more at once (the check above could fail).
    tasks
        .set_queue_limits("default", QueueLimits::new())
        .await?;
    client.batch_execute("DELETE FROM tasks").await?;
    tasks
        .submit_many((0..24).map(|n| FaultJob { n }), SubmitOptions::new())
        .await?;
    all_completed(&client, 24).await?;
    let most = scalar(&client, MOST_AT_ONCE, &[]).await?;
    assert!(most > 3, "unlimited, {most} ran at once");
    for worker in workers {
        worker.stop().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_n_tasks_of_a_rate_limited_queue_start_per_window_across_processes() -> TestResult {
    let db = TestDatabase::new().await?;
    create_executions(db.url()).await?;
    let client = connect_raw(db.url()).await?;
    let tasks = TaskLib::connect(db.url()).await?;
    tasks
        .set_queue_limits(
            "default",
            QueueLimits::new().rate(RateLimit::new(4, Duration::from_secs(1))),
        )
        .await?;
    let workers = three_workers(db.url(), "rated", "finish")?;
    tasks
        .submit_many((0..12).map(|n| FaultJob { n }), SubmitOptions::new())
        .await?;
    all_completed(&client, 12).await?;

    // Starts per one-second window of the database clock (the claim's `now()`).
    let per_window: Vec<i64> = client
        .query(
            "SELECT count(*) FROM tasks GROUP BY floor(extract(epoch FROM started_at)) ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(per_window.iter().all(|&n| n <= 4), "{per_window:?}");
    assert!(
        per_window.len() >= 3,
        "12 starts need three windows: {per_window:?}"
    );
    assert_eq!(per_window.iter().max(), Some(&4), "{per_window:?}");
    let status = tasks.queue_status().await?;
    let default = status
        .iter()
        .find(|q| q.queue == "default")
        .ok_or("no default queue")?;
    assert_eq!(
        default.limits.rate,
        Some(RateLimit::new(4, Duration::from_secs(1)))
    );
    for worker in workers {
        worker.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn limits_set_while_workers_run_apply_and_bad_limits_are_refused() -> TestResult {
    use std::sync::Arc;

    use tasklib::{TaskContext, TaskError, TaskOutcome, TaskWorker, WorkerEvent};
    use tokio::sync::Semaphore;

    use crate::common::{Job, finished, job, setup, wait_for};

    let env = setup().await?;
    let gate = Arc::new(Semaphore::new(0));
    let held = Arc::clone(&gate);
    env.tasks.register(move |job: Job, _: TaskContext| {
        let held = Arc::clone(&held);
        async move {
            held.acquire().await?.forget();
            Ok::<_, TaskError>(job.label)
        }
    })?;
    let pool = TaskWorker::new(&env.tasks)
        .concurrency(4)
        .poll_interval(Duration::from_secs(60))
        .spawn()?;
    let mut events = pool.subscribe();
    crate::common::listener_up(&mut events).await?;
    env.tasks
        .set_queue_limits("default", QueueLimits::new().concurrency(1))
        .await?;
    let first = env.tasks.submit(job("first")).await?;
    let second = env.tasks.submit(job("second")).await?;
    let started = wait_for(&mut events, |e| match e {
        WorkerEvent::TaskStarted { id, .. } => Some(*id),
        _ => None,
    })
    .await?;
    assert_eq!(started, first, "the older one starts");
    // The second waits for the first, though three slots are free.
    gate.add_permits(1);
    assert_eq!(finished(&mut events, first).await?, TaskOutcome::Completed);
    wait_for(&mut events, |e| {
        matches!(e, WorkerEvent::TaskStarted { id, .. } if *id == second).then_some(())
    })
    .await?;
    let row = env.tasks.get_task(first).await?.ok_or("task gone")?;
    let next = env.tasks.get_task(second).await?.ok_or("task gone")?;
    assert!(
        next.started_at >= row.completed_at,
        "the second started only once the first was done: {row:?} {next:?}"
    );
    gate.add_permits(1);
    assert_eq!(finished(&mut events, second).await?, TaskOutcome::Completed);
    pool.shutdown().await?;

    for bad in [
        QueueLimits::new().concurrency(0),
        QueueLimits::new().rate(RateLimit::new(10, Duration::from_millis(10))),
    ] {
        let refused = env.tasks.set_queue_limits("default", bad).await;
        assert!(
            matches!(refused, Err(tasklib::Error::InvalidOption { .. })),
            "{refused:?}"
        );
    }
    Ok(())
}
