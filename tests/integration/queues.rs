//! Named queues: each with its own slots, so a flood in one cannot starve another.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tasklib::{
    ClaimAhead, SubmitOptions, Task, TaskContext, TaskError, TaskOutcome, TaskWorker, WorkerEvent,
};
use tokio::sync::Semaphore;
use validator::Validate;

use crate::common::{Gated, Job, TestResult, finished, job, setup, started, wait_for};

/// A task type that declares its own queue.
#[derive(Debug, Serialize, Deserialize, Validate)]
struct Ping {
    n: u32,
}

impl Task for Ping {
    const NAME: &'static str = "ping";
    const QUEUE: &'static str = "api_processing";
    type Output = u32;
}

#[tokio::test]
async fn a_saturated_queue_does_not_delay_another() -> TestResult {
    let env = setup().await?;
    let gate = Arc::new(Semaphore::new(0));
    // `job` tasks are slow (held by the gate) and go to file_processing.
    env.tasks.register(Gated(gate.clone()))?;
    env.tasks
        .register(|ping: Ping, _: TaskContext| async move { Ok::<_, TaskError>(ping.n) })?;
    let files = SubmitOptions::new().queue("file_processing");
    let mut flood = Vec::new();
    for n in 0..20 {
        flood.push(
            env.tasks
                .submit_with(job(&format!("file {n}")), files.clone())
                .await?,
        );
    }
    let pool = TaskWorker::new(&env.tasks)
        .queue("file_processing", 2)
        .queue("api_processing", 2)
        .poll_interval(Duration::from_secs(60))
        .spawn()?;
    let mut events = pool.subscribe();
    started(&mut events, flood[0]).await?;
    started(&mut events, flood[1]).await?;
    // file_processing is saturated (2 of 2 slots held, 18 waiting). An API task still runs.
    let ping = env.tasks.submit(Ping { n: 7 }).await?;
    assert_eq!(finished(&mut events, ping).await?, TaskOutcome::Completed);
    let record = env.tasks.get_task(ping).await?.ok_or("missing")?;
    assert_eq!(
        record.queue, "api_processing",
        "Task::QUEUE is the default queue"
    );
    let waiting = env.tasks.get_task(flood[19]).await?.ok_or("missing")?;
    assert!(
        waiting.is_pending(),
        "the flood is still queued behind its two slots"
    );
    assert_eq!(pool.stats().running, 2);
    gate.add_permits(100);
    pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_pool_serves_only_its_named_queues() -> TestResult {
    let env = setup().await?;
    env.tasks
        .register(|j: Job, _: TaskContext| async move { Ok::<_, TaskError>(j.label) })?;
    let elsewhere = env
        .tasks
        .submit_with(job("not mine"), SubmitOptions::new().queue("reports"))
        .await?;
    let mine = env
        .tasks
        .submit_with(job("mine"), SubmitOptions::new().queue("emails"))
        .await?;
    let pool = TaskWorker::new(&env.tasks).queue("emails", 1).spawn()?;
    let mut events = pool.subscribe();
    assert_eq!(finished(&mut events, mine).await?, TaskOutcome::Completed);
    pool.shutdown().await?;
    assert!(
        env.tasks
            .get_task(elsewhere)
            .await?
            .ok_or("missing")?
            .is_pending()
    );
    Ok(())
}

#[tokio::test]
async fn a_queue_sharing_slots_with_a_busy_one_is_not_starved() -> TestResult {
    let env = setup().await?;
    // `job` tasks (queue `default`) take 5 ms and are many; `ping` (queue `api_processing`)
    // shares the same ten slots, since no queue is given slots of its own.
    env.tasks.register(|job: Job, _: TaskContext| async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok::<_, TaskError>(job.label)
    })?;
    env.tasks
        .register(|ping: Ping, _: TaskContext| async move { Ok::<_, TaskError>(ping.n) })?;
    env.tasks
        .submit_many(
            (0..3_000).map(|n| job(&n.to_string())),
            SubmitOptions::new(),
        )
        .await?;
    let pool = TaskWorker::new(&env.tasks)
        .concurrency(10)
        .claim_ahead(ClaimAhead::Fixed(20))
        .poll_interval(Duration::from_secs(60))
        .spawn()?;
    let mut events = pool.subscribe();
    // Once the flood is under way (slots busy, rows claimed ahead waiting for each one that
    // frees), a ping arrives. It must run while the flood is still pending. (This guards the
    // outcome, not the mechanism: slots of timer-driven tasks often free several at once, so
    // the ping would also get in under the older rule that waited for half the slots.)
    let mut done = 0;
    wait_for(&mut events, |e| {
        if matches!(e, WorkerEvent::TaskFinished { .. }) {
            done += 1;
        }
        (done >= 100).then_some(())
    })
    .await?;
    let ping = env.tasks.submit(Ping { n: 7 }).await?;
    assert_eq!(finished(&mut events, ping).await?, TaskOutcome::Completed);
    let waiting = env.tasks.count_tasks().await?.pending;
    assert!(
        waiting > 0,
        "the ping ran only after the whole flood (nothing of it was still pending)"
    );
    pool.shutdown().await?;
    Ok(())
}
