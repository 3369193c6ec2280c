//! TLS to PostgreSQL (`sslmode`, `sslrootcert`), against real servers started by the test:
//! one with `ssl=on` and a certificate made in the test, one without TLS. The pool, the
//! workers' `LISTEN` and the result waiters' `LISTEN` all follow the settings; refusals are
//! one line that says what to change, without the password.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use tasklib::{Config, Error, SslMode, TaskContext, TaskLib};
use tasklib_test_utils::TestTlsCluster;

use crate::common::{Job, TestResult, job, listener_up};

/// `url` with `params` appended as its query.
fn with(url: &str, params: &str) -> String {
    format!("{url}?{params}")
}

fn root(path: &std::path::Path) -> String {
    format!("sslrootcert={}", path.display())
}

async fn connect(url: &str) -> Result<TaskLib, Error> {
    TaskLib::connect_with(Config::builder(url).max_connections(3).build()?).await
}

/// The TLS refusal's one line, checked for what every such line must be.
fn refusal(result: Result<TaskLib, Error>, password: &str) -> TestResult<String> {
    let error = match result {
        Ok(_) => return Err("connected where TLS should have refused".into()),
        Err(error) => error,
    };
    let line = error.to_string();
    println!("{line}");
    assert!(
        matches!(error, Error::Tls { .. }),
        "not Error::Tls: {error:?}"
    );
    assert!(!line.contains('\n'), "more than one line: {line}");
    let debug = format!("{error:?}");
    assert!(
        !debug.contains('\n'),
        "Debug is more than one line: {debug}"
    );
    for shown in [&line, &debug] {
        assert!(!shown.contains(password), "the password shows: {shown}");
    }
    Ok(line)
}

/// Counts of this database's client sessions: (with TLS, all, LISTEN sessions with TLS).
async fn sessions(tasks: &TaskLib) -> TestResult<(i64, i64, i64)> {
    let row = tasks
        .db()?
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) FILTER (WHERE s.ssl) AS tls, count(*) AS total,
                    count(*) FILTER (WHERE s.ssl AND a.query LIKE 'LISTEN%') AS tls_listen
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
             WHERE a.datname = current_database() AND a.backend_type = 'client backend'",
        ))
        .await?
        .ok_or("no row")?;
    Ok((
        row.try_get("", "tls")?,
        row.try_get("", "total")?,
        row.try_get("", "tls_listen")?,
    ))
}

