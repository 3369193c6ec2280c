//! Migrations: applied at connect, safely by many instances at once; optional; exposed.

use tasklib::migration::MigratorTrait;
use tasklib::{Config, TaskLib};
use tasklib_test_utils::TestDatabase;

use crate::common::{TestResult, raw};

#[tokio::test]
async fn ten_instances_starting_at_once_all_succeed_with_one_schema() -> TestResult {
    let db = TestDatabase::empty().await?;
    let connects = (0..10).map(|_| {
        let url = db.url().to_owned();
        tokio::spawn(async move {
            let config = Config::builder(url).max_connections(2).build()?;
            TaskLib::connect_with(config).await
        })
    });
    for result in futures::future::join_all(connects).await {
        result??;
    }
    let client = raw(&db).await?;
    let applied: i64 = client
        .query_one("SELECT count(*) FROM tasklib_migrations", &[])
        .await?
        .get(0);
    assert_eq!(
        applied,
        i64::try_from(tasklib::migration::Migrator::migrations().len())?,
        "each migration recorded exactly once"
    );
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename = 'tasks'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(tables, 1);
    let triggers: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'tasks'::regclass AND NOT tgisinternal",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(triggers, 1, "one NOTIFY trigger");
    let indexes: Vec<String> = client
        .query(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'tasks' ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for expected in [
        "tasks_claim_idx",
        "tasks_running_lock_idx",
        "tasks_tags_idx",
        "tasks_chain_idx",
        "tasks_pkey",
    ] {
        assert!(
            indexes.iter().any(|i| i == expected),
            "{expected} missing from {indexes:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn migrations_can_be_left_to_the_application() -> TestResult {
    let db = TestDatabase::empty().await?;
    let config = Config::builder(db.url()).run_migrations(false).build()?;
    let tasks = TaskLib::connect_with(config).await?;
    let client = raw(&db).await?;
    let exists: bool = client
        .query_one("SELECT to_regclass('tasks') IS NOT NULL", &[])
        .await?
        .get(0);
    assert!(!exists, "run_migrations(false) must not create the table");

    let pending = tasklib::pending_migrations(tasks.db()?).await?;
    assert_eq!(
        pending,
        vec![
            "m20261123_000001_create_tasks".to_owned(),
            "m20261130_000001_lean_indexes".to_owned(),
            "m20261202_000001_chains_and_waits".to_owned(),
            "m20261203_000001_schema_channels".to_owned(),
            "m20261204_000002_progress_and_errors".to_owned(),
            "m20261204_000003_queue_pauses".to_owned(),
            "m20261204_000004_retry_count_at_claim".to_owned(),
            "m20261204_000005_unique_keys".to_owned(),
            "m20261204_000006_schedules".to_owned(),
            "m20261204_000007_queue_limits".to_owned(),
            "m20261204_000008_worker_pools".to_owned(),
            "m20261204_000009_trace_context".to_owned(),
        ]
    );
    tasklib::migrate(tasks.db()?).await?;
    assert!(tasklib::pending_migrations(tasks.db()?).await?.is_empty());
    // Applying again is a no-op.
    tasks.migrate().await?;
    let exists: bool = client
        .query_one("SELECT to_regclass('tasks') IS NOT NULL", &[])
        .await?
        .get(0);
    assert!(exists);
    Ok(())
}

#[tokio::test]
async fn history_table_does_not_collide_with_the_apps_own() -> TestResult {
    let db = TestDatabase::empty().await?;
    let client = raw(&db).await?;
    // The host app's own sea-orm history table, with a migration of its own in it.
    client
        .batch_execute(
            "CREATE TABLE seaql_migrations (version varchar PRIMARY KEY, applied_at bigint NOT NULL);
             INSERT INTO seaql_migrations VALUES ('m20240101_000001_app_users', 0);",
        )
        .await?;
    TaskLib::connect(db.url()).await?;
    let app_rows: i64 = client
        .query_one("SELECT count(*) FROM seaql_migrations", &[])
        .await?
        .get(0);
    assert_eq!(
        app_rows, 1,
        "tasklib must not write to the app's history table"
    );
    Ok(())
}

/// For each listing index the second migration changes (name, state and queue, tags, in that
/// order): whether it is partial. Fails when one of them is missing.
async fn listing_indexes_partial(client: &tokio_postgres::Client) -> TestResult<Vec<bool>> {
    let rows = client
        .query(
            "SELECT indexname, indexdef LIKE '% WHERE %' FROM pg_indexes
             WHERE tablename = 'tasks'
               AND indexname IN ('tasks_name_idx', 'tasks_state_queue_idx', 'tasks_tags_idx')
             ORDER BY indexname",
            &[],
        )
        .await?;
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    if names != ["tasks_name_idx", "tasks_state_queue_idx", "tasks_tags_idx"] {
        return Err(format!("listing indexes missing: found {names:?}").into());
    }
    Ok(rows.iter().map(|r| r.get(1)).collect())
}

#[tokio::test]
async fn a_database_at_the_first_migration_upgrades_with_its_tasks_and_can_go_back() -> TestResult {
    use tasklib::migration::{Migrator, MigratorTrait};
    use tasklib::{TaskFilter, TaskState};

    let db = TestDatabase::empty().await?;
    let config = Config::builder(db.url()).run_migrations(false).build()?;
    let tasks = TaskLib::connect_with(config).await?;
    Migrator::up(tasks.db()?, Some(1)).await?;
    let client = raw(&db).await?;
    client
        .batch_execute(
            "INSERT INTO tasks (name, queue, args, tags) VALUES
                 ('report', 'default', '{}', '{\"batch\": \"weekly\"}'),
                 ('report', 'default', '{}', '{}');
             UPDATE tasks SET state = 'completed', completed_at = now()
             WHERE tags = '{}'::jsonb",
        )
        .await?;
    assert_eq!(
        listing_indexes_partial(&client).await?,
        [false; 3],
        "the first migration's listing indexes cover every row"
    );

    tasklib::migrate(tasks.db()?).await?;
    assert_eq!(
        listing_indexes_partial(&client).await?,
        [true; 3],
        "every listing index is partial after the upgrade"
    );
    // The rows are all there and still found by every filter.
    let tagged = tasks
        .list_tasks(&TaskFilter::new().tags(serde_json::json!({"batch": "weekly"})))
        .await?;
    assert_eq!(tagged.len(), 1);
    let completed = tasks
        .list_tasks(&TaskFilter::new().state(TaskState::Completed).name("report"))
        .await?;
    assert_eq!(completed.len(), 1);
    assert_eq!(
        tasks
            .list_tasks(&TaskFilter::new().tags(serde_json::json!({})))
            .await?
            .len(),
        2,
        "an empty tag filter matches every task"
    );

    // Back to the first migration, past every later one (the lean indexes among them).
    let later = u32::try_from(Migrator::migrations().len() - 1)?;
    Migrator::down(tasks.db()?, Some(later)).await?;
    assert_eq!(
        listing_indexes_partial(&client).await?,
        [false; 3],
        "down restores the full indexes"
    );
    Ok(())
}

/// `retry_count` moved from "retries granted" to "retries started": rows written under the
/// old rule are carried over so that the monitoring queries read them right.
#[tokio::test]
async fn rows_counted_the_old_way_are_moved_to_retries_started() -> TestResult {
    use tasklib_migration::{Migrator, MigratorTrait};

    let db = TestDatabase::empty().await?;
    let config = Config::builder(db.url()).run_migrations(false).build()?;
    let tasks = TaskLib::connect_with(config).await?;
    // The migrations before the one under test (found by name, so that later migrations do
    // not shift it); then it alone goes up, and down.
    let before = Migrator::migrations()
        .iter()
        .position(|m| m.name() == "m20261204_000004_retry_count_at_claim")
        .ok_or("migration m20261204_000004 is not in the list")?;
    Migrator::up(tasks.db()?, Some(u32::try_from(before)?)).await?;
    let client = raw(&db).await?;
    // Under the old rule: waiting for retry 2 of 3 (two granted), failed for good by a
    // permanent error with retries unused, failed for good with all used, and running retry 1.
    client
        .batch_execute(
            "INSERT INTO tasks (id, name, args, state, retry_count, max_retries, attempt, next_retry_at)
             VALUES ('00000000-0000-7000-8000-000000000001', 'a', '{}', 'failed', 2, 3, 2, now()),
                    ('00000000-0000-7000-8000-000000000002', 'a', '{}', 'failed', 0, 3, 1, NULL),
                    ('00000000-0000-7000-8000-000000000003', 'a', '{}', 'failed', 3, 3, 4, NULL),
                    ('00000000-0000-7000-8000-000000000004', 'a', '{}', 'running', 1, 3, 2, NULL)",
        )
        .await?;
    Migrator::up(tasks.db()?, Some(1)).await?;
    let rows = client
        .query("SELECT retry_count FROM tasks ORDER BY id", &[])
        .await?;
    let counts: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(counts, vec![1, 3, 3, 1]);

    Migrator::down(tasks.db()?, Some(1)).await?;
    let rows = client
        .query("SELECT retry_count FROM tasks ORDER BY id", &[])
        .await?;
    let counts: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(counts, vec![2, 3, 3, 1], "down restores the waiting row");
    Ok(())
}
