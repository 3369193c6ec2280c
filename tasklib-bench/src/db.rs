//! The databases the scenarios run on, the no-op task, and the helpers around the queue.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tasklib::{Config, Task, TaskLib};
use tasklib_test_utils::{TestCluster, TestDatabase};
use tokio_postgres::{Client, NoTls};
use validator::Validate;

pub(crate) type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A task that does nothing: what is measured is the queue.
#[derive(Debug, Serialize, Deserialize, Validate)]
pub(crate) struct Noop {
    pub(crate) n: u64,
}

impl Task for Noop {
    const NAME: &'static str = "noop";
    type Output = ();
}

/// SQL run on every fresh database after its migrations (`--setup-sql`), to measure a schema
/// or setting change without touching tasklib: another index, `plan_cache_mode`, …
static SETUP_SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets the SQL of `--setup-sql` (once, before any database is made).
pub(crate) fn set_setup_sql(sql: String) {
    let _ = SETUP_SQL.set(sql);
}

/// The SQL of `--setup-sql`, if any.
pub(crate) fn setup_sql() -> Option<&'static str> {
    SETUP_SQL.get().map(String::as_str)
}

/// A fresh, migrated database of one measurement, dropped with this value.
#[derive(Debug)]
pub(crate) struct BenchDb {
    url: String,
    // Held for their `Drop`: the database (or the whole cluster) goes away with them.
    _database: Option<TestDatabase>,
    _cluster: Option<TestCluster>,
}

impl BenchDb {
    /// On `DATABASE_URL`'s server, else on the throwaway cluster of `tasklib-test-utils`
    /// (one per process).
    pub(crate) async fn new() -> BenchResult<BenchDb> {
        let database = TestDatabase::new().await?;
        let db = BenchDb {
            url: database.url().to_owned(),
            _database: Some(database),
            _cluster: None,
        };
        if let Some(sql) = setup_sql() {
            db.raw().await?.batch_execute(sql).await?;
        }
        Ok(db)
    }

