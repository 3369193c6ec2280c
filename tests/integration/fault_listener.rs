//! Scenario 4, the listener's connection alone is lost (`pg_terminate_backend` on its backend)
//! and cannot come back for a while: pickup goes on at polling speed, and returns to
//! notification speed once the listener has reconnected.

use std::time::Duration;

use tasklib::{TaskContext, TaskError, TaskOutcome, TaskWorker, WorkerEvent};
use tokio::time::Instant;

use crate::common::{Job, TestResult, finished, job, listener_up, raw, setup, wait_for};
use crate::fault_support::{connect_raw, with_database};

/// Long against a notification's few milliseconds, short enough to wait for once.
const POLL: Duration = Duration::from_secs(4);
/// Pickup by notification must beat this (with room for a loaded machine). Polling cannot:
/// each task is submitted right after the previous one was claimed, which restarted the
/// producer's poll sleep.
const NOTIFICATION_SPEED: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pickup_falls_back_to_polling_and_returns_to_notification_speed() -> TestResult {
    let env = setup().await?;
    env.tasks
        .register(|job: Job, _: TaskContext| async move { Ok::<_, TaskError>(job.label) })?;
    let pool = TaskWorker::new(&env.tasks)
        .concurrency(2)
        .poll_interval(POLL)
        .spawn()?;
    let mut events = pool.subscribe();
    listener_up(&mut events).await?;
    let admin = raw(&env.db).await?;
    // ALTER DATABASE ... ALLOW_CONNECTIONS must come from another database.
    let outside = connect_raw(&with_database(env.db.url(), "postgres")?).await?;

    // Notification speed, before anything breaks.
    for n in 0..3 {
        let pickup = submit_and_time(&env, &mut events, &format!("before {n}")).await?;
        assert!(pickup < NOTIFICATION_SPEED, "pickup took {pickup:?}");
    }

    // Keep the listener out: no new session may open on this database (the pool's open
    // connections stay), then cut the listener's session.
    let database = env.db.name().replace('"', "\"\"");
    outside
        .batch_execute(&format!(
            "ALTER DATABASE \"{database}\" WITH ALLOW_CONNECTIONS false"
        ))
        .await?;
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
               AND query ILIKE 'LISTEN%'",
            &[],
        )
        .await?
        .try_get(0)?;
    assert_eq!(killed, 1, "one listener backend");
    wait_for(&mut events, |e| {
        matches!(e, WorkerEvent::ListenerDisconnected { .. }).then_some(())
    })
    .await?;

    // Work is still picked up, by the poll tick. The listener stays down meanwhile (it
    // announces every reconnect).
    let polled = env.tasks.submit(job("while deaf")).await?;
    let reconnected = wait_for(&mut events, |e| match e {
        WorkerEvent::ListenerConnected => Some(true),
        WorkerEvent::TaskFinished { id, outcome, .. } if *id == polled => {
            assert_eq!(*outcome, TaskOutcome::Completed);
            Some(false)
        }
        _ => None,
    })
    .await?;
    assert!(
        !reconnected,
        "the listener came back before the poll found the task"
    );

    // Let it back in: it reconnects on its own (backoff), and notifications drive pickup
    // again.
    outside
        .batch_execute(&format!(
            "ALTER DATABASE \"{database}\" WITH ALLOW_CONNECTIONS true"
        ))
        .await?;
    listener_up(&mut events).await?;
    for n in 0..3 {
        let pickup = submit_and_time(&env, &mut events, &format!("after {n}")).await?;
        assert!(pickup < NOTIFICATION_SPEED, "pickup took {pickup:?}");
    }
    pool.shutdown().await?;
    Ok(())
}

/// Submits a task and returns how long until its handler started.
async fn submit_and_time(
    env: &crate::common::Env,
    events: &mut tokio::sync::broadcast::Receiver<WorkerEvent>,
    label: &str,
) -> TestResult<Duration> {
    let submitted = Instant::now();
    let id = env.tasks.submit(job(label)).await?;
    crate::common::started(events, id).await?;
    let pickup = submitted.elapsed();
    assert_eq!(finished(events, id).await?, TaskOutcome::Completed);
    Ok(pickup)
}