#[tokio::test]
async fn verify_full_with_the_right_root_runs_tasks_and_listens_over_tls() -> TestResult {
    let cluster = TestTlsCluster::start().await?;
    let db = cluster.create_database().await?;
    let ca = cluster.ca_cert().ok_or("no CA")?;
    let url = with(
        &cluster.url("localhost", &db),
        &format!("sslmode=verify-full&{}", root(ca)),
    );
    // Polling so slow that only notifications (LISTEN over TLS) can make this quick.
    let config = Config::builder(url)
        .max_connections(3)
        .poll_interval(Duration::from_secs(60))
        .build()?;
    let tasks = TaskLib::connect_with(config).await?;
    tasks.register(|job: Job, _: TaskContext| async move {
        Ok::<_, tasklib::TaskError>(format!("done {}", job.label))
    })?;
    let pool = tasks.spawn_workers(2)?;
    let mut events = pool.subscribe();
    listener_up(&mut events).await?;

    let started = Instant::now();
    let id = tasks.submit(job("over tls")).await?;
    let result = tasks.wait_result(id, Duration::from_secs(30)).await?;
    let took = started.elapsed();
    assert_eq!(result.value_as::<String>()?, "done over tls");
    assert!(
        took < Duration::from_secs(10),
        "took {took:?}: the task or its result waited for a poll, so a LISTEN did not work"
    );

    let (tls, total, tls_listen) = sessions(&tasks).await?;
    assert_eq!(tls, total, "every session of the database uses TLS");
    assert_eq!(
        tls_listen, 2,
        "the workers' and the waiter's LISTEN sessions use TLS"
    );
    pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_host_name_the_certificate_does_not_name_is_refused() -> TestResult {
    // The certificate names `localhost` only; the URL says 127.0.0.1.
    let cluster = TestTlsCluster::start_for_hosts(&["localhost"]).await?;
    let db = cluster.create_database().await?;
    let ca = root(cluster.ca_cert().ok_or("no CA")?);
    let url = cluster.url("127.0.0.1", &db);

    let line = refusal(
        connect(&with(&url, &format!("sslmode=verify-full&{ca}"))).await,
        cluster.password(),
    )?;
    assert!(
        line.contains("not valid for the host name `127.0.0.1`"),
        "{line}"
    );
    assert!(line.contains("sslmode=verify-ca"), "{line}");

    // verify-ca checks the chain only, so the same server is accepted by it.
    let tasks = connect(&with(&url, &format!("sslmode=verify-ca&{ca}"))).await?;
    let (tls, total, _) = sessions(&tasks).await?;
    assert_eq!(tls, total);
    Ok(())
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_is_refused() -> TestResult {
    let cluster = TestTlsCluster::start().await?;
    let db = cluster.create_database().await?;
    let other = root(&cluster.unrelated_ca_cert()?);
    let url = cluster.url("localhost", &db);

    let line = refusal(
        connect(&with(&url, &format!("sslmode=verify-full&{other}"))).await,
        cluster.password(),
    )?;
    assert!(
        line.contains("not signed by the CA in sslrootcert"),
        "{line}"
    );
    assert!(line.contains("sslmode=require"), "{line}");

    // As in libpq, `require` with a root certificate checks the chain.
    let line = refusal(
        connect(&with(&url, &format!("sslmode=require&{other}"))).await,
        cluster.password(),
    )?;
    assert!(line.contains("checked as verify-ca"), "{line}");
    assert!(line.contains("leave sslrootcert out"), "{line}");

    // Without sslrootcert, the system's roots do not know the test's CA either.
    let line = refusal(
        connect(&with(&url, "sslmode=verify-ca")).await,
        cluster.password(),
    )?;
    // (Or, on a machine without a CA bundle: the system trusts no root at all.)
    assert!(
        line.contains("not signed by a CA this system trusts")
            || line.contains("this system trusts no root certificates"),
        "{line}"
    );

    // A root file that is not there.
    let line = refusal(
        connect(&with(
            &url,
            "sslmode=verify-full&sslrootcert=/nonexistent/root.crt",
        ))
        .await,
        cluster.password(),
    )?;
    assert!(
        line.contains("cannot read sslrootcert `/nonexistent/root.crt`"),
        "{line}"
    );
    Ok(())
}

#[tokio::test]
async fn require_and_prefer_encrypt_without_a_root() -> TestResult {
    let cluster = TestTlsCluster::start().await?;
    let db = cluster.create_database().await?;
    let url = cluster.url("127.0.0.1", &db);
    for params in ["sslmode=require", "sslmode=prefer", "application_name=x"] {
        let tasks = connect(&with(&url, params)).await?;
        let (tls, total, _) = sessions(&tasks).await?;
        assert!(total >= 1);
        assert_eq!(tls, total, "{params}: every session uses TLS");
    }
    // disable stays plain even where TLS is offered.
    let tasks = connect(&with(&url, "sslmode=disable")).await?;
    let (tls, _, _) = sessions(&tasks).await?;
    assert_eq!(tls, 0, "sslmode=disable uses no TLS");
    Ok(())
}

#[tokio::test]
async fn the_builder_wins_over_the_url() -> TestResult {
    let cluster = TestTlsCluster::start().await?;
    let db = cluster.create_database().await?;
    let ca = cluster.ca_cert().ok_or("no CA")?.to_path_buf();
    let url = with(&cluster.url("localhost", &db), "sslmode=disable");

    // The URL says disable; the builder's verify-full with an unrelated root is what counts.
    let refused = TaskLib::connect_with(
        Config::builder(&url)
            .ssl_mode(SslMode::VerifyFull)
            .ssl_root_cert(cluster.unrelated_ca_cert()?)
            .build()?,
    )
    .await;
    let line = refusal(refused, cluster.password())?;
    assert!(line.contains("sslmode=verify-full"), "{line}");

    let config = Config::builder(&url)
        .max_connections(3)
        .ssl_mode(SslMode::VerifyFull)
        .ssl_root_cert(&ca)
        .build()?;
    assert_eq!(config.ssl_mode(), SslMode::VerifyFull);
    assert_eq!(config.ssl_root_cert(), Some(ca.as_path()));
    let shown = config.database_url().to_string();
    assert!(
        shown.contains("sslmode=verify-full") && !shown.contains("sslmode=disable"),
        "{shown}"
    );
    let tasks = TaskLib::connect_with(config).await?;
    let (tls, total, _) = sessions(&tasks).await?;
    assert_eq!(tls, total);
    Ok(())
}

#[tokio::test]
async fn a_server_without_tls_serves_prefer_and_disable_and_refuses_require() -> TestResult {
    let cluster = TestTlsCluster::start_without_tls().await?;
    let db = cluster.create_database().await?;
    let url = cluster.url("localhost", &db);
    for params in ["sslmode=prefer", "sslmode=disable", "application_name=x"] {
        let tasks = connect(&with(&url, params)).await?;
        let id = tasks.submit(job(params)).await?;
        assert!(tasks.get_task(id).await?.is_some());
        let (tls, _, _) = sessions(&tasks).await?;
        assert_eq!(tls, 0, "{params}");
    }
    for mode in ["require", "verify-full"] {
        let line = refusal(
            connect(&with(&url, &format!("sslmode={mode}"))).await,
            cluster.password(),
        )?;
        assert!(line.contains("the server does not offer TLS"), "{line}");
        assert!(line.contains("sslmode=prefer"), "{line}");
    }
    Ok(())
}
