//! Scenario 2, database restart: while tasks are being submitted and worked, the server is
//! restarted (`pg_ctl restart -m fast`, every session cut), and later stopped for 1.5 s and
//! started again. The pool, its connections and its listener recover on their own; every
//! task submitted completes, and none is there twice. A submit that failed during an outage
//! is retried the way an application would: only after checking, by its own key, that the
//! first try did not commit after all.

use std::collections::HashMap;
use std::time::Duration;

use tasklib::{Config, TaskLib, TaskWorker, WorkerEvent};
use tasklib_test_utils::TestCluster;
use tasklib_tests::fault::{Behaviour, FaultJob, Recorder};
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use crate::common::{PATIENCE, TestResult, listener_up, wait_for};
use crate::fault_support::{all_completed, connect_raw, create_executions, scalar};

const TASKS: i64 = 200;
const SLOTS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_submitted_and_worked_across_server_restarts_complete_once() -> TestResult {
    let cluster = TestCluster::start().await?;
    let url = cluster.create_database().await?;
    let tasks = TaskLib::connect_with(
        Config::builder(url.as_str())
            .lock_timeout(Duration::from_secs(5))
            .poll_interval(Duration::from_millis(200))
            .base_retry_delay(Duration::from_millis(100))
            .max_retries(10)
            // Short, so that queries during the outage fail (and are retried) rather than
            // wait for a connection until the server is back.
            .connect_timeout(Duration::from_millis(300))
            .max_connections(8)
            .build()?,
    )
    .await?;
    create_executions(&url).await?;
    tasks.register(Recorder::new(
        tasks.db()?.clone(),
        Behaviour::Sleep(Duration::from_millis(20)),
    ))?;
    let pool = TaskWorker::new(&tasks).concurrency(SLOTS).spawn()?;
    let mut events = pool.subscribe();
    listener_up(&mut events).await?;

    // A steady stream of submits, one every 10 ms, through both outages.
    let (progress_tx, mut progress) = watch::channel(0i64);
    let producer = tokio::spawn(submit_stream(tasks.clone(), url.clone(), progress_tx));
    // Outage 1, a third of the way in, just as a handler starts (so work is in flight): the
    // restart an operator does. It is over in a fraction of a second.
    tokio::time::timeout(PATIENCE, progress.wait_for(|n| *n >= TASKS / 3)).await??;
    events = events.resubscribe(); // from now on
    wait_for(&mut events, |e| {
        matches!(e, WorkerEvent::TaskStarted { .. }).then_some(())
    })
    .await?;
    cluster.restart().await?;
    let at_restart = *progress.borrow();
    // The listener notices, and comes back on its own.
    wait_for(&mut events, |e| {
        matches!(e, WorkerEvent::ListenerDisconnected { .. }).then_some(())
    })
    .await?;
    listener_up(&mut events).await?;

    // Outage 2, two thirds of the way in: the server stays down for 1.5 s, longer than the
    // connection timeout, so claims, heartbeats, outcome writes and submits fail meanwhile.
    tokio::time::timeout(PATIENCE, progress.wait_for(|n| *n >= 2 * TASKS / 3)).await??;
    events = events.resubscribe();
    wait_for(&mut events, |e| {
        matches!(e, WorkerEvent::TaskStarted { .. }).then_some(())
    })
    .await?;
    cluster.stop().await?;
    let at_stop = *progress.borrow();
    tokio::time::sleep(Duration::from_millis(1_500)).await; // the length of the outage
    cluster.start_again().await?;
    wait_for(&mut events, |e| {
        matches!(e, WorkerEvent::ListenerDisconnected { .. }).then_some(())
    })
    .await?;
    listener_up(&mut events).await?;
    assert!(
        at_stop < TASKS,
        "the outages came after the stream ({at_restart} and {at_stop} of {TASKS} submitted)"
    );

    let (ids, failed_submits) = producer.await??;
    let ids: Vec<Uuid> = ids.into_values().collect();
    assert_eq!(ids.len(), TASKS as usize);
    all_completed(&url, &mut events, &ids).await?;
    pool.shutdown().await?;

    let client = connect_raw(&url).await?;
    let one = |sql: &'static str| {
        let client = &client;
        async move { scalar(client, sql, &[]).await }
    };
    assert_eq!(
        one("SELECT count(*) FROM tasks").await?,
        TASKS,
        "no duplicate"
    );
    assert_eq!(
        one("SELECT count(DISTINCT args->>'n') FROM tasks").await?,
        TASKS
    );
    assert_eq!(
        one("SELECT count(*) FROM tasks WHERE state = 'completed'").await?,
        TASKS
    );
    // Every completed task has the execution of its last attempt, and no task ran more often
    // than its attempts say.
    assert_eq!(
        one("SELECT count(*) FROM tasks t WHERE NOT EXISTS (
                 SELECT 1 FROM executions e WHERE e.task_id = t.id AND e.attempt = t.attempt)")
        .await?,
        0
    );
    assert_eq!(
        one("SELECT count(*) FROM tasks t
             WHERE (SELECT count(*) FROM executions e WHERE e.task_id = t.id) > t.attempt")
        .await?,
        0
    );
    // Only attempts in flight when the server went down may have had to run again.
    let rerun = one("SELECT count(*) FROM tasks WHERE attempt > 1").await?;
    assert!(
        rerun <= SLOTS as i64,
        "{rerun} tasks needed another attempt"
    );
    eprintln!(
        "restart after {at_restart} submits, outage after {at_stop}; {failed_submits} submits failed and were retried; {rerun} tasks ran again"
    );
    Ok(())
}

/// Submits `FaultJob { n }` for every n, retrying failed submits; returns n -> task id and
/// how many submits failed.
async fn submit_stream(
    tasks: TaskLib,
    url: String,
    progress: watch::Sender<i64>,
) -> TestResult<(HashMap<i64, Uuid>, u32)> {
    let mut ids = HashMap::new();
    let mut failures = 0;
    for n in 0..TASKS {
        let deadline = Instant::now() + PATIENCE;
        let id = loop {
            match tasks.submit(FaultJob { n }).await {
                Ok(id) => break id,
                Err(error) if Instant::now() < deadline => {
                    failures += 1;
                    assert!(!error.is_invalid_input(), "{error}");
                    // Did it commit anyway (the answer was lost with the connection)?
                    if let Some(id) = find(&url, n).await {
                        break id;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => return Err(error.into()),
            }
        };
        ids.insert(n, id);
        progress.send_replace(n + 1);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok((ids, failures))
}

/// The task with key `n`, when the server answers and has it.
async fn find(url: &str, n: i64) -> Option<Uuid> {
    let client = connect_raw(url).await.ok()?;
    let row = client
        .query_opt(
            "SELECT id FROM tasks WHERE name = 'fault_job' AND (args->>'n')::bigint = $1",
            &[&n],
        )
        .await
        .ok()??;
    row.try_get(0).ok()
}
