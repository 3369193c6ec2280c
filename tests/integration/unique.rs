//! Unique tasks: a key that makes a duplicate submit return the task already holding it,
//! enforced by the database under concurrent submitters, in both scopes.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tasklib::{
    Chain, Error, SubmitOptions, Task, TaskContext, TaskError, TaskOutcome, TaskState, UniqueScope,
};
use tokio::sync::Barrier;
use validator::Validate;

use crate::common::{Job, TestResult, finished, job, raw, setup};

const HOUR: Duration = Duration::from_secs(3600);

/// A type whose arguments give its unique key: one sync per account at a time.
#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
struct SyncAccount {
    account: i64,
}

impl Task for SyncAccount {
    const NAME: &'static str = "sync_account";
    type Output = i64;
    fn unique_key(&self) -> Option<String> {
        Some(format!("account-{}", self.account))
    }
}

/// One digest per user and hour, whatever became of it.
#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
struct Digest {
    user: i64,
}

impl Task for Digest {
    const NAME: &'static str = "digest";
    const UNIQUE_SCOPE: UniqueScope = UniqueScope::Period(HOUR);
    type Output = ();
    fn unique_key(&self) -> Option<String> {
        Some(self.user.to_string())
    }
}

async fn rows_with_key(env: &crate::common::Env, key: &str) -> TestResult<i64> {
    Ok(raw(&env.db)
        .await?
        .query_one("SELECT count(*) FROM tasks WHERE unique_key = $1", &[&key])
        .await?
        .get(0))
}

#[tokio::test]
async fn ten_concurrent_submitters_of_one_key_make_exactly_one_task() -> TestResult {
    let env = setup().await?;
    // Several rounds, each a fresh key raced by ten submitters released at once.
    for round in 0..5 {
        let key = format!("report-{round}");
        let barrier = Arc::new(Barrier::new(10));
        let mut submitters = Vec::new();
        for n in 0..10 {
            let tasks = env.tasks.clone();
            let barrier = Arc::clone(&barrier);
            let key = key.clone();
            submitters.push(tokio::spawn(async move {
                barrier.wait().await;
                tasks
                    .submit_unique(
                        job(&format!("submitter {n}")),
                        SubmitOptions::new().unique_key(key),
                    )
                    .await
            }));
        }
        let mut results = Vec::new();
        for submitter in submitters {
            results.push(submitter.await??);
        }
        let written: Vec<_> = results.iter().filter(|s| !s.duplicate).collect();
        assert_eq!(written.len(), 1, "round {round}: {results:?}");
        assert!(
            results.iter().all(|s| s.id == written[0].id),
            "every duplicate names the task written: {results:?}"
        );
        assert_eq!(rows_with_key(&env, &key).await?, 1);
    }
    Ok(())
}

