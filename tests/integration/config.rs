//! Connecting: errors are typed and never show the password.

use tasklib::{Config, Error, TaskLib};

use crate::common::TestResult;

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
