//! Failure handling: rescue of tasks whose worker died, fencing of a stale worker's write,
//! graceful shutdown with tasks in flight.

use std::sync::Arc;
use std::time::Duration;

use tasklib::{
    Config, Error, TaskContext, TaskError, TaskLib, TaskOutcome, TaskState, TaskWorker, WorkerEvent,
};
use tokio::sync::Semaphore;

use crate::common::{Job, TestResult, finished, job, raw, setup, wait_for};

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
    let admin = raw(&env.db).await?;
    admin
        .execute(
            "UPDATE tasks SET state = 'running', worker_id = 'dead-worker', attempt = attempt + 1,
                    started_at = now(), locked_until = now() + interval '500 milliseconds'
             WHERE id = $1",
            &[&id],
        )
        .await?;
    let pool = TaskWorker::new(&env.tasks)
        .poll_interval(Duration::from_millis(100))
        .spawn()?;
    let mut events = pool.subscribe();
    let retrying = wait_for(&mut events, |e| match e {
        WorkerEvent::TaskRescued { id: r, retrying } if *r == id => Some(*retrying),
        _ => None,
    })
    .await?;
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
    let admin = raw(&env.db).await?;
    admin
        .execute(
            "UPDATE tasks SET state = 'running', worker_id = 'dead-worker', attempt = 1,
                    started_at = now(), locked_until = now() - interval '1 second' WHERE id = $1",
            &[&id],
        )
        .await?;
    let pool = TaskWorker::new(&env.tasks)
        .poll_interval(Duration::from_millis(100))
        .spawn()?;
    let mut events = pool.subscribe();
    let retrying = wait_for(&mut events, |e| match e {
        WorkerEvent::TaskRescued { id: r, retrying } if *r == id => Some(*retrying),
        _ => None,
    })
    .await?;
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
    let a_gate = gate.clone();
    stale.register(move |_: Job, _: TaskContext| {
        let gate = a_gate.clone();
        async move {
            gate.acquire().await.map(|p| p.forget())?;
            Ok::<_, TaskError>("written by A".to_owned())
        }
    })?;
    let pool_a = TaskWorker::new(&stale).concurrency(1).spawn()?;
    let mut a_events = pool_a.subscribe();
    let id = stale.submit(job("contested")).await?;
    wait_for(&mut a_events, |e| {
        matches!(e, WorkerEvent::TaskStarted { id: s, .. } if *s == id).then_some(())
    })
    .await?;

    // A stalls past its lock (as a long GC pause or a network partition would look).
    let admin = raw(&env.db).await?;
    admin
        .execute(
            "UPDATE tasks SET locked_until = now() - interval '1 second' WHERE id = $1",
            &[&id],
        )
        .await?;

    // Worker B rescues the task and runs attempt 2 to completion.
    let fresh = connect("worker-b", Duration::from_secs(60)).await?;
    fresh.register(|_: Job, _: TaskContext| async {
        Ok::<_, TaskError>("written by B".to_owned())
    })?;
    let pool_b = TaskWorker::new(&fresh).spawn()?;
    let mut b_events = pool_b.subscribe();
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
    let handler_gate = gate.clone();
    env.tasks.register(move |job: Job, _: TaskContext| {
        let gate = handler_gate.clone();
        async move {
            gate.acquire().await.map(|p| p.forget())?;
            Ok::<_, TaskError>(job.label)
        }
    })?;
    let pool = TaskWorker::new(&env.tasks).concurrency(2).spawn()?;
    let mut events = pool.subscribe();
    let running = env.tasks.submit(job("in flight")).await?;
    wait_for(&mut events, |e| {
        matches!(e, WorkerEvent::TaskStarted { id, .. } if *id == running).then_some(())
    })
    .await?;

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
    wait_for(&mut events, |e| {
        matches!(e, WorkerEvent::TaskStarted { id: s, .. } if *s == id).then_some(())
    })
    .await?;
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
