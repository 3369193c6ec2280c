//! The plain SQL that users monitor failures with (`docs/monitoring.md`, "Retrying or failed
//! for good") gives the same answers as `next_retry_at`, `TaskRecord` and `count_tasks`, on
//! tasks brought to every state by real workers: waiting for a first or a last retry, failed
//! for good by a permanent error, by used-up retries or by a worker lost on the last attempt,
//! cancelled before, after or while running.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tasklib::{SubmitOptions, TaskContext, TaskError, TaskWorker, WorkerEvent};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::common::{Job, TestResult, finished, job, raw, setup, wait_for};

/// The three queries, word for word as `docs/monitoring.md` prints them.
const WAITING_FOR_RETRY: &str =
    "SELECT id FROM tasks WHERE state = 'failed' AND retry_count < max_retries";
const FAILED_FOR_GOOD: &str =
    "SELECT id FROM tasks WHERE state = 'failed' AND retry_count >= max_retries";
const CANCELLED: &str = "SELECT id FROM tasks WHERE state = 'cancelled'";

const HOUR: Duration = Duration::from_secs(3600);

/// The handler: its label says what each attempt does.
async fn behave(job: Job, ctx: TaskContext, gate: Arc<Semaphore>) -> Result<String, TaskError> {
    match (job.label.as_str(), ctx.attempt()) {
        ("ok", _) => Ok(job.label),
        ("permanent", _) => Err(TaskError::permanent("the input can never work")),
        // Fails at once each time: uses its retries up.
        ("always", _) => Err(TaskError::retry_after(Duration::ZERO, "still broken")),
        // Fails, then waits an hour for its next retry.
        ("wait", _) => Err(TaskError::retry_after(HOUR, "upstream down")),
        // First attempt retried at once, the second waits an hour for the last retry.
        ("wait-last", 1) => Err(TaskError::retry_after(Duration::ZERO, "flaky")),
        ("wait-last", _) => Err(TaskError::retry_after(HOUR, "upstream down")),
        ("cancel-self", _) => Err(TaskError::cancel("nothing left to do")),
        ("block", _) => {
            gate.acquire().await?.forget();
            Ok(job.label)
        }
        (other, _) => Err(TaskError::permanent(format!("unknown label {other}"))),
    }
}

