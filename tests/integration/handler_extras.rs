//! What a handler can do besides succeed or fail: snooze, report progress; what the row keeps
//! of every failed attempt; and the admin verbs that delete a task or run a completed one
//! again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tasklib::{Chain, Error, SubmitOptions, TaskContext, TaskError, TaskOutcome, TaskState};
use tokio::sync::Semaphore;

use crate::common::{Job, PATIENCE, TestResult, finished, job, setup, setup_with, started};

#[tokio::test]
async fn a_snoozed_task_runs_again_later_without_using_a_retry() -> TestResult {
    let env = setup().await?;
    let runs = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&runs);
    env.tasks.register(move |job: Job, ctx: TaskContext| {
        let counter = Arc::clone(&counter);
        async move {
            // Snoozes twice, then succeeds.
            if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                return Err(TaskError::snooze(Duration::from_millis(300)));
            }
            Ok::<_, TaskError>(format!("{} on attempt {}", job.label, ctx.attempt()))
        }
    })?;
    let pool = env.tasks.spawn_workers(1)?;
    let mut events = pool.subscribe();
    // No retries at all: a snooze must not need one.
    let id = env
        .tasks
        .submit_with(job("later"), SubmitOptions::new().max_retries(0))
        .await?;
    let first = finished(&mut events, id).await?;
    assert_eq!(
        first,
        TaskOutcome::Snoozed {
            delay: Duration::from_millis(300)
        }
    );
    let row = env.tasks.get_task(id).await?.ok_or("task gone")?;
    assert_eq!(row.state, TaskState::Pending);
    assert_eq!((row.attempt, row.retry_count), (1, 0));
    assert!(row.errors.is_empty(), "a snooze is not a failure");
    assert!(row.scheduled_at > row.created_at);

    let result = env.tasks.wait_result(id, PATIENCE).await?;
    assert_eq!(result.value_as::<String>()?, "later on attempt 3");
    let row = env.tasks.get_task(id).await?.ok_or("task gone")?;
    assert_eq!((row.attempt, row.retry_count), (3, 0));
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn progress_is_visible_while_the_task_runs_and_kept_after() -> TestResult {
    let env = setup().await?;
    let gate = Arc::new(Semaphore::new(0));
    let held = Arc::clone(&gate);
    env.tasks.register(move |job: Job, ctx: TaskContext| {
        let held = Arc::clone(&held);
        async move {
            ctx.set_progress(serde_json::json!({ "done": 1, "of": 2 }))
                .await?;
            held.acquire().await?.forget();
            ctx.set_progress(serde_json::json!({ "done": 2, "of": 2 }))
                .await?;
            Ok::<_, TaskError>(job.label)
        }
    })?;
    let pool = env.tasks.spawn_workers(1)?;
    let mut events = pool.subscribe();
    let id = env.tasks.submit(job("import")).await?;
    started(&mut events, id).await?;
    // The first report lands before the handler waits at the gate; read until it shows.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let running = loop {
        let row = env.tasks.get_task(id).await?.ok_or("task gone")?;
        if row.progress.is_some() || tokio::time::Instant::now() > deadline {
            break row;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(running.state, TaskState::Running);
    assert_eq!(
        running.progress,
        Some(serde_json::json!({ "done": 1, "of": 2 }))
    );
    gate.add_permits(1);
    env.tasks.wait_result(id, PATIENCE).await?;
    let done = env.tasks.get_task(id).await?.ok_or("task gone")?;
    assert_eq!(
        done.progress,
        Some(serde_json::json!({ "done": 2, "of": 2 }))
    );
    pool.shutdown().await?;

    // A unit test's context keeps the last report in memory.
    let ctx = TaskContext::for_test("job");
    ctx.set_progress(42).await?;
    assert_eq!(ctx.reported_progress(), Some(serde_json::json!(42)));
    Ok(())
}

#[tokio::test]
async fn every_failed_attempt_is_kept_the_last_twenty() -> TestResult {
    let env = setup_with(|b| {
        b.base_retry_delay(Duration::from_millis(1))
            .max_retry_delay(Duration::from_millis(5))
    })
    .await?;
    env.tasks
        .register(|job: Job, ctx: TaskContext| async move {
            match job.label.as_str() {
                "flaky" if ctx.attempt() < 3 => {
                    Err(TaskError::retry(format!("flaky failure {}", ctx.attempt())))
                }
                "doomed" => Err(TaskError::retry(format!(
                    "doomed failure {}",
                    ctx.attempt()
                ))),
                _ => Ok(job.label),
            }
        })?;
    let pool = env.tasks.spawn_workers(2)?;
    let flaky = env.tasks.submit(job("flaky")).await?;
    let doomed = env
        .tasks
        .submit_with(job("doomed"), SubmitOptions::new().max_retries(24))
        .await?;
    env.tasks.wait_result(flaky, PATIENCE).await?;
    let outcome = env.tasks.wait_result(doomed, PATIENCE).await?;
    assert!(outcome.is_terminal());
    pool.shutdown().await?;

    let row = env.tasks.get_task(flaky).await?.ok_or("task gone")?;
    assert_eq!(row.state, TaskState::Completed);
    let attempts: Vec<u32> = row.errors.iter().map(|e| e.attempt).collect();
    assert_eq!(attempts, vec![1, 2]);
    assert_eq!(row.errors[1].error, "flaky failure 2");
    let worker = env.tasks.config().worker_id().to_owned();
    assert!(
        row.errors
            .iter()
            .all(|e| e.worker.as_deref() == Some(worker.as_str()))
    );
    assert!(row.errors[0].at <= row.errors[1].at);

    // 25 failed attempts: the first five fell off.
    let row = env.tasks.get_task(doomed).await?.ok_or("task gone")?;
    assert_eq!(row.attempt, 25);
    let attempts: Vec<u32> = row.errors.iter().map(|e| e.attempt).collect();
    assert_eq!(attempts, (6..=25).collect::<Vec<u32>>());
    assert_eq!(row.error.as_deref(), Some("doomed failure 25"));
    Ok(())
}

#[tokio::test]
async fn delete_takes_any_task_but_a_running_one_and_chains_whole() -> TestResult {
    let env = setup().await?;
    let gate = Arc::new(Semaphore::new(0));
    let held = Arc::clone(&gate);
    env.tasks.register(move |job: Job, _: TaskContext| {
        let held = Arc::clone(&held);
        async move {
            if job.label == "slow" {
                held.acquire().await?.forget();
            }
            Ok::<_, TaskError>(job.label)
        }
    })?;
    let waiting = env.tasks.submit(job("waiting")).await?;
    assert_eq!(env.tasks.delete(waiting).await?, 1);
    assert!(env.tasks.get_task(waiting).await?.is_none());
    assert!(matches!(
        env.tasks.delete(waiting).await,
        Err(Error::NotFound { .. })
    ));

    let chain = env
        .tasks
        .submit_chain(Chain::new(job("a")).then::<Job>([]))
        .await?;
    match env.tasks.delete(chain.steps[1]).await {
        Err(Error::InvalidState { .. }) => {}
        other => panic!("a single chain step must be refused, got {other:?}"),
    }
    assert_eq!(env.tasks.delete(chain.id).await?, 2);
    assert!(env.tasks.get_task(chain.steps[0]).await?.is_none());

    let pool = env.tasks.spawn_workers(1)?;
    let mut events = pool.subscribe();
    let slow = env.tasks.submit(job("slow")).await?;
    started(&mut events, slow).await?;
    match env.tasks.delete(slow).await {
        Err(Error::InvalidState {
            state: TaskState::Running,
            ..
        }) => {}
        other => panic!("a running task must be refused, got {other:?}"),
    }
    gate.add_permits(1);
    env.tasks.wait_result(slow, PATIENCE).await?;
    assert_eq!(env.tasks.delete(slow).await?, 1);
    pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn rerun_runs_a_completed_task_again_and_retry_still_refuses_it() -> TestResult {
    let env = setup().await?;
    env.tasks
        .register(|job: Job, ctx: TaskContext| async move {
            ctx.set_progress("halfway").await?;
            Ok::<_, TaskError>(format!("{} #{}", job.label, ctx.attempt()))
        })?;
    let pool = env.tasks.spawn_workers(1)?;
    let id = env.tasks.submit(job("report")).await?;
    let first = env.tasks.wait_result(id, PATIENCE).await?;
    assert_eq!(first.value_as::<String>()?, "report #1");
    assert!(matches!(
        env.tasks.retry(id).await,
        Err(Error::InvalidState {
            state: TaskState::Completed,
            ..
        })
    ));
    env.tasks.rerun(id).await?;
    let again = env.tasks.wait_result(id, PATIENCE).await?;
    assert_eq!(again.value_as::<String>()?, "report #2");
    pool.shutdown().await?;

    let pending = env.tasks.submit(job("not yet")).await?;
    assert!(matches!(
        env.tasks.rerun(pending).await,
        Err(Error::InvalidState {
            state: TaskState::Pending,
            ..
        })
    ));
    Ok(())
}
