//! Submitting: typed, with options, in the caller's transaction, in bulk, by name; invalid
//! input is rejected before anything is written.

use std::time::Duration;

use sea_orm::TransactionTrait;
use serde_json::json;
use tasklib::{Error, SubmitOptions, TaskContext, TaskError, TaskState};

use crate::common::{SendEmail, TestResult, count_rows, email, raw, setup};

#[tokio::test]
async fn submit_stores_a_pending_task_with_defaults() -> TestResult {
    let env = setup().await?;
    let id = env.tasks.submit(email(1)).await?;
    let task = env.tasks.get_task(id).await?.ok_or("task not found")?;
    assert_eq!(task.name, "send_email");
    assert_eq!(task.queue, "default");
    assert_eq!(task.state, TaskState::Pending);
    assert_eq!(
        task.args,
        json!({"to": "user1@example.com", "subject": "Hello #1"})
    );
    assert_eq!(task.max_retries, 3);
    assert_eq!(task.retry_count, 0);
    assert_eq!(task.priority, 0);
    assert_eq!(task.tags, json!({}));
    assert!(task.scheduled_at <= chrono::Utc::now() + chrono::Duration::seconds(1));
    assert_eq!(id.get_version_num(), 7, "ids are time-ordered v7");
    Ok(())
}

#[tokio::test]
async fn options_are_stored() -> TestResult {
    let env = setup().await?;
    let before = chrono::Utc::now();
    let id = env
        .tasks
        .submit_with(
            email(2),
            SubmitOptions::new()
                .delay(Duration::from_secs(60))
                .priority(10)
                .queue("mail")
                .tag("batch", "weekly")
                .tag("n", 3)
                .max_retries(7)
                .timeout(Duration::from_millis(1500)),
        )
        .await?;
    let task = env.tasks.get_task(id).await?.ok_or("task not found")?;
    assert_eq!(task.priority, 10);
    assert_eq!(task.queue, "mail");
    assert_eq!(task.tags, json!({"batch": "weekly", "n": 3}));
    assert_eq!(task.max_retries, 7);
    assert_eq!(task.timeout_seconds, Some(1.5));
    let delay = task.scheduled_at - before;
    assert!(
        delay >= chrono::Duration::seconds(59) && delay <= chrono::Duration::seconds(70),
        "{delay}"
    );

    let at = chrono::Utc::now() + chrono::Duration::hours(3);
    let id = env
        .tasks
        .submit_with(email(3), SubmitOptions::new().scheduled_at(at))
        .await?;
    let task = env.tasks.get_task(id).await?.ok_or("task not found")?;
    assert!(
        (task.scheduled_at - at).num_milliseconds().abs() < 2,
        "{} vs {at}",
        task.scheduled_at
    );
    Ok(())
}

#[tokio::test]
async fn invalid_arguments_are_rejected_with_field_errors_and_nothing_is_written() -> TestResult {
    let env = setup().await?;
    let bad = SendEmail {
        to: "not-an-email".into(),
        subject: String::new(),
    };
    let err = env
        .tasks
        .submit(bad)
        .await
        .err()
        .ok_or("should be rejected")?;
    assert!(err.is_invalid_input());
    let fields = err
        .validation_errors()
        .ok_or("expected validation errors")?
        .field_errors();
    assert!(fields.contains_key("to"), "{fields:?}");
    assert!(fields.contains_key("subject"), "{fields:?}");
    assert!(err.to_string().contains("send_email"));
    assert_eq!(count_rows(&env.db).await?, 0);
    Ok(())
}

#[tokio::test]
async fn submit_in_transaction_exists_only_if_it_commits() -> TestResult {
    let env = setup().await?;
    let txn = env.tasks.db()?.begin().await?;
    let kept = env
        .tasks
        .submit_in(&txn, email(1), SubmitOptions::new())
        .await?;
    assert!(
        env.tasks.get_task(kept).await?.is_none(),
        "invisible before commit"
    );
    txn.commit().await?;
    assert!(
        env.tasks.get_task(kept).await?.is_some(),
        "visible after commit"
    );

    let txn = env.tasks.db()?.begin().await?;
    let dropped = env
        .tasks
        .submit_in(&txn, email(2), SubmitOptions::new())
        .await?;
    txn.rollback().await?;
    assert!(
        env.tasks.get_task(dropped).await?.is_none(),
        "gone after rollback"
    );
    assert_eq!(count_rows(&env.db).await?, 1);
    Ok(())
}