#[tokio::test]
async fn a_key_unique_while_unfinished_is_free_again_once_the_task_finished() -> TestResult {
    let env = setup().await?;
    let tasks = &env.tasks;
    let unique = || SubmitOptions::new().unique_key("nightly");

    let first = tasks.submit_unique(job("a"), unique()).await?;
    assert!(!first.duplicate);
    // Pending (even delayed), the key is held; different options do not matter.
    let again = tasks
        .submit_unique(job("b"), unique().delay(HOUR).priority(9))
        .await?;
    assert!(again.duplicate);
    assert_eq!(again.id, first.id);
    assert_eq!(tasks.submit_with(job("c"), unique()).await?, first.id);
    // The same key under another name is another task.
    let other = tasks
        .submit_unique(SyncAccount { account: 1 }, unique())
        .await?;
    assert!(!other.duplicate);
    let record = tasks.get_task(first.id).await?.ok_or("task gone")?;
    assert_eq!(record.unique_key.as_deref(), Some("nightly"));
    assert_eq!(record.unique_window, None);
    assert_eq!(
        record.args,
        serde_json::json!({"label": "a"}),
        "the first one's arguments"
    );

    // Waiting for a retry, it still holds the key; failed for good, it lets go.
    tasks.register(|job: Job, ctx: TaskContext| async move {
        match ctx.attempt() {
            1 => Err(TaskError::retry_after(Duration::from_secs(2), "flaky")),
            _ => Err::<String, _>(TaskError::permanent(format!("{} gave up", job.label))),
        }
    })?;
    let pool = tasks.spawn_workers(1)?;
    let mut events = pool.subscribe();
    let outcome = finished(&mut events, first.id).await?;
    assert!(
        matches!(outcome, TaskOutcome::Retrying { .. }),
        "{outcome:?}"
    );
    // The retry is 2 s away: meanwhile the key is held.
    let record = tasks.get_task(first.id).await?.ok_or("task gone")?;
    assert!(record.is_retrying(), "{record:?}");
    assert!(tasks.submit_unique(job("d"), unique()).await?.duplicate);
    let outcome = finished(&mut events, first.id).await?;
    assert_eq!(outcome, TaskOutcome::Failed);
    let fresh = tasks.submit_unique(job("e"), unique()).await?;
    assert!(!fresh.duplicate);
    assert_ne!(fresh.id, first.id);
    pool.shutdown().await?;

    // A cancelled holder lets go too.
    tasks.cancel(fresh.id).await?;
    let after_cancel = tasks.submit_unique(job("f"), unique()).await?;
    assert!(!after_cancel.duplicate);
    // Three `job` tasks held the key in turn, and the `sync_account` one beside them.
    assert_eq!(rows_with_key(&env, "nightly").await?, 4);
    Ok(())
}

#[tokio::test]
async fn a_key_unique_per_period_holds_for_its_window_whatever_became_of_the_task() -> TestResult {
    let env = setup().await?;
    let tasks = &env.tasks;
    let first = tasks
        .submit_unique(Digest { user: 7 }, SubmitOptions::new())
        .await?;
    assert!(!first.duplicate);
    tasks.cancel(first.id).await?;
    // Cancelled, it still holds its window.
    let again = tasks
        .submit_unique(Digest { user: 7 }, SubmitOptions::new())
        .await?;
    assert!(again.duplicate);
    assert_eq!(again.id, first.id);
    assert!(
        !tasks
            .submit_unique(Digest { user: 8 }, SubmitOptions::new())
            .await?
            .duplicate
    );
    // The window starts on an hour boundary of the database clock, at or before the submit.
    let record = tasks.get_task(first.id).await?.ok_or("task gone")?;
    let window = record.unique_window.ok_or("no window")?;
    assert_eq!(window.timestamp() % 3600, 0, "{window}");
    assert!(window <= record.created_at);
    assert!(record.created_at - window < chrono::Duration::hours(1));

    // A window in the past (as if the hour had turned) no longer holds the key.
    raw(&env.db)
        .await?
        .execute(
            "UPDATE tasks SET unique_window = unique_window - interval '1 hour' WHERE id = $1",
            &[&first.id],
        )
        .await?;
    let next_hour = tasks
        .submit_unique(Digest { user: 7 }, SubmitOptions::new())
        .await?;
    assert!(!next_hour.duplicate);

    // The submit's scope wins over the type's: while unfinished, the cancelled one is no
    // obstacle, but the new pending one is.
    let unfinished = SubmitOptions::new().unique_scope(UniqueScope::Unfinished);
    let scoped = tasks
        .submit_unique(Digest { user: 7 }, unfinished.clone())
        .await?;
    assert!(!scoped.duplicate);
    assert!(
        tasks
            .submit_unique(Digest { user: 7 }, unfinished)
            .await?
            .duplicate
    );
    Ok(())
}

