//! Failure handling: rescue of tasks whose worker died, fencing of a stale worker's write,
//! graceful shutdown with tasks in flight.

use std::sync::Arc;
use std::time::Duration;

use tasklib::{
    Config, Error, SubmitOptions, TaskContext, TaskError, TaskLib, TaskOutcome, TaskState,
    TaskWorker, WorkerEvent,
};
use tokio::sync::Semaphore;

use crate::common::{Gated, Job, TestResult, finished, job, raw, setup, started, wait_for};

/// Marks task `id` as claimed by a worker that then died, its lock expiring `lock_left` from
/// now (an SQL interval).
async fn claim_as_dead_worker(
    env: &crate::common::Env,
    id: uuid::Uuid,
    lock_left: &str,
) -> TestResult {
    raw(&env.db)
        .await?
        .execute(
            "UPDATE tasks SET state = 'running', worker_id = 'dead-worker', attempt = attempt + 1,
                    started_at = now(), locked_until = now() + $2::text::interval
             WHERE id = $1",
            &[&id, &lock_left],
        )
        .await?;
    Ok(())
}

/// Waits until task `id` is rescued; tells whether it will be retried.
async fn rescued(
    events: &mut tokio::sync::broadcast::Receiver<WorkerEvent>,
    id: uuid::Uuid,
) -> TestResult<bool> {
    wait_for(events, |e| match e {
        WorkerEvent::TaskRescued {
            id: r,
            retrying,
            started: true,
        } if *r == id => Some(*retrying),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn a_dead_workers_task_is_rescued_after_its_lock_expires_and_the_attempt_counts() -> TestResult
{
    let env = setup().await?;
    env.tasks
        .register(|job: Job, ctx: TaskContext| async move {
            Ok::<_, TaskError>(format!("{} on attempt {}", job.label, ctx.attempt()))
        })?;
    let id = env.tasks.submit(job("orphan")).await?;
    // A worker claims it, then dies: its lock runs out a moment later and nobody extends it.
    claim_as_dead_worker(&env, id, "500 milliseconds").await?;
    let pool = TaskWorker::new(&env.tasks)
        .poll_interval(Duration::from_millis(100))
        .spawn()?;
    let mut events = pool.subscribe();
    let retrying = rescued(&mut events, id).await?;
    assert!(retrying);
    assert_eq!(finished(&mut events, id).await?, TaskOutcome::Completed);
    let task = env.tasks.get_task(id).await?.ok_or("missing")?;
    assert_eq!(task.state, TaskState::Completed);
    assert_eq!(task.attempt, 2, "the dead worker's attempt counts");
    assert_eq!(task.retry_count, 1);
    assert_eq!(task.worker_id.as_deref(), Some(pool.worker_id()));
    assert_eq!(
        task.result_as::<String>()?.as_deref(),
        Some("orphan on attempt 2")
    );
    pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_task_a_dead_worker_claimed_ahead_but_never_started_goes_back_without_counting()
-> TestResult {
    let env = setup().await?;
    env.tasks
        .register(|job: Job, ctx: TaskContext| async move {
            Ok::<_, TaskError>(format!("{} on attempt {}", job.label, ctx.attempt()))
        })?;
    // Submitted with no retries: were the lost attempt counted, the task would fail for good.
    let id = env
        .tasks
        .submit_with(job("waiting"), SubmitOptions::new().max_retries(0))
        .await?;
    // Claimed ahead by a worker that died before a slot freed for it: `started_at` is null.
    raw(&env.db)
        .await?
        .execute(
            "UPDATE tasks SET state = 'running', worker_id = 'dead-worker', attempt = attempt + 1,
                    started_at = NULL, locked_until = now() - interval '1 second'
             WHERE id = $1",
            &[&id],
        )
        .await?;
    let pool = TaskWorker::new(&env.tasks)
        .poll_interval(Duration::from_millis(100))
        .spawn()?;
    let mut events = pool.subscribe();
    let returned = wait_for(&mut events, |e| match e {
        WorkerEvent::TaskRescued {
            id: r,
            retrying,
            started,
        } if *r == id => Some((*retrying, *started)),
        _ => None,
    })
    .await?;
    assert_eq!(returned, (true, false));
    assert_eq!(finished(&mut events, id).await?, TaskOutcome::Completed);
    let task = env.tasks.get_task(id).await?.ok_or("missing")?;
    assert_eq!(task.attempt, 1, "the unstarted attempt does not count");
    assert_eq!(task.retry_count, 0);
    assert_eq!(task.error, None);
    assert_eq!(
        task.result_as::<String>()?.as_deref(),
        Some("waiting on attempt 1")
    );
    pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn an_expired_task_without_retries_left_fails_for_good() -> TestResult {
    let env = setup().await?;
    env.tasks
        .register(|job: Job, _: TaskContext| async move { Ok::<_, TaskError>(job.label) })?;
    let id = env
        .tasks
        .submit_with(
            job("last chance"),
            tasklib::SubmitOptions::new().max_retries(0),
        )
        .await?;
    claim_as_dead_worker(&env, id, "-1 second").await?;
    let pool = TaskWorker::new(&env.tasks)
        .poll_interval(Duration::from_millis(100))
        .spawn()?;
    let mut events = pool.subscribe();
    let retrying = rescued(&mut events, id).await?;
    assert!(!retrying);
    let task = env.tasks.get_task(id).await?.ok_or("missing")?;
    assert!(task.is_failed() && task.is_terminal());
    assert!(
        task.error
            .as_deref()
            .unwrap_or_default()
            .contains("dead-worker"),
        "{:?}",
        task.error
    );
    pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_worker_that_lost_its_lock_cannot_overwrite_the_newer_attempt() -> TestResult {
    let env = setup().await?;
    let url = env.db.url().to_owned();
    let connect = |worker: &'static str, lock: Duration| {
        let url = url.clone();
        async move {
            let config = Config::builder(url)
                .worker_id(worker)
                .lock_timeout(lock)
                .poll_interval(Duration::from_millis(50))
                .max_connections(3)
                .build()?;
            TaskLib::connect_with(config).await
        }
    };
    // Worker A: long lock (no heartbeat during the test); its handler waits for the gate.
    let stale = connect("worker-a", Duration::from_secs(3600)).await?;
    let gate = Arc::new(Semaphore::new(0));
    stale.register(Gated(gate.clone()))?;
    let pool_a = TaskWorker::new(&stale).concurrency(1).spawn()?;
    let mut a_events = pool_a.subscribe();
    let id = stale.submit(job("contested")).await?;
    started(&mut a_events, id).await?;

    // Worker B, listening before anything can happen to the task: it cannot take it yet.
    let fresh = connect("worker-b", Duration::from_secs(60)).await?;
    fresh.register(|_: Job, _: TaskContext| async {
        Ok::<_, TaskError>("written by B".to_owned())
    })?;
    let pool_b = TaskWorker::new(&fresh).spawn()?;
    let mut b_events = pool_b.subscribe();

    // A stalls past its lock (as a long GC pause or a network partition would look).
    let admin = raw(&env.db).await?;
    admin
        .execute(
            "UPDATE tasks SET locked_until = now() - interval '1 second' WHERE id = $1",
            &[&id],
        )
        .await?;

    // The task is rescued and B runs attempt 2 to completion.
    assert_eq!(finished(&mut b_events, id).await?, TaskOutcome::Completed);

    // A wakes up and tries to write attempt 1's outcome: fenced off.
    gate.add_permits(1);
    assert_eq!(finished(&mut a_events, id).await?, TaskOutcome::Lost);
    let task = fresh.get_task(id).await?.ok_or("missing")?;
    assert_eq!(task.state, TaskState::Completed);
    assert_eq!(task.worker_id.as_deref(), Some("worker-b"));
    assert_eq!(task.attempt, 2);
    assert_eq!(task.result_as::<String>()?.as_deref(), Some("written by B"));
    pool_a.shutdown().await?;
    pool_b.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn shutdown_waits_for_running_tasks_and_claims_nothing_new() -> TestResult {
    let env = setup().await?;
    let gate = Arc::new(Semaphore::new(0));
    env.tasks.register(Gated(gate.clone()))?;
    let pool = TaskWorker::new(&env.tasks).concurrency(2).spawn()?;
    let mut events = pool.subscribe();
    let running = env.tasks.submit(job("in flight")).await?;
    started(&mut events, running).await?;

    let tasks = env.tasks.clone();
    let (stopped, late) = tokio::join!(pool.shutdown(), async {
        // shutdown() has stopped claiming by the time this runs (join polls it first).
        let late = tasks.submit(job("too late")).await;
        gate.add_permits(10);
        late
    });
    stopped?;
    let late = late?;
    assert_eq!(
        env.tasks.get_task(running).await?.ok_or("missing")?.state,
        TaskState::Completed
    );
    assert_eq!(
        env.tasks.get_task(late).await?.ok_or("missing")?.state,
        TaskState::Pending
    );
    Ok(())
}

#[tokio::test]
async fn shutdown_past_the_grace_period_leaves_running_tasks_to_lock_expiry() -> TestResult {
    let env = setup().await?;
    env.tasks.register(|_: Job, _: TaskContext| async {
        std::future::pending::<()>().await;
        Ok::<_, TaskError>(String::new())
    })?;
    let pool = TaskWorker::new(&env.tasks)
        .shutdown_grace_period(Duration::from_millis(200))
        .spawn()?;
    let mut events = pool.subscribe();
    let id = env.tasks.submit(job("stuck")).await?;
    started(&mut events, id).await?;
    let result = pool.shutdown().await;
    assert!(
        matches!(result, Err(Error::ShutdownTimeout(_))),
        "{result:?}"
    );
    let task = env.tasks.get_task(id).await?.ok_or("missing")?;
    assert_eq!(task.state, TaskState::Running, "left for lock expiry");
    assert!(task.locked_until.is_some());
    Ok(())
}
