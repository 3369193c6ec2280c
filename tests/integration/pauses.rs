//! Pausing a queue: persisted, obeyed by every pool (two pools of two `TaskLib`s here, each
//! with its own connections and worker id), submits still accepted, running tasks finish.

use std::sync::Arc;
use std::time::Duration;

use tasklib::{Config, SubmitOptions, TaskContext, TaskError, TaskLib, TaskState};
use tasklib_test_utils::TestDatabase;
use tokio::sync::Semaphore;

use crate::common::{Job, PATIENCE, TestResult, job, started};

/// A `TaskLib` on `db` whose `job` handler waits at `gate` for labels starting with "slow",
/// and answers "<label> by <worker>". A minute-long poll: only notifications wake its pools.
async fn instance(db: &TestDatabase, worker: &str, gate: Arc<Semaphore>) -> TestResult<TaskLib> {
    let tasks = TaskLib::connect_with(
        Config::builder(db.url())
            .worker_id(worker)
            .poll_interval(Duration::from_secs(60))
            .max_connections(4)
            .build()?,
    )
    .await?;
    tasks.register(move |job: Job, ctx: TaskContext| {
        let gate = Arc::clone(&gate);
        async move {
            if job.label.starts_with("slow") {
                gate.acquire().await?.forget();
            }
            Ok::<_, TaskError>(format!("{} by {}", job.label, ctx.worker_id()))
        }
    })?;
    Ok(tasks)
}

fn on(queue: &str) -> SubmitOptions {
    SubmitOptions::new().queue(queue)
}