#[tokio::test]
async fn a_batch_keeps_the_first_of_its_duplicates_and_the_types_key_applies() -> TestResult {
    let env = setup().await?;
    let tasks = &env.tasks;
    let held = tasks.submit(SyncAccount { account: 3 }).await?;
    let ids = tasks
        .submit_many(
            [1, 2, 1, 3, 4].map(|account| SyncAccount { account }),
            SubmitOptions::new(),
        )
        .await?;
    assert_eq!(ids.len(), 5);
    assert_eq!(ids[0], ids[2], "the second 1 is the first's duplicate");
    assert_eq!(ids[3], held, "3 was held before the batch");
    let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 4);
    let rows: i64 = raw(&env.db)
        .await?
        .query_one(
            "SELECT count(*) FROM tasks WHERE name = 'sync_account'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(rows, 4);

    // By name, the registered type's key applies too.
    tasks.register(|args: SyncAccount, _: TaskContext| async move {
        Ok::<_, TaskError>(args.account)
    })?;
    let by_name = tasks
        .submit_by_name_unique(
            "sync_account",
            serde_json::json!({"account": 4}),
            SubmitOptions::new(),
        )
        .await?;
    assert!(by_name.duplicate);
    assert_eq!(by_name.id, ids[4]);
    Ok(())
}

#[tokio::test]
async fn inside_the_callers_transaction_a_duplicate_finds_the_holder() -> TestResult {
    use sea_orm::TransactionTrait;

    let env = setup().await?;
    let tasks = &env.tasks;
    let held = tasks.submit(SyncAccount { account: 9 }).await?;
    let txn = tasks.db()?.begin().await?;
    let id = tasks
        .submit_in(&txn, SyncAccount { account: 9 }, SubmitOptions::new())
        .await?;
    assert_eq!(id, held);
    let new = tasks
        .submit_in(&txn, SyncAccount { account: 10 }, SubmitOptions::new())
        .await?;
    let same = tasks
        .submit_in(&txn, SyncAccount { account: 10 }, SubmitOptions::new())
        .await?;
    assert_eq!(new, same, "the transaction sees its own holder");
    txn.commit().await?;
    assert_eq!(rows_with_key(&env, "account-10").await?, 1);
    Ok(())
}

#[tokio::test]
async fn re_queueing_waits_for_the_holder_and_chains_refuse_keys() -> TestResult {
    let env = setup().await?;
    let tasks = &env.tasks;
    let unique = || SubmitOptions::new().unique_key("import");
    let old = tasks.submit_unique(job("old"), unique()).await?;
    tasks.cancel(old.id).await?;
    let current = tasks.submit_unique(job("current"), unique()).await?;
    assert!(!current.duplicate);
    // The cancelled one cannot run again while the current one holds the key.
    match tasks.retry(old.id).await {
        Err(Error::UniqueKeyTaken { id, key }) => {
            assert_eq!((id, key.as_str()), (old.id, "import"));
        }
        other => panic!("expected UniqueKeyTaken, got {other:?}"),
    }
    let record = tasks.get_task(old.id).await?.ok_or("task gone")?;
    assert_eq!(record.state, TaskState::Cancelled, "nothing changed");
    // Once the holder is gone, it can.
    tasks.cancel(current.id).await?;
    tasks.retry(old.id).await?;
    assert!(tasks.submit_unique(job("later"), unique()).await?.duplicate);

    // A chain step cannot be unique, from the options or from its type.
    for chain in [
        Chain::new(job("step")).options(unique()),
        Chain::new(SyncAccount { account: 1 }),
    ] {
        match tasks.submit_chain(chain).await {
            Err(Error::InvalidOption { option, .. }) => assert_eq!(option, "unique_key"),
            other => panic!("expected InvalidOption, got {other:?}"),
        }
    }
    // Bad keys are refused before anything is written.
    for key in [String::new(), "k".repeat(tasklib::MAX_UNIQUE_KEY_BYTES + 1)] {
        let refused = tasks
            .submit_with(job("x"), SubmitOptions::new().unique_key(key))
            .await;
        assert!(
            matches!(
                refused,
                Err(Error::InvalidOption {
                    option: "unique_key",
                    ..
                })
            ),
            "{refused:?}"
        );
    }
    Ok(())
}
