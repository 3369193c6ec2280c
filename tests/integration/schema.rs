//! A schema of its own: two tasklib installations in two schemas of one database, beside an
//! application table `public.tasks` of another shape, each run their own tasks only, and do
//! not wake each other.

use std::time::Duration;

use sea_orm::TransactionTrait;
use tasklib::{Config, SubmitOptions, TaskContext, TaskError, TaskLib, TaskWorker};
use tasklib_test_utils::TestDatabase;

use crate::common::{Job, PATIENCE, TestResult, job, raw};

/// A `TaskLib` in `schema` whose `job` handler says which worker ran it.
async fn installation(db: &TestDatabase, schema: &str) -> TestResult<TaskLib> {
    let tasks = TaskLib::connect_with(
        Config::builder(db.url())
            .schema(schema)
            .worker_id(format!("worker-{schema}"))
            .poll_interval(Duration::from_secs(60))
            .build()?,
    )
    .await?;
    tasks.register(|job: Job, ctx: TaskContext| async move {
        Ok::<_, TaskError>(format!("{} by {}", job.label, ctx.worker_id()))
    })?;
    Ok(tasks)
}

#[tokio::test]
async fn two_schemas_run_their_own_tasks_beside_an_application_table_named_tasks() -> TestResult {
    let db = TestDatabase::empty().await?;
    let client = raw(&db).await?;
    client
        .batch_execute(
            "CREATE TABLE tasks (title text PRIMARY KEY, done boolean NOT NULL);
             INSERT INTO tasks VALUES ('write the report', false);",
        )
        .await?;
    let alpha = installation(&db, "alpha").await?;
    let beta = installation(&db, "beta").await?;
    assert_eq!(alpha.config().schema(), "alpha");

    let alpha_pool = TaskWorker::new(&alpha).spawn()?;
    let beta_pool = TaskWorker::new(&beta).spawn()?;
    // Idle pools, each with a minute-long poll: only a notification wakes one.
    let a = alpha.submit(job("a")).await?;
    let done = alpha.wait_result(a, PATIENCE).await?;
    assert_eq!(done.value_as::<String>()?, "a by worker-alpha");
    let b = beta.submit(job("b")).await?;
    let done = beta.wait_result(b, PATIENCE).await?;
    assert_eq!(done.value_as::<String>()?, "b by worker-beta");
    // Each sees only its own task.
    assert!(alpha.get_task(b).await?.is_none());
    assert!(beta.get_task(a).await?.is_none());

    // alpha's notification woke nobody in beta, and the other way round: each pool claimed
    // at start, then once for its own task (and maybe once more, finding nothing).
    let claims_before = beta_pool.stats().claim_queries;
    let a2 = alpha.submit(job("a2")).await?;
    alpha.wait_result(a2, PATIENCE).await?;
    assert_eq!(
        beta_pool.stats().claim_queries,
        claims_before,
        "beta's pool was woken by alpha's task"
    );

    // Every table where it belongs; the application's table untouched.
    for (schema, expected) in [("alpha", 2_i64), ("beta", 1)] {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {schema}.tasks"), &[])
            .await?
            .get(0);
        assert_eq!(n, expected, "{schema}.tasks");
        let history: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM {schema}.tasklib_migrations"),
                &[],
            )
            .await?
            .get(0);
        assert!(history > 0, "{schema} has its own migration history");
    }
    let app: Vec<(String, bool)> = client
        .query("SELECT title, done FROM public.tasks", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(app, vec![("write the report".to_owned(), false)]);
    let public_tasklib: bool = client
        .query_one(
            "SELECT to_regclass('public.tasklib_migrations') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    assert!(!public_tasklib, "tasklib wrote into public");

    alpha_pool.shutdown().await?;
    beta_pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_submit_in_the_applications_transaction_lands_in_tasklibs_schema() -> TestResult {
    let db = TestDatabase::empty().await?;
    raw(&db)
        .await?
        .batch_execute("CREATE TABLE tasks (title text PRIMARY KEY)")
        .await?;
    let tasks = installation(&db, "jobs").await?;
    // The application's own pool: its search_path finds its own `tasks` first.
    let app = sea_orm::Database::connect(db.url()).await?;
    let txn = app.begin().await?;
    let id = tasks
        .submit_in(&txn, job("in txn"), SubmitOptions::new())
        .await?;
    txn.commit().await?;
    let pool = TaskWorker::new(&tasks).spawn()?;
    let done = tasks.wait_result(id, PATIENCE).await?;
    assert_eq!(done.value_as::<String>()?, "in txn by worker-jobs");
    pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_migration_in_one_schema_does_not_wait_for_another_schemas_lock() -> TestResult {
    let db = TestDatabase::empty().await?;
    let mut holder = raw(&db).await?;
    // Another instance migrating `alpha` holds alpha's lock.
    let txn = holder.transaction().await?;
    txn.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&tasklib::migration_lock_key("alpha")],
    )
    .await?;
    let beta = tokio::time::timeout(PATIENCE, installation(&db, "beta")).await??;
    assert!(beta.get_task(uuid::Uuid::nil()).await?.is_none());
    // alpha's own migration does wait for it.
    let alpha = tokio::spawn({
        let url = db.url().to_owned();
        async move { TaskLib::connect_with(Config::builder(url).schema("alpha").build()?).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !alpha.is_finished(),
        "alpha migrated while its lock was held"
    );
    txn.commit().await?;
    tokio::time::timeout(PATIENCE, alpha).await???;
    Ok(())
}

#[test]
fn a_schema_name_that_is_not_a_plain_identifier_is_refused() {
    for bad in [
        "",
        "Jobs",
        "jobs; DROP TABLE x",
        "1jobs",
        "pg_jobs",
        &"x".repeat(41),
    ] {
        let built = Config::builder("postgres://localhost/db")
            .schema(bad)
            .build();
        assert!(
            matches!(
                built,
                Err(tasklib::Error::InvalidConfig {
                    field: "schema",
                    ..
                })
            ),
            "{bad:?} was accepted"
        );
    }
    assert!(
        Config::builder("postgres://localhost/db")
            .schema("tasklib_jobs")
            .build()
            .is_ok()
    );
}
