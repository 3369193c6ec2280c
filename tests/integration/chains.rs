//! PostgreSQL's side of results and chains: how chain steps are stored and released, what a
//! killed worker process leaves, waits woken by a notification, and choosing an engine.

use std::time::{Duration, Instant};

use serde_json::json;
use tasklib::{BackendType, Chain, Config, Error, SubmitOptions, TaskLib, TaskStatus, TaskWorker};
use tasklib_test_utils::TestDatabase;
use tasklib_tests::fault::{Behaviour, FaultJob, Recorder};
use uuid::Uuid;

use crate::common::{PATIENCE, TestResult, raw, setup, setup_with};
use crate::fault_support::{WorkerProcess, connect_raw, create_executions, poll_until, scalar};

#[tokio::test]
async fn later_steps_wait_unclaimable_and_unannounced_until_released() -> TestResult {
    let env = setup().await?;
    let client = raw(&env.db).await?;
    client.batch_execute("LISTEN tasks_new").await?;
    let ids = env
        .tasks
        .submit_chain(
            Chain::new(FaultJob { n: 7 })
                .then::<FaultJob>([])
                .then::<FaultJob>([]),
        )
        .await?;
    let rows = client
        .query(
            "SELECT id, chain_id, chain_step, state, scheduled_at = '9999-12-31 00:00:00+00' AS held, args::text
             FROM tasks ORDER BY chain_step",
            &[],
        )
        .await?;
    assert_eq!(rows.len(), 3);
    for (step, row) in rows.iter().enumerate() {
        assert_eq!(row.get::<_, Uuid>(0), ids.steps[step]);
        assert_eq!(row.get::<_, Option<Uuid>>(1), Some(ids.id));
        assert_eq!(row.get::<_, Option<i32>>(2), Some(i32::try_from(step)?));
        assert_eq!(row.get::<_, String>(3), "pending");
        assert_eq!(
            row.get::<_, bool>(4),
            step > 0,
            "only the first step is due"
        );
    }
    // The later steps hold only their own extra arguments until released.
    let held_args: serde_json::Value = serde_json::from_str(rows[1].get::<_, &str>(5))?;
    assert_eq!(held_args, json!([]));

    // A claim takes only the first step.
    env.tasks
        .register(Recorder::new(env.tasks.db()?.clone(), Behaviour::Finish))?;
    crate::fault_support::create_executions(env.db.url()).await?;
    let pool = env.tasks.spawn_workers(4)?;
    let result = env.tasks.wait_result(ids.id, PATIENCE).await?;
    pool.shutdown().await?;
    assert_eq!(result.value_as::<i64>()?, 7);
    let args: Vec<serde_json::Value> = client
        .query("SELECT args::text FROM tasks ORDER BY chain_step", &[])
        .await?
        .iter()
        .map(|r| serde_json::from_str(r.get::<_, &str>(0)))
        .collect::<Result<_, _>>()?;
    assert_eq!(args, [json!({"n": 7}), json!([7]), json!([7])]);
    Ok(())
}

