//! Scenario 5, pool exhaustion: 16 handlers at once, each holding a database connection for a
//! while, on a pool of 2 connections that claims, heartbeats and outcome writes share. Nothing
//! deadlocks, no attempt fails waiting for a connection, and all the work completes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tasklib::{Handler, SubmitOptions, TaskContext, TaskWorker};
use tasklib_tests::fault::{Behaviour, FaultJob, Recorder};

use crate::common::{TestResult, raw, setup_with};
use crate::fault_support::{all_completed, create_executions, scalar};

const CONNECTIONS: u32 = 2;
const SLOTS: usize = 16;
const TASKS: i64 = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_running_handlers_than_connections_complete_without_deadlock() -> TestResult {
    let env = setup_with(|b| {
        b.max_connections(CONNECTIONS)
            .poll_interval(Duration::from_millis(200))
    })
    .await?;
    create_executions(env.db.url()).await?;
    // Each handler records its execution and sleeps 20 ms inside one transaction on the
    // shared pool; a gauge keeps the largest number of handlers running at once.
    let recorder = Arc::new(Recorder::new(
        env.tasks.db()?.clone(),
        Behaviour::HoldConnection(Duration::from_millis(20)),
    ));
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    {
        let (running, peak) = (running.clone(), peak.clone());
        env.tasks.register(move |job: FaultJob, ctx: TaskContext| {
            let (recorder, running, peak) = (recorder.clone(), running.clone(), peak.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let outcome = recorder.run(job, ctx).await;
                running.fetch_sub(1, Ordering::SeqCst);
                outcome
            }
        })?;
    }
    let pool = TaskWorker::new(&env.tasks).concurrency(SLOTS).spawn()?;
    let mut events = pool.subscribe();
    let ids = env
        .tasks
        .submit_many((0..TASKS).map(|n| FaultJob { n }), SubmitOptions::new())
        .await?;
    all_completed(env.db.url(), &mut events, &ids).await?;
    pool.shutdown().await?;

    let peak = peak.load(Ordering::SeqCst);
    assert!(
        peak > CONNECTIONS as usize * 2,
        "only {peak} handlers ran at once: the pool was not exhausted"
    );
    let client = raw(&env.db).await?;
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*) FROM tasks WHERE attempt <> 1 OR retry_count <> 0 OR error IS NOT NULL",
            &[]
        )
        .await?,
        0,
        "no attempt failed for want of a connection"
    );
    assert_eq!(
        scalar(&client, "SELECT count(*) FROM executions", &[]).await?,
        TASKS
    );
    Ok(())
}