async fn ids(client: &tokio_postgres::Client, query: &str) -> TestResult<BTreeSet<Uuid>> {
    Ok(client
        .query(query, &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// Marks task `id` as running on a worker that died, its lock already expired; with
/// `cancel_asked`, someone asked to cancel it while it ran.
async fn orphan(env: &crate::common::Env, id: Uuid, cancel_asked: bool) -> TestResult {
    raw(&env.db)
        .await?
        .execute(
            "UPDATE tasks SET state = 'running', worker_id = 'dead-worker', attempt = attempt + 1,
                    retry_count = retry_count + CASE WHEN state = 'failed' THEN 1 ELSE 0 END,
                    started_at = now(), locked_until = now() - interval '1 second',
                    cancel_requested_at = CASE WHEN $2 THEN now() END
             WHERE id = $1",
            &[&id, &cancel_asked],
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn the_failure_queries_agree_with_the_rows_in_every_state() -> TestResult {
    let monitoring = include_str!("../../docs/monitoring.md");
    for query in [WAITING_FOR_RETRY, FAILED_FOR_GOOD, CANCELLED] {
        assert!(
            monitoring.contains(query),
            "docs/monitoring.md lost: {query}"
        );
    }

    let env = setup().await?;
    let gate = Arc::new(Semaphore::new(0));
    let held = Arc::clone(&gate);
    env.tasks
        .register(move |job: Job, ctx: TaskContext| behave(job, ctx, Arc::clone(&held)))?;
    let tasks = &env.tasks;
    let three = || SubmitOptions::new().max_retries(3);
    let later = || SubmitOptions::new().delay(HOUR);

    // Rows a worker never touches, and rows a dead worker will be found holding: submitted
    // for later, so no pool claims them first.
    let pending = tasks.submit_with(job("ok"), later()).await?;
    let cancelled_pending = tasks.submit_with(job("ok"), later()).await?;
    tasks.cancel(cancelled_pending).await?;
    let lost_retrying = tasks
        .submit_with(job("wait"), later().max_retries(3))
        .await?;
    let lost_last = tasks.submit_with(job("ok"), later().max_retries(0)).await?;
    let lost_cancelling = tasks.submit_with(job("ok"), later().max_retries(3)).await?;

    let pool = TaskWorker::new(tasks)
        .concurrency(4)
        .poll_interval(Duration::from_millis(100))
        .spawn()?;
    let mut events = pool.subscribe();
    orphan(&env, lost_retrying, false).await?;
    orphan(&env, lost_last, false).await?;
    orphan(&env, lost_cancelling, true).await?;
    let submit = |label: &'static str, options: SubmitOptions| async move {
        tasks.submit_with(job(label), options).await
    };
    let completed = submit("ok", three()).await?;
    let permanent = submit("permanent", three()).await?;
    let used_up = submit("always", SubmitOptions::new().max_retries(1)).await?;
    let waiting_first = submit("wait", three()).await?;
    let waiting_last = submit("wait-last", SubmitOptions::new().max_retries(2)).await?;
    let cancelled_by_handler = submit("cancel-self", three()).await?;
    let cancelled_waiting = submit("wait", three()).await?;
    let running = submit("block", three()).await?;

    // Each row reaches the state it is meant to hold: so many attempts finished, or rescued.
    let mut finishes: HashMap<Uuid, u32> = HashMap::from([
        (completed, 1),
        (permanent, 1),
        (used_up, 2),
        (waiting_first, 1),
        (waiting_last, 2),
        (cancelled_by_handler, 1),
        (cancelled_waiting, 1),
        (lost_retrying, 1),
    ]);
    let mut rescues: BTreeSet<Uuid> = [lost_retrying, lost_last, lost_cancelling].into();
    let mut running_seen = false;
    while !finishes.is_empty() || !rescues.is_empty() || !running_seen {
        let event = wait_for(&mut events, |e| Some(e.clone())).await?;
        match event {
            WorkerEvent::TaskFinished { id, .. } => {
                if let Some(left) = finishes.get_mut(&id) {
                    *left -= 1;
                    if *left == 0 {
                        finishes.remove(&id);
                    }
                }
            }
            WorkerEvent::TaskRescued { id, .. } => {
                rescues.remove(&id);
            }
            WorkerEvent::TaskStarted { id, .. } if id == running => running_seen = true,
            _ => {}
        }
    }
    tasks.cancel(cancelled_waiting).await?;

    let client = raw(&env.db).await?;
    let expect = |ids: &[Uuid]| ids.iter().copied().collect::<BTreeSet<_>>();
    assert_eq!(
        ids(&client, WAITING_FOR_RETRY).await?,
        expect(&[waiting_first, waiting_last, lost_retrying]),
        "waiting for a retry"
    );
    assert_eq!(
        ids(&client, FAILED_FOR_GOOD).await?,
        expect(&[permanent, used_up, lost_last]),
        "failed for good"
    );
    assert_eq!(
        ids(&client, CANCELLED).await?,
        expect(&[
            cancelled_pending,
            cancelled_by_handler,
            cancelled_waiting,
            lost_cancelling
        ]),
        "cancelled"
    );

    // The same answers from next_retry_at, from the records and from the counts.
    assert_eq!(
        ids(
            &client,
            "SELECT id FROM tasks WHERE state = 'failed' AND next_retry_at IS NOT NULL"
        )
        .await?,
        ids(&client, WAITING_FOR_RETRY).await?
    );
    assert_eq!(
        ids(
            &client,
            "SELECT id FROM tasks WHERE state = 'failed' AND next_retry_at IS NULL"
        )
        .await?,
        ids(&client, FAILED_FOR_GOOD).await?
    );
    assert_eq!(
        ids(
            &client,
            "SELECT id FROM tasks WHERE next_retry_at IS NOT NULL"
        )
        .await?,
        ids(&client, WAITING_FOR_RETRY).await?,
        "only a failed task waiting for its retry has a retry time"
    );
    for id in [
        pending,
        completed,
        running,
        waiting_first,
        waiting_last,
        permanent,
    ] {
        let record = tasks.get_task(id).await?.ok_or("task gone")?;
        let retrying = [waiting_first, waiting_last].contains(&id);
        assert_eq!(record.is_retrying(), retrying, "{record:?}");
    }
    let counts = tasks.count_tasks().await?;
    assert_eq!(counts.failed_retrying, 3);
    assert_eq!(counts.failed_permanent, 3);
    assert_eq!(counts.cancelled, 4);
    assert_eq!(
        (counts.pending, counts.running, counts.completed),
        (1, 1, 1)
    );

    // retry_count says which retry comes next: the first (0), the last (1 of 2); a retry of a
    // rescued attempt was counted when claimed (1).
    let count = |id: Uuid| async move {
        let record = tasks.get_task(id).await?.ok_or("task gone")?;
        TestResult::Ok((record.attempt, record.retry_count, record.max_retries))
    };
    assert_eq!(count(waiting_first).await?, (1, 0, 3));
    assert_eq!(count(waiting_last).await?, (2, 1, 2));
    assert_eq!(count(lost_retrying).await?, (2, 1, 3));
    assert_eq!(count(used_up).await?, (2, 1, 1));
    assert_eq!(
        count(permanent).await?,
        (1, 3, 3),
        "a permanent failure uses the retries up"
    );

    gate.add_permits(1);
    finished(&mut events, running).await?;
    pool.shutdown().await?;
    Ok(())
}