#[tokio::test]
async fn bulk_submit_writes_all_in_one_statement() -> TestResult {
    let env = setup().await?;
    let ids = env
        .tasks
        .submit_many((0..500).map(email), SubmitOptions::new().tag("batch", "b1"))
        .await?;
    assert_eq!(ids.len(), 500);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 500);
    assert_eq!(count_rows(&env.db).await?, 500);
    let client = raw(&env.db).await?;
    // One INSERT statement: every row got the same transaction id.
    let xids: i64 = client
        .query_one("SELECT count(DISTINCT xmin::text) FROM tasks", &[])
        .await?
        .get(0);
    assert_eq!(xids, 1);
    Ok(())
}

#[tokio::test]
async fn bulk_submit_with_one_bad_item_writes_nothing() -> TestResult {
    let env = setup().await?;
    let mut items: Vec<SendEmail> = (0..10).map(email).collect();
    items[6].to = "broken".into();
    let err = env
        .tasks
        .submit_many(items, SubmitOptions::new())
        .await
        .err()
        .ok_or("should fail")?;
    assert!(
        matches!(err, Error::InvalidArgs { index: Some(6), .. }),
        "{err:?}"
    );

    let mut items: Vec<SendEmail> = (0..10).map(email).collect();
    items[3].subject = "nul \u{0} inside".into();
    let err = env
        .tasks
        .submit_many(items, SubmitOptions::new())
        .await
        .err()
        .ok_or("should fail")?;
    assert!(
        matches!(err, Error::NulCharacter { ref path, .. } if path == "/subject"),
        "{err:?}"
    );
    assert_eq!(count_rows(&env.db).await?, 0);
    Ok(())
}

#[tokio::test]
async fn a_bulk_submit_the_database_refuses_writes_nothing() -> TestResult {
    // A rule of the application's that one row breaks: the server refuses the whole batch,
    // small or large, and the next batch is written whole.
    let env = setup().await?;
    raw(&env.db)
        .await?
        .batch_execute(
            "ALTER TABLE tasks ADD CONSTRAINT no_user_7 CHECK (args->>'to' <> 'user7@example.com')",
        )
        .await?;
    for size in [10, 100] {
        let err = env
            .tasks
            .submit_many((0..size).map(email), SubmitOptions::new())
            .await
            .err()
            .ok_or("should fail")?;
        assert!(matches!(err, Error::Database(_)), "{size} rows: {err:?}");
        assert!(
            format!("{err:?}").contains("no_user_7"),
            "{size} rows: {err:?}"
        );
        assert_eq!(count_rows(&env.db).await?, 0, "{size} rows");
    }
    let ids = env
        .tasks
        .submit_many((8..108).map(email), SubmitOptions::new())
        .await?;
    assert_eq!(ids.len(), 100);
    assert_eq!(count_rows(&env.db).await?, 100);
    Ok(())
}

#[tokio::test]
async fn nul_characters_and_oversized_arguments_get_clear_errors() -> TestResult {
    let env = crate::common::setup_with(|b| b.max_args_bytes(1024)).await?;
    let err = env
        .tasks
        .submit(SendEmail {
            to: "a@example.com".into(),
            subject: "bad\u{0}byte".into(),
        })
        .await
        .err()
        .ok_or("should fail")?;
    assert!(matches!(err, Error::NulCharacter { .. }), "{err:?}");
    assert!(err.to_string().contains("U+0000"), "{err}");

    let err = env
        .tasks
        .submit(SendEmail {
            to: "a@example.com".into(),
            subject: "x".repeat(200),
        })
        .await;
    assert!(err.is_ok(), "200 characters fit in 1 KiB");
    let err = env
        .tasks
        .submit(crate::common::job(&"y".repeat(2000)))
        .await
        .err()
        .ok_or("should fail")?;
    assert!(
        matches!(err, Error::ArgsTooLarge { limit: 1024, size, .. } if size > 2000),
        "{err:?}"
    );

    let err = env
        .tasks
        .submit_with(
            email(1),
            SubmitOptions::new().tags(json!(["not", "an", "object"])),
        )
        .await
        .err()
        .ok_or("should fail")?;
    assert!(
        matches!(err, Error::InvalidOption { option: "tags", .. }),
        "{err:?}"
    );
    assert_eq!(count_rows(&env.db).await?, 1);
    Ok(())
}

