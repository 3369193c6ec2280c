//! What the dashboard reads: the live worker pools (`tasklib_workers`) and each queue's open
//! tasks and recent throughput (`TaskLib::queue_overview`).

use std::sync::Arc;
use std::time::Duration;

use tasklib::{Config, SubmitOptions, TaskContext, TaskError, TaskLib, TaskState, TaskWorker};
use tasklib_test_utils::TestDatabase;
use tokio::sync::Semaphore;

use crate::common::{Gated, Job, PATIENCE, TestResult, job, started};

/// Polls `read` until `done` says yes (no event announces a heartbeat's write).
async fn until<T, F, Fut>(mut read: F, done: impl Fn(&T) -> bool) -> TestResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = tasklib::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let value = read().await?;
        if done(&value) {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            return Err("condition not reached within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn running_pools_are_listed_refreshed_and_removed_when_they_stop() -> TestResult {
    let db = TestDatabase::new().await?;
    let tasks = TaskLib::connect_with(
        Config::builder(db.url())
            .worker_id("pool-a")
            .lock_timeout(Duration::from_secs(1))
            .build()?,
    )
    .await?;
    let gate = Arc::new(Semaphore::new(0));
    tasks.register(Gated(Arc::clone(&gate)))?;
    assert!(tasks.workers().await?.is_empty());

    let pool = TaskWorker::new(&tasks)
        .queue("mail", 2)
        .queue("reports", 3)
        .spawn()?;
    let mut events = pool.subscribe();
    let listed = until(|| tasks.workers(), |w| w.len() == 1).await?;
    let me = &listed[0];
    assert_eq!(me.worker_id, "pool-a");
    assert_eq!(me.pid, std::process::id());
    assert_eq!(me.slots, 5);
    let mut groups: Vec<(Vec<String>, u64)> = me
        .queues
        .iter()
        .map(|g| (g.queues.clone(), g.slots))
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        vec![
            (vec!["mail".to_owned()], 2),
            (vec!["reports".to_owned()], 3)
        ]
    );
    assert!(me.expires_at > me.heartbeat_at);

    // A running task counts; heartbeats move the row on.
    let id = tasks
        .submit_with(job("held"), SubmitOptions::new().queue("mail"))
        .await?;
    started(&mut events, id).await?;
    let first_beat = me.heartbeat_at;
    let later = until(
        || tasks.workers(),
        |w| w.len() == 1 && w[0].heartbeat_at > first_beat && w[0].running == 1,
    )
    .await?;
    assert!(later[0].expires_at > first_beat);
    gate.add_permits(1);
    tasks.wait_result(id, PATIENCE).await?;

    // Stopped: gone at once.
    pool.shutdown().await?;
    assert!(tasks.workers().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_dead_pools_row_is_not_listed_and_long_dead_rows_are_cleared() -> TestResult {
    let db = TestDatabase::new().await?;
    let tasks = TaskLib::connect(db.url()).await?;
    tasks.register(|j: Job, _: TaskContext| async move { Ok::<_, TaskError>(j.label) })?;
    let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    // Two pools that stopped heartbeating: one a minute ago, one two days ago.
    client
        .batch_execute(
            "INSERT INTO tasklib_workers (pool_id, worker_id, host, pid, queues, slots, expires_at)
             VALUES (gen_random_uuid(), 'died-recently', 'h', 1, '[]', 1, now() - interval '1 minute'),
                    (gen_random_uuid(), 'died-long-ago', 'h', 2, '[]', 1, now() - interval '2 days')",
        )
        .await?;
    assert!(
        tasks.workers().await?.is_empty(),
        "expired rows are not live pools"
    );

    let pool = tasks.spawn_workers(1)?;
    until(|| tasks.workers(), |w| w.len() == 1).await?;
    let left: Vec<String> = client
        .query(
            "SELECT worker_id FROM tasklib_workers ORDER BY worker_id",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(left.contains(&"died-recently".to_owned()), "{left:?}");
    assert!(!left.contains(&"died-long-ago".to_owned()), "{left:?}");
    pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn the_overview_counts_open_tasks_and_what_finished_each_minute() -> TestResult {
    let db = TestDatabase::new().await?;
    let tasks = TaskLib::connect(db.url()).await?;
    tasks.register(|j: Job, _: TaskContext| async move {
        if j.label.starts_with("fail") {
            Err(TaskError::permanent("no"))
        } else if j.label.starts_with("retry") {
            Err(TaskError::retry_after(Duration::from_secs(3600), "later"))
        } else {
            Ok(j.label)
        }
    })?;
    let on = |queue: &str| SubmitOptions::new().queue(queue);
    let pool = TaskWorker::new(&tasks).queue("work", 2).spawn()?;
    for label in ["a", "b", "c", "fail-1"] {
        let id = tasks.submit_with(job(label), on("work")).await?;
        tasks.wait_result(id, PATIENCE).await?;
    }
    // One failed attempt with a retry an hour away: failed, but counted as retrying.
    let retrying = tasks.submit_with(job("retry-1"), on("work")).await?;
    until(
        || tasks.get_task(retrying),
        |t| t.as_ref().is_some_and(|t| t.state == TaskState::Failed),
    )
    .await?;
    pool.shutdown().await?;
    // Waiting work, in a queue nobody serves.
    tasks.submit_with(job("due-1"), on("backlog")).await?;
    tasks.submit_with(job("due-2"), on("backlog")).await?;
    tasks
        .submit_with(job("later"), on("backlog").delay(Duration::from_secs(3600)))
        .await?;
    let cancelled = tasks.submit_with(job("dropped"), on("backlog")).await?;
    tasks.cancel(cancelled).await?;
    tasks.pause_queue("quiet").await?;

    let overview = tasks.queue_overview(15).await?;
    let names: Vec<&str> = overview.iter().map(|q| q.queue.as_str()).collect();
    assert_eq!(names, ["backlog", "quiet", "work"]);

    let backlog = &overview[0];
    assert_eq!((backlog.due, backlog.scheduled), (2, 1));
    assert_eq!(
        (backlog.running, backlog.failed, backlog.cancelled),
        (0, 0, 1)
    );
    assert!(backlog.oldest_due_age.is_some());
    assert!(!backlog.paused);

    let quiet = &overview[1];
    assert!(quiet.paused);
    assert_eq!(quiet.due + quiet.failed + quiet.cancelled, 0);

    let work = &overview[2];
    assert_eq!((work.due, work.failed, work.retrying), (0, 1, 1));
    assert_eq!(
        work.scheduled, 0,
        "a retry is counted as retrying, not as later"
    );
    assert_eq!(
        work.finished.len(),
        16,
        "15 minutes back and the current one"
    );
    let completed: u64 = work.finished.iter().map(|m| m.completed).sum();
    let failed: u64 = work.finished.iter().map(|m| m.failed).sum();
    assert_eq!((completed, failed), (3, 1));
    let minutes: Vec<_> = work.finished.iter().map(|m| m.minute).collect();
    assert!(
        minutes
            .windows(2)
            .all(|w| w[1] - w[0] == chrono::Duration::minutes(1))
    );
    let cancelled_counted: u64 = backlog.finished.iter().map(|m| m.cancelled).sum();
    assert_eq!(cancelled_counted, 1);

    // Completed rows are not counted as open anywhere.
    let record = tasks
        .list_tasks(&tasklib::TaskFilter::new().state(TaskState::Completed))
        .await?;
    assert_eq!(record.len(), 3);

    let bad = tasks.queue_overview(0).await;
    assert!(matches!(
        bad,
        Err(tasklib::Error::InvalidOption {
            option: "minutes",
            ..
        })
    ));
    Ok(())
}