/// Steps of 40 chains run on a worker process killed mid-flight; a second worker finishes
/// them. Each step exists once, runs after the step before it completed, and runs more than
/// once only when the dead worker was running it (its attempt shows the rescue).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_neither_loses_nor_doubles_a_chain_step() -> TestResult {
    let db = TestDatabase::new().await?;
    create_executions(db.url()).await?;
    let client = connect_raw(db.url()).await?;
    let mut a = WorkerProcess::spawn(
        db.url(),
        "chain-a",
        &[
            ("FAULT_CONCURRENCY", "4"),
            ("FAULT_BEHAVIOUR", "sleep:15ms"),
            ("FAULT_LOCK_TIMEOUT", "2s"),
            ("FAULT_POLL_INTERVAL", "100ms"),
        ],
    )?;
    let tasks = TaskLib::connect_with(
        Config::builder(db.url())
            .worker_id("chain-b")
            .lock_timeout(Duration::from_secs(2))
            .poll_interval(Duration::from_millis(100))
            .max_connections(6)
            .build()?,
    )
    .await?;
    let mut chains = Vec::new();
    for n in 0..40 {
        let chain = Chain::new(FaultJob { n })
            .then::<FaultJob>([])
            .then::<FaultJob>([]);
        chains.push((n, tasks.submit_chain(chain).await?));
    }
    poll_until("worker A to be half way", PATIENCE, || async {
        Ok(scalar(&client, "SELECT count(*) FROM executions", &[]).await? >= 50)
    })
    .await
    .map_err(|e| format!("{e}\nworker log:\n{}", a.log()))?;
    a.kill()?;

    tasks.register(Recorder::new(tasks.db()?.clone(), Behaviour::Finish))?;
    let pool = TaskWorker::new(&tasks)
        .concurrency(4)
        .poll_interval(Duration::from_millis(100))
        .spawn()?;
    for (n, ids) in &chains {
        let result = tasks.wait_result(ids.id, PATIENCE).await?;
        assert_eq!(
            result.status,
            TaskStatus::Completed,
            "chain {n}: {result:?}"
        );
        assert_eq!(result.value_as::<i64>()?, *n);
    }
    pool.shutdown().await?;

    assert_eq!(
        scalar(&client, "SELECT count(*) FROM tasks", &[]).await?,
        120
    );
    assert_eq!(
        scalar(&client, "SELECT count(DISTINCT chain_id) FROM tasks", &[]).await?,
        40
    );
    // Every step ran; a step ran twice only after a rescue (attempt 2 and a lost attempt 1).
    let twice = client
        .query(
            "SELECT t.id, t.attempt, count(e.*) AS runs
             FROM tasks t LEFT JOIN executions e ON e.task_id = t.id
             GROUP BY t.id, t.attempt HAVING count(e.*) <> 1",
            &[],
        )
        .await?;
    for row in &twice {
        let (attempt, runs): (i32, i64) = (row.get(1), row.get(2));
        assert!(
            runs >= 2 && attempt >= 2,
            "a step ran {runs} times in {attempt} attempts"
        );
    }
    // At most what A held when it died: 4 running, and up to 4 x 4 finished handlers whose
    // outcome was still waiting to be written (at least once: those run again).
    assert!(
        twice.len() <= 20,
        "more steps re-ran than A could hold: {}",
        twice.len()
    );
    // No step started before the one before it completed.
    let early = scalar(
        &client,
        "SELECT count(*) FROM tasks prev
         JOIN tasks next ON next.chain_id = prev.chain_id AND next.chain_step = prev.chain_step + 1
         JOIN executions e ON e.task_id = next.id
         WHERE e.at < prev.completed_at",
        &[],
    )
    .await?;
    assert_eq!(early, 0);
    Ok(())
}

/// The dead-letter workflow on a chain: the step that failed for good is fixed and retried,
/// and the chain goes on from there (its later steps, cancelled by the failure, wait again).
#[tokio::test]
async fn retrying_a_failed_step_resumes_its_chain() -> TestResult {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let env = setup().await?;
    let broken = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&broken);
    env.tasks
        .register(move |job: FaultJob, _: tasklib::TaskContext| {
            let broken = flag.load(Ordering::SeqCst);
            async move {
                if broken && job.n == 5 {
                    Err(tasklib::TaskError::permanent("five is broken"))
                } else {
                    Ok(job.n)
                }
            }
        })?;
    // 4 → [4] → … : a step that gets 5 fails. Step 0 gives 5 by starting there.
    let ids = env
        .tasks
        .submit_chain(
            Chain::new(FaultJob { n: 5 })
                .then::<FaultJob>([])
                .then::<FaultJob>([]),
        )
        .await?;
    let pool = env.tasks.spawn_workers(2)?;
    let failed = env.tasks.wait_result(ids.id, PATIENCE).await?;
    assert_eq!(failed.status, TaskStatus::Failed, "{failed:?}");
    let record = env
        .tasks
        .get_task(ids.steps[2])
        .await?
        .ok_or("step missing")?;
    assert!(record.is_cancelled());
    assert_eq!(
        (record.chain_id, record.chain_step),
        (Some(ids.id), Some(2))
    );

    // Retrying a later step first does not run it without its input: it waits again.
    env.tasks.retry(ids.steps[2]).await?;
    let waiting = env
        .tasks
        .get_task(ids.steps[2])
        .await?
        .ok_or("step missing")?;
    assert!(waiting.is_pending());
    assert!(waiting.scheduled_at > chrono::Utc::now() + chrono::Duration::days(365));

    broken.store(false, Ordering::SeqCst);
    assert_eq!(env.tasks.retry_failed(Some("fault_job"), None).await?, 1);
    let done = env.tasks.wait_result(ids.id, PATIENCE).await?;
    pool.shutdown().await?;
    assert_eq!(done.status, TaskStatus::Completed, "{done:?}");
    assert_eq!(done.value_as::<i64>()?, 5);
    Ok(())
}

