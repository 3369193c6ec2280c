//! Reading tasks back: by id, filtered and paged lists, predicates, counts.

use serde_json::json;
use tasklib::{SubmitOptions, TaskFilter, TaskState};

use crate::common::{TestResult, email, job, raw, setup};

#[tokio::test]
async fn get_task_of_unknown_id_is_none() -> TestResult {
    let env = setup().await?;
    assert!(env.tasks.get_task(uuid::Uuid::now_v7()).await?.is_none());
    Ok(())
}

#[tokio::test]
async fn list_filters_by_state_name_queue_and_tags() -> TestResult {
    let env = setup().await?;
    let weekly = SubmitOptions::new()
        .tag("batch", "weekly")
        .tag("team", "growth");
    let a = env.tasks.submit_with(email(1), weekly.clone()).await?;
    let b = env
        .tasks
        .submit_with(job("x"), weekly.clone().queue("reports"))
        .await?;
    let c = env
        .tasks
        .submit_with(email(2), SubmitOptions::new().tag("batch", "daily"))
        .await?;
    let d = env.tasks.submit(email(3)).await?;
    let client = raw(&env.db).await?;
    client
        .execute("UPDATE tasks SET state = 'completed' WHERE id = $1", &[&d])
        .await?;

    let ids =
        |records: Vec<tasklib::TaskRecord>| records.into_iter().map(|r| r.id).collect::<Vec<_>>();
    // Newest first.
    assert_eq!(
        ids(env.tasks.list_tasks(&TaskFilter::new()).await?),
        vec![d, c, b, a]
    );
    assert_eq!(
        ids(env
            .tasks
            .list_tasks(&TaskFilter::new().tags(json!({"batch": "weekly"})))
            .await?),
        vec![b, a]
    );
    assert_eq!(
        ids(env
            .tasks
            .list_tasks(
                &TaskFilter::new()
                    .name("send_email")
                    .state(TaskState::Pending)
            )
            .await?),
        vec![c, a]
    );
    assert_eq!(
        ids(env
            .tasks
            .list_tasks(&TaskFilter::new().queue("reports"))
            .await?),
        vec![b]
    );
    assert_eq!(
        ids(env
            .tasks
            .list_tasks(
                &TaskFilter::new()
                    .state(TaskState::Completed)
                    .state(TaskState::Running)
            )
            .await?),
        vec![d]
    );
    let bad = env
        .tasks
        .list_tasks(&TaskFilter::new().tags(json!("weekly")))
        .await;
    assert!(bad.is_err(), "a tag filter must be an object");
    let bad = env.tasks.list_tasks(&TaskFilter::new().limit(0)).await;
    assert!(bad.is_err(), "limit 0 is refused");
    Ok(())
}

#[tokio::test]
async fn pagination_is_stable_while_tasks_arrive() -> TestResult {
    let env = setup().await?;
    let mut submitted = Vec::new();
    for n in 0..25 {
        submitted.push(env.tasks.submit(email(n)).await?);
    }
    submitted.reverse(); // newest first
    let mut seen = Vec::new();
    let mut filter = TaskFilter::new().limit(10);
    loop {
        let page = env.tasks.list_tasks(&filter).await?;
        // New work arriving between pages must not shift what later pages return.
        env.tasks.submit(email(1000 + seen.len())).await?;
        let Some(last) = page.last() else { break };
        filter = filter.before(last.id);
        seen.extend(page.iter().map(|r| r.id));
    }
    assert_eq!(seen, submitted);
    Ok(())
}

#[tokio::test]
async fn predicates_and_counts_follow_the_state() -> TestResult {
    let env = setup().await?;
    let ids: Vec<_> = {
        let mut v = Vec::new();
        for n in 0..6 {
            v.push(env.tasks.submit(email(n)).await?);
        }
        v
    };
    let client = raw(&env.db).await?;
    client
        .batch_execute(&format!(
            "UPDATE tasks SET state = 'running' WHERE id = '{}';
             UPDATE tasks SET state = 'completed', result = '{{\"value\": true}}' WHERE id = '{}';
             UPDATE tasks SET state = 'failed', error = 'boom', next_retry_at = now() + interval '1 minute' WHERE id = '{}';
             UPDATE tasks SET state = 'failed', error = 'boom' WHERE id = '{}';
             UPDATE tasks SET state = 'cancelled' WHERE id = '{}';",
            ids[1], ids[2], ids[3], ids[4], ids[5]
        ))
        .await?;
    let get = |i: usize| {
        let tasks = env.tasks.clone();
        let id = ids[i];
        async move { tasks.get_task(id).await.map(|t| t.ok_or("missing")) }
    };
    let pending = get(0).await??;
    assert!(pending.is_pending() && !pending.is_terminal() && !pending.has_result());
    let running = get(1).await??;
    assert!(running.is_running() && !running.is_terminal());
    let completed = get(2).await??;
    assert!(completed.is_completed() && completed.is_terminal() && completed.has_result());
    assert_eq!(completed.result_as::<bool>()?, Some(true));
    let retrying = get(3).await??;
    assert!(
        retrying.is_failed()
            && retrying.is_retrying()
            && !retrying.is_terminal()
            && retrying.has_error()
    );
    let dead = get(4).await??;
    assert!(dead.is_failed() && !dead.is_retrying() && dead.is_terminal());
    let cancelled = get(5).await??;
    assert!(cancelled.is_cancelled() && cancelled.is_terminal());

    let counts = env.tasks.count_tasks().await?;
    assert_eq!(
        (
            counts.pending,
            counts.running,
            counts.completed,
            counts.failed_retrying,
            counts.failed_permanent,
            counts.cancelled
        ),
        (1, 1, 1, 1, 1, 1)
    );
    assert_eq!(counts.total(), 6);
    Ok(())
}