    /// On a private cluster of its own with `pg_stat_statements` loaded (`TestCluster`, then
    /// `ALTER SYSTEM` and a restart), whatever `DATABASE_URL` says.
    pub(crate) async fn with_pg_stat_statements() -> BenchResult<BenchDb> {
        let cluster = TestCluster::start().await?;
        let admin = connect_raw(&cluster.url("postgres")).await?;
        admin
            .batch_execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
            .await?;
        drop(admin);
        cluster.restart().await?;
        // Its settings exist only once the library is loaded; one statement at a time, since
        // ALTER SYSTEM refuses to run inside a (multi-statement) transaction.
        let admin = connect_raw(&cluster.url("postgres")).await?;
        for setting in [
            "pg_stat_statements.track = 'all'",
            "pg_stat_statements.track_planning = 'on'",
        ] {
            admin
                .batch_execute(&format!("ALTER SYSTEM SET {setting}"))
                .await?;
        }
        admin.batch_execute("SELECT pg_reload_conf()").await?;
        drop(admin);
        let url = cluster.create_database().await?;
        TaskLib::connect(&url).await?; // migrates
        connect_raw(&url)
            .await?
            .batch_execute("CREATE EXTENSION pg_stat_statements")
            .await?;
        Ok(BenchDb {
            url,
            _database: None,
            _cluster: Some(cluster),
        })
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// A tokio-postgres connection beside tasklib's, for setup and measuring.
    pub(crate) async fn raw(&self) -> BenchResult<Client> {
        connect_raw(&self.url).await
    }

    /// A `TaskLib` with the library's default configuration (10 connections, 1 s poll), as an
    /// application would have it.
    pub(crate) async fn tasklib(&self) -> BenchResult<TaskLib> {
        Ok(TaskLib::connect_with(Config::builder(&self.url).build()?).await?)
    }

    /// Queues `tasks` no-op tasks, the rows `submit_many` would write (UUIDv7 ids in order,
    /// `{"n": …}` arguments, default queue, priority and retries, due now), with one
    /// `INSERT … SELECT` so the measuring process does not build them (its memory is then the
    /// worker's alone); then `ANALYZE`s the table as autovacuum would soon.
    pub(crate) async fn queue_noops(&self, tasks: usize) -> BenchResult<()> {
        let client = self.raw().await?;
        insert_noops(&client, tasks).await?;
        client.batch_execute("ANALYZE tasks").await?;
        Ok(())
    }

    /// Adds `rows` completed tasks, finished over the last hours, as a long-running queue
    /// would hold (ids are UUIDv7 in time order like tasklib's), then `VACUUM ANALYZE`.
    pub(crate) async fn preload_completed(&self, rows: usize) -> BenchResult<()> {
        if rows == 0 {
            return Ok(());
        }
        let client = self.raw().await?;
        client
            .execute(
                r#"
INSERT INTO tasks (id, name, args, state, result, attempt, scheduled_at, created_at,
                   started_at, completed_at, worker_id)
SELECT (lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0')
        || '7' || substr(h, 1, 3) || '8' || substr(h, 4, 15))::uuid,
       'noop', jsonb_build_object('n', g), 'completed', '{"value": null}', 1, at, at, at, at,
       'preload'
FROM generate_series(1, $1::int) AS g,
     LATERAL (SELECT now() - interval '3 hours' + g * interval '5 ms' AS at,
                     md5(g::text) AS h) AS x
"#,
                &[&(i32::try_from(rows)?)],
            )
            .await?;
        client.batch_execute("VACUUM ANALYZE tasks").await?;
        Ok(())
    }

    /// Waits until the backends of this database other than `client`'s are gone (they publish
    /// their statistics when they exit).
    pub(crate) async fn wait_for_other_sessions(&self, client: &Client) -> BenchResult<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let others: i64 = client
                .query_one(
                    "/* bench */ SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND pid <> pg_backend_pid()",
                    &[],
                )
                .await?
                .get(0);
            if others == 0 || Instant::now() > deadline {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub(crate) async fn connect_raw(url: &str) -> BenchResult<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// The database server's clock, as seconds since the epoch.
pub(crate) async fn server_clock(client: &Client) -> BenchResult<f64> {
    Ok(client
        .query_one(
            "/* bench */ SELECT extract(epoch FROM clock_timestamp())::float8",
            &[],
        )
        .await?
        .get(0))
}

/// Seconds from `since` (server clock) to the last `completed_at`: the end of a drain as the
/// database recorded it, free of the polling that detected it.
pub(crate) async fn last_completion(client: &Client, since: f64) -> BenchResult<f64> {
    let end: Option<f64> = client
        .query_one(
            "/* bench */ SELECT extract(epoch FROM max(completed_at))::float8 FROM tasks
             WHERE completed_at >= to_timestamp($1)",
            &[&since],
        )
        .await?
        .get(0);
    Ok(end.map_or(0.0, |end| end - since))
}

/// Waits until no task is pending or running. Returns the number of queries it ran.
pub(crate) async fn wait_drained(client: &Client, limit: Duration) -> BenchResult<i64> {
    let deadline = Instant::now() + limit;
    let mut queries = 0;
    loop {
        queries += 1;
        let busy: bool = client
            .query_one(
                "/* bench */ SELECT EXISTS (SELECT 1 FROM tasks WHERE state IN ('pending', 'running'))",
                &[],
            )
            .await?
            .get(0);
        if !busy {
            return Ok(queries);
        }
        if Instant::now() > deadline {
            return Err(format!("tasks still pending or running after {limit:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Fails unless exactly `expected` tasks are completed and none is anything else.
pub(crate) async fn check_all_completed(client: &Client, expected: usize) -> BenchResult<()> {
    let row = client
        .query_one(
            "/* bench */ SELECT count(*) FILTER (WHERE state = 'completed'), count(*) FILTER (WHERE state <> 'completed')
             FROM tasks",
            &[],
        )
        .await?;
    let (done, other): (i64, i64) = (row.get(0), row.get(1));
    if done != i64::try_from(expected)? || other != 0 {
        return Err(format!("expected {expected} completed tasks, found {done} completed and {other} in other states").into());
    }
    Ok(())
}

/// The rows of [`BenchDb::queue_noops`], generated by the server in one `INSERT … SELECT`:
/// what inserting them costs PostgreSQL alone, with no client building or sending them.
pub(crate) async fn insert_noops(client: &Client, tasks: usize) -> BenchResult<()> {
    insert_noops_from(client, 0, tasks).await
}

/// [`insert_noops`] for the rows numbered `first..first + count` (their ids differ from
/// those of the other numbers).
pub(crate) async fn insert_noops_from(
    client: &Client,
    first: usize,
    count: usize,
) -> BenchResult<()> {
    client
        .execute(
            r#"
INSERT INTO tasks (id, name, queue, args, priority, max_retries, scheduled_at, tags)
SELECT (lpad(to_hex((extract(epoch FROM now()) * 1000)::bigint), 12, '0')
        || '7' || lpad(to_hex(g / 16777216), 3, '0') || '8'
        || lpad(to_hex(g % 16777216), 6, '0') || substr(md5(g::text), 1, 9))::uuid,
       'noop', 'default', jsonb_build_object('n', g), 0, 3, now(), '{}'
FROM generate_series($1::int, $1::int + $2::int - 1) AS g
"#,
            &[&(i32::try_from(first)?), &(i32::try_from(count)?)],
        )
        .await?;
    Ok(())
}
