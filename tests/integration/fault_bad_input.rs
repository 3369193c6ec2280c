//! Scenario 6, bad input at submit: every kind of input tasklib refuses gets its own error,
//! counts as invalid input (`is_invalid_input`, a 4xx for an HTTP handler), and writes
//! nothing: the row count is the same before and after, and a transaction the bad submit ran
//! in is still usable.

use std::fmt::Debug;
use std::time::Duration;

use sea_orm::TransactionTrait;
use serde_json::json;
use tasklib::{Error, SubmitOptions, TaskContext, TaskError};

use crate::common::{Env, Job, SendEmail, TestResult, count_rows, email, job, setup_with};

/// Checks that `result` is the error `expected` describes, and that nothing was written.
async fn refused<T: Debug>(
    env: &Env,
    rows_before: i64,
    case: &str,
    result: tasklib::Result<T>,
    expected: impl FnOnce(&Error) -> bool,
) -> TestResult {
    let error = match result {
        Ok(value) => return Err(format!("{case}: accepted ({value:?})").into()),
        Err(error) => error,
    };
    assert!(expected(&error), "{case}: unexpected error {error:?}");
    assert!(error.is_invalid_input(), "{case}: {error:?}");
    assert_eq!(
        count_rows(&env.db).await?,
        rows_before,
        "{case}: a row was written"
    );
    Ok(())
}

#[tokio::test]
async fn each_kind_of_bad_input_gets_its_own_error_and_writes_nothing() -> TestResult {
    let env = setup_with(|b| b.max_args_bytes(1024)).await?;
    env.tasks
        .register(|_: SendEmail, _: TaskContext| async { Ok::<_, TaskError>(true) })?;
    env.tasks
        .register(|job: Job, _: TaskContext| async move { Ok::<_, TaskError>(job.label) })?;
    env.tasks.submit(email(0)).await?;
    let before = count_rows(&env.db).await?;
    assert_eq!(before, 1);
    let tasks = &env.tasks;
    let none = SubmitOptions::new;

    // Arguments that fail their validator rules: typed, by name, and in a batch.
    let invalid = SendEmail {
        to: "not-an-email".into(),
        subject: String::new(),
    };
    refused(
        &env,
        before,
        "validation",
        tasks.submit(invalid.clone()).await,
        |e| {
            e.validation_errors().is_some_and(|v| {
                let fields = v.field_errors();
                fields.contains_key("to") && fields.contains_key("subject")
            })
        },
    )
    .await?;
    refused(
        &env,
        before,
        "validation by name",
        tasks
            .submit_json("send_email", serde_json::to_value(&invalid)?, none())
            .await,
        |e| matches!(e, Error::InvalidArgs { task, .. } if task == "send_email"),
    )
    .await?;
    let mut batch: Vec<SendEmail> = (1..=5).map(email).collect();
    batch[3] = invalid;
    refused(
        &env,
        before,
        "validation in a batch",
        tasks.submit_many(batch, none()).await,
        |e| matches!(e, Error::InvalidArgs { index: Some(3), .. }),
    )
    .await?;

    // JSON of the wrong shape through the name-based path.
    for (case, args) in [
        ("a number for a string", json!({"to": 42, "subject": "Hi"})),
        ("a missing field", json!({"to": "ada@example.com"})),
        ("a string for the object", json!("ada@example.com")),
        ("null for the object", json!(null)),
    ] {
        refused(
            &env,
            before,
            case,
            tasks.submit_json("send_email", args, none()).await,
            |e| matches!(e, Error::ArgsMismatch { task, .. } if task == "send_email"),
        )
        .await?;
    }

    // A name nobody registered.
    refused(
        &env,
        before,
        "unregistered name",
        tasks
            .submit_json(
                "send_emial",
                json!({"to": "a@b.co", "subject": "Hi"}),
                none(),
            )
            .await,
        |e| matches!(e, Error::UnknownTask { name } if name == "send_emial"),
    )
    .await?;

    // U+0000, which jsonb cannot store: in arguments (typed and by name), tags, queue.
    let nul = SendEmail {
        to: "ada@example.com".into(),
        subject: "nul \u{0} inside".into(),
    };
    refused(
        &env,
        before,
        "NUL in arguments",
        tasks.submit(nul.clone()).await,
        |e| matches!(e, Error::NulCharacter { path, .. } if path == "/subject"),
    )
    .await?;
    refused(
        &env,
        before,
        "NUL in arguments by name",
        tasks
            .submit_json("send_email", serde_json::to_value(&nul)?, none())
            .await,
        |e| matches!(e, Error::NulCharacter { path, .. } if path == "/subject"),
    )
    .await?;
    refused(
        &env,
        before,
        "NUL in a tag",
        tasks
            .submit_with(email(6), none().tag("batch", "a\u{0}b"))
            .await,
        |e| matches!(e, Error::InvalidOption { option: "tags", .. }),
    )
    .await?;
    refused(
        &env,
        before,
        "NUL in the queue",
        tasks.submit_with(email(7), none().queue("q\u{0}")).await,
        |e| {
            matches!(
                e,
                Error::InvalidOption {
                    option: "queue",
                    ..
                }
            )
        },
    )
    .await?;

    // Arguments past the configured limit (1 KiB here).
    refused(
        &env,
        before,
        "oversized",
        tasks.submit(job(&"x".repeat(2_000))).await,
        |e| matches!(e, Error::ArgsTooLarge { size, limit: 1024, .. } if *size > 2_000),
    )
    .await?;
    refused(
        &env,
        before,
        "oversized by name",
        tasks
            .submit_json("job", json!({"label": "y".repeat(2_000)}), none())
            .await,
        |e| matches!(e, Error::ArgsTooLarge { task, limit: 1024, .. } if task == "job"),
    )
    .await?;

    // Tags that are not a JSON object, and other bad options.
    for tags in [json!(["a", "b"]), json!("batch"), json!(7), json!(null)] {
        refused(
            &env,
            before,
            &format!("tags {tags}"),
            tasks.submit_with(email(8), none().tags(tags)).await,
            |e| matches!(e, Error::InvalidOption { option: "tags", .. }),
        )
        .await?;
    }
    refused(
        &env,
        before,
        "empty queue",
        tasks.submit_with(email(9), none().queue(" ")).await,
        |e| {
            matches!(
                e,
                Error::InvalidOption {
                    option: "queue",
                    ..
                }
            )
        },
    )
    .await?;
    refused(
        &env,
        before,
        "zero timeout",
        tasks
            .submit_with(email(10), none().timeout(Duration::ZERO))
            .await,
        |e| {
            matches!(
                e,
                Error::InvalidOption {
                    option: "timeout",
                    ..
                }
            )
        },
    )
    .await?;

    // Refused before any SQL runs, so the caller's transaction is not poisoned: it goes on
    // and commits its good work.
    let txn = tasks.db()?.begin().await?;
    let bad = tasks.submit_in(&txn, job(&"z".repeat(2_000)), none()).await;
    assert!(matches!(bad, Err(Error::ArgsTooLarge { .. })), "{bad:?}");
    let bad = tasks
        .submit_json_in(&txn, "send_email", json!({"to": 1}), none())
        .await;
    assert!(matches!(bad, Err(Error::ArgsMismatch { .. })), "{bad:?}");
    tasks.submit_in(&txn, email(11), none()).await?;
    txn.commit().await?;
    assert_eq!(count_rows(&env.db).await?, before + 1);
    Ok(())
}
