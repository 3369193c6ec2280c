//! Connecting: errors are typed and never show the password; worker settings are checked.

use std::time::Duration;

use tasklib::{ClaimAhead, Config, Error, MAX_SLOTS, TaskLib, TaskWorker};

use crate::common::{Job, TestResult};

#[tokio::test]
async fn unreachable_database_is_a_connect_error_without_the_password() -> TestResult {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let config = Config::builder("postgres://app:hunter2-secret@127.0.0.1:1/app")
        .connect_timeout(std::time::Duration::from_secs(1))
        .build()?;
    let err = TaskLib::connect_with(config)
        .await
        .err()
        .ok_or("connect should fail")?;
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    let mut text = format!("{err} {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(&format!(" {cause} {cause:?}"));
        source = cause.source();
    }
    assert!(!text.contains("hunter2-secret"), "password leaked: {text}");
    assert!(
        text.contains("app:***@127.0.0.1:1"),
        "URL should be shown redacted: {text}"
    );
    Ok(())
}

#[tokio::test]
async fn config_debug_hides_the_password() -> TestResult {
    let config = Config::builder("postgres://app:hunter2-secret@db:5432/app").build()?;
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2-secret"));
    assert!(shown.contains("***"));
    Ok(())
}

#[tokio::test]
async fn worker_settings_that_make_no_sense_are_refused_by_name() -> TestResult {
    let env = crate::common::setup().await?;
    let refused = |result: tasklib::Result<tasklib::WorkerPool>| match result {
        Err(Error::InvalidConfig { field, .. }) => Some(field),
        _ => None,
    };
    assert_eq!(
        refused(TaskWorker::new(&env.tasks).spawn()),
        Some("worker"),
        "no task type registered"
    );
    env.tasks
        .register(|job: Job, _: tasklib::TaskContext| async move {
            Ok::<_, tasklib::TaskError>(job.label)
        })?;
    assert_eq!(
        refused(TaskWorker::new(&env.tasks).concurrency(0).spawn()),
        Some("concurrency")
    );
    assert_eq!(
        refused(
            TaskWorker::new(&env.tasks)
                .poll_interval(Duration::ZERO)
                .spawn()
        ),
        Some("poll_interval")
    );
    assert_eq!(
        refused(
            TaskWorker::new(&env.tasks)
                .claim_ahead(ClaimAhead::Fixed(MAX_SLOTS + 1))
                .spawn()
        ),
        Some("claim_ahead")
    );
    let pool = TaskWorker::new(&env.tasks)
        .claim_ahead(ClaimAhead::Fixed(MAX_SLOTS))
        .spawn()?;
    pool.shutdown().await?;
    Ok(())
}
