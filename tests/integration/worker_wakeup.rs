//! How workers find work: the notification (not the poll tick) wakes them; delayed tasks
//! wait for their time; the listener comes back after its connection is killed.

use std::time::Duration;

use tasklib::{SubmitOptions, TaskContext, TaskError, TaskOutcome, TaskWorker, WorkerEvent};

use crate::common::{
    Gated, Job, TestResult, finished, job, listener_up, raw, setup, started, wait_for,
};

fn echo(tasks: &tasklib::TaskLib) -> TestResult {
    tasks.register(|job: Job, _: TaskContext| async move { Ok::<_, TaskError>(job.label) })?;
    Ok(())
}

#[tokio::test]
async fn notification_wakes_an_idle_worker_long_before_the_poll_tick() -> TestResult {
    let env = setup().await?;
    echo(&env.tasks)?;
    let pool = TaskWorker::new(&env.tasks)
        .concurrency(2)
        .poll_interval(Duration::from_secs(60))
        .spawn()?;
    let mut events = pool.subscribe();
    listener_up(&mut events).await?;
    // The first poll at start has run and found nothing; the next tick is a minute away.
    let submitted = std::time::Instant::now();
    let id = env.tasks.submit(job("hello")).await?;
    assert_eq!(finished(&mut events, id).await?, TaskOutcome::Completed);
    assert!(
        submitted.elapsed() < Duration::from_secs(30),
        "only the notification can have woken the worker"
    );
    let task = env.tasks.get_task(id).await?.ok_or("missing")?;
    assert!(task.is_completed());
    assert_eq!(task.result_as::<String>()?, Some("hello".to_owned()));
    assert_eq!(task.worker_id.as_deref(), Some(pool.worker_id()));
    pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn delayed_task_runs_no_earlier_than_scheduled() -> TestResult {
    let env = setup().await?;
    echo(&env.tasks)?;
    let pool = TaskWorker::new(&env.tasks)
        .poll_interval(Duration::from_millis(100))
        .spawn()?;
    let mut events = pool.subscribe();
    let id = env
        .tasks
        .submit_with(
            job("later"),
            SubmitOptions::new().delay(Duration::from_millis(1500)),
        )
        .await?;
    assert_eq!(finished(&mut events, id).await?, TaskOutcome::Completed);
    let task = env.tasks.get_task(id).await?.ok_or("missing")?;
    let started = task.started_at.ok_or("no started_at")?;
    assert!(
        started >= task.scheduled_at,
        "started {started} before {}",
        task.scheduled_at
    );
    assert!(task.scheduled_at - task.created_at >= chrono::Duration::milliseconds(1500));
    pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn listener_reconnects_after_its_backend_is_terminated() -> TestResult {
    let env = setup().await?;
    echo(&env.tasks)?;
    let pool = TaskWorker::new(&env.tasks)
        .poll_interval(Duration::from_secs(60))
        .spawn()?;
    let mut events = pool.subscribe();
    listener_up(&mut events).await?;

    let admin = raw(&env.db).await?;
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(killed, 1, "exactly one listener connection per pool");
    wait_for(&mut events, |e| {
        matches!(e, WorkerEvent::ListenerDisconnected { .. }).then_some(())
    })
    .await?;
    listener_up(&mut events).await?;

    // Notification-driven pickup works again (the poll tick is a minute away).
    let submitted = std::time::Instant::now();
    let id = env.tasks.submit(job("after reconnect")).await?;
    assert_eq!(finished(&mut events, id).await?, TaskOutcome::Completed);
    assert!(submitted.elapsed() < Duration::from_secs(30));
    pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_burst_of_notifications_does_not_cause_a_query_per_notification() -> TestResult {
    let env = setup().await?;
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    env.tasks.register(Gated(gate.clone()))?;
    let pool = TaskWorker::new(&env.tasks)
        .concurrency(1)
        .poll_interval(Duration::from_secs(60))
        .spawn()?;
    let mut events = pool.subscribe();
    listener_up(&mut events).await?;
    let first = env.tasks.submit(job("first")).await?;
    started(&mut events, first).await?;
    // The only slot is busy while 50 separate submits send 50 notifications.
    for n in 0..50 {
        env.tasks.submit(job(&format!("burst {n}"))).await?;
    }
    gate.add_permits(51);
    let mut done = 0;
    while done < 51 {
        wait_for(&mut events, |e| {
            matches!(e, WorkerEvent::TaskFinished { .. }).then_some(())
        })
        .await?;
        done += 1;
    }
    let stats = pool.stats();
    assert_eq!(stats.tasks_claimed, 51);
    // One claim per task (a slot frees, one is claimed), plus a few empty ones whatever the
    // number of notifications: at start, after the listener connects, after the last task,
    // and one for the wake-up the burst left stored. A claim per notification would add
    // about fifty.
    assert!(stats.empty_claims <= 5, "{stats:?}");
    assert!(stats.claim_queries <= 51 + 5, "{stats:?}");
    let admin = raw(&env.db).await?;
    let max_attempt: i32 = admin
        .query_one("SELECT max(attempt) FROM tasks", &[])
        .await?
        .get(0);
    assert_eq!(max_attempt, 1, "no task ran twice");
    pool.shutdown().await?;
    Ok(())
}
