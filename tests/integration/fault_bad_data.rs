//! Scenario 7, bad data and bad handlers at run time, on a pool with a single slot (so an
//! attempt that leaked its slot would stop everything after it):
//! - a row whose `args` no longer deserialize (the type changed in a deploy) fails at once,
//!   for good, with an error naming the task and the field, and the handler never runs;
//! - a handler that panics, one that never returns (timeout), and one that fails every time
//!   are retried exactly `max_retries` times, then fail for good with their error;
//! - the worker carries on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tasklib::{SubmitOptions, TaskContext, TaskError, TaskOutcome, TaskState, TaskWorker};
use uuid::Uuid;

use crate::common::{Job, TestResult, finished, job, raw, setup_with, wait_for};

#[tokio::test]
async fn bad_rows_and_bad_handlers_fail_their_task_and_the_worker_carries_on() -> TestResult {
    let env = setup_with(|b| {
        b.base_retry_delay(Duration::from_millis(50))
            .poll_interval(Duration::from_millis(50))
    })
    .await?;
    let calls: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let seen = calls.clone();
    env.tasks.register(move |job: Job, _: TaskContext| {
        *seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(job.label.clone())
            .or_default() += 1;
        async move {
            match job.label.as_str() {
                "panics" => panic!("handler exploded"),
                "hangs" => std::future::pending().await,
                "always fails" => Err(TaskError::retry("still broken")),
                _ => Ok(job.label),
            }
        }
    })?;
    let retries = |n| SubmitOptions::new().max_retries(n);
    let drift = env.tasks.submit_with(job("drift"), retries(3)).await?;
    let panics = env.tasks.submit_with(job("panics"), retries(1)).await?;
    let hangs = env
        .tasks
        .submit_with(job("hangs"), retries(1).timeout(Duration::from_millis(200)))
        .await?;
    let always = env
        .tasks
        .submit_with(job("always fails"), retries(2))
        .await?;
    // A deploy changed `Job.label` from a number to a string; this row is from before.
    raw(&env.db)
        .await?
        .execute(
            "UPDATE tasks SET args = '{\"label\": 42}' WHERE id = $1",
            &[&drift],
        )
        .await?;

    let pool = TaskWorker::new(&env.tasks)
        .concurrency(1)
        .poll_interval(Duration::from_millis(50))
        .spawn()?;
    let mut events = pool.subscribe();
    let mut failed: Vec<Uuid> = Vec::new();
    while failed.len() < 4 {
        let id = wait_for(&mut events, |e| match e {
            tasklib::WorkerEvent::TaskFinished {
                id,
                outcome: TaskOutcome::Failed,
                ..
            } => Some(*id),
            _ => None,
        })
        .await?;
        failed.push(id);
    }
    failed.sort();
    let mut expected = vec![drift, panics, hangs, always];
    expected.sort();
    assert_eq!(failed, expected, "each bad task failed for good once");

    // The worker goes on with the next task, in its one slot.
    let fine = env.tasks.submit(job("fine")).await?;
    assert_eq!(finished(&mut events, fine).await?, TaskOutcome::Completed);
    pool.shutdown().await?;

    let calls = calls.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let check = |id: Uuid, label: &'static str, attempts: u32, error: &'static [&'static str]| {
        let tasks = env.tasks.clone();
        let calls = calls.clone();
        async move {
            let task = tasks.get_task(id).await?.ok_or("missing")?;
            assert_eq!(task.state, TaskState::Failed, "{label}: {task:?}");
            assert!(task.is_terminal(), "{label}: {task:?}");
            assert_eq!(task.attempt, attempts, "{label}: attempts");
            // Failed for good: the retries count as used, even those a permanent failure
            // skipped (so `retry_count >= max_retries` finds every dead letter).
            assert_eq!(task.retry_count, task.max_retries, "{label}: retries");
            assert!(
                attempts == 1 || attempts == task.max_retries + 1,
                "{label}: attempts"
            );
            assert!(task.locked_until.is_none(), "{label}: still locked");
            let message = task.error.unwrap_or_default();
            for part in error {
                assert!(
                    message.contains(part),
                    "{label}: {message:?} lacks {part:?}"
                );
            }
            let handler_calls = calls.get(label).copied().unwrap_or(0);
            TestResult::Ok(handler_calls)
        }
    };
    // Schema drift: permanent despite 3 retries allowed; the handler never saw the row.
    let drift_calls = check(
        drift,
        "drift",
        1,
        &[
            "stored arguments do not deserialize into the argument type of `job`",
            "expected a string",
        ],
    )
    .await?;
    assert_eq!(drift_calls, 0);
    // Exactly 1 + max_retries runs each.
    assert_eq!(
        check(panics, "panics", 2, &["handler panicked: handler exploded"]).await?,
        2
    );
    assert_eq!(
        check(hangs, "hangs", 2, &["timed out after 200ms"]).await?,
        2
    );
    assert_eq!(
        check(always, "always fails", 3, &["still broken"]).await?,
        3
    );
    Ok(())
}
