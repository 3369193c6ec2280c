//! Operating the queue from code: status per queue, re-queueing dead letters, retention.

use std::time::Duration;

use tasklib::{
    Error, RetentionPolicy, SubmitOptions, TaskContext, TaskError, TaskState, TaskWorker,
    WorkerEvent,
};

use crate::common::{Job, TestResult, email, finished_all, job, raw, setup, wait_for};

#[tokio::test]
async fn queue_status_counts_per_queue_and_shows_lag() -> TestResult {
    let env = setup().await?;
    env.tasks
        .submit_many((0..3).map(email), SubmitOptions::new())
        .await?;
    env.tasks
        .submit_with(job("r"), SubmitOptions::new().queue("reports"))
        .await?;
    env.tasks
        .submit_with(
            job("later"),
            SubmitOptions::new()
                .queue("reports")
                .delay(Duration::from_secs(600)),
        )
        .await?;
    raw(&env.db)
        .await?
        .batch_execute(
            "UPDATE tasks SET scheduled_at = now() - interval '90 seconds' WHERE queue = 'default'",
        )
        .await?;
    let status = env.tasks.queue_status().await?;
    let queues: Vec<_> = status
        .iter()
        .map(|q| (q.queue.as_str(), q.counts.pending))
        .collect();
    assert_eq!(queues, vec![("default", 3), ("reports", 2)]);
    let lag = status[0].oldest_pending_age.ok_or("no lag for default")?;
    assert!(
        lag >= Duration::from_secs(89) && lag < Duration::from_secs(120),
        "{lag:?}"
    );
    let reports_lag = status[1].oldest_pending_age.ok_or("no lag for reports")?;
    assert!(
        reports_lag < Duration::from_secs(30),
        "the delayed task is not due, so not lag"
    );
    Ok(())
}

#[tokio::test]
async fn dead_letters_can_be_requeued_one_or_all() -> TestResult {
    let env = setup().await?;
    env.tasks.register(|j: Job, _: TaskContext| async move {
        if j.label.starts_with("bad") {
            Err(TaskError::permanent(format!("{} is broken", j.label)))
        } else {
            Ok(j.label)
        }
    })?;
    let pool = env.tasks.spawn_workers(2)?;
    let mut events = pool.subscribe();
    let one = env.tasks.submit(job("bad one")).await?;
    let two = env.tasks.submit(job("bad two")).await?;
    let ok = env.tasks.submit(job("fine")).await?;
    finished_all(&mut events, &[one, two, ok]).await?;
    pool.shutdown().await?;

    // Only failed-for-good (or cancelled) tasks can be retried.
    let refused = env.tasks.retry(ok).await;
    assert!(
        matches!(
            refused,
            Err(Error::InvalidState {
                state: TaskState::Completed,
                ..
            })
        ),
        "{refused:?}"
    );
    assert!(
        env.tasks
            .retry(uuid::Uuid::now_v7())
            .await
            .is_err_and(|e| e.is_not_found())
    );

    env.tasks.retry(one).await?;
    let requeued = env.tasks.get_task(one).await?.ok_or("missing")?;
    assert!(requeued.is_pending());
    assert_eq!((requeued.retry_count, requeued.completed_at), (0, None));
    assert_eq!(
        requeued.error.as_deref(),
        Some("bad one is broken"),
        "the last error stays for context"
    );

    assert_eq!(env.tasks.retry_failed(Some("no_such_name"), None).await?, 0);
    assert_eq!(env.tasks.retry_failed(Some("job"), None).await?, 1);
    assert!(
        env.tasks
            .get_task(two)
            .await?
            .ok_or("missing")?
            .is_pending()
    );
    Ok(())
}

#[tokio::test]
async fn prune_deletes_only_old_finished_tasks_of_the_given_states() -> TestResult {
    let env = setup().await?;
    let ids = env
        .tasks
        .submit_many((0..6).map(email), SubmitOptions::new())
        .await?;
    raw(&env.db)
        .await?
        .batch_execute(&format!(
            "UPDATE tasks SET state = 'completed', completed_at = now() - interval '8 days' WHERE id IN ('{}', '{}');
             UPDATE tasks SET state = 'completed', completed_at = now() - interval '1 hour' WHERE id = '{}';
             UPDATE tasks SET state = 'failed', completed_at = now() - interval '8 days' WHERE id = '{}';
             UPDATE tasks SET state = 'cancelled', completed_at = now() - interval '8 days' WHERE id = '{}';",
            ids[0], ids[1], ids[2], ids[3], ids[4]
        ))
        .await?;
    let week = Duration::from_secs(7 * 24 * 3600);
    assert_eq!(env.tasks.prune(&[TaskState::Completed], week).await?, 2);
    assert!(env.tasks.get_task(ids[0]).await?.is_none());
    assert!(env.tasks.get_task(ids[2]).await?.is_some(), "recent: kept");
    assert!(
        env.tasks.get_task(ids[3]).await?.is_some(),
        "failed: not asked for"
    );
    assert!(
        env.tasks.get_task(ids[5]).await?.is_some(),
        "pending: never pruned"
    );
    assert_eq!(
        env.tasks
            .prune(&[TaskState::Failed, TaskState::Cancelled], week)
            .await?,
        2
    );
    let refused = env.tasks.prune(&[TaskState::Pending], week).await;
    assert!(
        matches!(refused, Err(Error::InvalidOption { .. })),
        "{refused:?}"
    );
    Ok(())
}

#[tokio::test]
async fn prune_works_through_more_rows_than_one_batch() -> TestResult {
    let env = setup().await?;
    let client = raw(&env.db).await?;
    client
        .batch_execute(
            "INSERT INTO tasks (name, args, state, completed_at)
             SELECT 'job', '{}', 'completed', now() - interval '2 days' FROM generate_series(1, 2500)",
        )
        .await?;
    let deleted = env
        .tasks
        .prune(&[TaskState::Completed], Duration::from_secs(86400))
        .await?;
    assert_eq!(deleted, 2500);
    Ok(())
}

#[tokio::test]
async fn a_pool_prunes_in_the_background() -> TestResult {
    let env = setup().await?;
    env.tasks
        .register(|j: Job, _: TaskContext| async move { Ok::<_, TaskError>(j.label) })?;
    let old = env.tasks.submit(job("old")).await?;
    raw(&env.db)
        .await?
        .execute(
            "UPDATE tasks SET state = 'completed', completed_at = now() - interval '2 hours' WHERE id = $1",
            &[&old],
        )
        .await?;
    let pool = TaskWorker::new(&env.tasks)
        .retention(
            RetentionPolicy::new()
                .completed_after(Duration::from_secs(3600))
                .every(Duration::from_millis(200)),
        )
        .spawn()?;
    let mut events = pool.subscribe();
    let fresh = env.tasks.submit(job("fresh")).await?;
    // Both happen, in either order: the fresh task completes, the old one is pruned.
    let (mut pruned, mut completed) = (None, false);
    while pruned.is_none() || !completed {
        match wait_for(&mut events, |e| match e {
            WorkerEvent::TasksPruned { count } => Some(Some(*count)),
            WorkerEvent::TaskFinished { id, .. } if *id == fresh => Some(None),
            _ => None,
        })
        .await?
        {
            Some(count) => pruned = Some(count),
            None => completed = true,
        }
    }
    assert_eq!(pruned, Some(1));
    assert!(env.tasks.get_task(old).await?.is_none());
    assert!(
        env.tasks.get_task(fresh).await?.is_some(),
        "completed just now: kept"
    );
    pool.shutdown().await?;
    Ok(())
}
