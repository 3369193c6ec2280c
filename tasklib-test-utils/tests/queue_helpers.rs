//! `drain`, `enqueued` and `assert_enqueued` against a real queue.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tasklib::{Config, SubmitOptions, Task, TaskContext, TaskError, TaskLib};
use tasklib_test_utils::{QueueTestError, TestDatabase, assert_enqueued, drain, enqueued};
use validator::Validate;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

#[derive(Debug, Serialize, Deserialize, Validate, PartialEq)]
struct Welcome {
    user: String,
}

impl Task for Welcome {
    const NAME: &'static str = "welcome";
    type Output = ();
}

#[tokio::test]
async fn assert_enqueued_finds_typed_arguments_and_explains_misses() -> TestResult {
    let db = TestDatabase::new().await?;
    let tasks = TaskLib::connect(db.url()).await?;
    tasks.submit(Welcome { user: "ada".into() }).await?;
    tasks
        .submit(Welcome {
            user: "grace".into(),
        })
        .await?;
    let (record, args) = assert_enqueued::<Welcome>(&tasks, |w| w.user == "grace").await?;
    assert_eq!(args.user, "grace");
    assert!(record.is_pending());
    let users: Vec<String> = enqueued::<Welcome>(&tasks)
        .await?
        .into_iter()
        .map(|(_, w)| w.user)
        .collect();
    assert_eq!(users, vec!["ada", "grace"], "oldest first");
    match assert_enqueued::<Welcome>(&tasks, |w| w.user == "linus").await {
        Err(QueueTestError::NotEnqueued { pending, .. }) => {
            assert!(pending.contains("grace"), "{pending}")
        }
        other => return Err(format!("expected NotEnqueued, got {other:?}").into()),
    }
    Ok(())
}

#[tokio::test]
async fn drain_runs_everything_due_including_retries() -> TestResult {
    let db = TestDatabase::new().await?;
    let config = Config::builder(db.url())
        .base_retry_delay(Duration::from_millis(50))
        .build()?;
    let tasks = TaskLib::connect_with(config).await?;
    tasks.register(|w: Welcome, ctx: TaskContext| async move {
        if w.user == "flaky" && ctx.attempt() == 1 {
            return Err(TaskError::retry("first try fails"));
        }
        Ok::<_, TaskError>(())
    })?;
    for user in ["ada", "flaky", "grace"] {
        tasks.submit(Welcome { user: user.into() }).await?;
    }
    let later = tasks
        .submit_with(
            Welcome {
                user: "tomorrow".into(),
            },
            SubmitOptions::new().delay(Duration::from_secs(86_400)),
        )
        .await?;
    let drained = drain(&tasks, Duration::from_secs(30)).await?;
    assert_eq!(drained.attempts, 4, "three tasks, one of them twice");
    let counts = tasks.count_tasks().await?;
    assert_eq!((counts.completed, counts.pending), (3, 1));
    assert!(tasks.get_task(later).await?.ok_or("missing")?.is_pending());
    Ok(())
}