#[tokio::test]
async fn a_paused_queue_takes_submits_runs_nothing_and_resumes_everywhere() -> TestResult {
    let db = TestDatabase::new().await?;
    let gate = Arc::new(Semaphore::new(0));
    let a = instance(&db, "worker-a", Arc::clone(&gate)).await?;
    let b = instance(&db, "worker-b", Arc::clone(&gate)).await?;
    let pool_a = tasklib::TaskWorker::new(&a)
        .queue("reports", 2)
        .queue("mail", 2)
        .spawn()?;
    let pool_b = tasklib::TaskWorker::new(&b)
        .queue("reports", 2)
        .queue("mail", 2)
        .spawn()?;
    let mut events_a = pool_a.subscribe();
    let mut events_b = pool_b.subscribe();

    // A task running when the pause comes finishes.
    let slow = a.submit_with(job("slow"), on("reports")).await?;
    tokio::select! {
        found = started(&mut events_a, slow) => found?,
        found = started(&mut events_b, slow) => found?,
    }
    a.pause_queue("reports").await?;
    let status = b.queue_status().await?;
    assert!(status.iter().any(|q| q.queue == "reports" && q.paused));
    assert!(!status.iter().any(|q| q.queue == "mail" && q.paused));

    // Submits go in; the other queue keeps running on both pools.
    let held: Vec<_> = futures::future::try_join_all(
        (0..4).map(|n| b.submit_with(job(&format!("held {n}")), on("reports"))),
    )
    .await?;
    let mail: Vec<_> = futures::future::try_join_all(
        (0..6).map(|n| a.submit_with(job(&format!("mail {n}")), on("mail"))),
    )
    .await?;
    for id in &mail {
        a.wait_result(*id, PATIENCE).await?;
    }
    gate.add_permits(1);
    let finished = a.wait_result(slow, PATIENCE).await?;
    assert!(finished.value_as::<String>()?.starts_with("slow by"));
    // Both pools were awake and notified all along (the mail ran); the paused queue's tasks
    // are still waiting.
    for id in &held {
        let task = a.get_task(*id).await?.ok_or("task gone")?;
        assert_eq!(task.state, TaskState::Pending, "{task:?}");
        assert_eq!(
            task.attempt, 0,
            "a paused task must not even be claimed ahead"
        );
    }

    // A pool that starts while the queue is paused obeys too: its own queue runs, the
    // paused one does not.
    let c = instance(&db, "worker-c", Arc::clone(&gate)).await?;
    let pool_c = tasklib::TaskWorker::new(&c)
        .queue("reports", 2)
        .queue("only-c", 1)
        .spawn()?;
    let probe = c.submit_with(job("probe"), on("only-c")).await?;
    assert_eq!(
        c.wait_result(probe, PATIENCE).await?.value_as::<String>()?,
        "probe by worker-c"
    );
    for id in &held {
        assert_eq!(c.get_task(*id).await?.ok_or("task gone")?.attempt, 0);
    }

    // Resumed from the third instance: both running pools pick the tasks up at once (their
    // poll is a minute away), on either pool.
    c.resume_queue("reports").await?;
    let mut by = Vec::new();
    for id in &held {
        let done = a.wait_result(*id, PATIENCE).await?;
        by.push(done.value_as::<String>()?);
    }
    assert!(by.iter().all(|s| s.contains(" by worker-")), "{by:?}");
    assert!(!c.queue_status().await?.iter().any(|q| q.paused));

    pool_a.shutdown().await?;
    pool_b.shutdown().await?;
    pool_c.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn pausing_twice_resuming_an_unpaused_queue_and_an_empty_name() -> TestResult {
    let db = TestDatabase::new().await?;
    let tasks = TaskLib::connect(db.url()).await?;
    tasks.pause_queue("idle").await?;
    tasks.pause_queue("idle").await?;
    let status = tasks.queue_status().await?;
    assert_eq!(
        status.len(),
        1,
        "a paused queue with no task is listed: {status:?}"
    );
    assert!(status[0].paused && status[0].counts.total() == 0);
    tasks.resume_queue("idle").await?;
    tasks.resume_queue("never-paused").await?;
    assert!(tasks.queue_status().await?.iter().all(|q| !q.paused));
    assert!(matches!(
        tasks.pause_queue(" ").await,
        Err(tasklib::Error::InvalidOption {
            option: "queue",
            ..
        })
    ));
    Ok(())
}

/// The same across two worker processes (`fault_worker`), which hear of the pause and the
/// resume only through the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_processes_obey_a_pause_and_a_resume() -> TestResult {
    use tasklib_tests::fault::FaultJob;

    use crate::fault_support::{WorkerProcess, connect_raw, create_executions, poll_until, scalar};

    let db = TestDatabase::new().await?;
    create_executions(db.url()).await?;
    let client = connect_raw(db.url()).await?;
    let tasks = TaskLib::connect(db.url()).await?;
    let settings = [
        ("FAULT_CONCURRENCY", "3"),
        ("FAULT_QUEUES", "default,mail"),
        ("FAULT_BEHAVIOUR", "sleep:1s"),
        // A minute-long poll: only notifications (and heartbeats) move them.
        ("FAULT_POLL_INTERVAL", "60s"),
    ];
    let workers = [
        WorkerProcess::spawn(db.url(), "pause-a", &settings)?,
        WorkerProcess::spawn(db.url(), "pause-b", &settings)?,
    ];
    let completed = |ids: Vec<uuid::Uuid>| {
        let client = &client;
        async move {
            Ok(scalar(
                client,
                "SELECT count(*) FROM tasks WHERE id = ANY($1) AND state = 'completed'",
                &[&ids],
            )
            .await?
                == i64::try_from(ids.len())?)
        }
    };

    // A task running when the pause comes finishes.
    let slow = tasks.submit(FaultJob { n: 0 }).await?;
    poll_until("the first task to start", PATIENCE, || async {
        Ok(scalar(&client, "SELECT count(*) FROM executions", &[]).await? == 1)
    })
    .await?;
    tasks.pause_queue("default").await?;
    let held = tasks
        .submit_many((1..=4).map(|n| FaultJob { n }), SubmitOptions::new())
        .await?;
    // The other queue runs on (both processes are awake and hear notifications).
    let mail = tasks
        .submit_many(
            (10..16).map(|n| FaultJob { n }),
            SubmitOptions::new().queue("mail"),
        )
        .await?;
    poll_until("the mail to run", PATIENCE, || completed(mail.clone())).await?;
    poll_until("the running task to finish", PATIENCE, || {
        completed(vec![slow])
    })
    .await?;
    let claimed = scalar(
        &client,
        "SELECT count(*) FROM tasks WHERE id = ANY($1) AND attempt > 0",
        &[&held],
    )
    .await?;
    assert_eq!(claimed, 0, "nothing of the paused queue was claimed");

    tasks.resume_queue("default").await?;
    poll_until("the held tasks to run", PATIENCE, || {
        completed(held.clone())
    })
    .await?;
    for worker in workers {
        worker.stop().await?;
    }
    Ok(())
}
