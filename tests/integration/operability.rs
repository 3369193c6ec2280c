//! What a person reads when something is wrong: errors in `Debug` form (what `main` prints),
//! registrations that could never be served, and a task that failed for good.

use tasklib::{Config, Error, TaskLib};
use tasklib_test_utils::TestDatabase;

use crate::common::{Job, TestResult, setup};

#[tokio::test]
async fn a_missing_database_reads_as_one_line_even_in_debug_form() -> TestResult {
    let db = TestDatabase::new().await?;
    let (base, _) = db
        .url()
        .rsplit_once('/')
        .ok_or("test database URL without a path")?;
    let missing = format!("{base}/no_such_database_here");
    let error = TaskLib::connect_with(Config::builder(&missing).build()?)
        .await
        .err()
        .ok_or("connecting to a missing database succeeded")?;
    let debug = format!("{error:?}");
    assert!(matches!(error, Error::Connect { .. }), "{debug}");
    assert!(!debug.contains('\n'), "{debug}");
    assert!(debug.contains("no_such_database_here"), "{debug}");
    assert!(debug.contains("does not exist"), "{debug}");
    assert!(!debug.contains("postinit.c"), "{debug}");
    assert_eq!(debug, crate::common::one_line_chain(&error));
    Ok(())
}

#[tokio::test]
async fn registering_while_a_pool_runs_is_refused_and_allowed_again_after_it_stops() -> TestResult {
    let env = setup().await?;
    env.tasks
        .register(|job: Job, _: tasklib::TaskContext| async move {
            Ok::<_, tasklib::TaskError>(job.label)
        })?;
    let pool = env.tasks.spawn_workers(1)?;
    let late = env.tasks.register(
        |email: crate::common::SendEmail, _: tasklib::TaskContext| async move {
            Ok::<_, tasklib::TaskError>(!email.to.is_empty())
        },
    );
    match late {
        Err(Error::RegisteredWhileRunning { name }) => assert_eq!(name, "send_email"),
        other => panic!("expected RegisteredWhileRunning, got {other:?}"),
    }
    pool.shutdown().await?;
    env.tasks.register(
        |email: crate::common::SendEmail, _: tasklib::TaskContext| async move {
            Ok::<_, tasklib::TaskError>(!email.to.is_empty())
        },
    )?;
    Ok(())
}

#[tokio::test]
async fn a_refused_connection_says_so_at_once() -> TestResult {
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let started = std::time::Instant::now();
    let error = TaskLib::connect_with(
        Config::builder(format!("postgres://app:secret@127.0.0.1:{port}/app"))
            .connect_timeout(std::time::Duration::from_secs(120))
            .build()?,
    )
    .await
    .err()
    .ok_or("connected to a closed port")?;
    let took = started.elapsed();
    let line = format!("{error:?}");
    assert!(line.to_lowercase().contains("refused"), "{line}");
    assert!(!line.contains("secret"), "{line}");
    // Refused is an answer: no waiting out the two-minute timeout.
    assert!(took < std::time::Duration::from_secs(60), "took {took:?}");
    Ok(())
}

#[tokio::test]
async fn a_server_error_at_query_time_reads_as_one_line_without_the_servers_source_location()
-> TestResult {
    let env = setup().await?;
    // Someone dropped the table under a running application.
    crate::common::raw(&env.db)
        .await?
        .batch_execute("DROP TABLE tasks CASCADE")
        .await?;
    let error = env
        .tasks
        .get_task(uuid::Uuid::nil())
        .await
        .err()
        .ok_or("reading a dropped table succeeded")?;
    let debug = format!("{error:?}");
    assert!(!debug.contains('\n'), "{debug}");
    assert!(
        debug.contains("relation \"tasks\" does not exist"),
        "{debug}"
    );
    for server_internal in ["line", "routine", "parse_relation", ".c\""] {
        assert!(
            !debug.contains(server_internal),
            "{server_internal} in {debug}"
        );
    }
    Ok(())
}
