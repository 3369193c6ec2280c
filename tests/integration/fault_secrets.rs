//! Scenario 8, secrets: the database password never shows — not in `Debug` output, not in
//! what tasklib logs (every level, every target, through a listener reconnect and a failing
//! task), not in the errors of a failed connection, not in stored task errors.

use std::time::Duration;

use tasklib::{
    Config, Error, TaskContext, TaskError, TaskLib, TaskOutcome, TaskWorker, WorkerEvent,
};
use tasklib_test_utils::TestDatabase;

use crate::common::{Job, LogCapture, TestResult, finished, job, listener_up, raw, wait_for};

/// What to search for: it appears in both the raw and the percent-encoded password.
const NEEDLE: &str = "Sup3rS3cr3t";
/// A password that needs percent-encoding in a URL (`/` and `@`).
const PASSWORD: &str = "Sup3rS3cr3t/p@ss";
const ENCODED: &str = "Sup3rS3cr3t%2Fp%40ss";

/// Every rendering of an error: `Display` and `Debug` of it and of each cause.
fn renderings(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = format!("{error}\n{error:?}\n{error:#?}\n");
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!("{cause}\n{cause:?}\n"));
        source = cause.source();
    }
    text
}

fn assert_hidden(what: &str, text: &str) {
    assert!(
        !text.contains(NEEDLE),
        "the password shows in {what}:\n{text}"
    );
}

/// `url` with its user and password replaced.
fn with_credentials(url: &str, user: &str, password: &str) -> TestResult<String> {
    let (scheme, rest) = url.split_once("://").ok_or("not a URL")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    Ok(format!("{scheme}://{user}:{password}@{host}{path}"))
}

// Current-thread runtime: every task of the pool runs on this thread, where the capturing
// subscriber is the default.
#[tokio::test(flavor = "current_thread")]
async fn the_database_password_never_shows_in_debug_output_logs_or_errors() -> TestResult {
    let (capture, _guard) = LogCapture::install(tracing::Level::TRACE);

    // 1. Connections that fail: a closed port, and a URL the driver cannot parse.
    for url in [
        format!("postgres://app:{ENCODED}@127.0.0.1:1/app"),
        format!("postgres://app:{ENCODED}@127.0.0.1:notaport/app"),
        format!("postgres://app:{PASSWORD}@127.0.0.1:1/app"),
    ] {
        let config = Config::builder(url.as_str())
            .connect_timeout(Duration::from_secs(2))
            .build()?;
        assert_hidden("a Config's Debug", &format!("{config:?}"));
        let error = TaskLib::connect_with(config)
            .await
            .err()
            .ok_or("connecting to a closed port succeeded")?;
        assert!(matches!(error, Error::Connect { .. }), "{error:?}");
        assert_hidden("a connection error", &renderings(&error));
    }

    // 2. A working setup whose URL carries a password: a role of its own with that password
    //    (a private test cluster trusts local connections and ignores it, a real server checks
    //    it).
    let db = TestDatabase::new().await?;
    let admin = raw(&db).await?;
    let role = format!("tasklib_secret_{}", &db.name()[db.name().len() - 8..]);
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}';
             GRANT ALL ON SCHEMA public TO {role};
             GRANT ALL ON ALL TABLES IN SCHEMA public TO {role};"
        ))
        .await?;
    let url = with_credentials(db.url(), &role, ENCODED)?;
    let result = run_a_pool_through_trouble(&url).await;
    admin
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role};"))
        .await?;
    let (debug_output, stored_errors) = result?;

    assert_hidden("Debug output", &debug_output);
    assert_hidden("stored task errors", &stored_errors);
    let logs = capture.text();
    assert!(
        logs.contains("notification listener disconnected"),
        "the capture missed the pool's logs:\n{logs}"
    );
    assert_hidden("the logs", &logs);
    Ok(())
}

/// Connects with `url`, runs a pool, fails a task, cuts the listener and lets it reconnect.
/// Returns the `Debug` output of the handles and the errors stored on tasks.
async fn run_a_pool_through_trouble(url: &str) -> TestResult<(String, String)> {
    let tasks = TaskLib::connect_with(
        Config::builder(url)
            .max_connections(3)
            .base_retry_delay(Duration::from_millis(50))
            .build()?,
    )
    .await?;
    tasks.register(|job: Job, _: TaskContext| async move {
        if job.label == "fail" {
            Err(TaskError::permanent("the handler gave up"))
        } else {
            Ok(job.label)
        }
    })?;
    let pool = TaskWorker::new(&tasks)
        .poll_interval(Duration::from_millis(100))
        .spawn()?;
    let mut events = pool.subscribe();
    listener_up(&mut events).await?;
    let failing = tasks.submit(job("fail")).await?;
    assert_eq!(finished(&mut events, failing).await?, TaskOutcome::Failed);

    let (admin, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
            &[],
        )
        .await?;
    wait_for(&mut events, |e| {
        matches!(e, WorkerEvent::ListenerDisconnected { .. }).then_some(())
    })
    .await?;
    listener_up(&mut events).await?;
    let ok = tasks.submit(job("ok")).await?;
    assert_eq!(finished(&mut events, ok).await?, TaskOutcome::Completed);

    let debug_output = format!(
        "{tasks:?}\n{tasks:#?}\n{pool:?}\n{:?}\n{:?}",
        tasks.config(),
        tasks.config().database_url()
    );
    let stored_errors: Vec<String> = admin
        .query("SELECT coalesce(error, '') FROM tasks", &[])
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    pool.shutdown().await?;
    drop(tasks);
    Ok((debug_output, stored_errors.join("\n")))
}