/// With a poll interval of a minute, a wait that returns in seconds was woken by the
/// notification of the write that finished the task.
#[tokio::test]
async fn waits_are_woken_by_the_finishing_write_not_by_polling() -> TestResult {
    let env = setup_with(|b| b.poll_interval(Duration::from_secs(60))).await?;
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    env.tasks.register(crate::common::Gated(gate.clone()))?;
    let id = env.tasks.submit(crate::common::job("x")).await?;
    let pool = env.tasks.spawn_workers(1)?;
    let mut events = pool.subscribe();
    crate::common::started(&mut events, id).await?;
    let waiter = tokio::spawn({
        let tasks = env.tasks.clone();
        async move { tasks.wait_result(id, PATIENCE).await }
    });
    // The waiter has marked the row once `notify_done` is set; then let the task finish.
    let client = raw(&env.db).await?;
    poll_until("the waiter to mark the task", PATIENCE, || async {
        Ok(client
            .query_one("SELECT notify_done FROM tasks WHERE id = $1", &[&id])
            .await?
            .get::<_, bool>(0))
    })
    .await?;
    let released = Instant::now();
    gate.add_permits(1);
    let result = waiter.await??;
    let woke_after = released.elapsed();
    pool.shutdown().await?;
    assert_eq!(result.value_as::<String>()?, "x");
    assert!(
        woke_after < Duration::from_secs(20),
        "the wait took {woke_after:?}: it was not woken by a notification"
    );
    Ok(())
}

/// Only rows a waiter marked send `tasks_done` when they finish (the statements notify under
/// `CASE WHEN notify_done`): plain tasks stay unmarked, so finishing them notifies nothing.
#[tokio::test]
async fn tasks_nobody_waits_for_are_never_marked() -> TestResult {
    let env = setup().await?;
    env.tasks
        .register(Recorder::new(env.tasks.db()?.clone(), Behaviour::Finish))?;
    create_executions(env.db.url()).await?;
    let client = raw(&env.db).await?;
    let ids = env
        .tasks
        .submit_many((0..5).map(|n| FaultJob { n }), SubmitOptions::new())
        .await?;
    let pool = env.tasks.spawn_workers(2)?;
    let mut events = pool.subscribe();
    crate::common::finished_all(&mut events, &ids).await?;
    pool.shutdown().await?;
    let marked = scalar(&client, "SELECT count(*) FROM tasks WHERE notify_done", &[]).await?;
    assert_eq!(marked, 0);
    // A waited one is marked.
    let waited = env.tasks.submit(FaultJob { n: 9 }).await?;
    let timed_out = env
        .tasks
        .wait_result(waited, Duration::from_millis(50))
        .await;
    assert!(timed_out.is_err_and(|e| e.is_timeout()));
    let marked = scalar(&client, "SELECT count(*) FROM tasks WHERE notify_done", &[]).await?;
    assert_eq!(marked, 1);
    Ok(())
}

#[tokio::test]
async fn engines_not_compiled_in_and_hatchet_fail_at_startup_with_one_line() -> TestResult {
    let celery = TaskLib::connect_with(
        Config::for_backend(BackendType::Celery)
            .celery_broker_url("redis://:secret@127.0.0.1:1/0")
            .build()?,
    )
    .await;
    match celery {
        // Compiled in: it gets as far as connecting, and says so in one line without the
        // password.
        #[cfg(feature = "celery")]
        Err(error @ Error::Broker { .. }) => {
            let line = error.to_string();
            assert!(line.contains("***") && !line.contains("secret"), "{line}");
            assert!(!line.contains('\n'));
        }
        #[cfg(not(feature = "celery"))]
        Err(error @ Error::BackendNotCompiled { .. }) => {
            let line = error.to_string();
            assert!(
                line.contains("`celery`") && line.contains("--features celery"),
                "{line}"
            );
            assert!(!line.contains('\n'));
        }
        other => panic!("expected BackendNotCompiled, got {other:?}"),
    }
    let temporal = TaskLib::connect_with(
        Config::for_backend(BackendType::Temporal)
            .temporal_host("127.0.0.1:1")
            .build()?,
    )
    .await;
    #[cfg(not(feature = "temporal"))]
    assert!(matches!(
        temporal,
        Err(Error::BackendNotCompiled {
            feature: "temporal",
            ..
        })
    ));
    // Compiled in: nothing listens on port 1, and the error names the frontend.
    #[cfg(feature = "temporal")]
    assert!(
        matches!(
            temporal,
            Err(Error::Broker {
                backend: BackendType::Temporal,
                role: "frontend",
                ..
            })
        ),
        "{temporal:?}"
    );
    let hatchet = TaskLib::connect_with(Config::for_backend(BackendType::Hatchet).build()?).await;
    match hatchet {
        Err(error @ Error::BackendUnsupported { .. }) => {
            assert!(error.to_string().contains("docs/backends.md"), "{error}");
        }
        other => panic!("expected BackendUnsupported, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn the_postgres_engine_says_what_it_is() -> TestResult {
    let env = setup().await?;
    assert_eq!(env.tasks.backend_type(), BackendType::Postgres);
    let config = env.tasks.backend_config();
    assert_eq!(config.backend, BackendType::Postgres);
    assert!(config.get("database_url").is_some());
    assert!(env.tasks.capabilities().iter().count() >= 10);
    Ok(())
}
