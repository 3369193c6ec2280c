//! Claiming: priority then due time, never more than the free slots, only registered names,
//! and heartbeats keeping a long task's lock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tasklib::{
    ClaimAhead, Config, SubmitOptions, TaskContext, TaskError, TaskLib, TaskOutcome, TaskWorker,
    WorkerEvent,
};
use tokio::sync::Semaphore;

use crate::common::{
    Gated, Job, SendEmail, TestResult, email, finished, finished_all, job, raw, setup, setup_with,
    started, wait_for,
};

#[tokio::test]
async fn highest_priority_first_then_the_one_due_longest() -> TestResult {
    let env = setup().await?;
    let order = Arc::new(Mutex::new(Vec::new()));
    let seen = order.clone();
    env.tasks.register(move |job: Job, _: TaskContext| {
        let seen = seen.clone();
        async move {
            seen.lock()
                .map_err(|_| TaskError::permanent("poisoned"))?
                .push(job.label.clone());
            Ok::<_, TaskError>(job.label)
        }
    })?;
    let at = |secs: i64| chrono::Utc::now() - chrono::Duration::seconds(secs);
    let mut ids = Vec::new();
    for (label, priority, due) in [
        ("low-old", 0, at(30)),
        ("high-new", 5, at(10)),
        ("low-new", 0, at(5)),
        ("high-old", 5, at(20)),
        ("top", 9, at(1)),
    ] {
        ids.push(
            env.tasks
                .submit_with(
                    job(label),
                    SubmitOptions::new().priority(priority).scheduled_at(due),
                )
                .await?,
        );
    }
    let pool = env.tasks.spawn_workers(1)?;
    let mut events = pool.subscribe();
    finished_all(&mut events, &ids).await?;
    let order = order.lock().map_err(|_| "poisoned")?.clone();
    assert_eq!(
        order,
        vec!["top", "high-old", "high-new", "low-old", "low-new"]
    );
    pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_claim_never_takes_more_than_the_free_slots() -> TestResult {
    let env = setup().await?;
    let gate = Arc::new(Semaphore::new(0));
    env.tasks.register(Gated(gate.clone()))?;
    let ids = env
        .tasks
        .submit_many((0..100).map(|n| job(&n.to_string())), SubmitOptions::new())
        .await?;
    let pool = env.tasks.spawn_workers(3)?;
    let mut events = pool.subscribe();
    for _ in 0..3 {
        wait_for(&mut events, |e| {
            matches!(e, WorkerEvent::TaskStarted { .. }).then_some(())
        })
        .await?;
    }
    let admin = raw(&env.db).await?;
    let row = admin
        .query_one("SELECT count(*) FILTER (WHERE state = 'running'), count(*) FILTER (WHERE attempt > 0) FROM tasks", &[])
        .await?;
    let (running, touched): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(
        (running, touched),
        (3, 3),
        "three slots, three rows claimed, none beyond"
    );
    gate.add_permits(100);
    finished_all(&mut events, &ids).await?;
    let max_attempt: i32 = admin
        .query_one("SELECT max(attempt) FROM tasks", &[])
        .await?
        .get(0);
    assert_eq!(max_attempt, 1);
    pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_worker_claims_only_the_names_it_registered() -> TestResult {
    let env = setup().await?;
    // This service only handles `job`; `send_email` belongs to another service on the same table.
    env.tasks
        .register(|job: Job, _: TaskContext| async move { Ok::<_, TaskError>(job.label) })?;
    let foreign = env.tasks.submit(email(1)).await?;
    let mine = env.tasks.submit(job("mine")).await?;
    let pool = TaskWorker::new(&env.tasks)
        .poll_interval(Duration::from_millis(50))
        .spawn()?;
    let mut events = pool.subscribe();
    assert_eq!(finished(&mut events, mine).await?, TaskOutcome::Completed);
    pool.shutdown().await?;
    let stats = env.tasks.get_task(foreign).await?.ok_or("missing")?;
    assert!(stats.is_pending(), "the other service's task is untouched");
    assert_eq!(stats.attempt, 0);

    // The other service picks it up.
    let other =
        TaskLib::connect_with(Config::builder(env.db.url()).max_connections(2).build()?).await?;
    other.register(|_: SendEmail, _: TaskContext| async { Ok::<_, TaskError>(true) })?;
    let pool = other.spawn_workers(1)?;
    let mut events = pool.subscribe();
    assert_eq!(
        finished(&mut events, foreign).await?,
        TaskOutcome::Completed
    );
    pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn heartbeats_keep_a_long_tasks_lock() -> TestResult {
    // A one-second lock, heartbeats every third of it; the task runs for three seconds.
    let env = setup_with(|b| {
        b.lock_timeout(Duration::from_secs(1))
            .poll_interval(Duration::from_millis(100))
    })
    .await?;
    env.tasks
        .register(|job: Job, ctx: TaskContext| async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok::<_, TaskError>(format!("{} on attempt {}", job.label, ctx.attempt()))
        })?;
    let pool = env.tasks.spawn_workers(1)?;
    let mut events = pool.subscribe();
    let id = env.tasks.submit(job("long")).await?;
    let rescued = wait_for(&mut events, |e| match e {
        WorkerEvent::TaskRescued { id: r, .. } if *r == id => Some(true),
        WorkerEvent::TaskFinished {
            id: f,
            outcome: TaskOutcome::Completed,
            ..
        } if *f == id => Some(false),
        _ => None,
    })
    .await?;
    assert!(!rescued, "the task's lock expired while it ran");
    let task = env.tasks.get_task(id).await?.ok_or("missing")?;
    assert_eq!(task.attempt, 1);
    assert_eq!(
        task.result_as::<String>()?.as_deref(),
        Some("long on attempt 1")
    );
    pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_slot_frees_when_its_handler_returns_and_shutdown_waits_for_the_pending_write()
-> TestResult {
    let env = setup().await?;
    let gate = Arc::new(Semaphore::new(0));
    env.tasks.register(Gated(gate.clone()))?;
    let pool = env.tasks.spawn_workers(1)?;
    let mut events = pool.subscribe();
    let first = env.tasks.submit(job("first")).await?;
    started(&mut events, first).await?;

    // Hold the first row's lock from another session, so its outcome write has to wait.
    let mut blocker = raw(&env.db).await?;
    let lock = blocker.transaction().await?;
    lock.execute("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", &[&first])
        .await?;
    gate.add_permits(2);

    // One slot: the second task can only start if the first handler's slot is free while its
    // write waits.
    let second = env.tasks.submit(job("second")).await?;
    started(&mut events, second).await?;
    let row = env
        .tasks
        .get_task(first)
        .await?
        .ok_or("first task missing")?;
    assert_eq!(
        row.state,
        tasklib::TaskState::Running,
        "the first outcome is not written yet"
    );
    assert_eq!(pool.stats().running, 2, "both tasks are still in flight");

    // Shutdown must wait for the pending writes, not abandon them.
    let mut shutdown = tokio::spawn(pool.shutdown());
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut shutdown)
            .await
            .is_err(),
        "shutdown returned while an outcome was still unwritten"
    );
    lock.rollback().await?;
    shutdown.await??;
    for id in [first, second] {
        let row = env.tasks.get_task(id).await?.ok_or("task missing")?;
        assert_eq!(row.state, tasklib::TaskState::Completed, "{id}");
    }
    Ok(())
}

#[tokio::test]
async fn tasks_claimed_ahead_go_back_when_the_slots_stay_busy() -> TestResult {
    let env = setup().await?;
    let gate = Arc::new(Semaphore::new(0));
    let held = gate.clone();
    env.tasks.register(move |job: Job, _: TaskContext| {
        let held = held.clone();
        async move {
            if job.label.starts_with("slow") {
                held.acquire()
                    .await
                    .map(|permit| permit.forget())
                    .map_err(|_| TaskError::permanent("gate closed"))?;
            }
            Ok::<_, TaskError>(job.label)
        }
    })?;
    // Quick tasks run first (higher priority); then the slow ones fill both slots, and the
    // rows claimed ahead behind them wait.
    env.tasks
        .submit_many(
            (0..600).map(|n| job(&format!("quick-{n}"))),
            SubmitOptions::new().priority(1),
        )
        .await?;
    let slow = env
        .tasks
        .submit_many(
            (0..8).map(|n| job(&format!("slow-{n}"))),
            SubmitOptions::new(),
        )
        .await?;
    let pool = TaskWorker::new(&env.tasks)
        .concurrency(2)
        .claim_ahead(ClaimAhead::Fixed(4))
        .poll_interval(Duration::from_secs(60))
        .spawn()?;
    let mut events = pool.subscribe();
    // (On a loaded machine quick tasks may wait too long and go back too; they run later.)
    let returned: Vec<uuid::Uuid> = wait_for(&mut events, |e| match e {
        WorkerEvent::TasksReturned {
            ids,
            at_shutdown: false,
        } => {
            let stuck: Vec<_> = ids.iter().filter(|id| slow.contains(id)).copied().collect();
            (!stuck.is_empty()).then_some(stuck)
        }
        _ => None,
    })
    .await?;
    let admin = raw(&env.db).await?;
    let rows = admin
        .query(
            "SELECT state, attempt, worker_id FROM tasks WHERE id = ANY($1)",
            &[&returned],
        )
        .await?;
    assert_eq!(rows.len(), returned.len());
    for row in &rows {
        let (state, attempt, worker): (String, i32, Option<String>) =
            (row.get(0), row.get(1), row.get(2));
        assert_eq!(
            (state.as_str(), attempt, worker),
            ("pending", 0, None),
            "back in the queue as if never claimed"
        );
    }
    // Nothing is claimed ahead again until a task finishes: no churn while the slots are stuck.
    assert_eq!(pool.stats().claimed_ahead, 0);
    let claims = pool.stats().claim_queries;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        pool.stats().claim_queries,
        claims,
        "claimed again while stuck"
    );
    gate.add_permits(slow.len());
    let outcomes = finished_all(&mut events, &slow).await?;
    assert!(outcomes.iter().all(|o| *o == TaskOutcome::Completed));
    let max_attempt: i32 = admin
        .query_one("SELECT max(attempt) FROM tasks", &[])
        .await?
        .get(0);
    assert_eq!(max_attempt, 1, "a task given back did not count an attempt");
    // Rows claimed ahead were marked started before they ran, so a worker's death would
    // have counted their attempts.
    let unmarked: i64 = admin
        .query_one(
            "SELECT count(*) FROM tasks WHERE state = 'completed' AND started_at IS NULL",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(unmarked, 0, "a task ran without being marked started");
    pool.shutdown().await?;
    Ok(())
}
