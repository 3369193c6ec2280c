//! Scenario 9, injection: task names, queues, tags and filters full of quotes, semicolons,
//! SQL and `LIKE` wildcards are stored as given and matched literally — by the worker's claim
//! and its notification dispatch, by listing filters, by the dead-letter retry and by queue
//! status — and the SQL in them never runs.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tasklib::{SubmitOptions, Task, TaskContext, TaskError, TaskFilter, TaskOutcome, TaskWorker};
use validator::Validate;

use crate::common::{TestResult, finished, job, listener_up, raw, setup};

const NAME: &str = "job'); DROP TABLE tasks; --";
const QUEUE: &str = "q\"; DELETE FROM tasks WHERE '1'='1' --";
const TAG_KEY: &str = "k'\"; SELECT pg_sleep(5); --";
const TAG_VALUE: &str = "v' OR '1'='1";

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Sneaky {
    label: String,
}

impl Task for Sneaky {
    const NAME: &'static str = NAME;
    const QUEUE: &'static str = QUEUE;
    type Output = String;
}

#[tokio::test]
async fn names_queues_and_tags_full_of_sql_are_stored_and_matched_literally() -> TestResult {
    let env = setup().await?;
    env.tasks.register(|s: Sneaky, _: TaskContext| async move {
        if s.label == "fail" {
            Err(TaskError::permanent("failed on purpose"))
        } else {
            Ok(s.label)
        }
    })?;
    // Only the notification can wake this pool in time (its poll tick is a minute away), so
    // the queue name must survive NOTIFY's payload and match the pool's queue exactly.
    let pool = TaskWorker::new(&env.tasks)
        .queue(QUEUE, 1)
        .poll_interval(Duration::from_secs(60))
        .spawn()?;
    let mut events = pool.subscribe();
    listener_up(&mut events).await?;

    let tags = json!({ TAG_KEY: TAG_VALUE, "pct": "100%_\\" });
    let failing = env
        .tasks
        .submit_with(
            Sneaky {
                label: "fail".into(),
            },
            SubmitOptions::new().tags(tags.clone()),
        )
        .await?;
    assert_eq!(finished(&mut events, failing).await?, TaskOutcome::Failed);
    let by_name = env
        .tasks
        .submit_json(NAME, json!({"label": "ok"}), SubmitOptions::new())
        .await?;
    assert_eq!(
        finished(&mut events, by_name).await?,
        TaskOutcome::Completed
    );
    // An ordinary task elsewhere, with tags a wildcard or an OR would match.
    let plain = env
        .tasks
        .submit_with(
            job("plain"),
            SubmitOptions::new()
                .tag("pct", "100 percent")
                .tag(TAG_KEY, "v"),
        )
        .await?;

    // Stored byte for byte.
    let admin = raw(&env.db).await?;
    let row = admin
        .query_one(
            "SELECT name, queue, tags FROM tasks WHERE id = $1",
            &[&failing],
        )
        .await?;
    assert_eq!(row.try_get::<_, String>(0)?, NAME);
    assert_eq!(row.try_get::<_, String>(1)?, QUEUE);
    let stored: serde_json::Value = serde_json::from_str(
        &admin
            .query_one("SELECT tags::text FROM tasks WHERE id = $1", &[&failing])
            .await?
            .try_get::<_, String>(0)?,
    )?;
    assert_eq!(stored, tags);

    // Matched literally by the filters.
    let ids = |records: Vec<tasklib::TaskRecord>| {
        let mut ids: Vec<_> = records.into_iter().map(|r| r.id).collect();
        ids.sort();
        ids
    };
    let mut sneaky = vec![failing, by_name];
    sneaky.sort();
    let list = |filter: TaskFilter| {
        let tasks = env.tasks.clone();
        async move { tasks.list_tasks(&filter).await }
    };
    assert_eq!(ids(list(TaskFilter::new().name(NAME)).await?), sneaky);
    assert_eq!(ids(list(TaskFilter::new().queue(QUEUE)).await?), sneaky);
    assert_eq!(
        ids(list(TaskFilter::new().tags(json!({ TAG_KEY: TAG_VALUE }))).await?),
        vec![failing]
    );
    for filter in [
        TaskFilter::new().name("%"),
        TaskFilter::new().name("job%"),
        TaskFilter::new().queue("q%"),
        TaskFilter::new().name("' OR '1'='1"),
        TaskFilter::new().tags(json!({"pct": "100%"})),
        TaskFilter::new().tags(json!({ TAG_KEY: "v' OR '1'='1' OR 'x'='" })),
    ] {
        let found = list(filter.clone()).await?;
        assert!(found.is_empty(), "{filter:?} matched {found:?}");
    }

    // Queue status and the dead-letter retry match literally too.
    let status = env.tasks.queue_status().await?;
    let queues: Vec<&str> = status.iter().map(|q| q.queue.as_str()).collect();
    assert_eq!(queues, vec!["default", QUEUE]);
    assert_eq!(env.tasks.retry_failed(Some("%"), None).await?, 0);
    assert_eq!(env.tasks.retry_failed(None, Some("q%")).await?, 0);
    assert_eq!(env.tasks.retry_failed(Some(NAME), Some(QUEUE)).await?, 1);
    assert_eq!(finished(&mut events, failing).await?, TaskOutcome::Failed);
    pool.shutdown().await?;

    // Nothing ran: the table is there, with every row.
    let count: i64 = admin
        .query_one("SELECT count(*) FROM tasks", &[])
        .await?
        .try_get(0)?;
    assert_eq!(count, 3);
    assert!(
        env.tasks
            .get_task(plain)
            .await?
            .is_some_and(|t| t.is_pending())
    );
    Ok(())
}