#[tokio::test]
async fn submit_by_name_checks_the_registered_type() -> TestResult {
    let env = setup().await?;
    env.tasks
        .register(|_: SendEmail, _: TaskContext| async { Ok::<_, TaskError>(true) })?;
    let id = env
        .tasks
        .submit_json(
            "send_email",
            json!({"to": "ada@example.com", "subject": "Hi"}),
            SubmitOptions::new().priority(3),
        )
        .await?;
    let task = env.tasks.get_task(id).await?.ok_or("not found")?;
    assert_eq!(task.priority, 3);
    assert_eq!(task.args_as::<SendEmail>()?.to, "ada@example.com");

    let wrong_type = env
        .tasks
        .submit_json(
            "send_email",
            json!({"to": 42, "subject": "Hi"}),
            SubmitOptions::new(),
        )
        .await
        .err()
        .ok_or("should fail")?;
    assert!(
        matches!(wrong_type, Error::ArgsMismatch { .. }),
        "{wrong_type:?}"
    );

    let invalid = env
        .tasks
        .submit_json(
            "send_email",
            json!({"to": "nope", "subject": "Hi"}),
            SubmitOptions::new(),
        )
        .await
        .err()
        .ok_or("should fail")?;
    assert!(invalid.validation_errors().is_some(), "{invalid:?}");

    let unknown = env
        .tasks
        .submit_json("no_such_task", json!({}), SubmitOptions::new())
        .await
        .err()
        .ok_or("should fail")?;
    assert!(matches!(unknown, Error::UnknownTask { ref name } if name == "no_such_task"));
    assert_eq!(count_rows(&env.db).await?, 1);
    Ok(())
}

#[tokio::test]
async fn registry_lists_types_and_refuses_duplicates() -> TestResult {
    let env = setup().await?;
    env.tasks
        .register(|_: SendEmail, _: TaskContext| async { Ok::<_, TaskError>(true) })?;
    env.tasks
        .register_blocking(|job: crate::common::Job, _: TaskContext| {
            Ok::<_, TaskError>(job.label)
        })?;
    let dup = env
        .tasks
        .register(|_: SendEmail, _: TaskContext| async { Ok::<_, TaskError>(false) });
    assert!(matches!(dup, Err(Error::DuplicateTask { .. })));
    let infos = env.tasks.get_registered_tasks();
    let names: Vec<_> = infos
        .iter()
        .map(|i| (i.name.as_str(), i.blocking))
        .collect();
    assert_eq!(names, vec![("job", true), ("send_email", false)]);
    Ok(())
}

#[tokio::test]
async fn bulk_and_single_submits_store_the_same_options() -> TestResult {
    // Bulk rows travel as typed arrays with absent values encoded (no timeout, no
    // `scheduled_at`); single rows as plain parameters. Both must store the same row.
    let env = setup().await?;
    let at = chrono::Utc::now() + chrono::Duration::hours(3);
    let cases = [
        SubmitOptions::new(),
        SubmitOptions::new()
            .delay(Duration::from_secs(60))
            .priority(-4)
            .queue("mail")
            .tag("batch", "weekly")
            .max_retries(0)
            .timeout(Duration::from_millis(1500)),
        SubmitOptions::new().scheduled_at(at),
    ];
    for options in cases {
        let single = env.tasks.submit_with(email(1), options.clone()).await?;
        let mut bulk = env
            .tasks
            .submit_many([email(2), email(3)], options.clone())
            .await?;
        // And a batch the size of an application's bulk import.
        bulk.extend(
            env.tasks
                .submit_many((10..110).map(email), options.clone())
                .await?,
        );
        let single = env.tasks.get_task(single).await?.ok_or("single missing")?;
        for id in bulk {
            let row = env.tasks.get_task(id).await?.ok_or("bulk row missing")?;
            assert_eq!(row.queue, single.queue, "{options:?}");
            assert_eq!(row.priority, single.priority, "{options:?}");
            assert_eq!(row.max_retries, single.max_retries, "{options:?}");
            assert_eq!(row.timeout_seconds, single.timeout_seconds, "{options:?}");
            assert_eq!(row.tags, single.tags, "{options:?}");
            assert_eq!(row.state, single.state, "{options:?}");
            // Delays count from the database's clock at each insert: a few ms apart.
            let apart = (row.scheduled_at - single.scheduled_at)
                .num_milliseconds()
                .abs();
            assert!(apart < 5_000, "{options:?}: scheduled {apart} ms apart");
        }
    }
    Ok(())
}
