//! Through a real PgBouncer in transaction pooling mode: tasklib's statements work there with
//! `transaction_pooler` on, `LISTEN` goes to the `listen_url`, and without one workers and
//! result waits poll, after one warning.

use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DbBackend, Statement};
use tasklib::{Chain, Config, ConfigBuilder, SubmitOptions, TaskContext, TaskError, TaskLib};
use tasklib_test_utils::{TestDatabase, TestPgBouncer};

use crate::common::{Job, LogCapture, PATIENCE, TestResult, job, raw};

/// A `TaskLib` through `bouncer`, whose `job` handler answers "<label> done".
async fn pooled(
    bouncer: &TestPgBouncer,
    adjust: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> TestResult<TaskLib> {
    let builder = Config::builder(bouncer.url())
        .transaction_pooler(true)
        .max_connections(6);
    let tasks = TaskLib::connect_with(adjust(builder).build()?).await?;
    tasks.register(|job: Job, _: TaskContext| async move {
        Ok::<_, TaskError>(format!("{} done", job.label))
    })?;
    Ok(tasks)
}

/// How many transactions PgBouncer has passed to the server so far.
async fn pooled_transactions(bouncer: &TestPgBouncer) -> TestResult<i64> {
    let (client, connection) =
        tokio_postgres::connect(&bouncer.admin_url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    // The admin console speaks the simple protocol only.
    let messages = client.simple_query("SHOW STATS").await?;
    let mut total = 0;
    for message in messages {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = message
            && row.get("database") != Some("pgbouncer")
        {
            total += row
                .get("total_xact_count")
                .and_then(|n| n.parse::<i64>().ok())
                .ok_or("SHOW STATS has no total_xact_count")?;
        }
    }
    Ok(total)
}

/// The control: this PgBouncer really does break what a driver's default, named prepared
/// statements, needs. Two clients share its one server connection; the second prepares the
/// same statement name on it.
#[tokio::test]
async fn named_prepared_statements_collide_through_this_pooler() -> TestResult {
    let db = TestDatabase::new().await?;
    let bouncer = TestPgBouncer::start(db.url(), 1)?;
    let mut errors = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..2 {
        let mut options = ConnectOptions::new(bouncer.url());
        options.max_connections(1).sqlx_logging(false);
        options.map_sqlx_postgres_opts(|pg| pg.extra_float_digits(None));
        clients.push(Database::connect(options).await?);
    }
    for client in &clients {
        let select =
            Statement::from_sql_and_values(DbBackend::Postgres, "SELECT $1::int", [1.into()]);
        if let Err(error) = client.query_one_raw(select).await {
            errors.push(error.to_string());
        }
    }
    assert!(
        errors.iter().any(|e| e.contains("already exists")),
        "expected a prepared statement collision, got {errors:?}"
    );
    Ok(())
}

#[tokio::test]
async fn tasks_results_and_chains_go_through_the_pooler_and_pickup_listens_directly() -> TestResult
{
    let db = TestDatabase::new().await?;
    let bouncer = TestPgBouncer::start(db.url(), 2)?;
    // A minute-long poll: a worker picks tasks up in time only if its LISTEN works.
    let tasks = pooled(&bouncer, |b| {
        b.listen_url(db.url())
            .poll_interval(Duration::from_secs(60))
    })
    .await?;
    let before = pooled_transactions(&bouncer).await?;
    let pool = tasks.spawn_workers(4)?;

    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push((
            format!("one {n}"),
            tasks.submit(job(&format!("one {n}"))).await?,
        ));
    }
    let many = tasks
        .submit_many(
            (0..20).map(|n| job(&format!("many {n}"))),
            SubmitOptions::new(),
        )
        .await?;
    ids.extend(
        many.into_iter()
            .enumerate()
            .map(|(n, id)| (format!("many {n}"), id)),
    );
    for (label, id) in &ids {
        let result = tasks.wait_result(*id, PATIENCE).await?;
        assert_eq!(result.value_as::<String>()?, format!("{label} done"));
    }
    let chain = tasks
        .submit_chain(Chain::new(job("first")).then::<Job>([]))
        .await?;
    let last = tasks.wait_result(chain.id, PATIENCE).await?;
    // Celery's rule: the previous output goes in front of the next step's arguments.
    assert_eq!(last.value_as::<String>()?, "first done done");

    let counts = tasks.count_tasks().await?;
    assert_eq!(counts.completed, 42);
    pool.shutdown().await?;
    // Everything above went through PgBouncer: hundreds of transactions, not a handful.
    let through = pooled_transactions(&bouncer).await? - before;
    assert!(
        through > 100,
        "only {through} transactions went through the pooler"
    );
    Ok(())
}

#[tokio::test]
async fn a_schema_of_its_own_works_through_the_pooler() -> TestResult {
    let db = TestDatabase::empty().await?;
    let bouncer = TestPgBouncer::start(db.url(), 2)?;
    let tasks = pooled(&bouncer, |b| b.schema("pooled").listen_url(db.url())).await?;
    let pool = tasks.spawn_workers(2)?;
    let id = tasks.submit(job("schema")).await?;
    let result = tasks.wait_result(id, PATIENCE).await?;
    assert_eq!(result.value_as::<String>()?, "schema done");
    pool.shutdown().await?;

    let client = raw(&db).await?;
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM pooled.tasks WHERE state = 'completed'),
                    to_regclass('public.tasks') IS NULL",
            &[],
        )
        .await?;
    assert_eq!(row.get::<_, i64>(0), 1);
    assert!(row.get::<_, bool>(1), "nothing may be created in public");
    Ok(())
}

// A current-thread runtime: every task runs on this thread, where the capturing subscriber is
// the default.
#[tokio::test(flavor = "current_thread")]
async fn without_a_listen_url_workers_and_waits_poll_after_one_warning() -> TestResult {
    let (capture, _guard) = LogCapture::install(tracing::Level::WARN);

    let db = TestDatabase::new().await?;
    let bouncer = TestPgBouncer::start(db.url(), 2)?;
    let tasks = pooled(&bouncer, |b| b.poll_interval(Duration::from_millis(200))).await?;
    let pool = tasks.spawn_workers(2)?;
    let ids = tasks
        .submit_many(
            (0..5).map(|n| job(&format!("polled {n}"))),
            SubmitOptions::new(),
        )
        .await?;
    for id in ids {
        tasks.wait_result(id, PATIENCE).await?;
    }
    // Nobody listens: no session on the server ever ran LISTEN.
    let client = raw(&db).await?;
    let listening: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(listening, 0);
    pool.shutdown().await?;

    let log = capture.text();
    let warnings = log.matches("transaction pooler without listen_url").count();
    assert_eq!(warnings, 1, "expected one warning, got:\n{log}");
    // And nothing else went wrong on the way.
    assert!(!log.contains("ERROR"), "{log}");
    Ok(())
}
